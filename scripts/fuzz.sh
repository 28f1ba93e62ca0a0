#!/usr/bin/env bash
# fuzz.sh: run every fuzz target (fuzz/, cargo-fuzz + libFuzzer) for a bounded time each.
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 30 s, all targets)
# Installs cargo-fuzz if it is missing. Each run starts from the checked-in corpus
# (fuzz/corpus/TARGET, read-only here) and writes what it finds to a scratch corpus under
# target/fuzz-corpus/TARGET; a crash stops the script with libFuzzer's report and leaves the
# input in fuzz/artifacts/TARGET/. Add a fixed crash's input to fuzz/corpus/TARGET so that
# `cargo test -p tci64-fuzz` replays it forever.
# The dev profile (opt-level 2, debug assertions and overflow checks on) builds much faster than
# the release profile (thin LTO) and catches arithmetic overflow as a crash.
# Environment: FUZZ_JOBS (default 1), FUZZ_SANITIZER (default address; none is ~2x faster),
# FUZZ_TRACE_CMP (default 1; 0 builds without libFuzzer's compare tracing, faster again).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

secs=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(boot_image virtio_script guest_code device_regs cli_args snapshot_file)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked || cargo install cargo-fuzz
fi

san=${FUZZ_SANITIZER:-address}
flags=(--features libfuzzer --dev -s "$san")
[ "${FUZZ_TRACE_CMP:-1}" = 0 ] && flags+=(--no-trace-compares)
echo "==> cargo fuzz build (sanitizer $san)"
cargo fuzz build "${flags[@]}"
summary=()
for t in "${targets[@]}"; do
  scratch=target/fuzz-corpus/$t
  mkdir -p "$scratch" "fuzz/artifacts/$t"
  log=target/fuzz-corpus/$t.log
  echo "==> $t for ${secs}s"
  # Timeouts: one input may run at most 10 s (a hang is a bug); RSS 2 GiB, one malloc 1.5 GiB.
  cargo fuzz run "${flags[@]}" "$t" "$scratch" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -jobs="${FUZZ_JOBS:-1}" -workers="${FUZZ_JOBS:-1}" \
    -timeout=10 -rss_limit_mb=2560 -malloc_limit_mb=1536 -print_final_stats=1 2>&1 |
    tee "$log" | grep -E "^#[0-9]+ +(INITED|DONE|pulse)|ERROR|SUMMARY|panicked" || true
  st=${PIPESTATUS[0]}
  execs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
  rate=$(grep -oE '^stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1 | grep -oE '[0-9]+' || echo "?")
  summary+=("$(printf '%-14s execs %10s  exec/s %6s  cov %6s  %s' "$t" "$execs" "$rate" "$cov" \
    "$([ "$st" = 0 ] && echo ok || echo "CRASH (see $log)")")")
  if [ "$st" != 0 ]; then
    printf '%s\n' "${summary[@]}"
    exit 1
  fi
done
echo "==> fuzz summary (${secs}s per target)"
printf '  %s\n' "${summary[@]}"
