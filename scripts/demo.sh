#!/usr/bin/env bash
# Demo mode: installs what is missing, builds dtsflac, and starts the whole
# box on this machine with no hardware: a virtual front panel and buttons,
# and a demo USB drive (a disk image attached as a loop device) holding real
# DTS material made with FFmpeg's encoder and the public-domain DTS-HD test
# streams, long enough to watch. Open http://localhost:8080 and watch it
# convert; Ctrl-C stops the box and unplugs the demo drive.
#
#   DTSFLAC_DEMO_DIR   where the demo lives (default /tmp/dtsflac-demo)
#   DTSFLAC_DEMO_PORT  the page's port (default 8080)
#   DTSFLAC_DEMO_EXIT_WHEN_DONE=1  eject and stop once everything is converted
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked
bin=$PWD/target/release/dtsflac

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
demo=${DTSFLAC_DEMO_DIR:-/tmp/dtsflac-demo}
port=${DTSFLAC_DEMO_PORT:-8080}
as_root rm -rf "$demo"
mkdir -p "$demo/drive/Films" "$demo/drive/Music" "$demo/drive/Concerts"
ff() { ffmpeg -nostdin -hide_banner -loglevel error -y "$@"; }

echo "==> making demo material in $demo/drive"
# A film: video, two DTS tracks (English 5.1, German stereo) and an AC-3 track.
ff -f lavfi -i "testsrc=size=320x180:rate=25:duration=20" \
   -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=20" \
   -f lavfi -i "sine=frequency=660:sample_rate=48000:duration=20,aformat=channel_layouts=stereo" \
   -f lavfi -i "sine=frequency=880:sample_rate=48000:duration=20" \
   -filter_complex "[1:a]pan=5.1(side)|FL=c0|FR=c0|FC=c0|LFE=c0|SL=c0|SR=c0[six]" \
   -map 0:v -map "[six]" -map 2:a -map 3:a -c:v mpeg4 \
   -c:a:0 dca -c:a:1 dca -c:a:2 ac3 -strict -2 \
   -metadata:s:a:0 language=eng -metadata:s:a:1 language=ger -metadata:s:a:2 language=fre \
   -metadata title="Demo Film" "$demo/drive/Films/Demo Film (2026).mkv"
# Long DTS 5.1 tracks (FFmpeg's encoder), repeated to twenty minutes each.
ff -f lavfi -i "sine=frequency=500:sample_rate=48000:duration=60" \
   -af "pan=5.1(side)|FL=c0|FR=c0|FC=c0|LFE=c0|SL=c0|SR=c0" \
   -c:a dca -strict -2 -f dts "$demo/minute.dts"
for name in "Symphony No. 9" "Симфония № 5"; do
  for _ in $(seq 20); do cat "$demo/minute.dts"; done > "$demo/drive/Concerts/$name.dts"
done
# DTS-HD Master Audio 7.1: the frames of a public-domain test stream,
# repeated to two minutes (when ../shared is beside the project).
if [ -f ../shared/samples/dcadec/xll_71_24_48_768_0.dtshd ]; then
  python3 - ../shared/samples/dcadec/xll_71_24_48_768_0.dtshd "$demo/drive/Concerts/Live in 7.1 (DTS-HD MA).dts" <<'PY'
import struct, sys
data = open(sys.argv[1], 'rb').read()
pos, frames = 0, b''
while pos + 16 <= len(data):            # DTS-HD chunks: 8-byte id, 8-byte size
    cid, size = data[pos:pos + 8], struct.unpack('>Q', data[pos + 8:pos + 16])[0]
    if cid == b'STRMDATA':
        frames = data[pos + 16:pos + 16 + size]
    pos += 16 + size
seconds_per_copy = 3072 / 48000         # frames in the sample, decoded
open(sys.argv[2], 'wb').write(frames * int(120 / seconds_per_copy))
PY
fi
# A DTS music CD track: DTS packed 14 bits per word into 16-bit PCM after a
# second of silence, which FFmpeg's own probe would miss.
ff -f lavfi -i "sine=frequency=1000:sample_rate=44100:duration=30" \
   -af "pan=5.1(side)|FL=c0|FR=c0|FC=c0|LFE=c0|SL=c0|SR=c0" \
   -c:a dca -strict -2 -b:a 1234800 -f dts "$demo/cd.dts"
python3 - "$demo/cd.dts" "$demo/drive/Music/01 - DTS CD Track.wav" <<'PY'
import struct, sys
raw = open(sys.argv[1], 'rb').read()
words, acc, bits = bytearray(), 0, 0
for b in raw:
    acc, bits = (acc << 8) | b, bits + 8
    while bits >= 14:
        bits -= 14
        w = (acc >> bits) & 0x3fff
        acc &= (1 << bits) - 1
        words += struct.pack('<h', w - 0x4000 if w & 0x2000 else w)
pcm = bytes(44100 * 4) + bytes(words)
pcm += bytes(-len(pcm) % 4)
fmt = struct.pack('<IHHIIHH', 16, 1, 2, 44100, 176400, 4, 16)
open(sys.argv[2], 'wb').write(b'RIFF' + struct.pack('<I', 36 + len(pcm)) + b'WAVEfmt ' + fmt
                              + b'data' + struct.pack('<I', len(pcm)) + pcm)
PY
# A file whose name is HTML: the page must show it as text.
cp "$demo/cd.dts" "$demo/drive/Music/<img src=x onerror=alert(1)>.dts"
rm -f "$demo/minute.dts" "$demo/cd.dts"

echo "==> what dtsflac finds on it (dtsflac scan):"
"$bin" scan "$demo/drive" || true

echo "==> making the demo drive (ext4 disk image, label \"DEMO USB\")"
# Sparse: room for the FLAC files (the free-space check assumes little compression).
size_mb=$(( $(du -sm "$demo/drive" | cut -f1) * 2 + 4096 ))
truncate -s "${size_mb}M" "$demo/demo-drive.img"
mkfs.ext4 -q -F -m 0 -L "DEMO USB" -d "$demo/drive" "$demo/demo-drive.img"

cat > "$demo/dtsflac.toml" <<TOML
state_dir = "$demo/state"
[web]
listen = "0.0.0.0:$port"
token = "DEMO-7K2Q-X9WP"
[usb]
mount_root = "$demo/media"
allow_loop = true
[panel]
display = "virtual"
buttons = "virtual"
TOML

echo "==> starting the box: dtsflac run --config $demo/dtsflac.toml"
# Started directly (not through a function) so $! is the daemon itself.
if [ "$(id -u)" -eq 0 ]; then
  "$bin" run --config "$demo/dtsflac.toml" 2>"$demo/daemon.log" &
else
  sudo "$bin" run --config "$demo/dtsflac.toml" 2>"$demo/daemon.log" &
fi
daemon=$!
loopdev=""
cleanup() {
  as_root kill -TERM "$daemon" 2>/dev/null || true
  wait "$daemon" 2>/dev/null || true
  [ -n "$loopdev" ] && as_root losetup -d "$loopdev" 2>/dev/null || true
}
trap cleanup EXIT INT TERM
api() { curl --noproxy '*' -fsS "$@"; }
for _ in $(seq 100); do api "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
echo "==> plugging in the demo drive"
loopdev=$(as_root losetup -f --show "$demo/demo-drive.img")
cat <<TXT

  The box is running. Open  http://localhost:$port  (token: DEMO-7K2Q-X9WP)
  Front panel:              http://localhost:$port/panel.png
  Press a panel button:     curl -X POST -H 'Authorization: Bearer DEMO-7K2Q-X9WP' http://localhost:$port/api/buttons/next
  Status as JSON:           http://localhost:$port/api/status
  Log:                      $demo/daemon.log
  Ctrl-C stops the box and unplugs the demo drive.

TXT
state() { api "http://127.0.0.1:$port/api/status" | python3 -c 'import json,sys; d=json.load(sys.stdin)["drives"]; print(d[0]["state"] if d else "none")'; }
if [ "${DTSFLAC_DEMO_EXIT_WHEN_DONE:-}" = 1 ]; then
  for _ in $(seq 1200); do [ "$(state)" = idle ] && break; sleep 0.5; done
  api "http://127.0.0.1:$port/api/status" | python3 -c '
import json, sys
for j in json.load(sys.stdin)["jobs"]:
    print("%9s  %-34s %s" % (j["state"], j["description"], j["name"]))'
  api -X POST -H "Authorization: Bearer DEMO-7K2Q-X9WP" "http://127.0.0.1:$port/api/drives/1/eject" >/dev/null
  for _ in $(seq 120); do [ "$(state)" = ejected ] && break; sleep 0.5; done
  echo "drive state: $(state)"
  exit 0
fi
wait "$daemon"
