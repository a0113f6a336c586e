/*
 * test_rv64_jit_csr.c - CSR instructions in translated code (jit.c tr_csr/jit_csr) must do
 * what the interpreter does. Each test runs a program on a machine with KUMO_JIT=1 and one
 * with KUMO_JIT=0 from the same state and compares registers, pc, trap CSRs and minstret:
 *   - random blocks mixing CSR reads and writes (register and immediate forms) with ALU ops,
 *     minstret reads among them (the interpreter's, with instret brought up to date), and
 *     interrupt enables with nothing pending;
 *   - a CSRS that enables a pending interrupt in the middle of a block: the trap is taken
 *     right after it (mepc = the next instruction), not at the block's end;
 *   - a CSRW of satp in the middle of a block that maps the code's own virtual page to other
 *     code: the next instruction comes through the new translation (priv 1.12 §4.1.11);
 *   - a CSR access that is illegal at the current privilege traps with the instruction in
 *     mtval and nothing written;
 *   - SFENCE.VMA (jit.c tr_sfence) after a store that remaps the block's own page: the next
 *     instruction comes through the new mapping; in U-mode it is illegal.
 * Programs end in ECALL, which leaves vcpu_run() (ecall_exit_mask covers M-mode); traps go to
 * an mtvec that holds an ECALL.
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
#include "accel_harness.h"
#include "kumo/accel.h"

#define RAM_BASE 0x80000000ULL
#define RAM_SIZE (1ULL << 21)
#define TRAP (RAM_BASE + 0x800)
#define CODE (RAM_BASE + 0x1000)
#define ALT (RAM_BASE + 0x2000) /* the code page's other physical page (satp test) */
#define PT (RAM_BASE + 0x10000) /* page tables: three 4 KiB levels */
#define CODE_MAX 0x1000

#define ECALL 0x00000073u
#define CSR_SSCRATCH 0x140
#define CSR_SATP 0x180
#define CSR_MSTATUS 0x300
#define CSR_MIE 0x304
#define CSR_MTVEC 0x305
#define CSR_MSCRATCH 0x340
#define CSR_MEPC 0x341
#define CSR_MCAUSE 0x342
#define CSR_MTVAL 0x343
#define CSR_MIP 0x344
#define CSR_MINSTRET 0xb02
#define MSTATUS_MIE 0x8ULL
#define IRQ_SSI 0x2ULL

struct fx {
	struct accel_harness m[2]; /* [0] translated, [1] interpreted */
	uint8_t code[CODE_MAX];
	unsigned len;
	uint64_t rng;
};

static int setup(void **state)
{
	const struct ah_config c = {.ram_base = RAM_BASE, .ram_size = RAM_SIZE, .ncpus = 1,
				    .ecall_exit_mask = 1u << 3, /* M-mode ECALLs exit */
				    .jit = AH_JIT_ON};
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	ah_init_pair(f->m, &c);
	f->rng = 0x243f6a8885a308d3ULL;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	ah_fini_pair(f->m);
	free(f);
	return 0;
}

static uint64_t rnd(struct fx *f)
{
	return ah_rnd(&f->rng);
}

static unsigned pick(struct fx *f, unsigned n)
{
	return ah_pick(&f->rng, n);
}

static void emit32(struct fx *f, uint32_t v)
{
	assert_true(f->len + 4 <= CODE_MAX);
	memcpy(f->code + f->len, &v, 4);
	f->len += 4;
}

static uint32_t i_type(unsigned op, unsigned rd, unsigned f3, unsigned rs1, int32_t imm)
{
	return ((uint32_t)imm & 0xfff) << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op;
}

static uint32_t csr_insn(unsigned csr, unsigned f3, unsigned rd, unsigned rs1)
{
	return csr << 20 | rs1 << 15 | f3 << 12 | rd << 7 | 0x73;
}

/* The program at CODE and the same registers (regs[0] ignored) in both machines, M-mode. */
static void load(struct fx *f, const uint64_t *regs)
{
	for (unsigned k = 0; k < 2; k++) {
		struct accel_harness *m = &f->m[k];

		memcpy(m->ram + (CODE - RAM_BASE), f->code, f->len);
		memcpy(m->ram + (TRAP - RAM_BASE), &(uint32_t){ECALL}, 4);
		for (unsigned i = 1; i < 32; i++)
			ah_set(m, 0, ACCEL_REG_X(i), regs[i]);
		ah_set(m, 0, ACCEL_REG_PRIV, 3);
		ah_set(m, 0, ACCEL_REG_CSR(CSR_SATP), 0);
		ah_set(m, 0, ACCEL_REG_CSR(CSR_MSTATUS), 0);
		ah_set(m, 0, ACCEL_REG_CSR(CSR_MIE), 0);
		ah_set(m, 0, ACCEL_REG_CSR(CSR_MIP), 0);
		ah_set(m, 0, ACCEL_REG_CSR(CSR_MTVEC), TRAP);
		ah_set(m, 0, ACCEL_REG_CSR(CSR_MSCRATCH), 0x1234);
		ah_set(m, 0, ACCEL_REG_CSR(CSR_SSCRATCH), 0x5678);
		ah_set(m, 0, ACCEL_REG_CSR(CSR_MCAUSE), 0);
		ah_set(m, 0, ACCEL_REG_CSR(CSR_MEPC), 0);
		ah_set(m, 0, ACCEL_REG_CSR(CSR_MTVAL), 0);
		ah_set(m, 0, ACCEL_REG_PC, CODE);
	}
}

static void run_both(struct fx *f)
{
	for (unsigned k = 0; k < 2; k++)
		assert_int_equal(ah_run(&f->m[k], 0), ACCEL_EXIT_SBI);
}

static void compare(struct fx *f, unsigned round)
{
	static const unsigned csrs[] = {CSR_MEPC,     CSR_MCAUSE,   CSR_MTVAL,   CSR_MINSTRET,
					CSR_MSTATUS,  CSR_MSCRATCH, CSR_SSCRATCH, CSR_MIE};
	struct accel_harness *a = &f->m[0], *b = &f->m[1];

	for (unsigned i = 0; i < 32; i++) {
		uint64_t x = ah_get(a, 0, ACCEL_REG_X(i)), y = ah_get(b, 0, ACCEL_REG_X(i));

		if (x != y)
			fail_msg("round %u: x%u: translated %#llx, interpreted %#llx", round, i,
				 (unsigned long long)x, (unsigned long long)y);
	}
	if (ah_get(a, 0, ACCEL_REG_PC) != ah_get(b, 0, ACCEL_REG_PC))
		fail_msg("round %u: pc differs", round);
	for (unsigned i = 0; i < sizeof(csrs) / sizeof(csrs[0]); i++)
		if (ah_get(a, 0, ACCEL_REG_CSR(csrs[i])) != ah_get(b, 0, ACCEL_REG_CSR(csrs[i])))
			fail_msg("round %u: csr %#x: translated %#llx, interpreted %#llx", round,
				 csrs[i], (unsigned long long)ah_get(a, 0, ACCEL_REG_CSR(csrs[i])),
				 (unsigned long long)ah_get(b, 0, ACCEL_REG_CSR(csrs[i])));
}

static void check_translated(struct fx *f)
{
#ifdef RV64_JIT
	struct rv64_cpu *cpu = (struct rv64_cpu *)f->m[0].cpu[0];

	assert_non_null(cpu->jit);
	assert_true(cpu->jit->translated > 0);
	assert_null(((struct rv64_cpu *)f->m[1].cpu[0])->jit);
#else
	(void)f;
#endif
}

/* Random straight-line blocks of ALU ops and CSR accesses, some in a counted loop. */
static void test_csr_random(void **state)
{
	static const unsigned csrs[] = {CSR_MSCRATCH, CSR_SSCRATCH, CSR_MEPC, CSR_MINSTRET,
					CSR_MSTATUS, CSR_MIE};
	struct fx *f = *state;

	for (unsigned round = 0; round < 200; round++) {
		uint64_t regs[32];
		unsigned n = 4 + pick(f, 40);

		f->len = 0;
		emit32(f, i_type(0x13, 31, 0, 0, 3)); /* x31 = 3: loop counter */
		for (unsigned i = 0; i < n; i++) {
			unsigned rd = 1 + pick(f, 30), rs1 = pick(f, 31), csr = csrs[pick(f, 6)];
			unsigned f3 = 1 + pick(f, 3) + (pick(f, 2) ? 4 : 0);

			if (pick(f, 3)) {
				emit32(f, i_type(0x13, rd, pick(f, 2) ? 0 : 4, rs1,
						 (int32_t)(rnd(f) & 0xfff) - 2048));
				continue;
			}
			if (pick(f, 4) == 0)
				rd = 0;
			if (csr == CSR_MINSTRET) {
				f3 = 2; /* a read: minstret is written only by this test's set_reg */
				rs1 = 0;
			}
			if (csr == CSR_MSTATUS) {
				/* SUM and MXR (bits 18, 19), maybe MIE (bit 3), through a register */
				emit32(f, i_type(0x37, 30, 0, 0, 0) | (pick(f, 4) << 18 & 0xc0000u));
				if (pick(f, 2))
					emit32(f, i_type(0x13, 30, 0, 30, 8));
				f3 = pick(f, 2) ? 2 : 3;
				rs1 = 30;
			}
			if (csr == CSR_MIE) {
				/* SSIE, MSIE: enabled with nothing pending, the block goes on */
				emit32(f, i_type(0x13, 29, 0, 0, (int32_t)(pick(f, 4) * 2 & 0xa)));
				f3 = 1 + pick(f, 3);
				rs1 = 29;
			}
			emit32(f, csr_insn(csr, f3, rd, rs1));
		}
		emit32(f, i_type(0x13, 31, 0, 31, -1));
		/* bne x31, x0, back to the instruction after the counter's setup */
		{
			int32_t off = -(int32_t)(f->len - 4);
			uint32_t u = (uint32_t)off;

			emit32(f, ((u >> 12) & 1) << 31 | ((u >> 5) & 0x3f) << 25 | 0 << 20 | 31 << 15 |
					  1 << 12 | ((u >> 1) & 0xf) << 8 | ((u >> 11) & 1) << 7 | 0x63);
		}
		emit32(f, ECALL);
		for (unsigned i = 0; i < 32; i++)
			regs[i] = rnd(f);
		load(f, regs);
		run_both(f);
		compare(f, round);
	}
	check_translated(f);
}

/*
 * mie.SSIE set, mip.SSIP pending, not delegated, mstatus.MIE clear: CSRRSI mstatus, MIE in
 * the middle of a block must trap right after it (priv 1.12 §3.1.9), before x6 is written.
 */
static void test_csr_enables_interrupt(void **state)
{
	struct fx *f = *state;
	uint64_t regs[32] = {0};

	f->len = 0;
	emit32(f, i_type(0x13, 5, 0, 0, 1));                  /* addi x5, x0, 1 */
	emit32(f, csr_insn(CSR_MSCRATCH, 2, 7, 0));           /* csrr x7, mscratch */
	emit32(f, csr_insn(CSR_MSTATUS, 6, 0, MSTATUS_MIE));  /* csrsi mstatus, MIE */
	emit32(f, i_type(0x13, 6, 0, 0, 1));                  /* addi x6, x0, 1 */
	emit32(f, i_type(0x13, 5, 0, 5, 1));                  /* addi x5, x5, 1 */
	emit32(f, ECALL);
	load(f, regs);
	for (unsigned k = 0; k < 2; k++) {
		ah_set(&f->m[k], 0, ACCEL_REG_CSR(CSR_MIE), IRQ_SSI);
		ah_set(&f->m[k], 0, ACCEL_REG_CSR(CSR_MIP), IRQ_SSI);
	}
	run_both(f);
	compare(f, 0);
	for (unsigned k = 0; k < 2; k++) {
		struct accel_harness *m = &f->m[k];

		assert_int_equal(ah_get(m, 0, ACCEL_REG_CSR(CSR_MCAUSE)), (1ULL << 63) | 1);
		assert_int_equal(ah_get(m, 0, ACCEL_REG_CSR(CSR_MEPC)), CODE + 12);
		assert_int_equal(ah_get(m, 0, ACCEL_REG_X(6)), 0);
		assert_int_equal(ah_get(m, 0, ACCEL_REG_X(5)), 1);
		assert_int_equal(ah_get(m, 0, ACCEL_REG_X(7)), 0x1234);
		assert_int_equal(ah_get(m, 0, ACCEL_REG_PC), TRAP);
	}
	check_translated(f);
}

/* Sv39 tables at PT mapping RAM_BASE's first 2 MiB to itself, CODE's page to ALT if `alt`. */
static void build_tables(uint8_t *ram, bool alt)
{
	uint64_t *l2 = (uint64_t *)(ram + (PT - RAM_BASE));
	uint64_t *l1 = l2 + 512, *l0 = l2 + 1024;
	uint64_t l1_pa = PT + 0x1000, l0_pa = PT + 0x2000;

	memset(l2, 0, 3 * 4096);
	l2[(RAM_BASE >> 30) & 511] = (l1_pa >> 12) << 10 | 1; /* V: next level */
	l1[(RAM_BASE >> 21) & 511] = (l0_pa >> 12) << 10 | 1;
	for (unsigned i = 0; i < 512; i++) {
		uint64_t pa = RAM_BASE + ((uint64_t)i << 12);

		if (pa == CODE && alt)
			pa = ALT;
		l0[i] = (pa >> 12) << 10 | 0xcf; /* D A X W R V */
	}
}

/* Each machine in S-mode under Sv39 with the identity tables of build_tables(). */
static void enter_sv39(struct fx *f)
{
	for (unsigned k = 0; k < 2; k++) {
		build_tables(f->m[k].ram, false);
		ah_set(&f->m[k], 0, ACCEL_REG_CSR(CSR_SATP), 8ULL << 60 | (PT >> 12));
		ah_set(&f->m[k], 0, ACCEL_REG_PRIV, 1);
	}
}

/* Both machines stopped at the ECALL from S-mode at mepc with these a0 and a1. */
static void check_ecall(struct fx *f, uint64_t mepc, uint64_t a0, uint64_t a1)
{
	for (unsigned k = 0; k < 2; k++) {
		struct accel_harness *m = &f->m[k];

		assert_int_equal(ah_get(m, 0, ACCEL_REG_X(10)), a0);
		assert_int_equal(ah_get(m, 0, ACCEL_REG_X(11)), a1);
		assert_int_equal(ah_get(m, 0, ACCEL_REG_CSR(CSR_MCAUSE)), 9); /* ECALL from S */
		assert_int_equal(ah_get(m, 0, ACCEL_REG_CSR(CSR_MEPC)), mepc);
	}
}

/*
 * S-mode, bare: CSRW satp turns on Sv39 where CODE's virtual page holds ALT's code. The
 * instruction after the CSRW must come from ALT (a0 = 2), as it does in the interpreter.
 */
static void test_satp_write_remaps(void **state)
{
	struct fx *f = *state;
	uint64_t regs[32] = {0};
	uint32_t alt[4] = {
		i_type(0x13, 10, 0, 0, 2), /* addi a0, x0, 2 */
		ECALL,
	};

	regs[5] = 8ULL << 60 | (PT >> 12); /* t0 = satp: Sv39, root at PT */
	f->len = 0;
	emit32(f, i_type(0x13, 11, 0, 0, 7));         /* addi a1, x0, 7 */
	emit32(f, csr_insn(CSR_SATP, 1, 0, 5));       /* csrw satp, t0 */
	emit32(f, i_type(0x13, 10, 0, 0, 1));         /* addi a0, x0, 1 */
	emit32(f, ECALL);
	load(f, regs);
	for (unsigned k = 0; k < 2; k++) {
		struct accel_harness *m = &f->m[k];

		build_tables(m->ram, true);
		memset(m->ram + (ALT - RAM_BASE), 0, 4096);
		memcpy(m->ram + (ALT - RAM_BASE) + 8, alt, sizeof(alt));
		ah_set(m, 0, ACCEL_REG_PRIV, 1);
	}
	run_both(f);
	compare(f, 0);
	check_ecall(f, CODE + 12, 2, 7);
	check_translated(f);
}

/*
 * S-mode under Sv39 mapping CODE to itself: a store points CODE's PTE at ALT, SFENCE.VMA of
 * CODE follows in the same block; the instruction after it must come from ALT (a0 = 2).
 */
static void test_sfence_remaps(void **state)
{
	struct fx *f = *state;
	uint64_t regs[32] = {0};
	uint32_t alt[2] = {
		i_type(0x13, 10, 0, 0, 2), /* addi a0, x0, 2 */
		ECALL,
	};

	regs[6] = (ALT >> 12) << 10 | 0xcf;                      /* t1: the new PTE */
	regs[7] = PT + 0x2000 + ((CODE >> 12) & 511) * 8;         /* t2: CODE's PTE */
	regs[28] = CODE;                                          /* t3 */
	f->len = 0;
	emit32(f, i_type(0x13, 11, 0, 0, 7));                    /* addi a1, x0, 7 */
	emit32(f, 6u << 20 | 7u << 15 | 3u << 12 | 0x23);         /* sd t1, 0(t2) */
	emit32(f, 0x12000073u | 28u << 15);                       /* sfence.vma t3 */
	emit32(f, i_type(0x13, 10, 0, 0, 1));                    /* addi a0, x0, 1 */
	emit32(f, ECALL);
	load(f, regs);
	enter_sv39(f);
	for (unsigned k = 0; k < 2; k++) {
		memset(f->m[k].ram + (ALT - RAM_BASE), 0, 4096);
		memcpy(f->m[k].ram + (ALT - RAM_BASE) + 12, alt, sizeof(alt));
	}
	run_both(f);
	compare(f, 0);
	check_ecall(f, CODE + 16, 2, 7);
	check_translated(f);
}

/*
 * S-mode under Sv39: a load through DATA fills the TLB, a store points DATA's PTE at ALT2, and
 * SFENCE.VMA of DATA follows in the same block. The fence leaves the code page's translation
 * alone, so translated code goes on in the block (jit_sfence()), and the load after the fence
 * must see ALT2 through the new translation, not the old entry.
 */
static void test_sfence_other_page(void **state)
{
	struct fx *f = *state;
	uint64_t regs[32] = {0};
	const uint64_t data = RAM_BASE + 0x3000, alt2 = RAM_BASE + 0x4000;

	regs[6] = (alt2 >> 12) << 10 | 0xcf;                      /* t1: the new PTE */
	regs[7] = PT + 0x2000 + ((data >> 12) & 511) * 8;         /* t2: DATA's PTE */
	regs[28] = data;                                          /* t3 */
	f->len = 0;
	emit32(f, 3u << 12 | 28u << 15 | 11u << 7 | 0x03);        /* ld a1, 0(t3) */
	emit32(f, 6u << 20 | 7u << 15 | 3u << 12 | 0x23);         /* sd t1, 0(t2) */
	emit32(f, 0x12000073u | 28u << 15);                       /* sfence.vma t3 */
	emit32(f, 3u << 12 | 28u << 15 | 10u << 7 | 0x03);        /* ld a0, 0(t3) */
	emit32(f, ECALL);
	load(f, regs);
	enter_sv39(f);
	for (unsigned k = 0; k < 2; k++) {
		ah_put64(&f->m[k], data, 0x1111);
		ah_put64(&f->m[k], alt2, 0x2222);
	}
	run_both(f);
	compare(f, 0);
	check_ecall(f, CODE + 16, 0x2222, 0x1111);
	check_translated(f);
}

/* SFENCE.VMA in U-mode: illegal instruction with the instruction in mtval. */
static void test_sfence_illegal(void **state)
{
	struct fx *f = *state;
	uint64_t regs[32] = {0};
	uint32_t bad = 0x12000073u;

	f->len = 0;
	emit32(f, i_type(0x13, 5, 0, 0, 1));
	emit32(f, bad);
	emit32(f, i_type(0x13, 5, 0, 0, 3));
	emit32(f, ECALL);
	load(f, regs);
	for (unsigned k = 0; k < 2; k++)
		ah_set(&f->m[k], 0, ACCEL_REG_PRIV, 0);
	run_both(f);
	compare(f, 0);
	for (unsigned k = 0; k < 2; k++) {
		struct accel_harness *m = &f->m[k];

		assert_int_equal(ah_get(m, 0, ACCEL_REG_CSR(CSR_MCAUSE)), 2);
		assert_int_equal(ah_get(m, 0, ACCEL_REG_CSR(CSR_MEPC)), CODE + 4);
		assert_int_equal(ah_get(m, 0, ACCEL_REG_CSR(CSR_MTVAL)), bad);
		assert_int_equal(ah_get(m, 0, ACCEL_REG_X(5)), 1);
	}
}

/* U-mode reading mscratch: illegal instruction, mtval = the instruction, rd untouched. */
static void test_csr_illegal(void **state)
{
	struct fx *f = *state;
	uint64_t regs[32] = {0};
	uint32_t bad = csr_insn(CSR_MSCRATCH, 2, 7, 0);

	regs[7] = 0x77;
	f->len = 0;
	emit32(f, i_type(0x13, 5, 0, 0, 1));
	emit32(f, i_type(0x13, 6, 0, 0, 2));
	emit32(f, bad);
	emit32(f, i_type(0x13, 5, 0, 0, 3));
	emit32(f, ECALL);
	load(f, regs);
	for (unsigned k = 0; k < 2; k++)
		ah_set(&f->m[k], 0, ACCEL_REG_PRIV, 0);
	run_both(f);
	compare(f, 0);
	for (unsigned k = 0; k < 2; k++) {
		struct accel_harness *m = &f->m[k];

		assert_int_equal(ah_get(m, 0, ACCEL_REG_CSR(CSR_MCAUSE)), 2);
		assert_int_equal(ah_get(m, 0, ACCEL_REG_CSR(CSR_MEPC)), CODE + 8);
		assert_int_equal(ah_get(m, 0, ACCEL_REG_CSR(CSR_MTVAL)), bad);
		assert_int_equal(ah_get(m, 0, ACCEL_REG_X(7)), 0x77);
		assert_int_equal(ah_get(m, 0, ACCEL_REG_X(6)), 2);
	}
	check_translated(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_csr_random, setup, teardown),
		cmocka_unit_test_setup_teardown(test_csr_enables_interrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_satp_write_remaps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_csr_illegal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sfence_remaps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sfence_other_page, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sfence_illegal, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
