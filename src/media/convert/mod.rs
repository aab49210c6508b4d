//! One job: a DTS track becomes an exact, verified FLAC file next to its source.
//!
//! FFmpeg decodes the DTS to raw PCM and libFLAC's `flac` encodes it, two
//! processes joined by a pipe, so one track keeps two cores busy. The FLAC
//! is written under a hidden temporary name in the destination folder and
//! checked: libFLAC verifies every frame against its input as it encodes
//! (`--verify`), and the stored file is read back frame by frame (every
//! CRC, every sample counted, the length the master has). Then it is
//! fsynced and only then renamed to its final name. A failure or
//! cancellation removes the temporary file; the source is only ever read.

mod args;
mod control;
mod output;
mod pipeline;
mod tags;
mod verify;

use std::fs;
use std::path::Path;
use std::time::Instant;

use super::bluray;
use super::chapters;
use super::dvd;
use super::flacmeta;
use super::probe::{InputSpec, Track};
use super::tools::Tools;

pub use control::{
    ConvertError, ConvertOptions, ConvertResult, FailureKind, JobControl, Progress,
    DEFAULT_COMPRESSION_LEVEL,
};
pub use output::{
    existing_output, output_name, plan_outputs, remove_stale_temp_files, temp_path_for, Existing,
    SourceIdentity, TEMP_SUFFIX,
};
pub use tags::{channel_mask_tag, layout_mask};

use control::destination_error;
use output::{check_free_space, foreign_output, TempFile, Writeback};
use pipeline::{decode_lanes, encoder_threads, run_conversion, Output, PassPlan};
use tags::{tags, vendor};
use verify::verify;

/// Converts one track to `output`, reporting progress as it goes.
pub fn convert_track(
    tools: &Tools,
    track: &Track,
    output: &Path,
    options: &ConvertOptions,
    control: &JobControl,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<ConvertResult, ConvertError> {
    let started = Instant::now();
    // The one descriptor every FFmpeg of the job reads (see `safe_open`).
    let (identity, source) = SourceIdentity::open(track).map_err(|e| {
        ConvertError::new(FailureKind::Input, format!("cannot read the source: {e}"))
    })?;
    // A disc title: FFmpeg reads the disc's folder, checked again now.
    let source = match &track.input {
        // An image is the source file itself; libbluray reads it.
        InputSpec::BluRay {
            disc, image: false, ..
        } => open_disc(disc)?,
        InputSpec::Dvd {
            disc,
            video_ts,
            image: false,
            ..
        } => open_dvd(&disc.join(video_ts))?,
        _ => source,
    };
    // The probe's length, trim and layout are of the file as it was then.
    if let Some(change) = track
        .probed
        .as_ref()
        .and_then(|probed| identity.stamp.change_since(probed))
    {
        return Err(ConvertError::new(
            FailureKind::Input,
            format!(
                "the source changed since it was scanned ({change}); it is read anew the next time the drive is plugged in"
            ),
        ));
    }
    match existing_output(&identity, output) {
        Existing::Foreign => {
            return Err(ConvertError::new(
                FailureKind::Destination,
                foreign_output(output),
            ))
        }
        Existing::Nothing | Existing::Stale | Existing::UpToDate => {}
    }
    let dest_dir = output.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dest_dir).map_err(|e| destination_error(dest_dir, &e))?;
    check_free_space(track, dest_dir)?;

    let temp = temp_path_for(output);
    let guard = TempFile::create(&temp).map_err(|e| destination_error(dest_dir, &e))?;

    let written = Output::for_folder(dest_dir);
    // Streamed output takes its MD5 from the one decoder.
    let lanes = match written {
        Output::Direct => decode_lanes(track, identity.stamp.size, options),
        Output::Streamed => 1,
    };
    let writeback = Writeback::start(guard.file());
    let mut run = |lanes| {
        let plan = PassPlan {
            tools,
            track,
            source: &source,
            temp: &temp,
            temp_file: guard.file(),
            options,
            lanes,
            flac_threads: encoder_threads(tools, options, lanes),
            output: written,
        };
        run_conversion(&plan, control, &mut *on_progress)
    };
    let (pass, lanes) = match run(lanes) {
        // Parallel decoding met something it does not handle (or a seam
        // disagreed): start again the ordinary way, which also gives bad
        // input its proper diagnosis.
        Err(e) if lanes >= 2 && e.kind != FailureKind::Cancelled => (run(1)?, 1),
        other => (other?, lanes.max(1)),
    };
    writeback.flush_rest();
    control.encoded();
    let (verified, seek_points) = match verify(tools, track, &temp, options, control, pass.pcm_md5)
    {
        // Decoder errors that also broke the output: the stream is damaged,
        // and trying again will not help.
        Err(e) if e.kind != FailureKind::Cancelled && !pass.decoder_warnings.is_empty() => {
            return Err(ConvertError::new(
                FailureKind::Input,
                format!(
                    "the DTS stream is damaged ({}); no FLAC written",
                    pass.decoder_warnings[0]
                ),
            ))
        }
        other => other?,
    };
    drop(writeback);
    let lossless = track.lossless && pass.decoder_warnings.is_empty();
    let mut warnings = Vec::new();
    if track.lossless && !lossless {
        warnings.push(format!(
            "lossless decoding failed in part of the stream, so this FLAC is NOT an exact copy of the master ({})",
            pass.decoder_warnings.first().map(String::as_str).unwrap_or("decoder errors")
        ));
    }
    let mut comments = tags(track, &identity, tools, lossless);
    let rate = verified.sample_rate;
    comments.extend(chapters::vorbis_comments(
        &track.chapters,
        rate,
        verified.total_samples,
    ));
    flacmeta::write_tags(
        &temp,
        &vendor(tools),
        &comments,
        &seek_points,
        &chapters::cuesheet_block(&track.chapters, rate, verified.total_samples),
    )
    .map_err(|e| destination_error(dest_dir, &e))?;

    let output_bytes = guard
        .finish(output, &identity)
        .map_err(|e| destination_error(dest_dir, &e))?;
    let elapsed = started.elapsed().as_secs_f64();
    let duration_seconds = verified.total_samples as f64 / f64::from(verified.sample_rate.max(1));
    Ok(ConvertResult {
        output: output.to_path_buf(),
        output_bytes,
        input_bytes: identity.stamp.size,
        samples: verified.total_samples,
        duration_seconds,
        md5: verified.md5_hex(),
        lossless,
        warnings,
        elapsed_seconds: elapsed,
        speed: if elapsed > 0.0 {
            duration_seconds / elapsed
        } else {
            0.0
        },
        decode_lanes: lanes,
        flac_threads: encoder_threads(tools, options, lanes),
    })
}

/// A disc's root folder for FFmpeg, once its `BDMV` holds only folders
/// and regular files (see `bluray::check_disc_tree`).
fn open_disc(disc: &Path) -> Result<fs::File, ConvertError> {
    let input = |e: String| ConvertError::new(FailureKind::Input, e);
    bluray::check_disc_tree(&disc.join("BDMV")).map_err(input)?;
    bluray::open_disc(disc).map_err(|e| input(format!("cannot open the disc's folder: {e}")))
}

/// A DVD's `VIDEO_TS` folder for FFmpeg, once it holds only regular files
/// (see `dvd::check_tree`).
fn open_dvd(video_ts: &Path) -> Result<fs::File, ConvertError> {
    let input = |e: String| ConvertError::new(FailureKind::Input, e);
    dvd::check_tree(video_ts).map_err(input)?;
    super::safe_open::open_folder(video_ts)
        .map_err(|e| input(format!("cannot open the disc's folder: {e}")))
}

/// A track as the unit tests of the parts need it.
#[cfg(test)]
pub(crate) fn test_track(path: &str, layout: &str, channels: u32) -> Track {
    Track {
        path: std::path::PathBuf::from(path),
        stream_index: 0,
        track_number: 1,
        tracks_in_file: 1,
        profile: super::probe::Profile::HdMa,
        lossless: true,
        channels,
        channel_layout: layout.into(),
        sample_rate: 48000,
        bits_per_sample: 24,
        duration_seconds: Some(1.0),
        language: None,
        title: None,
        album: None,
        artist: None,
        input: super::probe::InputSpec::Probed,
        trim: Some(super::probe::Trim {
            start: 1024,
            samples: 2048,
        }),
        probed: None,
        chapters: Vec::new(),
    }
}
