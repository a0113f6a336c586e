# Bare-metal hostile-guest tests (tests/guests/test_guests.sh): each tests/guests/NAME.S other
# than common.S is linked with common.S at 0x80000000 into $(BUILD)/guests/NAME.elf and
# flattened into $(BUILD)/guests/NAME.bin for `kumo run --bios`.
GUEST_CROSS ?= riscv64-linux-gnu-
GUEST_SRCS := $(filter-out tests/guests/common.S,$(wildcard tests/guests/*.S))
GUEST_BINS := $(GUEST_SRCS:tests/guests/%.S=$(BUILD)/guests/%.bin)
GUEST_FLAGS := -nostdlib -static -march=rv64gc -mabi=lp64d -mno-relax -Wl,--no-relax \
	-Wl,--build-id=none -Wl,--no-warn-rwx-segments -T tests/guests/guest.ld -Itests/guests

$(BUILD)/guests/%.elf: tests/guests/%.S tests/guests/common.S tests/guests/guest.h \
		tests/guests/guest.ld
	@mkdir -p $(@D)
	$(GUEST_CROSS)gcc $(GUEST_FLAGS) -o $@ tests/guests/common.S $<

$(BUILD)/guests/%.bin: $(BUILD)/guests/%.elf
	$(GUEST_CROSS)objcopy -O binary $< $@

.PRECIOUS: $(BUILD)/guests/%.elf
test-programs: $(GUEST_BINS)
