//! `media::bluray::parse_playlist`: a `.mpls` from a drive, whatever it
//! holds, is parsed or refused, and what it gives is within the data.
#![no_main]

use dtsflac_fuzz::media::bluray::parse_playlist;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = parse_playlist(data) {
        // Every play item takes at least its 34 bytes of fixed fields.
        assert!(p.items.len() * 34 <= data.len());
        assert!(p.audio.iter().all(|a| a.language.len() <= 3 * 4));
        let _ = p.seconds();
    }
});
