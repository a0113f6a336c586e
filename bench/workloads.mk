# Guest programs of the workload and I/O benchmarks (bench/workloads.py, bench/io.py): static
# riscv64 Linux binaries built with Debian's cross gcc; the scripts pack them into an extra
# initramfs archive appended to a copy of the default one.
BENCH_CROSS ?= riscv64-linux-gnu-
BENCH_WORKLOADS := $(patsubst bench/workloads/%.c,$(BUILD)/bench/workloads/%,$(wildcard bench/workloads/*.c))

$(BUILD)/bench/workloads/%: bench/workloads/%.c bench/workloads.mk
	@mkdir -p $(@D)
	$(BENCH_CROSS)gcc -O2 -static -pthread -march=rv64gc -mabi=lp64d -Wall -Wextra -Werror -o $@ $< -lm

.PHONY: bench-workloads
bench-workloads: $(BENCH_WORKLOADS)
