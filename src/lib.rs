//! dtsflac: turns DTS audio on USB drives into exact, verified FLAC files.
//!
//! `media` is the engine (probe, scan, convert), `queue` keeps jobs in SQLite
//! and runs them on worker slots. See `DESIGN.md` in the shared material for
//! the whole box.

pub mod media;
pub mod queue;
