/*
 * devices.h - the virt board's devices (internal to src/machine).
 *
 * Usage: virt.c creates each device with its _new() function, registers it in the board's
 * device list with its `struct vdev_class` and an address from the board's address table, and
 * from then on only talks to it through the class: MMIO ops for the memory map, reset() on
 * reboot, dt_node() when the device tree is built, free() at the end. Devices raise interrupts
 * through struct irq_line values and never see the PLIC, the harts or the accelerator.
 *
 * Threads: every device has its own mutex; its MMIO ops and its input functions
 * (uart8250_receive, plic_set_irq) may be called from any thread. Outgoing calls (irq lines,
 * callbacks) are made with the device's mutex held so that their order matches the order of
 * state changes; receivers must not call back into the same device. Lock order, outermost
 * first: uart/rtc/aclint -> plic -> the board's hooks.
 *
 * Device-tree writers use libfdt's read-write API on a tree that already has "/", "/cpus" and
 * "/soc"; they add their nodes with fdt_add_subnode(), which inserts a node as the parent's
 * first child, so the board calls them in reverse address-table order.
 */
#ifndef KUMO_MACHINE_DEVICES_H
#define KUMO_MACHINE_DEVICES_H

#include <errno.h>
#include <inttypes.h>
#include <libfdt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "kumo/accel.h"
#include "kumo/base.h"
#include "kumo/board.h"
#include "kumo/irq.h"
#include "kumo/memmap.h"

/* Phandles the board assigns before any node is written. */
struct dt_ctx {
	unsigned ncpus;
	uint32_t cpu_phandle[BOARD_MAX_CPUS];  /* /cpus/cpu@N */
	uint32_t intc_phandle[BOARD_MAX_CPUS]; /* /cpus/cpu@N/interrupt-controller */
	uint32_t plic_phandle;
	uint32_t test_phandle; /* the sifive,test syscon, target of /poweroff and /reboot */
};

/* What the board needs to know about a device type. */
struct vdev_class {
	const char *name;
	const struct mmio_ops *mmio;
	void (*reset)(void *dev); /* power-on state; drives its output lines to that state */
	/* Adds the device's node(s); returns 0 or a negative libfdt error (FDT_ERR_*). */
	int (*dt_node)(void *dev, void *fdt, const struct dt_ctx *ctx, uint64_t base,
		       uint64_t size);
	void (*free)(void *dev);
	/*
	 * Snapshots (optional; NULL: the device cannot be saved and a snapshot is refused).
	 * save() copies the guest-visible state into buf (at most cap bytes) and returns its size
	 * or -errno; load() puts back what save() wrote on a device created with the same
	 * configuration, re-drives its output lines, and returns 0 or -EINVAL when the size or a
	 * value is wrong. Both take the device's mutex; call them while the vCPUs are parked.
	 */
	int (*save)(void *dev, void *buf, size_t cap);
	int (*load)(void *dev, const void *buf, size_t len);
};

/* --- NS16550A UART (uart8250.c) --- */
struct uart8250;
struct uart8250_config {
	struct irq_line irq;
	/* Transmitted bytes (THR writes outside loopback). UART mutex held. */
	void (*tx)(void *opaque, const uint8_t *buf, size_t len);
	/* The receive FIFO drained after uart8250_receive() refused bytes. No mutex held. */
	void (*rx_ready)(void *opaque);
	void *opaque;
	unsigned plic_irq; /* the source number written to the device tree */
};
extern const struct vdev_class uart8250_class;
int uart8250_new(const struct uart8250_config *cfg, struct uart8250 **out);
/* Queues host input into the receive FIFO; returns how many bytes fit (the rest are refused). */
size_t uart8250_receive(struct uart8250 *u, const uint8_t *buf, size_t len);
/* Free room in the receive FIFO, in bytes. */
size_t uart8250_rx_room(struct uart8250 *u);
/*
 * A line break from the host (the serial "BREAK" signal): LSR.BI with a NUL character, as
 * the 16550 reports one. Only when the receive FIFO is empty; false otherwise (retry later).
 */
bool uart8250_break(struct uart8250 *u);

/* --- SiFive CLINT / ACLINT MSWI + MTIMER (aclint.c) --- */
struct aclint;
struct aclint_config {
	unsigned ncpus;
	const struct irq_line *msip; /* [ncpus]: hart's MSIP */
	/* Hart's mtimecmp changed. ACLINT mutex held. */
	void (*timer)(void *opaque, unsigned hart, uint64_t mtimecmp);
	void *opaque;
};
extern const struct vdev_class aclint_class;
int aclint_new(const struct aclint_config *cfg, struct aclint **out);

/* --- PLIC (plic.c) --- */
#define PLIC_NSOURCES (VIRT_PLIC_NDEV + 1) /* source 0 does not exist */
struct plic;
struct plic_config {
	unsigned ncpus;              /* two contexts per hart: 2h M-mode, 2h+1 S-mode */
	const struct irq_line *ctx;  /* [2 * ncpus]: each context's external interrupt line */
};
extern const struct vdev_class plic_class;
int plic_new(const struct plic_config *cfg, struct plic **out);
/* Source input, irq_line-compatible: n is the source number (1..VIRT_PLIC_NDEV). Any thread. */
void plic_set_irq(void *plic, unsigned n, bool level);

/* --- goldfish RTC (goldfish_rtc.c) --- */
struct goldfish_rtc;
struct goldfish_rtc_config {
	struct irq_line irq;
	unsigned plic_irq;
};
extern const struct vdev_class goldfish_rtc_class;
int goldfish_rtc_new(const struct goldfish_rtc_config *cfg, struct goldfish_rtc **out);

/* --- Virtual Machine Generation ID (vmgenid.c) --- */
struct vmgenid;
struct vmgenid_config {
	struct irq_line irq;
	unsigned plic_irq;
};
extern const struct vdev_class vmgenid_class;
/* Starts with a random generation ID (getrandom). */
int vmgenid_new(const struct vmgenid_config *cfg, struct vmgenid **out);
/* A new random ID and the interrupt, held until the guest reads the ID. 0 or -EIO. */
int vmgenid_new_generation(struct vmgenid *g);
void vmgenid_get(struct vmgenid *g, uint8_t id[16]);

/* --- sifive,test syscon (syscon.c) --- */
struct syscon;
struct syscon_config {
	/* Poweroff/reboot/fail request. Syscon mutex held. */
	void (*event)(void *opaque, enum board_event ev, uint64_t data);
	void *opaque;
};
#define SYSCON_FAIL 0x3333
#define SYSCON_PASS 0x5555 /* poweroff */
#define SYSCON_RESET 0x7777
extern const struct vdev_class syscon_class;
int syscon_new(const struct syscon_config *cfg, struct syscon **out);

/* --- virtio-mmio transport (src/devices/virtio/mmio.c), one per populated virtio slot --- */
struct virtio_dev;
struct virtio_mmio;
/* dev_node writes "virtio,mmio" with the PLIC source; free() also frees the virtio device. */
extern const struct vdev_class virtio_mmio_class;
/* Wraps dev (which the transport then owns) for slot `plic_irq`; dev->irq must be set. */
int virtio_mmio_new(struct virtio_dev *dev, unsigned plic_irq, struct virtio_mmio **out);

/* --- device-tree helpers shared by the writers --- */

/* Adds /soc/<prefix>@<base> with reg = <base size>; returns its offset or an FDT_ERR. */
static inline int dt_add_soc_node(void *fdt, const char *prefix, uint64_t base, uint64_t size)
{
	char name[64];
	int soc, node, err;
	fdt64_t reg[2] = {cpu_to_fdt64(base), cpu_to_fdt64(size)};

	soc = fdt_path_offset(fdt, "/soc");
	if (soc < 0)
		return soc;
	snprintf(name, sizeof(name), "%s@%" PRIx64, prefix, base);
	node = fdt_add_subnode(fdt, soc, name);
	if (node < 0)
		return node;
	err = fdt_setprop(fdt, node, "reg", reg, sizeof(reg));
	return err < 0 ? err : node;
}

/* Sets interrupt-parent = <plic> and interrupts = <irq>. */
static inline int dt_set_plic_irq(void *fdt, int node, const struct dt_ctx *ctx, unsigned irq)
{
	int err = fdt_setprop_u32(fdt, node, "interrupt-parent", ctx->plic_phandle);

	return err < 0 ? err : fdt_setprop_u32(fdt, node, "interrupts", irq);
}

/* Sets interrupts-extended = <intc(h) a, intc(h) b> for every hart h (CLINT and PLIC). */
static inline int dt_set_per_hart_irqs(void *fdt, int node, const struct dt_ctx *ctx,
				       uint32_t a, uint32_t b)
{
	fdt32_t cells[4 * BOARD_MAX_CPUS];

	for (unsigned h = 0; h < ctx->ncpus; h++) {
		cells[4 * h + 0] = cpu_to_fdt32(ctx->intc_phandle[h]);
		cells[4 * h + 1] = cpu_to_fdt32(a);
		cells[4 * h + 2] = cpu_to_fdt32(ctx->intc_phandle[h]);
		cells[4 * h + 3] = cpu_to_fdt32(b);
	}
	return fdt_setprop(fdt, node, "interrupts-extended", cells,
			   (int)(4 * ctx->ncpus * sizeof(cells[0])));
}

#endif
