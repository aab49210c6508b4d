//! Where a job's FLAC goes and how it gets there: output names, the
//! hidden temporary file and its rename into place, the up-to-date check
//! against what already sits at the output, stale temporary files, the
//! free-space check, and the drive's writeback while the FLAC is encoded.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::args::raw_pcm;
use super::control::{ConvertError, FailureKind};
use crate::fmt;
use crate::hw::fs::free_bytes;
use crate::media::flacmeta;
use crate::media::probe::{InputSpec, Track, FINGERPRINT_TAG, OWN_SOURCE_TAG};
use crate::media::safe_open;
use crate::media::scan::Found;
use crate::media::stamp::SourceStamp;

/// The name part of temporary files, so stale ones can be recognised and removed.
pub const TEMP_SUFFIX: &str = ".dtsflac.part";

/// The hidden temporary file a conversion writes before renaming.
pub fn temp_path_for(output: &Path) -> PathBuf {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    output.with_file_name(format!(".{name}{TEMP_SUFFIX}"))
}

/// The FLAC name next to the source: `Film.dtshd` → `Film.flac`; a file with
/// several DTS tracks → `Film.2.eng.flac`; a DTS-CD rip that is itself a
/// `.flac` → `Track01.dts.flac` so the source is never overwritten.
pub fn output_name(track: &Track) -> String {
    let mut name = track.source_stem();
    if let Some(part) = track.part_name() {
        name.push('.');
        name.push_str(&part);
    }
    if matches!(track.input, InputSpec::PcmInFlac { .. }) {
        name.push_str(".dts");
    }
    name.push_str(".flac");
    name
}

/// Where each track's FLAC goes. Two sources that would share a name
/// (`Film.dts` and `Film.dtshd`) keep their extension (`Film.dts.flac`).
pub fn plan_outputs(found: &[Found], output_dir: Option<&Path>) -> Vec<PathBuf> {
    let dest_dir = |f: &Found| -> PathBuf {
        let parent = f.track.source_folder();
        match output_dir {
            Some(out) => out.join(parent.strip_prefix(&f.root).unwrap_or(Path::new(""))),
            None => parent.to_path_buf(),
        }
    };
    let first: Vec<PathBuf> = found
        .iter()
        .map(|f| dest_dir(f).join(output_name(&f.track)))
        .collect();
    let mut count: HashMap<&PathBuf, usize> = HashMap::new();
    for p in &first {
        *count.entry(p).or_default() += 1;
    }
    found
        .iter()
        .zip(&first)
        .map(|(f, p)| {
            if count[p] > 1 {
                let name = f.track.source_file_name();
                let wanted = output_name(&f.track);
                let stem = f.track.source_stem();
                dest_dir(f).join(wanted.replacen(&stem, &name, 1))
            } else {
                p.clone()
            }
        })
        .collect()
}

/// Identity of a source file as recorded in the FLAC tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceIdentity {
    pub name: String,
    pub stamp: SourceStamp,
    pub stream_index: u32,
}

impl SourceIdentity {
    pub fn of(track: &Track) -> io::Result<SourceIdentity> {
        Self::open(track).map(|(identity, _)| identity)
    }

    /// The source opened with `safe_open` (a regular file, no symlink), and
    /// its identity as that descriptor says.
    pub fn open(track: &Track) -> io::Result<(SourceIdentity, File)> {
        let file = safe_open::open_regular(&track.path)?;
        // A disc title is stamped with every file it is made of.
        let others = track
            .content_files()
            .iter()
            .filter(|p| **p != track.path)
            .map(|p| safe_open::open_regular(p))
            .collect::<io::Result<Vec<_>>>()?;
        let stamp = match others.is_empty() {
            true => SourceStamp::read(&file)?,
            false => {
                let mut all = vec![file.try_clone()?];
                all.extend(others);
                SourceStamp::read_all(&all)?
            }
        };
        let identity = SourceIdentity {
            name: track
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            stamp,
            stream_index: track.stream_index,
        };
        Ok((identity, file))
    }
}

/// What already sits at the output path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Existing {
    Nothing,
    /// Our FLAC from this very source: nothing to do.
    UpToDate,
    /// Our FLAC from an older version of this source: replace it.
    Stale,
    /// Someone else's file: never overwrite it.
    Foreign,
}

/// A FIFO, a device or a symlink under the name is `Foreign`: it is never
/// opened as data, nor replaced.
pub fn existing_output(identity: &SourceIdentity, output: &Path) -> Existing {
    if fs::symlink_metadata(output).is_err() {
        return Existing::Nothing;
    }
    let Ok(meta) = flacmeta::read(output) else {
        return Existing::Foreign;
    };
    let t = |k: &str| meta.tags.get(k).cloned().unwrap_or_default();
    if t(OWN_SOURCE_TAG) != identity.name
        || t("DTSFLAC_STREAM") != identity.stream_index.to_string()
    {
        return Existing::Foreign;
    }
    let stamp = &identity.stamp;
    // FLACs written before the fingerprint tag existed match on size and time.
    let fingerprint = meta.tags.get(FINGERPRINT_TAG);
    if t("DTSFLAC_SOURCE_SIZE") == stamp.size.to_string()
        && t("DTSFLAC_SOURCE_MTIME") == stamp.mtime.to_string()
        && fingerprint.is_none_or(|f| *f == stamp.fingerprint)
    {
        Existing::UpToDate
    } else {
        Existing::Stale
    }
}

/// A generous estimate of the FLAC size, checked before any work starts.
fn estimated_output_bytes(track: &Track) -> Option<u64> {
    let seconds = track.duration_seconds?;
    let bytes_per_sample = f64::from(raw_pcm(track.bits_per_sample).2);
    // FLAC rarely goes above 75% of raw PCM on real audio; noise can approach 100%.
    Some(
        (seconds
            * f64::from(track.sample_rate)
            * f64::from(track.channels)
            * bytes_per_sample
            * 0.8) as u64,
    )
}

pub(super) fn check_free_space(track: &Track, dir: &Path) -> Result<(), ConvertError> {
    let Some(need) = estimated_output_bytes(track) else {
        return Ok(());
    };
    let Some(free) = free_bytes(dir) else {
        return Ok(());
    };
    if need > free {
        return Err(ConvertError::new(
            FailureKind::Destination,
            format!(
                "not enough free space in {}: about {} needed, {} free",
                dir.display(),
                fmt::bytes(need),
                fmt::bytes(free)
            ),
        ));
    }
    Ok(())
}

/// The temporary output: removed on drop unless renamed into place.
pub(super) struct TempFile {
    path: PathBuf,
    /// Created by us (`O_EXCL`): what the encoder writes into.
    file: File,
    kept: bool,
}

impl TempFile {
    /// A regular leftover from a crash is ours by its name and is replaced;
    /// a FIFO, a device or a symlink under the name is refused.
    pub(super) fn create(path: &Path) -> io::Result<TempFile> {
        Ok(TempFile {
            file: safe_open::create_temp(path)?,
            path: path.to_path_buf(),
            kept: false,
        })
    }

    pub(super) fn file(&self) -> &File {
        &self.file
    }

    /// fsync, rename into place, fsync the folder; returns the file size.
    /// Only our FLAC of this source (or nothing) is replaced at `output`;
    /// only our temporary file is renamed.
    pub(super) fn finish(mut self, output: &Path, identity: &SourceIdentity) -> io::Result<u64> {
        self.file.sync_all()?;
        let size = self.file.metadata()?.len();
        if !safe_open::still_names(&self.path, &self.file)? {
            return Err(io::Error::other(format!(
                "the temporary file {} was replaced while it was written",
                self.path.display()
            )));
        }
        match existing_output(identity, output) {
            Existing::Nothing => safe_open::rename_no_replace(&self.path, output),
            Existing::Stale | Existing::UpToDate => fs::rename(&self.path, output),
            Existing::Foreign => Err(io::Error::from(io::ErrorKind::AlreadyExists)),
        }
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => io::Error::other(foreign_output(output)),
            _ => e,
        })?;
        self.kept = true;
        if let Some(dir) = output.parent() {
            if let Ok(d) = File::open(dir) {
                // Some FUSE filesystems refuse fsync on folders; the rename is still done.
                let _ = d.sync_all();
            }
        }
        Ok(size)
    }
}

/// Why a name that is taken is not written: "… is a FIFO, not our FLAC".
pub(super) fn foreign_output(output: &Path) -> String {
    match safe_open::special_kind(output) {
        Some(what) => format!(
            "{} already exists and is {what}, not a FLAC made from this source; it is left alone",
            output.display()
        ),
        None => format!(
            "{} already exists and was not made from this source; move or rename it",
            output.display()
        ),
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.kept {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Starts the drive writing the FLAC while it is encoded, a second behind
/// the encoder, instead of all at the final fsync: on a USB stick that
/// flush would otherwise add seconds per track, and fewer dirty pages wait
/// in a small board's memory. Stops when dropped.
pub(super) struct Writeback {
    stop: std::sync::Arc<AtomicBool>,
    flush: std::sync::Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writeback {
    pub(super) fn start(temp: &File) -> Writeback {
        use std::os::fd::AsRawFd;
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flush = std::sync::Arc::new(AtomicBool::new(false));
        let file = temp.try_clone().ok();
        let (stopped, flush_now) = (stop.clone(), flush.clone());
        let thread = std::thread::spawn(move || {
            let Some(file) = file else { return };
            while !stopped.load(Ordering::Relaxed) {
                std::thread::park_timeout(Duration::from_millis(1000));
                if flush_now.load(Ordering::Relaxed) {
                    let _ = file.sync_data();
                    return;
                }
                // SAFETY: an advisory call on a descriptor we own; where the
                // file system cannot do it (some FUSE drivers) it is a no-op.
                let r = unsafe {
                    libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE)
                };
                if r != 0 {
                    return;
                }
            }
        });
        Writeback {
            stop,
            flush,
            thread: Some(thread),
        }
    }

    /// The encoder is done: the rest goes to the drive while the file is
    /// read back, so the final fsync has little left to wait for.
    pub(super) fn flush_rest(&self) {
        self.flush.store(true, Ordering::Relaxed);
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Removes temporary files a crash or a pulled drive left in `dir` (not
/// recursive). Only regular files: a FIFO or a link under such a name is
/// not ours, and its track fails naming it.
pub fn remove_stale_temp_files(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with('.') && (n.ends_with(TEMP_SUFFIX) || n.ends_with(".dtsflac.retag"))
        })
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| fs::remove_file(e.path()).is_ok())
        .count()
}

#[cfg(test)]
mod tests {
    use super::super::test_track as track;
    use super::*;

    #[test]
    fn names_follow_the_source() {
        let mut t = track("/m/Film.dtshd", "7.1", 8);
        assert_eq!(output_name(&t), "Film.flac");
        t.tracks_in_file = 2;
        t.track_number = 2;
        t.language = Some("eng".into());
        assert_eq!(output_name(&t), "Film.2.eng.flac");
        let mut rip = track("/m/Track01.flac", "5.1(side)", 6);
        rip.input = InputSpec::PcmInFlac {
            packing: crate::media::sniff::PcmPacking::Dts14Le,
            offset: 0,
        };
        assert_eq!(output_name(&rip), "Track01.dts.flac");
    }

    #[test]
    fn a_disc_s_flacs_are_named_after_its_folder_and_sit_beside_its_bdmv() {
        let mut t = track("/m/Film (2009)/BDMV/PLAYLIST/00000.mpls", "5.1", 6);
        t.input = InputSpec::BluRay {
            disc: PathBuf::from("/m/Film (2009)"),
            playlist: 0,
            clips: 2,
            clip_names: vec!["00001".into(), "../00".into(), "00002".into()],
            main: true,
            image: false,
        };
        // Its stamp covers the playlist and its clips (a name that is not a
        // clip's names no file).
        assert_eq!(
            t.content_files(),
            [
                "/m/Film (2009)/BDMV/PLAYLIST/00000.mpls",
                "/m/Film (2009)/BDMV/STREAM/00001.m2ts",
                "/m/Film (2009)/BDMV/STREAM/00002.m2ts"
            ]
            .map(PathBuf::from)
        );
        (t.tracks_in_file, t.track_number, t.language) = (2, 1, Some("eng".into()));
        let found = [Found {
            root: PathBuf::from("/m"),
            track: t.clone(),
        }];
        assert_eq!(
            plan_outputs(&found, None),
            [PathBuf::from("/m/Film (2009)/Film (2009).1.eng.flac")]
        );
        assert_eq!(
            plan_outputs(&found, Some(Path::new("/out"))),
            [PathBuf::from("/out/Film (2009)/Film (2009).1.eng.flac")]
        );
        // Lists (the page, the panel, convert) name the disc, not its playlist.
        assert_eq!(t.source_name(), "Film (2009)");
        assert_eq!(t.source_path(), Path::new("/m/Film (2009)"));
        // Another title of the disc says its playlist.
        t.input = InputSpec::BluRay {
            disc: PathBuf::from("/m/Film (2009)"),
            playlist: 800,
            clips: 1,
            clip_names: vec!["00003".into()],
            main: false,
            image: false,
        };
        assert_eq!(output_name(&t), "Film (2009).00800.1.eng.flac");
        assert_eq!(t.source_name(), "Film (2009).00800");

        // An image's FLACs sit beside it, named after it.
        t.path = PathBuf::from("/m/Films/Film.iso");
        t.input = InputSpec::BluRay {
            disc: t.path.clone(),
            playlist: 0,
            clips: 2,
            clip_names: Vec::new(),
            main: true,
            image: true,
        };
        assert_eq!(t.content_files(), [t.path.clone()], "an image is one file");
        let found = [Found {
            root: PathBuf::from("/m"),
            track: t.clone(),
        }];
        assert_eq!(
            plan_outputs(&found, None),
            [PathBuf::from("/m/Films/Film.1.eng.flac")]
        );
        assert_eq!(t.source_name(), "Film");
        assert_eq!(t.source_path(), Path::new("/m/Films/Film.iso"));

        // A DVD's too, beside its VIDEO_TS; another title set says its number.
        t.path = PathBuf::from("/m/Film/VIDEO_TS/VTS_02_1.VOB");
        t.input = InputSpec::Dvd {
            disc: PathBuf::from("/m/Film"),
            video_ts: "VIDEO_TS".into(),
            title_set: 2,
            vobs: vec!["VTS_02_1.VOB".into(), "VTS_02_2.VOB".into()],
            main: true,
            image: false,
            extents: vec![],
            title: 0,
            pieces: vec![],
        };
        assert_eq!(
            t.content_files(),
            [
                "/m/Film/VIDEO_TS/VTS_02_1.VOB",
                "/m/Film/VIDEO_TS/VTS_02_2.VOB"
            ]
            .map(PathBuf::from)
        );
        let found = [Found {
            root: PathBuf::from("/m"),
            track: t.clone(),
        }];
        assert_eq!(
            plan_outputs(&found, None),
            [PathBuf::from("/m/Film/Film.1.eng.flac")]
        );
        assert_eq!(t.source_file_name(), "Film.VIDEO_TS");
        if let InputSpec::Dvd { main, .. } = &mut t.input {
            *main = false;
        }
        assert_eq!(output_name(&t), "Film.VTS_02.1.eng.flac");
        // One title of a title set of several says its number too.
        if let InputSpec::Dvd { title, .. } = &mut t.input {
            *title = 3;
        }
        assert_eq!(output_name(&t), "Film.VTS_02.T3.1.eng.flac");
        if let InputSpec::Dvd { title, .. } = &mut t.input {
            *title = 0;
        }

        // A DVD image's beside the image, named after it.
        t.path = PathBuf::from("/m/Films/Concert.iso");
        if let InputSpec::Dvd {
            disc, image, main, ..
        } = &mut t.input
        {
            (*disc, *image, *main) = (t.path.clone(), true, true);
        }
        let found = [Found {
            root: PathBuf::from("/m"),
            track: t.clone(),
        }];
        assert_eq!(
            plan_outputs(&found, None),
            [PathBuf::from("/m/Films/Concert.1.eng.flac")]
        );
        assert_eq!(t.source_file_name(), "Concert.iso");
    }

    #[test]
    fn temp_files_are_hidden_next_to_the_output() {
        assert_eq!(
            temp_path_for(Path::new("/d/Film.flac")),
            PathBuf::from("/d/.Film.flac.dtsflac.part")
        );
    }
}
