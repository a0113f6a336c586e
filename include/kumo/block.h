/*
 * block.h - host back ends of block devices. A back end is a small ops table over an opaque
 * handle, so the virtio-blk model runs the same against a raw image file (block_file.c) or a
 * memory buffer in unit tests.
 *
 * Usage: block_file_open(&cfg, &be) at VM set-up (a missing file, a file that is not regular,
 * a read-only file opened for writing, or an image another VM holds fails with err_set() and
 * -errno), hand `be` to virtio_blk_new() (which then owns it), and the device calls the ops
 * on the I/O thread. Offsets and lengths are bytes; iov buffers are in guest RAM.
 */
#ifndef KUMO_BLOCK_H
#define KUMO_BLOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

struct block_backend;

struct block_backend_ops {
	/* Reads/writes exactly the iovecs' total length at off; 0 or -errno (short I/O: -EIO). */
	int (*readv)(struct block_backend *be, const struct iovec *iov, int n, uint64_t off);
	int (*writev)(struct block_backend *be, const struct iovec *iov, int n, uint64_t off);
	/* Makes every completed write durable (fdatasync). */
	int (*flush)(struct block_backend *be);
	/* Deallocates [off, off+len) (reads return zeroes afterwards), or -EOPNOTSUPP. */
	int (*discard)(struct block_backend *be, uint64_t off, uint64_t len);
	/* Zeroes [off, off+len); `unmap` allows deallocating. */
	int (*write_zeroes)(struct block_backend *be, uint64_t off, uint64_t len, bool unmap);
	void (*close)(struct block_backend *be);
};

struct block_backend {
	const struct block_backend_ops *ops;
	void *opaque;       /* the back end's own state */
	uint64_t size;      /* bytes; the device rounds down to whole 512-byte sectors */
	uint32_t align;     /* the back end's own block (O_DIRECT: 4096), 1 when none; any whole
	                     * 512-byte sectors work, smaller writes cost a read-modify-write */
	bool readonly;
	bool discard;       /* discard/write_zeroes requested and supported */
};

struct block_file_config {
	const char *path;
	bool readonly;
	bool direct;   /* O_DIRECT with aligned bounce buffers */
	bool discard;  /* offer DISCARD and WRITE_ZEROES (fallocate punch hole / zero range) */
};

/* Opens and locks (flock: shared when read-only, exclusive otherwise) a raw image file. */
int block_file_open(const struct block_file_config *cfg, struct block_backend **out);
/* Closes any back end. */
void block_backend_close(struct block_backend *be);

#endif
