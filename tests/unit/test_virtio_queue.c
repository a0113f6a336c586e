/*
 * test_virtio_queue.c - the virtio core and the virtio-mmio transport: register semantics,
 * the status/feature handshake, queue set-up checks, split-ring processing with indirect
 * tables and EVENT_IDX, and every malformed ring a guest can build (each must end in
 * DEVICE_NEEDS_RESET with a configuration-change interrupt, never a crash or a host access
 * outside guest RAM; run under ASan with `make asan`).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kumo/base.h"
#include "virtio_harness.h"

/* A device that records what it pops and completes each request with in_len bytes. */
struct rec {
	int rets[16];
	unsigned nrets;
	struct virtq_elem elem;
	struct virtq_elem last; /* the last element taken */
	bool hold;              /* pop but do not push */
};

static void rec_notify(struct virtio_dev *d, unsigned q)
{
	struct rec *r = d->priv;
	int ret;

	while ((ret = virtq_pop(d, q, &r->elem)) != 0) {
		if (r->nrets < 16)
			r->rets[r->nrets++] = ret;
		if (ret < 0)
			break;
		r->last = r->elem;
		if (!r->hold)
			virtq_push(d, q, &r->elem, (uint32_t)r->elem.in_len);
	}
	virtq_notify(d, q);
}

static const struct virtio_dev_ops rec_ops = {
	.name = "virtio-test",
	.device_id = 42,
	.num_queues = 2,
	.queue_max = 16,
	.features = 1ULL << 3,
	.config_size = 8,
	.queue_notify = rec_notify,
};

struct ctx {
	struct harness *h;
	struct rec rec;
};

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));
	struct virtio_dev *d;

	c->h = h_new();
	assert_int_equal(virtio_dev_new(&rec_ops, c->h->mm, &c->rec, &d), 0);
	d->config[0] = 0x11;
	d->config[4] = 0x44;
	h_attach(c->h, d);
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;

	h_free(c->h);
	free(c);
	return 0;
}

static bool needs_reset(struct harness *h)
{
	return rd(h, R_STATUS) & VIRTIO_STATUS_NEEDS_RESET;
}

/* --- registers and handshake --- */

static void test_identity_registers(void **state)
{
	struct harness *h = ((struct ctx *)*state)->h;

	assert_int_equal(rd(h, R_MAGIC), 0x74726976);
	assert_int_equal(rd(h, R_VERSION), 2);
	assert_int_equal(rd(h, R_DEVICE_ID), 42);
	assert_int_equal(rd(h, R_VENDOR), VIRTIO_MMIO_VENDOR);
	wr(h, R_DEV_FEAT_SEL, 0);
	assert_int_equal(rd(h, R_DEV_FEAT), (1u << 3) | (1u << VIRTIO_F_INDIRECT_DESC) |
						   (1u << VIRTIO_F_EVENT_IDX));
	wr(h, R_DEV_FEAT_SEL, 1);
	assert_int_equal(rd(h, R_DEV_FEAT), 1u << (VIRTIO_F_VERSION_1 - 32));
	wr(h, R_DEV_FEAT_SEL, 2);
	assert_int_equal(rd(h, R_DEV_FEAT), 0);
	wr(h, R_QUEUE_SEL, 1);
	assert_int_equal(rd(h, R_QUEUE_NUM_MAX), 16);
	wr(h, R_QUEUE_SEL, 2); /* no such queue */
	assert_int_equal(rd(h, R_QUEUE_NUM_MAX), 0);
	/* Config space: any width; control registers: 32-bit only. */
	assert_int_equal(virtio_mmio_class.mmio->read(h->mmio, R_CONFIG, 1), 0x11);
	assert_int_equal(virtio_mmio_class.mmio->read(h->mmio, R_CONFIG + 4, 4), 0x44);
	assert_int_equal(virtio_mmio_class.mmio->read(h->mmio, R_CONFIG + 6, 4), 0); /* past end */
	assert_int_equal(virtio_mmio_class.mmio->read(h->mmio, R_MAGIC, 2), 0);
	assert_int_equal(rd(h, R_STATUS), 0);
}

static void test_features_ok_needs_version_1(void **state)
{
	struct harness *h = ((struct ctx *)*state)->h;

	wr(h, R_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(h, R_DRV_FEAT_SEL, 0);
	wr(h, R_DRV_FEAT, 1u << 3);
	wr(h, R_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	assert_false(rd(h, R_STATUS) & VIRTIO_STATUS_FEATURES_OK);
	/* An unoffered bit is refused too. */
	wr(h, R_DRV_FEAT_SEL, 1);
	wr(h, R_DRV_FEAT, 1);
	wr(h, R_DRV_FEAT_SEL, 0);
	wr(h, R_DRV_FEAT, 1u << 5);
	wr(h, R_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	assert_false(rd(h, R_STATUS) & VIRTIO_STATUS_FEATURES_OK);
	wr(h, R_DRV_FEAT, 1u << 3);
	wr(h, R_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	assert_true(rd(h, R_STATUS) & VIRTIO_STATUS_FEATURES_OK);
	/* Features are frozen after FEATURES_OK. */
	wr(h, R_DRV_FEAT, 0);
	assert_true(h->dev->driver_features & (1u << 3));
	/* DRIVER_OK without FEATURES_OK is refused; clearing bits is ignored; 0 resets. */
	wr(h, R_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	assert_true(rd(h, R_STATUS) & VIRTIO_STATUS_FEATURES_OK);
	wr(h, R_STATUS, 0);
	assert_int_equal(rd(h, R_STATUS), 0);
	assert_int_equal(h->dev->driver_features, 0);
	wr(h, R_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK);
	assert_false(rd(h, R_STATUS) & VIRTIO_STATUS_DRIVER_OK);
}

static void test_queue_setup_checks(void **state)
{
	struct harness *h = ((struct ctx *)*state)->h;

	wr(h, R_QUEUE_SEL, 0);
	wr(h, R_QUEUE_NUM, 6); /* not a power of 2 */
	wr(h, R_DESC_LO, (uint32_t)H_DESC);
	wr(h, R_DRIVER_LO, (uint32_t)H_AVAIL);
	wr(h, R_DEVICE_LO, (uint32_t)H_USED);
	wr(h, R_QUEUE_READY, 1);
	assert_int_equal(rd(h, R_QUEUE_READY), 0);
	wr(h, R_QUEUE_NUM, 32); /* above QueueNumMax */
	wr(h, R_QUEUE_READY, 1);
	assert_int_equal(rd(h, R_QUEUE_READY), 0);
	wr(h, R_QUEUE_NUM, 8);
	wr(h, R_DESC_LO, (uint32_t)H_DESC + 8); /* misaligned */
	wr(h, R_QUEUE_READY, 1);
	assert_int_equal(rd(h, R_QUEUE_READY), 0);
	wr(h, R_DESC_LO, 0x1000); /* outside RAM */
	wr(h, R_QUEUE_READY, 1);
	assert_int_equal(rd(h, R_QUEUE_READY), 0);
	wr(h, R_DESC_LO, (uint32_t)(H_RAM_BASE + H_RAM_SIZE - 64)); /* runs past the end */
	wr(h, R_QUEUE_READY, 1);
	assert_int_equal(rd(h, R_QUEUE_READY), 0);
	wr(h, R_DESC_HI, 1); /* 0x1_8000_1000: beyond RAM */
	wr(h, R_DESC_LO, (uint32_t)H_DESC);
	wr(h, R_QUEUE_READY, 1);
	assert_int_equal(rd(h, R_QUEUE_READY), 0);
	wr(h, R_DESC_HI, 0);
	wr(h, R_QUEUE_READY, 1);
	assert_int_equal(rd(h, R_QUEUE_READY), 1);
	/* Addresses cannot change under a live queue. */
	wr(h, R_DESC_LO, 0x1000);
	assert_int_equal(h->dev->vq[0].desc_gpa, H_DESC);
	wr(h, R_QUEUE_READY, 0);
	assert_int_equal(rd(h, R_QUEUE_READY), 0);
}

/* --- well-formed traffic --- */

static void test_simple_chain_and_interrupt(void **state)
{
	struct ctx *c = *state;
	struct harness *h = c->h;
	uint32_t id, len;

	h_init(h, H_FEATURES & ~(1ULL << VIRTIO_F_EVENT_IDX));
	assert_true(rd(h, R_STATUS) & VIRTIO_STATUS_DRIVER_OK);
	memcpy(h_ptr(h, H_BUF), "request", 8);
	h_set_desc(h, 0, 3, H_BUF, 8, VIRTQ_DESC_F_NEXT, 5);
	h_set_desc(h, 0, 5, H_BUF + 0x100, 0, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 6); /* empty */
	h_set_desc(h, 0, 6, H_BUF + 0x200, 100, VIRTQ_DESC_F_WRITE, 0);
	h_offer(h, 0, 3);
	h_kick(h, 0);
	assert_int_equal(c->rec.nrets, 1);
	assert_int_equal(c->rec.rets[0], 1);
	assert_int_equal(c->rec.last.head, 3);
	assert_int_equal(c->rec.last.nout, 1);
	assert_int_equal(c->rec.last.nin, 1);
	assert_int_equal(c->rec.last.out_len, 8);
	assert_int_equal(c->rec.last.in_len, 100);
	assert_ptr_equal(c->rec.last.iov[0].iov_base, h_ptr(h, H_BUF));
	assert_int_equal(h_used(h, 0)[1], 1);
	h_used_elem(h, 0, 0, &id, &len);
	assert_int_equal(id, 3);
	assert_int_equal(len, 100);
	assert_true(h->irq);
	assert_int_equal(rd(h, R_INT_STATUS), VIRTIO_INT_USED);
	wr(h, R_INT_ACK, VIRTIO_INT_USED);
	assert_false(h->irq);
	assert_int_equal(rd(h, R_INT_STATUS), 0);
	/* No interrupt when the driver suppresses them. */
	h_avail(h, 0)[0] = VIRTQ_AVAIL_F_NO_INTERRUPT;
	h_offer(h, 0, 3);
	h_kick(h, 0);
	assert_int_equal(h_used(h, 0)[1], 2);
	assert_false(h->irq);
	assert_int_equal(atomic_load(&h->dev->stats.requests), 2);
	assert_int_equal(atomic_load(&h->dev->stats.notifications), 2);
}

/* Device writes (DMA) are announced through the memmap so decoded guest code is dropped. */
struct dma_log {
	uint64_t gpa[8], len[8];
	unsigned n;
};

static void log_write(void *opaque, uint64_t gpa, uint64_t len)
{
	struct dma_log *l = opaque;

	if (l->n < 8) {
		l->gpa[l->n] = gpa;
		l->len[l->n] = len;
	}
	l->n++;
}

static void test_push_announces_device_writes(void **state)
{
	struct ctx *c = *state;
	struct harness *h = c->h;
	struct dma_log log = {0};

	memmap_set_write_hook(h->mm, log_write, &log);
	h_init(h, H_FEATURES & ~(1ULL << VIRTIO_F_EVENT_IDX));
	h_set_desc(h, 0, 0, H_BUF, 8, VIRTQ_DESC_F_NEXT, 1);                          /* read */
	h_set_desc(h, 0, 1, H_BUF + 0x1000, 0x30, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	h_set_desc(h, 0, 2, H_BUF + 0x3000, 0x40, VIRTQ_DESC_F_WRITE, 0);
	c->rec.hold = true;
	h_offer(h, 0, 0);
	h_kick(h, 0);
	assert_int_equal(c->rec.nrets, 1);
	/* The device wrote 0x50 bytes: all of the first writable buffer, part of the second. */
	virtq_push(h->dev, 0, &c->rec.last, 0x50);
	assert_int_equal(log.n, 2);
	assert_int_equal(log.gpa[0], H_BUF + 0x1000);
	assert_int_equal(log.len[0], 0x30);
	assert_int_equal(log.gpa[1], H_BUF + 0x3000);
	assert_int_equal(log.len[1], 0x20);
	/* Nothing written, nothing announced (the readable buffer never is). */
	log.n = 0;
	h_offer(h, 0, 0);
	h_kick(h, 0);
	virtq_push(h->dev, 0, &c->rec.last, 0);
	assert_int_equal(log.n, 0);
	memmap_set_write_hook(h->mm, NULL, NULL);
}

static void test_indirect_chain(void **state)
{
	struct ctx *c = *state;
	struct harness *h = c->h;
	struct virtq_desc *t = h_ptr(h, H_INDIRECT);

	h_init(h, H_FEATURES);
	/* A 3-entry indirect table chained 0 -> 2 -> 1. */
	t[0] = (struct virtq_desc){H_BUF, 16, VIRTQ_DESC_F_NEXT, 2};
	t[2] = (struct virtq_desc){H_BUF + 16, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1};
	t[1] = (struct virtq_desc){H_BUF + 1024, 1, VIRTQ_DESC_F_WRITE, 0};
	h_set_desc(h, 0, 0, H_INDIRECT, 3 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	h_offer(h, 0, 0);
	h_kick(h, 0);
	assert_int_equal(c->rec.rets[0], 1);
	assert_int_equal(c->rec.last.nout, 1);
	assert_int_equal(c->rec.last.nin, 2);
	assert_int_equal(c->rec.last.in_len, 513);
	assert_int_equal(c->rec.last.ndesc, 4);
	assert_false(needs_reset(h));
	assert_int_equal(h_used(h, 0)[1], 1);
}

static void test_event_idx(void **state)
{
	struct ctx *c = *state;
	struct harness *h = c->h;
	uint16_t *used_event = &h_avail(h, 0)[2 + H_QSIZE];
	uint16_t *avail_event = (uint16_t *)((uint8_t *)h_used(h, 0) + 4 + 8 * H_QSIZE);

	h_init(h, H_FEATURES);
	h_set_desc(h, 0, 0, H_BUF, 4, VIRTQ_DESC_F_WRITE, 0);
	/* The first completion always interrupts (nothing signalled yet). */
	h_offer(h, 0, 0);
	h_kick(h, 0);
	assert_true(h->irq);
	assert_int_equal(*avail_event, 1); /* published after the empty re-check */
	wr(h, R_INT_ACK, 1);
	/* used_event = 2: completion #2 (used idx 1 -> 2) does not pass it... */
	*used_event = 2;
	h_offer(h, 0, 0);
	h_kick(h, 0);
	assert_int_equal(h_used(h, 0)[1], 2);
	assert_false(h->irq);
	/* ...completion #3 (idx 2 -> 3) crosses used_event 2 and interrupts. */
	h_offer(h, 0, 0);
	h_kick(h, 0);
	assert_int_equal(h_used(h, 0)[1], 3);
	assert_true(h->irq);
	assert_int_equal(*avail_event, 3);
}

static void test_reset_drops_inflight(void **state)
{
	struct ctx *c = *state;
	struct harness *h = c->h;
	struct virtq_elem *e = &c->rec.last;

	h_init(h, H_FEATURES);
	c->rec.hold = true;
	h_set_desc(h, 0, 0, H_BUF, 4, VIRTQ_DESC_F_WRITE, 0);
	h_offer(h, 0, 0);
	h_kick(h, 0);
	assert_int_equal(c->rec.rets[0], 1);
	wr(h, R_STATUS, 0); /* reset with the request in flight */
	assert_false(h->irq);
	h_init(h, H_FEATURES);
	virtq_push(h->dev, 0, e, 4);
	assert_int_equal(h_used(h, 0)[1], 0);
}

/* --- malformed rings: each must put the device into NEEDS_RESET --- */

static void offer_and_check(struct ctx *c, uint16_t head)
{
	struct harness *h = c->h;

	c->rec.nrets = 0;
	h_offer(h, 0, head);
	h_kick(h, 0);
	assert_int_equal(c->rec.nrets, 1);
	assert_int_equal(c->rec.rets[0], -EIO);
	assert_true(needs_reset(h));
	assert_true(rd(h, R_INT_STATUS) & VIRTIO_INT_CONFIG);
	assert_true(h->irq);
	assert_int_equal(h_used(h, 0)[1], 0);
	/* Stopped until reset: a good chain is not taken. */
	h_set_desc(h, 0, 7, H_BUF, 4, 0, 0);
	c->rec.nrets = 0;
	h_offer(h, 0, 7);
	h_kick(h, 0);
	assert_int_equal(c->rec.nrets, 0);
	/* After a reset and re-initialisation the device works again. */
	h_init(h, H_FEATURES);
	assert_false(needs_reset(h));
	assert_false(h->irq);
	h_offer(h, 0, 7);
	h_kick(h, 0);
	assert_int_equal(c->rec.nrets, 1);
	assert_int_equal(c->rec.rets[0], 1);
	assert_int_equal(atomic_load(&h->dev->stats.needs_reset), 1);
}

static void test_bad_loop(void **state)
{
	struct ctx *c = *state;

	h_init(c->h, H_FEATURES);
	h_set_desc(c->h, 0, 0, H_BUF, 4, VIRTQ_DESC_F_NEXT, 1);
	h_set_desc(c->h, 0, 1, H_BUF, 4, VIRTQ_DESC_F_NEXT, 0);
	offer_and_check(c, 0);
}

static void test_bad_self_loop(void **state)
{
	struct ctx *c = *state;

	h_init(c->h, H_FEATURES);
	h_set_desc(c->h, 0, 2, H_BUF, 4, VIRTQ_DESC_F_NEXT, 2);
	offer_and_check(c, 2);
}

static void test_bad_head_index(void **state)
{
	struct ctx *c = *state;

	h_init(c->h, H_FEATURES);
	offer_and_check(c, H_QSIZE);
}

static void test_bad_next_index(void **state)
{
	struct ctx *c = *state;

	h_init(c->h, H_FEATURES);
	h_set_desc(c->h, 0, 0, H_BUF, 4, VIRTQ_DESC_F_NEXT, 0xffff);
	offer_and_check(c, 0);
}

static void test_bad_buffer_outside_ram(void **state)
{
	struct ctx *c = *state;

	h_init(c->h, H_FEATURES);
	h_set_desc(c->h, 0, 0, 0x1000, 4, 0, 0); /* below RAM */
	offer_and_check(c, 0);
}

static void test_bad_length_past_ram(void **state)
{
	struct ctx *c = *state;

	h_init(c->h, H_FEATURES);
	h_set_desc(c->h, 0, 0, H_RAM_BASE + H_RAM_SIZE - 16, 32, VIRTQ_DESC_F_WRITE, 0);
	offer_and_check(c, 0);
}

static void test_bad_address_wraps(void **state)
{
	struct ctx *c = *state;

	h_init(c->h, H_FEATURES);
	h_set_desc(c->h, 0, 0, UINT64_MAX - 8, 0x10000, 0, 0);
	offer_and_check(c, 0);
}

static void test_bad_huge_length(void **state)
{
	struct ctx *c = *state;

	h_init(c->h, H_FEATURES);
	h_set_desc(c->h, 0, 0, H_BUF, 0xffffffff, VIRTQ_DESC_F_WRITE, 0);
	offer_and_check(c, 0);
}

static void test_bad_readable_after_writable(void **state)
{
	struct ctx *c = *state;

	h_init(c->h, H_FEATURES);
	h_set_desc(c->h, 0, 0, H_BUF, 4, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	h_set_desc(c->h, 0, 1, H_BUF, 4, 0, 0);
	offer_and_check(c, 0);
}

static void test_bad_indirect_outside_ram(void **state)
{
	struct ctx *c = *state;

	h_init(c->h, H_FEATURES);
	h_set_desc(c->h, 0, 0, H_RAM_BASE + H_RAM_SIZE - 16, 64, VIRTQ_DESC_F_INDIRECT, 0);
	offer_and_check(c, 0);
}

static void test_bad_nested_indirect(void **state)
{
	struct ctx *c = *state;
	struct virtq_desc *t = h_ptr(c->h, H_INDIRECT);

	h_init(c->h, H_FEATURES);
	t[0] = (struct virtq_desc){H_INDIRECT, 32, VIRTQ_DESC_F_INDIRECT, 0};
	t[1] = (struct virtq_desc){H_BUF, 4, 0, 0};
	h_set_desc(c->h, 0, 0, H_INDIRECT, 32, VIRTQ_DESC_F_INDIRECT, 0);
	offer_and_check(c, 0);
}

static void test_bad_indirect_loop(void **state)
{
	struct ctx *c = *state;
	struct virtq_desc *t = h_ptr(c->h, H_INDIRECT);

	h_init(c->h, H_FEATURES);
	t[0] = (struct virtq_desc){H_BUF, 4, VIRTQ_DESC_F_NEXT, 1};
	t[1] = (struct virtq_desc){H_BUF, 4, VIRTQ_DESC_F_NEXT, 0};
	h_set_desc(c->h, 0, 0, H_INDIRECT, 32, VIRTQ_DESC_F_INDIRECT, 0);
	offer_and_check(c, 0);
}

static void test_bad_indirect_too_long(void **state)
{
	struct ctx *c = *state;

	h_init(c->h, H_FEATURES);
	/* More entries than the queue size (8): too many descriptors. */
	h_set_desc(c->h, 0, 0, H_INDIRECT, 16 * (H_QSIZE + 1), VIRTQ_DESC_F_INDIRECT, 0);
	offer_and_check(c, 0);
}

static void test_bad_indirect_len(void **state)
{
	struct ctx *c = *state;

	h_init(c->h, H_FEATURES);
	h_set_desc(c->h, 0, 0, H_INDIRECT, 24, VIRTQ_DESC_F_INDIRECT, 0);
	offer_and_check(c, 0);
}

static void test_bad_indirect_with_next(void **state)
{
	struct ctx *c = *state;
	struct virtq_desc *t = h_ptr(c->h, H_INDIRECT);

	h_init(c->h, H_FEATURES);
	t[0] = (struct virtq_desc){H_BUF, 4, 0, 0};
	h_set_desc(c->h, 0, 0, H_INDIRECT, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
	h_set_desc(c->h, 0, 1, H_BUF, 4, 0, 0);
	offer_and_check(c, 0);
}

static void test_bad_indirect_not_negotiated(void **state)
{
	struct ctx *c = *state;
	struct harness *h = c->h;
	struct virtq_desc *t = h_ptr(h, H_INDIRECT);

	h_init(h, 1ULL << VIRTIO_F_VERSION_1);
	t[0] = (struct virtq_desc){H_BUF, 4, 0, 0};
	h_set_desc(h, 0, 0, H_INDIRECT, 16, VIRTQ_DESC_F_INDIRECT, 0);
	c->rec.nrets = 0;
	h_offer(h, 0, 0);
	h_kick(h, 0);
	assert_int_equal(c->rec.rets[0], -EIO);
	assert_true(needs_reset(h));
}

static void test_bad_avail_jump(void **state)
{
	struct ctx *c = *state;
	struct harness *h = c->h;

	h_init(h, H_FEATURES);
	h_set_desc(h, 0, 0, H_BUF, 4, 0, 0);
	h_avail(h, 0)[1] = H_QSIZE + 1; /* more entries than the ring holds */
	h_kick(h, 0);
	assert_int_equal(c->rec.rets[0], -EIO);
	assert_true(needs_reset(h));
}

static void test_notify_bad_queue(void **state)
{
	struct ctx *c = *state;
	struct harness *h = c->h;

	h_init(h, H_FEATURES);
	wr(h, R_QUEUE_NOTIFY, 31);
	wr(h, R_QUEUE_NOTIFY, 0xffff);
	virtio_dev_process(h->dev);
	assert_int_equal(c->rec.nrets, 0);
	assert_false(needs_reset(h));
}

static void test_elem_slice(void **state)
{
	struct virtq_elem *e = calloc(1, sizeof(*e));
	uint8_t a[10], b[20], w[5];
	struct iovec out[4];
	char buf[32];

	(void)state;
	memcpy(a, "0123456789", 10);
	memcpy(b, "abcdefghijklmnopqrst", 20);
	e->iov[0] = (struct iovec){a, 10};
	e->iov[1] = (struct iovec){b, 20};
	e->iov[2] = (struct iovec){w, 5};
	e->nout = 2;
	e->nin = 1;
	e->out_len = 30;
	e->in_len = 5;
	assert_int_equal(virtq_elem_read(e, 8, buf, 4), 4);
	assert_memory_equal(buf, "89ab", 4);
	assert_int_equal(virtq_elem_read(e, 28, buf, 10), 2);
	assert_int_equal(virtq_elem_write(e, 3, "XYZ", 3), 2);
	assert_memory_equal(w + 3, "XY", 2);
	assert_int_equal(virtq_elem_slice(e, false, 5, 10, out, 4), 2);
	assert_ptr_equal(out[0].iov_base, a + 5);
	assert_int_equal(out[0].iov_len, 5);
	assert_int_equal(out[1].iov_len, 5);
	assert_int_equal(virtq_elem_slice(e, false, 5, 26, out, 4), -ENOSPC);
	assert_int_equal(virtq_elem_slice(e, false, 0, 30, out, 1), -ENOSPC);
	free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_identity_registers),
		T(test_features_ok_needs_version_1),
		T(test_queue_setup_checks),
		T(test_simple_chain_and_interrupt),
		T(test_push_announces_device_writes),
		T(test_indirect_chain),
		T(test_event_idx),
		T(test_reset_drops_inflight),
		T(test_bad_loop),
		T(test_bad_self_loop),
		T(test_bad_head_index),
		T(test_bad_next_index),
		T(test_bad_buffer_outside_ram),
		T(test_bad_length_past_ram),
		T(test_bad_address_wraps),
		T(test_bad_huge_length),
		T(test_bad_readable_after_writable),
		T(test_bad_indirect_outside_ram),
		T(test_bad_nested_indirect),
		T(test_bad_indirect_loop),
		T(test_bad_indirect_too_long),
		T(test_bad_indirect_len),
		T(test_bad_indirect_with_next),
		T(test_bad_indirect_not_negotiated),
		T(test_bad_avail_jump),
		T(test_notify_bad_queue),
		cmocka_unit_test(test_elem_slice),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
