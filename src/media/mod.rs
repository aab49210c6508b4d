//! The conversion engine: finding DTS tracks and turning them into exact FLAC.
//! The command line and the daemon both drive it; it knows nothing of either.

pub mod bdimage;
pub mod bluray;
pub mod chapters;
pub mod convert;
pub mod discimage;
pub mod dtshd;
pub mod dtslength;
pub mod dvd;
pub mod flacdecode;
pub mod flacframes;
pub mod flacmeta;
pub mod iso9660;
pub mod lanes;
pub mod libbluray;
pub mod probe;
pub mod safe_open;
pub mod scan;
pub mod sniff;
pub mod stamp;
pub mod tools;
