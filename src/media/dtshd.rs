//! Native reader of DTS-HD stream file headers (ATSC A/103 Annex E).
//!
//! FFmpeg decodes every frame of a `.dtshd` file, codec delay and end padding
//! included; only the `AUPR-HDR` chunk says how many of those samples are the
//! original audio. We read it ourselves so the FLAC gets exactly the master's
//! length, and so a file cut short is caught before any work starts.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// What a DTS-HD stream file's header promises about its audio.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DtsHdHeader {
    pub sample_rate: u32,
    pub frames: u32,
    pub samples_per_frame: u16,
    /// Samples of the original audio, per channel.
    pub original_samples: u64,
    /// Samples of codec delay to drop at the start of the decode.
    pub codec_delay: u16,
    /// DTS speaker activity mask (not FFmpeg's layout mask).
    pub speaker_mask: u16,
    /// Where the `STRMDATA` payload starts and how long the header says it is.
    pub stream_offset: u64,
    pub stream_len: u64,
    /// Actual file length, to tell a truncated copy from a whole one.
    pub file_len: u64,
}

impl DtsHdHeader {
    /// True when the file ends before the stream data the header announces.
    pub fn is_truncated(&self) -> bool {
        // The length comes from the file: an absurd one is a cut, not an overflow.
        self.stream_len > self.file_len.saturating_sub(self.stream_offset)
    }

    /// Total samples per channel FFmpeg produces when decoding every frame.
    pub fn decoded_samples(&self) -> u64 {
        u64::from(self.frames) * u64::from(self.samples_per_frame)
    }
}

const FILE_MAGIC: &[u8; 8] = b"DTSHDHDR";

/// The DTS frames of a whole DTS-HD stream file in memory (its `STRMDATA`
/// chunk), for tools and tests that build streams from samples.
pub fn stream_frames(dtshd: &[u8]) -> Option<&[u8]> {
    let mut pos = 0usize;
    while pos.checked_add(16)? <= dtshd.len() {
        let size = u64::from_be_bytes(dtshd[pos + 8..pos + 16].try_into().ok()?) as usize;
        if &dtshd[pos..pos + 8] == b"STRMDATA" {
            return dtshd.get(pos + 16..pos.checked_add(16)?.checked_add(size)?);
        }
        pos = pos.checked_add(16)?.checked_add(size)?;
    }
    None
}

/// Reads the header chunks of a DTS-HD stream file. Returns `Ok(None)` when
/// the file is not a DTS-HD stream file (raw `.dts`, containers).
pub fn read_header(path: &Path) -> io::Result<Option<DtsHdHeader>> {
    let mut file = super::safe_open::open_regular(path)?;
    let file_len = file.metadata()?.len();
    header_from(&mut file, file_len)
}

/// `read_header` on a whole file already in memory.
pub fn parse_header(data: &[u8]) -> io::Result<Option<DtsHdHeader>> {
    header_from(&mut io::Cursor::new(data), data.len() as u64)
}

/// The header chunks of the DTS-HD stream file in `file`, `file_len` bytes long.
fn header_from(file: &mut (impl Read + Seek), file_len: u64) -> io::Result<Option<DtsHdHeader>> {
    let mut magic = [0u8; 8];
    if file.read_exact(&mut magic).is_err() || &magic != FILE_MAGIC {
        return Ok(None);
    }
    file.seek(SeekFrom::Start(0))?;

    let mut aupr: Option<[u8; 21]> = None;
    let mut offset = 0u64;
    // A handful of chunks precede STRMDATA; bound the walk so a hostile file
    // cannot keep us busy.
    for _ in 0..64 {
        let mut chunk = [0u8; 16];
        file.seek(SeekFrom::Start(offset))?;
        if file.read_exact(&mut chunk).is_err() {
            break;
        }
        let id = &chunk[..8];
        let size = u64::from_be_bytes(chunk[8..16].try_into().unwrap());
        let body = offset + 16;
        if id == b"AUPR-HDR" && size >= 21 {
            let mut buf = [0u8; 21];
            file.read_exact(&mut buf)?;
            aupr = Some(buf);
        } else if id == b"STRMDATA" {
            let Some(a) = aupr else {
                return Ok(None);
            };
            return Ok(Some(parse_aupr(&a, body, size, file_len)));
        }
        offset = body.checked_add(size).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "DTS-HD chunk size overflows")
        })?;
    }
    Ok(None)
}

fn parse_aupr(a: &[u8; 21], stream_offset: u64, stream_len: u64, file_len: u64) -> DtsHdHeader {
    let be =
        |r: std::ops::Range<usize>| a[r].iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    DtsHdHeader {
        sample_rate: be(3..6) as u32,
        frames: be(6..10) as u32,
        samples_per_frame: be(10..12) as u16,
        original_samples: be(12..17),
        speaker_mask: be(17..19) as u16,
        codec_delay: be(19..21) as u16,
        stream_offset,
        stream_len,
        file_len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(id: &[u8; 8], body: &[u8]) -> Vec<u8> {
        let mut v = id.to_vec();
        v.extend_from_slice(&(body.len() as u64).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn sample_file(stream: &[u8], announced: u64) -> Vec<u8> {
        let mut aupr = vec![0, 0, 5];
        aupr.extend_from_slice(&[0x00, 0xbb, 0x80]); // 48000
        aupr.extend_from_slice(&6u32.to_be_bytes());
        aupr.extend_from_slice(&512u16.to_be_bytes());
        aupr.extend_from_slice(&[0, 0, 0, 0x08, 0x00]); // 2048
        aupr.extend_from_slice(&0x084bu16.to_be_bytes());
        aupr.extend_from_slice(&1024u16.to_be_bytes());
        aupr.extend_from_slice(&[0, 0, 0]);
        let mut v = chunk(b"DTSHDHDR", &[0; 16]);
        v.extend(chunk(b"AUPR-HDR", &aupr));
        v.extend_from_slice(b"STRMDATA");
        v.extend_from_slice(&announced.to_be_bytes());
        v.extend_from_slice(stream);
        v
    }

    #[test]
    fn reads_delay_and_original_length() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.dtshd");
        std::fs::write(&p, sample_file(&[1, 2, 3, 4], 4)).unwrap();
        let h = read_header(&p).unwrap().unwrap();
        assert_eq!(h.sample_rate, 48000);
        assert_eq!(h.original_samples, 2048);
        assert_eq!(h.codec_delay, 1024);
        assert_eq!(h.decoded_samples(), 3072);
        assert_eq!(h.speaker_mask, 0x084b);
        assert!(!h.is_truncated());
    }

    #[test]
    fn a_file_shorter_than_its_header_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cut.dtshd");
        std::fs::write(&p, sample_file(&[1, 2], 4000)).unwrap();
        assert!(read_header(&p).unwrap().unwrap().is_truncated());
    }

    #[test]
    fn bytes_in_memory_read_as_the_file_does() {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in [
            ("whole", sample_file(&[1, 2, 3, 4], 4)),
            ("cut", sample_file(&[1, 2], 4000)),
            ("raw", vec![0x7f, 0xfe, 0x80, 0x01, 0, 0, 0, 0, 0]),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, &bytes).unwrap();
            assert_eq!(
                parse_header(&bytes).unwrap(),
                read_header(&p).unwrap(),
                "{name}"
            );
        }
    }

    #[test]
    fn a_hostile_stream_length_is_truncated_not_an_overflow() {
        // Found by the fuzz target dtshd_header: offset + length overflowed.
        let bytes = sample_file(&[1, 2], u64::MAX - 8);
        let h = parse_header(&bytes).unwrap().unwrap();
        assert!(h.is_truncated());
    }

    #[test]
    fn a_raw_stream_has_no_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("raw.dts");
        std::fs::write(&p, [0x7f, 0xfe, 0x80, 0x01, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(read_header(&p).unwrap(), None);
    }
}
