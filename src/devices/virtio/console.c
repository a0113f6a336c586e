/*
 * console.c - virtio-console (virtio 1.2 §5.3) with a single port (hvc0) and no optional
 * features: receiveq0 carries host input into guest buffers, transmitq0 carries guest output
 * to the host back end. Both run on the I/O thread.
 */
#include <errno.h>
#include <stdlib.h>

#include "kumo/base.h"
#include "kumo/virtio.h"

#define CON_CHUNK 4096
#define CFG_SIZE 12 /* cols, rows, max_nr_ports, emerg_wr (§5.3.4) */

struct virtio_console {
	struct virtio_console_backend be;
	struct virtq_elem elem;
	uint8_t buf[CON_CHUNK];
};

static void con_rx(struct virtio_dev *d, struct virtio_console *c)
{
	/* Pop a receive buffer only when there is input for it: popped buffers can't go back. */
	while (c->be.pending(c->be.opaque) && virtq_pop(d, VIRTIO_CONSOLE_RXQ, &c->elem) > 0) {
		size_t room = c->elem.in_len < CON_CHUNK ? c->elem.in_len : CON_CHUNK;
		size_t n = c->be.read(c->be.opaque, c->buf, room);

		virtq_elem_write(&c->elem, 0, c->buf, n);
		atomic_fetch_add_explicit(&d->stats.bytes_read, n, memory_order_relaxed);
		virtq_push(d, VIRTIO_CONSOLE_RXQ, &c->elem, (uint32_t)n);
	}
	virtq_notify(d, VIRTIO_CONSOLE_RXQ);
}

static void con_tx(struct virtio_dev *d, struct virtio_console *c)
{
	while (virtq_pop(d, VIRTIO_CONSOLE_TXQ, &c->elem) > 0) {
		uint64_t off = 0;
		size_t n;

		while ((n = virtq_elem_read(&c->elem, off, c->buf, sizeof(c->buf))) > 0) {
			c->be.write(c->be.opaque, c->buf, n);
			off += n;
		}
		atomic_fetch_add_explicit(&d->stats.bytes_written, off, memory_order_relaxed);
		virtq_push(d, VIRTIO_CONSOLE_TXQ, &c->elem, 0);
	}
	virtq_notify(d, VIRTIO_CONSOLE_TXQ);
}

static void con_queue_notify(struct virtio_dev *d, unsigned q)
{
	if (q == VIRTIO_CONSOLE_RXQ)
		con_rx(d, d->priv);
	else
		con_tx(d, d->priv);
}

static void con_free(struct virtio_dev *d)
{
	free(d->priv);
}

static const struct virtio_dev_ops console_ops = {
	.name = "virtio-console",
	.device_id = VIRTIO_ID_CONSOLE,
	.num_queues = 2,
	.queue_max = 128,
	.config_size = CFG_SIZE,
	.queue_notify = con_queue_notify,
	.free = con_free,
};

int virtio_console_new(struct memmap *mm, const struct virtio_console_backend *be,
		       struct virtio_dev **out)
{
	struct virtio_console *c;
	int ret;

	if (!be || !be->pending || !be->read || !be->write) {
		err_set("virtio-console: incomplete host back end");
		return -EINVAL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		err_set("out of memory creating virtio-console");
		return -ENOMEM;
	}
	c->be = *be;
	ret = virtio_dev_new(&console_ops, mm, c, out);
	if (ret)
		free(c);
	return ret;
}
