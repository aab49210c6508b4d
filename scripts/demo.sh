#!/usr/bin/env bash
# Installs what is missing, builds dtsflac, makes a demo folder of real DTS
# material (a film with two DTS tracks and an AC-3 track, a DTS-CD style WAV,
# and the public-domain DTS-HD test streams when ../shared is beside the
# project) and converts it with `dtsflac convert`. Then it starts the box
# (`dtsflac run`) in demo mode: the same material on a disk image is plugged
# in as a USB drive (a loop device), converted, and ejected through the API;
# the box keeps running until Ctrl-C. Mounting needs root (sudo is used).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked
bin=target/release/dtsflac

demo=${DTSFLAC_DEMO_DIR:-/tmp/dtsflac-demo}
rm -rf "$demo"
mkdir -p "$demo/Films" "$demo/Music"
ff() { ffmpeg -nostdin -hide_banner -loglevel error -y "$@"; }

echo "==> making demo material in $demo"
ff -f lavfi -i "testsrc=size=320x180:rate=25:duration=5" \
   -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=5" \
   -f lavfi -i "sine=frequency=660:sample_rate=48000:duration=5,aformat=channel_layouts=stereo" \
   -f lavfi -i "sine=frequency=880:sample_rate=48000:duration=5" \
   -filter_complex "[1:a]pan=5.1(side)|FL=c0|FR=c0|FC=c0|LFE=c0|SL=c0|SR=c0[six]" \
   -map 0:v -map "[six]" -map 2:a -map 3:a -c:v mpeg4 \
   -c:a:0 dca -c:a:1 dca -c:a:2 ac3 -strict -2 \
   -metadata:s:a:0 language=eng -metadata:s:a:1 language=ger -metadata:s:a:2 language=fre \
   -metadata title="Demo Film" "$demo/Films/Demo Film (2026).mkv"
# A DTS music CD track: DTS packed 14 bits per word into 16-bit PCM after a
# second of silence, which FFmpeg's own probe would miss.
ff -f lavfi -i "sine=frequency=1000:sample_rate=44100:duration=5" \
   -af "pan=5.1(side)|FL=c0|FR=c0|FC=c0|LFE=c0|SL=c0|SR=c0" \
   -c:a dca -strict -2 -b:a 1234800 -f dts "$demo/.cd.dts"
python3 - "$demo/.cd.dts" "$demo/Music/01 - DTS CD Track.wav" <<'PY'
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
rm -f "$demo/.cd.dts"
if [ -d ../shared/samples/dcadec ]; then
  mkdir -p "$demo/Masters"
  cp ../shared/samples/dcadec/xll_*.dtshd ../shared/samples/dcadec/xbr_51_24_48_3840.dtshd "$demo/Masters/"
fi

echo "==> dtsflac scan $demo"
"$bin" scan "$demo"
echo "==> dtsflac convert $demo"
"$bin" convert "$demo"
echo "==> FLAC files written:"
find "$demo" -name '*.flac' | sort

# ---- the box, with a disk image as its USB drive ----
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
port=${DTSFLAC_DEMO_PORT:-8080}
box="$demo/box"
mkdir -p "$box/drive"
find "$demo" -name '*.flac' -delete
cp -r "$demo/Films" "$demo/Music" "$box/drive/"
[ -d "$demo/Masters" ] && cp -r "$demo/Masters" "$box/drive/"
rm -f "$box/demo-drive.img"
truncate -s 256M "$box/demo-drive.img"
mkfs.ext4 -q -F -m 0 -L "DEMO USB" -d "$box/drive" "$box/demo-drive.img"
cat > "$box/dtsflac.toml" <<TOML
state_dir = "$box/state"
[web]
listen = "127.0.0.1:$port"
token = "demo-token"
[usb]
mount_root = "$box/media"
allow_loop = true
[panel]
display = "virtual"
buttons = "virtual"
TOML
echo "==> starting the box: dtsflac run --config $box/dtsflac.toml"
# Started directly (not through a function) so $! is the daemon itself.
if [ "$(id -u)" -eq 0 ]; then
  "$bin" run --config "$box/dtsflac.toml" &
else
  sudo "$bin" run --config "$box/dtsflac.toml" &
fi
daemon=$!
loopdev=""
cleanup() {
  as_root kill -TERM "$daemon" 2>/dev/null || true
  wait "$daemon" 2>/dev/null || true
  [ -n "$loopdev" ] && as_root losetup -d "$loopdev" 2>/dev/null || true
}
trap cleanup EXIT INT TERM
api() { curl -fsS "$@"; }
for _ in $(seq 100); do api "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
echo "==> plugging in the demo drive"
loopdev=$(as_root losetup -f --show "$box/demo-drive.img")
state() { api "http://127.0.0.1:$port/api/status" | python3 -c 'import json,sys; d=json.load(sys.stdin)["drives"]; print(d[0]["state"] if d else "none")'; }
for _ in $(seq 600); do [ "$(state)" = idle ] && break; sleep 0.5; done
echo "==> status (http://127.0.0.1:$port/api/status):"
api "http://127.0.0.1:$port/api/status" | python3 -m json.tool
echo "==> ejecting the drive"
api -X POST -H "Authorization: Bearer demo-token" "http://127.0.0.1:$port/api/drives/1/eject" >/dev/null
for _ in $(seq 120); do [ "$(state)" = ejected ] && break; sleep 0.5; done
echo "drive state: $(state) (safe to remove)"
as_root losetup -d "$loopdev"; loopdev=""
echo "==> the box keeps running at http://127.0.0.1:$port (token: demo-token); its panel: http://127.0.0.1:$port/panel.png"
echo "    press its buttons: curl -X POST -H 'Authorization: Bearer demo-token' http://127.0.0.1:$port/api/buttons/next"
echo "    attach more images with"
echo "    sudo losetup -f --show IMAGE     — press Ctrl-C to stop"
wait "$daemon"
