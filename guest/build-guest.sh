#!/usr/bin/env bash
# build-guest.sh: rebuild tci64's bundled default guest from Debian 12 (bookworm) packages alone.
#
#   sudo ./build-guest.sh [OUTDIR]     (root: it runs apt-get; ~3 minutes of kernel build on 2 cores)
#
#   OUTDIR      where the artifacts go (default: this folder, i.e. it regenerates the committed files)
#   WORK=DIR    scratch folder, kept so that a rerun reuses the unpacked kernel tree and downloaded
#               packages (default: /var/tmp/tci64-guest-build)
#   JOBS=N      make -j (default: nproc)
#
# Inputs, next to this script: tiny.config (kernel options on top of tinyconfig) and init.sh (the
# guest's /init). Outputs in OUTDIR:
#   tiny.bzImage        Linux 6.1 from linux-source-6.1, tinyconfig + tiny.config, LZ4
#   initramfs.cpio.gz   static busybox + /init + /etc/bench.expected (sorted newc, fixed mtimes)
#   disk.ext2.gz        16 MiB ext2 test disk (hello.txt, blob.bin, blob.sha256), gzip -9n
#   disk.sha256         sha256sum line of blob.bin
#   SHA256SUMS          sums of the above and of the recipe inputs
# and in WORK/extra: tiny.full.config, tiny.System.map, disk.ext2 (uncompressed).
#
# Reproducible: fixed KBUILD_* identity and timestamp, fixed file-system UUID, hash seed and times,
# sorted cpio archives and gzip -n. With the same Debian packages (linux-source-6.1 6.1.192-2,
# busybox-static 1:1.35.0-4+deb12u1+b1) the outputs are byte-identical to the ones committed here
# and to ../shared/guest; the last step compares against the known sums and says MATCH or DIFFERS.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:-$here}
mkdir -p "$out"; out=$(cd "$out" && pwd)
WORK=${WORK:-/var/tmp/tci64-guest-build}
mkdir -p "$WORK/extra"; WORK=$(cd "$WORK" && pwd)
JOBS=${JOBS:-$(nproc)}
export DEBIAN_FRONTEND=noninteractive LC_ALL=C
FIXED_EPOCH=1704067200                  # 2024-01-01 00:00:00 UTC: image mtimes, mkfs time
KVER_TAG="Mon Jan  1 00:00:00 UTC 2024" # the kernel's build timestamp
step() { printf '\n== %s\n' "$*"; }
run() { printf '+ %s\n' "$*" >&2; "$@"; }

# Known-good sums (the committed artifacts; disk.ext2 is the uncompressed image).
declare -A WANT=(
  [tiny.bzImage]=7198fe03e9bcb9d9ef8859b5e8f3ba9d412e3e1575b961957bb797b7a2b6e760
  [initramfs.cpio.gz]=d31199385026276497db11e63ef2ba07c38262df5b61346ed639cc97cf8aa749
  [disk.ext2]=94e9314e54b9650a2773376ad2b763477ecde1aaf276689fe363d7dea69ccdc9
  [disk.sha256]=a78134279b26431691b548d7a0e8e76cc5c7f5eafd34c8dc4ff2a3aa19698b53
  [tiny.config]=1832a1ca3b31128b6745cc76a4ba0a9cb18a889667466d980dd3f93d3d2f1f77
  [init.sh]=6e23069f4b73fa6aff66f7d630677f60e097501d6632c31e1d98222e95656595
)

# ---------------------------------------------------------------------------------------------
step "1. host packages"
need="build-essential flex bison bc libelf-dev libssl-dev lz4 xz-utils cpio kmod e2fsprogs python3 linux-source-6.1"
missing=""
for p in $need; do
  dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing="$missing $p"
done
if [ -n "$missing" ]; then
  run apt-get update -q
  run apt-get install -y -q --no-install-recommends $missing
else
  echo "all installed: $need"
fi
echo "linux-source-6.1 $(dpkg-query -W -f='${Version}' linux-source-6.1)"

# ---------------------------------------------------------------------------------------------
step "2. recipe inputs"
for f in tiny.config init.sh; do
  [ -f "$here/$f" ] || { echo "missing $here/$f" >&2; exit 1; }
  [ "$here" = "$out" ] || install -m "$([ $f = init.sh ] && echo 755 || echo 644)" "$here/$f" "$out/$f"
done
echo "tiny.config: $(grep -c '^CONFIG_\|^# CONFIG_.* is not set' "$here/tiny.config") options; init.sh: $(wc -c < "$here/init.sh") bytes"

# ---------------------------------------------------------------------------------------------
step "3. tiny kernel: tinyconfig + tiny.config -> bzImage"
src=$WORK/linux-source-6.1
[ -f "$src/Makefile" ] || run tar -C "$WORK" -xf /usr/src/linux-source-6.1.tar.xz
kmake() { KBUILD_BUILD_USER=guest KBUILD_BUILD_HOST=debian KBUILD_BUILD_VERSION=1 \
          KBUILD_BUILD_TIMESTAMP="$KVER_TAG" make -C "$src" ARCH=x86_64 "$@"; }
if ! cmp -s "$here/tiny.config" "$WORK/tiny.config.applied" 2>/dev/null || [ ! -f "$src/.config" ]; then
  run kmake -s tinyconfig >/dev/null
  (cd "$src" && run ./scripts/kconfig/merge_config.sh -m .config "$here/tiny.config" >/dev/null)
  run kmake -s olddefconfig
  cp "$here/tiny.config" "$WORK/tiny.config.applied"
fi
# Every option of the fragment must survive olddefconfig (a dependency missing would drop it).
bad=0
while IFS= read -r l; do
  case $l in
    CONFIG_*) grep -qx "$l" "$src/.config" || { echo "config: wanted $l, got: $(grep "^${l%%=*}=" "$src/.config" || echo unset)"; bad=1; } ;;
    "# CONFIG_"*" is not set") s=${l#\# }; s=${s%% *}; ! grep -q "^$s=" "$src/.config" || { echo "config: $s should be unset"; bad=1; } ;;
  esac
done < "$here/tiny.config"
[ $bad = 0 ] || { echo "tiny.config did not apply cleanly" >&2; exit 1; }
run kmake -j"$JOBS" bzImage >"$WORK/kernel-build.log" 2>&1 || { tail -30 "$WORK/kernel-build.log"; exit 1; }
install -m 644 "$src/arch/x86/boot/bzImage" "$out/tiny.bzImage"
cp "$src/.config" "$WORK/extra/tiny.full.config"
cp "$src/System.map" "$WORK/extra/tiny.System.map"
echo "tiny.bzImage: $(kmake -s kernelrelease), $(stat -c %s "$out/tiny.bzImage") bytes"

# ---------------------------------------------------------------------------------------------
step "4. busybox initramfs"
pkgs=$WORK/pkgs; mkdir -p "$pkgs"
v=$(apt-cache policy busybox-static | awk '/Candidate:/{print $2}')
[ -n "$v" ] && [ "$v" != "(none)" ] || { echo "no candidate for busybox-static (apt-get update?)" >&2; exit 1; }
bbdeb=""
for x in "$pkgs"/busybox-static_*_amd64.deb; do
  if [ -f "$x" ] && [ "$(dpkg-deb -f "$x" Version)" = "$v" ]; then bbdeb=$x; break; fi
done
if [ -z "$bbdeb" ]; then
  (cd "$pkgs" && run apt-get download -q -o APT::Sandbox::User=root "busybox-static=$v")
  bbdeb=$(ls -t "$pkgs"/busybox-static_*_amd64.deb | head -n1)
fi
echo "busybox-static $(dpkg-deb -f "$bbdeb" Version)"
rm -rf "$WORK/busybox" && mkdir -p "$WORK/busybox" && dpkg-deb -x "$bbdeb" "$WORK/busybox"

# What guest.bench=1 must print, computed here with coreutils on the same pattern.
seq 1 200000 > "$WORK/seq"; head -c 1048576 "$WORK/seq" > "$WORK/chunk"; rm -f "$WORK/seq"  # no pipe: SIGPIPE + pipefail
for k in $(seq 16); do cat "$WORK/chunk"; done > "$WORK/pattern"
bench_sha256=$(sha256sum < "$WORK/pattern" | cut -d' ' -f1)
bench_md5=$(head -c 4194304 "$WORK/pattern" | md5sum | cut -d' ' -f1)
rm -f "$WORK/chunk" "$WORK/pattern"

r=$WORK/initramfs
rm -rf "$r"; mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,mnt,root,lib/modules}
install -m 755 "$WORK/busybox/bin/busybox" "$r/bin/busybox"
install -m 755 "$here/init.sh" "$r/init"
printf 'bench_sha256=%s\nbench_md5=%s\n' "$bench_sha256" "$bench_md5" > "$r/etc/bench.expected"
mknod -m 600 "$r/dev/console" c 5 1
find "$r" -exec touch -h -d "@$FIXED_EPOCH" {} +
(cd "$r" && find . -mindepth 1 | sort | cpio -o -H newc -R 0:0 --reproducible --quiet | gzip -9n) > "$out/initramfs.cpio.gz"
echo "initramfs.cpio.gz: $(stat -c %s "$out/initramfs.cpio.gz") bytes"

# ---------------------------------------------------------------------------------------------
step "5. ext2 test disk"
d=$WORK/diskroot; rm -rf "$d"; mkdir -p "$d"
echo "hello from virtio-blk" > "$d/hello.txt"
# blob.bin: 4 MiB; bytes [32i, 32i+32) = SHA-256("tci64-blob-v1:" || i as 8-byte little endian)
python3 - "$d/blob.bin" <<'EOF'
import hashlib, sys
with open(sys.argv[1], "wb") as f:
    for i in range(4 * 1024 * 1024 // 32):
        f.write(hashlib.sha256(b"tci64-blob-v1:" + i.to_bytes(8, "little")).digest())
EOF
(cd "$d" && sha256sum blob.bin > blob.sha256)
install -m 644 "$d/blob.sha256" "$out/disk.sha256"
find "$d" -exec touch -h -d "@$FIXED_EPOCH" {} +
img=$WORK/extra/disk.ext2
rm -f "$img"
E2FSPROGS_FAKE_TIME=$FIXED_EPOCH run mke2fs -q -F -t ext2 -b 4096 -L guestdisk \
  -U 4d0e6f2a-1c3b-4b5a-9e8d-7f6a5b4c3d2e -E root_owner=0:0,hash_seed=5b3e1d0a-2f4c-4e6b-8a9c-0d1e2f3a4b5c \
  -d "$d" "$img" 16M >/dev/null
# mke2fs -d copies each file's ctime, which touch cannot set: pin it as well.
for f in hello.txt blob.bin blob.sha256; do
  E2FSPROGS_FAKE_TIME=$FIXED_EPOCH debugfs -w -R "set_inode_field /$f ctime @$FIXED_EPOCH" "$img" 2>/dev/null
done
gzip -9n -c "$img" > "$out/disk.ext2.gz"
echo "disk.ext2: $(stat -c %s "$img") bytes ($(stat -c %s "$out/disk.ext2.gz") gzipped), blob.bin sha256 $(cut -d' ' -f1 "$out/disk.sha256")"

# ---------------------------------------------------------------------------------------------
step "6. checksums"
(cd "$out" && sha256sum tiny.bzImage initramfs.cpio.gz disk.ext2.gz disk.sha256 tiny.config init.sh > SHA256SUMS)
cat "$out/SHA256SUMS"
ok=1
for f in "${!WANT[@]}"; do
  if [ "$f" = disk.ext2 ]; then got=$(sha256sum < "$img" | cut -d' ' -f1)
  elif [ -f "$out/$f" ]; then got=$(sha256sum < "$out/$f" | cut -d' ' -f1)
  else got=$(sha256sum < "$here/$f" | cut -d' ' -f1); fi
  if [ "$got" = "${WANT[$f]}" ]; then echo "MATCH    $f"; else echo "DIFFERS  $f: $got (known: ${WANT[$f]})"; ok=0; fi
done
[ $ok = 1 ] && echo "all artifacts byte-identical to the known-good ones" \
  || echo "some artifacts differ (other Debian package versions?); see above"
echo "done: artifacts in $out, extras (full .config, System.map, disk.ext2) in $WORK/extra"
