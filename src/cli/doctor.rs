//! `dtsflac doctor`: everything the box needs, checked, with what to do.

use dtsflac::media::tools::Tools;

pub fn run() -> u8 {
    let mut ok = true;
    match Tools::locate() {
        Ok(tools) => {
            println!(
                "ffmpeg:   {} ({})",
                tools.ffmpeg.display(),
                tools.ffmpeg_version
            );
            println!("ffprobe:  {}", tools.ffprobe.display());
            match tools.check_capabilities() {
                Ok(()) => println!("codecs:   DTS decoder, FLAC encoder and MD5 muxer present"),
                Err(e) => {
                    ok = false;
                    println!("codecs:   PROBLEM: {e}");
                }
            }
        }
        Err(e) => {
            ok = false;
            println!("ffmpeg:   PROBLEM: {e}");
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("cpu:      {cores} core(s): {cores} conversion(s) at once by default");
    if ok {
        println!("All good.");
        0
    } else {
        1
    }
}
