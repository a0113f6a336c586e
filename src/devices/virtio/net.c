/*
 * net.c - virtio-net (virtio 1.2 §5.1): one receive and one transmit queue, the MAC and
 * STATUS features, no offloads. Frames from the host back end wait in a bounded FIFO until the
 * guest posts receive buffers; frames the guest transmits go to the back end's send().
 *
 * Every buffer starts with struct virtio_net_hdr (§5.1.6). With VERSION_1 the header is
 * always 12 bytes, num_buffers included (§5.1.6.1), whether or not MRG_RXBUF is negotiated.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "devices/backend/net.h"
#include "kumo/base.h"
#include "kumo/virtio.h"

/* Feature bits (virtio 1.2 §5.1.3). */
#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_STATUS 16
#define VIRTIO_NET_S_LINK_UP 1

/* Config layout (§5.1.4): mac[6], le16 status, le16 max_virtqueue_pairs, le16 mtu. */
#define NET_CFG_MAC 0
#define NET_CFG_STATUS 6
#define NET_CFG_MAX_PAIRS 8
#define NET_CFG_SIZE 12

#define NET_HDR_LEN 12 /* flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers */
#define NET_RX_LOW (VIRTIO_NET_RX_HIGH / 2) /* resume the back end below this */

struct rx_frame {
	struct rx_frame *next;
	size_t len;
	uint8_t data[];
};

struct virtio_net {
	struct virtio_dev *dev;
	struct net_backend *be;

	pthread_mutex_t rx_lock;   /* guards the FIFO and rx_stopped */
	struct rx_frame *rx_head, *rx_tail;
	unsigned rx_count;         /* frames in the FIFO */
	bool rx_stopped;           /* can_receive() said false; rx_ready() owed to the back end */

	_Atomic uint64_t rx_frames, tx_frames, rx_dropped, tx_errors;

	struct virtq_elem elem;    /* I/O thread only */
	uint8_t tx_buf[NET_HDR_LEN + NET_MAX_FRAME];
};

/* ---- the back end's side: frames for the guest (any thread) ---- */

static int net_receive(void *opaque, const void *frame, size_t len)
{
	struct virtio_net *n = opaque;
	struct rx_frame *f;

	if (len == 0 || len > NET_MAX_FRAME)
		return -EINVAL;
	f = malloc(sizeof(*f) + len);
	if (!f) {
		atomic_fetch_add_explicit(&n->rx_dropped, 1, memory_order_relaxed);
		return -ENOBUFS;
	}
	f->next = NULL;
	f->len = len;
	memcpy(f->data, frame, len);
	pthread_mutex_lock(&n->rx_lock);
	if (n->rx_count >= VIRTIO_NET_RX_MAX) {
		n->rx_stopped = true;
		pthread_mutex_unlock(&n->rx_lock);
		free(f);
		atomic_fetch_add_explicit(&n->rx_dropped, 1, memory_order_relaxed);
		return -ENOBUFS;
	}
	if (n->rx_tail)
		n->rx_tail->next = f;
	else
		n->rx_head = f;
	n->rx_tail = f;
	n->rx_count++;
	pthread_mutex_unlock(&n->rx_lock);
	virtio_dev_kick(n->dev, VIRTIO_NET_RXQ);
	return 0;
}

static bool net_can_receive(void *opaque)
{
	struct virtio_net *n = opaque;
	bool ok;

	pthread_mutex_lock(&n->rx_lock);
	ok = n->rx_count < VIRTIO_NET_RX_HIGH;
	if (!ok)
		n->rx_stopped = true;
	pthread_mutex_unlock(&n->rx_lock);
	return ok;
}

static struct rx_frame *rx_peek(struct virtio_net *n)
{
	struct rx_frame *f;

	pthread_mutex_lock(&n->rx_lock);
	f = n->rx_head;
	pthread_mutex_unlock(&n->rx_lock);
	return f;
}

/* Removes the head frame (the I/O thread is the only consumer); returns whether to resume. */
static bool rx_drop_head(struct virtio_net *n)
{
	struct rx_frame *f;
	bool resume = false;

	pthread_mutex_lock(&n->rx_lock);
	f = n->rx_head;
	if (f) {
		n->rx_head = f->next;
		if (!n->rx_head)
			n->rx_tail = NULL;
		n->rx_count--;
	}
	if (n->rx_stopped && n->rx_count < NET_RX_LOW) {
		n->rx_stopped = false;
		resume = true;
	}
	pthread_mutex_unlock(&n->rx_lock);
	free(f);
	return resume;
}

static void rx_flush(struct virtio_net *n)
{
	struct rx_frame *f, *next;

	pthread_mutex_lock(&n->rx_lock);
	f = n->rx_head;
	n->rx_head = n->rx_tail = NULL;
	n->rx_count = 0;
	pthread_mutex_unlock(&n->rx_lock);
	for (; f; f = next) {
		next = f->next;
		free(f);
	}
}

/* ---- queues (I/O thread) ---- */

static void net_rx(struct virtio_dev *d, struct virtio_net *n)
{
	bool resume = false;
	struct rx_frame *f;

	/* Pop a guest buffer only when a frame waits for it: popped buffers cannot go back. */
	while ((f = rx_peek(n)) != NULL) {
		/* §5.1.6.4: flags 0 (no checksum information), GSO_NONE, num_buffers 1. */
		uint8_t hdr[NET_HDR_LEN] = {[10] = 1};
		int r = virtq_pop(d, VIRTIO_NET_RXQ, &n->elem);

		if (r <= 0)
			break;
		if (n->elem.in_len < NET_HDR_LEN + f->len) {
			/*
			 * §5.1.6.3.1: without MRG_RXBUF the driver must post buffers that hold a whole
			 * frame. Drop the frame and give the buffer back empty.
			 */
			guest_error("virtio-net: receive buffer of %llu bytes for a %zu-byte frame",
				    (unsigned long long)n->elem.in_len, f->len);
			atomic_fetch_add_explicit(&n->rx_dropped, 1, memory_order_relaxed);
			atomic_fetch_add_explicit(&d->stats.errors, 1, memory_order_relaxed);
			virtq_push(d, VIRTIO_NET_RXQ, &n->elem, 0);
		} else {
			virtq_elem_write(&n->elem, 0, hdr, sizeof(hdr));
			virtq_elem_write(&n->elem, NET_HDR_LEN, f->data, f->len);
			virtq_push(d, VIRTIO_NET_RXQ, &n->elem, (uint32_t)(NET_HDR_LEN + f->len));
			atomic_fetch_add_explicit(&n->rx_frames, 1, memory_order_relaxed);
			atomic_fetch_add_explicit(&d->stats.bytes_read, f->len, memory_order_relaxed);
		}
		resume |= rx_drop_head(n);
	}
	virtq_notify(d, VIRTIO_NET_RXQ);
	if (resume && n->be->ops->rx_ready)
		n->be->ops->rx_ready(n->be);
}

static void net_tx(struct virtio_dev *d, struct virtio_net *n)
{
	while (virtq_pop(d, VIRTIO_NET_TXQ, &n->elem) > 0) {
		uint64_t len = n->elem.out_len;
		struct iovec iov;

		if (len < NET_HDR_LEN || n->elem.nin) {
			/* §5.1.6.2: a transmit buffer is a header plus the frame, all device-readable. */
			virtq_push(d, VIRTIO_NET_TXQ, &n->elem, 0);
			virtio_dev_needs_reset(d, len < NET_HDR_LEN ? "transmit buffer shorter than its header"
								    : "device-writable buffer on the transmit queue");
			break;
		}
		if (len > sizeof(n->tx_buf)) {
			guest_error("virtio-net: %llu-byte transmit frame dropped (at most %d bytes)",
				    (unsigned long long)(len - NET_HDR_LEN), NET_MAX_FRAME);
			atomic_fetch_add_explicit(&n->tx_errors, 1, memory_order_relaxed);
			atomic_fetch_add_explicit(&d->stats.errors, 1, memory_order_relaxed);
			virtq_push(d, VIRTIO_NET_TXQ, &n->elem, 0);
			continue;
		}
		virtq_elem_read(&n->elem, 0, n->tx_buf, len);
		/*
		 * No offloads are offered, so the header carries nothing to act on (flags and
		 * gso_type must be 0, §5.1.6.2.1); the frame follows it.
		 */
		iov.iov_base = n->tx_buf + NET_HDR_LEN;
		iov.iov_len = len - NET_HDR_LEN;
		if (iov.iov_len == 0 || n->be->ops->send(n->be, &iov, 1) < 0) {
			atomic_fetch_add_explicit(&n->tx_errors, 1, memory_order_relaxed);
			atomic_fetch_add_explicit(&d->stats.errors, 1, memory_order_relaxed);
		} else {
			atomic_fetch_add_explicit(&n->tx_frames, 1, memory_order_relaxed);
			atomic_fetch_add_explicit(&d->stats.bytes_written, iov.iov_len, memory_order_relaxed);
		}
		virtq_push(d, VIRTIO_NET_TXQ, &n->elem, 0);
	}
	virtq_notify(d, VIRTIO_NET_TXQ);
}

static void net_queue_notify(struct virtio_dev *d, unsigned q)
{
	if (q == VIRTIO_NET_RXQ)
		net_rx(d, d->priv);
	else if (q == VIRTIO_NET_TXQ)
		net_tx(d, d->priv);
}

static void net_free(struct virtio_dev *d)
{
	struct virtio_net *n = d->priv;

	if (!n)
		return;
	if (n->be)
		n->be->ops->free(n->be); /* joins the back end's thread: no receive() after this */
	rx_flush(n);
	pthread_mutex_destroy(&n->rx_lock);
	free(n);
}

static const struct virtio_dev_ops net_ops = {
	.name = "virtio-net",
	.device_id = VIRTIO_ID_NET,
	.num_queues = 2,
	.queue_max = 256,
	.features = (1ULL << VIRTIO_NET_F_MAC) | (1ULL << VIRTIO_NET_F_STATUS),
	.config_size = NET_CFG_SIZE,
	.queue_notify = net_queue_notify,
	.free = net_free,
};

int virtio_net_new(struct memmap *mm, struct net_backend *be, const uint8_t mac[6],
		   struct virtio_dev **out)
{
	struct virtio_net *n;
	struct virtio_dev *d;
	struct net_client client;
	int ret;

	n = calloc(1, sizeof(*n));
	if (!n) {
		be->ops->free(be);
		err_set("out of memory creating virtio-net");
		return -ENOMEM;
	}
	pthread_mutex_init(&n->rx_lock, NULL);
	ret = virtio_dev_new(&net_ops, mm, n, &d);
	if (ret) {
		pthread_mutex_destroy(&n->rx_lock);
		free(n);
		be->ops->free(be);
		return ret;
	}
	n->dev = d;
	n->be = be;
	/* §5.1.4: the MAC the driver uses; link always up; one queue pair. */
	memcpy(d->config + NET_CFG_MAC, mac, 6);
	d->config[NET_CFG_STATUS] = VIRTIO_NET_S_LINK_UP;
	d->config[NET_CFG_MAX_PAIRS] = 1;
	client = (struct net_client){.opaque = n, .receive = net_receive, .can_receive = net_can_receive};
	ret = be->ops->start(be, &client);
	if (ret) {
		virtio_dev_free(d); /* frees n and be */
		return ret;
	}
	*out = d;
	return 0;
}

void virtio_net_get_stats(struct virtio_dev *d, struct virtio_net_stats *out)
{
	struct virtio_net *n = d->priv;

	out->rx_frames = atomic_load_explicit(&n->rx_frames, memory_order_relaxed);
	out->tx_frames = atomic_load_explicit(&n->tx_frames, memory_order_relaxed);
	out->rx_dropped = atomic_load_explicit(&n->rx_dropped, memory_order_relaxed);
	out->tx_errors = atomic_load_explicit(&n->tx_errors, memory_order_relaxed);
}
