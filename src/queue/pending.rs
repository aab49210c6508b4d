//! Job changes the store holds in memory while the state directory (the SD
//! card) cannot take them: full, read-only, or failing. A job is never
//! failed for that — its FLAC is on its drive already — so the box goes on
//! converting and writes what it held once the directory can take it again.
//!
//! Holding works inside SQLite, so every query of the store keeps its
//! meaning: the changed job rows and their history rows go to two tables of
//! the connection's in-memory `temp` schema, and two `temp` views named
//! `jobs` and `history` (which shadow the tables of the file) show the file's
//! rows with the held ones over them. Triggers on the views turn the store's
//! `UPDATE jobs` and `INSERT INTO history` into writes of the held tables; a
//! new job is refused (it would need an id from the file). `write_held`
//! copies the held rows into the file in one transaction and removes the
//! overlay.

use std::path::Path;

use rusqlite::{Connection, ErrorCode};

/// Why the state directory cannot be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateDirFault {
    Full,
    ReadOnly,
    /// Some other error of the card: the message of the error.
    Failing(String),
}

/// At most this many held history rows: beyond them no job starts (the
/// running ones still finish and are held), so memory stays bounded however
/// long the card stays full.
pub const MOST_HELD: usize = 2000;

/// The reason for `error` when it is one of the state directory `dir`.
/// SQLite says "disk I/O error" for a card the kernel made read-only after
/// an error, so the directory itself is asked what is wrong.
pub fn fault_of(error: &rusqlite::Error, dir: &Path) -> Option<StateDirFault> {
    let rusqlite::Error::SqliteFailure(e, _) = error else {
        return None;
    };
    match e.code {
        ErrorCode::DiskFull => Some(StateDirFault::Full),
        ErrorCode::ReadOnly => Some(StateDirFault::ReadOnly),
        ErrorCode::SystemIoFailure | ErrorCode::CannotOpen => Some(match probe_dir(dir) {
            Err(e) if e.raw_os_error() == Some(libc::EROFS) => StateDirFault::ReadOnly,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => StateDirFault::Full,
            _ => StateDirFault::Failing(error.to_string()),
        }),
        _ => None,
    }
}

/// Creates and removes a small file in `dir`: what the kernel says about it.
fn probe_dir(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(".dtsflac-write-check");
    let written = std::fs::write(&probe, b"x");
    let _ = std::fs::remove_file(&probe);
    written
}

impl StateDirFault {
    /// What the panel, the page and `/healthz` say, with what to do.
    pub fn problem(&self, dir: &Path) -> String {
        let dir = dir.display();
        match self {
            StateDirFault::Full => format!(
                "the state directory {dir} is full: free space on the SD card; conversions go \
                 on and the job states are recorded once there is room"
            ),
            StateDirFault::ReadOnly => format!(
                "the state directory {dir} is read-only: the SD card is locked or failing \
                 (check it, or replace it); conversions go on, but job states are recorded \
                 only once it is writable"
            ),
            StateDirFault::Failing(e) => format!(
                "the state directory {dir} cannot be written ({e}): check the SD card; \
                 conversions go on, but job states are recorded only once it is writable"
            ),
        }
    }
}

/// The columns of a table of the file, in order.
fn columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(&format!("PRAGMA main.table_info({table})"))?;
    let names = stmt.query_map([], |r| r.get::<_, String>(1))?;
    names.collect()
}

/// Starts holding: from now on job changes and history rows stay in memory.
pub fn hold(conn: &Connection) -> rusqlite::Result<()> {
    let jobs = columns(conn, "jobs")?;
    let history = columns(conn, "history")?;
    let rest = |cols: &[String]| cols[1..].join(", ");
    let new = |cols: &[String]| {
        cols.iter()
            .map(|c| format!("NEW.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    conn.execute_batch(&format!(
        "CREATE TEMP TABLE held_jobs (id INTEGER PRIMARY KEY, {jobs_rest});
         CREATE TEMP TABLE held_history (id INTEGER PRIMARY KEY, {history_rest});
         CREATE TEMP VIEW jobs AS
             SELECT * FROM main.jobs WHERE id NOT IN (SELECT id FROM temp.held_jobs)
             UNION ALL SELECT * FROM temp.held_jobs;
         CREATE TEMP VIEW history AS
             SELECT * FROM main.history UNION ALL SELECT * FROM temp.held_history;
         CREATE TEMP TRIGGER jobs_held INSTEAD OF UPDATE ON jobs BEGIN
             INSERT OR REPLACE INTO temp.held_jobs ({jobs_all}) VALUES ({jobs_new});
         END;
         CREATE TEMP TRIGGER jobs_not_added INSTEAD OF INSERT ON jobs BEGIN
             SELECT RAISE(ABORT, 'no new job is added while the state directory cannot be written');
         END;
         -- The ids go on from the file's, so the history keeps its order
         -- and is written back under the ids it was shown with.
         CREATE TEMP TRIGGER history_held INSTEAD OF INSERT ON history BEGIN
             INSERT INTO temp.held_history ({history_all}) VALUES (
                 (SELECT MAX(id) + 1 FROM (SELECT COALESCE(MAX(id), 0) AS id FROM main.history
                                           UNION ALL SELECT MAX(id) FROM temp.held_history)),
                 {history_new_rest});
         END;",
        jobs_rest = rest(&jobs),
        history_rest = rest(&history),
        jobs_all = jobs.join(", "),
        jobs_new = new(&jobs),
        history_all = history.join(", "),
        history_new_rest = new(&history[1..]),
    ))
}

/// How many history rows are held.
pub fn held_rows(conn: &Connection) -> rusqlite::Result<usize> {
    conn.query_row("SELECT COUNT(*) FROM temp.held_history", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n as usize)
}

/// Writes the held rows into the file in one transaction, then stops
/// holding. On an error nothing was written and the rows stay held.
pub fn write_held(conn: &mut Connection) -> rusqlite::Result<()> {
    let jobs = columns(conn, "jobs")?;
    let rest = jobs[1..].join(", ");
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(&format!(
        "UPDATE main.jobs SET ({rest}) = (SELECT {rest} FROM temp.held_jobs h WHERE h.id = main.jobs.id)
             WHERE id IN (SELECT id FROM temp.held_jobs);
         INSERT INTO main.history SELECT * FROM temp.held_history ORDER BY id;"
    ))?;
    tx.commit()?;
    conn.execute_batch(
        "DROP VIEW temp.jobs; DROP VIEW temp.history;
         DROP TABLE temp.held_jobs; DROP TABLE temp.held_history;",
    )
}
