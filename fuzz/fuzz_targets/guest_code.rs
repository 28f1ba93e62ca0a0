#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tci64_fuzz::guest_code::guest_code(data));
