//! The daemon's log: one line per event on stderr (plain on a terminal, JSON
//! lines otherwise, for journald and log shippers) and in
//! `state_dir/dtsflac.log`, rotated at 1 MiB with three old files kept, so
//! the SD card never fills up.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

const ROTATE_AT: u64 = 1 << 20;
const KEEP: usize = 3;

struct LogFile {
    path: PathBuf,
    file: File,
    written: u64,
}

static FILE: OnceLock<Mutex<LogFile>> = OnceLock::new();

/// Starts writing the log file in `dir` as well as stderr.
pub fn init(dir: &Path) -> std::io::Result<()> {
    let path = dir.join("dtsflac.log");
    let file = OpenOptions::new().create(true).append(true).open(&path)?;
    let written = file.metadata()?.len();
    let _ = FILE.set(Mutex::new(LogFile {
        path,
        file,
        written,
    }));
    Ok(())
}

fn json_line(level: &str, message: &str) -> String {
    serde_json::json!({
        "ts": crate::fmt::timestamp(SystemTime::now()),
        "level": level,
        "msg": message,
    })
    .to_string()
}

/// One log line (stderr and, for the daemon, the rotated log file).
pub fn log(line: &str) {
    write("info", line);
}

pub fn write(level: &str, message: &str) {
    let line = json_line(level, message);
    if std::io::stderr().is_terminal() {
        eprintln!("dtsflac: {message}");
    } else {
        eprintln!("{line}");
    }
    let Some(file) = FILE.get() else { return };
    let mut f = file.lock().unwrap();
    if f.written >= ROTATE_AT {
        rotate(&f.path);
        if let Ok(new) = OpenOptions::new()
            .create(true)
            .append(true)
            .truncate(false)
            .open(&f.path)
        {
            f.file = new;
            f.written = 0;
        }
    }
    if writeln!(f.file, "{line}").is_ok() {
        f.written += line.len() as u64 + 1;
    }
}

fn rotate(path: &Path) {
    let numbered = |n: usize| PathBuf::from(format!("{}.{n}", path.display()));
    let _ = std::fs::remove_file(numbered(KEEP));
    for n in (1..KEEP).rev() {
        let _ = std::fs::rename(numbered(n), numbered(n + 1));
    }
    let _ = std::fs::rename(path, numbered(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json() {
        let v: serde_json::Value =
            serde_json::from_str(&json_line("info", "drive \"X\" in")).unwrap();
        assert_eq!(v["msg"], "drive \"X\" in");
        assert_eq!(v["level"], "info");
    }

    #[test]
    fn rotation_keeps_three_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("dtsflac.log");
        for i in 0..5 {
            std::fs::write(&p, format!("{i}")).unwrap();
            rotate(&p);
        }
        assert_eq!(
            std::fs::read_to_string(dir.path().join("dtsflac.log.1")).unwrap(),
            "4"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("dtsflac.log.3")).unwrap(),
            "2"
        );
        assert!(!dir.path().join("dtsflac.log.4").exists());
    }
}
