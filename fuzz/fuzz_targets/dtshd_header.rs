//! `media::dtshd`: the chunk walk to AUPR-HDR and STRMDATA, the numbers the
//! probe derives from it, and `stream_frames`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(h)) = dtsflac_fuzz::media::dtshd::parse_header(data) {
        // What probe and convert compute from it.
        let _ = h.is_truncated();
        let _ = h.decoded_samples();
        let _ = h.file_len.saturating_sub(h.stream_offset);
    }
    if let Some(frames) = dtsflac_fuzz::media::dtshd::stream_frames(data) {
        assert!(frames.len() <= data.len());
    }
});
