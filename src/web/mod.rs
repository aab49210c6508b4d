//! The daemon's HTTP side (axum): the JSON API that the page and any script
//! use. Reading status is open on the LAN; every control needs the token.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::app::{App, CommandError};

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/api/status", get(status))
        .route("/api/pause", post(pause))
        .route("/api/resume", post(resume))
        .route("/api/drives/{id}/eject", post(eject))
        .route("/api/jobs/{id}/cancel", post(cancel))
        .route("/api/jobs/{id}/retry", post(retry))
        .route("/api/buttons/{button}", post(button))
        .route("/panel.png", get(panel_png))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(app)
}

async fn status(State(app): State<Arc<App>>) -> Response {
    let snapshot = tokio::task::spawn_blocking(move || app.snapshot())
        .await
        .expect("snapshot task");
    Json(snapshot).into_response()
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// Compares in constant time, so the token cannot be guessed byte by byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(app: &App, headers: &HeaderMap) -> Result<(), Response> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(t) if same(t.as_bytes(), app.token.as_bytes()) => Ok(()),
        _ => Err((
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(serde_json::json!({
                "error": "this needs the box's token: send `Authorization: Bearer <token>` (the token is in the config, or shown on the panel with a long press)"
            })),
        )
            .into_response()),
    }
}

/// Runs a command off the async threads (some touch the disk) and maps its
/// outcome to a status code.
async fn command(
    app: Arc<App>,
    headers: HeaderMap,
    f: impl FnOnce(&Arc<App>) -> Result<(), CommandError> + Send + 'static,
) -> Response {
    if let Err(r) = authorized(&app, &headers) {
        return r;
    }
    let result = tokio::task::spawn_blocking(move || f(&app))
        .await
        .expect("command task");
    match result {
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
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn pause(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    command(app, headers, |a| a.pause()).await
}

async fn resume(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    command(app, headers, |a| a.resume()).await
}

async fn eject(State(app): State<Arc<App>>, Path(id): Path<i64>, headers: HeaderMap) -> Response {
    command(app, headers, move |a| a.eject(id)).await
}

async fn cancel(State(app): State<Arc<App>>, Path(id): Path<i64>, headers: HeaderMap) -> Response {
    command(app, headers, move |a| a.cancel_job(id)).await
}

async fn retry(State(app): State<Arc<App>>, Path(id): Path<i64>, headers: HeaderMap) -> Response {
    command(app, headers, move |a| a.retry_job(id)).await
}

async fn panel_png(State(app): State<Arc<App>>) -> Response {
    match app.panel.get() {
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
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    axum::extract::Query(q): axum::extract::Query<PressQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorized(&app, &headers) {
        return r;
    }
    let Some(button) = crate::panel::buttons::Button::parse(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no button {name:?}: the buttons are action, next and eject"),
        );
    };
    let long = matches!(q.long.as_deref(), Some("1") | Some("true") | Some("yes"));
    match app.panel.get() {
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
