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
#include "kumo/accel.h"
#include "kumo/memmap.h"

#define RAM_BASE 0x80000000ULL
#define RAM_SIZE (1ULL << 20)
#define TRAP (RAM_BASE + 0x800)
#define CODE (RAM_BASE + 0x1000)
#define DATA (RAM_BASE + 0x10000)
#define DATA_SIZE 256

#define ECALL 0x00000073u
#define CSR_MTVEC 0x305
#define CSR_MEPC 0x341
#define CSR_MCAUSE 0x342
#define CSR_MINSTRET 0xb02
#define CSR_MSTATUS 0x300
#define MSTATUS_FS_INITIAL 0x2000ULL

enum { RA = 1, T0 = 5, T1 = 6, T2 = 7, S0 = 8, S1 = 9, A0 = 10, A1 = 11, A2 = 12, A3 = 13, A4 = 14, A5 = 15 };

struct machine {
	uint8_t *ram;
	struct memmap *mm;
	struct accel_vm *vm;
	struct accel_vcpu *cpu;
};

struct fx {
	struct machine m[2]; /* [0] translated, [1] interpreted */
	uint32_t code[256];
	unsigned len; /* words in code[] */
};

static const struct accel_ops *ops = &accel_rv64_ops;

static void machine_new(struct machine *m, bool jit)
{
	struct accel_vm_config cfg = {0};

	setenv("KUMO_JIT", jit ? "1" : "0", 1);
	m->ram = calloc(1, RAM_SIZE);
	assert_non_null(m->ram);
	m->mm = memmap_new();
	assert_non_null(m->mm);
	assert_int_equal(memmap_add_ram(m->mm, RAM_BASE, RAM_SIZE, m->ram), 0);
	cfg.ram = m->ram;
	cfg.ram_base = RAM_BASE;
	cfg.ram_size = RAM_SIZE;
	cfg.memmap = m->mm;
	cfg.ncpus = 1;
	cfg.ecall_exit_mask = 1u << 3;
	assert_int_equal(ops->vm_new(&cfg, &m->vm), 0);
	assert_int_equal(ops->vcpu_new(m->vm, 0, &m->cpu), 0);
	unsetenv("KUMO_JIT");
}

static void machine_free(struct machine *m)
{
	ops->vcpu_free(m->cpu);
	ops->vm_free(m->vm);
	memmap_free(m->mm);
	free(m->ram);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	machine_new(&f->m[0], true);
	machine_new(&f->m[1], false);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	machine_free(&f->m[0]);
	machine_free(&f->m[1]);
	free(f);
	return 0;
}

static struct rv64_cpu *cpu_of(struct machine *m)
{
	return (struct rv64_cpu *)m->cpu;
}

/* Appends an instruction; returns its word index. */
static unsigned emit(struct fx *f, uint32_t insn)
{
	assert_true(f->len < sizeof(f->code) / sizeof(f->code[0]));
	f->code[f->len] = insn;
	return f->len++;
}

static uint32_t i_type(unsigned op, unsigned rd, unsigned f3, unsigned rs1, int32_t imm)
{
	return ((uint32_t)imm & 0xfff) << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op;
}

static uint32_t r_type(unsigned op, unsigned rd, unsigned f3, unsigned rs1, unsigned rs2,
		       unsigned f7)
{
	return f7 << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op;
}

static uint32_t s_type(unsigned f3, unsigned rs1, unsigned rs2, int32_t imm)
{
	uint32_t i = (uint32_t)imm;

	return ((i >> 5) & 0x7f) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | (i & 31) << 7 | 0x23;
}

/* A branch at word `at` to word `to` (unpriv 20191213 §2.5). */
static uint32_t b_to(unsigned f3, unsigned rs1, unsigned rs2, unsigned at, unsigned to)
{
	uint32_t i = (uint32_t)(4 * ((int32_t)to - (int32_t)at));

	return ((i >> 12) & 1) << 31 | ((i >> 5) & 0x3f) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 |
	       ((i >> 1) & 0xf) << 8 | ((i >> 11) & 1) << 7 | 0x63;
}

static uint32_t jal_to(unsigned rd, unsigned at, unsigned to)
{
	uint32_t i = (uint32_t)(4 * ((int32_t)to - (int32_t)at));

	return ((i >> 20) & 1) << 31 | ((i >> 1) & 0x3ff) << 21 | ((i >> 11) & 1) << 20 |
	       ((i >> 12) & 0xff) << 12 | rd << 7 | 0x6f;
}

static uint32_t lui(unsigned rd, uint32_t hi20)
{
	return hi20 << 12 | rd << 7 | 0x37;
}

static void set(struct machine *m, uint32_t id, uint64_t v)
{
	assert_int_equal(ops->set_reg(m->cpu, id, v), 0);
}

static uint64_t get(struct machine *m, uint32_t id)
{
	uint64_t v = 0;

	assert_int_equal(ops->get_reg(m->cpu, id, &v), 0);
	return v;
}

/* The program and one start state in both machines. */
static void load(struct fx *f)
{
	for (unsigned k = 0; k < 2; k++) {
		struct machine *m = &f->m[k];

		memcpy(m->ram + (CODE - RAM_BASE), f->code, 4 * f->len);
		for (unsigned i = 0; i < DATA_SIZE; i++)
			m->ram[DATA - RAM_BASE + i] = (uint8_t)(i * 37 + 11);
		memcpy(m->ram + (TRAP - RAM_BASE), &(uint32_t){ECALL}, 4);
		for (unsigned i = 1; i < 32; i++)
			set(m, ACCEL_REG_X(i), 0x1000 * i + 5);
		set(m, ACCEL_REG_X(S0), DATA);
		set(m, ACCEL_REG_CSR(CSR_MSTATUS), MSTATUS_FS_INITIAL);
		set(m, ACCEL_REG_CSR(CSR_MTVEC), TRAP);
		set(m, ACCEL_REG_PC, CODE);
	}
}

static void run_both(struct fx *f)
{
	for (unsigned k = 0; k < 2; k++) {
		assert_int_equal(ops->vcpu_run(f->m[k].cpu), 0);
		assert_int_equal(ops->vcpu_run_state(f->m[k].cpu)->exit_reason, ACCEL_EXIT_SBI);
	}
}

static void compare(struct fx *f)
{
	struct machine *a = &f->m[0], *b = &f->m[1];

	for (unsigned i = 0; i < 32; i++) {
		uint64_t x = get(a, ACCEL_REG_X(i)), y = get(b, ACCEL_REG_X(i));

		if (x != y)
			fail_msg("x%u: translated %#llx, interpreted %#llx", i,
				 (unsigned long long)x, (unsigned long long)y);
	}
	assert_int_equal(get(a, ACCEL_REG_PC), get(b, ACCEL_REG_PC));
	assert_int_equal(get(a, ACCEL_REG_CSR(CSR_MINSTRET)), get(b, ACCEL_REG_CSR(CSR_MINSTRET)));
	assert_int_equal(get(a, ACCEL_REG_CSR(CSR_MCAUSE)), get(b, ACCEL_REG_CSR(CSR_MCAUSE)));
	assert_memory_equal(a->ram + (DATA - RAM_BASE), b->ram + (DATA - RAM_BASE), DATA_SIZE);
}

static void check_translated(struct fx *f)
{
#ifdef RV64_JIT
	assert_non_null(cpu_of(&f->m[0])->jit);
	assert_true(cpu_of(&f->m[0])->jit->translated > 0);
#else
	(void)f;
#endif
}


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

static void run_compare(struct fx *f)
{
	load(f);
	run_both(f);
	compare(f);
}

/*
 * t0 = n; top: t1 = t0 & 1; beqz t1, else; a1 += 3; sw a1; j join; else: a2 += 5; lw a3;
 * join: a4 += t0; t0--; bnez t0, top. The j skips the else arm.
 */
static void gen_if_else(struct fx *f, int32_t n)
{
	unsigned top, br, jmp, els, join;

	f->len = 0;
	emit(f, li(T0, n));
	top = emit(f, i_type(0x13, T1, 7, T0, 1));
	br = emit(f, 0);
	emit(f, addi(A1, A1, 3));
	emit(f, s_type(2, S0, A1, 0));
	jmp = emit(f, 0);
	els = emit(f, addi(A2, A2, 5));
	emit(f, i_type(0x03, A3, 2, S0, 4));
	join = emit(f, r_type(0x33, A4, 0, A4, T0, 0));
	emit(f, addi(T0, T0, -1));
	emit(f, b_to(1, T0, 0, f->len, top));
	emit(f, ECALL);
	f->code[br] = b_to(0, T1, 0, br, els);
	f->code[jmp] = jal_to(0, jmp, join);
}

/* t0 = n; j cond; body: a1 += 1; sw a1, 8(s0); t0--; cond: bnez t0, body. */
static void gen_enter_at_cond(struct fx *f, int32_t n)
{
	unsigned jmp, body;

	f->len = 0;
	emit(f, li(T0, n));
	jmp = emit(f, 0);
	body = emit(f, addi(A1, A1, 1));
	emit(f, s_type(3, S0, A1, 8));
	emit(f, addi(T0, T0, -1));
	f->code[jmp] = jal_to(0, jmp, f->len);
	emit(f, b_to(1, T0, 0, f->len, body));
	emit(f, ECALL);
}

/*
 * Jumps the block follows: t0 = n; j far (over 256 bytes ahead); head: a1 += 7; jal ra, func;
 * t0--; beqz t0, out; j far; out: ecall; ...; far: a2 += a1; a3 ^= 9; j head (back, before the
 * block's start); func: a5 += 1; ret.
 */
static void gen_follow(struct fx *f, int32_t n)
{
	unsigned j1, head, call, out_br, j2, out, far, func;

	f->len = 0;
	emit(f, li(T0, n));
	j1 = emit(f, 0);
	head = emit(f, addi(A1, A1, 7));
	call = emit(f, 0);
	emit(f, addi(T0, T0, -1));
	out_br = emit(f, 0);
	j2 = emit(f, 0);
	out = emit(f, ECALL);
	while (f->len < 100)
		emit(f, ECALL);
	far = emit(f, r_type(0x33, A2, 0, A2, A1, 0));
	emit(f, i_type(0x13, A3, 4, A3, 9));
	emit(f, jal_to(0, f->len, head));
	func = emit(f, addi(A5, A5, 1));
	emit(f, jalr(0, RA, 0));
	f->code[j1] = jal_to(0, j1, far);
	f->code[call] = jal_to(RA, call, func);
	f->code[out_br] = b_to(0, T0, 0, out_br, out);
	f->code[j2] = jal_to(0, j2, far);
}

/* Small, budget-sized and long loops of each shape end as the interpreter's do. */
static void test_shapes_match_interpreter(void **state)
{
	struct fx *f = *state;
	static const int32_t n[] = {1, 2, 7, 2000};

	for (unsigned i = 0; i < sizeof(n) / sizeof(n[0]); i++) {
		gen_if_else(f, n[i]);
		run_compare(f);
		gen_enter_at_cond(f, n[i]);
		run_compare(f);
		gen_follow(f, n[i]);
		run_compare(f);
	}
	check_translated(f);
}

/*
 * auipc ra; addi ra -> the ecall; t0 = n; top: t0--; bnez t0, more; jalr x0, 0(ra) (leaves);
 * more: a3 += 5; a4 += a3; sw a4, 16(s0); j top; ecall. The jalr leaves the block; the code
 * after it, reached by the branch, loops back into it: a3 and a4, written only there, and
 * minstret must match the interpreter's.
 */
static void gen_exit_in_middle(struct fx *f, int32_t n)
{
	unsigned auipc, top, br, more, j, out;

	f->len = 0;
	auipc = emit(f, 0x17u | RA << 7);
	emit(f, 0);
	emit(f, li(T0, n));
	top = emit(f, addi(T0, T0, -1));
	br = emit(f, 0);
	emit(f, jalr(0, RA, 0));
	more = emit(f, addi(A3, A3, 5));
	emit(f, r_type(0x33, A4, 0, A4, A3, 0));
	emit(f, s_type(3, S0, A4, 16));
	j = emit(f, 0);
	out = emit(f, ECALL);
	f->code[auipc + 1] = addi(RA, RA, (int32_t)(4 * (out - auipc)));
	f->code[br] = b_to(1, T0, 0, br, more);
	f->code[j] = jal_to(0, j, top);
}

static void test_exit_in_middle(void **state)
{
	struct fx *f = *state;
	static const int32_t n[] = {1, 2, 3, 1500};

	for (unsigned i = 0; i < sizeof(n) / sizeof(n[0]); i++) {
		gen_exit_in_middle(f, n[i]);
		run_compare(f);
		assert_int_equal(get(&f->m[0], ACCEL_REG_X(A3)), 0x1000 * A3 + 5 + 5 * (uint64_t)(n[i] - 1));
	}
	check_translated(f);
}

/*
 * Eleven registers used four times each before a jalr that leaves (no load or store up to
 * there, so rsi may cache one of them), then code after it that a branch reaches, with loads
 * and stores, using them again and looping back.
 */
static void test_rsi_past_exit(void **state)
{
	struct fx *f = *state;
	static const uint8_t regs[] = {T1, T2, S1, A0, A1, A2, A3, A4, A5, 16, 17};
	unsigned auipc, top, br, more, j, out;

	f->len = 0;
	auipc = emit(f, 0x17u | RA << 7);
	emit(f, 0);
	emit(f, li(T0, 40));
	top = emit(f, addi(T0, T0, -1));
	for (unsigned r = 0; r < sizeof(regs); r++) {
		emit(f, addi(regs[r], regs[r], (int32_t)r + 1));
		emit(f, addi(regs[r], regs[r], 3));
	}
	br = emit(f, 0);
	emit(f, jalr(0, RA, 0));
	more = emit(f, s_type(3, S0, A0, 24));
	emit(f, i_type(0x03, 16, 3, S0, 32));
	for (unsigned r = 0; r < sizeof(regs); r++)
		emit(f, r_type(0x33, regs[r], 0, regs[r], regs[(r + 1) % sizeof(regs)], 0));
	emit(f, s_type(3, S0, A5, 40));
	j = emit(f, 0);
	out = emit(f, ECALL);
	f->code[auipc + 1] = addi(RA, RA, (int32_t)(4 * (out - auipc)));
	f->code[br] = b_to(1, T0, 0, br, more);
	f->code[j] = jal_to(0, j, top);
	run_compare(f);
	check_translated(f);
}

/*
 * Endless loops of the new shapes (t0 counts down from -2^31) run through rv64_exec() with a
 * budget: each call must come back after about that many instructions (overshooting by less
 * than one block), as interrupts are taken only between rv64_exec() calls.
 */
static void test_budget(void **state)
{
	struct fx *f = *state;

	for (unsigned shape = 0; shape < 3; shape++) {
		if (shape == 0)
			gen_if_else(f, 1);
		else if (shape == 1)
			gen_enter_at_cond(f, 1);
		else
			gen_exit_in_middle(f, 1);
		f->code[shape == 2 ? 2 : 0] = lui(T0, 0x80000);
		load(f);
		for (unsigned k = 0; k < 2; k++) {
			struct machine *m = &f->m[k];
			static const unsigned budgets[] = {100, 1334, 5036, 200000};

			for (unsigned i = 0; i < sizeof(budgets) / sizeof(budgets[0]); i++) {
				uint64_t before = get(m, ACCEL_REG_CSR(CSR_MINSTRET)), ran;

				assert_int_equal(rv64_exec(cpu_of(m), budgets[i]), RV64_STOP_BUDGET);
				ran = get(m, ACCEL_REG_CSR(CSR_MINSTRET)) - before;
				if (ran < budgets[i] || ran > budgets[i] + 64)
					fail_msg("shape %u machine %u: budget %u ran %llu instructions",
						 shape, k, budgets[i], (unsigned long long)ran);
			}
		}
	}
	check_translated(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_shapes_match_interpreter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exit_in_middle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rsi_past_exit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_budget, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
