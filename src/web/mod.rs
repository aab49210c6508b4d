//! The daemon's HTTP side (axum): the status page (embedded, vanilla
//! HTML/JS/CSS), its live event stream, the JSON API, metrics and health.
//! Reading is open on the LAN; every control needs the token, as a bearer
//! header or the session cookie the page gets by logging in.

mod auth;
mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::daemon::{Command, CommandError, Handle};
use crate::panel::PanelHandle;
pub use auth::Guard;

#[derive(Clone)]
pub struct WebState {
    pub daemon: Handle,
    pub panel: Option<PanelHandle>,
    pub guard: Arc<Guard>,
}

pub fn router(daemon: Handle, panel: Option<PanelHandle>) -> Router {
    let state = WebState {
        guard: Arc::new(Guard::new(daemon.token.to_string())),
        daemon,
        panel,
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
        .with_state(state)
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
async fn events(
    State(s): State<WebState>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>> {
    let rx = s.daemon.watch();
    let stream = futures_util::stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first {
            if rx.changed().await.is_err() {
                return None;
            }
            // Coalesce bursts (progress of several jobs) into one update.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let data = rx.borrow_and_update().json();
        Some((
            Ok(Event::default().event("status").data(&*data)),
            (rx, false),
        ))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
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

async fn session(State(s): State<WebState>, headers: HeaderMap) -> Response {
    Json(serde_json::json!({ "authorized": s.guard.presented_token_ok(&headers) })).into_response()
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
async fn command(s: WebState, peer: SocketAddr, headers: HeaderMap, command: Command) -> Response {
    if let Err(r) = s.guard.authorize(peer.ip(), &headers).await {
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

async fn pause(State(s): State<WebState>, ConnectInfo(p): Peer, h: HeaderMap) -> Response {
    command(s, p, h, Command::Pause).await
}

async fn resume(State(s): State<WebState>, ConnectInfo(p): Peer, h: HeaderMap) -> Response {
    command(s, p, h, Command::Resume).await
}

async fn eject(
    State(s): State<WebState>,
    ConnectInfo(p): Peer,
    Path(id): Path<i64>,
    h: HeaderMap,
) -> Response {
    command(s, p, h, Command::Eject(id)).await
}

async fn cancel(
    State(s): State<WebState>,
    ConnectInfo(p): Peer,
    Path(id): Path<i64>,
    h: HeaderMap,
) -> Response {
    command(s, p, h, Command::Cancel(id)).await
}

async fn retry(
    State(s): State<WebState>,
    ConnectInfo(p): Peer,
    Path(id): Path<i64>,
    h: HeaderMap,
) -> Response {
    command(s, p, h, Command::Retry(id)).await
}

async fn panel_png(State(s): State<WebState>) -> Response {
    match &s.panel {
        Some(panel) => (
            [
                (header::CONTENT_TYPE, "image/png"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            panel.png(),
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
    ConnectInfo(peer): Peer,
    Path(name): Path<String>,
    axum::extract::Query(q): axum::extract::Query<PressQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = s.guard.authorize(peer.ip(), &headers).await {
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
