//! `dtsflac scan`: what would be converted, as a table or JSON.

use std::path::PathBuf;

use dtsflac::fmt;
use dtsflac::media::scan::{scan, ScanLimits};

use super::tools_or_explain;

pub fn run(paths: &[PathBuf], json: bool) -> u8 {
    let Some(tools) = tools_or_explain() else {
        return 1;
    };
    let report = scan(&tools, paths, ScanLimits::default());
    for p in &report.problems {
        eprintln!("dtsflac: {}: {}", p.path.display(), p.reason);
    }
    if json {
        let tracks: Vec<_> = report.found.iter().map(|f| &f.track).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&tracks).expect("tracks serialise")
        );
    } else if report.found.is_empty() {
        println!("No DTS tracks found.");
    } else {
        println!(
            "{:<11} {:>3} {:<10} {:>6} {:>4} {:>9} {:<4} PATH",
            "PROFILE", "CH", "LAYOUT", "RATE", "BITS", "DURATION", "LANG"
        );
        for f in &report.found {
            let t = &f.track;
            // Told apart as the output names do it: "Film.mkv [2.eng, stream 3]".
            let stream = match t.part_name() {
                Some(part) => format!(" [{part}, stream {}]", t.stream_index),
                None => String::new(),
            };
            println!(
                "{:<11} {:>3} {:<10} {:>6} {:>4} {:>9} {:<4} {}{}",
                t.profile.name(),
                t.channels,
                t.channel_layout,
                t.sample_rate,
                t.bits_per_sample,
                t.duration_seconds
                    .map(fmt::duration)
                    .unwrap_or_else(|| "?".into()),
                t.language.as_deref().unwrap_or("-"),
                t.path.display(),
                stream
            );
        }
        println!("{} DTS track(s) found.", report.found.len());
    }
    if report.problems.is_empty() {
        0
    } else {
        1
    }
}
