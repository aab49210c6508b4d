//! Disc images (`.iso`): what kind of disc one holds, from the cheapest
//! evidence (its first few MiB), before FFmpeg is asked to read it.
//!
//! An image is ISO 9660 (`CD001` at sector 16) or UDF (`BEA01`/`NSR0x`
//! volume recognition from sector 16); a Blu-ray's or a DVD's file
//! identifiers (`BDMV`, `VIDEO_TS`) sit in its directory records near the
//! start. libbluray reads a Blu-ray image itself (FFmpeg's `bluray:`
//! input), so nothing here reads files out of an image.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

/// Directory records of a disc authored by the usual tools lie in its
/// first MiBs; this much is read to look for them.
const LOOKED_AT_BYTES: u64 = 8 << 20;
const SECTOR: usize = 2048;

/// What an image seems to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// Neither ISO 9660 nor UDF (or too short to be either).
    NotADisc,
    /// Names a `BDMV` folder.
    BluRay,
    /// Names a `VIDEO_TS` folder and no `BDMV`.
    Dvd,
    /// A UDF volume whose first MiBs name neither: libbluray is asked.
    UnknownUdf,
    /// ISO 9660 only, naming neither (an installer, a CD image).
    Other,
}

/// Reads the start of `file` (from offset 0, wherever it was) and says.
pub fn image_kind(file: &File) -> io::Result<ImageKind> {
    let mut f = file;
    f.seek(SeekFrom::Start(0))?;
    let mut data = Vec::new();
    f.take(LOOKED_AT_BYTES).read_to_end(&mut data)?;
    Ok(kind_of_bytes(&data))
}

/// `image_kind` of an image's first bytes.
pub fn kind_of_bytes(data: &[u8]) -> ImageKind {
    // Volume descriptors from sector 16 on: "CD001", "BEA01", "NSR02"…
    let descriptors =
        (16..32).filter_map(|sector| data.get(sector * SECTOR + 1..sector * SECTOR + 6));
    let (mut iso9660, mut udf) = (false, false);
    for id in descriptors {
        iso9660 |= id == b"CD001";
        udf |= id == b"NSR02" || id == b"NSR03";
    }
    if !iso9660 && !udf {
        return ImageKind::NotADisc;
    }
    let names = |name: &[u8]| memchr::memmem::find(data, name).is_some();
    if names(b"BDMV") {
        ImageKind::BluRay
    } else if names(b"VIDEO_TS") {
        ImageKind::Dvd
    } else if udf {
        ImageKind::UnknownUdf
    } else {
        ImageKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(descriptor: &[u8], name: &[u8]) -> Vec<u8> {
        let mut data = vec![0u8; 40 * SECTOR];
        data[16 * SECTOR + 1..16 * SECTOR + 6].copy_from_slice(descriptor);
        data[30 * SECTOR..30 * SECTOR + name.len()].copy_from_slice(name);
        data
    }

    #[test]
    fn an_image_is_told_by_its_volume_descriptors_and_the_folders_it_names() {
        assert_eq!(kind_of_bytes(&image(b"CD001", b"BDMV")), ImageKind::BluRay);
        assert_eq!(kind_of_bytes(&image(b"NSR02", b"VIDEO_TS")), ImageKind::Dvd);
        assert_eq!(kind_of_bytes(&image(b"NSR03", b"")), ImageKind::UnknownUdf);
        assert_eq!(kind_of_bytes(&image(b"CD001", b"casper")), ImageKind::Other);
        assert_eq!(
            kind_of_bytes(&image(b"XXXXX", b"BDMV")),
            ImageKind::NotADisc
        );
        assert_eq!(kind_of_bytes(&[0u8; 100]), ImageKind::NotADisc);
    }
}
