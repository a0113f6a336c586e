/* test_sbi.c - the VMM's SBI v2.0 implementation against a recording fake host. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kumo/sbi.h"

struct fake {
	uint8_t ram[4096];
	uint64_t timer[4];
	unsigned ipis[4];
	unsigned fences[4];
	enum sbi_fence last_fence;
	uint64_t fence_start, fence_size;
	int status[4];
	uint64_t start_addr, start_arg;
	int reset_type, reset_reason;
	char out[256];
	size_t out_len;
	const char *in;
};

#define RAM_BASE 0x80000000ULL

static void *f_ram_ptr(void *o, uint64_t gpa, uint64_t len)
{
	struct fake *f = o;

	if (gpa < RAM_BASE || gpa - RAM_BASE > sizeof(f->ram) || len > sizeof(f->ram) - (gpa - RAM_BASE))
		return NULL;
	return f->ram + (gpa - RAM_BASE);
}
static void f_set_timer(void *o, unsigned h, uint64_t when) { ((struct fake *)o)->timer[h] = when; }
static void f_send_ipi(void *o, unsigned h) { ((struct fake *)o)->ipis[h]++; }
static void f_fence(void *o, unsigned h, enum sbi_fence k, uint64_t s, uint64_t z, uint64_t a)
{
	struct fake *f = o;

	f->fences[h]++;
	f->last_fence = k;
	f->fence_start = s;
	f->fence_size = z;
}
static int f_hart_start(void *o, unsigned h, uint64_t addr, uint64_t arg)
{
	struct fake *f = o;

	if (f->status[h] != SBI_HSM_STOPPED)
		return SBI_ERR_ALREADY_AVAILABLE;
	f->status[h] = SBI_HSM_START_PENDING;
	f->start_addr = addr;
	f->start_arg = arg;
	return SBI_SUCCESS;
}
static int f_hart_stop(void *o, unsigned h) { ((struct fake *)o)->status[h] = SBI_HSM_STOPPED; return 0; }
static int f_hart_status(void *o, unsigned h) { return ((struct fake *)o)->status[h]; }
static int f_hart_suspend(void *o, unsigned h, uint32_t t, uint64_t a, uint64_t arg) { return 0; }
static void f_reset(void *o, uint32_t t, uint32_t r)
{
	((struct fake *)o)->reset_type = (int)t;
	((struct fake *)o)->reset_reason = (int)r;
}
static long f_con_write(void *o, const uint8_t *b, size_t n)
{
	struct fake *f = o;

	memcpy(f->out + f->out_len, b, n);
	f->out_len += n;
	return (long)n;
}
static long f_con_read(void *o, uint8_t *b, size_t n)
{
	struct fake *f = o;
	size_t have = strlen(f->in);

	if (n > have)
		n = have;
	memcpy(b, f->in, n);
	f->in += n;
	return (long)n;
}

static struct fake fk;
static struct sbi_host host;

static int setup(void **state)
{
	memset(&fk, 0, sizeof(fk));
	fk.status[0] = SBI_HSM_STARTED;
	fk.status[1] = fk.status[2] = fk.status[3] = SBI_HSM_STOPPED;
	fk.reset_type = fk.reset_reason = -1;
	fk.in = "";
	host = (struct sbi_host){.opaque = &fk, .nharts = 4, .ram_ptr = f_ram_ptr,
				 .set_timer = f_set_timer, .send_ipi = f_send_ipi,
				 .remote_fence = f_fence, .hart_start = f_hart_start,
				 .hart_stop = f_hart_stop, .hart_status = f_hart_status,
				 .hart_suspend = f_hart_suspend, .system_reset = f_reset,
				 .console_write = f_con_write, .console_read = f_con_read,
				 .mvendorid = 0x123, .marchid = 0x456, .mimpid = 0x789};
	return 0;
}

static void call(unsigned hart, uint64_t ext, uint64_t fid, uint64_t a0, uint64_t a1, uint64_t a2,
		 int64_t ret[2])
{
	uint64_t args[6] = {a0, a1, a2, 0, 0, 0};

	sbi_call(&host, hart, ext, fid, args, ret, NULL);
}

static void test_base(void **state)
{
	int64_t r[2];

	call(0, SBI_EXT_BASE, 0, 0, 0, 0, r);
	assert_int_equal(r[0], 0);
	assert_int_equal(r[1], 2 << 24); /* v2.0 */
	call(0, SBI_EXT_BASE, 1, 0, 0, 0, r);
	assert_int_equal(r[1], SBI_IMPL_ID_KUMO);
	for (uint64_t ext = 0; ext < 7; ext++) {
		static const uint64_t ids[] = {SBI_EXT_BASE, SBI_EXT_TIME, SBI_EXT_IPI, SBI_EXT_RFENCE,
					       SBI_EXT_HSM,  SBI_EXT_SRST, SBI_EXT_DBCN};
		call(0, SBI_EXT_BASE, 3, ids[ext], 0, 0, r);
		assert_int_equal(r[0], 0);
		assert_int_equal(r[1], 1);
	}
	call(0, SBI_EXT_BASE, 3, 0x504D55 /* PMU */, 0, 0, r);
	assert_int_equal(r[1], 0);
	call(0, SBI_EXT_BASE, 3, 0x01 /* legacy putchar */, 0, 0, r);
	assert_int_equal(r[1], 0);
	call(0, SBI_EXT_BASE, 4, 0, 0, 0, r);
	assert_int_equal(r[1], 0x123);
	call(0, SBI_EXT_BASE, 6, 0, 0, 0, r);
	assert_int_equal(r[1], 0x789);
	call(0, SBI_EXT_BASE, 99, 0, 0, 0, r);
	assert_int_equal(r[0], SBI_ERR_NOT_SUPPORTED);
}

static void test_unknown_extension(void **state)
{
	int64_t r[2];

	call(0, 0x0A000000, 0, 0, 0, 0, r);
	assert_int_equal(r[0], SBI_ERR_NOT_SUPPORTED);
	call(0, 0x01 /* legacy console_putchar: compiled out of Linux, not served */, 0, 'x', 0, 0, r);
	assert_int_equal(r[0], SBI_ERR_NOT_SUPPORTED);
	assert_int_equal(fk.out_len, 0);
}

static void test_time(void **state)
{
	int64_t r[2];

	call(2, SBI_EXT_TIME, 0, 123456789, 0, 0, r);
	assert_int_equal(r[0], 0);
	assert_int_equal(fk.timer[2], 123456789);
	assert_int_equal(fk.timer[0], 0);
	call(2, SBI_EXT_TIME, 1, 5, 0, 0, r);
	assert_int_equal(r[0], SBI_ERR_NOT_SUPPORTED);
}

static void test_ipi_masks(void **state)
{
	int64_t r[2];

	call(0, SBI_EXT_IPI, 0, 0x5, 0, 0, r); /* harts 0 and 2 */
	assert_int_equal(r[0], 0);
	assert_int_equal(fk.ipis[0], 1);
	assert_int_equal(fk.ipis[1], 0);
	assert_int_equal(fk.ipis[2], 1);
	call(0, SBI_EXT_IPI, 0, 0x1, 3, 0, r); /* base 3: hart 3 */
	assert_int_equal(fk.ipis[3], 1);
	call(0, SBI_EXT_IPI, 0, 0, UINT64_MAX, 0, r); /* base -1: everyone */
	for (int i = 0; i < 4; i++)
		assert_true(fk.ipis[i] >= 1);
	assert_int_equal(fk.ipis[1], 1);
	/* A mask naming a hart that does not exist is refused and changes nothing. */
	call(0, SBI_EXT_IPI, 0, 0x3, 3, 0, r);
	assert_int_equal(r[0], SBI_ERR_INVALID_PARAM);
	assert_int_equal(fk.ipis[3], 2);
	call(0, SBI_EXT_IPI, 0, 1ULL << 63, 0, 0, r);
	assert_int_equal(r[0], SBI_ERR_INVALID_PARAM);
	call(0, SBI_EXT_IPI, 0, 1, 1ULL << 40, 0, r);
	assert_int_equal(r[0], SBI_ERR_INVALID_PARAM);
}

static void test_rfence(void **state)
{
	int64_t r[2];
	uint64_t args[6] = {0x2, 0, 0x1000, 0x2000, 7, 0};

	sbi_call(&host, 0, SBI_EXT_RFENCE, 1, args, r, NULL);
	assert_int_equal(r[0], 0);
	assert_int_equal(fk.fences[1], 1);
	assert_int_equal(fk.last_fence, SBI_FENCE_VMA);
	assert_int_equal(fk.fence_start, 0x1000);
	assert_int_equal(fk.fence_size, 0x2000);
	args[0] = 0xf;
	sbi_call(&host, 0, SBI_EXT_RFENCE, 0, args, r, NULL);
	assert_int_equal(fk.last_fence, SBI_FENCE_I);
	assert_int_equal(fk.fences[3], 1);
	sbi_call(&host, 0, SBI_EXT_RFENCE, 2, args, r, NULL);
	assert_int_equal(fk.last_fence, SBI_FENCE_VMA_ASID);
	sbi_call(&host, 0, SBI_EXT_RFENCE, 3, args, r, NULL); /* HFENCE: no H extension */
	assert_int_equal(r[0], SBI_ERR_NOT_SUPPORTED);
}

static void test_hsm(void **state)
{
	int64_t r[2];

	call(0, SBI_EXT_HSM, 2, 1, 0, 0, r);
	assert_int_equal(r[0], 0);
	assert_int_equal(r[1], SBI_HSM_STOPPED);
	call(0, SBI_EXT_HSM, 0, 1, 0x80200000, 0xabc, r);
	assert_int_equal(r[0], 0);
	assert_int_equal(fk.start_addr, 0x80200000);
	assert_int_equal(fk.start_arg, 0xabc);
	call(0, SBI_EXT_HSM, 2, 1, 0, 0, r);
	assert_int_equal(r[1], SBI_HSM_START_PENDING);
	call(0, SBI_EXT_HSM, 0, 1, 0x80200000, 0, r);
	assert_int_equal(r[0], SBI_ERR_ALREADY_AVAILABLE);
	call(0, SBI_EXT_HSM, 0, 9, 0x80200000, 0, r);
	assert_int_equal(r[0], SBI_ERR_INVALID_PARAM);
	call(0, SBI_EXT_HSM, 2, 4, 0, 0, r);
	assert_int_equal(r[0], SBI_ERR_INVALID_PARAM);
	call(2, SBI_EXT_HSM, 1, 0, 0, 0, r); /* hart_stop acts on the caller */
	assert_int_equal(fk.status[2], SBI_HSM_STOPPED);
	call(0, SBI_EXT_HSM, 3, 1ULL << 40, 0, 0, r);
	assert_int_equal(r[0], SBI_ERR_INVALID_PARAM);
}

static void test_srst(void **state)
{
	int64_t r[2];

	call(0, SBI_EXT_SRST, 0, 3, 0, 0, r); /* reserved type */
	assert_int_equal(r[0], SBI_ERR_INVALID_PARAM);
	assert_int_equal(fk.reset_type, -1);
	call(0, SBI_EXT_SRST, 0, 0, 5, 0, r); /* reserved reason */
	assert_int_equal(r[0], SBI_ERR_INVALID_PARAM);
	call(0, SBI_EXT_SRST, 0, 1, 0, 0, r);
	assert_int_equal(fk.reset_type, 1);
	assert_int_equal(fk.reset_reason, 0);
	call(0, SBI_EXT_SRST, 0, 0, 1, 0, r);
	assert_int_equal(fk.reset_type, 0);
	assert_int_equal(fk.reset_reason, 1);
}

static void test_dbcn(void **state)
{
	int64_t r[2];

	memcpy(fk.ram + 16, "hello", 5);
	call(0, SBI_EXT_DBCN, 0, 5, RAM_BASE + 16, 0, r);
	assert_int_equal(r[0], 0);
	assert_int_equal(r[1], 5);
	assert_memory_equal(fk.out, "hello", 5);
	call(0, SBI_EXT_DBCN, 2, '!', 0, 0, r);
	assert_int_equal(fk.out[5], '!');
	/* Buffers outside RAM, crossing its end, or with base_hi set are refused. */
	call(0, SBI_EXT_DBCN, 0, 5, 0x1000, 0, r);
	assert_int_equal(r[0], SBI_ERR_INVALID_PARAM);
	call(0, SBI_EXT_DBCN, 0, 64, RAM_BASE + 4090, 0, r);
	assert_int_equal(r[0], SBI_ERR_INVALID_PARAM);
	call(0, SBI_EXT_DBCN, 0, UINT64_MAX, RAM_BASE, 0, r);
	assert_int_equal(r[0], SBI_ERR_INVALID_PARAM);
	call(0, SBI_EXT_DBCN, 0, 5, RAM_BASE, 1, r);
	assert_int_equal(r[0], SBI_ERR_INVALID_PARAM);
	assert_int_equal(fk.out_len, 6);
	fk.in = "ab";
	call(0, SBI_EXT_DBCN, 1, 8, RAM_BASE + 100, 0, r);
	assert_int_equal(r[0], 0);
	assert_int_equal(r[1], 2);
	assert_memory_equal(fk.ram + 100, "ab", 2);
}

static void test_stats(void **state)
{
	struct sbi_stats st = {0};
	uint64_t args[6] = {0};
	int64_t r[2];

	sbi_call(&host, 0, SBI_EXT_TIME, 0, args, r, &st);
	sbi_call(&host, 0, SBI_EXT_TIME, 0, args, r, &st);
	sbi_call(&host, 0, 0x1234, 0, args, r, &st);
	assert_int_equal(st.calls[1], 2);
	assert_int_equal(st.calls[7], 1);
	assert_string_equal(sbi_ext_name(1), "time");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_base, setup),
		cmocka_unit_test_setup(test_unknown_extension, setup),
		cmocka_unit_test_setup(test_time, setup),
		cmocka_unit_test_setup(test_ipi_masks, setup),
		cmocka_unit_test_setup(test_rfence, setup),
		cmocka_unit_test_setup(test_hsm, setup),
		cmocka_unit_test_setup(test_srst, setup),
		cmocka_unit_test_setup(test_dbcn, setup),
		cmocka_unit_test_setup(test_stats, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
