//! Identifies the filesystem on a USB drive by reading its superblock ourselves.
//!
//! Why native: the box must know what a freshly plugged drive holds (type, label, UUID)
//! before mounting it, and shelling out to `blkid` or linking libudev/libblkid would add a
//! runtime dependency, a C library and a parsing step for a job that is a few hundred bytes
//! of well documented on-disk structures. Only the filesystems the box can mount are
//! recognised: vfat, exFAT, NTFS and ext2/3/4.
//!
//! The UUID strings and labels are deliberately formatted exactly as `blkid -p -o export`
//! prints them, so that they stay comparable with what users see in other Linux tools.
//!
//! Everything here parses bytes from untrusted drives: every offset is bounds-checked,
//! every read size is capped, and anything malformed means "not this filesystem"
//! rather than a panic.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// How much of the device `identify` reads up front: every supported superblock, and the
/// exFAT boot checksum region even with 4 KiB sectors, lies within it.
const HEAD_LEN: usize = 64 * 1024;

/// Upper bound for a single read: a corrupt size field must not make us allocate gigabytes.
const MAX_READ: usize = 4 * 1024 * 1024;

/// Upper bound for the bytes of a root directory scanned for a volume label. Labels are
/// written among the first entries; the bound also stops cyclic cluster chains.
const DIR_SCAN_LIMIT: u64 = 4 * 1024 * 1024;

/// Directories are read in pieces of at most this size, as exFAT clusters can be 32 MiB.
const DIR_CHUNK: u64 = 64 * 1024;

/// A filesystem the box knows how to mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsType {
    Vfat,
    Exfat,
    Ntfs,
    Ext2,
    Ext3,
    Ext4,
}

impl FsType {
    /// Name as shown to users and used in the API: "vfat", "exfat", "ntfs", "ext2", "ext3",
    /// "ext4" (the same strings serde produces).
    pub fn name(self) -> &'static str {
        match self {
            FsType::Vfat => "vfat",
            FsType::Exfat => "exfat",
            FsType::Ntfs => "ntfs",
            FsType::Ext2 => "ext2",
            FsType::Ext3 => "ext3",
            FsType::Ext4 => "ext4",
        }
    }
}

/// What was found on a device. `label` and `uuid` are empty when the filesystem has none
/// (blkid then prints no LABEL= or UUID= line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsInfo {
    pub fs: FsType,
    pub label: String,
    pub uuid: String,
}

/// Reads the start of `path` (block device or image) and identifies the filesystem.
/// Ok(None) when it is not one of the supported filesystems (e.g. a partition table, or
/// garbage). Err only when the device cannot be opened or its first bytes cannot be read.
pub fn identify(path: &Path) -> io::Result<Option<FsInfo>> {
    let file = File::open(path)?;
    let mut head = Vec::with_capacity(HEAD_LEN);
    // A device smaller than HEAD_LEN is fine: the probes check lengths themselves.
    (&file).take(HEAD_LEN as u64).read_to_end(&mut head)?;
    let mut read_at = |offset: u64, len: usize| -> io::Result<Vec<u8>> {
        if len > MAX_READ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "read too large",
            ));
        }
        let mut buf = vec![0; len];
        file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    };
    Ok(identify_bytes(&head, &mut read_at))
}

/// Same, on bytes already read (the first part of the device, at least 64 KiB when
/// available); `read_at` reads more at an absolute byte offset when the label lives
/// elsewhere (exFAT root directory, NTFS $Volume MFT record). A failing or short `read_at`
/// is treated like the data being absent, never as an error.
pub fn identify_bytes(
    head: &[u8],
    read_at: &mut dyn FnMut(u64, usize) -> io::Result<Vec<u8>>,
) -> Option<FsInfo> {
    let mut disk = Disk { head, read_at };
    // exFAT and NTFS have 8-byte names in the boot sector, the strongest signatures, so they
    // go first; FAT's BPB checks come next; ext's 2-byte magic is the weakest.
    probe_exfat(&mut disk)
        .or_else(|| probe_ntfs(&mut disk))
        .or_else(|| probe_fat(&mut disk))
        .or_else(|| probe_ext(&mut disk))
}

// ---------------------------------------------------------------------------------------
// Reading

/// The device as the probes see it: the head already in memory, the rest on demand.
struct Disk<'h, 'r> {
    head: &'h [u8],
    read_at: &'r mut dyn FnMut(u64, usize) -> io::Result<Vec<u8>>,
}

impl<'h> Disk<'h, '_> {
    /// Exactly `len` bytes at `offset`, borrowed from the head when it covers them. None on
    /// any error, short read or absurd size: the probes treat that as "not this filesystem".
    fn read(&mut self, offset: u64, len: usize) -> Option<Cow<'h, [u8]>> {
        if len > MAX_READ {
            return None;
        }
        let end = offset.checked_add(len as u64)?;
        if end <= self.head.len() as u64 {
            return Some(Cow::Borrowed(&self.head[offset as usize..end as usize]));
        }
        let bytes = (self.read_at)(offset, len).ok()?;
        (bytes.len() == len).then_some(Cow::Owned(bytes))
    }
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

fn has_boot_signature(boot: &[u8]) -> bool {
    boot.get(510..512) == Some(&[0x55, 0xAA][..])
}

// ---------------------------------------------------------------------------------------
// Text

/// blkid strips trailing C-locale whitespace from labels; do the same so labels compare equal.
fn trim_label(s: &str) -> String {
    s.trim_end_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r'])
        .to_string()
}

/// A NUL-padded UTF-8 label (ext).
fn utf8_label(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    trim_label(&String::from_utf8_lossy(&bytes[..end]))
}

/// A NUL-terminated or padded UTF-16LE label (exFAT, NTFS).
fn utf16_label(bytes: &[u8]) -> String {
    let units = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0);
    let text: String = char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    trim_label(&text)
}

/// Upper half of code page 850, the OEM code page mkfs.fat and Western European Windows
/// use for FAT labels.
const CP850_HIGH: &str = "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜø£Ø×ƒáíóúñÑªº¿®¬½¼¡«»░▒▓│┤ÁÂÀ©╣║╗╝¢¥┐\
                          └┴┬├─┼ãÃ╚╔╩╦╠═╬¤ðÐÊËÈıÍÎÏ┘┌█▄¦Ì▀ÓßÔÒõÕµþÞÚÛÙýÝ¯´\u{ad}±‗¾¶§÷¸°¨·¹³²■\u{a0}";

/// An 11-byte FAT label. Its bytes are in an unrecorded OEM code page: some Linux tools
/// write UTF-8, so valid UTF-8 is taken as such, anything else is read as CP850.
fn oem_label(raw: &[u8]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let mut bytes = raw[..end].to_vec();
    // 0x05 in the first byte stands for 0xE5, which would otherwise mean "deleted entry".
    if bytes.first() == Some(&0x05) {
        bytes[0] = 0xE5;
    }
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => e.into_bytes().iter().map(|&b| cp850_char(b)).collect(),
    };
    trim_label(&text)
}

fn cp850_char(b: u8) -> char {
    match b {
        0..=0x7F => b as char,
        _ => CP850_HIGH
            .chars()
            .nth(usize::from(b - 0x80))
            .unwrap_or(char::REPLACEMENT_CHARACTER),
    }
}

/// A 4-byte little-endian volume serial as blkid prints it for FAT and exFAT: "1234-ABCD".
fn serial_uuid(serial: &[u8]) -> String {
    match serial {
        [a, b, c, d] if serial.iter().any(|&x| x != 0) => {
            format!("{d:02X}{c:02X}-{b:02X}{a:02X}")
        }
        _ => String::new(),
    }
}

// ---------------------------------------------------------------------------------------
// Root directories (FAT32 and exFAT): cluster chains scanned for the label entry

/// What scanning a piece of directory found.
enum DirScan<T> {
    Found(T),
    /// The end-of-directory marker: no entry follows.
    End,
    /// Neither: keep reading.
    More,
}

/// Where a FAT-style cluster chain lives on the disk, all in bytes.
struct Chain {
    /// Offset of cluster 2, the first data cluster.
    data_start: u64,
    cluster_bytes: u64,
    /// Offset of the first FAT (32-bit entries in both FAT32 and exFAT).
    fat_start: u64,
    /// Number of data clusters, so valid cluster numbers are 2..=cluster_count+1.
    cluster_count: u64,
    /// FAT32 keeps 4 reserved bits at the top of each entry; exFAT uses all 32.
    entry_mask: u32,
}

/// Follows the directory's cluster chain from `first`, scanning up to DIR_SCAN_LIMIT bytes.
fn scan_chain<T>(
    disk: &mut Disk,
    chain: &Chain,
    first: u32,
    scan: impl Fn(&[u8]) -> DirScan<T>,
) -> Option<T> {
    let mut cluster = u64::from(first);
    let mut budget = DIR_SCAN_LIMIT;
    while (2..=chain.cluster_count + 1).contains(&cluster) {
        let start = chain
            .data_start
            .checked_add((cluster - 2).checked_mul(chain.cluster_bytes)?)?;
        let mut done = 0;
        while done < chain.cluster_bytes {
            let len = DIR_CHUNK.min(chain.cluster_bytes - done).min(budget);
            if len == 0 {
                return None;
            }
            let bytes = disk.read(start.checked_add(done)?, len as usize)?;
            match scan(&bytes) {
                DirScan::Found(found) => return Some(found),
                DirScan::End => return None,
                DirScan::More => {}
            }
            done += len;
            budget -= len;
        }
        let fat_entry = disk.read(chain.fat_start.checked_add(cluster * 4)?, 4)?;
        cluster = u64::from(le32(&fat_entry, 0)? & chain.entry_mask);
    }
    None
}

// ---------------------------------------------------------------------------------------
// ext2/3/4

const EXT_SUPERBLOCK: u64 = 1024;
const EXT_MAGIC: u16 = 0xEF53;
const EXT_COMPAT_HAS_JOURNAL: u32 = 0x0004;
const EXT_INCOMPAT_JOURNAL_DEV: u32 = 0x0008;
/// Features ext2 and ext3 understand, as in libblkid: sparse_super, large_file, btree_dir.
const EXT3_RO_COMPAT_SUPP: u32 = 0x0001 | 0x0002 | 0x0004;
/// filetype, meta_bg.
const EXT2_INCOMPAT_SUPP: u32 = 0x0002 | 0x0010;
/// filetype, recover, meta_bg.
const EXT3_INCOMPAT_SUPP: u32 = 0x0002 | 0x0004 | 0x0010;

fn probe_ext(disk: &mut Disk) -> Option<FsInfo> {
    let sb = disk.read(EXT_SUPERBLOCK, 1024)?;
    if le16(&sb, 0x38)? != EXT_MAGIC {
        return None;
    }
    // Block size is 1024 << s_log_block_size, at most 64 KiB: anything else is garbage that
    // happens to carry the magic.
    if le32(&sb, 0x18)? > 6 {
        return None;
    }
    let fs = ext_flavour(le32(&sb, 0x5C)?, le32(&sb, 0x60)?, le32(&sb, 0x64)?)?;
    Some(FsInfo {
        fs,
        label: utf8_label(&sb[0x78..0x88]),
        uuid: ext_uuid(&sb[0x68..0x78]),
    })
}

/// libblkid's rules: ext2 and ext3 are whatever the old drivers could mount (ext3 = with a
/// journal); anything with a feature ext3 does not know (extents, 64bit, flex_bg, huge_file,
/// gdt_csum, metadata_csum, ...) is ext4. An external journal device is not mountable.
/// (libblkid also calls a journal-less fs ext4 on kernels without an ext2 driver; that
/// depends on the host, so it is left out.)
fn ext_flavour(compat: u32, incompat: u32, ro_compat: u32) -> Option<FsType> {
    if incompat & EXT_INCOMPAT_JOURNAL_DEV != 0 {
        return None;
    }
    let journal = compat & EXT_COMPAT_HAS_JOURNAL != 0;
    let ro_known = ro_compat & !EXT3_RO_COMPAT_SUPP == 0;
    if !(ro_known && incompat & !EXT3_INCOMPAT_SUPP == 0) {
        Some(FsType::Ext4)
    } else if journal {
        Some(FsType::Ext3)
    } else if incompat & !EXT2_INCOMPAT_SUPP == 0 {
        Some(FsType::Ext2)
    } else {
        // No journal yet "needs journal recovery": inconsistent, and blkid reports nothing.
        None
    }
}

fn ext_uuid(u: &[u8]) -> String {
    if u.iter().all(|&b| b == 0) {
        return String::new();
    }
    let hex: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

// ---------------------------------------------------------------------------------------
// FAT12/16/32

const FAT_NO_NAME: &[u8] = b"NO NAME    ";
const FAT_ATTR_VOLUME_ID: u8 = 0x08;
const FAT_ATTR_DIR: u8 = 0x10;
const FAT_ATTR_LONG_NAME: u8 = 0x0F;

/// The BIOS parameter block fields needed to find the root directory, all validated.
struct Bpb {
    sector_size: u64,
    cluster_sectors: u64,
    reserved_sectors: u64,
    root_entries: u64,
    /// Sectors of all FATs together.
    fats_sectors: u64,
    cluster_count: u64,
    fat32: bool,
}

fn probe_fat(disk: &mut Disk) -> Option<FsInfo> {
    let boot = disk.read(0, 512)?;
    let bpb = fat_bpb(&boot)?;
    // The extended BPB sits after the FAT32-only fields on FAT32.
    let (serial_at, label_at) = if bpb.fat32 { (67, 71) } else { (39, 43) };
    // The root directory entry is what Windows and fatlabel keep current; the boot sector
    // copy is often stale, so it is only the fallback (as current libblkid does).
    let dir_label = if bpb.fat32 {
        fat32_dir_label(disk, &bpb, le32(&boot, 44)?)
    } else {
        fat16_dir_label(disk, &bpb)
    };
    let label = dir_label
        .filter(|l| l != FAT_NO_NAME)
        .unwrap_or_else(|| boot[label_at..label_at + 11].to_vec());
    Some(FsInfo {
        fs: FsType::Vfat,
        label: if label == FAT_NO_NAME {
            String::new()
        } else {
            oem_label(&label)
        },
        uuid: serial_uuid(&boot[serial_at..serial_at + 4]),
    })
}

/// Validates the boot sector the way libblkid does, plus the "FAT" type string, so that an
/// MBR (which also ends in 55AA) or random data is not mistaken for FAT.
fn fat_bpb(boot: &[u8]) -> Option<Bpb> {
    if !has_boot_signature(boot) {
        return None;
    }
    let sector_size = le16(boot, 11)?;
    let cluster_sectors = *boot.get(13)?;
    let reserved_sectors = le16(boot, 14)?;
    let fats = *boot.get(16)?;
    let media = *boot.get(21)?;
    if !sector_size.is_power_of_two()
        || !(512..=4096).contains(&sector_size)
        || !cluster_sectors.is_power_of_two()
        || reserved_sectors == 0
        || fats == 0
        || !(media == 0xF0 || media >= 0xF8)
    {
        return None;
    }
    let fat16_len = le16(boot, 22)?;
    let fat32 = fat16_len == 0;
    let (fat_len, type_at) = if fat32 {
        (le32(boot, 36)?, 82)
    } else {
        (u32::from(fat16_len), 54)
    };
    if fat_len == 0 || boot.get(type_at..type_at + 3) != Some(&b"FAT"[..]) {
        return None;
    }
    let total_sectors = match le16(boot, 19)? {
        0 => u64::from(le32(boot, 32)?),
        n => u64::from(n),
    };
    let sector_size = u64::from(sector_size);
    let root_entries = u64::from(le16(boot, 17)?);
    let fats_sectors = u64::from(fat_len) * u64::from(fats);
    let root_sectors = (root_entries * 32).div_ceil(sector_size);
    let data_sectors =
        total_sectors.checked_sub(u64::from(reserved_sectors) + fats_sectors + root_sectors)?;
    let cluster_count = data_sectors / u64::from(cluster_sectors);
    let max_clusters = if fat32 { 0x0FFF_FFF6 } else { 0xFFF4 };
    if cluster_count > max_clusters {
        return None;
    }
    Some(Bpb {
        sector_size,
        cluster_sectors: u64::from(cluster_sectors),
        reserved_sectors: u64::from(reserved_sectors),
        root_entries,
        fats_sectors,
        cluster_count,
        fat32,
    })
}

/// FAT12/16: the root directory is a fixed area right after the FATs.
fn fat16_dir_label(disk: &mut Disk, bpb: &Bpb) -> Option<Vec<u8>> {
    let start = (bpb.reserved_sectors + bpb.fats_sectors) * bpb.sector_size;
    let dir = disk.read(start, (bpb.root_entries * 32) as usize)?;
    match scan_fat_dir(&dir) {
        DirScan::Found(label) => Some(label),
        DirScan::End | DirScan::More => None,
    }
}

/// FAT32: the root directory is an ordinary cluster chain starting at `root_cluster`.
fn fat32_dir_label(disk: &mut Disk, bpb: &Bpb, root_cluster: u32) -> Option<Vec<u8>> {
    let chain = Chain {
        data_start: (bpb.reserved_sectors + bpb.fats_sectors) * bpb.sector_size,
        cluster_bytes: bpb.cluster_sectors * bpb.sector_size,
        fat_start: bpb.reserved_sectors * bpb.sector_size,
        cluster_count: bpb.cluster_count,
        entry_mask: 0x0FFF_FFFF,
    };
    scan_chain(disk, &chain, root_cluster, scan_fat_dir)
}

/// Looks for the volume-label entry among 32-byte FAT directory entries, skipping deleted
/// entries, long-name fragments and anything that owns clusters (files, directories).
fn scan_fat_dir(dir: &[u8]) -> DirScan<Vec<u8>> {
    for entry in dir.chunks_exact(32) {
        let attr = entry[11];
        let first_cluster = (le16(entry, 20), le16(entry, 26));
        match entry[0] {
            0x00 => return DirScan::End,
            0xE5 => continue,
            _ if attr & 0x3F == FAT_ATTR_LONG_NAME || first_cluster != (Some(0), Some(0)) => {}
            _ if attr & (FAT_ATTR_VOLUME_ID | FAT_ATTR_DIR) == FAT_ATTR_VOLUME_ID => {
                return DirScan::Found(entry[..11].to_vec());
            }
            _ => {}
        }
    }
    DirScan::More
}

// ---------------------------------------------------------------------------------------
// exFAT

const EXFAT_ENTRY_LABEL: u8 = 0x83;

fn probe_exfat(disk: &mut Disk) -> Option<FsInfo> {
    let boot = disk.read(0, 512)?;
    if boot.get(0..11) != Some(&b"\xEB\x76\x90EXFAT   "[..])
        || !has_boot_signature(&boot)
        || boot[11..64].iter().any(|&b| b != 0)
    {
        return None;
    }
    let sector_shift = u32::from(*boot.get(108)?);
    let cluster_shift = u32::from(*boot.get(109)?);
    // The spec allows 512 B..4 KiB sectors and clusters up to 32 MiB.
    if !(9..=12).contains(&sector_shift) || sector_shift + cluster_shift > 25 {
        return None;
    }
    if !exfat_checksum_ok(disk, 1 << sector_shift) {
        return None;
    }
    let chain = Chain {
        data_start: u64::from(le32(&boot, 88)?) << sector_shift,
        cluster_bytes: 1 << (sector_shift + cluster_shift),
        fat_start: u64::from(le32(&boot, 80)?) << sector_shift,
        cluster_count: u64::from(le32(&boot, 92)?),
        entry_mask: 0xFFFF_FFFF,
    };
    // A volume without a label entry simply has no label.
    let label = scan_chain(disk, &chain, le32(&boot, 96)?, scan_exfat_dir).unwrap_or_default();
    Some(FsInfo {
        fs: FsType::Exfat,
        label,
        uuid: serial_uuid(&boot[100..104]),
    })
}

/// The boot region checksum (sector 11 repeats it): libblkid requires it, and it rules out
/// stale or damaged boot sectors.
fn exfat_checksum_ok(disk: &mut Disk, sector_size: usize) -> bool {
    let Some(region) = disk.read(0, sector_size * 12) else {
        return false;
    };
    let (summed, expected) = region.split_at(sector_size * 11);
    let checksum = summed
        .iter()
        .enumerate()
        // VolumeFlags and PercentInUse change at run time and are excluded.
        .filter(|(i, _)| !matches!(i, 106 | 107 | 112))
        .fold(0u32, |sum, (_, &b)| {
            sum.rotate_right(1).wrapping_add(u32::from(b))
        });
    expected
        .chunks_exact(4)
        .all(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) == checksum)
}

/// Looks for the volume label entry: type 0x83, character count at +1, UTF-16LE at +2.
fn scan_exfat_dir(dir: &[u8]) -> DirScan<String> {
    for entry in dir.chunks_exact(32) {
        match entry[0] {
            0x00 => return DirScan::End,
            EXFAT_ENTRY_LABEL => {
                let chars = usize::from(entry[1]).min(11);
                return DirScan::Found(utf16_label(&entry[2..2 + chars * 2]));
            }
            _ => {}
        }
    }
    DirScan::More
}

// ---------------------------------------------------------------------------------------
// NTFS

const NTFS_VOLUME_RECORD: u64 = 3;
const NTFS_ATTR_VOLUME_NAME: u32 = 0x60;
const NTFS_ATTR_END: u32 = 0xFFFF_FFFF;
/// Update sequence fixups protect every 512 bytes of a record, whatever the sector size.
const NTFS_FIXUP_STRIDE: usize = 512;
/// Real MFT records are 1 or 4 KiB; larger sizes only come from garbage.
const NTFS_MAX_RECORD: u64 = 64 * 1024;

fn probe_ntfs(disk: &mut Disk) -> Option<FsInfo> {
    let boot = disk.read(0, 512)?;
    if boot.get(3..11) != Some(&b"NTFS    "[..]) {
        return None;
    }
    let (cluster_bytes, record_bytes) = ntfs_geometry(&boot)?;
    let sectors = le64(&boot, 40)?;
    let clusters = sectors / u64::from(boot[13]);
    let mft_cluster = le64(&boot, 48)?;
    let mirror_cluster = le64(&boot, 56)?;
    if mft_cluster > clusters || mirror_cluster > clusters {
        return None;
    }
    // Records 0 ($MFT) and 3 ($Volume) must both look like MFT records, as libblkid checks.
    let mft = disk.read(
        mft_cluster.checked_mul(cluster_bytes)?,
        ((NTFS_VOLUME_RECORD + 1) * record_bytes) as usize,
    )?;
    let (mft0, rest) = mft.split_at(record_bytes as usize);
    let volume = &rest[(2 * record_bytes) as usize..];
    if !mft0.starts_with(b"FILE") || !volume.starts_with(b"FILE") {
        return None;
    }
    // A torn $Volume record still is NTFS; it just yields no label.
    let label = ntfs_volume_name(volume.to_vec()).unwrap_or_default();
    let serial = le64(&boot, 72)?;
    Some(FsInfo {
        fs: FsType::Ntfs,
        label,
        uuid: if serial == 0 {
            String::new()
        } else {
            format!("{serial:016X}")
        },
    })
}

/// Cluster and MFT record sizes in bytes, after libblkid's BPB sanity checks.
fn ntfs_geometry(boot: &[u8]) -> Option<(u64, u64)> {
    let sector_size = u64::from(le16(boot, 11)?);
    let cluster_sectors = u64::from(*boot.get(13)?);
    let cluster_bytes = sector_size * cluster_sectors;
    if !(256..=4096).contains(&sector_size)
        || !cluster_sectors.is_power_of_two()
        || cluster_bytes > 64 * 1024
    {
        return None;
    }
    // The FAT fields NTFS leaves unused must be zero.
    let unused_zero = le16(boot, 14)? == 0
        && *boot.get(16)? == 0
        && le16(boot, 17)? == 0
        && le16(boot, 19)? == 0
        && le16(boot, 22)? == 0
        && le32(boot, 32)? == 0;
    if !unused_zero {
        return None;
    }
    // Positive: clusters per record; negative n: the record is 2^-n bytes.
    let record_bytes = match *boot.get(64)? as i8 {
        n @ 1..=64 if (n as u8).is_power_of_two() => u64::from(n as u8) * cluster_bytes,
        n @ -31..=-9 => 1u64 << -n,
        _ => return None,
    };
    if record_bytes > NTFS_MAX_RECORD {
        return None;
    }
    Some((cluster_bytes, record_bytes))
}

/// The $VOLUME_NAME attribute of the $Volume record, after undoing the update sequence.
fn ntfs_volume_name(mut record: Vec<u8>) -> Option<String> {
    apply_fixups(&mut record)?;
    let mut at = usize::from(le16(&record, 0x14)?);
    loop {
        let kind = le32(&record, at)?;
        let len = le32(&record, at + 4)? as usize;
        if kind == NTFS_ATTR_END || len == 0 {
            return None;
        }
        // The volume name is always resident (non-resident flag at +8 is zero).
        if kind == NTFS_ATTR_VOLUME_NAME && *record.get(at + 8)? == 0 {
            let value_len = le32(&record, at + 0x10)? as usize;
            let value_at = at.checked_add(usize::from(le16(&record, at + 0x14)?))?;
            return Some(utf16_label(
                record.get(value_at..value_at.checked_add(value_len)?)?,
            ));
        }
        at = at.checked_add(len)?;
    }
}

/// NTFS replaces the last two bytes of every 512-byte stride with a sequence number, keeping
/// the real bytes in the update sequence array; put them back, and refuse a torn record.
fn apply_fixups(record: &mut [u8]) -> Option<()> {
    let usa_at = usize::from(le16(record, 4)?);
    let usa_count = usize::from(le16(record, 6)?);
    if usa_count == 0 || (usa_count - 1) * NTFS_FIXUP_STRIDE > record.len() {
        return None;
    }
    let usa = record
        .get(usa_at..usa_at.checked_add(usa_count * 2)?)?
        .to_vec();
    for (i, original) in usa.chunks_exact(2).enumerate().skip(1) {
        let tail = i * NTFS_FIXUP_STRIDE - 2..i * NTFS_FIXUP_STRIDE;
        if record[tail.clone()] != usa[0..2] {
            return None;
        }
        record[tail].copy_from_slice(original);
    }
    Some(())
}

// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    //! Every test formats a real image with the real mkfs tool and checks that we agree with
    //! `blkid -p -o export`. Missing tools fail the test with the package to install: a
    //! silently skipped test would hide exactly the regressions these catch.

    use super::*;
    use std::collections::HashMap;
    use std::path::PathBuf;
    use std::process::Command;

    /// Finds `tool` in PATH or the sbin directories (mkfs tools live there and a non-root
    /// PATH often lacks them), or panics naming the Debian package that provides it.
    fn tool(name: &str, package: &str) -> PathBuf {
        let path = std::env::var("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{name} not found: install the Debian package {package}"))
    }

    /// Runs a tool that must succeed, returning its stdout.
    fn run(name: &str, package: &str, args: &[&str]) -> Vec<u8> {
        let out = Command::new(tool(name, package))
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {name}: {e}"));
        assert!(
            out.status.success(),
            "{name} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// An empty (sparse) image file of `mib` MiB.
    fn image(dir: &tempfile::TempDir, name: &str, mib: u64) -> PathBuf {
        let path = dir.path().join(name);
        File::create(&path)
            .and_then(|f| f.set_len(mib << 20))
            .expect("create image");
        path
    }

    fn s(path: &Path) -> &str {
        path.to_str().expect("utf-8 temp path")
    }

    /// `blkid -p -o export` as raw bytes per key. blkid escapes values like `cat -v`
    /// ("M-" sets the high bit, "^X" is a control character) and backslash-escapes shell
    /// metacharacters; undo that. (Test labels avoid a literal "M-" or "^".)
    fn blkid(path: &Path) -> HashMap<String, Vec<u8>> {
        // blkid exits with 2 when it finds nothing, which some tests expect.
        let out = Command::new(tool("blkid", "util-linux"))
            .args(["-p", "-o", "export", s(path)])
            .output()
            .expect("running blkid");
        out.stdout
            .split(|&b| b == b'\n')
            .filter_map(|line| {
                let eq = line.iter().position(|&b| b == b'=')?;
                let key = String::from_utf8_lossy(&line[..eq]).into_owned();
                Some((key, unescape_blkid(&line[eq + 1..])))
            })
            .collect()
    }

    fn unescape_blkid(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < s.len() {
            let mut high = 0;
            if s[i..].starts_with(b"M-") && i + 2 < s.len() {
                high = 0x80;
                i += 2;
            }
            let byte = match s[i] {
                b'^' if i + 1 < s.len() => {
                    i += 2;
                    s[i - 1] ^ 0x40
                }
                b'\\' if i + 1 < s.len() => {
                    i += 2;
                    s[i - 1]
                }
                c => {
                    i += 1;
                    c
                }
            };
            out.push(byte | high);
        }
        out
    }

    /// Identifies `path` and checks type, label and UUID against blkid and the label we
    /// asked mkfs for. Also checks that a short head plus `read_at` gives the same answer.
    fn check(path: &Path, fs: FsType, label: &str) -> FsInfo {
        let info = identify(path)
            .expect("readable image")
            .unwrap_or_else(|| panic!("{} not identified", path.display()));
        let blk = blkid(path);
        let field = |key: &str| blk.get(key).cloned().unwrap_or_default();
        assert_eq!(info.fs, fs, "type of {}", path.display());
        assert_eq!(field("TYPE"), fs.name().as_bytes(), "blkid TYPE");
        assert_eq!(info.label, label);
        assert_eq!(field("LABEL"), info.label.as_bytes(), "blkid LABEL");
        assert!(!info.uuid.is_empty(), "mkfs always sets a serial or UUID");
        assert_eq!(field("UUID"), info.uuid.as_bytes(), "blkid UUID");

        let file = File::open(path).unwrap();
        let mut head = vec![0; 512];
        file.read_exact_at(&mut head, 0).unwrap();
        let mut read_at = |off: u64, len: usize| read_file(&file, off, len);
        assert_eq!(identify_bytes(&head, &mut read_at), Some(info.clone()));
        info
    }

    fn read_file(file: &File, off: u64, len: usize) -> io::Result<Vec<u8>> {
        if len > MAX_READ {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        let mut buf = vec![0; len];
        file.read_exact_at(&mut buf, off)?;
        Ok(buf)
    }

    /// Replaces every occurrence of `from` in the image with `to` (same length).
    fn patch_all(path: &Path, from: &[u8], to: &[u8]) -> usize {
        let mut bytes = std::fs::read(path).unwrap();
        let mut hits = 0;
        for i in 0..bytes.len().saturating_sub(from.len()) {
            if bytes[i..].starts_with(from) {
                bytes[i..i + to.len()].copy_from_slice(to);
                hits += 1;
            }
        }
        std::fs::write(path, bytes).unwrap();
        hits
    }

    fn mkfs_ext(dir: &tempfile::TempDir, flavour: &str, label: &str, extra: &[&str]) -> PathBuf {
        let img = image(dir, &format!("{flavour}-{label}.img"), 16);
        let mut args = vec!["-q", "-F", "-L", label];
        args.extend_from_slice(extra);
        args.push(s(&img));
        run(&format!("mkfs.{flavour}"), "e2fsprogs", &args);
        img
    }

    #[test]
    fn ext2_ext3_ext4() {
        let dir = tempfile::tempdir().unwrap();
        check(
            &mkfs_ext(&dir, "ext2", "photos", &[]),
            FsType::Ext2,
            "photos",
        );
        check(
            &mkfs_ext(&dir, "ext3", "backup", &[]),
            FsType::Ext3,
            "backup",
        );
        check(
            &mkfs_ext(&dir, "ext4", "Films été", &[]),
            FsType::Ext4,
            "Films été",
        );
    }

    #[test]
    fn ext4_variants() {
        let dir = tempfile::tempdir().unwrap();
        let big = ["-b", "4096", "-O", "64bit,metadata_csum"];
        check(
            &mkfs_ext(&dir, "ext4", "Музыка", &big),
            FsType::Ext4,
            "Музыка",
        );
        // Without a journal it is still ext4 because of extents/flex_bg.
        let no_journal = ["-O", "^has_journal"];
        check(
            &mkfs_ext(&dir, "ext4", "nojournal", &no_journal),
            FsType::Ext4,
            "nojournal",
        );
        // A 16-byte label fills the field with no NUL terminator.
        let full = "0123456789abcdef";
        check(&mkfs_ext(&dir, "ext4", full, &[]), FsType::Ext4, full);
        // An ext2 with a journal added is ext3.
        let img = mkfs_ext(&dir, "ext2", "", &["-j"]);
        check(&img, FsType::Ext3, "");
    }

    fn mkfs_vfat(dir: &tempfile::TempDir, name: &str, mib: u64, args: &[&str]) -> PathBuf {
        let img = image(dir, name, mib);
        let mut all = args.to_vec();
        all.push(s(&img));
        run("mkfs.vfat", "dosfstools", &all);
        img
    }

    #[test]
    fn vfat_12_16_32() {
        let dir = tempfile::tempdir().unwrap();
        let fat12 = mkfs_vfat(&dir, "fat12.img", 2, &["-F", "12", "-n", "FLOPPY"]);
        check(&fat12, FsType::Vfat, "FLOPPY");
        let fat16 = mkfs_vfat(&dir, "fat16.img", 32, &["-F", "16", "-n", "MY USB"]);
        check(&fat16, FsType::Vfat, "MY USB");
        let fat32 = mkfs_vfat(&dir, "fat32.img", 64, &["-F", "32", "-n", "MUSIC 2024"]);
        check(&fat32, FsType::Vfat, "MUSIC 2024");
        let lower = mkfs_vfat(&dir, "lower.img", 64, &["-F", "32", "-n", "music"]);
        check(&lower, FsType::Vfat, "music");
    }

    #[test]
    fn vfat_geometries_and_no_label() {
        let dir = tempfile::tempdir().unwrap();
        let unlabeled = mkfs_vfat(&dir, "nolabel.img", 16, &[]);
        check(&unlabeled, FsType::Vfat, "");
        // 4 KiB sectors (sparse 300 MiB: FAT32 needs 65525 clusters).
        let big_sectors = mkfs_vfat(
            &dir,
            "4k.img",
            300,
            &["-F", "32", "-S", "4096", "-n", "BIGSEC"],
        );
        check(&big_sectors, FsType::Vfat, "BIGSEC");
        let big_clusters = mkfs_vfat(
            &dir,
            "clus.img",
            600,
            &["-F", "32", "-s", "16", "-n", "CLUSTERS"],
        );
        check(&big_clusters, FsType::Vfat, "CLUSTERS");
        let fixed_id = mkfs_vfat(&dir, "id.img", 16, &["-i", "0A0B0C0D", "-n", "ID"]);
        assert_eq!(check(&fixed_id, FsType::Vfat, "ID").uuid, "0A0B-0C0D");
    }

    /// The root directory label wins over the boot sector copy; without it, the boot
    /// sector copy is used.
    #[test]
    fn vfat_label_sources() {
        let dir = tempfile::tempdir().unwrap();
        for (name, fat) in [("16.img", "16"), ("32.img", "32")] {
            let img = mkfs_vfat(&dir, name, 64, &["-F", fat, "-n", "DIRLBL"]);
            // The boot sector copies (FAT32 has a backup) are followed by the type string.
            assert!(patch_all(&img, b"DIRLBL     FAT", b"BOOTLBL    FAT") >= 1);
            check(&img, FsType::Vfat, "DIRLBL");
            assert_eq!(blkid(&img)["LABEL_FATBOOT"], b"BOOTLBL");

            // Mark the root directory entry deleted. blkid 2.38 then prints the boot label
            // only as LABEL_FATBOOT; newer libblkid falls back to it for LABEL, as we do.
            let deleted = patch_all(&img, b"DIRLBL     \x08", b"\xE5IRLBL     \x08");
            assert_eq!(deleted, 1);
            let info = identify(&img).unwrap().unwrap();
            assert_eq!(info.label, "BOOTLBL");
            let blk = blkid(&img);
            assert_eq!(blk["LABEL_FATBOOT"], b"BOOTLBL");
            assert_eq!(blk["UUID"], info.uuid.as_bytes());
        }
    }

    /// mkfs.fat cannot write non-ASCII labels in this environment, so write CP850 bytes
    /// into the label fields ourselves, as DOS/Windows would.
    #[test]
    fn vfat_oem_label() {
        let dir = tempfile::tempdir().unwrap();
        let img = mkfs_vfat(&dir, "oem.img", 16, &["-n", "XTX"]);
        assert_eq!(patch_all(&img, b"XTX        ", b"\x90T\x90        "), 2);
        let info = identify(&img).unwrap().unwrap();
        assert_eq!(info.label, "ÉTÉ");
        assert_eq!(blkid(&img)["LABEL"], b"\x90T\x90");
        assert_eq!(blkid(&img)["UUID"], info.uuid.as_bytes());
    }

    fn mkfs_exfat(dir: &tempfile::TempDir, name: &str, args: &[&str]) -> PathBuf {
        let img = image(dir, name, 64);
        let mut all = args.to_vec();
        all.push(s(&img));
        run("mkfs.exfat", "exfatprogs", &all);
        img
    }

    #[test]
    fn exfat() {
        let dir = tempfile::tempdir().unwrap();
        let img = mkfs_exfat(&dir, "a.img", &["-L", "Musique Été"]);
        check(&img, FsType::Exfat, "Musique Été");
        let img = mkfs_exfat(&dir, "b.img", &["-c", "4K", "-L", "USB"]);
        check(&img, FsType::Exfat, "USB");
        let img = mkfs_exfat(&dir, "c.img", &["-c", "1M"]);
        check(&img, FsType::Exfat, "");
    }

    fn mkntfs(dir: &tempfile::TempDir, name: &str, args: &[&str]) -> PathBuf {
        let img = image(dir, name, 32);
        let mut all = vec!["-F", "-f", "-q"];
        all.extend_from_slice(args);
        all.push(s(&img));
        run("mkntfs", "ntfs-3g", &all);
        img
    }

    #[test]
    fn ntfs() {
        let dir = tempfile::tempdir().unwrap();
        check(
            &mkntfs(&dir, "a.img", &["-L", "Фильмы"]),
            FsType::Ntfs,
            "Фильмы",
        );
        // 4 KiB sectors make 4 KiB MFT records, protected by eight fixups.
        let args = ["-s", "4096", "-c", "4096", "-L", "Données à voir"];
        check(
            &mkntfs(&dir, "b.img", &args),
            FsType::Ntfs,
            "Données à voir",
        );
        check(&mkntfs(&dir, "c.img", &["-c", "65536"]), FsType::Ntfs, "");
    }

    /// An MBR with one FAT32 partition: 55AA at 510 but no BPB.
    fn mbr() -> Vec<u8> {
        let mut sector = vec![0u8; 512];
        sector[440..444].copy_from_slice(&0x1234_5678u32.to_le_bytes());
        let entry = &mut sector[446..462];
        entry[4] = 0x0C; // FAT32 LBA
        entry[8..12].copy_from_slice(&2048u32.to_le_bytes());
        entry[12..16].copy_from_slice(&(30u32 << 11).to_le_bytes());
        sector[510] = 0x55;
        sector[511] = 0xAA;
        sector
    }

    #[test]
    fn partition_table_is_not_a_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let img = image(&dir, "disk.img", 32);
        // A real filesystem inside the partition must not leak into the whole-disk answer.
        run(
            "mkfs.vfat",
            "dosfstools",
            &["--offset", "2048", "-n", "PART", s(&img)],
        );
        File::options()
            .write(true)
            .open(&img)
            .and_then(|f| f.write_all_at(&mbr(), 0))
            .unwrap();
        let blk = blkid(&img);
        assert_eq!(blk.get("PTTYPE").map(Vec::as_slice), Some(&b"dos"[..]));
        assert!(
            !blk.contains_key("TYPE"),
            "blkid sees a filesystem: {blk:?}"
        );
        assert_eq!(identify(&img).unwrap(), None);
        assert_eq!(
            identify_bytes(&mbr(), &mut |_, _| Err(io::ErrorKind::UnexpectedEof.into())),
            None
        );
    }

    /// Deterministic xorshift: tests must not depend on a random crate or differ per run.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn garbage_is_not_a_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let random: Vec<u8> = (0..1 << 20).map(|_| rng.next() as u8).collect();
        let img = dir.path().join("random.img");
        std::fs::write(&img, &random).unwrap();
        assert_eq!(identify(&img).unwrap(), None);
        let zeros = image(&dir, "zeros.img", 1);
        assert_eq!(identify(&zeros).unwrap(), None);
        let tiny = dir.path().join("tiny.img");
        std::fs::write(&tiny, b"EXFAT").unwrap();
        assert_eq!(identify(&tiny).unwrap(), None);
        assert_eq!(identify_bytes(&[], &mut |_, _| Ok(Vec::new())), None);
        assert!(identify(&dir.path().join("missing")).is_err());
    }

    /// Mutates bytes that identification actually reads (boot sectors, superblocks,
    /// directories, MFT records) and truncates the head at many lengths: nothing may panic,
    /// whatever a drive contains.
    #[test]
    fn malformed_images_never_panic() {
        let dir = tempfile::tempdir().unwrap();
        let images = [
            mkfs_ext(&dir, "ext4", "fuzz", &[]),
            mkfs_vfat(&dir, "fat12.img", 2, &["-F", "12", "-n", "FUZZ"]),
            mkfs_vfat(&dir, "fat32.img", 64, &["-F", "32", "-n", "FUZZ"]),
            mkfs_exfat(&dir, "exfat.img", &["-L", "fuzz"]),
            mkntfs(&dir, "ntfs.img", &["-L", "fuzz"]),
        ];
        let mut rng = Rng(42);
        for img in &images {
            let file = File::open(img).unwrap();
            let head = read_file(&file, 0, HEAD_LEN).unwrap();

            // Learn which ranges are read beyond the head.
            let mut ranges = vec![(0u64, 8192usize)];
            let mut recorder = |off: u64, len: usize| {
                ranges.push((off, len));
                read_file(&file, off, len)
            };
            assert!(identify_bytes(&head, &mut recorder).is_some());

            for _ in 0..3000 {
                let mutations: Vec<(u64, u8)> = (0..1 + rng.next() % 6)
                    .map(|_| {
                        let (off, len) = ranges[(rng.next() % ranges.len() as u64) as usize];
                        (off + rng.next() % len as u64, rng.next() as u8)
                    })
                    .collect();
                let mut read_mutated = |off: u64, len: usize| {
                    let mut buf = read_file(&file, off, len)?;
                    for &(at, byte) in &mutations {
                        if let Some(i) = at.checked_sub(off).filter(|&i| i < len as u64) {
                            buf[i as usize] = byte;
                        }
                    }
                    Ok(buf)
                };
                let mutated_head = read_mutated(0, HEAD_LEN).unwrap();
                let _ = identify_bytes(&mutated_head, &mut read_mutated);
            }

            for len in (0..HEAD_LEN).step_by(61) {
                let _ = identify_bytes(&head[..len], &mut |_, _| {
                    Err(io::ErrorKind::UnexpectedEof.into())
                });
            }
        }
    }

    #[test]
    fn names_match_serde() {
        let all = [
            FsType::Vfat,
            FsType::Exfat,
            FsType::Ntfs,
            FsType::Ext2,
            FsType::Ext3,
            FsType::Ext4,
        ];
        for fs in all {
            let json = serde_json::to_string(&fs).unwrap();
            assert_eq!(json, format!("\"{}\"", fs.name()));
        }
    }
}
