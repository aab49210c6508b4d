SUMMARY = "Turns DTS audio on USB drives into exact, verified FLAC files"
DESCRIPTION = "Appliance daemon for a Raspberry Pi-class box: it mounts USB \
               drives as they are plugged in, converts every DTS track it \
               finds (DTS-HD MA bit-exact) to FLAC next to its source with \
               FFmpeg, and shows progress on an SSD1306 OLED with three \
               buttons and over an HTTP API."
HOMEPAGE = "https://github.com/example/dtsflac"
BUGTRACKER = "https://github.com/example/dtsflac/issues"
SECTION = "multimedia"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://LICENSE;md5=317feb5dcb09c3372331d2cd1b30dd0f"

# Placeholders: the real repository and the commit to build. A fixed SRCREV
# (not AUTOREV) keeps builds reproducible, and dtsflac-crates.inc must match
# that commit's Cargo.lock: after changing SRCREV, run
# `bitbake -c update_crates dtsflac` or yocto/update-crates-inc.py.
# No S = "${WORKDIR}/git": since whinlatter the git fetcher unpacks to the
# default S, ${UNPACKDIR}/${BP}.
SRC_URI = "git://github.com/example/dtsflac.git;protocol=https;branch=main"
SRCREV = "0000000000000000000000000000000000000000"

require ${BPN}-crates.inc

inherit cargo cargo-update-recipe-crates systemd

# rusqlite's "bundled" feature compiles SQLite with the target C compiler,
# which the cargo class provides; no other native libraries are linked.

do_install:append() {
    install -d ${D}${sysconfdir}/dtsflac
    install -m 0644 ${S}/board/dtsflac.toml ${D}${sysconfdir}/dtsflac/dtsflac.toml

    if ${@bb.utils.contains('DISTRO_FEATURES', 'systemd', 'true', 'false', d)}; then
        install -d ${D}${systemd_system_unitdir}
        install -m 0644 ${S}/board/systemd/dtsflac.service ${D}${systemd_system_unitdir}/dtsflac.service
    fi

    install -d ${D}${docdir}/${BPN}
    install -m 0644 ${S}/README.md ${D}${docdir}/${BPN}/README.md

    # /var/lib/dtsflac is created by the unit (StateDirectory=) and
    # /media/dtsflac by the daemon at start: /media must stay empty in packages
    # (QA check "empty-dirs").
}

CONFFILES:${PN} = "${sysconfdir}/dtsflac/dtsflac.toml"

SYSTEMD_SERVICE:${PN} = "dtsflac.service"

# ffmpeg/ffprobe (oe-core; LICENSE_FLAGS "commercial", accept it in local.conf),
# flac (oe-core: libFLAC's encoder, which writes and verifies every FLAC),
# the FUSE fallbacks for kernels without exFAT/NTFS (meta-filesystems; there is
# no fusefat recipe, the kernel's vfat is always used), losetup for partitions
# on kernels without MBR/GPT support.
RDEPENDS:${PN} = "ffmpeg flac fuse-exfat ntfs-3g util-linux-losetup"
# i2cdetect for wiring checks; the kernel drivers when they are modules (the
# kernel fragment in this layer builds them in, then these do not exist).
RRECOMMENDS:${PN} = "i2c-tools \
                     kernel-module-exfat \
                     kernel-module-fuse \
                     kernel-module-i2c-dev \
                     kernel-module-loop \
                     kernel-module-nls-cp437 \
                     kernel-module-nls-iso8859-1 \
                     kernel-module-nls-utf8 \
                     kernel-module-ntfs3 \
                     kernel-module-vfat \
                     "
