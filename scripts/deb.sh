#!/usr/bin/env bash
# Debian packages of the release builds, with cargo-deb (its settings:
# [package.metadata.deb] in Cargo.toml, maintainer scripts in board/debian/),
# each checked by lintian (no errors allowed).
#
#   scripts/deb.sh [TRIPLE...]   default: aarch64 (arm64), armv7 (armhf), the host (amd64)
#
# Builds what is missing (cargo build --release), then writes
# TARGET_DIR/debian/dtsflac_VERSION_ARCH.deb and prints the paths.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

die() { echo "error: $*" >&2; exit 1; }

cargo deb --version >/dev/null 2>&1 || die "cargo-deb is missing: scripts/install-deps.sh installs it"
command -v lintian >/dev/null || die "lintian is missing: apt-get install lintian"
host=$(rustc -vV | sed -n 's/^host: //p')
[[ $# -gt 0 ]] || set -- aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf "$host"
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
out=$target_dir/debian
mkdir -p "$out"
# The oldest glibc the package's Depends allows (Cargo.toml: libc6 (>= …)).
glibc_floor=$(sed -n 's/^depends = "libc6 (>= \([0-9.]*\)).*/\1/p' Cargo.toml)
[[ -n $glibc_floor ]] || die "Cargo.toml's [package.metadata.deb] depends names no libc6 version"

for triple in "$@"; do
    # The host's release build lives in target/release, where cargo-deb looks
    # without --target; a cross build in target/TRIPLE/release.
    if [[ $triple == "$host" ]]; then
        target_args=()
        binary=$target_dir/release/dtsflac
    else
        target_args=(--target "$triple")
        binary=$target_dir/$triple/release/dtsflac
    fi
    cargo build --locked --release "${target_args[@]}"
    needed=$(readelf -W --dyn-syms "$binary" | grep -o 'GLIBC_2\.[0-9]*' | sed 's/GLIBC_//' | sort -Vu | tail -n 1)
    [[ $(printf '%s\n%s\n' "$needed" "$glibc_floor" | sort -V | tail -n 1) == "$glibc_floor" ]] \
        || die "$binary needs glibc $needed, but the package says libc6 (>= $glibc_floor): raise it in Cargo.toml"
    # --no-strip: the release profile strips already.
    deb=$(cargo deb --no-build --no-strip "${target_args[@]}" --output "$out" | tail -n 1)
    [[ -f $deb ]] || die "cargo deb wrote no package for $triple"
    echo "==> $deb: lintian"
    lintian --fail-on error "$deb" \
        || die "lintian reports errors in $deb (above)"
    echo "$deb"
done
