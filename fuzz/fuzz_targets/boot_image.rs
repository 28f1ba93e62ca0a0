#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tci64_fuzz::boot_image::boot_image(data));
