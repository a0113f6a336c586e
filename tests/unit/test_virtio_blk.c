/*
 * test_virtio_blk.c - virtio-blk against a temporary raw image through the real file back end
 * (reads, writes, flush, GET_ID, discard, range and read-only errors, malformed requests),
 * the back end's open-time errors and lock, direct=on (O_DIRECT: unaligned sectors through the
 * bounce buffer, read-modify-write of partial blocks, a transfer longer than the bounce buffer),
 * virtio-rng and virtio-console with memory back ends, and the I/O thread's dispatch.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cmocka.h>

#include "kumo/base.h"
#include "kumo/block.h"
#include "kumo/iothread.h"
#include "virtio_harness.h"

#define DISK_SECTORS 64
#define FEAT_RO (1ULL << 5)
#define FEAT_DISCARD (1ULL << 13)
#define FEAT_WZ (1ULL << 14)

struct bctx {
	struct harness *h;
	char path[PATH_MAX];
	int fd;    /* the test's own view of the image */
	bool skip; /* direct=on: the file system refuses O_DIRECT */
};

static int make_disk(struct bctx *c)
{
	uint8_t sector[512];

	snprintf(c->path, sizeof(c->path), "/tmp/kumo-blk-XXXXXX");
	c->fd = mkstemp(c->path);
	if (c->fd < 0)
		return -1;
	for (unsigned s = 0; s < DISK_SECTORS; s++) {
		memset(sector, (int)(s + 1), sizeof(sector));
		if (write(c->fd, sector, sizeof(sector)) != (ssize_t)sizeof(sector))
			return -1;
	}
	return 0;
}

static int open_dev(struct bctx *c, bool readonly, bool discard)
{
	struct block_file_config cfg = {.path = c->path, .readonly = readonly, .discard = discard};
	struct block_backend *be;
	struct virtio_dev *d;

	c->h = h_new();
	if (block_file_open(&cfg, &be) || virtio_blk_new(c->h->mm, be, "serial-123", &d))
		return -1;
	h_attach(c->h, d);
	h_init(c->h, H_FEATURES | (readonly ? FEAT_RO : 0) |
			     (discard ? FEAT_DISCARD | FEAT_WZ : 0));
	return 0;
}

static int setup_rw(void **state)
{
	struct bctx *c = calloc(1, sizeof(*c));

	*state = c;
	return make_disk(c) || open_dev(c, false, true);
}

static int setup_ro(void **state)
{
	struct bctx *c = calloc(1, sizeof(*c));

	*state = c;
	return make_disk(c) || open_dev(c, true, false);
}

static int teardown(void **state)
{
	struct bctx *c = *state;

	if (c->h)
		h_free(c->h);
	close(c->fd);
	unlink(c->path);
	free(c);
	return 0;
}

/* Builds header + data (readable or writable) + status, submits, returns the status byte. */
static int request(struct bctx *c, uint32_t type, uint64_t sector, uint32_t data_len,
		   bool data_writable, uint32_t *used_len)
{
	struct harness *h = c->h;
	uint8_t *hdr = h_ptr(h, H_BUF), *st = h_ptr(h, H_BUF + 0x100);
	uint16_t before = h_used(h, 0)[1];
	uint32_t id, len;

	memcpy(hdr, &type, 4);
	memset(hdr + 4, 0, 4);
	memcpy(hdr + 8, &sector, 8);
	*st = 0xee;
	h_set_desc(h, 0, 0, H_BUF, 16, VIRTQ_DESC_F_NEXT, data_len ? 1 : 2);
	h_set_desc(h, 0, 1, H_BUF + 0x1000, data_len,
		   VIRTQ_DESC_F_NEXT | (data_writable ? VIRTQ_DESC_F_WRITE : 0), 2);
	h_set_desc(h, 0, 2, H_BUF + 0x100, 1, VIRTQ_DESC_F_WRITE, 0);
	h_offer(h, 0, 0);
	h_kick(h, 0);
	if (h_used(h, 0)[1] != (uint16_t)(before + 1))
		return -1;
	h_used_elem(h, 0, before, &id, &len);
	if (used_len)
		*used_len = len;
	return *st;
}

static void test_blk_config(void **state)
{
	struct bctx *c = *state;
	uint64_t cap = virtio_mmio_class.mmio->read(c->h->mmio, R_CONFIG, 8);

	assert_int_equal(rd(c->h, R_DEVICE_ID), VIRTIO_ID_BLOCK);
	assert_int_equal(cap, DISK_SECTORS);
	assert_int_equal(virtio_mmio_class.mmio->read(c->h->mmio, R_CONFIG + 20, 4), 512);
	wr(c->h, R_DEV_FEAT_SEL, 0);
	assert_false(rd(c->h, R_DEV_FEAT) & FEAT_RO);
	assert_true(rd(c->h, R_DEV_FEAT) & FEAT_DISCARD);
}

static void test_blk_read(void **state)
{
	struct bctx *c = *state;
	uint8_t *data = h_ptr(c->h, H_BUF + 0x1000);
	uint32_t len;

	assert_int_equal(request(c, 0, 3, 1024, true, &len), 0);
	assert_int_equal(len, 1025);
	assert_int_equal(data[0], 4);
	assert_int_equal(data[1023], 5);
	assert_true(c->h->irq);
	assert_int_equal(atomic_load(&c->h->dev->stats.bytes_read), 1024);
}

static void test_blk_write_flush(void **state)
{
	struct bctx *c = *state;
	uint8_t buf[512];

	memset(h_ptr(c->h, H_BUF + 0x1000), 0xab, 512);
	assert_int_equal(request(c, 1, 10, 512, false, NULL), 0);
	assert_int_equal(request(c, 4, 0, 0, false, NULL), 0); /* FLUSH */
	assert_int_equal(pread(c->fd, buf, 512, 10 * 512), 512);
	assert_int_equal(buf[0], 0xab);
	assert_int_equal(buf[511], 0xab);
	assert_int_equal(pread(c->fd, buf, 512, 11 * 512), 512);
	assert_int_equal(buf[0], 12);
}

static void test_blk_get_id(void **state)
{
	struct bctx *c = *state;
	uint32_t len;

	assert_int_equal(request(c, 8, 0, 20, true, &len), 0);
	assert_int_equal(len, 21);
	assert_memory_equal(h_ptr(c->h, H_BUF + 0x1000), "serial-123\0", 11);
}

static void test_blk_errors(void **state)
{
	struct bctx *c = *state;

	assert_int_equal(request(c, 0, DISK_SECTORS, 512, true, NULL), 1); /* past the end */
	assert_int_equal(request(c, 0, DISK_SECTORS - 1, 1024, true, NULL), 1);
	assert_int_equal(request(c, 0, UINT64_MAX, 512, true, NULL), 1);
	assert_int_equal(request(c, 1, UINT64_MAX / 512, 512, false, NULL), 1);
	assert_int_equal(request(c, 0, 0, 100, true, NULL), 1); /* not whole sectors */
	assert_int_equal(request(c, 99, 0, 512, true, NULL), 2); /* UNSUPP */
	assert_int_equal(atomic_load(&c->h->dev->stats.errors), 6);
	assert_false(rd(c->h, R_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
}

static void test_blk_discard(void **state)
{
	struct bctx *c = *state;
	uint8_t *seg = h_ptr(c->h, H_BUF + 0x1000), buf[512];
	uint64_t sector = 8;
	uint32_t n = 8, flags = 0;

	memcpy(seg, &sector, 8);
	memcpy(seg + 8, &n, 4);
	memcpy(seg + 12, &flags, 4);
	assert_int_equal(request(c, 11, 0, 16, false, NULL), 0);
	assert_int_equal(pread(c->fd, buf, 512, 8 * 512), 512);
	assert_int_equal(buf[0], 0);
	assert_int_equal(buf[511], 0);
	/* WRITE_ZEROES with unmap of sectors 20..23. */
	sector = 20;
	n = 4;
	flags = 1;
	memcpy(seg, &sector, 8);
	memcpy(seg + 8, &n, 4);
	memcpy(seg + 12, &flags, 4);
	assert_int_equal(request(c, 13, 0, 16, false, NULL), 0);
	assert_int_equal(pread(c->fd, buf, 512, 23 * 512), 512);
	assert_int_equal(buf[100], 0);
	assert_int_equal(pread(c->fd, buf, 512, 24 * 512), 512);
	assert_int_equal(buf[100], 25);
	/* A range beyond the disk fails. */
	sector = DISK_SECTORS - 1;
	memcpy(seg, &sector, 8);
	assert_int_equal(request(c, 11, 0, 16, false, NULL), 1);
}

static void test_blk_malformed(void **state)
{
	struct bctx *c = *state;
	struct harness *h = c->h;

	/* The status byte is readable, not writable: no place for a status -> NEEDS_RESET. */
	h_set_desc(h, 0, 0, H_BUF, 16, VIRTQ_DESC_F_NEXT, 1);
	h_set_desc(h, 0, 1, H_BUF + 0x100, 1, 0, 0);
	h_offer(h, 0, 0);
	h_kick(h, 0);
	assert_true(rd(h, R_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	assert_true(rd(h, R_INT_STATUS) & VIRTIO_INT_CONFIG);
	/* A short header likewise. */
	h_init(h, H_FEATURES);
	h_set_desc(h, 0, 0, H_BUF, 8, VIRTQ_DESC_F_NEXT, 1);
	h_set_desc(h, 0, 1, H_BUF + 0x100, 1, VIRTQ_DESC_F_WRITE, 0);
	h_offer(h, 0, 0);
	h_kick(h, 0);
	assert_true(rd(h, R_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
}

static void test_blk_readonly(void **state)
{
	struct bctx *c = *state;
	uint8_t buf[512];

	wr(c->h, R_DEV_FEAT_SEL, 0);
	assert_true(rd(c->h, R_DEV_FEAT) & FEAT_RO);
	assert_false(rd(c->h, R_DEV_FEAT) & FEAT_DISCARD);
	memset(h_ptr(c->h, H_BUF + 0x1000), 0xcd, 512);
	assert_int_equal(request(c, 1, 5, 512, false, NULL), 1);
	assert_int_equal(pread(c->fd, buf, 512, 5 * 512), 512);
	assert_int_equal(buf[0], 6);
	assert_int_equal(request(c, 0, 5, 512, true, NULL), 0);
}

static void test_backend_open_errors(void **state)
{
	struct block_backend *be, *be2;
	struct block_file_config cfg = {.path = "/nonexistent/kumo.img"};
	char path[] = "/tmp/kumo-lock-XXXXXX";
	int fd = mkstemp(path);

	(void)state;
	assert_int_equal(block_file_open(&cfg, &be), -ENOENT);
	cfg.path = "/tmp";
	assert_int_equal(block_file_open(&cfg, &be), -EINVAL);
	assert_non_null(strstr(err_get(), "not a regular file"));
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4096), 0);
	cfg.path = path;
	assert_int_equal(block_file_open(&cfg, &be), 0);
	assert_int_equal(block_file_open(&cfg, &be2), -EBUSY); /* two writers */
	cfg.readonly = true;
	assert_int_equal(block_file_open(&cfg, &be2), -EBUSY); /* reader vs writer */
	block_backend_close(be);
	assert_int_equal(block_file_open(&cfg, &be), 0);
	assert_int_equal(block_file_open(&cfg, &be2), 0); /* two readers share */
	block_backend_close(be);
	block_backend_close(be2);
	close(fd);
	unlink(path);
}

/* --- direct=on (O_DIRECT) --- */

/*
 * The image lives next to this test binary (build/tests/unit, on the build's disk): O_DIRECT
 * needs a file system that supports it, which /tmp may not be. 4 MiB: more than the back
 * end's 1 MiB bounce buffer. Every byte's value depends on its offset.
 */
#define DIRECT_BYTES (4u << 20)
#define DIRECT_BLOCK 4096

static uint8_t pattern(uint64_t off)
{
	return (uint8_t)(off * 7 + (off >> 9) * 13 + 1);
}

static int make_direct_disk(struct bctx *c)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	uint8_t *buf;
	int ret = 0;

	if (n <= 0)
		return -1;
	exe[n] = 0;
	snprintf(c->path, sizeof(c->path), "%s/kumo-direct-XXXXXX", dirname(exe));
	c->fd = mkstemp(c->path);
	buf = malloc(DIRECT_BYTES);
	if (c->fd < 0 || !buf) {
		free(buf);
		return -1;
	}
	for (uint64_t off = 0; off < DIRECT_BYTES; off++)
		buf[off] = pattern(off);
	if (pwrite(c->fd, buf, DIRECT_BYTES, 0) != (ssize_t)DIRECT_BYTES || fsync(c->fd))
		ret = -1;
	free(buf);
	return ret;
}

static int setup_direct(void **state)
{
	struct bctx *c = calloc(1, sizeof(*c));
	struct block_file_config cfg = {.direct = true, .discard = true};
	struct block_backend *be;
	struct virtio_dev *d;
	int ret;

	*state = c;
	c->fd = -1;
	if (make_direct_disk(c))
		return -1;
	cfg.path = c->path;
	ret = block_file_open(&cfg, &be);
	if (ret == -EINVAL && strstr(err_get(), "does not support direct=on")) {
		c->skip = true;
		return 0;
	}
	c->h = h_new();
	if (ret || virtio_blk_new(c->h->mm, be, NULL, &d))
		return -1;
	h_attach(c->h, d);
	h_init(c->h, H_FEATURES | FEAT_DISCARD | FEAT_WZ);
	return 0;
}

/* The back end holds the image with O_DIRECT (proc(5) fdinfo flags, octal). */
static bool image_open_direct(const char *path)
{
	for (int fd = 3; fd < 1024; fd++) {
		char link[64], target[PATH_MAX], info[64];
		ssize_t n;
		unsigned flags = 0;
		FILE *f;

		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		n = readlink(link, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = 0;
		if (strcmp(target, path))
			continue;
		snprintf(info, sizeof(info), "/proc/self/fdinfo/%d", fd);
		f = fopen(info, "r");
		if (!f)
			continue;
		while (fgets(target, sizeof(target), f))
			if (sscanf(target, "flags: %o", &flags) == 1)
				break;
		fclose(f);
		if (flags & O_DIRECT)
			return true;
	}
	return false;
}

/* The host's view of [off, off+len) equals the pattern except for [woff, woff+wlen) = val. */
static void assert_host_bytes(struct bctx *c, uint64_t off, size_t len, uint64_t woff, size_t wlen,
			      int val)
{
	uint8_t *buf = malloc(len);

	assert_non_null(buf);
	assert_int_equal(pread(c->fd, buf, len, (off_t)off), (ssize_t)len);
	for (size_t k = 0; k < len; k++) {
		uint64_t at = off + k;
		int want = at >= woff && at < woff + wlen ? val : pattern(at);

		if (buf[k] != want)
			fail_msg("host byte %llu is 0x%02x, expected 0x%02x", (unsigned long long)at,
				 buf[k], want);
	}
	free(buf);
}

static void test_direct_config(void **state)
{
	struct bctx *c = *state;
	uint64_t (*rd_cfg)(void *, uint64_t, unsigned) = virtio_mmio_class.mmio->read;

	if (c->skip)
		skip();
	assert_true(image_open_direct(c->path));
	assert_int_equal(rd_cfg(c->h->mmio, R_CONFIG, 8), DIRECT_BYTES / 512);
	/* §5.2.4: 512-byte sectors for the guest; the 4 KiB block only as topology. */
	assert_int_equal(rd_cfg(c->h->mmio, R_CONFIG + 20, 4), 512);
	wr(c->h, R_DEV_FEAT_SEL, 0);
	assert_true(rd(c->h, R_DEV_FEAT) & (1u << 10)); /* VIRTIO_BLK_F_TOPOLOGY */
	assert_int_equal(rd_cfg(c->h->mmio, R_CONFIG + 24, 1), 3); /* physical_block_exp */
	assert_int_equal(rd_cfg(c->h->mmio, R_CONFIG + 26, 2), 8); /* min_io_size */
}

static void test_direct_read(void **state)
{
	struct bctx *c = *state;
	/* (sector, sectors): aligned, inside one block, across a block boundary, many blocks. */
	static const uint32_t reqs[][2] = {{0, 8}, {9, 1}, {7, 3}, {13, 60}, {8190, 2}};
	uint8_t *data;

	if (c->skip)
		skip();
	data = h_ptr(c->h, H_BUF + 0x1000);
	for (unsigned r = 0; r < sizeof(reqs) / sizeof(reqs[0]); r++) {
		uint64_t off = (uint64_t)reqs[r][0] * 512;
		uint32_t len = reqs[r][1] * 512, used;

		memset(data, 0xee, len);
		assert_int_equal(request(c, 0, reqs[r][0], len, true, &used), 0);
		assert_int_equal(used, len + 1);
		for (uint32_t k = 0; k < len; k++)
			if (data[k] != pattern(off + k))
				fail_msg("read of sector %u+%u: byte %u is 0x%02x, expected 0x%02x", reqs[r][0],
					 reqs[r][1], k, data[k], pattern(off + k));
	}
}

static void test_direct_write(void **state)
{
	struct bctx *c = *state;
	static const uint32_t reqs[][2] = {{16, 8}, {25, 1}, {39, 3}, {61, 70}, {8191, 1}};
	uint8_t *data;

	if (c->skip)
		skip();
	data = h_ptr(c->h, H_BUF + 0x1000);
	for (unsigned r = 0; r < sizeof(reqs) / sizeof(reqs[0]); r++) {
		uint64_t off = (uint64_t)reqs[r][0] * 512;
		uint32_t len = reqs[r][1] * 512;
		uint64_t lo = off / DIRECT_BLOCK * DIRECT_BLOCK;
		uint64_t hi = (off + len + DIRECT_BLOCK - 1) / DIRECT_BLOCK * DIRECT_BLOCK;

		memset(data, 0xa0 + (int)r, len);
		assert_int_equal(request(c, 1, reqs[r][0], len, false, NULL), 0);
		/* The written bytes, and the rest of their blocks unchanged (read-modify-write). */
		assert_host_bytes(c, lo, hi - lo, off, len, 0xa0 + (int)r);
		/* The guest reads back what it wrote. */
		memset(data, 0, len);
		assert_int_equal(request(c, 0, reqs[r][0], len, true, NULL), 0);
		for (uint32_t k = 0; k < len; k++)
			assert_int_equal(data[k], 0xa0 + (int)r);
	}
	assert_int_equal(request(c, 4, 0, 0, false, NULL), 0); /* FLUSH */
	assert_int_equal(request(c, 0, DIRECT_BYTES / 512, 512, true, NULL), 1); /* past the end */
}

static void test_direct_write_zeroes(void **state)
{
	struct bctx *c = *state;
	uint8_t *seg;
	uint64_t sector = 101;
	uint32_t n = 5, flags = 0;

	if (c->skip)
		skip();
	seg = h_ptr(c->h, H_BUF + 0x1000);
	memcpy(seg, &sector, 8);
	memcpy(seg + 8, &n, 4);
	memcpy(seg + 12, &flags, 4);
	assert_int_equal(request(c, 13, 0, 16, false, NULL), 0);
	assert_host_bytes(c, 96 * 512, 16 * 512, 101 * 512, 5 * 512, 0);
}

/*
 * The back end directly: guest-like iovecs at odd host addresses and lengths, a transfer that
 * starts and ends inside blocks and spans more than the 1 MiB bounce buffer.
 */
static void test_direct_backend_long(void **state)
{
	struct bctx *c = *state;
	struct block_backend *be;
	struct block_file_config cfg = {0};
	const uint64_t off = 3 * 512 + 5 * DIRECT_BLOCK;
	static const size_t lens[] = {1536, 700000, 513, 1000000, 96607}; /* 3513 sectors in all */
	struct iovec iov[5];
	size_t total = 0;
	uint8_t *mem;

	if (c->skip)
		skip();
	h_free(c->h); /* the device holds the image's lock; the back end alone from here */
	c->h = NULL;
	cfg.path = c->path;
	cfg.direct = true;
	assert_int_equal(block_file_open(&cfg, &be), 0);
	assert_int_equal(be->align, DIRECT_BLOCK);
	for (unsigned k = 0; k < 5; k++)
		total += lens[k];
	assert_int_equal(total % 512, 0);
	mem = malloc(total + 5 * 3);
	assert_non_null(mem);
	for (size_t k = 0, at = 0; k < 5; k++) {
		iov[k] = (struct iovec){mem + at + 2 * k + 1, lens[k]}; /* odd addresses */
		at += lens[k];
	}
	for (size_t k = 0, b = 0; k < 5; k++)
		for (size_t j = 0; j < lens[k]; j++, b++)
			((uint8_t *)iov[k].iov_base)[j] = (uint8_t)(b * 31 + 5);
	assert_int_equal(be->ops->writev(be, iov, 5, off), 0);
	assert_int_equal(be->ops->flush(be), 0);
	{
		uint64_t lo = off - 3 * 512, hi = (off + total + DIRECT_BLOCK - 1) & ~(uint64_t)(DIRECT_BLOCK - 1);
		uint8_t *host = malloc(hi - lo);

		assert_non_null(host);
		assert_int_equal(pread(c->fd, host, hi - lo, (off_t)lo), (ssize_t)(hi - lo));
		for (uint64_t at = lo; at < hi; at++) {
			int want = at >= off && at < off + total ? (uint8_t)((at - off) * 31 + 5) : pattern(at);

			if (host[at - lo] != want)
				fail_msg("host byte %llu is 0x%02x, expected 0x%02x", (unsigned long long)at,
					 host[at - lo], want);
		}
		free(host);
	}
	for (size_t k = 0; k < 5; k++)
		memset(iov[k].iov_base, 0, lens[k]);
	assert_int_equal(be->ops->readv(be, iov, 5, off), 0);
	for (size_t k = 0, b = 0; k < 5; k++)
		for (size_t j = 0; j < lens[k]; j++, b++)
			if (((uint8_t *)iov[k].iov_base)[j] != (uint8_t)(b * 31 + 5))
				fail_msg("read back byte %zu is wrong", b);
	block_backend_close(be);
	free(mem);
}

static void test_direct_misaligned_size(void **state)
{
	struct block_backend *be;
	struct block_file_config cfg = {.direct = true};
	struct bctx c = {0};
	int ret;

	(void)state;
	assert_int_equal(make_direct_disk(&c), 0);
	assert_int_equal(ftruncate(c.fd, DIRECT_BYTES - 512), 0);
	cfg.path = c.path;
	ret = block_file_open(&cfg, &be);

	close(c.fd);
	unlink(c.path);
	if (ret == -EINVAL && strstr(err_get(), "does not support direct=on"))
		skip();
	assert_int_equal(ret, -EINVAL);
	assert_non_null(strstr(err_get(), "multiple of 4096"));
}

/* --- rng and console with memory back ends --- */

static long fake_fill(void *buf, size_t len)
{
	memset(buf, 0x5a, len);
	return (long)len;
}

static void test_rng(void **state)
{
	struct harness *h = h_new();
	struct virtio_dev *d;
	uint32_t id, len;

	(void)state;
	assert_int_equal(virtio_rng_new(h->mm, fake_fill, &d), 0);
	h_attach(h, d);
	h_init(h, H_FEATURES);
	h_set_desc(h, 0, 0, H_BUF, 100, VIRTQ_DESC_F_WRITE, 0);
	h_offer(h, 0, 0);
	h_kick(h, 0);
	h_used_elem(h, 0, 0, &id, &len);
	assert_int_equal(len, 100);
	assert_int_equal(((uint8_t *)h_ptr(h, H_BUF))[99], 0x5a);
	h_free(h);
}

struct fake_con {
	char in[32];
	size_t in_len;
	char out[64];
	size_t out_len;
};

static size_t fc_pending(void *o)
{
	return ((struct fake_con *)o)->in_len;
}

static size_t fc_read(void *o, uint8_t *buf, size_t n)
{
	struct fake_con *f = o;

	n = n < f->in_len ? n : f->in_len;
	memcpy(buf, f->in, n);
	memmove(f->in, f->in + n, f->in_len - n);
	f->in_len -= n;
	return n;
}

static void fc_write(void *o, const uint8_t *buf, size_t n)
{
	struct fake_con *f = o;

	memcpy(f->out + f->out_len, buf, n);
	f->out_len += n;
}

static void test_console(void **state)
{
	struct harness *h = h_new();
	struct fake_con f = {.in = "typed", .in_len = 5};
	struct virtio_console_backend be = {&f, fc_pending, fc_read, fc_write};
	struct virtio_dev *d;
	uint32_t id, len;

	(void)state;
	assert_int_equal(virtio_console_new(h->mm, &be, &d), 0);
	h_attach(h, d);
	h_init(h, H_FEATURES);
	/* Transmit: two readable buffers. */
	memcpy(h_ptr(h, 0x80050000), "hello ", 6);
	memcpy(h_ptr(h, 0x80050100), "world", 5);
	*(struct virtq_desc *)h_ptr(h, H_DESC + 0x10000) =
		(struct virtq_desc){0x80050000, 6, VIRTQ_DESC_F_NEXT, 1};
	*((struct virtq_desc *)h_ptr(h, H_DESC + 0x10000) + 1) =
		(struct virtq_desc){0x80050100, 5, 0, 0};
	h_avail(h, 1)[2] = 0;
	h_avail(h, 1)[1] = 1;
	h_kick(h, 1);
	assert_int_equal(f.out_len, 11);
	assert_memory_equal(f.out, "hello world", 11);
	/* Receive: input waits for a buffer, then fills it. */
	h_set_desc(h, 0, 0, H_BUF, 3, VIRTQ_DESC_F_WRITE, 0);
	h_offer(h, 0, 0);
	h_kick(h, 0);
	h_used_elem(h, 0, 0, &id, &len);
	assert_int_equal(len, 3);
	assert_memory_equal(h_ptr(h, H_BUF), "typ", 3);
	assert_int_equal(f.in_len, 2);
	h_free(h);
}

static void on_fd(void *opaque, int fd, uint32_t events)
{
	uint64_t v;

	if (read(fd, &v, sizeof(v)) == sizeof(v))
		atomic_fetch_add((_Atomic uint64_t *)opaque, v);
}

static void test_iothread(void **state)
{
	struct iothread *it;
	_Atomic uint64_t got = 0;
	int efd = eventfd(0, EFD_NONBLOCK);
	uint64_t three = 3;

	(void)state;
	assert_int_equal(iothread_new(&it), 0);
	assert_int_equal(iothread_add_fd(it, efd, EPOLLIN, on_fd, (void *)&got), 0);
	assert_int_equal(iothread_add_fd(it, efd, EPOLLIN, on_fd, (void *)&got), -EEXIST);
	assert_int_equal(iothread_start(it), 0);
	assert_int_equal(write(efd, &three, 8), 8);
	for (int i = 0; i < 2000 && atomic_load(&got) != 3; i++)
		usleep(1000);
	assert_int_equal(atomic_load(&got), 3);
	assert_int_equal(iothread_del_fd(it, efd), 0);
	iothread_stop(it);
	iothread_stop(it);
	iothread_free(it);
	close(efd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_blk_config, setup_rw, teardown),
		cmocka_unit_test_setup_teardown(test_blk_read, setup_rw, teardown),
		cmocka_unit_test_setup_teardown(test_blk_write_flush, setup_rw, teardown),
		cmocka_unit_test_setup_teardown(test_blk_get_id, setup_rw, teardown),
		cmocka_unit_test_setup_teardown(test_blk_errors, setup_rw, teardown),
		cmocka_unit_test_setup_teardown(test_blk_discard, setup_rw, teardown),
		cmocka_unit_test_setup_teardown(test_blk_malformed, setup_rw, teardown),
		cmocka_unit_test_setup_teardown(test_blk_readonly, setup_ro, teardown),
		cmocka_unit_test(test_backend_open_errors),
		cmocka_unit_test_setup_teardown(test_direct_config, setup_direct, teardown),
		cmocka_unit_test_setup_teardown(test_direct_read, setup_direct, teardown),
		cmocka_unit_test_setup_teardown(test_direct_write, setup_direct, teardown),
		cmocka_unit_test_setup_teardown(test_direct_write_zeroes, setup_direct, teardown),
		cmocka_unit_test_setup_teardown(test_direct_backend_long, setup_direct, teardown),
		cmocka_unit_test(test_direct_misaligned_size),
		cmocka_unit_test(test_rng),
		cmocka_unit_test(test_console),
		cmocka_unit_test(test_iothread),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
