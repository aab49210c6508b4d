//! The command lines of a job's processes: FFmpeg as decoder, demuxer,
//! lane or unpacker, and libFLAC's `flac` as encoder, with the raw PCM
//! shape they agree on.

use std::ffi::OsString;
use std::path::Path;

use super::control::ConvertOptions;
use crate::media::probe::{dvd_input_arg, input_args, InputSpec, Track};
use crate::media::tools::{bluray_arg, ffmpeg_file_arg, flac_file_arg};

const LOG_ARGS: [&str; 6] = [
    "-nostdin",
    "-hide_banner",
    "-y",
    "-stats",
    "-stats_period",
    "0.25",
];

/// The decoder's input: the DTS source, decoded with CRC checks on (so
/// damaged lossless frames are logged, not passed silently), trimmed to the
/// original length. `source` is the name the process opens the source by
/// (`/proc/self/fd/N`, see `safe_open::pass_to_child`).
pub(super) fn decode_input_args(track: &Track, source: &Path) -> (Vec<OsString>, String) {
    let mut a: Vec<OsString> = LOG_ARGS.iter().map(OsString::from).collect();
    a.extend(["-err_detect", "crccheck"].iter().map(OsString::from));
    a.extend(input_args(&track.input).into_iter().map(OsString::from));
    a.push("-i".into());
    match &track.input {
        InputSpec::PcmInFlac { .. } => a.push("pipe:0".into()),
        // `source` is then the disc's root folder.
        InputSpec::BluRay { .. } => a.push(bluray_arg(source)),
        // `source` is then the disc's `VIDEO_TS` folder, or its image.
        InputSpec::Dvd { .. } => a.push(dvd_input_arg(source, &track.input)),
        _ => a.push(ffmpeg_file_arg(source)),
    }
    let source = format!("[0:{}]", track.stream_index);
    let chain = match track.trim {
        Some(t) => format!(
            "{source}atrim=start_sample={}:end_sample={},asetpts=PTS-STARTPTS",
            t.start,
            t.start + t.samples
        ),
        None => format!("{source}anull"),
    };
    (a, chain)
}

/// Raw PCM between decoder and encoder: 16-bit, or packed 24-bit (what
/// libFLAC reads and what its STREAMINFO MD5 covers).
pub(super) fn raw_pcm(bits: u8) -> (&'static str, &'static str, u32) {
    if bits <= 16 {
        ("s16le", "pcm_s16le", 2)
    } else {
        ("s24le", "pcm_s24le", 3)
    }
}

/// A helper stage's start: no stats, no stdin, `path` as the input.
pub(super) fn quiet_file_input(path: &Path) -> Vec<OsString> {
    let mut a: Vec<OsString> = ["-nostdin", "-hide_banner", "-nostats", "-i"]
        .iter()
        .map(OsString::from)
        .collect();
    a.push(ffmpeg_file_arg(path));
    a
}

/// Lanes' source: the DTS frames of the track, as they are, on stdout.
pub(super) fn demuxer_args(track: &Track, source: &Path) -> Vec<OsString> {
    let mut a = quiet_file_input(source);
    a.push("-map".into());
    a.push(format!("0:{}", track.stream_index).into());
    for s in ["-map_metadata", "-1", "-c:a", "copy", "-f", "dts", "pipe:1"] {
        a.push(s.into());
    }
    a
}

/// One lane: raw DTS frames from stdin, raw PCM to stdout, CRCs checked.
pub(super) fn lane_args(track: &Track) -> Vec<OsString> {
    let mut a: Vec<OsString> = [
        "-nostdin",
        "-hide_banner",
        "-nostats",
        "-y",
        "-err_detect",
        "crccheck",
        "-f",
        "dts",
        "-i",
        "pipe:0",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    a.extend(raw_pcm_to_stdout("0:a:0", track.bits_per_sample));
    a
}

/// Output options: the mapped audio as raw PCM on stdout.
pub(super) fn raw_pcm_to_stdout(map: &str, bits: u8) -> Vec<OsString> {
    let (format, codec, _) = raw_pcm(bits);
    [
        "-map",
        map,
        "-map_metadata",
        "-1",
        "-c:a",
        codec,
        "-f",
        format,
        "pipe:1",
    ]
    .iter()
    .map(OsString::from)
    .collect()
}

/// The decoder: the DTS to raw PCM on stdout; with `md5`, also the MD5 of
/// that PCM as a line "MD5=…" on stderr (for a FLAC written as a stream).
pub(super) fn decoder_args(track: &Track, source: &Path, md5: bool) -> Vec<OsString> {
    let (mut a, chain) = decode_input_args(track, source);
    a.push("-filter_complex".into());
    a.push(if md5 {
        format!("{chain},asplit=2[pcm][md5]").into()
    } else {
        format!("{chain}[pcm]").into()
    });
    a.extend(raw_pcm_to_stdout("[pcm]", track.bits_per_sample));
    if md5 {
        let (_, codec, _) = raw_pcm(track.bits_per_sample);
        for s in ["-map", "[md5]", "-c:a", codec, "-f", "md5", "pipe:2"] {
            a.push(s.into());
        }
    }
    a
}

/// The encoder: libFLAC reads the raw PCM from stdin (its shape given
/// explicitly) and writes `temp` (the name it opens our temporary file by,
/// `/proc/self/fd/N`: a symlink planted under the temporary name is never
/// followed). `-V` makes it decode every frame it
/// encodes and compare it with the input, sample for sample, before the
/// frame is written; its STREAMINFO MD5 is that of the PCM it was given.
/// Channel order is FFmpeg's, which is WAV's; a layout FLAC would not
/// assume gets its mask as a tag afterwards (`channel_mask_tag`).
/// With `temp` `None` the FLAC goes to stdout as a stream (see `Output`).
pub(super) fn flac_encoder_args(
    track: &Track,
    temp: Option<&Path>,
    options: &ConvertOptions,
    threads: usize,
) -> Vec<OsString> {
    let (_, _, bytes) = raw_pcm(track.bits_per_sample);
    let mut a: Vec<OsString> = vec![
        "--silent".into(),
        "--force".into(),
        "--verify".into(),
        format!("-{}", options.compression_level.min(8)).into(),
        "--force-raw-format".into(),
        "--endian=little".into(),
        "--sign=signed".into(),
        format!("--channels={}", track.channels).into(),
        format!("--bps={}", bytes * 8).into(),
        format!("--sample-rate={}", track.sample_rate).into(),
        // Room for our tags and the seek table, so they are written in place
        // (a point every 10 s fits ~2 h 15 min; longer tracks get fewer).
        "--padding=16384".into(),
        // The length is unknown until the end, so libFLAC could not place
        // seek points: the read-back notes them and they go in with the tags.
        "--no-seektable".into(),
    ];
    // Only where the tools have them (`Tools::flac_has_threads`): libFLAC
    // 1.4 refuses the option.
    if threads >= 2 {
        a.push(format!("--threads={threads}").into());
    }
    match temp {
        Some(path) => {
            a.push("-o".into());
            a.push(flac_file_arg(path));
        }
        None => a.push("--stdout".into()),
    }
    a.push("-".into());
    a
}
