/*
 * virtio.h - the virtio core: device state, feature negotiation, split virtqueues, and the
 * interface between a transport (virtio-mmio), a device model (blk, rng, console, net, ...)
 * and the thread that does the device's work.
 *
 * Usage (a device model):
 *
 *     static const struct virtio_dev_ops my_ops = {
 *             .name = "virtio-foo", .device_id = VIRTIO_ID_FOO, .num_queues = 1,
 *             .queue_max = 256, .features = MY_FEATURES, .config_size = sizeof(cfg),
 *             .queue_notify = my_queue_notify, .reset = my_reset, .free = my_free,
 *     };
 *     virtio_dev_new(&my_ops, mm, my_state, &dev);        // then write dev->config
 *     ... the board wraps dev in a transport (virtio_mmio_new) and sets dev->irq ...
 *
 *     static void my_queue_notify(struct virtio_dev *d, unsigned q)   // on the I/O thread
 *     {
 *             struct virtq_elem *e = ...;               // the device's own element buffer
 *             while (virtq_pop(d, q, e) > 0) {
 *                     ... read e->iov[0..nout), write e->iov[nout..nout+nin) ...
 *                     virtq_push(d, q, e, bytes_written);
 *             }
 *             virtq_notify(d, q);                          // interrupt if the driver wants one
 *     }
 *
 * Threads and locks. Transport register accesses run on vCPU threads; a QueueNotify write
 * only sets a bit in d->pending and signals d->notify_fd (an eventfd). The VMM's I/O thread
 * polls that fd and calls virtio_dev_process(), which calls ops->queue_notify() for each
 * notified queue. All of a device's queue processing therefore happens on one thread, one
 * queue at a time, without any lock held: device models need no locking of their own for
 * state only queue_notify touches. d->lock (a mutex) protects the transport-visible state
 * (status, features, queue configuration, interrupt status, config space); virtq_pop/push/
 * notify take it briefly, never across host I/O, so a slow disk never blocks a vCPU's
 * register access. A device reset (status 0, from a vCPU) bumps every queue's generation:
 * a virtq_push() for an element popped before the reset is dropped.
 *
 * Guest memory. Every guest-physical address (rings, descriptors, indirect tables, buffers)
 * is checked against guest RAM with memmap_ram_ptr() before a host pointer is formed, so a
 * device never touches host memory outside guest RAM. A malformed ring or chain (index out
 * of range, loop, too many descriptors, buffer outside RAM, nested indirect table, readable
 * after writable, ...) is a guest error: the device enters DEVICE_NEEDS_RESET (virtio 1.2
 * §2.1.2), raises a configuration-change interrupt and stops processing until the driver
 * resets it. Device models report malformed *requests* (a header too short, a status byte
 * that is not writable) through virtio_dev_needs_reset() too, and failed host I/O as the
 * device's error status (e.g. VIRTIO_BLK_S_IOERR).
 */
#ifndef KUMO_VIRTIO_H
#define KUMO_VIRTIO_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "kumo/irq.h"

struct memmap;

/* Device IDs (virtio 1.2 §5). */
#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG 4

/* Device status bits (virtio 1.2 §2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED 128

/* Transport-independent feature bits (virtio 1.2 §6). */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32
#define VIRTIO_F_ACCESS_PLATFORM 33

/* Interrupt status bits (virtio 1.2 §4.2.2 InterruptStatus; also the PCI ISR). */
#define VIRTIO_INT_USED 1
#define VIRTIO_INT_CONFIG 2

/* Split virtqueue layout (virtio 1.2 §2.7). */
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY 1

#define VIRTQ_MAX_SIZE 1024   /* largest QueueNumMax a device may offer (power of 2) */
#define VIRTQ_IOV_MAX VIRTQ_MAX_SIZE /* a chain never has more descriptors than the queue size */
#define VIRTIO_MAX_QUEUES 32  /* d->pending is a 32-bit mask */

/* One descriptor as it sits in guest memory (little-endian; the host is little-endian). */
struct virtq_desc {
	uint64_t addr; /* guest-physical */
	uint32_t len;  /* bytes */
	uint16_t flags;
	uint16_t next;
};

/*
 * One popped request: a descriptor chain turned into host iovecs. iov[0..nout) are the
 * device-readable buffers (driver -> device) in chain order, iov[nout..nout+nin) the
 * device-writable ones. Every iovec lies inside guest RAM. Zero-length descriptors are
 * dropped. out_len/in_len are the byte totals of each part.
 */
struct virtq_elem {
	uint16_t head;   /* descriptor index returned in the used ring */
	uint16_t ndesc;  /* descriptors walked, indirect ones included */
	unsigned nout, nin;
	uint64_t out_len, in_len;
	uint32_t gen;    /* queue generation at pop time (see virtq_push) */
	struct iovec iov[VIRTQ_IOV_MAX];
};

/* State of one virtqueue. Fields marked (T) are written by the transport under d->lock. */
struct virtq {
	uint16_t num_max;      /* QueueNumMax offered */
	uint16_t num;          /* (T) QueueNum: power of 2, 1..num_max */
	bool ready;            /* (T) QueueReady */
	uint64_t desc_gpa;     /* (T) descriptor table */
	uint64_t avail_gpa;    /* (T) driver area */
	uint64_t used_gpa;     /* (T) device area */
	/* Host pointers, set when the queue becomes ready (all three checked inside RAM). */
	struct virtq_desc *desc;
	volatile uint16_t *avail; /* flags, idx, ring[num], used_event */
	volatile uint16_t *used;  /* flags, idx, then ring of {le32 id, le32 len}, avail_event */
	uint16_t last_avail;   /* next avail ring slot the device reads */
	uint16_t used_idx;     /* the device's copy of used->idx */
	uint16_t signalled_used; /* used_idx when the driver was last interrupted (EVENT_IDX) */
	bool signalled_valid;  /* signalled_used is meaningful (cleared by reset) */
	uint32_t gen;          /* bumped by every device reset */
	uint64_t notifies;     /* QueueNotify writes for this queue */
};

/* Per-device counters, for the metrics API. Updated with relaxed atomics; any thread reads. */
struct virtio_stats {
	_Atomic uint64_t requests;      /* requests completed (pushed) */
	_Atomic uint64_t bytes_read;    /* bytes the device read from the host back end */
	_Atomic uint64_t bytes_written; /* bytes the device wrote to the host back end */
	_Atomic uint64_t errors;        /* requests failed with an error status */
	_Atomic uint64_t notifications; /* QueueNotify writes from the driver */
	_Atomic uint64_t interrupts;    /* interrupts raised (used buffer + config change) */
	_Atomic uint64_t needs_reset;   /* times the device entered DEVICE_NEEDS_RESET */
};

struct virtio_dev;

/* What a device model provides. Constant; one table per device type. */
struct virtio_dev_ops {
	const char *name;      /* "virtio-blk": used in guest_error lines */
	uint32_t device_id;    /* VIRTIO_ID_* */
	uint32_t vendor_id;    /* 0: "KUMO" */
	unsigned num_queues;   /* 1..VIRTIO_MAX_QUEUES */
	uint16_t queue_max;    /* QueueNumMax of every queue: power of 2, <= VIRTQ_MAX_SIZE */
	/*
	 * Device-specific feature bits offered (bits 0-23 and 50+). The core adds VERSION_1,
	 * INDIRECT_DESC and EVENT_IDX; d->device_features may be edited after virtio_dev_new()
	 * and before the guest runs (e.g. VIRTIO_BLK_F_RO for a read-only disk).
	 */
	uint64_t features;
	size_t config_size;    /* bytes of device configuration space (d->config) */
	/* Queue q was notified. I/O thread, no lock held. Required. */
	void (*queue_notify)(struct virtio_dev *d, unsigned q);
	/* Device-specific reset to the initial state. Called with d->lock held. Optional. */
	void (*reset)(struct virtio_dev *d);
	/*
	 * The driver wrote config space bytes [off, off+len) (already stored in d->config).
	 * d->lock held. Optional: without it, config writes are ignored (read-only fields).
	 */
	void (*config_write)(struct virtio_dev *d, uint32_t off, uint32_t len);
	/* Releases the device model's state (d->priv). Optional. */
	void (*free)(struct virtio_dev *d);
};

struct virtio_dev {
	const struct virtio_dev_ops *ops;
	void *priv;                 /* the device model's state */
	struct memmap *mm;          /* guest RAM for ring and buffer access */
	struct irq_line irq;        /* set by the transport's owner (the board) */
	pthread_mutex_t lock;       /* see the top of this file */

	uint64_t device_features;   /* offered (ops->features plus the core's bits) */
	uint64_t driver_features;   /* (T) accepted by the driver; fixed once FEATURES_OK */
	uint32_t status;            /* (T) device status (VIRTIO_STATUS_*) */
	uint32_t isr;               /* interrupt status (VIRTIO_INT_*); the irq line is isr != 0 */
	uint32_t config_generation; /* bumped on every device-side config change */
	uint8_t *config;            /* ops->config_size bytes, little-endian fields */
	unsigned num_queues;
	struct virtq vq[VIRTIO_MAX_QUEUES];

	int notify_fd;              /* eventfd the I/O thread polls (non-blocking) */
	_Atomic uint32_t pending;   /* queues notified but not yet processed (bit q) */
	struct virtio_stats stats;
};

/*
 * Creates a device in the reset state. `priv` is the model's state (freed by ops->free).
 * With mm == NULL nothing can be popped (for tests of the register interface only). The
 * notify eventfd is created here. Returns 0 or -errno (err_set says why). Set-up thread.
 */
int virtio_dev_new(const struct virtio_dev_ops *ops, struct memmap *mm, void *priv,
		   struct virtio_dev **out);
/* Frees the device and calls ops->free. The I/O thread must no longer poll it. */
void virtio_dev_free(struct virtio_dev *d);

/* Device reset (virtio 1.2 §2.4): status 0, queues unconfigured, interrupt low. Takes d->lock. */
void virtio_dev_reset(struct virtio_dev *d);

/*
 * A guest write of `status` to the device status field (takes d->lock). 0 resets. Setting
 * FEATURES_OK is refused (the bit stays clear, virtio 1.2 §3.1.1) when the driver did not
 * accept VERSION_1 or accepted bits that were not offered. Bits may not be cleared except by
 * a reset: such writes are a guest error and ignored.
 */
void virtio_dev_set_status(struct virtio_dev *d, uint32_t status);
/*
 * QueueReady = 1 for the selected queue. Checks the size and that the three areas lie in
 * RAM with their required alignment (virtio 1.2 §2.7 table); returns false (queue stays
 * not ready, guest_error) otherwise. Call with d->lock held.
 */
bool virtio_queue_enable(struct virtio_dev *d, unsigned q);

/*
 * The driver notified queue q (QueueNotify), or a host back end has work for it (input
 * arrived). Any thread, lock-free: records the queue in d->pending and signals d->notify_fd.
 */
void virtio_dev_kick(struct virtio_dev *d, unsigned q);
/*
 * Runs ops->queue_notify for every queue recorded in d->pending. Called by the I/O thread
 * when d->notify_fd is readable (it drains the eventfd), or by tests. One thread at a time.
 */
void virtio_dev_process(struct virtio_dev *d);

/*
 * The device cannot go on (virtio 1.2 §2.1.2): sets DEVICE_NEEDS_RESET, raises a
 * configuration change interrupt when DRIVER_OK is set, logs `why` as a guest error.
 * Queues stop delivering elements until the next reset. Takes d->lock.
 */
void virtio_dev_needs_reset(struct virtio_dev *d, const char *why);
/* The device changed its config space: bump the generation and interrupt. Takes d->lock. */
void virtio_dev_config_changed(struct virtio_dev *d);
/* True when the driver accepted feature `bit`. */
bool virtio_has_feature(const struct virtio_dev *d, unsigned bit);
/* Interrupt acknowledge (InterruptACK): clears `bits` of d->isr. Takes d->lock. */
void virtio_dev_ack_irq(struct virtio_dev *d, uint32_t bits);

/*
 * Takes the next available request of queue q into `e`. Returns 1 when one was taken, 0 when
 * the queue is empty, not ready, the device is not DRIVER_OK or needs a reset, and -EIO when
 * the ring or chain was malformed (the device is now in DEVICE_NEEDS_RESET). With EVENT_IDX,
 * an empty return also publishes avail_event so the driver notifies for the next buffer.
 * I/O thread.
 */
int virtq_pop(struct virtio_dev *d, unsigned q, struct virtq_elem *e);
/*
 * Returns a request to the driver through the used ring with `len` bytes written into its
 * device-writable buffers (clamped to e->in_len). Dropped if the device was reset since the
 * pop. Counts one completed request. Does not interrupt: call virtq_notify() after a batch.
 */
void virtq_push(struct virtio_dev *d, unsigned q, const struct virtq_elem *e, uint32_t len);
/* Interrupts the driver if it wants one for what was pushed since the last call (§2.7.10). */
void virtq_notify(struct virtio_dev *d, unsigned q);

/* Copies up to len bytes at byte offset `off` of the readable part of e; returns bytes copied. */
size_t virtq_elem_read(const struct virtq_elem *e, uint64_t off, void *buf, size_t len);
/* Copies up to len bytes to byte offset `off` of the writable part of e; returns bytes copied. */
size_t virtq_elem_write(const struct virtq_elem *e, uint64_t off, const void *buf, size_t len);
/*
 * Fills dst (at most max entries) with the iovecs covering bytes [off, off+len) of the
 * readable (writable = false) or writable part of e. Returns the entry count, or -ENOSPC
 * when the range is not fully covered or does not fit in max entries.
 */
int virtq_elem_slice(const struct virtq_elem *e, bool writable, uint64_t off, uint64_t len,
		     struct iovec *dst, unsigned max);

/* ---- device models (blk.c, rng.c, console.c) ---- */

struct block_backend;

/*
 * virtio-blk (virtio 1.2 §5.2) over a host block back end, which the device then owns
 * (closed by virtio_dev_free). serial: the GET_ID string (at most 20 bytes used), NULL: none.
 * Offers SIZE_MAX, SEG_MAX, BLK_SIZE, FLUSH, RO for a read-only back end, and DISCARD +
 * WRITE_ZEROES when be->discard.
 */
int virtio_blk_new(struct memmap *mm, struct block_backend *be, const char *serial,
		   struct virtio_dev **out);

/* Entropy source of virtio-rng: fills buf, returns bytes filled (0..len) or -errno. */
typedef long virtio_rng_fill_fn(void *buf, size_t len);
/* virtio-rng (virtio 1.2 §5.4); fill NULL: the host's getrandom(). */
int virtio_rng_new(struct memmap *mm, virtio_rng_fill_fn *fill, struct virtio_dev **out);

/* Host side of virtio-console. Called on the I/O thread. */
struct virtio_console_backend {
	void *opaque;
	/* Bytes of host input waiting for the guest. */
	size_t (*pending)(void *opaque);
	/* Takes up to n bytes of host input; returns how many. */
	size_t (*read)(void *opaque, uint8_t *buf, size_t n);
	/* Guest output. */
	void (*write)(void *opaque, const uint8_t *buf, size_t n);
};
/*
 * virtio-console (virtio 1.2 §5.3) with one port (hvc0): receiveq0 and transmitq0, no
 * MULTIPORT. When host input arrives, call virtio_dev_kick(dev, VIRTIO_CONSOLE_RXQ) from any
 * thread; input waits in the back end until the guest posts receive buffers.
 */
#define VIRTIO_CONSOLE_RXQ 0
#define VIRTIO_CONSOLE_TXQ 1
int virtio_console_new(struct memmap *mm, const struct virtio_console_backend *be,
		       struct virtio_dev **out);

/* ---- virtio-mmio transport (mmio.c; the board maps it, see machine/devices.h) ---- */

/*
 * Snapshots: virtio_dev_save() copies the core state (status, features, config space, each
 * queue's addresses and ring positions) into buf and returns its size or -errno;
 * virtio_dev_load() puts it back on a device of the same type created with the same
 * configuration (host ring pointers recomputed, the interrupt line re-driven) or returns
 * -EINVAL. Requests are completed synchronously on the I/O thread, so a paused VM whose I/O
 * thread is idle has none in flight; the device model's transient buffers (virtio-net's
 * received frames not yet delivered) are not saved: those frames are lost, as on a wire.
 * Call with the vCPUs parked and the I/O thread idle (vm_pause).
 */
int virtio_dev_save(struct virtio_dev *d, void *buf, size_t cap);
int virtio_dev_load(struct virtio_dev *d, const void *buf, size_t len);

#define VIRTIO_MMIO_MAGIC 0x74726976 /* "virt" */
#define VIRTIO_MMIO_VENDOR 0x4f4d554b /* "KUMO" */

#endif
