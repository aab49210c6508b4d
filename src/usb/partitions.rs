//! Partition tables read by ourselves, for kernels built without MBR/GPT
//! support (some minimal board and VM kernels): the partitions of such a disk
//! are reached through loop devices set at their offsets. On kernels that do
//! split partitions, the partition devices are used directly and this is
//! never needed.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// 1-based number, as the kernel would name it (`sda1`).
    pub number: u32,
    pub offset: u64,
    pub size: u64,
}

const SECTOR: u64 = 512;

fn read_at(f: &mut File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf)?;
    Ok(buf)
}

/// The data partitions of an MBR or GPT disk; empty when there is no table.
pub fn read_table(dev: &Path) -> io::Result<Vec<Partition>> {
    let mut f = File::open(dev)?;
    let disk_size = f.seek(SeekFrom::End(0))?;
    let mbr = read_at(&mut f, 0, 512)?;
    if mbr[510..512] != [0x55, 0xaa] {
        return Ok(Vec::new());
    }
    let entries: Vec<&[u8]> = (0..4).map(|i| &mbr[446 + i * 16..462 + i * 16]).collect();
    if entries.iter().any(|e| e[4] == 0xee) {
        return read_gpt(&mut f, disk_size);
    }
    let mut parts = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let kind = e[4];
        // Empty, and extended containers (their logical drives are rare on sticks).
        if matches!(kind, 0x00 | 0x05 | 0x0f | 0x85) || !matches!(e[0], 0x00 | 0x80) {
            continue;
        }
        let start = u64::from(u32::from_le_bytes(e[8..12].try_into().unwrap())) * SECTOR;
        let size = u64::from(u32::from_le_bytes(e[12..16].try_into().unwrap())) * SECTOR;
        if start == 0 || size == 0 || start + size > disk_size {
            continue;
        }
        parts.push(Partition {
            number: i as u32 + 1,
            offset: start,
            size,
        });
    }
    Ok(parts)
}

fn read_gpt(f: &mut File, disk_size: u64) -> io::Result<Vec<Partition>> {
    let header = read_at(f, SECTOR, 92)?;
    if &header[..8] != b"EFI PART" {
        return Ok(Vec::new());
    }
    let entries_lba = u64::from_le_bytes(header[72..80].try_into().unwrap());
    let count = u32::from_le_bytes(header[80..84].try_into().unwrap()).min(256);
    let entry_size = u32::from_le_bytes(header[84..88].try_into().unwrap()) as usize;
    if !(128..=4096).contains(&entry_size) {
        return Ok(Vec::new());
    }
    let table = read_at(f, entries_lba * SECTOR, entry_size * count as usize)?;
    let mut parts = Vec::new();
    for (i, e) in table.chunks_exact(entry_size).enumerate() {
        if e[..16].iter().all(|b| *b == 0) {
            continue;
        }
        let first = u64::from_le_bytes(e[32..40].try_into().unwrap());
        let last = u64::from_le_bytes(e[40..48].try_into().unwrap());
        if first == 0 || last < first || (last + 1) * SECTOR > disk_size {
            continue;
        }
        parts.push(Partition {
            number: i as u32 + 1,
            offset: first * SECTOR,
            size: (last - first + 1) * SECTOR,
        });
    }
    Ok(parts)
}

/// A loop device over one partition of `disk`.
pub fn attach(disk: &Path, p: &Partition) -> io::Result<PathBuf> {
    let out = Command::new("losetup")
        .args(["--find", "--show", "--offset"])
        .arg(p.offset.to_string())
        .arg("--sizelimit")
        .arg(p.size.to_string())
        .arg(disk)
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "losetup failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

pub fn detach(loop_dev: &Path) {
    let _ = Command::new("losetup")
        .arg("-d")
        .arg(loop_dev)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mbr_primary_partitions_and_skips_empty_and_extended() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        let mut mbr = vec![0u8; 512];
        let mut put = |slot: usize, kind: u8, start: u32, sectors: u32| {
            let e = &mut mbr[446 + slot * 16..462 + slot * 16];
            e[4] = kind;
            e[8..12].copy_from_slice(&start.to_le_bytes());
            e[12..16].copy_from_slice(&sectors.to_le_bytes());
        };
        put(0, 0x0c, 2048, 4096);
        put(1, 0x05, 8192, 100);
        put(2, 0x07, 10240, 2048);
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        let f = File::create(&img).unwrap();
        f.set_len(16 << 20).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &mbr, 0).unwrap();
        let parts = read_table(&img).unwrap();
        assert_eq!(
            parts,
            vec![
                Partition {
                    number: 1,
                    offset: 2048 * 512,
                    size: 4096 * 512
                },
                Partition {
                    number: 3,
                    offset: 10240 * 512,
                    size: 2048 * 512
                },
            ]
        );
    }

    #[test]
    fn no_signature_means_no_table() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("blank.img");
        std::fs::write(&img, vec![0u8; 4096]).unwrap();
        assert!(read_table(&img).unwrap().is_empty());
    }
}
