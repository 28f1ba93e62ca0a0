#!/usr/bin/env bash
# profile.sh: where tci64's host time goes, per phase of a workload (perf, no hardware counters).
#
#   bash scripts/profile.sh WORKLOAD [OUTDIR]      (default OUTDIR: /tmp/tci64-profile-WORKLOAD)
#     WORKLOAD: tiny-test | tiny-bench | debian-test (the guests and command lines of bench.sh)
#   --bin PATH   profile this binary instead of building one
#   PROFILE_FREQ=N  samples per second (default 499)
#
# It builds a release binary with line tables and frame pointers into target/prof (release
# settings otherwise), runs the workload under `perf record -e cpu-clock -g --switch-output=signal`
# and sends perf SIGUSR2 at each phase marker of the serial output, so every phase gets its own
# perf.data. For each phase it writes NN-PHASE.txt: the top functions (self time) and the hottest
# source lines (in the interpreter's exec_block they name the dispatch and the op arms).
# Debian's kernel: .cache/debian/ or TCI64_DEBIAN_DIR, as bench.sh.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
bin=""
while [ $# -gt 0 ]; do
  case $1 in
    --bin) bin=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) break ;;
  esac
done
w=${1:?usage: profile.sh [--bin PATH] tiny-test|tiny-bench|debian-test [OUTDIR]}
out=${2:-/tmp/tci64-profile-$w}
freq=${PROFILE_FREQ:-499}
command -v perf > /dev/null || { echo "profile.sh: needs perf (apt-get install linux-perf)" >&2; exit 1; }
if [ -z "$bin" ]; then
  CARGO_TARGET_DIR=$ROOT/target/prof CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
    RUSTFLAGS="-C force-frame-pointers=yes" cargo build --release --bin tci64 --quiet || exit 1
  bin=$ROOT/target/prof/release/tci64
fi
[ -x "$bin" ] || { echo "profile.sh: no binary at $bin" >&2; exit 1; }
bin=$(realpath "$bin")

G=$ROOT/guest
k=$G/tiny.bzImage i=$G/initramfs.cpio.gz
append="console=ttyS0 panic=-1 reboot=t" dev=virtio-blk-device
machine=(-M microvm,acpi=off,pic=on,pit=on,rtc=on -cpu qemu64,-apic)
case $w in
  tiny-test)
    append="$append guest.test=1"
    markers=("GUEST-BOOT-OK" "GUEST-TEST-DONE")
    names=(boot disk-test shutdown) ;;
  tiny-bench)
    append="$append guest.bench=1"
    markers=("GUEST-BOOT-OK" "BENCH 1/3" "real" "BENCH 2/3" "real" "BENCH 3/3" "real")
    names=(boot setup shell-loop make-pattern sha256 head gzip-gunzip shutdown) ;;
  debian-test)
    d=""
    for c in "${TCI64_DEBIAN_DIR:-}" "$ROOT/.cache/debian"; do
      [ -n "$c" ] || continue
      if [ -f "$c/vmlinuz" ]; then k=$c/vmlinuz i=$c/initramfs.cpio.gz d=$c; break; fi
      if [ -f "$c/debian.vmlinuz" ]; then k=$c/debian.vmlinuz i=$c/debian-initramfs.cpio.gz d=$c; break; fi
    done
    [ -n "$d" ] || { echo "profile.sh: no Debian kernel (.cache/debian/ or TCI64_DEBIAN_DIR)" >&2; exit 1; }
    append="$append guest.test=1 acpi=off" dev=virtio-blk-pci
    machine=(-M pc -nic none -cpu qemu64,-apic)
    markers=("Linux version" "Trying to unpack rootfs" "Freeing initrd memory" "Run /init" "GUEST-BOOT-OK" "GUEST-TEST-DONE")
    names=(decompress kernel-early initramfs-unpack kernel-init init-to-userspace insmod-disk-test shutdown) ;;
  *) echo "profile.sh: unknown workload $w" >&2; exit 1 ;;
esac

rm -rf "$out"; mkdir -p "$out"
disk=$out/disk.ext2
gunzip -c "$G/disk.ext2.gz" > "$disk"
cmd=("$bin" --stats "${machine[@]}" -m 256M -nographic -no-reboot -kernel "$k" -initrd "$i" -append "$append")
case $w in *-test) cmd+=(-drive "id=d0,file=$disk,format=raw,if=none" -device "$dev,drive=d0") ;; esac
printf '%q ' "${cmd[@]}" > "$out/cmd"; echo >> "$out/cmd"

mkfifo "$out/serial.fifo"
(cd "$out" && exec perf record -q -e cpu-clock -F "$freq" -g --switch-output=signal -o perf.data -- "${cmd[@]}") \
  < /dev/null > "$out/serial.fifo" 2> "$out/stderr" &
perf_pid=$!
m=0
while IFS= read -r line; do
  printf '%s\n' "$line" >> "$out/serial.log"
  if [ $m -lt ${#markers[@]} ] && [[ $line == *"${markers[$m]}"* ]]; then
    kill -USR2 "$perf_pid" 2> /dev/null
    echo "$EPOCHREALTIME ${markers[$m]}" >> "$out/marks"
    m=$((m + 1))
  fi
done < "$out/serial.fifo"
wait "$perf_pid"
rm -f "$out/serial.fifo" "$disk"

# perf names the pieces perf.data.<timestamp>, the last one plain perf.data.
n=0
for f in $(ls "$out"/perf.data.* 2> /dev/null | sort) "$out/perf.data"; do
  [ -f "$f" ] || continue
  name=${names[$n]:-rest}
  dst=$(printf '%s/%02d-%s' "$out" "$n" "$name")
  mv "$f" "$dst.data"
  {
    echo "== $w / $name: $(perf report -i "$dst.data" --stdio --sort comm 2> /dev/null | awk '/^# Samples/ { print $3; exit }') samples at ${freq} Hz; top functions (self) =="
    perf report -i "$dst.data" --no-children --sort symbol --stdio -g none --percent-limit 0.7 2> /dev/null |
      grep -v '^#' | grep -v '^$' | sed 's/  *- *- *$//' | head -40
    echo
    echo "== hottest source lines (interp.rs lines name the dispatch and the op arms) =="
    perf report -i "$dst.data" --no-children --sort srcline \
      --stdio -g none --percent-limit 0.7 2> /dev/null | grep -v '^#' | grep -v '^$' | head -30
  } > "$dst.txt"
  n=$((n + 1))
done
echo "profile.sh: $w -> $out ($n phases):"
for f in "$out"/*.txt; do echo "  $f"; done
tail -12 "$out/stderr"
