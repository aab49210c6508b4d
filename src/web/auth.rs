//! Who may use the controls: the token (bearer header or session cookie),
//! same-origin requests only, and a slow-down for repeated wrong tokens.
//! Every token a request presents (a bearer header or the cookie on any
//! path, a login) is checked against the per-address limit; a request that
//! presents none is anonymous, not a failed guess. `token_weakness` is the
//! rule a configured token must pass.

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

    /// The token a request presents, if any: the bearer header first, else
    /// the session cookie.
    pub fn presented<'a>(&self, headers: &'a HeaderMap) -> Option<Presented<'a>> {
        if let Some(v) = headers.get(header::AUTHORIZATION) {
            let v = v.to_str().unwrap_or("");
            // A malformed header is a presented (wrong) token too.
            let t = v.strip_prefix("Bearer ").unwrap_or("");
            return Some(Presented::Bearer(t));
        }
        cookie_value(headers, COOKIE).map(Presented::Cookie)
    }

    /// Checks whatever token the request presents, counting a wrong one
    /// against the address. `Ok(Anonymous)`: nothing presented;
    /// `Ok(Authorized)`: the right token; `Ok(StaleCookie)`: a wrong cookie
    /// (counted; the request goes on as anonymous and the cookie is
    /// cleared); `Err`: a blocked address (429) or a wrong bearer (401).
    pub async fn check(&self, ip: IpAddr, headers: &HeaderMap) -> Result<Access, Response> {
        let Some(presented) = self.presented(headers) else {
            return Ok(Access::Anonymous);
        };
        self.not_blocked(ip).await?;
        if self.token_matches(presented.token()) {
            return Ok(Access::Authorized);
        }
        self.failed(ip);
        tokio::time::sleep(Duration::from_millis(200)).await;
        match presented {
            Presented::Cookie(_) => Ok(Access::StaleCookie),
            Presented::Bearer(_) => Err(unauthorized("wrong token")),
        }
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

    /// A control: same origin, and the token already checked by the
    /// middleware (`access`); a request without a token is refused without
    /// counting as a guess.
    #[allow(clippy::result_large_err)]
    pub fn authorize(&self, access: Access, headers: &HeaderMap) -> Result<(), Response> {
        self.same_origin(headers)?;
        match access {
            Access::Authorized => Ok(()),
            Access::Anonymous | Access::StaleCookie => Err(unauthorized(
                "this needs the box's token: log in on the page, or send `Authorization: Bearer <token>` (the panel shows the token: NEXT to the token screen, then hold NEXT)",
            )),
        }
    }
}

/// What the request presented, as `Guard::check` found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Anonymous,
    Authorized,
    StaleCookie,
}

pub enum Presented<'a> {
    Bearer(&'a str),
    Cookie(&'a str),
}

impl Presented<'_> {
    fn token(&self) -> &str {
        match self {
            Presented::Bearer(t) | Presented::Cookie(t) => t,
        }
    }
}

fn unauthorized(message: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

/// The shortest token the config may set.
pub const MIN_TOKEN_LEN: usize = 12;
/// Fewest different characters in a configured token.
const MIN_DISTINCT: usize = 6;
/// Words a token made only of them (with digits and punctuation) is guessed
/// from: common passwords, and the words around the box.
const COMMON_WORDS: &[&str] = &[
    "password",
    "passwort",
    "passwd",
    "pass",
    "secret",
    "token",
    "admin",
    "root",
    "user",
    "guest",
    "login",
    "test",
    "demo",
    "default",
    "changeme",
    "change",
    "me",
    "letmein",
    "welcome",
    "hello",
    "qwerty",
    "qwertz",
    "azerty",
    "asdf",
    "asdfgh",
    "zxcv",
    "abc",
    "iloveyou",
    "love",
    "monkey",
    "dragon",
    "master",
    "shadow",
    "sunshine",
    "football",
    "princess",
    "trustno",
    "one",
    "dtsflac",
    "dts",
    "flac",
    "raspberry",
    "pi",
    "box",
    "web",
    "home",
    "audio",
    "music",
    "key",
    "my",
    "the",
    "super",
    "secure",
];

/// Why a configured token is too easy to guess, or `None` when it is good:
/// at least `MIN_TOKEN_LEN` characters, at least `MIN_DISTINCT` different
/// ones, some letters, and the letters not only common words.
pub fn token_weakness(token: &str) -> Option<String> {
    let n = token.chars().count();
    if n < MIN_TOKEN_LEN {
        return Some(format!("is {n} characters long (at least {MIN_TOKEN_LEN})"));
    }
    let mut distinct: Vec<char> = token.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < MIN_DISTINCT {
        return Some(format!(
            "uses only {} different characters (at least {MIN_DISTINCT})",
            distinct.len()
        ));
    }
    let letters: String = token
        .chars()
        .filter(|c| c.is_alphabetic())
        .flat_map(char::to_lowercase)
        .collect();
    if letters.is_empty() {
        return Some("has no letters (numbers alone are easy to guess)".into());
    }
    if made_of_common_words(&letters) {
        return Some("is made of common words (like \"password\" or \"token\")".into());
    }
    None
}

/// Whether `letters` splits entirely into `COMMON_WORDS`.
fn made_of_common_words(letters: &str) -> bool {
    let b = letters.as_bytes();
    // ends[i]: the first i bytes split into words.
    let mut ends = vec![false; b.len() + 1];
    ends[0] = true;
    for i in 0..b.len() {
        if !ends[i] {
            continue;
        }
        for w in COMMON_WORDS {
            if b[i..].starts_with(w.as_bytes()) {
                ends[i + w.len()] = true;
            }
        }
    }
    ends[b.len()]
}

/// The alphabet of generated tokens: letters and digits without look-alikes,
/// easy to copy from the OLED.
const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// A token made from 15 random bytes: 75 bits.
pub fn generated_token(random: &[u8; 15]) -> String {
    random
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % 32] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_tokens_are_named_and_strong_ones_pass() {
        for weak in [
            "demo-token",
            "test-token-123",
            "password1234",
            "Password-2024!",
            "letmein-letmein",
            "123456789012",
            "aaaaaaaaaaaaaaaa",
            "abababababab12",
            "dtsflac-secret-1",
            "",
        ] {
            assert!(token_weakness(weak).is_some(), "{weak:?} passed");
        }
        for strong in [
            "Kq7-Vx2m-Lp9R",
            "DEMO-7K2Q-X9WP",
            "correct-horse-battery-staple",
            "c2hvcnQgYnV0IHJhbmRvbQ==",
        ] {
            assert_eq!(token_weakness(strong), None, "{strong:?}");
        }
        assert!(token_weakness("short").unwrap().contains("at least 12"));
    }

    #[test]
    fn generated_tokens_are_strong() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            let mut bytes = [0u8; 15];
            for b in &mut bytes {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            let t = generated_token(&bytes);
            assert_eq!(t.len(), 15);
            assert_eq!(token_weakness(&t), None, "{t}");
        }
    }

    #[tokio::test]
    async fn anonymous_requests_are_not_guesses_and_every_presented_token_counts() {
        let g = Guard::new("Kq7-Vx2m-Lp9R".into());
        let ip: IpAddr = [192, 168, 1, 9].into();
        let none = HeaderMap::new();
        for _ in 0..20 {
            assert_eq!(g.check(ip, &none).await.unwrap(), Access::Anonymous);
        }
        let mut bearer = HeaderMap::new();
        bearer.insert(
            header::AUTHORIZATION,
            "Bearer Kq7-Vx2m-Lp9R".parse().unwrap(),
        );
        assert_eq!(g.check(ip, &bearer).await.unwrap(), Access::Authorized);
        let mut cookie = HeaderMap::new();
        cookie.insert(header::COOKIE, "dtsflac_token=old".parse().unwrap());
        let mut wrong = HeaderMap::new();
        wrong.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(g.check(ip, &cookie).await.unwrap(), Access::StaleCookie);
        for _ in 0..4 {
            let r = g.check(ip, &wrong).await.unwrap_err();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        }
        let r = g.check(ip, &bearer).await.unwrap_err();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        // Others are not blocked, and anonymous reading goes on.
        assert_eq!(g.check(ip, &none).await.unwrap(), Access::Anonymous);
        let other: IpAddr = [192, 168, 1, 10].into();
        assert_eq!(g.check(other, &bearer).await.unwrap(), Access::Authorized);
    }
}
