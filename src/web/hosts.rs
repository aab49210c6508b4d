//! Against DNS rebinding: a request is answered only when its `Host` names
//! the box. A page elsewhere can point its own name at the box's address,
//! but its requests then carry that name, so they are refused and the page
//! cannot read the status or the panel through a browser on the LAN.
//!
//! Accepted: `localhost`, loopback addresses, the address the client
//! reached (the box's own address on that network), the box's host name
//! (and `NAME.local`), and the names in `web.hosts`; any port. A request
//! without `Host` (no browser sends one) is accepted.

use std::net::IpAddr;

/// The names the box answers to, lowercased.
#[derive(Clone, Debug)]
pub struct Hosts {
    names: Vec<String>,
}

impl Hosts {
    /// `localhost`, the host name (and `.local`), and `extra` (from the config).
    pub fn new(hostname: Option<String>, extra: &[String]) -> Hosts {
        let mut names = vec!["localhost".to_string()];
        if let Some(h) = hostname.filter(|h| !h.is_empty()) {
            let h = h.to_ascii_lowercase();
            names.push(format!("{h}.local"));
            names.push(h);
        }
        names.extend(extra.iter().map(|n| normalize(n).to_string()));
        Hosts { names }
    }

    /// The box's own host name, as the kernel has it.
    pub fn of_this_box(extra: &[String]) -> Hosts {
        let mut buf = [0u8; 256];
        // SAFETY: gethostname writes at most buf.len() bytes into buf.
        let name = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
        let hostname = name.then(|| {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            String::from_utf8_lossy(&buf[..end]).into_owned()
        });
        Hosts::new(hostname, extra)
    }

    /// Whether a request with this `Host` header, reaching the box at
    /// `local` (the connection's own address), is for the box.
    pub fn allows(&self, host: Option<&str>, local: IpAddr) -> bool {
        let Some(host) = host else {
            return true;
        };
        let name = normalize(strip_port(host.trim()));
        if let Ok(ip) = name.parse::<IpAddr>() {
            return ip.is_loopback() || same_ip(ip, local);
        }
        self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
    }
}

/// `[::1]:8080` → `[::1]`, `box:8080` → `box`, `::1` stays.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| h)
            .trim_start_matches('[');
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// A trailing dot (`box.local.`) names the same host.
fn normalize(name: &str) -> &str {
    name.trim().trim_end_matches('.')
}

/// IPv4 clients of a dual-stack socket arrive as `::ffff:a.b.c.d`.
fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    canonical(a) == canonical(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_box_answers_to_its_names_and_addresses_only() {
        let hosts = Hosts::new(Some("DtsBox".into()), &["flac.example.org.".into()]);
        let local: IpAddr = [192, 168, 1, 50].into();
        for ok in [
            "localhost",
            "localhost:8080",
            "LOCALHOST.",
            "127.0.0.1:8080",
            "127.0.0.1",
            "[::1]",
            "[::1]:8080",
            "::1",
            "192.168.1.50:8080",
            "dtsbox",
            "dtsbox.local:8080",
            "dtsbox.local.",
            "flac.example.org",
            "Flac.Example.Org:80",
        ] {
            assert!(hosts.allows(Some(ok), local), "{ok} refused");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "dtsbox.evil.example",
            "localhost.evil.example",
            "192.168.1.51:8080",
            "[fe80::1]:8080",
            "0.0.0.0",
            "",
        ] {
            assert!(!hosts.allows(Some(bad), local), "{bad} allowed");
        }
        assert!(hosts.allows(None, local));
        let mapped: IpAddr = "::ffff:192.168.1.50".parse().unwrap();
        assert!(hosts.allows(Some("192.168.1.50"), mapped));
    }
}
