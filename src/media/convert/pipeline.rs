//! The processes of a job's conversion pass: the stages (unpacker,
//! decoder or demuxer and lanes, encoder), how they are spawned and piped
//! together, their stderr followed for progress and trouble, and the
//! failure classified when a pass goes wrong.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::Path;
use std::process::{ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ffmpeg_sidecar::command::FfmpegCommand;

use super::args::{
    decoder_args, demuxer_args, flac_encoder_args, lane_args, quiet_file_input, raw_pcm,
    raw_pcm_to_stdout,
};
use super::control::{
    destination_error, ConvertError, ConvertOptions, FailureKind, JobControl, Progress,
};
use crate::hw::fs::{free_bytes, on_fuse};
use crate::media::probe::{InputSpec, Track};
use crate::media::safe_open;
use crate::media::tools::Tools;

/// What the conversion pass reported.
pub(super) struct Pass {
    /// The decoder's MD5 of the PCM, when the FLAC was streamed.
    pub(super) pcm_md5: Option<[u8; 16]>,
    /// Warnings and errors from the DTS decoder: for DTS-HD MA they mean some
    /// frames fell back to the lossy core.
    pub(super) decoder_warnings: Vec<String>,
}

/// Streams at least this long are decoded in lanes when cores are idle.
const LANES_MIN_SECONDS: f64 = 60.0;

/// How many decoders share this track: lanes only pay for a long DTS-HD MA
/// stream, with cores to spare (the scheduler asks for them only while
/// the other jobs leave cores idle).
pub(super) fn decode_lanes(track: &Track, source_bytes: u64, options: &ConvertOptions) -> usize {
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

/// How many threads libFLAC encodes this pass with. With one decoder, the
/// decoder is the slower stage (see README, "Speed"): encoder threads would
/// only take cores from it. A track decoded in lanes is fed faster than one
/// encoder thread keeps up with, so there they pay, where libFLAC has them.
pub(super) fn encoder_threads(tools: &Tools, options: &ConvertOptions, lanes: usize) -> usize {
    if lanes >= 2 && options.flac_threads >= 2 && tools.flac_has_threads() {
        options.flac_threads
    } else {
        1
    }
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

/// An FFmpeg stage; with `source`, the process is handed the job's source
/// descriptor and `args` gets the name it opens it by.
fn ffmpeg_stage(
    tools: &Tools,
    role: Role,
    source: Option<(&Path, &File)>,
    args: impl FnOnce(&Path) -> Vec<OsString>,
) -> Stage {
    let mut command: Command = FfmpegCommand::new_with_path(&tools.ffmpeg).into();
    let name = source.map_or_else(
        || Path::new("pipe:0").to_path_buf(),
        |(named_like, f)| safe_open::pass_to_child(&mut command, f, Some(named_like)),
    );
    command.args(args(&name));
    Stage { role, command }
}

/// The encoder, handed our temporary file when it writes it itself.
fn flac_stage(
    tools: &Tools,
    temp: Option<&File>,
    args: impl FnOnce(Option<&Path>) -> Vec<OsString>,
    output: Output,
) -> Stage {
    let mut command = Command::new(&tools.flac);
    // No extension: flac writes Ogg FLAC to a name ending in ".oga".
    let name = temp.map(|f| safe_open::pass_to_child(&mut command, f, None));
    command
        .args(args(name.as_deref()))
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
pub(super) enum Output {
    /// libFLAC writes the file and goes back to complete its STREAMINFO.
    Direct,
    /// libFLAC streams the FLAC to us, we only ever append to the file, and
    /// complete STREAMINFO in one write with the decoder's MD5 of the PCM.
    /// For FUSE drives: fusefat puts libFLAC's small rewrites at the start
    /// of the file in the wrong place (caught by verification in CI).
    Streamed,
}

impl Output {
    pub(super) fn for_folder(dir: &Path) -> Output {
        if on_fuse(dir) {
            Output::Streamed
        } else {
            Output::Direct
        }
    }
}

/// Writes the encoder's stream into our temporary file from its start:
/// splice(2) moves the pages from the pipe without copying them through us.
fn stream_to_file(mut from: std::process::ChildStdout, mut file: File) -> io::Result<u64> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    file.set_len(0)?;
    file.rewind()?;
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
pub(super) struct PassPlan<'a> {
    pub(super) tools: &'a Tools,
    pub(super) track: &'a Track,
    /// The source, opened with `safe_open`: what the FFmpeg stages read.
    pub(super) source: &'a File,
    pub(super) temp: &'a Path,
    /// The temporary file, created by us: what the FLAC is written into.
    pub(super) temp_file: &'a File,
    pub(super) options: &'a ConvertOptions,
    /// Decoders sharing the track (1: one decoder piped into the encoder).
    pub(super) lanes: usize,
    /// libFLAC's encoder threads (1: one), see `encoder_threads`.
    pub(super) flac_threads: usize,
    pub(super) output: Output,
}

/// Runs the processes of one pass to their end, reporting progress, and
/// says why it failed if it did.
pub(super) fn run_conversion(
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
    // A disc's folder is handed over as it is (`/proc/self/fd/N`, no link
    // named like a file).
    let named_like = match track.input {
        InputSpec::BluRay { .. } | InputSpec::Dvd { .. } => Path::new(""),
        _ => track.path.as_path(),
    };
    let source = Some((named_like, plan.source));
    let rip = matches!(track.input, InputSpec::PcmInFlac { .. });
    if rip {
        // A DTS-CD rip in FLAC is decoded to its raw PCM bytes first.
        stages.push(ffmpeg_stage(tools, Role::Unpack, source, |s| {
            let mut a = quiet_file_input(s);
            a.extend(raw_pcm_to_stdout("0:a:0", 16));
            a
        }));
    }
    if plan.lanes >= 2 {
        stages.push(ffmpeg_stage(tools, Role::Unpack, source, |s| {
            demuxer_args(track, s)
        }));
        for _ in 0..plan.lanes {
            stages.push(ffmpeg_stage(tools, Role::Decode, None, |_| {
                lane_args(track)
            }));
        }
    } else {
        let md5 = plan.output == Output::Streamed;
        // After an unpacker the decoder reads its stdin.
        let from = if rip { None } else { source };
        stages.push(ffmpeg_stage(tools, Role::Decode, from, |s| {
            decoder_args(track, s, md5)
        }));
    }
    let to_file = (plan.output == Output::Direct).then_some(plan.temp_file);
    stages.push(flac_stage(
        tools,
        to_file,
        |temp| flac_encoder_args(track, temp, plan.options, plan.flac_threads),
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
    lanes: Option<crate::media::lanes::Lanes>,
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
    let mut streamed_into = match plan.output {
        Output::Streamed => Some(plan.temp_file.try_clone().map_err(|e| {
            ConvertError::new(
                FailureKind::Transient,
                format!("cannot write the temporary file: {e}"),
            )
        })?),
        Output::Direct => None,
    };
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
            let temp = streamed_into.take().expect("one encoder");
            writer = Some(std::thread::spawn(move || stream_to_file(stream, temp)));
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
            Some(crate::media::lanes::Lanes::start(
                stream,
                inputs,
                outputs,
                encoder,
                crate::media::lanes::PcmShape {
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

/// A job's processes (FFmpeg, flac, the read-back) run in their own process
/// group: a ^C at the terminal reaches only dtsflac, which stops them and
/// removes the temporary file itself (flac would otherwise finish a
/// shortened file at the end of its input).
/// Each also dies with the thread that started it, like it would in a power
/// cut, so a killed daemon never leaves one writing behind its back. They
/// run at the plan's niceness, on the plan's CPUs.
pub(super) fn own_process_group(inner: &mut Command, options: &ConvertOptions) {
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

    fn tools_with_flac(flac_version: &str) -> Tools {
        Tools {
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
            ffmpeg_version: "ffmpeg version 7.1.5-0+deb13u1".into(),
            flac: "flac".into(),
            flac_version: flac_version.into(),
            checker: None,
        }
    }

    #[test]
    fn encoder_threads_only_for_lanes_and_only_with_libflac_1_5() {
        let options = ConvertOptions {
            flac_threads: 2,
            ..ConvertOptions::default()
        };
        let trixie = tools_with_flac("flac 1.5.0");
        let bookworm = tools_with_flac("flac 1.4.2");
        assert_eq!(encoder_threads(&trixie, &options, 2), 2);
        // One decoder is the slower stage: threads would only take its core.
        assert_eq!(encoder_threads(&trixie, &options, 1), 1);
        // libFLAC 1.4 has no -j.
        assert_eq!(encoder_threads(&bookworm, &options, 2), 1);
        let one = ConvertOptions::default();
        assert_eq!(encoder_threads(&trixie, &one, 2), 1);
    }
}
