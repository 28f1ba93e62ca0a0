//! `tci64`: boot a Linux bzImage on the emulated PC, with QEMU's command-line spelling.
//! See `tci64 --help` and README.md.

mod cli;
mod console;
mod gdb;
mod host;
mod logging;
mod monitor;
mod run;
mod stats;
mod vm;

use cli::Command;

fn main() {
    std::process::exit(real_main());
}

fn real_main() -> i32 {
    let mut args = Vec::new();
    for a in std::env::args_os().skip(1) {
        match a.into_string() {
            Ok(s) => args.push(s),
            Err(a) => {
                eprintln!(
                    "tci64: {}: arguments must be valid UTF-8",
                    a.to_string_lossy()
                );
                return 1;
            }
        }
    }
    match cli::parse(args) {
        Err(e) => {
            eprintln!("tci64: {e}");
            1
        }
        Ok(Command::Help) => {
            print!("{}", cli::usage());
            0
        }
        Ok(Command::Version) => {
            println!("tci64 {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Ok(Command::TraceHelp) => {
            print!("{}", cli::trace_help());
            0
        }
        Ok(Command::MachineHelp) => {
            print!("{}", cli::machine_help());
            0
        }
        Ok(Command::Run(o)) => match run::run(*o) {
            Ok(status) => status,
            Err(msg) => {
                eprintln!("tci64: {msg}");
                1
            }
        },
    }
}
