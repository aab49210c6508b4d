//! The files of a Blu-ray image (its playlists, its disc library), read by
//! libbluray in a helper process: `dtsflac bluray-image-files IMAGE PATH…`
//! writes each file, or each folder's names, to its stdout, and the probe
//! reads them back. A hostile image can crash or stall libbluray's UDF
//! reader; here that ends one helper (killed after `HELPER_SECONDS`) with
//! an error for that image, and the box goes on.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::libbluray;
use super::safe_open;
use super::tools::Tools;

/// The helper's subcommand.
pub const HELPER_COMMAND: &str = "bluray-image-files";
/// A disc's playlist or disc-library file is a few KiB; more is refused.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// Names taken from one folder.
pub const MAX_FOLDER_NAMES: usize = 20_000;
/// libbluray opens an image and reads a few files in milliseconds.
const HELPER_SECONDS: u64 = 20;
/// Paths asked of one helper (its reply is at most this many files).
const PATHS_PER_HELPER: usize = 64;

/// What an image holds at a path asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    File(Vec<u8>),
    /// A path ending in `/`: the folder's names.
    Folder(Vec<String>),
    Missing,
}

/// Reads `paths` (from the disc's root; a folder's end in `/`) out of the
/// Blu-ray image `image`, in a helper process when dtsflac's executable is
/// known (`Tools::checker`), else here.
pub fn read(tools: &Tools, image: &File, paths: &[String]) -> Result<Vec<Entry>, String> {
    // A disc can have hundreds of long titles: a helper for each few dozen.
    let mut entries = Vec::with_capacity(paths.len());
    for batch in paths.chunks(PATHS_PER_HELPER) {
        let reply = match &tools.checker {
            Some(exe) => run_helper(exe, image, batch)?,
            None => {
                let mut out = Vec::new();
                let here = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(image));
                serve(Path::new(&here), batch, &mut out)?;
                out
            }
        };
        entries.extend(parse_reply(&reply, batch.len())?);
    }
    Ok(entries)
}

fn run_helper(exe: &Path, image: &File, paths: &[String]) -> Result<Vec<u8>, String> {
    let mut cmd = Command::new(exe);
    cmd.arg(HELPER_COMMAND);
    let image_path = safe_open::pass_to_child(&mut cmd, image, None);
    cmd.arg(image_path)
        .arg("--")
        .args(paths)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run the Blu-ray image reader: {e}"))?;
    let limit = (MAX_FILE_BYTES + 64) * paths.len() as u64;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let out = std::thread::spawn(move || {
        let mut data = Vec::new();
        let got = (&mut stdout).take(limit).read_to_end(&mut data);
        // Whatever is left unread, the reader is not waited on for it.
        drop(stdout);
        got.map(|_| data)
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = (&mut stderr).take(4096).read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(HELPER_SECONDS);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let data = out
        .join()
        .map_err(|_| "the image reader's output was lost")?;
    let why = err.join().unwrap_or_default();
    match status {
        None => Err(format!(
            "libbluray did not read the image within {HELPER_SECONDS} s"
        )),
        Some(s) if !s.success() => {
            let why = why.lines().rev().map(str::trim).find(|l| !l.is_empty());
            Err(why.unwrap_or("the Blu-ray image reader failed").to_string())
        }
        Some(_) => data.map_err(|e| format!("cannot read the image reader's output: {e}")),
    }
}

/// The helper's side (and the in-process reader): opens `image` with
/// libbluray and writes every path asked for, in order, to `out`.
pub fn serve(image: &Path, paths: &[String], out: &mut impl Write) -> Result<(), String> {
    let disc = libbluray::Disc::open(image)?;
    let wrote = |e: io::Error| format!("cannot write: {e}");
    for path in paths {
        match path.strip_suffix('/') {
            Some(folder) => {
                let names = disc.list(folder, MAX_FOLDER_NAMES)?;
                if names.iter().any(|n| n.contains('\n')) {
                    return Err(format!("{folder} holds a name with a line break"));
                }
                let text = names.join("\n");
                write!(out, "D {}\n{text}", text.len()).map_err(wrote)?;
            }
            None => match disc.read(path, MAX_FILE_BYTES)? {
                Some(data) => {
                    writeln!(out, "F {}", data.len()).map_err(wrote)?;
                    out.write_all(&data).map_err(wrote)?;
                }
                None => out.write_all(b"-\n").map_err(wrote)?,
            },
        }
    }
    Ok(())
}

/// The helper's reply for `count` paths: "F <len>\n<bytes>", "D <len>\n<names>"
/// or "-\n" each.
fn parse_reply(mut reply: &[u8], count: usize) -> Result<Vec<Entry>, String> {
    let bad = || "the Blu-ray image reader's reply is damaged".to_string();
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let line_end = reply.iter().position(|&b| b == b'\n').ok_or_else(bad)?;
        let line = std::str::from_utf8(&reply[..line_end]).map_err(|_| bad())?;
        reply = &reply[line_end + 1..];
        if line == "-" {
            entries.push(Entry::Missing);
            continue;
        }
        let (kind, len) = line.split_once(' ').ok_or_else(bad)?;
        let len: usize = len.parse().map_err(|_| bad())?;
        if len > reply.len() || len as u64 > MAX_FILE_BYTES.max(MAX_FOLDER_NAMES as u64 * 256) {
            return Err(bad());
        }
        let (body, rest) = reply.split_at(len);
        reply = rest;
        entries.push(match kind {
            "F" => Entry::File(body.to_vec()),
            "D" if body.is_empty() => Entry::Folder(Vec::new()),
            "D" => Entry::Folder(
                String::from_utf8_lossy(body)
                    .split('\n')
                    .map(str::to_string)
                    .collect(),
            ),
            _ => return Err(bad()),
        });
    }
    if !reply.is_empty() {
        return Err(bad());
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_gives_each_path_in_order_and_a_damaged_one_is_an_error() {
        let mut reply = b"F 3\nabc-\nD 12\n00000.mpls\nx".to_vec();
        reply.extend(b"D 0\n");
        assert_eq!(
            parse_reply(&reply, 4).unwrap(),
            [
                Entry::File(b"abc".to_vec()),
                Entry::Missing,
                Entry::Folder(vec!["00000.mpls".into(), "x".into()]),
                Entry::Folder(Vec::new()),
            ]
        );
        for cut in 0..reply.len() {
            assert!(parse_reply(&reply[..cut], 4).is_err(), "cut at {cut}");
        }
        assert!(parse_reply(&reply, 3).is_err(), "bytes left over");
        assert!(parse_reply(b"F 99999999999\n", 1).is_err());
        assert!(parse_reply(b"X 1\na", 1).is_err());
    }
}
