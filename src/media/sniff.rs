//! Finding DTS by content: DTS music CDs carry a DTS bitstream disguised as
//! 16-bit stereo PCM, either packed 14 bits per word (so the CD's 16-bit DAC
//! path plays it as quiet noise) or as IEC 61937 bursts. FFmpeg's WAV probe
//! only looks at the first 64–128 KiB, so a rip with a second of leading
//! silence probes as plain PCM. We search the sample data ourselves and tell
//! FFmpeg what it is.
//!
//! The search is cheap, for a music library holds thousands of CD rips
//! that are not DTS: only 16-bit stereo can carry it (`could_carry_dts`),
//! and once the PCM stops being silent a DTS stream shows a sync word
//! within a frame, so the leading silence is skipped and a few KB of
//! audio after it decide (`look_for_dts`).

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// How a DTS bitstream is packed into 16-bit PCM words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PcmPacking {
    /// 14 data bits per little-endian 16-bit word (classic DTS-CD).
    Dts14Le,
    /// The plain 16-bit DTS bitstream byte-swapped into little-endian words.
    Dts16Le,
    /// IEC 61937 (S/PDIF) bursts carrying DTS.
    Iec61937,
}

impl PcmPacking {
    /// The FFmpeg demuxer that reads this packing from raw bytes.
    pub fn ffmpeg_format(self) -> &'static str {
        match self {
            PcmPacking::Dts14Le | PcmPacking::Dts16Le => "dts",
            PcmPacking::Iec61937 => "spdif",
        }
    }
}

/// DTS found inside PCM sample data: how it is packed and where it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PcmDts {
    pub packing: PcmPacking,
    /// Byte offset of the first sync word, counted from the start of the data searched.
    pub offset: u64,
}

/// Leading silence skipped before the look gives up: minutes of it.
pub const SNIFF_LIMIT: u64 = 24 << 20;
/// PCM looked at once it stops being silent. A DTS frame on a CD spans
/// 2,048 bytes of PCM (512 samples; 16 KiB at DTS's longest, 4,096), and
/// an IEC 61937 burst starts every frame: two of the longest frames without
/// a sync word rule DTS out.
pub const NON_SILENT_LOOK: usize = 32 << 10;
/// PCM gathered from the first non-silent byte when a sync word was seen:
/// room for three sync words 64 KiB apart, and for ffprobe to tell the
/// stream's kind.
pub const CONFIRM_BYTES: usize = 1 << 20;

/// Whether PCM of this shape can be a DTS-CD rip (44.1 kHz) or a capture
/// of IEC 61937 DTS from a DVD player's S/PDIF (48 kHz): two channels of
/// 16-bit samples. Anything else is ruled out without a look at the audio.
pub fn could_carry_dts(channels: u32, bits_per_sample: u32, sample_rate: u32) -> bool {
    channels == 2 && bits_per_sample == 16 && matches!(sample_rate, 44_100 | 48_000)
}

fn matches_at(d: &[u8], i: usize) -> Option<PcmPacking> {
    let w = d.get(i..i + 6)?;
    if w[..4] == [0xff, 0x1f, 0x00, 0xe8] && w[5] == 0x07 && w[4] & 0xf0 == 0xf0 {
        Some(PcmPacking::Dts14Le)
    } else if w[..4] == [0xfe, 0x7f, 0x01, 0x80] {
        Some(PcmPacking::Dts16Le)
    } else if w[..4] == [0x72, 0xf8, 0x1f, 0x4e] && matches!(w[4] & 0x1f, 11 | 12 | 13 | 17) {
        // Burst-info data types 11–13 are DTS I–III, 17 is DTS-HD (type IV).
        Some(PcmPacking::Iec61937)
    } else {
        None
    }
}

/// Searches 16-bit-aligned PCM bytes for a DTS bitstream. Three sync words of
/// one kind, each within 64 KiB of the last, are required, so real music
/// that happens to contain a sync pattern is not mistaken for DTS.
pub fn find_dts_in_pcm(data: &[u8]) -> Option<PcmDts> {
    const MAX_GAP: usize = 64 << 10;
    let mut i = 0;
    while i + 6 <= data.len() {
        if let Some(kind) = matches_at(data, i) {
            let mut last = i;
            let mut seen = 1;
            let mut j = i + 2;
            while j + 6 <= data.len() && j - last <= MAX_GAP && seen < 3 {
                if matches_at(data, j) == Some(kind) {
                    seen += 1;
                    last = j;
                }
                j += 2;
            }
            if seen >= 3 {
                return Some(PcmDts {
                    packing: kind,
                    offset: i as u64,
                });
            }
        }
        i += 2;
    }
    None
}

/// Where a WAV file's sample data lies, and its format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavData {
    pub format_tag: u16,
    pub channels: u16,
    pub sample_rate: u32,
    pub bits_per_sample: u16,
    pub data_offset: u64,
    pub data_len: u64,
}

/// Reads the RIFF/WAVE chunk list. `Ok(None)` when the file is not a WAV.
pub fn read_wav_layout(file: &mut (impl Read + Seek)) -> io::Result<Option<WavData>> {
    let mut riff = [0u8; 12];
    file.seek(SeekFrom::Start(0))?;
    if file.read_exact(&mut riff).is_err() || &riff[..4] != b"RIFF" || &riff[8..12] != b"WAVE" {
        return Ok(None);
    }
    // The length (what `metadata().len()` says of a file): every read seeks first.
    let len = file.seek(SeekFrom::End(0))?;
    let mut pos = 12u64;
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    for _ in 0..256 {
        let mut hdr = [0u8; 8];
        file.seek(SeekFrom::Start(pos))?;
        if file.read_exact(&mut hdr).is_err() {
            break;
        }
        let size = u64::from(u32::from_le_bytes(hdr[4..8].try_into().unwrap()));
        if &hdr[..4] == b"fmt " {
            let mut f = [0u8; 16];
            file.read_exact(&mut f)?;
            let mut tag = u16::from_le_bytes([f[0], f[1]]);
            if tag == 0xfffe && size >= 40 {
                // WAVEFORMATEXTENSIBLE: the real tag is the sub-format GUID's first two bytes.
                let mut ext = [0u8; 24];
                file.read_exact(&mut ext)?;
                tag = u16::from_le_bytes([ext[8], ext[9]]);
            }
            fmt = Some((
                tag,
                u16::from_le_bytes([f[2], f[3]]),
                u32::from_le_bytes([f[4], f[5], f[6], f[7]]),
                u16::from_le_bytes([f[14], f[15]]),
            ));
        } else if &hdr[..4] == b"data" {
            let (format_tag, channels, sample_rate, bits_per_sample) = match fmt {
                Some(f) => f,
                None => return Ok(None),
            };
            let data_offset = pos + 8;
            // Rips written while streaming often carry a size of 0 or 0xFFFFFFFF.
            let data_len = if size == 0 || size == 0xffff_ffff {
                len - data_offset
            } else {
                size.min(len - data_offset)
            };
            return Ok(Some(WavData {
                format_tag,
                channels,
                sample_rate,
                bits_per_sample,
                data_offset,
                data_len,
            }));
        }
        pos += 8 + size + (size & 1);
    }
    Ok(None)
}

/// Looks for DTS inside a WAV file's PCM data. Returns the packing and the
/// absolute file offset of the first sync word.
pub fn find_dts_in_wav(path: &Path) -> io::Result<Option<PcmDts>> {
    let mut file = super::safe_open::open_regular(path)?;
    find_dts_in_wav_data(&mut file)
}

/// `find_dts_in_wav` on an opened WAV file, or one in memory (`io::Cursor`).
pub fn find_dts_in_wav_data(file: &mut (impl Read + Seek)) -> io::Result<Option<PcmDts>> {
    match read_wav_layout(file)? {
        Some(wav) => find_dts_in_wav_samples(file, &wav),
        None => Ok(None),
    }
}

/// `find_dts_in_wav_data` on a WAV whose layout was read.
pub fn find_dts_in_wav_samples(
    file: &mut (impl Read + Seek),
    wav: &WavData,
) -> io::Result<Option<PcmDts>> {
    // Only 16-bit integer PCM can carry a DTS-CD stream.
    let (channels, bits) = (wav.channels.into(), wav.bits_per_sample.into());
    if wav.format_tag != 1 || !could_carry_dts(channels, bits, wav.sample_rate) {
        return Ok(None);
    }
    file.seek(SeekFrom::Start(wav.data_offset))?;
    let mut data = file.take(wav.data_len);
    let found = look_for_dts(|pcm| {
        let got = (&mut data).take(16 << 10).read_to_end(pcm)?;
        Ok(got > 0)
    })?;
    Ok(found.map(|(found, _)| PcmDts {
        offset: found.offset + wav.data_offset,
        ..found
    }))
}

/// Sync words a DTS stream starts its frames with: the core in 16-bit
/// big/little-endian and 14-bit packings, and the DTS-HD substream.
const STREAM_SYNCS: [[u8; 4]; 5] = [
    [0x7f, 0xfe, 0x80, 0x01],
    [0xfe, 0x7f, 0x01, 0x80],
    [0x1f, 0xff, 0xe8, 0x00],
    [0xff, 0x1f, 0x00, 0xe8],
    [0x64, 0x58, 0x20, 0x25],
];

/// Whether `data` holds a DTS frame sync word anywhere.
pub fn has_dts_sync(data: &[u8]) -> bool {
    data.windows(4).any(|w| STREAM_SYNCS.iter().any(|s| w == s))
}

/// Looks for DTS in 16-bit stereo PCM that `more` appends to a buffer piece
/// by piece (saying `false` when there is no more), reading only what the
/// decision needs: the leading silence (up to `SNIFF_LIMIT`), then
/// `NON_SILENT_LOOK` bytes, and only when those hold a sync word up to
/// `CONFIRM_BYTES`. Returns where the DTS starts (counted from the first
/// byte `more` gave) and the PCM from there on.
pub fn look_for_dts(
    mut more: impl FnMut(&mut Vec<u8>) -> io::Result<bool>,
) -> io::Result<Option<(PcmDts, Vec<u8>)>> {
    let mut pcm = Vec::new();
    let mut skipped = 0u64;
    let mut has_more = true;
    loop {
        if let Some(first) = pcm.iter().position(|&b| b != 0) {
            // Whole sample frames stay aligned: sync words sit on word boundaries.
            let start = first & !3;
            pcm.drain(..start);
            skipped += start as u64;
            break;
        }
        skipped += pcm.len() as u64;
        pcm.clear();
        if !has_more || skipped >= SNIFF_LIMIT {
            return Ok(None);
        }
        has_more = more(&mut pcm)?;
    }
    while pcm.len() < NON_SILENT_LOOK && has_more {
        has_more = more(&mut pcm)?;
    }
    let look = pcm.len().min(NON_SILENT_LOOK);
    if !(0..look).step_by(2).any(|i| matches_at(&pcm, i).is_some()) {
        return Ok(None);
    }
    while pcm.len() < CONFIRM_BYTES && has_more {
        has_more = more(&mut pcm)?;
    }
    Ok(find_dts_in_pcm(&pcm).map(|found| {
        let from_sync = pcm.split_off(found.offset as usize);
        let found = PcmDts {
            offset: skipped + found.offset,
            ..found
        };
        (found, from_sync)
    }))
}

/// Packs a big-endian DTS bitstream 14 bits per little-endian word, as DTS
/// music CDs do (each word sign-extended into the 16-bit sample): for the
/// tools and tests that build rips.
pub fn pack_14bit_le(stream: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u64, 0u32);
    let mut push = |word: u16| out.extend_from_slice(&((((word << 2) as i16) >> 2).to_le_bytes()));
    for &byte in stream {
        acc = (acc << 8) | u64::from(byte);
        bits += 8;
        while bits >= 14 {
            bits -= 14;
            push(((acc >> bits) & 0x3fff) as u16);
        }
    }
    if bits > 0 {
        push(((acc << (14 - bits)) & 0x3fff) as u16);
    }
    out
}

/// The source PCM resolution recorded in a DTS core frame header (16, 20 or
/// 24 bits), found at the first big-endian 16-bit core sync word in `data`.
pub fn core_source_bits(data: &[u8]) -> Option<u8> {
    let start = data
        .windows(4)
        .position(|w| w == [0x7f, 0xfe, 0x80, 0x01])?;
    let h = data.get(start + 4..start + 16)?;
    let bits = u128::from_be_bytes({
        let mut b = [0u8; 16];
        b[..12].copy_from_slice(h);
        b
    });
    let field = |at: u32, width: u32| ((bits >> (128 - at - width)) & ((1 << width) - 1)) as u32;
    let crc_present = field(6, 1) == 1;
    let pcmr_at = 56 + if crc_present { 16 } else { 0 } + 7;
    match field(pcmr_at, 3) {
        0 | 1 => Some(16),
        2 | 3 => Some(20),
        5 | 6 => Some(24),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shared_sample_shows_a_sync_word_and_junk_does_not() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/samples/dcadec");
        let mut seen = 0;
        for entry in
            std::fs::read_dir(&dir).expect("../shared/samples/dcadec is beside the project")
        {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "dtshd") {
                let data = std::fs::read(&path).unwrap();
                let frames = crate::media::dtshd::stream_frames(&data).unwrap();
                assert!(
                    has_dts_sync(&frames[..frames.len().min(64 << 10)]),
                    "{path:?}"
                );
                seen += 1;
            }
        }
        assert!(seen >= 10);
        assert!(!has_dts_sync(b"not a film at all, just text"));
        assert!(!has_dts_sync(&[0u8; 65536]));
    }

    #[test]
    fn finds_14_bit_dts_after_silence() {
        let mut d = vec![0u8; 50_000];
        for _ in 0..4 {
            d.extend_from_slice(&[0xff, 0x1f, 0x00, 0xe8, 0xf1, 0x07]);
            d.extend(std::iter::repeat_n(0x55, 2042));
        }
        let found = find_dts_in_pcm(&d).unwrap();
        assert_eq!(found.packing, PcmPacking::Dts14Le);
        assert_eq!(found.offset, 50_000);
    }

    #[test]
    fn a_lone_sync_pattern_in_music_is_not_dts() {
        let mut d = vec![0x11u8; 300_000];
        d[1000..1004].copy_from_slice(&[0xfe, 0x7f, 0x01, 0x80]);
        assert_eq!(find_dts_in_pcm(&d), None);
    }

    /// `look_for_dts` over `pcm` handed out 4 KiB at a time; also how many
    /// bytes it asked for.
    fn look_counting(pcm: &[u8]) -> (Option<(PcmDts, Vec<u8>)>, usize) {
        let mut given = 0;
        let found = look_for_dts(|buf| {
            let piece = &pcm[given..(given + 4096).min(pcm.len())];
            buf.extend_from_slice(piece);
            given += piece.len();
            Ok(given < pcm.len())
        })
        .unwrap();
        (found, given)
    }

    /// Pseudo-random 16-bit samples: audio with no structure at all.
    fn noise(bytes: usize) -> Vec<u8> {
        let mut seed = 7u32;
        (0..bytes)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (seed >> 16) as u8
            })
            .collect()
    }

    #[test]
    fn a_few_kb_of_audio_without_a_sync_word_rule_dts_out() {
        let silence = 44_100 * 4;
        let mut pcm = vec![0u8; silence];
        pcm.extend(noise(10 << 20));
        let (found, given) = look_counting(&pcm);
        assert_eq!(found, None);
        assert!(
            given <= silence + NON_SILENT_LOOK + 4096,
            "read {given} bytes"
        );
    }

    #[test]
    fn dts_after_silence_is_found_at_its_first_sync_and_handed_on_from_there() {
        // Silence, the tail of a frame cut by the rip, then 14-bit frames.
        let mut pcm = vec![0u8; 100_002];
        pcm.extend(noise(1000));
        let first_sync = pcm.len();
        for _ in 0..8 {
            pcm.extend_from_slice(&[0xff, 0x1f, 0x00, 0xe8, 0xf1, 0x07]);
            pcm.extend(noise(2042));
        }
        let (found, given) = look_counting(&pcm);
        let (dts, from_sync) = found.expect("DTS found");
        assert_eq!(dts.packing, PcmPacking::Dts14Le);
        assert_eq!(dts.offset, first_sync as u64);
        assert_eq!(from_sync[..], pcm[first_sync..given]);
    }

    #[test]
    fn silence_longer_than_the_limit_is_not_read_to_its_end() {
        let pcm = vec![0u8; SNIFF_LIMIT as usize + (1 << 20)];
        let (found, given) = look_counting(&pcm);
        assert_eq!(found, None);
        assert!(given <= SNIFF_LIMIT as usize + 4096, "read {given} bytes");
    }

    /// A 16-bit stereo WAV holding `data`, with a LIST chunk before it.
    fn wav(data: &[u8]) -> Vec<u8> {
        let mut v = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        v.extend_from_slice(&16u32.to_le_bytes());
        // Format 1, 2 channels, 44,100 Hz, 176,400 bytes a second, 4 per frame, 16 bits.
        for field in [1u16, 2, 0xac44, 0, 0xb110, 2, 4, 16] {
            v.extend_from_slice(&field.to_le_bytes());
        }
        v.extend_from_slice(b"LIST\x03\0\0\0abc\0data");
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn a_wav_in_memory_reads_as_the_file_does() {
        let mut pcm = vec![0u8; 10_000];
        for _ in 0..3 {
            pcm.extend_from_slice(&[0xfe, 0x7f, 0x01, 0x80]);
            pcm.extend(std::iter::repeat_n(0x22, 2044));
        }
        let bytes = wav(&pcm);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rip.wav");
        std::fs::write(&p, &bytes).unwrap();
        let layout = read_wav_layout(&mut io::Cursor::new(&bytes))
            .unwrap()
            .unwrap();
        assert_eq!(
            Some(layout),
            read_wav_layout(&mut std::fs::File::open(&p).unwrap()).unwrap()
        );
        assert_eq!(
            (layout.data_offset, layout.data_len),
            (56, pcm.len() as u64)
        );
        let found = find_dts_in_wav_data(&mut io::Cursor::new(&bytes)).unwrap();
        assert_eq!(found, find_dts_in_wav(&p).unwrap());
        assert_eq!(
            found,
            Some(PcmDts {
                packing: PcmPacking::Dts16Le,
                offset: 56 + 10_000
            })
        );
    }

    #[test]
    fn reads_pcm_resolution_from_a_core_header() {
        let sample = std::fs::read("../shared/samples/dcadec/core_51_24_48_768_0.dtshd");
        let Ok(sample) = sample else {
            panic!("../shared/samples/dcadec is missing: the tests need the shared DTS samples beside the project");
        };
        assert_eq!(core_source_bits(&sample), Some(24));
    }
}
