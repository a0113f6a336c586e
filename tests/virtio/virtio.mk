# The virtio hostile bare-metal guest (tests/virtio/test_hostile.py): linked with the shared
# start-up code of tests/guests (common.S, guest.h, guest.ld) into $(BUILD)/virtio/hostile.bin.
VIRTIO_GUEST_CROSS ?= riscv64-linux-gnu-
VIRTIO_GUEST_FLAGS := -nostdlib -static -march=rv64gc -mabi=lp64d -mno-relax -Wl,--no-relax \
	-Wl,--build-id=none -Wl,--no-warn-rwx-segments -T tests/guests/guest.ld -Itests/guests

$(BUILD)/virtio/hostile.elf: tests/virtio/hostile.S tests/guests/common.S tests/guests/guest.h \
		tests/guests/guest.ld
	@mkdir -p $(@D)
	$(VIRTIO_GUEST_CROSS)gcc $(VIRTIO_GUEST_FLAGS) -o $@ tests/guests/common.S $<

$(BUILD)/virtio/hostile.bin: $(BUILD)/virtio/hostile.elf
	$(VIRTIO_GUEST_CROSS)objcopy -O binary $< $@

test-programs: $(BUILD)/virtio/hostile.bin
