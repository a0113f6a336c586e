/*
 * aclint.c - machine software interrupts and machine timer in the SiFive CLINT layout
 * (RISC-V ACLINT spec 1.0-rc4: an MSWI device at 0x0 and an MTIMER device whose MTIMECMP
 * registers start at 0x4000 and whose MTIME register sits at 0xbff8).
 *
 *   0x0000 + 4*h   MSIP of hart h: bit 0 drives the hart's MSIP, other bits read 0 (§3.2)
 *   0x4000 + 8*h   MTIMECMP of hart h, 64-bit (§2.2)
 *   0xbff8         MTIME, 64-bit, ticks of KUMO_TIMEBASE_HZ (§2.1)
 * MTIMECMP and MTIME take 32-bit and 64-bit naturally aligned accesses (a 32-bit access reads
 * or writes one half); MSIP takes 32-bit accesses (a 64-bit access covers two harts). Other
 * sizes and misaligned accesses are guest errors.
 *
 * The harts compute MTIP themselves (time >= mtimecmp), so a MTIMECMP write is forwarded to the
 * board's timer callback and nothing here ever sleeps.
 *
 * Reset value of MTIMECMP: the ACLINT spec leaves it unspecified (§2.2). We reset it to
 * UINT64_MAX so no timer interrupt is pending before software programs the timer; OpenSBI
 * writes all ones itself in aclint_mtimer_warm_init, and a kernel booted directly with the
 * VMM's SBI programs it through sbi_set_timer, so neither depends on the value.
 *
 * MTIME is the process-wide guest clock (clock_guest_ticks); a write shifts it for every
 * hart through clock_guest_set_offset. The offset this device last set is remembered here,
 * since base.h offers no getter; anything else that moves the offset must come through here.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "machine/devices.h"

#define ACLINT_MSIP 0x0u
#define ACLINT_MTIMECMP 0x4000u
#define ACLINT_MTIME 0xbff8u

struct aclint {
	pthread_mutex_t lock;
	unsigned ncpus;
	const struct irq_line *msip_lines; /* [ncpus] */
	void (*timer)(void *opaque, unsigned hart, uint64_t mtimecmp);
	void *opaque;
	int64_t tick_offset; /* what we last passed to clock_guest_set_offset */
	uint64_t msip_writes, mtimecmp_writes;
	uint32_t *msip;     /* [ncpus], bit 0 only */
	uint64_t *mtimecmp; /* [ncpus] */
};

int aclint_new(const struct aclint_config *cfg, struct aclint **out)
{
	struct aclint *a = calloc(1, sizeof(*a));

	if (!a)
		goto out_nomem;
	a->msip = calloc(cfg->ncpus, sizeof(a->msip[0]));
	a->mtimecmp = calloc(cfg->ncpus, sizeof(a->mtimecmp[0]));
	if (!a->msip || !a->mtimecmp)
		goto out_free;
	pthread_mutex_init(&a->lock, NULL);
	a->ncpus = cfg->ncpus;
	a->msip_lines = cfg->msip;
	a->timer = cfg->timer;
	a->opaque = cfg->opaque;
	for (unsigned h = 0; h < a->ncpus; h++)
		a->mtimecmp[h] = UINT64_MAX;
	*out = a;
	return 0;

out_free:
	free(a->msip);
	free(a->mtimecmp);
	free(a);
out_nomem:
	err_set("out of memory creating the CLINT");
	return -ENOMEM;
}

static void aclint_free(void *dev)
{
	struct aclint *a = dev;

	if (!a)
		return;
	pthread_mutex_destroy(&a->lock);
	free(a->msip);
	free(a->mtimecmp);
	free(a);
}

static void aclint_reset(void *dev)
{
	struct aclint *a = dev;

	pthread_mutex_lock(&a->lock);
	for (unsigned h = 0; h < a->ncpus; h++) {
		a->msip[h] = 0;
		irq_line_set(&a->msip_lines[h], false);
		a->mtimecmp[h] = UINT64_MAX;
		if (a->timer)
			a->timer(a->opaque, h, UINT64_MAX);
	}
	pthread_mutex_unlock(&a->lock);
}

/* Merges a write of `size` bytes at byte `shift` of a 64-bit register. */
static uint64_t merge64(uint64_t old, uint64_t val, unsigned shift, unsigned size)
{
	uint64_t mask = size == 8 ? UINT64_MAX : ((1ULL << (size * 8)) - 1) << shift;

	return (old & ~mask) | ((val << shift) & mask);
}

static void msip_write(struct aclint *a, unsigned h, uint32_t val)
{
	if (h >= a->ncpus)
		return;
	a->msip_writes++;
	a->msip[h] = val & 1;
	irq_line_set(&a->msip_lines[h], val & 1);
}

static uint64_t aclint_read(void *opaque, uint64_t off, unsigned size)
{
	struct aclint *a = opaque;
	uint64_t val = 0;

	if (size < 4 || off % size)
		goto out_bad;
	pthread_mutex_lock(&a->lock);
	if (off < ACLINT_MTIMECMP) {
		unsigned h = (unsigned)(off / 4);

		if (h < a->ncpus)
			val = a->msip[h];
		if (size == 8 && h + 1 < a->ncpus)
			val |= (uint64_t)a->msip[h + 1] << 32;
	} else if (off >= ACLINT_MTIME + 8) {
		val = 0;
	} else if (off >= ACLINT_MTIME) {
		val = clock_guest_ticks() >> (off % 8 * 8);
	} else {
		unsigned h = (unsigned)((off - ACLINT_MTIMECMP) / 8);

		if (h < a->ncpus)
			val = a->mtimecmp[h] >> (off % 8 * 8);
	}
	pthread_mutex_unlock(&a->lock);
	return val;

out_bad:
	guest_error("clint: %u-byte read at %#" PRIx64 " ignored", size, off);
	return 0;
}

static void aclint_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	struct aclint *a = opaque;

	if (size < 4 || off % size) {
		guest_error("clint: %u-byte write at %#" PRIx64 " ignored", size, off);
		return;
	}
	pthread_mutex_lock(&a->lock);
	if (off < ACLINT_MTIMECMP) {
		unsigned h = (unsigned)(off / 4);

		msip_write(a, h, (uint32_t)val);
		if (size == 8)
			msip_write(a, h + 1, (uint32_t)(val >> 32));
	} else if (off >= ACLINT_MTIME + 8) {
		guest_error("clint: write to unimplemented offset %#" PRIx64, off);
	} else if (off >= ACLINT_MTIME) {
		uint64_t now = clock_guest_ticks();
		uint64_t want = merge64(now, val, off % 8 * 8, size);

		/* Relative to the current offset: pause/resume and restore shift it too. */
		a->tick_offset = clock_guest_get_offset() + (int64_t)(want - now);
		clock_guest_set_offset(a->tick_offset);
	} else {
		unsigned h = (unsigned)((off - ACLINT_MTIMECMP) / 8);

		if (h < a->ncpus) {
			a->mtimecmp_writes++;
			a->mtimecmp[h] = merge64(a->mtimecmp[h], val, off % 8 * 8, size);
			if (a->timer)
				a->timer(a->opaque, h, a->mtimecmp[h]);
		}
	}
	pthread_mutex_unlock(&a->lock);
}

static const struct mmio_ops aclint_mmio = {.read = aclint_read, .write = aclint_write};

/* Linux Documentation/devicetree/bindings/timer/sifive,clint.yaml */
static int aclint_dt_node(void *dev, void *fdt, const struct dt_ctx *ctx, uint64_t base,
			  uint64_t size)
{
	static const char compat[] = "sifive,clint0\0riscv,clint0";
	int node, err;

	node = dt_add_soc_node(fdt, "clint", base, size);
	if (node < 0)
		return node;
	err = fdt_setprop(fdt, node, "compatible", compat, sizeof(compat));
	if (!err)
		err = dt_set_per_hart_irqs(fdt, node, ctx, ACCEL_IRQ_MSI, ACCEL_IRQ_MTI);
	return err;
}

/* Snapshot image: hart count, counters, then msip[ncpus] and mtimecmp[ncpus]. */
struct aclint_state_head {
	uint32_t ncpus;
	uint32_t pad;
	uint64_t msip_writes, mtimecmp_writes;
};

static int aclint_save(void *dev, void *buf, size_t cap)
{
	struct aclint *a = dev;
	struct aclint_state_head h = {.ncpus = a->ncpus};
	size_t need = sizeof(h) + a->ncpus * (sizeof(uint32_t) + sizeof(uint64_t));
	uint8_t *out = buf;

	if (cap < need)
		return -ENOSPC;
	pthread_mutex_lock(&a->lock);
	h.msip_writes = a->msip_writes;
	h.mtimecmp_writes = a->mtimecmp_writes;
	memcpy(out, &h, sizeof(h));
	memcpy(out + sizeof(h), a->msip, a->ncpus * sizeof(uint32_t));
	memcpy(out + sizeof(h) + a->ncpus * sizeof(uint32_t), a->mtimecmp,
	       a->ncpus * sizeof(uint64_t));
	pthread_mutex_unlock(&a->lock);
	return (int)need;
}

static int aclint_load(void *dev, const void *buf, size_t len)
{
	struct aclint *a = dev;
	struct aclint_state_head h;
	const uint8_t *in = buf;

	if (len < sizeof(h))
		return -EINVAL;
	memcpy(&h, in, sizeof(h));
	if (h.ncpus != a->ncpus || len != sizeof(h) + a->ncpus * (sizeof(uint32_t) + sizeof(uint64_t)))
		return -EINVAL;
	pthread_mutex_lock(&a->lock);
	a->msip_writes = h.msip_writes;
	a->mtimecmp_writes = h.mtimecmp_writes;
	memcpy(a->msip, in + sizeof(h), a->ncpus * sizeof(uint32_t));
	memcpy(a->mtimecmp, in + sizeof(h) + a->ncpus * sizeof(uint32_t),
	       a->ncpus * sizeof(uint64_t));
	a->tick_offset = clock_guest_get_offset();
	for (unsigned h2 = 0; h2 < a->ncpus; h2++) {
		a->msip[h2] &= 1;
		irq_line_set(&a->msip_lines[h2], a->msip[h2]);
		if (a->timer)
			a->timer(a->opaque, h2, a->mtimecmp[h2]);
	}
	pthread_mutex_unlock(&a->lock);
	return 0;
}

const struct vdev_class aclint_class = {
	.name = "clint",
	.mmio = &aclint_mmio,
	.reset = aclint_reset,
	.dt_node = aclint_dt_node,
	.free = aclint_free,
	.save = aclint_save,
	.load = aclint_load,
};
