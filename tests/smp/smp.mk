# SMP guest test program (tests/smp/test_smp.py): a static riscv64 Linux binary built with
# Debian's cross gcc; the test packs it into an extra initramfs archive at run time.
SMP_CROSS ?= riscv64-linux-gnu-
SMP_PROGS := $(BUILD)/smp/atomics

$(BUILD)/smp/%: tests/smp/%.c
	@mkdir -p $(@D)
	$(SMP_CROSS)gcc -O2 -static -pthread -march=rv64gc -mabi=lp64d -Wall -Wextra -Werror -o $@ $<

test-programs: $(SMP_PROGS)
