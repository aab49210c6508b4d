//! The tags a job writes into its FLAC: title, comment, source and
//! encoder, our own record of the source (for the up-to-date check), and
//! the speaker mask where FLAC's default channel order would be wrong.

use super::output::SourceIdentity;
use crate::media::probe::{Track, FINGERPRINT_TAG, OWN_SOURCE_TAG};
use crate::media::tools::Tools;

/// The speaker mask libFLAC assumes for each channel count (RFC 9639 §9.1.3).
fn flac_default_mask(channels: u32) -> Option<u64> {
    Some(match channels {
        1 => 0x4,
        2 => 0x3,
        3 => 0x7,
        4 => 0x33,
        5 => 0x37,
        6 => 0x3f,
        7 => 0x70f,
        8 => 0x63f,
        _ => return None,
    })
}

/// FFmpeg's layout names → WAVEFORMATEXTENSIBLE speaker masks.
pub fn layout_mask(layout: &str) -> Option<u64> {
    Some(match layout {
        "mono" => 0x4,
        "stereo" => 0x3,
        "2.1" => 0xb,
        "3.0" => 0x7,
        "3.0(back)" => 0x103,
        "4.0" => 0x107,
        "quad" => 0x33,
        "quad(side)" => 0x603,
        "3.1" => 0xf,
        "5.0" => 0x37,
        "5.0(side)" => 0x607,
        "4.1" => 0x10f,
        "5.1" => 0x3f,
        "5.1(side)" => 0x60f,
        "6.0" => 0x707,
        "6.0(front)" => 0x6c3,
        "hexagonal" => 0x137,
        "6.1" => 0x70f,
        "6.1(back)" => 0x13f,
        "6.1(front)" => 0x6cb,
        "7.0" => 0x637,
        "7.0(front)" => 0x6c7,
        "7.1" => 0x63f,
        "7.1(wide)" => 0x6cf,
        "7.1(wide-side)" => 0xff,
        _ => return None,
    })
}

/// The mask to write as `WAVEFORMATEXTENSIBLE_CHANNEL_MASK`, when FLAC's
/// default order for this channel count would put a channel on the wrong
/// speaker (DTS 5.1 surrounds are side speakers, FLAC's 6-channel default
/// has back speakers).
pub fn channel_mask_tag(track: &Track) -> Option<String> {
    let mask = layout_mask(&track.channel_layout)?;
    (flac_default_mask(track.channels) != Some(mask)).then(|| format!("0x{mask:04X}"))
}

pub(super) fn vendor(tools: &Tools) -> String {
    format!(
        "dtsflac {} with FFmpeg {} and libFLAC {}",
        env!("CARGO_PKG_VERSION"),
        tools.short_version(),
        tools.flac_short_version()
    )
}

pub(super) fn tags(
    track: &Track,
    identity: &SourceIdentity,
    tools: &Tools,
    lossless: bool,
) -> Vec<(String, String)> {
    let file_name = identity.name.clone();
    let stem = track.source_stem();
    let mut title = track.title.clone().unwrap_or(stem);
    if track.title.is_none() && track.tracks_in_file > 1 {
        title = format!("{title} (track {})", track.track_number);
    }
    let quality = if lossless {
        "lossless".to_string()
    } else if track.lossless {
        "NOT lossless: the lossless layer could not be decoded everywhere".to_string()
    } else {
        format!("decoded from lossy {}", track.profile)
    };
    let mut t = vec![
        ("TITLE".to_string(), title),
        (
            "COMMENT".into(),
            format!(
                "{} from {file_name} (stream {}), {quality}",
                track.describe(),
                track.stream_index
            ),
        ),
        ("SOURCE".into(), format!("{file_name} ({})", track.profile)),
        ("ENCODER".into(), vendor(tools)),
        (OWN_SOURCE_TAG.into(), file_name),
        (
            "DTSFLAC_SOURCE_SIZE".into(),
            identity.stamp.size.to_string(),
        ),
        (
            "DTSFLAC_SOURCE_MTIME".into(),
            identity.stamp.mtime.to_string(),
        ),
        (FINGERPRINT_TAG.into(), identity.stamp.fingerprint.clone()),
        ("DTSFLAC_STREAM".into(), track.stream_index.to_string()),
        ("DTSFLAC_PROFILE".into(), track.profile.to_string()),
        (
            "DTSFLAC_LOSSLESS".into(),
            if lossless { "yes" } else { "no" }.into(),
        ),
    ];
    if let Some(v) = &track.album {
        t.push(("ALBUM".into(), v.clone()));
    }
    if let Some(v) = &track.artist {
        t.push(("ARTIST".into(), v.clone()));
    }
    if let Some(v) = &track.language {
        t.push(("LANGUAGE".into(), v.clone()));
    }
    if let Some(mask) = channel_mask_tag(track) {
        t.push(("WAVEFORMATEXTENSIBLE_CHANNEL_MASK".into(), mask));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::super::test_track as track;
    use super::*;

    #[test]
    fn side_surrounds_get_an_explicit_channel_mask() {
        assert_eq!(
            channel_mask_tag(&track("a", "5.1(side)", 6)).as_deref(),
            Some("0x060F")
        );
        assert_eq!(channel_mask_tag(&track("a", "7.1", 8)), None);
        assert_eq!(channel_mask_tag(&track("a", "6.1", 7)), None);
        assert_eq!(channel_mask_tag(&track("a", "5.1", 6)), None);
    }
}
