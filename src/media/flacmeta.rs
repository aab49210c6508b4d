//! Native reader of a FLAC file's STREAMINFO and Vorbis comments.
//!
//! Used to verify what libFLAC wrote (MD5, length, bit depth) and to recognise
//! our own earlier output, without spawning a process per file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub sample_rate: u32,
    pub channels: u8,
    pub bits_per_sample: u8,
    pub total_samples: u64,
    /// MD5 of the decoded PCM (interleaved, little-endian, `bits` rounded up to bytes).
    pub md5: [u8; 16],
}

impl StreamInfo {
    pub fn md5_hex(&self) -> String {
        self.md5.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlacMeta {
    pub stream_info: StreamInfo,
    /// Vorbis comments with upper-cased keys; the last value wins.
    pub tags: BTreeMap<String, String>,
    /// Where the audio frames start: just past the last metadata block.
    pub audio_offset: u64,
    /// The SEEKTABLE's points, placeholders left out; none without one.
    pub seek_points: Vec<SeekPoint>,
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

pub fn read(path: &Path) -> io::Result<FlacMeta> {
    read_open(&super::safe_open::open_regular(path)?)
}

/// `read` on a file opened with `safe_open`.
pub fn read_open(file: &File) -> io::Result<FlacMeta> {
    meta_from(&mut BufReader::new(file))
}

/// `read` on a FLAC file (or its first part, the metadata) already in memory.
pub fn parse(data: &[u8]) -> io::Result<FlacMeta> {
    meta_from(io::Cursor::new(data))
}

/// The metadata blocks at the start of `r`, read up to the last one.
fn meta_from(mut r: impl Read + Seek) -> io::Result<FlacMeta> {
    r.seek(SeekFrom::Start(0))?;
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic)?;
    if &magic != b"fLaC" {
        return Err(invalid("not a FLAC file"));
    }
    let mut stream_info = None;
    let mut tags = BTreeMap::new();
    let mut seek_points = Vec::new();
    let mut audio_offset = 4u64;
    loop {
        let mut hdr = [0u8; 4];
        r.read_exact(&mut hdr)?;
        let last = hdr[0] & 0x80 != 0;
        let kind = hdr[0] & 0x7f;
        let len = u32::from_be_bytes([0, hdr[1], hdr[2], hdr[3]]) as usize;
        audio_offset += 4 + len as u64;
        match kind {
            0 | BLOCK_SEEKTABLE | BLOCK_VORBIS_COMMENT => {
                let mut body = vec![0u8; len];
                r.read_exact(&mut body)?;
                match kind {
                    0 => stream_info = Some(parse_stream_info(&body)?),
                    BLOCK_SEEKTABLE => seek_points = parse_seek_table(&body)?,
                    _ => tags = parse_comments(&body)?,
                }
            }
            // Pictures (cover art, often megabytes) and the rest are not read.
            _ => {
                r.seek(SeekFrom::Current(len as i64))?;
            }
        }
        if last {
            break;
        }
    }
    let stream_info = stream_info.ok_or_else(|| invalid("FLAC file has no STREAMINFO"))?;
    Ok(FlacMeta {
        stream_info,
        tags,
        audio_offset,
        seek_points,
    })
}

fn parse_seek_table(b: &[u8]) -> io::Result<Vec<SeekPoint>> {
    if !b.len().is_multiple_of(SEEK_POINT_BYTES) {
        return Err(invalid("SEEKTABLE length is not a whole number of points"));
    }
    const PLACEHOLDER: u64 = u64::MAX;
    Ok(b.chunks(SEEK_POINT_BYTES)
        .map(|c| SeekPoint {
            sample: u64::from_be_bytes(c[..8].try_into().unwrap()),
            offset: u64::from_be_bytes(c[8..16].try_into().unwrap()),
            frame_samples: u16::from_be_bytes([c[16], c[17]]),
        })
        .filter(|p| p.sample != PLACEHOLDER)
        .collect())
}

fn parse_stream_info(b: &[u8]) -> io::Result<StreamInfo> {
    if b.len() < 34 {
        return Err(invalid("STREAMINFO too short"));
    }
    let packed = u64::from_be_bytes(b[10..18].try_into().unwrap());
    Ok(StreamInfo {
        sample_rate: (packed >> 44) as u32,
        channels: ((packed >> 41) & 0x7) as u8 + 1,
        bits_per_sample: ((packed >> 36) & 0x1f) as u8 + 1,
        total_samples: packed & 0xf_ffff_ffff,
        md5: b[18..34].try_into().unwrap(),
    })
}

fn parse_comments(b: &[u8]) -> io::Result<BTreeMap<String, String>> {
    let mut pos = 0usize;
    // Lengths are the file's: on a 32-bit board `pos + len` could overflow.
    let take_u32 = |pos: &mut usize| -> io::Result<usize> {
        let s = pos
            .checked_add(4)
            .and_then(|end| b.get(*pos..end))
            .ok_or_else(|| invalid("comment block cut short"))?;
        *pos += 4;
        Ok(u32::from_le_bytes(s.try_into().unwrap()) as usize)
    };
    let vendor_len = take_u32(&mut pos)?;
    pos = pos.saturating_add(vendor_len);
    let count = take_u32(&mut pos)?;
    let mut tags = BTreeMap::new();
    for _ in 0..count {
        let len = take_u32(&mut pos)?;
        let entry = pos
            .checked_add(len)
            .and_then(|end| b.get(pos..end))
            .ok_or_else(|| invalid("comment cut short"))?;
        pos += len;
        let entry = String::from_utf8_lossy(entry);
        if let Some((k, v)) = entry.split_once('=') {
            tags.insert(k.to_ascii_uppercase(), v.to_string());
        }
    }
    Ok(tags)
}

const BLOCK_PADDING: u8 = 1;
const BLOCK_SEEKTABLE: u8 = 3;
const BLOCK_VORBIS_COMMENT: u8 = 4;
const BLOCK_CUESHEET: u8 = 5;
/// Bytes of one SEEKTABLE entry.
const SEEK_POINT_BYTES: usize = 18;

/// One SEEKTABLE entry: a frame's first sample, its byte offset from the
/// first frame, and how many samples it holds. Players jump straight to it
/// instead of searching a long file for the place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeekPoint {
    pub sample: u64,
    pub offset: u64,
    pub frame_samples: u16,
}

/// The blocks `write_tags` replaces: what it writes, and room to grow.
fn replaceable(kind: u8) -> bool {
    matches!(
        kind,
        BLOCK_PADDING | BLOCK_SEEKTABLE | BLOCK_VORBIS_COMMENT | BLOCK_CUESHEET
    )
}

fn seek_table_block(points: &[SeekPoint]) -> Vec<u8> {
    let mut body = Vec::with_capacity(points.len() * SEEK_POINT_BYTES);
    for p in points {
        body.extend_from_slice(&p.sample.to_be_bytes());
        body.extend_from_slice(&p.offset.to_be_bytes());
        body.extend_from_slice(&p.frame_samples.to_be_bytes());
    }
    body
}

/// At most `room` of `points`, evenly spaced and always the first: a very
/// long track gets a point every 20 or 30 seconds instead of every 10.
fn thinned(points: &[SeekPoint], room: usize) -> Vec<SeekPoint> {
    if room == 0 {
        return Vec::new();
    }
    let step = points.len().div_ceil(room).max(1);
    points.iter().step_by(step).copied().collect()
}

/// One metadata block header: where it starts and what it is.
struct BlockAt {
    offset: u64,
    kind: u8,
    last: bool,
    len: u64,
}

fn block_list(f: &mut File) -> io::Result<Vec<BlockAt>> {
    f.seek(SeekFrom::Start(0))?;
    let mut magic = [0u8; 4];
    f.read_exact(&mut magic)?;
    if &magic != b"fLaC" {
        return Err(invalid("not a FLAC file"));
    }
    let mut blocks = Vec::new();
    let mut offset = 4u64;
    loop {
        let mut hdr = [0u8; 4];
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(&mut hdr)?;
        let b = BlockAt {
            offset,
            kind: hdr[0] & 0x7f,
            last: hdr[0] & 0x80 != 0,
            len: u64::from(u32::from_be_bytes([0, hdr[1], hdr[2], hdr[3]])),
        };
        offset += 4 + b.len;
        let last = b.last;
        blocks.push(b);
        if last {
            return Ok(blocks);
        }
    }
}

/// Fills in what an encoder writing to a pipe could not go back for: the
/// frame sizes, the total sample count and the MD5 of the audio, in one
/// write of the STREAMINFO block (the first block, right after "fLaC").
pub fn complete_stream_info(
    path: &Path,
    min_frame_bytes: u32,
    max_frame_bytes: u32,
    total_samples: u64,
    md5: [u8; 16],
) -> io::Result<()> {
    let mut f = super::safe_open::open_regular_rw(path)?;
    let mut head = [0u8; 42];
    f.read_exact(&mut head)?;
    if &head[..4] != b"fLaC" || head[4] & 0x7f != 0 {
        return Err(invalid("not a FLAC file with STREAMINFO first"));
    }
    if total_samples >= 1 << 36 || max_frame_bytes >= 1 << 24 {
        return Err(invalid("stream too long for STREAMINFO"));
    }
    let body = &mut head[8..];
    body[4..7].copy_from_slice(&min_frame_bytes.to_be_bytes()[1..]);
    body[7..10].copy_from_slice(&max_frame_bytes.to_be_bytes()[1..]);
    let packed = u64::from_be_bytes(body[10..18].try_into().unwrap());
    let packed = (packed & !0xf_ffff_ffff) | total_samples;
    body[10..18].copy_from_slice(&packed.to_be_bytes());
    body[18..34].copy_from_slice(&md5);
    f.seek(SeekFrom::Start(8))?;
    f.write_all(&head[8..])
}

fn comment_block(vendor: &str, tags: &[(String, String)]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    body.extend_from_slice(vendor.as_bytes());
    body.extend_from_slice(&(tags.len() as u32).to_le_bytes());
    for (k, v) in tags {
        let entry = format!("{k}={v}");
        body.extend_from_slice(&(entry.len() as u32).to_le_bytes());
        body.extend_from_slice(entry.as_bytes());
    }
    body
}

fn block_header(kind: u8, last: bool, len: usize) -> [u8; 4] {
    let l = (len as u32).to_be_bytes();
    [kind | if last { 0x80 } else { 0 }, l[1], l[2], l[3]]
}

/// Replaces a FLAC file's Vorbis comments with `tags` (in this order), its
/// SEEKTABLE with `seek_points` (none: no table) and its CUESHEET with
/// `cuesheet` (a block's body; empty: none). The audio frames and
/// STREAMINFO (with its MD5) are never touched: the new blocks are written
/// into the old comment, seek table and padding space when the comments
/// fit (the seek table thinned out if it must be), otherwise the file is
/// rebuilt next to itself and renamed over it.
pub fn write_tags(
    path: &Path,
    vendor: &str,
    tags: &[(String, String)],
    seek_points: &[SeekPoint],
    cuesheet: &[u8],
) -> io::Result<()> {
    let comment = comment_block(vendor, tags);
    if comment.len() >= 1 << 24 || cuesheet.len() >= 1 << 24 {
        return Err(invalid("tags too large for a FLAC comment block"));
    }
    // The blocks of a fixed size: the comments, then the cue sheet.
    let mut fixed = Vec::with_capacity(8 + comment.len() + cuesheet.len());
    fixed.extend_from_slice(&block_header(BLOCK_VORBIS_COMMENT, false, comment.len()));
    fixed.extend_from_slice(&comment);
    if !cuesheet.is_empty() {
        fixed.extend_from_slice(&block_header(BLOCK_CUESHEET, false, cuesheet.len()));
        fixed.extend_from_slice(cuesheet);
    }
    let mut f = super::safe_open::open_regular_rw(path)?;
    let blocks = block_list(&mut f)?;
    // In place: a run of adjacent replaceable blocks big enough for the comments.
    let mut i = 0;
    while i < blocks.len() {
        let mut j = i;
        while j < blocks.len() && replaceable(blocks[j].kind) {
            j += 1;
        }
        if j > i {
            let start = blocks[i].offset;
            let space = blocks[j - 1].offset + 4 + blocks[j - 1].len - start;
            let need = fixed.len() as u64;
            // Points that fit beside the comments, leaving room for the
            // padding block's header (the remainder may not be 1–3 bytes).
            let room = space.saturating_sub(need + 8) as usize / SEEK_POINT_BYTES;
            let table = seek_table_block(&thinned(seek_points, room));
            let need = if table.is_empty() {
                need
            } else {
                need + 4 + table.len() as u64
            };
            let last = blocks[j - 1].last;
            let rest = space.saturating_sub(need);
            if space == need || rest >= 4 {
                let mut out = Vec::with_capacity(space as usize);
                if !table.is_empty() {
                    out.extend_from_slice(&block_header(BLOCK_SEEKTABLE, false, table.len()));
                    out.extend_from_slice(&table);
                }
                let fixed_at = out.len();
                out.extend_from_slice(&fixed);
                if last && rest == 0 {
                    // The last of the fixed blocks ends the metadata.
                    let last_header = match cuesheet.is_empty() {
                        true => fixed_at,
                        false => fixed_at + 4 + comment.len(),
                    };
                    out[last_header] |= 0x80;
                }
                if rest >= 4 {
                    out.extend_from_slice(&block_header(BLOCK_PADDING, last, rest as usize - 4));
                    out.resize(space as usize, 0);
                }
                f.seek(SeekFrom::Start(start))?;
                // The caller fsyncs the finished file once (as convert does).
                return f.write_all(&out);
            }
            i = j;
        } else {
            i += 1;
        }
    }
    let table = seek_table_block(seek_points);
    if table.len() >= 1 << 24 {
        return Err(invalid("seek table too large for a FLAC block"));
    }
    rebuild_with(&mut f, path, &blocks, &fixed, &table)
}

fn rebuild_with(
    f: &mut File,
    path: &Path,
    blocks: &[BlockAt],
    fixed: &[u8],
    table: &[u8],
) -> io::Result<()> {
    let tmp = path.with_extension("retag");
    let result = (|| {
        let mut w = BufWriter::new(super::safe_open::create_temp(&tmp)?);
        w.write_all(b"fLaC")?;
        let kept: Vec<&BlockAt> = blocks.iter().filter(|b| !replaceable(b.kind)).collect();
        for b in &kept {
            f.seek(SeekFrom::Start(b.offset + 4))?;
            w.write_all(&block_header(b.kind, false, b.len as usize))?;
            io::copy(&mut (&mut *f).take(b.len), &mut w)?;
        }
        if !table.is_empty() {
            w.write_all(&block_header(BLOCK_SEEKTABLE, false, table.len()))?;
            w.write_all(table)?;
        }
        w.write_all(fixed)?;
        w.write_all(&block_header(BLOCK_PADDING, true, 4096))?;
        w.write_all(&[0u8; 4096])?;
        let frames = blocks.last().map_or(4, |b| b.offset + 4 + b.len);
        f.seek(SeekFrom::Start(frames))?;
        io::copy(f, &mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_streaminfo_and_comments() {
        let mut f = b"fLaC".to_vec();
        f.extend_from_slice(&[0x00, 0, 0, 34]);
        let mut si = vec![0x10, 0, 0x10, 0, 0, 0, 0, 0, 0, 0];
        // 48000 Hz, 8 channels, 24 bits, 2048 samples
        let packed: u64 = (48000u64 << 44) | (7 << 41) | (23 << 36) | 2048;
        si.extend_from_slice(&packed.to_be_bytes());
        si.extend_from_slice(&[0xab; 16]);
        f.extend_from_slice(&si);
        let mut vc = Vec::new();
        vc.extend_from_slice(&3u32.to_le_bytes());
        vc.extend_from_slice(b"lav");
        vc.extend_from_slice(&1u32.to_le_bytes());
        let c = "title=Été";
        vc.extend_from_slice(&(c.len() as u32).to_le_bytes());
        vc.extend_from_slice(c.as_bytes());
        f.push(0x84);
        f.extend_from_slice(&(vc.len() as u32).to_be_bytes()[1..]);
        f.extend_from_slice(&vc);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.flac");
        std::fs::write(&p, f).unwrap();
        let m = read(&p).unwrap();
        assert_eq!(m.stream_info.sample_rate, 48000);
        assert_eq!(m.stream_info.channels, 8);
        assert_eq!(m.stream_info.bits_per_sample, 24);
        assert_eq!(m.stream_info.total_samples, 2048);
        assert_eq!(m.stream_info.md5_hex(), "ab".repeat(16));
        assert_eq!(m.tags.get("TITLE").map(String::as_str), Some("Été"));
        assert_eq!(parse(&std::fs::read(&p).unwrap()).unwrap(), m);
    }

    fn tiny_flac(comment_and_padding: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut f = b"fLaC".to_vec();
        f.extend_from_slice(&[0x00, 0, 0, 34]);
        f.extend_from_slice(&[7u8; 34]);
        for (n, (kind, body)) in comment_and_padding.iter().enumerate() {
            let last = n + 1 == comment_and_padding.len();
            f.extend_from_slice(&block_header(*kind, last, body.len()));
            f.extend_from_slice(body);
        }
        f.extend_from_slice(b"AUDIOFRAMES");
        f
    }

    #[test]
    fn rewrites_tags_in_place_or_by_rebuilding_and_keeps_the_audio() {
        let dir = tempfile::tempdir().unwrap();
        let points: Vec<SeekPoint> = (0..100)
            .map(|i| SeekPoint {
                sample: i * 479_232,
                offset: i * 1_000_003,
                frame_samples: 4096,
            })
            .collect();
        let tags = vec![
            ("TITLE".to_string(), "Symphonie №9 \"live\"".to_string()),
            ("ENCODER".to_string(), "dtsflac".to_string()),
        ];
        for (name, blocks) in [
            (
                "roomy",
                vec![
                    (BLOCK_VORBIS_COMMENT, comment_block("x", &[])),
                    (BLOCK_PADDING, vec![0; 512]),
                ],
            ),
            (
                "tight",
                vec![(BLOCK_VORBIS_COMMENT, comment_block("x", &[]))],
            ),
        ] {
            let p = dir.path().join(format!("{name}.flac"));
            let original = tiny_flac(&blocks);
            std::fs::write(&p, &original).unwrap();
            write_tags(&p, "dtsflac test", &tags, &points, &[]).unwrap();
            let m = read(&p).unwrap();
            let table = &m.seek_points;
            if name == "roomy" {
                // 512 bytes of padding hold 24 of the 100: every fifth.
                assert_eq!(*table, thinned(&points, 24), "{name}");
                assert_eq!(table.len(), 20, "{name}");
                assert_eq!(table[1], points[5], "{name}");
            } else {
                assert_eq!(*table, points, "{name}");
            }
            assert_eq!(m.tags["TITLE"], "Symphonie №9 \"live\"", "{name}");
            assert_eq!(m.tags["ENCODER"], "dtsflac", "{name}");
            assert_eq!(m.stream_info.md5, [7u8; 16], "{name}");
            let bytes = std::fs::read(&p).unwrap();
            assert!(
                bytes.ends_with(b"AUDIOFRAMES"),
                "{name}: audio frames damaged"
            );
            if name == "roomy" {
                assert_eq!(
                    bytes.len(),
                    original.len(),
                    "in-place rewrite changed the size"
                );
            }
        }
    }
}
