#!/usr/bin/env bash
# Installs what dtsflac needs and is missing: Debian packages (FFmpeg, the
# flac encoder, the aarch64 cross linker) and the Rust cross target.
# Safe to run again: it only installs what is not there yet.
set -euo pipefail

packages=(
  ffmpeg            # decodes the DTS (and the tests' reference decodes)
  flac              # libFLAC's encoder the box drives, verify mode on
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross   # linkers for the ARM builds
  gcc-arm-linux-gnueabihf libc6-dev-armhf-cross
  qemu-user-static  # runs the ARM binaries and their tests here
  binfmt-support    # ...and whole arm64 roots (scripts/trixie.sh)
  debootstrap       # the Debian trixie roots the tests also run in
  python3           # scripts read cargo's JSON messages
  lintian           # checks the .deb packages (scripts/deb.sh)
  shellcheck        # board/check.sh lints the shell scripts
  systemd           # systemd-analyze verify of the board's unit
  python3-pip       # oelint-adv for the Yocto layer
  pkg-config
  # drives: FUSE drivers for kernels without exFAT/NTFS/FAT, and the tools
  # the tests make disk images with
  fuse3 exfat-fuse ntfs-3g fusefat exfatprogs dosfstools e2fsprogs util-linux
  dvdauthor         # the tests author DVD title sets with it
  genisoimage       # ...and Blu-ray and DVD ISO images
  curl              # the demo talks to the box's API
  chromium          # the page's end-to-end tests run in a real browser
)

sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing: ${missing[*]}"
  sudo_if_needed apt-get update
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null; then
  echo "error: Rust is not installed. Install it with rustup (https://rustup.rs):" >&2
  echo "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh" >&2
  exit 1
fi
if command -v rustup >/dev/null; then
  for target in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
    rustup target list --installed | grep -qx "$target" || rustup target add "$target"
  done
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' \
    || rustup component add rustfmt
fi

# cargo fuzz (scripts/fuzz.sh): the version it pins, built with this toolchain.
if command -v cargo >/dev/null && ! cargo fuzz --version 2>/dev/null | grep -qF 0.13.2; then
  cargo install cargo-fuzz --version 0.13.2 --locked
fi

# cargo deb (scripts/deb.sh): a pinned release that builds with this toolchain.
if command -v cargo >/dev/null && ! cargo deb --version 2>/dev/null | grep -qF 3.8.0; then
  cargo install cargo-deb --version 3.8.0 --locked
fi

# The Yocto layer's linter (PyPI).
if ! command -v oelint-adv >/dev/null; then
  python3 -m pip install --quiet oelint-adv 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages oelint-adv
fi
