//! `usb::superblock::identify_bytes` on a whole "device": the input is the
//! disk, its first 64 KiB the head, the rest read on demand as `identify`
//! reads a real device (a short read is absent data).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|disk: &[u8]| {
    let head = &disk[..disk.len().min(64 * 1024)];
    let mut read_at = |offset: u64, len: usize| -> std::io::Result<Vec<u8>> {
        // What `identify` refuses before reading: its own cap.
        assert!(len <= 4 << 20, "a read of {len} bytes got past the cap");
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match disk.get(start..start.saturating_add(len)) {
            Some(bytes) => Ok(bytes.to_vec()),
            None => Err(std::io::ErrorKind::UnexpectedEof.into()),
        }
    };
    let _ = dtsflac_fuzz::usb::superblock::identify_bytes(head, &mut read_at);
});
