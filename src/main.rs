//! The `dtsflac` command line: `scan`, `convert` and `doctor` over the engine.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dtsflac::media::probe::DiscTitles;

mod cli;

/// Turns DTS audio (DTS-HD MA, HRA, 96/24, ES, core; standalone, in
/// containers, or hidden in DTS-CD WAVs) into exact, verified FLAC files.
#[derive(Parser)]
#[command(name = "dtsflac", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every DTS track found in the given files and folders.
    Scan {
        /// Print a JSON array (one object per track) instead of a table.
        #[arg(long)]
        json: bool,
        /// List every title of a Blu-ray or DVD disc at least SECONDS long,
        /// not only its main one (FFmpeg lists no Blu-ray title under 180 s).
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(1..))]
        all_titles_over: Option<u32>,
        /// Files and folders to search (folders are searched recursively).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Convert every DTS track found to FLAC next to its source.
    Convert(cli::convert::ConvertArgs),
    /// Check that FFmpeg and everything else the box needs is in place.
    Doctor,
    /// Measure dtsflac against plain FFmpeg on long DTS-HD MA tracks.
    Bench(cli::bench::BenchArgs),
    /// Check FLAC files as stored, frame by frame (every header and frame
    /// CRC, no gap, every sample counted against STREAMINFO) without
    /// decoding them. Conversions run this as their read-back check.
    CheckFlac {
        /// One line per file: "frames samples min_frame_bytes max_frame_bytes".
        #[arg(long)]
        machine: bool,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Write files of a Blu-ray image, read by libbluray, for a probe in
    /// another dtsflac process (a helper: a damaged image ends it, not the box).
    #[command(name = "bluray-image-files", hide = true)]
    BlurayImageFiles {
        image: PathBuf,
        /// From the disc's root; a folder's end in `/` (its names are written).
        #[arg(last = true)]
        paths: Vec<String>,
    },
    /// Run the box: mount USB drives as they are plugged in, convert every
    /// DTS track on them, serve the status API, eject on request.
    Run {
        /// The TOML configuration file (every key has a default).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

/// A path that does not exist is a usage error (exit 2), like a bad flag.
fn missing_path(paths: &[PathBuf]) -> Option<&PathBuf> {
    paths.iter().find(|p| std::fs::symlink_metadata(p).is_err())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let paths = match &cli.command {
        Command::Scan { paths, .. } => paths.as_slice(),
        Command::Convert(args) => args.paths.as_slice(),
        Command::CheckFlac { files, .. } => files.as_slice(),
        Command::Doctor
        | Command::Run { .. }
        | Command::Bench(_)
        | Command::BlurayImageFiles { .. } => &[],
    };
    if let Some(p) = missing_path(paths) {
        eprintln!("dtsflac: {}: no such file or folder", p.display());
        return ExitCode::from(2);
    }
    let code = match cli.command {
        Command::Scan {
            json,
            paths,
            all_titles_over,
        } => cli::scan::run(
            &paths,
            json,
            all_titles_over.map_or(DiscTitles::Main, DiscTitles::AtLeast),
        ),
        Command::Convert(args) => cli::convert::run(args),
        Command::Doctor => cli::doctor::run(),
        Command::Bench(args) => cli::bench::run(args),
        Command::Run { config } => cli::run::run(config),
        Command::CheckFlac { machine, files } => cli::check::run(&files, machine),
        Command::BlurayImageFiles { image, paths } => cli::bdimage::run(&image, &paths),
    };
    ExitCode::from(code)
}
