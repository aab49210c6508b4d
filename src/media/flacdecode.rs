//! Decoding the first audio frames of a FLAC file to PCM, in-process.
//!
//! The scan looks at the first non-silent audio of every CD-shaped FLAC on
//! a drive to tell a DTS-CD rip from music; starting FFmpeg or `flac -d`
//! for that costs milliseconds per file, far more than the look itself (a
//! music library holds tens of thousands of them). The decoder follows the
//! FLAC format (RFC 9639): CONSTANT, VERBATIM, FIXED and LPC subframes,
//! wasted bits, Rice-coded residuals with escapes, the stereo
//! decorrelations. Every read is bounded by the bytes at hand and every
//! frame must pass its CRC-16, so damage (or a feature decoded wrongly) is
//! an error, never wrong samples: the caller then asks FFmpeg.

use std::io::{self, Read};

use super::flacframes::{crc16, parse_header};
use super::flacmeta::StreamInfo;

/// Why no (more) PCM came out.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("cannot read the FLAC: {0}")]
    Io(#[from] io::Error),
    #[error("the FLAC audio is damaged or not decodable here: {0}")]
    Damaged(&'static str),
}

/// Inside a frame: more bytes are needed (`Short`), or it is not valid.
#[derive(Debug)]
enum FrameError {
    Short,
    Invalid(&'static str),
}

type FrameResult<T> = Result<T, FrameError>;

/// A FLAC frame is at most 65,535 samples of 8 channels of 32 bits, plus
/// headers: 1 MiB holds any frame this decoder accepts (2 channels).
const MAX_FRAME_BYTES: usize = 1 << 20;
/// Bytes read from the file at a time.
const READ_BYTES: usize = 16 << 10;

/// Bits of a frame, most significant first, through a 64-bit cache.
struct Bits<'a> {
    data: &'a [u8],
    /// The next byte to load into the cache.
    next: usize,
    cache: u64,
    /// Bits of `cache` not yet read, from its top.
    cached: u32,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Bits<'a> {
        Bits {
            data,
            next: 0,
            cache: 0,
            cached: 0,
        }
    }

    fn refill(&mut self) {
        while self.cached <= 56 && self.next < self.data.len() {
            self.cache |= u64::from(self.data[self.next]) << (56 - self.cached);
            self.next += 1;
            self.cached += 8;
        }
    }

    /// `n` bits (at most 32) as an unsigned number.
    fn read(&mut self, n: u32) -> FrameResult<u32> {
        if n == 0 {
            return Ok(0);
        }
        if self.cached < n {
            self.refill();
            if self.cached < n {
                return Err(FrameError::Short);
            }
        }
        let v = self.cache >> (64 - n);
        self.cache <<= n;
        self.cached -= n;
        Ok(v as u32)
    }

    /// `n` bits (at most 32) as a two's-complement number.
    fn read_signed(&mut self, n: u32) -> FrameResult<i32> {
        if n == 0 {
            return Ok(0);
        }
        let v = self.read(n)?;
        Ok(((v << (32 - n)) as i32) >> (32 - n))
    }

    /// Zeros before the next one bit (which is read too).
    fn unary(&mut self) -> FrameResult<u32> {
        let mut zeros = 0u32;
        loop {
            if self.cached == 0 {
                self.refill();
                if self.cached == 0 {
                    return Err(FrameError::Short);
                }
            }
            let lead = self.cache.leading_zeros();
            if lead < self.cached {
                self.cache = self.cache.checked_shl(lead + 1).unwrap_or(0);
                self.cached -= lead + 1;
                return Ok(zeros + lead);
            }
            zeros += self.cached;
            (self.cache, self.cached) = (0, 0);
        }
    }

    /// Bytes used so far, the partly read last one included.
    fn bytes_used(&self) -> usize {
        self.next - (self.cached / 8) as usize
    }
}

/// One Rice-coded residual with parameter `k`.
fn rice(b: &mut Bits, k: u32) -> FrameResult<i32> {
    let q = u64::from(b.unary()?);
    let u = (q << k) | u64::from(b.read(k)?);
    if u > u64::from(u32::MAX) {
        return Err(FrameError::Invalid("a residual too large"));
    }
    let u = u as u32;
    Ok((u >> 1) as i32 ^ -((u & 1) as i32))
}

/// Appends the residual of a subframe predicted from `order` warm-up samples.
fn residual(b: &mut Bits, block: usize, order: usize, out: &mut Vec<i32>) -> FrameResult<()> {
    let (param_bits, escape) = match b.read(2)? {
        0 => (4, 15),
        1 => (5, 31),
        _ => return Err(FrameError::Invalid("a reserved residual coding")),
    };
    let partition_order = b.read(4)?;
    let per_partition = block >> partition_order;
    if per_partition << partition_order != block || per_partition < order {
        return Err(FrameError::Invalid(
            "residual partitions that do not fit the block",
        ));
    }
    for p in 0..1usize << partition_order {
        let n = if p == 0 {
            per_partition - order
        } else {
            per_partition
        };
        let k = b.read(param_bits)?;
        if k == escape {
            let raw = b.read(5)?;
            for _ in 0..n {
                out.push(b.read_signed(raw)?);
            }
        } else {
            for _ in 0..n {
                out.push(rice(b, k)?);
            }
        }
    }
    Ok(())
}

/// Turns residuals after the warm-up samples into samples.
fn predict(out: &mut [i32], order: usize, predictor: impl Fn(&[i32]) -> i64) {
    for i in order..out.len() {
        // Wrapping: a damaged frame gives wrong samples, which its CRC-16 catches.
        out[i] = out[i].wrapping_add(predictor(&out[i - order..i]) as i32);
    }
}

/// Decodes one subframe of `block` samples at `bits` bits into `out`.
fn subframe(b: &mut Bits, bits: u32, block: usize, out: &mut Vec<i32>) -> FrameResult<()> {
    out.clear();
    if b.read(1)? != 0 {
        return Err(FrameError::Invalid("a subframe's padding bit is set"));
    }
    let kind = b.read(6)?;
    let wasted = if b.read(1)? == 1 { b.unary()? + 1 } else { 0 };
    if wasted >= bits {
        return Err(FrameError::Invalid("more wasted bits than the sample has"));
    }
    let bits = bits - wasted;
    match kind {
        0 => out.resize(block, b.read_signed(bits)?),
        1 => {
            for _ in 0..block {
                out.push(b.read_signed(bits)?);
            }
        }
        8..=12 => {
            let order = (kind - 8) as usize;
            if order > block {
                return Err(FrameError::Invalid("a predictor longer than the block"));
            }
            for _ in 0..order {
                out.push(b.read_signed(bits)?);
            }
            residual(b, block, order, out)?;
            let s = |h: &[i32], back: usize| i64::from(h[h.len() - back]);
            match order {
                1 => predict(out, 1, |h| s(h, 1)),
                2 => predict(out, 2, |h| 2 * s(h, 1) - s(h, 2)),
                3 => predict(out, 3, |h| 3 * s(h, 1) - 3 * s(h, 2) + s(h, 3)),
                4 => predict(out, 4, |h| {
                    4 * s(h, 1) - 6 * s(h, 2) + 4 * s(h, 3) - s(h, 4)
                }),
                _ => {}
            }
        }
        32..=63 => {
            let order = (kind - 31) as usize;
            if order > block {
                return Err(FrameError::Invalid("a predictor longer than the block"));
            }
            for _ in 0..order {
                out.push(b.read_signed(bits)?);
            }
            let precision = b.read(4)? + 1;
            if precision == 16 {
                return Err(FrameError::Invalid("an invalid coefficient precision"));
            }
            let shift = b.read_signed(5)?;
            if shift < 0 {
                return Err(FrameError::Invalid("a negative prediction shift"));
            }
            let mut coefficients = [0i64; 32];
            for c in coefficients.iter_mut().take(order) {
                *c = i64::from(b.read_signed(precision)?);
            }
            residual(b, block, order, out)?;
            // `h` holds the `order` samples before the one predicted, oldest first.
            let coefficients = &coefficients[..order];
            predict(out, order, |h| {
                let sum: i64 = coefficients
                    .iter()
                    .zip(h.iter().rev())
                    .map(|(c, s)| c * i64::from(*s))
                    .sum();
                sum >> shift
            });
        }
        _ => return Err(FrameError::Invalid("a reserved subframe type")),
    }
    if wasted > 0 {
        for s in out.iter_mut() {
            *s = s.wrapping_shl(wasted);
        }
    }
    Ok(())
}

/// Decodes stereo FLAC frames to interleaved 16-bit little-endian PCM.
struct StereoFrames {
    bits: u8,
    left: Vec<i32>,
    right: Vec<i32>,
}

impl StereoFrames {
    /// Decodes the frame at the start of `data`, appends its PCM to `pcm`
    /// and says how many bytes it took.
    fn decode(&mut self, data: &[u8], pcm: &mut Vec<u8>) -> FrameResult<usize> {
        let header = match parse_header(data) {
            Some(h) => h,
            // A header is at most 16 bytes: with fewer, it may be cut short.
            None if data.len() < 16 => return Err(FrameError::Short),
            None => return Err(FrameError::Invalid("no frame header where a frame starts")),
        };
        if header.channels != 2 || (header.bits != 0 && header.bits != self.bits) {
            return Err(FrameError::Invalid("a frame unlike the stream's format"));
        }
        let block = header.block_size as usize;
        let bits = u32::from(self.bits);
        let mut b = Bits::new(&data[header.len..]);
        let (first_bits, second_bits) = match header.assignment {
            8 => (bits, bits + 1),
            9 => (bits + 1, bits),
            10 => (bits, bits + 1),
            _ => (bits, bits),
        };
        subframe(&mut b, first_bits, block, &mut self.left)?;
        subframe(&mut b, second_bits, block, &mut self.right)?;
        let end = header.len + b.bytes_used();
        let crc = data.get(end..end + 2).ok_or(FrameError::Short)?;
        if crc16(0, &data[..end]) != u16::from_be_bytes([crc[0], crc[1]]) {
            return Err(FrameError::Invalid("a frame fails its CRC"));
        }
        pcm.reserve(block * 4);
        for (&a, &s) in self.left.iter().zip(&self.right) {
            let (l, r) = match header.assignment {
                8 => (a, a.wrapping_sub(s)),
                9 => (a.wrapping_add(s), s),
                10 => {
                    let mid = a.wrapping_shl(1) | (s & 1);
                    (mid.wrapping_add(s) >> 1, mid.wrapping_sub(s) >> 1)
                }
                _ => (a, s),
            };
            pcm.extend_from_slice(&(l as i16).to_le_bytes());
            pcm.extend_from_slice(&(r as i16).to_le_bytes());
        }
        Ok(end + 2)
    }
}

/// The audio of a 16-bit stereo FLAC, frame by frame, as interleaved
/// 16-bit little-endian PCM (what FFmpeg's `-f s16le` gives).
pub struct StereoPcm<R> {
    source: R,
    buf: Vec<u8>,
    /// Where the next frame starts in `buf`.
    at: usize,
    at_end: bool,
    frames: StereoFrames,
}

impl<R: Read> StereoPcm<R> {
    /// `source` must be at the first audio frame (`FlacMeta::audio_offset`).
    pub fn new(source: R, info: &StreamInfo) -> Result<StereoPcm<R>, DecodeError> {
        if info.channels != 2 || info.bits_per_sample != 16 {
            return Err(DecodeError::Damaged("only 16-bit stereo is decoded here"));
        }
        Ok(StereoPcm {
            source,
            buf: Vec::new(),
            at: 0,
            at_end: false,
            frames: StereoFrames {
                bits: 16,
                left: Vec::new(),
                right: Vec::new(),
            },
        })
    }

    /// Appends the next frame's PCM to `pcm`; `false` after the last frame.
    pub fn next_frame(&mut self, pcm: &mut Vec<u8>) -> Result<bool, DecodeError> {
        loop {
            if self.at < self.buf.len() {
                match self.frames.decode(&self.buf[self.at..], pcm) {
                    Ok(used) => {
                        self.at += used;
                        return Ok(true);
                    }
                    Err(FrameError::Invalid(why)) => return Err(DecodeError::Damaged(why)),
                    Err(FrameError::Short) if self.at_end => {
                        return Err(DecodeError::Damaged("the file ends inside a frame"))
                    }
                    Err(FrameError::Short) => {}
                }
            } else if self.at_end {
                return Ok(false);
            }
            self.read_more()?;
        }
    }

    fn read_more(&mut self) -> Result<(), DecodeError> {
        self.buf.drain(..self.at);
        self.at = 0;
        if self.buf.len() >= MAX_FRAME_BYTES {
            return Err(DecodeError::Damaged("a frame longer than FLAC allows"));
        }
        let got = (&mut self.source)
            .take(READ_BYTES as u64)
            .read_to_end(&mut self.buf)?;
        self.at_end = got == 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::flacframes::tests::libflac;

    /// PCM that exercises every subframe kind and stereo coding the
    /// encoder picks: silence (CONSTANT), a tone (LPC, FIXED), noise
    /// (VERBATIM), wasted bits, and channels alike (left/side, right/side;
    /// mid/side for two loud noises as sum and difference).
    fn test_pcm() -> Vec<u8> {
        let mut pcm = Vec::new();
        let mut seed = 12345u32;
        let mut noise = || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (seed >> 16) as i16
        };
        for i in 0..70_000u32 {
            let t = f64::from(i) / 44_100.0;
            let tone = (t * 440.0 * std::f64::consts::TAU).sin();
            let (a, b) = (noise(), noise());
            let (l, r) = match i / 10_000 {
                0 => (0, 0),
                1 => ((tone * 20_000.0) as i16, (tone * 19_000.0) as i16),
                2 => (a, a.wrapping_add(3)),
                3 => (a, (tone * 30_000.0) as i16),
                4 => ((tone * 32_767.0) as i16, i16::MIN),
                5 => ((a >> 2) + (b >> 2), (a >> 2) - (b >> 2)),
                _ => ((tone * 8.0) as i16 * 4, -((tone * 300.0) as i16)),
            };
            pcm.extend_from_slice(&l.to_le_bytes());
            pcm.extend_from_slice(&r.to_le_bytes());
        }
        pcm
    }

    fn encode(pcm: &[u8], args: &[&str]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("in.raw");
        std::fs::write(&raw, pcm).unwrap();
        let args: Vec<&str> = ["--channels=2", "--bps=16"]
            .iter()
            .chain(args)
            .copied()
            .collect();
        std::fs::read(libflac(&raw, &dir.path().join("out.flac"), &args)).unwrap()
    }

    fn decode_all(flac: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let meta = super::super::flacmeta::parse(flac).unwrap();
        let audio = &flac[meta.audio_offset as usize..];
        let mut frames = StereoPcm::new(audio, &meta.stream_info)?;
        let mut pcm = Vec::new();
        while frames.next_frame(&mut pcm)? {}
        Ok(pcm)
    }

    #[test]
    fn decodes_what_libflac_encodes_bit_for_bit() {
        let pcm = test_pcm();
        for args in [
            &["-8"][..],
            &["-0"],
            &["-5", "--blocksize=1152"],
            &["-8", "--lax", "-l", "32", "--blocksize=4608"],
            &["-3", "--no-mid-side"],
        ] {
            let flac = encode(&pcm, args);
            assert_eq!(decode_all(&flac).unwrap(), pcm, "flac {args:?}");
        }
    }

    #[test]
    fn a_damaged_frame_is_an_error_not_wrong_samples() {
        let pcm = test_pcm();
        let mut flac = encode(&pcm, &["-5"]);
        let meta = super::super::flacmeta::parse(&flac).unwrap();
        let middle = meta.audio_offset as usize + (flac.len() - meta.audio_offset as usize) / 2;
        flac[middle] ^= 0x10;
        assert!(matches!(decode_all(&flac), Err(DecodeError::Damaged(_))));
        // Cut short: the decoded part is the start of the PCM, then an error.
        let whole = encode(&pcm, &["-5"]);
        let cut = &whole[..whole.len() - 100];
        assert!(matches!(decode_all(cut), Err(DecodeError::Damaged(_))));
    }
}
