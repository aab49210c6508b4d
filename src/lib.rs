//! dtsflac: turns DTS audio on USB drives into exact, verified FLAC files.
//! `ARCHITECTURE.md` at the repository root is the map.
//!
//! - `media`: the engine (probe, scan, convert); knows nothing of the daemon.
//! - `queue`: jobs in SQLite, planned from scans and run on worker slots.
//! - `usb`: which block devices are drives, their file systems, mounting.
//! - `hw`: the board (model, temperature, throttling, tuning, file-system stats).
//! - `daemon`: the supervisor that owns the box's state, and its workers.
//! - `view`: what the box shows and what each state allows (pure).
//! - `panel`: the OLED and the buttons; `web`: the page and the API.
//! - `config`, `logging`, `notify`, `fmt`: settings, the log, webhooks,
//!   how numbers and times are written.

pub mod config;
pub mod daemon;
pub mod fmt;
pub mod hw;
pub mod logging;
pub mod media;
pub mod notify;
pub mod panel;
pub mod queue;
pub mod usb;
pub mod view;
pub mod web;
