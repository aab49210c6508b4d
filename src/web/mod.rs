//! The daemon's HTTP side (axum): the status page (embedded, vanilla
//! HTML/JS/CSS), its live event stream, the JSON API, metrics and health.
//! Reading is open on the LAN; every control needs the token, as a bearer
//! header or the session cookie the page gets by logging in. Every request
//! passes `gate` first: its `Host` must name the box (`hosts`, against DNS
//! rebinding), and any token it presents is checked and counted (`auth`).
//! The accept loop and its caps are in `conns`.

mod auth;
pub mod conns;
pub mod hosts;
mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Extension, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::daemon::{Command, CommandError, Handle};
use crate::panel::PanelHandle;
use auth::Access;
pub use auth::{generated_token, token_weakness, Guard, MIN_TOKEN_LEN};
use hosts::Hosts;

#[derive(Clone)]
pub struct WebState {
    pub daemon: Handle,
    pub panel: Option<PanelHandle>,
    pub guard: Arc<Guard>,
    pub hosts: Arc<Hosts>,
    pub streams: Arc<conns::EventStreams>,
}

pub fn router(daemon: Handle, panel: Option<PanelHandle>, hosts: Hosts) -> Router {
    let state = WebState {
        guard: Arc::new(Guard::new(daemon.token.to_string())),
        daemon,
        panel,
        hosts: Arc::new(hosts),
        streams: Arc::new(conns::EventStreams::default()),
    };
    Router::new()
        .route("/", get(page))
        .route("/app.js", get(script))
        .route("/style.css", get(style))
        .route("/api/status", get(status))
        .route("/api/events", get(events))
        .route("/api/jobs", get(jobs_page))
        .route("/api/session", get(session))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/pause", post(pause))
        .route("/api/resume", post(resume))
        .route("/api/drives/{id}/eject", post(eject))
        .route("/api/jobs/{id}/cancel", post(cancel))
        .route("/api/jobs/{id}/retry", post(retry))
        .route("/api/buttons/{button}", post(button))
        .route("/panel.png", get(panel_png))
        .route("/metrics", get(metrics::metrics))
        .route("/healthz", get(healthz))
        .layer(axum::middleware::from_fn_with_state(state.clone(), gate))
        .with_state(state)
}

/// Before any handler: the `Host` must be the box's, and a presented token
/// is checked (a wrong bearer is refused, a stale cookie is cleared). The
/// handlers read the outcome as an `Access` extension.
async fn gate(State(s): State<WebState>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let local = req
        .extensions()
        .get::<conns::LocalAddr>()
        .map_or(std::net::Ipv6Addr::LOCALHOST.into(), |l| l.0.ip());
    let host = req
        .headers()
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or("\u{0}"));
    if !s.hosts.allows(host, local) {
        return error(
            StatusCode::FORBIDDEN,
            "this box does not answer to that name: open it by its address or host name, or add the name to `web.hosts` in its config".into(),
        );
    }
    let access = match s.guard.check(peer.ip(), req.headers()).await {
        Ok(a) => a,
        Err(refused) => return refused,
    };
    req.extensions_mut().insert(access);
    let mut response = next.run(req).await;
    if access == Access::StaleCookie {
        if let Ok(v) = auth::clear_cookie().parse() {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// Headers every page response carries: no framing by other sites, no
/// scripts but our own.
fn page_headers(content_type: &'static str) -> [(header::HeaderName, &'static str); 4] {
    [
        (header::CONTENT_TYPE, content_type),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, "no-cache"),
    ]
}

async fn page() -> Response {
    (page_headers("text/html; charset=utf-8"), INDEX_HTML).into_response()
}

async fn script() -> Response {
    (page_headers("text/javascript; charset=utf-8"), APP_JS).into_response()
}

async fn style() -> Response {
    (page_headers("text/css; charset=utf-8"), STYLE_CSS).into_response()
}

async fn status(State(s): State<WebState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        s.daemon.status().json().to_string(),
    )
        .into_response()
}

/// Server-sent events: the whole status on every change, at most four
/// times a second while converting, nothing while nothing happens.
/// At most `conns::EVENTS_PER_ADDRESS` per address and
/// `conns::EVENTS_TOTAL` overall: more are refused with 503.
async fn events(State(s): State<WebState>, ConnectInfo(peer): Peer) -> Response {
    let permit = match s.streams.acquire(peer.ip()) {
        Ok(p) => p,
        Err(why) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "30")],
                Json(serde_json::json!({ "error": why })),
            )
                .into_response()
        }
    };
    let rx = s.daemon.watch();
    // The permit lives as long as the stream: until the client goes away.
    let stream =
        futures_util::stream::unfold((rx, true, permit), |(mut rx, first, permit)| async move {
            if !first {
                if rx.changed().await.is_err() {
                    return None;
                }
                // Coalesce bursts (progress of several jobs) into one update.
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            let data = rx.borrow_and_update().json();
            Some((
                Ok::<_, std::convert::Infallible>(Event::default().event("status").data(&*data)),
                (rx, false, permit),
            ))
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

#[derive(serde::Deserialize)]
struct PageQuery {
    before: Option<i64>,
    limit: Option<usize>,
}

/// Finished jobs older than the snapshot shows: `?before=ID&limit=N`,
/// newest first, at most 500 a page.
async fn jobs_page(
    State(s): State<WebState>,
    axum::extract::Query(q): axum::extract::Query<PageQuery>,
) -> Response {
    let daemon = s.daemon.clone();
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let page = tokio::task::spawn_blocking(move || daemon.finished_jobs(q.before, limit)).await;
    match page {
        Ok(Ok(jobs)) => Json(serde_json::json!({ "jobs": jobs })).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the job store could not be read".into(),
        ),
    }
}

pub(crate) fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// Whether the request's token (checked and counted by `gate`) is right.
async fn session(Extension(access): Extension<Access>) -> Response {
    Json(serde_json::json!({ "authorized": access == Access::Authorized })).into_response()
}

#[derive(serde::Deserialize)]
struct Login {
    token: String,
}

/// Trades the token for an HttpOnly, SameSite=Strict session cookie.
async fn login(
    State(s): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = s.guard.same_origin(&headers) {
        return r;
    }
    if let Err(r) = s.guard.not_blocked(peer.ip()).await {
        return r;
    }
    let Ok(login) = serde_json::from_slice::<Login>(&body) else {
        return error(StatusCode::BAD_REQUEST, "send {\"token\": \"...\"}".into());
    };
    if !s.guard.token_matches(&login.token) {
        s.guard.failed(peer.ip());
        return error(StatusCode::UNAUTHORIZED, "wrong token".into());
    }
    s.guard.succeeded(peer.ip());
    (
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, s.guard.cookie())],
    )
        .into_response()
}

async fn logout() -> Response {
    (
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, auth::clear_cookie())],
    )
        .into_response()
}

/// Sends a command to the supervisor and maps its answer to a status code.
async fn command(s: WebState, access: Access, headers: HeaderMap, command: Command) -> Response {
    if let Err(r) = s.guard.authorize(access, &headers) {
        return r;
    }
    match s.daemon.command(command).await {
        Ok(()) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "ok": true })),
        )
            .into_response(),
        Err(e @ CommandError::NoSuchDrive(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(CommandError::Store(e @ crate::queue::store::StoreError::NoSuchJob(_))) => {
            error(StatusCode::NOT_FOUND, e.to_string())
        }
        Err(e @ CommandError::NotEjectable(..))
        | Err(e @ CommandError::Store(crate::queue::store::StoreError::BadTransition { .. })) => {
            error(StatusCode::CONFLICT, e.to_string())
        }
        Err(e @ CommandError::ShuttingDown) => {
            error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

type Peer = ConnectInfo<SocketAddr>;
type Checked = Extension<Access>;

async fn pause(State(s): State<WebState>, Extension(a): Checked, h: HeaderMap) -> Response {
    command(s, a, h, Command::Pause).await
}

async fn resume(State(s): State<WebState>, Extension(a): Checked, h: HeaderMap) -> Response {
    command(s, a, h, Command::Resume).await
}

async fn eject(
    State(s): State<WebState>,
    Extension(a): Checked,
    Path(id): Path<i64>,
    h: HeaderMap,
) -> Response {
    command(s, a, h, Command::Eject(id)).await
}

async fn cancel(
    State(s): State<WebState>,
    Extension(a): Checked,
    Path(id): Path<i64>,
    h: HeaderMap,
) -> Response {
    command(s, a, h, Command::Cancel(id)).await
}

async fn retry(
    State(s): State<WebState>,
    Extension(a): Checked,
    Path(id): Path<i64>,
    h: HeaderMap,
) -> Response {
    command(s, a, h, Command::Retry(id)).await
}

/// The panel as the OLED shows it, except that a revealed token is shown
/// only to a client that presents the token itself (the logged-in page).
async fn panel_png(State(s): State<WebState>, Extension(access): Checked) -> Response {
    match &s.panel {
        Some(panel) => (
            [
                (header::CONTENT_TYPE, "image/png"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            panel.png(access == Access::Authorized),
        )
            .into_response(),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the panel is not running".into(),
        ),
    }
}

#[derive(serde::Deserialize)]
struct PressQuery {
    long: Option<String>,
}

/// The virtual front-panel buttons: the same presses as the real ones.
async fn button(
    State(s): State<WebState>,
    Extension(access): Checked,
    Path(name): Path<String>,
    axum::extract::Query(q): axum::extract::Query<PressQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = s.guard.authorize(access, &headers) {
        return r;
    }
    let Some(button) = crate::panel::buttons::Button::parse(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no button {name:?}: the buttons are action, next and eject"),
        );
    };
    let long = matches!(q.long.as_deref(), Some("1") | Some("true") | Some("yes"));
    match &s.panel {
        Some(panel) => {
            panel.press(crate::panel::buttons::Press { button, long });
            (
                StatusCode::ACCEPTED,
                Json(serde_json::json!({ "ok": true })),
            )
                .into_response()
        }
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the panel is not running".into(),
        ),
    }
}

/// 200 when the daemon, its store and FFmpeg are usable; 503 and why not.
async fn healthz(State(s): State<WebState>) -> Response {
    let daemon = s.daemon.clone();
    let problem = tokio::task::spawn_blocking(move || daemon.health_problem())
        .await
        .unwrap_or_else(|_| Some("health check crashed".into()));
    match problem {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(p) => (StatusCode::SERVICE_UNAVAILABLE, format!("{p}\n")).into_response(),
    }
}
