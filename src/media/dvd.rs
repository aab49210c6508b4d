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
    /// Each VOB's length, in the order of `vobs`.
    pub vob_bytes: Vec<u64>,
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
                t.vob_bytes.push(len);
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
                    vob_bytes: vec![len],
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

/// What a title set's IFO says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TitleSetInfo {
    /// The language of each audio stream, by stream number (DTS stream n
    /// is MPEG-PS substream 0x88 + n).
    pub languages: Vec<Option<String>>,
    /// Its titles (a disc of episodes has several), each a program chain
    /// of plain cells; none when any title is something else (angles, a
    /// title over several chains).
    pub titles: Vec<VtsTitle>,
}

impl TitleSetInfo {
    /// Its one title when that plays the VOBs from the first sector on, in
    /// order: then the title set read whole (its VOBs joined) is that title.
    pub fn whole_title(&self) -> Option<&VtsTitle> {
        match self.titles.as_slice() {
            [one] if one.plays_in_vob_order() => Some(one),
            _ => None,
        }
    }

    /// The chapter starts of the title set read whole: its `whole_title`'s,
    /// none without one.
    pub fn chapters(&self) -> &[f64] {
        self.whole_title().map_or(&[], |t| t.chapters.as_slice())
    }
}

/// One title of a title set.
#[derive(Debug, Clone, PartialEq)]
pub struct VtsTitle {
    /// Its number within the title set (`VTS_TTN`, from 1).
    pub number: u8,
    /// The sectors of the title set's VOBs (joined) it plays, cell by
    /// cell in play order: `[first, last]`, both included.
    pub cells: Vec<[u32; 2]>,
    /// Its length: its cells' playback times summed.
    pub seconds: f64,
    /// Where each chapter starts, in seconds from the title's start.
    pub chapters: Vec<f64>,
}

impl VtsTitle {
    /// Whether it plays the VOBs as they lie, from the first sector on.
    fn plays_in_vob_order(&self) -> bool {
        let mut next = 0u64;
        self.cells.iter().all(|&[first, last]| {
            let in_order = u64::from(first) == next;
            next = u64::from(last) + 1;
            in_order
        })
    }

    /// Its cells as `[vob, start, length]` byte ranges of the title set's
    /// VOBs (`vob_bytes` long each): cells that follow each other in one
    /// range, a cell across a VOB's end in two; `None` if a cell lies past
    /// the last VOB.
    pub fn pieces(&self, vob_bytes: &[u64]) -> Option<Vec<[u64; 3]>> {
        let mut pieces: Vec<[u64; 3]> = Vec::new();
        for &[first, last] in &self.cells {
            let (mut at, end) = (u64::from(first) * 2048, (u64::from(last) + 1) * 2048);
            let mut vob_start = 0u64;
            for (vob, &len) in vob_bytes.iter().enumerate() {
                let vob_end = vob_start + len;
                if at < end && at < vob_end {
                    let piece_end = end.min(vob_end);
                    let (vob, start, len) = (vob as u64, at - vob_start, piece_end - at);
                    match pieces.last_mut() {
                        // Cells that follow each other are one range.
                        Some([v, s, l]) if *v == vob && *s + *l == start => *l += len,
                        _ => pieces.push([vob, start, len]),
                    }
                    at = piece_end;
                }
                vob_start = vob_end;
            }
            if at < end {
                return None;
            }
        }
        Some(pieces)
    }
}

/// A title set's IFO (`VTS_nn_0.IFO`) read and parsed.
pub fn read_title_set_info(ifo: &Path) -> io::Result<TitleSetInfo> {
    let file = safe_open::open_regular(ifo)?;
    let mut data = Vec::new();
    file.take(MAX_IFO_BYTES).read_to_end(&mut data)?;
    parse_title_set_info(&data).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} ({e})", ifo.display()),
        )
    })
}

/// `read_title_set_info` of an IFO that lies in an image at `start`.
pub fn read_title_set_info_at(image: &File, start: u64, len: u64) -> io::Result<TitleSetInfo> {
    use std::os::unix::fs::FileExt;
    let mut data = vec![0u8; len.min(MAX_IFO_BYTES) as usize];
    image.read_exact_at(&mut data, start)?;
    parse_title_set_info(&data).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The languages (an IFO without them is an error) and, where they can be
/// told, the chapters.
pub fn parse_title_set_info(data: &[u8]) -> Result<TitleSetInfo, String> {
    Ok(TitleSetInfo {
        languages: parse_audio_languages(data)?,
        titles: parse_titles(data).unwrap_or_default(),
    })
}

/// The title set's titles: its part-of-title table (`VTS_PTT_SRPT`,
/// sector at 0xC8) lists each title's chapters as programs of a program
/// chain (`VTS_PGCI`, at 0xCC), whose program map names each program's
/// first cell; a chapter starts where the cells before it end. `None`
/// unless every title is one chain of plain cells (no angle block).
fn parse_titles(data: &[u8]) -> Option<Vec<VtsTitle>> {
    let be16 = |at: usize| {
        Some(u16::from_be_bytes(
            data.get(at..at.checked_add(2)?)?.try_into().ok()?,
        ))
    };
    let be32 = |at: usize| {
        Some(u32::from_be_bytes(
            data.get(at..at.checked_add(4)?)?.try_into().ok()?,
        ))
    };
    // Every place is inside the IFO (at most MAX_IFO_BYTES), so the small
    // offsets added to it below cannot overflow.
    let inside = |place: usize| (place <= data.len()).then_some(place);
    let at = |base: usize, offset: u32| inside(base.checked_add(usize::try_from(offset).ok()?)?);
    let sector = |field: usize| inside(usize::try_from(be32(field)?).ok()?.checked_mul(2048)?);

    let ptt = sector(0xC8)?;
    let count = usize::from(be16(ptt)?);
    if count == 0 || count > MAX_TITLES {
        return None;
    }
    let table_end = be32(ptt + 4)?.checked_add(1)?;
    let offsets: Vec<u32> = (0..count)
        .map(|i| be32(ptt + 8 + 4 * i))
        .collect::<Option<_>>()?;
    let pgci = sector(0xCC)?;
    let chains = be16(pgci)?;
    (0..count)
        .map(|i| {
            let first = offsets[i];
            let end = offsets.get(i + 1).copied().unwrap_or(table_end);
            let parts = (end.checked_sub(first)? / 4) as usize;
            if parts == 0 || parts > MAX_CHAPTERS {
                return None;
            }
            let list = at(ptt, first)?;
            let parts: Vec<(u16, u16)> = (0..parts)
                .map(|p| Some((be16(list + 4 * p)?, be16(list + 4 * p + 2)?)))
                .collect::<Option<_>>()?;
            let chain = parts[0].0;
            if chain == 0 || chain > chains || parts.iter().any(|(c, _)| *c != chain) {
                return None;
            }
            let pgc = at(pgci, be32(pgci + 8 + 8 * (usize::from(chain) - 1) + 4)?)?;
            let programs = usize::from(*data.get(pgc + 2)?);
            let cell_count = usize::from(*data.get(pgc + 3)?);
            let program_map = at(pgc, u32::from(be16(pgc + 0xE6)?))?;
            let cell_table = at(pgc, u32::from(be16(pgc + 0xE8)?))?;
            let mut cells = Vec::with_capacity(cell_count);
            let mut starts = Vec::with_capacity(cell_count);
            let mut clock = 0.0;
            for c in 0..cell_count {
                let cell = data.get(cell_table + 24 * c..cell_table + 24 * c + 24)?;
                let first_sector = u32::from_be_bytes(cell[8..12].try_into().ok()?);
                let last_sector = u32::from_be_bytes(cell[20..24].try_into().ok()?);
                // An angle block interleaves the angles' cells: no one range is one angle.
                if cell[0] >> 6 != 0 || last_sector < first_sector {
                    return None;
                }
                cells.push([first_sector, last_sector]);
                starts.push(clock);
                clock += playback_seconds(cell[4..8].try_into().ok()?)?;
            }
            let chapters = parts
                .iter()
                .map(|&(_, program)| {
                    let p = usize::from(program)
                        .checked_sub(1)
                        .filter(|p| *p < programs)?;
                    let cell = usize::from(*data.get(program_map + p)?).checked_sub(1)?;
                    starts.get(cell).copied()
                })
                .collect::<Option<_>>()?;
            Some(VtsTitle {
                number: u8::try_from(i + 1).ok()?,
                cells,
                seconds: clock,
                chapters,
            })
        })
        .collect()
}

/// Titles a title set can have (the DVD limit).
const MAX_TITLES: usize = 99;

/// Bytes read at a title set's first VOB to tell whether it is encrypted.
pub const SCRAMBLE_CHECK_BYTES: u64 = 512 << 10;

/// The first `SCRAMBLE_CHECK_BYTES` of a VOB at `start` of `file` (a VOB,
/// or the image holding it).
pub fn read_vob_start(file: &File, start: u64) -> io::Result<Vec<u8>> {
    let mut data = vec![0u8; SCRAMBLE_CHECK_BYTES as usize];
    let filled = super::stamp::read_full_at(file, &mut data, start)?;
    data.truncate(filled);
    Ok(data)
}

/// Whether these packs of a VOB (2048 bytes each, from its start) carry
/// CSS-scrambled content: an MPEG-2 PES packet of video, audio or private
/// stream 1 whose `PES_scrambling_control` bits are set. FFmpeg reads such
/// packets as if they were clear, so they would decode to noise or nothing.
pub fn css_scrambled(packs: &[u8]) -> bool {
    packs.chunks_exact(2048).any(|pack| {
        if pack[..4] != [0, 0, 1, 0xba] || pack[4] >> 6 != 1 {
            return false;
        }
        let pes = 14 + usize::from(pack[13] & 7);
        let Some(header) = pack.get(pes..pes + 7) else {
            return false;
        };
        let stream = header[3];
        let content = stream == 0xbd || (0xc0..=0xef).contains(&stream);
        content && header[..3] == [0, 0, 1] && header[6] >> 6 == 2 && (header[6] >> 4) & 3 != 0
    })
}

/// Chapters a title can have (the DVD limit).
const MAX_CHAPTERS: usize = 999;

/// A DVD playback time as libdvdnav reads it: BCD hours, minutes, seconds,
/// then frames (BCD, six bits) at 30 per second when the top bit is set,
/// else 25.
fn playback_seconds(time: [u8; 4]) -> Option<f64> {
    let bcd =
        |b: u8| (b >> 4 < 10 && b & 0xf < 10).then(|| u32::from(b >> 4) * 10 + u32::from(b & 0xf));
    let fps = if time[3] & 0x80 != 0 { 30.0 } else { 25.0 };
    let whole = bcd(time[0])? * 3600 + bcd(time[1])? * 60 + bcd(time[2])?;
    Some(f64::from(whole) + f64::from(bcd(time[3] & 0x3f)?) / fps)
}

/// `VTSI_MAT`'s audio attributes: a count at 0x202 (at most 8), then 8
/// bytes per stream; a language code in bytes 2–3 when byte 0 says so.
fn parse_audio_languages(data: &[u8]) -> Result<Vec<Option<String>>, String> {
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

    /// A cell of a program chain: block mode byte, first and last sector,
    /// playback time.
    type Cell = (u8, u32, u32, [u8; 4]);

    /// A title set's IFO whose titles are each `(chapters as program
    /// numbers, program map, cells)`, one program chain a title.
    fn ifo_with_titles(titles: &[(&[u16], &[u8], &[Cell])]) -> Vec<u8> {
        let mut ifo = b"DVDVIDEO-VTS".to_vec();
        ifo.resize(2 * 2048, 0);
        ifo[0x202..0x204].copy_from_slice(&1u16.to_be_bytes());
        ifo[0x204..0x208].copy_from_slice(&[0xc4, 0xc5, b'e', b'n']);
        // The part-of-title table at sector 1.
        ifo[0xC8..0xCC].copy_from_slice(&1u32.to_be_bytes());
        let ptt = 2048;
        ifo[ptt..ptt + 2].copy_from_slice(&(titles.len() as u16).to_be_bytes());
        let mut offset = 8 + 4 * titles.len();
        for (t, (chapters, _, _)) in titles.iter().enumerate() {
            ifo[ptt + 8 + 4 * t..ptt + 12 + 4 * t].copy_from_slice(&(offset as u32).to_be_bytes());
            for program in chapters.iter() {
                let at = ptt + offset;
                ifo[at..at + 2].copy_from_slice(&(t as u16 + 1).to_be_bytes());
                ifo[at + 2..at + 4].copy_from_slice(&program.to_be_bytes());
                offset += 4;
            }
        }
        ifo[ptt + 4..ptt + 8].copy_from_slice(&(offset as u32 - 1).to_be_bytes());
        // The program chain table at sector 2: a chain of 0x400 bytes a title.
        ifo[0xCC..0xD0].copy_from_slice(&2u32.to_be_bytes());
        let pgci = 4096;
        ifo.resize(pgci + 8 + 0x400 * (titles.len() + 1), 0);
        ifo[pgci..pgci + 2].copy_from_slice(&(titles.len() as u16).to_be_bytes());
        for (t, (_, map, cells)) in titles.iter().enumerate() {
            let start = 8 + 8 * titles.len() + 0x400 * t;
            ifo[pgci + 8 + 8 * t] = 0x81 + t as u8;
            ifo[pgci + 12 + 8 * t..pgci + 16 + 8 * t]
                .copy_from_slice(&(start as u32).to_be_bytes());
            let pgc = pgci + start;
            ifo[pgc + 2] = map.len() as u8;
            ifo[pgc + 3] = cells.len() as u8;
            ifo[pgc + 0xE6..pgc + 0xE8].copy_from_slice(&0xECu16.to_be_bytes());
            ifo[pgc + 0xEC..pgc + 0xEC + map.len()].copy_from_slice(map);
            ifo[pgc + 0xE8..pgc + 0xEA].copy_from_slice(&0x100u16.to_be_bytes());
            for (i, (mode, first, last, time)) in cells.iter().enumerate() {
                let at = pgc + 0x100 + 24 * i;
                ifo[at] = *mode;
                ifo[at + 4..at + 8].copy_from_slice(time);
                ifo[at + 8..at + 12].copy_from_slice(&first.to_be_bytes());
                ifo[at + 20..at + 24].copy_from_slice(&last.to_be_bytes());
            }
        }
        ifo
    }

    #[test]
    fn chapters_start_where_the_cells_before_their_program_end() {
        // 30 frames a second (NTSC): 4 s 24 frames, 7 s 6 frames, 8 s.
        let cells: [Cell; 3] = [
            (0x02, 0, 501, [0x00, 0x00, 0x04, 0xe4]),
            (0x08, 502, 1312, [0x00, 0x00, 0x07, 0xc6]),
            (0x08, 1313, 2254, [0x00, 0x00, 0x08, 0xc0]),
        ];
        let ifo = ifo_with_titles(&[(&[1, 2, 3], &[1, 2, 3], &cells)]);
        let info = parse_title_set_info(&ifo).unwrap();
        assert_eq!(info.languages, [Some("eng".to_string())]);
        assert_eq!(info.chapters(), [0.0, 4.8, 12.0]);
        assert_eq!(info.titles.len(), 1);
        assert_eq!(info.titles[0].cells, [[0, 501], [502, 1312], [1313, 2254]]);
        assert_eq!(info.titles[0].seconds, 20.0);
        // Two cells to a program; 25 frames a second (PAL): 1 h 10 frames, 1 s.
        let pal: [Cell; 3] = [
            (0, 0, 9, [0x01, 0x00, 0x00, 0x50]),
            (0, 10, 19, [0x00, 0x00, 0x01, 0x40]),
            (0, 20, 29, [0x00, 0x00, 0x02, 0x00]),
        ];
        let ifo = ifo_with_titles(&[(&[1, 2], &[1, 3], &pal)]);
        assert_eq!(
            parse_title_set_info(&ifo).unwrap().chapters(),
            [0.0, 3601.4]
        );

        // A title that does not play the VOBs as they lie: the title is
        // read, but the VOBs joined have no chapters.
        let skipping = [cells[0], (0, 600, 1312, cells[1].3)];
        let late = [(0, 10, 501, cells[0].3)];
        for ifo in [
            ifo_with_titles(&[(&[1, 2], &[1, 2], &skipping)]),
            ifo_with_titles(&[(&[1], &[1], &late)]),
        ] {
            let info = parse_title_set_info(&ifo).unwrap();
            assert!(info.chapters().is_empty(), "{:?}", info.chapters());
            assert_eq!(info.titles.len(), 1);
        }
        // Angles, or a chapter of no program: no title, the languages still read.
        let mut angles = cells;
        angles[1].0 = 0x50; // the first cell of an angle block
        for ifo in [
            ifo_with_titles(&[(&[1, 2, 3], &[1, 2, 3], &angles)]),
            ifo_with_titles(&[(&[1, 4], &[1, 2, 3], &cells)]),
        ] {
            let info = parse_title_set_info(&ifo).unwrap();
            assert!(
                info.titles.is_empty() && info.chapters().is_empty(),
                "{info:?}"
            );
            assert_eq!(info.languages.len(), 1);
        }
        let mut not_bcd = ifo_with_titles(&[(&[1], &[1], &cells[..1])]);
        not_bcd[4096 + 16 + 0x100 + 6] = 0x0a;
        assert!(parse_title_set_info(&not_bcd).unwrap().titles.is_empty());
        // Cut anywhere, the tables are never read past the end.
        for len in 0..ifo.len() {
            let _ = parse_titles(&ifo[..len]);
        }
    }

    #[test]
    fn a_title_set_of_episodes_gives_each_its_cells_as_ranges_of_the_vobs() {
        let second = [0x00, 0x00, 0x01, 0xc0];
        let one: [Cell; 2] = [(0, 0, 9, second), (0, 10, 19, second)];
        let two: [Cell; 1] = [(0, 20, 39, second)];
        let ifo = ifo_with_titles(&[(&[1, 2], &[1, 2], &one), (&[1], &[1], &two)]);
        let info = parse_title_set_info(&ifo).unwrap();
        assert_eq!(info.titles.len(), 2);
        assert_eq!((info.titles[0].number, info.titles[1].number), (1, 2));
        assert_eq!(info.titles[0].chapters, [0.0, 1.0]);
        assert_eq!(info.titles[1].chapters, [0.0]);
        assert!(
            info.chapters().is_empty(),
            "not one title: no chapters for the whole"
        );
        // VOBs of 25 and 15 sectors: the second title is cut by the first VOB's end.
        let vobs = [25 * 2048, 15 * 2048];
        assert_eq!(info.titles[0].pieces(&vobs), Some(vec![[0, 0, 20 * 2048]]));
        assert_eq!(
            info.titles[1].pieces(&vobs),
            Some(vec![[0, 20 * 2048, 5 * 2048], [1, 0, 15 * 2048]])
        );
        assert_eq!(
            info.titles[1].pieces(&[25 * 2048]),
            None,
            "past the last VOB"
        );
    }

    #[test]
    fn a_vob_is_scrambled_when_a_content_packet_says_so() {
        // A pack header (MPEG-2, no stuffing) and a PES header of `stream`.
        let pack = |stream: u8, flags: u8| {
            let mut p = vec![0u8; 2048];
            p[..4].copy_from_slice(&[0, 0, 1, 0xba]);
            p[4] = 0x44;
            p[13] = 0xf8;
            p[14..21].copy_from_slice(&[0, 0, 1, stream, 0x07, 0xec, flags]);
            p
        };
        let nav = pack(0xbf, 0x00);
        let clear: Vec<u8> = [nav.clone(), pack(0xe0, 0x81), pack(0xbd, 0x81)].concat();
        assert!(!css_scrambled(&clear));
        for stream in [0xe0, 0xbd, 0xc0] {
            let scrambled = [nav.clone(), pack(stream, 0x91)].concat();
            assert!(css_scrambled(&scrambled), "stream {stream:#x}");
        }
        // The navigation packs' private stream 2 has no such bits.
        assert!(!css_scrambled(&pack(0xbf, 0x90)));
        assert!(!css_scrambled(&[0u8; 4096]));
        assert!(!css_scrambled(&clear[..100]));
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
