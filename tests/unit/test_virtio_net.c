/*
 * test_virtio_net.c - virtio-net (src/devices/virtio/net.c) driven through its virtio-mmio
 * transport by a tiny split-ring driver, with a memory back end that records transmitted
 * frames and injects received ones; the --net option parser; the libslirp back end answering
 * an ARP request and refusing a port that is in use.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/backend/net.h"
#include "kumo/base.h"
#include "kumo/memmap.h"
#include "kumo/virtio.h"
#include "machine/devices.h"

#define RAM_BASE 0x80000000ULL
#define RAM_SIZE (4ULL << 20)
#define QSIZE 16
#define Q_AREA(q) (RAM_BASE + 0x1000 + (uint64_t)(q) * 0x10000) /* desc, +0x1000 avail, +0x2000 used */
#define BUF(q, i) (RAM_BASE + 0x100000 + (uint64_t)(q) * 0x80000 + (uint64_t)(i) * 0x8000)
#define HDR_LEN 12

/* virtio-mmio registers (virtio 1.2 §4.2.2). */
enum {
	R_DEVICE_ID = 0x008, R_DEV_FEAT = 0x010, R_DEV_FEAT_SEL = 0x014, R_DRV_FEAT = 0x020,
	R_DRV_FEAT_SEL = 0x024, R_QUEUE_SEL = 0x030, R_QUEUE_NUM = 0x038, R_QUEUE_READY = 0x044,
	R_QUEUE_NOTIFY = 0x050, R_INT_STATUS = 0x060, R_INT_ACK = 0x064, R_STATUS = 0x070,
	R_DESC_LO = 0x080, R_DESC_HI = 0x084, R_DRIVER_LO = 0x090, R_DRIVER_HI = 0x094,
	R_DEVICE_LO = 0x0a0, R_DEVICE_HI = 0x0a4, R_CONFIG = 0x100,
};

/* ---- memory back end ---- */

struct mem_backend {
	struct net_backend be;
	struct net_client client;
	bool started, freed_flag;
	unsigned rx_ready_calls;
	unsigned nsent;
	size_t sent_len[8];
	uint8_t sent[8][2048];
	int send_ret;
};

static int mem_start(struct net_backend *be, const struct net_client *c)
{
	struct mem_backend *m = (struct mem_backend *)be;

	m->client = *c;
	m->started = true;
	return 0;
}

static int mem_send(struct net_backend *be, const struct iovec *iov, unsigned iovcnt)
{
	struct mem_backend *m = (struct mem_backend *)be;
	size_t off = 0;

	if (m->send_ret)
		return m->send_ret;
	if (m->nsent < 8) {
		for (unsigned i = 0; i < iovcnt; i++) {
			memcpy(m->sent[m->nsent] + off, iov[i].iov_base, iov[i].iov_len);
			off += iov[i].iov_len;
		}
		m->sent_len[m->nsent] = off;
	}
	m->nsent++;
	return 0;
}

static void mem_rx_ready(struct net_backend *be)
{
	((struct mem_backend *)be)->rx_ready_calls++;
}

static bool *mem_freed_out; /* where mem_free reports, since the device frees the back end */

static void mem_free(struct net_backend *be)
{
	if (mem_freed_out)
		*mem_freed_out = true;
	free(be);
}

static const struct net_backend_ops mem_ops = {
	.name = "memory", .start = mem_start, .send = mem_send, .rx_ready = mem_rx_ready, .free = mem_free,
};

/* ---- a small driver ---- */

struct drv {
	uint8_t *ram;
	struct memmap *mm;
	struct virtio_dev *dev;
	struct virtio_mmio *mmio;
	struct mem_backend *mb;
	bool irq;
	unsigned irq_raises;
	uint16_t avail_idx[2];
	uint16_t used_seen[2];
	bool freed;
};

static void drv_irq(void *opaque, unsigned n, bool level)
{
	struct drv *d = opaque;

	if (level && !d->irq)
		d->irq_raises++;
	d->irq = level;
}

static void *gp(struct drv *d, uint64_t gpa)
{
	return d->ram + (gpa - RAM_BASE);
}

static uint32_t rd(struct drv *d, uint64_t off)
{
	return (uint32_t)virtio_mmio_class.mmio->read(d->mmio, off, 4);
}

static void wr(struct drv *d, uint64_t off, uint32_t v)
{
	virtio_mmio_class.mmio->write(d->mmio, off, v, 4);
}

static const uint8_t test_mac[6] = {0x52, 0x54, 0x00, 0xab, 0xcd, 0xef};

static struct drv *drv_new(void)
{
	struct drv *d = calloc(1, sizeof(*d));

	d->ram = aligned_alloc(4096, RAM_SIZE);
	memset(d->ram, 0, RAM_SIZE);
	d->mm = memmap_new();
	assert_int_equal(memmap_add_ram(d->mm, RAM_BASE, RAM_SIZE, d->ram), 0);
	d->mb = calloc(1, sizeof(*d->mb));
	d->mb->be.ops = &mem_ops;
	mem_freed_out = &d->freed;
	assert_int_equal(virtio_net_new(d->mm, &d->mb->be, test_mac, &d->dev), 0);
	assert_true(d->mb->started);
	d->dev->irq = (struct irq_line){drv_irq, d, 1};
	assert_int_equal(virtio_mmio_new(d->dev, 1, &d->mmio), 0);
	return d;
}

/* virtio 1.2 §3.1.1 with VERSION_1 only (no EVENT_IDX: every used buffer interrupts). */
static void drv_init(struct drv *d)
{
	wr(d, R_STATUS, 0);
	wr(d, R_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	wr(d, R_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(d, R_DRV_FEAT_SEL, 0);
	wr(d, R_DRV_FEAT, (1u << 5) | (1u << 16)); /* MAC, STATUS */
	wr(d, R_DRV_FEAT_SEL, 1);
	wr(d, R_DRV_FEAT, 1); /* VERSION_1 */
	wr(d, R_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	assert_true(rd(d, R_STATUS) & VIRTIO_STATUS_FEATURES_OK);
	for (unsigned q = 0; q < 2; q++) {
		uint64_t a = Q_AREA(q);

		wr(d, R_QUEUE_SEL, q);
		wr(d, R_QUEUE_NUM, QSIZE);
		wr(d, R_DESC_LO, (uint32_t)a);
		wr(d, R_DESC_HI, (uint32_t)(a >> 32));
		wr(d, R_DRIVER_LO, (uint32_t)(a + 0x1000));
		wr(d, R_DRIVER_HI, (uint32_t)((a + 0x1000) >> 32));
		wr(d, R_DEVICE_LO, (uint32_t)(a + 0x2000));
		wr(d, R_DEVICE_HI, (uint32_t)((a + 0x2000) >> 32));
		wr(d, R_QUEUE_READY, 1);
		assert_int_equal(rd(d, R_QUEUE_READY), 1);
	}
	wr(d, R_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
				VIRTIO_STATUS_DRIVER_OK);
}

static void drv_free(struct drv *d)
{
	virtio_mmio_class.free(d->mmio); /* frees the device and its back end */
	assert_true(d->freed);
	memmap_free(d->mm);
	free(d->ram);
	free(d);
}

/* Posts a one-descriptor buffer (slot i of queue q) and makes it available. */
static void post(struct drv *d, unsigned q, unsigned i, uint32_t len, bool writable)
{
	struct virtq_desc *desc = gp(d, Q_AREA(q));
	uint16_t *avail = gp(d, Q_AREA(q) + 0x1000);

	desc[i] = (struct virtq_desc){BUF(q, i), len, writable ? VIRTQ_DESC_F_WRITE : 0, 0};
	avail[2 + d->avail_idx[q] % QSIZE] = (uint16_t)i;
	d->avail_idx[q]++;
	__atomic_store_n(&avail[1], d->avail_idx[q], __ATOMIC_RELEASE);
}

static void kick(struct drv *d, unsigned q)
{
	wr(d, R_QUEUE_NOTIFY, q);
	virtio_dev_process(d->dev);
}

static uint16_t used_idx(struct drv *d, unsigned q)
{
	return __atomic_load_n((uint16_t *)gp(d, Q_AREA(q) + 0x2000) + 1, __ATOMIC_ACQUIRE);
}

/* Takes the next used entry of q; false when there is none. */
static bool take_used(struct drv *d, unsigned q, uint32_t *id, uint32_t *len)
{
	uint32_t *e;

	if (used_idx(d, q) == d->used_seen[q])
		return false;
	e = (uint32_t *)((uint8_t *)gp(d, Q_AREA(q) + 0x2000) + 4 + 8 * (d->used_seen[q] % QSIZE));
	*id = e[0];
	*len = e[1];
	d->used_seen[q]++;
	return true;
}

static void make_frame(uint8_t *f, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		f[i] = (uint8_t)(seed + i * 7);
}

/* ---- device tests ---- */

static void test_identity_and_config(void **state)
{
	struct drv *d = drv_new();
	uint32_t feat_lo;

	assert_int_equal(rd(d, R_DEVICE_ID), VIRTIO_ID_NET);
	wr(d, R_DEV_FEAT_SEL, 0);
	feat_lo = rd(d, R_DEV_FEAT);
	assert_true(feat_lo & (1u << 5));  /* MAC */
	assert_true(feat_lo & (1u << 16)); /* STATUS */
	assert_false(feat_lo & 1u);        /* no CSUM: no offloads are claimed */
	assert_false(feat_lo & (1u << 15)); /* no MRG_RXBUF */
	for (unsigned i = 0; i < 6; i++)
		assert_int_equal(virtio_mmio_class.mmio->read(d->mmio, R_CONFIG + i, 1), test_mac[i]);
	assert_int_equal(virtio_mmio_class.mmio->read(d->mmio, R_CONFIG + 6, 2), 1); /* LINK_UP */
	drv_free(d);
}

static void test_tx_strips_header(void **state)
{
	struct drv *d = drv_new();
	uint8_t frame[600];
	uint32_t id, len;

	drv_init(d);
	make_frame(frame, sizeof(frame), 3);
	memset(gp(d, BUF(1, 0)), 0, HDR_LEN);
	memcpy((uint8_t *)gp(d, BUF(1, 0)) + HDR_LEN, frame, sizeof(frame));
	post(d, 1, 0, HDR_LEN + sizeof(frame), false);
	/* A second frame split over two descriptors (header alone, then the frame). */
	{
		struct virtq_desc *desc = gp(d, Q_AREA(1));
		uint16_t *avail = gp(d, Q_AREA(1) + 0x1000);

		memset(gp(d, BUF(1, 1)), 0, HDR_LEN);
		make_frame(gp(d, BUF(1, 2)), 60, 9);
		desc[1] = (struct virtq_desc){BUF(1, 1), HDR_LEN, VIRTQ_DESC_F_NEXT, 2};
		desc[2] = (struct virtq_desc){BUF(1, 2), 60, 0, 0};
		avail[2 + d->avail_idx[1] % QSIZE] = 1;
		d->avail_idx[1]++;
		__atomic_store_n(&avail[1], d->avail_idx[1], __ATOMIC_RELEASE);
	}
	kick(d, 1);
	assert_int_equal(d->mb->nsent, 2);
	assert_int_equal(d->mb->sent_len[0], sizeof(frame));
	assert_memory_equal(d->mb->sent[0], frame, sizeof(frame));
	assert_int_equal(d->mb->sent_len[1], 60);
	assert_memory_equal(d->mb->sent[1], gp(d, BUF(1, 2)), 60);
	assert_true(take_used(d, 1, &id, &len));
	assert_int_equal(id, 0);
	assert_int_equal(len, 0);
	assert_true(take_used(d, 1, &id, &len));
	assert_int_equal(id, 1);
	assert_true(d->irq);
	drv_free(d);
}

static void test_rx_waits_for_buffers(void **state)
{
	struct drv *d = drv_new();
	uint8_t f1[100], f2[1514];
	uint32_t id, len;
	uint8_t *b;

	drv_init(d);
	make_frame(f1, sizeof(f1), 1);
	make_frame(f2, sizeof(f2), 2);
	assert_int_equal(d->mb->client.receive(d->mb->client.opaque, f1, sizeof(f1)), 0);
	assert_int_equal(d->mb->client.receive(d->mb->client.opaque, f2, sizeof(f2)), 0);
	virtio_dev_process(d->dev); /* the kick from receive(): no buffers yet */
	assert_int_equal(used_idx(d, 0), 0);

	post(d, 0, 0, 2048, true);
	kick(d, 0);
	assert_true(take_used(d, 0, &id, &len));
	assert_int_equal(id, 0);
	assert_int_equal(len, HDR_LEN + sizeof(f1));
	b = gp(d, BUF(0, 0));
	assert_int_equal(b[0], 0);   /* flags */
	assert_int_equal(b[1], 0);   /* GSO_NONE */
	assert_int_equal(b[10], 1);  /* num_buffers */
	assert_int_equal(b[11], 0);
	assert_memory_equal(b + HDR_LEN, f1, sizeof(f1));
	assert_false(take_used(d, 0, &id, &len)); /* f2 still waits */
	assert_true(d->irq);

	post(d, 0, 1, 2048, true);
	kick(d, 0);
	assert_true(take_used(d, 0, &id, &len));
	assert_int_equal(id, 1);
	assert_int_equal(len, HDR_LEN + sizeof(f2));
	assert_memory_equal((uint8_t *)gp(d, BUF(0, 1)) + HDR_LEN, f2, sizeof(f2));

	struct virtio_net_stats st;
	virtio_net_get_stats(d->dev, &st);
	assert_int_equal(st.rx_frames, 2);
	assert_int_equal(st.rx_dropped, 0);
	drv_free(d);
}

static void test_rx_backpressure(void **state)
{
	struct drv *d = drv_new();
	struct net_client *c;
	uint8_t f[64];
	unsigned i, delivered = 0;
	uint32_t id, len;
	struct virtio_net_stats st;

	drv_init(d);
	c = &d->mb->client;
	for (i = 0; i < VIRTIO_NET_RX_HIGH; i++) {
		assert_true(c->can_receive(c->opaque));
		make_frame(f, sizeof(f), (uint8_t)i);
		assert_int_equal(c->receive(c->opaque, f, sizeof(f)), 0);
	}
	assert_false(c->can_receive(c->opaque));
	for (; i < VIRTIO_NET_RX_MAX; i++)
		assert_int_equal(c->receive(c->opaque, f, sizeof(f)), 0);
	assert_int_equal(c->receive(c->opaque, f, sizeof(f)), -ENOBUFS);
	assert_int_equal(c->receive(c->opaque, f, 0), -EINVAL);
	virtio_net_get_stats(d->dev, &st);
	assert_int_equal(st.rx_dropped, 1);
	assert_int_equal(d->mb->rx_ready_calls, 0);

	/* The guest drains the queue QSIZE buffers at a time; frames arrive in order. */
	while (delivered < VIRTIO_NET_RX_MAX) {
		for (unsigned s = 0; s < QSIZE; s++)
			post(d, 0, s, 2048, true);
		kick(d, 0);
		while (take_used(d, 0, &id, &len)) {
			uint8_t want[64];

			make_frame(want, sizeof(want), (uint8_t)(delivered < VIRTIO_NET_RX_HIGH ? delivered : 255));
			assert_int_equal(len, HDR_LEN + 64);
			if (delivered < VIRTIO_NET_RX_HIGH)
				assert_memory_equal((uint8_t *)gp(d, BUF(0, id)) + HDR_LEN, want, 64);
			delivered++;
		}
	}
	assert_int_equal(delivered, VIRTIO_NET_RX_MAX);
	assert_true(c->can_receive(c->opaque));
	assert_int_equal(d->mb->rx_ready_calls, 1); /* told once, when the queue fell below half */
	drv_free(d);
}

static void test_rx_buffer_too_small(void **state)
{
	struct drv *d = drv_new();
	uint8_t f[1000];
	uint32_t id, len;
	struct virtio_net_stats st;

	drv_init(d);
	make_frame(f, sizeof(f), 5);
	assert_int_equal(d->mb->client.receive(d->mb->client.opaque, f, sizeof(f)), 0);
	post(d, 0, 0, 64, true);
	kick(d, 0);
	assert_true(take_used(d, 0, &id, &len));
	assert_int_equal(len, 0);
	virtio_net_get_stats(d->dev, &st);
	assert_int_equal(st.rx_dropped, 1);
	assert_false(rd(d, R_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	drv_free(d);
}

static void test_tx_malformed_needs_reset(void **state)
{
	struct drv *d = drv_new();

	drv_init(d);
	post(d, 1, 0, 8, false); /* shorter than the header */
	kick(d, 1);
	assert_int_equal(d->mb->nsent, 0);
	assert_true(rd(d, R_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	/* A reset and a new initialisation bring it back. */
	d->avail_idx[0] = d->avail_idx[1] = d->used_seen[0] = d->used_seen[1] = 0;
	memset(gp(d, Q_AREA(0)), 0, 0x3000);
	memset(gp(d, Q_AREA(1)), 0, 0x3000);
	drv_init(d);
	assert_false(rd(d, R_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	memset(gp(d, BUF(1, 0)), 0, HDR_LEN + 60);
	post(d, 1, 0, HDR_LEN + 60, false);
	kick(d, 1);
	assert_int_equal(d->mb->nsent, 1);
	drv_free(d);
}

static void test_tx_backend_error_counted(void **state)
{
	struct drv *d = drv_new();
	struct virtio_net_stats st;
	uint32_t id, len;

	drv_init(d);
	d->mb->send_ret = -EAGAIN;
	post(d, 1, 0, HDR_LEN + 60, false);
	kick(d, 1);
	assert_true(take_used(d, 1, &id, &len)); /* the buffer still comes back */
	virtio_net_get_stats(d->dev, &st);
	assert_int_equal(st.tx_errors, 1);
	assert_int_equal(st.tx_frames, 0);
	assert_false(rd(d, R_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	drv_free(d);
}

/* ---- --net parsing ---- */

static void test_spec_parse(void **state)
{
	struct net_spec s;

	assert_int_equal(net_spec_parse("user", &s), 0);
	assert_int_equal(s.kind, NET_USER);
	assert_int_equal(s.nfwd, 0);
	assert_int_equal(s.mac[0], 0x52);
	assert_int_equal(s.mac[5], 0x56);

	assert_int_equal(net_spec_parse("user,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=udp::5353-10.0.2.15:53,"
					"mac=52:54:00:aa:bb:cc",
					&s),
			 0);
	assert_int_equal(s.nfwd, 2);
	assert_false(s.fwd[0].udp);
	assert_string_equal(s.fwd[0].host_addr, "127.0.0.1");
	assert_int_equal(s.fwd[0].host_port, 2222);
	assert_string_equal(s.fwd[0].guest_addr, "");
	assert_int_equal(s.fwd[0].guest_port, 22);
	assert_true(s.fwd[1].udp);
	assert_string_equal(s.fwd[1].host_addr, "");
	assert_int_equal(s.fwd[1].host_port, 5353);
	assert_string_equal(s.fwd[1].guest_addr, "10.0.2.15");
	assert_int_equal(s.mac[3], 0xaa);
	assert_int_equal(s.mac[5], 0xcc);

	assert_int_equal(net_spec_parse("tap,ifname=tap0", &s), 0);
	assert_int_equal(s.kind, NET_TAP);
	assert_string_equal(s.ifname, "tap0");

	static const char *bad[] = {
		"", "bridge", "user,hostfwd=tcp:127.0.0.1:0-:22", "user,hostfwd=tcp:127.0.0.1:70000-:22",
		"user,hostfwd=tcp:1.2.3:80-:80", "user,hostfwd=sctp::80-:80", "user,hostfwd=tcp::80",
		"user,hostfwd=tcp::80-:x", "user,mac=01:00:00:00:00:01", "user,mac=52:54:00:12:34",
		"user,mac=52:54:00:12:34:567", "user,ifname=x", "tap", "tap,ifname=", "tap,hostfwd=tcp::1-:1",
		"tap,ifname=averyveryverylongname", "user,junk", "user,colour=blue",
	};
	for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
		err_clear();
		if (net_spec_parse(bad[i], &s) != -EINVAL)
			fail_msg("'%s' was accepted", bad[i]);
		assert_true(strlen(err_get()) > 0);
	}
}

/* ---- the libslirp back end ---- */

struct capture {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned n;
	size_t len;
	uint8_t frame[2048];
};

static int cap_receive(void *opaque, const void *frame, size_t len)
{
	struct capture *c = opaque;

	pthread_mutex_lock(&c->lock);
	if (c->n == 0 && len <= sizeof(c->frame)) {
		memcpy(c->frame, frame, len);
		c->len = len;
	}
	c->n++;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

static bool cap_can_receive(void *opaque)
{
	return true;
}

static void test_slirp_arp(void **state)
{
	static const uint8_t guest_mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
	struct capture cap = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
	struct net_client client = {.opaque = &cap, .receive = cap_receive, .can_receive = cap_can_receive};
	struct net_spec spec;
	struct net_backend *be;
	uint8_t arp[42] = {0};
	struct iovec iov = {arp, sizeof(arp)};
	struct timespec until;

	assert_int_equal(net_spec_parse("user", &spec), 0);
	assert_int_equal(net_slirp_new(&spec, &be), 0);
	assert_int_equal(be->ops->start(be, &client), 0);

	/* Ethernet broadcast, ARP request (RFC 826): who has 10.0.2.2? tell 10.0.2.15. */
	memset(arp, 0xff, 6);
	memcpy(arp + 6, guest_mac, 6);
	arp[12] = 0x08, arp[13] = 0x06;
	arp[14] = 0, arp[15] = 1;    /* htype Ethernet */
	arp[16] = 0x08, arp[17] = 0; /* ptype IPv4 */
	arp[18] = 6, arp[19] = 4;
	arp[20] = 0, arp[21] = 1;    /* request */
	memcpy(arp + 22, guest_mac, 6);
	memcpy(arp + 28, (uint8_t[]){10, 0, 2, 15}, 4);
	memcpy(arp + 38, (uint8_t[]){10, 0, 2, 2}, 4);
	assert_int_equal(be->ops->send(be, &iov, 1), 0);

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 5;
	pthread_mutex_lock(&cap.lock);
	while (cap.n == 0 && pthread_cond_timedwait(&cap.cond, &cap.lock, &until) == 0)
		;
	pthread_mutex_unlock(&cap.lock);
	be->ops->free(be);

	assert_true(cap.n >= 1);
	assert_true(cap.len >= 42);
	assert_memory_equal(cap.frame, guest_mac, 6);            /* to the guest */
	assert_int_equal(cap.frame[12], 0x08);
	assert_int_equal(cap.frame[13], 0x06);                     /* ARP */
	assert_int_equal(cap.frame[21], 2);                        /* reply */
	assert_memory_equal(cap.frame + 28, ((uint8_t[]){10, 0, 2, 2}), 4); /* sender 10.0.2.2 */
	assert_memory_equal(cap.frame + 32, guest_mac, 6);          /* target: us */
}

static void test_slirp_port_in_use(void **state)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct net_spec spec;
	struct net_backend *be = NULL;
	char arg[96];

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 1), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	snprintf(arg, sizeof(arg), "user,hostfwd=tcp:127.0.0.1:%u-:22", ntohs(sa.sin_port));
	assert_int_equal(net_spec_parse(arg, &spec), 0);
	err_clear();
	assert_true(net_slirp_new(&spec, &be) < 0);
	assert_non_null(strstr(err_get(), "cannot forward host tcp port 127.0.0.1:"));
	close(fd);

	/* The same forward works once the port is free. */
	assert_int_equal(net_slirp_new(&spec, &be), 0);
	be->ops->free(be);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_identity_and_config),
		cmocka_unit_test(test_tx_strips_header),
		cmocka_unit_test(test_rx_waits_for_buffers),
		cmocka_unit_test(test_rx_backpressure),
		cmocka_unit_test(test_rx_buffer_too_small),
		cmocka_unit_test(test_tx_malformed_needs_reset),
		cmocka_unit_test(test_tx_backend_error_counted),
		cmocka_unit_test(test_spec_parse),
		cmocka_unit_test(test_slirp_arp),
		cmocka_unit_test(test_slirp_port_in_use),
	};
	return cmocka_run_group_tests_name("virtio_net", tests, NULL, NULL);
}
