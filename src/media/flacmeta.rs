//! Native reader of a FLAC file's STREAMINFO and Vorbis comments.
//!
//! Used to verify what FFmpeg wrote (MD5, length, bit depth) and to recognise
//! our own earlier output, without spawning a process per file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
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
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

pub fn read(path: &Path) -> io::Result<FlacMeta> {
    let mut r = BufReader::new(File::open(path)?);
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic)?;
    if &magic != b"fLaC" {
        return Err(invalid("not a FLAC file"));
    }
    let mut stream_info = None;
    let mut tags = BTreeMap::new();
    loop {
        let mut hdr = [0u8; 4];
        r.read_exact(&mut hdr)?;
        let last = hdr[0] & 0x80 != 0;
        let kind = hdr[0] & 0x7f;
        let len = u32::from_be_bytes([0, hdr[1], hdr[2], hdr[3]]) as usize;
        match kind {
            0 | 4 => {
                let mut body = vec![0u8; len];
                r.read_exact(&mut body)?;
                if kind == 0 {
                    stream_info = Some(parse_stream_info(&body)?);
                } else {
                    tags = parse_comments(&body)?;
                }
            }
            _ => {
                io::copy(&mut (&mut r).take(len as u64), &mut io::sink())?;
            }
        }
        if last {
            break;
        }
    }
    let stream_info = stream_info.ok_or_else(|| invalid("FLAC file has no STREAMINFO"))?;
    Ok(FlacMeta { stream_info, tags })
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
    let take_u32 = |pos: &mut usize| -> io::Result<usize> {
        let s = b
            .get(*pos..*pos + 4)
            .ok_or_else(|| invalid("comment block cut short"))?;
        *pos += 4;
        Ok(u32::from_le_bytes(s.try_into().unwrap()) as usize)
    };
    let vendor_len = take_u32(&mut pos)?;
    pos += vendor_len;
    let count = take_u32(&mut pos)?;
    let mut tags = BTreeMap::new();
    for _ in 0..count {
        let len = take_u32(&mut pos)?;
        let entry = b
            .get(pos..pos + len)
            .ok_or_else(|| invalid("comment cut short"))?;
        pos += len;
        let entry = String::from_utf8_lossy(entry);
        if let Some((k, v)) = entry.split_once('=') {
            tags.insert(k.to_ascii_uppercase(), v.to_string());
        }
    }
    Ok(tags)
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
    }
}
