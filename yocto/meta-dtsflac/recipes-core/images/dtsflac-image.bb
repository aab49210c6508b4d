SUMMARY = "dtsflac appliance image: a minimal system that runs the DTS to FLAC box"
DESCRIPTION = "core-image-minimal plus dtsflac and what it needs at run \
               time (FFmpeg, FUSE drivers, losetup). Needs systemd as init \
               manager, see meta-dtsflac/README.md."
LICENSE = "MIT"

inherit core-image features_check

# The daemon is started by its systemd unit.
REQUIRED_DISTRO_FEATURES = "systemd"

# As core-image-minimal, plus the appliance.
IMAGE_INSTALL = "packagegroup-core-boot ${CORE_IMAGE_EXTRA_INSTALL} dtsflac"
IMAGE_LINGUAS = ""

# SSH for maintenance is optional: add it in local.conf with
#   EXTRA_IMAGE_FEATURES += "ssh-server-dropbear"
# (or ssh-server-openssh). The web API on port 8080 works without it.
