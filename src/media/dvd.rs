//! DVD-Video backups (`VIDEO_TS` folders): recognising a disc, its title
//! sets, and the languages of their audio streams (from the title set's
//! IFO, `VTSI_MAT`).
//!
//! A title set's content VOBs (`VTS_nn_1.VOB` … `VTS_nn_k.VOB`) are one
//! program stream cut at 1 GiB, wherever the cut falls; FFmpeg reads them
//! joined (`concat:`), so no frame is broken at a cut. The main title is
//! the title set with the most content: on a film DVD the film's.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::safe_open;

/// The disc's index, which the walk lists a disc by.
const INDEX_FILE: &str = "VIDEO_TS.IFO";
/// An IFO is a few KiB (at most a few hundred on a big disc).
const MAX_IFO_BYTES: u64 = 4 << 20;
/// Entries looked at in `VIDEO_TS` before giving up.
const MAX_FOLDER_ENTRIES: usize = 2_000;

fn named(path: &Path, name: &str) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.eq_ignore_ascii_case(name))
}

/// The index file of the disc whose `VIDEO_TS` folder `dir` is (a folder
/// named `VIDEO_TS` holding `VIDEO_TS.IFO`, neither a symlink).
pub fn disc_index(dir: &Path) -> Option<PathBuf> {
    if !named(dir, "VIDEO_TS") || !fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        return None;
    }
    // The name as the drive spells it (FAT rips are often lower case).
    let entries = fs::read_dir(dir).ok()?;
    entries
        .filter_map(Result::ok)
        .take(MAX_FOLDER_ENTRIES)
        .map(|e| e.path())
        .find(|p| named(p, INDEX_FILE) && fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
}

/// Whether `path` is a disc's index file (`…/VIDEO_TS/VIDEO_TS.IFO`).
pub fn is_disc_index(path: &Path) -> bool {
    named(path, INDEX_FILE) && path.parent().is_some_and(|p| named(p, "VIDEO_TS"))
}

/// The disc's root (the folder holding `VIDEO_TS`), from its index file.
pub fn disc_root(index: &Path) -> Option<&Path> {
    index.parent()?.parent()
}

/// One title set: its number and its content VOBs in order, with sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TitleSet {
    pub number: u8,
    /// The VOB names as the folder spells them, `VTS_nn_1.VOB` first.
    pub vobs: Vec<String>,
    pub bytes: u64,
    /// The title set's IFO (`VTS_nn_0.IFO`), if the folder has it.
    pub ifo: Option<String>,
}

/// "VTS_01_2.VOB" → (1, 2); "VTS_01_0.IFO" → (1, 0). Only these ASCII
/// names: FFmpeg is given them, joined by `|`.
fn title_set_part(name: &str, ext: &str) -> Option<(u8, u8)> {
    let upper = name.to_ascii_uppercase();
    let rest = upper.strip_prefix("VTS_")?.strip_suffix(ext)?;
    let (set, part) = rest.split_once('_')?;
    if set.len() != 2
        || part.len() != 1
        || !(set.bytes().chain(part.bytes())).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some((set.parse().ok()?, part.parse().ok()?))
}

/// The title sets of a `VIDEO_TS` folder whose VOBs follow on from
/// `VTS_nn_1.VOB` (a set with a missing part is reported, not joined
/// across the gap). Only regular files count; `check_tree` refuses the rest.
pub fn title_sets(video_ts: &Path) -> Result<Vec<TitleSet>, String> {
    let entries =
        fs::read_dir(video_ts).map_err(|e| format!("cannot list {}: {e}", video_ts.display()))?;
    let files = entries
        .filter_map(Result::ok)
        .take(MAX_FOLDER_ENTRIES)
        .filter_map(|entry| {
            let meta = entry.metadata().ok().filter(fs::Metadata::is_file)?;
            Some((entry.file_name().to_string_lossy().into_owned(), meta.len()))
        })
        .collect();
    title_sets_of(files)
}

/// `title_sets` of a folder's files, by name and size (a folder on the
/// drive, or the `VIDEO_TS` of an image).
pub fn title_sets_of(files: Vec<(String, u64)>) -> Result<Vec<TitleSet>, String> {
    let mut parts: Vec<(u8, u8, String, u64)> = Vec::new();
    let mut ifos: Vec<(u8, String)> = Vec::new();
    for (name, len) in files {
        if let Some((set, part)) = title_set_part(&name, ".VOB").filter(|(s, p)| *s >= 1 && *p >= 1)
        {
            parts.push((set, part, name, len));
        } else if let Some((set, 0)) = title_set_part(&name, ".IFO") {
            ifos.push((set, name));
        }
    }
    parts.sort();
    let mut sets: Vec<TitleSet> = Vec::new();
    for (set, part, name, len) in parts {
        match sets.last_mut() {
            Some(t) if t.number == set => {
                if usize::from(part) != t.vobs.len() + 1 {
                    return Err(format!(
                        "title set {set} has no VTS_{set:02}_{}.VOB before {name}; copy the disc again",
                        t.vobs.len() + 1
                    ));
                }
                t.vobs.push(name);
                t.bytes += len;
            }
            _ => {
                if part != 1 {
                    return Err(format!(
                        "title set {set} has no VTS_{set:02}_1.VOB; copy the disc again"
                    ));
                }
                sets.push(TitleSet {
                    number: set,
                    vobs: vec![name],
                    bytes: len,
                    ifo: ifos.iter().find(|(s, _)| *s == set).map(|(_, n)| n.clone()),
                });
            }
        }
    }
    Ok(sets)
}

/// The title set with the most content: the film on a film DVD.
pub fn main_title_set(sets: &[TitleSet]) -> Option<&TitleSet> {
    // Ties go to the first, as a player's title menu lists them.
    sets.iter().rev().max_by_key(|t| t.bytes)
}

/// FFmpeg opens the VOBs by name below the folder's descriptor, so the
/// folder must hold only regular files (a link to `/dev/zero` or out of
/// the drive is refused).
pub fn check_tree(video_ts: &Path) -> Result<(), String> {
    let entries =
        fs::read_dir(video_ts).map_err(|e| format!("cannot list {}: {e}", video_ts.display()))?;
    for (n, entry) in entries.enumerate() {
        if n >= MAX_FOLDER_ENTRIES {
            return Err(format!(
                "{} holds more than {MAX_FOLDER_ENTRIES} entries; not a DVD folder",
                video_ts.display()
            ));
        }
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", video_ts.display()))?;
        let kind = entry
            .file_type()
            .map_err(|e| format!("cannot read {}: {e}", entry.path().display()))?;
        if let Some(what) = safe_open::kind(kind) {
            return Err(format!(
                "{} is {what}; a DVD folder with links or special files is not read (copy the disc again without them)",
                entry.path().display()
            ));
        }
    }
    Ok(())
}

/// The language of each audio stream of a title set (by stream number:
/// DTS stream n is MPEG-PS substream 0x88 + n), from its IFO.
pub fn read_audio_languages(ifo: &Path) -> io::Result<Vec<Option<String>>> {
    let file = safe_open::open_regular(ifo)?;
    let mut data = Vec::new();
    file.take(MAX_IFO_BYTES).read_to_end(&mut data)?;
    parse_audio_languages(&data).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} ({e})", ifo.display()),
        )
    })
}

/// `read_audio_languages` of an IFO that lies in an image at `start`.
pub fn read_audio_languages_at(
    image: &File,
    start: u64,
    len: u64,
) -> io::Result<Vec<Option<String>>> {
    use std::os::unix::fs::FileExt;
    let mut data = vec![0u8; len.min(MAX_IFO_BYTES) as usize];
    image.read_exact_at(&mut data, start)?;
    parse_audio_languages(&data).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// `VTSI_MAT`'s audio attributes: a count at 0x202 (at most 8), then 8
/// bytes per stream; a language code in bytes 2–3 when byte 0 says so.
pub fn parse_audio_languages(data: &[u8]) -> Result<Vec<Option<String>>, String> {
    if data.get(..12) != Some(b"DVDVIDEO-VTS".as_slice()) {
        return Err("not a title set's IFO".into());
    }
    let count = data
        .get(0x202..0x204)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .ok_or("cut short")?;
    if count > 8 {
        return Err(format!("{count} audio streams (a DVD has at most 8)"));
    }
    (0..count)
        .map(|n| {
            let at = 0x204 + 8 * n;
            let attr = data.get(at..at + 8).ok_or("cut short")?;
            let has_language = (attr[0] >> 2) & 3 == 1;
            let code = &attr[2..4];
            Ok((has_language && code.iter().all(u8::is_ascii_alphabetic))
                .then(|| iso639_2(&String::from_utf8_lossy(code).to_ascii_lowercase())))
        })
        .collect()
}

/// A DVD's two-letter language as the three letters containers and
/// Blu-rays use (the bibliographic codes: "ger", "fre"), where known.
fn iso639_2(code: &str) -> String {
    const CODES: [(&str, &str); 24] = [
        ("en", "eng"),
        ("de", "ger"),
        ("fr", "fre"),
        ("es", "spa"),
        ("it", "ita"),
        ("ja", "jpn"),
        ("zh", "chi"),
        ("ko", "kor"),
        ("ru", "rus"),
        ("pt", "por"),
        ("nl", "dut"),
        ("sv", "swe"),
        ("da", "dan"),
        ("no", "nor"),
        ("fi", "fin"),
        ("pl", "pol"),
        ("cs", "cze"),
        ("hu", "hun"),
        ("tr", "tur"),
        ("el", "gre"),
        ("he", "heb"),
        ("ar", "ara"),
        ("hi", "hin"),
        ("th", "tha"),
    ];
    CODES
        .iter()
        .find(|(two, _)| *two == code)
        .map_or_else(|| code.to_string(), |(_, three)| three.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_sets_are_their_vobs_in_order_and_the_biggest_is_the_main_one() {
        let tree = tempfile::tempdir().unwrap();
        let v = tree.path().join("Film").join("VIDEO_TS");
        fs::create_dir_all(&v).unwrap();
        for (name, len) in [
            ("VIDEO_TS.IFO", 10),
            ("VTS_01_0.IFO", 10),
            ("VTS_01_0.VOB", 500), // the menu: not content
            ("VTS_01_1.VOB", 100),
            ("vts_02_2.vob", 300),
            ("VTS_02_1.VOB", 300),
            ("VTS_02_0.IFO", 10),
            ("notes.txt", 1),
        ] {
            fs::write(v.join(name), vec![0u8; len]).unwrap();
        }
        let index = disc_index(&v).unwrap();
        assert!(is_disc_index(&index));
        assert_eq!(disc_root(&index), Some(tree.path().join("Film").as_path()));
        let sets = title_sets(&v).unwrap();
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[0].vobs, ["VTS_01_1.VOB"]);
        assert_eq!(sets[1].vobs, ["VTS_02_1.VOB", "vts_02_2.vob"]);
        assert_eq!(sets[1].bytes, 600);
        assert_eq!(sets[1].ifo.as_deref(), Some("VTS_02_0.IFO"));
        assert_eq!(main_title_set(&sets).unwrap().number, 2);
        check_tree(&v).unwrap();

        // A gap in a title set is an error, not a join across it.
        fs::write(v.join("VTS_02_4.VOB"), b"x").unwrap();
        let e = title_sets(&v).unwrap_err();
        assert!(e.contains("VTS_02_3.VOB"), "{e}");
        fs::remove_file(v.join("VTS_02_4.VOB")).unwrap();

        std::os::unix::fs::symlink("/dev/zero", v.join("VTS_03_1.VOB")).unwrap();
        let e = check_tree(&v).unwrap_err();
        assert!(
            e.contains("VTS_03_1.VOB") && e.contains("symbolic link"),
            "{e}"
        );
        assert_eq!(title_sets(&v).unwrap().len(), 2, "a link is no VOB");
        assert!(disc_index(&tree.path().join("Film")).is_none());
    }

    #[test]
    fn audio_languages_come_from_the_title_set_s_ifo() {
        let mut ifo = b"DVDVIDEO-VTS".to_vec();
        ifo.resize(0x300, 0);
        ifo[0x202..0x204].copy_from_slice(&3u16.to_be_bytes());
        ifo[0x204..0x208].copy_from_slice(&[0xc4, 0xc5, b'e', b'n']);
        ifo[0x20c..0x210].copy_from_slice(&[0xc0, 0xc5, b'd', b'e']); // no language flag
        ifo[0x214..0x218].copy_from_slice(&[0xc4, 0xc5, b'x', b'y']);
        assert_eq!(
            parse_audio_languages(&ifo).unwrap(),
            [Some("eng".to_string()), None, Some("xy".to_string())]
        );
        for len in 0..0x21c {
            assert!(parse_audio_languages(&ifo[..len]).is_err(), "cut at {len}");
        }
        ifo[0x202..0x204].copy_from_slice(&9u16.to_be_bytes());
        assert!(parse_audio_languages(&ifo).is_err());
    }
}
