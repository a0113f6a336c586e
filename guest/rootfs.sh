#!/usr/bin/env bash
# Builds kumo's ext4 root disk from Debian trixie's riscv64 busybox-static: busybox with its
# applet links, busybox init with guest/rootfs/inittab, whose rcS (guest/rootfs/rcS) mounts the
# kernel file systems, takes a DHCP lease on eth0 (busybox udhcpc with
# guest/rootfs/udhcpc.script) and prints KUMO-ROOTFS-OK; init then offers a console shell, and
# poweroff/reboot go through init (sync, remount read-only). The default guest's initramfs
# switch_roots to it when the kernel command line has root=, e.g.
#   kumo run --default-guest --disk path=rootfs.ext4 --append "console=ttyS0 root=/dev/vda"
#
# Usage: guest/rootfs.sh [--out DIR] [--size MiB] [--quiet]
#   --out DIR    build into DIR instead of the cache spot (tests use this)
#   --size MiB   size of the image (default 64; the file is sparse)
#   --quiet      print only the result path (and errors)
#
# Result (default DIR = ${XDG_CACHE_HOME:-$HOME/.cache}/kumo/guest/debian-trixie-rootfs):
#   DIR/rootfs.ext4   the file system (tests that write to it should use a copy)
#   DIR/VERSION       "busybox PACKAGE VERSION"
#   DIR/RECIPE        hash of the recipe (this script, guest/rootfs/* and guest/kumo-agent)
#
# The package comes from the same private apt setup and cache as guest/debian-image.sh: this
# script runs that one first (it resolves, downloads and verifies the pinned packages) and uses
# the cached busybox-static .deb it names. No root is needed: mkfs.ext4 -d fills the image from
# a directory. Work happens in a temporary directory renamed into place when complete.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/kumo
out=
size=64
quiet=0

die() {
	echo "rootfs: $*" >&2
	exit 1
}
say() {
	[ "$quiet" -eq 1 ] || echo "rootfs: $*" >&2
}

while [ $# -gt 0 ]; do
	case "$1" in
	--out)
		[ $# -ge 2 ] || die "--out needs a directory"
		out=$2
		shift 2
		;;
	--out=*) out=${1#--out=}; shift ;;
	--size)
		[ $# -ge 2 ] || die "--size needs a number of MiB"
		size=$2
		shift 2
		;;
	--size=*) size=${1#--size=}; shift ;;
	--quiet | -q) quiet=1; shift ;;
	-h | --help)
		sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*) die "unknown argument '$1' (try --help)" ;;
	esac
done
[[ "$size" =~ ^[0-9]+$ ]] && [ "$size" -ge 8 ] && [ "$size" -le 65536 ] ||
	die "--size '$size' is not a number of MiB between 8 and 65536"

target=${out:-$cache/guest/debian-trixie-rootfs}
recipe=$( (cat "$here/rootfs.sh" "$here/rootfs/rcS" "$here/rootfs/inittab" "$here/rootfs/udhcpc.script" "$here/kumo-agent"
	echo "$size") 2>/dev/null |
	sha256sum | cut -d' ' -f1) || die "cannot read the recipe files in $here"

print_result() {
	echo "rootfs:    $target/rootfs.ext4"
	echo "version:   $(head -n1 "$target/VERSION")"
}

for tool in mkfs.ext4 dpkg-deb sha256sum; do
	command -v "$tool" >/dev/null 2>&1 || die "'$tool' is missing (run 'make deps')"
done

# The packages: debian-image.sh pins and caches them (and is a no-op when its image is current).
bash "$here/debian-image.sh" --quiet >/dev/null || die "guest/debian-image.sh failed (see its message above)"
pinned=$cache/debs/packages
read -r bpkg bver < <(grep '^busybox-static ' "$pinned" 2>/dev/null) || die "no busybox-static in $pinned"
deb=$cache/debs/${bpkg}_${bver//:/%3a}_riscv64.deb
[ -s "$deb" ] || die "$deb is missing"

if [ -s "$target/rootfs.ext4" ] && [ "$(cat "$target/RECIPE" 2>/dev/null)" = "$recipe" ] &&
	[ "$(cat "$target/VERSION" 2>/dev/null)" = "busybox $bpkg $bver" ]; then
	print_result
	exit 0
fi

mkdir -p "$(dirname "$target")" || die "cannot create $(dirname "$target")"
work=$(mktemp -d "$(dirname "$target")/.$(basename "$target").tmp.XXXXXX") ||
	die "cannot create a temporary directory next to $target"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

say "unpacking $bpkg $bver"
dpkg-deb -x "$deb" "$work/busybox" || die "cannot unpack $deb"
root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc/udhcpc,proc,sys,dev,tmp,run,root,mnt,var/log}
bb=
for p in usr/bin/busybox bin/busybox; do
	[ -f "$work/busybox/$p" ] && bb=$work/busybox/$p && break
done
[ -n "$bb" ] || die "$bpkg has no busybox binary"
install -m 0755 "$bb" "$root/bin/busybox"

# Applet links: from the riscv64 busybox itself when the host can run it (qemu-user), otherwise
# from a fixed list of the applets init and rcS need (rcS installs the rest with
# busybox --install at the first boot).
applets=
if command -v qemu-riscv64 >/dev/null 2>&1; then
	applets=$(qemu-riscv64 "$root/bin/busybox" --list-full 2>/dev/null || true)
fi
if [ -z "$applets" ]; then
	applets=$(printf '%s\n' bin/sh bin/mount bin/umount bin/mkdir bin/cat bin/echo bin/hostname \
		bin/ip bin/ls bin/cp bin/mv bin/rm bin/sync bin/sleep bin/mountpoint bin/cut bin/awk \
		sbin/udhcpc sbin/poweroff sbin/reboot sbin/halt bin/setsid bin/cttyhack usr/bin/wget \
		usr/sbin/httpd bin/nc)
fi
while read -r a; do
	[ -n "$a" ] && [ ! -e "$root/$a" ] || continue
	mkdir -p "$root/$(dirname "$a")"
	ln -s /bin/busybox "$root/$a"
done <<<"$applets"

# busybox init (the /sbin/init applet link) runs rcS, then a console shell (inittab).
[ -L "$root/sbin/init" ] || ln -s /bin/busybox "$root/sbin/init"
mkdir -p "$root/etc/init.d"
install -m 0755 "$here/rootfs/rcS" "$root/etc/init.d/rcS"
install -m 0644 "$here/rootfs/inittab" "$root/etc/inittab"
printf '%s\n' 'export PATH=/sbin:/usr/sbin:/bin:/usr/bin' 'export HOME=/root' "export PS1='kumo:\\w# '" \
	>"$root/etc/profile"
install -m 0755 "$here/rootfs/udhcpc.script" "$root/etc/udhcpc/default.script"
install -m 0755 "$here/kumo-agent" "$root/sbin/kumo-agent"
echo kumo >"$root/etc/hostname"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
printf '127.0.0.1\tlocalhost\n' >"$root/etc/hosts"
: >"$root/etc/resolv.conf"
echo "busybox $bver" >"$root/etc/kumo-rootfs"
mkdir -p "$root/var/www"
echo "kumo guest httpd" >"$root/var/www/index.html"

mkdir -p "$work/out"
img=$work/out/rootfs.ext4
truncate -s "${size}M" "$img" || die "cannot create $img"
# A fixed UUID and hash seed: the same tree gives the same file system layout.
mkfs.ext4 -q -F -L kumo-root -U 6b756d6f-726f-4f74-8000-000000000001 \
	-E root_owner=0:0,hash_seed=6b756d6f-6861-4f73-8000-000000000001 \
	-d "$root" "$img" || die "mkfs.ext4 failed"
printf 'busybox %s %s\n' "$bpkg" "$bver" >"$work/out/VERSION"
echo "$recipe" >"$work/out/RECIPE"

if [ -e "$target" ]; then
	mv "$target" "$work/old" || die "cannot move the old $target aside"
fi
mv "$work/out" "$target" || die "cannot move the new image to $target"
say "done"
print_result
