//! Parallel decoding of one long DTS-HD Master Audio stream.
//!
//! FFmpeg's DTS decoder runs on one thread and is the slowest stage of a
//! conversion, so a lone 2-hour film would leave most cores idle. Here the
//! stream is cut into chunks of whole frames and several FFmpeg decoders
//! ("lanes") take turns with them. Each chunk is preceded by a few frames of
//! pre-roll, which the decoder needs to rebuild its filter history exactly
//! (measured: two frames always reproduce a continuous decode bit for bit),
//! and followed by one overlap frame that the next chunk's lane must
//! reproduce exactly: every seam is checked. The PCM is joined back in order
//! and handed to one FLAC encoder, so the file and its MD5 are those of one
//! continuous decode. Any disagreement stops the job, which then runs the ordinary
//! way.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::process::{ChildStdin, ChildStdout};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Frames decoded before a chunk and thrown away (two suffice; one spare).
pub const PREROLL_FRAMES: usize = 3;
/// Frames a lane decodes past its chunk, compared with the next lane's start.
pub const OVERLAP_FRAMES: usize = 1;
/// Frames per chunk: about 1 s of audio, so pre-roll and overlap cost ~4%
/// more decoding and a lane's PCM waiting to be joined stays near 1.5 MB.
pub const CHUNK_FRAMES: usize = 96;

const CORE_SYNC: [u8; 4] = [0x7f, 0xfe, 0x80, 0x01];
const EXSS_SYNC: [u8; 4] = [0x64, 0x58, 0x20, 0x25];
const CORE_RATES: [u32; 16] = [
    0, 8000, 16000, 32000, 0, 0, 11025, 22050, 44100, 0, 0, 12000, 24000, 48000, 0, 0,
];

/// What the start of a core frame says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreHeader {
    pub frame_bytes: usize,
    pub samples: u32,
    pub sample_rate: u32,
}

pub fn core_header(b: &[u8]) -> Option<CoreHeader> {
    if b.len() < 12 || b[..4] != CORE_SYNC {
        return None;
    }
    let v = u64::from_be_bytes(b[4..12].try_into().ok()?);
    // FTYPE 1, SHORT 5, CPF 1, NBLKS 7, FSIZE 14, AMODE 6, SFREQ 4 bits.
    let nblks = (v >> 50) & 0x7f;
    let fsize = (v >> 36) & 0x3fff;
    let sfreq = (v >> 26) & 0xf;
    Some(CoreHeader {
        frame_bytes: fsize as usize + 1,
        samples: (nblks as u32 + 1) * 32,
        sample_rate: CORE_RATES[sfreq as usize],
    })
}

fn exss_bytes(b: &[u8]) -> Option<usize> {
    if b.len() < 12 || b[..4] != EXSS_SYNC {
        return None;
    }
    let v = u64::from_be_bytes(b[4..12].try_into().ok()?);
    // User bits 8, substream index 2, header size type 1, then header and
    // frame sizes of 8+16 or 12+20 bits.
    let fsize = if (v >> 53) & 1 == 1 {
        (v >> 21) & 0xf_ffff
    } else {
        (v >> 29) & 0xffff
    };
    Some(fsize as usize + 1)
}

/// Length of the frame at the start of `b` (a core frame and the extension
/// substreams after it). `Ok(None)`: more bytes are needed; `at_end` says
/// there are none.
/// The most a DTS frame can hold: a core frame (14-bit size) and at most
/// four extension substreams (a 2-bit index) of at most 1 MiB each (20-bit
/// size). A longer "frame" is damage or hostility, never a bigger buffer.
pub const MAX_FRAME_BYTES: usize = (1 << 14) + 4 * (1 << 20);
const MAX_SUBSTREAMS: usize = 4;

pub fn frame_len(b: &[u8], at_end: bool) -> Result<Option<usize>, String> {
    if b.len() < 12 {
        return if at_end && !b.is_empty() {
            Err("the stream ends inside a frame header".into())
        } else {
            Ok(None)
        };
    }
    let core = core_header(b).ok_or("no DTS core frame where one should start")?;
    let mut len = core.frame_bytes;
    let mut substreams = 0;
    loop {
        if b.len() < len + 12 {
            if !at_end {
                return Ok(None);
            }
            if b.len() < len {
                return Err("the stream ends inside a frame".into());
            }
            // The last frame: too few bytes follow for another substream.
            return Ok(Some(len));
        }
        match exss_bytes(&b[len..]) {
            Some(n) => {
                substreams += 1;
                len += n;
                if substreams > MAX_SUBSTREAMS || len > MAX_FRAME_BYTES {
                    return Err(format!(
                        "a DTS frame of more than {MAX_SUBSTREAMS} extension substreams or \
                         {MAX_FRAME_BYTES} bytes: the stream is damaged"
                    ));
                }
            }
            None => return Ok(Some(len)),
        }
    }
}

/// One chunk as a lane decodes it.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    lane: usize,
    preroll: usize,
    frames: usize,
    overlap: usize,
}

/// How the PCM is laid out: bytes per decoded frame, and what to keep.
#[derive(Debug, Clone, Copy)]
pub struct PcmShape {
    pub channels: u32,
    pub bytes_per_sample: u32,
    pub sample_rate: u32,
    /// Samples per channel to drop at the start and to keep (AUPR-HDR trim).
    pub trim: Option<(u64, u64)>,
}

impl PcmShape {
    /// Bytes of one sample of every channel.
    fn sample_bytes(&self) -> u64 {
        u64::from(self.channels * self.bytes_per_sample)
    }
}

/// The running plumbing; `join` reports a broken seam or stream.
pub struct Lanes {
    threads: Vec<JoinHandle<Result<(), String>>>,
    /// PCM bytes handed to the encoder so far: the progress.
    joined: Arc<AtomicU64>,
    sample_bytes: u64,
}

impl Lanes {
    /// Starts the threads that feed `stream` (raw DTS frames) to the lanes'
    /// stdin in turns and join their stdout in order into `encoder`.
    pub fn start(
        stream: impl Read + Send + 'static,
        lane_inputs: Vec<ChildStdin>,
        lane_outputs: Vec<ChildStdout>,
        encoder: ChildStdin,
        shape: PcmShape,
    ) -> Lanes {
        let n = lane_inputs.len();
        let mut threads = Vec::new();
        let mut to_lanes = Vec::new();
        for mut input in lane_inputs {
            let (tx, rx) = mpsc::channel::<Vec<u8>>();
            to_lanes.push(tx);
            threads.push(std::thread::spawn(move || {
                for bytes in rx {
                    if input.write_all(&bytes).is_err() {
                        // The lane stopped; the joiner notices the missing PCM.
                        break;
                    }
                }
                Ok(())
            }));
        }
        let mut from_lanes = Vec::new();
        for mut output in lane_outputs {
            // Up to 2 MiB of PCM (8 blocks) waits here per lane, beside 1 MiB
            // in its pipe: more than a chunk, so a lane can finish its turn
            // while the one before it is joined.
            let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(8);
            from_lanes.push(rx);
            threads.push(std::thread::spawn(move || loop {
                let mut block = vec![0u8; 256 << 10];
                match output.read(&mut block) {
                    Ok(0) => return Ok(()),
                    Ok(k) => {
                        block.truncate(k);
                        if tx.send(block).is_err() {
                            return Ok(());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("reading a decoder: {e}")),
                }
            }));
        }
        // The splitter may run 2 rounds ahead: a lane's decoder holds back
        // the last frame of a chunk until the start of its next one arrives.
        let (plan_tx, plan_rx) = mpsc::sync_channel::<(Chunk, CoreHeader)>(2 * n + 1);
        threads.push(std::thread::spawn(move || split(stream, to_lanes, plan_tx)));
        let joined = Arc::new(AtomicU64::new(0));
        let counter = joined.clone();
        threads.push(std::thread::spawn(move || {
            join(from_lanes, plan_rx, encoder, shape, &counter)
        }));
        let sample_bytes = shape.sample_bytes().max(1);
        Lanes {
            threads,
            joined,
            sample_bytes,
        }
    }

    pub fn samples_joined(&self) -> u64 {
        self.joined.load(Ordering::Relaxed) / self.sample_bytes
    }

    pub fn join(self) -> Result<(), String> {
        let mut first = Ok(());
        for t in self.threads {
            let r = t.join().unwrap_or_else(|_| Err("internal error".into()));
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

/// Cuts the stream into chunks and hands each, with its pre-roll and
/// overlap frames, to the next lane. Sends the joiner the plan of each
/// chunk (and the first core header, which says the frame length).
fn split(
    mut stream: impl Read,
    to_lanes: Vec<mpsc::Sender<Vec<u8>>>,
    plan: SyncSender<(Chunk, CoreHeader)>,
) -> Result<(), String> {
    let lanes = to_lanes.len();
    let mut buf: Vec<u8> = Vec::new();
    let mut at_end = false;
    // Frames not yet sent as a chunk's body, plus the last PREROLL_FRAMES of
    // the previous chunk, as (start, len) in `buf`.
    let mut frames: VecDeque<(usize, usize)> = VecDeque::new();
    let mut scanned = 0usize;
    let mut kept_preroll = 0usize;
    let mut index = 0usize;
    let mut core: Option<CoreHeader> = None;
    let mut block = vec![0u8; 256 << 10];
    loop {
        // Walk the frames we have.
        while let Some(len) = frame_len(&buf[scanned..], at_end)? {
            if core.is_none() {
                let h = core_header(&buf[scanned..]).ok_or("no core header")?;
                if h.sample_rate == 0 {
                    return Err("unknown core sample rate".into());
                }
                core = Some(h);
            }
            frames.push_back((scanned, len));
            scanned += len;
        }
        let body_ready = frames.len() - kept_preroll;
        let last = at_end && scanned == buf.len();
        if body_ready >= CHUNK_FRAMES + OVERLAP_FRAMES || (last && body_ready > 0) {
            let body = if last { body_ready } else { CHUNK_FRAMES };
            let overlap = (body_ready - body).min(OVERLAP_FRAMES);
            let lane = index % lanes;
            let start = frames[0].0;
            let end_frame = frames[kept_preroll + body + overlap - 1];
            let end = end_frame.0 + end_frame.1;
            if to_lanes[lane].send(buf[start..end].to_vec()).is_err() {
                return Err("a decoder stopped early".into());
            }
            let chunk = Chunk {
                lane,
                preroll: kept_preroll,
                frames: body,
                overlap,
            };
            let core = core.expect("a frame was walked");
            if plan.send((chunk, core)).is_err() {
                // The joiner stopped and says why.
                return Ok(());
            }
            index += 1;
            // Keep the last frames of this body as the next pre-roll.
            let drop = kept_preroll + body - PREROLL_FRAMES.min(kept_preroll + body);
            frames.drain(..drop);
            kept_preroll = (kept_preroll + body).min(PREROLL_FRAMES);
            // Forget bytes before the first frame we still need.
            let first = frames.front().map_or(scanned, |f| f.0);
            if first > (1 << 20) {
                buf.drain(..first);
                scanned -= first;
                for f in frames.iter_mut() {
                    f.0 -= first;
                }
            }
            continue;
        }
        if last {
            return Ok(());
        }
        match stream.read(&mut block) {
            Ok(0) => at_end = true,
            Ok(k) => buf.extend_from_slice(&block[..k]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading the stream: {e}")),
        }
    }
}

/// One chunk as the splitter planned it, seen from outside (`split_only`).
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedChunk {
    pub lane: usize,
    pub preroll: usize,
    pub frames: usize,
    pub overlap: usize,
}

/// The splitter alone on `stream`, handing chunks to `lanes` lanes that
/// never stop: the chunks in order, and the bytes each lane was given. No
/// decoder runs: for tests and the fuzz targets.
#[doc(hidden)]
pub fn split_only(
    stream: impl Read,
    lanes: usize,
) -> Result<(Vec<PlannedChunk>, Vec<u64>), String> {
    let (to_lanes, from_splitter): (Vec<_>, Vec<_>) = (0..lanes.max(1))
        .map(|_| mpsc::channel::<Vec<u8>>())
        .unzip();
    let (plan_tx, plan_rx) = mpsc::sync_channel::<(Chunk, CoreHeader)>(2 * lanes + 1);
    let (result, plans) = std::thread::scope(|s| {
        let planned = s.spawn(move || plan_rx.iter().map(|(c, _)| c).collect::<Vec<_>>());
        let result = split(stream, to_lanes, plan_tx);
        (
            result,
            planned.join().expect("the plan collector does not panic"),
        )
    });
    result?;
    let given = from_splitter
        .iter()
        .map(|rx| rx.try_iter().map(|b| b.len() as u64).sum())
        .collect();
    let chunks = plans
        .into_iter()
        .map(|c| PlannedChunk {
            lane: c.lane,
            preroll: c.preroll,
            frames: c.frames,
            overlap: c.overlap,
        })
        .collect();
    Ok((chunks, given))
}

/// Bytes from one lane, in order.
struct LaneReader {
    rx: Receiver<Vec<u8>>,
    pending: Vec<u8>,
    at: usize,
}

impl LaneReader {
    /// Exactly `n` bytes, handed to `f` piece by piece.
    fn take(
        &mut self,
        mut n: usize,
        mut f: impl FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<(), String> {
        while n > 0 {
            if self.at == self.pending.len() {
                self.pending = self
                    .rx
                    .recv()
                    .map_err(|_| "a decoder gave fewer samples than its frames hold".to_string())?;
                self.at = 0;
            }
            let k = n.min(self.pending.len() - self.at);
            f(&self.pending[self.at..self.at + k])?;
            self.at += k;
            n -= k;
        }
        Ok(())
    }
}

/// Joins the lanes' PCM in chunk order into the encoder, checking every seam
/// and applying the trim.
fn join(
    from_lanes: Vec<Receiver<Vec<u8>>>,
    plan: Receiver<(Chunk, CoreHeader)>,
    mut encoder: ChildStdin,
    shape: PcmShape,
    joined: &AtomicU64,
) -> Result<(), String> {
    let mut lanes: Vec<LaneReader> = from_lanes
        .into_iter()
        .map(|rx| LaneReader {
            rx,
            pending: Vec::new(),
            at: 0,
        })
        .collect();
    let sample_bytes = shape.sample_bytes();
    let frame_of = |samples: u32| samples as usize * sample_bytes as usize;
    // Byte window of the whole decode to keep.
    let (keep_from, keep_to) = match shape.trim {
        Some((start, samples)) => (start * sample_bytes, (start + samples) * sample_bytes),
        None => (0, u64::MAX),
    };
    let mut position = 0u64; // bytes of the continuous decode so far
    let mut expected_seam: Vec<u8> = Vec::new();
    for (chunk, core) in plan {
        // A frame decodes to the core's samples at the output rate (XLL at
        // 96 or 192 kHz carries 2 or 4 times the 48 kHz core's samples).
        let samples = (u64::from(core.samples) * u64::from(shape.sample_rate)
            / u64::from(core.sample_rate)) as u32;
        let frame = frame_of(samples);
        let lane = &mut lanes[chunk.lane];
        lane.take(chunk.preroll * frame, |_| Ok(()))?;
        let mut seam_checked = expected_seam.is_empty();
        let mut seam_at = 0usize;
        let mut write_err = None;
        lane.take(chunk.frames * frame, |piece| {
            if !seam_checked {
                let k = piece.len().min(expected_seam.len() - seam_at);
                if piece[..k] != expected_seam[seam_at..seam_at + k] {
                    return Err(format!(
                        "the decoders disagree where chunk ends meet (byte {})",
                        position + seam_at as u64
                    ));
                }
                seam_at += k;
                seam_checked = seam_at == expected_seam.len();
            }
            // Keep the part of this piece inside the trim window.
            let from = keep_from.saturating_sub(position).min(piece.len() as u64) as usize;
            let to = keep_to.saturating_sub(position).min(piece.len() as u64) as usize;
            if from < to && write_err.is_none() {
                match encoder.write_all(&piece[from..to]) {
                    Ok(()) => {
                        joined.fetch_add((to - from) as u64, Ordering::Relaxed);
                    }
                    Err(e) => write_err = Some(e),
                }
            }
            position += piece.len() as u64;
            Ok(())
        })?;
        if let Some(e) = write_err {
            return Err(format!("the FLAC encoder stopped: {e}"));
        }
        expected_seam.clear();
        lane.take(chunk.overlap * frame, |piece| {
            expected_seam.extend_from_slice(piece);
            Ok(())
        })?;
    }
    // Every lane must be used up exactly.
    drop(encoder);
    for lane in &mut lanes {
        if lane.at < lane.pending.len() || lane.rx.recv().is_ok() {
            return Err("a decoder gave more samples than its frames hold".into());
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The frames of a shared DTS-HD sample (its STRMDATA chunk).
    pub(crate) fn sample_frames(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/samples/dcadec")
            .join(name);
        let d = std::fs::read(&path).expect("../shared/samples/dcadec is beside the project");
        crate::media::dtshd::stream_frames(&d)
            .unwrap_or_else(|| panic!("no STRMDATA in {name}"))
            .to_vec()
    }

    #[test]
    fn frames_are_found_where_ffmpeg_finds_them() {
        // Packet positions as `ffprobe -show_packets` lists them.
        let s = sample_frames("xll_71_24_48_768_0.dtshd");
        let mut at = 0;
        let mut starts = Vec::new();
        while let Some(len) = frame_len(&s[at..], true).unwrap() {
            starts.push(at);
            at += len;
        }
        assert_eq!(starts, [0, 1140, 2280, 10084, 17852, 24652]);
        assert_eq!(at, s.len());
        let h = core_header(&s).unwrap();
        assert_eq!((h.samples, h.sample_rate), (512, 48000));
    }

    #[test]
    fn a_frame_longer_than_dts_allows_is_an_error_not_a_growing_buffer() {
        let frames = sample_frames("xll_51_24_48_768.dtshd");
        let first = frame_len(&frames, false).unwrap().unwrap();
        let core = core_header(&frames).unwrap().frame_bytes;
        let exss = &frames[core..first];
        assert!(
            exss_bytes(exss).is_some(),
            "the sample has an extension substream"
        );
        // The same substream chained five times after one core frame.
        let mut hostile = frames[..core].to_vec();
        for _ in 0..5 {
            hostile.extend_from_slice(exss);
        }
        hostile.extend_from_slice(&frames[..12]);
        let err = frame_len(&hostile, false).unwrap_err();
        assert!(err.contains("damaged"), "{err}");
        // Four are what DTS allows.
        let mut four = frames[..core].to_vec();
        for _ in 0..4 {
            four.extend_from_slice(exss);
        }
        four.extend_from_slice(&frames[..12]);
        assert_eq!(
            frame_len(&four, false).unwrap(),
            Some(core + 4 * exss.len())
        );
    }

    #[test]
    fn the_splitter_hands_every_frame_to_one_lane_in_turn() {
        let s = sample_frames("xll_71_24_48_768_0.dtshd");
        // Enough frames for a few chunks, read a few bytes at a time.
        let stream: Vec<u8> = (0..300).flat_map(|_| s.iter().copied()).collect();
        let (chunks, given) = split_only(SmallReads(&stream[..]), 2).unwrap();
        let walked = 300 * 6;
        assert_eq!(chunks.iter().map(|c| c.frames).sum::<usize>(), walked);
        assert_eq!(chunks.len(), walked.div_ceil(CHUNK_FRAMES));
        assert!(chunks.iter().enumerate().all(|(i, c)| c.lane == i % 2));
        assert_eq!(chunks[0].preroll, 0);
        assert!(chunks[1..].iter().all(|c| c.preroll == PREROLL_FRAMES));
        assert!(given.iter().sum::<u64>() > stream.len() as u64);
        assert_eq!(given.len(), 2);
    }

    /// A reader that returns at most 1000 bytes per read.
    struct SmallReads<'a>(&'a [u8]);

    impl Read for SmallReads<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(1000).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_stream_without_a_core_is_not_split() {
        let s = sample_frames("xll_51_24_48_none.dtshd");
        assert!(frame_len(&s, true).is_err());
    }
}
