//! zstd with one compression and one decompression context per thread.
//!
//! `zstd::bulk::compress`/`decompress` create and free a context on every
//! call: for 4–256 KiB chunks that was 13% of a backup's time (profile in
//! docs/benchmarks.md). These functions keep one context of each kind per
//! thread instead (a compression context at level 3 holds about 1.3 MiB,
//! a decompression context about 160 KiB), and give the same bytes.

use std::cell::RefCell;

thread_local! {
    static CCTX: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static DCTX: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// One zstd frame of `data` at `level`.
pub fn compress(data: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    CCTX.with(|c| {
        let mut c = c.borrow_mut();
        match c.as_mut() {
            Some((l, _)) if *l == level => {}
            Some((l, cx)) => {
                cx.set_compression_level(level)?;
                *l = level;
            }
            None => *c = Some((level, zstd::bulk::Compressor::new(level)?)),
        }
        let (_, cx) = c.as_mut().expect("set above");
        cx.compress(data)
    })
}

/// The plaintext of the zstd frame(s) in `data`, refusing more than
/// `capacity` bytes (a frame that claims more is an error, not an
/// allocation).
pub fn decompress(data: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DCTX.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        d.as_mut().expect("set above").decompress(data, capacity)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_as_the_one_shot_functions_and_levels_switch() {
        let text: Vec<u8> = (0..200_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        for level in [3, 1, 3, 19, 3] {
            let ours = compress(&text, level).unwrap();
            assert_eq!(ours, zstd::bulk::compress(&text, level).unwrap(), "level {level}");
            assert_eq!(decompress(&ours, text.len()).unwrap(), text);
        }
    }

    #[test]
    fn a_frame_larger_than_the_capacity_is_refused() {
        let z = compress(&vec![7u8; 100_000], 3).unwrap();
        assert!(decompress(&z, 99_999).is_err());
        assert_eq!(decompress(&z, 100_000).unwrap().len(), 100_000);
        assert!(decompress(b"not zstd", 10).is_err());
    }
}
