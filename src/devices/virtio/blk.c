/*
 * blk.c - virtio-blk (virtio 1.2 §5.2): one request queue served on the I/O thread against a
 * host block back end (kumo/block.h). Requests the host cannot serve end with
 * VIRTIO_BLK_S_IOERR (range, read-only, host error) or VIRTIO_BLK_S_UNSUPP; a request with no
 * header or no writable status byte is malformed and puts the device into NEEDS_RESET.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kumo/base.h"
#include "kumo/block.h"
#include "kumo/virtio.h"

/* Feature bits (§5.2.3). */
#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_TOPOLOGY 10
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

/* Request types and status values (§5.2.6). */
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2
#define VIRTIO_BLK_ID_BYTES 20
#define VIRTIO_BLK_WZ_UNMAP 1

/* Configuration layout (§5.2.4), byte offsets. */
#define CFG_CAPACITY 0
#define CFG_SIZE_MAX 8
#define CFG_SEG_MAX 12
#define CFG_BLK_SIZE 20
#define CFG_PHYS_BLOCK_EXP 24 /* topology: u8 physical_block_exp, u8 alignment_offset, */
#define CFG_MIN_IO_SIZE 26    /* le16 min_io_size, le32 opt_io_size (in logical blocks) */
#define CFG_MAX_DISCARD_SECTORS 36
#define CFG_MAX_DISCARD_SEG 40
#define CFG_DISCARD_ALIGN 44
#define CFG_MAX_WZ_SECTORS 48
#define CFG_MAX_WZ_SEG 52
#define CFG_WZ_MAY_UNMAP 56
#define CFG_SIZE 60

#define SECTOR 512ULL
#define QUEUE_SIZE 256
#define SEG_MAX (QUEUE_SIZE - 2)        /* data segments besides header and status */
#define SIZE_MAX_BYTES (1u << 20)       /* largest single segment */
#define MAX_DISCARD_SECTORS (1u << 22)  /* 2 GiB per discard/write-zeroes segment */

struct blk_req_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

struct blk_discard_seg {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
};

struct virtio_blk {
	struct block_backend *be;
	uint64_t sectors;
	char serial[VIRTIO_BLK_ID_BYTES];
	struct virtq_elem elem; /* I/O thread only */
	struct iovec iov[VIRTQ_IOV_MAX];
};

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

/* True when [sector, sector + bytes/512) lies inside the disk (no overflow). */
static bool in_range(const struct virtio_blk *b, uint64_t sector, uint64_t bytes)
{
	uint64_t n = bytes / SECTOR;

	return sector <= b->sectors && n <= b->sectors - sector;
}

static uint8_t do_rw(struct virtio_dev *d, struct virtio_blk *b, const struct virtq_elem *e,
		     const struct blk_req_hdr *h, bool write, uint64_t *written)
{
	uint64_t len = write ? e->out_len - sizeof(*h) : e->in_len - 1;
	int n, ret;

	if (len % SECTOR) {
		guest_error("virtio-blk: %s of %llu bytes is not whole sectors",
			    write ? "write" : "read", (unsigned long long)len);
		return VIRTIO_BLK_S_IOERR;
	}
	if (!in_range(b, h->sector, len)) {
		guest_error("virtio-blk: %s of sector %llu+%llu past the end (%llu sectors)",
			    write ? "write" : "read", (unsigned long long)h->sector,
			    (unsigned long long)(len / SECTOR), (unsigned long long)b->sectors);
		return VIRTIO_BLK_S_IOERR;
	}
	if (write && b->be->readonly)
		return VIRTIO_BLK_S_IOERR;
	n = virtq_elem_slice(e, !write, write ? sizeof(*h) : 0, len, b->iov, VIRTQ_IOV_MAX);
	if (n < 0)
		return VIRTIO_BLK_S_IOERR;
	if (!len)
		return VIRTIO_BLK_S_OK;
	ret = write ? b->be->ops->writev(b->be, b->iov, n, h->sector * SECTOR)
		    : b->be->ops->readv(b->be, b->iov, n, h->sector * SECTOR);
	if (ret) {
		log_warn("virtio-blk: host %s at sector %llu failed: %s", write ? "write" : "read",
			 (unsigned long long)h->sector, strerror(-ret));
		return VIRTIO_BLK_S_IOERR;
	}
	if (write) {
		atomic_fetch_add_explicit(&d->stats.bytes_written, len, memory_order_relaxed);
	} else {
		atomic_fetch_add_explicit(&d->stats.bytes_read, len, memory_order_relaxed);
		*written = len;
	}
	return VIRTIO_BLK_S_OK;
}

/* §5.2.6.2: DISCARD and WRITE_ZEROES carry segments in the readable data. */
static uint8_t do_discard(struct virtio_dev *d, struct virtio_blk *b, const struct virtq_elem *e,
			  uint32_t type)
{
	uint64_t data = e->out_len - sizeof(struct blk_req_hdr);
	struct blk_discard_seg seg;
	int ret;

	if (!virtio_has_feature(d, type == VIRTIO_BLK_T_DISCARD ? VIRTIO_BLK_F_DISCARD
							      : VIRTIO_BLK_F_WRITE_ZEROES))
		return VIRTIO_BLK_S_UNSUPP;
	if (data != sizeof(seg)) /* max_discard_seg = max_write_zeroes_seg = 1 */
		return data % sizeof(seg) || !data ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_UNSUPP;
	virtq_elem_read(e, sizeof(struct blk_req_hdr), &seg, sizeof(seg));
	if (seg.num_sectors > MAX_DISCARD_SECTORS ||
	    !in_range(b, seg.sector, (uint64_t)seg.num_sectors * SECTOR))
		return VIRTIO_BLK_S_IOERR;
	if (type == VIRTIO_BLK_T_DISCARD) {
		if (seg.flags) /* the unmap bit is reserved for discard */
			return VIRTIO_BLK_S_UNSUPP;
		ret = b->be->ops->discard(b->be, seg.sector * SECTOR, seg.num_sectors * SECTOR);
	} else {
		if (seg.flags & ~VIRTIO_BLK_WZ_UNMAP)
			return VIRTIO_BLK_S_UNSUPP;
		ret = b->be->ops->write_zeroes(b->be, seg.sector * SECTOR, seg.num_sectors * SECTOR,
					       seg.flags & VIRTIO_BLK_WZ_UNMAP);
	}
	return ret ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
}

/* Serves one request; returns false when it was malformed (the device needs a reset). */
static bool blk_request(struct virtio_dev *d, struct virtio_blk *b, const struct virtq_elem *e)
{
	struct blk_req_hdr h;
	uint64_t written = 0;
	uint8_t status;

	/* §5.2.6: a readable header first, a writable status byte last. */
	if (e->out_len < sizeof(h) || e->in_len < 1) {
		virtio_dev_needs_reset(d, "request without a readable header and a writable status");
		return false;
	}
	virtq_elem_read(e, 0, &h, sizeof(h));
	switch (h.type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		status = do_rw(d, b, e, &h, h.type == VIRTIO_BLK_T_OUT, &written);
		break;
	case VIRTIO_BLK_T_FLUSH:
		status = b->be->ops->flush(b->be) ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
		break;
	case VIRTIO_BLK_T_GET_ID: {
		uint64_t n = e->in_len - 1 < VIRTIO_BLK_ID_BYTES ? e->in_len - 1 : VIRTIO_BLK_ID_BYTES;

		written = virtq_elem_write(e, 0, b->serial, n);
		status = VIRTIO_BLK_S_OK;
		break;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		status = do_discard(d, b, e, h.type);
		break;
	default:
		status = VIRTIO_BLK_S_UNSUPP;
	}
	if (status != VIRTIO_BLK_S_OK)
		atomic_fetch_add_explicit(&d->stats.errors, 1, memory_order_relaxed);
	virtq_elem_write(e, e->in_len - 1, &status, 1);
	virtq_push(d, 0, e, (uint32_t)(written + 1));
	return true;
}

static void blk_queue_notify(struct virtio_dev *d, unsigned q)
{
	struct virtio_blk *b = d->priv;

	while (virtq_pop(d, q, &b->elem) > 0) {
		if (!blk_request(d, b, &b->elem))
			break;
	}
	virtq_notify(d, q);
}

static void blk_free(struct virtio_dev *d)
{
	struct virtio_blk *b = d->priv;

	block_backend_close(b->be);
	free(b);
}

static const struct virtio_dev_ops blk_ops = {
	.name = "virtio-blk",
	.device_id = VIRTIO_ID_BLOCK,
	.num_queues = 1,
	.queue_max = QUEUE_SIZE,
	.features = (1ULL << VIRTIO_BLK_F_SIZE_MAX) | (1ULL << VIRTIO_BLK_F_SEG_MAX) |
		    (1ULL << VIRTIO_BLK_F_BLK_SIZE) | (1ULL << VIRTIO_BLK_F_FLUSH),
	.config_size = CFG_SIZE,
	.queue_notify = blk_queue_notify,
	.free = blk_free,
};

int virtio_blk_new(struct memmap *mm, struct block_backend *be, const char *serial,
		   struct virtio_dev **out)
{
	struct virtio_blk *b = calloc(1, sizeof(*b));
	struct virtio_dev *d;
	uint32_t phys = be->align > SECTOR ? be->align : SECTOR;
	int ret;

	if (!b) {
		err_set("out of memory creating virtio-blk");
		return -ENOMEM;
	}
	b->be = be;
	b->sectors = be->size / SECTOR;
	if (serial) /* §5.2.6: 20 bytes, NUL-padded, not NUL-terminated when 20 long */
		memcpy(b->serial, serial, strnlen(serial, sizeof(b->serial)));
	ret = virtio_dev_new(&blk_ops, mm, b, &d);
	if (ret) {
		free(b);
		return ret;
	}
	if (be->readonly)
		d->device_features |= 1ULL << VIRTIO_BLK_F_RO;
	if (be->discard && !be->readonly)
		d->device_features |= (1ULL << VIRTIO_BLK_F_DISCARD) |
				      (1ULL << VIRTIO_BLK_F_WRITE_ZEROES);
	put64(d->config + CFG_CAPACITY, b->sectors);
	put32(d->config + CFG_SIZE_MAX, SIZE_MAX_BYTES);
	put32(d->config + CFG_SEG_MAX, SEG_MAX);
	/*
	 * §5.2.5: blk_size is the sector size the driver should use; Linux makes it the disk's
	 * logical block size. It stays 512 whatever the back end: a host option such as O_DIRECT
	 * must not change the guest's disk (an ext4 with 1 KiB blocks cannot be mounted on 4 KiB
	 * sectors). A back end with a larger block (it serves partial blocks by read-modify-write)
	 * says so through the topology: physical block and minimum I/O size, so the guest aligns.
	 */
	put32(d->config + CFG_BLK_SIZE, SECTOR);
	if (phys > SECTOR) {
		uint16_t min_io = (uint16_t)(phys / SECTOR);

		d->device_features |= 1ULL << VIRTIO_BLK_F_TOPOLOGY;
		d->config[CFG_PHYS_BLOCK_EXP] = (uint8_t)__builtin_ctz(phys / SECTOR);
		memcpy(d->config + CFG_MIN_IO_SIZE, &min_io, 2);
	}
	put32(d->config + CFG_MAX_DISCARD_SECTORS, MAX_DISCARD_SECTORS);
	put32(d->config + CFG_MAX_DISCARD_SEG, 1);
	put32(d->config + CFG_DISCARD_ALIGN, phys / SECTOR);
	put32(d->config + CFG_MAX_WZ_SECTORS, MAX_DISCARD_SECTORS);
	put32(d->config + CFG_MAX_WZ_SEG, 1);
	d->config[CFG_WZ_MAY_UNMAP] = 1;
	*out = d;
	return 0;
}
