//! One shutdown signal for every long-lived thread, and threads that end
//! the daemon when they panic: a half-alive box (a panel that froze, drives
//! nobody mounts) is worse than a restart by systemd.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::logging::log;

/// Shared by every thread of the daemon: whether it is stopping, and why.
pub struct Lifeline {
    stopping: AtomicBool,
    panicked: Mutex<Option<String>>,
    signal: tokio::sync::watch::Sender<bool>,
}

impl Lifeline {
    pub fn new() -> Arc<Lifeline> {
        Arc::new(Lifeline {
            stopping: AtomicBool::new(false),
            panicked: Mutex::new(None),
            signal: tokio::sync::watch::channel(false).0,
        })
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Every thread sees `stopping` from now on.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.signal.send_replace(true);
    }

    /// Which thread panicked, if one did (the daemon then exits non-zero).
    pub fn panicked(&self) -> Option<String> {
        self.panicked.lock().unwrap().clone()
    }

    /// Resolves once `stop` was called (by a signal handler or a panic).
    pub async fn stopped(&self) {
        let mut rx = self.signal.subscribe();
        let _ = rx.wait_for(|stopping| *stopping).await;
    }

    /// A thread died (a panic seen some other way): the daemon stops.
    pub fn crashed(&self, thread: &str) {
        log(&format!(
            "the {thread} thread crashed; stopping so the service restarts"
        ));
        self.panicked
            .lock()
            .unwrap()
            .get_or_insert_with(|| thread.to_string());
        self.stop();
    }

    /// Starts a long-lived thread; if it panics, the whole daemon stops.
    pub fn spawn(
        self: &Arc<Self>,
        name: &str,
        f: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<JoinHandle<()>> {
        let me = self.clone();
        let thread = name.to_string();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    me.crashed(&format!("{thread} ({what})"));
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_thread_stops_everything_and_is_named() {
        let lifeline = Lifeline::new();
        let quiet = lifeline
            .spawn("quiet", {
                let l = lifeline.clone();
                move || {
                    while !l.stopping() {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                }
            })
            .unwrap();
        assert!(!lifeline.stopping());
        lifeline
            .spawn("panel", || panic!("frame out of range"))
            .unwrap()
            .join()
            .unwrap();
        quiet.join().unwrap();
        assert!(lifeline.stopping());
        let crashed = lifeline.panicked().unwrap();
        assert!(
            crashed.starts_with("panel") && crashed.contains("frame out of range"),
            "{crashed}"
        );
    }
}
