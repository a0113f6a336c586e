/*
 * test_rv64_cpu.c - unit tests of the software RV64 CPU core through accel_rv64_ops: integer,
 * M, A, Zba/Zbb/Zbs and RVC semantics, CSR rules, traps, delegation, interrupts, xRET, WFI,
 * SBI exits and kicks. Machine code is encoded by the helpers below (or, for RVC, taken from
 * GNU as) and written into a small RAM; every program ends in an ECALL that exits to the test.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "kumo/accel.h"
#include "kumo/base.h"
#include "kumo/memmap.h"

#include "accel_harness.h"

#define RAM_BASE 0x80000000ULL
#define RAM_SIZE (2ULL << 20)
#define CODE (RAM_BASE + 0x0)
#define HANDLER_M (RAM_BASE + 0x10000) /* mtvec: ECALL (vectored: ECALLs at every slot) */
#define HANDLER_S (RAM_BASE + 0x20000) /* stvec: ECALL */
#define DATA (RAM_BASE + 0x100000)

#define ECALL 0x00000073u
#define EBREAK 0x00100073u
#define MRET 0x30200073u
#define SRET 0x10200073u
#define WFI 0x10500073u
#define NOP 0x00000013u

#define INTR (1ULL << 63)
#define MS_SIE (1ULL << 1)
#define MS_MIE (1ULL << 3)
#define MS_SPIE (1ULL << 5)
#define MS_MPIE (1ULL << 7)
#define MS_SPP (1ULL << 8)
#define MS_MPP (3ULL << 11)
#define MS_FS (3ULL << 13)
#define MS_MPRV (1ULL << 17)
#define MS_TVM (1ULL << 20)
#define MS_TW (1ULL << 21)
#define MS_TSR (1ULL << 22)

enum { A0 = 10, A1 = 11, A2 = 12, A3 = 13, A6 = 16, A7 = 17, SP = 2, RA = 1 };

enum {
	C_SSTATUS = 0x100, C_SIE = 0x104, C_STVEC = 0x105, C_SCOUNTEREN = 0x106, C_SEPC = 0x141,
	C_SCAUSE = 0x142, C_STVAL = 0x143, C_SIP = 0x144, C_STIMECMP = 0x14d, C_SATP = 0x180,
	C_MSTATUS = 0x300, C_MISA = 0x301, C_MEDELEG = 0x302, C_MIDELEG = 0x303, C_MIE = 0x304,
	C_MTVEC = 0x305, C_MCOUNTEREN = 0x306, C_MENVCFG = 0x30a, C_MCOUNTINHIBIT = 0x320,
	C_MSCRATCH = 0x340, C_MEPC = 0x341, C_MCAUSE = 0x342, C_MTVAL = 0x343, C_MIP = 0x344,
	C_MHARTID = 0xf14, C_CYCLE = 0xc00, C_TIME = 0xc01, C_INSTRET = 0xc02, C_FCSR = 0x003,
	C_PMPCFG0 = 0x3a0, C_PMPADDR0 = 0x3b0,
};

/* --- encoders (unpriv 20191213 §2.3) */

static uint32_t R(unsigned op, unsigned rd, unsigned f3, unsigned rs1, unsigned rs2, unsigned f7)
{
	return f7 << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op;
}

static uint32_t I(unsigned op, unsigned rd, unsigned f3, unsigned rs1, int32_t imm)
{
	return ((uint32_t)imm & 0xfff) << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op;
}

static uint32_t S(unsigned f3, unsigned rs1, unsigned rs2, int32_t imm)
{
	uint32_t u = (uint32_t)imm;

	return ((u >> 5) & 0x7f) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | (u & 31) << 7 | 0x23;
}

static uint32_t Bt(unsigned f3, unsigned rs1, unsigned rs2, int32_t imm)
{
	uint32_t u = (uint32_t)imm;

	return ((u >> 12) & 1) << 31 | ((u >> 5) & 0x3f) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 |
	       ((u >> 1) & 0xf) << 8 | ((u >> 11) & 1) << 7 | 0x63;
}

static uint32_t J(unsigned rd, int32_t imm)
{
	uint32_t u = (uint32_t)imm;

	return ((u >> 20) & 1) << 31 | ((u >> 1) & 0x3ff) << 21 | ((u >> 11) & 1) << 20 |
	       ((u >> 12) & 0xff) << 12 | rd << 7 | 0x6f;
}

static uint32_t ADDI(unsigned rd, unsigned rs1, int32_t imm)
{
	return I(0x13, rd, 0, rs1, imm);
}

static uint32_t CSRR(unsigned f3, unsigned rd, unsigned csr, unsigned rs1)
{
	return csr << 20 | rs1 << 15 | f3 << 12 | rd << 7 | 0x73;
}

static uint32_t AMO(unsigned f5, unsigned f3, unsigned rd, unsigned rs1, unsigned rs2)
{
	return R(0x2f, rd, f3, rs1, rs2, f5 << 2);
}

/* --- a VM with one vCPU over RAM_SIZE bytes at RAM_BASE */

struct t {
	struct accel_harness h; /* one hart */
	struct accel_run *run;
	uint64_t emit; /* next address emit() writes */
};

static struct t *t_new(uint32_t ecall_mask)
{
	struct t *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	ah_init(&t->h, &(struct ah_config){.ram_base = RAM_BASE,
					   .ram_size = RAM_SIZE,
					   .ncpus = 1,
					   .ecall_exit_mask = ecall_mask});
	t->run = ah_run_state(&t->h, 0);
	t->emit = CODE;
	return t;
}

static void t_free(struct t *t)
{
	ah_fini(&t->h);
	free(t);
}

static void put32(struct t *t, uint64_t addr, uint32_t v)
{
	ah_put32(&t->h, addr, v);
}

static void emit(struct t *t, uint32_t insn)
{
	put32(t, t->emit, insn);
	t->emit += 4;
}

static uint64_t reg(struct t *t, uint32_t id)
{
	return ah_get(&t->h, 0, id);
}

static void set(struct t *t, uint32_t id, uint64_t v)
{
	ah_set(&t->h, 0, id, v);
}

static uint64_t x(struct t *t, unsigned n)
{
	return reg(t, ACCEL_REG_X(n));
}

static void setx(struct t *t, unsigned n, uint64_t v)
{
	set(t, ACCEL_REG_X(n), v);
}

static uint64_t csr(struct t *t, unsigned n)
{
	return reg(t, ACCEL_REG_CSR(n));
}

static void setcsr(struct t *t, unsigned n, uint64_t v)
{
	set(t, ACCEL_REG_CSR(n), v);
}

static uint32_t run(struct t *t)
{
	return ah_run(&t->h, 0);
}

/* Runs until the next exit and expects an ECALL exit at `pc`. */
static void run_to_ecall(struct t *t, uint64_t pc)
{
	assert_int_equal(run(t), ACCEL_EXIT_SBI);
	assert_int_equal(reg(t, ACCEL_REG_PC), pc);
}

/* Standard layout: handlers are ECALLs; program starts at CODE in M-mode. */
static struct t *t_std(void)
{
	struct t *t = t_new(0xb); /* ECALL exits from U, S and M */

	for (unsigned i = 0; i < 16; i++)
		put32(t, HANDLER_M + 4 * i, ECALL);
	put32(t, HANDLER_S, ECALL);
	setcsr(t, C_MTVEC, HANDLER_M);
	setcsr(t, C_STVEC, HANDLER_S);
	set(t, ACCEL_REG_PC, CODE);
	return t;
}

/* Runs `insn` (rd = a0, rs1 = a1, rs2 = a2) once, then ECALL; returns a0 (may trap). */
static uint64_t op_any(struct t *t, uint32_t insn, uint64_t a, uint64_t b)
{
	put32(t, CODE, insn);
	put32(t, CODE + 4, ECALL);
	set(t, ACCEL_REG_PC, CODE);
	set(t, ACCEL_REG_PRIV, 3);
	setx(t, A0, 0x5a5a5a5a5a5a5a5aULL);
	setx(t, A1, a);
	setx(t, A2, b);
	assert_int_equal(run(t), ACCEL_EXIT_SBI);
	return x(t, A0);
}

/* Like op_any, and the instruction must not trap. */
static uint64_t op(struct t *t, uint32_t insn, uint64_t a, uint64_t b)
{
	uint64_t v = op_any(t, insn, a, b);

	assert_int_equal(reg(t, ACCEL_REG_PC), CODE + 4);
	return v;
}

#define OPR(f7, f3) R(0x33, A0, f3, A1, A2, f7)
#define OPW(f7, f3) R(0x3b, A0, f3, A1, A2, f7)
#define OPI(f3, imm) I(0x13, A0, f3, A1, imm)
#define OPIW(f3, imm) I(0x1b, A0, f3, A1, imm)

static void test_alu(void **state)
{
	struct t *t = t_std();

	assert_int_equal(op(t, OPR(0, 0), 5, 7), 12);
	assert_int_equal(op(t, OPR(0x20, 0), 5, 7), (uint64_t)-2);
	assert_int_equal(op(t, OPR(0, 1), 1, 65), 2); /* shift amount uses rs2[5:0] */
	assert_int_equal(op(t, OPR(0, 2), (uint64_t)-1, 1), 1);
	assert_int_equal(op(t, OPR(0, 3), (uint64_t)-1, 1), 0);
	assert_int_equal(op(t, OPR(0, 4), 0xf0, 0xff), 0x0f);
	assert_int_equal(op(t, OPR(0, 5), 1ULL << 63, 63), 1);
	assert_int_equal(op(t, OPR(0x20, 5), 1ULL << 63, 63), (uint64_t)-1);
	assert_int_equal(op(t, OPR(0, 6), 0xf0, 0x0f), 0xff);
	assert_int_equal(op(t, OPR(0, 7), 0xf0, 0x3c), 0x30);
	assert_int_equal(op(t, OPI(0, -1), 0, 0), (uint64_t)-1);
	assert_int_equal(op(t, OPI(2, -1), (uint64_t)-2, 0), 1);
	assert_int_equal(op(t, OPI(3, -1), 5, 0), 1); /* sltiu compares with sign-extended imm */
	assert_int_equal(op(t, OPI(1, 63), 1, 0), 1ULL << 63);
	assert_int_equal(op(t, OPI(5, 0x400 | 4), 0x8000000000000000ULL, 0),
			 0xf800000000000000ULL);
	/* W ops: 32-bit results sign-extended */
	assert_int_equal(op(t, OPW(0, 0), 0x7fffffff, 1), 0xffffffff80000000ULL);
	assert_int_equal(op(t, OPW(0x20, 0), 0, 1), (uint64_t)-1);
	assert_int_equal(op(t, OPW(0, 1), 1, 31), 0xffffffff80000000ULL);
	assert_int_equal(op(t, OPW(0, 1), 1, 33), 2); /* sllw uses rs2[4:0] */
	assert_int_equal(op(t, OPW(0, 5), 0xffffffff80000000ULL, 4), 0x08000000);
	assert_int_equal(op(t, OPW(0x20, 5), 0x80000000ULL, 4), 0xfffffffff8000000ULL);
	assert_int_equal(op(t, OPIW(0, -1), 0x100000000ULL, 0), (uint64_t)-1);
	assert_int_equal(op(t, OPIW(1, 31), 1, 0), 0xffffffff80000000ULL);
	assert_int_equal(op(t, OPIW(5, 0x400 | 31), 0x80000000ULL, 0), (uint64_t)-1);
	assert_int_equal(op(t, OPIW(5, 1), 0xffffffff00000000ULL, 0), 0);
	assert_int_equal(op(t, 0x80000537 /* lui a0,0x80000 */, 0, 0), 0xffffffff80000000ULL);
	assert_int_equal(op(t, 0x00001517 /* auipc a0,0x1 */, 0, 0), CODE + 0x1000);
	/* slliw with imm[5] set is reserved */
	assert_int_equal(op_any(t, OPIW(1, 32), 1, 0), 0x5a5a5a5a5a5a5a5aULL);
	assert_int_equal(csr(t, C_MCAUSE), 2);
	assert_int_equal(csr(t, C_MTVAL), OPIW(1, 32));
	t_free(t);
}

static void test_muldiv(void **state)
{
	struct t *t = t_std();
	const uint64_t min = 1ULL << 63;

	assert_int_equal(op(t, OPR(1, 0), (uint64_t)-3, 7), (uint64_t)-21);
	assert_int_equal(op(t, OPR(1, 1), min, min), 0x4000000000000000ULL);
	assert_int_equal(op(t, OPR(1, 1), (uint64_t)-1, (uint64_t)-1), 0);
	assert_int_equal(op(t, OPR(1, 2), (uint64_t)-1, UINT64_MAX), (uint64_t)-1);
	assert_int_equal(op(t, OPR(1, 3), UINT64_MAX, UINT64_MAX), 0xfffffffffffffffeULL);
	assert_int_equal(op(t, OPR(1, 4), 42, 0), (uint64_t)-1);
	assert_int_equal(op(t, OPR(1, 4), min, (uint64_t)-1), min);
	assert_int_equal(op(t, OPR(1, 4), (uint64_t)-7, 2), (uint64_t)-3);
	assert_int_equal(op(t, OPR(1, 5), 42, 0), UINT64_MAX);
	assert_int_equal(op(t, OPR(1, 6), 7, 0), 7);
	assert_int_equal(op(t, OPR(1, 6), min, (uint64_t)-1), 0);
	assert_int_equal(op(t, OPR(1, 6), (uint64_t)-7, 2), (uint64_t)-1);
	assert_int_equal(op(t, OPR(1, 7), 7, 0), 7);
	assert_int_equal(op(t, OPW(1, 0), 0x8000, 0x10000), 0xffffffff80000000ULL);
	assert_int_equal(op(t, OPW(1, 0), 0x10000, 0x10000), 0);
	assert_int_equal(op(t, OPW(1, 4), 0x80000000ULL, (uint64_t)-1), 0xffffffff80000000ULL);
	assert_int_equal(op(t, OPW(1, 4), 5, 0), (uint64_t)-1);
	assert_int_equal(op(t, OPW(1, 5), 0x80000000ULL, 0), (uint64_t)-1);
	assert_int_equal(op(t, OPW(1, 5), 0xffffffff00000008ULL, 2), 4);
	assert_int_equal(op(t, OPW(1, 6), 0x80000000ULL, (uint64_t)-1), 0);
	assert_int_equal(op(t, OPW(1, 6), 0x123456789ULL, 0), 0x23456789);
	assert_int_equal(op(t, OPW(1, 7), 0x80000000ULL, 0), 0xffffffff80000000ULL);
	t_free(t);
}

static uint64_t ref_orc_b(uint64_t v)
{
	uint64_t r = 0;

	for (int i = 0; i < 8; i++)
		if ((v >> (8 * i)) & 0xff)
			r |= 0xffULL << (8 * i);
	return r;
}

static void test_bitmanip(void **state)
{
	struct t *t = t_std();
	const uint64_t v = 0x0123456789abcdefULL;

	/* Zbb */
	assert_int_equal(op(t, OPR(0x20, 7), 0xff, 0x0f), 0xf0);                 /* andn */
	assert_int_equal(op(t, OPR(0x20, 6), 0, 0xffffffffffffff00ULL), 0xff); /* orn */
	assert_int_equal(op(t, OPR(0x20, 4), v, v), UINT64_MAX);              /* xnor */
	assert_int_equal(op(t, OPR(0x05, 4), (uint64_t)-1, 1), (uint64_t)-1); /* min */
	assert_int_equal(op(t, OPR(0x05, 5), (uint64_t)-1, 1), 1);            /* minu */
	assert_int_equal(op(t, OPR(0x05, 6), (uint64_t)-1, 1), 1);            /* max */
	assert_int_equal(op(t, OPR(0x05, 7), (uint64_t)-1, 1), (uint64_t)-1); /* maxu */
	assert_int_equal(op(t, OPR(0x30, 1), v, 68), (v << 4) | (v >> 60));   /* rol */
	assert_int_equal(op(t, OPR(0x30, 5), v, 4), (v >> 4) | (v << 60));    /* ror */
	assert_int_equal(op(t, OPW(0x30, 1), 0x80000001ULL, 1), 3);           /* rolw */
	assert_int_equal(op(t, OPW(0x30, 5), 1, 1), 0xffffffff80000000ULL);   /* rorw */
	assert_int_equal(op(t, OPI(1, 0x600), 0, 0), 64);                     /* clz */
	assert_int_equal(op(t, OPI(1, 0x600), 1, 0), 63);
	assert_int_equal(op(t, OPI(1, 0x601), 0, 0), 64); /* ctz */
	assert_int_equal(op(t, OPI(1, 0x601), 0x100, 0), 8);
	assert_int_equal(op(t, OPI(1, 0x602), v, 0), (uint64_t)__builtin_popcountll(v)); /* cpop */
	assert_int_equal(op(t, OPI(1, 0x604), 0x80, 0), (uint64_t)-128);    /* sext.b */
	assert_int_equal(op(t, OPI(1, 0x605), 0x18000, 0), (uint64_t)-32768); /* sext.h */
	assert_int_equal(op(t, OPW(0x04, 4) & ~(31u << 20), v, 0), 0xcdef); /* zext.h */
	assert_int_equal(op(t, OPI(5, 0x287), 0x0100ff0000000010ULL, 0),
			 ref_orc_b(0x0100ff0000000010ULL));
	assert_int_equal(op(t, OPI(5, 0x6b8), v, 0), 0xefcdab8967452301ULL); /* rev8 */
	assert_int_equal(op(t, OPI(5, 0x600 | 8), v, 0), (v >> 8) | (v << 56)); /* rori */
	assert_int_equal(op(t, OPIW(1, 0x600), 0, 0), 32);                     /* clzw */
	assert_int_equal(op(t, OPIW(1, 0x600), 0xffffffff00010000ULL, 0), 15);
	assert_int_equal(op(t, OPIW(1, 0x601), 0xff00000000ULL, 0), 32);       /* ctzw */
	assert_int_equal(op(t, OPIW(1, 0x602), 0xffffffff0000000fULL, 0), 4);  /* cpopw */
	assert_int_equal(op(t, OPIW(5, 0x600 | 4), 0x1f, 0), 0xfffffffff0000001ULL); /* roriw */
	/* Zba */
	assert_int_equal(op(t, OPR(0x10, 2), 3, 100), 106);
	assert_int_equal(op(t, OPR(0x10, 4), 3, 100), 112);
	assert_int_equal(op(t, OPR(0x10, 6), 3, 100), 124);
	assert_int_equal(op(t, OPW(0x04, 0), 0xffffffff00000001ULL, 1), 2); /* add.uw */
	assert_int_equal(op(t, OPW(0x10, 2), 0xffffffff80000000ULL, 1), 0x100000001ULL);
	assert_int_equal(op(t, OPW(0x10, 4), 0xffffffff80000000ULL, 0), 0x200000000ULL);
	assert_int_equal(op(t, OPW(0x10, 6), 0xffffffff80000000ULL, 0), 0x400000000ULL);
	assert_int_equal(op(t, OPIW(1, 0x080 | 33), 0xffffffff80000001ULL, 0),
			 0x80000001ULL << 33); /* slli.uw */
	/* Zbs */
	assert_int_equal(op(t, OPR(0x14, 1), 0, 67), 8);                    /* bset */
	assert_int_equal(op(t, OPR(0x24, 1), UINT64_MAX, 63), UINT64_MAX >> 1); /* bclr */
	assert_int_equal(op(t, OPR(0x24, 5), v, 8), 1);                     /* bext */
	assert_int_equal(op(t, OPR(0x34, 1), 1, 0), 0);                     /* binv */
	assert_int_equal(op(t, OPI(1, 0x280 | 40), 0, 0), 1ULL << 40);      /* bseti */
	assert_int_equal(op(t, OPI(1, 0x480 | 0), 3, 0), 2);                /* bclri */
	assert_int_equal(op(t, OPI(1, 0x680 | 63), 0, 0), 1ULL << 63);      /* binvi */
	assert_int_equal(op(t, OPI(5, 0x480 | 9), v, 0), 0);                /* bexti */
	t_free(t);
}

static void test_branches_jumps(void **state)
{
	struct t *t = t_std();

	emit(t, ADDI(A0, 0, 0));
	emit(t, ADDI(A1, 0, 10));
	emit(t, ADDI(A0, A0, 3)); /* loop: */
	emit(t, ADDI(A1, A1, -1));
	emit(t, Bt(1, A1, 0, -8)); /* bne a1, x0, loop */
	emit(t, J(RA, 8));         /* 0x14: jal ra, +8: skips the next one */
	emit(t, ADDI(A0, 0, 999)); /* 0x18 */
	emit(t, ADDI(A2, 0, 0x41)); /* 0x1c: odd offset of the jalr target */
	emit(t, NOP);
	emit(t, 0x800006b7);                  /* 0x24: lui a3, 0x80000 */
	emit(t, R(0x3b, A3, 0, A3, 0, 0x04)); /* 0x28: add.uw a3, a3, x0 = 0x80000000 */
	emit(t, R(0x33, A2, 0, A2, A3, 0));   /* 0x2c: a2 = CODE + 0x41 */
	emit(t, I(0x67, A3, 0, A2, 0));       /* 0x30: jalr a3, 0(a2) -> CODE + 0x40 */
	put32(t, CODE + 0x40, Bt(4, A0, 0, 8));  /* blt a0, x0: not taken */
	put32(t, CODE + 0x44, Bt(7, A0, A1, 8)); /* bgeu a0, a1: taken */
	put32(t, CODE + 0x48, ADDI(A0, 0, 998));
	put32(t, CODE + 0x4c, ECALL);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, CODE + 0x4c);
	assert_int_equal(x(t, A0), 30);
	assert_int_equal(x(t, RA), CODE + 0x18);
	assert_int_equal(x(t, A3), CODE + 0x34);
	t_free(t);
}

static void test_loads_stores(void **state)
{
	struct t *t = t_std();

	setx(t, A1, DATA);
	setx(t, A2, 0x80818283f4f5f6f7ULL);
	emit(t, S(3, A1, A2, 0));              /* sd a2, 0(a1) */
	emit(t, I(0x03, 5, 0, A1, 0));         /* lb t0 */
	emit(t, I(0x03, 6, 4, A1, 0));         /* lbu t1 */
	emit(t, I(0x03, 7, 1, A1, 6));         /* lh t2, 6 */
	emit(t, I(0x03, 28, 5, A1, 6));        /* lhu t3 */
	emit(t, I(0x03, 29, 2, A1, 4));        /* lw t4, 4 */
	emit(t, I(0x03, 30, 6, A1, 4));        /* lwu t5 */
	emit(t, I(0x03, 31, 3, A1, 1));        /* ld t6, 1: misaligned */
	emit(t, S(0, A1, A2, 16));             /* sb */
	emit(t, S(1, A1, A2, 18));             /* sh */
	emit(t, S(2, A1, A2, 20));             /* sw */
	emit(t, ECALL);
	run_to_ecall(t, CODE + 44);
	assert_int_equal(x(t, 5), (uint64_t)(int64_t)(int8_t)0xf7);
	assert_int_equal(x(t, 6), 0xf7);
	assert_int_equal(x(t, 7), (uint64_t)(int64_t)(int16_t)0x8081);
	assert_int_equal(x(t, 28), 0x8081);
	assert_int_equal(x(t, 29), 0xffffffff80818283ULL);
	assert_int_equal(x(t, 30), 0x80818283ULL);
	assert_int_equal(x(t, 31), 0x0080818283f4f5f6ULL);
	assert_int_equal(ah_get64(&t->h, DATA + 16), 0xf4f5f6f7f6f700f7ULL);

	/* A load from unmapped memory is a load access fault with tval = the address. */
	t->emit = CODE;
	setx(t, A1, 0x1000);
	emit(t, I(0x03, A0, 3, A1, 8));
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, HANDLER_M);
	assert_int_equal(csr(t, C_MCAUSE), 5);
	assert_int_equal(csr(t, C_MTVAL), 0x1008);
	assert_int_equal(csr(t, C_MEPC), CODE);
	t_free(t);
}

/* RVC pairs from GNU as: each compressed parcel and the 32-bit instruction it stands for. */
static const struct {
	uint16_t c;
	uint32_t full;
} rvc_pairs[] = {
	{0x556d, 0xffb00513}, /* c.li a0,-5 / addi a0,zero,-5 */
	{0x051d, 0x00750513}, /* c.addi a0,7 */
	{0x357d, 0xfff5051b}, /* c.addiw a0,-1 */
	{0x1522, 0x02851513}, /* c.slli a0,40 */
	{0x9119, 0x02655513}, /* c.srli a0,38 */
	{0x8505, 0x40155513}, /* c.srai a0,1 */
	{0x9979, 0xffe57513}, /* c.andi a0,-2 */
	{0x85aa, 0x00a005b3}, /* c.mv a1,a0 */
	{0x95aa, 0x00a585b3}, /* c.add a1,a0 */
	{0x8d89, 0x40a585b3}, /* c.sub a1,a0 */
	{0x8da9, 0x00a5c5b3}, /* c.xor a1,a0 */
	{0x8dc9, 0x00a5e5b3}, /* c.or a1,a0 */
	{0x8de9, 0x00a5f5b3}, /* c.and a1,a0 */
	{0x9d89, 0x40a585bb}, /* c.subw a1,a0 */
	{0x9da9, 0x00a585bb}, /* c.addw a1,a0 */
	{0x7605, 0xfffe1637}, /* c.lui a2,0xfffe1 */
	{0x7139, 0xfc010113}, /* c.addi16sp sp,-64 */
	{0x0834, 0x01810693}, /* c.addi4spn a3,sp,24 */
	{0xe42a, 0x00a13423}, /* c.sdsp a0,8(sp) */
	{0x6722, 0x00813703}, /* c.ldsp a4,8(sp) */
	{0xc82a, 0x00a12823}, /* c.swsp a0,16(sp) */
	{0x47c2, 0x01012783}, /* c.lwsp a5,16(sp) */
	{0xe688, 0x00a6b423}, /* c.sd a0,8(a3) */
	{0x6698, 0x0086b703}, /* c.ld a4,8(a3) */
	{0xc2c8, 0x00a6a223}, /* c.sw a0,4(a3) */
	{0x42dc, 0x0046a783}, /* c.lw a5,4(a3) */
	{0xac2a, 0x00a13c27}, /* c.fsdsp fa0,24(sp) */
	{0x25e2, 0x01813587}, /* c.fldsp fa1,24(sp) */
	{0xaa88, 0x00a6b827}, /* c.fsd fa0,16(a3) */
	{0x2a90, 0x0106b607}, /* c.fld fa2,16(a3) */
};

struct snap {
	uint64_t x[32], f[32];
	uint8_t mem[256];
};

static void rvc_run_one(struct t *t, uint32_t insn, bool compressed, struct snap *s)
{
	memset(t->h.ram + (DATA - RAM_BASE), 0, 256);
	if (compressed) {
		ah_put16(&t->h, CODE, (uint16_t)insn);
		put32(t, CODE + 2, ECALL);
	} else {
		put32(t, CODE, insn);
		put32(t, CODE + 4, ECALL);
	}
	for (unsigned i = 1; i < 32; i++)
		setx(t, i, 0x1111111111111111ULL * (i & 15) + i);
	setx(t, SP, DATA + 0x80);
	setx(t, A3, DATA + 0x40);
	setx(t, A0, 0xfedcba9876543210ULL);
	for (unsigned i = 0; i < 32; i++)
		set(t, ACCEL_REG_F(i), 0x4000000000000000ULL + i);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, CODE + (compressed ? 2 : 4));
	for (unsigned i = 0; i < 32; i++) {
		s->x[i] = x(t, i);
		s->f[i] = reg(t, ACCEL_REG_F(i));
	}
	memcpy(s->mem, t->h.ram + (DATA - RAM_BASE), 256);
}

static void test_rvc_expansion(void **state)
{
	struct t *t = t_std();
	struct snap a, b;

	setcsr(t, C_MSTATUS, 1ULL << 13); /* FS = Initial for C.FLD & co */
	for (unsigned i = 0; i < ARRAY_SIZE(rvc_pairs); i++) {
		rvc_run_one(t, rvc_pairs[i].c, true, &a);
		rvc_run_one(t, rvc_pairs[i].full, false, &b);
		if (memcmp(&a, &b, sizeof(a)))
			fail_msg("RVC %04x differs from %08x", rvc_pairs[i].c, rvc_pairs[i].full);
	}
	t_free(t);
}

static void test_rvc_control_and_illegal(void **state)
{
	struct t *t = t_std();
	static const uint16_t illegal[] = {
		0x0000, /* all-zero parcel */
		0x4002, /* c.lwsp x0: reserved */
		0x6101, /* c.addi16sp 0: reserved */
		0x6081, /* c.lui ra, 0: reserved */
		0x8000, /* quadrant 0 funct3 100: reserved */
		0x8002, /* c.jr x0: reserved */
		0x2001, /* c.addiw x0: reserved */
		0x9c41, /* c.subw-space funct 10: reserved */
	};

	/* c.beqz a0 (not taken), c.bnez a0 +4 (taken), c.j +4, c.jalr a1 */
	setx(t, A0, 1);
	setx(t, A1, CODE + 0x10);
	ah_put16(&t->h, CODE + 0, 0xc111); /* c.beqz a0, +4 */
	ah_put16(&t->h, CODE + 2, 0xe109); /* c.bnez a0, +2 -> CODE + 4 */
	ah_put16(&t->h, CODE + 4, 0xa011); /* c.j +4 -> CODE + 8 */
	ah_put16(&t->h, CODE + 6, 0x0001);
	ah_put16(&t->h, CODE + 8, 0x9582); /* c.jalr a1 -> CODE + 0x10, ra = CODE + 10 */
	put32(t, CODE + 0x10, ECALL);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, CODE + 0x10);
	assert_int_equal(x(t, RA), CODE + 10);

	/* c.ebreak: breakpoint, tval = pc */
	ah_put16(&t->h, CODE, 0x9002);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, HANDLER_M);
	assert_int_equal(csr(t, C_MCAUSE), 3);
	assert_int_equal(csr(t, C_MEPC), CODE);
	assert_int_equal(csr(t, C_MTVAL), CODE);

	for (unsigned i = 0; i < ARRAY_SIZE(illegal); i++) {
		ah_put16(&t->h, CODE, illegal[i]);
		ah_put16(&t->h, CODE + 2, 0);
		set(t, ACCEL_REG_PC, CODE);
		run_to_ecall(t, HANDLER_M);
		assert_int_equal(csr(t, C_MCAUSE), 2);
		if (csr(t, C_MTVAL) != illegal[i])
			fail_msg("parcel %04x: mtval %llx", illegal[i],
				 (unsigned long long)csr(t, C_MTVAL));
	}
	/* A 32-bit illegal instruction reports all 32 bits. */
	put32(t, CODE, 0xffffffff);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, HANDLER_M);
	assert_int_equal(csr(t, C_MCAUSE), 2);
	assert_int_equal(csr(t, C_MTVAL), 0xffffffff);
	t_free(t);
}

static void test_atomics(void **state)
{
	struct t *t = t_std();

	ah_put64(&t->h, DATA, 0x00000000fffffffeULL);
	assert_int_equal(op(t, AMO(0x00, 2, A0, A1, A2), DATA, 1), (uint64_t)-2); /* amoadd.w */
	assert_int_equal(ah_get64(&t->h, DATA), 0x00000000ffffffffULL);
	assert_int_equal(op(t, AMO(0x01, 3, A0, A1, A2), DATA, 7), 0xffffffffULL); /* amoswap.d */
	assert_int_equal(ah_get64(&t->h, DATA), 7);
	assert_int_equal(op(t, AMO(0x10, 3, A0, A1, A2), DATA, (uint64_t)-5), 7); /* amomin.d */
	assert_int_equal(ah_get64(&t->h, DATA), (uint64_t)-5);
	assert_int_equal(op(t, AMO(0x18, 3, A0, A1, A2), DATA, 3), (uint64_t)-5); /* amominu.d */
	assert_int_equal(ah_get64(&t->h, DATA), 3);
	assert_int_equal(op(t, AMO(0x14, 2, A0, A1, A2), DATA, 0x80000000ULL), 3); /* amomax.w */
	assert_int_equal(ah_get64(&t->h, DATA), 3);
	assert_int_equal(op(t, AMO(0x1c, 2, A0, A1, A2), DATA, 0x80000000ULL), 3); /* amomaxu.w */
	assert_int_equal(ah_get64(&t->h, DATA), 0x80000000ULL);
	assert_int_equal(op(t, AMO(0x08, 3, A0, A1, A2), DATA, 1), 0x80000000ULL); /* amoor.d */
	assert_int_equal(op(t, AMO(0x0c, 3, A0, A1, A2), DATA, 0xff), 0x80000001ULL); /* amoand */
	assert_int_equal(op(t, AMO(0x04, 3, A0, A1, A2), DATA, 0x3), 1); /* amoxor.d */
	assert_int_equal(ah_get64(&t->h, DATA), 2);

	/* LR/SC: success, then failure without a reservation. */
	ah_put64(&t->h, DATA, 0xffffffff80000000ULL);
	t->emit = CODE;
	setx(t, A1, DATA);
	setx(t, A2, 0x1234);
	emit(t, AMO(0x02, 2, A3, A1, 0));  /* lr.w a3, (a1) */
	emit(t, AMO(0x03, 2, A0, A1, A2)); /* sc.w a0, a2, (a1) */
	emit(t, AMO(0x03, 3, 14, A1, A2)); /* sc.d a4, a2, (a1): no reservation */
	emit(t, ECALL);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, CODE + 12);
	assert_int_equal(x(t, A3), 0xffffffff80000000ULL);
	assert_int_equal(x(t, A0), 0);
	assert_int_equal(x(t, 14), 1);
	assert_int_equal(ah_get64(&t->h, DATA), 0xffffffff00001234ULL);

	/* Misaligned AMO: store/AMO address misaligned. */
	op_any(t, AMO(0x00, 3, A0, A1, A2), DATA + 4, 1);
	assert_int_equal(reg(t, ACCEL_REG_PC), HANDLER_M);
	assert_int_equal(csr(t, C_MCAUSE), 6);
	assert_int_equal(csr(t, C_MTVAL), DATA + 4);
	t_free(t);
}

static void test_csr_rules(void **state)
{
	struct t *t = t_std();
	uint32_t bad;

	/* csrrw / csrrs / csrrc / immediate forms on mscratch */
	setx(t, A1, 0xf0);
	emit(t, CSRR(1, 0, C_MSCRATCH, A1)); /* csrw mscratch, a1 */
	emit(t, CSRR(2, A0, C_MSCRATCH, RA));  /* csrrs a0, mscratch, ra */
	emit(t, CSRR(6, A2, C_MSCRATCH, 0x3)); /* csrrsi a2, mscratch, 3 */
	emit(t, CSRR(7, A3, C_MSCRATCH, 0x10)); /* csrrci a3, mscratch, 0x10 */
	emit(t, CSRR(2, 14, C_MHARTID, 0));    /* csrr a4, mhartid: read-only is fine */
	emit(t, ECALL);
	setx(t, RA, 0x100);
	run_to_ecall(t, CODE + 20);
	assert_int_equal(x(t, A0), 0xf0);
	assert_int_equal(x(t, A2), 0x1f0);
	assert_int_equal(x(t, A3), 0x1f3);
	assert_int_equal(csr(t, C_MSCRATCH), 0x1e3);
	assert_int_equal(x(t, 14), 0);

	/* Writes to read-only CSRs, odd pmpcfg on RV64, unknown CSRs: illegal, tval = insn. */
	bad = CSRR(1, 0, C_MHARTID, A1);
	assert_int_equal(op_any(t, bad, 0, 0), 0x5a5a5a5a5a5a5a5aULL);
	assert_int_equal(csr(t, C_MCAUSE), 2);
	assert_int_equal(csr(t, C_MTVAL), bad);
	bad = CSRR(2, A0, C_PMPCFG0 + 1, 0);
	op_any(t, bad, 0, 0);
	assert_int_equal(csr(t, C_MTVAL), bad);
	bad = CSRR(2, A0, 0x7ff, 0);
	op_any(t, bad, 0, 0);
	assert_int_equal(csr(t, C_MCAUSE), 2);
	assert_int_equal(csr(t, C_MTVAL), bad);

	/* WARL: satp ignores unsupported modes; MPP ignores 2; UXL/SXL read 2; misa. */
	setcsr(t, C_SATP, (8ULL << 60) | 0x1234);
	setcsr(t, C_SATP, (5ULL << 60) | 0x5678);
	assert_int_equal(csr(t, C_SATP), (8ULL << 60) | 0x1234);
	setcsr(t, C_SATP, 0);
	setcsr(t, C_MSTATUS, 1ULL << 11);
	setcsr(t, C_MSTATUS, 2ULL << 11);
	assert_int_equal(csr(t, C_MSTATUS) & MS_MPP, 1ULL << 11);
	assert_int_equal((csr(t, C_MSTATUS) >> 32) & 0xf, 0xa);
	assert_int_equal(csr(t, C_MISA) >> 62, 2);
	assert_true(csr(t, C_MISA) & (1u << ('C' - 'A')));
	assert_int_equal(csr(t, C_MEDELEG), 0);
	setcsr(t, C_MEDELEG, UINT64_MAX);
	assert_int_equal(csr(t, C_MEDELEG) & (1u << 11), 0);
	setcsr(t, C_MIDELEG, UINT64_MAX);
	assert_int_equal(csr(t, C_MIDELEG), 0x222);

	/* PMP: locked entries ignore writes. */
	setcsr(t, C_PMPADDR0, 0x1000);
	setcsr(t, C_PMPCFG0, 0x80 | 0x18 | 0x7);
	setcsr(t, C_PMPADDR0, 0x2000);
	setcsr(t, C_PMPCFG0, 0);
	assert_int_equal(csr(t, C_PMPADDR0), 0x1000);
	assert_int_equal(csr(t, C_PMPCFG0) & 0xff, 0x9f);
	t_free(t);
}

static void test_csr_privilege(void **state)
{
	struct t *t = t_std();
	uint32_t rd_mstatus = CSRR(2, A0, C_MSTATUS, 0);
	uint32_t rd_cycle = CSRR(2, A0, C_CYCLE, 0);

	/* S-mode reading an M CSR: illegal, handled in M. */
	put32(t, CODE, rd_mstatus);
	set(t, ACCEL_REG_PRIV, 1);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, HANDLER_M);
	assert_int_equal(csr(t, C_MCAUSE), 2);
	assert_int_equal(csr(t, C_MTVAL), rd_mstatus);
	assert_int_equal((csr(t, C_MSTATUS) & MS_MPP) >> 11, 1);

	/* sstatus is a view: MIE is invisible, SIE writes land in mstatus. */
	setcsr(t, C_MSTATUS, MS_MIE | MS_SIE);
	assert_int_equal(csr(t, C_SSTATUS) & (MS_MIE | MS_SIE), MS_SIE);
	setcsr(t, C_SSTATUS, 0);
	assert_int_equal(csr(t, C_MSTATUS) & (MS_MIE | MS_SIE), MS_MIE);

	/* Counters: U-mode needs both mcounteren and scounteren bits. */
	put32(t, CODE, rd_cycle);
	put32(t, CODE + 4, ECALL);
	set(t, ACCEL_REG_PRIV, 0);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, HANDLER_M);
	assert_int_equal(csr(t, C_MCAUSE), 2);
	setcsr(t, C_MCOUNTEREN, 1);
	setcsr(t, C_SCOUNTEREN, 1);
	set(t, ACCEL_REG_PRIV, 0);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, CODE + 4);
	assert_int_equal(t->run->sbi.priv, 0);

	/* TVM: satp and SFENCE.VMA trap in S-mode; SFENCE.VMA always traps in U-mode. */
	setcsr(t, C_MSTATUS, MS_TVM);
	put32(t, CODE, CSRR(2, A0, C_SATP, 0));
	set(t, ACCEL_REG_PRIV, 1);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, HANDLER_M);
	assert_int_equal(csr(t, C_MCAUSE), 2);
	put32(t, CODE, 0x12000073);
	set(t, ACCEL_REG_PRIV, 1);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, HANDLER_M);
	assert_int_equal(csr(t, C_MTVAL), 0x12000073);
	setcsr(t, C_MSTATUS, 0);
	set(t, ACCEL_REG_PRIV, 1);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, CODE + 4);
	set(t, ACCEL_REG_PRIV, 0);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, HANDLER_M);

	/* WFI: illegal in U-mode, and in S-mode with TW. */
	put32(t, CODE, WFI);
	set(t, ACCEL_REG_PRIV, 0);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, HANDLER_M);
	assert_int_equal(csr(t, C_MTVAL), WFI);
	setcsr(t, C_MSTATUS, MS_TW);
	set(t, ACCEL_REG_PRIV, 1);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, HANDLER_M);
	assert_int_equal(csr(t, C_MCAUSE), 2);
	t_free(t);
}

static void test_delegation(void **state)
{
	struct t *t = t_std();

	put32(t, CODE, EBREAK);
	/* Not delegated: U-mode breakpoint goes to M. */
	set(t, ACCEL_REG_PRIV, 0);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, HANDLER_M);
	assert_int_equal(t->run->sbi.priv, 3);
	assert_int_equal(csr(t, C_MCAUSE), 3);
	assert_int_equal(csr(t, C_MSTATUS) & MS_MPP, 0);

	/* Delegated: goes to S with SPP = U and SPIE = the old SIE. */
	setcsr(t, C_MEDELEG, 1u << 3);
	setcsr(t, C_MSTATUS, MS_SIE);
	set(t, ACCEL_REG_PRIV, 0);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, HANDLER_S);
	assert_int_equal(t->run->sbi.priv, 1);
	assert_int_equal(csr(t, C_SCAUSE), 3);
	assert_int_equal(csr(t, C_SEPC), CODE);
	assert_int_equal(csr(t, C_STVAL), CODE);
	assert_int_equal(csr(t, C_MSTATUS) & (MS_SIE | MS_SPIE | MS_SPP), MS_SPIE);

	/* From S: SPP = S. */
	set(t, ACCEL_REG_PRIV, 1);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, HANDLER_S);
	assert_true(csr(t, C_MSTATUS) & MS_SPP);

	/* Traps taken in M are never delegated. */
	setcsr(t, C_MCAUSE, 0);
	set(t, ACCEL_REG_PRIV, 3);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, HANDLER_M);
	assert_int_equal(csr(t, C_MCAUSE), 3);

	/* ECALL from S without an exit bit traps with cause 9. */
	t_free(t);
	t = t_new(1u << 3);
	put32(t, HANDLER_M, ECALL);
	setcsr(t, C_MTVEC, HANDLER_M);
	put32(t, CODE, ECALL);
	set(t, ACCEL_REG_PRIV, 1);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, HANDLER_M);
	assert_int_equal(csr(t, C_MCAUSE), 9);
	assert_int_equal(csr(t, C_MEPC), CODE);
	t_free(t);
}

static void test_xret(void **state)
{
	struct t *t = t_std();

	/* MRET to S: MIE = MPIE, MPIE = 1, MPP = U, MPRV cleared. */
	put32(t, CODE, MRET);
	put32(t, CODE + 0x100, ECALL);
	setcsr(t, C_MEPC, CODE + 0x100);
	setcsr(t, C_MSTATUS, MS_MPIE | (1ULL << 11) | MS_MPRV);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, CODE + 0x100);
	assert_int_equal(t->run->sbi.priv, 1);
	assert_int_equal(csr(t, C_MSTATUS) & (MS_MIE | MS_MPIE | MS_MPP | MS_MPRV),
			 MS_MIE | MS_MPIE);

	/* SRET to U from S. */
	put32(t, CODE, SRET);
	setcsr(t, C_SEPC, CODE + 0x100);
	setcsr(t, C_MSTATUS, MS_SPIE);
	set(t, ACCEL_REG_PRIV, 1);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, CODE + 0x100);
	assert_int_equal(t->run->sbi.priv, 0);
	assert_int_equal(csr(t, C_MSTATUS) & (MS_SIE | MS_SPIE | MS_SPP), MS_SIE | MS_SPIE);

	/* SRET in S with TSR, SRET in U, MRET in S: illegal. */
	setcsr(t, C_MSTATUS, MS_TSR);
	set(t, ACCEL_REG_PRIV, 1);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, HANDLER_M);
	assert_int_equal(csr(t, C_MCAUSE), 2);
	assert_int_equal(csr(t, C_MTVAL), SRET);
	setcsr(t, C_MSTATUS, 0);
	set(t, ACCEL_REG_PRIV, 0);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, HANDLER_M);
	assert_int_equal(csr(t, C_MCAUSE), 2);
	put32(t, CODE, MRET);
	set(t, ACCEL_REG_PRIV, 1);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, HANDLER_M);
	assert_int_equal(csr(t, C_MTVAL), MRET);
	t_free(t);
}

/* Runs a NOP + ECALL program at priv; returns the trap cause if a handler ran, else ~0. */
static uint64_t irq_probe(struct t *t, unsigned priv)
{
	put32(t, CODE, NOP);
	put32(t, CODE + 4, ECALL);
	setcsr(t, C_MCAUSE, 0);
	setcsr(t, C_SCAUSE, 0);
	set(t, ACCEL_REG_PRIV, priv);
	set(t, ACCEL_REG_PC, CODE);
	assert_int_equal(run(t), ACCEL_EXIT_SBI);
	if (reg(t, ACCEL_REG_PC) == HANDLER_M)
		return csr(t, C_MCAUSE);
	if (reg(t, ACCEL_REG_PC) == HANDLER_S)
		return csr(t, C_SCAUSE) | (1ULL << 62);
	assert_int_equal(reg(t, ACCEL_REG_PC), CODE + 4);
	return ~0ULL;
}

static void test_interrupts(void **state)
{
	struct t *t = t_std();
	const struct accel_ops *o = t->h.ops;

	setcsr(t, C_MIE, 0xaaa);
	assert_int_equal(o->set_interrupt(t->h.cpu[0], ACCEL_IRQ_MTI, true), 0);
	assert_int_equal(o->set_interrupt(t->h.cpu[0], ACCEL_IRQ_MSI, true), 0);
	assert_int_equal(o->set_interrupt(t->h.cpu[0], 4, true), -EINVAL);
	/* M-mode with MIE = 0: masked. */
	assert_int_equal(irq_probe(t, 3), ~0ULL);
	/* Priority MSI over MTI; MEI over both. */
	setcsr(t, C_MSTATUS, MS_MIE);
	assert_int_equal(irq_probe(t, 3), INTR | 3);
	assert_int_equal(csr(t, C_MEPC), CODE);
	assert_int_equal(csr(t, C_MSTATUS) & (MS_MIE | MS_MPIE), MS_MPIE);
	o->set_interrupt(t->h.cpu[0], ACCEL_IRQ_MEI, true);
	o->set_interrupt(t->h.cpu[0], ACCEL_IRQ_SEI, true);
	setcsr(t, C_MSTATUS, MS_MIE);
	assert_int_equal(irq_probe(t, 3), INTR | 11);
	o->set_interrupt(t->h.cpu[0], ACCEL_IRQ_MEI, false);
	o->set_interrupt(t->h.cpu[0], ACCEL_IRQ_MSI, false);
	setcsr(t, C_MSTATUS, MS_MIE);
	assert_int_equal(irq_probe(t, 3), INTR | 7);
	o->set_interrupt(t->h.cpu[0], ACCEL_IRQ_MTI, false);
	setcsr(t, C_MSTATUS, MS_MIE);
	assert_int_equal(irq_probe(t, 3), INTR | 9); /* SEI not delegated: to M */
	assert_true(csr(t, C_MIP) & (1u << 9));
	/* M-level interrupts are always enabled below M, whatever MIE says. */
	setcsr(t, C_MSTATUS, 0);
	assert_int_equal(irq_probe(t, 1), INTR | 9);

	/* Delegated SEI: never taken in M; in S only with SIE; in U always. */
	setcsr(t, C_MIDELEG, 1u << 9);
	setcsr(t, C_MSTATUS, MS_MIE | MS_SIE);
	assert_int_equal(irq_probe(t, 3), ~0ULL);
	setcsr(t, C_MSTATUS, 0);
	assert_int_equal(irq_probe(t, 1), ~0ULL);
	setcsr(t, C_MSTATUS, MS_SIE);
	assert_int_equal(irq_probe(t, 1), (1ULL << 62) | INTR | 9);
	assert_int_equal(csr(t, C_SEPC), CODE);
	setcsr(t, C_MSTATUS, 0);
	assert_int_equal(irq_probe(t, 0), (1ULL << 62) | INTR | 9);
	/* sie masks it too. */
	setcsr(t, C_SIE, 0);
	assert_int_equal(csr(t, C_MIE), 0x8aa);
	assert_int_equal(irq_probe(t, 0), ~0ULL);
	o->set_interrupt(t->h.cpu[0], ACCEL_IRQ_SEI, false);

	/* Software SSIP through mip, taken by M (not delegated), vectored mtvec. */
	setcsr(t, C_MIE, 0xaaa);
	setcsr(t, C_MIDELEG, 0);
	setcsr(t, C_MTVEC, HANDLER_M | 1);
	put32(t, CODE, CSRR(6, 0, C_MIP, 2)); /* csrsi mip, SSIP */
	put32(t, CODE + 4, NOP);
	setcsr(t, C_MSTATUS, MS_MIE);
	set(t, ACCEL_REG_PRIV, 3);
	set(t, ACCEL_REG_PC, CODE);
	assert_int_equal(run(t), ACCEL_EXIT_SBI);
	assert_int_equal(reg(t, ACCEL_REG_PC), HANDLER_M + 4 * 1);
	assert_int_equal(csr(t, C_MCAUSE), INTR | 1);
	assert_int_equal(csr(t, C_MEPC), CODE + 4); /* taken right after the enabling write */

	/* An SSIP raised from outside (an SBI IPI) is acknowledged by clearing sip.SSIP. */
	setcsr(t, C_MIP, 0);
	setcsr(t, C_MIDELEG, 1u << 1);
	t->h.ops->set_interrupt(t->h.cpu[0], ACCEL_IRQ_SSI, true);
	assert_true(csr(t, C_SIP) & 2);
	put32(t, CODE, CSRR(7, 0, C_SIP, 2)); /* csrci sip, SSIP */
	put32(t, CODE + 4, ECALL);
	setcsr(t, C_MSTATUS, 0);
	set(t, ACCEL_REG_PRIV, 1);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, CODE + 4);
	assert_int_equal(csr(t, C_MIP) & 2, 0);
	t_free(t);
}

/*
 * ACCEL_REG_MIP_SOFT (what a snapshot saves): the bits the hart holds itself, software's and an
 * SBI IPI's SSIP, never the level of a device line, which mip reads as set too (§3.1.9).
 */
static void test_mip_soft(void **state)
{
	struct t *t = t_std();
	const struct accel_ops *o = t->h.ops;

	o->set_interrupt(t->h.cpu[0], ACCEL_IRQ_SEI, true);
	o->set_interrupt(t->h.cpu[0], ACCEL_IRQ_MSI, true);
	assert_int_equal(csr(t, C_MIP) & 0x20a, 0x208);
	assert_int_equal(reg(t, ACCEL_REG_MIP_SOFT), 0);
	/* A restore writes it back: the line's level must not become the software SEIP. */
	set(t, ACCEL_REG_MIP_SOFT, reg(t, ACCEL_REG_MIP_SOFT));
	o->set_interrupt(t->h.cpu[0], ACCEL_IRQ_SEI, false);
	assert_int_equal(csr(t, C_MIP) & 0x200, 0);
	/* Software's SEIP and SSIP, and an SSIP raised for an IPI, travel in it. */
	setcsr(t, C_MIP, 0x200);
	o->set_interrupt(t->h.cpu[0], ACCEL_IRQ_SSI, true);
	assert_int_equal(reg(t, ACCEL_REG_MIP_SOFT), 0x202);
	set(t, ACCEL_REG_MIP_SOFT, 0x2);
	assert_int_equal(csr(t, C_MIP) & 0x20a, 0xa);
	assert_int_equal(reg(t, ACCEL_REG_MIP_SOFT), 0x2);
	/* Machine-level bits are not software's to write. */
	set(t, ACCEL_REG_MIP_SOFT, 0xaaa);
	assert_int_equal(reg(t, ACCEL_REG_MIP_SOFT) & 0x888, 0);
	t_free(t);
}

struct delayed {
	struct t *t;
	int what; /* 0 kick, 1 raise MEI */
	unsigned delay_ms;
};

static void *delayed_thread(void *arg)
{
	struct delayed *d = arg;

	usleep(d->delay_ms * 1000);
	if (d->what == 0)
		d->t->h.ops->vcpu_kick(d->t->h.cpu[0]);
	else
		d->t->h.ops->set_interrupt(d->t->h.cpu[0], ACCEL_IRQ_MEI, true);
	return NULL;
}

static void test_wfi_halt_and_wake(void **state)
{
	struct t *t = t_std();
	struct delayed d = {.t = t, .what = 1, .delay_ms = 20};
	pthread_t th;
	uint64_t start, deadline;

	/* MEIE set, MIE clear: the interrupt wakes WFI without being taken. */
	setcsr(t, C_MIE, 1u << 11);
	emit(t, WFI);
	emit(t, ECALL);
	set(t, ACCEL_REG_PC, CODE);
	assert_int_equal(run(t), ACCEL_EXIT_HALT);
	assert_int_equal(t->run->halt.deadline_ticks, UINT64_MAX);
	assert_int_equal(reg(t, ACCEL_REG_PC), CODE + 4);
	assert_int_equal(pthread_create(&th, NULL, delayed_thread, &d), 0);
	start = clock_ns();
	t->h.ops->vcpu_wait(t->h.cpu[0], UINT64_MAX);
	assert_true(clock_ns() - start >= 10 * 1000000ULL);
	pthread_join(th, NULL);
	run_to_ecall(t, CODE + 4);

	/* Timer: HALT reports mtimecmp as the deadline; vcpu_wait sleeps until then. */
	t->h.ops->set_interrupt(t->h.cpu[0], ACCEL_IRQ_MEI, false);
	setcsr(t, C_MIE, 1u << 7);
	deadline = clock_guest_ticks() + KUMO_TIMEBASE_HZ / 50; /* 20 ms */
	t->h.ops->set_timer(t->h.cpu[0], deadline);
	set(t, ACCEL_REG_PC, CODE);
	assert_int_equal(run(t), ACCEL_EXIT_HALT);
	assert_int_equal(t->run->halt.deadline_ticks, deadline);
	t->h.ops->vcpu_wait(t->h.cpu[0], t->run->halt.deadline_ticks);
	assert_true(clock_guest_ticks() >= deadline);
	run_to_ecall(t, CODE + 4);

	/* A pending enabled interrupt makes WFI a no-op. */
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, CODE + 4);
	t_free(t);
}

static void test_sbi_exit(void **state)
{
	struct t *t = t_new(1u << 1);

	emit(t, ECALL);
	emit(t, ADDI(A2, A1, 1));
	emit(t, ECALL);
	for (unsigned i = 0; i < 6; i++)
		setx(t, A0 + i, 100 + i);
	setx(t, A6, 3);
	setx(t, A7, 0x54494d45);
	set(t, ACCEL_REG_PRIV, 1);
	set(t, ACCEL_REG_PC, CODE);
	assert_int_equal(run(t), ACCEL_EXIT_SBI);
	assert_int_equal(t->run->sbi.ext, 0x54494d45);
	assert_int_equal(t->run->sbi.fid, 3);
	assert_int_equal(t->run->sbi.priv, 1);
	for (unsigned i = 0; i < 6; i++)
		assert_int_equal(t->run->sbi.args[i], 100 + i);
	t->run->sbi.ret[0] = -2;
	t->run->sbi.ret[1] = 42;
	assert_int_equal(run(t), ACCEL_EXIT_SBI);
	assert_int_equal(reg(t, ACCEL_REG_PC), CODE + 8);
	assert_int_equal(x(t, A0), (uint64_t)-2);
	assert_int_equal(x(t, A1), 42);
	assert_int_equal(x(t, A2), 43);
	assert_int_equal(t->run->sbi.args[2], 43);
	t_free(t);
}

static void test_kick(void **state)
{
	struct t *t = t_std();
	struct delayed d = {.t = t, .what = 0, .delay_ms = 20};
	struct accel_stats st;
	pthread_t th;

	emit(t, J(0, 0)); /* j . */
	set(t, ACCEL_REG_PC, CODE);
	assert_int_equal(pthread_create(&th, NULL, delayed_thread, &d), 0);
	assert_int_equal(run(t), ACCEL_EXIT_INTR);
	pthread_join(th, NULL);
	assert_int_equal(reg(t, ACCEL_REG_PC), CODE);

	/* A trap storm (mtvec points at unmapped memory) still honours kicks. */
	setcsr(t, C_MTVEC, 0x1000);
	put32(t, CODE, 0xffffffff);
	set(t, ACCEL_REG_PC, CODE);
	assert_int_equal(pthread_create(&th, NULL, delayed_thread, &d), 0);
	assert_int_equal(run(t), ACCEL_EXIT_INTR);
	pthread_join(th, NULL);
	assert_int_equal(csr(t, C_MCAUSE), 1);

	/* A kick before vcpu_run makes it return at once. */
	t->h.ops->vcpu_kick(t->h.cpu[0]);
	assert_int_equal(run(t), ACCEL_EXIT_INTR);
	assert_int_equal(t->h.ops->get_stats(t->h.cpu[0], &st), 0);
	assert_int_equal(st.exits[ACCEL_EXIT_INTR], 3);
	assert_true(st.instret > 1000);
	assert_true(st.traps > 1000);
	t_free(t);
}

static void test_sstc_and_counters(void **state)
{
	struct t *t = t_std();

	/* Without STCE, S-mode stimecmp access is illegal. */
	put32(t, CODE, CSRR(2, A0, C_STIMECMP, 0));
	put32(t, CODE + 4, ECALL);
	setcsr(t, C_MCOUNTEREN, 2);
	set(t, ACCEL_REG_PRIV, 1);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, HANDLER_M);
	setcsr(t, C_MENVCFG, 1ULL << 63);
	set(t, ACCEL_REG_PRIV, 1);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, CODE + 4);
	assert_int_equal(x(t, A0), UINT64_MAX);

	/* STIP follows stimecmp and interrupts S when delegated and enabled. */
	assert_int_equal(csr(t, C_MIP) & (1u << 5), 0);
	setcsr(t, C_STIMECMP, 0);
	assert_true(csr(t, C_MIP) & (1u << 5));
	setcsr(t, C_MIDELEG, 1u << 5);
	setcsr(t, C_MIE, 1u << 5);
	setcsr(t, C_MSTATUS, MS_SIE);
	assert_int_equal(irq_probe(t, 1), (1ULL << 62) | INTR | 5);
	setcsr(t, C_STIMECMP, UINT64_MAX);
	assert_int_equal(csr(t, C_MIP) & (1u << 5), 0);

	/* instret counts retired instructions; mcountinhibit.IR freezes it. */
	t->emit = CODE;
	emit(t, CSRR(2, A0, C_INSTRET, 0));
	emit(t, NOP);
	emit(t, NOP);
	emit(t, NOP);
	emit(t, CSRR(2, A1, C_INSTRET, 0));
	emit(t, CSRR(2, A2, C_TIME, 0));
	emit(t, ECALL);
	set(t, ACCEL_REG_PRIV, 3);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, CODE + 24);
	assert_int_equal(x(t, A1) - x(t, A0), 4);
	assert_true(x(t, A2) > 0 && x(t, A2) <= clock_guest_ticks());
	setcsr(t, C_MCOUNTINHIBIT, 4);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, CODE + 24);
	assert_int_equal(x(t, A1), x(t, A0));
	t_free(t);
}

static void test_fp_state(void **state)
{
	struct t *t = t_std();
	double a = 1.5, b = 2.25, r;
	uint64_t bits;

	/* FS = Off: FP loads and fcsr are illegal. */
	put32(t, CODE, I(0x07, 1, 2, A1, 0)); /* flw f1, 0(a1) */
	put32(t, CODE + 4, ECALL);
	setx(t, A1, DATA);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, HANDLER_M);
	assert_int_equal(csr(t, C_MCAUSE), 2);
	assert_int_equal(csr(t, C_MTVAL), I(0x07, 1, 2, A1, 0));
	put32(t, CODE, CSRR(2, A0, C_FCSR, 0));
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, HANDLER_M);

	/* FS = Initial: FLW NaN-boxes, the write makes FS dirty and SD reads 1. */
	put32(t, CODE, I(0x07, 1, 2, A1, 0));
	ah_put64(&t->h, DATA, 0x3fc00000);
	setcsr(t, C_MSTATUS, 1ULL << 13);
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, CODE + 4);
	assert_int_equal(reg(t, ACCEL_REG_F(1)), 0xffffffff3fc00000ULL);
	assert_int_equal(csr(t, C_MSTATUS) & MS_FS, MS_FS);
	assert_true(csr(t, C_MSTATUS) >> 63);

	/* OP-FP goes to the FPU: fadd.d f1, f2, f3 */
	memcpy(&bits, &a, 8);
	set(t, ACCEL_REG_F(2), bits);
	memcpy(&bits, &b, 8);
	set(t, ACCEL_REG_F(3), bits);
	put32(t, CODE, R(0x53, 1, 7, 2, 3, 0x01));
	set(t, ACCEL_REG_PC, CODE);
	run_to_ecall(t, CODE + 4);
	bits = reg(t, ACCEL_REG_F(1));
	memcpy(&r, &bits, 8);
	assert_true(r == 3.75);
	t_free(t);
}

struct smp_arg {
	const struct accel_ops *ops;
	struct accel_vcpu *cpu;
	uint32_t exit;
};

static void *smp_thread(void *arg)
{
	struct smp_arg *a = arg;

	a->ops->vcpu_run(a->cpu);
	a->exit = a->ops->vcpu_run_state(a->cpu)->exit_reason;
	return NULL;
}

/* Two vCPU threads increment shared counters with AMOADD and with LR/SC loops. */
static void test_smp_atomics(void **state)
{
	const struct accel_ops *o = &accel_rv64_ops;
	const uint64_t n = 1000000;
	uint8_t *ram = calloc(1, RAM_SIZE);
	struct memmap *mm = memmap_new();
	struct accel_vm_config cfg = {.ram = ram, .ram_base = RAM_BASE, .ram_size = RAM_SIZE,
				      .memmap = mm, .ncpus = 2, .ecall_exit_mask = 1u << 3};
	static const uint32_t prog_len = 8;
	uint32_t prog[8];
	struct accel_vm *vm;
	struct smp_arg args[2];
	pthread_t th[2];
	uint64_t v;

	assert_non_null(ram);
	assert_int_equal(memmap_add_ram(mm, RAM_BASE, RAM_SIZE, ram), 0);
	assert_int_equal(o->vm_new(&cfg, &vm), 0);
	prog[0] = AMO(0x00, 3, 0, A1, A2); /* amoadd.d x0, a2, (a1) */
	prog[1] = AMO(0x02, 3, 5, A3, 0);  /* lr.d t0, (a3) */
	prog[2] = ADDI(5, 5, 1);
	prog[3] = AMO(0x03, 3, 6, A3, 5);  /* sc.d t1, t0, (a3) */
	prog[4] = Bt(1, 6, 0, -12);        /* bnez t1, lr */
	prog[5] = ADDI(A0, A0, -1);
	prog[6] = Bt(1, A0, 0, -24);       /* bnez a0, amoadd */
	prog[7] = ECALL;
	memcpy(ram, prog, sizeof(uint32_t) * prog_len);
	for (unsigned i = 0; i < 2; i++) {
		args[i].ops = o;
		assert_int_equal(o->vcpu_new(vm, i, &args[i].cpu), 0);
		o->set_reg(args[i].cpu, ACCEL_REG_PC, CODE);
		o->set_reg(args[i].cpu, ACCEL_REG_X(A0), n);
		o->set_reg(args[i].cpu, ACCEL_REG_X(A1), DATA);
		o->set_reg(args[i].cpu, ACCEL_REG_X(A2), 1);
		o->set_reg(args[i].cpu, ACCEL_REG_X(A3), DATA + 64);
	}
	assert_int_equal(o->vcpu_new(vm, 1, &args[1].cpu), -EEXIST);
	for (unsigned i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, smp_thread, &args[i]), 0);
	for (unsigned i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(args[i].exit, ACCEL_EXIT_SBI);
		assert_int_equal(o->get_reg(args[i].cpu, ACCEL_REG_CSR(C_MHARTID), &v), 0);
		assert_int_equal(v, i);
	}
	memcpy(&v, ram + (DATA - RAM_BASE), 8);
	assert_int_equal(v, 2 * n);
	memcpy(&v, ram + (DATA + 64 - RAM_BASE), 8);
	assert_int_equal(v, 2 * n);
	o->vm_free(vm); /* frees the vCPUs still registered */
	memmap_free(mm);
	free(ram);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_alu),
		cmocka_unit_test(test_muldiv),
		cmocka_unit_test(test_bitmanip),
		cmocka_unit_test(test_branches_jumps),
		cmocka_unit_test(test_loads_stores),
		cmocka_unit_test(test_rvc_expansion),
		cmocka_unit_test(test_rvc_control_and_illegal),
		cmocka_unit_test(test_atomics),
		cmocka_unit_test(test_csr_rules),
		cmocka_unit_test(test_csr_privilege),
		cmocka_unit_test(test_delegation),
		cmocka_unit_test(test_xret),
		cmocka_unit_test(test_interrupts),
		cmocka_unit_test(test_mip_soft),
		cmocka_unit_test(test_wfi_halt_and_wake),
		cmocka_unit_test(test_sbi_exit),
		cmocka_unit_test(test_kick),
		cmocka_unit_test(test_sstc_and_counters),
		cmocka_unit_test(test_fp_state),
		cmocka_unit_test(test_smp_atomics),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
