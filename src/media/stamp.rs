//! What a source file was when it was read: size, modification time and a
//! cheap fingerprint of its content. A probe is only valid for the file it
//! was made of; the stamp says whether the file is still that one (a film
//! replaced by another of the same size within the same second too).

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::safe_open;

/// Bytes read at the start, the middle and the end of the file.
const SAMPLE_BYTES: u64 = 64 << 10;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStamp {
    pub size: u64,
    pub mtime: i64,
    /// FNV-1a of the size and three samples of the content, as hex: stable
    /// across versions of the program (it is stored in jobs and FLAC tags).
    pub fingerprint: String,
}

impl SourceStamp {
    /// The stamp of an open file (at most 192 KiB read, wherever the file is).
    pub fn read(file: &File) -> io::Result<SourceStamp> {
        Self::read_all(std::slice::from_ref(file))
    }

    /// The stamp of a source made of several files (a DVD title set's VOBs,
    /// a Blu-ray playlist and its clips), so that any one replaced is told:
    /// their sizes summed, the latest time, every file sampled. Of one file
    /// it is that file's stamp.
    pub fn read_all(files: &[File]) -> io::Result<SourceStamp> {
        let metas = files
            .iter()
            .map(File::metadata)
            .collect::<io::Result<Vec<_>>>()?;
        let size = metas.iter().map(|m| m.len()).sum::<u64>();
        let mut hash = Fnv::new();
        hash.write(&size.to_le_bytes());
        let mut buf = vec![0u8; SAMPLE_BYTES as usize];
        for (i, (file, meta)) in files.iter().zip(&metas).enumerate() {
            let len = meta.len();
            if i > 0 {
                hash.write(&len.to_le_bytes());
            }
            let middle = (len / 2).saturating_sub(SAMPLE_BYTES / 2);
            let end = len.saturating_sub(SAMPLE_BYTES);
            for at in [0, middle, end] {
                let n = read_full_at(file, &mut buf, at)?;
                hash.write(&buf[..n]);
            }
        }
        Ok(SourceStamp {
            size,
            mtime: metas.iter().map(|m| m.mtime()).max().unwrap_or(0),
            fingerprint: format!("{:016x}", hash.0),
        })
    }

    /// Opens `path` with `safe_open` (a regular file, no symlink) and stamps it.
    pub fn of_path(path: &Path) -> io::Result<SourceStamp> {
        Self::read(&safe_open::open_regular(path)?)
    }

    /// Opens every one of `paths` with `safe_open` and stamps them as one source.
    pub fn of_paths(paths: &[std::path::PathBuf]) -> io::Result<SourceStamp> {
        let files = paths
            .iter()
            .map(|p| safe_open::open_regular(p))
            .collect::<io::Result<Vec<_>>>()?;
        Self::read_all(&files)
    }

    /// What differs from `earlier`, in words, or `None` when it is the same file.
    pub fn change_since(&self, earlier: &SourceStamp) -> Option<String> {
        if self.size != earlier.size {
            Some(format!(
                "its size went from {} to {} bytes",
                earlier.size, self.size
            ))
        } else if self.mtime != earlier.mtime {
            Some("its modification time changed".into())
        } else if self.fingerprint != earlier.fingerprint {
            Some("its content changed".into())
        } else {
            None
        }
    }
}

/// Fills `buf` from `at` as far as the file goes; how many bytes it got.
pub(crate) fn read_full_at(file: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], at + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// 64-bit FNV-1a: simple, fixed, and enough to tell files apart (this is
/// not a defence against someone crafting a collision: they own the drive).
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn write_at_time(path: &Path, content: &[u8], mtime: SystemTime) {
        std::fs::write(path, content).unwrap();
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    }

    #[test]
    fn a_file_replaced_by_another_of_the_same_size_and_time_is_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Film.dts");
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut film: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        write_at_time(&path, &film, when);
        let before = SourceStamp::of_path(&path).unwrap();
        assert_eq!(before.size, 1_000_000);
        assert_eq!(SourceStamp::of_path(&path).unwrap(), before, "stable");

        // One byte in the middle of the file, same size, same time.
        film[500_000] ^= 0xff;
        write_at_time(&path, &film, when);
        let after = SourceStamp::of_path(&path).unwrap();
        assert_eq!((after.size, after.mtime), (before.size, before.mtime));
        assert_eq!(
            after.change_since(&before).as_deref(),
            Some("its content changed")
        );

        film.push(0);
        write_at_time(&path, &film, when);
        let longer = SourceStamp::of_path(&path).unwrap();
        assert_eq!(
            longer.change_since(&before).as_deref(),
            Some("its size went from 1000000 to 1000001 bytes")
        );
    }

    #[test]
    fn a_source_of_several_files_changes_when_any_one_of_them_does() {
        let dir = tempfile::tempdir().unwrap();
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let vobs: Vec<_> = (1..=3)
            .map(|i| dir.path().join(format!("VTS_01_{i}.VOB")))
            .collect();
        let mut second: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
        for vob in &vobs {
            write_at_time(vob, &second, when);
        }
        let before = SourceStamp::of_paths(&vobs).unwrap();
        assert_eq!(before.size, 900_000);
        assert_eq!(before.mtime, 1_700_000_000);
        assert_eq!(
            SourceStamp::of_paths(&vobs[..1]).unwrap(),
            SourceStamp::of_path(&vobs[0]).unwrap(),
            "one file's stamp is the file's"
        );
        // The second VOB replaced by one of the same size and time.
        second[150_000] ^= 0xff;
        write_at_time(&vobs[1], &second, when);
        let after = SourceStamp::of_paths(&vobs).unwrap();
        assert_eq!(
            after.change_since(&before).as_deref(),
            Some("its content changed")
        );
        // The same files in another order are another source.
        let swapped = [vobs[1].clone(), vobs[0].clone(), vobs[2].clone()];
        assert_ne!(SourceStamp::of_paths(&swapped).unwrap(), after);
    }

    #[test]
    fn the_fingerprint_is_fixed_for_given_bytes() {
        // Stored in jobs and FLAC tags: it must not change between versions.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.dts");
        std::fs::write(&path, b"DTS").unwrap();
        let stamp = SourceStamp::of_path(&path).unwrap();
        let mut expected = Fnv::new();
        expected.write(&3u64.to_le_bytes());
        for _ in 0..3 {
            expected.write(b"DTS");
        }
        assert_eq!(stamp.fingerprint, format!("{:016x}", expected.0));
        assert_eq!(Fnv::new().0, 0xcbf2_9ce4_8422_2325);
        let mut one = Fnv::new();
        one.write(b"a");
        assert_eq!(
            one.0, 0xaf63_dc4c_8601_ec8c,
            "the published FNV-1a value of 'a'"
        );
    }
}
