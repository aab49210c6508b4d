#!/usr/bin/env bash
# Fuzzes the parsers of drive data (fuzz/fuzz_targets/*.rs: superblocks, the
# DTS-HD header, DTS frame splitting, FLAC metadata and frames, WAV layout,
# Blu-ray playlists, DVD images' directories and IFOs)
# for SECONDS each, with libFuzzer through `cargo fuzz`:
#
#   ./scripts/fuzz.sh SECONDS [TARGET...]    # every target, or the ones named
#
# Fails on the first crash (a panic, an allocation over the limit, an input
# that takes over 10 s, a leak of memory past the RSS limit) and prints the
# path of the input that caused it; reproduce it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -s none TARGET PATH   (in fuzz/)
#
# Each run starts from a seed corpus made here in a temporary directory: a
# few of the shared DTS samples (../shared/samples/dcadec), their raw frames,
# a WAV and FLACs made from them with ffmpeg and flac, and small file system
# images; nothing of it is kept. Installs cargo-fuzz if it is missing.
#
# cargo fuzz needs nightly compiler flags; on a stable toolchain
# RUSTC_BOOTSTRAP=1 unlocks them. No sanitizer (`-s none`): safe Rust checks
# its bounds itself, and AddressSanitizer needs a nightly standard library.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:?usage: scripts/fuzz.sh SECONDS [TARGET...]}
shift
export PATH="$HOME/.cargo/bin:$PATH:/usr/sbin:/sbin"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="$PWD/fuzz/target"

CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
  echo "==> installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

samples=../shared/samples/dcadec
if [ ! -f "$samples/PROVENANCE.md" ]; then
  echo "error: $samples is missing: the fuzz corpus is seeded from the shared DTS samples" >&2
  exit 1
fi

# Fuzz build flags, the same for build and run so that run does not rebuild:
# no sanitizer (see above), 16 codegen units (a much faster build, a little
# slower fuzzing), debug assertions and overflow checks on (cargo fuzz's default).
flags=(--sanitizer none --codegen-units 16)
# Per input: 10 s is a hang; one allocation over 64 MiB, or 1 GiB in all, is
# unbounded memory (the parsers' own caps are 16 MiB and below).
libfuzzer=(-timeout=10 -malloc_limit_mb=64 -rss_limit_mb=1024 -print_final_stats=1)

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/dtsflac-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
seed() { mkdir -p "$work/corpus/$1"; cat >"$work/corpus/$1/$2"; }

echo "==> seeding the corpus in $work"
picks=(core_51_24_48_768_0 xll_51_24_48_768 xll_71_24_48_768_0 xll_51_24_48_none x96_51_24_96_1509 xxch_71_24_48_2046)
for s in "${picks[@]}"; do
  seed dtshd_header "$s" <"$samples/$s.dtshd"
  ffmpeg -nostdin -loglevel error -i "$samples/$s.dtshd" -c:a copy -f dts "$work/$s.dts"
  # dts_frames: the first byte picks the number of lanes and the read size.
  { printf '\x04'; cat "$work/$s.dts"; } | seed dts_frames "$s"
  { printf '\xff'; head -c 20000 "$work/$s.dts"; } | seed dts_frames "$s.head"
done
head -c 16 "$samples/xll_51_24_48_768.dtshd" | seed dtshd_header magic-only

# PCM from a sample: a CD-shaped WAV, and FLACs of it by libFLAC.
src="$samples/xll_51_24_48_768.dtshd"
ffmpeg -nostdin -loglevel error -i "$src" -bitexact -ac 2 -c:a pcm_s16le "$work/stereo.wav"
ffmpeg -nostdin -loglevel error -i "$src" -bitexact -c:a pcm_s24le "$work/six.wav"
seed wav_layout stereo.wav <"$work/stereo.wav"
seed wav_layout six.wav <"$work/six.wav"
seed wav_layout noise_24_48.wav <"$samples/original/noise_24_48_0.wav"
# A DTS-CD rip: the raw DTS bitstream as 16-bit PCM words, byte-swapped.
ffmpeg -nostdin -loglevel error -f s16be -ar 44100 -ac 2 -i "$work/core_51_24_48_768_0.dts" \
  -bitexact -c:a pcm_s16le "$work/dtscd.wav"
seed wav_layout dtscd.wav <"$work/dtscd.wav"
flac -s -f --blocksize=576 -o "$work/stereo.flac" "$work/stereo.wav"
flac -s -f --blocksize=1152 -S 0.01s -T TITLE=Fuzz -T ARTIST=dtsflac -o "$work/six.flac" "$work/six.wav"
flac -s -f --no-seektable --padding=0 -o "$work/dtscd.flac" "$work/dtscd.wav"
for f in stereo six dtscd; do
  seed flac_metadata "$f.flac" <"$work/$f.flac"
  seed flac_frames "$f.flac" <"$work/$f.flac"
done

# Small file system images, their first MiB (labels and UUIDs set).
mkimage() {
  local name=$1 size=$2
  shift 2
  truncate -s "$size" "$work/$name.img"
  "$@" "$work/$name.img" >/dev/null 2>&1
  head -c $((1 << 20)) "$work/$name.img" | seed superblock "$name"
}
mkimage fat12 1M mkfs.vfat -n FUZZFAT
mkimage fat32 40M mkfs.vfat -F 32 -S 512 -s 1 -n FUZZFAT32
mkimage exfat 4M mkfs.exfat -L FuzzExfat
mkimage ntfs 4M mkfs.ntfs -F -f -q -L FuzzNtfs
mkimage ext4 4M mkfs.ext4 -q -F -L fuzz-ext4
mkimage ext2 1M mkfs.ext2 -q -F -L fuzz-ext2

# A DVD image (genisoimage's ISO 9660 + UDF bridge) of a title set, its
# VIDEO_TS directory and its IFO (dvdauthor's, two chapters), each behind
# the byte that picks the parser (dvd_structures).
mkdir -p "$work/dvd/VIDEO_TS"
ffmpeg -nostdin -v error -f lavfi -i testsrc=s=720x480:r=30000/1001:d=2 -f lavfi -i sine=d=2:r=48000 \
  -c:v mpeg2video -c:a dca -strict -2 -ac 2 -f dvd "$work/title.mpg"
VIDEO_FORMAT=NTSC dvdauthor -o "$work/dvd" -t -a dts+en -c 0,1 "$work/title.mpg" >/dev/null 2>&1
VIDEO_FORMAT=NTSC dvdauthor -o "$work/dvd" -T >/dev/null 2>&1
genisoimage -quiet -dvd-video -o "$work/dvd.iso" "$work/dvd"
{ printf '\x03'; head -c $((1 << 20)) "$work/dvd.iso"; } | seed dvd_structures image-start
{ printf '\x01'; dd if="$work/dvd.iso" bs=2048 skip=16 count=1 status=none; } | seed dvd_structures descriptor
{ printf '\x02'; cat "$work/dvd/VIDEO_TS/VTS_01_0.IFO"; } | seed dvd_structures ifo
{ printf '\x04'; head -c 65536 "$work/dvd/VIDEO_TS/VTS_01_1.VOB"; } | seed dvd_structures vob-start
python3 - "$work/dvd.iso" <<'PY' | seed dvd_structures video-ts-directory
import struct, sys
d = open(sys.argv[1], "rb").read()
root = d[16 * 2048 + 156:16 * 2048 + 190]
at = struct.unpack("<I", root[2:6])[0] * 2048
directory = d[at:at + struct.unpack("<I", root[10:14])[0]]
sys.stdout.buffer.write(b"\x00" + directory)
PY

echo "==> building the fuzz targets"
(cd fuzz && cargo fuzz build "${flags[@]}")

failed=()
for t in "${targets[@]}"; do
  mkdir -p "$work/corpus/$t"
  echo "==> fuzzing $t for ${seconds}s"
  log="$work/$t.log"
  rc=0
  (cd fuzz && cargo fuzz run "${flags[@]}" "$t" "$work/corpus/$t" -- \
    -max_total_time="$seconds" -max_len=$((1 << 20)) "${libfuzzer[@]}") >"$log" 2>&1 || rc=$?
  grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
  if [ "$rc" -ne 0 ]; then
    # (the input itself is printed too: lines cut short)
    tail -n 40 "$log" | cut -c 1-300 >&2
    found=$(grep -oE '(Test unit|artifact) written to [^ ]+' "$log" | awk '{print $NF}' || true)
    echo "error: fuzz target $t failed (exit $rc); crashing input: ${found:-see the log above}" >&2
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "error: fuzz targets failed: ${failed[*]} (inputs kept in fuzz/artifacts/)" >&2
  exit 1
fi
echo "==> fuzzing passed: ${targets[*]} (${seconds}s each)"
