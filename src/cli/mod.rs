//! Command-line front ends. Each returns the process exit code:
//! 0 all well, 1 something failed (each failure named on stderr), 2 usage.

pub mod bench;
pub mod check;
pub mod convert;
pub mod doctor;
pub mod run;
pub mod scan;

use dtsflac::media::tools::{ToolError, Tools};

/// Finds a capable FFmpeg or prints how to get one.
pub fn tools_or_explain() -> Option<Tools> {
    match Tools::locate_capable() {
        Ok(t) => Some(t),
        Err(e @ ToolError::Missing(_)) | Err(e @ ToolError::Incapable(..)) => {
            eprintln!("dtsflac: {e}");
            None
        }
    }
}

pub fn format_duration(seconds: f64) -> String {
    // Test clips and jingles are shorter than a second: show tenths there.
    if seconds < 10.0 {
        return format!("0:{:05.2}", seconds.max(0.0));
    }
    let s = seconds.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}
