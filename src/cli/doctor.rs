//! `dtsflac doctor`: everything the box needs, checked, with what to do.

use dtsflac::fmt;
use dtsflac::media::tools::{ToolFeatures, Tools, Version};

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
            println!(
                "flac:     {} ({})",
                tools.flac.display(),
                tools.flac_version
            );
            print_features(&tools.features());
            match tools.check_capabilities() {
                Ok(()) => println!("codecs:   FFmpeg has the DTS and FLAC decoders"),
                Err(e) => {
                    ok = false;
                    println!("codecs:   PROBLEM: {e}");
                }
            }
        }
        Err(e) => {
            ok = false;
            println!("tools:    PROBLEM: {e}");
        }
    }
    let board = dtsflac::hw::board::detect();
    println!("board:    {}", board.model);
    let clusters: Vec<String> = board
        .clusters
        .iter()
        .map(|c| format!("CPUs {:?} (capacity {})", c.cpus, c.capacity))
        .collect();
    println!("cpu:      {} core(s): {}", board.cores, clusters.join(", "));
    if let (Some(total), Some(avail)) = (board.memory_bytes, board.memory_available_bytes) {
        println!(
            "memory:   {}, {} available",
            fmt::memory_mb(total),
            fmt::memory_mb(avail)
        );
    }
    match dtsflac::hw::board::cpu_temperature() {
        Some(t) => println!(
            "heat:     {t:.1} °C{}",
            match dtsflac::hw::board::throttled() {
                Some(true) => ", THROTTLED",
                Some(false) => ", not throttled",
                None => "",
            }
        ),
        None => println!("heat:     no thermal zone"),
    }
    for (name, present) in [
        ("i2c", std::path::Path::new("/dev/i2c-1").exists()),
        ("gpio", std::path::Path::new("/dev/gpiochip0").exists()),
        ("fuse", std::path::Path::new("/dev/fuse").exists()),
    ] {
        println!(
            "{name:<9} {}",
            if present { "present" } else { "not present" }
        );
    }
    let plan = dtsflac::hw::tuning::plan(&board, &Default::default());
    println!("plan:");
    for reason in &plan.reasons {
        println!("  - {reason}");
    }
    if ok {
        println!("All good.");
        0
    } else {
        1
    }
}

/// The tools' releases and the optional features they bring, each with the
/// release that brings it when it is missing.
fn print_features(f: &ToolFeatures) {
    let release =
        |v: Option<Version>| v.map_or("unknown (a git build?)".to_string(), |v| v.to_string());
    println!(
        "versions: FFmpeg {}, libFLAC {}",
        release(f.ffmpeg),
        release(f.flac)
    );
    let yes_no = |present: bool, missing: &str| {
        if present {
            "yes".to_string()
        } else {
            format!("no ({missing})")
        }
    };
    println!(
        "features: Blu-ray input (FFmpeg's bluray protocol): {}",
        yes_no(f.bluray_input, "FFmpeg built without libbluray")
    );
    println!(
        "          DVD-Video demuxer (FFmpeg's dvdvideo): {}",
        yes_no(
            f.dvdvideo_demuxer,
            "FFmpeg 7 or later with libdvdnav has it"
        )
    );
    // dtsflac's own use of libbluray: an image's playlists (a folder's are
    // read directly).
    println!(
        "          Blu-ray images' languages, clips and chapters (libbluray): {}",
        match dtsflac::media::libbluray::version() {
            Ok(v) => format!("yes, libbluray {v}"),
            Err(e) => format!("no ({e}; the clips' own languages are used, no chapters)"),
        }
    );
    // Every FFmpeg reads a DVD folder: a title set's VOBs, joined.
    println!(
        "          DVD folders and ISO images (a title set's VOBs joined): yes, with every FFmpeg"
    );
    println!(
        "          flac encoder threads (flac -j): {}",
        yes_no(f.flac_threads, "libFLAC 1.5 or later has them")
    );
}
