//! Replays every checked-in input of every target (`corpus/TARGET/*`): the seeds and every
//! crash found so far, so CI fails if one comes back.

use std::path::Path;

fn replay(name: &str, f: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: no inputs", dir.display());
    for p in &files {
        let data = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        eprintln!("{name}: {}", p.display());
        f(&data);
    }
}

#[test]
fn boot_image_corpus() {
    replay("boot_image", tci64_fuzz::boot_image::boot_image);
}

#[test]
fn virtio_script_corpus() {
    replay("virtio_script", tci64_fuzz::virtio_script::virtio_script);
}

#[test]
fn guest_code_corpus() {
    replay("guest_code", tci64_fuzz::guest_code::guest_code);
}

#[test]
fn device_regs_corpus() {
    replay("device_regs", tci64_fuzz::device_regs::device_regs);
}

#[test]
fn cli_args_corpus() {
    replay("cli_args", tci64_fuzz::cli_args::cli_args);
}

#[test]
fn snapshot_file_corpus() {
    replay("snapshot_file", tci64_fuzz::snapshot_file::snapshot_file);
}
