#!/usr/bin/env bash
# Installs dtsflac as a systemd service on Raspberry Pi OS / Debian. Run as root:
#
#   sudo board/install.sh [PATH-TO-dtsflac-BINARY]
#
# Without an argument the binary is looked for in this checkout: target/release,
# then the cross builds (target/<triple>/release, target/cross/<triple>/release)
# for this machine's architecture. Safe to run again (upgrade): the binary, unit
# and docs are replaced, an existing /etc/dtsflac/dtsflac.toml is kept.
#
# Environment: DTSFLAC_NO_APT=1 skips apt-get (offline boxes; install FFmpeg,
# exfat-fuse, ntfs-3g, fusefat and i2c-tools yourself). DTSFLAC_NO_START=1
# installs and enables the service without starting it now.
set -euo pipefail

BOARD_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$BOARD_DIR")

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "==> $*"; }

[[ $(id -u) -eq 0 ]] || die "run as root (sudo $0 $*)"
command -v systemctl >/dev/null || die "systemd is required"

# --- the binary ------------------------------------------------------------------
find_binary() {
    local triples=()
    case "$(uname -m)" in
        aarch64|arm64) triples=(aarch64-unknown-linux-gnu) ;;
        armv7l|armv8l) triples=(armv7-unknown-linux-gnueabihf) ;;
        x86_64) triples=(x86_64-unknown-linux-gnu) ;;
    esac
    local c
    for c in "$REPO_DIR/target/release/dtsflac" \
             "${triples[@]/#/$REPO_DIR/target/}" \
             "${triples[@]/#/$REPO_DIR/target/cross/}"; do
        [[ $c == */dtsflac ]] || c="$c/release/dtsflac"
        if [[ -x $c ]]; then echo "$c"; return 0; fi
    done
    return 1
}

if [[ $# -ge 1 ]]; then
    BIN=$1
else
    BIN=$(find_binary) || die "no dtsflac binary found; build one (see board/README.md) or pass its path"
fi
[[ -f $BIN && -x $BIN ]] || die "$BIN is not an executable file"
# A binary for another architecture would only fail later, at service start.
if ! "$BIN" --version >/dev/null 2>&1 && ! "$BIN" --help >/dev/null 2>&1; then
    die "$BIN does not run on this machine ($(uname -m)): wrong architecture?"
fi

for f in "$BOARD_DIR/systemd/dtsflac.service" "$BOARD_DIR/dtsflac.toml"; do
    [[ -f $f ]] || die "missing $f"
done

# --- packages --------------------------------------------------------------------
# ffmpeg: ffmpeg + ffprobe; flac: the encoder; exfat-fuse, ntfs-3g, fusefat: FUSE drivers, used when
# the kernel has no exFAT/NTFS/FAT driver; i2c-tools: i2cdetect for the OLED;
# util-linux (losetup) is always installed on Debian.
PACKAGES=(ffmpeg flac exfat-fuse ntfs-3g fusefat i2c-tools)
if [[ ${DTSFLAC_NO_APT:-0} != 1 ]]; then
    missing=()
    for p in "${PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        [[ $status == "install ok installed" ]] || missing+=("$p")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        say "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update
        apt-get install -y --no-install-recommends "${missing[@]}"
    else
        say "packages already installed: ${PACKAGES[*]}"
    fi
fi

# --- files -----------------------------------------------------------------------
# Stop a running instance first so its binary is not replaced under it.
if systemctl is-active --quiet dtsflac 2>/dev/null; then
    say "stopping the running service"
    systemctl stop dtsflac
fi

say "installing $BIN -> /usr/bin/dtsflac"
install -m 0755 "$BIN" /usr/bin/dtsflac.new
mv -f /usr/bin/dtsflac.new /usr/bin/dtsflac

say "installing the unit -> /etc/systemd/system/dtsflac.service"
install -m 0644 "$BOARD_DIR/systemd/dtsflac.service" /etc/systemd/system/dtsflac.service

install -d -m 0755 /etc/dtsflac
if [[ -e /etc/dtsflac/dtsflac.toml ]]; then
    say "keeping /etc/dtsflac/dtsflac.toml (new defaults: /etc/dtsflac/dtsflac.toml.dist)"
    install -m 0644 "$BOARD_DIR/dtsflac.toml" /etc/dtsflac/dtsflac.toml.dist
else
    say "installing the default config -> /etc/dtsflac/dtsflac.toml"
    install -m 0644 "$BOARD_DIR/dtsflac.toml" /etc/dtsflac/dtsflac.toml
fi

install -d -m 0700 /var/lib/dtsflac
install -d -m 0755 /media/dtsflac

install -d -m 0755 /usr/share/doc/dtsflac
[[ -f $REPO_DIR/README.md ]] && install -m 0644 "$REPO_DIR/README.md" /usr/share/doc/dtsflac/README.md
[[ -f $BOARD_DIR/README.md ]] && install -m 0644 "$BOARD_DIR/README.md" /usr/share/doc/dtsflac/board.md

# FFmpeg with the DTS decoder, and the flac encoder?
if ! /usr/bin/dtsflac doctor; then
    echo "install.sh: warning: 'dtsflac doctor' found a problem (above); the service will not start without FFmpeg and flac" >&2
fi

# --- I2C for the OLED ------------------------------------------------------------
if command -v raspi-config >/dev/null; then
    say "enabling I2C (raspi-config nonint do_i2c 0)"
    raspi-config nonint do_i2c 0 || echo "install.sh: warning: raspi-config could not enable I2C" >&2
fi

# --- start -----------------------------------------------------------------------
systemctl daemon-reload
if [[ ${DTSFLAC_NO_START:-0} == 1 ]]; then
    systemctl enable dtsflac
    say "enabled; start it with: systemctl start dtsflac"
else
    systemctl enable --now dtsflac
    sleep 2
    if systemctl is-active --quiet dtsflac; then
        say "dtsflac is running: http://$(hostname -I 2>/dev/null | awk '{print $1}'):8080/ (port: web.listen)"
    else
        echo "install.sh: dtsflac did not stay up; see: journalctl -u dtsflac -n 50" >&2
        exit 1
    fi
fi
say "logs: journalctl -u dtsflac -f    config: /etc/dtsflac/dtsflac.toml"
