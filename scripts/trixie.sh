#!/usr/bin/env bash
# CI steps on the box's real OS: Debian 13 "trixie", which Raspberry Pi OS is
# built on (FFmpeg 7.1, libFLAC 1.5), in roots made by debootstrap and cached
# in /var/cache/dtsflac-ci (see scripts/trixie-root.sh). Run as root.
#
#   scripts/trixie.sh amd64   the engine's end-to-end tests (tests/engine.rs)
#                             and the engine's unit tests, built here, run
#                             against trixie's ffmpeg and flac
#   scripts/trixie.sh arm64   the aarch64 release binary on arm64 trixie under
#                             qemu-user-static: doctor, scan, convert of the
#                             shared samples checked bit-exactly; then the
#                             arm64 .deb installed with apt-get, used, purged
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
export PATH="$HOME/.cargo/bin:$PATH"
# shellcheck source=scripts/trixie-root.sh
source scripts/trixie-root.sh

[[ $(id -u) -eq 0 ]] || die "scripts/trixie.sh needs root (debootstrap, chroot, mounts)"
shared=$(realpath -e ../shared) || die "../shared is missing: the steps need the shared DTS samples beside the project"
samples=$repo/../shared/samples/dcadec
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
# The tests find the samples at $repo/../shared and their binaries in the
# target folder by the paths they were built with: the same paths inside.
binds=(--bind "$repo" --bind "$shared:$(dirname "$repo")/shared")
[[ $target_dir == "$repo"/* ]] || binds+=(--bind "$target_dir")

# The test executables cargo builds for `cargo test ARGS`, one a line.
test_executables() {
    cargo test --locked "$@" --no-run --message-format=json \
        | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])'
}

step_amd64() {
    local root engine lib started=$SECONDS
    root=$(trixie_root amd64)
    echo "==> trixie amd64 root ready ($((SECONDS - started)) s): $(chroot "$root" ffmpeg -version | head -n 1), $(chroot "$root" flac --version)"
    engine=$(test_executables --test engine)
    lib=$(test_executables --lib)
    [[ -x $engine && -x $lib ]] || die "cargo did not report the engine and unit test executables"
    echo "==> trixie amd64: engine unit tests (media::) against trixie's tools"
    in_root "$root" "${binds[@]}" -- timeout --kill-after=20 600 \
        sh -c 'cd "$1" && exec "$2" --test-threads=2 media::' sh "$repo" "$lib"
    echo "==> trixie amd64: end-to-end engine tests against trixie's tools"
    in_root "$root" "${binds[@]}" -- timeout --kill-after=20 900 \
        sh -c 'cd "$1" && exec "$2" --test-threads=2' sh "$repo" "$engine"
    echo "==> trixie amd64 step passed in $((SECONDS - started)) s"
}

case ${1:-} in
    amd64) step_amd64 ;;
    *) die "usage: scripts/trixie.sh amd64|arm64" ;;
esac
