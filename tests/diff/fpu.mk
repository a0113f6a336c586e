# FPU cross-check against qemu-riscv64 (tests/diff/test_fpu_qemu.sh): one source built twice,
# natively for riscv64 (run under qemu-user) and for the host linked with libkumo.
FPU_QEMU_RV_CC ?= riscv64-linux-gnu-gcc

$(BUILD)/tests/diff/fpu-qemu-host: $(BUILD)/tests/diff/fpu_qemu.o $(LIBKUMO)
	$(CC) $(LDFLAGS) -o $@ $< $(LIBKUMO) $(LDLIBS)

$(BUILD)/tests/diff/fpu-qemu-rv64: tests/diff/fpu_qemu.c
	@mkdir -p $(@D)
	$(FPU_QEMU_RV_CC) -std=gnu11 -O2 -Wall -Wextra -Werror -march=rv64gc -static -o $@ $<

-include $(BUILD)/tests/diff/fpu_qemu.d

ifneq ($(shell command -v $(FPU_QEMU_RV_CC)),)
test-programs: $(BUILD)/tests/diff/fpu-qemu-host $(BUILD)/tests/diff/fpu-qemu-rv64
endif
