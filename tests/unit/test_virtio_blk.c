/*
 * test_virtio_blk.c - virtio-blk against a temporary raw image through the real file back end
 * (reads, writes, flush, GET_ID, discard, range and read-only errors, malformed requests),
 * the back end's open-time errors and lock, virtio-rng and virtio-console with memory back
 * ends, and the I/O thread's dispatch.
 */
#include <errno.h>
#include <fcntl.h>
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
	char path[64];
	int fd; /* the test's own view of the image */
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
		cmocka_unit_test(test_rng),
		cmocka_unit_test(test_console),
		cmocka_unit_test(test_iothread),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
