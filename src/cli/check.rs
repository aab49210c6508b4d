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
            // Line 1: the counts; line 2: the seek points, three numbers each.
            Ok(c) if machine => {
                println!(
                    "{} {} {} {}",
                    c.frames, c.samples, c.min_frame_bytes, c.max_frame_bytes
                );
                let points: Vec<String> = c
                    .seek_points
                    .iter()
                    .map(|p| format!("{} {} {}", p.sample, p.offset, p.frame_samples))
                    .collect();
                println!("{}", points.join(" "));
            }
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
