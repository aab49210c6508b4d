//! Read-back check of a stored FLAC file, frame by frame, without decoding.
//!
//! libFLAC's verify mode (`flac -V`) already decodes every frame it encodes
//! and compares it, sample for sample, with the PCM it was given. What it
//! cannot see is the file as the drive stores it. This walk reads the file
//! back and checks every frame header's CRC-8, every frame's CRC-16 and
//! that the frames follow one another without a gap; it counts the samples
//! (for the caller to hold against STREAMINFO and the master's length): a
//! flipped, lost or stale byte anywhere in the audio fails it. It costs one
//! pass of CRC over the file (a few hundredths of a second per 100 MB), where
//! a second full decode and MD5 cost a second and a half. On the way it notes
//! a seek point every ten seconds, as `flac` places them: libFLAC fed from a
//! pipe does not know the length and writes no SEEKTABLE.

use std::io::{self, Read};
use std::path::Path;

use super::flacmeta::SeekPoint;

/// Seconds between seek points: `flac`'s own default (`-S 10s`).
const SEEK_EVERY_SECONDS: u64 = 10;

/// What a FLAC file's frames add up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramesChecked {
    pub frames: u64,
    pub samples: u64,
    /// Smallest and largest frame in bytes, as STREAMINFO records them.
    pub min_frame_bytes: u32,
    pub max_frame_bytes: u32,
    /// For every tenth second, the frame holding it (first sample, offset
    /// from the first frame, length), in order and without repeats.
    pub seek_points: Vec<SeekPoint>,
}

impl FramesChecked {
    /// What `dtsflac check-flac --machine` prints for the converting job:
    /// line 1 the counts, line 2 the seek points, three numbers each.
    pub fn to_machine(&self) -> String {
        let points: Vec<String> = self
            .seek_points
            .iter()
            .map(|p| format!("{} {} {}", p.sample, p.offset, p.frame_samples))
            .collect();
        format!(
            "{} {} {} {}\n{}\n",
            self.frames,
            self.samples,
            self.min_frame_bytes,
            self.max_frame_bytes,
            points.join(" ")
        )
    }

    /// Reads back what `to_machine` wrote; `None` if it is not that.
    pub fn from_machine(text: &str) -> Option<FramesChecked> {
        let mut lines = text.lines();
        let mut numbers = || -> Option<Vec<u64>> {
            let line = lines.next().unwrap_or_default();
            line.split_whitespace().map(|w| w.parse().ok()).collect()
        };
        let (counts, seek) = (numbers()?, numbers()?);
        let &[frames, samples, min, max] = counts.as_slice() else {
            return None;
        };
        if seek.len() % 3 != 0 {
            return None;
        }
        Some(FramesChecked {
            frames,
            samples,
            min_frame_bytes: u32::try_from(min).ok()?,
            max_frame_bytes: u32::try_from(max).ok()?,
            seek_points: seek
                .chunks(3)
                .map(|p| {
                    Some(SeekPoint {
                        sample: p[0],
                        offset: p[1],
                        frame_samples: u16::try_from(p[2]).ok()?,
                    })
                })
                .collect::<Option<_>>()?,
        })
    }
}

/// Why a FLAC file failed the check; the message names the frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("cannot read the FLAC back: {0}")]
    Io(#[from] io::Error),
    #[error("the FLAC is damaged: {0}")]
    Damaged(String),
}

fn damaged(m: String) -> FrameError {
    FrameError::Damaged(m)
}

/// CRC-16 (polynomial 0x8005, MSB first) tables for eight bytes at a time,
/// as libFLAC computes it: `T[k][b]` is the CRC of `b` followed by k zeros.
const CRC16: [[u16; 256]; 8] = {
    let mut t = [[0u16; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 0x8000 != 0 {
                (c << 1) ^ 0x8005
            } else {
                c << 1
            };
            bit += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let p = t[k - 1][i];
            t[k][i] = (p << 8) ^ t[0][(p >> 8) as usize];
            i += 1;
        }
        k += 1;
    }
    t
};

/// CRC-16 of `data` continuing from `crc`: folded with the CPU's
/// carry-less multiply where it has one (x86-64 PCLMULQDQ, ARMv8 PMULL:
/// ~5x the table's speed), by table elsewhere.
pub(super) fn crc16(crc: u16, data: &[u8]) -> u16 {
    if data.len() >= 64 {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("pclmulqdq") {
            // SAFETY: the CPU has the instruction.
            return unsafe { clmul::crc16(crc, data) };
        }
        #[cfg(target_arch = "aarch64")]
        if std::arch::is_aarch64_feature_detected!("pmull") {
            // SAFETY: the CPU has the instruction.
            return unsafe { clmul::crc16(crc, data) };
        }
    }
    crc16_table(crc, data)
}

/// Folding 16 bytes at a time: a block B followed by 128 more bits is
/// B·x^128 ≡ B_hi·(x^192 mod P) + B_lo·(x^128 mod P), at most 80 bits,
/// which is added to the next block. What is left at the end (one block
/// plus the tail) goes through the table; CRCs are linear, so the result
/// is exact.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod clmul {
    /// x^n mod P, P = x^16 + x^15 + x^2 + 1.
    const fn x_pow_mod(n: u32) -> u64 {
        let mut r: u64 = 1;
        let mut i = 0;
        while i < n {
            r <<= 1;
            if r & 0x1_0000 != 0 {
                r ^= 0x1_8005;
            }
            i += 1;
        }
        r
    }
    const K128: u64 = x_pow_mod(128);
    const K192: u64 = x_pow_mod(192);

    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "pclmulqdq")]
    unsafe fn mul(a: u64, b: u64) -> u128 {
        use std::arch::x86_64::{_mm_clmulepi64_si128, _mm_set_epi64x};
        let r = _mm_clmulepi64_si128(_mm_set_epi64x(0, a as i64), _mm_set_epi64x(0, b as i64), 0);
        // SAFETY: both are 128 bits; x86 keeps the low lane first.
        unsafe { std::mem::transmute::<_, u128>(r) }
    }

    #[cfg(target_arch = "aarch64")]
    #[inline]
    #[target_feature(enable = "aes")]
    unsafe fn mul(a: u64, b: u64) -> u128 {
        std::arch::aarch64::vmull_p64(a, b)
    }

    macro_rules! folded {
        ($feature:literal) => {
            /// Needs at least 16 bytes.
            #[target_feature(enable = $feature)]
            pub unsafe fn crc16(crc: u16, data: &[u8]) -> u16 {
                let mut blocks = data.chunks_exact(16);
                let first = blocks.next().expect("at least one block");
                // The running CRC adds to the first 16 bits of the message.
                let mut acc =
                    u128::from_be_bytes(first.try_into().unwrap()) ^ (u128::from(crc) << 112);
                for block in &mut blocks {
                    let next = u128::from_be_bytes(block.try_into().unwrap());
                    // SAFETY: the caller checked the CPU.
                    acc = unsafe { mul((acc >> 64) as u64, K192) ^ mul(acc as u64, K128) } ^ next;
                }
                let rest = super::crc16_table(0, &acc.to_be_bytes());
                super::crc16_table(rest, blocks.remainder())
            }
        };
    }
    #[cfg(target_arch = "x86_64")]
    folded!("pclmulqdq");
    #[cfg(target_arch = "aarch64")]
    folded!("aes");
}

fn crc16_table(mut crc: u16, data: &[u8]) -> u16 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let [hi, lo] = crc.to_be_bytes();
        crc = CRC16[7][(c[0] ^ hi) as usize]
            ^ CRC16[6][(c[1] ^ lo) as usize]
            ^ CRC16[5][c[2] as usize]
            ^ CRC16[4][c[3] as usize]
            ^ CRC16[3][c[4] as usize]
            ^ CRC16[2][c[5] as usize]
            ^ CRC16[1][c[6] as usize]
            ^ CRC16[0][c[7] as usize];
    }
    for &b in chunks.remainder() {
        crc = (crc << 8) ^ CRC16[0][((crc >> 8) as u8 ^ b) as usize];
    }
    crc
}

/// CRC-8 (polynomial 0x07) of a frame header.
fn crc8(data: &[u8]) -> u8 {
    let mut crc = 0u8;
    for &b in data {
        crc ^= b;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x07
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A frame header that passed its CRC-8.
#[derive(Debug, Clone, Copy)]
pub(super) struct Header {
    pub(super) variable_blocking: bool,
    /// Frame number (fixed blocking) or first sample (variable blocking).
    pub(super) number: u64,
    pub(super) block_size: u64,
    pub(super) channels: u8,
    /// 0–7 independent channels, 8 left/side, 9 right/side, 10 mid/side.
    pub(super) assignment: u8,
    /// 0: "as in STREAMINFO".
    pub(super) bits: u8,
    /// Bytes of the header, its CRC-8 included.
    pub(super) len: usize,
}

/// Parses the frame header at the start of `b`; `None` if it is not one
/// (or `b` is too short to tell, which only happens at the end of the file).
pub(super) fn parse_header(b: &[u8]) -> Option<Header> {
    if b.len() < 6 || b[0] != 0xFF || b[1] & 0xFE != 0xF8 {
        return None;
    }
    let variable_blocking = b[1] & 1 == 1;
    let size_code = b[2] >> 4;
    let rate_code = b[2] & 0x0F;
    let assignment = b[3] >> 4;
    let bits_code = (b[3] >> 1) & 0x07;
    if size_code == 0 || rate_code == 0x0F || assignment > 10 || bits_code == 3 || b[3] & 1 != 0 {
        return None;
    }
    // The frame or sample number, UTF-8 style: 1 to 7 bytes.
    let lead = b[4];
    let extra = lead.leading_ones() as usize;
    let (mut number, extra) = match extra {
        0 => (u64::from(lead), 0),
        2..=7 => (u64::from(lead) & (0x7F >> extra), extra - 1),
        _ => return None,
    };
    let mut pos = 5;
    for _ in 0..extra {
        let c = *b.get(pos)?;
        if c & 0xC0 != 0x80 {
            return None;
        }
        number = (number << 6) | u64::from(c & 0x3F);
        pos += 1;
    }
    let block_size = match size_code {
        1 => 192,
        2..=5 => 576 << (size_code - 2),
        6 => {
            pos += 1;
            u64::from(*b.get(pos - 1)?) + 1
        }
        7 => {
            pos += 2;
            u64::from(u16::from_be_bytes([*b.get(pos - 2)?, *b.get(pos - 1)?])) + 1
        }
        _ => 256 << (size_code - 8),
    };
    pos += match rate_code {
        12 => 1,
        13 | 14 => 2,
        _ => 0,
    };
    let crc = *b.get(pos)?;
    if crc8(&b[..pos]) != crc {
        return None;
    }
    let channels = if assignment < 8 { assignment + 1 } else { 2 };
    let bits = [0, 8, 12, 0, 16, 20, 24, 32][bits_code as usize];
    Some(Header {
        variable_blocking,
        number,
        block_size,
        channels,
        assignment,
        bits,
        len: pos + 1,
    })
}

/// Checks every frame of the FLAC at `path` (their format against its
/// STREAMINFO) and counts what they hold.
pub fn check(path: &Path) -> Result<FramesChecked, FrameError> {
    check_with_total(path).map(|(checked, _)| checked)
}

/// `check`, and the frames' samples must be what STREAMINFO says (where it
/// says: 0 means "unknown" in FLAC).
pub fn check_against_stream_info(path: &Path) -> Result<FramesChecked, FrameError> {
    agreeing_with_total(check_with_total(path)?)
}

/// The frames checked, if their samples are STREAMINFO's total (or it is 0).
fn agreeing_with_total(
    (checked, total): (FramesChecked, u64),
) -> Result<FramesChecked, FrameError> {
    if total != 0 && total != checked.samples {
        return Err(damaged(format!(
            "its frames hold {} samples, STREAMINFO says {total}",
            checked.samples
        )));
    }
    Ok(checked)
}

/// The frames checked, and STREAMINFO's total sample count.
fn check_with_total(path: &Path) -> Result<(FramesChecked, u64), FrameError> {
    let meta = super::flacmeta::read(path)?;
    let info = meta.stream_info;
    let mut reader = Window::new(super::safe_open::open_regular(path)?, meta.audio_offset)?;
    checked_with_total(&mut reader, &info)
}

/// `check_against_stream_info` on a whole FLAC file already in memory.
pub fn check_bytes(data: &[u8]) -> Result<FramesChecked, FrameError> {
    let meta = super::flacmeta::parse(data)?;
    let info = meta.stream_info;
    let mut reader = Window::new(io::Cursor::new(data), meta.audio_offset)?;
    agreeing_with_total(checked_with_total(&mut reader, &info)?)
}

/// The frames from `reader` on checked against `info`, and its total.
fn checked_with_total<R: Read>(
    reader: &mut Window<R>,
    info: &super::flacmeta::StreamInfo,
) -> Result<(FramesChecked, u64), FrameError> {
    let seek_every = u64::from(info.sample_rate) * SEEK_EVERY_SECONDS;
    let checked = check_frames(reader, info.channels, info.bits_per_sample, seek_every)?;
    Ok((checked, info.total_samples))
}

/// A sliding window over the audio frames, refilled in large reads.
struct Window<R> {
    file: R,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    base: u64,
    eof: bool,
}

const WINDOW: usize = 1 << 20;
/// The longest possible frame header: what a candidate needs to be judged.
const HEADER_MAX: usize = 16;

impl<R: Read> Window<R> {
    fn new(mut file: R, start: u64) -> io::Result<Window<R>>
    where
        R: io::Seek,
    {
        file.seek(io::SeekFrom::Start(start))?;
        let mut w = Window {
            file,
            buf: Vec::with_capacity(WINDOW),
            base: start,
            eof: false,
        };
        w.fill()?;
        Ok(w)
    }

    /// Tops the buffer up to its capacity (or the end of the file).
    fn fill(&mut self) -> io::Result<()> {
        if self.eof {
            return Ok(());
        }
        let want = WINDOW - self.buf.len();
        let got = (&mut self.file)
            .take(want as u64)
            .read_to_end(&mut self.buf)?;
        self.eof = got < want;
        Ok(())
    }

    /// Drops everything before `keep` (an index into `buf`) and refills.
    fn advance(&mut self, keep: usize) -> io::Result<()> {
        self.buf.drain(..keep);
        self.base += keep as u64;
        self.fill()
    }
}

/// A seek point for the frame at `offset` (from the first frame) holding
/// samples `first..first + len`, when the next multiple of `every` is in it.
fn note_seek_point(
    points: &mut Vec<SeekPoint>,
    next: &mut u64,
    every: u64,
    (first, len, offset): (u64, u64, u64),
) {
    if every == 0 || *next >= first + len {
        return;
    }
    points.push(SeekPoint {
        sample: first,
        offset,
        frame_samples: len as u16,
    });
    *next = (first + len).div_ceil(every) * every;
}

fn check_frames<R: Read>(
    w: &mut Window<R>,
    channels: u8,
    bits: u8,
    seek_every: u64,
) -> Result<FramesChecked, FrameError> {
    let fits = |h: &Header| h.channels == channels && (h.bits == 0 || h.bits == bits);
    let first = parse_header(&w.buf)
        .filter(|h| h.number == 0 && fits(h))
        .ok_or_else(|| damaged("the first audio frame is missing or broken".into()))?;
    let mut current = first;
    let mut frames = 0u64;
    let mut samples = 0u64;
    let (mut min_bytes, mut max_bytes) = (u64::MAX, 0u64);
    // File offset where the current frame starts.
    let audio_start = w.base;
    let mut frame_start = w.base;
    let (mut seek_points, mut next_seek) = (Vec::new(), 0u64);
    // The CRC-16 runs from the current frame's first byte up to `cursor`.
    let mut crc = 0u16;
    // The CRC covers the buffer up to `cursor`; sync codes are looked for
    // from `search` on. The CRC is only brought up to a candidate whose
    // header is valid, so it runs over whole frames at a time.
    let mut cursor = 0usize;
    let mut search = 1usize;
    // Frames start with 0xFF 0xF8 (fixed block size, as libFLAC writes) or
    // 0xFF 0xF9; in the audio 0xFF alone is common, this pair is rare.
    let sync = [0xFF, 0xF8 | u8::from(first.variable_blocking)];
    let finder = memchr::memmem::Finder::new(&sync);
    loop {
        let expected_next = if current.variable_blocking {
            samples + current.block_size
        } else {
            frames + 1
        };
        let search_end = if w.eof {
            w.buf.len()
        } else {
            w.buf.len() - HEADER_MAX
        };
        // A pair may straddle `search_end`: it is found after the refill.
        let found = finder
            .find(&w.buf[search.min(search_end)..(search_end + 1).min(w.buf.len())])
            .map(|i| search + i);
        let Some(p) = found else {
            crc = crc16(crc, &w.buf[cursor..search_end]);
            if w.eof {
                break;
            }
            w.advance(search_end)?;
            (cursor, search) = (0, 0);
            continue;
        };
        search = p + 1;
        let Some(next) = parse_header(&w.buf[p..]).filter(|h| {
            h.number == expected_next && h.variable_blocking == first.variable_blocking && fits(h)
        }) else {
            continue;
        };
        crc = crc16(crc, &w.buf[cursor..p]);
        cursor = p;
        // A frame ends where the next valid header starts and the CRC-16
        // over the frame (its own CRC included) comes to zero.
        if crc == 0 {
            let frame = (samples, current.block_size, frame_start - audio_start);
            note_seek_point(&mut seek_points, &mut next_seek, seek_every, frame);
            frames += 1;
            samples += current.block_size;
            let bytes = w.base + p as u64 - frame_start;
            (min_bytes, max_bytes) = (min_bytes.min(bytes), max_bytes.max(bytes));
            frame_start = w.base + p as u64;
            current = next;
        }
    }
    if crc != 0 {
        return Err(damaged(format!(
            "audio frame {} (from sample {samples}) fails its CRC",
            frames + 1
        )));
    }
    let frame = (samples, current.block_size, frame_start - audio_start);
    note_seek_point(&mut seek_points, &mut next_seek, seek_every, frame);
    frames += 1;
    samples += current.block_size;
    let bytes = w.base + w.buf.len() as u64 - frame_start;
    (min_bytes, max_bytes) = (min_bytes.min(bytes), max_bytes.max(bytes));
    Ok(FramesChecked {
        frames,
        samples,
        min_frame_bytes: min_bytes as u32,
        max_frame_bytes: max_bytes as u32,
        seek_points,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn crc16_matches_the_flac_check_value() {
        // CRC-16/UMTS (FLAC's) of "123456789" is 0xFEE8.
        assert_eq!(crc16(0, b"123456789"), 0xFEE8);
        // Any split gives the same result as one pass.
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 3) as u8).collect();
        let whole = crc16(0, &data);
        for cut in [0, 1, 7, 8, 9, 500, 999, 1000] {
            assert_eq!(crc16(crc16(0, &data[..cut]), &data[cut..]), whole);
        }
        assert_eq!(whole, crc16_table(0, &data));
    }

    #[test]
    fn folded_crc16_equals_the_table() {
        // The folding path must give the table's answer for every length,
        // start value and content (all ones stresses the carries).
        let mut x = 0x1234_5678u32;
        let noise: Vec<u8> = (0..5000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let ones = vec![0xFFu8; 600];
        for data in [&noise[..], &ones[..]] {
            for len in (0..200).chain([255, 256, 257, 511, 599, 600, 4096, 4999]) {
                let len = len.min(data.len());
                for start in [0u16, 1, 0x8000, 0xFFFF, 0x1D0F] {
                    assert_eq!(
                        crc16(start, &data[..len]),
                        crc16_table(start, &data[..len]),
                        "len {len}, start {start:#x}"
                    );
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        assert!(
            !std::arch::is_x86_feature_detected!("pclmulqdq")
                || unsafe { clmul::crc16(7, &noise) } == crc16_table(7, &noise),
        );
    }

    /// A real FLAC from libFLAC: 3.5 s of 6-channel 24-bit noise and tones.
    fn encoded(dir: &Path) -> std::path::PathBuf {
        let raw = dir.join("in.raw");
        let mut pcm = Vec::new();
        let mut x: u32 = 12345;
        for i in 0..(48_000 * 7 / 2) {
            for ch in 0..6u32 {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let tone = ((i as f64 * 0.01 * f64::from(ch + 1)).sin() * 4e6) as i32;
                let s = tone + ((x >> 16) as i32 & 0xFF) - 128;
                pcm.extend_from_slice(&s.to_le_bytes()[..3]);
            }
        }
        std::fs::write(&raw, pcm).unwrap();
        libflac(&raw, &dir.join("out.flac"), &["--channels=6", "--bps=24"])
    }

    /// `raw` (48 kHz, little-endian) encoded by libFLAC into `out`.
    pub(crate) fn libflac(raw: &Path, out: &Path, args: &[&str]) -> std::path::PathBuf {
        let status = Command::new("flac")
            .args([
                "-s",
                "-f",
                "--force-raw-format",
                "--endian=little",
                "--sign=signed",
            ])
            .arg("--sample-rate=48000")
            .args(args)
            .arg("-o")
            .arg(out)
            .arg(raw)
            .status()
            .expect("the flac tool runs (scripts/install-deps.sh installs it)");
        assert!(status.success());
        out.to_path_buf()
    }

    #[test]
    fn a_whole_file_passes_with_every_sample_counted() {
        let dir = tempfile::tempdir().unwrap();
        let f = encoded(dir.path());
        let got = check(&f).unwrap();
        assert_eq!(got.samples, 168_000);
        assert_eq!(got.frames, 168_000_u64.div_ceil(4096));
        // The frame sizes libFLAC recorded in STREAMINFO, found by walking.
        let out = Command::new("metaflac")
            .args(["--show-min-framesize", "--show-max-framesize"])
            .arg(&f)
            .output()
            .unwrap();
        let sizes = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(
            sizes,
            format!("{}\n{}\n", got.min_frame_bytes, got.max_frame_bytes)
        );
    }

    /// 31 s of mono 16-bit noise by libFLAC, with `flac`'s own seek table
    /// (`-S 10s`, its default) or, like ours from a pipe, none.
    fn long_mono(dir: &Path, name: &str, seek_table: &str) -> std::path::PathBuf {
        let raw = dir.join("mono.raw");
        let mut x: u32 = 99;
        let pcm: Vec<u8> = (0..48_000 * 31)
            .flat_map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                ((x >> 20) as i16 - 2048).to_le_bytes()
            })
            .collect();
        std::fs::write(&raw, pcm).unwrap();
        libflac(
            &raw,
            &dir.join(name),
            &["--channels=1", "--bps=16", seek_table],
        )
    }

    /// The seek points `metaflac` lists for the FLAC at `path`.
    fn metaflac_seek_points(path: &Path) -> Vec<SeekPoint> {
        let out = Command::new("metaflac")
            .args(["--list", "--block-type=SEEKTABLE"])
            .arg(path)
            .output()
            .unwrap();
        assert!(out.status.success());
        let field = |line: &str, key: &str| -> u64 {
            let at = line.find(key).unwrap() + key.len();
            line[at..]
                .split(',')
                .next()
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.trim_start().starts_with("point "))
            .map(|l| SeekPoint {
                sample: field(l, "sample_number="),
                offset: field(l, "stream_offset="),
                frame_samples: field(l, "frame_samples=") as u16,
            })
            .collect()
    }

    #[test]
    fn seek_points_are_where_flac_puts_them_and_players_find_them_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let flacs = long_mono(dir.path(), "flac.flac", "-S 10s");
        let ours = long_mono(dir.path(), "ours.flac", "--no-seektable");
        let expected = metaflac_seek_points(&flacs);
        // 0, 10, 20 and 30 s, each in the frame that holds it.
        assert_eq!(expected.len(), 4);
        let checked = check(&ours).unwrap();
        // As the helper process hands it to the converting job.
        assert_eq!(
            FramesChecked::from_machine(&checked.to_machine()),
            Some(checked.clone())
        );
        assert_eq!(FramesChecked::from_machine("1 2 3\n"), None);
        let found = checked.seek_points;
        assert_eq!(found, expected);
        // Written into the file that had none, as a conversion does: the
        // reference tools read the same table and the audio is untouched.
        let audio = |p: &Path| {
            let at = crate::media::flacmeta::read(p).unwrap().audio_offset as usize;
            std::fs::read(p).unwrap()[at..].to_vec()
        };
        let before = audio(&ours);
        crate::media::flacmeta::write_tags(&ours, "test", &[], &found, &[]).unwrap();
        assert_eq!(metaflac_seek_points(&ours), expected);
        assert_eq!(audio(&ours), before);
        let test = Command::new("flac")
            .args(["-t", "-s"])
            .arg(&ours)
            .status()
            .unwrap();
        assert!(
            test.success(),
            "flac -t refuses the file with our seek table"
        );
    }

    #[test]
    fn one_changed_byte_in_the_audio_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let f = encoded(dir.path());
        let mut bytes = std::fs::read(&f).unwrap();
        let len = bytes.len();
        for at in [len / 3, len - 3] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            std::fs::write(&f, &bad).unwrap();
            let err = check(&f).unwrap_err().to_string();
            assert!(err.contains("damaged"), "{err}");
        }
        // A lost stretch (a frame's worth of stale bytes) fails as well.
        bytes.drain(len / 2..len / 2 + 5000);
        std::fs::write(&f, &bytes).unwrap();
        assert!(check(&f).is_err());
    }

    #[test]
    fn bytes_in_memory_check_as_the_file_does() {
        let dir = tempfile::tempdir().unwrap();
        let f = encoded(dir.path());
        let bytes = std::fs::read(&f).unwrap();
        assert_eq!(
            check_bytes(&bytes).unwrap(),
            check_against_stream_info(&f).unwrap()
        );
        assert!(check_bytes(&bytes[..bytes.len() / 2]).is_err());
    }

    #[test]
    fn a_file_cut_short_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let f = encoded(dir.path());
        let bytes = std::fs::read(&f).unwrap();
        std::fs::write(&f, &bytes[..bytes.len() * 2 / 3]).unwrap();
        let err = check(&f).unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
    }
}
