//! The `dtsflac` command line: `scan`, `convert` and `doctor` over the engine.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
        /// Files and folders to search (folders are searched recursively).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Convert every DTS track found to FLAC next to its source.
    Convert(cli::convert::ConvertArgs),
    /// Check that FFmpeg and everything else the box needs is in place.
    Doctor,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Scan { json, paths } => cli::scan::run(&paths, json),
        Command::Convert(args) => cli::convert::run(args),
        Command::Doctor => cli::doctor::run(),
    };
    ExitCode::from(code)
}
