#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, runs every
# test against the real ffmpeg/flac tools, real file systems, a real browser
# and the shared DTS samples; then cross-builds for the boards, runs the ARM
# binaries and the library's unit tests under qemu, builds the .deb packages,
# runs the engine's tests and the arm64 binary and package on Debian trixie
# (scripts/trixie.sh), and checks the board support files (systemd unit,
# Yocto layer).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"

if [ ! -f ../shared/samples/dcadec/PROVENANCE.md ]; then
  echo "error: ../shared/samples/dcadec is missing: the tests need the shared DTS samples beside the project" >&2
  exit 1
fi

cargo fmt --all -- --check
cargo test --locked

# The engine against the tools the box's users have: Raspberry Pi OS is
# Debian trixie (FFmpeg 7.1, libFLAC 1.5), this machine is Debian 12.
./scripts/trixie.sh amd64

echo "==> fuzzing the parsers of drive data, 20 s per target"
./scripts/fuzz.sh 20

# qemu-user 7.2 (Debian 12) can deadlock when a multithreaded guest forks:
# one CI run hung for its whole 90 minutes inside a unit test that only
# starts mkntfs (the whole aarch64 unit run takes 35 s here). Whatever runs
# under qemu gets a time limit; a run that hangs is tried once more, and a
# test that fails fails at once.
under_qemu() {
  local limit=$1 attempt rc
  shift
  for attempt in 1 2; do
    rc=0
    timeout --kill-after=20 "$limit" "$@" || rc=$?
    case $rc in
      0) return 0 ;;
      124|137) echo "warning: '$*' hung under qemu-user for ${limit}s (attempt $attempt of 2)" >&2 ;;
      *) return "$rc" ;;
    esac
  done
  echo "error: '$*' hung under qemu-user twice; its output up to the hang is above" >&2
  return 1
}

echo "==> aarch64: unit tests under qemu, release build, the binary runs"
cargo test --locked --lib --target aarch64-unknown-linux-gnu --no-run
under_qemu 300 cargo test --locked --lib --target aarch64-unknown-linux-gnu
cargo build --locked --release --target aarch64-unknown-linux-gnu
arm64=target/aarch64-unknown-linux-gnu/release/dtsflac
size=$(stat -c %s "$arm64")
echo "stripped aarch64 binary: $size bytes"
[ "$size" -le $((12 * 1024 * 1024)) ] || { echo "error: the aarch64 binary is over 12 MB" >&2; exit 1; }
under_qemu 60 qemu-aarch64-static -L /usr/aarch64-linux-gnu "$arm64" --version
under_qemu 120 qemu-aarch64-static -L /usr/aarch64-linux-gnu "$arm64" doctor

echo "==> armv7: release build (the armhf package's), the binary runs"
cargo build --locked --release --target armv7-unknown-linux-gnueabihf
armv7=target/armv7-unknown-linux-gnueabihf/release/dtsflac
under_qemu 60 qemu-arm-static -L /usr/arm-linux-gnueabihf "$armv7" --version
under_qemu 120 qemu-arm-static -L /usr/arm-linux-gnueabihf "$armv7" doctor

echo "==> packages: arm64, armhf, amd64 (cargo deb, lintian)"
./scripts/deb.sh

echo "==> aarch64 on arm64 Debian trixie: the samples converted exactly, the package installed, used, purged"
./scripts/trixie.sh arm64

echo "==> board support: systemd unit, Yocto layer"
./board/check.sh

echo "==> all tests passed; ARM builds OK"
