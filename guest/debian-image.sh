#!/usr/bin/env bash
# Builds kumo's default guest from Debian trixie's riscv64 archive: the Debian kernel (vmlinux) and
# a busybox initramfs holding the virtio/ext4 modules and guest/init.
#
# Usage: guest/debian-image.sh [--out DIR] [--refresh] [--quiet]
#   --out DIR   build into DIR instead of the cache spot (tests use this)
#   --refresh   ask the archive for the newest kernel even when a complete image is cached
#   --quiet     print only the result paths (and errors)
#
# Result (default DIR = ${XDG_CACHE_HOME:-$HOME/.cache}/kumo/guest/debian-trixie):
#   DIR/vmlinux             the kernel: a RISC-V Image with an EFI stub header, loaded at RAM + 0x200000
#   DIR/initramfs.cpio.gz   busybox + modules + /init
#   DIR/VERSION             "kernel PACKAGE VERSION" and "busybox PACKAGE VERSION" lines
#   DIR/RECIPE              hash of the recipe (this script, guest/init, guest/kumo-agent,
#                           guest/mkcpio.py)
#
# apt-get runs with a private configuration (sources.list, lists and package cache under
# .../kumo/apt), so no root is needed and the host's apt setup is untouched; apt verifies the
# archive's signatures and the packages' hashes. Work happens in a temporary directory next to
# the target, renamed into place only when complete, so an interrupted run never leaves a corrupt
# entry. With everything cached and the recipe unchanged, a run only prints the paths.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/kumo
suite=trixie
mirror=${KUMO_DEBIAN_MIRROR:-http://deb.debian.org/debian}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
# Modules the guest needs; dependencies are added by modprobe --show-depends. Built-in ones are skipped.
modules=(virtio_mmio virtio_blk virtio_net virtio_rng virtio_balloon virtio_console ext4)

out=
refresh=0
quiet=0

die() {
	echo "debian-image: $*" >&2
	exit 1
}
say() {
	[ "$quiet" -eq 1 ] || echo "debian-image: $*" >&2
}

while [ $# -gt 0 ]; do
	case "$1" in
	--out)
		[ $# -ge 2 ] || die "--out needs a directory"
		out=$2
		shift 2
		;;
	--out=*)
		out=${1#--out=}
		shift
		;;
	--refresh)
		refresh=1
		shift
		;;
	--quiet | -q)
		quiet=1
		shift
		;;
	-h | --help)
		sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*) die "unknown argument '$1' (try --help)" ;;
	esac
done

target=${out:-$cache/guest/debian-$suite}
recipe=$(cat "$here/debian-image.sh" "$here/init" "$here/kumo-agent" "$here/mkcpio.py" 2>/dev/null | sha256sum | cut -d' ' -f1) ||
	die "cannot read the recipe files in $here"

print_result() {
	echo "kernel:    $target/vmlinux"
	echo "initramfs: $target/initramfs.cpio.gz"
	echo "version:   $(head -n1 "$target/VERSION")"
}

is_complete() { # dir
	[ -s "$1/vmlinux" ] && [ -s "$1/initramfs.cpio.gz" ] && [ -s "$1/VERSION" ] &&
		[ "$(cat "$1/RECIPE" 2>/dev/null)" = "$recipe" ]
}

if [ "$refresh" -eq 0 ] && is_complete "$target"; then
	print_result
	exit 0
fi

# One builder at a time per cache (apt's lists and the .deb cache are shared); a run that waited
# may find the work done.
mkdir -p "$cache" || die "cannot create $cache"
if command -v flock >/dev/null 2>&1; then
	exec 9>"$cache/.lock"
	flock 9 || die "cannot lock $cache/.lock"
	if [ "$refresh" -eq 0 ] && is_complete "$target"; then
		print_result
		exit 0
	fi
fi
trap 'die "unexpected failure at line $LINENO: $BASH_COMMAND"' ERR

for tool in apt-get apt-cache dpkg-deb depmod modprobe python3 sha256sum; do
	command -v "$tool" >/dev/null 2>&1 || die "'$tool' is missing (run 'make deps')"
done
[ -r "$keyring" ] || die "$keyring is missing (install debian-archive-keyring)"
for f in init kumo-agent mkcpio.py; do
	[ -r "$here/$f" ] || die "$here/$f is missing"
done

# --- apt with a private configuration -------------------------------------------------------
aptdir=$cache/apt
debdir=$cache/debs
mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial" "$debdir" ||
	die "cannot create $aptdir"
echo "deb [arch=riscv64 signed-by=$keyring] $mirror $suite main" >"$aptdir/sources.list.new"
mv "$aptdir/sources.list.new" "$aptdir/sources.list"
: >"$aptdir/status"
apt_opts=(
	-oAPT::Architecture="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
	-oAPT::Architectures=riscv64
	-oDir::State::Lists="$aptdir/lists"
	-oDir::State::status="$aptdir/status"
	-oDir::Cache="$aptdir/cache"
	-oDir::Etc::SourceList="$aptdir/sources.list"
	-oDir::Etc::SourceParts=/dev/null
	-oDir::Etc::Preferences=/dev/null
	-oDir::Etc::PreferencesParts=/dev/null
	-oAPT::Sandbox::User="$(id -un)"
	-oDebug::NoLocking=true
)

# The packages we need, "NAME VERSION" per line, remembered so a recipe change (new init) can
# rebuild from the cached .debs without the network.
pinned=$debdir/packages
resolve() {
	say "updating the package lists of Debian $suite (riscv64)"
	local rc=0 problem
	apt-get "${apt_opts[@]}" -q update >"$aptdir/update.log" 2>&1 || rc=$?
	# apt-get update exits 0 when a fetch or a signature check fails ("W: Failed to fetch",
	# "W: GPG error"), keeping old lists: treat those as errors too.
	problem=$(grep -m1 -E '^E: |^W: (Failed to fetch|GPG error|.*not signed|.*signature)' "$aptdir/update.log" || true)
	if [ "$rc" -ne 0 ] || [ -n "$problem" ]; then
		die "apt-get update failed: ${problem:-exit status $rc} (log: $aptdir/update.log)"
	fi
	local kpkg kver bver
	kpkg=$(apt-cache "${apt_opts[@]}" depends linux-image-riscv64:riscv64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^ :]*\).*/\1/p' | head -n1 || true)
	[ -n "$kpkg" ] || die "cannot resolve linux-image-riscv64 to a versioned kernel package"
	kver=$(apt-cache "${apt_opts[@]}" show --no-all-versions "$kpkg:riscv64" 2>/dev/null |
		sed -n 's/^Version: //p' | head -n1 || true)
	bver=$(apt-cache "${apt_opts[@]}" show --no-all-versions busybox-static:riscv64 2>/dev/null |
		sed -n 's/^Version: //p' | head -n1 || true)
	[ -n "$kver" ] && [ -n "$bver" ] || die "cannot find the versions of $kpkg and busybox-static"
	printf '%s %s\n%s %s\n' "$kpkg" "$kver" busybox-static "$bver" >"$pinned.new"
	mv "$pinned.new" "$pinned"
}

deb_path() { # name version -> cached .deb path (apt's file naming: ':' in versions becomes %3a)
	echo "$debdir/${1}_${2//:/%3a}_riscv64.deb"
}

fetch_debs() {
	local name ver dl
	while read -r name ver; do
		[ -s "$(deb_path "$name" "$ver")" ] && continue
		say "downloading $name $ver"
		dl=$(mktemp -d "$debdir/.dl.XXXXXX")
		# apt-get download checks the hash against the signed Release/Packages files.
		if ! (cd "$dl" && apt-get "${apt_opts[@]}" download "$name:riscv64=$ver"); then
			rm -rf "$dl"
			die "downloading $name $ver failed"
		fi
		mv "$dl"/*.deb "$(deb_path "$name" "$ver")" || {
			rm -rf "$dl"
			die "apt-get download of $name left no .deb"
		}
		rm -rf "$dl"
	done <"$pinned"
}

need_resolve=$refresh
[ -s "$pinned" ] || need_resolve=1
if [ "$need_resolve" -eq 0 ]; then
	while read -r name ver; do
		[ -s "$(deb_path "$name" "$ver")" ] || need_resolve=1
	done <"$pinned"
fi
if [ "$need_resolve" -eq 1 ]; then resolve; fi
fetch_debs

read -r kpkg kver < <(sed -n 1p "$pinned")
read -r bpkg bver < <(sed -n 2p "$pinned")

# --- build in a temporary directory next to the target --------------------------------------
mkdir -p "$(dirname "$target")" || die "cannot create $(dirname "$target")"
work=$(mktemp -d "$(dirname "$target")/.$(basename "$target").tmp.XXXXXX") ||
	die "cannot create a temporary directory next to $target"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

say "unpacking $kpkg $kver"
dpkg-deb -x "$(deb_path "$kpkg" "$kver")" "$work/kernel" || die "cannot unpack $kpkg"
dpkg-deb -x "$(deb_path "$bpkg" "$bver")" "$work/busybox" || die "cannot unpack $bpkg"

vmlinux=$(ls "$work"/kernel/boot/vmlinux-* 2>/dev/null | head -n1 || true)
[ -n "$vmlinux" ] || die "$kpkg has no /boot/vmlinux-*"
kabi=${vmlinux##*/vmlinux-}
# trixie ships modules under /usr/lib/modules; depmod and modprobe look under DIR/lib/modules.
if [ -d "$work/kernel/usr/lib/modules/$kabi" ] && [ ! -e "$work/kernel/lib" ]; then
	ln -s usr/lib "$work/kernel/lib"
fi
kmods=$work/kernel/lib/modules/$kabi
[ -d "$kmods" ] || die "$kpkg has no modules directory for $kabi"
depmod -b "$work/kernel" "$kabi" || die "depmod failed for $kabi"

root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,root,lib/modules/"$kabi"}

# Modules in load order: modprobe prints "insmod PATH" for each dependency first, "builtin NAME"
# for built-in ones.
: >"$work/order"
for m in "${modules[@]}"; do
	deps=$(modprobe -d "$work/kernel" -S "$kabi" --show-depends "$m" 2>&1) ||
		die "modprobe cannot resolve $m: $deps"
	while read -r kind path _; do
		[ "$kind" = insmod ] || continue
		rel=${path#"$kmods"/}
		grep -qxF "$rel" "$work/order" || echo "$rel" >>"$work/order"
	done <<<"$deps"
done
while read -r rel; do
	mkdir -p "$root/lib/modules/$kabi/$(dirname "$rel")"
	cp "$kmods/$rel" "$root/lib/modules/$kabi/$rel"
done <"$work/order"
cp "$kmods"/modules.order "$kmods"/modules.builtin "$kmods"/modules.builtin.modinfo "$root/lib/modules/$kabi/" 2>/dev/null || true
depmod -b "$root" "$kabi" || die "depmod failed on the initramfs tree"
cp "$work/order" "$root/lib/modules/$kabi/kumo.load-order"
say "$(wc -l <"$work/order") modules: $(sed 's#.*/##; s/\.ko.*//' "$work/order" | tr '\n' ' ')"

bb=
for p in usr/bin/busybox bin/busybox; do
	[ -f "$work/busybox/$p" ] && bb=$work/busybox/$p && break
done
[ -n "$bb" ] || die "$bpkg has no busybox binary"
cp "$bb" "$root/bin/busybox"
chmod 0755 "$root/bin/busybox"
# Applet links: ask the riscv64 busybox itself when the host can run it (qemu-user); otherwise
# /init installs them at boot with busybox --install.
if command -v qemu-riscv64 >/dev/null 2>&1 &&
	applets=$(qemu-riscv64 "$root/bin/busybox" --list-full 2>/dev/null) && [ -n "$applets" ]; then
	while read -r a; do
		[ -n "$a" ] && [ ! -e "$root/$a" ] || continue
		mkdir -p "$root/$(dirname "$a")"
		ln -s /bin/busybox "$root/$a"
	done <<<"$applets"
fi
install -m 0755 "$here/init" "$root/init"
install -m 0755 "$here/kumo-agent" "$root/sbin/kumo-agent"
echo kumo >"$root/etc/hostname"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"

mkdir -p "$work/out"
python3 "$here/mkcpio.py" --dev console:c:5:1:0600 --dev null:c:1:3:0666 \
	"$root" "$work/out/initramfs.cpio.gz" || die "building the initramfs failed"
cp "$vmlinux" "$work/out/vmlinux"
printf 'kernel %s %s\nbusybox %s %s\nkabi %s\n' "$kpkg" "$kver" "$bpkg" "$bver" "$kabi" >"$work/out/VERSION"
echo "$recipe" >"$work/out/RECIPE"

# Swap into place: the old entry (if any) moves aside first, so the target path only ever names
# a complete image.
if [ -e "$target" ]; then
	old="$work/old"
	mv "$target" "$old" || die "cannot move the old $target aside"
fi
mv "$work/out" "$target" || die "cannot move the new image to $target"
say "done"
print_result
