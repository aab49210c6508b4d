//! Chapter marks: read from a container (ffprobe's chapters), a Blu-ray
//! playlist's marks or a DVD title's programs, and written into a FLAC the two ways players read
//! them: `CHAPTERnnn`/`CHAPTERnnnNAME` Vorbis comments (the Matroska/Ogg
//! convention, `HH:MM:SS.mmm`) and a non-CD `CUESHEET` block with one
//! track per chapter at its sample.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a chapter starts in its track, and its name if it has one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chapter {
    pub start_seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Most chapters a FLAC gets (a CUESHEET holds 254 tracks and a lead-out).
pub const MOST_CHAPTERS: usize = 254;

/// The chapters of ffprobe's JSON (`-show_chapters`), counted from
/// `stream_start` (where the track's first sample is on the container's
/// clock).
pub fn from_ffprobe(json: &Value, stream_start: f64) -> Vec<Chapter> {
    let Some(list) = json.get("chapters").and_then(Value::as_array) else {
        return Vec::new();
    };
    let chapters = list.iter().filter_map(|c| {
        let start: f64 = match c.get("start_time")? {
            Value::String(s) => s.parse().ok()?,
            Value::Number(n) => n.as_f64()?,
            _ => return None,
        };
        let name = c
            .get("tags")
            .and_then(Value::as_object)
            .and_then(|t| t.iter().find(|(k, _)| k.eq_ignore_ascii_case("title")))
            .and_then(|(_, v)| v.as_str())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.chars().take(200).collect());
        Some(Chapter {
            start_seconds: (start - stream_start).max(0.0),
            name,
        })
    });
    tidy(chapters.collect())
}

/// Unnamed chapters at these starts (a disc's: a playlist's marks, a DVD
/// title's programs), tidied.
pub fn unnamed(starts: impl IntoIterator<Item = f64>) -> Vec<Chapter> {
    tidy(
        starts
            .into_iter()
            .map(|start_seconds| Chapter {
                start_seconds,
                name: None,
            })
            .collect(),
    )
}

/// In order, finite, one per start, at most `MOST_CHAPTERS`.
pub fn tidy(mut chapters: Vec<Chapter>) -> Vec<Chapter> {
    chapters.retain(|c| c.start_seconds.is_finite() && c.start_seconds >= 0.0);
    chapters.sort_by(|a, b| a.start_seconds.total_cmp(&b.start_seconds));
    // Marks closer than a millisecond are one chapter.
    chapters.dedup_by(|later, earlier| later.start_seconds - earlier.start_seconds < 0.001);
    chapters.truncate(MOST_CHAPTERS);
    chapters
}

/// A chapter's first sample, and whether it lies inside the track.
fn start_sample(c: &Chapter, sample_rate: u32, total_samples: u64) -> Option<u64> {
    let sample = (c.start_seconds * f64::from(sample_rate)).round() as u64;
    (sample < total_samples).then_some(sample)
}

/// "01:02:03.040"
fn clock(sample: u64, sample_rate: u32) -> String {
    let ms = sample * 1000 / u64::from(sample_rate.max(1));
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// The chapters that start inside the track, at their samples.
fn placed(chapters: &[Chapter], sample_rate: u32, total_samples: u64) -> Vec<(u64, String)> {
    chapters
        .iter()
        .filter_map(|c| Some((c, start_sample(c, sample_rate, total_samples)?)))
        .enumerate()
        .map(|(i, (c, sample))| {
            let name = c
                .name
                .clone()
                .unwrap_or_else(|| format!("Chapter {}", i + 1));
            (sample, name)
        })
        .collect()
}

/// `CHAPTER001=00:00:00.000`, `CHAPTER001NAME=…`, for the chapters that
/// start inside the track.
pub fn vorbis_comments(
    chapters: &[Chapter],
    sample_rate: u32,
    total_samples: u64,
) -> Vec<(String, String)> {
    placed(chapters, sample_rate, total_samples)
        .into_iter()
        .enumerate()
        .flat_map(|(i, (sample, name))| {
            let key = format!("CHAPTER{:03}", i + 1);
            [
                (key.clone(), clock(sample, sample_rate)),
                (format!("{key}NAME"), name),
            ]
        })
        .collect()
}

/// The body of a non-CD `CUESHEET` metadata block: track n at chapter n's
/// sample (one index point, 1, at its start) and the lead-out (255) at
/// the end. Empty when there are no chapters.
pub fn cuesheet_block(chapters: &[Chapter], sample_rate: u32, total_samples: u64) -> Vec<u8> {
    let starts = placed(chapters, sample_rate, total_samples);
    if starts.is_empty() {
        return Vec::new();
    }
    let mut b = Vec::new();
    b.extend_from_slice(&[0u8; 128]); // media catalog number
    b.extend_from_slice(&0u64.to_be_bytes()); // lead-in: none, not a CD
    b.extend_from_slice(&[0u8; 259]); // is-CD flag (0) and reserved
    b.push(starts.len() as u8 + 1);
    let track = |b: &mut Vec<u8>, offset: u64, number: u8, indexes: u8| {
        b.extend_from_slice(&offset.to_be_bytes());
        b.push(number);
        b.extend_from_slice(&[0u8; 12]); // ISRC
        b.extend_from_slice(&[0u8; 14]); // audio, no pre-emphasis, reserved
        b.push(indexes);
    };
    for (n, (sample, _)) in starts.iter().enumerate() {
        track(&mut b, *sample, n as u8 + 1, 1);
        b.extend_from_slice(&0u64.to_be_bytes()); // index 1 at the track's start
        b.push(1);
        b.extend_from_slice(&[0u8; 3]);
    }
    track(&mut b, total_samples, 255, 0);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: f64, name: Option<&str>) -> Chapter {
        Chapter {
            start_seconds: start,
            name: name.map(Into::into),
        }
    }

    #[test]
    fn ffprobe_chapters_are_read_in_order_from_the_stream_start() {
        let json: Value = serde_json::from_str(
            r#"{"chapters":[
                {"id":1,"start_time":"61.500000","tags":{"title":"Storm"}},
                {"id":0,"start_time":"0.000000","tags":{"title":" "}},
                {"id":2,"start_time":"61.5004"},
                {"id":3,"start_time":"nan"}]}"#,
        )
        .unwrap();
        let c = from_ffprobe(&json, 0.5);
        assert_eq!(c, [at(0.0, None), at(61.0, Some("Storm"))]);
        assert!(from_ffprobe(&serde_json::json!({}), 0.0).is_empty());
    }

    #[test]
    fn chapters_become_comments_and_a_cuesheet_at_their_samples() {
        let c = [at(0.0, Some("Opening")), at(90.25, None), at(500.0, None)];
        // 100 s at 48 kHz: the third starts after the end and is left out.
        let total = 4_800_000;
        let tags = vorbis_comments(&c, 48_000, total);
        assert_eq!(
            tags,
            [
                ("CHAPTER001".to_string(), "00:00:00.000".to_string()),
                ("CHAPTER001NAME".into(), "Opening".into()),
                ("CHAPTER002".into(), "00:01:30.250".into()),
                ("CHAPTER002NAME".into(), "Chapter 2".into()),
            ]
        );
        let b = cuesheet_block(&c, 48_000, total);
        assert_eq!(b.len(), 128 + 8 + 259 + 1 + 2 * (36 + 12) + 36);
        assert_eq!(b[395], 3, "two tracks and the lead-out");
        let second = 396 + 48;
        assert_eq!(
            u64::from_be_bytes(b[second..second + 8].try_into().unwrap()),
            4_332_000
        );
        assert_eq!(b[second + 8], 2);
        let lead_out = 396 + 2 * 48;
        assert_eq!(
            u64::from_be_bytes(b[lead_out..lead_out + 8].try_into().unwrap()),
            total
        );
        assert_eq!(b[lead_out + 8], 255);
        assert!(cuesheet_block(&[], 48_000, total).is_empty());
    }

    #[test]
    fn no_more_chapters_than_a_cuesheet_holds() {
        let many: Vec<_> = (0..400).map(|i| at(f64::from(i), None)).collect();
        assert_eq!(tidy(many).len(), MOST_CHAPTERS);
    }
}
