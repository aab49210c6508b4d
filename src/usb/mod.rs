//! USB drives: kernel hotplug events, which devices are drives, identifying
//! their file systems, and mounting them safely.

pub mod drives;
pub mod mount;
pub mod partitions;
pub mod superblock;
pub mod uevent;
