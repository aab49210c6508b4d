#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, then runs
# every test against the real ffmpeg/flac tools and the shared DTS samples,
# and checks that the aarch64 build still cross-compiles.
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
cargo build --locked --target aarch64-unknown-linux-gnu
echo "==> all tests passed; aarch64 build OK"
