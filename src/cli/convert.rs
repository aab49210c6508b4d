//! `dtsflac convert`: scan, queue every track in a store, run the queue, and
//! show progress — bars on a terminal, plain lines otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use dtsflac::fmt;
use dtsflac::media::convert::ConvertOptions;
use dtsflac::media::probe::DiscTitles;
use dtsflac::media::probe::Track;
use dtsflac::media::scan::{scan, ScanLimits};
use dtsflac::queue::plan::{add_planned, plan_jobs, Added};
use dtsflac::queue::scheduler::{Event, Scheduler, SchedulerConfig};
use dtsflac::queue::store::{JobId, JobState, Store};

use super::tools_or_explain;

#[derive(Args)]
pub struct ConvertArgs {
    /// Write the FLAC files under DIR, mirroring the folders below each PATH,
    /// instead of next to their sources.
    #[arg(long, value_name = "DIR")]
    output_dir: Option<PathBuf>,
    /// How many conversions run at once (default: one per CPU core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: Option<u16>,
    /// FFmpeg decoders sharing one long DTS-HD MA track while cores would
    /// otherwise sit idle (default: from the board's plan; 1: one decoder).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=8))]
    decode_lanes: Option<u16>,
    /// libFLAC encoder threads for a track decoded in lanes, where libFLAC
    /// has them (1.5 and later; default: from the board's plan; 1: one).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=8))]
    flac_threads: Option<u16>,
    /// Keep the job store (jobs.db) in DIR; by default a temporary one is used.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// FLAC compression level, 0 (fastest) to 8 (smallest).
    #[arg(long, value_name = "N", default_value_t = dtsflac::media::convert::DEFAULT_COMPRESSION_LEVEL,
          value_parser = clap::value_parser!(u8).range(0..=8))]
    compression_level: u8,
    /// Convert every title of a Blu-ray or DVD disc at least SECONDS long,
    /// not only its main one (FFmpeg lists no Blu-ray title under 180 s).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(1..))]
    all_titles_over: Option<u32>,
    /// Files and folders to convert (folders are searched recursively).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn catch_interrupts() {
    // SAFETY: the handler only stores to an atomic, which is signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

struct Totals {
    done: usize,
    skipped: usize,
    failed: Vec<String>,
}

pub fn run(args: ConvertArgs) -> u8 {
    let Some(tools) = tools_or_explain() else {
        return 1;
    };
    let limits = ScanLimits {
        disc_titles: args
            .all_titles_over
            .map_or(DiscTitles::Main, DiscTitles::AtLeast),
        ..ScanLimits::default()
    };
    let report = scan(&tools, &args.paths, limits);
    let mut totals = Totals {
        done: 0,
        skipped: 0,
        failed: Vec::new(),
    };
    for p in &report.problems {
        totals
            .failed
            .push(format!("{}: {}", p.path.display(), p.reason));
    }

    let (store_path, _temp_state) = match &args.state_dir {
        Some(dir) => {
            if let Err(e) = std::fs::create_dir_all(dir) {
                eprintln!(
                    "dtsflac: cannot create the state folder {}: {e}",
                    dir.display()
                );
                return 1;
            }
            (dir.join("jobs.db"), None)
        }
        None => match tempfile::tempdir() {
            Ok(t) => (t.path().join("jobs.db"), Some(t)),
            Err(e) => {
                eprintln!("dtsflac: cannot create a temporary job store: {e}");
                return 1;
            }
        },
    };
    let mut store = match Store::open(&store_path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dtsflac: {e}");
            return 1;
        }
    };

    let planned = plan_jobs(&report.found, args.output_dir.as_deref());
    let mut queued: Vec<(JobId, Track)> = Vec::new();
    for (p, added) in planned.iter().zip(add_planned(&mut store, &planned, None)) {
        match added {
            Added::Queued(id) => queued.push((id, p.track.clone())),
            Added::UpToDate | Added::Known | Added::Renewed { .. } => {
                totals.skipped += 1;
                println!(
                    "skipped (already converted): {} -> {}",
                    p.track.source_path().display(),
                    p.output.display()
                );
            }
            Added::Failed(e) => totals
                .failed
                .push(format!("{}: {e}", p.track.source_path().display())),
        }
    }

    if !queued.is_empty() {
        catch_interrupts();
        let board = dtsflac::hw::board::detect();
        let plan = dtsflac::hw::tuning::plan(
            &board,
            &dtsflac::hw::tuning::Overrides {
                workers: args.jobs.map(usize::from),
                decode_lanes: args.decode_lanes.map(usize::from),
                flac_threads: args.flac_threads.map(usize::from),
                ..Default::default()
            },
        );
        let config = SchedulerConfig {
            workers: plan.workers.min(queued.len()),
            cores: plan.cores,
            convert: ConvertOptions {
                compression_level: args.compression_level,
                nice: plan.nice,
                cpus: plan.cpus.clone(),
                decode_lanes: plan.decode_lanes,
                flac_threads: plan.flac_threads,
            },
            ..Default::default()
        };
        let store = Arc::new(Mutex::new(store));
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let scheduler = Scheduler::start(store.clone(), tools, config, move |e| {
            let _ = tx.lock().unwrap().send(e);
        });
        let mut view = View::new(&queued);
        let mut remaining = queued.len();
        while remaining > 0 {
            if INTERRUPTED.load(Ordering::SeqCst) {
                view.clear();
                eprintln!("dtsflac: interrupted; stopping conversions and removing partial files");
                scheduler.shutdown();
                return 130;
            }
            let Ok(event) = rx.recv_timeout(Duration::from_millis(200)) else {
                continue;
            };
            if let Event::Finished {
                job,
                state,
                result,
                error,
            } = &event
            {
                remaining -= 1;
                let track = &view.tracks[job];
                let output = store
                    .lock()
                    .unwrap()
                    .job(*job)
                    .map(|j| j.output)
                    .unwrap_or_default();
                match (state, result) {
                    (JobState::Done, Some(r)) => {
                        totals.done += 1;
                        let quality = if r.lossless {
                            "lossless, MD5 verified".to_string()
                        } else if track.lossless {
                            "MD5 verified, NOT lossless: see the warning".to_string()
                        } else {
                            format!("MD5 verified, from lossy {}", track.profile)
                        };
                        let mut decoders = if r.decode_lanes > 1 {
                            format!(", {} decoders", r.decode_lanes)
                        } else {
                            String::new()
                        };
                        if r.flac_threads > 1 {
                            decoders.push_str(&format!(", {} encoder threads", r.flac_threads));
                        }
                        view.println(format!(
                            "converted: {} -> {} ({}, {}, {}{decoders}, {quality})",
                            track.source_path().display(),
                            output.display(),
                            fmt::duration(r.duration_seconds),
                            fmt::bytes(r.output_bytes),
                            fmt::speed(r.speed)
                        ));
                        for w in &r.warnings {
                            view.eprintln(format!(
                                "dtsflac: warning: {}: {w}",
                                track.source_path().display()
                            ));
                        }
                    }
                    _ => {
                        let reason = error.clone().unwrap_or_else(|| state.to_string());
                        let line = format!(
                            "{}{}: {reason}",
                            track.source_path().display(),
                            stream_note(track)
                        );
                        view.eprintln(format!("dtsflac: failed: {line}"));
                        totals.failed.push(line);
                    }
                }
            }
            view.update(&event);
        }
        view.clear();
        scheduler.shutdown();
    }

    let failed = totals.failed.len();
    if report.found.is_empty() && failed == 0 {
        println!("No DTS tracks found.");
        return 0;
    }
    println!(
        "{} converted, {} skipped, {} failed.",
        totals.done, totals.skipped, failed
    );
    if failed > 0 {
        eprintln!("Failures:");
        for f in &totals.failed {
            eprintln!("  {f}");
        }
        1
    } else {
        0
    }
}

fn stream_note(track: &Track) -> String {
    if track.tracks_in_file > 1 {
        format!(" (stream {})", track.stream_index)
    } else {
        String::new()
    }
}

/// Progress display: bars on a terminal, nothing but result lines otherwise.
struct View {
    tracks: HashMap<JobId, Track>,
    bars: Option<(MultiProgress, ProgressBar, HashMap<JobId, ProgressBar>)>,
    /// Seconds of audio finished and in flight, for the overall bar.
    total_seconds: f64,
    finished_seconds: f64,
    in_flight: HashMap<JobId, f64>,
    started: Instant,
}

impl View {
    fn new(queued: &[(JobId, Track)]) -> View {
        let total_seconds: f64 = queued
            .iter()
            .map(|(_, t)| t.duration_seconds.unwrap_or(0.0))
            .sum();
        let bars = std::io::stderr().is_terminal().then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4));
            let overall = multi.add(ProgressBar::new((total_seconds * 10.0) as u64));
            overall.set_style(
                ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {percent:>3}% {msg}")
                    .unwrap()
                    .progress_chars("=> "),
            );
            overall.set_prefix(format!("{} track(s)", queued.len()));
            (multi, overall, HashMap::new())
        });
        View {
            tracks: queued.iter().cloned().collect(),
            bars,
            total_seconds,
            finished_seconds: 0.0,
            in_flight: HashMap::new(),
            started: Instant::now(),
        }
    }

    fn println(&self, line: String) {
        match &self.bars {
            Some((multi, ..)) => {
                let _ = multi.println(line);
            }
            None => println!("{line}"),
        }
    }

    fn eprintln(&self, line: String) {
        match &self.bars {
            Some((multi, ..)) => {
                let _ = multi.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    fn update(&mut self, event: &Event) {
        match event {
            Event::Started { job } => {
                let track = &self.tracks[job];
                // Tracks of one source told apart as their FLACs are: "Film [2.ger]".
                let part = track
                    .part_name()
                    .map(|p| format!(" [{p}]"))
                    .unwrap_or_default();
                let name = format!("{}{part}", track.source_name());
                let seconds = self.tracks[job].duration_seconds.unwrap_or(0.0);
                if let Some((multi, overall, per_job)) = &mut self.bars {
                    let bar =
                        multi.insert_before(overall, ProgressBar::new((seconds * 10.0) as u64));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "  {prefix:<30!} [{bar:20}] {percent:>3}% {msg}",
                        )
                        .unwrap()
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(name);
                    per_job.insert(*job, bar);
                } else {
                    println!("converting: {}{part}", track.source_path().display());
                }
            }
            Event::Progress { job, progress } => {
                self.in_flight.insert(*job, progress.seconds_done);
                if let Some((_, overall, per_job)) = &self.bars {
                    if let Some(bar) = per_job.get(job) {
                        bar.set_position((progress.seconds_done * 10.0) as u64);
                        let left = self.tracks[job].duration_seconds.unwrap_or(0.0)
                            - progress.seconds_done;
                        let eta = if progress.speed > 0.0 {
                            fmt::duration(left / progress.speed)
                        } else {
                            "?".into()
                        };
                        bar.set_message(format!("{} ETA {eta}", fmt::speed(progress.speed)));
                    }
                    self.refresh_overall(overall);
                }
            }
            Event::Finished { job, .. } => {
                self.in_flight.remove(job);
                self.finished_seconds += self.tracks[job].duration_seconds.unwrap_or(0.0);
                if let Some((multi, overall, per_job)) = &mut self.bars {
                    if let Some(bar) = per_job.remove(job) {
                        bar.finish_and_clear();
                        multi.remove(&bar);
                    }
                    let overall = overall.clone();
                    self.refresh_overall(&overall);
                }
            }
            Event::Retrying {
                job,
                attempt,
                error,
            } => {
                self.in_flight.remove(job);
                self.eprintln(format!(
                    "dtsflac: retrying {} (attempt {attempt} failed: {error})",
                    self.tracks[job].path.display()
                ));
            }
        }
    }

    fn refresh_overall(&self, overall: &ProgressBar) {
        let done = self.finished_seconds + self.in_flight.values().sum::<f64>();
        overall.set_position((done * 10.0) as u64);
        let elapsed = self.started.elapsed().as_secs_f64();
        if done > 0.0 && elapsed > 0.5 {
            let speed = done / elapsed;
            let eta = (self.total_seconds - done).max(0.0) / speed;
            overall.set_message(format!(
                "{} realtime, ETA {}",
                fmt::speed(speed),
                fmt::duration(eta)
            ));
        }
    }

    fn clear(&self) {
        if let Some((multi, overall, _)) = &self.bars {
            overall.finish_and_clear();
            let _ = multi.clear();
        }
    }
}
