//! `dtsflac bench`: dtsflac against what a user would do by hand with plain
//! FFmpeg, in the same run, on long DTS-HD MA streams built by repeating the
//! frames of a public-domain test stream. Prints a table; asserts nothing
//! about time (speed belongs in a report, not in a test), but checks that
//! the PCM is identical.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;

#[derive(Args)]
pub struct BenchArgs {
    /// Minutes of audio per track.
    #[arg(long, default_value_t = 10)]
    minutes: u32,
    /// Tracks in the batch.
    #[arg(long, default_value_t = 4)]
    tracks: usize,
    /// The DTS-HD stream whose frames are repeated.
    #[arg(
        long,
        default_value = "../shared/samples/dcadec/xll_71_24_48_768_0.dtshd"
    )]
    sample: PathBuf,
}

struct Measured {
    wall: Duration,
    cpu: Duration,
    peak_rss_kb: Option<u64>,
    /// dtsflac's own CPU time (not its FFmpeg children).
    own_cpu: Option<Duration>,
    /// dtsflac's resident memory in the first and the last quarter of the run.
    rss_early_late_kb: Option<(u64, u64)>,
}

fn children_cpu() -> Duration {
    // SAFETY: getrusage fills a struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn status_kb(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// utime + stime of the process itself, from /proc/PID/stat.
fn own_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the ")" that closes the command name; utime and stime
    // are fields 14 and 15 of the whole line.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_millis(ticks * 1000 / hz))
}

/// Runs commands one after another; the first one's own peak RSS is
/// sampled while it runs (that is dtsflac itself, not its FFmpeg children).
fn measure(commands: Vec<Command>, sample_rss: bool) -> Result<Measured, String> {
    // Every run starts with nothing waiting to be written: dtsflac fsyncs
    // its files, plain FFmpeg does not, and the earlier runs' gigabyte of
    // dirty pages would otherwise be flushed on dtsflac's clock.
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    let cpu0 = children_cpu();
    let start = Instant::now();
    let mut peak = None;
    let mut own = None;
    let mut rss_samples: Vec<u64> = Vec::new();
    for mut cmd in commands {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let pid = child.id();
        let stderr = child.stderr.take();
        let drain = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut e) = stderr {
                use std::io::Read;
                let _ = e.read_to_string(&mut s);
            }
            s
        });
        loop {
            if sample_rss {
                if let Some(kb) = status_kb(pid, "VmHWM:") {
                    peak = Some(peak.map_or(kb, |p: u64| p.max(kb)));
                }
                if let Some(kb) = status_kb(pid, "VmRSS:") {
                    rss_samples.push(kb);
                }
                own = own_cpu(pid).or(own);
            }
            match child.try_wait().map_err(|e| e.to_string())? {
                Some(status) if status.success() => break,
                Some(status) => {
                    return Err(format!(
                        "{cmd:?} failed ({status}): {}",
                        drain.join().unwrap_or_default()
                    ))
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let _ = drain.join();
    }
    let quarter = rss_samples.len() / 4;
    let rss_early_late_kb = (quarter > 0).then(|| {
        (
            rss_samples[..quarter].iter().copied().max().unwrap_or(0),
            rss_samples[rss_samples.len() - quarter..]
                .iter()
                .copied()
                .max()
                .unwrap_or(0),
        )
    });
    Ok(Measured {
        wall: start.elapsed(),
        cpu: children_cpu().saturating_sub(cpu0),
        peak_rss_kb: peak,
        own_cpu: own,
        rss_early_late_kb,
    })
}

/// The hardware's own limit for a batch: plain FFmpeg commands, as many at
/// once as there are cores, with nothing else to do.
fn measure_parallel(commands: Vec<Command>, at_once: usize) -> Result<Measured, String> {
    // SAFETY: sync(2) has no preconditions (see `measure`).
    unsafe { libc::sync() };
    let cpu0 = children_cpu();
    let start = Instant::now();
    let mut pending = commands.into_iter();
    let mut running: Vec<std::process::Child> = Vec::new();
    loop {
        while running.len() < at_once.max(1) {
            match pending.next() {
                Some(mut cmd) => running.push(
                    cmd.stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .map_err(|e| e.to_string())?,
                ),
                None => break,
            }
        }
        if running.is_empty() {
            break;
        }
        let mut i = 0;
        while i < running.len() {
            match running[i].try_wait().map_err(|e| e.to_string())? {
                Some(status) if !status.success() => {
                    for mut other in running {
                        let _ = other.kill();
                        let _ = other.wait();
                    }
                    return Err(format!("ffmpeg failed ({status})"));
                }
                Some(_) => {
                    running.remove(i);
                }
                None => i += 1,
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Measured {
        wall: start.elapsed(),
        cpu: children_cpu().saturating_sub(cpu0),
        peak_rss_kb: None,
        own_cpu: None,
        rss_early_late_kb: None,
    })
}

fn plain_ffmpeg(ffmpeg: &Path, input: &Path, output: &Path) -> Command {
    let mut c = Command::new(ffmpeg);
    c.args(["-nostdin", "-v", "error", "-y", "-i"])
        .arg(input)
        .args(["-c:a", "flac"])
        .arg(output);
    c
}

fn pcm_md5(ffmpeg: &Path, flac: &Path) -> Result<String, String> {
    let out = Command::new(ffmpeg)
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(flac)
        .args(["-c:a", "pcm_s32le", "-f", "md5", "-"])
        .output()
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn run(args: BenchArgs) -> u8 {
    match bench(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("dtsflac bench: {e}");
            1
        }
    }
}

fn bench(args: BenchArgs) -> Result<(), String> {
    let tools = super::tools_or_explain().ok_or("FFmpeg is missing")?;
    let sample = std::fs::read(&args.sample)
        .map_err(|e| format!("cannot read {}: {e}", args.sample.display()))?;
    let frames =
        dtsflac::media::dtshd::stream_frames(&sample).ok_or("the sample has no STRMDATA chunk")?;
    let header = dtsflac::media::dtshd::read_header(&args.sample)
        .ok()
        .flatten()
        .ok_or("the sample has no DTS-HD header")?;
    let seconds_per_copy = header.decoded_samples() as f64 / f64::from(header.sample_rate.max(1));
    let copies = (f64::from(args.minutes) * 60.0 / seconds_per_copy).ceil() as usize;
    let audio_seconds = copies as f64 * seconds_per_copy;

    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let batch = work.path().join("batch");
    let single = work.path().join("single");
    for d in [&batch, &single] {
        std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
    }
    let long = frames.repeat(copies);
    for i in 1..=args.tracks {
        std::fs::write(batch.join(format!("track{i}.dts")), &long).map_err(|e| e.to_string())?;
    }
    std::fs::write(single.join("film.dts"), &long).map_err(|e| e.to_string())?;
    drop(long);
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let board = dtsflac::hw::board::detect();
    let plan = dtsflac::hw::tuning::plan(&board, &Default::default());
    println!(
        "dtsflac bench: {} x {:.0} min DTS-HD MA 7.1 24-bit 48 kHz (frames of {}), on {} ({} cores), FFmpeg {}",
        args.tracks,
        audio_seconds / 60.0,
        args.sample.file_name().unwrap_or_default().to_string_lossy(),
        board.model,
        board.cores,
        tools.short_version()
    );
    println!(
        "plan: {} job(s) at once, decoders for a lone long track: {}\n",
        plan.workers, plan.decode_lanes
    );

    // The batch by plain FFmpeg, one command per track, into `out`.
    let plain_batch_into = |name: &str| -> Result<Vec<Command>, String> {
        let out = work.path().join(name);
        std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
        Ok((1..=args.tracks)
            .map(|i| {
                plain_ffmpeg(
                    &tools.ffmpeg,
                    &batch.join(format!("track{i}.dts")),
                    &out.join(format!("track{i}.flac")),
                )
            })
            .collect())
    };
    let plain_batch = measure(plain_batch_into("plain")?, false)?;
    let plain_out = work.path().join("plain");
    let ceiling = measure_parallel(plain_batch_into("ceiling")?, plan.cores)?;
    let ours_batch_out = work.path().join("ours-batch");
    let mut c = Command::new(&me);
    c.args(["convert", "--output-dir"])
        .arg(&ours_batch_out)
        .arg(&batch);
    let ours_batch = measure(vec![c], true)?;

    let plain_single = measure(
        vec![plain_ffmpeg(
            &tools.ffmpeg,
            &single.join("film.dts"),
            &plain_out.join("film.flac"),
        )],
        false,
    )?;
    let ours_single_out = work.path().join("ours-single");
    let mut c = Command::new(&me);
    c.args(["convert", "--output-dir"])
        .arg(&ours_single_out)
        .arg(&single);
    let ours_single = measure(vec![c], true)?;
    // The other way to run one track on this machine: with lanes if the plan
    // chose none, without if it chose some.
    let other_lanes = if plan.decode_lanes >= 2 { 1 } else { 2 };
    let lanes_out = work.path().join("ours-lanes");
    let mut c = Command::new(&me);
    c.args([
        "convert",
        "--decode-lanes",
        &other_lanes.to_string(),
        "--output-dir",
    ])
    .arg(&lanes_out)
    .arg(&single);
    let ours_lanes = measure(vec![c], true)?;

    let plain_film = pcm_md5(&tools.ffmpeg, &plain_out.join("film.flac"))?;
    let identical = plain_film == pcm_md5(&tools.ffmpeg, &ours_single_out.join("film.flac"))?
        && plain_film == pcm_md5(&tools.ffmpeg, &lanes_out.join("film.flac"))?
        && pcm_md5(&tools.ffmpeg, &plain_out.join("track1.flac"))?
            == pcm_md5(&tools.ffmpeg, &ours_batch_out.join("track1.flac"))?;

    let cores = board.cores as f64;
    let row = |name: &str, m: &Measured, base: &Measured, tracks: usize| {
        let rt = audio_seconds * tracks as f64 / m.wall.as_secs_f64();
        println!(
            "| {name:<38} | {:>8.2} s | {:>5.2}x | {:>8.2} s | {:>9} | {:>8} | {:>7.1}x | {:>7.1}x |",
            m.wall.as_secs_f64(),
            m.wall.as_secs_f64() / base.wall.as_secs_f64(),
            m.cpu.as_secs_f64(),
            m.peak_rss_kb
                .map_or("-".into(), |kb| format!("{:.1} MB", kb as f64 / 1024.0)),
            m.own_cpu.map_or("-".into(), |c| format!(
                "{:.1}%",
                100.0 * c.as_secs_f64() / m.wall.as_secs_f64()
            )),
            rt,
            rt / cores,
        );
    };
    println!(
        "| {:<38} | {:>10} | {:>6} | {:>10} | {:>9} | {:>8} | {:>8} | {:>8} |",
        "run", "wall", "ratio", "CPU", "peak RSS", "own CPU", "realtime", "per core"
    );
    println!(
        "|{:-<40}|{:-<12}|{:-<8}|{:-<12}|{:-<11}|{:-<10}|{:-<10}|{:-<10}|",
        "", "", "", "", "", "", "", ""
    );
    row(
        &format!("batch: plain ffmpeg, one by one ({})", args.tracks),
        &plain_batch,
        &plain_batch,
        args.tracks,
    );
    row(
        &format!("batch: plain ffmpeg, {} at once (bound)", plan.cores),
        &ceiling,
        &plain_batch,
        args.tracks,
    );
    row(
        &format!("batch: dtsflac convert ({})", args.tracks),
        &ours_batch,
        &plain_batch,
        args.tracks,
    );
    row("single: plain ffmpeg", &plain_single, &plain_single, 1);
    row(
        &format!("single: dtsflac convert ({} decoder(s))", plan.decode_lanes),
        &ours_single,
        &plain_single,
        1,
    );
    row(
        &format!("single: dtsflac --decode-lanes {other_lanes}"),
        &ours_lanes,
        &plain_single,
        1,
    );
    if let Some((early, late)) = ours_batch.rss_early_late_kb {
        println!(
            "\ndtsflac's resident memory over the batch: {:.1} MB in the first quarter, {:.1} MB in the last",
            early as f64 / 1024.0,
            late as f64 / 1024.0
        );
    }
    println!(
        "\nPCM identical to plain FFmpeg: {}   (peak RSS and own CPU are dtsflac itself, as % of one core; CPU includes its FFmpeg, flac and check processes)",
        if identical { "yes" } else { "NO" }
    );
    println!("dtsflac's wall time includes probing, libFLAC's verify mode, the frame-by-frame read-back of each FLAC and its fsync.");
    println!("\"bound\": plain FFmpeg with all cores busy and no verification — what this machine allows a batch at best.");
    if !identical {
        return Err("dtsflac's PCM differs from plain FFmpeg's".into());
    }
    Ok(())
}
