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

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ffmpeg_sidecar::command::FfmpegCommand;

use super::flacmeta;
use super::probe::{input_args, InputSpec, Track, OWN_SOURCE_TAG};
use super::scan::Found;
use super::tools::{ffmpeg_file_arg, flac_file_arg, Tools};

/// FLAC compression level: 5 is FFmpeg's and libFLAC's default; higher
/// levels cost much more CPU on a small board for ~1% smaller files.
pub const DEFAULT_COMPRESSION_LEVEL: u8 = 5;

#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub compression_level: u8,
    /// Niceness of a job's processes (FFmpeg, flac, the read-back): the page
    /// and panel stay responsive.
    pub nice: i32,
    /// CPUs a job's processes may run on (the fast cluster); empty: any.
    pub cpus: Vec<usize>,
    /// FFmpeg decoders sharing one long DTS-HD MA stream while the job runs
    /// alone (see `lanes`); 0 or 1: one decoder.
    pub decode_lanes: usize,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            compression_level: DEFAULT_COMPRESSION_LEVEL,
            nice: 0,
            cpus: Vec::new(),
            decode_lanes: 0,
        }
    }
}

/// What went wrong, in the terms the scheduler needs: retry or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The source is corrupt, truncated or unsupported: retrying cannot help.
    Input,
    /// The destination is full, read-only or occupied by someone else's file.
    Destination,
    /// An I/O hiccup or a crashed process: worth another attempt.
    Transient,
    /// The user cancelled.
    Cancelled,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ConvertError {
    pub kind: FailureKind,
    pub message: String,
}

impl ConvertError {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        ConvertError {
            kind,
            message: message.into(),
        }
    }
}

/// The facts of a finished conversion.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ConvertResult {
    pub output: PathBuf,
    pub output_bytes: u64,
    pub input_bytes: u64,
    pub samples: u64,
    pub duration_seconds: f64,
    pub md5: String,
    /// True only for DTS-HD MA decoded with its lossless layer in every frame.
    pub lossless: bool,
    pub warnings: Vec<String>,
    pub elapsed_seconds: f64,
    /// Seconds of audio per second of wall time.
    pub speed: f64,
    /// FFmpeg decoders that shared the stream (1: the ordinary way).
    pub decode_lanes: usize,
}

/// Progress while a job runs (in memory only: never written to the store).
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub seconds_done: f64,
    pub speed: f64,
}

/// Lets another thread pause, resume or cancel a running conversion. Its
/// processes are stopped with SIGSTOP so pausing costs no work.
#[derive(Default)]
pub struct JobControl {
    pids: Mutex<Vec<u32>>,
    paused: AtomicBool,
    cancelled: AtomicBool,
    /// The FLAC is encoded: what is left (read-back, tags, fsync) needs
    /// little CPU, so the scheduler may start the next job.
    encoded: AtomicBool,
    on_encoded: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl JobControl {
    /// `f` runs when the job's encoding is over (at most once, and not at
    /// all when the job fails before that), after `is_encoded` turns true.
    pub fn on_encoded(&self, f: impl FnOnce() + Send + 'static) {
        *self.on_encoded.lock().unwrap() = Some(Box::new(f));
    }

    pub fn is_encoded(&self) -> bool {
        self.encoded.load(Ordering::SeqCst)
    }

    fn encoded(&self) {
        self.encoded.store(true, Ordering::SeqCst);
        let f = self.on_encoded.lock().unwrap().take();
        if let Some(f) = f {
            f();
        }
    }

    fn signal_all(&self, sig: libc::c_int) {
        for pid in self.pids.lock().unwrap().iter() {
            // SAFETY: kill(2) on a pid we spawned and have not yet reaped.
            unsafe {
                libc::kill(*pid as libc::pid_t, sig);
            }
        }
    }

    fn register(&self, pid: u32) {
        self.pids.lock().unwrap().push(pid);
        if self.paused.load(Ordering::SeqCst) {
            // SAFETY: as above.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGSTOP);
            }
        }
    }

    fn unregister(&self, pid: u32) {
        self.pids.lock().unwrap().retain(|p| *p != pid);
    }

    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        self.signal_all(libc::SIGSTOP);
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
        self.signal_all(libc::SIGCONT);
    }

    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.signal_all(libc::SIGKILL);
        self.signal_all(libc::SIGCONT);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }
}

/// The name part of temporary files, so stale ones can be recognised and removed.
pub const TEMP_SUFFIX: &str = ".dtsflac.part";

/// The hidden temporary file a conversion writes before renaming.
pub fn temp_path_for(output: &Path) -> PathBuf {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    output.with_file_name(format!(".{name}{TEMP_SUFFIX}"))
}

/// The FLAC name next to the source: `Film.dtshd` → `Film.flac`; a file with
/// several DTS tracks → `Film.2.eng.flac`; a DTS-CD rip that is itself a
/// `.flac` → `Track01.dts.flac` so the source is never overwritten.
pub fn output_name(track: &Track) -> String {
    let stem = track
        .path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "track".into());
    let mut name = stem;
    if track.tracks_in_file > 1 {
        name.push_str(&format!(".{}", track.track_number));
        if let Some(lang) = &track.language {
            let clean: String = lang
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(8)
                .collect();
            if !clean.is_empty() {
                name.push('.');
                name.push_str(&clean);
            }
        }
    }
    if matches!(track.input, InputSpec::PcmInFlac { .. }) {
        name.push_str(".dts");
    }
    name.push_str(".flac");
    name
}

/// Where each track's FLAC goes. Two sources that would share a name
/// (`Film.dts` and `Film.dtshd`) keep their extension (`Film.dts.flac`).
pub fn plan_outputs(found: &[Found], output_dir: Option<&Path>) -> Vec<PathBuf> {
    let dest_dir = |f: &Found| -> PathBuf {
        let parent = f.track.path.parent().unwrap_or(Path::new("/"));
        match output_dir {
            Some(out) => out.join(parent.strip_prefix(&f.root).unwrap_or(Path::new(""))),
            None => parent.to_path_buf(),
        }
    };
    let first: Vec<PathBuf> = found
        .iter()
        .map(|f| dest_dir(f).join(output_name(&f.track)))
        .collect();
    let mut count: HashMap<&PathBuf, usize> = HashMap::new();
    for p in &first {
        *count.entry(p).or_default() += 1;
    }
    found
        .iter()
        .zip(&first)
        .map(|(f, p)| {
            if count[p] > 1 {
                let name = f
                    .track
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let wanted = output_name(&f.track);
                let stem = f
                    .track
                    .path
                    .file_stem()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                dest_dir(f).join(wanted.replacen(&stem, &name, 1))
            } else {
                p.clone()
            }
        })
        .collect()
}

/// Identity of a source file as recorded in the FLAC tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceIdentity {
    pub name: String,
    pub size: u64,
    pub mtime: i64,
    pub stream_index: u32,
}

impl SourceIdentity {
    pub fn of(track: &Track) -> io::Result<SourceIdentity> {
        let meta = fs::metadata(&track.path)?;
        Ok(SourceIdentity {
            name: track
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            size: meta.len(),
            mtime: meta.mtime(),
            stream_index: track.stream_index,
        })
    }
}

/// What already sits at the output path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Existing {
    Nothing,
    /// Our FLAC from this very source: nothing to do.
    UpToDate,
    /// Our FLAC from an older version of this source: replace it.
    Stale,
    /// Someone else's file: never overwrite it.
    Foreign,
}

pub fn existing_output(identity: &SourceIdentity, output: &Path) -> Existing {
    if fs::symlink_metadata(output).is_err() {
        return Existing::Nothing;
    }
    let Ok(meta) = flacmeta::read(output) else {
        return Existing::Foreign;
    };
    let t = |k: &str| meta.tags.get(k).cloned().unwrap_or_default();
    if t(OWN_SOURCE_TAG) != identity.name
        || t("DTSFLAC_STREAM") != identity.stream_index.to_string()
    {
        return Existing::Foreign;
    }
    if t("DTSFLAC_SOURCE_SIZE") == identity.size.to_string()
        && t("DTSFLAC_SOURCE_MTIME") == identity.mtime.to_string()
    {
        Existing::UpToDate
    } else {
        Existing::Stale
    }
}

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
    let identity = SourceIdentity::of(track).map_err(|e| {
        ConvertError::new(FailureKind::Input, format!("cannot read the source: {e}"))
    })?;
    match existing_output(&identity, output) {
        Existing::Foreign => {
            return Err(ConvertError::new(
                FailureKind::Destination,
                format!(
                    "{} already exists and was not made from this source; move or rename it",
                    output.display()
                ),
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
        Output::Direct => decode_lanes(track, identity.size, options),
        Output::Streamed => 1,
    };
    let writeback = Writeback::start(&temp);
    let mut run = |lanes| {
        let plan = PassPlan {
            tools,
            track,
            temp: &temp,
            options,
            lanes,
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
    flacmeta::write_tags(
        &temp,
        &vendor(tools),
        &tags(track, &identity, tools, lossless),
        &seek_points,
    )
    .map_err(|e| destination_error(dest_dir, &e))?;

    let output_bytes = guard
        .finish(output)
        .map_err(|e| destination_error(dest_dir, &e))?;
    let elapsed = started.elapsed().as_secs_f64();
    let duration_seconds = verified.total_samples as f64 / f64::from(verified.sample_rate.max(1));
    Ok(ConvertResult {
        output: output.to_path_buf(),
        output_bytes,
        input_bytes: identity.size,
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
    })
}

fn destination_error(dir: &Path, e: &io::Error) -> ConvertError {
    let message = match e.raw_os_error() {
        Some(libc::EROFS) => format!("the destination {} is read-only", dir.display()),
        Some(libc::ENOSPC) => format!("the destination {} is full", dir.display()),
        Some(libc::EACCES) | Some(libc::EPERM) => {
            format!("no permission to write in {}", dir.display())
        }
        Some(libc::EIO) | Some(libc::ENODEV) | Some(libc::ENXIO) => {
            return ConvertError::new(
                FailureKind::Transient,
                format!("I/O error on {}: {e}", dir.display()),
            )
        }
        _ => format!("cannot write in {}: {e}", dir.display()),
    };
    ConvertError::new(FailureKind::Destination, message)
}

/// A generous estimate of the FLAC size, checked before any work starts.
fn estimated_output_bytes(track: &Track) -> Option<u64> {
    let seconds = track.duration_seconds?;
    let bytes_per_sample = f64::from(raw_pcm(track.bits_per_sample).2);
    // FLAC rarely goes above 75% of raw PCM on real audio; noise can approach 100%.
    Some(
        (seconds
            * f64::from(track.sample_rate)
            * f64::from(track.channels)
            * bytes_per_sample
            * 0.8) as u64,
    )
}

fn check_free_space(track: &Track, dir: &Path) -> Result<(), ConvertError> {
    let Some(need) = estimated_output_bytes(track) else {
        return Ok(());
    };
    let Some(free) = free_bytes(dir) else {
        return Ok(());
    };
    if need > free {
        return Err(ConvertError::new(
            FailureKind::Destination,
            format!(
                "not enough free space in {}: about {} needed, {} free",
                dir.display(),
                human_bytes(need),
                human_bytes(free)
            ),
        ));
    }
    Ok(())
}

pub fn free_bytes(dir: &Path) -> Option<u64> {
    space(dir).map(|(free, _)| free)
}

/// Free and total bytes of the file system holding `dir`; `None` when it
/// cannot tell (some FUSE drivers, such as fusefat, report no sizes at all).
pub fn space(dir: &Path) -> Option<(u64, u64)> {
    let c = c_path(dir)?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and st a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 || st.f_blocks == 0 {
        return None;
    }
    let unit = st.f_frsize as u64;
    Some((st.f_bavail as u64 * unit, st.f_blocks as u64 * unit))
}

/// A path for a libc call; `None` if it holds a NUL byte.
fn c_path(path: &Path) -> Option<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes()).ok()
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The temporary output: removed on drop unless renamed into place.
struct TempFile {
    path: PathBuf,
    kept: bool,
}

impl TempFile {
    fn create(path: &Path) -> io::Result<TempFile> {
        // A leftover from a crash is ours by its name: replace it.
        let _ = fs::remove_file(path);
        OpenOptions::new().write(true).create_new(true).open(path)?;
        Ok(TempFile {
            path: path.to_path_buf(),
            kept: false,
        })
    }

    /// fsync, rename into place, fsync the folder; returns the file size.
    fn finish(mut self, output: &Path) -> io::Result<u64> {
        let f = File::open(&self.path)?;
        f.sync_all()?;
        let size = f.metadata()?.len();
        fs::rename(&self.path, output)?;
        self.kept = true;
        if let Some(dir) = output.parent() {
            if let Ok(d) = File::open(dir) {
                // Some FUSE filesystems refuse fsync on folders; the rename is still done.
                let _ = d.sync_all();
            }
        }
        Ok(size)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.kept {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The speaker mask libFLAC assumes for each channel count (RFC 9639 §9.1.3).
fn flac_default_mask(channels: u32) -> Option<u64> {
    Some(match channels {
        1 => 0x4,
        2 => 0x3,
        3 => 0x7,
        4 => 0x33,
        5 => 0x37,
        6 => 0x3f,
        7 => 0x70f,
        8 => 0x63f,
        _ => return None,
    })
}

/// FFmpeg's layout names → WAVEFORMATEXTENSIBLE speaker masks.
pub fn layout_mask(layout: &str) -> Option<u64> {
    Some(match layout {
        "mono" => 0x4,
        "stereo" => 0x3,
        "2.1" => 0xb,
        "3.0" => 0x7,
        "3.0(back)" => 0x103,
        "4.0" => 0x107,
        "quad" => 0x33,
        "quad(side)" => 0x603,
        "3.1" => 0xf,
        "5.0" => 0x37,
        "5.0(side)" => 0x607,
        "4.1" => 0x10f,
        "5.1" => 0x3f,
        "5.1(side)" => 0x60f,
        "6.0" => 0x707,
        "6.0(front)" => 0x6c3,
        "hexagonal" => 0x137,
        "6.1" => 0x70f,
        "6.1(back)" => 0x13f,
        "6.1(front)" => 0x6cb,
        "7.0" => 0x637,
        "7.0(front)" => 0x6c7,
        "7.1" => 0x63f,
        "7.1(wide)" => 0x6cf,
        "7.1(wide-side)" => 0xff,
        _ => return None,
    })
}

/// The mask to write as `WAVEFORMATEXTENSIBLE_CHANNEL_MASK`, when FLAC's
/// default order for this channel count would put a channel on the wrong
/// speaker (DTS 5.1 surrounds are side speakers, FLAC's 6-channel default
/// has back speakers).
pub fn channel_mask_tag(track: &Track) -> Option<String> {
    let mask = layout_mask(&track.channel_layout)?;
    (flac_default_mask(track.channels) != Some(mask)).then(|| format!("0x{mask:04X}"))
}

fn vendor(tools: &Tools) -> String {
    format!(
        "dtsflac {} with FFmpeg {} and libFLAC {}",
        env!("CARGO_PKG_VERSION"),
        tools.short_version(),
        tools.flac_short_version()
    )
}

fn tags(
    track: &Track,
    identity: &SourceIdentity,
    tools: &Tools,
    lossless: bool,
) -> Vec<(String, String)> {
    let file_name = identity.name.clone();
    let stem = track
        .path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut title = track.title.clone().unwrap_or(stem);
    if track.title.is_none() && track.tracks_in_file > 1 {
        title = format!("{title} (track {})", track.track_number);
    }
    let quality = if lossless {
        "lossless".to_string()
    } else if track.lossless {
        "NOT lossless: the lossless layer could not be decoded everywhere".to_string()
    } else {
        format!("decoded from lossy {}", track.profile)
    };
    let mut t = vec![
        ("TITLE".to_string(), title),
        (
            "COMMENT".into(),
            format!(
                "{} from {file_name} (stream {}), {quality}",
                track.describe(),
                track.stream_index
            ),
        ),
        ("SOURCE".into(), format!("{file_name} ({})", track.profile)),
        ("ENCODER".into(), vendor(tools)),
        (OWN_SOURCE_TAG.into(), file_name),
        ("DTSFLAC_SOURCE_SIZE".into(), identity.size.to_string()),
        ("DTSFLAC_SOURCE_MTIME".into(), identity.mtime.to_string()),
        ("DTSFLAC_STREAM".into(), track.stream_index.to_string()),
        ("DTSFLAC_PROFILE".into(), track.profile.to_string()),
        (
            "DTSFLAC_LOSSLESS".into(),
            if lossless { "yes" } else { "no" }.into(),
        ),
    ];
    if let Some(v) = &track.album {
        t.push(("ALBUM".into(), v.clone()));
    }
    if let Some(v) = &track.artist {
        t.push(("ARTIST".into(), v.clone()));
    }
    if let Some(v) = &track.language {
        t.push(("LANGUAGE".into(), v.clone()));
    }
    if let Some(mask) = channel_mask_tag(track) {
        t.push(("WAVEFORMATEXTENSIBLE_CHANNEL_MASK".into(), mask));
    }
    t
}

/// What the conversion pass reported.
struct Pass {
    /// The decoder's MD5 of the PCM, when the FLAC was streamed.
    pcm_md5: Option<[u8; 16]>,
    /// Warnings and errors from the DTS decoder: for DTS-HD MA they mean some
    /// frames fell back to the lossy core.
    decoder_warnings: Vec<String>,
}

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
/// original length.
fn decode_input_args(track: &Track) -> (Vec<OsString>, String) {
    let mut a: Vec<OsString> = LOG_ARGS.iter().map(OsString::from).collect();
    a.extend(["-err_detect", "crccheck"].iter().map(OsString::from));
    a.extend(input_args(&track.input).into_iter().map(OsString::from));
    a.push("-i".into());
    match track.input {
        InputSpec::PcmInFlac { .. } => a.push("pipe:0".into()),
        _ => a.push(ffmpeg_file_arg(&track.path)),
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
fn raw_pcm(bits: u8) -> (&'static str, &'static str, u32) {
    if bits <= 16 {
        ("s16le", "pcm_s16le", 2)
    } else {
        ("s24le", "pcm_s24le", 3)
    }
}

/// Streams at least this long are decoded in lanes when cores are idle.
const LANES_MIN_SECONDS: f64 = 60.0;

/// How many decoders share this track: lanes only pay for a long DTS-HD MA
/// stream, with cores to spare (the scheduler asks for them only while
/// the other jobs leave cores idle).
fn decode_lanes(track: &Track, source_bytes: u64, options: &ConvertOptions) -> usize {
    let long = match track.duration_seconds {
        Some(s) => s >= LANES_MIN_SECONDS,
        // A raw stream without a header: judge by size (~2.5 MB a minute at
        // the lowest MA rates).
        None => source_bytes >= 16 << 20,
    };
    let eligible = track.lossless && matches!(track.input, InputSpec::Probed) && long;
    if eligible && options.decode_lanes >= 2 {
        options.decode_lanes
    } else {
        1
    }
}

/// A helper stage's start: no stats, no stdin, `path` as the input.
fn quiet_file_input(path: &Path) -> Vec<OsString> {
    let mut a: Vec<OsString> = ["-nostdin", "-hide_banner", "-nostats", "-i"]
        .iter()
        .map(OsString::from)
        .collect();
    a.push(ffmpeg_file_arg(path));
    a
}

/// Lanes' source: the DTS frames of the track, as they are, on stdout.
fn demuxer_args(track: &Track) -> Vec<OsString> {
    let mut a = quiet_file_input(&track.path);
    a.push("-map".into());
    a.push(format!("0:{}", track.stream_index).into());
    for s in ["-map_metadata", "-1", "-c:a", "copy", "-f", "dts", "pipe:1"] {
        a.push(s.into());
    }
    a
}

/// One lane: raw DTS frames from stdin, raw PCM to stdout, CRCs checked.
fn lane_args(track: &Track) -> Vec<OsString> {
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
fn raw_pcm_to_stdout(map: &str, bits: u8) -> Vec<OsString> {
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
fn decoder_args(track: &Track, md5: bool) -> Vec<OsString> {
    let (mut a, chain) = decode_input_args(track);
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
/// explicitly) and writes `temp`. `-V` makes it decode every frame it
/// encodes and compare it with the input, sample for sample, before the
/// frame is written; its STREAMINFO MD5 is that of the PCM it was given.
/// Channel order is FFmpeg's, which is WAV's; a layout FLAC would not
/// assume gets its mask as a tag afterwards (`channel_mask_tag`).
/// With `temp` `None` the FLAC goes to stdout as a stream (see `Output`).
fn flac_encoder_args(
    track: &Track,
    temp: Option<&Path>,
    options: &ConvertOptions,
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

/// Pipes between the stages hold 1 MiB instead of 64 KiB (Linux allows it
/// without privileges); a failure only costs speed.
fn widen_pipe(fd: &impl std::os::fd::AsRawFd) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
}

/// A line from a stage's stderr, classified.
enum LogLine {
    Progress(Progress),
    Message(String),
}

/// Reads stderr to its end whatever it says, so a stage can never block on
/// a full pipe; ffmpeg-sidecar's parser supplies the progress reading.
fn spawn_stderr_reader(
    stderr: ChildStderr,
    tx: mpsc::Sender<LogLine>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match ffmpeg_sidecar::read_until_any::read_until_any(&mut reader, b"\r\n", &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&buf).trim().to_string();
            if line.is_empty() {
                continue;
            }
            let item = match ffmpeg_sidecar::log_parser::try_parse_progress(&line) {
                Some(p) => LogLine::Progress(Progress {
                    seconds_done: ffmpeg_sidecar::log_parser::parse_time_str(&p.time)
                        .unwrap_or(0.0),
                    speed: f64::from(p.speed),
                }),
                None => LogLine::Message(line),
            };
            if tx.send(item).is_err() {
                // Nobody listens any more; keep draining anyway.
                continue;
            }
        }
    })
}

/// Whether a stage's line reports trouble: FFmpeg tags its levels, and the
/// `flac` tool is silent (`--silent`) except for what went wrong.
fn is_problem(role: Role, line: &str) -> bool {
    match role {
        Role::Encode => true,
        _ => line.contains("[error]") || line.contains("[fatal]") || line.contains("[warning]"),
    }
}

/// Strips FFmpeg's "[dca @ 0x55…] [error]" prefixes for a readable message.
fn clean_message(line: &str) -> String {
    let mut s = line;
    while let Some(rest) = s.strip_prefix('[') {
        match rest.find(']') {
            Some(end) => s = rest[end + 1..].trim_start(),
            None => break,
        }
    }
    s.to_string()
}

/// What a stage is, and so what its stderr is read for.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Role {
    /// Unpacks a DTS-CD rip stored as FLAC, or hands the lanes their frames.
    Unpack,
    /// Decodes the DTS: its clock is the progress, its warnings matter.
    Decode,
    /// libFLAC: encodes and verifies.
    Encode,
}

impl Role {
    /// The executable playing the role, as the user knows it.
    fn program(self) -> &'static str {
        match self {
            Role::Encode => "flac",
            Role::Unpack | Role::Decode => "ffmpeg",
        }
    }
}

/// One process of the chain.
struct Stage {
    role: Role,
    command: Command,
}

fn ffmpeg_stage(tools: &Tools, role: Role, args: Vec<OsString>) -> Stage {
    let mut cmd = FfmpegCommand::new_with_path(&tools.ffmpeg);
    cmd.args(args);
    Stage {
        role,
        command: cmd.into(),
    }
}

fn flac_stage(tools: &Tools, args: Vec<OsString>, output: Output) -> Stage {
    let mut command = Command::new(&tools.flac);
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(match output {
            Output::Direct => Stdio::null(),
            Output::Streamed => Stdio::piped(),
        })
        .stderr(Stdio::piped());
    Stage {
        role: Role::Encode,
        command,
    }
}

/// How the FLAC reaches the drive.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Output {
    /// libFLAC writes the file and goes back to complete its STREAMINFO.
    Direct,
    /// libFLAC streams the FLAC to us, we only ever append to the file, and
    /// complete STREAMINFO in one write with the decoder's MD5 of the PCM.
    /// For FUSE drives: fusefat puts libFLAC's small rewrites at the start
    /// of the file in the wrong place (caught by verification in CI).
    Streamed,
}

impl Output {
    fn for_folder(dir: &Path) -> Output {
        if on_fuse(dir) {
            Output::Streamed
        } else {
            Output::Direct
        }
    }
}

/// Whether `path` lies on a FUSE file system (exfat-fuse, ntfs-3g, fusefat).
/// When it cannot tell, the answer is yes: streaming is safe everywhere.
fn on_fuse(path: &Path) -> bool {
    const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;
    let Some(c) = c_path(path) else {
        return true;
    };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and st a valid out-pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return true;
    }
    st.f_type as i64 == FUSE_SUPER_MAGIC
}

/// Appends the encoder's stream to `temp`: splice(2) moves the pages from
/// the pipe without copying them through us.
fn stream_to_file(mut from: std::process::ChildStdout, temp: &Path) -> io::Result<u64> {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    let mut file = OpenOptions::new().write(true).truncate(true).open(temp)?;
    let mut total = 0u64;
    let mut can_splice = true;
    let mut buf = Vec::new();
    loop {
        let n = if can_splice {
            // SAFETY: splice between two descriptors we own.
            let n = unsafe {
                libc::splice(
                    from.as_raw_fd(),
                    std::ptr::null_mut(),
                    file.as_raw_fd(),
                    std::ptr::null_mut(),
                    1 << 20,
                    libc::SPLICE_F_MOVE,
                )
            };
            if n >= 0 {
                n as usize
            } else {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EINVAL) => {
                        can_splice = false;
                        continue;
                    }
                    _ => return Err(e),
                }
            }
        } else {
            buf.resize(256 << 10, 0);
            let n = match from.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            file.write_all(&buf[..n])?;
            n
        };
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

/// One pass of a job, as planned: which decoders, and where the FLAC goes.
struct PassPlan<'a> {
    tools: &'a Tools,
    track: &'a Track,
    temp: &'a Path,
    options: &'a ConvertOptions,
    /// Decoders sharing the track (1: one decoder piped into the encoder).
    lanes: usize,
    output: Output,
}

/// Runs the processes of one pass to their end, reporting progress, and
/// says why it failed if it did.
fn run_conversion(
    plan: &PassPlan,
    control: &JobControl,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<Pass, ConvertError> {
    let running = start_stages(plan, pass_stages(plan), control)?;
    let logs = follow_logs(plan, &running, on_progress);
    running.finish(plan, control, logs)
}

/// The chain of processes, each one's stdout feeding the next; or, with
/// lanes, a demuxer, the lanes and the encoder wired through us.
fn pass_stages(plan: &PassPlan) -> Vec<Stage> {
    let (tools, track) = (plan.tools, plan.track);
    let mut stages: Vec<Stage> = Vec::new();
    if let InputSpec::PcmInFlac { .. } = &track.input {
        // A DTS-CD rip in FLAC is decoded to its raw PCM bytes first.
        let mut a = quiet_file_input(&track.path);
        a.extend(raw_pcm_to_stdout("0:a:0", 16));
        stages.push(ffmpeg_stage(tools, Role::Unpack, a));
    }
    if plan.lanes >= 2 {
        stages.push(ffmpeg_stage(tools, Role::Unpack, demuxer_args(track)));
        for _ in 0..plan.lanes {
            stages.push(ffmpeg_stage(tools, Role::Decode, lane_args(track)));
        }
    } else {
        let md5 = plan.output == Output::Streamed;
        stages.push(ffmpeg_stage(tools, Role::Decode, decoder_args(track, md5)));
    }
    let to_file = (plan.output == Output::Direct).then_some(plan.temp);
    stages.push(flac_stage(
        tools,
        flac_encoder_args(track, to_file, plan.options),
        plan.output,
    ));
    stages
}

/// The processes of a pass, started, and what reads from them.
struct RunningPass {
    children: Vec<(Role, std::process::Child)>,
    /// Every stage's stderr, line by line, tagged with its role.
    log: mpsc::Receiver<(Role, LogLine)>,
    readers: Vec<std::thread::JoinHandle<()>>,
    /// The lanes' plumbing (demuxed frames out, joined PCM in).
    lanes: Option<super::lanes::Lanes>,
    /// Appends a streamed FLAC to the temp file.
    writer: Option<std::thread::JoinHandle<io::Result<u64>>>,
}

fn start_stages(
    plan: &PassPlan,
    stages: Vec<Stage>,
    control: &JobControl,
) -> Result<RunningPass, ConvertError> {
    let lanes = plan.lanes;
    let mut children: Vec<(Role, std::process::Child)> = Vec::new();
    let mut readers = Vec::new();
    let (tx, rx) = mpsc::channel::<(Role, LogLine)>();
    let mut next_stdin: Option<io::PipeReader> = None;
    let mut lane_io = Vec::new();
    let mut encoder_stdin = None;
    let mut demuxed = None;
    let mut writer = None;
    let last = stages.len() - 1;
    for (i, Stage { role, mut command }) in stages.into_iter().enumerate() {
        own_process_group(&mut command, plan.options);
        // Stages are joined by a wide pipe of their own, not through us: with
        // the default 64 KiB the two processes switch places thousands of
        // times a second, which cost ~15% more CPU and wall time here.
        if let Some(from) = next_stdin.take() {
            command.stdin(Stdio::from(from));
        }
        if i != last && lanes < 2 {
            let (from, to) = io::pipe().map_err(|e| {
                ConvertError::new(FailureKind::Transient, format!("cannot make a pipe: {e}"))
            })?;
            widen_pipe(&to);
            command.stdout(Stdio::from(to));
            next_stdin = Some(from);
        }
        let spawned = command.spawn();
        // Our copies of the pipe ends go with the command, so each reader
        // sees the end of its input when its writer exits.
        drop(command);
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                for (_, mut c) in children {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Err(ConvertError::new(
                    FailureKind::Transient,
                    format!("cannot start {}: {e}", role.program()),
                ));
            }
        };
        control.register(child.id());
        if lanes >= 2 {
            match role {
                Role::Decode => {
                    let (i, o) = (child.stdin.take(), child.stdout.take());
                    lane_io.push((i.expect("stdin is piped"), o.expect("stdout is piped")));
                }
                Role::Encode => encoder_stdin = child.stdin.take(),
                Role::Unpack => demuxed = child.stdout.take(),
            }
        }
        if role == Role::Encode && plan.output == Output::Streamed {
            let stream = child.stdout.take().expect("stdout is piped");
            widen_pipe(&stream);
            let temp = plan.temp.to_path_buf();
            writer = Some(std::thread::spawn(move || stream_to_file(stream, &temp)));
        }
        // The first stage reads nothing from us.
        if i == 0 {
            drop(child.stdin.take());
        }
        let (role_tx, role_rx) = mpsc::channel();
        let tagged = tx.clone();
        readers.push(spawn_stderr_reader(
            child.stderr.take().expect("stderr is piped"),
            role_tx,
        ));
        std::thread::spawn(move || {
            for line in role_rx {
                if tagged.send((role, line)).is_err() {
                    break;
                }
            }
        });
        children.push((role, child));
    }
    let plumbing = match (demuxed, encoder_stdin) {
        (Some(stream), Some(encoder)) if lanes >= 2 => {
            widen_pipe(&stream);
            widen_pipe(&encoder);
            let (inputs, outputs): (Vec<_>, Vec<_>) = lane_io.into_iter().unzip();
            for p in &inputs {
                widen_pipe(p);
            }
            for p in &outputs {
                widen_pipe(p);
            }
            let track = plan.track;
            Some(super::lanes::Lanes::start(
                stream,
                inputs,
                outputs,
                encoder,
                super::lanes::PcmShape {
                    channels: track.channels,
                    bytes_per_sample: raw_pcm(track.bits_per_sample).2,
                    sample_rate: track.sample_rate,
                    trim: track.trim.map(|t| (t.start, t.samples)),
                },
            ))
        }
        _ => None,
    };
    Ok(RunningPass {
        children,
        log: rx,
        readers,
        lanes: plumbing,
        writer,
    })
}

/// What the stages said, kept for the verdict.
#[derive(Default)]
struct PassLogs {
    /// The last lines of trouble from each role.
    problems: HashMap<Role, VecDeque<String>>,
    decoder_warnings: Vec<String>,
    pcm_md5: Option<[u8; 16]>,
}

/// Reads the stages' stderr until they have all closed it, reporting
/// progress at most five times a second.
fn follow_logs(
    plan: &PassPlan,
    running: &RunningPass,
    on_progress: &mut dyn FnMut(Progress),
) -> PassLogs {
    let mut logs = PassLogs::default();
    let started = Instant::now();
    let mut last_report = Instant::now() - Duration::from_secs(1);
    loop {
        let item = match running.log.recv_timeout(Duration::from_millis(250)) {
            Ok(item) => Some(item),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        // Lanes report no clock of their own: the joined PCM is the progress.
        if let Some(p) = &running.lanes {
            if last_report.elapsed() >= Duration::from_millis(200) {
                last_report = Instant::now();
                let seconds_done =
                    p.samples_joined() as f64 / f64::from(plan.track.sample_rate.max(1));
                on_progress(Progress {
                    seconds_done,
                    speed: seconds_done / started.elapsed().as_secs_f64().max(0.001),
                });
            }
        }
        match item {
            Some((Role::Decode, LogLine::Progress(p)))
                if running.lanes.is_none()
                    && last_report.elapsed() >= Duration::from_millis(200) =>
            {
                last_report = Instant::now();
                on_progress(p);
            }
            Some((Role::Decode, LogLine::Message(m))) if m.starts_with("MD5=") => {
                logs.pcm_md5 = parse_md5(&m["MD5=".len()..]);
            }
            Some((role, LogLine::Message(m))) if is_problem(role, &m) => {
                if role == Role::Decode && m.contains("[dca @") && logs.decoder_warnings.len() < 20
                {
                    logs.decoder_warnings.push(clean_message(&m));
                }
                let lines = logs.problems.entry(role).or_default();
                if lines.len() >= 20 {
                    lines.pop_front();
                }
                lines.push_back(m);
            }
            _ => {}
        }
    }
    logs
}

impl RunningPass {
    /// Waits for every process and thread of the pass, then judges it.
    fn finish(
        self,
        plan: &PassPlan,
        control: &JobControl,
        logs: PassLogs,
    ) -> Result<Pass, ConvertError> {
        let mut failed: Vec<(Role, std::process::ExitStatus)> = Vec::new();
        for (role, mut child) in self.children {
            let pid = child.id();
            let status = child.wait();
            control.unregister(pid);
            match status {
                Ok(s) if s.success() => {}
                Ok(s) => failed.push((role, s)),
                Err(e) => {
                    if !control.is_cancelled() {
                        return Err(ConvertError::new(
                            FailureKind::Transient,
                            format!("lost a conversion process: {e}"),
                        ));
                    }
                }
            }
        }
        for r in self.readers {
            let _ = r.join();
        }
        let joined = self.lanes.map(|p| p.join());
        let written = self.writer.map(|w| {
            w.join()
                .unwrap_or_else(|_| Err(io::Error::other("panicked")))
        });
        if control.is_cancelled() {
            return Err(ConvertError::new(FailureKind::Cancelled, "cancelled"));
        }
        let dest_dir = plan.temp.parent().unwrap_or(Path::new("."));
        // Writing to the drive failed: that is the cause (libFLAC then only
        // reports the pipe we closed).
        if let Some(Err(e)) = &written {
            return Err(destination_error(dest_dir, e));
        }
        // The encoder's own reason comes first (a full drive, a failed
        // verify); a decoder then only reports the pipe it lost. Otherwise
        // the first stage that failed says why.
        let culprit = failed
            .iter()
            .find(|(role, _)| *role == Role::Encode)
            .or_else(|| failed.first());
        if let Some((role, status)) = culprit {
            let none = VecDeque::new();
            let lines = logs.problems.get(role).unwrap_or(&none);
            return Err(classify_failure(*role, status, lines, dest_dir));
        }
        if let Some(Err(e)) = joined {
            return Err(ConvertError::new(
                FailureKind::Transient,
                format!("parallel decoding: {e}"),
            ));
        }
        if plan.output == Output::Streamed && logs.pcm_md5.is_none() {
            return Err(ConvertError::new(
                FailureKind::Transient,
                "the decoder finished without reporting the PCM checksum",
            ));
        }
        Ok(Pass {
            pcm_md5: logs.pcm_md5,
            decoder_warnings: logs.decoder_warnings,
        })
    }
}

fn parse_md5(hex: &str) -> Option<[u8; 16]> {
    let hex = hex.trim();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn classify_failure(
    role: Role,
    status: &std::process::ExitStatus,
    problems: &VecDeque<String>,
    dest_dir: &Path,
) -> ConvertError {
    use std::os::unix::process::ExitStatusExt;
    let text = problems
        .iter()
        .map(|l| l.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join("\n");
    let program = role.program();
    let last = problems
        .iter()
        .rev()
        .map(|l| clean_message(l))
        .find(|l| !l.starts_with("Conversion failed") && !l.is_empty())
        .unwrap_or_else(|| match status.signal() {
            Some(sig) => format!("{program} was killed by signal {sig}"),
            None => format!("{program} exited with {status}"),
        });
    // libFLAC says only "the most common cause is that the disk is full":
    // ask the file system.
    let full = text.contains("no space left")
        || (role == Role::Encode && free_bytes(dest_dir).is_some_and(|f| f < 1 << 20));
    let read_only = text.contains("read-only file system");
    if full {
        return ConvertError::new(FailureKind::Destination, "the destination is full");
    }
    if read_only {
        return ConvertError::new(FailureKind::Destination, "the destination is read-only");
    }
    let kind = if text.contains("permission denied") {
        FailureKind::Destination
    } else if role == Role::Encode
        || text.contains("input/output error")
        || status.signal().is_some()
    {
        // A libFLAC failure that is not the drive's (a verify mismatch, a
        // write error) is worth another attempt; bad input fails in FFmpeg.
        FailureKind::Transient
    } else {
        FailureKind::Input
    };
    let message = if text.contains("verify failed") || text.contains("mismatch") {
        format!(
            "verification failed: libFLAC's decode of its own output differs from the PCM ({last})"
        )
    } else {
        format!("{program} failed: {last}")
    };
    ConvertError::new(kind, message)
}

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
) -> Result<super::flacframes::FramesChecked, ConvertError> {
    let failed = |m: String| ConvertError::new(FailureKind::Transient, m);
    let Some(exe) = &tools.checker else {
        return super::flacframes::check(temp)
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
            super::flacframes::FramesChecked::from_machine(&String::from_utf8_lossy(&out.stdout))
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

fn verify(
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

/// Starts the drive writing the FLAC while it is encoded, a second behind
/// the encoder, instead of all at the final fsync: on a USB stick that
/// flush would otherwise add seconds per track, and fewer dirty pages wait
/// in a small board's memory. Stops when dropped.
struct Writeback {
    stop: std::sync::Arc<AtomicBool>,
    flush: std::sync::Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writeback {
    fn start(path: &Path) -> Writeback {
        use std::os::fd::AsRawFd;
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flush = std::sync::Arc::new(AtomicBool::new(false));
        let file = File::open(path).ok();
        let (stopped, flush_now) = (stop.clone(), flush.clone());
        let thread = std::thread::spawn(move || {
            let Some(file) = file else { return };
            while !stopped.load(Ordering::Relaxed) {
                std::thread::park_timeout(Duration::from_millis(1000));
                if flush_now.load(Ordering::Relaxed) {
                    let _ = file.sync_data();
                    return;
                }
                // SAFETY: an advisory call on a descriptor we own; where the
                // file system cannot do it (some FUSE drivers) it is a no-op.
                let r = unsafe {
                    libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE)
                };
                if r != 0 {
                    return;
                }
            }
        });
        Writeback {
            stop,
            flush,
            thread: Some(thread),
        }
    }

    /// The encoder is done: the rest goes to the drive while the file is
    /// read back, so the final fsync has little left to wait for.
    fn flush_rest(&self) {
        self.flush.store(true, Ordering::Relaxed);
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Removes temporary files a crash or a pulled drive left in `dir` (not recursive).
pub fn remove_stale_temp_files(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with('.') && (n.ends_with(TEMP_SUFFIX) || n.ends_with(".dtsflac.retag"))
        })
        .filter(|e| fs::remove_file(e.path()).is_ok())
        .count()
}

/// A job's processes (FFmpeg, flac, the read-back) run in their own process
/// group: a ^C at the terminal reaches only dtsflac, which stops them and
/// removes the temporary file itself (flac would otherwise finish a
/// shortened file at the end of its input).
/// Each also dies with the thread that started it, like it would in a power
/// cut, so a killed daemon never leaves one writing behind its back. They
/// run at the plan's niceness, on the plan's CPUs.
fn own_process_group(inner: &mut Command, options: &ConvertOptions) {
    use std::os::unix::process::CommandExt;
    inner.process_group(0);
    let nice = options.nice;
    let cpus = options.cpus.clone();
    // SAFETY: prctl, nice and sched_setaffinity are async-signal-safe, and
    // the CPU set is built before the fork.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for c in &cpus {
            libc::CPU_SET(*c, &mut set);
        }
        inner.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if nice != 0 {
                libc::nice(nice);
            }
            if !cpus.is_empty() {
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::probe::{Profile, Trim};

    fn track(path: &str, layout: &str, channels: u32) -> Track {
        Track {
            path: PathBuf::from(path),
            stream_index: 0,
            track_number: 1,
            tracks_in_file: 1,
            profile: Profile::HdMa,
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
            input: InputSpec::Probed,
            trim: Some(Trim {
                start: 1024,
                samples: 2048,
            }),
        }
    }

    #[test]
    fn names_follow_the_source() {
        let mut t = track("/m/Film.dtshd", "7.1", 8);
        assert_eq!(output_name(&t), "Film.flac");
        t.tracks_in_file = 2;
        t.track_number = 2;
        t.language = Some("eng".into());
        assert_eq!(output_name(&t), "Film.2.eng.flac");
        let mut rip = track("/m/Track01.flac", "5.1(side)", 6);
        rip.input = InputSpec::PcmInFlac {
            packing: crate::media::sniff::PcmPacking::Dts14Le,
            offset: 0,
        };
        assert_eq!(output_name(&rip), "Track01.dts.flac");
    }

    #[test]
    fn side_surrounds_get_an_explicit_channel_mask() {
        assert_eq!(
            channel_mask_tag(&track("a", "5.1(side)", 6)).as_deref(),
            Some("0x060F")
        );
        assert_eq!(channel_mask_tag(&track("a", "7.1", 8)), None);
        assert_eq!(channel_mask_tag(&track("a", "6.1", 7)), None);
        assert_eq!(channel_mask_tag(&track("a", "5.1", 6)), None);
    }

    #[test]
    fn temp_files_are_hidden_next_to_the_output() {
        assert_eq!(
            temp_path_for(Path::new("/d/Film.flac")),
            PathBuf::from("/d/.Film.flac.dtsflac.part")
        );
    }
}
