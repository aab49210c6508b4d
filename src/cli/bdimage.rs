//! `dtsflac bluray-image-files`: the helper process in which libbluray
//! reads a Blu-ray image's playlists and disc library for a probe
//! (`media::bdimage`), so that a damaged image ends it and not the box.

use std::io::Write;
use std::path::Path;

use dtsflac::media::bdimage;

pub fn run(image: &Path, paths: &[String]) -> u8 {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match bdimage::serve(image, paths, &mut out)
        .and_then(|()| out.flush().map_err(|e| format!("cannot write: {e}")))
    {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}
