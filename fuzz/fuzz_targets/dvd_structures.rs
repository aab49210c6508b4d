//! What a DVD image or folder gives us to parse: an image's first MiBs
//! (`discimage::kind_of_bytes`), its ISO 9660 directories and volume
//! descriptor (`iso9660`), and a title set's IFO (`dvd::parse_title_set_info`: languages,
//! and chapters from the part-of-title and program chain tables), and a
//! VOB's first packs (`dvd::css_scrambled`).
//! The first byte picks the parser; whatever the rest holds is parsed or
//! refused, and what it gives is within the data.
#![no_main]

use dtsflac_fuzz::media::{discimage, dvd, iso9660};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&which, data)) = input.split_first() else {
        return;
    };
    match which % 5 {
        0 => {
            if let Ok(entries) = iso9660::parse_directory(data) {
                // Every record takes at least its 34 bytes.
                assert!(entries.len() * 34 <= data.len());
                assert!(entries.iter().all(|e| e.name.len() <= 255 * 3));
            }
        }
        1 => {
            let _ = iso9660::parse_root(data);
        }
        2 => {
            if let Ok(info) = dvd::parse_title_set_info(data) {
                assert!(info.languages.len() <= 8);
                assert!(info.chapters().len() <= 999);
                assert!(info.chapters().iter().all(|c| c.is_finite() && *c >= 0.0));
                assert!(info.titles.len() <= 99);
                for title in &info.titles {
                    assert!(title.cells.iter().all(|[first, last]| first <= last));
                    assert!(title.chapters.iter().all(|c| *c <= title.seconds));
                    // Ranges of VOBs of any size stay within them.
                    if let Some(pieces) = title.pieces(&[1 << 30, 12_345 * 2048]) {
                        assert!(pieces.iter().all(|[vob, start, len]| *vob < 2
                            && start + len <= if *vob == 0 { 1 << 30 } else { 12_345 * 2048 }));
                    }
                }
            }
        }
        3 => {
            let _ = discimage::kind_of_bytes(data);
        }
        _ => {
            let _ = dvd::css_scrambled(data);
        }
    }
});
