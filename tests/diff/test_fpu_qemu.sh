#!/usr/bin/env bash
# Cross-checks kumo's FPU (src/accel/rv64/fpu.c) against qemu-riscv64: random F/D instructions
# (all rounding modes, specials, ties, boxing) run natively under qemu-user and through
# rv64_fpu_exec; one TAP line per instruction. Programs: tests/diff/fpu_qemu.c, fpu.mk.
# Environment: KUMO_FPU_SEED (default 1), KUMO_FPU_CASES (default 40000).
set -uo pipefail
cd "$(dirname "$0")/../.."

build=${BUILD:-build}
host=$build/tests/diff/fpu-qemu-host
rv=$build/tests/diff/fpu-qemu-rv64
seed=${KUMO_FPU_SEED:-1}
cases=${KUMO_FPU_CASES:-40000}

if ! command -v qemu-riscv64 >/dev/null || ! command -v riscv64-linux-gnu-gcc >/dev/null; then
	echo "ok - fpu vs qemu # SKIP qemu-riscv64 or riscv64-linux-gnu-gcc not installed"
	exit 0
fi
if ! make -s "$host" "$rv" >/dev/null; then
	echo "not ok - fpu vs qemu: building $host and $rv failed"
	exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "# seed $seed, $cases cases"
"$host" gen "$cases" "$seed" >"$tmp/cases" || { echo "not ok - fpu vs qemu: gen failed"; exit 1; }
if ! qemu-riscv64 "$rv" <"$tmp/cases" >"$tmp/qemu.out"; then
	echo "not ok - fpu vs qemu: qemu-riscv64 run failed"
	exit 1
fi
"$host" compare "$tmp/cases" "$tmp/qemu.out"
