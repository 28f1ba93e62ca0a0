#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tci64_fuzz::snapshot_file::snapshot_file(data));
