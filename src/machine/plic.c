/*
 * plic.c - RISC-V Platform-Level Interrupt Controller (riscv-plic-spec 1.0.0), QEMU virt layout:
 * sources 1..95, two contexts per hart (2h: M-mode external, 2h+1: S-mode external).
 *
 * Register map (plic spec §3 "Memory Map"):
 *   0x000000 + 4*s          priority of source s (0 = never interrupts; 3 bits here, 0..7)
 *   0x001000 + 4*(s/32)     pending bits (read-only)
 *   0x002000 + 0x80*c       enable bits of context c
 *   0x200000 + 0x1000*c     priority threshold of context c; +4 claim (read) / complete (write)
 * Registers are 32 bits wide; 64-bit accesses are split into two 32-bit ones (low word first),
 * narrower accesses are guest errors.
 *
 * Sources are level-triggered (plic spec §5 "Interrupt Gateways"): while a source's interrupt is
 * claimed and not yet completed, its gateway forwards no new request; at completion a source
 * still high becomes pending again. Deviation: a source that drops its line before being
 * claimed has its pending bit cleared (as QEMU and most implementations do), so drivers see no
 * interrupts for conditions that have already gone away.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "machine/devices.h"

#define PLIC_WORDS ((PLIC_NSOURCES + 31) / 32)
#define PLIC_PRIO_MASK 7u

#define PLIC_PRIORITY 0x0u
#define PLIC_PENDING 0x1000u
#define PLIC_ENABLE 0x2000u
#define PLIC_ENABLE_STRIDE 0x80u
#define PLIC_CONTEXT 0x200000u
#define PLIC_CONTEXT_STRIDE 0x1000u

struct plic_context {
	uint32_t enable[PLIC_WORDS];
	uint32_t threshold;
	bool out; /* level last driven on the context's line */
};

struct plic {
	pthread_mutex_t lock;
	uint32_t priority[PLIC_NSOURCES];
	uint32_t level[PLIC_WORDS];    /* current input levels */
	uint32_t pending[PLIC_WORDS];  /* gateway requests waiting to be claimed */
	uint32_t inflight[PLIC_WORDS]; /* claimed, not completed */
	unsigned ncontexts;
	const struct irq_line *lines; /* [ncontexts] */
	uint64_t claims;              /* counters */
	struct plic_context ctx[];
};

static bool bit_test(const uint32_t *w, unsigned n)
{
	return (w[n / 32] >> (n % 32)) & 1;
}

static void bit_assign(uint32_t *w, unsigned n, bool v)
{
	if (v)
		w[n / 32] |= 1u << (n % 32);
	else
		w[n / 32] &= ~(1u << (n % 32));
}

/* The best claimable source for context c (plic spec §3.6 priority, ties to the lowest id). */
static unsigned plic_best(const struct plic *p, unsigned c)
{
	const struct plic_context *ctx = &p->ctx[c];
	unsigned best = 0;
	uint32_t best_prio = ctx->threshold;

	for (unsigned w = 0; w < PLIC_WORDS; w++) {
		uint32_t cand = p->pending[w] & ctx->enable[w];

		while (cand) {
			unsigned s = w * 32 + (unsigned)__builtin_ctz(cand);

			cand &= cand - 1;
			if (p->priority[s] > best_prio) {
				best_prio = p->priority[s];
				best = s;
			}
		}
	}
	return best;
}

/* Drives every context's line; `force` drives even unchanged levels (reset). Lock held. */
static void plic_update(struct plic *p, bool force)
{
	for (unsigned c = 0; c < p->ncontexts; c++) {
		bool level = plic_best(p, c) != 0;

		if (level != p->ctx[c].out || force) {
			p->ctx[c].out = level;
			irq_line_set(&p->lines[c], level);
		}
	}
}

void plic_set_irq(void *opaque, unsigned n, bool level)
{
	struct plic *p = opaque;

	if (n == 0 || n >= PLIC_NSOURCES)
		return;
	pthread_mutex_lock(&p->lock);
	bit_assign(p->level, n, level);
	if (!level)
		bit_assign(p->pending, n, false);
	else if (!bit_test(p->inflight, n))
		bit_assign(p->pending, n, true);
	plic_update(p, false);
	pthread_mutex_unlock(&p->lock);
}

static uint32_t plic_claim(struct plic *p, unsigned c)
{
	unsigned s = plic_best(p, c);

	if (s) {
		bit_assign(p->pending, s, false);
		bit_assign(p->inflight, s, true);
		p->claims++;
		plic_update(p, false);
	}
	return s;
}

/* plic spec §3.8: completion of a source not enabled for the context is silently ignored. */
static void plic_complete(struct plic *p, unsigned c, uint32_t s)
{
	if (s == 0 || s >= PLIC_NSOURCES || !bit_test(p->ctx[c].enable, s)) {
		guest_error("plic: context %u completes source %u, which it has not enabled", c, s);
		return;
	}
	if (!bit_test(p->inflight, s))
		return;
	bit_assign(p->inflight, s, false);
	if (bit_test(p->level, s))
		bit_assign(p->pending, s, true);
	plic_update(p, false);
}

static uint32_t plic_read32(struct plic *p, uint64_t off)
{
	if (off < PLIC_PENDING) {
		unsigned s = (unsigned)(off / 4);

		return s < PLIC_NSOURCES ? p->priority[s] : 0;
	}
	if (off < PLIC_ENABLE) {
		unsigned w = (unsigned)((off - PLIC_PENDING) / 4);

		return w < PLIC_WORDS ? p->pending[w] : 0;
	}
	if (off < PLIC_CONTEXT) {
		unsigned c = (unsigned)((off - PLIC_ENABLE) / PLIC_ENABLE_STRIDE);
		unsigned w = (unsigned)((off - PLIC_ENABLE) % PLIC_ENABLE_STRIDE / 4);

		return c < p->ncontexts && w < PLIC_WORDS ? p->ctx[c].enable[w] : 0;
	}
	unsigned c = (unsigned)((off - PLIC_CONTEXT) / PLIC_CONTEXT_STRIDE);
	unsigned reg = (unsigned)((off - PLIC_CONTEXT) % PLIC_CONTEXT_STRIDE);

	if (c >= p->ncontexts)
		return 0;
	if (reg == 0)
		return p->ctx[c].threshold;
	if (reg == 4)
		return plic_claim(p, c);
	return 0;
}

static void plic_write32(struct plic *p, uint64_t off, uint32_t val)
{
	if (off < PLIC_PENDING) {
		unsigned s = (unsigned)(off / 4);

		if (s == 0 || s >= PLIC_NSOURCES)
			return;
		p->priority[s] = val & PLIC_PRIO_MASK;
		plic_update(p, false);
		return;
	}
	if (off < PLIC_ENABLE) {
		guest_error("plic: write to read-only pending bits at %#" PRIx64, off);
		return;
	}
	if (off < PLIC_CONTEXT) {
		unsigned c = (unsigned)((off - PLIC_ENABLE) / PLIC_ENABLE_STRIDE);
		unsigned w = (unsigned)((off - PLIC_ENABLE) % PLIC_ENABLE_STRIDE / 4);

		if (c >= p->ncontexts || w >= PLIC_WORDS)
			return;
		if (w == 0)
			val &= ~1u; /* source 0 does not exist */
		if (w == PLIC_WORDS - 1 && PLIC_NSOURCES % 32)
			val &= (1u << (PLIC_NSOURCES % 32)) - 1;
		p->ctx[c].enable[w] = val;
		plic_update(p, false);
		return;
	}
	unsigned c = (unsigned)((off - PLIC_CONTEXT) / PLIC_CONTEXT_STRIDE);
	unsigned reg = (unsigned)((off - PLIC_CONTEXT) % PLIC_CONTEXT_STRIDE);

	if (c >= p->ncontexts)
		return;
	if (reg == 0) {
		p->ctx[c].threshold = val & PLIC_PRIO_MASK;
		plic_update(p, false);
	} else if (reg == 4) {
		plic_complete(p, c, val);
	}
}

static uint64_t plic_read(void *opaque, uint64_t off, unsigned size)
{
	struct plic *p = opaque;
	uint64_t val;

	if (size < 4 || off % size) {
		guest_error("plic: %u-byte read at %#" PRIx64 " ignored", size, off);
		return 0;
	}
	pthread_mutex_lock(&p->lock);
	val = plic_read32(p, off);
	if (size == 8)
		val |= (uint64_t)plic_read32(p, off + 4) << 32;
	pthread_mutex_unlock(&p->lock);
	return val;
}

static void plic_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	struct plic *p = opaque;

	if (size < 4 || off % size) {
		guest_error("plic: %u-byte write at %#" PRIx64 " ignored", size, off);
		return;
	}
	pthread_mutex_lock(&p->lock);
	plic_write32(p, off, (uint32_t)val);
	if (size == 8)
		plic_write32(p, off + 4, (uint32_t)(val >> 32));
	pthread_mutex_unlock(&p->lock);
}

int plic_new(const struct plic_config *cfg, struct plic **out)
{
	unsigned n = 2 * cfg->ncpus;
	struct plic *p;

	p = calloc(1, sizeof(*p) + n * sizeof(p->ctx[0]));
	if (!p) {
		err_set("out of memory creating the PLIC");
		return -ENOMEM;
	}
	pthread_mutex_init(&p->lock, NULL);
	p->ncontexts = n;
	p->lines = cfg->ctx;
	*out = p;
	return 0;
}

static void plic_free(void *dev)
{
	struct plic *p = dev;

	if (!p)
		return;
	pthread_mutex_destroy(&p->lock);
	free(p);
}

/* Everything 0 (plic spec: reset values are implementation-defined; Linux initialises all). */
static void plic_reset(void *dev)
{
	struct plic *p = dev;

	pthread_mutex_lock(&p->lock);
	memset(p->priority, 0, sizeof(p->priority));
	memset(p->pending, 0, sizeof(p->pending));
	memset(p->inflight, 0, sizeof(p->inflight));
	for (unsigned c = 0; c < p->ncontexts; c++) {
		memset(p->ctx[c].enable, 0, sizeof(p->ctx[c].enable));
		p->ctx[c].threshold = 0;
	}
	/* Input levels belong to the devices, which keep driving them: re-derive pending. */
	memcpy(p->pending, p->level, sizeof(p->pending));
	plic_update(p, true);
	pthread_mutex_unlock(&p->lock);
}

/* Snapshot image: the global arrays, the claim counter, then per context enables + threshold. */
struct plic_state_head {
	uint32_t priority[PLIC_NSOURCES];
	uint32_t level[PLIC_WORDS], pending[PLIC_WORDS], inflight[PLIC_WORDS];
	uint64_t claims;
	uint32_t ncontexts;
};
struct plic_state_ctx {
	uint32_t enable[PLIC_WORDS];
	uint32_t threshold;
};

static int plic_save(void *dev, void *buf, size_t cap)
{
	struct plic *p = dev;
	struct plic_state_head h;
	size_t need = sizeof(h) + p->ncontexts * sizeof(struct plic_state_ctx);
	uint8_t *out = buf;

	if (cap < need)
		return -ENOSPC;
	memset(&h, 0, sizeof(h)); /* padding too: equal states give equal bytes */
	pthread_mutex_lock(&p->lock);
	memcpy(h.priority, p->priority, sizeof(h.priority));
	memcpy(h.level, p->level, sizeof(h.level));
	memcpy(h.pending, p->pending, sizeof(h.pending));
	memcpy(h.inflight, p->inflight, sizeof(h.inflight));
	h.claims = p->claims;
	h.ncontexts = p->ncontexts;
	memcpy(out, &h, sizeof(h));
	for (unsigned c = 0; c < p->ncontexts; c++) {
		struct plic_state_ctx sc = {.threshold = p->ctx[c].threshold};

		memcpy(sc.enable, p->ctx[c].enable, sizeof(sc.enable));
		memcpy(out + sizeof(h) + c * sizeof(sc), &sc, sizeof(sc));
	}
	pthread_mutex_unlock(&p->lock);
	return (int)need;
}

static int plic_load(void *dev, const void *buf, size_t len)
{
	struct plic *p = dev;
	struct plic_state_head h;
	const uint8_t *in = buf;

	if (len < sizeof(h))
		return -EINVAL;
	memcpy(&h, in, sizeof(h));
	if (h.ncontexts != p->ncontexts ||
	    len != sizeof(h) + p->ncontexts * sizeof(struct plic_state_ctx))
		return -EINVAL;
	pthread_mutex_lock(&p->lock);
	memcpy(p->priority, h.priority, sizeof(h.priority));
	memcpy(p->level, h.level, sizeof(h.level));
	memcpy(p->pending, h.pending, sizeof(h.pending));
	memcpy(p->inflight, h.inflight, sizeof(h.inflight));
	p->claims = h.claims;
	for (unsigned c = 0; c < p->ncontexts; c++) {
		struct plic_state_ctx sc;

		memcpy(&sc, in + sizeof(h) + c * sizeof(sc), sizeof(sc));
		memcpy(p->ctx[c].enable, sc.enable, sizeof(sc.enable));
		p->ctx[c].threshold = sc.threshold;
	}
	plic_update(p, true);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

static const struct mmio_ops plic_mmio = {.read = plic_read, .write = plic_write};

/* Linux Documentation/devicetree/bindings/interrupt-controller/sifive,plic-1.0.0.yaml */
static int plic_dt_node(void *dev, void *fdt, const struct dt_ctx *ctx, uint64_t base,
			uint64_t size)
{
	static const char compat[] = "sifive,plic-1.0.0\0riscv,plic0";
	int node, err;

	node = dt_add_soc_node(fdt, "plic", base, size);
	if (node < 0)
		return node;
	err = fdt_setprop(fdt, node, "compatible", compat, sizeof(compat));
	if (!err)
		err = fdt_setprop_u32(fdt, node, "#address-cells", 0);
	if (!err)
		err = fdt_setprop_u32(fdt, node, "#interrupt-cells", 1);
	if (!err)
		err = fdt_setprop_empty(fdt, node, "interrupt-controller");
	if (!err)
		err = fdt_setprop_u32(fdt, node, "riscv,ndev", VIRT_PLIC_NDEV);
	if (!err)
		err = fdt_setprop_u32(fdt, node, "phandle", ctx->plic_phandle);
	if (!err)
		err = dt_set_per_hart_irqs(fdt, node, ctx, ACCEL_IRQ_MEI, ACCEL_IRQ_SEI);
	return err;
}

const struct vdev_class plic_class = {
	.name = "plic",
	.mmio = &plic_mmio,
	.reset = plic_reset,
	.dt_node = plic_dt_node,
	.free = plic_free,
	.save = plic_save,
	.load = plic_load,
};
