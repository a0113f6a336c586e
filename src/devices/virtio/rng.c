/*
 * rng.c - virtio-rng (virtio 1.2 §5.4): fills every device-writable buffer of the request
 * queue with host entropy (getrandom() unless a test supplies its own source).
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>

#include "kumo/base.h"
#include "kumo/virtio.h"

#define RNG_CHUNK 4096
#define RNG_MAX_REQUEST (64u << 10) /* bytes given per request at most */

struct virtio_rng {
	virtio_rng_fill_fn *fill;
	struct virtq_elem elem;
	uint8_t buf[RNG_CHUNK];
};

static long host_fill(void *buf, size_t len)
{
	ssize_t n;

	do
		n = getrandom(buf, len, 0);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : (long)n;
}

static void rng_queue_notify(struct virtio_dev *d, unsigned q)
{
	struct virtio_rng *r = d->priv;

	while (virtq_pop(d, q, &r->elem) > 0) {
		uint64_t want = r->elem.in_len < RNG_MAX_REQUEST ? r->elem.in_len : RNG_MAX_REQUEST;
		uint64_t done = 0;

		while (done < want) {
			size_t chunk = want - done < RNG_CHUNK ? want - done : RNG_CHUNK;
			long n = r->fill(r->buf, chunk);

			if (n <= 0)
				break;
			done += virtq_elem_write(&r->elem, done, r->buf, (size_t)n);
		}
		if (done < want && !done)
			atomic_fetch_add_explicit(&d->stats.errors, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&d->stats.bytes_read, done, memory_order_relaxed);
		virtq_push(d, q, &r->elem, (uint32_t)done);
	}
	virtq_notify(d, q);
}

static void rng_free(struct virtio_dev *d)
{
	free(d->priv);
}

static const struct virtio_dev_ops rng_ops = {
	.name = "virtio-rng",
	.device_id = VIRTIO_ID_RNG,
	.num_queues = 1,
	.queue_max = 64,
	.queue_notify = rng_queue_notify,
	.free = rng_free,
};

int virtio_rng_new(struct memmap *mm, virtio_rng_fill_fn *fill, struct virtio_dev **out)
{
	struct virtio_rng *r = calloc(1, sizeof(*r));
	int ret;

	if (!r) {
		err_set("out of memory creating virtio-rng");
		return -ENOMEM;
	}
	r->fill = fill ? fill : host_fill;
	ret = virtio_dev_new(&rng_ops, mm, r, out);
	if (ret)
		free(r);
	return ret;
}
