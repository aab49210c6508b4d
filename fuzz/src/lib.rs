//! The parsers of drive data, compiled from the main crate's own source files
//! (`#[path]`), at the same module paths (`dtsflac_fuzz::media::dtshd`, …).
//!
//! Why not a dependency on `dtsflac`: that builds the whole box (tokio, axum,
//! SQLite, …) with fuzzing instrumentation, over 12 minutes on two cores;
//! these files alone build in seconds. They use only `std`, `serde`,
//! `thiserror`, `memchr` and `libc` (`safe_open`, how they open files); if one of them starts to use another module of
//! the crate, add that module here the same way (the build says so).
#![allow(dead_code)]

// At the root, where `super::flacmeta` (in flacframes) finds its sibling.
#[path = "../../src/media/bluray.rs"]
#[doc(hidden)]
pub mod bluray;
#[path = "../../src/media/discimage.rs"]
#[doc(hidden)]
pub mod discimage;
#[path = "../../src/media/dtshd.rs"]
#[doc(hidden)]
pub mod dtshd;
#[path = "../../src/media/dvd.rs"]
#[doc(hidden)]
pub mod dvd;
#[path = "../../src/media/flacdecode.rs"]
#[doc(hidden)]
pub mod flacdecode;
#[path = "../../src/media/flacframes.rs"]
#[doc(hidden)]
pub mod flacframes;
#[path = "../../src/media/flacmeta.rs"]
#[doc(hidden)]
pub mod flacmeta;
#[path = "../../src/media/iso9660.rs"]
#[doc(hidden)]
pub mod iso9660;
#[path = "../../src/media/lanes.rs"]
#[doc(hidden)]
pub mod lanes;
#[path = "../../src/media/safe_open.rs"]
#[doc(hidden)]
pub mod safe_open;
#[path = "../../src/media/sniff.rs"]
#[doc(hidden)]
pub mod sniff;
#[path = "../../src/media/stamp.rs"]
#[doc(hidden)]
pub mod stamp;
#[path = "../../src/usb/superblock.rs"]
#[doc(hidden)]
pub mod superblock;

pub mod media {
    pub use crate::{
        bluray, discimage, dtshd, dvd, flacdecode, flacframes, flacmeta, iso9660, lanes, safe_open,
        sniff, stamp,
    };
}

pub mod usb {
    pub use crate::superblock;
}
