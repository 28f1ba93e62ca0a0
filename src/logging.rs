//! Logging: `RUST_LOG` through env_logger for everything, except the `tci64::trace` target
//! (`-d` items), which goes plain to stderr or to the `-D` file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;

use log::{LevelFilter, Log, Metadata, Record};

/// The log target the machine writes `-d` traces to.
pub const TRACE_TARGET: &str = "tci64::trace";

fn is_trace(target: &str) -> bool {
    target == TRACE_TARGET
        || target
            .strip_prefix(TRACE_TARGET)
            .is_some_and(|r| r.starts_with("::"))
}

struct Logger {
    inner: env_logger::Logger,
    /// Where trace records go; `None` = no `-d` item is on.
    trace: Option<Mutex<Box<dyn Write + Send>>>,
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        if is_trace(m.target()) {
            self.trace.is_some()
        } else {
            self.inner.enabled(m)
        }
    }

    fn log(&self, r: &Record) {
        if is_trace(r.target()) {
            if let Some(out) = &self.trace {
                let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
                let _ = writeln!(out, "{}", r.args());
            }
        } else {
            self.inner.log(r);
        }
    }

    fn flush(&self) {
        if let Some(out) = &self.trace {
            let _ = out.lock().unwrap_or_else(|e| e.into_inner()).flush();
        }
        self.inner.flush();
    }
}

/// Install the logger. `tracing` says whether any `-d` item is on; `log_file` is `-D`.
/// Warnings and errors show by default; `RUST_LOG` changes that.
pub fn init(tracing: bool, log_file: Option<&Path>) -> Result<(), String> {
    let inner =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).build();
    let trace: Option<Mutex<Box<dyn Write + Send>>> = match (tracing, log_file) {
        (false, _) => None,
        (true, Some(p)) => {
            let f = File::create(p).map_err(|e| format!("-D {}: {e}", p.display()))?;
            Some(Mutex::new(Box::new(BufWriter::new(f))))
        }
        (true, None) => Some(Mutex::new(Box::new(std::io::stderr()))),
    };
    let max = if trace.is_some() {
        LevelFilter::Trace
    } else {
        inner.filter()
    };
    log::set_boxed_logger(Box::new(Logger { inner, trace })).map_err(|e| e.to_string())?;
    log::set_max_level(max);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_target_matching() {
        assert!(is_trace("tci64::trace"));
        assert!(is_trace("tci64::trace::exec"));
        assert!(!is_trace("tci64::tracer"));
        assert!(!is_trace("tci64_machine"));
    }
}
