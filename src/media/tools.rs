//! Locating the executables a conversion runs and checking they can do the
//! job: `ffmpeg` (with the `dca` decoder) and `ffprobe` decode and probe the
//! DTS; libFLAC's `flac` encodes and verifies the FLAC.
//!
//! They are sidecar processes: nothing is ever downloaded. Tests and odd
//! installs can point at other executables with `DTSFLAC_FFMPEG`,
//! `DTSFLAC_FFPROBE` and `DTSFLAC_FLAC`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const INSTALL_HINT: &str =
    "install FFmpeg and FLAC with `sudo apt-get install ffmpeg flac` (Debian, Raspberry Pi OS, Ubuntu)";

#[derive(Debug, Clone)]
pub struct Tools {
    pub ffmpeg: PathBuf,
    pub ffprobe: PathBuf,
    /// First line of `ffmpeg -version`, e.g. "ffmpeg version 5.1.6-0+deb12u1".
    pub ffmpeg_version: String,
    /// libFLAC's command-line encoder.
    pub flac: PathBuf,
    /// What `flac --version` says, e.g. "flac 1.4.2".
    pub flac_version: String,
    /// The `dtsflac` executable, for helper processes: the check of a
    /// written FLAC (`check-flac`) and libbluray reading an image's files
    /// (`bluray-image-files`). `None` (a test harness, a library user):
    /// they run in-process.
    pub checker: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("`{0}` was not found or does not run: {INSTALL_HINT}")]
    Missing(String),
    #[error("{0} lacks {1}: {INSTALL_HINT} (a full build with the DTS decoder)")]
    Incapable(String, &'static str),
}

fn from_env(var: &str, default: PathBuf) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or(default)
}

fn run_version(path: &PathBuf, flag: &str) -> Option<String> {
    let out = Command::new(path)
        .arg(flag)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(str::to_string)
}

fn listing(path: &PathBuf, what: &str) -> String {
    Command::new(path)
        .args(["-hide_banner", what])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

impl Tools {
    /// Finds the executables and checks that they run.
    pub fn locate() -> Result<Tools, ToolError> {
        Tools::locate_and_list(tool_paths(), false).map(|(tools, _)| tools)
    }

    /// Finds the executables and checks the decoders we rely on. The
    /// answers are kept in the user's cache folder and reused while the
    /// three executables are the same files: asking costs four starts of
    /// FFmpeg (~0.25 s), which a one-track `dtsflac convert` would wait for.
    pub fn locate_capable() -> Result<Tools, ToolError> {
        Tools::locate_capable_cached(tool_paths(), default_cache_file().as_deref())
    }

    fn locate_capable_cached(
        paths: (PathBuf, PathBuf, PathBuf),
        cache: Option<&Path>,
    ) -> Result<Tools, ToolError> {
        let (ffmpeg, ffprobe, flac) = &paths;
        let fingerprint = fingerprint(&[ffmpeg, ffprobe, flac]);
        if let (Some(cache), Some(fp)) = (cache, &fingerprint) {
            if let Some(tools) = read_cache(cache, fp, ffmpeg, ffprobe, flac) {
                return Ok(tools);
            }
        }
        let (tools, decoders) = Tools::locate_and_list(paths, true)?;
        tools.check_decoders(&decoders)?;
        if let (Some(cache), Some(fp)) = (cache, &fingerprint) {
            // Only a capable set is remembered; a failed write costs the next
            // run its quarter second, nothing more.
            let _ = write_cache(cache, fp, &tools);
        }
        Ok(tools)
    }

    /// All the start-up questions at once: each start of FFmpeg costs ~0.1 s
    /// on a small board, and a conversion waits for them.
    fn locate_and_list(
        (ffmpeg, ffprobe, flac): (PathBuf, PathBuf, PathBuf),
        list_decoders: bool,
    ) -> Result<(Tools, String), ToolError> {
        let (ffmpeg_version, ffprobe_version, flac_version, decoders) = std::thread::scope(|s| {
            let probe = s.spawn(|| run_version(&ffprobe, "-version"));
            let flac = s.spawn(|| run_version(&flac, "--version"));
            let decoders = s.spawn(|| {
                if list_decoders {
                    listing(&ffmpeg, "-decoders")
                } else {
                    String::new()
                }
            });
            (
                run_version(&ffmpeg, "-version"),
                probe.join().ok().flatten(),
                flac.join().ok().flatten(),
                decoders.join().unwrap_or_default(),
            )
        });
        let ffmpeg_version = ffmpeg_version.ok_or_else(|| Missing(&ffmpeg))?;
        ffprobe_version.ok_or_else(|| Missing(&ffprobe))?;
        let flac_version = flac_version.ok_or_else(|| Missing(&flac))?;
        let tools = Tools {
            ffmpeg,
            ffprobe,
            ffmpeg_version,
            flac,
            flac_version,
            checker: own_executable(),
        };
        Ok((tools, decoders))
    }

    pub fn check_capabilities(&self) -> Result<(), ToolError> {
        self.check_decoders(&listing(&self.ffmpeg, "-decoders"))
    }

    fn check_decoders(&self, decoders: &str) -> Result<(), ToolError> {
        let name = self.ffmpeg.display().to_string();
        let has = |word: &str| {
            decoders
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some(word))
        };
        if !has("dca") {
            return Err(ToolError::Incapable(name, "the DTS decoder (dca)"));
        }
        // DTS-CD rips stored as FLAC are unpacked by FFmpeg's FLAC decoder.
        if !has("flac") {
            return Err(ToolError::Incapable(name, "the FLAC decoder"));
        }
        Ok(())
    }

    /// The version number alone, e.g. "5.1.6-0+deb12u1".
    pub fn short_version(&self) -> &str {
        self.ffmpeg_version
            .split_whitespace()
            .nth(2)
            .unwrap_or("unknown")
    }

    /// The libFLAC version alone, e.g. "1.4.2".
    pub fn flac_short_version(&self) -> &str {
        self.flac_version
            .split_whitespace()
            .nth(1)
            .unwrap_or("unknown")
    }

    /// Whether `flac -j N` encodes with N threads (from the version alone,
    /// which is known without starting anything).
    pub fn flac_has_threads(&self) -> bool {
        flac_has_threads(Version::from_version_line(&self.flac_version))
    }

    /// Every optional feature, asking FFmpeg for its protocols and demuxers
    /// (two more starts: for `doctor`, not for each conversion).
    pub fn features(&self) -> ToolFeatures {
        let (protocols, demuxers) = std::thread::scope(|s| {
            let demuxers = s.spawn(|| listing(&self.ffmpeg, "-demuxers"));
            (
                listing(&self.ffmpeg, "-protocols"),
                demuxers.join().unwrap_or_default(),
            )
        });
        ToolFeatures::from_outputs(
            &self.ffmpeg_version,
            &self.flac_version,
            &protocols,
            &demuxers,
        )
    }
}

/// A tool's release as numbers, e.g. 7.1.5 for "ffmpeg version 7.1.5-0+deb13u1".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Version {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// The release in a `-version`/`--version` line: "ffmpeg version
    /// 5.1.6-0+deb12u1", "ffmpeg version n7.1" (FFmpeg's own builds),
    /// "flac 1.5.0". `None` for a git snapshot ("ffmpeg version
    /// N-118000-g…", "flac git-…"), whose features cannot be told from it.
    pub fn from_version_line(line: &str) -> Option<Version> {
        // The word after "version" ("ffmpeg version X Copyright (c) 2000-…"),
        // else after the name ("flac X").
        let mut words = line.split_whitespace();
        let word = if line.split_whitespace().any(|w| w == "version") {
            words.find(|w| *w == "version")?;
            words.next()?
        } else {
            words.nth(1)?
        };
        let word = word.strip_prefix('n').unwrap_or(word);
        if !word.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        let digits: String = word
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let mut parts = digits.split('.').map(str::parse::<u32>);
        let major = parts.next()?.ok()?;
        let minor = parts.next().unwrap_or(Ok(0)).ok()?;
        let patch = parts.next().unwrap_or(Ok(0)).ok()?;
        Some(Version::new(major, minor, patch))
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// libFLAC 1.5 added encoder threads (`-j`/`--threads`).
pub const FLAC_THREADS_SINCE: Version = Version::new(1, 5, 0);

fn flac_has_threads(flac: Option<Version>) -> bool {
    flac.is_some_and(|v| v >= FLAC_THREADS_SINCE)
}

/// What the installed FFmpeg and libFLAC enable beyond what every
/// conversion needs (the DTS and FLAC decoders, `check_capabilities`).
/// Everything that differs between tool releases is decided here, from
/// what the tools say about themselves, never from a distribution's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolFeatures {
    pub ffmpeg: Option<Version>,
    pub flac: Option<Version>,
    /// `ffmpeg -protocols` lists `bluray` as an input (FFmpeg built with
    /// libbluray): Blu-ray discs and BDMV folders can be read as titles.
    pub bluray_input: bool,
    /// `ffmpeg -demuxers` lists `dvdvideo` (FFmpeg 7 and later, with
    /// libdvdnav): DVD-Video folders and images can be read as titles.
    pub dvdvideo_demuxer: bool,
    /// libFLAC 1.5 or later: `flac -j N` encodes one track with N threads.
    pub flac_threads: bool,
}

impl ToolFeatures {
    /// From the tools' answers: the first line of `ffmpeg -version`, `flac
    /// --version`, `ffmpeg -hide_banner -protocols` and `-demuxers`.
    pub fn from_outputs(
        ffmpeg_version: &str,
        flac_version: &str,
        protocols: &str,
        demuxers: &str,
    ) -> ToolFeatures {
        let flac = Version::from_version_line(flac_version);
        // Input protocols are listed between "Input:" and "Output:".
        let bluray_input = protocols
            .lines()
            .skip_while(|l| l.trim() != "Input:")
            .take_while(|l| l.trim() != "Output:")
            .any(|l| l.trim() == "bluray");
        // " D   dvdvideo        DVD-Video": flags, then the name.
        let dvdvideo_demuxer = demuxers.lines().any(|l| {
            let mut words = l.split_whitespace();
            words.next().is_some_and(|flags| flags.starts_with('D'))
                && words
                    .next()
                    .is_some_and(|name| name.split(',').any(|n| n == "dvdvideo"))
        });
        ToolFeatures {
            ffmpeg: Version::from_version_line(ffmpeg_version),
            flac,
            bluray_input,
            dvdvideo_demuxer,
            flac_threads: flac_has_threads(flac),
        }
    }
}

/// The executables as configured: `DTSFLAC_*`, or found on `PATH`.
fn tool_paths() -> (PathBuf, PathBuf, PathBuf) {
    (
        from_env("DTSFLAC_FFMPEG", ffmpeg_sidecar::paths::ffmpeg_path()),
        from_env("DTSFLAC_FFPROBE", ffmpeg_sidecar::ffprobe::ffprobe_path()),
        from_env("DTSFLAC_FLAC", PathBuf::from("flac")),
    )
}

/// `$CACHE_DIRECTORY/tools` (systemd's `CacheDirectory=`), else
/// `$XDG_CACHE_HOME/dtsflac/tools` or `~/.cache/dtsflac/tools`.
fn default_cache_file() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CACHE_DIRECTORY").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(dir).join("tools"));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("dtsflac").join("tools"))
}

/// The file a command name runs: as given when it has a slash, else the
/// first executable of that name on `PATH` (as `Command` would find it).
pub fn resolve(program: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.components().count() > 1 {
        return runnable(program).then(|| program.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| runnable(p))
}

/// Identifies the executables by what they resolve to and by their inode,
/// size and change times: an upgrade or a different `PATH` changes it. The
/// dtsflac version is part of it, so a new dtsflac asks again.
fn fingerprint(programs: &[&Path]) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let mut fp = format!("dtsflac {}", env!("CARGO_PKG_VERSION"));
    for program in programs {
        let path = std::fs::canonicalize(resolve(program)?).ok()?;
        let m = std::fs::metadata(&path).ok()?;
        fp.push_str(&format!(
            "|{}:{}:{}:{}:{}.{}:{}.{}",
            path.display(),
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec()
        ));
    }
    Some(fp)
}

fn read_cache(
    cache: &Path,
    fingerprint: &str,
    ffmpeg: &Path,
    ffprobe: &Path,
    flac: &Path,
) -> Option<Tools> {
    let text = std::fs::read_to_string(cache).ok()?;
    let mut lines = text.lines();
    if lines.next()? != fingerprint {
        return None;
    }
    let ffmpeg_version = lines.next()?.to_string();
    let flac_version = lines.next()?.to_string();
    if ffmpeg_version.is_empty() || flac_version.is_empty() || lines.next() != Some("end") {
        return None;
    }
    Some(Tools {
        ffmpeg: ffmpeg.to_path_buf(),
        ffprobe: ffprobe.to_path_buf(),
        ffmpeg_version,
        flac: flac.to_path_buf(),
        flac_version,
        checker: own_executable(),
    })
}

fn write_cache(cache: &Path, fingerprint: &str, tools: &Tools) -> std::io::Result<()> {
    let dir = cache.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    use std::io::Write;
    writeln!(
        temp,
        "{fingerprint}\n{}\n{}\nend",
        tools.ffmpeg_version, tools.flac_version
    )?;
    temp.persist(cache)?;
    Ok(())
}

/// This process's executable, when it is `dtsflac` itself.
fn own_executable() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    (exe.file_name()? == "dtsflac").then_some(exe)
}

#[allow(non_snake_case)]
fn Missing(path: &Path) -> ToolError {
    ToolError::Missing(path.display().to_string())
}

/// A path as the `flac` tool must see it: never as an option (`-x.flac`)
/// or as "stdin" (`-`).
pub fn flac_file_arg(path: &std::path::Path) -> OsString {
    if path.is_absolute() {
        path.as_os_str().to_owned()
    } else {
        std::path::Path::new(".").join(path).into_os_string()
    }
}

/// Prefixes a path so FFmpeg reads it as a file name, never as an option or
/// a protocol (`-y.dts`, `http:…`, names with colons).
pub fn ffmpeg_file_arg(path: &std::path::Path) -> OsString {
    let mut arg = OsString::from("file:");
    arg.push(path.as_os_str());
    arg
}

/// A disc folder as FFmpeg's `bluray:` input must see it. Always an
/// absolute path (ours are `/proc/self/fd/N`), so no part of it can be read
/// as an option.
pub fn bluray_arg(folder: &std::path::Path) -> OsString {
    let mut arg = OsString::from("bluray:");
    if folder.is_absolute() {
        arg.push(folder.as_os_str());
    } else {
        arg.push(std::path::Path::new("/proc/self/cwd").join(folder));
    }
    arg
}

/// A DVD title set's VOBs below its `VIDEO_TS` folder (`/proc/self/fd/N`),
/// read as one stream: `concat:file:…/VTS_01_1.VOB|file:…/VTS_01_2.VOB`.
/// The names are `dvd::title_sets`' (`VTS_nn_k.VOB`), which hold no `|`.
pub fn joined_vobs_arg(folder: &std::path::Path, vobs: &[String]) -> OsString {
    let mut arg = OsString::from("concat:");
    for (i, vob) in vobs.iter().enumerate() {
        if i > 0 {
            arg.push("|");
        }
        arg.push(ffmpeg_file_arg(&folder.join(vob)));
    }
    arg
}

/// Byte ranges `(file, start, length)` read as one stream: a DVD image's
/// VOBs (ranges of `/proc/self/fd/N`), or a title's cells (ranges of a
/// `VIDEO_TS`'s VOBs): `concat:subfile,,start,S,end,E,,:file:…|…` (`end`
/// is exclusive).
pub fn file_ranges_arg(ranges: &[(PathBuf, u64, u64)]) -> OsString {
    let mut arg = OsString::from("concat:");
    for (i, (file, start, len)) in ranges.iter().enumerate() {
        if i > 0 {
            arg.push("|");
        }
        arg.push(format!("subfile,,start,{start},end,{},,:", start + len));
        arg.push(ffmpeg_file_arg(file));
    }
    arg
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A wrapper that counts its runs in `count`, then runs the real tool.
    fn counting_wrapper(dir: &Path, name: &str, real: &str, count: &Path) -> PathBuf {
        let real = resolve(Path::new(real)).expect("the real tool is installed");
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho run >> '{}'\nexec '{}' \"$@\"\n",
                count.display(),
                real.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn runs(count: &Path) -> usize {
        std::fs::read_to_string(count).map_or(0, |s| s.lines().count())
    }

    #[test]
    fn tool_checks_are_remembered_until_an_executable_changes() {
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("runs");
        let paths = (
            counting_wrapper(dir.path(), "ffmpeg", "ffmpeg", &count),
            counting_wrapper(dir.path(), "ffprobe", "ffprobe", &count),
            counting_wrapper(dir.path(), "flac", "flac", &count),
        );
        let cache = dir.path().join("cache/tools");

        let first = Tools::locate_capable_cached(paths.clone(), Some(&cache)).unwrap();
        let asked = runs(&count);
        assert!(asked >= 4, "the first run asks every tool ({asked} runs)");
        assert!(
            first.ffmpeg_version.starts_with("ffmpeg version"),
            "{}",
            first.ffmpeg_version
        );
        assert!(
            first.flac_version.starts_with("flac "),
            "{}",
            first.flac_version
        );

        let second = Tools::locate_capable_cached(paths.clone(), Some(&cache)).unwrap();
        assert_eq!(runs(&count), asked, "a second run starts no tool");
        assert_eq!(second.ffmpeg_version, first.ffmpeg_version);
        assert_eq!(second.flac_version, first.flac_version);
        assert_eq!(second.ffmpeg, paths.0);

        // An upgraded flac (here: the same script rewritten) is asked again.
        let flac = std::fs::read(&paths.2).unwrap();
        std::fs::remove_file(&paths.2).unwrap();
        std::fs::write(&paths.2, flac).unwrap();
        std::fs::set_permissions(&paths.2, std::fs::Permissions::from_mode(0o755)).unwrap();
        Tools::locate_capable_cached(paths.clone(), Some(&cache)).unwrap();
        assert!(
            runs(&count) >= asked + 4,
            "a changed executable is checked again"
        );

        // A tool that cannot decode DTS is never remembered as capable.
        let no_dts = dir.path().join("ffmpeg-no-dts");
        std::fs::write(
            &no_dts,
            format!(
                "#!/bin/sh\nfor a; do [ \"$a\" = -decoders ] && exit 0; done\nexec '{}' \"$@\"\n",
                resolve(Path::new("ffmpeg")).unwrap().display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&no_dts, std::fs::Permissions::from_mode(0o755)).unwrap();
        let incapable = (no_dts, paths.1.clone(), paths.2.clone());
        for _ in 0..2 {
            let err = Tools::locate_capable_cached(incapable.clone(), Some(&cache)).unwrap_err();
            assert!(matches!(err, ToolError::Incapable(..)), "{err}");
        }
    }

    // What Debian 12's (FFmpeg 5.1, libFLAC 1.4.2) and Debian 13's (FFmpeg
    // 7.1, libFLAC 1.5.0; Raspberry Pi OS trixie) tools answered.
    const FFMPEG_51: &str =
        "ffmpeg version 5.1.9-0+deb12u1 Copyright (c) 2000-2026 the FFmpeg developers";
    const FFMPEG_71: &str =
        "ffmpeg version 7.1.5-0+deb13u1 Copyright (c) 2000-2026 the FFmpeg developers";

    #[test]
    fn versions_are_read_from_release_lines_not_from_copyright_years() {
        assert_eq!(
            Version::from_version_line(FFMPEG_51),
            Some(Version::new(5, 1, 9))
        );
        assert_eq!(
            Version::from_version_line(FFMPEG_71),
            Some(Version::new(7, 1, 5))
        );
        assert_eq!(
            Version::from_version_line("ffmpeg version n7.1 Copyright (c) 2000-2024"),
            Some(Version::new(7, 1, 0))
        );
        assert_eq!(
            Version::from_version_line("ffmpeg version N-118000-g1234abcd Copyright (c) 2000-2025"),
            None
        );
        assert_eq!(
            Version::from_version_line("flac 1.4.2"),
            Some(Version::new(1, 4, 2))
        );
        assert_eq!(
            Version::from_version_line("flac 1.5.0"),
            Some(Version::new(1, 5, 0))
        );
        assert_eq!(
            Version::from_version_line("flac git-2f9ee4ce 20250210"),
            None
        );
    }

    #[test]
    fn features_of_bookworm_and_trixie_tools() {
        let bookworm = ToolFeatures::from_outputs(
            FFMPEG_51,
            "flac 1.4.2",
            include_str!("testdata/ffmpeg-5.1-protocols.txt"),
            include_str!("testdata/ffmpeg-5.1-demuxers.txt"),
        );
        assert_eq!(
            bookworm,
            ToolFeatures {
                ffmpeg: Some(Version::new(5, 1, 9)),
                flac: Some(Version::new(1, 4, 2)),
                bluray_input: true,
                dvdvideo_demuxer: false,
                flac_threads: false,
            }
        );
        let trixie = ToolFeatures::from_outputs(
            FFMPEG_71,
            "flac 1.5.0",
            include_str!("testdata/ffmpeg-7.1-protocols.txt"),
            include_str!("testdata/ffmpeg-7.1-demuxers.txt"),
        );
        assert_eq!(
            trixie,
            ToolFeatures {
                ffmpeg: Some(Version::new(7, 1, 5)),
                flac: Some(Version::new(1, 5, 0)),
                bluray_input: true,
                dvdvideo_demuxer: true,
                flac_threads: true,
            }
        );
        // An FFmpeg built without libbluray lists no such input; `bluray`
        // among the outputs would not count.
        let no_bluray =
            include_str!("testdata/ffmpeg-7.1-protocols.txt").replace("\n  bluray\n", "\n");
        let outputs_only = format!("{no_bluray}  bluray\n");
        let f = ToolFeatures::from_outputs(FFMPEG_71, "flac 1.5.0", &outputs_only, "");
        assert!(!f.bluray_input && !f.dvdvideo_demuxer);
    }

    /// The installed tools (Debian 12's on the host, Debian 13's in CI's
    /// trixie step), asked another way: `-h demuxer=…`, `-h protocol=…` and
    /// `flac --help` must agree with what the listings and versions say.
    #[test]
    fn installed_tools_features_agree_with_their_own_help() {
        let tools = Tools::locate().expect("ffmpeg and flac are installed");
        let features = tools.features();
        let help = |program: &Path, args: &[&str]| {
            let out = Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        };
        let dvdvideo = help(&tools.ffmpeg, &["-hide_banner", "-h", "demuxer=dvdvideo"]);
        assert_eq!(
            features.dvdvideo_demuxer,
            dvdvideo.starts_with("Demuxer dvdvideo"),
            "{dvdvideo}"
        );
        let bluray = help(&tools.ffmpeg, &["-hide_banner", "-h", "protocol=bluray"]);
        assert_eq!(
            features.bluray_input,
            bluray.contains("bluray AVOptions"),
            "{bluray}"
        );
        let flac_help = help(&tools.flac, &["--help"]);
        assert_eq!(
            features.flac_threads,
            flac_help.contains("--threads="),
            "{}",
            tools.flac_version
        );
        assert_eq!(features.flac_threads, tools.flac_has_threads());
        assert!(features.ffmpeg.is_some(), "{}", tools.ffmpeg_version);
    }
}
