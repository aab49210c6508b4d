//! The uevent reader: a thread that turns the kernel's block events into
//! messages for the supervisor, and stops with the daemon.

use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::supervisor::Msg;
use super::threads::Lifeline;
use crate::logging::log;
use crate::usb::uevent::UeventSocket;

pub fn start(lifeline: &Arc<Lifeline>, inbox: Sender<Msg>) -> Result<JoinHandle<()>, String> {
    let socket = UeventSocket::open().map_err(|e| {
        format!(
            "cannot listen to the kernel's device events (netlink): {e}; dtsflac must run as root"
        )
    })?;
    // Listening first, then looking: a drive plugged in between is not missed.
    let _ = inbox.send(Msg::Rescan);
    let stop = lifeline.clone();
    lifeline
        .spawn("uevents", move || {
            while !stop.stopping() {
                let msg = match socket.next(Duration::from_millis(500)) {
                    Ok(Some(event)) => Msg::Block(event),
                    Ok(None) => continue,
                    Err(e) => {
                        // Events were dropped (ENOBUFS): look at what is there now.
                        log(&format!("device events lost ({e}); rescanning devices"));
                        Msg::Rescan
                    }
                };
                if inbox.send(msg).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| e.to_string())
}
