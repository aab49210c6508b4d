//! Command-line front ends. Each returns the process exit code:
//! 0 all well, 1 something failed (each failure named on stderr), 2 usage.

pub mod bdimage;
pub mod bench;
pub mod check;
pub mod convert;
pub mod doctor;
pub mod run;
pub mod scan;
pub mod scanbench;

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
