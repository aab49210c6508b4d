//! `dtsflac bench scan`: the scan of a music library, against a plain walk
//! of the same tree. The library is generated: albums of CD-shaped FLACs
//! and WAVs (a tone and noise after a little silence, different in every
//! file), a cover and MP3s beside them, and a few DTS-CD rips hidden among
//! them. Prints a table; asserts nothing about time, but every rip must be
//! found and nothing else.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;

use dtsflac::media::scan::{scan, ScanLimits};
use dtsflac::media::sniff;
use dtsflac::media::tools::{ffmpeg_file_arg, Tools};

#[derive(Args)]
pub struct ScanBenchArgs {
    /// FLAC and WAV files in the library (one in five a WAV).
    #[arg(long, default_value_t = 5000)]
    files: usize,
    /// Seconds of audio per file.
    #[arg(long, default_value_t = 3)]
    seconds: u32,
    /// DTS-CD rips hidden among them (14-bit and IEC 61937, FLAC and WAV).
    #[arg(long, default_value_t = 4)]
    rips: usize,
    /// Rounds of each measurement; the table shows medians.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,
    /// Build the library in this folder and keep it (reused when it is
    /// there from an earlier run with the same sizes).
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
}

const TRACKS_PER_ALBUM: usize = 12;
const RATE: u32 = 44_100;

pub fn run(args: ScanBenchArgs) -> u8 {
    match bench(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("dtsflac bench scan: {e}");
            1
        }
    }
}

/// Deterministic noise (an LCG): every file differs, every run is the same.
struct Noise(u32);

impl Noise {
    fn next(&mut self) -> i32 {
        self.0 = self.0.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        i32::from((self.0 >> 16) as i16)
    }
}

/// 16-bit stereo PCM: up to half a second of silence, then a tone with noise.
fn song_pcm(index: usize, seconds: u32) -> Vec<u8> {
    let mut noise = Noise(index as u32 * 7919 + 1);
    let samples = (RATE * seconds) as usize;
    let silence = (noise.next().unsigned_abs() as usize) % (RATE as usize / 2);
    let hz = 110.0 + (index % 40) as f64 * 20.0;
    let mut pcm = Vec::with_capacity(samples * 4);
    for i in 0..samples {
        let (l, r) = if i < silence {
            (0, 0)
        } else {
            let t = i as f64 / f64::from(RATE);
            let tone = (t * hz * std::f64::consts::TAU).sin() * 12_000.0;
            (
                tone as i32 + noise.next() / 16,
                (tone * 0.8) as i32 + noise.next() / 16,
            )
        };
        pcm.extend_from_slice(&(l as i16).to_le_bytes());
        pcm.extend_from_slice(&(r as i16).to_le_bytes());
    }
    pcm
}

fn wav_file(pcm: &[u8]) -> Vec<u8> {
    let mut w = Vec::with_capacity(44 + pcm.len());
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + pcm.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    for field in [1u16, 2] {
        w.extend_from_slice(&field.to_le_bytes());
    }
    w.extend_from_slice(&RATE.to_le_bytes());
    w.extend_from_slice(&(RATE * 4).to_le_bytes());
    for field in [4u16, 16] {
        w.extend_from_slice(&field.to_le_bytes());
    }
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(pcm.len() as u32).to_le_bytes());
    w.extend_from_slice(pcm);
    w
}

fn run_tool(cmd: &mut Command) -> Result<Vec<u8>, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout)
}

/// 3 s of DTS 5.1 as a DTS CD carries it, and the same in IEC 61937 bursts.
fn dts_cd_streams(tools: &Tools, work: &Path) -> Result<(Vec<u8>, Vec<u8>), String> {
    let raw = work.join("rip.dts");
    let iec = work.join("rip.spdif");
    run_tool(
        Command::new(&tools.ffmpeg)
            .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg("sine=frequency=1000:sample_rate=44100:duration=3")
            .args(["-af", "pan=5.1(side)|FL=c0|FR=c0|FC=c0|LFE=c0|SL=c0|SR=c0"])
            .args([
                "-c:a", "dca", "-strict", "-2", "-b:a", "1234800", "-f", "dts",
            ])
            .arg(ffmpeg_file_arg(&raw)),
    )?;
    run_tool(
        Command::new(&tools.ffmpeg)
            .args(["-nostdin", "-v", "error", "-y", "-f", "dts", "-i"])
            .arg(ffmpeg_file_arg(&raw))
            .args(["-c", "copy", "-f", "spdif"])
            .arg(ffmpeg_file_arg(&iec)),
    )?;
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    Ok((sniff::pack_14bit_le(&read(&raw)?), read(&iec)?))
}

/// What the generated library holds.
struct Library {
    root: PathBuf,
    songs: usize,
    other_files: usize,
    rips: usize,
}

fn io(what: &Path) -> impl FnOnce(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", what.display())
}

fn build_library(tools: &Tools, root: &Path, args: &ScanBenchArgs) -> Result<Library, String> {
    let marker = root.join("dtsflac-bench-library.txt");
    let sizes = format!("{} {} {}\n", args.files, args.seconds, args.rips);
    let albums = args.files.div_ceil(TRACKS_PER_ALBUM);
    let library = Library {
        root: root.to_path_buf(),
        songs: args.files,
        // A cover per album, an MP3 for every fourth song.
        other_files: albums + args.files.div_ceil(4),
        rips: args.rips,
    };
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(sizes.as_str()) {
        return Ok(library);
    }
    std::fs::create_dir_all(root).map_err(io(root))?;
    let cover: Vec<u8> = [0xff, 0xd8, 0xff, 0xe0]
        .iter()
        .copied()
        .chain([0x55; 30_000])
        .collect();
    let mp3: Vec<u8> = b"ID3\x04\0\0\0\0\0\0"
        .iter()
        .copied()
        .chain([0xaa; 60_000])
        .collect();
    let mut to_flac: Vec<PathBuf> = Vec::new();
    for i in 0..args.files {
        let album = root
            .join(format!("Artist {:03}", i / (TRACKS_PER_ALBUM * 5)))
            .join(format!("Album {:04}", i / TRACKS_PER_ALBUM));
        if i % TRACKS_PER_ALBUM == 0 {
            std::fs::create_dir_all(&album).map_err(io(&album))?;
            let c = album.join("cover.jpg");
            std::fs::write(&c, &cover).map_err(io(&c))?;
        }
        let name = format!("{:02} - Song {i}", i % TRACKS_PER_ALBUM + 1);
        let wav = album.join(format!("{name}.wav"));
        std::fs::write(&wav, wav_file(&song_pcm(i, args.seconds))).map_err(io(&wav))?;
        if i % 5 != 4 {
            to_flac.push(wav);
        }
        if i % 4 == 0 {
            let m = album.join(format!("{name}.mp3"));
            std::fs::write(&m, &mp3).map_err(io(&m))?;
        }
    }
    // The rips: one in each packing and container in turn, after a second
    // of silence, in albums spread over the library.
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (dts14, iec) = dts_cd_streams(tools, work.path())?;
    for r in 0..args.rips {
        let album = root
            .join(format!("Artist {:03}", r))
            .join(format!("Album {:04}", r * albums / args.rips.max(1)));
        std::fs::create_dir_all(&album).map_err(io(&album))?;
        let mut pcm = vec![0u8; RATE as usize * 4];
        pcm.extend_from_slice(if r % 2 == 0 { &dts14 } else { &iec });
        pcm.resize(pcm.len().div_ceil(4) * 4, 0);
        let wav = album.join(format!("99 - DTS rip {r}.wav"));
        std::fs::write(&wav, wav_file(&pcm)).map_err(io(&wav))?;
        if r % 4 >= 2 {
            to_flac.push(wav);
        }
    }
    // libFLAC takes many files per run; two runs at once.
    let half = to_flac.len().div_ceil(2).max(1);
    std::thread::scope(|s| {
        let runs: Vec<_> = to_flac
            .chunks(half)
            .map(|files| {
                s.spawn(move || {
                    for batch in files.chunks(200) {
                        run_tool(
                            Command::new(&tools.flac)
                                .args(["-s", "-f", "-5", "--delete-input-file", "--"])
                                .args(batch),
                        )?;
                    }
                    Ok::<(), String>(())
                })
            })
            .collect();
        runs.into_iter()
            .try_for_each(|r| r.join().unwrap_or_else(|_| Err("flac panicked".into())))
    })?;
    std::fs::write(&marker, sizes).map_err(io(&marker))?;
    Ok(library)
}

/// What a plain walk costs: every entry listed and stat'ed, nothing
/// opened. The files found and their bytes.
fn plain_walk(dir: &Path) -> (usize, u64) {
    let (mut files, mut bytes) = (0, 0);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    for entry in entries.filter_map(Result::ok) {
        match std::fs::symlink_metadata(entry.path()) {
            Ok(meta) if meta.is_dir() => {
                let (f, b) = plain_walk(&entry.path());
                (files, bytes) = (files + f, bytes + b);
            }
            Ok(meta) => (files, bytes) = (files + 1, bytes + meta.len()),
            Err(_) => {}
        }
    }
    (files, bytes)
}

/// Bytes this process has asked the kernel to read so far (`rchar`).
fn bytes_read() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))?
        .trim()
        .parse()
        .ok()
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn bench(args: ScanBenchArgs) -> Result<(), String> {
    let tools = super::tools_or_explain().ok_or("FFmpeg is missing")?;
    let temp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let root = args
        .keep
        .clone()
        .unwrap_or_else(|| temp.path().join("library"));
    eprintln!("generating the library in {}…", root.display());
    let library = build_library(&tools, &root, &args)?;
    let board = dtsflac::hw::board::detect();
    let (listed, stored) = plain_walk(&library.root);
    println!(
        "dtsflac bench scan: {} songs of {} s (4 in 5 FLAC, 1 WAV; 16-bit stereo 44.1 kHz) + {} DTS-CD rips, \
         {} covers and MP3s, {:.0} MB, on {} ({} cores); files in the page cache",
        library.songs,
        args.seconds,
        library.rips,
        library.other_files,
        stored as f64 / 1e6,
        board.model,
        board.cores
    );
    let (mut walks, mut scans) = (Vec::new(), Vec::new());
    let mut read_per_file = 0.0;
    for n in 1..=args.rounds {
        eprintln!("round {n} of {}…", args.rounds);
        let start = Instant::now();
        plain_walk(&library.root);
        walks.push(start.elapsed());

        let before = bytes_read();
        let start = Instant::now();
        let report = scan(
            &tools,
            std::slice::from_ref(&library.root),
            ScanLimits::default(),
        );
        scans.push(start.elapsed());
        if let (Some(a), Some(b)) = (before, bytes_read()) {
            read_per_file = (b - a) as f64 / (library.songs + library.rips) as f64;
        }
        if report.found.len() != library.rips || !report.problems.is_empty() {
            let found: Vec<_> = report
                .found
                .iter()
                .map(|f| f.track.path.display())
                .collect();
            return Err(format!(
                "the scan found {} DTS tracks of {} rips ({found:?}); problems: {:?}",
                report.found.len(),
                library.rips,
                report.problems
            ));
        }
    }
    let (walk, scanned) = (median(walks), median(scans));
    let looked_at = (library.songs + library.rips) as f64;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "| {:<44} | {:>9} | {:>16} | {:>20} |",
        "run (median of rounds)", "wall", "files/s", "read per FLAC/WAV"
    );
    let _ = writeln!(out, "|{:-<46}|{:-<11}|{:-<18}|{:-<22}|", "", "", "", "");
    let _ = writeln!(
        out,
        "| {:<44} | {:>7.3} s | {:>8.0} (all {listed}) | {:>20} |",
        "plain walk (list and stat every entry)",
        walk.as_secs_f64(),
        listed as f64 / walk.as_secs_f64(),
        "-"
    );
    let _ = writeln!(
        out,
        "| {:<44} | {:>7.3} s | {:>16.0} | {:>17.1} KB |",
        format!("dtsflac scan ({} FLAC/WAV looked at)", looked_at),
        scanned.as_secs_f64(),
        looked_at / scanned.as_secs_f64(),
        read_per_file / 1e3
    );
    let _ = writeln!(
        out,
        "\nDTS-CD rips found: {} of {}, nothing else. The scan's wall time includes ffprobe on each rip.",
        library.rips, library.rips
    );
    Ok(())
}
