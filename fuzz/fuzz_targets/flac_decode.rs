//! `media::flacdecode`: the decoder of a FLAC's first audio frames, as the
//! scan runs it on a drive's CD-shaped FLACs, fed to the DTS look after it.
#![no_main]

use dtsflac_fuzz::media::{flacdecode, flacmeta, sniff};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(meta) = flacmeta::parse(data) else {
        return;
    };
    let Some(audio) = data.get(meta.audio_offset as usize..) else {
        return;
    };
    let Ok(mut frames) = flacdecode::StereoPcm::new(audio, &meta.stream_info) else {
        return;
    };
    let mut pcm = Vec::new();
    while let Ok(true) = frames.next_frame(&mut pcm) {
        // A frame is at most 65,536 samples of 4 bytes, each from at least a byte of input.
        assert!(pcm.len() <= 4 * 65_536 * (audio.len() + 1));
    }
    let mut given = false;
    let _ = sniff::look_for_dts(|buf| {
        if !given {
            buf.extend_from_slice(&pcm);
            given = true;
        }
        Ok(false)
    });
});
