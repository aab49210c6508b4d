//! `dtsflac check-flac`: the read-back check of stored FLAC files, as a
//! command. Conversions run it as a helper process, so that work is
//! scheduled like the rest of a job (its niceness, its CPUs) and never
//! weighs on the daemon serving the page and the panel.

use std::path::PathBuf;

use dtsflac::media::flacframes;

pub fn run(files: &[PathBuf], machine: bool) -> u8 {
    let mut code = 0;
    for f in files {
        let checked = if machine {
            // Mid-conversion the caller holds the count against STREAMINFO.
            flacframes::check(f)
        } else {
            flacframes::check_against_stream_info(f)
        };
        match checked {
            Ok(c) if machine => print!("{}", c.to_machine()),
            Ok(c) => println!(
                "{}: ok, {} frames, {} samples per channel",
                f.display(),
                c.frames,
                c.samples
            ),
            // The converting daemon puts the reason in the job's error.
            Err(e) if machine => {
                eprintln!("{e}");
                code = 1;
            }
            Err(e) => {
                eprintln!("dtsflac: {}: {e}", f.display());
                code = 1;
            }
        }
    }
    code
}
