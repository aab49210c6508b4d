//! Optional notifications: a POST to `[notify] webhook` when a drive is
//! finished, a job fails, or a drive is pulled mid-job. `format = "json"`
//! sends `{"event", "message", "drive", …}`; `format = "text"` sends the
//! message as plain text, which ntfy topics understand. Plain `http://` only
//! (a LAN relay or ntfy server); failures are logged, never fatal.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// `http://host[:port]/path`; empty: no notifications.
    pub webhook: String,
    /// `json` or `text`.
    pub format: String,
}

impl NotifyConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !self.webhook.is_empty() && parse_url(&self.webhook).is_none() {
            return Err(format!(
                "`notify.webhook` must be an http://host[:port]/path URL, not {:?}",
                self.webhook
            ));
        }
        if !matches!(self.format.as_str(), "" | "json" | "text") {
            return Err(format!(
                "`notify.format` must be \"json\" or \"text\", not {:?}",
                self.format
            ));
        }
        Ok(())
    }
}

/// (host, port, path) of an http:// URL.
fn parse_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (authority, 80),
    };
    (!host.is_empty()).then(|| (host.to_string(), port, path.to_string()))
}

/// Sends one notification in the background.
pub fn send(cfg: &NotifyConfig, event: &str, message: String, extra: serde_json::Value) {
    if cfg.webhook.is_empty() {
        return;
    }
    let cfg = cfg.clone();
    let event = event.to_string();
    std::thread::spawn(move || {
        let (body, content_type) = if cfg.format == "text" {
            (message.clone(), "text/plain; charset=utf-8")
        } else {
            let mut v = serde_json::json!({ "event": event, "message": message });
            if let (Some(obj), Some(more)) = (v.as_object_mut(), extra.as_object()) {
                obj.extend(more.clone());
            }
            (v.to_string(), "application/json")
        };
        if let Err(e) = post(&cfg.webhook, content_type, &event, body.as_bytes()) {
            crate::logging::log(&format!("notification to {} failed: {e}", cfg.webhook));
        }
    });
}

fn post(url: &str, content_type: &str, title: &str, body: &[u8]) -> Result<(), String> {
    let (host, port, path) = parse_url(url).ok_or("not an http:// URL")?;
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nTitle: dtsflac {title}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|_| s.write_all(body))
        .map_err(|e| e.to_string())?;
    let mut reply = [0u8; 64];
    let n = s.read(&mut reply).map_err(|e| e.to_string())?;
    let status = String::from_utf8_lossy(&reply[..n]);
    match status.split(' ').nth(1) {
        Some(code) if code.starts_with('2') => Ok(()),
        Some(code) => Err(format!("HTTP {code}")),
        None => Err("no HTTP answer".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        assert_eq!(
            parse_url("http://ntfy.lan:8081/dtsflac"),
            Some(("ntfy.lan".into(), 8081, "/dtsflac".into()))
        );
        assert_eq!(
            parse_url("http://hook"),
            Some(("hook".into(), 80, "/".into()))
        );
        assert_eq!(parse_url("https://x/y"), None);
    }

    #[test]
    fn a_notification_reaches_a_real_server() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let cfg = NotifyConfig {
            webhook: format!("http://127.0.0.1:{port}/topic"),
            format: "json".into(),
        };
        send(
            &cfg,
            "drive_done",
            "FILMS: 3 FLAC written".into(),
            serde_json::json!({"drive": "FILMS"}),
        );
        let (mut conn, _) = server.accept().unwrap();
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        while !String::from_utf8_lossy(&got).contains("FLAC written\"") {
            let n = conn.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("POST /topic HTTP/1.1"), "{text}");
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["event"], "drive_done");
        assert_eq!(v["drive"], "FILMS");
    }
}
