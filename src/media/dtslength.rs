//! The length of a raw DTS stream (`.dts`, `.dtsma` as eac3to and MakeMKV
//! demux a Blu-ray track): no header says it and FFmpeg reports none for
//! DTS-HD, so the panel and page would show no progress and no ETA for what
//! is often the longest job on a drive. Frames are counted from their
//! headers (each says its length and its samples) without decoding: every
//! frame of a stream up to `EXACT_BYTES`; in a longer one, the frames of a
//! few windows across it (DTS-HD MA's frame size follows the music), scaled
//! to the stream's length, so a film costs a few MB of reading, not all of it.

use std::io::{self, Read, Seek, SeekFrom};

use super::lanes::{core_header, frame_len};

/// Streams up to this long are counted frame by frame (about a minute of DTS-HD MA).
pub const EXACT_BYTES: u64 = 16 << 20;
/// Bytes walked in each window of a longer stream, and how many windows.
const WINDOW_BYTES: u64 = 1 << 20;
const WINDOWS: u64 = 4;
/// A window's first frame must be followed by this many whole frames, so
/// a sync pattern inside audio data is not taken for a frame.
const CHAIN: usize = 3;

/// How long a stream plays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamLength {
    pub seconds: f64,
    /// Every frame counted; otherwise scaled from windows.
    pub exact: bool,
}

/// Frames walked from a frame start.
#[derive(Debug, Default, Clone, Copy)]
struct Walked {
    frames: u64,
    bytes: u64,
    /// Of the first frame's core: samples per frame and their rate.
    seconds_per_frame: f64,
    reached_end: bool,
}

/// Walks whole frames from `start` until `limit` bytes are passed or the
/// stream ends (or is damaged: what was walked counts).
fn walk(file: &mut (impl Read + Seek), start: u64, limit: u64) -> io::Result<Walked> {
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    let (mut at, mut at_end) = (0usize, false);
    let mut walked = Walked::default();
    while walked.bytes < limit {
        match frame_len(&buf[at..], at_end) {
            Ok(Some(len)) => {
                if walked.frames == 0 {
                    let Some(core) = core_header(&buf[at..]).filter(|c| c.sample_rate > 0) else {
                        break;
                    };
                    walked.seconds_per_frame =
                        f64::from(core.samples) / f64::from(core.sample_rate);
                }
                walked.frames += 1;
                walked.bytes += len as u64;
                at += len;
            }
            Ok(None) if at_end => {
                walked.reached_end = true;
                break;
            }
            Ok(None) => {
                buf.drain(..at);
                at = 0;
                let got = (&mut *file).take(256 << 10).read_to_end(&mut buf)?;
                at_end = got == 0;
            }
            Err(_) => {
                walked.reached_end = at_end && at == buf.len();
                break;
            }
        }
    }
    Ok(walked)
}

/// The first offset at or after `from` where `CHAIN` whole frames follow
/// one another, searched within a window.
fn resync(file: &mut (impl Read + Seek), from: u64) -> io::Result<Option<u64>> {
    file.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::new();
    file.take(WINDOW_BYTES).read_to_end(&mut buf)?;
    let mut sync = memchr::memmem::find_iter(&buf, &[0x7f, 0xfe, 0x80, 0x01]);
    Ok(sync
        .find(|&start| {
            let mut at = start;
            (0..CHAIN).all(|_| match frame_len(&buf[at..], false) {
                Ok(Some(len)) => {
                    at += len;
                    true
                }
                _ => false,
            })
        })
        .map(|start| from + start as u64))
}

/// The length of the raw DTS stream in `file` (`file_len` bytes from its
/// start); `None` when it does not start with a core frame (a stream of
/// extension substreams alone, or not DTS).
pub fn raw_stream_length(
    file: &mut (impl Read + Seek),
    file_len: u64,
) -> io::Result<Option<StreamLength>> {
    let first = walk(file, 0, EXACT_BYTES)?;
    if first.frames == 0 {
        return Ok(None);
    }
    if first.reached_end || first.bytes >= file_len {
        return Ok(Some(StreamLength {
            seconds: first.frames as f64 * first.seconds_per_frame,
            exact: true,
        }));
    }
    // The rest's frames per byte from windows spread over it (the first
    // part's where none holds frames).
    let (mut frames, mut bytes) = (0, 0);
    let rest = file_len - first.bytes;
    for w in 1..=WINDOWS {
        let from = first.bytes + rest * w / (WINDOWS + 1);
        if let Some(start) = resync(file, from)? {
            let walked = walk(file, start, WINDOW_BYTES)?;
            (frames, bytes) = (frames + walked.frames, bytes + walked.bytes);
        }
    }
    if frames == 0 {
        (frames, bytes) = (first.frames, first.bytes);
    }
    let total_frames = first.frames as f64 + rest as f64 * frames as f64 / bytes as f64;
    Ok(Some(StreamLength {
        seconds: total_frames * first.seconds_per_frame,
        exact: false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::lanes::tests::sample_frames;

    fn length(stream: &[u8]) -> Option<StreamLength> {
        raw_stream_length(&mut io::Cursor::new(stream), stream.len() as u64).unwrap()
    }

    #[test]
    fn a_short_stream_is_counted_frame_by_frame() {
        // Six frames of 512 samples at 48 kHz.
        let s = sample_frames("xll_71_24_48_768_0.dtshd");
        let l = length(&s).unwrap();
        assert!(l.exact);
        assert!((l.seconds - 6.0 * 512.0 / 48_000.0).abs() < 1e-9, "{l:?}");
    }

    #[test]
    fn a_long_stream_is_scaled_from_windows_of_frames() {
        // Frames of two sizes, a long run of each: the windows see both.
        let small = sample_frames("xll_51_24_48_768.dtshd");
        let big = sample_frames("xll_71_24_48_768_0.dtshd");
        let (small_frames, big_frames) = (
            length(&small).unwrap().seconds * 48_000.0 / 512.0,
            length(&big).unwrap().seconds * 48_000.0 / 512.0,
        );
        let mut stream = small.repeat(20 * (1 << 20) / small.len());
        let copies_small = stream.len() / small.len();
        let copies_big = 30 * (1 << 20) / big.len();
        stream.extend(big.repeat(copies_big));
        let l = length(&stream).unwrap();
        assert!(!l.exact);
        let frames = copies_small as f64 * small_frames + copies_big as f64 * big_frames;
        let truth = frames * 512.0 / 48_000.0;
        assert!(
            (l.seconds - truth).abs() / truth < 0.05,
            "{l:?}, truth {truth}"
        );
    }

    #[test]
    fn a_stream_without_a_core_has_no_length_from_frames() {
        assert_eq!(length(&sample_frames("xll_51_24_48_none.dtshd")), None);
        assert_eq!(length(b"not DTS at all, just words"), None);
    }
}
