//! A safe walk over folders the user (or a plugged-in drive) hands us.
//!
//! The walk never leaves the device it started on (no wandering into other
//! mounts), never follows a symlink out of the tree (a drive can carry a link
//! to `/etc`), never recurses through symlinked folders (loops), lists no
//! FIFO, socket or device, and stops at a depth and a file count so a
//! hostile or broken drive cannot hang the box. The probe then opens each
//! file with `safe_open`, which refuses a symlink (one inside the tree is
//! listed, then reported) and anything that is not a regular file.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::bluray;
use super::dvd;
use super::probe::{self, DiscTitles, ProbeError, Track};
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
    /// Which titles of a Blu-ray disc are tracks.
    pub disc_titles: DiscTitles,
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
            disc_titles: DiscTitles::Main,
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
    /// The whole tree was looked at: a carried-over job whose source was
    /// not found is really gone.
    pub complete: bool,
}

/// Folders whose contents are never music: operating-system litter on USB drives.
const SKIPPED_DIRS: &[&str] = &["System Volume Information", "$RECYCLE.BIN", "lost+found"];

/// What a walk listed: (root, file) pairs, the problems met, and whether
/// it saw the whole tree (not stopped, capped or kept out of a folder).
#[derive(Debug, Default)]
pub struct Listing {
    pub files: Vec<(PathBuf, PathBuf)>,
    pub problems: Vec<Problem>,
    pub complete: bool,
}

/// Lists candidate files below each root, safely. Roots that are files are
/// taken as they are, whatever their name.
pub fn walk(roots: &[PathBuf], limits: &ScanLimits) -> Listing {
    let mut walk = Walk {
        limits,
        seen: 0,
        inodes: HashSet::new(),
        same_file: 0,
        out: Listing {
            complete: true,
            ..Listing::default()
        },
    };
    for root in roots {
        let root = match std::fs::canonicalize(root) {
            Ok(r) => r,
            Err(e) => {
                walk.problem(root, format!("cannot open: {e}"));
                continue;
            }
        };
        match std::fs::metadata(&root) {
            Ok(m) if m.is_file() => walk
                .out
                .files
                .push((root.parent().unwrap_or(&root).to_path_buf(), root.clone())),
            // A disc's own BDMV or VIDEO_TS folder, named as such: the disc.
            Ok(m) if m.is_dir() && disc_index(&root).is_some() => {
                let disc = root.parent().unwrap_or(&root).to_path_buf();
                walk.disc(&disc, &root);
            }
            Ok(m) if m.is_dir() => walk.dir(&root, &root, m.dev(), 0),
            Ok(_) => walk.problem(&root, "not a file or folder".into()),
            Err(e) => walk.problem(&root, format!("cannot open: {e}")),
        }
    }
    if walk.same_file > 0 {
        walk.out.problems.push(Problem {
            path: roots.first().cloned().unwrap_or_default(),
            reason: format!(
                "{} hard link(s) to files listed already were skipped (one FLAC per file)",
                walk.same_file
            ),
        });
    }
    if limits.stopped() {
        walk.out.complete = false;
    }
    walk.out
}

/// The index file of the Blu-ray (`BDMV`) or DVD (`VIDEO_TS`) folder `dir`.
fn disc_index(dir: &Path) -> Option<PathBuf> {
    bluray::disc_index(dir).or_else(|| dvd::disc_index(dir))
}

struct Walk<'a> {
    limits: &'a ScanLimits,
    seen: usize,
    /// (device, inode) of the files with several names: one job per file,
    /// however many hard links a drive holds to it.
    inodes: HashSet<(u64, u64)>,
    same_file: usize,
    out: Listing,
}

impl Walk<'_> {
    fn problem(&mut self, path: &Path, reason: String) {
        self.out.problems.push(Problem {
            path: path.to_path_buf(),
            reason,
        });
    }

    /// A part of the tree that was not looked at.
    fn left_out(&mut self, path: &Path, reason: String) {
        self.out.complete = false;
        self.problem(path, reason);
    }

    /// Lists the disc whose `BDMV` or `VIDEO_TS` folder `dir` is, by its
    /// index file; false if `dir` is no disc's.
    fn disc(&mut self, root: &Path, dir: &Path) -> bool {
        let Some(index) = disc_index(dir) else {
            return false;
        };
        self.out.files.push((root.to_path_buf(), index));
        if let Some(p) = &self.limits.progress {
            p.listed.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    fn dir(&mut self, root: &Path, dir: &Path, dev: u64, depth: usize) {
        if let Some(p) = &self.limits.progress {
            p.reading(dir);
        }
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => return self.left_out(dir, format!("cannot list the folder: {e}")),
        };
        // Never more names in memory than the cap leaves: a folder of a
        // million entries is not read whole before the cap applies.
        let budget = (self.limits.max_entries + 1).saturating_sub(self.seen);
        // The listing's own file types: no stat for files that are not
        // candidates (covers and MP3s are never looked at).
        let mut names: Vec<(std::ffi::OsString, Option<std::fs::FileType>)> = entries
            .filter_map(Result::ok)
            .take(budget)
            .map(|e| (e.file_name(), e.file_type().ok()))
            .collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, kind) in names {
            if self.limits.stopped() {
                return;
            }
            self.seen += 1;
            if self.seen > self.limits.max_entries {
                let cap = self.limits.max_entries;
                return self.left_out(
                    root,
                    format!("stopped after {cap} entries; the rest was not scanned"),
                );
            }
            let path = dir.join(&name);
            let name = name.to_string_lossy();
            // macOS resource forks ("._Film.dts") look like media but are not.
            if name.starts_with("._") {
                continue;
            }
            let Some(kind) = kind else {
                continue;
            };
            if kind.is_symlink() {
                // Follow a link only to a regular file inside the same tree.
                if let Ok(target) = std::fs::canonicalize(&path) {
                    if target.starts_with(root) && target.is_file() && probe::is_candidate(&path) {
                        self.out.files.push((root.to_path_buf(), path));
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
                // A disc is one source: its clips and VOBs are never listed.
                if self.disc(root, &path) {
                    continue;
                }
                if depth + 1 >= self.limits.max_depth {
                    let max = self.limits.max_depth;
                    self.left_out(&path, format!("deeper than {max} folders; not scanned"));
                    continue;
                }
                self.dir(root, &path, dev, depth + 1);
                if let Some(p) = &self.limits.progress {
                    p.reading(dir);
                }
            } else if kind.is_file() && probe::is_candidate(&path) {
                let Ok(meta) = std::fs::symlink_metadata(&path) else {
                    continue;
                };
                if meta.nlink() > 1 && !self.inodes.insert((meta.dev(), meta.ino())) {
                    self.same_file += 1;
                    continue;
                }
                self.out.files.push((root.to_path_buf(), path));
                if let Some(p) = &self.limits.progress {
                    p.listed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Walks the roots and probes every candidate, a few at a time.
pub fn scan(tools: &Tools, roots: &[PathBuf], limits: ScanLimits) -> ScanReport {
    let listing = walk(roots, &limits);
    let mut report = probe_all(tools, &listing.files, listing.problems, &limits);
    report.complete = listing.complete && !limits.stopped();
    report
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
                        let result = probe::probe_file_titles(tools, path, limits.disc_titles);
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
    ScanReport {
        found,
        problems,
        complete: false,
    }
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
        let listing = walk(&[tree.path().to_path_buf()], &ScanLimits::default());
        assert!(listing.complete);
        let names: Vec<String> = listing
            .files
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
        let files = walk(&[tree.path().to_path_buf()], &limits).files;
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
    fn a_blu_ray_folder_is_listed_once_by_its_index_and_its_clips_never() {
        let tree = tempfile::tempdir().unwrap();
        let bdmv = tree.path().join("Film (2009)").join("BDMV");
        for d in ["PLAYLIST", "STREAM", "BACKUP"] {
            std::fs::create_dir_all(bdmv.join(d)).unwrap();
        }
        std::fs::write(bdmv.join("index.bdmv"), b"INDX0200").unwrap();
        std::fs::write(bdmv.join("STREAM").join("00001.m2ts"), b"x").unwrap();
        std::fs::write(bdmv.join("BACKUP").join("00001.m2ts"), b"x").unwrap();
        // A disc reached through a symlinked folder is not walked into.
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(
            tree.path().join("Film (2009)"),
            elsewhere.path().join("Link"),
        )
        .unwrap();
        let root = std::fs::canonicalize(tree.path()).unwrap();
        let listing = walk(&[root.clone()], &ScanLimits::default());
        let files: Vec<&PathBuf> = listing.files.iter().map(|(_, f)| f).collect();
        assert_eq!(files, [&root.join("Film (2009)/BDMV/index.bdmv")]);
        assert!(
            walk(&[elsewhere.path().to_path_buf()], &ScanLimits::default())
                .files
                .is_empty()
        );
        // Named itself, a BDMV folder is its disc too.
        let named = walk(&[root.join("Film (2009)/BDMV")], &ScanLimits::default());
        assert_eq!(named.files.len(), 1);
        assert_eq!(named.files[0].0, root.join("Film (2009)"));
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
        let listing = walk(
            &[tree.path().to_path_buf()],
            &ScanLimits {
                max_depth: 3,
                max_entries: 100,
                ..ScanLimits::default()
            },
        );
        assert!(listing.files.is_empty());
        assert!(!listing.complete);
        let problems = &listing.problems;
        assert!(problems[0].reason.contains("deeper than 3"), "{problems:?}");
    }

    #[test]
    fn hard_links_give_one_file_and_a_capped_walk_says_it_is_incomplete() {
        let tree = tempfile::tempdir().unwrap();
        let d = tree.path();
        std::fs::write(d.join("a.dts"), b"x").unwrap();
        for i in 0..50 {
            std::fs::hard_link(d.join("a.dts"), d.join(format!("link{i:02}.dts"))).unwrap();
        }
        std::fs::write(d.join("z.dts"), b"y").unwrap();
        let listing = walk(&[d.to_path_buf()], &ScanLimits::default());
        let names: Vec<_> = listing
            .files
            .iter()
            .map(|(_, p)| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.dts", "z.dts"]);
        assert!(listing.complete);
        assert!(
            listing.problems[0].reason.starts_with("50 hard link(s)"),
            "{:?}",
            listing.problems
        );

        let capped = walk(
            &[d.to_path_buf()],
            &ScanLimits {
                max_entries: 10,
                ..ScanLimits::default()
            },
        );
        assert!(!capped.complete);
        assert_eq!(capped.files.len(), 1);
        assert!(capped
            .problems
            .iter()
            .any(|p| p.reason == "stopped after 10 entries; the rest was not scanned"));
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
        let Listing {
            files, problems, ..
        } = walk(&[d.to_path_buf()], &ScanLimits::default());
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
