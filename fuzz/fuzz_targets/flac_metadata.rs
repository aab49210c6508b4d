//! `media::flacmeta::parse`: the metadata blocks (STREAMINFO, SEEKTABLE,
//! Vorbis comments) of a FLAC file, as `read` parses them from a drive.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(meta) = dtsflac_fuzz::media::flacmeta::parse(data) {
        // (`audio_offset` may lie past the end: a skipped last block is not
        // checked for being whole; the frame check then finds no frames.)
        assert!(meta.audio_offset >= 4 + 4 + 34);
        let _ = meta.stream_info.md5_hex();
    }
});
