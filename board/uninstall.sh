#!/usr/bin/env bash
# Removes what board/install.sh installed. Run as root:
#
#   sudo board/uninstall.sh           # keeps the config and the job store
#   sudo board/uninstall.sh --purge   # also /etc/dtsflac and /var/lib/dtsflac
#
# Stopping the service unmounts every drive first (the daemon does that on
# SIGTERM). The apt packages (ffmpeg, exfat-fuse, ntfs-3g, fusefat, i2c-tools)
# and the I2C setting are left alone: other software may use them.
set -euo pipefail

die() { echo "uninstall.sh: $*" >&2; exit 1; }
say() { echo "==> $*"; }

PURGE=0
case "${1:-}" in
    "") ;;
    --purge) PURGE=1 ;;
    *) die "usage: $0 [--purge]" ;;
esac
[[ $(id -u) -eq 0 ]] || die "run as root (sudo $0 $*)"

if systemctl list-unit-files dtsflac.service >/dev/null 2>&1; then
    say "stopping and disabling dtsflac"
    systemctl disable --now dtsflac 2>/dev/null || true
fi

rm -f /etc/systemd/system/dtsflac.service
rm -rf /etc/systemd/system/dtsflac.service.d
systemctl daemon-reload
systemctl reset-failed dtsflac 2>/dev/null || true

rm -f /usr/bin/dtsflac
rm -rf /usr/share/doc/dtsflac
# Only what the tools answered at start-up; asked again when needed.
rm -rf /var/cache/dtsflac

# The mount folder: only empty drive folders may be left; never delete into a
# drive that is still mounted.
if [[ -d /media/dtsflac ]]; then
    if findmnt -rn -o TARGET | grep -q '^/media/dtsflac/'; then
        echo "uninstall.sh: drives are still mounted under /media/dtsflac; leaving it" >&2
    else
        find /media/dtsflac -mindepth 1 -maxdepth 1 -type d -empty -delete
        rmdir /media/dtsflac 2>/dev/null || echo "uninstall.sh: /media/dtsflac is not empty; left in place" >&2
    fi
fi

if [[ $PURGE == 1 ]]; then
    say "removing /etc/dtsflac and /var/lib/dtsflac (config, jobs.db, token, log)"
    rm -rf /etc/dtsflac /var/lib/dtsflac
else
    say "kept /etc/dtsflac and /var/lib/dtsflac (use --purge to remove them)"
fi
say "dtsflac removed"
