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
            let duration = t
                .duration_seconds
                .map(fmt::duration)
                .unwrap_or_else(|| "?".into());
            // A disc is listed as its main title: "Film (2009) [Blu-ray
            // title 00000.mpls, 3:20, 2 clip(s); 1.eng, stream 1]".
            let disc_label = |disc: &'_ std::path::Path, what: String, parts: String| {
                let part = stream.replace(" [", "; ").replace(']', "");
                (
                    disc.to_path_buf(),
                    format!(" [{what}, {duration}{parts}{part}]"),
                )
            };
            let image_of = |image: bool| if image { "image, " } else { "" };
            let (path, stream) = match &t.input {
                InputSpec::BluRay {
                    disc,
                    playlist,
                    clips,
                    image,
                    ..
                } => disc_label(
                    disc,
                    format!("Blu-ray {}title {playlist:05}.mpls", image_of(*image)),
                    // A playlist has at least one clip: 0 is an image whose
                    // playlists libbluray could not read here.
                    match clips {
                        0 => String::new(),
                        _ => format!(", {clips} clip(s)"),
                    },
                ),
                InputSpec::Dvd {
                    disc,
                    title_set,
                    title,
                    vobs,
                    image,
                    ..
                } => disc_label(
                    disc,
                    match title {
                        0 => format!("DVD {}title set {title_set}", image_of(*image)),
                        t => format!("DVD {}title set {title_set}, title {t}", image_of(*image)),
                    },
                    format!(", {} VOB(s)", vobs.len()),
                ),
                _ => (t.path.clone(), stream.clone()),
            };
            println!(
                "{:<11} {:>3} {:<10} {:>6} {:>4} {:>9} {:<4} {}{}",
                t.profile.name(),
                t.channels,
                t.channel_layout,
                t.sample_rate,
                t.bits_per_sample,
                duration,
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
    let (root, main, image, mut disc) = match &track.input {
        InputSpec::BluRay {
            disc,
            playlist,
            clips,
            main,
            image,
            ..
        } => (
            disc,
            main,
            image,
            serde_json::json!({
                "playlist": format!("{playlist:05}.mpls"),
                "playlist_number": playlist,
                // 0: an image whose playlists libbluray could not read here.
                "clips": (*clips > 0).then_some(clips),
            }),
        ),
        InputSpec::Dvd {
            disc,
            title_set,
            title,
            vobs,
            main,
            image,
            ..
        } => (
            disc,
            main,
            image,
            // `title`: one title of a title set of several, else null.
            serde_json::json!({
                "title_set": title_set,
                "title": (*title > 0).then_some(title),
                "vobs": vobs,
            }),
        ),
        _ => return value,
    };
    disc["root"] = serde_json::json!(root);
    disc["main_title"] = serde_json::json!(main);
    disc["image"] = serde_json::json!(image);
    disc["duration_seconds"] = serde_json::json!(track.duration_seconds);
    disc["title"] = serde_json::json!(track.title);
    value["disc"] = disc;
    value
}
