/*
 * test_rv64_jit_buffer.c - the translator's two code-buffer layouts (jit.c, rv64_jit_new()):
 * by default one private mapping, writable and executable, that the host may back with huge
 * pages (when its transparent huge pages are not "never"); with KUMO_JIT_WX=1 one memory
 * file mapped twice, a writable view and an executable view, never both at once. Each layout
 * must also run translated guest code (a summing loop the translator compiles).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "accel/rv64/jit.h"
#include "accel_harness.h"
#include "kumo/base.h"

#ifdef RV64_JIT

#define BASE 0x80000000ull

/* The permissions ("rwxp", "r-xs", ...) of the mapping of this process that holds p. */
static void perms_of(const void *p, char out[5])
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	uintptr_t a = (uintptr_t)p;

	assert_non_null(f);
	out[0] = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		char perms[5];

		if (sscanf(line, "%lx-%lx %4s", &lo, &hi, perms) == 3 && a >= lo && a < hi) {
			memcpy(out, perms, 5);
			break;
		}
	}
	fclose(f);
	assert_true(out[0]);
}

/* a0 = 1000 + 999 + ... + 1 in a loop the translator compiles; returns a0 at the ECALL. */
static uint64_t run_sum_loop(void)
{
	static const uint32_t prog[] = {
		0x00000513, /* li a0, 0 */
		0x3e800593, /* li a1, 1000 */
		0x00b50533, /* loop: add a0, a0, a1 */
		0xfff58593, /* addi a1, a1, -1 */
		0xfe059ce3, /* bnez a1, loop */
		0x00000073, /* ecall */
	};
	struct ah_config c = {.ram_base = BASE, .ram_size = 1 << 20, .ncpus = 1,
			      .ecall_exit_mask = 1u << 3, .jit = AH_JIT_ON};
	struct accel_harness h;
	struct accel_stats st;
	uint64_t a0;

	ah_init(&h, &c);
	for (unsigned i = 0; i < sizeof(prog) / sizeof(prog[0]); i++)
		ah_put32(&h, BASE + 4 * i, prog[i]);
	ah_set(&h, 0, ACCEL_REG_PC, BASE);
	a0 = ah_run_to_ecall(&h, 0);
	assert_int_equal(h.ops->get_stats(h.cpu[0], &st), 0);
	assert_true(st.code_bytes > 0); /* it ran translated code */
	ah_fini(&h);
	return a0;
}

static void test_default_layout(void **state)
{
	struct rv64_jit *j;
	char rx[5], rw[5];

	(void)state;
	unsetenv("KUMO_JIT_WX");
	assert_int_equal(rv64_jit_new(&j), 0);
	perms_of(j->rx, rx);
	perms_of(j->rw, rw);
	if (mem_thp_mode() != 1) {
		/* nothing to gain from one mapping: W^X */
		assert_true(j->wx);
		assert_string_equal(rx, "r-xs");
	} else {
		assert_false(j->wx);
		assert_ptr_equal(j->rw, j->rx);
		assert_string_equal(rx, "rwxp");
		assert_int_equal((uintptr_t)j->rx & ((2u << 20) - 1), 0); /* huge-page aligned */
	}
	rv64_jit_free(j);
	assert_int_equal(run_sum_loop(), 500500);
}

static void test_wx_layout(void **state)
{
	struct rv64_jit *j;
	char rx[5], rw[5];

	(void)state;
	setenv("KUMO_JIT_WX", "1", 1);
	assert_int_equal(rv64_jit_new(&j), 0);
	assert_true(j->wx);
	assert_ptr_not_equal(j->rw, j->rx);
	perms_of(j->rx, rx);
	perms_of(j->rw, rw);
	assert_string_equal(rx, "r-xs"); /* executable, never writable */
	assert_string_equal(rw, "rw-s"); /* writable, never executable */
	/* the two views are one memory */
	j->rw[j->size - 1] = 0x5a;
	assert_int_equal(j->rx[j->size - 1], 0x5a);
	rv64_jit_free(j);
	assert_int_equal(run_sum_loop(), 500500);
	unsetenv("KUMO_JIT_WX");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_layout),
		cmocka_unit_test(test_wx_layout),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

#else

int main(void)
{
	printf("1..0 # SKIP no translator on this host\n");
	return 0;
}

#endif
