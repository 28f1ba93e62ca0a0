#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tci64_fuzz::cli_args::cli_args(data));
