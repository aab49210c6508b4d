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
    # shellcheck disable=SC2016 # expanded by sh inside the root
    in_root "$root" "${binds[@]}" -- timeout --kill-after=20 600 \
        sh -c 'cd "$1" && exec "$2" --test-threads=2 media::' sh "$repo" "$lib"
    echo "==> trixie amd64: end-to-end engine tests against trixie's tools"
    # shellcheck disable=SC2016 # expanded by sh inside the root
    in_root "$root" "${binds[@]}" -- timeout --kill-after=20 900 \
        sh -c 'cd "$1" && exec "$2" --test-threads=2' sh "$repo" "$engine"
    echo "==> trixie amd64 step passed in $((SECONDS - started)) s"
}

# Under qemu-user 7.2 (Debian 12) a multithreaded program that forks can
# hang (see scripts/test.sh); a run that hangs is tried once more in a fresh
# overlay, a run that fails fails at once.
in_root_retrying_hangs() {
    local seconds=$1 attempt rc
    shift
    for attempt in 1 2; do
        rc=0
        IN_ROOT_TIMEOUT=$seconds in_root "$@" || rc=$?
        case $rc in
            0) return 0 ;;
            124|137) echo "warning: the arm64 root's run hung for ${seconds}s under qemu-user (attempt $attempt of 2)" >&2 ;;
            *) return "$rc" ;;
        esac
    done
    die "the arm64 root's run hung under qemu-user twice; its output up to the hang is above"
}

step_arm64() {
    local root started=$SECONDS binary deb work
    binary=$target_dir/aarch64-unknown-linux-gnu/release/dtsflac
    [[ -x $binary ]] || die "$binary is missing: cargo build --release --target aarch64-unknown-linux-gnu"
    deb=$(find "$target_dir/debian" -maxdepth 1 -name 'dtsflac_*_arm64.deb' -printf '%T@ %p\n' 2>/dev/null \
        | sort -rn | head -n 1 | cut -d' ' -f2-)
    [[ -f $deb ]] || die "no arm64 package in $target_dir/debian: scripts/deb.sh aarch64-unknown-linux-gnu"
    [[ $deb -nt $binary ]] || die "$deb is older than $binary: scripts/deb.sh aarch64-unknown-linux-gnu"
    root=$(trixie_root arm64)
    echo "==> trixie arm64 root ready ($((SECONDS - started)) s)"
    work=$(mktemp -d "${TMPDIR:-/tmp}/trixie-arm64.XXXXXX")
    # shellcheck disable=SC2064 # the folder is known now
    trap "rm -rf '$work'" EXIT
    # The output folder is made afresh for each attempt.
    # shellcheck disable=SC2016 # expanded by bash inside the root
    in_root_retrying_hangs 1500 "$root" "${binds[@]}" --bind "$work" -- \
        bash -c 'rm -rf "$1" && mkdir -p "$1" && shift && exec bash "$@"' sh "$work/out" \
        "$repo/scripts/trixie-arm64-inside.sh" "$binary" "$deb" "$samples" "$work/out"
    echo "==> trixie arm64: the scan and the FLACs converted there, checked against the masters"
    python3 - "$work/out/scan.json" "$samples" <<'PY'
import json, pathlib, sys
tracks = json.load(open(sys.argv[1]))
streams = sorted(p.name for p in pathlib.Path(sys.argv[2]).glob("*.dtshd"))
listed = sorted(pathlib.Path(t["path"]).name for t in tracks)
assert listed == streams, f"arm64 scan listed {listed}, the samples are {streams}"
for t in tracks:
    name = pathlib.Path(t["path"]).name
    if name.startswith("xll"):
        assert t["profile"] == "DTS-HD MA" and t["lossless"], f"{name}: {t}"
    else:
        assert not t["lossless"], f"{name}: {t}"
print(f"arm64 scan: {len(tracks)} tracks, profiles as expected")
PY
    DTSFLAC_CONVERTED_SAMPLES=$work/out/flac cargo test --locked --test engine -- \
        --ignored --exact samples_converted_elsewhere_are_exact
    echo "==> trixie arm64 step passed in $((SECONDS - started)) s"
}

case ${1:-} in
    amd64) step_amd64 ;;
    arm64) step_arm64 ;;
    *) die "usage: scripts/trixie.sh amd64|arm64" ;;
esac
