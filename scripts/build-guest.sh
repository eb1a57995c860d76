#!/usr/bin/env bash
# Builds the tiny test guest: a Debian cloud kernel and a busybox initramfs holding guest/init and
# guest/memtest. Usage: scripts/build-guest.sh [OUTDIR]   (default: .cache/guest under the repo)
# Outputs OUTDIR/vmlinuz, OUTDIR/initrd.img, OUTDIR/memtest (the same static verifier, to run on the host),
# OUTDIR/manifest.json. Skips the work when they are
# newer than guest/init, guest/memtest.c and this script. Downloads .deb files with apt-get download
# and unpacks them with dpkg-deb -x: nothing is installed. Needs apt, dpkg, gcc, libc6-dev, cpio, gzip.
# Safe to run concurrently: a lock in OUTDIR serialises builds.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-"$REPO/.cache/guest"}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
INPUTS=("$REPO/guest/init" "$REPO/guest/memtest.c" "$REPO/scripts/build-guest.sh")
# Loaded by /init in this order (there is no modules.dep in the initramfs).
MODULES=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
         failover net_failover virtio_net virtio_blk)

die() { echo "build-guest: $*" >&2; exit 1; }

for tool in apt-get apt-cache dpkg-deb gcc cpio gzip flock; do
  command -v "$tool" >/dev/null 2>&1 ||
    die "needs '$tool' (Debian packages: apt dpkg gcc libc6-dev cpio gzip util-linux), not found in PATH"
done

up_to_date() {
  local f i
  for f in vmlinuz initrd.img memtest manifest.json; do [ -s "$OUT/$f" ] || return 1; done
  for i in "${INPUTS[@]}"; do
    for f in vmlinuz initrd.img memtest manifest.json; do [ "$OUT/$f" -nt "$i" ] || return 1; done
  done
}

if up_to_date; then echo "build-guest: $OUT is up to date"; exit 0; fi

exec 9>"$OUT/.lock"
flock -w 300 9 || die "another build holds $OUT/.lock for more than 300 s"
# A concurrent build may have finished while this one waited for the lock.
if up_to_date; then echo "build-guest: $OUT is up to date"; exit 0; fi

START=$(date +%s%N)
# Leftovers of a build that was killed (this one holds the lock, so none is running).
rm -rf "$OUT"/work.*

# apt-get update takes the lists lock, which another apt may hold: retry, bounded.
apt_update() {
  local i
  for i in $(seq 1 20); do
    if DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null 2>&1; then return 0; fi
    echo "build-guest: apt-get update failed (attempt $i, apt lock held?), retrying in 5 s" >&2
    sleep 5
  done
  die "apt-get update failed 20 times"
}

kernel_package() {
  apt-cache depends linux-image-cloud-amd64 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}

KPKG=$(kernel_package || true)
UPDATED=0
if [ -z "$KPKG" ]; then
  apt_update; UPDATED=1
  KPKG=$(kernel_package || true)
  [ -n "$KPKG" ] || die "apt knows no kernel package that linux-image-cloud-amd64 depends on"
fi

DEBS="$OUT/debs"
mkdir -p "$DEBS"
# Download each package unless its .deb is already cached.
fetch() {
  local pkg=$1 i
  if compgen -G "$DEBS/${pkg}_*.deb" >/dev/null; then return 0; fi
  for i in 1 2 3; do
    if (cd "$DEBS" && apt-get download -q "$pkg" >/dev/null 2>&1); then return 0; fi
    if [ "$UPDATED" = 0 ]; then apt_update; UPDATED=1; else sleep 3; fi
  done
  die "apt-get download $pkg failed 3 times"
}
fetch "$KPKG"
fetch busybox-static
KDEB=$(ls -t "$DEBS/${KPKG}"_*.deb | head -n 1)
BDEB=$(ls -t "$DEBS"/busybox-static_*.deb | head -n 1)

WORK=$(mktemp -d "$OUT/work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
dpkg-deb -x "$KDEB" "$WORK/kernel"
dpkg-deb -x "$BDEB" "$WORK/busybox"

VMLINUZ=$(ls "$WORK"/kernel/boot/vmlinuz-* 2>/dev/null | head -n 1)
[ -n "$VMLINUZ" ] || die "no boot/vmlinuz-* in $KDEB"
KVER=${VMLINUZ##*/vmlinuz-}
MODDIR="$WORK/kernel/lib/modules/$KVER"

ROOT="$WORK/root"
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,mnt,www,etc,root,lib/modules/"$KVER"}
cp "$WORK/busybox/bin/busybox" "$ROOT/bin/busybox"
# Applet links (/bin/sh above all: /init is a shell script).
"$ROOT/bin/busybox" --list-full | while read -r applet; do
  [ "$applet" = bin/busybox ] && continue
  [ -e "$ROOT/$applet" ] || ln -s /bin/busybox "$ROOT/$applet"
done
[ -L "$ROOT/bin/sh" ] || die "busybox gave no bin/sh applet"

for m in "${MODULES[@]}"; do
  f=$(find "$MODDIR/kernel" -name "$m.ko" | head -n 1)
  if [ -n "$f" ]; then
    cp "$f" "$ROOT/lib/modules/$KVER/"
  elif ! grep -q "/$m.ko\$" "$MODDIR/modules.builtin"; then
    die "module $m is neither in $KDEB nor built into kernel $KVER"
  fi
done

gcc -static -O2 -Wall -Wextra -o "$ROOT/bin/memtest" "$REPO/guest/memtest.c"
cp "$REPO/guest/init" "$ROOT/init"
chmod 755 "$ROOT/init" "$ROOT/bin/memtest"
echo "root:x:0:0:root:/root:/bin/sh" > "$ROOT/etc/passwd"

(cd "$ROOT" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -6 > "$WORK/initrd.img"
cp "$VMLINUZ" "$WORK/vmlinuz"
cp "$ROOT/bin/memtest" "$WORK/memtest"

KBYTES=$(stat -c %s "$WORK/vmlinuz")
IBYTES=$(stat -c %s "$WORK/initrd.img")
KDEBVER=$(dpkg-deb -f "$KDEB" Version)
BBVER=$(dpkg-deb -f "$BDEB" Version)
MS=$(( ($(date +%s%N) - START) / 1000000 ))
cat > "$WORK/manifest.json" <<EOF
{
  "kernelPackage": "$KPKG",
  "kernelPackageVersion": "$KDEBVER",
  "kernelVersion": "$KVER",
  "busyboxVersion": "$BBVER",
  "vmlinuz": { "file": "vmlinuz", "bytes": $KBYTES },
  "initrd": { "file": "initrd.img", "bytes": $IBYTES },
  "memtest": { "file": "memtest", "bytes": $(stat -c %s "$WORK/memtest") },
  "modules": [$(printf '"%s",' "${MODULES[@]}" | sed 's/,$//')],
  "builtAt": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "buildMs": $MS
}
EOF
# Manifest last: its presence (and age) is what marks a complete build.
mv -f "$WORK/vmlinuz" "$OUT/vmlinuz"
mv -f "$WORK/initrd.img" "$OUT/initrd.img"
mv -f "$WORK/memtest" "$OUT/memtest"
mv -f "$WORK/manifest.json" "$OUT/manifest.json"
echo "build-guest: kernel $KVER, vmlinuz $KBYTES B, initrd $IBYTES B in $OUT ($MS ms)"
