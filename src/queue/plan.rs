//! From scanned tracks to jobs: where each FLAC goes, whether an up-to-date
//! one is there already, and which jobs the store gets. `convert` and the
//! daemon both go through here.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::store::{Job, JobId, JobState, Store, DEFAULT_PRIORITY};
use crate::media::convert::FailureKind;
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
    /// What sits at the output now.
    pub existing: Existing,
}

impl PlannedJob {
    /// Our FLAC of this very source is there already.
    pub fn up_to_date(&self) -> bool {
        self.existing == Existing::UpToDate
    }
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
            let existing = identity
                .as_ref()
                .map_or(Existing::Nothing, |i| existing_output(i, &output));
            PlannedJob {
                track: f.track.clone(),
                output,
                source: identity.map_or((0, 0), |i| (i.stamp.size, i.stamp.mtime)),
                existing,
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
    /// The drive has a job for this very source from an earlier visit.
    Known,
    /// The drive had a job for this track, but the source changed since or
    /// its finished FLAC is gone or no longer ours for this source: a new
    /// job made from this scan's probe (the old one, if waiting, is cancelled).
    Renewed {
        old: JobId,
        new: JobId,
        why: String,
    },
    Failed(String),
}

/// Adds the jobs that are needed, in order; touches only the store. A job
/// from an earlier visit is trusted only while the source is the file it
/// was probed from (see `SourceStamp`) and, once done, while its FLAC is there.
pub fn add_planned(store: &mut Store, planned: &[PlannedJob], drive: Option<i64>) -> Vec<Added> {
    planned
        .iter()
        .map(|p| {
            let known = match drive {
                Some(d) => match store.find_job(d, &p.track.path, p.track.stream_index) {
                    Ok(known) => known,
                    Err(e) => return Added::Failed(e.to_string()),
                },
                None => None,
            };
            let renewal = match &known {
                None => None,
                Some(job) => match renewal_reason(job, p) {
                    None => return Added::Known,
                    Some(why) => Some((job, why)),
                },
            };
            if p.up_to_date() {
                // Written since (by `dtsflac convert` on a computer, say).
                if let Some((job, _)) = renewal {
                    cancel_waiting(store, job, "its FLAC is already up to date");
                }
                return Added::UpToDate;
            }
            let new = match store.add_job_of_source(
                &p.track,
                &p.output,
                drive,
                DEFAULT_PRIORITY,
                p.source,
            ) {
                Ok(id) => id,
                Err(e) => return Added::Failed(e.to_string()),
            };
            match renewal {
                None => Added::Queued(new),
                Some((job, why)) => {
                    cancel_waiting(store, job, &format!("{why}: job {new} converts it anew"));
                    Added::Renewed {
                        old: job.id,
                        new,
                        why,
                    }
                }
            }
        })
        .collect()
}

/// Why the drive's earlier job for this track no longer stands, if it does not.
fn renewal_reason(job: &Job, p: &PlannedJob) -> Option<String> {
    let changed = match (&job.track.probed, &p.track.probed) {
        (Some(then), Some(now)) => now.change_since(then),
        // A job from before stamps existed: size and time are all it knows.
        (None, Some(now)) => ((job.source.0, job.source.1) != (now.size, now.mtime))
            .then(|| "the source changed".to_string()),
        (_, None) => None,
    };
    if let Some(change) = changed {
        return Some(format!(
            "the source changed since it was scanned ({change})"
        ));
    }
    match (job.state, &p.existing) {
        (JobState::Done, Existing::Nothing) => Some("its FLAC was deleted".into()),
        (JobState::Done, Existing::Stale) => {
            Some("its FLAC no longer matches the source it was made from".into())
        }
        _ => None,
    }
}

/// A waiting job of a source that changed must never run with the old probe.
fn cancel_waiting(store: &mut Store, job: &Job, why: &str) {
    let waiting = [JobState::Queued, JobState::Interrupted];
    if waiting.contains(&job.state) {
        let _ = store.transition(job.id, &waiting, JobState::Cancelled, Some(why));
    }
}

/// Carried-over jobs of a drive that a complete scan did not find again
/// (deleted, moved, or no longer a regular file inside the drive) fail with
/// the reason, instead of running on whatever the path now holds.
pub fn fail_missing(store: &mut Store, drive: i64, planned: &[PlannedJob]) -> Vec<JobId> {
    let found: HashSet<(&Path, u32)> = planned
        .iter()
        .map(|p| (p.track.path.as_path(), p.track.stream_index))
        .collect();
    let waiting = [JobState::Queued, JobState::Interrupted];
    let missing: Vec<Job> = store
        .jobs_of_drive_in(drive, &waiting)
        .unwrap_or_default()
        .into_iter()
        .filter(|j| !found.contains(&(j.track.path.as_path(), j.track.stream_index)))
        .collect();
    let mut failed = Vec::new();
    for job in missing {
        let reason = format!(
            "{} is no longer on the drive as a regular file (deleted, moved, or replaced by a link or a special file); nothing was converted",
            job.track.path.display()
        );
        if store
            .fail_waiting(job.id, &waiting, FailureKind::Input, &reason)
            .is_ok()
        {
            failed.push(job.id);
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::convert::test_track;
    use crate::media::stamp::SourceStamp;

    struct Drive {
        dir: tempfile::TempDir,
        store: Store,
        id: i64,
    }

    impl Drive {
        fn new() -> Drive {
            let dir = tempfile::tempdir().unwrap();
            let mut store = Store::open(&dir.path().join("state.db")).unwrap();
            let id = store.upsert_drive("1234-ABCD", "FILMS", "exfat").unwrap();
            Drive { dir, store, id }
        }

        /// Writes the source and plans its job the way a scan does.
        fn plan(&self, name: &str, content: &[u8], existing: Existing) -> PlannedJob {
            let path = self.dir.path().join(name);
            if std::fs::read(&path).ok().as_deref() != Some(content) {
                std::fs::write(&path, content).unwrap();
            }
            let mut track = test_track(path.to_str().unwrap(), "5.1", 6);
            let stamp = SourceStamp::of_path(&path).unwrap();
            track.probed = Some(stamp.clone());
            PlannedJob {
                track,
                output: path.with_extension("flac"),
                source: (stamp.size, stamp.mtime),
                existing,
            }
        }

        fn add(&mut self, p: &PlannedJob) -> Added {
            add_planned(&mut self.store, std::slice::from_ref(p), Some(self.id)).remove(0)
        }

        fn state(&self, id: JobId) -> JobState {
            self.store.job(id).unwrap().state
        }

        fn finish(&mut self, id: JobId) {
            self.store
                .transition(id, &[JobState::Queued], JobState::Done, None)
                .unwrap();
        }
    }

    fn queued(a: Added) -> JobId {
        match a {
            Added::Queued(id) => id,
            other => panic!("expected a new job, got {other:?}"),
        }
    }

    #[test]
    fn an_unchanged_source_keeps_its_job_a_changed_one_gets_a_new_probe() {
        let mut d = Drive::new();
        let first = d.plan("Film.dts", b"the first film", Existing::Nothing);
        let id = queued(d.add(&first));
        // Next visit, nothing changed: the waiting job stands.
        assert_eq!(d.add(&first), Added::Known);
        assert_eq!(d.state(id), JobState::Queued);

        // The film was replaced by another one between visits.
        let second = d.plan("Film.dts", b"a different, longer film", Existing::Nothing);
        let Added::Renewed { old, new, why } = d.add(&second) else {
            panic!("the changed source must get a new job");
        };
        assert_eq!(old, id);
        assert!(why.contains("its size went from 14 to 24 bytes"), "{why}");
        assert_eq!(d.state(id), JobState::Cancelled, "never run the old probe");
        let renewed = d.store.job(new).unwrap();
        assert_eq!(renewed.state, JobState::Queued);
        assert_eq!(renewed.track.probed, second.track.probed);
        assert_eq!(d.add(&second), Added::Known);
    }

    #[test]
    fn a_finished_flac_that_was_deleted_or_is_stale_is_written_again() {
        let mut d = Drive::new();
        let p = d.plan("Film.dts", b"film", Existing::Nothing);
        let id = queued(d.add(&p));
        d.finish(id);
        let present = d.plan("Film.dts", b"film", Existing::UpToDate);
        assert_eq!(d.add(&present), Added::Known);
        let foreign = d.plan("Film.dts", b"film", Existing::Foreign);
        assert_eq!(
            d.add(&foreign),
            Added::Known,
            "never replace someone else's file"
        );

        let deleted = d.plan("Film.dts", b"film", Existing::Nothing);
        let Added::Renewed { old, new, why } = d.add(&deleted) else {
            panic!("a deleted FLAC must be written again");
        };
        assert_eq!((old, why.as_str()), (id, "its FLAC was deleted"));
        assert_eq!(d.state(id), JobState::Done, "history stays");
        d.finish(new);
        let stale = d.plan("Film.dts", b"film", Existing::Stale);
        assert!(matches!(d.add(&stale), Added::Renewed { .. }));
    }

    #[test]
    fn carried_over_jobs_whose_source_is_gone_fail_with_the_reason() {
        let mut d = Drive::new();
        let kept = d.plan("Kept.dts", b"kept", Existing::Nothing);
        let gone = d.plan("Gone.dts", b"gone", Existing::Nothing);
        let kept_id = queued(d.add(&kept));
        let gone_id = queued(d.add(&gone));
        let failed = fail_missing(&mut d.store, d.id, std::slice::from_ref(&kept));
        assert_eq!(failed, vec![gone_id]);
        assert_eq!(d.state(kept_id), JobState::Queued);
        let job = d.store.job(gone_id).unwrap();
        assert_eq!(job.state, JobState::Failed);
        let error = job.error.unwrap();
        assert!(
            error.contains("Gone.dts is no longer on the drive"),
            "{error}"
        );
    }
}
