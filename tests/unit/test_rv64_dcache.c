/*
 * test_rv64_dcache.c - the software CPU's decode cache must never run stale code where the
 * ISA says the new code is visible (unpriv 20191213 §3.2, FENCE.I): stores of the hart itself
 * (even without FENCE.I: kumo invalidates precisely), stores of another hart followed by
 * FENCE.I on the executing hart, host writes announced with rv64_code_ram_written(), code put
 * in place by the VMM before set_reg(PC), and compressed/fused instructions rewritten in part.
 * Also: decoded pages are reused (hits counted) while nothing writes them.
 *
 * Harts are run one after another on this thread; each program leaves vcpu_run() through an
 * ECALL (ecall_exit_mask covers M-mode) and the next vcpu_run() continues after it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "accel/rv64/cpu.h"
#include "accel/rv64/mmu.h"
#include "kumo/accel.h"
#include "kumo/memmap.h"

#include "accel_harness.h"

#define RAM_BASE 0x80000000ULL
#define RAM_SIZE (1ULL << 20)
#define CODE (RAM_BASE + 0x1000)
#define CODE1 (RAM_BASE + 0x8000) /* hart 1's program */

#define ECALL 0x00000073u
#define FENCE_I 0x0000100fu

enum { A0 = 10, S0 = 8, S1 = 9, T0 = 5 };

static uint32_t addi(unsigned rd, unsigned rs1, int32_t imm)
{
	return ((uint32_t)imm << 20) | rs1 << 15 | rd << 7 | 0x13;
}

static uint32_t sw(unsigned rs2, unsigned rs1, int32_t imm)
{
	return ((uint32_t)(imm >> 5) & 0x7f) << 25 | rs2 << 20 | rs1 << 15 | 2 << 12 |
	       ((uint32_t)imm & 31) << 7 | 0x23;
}

static uint32_t jal(unsigned rd, int32_t off)
{
	uint32_t i = (uint32_t)off;

	return ((i >> 20) & 1) << 31 | ((i >> 1) & 0x3ff) << 21 | ((i >> 11) & 1) << 20 |
	       ((i >> 12) & 0xff) << 12 | rd << 7 | 0x6f;
}

static uint32_t lui(unsigned rd, uint32_t hi20)
{
	return hi20 << 12 | rd << 7 | 0x37;
}

static int setup(void **state)
{
	*state = ah_new(&(struct ah_config){
	    .ram_base = RAM_BASE, .ram_size = RAM_SIZE, .ncpus = 2, .ecall_exit_mask = 1u << 3});
	return 0;
}

/* A store of the running hart to its own next instruction takes effect without FENCE.I. */
static void test_store_to_next_instruction(void **state)
{
	struct accel_harness *f = *state;

	/* loop: sw t0, 8(s0); addi a0, zero, 1; ecall; j loop */
	ah_put32(f, CODE, sw(T0, S0, 8));
	ah_put32(f, CODE + 4, addi(0, 0, 0));
	ah_put32(f, CODE + 8, addi(A0, 0, 1));
	ah_put32(f, CODE + 12, ECALL);
	ah_put32(f, CODE + 16, jal(0, -16));
	ah_set(f, 0, ACCEL_REG_PC, CODE);
	ah_set(f, 0, ACCEL_REG_X(S0), CODE);
	ah_set(f, 0, ACCEL_REG_X(T0), addi(A0, 0, 1));
	assert_int_equal(ah_run_to_ecall(f, 0), 1);
	/* The same loop again, now storing a different instruction over the decoded one. */
	for (int v = 2; v < 40; v++) {
		ah_set(f, 0, ACCEL_REG_X(T0), addi(A0, 0, v));
		assert_int_equal(ah_run_to_ecall(f, 0), (uint64_t)v);
	}
}

/* Hart 1 rewrites code hart 0 has decoded; hart 0 sees it after its FENCE.I. */
static void test_cross_hart_fence_i(void **state)
{
	struct accel_harness *f = *state;

	/* hart 0 -- loop: addi a0, zero, 1; ecall; fence.i; j loop */
	ah_put32(f, CODE, addi(A0, 0, 1));
	ah_put32(f, CODE + 4, ECALL);
	ah_put32(f, CODE + 8, FENCE_I);
	ah_put32(f, CODE + 12, jal(0, -12));
	/* hart 1 -- loop: sw t0, 0(s0); ecall; j loop */
	ah_put32(f, CODE1, sw(T0, S0, 0));
	ah_put32(f, CODE1 + 4, ECALL);
	ah_put32(f, CODE1 + 8, jal(0, -8));
	ah_set(f, 0, ACCEL_REG_PC, CODE);
	ah_set(f, 1, ACCEL_REG_PC, CODE1);
	ah_set(f, 1, ACCEL_REG_X(S0), CODE);

	assert_int_equal(ah_run_to_ecall(f, 0), 1);
	for (int v = 2; v < 20; v++) {
		ah_set(f, 1, ACCEL_REG_X(T0), addi(A0, 0, v));
		ah_run_to_ecall(f, 1);
		assert_int_equal(ah_run_to_ecall(f, 0), (uint64_t)v);
	}
}

/* Host writes (DMA) announced with rv64_code_ram_written() drop the decoded copy. */
static void test_ram_written(void **state)
{
	struct accel_harness *f = *state;
	struct rv64_vm *vm = (struct rv64_vm *)f->vm;

	ah_put32(f, CODE, addi(A0, 0, 5));
	ah_put32(f, CODE + 4, ECALL);
	ah_put32(f, CODE + 8, FENCE_I);
	ah_put32(f, CODE + 12, jal(0, -12));
	ah_set(f, 0, ACCEL_REG_PC, CODE);
	assert_int_equal(ah_run_to_ecall(f, 0), 5);
	ah_put32(f, CODE, addi(A0, 0, 6));
	rv64_code_ram_written(vm, CODE, 4);
	assert_int_equal(ah_run_to_ecall(f, 0), 6);
	/* Code the VMM writes before pointing the hart at it needs no announcement. */
	ah_put32(f, CODE, addi(A0, 0, 7));
	ah_set(f, 0, ACCEL_REG_PC, CODE);
	assert_int_equal(ah_run_to_ecall(f, 0), 7);
}

/*
 * Fused pairs (lui+addi) and compressed instructions: rewriting only the second half of a
 * pair, or one 16-bit parcel, must be seen.
 */
static void test_partial_rewrites(void **state)
{
	struct accel_harness *f = *state;

	/* loop: lui a0, 0x12; addi a0, a0, 0x34; ecall; sw t0, 4(s0); fence.i; j loop */
	ah_put32(f, CODE, lui(A0, 0x12));
	ah_put32(f, CODE + 4, addi(A0, A0, 0x34));
	ah_put32(f, CODE + 8, ECALL);
	ah_put32(f, CODE + 12, sw(T0, S0, 4));
	ah_put32(f, CODE + 16, FENCE_I);
	ah_put32(f, CODE + 20, jal(0, -20));
	ah_set(f, 0, ACCEL_REG_PC, CODE);
	ah_set(f, 0, ACCEL_REG_X(S0), CODE);
	ah_set(f, 0, ACCEL_REG_X(T0), addi(A0, A0, 0x56));
	assert_int_equal(ah_run_to_ecall(f, 0), 0x12034);
	assert_int_equal(ah_run_to_ecall(f, 0), 0x12056);

	/* c.li a0, 3; c.nop; ecall -> then the c.li parcel alone becomes c.li a0, 9 */
	ah_put16(f, CODE, 0x450d); /* c.li a0, 3 */
	ah_put16(f, CODE + 2, 0x0001);
	ah_put32(f, CODE + 4, ECALL);
	ah_put32(f, CODE + 8, FENCE_I);
	ah_put32(f, CODE + 12, jal(0, -12));
	ah_set(f, 0, ACCEL_REG_PC, CODE);
	assert_int_equal(ah_run_to_ecall(f, 0), 3);
	ah_put16(f, CODE, 0x4525); /* c.li a0, 9 */
	rv64_code_ram_written((struct rv64_vm *)f->vm, CODE, 2);
	assert_int_equal(ah_run_to_ecall(f, 0), 9);
}

/* A loop that writes nothing runs from its decoded page: lookups hit. */
static void test_hits_counted(void **state)
{
	struct accel_harness *f = *state;
	struct accel_stats st;

	/* loop: addi s1, s1, 1; ecall; j loop (the SBI return value lands in a0, a1) */
	ah_put32(f, CODE, addi(S1, S1, 1));
	ah_put32(f, CODE + 4, ECALL);
	ah_put32(f, CODE + 8, jal(0, -8));
	ah_set(f, 0, ACCEL_REG_PC, CODE);
	ah_set(f, 0, ACCEL_REG_X(S1), 0);
	for (uint64_t i = 1; i <= 50; i++) {
		ah_run_to_ecall(f, 0);
		assert_int_equal(ah_get(f, 0, ACCEL_REG_X(S1)), i);
	}
	assert_int_equal(f->ops->get_stats(f->cpu[0], &st), 0);
	assert_true(st.dcache_misses >= 1);
	assert_true(st.dcache_hits >= 40);
	assert_true(st.dcache_misses < 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_store_to_next_instruction, setup, ah_teardown),
		cmocka_unit_test_setup_teardown(test_cross_hart_fence_i, setup, ah_teardown),
		cmocka_unit_test_setup_teardown(test_ram_written, setup, ah_teardown),
		cmocka_unit_test_setup_teardown(test_partial_rewrites, setup, ah_teardown),
		cmocka_unit_test_setup_teardown(test_hits_counted, setup, ah_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
