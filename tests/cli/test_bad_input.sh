#!/usr/bin/env bash
# Bad input to `kumo run`: each case must print exactly one line on stderr that explains the
# problem, exit with status 1 (never a signal, never 0), and start no guest.
set -uo pipefail
cd "$(dirname "$0")/../.."
KUMO=${KUMO_BIN:-$PWD/build/kumo}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The Debian kernel (fetched once into the cache) for the truncation and size cases.
bash guest/debian-image.sh --quiet >/dev/null 2>&1
vmlinux=${XDG_CACHE_HOME:-$HOME/.cache}/kumo/guest/debian-trixie/vmlinux

# case NAME EXPECTED-REGEX -- ARGS...
check() {
	local name=$1 want=$2
	shift 3
	local err rc lines
	err=$(timeout 30 "$KUMO" run "$@" </dev/null 2>&1 >/dev/null)
	rc=$?
	lines=$(printf '%s\n' "$err" | grep -c .)
	if [ "$rc" -ne 1 ]; then
		echo "not ok - $name: exit status $rc, want 1 (stderr: $err)"
	elif [ "$lines" -ne 1 ]; then
		echo "not ok - $name: $lines lines on stderr, want 1: $err"
	elif ! printf '%s\n' "$err" | grep -Eq "^kumo: .*($want)"; then
		echo "not ok - $name: message '$err' does not match /$want/"
	else
		echo "ok - $name ($err)"
	fi
}

printf 'hello, not a kernel\n' >"$tmp/text"
: >"$tmp/empty"
head -c 64 /dev/urandom >"$tmp/random"
check "missing kernel file" "No such file" -- --kernel "$tmp/nope"
check "empty kernel file" "not a RISC-V Linux kernel" -- --kernel "$tmp/empty"
check "text file as kernel" "not a RISC-V Linux kernel" -- --kernel "$tmp/text"
check "random bytes as kernel" "not a RISC-V Linux kernel" -- --kernel "$tmp/random"
check "x86-64 ELF as kernel" "not for RISC-V" -- --kernel /bin/true
check "directory as kernel" "not a regular file" -- --kernel /tmp
if [ -f "$vmlinux" ]; then
	head -c 1000000 "$vmlinux" >"$tmp/truncated"
	check "truncated kernel" "truncated" -- --kernel "$tmp/truncated"
	check "kernel larger than RAM" "does not fit|raise --mem" -- --kernel "$vmlinux" --mem 16M
	check "missing initrd" "No such file" -- --kernel "$vmlinux" --initrd "$tmp/nope"
else
	echo "not ok - truncated kernel: no Debian kernel at $vmlinux (guest/debian-image.sh failed)"
fi
check "missing bios" "No such file" -- --bios "$tmp/nope"
check "empty bios" "empty" -- --bios "$tmp/empty"
check "no kernel at all" "nothing to boot" --
check "mem zero" "impossible|not a size" -- --kernel "$tmp/text" --mem 0
check "mem too small" "impossible" -- --kernel "$tmp/text" --mem 1M
check "mem junk" "not a size" -- --kernel "$tmp/text" --mem lots
check "mem beyond host" "more than this host|impossible" -- --kernel "$tmp/text" --mem 900G
check "mem overflow" "not a size" -- --kernel "$tmp/text" --mem 99999999999999999999G
check "cpus zero" "out of range" -- --kernel "$tmp/text" --cpus 0
check "cpus over the limit" "out of range" -- --kernel "$tmp/text" --cpus 65
check "cpus junk" "out of range" -- --kernel "$tmp/text" --cpus two
check "agent junk" "--agent 'maybe' is not auto, on or off" -- --kernel "$tmp/text" --agent maybe
check "agent empty" "is not auto, on or off" -- --kernel "$tmp/text" --agent ""
check "agent with restore" "cannot be combined with --restore" -- --restore "$tmp" --agent off
truncate -s 1M "$tmp/disk"
check "agent on without a free virtio slot" "too many virtio devices" -- --kernel "$tmp/text" --agent on \
	$(for i in 1 2 3 4 5 6 7 8; do printf -- '--disk path=%s,readonly=on ' "$tmp/disk"; done)
check "unknown option" "unknown option|unrecognized" -- --frobnicate
check "stray argument" "unexpected argument" -- --kernel "$tmp/text" extra

# The default guest must be refused cleanly when the cache is empty.
err=$(XDG_CACHE_HOME=$tmp/nocache timeout 10 "$KUMO" run --default-guest </dev/null 2>&1 >/dev/null)
rc=$?
if [ "$rc" -eq 1 ] && printf '%s' "$err" | grep -q "kumo image pull"; then
	echo "ok - default guest missing"
else
	echo "not ok - default guest missing: status $rc: $err"
fi
