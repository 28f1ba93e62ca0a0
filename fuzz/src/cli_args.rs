//! The command-line parser (`src/cli.rs` of the binary, included here as it is): arguments
//! are the input split at NUL bytes. Expected: no panic, and every rejection is one line that
//! names an argument it was given (as written with control characters escaped, or with `--`
//! spelled `-`; an empty one as `''`).

#[path = "../../src/cli.rs"]
pub mod cli;

/// The fuzz target.
pub fn cli_args(data: &[u8]) {
    let args: Vec<String> = data
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let args = if data.is_empty() { Vec::new() } else { args };
    if let Err(e) = cli::parse(args.iter().cloned()) {
        let msg = e.to_string();
        assert!(
            !msg.contains('\n'),
            "multi-line error for {args:?}: {msg:?}"
        );
        let named = args.iter().any(|a| {
            let norm = match a.strip_prefix("--") {
                Some(r) if !r.is_empty() => format!("-{r}"),
                _ => a.clone(),
            };
            let (a, norm) = (cli::one_line(a), cli::one_line(&norm));
            !a.is_empty() && (msg.contains(a.as_str()) || msg.contains(norm.as_str()))
        });
        let empty_named = args.iter().any(String::is_empty) && msg.starts_with("'':");
        assert!(
            named || empty_named,
            "error names no argument of {args:?}: {msg:?}"
        );
    }
}
