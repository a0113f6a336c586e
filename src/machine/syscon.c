/*
 * syscon.c - the SiFive test device ("sifive,test0"/"sifive,test1"), used as a syscon.
 *
 * One 32-bit register at offset 0 (16-bit writes reach bits 15:0). Bits 15:0 select the action: 0x5555 pass (poweroff),
 * 0x7777 reset, 0x3333 fail with the exit code in bits 31:16. Linux drives it through the
 * syscon-poweroff/syscon-reboot nodes, OpenSBI through its "sifive,test" reset driver.
 * Reads return 0. The device has no state besides counters, so reset does nothing.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "machine/devices.h"

struct syscon {
	pthread_mutex_t lock;
	struct syscon_config cfg;
	uint64_t events; /* requests forwarded */
};

int syscon_new(const struct syscon_config *cfg, struct syscon **out)
{
	struct syscon *s = calloc(1, sizeof(*s));

	if (!s) {
		err_set("out of memory creating the test syscon");
		return -ENOMEM;
	}
	pthread_mutex_init(&s->lock, NULL);
	s->cfg = *cfg;
	*out = s;
	return 0;
}

static void syscon_free(void *dev)
{
	struct syscon *s = dev;

	if (!s)
		return;
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static void syscon_reset(void *dev)
{
}

static uint64_t syscon_read(void *opaque, uint64_t off, unsigned size)
{
	return 0;
}

static void syscon_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	struct syscon *s = opaque;
	enum board_event ev;
	uint64_t data = 0;

	/* OpenSBI's sifive_test driver stores 16 bits for reset, 32 for poweroff: take both. */
	if (off != 0 || size < 2) {
		guest_error("sifive,test: %u-byte write of %#" PRIx64 " at offset %#" PRIx64
			    " ignored (16- or 32-bit writes at 0 only)",
			    size, val, off);
		return;
	}
	switch (val & 0xffff) {
	case SYSCON_PASS:
		ev = BOARD_EVENT_POWEROFF;
		break;
	case SYSCON_RESET:
		ev = BOARD_EVENT_REBOOT;
		break;
	case SYSCON_FAIL:
		ev = BOARD_EVENT_FAIL;
		data = (val >> 16) & 0xffff;
		break;
	default:
		guest_error("sifive,test: unknown command %#" PRIx64 " ignored", val & 0xffffffff);
		return;
	}
	pthread_mutex_lock(&s->lock);
	s->events++;
	if (s->cfg.event)
		s->cfg.event(s->cfg.opaque, ev, data);
	pthread_mutex_unlock(&s->lock);
}

static const struct mmio_ops syscon_mmio = {.read = syscon_read, .write = syscon_write};

/*
 * The node as QEMU's virt has it, plus the root-level /poweroff and /reboot nodes that point
 * at it through `regmap` (Linux Documentation/devicetree/bindings/power/reset/syscon-*.yaml).
 */
static int syscon_dt_node(void *dev, void *fdt, const struct dt_ctx *ctx, uint64_t base,
			  uint64_t size)
{
	static const char compat[] = "sifive,test1\0sifive,test0\0syscon";
	static const struct {
		const char *name, *compat;
		uint32_t value;
	} users[] = {
		{"reboot", "syscon-reboot", SYSCON_RESET},
		{"poweroff", "syscon-poweroff", SYSCON_PASS},
	};
	int node, err;

	node = dt_add_soc_node(fdt, "test", base, size);
	if (node < 0)
		return node;
	err = fdt_setprop(fdt, node, "compatible", compat, sizeof(compat));
	if (err < 0)
		return err;
	err = fdt_setprop_u32(fdt, node, "phandle", ctx->test_phandle);
	if (err < 0)
		return err;
	for (unsigned i = 0; i < ARRAY_SIZE(users); i++) {
		node = fdt_add_subnode(fdt, 0, users[i].name);
		if (node < 0)
			return node;
		err = fdt_setprop_string(fdt, node, "compatible", users[i].compat);
		if (!err)
			err = fdt_setprop_u32(fdt, node, "regmap", ctx->test_phandle);
		if (!err)
			err = fdt_setprop_u32(fdt, node, "offset", 0);
		if (!err)
			err = fdt_setprop_u32(fdt, node, "value", users[i].value);
		if (err < 0)
			return err;
	}
	return 0;
}

/* Snapshot image: the syscon has no guest-visible state, only its counter. */
static int syscon_save(void *dev, void *buf, size_t cap)
{
	struct syscon *s = dev;
	uint64_t n;

	if (cap < sizeof(n))
		return -ENOSPC;
	pthread_mutex_lock(&s->lock);
	n = s->events;
	pthread_mutex_unlock(&s->lock);
	memcpy(buf, &n, sizeof(n));
	return (int)sizeof(n);
}

static int syscon_load(void *dev, const void *buf, size_t len)
{
	struct syscon *s = dev;

	if (len != sizeof(s->events))
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	memcpy(&s->events, buf, sizeof(s->events));
	pthread_mutex_unlock(&s->lock);
	return 0;
}

const struct vdev_class syscon_class = {
	.name = "test",
	.mmio = &syscon_mmio,
	.reset = syscon_reset,
	.dt_node = syscon_dt_node,
	.free = syscon_free,
	.save = syscon_save,
	.load = syscon_load,
};
