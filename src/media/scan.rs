//! A safe walk over folders the user (or a plugged-in drive) hands us.
//!
//! The walk never leaves the device it started on (no wandering into other
//! mounts), never follows a symlink out of the tree (a drive can carry a link
//! to `/etc`), never recurses through symlinked folders (loops), lists no
//! FIFO, socket or device, and stops at a depth and a file count so a
//! hostile or broken drive cannot hang the box. The probe then opens each
//! file with `safe_open`, which refuses a symlink (one inside the tree is
//! listed, then reported) and anything that is not a regular file.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::probe::{self, ProbeError, Track};
use super::tools::Tools;

#[derive(Debug, Clone)]
pub struct ScanLimits {
    pub max_depth: usize,
    pub max_entries: usize,
    /// Set from outside (an eject, a shutdown) to end the scan early; what
    /// was found so far is returned. Looked at before every file.
    pub stop: Option<Arc<AtomicBool>>,
    /// Where the scan tells how far it has got, for whoever shows it.
    pub progress: Option<Arc<ScanProgress>>,
}

/// How far a scan has got: counters it updates as it goes, which anyone
/// holding them (the daemon, for the page and the panel) may read at any
/// time.
#[derive(Debug, Default)]
pub struct ScanProgress {
    listed: AtomicUsize,
    looked_at: AtomicUsize,
    tracks_found: AtomicUsize,
    folder: Mutex<PathBuf>,
}

/// What `ScanProgress` says at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ScanCounts {
    /// Files the walk found worth a look so far.
    pub files_listed: usize,
    /// Files looked into so far.
    pub files_looked_at: usize,
    pub tracks_found: usize,
    /// The folder being read (listed, or whose file is being looked into).
    pub folder: PathBuf,
}

impl ScanProgress {
    pub fn counts(&self) -> ScanCounts {
        ScanCounts {
            files_listed: self.listed.load(Ordering::Relaxed),
            files_looked_at: self.looked_at.load(Ordering::Relaxed),
            tracks_found: self.tracks_found.load(Ordering::Relaxed),
            folder: self.folder.lock().map(|f| f.clone()).unwrap_or_default(),
        }
    }

    fn reading(&self, folder: &Path) {
        if let Ok(mut f) = self.folder.lock() {
            if f.as_path() != folder {
                folder.clone_into(&mut f);
            }
        }
    }
}

impl Default for ScanLimits {
    fn default() -> Self {
        ScanLimits {
            max_depth: 32,
            max_entries: 200_000,
            stop: None,
            progress: None,
        }
    }
}

impl ScanLimits {
    fn stopped(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
    }
}

/// A track and the folder the user named that it was found under (for
/// mirroring the tree with `--output-dir`).
#[derive(Debug, Clone)]
pub struct Found {
    pub root: PathBuf,
    pub track: Track,
}

/// A file that should have held DTS but cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct ScanReport {
    pub found: Vec<Found>,
    pub problems: Vec<Problem>,
}

/// Folders whose contents are never music: operating-system litter on USB drives.
const SKIPPED_DIRS: &[&str] = &["System Volume Information", "$RECYCLE.BIN", "lost+found"];

/// Lists candidate files below each root, safely. Roots that are files are
/// taken as they are, whatever their name.
pub fn walk(roots: &[PathBuf], limits: &ScanLimits) -> (Vec<(PathBuf, PathBuf)>, Vec<Problem>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for root in roots {
        let root = match std::fs::canonicalize(root) {
            Ok(r) => r,
            Err(e) => {
                problems.push(Problem {
                    path: root.clone(),
                    reason: format!("cannot open: {e}"),
                });
                continue;
            }
        };
        match std::fs::metadata(&root) {
            Ok(m) if m.is_file() => {
                files.push((root.parent().unwrap_or(&root).to_path_buf(), root.clone()))
            }
            Ok(m) if m.is_dir() => {
                let mut seen = 0usize;
                walk_dir(
                    &root,
                    &root,
                    m.dev(),
                    0,
                    limits,
                    &mut seen,
                    &mut files,
                    &mut problems,
                );
            }
            Ok(_) => problems.push(Problem {
                path: root.clone(),
                reason: "not a file or folder".into(),
            }),
            Err(e) => problems.push(Problem {
                path: root.clone(),
                reason: format!("cannot open: {e}"),
            }),
        }
    }
    (files, problems)
}

#[allow(clippy::too_many_arguments)]
fn walk_dir(
    root: &Path,
    dir: &Path,
    dev: u64,
    depth: usize,
    limits: &ScanLimits,
    seen: &mut usize,
    files: &mut Vec<(PathBuf, PathBuf)>,
    problems: &mut Vec<Problem>,
) {
    if let Some(p) = &limits.progress {
        p.reading(dir);
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            problems.push(Problem {
                path: dir.to_path_buf(),
                reason: format!("cannot list the folder: {e}"),
            });
            return;
        }
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        if limits.stopped() {
            return;
        }
        *seen += 1;
        if *seen > limits.max_entries {
            if *seen == limits.max_entries + 1 {
                problems.push(Problem {
                    path: root.to_path_buf(),
                    reason: format!(
                        "stopped after {} entries; the rest was not scanned",
                        limits.max_entries
                    ),
                });
            }
            return;
        }
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // macOS resource forks ("._Film.dts") look like media but are not.
        if name.starts_with("._") {
            continue;
        }
        // The listing's own file type: no stat for the files (covers and
        // MP3s are never looked at; the probe checks what it opens).
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_symlink() {
            // Follow a link only to a regular file inside the same tree.
            if let Ok(target) = std::fs::canonicalize(&path) {
                if target.starts_with(root) && target.is_file() && probe::is_candidate(&path) {
                    files.push((root.to_path_buf(), path));
                }
            }
        } else if kind.is_dir() {
            if name.starts_with('.') || SKIPPED_DIRS.contains(&name.as_ref()) {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if !meta.is_dir() || meta.dev() != dev {
                continue;
            }
            if depth + 1 >= limits.max_depth {
                problems.push(Problem {
                    path,
                    reason: format!("deeper than {} folders; not scanned", limits.max_depth),
                });
                continue;
            }
            walk_dir(root, &path, dev, depth + 1, limits, seen, files, problems);
            if let Some(p) = &limits.progress {
                p.reading(dir);
            }
        } else if kind.is_file() && probe::is_candidate(&path) {
            files.push((root.to_path_buf(), path));
            if let Some(p) = &limits.progress {
                p.listed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Walks the roots and probes every candidate, a few at a time.
pub fn scan(tools: &Tools, roots: &[PathBuf], limits: ScanLimits) -> ScanReport {
    let (files, problems) = walk(roots, &limits);
    probe_all(tools, &files, problems, &limits)
}

/// Probes the files a walk listed. Each is opened with `safe_open` (and
/// only that descriptor reaches ffprobe): one that has become a FIFO, a
/// device or a symlink since the walk is a problem named by its path.
fn probe_all(
    tools: &Tools,
    files: &[(PathBuf, PathBuf)],
    mut problems: Vec<Problem>,
    limits: &ScanLimits,
) -> ScanReport {
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4);
    let next = AtomicUsize::new(0);
    let results: Vec<(usize, Result<Vec<Track>, ProbeError>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let (next, files) = (&next, files);
                s.spawn(move || {
                    let mut out = Vec::new();
                    loop {
                        if limits.stopped() {
                            break;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((_, path)) = files.get(i) else { break };
                        let progress = limits.progress.as_deref();
                        if let (Some(p), Some(folder)) = (progress, path.parent()) {
                            p.reading(folder);
                        }
                        let result = probe::probe_file(tools, path);
                        if let Some(p) = progress {
                            p.looked_at.fetch_add(1, Ordering::Relaxed);
                            let tracks = result.as_ref().map_or(0, Vec::len);
                            p.tracks_found.fetch_add(tracks, Ordering::Relaxed);
                        }
                        out.push((i, result));
                    }
                    out
                })
            })
            .collect();
        let mut all: Vec<_> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("probe worker panicked"))
            .collect();
        all.sort_by_key(|(i, _)| *i);
        all
    });
    let mut found = Vec::new();
    for (i, result) in results {
        let (root, path) = &files[i];
        match result {
            Ok(tracks) => found.extend(tracks.into_iter().map(|track| Found {
                root: root.clone(),
                track,
            })),
            Err(ProbeError::NotDts) => {}
            Err(ProbeError::Invalid(reason)) => problems.push(Problem {
                path: path.clone(),
                reason,
            }),
        }
    }
    ScanReport { found, problems }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_out_of_the_tree_are_not_followed() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.dts"), b"x").unwrap();
        let tree = tempfile::tempdir().unwrap();
        std::fs::write(tree.path().join("inside.dts"), b"x").unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret.dts"),
            tree.path().join("escape.dts"),
        )
        .unwrap();
        std::os::unix::fs::symlink(outside.path(), tree.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(
            tree.path().join("inside.dts"),
            tree.path().join("alias.dts"),
        )
        .unwrap();
        let (files, _) = walk(&[tree.path().to_path_buf()], &ScanLimits::default());
        let names: Vec<String> = files
            .iter()
            .map(|(_, p)| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["alias.dts", "inside.dts"]);
    }

    #[test]
    fn progress_counts_what_was_listed_looked_at_and_found() {
        let tools = Tools::locate_capable().expect("ffmpeg and flac are installed");
        let sample = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/samples/dcadec/xll_51_24_48_768.dtshd");
        let tree = tempfile::tempdir().unwrap();
        let (music, films) = (tree.path().join("Music"), tree.path().join("Films"));
        for d in [&music, &films] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::copy(&sample, films.join("Concert.dtshd")).unwrap();
        for i in 0..3 {
            std::fs::write(music.join(format!("{i}.wav")), b"RIFF\0\0\0\0WAVE").unwrap();
        }
        std::fs::write(music.join("cover.jpg"), b"\xff\xd8").unwrap();
        let progress = Arc::new(ScanProgress::default());
        let limits = ScanLimits {
            progress: Some(progress.clone()),
            ..ScanLimits::default()
        };
        let report = scan(&tools, &[tree.path().to_path_buf()], limits.clone());
        assert_eq!(report.found.len(), 1);
        let counts = progress.counts();
        assert_eq!(
            (
                counts.files_listed,
                counts.files_looked_at,
                counts.tracks_found
            ),
            (4, 4, 1)
        );
        // Files are looked into in name order: Music's come last.
        assert_eq!(counts.folder, std::fs::canonicalize(&music).unwrap());

        // Stopped before it starts: listed, nothing looked into.
        let stopped = Arc::new(ScanProgress::default());
        let (files, _) = walk(&[tree.path().to_path_buf()], &limits);
        let stop = ScanLimits {
            stop: Some(Arc::new(AtomicBool::new(true))),
            progress: Some(stopped.clone()),
            ..ScanLimits::default()
        };
        let report = probe_all(&tools, &files, vec![], &stop);
        assert!(report.found.is_empty());
        assert_eq!(stopped.counts().files_looked_at, 0);
    }

    #[test]
    fn depth_and_entry_limits_are_reported() {
        let tree = tempfile::tempdir().unwrap();
        let mut deep = tree.path().to_path_buf();
        for i in 0..5 {
            deep.push(format!("d{i}"));
        }
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("far.dts"), b"x").unwrap();
        let (files, problems) = walk(
            &[tree.path().to_path_buf()],
            &ScanLimits {
                max_depth: 3,
                max_entries: 100,
                ..ScanLimits::default()
            },
        );
        assert!(files.is_empty());
        assert!(problems[0].reason.contains("deeper than 3"), "{problems:?}");
    }

    #[test]
    fn files_that_turn_into_fifos_or_links_after_the_walk_are_reported_not_read() {
        let tools = Tools::locate_capable().expect("ffmpeg and flac are installed");
        let sample = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/samples/dcadec/xll_51_24_48_768.dtshd");
        let sample =
            std::fs::read(&sample).expect("../shared/samples/dcadec is beside the project");
        let tree = tempfile::tempdir().unwrap();
        let d = tree.path();
        for name in [
            "Good.dtshd",
            "Fifo.dtshd",
            "Zero.dts",
            "Rip.wav",
            "Cd.flac",
            "Film.mkv",
        ] {
            std::fs::write(d.join(name), &sample).unwrap();
        }
        let (files, problems) = walk(&[d.to_path_buf()], &ScanLimits::default());
        assert_eq!(files.len(), 6, "{files:?}");
        // Swapped between the walk and the probe.
        for name in ["Fifo.dtshd", "Rip.wav", "Cd.flac", "Film.mkv"] {
            let p = d.join(name);
            std::fs::remove_file(&p).unwrap();
            let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
            // SAFETY: a valid C string.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        }
        std::fs::remove_file(d.join("Zero.dts")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", d.join("Zero.dts")).unwrap();

        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let report = probe_all(&tools, &files, problems, &ScanLimits::default());
            let _ = tx.send(report);
        });
        let report = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the probe blocked on a FIFO or read /dev/zero");
        let found: Vec<_> = report.found.iter().map(|f| f.track.path.clone()).collect();
        assert_eq!(found, vec![d.join("Good.dtshd")]);
        let reasons: Vec<(String, String)> = report
            .problems
            .iter()
            .map(|p| {
                let name = p.path.file_name().unwrap().to_string_lossy().into_owned();
                (name, p.reason.clone())
            })
            .collect();
        assert_eq!(reasons.len(), 5, "{reasons:?}");
        for (name, reason) in &reasons {
            let what = if name == "Zero.dts" {
                "is a symbolic link"
            } else {
                "is a FIFO"
            };
            assert!(
                reason.contains(&format!("{name} {what}")),
                "{name}: {reason}"
            );
            assert!(!reason.contains('\n'), "{reason}");
        }
    }
}
