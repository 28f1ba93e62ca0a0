// The universal loader: pick the wasm64 build where the engine has 64-bit memories AND 64-bit
// tables, the memory64-lowered wasm32 build everywhere else, and load it (browser window,
// module worker or Node).

// The smallest modules declaring a 64-bit memory / a 64-bit table (flag 4 in the limits).
const MEMORY64_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 5, 3, 1, 4, 0]);
const TABLE64_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 4, 4, 1, 0x70, 4, 0]);

export const BUILDS = Object.freeze(['wasm64', 'wasm32']);

function validates(bytes) {
  try {
    return WebAssembly.validate(bytes);
  } catch {
    return false;
  }
}

/** Whether this engine can run the wasm64 build (memory64 and table64). */
export function supportsWasm64() {
  return validates(MEMORY64_PROBE) && validates(TABLE64_PROBE);
}

/** The build `'auto'` picks on this engine. */
export function detectBuild() {
  return supportsWasm64() ? 'wasm64' : 'wasm32';
}

/**
 * Turn a `build` option (`'auto'`, `'wasm64'`, `'wasm32'`, or undefined) into a build name.
 * Forcing `'wasm64'` on an engine without memory64/table64 throws.
 */
export function resolveBuild(build = 'auto') {
  if (build === undefined || build === null || build === 'auto') return detectBuild();
  if (!BUILDS.includes(build)) {
    throw new Error(`tci64: unknown build '${build}' (expected 'auto', 'wasm64' or 'wasm32')`);
  }
  if (build === 'wasm64' && !supportsWasm64()) {
    throw new Error("tci64: this engine lacks memory64/table64, so it cannot run the wasm64 build; use build: 'wasm32'");
  }
  return build;
}

/** Where the builds live: `pkg/` next to this package's `src/`. */
export const DEFAULT_BASE_URL = new URL('../pkg/', import.meta.url).href;

const loaded = new Map();

/**
 * Load and instantiate one build; resolves to its wasm-bindgen module (`Vm`, `version`, ...).
 * Each build is instantiated once per realm. `baseUrl` overrides where `pkg/` is served from.
 */
export function loadBuild(build, baseUrl = DEFAULT_BASE_URL) {
  const dir = new URL(`${build}/`, baseUrl);
  const key = dir.href;
  if (!loaded.has(key)) {
    const p = (async () => {
      const glue = await import(new URL('tci64_web.js', dir).href);
      const wasmUrl = new URL('tci64_web_bg.wasm', dir);
      let source = wasmUrl;
      if (wasmUrl.protocol === 'file:') {
        // Node: fetch() cannot read files.
        const { readFile } = await import('node:fs/promises');
        source = await readFile(wasmUrl);
      }
      await glue.default({ module_or_path: source });
      return glue;
    })();
    p.catch(() => loaded.delete(key));
    loaded.set(key, p);
  }
  return loaded.get(key);
}
