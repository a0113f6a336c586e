/*
 * mmio.c - the virtio-mmio transport, version 2 ("modern", virtio 1.2 §4.2.2). The only file
 * that knows register offsets. Control registers are 32-bit (§4.2.2.2); other widths are a
 * guest error and read as 0. Everything runs on the calling vCPU thread under the device's
 * lock; a QueueNotify write only hands the queue to the I/O thread (virtio_dev_kick).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kumo/base.h"
#include "kumo/virtio.h"
#include "machine/devices.h"

/* virtio 1.2 §4.2.2 table 4.1 */
#define REG_MAGIC 0x000
#define REG_VERSION 0x004
#define REG_DEVICE_ID 0x008
#define REG_VENDOR_ID 0x00c
#define REG_DEVICE_FEATURES 0x010
#define REG_DEVICE_FEATURES_SEL 0x014
#define REG_DRIVER_FEATURES 0x020
#define REG_DRIVER_FEATURES_SEL 0x024
#define REG_QUEUE_SEL 0x030
#define REG_QUEUE_NUM_MAX 0x034
#define REG_QUEUE_NUM 0x038
#define REG_QUEUE_READY 0x044
#define REG_QUEUE_NOTIFY 0x050
#define REG_INTERRUPT_STATUS 0x060
#define REG_INTERRUPT_ACK 0x064
#define REG_STATUS 0x070
#define REG_QUEUE_DESC_LOW 0x080
#define REG_QUEUE_DESC_HIGH 0x084
#define REG_QUEUE_DRIVER_LOW 0x090
#define REG_QUEUE_DRIVER_HIGH 0x094
#define REG_QUEUE_DEVICE_LOW 0x0a0
#define REG_QUEUE_DEVICE_HIGH 0x0a4
#define REG_SHM_SEL 0x0ac
#define REG_SHM_LEN_LOW 0x0b0
#define REG_SHM_LEN_HIGH 0x0b4
#define REG_SHM_BASE_LOW 0x0b8
#define REG_SHM_BASE_HIGH 0x0bc
#define REG_CONFIG_GENERATION 0x0fc
#define REG_CONFIG 0x100

#define MMIO_VERSION 2

struct virtio_mmio {
	struct virtio_dev *dev;
	unsigned plic_irq;
	/* Selector registers, under dev->lock. */
	uint32_t device_features_sel;
	uint32_t driver_features_sel;
	uint32_t queue_sel;
};

int virtio_mmio_new(struct virtio_dev *dev, unsigned plic_irq, struct virtio_mmio **out)
{
	struct virtio_mmio *m = calloc(1, sizeof(*m));

	if (!m) {
		err_set("out of memory creating a virtio-mmio transport");
		return -ENOMEM;
	}
	m->dev = dev;
	m->plic_irq = plic_irq;
	*out = m;
	return 0;
}

static uint64_t config_read(struct virtio_dev *d, uint64_t off, unsigned size)
{
	uint64_t val = 0;

	if (off + size > d->ops->config_size) {
		guest_error("%s: config read of %u bytes at 0x%llx past %zu bytes", d->ops->name,
			    size, (unsigned long long)off, d->ops->config_size);
		return 0;
	}
	memcpy(&val, d->config + off, size); /* little-endian host and guest */
	return val;
}

static void config_write(struct virtio_dev *d, uint64_t off, uint64_t val, unsigned size)
{
	if (off + size > d->ops->config_size || !d->ops->config_write) {
		guest_error("%s: config write of %u bytes at 0x%llx ignored", d->ops->name, size,
			    (unsigned long long)off);
		return;
	}
	memcpy(d->config + off, &val, size);
	d->ops->config_write(d, (uint32_t)off, size);
}

static uint64_t mmio_read(void *opaque, uint64_t off, unsigned size)
{
	struct virtio_mmio *m = opaque;
	struct virtio_dev *d = m->dev;
	struct virtq *vq;
	uint64_t val = 0;

	pthread_mutex_lock(&d->lock);
	if (off >= REG_CONFIG) {
		val = config_read(d, off - REG_CONFIG, size);
		goto out;
	}
	if (size != 4 || (off & 3)) {
		guest_error("%s: %u-byte read of register 0x%llx", d->ops->name, size,
			    (unsigned long long)off);
		goto out;
	}
	vq = m->queue_sel < d->num_queues ? &d->vq[m->queue_sel] : NULL;
	switch (off) {
	case REG_MAGIC: val = VIRTIO_MMIO_MAGIC; break;
	case REG_VERSION: val = MMIO_VERSION; break;
	case REG_DEVICE_ID: val = d->ops->device_id; break;
	case REG_VENDOR_ID: val = d->ops->vendor_id ? d->ops->vendor_id : VIRTIO_MMIO_VENDOR; break;
	case REG_DEVICE_FEATURES:
		val = m->device_features_sel < 2
			      ? (uint32_t)(d->device_features >> (32 * m->device_features_sel))
			      : 0;
		break;
	case REG_QUEUE_NUM_MAX: val = vq ? vq->num_max : 0; break;
	case REG_QUEUE_READY: val = vq ? vq->ready : 0; break;
	case REG_INTERRUPT_STATUS: val = d->isr; break;
	case REG_STATUS: val = d->status; break;
	case REG_SHM_LEN_LOW:
	case REG_SHM_LEN_HIGH:
		val = 0xffffffff; /* §4.2.2: no shared memory region with this id */
		break;
	case REG_SHM_BASE_LOW:
	case REG_SHM_BASE_HIGH: val = 0xffffffff; break;
	case REG_CONFIG_GENERATION: val = d->config_generation; break;
	default:
		guest_error("%s: read of write-only or unknown register 0x%llx", d->ops->name,
			    (unsigned long long)off);
	}
out:
	pthread_mutex_unlock(&d->lock);
	return val;
}

/* Stores the low or high half of a queue address; refused while the queue is live. */
static void set_half(struct virtio_dev *d, struct virtq *vq, uint64_t *field, bool high,
		     uint32_t val)
{
	if (!vq) {
		guest_error("%s: queue address for a queue that does not exist", d->ops->name);
		return;
	}
	if (vq->ready) {
		guest_error("%s: queue address written while the queue is ready", d->ops->name);
		return;
	}
	if (high)
		*field = (*field & 0xffffffffULL) | (uint64_t)val << 32;
	else
		*field = (*field & ~0xffffffffULL) | val;
}

static void mmio_write(void *opaque, uint64_t off, uint64_t val64, unsigned size)
{
	struct virtio_mmio *m = opaque;
	struct virtio_dev *d = m->dev;
	uint32_t val = (uint32_t)val64;
	struct virtq *vq;

	if (off == REG_STATUS && size == 4) {
		virtio_dev_set_status(d, val); /* takes the lock itself */
		return;
	}
	if (off == REG_INTERRUPT_ACK && size == 4) {
		virtio_dev_ack_irq(d, val);
		return;
	}
	if (off == REG_QUEUE_NOTIFY && size == 4) {
		virtio_dev_kick(d, val & 0xffff); /* lock-free: the I/O thread does the work */
		return;
	}
	pthread_mutex_lock(&d->lock);
	if (off >= REG_CONFIG) {
		config_write(d, off - REG_CONFIG, val64, size);
		goto out;
	}
	if (size != 4 || (off & 3)) {
		guest_error("%s: %u-byte write of register 0x%llx", d->ops->name, size,
			    (unsigned long long)off);
		goto out;
	}
	vq = m->queue_sel < d->num_queues ? &d->vq[m->queue_sel] : NULL;
	switch (off) {
	case REG_DEVICE_FEATURES_SEL: m->device_features_sel = val; break;
	case REG_DRIVER_FEATURES_SEL: m->driver_features_sel = val; break;
	case REG_DRIVER_FEATURES:
		/* §3.1.1: features are fixed once FEATURES_OK is set. */
		if (d->status & VIRTIO_STATUS_FEATURES_OK) {
			guest_error("%s: driver features written after FEATURES_OK", d->ops->name);
			break;
		}
		if (m->driver_features_sel >= 2) {
			if (val)
				guest_error("%s: driver features word %u does not exist",
					    d->ops->name, m->driver_features_sel);
			break;
		}
		if (m->driver_features_sel)
			d->driver_features = (d->driver_features & 0xffffffffULL) |
					     (uint64_t)val << 32;
		else
			d->driver_features = (d->driver_features & ~0xffffffffULL) | val;
		break;
	case REG_QUEUE_SEL: m->queue_sel = val; break;
	case REG_QUEUE_NUM:
		if (!vq || vq->ready) {
			guest_error("%s: QueueNum for a missing or ready queue", d->ops->name);
			break;
		}
		vq->num = val > 0xffff ? 0 : (uint16_t)val; /* checked when QueueReady is set */
		break;
	case REG_QUEUE_READY:
		if (!vq) {
			guest_error("%s: QueueReady for queue %u, which does not exist", d->ops->name,
				    m->queue_sel);
			break;
		}
		if (val & 1) {
			if (!vq->ready)
				virtio_queue_enable(d, m->queue_sel);
		} else {
			vq->ready = false;
		}
		break;
	case REG_QUEUE_DESC_LOW: set_half(d, vq, vq ? &vq->desc_gpa : NULL, false, val); break;
	case REG_QUEUE_DESC_HIGH: set_half(d, vq, vq ? &vq->desc_gpa : NULL, true, val); break;
	case REG_QUEUE_DRIVER_LOW: set_half(d, vq, vq ? &vq->avail_gpa : NULL, false, val); break;
	case REG_QUEUE_DRIVER_HIGH: set_half(d, vq, vq ? &vq->avail_gpa : NULL, true, val); break;
	case REG_QUEUE_DEVICE_LOW: set_half(d, vq, vq ? &vq->used_gpa : NULL, false, val); break;
	case REG_QUEUE_DEVICE_HIGH: set_half(d, vq, vq ? &vq->used_gpa : NULL, true, val); break;
	case REG_SHM_SEL: break;
	default:
		guest_error("%s: write of read-only or unknown register 0x%llx", d->ops->name,
			    (unsigned long long)off);
	}
out:
	pthread_mutex_unlock(&d->lock);
}

static const struct mmio_ops virtio_mmio_ops = {.read = mmio_read, .write = mmio_write};

static void vmmio_reset(void *dev)
{
	struct virtio_mmio *m = dev;

	virtio_dev_reset(m->dev);
	pthread_mutex_lock(&m->dev->lock);
	m->device_features_sel = m->driver_features_sel = m->queue_sel = 0;
	pthread_mutex_unlock(&m->dev->lock);
}

/* Linux Documentation/devicetree/bindings/virtio/mmio.yaml */
static int vmmio_dt_node(void *dev, void *fdt, const struct dt_ctx *ctx, uint64_t base,
			 uint64_t size)
{
	struct virtio_mmio *m = dev;
	int node = dt_add_soc_node(fdt, "virtio_mmio", base, size), err;

	if (node < 0)
		return node;
	err = fdt_setprop_string(fdt, node, "compatible", "virtio,mmio");
	if (!err)
		err = fdt_setprop_empty(fdt, node, "dma-coherent");
	return err ? err : dt_set_plic_irq(fdt, node, ctx, m->plic_irq);
}

static void vmmio_free(void *dev)
{
	struct virtio_mmio *m = dev;

	virtio_dev_free(m->dev);
	free(m);
}

/* Snapshot image: the transport's selectors, then the device's core state. */
struct vmmio_state {
	uint32_t device_features_sel, driver_features_sel, queue_sel, pad;
};

static int vmmio_save(void *dev, void *buf, size_t cap)
{
	struct virtio_mmio *m = dev;
	struct vmmio_state s = {0};
	int n;

	if (cap < sizeof(s))
		return -ENOSPC;
	pthread_mutex_lock(&m->dev->lock);
	s.device_features_sel = m->device_features_sel;
	s.driver_features_sel = m->driver_features_sel;
	s.queue_sel = m->queue_sel;
	pthread_mutex_unlock(&m->dev->lock);
	memcpy(buf, &s, sizeof(s));
	n = virtio_dev_save(m->dev, (uint8_t *)buf + sizeof(s), cap - sizeof(s));
	return n < 0 ? n : n + (int)sizeof(s);
}

static int vmmio_load(void *dev, const void *buf, size_t len)
{
	struct virtio_mmio *m = dev;
	struct vmmio_state s;
	int ret;

	if (len < sizeof(s))
		return -EINVAL;
	memcpy(&s, buf, sizeof(s));
	ret = virtio_dev_load(m->dev, (const uint8_t *)buf + sizeof(s), len - sizeof(s));
	if (ret)
		return ret;
	pthread_mutex_lock(&m->dev->lock);
	m->device_features_sel = s.device_features_sel;
	m->driver_features_sel = s.driver_features_sel;
	m->queue_sel = s.queue_sel;
	pthread_mutex_unlock(&m->dev->lock);
	return 0;
}

const struct vdev_class virtio_mmio_class = {
	.name = "virtio-mmio",
	.mmio = &virtio_mmio_ops,
	.reset = vmmio_reset,
	.dt_node = vmmio_dt_node,
	.free = vmmio_free,
	.save = vmmio_save,
	.load = vmmio_load,
};
