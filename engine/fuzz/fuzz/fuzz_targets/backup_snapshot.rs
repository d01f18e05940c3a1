#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sen_fuzz::backup_snapshot(data));
