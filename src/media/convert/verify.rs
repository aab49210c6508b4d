//! Verification of a written FLAC: the frame-by-frame read-back (in a
//! `check-flac` helper process when dtsflac's executable is known) and the
//! checks of its length, format and MD5 against the track.

use std::path::Path;
use std::process::{Command, Stdio};

use super::control::{ConvertError, ConvertOptions, FailureKind, JobControl};
use super::pipeline::own_process_group;
use crate::media::flacmeta;
use crate::media::probe::Track;
use crate::media::tools::{flac_file_arg, Tools};

/// Checks the written FLAC: the length the master has, the format the
/// track has, and the file as stored, frame by frame (CRC-8 of every
/// header, CRC-16 of every frame, no gap, every sample counted). libFLAC's
/// `--verify` has already compared every encoded frame with its input.
/// The frame-by-frame read-back (`flacframes`), in a helper process at the
/// job's niceness and CPUs when dtsflac's executable is known.
fn check_frames(
    tools: &Tools,
    temp: &Path,
    options: &ConvertOptions,
    control: &JobControl,
) -> Result<crate::media::flacframes::FramesChecked, ConvertError> {
    let failed = |m: String| ConvertError::new(FailureKind::Transient, m);
    let Some(exe) = &tools.checker else {
        return crate::media::flacframes::check(temp)
            .map_err(|e| failed(format!("verification failed: {e}")));
    };
    let mut cmd = Command::new(exe);
    cmd.args(["check-flac", "--machine"])
        .arg(flac_file_arg(temp))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    own_process_group(&mut cmd, options);
    let child = cmd
        .spawn()
        .map_err(|e| failed(format!("cannot run the FLAC check: {e}")))?;
    // Paused and cancelled with the rest of the job.
    let pid = child.id();
    control.register(pid);
    let out = child.wait_with_output();
    control.unregister(pid);
    if control.is_cancelled() {
        return Err(ConvertError::new(FailureKind::Cancelled, "cancelled"));
    }
    let out = out.map_err(|e| failed(format!("cannot run the FLAC check: {e}")))?;
    let checked = out
        .status
        .success()
        .then(|| {
            crate::media::flacframes::FramesChecked::from_machine(&String::from_utf8_lossy(
                &out.stdout,
            ))
        })
        .flatten();
    match checked {
        Some(c) => Ok(c),
        None => {
            let why = String::from_utf8_lossy(&out.stderr);
            let why = why.trim().trim_start_matches("dtsflac: ");
            Err(failed(format!("verification failed: {why}")))
        }
    }
}

pub(super) fn verify(
    tools: &Tools,
    track: &Track,
    temp: &Path,
    options: &ConvertOptions,
    control: &JobControl,
    streamed_md5: Option<[u8; 16]>,
) -> Result<(flacmeta::StreamInfo, Vec<flacmeta::SeekPoint>), ConvertError> {
    let bad = |m: String| ConvertError::new(FailureKind::Input, m);
    let failed = |m: String| ConvertError::new(FailureKind::Transient, m);
    let frames = check_frames(tools, temp, options, control)?;
    if let Some(md5) = streamed_md5 {
        flacmeta::complete_stream_info(
            temp,
            frames.min_frame_bytes,
            frames.max_frame_bytes,
            frames.samples,
            md5,
        )
        .map_err(|e| failed(format!("cannot complete the FLAC's STREAMINFO: {e}")))?;
    }
    let meta =
        flacmeta::read(temp).map_err(|e| failed(format!("cannot read back the FLAC: {e}")))?;
    let si = meta.stream_info;
    if si.total_samples != frames.samples {
        return Err(failed(format!(
            "verification failed: the FLAC's frames hold {} samples, its STREAMINFO says {}",
            frames.samples, si.total_samples
        )));
    }
    if let Some(expected) = track.expected_samples() {
        if si.total_samples != expected {
            return Err(bad(format!(
                "the stream is shorter than its header says: decoded {} of {expected} samples (truncated or damaged file)",
                si.total_samples
            )));
        }
    }
    if si.total_samples == 0 {
        return Err(bad("no audio could be decoded".into()));
    }
    if u32::from(si.channels) != track.channels
        || si.bits_per_sample != track.bits_per_sample
        || si.sample_rate != track.sample_rate
    {
        return Err(bad(format!(
            "the FLAC came out as {} ch {}-bit {} Hz instead of {} ch {}-bit {} Hz",
            si.channels,
            si.bits_per_sample,
            si.sample_rate,
            track.channels,
            track.bits_per_sample,
            track.sample_rate
        )));
    }
    if si.md5 == [0; 16] {
        return Err(failed(
            "verification failed: the FLAC has no MD5 of its audio".into(),
        ));
    }
    Ok((si, frames.seek_points))
}
