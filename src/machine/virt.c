/*
 * virt.c - the "virt" board: one table of addresses (QEMU 7.2's riscv virt layout), the devices
 * wired to it, and the device tree built by walking them.
 *
 * Interrupt wiring: devices -> PLIC sources (irq_line with n = source); PLIC contexts and CLINT
 * MSIP -> harts through one irq_line trampoline whose n packs hart << 4 | mip bit; mtimecmp
 * and syscon requests go straight to the hooks. Nothing reaches a hook before board_reset().
 */
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "kumo/board.h"
#include "kumo/virtio.h"
#include "machine/devices.h"

enum virt_region_id {
	VIRT_R_TEST,
	VIRT_R_RTC,
	VIRT_R_VMGENID,
	VIRT_R_CLINT,
	VIRT_R_PLIC,
	VIRT_R_UART0,
	VIRT_R_VIRTIO, /* reserved for the 8 virtio-mmio slots, not populated yet */
	VIRT_R_DRAM,
	VIRT_R__COUNT,
};

/* The board's single address table, sorted by address. */
static const struct virt_region {
	const char *name;
	uint64_t base, size;
} virt_map[VIRT_R__COUNT] = {
	[VIRT_R_TEST] = {"test", VIRT_TEST_BASE, VIRT_TEST_SIZE},
	[VIRT_R_RTC] = {"rtc", VIRT_RTC_BASE, VIRT_RTC_SIZE},
	[VIRT_R_VMGENID] = {"vmgenid", VIRT_VMGENID_BASE, VIRT_VMGENID_SIZE},
	[VIRT_R_CLINT] = {"clint", VIRT_CLINT_BASE, VIRT_CLINT_SIZE},
	[VIRT_R_PLIC] = {"plic", VIRT_PLIC_BASE, VIRT_PLIC_SIZE},
	[VIRT_R_UART0] = {"serial", VIRT_UART0_BASE, VIRT_UART0_SIZE},
	[VIRT_R_VIRTIO] = {"virtio_mmio", VIRT_VIRTIO_BASE, VIRT_VIRTIO_SIZE * VIRT_VIRTIO_COUNT},
	[VIRT_R_DRAM] = {"dram", VIRT_DRAM_BASE, BOARD_MAX_RAM},
};

/* Free space left in the device-tree blob for firmware that edits it in place (OpenSBI). */
#define VIRT_DT_SLACK (64u << 10)
#define VIRT_DEFAULT_ISA "rv64imafdc_zicsr_zifencei"
#define VIRT_CACHE_BLOCK 64 /* riscv,cbom/cboz-block-size when Zicbom/Zicboz are advertised */
#define VIRT_MAX_DEVS (8 + VIRT_VIRTIO_COUNT)

struct board_dev {
	const struct vdev_class *cls;
	void *dev;
	enum virt_region_id region;
	uint64_t base, size; /* a slot inside the region (virtio); size 0: the whole region */
};

struct board {
	struct board_config cfg; /* strings point at the copies below */
	char *isa, *mmu_type, *bootargs;
	struct memmap *mm;
	struct plic *plic;
	struct uart8250 *uart;
	struct vmgenid *vmgenid;
	struct board_dev devs[VIRT_MAX_DEVS]; /* in address-table order */
	unsigned ndevs;
	struct irq_line msip[BOARD_MAX_CPUS];
	struct irq_line plic_ctx[2 * BOARD_MAX_CPUS];
	unsigned nvirtio; /* virtio-mmio slots populated, from slot 0 up */
};

/* --- hook trampolines --- */

static void virt_cpu_irq(void *opaque, unsigned n, bool level)
{
	struct board *b = opaque;

	if (b->cfg.hooks.cpu_irq)
		b->cfg.hooks.cpu_irq(b->cfg.hooks.opaque, n >> 4, n & 15, level);
}

static void virt_cpu_timer(void *opaque, unsigned hart, uint64_t mtimecmp)
{
	struct board *b = opaque;

	if (b->cfg.hooks.cpu_timer)
		b->cfg.hooks.cpu_timer(b->cfg.hooks.opaque, hart, mtimecmp);
}

static void virt_system_event(void *opaque, enum board_event ev, uint64_t data)
{
	struct board *b = opaque;

	if (b->cfg.hooks.system_event)
		b->cfg.hooks.system_event(b->cfg.hooks.opaque, ev, data);
}

static void virt_console_tx(void *opaque, const uint8_t *buf, size_t len)
{
	struct board *b = opaque;

	if (b->cfg.hooks.console_write)
		b->cfg.hooks.console_write(b->cfg.hooks.opaque, buf, len);
}

static void virt_console_rx_ready(void *opaque)
{
	struct board *b = opaque;

	if (b->cfg.hooks.console_rx_ready)
		b->cfg.hooks.console_rx_ready(b->cfg.hooks.opaque);
}

/* --- the ISA string --- */

static bool isa_list_has(const char *list, size_t len, const char *ext, size_t elen)
{
	for (size_t i = 0; i < len; i += strlen(list + i) + 1)
		if (strlen(list + i) == elen && !memcmp(list + i, ext, elen))
			return true;
	return false;
}

static void isa_list_add(char *list, size_t *len, const char *ext, size_t elen)
{
	if (isa_list_has(list, *len, ext, elen))
		return;
	memcpy(list + *len, ext, elen);
	list[*len + elen] = '\0';
	*len += elen + 1;
}

/*
 * Turns an ISA string ("rv64imafdc_zicsr_zifencei_sstc") into the riscv,isa-extensions string
 * list ("i", "m", ..., "zicsr", ...): single letters up to the first '_', then each
 * '_'-separated multi-letter extension (unpriv 20191213 §27 "ISA Extension Naming
 * Conventions"; "g" stands for "imafd_zicsr_zifencei"). `list` needs 2 * strlen(isa) + 32
 * bytes. Version numbers are not accepted.
 */
static int isa_to_list(const char *isa, char *list, size_t *len)
{
	const char *p = isa + 4;

	*len = 0;
	if (strncmp(isa, "rv64", 4) || (*p != 'i' && *p != 'g')) {
		err_set("ISA string '%s' must start with rv64i or rv64g", isa);
		return -EINVAL;
	}
	for (; *p && *p != '_'; p++) {
		if (*p == 'g') {
			for (const char *q = "imafd"; *q; q++)
				isa_list_add(list, len, q, 1);
			isa_list_add(list, len, "zicsr", 5);
			isa_list_add(list, len, "zifencei", 8);
		} else if (*p >= 'a' && *p <= 'z') {
			isa_list_add(list, len, p, 1);
		} else {
			err_set("ISA string '%s': '%c' is not a single-letter extension", isa, *p);
			return -EINVAL;
		}
	}
	while (*p == '_') {
		const char *ext = ++p;

		while ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))
			p++;
		if (p == ext || (*p && *p != '_')) {
			err_set("ISA string '%s': malformed extension name at '%s'", isa, ext);
			return -EINVAL;
		}
		isa_list_add(list, len, ext, (size_t)(p - ext));
	}
	return 0;
}

/* --- board lifecycle --- */

static int virt_validate(const struct board_config *cfg)
{
	static const char *const mmu_types[] = {"riscv,sv39", "riscv,sv48", "riscv,sv57",
						"riscv,none"};
	uint64_t ram_end;
	bool ok = false;

	if (cfg->ncpus < 1 || cfg->ncpus > BOARD_MAX_CPUS) {
		err_set("the virt board takes 1 to %d harts, not %u", BOARD_MAX_CPUS, cfg->ncpus);
		return -EINVAL;
	}
	if (cfg->ram_size < BOARD_MIN_RAM || cfg->ram_size > BOARD_MAX_RAM ||
	    cfg->ram_size % 4096) {
		err_set("RAM size %" PRIu64 " bytes is not a multiple of 4 KiB between %llu MiB and "
			"%llu GiB",
			cfg->ram_size, BOARD_MIN_RAM >> 20, BOARD_MAX_RAM >> 30);
		return -EINVAL;
	}
	if (cfg->isa) {
		char *list = malloc(2 * strlen(cfg->isa) + 32);
		size_t len;
		int ret;

		if (!list) {
			err_set("out of memory");
			return -ENOMEM;
		}
		ret = isa_to_list(cfg->isa, list, &len);
		free(list);
		if (ret)
			return ret;
	}
	if (cfg->mmu_type) {
		for (unsigned i = 0; i < ARRAY_SIZE(mmu_types); i++)
			ok |= !strcmp(cfg->mmu_type, mmu_types[i]);
		if (!ok) {
			err_set("unknown mmu-type '%s' (riscv,sv39, riscv,sv48, riscv,sv57 or "
				"riscv,none)",
				cfg->mmu_type);
			return -EINVAL;
		}
	}
	ram_end = VIRT_DRAM_BASE + cfg->ram_size;
	if ((cfg->initrd_start || cfg->initrd_end) &&
	    (cfg->initrd_start >= cfg->initrd_end || cfg->initrd_start < VIRT_DRAM_BASE ||
	     cfg->initrd_end > ram_end)) {
		err_set("initrd 0x%" PRIx64 "..0x%" PRIx64 " is not a non-empty range inside RAM",
			cfg->initrd_start, cfg->initrd_end);
		return -EINVAL;
	}
	return 0;
}

static char *dup_or_null(const char *s, bool *failed)
{
	char *d;

	if (!s)
		return NULL;
	d = strdup(s);
	if (!d)
		*failed = true;
	return d;
}

static int virt_add_dev(struct board *b, const struct vdev_class *cls, void *dev,
			enum virt_region_id region)
{
	const struct virt_region *r = &virt_map[region];
	int ret;

	b->devs[b->ndevs++] = (struct board_dev){.cls = cls, .dev = dev, .region = region};
	ret = memmap_add_mmio(b->mm, r->name, r->base, r->size, cls->mmio, dev);
	if (ret)
		err_set("cannot map %s at 0x%" PRIx64 " (%s)", r->name, r->base, strerror(-ret));
	return ret;
}

/* Creates the devices in dependency order (the PLIC first) and maps them. */
static int virt_create_devices(struct board *b)
{
	unsigned ncpus = b->cfg.ncpus;
	struct aclint *clint;
	struct goldfish_rtc *rtc;
	struct syscon *test;
	int ret;

	for (unsigned h = 0; h < ncpus; h++) {
		b->msip[h] = (struct irq_line){virt_cpu_irq, b, h << 4 | ACCEL_IRQ_MSI};
		b->plic_ctx[2 * h] = (struct irq_line){virt_cpu_irq, b, h << 4 | ACCEL_IRQ_MEI};
		b->plic_ctx[2 * h + 1] = (struct irq_line){virt_cpu_irq, b, h << 4 | ACCEL_IRQ_SEI};
	}

	ret = syscon_new(&(struct syscon_config){.event = virt_system_event, .opaque = b}, &test);
	if (ret)
		return ret;
	ret = virt_add_dev(b, &syscon_class, test, VIRT_R_TEST);
	if (ret)
		return ret;

	ret = plic_new(&(struct plic_config){.ncpus = ncpus, .ctx = b->plic_ctx}, &b->plic);
	if (ret)
		return ret;
	ret = goldfish_rtc_new(&(struct goldfish_rtc_config){.irq = {plic_set_irq, b->plic,
								     VIRT_RTC_IRQ},
							     .plic_irq = VIRT_RTC_IRQ},
			       &rtc);
	if (ret)
		goto out_plic;
	ret = virt_add_dev(b, &goldfish_rtc_class, rtc, VIRT_R_RTC);
	if (ret)
		goto out_plic;
	ret = vmgenid_new(&(struct vmgenid_config){.irq = {plic_set_irq, b->plic, VIRT_VMGENID_IRQ},
						    .plic_irq = VIRT_VMGENID_IRQ},
			  &b->vmgenid);
	if (ret)
		goto out_plic;
	ret = virt_add_dev(b, &vmgenid_class, b->vmgenid, VIRT_R_VMGENID);
	if (ret)
		goto out_plic;

	ret = aclint_new(&(struct aclint_config){.ncpus = ncpus,
						 .msip = b->msip,
						 .timer = virt_cpu_timer,
						 .opaque = b},
			 &clint);
	if (ret)
		goto out_plic;
	ret = virt_add_dev(b, &aclint_class, clint, VIRT_R_CLINT);
	if (ret)
		goto out_plic;

	ret = virt_add_dev(b, &plic_class, b->plic, VIRT_R_PLIC);
	if (ret)
		return ret;

	ret = uart8250_new(&(struct uart8250_config){.irq = {plic_set_irq, b->plic, VIRT_UART0_IRQ},
						     .tx = virt_console_tx,
						     .rx_ready = virt_console_rx_ready,
						     .opaque = b,
						     .plic_irq = VIRT_UART0_IRQ},
			   &b->uart);
	if (ret)
		return ret;
	return virt_add_dev(b, &uart8250_class, b->uart, VIRT_R_UART0);

out_plic:
	/* Not yet in the device list: free it here. */
	plic_class.free(b->plic);
	b->plic = NULL;
	return ret;
}

int board_new(const struct board_config *cfg, struct board **out)
{
	struct board *b;
	bool failed = false;
	int ret;

	if (!cfg || !out) {
		err_set("board_new: no configuration");
		return -EINVAL;
	}
	ret = virt_validate(cfg);
	if (ret)
		return ret;
	b = calloc(1, sizeof(*b));
	if (!b)
		goto out_nomem;
	b->cfg = *cfg;
	b->isa = dup_or_null(cfg->isa ? cfg->isa : VIRT_DEFAULT_ISA, &failed);
	b->mmu_type = dup_or_null(cfg->mmu_type, &failed);
	b->bootargs = dup_or_null(cfg->bootargs, &failed);
	b->cfg.isa = b->isa;
	b->cfg.mmu_type = b->mmu_type;
	b->cfg.bootargs = b->bootargs;
	b->mm = memmap_new();
	if (failed || !b->mm)
		goto out_free;
	ret = virt_create_devices(b);
	if (ret)
		goto out_board;
	*out = b;
	return 0;

out_free:
	board_free(b);
out_nomem:
	err_set("out of memory creating the board");
	return -ENOMEM;
out_board:
	board_free(b);
	return ret;
}

void board_free(struct board *b)
{
	if (!b)
		return;
	for (unsigned i = b->ndevs; i-- > 0;)
		b->devs[i].cls->free(b->devs[i].dev);
	memmap_free(b->mm);
	free(b->isa);
	free(b->mmu_type);
	free(b->bootargs);
	free(b);
}

struct memmap *board_memmap(struct board *b)
{
	return b->mm;
}

void board_set_initrd(struct board *b, uint64_t start, uint64_t end)
{
	b->cfg.initrd_start = start;
	b->cfg.initrd_end = end;
}

int board_add_virtio(struct board *b, struct virtio_dev *dev)
{
	unsigned slot = b->nvirtio, irq = VIRT_VIRTIO_IRQ + slot;
	uint64_t base = VIRT_VIRTIO_BASE + slot * VIRT_VIRTIO_SIZE;
	struct virtio_mmio *m;
	char name[32];
	int ret;

	if (slot >= VIRT_VIRTIO_COUNT || b->ndevs >= VIRT_MAX_DEVS) {
		err_set("too many virtio devices: the virt board has %d slots", VIRT_VIRTIO_COUNT);
		return -ENOSPC;
	}
	dev->irq = (struct irq_line){plic_set_irq, b->plic, irq};
	ret = virtio_mmio_new(dev, irq, &m);
	if (ret)
		return ret;
	snprintf(name, sizeof(name), "virtio_mmio%u", slot);
	ret = memmap_add_mmio(b->mm, name, base, VIRT_VIRTIO_SIZE, virtio_mmio_class.mmio, m);
	if (ret) {
		free(m);
		err_set("cannot map virtio slot %u at 0x%" PRIx64 " (%s)", slot, base, strerror(-ret));
		return ret;
	}
	/* Slots come after the UART and before RAM: the list stays in address order. */
	b->devs[b->ndevs++] = (struct board_dev){.cls = &virtio_mmio_class, .dev = m,
						 .region = VIRT_R_VIRTIO, .base = base,
						 .size = VIRT_VIRTIO_SIZE};
	b->nvirtio++;
	return 0;
}

size_t board_console_input(struct board *b, const uint8_t *buf, size_t len)
{
	return uart8250_receive(b->uart, buf, len);
}

bool board_console_break(struct board *b)
{
	return uart8250_break(b->uart);
}

size_t board_console_room(struct board *b)
{
	return uart8250_rx_room(b->uart);
}

void board_reset(struct board *b)
{
	for (unsigned i = b->ndevs; i-- > 0;)
		b->devs[i].cls->reset(b->devs[i].dev);
}

/* --- snapshots: one record per device, in device-list order --- */

struct board_rec {
	char name[16];  /* the class name */
	uint64_t base;  /* the device's address */
	uint32_t len;   /* bytes of state that follow */
	uint32_t pad;
};

#define BOARD_DEV_STATE_MAX (64u << 10)

static uint64_t board_dev_base(const struct board_dev *d)
{
	return d->size ? d->base : virt_map[d->region].base;
}

int board_save(struct board *b, void **out, size_t *len)
{
	size_t cap = b->ndevs * (sizeof(struct board_rec) + BOARD_DEV_STATE_MAX), used = 0;
	uint8_t *buf;

	for (unsigned i = 0; i < b->ndevs; i++)
		if (!b->devs[i].cls->save) {
			err_set("the %s device at 0x%" PRIx64 " cannot be saved in a snapshot yet",
				b->devs[i].cls->name, board_dev_base(&b->devs[i]));
			return -EOPNOTSUPP;
		}
	buf = calloc(1, cap); /* padding between records is zero: equal states, equal bytes */
	if (!buf) {
		err_set("out of memory saving device state");
		return -ENOMEM;
	}
	for (unsigned i = 0; i < b->ndevs; i++) {
		const struct board_dev *d = &b->devs[i];
		struct board_rec rec = {.base = board_dev_base(d)};
		int n = d->cls->save(d->dev, buf + used + sizeof(rec), BOARD_DEV_STATE_MAX);

		if (n < 0) {
			free(buf);
			err_set("cannot save the %s device (%s)", d->cls->name, strerror(-n));
			return n;
		}
		snprintf(rec.name, sizeof(rec.name), "%s", d->cls->name);
		rec.len = (uint32_t)n;
		memcpy(buf + used, &rec, sizeof(rec));
		used += sizeof(rec) + ALIGN_UP((size_t)n, 8);
	}
	*out = buf;
	*len = used;
	return 0;
}

int board_load(struct board *b, const void *buf, size_t len)
{
	const uint8_t *in = buf;
	size_t off = 0;

	for (unsigned i = 0; i < b->ndevs; i++) {
		const struct board_dev *d = &b->devs[i];
		struct board_rec rec;
		int ret;

		if (len - off < sizeof(rec)) {
			err_set("device state ends before the %s device", d->cls->name);
			return -EINVAL;
		}
		memcpy(&rec, in + off, sizeof(rec));
		off += sizeof(rec);
		if (strncmp(rec.name, d->cls->name, sizeof(rec.name)) ||
		    rec.base != board_dev_base(d) || rec.len > len - off || !d->cls->load) {
			err_set("device state does not match this board at the %s device (0x%" PRIx64 ")",
				d->cls->name, board_dev_base(d));
			return -EINVAL;
		}
		ret = d->cls->load(d->dev, in + off, rec.len);
		if (ret) {
			err_set("the saved state of the %s device is invalid", d->cls->name);
			return ret;
		}
		off += ALIGN_UP((size_t)rec.len, 8);
		if (off > len)
			off = len;
	}
	if (off != len) {
		err_set("device state has %zu bytes more than this board's devices", len - off);
		return -EINVAL;
	}
	return 0;
}

int board_vmgenid_new_generation(struct board *b)
{
	return vmgenid_new_generation(b->vmgenid);
}

void board_vmgenid(struct board *b, uint8_t id[16])
{
	vmgenid_get(b->vmgenid, id);
}

/* --- the device tree (Linux Documentation/devicetree/bindings/riscv/cpus.yaml, ---
 * --- Devicetree Specification 0.4 §3 "Device Node Requirements")             --- */

static int dt_cpu(struct board *b, void *fdt, int cpus, unsigned h, const struct dt_ctx *ctx,
		  const char *exts, size_t exts_len)
{
	char name[32];
	int node, intc, err;

	snprintf(name, sizeof(name), "cpu@%u", h);
	node = fdt_add_subnode(fdt, cpus, name);
	if (node < 0)
		return node;
	err = fdt_setprop_string(fdt, node, "device_type", "cpu");
	if (!err)
		err = fdt_setprop_u32(fdt, node, "reg", h);
	if (!err)
		err = fdt_setprop_string(fdt, node, "status", "okay");
	if (!err)
		err = fdt_setprop_string(fdt, node, "compatible", "riscv");
	if (!err)
		err = fdt_setprop_string(fdt, node, "riscv,isa", b->cfg.isa);
	if (!err)
		err = fdt_setprop_string(fdt, node, "riscv,isa-base", "rv64i");
	if (!err)
		err = fdt_setprop(fdt, node, "riscv,isa-extensions", exts, (int)exts_len);
	if (!err && b->cfg.mmu_type)
		err = fdt_setprop_string(fdt, node, "mmu-type", b->cfg.mmu_type);
	if (!err && isa_list_has(exts, exts_len, "zicbom", 6))
		err = fdt_setprop_u32(fdt, node, "riscv,cbom-block-size", VIRT_CACHE_BLOCK);
	if (!err && isa_list_has(exts, exts_len, "zicboz", 6))
		err = fdt_setprop_u32(fdt, node, "riscv,cboz-block-size", VIRT_CACHE_BLOCK);
	if (!err)
		err = fdt_setprop_u32(fdt, node, "phandle", ctx->cpu_phandle[h]);
	if (err)
		return err;

	/* Linux Documentation/devicetree/bindings/interrupt-controller/riscv,cpu-intc.yaml */
	intc = fdt_add_subnode(fdt, node, "interrupt-controller");
	if (intc < 0)
		return intc;
	err = fdt_setprop_u32(fdt, intc, "#interrupt-cells", 1);
	if (!err) /* dtc's interrupt_provider check wants it; nothing is addressed through it */
		err = fdt_setprop_u32(fdt, intc, "#address-cells", 0);
	if (!err)
		err = fdt_setprop_empty(fdt, intc, "interrupt-controller");
	if (!err)
		err = fdt_setprop_string(fdt, intc, "compatible", "riscv,cpu-intc");
	if (!err)
		err = fdt_setprop_u32(fdt, intc, "phandle", ctx->intc_phandle[h]);
	return err;
}

static int dt_cpus(struct board *b, void *fdt, const struct dt_ctx *ctx)
{
	size_t exts_len;
	char *exts = malloc(2 * strlen(b->cfg.isa) + 32);
	int cpus, map, cluster, err;

	if (!exts)
		return -FDT_ERR_NOSPACE;
	err = isa_to_list(b->cfg.isa, exts, &exts_len);
	if (err) {
		free(exts);
		return -FDT_ERR_BADVALUE;
	}
	cpus = fdt_add_subnode(fdt, 0, "cpus");
	err = cpus < 0 ? cpus : 0;
	if (!err)
		err = fdt_setprop_u32(fdt, cpus, "#address-cells", 1);
	if (!err)
		err = fdt_setprop_u32(fdt, cpus, "#size-cells", 0);
	if (!err)
		err = fdt_setprop_u32(fdt, cpus, "timebase-frequency", (uint32_t)KUMO_TIMEBASE_HZ);
	if (err)
		goto out;

	/* Linux Documentation/devicetree/bindings/cpu/cpu-topology.txt: one cluster. */
	map = fdt_add_subnode(fdt, cpus, "cpu-map");
	cluster = map < 0 ? map : fdt_add_subnode(fdt, map, "cluster0");
	if (cluster < 0) {
		err = cluster;
		goto out;
	}
	/* fdt_add_subnode() inserts first: add in reverse so nodes read in ascending order. */
	for (unsigned h = ctx->ncpus; h-- > 0;) {
		char name[32];
		int core;

		snprintf(name, sizeof(name), "core%u", h);
		core = fdt_add_subnode(fdt, cluster, name);
		err = core < 0 ? core : fdt_setprop_u32(fdt, core, "cpu", ctx->cpu_phandle[h]);
		if (err)
			goto out;
	}
	for (unsigned h = ctx->ncpus; h-- > 0;) {
		cpus = fdt_path_offset(fdt, "/cpus");
		err = cpus < 0 ? cpus : dt_cpu(b, fdt, cpus, h, ctx, exts, exts_len);
		if (err)
			goto out;
	}
out:
	free(exts);
	return err;
}

static int dt_memory(struct board *b, void *fdt)
{
	char name[32];
	fdt64_t reg[2] = {cpu_to_fdt64(VIRT_DRAM_BASE), cpu_to_fdt64(b->cfg.ram_size)};
	int node, err;

	snprintf(name, sizeof(name), "memory@%" PRIx64, (uint64_t)VIRT_DRAM_BASE);
	node = fdt_add_subnode(fdt, 0, name);
	if (node < 0)
		return node;
	err = fdt_setprop_string(fdt, node, "device_type", "memory");
	return err ? err : fdt_setprop(fdt, node, "reg", reg, sizeof(reg));
}

/* Devicetree Specification 0.4 §3.6 "/chosen Node"; Linux's linux,initrd-* properties. */
static int dt_chosen(struct board *b, void *fdt)
{
	const struct board_config *c = &b->cfg;
	char path[64];
	uint8_t seed[32];
	int node, err = 0;

	node = fdt_add_subnode(fdt, 0, "chosen");
	if (node < 0)
		return node;
	if (c->bootargs && c->bootargs[0])
		err = fdt_setprop_string(fdt, node, "bootargs", c->bootargs);
	snprintf(path, sizeof(path), "/soc/%s@%" PRIx64, virt_map[VIRT_R_UART0].name,
		 virt_map[VIRT_R_UART0].base);
	if (!err)
		err = fdt_setprop_string(fdt, node, "stdout-path", path);
	if (!err && c->initrd_start) {
		err = fdt_setprop_u64(fdt, node, "linux,initrd-start", c->initrd_start);
		if (!err)
			err = fdt_setprop_u64(fdt, node, "linux,initrd-end", c->initrd_end);
	}
	/* Seeds the guest's RNG early, as QEMU does; skipped if the host has no entropy yet. */
	if (!err && getrandom(seed, sizeof(seed), GRND_NONBLOCK) == (ssize_t)sizeof(seed))
		err = fdt_setprop(fdt, node, "rng-seed", seed, sizeof(seed));
	return err;
}

static int dt_build(struct board *b, void *fdt, const struct dt_ctx *ctx)
{
	int soc, err;

	err = fdt_setprop_u32(fdt, 0, "#address-cells", 2);
	if (!err)
		err = fdt_setprop_u32(fdt, 0, "#size-cells", 2);
	if (!err)
		err = fdt_setprop_string(fdt, 0, "compatible", "riscv-virtio");
	if (!err)
		err = fdt_setprop_string(fdt, 0, "model", "riscv-virtio,kumo");
	if (err)
		return err;

	/* Root children are added last-first: soc, cpus, memory, chosen. */
	soc = fdt_add_subnode(fdt, 0, "soc");
	if (soc < 0)
		return soc;
	err = fdt_setprop_u32(fdt, soc, "#address-cells", 2);
	if (!err)
		err = fdt_setprop_u32(fdt, soc, "#size-cells", 2);
	if (!err)
		err = fdt_setprop_string(fdt, soc, "compatible", "simple-bus");
	if (!err)
		err = fdt_setprop_empty(fdt, soc, "ranges");
	for (unsigned i = b->ndevs; !err && i-- > 0;) {
		const struct board_dev *d = &b->devs[i];
		const struct virt_region *r = &virt_map[d->region];

		err = d->size ? d->cls->dt_node(d->dev, fdt, ctx, d->base, d->size)
			      : d->cls->dt_node(d->dev, fdt, ctx, r->base, r->size);
	}
	if (!err)
		err = dt_cpus(b, fdt, ctx);
	if (!err)
		err = dt_memory(b, fdt);
	if (!err)
		err = dt_chosen(b, fdt);
	return err;
}

int board_dt_build(struct board *b, void *buf, size_t size)
{
	struct dt_ctx ctx = {.ncpus = b->cfg.ncpus};
	int bufsize = size > INT_MAX ? INT_MAX : (int)size;
	uint32_t phandle = 1;
	int err, used;

	if (b->cfg.initrd_start &&
	    (b->cfg.initrd_start >= b->cfg.initrd_end || b->cfg.initrd_start < VIRT_DRAM_BASE ||
	     b->cfg.initrd_end > VIRT_DRAM_BASE + b->cfg.ram_size)) {
		err_set("initrd 0x%" PRIx64 "..0x%" PRIx64 " is not a non-empty range inside RAM",
			b->cfg.initrd_start, b->cfg.initrd_end);
		return -EINVAL;
	}
	for (unsigned h = 0; h < ctx.ncpus; h++) {
		ctx.cpu_phandle[h] = phandle++;
		ctx.intc_phandle[h] = phandle++;
	}
	ctx.plic_phandle = phandle++;
	ctx.test_phandle = phandle++;

	err = fdt_create_empty_tree(buf, bufsize);
	if (!err)
		err = dt_build(b, buf, &ctx);
	if (!err)
		err = fdt_pack(buf);
	if (err)
		goto out_err;
	used = (int)fdt_totalsize(buf);
	err = fdt_open_into(buf, buf, bufsize - used > (int)VIRT_DT_SLACK ? used + (int)VIRT_DT_SLACK
									     : bufsize);
	if (err)
		goto out_err;
	return (int)fdt_totalsize(buf);

out_err:
	if (err == -FDT_ERR_NOSPACE) {
		err_set("the device tree does not fit in %zu bytes", size);
		return -ENOSPC;
	}
	err_set("cannot build the device tree: %s", fdt_strerror(err));
	return -EINVAL;
}
