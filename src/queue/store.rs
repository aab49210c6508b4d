//! The job store: one SQLite file (bundled SQLite, WAL) that survives power
//! cuts. Only state transitions are written — never progress ticks — because
//! the box runs from an SD card that wears out.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::pending::{self, StateDirFault};
use serde::{Deserialize, Serialize};

use crate::media::convert::{ConvertResult, FailureKind};
use crate::media::probe::Track;

/// Job states; the names are part of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Paused,
    Done,
    Failed,
    Cancelled,
    Interrupted,
}

impl JobState {
    pub const ALL: [JobState; 7] = [
        JobState::Queued,
        JobState::Running,
        JobState::Paused,
        JobState::Done,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Paused => "paused",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// States a job never leaves by itself.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Cancelled
        )
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub type JobId = i64;

/// What the whole store holds, beyond the jobs the snapshot lists.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct StoreSummary {
    /// Jobs by state, over the whole history.
    pub jobs: BTreeMap<JobState, usize>,
    /// Sums over every finished (`done`) job.
    pub done_audio_seconds: f64,
    pub done_input_bytes: u64,
    pub done_output_bytes: u64,
}

impl StoreSummary {
    pub fn count(&self, state: JobState) -> usize {
        self.jobs.get(&state).copied().unwrap_or(0)
    }
}

/// One state change of a job: (at, from, to, note).
pub type HistoryEntry = (i64, Option<String>, String, Option<String>);

/// Priority 1 is the most urgent, 10 the least; new jobs get 5.
pub const DEFAULT_PRIORITY: u8 = 5;

#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: JobId,
    pub drive_id: Option<i64>,
    pub track: Track,
    pub output: PathBuf,
    /// (size, mtime) of the source when the job was made.
    pub source: (u64, i64),
    pub state: JobState,
    pub priority: u8,
    pub attempts: u32,
    pub error: Option<String>,
    pub error_kind: Option<FailureKind>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub result: Option<ConvertResult>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job store {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("job {0} does not exist")]
    NoSuchJob(JobId),
    #[error("job {id} is {from}; it cannot become {to}")]
    BadTransition {
        id: JobId,
        from: JobState,
        to: JobState,
    },
    #[error("job store holds unreadable data: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Migrations in order; the database's `user_version` says how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE drives (
    id          INTEGER PRIMARY KEY,
    fs_uuid     TEXT NOT NULL,
    label       TEXT NOT NULL DEFAULT '',
    fs_type     TEXT NOT NULL DEFAULT '',
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    UNIQUE (fs_uuid, label)
);
CREATE TABLE jobs (
    id              INTEGER PRIMARY KEY,
    drive_id        INTEGER REFERENCES drives(id),
    source_path     TEXT NOT NULL,
    source_size     INTEGER NOT NULL,
    source_mtime    INTEGER NOT NULL,
    stream_index    INTEGER NOT NULL,
    track_json      TEXT NOT NULL,
    output_path     TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN
                      ('queued','running','paused','done','failed','cancelled','interrupted')),
    priority        INTEGER NOT NULL DEFAULT 5 CHECK (priority BETWEEN 1 AND 10),
    attempts        INTEGER NOT NULL DEFAULT 0,
    error           TEXT,
    error_kind      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER,
    duration_seconds REAL,
    input_bytes     INTEGER,
    output_bytes    INTEGER,
    md5             TEXT,
    speed           REAL,
    lossless        INTEGER,
    result_json     TEXT
);
CREATE INDEX jobs_by_state ON jobs (state, priority, id);
CREATE INDEX jobs_by_drive ON jobs (drive_id, state);
CREATE TABLE history (
    id          INTEGER PRIMARY KEY,
    job_id      INTEGER NOT NULL REFERENCES jobs(id),
    at          INTEGER NOT NULL,
    from_state  TEXT,
    to_state    TEXT NOT NULL,
    note        TEXT
);
CREATE INDEX history_by_job ON history (job_id, id);
"#,
    r#"
-- find_job per scanned track: without it, a drive of many files is quadratic.
CREATE INDEX jobs_by_source ON jobs (drive_id, source_path, stream_index);
"#,
];

/// The history note of a job that was running when the box stopped.
const CRASH_NOTE: &str = "the process stopped while this job ran";

pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Set while job changes are held in memory (see `pending`), and why.
    held: Option<StateDirFault>,
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    /// Opens (or creates) the store. A store that exists on a state
    /// directory that cannot be written (a card gone read-only, or full) is
    /// opened as it is, read-only, with every change held in memory: the box
    /// starts, says so, and converts what it knows.
    pub fn open(path: &Path) -> Result<Store> {
        match Self::open_writable(path) {
            Err(StoreError::Sqlite { source, .. })
                if path.is_file() && pending::fault_of(&source, Self::dir_of(path)).is_some() =>
            {
                let fault = pending::fault_of(&source, Self::dir_of(path)).expect("checked");
                Self::open_unwritable(path, fault)
            }
            other => other,
        }
    }

    fn dir_of(path: &Path) -> &Path {
        path.parent().unwrap_or(Path::new("."))
    }

    fn open_unwritable(path: &Path, fault: StateDirFault) -> Result<Store> {
        let wrap = |source| StoreError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        // `immutable`: SQLite cannot make the WAL's shared-memory file on a
        // read-only card, and nothing else writes this file meanwhile.
        let uri = format!("file:{}?immutable=1", uri_path(path));
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(uri, flags).map_err(wrap)?;
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(wrap)?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
            held: Some(fault.clone()),
        };
        if store.schema_version()? != MIGRATIONS.len() {
            return Err(StoreError::Corrupt(format!(
                "{} was written by another version of dtsflac and cannot be upgraded on a card that cannot be written: {}",
                path.display(),
                fault.problem(Self::dir_of(path))
            )));
        }
        pending::hold(&store.conn).map_err(wrap)?;
        crate::logging::log(&format!(
            "{}; the job store is opened read-only and job changes are held in memory until the box restarts",
            fault.problem(Self::dir_of(path))
        ));
        Ok(store)
    }

    fn open_writable(path: &Path) -> Result<Store> {
        let wrap = |source| StoreError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open(path).map_err(wrap)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(wrap)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(wrap)?;
        // NORMAL in WAL mode is durable across application crashes and only
        // risks the last transition on a power cut, which recovery redoes.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(wrap)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(wrap)?;
        // Held job changes live in the temp schema: never on the card.
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(wrap)?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
            held: None,
        };
        store.migrate()?;
        Ok(store)
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.display().to_string(),
            source,
        }
    }

    fn state_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Runs a write. One that fails because the state directory cannot take
    /// it starts holding job changes in memory (`pending`) and runs again
    /// there, so no job fails for it. Held rows go first whenever a write
    /// comes, so the file gets every change in order.
    fn write<T>(&mut self, f: impl Fn(&mut Connection) -> rusqlite::Result<T>) -> Result<T> {
        self.write_held();
        match f(&mut self.conn) {
            Err(e) if self.held.is_none() => {
                let Some(fault) = pending::fault_of(&e, self.state_dir()) else {
                    return Err(self.err(e));
                };
                pending::hold(&self.conn).map_err(|e| self.err(e))?;
                crate::logging::log(&format!(
                    "{}; job changes are held in memory until then",
                    fault.problem(self.state_dir())
                ));
                self.held = Some(fault);
                f(&mut self.conn).map_err(|e| self.err(e))
            }
            result => result.map_err(|e| self.err(e)),
        }
    }

    /// Writes the held job changes if the state directory takes them now.
    /// Returns whether none are held any more.
    pub fn write_held(&mut self) -> bool {
        if self.held.is_none() {
            return true;
        }
        match pending::write_held(&mut self.conn) {
            Ok(()) => {
                crate::logging::log(
                    "the state directory can be written again: the held job changes are recorded",
                );
                self.held = None;
                true
            }
            Err(e) => {
                // The card may have gone from full to read-only meanwhile.
                if let Some(fault) = pending::fault_of(&e, self.state_dir()) {
                    self.held = Some(fault);
                }
                false
            }
        }
    }

    /// Why job changes are held in memory, with what the user can do.
    pub fn state_dir_problem(&self) -> Option<String> {
        self.held.as_ref().map(|f| f.problem(self.state_dir()))
    }

    pub fn schema_version(&self) -> Result<usize> {
        let v: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        Ok(v as usize)
    }

    fn migrate(&mut self) -> Result<()> {
        let current = self.schema_version()?;
        if current > MIGRATIONS.len() {
            return Err(StoreError::Corrupt(format!(
                "{} was written by a newer dtsflac (schema {current}); update dtsflac",
                self.path.display()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
            let tx = self.conn.transaction().map_err(|e| StoreError::Sqlite {
                path: String::new(),
                source: e,
            })?;
            tx.execute_batch(sql).map_err(|e| StoreError::Sqlite {
                path: String::new(),
                source: e,
            })?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(|e| StoreError::Sqlite {
                    path: String::new(),
                    source: e,
                })?;
            tx.commit().map_err(|e| StoreError::Sqlite {
                path: String::new(),
                source: e,
            })?;
        }
        Ok(())
    }

    /// Adds a job in state `queued` and returns its id.
    pub fn add_job(
        &mut self,
        track: &Track,
        output: &Path,
        drive_id: Option<i64>,
        priority: u8,
    ) -> Result<JobId> {
        let meta = crate::media::safe_open::open_regular(&track.path)
            .and_then(|f| f.metadata())
            .ok();
        let size = meta.as_ref().map_or(0, |m| m.len());
        let mtime = meta
            .as_ref()
            .map_or(0, std::os::unix::fs::MetadataExt::mtime);
        self.add_job_of_source(track, output, drive_id, priority, (size, mtime))
    }

    /// Adds a job for a source whose (size, mtime) was read already, so the
    /// store itself never touches a drive.
    pub fn add_job_of_source(
        &mut self,
        track: &Track,
        output: &Path,
        drive_id: Option<i64>,
        priority: u8,
        (size, mtime): (u64, i64),
    ) -> Result<JobId> {
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        let json = serde_json::to_string(track).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let t = now();
        self.write(|conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO jobs (drive_id, source_path, source_size, source_mtime, stream_index, track_json,
                                   output_path, state, priority, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', ?8, ?9, ?9)",
                params![
                    drive_id,
                    track.path.to_string_lossy(),
                    size,
                    mtime,
                    track.stream_index,
                    json,
                    output.to_string_lossy(),
                    priority.clamp(1, 10),
                    t
                ],
            )?;
            let id = tx.last_insert_rowid();
            tx.execute("INSERT INTO history (job_id, at, from_state, to_state) VALUES (?1, ?2, NULL, 'queued')", params![id, t])?;
            tx.commit()?;
            Ok(id)
        })
    }

    fn row_to_job(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Job, String)> {
        let track_json: String = r.get("track_json")?;
        let state: String = r.get("state")?;
        let error_kind: Option<String> = r.get("error_kind")?;
        let result_json: Option<String> = r.get("result_json")?;
        let job = Job {
            id: r.get("id")?,
            drive_id: r.get("drive_id")?,
            track: serde_json::from_str(&track_json).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?,
            output: PathBuf::from(r.get::<_, String>("output_path")?),
            source: (
                r.get::<_, i64>("source_size")?.max(0) as u64,
                r.get("source_mtime")?,
            ),
            state: JobState::parse(&state).unwrap_or(JobState::Failed),
            priority: r.get::<_, i64>("priority")? as u8,
            attempts: r.get::<_, i64>("attempts")? as u32,
            error: r.get("error")?,
            error_kind: error_kind
                .and_then(|k| serde_json::from_value(serde_json::Value::String(k)).ok()),
            created_at: r.get("created_at")?,
            started_at: r.get("started_at")?,
            finished_at: r.get("finished_at")?,
            result: result_json.and_then(|j| serde_json::from_str(&j).ok()),
        };
        Ok((job, state))
    }

    pub fn job(&self, id: JobId) -> Result<Job> {
        self.conn
            .query_row("SELECT * FROM jobs WHERE id = ?1", [id], |r| {
                Self::row_to_job(r).map(|(j, _)| j)
            })
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or(StoreError::NoSuchJob(id))
    }

    pub fn jobs(&self) -> Result<Vec<Job>> {
        let mut stmt = self
            .conn
            .prepare("SELECT * FROM jobs ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Self::row_to_job(r).map(|(j, _)| j))
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    pub fn count_in_state(&self, state: JobState) -> Result<usize> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM jobs WHERE state = ?1",
                [state.as_str()],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as usize)
            .map_err(|e| self.err(e))
    }

    /// Moves a job from one of `from` to `to` in one transaction, with a
    /// history row. Returns the state it was in.
    pub fn transition(
        &mut self,
        id: JobId,
        from: &[JobState],
        to: JobState,
        note: Option<&str>,
    ) -> Result<JobState> {
        let current = self.job(id)?.state;
        if !from.contains(&current) {
            return Err(StoreError::BadTransition {
                id,
                from: current,
                to,
            });
        }
        let t = now();
        self.write(|conn| {
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE jobs SET state = ?2, updated_at = ?3,
                 started_at = CASE WHEN ?2 = 'running' AND ?4 = 'queued' THEN ?3 ELSE started_at END,
                 finished_at = CASE WHEN ?2 IN ('done','failed','cancelled') THEN ?3 ELSE NULL END,
                 error = CASE WHEN ?2 IN ('queued','running') THEN NULL ELSE error END,
                 error_kind = CASE WHEN ?2 IN ('queued','running') THEN NULL ELSE error_kind END,
                 attempts = CASE WHEN ?2 = 'running' AND ?4 = 'queued' THEN attempts + 1 ELSE attempts END
             WHERE id = ?1",
            params![id, to.as_str(), t, current.as_str()],
        )?;
        tx.execute(
            "INSERT INTO history (job_id, at, from_state, to_state, note) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, t, current.as_str(), to.as_str(), note],
        )?;
        tx.commit()
        })?;
        Ok(current)
    }

    /// Claims the most urgent queued job (lowest priority number, then oldest)
    /// and marks it running.
    /// With `drives`, only jobs without a drive or on one of those drives
    /// (the ones plugged in) are considered.
    pub fn claim_next(&mut self, drives: Option<&HashSet<i64>>) -> Result<Option<Job>> {
        if self.holds_too_much() {
            return Ok(None);
        }
        // Only the first job that may run is read: a drive with tens of
        // thousands of queued jobs must not make every claim read them all.
        let allowed = drives.map(|d| {
            let ids: Vec<String> = d.iter().map(i64::to_string).collect();
            ids.join(",")
        });
        let sql = match &allowed {
            None => "SELECT id FROM jobs WHERE state = 'queued' ORDER BY priority, id LIMIT 1"
                .to_string(),
            Some(ids) => format!(
                "SELECT id FROM jobs WHERE state = 'queued' AND (drive_id IS NULL OR drive_id IN ({ids}))
                 ORDER BY priority, id LIMIT 1"
            ),
        };
        let next: Option<JobId> = self
            .conn
            .query_row(&sql, [], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?;
        let Some(id) = next else { return Ok(None) };
        self.transition(id, &[JobState::Queued], JobState::Running, None)?;
        self.job(id).map(Some)
    }

    /// While changes are held, no job starts once `pending::MOST_HELD` are.
    fn holds_too_much(&self) -> bool {
        self.held.is_some()
            && pending::held_rows(&self.conn).map_or(true, |n| n >= pending::MOST_HELD)
    }

    pub fn record_failure(
        &mut self,
        id: JobId,
        to: JobState,
        kind: FailureKind,
        message: &str,
    ) -> Result<()> {
        self.end_with_error(
            id,
            &[JobState::Running, JobState::Paused],
            to,
            kind,
            message,
        )
    }

    /// A job that never started fails (a source gone between visits, say).
    pub fn fail_waiting(
        &mut self,
        id: JobId,
        from: &[JobState],
        kind: FailureKind,
        message: &str,
    ) -> Result<()> {
        self.end_with_error(id, from, JobState::Failed, kind, message)
    }

    fn end_with_error(
        &mut self,
        id: JobId,
        from: &[JobState],
        to: JobState,
        kind: FailureKind,
        message: &str,
    ) -> Result<()> {
        self.transition(id, from, to, Some(message))?;
        let kind = serde_json::to_value(kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string));
        self.write(|conn| {
            conn.execute(
                "UPDATE jobs SET error = ?2, error_kind = ?3 WHERE id = ?1",
                params![id, message, kind],
            )
        })?;
        Ok(())
    }

    pub fn record_done(
        &mut self,
        id: JobId,
        result: &ConvertResult,
        note: Option<&str>,
    ) -> Result<()> {
        self.transition(
            id,
            &[JobState::Running, JobState::Paused, JobState::Queued],
            JobState::Done,
            note,
        )?;
        let json = serde_json::to_string(result).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.write(|conn| {
            conn.execute(
                "UPDATE jobs SET duration_seconds = ?2, input_bytes = ?3, output_bytes = ?4, md5 = ?5,
                                 speed = ?6, lossless = ?7, result_json = ?8 WHERE id = ?1",
                params![
                    id,
                    result.duration_seconds,
                    result.input_bytes as i64,
                    result.output_bytes as i64,
                    result.md5,
                    result.speed,
                    result.lossless,
                    json
                ],
            )
        })?;
        Ok(())
    }

    /// After a crash or power cut: jobs that were running or paused when the
    /// process died are marked interrupted so they can be run again.
    pub fn recover_after_crash(&mut self) -> Result<Vec<JobId>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM jobs WHERE state IN ('running','paused') ORDER BY id")
            .map_err(|e| self.err(e))?;
        let ids: Vec<JobId> = stmt
            .query_map([], |r| r.get(0))
            .map_err(|e| self.err(e))?
            .collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))?;
        drop(stmt);
        for id in &ids {
            self.transition(
                *id,
                &[JobState::Running, JobState::Paused],
                JobState::Interrupted,
                Some(CRASH_NOTE),
            )?;
        }
        Ok(ids)
    }

    /// Jobs that the box stopped under (a crash, a power cut) `limit` times
    /// or more end `failed`, so a stream that kills the daemon cannot keep
    /// it in a restart loop. Call after `recover_after_crash`.
    pub fn fail_crash_loops(&mut self, limit: u32) -> Result<Vec<JobId>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT jobs.id, COUNT(history.id) FROM jobs JOIN history ON history.job_id = jobs.id
                 WHERE jobs.state = 'interrupted' AND history.note = ?1
                 GROUP BY jobs.id ORDER BY jobs.id",
            )
            .map_err(|e| self.err(e))?;
        let counted: Vec<(JobId, i64)> = stmt
            .query_map([CRASH_NOTE], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?
            .collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))?;
        drop(stmt);
        let mut failed = Vec::new();
        for (id, crashes) in counted {
            if crashes < i64::from(limit.max(1)) {
                continue;
            }
            let reason = format!(
                "the box stopped {crashes} times while converting this track (a crash or a \
                 power cut), so it is not tried again; press Retry to try once more"
            );
            self.transition(
                id,
                &[JobState::Interrupted],
                JobState::Failed,
                Some(&reason),
            )?;
            self.write(|conn| {
                conn.execute(
                    "UPDATE jobs SET error = ?2 WHERE id = ?1",
                    params![id, reason],
                )
            })?;
            failed.push(id);
        }
        Ok(failed)
    }

    /// The state changes of one job, oldest first.
    pub fn history(&self, id: JobId) -> Result<Vec<HistoryEntry>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT at, from_state, to_state, note FROM history WHERE job_id = ?1 ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    fn query_jobs(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Job>> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params, |r| Self::row_to_job(r).map(|(j, _)| j))
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// What the status shows: every unfinished job and the newest
    /// `finished` finished ones, oldest first.
    pub fn jobs_for_view(&self, finished: usize) -> Result<Vec<Job>> {
        let mut jobs = self.query_jobs(
            "SELECT * FROM jobs WHERE state IN ('queued','running','paused','interrupted')",
            [],
        )?;
        jobs.extend(self.finished_jobs(None, finished)?);
        jobs.sort_by_key(|j| j.id);
        Ok(jobs)
    }

    /// Finished jobs (done, failed, cancelled), newest first, below `before`.
    pub fn finished_jobs(&self, before: Option<JobId>, limit: usize) -> Result<Vec<Job>> {
        self.query_jobs(
            "SELECT * FROM jobs WHERE state IN ('done','failed','cancelled') AND id < ?1
             ORDER BY id DESC LIMIT ?2",
            params![
                before.unwrap_or(JobId::MAX),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
        )
    }

    /// Counts by state and the sums over finished jobs, whatever the history's length.
    pub fn summary(&self) -> Result<StoreSummary> {
        let mut summary = StoreSummary::default();
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT state, COUNT(*),
                        SUM(COALESCE(duration_seconds, 0)), SUM(COALESCE(input_bytes, 0)),
                        SUM(COALESCE(output_bytes, 0))
                 FROM jobs GROUP BY state",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, f64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        for row in rows {
            let (state, n, seconds, input, output) = row.map_err(|e| self.err(e))?;
            let Some(state) = JobState::parse(&state) else {
                continue;
            };
            summary.jobs.insert(state, n as usize);
            if state == JobState::Done {
                summary.done_audio_seconds = seconds;
                summary.done_input_bytes = input.max(0) as u64;
                summary.done_output_bytes = output.max(0) as u64;
            }
        }
        Ok(summary)
    }

    /// The ids of every job in `state`, oldest first.
    pub fn ids_in_state(&self, state: JobState) -> Result<Vec<JobId>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM jobs WHERE state = ?1 ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([state.as_str()], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// Every job of a drive, oldest first.
    pub fn jobs_of_drive(&self, drive_id: i64) -> Result<Vec<Job>> {
        self.jobs_where("drive_id = ?1", params![drive_id])
    }

    /// The jobs of a drive in one of `states`, oldest first.
    pub fn jobs_of_drive_in(&self, drive_id: i64, states: &[JobState]) -> Result<Vec<Job>> {
        let mut jobs = Vec::new();
        for state in states {
            jobs.extend(self.jobs_where(
                "drive_id = ?1 AND state = ?2",
                params![drive_id, state.as_str()],
            )?);
        }
        jobs.sort_by_key(|j| j.id);
        Ok(jobs)
    }

    fn jobs_where(&self, condition: &str, args: impl rusqlite::Params) -> Result<Vec<Job>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT * FROM jobs WHERE {condition} ORDER BY id"))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(args, |r| Self::row_to_job(r).map(|(j, _)| j))
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// The latest job made for this track of this drive, if any.
    pub fn find_job(&self, drive_id: i64, source: &Path, stream_index: u32) -> Result<Option<Job>> {
        self.conn
            .query_row(
                "SELECT * FROM jobs WHERE drive_id = ?1 AND source_path = ?2 AND stream_index = ?3
                 ORDER BY id DESC LIMIT 1",
                params![drive_id, source.to_string_lossy(), stream_index],
                |r| Self::row_to_job(r).map(|(j, _)| j),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// A drive came back: its interrupted jobs go back in the queue.
    pub fn requeue_interrupted(&mut self, drive_id: i64) -> Result<Vec<JobId>> {
        let ids: Vec<JobId> = self
            .jobs_of_drive_in(drive_id, &[JobState::Interrupted])?
            .into_iter()
            .map(|j| j.id)
            .collect();
        for id in &ids {
            self.transition(
                *id,
                &[JobState::Interrupted],
                JobState::Queued,
                Some("the drive is back"),
            )?;
        }
        Ok(ids)
    }

    /// Records a drive by filesystem identity and returns its id.
    pub fn upsert_drive(&mut self, fs_uuid: &str, label: &str, fs_type: &str) -> Result<i64> {
        let t = now();
        let written = self.write(|conn| {
            conn.execute(
                "INSERT INTO drives (fs_uuid, label, fs_type, first_seen, last_seen) VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT (fs_uuid, label) DO UPDATE SET last_seen = ?4, fs_type = ?3",
                params![fs_uuid, label, fs_type, t],
            )
        });
        let known = self
            .conn
            .query_row(
                "SELECT id FROM drives WHERE fs_uuid = ?1 AND label = ?2",
                params![fs_uuid, label],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        match (written, known) {
            // While the state directory cannot be written, a drive seen
            // before is still served (its `last_seen` is not updated).
            (Ok(_), Some(id)) => Ok(id),
            (Err(_), Some(id)) if self.held.is_some() => Ok(id),
            (Err(e), _) => Err(e),
            (Ok(_), None) => Err(StoreError::Corrupt(format!(
                "drive {fs_uuid} \"{label}\" is not in the store after it was added"
            ))),
        }
    }
}

/// A path as SQLite's `file:` URIs want it: `%`, `?` and `#` escaped.
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '%' | '?' | '#' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::probe::{InputSpec, Profile};

    fn track(dir: &Path) -> Track {
        let path = dir.join("a.dts");
        std::fs::write(&path, b"x").unwrap();
        Track {
            path: path.clone(),
            stream_index: 0,
            track_number: 1,
            tracks_in_file: 1,
            profile: Profile::Core,
            lossless: false,
            channels: 6,
            channel_layout: "5.1(side)".into(),
            sample_rate: 48000,
            bits_per_sample: 24,
            duration_seconds: Some(1.0),
            language: None,
            title: None,
            album: None,
            artist: None,
            input: InputSpec::Probed,
            trim: None,
            probed: crate::media::stamp::SourceStamp::of_path(&path).ok(),
            chapters: Vec::new(),
        }
    }

    #[test]
    fn jobs_are_claimed_by_priority_and_transitions_are_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("jobs.db")).unwrap();
        let t = track(dir.path());
        let low = s.add_job(&t, Path::new("/x/low.flac"), None, 9).unwrap();
        let high = s.add_job(&t, Path::new("/x/high.flac"), None, 1).unwrap();
        assert_eq!(s.claim_next(None).unwrap().unwrap().id, high);
        assert_eq!(s.claim_next(None).unwrap().unwrap().id, low);
        assert!(s.claim_next(None).unwrap().is_none());
        s.record_failure(low, JobState::Failed, FailureKind::Input, "bad stream")
            .unwrap();
        let j = s.job(low).unwrap();
        assert_eq!(
            (j.state, j.attempts, j.error.as_deref()),
            (JobState::Failed, 1, Some("bad stream"))
        );
        let states: Vec<String> = s.history(low).unwrap().into_iter().map(|h| h.2).collect();
        assert_eq!(states, ["queued", "running", "failed"]);
        assert!(matches!(
            s.transition(low, &[JobState::Running], JobState::Done, None),
            Err(StoreError::BadTransition { .. })
        ));
    }

    #[test]
    fn a_reopened_store_marks_running_jobs_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("jobs.db");
        let id = {
            let mut s = Store::open(&db).unwrap();
            let id = s
                .add_job(&track(dir.path()), Path::new("/x/a.flac"), None, 5)
                .unwrap();
            s.claim_next(None).unwrap();
            id
        };
        let mut s = Store::open(&db).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len());
        assert_eq!(s.recover_after_crash().unwrap(), vec![id]);
        assert_eq!(s.job(id).unwrap().state, JobState::Interrupted);
    }

    #[test]
    fn a_job_the_box_keeps_dying_on_ends_failed_after_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("jobs.db");
        let mut s = Store::open(&db).unwrap();
        let id = s
            .add_job(&track(dir.path()), Path::new("/x/a.flac"), None, 5)
            .unwrap();
        for crash in 1..=3 {
            s.claim_next(None).unwrap();
            drop(s);
            // The daemon died mid-job; it starts again.
            s = Store::open(&db).unwrap();
            assert_eq!(s.recover_after_crash().unwrap(), vec![id]);
            let failed = s.fail_crash_loops(3).unwrap();
            let job = s.job(id).unwrap();
            if crash < 3 {
                assert!(failed.is_empty());
                assert_eq!(job.state, JobState::Interrupted);
                // The drive is back: the job runs again.
                s.transition(id, &[JobState::Interrupted], JobState::Queued, None)
                    .unwrap();
            } else {
                assert_eq!(failed, vec![id]);
                assert_eq!(job.state, JobState::Failed);
                assert!(job.error.unwrap().contains("stopped 3 times"));
            }
        }
    }

    /// SQLite's own page limit makes the file full, as a full SD card does:
    /// job changes go on in memory, reads show them, nothing fails, and
    /// once there is room they are in the file.
    #[test]
    fn changes_are_held_while_the_store_is_full_and_written_when_there_is_room() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("jobs.db");
        let mut s = Store::open(&db).unwrap();
        let t = track(dir.path());
        let ids: Vec<JobId> = (0..3)
            .map(|i| {
                s.add_job(&t, Path::new(&format!("/x/{i}.flac")), None, 5)
                    .unwrap()
            })
            .collect();
        let pages: i64 = s
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        s.conn.pragma_update(None, "max_page_count", pages).unwrap();
        // Pausing and resuming adds history rows until a page is needed.
        let running = s.claim_next(None).unwrap().unwrap().id;
        for _ in 0..500 {
            if s.state_dir_problem().is_some() {
                break;
            }
            s.transition(running, &[JobState::Running], JobState::Paused, None)
                .unwrap();
            s.transition(running, &[JobState::Paused], JobState::Running, None)
                .unwrap();
        }
        let problem = s.state_dir_problem().expect("the store filled up");
        assert!(problem.contains("is full: free space"), "{problem}");
        let result = ConvertResult {
            output: "/x/0.flac".into(),
            output_bytes: 1,
            input_bytes: 1,
            samples: 48000,
            duration_seconds: 1.0,
            md5: "0".repeat(32),
            lossless: false,
            warnings: Vec::new(),
            elapsed_seconds: 1.0,
            speed: 1.0,
            decode_lanes: 1,
            flac_threads: 1,
        };
        s.record_done(running, &result, None).unwrap();
        let next = s.claim_next(None).unwrap().unwrap().id;
        assert_ne!(next, running, "a held change counts for the next claim");
        s.record_failure(next, JobState::Failed, FailureKind::Input, "bad stream")
            .unwrap();
        assert_eq!(s.job(running).unwrap().state, JobState::Done);
        assert_eq!(s.count_in_state(JobState::Done).unwrap(), 1);
        assert_eq!(s.summary().unwrap().count(JobState::Queued), 1);
        assert_eq!(
            s.history(next).unwrap().last().map(|h| h.2.clone()),
            Some("failed".into())
        );
        let refused = s.add_job(&t, Path::new("/x/new.flac"), None, 5);
        assert!(
            refused.is_err_and(|e| e.to_string().contains("state directory")),
            "a new job needs the file"
        );
        // Room again: the next write (or the supervisor's timer) writes them.
        s.conn
            .pragma_update(None, "max_page_count", 1 << 30)
            .unwrap();
        assert!(s.write_held());
        assert_eq!(s.state_dir_problem(), None);
        drop(s);
        let s = Store::open(&db).unwrap();
        let states: Vec<JobState> = ids.iter().map(|id| s.job(*id).unwrap().state).collect();
        assert_eq!(states, [JobState::Done, JobState::Failed, JobState::Queued]);
        let last: Vec<String> = s
            .history(running)
            .unwrap()
            .into_iter()
            .map(|h| h.2)
            .collect();
        assert_eq!(last.last().map(String::as_str), Some("done"));
        assert_eq!(s.job(next).unwrap().error.as_deref(), Some("bad stream"));
    }
}
