# Kernel options dtsflac needs (files/dtsflac.cfg): USB drive file systems
# built in, FUSE, loop devices, I2C and GPIO character devices.
# Only active when meta-raspberrypi is in the build (BBFILES_DYNAMIC in
# conf/layer.conf) and only for its machines (the rpi override), so adding this
# layer changes no other machine's kernel. linux-raspberrypi requires
# linux-yocto.inc, so .cfg fragments in SRC_URI are merged into its config.
# For another board, add the same two lines to a bbappend of its kernel recipe.
FILESEXTRAPATHS:prepend:rpi := "${THISDIR}/files:"

SRC_URI:append:rpi = " file://dtsflac.cfg"
