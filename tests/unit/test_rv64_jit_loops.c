/*
 * test_rv64_jit_loops.c - jumps that stay inside one translated block (src/accel/rv64/jit.c):
 * a taken branch or JAL whose target is an instruction of the same block continues in the
 * block's host code instead of leaving through a chaining cell. Each program runs on a
 * translating and an interpreting machine from the same state and must end identically
 * (registers, pc, minstret, memory); besides:
 *   - a loop's back edge still checks the instruction budget (rv64_exec() returns after about
 *     `budget` instructions in an endless loop, not when the loop ends);
 *   - the TLB hit count stays that of the accesses really made (forward jumps skip some);
 *   - a store that rewrites the loop's own code is seen by the next iteration;
 *   - a helper call inside a loop sees the registers the previous iteration wrote after it
 *     (exits write back only what the block writes, calls in its middle everything);
 *   - operations straight on cached host registers (a block using few registers caches them
 *     all): rd equal to rs1, to rs2 or to both, non-commutative ops, loads into and stores
 *     from cached registers, byte stores of each, inline division with its special cases;
 *   - FENCE, LR/SC and AMOs inside blocks: results, memory, reservations (SC after LR of
 *     another address, after a store changed the value, without LR), misaligned ones trap.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "accel/rv64/cpu.h"
#include "accel/rv64/jit.h"
#include "jit_compare.h"
#include "kumo/accel.h"

/*
 * t0 = n; loop: a0 = lw(s0) + t0; if (t0 & 3) { a0 ^= 0x55; a3 = lw 4(s0); a2++ }
 * sw a0, 0(s0); a1 += 3; t0--; bnez t0, loop (back to the second instruction of the block).
 * The forward branch skips a load, the back edge lands inside the block.
 */
static void gen_branch_loop(struct jc *f, uint32_t n_hi20)
{
	unsigned top, skip_br, skip;

	f->len = 0;
	jc_emit(f, lui(T0, n_hi20));
	top = jc_emit(f, i_type(0x03, A0, 2, S0, 0));     /* lw a0, 0(s0) */
	jc_emit(f, r_type(0x33, A0, 0, A0, T0, 0));       /* add a0, a0, t0 */
	jc_emit(f, i_type(0x13, T1, 7, T0, 3));           /* andi t1, t0, 3 */
	skip_br = jc_emit(f, 0);                          /* beqz t1, skip */
	jc_emit(f, i_type(0x13, A0, 4, A0, 0x55));        /* xori a0, a0, 0x55 */
	jc_emit(f, i_type(0x03, A3, 2, S0, 4));           /* lw a3, 4(s0) */
	jc_emit(f, i_type(0x13, A2, 0, A2, 1));           /* addi a2, a2, 1 */
	skip = jc_emit(f, s_type(2, S0, A0, 0));          /* sw a0, 0(s0) */
	jc_emit(f, i_type(0x13, A1, 0, A1, 3));           /* addi a1, a1, 3 */
	jc_emit(f, i_type(0x13, T0, 0, T0, -1));          /* addi t0, t0, -1 */
	jc_emit(f, b_to(1, T0, 0, f->len, top));          /* bnez t0, top */
	jc_emit(f, ECALL);
	f->code[skip_br] = b_to(0, T1, 0, skip_br, skip);
}

/* t0 = n; loop: beqz t0, out; ld/addi/sd 8(s0); t0--; jal rd, loop; out: ecall. */
static void gen_jal_loop(struct jc *f, uint32_t n_hi20, unsigned link)
{
	unsigned top, exit_br;

	f->len = 0;
	jc_emit(f, lui(T0, n_hi20));
	top = exit_br = jc_emit(f, 0);                    /* beqz t0, out */
	jc_emit(f, i_type(0x03, A0, 3, S0, 8));           /* ld a0, 8(s0) */
	jc_emit(f, i_type(0x13, A0, 0, A0, 7));           /* addi a0, a0, 7 */
	jc_emit(f, s_type(3, S0, A0, 8));                 /* sd a0, 8(s0) */
	jc_emit(f, i_type(0x13, T0, 0, T0, -1));          /* addi t0, t0, -1 */
	jc_emit(f, jal_to(link, f->len, top));            /* jal link, top */
	f->code[exit_br] = b_to(0, T0, 0, exit_br, jc_emit(f, ECALL));
}

/* Loops of both shapes, short and longer than many budget slices, give the same results. */
static void test_loops_match_interpreter(void **state)
{
	struct jc *f = *state;
	static const uint32_t n_hi20[] = {0, 1, 3, 25}; /* lui t0: 0, 4096, 12288, 102400 */

	for (unsigned i = 0; i < sizeof(n_hi20) / sizeof(n_hi20[0]); i++) {
		gen_branch_loop(f, n_hi20[i]);
		if (!n_hi20[i])
			f->code[0] = i_type(0x13, T0, 0, 0, 5); /* li t0, 5 */
		jc_load(f);
		jc_run_both(f);
		jc_compare(f);
		for (unsigned link = 0; link < 2; link++) {
			gen_jal_loop(f, n_hi20[i], link ? RA : 0);
			if (!n_hi20[i])
				f->code[0] = i_type(0x13, T0, 0, 0, 7);
			jc_load(f);
			jc_run_both(f);
			jc_compare(f);
		}
	}
	jc_check_translated(f);
}

/*
 * An endless loop (t0 counts up to 2^28 iterations) run through rv64_exec() with a budget:
 * it must come back after about that many instructions (overshooting by less than one
 * block), as interrupts are taken only between rv64_exec() calls.
 */
static void test_loop_budget(void **state)
{
	struct jc *f = *state;

	gen_jal_loop(f, 0x10000, 0);
	jc_load(f);
	for (unsigned k = 0; k < 2; k++) {
		struct accel_harness *m = &f->m[k];

		static const unsigned budgets[] = {100, 1334, 2568, 3802, 5036, 600000};

		assert_int_equal(rv64_exec(jc_cpu(m), 10), RV64_STOP_BUDGET); /* past the lui */

		for (unsigned i = 0; i < sizeof(budgets) / sizeof(budgets[0]); i++) {
			unsigned budget = budgets[i];
			uint64_t before = ah_get(m, 0, ACCEL_REG_CSR(CSR_MINSTRET)), ran, iters;
			uint64_t t0 = ah_get(m, 0, ACCEL_REG_X(T0));

			assert_int_equal(rv64_exec(jc_cpu(m), budget), RV64_STOP_BUDGET);
			ran = ah_get(m, 0, ACCEL_REG_CSR(CSR_MINSTRET)) - before;
			if (ran < budget || ran > budget + 64)
				fail_msg("machine %u: budget %u ran %llu instructions", k, budget,
					 (unsigned long long)ran);
			/* minstret counts what ran: 6 instructions per iteration of t0 */
			iters = t0 - ah_get(m, 0, ACCEL_REG_X(T0));
			if (ran + 6 < 6 * iters || ran > 6 * iters + 6)
				fail_msg("machine %u: %llu instructions retired in %llu iterations", k,
					 (unsigned long long)ran, (unsigned long long)iters);
		}
	}
	jc_check_translated(f);
}

/*
 * The TLB hit count of a loop (loads and stores the translated code counts up front, gives
 * back at side exits and charges again at a jump inside its block) is the number of data
 * accesses the loop made, give or take the few instruction-fetch lookups and first misses.
 */
static void test_loop_tlb_hits(void **state)
{
	struct jc *f = *state;
	uint64_t want = 0, got[2];
	const uint64_t n = 25 << 12;

	gen_branch_loop(f, 25);
	jc_load(f);
	for (uint64_t t = n; t; t--)
		want += (t & 3) ? 3 : 2;
	for (unsigned k = 0; k < 2; k++) {
		uint64_t before = jc_cpu(&f->m[k])->stats.tlb_hits;

		ah_run(&f->m[k], 0);
		got[k] = jc_cpu(&f->m[k])->stats.tlb_hits - before;
		if (got[k] + 8 < want || got[k] > want + 2000)
			fail_msg("machine %u: %llu TLB hits, %llu data accesses", k,
				 (unsigned long long)got[k], (unsigned long long)want);
	}
	jc_compare(f);
	jc_check_translated(f);
}

/*
 * The loop body stores a new instruction over one later in the same loop (addi a1, a1, 1
 * becomes addi a1, a1, 100): every iteration, the first included, runs the stored one.
 */
static void test_loop_rewrites_itself(void **state)
{
	struct jc *f = *state;
	unsigned top, patched, auipc;

	f->len = 0;
	auipc = jc_emit(f, 0x17u | S1 << 7);              /* auipc s1, 0 */
	jc_emit(f, 0);                                    /* addi s1, s1, patched */
	jc_emit(f, i_type(0x13, T0, 0, 0, 9));            /* li t0, 9 */
	jc_emit(f, lui(T2, 0));                           /* t2 = addi a1, a1, 100 */
	jc_emit(f, 0);
	top = jc_emit(f, s_type(2, S1, T2, 0));           /* sw t2, 0(s1) */
	patched = jc_emit(f, i_type(0x13, A1, 0, A1, 1)); /* addi a1, a1, 1 */
	jc_emit(f, i_type(0x13, A2, 0, A2, 1));           /* addi a2, a2, 1 */
	jc_emit(f, i_type(0x13, T0, 0, T0, -1));          /* addi t0, t0, -1 */
	jc_emit(f, b_to(1, T0, 0, f->len, top));          /* bnez t0, top */
	jc_emit(f, ECALL);
	f->code[auipc + 1] = i_type(0x13, S1, 0, S1, (int32_t)(4 * (patched - auipc)));
	{
		uint32_t v = i_type(0x13, A1, 0, A1, 100);
		uint32_t hi = (v + 0x800) >> 12;

		f->code[3] = lui(T2, hi);
		f->code[4] = i_type(0x1b, T2, 0, T2, (int32_t)(v - (hi << 12))); /* addiw */
	}
	for (unsigned round = 0; round < 3; round++) {
		jc_load(f);
		jc_run_both(f);
		jc_compare(f);
		assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_X(A1)), 0x1000 * A1 + 5 + 9 * 100);
	}
	jc_check_translated(f);
}

/*
 * t0 = 50; loop: fadd.s f1, f1, f2 (a call of rv64_fpu_exec()); a1 += 1; t0--; bnez t0, loop.
 * The call comes before the writes of t0 and a1 in the block, which they reach again through
 * the back edge: a write-back before it must not leave their cpu->x[] stale.
 */
static void test_loop_with_call(void **state)
{
	struct jc *f = *state;
	unsigned top;

	f->len = 0;
	jc_emit(f, i_type(0x13, T0, 0, 0, 50));
	top = jc_emit(f, r_type(0x53, 1, 0, 1, 2, 0x00)); /* fadd.s f1, f1, f2, rne */
	jc_emit(f, i_type(0x13, A1, 0, A1, 1));
	jc_emit(f, i_type(0x13, T0, 0, T0, -1));
	jc_emit(f, b_to(1, T0, 0, f->len, top));
	jc_emit(f, ECALL);
	jc_load(f);
	jc_run_both(f);
	jc_compare(f);
	assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_X(A1)), 0x1000 * A1 + 5 + 50);
	assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_X(T0)), 0);
	jc_check_translated(f);
}

static uint64_t rnd(uint64_t *st)
{
	*st ^= *st << 13;
	*st ^= *st >> 7;
	*st ^= *st << 17;
	return *st;
}

/* One random op on registers a0..a5 and x0 (s0 as the data pointer). */
static uint32_t cached_op(uint64_t *st)
{
	static const uint16_t op_k[] = {
		0x00 << 3 | 0, 0x20 << 3 | 0, 0x00 << 3 | 1, 0x00 << 3 | 2, 0x00 << 3 | 3,
		0x00 << 3 | 4, 0x00 << 3 | 5, 0x20 << 3 | 5, 0x00 << 3 | 6, 0x00 << 3 | 7,
		0x01 << 3 | 0, 0x01 << 3 | 1, 0x01 << 3 | 3, 0x01 << 3 | 4, 0x01 << 3 | 5,
		0x01 << 3 | 6, 0x01 << 3 | 7, 0x10 << 3 | 4,
	};
	static const uint16_t op32_k[] = {
		0x00 << 3 | 0, 0x20 << 3 | 0, 0x00 << 3 | 1, 0x00 << 3 | 5, 0x20 << 3 | 5,
		0x01 << 3 | 0, 0x01 << 3 | 4, 0x01 << 3 | 5, 0x01 << 3 | 6, 0x01 << 3 | 7,
	};
	static const uint8_t imm_f3[] = {0, 2, 3, 4, 6, 7, 1, 5};
	unsigned rd = A0 + (unsigned)(rnd(st) % 6), rs1 = A0 + (unsigned)(rnd(st) % 6);
	unsigned rs2 = A0 + (unsigned)(rnd(st) % 6), k, f3;
	int32_t imm = (int32_t)(rnd(st) & 0xfff) - 2048;

	if (rnd(st) % 8 == 0) /* x0 operands: moves, identities */
		rs1 = 0;
	if (rnd(st) % 8 == 0)
		rs2 = 0;
	switch (rnd(st) % 10) {
	case 0: /* the same register on both sides */
		rs1 = rs2 = rd;
		/* fall through */
	case 1:
	case 2:
		k = op_k[rnd(st) % (sizeof(op_k) / sizeof(op_k[0]))];
		return r_type(0x33, rd, k & 7, rs1, rd == rs1 ? rs2 : rd, k >> 3);
	case 3:
		k = op32_k[rnd(st) % (sizeof(op32_k) / sizeof(op32_k[0]))];
		return r_type(0x3b, rd, k & 7, rs1, rs2, k >> 3);
	case 4:
		f3 = imm_f3[rnd(st) % sizeof(imm_f3)];
		if (f3 == 1 || f3 == 5)
			imm = (int32_t)(rnd(st) % 64) | (f3 == 5 && (rnd(st) & 1) ? 0x400 : 0);
		return i_type(0x13, rd, f3, rnd(st) & 1 ? rd : rs1, imm);
	case 5:
		f3 = (unsigned)(rnd(st) % 3);
		if (f3)
			imm = (int32_t)(rnd(st) % 32) | (f3 == 2 && (rnd(st) & 1) ? 0x400 : 0);
		else if (rnd(st) & 1)
			imm = 0; /* sext.w */
		return i_type(0x1b, rd, f3 ? 4 * f3 - 3 : 0, rs1, imm); /* addiw, slliw, srliw/sraiw */
	case 6: /* loads, misaligned ones take the slow path */
		return i_type(0x03, rd, (unsigned)(rnd(st) % 7), S0, (int32_t)(rnd(st) % 200));
	case 7: /* stores of each size */
		return s_type((unsigned)(rnd(st) % 4), S0, rs2, (int32_t)(rnd(st) % 200));
	case 8:
		return 0x17u | rd << 7 | (uint32_t)(rnd(st) & 0xfffff000u); /* auipc */
	default:
		return i_type(0x13, rd, 0, rs1, imm);
	}
}

static void test_cached_registers(void **state)
{
	struct jc *f = *state;
	uint64_t st = 0x243f6a8885a308d3ULL;

	for (unsigned round = 0; round < 400; round++) {
		unsigned n = 8 + (unsigned)(rnd(&st) % 40);

		f->len = 0;
		for (unsigned i = 0; i < n; i++)
			jc_emit(f, cached_op(&st));
		jc_emit(f, ECALL);
		jc_load(f);
		for (unsigned r = A0; r <= A0 + 5; r++) {
			static const uint64_t edge[] = {
				0, 1, UINT64_MAX, 1ULL << 63, 0xffffffff80000000ULL, 0xffffffffULL,
				0x7fffffffULL, 0x80000000ULL,
			};
			uint64_t v = rnd(&st) >> (rnd(&st) % 64);

			if (rnd(&st) & 1)
				v = edge[rnd(&st) % (sizeof(edge) / sizeof(edge[0]))];
			for (unsigned k = 0; k < 2; k++)
				ah_set(&f->m[k], 0, ACCEL_REG_X(r), v);
		}
		jc_run_both(f);
		jc_compare(f);
	}
	jc_check_translated(f);
}

/* One random A-extension op (or a fence, a plain store) on s0's area through s1. */
static void atomic_op(struct jc *f, uint64_t *st)
{
	static const uint8_t f5s[] = {0x00, 0x01, 0x02, 0x03, 0x04, 0x08, 0x0c, 0x10, 0x14, 0x18,
				      0x1c, 0x02, 0x03, 0x02, 0x03};
	unsigned f3 = 2 + (unsigned)(rnd(st) & 1), f5 = f5s[rnd(st) % sizeof(f5s)];
	unsigned rd = A0 + (unsigned)(rnd(st) % 6), rs2 = A0 + (unsigned)(rnd(st) % 6);
	int32_t off = (int32_t)(rnd(st) % 24) * 8 + (f3 == 2 && (rnd(st) & 1) ? 4 : 0);

	if (rnd(st) % 40 == 0)
		off += 2; /* misaligned: a store/AMO or load address misaligned trap */
	switch (rnd(st) % 8) {
	case 0:
		jc_emit(f, s_type(f3, S0, rs2, off)); /* sw/sd: may break a reservation's value */
		return;
	case 1:
		jc_emit(f, 0x0330000fu); /* fence rw,rw */
		return;
	default:
		break;
	}
	jc_emit(f, i_type(0x13, S1, 0, S0, off));
	if (f5 == 0x02)
		rs2 = 0;
	jc_emit(f, f5 << 27 | (unsigned)(rnd(st) & 3) << 25 | rs2 << 20 | S1 << 15 | f3 << 12 |
		     rd << 7 | 0x2f);
	if (f5 == 0x02 && (rnd(st) & 3)) { /* mostly an SC of the same address */
		if (rnd(st) % 3 == 0)
			jc_emit(f, s_type(f3, S1, rs2, 0));
		jc_emit(f, 0x03u << 27 | A0 << 20 | S1 << 15 | f3 << 12 | A1 << 7 | 0x2f);
	}
}

static uint32_t amo(unsigned f5, unsigned f3, unsigned rd, unsigned rs1, unsigned rs2)
{
	return f5 << 27 | rs2 << 20 | rs1 << 15 | f3 << 12 | rd << 7 | 0x2f;
}

/* LR/SC outcomes in one block: success, no reservation, another address, a changed value. */
static void test_lr_sc(void **state)
{
	struct jc *f = *state;

	f->len = 0;
	jc_emit(f, i_type(0x13, S1, 0, S0, 64));
	jc_emit(f, amo(0x02, 3, A0, S1, 0));       /* lr.d a0, (s1) */
	jc_emit(f, i_type(0x13, A0, 0, A0, 1));
	jc_emit(f, amo(0x03, 3, A1, S1, A0));      /* sc.d a1, a0, (s1): 0 */
	jc_emit(f, amo(0x03, 3, A2, S1, A0));      /* again, no reservation: 1 */
	jc_emit(f, amo(0x02, 2, A0, S1, 0));       /* lr.w a0, (s1) */
	jc_emit(f, s_type(2, S1, A3, 0));          /* sw a3, 0(s1): another value */
	jc_emit(f, amo(0x03, 2, A4, S1, A0));      /* sc.w a4: 1 */
	jc_emit(f, amo(0x02, 3, A0, S1, 0));       /* lr.d a0, (s1) */
	jc_emit(f, i_type(0x13, T1, 0, S1, 8));
	jc_emit(f, amo(0x03, 3, A5, T1, A0));      /* sc.d a5 to s1 + 8: 1 */
	jc_emit(f, amo(0x02, 2, A0, S1, 0));       /* lr.w, then sc.w of the same value: 0 */
	jc_emit(f, amo(0x03, 2, T2, S1, A0));
	jc_emit(f, ECALL);
	jc_load(f);
	jc_run_both(f);
	jc_compare(f);
	assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_X(A1)), 0);
	assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_X(A2)), 1);
	assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_X(A4)), 1);
	assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_X(A5)), 1);
	assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_X(T2)), 0);
	jc_check_translated(f);
}

static void test_atomics(void **state)
{
	struct jc *f = *state;
	uint64_t st = 0x13198a2e03707344ULL;

	for (unsigned round = 0; round < 400; round++) {
		unsigned n = 4 + (unsigned)(rnd(&st) % 24);

		f->len = 0;
		for (unsigned i = 0; i < n; i++)
			atomic_op(f, &st);
		jc_emit(f, ECALL);
		jc_load(f);
		for (unsigned r = A0; r <= A0 + 5; r++) {
			uint64_t v = rnd(&st) >> (rnd(&st) % 64);

			for (unsigned k = 0; k < 2; k++)
				ah_set(&f->m[k], 0, ACCEL_REG_X(r), v);
		}
		jc_run_both(f);
		jc_compare(f);
		assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_CSR(CSR_MEPC)),
				 ah_get(&f->m[1], 0, ACCEL_REG_CSR(CSR_MEPC)));
	}
	jc_check_translated(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_loops_match_interpreter, jc_setup, jc_teardown),
		cmocka_unit_test_setup_teardown(test_loop_budget, jc_setup, jc_teardown),
		cmocka_unit_test_setup_teardown(test_loop_tlb_hits, jc_setup, jc_teardown),
		cmocka_unit_test_setup_teardown(test_loop_rewrites_itself, jc_setup, jc_teardown),
		cmocka_unit_test_setup_teardown(test_cached_registers, jc_setup, jc_teardown),
		cmocka_unit_test_setup_teardown(test_loop_with_call, jc_setup, jc_teardown),
		cmocka_unit_test_setup_teardown(test_atomics, jc_setup, jc_teardown),
		cmocka_unit_test_setup_teardown(test_lr_sc, jc_setup, jc_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
