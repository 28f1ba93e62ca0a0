//! Browser bindings for tci64. For now: the version string and the panic/log plumbing; the
//! `Tci64` machine class comes with the web issue.
//!
//! Built for `wasm64-unknown-unknown` (see `scripts/build-web.sh`); the same module is lowered to
//! wasm32 with binaryen for engines without memory64. Natively the crate compiles to plain Rust
//! so `cargo test --workspace` covers it.

#[cfg(target_family = "wasm")]
use wasm_bindgen::prelude::wasm_bindgen;

/// The tci64 version, e.g. `"0.1.0"`.
#[cfg_attr(target_family = "wasm", wasm_bindgen)]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

#[cfg(target_family = "wasm")]
mod wasm {
    use wasm_bindgen::prelude::wasm_bindgen;

    #[wasm_bindgen]
    extern "C" {
        #[wasm_bindgen(js_namespace = console)]
        fn error(msg: &str);
    }

    /// Runs when the module is instantiated: panics go to `console.error` (the
    /// console_error_panic_hook crate does nothing on wasm64), `log` records to the console.
    #[wasm_bindgen(start)]
    pub fn start() {
        std::panic::set_hook(Box::new(|info| error(&format!("tci64 panicked: {info}"))));
        let _ = console_log::init_with_level(log::Level::Info);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_is_the_package_version() {
        assert_eq!(super::version(), env!("CARGO_PKG_VERSION"));
        assert!(super::version().split('.').count() == 3);
    }
}
