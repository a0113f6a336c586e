#!/usr/bin/env bash
# `make bench`: boots the default Debian guest on kumo and on QEMU TCG, alternating, and prints a
# Markdown report (boot time to KUMO-INIT-OK, medians, kumo/QEMU ratio, idle CPU cost) on stdout
# and into build/bench/latest.md. See bench/boot.py for what is measured and the environment
# variables (BENCH_RUNS, BENCH_TIMEOUT, BENCH_IDLE, KUMO_BIN, QEMU_BIN).
set -euo pipefail
cd "$(dirname "$0")/.."

export KUMO_ROOT=$PWD
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
make -s build/bench/pool_bench >>build/bench-build.log 2>&1 && build/bench/pool_bench || echo "bench: pool_bench failed" >&2
python3 bench/snapshot_bench.py || echo "bench: snapshot_bench failed" >&2
python3 bench/workloads.py || echo "bench: the guest workload suite failed (reason above)" >&2
python3 bench/io.py || echo "bench: the I/O and SMP benchmark failed (reason above)" >&2
exec python3 bench/boot.py
