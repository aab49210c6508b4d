//! Turning a file into the DTS tracks it holds: ffprobe for containers and
//! streams, our own readers for what ffprobe cannot be trusted with (DTS-HD
//! header lengths, DTS hidden in PCM).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::bdimage;
use super::bluray;
use super::chapters::{self, Chapter};
use super::discimage::{self, ImageKind};
use super::dtshd::{self, DtsHdHeader};
use super::dtslength;
use super::dvd;
use super::flacdecode;
use super::flacmeta;
use super::iso9660;
use super::safe_open;
use super::sniff::{self, PcmPacking};
use super::stamp::SourceStamp;
use super::tools::{bluray_arg, ffmpeg_file_arg, file_ranges_arg, joined_vobs_arg, Tools};

/// The DTS flavours a user can tell apart; the names are what people read on
/// disc boxes and in players.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Profile {
    #[serde(rename = "DTS")]
    Core,
    #[serde(rename = "DTS-ES")]
    Es,
    #[serde(rename = "DTS 96/24")]
    Dts9624,
    #[serde(rename = "DTS Express")]
    Express,
    #[serde(rename = "DTS-HD HRA")]
    HdHra,
    #[serde(rename = "DTS-HD MA")]
    HdMa,
    #[serde(rename = "DTS:X")]
    DtsX,
}

impl Profile {
    pub fn from_ffprobe(profile: &str) -> Profile {
        if profile.contains("DTS:X") {
            Profile::DtsX
        } else if profile.contains("MA") {
            Profile::HdMa
        } else if profile.contains("HRA") {
            Profile::HdHra
        } else if profile.contains("96/24") {
            Profile::Dts9624
        } else if profile.contains("ES") {
            Profile::Es
        } else if profile.contains("Express") {
            Profile::Express
        } else {
            Profile::Core
        }
    }

    /// DTS-HD MA (and DTS:X, which rides on it) is the only lossless flavour.
    pub fn is_lossless(self) -> bool {
        matches!(self, Profile::HdMa | Profile::DtsX)
    }

    pub fn name(self) -> &'static str {
        match self {
            Profile::Core => "DTS",
            Profile::Es => "DTS-ES",
            Profile::Dts9624 => "DTS 96/24",
            Profile::Express => "DTS Express",
            Profile::HdHra => "DTS-HD HRA",
            Profile::HdMa => "DTS-HD MA",
            Profile::DtsX => "DTS:X",
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How FFmpeg must be told to read the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InputSpec {
    /// FFmpeg's own probing finds the DTS stream.
    Probed,
    /// DTS disguised as PCM in a WAV: force the demuxer, start at the first sync.
    PcmInWav { packing: PcmPacking, offset: u64 },
    /// DTS disguised as PCM in a FLAC rip: decode the FLAC first, then read the PCM as DTS.
    PcmInFlac { packing: PcmPacking, offset: u64 },
    /// A title of a Blu-ray disc (the track's path is its playlist file):
    /// FFmpeg's `bluray:` input plays the playlist's clips in order.
    #[serde(rename = "bluray")]
    BluRay {
        /// The folder holding `BDMV`.
        disc: PathBuf,
        /// The playlist's number (`00800.mpls` is 800).
        playlist: u32,
        /// How many clips the playlist joins.
        clips: u32,
        /// Their names in play order (`00001` is `BDMV/STREAM/00001.m2ts`),
        /// for a folder: they are stamped with the playlist (`content_files`).
        #[serde(default)]
        clip_names: Vec<String>,
        /// The disc's main title (the others' FLACs carry the playlist in
        /// their names).
        main: bool,
        /// `disc` is a Blu-ray image (`Film.iso`), which libbluray reads
        /// itself: its FLACs go beside it, named after it.
        #[serde(default)]
        image: bool,
    },
    /// A title set of a DVD-Video disc (the track's path is its first VOB):
    /// its content VOBs read as one program stream (`concat:`), so nothing
    /// is broken where the disc's copy cut them at 1 GiB.
    Dvd {
        /// The folder holding `VIDEO_TS`.
        disc: PathBuf,
        /// `VIDEO_TS` as the drive spells it (FAT copies are often lower case).
        video_ts: String,
        title_set: u8,
        /// The VOBs in order, as the folder names them.
        vobs: Vec<String>,
        /// The disc's main title (the others' FLACs carry the title set in
        /// their names).
        main: bool,
        /// `disc` is a DVD image (`Film.iso`): the VOBs are these byte
        /// ranges of it, `[start, length]`, one per VOB.
        #[serde(default)]
        image: bool,
        #[serde(default)]
        extents: Vec<[u64; 2]>,
        /// One title of a title set holding several (a disc of episodes),
        /// by its number in the set; 0: the title set whole.
        #[serde(default)]
        title: u8,
        /// That title's cells, as `[vob, start, length]` byte ranges of
        /// the VOBs (`dvd::VtsTitle::pieces`); none: the VOBs whole.
        #[serde(default)]
        pieces: Vec<[u64; 3]>,
    },
}

/// Samples to keep from the decode, per channel, at the decoded rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trim {
    pub start: u64,
    pub samples: u64,
}

/// One DTS audio track, as found on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Track {
    pub path: PathBuf,
    pub stream_index: u32,
    /// 1-based position among the DTS tracks of this file.
    pub track_number: u32,
    pub tracks_in_file: u32,
    pub profile: Profile,
    pub lossless: bool,
    pub channels: u32,
    pub channel_layout: String,
    pub sample_rate: u32,
    pub bits_per_sample: u8,
    pub duration_seconds: Option<f64>,
    pub language: Option<String>,
    pub title: Option<String>,
    pub album: Option<String>,
    pub artist: Option<String>,
    pub input: InputSpec,
    pub trim: Option<Trim>,
    /// The file this was probed from; a job converts only that very file.
    #[serde(default)]
    pub probed: Option<SourceStamp>,
    /// Chapter marks (a container's, a disc title's), from the track's start.
    #[serde(default)]
    pub chapters: Vec<Chapter>,
}

impl Track {
    /// Samples per channel the FLAC must hold, when the source says exactly.
    pub fn expected_samples(&self) -> Option<u64> {
        self.trim.map(|t| t.samples)
    }

    /// What tells this track from the others of its file, as its FLAC's
    /// name says it: "2.eng" (number, language); `None` for a file's only track.
    pub fn part_name(&self) -> Option<String> {
        if self.tracks_in_file <= 1 {
            return None;
        }
        let mut part = self.track_number.to_string();
        if let Some(lang) = &self.language {
            let clean: String = lang
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(8)
                .collect();
            if !clean.is_empty() {
                part.push('.');
                part.push_str(&clean);
            }
        }
        Some(part)
    }

    /// The files whose content this track is, as its stamp covers them:
    /// the source file, a DVD title set's VOBs, or a Blu-ray playlist and
    /// its clips (an image is one file).
    pub fn content_files(&self) -> Vec<PathBuf> {
        match &self.input {
            InputSpec::Dvd {
                disc,
                video_ts,
                vobs,
                image: false,
                ..
            } => vobs.iter().map(|v| disc.join(video_ts).join(v)).collect(),
            InputSpec::BluRay {
                clip_names,
                image: false,
                ..
            } => {
                let stream = self
                    .path
                    .parent()
                    .and_then(Path::parent)
                    .map(|bdmv| bdmv.join("STREAM"));
                std::iter::once(self.path.clone())
                    .chain(clip_names.iter().filter_map(|clip| {
                        // A clip's name is five digits; anything else names no file of ours.
                        let plain =
                            !clip.is_empty() && clip.bytes().all(|b| b.is_ascii_alphanumeric());
                        Some(stream.as_ref()?.join(format!("{clip}.m2ts"))).filter(|_| plain)
                    }))
                    .collect()
            }
            _ => vec![self.path.clone()],
        }
    }

    /// The folder the source sits in, where its FLACs go: a file's folder,
    /// or a disc's root (beside its `BDMV`, never inside it).
    pub fn source_folder(&self) -> &Path {
        match &self.input {
            InputSpec::BluRay {
                disc, image: false, ..
            }
            | InputSpec::Dvd {
                disc, image: false, ..
            } => disc,
            InputSpec::BluRay { disc, .. } | InputSpec::Dvd { disc, .. } => {
                disc.parent().unwrap_or(Path::new("/"))
            }
            _ => self.path.parent().unwrap_or(Path::new("/")),
        }
    }

    /// What names the source's FLACs: a file's name without its extension,
    /// or a disc's folder name (its title when the folder has none).
    pub fn source_stem(&self) -> String {
        let stem = match &self.input {
            InputSpec::BluRay {
                disc,
                playlist,
                main,
                image,
                ..
            } => self.disc_stem(disc, *image, *main, || format!("{playlist:05}")),
            InputSpec::Dvd {
                disc,
                title_set,
                title,
                main,
                image,
                ..
            } => self.disc_stem(disc, *image, *main, || match title {
                0 => format!("VTS_{title_set:02}"),
                t => format!("VTS_{title_set:02}.T{t}"),
            }),
            _ => self
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned()),
        };
        stem.unwrap_or_else(|| "track".into())
    }

    /// A disc's name: its image's without `.iso`, or its folder's (the disc
    /// title when it has none); another title than the main one adds `which`.
    fn disc_stem(
        &self,
        disc: &Path,
        image: bool,
        main: bool,
        which: impl FnOnce() -> String,
    ) -> Option<String> {
        let name = match image {
            true => disc.file_stem().map(|s| s.to_string_lossy().into_owned()),
            false => bluray::disc_name(disc),
        };
        let name = name.or_else(|| self.title.clone())?;
        Some(match main {
            true => name,
            false => format!("{name}.{}", which()),
        })
    }

    /// Where the source is, as the user knows it: the file, or the disc's
    /// folder.
    pub fn source_path(&self) -> &Path {
        match &self.input {
            InputSpec::BluRay { disc, .. } | InputSpec::Dvd { disc, .. } => disc,
            _ => &self.path,
        }
    }

    /// The source's name as lists show it: the file's name, or the disc's
    /// (with the playlist of a title other than the main one).
    pub fn source_name(&self) -> String {
        match &self.input {
            InputSpec::BluRay { .. } | InputSpec::Dvd { .. } => self.source_stem(),
            _ => self.source_file_name(),
        }
    }

    /// The source's full name, which tells it from a file of the same stem
    /// ("Film.dts" and "Film.dtshd"; a disc is "Film.BDMV").
    pub fn source_file_name(&self) -> String {
        match &self.input {
            InputSpec::BluRay { image: false, .. } => format!("{}.BDMV", self.source_stem()),
            InputSpec::Dvd { image: false, .. } => format!("{}.VIDEO_TS", self.source_stem()),
            _ => self
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }

    /// "DTS-HD MA 7.1 24-bit 48 kHz"
    pub fn describe(&self) -> String {
        format!(
            "{} {} {}-bit {} kHz",
            self.profile,
            self.channel_layout,
            self.bits_per_sample,
            format_khz(self.sample_rate)
        )
    }
}

fn format_khz(rate: u32) -> String {
    if rate.is_multiple_of(1000) {
        (rate / 1000).to_string()
    } else {
        format!("{:.1}", f64::from(rate) / 1000.0)
    }
}

/// Why a file yielded no tracks.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Not DTS at all (plain PCM, AC-3, a video without DTS): nothing to report.
    #[error("no DTS audio")]
    NotDts,
    /// Looks like it should be DTS but cannot be used: the user must hear why.
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Stream,
    Container,
    Wav,
    Flac,
    /// A Blu-ray disc, listed by its `BDMV/index.bdmv`.
    BluRay,
    /// A DVD-Video disc, listed by its `VIDEO_TS/VIDEO_TS.IFO`.
    Dvd,
    /// A disc image (`.iso`): a Blu-ray one is read as a disc.
    DiscImage,
}

fn kind_of(path: &Path) -> Option<FileKind> {
    if bluray::is_disc_index(path) {
        return Some(FileKind::BluRay);
    }
    if dvd::is_disc_index(path) {
        return Some(FileKind::Dvd);
    }
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "dts" | "dtshd" | "dtsma" | "cpt" => FileKind::Stream,
        "mkv" | "mka" | "m2ts" | "mts" | "ts" | "vob" | "mp4" | "m4v" | "avi" => {
            FileKind::Container
        }
        "iso" => FileKind::DiscImage,
        "wav" => FileKind::Wav,
        "flac" => FileKind::Flac,
        _ => return None,
    })
}

/// Whether a file name is worth opening at all while scanning.
pub fn is_candidate(path: &Path) -> bool {
    kind_of(path).is_some()
}

/// Lists the DTS tracks in one file, each stamped with the file it was read from.
pub fn probe_file(tools: &Tools, path: &Path) -> Result<Vec<Track>, ProbeError> {
    probe_file_titles(tools, path, DiscTitles::Main)
}

/// The same, with `titles` saying which titles of a disc are tracks.
pub fn probe_file_titles(
    tools: &Tools,
    path: &Path,
    titles: DiscTitles,
) -> Result<Vec<Track>, ProbeError> {
    let io_err = |e: std::io::Error| ProbeError::Invalid(format!("cannot read the file: {e}"));
    let before = std::fs::symlink_metadata(path).map_err(io_err)?;
    let mut tracks = probe_contents(tools, path, titles)?;
    // Stamped after the probe, so files that are not DTS cost no extra read;
    // a file that changed meanwhile is not trusted.
    let stamp = SourceStamp::of_path(path).map_err(io_err)?;
    if (stamp.size, stamp.mtime) != (before.len(), before.mtime()) {
        return Err(ProbeError::Invalid(
            "the file changed while it was being read; plug the drive in again when nothing writes to it".into(),
        ));
    }
    // A disc title's tracks are stamped with the files they are made of
    // (its playlist and clips, its VOBs), read once for all its tracks.
    let mut stamped: Vec<(Vec<PathBuf>, SourceStamp)> = vec![(vec![path.to_path_buf()], stamp)];
    for t in &mut tracks {
        let files = t.content_files();
        let known = stamped
            .iter()
            .find(|(f, _)| *f == files)
            .map(|(_, s)| s.clone());
        let stamp = match known {
            Some(stamp) => stamp,
            None => {
                let stamp = SourceStamp::of_paths(&files).map_err(io_err)?;
                stamped.push((files, stamp.clone()));
                stamp
            }
        };
        t.probed = Some(stamp);
    }
    Ok(tracks)
}

fn probe_contents(
    tools: &Tools,
    path: &Path,
    titles: DiscTitles,
) -> Result<Vec<Track>, ProbeError> {
    let kind = kind_of(path).ok_or(ProbeError::NotDts)?;
    let io_err = |e: std::io::Error| ProbeError::Invalid(format!("cannot read the file: {e}"));
    // FFmpeg is handed this very file, checked to be a regular one.
    let file = safe_open::open_regular(path).map_err(io_err)?;
    let source = Some((path, &file));
    match kind {
        FileKind::Stream => {
            let header = dtshd::read_header(path).map_err(io_err)?;
            if let Some(h) = &header {
                if h.is_truncated() {
                    return Err(ProbeError::Invalid(format!(
                        "truncated: the DTS-HD header announces {} bytes of audio but the file holds {}",
                        h.stream_len,
                        h.file_len.saturating_sub(h.stream_offset)
                    )));
                }
            }
            let prefix = read_prefix(
                &file,
                header.as_ref().map_or(0, |h| h.stream_offset),
                64 << 10,
            )
            .map_err(io_err)?;
            // A drive of 200,000 junk `.dts` files must not cost 200,000 FFmpegs.
            if !sniff::has_dts_sync(&prefix) {
                return Err(ProbeError::Invalid(
                    "no DTS sync word in its first 64 KiB: not DTS, or damaged from its start"
                        .into(),
                ));
            }
            let json = ffprobe(tools, source, &[], None)
                .map_err(|e| ProbeError::Invalid(format!("not a readable DTS stream ({e})")))?;
            let source_bits = sniff::core_source_bits(&prefix);
            let mut tracks =
                tracks_from_json(path, &json, InputSpec::Probed, header.as_ref(), source_bits);
            if header.is_none() && tracks.iter().any(|t| t.duration_seconds.is_none()) {
                // A raw stream: FFmpeg knows no length for DTS-HD; its frames tell it.
                let len = file.metadata().map_err(io_err)?.len();
                let length = dtslength::raw_stream_length(&mut &file, len).map_err(io_err)?;
                for t in &mut tracks {
                    t.duration_seconds = t.duration_seconds.or(length.map(|l| l.seconds));
                }
            }
            if tracks.is_empty() {
                return Err(ProbeError::Invalid(
                    "no decodable DTS audio in it: the file is damaged or is not DTS".into(),
                ));
            }
            Ok(tracks)
        }
        FileKind::Container => {
            let json = ffprobe(tools, source, &[], None)
                .map_err(|e| ProbeError::Invalid(format!("cannot read the container ({e})")))?;
            let tracks = tracks_from_json(path, &json, InputSpec::Probed, None, None);
            if tracks.is_empty() {
                Err(ProbeError::NotDts)
            } else {
                Ok(tracks)
            }
        }
        FileKind::Wav => probe_wav(tools, path, &file),
        FileKind::Flac => probe_flac_rip(tools, path, &file),
        FileKind::BluRay => probe_bluray(tools, path, titles),
        FileKind::Dvd => probe_dvd(tools, path, titles),
        FileKind::DiscImage => probe_disc_image(tools, path, &file, titles),
    }
}

/// Which titles of a disc become tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DiscTitles {
    /// The main title only (what libbluray, through FFmpeg, picks).
    #[default]
    Main,
    /// Every title at least this many seconds long (FFmpeg's `bluray:`
    /// input lists none shorter than 180 s).
    AtLeast(u32),
}

/// A Blu-ray disc (`index` is its `BDMV/index.bdmv`): the DTS tracks of its
/// main title (or of every title long enough). libbluray, through FFmpeg's
/// `bluray:` input, picks the main title (the longest playlist of at least
/// 180 s, duplicates left out); the playlist file gives the clips and the
/// languages, the disc library the title.
fn probe_bluray(tools: &Tools, index: &Path, titles: DiscTitles) -> Result<Vec<Track>, ProbeError> {
    let invalid = |e: String| ProbeError::Invalid(e);
    let bdmv = index.parent().ok_or(ProbeError::NotDts)?;
    let root = bluray::disc_root(index).ok_or(ProbeError::NotDts)?;
    bluray::check_disc_tree(bdmv).map_err(invalid)?;
    let disc = bluray::open_disc(root)
        .map_err(|e| invalid(format!("cannot open the disc's folder: {e}")))?;
    let tracks = bluray_titles(tools, &disc, root, DiscStructure::Folder(bdmv), titles).map_err(|e| {
        invalid(format!(
            "FFmpeg's bluray input cannot read this disc ({e}): it needs a title of at least 3 minutes, and the disc's index, PLAYLIST and CLIPINF intact (copy the disc again)"
        ))
    })?;
    non_empty(tracks)
}

/// A disc image (`.iso`): a Blu-ray one is read by libbluray itself,
/// through FFmpeg's `bluray:` input, like a folder, and its playlists and
/// disc library by libbluray in a helper (`bdimage`). Its first MiBs rule
/// out other images without FFmpeg.
fn probe_disc_image(
    tools: &Tools,
    path: &Path,
    file: &File,
    titles: DiscTitles,
) -> Result<Vec<Track>, ProbeError> {
    let kind = discimage::image_kind(file)
        .map_err(|e| ProbeError::Invalid(format!("cannot read the image: {e}")))?;
    match kind {
        ImageKind::NotADisc | ImageKind::Other => return Err(ProbeError::NotDts),
        ImageKind::Dvd => return probe_dvd_image(tools, path, file, titles),
        ImageKind::BluRay | ImageKind::UnknownUdf => {}
    }
    match bluray_titles(tools, file, path, DiscStructure::Image(file), titles) {
        // A UDF image that names no BDMV and that libbluray cannot open is
        // something else (a data DVD).
        Err(_) if kind == ImageKind::UnknownUdf => Err(ProbeError::NotDts),
        Err(e) => Err(ProbeError::Invalid(format!(
            "FFmpeg's bluray input cannot read this Blu-ray image ({e}): it needs a title of at least 3 minutes and an unencrypted disc (copy the disc again)"
        ))),
        Ok(tracks) => non_empty(tracks),
    }
}

/// Where a Blu-ray's playlists and disc library are read.
#[derive(Clone, Copy)]
enum DiscStructure<'a> {
    /// Its `BDMV` folder.
    Folder(&'a Path),
    /// Its image, by libbluray in a helper process (`bdimage`).
    Image(&'a File),
}

/// What the disc says of the titles asked for: each one's playlist (by
/// number), and the disc's title. An image's playlists are unknown
/// (`None`) only where libbluray cannot be loaded here (a static FFmpeg).
fn read_structure(
    tools: &Tools,
    structure: DiscStructure,
    playlists: &[u32],
) -> Result<(Vec<Option<bluray::Playlist>>, Option<String>), String> {
    let playlist_file = |n: u32| format!("{n:05}.mpls");
    let bad =
        |n: u32, e: String| format!("cannot read the title's playlist {}: {e}", playlist_file(n));
    match structure {
        DiscStructure::Folder(bdmv) => {
            let played = playlists
                .iter()
                .map(|&n| {
                    let path = bdmv.join("PLAYLIST").join(playlist_file(n));
                    bluray::read_playlist(&path)
                        .map(Some)
                        .map_err(|e| bad(n, e.to_string()))
                })
                .collect::<Result<_, _>>()?;
            Ok((played, bluray::disc_title(bdmv)))
        }
        DiscStructure::Image(_) if super::libbluray::version().is_err() => {
            Ok((vec![None; playlists.len()], None))
        }
        DiscStructure::Image(image) => {
            let dl = "BDMV/META/DL/".to_string();
            let asked: Vec<String> = std::iter::once(dl.clone())
                .chain(
                    playlists
                        .iter()
                        .map(|&n| format!("BDMV/PLAYLIST/{}", playlist_file(n))),
                )
                .collect();
            let mut got = bdimage::read(tools, image, &asked)?.into_iter();
            let names = match got.next() {
                Some(bdimage::Entry::Folder(names)) => names,
                _ => Vec::new(),
            };
            let played = playlists
                .iter()
                .zip(got)
                .map(|(&n, entry)| match entry {
                    bdimage::Entry::File(data) => bluray::parse_playlist(&data)
                        .map(Some)
                        .map_err(|e| bad(n, e)),
                    _ => Err(bad(n, "the image has no such file".into())),
                })
                .collect::<Result<_, _>>()?;
            let library: Vec<String> = bluray::disc_library_files(names)
                .into_iter()
                .map(|name| format!("{dl}{name}"))
                .take(8)
                .collect();
            let title = if library.is_empty() {
                None
            } else {
                bdimage::read(tools, image, &library)?
                    .into_iter()
                    .find_map(|entry| match entry {
                        bdimage::Entry::File(xml) => {
                            bluray::title_in_xml(&String::from_utf8_lossy(&xml))
                        }
                        _ => None,
                    })
            };
            Ok((played, title))
        }
    }
}

/// The DTS tracks of a Blu-ray's main title (or of every title long
/// enough), read through FFmpeg's `bluray:` input from `disc` (the disc's
/// root folder, or its image, as a descriptor). `disc_path` is where the
/// disc is; `structure` where its playlists are read.
fn bluray_titles(
    tools: &Tools,
    disc: &File,
    disc_path: &Path,
    structure: DiscStructure,
    titles: DiscTitles,
) -> Result<Vec<Track>, String> {
    let (json, log) = run_ffprobe(tools, ProbeInput::Disc(disc), &[], true)?;
    let main = selected_playlist(&log)
        .ok_or_else(|| "FFmpeg did not say which playlist is the main title".to_string())?;
    let mut wanted = vec![(main, json)];
    if let DiscTitles::AtLeast(min) = titles {
        for (playlist, seconds) in listed_playlists(&log) {
            if playlist == main || seconds < min {
                continue;
            }
            let args = ["-playlist".to_string(), playlist.to_string()];
            let (json, _) = run_ffprobe(tools, ProbeInput::Disc(disc), &args, false)
                .map_err(|e| format!("cannot read title {playlist:05}.mpls ({e})"))?;
            wanted.push((playlist, json));
        }
    }
    let numbers: Vec<u32> = wanted.iter().map(|(n, _)| *n).collect();
    let (played, disc_title) = read_structure(tools, structure, &numbers)?;
    let image = matches!(structure, DiscStructure::Image(_));
    let mut tracks = Vec::new();
    for ((playlist, json), played) in wanted.iter().zip(played) {
        let path = match structure {
            DiscStructure::Folder(bdmv) => {
                bdmv.join("PLAYLIST").join(format!("{playlist:05}.mpls"))
            }
            DiscStructure::Image(_) => disc_path.to_path_buf(),
        };
        let input = InputSpec::BluRay {
            disc: disc_path.to_path_buf(),
            playlist: *playlist,
            clips: played.as_ref().map_or(0, |p| p.items.len() as u32),
            clip_names: match (structure, &played) {
                (DiscStructure::Folder(_), Some(p)) => {
                    p.items.iter().map(|item| item.clip.clone()).collect()
                }
                _ => Vec::new(),
            },
            main: *playlist == main,
            image,
        };
        let ids: Vec<Option<u16>> = dts_streams(json)
            .iter()
            .map(|s| {
                let id = s.get("id").and_then(Value::as_str)?;
                u16::from_str_radix(id.trim_start_matches("0x"), 16).ok()
            })
            .collect();
        let mut title_tracks = tracks_from_json(&path, json, input, None, None);
        if let Some(played) = played {
            for (t, pid) in title_tracks.iter_mut().zip(ids) {
                // The disc's own languages; a clip's PMT rarely carries one.
                if let Some(lang) = pid.and_then(|p| played.language_of(p)) {
                    t.language = Some(lang.to_ascii_lowercase());
                }
                t.duration_seconds = Some(played.seconds());
                t.chapters = chapters::unnamed(played.chapter_seconds());
            }
        }
        if disc_title.is_some() {
            for t in &mut title_tracks {
                t.title.clone_from(&disc_title);
                t.album.clone_from(&disc_title);
            }
        }
        tracks.extend(title_tracks);
    }
    Ok(tracks)
}

/// The titles FFmpeg's `bluray:` input listed, with their whole seconds:
/// "playlist 00800.mpls (2:01:13)".
fn listed_playlists(log: &str) -> Vec<(u32, u32)> {
    log.lines()
        .filter_map(|line| {
            let rest = &line[line.find("] playlist ")? + "] playlist ".len()..];
            let (name, time) = rest.split_once(".mpls (")?;
            let mut seconds = 0u32;
            for part in time.trim_end().strip_suffix(')')?.split(':') {
                seconds = seconds.checked_mul(60)?.checked_add(part.parse().ok()?)?;
            }
            Some((name.parse().ok()?, seconds))
        })
        .collect()
}

/// The playlist FFmpeg's `bluray:` input chose: "selected 00800.mpls".
fn selected_playlist(log: &str) -> Option<u32> {
    log.lines().find_map(|line| {
        let rest = &line[line.find("selected ")? + "selected ".len()..];
        rest.strip_suffix(".mpls")?.trim().parse().ok()
    })
}

/// A DVD-Video disc (`index` is its `VIDEO_TS/VIDEO_TS.IFO`): the DTS
/// tracks of its main title set (the one with the most content), or of
/// every title set at least `AtLeast` seconds long. Each title set's VOBs
/// are read joined, on every FFmpeg; the languages come from its IFO.
fn probe_dvd(tools: &Tools, index: &Path, titles: DiscTitles) -> Result<Vec<Track>, ProbeError> {
    let invalid = |e: String| ProbeError::Invalid(e);
    let video_ts = index.parent().ok_or(ProbeError::NotDts)?;
    let root = dvd::disc_root(index).ok_or(ProbeError::NotDts)?;
    dvd::check_tree(video_ts).map_err(invalid)?;
    let sets = dvd::title_sets(video_ts).map_err(invalid)?;
    // FFmpeg reads the VOBs below this descriptor, never through a symlink.
    let folder = safe_open::open_folder(video_ts)
        .map_err(|e| invalid(format!("cannot open the disc's folder: {e}")))?;
    let video_ts_name = video_ts
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dvd_titles(tools, &folder, &sets, titles, |set, main| {
        let info = set
            .ifo
            .as_ref()
            .and_then(|ifo| dvd::read_title_set_info(&video_ts.join(ifo)).ok())
            .unwrap_or_default();
        let input = InputSpec::Dvd {
            disc: root.to_path_buf(),
            video_ts: video_ts_name.clone(),
            title_set: set.number,
            vobs: set.vobs.clone(),
            main,
            image: false,
            extents: vec![],
            title: 0,
            pieces: vec![],
        };
        let first_vob = video_ts.join(&set.vobs[0]);
        DvdTitle {
            first_packs: safe_open::open_regular(&first_vob)
                .and_then(|vob| dvd::read_vob_start(&vob, 0)),
            path: first_vob,
            input,
            info,
        }
    })
}

/// A DVD image (`Film.iso`): its `VIDEO_TS` listed from the image's ISO
/// 9660 directories (DVD-Video images carry them beside UDF), each VOB a
/// byte range of the image, read joined as in a folder.
fn probe_dvd_image(
    tools: &Tools,
    path: &Path,
    file: &File,
    titles: DiscTitles,
) -> Result<Vec<Track>, ProbeError> {
    let entries = iso9660::read_root_folder(file, "VIDEO_TS").map_err(|e| {
        ProbeError::Invalid(format!(
            "a DVD image whose VIDEO_TS cannot be listed ({e}); copy the disc again, or its VIDEO_TS folder onto the drive"
        ))
    })?;
    let files = entries
        .iter()
        .filter(|e| !e.is_dir)
        .map(|e| (e.name.clone(), e.len))
        .collect();
    let sets = dvd::title_sets_of(files).map_err(ProbeError::Invalid)?;
    let entry = |name: &str| entries.iter().find(|e| e.name == name);
    for set in &sets {
        if let Some(vob) = set
            .vobs
            .iter()
            .find(|v| entry(v).is_none_or(|e| e.multi_extent))
        {
            return Err(ProbeError::Invalid(format!(
                "{vob} of the image is in several pieces (not a DVD-Video image)"
            )));
        }
    }
    dvd_titles(tools, file, &sets, titles, |set, main| {
        let info = set
            .ifo
            .as_deref()
            .and_then(entry)
            .and_then(|ifo| dvd::read_title_set_info_at(file, ifo.start, ifo.len).ok())
            .unwrap_or_default();
        let input = InputSpec::Dvd {
            disc: path.to_path_buf(),
            video_ts: "VIDEO_TS".into(),
            title_set: set.number,
            vobs: set.vobs.clone(),
            main,
            image: true,
            extents: set
                .vobs
                .iter()
                .filter_map(|v| entry(v).map(|e| [e.start, e.len]))
                .collect(),
            title: 0,
            pieces: vec![],
        };
        let first_vob = entry(&set.vobs[0]).map(|e| (e.start, e.len));
        DvdTitle {
            path: path.to_path_buf(),
            input,
            info,
            first_packs: match first_vob {
                Some((start, len)) => dvd::read_vob_start(file, start).map(|mut data| {
                    data.truncate(len.min(dvd::SCRAMBLE_CHECK_BYTES) as usize);
                    data
                }),
                None => Ok(Vec::new()),
            },
        }
    })
}

/// Where a DVD title set is, as `dvd_titles` reads it.
struct DvdTitle {
    /// The track's path (its first VOB, or the image).
    path: PathBuf,
    /// How FFmpeg reads it.
    input: InputSpec,
    /// What its IFO says (languages, chapters).
    info: dvd::TitleSetInfo,
    /// The start of its first VOB, which tells an encrypted disc.
    first_packs: std::io::Result<Vec<u8>>,
}

/// The DTS tracks of a DVD's main title set (or of every one long enough),
/// read from `source` (the `VIDEO_TS` folder or the image, as a
/// descriptor). `title_of(set, main)` says where the title set is.
fn dvd_titles(
    tools: &Tools,
    source: &File,
    sets: &[dvd::TitleSet],
    titles: DiscTitles,
    title_of: impl Fn(&dvd::TitleSet, bool) -> DvdTitle,
) -> Result<Vec<Track>, ProbeError> {
    let main = dvd::main_title_set(sets)
        .ok_or_else(|| {
            ProbeError::Invalid(
                "the disc's VIDEO_TS holds no title (VTS_nn_1.VOB); copy the disc again".into(),
            )
        })?
        .number;
    let mut tracks = Vec::new();
    for set in sets {
        if set.number != main && titles == DiscTitles::Main {
            continue;
        }
        let DvdTitle {
            path,
            input,
            info,
            first_packs,
        } = title_of(set, set.number == main);
        let first_packs = first_packs
            .map_err(|e| ProbeError::Invalid(format!("cannot read {}: {e}", set.vobs[0])))?;
        if dvd::css_scrambled(&first_packs) {
            return Err(ProbeError::Invalid(format!(
                "title set {} is CSS-encrypted: copy the disc again decrypted (with MakeMKV, or dvdbackup with libdvdcss)",
                set.number
            )));
        }
        for (input, chapter_starts, seconds) in title_readings(set, main, titles, input, &info) {
            let which = match &input {
                InputSpec::Dvd { title: t @ 1.., .. } => {
                    format!("title {t} of title set {}", set.number)
                }
                _ => format!("title set {}", set.number),
            };
            let (json, _) =
                run_ffprobe(tools, ProbeInput::Dvd(source, &input), &input_args(&input), false)
                    .map_err(|e| {
                        ProbeError::Invalid(format!(
                            "cannot read {which} ({e}): its VOBs may be damaged or encrypted (copy the disc again, decrypted)"
                        ))
                    })?;
            // DTS stream n of a title set is MPEG-PS substream 0x88 + n.
            let numbers: Vec<Option<usize>> = dts_streams(&json)
                .iter()
                .map(|s| {
                    let id = s.get("id").and_then(Value::as_str)?;
                    let id = usize::from_str_radix(id.trim_start_matches("0x"), 16).ok()?;
                    id.checked_sub(0x88).filter(|n| *n < 8)
                })
                .collect();
            let mut found = tracks_from_json(&path, &json, input, None, None);
            let chapters = chapters::unnamed(chapter_starts);
            for (t, n) in found.iter_mut().zip(numbers) {
                if let Some(Some(lang)) = n.and_then(|n| info.languages.get(n)) {
                    t.language = Some(lang.clone());
                }
                t.chapters.clone_from(&chapters);
                if let Some(seconds) = seconds.filter(|s| *s > 0.0) {
                    t.duration_seconds = Some(seconds);
                }
            }
            if let DiscTitles::AtLeast(min) = titles {
                let long_enough = found
                    .first()
                    .and_then(|t| t.duration_seconds)
                    .is_some_and(|s| s >= f64::from(min));
                if set.number != main && !long_enough {
                    continue;
                }
            }
            tracks.extend(found);
        }
    }
    non_empty(tracks)
}

/// What is read of a title set (`input` reads it whole), each with its
/// chapter starts and, where the IFO tells it, its length. A title set
/// of several titles (a disc of episodes) gives each title on its own, its
/// cells read as ranges of the VOBs (the longest of the main title set is
/// the main title; the others are read with `DiscTitles::AtLeast` as long
/// as that); one title, or titles that cannot be told apart (angles), the
/// VOBs whole.
fn title_readings(
    set: &dvd::TitleSet,
    main_set: u8,
    titles: DiscTitles,
    input: InputSpec,
    info: &dvd::TitleSetInfo,
) -> Vec<(InputSpec, Vec<f64>, Option<f64>)> {
    let episodes: Vec<(&dvd::VtsTitle, Vec<[u64; 3]>)> = match info.titles.len() {
        0 | 1 => Vec::new(),
        _ => info
            .titles
            .iter()
            .map(|t| Some((t, t.pieces(&set.vob_bytes)?)))
            .collect::<Option<_>>()
            .unwrap_or_default(),
    };
    if episodes.is_empty() {
        // The IFO's length where it is the VOBs' (ffprobe's is a guess
        // from the program stream's clock).
        let seconds = info.whole_title().map(|t| t.seconds);
        return vec![(input, info.chapters().to_vec(), seconds)];
    }
    let longest = episodes
        .iter()
        .max_by(|a, b| a.0.seconds.total_cmp(&b.0.seconds))
        .map(|(t, _)| t.number);
    episodes
        .into_iter()
        .filter_map(|(t, cells)| {
            let main_title = set.number == main_set && Some(t.number) == longest;
            let wanted = match titles {
                DiscTitles::Main => main_title,
                DiscTitles::AtLeast(min) => main_title || t.seconds >= f64::from(min),
            };
            let mut input = input.clone();
            if let InputSpec::Dvd {
                title,
                pieces,
                main,
                ..
            } = &mut input
            {
                (*title, *pieces, *main) = (t.number, cells, main_title);
            }
            wanted.then(|| (input, t.chapters.clone(), Some(t.seconds)))
        })
        .collect()
}

/// How FFmpeg reads a DVD title set from `source` (`/proc/self/fd/N` of the
/// `VIDEO_TS` folder, or of the image).
pub fn dvd_input_arg(source: &Path, input: &InputSpec) -> std::ffi::OsString {
    let InputSpec::Dvd {
        vobs,
        image,
        extents,
        pieces,
        ..
    } = input
    else {
        return ffmpeg_file_arg(source);
    };
    if !image && pieces.is_empty() {
        return joined_vobs_arg(source, vobs);
    }
    let whole: Vec<[u64; 3]>;
    let pieces = match pieces.is_empty() {
        true => {
            whole = (0..)
                .zip(extents)
                .map(|(v, [_, len])| [v, 0, *len])
                .collect();
            &whole
        }
        false => pieces,
    };
    // A piece of a VOB: a range of the image, or of the VOB's file.
    let ranges: Vec<(PathBuf, u64, u64)> = pieces
        .iter()
        .filter_map(|&[vob, start, len]| {
            let vob = usize::try_from(vob).ok()?;
            Some(match image {
                true => (source.to_path_buf(), extents.get(vob)?[0] + start, len),
                false => (source.join(vobs.get(vob)?), start, len),
            })
        })
        .collect();
    file_ranges_arg(&ranges)
}

fn non_empty(tracks: Vec<Track>) -> Result<Vec<Track>, ProbeError> {
    if tracks.is_empty() {
        Err(ProbeError::NotDts)
    } else {
        Ok(tracks)
    }
}

/// The WAV format tag of a DTS stream stored as such (not disguised as PCM).
const WAVE_FORMAT_DTS: u16 = 0x2001;

/// A WAV: DTS disguised as PCM (a DTS-CD rip), or tagged as DTS. Its header
/// rules most out; for the rest the first non-silent audio decides.
fn probe_wav(tools: &Tools, path: &Path, file: &File) -> Result<Vec<Track>, ProbeError> {
    let io_err = |e: std::io::Error| ProbeError::Invalid(format!("cannot read the file: {e}"));
    let source = Some((path, file));
    let Some(wav) = sniff::read_wav_layout(&mut &*file).map_err(io_err)? else {
        return Err(ProbeError::NotDts);
    };
    if wav.format_tag == WAVE_FORMAT_DTS {
        // FFmpeg's WAV demuxer reads this one directly.
        let json = ffprobe(tools, source, &[], None).map_err(|_| ProbeError::NotDts)?;
        return non_empty(tracks_from_json(path, &json, InputSpec::Probed, None, None));
    }
    let found = sniff::find_dts_in_wav_samples(&mut &*file, &wav)
        .map_err(io_err)?
        .ok_or(ProbeError::NotDts)?;
    let input = InputSpec::PcmInWav {
        packing: found.packing,
        offset: found.offset,
    };
    let json = ffprobe(tools, source, &input_args(&input), None)
        .map_err(|e| ProbeError::Invalid(format!("DTS found in the WAV but unreadable ({e})")))?;
    let source_bits = read_prefix(file, found.offset, 64 << 10)
        .ok()
        .and_then(|b| core_bits_any(&b, found.packing));
    let mut tracks = tracks_from_json(path, &json, input, None, source_bits);
    // A forced raw demuxer cannot know the length; the WAV's size tells it.
    let bytes_per_second = f64::from(wav.sample_rate.max(1))
        * f64::from(wav.channels)
        * f64::from(wav.bits_per_sample / 8);
    for t in &mut tracks {
        if t.duration_seconds.is_none() {
            t.duration_seconds = Some(wav.data_len as f64 / bytes_per_second);
        }
    }
    non_empty(tracks)
}

/// A DTS-CD rip stored as FLAC: 2 channels of 16-bit "PCM" that is really
/// DTS. STREAMINFO rules most FLACs out; for the rest our own decoder reads
/// the first non-silent frames (FFmpeg only if it cannot).
fn probe_flac_rip(tools: &Tools, path: &Path, file: &File) -> Result<Vec<Track>, ProbeError> {
    let meta = flacmeta::read_open(file).map_err(|_| ProbeError::NotDts)?;
    let info = &meta.stream_info;
    // Our own output, or anything that is not CD-shaped, is not a DTS-CD rip.
    if meta.tags.contains_key(OWN_SOURCE_TAG)
        || !sniff::could_carry_dts(
            info.channels.into(),
            info.bits_per_sample.into(),
            info.sample_rate,
        )
    {
        return Err(ProbeError::NotDts);
    }
    let (found, from_sync) = match look_into_flac(file, &meta) {
        Ok(found) => found,
        Err(_) => {
            // Damaged, or a frame our decoder does not take: FFmpeg decides.
            let pcm = decode_flac_prefix(tools, path, file, sniff::SNIFF_LIMIT)
                .map_err(|_| ProbeError::NotDts)?;
            let found = sniff::find_dts_in_pcm(&pcm);
            found.map(|f| (f, pcm[f.offset as usize..].to_vec()))
        }
    }
    .ok_or(ProbeError::NotDts)?;
    let input = InputSpec::PcmInFlac {
        packing: found.packing,
        offset: found.offset,
    };
    let probe_args = vec!["-f".into(), found.packing.ffmpeg_format().into()];
    let json = ffprobe(tools, None, &probe_args, Some(&from_sync)).map_err(|e| {
        ProbeError::Invalid(format!("DTS found in the FLAC rip but unreadable ({e})"))
    })?;
    let source_bits = core_bits_any(&from_sync, found.packing);
    let mut tracks = tracks_from_json(path, &json, input, None, source_bits);
    let seconds = info.total_samples as f64 / f64::from(info.sample_rate.max(1));
    for t in &mut tracks {
        t.duration_seconds = Some(seconds);
    }
    non_empty(tracks)
}

/// Where DTS starts in a FLAC's PCM and the PCM from there, decoding only
/// the frames `sniff::look_for_dts` asks for.
fn look_into_flac(
    file: &File,
    meta: &flacmeta::FlacMeta,
) -> Result<Option<(sniff::PcmDts, Vec<u8>)>, flacdecode::DecodeError> {
    use std::io::{Seek, SeekFrom};
    let mut audio = file;
    audio.seek(SeekFrom::Start(meta.audio_offset))?;
    let mut frames = flacdecode::StereoPcm::new(audio, &meta.stream_info)?;
    let mut failed = None;
    let found = sniff::look_for_dts(|pcm| match frames.next_frame(pcm) {
        Ok(more) => Ok(more),
        Err(e) => {
            failed = Some(e);
            Ok(false)
        }
    })?;
    match failed {
        Some(e) if found.is_none() => Err(e),
        _ => Ok(found),
    }
}

/// Tag our FLAC output carries to name its source (see `convert`).
pub const OWN_SOURCE_TAG: &str = "DTSFLAC_SOURCE";
/// The source's content fingerprint (see `stamp`), in our FLACs' tags.
pub const FINGERPRINT_TAG: &str = "DTSFLAC_SOURCE_FINGERPRINT";

/// Decodes the first `limit` bytes of a FLAC file as raw 16-bit little-endian PCM.
fn decode_flac_prefix(
    tools: &Tools,
    path: &Path,
    file: &File,
    limit: u64,
) -> std::io::Result<Vec<u8>> {
    let seconds = limit as f64 / (44_100.0 * 4.0);
    let mut cmd = Command::new(&tools.ffmpeg);
    let input = ffmpeg_file_arg(&safe_open::pass_to_child(&mut cmd, file, Some(path)));
    let out = cmd
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-i"])
        .arg(input)
        .args([
            "-t",
            &format!("{seconds:.3}"),
            "-map",
            "0:a:0",
            "-f",
            "s16le",
            "-c:a",
            "pcm_s16le",
            "pipe:1",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()?;
    Ok(out.stdout)
}

/// The core's source resolution, unpacking 14-bit or IEC 61937 data first.
fn core_bits_any(data: &[u8], packing: PcmPacking) -> Option<u8> {
    let be16 = match packing {
        PcmPacking::Dts16Le => swap_words(data),
        PcmPacking::Dts14Le => unpack_14bit_le(&data[..data.len().min(64)]),
        PcmPacking::Iec61937 => swap_words(data.get(8..)?),
    };
    sniff::core_source_bits(&be16)
}

fn swap_words(data: &[u8]) -> Vec<u8> {
    data.chunks_exact(2).flat_map(|w| [w[1], w[0]]).collect()
}

/// 14-bit words (little-endian) → the plain big-endian bitstream.
fn unpack_14bit_le(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut nbits) = (0u32, 0u32);
    for w in data.chunks_exact(2) {
        acc = (acc << 14) | (u32::from(u16::from_le_bytes([w[0], w[1]])) & 0x3fff);
        nbits += 14;
        while nbits >= 8 {
            nbits -= 8;
            out.push((acc >> nbits) as u8);
        }
        acc &= (1 << nbits) - 1;
    }
    out
}

fn read_prefix(mut f: &File, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.take(len).read_to_end(&mut buf)?;
    Ok(buf)
}

/// FFmpeg input options that go before `-i` for this source.
pub fn input_args(input: &InputSpec) -> Vec<String> {
    match input {
        InputSpec::Probed => vec![],
        InputSpec::PcmInWav { packing, offset } => vec![
            "-f".into(),
            packing.ffmpeg_format().into(),
            "-skip_initial_bytes".into(),
            offset.to_string(),
        ],
        InputSpec::PcmInFlac { packing, .. } => vec!["-f".into(), packing.ffmpeg_format().into()],
        // Named, so FFmpeg never picks another title than the scan did.
        InputSpec::BluRay { playlist, .. } => vec!["-playlist".into(), playlist.to_string()],
        // The joined VOBs are one MPEG program stream.
        InputSpec::Dvd { .. } => vec!["-f".into(), "mpeg".into()],
    }
}

/// Runs ffprobe on `file` (opened with `safe_open`) and returns its JSON.
/// Without a file, `stdin` feeds a `pipe:0` source.
fn ffprobe(
    tools: &Tools,
    file: Option<(&Path, &File)>,
    pre_input: &[String],
    stdin: Option<&[u8]>,
) -> Result<Value, String> {
    let input = match (file, stdin) {
        (Some((path, f)), _) => ProbeInput::File(path, f),
        (None, data) => ProbeInput::Stdin(data.unwrap_or_default()),
    };
    run_ffprobe(tools, input, pre_input, false).map(|(json, _)| json)
}

/// What ffprobe reads.
enum ProbeInput<'a> {
    /// A file opened with `safe_open`, named like this path.
    File(&'a Path, &'a File),
    /// These bytes, on its stdin.
    Stdin(&'a [u8]),
    /// A Blu-ray disc's root folder (`bluray:/proc/self/fd/N`).
    Disc(&'a File),
    /// A DVD title set (`InputSpec::Dvd`): its VOBs below this `VIDEO_TS`
    /// folder, or ranges of this image, joined.
    Dvd(&'a File, &'a InputSpec),
}

/// Runs ffprobe and returns its JSON and, with `informative`, its log
/// (where FFmpeg's `bluray:` input names the title it chose).
fn run_ffprobe(
    tools: &Tools,
    source: ProbeInput,
    pre_input: &[String],
    informative: bool,
) -> Result<(Value, String), String> {
    let mut cmd = Command::new(&tools.ffprobe);
    cmd.args([
        "-hide_banner",
        "-v",
        if informative { "info" } else { "error" },
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
        "-show_chapters",
    ]);
    cmd.args(pre_input);
    cmd.arg("-i");
    let (input, stdin) = match source {
        ProbeInput::File(path, f) => (
            ffmpeg_file_arg(&safe_open::pass_to_child(&mut cmd, f, Some(path))),
            None,
        ),
        ProbeInput::Stdin(data) => ("pipe:0".into(), Some(data)),
        ProbeInput::Disc(folder) => (
            bluray_arg(&safe_open::pass_to_child(&mut cmd, folder, None)),
            None,
        ),
        ProbeInput::Dvd(source, input) => (
            dvd_input_arg(&safe_open::pass_to_child(&mut cmd, source, None), input),
            None,
        ),
    };
    cmd.arg(&input);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run ffprobe: {e}"))?;
    let feeder = stdin.map(|data| {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let data = data.to_vec();
        std::thread::spawn(move || {
            // ffprobe stops reading once it has seen enough; a broken pipe is expected.
            let _ = pipe.write_all(&data);
        })
    });
    let out = child
        .wait_with_output()
        .map_err(|e| format!("ffprobe failed: {e}"))?;
    if let Some(f) = feeder {
        let _ = f.join();
    }
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let lines = || err.lines().rev().map(str::trim).filter(|l| !l.is_empty());
        // The bluray input says why before FFmpeg's bare "Input/output
        // error" (an encrypted disc, no title long enough).
        let said_by_bluray = lines()
            .find_map(|l| l.strip_prefix("[bluray @"))
            .and_then(|l| l.split_once(']'))
            .map(|(_, why)| why.trim().trim_end_matches(':'));
        let last = said_by_bluray
            .or_else(|| lines().next())
            .unwrap_or("unknown error");
        return Err(strip_input_prefix(last, &input));
    }
    let json = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("unreadable ffprobe output: {e}"))?;
    Ok((json, String::from_utf8_lossy(&out.stderr).into_owned()))
}

/// ffprobe prefixes errors with its input's name; the user sees the file's.
fn strip_input_prefix(line: &str, input: &std::ffi::OsStr) -> String {
    let arg = input.to_string_lossy();
    line.strip_prefix(&*arg)
        .map(|s| s.trim_start_matches(':').trim())
        .unwrap_or(line)
        .to_string()
}

fn tag(v: &Value, key: &str) -> Option<String> {
    let tags = v.get("tags")?.as_object()?;
    tags.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .and_then(|(_, v)| v.as_str())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn num<T: std::str::FromStr>(v: &Value, key: &str) -> Option<T> {
    match v.get(key)? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.to_string().parse().ok(),
        _ => None,
    }
}

/// The decodable DTS streams of ffprobe's JSON, in its order.
fn dts_streams(json: &Value) -> Vec<&Value> {
    let Some(streams) = json.get("streams").and_then(Value::as_array) else {
        return vec![];
    };
    streams
        .iter()
        .filter(|s| s.get("codec_type").and_then(Value::as_str) == Some("audio"))
        .filter(|s| s.get("codec_name").and_then(Value::as_str) == Some("dts"))
        // No channels or rate: FFmpeg found a sync word but no decodable frame.
        .filter(|s| num::<u32>(s, "channels").unwrap_or(0) > 0)
        .filter(|s| num::<u32>(s, "sample_rate").unwrap_or(0) > 0)
        .collect()
}

fn tracks_from_json(
    path: &Path,
    json: &Value,
    input: InputSpec,
    header: Option<&DtsHdHeader>,
    source_bits: Option<u8>,
) -> Vec<Track> {
    let format = json.get("format").cloned().unwrap_or(Value::Null);
    let dts = dts_streams(json);
    let count = dts.len() as u32;
    dts.iter()
        .enumerate()
        .map(|(i, s)| {
            let profile =
                Profile::from_ffprobe(s.get("profile").and_then(Value::as_str).unwrap_or("DTS"));
            let sample_rate: u32 = num(s, "sample_rate").unwrap_or(48_000);
            let raw_bits: Option<u8> = num(s, "bits_per_raw_sample");
            let bits = match (profile.is_lossless(), raw_bits, source_bits) {
                (true, Some(b), _) | (false, Some(b), _) if b <= 16 => 16,
                (true, Some(_), _) => 24,
                // Lossy decodes are float: keep the resolution the core says the master had.
                (false, _, Some(16)) => 16,
                _ => 24,
            };
            let trim = header.map(|h| {
                let scale = |n: u64| n * u64::from(sample_rate) / u64::from(h.sample_rate.max(1));
                Trim {
                    start: scale(u64::from(h.codec_delay)),
                    samples: scale(h.original_samples),
                }
            });
            let duration_seconds = trim
                .map(|t| t.samples as f64 / f64::from(sample_rate))
                .or_else(|| num(s, "duration"))
                .or_else(|| num(&format, "duration"));
            let language = tag(s, "language").filter(|l| l != "und");
            Track {
                path: path.to_path_buf(),
                stream_index: num(s, "index").unwrap_or(0),
                track_number: i as u32 + 1,
                tracks_in_file: count,
                profile,
                lossless: profile.is_lossless(),
                channels: num(s, "channels").unwrap_or(0),
                channel_layout: s
                    .get("channel_layout")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_string(),
                sample_rate,
                bits_per_sample: bits,
                duration_seconds,
                language,
                title: tag(s, "title").or_else(|| tag(&format, "title")),
                album: tag(&format, "album"),
                artist: tag(&format, "artist").or_else(|| tag(&format, "album_artist")),
                input: input.clone(),
                trim,
                probed: None,
                chapters: chapters::from_ffprobe(json, num(s, "start_time").unwrap_or(0.0)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_from_ffprobe_names() {
        assert_eq!(Profile::from_ffprobe("DTS-HD MA"), Profile::HdMa);
        assert_eq!(Profile::from_ffprobe("DTS-HD MA + DTS:X"), Profile::DtsX);
        assert_eq!(Profile::from_ffprobe("DTS-HD HRA"), Profile::HdHra);
        assert_eq!(Profile::from_ffprobe("DTS 96/24"), Profile::Dts9624);
        assert_eq!(Profile::from_ffprobe("DTS-ES"), Profile::Es);
        assert_eq!(Profile::from_ffprobe("DTS"), Profile::Core);
        assert!(Profile::HdMa.is_lossless() && !Profile::HdHra.is_lossless());
    }

    #[test]
    fn a_dvd_title_is_read_as_its_vobs_whole_or_as_its_cells_ranges() {
        let mut input = InputSpec::Dvd {
            disc: PathBuf::from("/m/Eps"),
            video_ts: "VIDEO_TS".into(),
            title_set: 1,
            vobs: vec!["VTS_01_1.VOB".into(), "VTS_01_2.VOB".into()],
            main: true,
            image: false,
            extents: vec![[1000, 50], [2000, 70]],
            title: 0,
            pieces: vec![],
        };
        let folder = Path::new("/proc/self/fd/7");
        assert_eq!(
            dvd_input_arg(folder, &input),
            "concat:file:/proc/self/fd/7/VTS_01_1.VOB|file:/proc/self/fd/7/VTS_01_2.VOB"
        );
        if let InputSpec::Dvd { pieces, title, .. } = &mut input {
            (*title, *pieces) = (2, vec![[0, 20, 30], [1, 0, 10]]);
        }
        assert_eq!(
            dvd_input_arg(folder, &input),
            "concat:subfile,,start,20,end,50,,:file:/proc/self/fd/7/VTS_01_1.VOB|subfile,,start,0,end,10,,:file:/proc/self/fd/7/VTS_01_2.VOB"
        );
        // In an image, the same pieces are ranges of the VOBs' extents.
        if let InputSpec::Dvd { image, .. } = &mut input {
            *image = true;
        }
        assert_eq!(
            dvd_input_arg(folder, &input),
            "concat:subfile,,start,1020,end,1050,,:file:/proc/self/fd/7|subfile,,start,2000,end,2010,,:file:/proc/self/fd/7"
        );
        if let InputSpec::Dvd { pieces, .. } = &mut input {
            pieces.clear();
        }
        assert_eq!(
            dvd_input_arg(folder, &input),
            "concat:subfile,,start,1000,end,1050,,:file:/proc/self/fd/7|subfile,,start,2000,end,2070,,:file:/proc/self/fd/7"
        );
    }

    #[test]
    fn the_bluray_input_s_titles_are_read_from_its_log() {
        let log = "[bluray @ 0x55] 2 usable playlists:\n\
                   [bluray @ 0x55] playlist 00000.mpls (0:03:20)\n\
                   [bluray @ 0x55] playlist 00800.mpls (2:01:13)\n\
                   [bluray @ 0x55] selected 00800.mpls\n";
        assert_eq!(listed_playlists(log), [(0, 200), (800, 7273)]);
        assert_eq!(selected_playlist(log), Some(800));
        assert_eq!(listed_playlists("playlist x.mpls (1:2)"), []);
    }

    #[test]
    fn unpacks_14_bit_words_into_the_plain_bitstream() {
        // The 14-bit sync words FF1F 00E8 F007 carry the plain sync 7FFE8001.
        let bytes = [0xff, 0x1f, 0x00, 0xe8, 0xf0, 0x07];
        assert_eq!(unpack_14bit_le(&bytes)[..4], [0x7f, 0xfe, 0x80, 0x01]);
    }
}
