//! dtsflac: turns DTS audio on USB drives into exact, verified FLAC files.
//!
//! `media` is the engine (probe, scan, convert), `queue` keeps jobs in SQLite
//! and runs them on worker slots, `usb` finds and mounts drives, `app`
//! supervises the box and `web` serves its API. See `DESIGN.md` in the
//! shared material for the whole picture.

pub mod app;
pub mod config;
pub mod fmt;
pub mod hw;
pub mod logging;
pub mod media;
pub mod notify;
pub mod panel;
pub mod queue;
pub mod usb;
pub mod web;
