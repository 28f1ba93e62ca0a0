#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tci64_fuzz::virtio_script::virtio_script(data));
