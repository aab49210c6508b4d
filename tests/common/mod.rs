//! Helpers shared by the end-to-end tests: running the binary and the real
//! tools, and reading what they wrote. Missing tools or samples fail loudly.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub fn samples() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/samples/dcadec");
    assert!(
        dir.join("PROVENANCE.md").exists(),
        "the DTS test streams are missing: expected {} (the shared folder beside the project)",
        dir.display()
    );
    dir
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("--- stdout\n{}--- stderr\n{}", self.stdout, self.stderr)
    }
}

pub fn dtsflac(args: &[&str], paths: &[&Path]) -> Run {
    dtsflac_env(args, paths, &[])
}

pub fn dtsflac_env(args: &[&str], paths: &[&Path], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dtsflac"));
    cmd.args(args).args(paths).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("cannot run dtsflac");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs a tool and returns its stdout; panics with its stderr on failure.
pub fn run_tool<S: AsRef<OsStr>>(tool: &str, args: &[S]) -> Vec<u8> {
    let out = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `{tool}` ({e}): install it (apt-get install ffmpeg flac)")
        });
    assert!(
        out.status.success(),
        "{tool} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A tool's stdout and stderr together, whatever its exit status (for
/// `--help` texts, which some tools print with a failing status).
pub fn run_tool_output(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{tool}` ({e})"));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs ffmpeg with `args` and writes `output`.
pub fn ffmpeg(args: &[&str], output: &Path) {
    let mut all: Vec<&OsStr> = ["-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
        .iter()
        .map(OsStr::new)
        .collect();
    all.extend(args.iter().map(OsStr::new));
    all.push(output.as_os_str());
    run_tool("ffmpeg", &all);
}

/// MD5 of the first audio stream's decoded PCM, as FFmpeg computes it.
pub fn ffmpeg_md5(input: &Path, codec: &[&str]) -> String {
    let mut args: Vec<&OsStr> = ["-nostdin", "-v", "error", "-i"]
        .iter()
        .map(OsStr::new)
        .collect();
    args.push(input.as_os_str());
    args.extend(["-map", "0:a:0"].iter().map(OsStr::new));
    args.extend(codec.iter().map(OsStr::new));
    args.extend(["-f", "md5", "-"].iter().map(OsStr::new));
    String::from_utf8(run_tool("ffmpeg", &args)).unwrap()
}

/// A decoded WAV: per-channel samples.
#[derive(Debug)]
pub struct Wav {
    pub channels: u16,
    pub rate: u32,
    pub bits: u16,
    /// WAVEFORMATEXTENSIBLE speaker mask (0 for a plain WAV).
    pub mask: u32,
    pub samples: Vec<Vec<i32>>,
}

impl Wav {
    /// Speaker bits in channel order.
    pub fn speakers(&self) -> Vec<u32> {
        (0..32)
            .map(|b| 1u32 << b)
            .filter(|b| self.mask & b != 0)
            .collect()
    }
}

pub fn read_wav(path: &Path) -> Wav {
    let d = fs::read(path).unwrap();
    assert_eq!(&d[..4], b"RIFF", "{} is not a WAV", path.display());
    let mut pos = 12;
    let (mut fmt, mut data) = (None, None);
    while pos + 8 <= d.len() {
        let id = &d[pos..pos + 4];
        let len = u32::from_le_bytes(d[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let body = &d[pos + 8..(pos + 8 + len).min(d.len())];
        match id {
            b"fmt " => fmt = Some(body),
            b"data" => data = Some(body),
            _ => {}
        }
        pos += 8 + len + (len & 1);
    }
    let fmt = fmt.expect("no fmt chunk");
    let data = data.expect("no data chunk");
    let u16_at = |o: usize| u16::from_le_bytes([fmt[o], fmt[o + 1]]);
    let tag = u16_at(0);
    let channels = u16_at(2);
    let rate = u32::from_le_bytes(fmt[4..8].try_into().unwrap());
    let bits = u16_at(14);
    let mask = if tag == 0xfffe {
        u32::from_le_bytes(fmt[20..24].try_into().unwrap())
    } else {
        0
    };
    let width = usize::from(bits).div_ceil(8);
    let frame = width * usize::from(channels);
    let mut samples = vec![Vec::new(); usize::from(channels)];
    for f in data.chunks_exact(frame) {
        for (c, s) in f.chunks_exact(width).enumerate() {
            let mut v: i32 = 0;
            for (i, b) in s.iter().enumerate() {
                v |= i32::from(*b) << (8 * i);
            }
            let shift = 32 - 8 * width as u32;
            samples[c].push(if width == 1 {
                i32::from(s[0]) - 128
            } else {
                (v << shift) >> shift
            });
        }
    }
    Wav {
        channels,
        rate,
        bits,
        mask,
        samples,
    }
}

/// Decodes a FLAC with the reference `flac` tool (which writes the channel
/// mask into the WAV header) and reads the result.
pub fn flac_decode(flac: &Path) -> Wav {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("decoded.wav");
    run_tool(
        "flac",
        &[
            OsStr::new("-d"),
            OsStr::new("-s"),
            OsStr::new("-o"),
            wav.as_os_str(),
            flac.as_os_str(),
        ],
    );
    read_wav(&wav)
}

/// Vorbis comments, read by the reference `metaflac` tool.
pub fn flac_tags(flac: &Path) -> BTreeMap<String, String> {
    let out = run_tool(
        "metaflac",
        &[OsStr::new("--export-tags-to=-"), flac.as_os_str()],
    );
    String::from_utf8(out)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_ascii_uppercase(), v.to_string()))
        .collect()
}

/// The tracks of a FLAC's CUESHEET block as `metaflac --list` shows
/// them: (track number, sample offset), the lead-out last.
pub fn cuesheet_tracks(flac: &Path) -> Vec<(u32, u64)> {
    let out = run_tool(
        "metaflac",
        &[
            OsStr::new("--list"),
            OsStr::new("--block-type=CUESHEET"),
            flac.as_os_str(),
        ],
    );
    let text = String::from_utf8(out).unwrap();
    let mut tracks = Vec::new();
    let mut offset = None;
    let mut in_track = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with("track[") {
            in_track = true;
        } else if line.starts_with("index[") {
            in_track = false;
        } else if let (true, Some(v)) = (in_track, line.strip_prefix("offset: ")) {
            offset = v.parse().ok();
        } else if let (true, Some(v), Some(o)) = (in_track, line.strip_prefix("number: "), offset) {
            tracks.push((v.split_whitespace().next().unwrap().parse().unwrap(), o));
            offset = None;
        }
    }
    tracks
}

/// The samples per channel a FLAC holds, as `metaflac` reads them.
pub fn total_samples(flac: &Path) -> u64 {
    String::from_utf8(run_tool(
        "metaflac",
        &[OsStr::new("--show-total-samples"), flac.as_os_str()],
    ))
    .unwrap()
    .trim()
    .parse()
    .unwrap()
}

pub fn flac_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "flac"))
        .collect();
    v.sort();
    v
}

/// Every file under `dir` (hidden ones too) with its content.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut all = BTreeMap::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all.extend(snapshot(&path));
        } else {
            all.insert(path.clone(), fs::read(&path).unwrap());
        }
    }
    all
}

/// Deterministic noise (xorshift), so a failure can be reproduced.
pub fn pseudo_random_bytes(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Moves a file's modification time `seconds` into the future.
pub fn shift_mtime(path: &Path, seconds: i64) {
    let mtime = fs::metadata(path).unwrap().modified().unwrap();
    let t = mtime
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + seconds;
    run_tool(
        "touch",
        &[
            OsStr::new("-m"),
            OsStr::new("-d"),
            OsStr::new(&format!("@{t}")),
            path.as_os_str(),
        ],
    );
}

/// A small tmpfs (read-only or tiny) mounted for the test's lifetime. Needs
/// root, which CI has; without it the test fails and says why.
pub struct TmpfsMount(PathBuf);

impl TmpfsMount {
    pub fn new(dir: &Path, options: &str) -> TmpfsMount {
        fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .output()
            .expect("cannot run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs at {} failed ({}): these tests need root (CI runs as root)",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        TmpfsMount(dir.to_path_buf())
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// DTS channel names of the reference decodes for a WAV speaker bit.
pub fn reference_channel(bit: u32, available: &BTreeMap<String, PathBuf>) -> String {
    let pick = |preferred: &str, fallback: &str| {
        if available.contains_key(preferred) {
            preferred.to_string()
        } else {
            fallback.to_string()
        }
    };
    match bit {
        0x1 => "L".into(),
        0x2 => "R".into(),
        0x4 => "C".into(),
        0x8 => "LFE".into(),
        // Back (rear) speakers: DTS Lsr/Rsr, or Ls/Rs when the stream has no rears.
        0x10 => pick("Lsr", "Ls"),
        0x20 => pick("Rsr", "Rs"),
        0x100 => "Cs".into(),
        // Side speakers: DTS Lss/Rss, or Ls/Rs in 5.1/6.1.
        0x200 => pick("Lss", "Ls"),
        0x400 => pick("Rss", "Rs"),
        other => panic!("unexpected speaker bit {other:#x}"),
    }
}

pub fn references_for(stem: &str) -> BTreeMap<String, PathBuf> {
    let mut refs = BTreeMap::new();
    for entry in fs::read_dir(samples().join("reference")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if let Some(channel) = name.strip_prefix(&format!("{stem}_")) {
            refs.insert(channel.to_string(), path);
        }
    }
    assert!(!refs.is_empty(), "no reference decodes for {stem}");
    refs
}

/// Asserts that a FLAC holds exactly the reference decode of a dcadec
/// sample: every channel on the right speaker, bit for bit, full length.
pub fn assert_matches_reference(flac: &Path, stem: &str) {
    let decoded = flac_decode(flac);
    let refs = references_for(stem);
    assert_eq!(
        usize::from(decoded.channels),
        refs.len(),
        "{stem}: channel count"
    );
    let speakers = decoded.speakers();
    assert_eq!(
        speakers.len(),
        refs.len(),
        "{stem}: channel mask {:#x}",
        decoded.mask
    );
    for (index, bit) in speakers.iter().enumerate() {
        let name = reference_channel(*bit, &refs);
        let reference = read_wav(&refs[&name]);
        assert_eq!(reference.rate, decoded.rate, "{stem}: sample rate");
        assert_eq!(reference.bits, decoded.bits, "{stem}: bit depth");
        assert_eq!(
            decoded.samples[index].len(),
            reference.samples[0].len(),
            "{stem}: length of channel {name}"
        );
        let first_difference = decoded.samples[index]
            .iter()
            .zip(&reference.samples[0])
            .position(|(a, b)| a != b);
        assert_eq!(
            first_difference, None,
            "{stem}: speaker {bit:#x} differs from reference channel {name}"
        );
    }
}
