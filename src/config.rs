//! The daemon's TOML configuration: every key has a default, unknown keys are
//! refused, and a bad value is reported with the key that holds it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the job store (`jobs.db`), the generated token and logs live.
    pub state_dir: PathBuf,
    pub web: WebConfig,
    pub usb: UsbConfig,
    pub convert: ConvertConfig,
    pub panel: crate::panel::PanelConfig,
    pub notify: crate::notify::NotifyConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Address and port of the status page and API.
    pub listen: SocketAddr,
    /// Bearer token for the controls; empty: generated once and kept in
    /// `state_dir/token`. A set token must be strong (`web::token_weakness`).
    pub token: String,
    /// Names the box also answers to (besides `localhost`, its host name,
    /// `HOSTNAME.local` and its addresses): a request for any other `Host`
    /// is refused, against DNS rebinding.
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsbConfig {
    /// Drives are mounted in folders below this one.
    pub mount_root: PathBuf,
    /// Also treat loop devices (disk images attached with `losetup`) as drives.
    pub allow_loop: bool,
    /// Owner and permissions given to files on FAT, exFAT and NTFS drives,
    /// which have no Unix owners of their own.
    pub uid: u32,
    pub gid: u32,
    pub umask: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConvertConfig {
    /// Conversions at once; 0 means one per CPU core.
    pub jobs: usize,
    /// FLAC compression level, 0 to 8 (all lossless).
    pub compression_level: u8,
    /// Attempts for a job that fails for a passing reason (I/O, killed FFmpeg).
    pub max_attempts: u32,
    /// Niceness of a job's processes (FFmpeg, flac; default 10).
    pub nice: Option<i32>,
    /// CPUs a job's processes may use; empty: the fast cluster on
    /// big.LITTLE, else any.
    pub cpus: Vec<usize>,
    /// FFmpeg decoders sharing one long DTS-HD MA track while cores would
    /// otherwise sit idle; unset: from 4 usable cores, two fewer than them
    /// (2 to 4), else 1; 1 turns this off.
    pub decode_lanes: Option<usize>,
    /// Convert every title of a Blu-ray or DVD disc at least this many
    /// seconds long, not only its main one; unset: the main title only.
    /// FFmpeg lists no Blu-ray title under 180 s.
    pub all_titles_over_seconds: Option<u32>,
}

impl ConvertConfig {
    /// Which titles of a disc the box converts.
    pub fn disc_titles(&self) -> crate::media::probe::DiscTitles {
        use crate::media::probe::DiscTitles;
        self.all_titles_over_seconds
            .map_or(DiscTitles::Main, DiscTitles::AtLeast)
    }

    pub fn overrides(&self) -> crate::hw::tuning::Overrides {
        crate::hw::tuning::Overrides {
            workers: (self.jobs > 0).then_some(self.jobs),
            nice: self.nice,
            cpus: self.cpus.clone(),
            decode_lanes: self.decode_lanes,
            flac_threads: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: PathBuf::from("/var/lib/dtsflac"),
            web: WebConfig::default(),
            usb: UsbConfig::default(),
            convert: ConvertConfig::default(),
            panel: crate::panel::PanelConfig::default(),
            notify: crate::notify::NotifyConfig::default(),
        }
    }
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            token: String::new(),
            hosts: Vec::new(),
        }
    }
}

impl Default for UsbConfig {
    fn default() -> Self {
        UsbConfig {
            mount_root: PathBuf::from("/media/dtsflac"),
            allow_loop: false,
            uid: 0,
            gid: 0,
            umask: "022".into(),
        }
    }
}

impl Default for ConvertConfig {
    fn default() -> Self {
        ConvertConfig {
            jobs: 0,
            compression_level: crate::media::convert::DEFAULT_COMPRESSION_LEVEL,
            max_attempts: 3,
            nice: None,
            cpus: Vec::new(),
            decode_lanes: None,
            all_titles_over_seconds: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Invalid { path: String, message: String },
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses and validates; the message names the offending key.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string().trim().to_string())?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let bad = |key: &str, why: String| Err(format!("`{key}` {why}"));
        if !self.state_dir.is_absolute() {
            return bad("state_dir", "must be an absolute path".into());
        }
        if !self.usb.mount_root.is_absolute() {
            return bad("usb.mount_root", "must be an absolute path".into());
        }
        if self.usb.umask.len() > 4
            || self.usb.umask.is_empty()
            || !self.usb.umask.chars().all(|c| ('0'..='7').contains(&c))
        {
            return bad(
                "usb.umask",
                format!(
                    "must be an octal mask like \"022\", not {:?}",
                    self.usb.umask
                ),
            );
        }
        if self.convert.compression_level > 8 {
            return bad(
                "convert.compression_level",
                format!("must be 0 to 8, not {}", self.convert.compression_level),
            );
        }
        if self.convert.jobs > 64 {
            return bad(
                "convert.jobs",
                format!("must be 0 (one per core) to 64, not {}", self.convert.jobs),
            );
        }
        if self.convert.nice.is_some_and(|n| !(-20..=19).contains(&n)) {
            return bad("convert.nice", "must be -20 to 19".into());
        }
        if self.convert.max_attempts == 0 {
            return bad("convert.max_attempts", "must be at least 1".into());
        }
        if self.web.token.chars().any(char::is_whitespace) {
            return bad("web.token", "must not contain spaces".into());
        }
        if !self.web.token.is_empty() {
            if let Some(why) = crate::web::token_weakness(&self.web.token) {
                return bad(
                    "web.token",
                    format!(
                        "is too easy to guess: it {why}. Set at least {} characters that are not common words, such as the output of `head -c 12 /dev/urandom | base64`, or leave `web.token` empty: the box then makes a strong one, keeps it in state_dir/token and shows it on the panel (NEXT to the token screen, then hold NEXT)",
                        crate::web::MIN_TOKEN_LEN
                    ),
                );
            }
        }
        for name in &self.web.hosts {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            {
                return bad(
                    "web.hosts",
                    format!("must hold host names like \"dtsflac.lan\" (no port), not {name:?}"),
                );
            }
        }
        self.panel.validate()?;
        self.notify.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.web.listen.port(), 8080);
        assert!(!c.usb.allow_loop);
        assert_eq!(c.usb.mount_root, PathBuf::from("/media/dtsflac"));
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = Config::parse("[convert]\ncompression_level = 12\n").unwrap_err();
        assert!(e.contains("convert.compression_level"), "{e}");
        let e = Config::parse("[web]\nlisten = \"not an address\"\n").unwrap_err();
        assert!(e.contains("listen"), "{e}");
        let e = Config::parse("[usb]\nallow_lop = true\n").unwrap_err();
        assert!(e.contains("allow_lop"), "{e}");
        let e = Config::parse("state_dir = \"relative\"\n").unwrap_err();
        assert!(e.contains("state_dir"), "{e}");
        let e = Config::parse("[web]\nhosts = [\"box:8080\"]\n").unwrap_err();
        assert!(e.contains("web.hosts"), "{e}");
    }

    #[test]
    fn a_weak_token_is_refused_with_how_to_set_a_good_one() {
        for weak in [
            "demo-token",
            "test-token-123",
            "password1234",
            "000000000000",
        ] {
            let e = Config::parse(&format!("[web]\ntoken = \"{weak}\"\n")).unwrap_err();
            assert!(e.contains("web.token") && e.contains("/dev/urandom"), "{e}");
        }
        let c = Config::parse("[web]\ntoken = \"Kq7-Vx2m-Lp9R\"\nhosts = [\"dtsflac.lan\"]\n");
        assert_eq!(c.unwrap().web.hosts, ["dtsflac.lan"]);
        // Empty: the box makes one.
        assert!(Config::parse("[web]\ntoken = \"\"\n").is_ok());
    }
}
