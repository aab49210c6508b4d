//! From scanned tracks to jobs: where each FLAC goes, whether an up-to-date
//! one is there already, and which jobs the store gets. `convert` and the
//! daemon both go through here.

use std::path::{Path, PathBuf};

use super::store::{JobId, Store, DEFAULT_PRIORITY};
use crate::media::convert::{existing_output, plan_outputs, Existing, SourceIdentity};
use crate::media::probe::Track;
use crate::media::scan::Found;

/// A track with its output, checked against what sits there.
#[derive(Debug, Clone)]
pub struct PlannedJob {
    pub track: Track,
    pub output: PathBuf,
    /// (size, mtime) of the source as it was read.
    pub source: (u64, i64),
    /// Our FLAC of this very source is there already.
    pub up_to_date: bool,
}

/// Reads each source's identity and the FLAC at its output (so this touches
/// the drive: on the box it runs on a worker thread).
pub fn plan_jobs(found: &[Found], output_dir: Option<&Path>) -> Vec<PlannedJob> {
    let outputs = plan_outputs(found, output_dir);
    found
        .iter()
        .zip(outputs)
        .map(|(f, output)| {
            let identity = SourceIdentity::of(&f.track).ok();
            let up_to_date = identity
                .as_ref()
                .is_some_and(|i| existing_output(i, &output) == Existing::UpToDate);
            PlannedJob {
                track: f.track.clone(),
                output,
                source: identity.map_or((0, 0), |i| (i.size, i.mtime)),
                up_to_date,
            }
        })
        .collect()
}

/// What became of a planned job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    Queued(JobId),
    /// Its FLAC is up to date: nothing to do.
    UpToDate,
    /// The drive has a job for this track from an earlier visit.
    Known,
    Failed(String),
}

/// Adds the jobs that are needed, in order; touches only the store.
pub fn add_planned(store: &mut Store, planned: &[PlannedJob], drive: Option<i64>) -> Vec<Added> {
    planned
        .iter()
        .map(|p| {
            if let Some(d) = drive {
                match store.find_job(d, &p.track.path, p.track.stream_index) {
                    Ok(Some(_)) => return Added::Known,
                    Ok(None) => {}
                    Err(e) => return Added::Failed(e.to_string()),
                }
            }
            if p.up_to_date {
                return Added::UpToDate;
            }
            match store.add_job_of_source(&p.track, &p.output, drive, DEFAULT_PRIORITY, p.source) {
                Ok(id) => Added::Queued(id),
                Err(e) => Added::Failed(e.to_string()),
            }
        })
        .collect()
}
