//! `dtsflac bench`: dtsflac against what a user would do by hand with plain
//! FFmpeg, in the same run, on long DTS-HD MA streams built by repeating the
//! frames of a public-domain test stream. Prints a table; asserts nothing
//! about time (speed belongs in a report, not in a test), but checks that
//! the PCM is identical.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;

use dtsflac::fmt;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: Option<BenchWhat>,
    /// Minutes of audio per track.
    #[arg(long, default_value_t = 10)]
    minutes: u32,
    /// Tracks in the batch.
    #[arg(long, default_value_t = 4)]
    tracks: usize,
    /// Rounds of every measurement; the table shows medians. This machine
    /// class varies by ±10–20% from run to run, so one round proves little.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,
    /// The DTS-HD stream whose frames are repeated.
    #[arg(
        long,
        default_value = "../shared/samples/dcadec/xll_71_24_48_768_0.dtshd"
    )]
    sample: PathBuf,
}

#[derive(clap::Subcommand)]
enum BenchWhat {
    /// Measure the scan of a generated music library against a plain walk
    /// of the same tree.
    Scan(super::scanbench::ScanBenchArgs),
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

/// A "Field:   123 kB" line of /proc/PID/status.
fn status_kb(status: &str, field: &str) -> Option<u64> {
    status
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
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                if let Some(kb) = status_kb(&status, "VmHWM:") {
                    peak = Some(peak.map_or(kb, |p: u64| p.max(kb)));
                }
                if let Some(kb) = status_kb(&status, "VmRSS:") {
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
                // `try_wait` has reaped it: nothing is left to wait for.
                #[allow(clippy::zombie_processes)]
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

/// One round: every way of converting, one after another.
struct Round {
    plain_batch: Measured,
    ceiling: Measured,
    ours_batch: Measured,
    plain_single: Measured,
    ours_single: Measured,
    ours_lanes: Measured,
    /// Two decoders and two libFLAC threads, where libFLAC has them.
    ours_threads: Option<Measured>,
}

#[allow(clippy::too_many_arguments)]
fn measure_round(
    tools: &dtsflac::media::tools::Tools,
    me: &Path,
    out: &Path,
    batch: &Path,
    single: &Path,
    tracks: usize,
    other_lanes: usize,
    cores: usize,
) -> Result<Round, String> {
    // The batch by plain FFmpeg, one command per track, into `out/name`.
    let plain_batch_into = |name: &str| -> Result<Vec<Command>, String> {
        let dir = out.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        Ok((1..=tracks)
            .map(|i| {
                plain_ffmpeg(
                    &tools.ffmpeg,
                    &batch.join(format!("track{i}.dts")),
                    &dir.join(format!("track{i}.flac")),
                )
            })
            .collect())
    };
    let dtsflac = |args: &[&str], dir: &str, input: &Path| {
        let mut c = Command::new(me);
        c.arg("convert")
            .args(args)
            .arg("--output-dir")
            .arg(out.join(dir))
            .arg(input);
        c
    };
    let plain_batch = measure(plain_batch_into("plain")?, false)?;
    let ceiling = measure_parallel(plain_batch_into("ceiling")?, cores)?;
    let ours_batch = measure(vec![dtsflac(&[], "ours-batch", batch)], true)?;
    let plain_single = measure(
        vec![plain_ffmpeg(
            &tools.ffmpeg,
            &single.join("film.dts"),
            &out.join("plain").join("film.flac"),
        )],
        false,
    )?;
    let ours_single = measure(vec![dtsflac(&[], "ours-single", single)], true)?;
    // The other way to run one track on this machine: with lanes if the plan
    // chose none, without if it chose some.
    let lanes = other_lanes.to_string();
    let ours_lanes = measure(
        vec![dtsflac(&["--decode-lanes", &lanes], "ours-lanes", single)],
        true,
    )?;
    // libFLAC 1.5's encoder threads, for a track decoded in lanes.
    let ours_threads = if tools.flac_has_threads() {
        Some(measure(
            vec![dtsflac(
                &["--decode-lanes", "2", "--flac-threads", "2"],
                "ours-threads",
                single,
            )],
            true,
        )?)
    } else {
        None
    };
    Ok(Round {
        plain_batch,
        ceiling,
        ours_batch,
        plain_single,
        ours_single,
        ours_lanes,
        ours_threads,
    })
}

/// The smallest and the largest of `values`.
fn range(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
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
    let md5 = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // Two failures must not compare equal.
    if !out.status.success() || md5.is_empty() {
        return Err(format!(
            "cannot decode {}: {}",
            flac.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(md5)
}

pub fn run(args: BenchArgs) -> u8 {
    if let Some(BenchWhat::Scan(scan)) = args.what {
        return super::scanbench::run(scan);
    }
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
        "dtsflac bench: {} x {:.0} min DTS-HD MA 7.1 24-bit 48 kHz (frames of {}), on {} ({} cores), FFmpeg {}, libFLAC {} ({})",
        args.tracks,
        audio_seconds / 60.0,
        args.sample.file_name().unwrap_or_default().to_string_lossy(),
        board.model,
        board.cores,
        tools.short_version(),
        tools.flac_short_version(),
        if tools.flac_has_threads() {
            "encoder threads"
        } else {
            "no encoder threads"
        }
    );
    println!(
        "plan: {} job(s) at once, decoders for a lone long track: {}\n",
        plan.workers, plan.decode_lanes
    );

    let other_lanes = if plan.decode_lanes >= 2 { 1 } else { 2 };
    let mut rounds = Vec::new();
    let mut identical = true;
    for n in 1..=args.rounds {
        eprintln!("round {n} of {}…", args.rounds);
        let out = work.path().join(format!("round{n}"));
        let round = measure_round(
            &tools,
            &me,
            &out,
            &batch,
            &single,
            args.tracks,
            other_lanes,
            plan.cores,
        )?;
        // Once is enough to show the PCM is the same; the files are large.
        if n == 1 {
            let md5 = |dir: &str, name: &str| pcm_md5(&tools.ffmpeg, &out.join(dir).join(name));
            let plain_film = md5("plain", "film.flac")?;
            identical = plain_film == md5("ours-single", "film.flac")?
                && plain_film == md5("ours-lanes", "film.flac")?
                && md5("plain", "track1.flac")? == md5("ours-batch", "track1.flac")?;
        }
        let _ = std::fs::remove_dir_all(&out);
        rounds.push(round);
    }

    let cores = board.cores as f64;
    // Medians over the rounds; the ratio is the median of each round's own
    // ratio (the two runs of a pair are seconds apart, the rounds minutes).
    let row = |name: &str,
               run: fn(&Round) -> &Measured,
               base: fn(&Round) -> &Measured,
               tracks: usize| {
        let med = |f: &dyn Fn(&Round) -> f64| median(rounds.iter().map(f).collect());
        let wall = med(&|r| run(r).wall.as_secs_f64());
        let ratios: Vec<f64> = rounds
            .iter()
            .map(|r| run(r).wall.as_secs_f64() / base(r).wall.as_secs_f64())
            .collect();
        let (lo, hi) = range(&ratios);
        let rt = audio_seconds * tracks as f64 / wall;
        let peak = rounds.iter().filter_map(|r| run(r).peak_rss_kb).max();
        let own: Vec<f64> = rounds
            .iter()
            .filter_map(|r| Some(run(r).own_cpu?.as_secs_f64() / run(r).wall.as_secs_f64()))
            .collect();
        println!(
            "| {name:<38} | {:>8.2} s | {:>5.2}x | {:>11} | {:>8.2} s | {:>9} | {:>8} | {:>8} | {:>8} |",
            wall,
            median(ratios.clone()),
            format!("{lo:.2}–{hi:.2}"),
            med(&|r| run(r).cpu.as_secs_f64()),
            peak.map_or("-".into(), fmt::kib_as_mb),
            if own.is_empty() { "-".into() } else { format!("{:.1}%", 100.0 * median(own)) },
            fmt::speed(rt),
            fmt::speed(rt / cores),
        );
    };
    println!(
        "| {:<38} | {:>10} | {:>6} | {:>11} | {:>10} | {:>9} | {:>8} | {:>8} | {:>8} |",
        "run (median of rounds)",
        "wall",
        "ratio",
        "ratio range",
        "CPU",
        "peak RSS",
        "own CPU",
        "realtime",
        "per core"
    );
    println!(
        "|{:-<40}|{:-<12}|{:-<8}|{:-<13}|{:-<12}|{:-<11}|{:-<10}|{:-<10}|{:-<10}|",
        "", "", "", "", "", "", "", "", ""
    );
    row(
        &format!("batch: plain ffmpeg, one by one ({})", args.tracks),
        |r| &r.plain_batch,
        |r| &r.plain_batch,
        args.tracks,
    );
    row(
        &format!("batch: plain ffmpeg, {} at once (bound)", plan.cores),
        |r| &r.ceiling,
        |r| &r.plain_batch,
        args.tracks,
    );
    row(
        &format!("batch: dtsflac convert ({})", args.tracks),
        |r| &r.ours_batch,
        |r| &r.plain_batch,
        args.tracks,
    );
    row(
        "single: plain ffmpeg",
        |r| &r.plain_single,
        |r| &r.plain_single,
        1,
    );
    row(
        &format!("single: dtsflac convert ({} decoder(s))", plan.decode_lanes),
        |r| &r.ours_single,
        |r| &r.plain_single,
        1,
    );
    row(
        &format!("single: dtsflac --decode-lanes {other_lanes}"),
        |r| &r.ours_lanes,
        |r| &r.plain_single,
        1,
    );
    if rounds.iter().all(|r| r.ours_threads.is_some()) {
        row(
            "single: dtsflac lanes 2 + flac -j2",
            |r| r.ours_threads.as_ref().expect("measured in every round"),
            |r| &r.plain_single,
            1,
        );
    }
    let early_late: Vec<(u64, u64)> = rounds
        .iter()
        .filter_map(|r| r.ours_batch.rss_early_late_kb)
        .collect();
    if !early_late.is_empty() {
        let early = early_late.iter().map(|e| e.0).max().unwrap_or(0);
        let late = early_late.iter().map(|e| e.1).max().unwrap_or(0);
        println!(
            "\ndtsflac's resident memory over the batch: {} in the first quarter, {} in the last (highest of {} rounds)",
            fmt::kib_as_mb(early),
            fmt::kib_as_mb(late),
            rounds.len()
        );
    }
    // On a shared VM the cores slow each other down by a varying amount:
    // the batch's ratio to the machine's own bound says how much of its
    // time is dtsflac's and how much the machine's.
    let to_bound: Vec<f64> = rounds
        .iter()
        .map(|r| r.ours_batch.wall.as_secs_f64() / r.ceiling.wall.as_secs_f64())
        .collect();
    let (lo, hi) = range(&to_bound);
    println!(
        "dtsflac's batch against the bound: {:.2}x (range {lo:.2}–{hi:.2})",
        median(to_bound)
    );
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
