#!/usr/bin/env bash
# `make bench`: kumo and QEMU TCG side by side on the same Debian guest in the same run: boot time
# and idle cost (bench/boot.py), guest workloads (bench/workloads.py), virtio I/O, networking and
# SMP (bench/io.py), then snapshots (bench/snapshot_bench.py) and pool placement
# (bench/pool_bench). Each script documents its environment variables (BENCH_RUNS,
# BENCH_TIMEOUT, BENCH_IDLE, KUMO_BIN, QEMU_BIN, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

export KUMO_ROOT=$PWD
mkdir -p build/bench
if [ -z "${KUMO_BIN:-}" ]; then
	export KUMO_BIN=$PWD/build/kumo
	# Build only the VMM; a failed build still lets QEMU's column be measured.
	if ! make -s -j"$(nproc)" build/kumo >build/bench-build.log 2>&1; then
		echo "bench: building build/kumo failed (log: build/bench-build.log)" >&2
	fi
fi
command -v qemu-system-riscv64 >/dev/null 2>&1 || [ -n "${QEMU_BIN:-}" ] || {
	echo "bench: qemu-system-riscv64 is missing (run 'make deps')" >&2
	exit 1
}
# BENCH_PARTS (comma-separated) picks parts: boot, workloads, io (or disk, net, smp), snapshot,
# pool; empty runs everything. The report goes to stdout and build/bench/latest.md, which
# starts empty here and gets one section per part.
: >build/bench/latest.md
want() {
	[ -z "${BENCH_PARTS:-}" ] && return 0
	local p
	for p in ${BENCH_PARTS//,/ }; do
		case "$p" in "$1" | "${2-}" | "${3-}" | "${4-}") return 0 ;; esac
	done
	return 1
}
status=0
if want boot; then
	python3 bench/boot.py || { echo "bench: the boot benchmark failed" >&2; status=1; }
fi
if want workloads; then
	python3 bench/workloads.py || { echo "bench: the guest workload suite failed (reason above)" >&2; status=1; }
fi
if want io disk net smp; then
	python3 bench/io.py || { echo "bench: the I/O and SMP benchmark failed (reason above)" >&2; status=1; }
fi
if want snapshot; then
	python3 bench/snapshot_bench.py | tee -a build/bench/latest.md || { echo "bench: snapshot_bench failed" >&2; status=1; }
fi
if want pool; then
	if make -s build/bench/pool_bench >>build/bench-build.log 2>&1; then
		build/bench/pool_bench | tee -a build/bench/latest.md || { echo "bench: pool_bench failed" >&2; status=1; }
	else
		echo "bench: building pool_bench failed (log: build/bench-build.log)" >&2
		status=1
	fi
fi
exit $status
