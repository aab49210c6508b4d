//! Bounded connections: the web server's own accept loop, so that a flood
//! from the LAN never takes the descriptors the conversions need and
//! `/api/status` keeps answering.
//!
//! - At start-up the process raises its descriptor limit as far as the
//!   system allows (`raise_fd_limit`); the connection cap leaves
//!   `FD_RESERVE` descriptors to everything else (`Limits::for_fd_limit`).
//! - A connection has `HEADER_TIMEOUT` to send its request head, and again
//!   after each response (idle and slowloris connections are closed).
//! - An address holds at most `per_address` connections, the box at most
//!   `total`: a new one beyond them closes the oldest connection of its
//!   own address, or, when the box is full, of the address holding most.
//!   A newcomer is always served; a flooder only displaces itself.
//! - A displaced connection keeps its descriptor until its task has run,
//!   so the accept loop holds a permit per accepted socket until the
//!   socket is closed: a burst of accepts waits for the displaced to go
//!   instead of running the process out of descriptors.
//! - Event streams are capped too (`EventStreams`): per address and
//!   overall, refused with a 503 that says why.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;

use crate::logging::log;

/// Descriptors kept for everything but connections: the store, logs,
/// drives, uevents, and each conversion's processes and pipes.
pub const FD_RESERVE: u64 = 128;
const MAX_CONNECTIONS: usize = 1024;
const PER_ADDRESS: usize = 32;
/// Sockets beyond the cap that may be open at once: newcomers accepted
/// while the connections they displaced are still closing.
const DISPLACED_IN_FLIGHT: usize = 8;
/// Time to send a request head (per request).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Event streams per address and overall.
pub const EVENTS_PER_ADDRESS: usize = 4;
pub const EVENTS_TOTAL: usize = 16;

/// Raises the soft descriptor limit to the hard one (at most 65536).
/// Returns the limit in force afterwards.
pub fn raise_fd_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write `r`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 1024;
        }
        let want = r.rlim_max.min(65536);
        if r.rlim_cur < want {
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                r.rlim_cur = want;
            }
        }
    }
    // rlim_t is 32 bits on some 32-bit ARM boards.
    #[allow(clippy::unnecessary_cast)]
    let limit = r.rlim_cur as u64;
    limit
}

/// The connection caps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub total: usize,
    pub per_address: usize,
}

impl Limits {
    /// What a process with `fds` descriptors can hold: all but
    /// `FD_RESERVE`, at most `MAX_CONNECTIONS`, at least 16.
    pub fn for_fd_limit(fds: u64) -> Limits {
        let total = (fds.saturating_sub(FD_RESERVE) as usize).clamp(16, MAX_CONNECTIONS);
        Limits {
            total,
            per_address: PER_ADDRESS.min(total / 4).max(1),
        }
    }
}

/// The open connections, by address, oldest first.
#[derive(Default)]
struct Registry {
    next_id: u64,
    total: usize,
    by_ip: HashMap<IpAddr, VecDeque<(u64, Arc<tokio::sync::Notify>)>>,
}

impl Registry {
    /// Registers a connection from `ip`; returns its id and the connection
    /// to close to stay within `limits`, if any.
    fn admit(
        &mut self,
        ip: IpAddr,
        limits: Limits,
        close: Arc<tokio::sync::Notify>,
    ) -> (u64, Option<Arc<tokio::sync::Notify>>) {
        let own = self.by_ip.get(&ip).map_or(0, VecDeque::len);
        let victim_ip = if own >= limits.per_address {
            Some(ip)
        } else if self.total >= limits.total {
            // Ties go against the address that opened a connection last.
            self.by_ip
                .iter()
                .max_by_key(|(_, conns)| (conns.len(), conns.back().map_or(0, |c| c.0)))
                .map(|(ip, _)| *ip)
        } else {
            None
        };
        let victim = victim_ip.and_then(|v| {
            let conns = self.by_ip.get_mut(&v)?;
            let (_, close) = conns.pop_front()?;
            if conns.is_empty() {
                self.by_ip.remove(&v);
            }
            self.total -= 1;
            Some(close)
        });
        self.next_id += 1;
        let id = self.next_id;
        self.by_ip.entry(ip).or_default().push_back((id, close));
        self.total += 1;
        (id, victim)
    }

    /// Forgets a connection that ended (no-op if it was evicted).
    fn leave(&mut self, ip: IpAddr, id: u64) {
        if let Some(conns) = self.by_ip.get_mut(&ip) {
            if let Some(at) = conns.iter().position(|(i, _)| *i == id) {
                conns.remove(at);
                self.total -= 1;
            }
            if conns.is_empty() {
                self.by_ip.remove(&ip);
            }
        }
    }
}

/// The box's open connections, shared by the accept loop and `/metrics`.
pub struct Connections {
    limits: Limits,
    registry: Mutex<Registry>,
    /// One permit per socket the server holds, displaced or not.
    sockets: Arc<tokio::sync::Semaphore>,
    open_sockets: AtomicUsize,
    most_sockets: AtomicUsize,
}

/// An accepted socket's place; dropped after the socket is closed.
struct SocketSlot {
    conns: Arc<Connections>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        self.conns.open_sockets.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One registered connection; dropping it forgets the connection.
struct Ticket {
    conns: Arc<Connections>,
    ip: IpAddr,
    id: u64,
    close: Arc<tokio::sync::Notify>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.conns.registry.lock().unwrap().leave(self.ip, self.id);
    }
}

impl Connections {
    pub fn new(limits: Limits) -> Arc<Connections> {
        Arc::new(Connections {
            limits,
            registry: Mutex::new(Registry::default()),
            sockets: Arc::new(tokio::sync::Semaphore::new(
                limits.total + DISPLACED_IN_FLIGHT,
            )),
            open_sockets: AtomicUsize::new(0),
            most_sockets: AtomicUsize::new(0),
        })
    }

    /// The most sockets the server has held at once.
    pub fn most_sockets(&self) -> usize {
        self.most_sockets.load(Ordering::Relaxed)
    }

    /// Waits until one more socket fits.
    async fn socket_slot(self: &Arc<Self>) -> SocketSlot {
        let permit = self
            .sockets
            .clone()
            .acquire_owned()
            .await
            .expect("the socket semaphore is never closed");
        let open = self.open_sockets.fetch_add(1, Ordering::Relaxed) + 1;
        self.most_sockets.fetch_max(open, Ordering::Relaxed);
        SocketSlot {
            conns: self.clone(),
            _permit: permit,
        }
    }

    pub fn open(&self) -> usize {
        self.registry.lock().unwrap().total
    }

    fn admit(self: &Arc<Self>, ip: IpAddr) -> Ticket {
        let close = Arc::new(tokio::sync::Notify::new());
        let (id, victim) = self
            .registry
            .lock()
            .unwrap()
            .admit(ip, self.limits, close.clone());
        if let Some(v) = victim {
            v.notify_one();
        }
        Ticket {
            conns: self.clone(),
            ip,
            id,
            close,
        }
    }
}

/// The connection's own address, for the `Host` check.
#[derive(Clone, Copy, Debug)]
pub struct LocalAddr(pub SocketAddr);

/// Serves `router` on `listener` until `shutdown` resolves, then lets the
/// connections finish their requests for up to `grace` (event streams never
/// end by themselves).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    conns: Arc<Connections>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut last_error_logged: Option<std::time::Instant> = None;
    loop {
        let slot = tokio::select! {
            _ = &mut shutdown => break,
            slot = conns.socket_slot() => slot,
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors (or a connection reset before it
                    // was accepted): wait a little, say so now and then.
                    if last_error_logged.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                        log(&format!("web: cannot accept a connection: {e}"));
                        last_error_logged = Some(std::time::Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let local = stream.local_addr().unwrap_or(peer);
        let ticket = conns.admit(peer.ip());
        let router = router.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            // Declared first, so dropped last: after the socket is closed.
            let _slot = slot;
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    req.extensions_mut().insert(LocalAddr(local));
                    let mut router = router.clone();
                    async move {
                        tower_service::Service::call(&mut router, req.map(axum::body::Body::new))
                            .await
                    }
                },
            );
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(64 * 1024);
            let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            let closed = ticket.close.clone();
            loop {
                tokio::select! {
                    _ = conn.as_mut() => break,
                    // Displaced by newer connections: drop it now.
                    _ = closed.notified() => break,
                    changed = stop.changed() => {
                        if changed.is_err() || *stop.borrow() {
                            conn.as_mut().graceful_shutdown();
                            // Wait for the connection itself from now on.
                            let _ = conn.as_mut().await;
                            break;
                        }
                    }
                }
            }
            drop(ticket);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let deadline = tokio::time::Instant::now() + grace;
    while conns.open() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The open event streams, by address.
#[derive(Default)]
pub struct EventStreams {
    by_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// One open event stream; dropping it (the client went away) frees it.
pub struct StreamPermit {
    streams: Arc<EventStreams>,
    ip: IpAddr,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut m = self.streams.by_ip.lock().unwrap();
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

impl EventStreams {
    pub fn open(&self) -> usize {
        self.by_ip.lock().unwrap().values().sum()
    }

    /// A permit for one more stream from `ip`, or why not.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<StreamPermit, String> {
        let mut m = self.by_ip.lock().unwrap();
        let total: usize = m.values().sum();
        let own = m.get(&ip).copied().unwrap_or(0);
        if own >= EVENTS_PER_ADDRESS {
            return Err(format!(
                "too many event streams from {ip}: at most {EVENTS_PER_ADDRESS} per address; close another page, or poll /api/status"
            ));
        }
        if total >= EVENTS_TOTAL {
            return Err(format!(
                "too many event streams on the box: at most {EVENTS_TOTAL} overall; try again later, or poll /api/status"
            ));
        }
        *m.entry(ip).or_insert(0) += 1;
        Ok(StreamPermit {
            streams: self.clone(),
            ip,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        [192, 168, 1, n].into()
    }

    #[test]
    fn the_caps_leave_descriptors_to_the_rest() {
        assert_eq!(
            Limits::for_fd_limit(256),
            Limits {
                total: 128,
                per_address: 32
            }
        );
        assert_eq!(Limits::for_fd_limit(1024).total, 896);
        assert_eq!(Limits::for_fd_limit(1 << 20).total, MAX_CONNECTIONS);
        assert_eq!(
            Limits::for_fd_limit(64),
            Limits {
                total: 16,
                per_address: 4
            }
        );
        assert!(raise_fd_limit() >= 64);
    }

    #[test]
    fn a_flooder_displaces_only_its_own_connections() {
        let limits = Limits {
            total: 10,
            per_address: 4,
        };
        let mut r = Registry::default();
        let notify = || Arc::new(tokio::sync::Notify::new());
        // The page: two connections from .1.
        let page: Vec<_> = (0..2).map(|_| r.admit(ip(1), limits, notify()).0).collect();
        // .2 floods: from its fifth connection on, its oldest go.
        let mut evicted = 0;
        for _ in 0..50 {
            evicted += usize::from(r.admit(ip(2), limits, notify()).1.is_some());
        }
        assert_eq!(evicted, 46);
        assert_eq!(r.total, 6);
        // Many addresses fill the box: the largest holder gives way.
        for n in 3..6 {
            for _ in 0..4 {
                r.admit(ip(n), limits, notify());
            }
        }
        assert_eq!(r.total, limits.total);
        assert!(r.by_ip.values().all(|c| c.len() <= 4));
        // A newcomer is still let in, and the page keeps its connections.
        assert!(r.admit(ip(9), limits, notify()).1.is_some());
        assert_eq!(r.total, limits.total);
        assert_eq!(r.by_ip[&ip(1)].len(), 2);
        for id in page {
            r.leave(ip(1), id);
        }
        assert!(!r.by_ip.contains_key(&ip(1)));
        assert_eq!(r.total, limits.total - 2);
    }

    /// A burst of connections (all waiting in the listen queue) is
    /// accepted without holding more sockets than the cap and a few: the
    /// ones they displace are closed before more are accepted.
    #[test]
    fn a_burst_of_connections_never_holds_more_sockets_than_the_cap() {
        use std::io::{Read, Write};
        let limits = Limits {
            total: 16,
            per_address: 4,
        };
        let conns = Connections::new(limits);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = {
            let conns = conns.clone();
            std::thread::spawn(move || {
                // One thread, as on a busy board: the accept loop runs
                // until it must wait, before any displaced task runs.
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    let router = Router::new().route("/", axum::routing::get(|| async { "ok" }));
                    let stop = async move {
                        let _ = stop_rx.await;
                    };
                    serve(listener, router, conns, stop, Duration::from_secs(1)).await;
                })
            })
        };
        // 300 connections from 10 addresses, complete in the kernel's
        // queue before the server takes them.
        let flood: Vec<_> = (10..20u8)
            .flat_map(|last| (0..30).map(move |_| last))
            .map(|last| {
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                    .unwrap();
                s.bind(&SocketAddr::from(([127, 0, 0, last], 0)).into())
                    .unwrap();
                s.connect(&SocketAddr::from(([127, 0, 0, 1], port)).into())
                    .unwrap();
                std::net::TcpStream::from(s)
            })
            .collect();
        std::thread::sleep(Duration::from_secs(1));
        // A newcomer is served.
        let mut page = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        page.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        page.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        page.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let most = conns.most_sockets();
        assert!(
            most <= limits.total + DISPLACED_IN_FLIGHT,
            "{most} sockets held at once for a cap of {}",
            limits.total
        );
        assert!(conns.open() <= limits.total);
        drop(flood);
        let _ = stop_tx.send(());
        server.join().unwrap();
    }

    #[test]
    fn event_streams_are_capped_per_address_and_overall() {
        let s = Arc::new(EventStreams::default());
        let mine: Vec<_> = (0..EVENTS_PER_ADDRESS)
            .map(|_| s.acquire(ip(1)).unwrap())
            .collect();
        let e = s.acquire(ip(1)).err().unwrap();
        assert!(e.contains("per address"), "{e}");
        let mut others = Vec::new();
        for n in 2.. {
            match s.acquire(ip(n)) {
                Ok(p) => others.push(p),
                Err(e) => {
                    assert!(e.contains("overall"), "{e}");
                    break;
                }
            }
        }
        assert_eq!(s.open(), EVENTS_TOTAL);
        drop(mine);
        assert_eq!(s.open(), EVENTS_TOTAL - EVENTS_PER_ADDRESS);
        assert!(s.acquire(ip(1)).is_ok());
    }
}
