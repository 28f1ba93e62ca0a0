#!/usr/bin/env bash
# bench.sh: tci64 against Debian's QEMU 7.2 (TCG JIT) on the same guests, side by side, in one run.
#
#   bash scripts/bench.sh [-r N] [-R N] [-w LIST] [--bin PATH] [--qemu PATH] [--no-build] [--log DIR]
#
#   -w LIST     workloads, comma-separated (default: all; debian-test only when its kernel is found)
#                 tiny-test    bundled tiny guest, guest.test=1, microvm without LAPIC
#                              (verify-guest.sh's tiny-microvm-noapic)
#                 tiny-bench   bundled tiny guest, guest.bench=1, same machine; each of its three
#                              phases (shell loop, sha256, gzip|gunzip) is timed on the host from
#                              its "BENCH k/3" line to the guest's `time` output line (wall, and
#                              the emulator's CPU time read from /proc at those lines), and the
#                              guest's own `time` figures are shown as well
#                 debian-test  Debian's stock kernel, guest.test=1, -M pc without LAPIC, acpi=off
#                              (verify-guest.sh's debian-pc-noapic); phases timed the same way
#                              between kernel log lines: firmware + XZ decompressor, kernel boot,
#                              initramfs unpack, rest of kernel init, /init (insmod, disk test)
#                 web-test     the deterministic disk test (tiny guest, guest.test=1, icount
#                              shift=3) natively and in headless Chromium on wasm64 and wasm32
#                              (the page's ?bench=test, www/tools/bench-browser.mjs); no QEMU.
#                              In the default set when /usr/bin/chromium and www/node_modules exist
#                 web-bench    the same with guest.bench=1 (the page's Benchmark button); long
#   -r N        interleaved pairs (QEMU, tci64, QEMU, tci64, ...) for tiny-test (default 7)
#   -R N        pairs for tiny-bench and debian-test, rounds for web-test and web-bench (default 1)
#   --bin PATH  the tci64 binary (default: cargo build --release, then target/release/tci64;
#               the web workloads also run scripts/build-web.sh unless --no-build)
#   --no-build  use target/release/tci64 as it is
#   --qemu PATH the reference (default: qemu-system-x86_64; installed with apt-get when missing)
#   --log DIR   keep every run's serial output, stderr and command line there
#
# The Debian kernel comes from .cache/debian/ (scripts/fetch-debian-kernel.sh: vmlinuz,
# initramfs.cpio.gz, version) or from TCI64_DEBIAN_DIR (either those names or the shared
# folder's debian.vmlinuz / debian-initramfs.cpio.gz / debian.version).
#
# Each run gets a fresh copy of the disk and must pass the guest protocol (GUEST-TEST-DONE with the
# right sha256, or GUEST-BENCH-DONE); a failed run shows as FAIL. Times are medians over the pairs:
# wall time (start to exit) and CPU time (user+sys, all threads). The ratio columns are tci64 over
# QEMU from the same run. CPU time is the steadier figure on a shared machine; wall time is what a
# user waits. MIPS and ops/insn are tci64's own `--stats` (median run). This script is a benchmark,
# not a test: it never runs in scripts/test.sh.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

pairs_short=7 pairs_long=1 workloads="" bin="" build=1 qemu=qemu-system-x86_64 logdir=""
TIMEOUT=${TIMEOUT:-1800}
usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case $1 in
    -r) pairs_short=$2; shift 2 ;;
    -R) pairs_long=$2; shift 2 ;;
    -w) workloads=${2//,/ }; shift 2 ;;
    --bin) bin=$2; build=0; shift 2 ;;
    --no-build) build=0; shift ;;
    --qemu) qemu=$2; shift 2 ;;
    --log) logdir=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "bench.sh: unknown argument $1" >&2; usage 1 >&2 ;;
  esac
done
for n in "$pairs_short" "$pairs_long"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "bench.sh: repetitions must be positive integers" >&2; exit 1; }
done

# --- the reference -----------------------------------------------------------------------------
if ! command -v "$qemu" > /dev/null; then
  if [ "$qemu" = qemu-system-x86_64 ]; then
    echo "bench.sh: installing Debian's qemu-system-x86 (the reference)" >&2
    sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get install -y qemu-system-x86 > /dev/null ||
      { $sudo apt-get update > /dev/null && $sudo apt-get install -y qemu-system-x86 > /dev/null; } ||
      { echo "bench.sh: cannot install qemu-system-x86" >&2; exit 1; }
  else
    echo "bench.sh: $qemu not found" >&2; exit 1
  fi
fi

# --- tci64 -------------------------------------------------------------------------------------
target=${CARGO_TARGET_DIR:-target}
if [ -z "$bin" ]; then
  bin=$target/release/tci64
  if [ $build = 1 ]; then
    cargo build --release --bin tci64 --quiet || { echo "bench.sh: build failed" >&2; exit 1; }
  fi
fi
[ -x "$bin" ] || { echo "bench.sh: no tci64 binary at $bin" >&2; exit 1; }
bin=$(realpath "$bin")

# --- guests ------------------------------------------------------------------------------------
G=$ROOT/guest
deb_k="" deb_i="" deb_v=""
for d in "${TCI64_DEBIAN_DIR:-}" "$ROOT/.cache/debian"; do
  [ -n "$d" ] && [ -d "$d" ] || continue
  if [ -f "$d/vmlinuz" ] && [ -f "$d/initramfs.cpio.gz" ]; then
    deb_k=$d/vmlinuz deb_i=$d/initramfs.cpio.gz deb_v=$(cat "$d/version" 2>/dev/null)
  elif [ -f "$d/debian.vmlinuz" ] && [ -f "$d/debian-initramfs.cpio.gz" ]; then
    deb_k=$d/debian.vmlinuz deb_i=$d/debian-initramfs.cpio.gz deb_v=$(cat "$d/debian.version" 2>/dev/null)
  fi
  [ -n "$deb_k" ] && break
done
if [ -z "$workloads" ]; then
  workloads="tiny-test tiny-bench"
  if [ -n "$deb_k" ]; then workloads="$workloads debian-test"
  else echo "bench.sh: no Debian kernel (.cache/debian/ or TCI64_DEBIAN_DIR): skipping debian-test" >&2; fi
  if [ -x "${CHROMIUM:-/usr/bin/chromium}" ] && [ -d www/node_modules/playwright-core ]; then workloads="$workloads web-test"
  else echo "bench.sh: no Chromium or www/node_modules: skipping web-test" >&2; fi
fi
for w in $workloads; do
  case $w in
    tiny-test|tiny-bench) ;;
    web-test|web-bench)
      [ -x "${CHROMIUM:-/usr/bin/chromium}" ] && [ -d www/node_modules/playwright-core ] ||
        { echo "bench.sh: $w needs Chromium and www/node_modules (scripts/setup.sh)" >&2; exit 1; }
      if [ $build = 1 ] && [ -z "${web_built:-}" ]; then
        TCI64_SKIP_SETUP=1 bash scripts/build-web.sh > /dev/null || { echo "bench.sh: build-web.sh failed" >&2; exit 1; }
        web_built=1
      fi
      [ -f www/pkg/wasm32/tci64_web_bg.wasm ] || { echo "bench.sh: $w needs www/pkg (scripts/build-web.sh)" >&2; exit 1; } ;;
    debian-test) [ -n "$deb_k" ] || { echo "bench.sh: debian-test needs the Debian kernel (scripts/fetch-debian-kernel.sh or TCI64_DEBIAN_DIR)" >&2; exit 1; } ;;
    *) echo "bench.sh: unknown workload $w (tiny-test tiny-bench debian-test)" >&2; exit 1 ;;
  esac
done

WEB_ICOUNT_SHIFT=3 # as www/bench.js
work=$(mktemp -d /tmp/tci64-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
[ -n "$logdir" ] && mkdir -p "$logdir"
gunzip -c "$G/disk.ext2.gz" > "$work/disk.pristine"
want_sha=$(cut -d' ' -f1 "$G/disk.sha256")

# cmd_for EMU WORKLOAD DISK -> CMD (array). The same command line for both emulators.
cmd_for() {
  local emu=$1 w=$2 disk=$3 k=$G/tiny.bzImage i=$G/initramfs.cpio.gz mode=test
  local append="console=ttyS0 panic=-1 reboot=t"
  CMD=()
  if [ "$emu" = qemu ]; then CMD+=("$qemu"); else CMD+=("$bin" --stats); fi
  case $w in
    tiny-test|tiny-bench|web-test|web-bench)
      case $w in *-bench) mode=bench ;; esac
      case $w in web-*) CMD+=(-icount "shift=$WEB_ICOUNT_SHIFT") ;; esac
      CMD+=(-M microvm,acpi=off,pic=on,pit=on,rtc=on -cpu qemu64,-apic)
      append="$append guest.$mode=1" ;;
    debian-test)
      k=$deb_k i=$deb_i
      CMD+=(-M pc -nic none -cpu qemu64,-apic)
      append="$append guest.test=1 acpi=off" ;;
  esac
  CMD+=(-accel tcg -m 256M -nographic -no-reboot -kernel "$k" -initrd "$i" -append "$append")
  if [ $mode = test ]; then
    CMD+=(-drive "id=d0,file=$disk,format=raw,if=none")
    case $w in debian-*) CMD+=(-device virtio-blk-pci,drive=d0) ;; *) CMD+=(-device virtio-blk-device,drive=d0) ;; esac
  fi
}

# stamp TIMEOUT_PID MARKS: copy the serial output (stdin -> stdout) and, for each marker line, append
# "wall_seconds cpu_ticks line" to MARKS, reading the emulator's CPU time (user+sys, all threads)
# from /proc when the line arrives. Builtins only: no forks that would count as CPU time.
stamp() {
  local tpid=$1 marks=$2 pid="" line f
  printf '%s 0 START\n' "$EPOCHREALTIME" >> "$marks"
  while IFS= read -r line; do
    printf '%s\n' "$line"
    case ${line%$'\r'} in
      GUEST-BOOT-OK|"BENCH "[123]/3*|real*|GUEST-BENCH-DONE|GUEST-TEST-DONE|*"Linux version "*|\
      *"Trying to unpack rootfs"*|*"Freeing initrd memory"*|*"Run /init as init process"*)
        [ -n "$pid" ] || read -r pid _ < "/proc/$tpid/task/$tpid/children" 2> /dev/null
        f=()
        [ -n "$pid" ] && read -r -a f < "/proc/$pid/stat" 2> /dev/null
        # fields 14 and 15 (utime, stime); the command name (field 2) has no spaces here
        printf '%s %s %s\n' "$EPOCHREALTIME" "$(( ${f[13]:-0} + ${f[14]:-0} ))" "${line%$'\r'}" >> "$marks" ;;
    esac
  done
}

# Phases per workload: "name|start|end" with awk regexes on the marker text (START = power-on).
# A phase runs from the first start line to the next end line after it.
phase_spec() {
  case $1 in
    tiny-bench) echo "shell loop|^BENCH 1/3|^real;sha256|^BENCH 2/3|^real;gzip, gunzip|^BENCH 3/3|^real" ;;
    debian-test) echo "firmware + decompressor (XZ)|^START|Linux version ;kernel boot to the initramfs|Linux version |Trying to unpack rootfs;initramfs unpack|Trying to unpack rootfs|Freeing initrd memory;rest of kernel init|Freeing initrd memory|Run /init as init process;init: insmod, disk test|Run /init as init process|^GUEST-TEST-DONE" ;;
    *) echo "" ;;
  esac
}
# phases WORKLOAD MARKS -> the phases' wall seconds, then their CPU seconds ("-" when not seen)
phases() {
  local spec; spec=$(phase_spec "$1")
  [ -n "$spec" ] || return 0
  awk -v hz="$CLK_TCK" -v spec="$spec" '
    BEGIN { n = split(spec, ph, ";"); for (i = 1; i <= n; i++) { split(ph[i], f, "|"); st[i] = f[2]; en[i] = f[3] } }
    { t = $1; c = $2; $1 = ""; $2 = ""; sub(/^  /, ""); line[NR] = $0; T[NR] = t; C[NR] = c; N = NR }
    END {
      for (i = 1; i <= n; i++) {
        w[i] = "-"; u[i] = "-"; s = 0
        for (r = 1; r <= N; r++) if (line[r] ~ st[i]) { s = r; break }
        if (s) for (r = s + 1; r <= N; r++) if (line[r] ~ en[i]) { w[i] = sprintf("%.3f", T[r] - T[s]); u[i] = sprintf("%.2f", (C[r] - C[s]) / hz); break }
      }
      for (i = 1; i <= n; i++) printf "%s ", w[i]; for (i = 1; i <= n; i++) printf "%s ", u[i]; print "" }' "$2"
}

# busybox `time` in the guest: "real<TAB>0m 3.50s" -> seconds (the guest's clock)
guest_times() {  # LOG -> "loop sha gzip" (or -)
  awk '
    /^BENCH [123]\/3/ { p = substr($2, 1, 1) }
    p && /^real/ { m = $2; s = $3; sub(/m$/, "", m); sub(/s$/, "", s); t[p] = m * 60 + s; p = 0 }
    END { printf "%s %s %s\n", (1 in t ? t[1] : "-"), (2 in t ? t[2] : "-"), (3 in t ? t[3] : "-") }' "$1"
}

# run EMU WORKLOAD N -> appends one line to $work/EMU-WORKLOAD:
#   wall cpu ok insns mips ops_per_insn | phase walls (P) | phase cpus (P) | guest times (3)
run() {
  local emu=$1 w=$2 n=$3 disk=$work/disk.ext2 out=$work/out err=$work/err tf=$work/time ok=ok
  local marks=$work/marks fifo=$work/fifo rc tpid
  cp "$work/disk.pristine" "$disk"
  rm -f "$marks" "$fifo"; : > "$marks"; mkfifo "$fifo"
  cmd_for "$emu" "$w" "$disk"
  local TIMEFORMAT='%R %U %S'
  { time {
      timeout "$TIMEOUT" "${CMD[@]}" < /dev/null > "$fifo" 2> "$err" & tpid=$!
      stamp "$tpid" "$marks" < "$fifo" > "$out"
      wait "$tpid"; echo $? > "$work/rc"
  }; } 2> "$tf"
  rc=$(cat "$work/rc")
  tr -d '\r' < "$out" > "$out.txt"
  [ "$rc" = 0 ] || ok="FAIL(exit=$rc)"
  case $w in
    *-test)
      grep -qx "GUEST-TEST-DONE" "$out.txt" && grep -qx "$want_sha  /mnt/blob.bin" "$out.txt" || ok=FAIL ;;
    *-bench) grep -qx "GUEST-BENCH-DONE" "$out.txt" || ok=FAIL ;;
  esac
  local wall cpu insns=- mips=- ops=-
  read -r wall cpu < <(awk '{ printf "%.3f %.3f\n", $1, $2 + $3 }' "$tf")
  if [ "$emu" = tci64 ]; then
    insns=$(awk '/guest instructions/ { print $3; exit }' "$err")
    mips=$(awk '/guest instructions/ { gsub(/[(]/, "", $4); print $4; exit }' "$err")
    ops=$(awk '/ops per guest insn/ { print $5; exit }' "$err")
  fi
  echo "$wall $cpu $ok ${insns:--} ${mips:--} ${ops:--} $(phases "$w" "$marks") $(guest_times "$out.txt")" >> "$work/$emu-$w"
  if [ -n "$logdir" ]; then
    printf '%q ' "${CMD[@]}" > "$logdir/$w.$emu.$n.cmd"; echo >> "$logdir/$w.$emu.$n.cmd"
    cp "$out.txt" "$logdir/$w.$emu.$n.serial"; cp "$err" "$logdir/$w.$emu.$n.stderr"
    cp "$marks" "$logdir/$w.$emu.$n.marks"
  fi
  printf '  %-12s %-6s run %d: %7.2f s wall, %7.2f s cpu  %s\n' "$w" "$emu" "$n" "$wall" "$cpu" "$ok" >&2
}

# run_web WORKLOAD N: the native CLI under icount, then the page's benchmark mode in Chromium
# (wasm64, then wasm32). Appends "native_wall native_mips wasm64_wall wasm64_mips wasm32_wall
# wasm32_mips ok ops_per_insn" to $work/web-WORKLOAD. Native wall is the CLI's own --stats wall time
# (the run loop, as the page's figure is from vm.start() to the exit).
run_web() {
  local w=$1 n=$2 ok=ok nat
  run tci64 "$w" "$n"
  nat=$(tail -1 "$work/tci64-$w")
  local nwall nmips ops
  nwall=$(awk '/wall time/ { print $3; exit }' "$work/err")
  nmips=$(echo "$nat" | awk '{ print $5 }') ops=$(echo "$nat" | awk '{ print $6 }')
  case $nat in *" ok "*) ;; *) ok=FAIL ;; esac
  local wl=test; [ $w = web-bench ] && wl=bench
  if ! (cd www && node tools/bench-browser.mjs "$wl") > "$work/web.json" 2> "$work/web.err"; then
    ok=FAIL; cat "$work/web.err" >&2
  fi
  [ -n "$logdir" ] && cp "$work/web.json" "$logdir/$w.browser.$n.json"
  local b64 b32
  local pick='const [f, b] = process.argv.slice(1); const r = require("fs").readFileSync(f, "utf8").trim().split("\n").filter(Boolean).map(JSON.parse).find((x) => x.build === b && x.ok); console.log(r ? `${(r.wallMs / 1000).toFixed(3)} ${r.mips.toFixed(1)} ${r.cpuSecs === null || r.cpuSecs === undefined ? "-" : r.cpuSecs.toFixed(2)}` : "")'
  b64=$(node -e "$pick" "$work/web.json" wasm64 2> /dev/null)
  b32=$(node -e "$pick" "$work/web.json" wasm32 2> /dev/null)
  [ -n "$b64" ] || { b64="- - -"; ok=FAIL; }
  [ -n "$b32" ] || { b32="- - -"; ok=FAIL; }
  local ncpu; ncpu=$(echo "$nat" | awk '{ print $2 }')
  # columns: native wall, mips | wasm64 wall, mips, cpu | wasm32 wall, mips, cpu | ok ops | native cpu
  echo "${nwall:--} $nmips $b64 $b32 $ok $ops $ncpu" >> "$work/web-$w"
  printf '  %-12s %-6s run %d: native %s s, wasm64 %s s, wasm32 %s s (wall)  %s\n' "$w" browser "$n" "${nwall:--}" "${b64%% *}" "${b32%% *}" "$ok" >&2
}

median() {  # median of column COL of FILE (numeric rows only), printed with FMT (default %.3f)
  awk -v c="$2" -v f="${3:-%.3f}" '$c ~ /^[0-9.]+$/ { v[n++] = $c } END {
    if (!n) { print "-"; exit }
    for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    printf f "\n", (n % 2 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2) }' "$1"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2fx", a / b; else print "-" }'; }
fails() { awk '$3 != "ok" { n++ } END { print n + 0 }' "$1"; }

CLK_TCK=$(getconf CLK_TCK)
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
echo "bench.sh: $(date -u '+%Y-%m-%d %H:%M UTC'); $cpu_model, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "bench.sh: tci64 $bin ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')); $("$qemu" --version | head -1)" >&2
for w in $workloads; do
  case $w in tiny-test) n=$pairs_short ;; *) n=$pairs_long ;; esac
  for ((k = 1; k <= n; k++)); do
    case $w in
      web-*) run_web "$w" "$k" ;;
      *) run qemu "$w" "$k"; run tci64 "$w" "$k" ;;
    esac
  done
done

# --- the table ---------------------------------------------------------------------------------
echo
echo "tci64 vs QEMU $("$qemu" --version | awk 'NR == 1 { print $4 }') TCG JIT, $(date -u '+%Y-%m-%d %H:%M UTC'), tci64 $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "host: $cpu_model, $(nproc) cores, load average at the end $(cut -d' ' -f1-3 /proc/loadavg) (shared machine: compare the ratios, not the times)"
echo
case " $workloads " in *" tiny-"*|*" debian-"*)
  echo "| workload | runs | QEMU JIT wall | tci64 wall | ratio | QEMU JIT cpu | tci64 cpu | cpu ratio | tci64 MIPS | ops/insn | guest insns |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|" ;;
esac
for w in $workloads; do
  case $w in web-*) continue ;; esac
  q=$work/qemu-$w t=$work/tci64-$w
  runs=$(wc -l < "$t")
  f=$(( $(fails "$q") + $(fails "$t") ))
  [ $f = 0 ] && note="$runs" || note="$runs ($f FAILED)"
  qw=$(median "$q" 1) tw=$(median "$t" 1) qc=$(median "$q" 2) tc=$(median "$t" 2)
  printf '| %s | %s | %s s | %s s | **%s** | %s s | %s s | %s | %s | %s | %s |\n' "$w" "$note" \
    "$qw" "$tw" "$(ratio "$tw" "$qw")" "$qc" "$tc" "$(ratio "$tc" "$qc")" \
    "$(median "$t" 5 %.1f)" "$(median "$t" 6 %.2f)" "$(median "$t" 4 %.0f)"
  spec=$(phase_spec "$w")
  if [ -n "$spec" ]; then
    IFS=';' read -r -a plist <<< "$spec"
    np=${#plist[@]} k=0
    for ph in "${plist[@]}"; do
      p=${ph%%|*}
      qp=$(median "$q" $((7 + k))) tp=$(median "$t" $((7 + k)))
      qpc=$(median "$q" $((7 + np + k)) %.2f) tpc=$(median "$t" $((7 + np + k)) %.2f)
      printf '| %s: %s | %s | %s s | %s s | **%s** | %s s | %s s | %s | | | |\n' "$w" "$p" "$runs" \
        "$qp" "$tp" "$(ratio "$tp" "$qp")" "$qpc" "$tpc" "$(ratio "$tpc" "$qpc")"
      k=$((k + 1))
    done
  fi
done
case " $workloads " in
  *" tiny-bench "*)
    q=$work/qemu-tiny-bench t=$work/tci64-tiny-bench
    echo
    echo "tiny-bench phases as the guest's busybox \`time\` reports them (the guest's clock; when its TSC"
    echo "calibration fails under host load it runs on jiffies and can lose ticks while the emulator waits for a CPU):"
    echo "| phase | QEMU JIT | tci64 | ratio |"
    echo "|---|---|---|---|"
    k=0
    for p in "shell loop" "sha256" "gzip, gunzip"; do
      qp=$(median "$q" $((13 + k)) %.2f) tp=$(median "$t" $((13 + k)) %.2f) # 6 + 2 x 3 phases + k
      printf '| %s | %s s | %s s | %s |\n' "$p" "$qp" "$tp" "$(ratio "$tp" "$qp")"
      k=$((k + 1))
    done ;;
esac
web_rows=""
for w in $workloads; do case $w in web-*) web_rows="$web_rows $w" ;; esac; done
if [ -n "$web_rows" ]; then
  echo
  echo "Browser builds vs native, the same guest under icount shift=$WEB_ICOUNT_SHIFT (identical guest instructions), $(node -e 'const l = require("fs").readFileSync(process.argv[1], "utf8").split("\n")[0]; console.log(l ? JSON.parse(l).userAgent : "?")' "$work/web.json" 2> /dev/null):"
  echo "| workload | runs | native wall | wasm64 wall | ratio | wasm32 wall | ratio | native cpu | wasm64 cpu | ratio | wasm32 cpu | ratio | MIPS native, wasm64, wasm32 | ops/insn |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  for w in $web_rows; do
    f=$work/web-$w
    runs=$(wc -l < "$f"); bad=$(awk '$9 != "ok" { n++ } END { print n + 0 }' "$f")
    [ "$bad" = 0 ] && note=$runs || note="$runs ($bad FAILED)"
    nw=$(median "$f" 1) aw=$(median "$f" 3) bw=$(median "$f" 6)
    nc=$(median "$f" 11 %.2f) ac=$(median "$f" 5 %.2f) bc=$(median "$f" 8 %.2f)
    printf '| %s | %s | %s s | %s s | **%s** | %s s | **%s** | %s s | %s s | %s | %s s | %s | %s, %s, %s | %s |\n' "$w" "$note" \
      "$nw" "$aw" "$(ratio "$aw" "$nw")" "$bw" "$(ratio "$bw" "$nw")" \
      "$nc" "$ac" "$(ratio "$ac" "$nc")" "$bc" "$(ratio "$bc" "$nc")" \
      "$(median "$f" 2 %.1f)" "$(median "$f" 4 %.1f)" "$(median "$f" 7 %.1f)" "$(median "$f" 10 %.2f)"
  done
  echo
  echo "(native: the CLI's --stats wall time and its process CPU time; browser: vm.start() to the guest's exit, and the"
  echo "CPU time of all Chromium processes during that build's run, which includes loading and compiling the module)"
fi
[ -n "$deb_v" ] && case " $workloads " in *" debian-test "*) echo; echo "debian-test kernel: $deb_v ($deb_k)" ;; esac
all_fail=0
for f in "$work"/qemu-* "$work"/tci64-*; do [ -f "$f" ] && all_fail=$((all_fail + $(fails "$f"))); done
for f in "$work"/web-*; do [ -f "$f" ] && all_fail=$((all_fail + $(awk '$9 != "ok" { n++ } END { print n + 0 }' "$f"))); done
[ $all_fail = 0 ] || { echo; echo "bench.sh: $all_fail run(s) failed the guest protocol${logdir:+ (logs in $logdir)}" >&2; exit 1; }
