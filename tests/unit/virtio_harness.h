/*
 * virtio_harness.h - a minimal virtio driver for the unit tests (test_virtio_*.c): guest RAM
 * in a host buffer behind a memmap, a virtio-mmio transport driven through its mmio_ops, and
 * helpers that build split-ring descriptors by hand so tests can also build malformed ones.
 * Queue processing runs synchronously: kick() writes QueueNotify, then calls
 * virtio_dev_process() as the I/O thread would.
 */
#ifndef KUMO_TEST_VIRTIO_HARNESS_H
#define KUMO_TEST_VIRTIO_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kumo/memmap.h"
#include "kumo/virtio.h"
#include "machine/devices.h"

#define H_RAM_BASE 0x80000000ULL
#define H_RAM_SIZE (1ULL << 20)
#define H_DESC (H_RAM_BASE + 0x1000)
#define H_AVAIL (H_RAM_BASE + 0x2000)
#define H_USED (H_RAM_BASE + 0x3000)
#define H_INDIRECT (H_RAM_BASE + 0x8000)
#define H_BUF (H_RAM_BASE + 0x40000)
#define H_QSIZE 8

/* virtio-mmio register offsets (virtio 1.2 §4.2.2), as a driver knows them. */
enum {
	R_MAGIC = 0x000, R_VERSION = 0x004, R_DEVICE_ID = 0x008, R_VENDOR = 0x00c,
	R_DEV_FEAT = 0x010, R_DEV_FEAT_SEL = 0x014, R_DRV_FEAT = 0x020, R_DRV_FEAT_SEL = 0x024,
	R_QUEUE_SEL = 0x030, R_QUEUE_NUM_MAX = 0x034, R_QUEUE_NUM = 0x038, R_QUEUE_READY = 0x044,
	R_QUEUE_NOTIFY = 0x050, R_INT_STATUS = 0x060, R_INT_ACK = 0x064, R_STATUS = 0x070,
	R_DESC_LO = 0x080, R_DESC_HI = 0x084, R_DRIVER_LO = 0x090, R_DRIVER_HI = 0x094,
	R_DEVICE_LO = 0x0a0, R_DEVICE_HI = 0x0a4, R_CONFIG_GEN = 0x0fc, R_CONFIG = 0x100,
};

struct harness {
	uint8_t *ram;
	struct memmap *mm;
	struct virtio_dev *dev;
	struct virtio_mmio *mmio;
	bool irq;           /* the device's interrupt line */
	unsigned irq_raises;
	uint16_t avail_idx; /* driver's next avail index */
	uint16_t used_seen; /* used entries consumed by the driver */
};

static void h_irq(void *opaque, unsigned n, bool level)
{
	struct harness *h = opaque;

	if (level && !h->irq)
		h->irq_raises++;
	h->irq = level;
}

static inline void *h_ptr(struct harness *h, uint64_t gpa)
{
	return h->ram + (gpa - H_RAM_BASE);
}

/* Creates RAM and the memmap; the test then creates its device with h->mm and calls h_attach. */
static inline struct harness *h_new(void)
{
	struct harness *h = calloc(1, sizeof(*h));

	h->ram = aligned_alloc(4096, H_RAM_SIZE);
	memset(h->ram, 0, H_RAM_SIZE);
	h->mm = memmap_new();
	memmap_add_ram(h->mm, H_RAM_BASE, H_RAM_SIZE, h->ram);
	return h;
}

static inline void h_attach(struct harness *h, struct virtio_dev *dev)
{
	h->dev = dev;
	dev->irq = (struct irq_line){h_irq, h, 1};
	virtio_mmio_new(dev, 1, &h->mmio);
}

static inline void h_free(struct harness *h)
{
	if (h->mmio)
		virtio_mmio_class.free(h->mmio); /* frees the device too */
	memmap_free(h->mm);
	free(h->ram);
	free(h);
}

static inline uint32_t rd(struct harness *h, uint64_t off)
{
	return (uint32_t)virtio_mmio_class.mmio->read(h->mmio, off, 4);
}

static inline void wr(struct harness *h, uint64_t off, uint32_t val)
{
	virtio_mmio_class.mmio->write(h->mmio, off, val, 4);
}

/* Driver initialisation (virtio 1.2 §3.1.1) accepting `features`; queue q at the H_ areas. */
static inline void h_init_queue(struct harness *h, unsigned q, uint16_t size)
{
	wr(h, R_QUEUE_SEL, q);
	wr(h, R_QUEUE_NUM, size);
	wr(h, R_DESC_LO, (uint32_t)(H_DESC + q * 0x10000)); /* queues 64 KiB apart */
	wr(h, R_DESC_HI, 0);
	wr(h, R_DRIVER_LO, (uint32_t)(H_AVAIL + q * 0x10000));
	wr(h, R_DRIVER_HI, 0);
	wr(h, R_DEVICE_LO, (uint32_t)(H_USED + q * 0x10000));
	wr(h, R_DEVICE_HI, 0);
	wr(h, R_QUEUE_READY, 1);
}

static inline void h_init(struct harness *h, uint64_t features)
{
	wr(h, R_STATUS, 0);
	wr(h, R_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	wr(h, R_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(h, R_DRV_FEAT_SEL, 0);
	wr(h, R_DRV_FEAT, (uint32_t)features);
	wr(h, R_DRV_FEAT_SEL, 1);
	wr(h, R_DRV_FEAT, (uint32_t)(features >> 32));
	wr(h, R_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			       VIRTIO_STATUS_FEATURES_OK);
	for (unsigned q = 0; q < h->dev->num_queues && q < 4; q++) {
		memset(h_ptr(h, H_DESC + q * 0x10000), 0, 0x3000 + 0x100);
		h_init_queue(h, q, H_QSIZE);
	}
	wr(h, R_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			       VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	h->avail_idx = 0;
	h->used_seen = 0;
}

#define H_FEATURES \
	((1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_F_INDIRECT_DESC) | \
	 (1ULL << VIRTIO_F_EVENT_IDX))

static inline struct virtq_desc *h_desc(struct harness *h, unsigned q, unsigned i)
{
	return (struct virtq_desc *)h_ptr(h, H_DESC + q * 0x10000) + i;
}

static inline void h_set_desc(struct harness *h, unsigned q, unsigned i, uint64_t addr,
			      uint32_t len, uint16_t flags, uint16_t next)
{
	*h_desc(h, q, i) = (struct virtq_desc){addr, len, flags, next};
}

static inline uint16_t *h_avail(struct harness *h, unsigned q)
{
	return h_ptr(h, H_AVAIL + q * 0x10000);
}

static inline uint16_t *h_used(struct harness *h, unsigned q)
{
	return h_ptr(h, H_USED + q * 0x10000);
}

/* Makes chain `head` available on queue q (does not notify). */
static inline void h_offer(struct harness *h, unsigned q, uint16_t head)
{
	uint16_t *av = h_avail(h, q);

	av[2 + h->avail_idx % H_QSIZE] = head;
	h->avail_idx++;
	__atomic_store_n(&av[1], h->avail_idx, __ATOMIC_RELEASE);
}

static inline void h_kick(struct harness *h, unsigned q)
{
	wr(h, R_QUEUE_NOTIFY, q);
	virtio_dev_process(h->dev);
}

/* Used-ring entry i of queue q. */
static inline void h_used_elem(struct harness *h, unsigned q, unsigned i, uint32_t *id,
			       uint32_t *len)
{
	uint32_t *e = (uint32_t *)((uint8_t *)h_used(h, q) + 4 + 8 * (i % H_QSIZE));

	*id = e[0];
	*len = e[1];
}

#endif
