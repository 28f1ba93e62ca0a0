#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tci64_fuzz::device_regs::device_regs(data));
