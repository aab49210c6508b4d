//! `media::sniff`: the RIFF/WAVE chunk walk, the search for DTS in the PCM
//! it finds (as `find_dts_in_wav` does on a drive's file), and the core
//! header's PCM resolution.
#![no_main]

use std::io::Cursor;

use dtsflac_fuzz::media::sniff;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(w)) = sniff::read_wav_layout(&mut Cursor::new(data)) {
        assert!(w.data_offset + w.data_len <= data.len() as u64);
    }
    if let Ok(Some(found)) = sniff::find_dts_in_wav_data(&mut Cursor::new(data)) {
        assert!(found.offset < data.len() as u64);
    }
    let _ = sniff::find_dts_in_pcm(data);
    let _ = sniff::core_source_bits(data);
});
