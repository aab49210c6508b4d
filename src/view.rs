//! The view model: what the panel, the page and the API show of the box,
//! and what each state allows. Pure data and rules — no threads, no I/O —
//! so the supervisor, the web side and the panel share one copy of them.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use serde::Serialize;

use crate::media::scan::ScanCounts;
pub use crate::queue::store::StoreSummary;
use crate::queue::store::{Job, JobId, JobState};

/// How many finished jobs (done, failed, cancelled) the snapshot carries;
/// older ones are paged through `GET /api/jobs`.
pub const HISTORY_LIMIT: usize = 100;

/// Drive states; the names are part of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DriveState {
    Mounting,
    Scanning,
    Converting,
    Idle,
    Ejecting,
    Ejected,
    Removed,
    Error,
}

impl DriveState {
    /// States in which a mounted drive can be ejected (by the page, the
    /// panel or the API alike).
    pub fn can_eject(self) -> bool {
        matches!(
            self,
            DriveState::Scanning | DriveState::Converting | DriveState::Idle | DriveState::Error
        )
    }

    /// The drive is plugged in and its file system is (being) used.
    pub fn is_present(self) -> bool {
        matches!(
            self,
            DriveState::Mounting | DriveState::Scanning | DriveState::Converting | DriveState::Idle
        )
    }

    /// Gone from the box: a new visit of the same file system starts afresh.
    pub fn is_gone(self) -> bool {
        matches!(self, DriveState::Removed | DriveState::Ejected)
    }
}

/// Jobs that can be cancelled: waiting, running or paused.
pub fn can_cancel(state: JobState) -> bool {
    matches!(
        state,
        JobState::Queued | JobState::Running | JobState::Paused | JobState::Interrupted
    )
}

/// Jobs that can be queued again.
pub fn can_retry(state: JobState) -> bool {
    matches!(
        state,
        JobState::Failed | JobState::Cancelled | JobState::Interrupted
    )
}

/// Jobs still to be done (they keep their drive `converting`).
pub fn is_pending(state: JobState) -> bool {
    matches!(
        state,
        JobState::Queued | JobState::Running | JobState::Paused
    )
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DriveView {
    pub id: i64,
    pub device: String,
    pub label: String,
    pub fs: String,
    pub uuid: String,
    pub state: DriveState,
    pub mount_point: Option<PathBuf>,
    pub error: Option<String>,
    /// DTS tracks found by the last scan.
    pub tracks_found: usize,
    /// While it is scanned: files looked at, tracks found, the folder read.
    pub scan: Option<ScanCounts>,
    /// Space on the mounted drive (as last measured).
    pub free_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
    /// Whether EJECT applies now (filled in by `Snapshot::new`).
    pub can_eject: bool,
}

impl DriveView {
    pub fn allows_eject(&self) -> bool {
        self.state.can_eject() && self.mount_point.is_some()
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct JobView {
    pub id: JobId,
    pub drive_id: Option<i64>,
    pub source: PathBuf,
    /// The source's file name, for display.
    pub name: String,
    /// Which of the source's tracks, as the output's name says it ("2.eng");
    /// `None` for a source's only track.
    pub track: Option<String>,
    pub output: PathBuf,
    pub state: JobState,
    pub progress: f64,
    pub error: Option<String>,
    /// Speed of a running job, × realtime.
    pub speed: Option<f64>,
    pub eta_seconds: Option<f64>,
    pub duration_seconds: Option<f64>,
    pub profile: String,
    /// e.g. "DTS-HD MA 7.1 24-bit 48 kHz".
    pub description: String,
    /// Results of a finished job.
    pub input_bytes: Option<u64>,
    pub output_bytes: Option<u64>,
    pub elapsed_seconds: Option<f64>,
    pub md5: Option<String>,
    pub lossless: Option<bool>,
    pub finished_at: Option<i64>,
    /// What the controls may do with it now.
    pub can_cancel: bool,
    pub can_retry: bool,
}

/// Progress of a running job, kept in memory only (never on the card).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Running {
    /// Share of the track done, 0..1.
    pub fraction: f64,
    /// × realtime.
    pub speed: f64,
}

impl JobView {
    pub fn of(j: &Job, running: Option<Running>) -> JobView {
        let (progress, speed) = match j.state {
            JobState::Done => (1.0, None),
            JobState::Running | JobState::Paused => {
                running.map_or((0.0, None), |r| (r.fraction, Some(r.speed)))
            }
            _ => (0.0, None),
        };
        let duration = j.track.duration_seconds;
        let eta_seconds = match (speed, duration) {
            (Some(s), Some(d)) if s > 0.0 && j.state == JobState::Running => {
                Some(d * (1.0 - progress) / s)
            }
            _ => None,
        };
        let result = j.result.as_ref();
        JobView {
            id: j.id,
            drive_id: j.drive_id,
            name: j.track.source_name(),
            track: j.track.part_name(),
            source: j.track.source_path().to_path_buf(),
            output: j.output.clone(),
            state: j.state,
            progress,
            error: j.error.clone(),
            speed,
            eta_seconds,
            duration_seconds: result.map(|r| r.duration_seconds).or(duration),
            profile: j.track.profile.to_string(),
            description: j.track.describe(),
            input_bytes: result.map(|r| r.input_bytes),
            output_bytes: result.map(|r| r.output_bytes),
            elapsed_seconds: result.map(|r| r.elapsed_seconds),
            md5: result.map(|r| r.md5.clone()),
            lossless: result.map(|r| r.lossless),
            finished_at: j.finished_at,
            can_cancel: can_cancel(j.state),
            can_retry: can_retry(j.state),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Totals {
    pub done: usize,
    pub total: usize,
    /// Share of the audio (by duration) converted, over unfinished and done jobs.
    pub progress: f64,
    pub eta_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BoxInfo {
    pub version: &'static str,
    pub board: String,
    pub cpu_temp_c: Option<f64>,
    pub throttled: Option<bool>,
    pub load: [f64; 3],
    pub ffmpeg: String,
    pub uptime_seconds: f64,
}

impl BoxInfo {
    /// Before the board was read.
    pub fn unknown(ffmpeg: &str) -> BoxInfo {
        BoxInfo {
            version: env!("CARGO_PKG_VERSION"),
            board: String::new(),
            cpu_temp_c: None,
            throttled: None,
            load: [0.0; 3],
            ffmpeg: ffmpeg.to_string(),
            uptime_seconds: 0.0,
        }
    }
}

/// Everything the panel and the page show, at one moment.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Snapshot {
    pub paused: bool,
    pub drives: Vec<DriveView>,
    /// Unfinished jobs, and the newest `HISTORY_LIMIT` finished ones.
    pub jobs: Vec<JobView>,
    /// Finished jobs in the store (the ones not listed are paged through the API).
    pub finished_jobs: usize,
    pub summary: StoreSummary,
    pub totals: Totals,
    #[serde(rename = "box")]
    pub box_info: BoxInfo,
    /// Why the state directory (the SD card) cannot record job changes now,
    /// and what to do; set by the supervisor.
    pub state_dir_problem: Option<String>,
}

impl Snapshot {
    /// Puts the parts together and fills in what each drive and job allows.
    pub fn new(
        paused: bool,
        mut drives: Vec<DriveView>,
        jobs: Vec<JobView>,
        summary: StoreSummary,
        workers: usize,
        box_info: BoxInfo,
    ) -> Snapshot {
        for d in &mut drives {
            d.can_eject = d.allows_eject();
        }
        let finished_jobs = [JobState::Done, JobState::Failed, JobState::Cancelled]
            .iter()
            .map(|s| summary.count(*s))
            .sum();
        Snapshot {
            paused,
            totals: totals(&jobs, &summary, workers),
            drives,
            jobs,
            finished_jobs,
            summary,
            box_info,
            state_dir_problem: None,
        }
    }

    /// The jobs EJECT on the panel or the page applies to.
    pub fn ejectable_drives(&self) -> impl Iterator<Item = &DriveView> {
        self.drives.iter().filter(|d| d.can_eject)
    }

    /// The job the panel's long ACTION cancels: the one running now.
    pub fn current_job(&self) -> Option<&JobView> {
        self.jobs
            .iter()
            .find(|j| matches!(j.state, JobState::Running | JobState::Paused))
    }
}

/// Overall progress by audio duration, and the time left at the current
/// speeds of the running jobs (spread over the worker slots). Done jobs
/// count from the store's summary, so the history's length does not matter.
fn totals(jobs: &[JobView], summary: &StoreSummary, workers: usize) -> Totals {
    let open: Vec<&JobView> = jobs
        .iter()
        .filter(|j| !matches!(j.state, JobState::Cancelled | JobState::Done))
        .collect();
    let done = summary.count(JobState::Done);
    let seconds = |j: &JobView| j.duration_seconds.unwrap_or(0.0);
    let all: f64 = summary.done_audio_seconds + open.iter().map(|j| seconds(j)).sum::<f64>();
    let converted: f64 =
        summary.done_audio_seconds + open.iter().map(|j| seconds(j) * j.progress).sum::<f64>();
    let speeds: Vec<f64> = open
        .iter()
        .filter_map(|j| j.speed)
        .filter(|s| *s > 0.0)
        .collect();
    let left: f64 = open
        .iter()
        .filter(|j| is_pending(j.state))
        .map(|j| seconds(j) * (1.0 - j.progress))
        .sum();
    let eta_seconds = if speeds.is_empty() || left <= 0.0 {
        None
    } else {
        let per_job = speeds.iter().sum::<f64>() / speeds.len() as f64;
        Some(left / (per_job * workers.max(1) as f64))
    };
    let total = JobState::ALL
        .iter()
        .filter(|s| **s != JobState::Cancelled)
        .map(|s| summary.count(*s))
        .sum();
    Totals {
        done,
        total,
        progress: if all > 0.0 { converted / all } else { 0.0 },
        eta_seconds,
    }
}

/// A snapshot as published: built once per change by the supervisor, and
/// encoded once however many clients ask for it.
#[derive(Debug)]
pub struct Published {
    pub snapshot: Snapshot,
    json: OnceLock<Arc<str>>,
}

impl Published {
    pub fn new(snapshot: Snapshot) -> Published {
        Published {
            snapshot,
            json: OnceLock::new(),
        }
    }

    pub fn json(&self) -> Arc<str> {
        self.json
            .get_or_init(|| {
                serde_json::to_string(&self.snapshot)
                    .unwrap_or_default()
                    .into()
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eject_needs_a_mounted_drive_in_a_working_state() {
        use DriveState::*;
        let allowed: Vec<DriveState> = [
            Mounting, Scanning, Converting, Idle, Ejecting, Ejected, Removed, Error,
        ]
        .into_iter()
        .filter(|s| s.can_eject())
        .collect();
        assert_eq!(allowed, vec![Scanning, Converting, Idle, Error]);
        let mut d = DriveView {
            id: 1,
            device: "/dev/sda1".into(),
            label: "FILMS".into(),
            fs: "exfat".into(),
            uuid: "1".into(),
            state: Error,
            mount_point: None,
            error: Some("cannot mount".into()),
            tracks_found: 0,
            scan: None,
            free_bytes: None,
            total_bytes: None,
            can_eject: false,
        };
        assert!(!d.allows_eject(), "nothing to eject after a failed mount");
        d.mount_point = Some("/media/dtsflac/FILMS".into());
        assert!(d.allows_eject());
        d.state = Ejecting;
        assert!(!d.allows_eject());
    }

    #[test]
    fn job_controls_follow_the_state() {
        for s in JobState::ALL {
            let expect_retry = matches!(
                s,
                JobState::Failed | JobState::Cancelled | JobState::Interrupted
            );
            assert_eq!(can_retry(s), expect_retry, "{s}");
            let expect_cancel = matches!(
                s,
                JobState::Queued | JobState::Running | JobState::Paused | JobState::Interrupted
            );
            assert_eq!(can_cancel(s), expect_cancel, "{s}");
        }
        assert!(!can_cancel(JobState::Done) && !can_retry(JobState::Done));
    }
}
