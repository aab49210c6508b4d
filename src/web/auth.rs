//! Who may use the controls: the token (bearer header or session cookie),
//! same-origin requests only, and a slow-down for repeated wrong tokens.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

const COOKIE: &str = "dtsflac_token";
/// Wrong tokens allowed from one address before it has to wait.
const FREE_FAILURES: u32 = 5;
const BLOCK_FOR: Duration = Duration::from_secs(60);

pub struct Guard {
    token: String,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// Compares in constant time, so the token cannot be guessed byte by byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

impl Guard {
    pub fn new(token: String) -> Guard {
        Guard {
            token,
            failures: Mutex::new(HashMap::new()),
        }
    }

    pub fn token_matches(&self, given: &str) -> bool {
        same(given.trim().as_bytes(), self.token.as_bytes())
    }

    /// A session cookie: it lives until the browser closes.
    pub fn cookie(&self) -> String {
        format!("{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/", self.token)
    }

    pub fn presented_token_ok(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        bearer
            .or_else(|| cookie_value(headers, COOKIE))
            .is_some_and(|t| self.token_matches(t))
    }

    /// Controls are refused when a browser says they come from another site.
    /// (The refusal is the response itself, as axum handlers return it.)
    #[allow(clippy::result_large_err)]
    pub fn same_origin(&self, headers: &HeaderMap) -> Result<(), Response> {
        let refuse = || {
            Err((
                StatusCode::FORBIDDEN,
                Json(serde_json::json!({"error": "controls are only accepted from the box's own page"})),
            )
                .into_response())
        };
        if headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == "cross-site" || v == "same-site")
        {
            return refuse();
        }
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let origin_host = origin
                .split_once("://")
                .map_or(origin, |(_, rest)| rest)
                .trim_end_matches('/');
            if origin == "null" || !origin_host.eq_ignore_ascii_case(host) {
                return refuse();
            }
        }
        Ok(())
    }

    /// After a few wrong tokens an address waits a minute (and each answer
    /// is slow), so guessing is hopeless.
    pub async fn not_blocked(&self, ip: IpAddr) -> Result<(), Response> {
        let count = {
            let mut f = self.failures.lock().unwrap();
            match f.get(&ip) {
                Some((_, at)) if at.elapsed() > BLOCK_FOR => {
                    f.remove(&ip);
                    0
                }
                Some((n, _)) => *n,
                None => 0,
            }
        };
        if count >= FREE_FAILURES {
            tokio::time::sleep(Duration::from_secs(1)).await;
            return Err((
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, BLOCK_FOR.as_secs().to_string())],
                Json(serde_json::json!({"error": "too many wrong tokens: wait a minute"})),
            )
                .into_response());
        }
        Ok(())
    }

    pub fn failed(&self, ip: IpAddr) {
        let mut f = self.failures.lock().unwrap();
        let e = f.entry(ip).or_insert((0, Instant::now()));
        e.0 += 1;
        e.1 = Instant::now();
    }

    pub fn succeeded(&self, ip: IpAddr) {
        self.failures.lock().unwrap().remove(&ip);
    }

    pub async fn authorize(&self, ip: IpAddr, headers: &HeaderMap) -> Result<(), Response> {
        self.same_origin(headers)?;
        self.not_blocked(ip).await?;
        if self.presented_token_ok(headers) {
            return Ok(());
        }
        self.failed(ip);
        tokio::time::sleep(Duration::from_millis(200)).await;
        Err((
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(serde_json::json!({
                "error": "this needs the box's token: log in on the page, or send `Authorization: Bearer <token>` (the panel shows the token: NEXT to the token screen, then hold NEXT)"
            })),
        )
            .into_response())
    }
}
