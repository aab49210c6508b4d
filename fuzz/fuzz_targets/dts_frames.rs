//! `media::lanes`: `frame_len` walking a raw DTS stream, `core_header`, and
//! the lane splitter (no decoder runs) fed in small reads, which must agree
//! with the walk over the whole buffer.
#![no_main]

use std::io::Read;

use dtsflac_fuzz::media::lanes::{core_header, frame_len, split_only, MAX_FRAME_BYTES};
use libfuzzer_sys::fuzz_target;

/// Hands out the stream `step` bytes per read.
struct Pieces<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.step).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&knobs, stream)) = input.split_first() else {
        return;
    };
    // The whole buffer, as at the end of a stream.
    let mut at = 0;
    let mut frames = 0usize;
    let walked = loop {
        match frame_len(&stream[at..], true) {
            Ok(Some(len)) => {
                assert!(len > 0 && len <= MAX_FRAME_BYTES && at + len <= stream.len());
                let _ = core_header(&stream[at..]);
                at += len;
                frames += 1;
            }
            Ok(None) => break Ok(frames),
            Err(e) => break Err(e),
        }
    };
    // A prefix, as in the middle of a stream: never longer than the bytes.
    if let Ok(Some(len)) = frame_len(stream, false) {
        assert!(len <= stream.len());
    }
    let lanes = usize::from(knobs & 3) + 1;
    // 1 byte to ~250 KiB per read: frame boundaries fall across reads.
    let step = 1 + usize::from(knobs >> 2) * 4099;
    let split = split_only(Pieces { data: stream, step }, lanes);
    match (&walked, &split) {
        (Ok(n), Ok((chunks, given))) => {
            assert_eq!(chunks.iter().map(|c| c.frames).sum::<usize>(), *n);
            assert!(chunks.iter().all(|c| c.lane < lanes && c.frames > 0));
            assert_eq!(given.len(), lanes);
        }
        (Err(_), Ok(_)) => panic!("the splitter took a stream the walk refuses: {walked:?}"),
        _ => {}
    }
});
