//! `dtsflac scan`: what would be converted, as a table or JSON.

use std::path::PathBuf;

use dtsflac::fmt;
use dtsflac::media::probe::{DiscTitles, InputSpec, Track};
use dtsflac::media::scan::{scan, ScanLimits};

use super::tools_or_explain;

pub fn run(paths: &[PathBuf], json: bool, disc_titles: DiscTitles) -> u8 {
    let Some(tools) = tools_or_explain() else {
        return 1;
    };
    let limits = ScanLimits {
        disc_titles,
        ..ScanLimits::default()
    };
    let report = scan(&tools, paths, limits);
    for p in &report.problems {
        eprintln!("dtsflac: {}: {}", p.path.display(), p.reason);
    }
    if json {
        let tracks: Vec<_> = report.found.iter().map(|f| track_json(&f.track)).collect();
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
            // A disc is listed as its main title: "Film (2009) [Blu-ray
            // title 00000.mpls, 3:20, 2 clips]".
            let (path, stream) = match &t.input {
                InputSpec::BluRay {
                    disc,
                    playlist,
                    clips,
                    image,
                    ..
                } => (
                    disc.as_path(),
                    format!(
                        " [Blu-ray {}title {playlist:05}.mpls, {}{}{}]",
                        if *image { "image, " } else { "" },
                        t.duration_seconds
                            .map(fmt::duration)
                            .unwrap_or_else(|| "?".into()),
                        match image {
                            true => String::new(),
                            false => format!(", {clips} clip(s)"),
                        },
                        stream.replace(" [", "; ").replace(']', "")
                    ),
                ),
                InputSpec::Dvd {
                    disc,
                    title_set,
                    vobs,
                    image,
                    ..
                } => (
                    disc.as_path(),
                    format!(
                        " [DVD {}title set {title_set}, {}, {} VOB(s){}]",
                        if *image { "image, " } else { "" },
                        t.duration_seconds
                            .map(fmt::duration)
                            .unwrap_or_else(|| "?".into()),
                        vobs.len(),
                        stream.replace(" [", "; ").replace(']', "")
                    ),
                ),
                _ => (t.path.as_path(), stream),
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
                path.display(),
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

/// A track as `scan --json` shows it; a disc's tracks add a `disc` object
/// (its folder, the main title's playlist, length and clips, its title;
/// for a DVD its title set and VOBs).
fn track_json(track: &Track) -> serde_json::Value {
    let mut value = serde_json::to_value(track).expect("tracks serialise");
    if let InputSpec::BluRay {
        disc,
        playlist,
        clips,
        main,
        image,
    } = &track.input
    {
        value["disc"] = serde_json::json!({
            "root": disc,
            "playlist": format!("{playlist:05}.mpls"),
            "playlist_number": playlist,
            "clips": clips,
            "main_title": main,
            "image": image,
            "duration_seconds": track.duration_seconds,
            "title": track.title,
        });
        if *image {
            // An image's playlists are libbluray's alone: how many clips is unknown.
            value["disc"]["clips"] = serde_json::Value::Null;
        }
    }
    if let InputSpec::Dvd {
        disc,
        title_set,
        vobs,
        main,
        image,
        ..
    } = &track.input
    {
        value["disc"] = serde_json::json!({
            "root": disc,
            "title_set": title_set,
            "vobs": vobs,
            "image": image,
            "main_title": main,
            "duration_seconds": track.duration_seconds,
            "title": track.title,
        });
    }
    value
}
