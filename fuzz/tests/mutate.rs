//! Every target on a fixed number of deterministically mutated inputs (`tci64_fuzz::mutate`):
//! the bounded fuzzing run CI does on each change, beside the corpus replay (`corpus.rs`).
//! The iteration counts keep the whole file to about a minute of CPU in the dev profile.

use tci64_fuzz::mutate;

fn fuzz(name: &str, iterations: u64, max_len: usize) {
    let (_, target) = tci64_fuzz::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .expect("a target of that name");
    mutate::run(name, *target, &mutate::corpus(name), iterations, 1, max_len);
}

#[test]
fn boot_image_mutated() {
    fuzz("boot_image", 300, 1 << 16);
}

#[test]
fn virtio_script_mutated() {
    fuzz("virtio_script", 20_000, 4096);
}

#[test]
fn guest_code_mutated() {
    fuzz("guest_code", 2_000, 512);
}

#[test]
fn device_regs_mutated() {
    fuzz("device_regs", 20_000, 4096);
}

#[test]
fn cli_args_mutated() {
    fuzz("cli_args", 20_000, 1024);
}

#[test]
fn snapshot_file_mutated() {
    fuzz("snapshot_file", 20_000, 1 << 16);
}
