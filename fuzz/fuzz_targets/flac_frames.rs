//! `media::flacframes::check_bytes`: the read-back walk over a FLAC file's
//! frames (headers, CRC-8, CRC-16, numbering), after its metadata.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(checked) = dtsflac_fuzz::media::flacframes::check_bytes(data) {
        assert!(checked.frames >= 1);
        assert!(u64::from(checked.max_frame_bytes) <= data.len() as u64);
        // What the helper process hands the converting job reads back.
        let text = checked.to_machine();
        let back = dtsflac_fuzz::media::flacframes::FramesChecked::from_machine(&text);
        assert_eq!(back.as_ref(), Some(&checked));
    }
});
