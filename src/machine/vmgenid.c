/*
 * vmgenid.c - Virtual Machine Generation ID ("microsoft,vmgenid", Linux
 * Documentation/devicetree/bindings/rng/microsoft,vmgenid.yaml; Microsoft's "Virtual Machine
 * Generation ID" specification): a 16-byte identifier that changes whenever the VM may have
 * been duplicated (a restore, a clone), so the guest reseeds its RNG instead of two clones
 * continuing the same random stream (Linux drivers/virt/vmgenid.c calls
 * add_vmfork_randomness(), which logs "crng reseeded due to virtual machine fork").
 *
 * Register window (read-only; writes are guest errors):
 *   0x00..0x0f  the generation ID, little-endian bytes, read with any 1/2/4/8-byte access
 *   0x10..      read as zero
 * Interrupt: the binding gives no acknowledge register, so the line stays high from a change
 * until the guest reads the ID (what its handler does first); PLIC sources are level-triggered
 * and a pulse that drops before the claim would be lost (see plic.c).
 *
 * A new random ID at creation; vmgenid_new_generation() picks the next one. Snapshots save the
 * ID and the line, so a restore first puts back what the guest saw, then the VMM moves it on.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "machine/devices.h"

#define VMGENID_SIZE 16

struct vmgenid {
	pthread_mutex_t lock;
	struct vmgenid_config cfg;
	uint8_t id[VMGENID_SIZE];
	bool irq_level;	  /* a change the guest has not read yet */
	uint64_t changes; /* generations since creation */
};

/* Lock held. getrandom() for a version 4 GUID (RFC 9562 §5.4: version and variant bits). */
static int pick_id(struct vmgenid *g)
{
	uint8_t id[VMGENID_SIZE];
	ssize_t n = getrandom(id, sizeof(id), 0);

	if (n != (ssize_t)sizeof(id))
		return -EIO;
	id[7] = (uint8_t)((id[7] & 0x0f) | 0x40); /* Microsoft GUID layout: Data3's high byte */
	id[8] = (uint8_t)((id[8] & 0x3f) | 0x80);
	if (!memcmp(id, g->id, sizeof(id)))
		id[0] ^= 1; /* never the same ID twice in a row */
	memcpy(g->id, id, sizeof(id));
	return 0;
}

int vmgenid_new(const struct vmgenid_config *cfg, struct vmgenid **out)
{
	struct vmgenid *g = calloc(1, sizeof(*g));

	if (!g) {
		err_set("out of memory creating the vmgenid device");
		return -ENOMEM;
	}
	pthread_mutex_init(&g->lock, NULL);
	g->cfg = *cfg;
	if (pick_id(g)) {
		err_set("vmgenid: getrandom failed");
		pthread_mutex_destroy(&g->lock);
		free(g);
		return -EIO;
	}
	*out = g;
	return 0;
}

int vmgenid_new_generation(struct vmgenid *g)
{
	int ret;

	pthread_mutex_lock(&g->lock);
	ret = pick_id(g);
	if (!ret) {
		g->changes++;
		g->irq_level = true;
		irq_line_set(&g->cfg.irq, true);
	}
	pthread_mutex_unlock(&g->lock);
	if (ret)
		err_set("vmgenid: getrandom failed");
	return ret;
}

void vmgenid_get(struct vmgenid *g, uint8_t id[16])
{
	pthread_mutex_lock(&g->lock);
	memcpy(id, g->id, VMGENID_SIZE);
	pthread_mutex_unlock(&g->lock);
}

static void vmgenid_free(void *dev)
{
	struct vmgenid *g = dev;

	if (!g)
		return;
	pthread_mutex_destroy(&g->lock);
	free(g);
}

/* Reset keeps the ID (a reboot is the same VM generation) and drops the line. */
static void vmgenid_reset(void *dev)
{
	struct vmgenid *g = dev;

	pthread_mutex_lock(&g->lock);
	g->irq_level = false;
	irq_line_set(&g->cfg.irq, false);
	pthread_mutex_unlock(&g->lock);
}

static uint64_t vmgenid_read(void *opaque, uint64_t off, unsigned size)
{
	struct vmgenid *g = opaque;
	uint64_t v = 0;

	if (off >= VMGENID_SIZE)
		return 0;
	pthread_mutex_lock(&g->lock);
	for (unsigned i = 0; i < size && off + i < VMGENID_SIZE; i++)
		v |= (uint64_t)g->id[off + i] << (8 * i);
	if (g->irq_level) {
		g->irq_level = false; /* the guest reads the new ID: the notification is taken */
		irq_line_set(&g->cfg.irq, false);
	}
	pthread_mutex_unlock(&g->lock);
	return v;
}

static void vmgenid_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	guest_error("vmgenid: %u-byte write of %#" PRIx64 " at offset %#" PRIx64
		    " ignored (read-only)",
		    size, val, off);
}

static const struct mmio_ops vmgenid_mmio = {.read = vmgenid_read, .write = vmgenid_write};

struct vmgenid_state {
	uint8_t id[VMGENID_SIZE];
	uint64_t changes;
	uint8_t irq_level, pad[7];
};

static int vmgenid_save(void *dev, void *buf, size_t cap)
{
	struct vmgenid *g = dev;
	struct vmgenid_state s = {0};

	if (cap < sizeof(s))
		return -ENOSPC;
	pthread_mutex_lock(&g->lock);
	memcpy(s.id, g->id, sizeof(s.id));
	s.changes = g->changes;
	s.irq_level = g->irq_level;
	pthread_mutex_unlock(&g->lock);
	memcpy(buf, &s, sizeof(s));
	return (int)sizeof(s);
}

static int vmgenid_load(void *dev, const void *buf, size_t len)
{
	struct vmgenid *g = dev;
	struct vmgenid_state s;

	if (len != sizeof(s))
		return -EINVAL;
	memcpy(&s, buf, sizeof(s));
	pthread_mutex_lock(&g->lock);
	memcpy(g->id, s.id, sizeof(g->id));
	g->changes = s.changes;
	g->irq_level = s.irq_level != 0;
	irq_line_set(&g->cfg.irq, g->irq_level);
	pthread_mutex_unlock(&g->lock);
	return 0;
}

static int vmgenid_dt_node(void *dev, void *fdt, const struct dt_ctx *ctx, uint64_t base,
			   uint64_t size)
{
	struct vmgenid *g = dev;
	int node, err;

	node = dt_add_soc_node(fdt, "vmgenid", base, size);
	if (node < 0)
		return node;
	err = fdt_setprop_string(fdt, node, "compatible", "microsoft,vmgenid");
	if (!err)
		err = dt_set_plic_irq(fdt, node, ctx, g->cfg.plic_irq);
	return err;
}

const struct vdev_class vmgenid_class = {
    .name = "vmgenid",
    .mmio = &vmgenid_mmio,
    .reset = vmgenid_reset,
    .dt_node = vmgenid_dt_node,
    .free = vmgenid_free,
    .save = vmgenid_save,
    .load = vmgenid_load,
};
