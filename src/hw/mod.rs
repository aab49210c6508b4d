//! The hardware the box runs on: board facts, the conversion plan
//! derived from them, and what the file systems say about themselves.

pub mod board;
pub mod fs;
pub mod tuning;
