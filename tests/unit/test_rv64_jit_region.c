/*
 * test_rv64_jit_region.c - blocks that span more than a straight run of instructions
 * (src/accel/rv64/jit.c): a JAL a little ahead becomes a jump inside the block (both arms of
 * an if-else, a loop entered at its condition), other in-page JALs are followed (a backward
 * one to a loop head, a call), and a branch back into the block takes the loop inline. Each
 * program runs on a translating and an interpreting machine from the same state and must end
 * identically (registers, pc, minstret, memory); besides:
 *   - a JALR that leaves with a branch target right after it: the exit and the block at the
 *     target count instructions and hand over registers exactly (minstret, a3 and a4);
 *   - a guest register cached in rsi is never one a block needs while its loads and stores
 *     use rsi for addresses;
 *   - the loops still check the instruction budget.
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

static uint32_t li(unsigned rd, int32_t v)
{
	return i_type(0x13, rd, 0, 0, v);
}

static uint32_t addi(unsigned rd, unsigned rs1, int32_t v)
{
	return i_type(0x13, rd, 0, rs1, v);
}

static uint32_t jalr(unsigned rd, unsigned rs1, int32_t v)
{
	return i_type(0x67, rd, 0, rs1, v);
}

/*
 * t0 = n; top: t1 = t0 & 1; beqz t1, else; a1 += 3; sw a1; j join; else: a2 += 5; lw a3;
 * join: a4 += t0; t0--; bnez t0, top. The j skips the else arm.
 */
static void gen_if_else(struct jc *f, int32_t n)
{
	unsigned top, br, jmp, els, join;

	f->len = 0;
	jc_emit(f, li(T0, n));
	top = jc_emit(f, i_type(0x13, T1, 7, T0, 1));
	br = jc_emit(f, 0);
	jc_emit(f, addi(A1, A1, 3));
	jc_emit(f, s_type(2, S0, A1, 0));
	jmp = jc_emit(f, 0);
	els = jc_emit(f, addi(A2, A2, 5));
	jc_emit(f, i_type(0x03, A3, 2, S0, 4));
	join = jc_emit(f, r_type(0x33, A4, 0, A4, T0, 0));
	jc_emit(f, addi(T0, T0, -1));
	jc_emit(f, b_to(1, T0, 0, f->len, top));
	jc_emit(f, ECALL);
	f->code[br] = b_to(0, T1, 0, br, els);
	f->code[jmp] = jal_to(0, jmp, join);
}

/* t0 = n; j cond; body: a1 += 1; sw a1, 8(s0); t0--; cond: bnez t0, body. */
static void gen_enter_at_cond(struct jc *f, int32_t n)
{
	unsigned jmp, body;

	f->len = 0;
	jc_emit(f, li(T0, n));
	jmp = jc_emit(f, 0);
	body = jc_emit(f, addi(A1, A1, 1));
	jc_emit(f, s_type(3, S0, A1, 8));
	jc_emit(f, addi(T0, T0, -1));
	f->code[jmp] = jal_to(0, jmp, f->len);
	jc_emit(f, b_to(1, T0, 0, f->len, body));
	jc_emit(f, ECALL);
}

/*
 * Jumps the block follows: t0 = n; j far (over 256 bytes ahead); head: a1 += 7; jal ra, func;
 * t0--; beqz t0, out; j far; out: ecall; ...; far: a2 += a1; a3 ^= 9; j head (back, before the
 * block's start); func: a5 += 1; ret.
 */
static void gen_follow(struct jc *f, int32_t n)
{
	unsigned j1, head, call, out_br, j2, out, far, func;

	f->len = 0;
	jc_emit(f, li(T0, n));
	j1 = jc_emit(f, 0);
	head = jc_emit(f, addi(A1, A1, 7));
	call = jc_emit(f, 0);
	jc_emit(f, addi(T0, T0, -1));
	out_br = jc_emit(f, 0);
	j2 = jc_emit(f, 0);
	out = jc_emit(f, ECALL);
	while (f->len < 100)
		jc_emit(f, ECALL);
	far = jc_emit(f, r_type(0x33, A2, 0, A2, A1, 0));
	jc_emit(f, i_type(0x13, A3, 4, A3, 9));
	jc_emit(f, jal_to(0, f->len, head));
	func = jc_emit(f, addi(A5, A5, 1));
	jc_emit(f, jalr(0, RA, 0));
	f->code[j1] = jal_to(0, j1, far);
	f->code[call] = jal_to(RA, call, func);
	f->code[out_br] = b_to(0, T0, 0, out_br, out);
	f->code[j2] = jal_to(0, j2, far);
}

/* Small, budget-sized and long loops of each shape end as the interpreter's do. */
static void test_shapes_match_interpreter(void **state)
{
	struct jc *f = *state;
	static const int32_t n[] = {1, 2, 7, 2000};

	for (unsigned i = 0; i < sizeof(n) / sizeof(n[0]); i++) {
		gen_if_else(f, n[i]);
		jc_run_compare(f);
		gen_enter_at_cond(f, n[i]);
		jc_run_compare(f);
		gen_follow(f, n[i]);
		jc_run_compare(f);
	}
	jc_check_translated(f);
}

/*
 * auipc ra; addi ra -> the ecall; t0 = n; top: t0--; bnez t0, more; jalr x0, 0(ra) (leaves);
 * more: a3 += 5; a4 += a3; sw a4, 16(s0); j top; ecall. The jalr leaves the block; the code
 * after it, reached by the branch, loops back into it: a3 and a4, written only there, and
 * minstret must match the interpreter's.
 */
static void gen_exit_in_middle(struct jc *f, int32_t n)
{
	unsigned auipc, top, br, more, j, out;

	f->len = 0;
	auipc = jc_emit(f, 0x17u | RA << 7);
	jc_emit(f, 0);
	jc_emit(f, li(T0, n));
	top = jc_emit(f, addi(T0, T0, -1));
	br = jc_emit(f, 0);
	jc_emit(f, jalr(0, RA, 0));
	more = jc_emit(f, addi(A3, A3, 5));
	jc_emit(f, r_type(0x33, A4, 0, A4, A3, 0));
	jc_emit(f, s_type(3, S0, A4, 16));
	j = jc_emit(f, 0);
	out = jc_emit(f, ECALL);
	f->code[auipc + 1] = addi(RA, RA, (int32_t)(4 * (out - auipc)));
	f->code[br] = b_to(1, T0, 0, br, more);
	f->code[j] = jal_to(0, j, top);
}

static void test_exit_in_middle(void **state)
{
	struct jc *f = *state;
	static const int32_t n[] = {1, 2, 3, 1500};

	for (unsigned i = 0; i < sizeof(n) / sizeof(n[0]); i++) {
		gen_exit_in_middle(f, n[i]);
		jc_run_compare(f);
		assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_X(A3)),
				 0x1000 * A3 + 5 + 5 * (uint64_t)(n[i] - 1));
	}
	jc_check_translated(f);
}

/*
 * Eleven registers used four times each before a jalr that leaves (no load or store up to
 * there, so rsi may cache one of them), then code after it that a branch reaches, with loads
 * and stores, using them again and looping back.
 */
static void test_rsi_past_exit(void **state)
{
	struct jc *f = *state;
	static const uint8_t regs[] = {T1, T2, S1, A0, A1, A2, A3, A4, A5, 16, 17};
	unsigned auipc, top, br, more, j, out;

	f->len = 0;
	auipc = jc_emit(f, 0x17u | RA << 7);
	jc_emit(f, 0);
	jc_emit(f, li(T0, 40));
	top = jc_emit(f, addi(T0, T0, -1));
	for (unsigned r = 0; r < sizeof(regs); r++) {
		jc_emit(f, addi(regs[r], regs[r], (int32_t)r + 1));
		jc_emit(f, addi(regs[r], regs[r], 3));
	}
	br = jc_emit(f, 0);
	jc_emit(f, jalr(0, RA, 0));
	more = jc_emit(f, s_type(3, S0, A0, 24));
	jc_emit(f, i_type(0x03, 16, 3, S0, 32));
	for (unsigned r = 0; r < sizeof(regs); r++)
		jc_emit(f, r_type(0x33, regs[r], 0, regs[r], regs[(r + 1) % sizeof(regs)], 0));
	jc_emit(f, s_type(3, S0, A5, 40));
	j = jc_emit(f, 0);
	out = jc_emit(f, ECALL);
	f->code[auipc + 1] = addi(RA, RA, (int32_t)(4 * (out - auipc)));
	f->code[br] = b_to(1, T0, 0, br, more);
	f->code[j] = jal_to(0, j, top);
	jc_run_compare(f);
	jc_check_translated(f);
}

/*
 * Endless loops of the new shapes (t0 counts down from -2^31) run through rv64_exec() with a
 * budget: each call must come back after about that many instructions (overshooting by less
 * than one block), as interrupts are taken only between rv64_exec() calls.
 */
static void test_budget(void **state)
{
	struct jc *f = *state;

	for (unsigned shape = 0; shape < 3; shape++) {
		if (shape == 0)
			gen_if_else(f, 1);
		else if (shape == 1)
			gen_enter_at_cond(f, 1);
		else
			gen_exit_in_middle(f, 1);
		f->code[shape == 2 ? 2 : 0] = lui(T0, 0x80000);
		jc_load(f);
		for (unsigned k = 0; k < 2; k++) {
			struct accel_harness *m = &f->m[k];
			static const unsigned budgets[] = {100, 1334, 5036, 200000};

			for (unsigned i = 0; i < sizeof(budgets) / sizeof(budgets[0]); i++) {
				uint64_t before = ah_get(m, 0, ACCEL_REG_CSR(CSR_MINSTRET)), ran;

				assert_int_equal(rv64_exec(jc_cpu(m), budgets[i]), RV64_STOP_BUDGET);
				ran = ah_get(m, 0, ACCEL_REG_CSR(CSR_MINSTRET)) - before;
				if (ran < budgets[i] || ran > budgets[i] + 64)
					fail_msg("shape %u machine %u: budget %u ran %llu instructions",
						 shape, k, budgets[i], (unsigned long long)ran);
			}
		}
	}
	jc_check_translated(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_shapes_match_interpreter, jc_setup, jc_teardown),
		cmocka_unit_test_setup_teardown(test_exit_in_middle, jc_setup, jc_teardown),
		cmocka_unit_test_setup_teardown(test_rsi_past_exit, jc_setup, jc_teardown),
		cmocka_unit_test_setup_teardown(test_budget, jc_setup, jc_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
