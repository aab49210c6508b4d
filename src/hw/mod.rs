//! The hardware the box runs on: board facts and the conversion plan
//! derived from them.

pub mod board;
pub mod tuning;
