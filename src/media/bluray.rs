//! Blu-ray backups (BDMV folders): recognising a disc, checking its folder
//! before FFmpeg's `bluray:` input (libbluray) is let into it, and the few
//! things of its structure we read ourselves because FFmpeg does not show
//! them: a playlist's clips and the languages of its audio streams (from
//! the playlist's STN table; real discs carry them there, not in the clips'
//! PMTs), and the disc title (`META/DL/bdmt_*.xml`).
//!
//! Which title is the main one is libbluray's choice, through FFmpeg (see
//! `probe::probe_bluray`); nothing here navigates a disc.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::safe_open;

/// The file a walk lists for a disc: every BDMV folder has one, and
/// libbluray refuses a disc without it.
pub const INDEX_FILE: &str = "index.bdmv";

/// A playlist file is a few KiB; more is not a playlist.
const MAX_PLAYLIST_BYTES: u64 = 1 << 20;
/// A disc-library XML holds a title and a table of contents.
const MAX_META_BYTES: u64 = 256 << 10;
/// Entries looked at in each of the disc's folders before giving up.
const MAX_FOLDER_ENTRIES: usize = 20_000;
/// Playlist and clip times tick at 45 kHz.
const TICKS_PER_SECOND: f64 = 45_000.0;

fn named(path: &Path, name: &str) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n == name)
}

/// The index file of the disc whose `BDMV` folder `dir` is: a folder named
/// `BDMV` holding `PLAYLIST` and `STREAM` folders and an index file (none of
/// them a symlink). `None` for any other folder.
pub fn disc_index(dir: &Path) -> Option<PathBuf> {
    if !named(dir, "BDMV") {
        return None;
    }
    let is_dir = |p: PathBuf| fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
    let index = dir.join(INDEX_FILE);
    let index_is_file = fs::symlink_metadata(&index).is_ok_and(|m| m.is_file());
    (index_is_file && is_dir(dir.join("PLAYLIST")) && is_dir(dir.join("STREAM"))).then_some(index)
}

/// Whether `path` is a disc's index file (`…/BDMV/index.bdmv`).
pub fn is_disc_index(path: &Path) -> bool {
    named(path, INDEX_FILE) && path.parent().is_some_and(|p| named(p, "BDMV"))
}

/// The disc's root (the folder holding `BDMV`), from its index file.
pub fn disc_root(index: &Path) -> Option<&Path> {
    index.parent()?.parent()
}

/// The disc's folder name, which names its FLACs ("Film (2009)").
pub fn disc_name(root: &Path) -> Option<String> {
    root.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// libbluray opens the disc's files by name and follows symlinks, so
/// before it is let in, the folders it reads must hold only folders and
/// regular files (a link to `/dev/zero` or out of the drive is refused).
/// The disc root itself is handed over as a descriptor (`open_disc`).
pub fn check_disc_tree(bdmv: &Path) -> Result<(), String> {
    let mut folders = vec![bdmv.to_path_buf()];
    while let Some(dir) = folders.pop() {
        let entries =
            fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        for (n, entry) in entries.enumerate() {
            if n >= MAX_FOLDER_ENTRIES {
                return Err(format!(
                    "{} holds more than {MAX_FOLDER_ENTRIES} entries; not a Blu-ray folder",
                    dir.display()
                ));
            }
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if kind.is_dir() {
                // BDMV's folders are one level deep (META/DL, BACKUP/PLAYLIST).
                if folders.len() + 1 > 64 || path.components().count() > 64 {
                    return Err(format!("{} is nested too deeply", dir.display()));
                }
                folders.push(path);
            } else if let Some(what) = safe_open::kind(kind) {
                return Err(format!(
                    "{} is {what}; a Blu-ray folder with links or special files is not read (copy the disc again without them)",
                    path.display()
                ));
            }
        }
    }
    Ok(())
}

/// The disc's root, opened as a folder (not through a symlink): FFmpeg gets
/// this descriptor (`bluray:/proc/self/fd/N`), so a folder swapped in after
/// our checks is never read.
pub fn open_disc(root: &Path) -> io::Result<File> {
    safe_open::open_folder(root)
}

/// One clip of a playlist, played from `in_time` to `out_time` (45 kHz).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayItem {
    pub clip: String,
    pub in_time: u32,
    pub out_time: u32,
}

/// A primary audio stream of a playlist, as its STN table lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioStream {
    /// The stream's PID in the play item's clip (`None` for a stream of a
    /// sub-path).
    pub pid: Option<u16>,
    pub coding_type: u8,
    /// ISO 639-2, as written on the disc ("eng").
    pub language: String,
}

/// What we read of a `.mpls` playlist.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Playlist {
    pub items: Vec<PlayItem>,
    /// The first play item's primary audio streams (the others list the
    /// same streams for their own clips).
    pub audio: Vec<AudioStream>,
    /// The entry marks (chapters): play item and time on its clip (45 kHz).
    pub marks: Vec<(u16, u32)>,
}

impl Playlist {
    /// The playlist's length: its items' spans added up.
    pub fn seconds(&self) -> f64 {
        let ticks: u64 = self
            .items
            .iter()
            .map(|i| u64::from(i.out_time.saturating_sub(i.in_time)))
            .sum();
        ticks as f64 / TICKS_PER_SECOND
    }

    /// Where each chapter starts on the title's own clock, in seconds: the
    /// spans of the items before its item, and its distance from that
    /// item's IN time. Marks outside their item are left out.
    pub fn chapter_seconds(&self) -> Vec<f64> {
        let mut before = 0u64;
        let mut item_starts = Vec::with_capacity(self.items.len());
        for i in &self.items {
            item_starts.push(before);
            before += u64::from(i.out_time.saturating_sub(i.in_time));
        }
        let mut out: Vec<f64> = self
            .marks
            .iter()
            .filter_map(|&(item, time)| {
                let played = self.items.get(usize::from(item))?;
                if time < played.in_time || time >= played.out_time {
                    return None;
                }
                let ticks = item_starts[usize::from(item)] + u64::from(time - played.in_time);
                Some(ticks as f64 / TICKS_PER_SECOND)
            })
            .collect();
        out.sort_by(f64::total_cmp);
        out
    }

    /// The disc's language for the stream with this PID.
    pub fn language_of(&self, pid: u16) -> Option<&str> {
        self.audio
            .iter()
            .find(|a| a.pid == Some(pid))
            .map(|a| a.language.as_str())
            .filter(|l| l.len() == 3 && l.bytes().all(|b| b.is_ascii_alphabetic()))
            .filter(|l| !l.eq_ignore_ascii_case("und"))
    }
}

/// Reads the playlist `path` (opened with `safe_open`, at most 1 MiB).
pub fn read_playlist(path: &Path) -> io::Result<Playlist> {
    let file = safe_open::open_regular(path)?;
    let mut data = Vec::new();
    file.take(MAX_PLAYLIST_BYTES).read_to_end(&mut data)?;
    parse_playlist(&data).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a readable playlist ({e})", path.display()),
        )
    })
}

/// Bounds-checked big-endian reads over a byte slice.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn at(data: &'a [u8], pos: usize) -> Result<Self, String> {
        if pos > data.len() {
            return Err(format!("offset {pos} is past the end"));
        }
        Ok(Reader { data, pos })
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| format!("cut short at byte {}", self.pos))?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.bytes(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A block that starts with its length (`width` bytes) : its body.
    fn block(&mut self, width: usize) -> Result<Reader<'a>, String> {
        let len = match width {
            1 => usize::from(self.u8()?),
            2 => usize::from(self.u16()?),
            _ => self.u32()? as usize,
        };
        Ok(Reader {
            data: self.bytes(len)?,
            pos: 0,
        })
    }
}

/// Parses a `.mpls` file: its play items and the first one's primary audio
/// streams (layout as libbluray's `mpls_parse.c` reads it). Every count and
/// length is checked against the data, so a damaged file is an error.
pub fn parse_playlist(data: &[u8]) -> Result<Playlist, String> {
    let mut head = Reader::at(data, 0)?;
    if head.bytes(4)? != b"MPLS" {
        return Err("no MPLS signature".into());
    }
    head.bytes(4)?; // version
    let list_start = head.u32()? as usize;
    let mark_start = head.u32()? as usize;
    let mut list = Reader::at(data, list_start)?.block(4)?;
    list.u16()?; // reserved
    let item_count = list.u16()?;
    list.u16()?; // sub-paths
    let mut playlist = Playlist::default();
    for n in 0..item_count {
        let mut item = list.block(2)?;
        let clip = String::from_utf8_lossy(item.bytes(5)?).into_owned();
        item.bytes(4)?; // codec identifier, "M2TS"
        let flags = item.u16()?;
        let multi_angle = flags & 0x10 != 0;
        item.u8()?; // STC id
        let in_time = item.u32()?;
        let out_time = item.u32()?;
        item.bytes(8 + 1 + 1 + 2)?; // UO mask, random access, still mode and time
        playlist.items.push(PlayItem {
            clip,
            in_time,
            out_time,
        });
        if n > 0 {
            continue;
        }
        if multi_angle {
            let angles = item.u8()?;
            item.u8()?; // angle flags
            item.bytes(usize::from(angles.saturating_sub(1)) * 10)?;
        }
        playlist.audio = parse_stn_audio(&mut item.block(2)?)?;
    }
    // Chapters are a nicety: a damaged mark table costs them, not the title.
    playlist.marks = parse_marks(data, mark_start).unwrap_or_default();
    Ok(playlist)
}

/// The entry marks of a PlayListMark table: (play item, time stamp).
fn parse_marks(data: &[u8], start: usize) -> Result<Vec<(u16, u32)>, String> {
    let mut table = Reader::at(data, start)?.block(4)?;
    let count = table.u16()?;
    let mut marks = Vec::new();
    for _ in 0..count {
        table.u8()?; // reserved
        let kind = table.u8()?;
        let item = table.u16()?;
        let time = table.u32()?;
        table.bytes(2 + 4)?; // entry PID, duration
        if kind == 1 {
            marks.push((item, time));
        }
    }
    Ok(marks)
}

/// The primary audio streams of an STN table: video entries are skipped,
/// each entry is found by its length.
fn parse_stn_audio(stn: &mut Reader) -> Result<Vec<AudioStream>, String> {
    stn.u16()?; // reserved
    let videos = stn.u8()?;
    let audios = stn.u8()?;
    stn.bytes(5 + 5)?; // the other counts, reserved
    let mut audio = Vec::new();
    for n in 0..u16::from(videos) + u16::from(audios) {
        let mut entry = stn.block(1)?;
        let mut attributes = stn.block(1)?;
        if n < u16::from(videos) {
            continue;
        }
        // Stream type 1: a stream of the play item's own clip, by PID.
        let pid = match entry.u8()? {
            1 => Some(entry.u16()?),
            _ => None,
        };
        let coding_type = attributes.u8()?;
        attributes.u8()?; // presentation type, sampling frequency
        let language = String::from_utf8_lossy(attributes.bytes(3)?).into_owned();
        audio.push(AudioStream {
            pid,
            coding_type,
            language,
        });
    }
    Ok(audio)
}

/// The disc title from `BDMV/META/DL/bdmt_*.xml` (English first): the text
/// of its first `<di:name>`.
pub fn disc_title(bdmv: &Path) -> Option<String> {
    let dl = bdmv.join("META").join("DL");
    let names = fs::read_dir(&dl)
        .ok()?
        .filter_map(Result::ok)
        .take(MAX_FOLDER_ENTRIES)
        .map(|e| e.file_name().to_string_lossy().into_owned());
    disc_library_files(names).iter().find_map(|name| {
        let file = safe_open::open_regular(&dl.join(name)).ok()?;
        let mut text = String::new();
        file.take(MAX_META_BYTES).read_to_string(&mut text).ok()?;
        title_in_xml(&text)
    })
}

/// The disc-library files among the names of a `META/DL` folder, in the
/// order their titles are looked at: English first, then by name.
pub fn disc_library_files(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut files: Vec<String> = names
        .into_iter()
        .filter(|n| {
            let n = n.to_ascii_lowercase();
            n.starts_with("bdmt_") && n.ends_with(".xml")
        })
        .collect();
    files.sort_by_key(|n| (n != "bdmt_eng.xml", n.clone()));
    files
}

/// The title of a disc-library XML (its first `<di:name>`), if it has one.
pub fn title_in_xml(xml: &str) -> Option<String> {
    let after = &xml[xml.find("<di:name>")? + "<di:name>".len()..];
    let name = &after[..after.find("</di:name>")?];
    let name = name
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&");
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A playlist as libbluray lays it out: a header, then the play items,
    /// the first with an STN table of one video and the given audio streams.
    fn mpls(items: &[(&str, u32, u32)], audio: &[(u16, &str)]) -> Vec<u8> {
        let mut stn = vec![0, 0, 1, audio.len() as u8];
        stn.extend([0u8; 10]);
        stn.extend([9, 1, 0x10, 0x11, 0, 0, 0, 0, 0, 0]); // video entry
        stn.extend([5, 0x02, 0x31, 0, 0, 0]); // video attributes
        for (pid, lang) in audio {
            stn.extend([9, 1]);
            stn.extend(pid.to_be_bytes());
            stn.extend([0u8; 6]);
            stn.extend([5, 0x86, 0x61]);
            stn.extend(lang.as_bytes());
        }
        let mut list = vec![0, 0];
        list.extend((items.len() as u16).to_be_bytes());
        list.extend([0, 0]);
        for (clip, i, o) in items {
            let mut item = clip.as_bytes().to_vec();
            item.extend(b"M2TS");
            item.extend([0, 1, 0]);
            item.extend(i.to_be_bytes());
            item.extend(o.to_be_bytes());
            item.extend([0u8; 12]);
            item.extend((stn.len() as u16).to_be_bytes());
            item.extend(&stn);
            list.extend((item.len() as u16).to_be_bytes());
            list.extend(item);
        }
        let mut file = b"MPLS0200".to_vec();
        file.extend(40u32.to_be_bytes());
        file.resize(40, 0);
        file.extend((list.len() as u32).to_be_bytes());
        file.extend(list);
        file
    }

    #[test]
    fn a_playlist_gives_its_clips_in_order_and_its_languages_by_pid() {
        let data = mpls(
            &[("00001", 45_000, 4_545_000), ("00002", 0, 4_500_000)],
            &[(0x1100, "eng"), (0x1101, "ger"), (0x1102, "und")],
        );
        let p = parse_playlist(&data).unwrap();
        let clips: Vec<&str> = p.items.iter().map(|i| i.clip.as_str()).collect();
        assert_eq!(clips, ["00001", "00002"]);
        assert_eq!(p.seconds(), 200.0);
        assert_eq!(p.language_of(0x1100), Some("eng"));
        assert_eq!(p.language_of(0x1101), Some("ger"));
        assert_eq!(p.language_of(0x1102), None);
        assert_eq!(
            p.language_of(0x1011),
            None,
            "a video PID has no audio language"
        );
    }

    #[test]
    fn chapter_marks_are_placed_on_the_title_s_clock() {
        let mut data = mpls(
            &[("00001", 45_000, 4_545_000), ("00002", 900, 4_500_900)],
            &[(0x1100, "eng")],
        );
        let marks = [
            (1u8, 0u16, 45_000u32), // the start
            (1, 0, 2_745_000),      // 60 s in
            (2, 0, 90_000),         // a link point, not a chapter
            (1, 1, 900 + 450_000),  // 10 s into the second item: 110 s
            (1, 1, 10),             // before its item's IN time
            (1, 7, 0),              // no such item
        ];
        let mark_start = data.len() as u32;
        data[12..16].copy_from_slice(&mark_start.to_be_bytes());
        data.extend((2 + 14 * marks.len() as u32).to_be_bytes());
        data.extend((marks.len() as u16).to_be_bytes());
        for (kind, item, time) in marks {
            data.extend([0, kind]);
            data.extend(item.to_be_bytes());
            data.extend(time.to_be_bytes());
            data.extend([0xff, 0xff, 0, 0, 0, 0]);
        }
        let p = parse_playlist(&data).unwrap();
        assert_eq!(p.chapter_seconds(), [0.0, 60.0, 110.0]);
        // A cut mark table costs the chapters, not the playlist.
        let cut = parse_playlist(&data[..data.len() - 3]).unwrap();
        assert!(cut.marks.is_empty());
        assert_eq!(cut.items.len(), 2);
    }

    #[test]
    fn a_damaged_playlist_is_an_error_at_every_cut() {
        let data = mpls(&[("00001", 0, 90_000)], &[(0x1100, "eng")]);
        assert!(parse_playlist(&data).is_ok());
        for len in 0..data.len() {
            assert!(parse_playlist(&data[..len]).is_err(), "cut at {len}");
        }
        let mut huge = data.clone();
        huge[46..48].copy_from_slice(&u16::MAX.to_be_bytes());
        assert!(parse_playlist(&huge).is_err());
    }

    #[test]
    fn the_disc_title_comes_from_the_disc_library() {
        let xml = "<di:title>\n  <di:name>Tom &amp; Jerry</di:name>\n</di:title>";
        assert_eq!(title_in_xml(xml).as_deref(), Some("Tom & Jerry"));
        assert_eq!(title_in_xml("<di:name> </di:name>"), None);
        assert_eq!(title_in_xml("<di:name>cut"), None);
    }

    #[test]
    fn a_bdmv_folder_is_a_disc_only_with_its_parts_and_no_links() {
        let tree = tempfile::tempdir().unwrap();
        let bdmv = tree.path().join("Film").join("BDMV");
        for d in ["PLAYLIST", "STREAM", "CLIPINF"] {
            fs::create_dir_all(bdmv.join(d)).unwrap();
        }
        assert_eq!(disc_index(&bdmv), None, "no index file");
        fs::write(bdmv.join(INDEX_FILE), b"INDX0200").unwrap();
        let index = disc_index(&bdmv).unwrap();
        assert!(is_disc_index(&index));
        assert_eq!(disc_root(&index), Some(tree.path().join("Film").as_path()));
        assert_eq!(disc_index(&tree.path().join("Film")), None);
        assert!(check_disc_tree(&bdmv).is_ok());
        std::os::unix::fs::symlink("/dev/zero", bdmv.join("STREAM").join("00001.m2ts")).unwrap();
        let err = check_disc_tree(&bdmv).unwrap_err();
        assert!(err.contains("00001.m2ts is a symbolic link"), "{err}");
        assert!(open_disc(&bdmv.join("STREAM").join("00001.m2ts")).is_err());
    }
}
