#!/usr/bin/env bash
# fetch-debian-kernel.sh: Debian's stock kernel, fetched the way a user would, for the tests and
# benchmarks that boot it. Into .cache/debian/ at the repository root (git-ignored):
#   vmlinuz            /boot/vmlinuz-* of the package that linux-image-amd64 depends on today
#   initramfs.cpio.gz  the bundled guest's initramfs (guest/initramfs.cpio.gz: busybox + /init)
#                      plus that package's virtio, virtio-mmio, virtio-pci, virtio-blk and ext4
#                      modules, listed in /lib/modules/load-order (the guest's /init insmods them)
#   version            "PACKAGE VERSION", e.g. "linux-image-6.1.0-57-amd64 6.1.192-1"
# Any current Debian 12 (6.1) kernel will do: the tests read what they need from its header.
# Idempotent: nothing is downloaded when the cached version is the archive's candidate.
#   bash scripts/fetch-debian-kernel.sh [OUTDIR]
# Needs apt (as root, or sudo), cpio and kmod's depmod (installed here when missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-.cache/debian}
mkdir -p "$out"
sudo=; [ "$(id -u)" = 0 ] || sudo=sudo

candidate() {  # the kernel package linux-image-amd64 depends on, and its candidate version
  local p v
  p=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  [ -n "$p" ] || return 1
  v=$(apt-cache policy "$p" | awk '/Candidate:/{print $2}')
  [ -n "$v" ] && [ "$v" != "(none)" ] || return 1
  echo "$p $v"
}
want=$(candidate) || { $sudo apt-get update -q >/dev/null; want=$(candidate); } || {
  echo "fetch-debian-kernel: apt knows no linux-image-amd64 kernel package" >&2; exit 1; }
if [ -f "$out/version" ] && [ "$(cat "$out/version")" = "$want" ] &&
   [ -s "$out/vmlinuz" ] && [ -s "$out/initramfs.cpio.gz" ]; then
  echo "fetch-debian-kernel: $want (cached in $out)"
  exit 0
fi
kpkg=${want% *}
kdebver=${want#* }
kver=${kpkg#linux-image-}
echo "fetch-debian-kernel: $want -> $out"

command -v cpio >/dev/null && { command -v depmod >/dev/null || [ -x /sbin/depmod ]; } ||
  $sudo apt-get install -y -q cpio kmod >/dev/null
depmod=$(command -v depmod || echo /sbin/depmod)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -q -o APT::Sandbox::User=root "$kpkg=$kdebver" >/dev/null)
dpkg-deb -x "$work"/*.deb "$work/pkg"
mods=$work/pkg/lib/modules/$kver
[ -d "$mods" ] || { echo "fetch-debian-kernel: $kpkg has no lib/modules/$kver" >&2; exit 1; }
"$depmod" -b "$work/pkg" "$kver"   # the package ships no modules.dep

# The modules the guest needs, dependencies first (what modprobe would load). ext4 mounts the
# ext2 test disk (CONFIG_EXT4_USE_FOR_EXT2); crc32c_generic is ext4's softdep.
declare -A path deps
while IFS= read -r line; do
  m=${line%%:*}; n=$(basename "$m"); n=${n%%.ko*}; n=${n//-/_}
  path[$n]=$m; d=""
  for x in ${line#*:}; do b=$(basename "$x"); b=${b%%.ko*}; d="$d ${b//-/_}"; done
  deps[$n]=$d
done < "$mods/modules.dep"
order=()
add() {
  local m=$1 i
  [ -n "${path[$m]:-}" ] || { echo "fetch-debian-kernel: module $m not in $kpkg" >&2; exit 1; }
  case " ${order[*]:-} " in *" $m "*) return ;; esac
  local ds=(${deps[$m]})
  for ((i = ${#ds[@]} - 1; i >= 0; i--)); do add "${ds[i]}"; done
  order+=("$m")
}
for m in virtio_mmio virtio_pci virtio_blk crc32c_generic ext4; do add "$m"; done

root=$work/root
mkdir -p "$root"
(cd "$root" && gzip -dc "$OLDPWD/guest/initramfs.cpio.gz" | cpio -idm --quiet 2>/dev/null)
mkdir -p "$root/lib/modules"
: > "$root/lib/modules/load-order"
for m in "${order[@]}"; do
  src=$mods/${path[$m]}
  case "$src" in
    *.ko.xz) xz -dc "$src" > "$root/lib/modules/$m.ko" ;;
    *.ko.zst) zstd -qdc "$src" > "$root/lib/modules/$m.ko" ;;
    *) cp "$src" "$root/lib/modules/$m.ko" ;;
  esac
  echo "$m" >> "$root/lib/modules/load-order"
done
find "$root" -exec touch -h -d @1704067200 {} +
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -9n) \
  > "$work/initramfs.cpio.gz"

cp "$work/pkg/boot/vmlinuz-$kver" "$out/vmlinuz"
mv "$work/initramfs.cpio.gz" "$out/initramfs.cpio.gz"
echo "$want" > "$out/version"
echo "fetch-debian-kernel: vmlinuz $(stat -c %s "$out/vmlinuz") bytes; initramfs $(stat -c %s "$out/initramfs.cpio.gz") bytes; modules: ${order[*]}"
