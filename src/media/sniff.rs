//! Finding DTS by content: DTS music CDs carry a DTS bitstream disguised as
//! 16-bit stereo PCM, either packed 14 bits per word (so the CD's 16-bit DAC
//! path plays it as quiet noise) or as IEC 61937 bursts. FFmpeg's WAV probe
//! only looks at the first 64–128 KiB, so a rip with a second of leading
//! silence probes as plain PCM. We search the sample data ourselves and tell
//! FFmpeg what it is.

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

/// How far into the sample data we look: covers minutes of leading silence.
pub const SNIFF_LIMIT: u64 = 24 << 20;

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
    let mut fmt: Option<(u16, u16, u16)> = None;
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
                u16::from_le_bytes([f[14], f[15]]),
            ));
        } else if &hdr[..4] == b"data" {
            let (format_tag, channels, bits_per_sample) = match fmt {
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
    let Some(wav) = read_wav_layout(file)? else {
        return Ok(None);
    };
    // Only 16-bit integer PCM can carry a DTS-CD stream.
    if wav.format_tag != 1 || wav.bits_per_sample != 16 {
        return Ok(None);
    }
    let want = wav.data_len.min(SNIFF_LIMIT);
    file.seek(SeekFrom::Start(wav.data_offset))?;
    let mut data = Vec::with_capacity(want as usize);
    file.take(want).read_to_end(&mut data)?;
    Ok(find_dts_in_pcm(&data).map(|found| PcmDts {
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

    /// A 16-bit stereo WAV holding `data`, with a LIST chunk before it.
    fn wav(data: &[u8]) -> Vec<u8> {
        let mut v = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        v.extend_from_slice(&16u32.to_le_bytes());
        for field in [1u16, 2, 0x44ac, 0, 0xb110, 2, 4, 16] {
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
