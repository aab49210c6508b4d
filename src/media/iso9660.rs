//! The ISO 9660 directories of a disc image: enough to list one folder
//! (`VIDEO_TS` of a DVD image) and say where each file's bytes lie.
//! DVD-Video images carry ISO 9660 beside UDF (the "UDF bridge" their
//! standard asks for), and each VOB is one extent, so FFmpeg can be handed
//! byte ranges of the image (`subfile`) instead of files.
//!
//! Everything read is bounded and checked against the image's length: a
//! damaged or hostile image is an error, never a read past its end.

use std::fs::File;
use std::os::unix::fs::FileExt;

pub const SECTOR: u64 = 2048;
/// Volume descriptors looked at from sector 16 before giving up.
const MAX_DESCRIPTORS: u64 = 64;
/// A folder of a disc holds a few dozen names; more is not a disc's.
const MAX_DIRECTORY_BYTES: u64 = 1 << 20;
const MAX_ENTRIES: usize = 10_000;

/// One name in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The name without its `;1` version.
    pub name: String,
    /// Where the file's bytes start in the image, and how many.
    pub start: u64,
    pub len: u64,
    pub is_dir: bool,
    /// The file goes on in a further record (over 4 GiB): not one range.
    pub multi_extent: bool,
}

/// The entries of the folder `name` (any case) in the image's root.
pub fn read_root_folder(image: &File, name: &str) -> Result<Vec<Entry>, String> {
    let image_len = image
        .metadata()
        .map_err(|e| format!("cannot read the image: {e}"))?
        .len();
    let mut root = None;
    for sector in 16..16 + MAX_DESCRIPTORS {
        let descriptor = read_at(image, image_len, sector * SECTOR, SECTOR)?;
        if &descriptor[1..6] != b"CD001" {
            break;
        }
        match descriptor[0] {
            1 => {
                root = Some(parse_root(&descriptor)?);
                break;
            }
            255 => break,
            _ => {}
        }
    }
    let root = root.ok_or("no ISO 9660 volume (a UDF-only image)")?;
    let folder = list(image, image_len, &root)?
        .into_iter()
        .find(|e| e.is_dir && e.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| format!("no {name} folder in the image's root"))?;
    let entries = list(image, image_len, &folder)?;
    // FFmpeg is handed these ranges: each must lie within the image.
    if let Some(cut) = entries
        .iter()
        .find(|e| e.start.checked_add(e.len).is_none_or(|end| end > image_len))
    {
        return Err(format!(
            "{} runs past the image's end (cut short or damaged)",
            cut.name
        ));
    }
    Ok(entries)
}

fn list(image: &File, image_len: u64, dir: &Entry) -> Result<Vec<Entry>, String> {
    if dir.len > MAX_DIRECTORY_BYTES {
        return Err(format!("a directory of {} bytes (damaged)", dir.len));
    }
    parse_directory(&read_at(image, image_len, dir.start, dir.len)?)
}

fn read_at(image: &File, image_len: u64, start: u64, len: u64) -> Result<Vec<u8>, String> {
    if start.checked_add(len).is_none_or(|end| end > image_len) {
        return Err("a record points past the image's end (cut short or damaged)".into());
    }
    let mut data = vec![0u8; len as usize];
    image
        .read_exact_at(&mut data, start)
        .map_err(|e| format!("cannot read the image: {e}"))?;
    Ok(data)
}

/// The root directory's record in a primary volume descriptor.
pub fn parse_root(descriptor: &[u8]) -> Result<Entry, String> {
    let record = descriptor
        .get(156..190)
        .ok_or("volume descriptor cut short")?;
    parse_record(record)
}

/// The records of a directory's extent (records never cross a sector; a
/// zero length pads to the next one). `.` and `..` are left out.
pub fn parse_directory(data: &[u8]) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        let len = usize::from(data[at]);
        if len == 0 {
            at = (at / SECTOR as usize + 1) * SECTOR as usize;
            continue;
        }
        let record = data
            .get(at..at + len)
            .ok_or("a directory record runs past its directory (damaged)")?;
        let entry = parse_record(record)?;
        if !matches!(entry.name.as_str(), "\0" | "\u{1}") {
            if entries.len() == MAX_ENTRIES {
                return Err(format!("more than {MAX_ENTRIES} names in one directory"));
            }
            entries.push(entry);
        }
        at += len;
    }
    Ok(entries)
}

fn parse_record(record: &[u8]) -> Result<Entry, String> {
    if record.len() < 34 {
        return Err("a directory record of under 34 bytes (damaged)".into());
    }
    let le32 = |at: usize| u64::from(u32::from_le_bytes(record[at..at + 4].try_into().unwrap()));
    let name_len = usize::from(record[32]);
    let name = record
        .get(33..33 + name_len)
        .ok_or("a name runs past its directory record (damaged)")?;
    let name = String::from_utf8_lossy(name);
    let name = name.split_once(';').map_or(&*name, |(n, _)| n);
    let flags = record[25];
    Ok(Entry {
        name: name.strip_suffix('.').unwrap_or(name).to_string(),
        start: le32(2) * SECTOR,
        len: le32(10),
        is_dir: flags & 2 != 0,
        multi_extent: flags & 0x80 != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &[u8], sector: u32, len: u32, flags: u8) -> Vec<u8> {
        let mut r = vec![0u8; 33 + name.len() + (1 - name.len() % 2)];
        r[0] = r.len() as u8;
        r[2..6].copy_from_slice(&sector.to_le_bytes());
        r[10..14].copy_from_slice(&len.to_le_bytes());
        r[25] = flags;
        r[32] = name.len() as u8;
        r[33..33 + name.len()].copy_from_slice(name);
        r
    }

    #[test]
    fn a_folder_s_files_are_listed_with_their_byte_ranges() {
        // Sectors: 16 PVD, 17 terminator, 18 root, 19 VIDEO_TS, 20.. data.
        let mut image = vec![0u8; 24 * SECTOR as usize];
        let pvd = 16 * SECTOR as usize;
        image[pvd] = 1;
        image[pvd + 1..pvd + 6].copy_from_slice(b"CD001");
        image[pvd + 156..pvd + 190].copy_from_slice(&record(b"\0", 18, 2048, 2));
        image[17 * 2048] = 255;
        image[17 * 2048 + 1..17 * 2048 + 6].copy_from_slice(b"CD001");
        let mut root = record(b"\0", 18, 2048, 2);
        root.extend(record(b"\x01", 18, 2048, 2));
        root.extend(record(b"VIDEO_TS", 19, 2048, 2));
        image[18 * 2048..18 * 2048 + root.len()].copy_from_slice(&root);
        let mut folder = record(b"\0", 19, 2048, 2);
        folder.extend(record(b"VTS_01_1.VOB;1", 20, 4096, 0));
        folder.extend(record(b"VTS_01_0.IFO;1", 22, 100, 0));
        image[19 * 2048..19 * 2048 + folder.len()].copy_from_slice(&folder);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disc.iso");
        std::fs::write(&path, &image).unwrap();
        let file = File::open(&path).unwrap();
        let entries = read_root_folder(&file, "video_ts").unwrap();
        let names: Vec<(&str, u64, u64)> = entries
            .iter()
            .map(|e| (e.name.as_str(), e.start, e.len))
            .collect();
        assert_eq!(
            names,
            [
                ("VTS_01_1.VOB", 20 * 2048, 4096),
                ("VTS_01_0.IFO", 22 * 2048, 100)
            ]
        );

        // A file running past the end of the image is an error.
        let mut cut = image.clone();
        cut.truncate(21 * 2048);
        std::fs::write(&path, &cut).unwrap();
        let e = read_root_folder(&File::open(&path).unwrap(), "VIDEO_TS").unwrap_err();
        assert!(e.contains("VTS_01_1.VOB runs past"), "{e}");

        // A directory pointing past the end of the image is an error.
        let mut bad = image.clone();
        bad[18 * 2048 + 68 + 2..18 * 2048 + 68 + 6].copy_from_slice(&500u32.to_le_bytes());
        std::fs::write(&path, &bad).unwrap();
        let e = read_root_folder(&File::open(&path).unwrap(), "VIDEO_TS").unwrap_err();
        assert!(e.contains("past the image's end"), "{e}");
        // So is every cut of a directory record.
        for cut in 1..folder.len() {
            let _ = parse_directory(&folder[..cut]);
        }
        assert!(parse_directory(&folder[..40]).is_err());
    }
}
