/*
 * board.h - the "virt" board: memory map, devices and the device tree of one VM.
 *
 * Usage: the VMM fills a struct board_config (harts, RAM, boot arguments, hooks to the vCPUs
 * and the VMM), calls board_new(), adds guest RAM through board_memmap(), later asks
 * board_dt_build() for the flattened device tree and feeds console input with
 * board_console_input(). The address map is compatible with QEMU 7.2's `virt` machine (see
 * docs/design.md): the same kernels, OpenSBI and u-boot run on both.
 *
 * Devices never see the accelerator: interrupts to harts and timer compares leave the board
 * through the hooks, which the VMM wires to accel set_interrupt/set_timer.
 */
#ifndef KUMO_BOARD_H
#define KUMO_BOARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kumo/memmap.h"

/* The address table (QEMU virt). */
#define VIRT_TEST_BASE 0x100000ULL /* sifive,test syscon: poweroff/reboot */
#define VIRT_TEST_SIZE 0x1000ULL
#define VIRT_RTC_BASE 0x101000ULL /* goldfish RTC */
#define VIRT_RTC_SIZE 0x1000ULL
#define VIRT_VMGENID_BASE 0x102000ULL /* microsoft,vmgenid: 16-byte generation ID */
#define VIRT_VMGENID_SIZE 0x1000ULL
#define VIRT_CLINT_BASE 0x2000000ULL /* ACLINT MSWI + MTIMER in the SiFive CLINT layout */
#define VIRT_CLINT_SIZE 0x10000ULL
#define VIRT_PLIC_BASE 0xc000000ULL
#define VIRT_PLIC_SIZE 0x600000ULL
#define VIRT_UART0_BASE 0x10000000ULL
#define VIRT_UART0_SIZE 0x100ULL
#define VIRT_VIRTIO_BASE 0x10001000ULL /* 8 slots of 0x1000 */
#define VIRT_VIRTIO_SIZE 0x1000ULL
#define VIRT_VIRTIO_COUNT 8
#define VIRT_DRAM_BASE 0x80000000ULL

/* PLIC sources. */
#define VIRT_VIRTIO_IRQ 1 /* slots use 1..8 */
#define VIRT_UART0_IRQ 10
#define VIRT_RTC_IRQ 11
#define VIRT_VMGENID_IRQ 12
#define VIRT_PLIC_NDEV 95 /* sources 1..95 */

#define BOARD_MAX_CPUS 64
#define BOARD_MIN_RAM (16ULL << 20)
#define BOARD_MAX_RAM (1ULL << 40) /* 1 TiB: RAM ends below 0x100_8000_0000 */

enum board_event {
	BOARD_EVENT_POWEROFF = 1,
	BOARD_EVENT_REBOOT = 2,
	BOARD_EVENT_FAIL = 3, /* guest reported failure; data carries its code */
};

struct board_hooks {
	void *opaque;
	/* Raise/lower hart `hart`'s interrupt `irq` (enum accel_irq numbers). Any thread. */
	void (*cpu_irq)(void *opaque, unsigned hart, unsigned irq, bool level);
	/* Hart's machine timer compare changed (ACLINT mtimecmp). Any thread. */
	void (*cpu_timer)(void *opaque, unsigned hart, uint64_t mtimecmp);
	/* The guest asked for poweroff/reboot/failure through the syscon. Any thread. */
	void (*system_event)(void *opaque, enum board_event ev, uint64_t data);
	/* Bytes the guest wrote to the console UART. Called on a vCPU thread; must not block long. */
	void (*console_write)(void *opaque, const uint8_t *buf, size_t len);
	/*
	 * Optional: the UART's receive FIFO has emptied after board_console_input() refused
	 * bytes; input can be offered again. Called on a vCPU thread with no board lock held.
	 */
	void (*console_rx_ready)(void *opaque);
};

struct board_config {
	unsigned ncpus;          /* 1..BOARD_MAX_CPUS */
	uint64_t ram_size;       /* bytes, RAM at VIRT_DRAM_BASE */
	const char *isa;         /* e.g. "rv64imafdc_zicsr_zifencei_sstc", advertised per hart */
	const char *mmu_type;    /* "riscv,sv57", "riscv,sv48" or "riscv,sv39" */
	const char *bootargs;    /* kernel command line, NULL: none */
	uint64_t initrd_start;   /* guest-physical, 0: no initrd */
	uint64_t initrd_end;
	struct board_hooks hooks;
};

struct board;

/*
 * Creates the memory map and every device. On failure returns -errno with err_set(). Guest
 * RAM is not added: the VMM adds cfg->ram_size bytes at VIRT_DRAM_BASE with memmap_add_ram()
 * on board_memmap(). No hook is called before board_reset(), so the VMM may create its vCPUs
 * after board_new(); call board_reset() once they exist to drive every line to its reset level
 * (interrupts low, mtimecmp UINT64_MAX).
 */
int board_new(const struct board_config *cfg, struct board **out);
void board_free(struct board *b);
struct memmap *board_memmap(struct board *b);

/* Sets chosen/linux,initrd-start/end (call before board_dt_build). */
void board_set_initrd(struct board *b, uint64_t start, uint64_t end);

/*
 * Writes the flattened device tree into buf (at most size bytes) with libfdt. Returns the
 * total size used, or -errno (err_set says why).
 */
int board_dt_build(struct board *b, void *buf, size_t size);

/*
 * Console input from the host (any thread): queued into the UART's receive FIFO (16 bytes).
 * Returns how many bytes were accepted; the rest were refused (keep them and offer them again
 * when hooks.console_rx_ready fires, or later). Never blocks.
 */
size_t board_console_input(struct board *b, const uint8_t *buf, size_t len);
/* A serial BREAK on the console UART (any thread); false while its receive FIFO is not empty. */
bool board_console_break(struct board *b);
/* Free room in the console UART's receive FIFO, in bytes (any thread). */
size_t board_console_room(struct board *b);

struct virtio_dev;
/*
 * Puts a virtio device behind a virtio-mmio transport in the next free slot
 * (VIRT_VIRTIO_BASE + n * VIRT_VIRTIO_SIZE, PLIC source VIRT_VIRTIO_IRQ + n), sets its irq
 * line and adds its "virtio,mmio" device-tree node. On success the board owns dev (freed by
 * board_free). -ENOSPC when the 8 slots are taken. Set-up thread, before vCPUs run.
 */
int board_add_virtio(struct board *b, struct virtio_dev *dev);

/* Resets every device to its power-on state (reboot). */
void board_reset(struct board *b);

/*
 * Snapshots: board_save() serializes every device's state into a malloc'd buffer (*out, *len;
 * the caller frees it). -EOPNOTSUPP with err_set() naming the device when one cannot be saved.
 * board_load() puts it back on a board created with the same configuration; -EINVAL with
 * err_set() when the image does not match the board. Call both while the vCPUs are parked.
 */
int board_save(struct board *b, void **out, size_t *len);
int board_load(struct board *b, const void *buf, size_t len);

/*
 * VM Generation ID (src/machine/vmgenid.c): a restore or clone is a new generation. Picks a
 * new random ID and notifies the guest (which reseeds its RNG). 0 or -EIO. Any thread.
 * board_vmgenid() copies the current ID into id.
 */
int board_vmgenid_new_generation(struct board *b);
void board_vmgenid(struct board *b, uint8_t id[16]);

#endif
