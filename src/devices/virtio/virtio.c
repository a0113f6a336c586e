/*
 * virtio.c - the virtio core: status handshake, feature negotiation, device reset and split
 * virtqueues with INDIRECT_DESC and EVENT_IDX (virtio 1.2 §2, §2.7). See kumo/virtio.h for
 * the threading rules. Every guest-controlled value is checked before use; a malformed ring
 * puts the device into DEVICE_NEEDS_RESET.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "kumo/base.h"
#include "kumo/memmap.h"
#include "kumo/virtio.h"

#define CORE_FEATURES \
	((1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_F_INDIRECT_DESC) | \
	 (1ULL << VIRTIO_F_EVENT_IDX))

static void stat_inc(_Atomic uint64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

int virtio_dev_new(const struct virtio_dev_ops *ops, struct memmap *mm, void *priv,
		   struct virtio_dev **out)
{
	struct virtio_dev *d;

	if (!ops || !ops->queue_notify || !ops->num_queues || ops->num_queues > VIRTIO_MAX_QUEUES ||
	    !ops->queue_max || ops->queue_max > VIRTQ_MAX_SIZE ||
	    (ops->queue_max & (ops->queue_max - 1))) {
		err_set("virtio: invalid device description");
		return -EINVAL;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		goto out_nomem;
	d->config = calloc(1, ops->config_size ? ops->config_size : 1);
	if (!d->config)
		goto out_free;
	d->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->notify_fd < 0) {
		int e = errno;

		free(d->config);
		free(d);
		err_set("%s: eventfd: %s", ops->name, strerror(e));
		return -e;
	}
	d->ops = ops;
	d->mm = mm;
	d->priv = priv;
	d->num_queues = ops->num_queues;
	d->device_features = ops->features | CORE_FEATURES;
	pthread_mutex_init(&d->lock, NULL);
	atomic_init(&d->pending, 0);
	for (unsigned q = 0; q < d->num_queues; q++)
		d->vq[q].num_max = ops->queue_max;
	virtio_dev_reset(d);
	*out = d;
	return 0;

out_free:
	free(d);
out_nomem:
	err_set("out of memory creating a virtio device");
	return -ENOMEM;
}

void virtio_dev_free(struct virtio_dev *d)
{
	if (!d)
		return;
	if (d->ops->free)
		d->ops->free(d);
	if (d->notify_fd >= 0)
		close(d->notify_fd);
	pthread_mutex_destroy(&d->lock);
	free(d->config);
	free(d);
}

static void update_irq_locked(struct virtio_dev *d)
{
	irq_line_set(&d->irq, d->isr != 0);
}

static void raise_locked(struct virtio_dev *d, uint32_t bits)
{
	d->isr |= bits;
	stat_inc(&d->stats.interrupts, 1);
	update_irq_locked(d);
}

/* virtio 1.2 §2.4: the device returns to its initial state; queues are forgotten. */
static void reset_locked(struct virtio_dev *d)
{
	d->status = 0;
	d->driver_features = 0;
	d->isr = 0;
	for (unsigned q = 0; q < d->num_queues; q++) {
		struct virtq *vq = &d->vq[q];
		uint32_t gen = vq->gen + 1;
		uint16_t num_max = vq->num_max;

		memset(vq, 0, sizeof(*vq));
		vq->num_max = num_max;
		vq->num = num_max;
		vq->gen = gen;
	}
	if (d->ops->reset)
		d->ops->reset(d);
	update_irq_locked(d);
}

void virtio_dev_reset(struct virtio_dev *d)
{
	pthread_mutex_lock(&d->lock);
	reset_locked(d);
	pthread_mutex_unlock(&d->lock);
}

bool virtio_has_feature(const struct virtio_dev *d, unsigned bit)
{
	return bit < 64 && (d->driver_features >> bit) & 1;
}

void virtio_dev_set_status(struct virtio_dev *d, uint32_t status)
{
	uint32_t old;

	pthread_mutex_lock(&d->lock);
	old = d->status & ~VIRTIO_STATUS_NEEDS_RESET;
	if (status == 0) {
		reset_locked(d);
		goto out;
	}
	status &= 0xff & ~VIRTIO_STATUS_NEEDS_RESET; /* NEEDS_RESET belongs to the device */
	if (old & ~status) {
		/* virtio 1.2 §2.1.1: the driver MUST NOT clear a status bit. */
		guest_error("%s: status 0x%x clears bits of 0x%x; ignored", d->ops->name, status,
			    old);
		goto out;
	}
	if ((status & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK)) {
		/* virtio 1.2 §3.1.1, §6.1: modern devices need VERSION_1; nothing unoffered. */
		if (!(d->driver_features & (1ULL << VIRTIO_F_VERSION_1)) ||
		    (d->driver_features & ~d->device_features)) {
			guest_error("%s: features 0x%" PRIx64 " refused (offered 0x%" PRIx64 ")",
				    d->ops->name, d->driver_features, d->device_features);
			status &= ~VIRTIO_STATUS_FEATURES_OK;
		}
	}
	if ((status & VIRTIO_STATUS_DRIVER_OK) && !(status & VIRTIO_STATUS_FEATURES_OK)) {
		guest_error("%s: DRIVER_OK without FEATURES_OK", d->ops->name);
		status &= ~VIRTIO_STATUS_DRIVER_OK;
	}
	d->status = status | (d->status & VIRTIO_STATUS_NEEDS_RESET);
	/* Buffers made available before DRIVER_OK (§3.1.1 step 8) are served now. */
	if ((status & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK))
		for (unsigned q = 0; q < d->num_queues; q++)
			if (d->vq[q].ready)
				atomic_fetch_or(&d->pending, 1u << q);
	if (atomic_load(&d->pending)) {
		uint64_t one = 1;

		if (write(d->notify_fd, &one, sizeof(one)) < 0) {
			/* EAGAIN: already signalled */
		}
	}
out:
	pthread_mutex_unlock(&d->lock);
}

/* virtio 1.2 §2.7: alignment and size of the three areas of a split virtqueue. */
bool virtio_queue_enable(struct virtio_dev *d, unsigned q)
{
	struct virtq *vq = &d->vq[q];
	uint64_t n = vq->num;
	void *desc, *avail, *used;

	if (q >= d->num_queues)
		return false;
	if (!n || n > vq->num_max || (n & (n - 1))) {
		guest_error("%s: queue %u size %" PRIu64 " is not a power of 2 up to %u",
			    d->ops->name, q, n, vq->num_max);
		return false;
	}
	if ((vq->desc_gpa & 15) || (vq->avail_gpa & 1) || (vq->used_gpa & 3)) {
		guest_error("%s: queue %u areas misaligned (desc 0x%" PRIx64 " avail 0x%" PRIx64
			    " used 0x%" PRIx64 ")",
			    d->ops->name, q, vq->desc_gpa, vq->avail_gpa, vq->used_gpa);
		return false;
	}
	desc = d->mm ? memmap_ram_ptr(d->mm, vq->desc_gpa, 16 * n) : NULL;
	avail = d->mm ? memmap_ram_ptr(d->mm, vq->avail_gpa, 6 + 2 * n) : NULL;
	used = d->mm ? memmap_ram_ptr(d->mm, vq->used_gpa, 6 + 8 * n) : NULL;
	if (!desc || !avail || !used) {
		guest_error("%s: queue %u areas outside RAM (desc 0x%" PRIx64 " avail 0x%" PRIx64
			    " used 0x%" PRIx64 ")",
			    d->ops->name, q, vq->desc_gpa, vq->avail_gpa, vq->used_gpa);
		return false;
	}
	vq->desc = desc;
	vq->avail = avail;
	vq->used = used;
	vq->last_avail = 0;
	vq->used_idx = 0;
	vq->signalled_valid = false;
	vq->signalled_used = 0;
	vq->ready = true;
	return true;
}

static void needs_reset_locked(struct virtio_dev *d, const char *why)
{
	guest_error("%s: %s: device needs reset", d->ops->name, why);
	if (d->status & VIRTIO_STATUS_NEEDS_RESET)
		return;
	stat_inc(&d->stats.needs_reset, 1);
	d->status |= VIRTIO_STATUS_NEEDS_RESET;
	/* virtio 1.2 §2.1.2: notify the driver with a configuration change if it is live. */
	if (d->status & VIRTIO_STATUS_DRIVER_OK)
		raise_locked(d, VIRTIO_INT_CONFIG);
}

void virtio_dev_needs_reset(struct virtio_dev *d, const char *why)
{
	pthread_mutex_lock(&d->lock);
	needs_reset_locked(d, why);
	pthread_mutex_unlock(&d->lock);
}

void virtio_dev_config_changed(struct virtio_dev *d)
{
	pthread_mutex_lock(&d->lock);
	d->config_generation++;
	if (d->status & VIRTIO_STATUS_DRIVER_OK)
		raise_locked(d, VIRTIO_INT_CONFIG);
	pthread_mutex_unlock(&d->lock);
}

void virtio_dev_ack_irq(struct virtio_dev *d, uint32_t bits)
{
	pthread_mutex_lock(&d->lock);
	d->isr &= ~bits;
	update_irq_locked(d);
	pthread_mutex_unlock(&d->lock);
}

void virtio_dev_kick(struct virtio_dev *d, unsigned q)
{
	uint64_t one = 1;

	if (q >= d->num_queues) {
		guest_error("%s: notify of queue %u, which does not exist", d->ops->name, q);
		return;
	}
	stat_inc(&d->stats.notifications, 1);
	atomic_fetch_or(&d->pending, 1u << q);
	if (write(d->notify_fd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is saturated, which already means "wake up" */
	}
}

void virtio_dev_process(struct virtio_dev *d)
{
	uint64_t cnt;
	uint32_t mask;

	if (read(d->notify_fd, &cnt, sizeof(cnt)) < 0) {
		/* EAGAIN: nothing signalled since the last drain; pending may still be set */
	}
	mask = atomic_exchange(&d->pending, 0);
	for (unsigned q = 0; mask && q < d->num_queues; q++)
		if (mask & (1u << q))
			d->ops->queue_notify(d, q);
}

/* ---- split virtqueues (virtio 1.2 §2.7) ---- */

static bool queue_live_locked(const struct virtio_dev *d, const struct virtq *vq)
{
	return vq->ready && (d->status & VIRTIO_STATUS_DRIVER_OK) &&
	       !(d->status & VIRTIO_STATUS_NEEDS_RESET);
}

/* Guest memory may change under us: read each field exactly once into a local copy. */
static struct virtq_desc read_desc(const void *table, unsigned i)
{
	const volatile struct virtq_desc *p = (const volatile struct virtq_desc *)table + i;

	return (struct virtq_desc){.addr = p->addr, .len = p->len, .flags = p->flags,
				   .next = p->next};
}

static volatile uint16_t *avail_event(const struct virtq *vq)
{
	return (volatile uint16_t *)((volatile uint8_t *)vq->used + 4 + 8 * (size_t)vq->num);
}

/*
 * Walks the chain starting at `head` into e (virtio 1.2 §2.7.5, §2.7.5.3). Returns NULL on
 * success or the reason the chain is malformed.
 */
static const char *walk_chain(struct virtio_dev *d, struct virtq *vq, uint16_t head,
			      struct virtq_elem *e)
{
	const void *table = vq->desc;
	unsigned tsize = vq->num, idx = head, in_table = 0;
	bool indirect = false;

	e->head = head;
	e->ndesc = 0;
	e->nout = e->nin = 0;
	e->out_len = e->in_len = 0;
	if (head >= vq->num)
		return "head descriptor index out of range";
	for (;;) {
		struct virtq_desc desc = read_desc(table, idx);
		void *p;

		/* A chain visiting more descriptors than its table holds has a loop. */
		if (++in_table > tsize)
			return indirect ? "loop in an indirect table" : "descriptor chain loops";
		if (++e->ndesc > 2 * vq->num)
			return "too many descriptors";
		if (desc.flags & VIRTQ_DESC_F_INDIRECT) {
			/* §2.7.5.3.1 */
			if (!virtio_has_feature(d, VIRTIO_F_INDIRECT_DESC))
				return "indirect descriptor without INDIRECT_DESC";
			if (indirect)
				return "nested indirect table";
			if (desc.flags & VIRTQ_DESC_F_NEXT)
				return "indirect descriptor with NEXT";
			if (!desc.len || desc.len % sizeof(struct virtq_desc))
				return "indirect table length not a multiple of 16";
			if (desc.len / sizeof(struct virtq_desc) > vq->num)
				return "indirect table longer than the queue";
			table = memmap_ram_ptr(d->mm, desc.addr, desc.len);
			if (!table)
				return "indirect table outside RAM";
			tsize = desc.len / sizeof(struct virtq_desc);
			indirect = true;
			in_table = 0;
			idx = 0;
			continue;
		}
		if (desc.len) {
			if (e->nout + e->nin >= vq->num)
				return "more buffers than the queue size";
			p = memmap_ram_ptr(d->mm, desc.addr, desc.len);
			if (!p)
				return "buffer outside RAM";
			if (desc.flags & VIRTQ_DESC_F_WRITE) {
				e->iov[e->nout + e->nin++] = (struct iovec){p, desc.len};
				e->in_len += desc.len;
			} else {
				/* §2.7.4.2: readable descriptors come before writable ones. */
				if (e->nin)
					return "readable descriptor after a writable one";
				e->iov[e->nout++] = (struct iovec){p, desc.len};
				e->out_len += desc.len;
			}
		}
		if (!(desc.flags & VIRTQ_DESC_F_NEXT))
			return NULL;
		idx = desc.next;
		if (idx >= tsize)
			return "next descriptor index out of range";
	}
}

int virtq_pop(struct virtio_dev *d, unsigned q, struct virtq_elem *e)
{
	struct virtq *vq = &d->vq[q];
	const char *why;
	uint16_t avail_idx, head;
	int ret = 0;

	if (q >= d->num_queues)
		return 0;
	pthread_mutex_lock(&d->lock);
	if (!queue_live_locked(d, vq))
		goto out;
	avail_idx = vq->avail[1];
	if (avail_idx == vq->last_avail) {
		if (!virtio_has_feature(d, VIRTIO_F_EVENT_IDX))
			goto out;
		/*
		 * §2.7.10: ask for a notification when the driver adds the next buffer. The full
		 * fence orders the avail_event store before the re-read of avail->idx; it pairs
		 * with the driver's barrier between its avail->idx store and its avail_event load.
		 */
		*avail_event(vq) = vq->last_avail;
		/* Logged like the store below: the guest may have changed the word meanwhile. */
		memmap_ram_will_write(d->mm, (const void *)avail_event(vq), 2);
		atomic_thread_fence(memory_order_seq_cst);
		avail_idx = vq->avail[1];
		if (avail_idx == vq->last_avail)
			goto out;
	}
	if ((uint16_t)(avail_idx - vq->last_avail) > vq->num) {
		needs_reset_locked(d, "available index moved past the queue size");
		ret = -EIO;
		goto out;
	}
	/* Read the ring entry only after avail->idx: pairs with the driver's write barrier. */
	atomic_thread_fence(memory_order_acquire);
	head = vq->avail[2 + vq->last_avail % vq->num];
	vq->last_avail++;
	why = walk_chain(d, vq, head, e);
	if (why) {
		char msg[96];

		snprintf(msg, sizeof(msg), "queue %u head %u: %s", q, head, why);
		needs_reset_locked(d, msg);
		ret = -EIO;
		goto out;
	}
	e->gen = vq->gen;
	if (virtio_has_feature(d, VIRTIO_F_EVENT_IDX)) {
		*avail_event(vq) = vq->last_avail;
		/* The device area is guest RAM the vCPUs never write: log it for diff snapshots. */
		memmap_ram_will_write(d->mm, (const void *)avail_event(vq), 2);
	}
	ret = 1;
out:
	pthread_mutex_unlock(&d->lock);
	/* The device may write the driver's writable buffers from now on: open them first. */
	for (unsigned i = e->nout; ret == 1 && i < e->nout + e->nin; i++)
		memmap_ram_will_write(d->mm, e->iov[i].iov_base, e->iov[i].iov_len);
	return ret;
}

void virtq_push(struct virtio_dev *d, unsigned q, const struct virtq_elem *e, uint32_t len)
{
	struct virtq *vq = &d->vq[q];
	volatile uint32_t *slot;

	if (q >= d->num_queues)
		return;
	pthread_mutex_lock(&d->lock);
	if (e->gen != vq->gen || !vq->ready)
		goto out; /* the device was reset since the pop: forget the request */
	if (len > e->in_len)
		len = (uint32_t)e->in_len;
	slot = (volatile uint32_t *)((volatile uint8_t *)vq->used + 4 +
				     8 * (size_t)(vq->used_idx % vq->num));
	/*
	 * Announce what the device wrote into the driver's buffers (DMA bypasses the vCPUs, so
	 * caches of decoded guest code must drop those pages) before the driver can see it.
	 */
	for (unsigned i = e->nout, left = len; i < e->nout + e->nin && left; i++) {
		size_t n = e->iov[i].iov_len < left ? e->iov[i].iov_len : left;

		memmap_ram_written(d->mm, e->iov[i].iov_base, n);
		left -= (unsigned)n;
	}
	/* The used ring is guest RAM written behind the vCPUs' backs: log it (memmap.h). */
	memmap_ram_will_write(d->mm, (const void *)vq->used, 4 + 8 * (size_t)vq->num);
	slot[0] = e->head;
	slot[1] = len;
	/* The element must be visible before the index: pairs with the driver's read barrier. */
	atomic_thread_fence(memory_order_release);
	vq->used_idx++;
	vq->used[1] = vq->used_idx;
	stat_inc(&d->stats.requests, 1);
out:
	pthread_mutex_unlock(&d->lock);
}

/* §2.7.10.1: has new_idx moved past event since old? (the vring_need_event formula) */
static bool need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

void virtq_notify(struct virtio_dev *d, unsigned q)
{
	struct virtq *vq = &d->vq[q];
	bool need;

	if (q >= d->num_queues)
		return;
	pthread_mutex_lock(&d->lock);
	/* Nothing completed since the last interrupt decision (signalled_used starts at 0). */
	if (!vq->ready || vq->signalled_used == vq->used_idx)
		goto out;
	/*
	 * Order the used->idx store before reading the driver's suppression fields; pairs with
	 * the driver's barrier between writing used_event/flags and re-reading used->idx.
	 */
	atomic_thread_fence(memory_order_seq_cst);
	if (virtio_has_feature(d, VIRTIO_F_EVENT_IDX))
		need = !vq->signalled_valid ||
		       need_event(vq->avail[2 + vq->num], vq->used_idx, vq->signalled_used);
	else
		need = !(vq->avail[0] & VIRTQ_AVAIL_F_NO_INTERRUPT);
	vq->signalled_used = vq->used_idx;
	vq->signalled_valid = true;
	if (need)
		raise_locked(d, VIRTIO_INT_USED);
out:
	pthread_mutex_unlock(&d->lock);
}

/* ---- element data access ---- */

static size_t copy_iov(const struct iovec *iov, unsigned n, uint64_t off, void *buf, size_t len,
		       bool to_iov)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		size_t chunk = iov[i].iov_len - off;

		if (chunk > len - done)
			chunk = len - done;
		if (to_iov)
			memcpy((uint8_t *)iov[i].iov_base + off, (const uint8_t *)buf + done, chunk);
		else
			memcpy((uint8_t *)buf + done, (const uint8_t *)iov[i].iov_base + off, chunk);
		done += chunk;
		off = 0;
	}
	return done;
}

size_t virtq_elem_read(const struct virtq_elem *e, uint64_t off, void *buf, size_t len)
{
	return copy_iov(e->iov, e->nout, off, buf, len, false);
}

size_t virtq_elem_write(const struct virtq_elem *e, uint64_t off, const void *buf, size_t len)
{
	return copy_iov(e->iov + e->nout, e->nin, off, (void *)buf, len, true);
}

int virtq_elem_slice(const struct virtq_elem *e, bool writable, uint64_t off, uint64_t len,
		     struct iovec *dst, unsigned max)
{
	const struct iovec *iov = writable ? e->iov + e->nout : e->iov;
	unsigned n = writable ? e->nin : e->nout, cnt = 0;

	for (unsigned i = 0; i < n && len; i++) {
		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		uint64_t chunk = iov[i].iov_len - off;

		if (chunk > len)
			chunk = len;
		if (cnt == max)
			return -ENOSPC;
		dst[cnt++] = (struct iovec){(uint8_t *)iov[i].iov_base + off, chunk};
		len -= chunk;
		off = 0;
	}
	return len ? -ENOSPC : (int)cnt;
}

/* ---- snapshots (src/vmm/snapshot.c through the virtio-mmio transport) ---- */

/* Fixed part of a device's snapshot image; config bytes and queues follow. */
struct virtio_state_head {
	uint32_t device_id, num_queues, config_size, status, isr, config_generation;
	uint64_t device_features, driver_features;
};

struct virtio_state_queue {
	uint64_t desc_gpa, avail_gpa, used_gpa;
	uint32_t gen;
	uint16_t num, last_avail, used_idx, signalled_used;
	uint8_t ready, signalled_valid, pad[6];
};

int virtio_dev_save(struct virtio_dev *d, void *buf, size_t cap)
{
	struct virtio_state_head h;
	size_t need = sizeof(h) + ALIGN_UP(d->ops->config_size, 8) +
		      d->num_queues * sizeof(struct virtio_state_queue);
	uint8_t *out = buf;

	if (cap < need)
		return -ENOSPC;
	memset(out, 0, need);
	pthread_mutex_lock(&d->lock);
	h = (struct virtio_state_head){.device_id = d->ops->device_id,
				       .num_queues = d->num_queues,
				       .config_size = (uint32_t)d->ops->config_size,
				       .status = d->status,
				       .isr = d->isr,
				       .config_generation = d->config_generation,
				       .device_features = d->device_features,
				       .driver_features = d->driver_features};
	memcpy(out, &h, sizeof(h));
	if (d->ops->config_size)
		memcpy(out + sizeof(h), d->config, d->ops->config_size);
	for (unsigned q = 0; q < d->num_queues; q++) {
		const struct virtq *vq = &d->vq[q];
		struct virtio_state_queue s;

		memset(&s, 0, sizeof(s));
		s.desc_gpa = vq->desc_gpa;
		s.avail_gpa = vq->avail_gpa;
		s.used_gpa = vq->used_gpa;
		s.gen = vq->gen;
		s.num = vq->num;
		s.last_avail = vq->last_avail;
		s.used_idx = vq->used_idx;
		s.signalled_used = vq->signalled_used;
		s.ready = vq->ready;
		s.signalled_valid = vq->signalled_valid;
		memcpy(out + sizeof(h) + ALIGN_UP(d->ops->config_size, 8) + q * sizeof(s), &s,
		       sizeof(s));
	}
	pthread_mutex_unlock(&d->lock);
	return (int)need;
}

int virtio_dev_load(struct virtio_dev *d, const void *buf, size_t len)
{
	const uint8_t *in = buf;
	struct virtio_state_head h;
	size_t cfg_len = ALIGN_UP(d->ops->config_size, 8);
	int ret = 0;

	if (len < sizeof(h))
		return -EINVAL;
	memcpy(&h, in, sizeof(h));
	if (h.device_id != d->ops->device_id || h.num_queues != d->num_queues ||
	    h.config_size != d->ops->config_size ||
	    len != sizeof(h) + cfg_len + d->num_queues * sizeof(struct virtio_state_queue) ||
	    (h.driver_features & ~d->device_features))
		return -EINVAL;
	pthread_mutex_lock(&d->lock);
	reset_locked(d);
	d->status = h.status;
	d->driver_features = h.driver_features;
	d->config_generation = h.config_generation;
	if (d->ops->config_size)
		memcpy(d->config, in + sizeof(h), d->ops->config_size);
	for (unsigned q = 0; q < d->num_queues && !ret; q++) {
		struct virtq *vq = &d->vq[q];
		struct virtio_state_queue s;

		memcpy(&s, in + sizeof(h) + cfg_len + q * sizeof(s), sizeof(s));
		vq->num = s.num;
		vq->desc_gpa = s.desc_gpa;
		vq->avail_gpa = s.avail_gpa;
		vq->used_gpa = s.used_gpa;
		vq->gen = s.gen;
		if (!s.ready)
			continue;
		/* Recomputes the host pointers (and checks the areas), then the ring positions. */
		if (!virtio_queue_enable(d, q)) {
			ret = -EINVAL;
			break;
		}
		vq->last_avail = s.last_avail;
		vq->used_idx = s.used_idx;
		vq->signalled_used = s.signalled_used;
		vq->signalled_valid = s.signalled_valid;
	}
	if (ret) {
		reset_locked(d);
	} else {
		d->isr = h.isr; /* re-drives the line: a pending interrupt stays pending */
		update_irq_locked(d);
	}
	pthread_mutex_unlock(&d->lock);
	return ret;
}
