//! What the page, the API and the panel can ask of the box, as data. The
//! supervisor applies each in one place (`Supervisor::apply`) and answers.

use crate::queue::store::{JobId, StoreError};
use crate::view::DriveState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Pause,
    Resume,
    Cancel(JobId),
    Retry(JobId),
    /// Every failed job back in the queue (the panel's long NEXT).
    RetryFailed,
    Eject(i64),
    /// Every drive that can be ejected (the panel's long EJECT).
    EjectAll,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("no drive {0}")]
    NoSuchDrive(i64),
    #[error("drive {0} is {1:?} and cannot be ejected now")]
    NotEjectable(i64, DriveState),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the box is shutting down")]
    ShuttingDown,
}
