/*
 * block_file.c - the raw image file block back end: preadv/pwritev on a file descriptor,
 * fdatasync for flushes, fallocate for discard and write-zeroes, an advisory flock so two VMs
 * never write one image, and O_DIRECT through an aligned bounce buffer (512-byte sectors for
 * the guest, read-modify-write of partial blocks).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kumo/base.h"
#include "kumo/block.h"

#define DIRECT_ALIGN 4096
#define BOUNCE_SIZE (1u << 20)

struct block_file {
	struct block_backend be;
	int fd;
	void *bounce; /* DIRECT_ALIGN-aligned, BOUNCE_SIZE bytes; only with O_DIRECT */
};

static struct block_file *bf_of(struct block_backend *be)
{
	return be->opaque;
}

/* preadv/pwritev until every byte is transferred (short transfers resume where they stopped). */
static int io_full(int fd, const struct iovec *iov, int n, uint64_t off, bool write)
{
	struct iovec local[64];
	int i = 0;
	size_t skip = 0; /* bytes of iov[i] already transferred */

	while (i < n) {
		int cnt = 0;
		ssize_t r;

		for (; cnt < 64 && i + cnt < n; cnt++)
			local[cnt] = iov[i + cnt];
		local[0].iov_base = (uint8_t *)local[0].iov_base + skip;
		local[0].iov_len -= skip;
		r = write ? pwritev(fd, local, cnt, (off_t)off) : preadv(fd, local, cnt, (off_t)off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO; /* past the end of the file */
		off += (uint64_t)r;
		while (r > 0 && i < n) {
			size_t left = iov[i].iov_len - skip;

			if ((size_t)r < left) {
				skip += (size_t)r;
				r = 0;
			} else {
				r -= (ssize_t)left;
				skip = 0;
				i++;
			}
		}
		while (i < n && !iov[i].iov_len)
			i++;
	}
	return 0;
}

/* Copies between the iovecs (cursor *i, *in_iov) and a flat buffer, advancing the cursor. */
static void bounce_copy(const struct iovec *iov, int *i, size_t *in_iov, uint8_t *buf, size_t len,
			bool to_buf)
{
	size_t done = 0;

	while (done < len) {
		size_t m = iov[*i].iov_len - *in_iov;
		uint8_t *p = (uint8_t *)iov[*i].iov_base + *in_iov;

		if (m > len - done)
			m = len - done;
		if (to_buf)
			memcpy(buf + done, p, m);
		else
			memcpy(p, buf + done, m);
		done += m;
		*in_iov += m;
		if (*in_iov == iov[*i].iov_len) {
			(*i)++;
			*in_iov = 0;
		}
	}
}

/*
 * O_DIRECT wants the file offset, the length and the buffer aligned to DIRECT_ALIGN; the guest
 * sees 512-byte sectors and its buffers are anywhere, so every transfer goes through f->bounce
 * over whole aligned blocks. A read takes the blocks and copies out the requested bytes; a write
 * that starts or ends inside a block first reads that edge block, so the bytes around the
 * request are written back unchanged (read-modify-write; requests are served one at a time on
 * the I/O thread, so nothing writes the block in between). The image size is a multiple of
 * DIRECT_ALIGN (block_file_open), so the blocks of an in-range request are inside the file.
 */
static int bounce_io(struct block_file *f, const struct iovec *iov, int n, uint64_t off,
		     bool write)
{
	const uint64_t mask = DIRECT_ALIGN - 1;
	size_t total = 0, in_iov = 0;
	uint64_t pos, end;
	int i = 0, ret;

	for (int k = 0; k < n; k++)
		total += iov[k].iov_len;
	end = off + total;
	for (pos = off; pos < end;) {
		uint64_t base = pos & ~mask;            /* the chunk's first block */
		uint64_t stop = end - base < BOUNCE_SIZE ? end : base + BOUNCE_SIZE;
		uint64_t aend = (stop + mask) & ~mask;  /* the chunk's blocks end here */
		size_t head = (size_t)(pos - base), len = (size_t)(stop - pos), span = (size_t)(aend - base);
		uint8_t *b = f->bounce;
		struct iovec biov = {b, span};

		if (!write) {
			ret = io_full(f->fd, &biov, 1, base, false);
			if (ret)
				return ret;
			bounce_copy(iov, &i, &in_iov, b + head, len, false);
		} else {
			struct iovec edge = {b, DIRECT_ALIGN};

			if (head && (ret = io_full(f->fd, &edge, 1, base, false)))
				return ret;
			edge.iov_base = b + span - DIRECT_ALIGN;
			if (stop != aend && !(head && span == DIRECT_ALIGN) &&
			    (ret = io_full(f->fd, &edge, 1, aend - DIRECT_ALIGN, false)))
				return ret;
			bounce_copy(iov, &i, &in_iov, b + head, len, true);
			ret = io_full(f->fd, &biov, 1, base, true);
			if (ret)
				return ret;
		}
		pos = stop;
	}
	return 0;
}

static int bf_readv(struct block_backend *be, const struct iovec *iov, int n, uint64_t off)
{
	struct block_file *f = bf_of(be);

	return f->bounce ? bounce_io(f, iov, n, off, false) : io_full(f->fd, iov, n, off, false);
}

static int bf_writev(struct block_backend *be, const struct iovec *iov, int n, uint64_t off)
{
	struct block_file *f = bf_of(be);

	if (be->readonly)
		return -EROFS;
	return f->bounce ? bounce_io(f, iov, n, off, true) : io_full(f->fd, iov, n, off, true);
}

static int bf_flush(struct block_backend *be)
{
	if (be->readonly)
		return 0;
	return fdatasync(bf_of(be)->fd) ? -errno : 0;
}

static int bf_discard(struct block_backend *be, uint64_t off, uint64_t len)
{
	if (be->readonly)
		return -EROFS;
	if (fallocate(bf_of(be)->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
		      (off_t)len))
		return -errno;
	return 0;
}

static int bf_write_zeroes(struct block_backend *be, uint64_t off, uint64_t len, bool unmap)
{
	struct block_file *f = bf_of(be);

	if (be->readonly)
		return -EROFS;
	if (unmap && !fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
				(off_t)len))
		return 0;
	if (!fallocate(f->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len))
		return 0;
	/* No fallocate support: write zeroes. */
	static const uint8_t zero[65536] __attribute__((aligned(DIRECT_ALIGN)));
	while (len) {
		size_t chunk = len < sizeof(zero) ? len : sizeof(zero);
		struct iovec iov = {(void *)zero, chunk};
		int ret = f->bounce ? bounce_io(f, &iov, 1, off, true) : io_full(f->fd, &iov, 1, off, true);

		if (ret)
			return ret;
		off += chunk;
		len -= chunk;
	}
	return 0;
}

static void bf_close(struct block_backend *be)
{
	struct block_file *f = bf_of(be);

	close(f->fd); /* also drops the flock */
	free(f->bounce);
	free(f);
}

static const struct block_backend_ops block_file_ops = {
	.readv = bf_readv,
	.writev = bf_writev,
	.flush = bf_flush,
	.discard = bf_discard,
	.write_zeroes = bf_write_zeroes,
	.close = bf_close,
};

int block_file_open(const struct block_file_config *cfg, struct block_backend **out)
{
	struct block_file *f;
	struct stat st;
	int flags = (cfg->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC, fd, e;

	if (stat(cfg->path, &st)) {
		e = errno;
		err_set("disk image %s: %s", cfg->path, strerror(e));
		return -e;
	}
	if (!S_ISREG(st.st_mode)) {
		err_set("disk image %s is not a regular file", cfg->path);
		return -EINVAL;
	}
	if (cfg->direct)
		flags |= O_DIRECT;
	fd = open(cfg->path, flags);
	if (fd < 0) {
		e = errno;
		if (e == EACCES || e == EROFS)
			err_set("disk image %s is not %s (%s): add readonly=on to use it read-only",
				cfg->path, cfg->readonly ? "readable" : "writable", strerror(e));
		else if (e == EINVAL && cfg->direct)
			err_set("disk image %s: its file system does not support direct=on", cfg->path);
		else
			err_set("disk image %s: %s", cfg->path, strerror(e));
		return -e;
	}
	if (flock(fd, (cfg->readonly ? LOCK_SH : LOCK_EX) | LOCK_NB)) {
		e = errno;
		close(fd);
		if (e == EWOULDBLOCK)
			err_set("disk image %s is in use by another process (locked)", cfg->path);
		else
			err_set("disk image %s: cannot lock: %s", cfg->path, strerror(e));
		return e == EWOULDBLOCK ? -EBUSY : -e;
	}
	f = calloc(1, sizeof(*f));
	if (!f)
		goto out_nomem;
	if (cfg->direct) {
		if (st.st_size % DIRECT_ALIGN) {
			close(fd);
			free(f);
			err_set("disk image %s: with direct=on its size must be a multiple of %d bytes",
				cfg->path, DIRECT_ALIGN);
			return -EINVAL;
		}
		if (posix_memalign(&f->bounce, DIRECT_ALIGN, BOUNCE_SIZE)) {
			free(f);
			goto out_nomem;
		}
	}
	f->fd = fd;
	f->be = (struct block_backend){.ops = &block_file_ops, .opaque = f,
				       .size = (uint64_t)st.st_size,
				       .align = cfg->direct ? DIRECT_ALIGN : 1,
				       .readonly = cfg->readonly, .discard = cfg->discard};
	*out = &f->be;
	return 0;

out_nomem:
	close(fd);
	err_set("out of memory opening disk image %s", cfg->path);
	return -ENOMEM;
}

void block_backend_close(struct block_backend *be)
{
	if (be && be->ops->close)
		be->ops->close(be);
}
