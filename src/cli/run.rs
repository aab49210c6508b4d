//! `dtsflac run`: the appliance. Reads the config, recovers from any power
//! cut, mounts drives as they come, converts, and serves the API until
//! SIGTERM or Ctrl-C, then stops the jobs and unmounts the drives cleanly.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dtsflac::config::Config;
use dtsflac::daemon::{Daemon, Lifeline};
use dtsflac::logging::log;
use dtsflac::panel::{Panel, PanelConfig};

use super::tools_or_explain;

/// The token for the web controls: from the config, or generated once and
/// kept in the state folder so it survives restarts.
fn load_or_make_token(config: &Config) -> Result<String, String> {
    if !config.web.token.is_empty() {
        return Ok(config.web.token.clone());
    }
    let path = config.state_dir.join("token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_string();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    let mut bytes = [0u8; 15];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read /dev/urandom for a token: {e}"))?;
    let token = dtsflac::web::generated_token(&bytes);
    std::fs::create_dir_all(&config.state_dir)
        .and_then(|_| std::fs::write(&path, format!("{token}\n")))
        .map_err(|e| format!("cannot save the token in {}: {e}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    Ok(token)
}

pub fn load_config(path: Option<&Path>) -> Result<Config, String> {
    match path {
        Some(p) => Config::load(p).map_err(|e| e.to_string()),
        None => Ok(Config::default()),
    }
}

pub fn run(config_path: Option<PathBuf>) -> u8 {
    one_malloc_arena();
    let config = match load_config(config_path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dtsflac: {e}");
            return 2;
        }
    };
    let Some(tools) = tools_or_explain() else {
        return 1;
    };
    let token = match load_or_make_token(&config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("dtsflac: {e}");
            return 1;
        }
    };
    if let Err(e) = std::fs::create_dir_all(&config.state_dir)
        .and_then(|_| dtsflac::logging::init(&config.state_dir))
    {
        // A card gone read-only or full must not keep the box from starting:
        // the log goes to the journal only, and the store says what is wrong.
        let card = matches!(e.raw_os_error(), Some(libc::EROFS) | Some(libc::ENOSPC));
        eprintln!(
            "dtsflac: cannot write the log in {} (`state_dir`): {e}{}",
            config.state_dir.display(),
            if card { "; logging to stderr only" } else { "" }
        );
        if !card {
            return 1;
        }
    }
    // Room for connections and conversions, as far as the system allows.
    let fds = dtsflac::web::conns::raise_fd_limit();
    let limits = dtsflac::web::conns::Limits::for_fd_limit(fds);
    log(&format!(
        "file descriptors: {fds}; web connections: at most {} ({} per address)",
        limits.total, limits.per_address
    ));
    let hosts = dtsflac::web::hosts::Hosts::of_this_box(&config.web.hosts);
    let listen = config.web.listen;
    let panel_config = config.panel.clone();
    let mount_root = config.usb.mount_root.clone();
    let lifeline = Lifeline::new();
    let mut daemon = match Daemon::start(config, tools, token, lifeline.clone()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("dtsflac: {e}");
            return 1;
        }
    };
    let (code, panel) = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(serve(
            &mut daemon,
            &lifeline,
            Web {
                listen,
                limits,
                hosts,
            },
            panel_config,
            &mount_root,
        )),
        Err(e) => {
            eprintln!("dtsflac: cannot start: {e}");
            (1, None)
        }
    };
    log("stopping: interrupting jobs and unmounting drives");
    lifeline.stop();
    if let Some(p) = panel {
        p.join();
    }
    match daemon.shutdown() {
        Some(thread) => {
            eprintln!("dtsflac: the {thread} thread crashed; exiting so the service restarts");
            1
        }
        None => code,
    }
}

/// How the web server listens and whom it answers.
struct Web {
    listen: SocketAddr,
    limits: dtsflac::web::conns::Limits,
    hosts: dtsflac::web::hosts::Hosts,
}

/// Starts the panel and the uevent reader, then serves the page and the
/// API until SIGTERM, Ctrl-C or a crashed thread.
async fn serve(
    daemon: &mut Daemon,
    lifeline: &Arc<Lifeline>,
    web: Web,
    panel_config: PanelConfig,
    mount_root: &Path,
) -> (u8, Option<Panel>) {
    let listen = web.listen;
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("dtsflac: cannot listen on {listen} (`web.listen`): {e}");
            return (1, None);
        }
    };
    let url = match listen.ip().is_unspecified() {
        true => format!(
            "http://{}:{}/",
            dtsflac::panel::local_address().unwrap_or_else(|| "dtsflac.local".into()),
            listen.port()
        ),
        false => format!("http://{listen}/"),
    };
    let panel = match dtsflac::panel::start(daemon.handle(), panel_config, url, lifeline) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("dtsflac: {e}");
            return (1, None);
        }
    };
    if let Err(e) = daemon.start_hotplug() {
        eprintln!("dtsflac: {e}");
        return (1, Some(panel));
    }
    log(&format!(
        "ready: API on http://{listen}/api/status; mounting drives under {}",
        mount_root.display()
    ));
    let stop = lifeline.clone();
    let router = dtsflac::web::router(daemon.handle(), Some(panel.handle.clone()), web.hosts);
    // Open event streams (pages left open) never end by themselves: after
    // the stop, requests get two seconds, then the connections are dropped.
    dtsflac::web::conns::serve(
        listener,
        router,
        dtsflac::web::conns::Connections::new(web.limits),
        async move {
            // SIGTERM, Ctrl-C, or a thread that crashed.
            tokio::select! {
                _ = stop_signal() => {}
                _ = stop.stopped() => {}
            }
        },
        std::time::Duration::from_secs(2),
    )
    .await;
    (0, Some(panel))
}

async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// glibc gives each thread that allocates a pool of its own and keeps what
/// the box's many short-lived threads (scans, probes, pipes) freed spread
/// over them: the daemon's memory crept up ~200 KiB a visit. One pool keeps
/// it flat (the soak test) and smaller on a Pi; the daemon allocates little.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes glibc's own lock; called first, so every thread
    // allocates from the one pool.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
