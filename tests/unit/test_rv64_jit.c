/*
 * test_rv64_jit.c - the x86-64 translator (src/accel/rv64/jit.c) must do exactly what the
 * decoded-op interpreter does. Each test runs the same program on two machines, one with
 * KUMO_JIT=1 and one with KUMO_JIT=0, from the same register state, and compares every
 * integer register, the pc, the trap CSRs, minstret and a scratch memory area afterwards:
 *   - random blocks of every translated op (RV64I/M, Zba sh*add/add.uw, 16-bit forms), with
 *     edge-value registers, aligned and misaligned loads and stores, forward branches, a
 *     backward loop (chained exits) and untranslated ops (CSR reads) in between;
 *   - a load that faults in the middle of a block (precise mepc, mtval, minstret);
 *   - a store that rewrites a later instruction of its own block (the new code runs).
 * Programs end in ECALL, which leaves vcpu_run() (ecall_exit_mask covers M-mode); traps go to
 * an mtvec that holds an ECALL. On hosts without the translator both machines interpret,
 * which still passes, and the "translated" check is skipped.
 */
#include <fenv.h>
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
#define RAM_SIZE (1ULL << 20)
#define TRAP (RAM_BASE + 0x800)
#define CODE (RAM_BASE + 0x1000)
#define CODE_MAX 0x3000
#define DATA (RAM_BASE + 0x10000)
#define DATA_SIZE 512

#define ECALL 0x00000073u
#define CSR_MSCRATCH 0x340
#define CSR_MTVEC 0x305
#define CSR_MEPC 0x341
#define CSR_MCAUSE 0x342
#define CSR_MTVAL 0x343
#define CSR_MINSTRET 0xb02
#define CSR_FCSR 0x003
#define CSR_MSTATUS 0x300
#define MSTATUS_FS_INITIAL 0x2000ULL

enum { S0 = 8, LOOP = 31 }; /* s0: data pointer, x31: loop counter; random code keeps them */

struct fx {
	struct accel_harness m[2]; /* [0] translated, [1] interpreted */
	uint8_t code[CODE_MAX];
	unsigned len;
	uint64_t rng;
	bool fs_off; /* mstatus.FS Off: FP instructions raise illegal */
};

static int setup(void **state)
{
	const struct ah_config c = {.ram_base = RAM_BASE, .ram_size = RAM_SIZE, .ncpus = 1,
				    .ecall_exit_mask = 1u << 3, /* M-mode ECALLs exit */
				    .jit = AH_JIT_ON};
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	ah_init_pair(f->m, &c);
	f->rng = 0x9e3779b97f4a7c15ULL;
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

static void emit16(struct fx *f, uint16_t v)
{
	assert_true(f->len + 2 <= CODE_MAX);
	memcpy(f->code + f->len, &v, 2);
	f->len += 2;
}

static uint32_t r_type(unsigned op, unsigned rd, unsigned f3, unsigned rs1, unsigned rs2,
		       unsigned f7)
{
	return f7 << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op;
}

static uint32_t i_type(unsigned op, unsigned rd, unsigned f3, unsigned rs1, int32_t imm)
{
	return ((uint32_t)imm & 0xfff) << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op;
}

static uint32_t s_type(unsigned f3, unsigned rs1, unsigned rs2, int32_t imm)
{
	uint32_t i = (uint32_t)imm;

	return ((i >> 5) & 0x7f) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | (i & 31) << 7 | 0x23;
}

static uint32_t b_type(unsigned f3, unsigned rs1, unsigned rs2, int32_t off)
{
	uint32_t i = (uint32_t)off;

	return ((i >> 12) & 1) << 31 | ((i >> 5) & 0x3f) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 |
	       ((i >> 1) & 0xf) << 8 | ((i >> 11) & 1) << 7 | 0x63;
}

/* Any register but s0 and the loop counter (x0 included: writes to it must vanish). */
static unsigned any_rd(struct fx *f)
{
	unsigned r;

	do
		r = pick(f, 32);
	while (r == S0 || r == LOOP);
	return r;
}

/* One random translated instruction (or a short group) at the end of the program. */
static void gen_one(struct fx *f)
{
	static const uint16_t op_k[] = {
		0x00 << 3 | 0, 0x20 << 3 | 0, 0x00 << 3 | 1, 0x00 << 3 | 2, 0x00 << 3 | 3,
		0x00 << 3 | 4, 0x00 << 3 | 5, 0x20 << 3 | 5, 0x00 << 3 | 6, 0x00 << 3 | 7,
		0x01 << 3 | 0, 0x01 << 3 | 1, 0x01 << 3 | 2, 0x01 << 3 | 3, 0x01 << 3 | 4,
		0x01 << 3 | 5, 0x01 << 3 | 6, 0x01 << 3 | 7, 0x10 << 3 | 2, 0x10 << 3 | 4,
		0x10 << 3 | 6,
	};
	static const uint16_t op32_k[] = {
		0x00 << 3 | 0, 0x20 << 3 | 0, 0x00 << 3 | 1, 0x00 << 3 | 5, 0x20 << 3 | 5,
		0x01 << 3 | 0, 0x01 << 3 | 4, 0x01 << 3 | 5, 0x01 << 3 | 6, 0x01 << 3 | 7,
		0x04 << 3 | 0,
	};
	unsigned rd = any_rd(f), rs1 = pick(f, 32), rs2 = pick(f, 32);
	int32_t imm = (int32_t)(rnd(f) & 0xfff) - 2048;
	unsigned k, c = 8 + 1 + pick(f, 7); /* a compressed register other than s0 */

	switch (pick(f, 18)) {
	case 0:
	case 1:
		k = op_k[pick(f, sizeof(op_k) / sizeof(op_k[0]))];
		emit32(f, r_type(0x33, rd, k & 7, rs1, rs2, k >> 3));
		break;
	case 2:
		k = op32_k[pick(f, sizeof(op32_k) / sizeof(op32_k[0]))];
		emit32(f, r_type(0x3b, rd, k & 7, rs1, rs2, k >> 3));
		break;
	case 3: { /* OP-IMM */
		static const uint8_t f3s[] = {0, 2, 3, 4, 6, 7, 1, 5, 5};
		unsigned i = pick(f, sizeof(f3s)), f3 = f3s[i];

		if (f3 == 1 || f3 == 5)
			imm = (int32_t)pick(f, 64) | (i == 8 ? 0x400 : 0);
		emit32(f, i_type(0x13, rd, f3, rs1, imm));
		break;
	}
	case 4: { /* OP-IMM-32 */
		static const uint8_t f3s[] = {0, 1, 5, 5};
		unsigned i = pick(f, 4);

		if (i)
			imm = (int32_t)pick(f, 32) | (i == 3 ? 0x400 : 0);
		emit32(f, i_type(0x1b, rd, f3s[i], rs1, imm));
		break;
	}
	case 5: /* LUI, AUIPC */
		emit32(f, (uint32_t)(rnd(f) & 0xfffff000u) | rd << 7 | (pick(f, 2) ? 0x37 : 0x17));
		break;
	case 6:
	case 7: { /* loads from s0, aligned or not */
		unsigned f3 = pick(f, 7), size = 1u << (f3 & 3);
		int32_t off = (int32_t)pick(f, DATA_SIZE - 8);

		if (pick(f, 4))
			off &= ~(int32_t)(size - 1);
		emit32(f, i_type(0x03, rd, f3, S0, off));
		break;
	}
	case 8:
	case 9: { /* stores to s0 */
		unsigned f3 = pick(f, 4), size = 1u << f3;
		int32_t off = (int32_t)pick(f, DATA_SIZE - 8);

		if (pick(f, 4))
			off &= ~(int32_t)(size - 1);
		emit32(f, s_type(f3, S0, rs2, off));
		break;
	}
	case 10: { /* a forward branch over one instruction */
		static const uint8_t f3s[] = {0, 1, 4, 5, 6, 7};

		emit32(f, b_type(f3s[pick(f, 6)], rs1, pick(f, 3) ? rs2 : 0, 8));
		emit32(f, i_type(0x13, any_rd(f), 0, rs1, imm));
		break;
	}
	case 11: /* C.ADDI, C.LI, C.MV, C.ADD (rd != 0) */
		if (!rd)
			rd = c;
		switch (pick(f, 4)) {
		case 0:
			emit16(f, (uint16_t)(0x0001 | ((imm >> 5) & 1) << 12 | rd << 7 | (imm & 31) << 2));
			break;
		case 1:
			emit16(f, (uint16_t)(0x4001 | ((imm >> 5) & 1) << 12 | rd << 7 | (imm & 31) << 2));
			break;
		case 2:
			emit16(f, (uint16_t)(0x8002 | rd << 7 | (rs2 ? rs2 : 1) << 2));
			break;
		default:
			emit16(f, (uint16_t)(0x9002 | rd << 7 | (rs2 ? rs2 : 1) << 2));
			break;
		}
		break;
	case 12: { /* C.LW / C.SW / C.LD / C.SD with base s0 */
		unsigned r = c - 8, off = pick(f, 16) * 8;

		switch (pick(f, 4)) {
		case 0: /* c.lw: uimm[5:3] 12:10, [2] 6, [6] 5 */
			emit16(f, (uint16_t)(0x4000 | ((off >> 3) & 7) << 10 | 0 << 7 | ((off >> 2) & 1) << 6 |
					     ((off >> 6) & 1) << 5 | r << 2));
			break;
		case 1: /* c.sw */
			emit16(f, (uint16_t)(0xc000 | ((off >> 3) & 7) << 10 | 0 << 7 | ((off >> 2) & 1) << 6 |
					     ((off >> 6) & 1) << 5 | r << 2));
			break;
		case 2: /* c.ld: uimm[5:3] 12:10, [7:6] 6:5 */
			emit16(f, (uint16_t)(0x6000 | ((off >> 3) & 7) << 10 | 0 << 7 | ((off >> 6) & 3) << 5 |
					     r << 2));
			break;
		default: /* c.sd */
			emit16(f, (uint16_t)(0xe000 | ((off >> 3) & 7) << 10 | 0 << 7 | ((off >> 6) & 3) << 5 |
					     r << 2));
			break;
		}
		break;
	}
	case 13: /* an untranslated op: ends the block, the interpreter runs it */
		emit32(f, i_type(0x73, rd, 2, 0, CSR_MSCRATCH));
		break;
	case 16: { /* Zbb/Zbs/Zba register forms (bitmanip 1.0.0) */
		static const uint16_t zb_k[] = {
			0x20 << 3 | 4, 0x20 << 3 | 6, 0x20 << 3 | 7, 0x05 << 3 | 4, 0x05 << 3 | 5,
			0x05 << 3 | 6, 0x05 << 3 | 7, 0x30 << 3 | 1, 0x30 << 3 | 5, 0x14 << 3 | 1,
			0x24 << 3 | 1, 0x34 << 3 | 1, 0x24 << 3 | 5,
		};
		static const uint16_t zb32_k[] = {
			0x10 << 3 | 2, 0x10 << 3 | 4, 0x10 << 3 | 6, 0x30 << 3 | 1, 0x30 << 3 | 5,
		};

		if (pick(f, 3)) {
			k = zb_k[pick(f, sizeof(zb_k) / sizeof(zb_k[0]))];
			emit32(f, r_type(0x33, rd, k & 7, rs1, rs2, k >> 3));
		} else if (pick(f, 4)) {
			k = zb32_k[pick(f, sizeof(zb32_k) / sizeof(zb32_k[0]))];
			emit32(f, r_type(0x3b, rd, k & 7, rs1, rs2, k >> 3));
		} else {
			emit32(f, r_type(0x3b, rd, 4, rs1, 0, 0x04)); /* zext.h */
		}
		break;
	}
	case 17: { /* Zbb/Zbs/Zba immediate forms */
		static const uint16_t unary[] = {0x600, 0x601, 0x602, 0x604, 0x605};
		unsigned sh = pick(f, 64);

		switch (pick(f, 8)) {
		case 0: /* clz, ctz, cpop, sext.b, sext.h */
			emit32(f, i_type(0x13, rd, 1, rs1, unary[pick(f, 5)]));
			break;
		case 1: /* clzw, ctzw, cpopw */
			emit32(f, i_type(0x1b, rd, 1, rs1, 0x600 | (int32_t)pick(f, 3)));
			break;
		case 2: /* bseti, bclri, binvi */
			emit32(f, i_type(0x13, rd, 1, rs1, (int32_t)((0x0a + 8 * pick(f, 3)) << 6 | sh)));
			break;
		case 3: /* bexti, rori */
			emit32(f, i_type(0x13, rd, 5, rs1, (int32_t)((pick(f, 2) ? 0x12 : 0x18) << 6 | sh)));
			break;
		case 4: /* orc.b, rev8 */
			emit32(f, i_type(0x13, rd, 5, rs1, pick(f, 2) ? 0x287 : 0x6b8));
			break;
		case 5: /* roriw */
			emit32(f, i_type(0x1b, rd, 5, rs1, 0x600 | (int32_t)(sh & 31)));
			break;
		case 6: /* slli.uw */
			emit32(f, i_type(0x1b, rd, 1, rs1, 0x080 | (int32_t)sh));
			break;
		default: /* orc.b of a value with some zero bytes */
			emit32(f, i_type(0x13, rd, 7, rs1, 0x0f0));
			emit32(f, i_type(0x13, rd, 5, rd, 0x287));
			break;
		}
		break;
	}
	default: /* ADDI with x0 source (LI) or general */
		emit32(f, i_type(0x13, rd, 0, pick(f, 2) ? 0 : rs1, imm));
		break;
	}
}

static uint64_t edge_value(struct fx *f)
{
	static const uint64_t edge[] = {
		0, 1, UINT64_MAX, 0x8000000000000000ULL, 0x7fffffffffffffffULL,
		0xffffffff80000000ULL, 0x80000000ULL, 0xffffffffULL, 0x7fffffffULL, 2,
	};

	if (pick(f, 2))
		return edge[pick(f, sizeof(edge) / sizeof(edge[0]))];
	return rnd(f);
}

/* FP register contents: boxed and unboxed singles, doubles, zeros, infinities, NaNs. */
static uint64_t fp_value(struct fx *f)
{
	static const uint64_t edge_d[] = {
		0, 0x8000000000000000ULL, 0x3ff0000000000000ULL, 0xbff8000000000000ULL,
		0x7ff0000000000000ULL, 0xfff0000000000000ULL, 0x7ff8000000000000ULL,
		0x7ff4000000000000ULL, 0x0000000000000001ULL, 0x7fefffffffffffffULL,
		0x41dfffffffc00000ULL, 0xc3e0000000000000ULL, 0x4000000000000000ULL,
	};
	static const uint32_t edge_s[] = {
		0, 0x80000000u, 0x3f800000u, 0xbfc00000u, 0x7f800000u, 0xff800000u, 0x7fc00000u,
		0x7fa00000u, 0x00000001u, 0x7f7fffffu, 0x4effffffu, 0x40400000u,
	};

	switch (pick(f, 6)) {
	case 0:
		return edge_d[pick(f, sizeof(edge_d) / sizeof(edge_d[0]))];
	case 1:
		return 0xffffffff00000000ULL | edge_s[pick(f, sizeof(edge_s) / sizeof(edge_s[0]))];
	case 2: /* a double of moderate exponent */
		return (rnd(f) & 0x800fffffffffffffULL) | (uint64_t)(1023 - 40 + pick(f, 80)) << 52;
	case 3: /* a boxed single of moderate exponent */
		return 0xffffffff00000000ULL | ((uint32_t)rnd(f) & 0x807fffffu) |
		       (uint32_t)(127 - 20 + pick(f, 40)) << 23;
	case 4: /* not NaN-boxed: singles read it as the canonical NaN */
		return rnd(f) & 0x7fffffffffffffffULL;
	default:
		return rnd(f);
	}
}

/* Loads the program and the same start state into both machines. */
static void load(struct fx *f)
{
	uint64_t regs[32], fregs[32], data[DATA_SIZE / 8], fcsr;

	for (unsigned i = 0; i < 32; i++)
		regs[i] = edge_value(f);
	for (unsigned i = 0; i < 32; i++)
		fregs[i] = fp_value(f);
	/* frm 0..4, sometimes an invalid 5..7 (DYN then raises illegal); random fflags */
	fcsr = (uint64_t)(pick(f, 8) ? pick(f, 5) : 5 + pick(f, 3)) << 5 | pick(f, 32);
	for (unsigned i = 0; i < DATA_SIZE / 8; i++)
		data[i] = rnd(f);
	regs[S0] = DATA;
	for (unsigned k = 0; k < 2; k++) {
		struct accel_harness *m = &f->m[k];

		memcpy(m->ram + (CODE - RAM_BASE), f->code, f->len);
		memcpy(m->ram + (DATA - RAM_BASE), data, sizeof(data));
		memcpy(m->ram + (TRAP - RAM_BASE), &(uint32_t){ECALL}, 4);
		/* The VMM wrote code: announce it like vm.c does, then point the pc at it. */
		for (unsigned i = 1; i < 32; i++)
			ah_set(m, 0, ACCEL_REG_X(i), regs[i]);
		for (unsigned i = 0; i < 32; i++)
			ah_set(m, 0, ACCEL_REG_F(i), fregs[i]);
		ah_set(m, 0, ACCEL_REG_CSR(CSR_MSTATUS), f->fs_off ? 0 : MSTATUS_FS_INITIAL);
		ah_set(m, 0, ACCEL_REG_CSR(CSR_FCSR), fcsr);
		ah_set(m, 0, ACCEL_REG_CSR(CSR_MTVEC), TRAP);
		ah_set(m, 0, ACCEL_REG_CSR(CSR_MSCRATCH), 0x1234);
		ah_set(m, 0, ACCEL_REG_CSR(CSR_MCAUSE), 0);
		ah_set(m, 0, ACCEL_REG_CSR(CSR_MEPC), 0);
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
	static const unsigned csrs[] = {CSR_MEPC, CSR_MCAUSE, CSR_MTVAL, CSR_MINSTRET, CSR_FCSR,
					CSR_MSTATUS};
	struct accel_harness *a = &f->m[0], *b = &f->m[1];

	for (unsigned i = 0; i < 32; i++) {
		uint64_t x = ah_get(a, 0, ACCEL_REG_X(i)), y = ah_get(b, 0, ACCEL_REG_X(i));

		if (x != y)
			fail_msg("round %u: x%u: translated %#llx, interpreted %#llx", round, i,
				 (unsigned long long)x, (unsigned long long)y);
	}
	for (unsigned i = 0; i < 32; i++) {
		uint64_t x = ah_get(a, 0, ACCEL_REG_F(i)), y = ah_get(b, 0, ACCEL_REG_F(i));

		if (x != y)
			fail_msg("round %u: f%u: translated %#llx, interpreted %#llx", round, i,
				 (unsigned long long)x, (unsigned long long)y);
	}
	assert_int_equal(ah_get(a, 0, ACCEL_REG_PC), ah_get(b, 0, ACCEL_REG_PC));
	for (unsigned i = 0; i < sizeof(csrs) / sizeof(csrs[0]); i++)
		if (ah_get(a, 0, ACCEL_REG_CSR(csrs[i])) != ah_get(b, 0, ACCEL_REG_CSR(csrs[i])))
			fail_msg("round %u: csr %#x differs", round, csrs[i]);
	assert_memory_equal(a->ram + (DATA - RAM_BASE), b->ram + (DATA - RAM_BASE), DATA_SIZE);
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

/* Random blocks: a counted backward loop around random code, then more random code. */
static void test_random_blocks(void **state)
{
	struct fx *f = *state;

	for (unsigned round = 0; round < 300; round++) {
		unsigned n = 4 + pick(f, 60), top;

		f->len = 0;
		emit32(f, i_type(0x13, LOOP, 0, 0, 1 + (int32_t)pick(f, 5)));
		top = f->len;
		for (unsigned i = 0; i < n / 2; i++)
			gen_one(f);
		emit32(f, i_type(0x13, LOOP, 0, LOOP, -1));
		emit32(f, b_type(1, LOOP, 0, (int32_t)top - (int32_t)f->len)); /* bnez loop */
		for (unsigned i = 0; i < n / 2; i++)
			gen_one(f);
		emit32(f, ECALL);
		load(f);
		run_both(f);
		compare(f, round);
	}
	check_translated(f);
}

/* One random F/D instruction (unpriv 20191213 §11, §12), or a load/store of s0's area. */
static void gen_fp(struct fx *f)
{
	static const uint8_t rms[] = {0, 1, 2, 3, 4, 7, 7, 7, 5}; /* 5: reserved */
	unsigned rd = pick(f, 32), rs1 = pick(f, 32), rs2 = pick(f, 32), rs3 = pick(f, 32);
	unsigned fmt = pick(f, 2), rm = rms[pick(f, sizeof(rms))], xrd = any_rd(f);
	int32_t off = (int32_t)pick(f, DATA_SIZE - 8);

	switch (pick(f, 12)) {
	case 0: /* FADD, FSUB, FMUL, FDIV */
		emit32(f, r_type(0x53, rd, rm, rs1, rs2, pick(f, 4) << 2 | fmt));
		break;
	case 1: /* FSQRT */
		emit32(f, r_type(0x53, rd, rm, rs1, 0, 0x0b << 2 | fmt));
		break;
	case 2: /* FMADD, FMSUB, FNMSUB, FNMADD */
		emit32(f, rs3 << 27 | fmt << 25 | rs2 << 20 | rs1 << 15 | rm << 12 | rd << 7 |
			       (0x43 + 4 * pick(f, 4)));
		break;
	case 3: /* FSGNJ[N|X], FMIN, FMAX */
		if (pick(f, 2))
			emit32(f, r_type(0x53, rd, pick(f, 3), rs1, rs2, 0x04 << 2 | fmt));
		else
			emit32(f, r_type(0x53, rd, pick(f, 2), rs1, rs2, 0x05 << 2 | fmt));
		break;
	case 4: /* FLE, FLT, FEQ to an integer register */
		emit32(f, r_type(0x53, pick(f, 8) ? xrd : 0, pick(f, 3), rs1, rs2, 0x14 << 2 | fmt));
		break;
	case 5: /* FCVT.W/WU/L/LU.fmt, its result used (and its register cached) after it */
		emit32(f, r_type(0x53, xrd, rm, rs1, pick(f, 4), 0x18 << 2 | fmt));
		if (pick(f, 2)) {
			emit32(f, r_type(0x33, xrd, 0, xrd, xrd, 0));
			emit32(f, r_type(0x33, xrd, 4, xrd, rs2, 0));
		}
		break;
	case 6: /* FCVT.fmt.W/WU/L/LU from an integer register */
		emit32(f, r_type(0x53, rd, rm, rs1 == S0 ? 1 : rs1, pick(f, 4), 0x1a << 2 | fmt));
		break;
	case 7: /* FMV.X.fmt, FCLASS, FMV.fmt.X, FCVT.S.D / FCVT.D.S */
		switch (pick(f, 4)) {
		case 0:
			emit32(f, r_type(0x53, xrd, 0, rs1, 0, 0x1c << 2 | fmt));
			break;
		case 1:
			emit32(f, r_type(0x53, xrd, 1, rs1, 0, 0x1c << 2 | fmt));
			break;
		case 2:
			emit32(f, r_type(0x53, rd, 0, rs1, 0, 0x1e << 2 | fmt));
			break;
		default:
			emit32(f, r_type(0x53, rd, rm, rs1, fmt ? 0 : 1, 0x08 << 2 | fmt));
			break;
		}
		break;
	case 8:
	case 9: /* FLW, FLD from s0, aligned or not */
		if (pick(f, 4))
			off &= ~(int32_t)(fmt ? 7 : 3);
		emit32(f, i_type(0x07, rd, 2 + fmt, S0, off));
		break;
	case 10: /* FSW, FSD to s0 */
		if (pick(f, 4))
			off &= ~(int32_t)(fmt ? 7 : 3);
		emit32(f, (s_type(2 + fmt, S0, rs2, off) & ~0x7fu) | 0x27);
		break;
	default: /* C.FLD / C.FSD with base s0 */
		emit16(f, (uint16_t)((pick(f, 2) ? 0xa000 : 0x2000) | (pick(f, 16) & 7) << 10 |
				     (rd & 7) << 2));
		break;
	}
}

/*
 * One of the double-precision instructions the JIT runs inline (jit.c tr_fp_inline()), in any
 * rounding mode including RMM, reserved ones and DYN, sometimes with rs1 == rs2 (FMV.D,
 * FEQ/FLE/FLT of equal values), or an FLD/FSD feeding them.
 */
static void gen_fd(struct fx *f)
{
	static const uint8_t rms[] = {0, 0, 1, 2, 3, 4, 5, 7, 7, 7, 7, 7};
	unsigned rd = pick(f, 32), rs1 = pick(f, 32), rs2 = pick(f, 4) ? pick(f, 32) : rs1;
	unsigned rm = rms[pick(f, sizeof(rms))], xrd = any_rd(f);

	switch (pick(f, 12)) {
	case 10:
	case 11: /* FMADD.D, FMSUB.D, FNMSUB.D, FNMADD.D */
		emit32(f, pick(f, 32) << 27 | 1u << 25 | rs2 << 20 | rs1 << 15 | rm << 12 |
			       rd << 7 | (0x43 + 4 * pick(f, 4)));
		break;
	case 9: /* FCVT.D.L of 2^53 + 1, a tie: RNE and RMM round it apart */
		emit32(f, i_type(0x13, xrd, 0, 0, 1));
		emit32(f, i_type(0x13, xrd, 1, xrd, 53));
		emit32(f, i_type(0x13, xrd, 0, xrd, 1));
		emit32(f, r_type(0x53, rd, rm, xrd, 2, 0x1a << 2 | 1));
		/* then FMADD.D f[rd] * 1.0 + 1.0: 2^53 + 1 or 2^53 + 3, again a tie */
		rs1 = (rd + 1) & 31;
		emit32(f, i_type(0x13, xrd, 0, 0, 1));
		emit32(f, r_type(0x53, rs1, 0, xrd, 2, 0x1a << 2 | 1));
		emit32(f, rs1 << 27 | 1u << 25 | rs1 << 20 | rd << 15 | rm << 12 | rd << 7 | 0x43);
		break;
	case 0:
	case 1: /* FADD.D, FSUB.D, FMUL.D, FDIV.D */
		emit32(f, r_type(0x53, rd, rm, rs1, rs2, pick(f, 4) << 2 | 1));
		break;
	case 2: /* FSQRT.D */
		emit32(f, r_type(0x53, rd, rm, rs1, 0, 0x0b << 2 | 1));
		break;
	case 3: /* FSGNJ.D, FSGNJN.D, FSGNJX.D */
		emit32(f, r_type(0x53, rd, pick(f, 3), rs1, rs2, 0x04 << 2 | 1));
		break;
	case 4: /* FLE.D, FLT.D, FEQ.D, the result used after it */
		emit32(f, r_type(0x53, xrd, pick(f, 3), rs1, rs2, 0x14 << 2 | 1));
		emit32(f, r_type(0x33, xrd, 4, xrd, rs2 == S0 || rs2 == LOOP ? 0 : rs2, 0));
		break;
	case 5: /* FCVT.D.W, FCVT.D.L from an integer register */
		emit32(f, r_type(0x53, rd, rm, rs1 == S0 ? 1 : rs1, pick(f, 2) * 2, 0x1a << 2 | 1));
		break;
	case 6: /* FMV.X.D, FMV.D.X */
		if (pick(f, 2))
			emit32(f, r_type(0x53, xrd, 0, rs1, 0, 0x1c << 2 | 1));
		else
			emit32(f, r_type(0x53, rd, 0, rs1 == S0 ? 1 : rs1, 0, 0x1e << 2 | 1));
		break;
	case 7: /* FLD from s0 */
		emit32(f, i_type(0x07, rd, 3, S0, (int32_t)pick(f, DATA_SIZE / 8) * 8));
		break;
	default: /* FSD to s0 */
		emit32(f, (s_type(3, S0, rs2, (int32_t)pick(f, DATA_SIZE / 8) * 8) & ~0x7fu) | 0x27);
		break;
	}
}

/*
 * Random F/D blocks mixed with integer code, in a loop; some rounds run with mstatus.FS Off
 * (the first FP instruction raises illegal instruction, with the instruction in mtval).
 */
static void test_fp_blocks(void **state)
{
	struct fx *f = *state;

	for (unsigned round = 0; round < 400; round++) {
		unsigned n = 4 + pick(f, 40), top;

		f->fs_off = pick(f, 10) == 0;
		f->len = 0;
		emit32(f, i_type(0x13, LOOP, 0, 0, 1 + (int32_t)pick(f, 3)));
		top = f->len;
		for (unsigned i = 0; i < n; i++) {
			if (pick(f, 3))
				(round & 1 ? gen_fd : gen_fp)(f);
			else
				gen_one(f);
		}
		emit32(f, i_type(0x13, LOOP, 0, LOOP, -1));
		emit32(f, b_type(1, LOOP, 0, (int32_t)top - (int32_t)f->len));
		emit32(f, ECALL);
		load(f);
		/*
		 * The host thread's own rounding mode, which fpu.c restores after each operation:
		 * the JIT's inline code runs guest ops of that mode without touching MXCSR.
		 */
		fesetround((int[]){FE_TONEAREST, FE_TOWARDZERO, FE_DOWNWARD,
				   FE_UPWARD}[round / 2 % 4]);
		run_both(f);
		fesetround(FE_TONEAREST);
		compare(f, round);
	}
	f->fs_off = false;
	check_translated(f);
}

/* A load that faults in the middle of a block: precise pc, tval, instret. */
static void test_trap_in_block(void **state)
{
	struct fx *f = *state;

	for (unsigned round = 0; round < 40; round++) {
		unsigned before = pick(f, 12), after = 1 + pick(f, 6);

		f->len = 0;
		for (unsigned i = 0; i < before; i++)
			emit32(f, i_type(0x13, 10 + pick(f, 6), 0, 10 + pick(f, 6), (int32_t)pick(f, 100)));
		/* x9 = 0x1000 (no memory there): ld a0, 8(x9) raises a load access fault */
		emit32(f, i_type(0x13, 9, 0, 0, 0x100));
		emit32(f, i_type(0x13, 9, 1, 9, 4));
		emit32(f, pick(f, 2) ? i_type(0x03, 10, 3, 9, 8) : s_type(3, 9, 10, 8));
		for (unsigned i = 0; i < after; i++)
			emit32(f, i_type(0x13, 11, 0, 11, 1));
		emit32(f, ECALL);
		load(f);
		run_both(f);
		compare(f, round);
		assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_CSR(CSR_MEPC)), CODE + 4 * (before + 2));
		assert_true(ah_get(&f->m[0], 0, ACCEL_REG_CSR(CSR_MCAUSE)) == 5 ||
			    ah_get(&f->m[0], 0, ACCEL_REG_CSR(CSR_MCAUSE)) == 7);
		assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_CSR(CSR_MTVAL)), 0x1008);
	}
	check_translated(f);
}

/*
 * A store that rewrites an instruction later in its own block, run repeatedly: each run must
 * execute the value stored just before (no FENCE.I needed in kumo, as the decode cache does).
 */
static void test_store_rewrites_block(void **state)
{
	struct fx *f = *state;

	f->len = 0;
	/* x9 = address of the patched slot; sw x5, 0(x9); addi a1, a1, 1; <patched>; ecall */
	emit32(f, 0x17u | 9 << 7);                      /* auipc x9, 0 */
	emit32(f, i_type(0x13, 9, 0, 9, 16));            /* addi x9, x9, 16 */
	emit32(f, s_type(2, 9, 5, 0));                   /* sw x5, 0(x9) */
	emit32(f, i_type(0x13, 11, 0, 11, 1));           /* addi a1, a1, 1 */
	emit32(f, i_type(0x13, 10, 0, 0, 0));            /* patched: addi a0, x0, v */
	emit32(f, ECALL);
	load(f);
	for (int v = 1; v < 30; v++) {
		for (unsigned k = 0; k < 2; k++) {
			ah_set(&f->m[k], 0, ACCEL_REG_X(5), i_type(0x13, 10, 0, 0, v));
			ah_set(&f->m[k], 0, ACCEL_REG_PC, CODE);
		}
		run_both(f);
		compare(f, (unsigned)v);
		assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_X(10)), (uint64_t)v);
	}
	check_translated(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_random_blocks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_trap_in_block, setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_rewrites_block, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fp_blocks, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
