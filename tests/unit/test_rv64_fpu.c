/*
 * test_rv64_fpu.c - the F and D extensions (src/accel/rv64/fpu.c) against values derived from
 * the unprivileged spec 20191213 chapters 11-12 and IEEE 754-2008: rounding modes (RMM ties
 * included), overflow, tininess after rounding, NaN canonicalization and boxing, FMIN/FMAX,
 * compares, FCLASS, the FCVT saturation table, FMA single rounding and illegal encodings.
 *
 * The last test builds a second copy of fpu.c with its portable <fenv.h> host path and soft
 * FMA (KUMO_FPU_GENERIC) and compares it with the x86 SSE path on random operands.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kumo/base.h"
#include "accel/rv64/cpu.h"

enum { FMT_S = 0, FMT_D = 1 };
enum { RNE = 0, RTZ = 1, RDN = 2, RUP = 3, RMM = 4, DYN = 7 };
enum { NX = 1, UF = 2, OF = 4, DZ = 8, NV = 16 };
enum {
	F_ADD = 0x00,
	F_SUB = 0x01,
	F_MUL = 0x02,
	F_DIV = 0x03,
	F_SGNJ = 0x04,
	F_MINMAX = 0x05,
	F_CVT_FF = 0x08,
	F_SQRT = 0x0b,
	F_CMP = 0x14,
	F_CVT_TO_INT = 0x18,
	F_CVT_FROM_INT = 0x1a,
	F_MV_TO_X = 0x1c,
	F_MV_FROM_X = 0x1e,
};
enum { OPC_FMADD = 0x43, OPC_FMSUB = 0x47, OPC_FNMSUB = 0x4b, OPC_FNMADD = 0x4f };

#define BOX 0xffffffff00000000ull
#define CANON_S 0x7fc00000ull
#define CANON_D 0x7ff8000000000000ull
#define SIGN_D 0x8000000000000000ull
#define INF_D 0x7ff0000000000000ull
#define MAX_D 0x7fefffffffffffffull
#define SNAN_D 0x7ff0000000000001ull
#define QNAN_D 0x7ff8000000000123ull /* quiet, not canonical */
#define INF_S 0x7f800000ull
#define MAX_S 0x7f7fffffull
#define SNAN_S 0x7f800001ull
#define QNAN_S 0x7fc00123ull

static struct rv64_cpu *cpu;

static uint64_t D(double d)
{
	uint64_t v;

	memcpy(&v, &d, sizeof(v));
	return v;
}

static uint64_t S(float s)
{
	uint32_t v;

	memcpy(&v, &s, sizeof(v));
	return v;
}

static uint32_t enc_fp(unsigned funct5, unsigned fmt, unsigned rs2, unsigned rs1, unsigned rm,
		       unsigned rd)
{
	return funct5 << 27 | fmt << 25 | rs2 << 20 | rs1 << 15 | rm << 12 | rd << 7 | 0x53;
}

static uint32_t enc_fma(unsigned opc, unsigned fmt, unsigned rs3, unsigned rs2, unsigned rs1,
			unsigned rm, unsigned rd)
{
	return rs3 << 27 | fmt << 25 | rs2 << 20 | rs1 << 15 | rm << 12 | rd << 7 | opc;
}

static int setup(void **state)
{
	cpu = calloc(1, sizeof(*cpu));
	return cpu ? 0 : -1;
}

static int teardown(void **state)
{
	free(cpu);
	return 0;
}

static uint64_t in_reg(unsigned fmt, uint64_t v)
{
	return fmt == FMT_S ? (v | BOX) : v;
}

/* Runs insn (rs1 = f1, rs2 = f2, rs3 = f3, FP rd = f4) with fflags cleared; returns f4. */
static uint64_t run_f(uint32_t insn, unsigned fmt, uint32_t *fl)
{
	uint64_t r;

	cpu->fflags = 0;
	assert_int_equal(rv64_fpu_exec(cpu, insn), 0);
	*fl = cpu->fflags;
	r = cpu->f[4];
	if (fmt == FMT_S) {
		if ((r >> 32) != 0xffffffffu)
			fail_msg("insn %08x: single result %016llx not NaN-boxed", insn,
				 (unsigned long long)r);
		r = (uint32_t)r;
	}
	return r;
}

static uint64_t op2(unsigned funct5, unsigned fmt, unsigned rm, uint64_t a, uint64_t b,
		    uint32_t *fl)
{
	cpu->f[1] = in_reg(fmt, a);
	cpu->f[2] = in_reg(fmt, b);
	return run_f(enc_fp(funct5, fmt, 2, 1, rm, 4), fmt, fl);
}

static uint64_t op1(unsigned funct5, unsigned fmt, unsigned rs2, unsigned rm, uint64_t a,
		    uint32_t *fl)
{
	/* FCVT.S.D/FCVT.D.S: the source is of the other format, passed as the register holds it */
	cpu->f[1] = funct5 == F_CVT_FF ? a : in_reg(fmt, a);
	return run_f(enc_fp(funct5, fmt, rs2, 1, rm, 4), fmt, fl);
}

static uint64_t op_fma(unsigned opc, unsigned fmt, unsigned rm, uint64_t a, uint64_t b,
		       uint64_t c, uint32_t *fl)
{
	cpu->f[1] = in_reg(fmt, a);
	cpu->f[2] = in_reg(fmt, b);
	cpu->f[3] = in_reg(fmt, c);
	return run_f(enc_fma(opc, fmt, 3, 2, 1, rm, 4), fmt, fl);
}

/* Integer-destination instruction: x5 = op(f1, f2). */
static uint64_t op_x(uint32_t insn, uint64_t a, uint64_t b, uint32_t *fl)
{
	cpu->f[1] = a;
	cpu->f[2] = b;
	cpu->x[5] = 0xdeadbeefull;
	cpu->fflags = 0;
	assert_int_equal(rv64_fpu_exec(cpu, insn), 0);
	*fl = cpu->fflags;
	return cpu->x[5];
}

static void check(const char *what, uint64_t got, uint32_t got_fl, uint64_t want,
		  uint32_t want_fl)
{
	if (got != want || got_fl != want_fl)
		fail_msg("%s: got %016llx flags %02x, want %016llx flags %02x", what,
			 (unsigned long long)got, got_fl, (unsigned long long)want, want_fl);
}

#define CHECK(what, expr, want, want_fl) \
	do { \
		uint32_t fl_; \
		uint64_t got_ = (expr); \
		check(what, got_, fl_, want, want_fl); \
	} while (0)

/* ---- rounding modes */

static void test_rounding_add_tie(void **state)
{
	static const char *names[] = {"RNE", "RTZ", "RDN", "RUP", "RMM"};
	/* 1 + 2^-53 lies exactly halfway between 1 and 1 + 2^-52 (whose last bit is odd) */
	const uint64_t one = D(1.0), up = D(1.0 + 0x1p-52);
	const uint64_t pos[5] = {one, one, one, up, up};
	const uint64_t neg[5] = {one | SIGN_D, one | SIGN_D, up | SIGN_D, one | SIGN_D,
				 up | SIGN_D};

	for (unsigned rm = 0; rm < 5; rm++) {
		uint32_t fl;
		uint64_t r = op2(F_ADD, FMT_D, rm, D(1.0), D(0x1p-53), &fl);

		if (r != pos[rm] || fl != NX)
			fail_msg("%s 1+2^-53: %016llx %x", names[rm], (unsigned long long)r, fl);
		r = op2(F_SUB, FMT_D, rm, D(-1.0), D(0x1p-53), &fl);
		if (r != neg[rm] || fl != NX)
			fail_msg("%s -1-2^-53: %016llx %x", names[rm], (unsigned long long)r, fl);
	}
	/* a tie whose lower neighbour is odd: RNE and RMM both round away */
	CHECK("RNE odd tie", op2(F_ADD, FMT_D, RNE, D(1.0 + 0x1p-52), D(0x1p-53), &fl_),
	      D(1.0 + 0x1p-51), NX);
	CHECK("RMM odd tie", op2(F_ADD, FMT_D, RMM, D(1.0 + 0x1p-52), D(0x1p-53), &fl_),
	      D(1.0 + 0x1p-51), NX);
	/* not a tie: 3/4 of an ulp above 1 */
	CHECK("RNE 3/4", op2(F_ADD, FMT_D, RNE, D(1.0), D(0x3p-54), &fl_), up, NX);
	CHECK("RMM 3/4", op2(F_ADD, FMT_D, RMM, D(1.0), D(0x3p-54), &fl_), up, NX);
	CHECK("RTZ 3/4", op2(F_ADD, FMT_D, RTZ, D(1.0), D(0x3p-54), &fl_), one, NX);
	/* single precision: 1 + 2^-24 */
	CHECK("S RNE tie", op2(F_ADD, FMT_S, RNE, S(1.0f), S(0x1p-24f), &fl_), 0x3f800000, NX);
	CHECK("S RMM tie", op2(F_ADD, FMT_S, RMM, S(1.0f), S(0x1p-24f), &fl_), 0x3f800001, NX);
	CHECK("S RDN tie", op2(F_ADD, FMT_S, RDN, S(-1.0f), S(-0x1p-24f), &fl_), 0xbf800001, NX);
	CHECK("S RUP tie", op2(F_ADD, FMT_S, RUP, S(-1.0f), S(-0x1p-24f), &fl_), 0xbf800000, NX);
	/* exact results raise nothing in any mode; x - x is +0 except -0 in RDN */
	CHECK("RMM exact", op2(F_ADD, FMT_D, RMM, D(1.5), D(0.25), &fl_), D(1.75), 0);
	CHECK("RNE x-x", op2(F_SUB, FMT_D, RNE, D(3.0), D(3.0), &fl_), 0, 0);
	CHECK("RMM x-x", op2(F_SUB, FMT_D, RMM, D(3.0), D(3.0), &fl_), 0, 0);
	CHECK("RDN x-x", op2(F_SUB, FMT_D, RDN, D(3.0), D(3.0), &fl_), SIGN_D, 0);
	CHECK("S RDN x-x", op2(F_SUB, FMT_S, RDN, S(3.0f), S(3.0f), &fl_), 0x80000000, 0);
}

static void test_rounding_mul_div_sqrt(void **state)
{
	/* 3 * (1 + 3*2^-52) = 3 + 4.5 ulp(3): a tie between 3+4ulp (even) and 3+5ulp */
	const uint64_t a = D(3.0), b = D(1.0 + 0x3p-52), lo = D(3.0) + 4, hi = D(3.0) + 5;
	const uint64_t want[5] = {lo, lo, lo, hi, hi};

	for (unsigned rm = 0; rm < 5; rm++) {
		CHECK("mul tie", op2(F_MUL, FMT_D, rm, a, b, &fl_), want[rm], NX);
		CHECK("mul tie neg", op2(F_MUL, FMT_D, rm, a | SIGN_D, b, &fl_),
		      (rm == RDN ? hi : rm == RUP ? lo : want[rm]) | SIGN_D, NX);
		CHECK("fma tie, c=0", op_fma(OPC_FMADD, FMT_D, rm, a, b, 0, &fl_), want[rm], NX);
	}
	/* quotients tie only below the normal range: 5*2^-1074 / 2 = 2.5 * 2^-1074 */
	CHECK("div RNE", op2(F_DIV, FMT_D, RNE, 5, D(2.0), &fl_), 2, UF | NX);
	CHECK("div RMM", op2(F_DIV, FMT_D, RMM, 5, D(2.0), &fl_), 3, UF | NX);
	CHECK("div RTZ", op2(F_DIV, FMT_D, RTZ, 5, D(2.0), &fl_), 2, UF | NX);
	CHECK("div RUP", op2(F_DIV, FMT_D, RUP, 5, D(2.0), &fl_), 3, UF | NX);
	CHECK("div RMM neg", op2(F_DIV, FMT_D, RMM, 5, D(-2.0), &fl_), 3 | SIGN_D, UF | NX);
	/* 2^-1075: half the smallest subnormal */
	CHECK("mul RNE to 0", op2(F_MUL, FMT_D, RNE, 1, D(0.5), &fl_), 0, UF | NX);
	CHECK("mul RMM to min", op2(F_MUL, FMT_D, RMM, 1, D(0.5), &fl_), 1, UF | NX);
	CHECK("mul RDN -min", op2(F_MUL, FMT_D, RDN, 1, D(-0.25), &fl_), 1 | SIGN_D, UF | NX);
	CHECK("S mul RMM to min", op2(F_MUL, FMT_S, RMM, 1, S(0.5f), &fl_), 1, UF | NX);
	/* 1/3 in double: 0x3fd5555555555555 rounds down in RNE (pattern 0101...) */
	CHECK("div 1/3 RNE", op2(F_DIV, FMT_D, RNE, D(1.0), D(3.0), &fl_), 0x3fd5555555555555, NX);
	CHECK("div 1/3 RUP", op2(F_DIV, FMT_D, RUP, D(1.0), D(3.0), &fl_), 0x3fd5555555555556, NX);
	CHECK("div 1/3 RMM", op2(F_DIV, FMT_D, RMM, D(1.0), D(3.0), &fl_), 0x3fd5555555555555, NX);
	CHECK("div 2/3 RMM", op2(F_DIV, FMT_D, RMM, D(2.0), D(3.0), &fl_), 0x3fe5555555555555, NX);
	CHECK("div -2/3 RDN", op2(F_DIV, FMT_D, RDN, D(-2.0), D(3.0), &fl_), 0xbfe5555555555556,
	      NX);
	/* sqrt(2) = 1.41421356237309504880...: between ...bcc and ...bcd, nearer ...bcd */
	CHECK("sqrt2 RNE", op1(F_SQRT, FMT_D, 0, RNE, D(2.0), &fl_), 0x3ff6a09e667f3bcd, NX);
	CHECK("sqrt2 RMM", op1(F_SQRT, FMT_D, 0, RMM, D(2.0), &fl_), 0x3ff6a09e667f3bcd, NX);
	CHECK("sqrt2 RTZ", op1(F_SQRT, FMT_D, 0, RTZ, D(2.0), &fl_), 0x3ff6a09e667f3bcc, NX);
	CHECK("sqrt2 RDN", op1(F_SQRT, FMT_D, 0, RDN, D(2.0), &fl_), 0x3ff6a09e667f3bcc, NX);
	CHECK("sqrt2 RUP", op1(F_SQRT, FMT_D, 0, RUP, D(2.0), &fl_), 0x3ff6a09e667f3bcd, NX);
	/* single: sqrt(2) lies 0.2 ulp above 0x3fb504f3 (1.41421353...) */
	CHECK("S sqrt2 RMM", op1(F_SQRT, FMT_S, 0, RMM, S(2.0f), &fl_), 0x3fb504f3, NX);
	CHECK("S sqrt2 RTZ", op1(F_SQRT, FMT_S, 0, RTZ, S(2.0f), &fl_), 0x3fb504f3, NX);
	CHECK("sqrt 9 RMM", op1(F_SQRT, FMT_D, 0, RMM, D(9.0), &fl_), D(3.0), 0);
	CHECK("sqrt 2^-1074 RMM", op1(F_SQRT, FMT_D, 0, RMM, 1, &fl_), D(0x1p-537), 0);
	CHECK("S sqrt 2^-149 RMM", op1(F_SQRT, FMT_S, 0, RMM, 1, &fl_), 0x1a3504f3, NX);
}

static void test_dynamic_rm(void **state)
{
	cpu->frm = RUP;
	CHECK("DYN RUP", op2(F_ADD, FMT_D, DYN, D(1.0), D(0x1p-60), &fl_), D(1.0 + 0x1p-52), NX);
	cpu->frm = RMM;
	CHECK("DYN RMM", op2(F_ADD, FMT_D, DYN, D(1.0), D(0x1p-53), &fl_), D(1.0 + 0x1p-52), NX);
	cpu->frm = RTZ;
	CHECK("static RNE ignores frm", op2(F_ADD, FMT_D, RNE, D(1.0), D(0x3p-54), &fl_),
	      D(1.0 + 0x1p-52), NX);
	cpu->frm = RNE;
}

/* ---- overflow and underflow */

static void test_overflow(void **state)
{
	const uint64_t want_pos[5] = {INF_D, MAX_D, MAX_D, INF_D, INF_D};
	const uint64_t want_neg[5] = {INF_D, MAX_D, INF_D, MAX_D, INF_D};
	const uint64_t want_s[5] = {INF_S, MAX_S, MAX_S, INF_S, INF_S};

	for (unsigned rm = 0; rm < 5; rm++) {
		CHECK("max*2", op2(F_MUL, FMT_D, rm, MAX_D, D(2.0), &fl_), want_pos[rm], OF | NX);
		CHECK("-max*2", op2(F_MUL, FMT_D, rm, MAX_D, D(-2.0), &fl_),
		      want_neg[rm] | SIGN_D, OF | NX);
		CHECK("max+max", op2(F_ADD, FMT_D, rm, MAX_D, MAX_D, &fl_), want_pos[rm], OF | NX);
		CHECK("S max*2", op2(F_MUL, FMT_S, rm, MAX_S, S(2.0f), &fl_), want_s[rm], OF | NX);
		CHECK("1e300 to S", op1(F_CVT_FF, FMT_S, 1, rm, D(1e300), &fl_), want_s[rm],
		      OF | NX);
		CHECK("fma max*2-1", op_fma(OPC_FMSUB, FMT_D, rm, MAX_D, D(2.0), D(1.0), &fl_),
		      want_pos[rm], OF | NX);
	}
	/* max + half an ulp: rounds to inf in RNE (tie to even: max is odd), stays max in RTZ */
	CHECK("max+ulp/2 RNE", op2(F_ADD, FMT_D, RNE, MAX_D, D(0x1p970), &fl_), INF_D, OF | NX);
	CHECK("max+ulp/2 RMM", op2(F_ADD, FMT_D, RMM, MAX_D, D(0x1p970), &fl_), INF_D, OF | NX);
	CHECK("max+ulp/4 RNE", op2(F_ADD, FMT_D, RNE, MAX_D, D(0x1p969), &fl_), MAX_D, NX);
	/* inf arithmetic is exact */
	CHECK("inf+1", op2(F_ADD, FMT_D, RNE, INF_D, D(1.0), &fl_), INF_D, 0);
}

static void test_underflow(void **state)
{
	const uint64_t min_d = D(0x1p-1022);

	/* exact subnormal results raise nothing */
	CHECK("exact subnormal", op2(F_MUL, FMT_D, RNE, min_d, D(0.5), &fl_), D(0x1p-1023), 0);
	CHECK("exact 2^-1074", op2(F_MUL, FMT_D, RNE, 2, D(0.5), &fl_), 1, 0);
	CHECK("subnormal add exact", op2(F_ADD, FMT_D, RNE, 1, 2, &fl_), 3, 0);
	/*
	 * 2^-1022 * (1 - 2^-53) = 2^-1022 - 2^-1075: RNE gives 2^-1022 (tie, even), but rounded
	 * to 53 bits with unbounded exponent it is 2^-1023 * (2 - 2^-52) < 2^-1022: tiny, UF.
	 */
	CHECK("tiny after rounding", op2(F_MUL, FMT_D, RNE, min_d, D(1.0 - 0x1p-53), &fl_), min_d,
	      UF | NX);
	CHECK("tiny RTZ", op2(F_MUL, FMT_D, RTZ, min_d, D(1.0 - 0x1p-53), &fl_), min_d - 1,
	      UF | NX);
	CHECK("S tiny", op2(F_MUL, FMT_S, RNE, 0x00800000, S(1.0f - 0x1p-24f), &fl_), 0x00800000,
	      UF | NX);
	CHECK("S tiny RMM", op2(F_MUL, FMT_S, RMM, 0x00800000, S(1.0f - 0x1p-24f), &fl_),
	      0x00800000, UF | NX);
	/*
	 * 2^-126 * (1 - 2^-26) to single: rounded to 24 bits with unbounded exponent it carries
	 * to 2^-126, so it is not tiny in RNE/RUP (NX only) but is tiny in RTZ.
	 */
	CHECK("not tiny RNE", op1(F_CVT_FF, FMT_S, 1, RNE, D(0x1p-126 * (1 - 0x1p-26)), &fl_),
	      0x00800000, NX);
	CHECK("not tiny RMM", op1(F_CVT_FF, FMT_S, 1, RMM, D(0x1p-126 * (1 - 0x1p-26)), &fl_),
	      0x00800000, NX);
	CHECK("not tiny RUP", op1(F_CVT_FF, FMT_S, 1, RUP, D(0x1p-126 * (1 - 0x1p-26)), &fl_),
	      0x00800000, NX);
	CHECK("tiny RTZ cvt", op1(F_CVT_FF, FMT_S, 1, RTZ, D(0x1p-126 * (1 - 0x1p-26)), &fl_),
	      0x007fffff, UF | NX);
	/* far below the smallest subnormal */
	CHECK("to zero", op2(F_MUL, FMT_D, RNE, D(0x1p-600), D(0x1p-600), &fl_), 0, UF | NX);
	CHECK("to min RUP", op2(F_MUL, FMT_D, RUP, D(0x1p-600), D(0x1p-600), &fl_), 1, UF | NX);
	CHECK("to -0 RMM", op2(F_MUL, FMT_D, RMM, D(-0x1p-600), D(0x1p-600), &fl_), SIGN_D,
	      UF | NX);
	CHECK("S to zero", op2(F_MUL, FMT_S, RDN, S(0x1p-100f), S(0x1p-100f), &fl_), 0, UF | NX);
	/* subnormal operands are not flushed */
	CHECK("subnormal*2^1000", op2(F_MUL, FMT_D, RNE, 3, D(0x1p1000), &fl_), D(0x3p-74), 0);
}

/* ---- exceptions on special operands */

static void test_special_operations(void **state)
{
	CHECK("1/0", op2(F_DIV, FMT_D, RNE, D(1.0), 0, &fl_), INF_D, DZ);
	CHECK("-1/0", op2(F_DIV, FMT_D, RNE, D(-1.0), 0, &fl_), INF_D | SIGN_D, DZ);
	CHECK("1/-0", op2(F_DIV, FMT_D, RMM, D(1.0), SIGN_D, &fl_), INF_D | SIGN_D, DZ);
	CHECK("S 1/0", op2(F_DIV, FMT_S, RNE, S(1.0f), 0, &fl_), INF_S, DZ);
	CHECK("0/0", op2(F_DIV, FMT_D, RNE, 0, 0, &fl_), CANON_D, NV);
	CHECK("inf/inf", op2(F_DIV, FMT_D, RNE, INF_D, INF_D, &fl_), CANON_D, NV);
	CHECK("inf/0", op2(F_DIV, FMT_D, RNE, INF_D, 0, &fl_), INF_D, 0);
	CHECK("0*inf", op2(F_MUL, FMT_D, RNE, 0, INF_D, &fl_), CANON_D, NV);
	CHECK("inf-inf", op2(F_SUB, FMT_D, RNE, INF_D, INF_D, &fl_), CANON_D, NV);
	CHECK("S inf-inf", op2(F_SUB, FMT_S, RMM, INF_S, INF_S, &fl_), CANON_S, NV);
	CHECK("sqrt -1", op1(F_SQRT, FMT_D, 0, RNE, D(-1.0), &fl_), CANON_D, NV);
	CHECK("sqrt -1 RMM", op1(F_SQRT, FMT_D, 0, RMM, D(-1.0), &fl_), CANON_D, NV);
	CHECK("sqrt -min", op1(F_SQRT, FMT_D, 0, RNE, 1 | SIGN_D, &fl_), CANON_D, NV);
	CHECK("sqrt -inf", op1(F_SQRT, FMT_D, 0, RNE, INF_D | SIGN_D, &fl_), CANON_D, NV);
	CHECK("sqrt -0", op1(F_SQRT, FMT_D, 0, RNE, SIGN_D, &fl_), SIGN_D, 0);
	CHECK("sqrt inf", op1(F_SQRT, FMT_D, 0, RNE, INF_D, &fl_), INF_D, 0);
	CHECK("S sqrt -4", op1(F_SQRT, FMT_S, 0, RNE, S(-4.0f), &fl_), CANON_S, NV);
}

static void test_nan_propagation(void **state)
{
	/* any NaN result is canonical; only signaling inputs raise NV (unpriv §11.3) */
	CHECK("qNaN+1", op2(F_ADD, FMT_D, RNE, QNAN_D, D(1.0), &fl_), CANON_D, 0);
	CHECK("1+-qNaN", op2(F_ADD, FMT_D, RNE, D(1.0), QNAN_D | SIGN_D, &fl_), CANON_D, 0);
	CHECK("sNaN+1", op2(F_ADD, FMT_D, RNE, SNAN_D, D(1.0), &fl_), CANON_D, NV);
	CHECK("sNaN*qNaN", op2(F_MUL, FMT_D, RMM, SNAN_D, QNAN_D, &fl_), CANON_D, NV);
	CHECK("sqrt sNaN", op1(F_SQRT, FMT_D, 0, RNE, SNAN_D, &fl_), CANON_D, NV);
	CHECK("sqrt qNaN", op1(F_SQRT, FMT_D, 0, RTZ, QNAN_D, &fl_), CANON_D, 0);
	CHECK("S qNaN/2", op2(F_DIV, FMT_S, RNE, QNAN_S, S(2.0f), &fl_), CANON_S, 0);
	CHECK("S sNaN-1", op2(F_SUB, FMT_S, RUP, SNAN_S, S(1.0f), &fl_), CANON_S, NV);
	CHECK("fma qNaN", op_fma(OPC_FMADD, FMT_D, RNE, D(1.0), D(2.0), QNAN_D, &fl_), CANON_D, 0);
	CHECK("fma sNaN", op_fma(OPC_FMADD, FMT_D, RNE, D(1.0), SNAN_D, D(2.0), &fl_), CANON_D,
	      NV);
	/* unpriv §11.6: inf * 0 + qNaN is invalid */
	CHECK("fma inf*0+qNaN", op_fma(OPC_FMADD, FMT_D, RNE, INF_D, 0, QNAN_D, &fl_), CANON_D,
	      NV);
	CHECK("S fma 0*inf+qNaN", op_fma(OPC_FMADD, FMT_S, RNE, 0, INF_S, QNAN_S, &fl_), CANON_S,
	      NV);
	CHECK("fma inf*0+1", op_fma(OPC_FMADD, FMT_D, RMM, INF_D, 0, D(1.0), &fl_), CANON_D, NV);
	CHECK("fma inf-inf", op_fma(OPC_FMADD, FMT_D, RNE, INF_D, D(1.0), INF_D | SIGN_D, &fl_),
	      CANON_D, NV);
	CHECK("fma inf-inf RMM", op_fma(OPC_FMADD, FMT_D, RMM, INF_D, D(1.0), INF_D | SIGN_D, &fl_),
	      CANON_D, NV);
	CHECK("cvt.s.d qNaN", op1(F_CVT_FF, FMT_S, 1, RNE, QNAN_D, &fl_), CANON_S, 0);
	CHECK("cvt.s.d sNaN", op1(F_CVT_FF, FMT_S, 1, RNE, SNAN_D, &fl_), CANON_S, NV);
	CHECK("cvt.d.s sNaN", op1(F_CVT_FF, FMT_D, 0, RNE, SNAN_S | BOX, &fl_), CANON_D, NV);
	CHECK("cvt.d.s qNaN", op1(F_CVT_FF, FMT_D, 0, RNE, QNAN_S | BOX, &fl_), CANON_D, 0);
	CHECK("cvt.d.s 0.1f", op1(F_CVT_FF, FMT_D, 0, RNE, S(0.1f) | BOX, &fl_), D((double)0.1f),
	      0);
	CHECK("cvt.d.s -min sub", op1(F_CVT_FF, FMT_D, 0, RNE, 0x80000001 | BOX, &fl_),
	      D(-0x1p-149), 0);
}

static void test_nan_boxing(void **state)
{
	/* an improperly boxed single reads as the canonical (quiet) NaN: no NV */
	cpu->f[1] = S(1.0f); /* upper half zero */
	cpu->f[2] = S(1.0f) | BOX;
	CHECK("unboxed + 1", run_f(enc_fp(F_ADD, FMT_S, 2, 1, RNE, 4), FMT_S, &fl_), CANON_S, 0);
	cpu->f[1] = 0xfffffffe3f800000ull;
	CHECK("half-boxed + 1", run_f(enc_fp(F_ADD, FMT_S, 2, 1, RNE, 4), FMT_S, &fl_), CANON_S,
	      0);
	/* FSGNJ.S copies raw bits, but of the canonical NaN when unboxed */
	cpu->f[1] = S(2.0f);
	cpu->f[2] = S(-1.0f) | BOX;
	CHECK("fsgnj unboxed", run_f(enc_fp(F_SGNJ, FMT_S, 2, 1, 0, 4), FMT_S, &fl_),
	      CANON_S | 0x80000000, 0);
	cpu->f[1] = S(2.0f) | BOX;
	cpu->f[2] = S(-1.0f);
	CHECK("fsgnj unboxed rs2", run_f(enc_fp(F_SGNJ, FMT_S, 2, 1, 0, 4), FMT_S, &fl_), S(2.0f),
	      0);
	/* FMV.X.W takes the low 32 bits as they are, sign-extended */
	CHECK("fmv.x.w unboxed",
	      op_x(enc_fp(F_MV_TO_X, FMT_S, 0, 1, 0, 5), 0x12345678cafef00dull, 0, &fl_),
	      0xffffffffcafef00dull, 0);
	CHECK("fmv.x.w positive", op_x(enc_fp(F_MV_TO_X, FMT_S, 0, 1, 0, 5), BOX | 0x3f800000, 0, &fl_),
	      0x3f800000, 0);
	/* FMV.W.X boxes */
	cpu->x[7] = 0x0123456789abcdefull;
	cpu->fflags = 0;
	assert_int_equal(rv64_fpu_exec(cpu, enc_fp(F_MV_FROM_X, FMT_S, 0, 7, 0, 9)), 0);
	check("fmv.w.x", cpu->f[9], cpu->fflags, 0xffffffff89abcdefull, 0);
	assert_int_equal(rv64_fpu_exec(cpu, enc_fp(F_MV_FROM_X, FMT_D, 0, 7, 0, 9)), 0);
	check("fmv.d.x", cpu->f[9], cpu->fflags, 0x0123456789abcdefull, 0);
	CHECK("fmv.x.d", op_x(enc_fp(F_MV_TO_X, FMT_D, 0, 1, 0, 5), SNAN_D, 0, &fl_), SNAN_D, 0);
	/* FCLASS.S of an unboxed value: quiet NaN */
	CHECK("fclass unboxed", op_x(enc_fp(F_MV_TO_X, FMT_S, 0, 1, 1, 5), S(1.0f), 0, &fl_),
	      1u << 9, 0);
	/* FCVT.D.S of an unboxed value: canonical NaN, no NV */
	cpu->f[1] = SNAN_S;
	CHECK("cvt.d.s unboxed", run_f(enc_fp(F_CVT_FF, FMT_D, 0, 1, RNE, 4), FMT_D, &fl_),
	      CANON_D, 0);
}

static void test_sign_injection(void **state)
{
	uint64_t a = QNAN_D | SIGN_D, b = D(1.0);

	CHECK("fsgnj.d NaN payload kept", op2(F_SGNJ, FMT_D, 0, a, b, &fl_), QNAN_D, 0);
	CHECK("fsgnjn.d", op2(F_SGNJ, FMT_D, 1, a, b, &fl_), QNAN_D | SIGN_D, 0);
	CHECK("fsgnjx.d", op2(F_SGNJ, FMT_D, 2, a, D(-1.0), &fl_), QNAN_D, 0);
	CHECK("fsgnjx.d +", op2(F_SGNJ, FMT_D, 2, a, D(1.0), &fl_), QNAN_D | SIGN_D, 0);
	CHECK("fsgnj.d sNaN quiet", op2(F_SGNJ, FMT_D, 0, SNAN_D, SNAN_D, &fl_), SNAN_D, 0);
	CHECK("fneg.s", op2(F_SGNJ, FMT_S, 1, S(2.5f), S(2.5f), &fl_), S(-2.5f), 0);
	CHECK("fabs.s", op2(F_SGNJ, FMT_S, 2, S(-2.5f), S(-2.5f), &fl_), S(2.5f), 0);
	CHECK("fsgnj.s sNaN", op2(F_SGNJ, FMT_S, 0, SNAN_S, S(-1.0f), &fl_), SNAN_S | 0x80000000,
	      0);
}

static void test_min_max(void **state)
{
	const uint64_t pz = 0, nz = SIGN_D;

	CHECK("min(-0,+0)", op2(F_MINMAX, FMT_D, 0, nz, pz, &fl_), nz, 0);
	CHECK("min(+0,-0)", op2(F_MINMAX, FMT_D, 0, pz, nz, &fl_), nz, 0);
	CHECK("max(-0,+0)", op2(F_MINMAX, FMT_D, 1, nz, pz, &fl_), pz, 0);
	CHECK("max(+0,-0)", op2(F_MINMAX, FMT_D, 1, pz, nz, &fl_), pz, 0);
	CHECK("S min(+0,-0)", op2(F_MINMAX, FMT_S, 0, 0, 0x80000000, &fl_), 0x80000000, 0);
	CHECK("S max(-0,+0)", op2(F_MINMAX, FMT_S, 1, 0x80000000, 0, &fl_), 0, 0);
	CHECK("min(1,2)", op2(F_MINMAX, FMT_D, 0, D(1.0), D(2.0), &fl_), D(1.0), 0);
	CHECK("max(1,2)", op2(F_MINMAX, FMT_D, 1, D(1.0), D(2.0), &fl_), D(2.0), 0);
	CHECK("min(-inf,-1)", op2(F_MINMAX, FMT_D, 0, D(-1.0), INF_D | SIGN_D, &fl_),
	      INF_D | SIGN_D, 0);
	CHECK("max(-3,-2)", op2(F_MINMAX, FMT_D, 1, D(-3.0), D(-2.0), &fl_), D(-2.0), 0);
	CHECK("min(qNaN,1)", op2(F_MINMAX, FMT_D, 0, QNAN_D, D(1.0), &fl_), D(1.0), 0);
	CHECK("max(1,qNaN)", op2(F_MINMAX, FMT_D, 1, D(1.0), QNAN_D, &fl_), D(1.0), 0);
	CHECK("min(sNaN,1)", op2(F_MINMAX, FMT_D, 0, SNAN_D, D(1.0), &fl_), D(1.0), NV);
	CHECK("max(-0,sNaN)", op2(F_MINMAX, FMT_D, 1, nz, SNAN_D, &fl_), nz, NV);
	CHECK("min(qNaN,qNaN)", op2(F_MINMAX, FMT_D, 0, QNAN_D, QNAN_D, &fl_), CANON_D, 0);
	CHECK("max(sNaN,qNaN)", op2(F_MINMAX, FMT_D, 1, SNAN_D, QNAN_D, &fl_), CANON_D, NV);
	CHECK("S min(qNaN,-5)", op2(F_MINMAX, FMT_S, 0, QNAN_S, S(-5.0f), &fl_), S(-5.0f), 0);
	CHECK("S max(sNaN,sNaN)", op2(F_MINMAX, FMT_S, 1, SNAN_S, SNAN_S, &fl_), CANON_S, NV);
	CHECK("S min subnormals", op2(F_MINMAX, FMT_S, 0, 2, 1, &fl_), 1, 0);
}

static void test_compare(void **state)
{
	const uint32_t feq = enc_fp(F_CMP, FMT_D, 2, 1, 2, 5);
	const uint32_t flt = enc_fp(F_CMP, FMT_D, 2, 1, 1, 5);
	const uint32_t fle = enc_fp(F_CMP, FMT_D, 2, 1, 0, 5);
	const uint32_t feq_s = enc_fp(F_CMP, FMT_S, 2, 1, 2, 5);
	const uint32_t flt_s = enc_fp(F_CMP, FMT_S, 2, 1, 1, 5);

	CHECK("feq 1,1", op_x(feq, D(1.0), D(1.0), &fl_), 1, 0);
	CHECK("feq 1,2", op_x(feq, D(1.0), D(2.0), &fl_), 0, 0);
	CHECK("feq -0,+0", op_x(feq, SIGN_D, 0, &fl_), 1, 0);
	CHECK("flt -0,+0", op_x(flt, SIGN_D, 0, &fl_), 0, 0);
	CHECK("fle -0,+0", op_x(fle, SIGN_D, 0, &fl_), 1, 0);
	CHECK("flt 1,2", op_x(flt, D(1.0), D(2.0), &fl_), 1, 0);
	CHECK("flt 2,1", op_x(flt, D(2.0), D(1.0), &fl_), 0, 0);
	CHECK("fle 2,2", op_x(fle, D(2.0), D(2.0), &fl_), 1, 0);
	CHECK("flt -inf,max", op_x(flt, INF_D | SIGN_D, MAX_D, &fl_), 1, 0);
	/* FEQ is quiet: NV only for signaling NaNs; FLT/FLE signal for any NaN */
	CHECK("feq qNaN", op_x(feq, QNAN_D, D(1.0), &fl_), 0, 0);
	CHECK("feq qNaN,qNaN", op_x(feq, QNAN_D, QNAN_D, &fl_), 0, 0);
	CHECK("feq sNaN", op_x(feq, D(1.0), SNAN_D, &fl_), 0, NV);
	CHECK("flt qNaN", op_x(flt, QNAN_D, D(1.0), &fl_), 0, NV);
	CHECK("fle qNaN", op_x(fle, D(1.0), QNAN_D, &fl_), 0, NV);
	CHECK("fle sNaN", op_x(fle, SNAN_D, SNAN_D, &fl_), 0, NV);
	CHECK("feq.s 1,1", op_x(feq_s, S(1.0f) | BOX, S(1.0f) | BOX, &fl_), 1, 0);
	CHECK("feq.s unboxed", op_x(feq_s, S(1.0f), S(1.0f) | BOX, &fl_), 0, 0);
	CHECK("flt.s unboxed", op_x(flt_s, S(1.0f) | BOX, S(2.0f), &fl_), 0, NV);
	CHECK("flt.s sub", op_x(flt_s, BOX | 1, BOX | 2, &fl_), 1, 0);

	/* rd = x0 is never written */
	cpu->x[0] = 0;
	cpu->f[1] = D(1.0);
	assert_int_equal(rv64_fpu_exec(cpu, enc_fp(F_CMP, FMT_D, 1, 1, 2, 0)), 0);
	assert_int_equal(cpu->x[0], 0);
	assert_int_equal(rv64_fpu_exec(cpu, enc_fp(F_CVT_TO_INT, FMT_D, 0, 1, RNE, 0)), 0);
	assert_int_equal(cpu->x[0], 0);
}

static void test_classify(void **state)
{
	const struct {
		uint64_t d, s;
		unsigned bit;
	} cases[] = {
		{INF_D | SIGN_D, INF_S | 0x80000000, 0},
		{D(-1.5), S(-1.5f), 1},
		{1 | SIGN_D, 0x80000001, 2},
		{SIGN_D, 0x80000000, 3},
		{0, 0, 4},
		{0x000fffffffffffffull, 0x007fffff, 5},
		{D(0x1p-1022), 0x00800000, 6},
		{MAX_D, MAX_S, 6},
		{INF_D, INF_S, 7},
		{SNAN_D, SNAN_S, 8},
		{0x7ff7ffffffffffffull, 0x7fbfffff, 8},
		{QNAN_D, QNAN_S, 9},
		{CANON_D | SIGN_D, CANON_S | 0x80000000, 9},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		uint32_t fl;
		uint64_t r = op_x(enc_fp(F_MV_TO_X, FMT_D, 0, 1, 1, 5), cases[i].d, 0, &fl);

		if (r != 1u << cases[i].bit || fl)
			fail_msg("fclass.d %016llx: %llx", (unsigned long long)cases[i].d,
				 (unsigned long long)r);
		r = op_x(enc_fp(F_MV_TO_X, FMT_S, 0, 1, 1, 5), cases[i].s | BOX, 0, &fl);
		if (r != 1u << cases[i].bit || fl)
			fail_msg("fclass.s %08llx: %llx", (unsigned long long)cases[i].s,
				 (unsigned long long)r);
	}
}

/* ---- conversions */

static uint64_t cvt_to_int(unsigned fmt, unsigned kind, unsigned rm, uint64_t a, uint32_t *fl)
{
	return op_x(enc_fp(F_CVT_TO_INT, fmt, kind, 1, rm, 5), in_reg(fmt, a), 0, fl);
}

enum { W = 0, WU = 1, L = 2, LU = 3 };

static void test_cvt_to_int_saturation(void **state)
{
	/* unpriv §11.7 table 11.4; 32-bit results are sign-extended to 64 bits */
	const struct {
		const char *what;
		uint64_t in;
		uint64_t out[4]; /* W WU L LU */
		uint32_t fl[4];
	} cases[] = {
		{"NaN", QNAN_D, {0x7fffffff, ~0ull, 0x7fffffffffffffff, ~0ull}, {NV, NV, NV, NV}},
		{"-NaN", CANON_D | SIGN_D, {0x7fffffff, ~0ull, 0x7fffffffffffffff, ~0ull},
		 {NV, NV, NV, NV}},
		{"+inf", INF_D, {0x7fffffff, ~0ull, 0x7fffffffffffffff, ~0ull}, {NV, NV, NV, NV}},
		{"-inf", INF_D | SIGN_D, {0xffffffff80000000, 0, 0x8000000000000000, 0},
		 {NV, NV, NV, NV}},
		{"1e20", D(1e20), {0x7fffffff, ~0ull, 0x7fffffffffffffff, ~0ull}, {NV, NV, NV, NV}},
		{"-1e20", D(-1e20), {0xffffffff80000000, 0, 0x8000000000000000, 0},
		 {NV, NV, NV, NV}},
		{"2^31", D(0x1p31), {0x7fffffff, 0xffffffff80000000, 0x80000000, 0x80000000},
		 {NV, 0, 0, 0}},
		{"2^31-1", D(2147483647.0), {0x7fffffff, 0x7fffffff, 0x7fffffff, 0x7fffffff},
		 {0, 0, 0, 0}},
		{"-2^31", D(-0x1p31), {0xffffffff80000000, 0, 0xffffffff80000000, 0},
		 {0, NV, 0, NV}},
		{"-2^31-1", D(-2147483649.0), {0xffffffff80000000, 0, 0xffffffff7fffffff, 0},
		 {NV, NV, 0, NV}},
		{"2^32-1", D(4294967295.0), {0x7fffffff, ~0ull, 0xffffffff, 0xffffffff},
		 {NV, 0, 0, 0}},
		{"2^32", D(0x1p32), {0x7fffffff, ~0ull, 0x100000000, 0x100000000}, {NV, NV, 0, 0}},
		{"2^63", D(0x1p63), {0x7fffffff, ~0ull, 0x7fffffffffffffff, 0x8000000000000000},
		 {NV, NV, NV, 0}},
		{"-2^63", D(-0x1p63), {0xffffffff80000000, 0, 0x8000000000000000, 0},
		 {NV, NV, 0, NV}},
		{"2^64-2048", D(0x1p64 - 2048), {0x7fffffff, ~0ull, 0x7fffffffffffffff,
						 0xfffffffffffff800},
		 {NV, NV, NV, 0}},
		{"2^64", D(0x1p64), {0x7fffffff, ~0ull, 0x7fffffffffffffff, ~0ull}, {NV, NV, NV, NV}},
		{"-1", D(-1.0), {~0ull, 0, ~0ull, 0}, {0, NV, 0, NV}},
		{"-0.5", D(-0.5), {0, 0, 0, 0}, {NX, NX, NX, NX}},
		{"-0", SIGN_D, {0, 0, 0, 0}, {0, 0, 0, 0}},
		{"min sub", 1, {0, 0, 0, 0}, {NX, NX, NX, NX}},
		{"2^31-0.5", D(2147483647.5), {0x7fffffff, 0xffffffff80000000, 0x80000000, 0x80000000},
		 {NV, NX, NX, NX}},
		{"-2^31-0.5", D(-2147483648.5), {0xffffffff80000000, 0, 0xffffffff80000000, 0},
		 {NX, NV, NX, NV}},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		for (unsigned k = 0; k < 4; k++) {
			uint32_t fl;
			uint64_t r = cvt_to_int(FMT_D, k, RNE, cases[i].in, &fl);

			if (r != cases[i].out[k] || fl != cases[i].fl[k])
				fail_msg("fcvt.%s.d %s: got %016llx/%x want %016llx/%x",
					 (const char *[]){"w", "wu", "l", "lu"}[k], cases[i].what,
					 (unsigned long long)r, fl,
					 (unsigned long long)cases[i].out[k], cases[i].fl[k]);
		}
	}
	/* single sources */
	CHECK("s NaN w", cvt_to_int(FMT_S, W, RNE, CANON_S | 0x80000000, &fl_), 0x7fffffff, NV);
	CHECK("s -inf lu", cvt_to_int(FMT_S, LU, RNE, INF_S | 0x80000000, &fl_), 0, NV);
	CHECK("s 2^63 l", cvt_to_int(FMT_S, L, RTZ, S(0x1p63f), &fl_), 0x7fffffffffffffff, NV);
	CHECK("s -2^63 l", cvt_to_int(FMT_S, L, RTZ, S(-0x1p63f), &fl_), 0x8000000000000000, 0);
	CHECK("s 2^32 wu", cvt_to_int(FMT_S, WU, RTZ, S(0x1p32f), &fl_), ~0ull, NV);
	CHECK("s 3e9 wu", cvt_to_int(FMT_S, WU, RTZ, S(3e9f), &fl_), 0xffffffffb2d05e00, 0);
	CHECK("s unboxed w", op_x(enc_fp(F_CVT_TO_INT, FMT_S, W, 1, RNE, 5), S(1.0f), 0, &fl_),
	      0x7fffffff, NV);
}

static void test_cvt_to_int_rounding(void **state)
{
	static const int64_t want_pos[5] = {2, 2, 2, 3, 3}; /* 2.5 */
	static const int64_t want_neg[5] = {-2, -2, -3, -2, -3}; /* -2.5 */
	static const int64_t want_35[5] = {4, 3, 3, 4, 4};       /* 3.5 */
	static const int64_t want_27[5] = {3, 2, 2, 3, 3};       /* 2.7 */
	static const int64_t want_m27[5] = {-3, -2, -3, -2, -3}; /* -2.7 */

	for (unsigned rm = 0; rm < 5; rm++) {
		for (unsigned k = W; k <= L; k += 2) {
			CHECK("2.5", cvt_to_int(FMT_D, k, rm, D(2.5), &fl_), (uint64_t)want_pos[rm],
			      NX);
			CHECK("-2.5", cvt_to_int(FMT_D, k, rm, D(-2.5), &fl_),
			      (uint64_t)want_neg[rm], NX);
			CHECK("3.5", cvt_to_int(FMT_D, k, rm, D(3.5), &fl_), (uint64_t)want_35[rm],
			      NX);
			CHECK("2.7 s", cvt_to_int(FMT_S, k, rm, S(2.7f), &fl_),
			      (uint64_t)want_27[rm], NX);
			CHECK("-2.7 s", cvt_to_int(FMT_S, k, rm, S(-2.7f), &fl_),
			      (uint64_t)want_m27[rm], NX);
		}
		CHECK("0.5 lu", cvt_to_int(FMT_D, LU, rm, D(0.5), &fl_),
		      (uint64_t)(rm == RUP || rm == RMM), NX);
		/* -0.5 rounds to 0 (NX) except in RDN/RMM where -1 is out of range for WU */
		CHECK("-0.5 wu", cvt_to_int(FMT_D, WU, rm, D(-0.5), &fl_),
		      0, (rm == RDN || rm == RMM) ? NV : NX);
		CHECK("big exact", cvt_to_int(FMT_D, L, rm, D(0x1.23456789abcdep60), &fl_),
		      0x123456789abcde00ull, 0);
	}
	CHECK("2^31-0.5 RTZ", cvt_to_int(FMT_D, W, RTZ, D(2147483647.5), &fl_), 0x7fffffff, NX);
	CHECK("2^31-0.5 RMM", cvt_to_int(FMT_D, W, RMM, D(2147483647.5), &fl_), 0x7fffffff, NV);
	CHECK("-2^31-0.5 RNE", cvt_to_int(FMT_D, W, RNE, D(-2147483648.5), &fl_),
	      0xffffffff80000000, NX);
	CHECK("-2^31-0.5 RMM", cvt_to_int(FMT_D, W, RMM, D(-2147483648.5), &fl_),
	      0xffffffff80000000, NV);
	CHECK("-2^31-0.5 RUP", cvt_to_int(FMT_D, W, RUP, D(-2147483648.5), &fl_),
	      0xffffffff80000000, NX);
	CHECK("2^64-2048 LU RUP", cvt_to_int(FMT_D, LU, RUP, D(0x1p64 - 2048), &fl_),
	      0xfffffffffffff800, 0);
}

static uint64_t cvt_from_int(unsigned fmt, unsigned kind, unsigned rm, uint64_t x, uint32_t *fl)
{
	cpu->x[6] = x;
	return run_f(enc_fp(F_CVT_FROM_INT, fmt, kind, 6, rm, 4), fmt, fl);
}

static void test_cvt_from_int(void **state)
{
	/* 2^24 + 1 is a tie between 2^24 and 2^24 + 2 in single */
	const uint64_t want[5] = {0x4b800000, 0x4b800000, 0x4b800000, 0x4b800001, 0x4b800001};
	const uint64_t want_neg[5] = {0xcb800000, 0xcb800000, 0xcb800001, 0xcb800000, 0xcb800001};
	/* 2^64 - 1 to double: 2^64 except when rounding toward zero/down */
	const uint64_t want_lu[5] = {D(0x1p64), D(0x1p64 - 2048), D(0x1p64 - 2048), D(0x1p64),
				     D(0x1p64)};

	for (unsigned rm = 0; rm < 5; rm++) {
		for (unsigned k = W; k <= LU; k++)
			CHECK("2^24+1", cvt_from_int(FMT_S, k, rm, 16777217, &fl_), want[rm], NX);
		CHECK("-(2^24+1) w", cvt_from_int(FMT_S, W, rm, (uint64_t)-16777217, &fl_),
		      want_neg[rm], NX);
		CHECK("-(2^24+1) l", cvt_from_int(FMT_S, L, rm, (uint64_t)-16777217, &fl_),
		      want_neg[rm], NX);
		CHECK("2^64-1", cvt_from_int(FMT_D, LU, rm, ~0ull, &fl_), want_lu[rm], NX);
		CHECK("-2^63 l", cvt_from_int(FMT_D, L, rm, 1ull << 63, &fl_), D(-0x1p63), 0);
		CHECK("-1 w", cvt_from_int(FMT_D, W, rm, ~0ull, &fl_), D(-1.0), 0);
		CHECK("wu 2^32-1", cvt_from_int(FMT_D, WU, rm, ~0ull, &fl_), D(4294967295.0), 0);
		CHECK("0", cvt_from_int(FMT_D, L, rm, 0, &fl_), 0, 0);
	}
	CHECK("w ignores upper bits", cvt_from_int(FMT_D, W, RNE, 0x1234567800000001ull, &fl_),
	      D(1.0), 0);
	CHECK("w int32 min", cvt_from_int(FMT_S, W, RNE, 0x80000000, &fl_), S(-0x1p31f), 0);
	CHECK("wu 0x80000000", cvt_from_int(FMT_S, WU, RNE, 0x80000000, &fl_), S(0x1p31f), 0);
	CHECK("s.w max RNE", cvt_from_int(FMT_S, W, RNE, 0x7fffffff, &fl_), 0x4f000000, NX);
	CHECK("s.w max RTZ", cvt_from_int(FMT_S, W, RTZ, 0x7fffffff, &fl_), 0x4effffff, NX);
	CHECK("d.l 2^53+1 RNE", cvt_from_int(FMT_D, L, RNE, (1ull << 53) + 1, &fl_), D(0x1p53),
	      NX);
	CHECK("d.l 2^53+1 RMM", cvt_from_int(FMT_D, L, RMM, (1ull << 53) + 1, &fl_),
	      D(0x1p53) + 1, NX);
	CHECK("d.l 2^53+3 RNE", cvt_from_int(FMT_D, L, RNE, (1ull << 53) + 3, &fl_),
	      D(0x1p53) + 2, NX);
}

static void test_cvt_s_d(void **state)
{
	/* 1 + 2^-24 is a single-precision tie */
	const uint64_t want[5] = {0x3f800000, 0x3f800000, 0x3f800000, 0x3f800001, 0x3f800001};

	for (unsigned rm = 0; rm < 5; rm++) {
		CHECK("1+2^-24", op1(F_CVT_FF, FMT_S, 1, rm, D(1.0 + 0x1p-24), &fl_), want[rm], NX);
		CHECK("exact", op1(F_CVT_FF, FMT_S, 1, rm, D(-0.375), &fl_), S(-0.375f), 0);
		CHECK("-0", op1(F_CVT_FF, FMT_S, 1, rm, SIGN_D, &fl_), 0x80000000, 0);
		CHECK("-inf", op1(F_CVT_FF, FMT_S, 1, rm, INF_D | SIGN_D, &fl_), 0xff800000, 0);
	}
	CHECK("1/3", op1(F_CVT_FF, FMT_S, 1, RNE, D(1.0 / 3.0), &fl_), 0x3eaaaaab, NX);
	CHECK("1/3 RTZ", op1(F_CVT_FF, FMT_S, 1, RTZ, D(1.0 / 3.0), &fl_), 0x3eaaaaaa, NX);
	CHECK("1/3 RMM", op1(F_CVT_FF, FMT_S, 1, RMM, D(1.0 / 3.0), &fl_), 0x3eaaaaab, NX);
	CHECK("2^-149 * 1.5 RMM", op1(F_CVT_FF, FMT_S, 1, RMM, D(0x3p-150), &fl_), 2, UF | NX);
	CHECK("2^-149 * 1.5 RNE", op1(F_CVT_FF, FMT_S, 1, RNE, D(0x3p-150), &fl_), 2, UF | NX);
	CHECK("2^-149 * 2.5 RNE", op1(F_CVT_FF, FMT_S, 1, RNE, D(0x5p-150), &fl_), 2, UF | NX);
	CHECK("2^-149 * 2.5 RMM", op1(F_CVT_FF, FMT_S, 1, RMM, D(0x5p-150), &fl_), 3, UF | NX);
}

/* ---- fused multiply-add */

static void test_fma(void **state)
{
	const uint64_t a = D(1.0 + 0x1p-30);

	CHECK("fmadd", op_fma(OPC_FMADD, FMT_D, RNE, D(2.0), D(3.0), D(1.0), &fl_), D(7.0), 0);
	CHECK("fmsub", op_fma(OPC_FMSUB, FMT_D, RNE, D(2.0), D(3.0), D(1.0), &fl_), D(5.0), 0);
	CHECK("fnmsub", op_fma(OPC_FNMSUB, FMT_D, RNE, D(2.0), D(3.0), D(1.0), &fl_), D(-5.0), 0);
	CHECK("fnmadd", op_fma(OPC_FNMADD, FMT_D, RNE, D(2.0), D(3.0), D(1.0), &fl_), D(-7.0), 0);
	CHECK("S fnmadd", op_fma(OPC_FNMADD, FMT_S, RMM, S(2.0f), S(3.0f), S(1.0f), &fl_),
	      S(-7.0f), 0);
	/*
	 * (1 + 2^-30)^2 - (1 + 2^-29) = 2^-60 exactly; a separate multiply would round the
	 * product to 1 + 2^-29 and give 0 with NX.
	 */
	for (unsigned rm = 0; rm < 5; rm++) {
		CHECK("single rounding", op_fma(OPC_FMSUB, FMT_D, rm, a, a, D(1.0 + 0x1p-29), &fl_),
		      D(0x1p-60), 0);
		CHECK("S single rounding",
		      op_fma(OPC_FMSUB, FMT_S, rm, S(1.0f + 0x1p-12f), S(1.0f + 0x1p-12f),
			     S(1.0f + 0x1p-11f), &fl_),
		      S(0x1p-24f), 0);
	}
	CHECK("mul alone rounds", op2(F_MUL, FMT_D, RNE, a, a, &fl_), D(1.0 + 0x1p-29), NX);
	/* (1 + 2^-52) * (1 - 2^-53) + tiny: the sticky tail decides the direction */
	CHECK("fma sticky RNE",
	      op_fma(OPC_FMADD, FMT_D, RNE, D(1.0 + 0x1p-52), D(1.0 + 0x1p-52), D(0x1p-200), &fl_),
	      D(1.0 + 0x1p-51), NX);
	CHECK("fma sticky RTZ",
	      op_fma(OPC_FMADD, FMT_D, RTZ, D(1.0 + 0x1p-52), D(1.0 + 0x1p-52), D(-0x1p-200), &fl_),
	      D(1.0 + 0x1p-51), NX);
	/* (1 + 2^-52)(1 - 2^-53) = 1 + 2^-53 - 2^-105: just below a tie, so RMM goes down */
	CHECK("fma below tie RMM",
	      op_fma(OPC_FMADD, FMT_D, RMM, D(1.0 + 0x1p-52), D(1.0 - 0x1p-53), 0, &fl_), D(1.0),
	      NX);
	CHECK("fma below tie RMM c",
	      op_fma(OPC_FMADD, FMT_D, RMM, D(1.0 + 0x1p-52), D(1.0 - 0x1p-53), D(0x1p-300), &fl_),
	      D(1.0), NX);
	CHECK("mul below tie RMM", op2(F_MUL, FMT_D, RMM, D(1.0 + 0x1p-52), D(1.0 - 0x1p-53), &fl_),
	      D(1.0), NX);
	CHECK("mul below tie RUP", op2(F_MUL, FMT_D, RUP, D(1.0 + 0x1p-52), D(1.0 - 0x1p-53), &fl_),
	      D(1.0 + 0x1p-52), NX);
	/* a tie made by the addend: 1*1 + 2^-53 */
	CHECK("fma tie RNE", op_fma(OPC_FMADD, FMT_D, RNE, D(1.0), D(1.0), D(0x1p-53), &fl_),
	      D(1.0), NX);
	CHECK("fma tie RMM", op_fma(OPC_FMADD, FMT_D, RMM, D(1.0), D(1.0), D(0x1p-53), &fl_),
	      D(1.0 + 0x1p-52), NX);
	CHECK("fma tie RMM neg", op_fma(OPC_FNMADD, FMT_D, RMM, D(1.0), D(1.0), D(0x1p-53), &fl_),
	      D(-1.0 - 0x1p-52), NX);
	/* signed zeros: +0*1 + -0 = +0, -0 in RDN; -(+0*1) - (+0) = -0 */
	CHECK("0+-0", op_fma(OPC_FMADD, FMT_D, RNE, 0, D(1.0), SIGN_D, &fl_), 0, 0);
	CHECK("0+-0 RDN", op_fma(OPC_FMADD, FMT_D, RDN, 0, D(1.0), SIGN_D, &fl_), SIGN_D, 0);
	CHECK("0+-0 RMM", op_fma(OPC_FMADD, FMT_D, RMM, 0, D(1.0), SIGN_D, &fl_), 0, 0);
	CHECK("fnmadd zeros", op_fma(OPC_FNMADD, FMT_D, RNE, 0, D(1.0), 0, &fl_), SIGN_D, 0);
	CHECK("1*1-1 RDN", op_fma(OPC_FMSUB, FMT_D, RDN, D(1.0), D(1.0), D(1.0), &fl_), SIGN_D, 0);
	CHECK("1*1-1 RMM", op_fma(OPC_FMSUB, FMT_D, RMM, D(1.0), D(1.0), D(1.0), &fl_), 0, 0);
	/* an infinite addend absorbs an overflowing product without OF */
	CHECK("max*max-inf", op_fma(OPC_FMADD, FMT_D, RNE, MAX_D, MAX_D, INF_D | SIGN_D, &fl_),
	      INF_D | SIGN_D, 0);
	CHECK("max*max-inf RMM", op_fma(OPC_FMADD, FMT_D, RMM, MAX_D, MAX_D, INF_D | SIGN_D, &fl_),
	      INF_D | SIGN_D, 0);
	CHECK("inf*2+1 RMM", op_fma(OPC_FMADD, FMT_D, RMM, INF_D, D(2.0), D(1.0), &fl_), INF_D, 0);
	/* tiny products: underflow is judged on the final sum */
	CHECK("tiny prod + 1", op_fma(OPC_FMADD, FMT_D, RNE, 1, 1, D(1.0), &fl_), D(1.0), NX);
	CHECK("tiny prod + 1 RUP", op_fma(OPC_FMADD, FMT_D, RUP, 1, 1, D(1.0), &fl_),
	      D(1.0 + 0x1p-52), NX);
	CHECK("tiny prod RMM", op_fma(OPC_FMADD, FMT_D, RMM, 1, D(0.5), 0, &fl_), 1, UF | NX);
}

/* ---- illegal encodings */

static void expect_illegal(const char *what, uint32_t insn)
{
	int rc;

	cpu->exc_cause = 0;
	cpu->exc_tval = 0;
	cpu->fflags = 0x1f & ~NX;
	cpu->f[4] = 0x1234;
	cpu->x[5] = 0x5678;
	rc = rv64_fpu_exec(cpu, insn);
	if (rc != -1 || cpu->exc_cause != RV64_EXC_ILLEGAL_INSN || cpu->exc_tval != insn ||
	    cpu->fflags != (0x1f & ~NX) || cpu->f[4] != 0x1234 || cpu->x[5] != 0x5678)
		fail_msg("%s (%08x): rc %d cause %llu tval %llx fflags %x", what, insn, rc,
			 (unsigned long long)cpu->exc_cause, (unsigned long long)cpu->exc_tval,
			 cpu->fflags);
}

static void test_illegal(void **state)
{
	cpu->f[1] = D(1.0);
	cpu->f[2] = D(3.0);
	cpu->f[3] = D(1.0);
	for (unsigned rm = 5; rm <= 6; rm++) {
		expect_illegal("fadd rm", enc_fp(F_ADD, FMT_D, 2, 1, rm, 4));
		expect_illegal("fdiv.s rm", enc_fp(F_DIV, FMT_S, 2, 1, rm, 4));
		expect_illegal("fsqrt rm", enc_fp(F_SQRT, FMT_D, 0, 1, rm, 4));
		expect_illegal("fmadd rm", enc_fma(OPC_FMADD, FMT_D, 3, 2, 1, rm, 4));
		expect_illegal("fcvt.w.d rm", enc_fp(F_CVT_TO_INT, FMT_D, 0, 1, rm, 5));
		expect_illegal("fcvt.d.w rm", enc_fp(F_CVT_FROM_INT, FMT_D, 0, 1, rm, 4));
		expect_illegal("fcvt.s.d rm", enc_fp(F_CVT_FF, FMT_S, 1, 1, rm, 4));
		expect_illegal("fcvt.d.s rm", enc_fp(F_CVT_FF, FMT_D, 0, 1, rm, 4));
	}
	for (unsigned frm = 5; frm <= 7; frm++) {
		cpu->frm = frm;
		expect_illegal("fadd dyn", enc_fp(F_ADD, FMT_D, 2, 1, DYN, 4));
		expect_illegal("fnmsub dyn", enc_fma(OPC_FNMSUB, FMT_S, 3, 2, 1, DYN, 4));
		expect_illegal("fcvt.l.s dyn", enc_fp(F_CVT_TO_INT, FMT_S, 2, 1, DYN, 5));
	}
	cpu->frm = RNE;
	expect_illegal("fsgnj funct3 3", enc_fp(F_SGNJ, FMT_D, 2, 1, 3, 4));
	expect_illegal("fmin funct3 2", enc_fp(F_MINMAX, FMT_D, 2, 1, 2, 4));
	expect_illegal("fcmp funct3 3", enc_fp(F_CMP, FMT_D, 2, 1, 3, 5));
	expect_illegal("fclass funct3 2", enc_fp(F_MV_TO_X, FMT_D, 0, 1, 2, 5));
	expect_illegal("fmv.x.d rs2", enc_fp(F_MV_TO_X, FMT_D, 1, 1, 0, 5));
	expect_illegal("fmv.d.x funct3", enc_fp(F_MV_FROM_X, FMT_D, 0, 1, 1, 4));
	expect_illegal("fsqrt rs2", enc_fp(F_SQRT, FMT_D, 1, 1, RNE, 4));
	expect_illegal("fcvt.s.s", enc_fp(F_CVT_FF, FMT_S, 0, 1, RNE, 4));
	expect_illegal("fcvt.d.d", enc_fp(F_CVT_FF, FMT_D, 1, 1, RNE, 4));
	expect_illegal("fcvt.w.d rs2=4", enc_fp(F_CVT_TO_INT, FMT_D, 4, 1, RNE, 5));
	expect_illegal("fcvt.d.w rs2=5", enc_fp(F_CVT_FROM_INT, FMT_D, 5, 1, RNE, 4));
	expect_illegal("fmt H", enc_fp(F_ADD, 2, 2, 1, RNE, 4));
	expect_illegal("fmt Q", enc_fp(F_ADD, 3, 2, 1, RNE, 4));
	expect_illegal("fmadd.q", enc_fma(OPC_FMADD, 3, 3, 2, 1, RNE, 4));
	expect_illegal("funct5 0x06", enc_fp(0x06, FMT_D, 2, 1, RNE, 4));
	expect_illegal("funct5 0x1f", enc_fp(0x1f, FMT_D, 0, 1, RNE, 4));
	expect_illegal("opcode", (enc_fp(F_ADD, FMT_D, 2, 1, RNE, 4) & ~0x7fu) | 0x13);
}

static void test_flags_accrue(void **state)
{
	uint32_t fl;

	cpu->f[1] = D(1.0);
	cpu->f[2] = D(3.0);
	cpu->fflags = 0;
	assert_int_equal(rv64_fpu_exec(cpu, enc_fp(F_DIV, FMT_D, 2, 1, RNE, 4)), 0);
	assert_int_equal(cpu->fflags, NX);
	cpu->f[2] = 0;
	assert_int_equal(rv64_fpu_exec(cpu, enc_fp(F_DIV, FMT_D, 2, 1, RNE, 4)), 0);
	assert_int_equal(cpu->fflags, NX | DZ);
	cpu->f[2] = D(2.0);
	assert_int_equal(rv64_fpu_exec(cpu, enc_fp(F_DIV, FMT_D, 2, 1, RNE, 4)), 0);
	assert_int_equal(cpu->fflags, NX | DZ);
	assert_int_equal(cpu->f[4], D(0.5));
	/* rd may equal a source */
	cpu->f[1] = D(1.5);
	cpu->fflags = 0;
	assert_int_equal(rv64_fpu_exec(cpu, enc_fp(F_ADD, FMT_D, 1, 1, RNE, 1)), 0);
	assert_int_equal(cpu->f[1], D(3.0));
	fl = cpu->fflags;
	assert_int_equal(fl, 0);
}

/*
 * The host path leaves host flags set between instructions; stale host flags must never reach
 * a guest whose fflags lack them, whatever ran on the host in between.
 */
static void test_host_flag_isolation(void **state)
{
	volatile double x = 1.0, y = 3.0, big = 0x1p1000, tiny = 0x1p-1000, zero = 0.0;
	volatile double sink;

	cpu->f[1] = D(1.0);
	cpu->f[2] = D(3.0);
	cpu->fflags = NX;
	assert_int_equal(rv64_fpu_exec(cpu, enc_fp(F_DIV, FMT_D, 2, 1, RNE, 4)), 0);
	assert_int_equal(cpu->fflags, NX);
	/* the guest clears fflags (csrw fflags): an exact operation must raise nothing */
	cpu->fflags = 0;
	assert_int_equal(rv64_fpu_exec(cpu, enc_fp(F_ADD, FMT_D, 2, 1, RNE, 4)), 0);
	assert_int_equal(cpu->fflags, 0);
	/* host code raising every flag between two guest instructions */
	sink = x / y;
	sink = big * big;
	sink = tiny * tiny;
	sink = x / zero;
	sink = zero / zero;
	(void)sink;
	assert_int_equal(rv64_fpu_exec(cpu, enc_fp(F_MUL, FMT_D, 2, 1, RTZ, 4)), 0);
	assert_int_equal(cpu->fflags, 0);
	cpu->fflags = NX;
	assert_int_equal(rv64_fpu_exec(cpu, enc_fp(F_MUL, FMT_S, 2, 1, RNE, 4)), 0);
	assert_int_equal(cpu->fflags, NX); /* unboxed: the canonical NaN is quiet */
	/* a guest with NX and the host with PE: a new flag is still seen */
	cpu->f[1] = MAX_D;
	cpu->f[2] = D(2.0);
	cpu->fflags = NX;
	assert_int_equal(rv64_fpu_exec(cpu, enc_fp(F_MUL, FMT_D, 2, 1, RNE, 4)), 0);
	assert_int_equal(cpu->fflags, NX | OF);
	cpu->f[1] = D(0x1p-1000);
	cpu->f[2] = D(0x1p-1000);
	assert_int_equal(rv64_fpu_exec(cpu, enc_fp(F_MUL, FMT_D, 2, 1, RNE, 4)), 0);
	assert_int_equal(cpu->fflags, NX | OF | UF);
	/* and the host's own rounding mode is back to nearest after a directed guest mode */
	sink = x / y;
	assert_true(sink == 1.0 / 3.0);
	cpu->fflags = 0;
	assert_int_equal(rv64_fpu_exec(cpu, enc_fp(F_DIV, FMT_D, 2, 1, RUP, 4)), 0);
	sink = x / y;
	assert_true(D(sink) == 0x3fd5555555555555ull);
}

/* ---- the portable host path against the x86 one */

#if defined(__x86_64__)
#define KUMO_FPU_GENERIC
#define rv64_fpu_exec rv64_fpu_exec_generic
#include "accel/rv64/fpu.c"
#undef rv64_fpu_exec

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Operands with a bias toward the interesting: specials, extremes, near-equal values. */
static uint64_t rand_operand(unsigned fmt, uint64_t other)
{
	const uint64_t special_d[] = {0, SIGN_D, INF_D, INF_D | SIGN_D, SNAN_D, QNAN_D,
					     MAX_D, 1, 0x000fffffffffffff, 0x0010000000000000,
					     D(1.0), D(-1.0), D(2.0), D(0.5)};
	const uint64_t special_s[] = {0, 0x80000000, INF_S, INF_S | 0x80000000, SNAN_S,
					     QNAN_S, MAX_S, 1, 0x007fffff, 0x00800000,
					     S(1.0f), S(-1.0f), S(2.0f), S(0.5f)};
	uint64_t r = rng(), v;
	unsigned kind = r & 7;

	r >>= 3;
	if (fmt == FMT_D) {
		switch (kind) {
		case 0:
			return special_d[r % ARRAY_SIZE(special_d)];
		case 1: /* near the other operand (cancellation, ties) */
			return other ^ (r & 0xff) ^ ((r >> 8 & 1) << 63);
		case 2: /* small exponents */
			v = r & 0x800fffffffffffffull;
			return v | (uint64_t)((r >> 52) % 60) << 52;
		case 3: /* exponent near 0 with few mantissa bits */
			return (r & 0x8000000000000000ull) |
			       (uint64_t)(1013 + (r >> 12) % 20) << 52 | (r & 0xff) << 40;
		default:
			return rng();
		}
	}
	switch (kind) {
	case 0:
		return special_s[r % ARRAY_SIZE(special_s)];
	case 1:
		return (other ^ (r & 0xf) ^ ((r >> 8 & 1) << 31)) & 0xffffffff;
	case 2:
		return (r & 0x807fffff) | (uint64_t)((r >> 32) % 30) << 23;
	case 3:
		return (r & 0x80000000) | (uint64_t)(117 + (r >> 40) % 20) << 23 |
		       (r & 0xff) << 10;
	default:
		return rng() & 0xffffffff;
	}
}

static void test_generic_path_agrees(void **state)
{
	struct rv64_cpu *g = calloc(1, sizeof(*g));
	unsigned mismatches = 0;

	assert_non_null(g);
	for (unsigned i = 0; i < 200000; i++) {
		uint64_t r = rng();
		unsigned fmt = r & 1, rm = (r >> 1) % 5, op = (r >> 4) % 12;
		uint64_t a = rand_operand(fmt, 0), b = rand_operand(fmt, a), c;
		uint32_t insn;

		c = rand_operand(fmt, fmt == FMT_D ? D(d_of(a) * d_of(b))
						   : S(s_of(a) * s_of(b)));
		switch (op) {
		case 0:
		case 1:
		case 2:
		case 3:
			insn = enc_fp(op, fmt, 2, 1, rm, 4);
			break;
		case 4:
			insn = enc_fp(F_SQRT, fmt, 0, 1, rm, 4);
			break;
		case 5:
		case 6:
		case 7:
		case 8:
			insn = enc_fma(0x43 + 4 * (op - 5), fmt, 3, 2, 1, rm, 4);
			break;
		case 9:
			insn = enc_fp(F_CVT_FF, FMT_S, 1, 1, rm, 4);
			a = rng_state & 1 ? rand_operand(FMT_D, 0) : D((double)s_of(a) * 1.0000001);
			fmt = FMT_D;
			break;
		case 10:
			insn = enc_fp(F_CVT_TO_INT, fmt, (r >> 8) & 3, 1, rm, 5);
			break;
		default:
			insn = enc_fp(F_CVT_FROM_INT, fmt, (r >> 8) & 3, 1, rm, 4);
			break;
		}
		cpu->f[1] = g->f[1] = in_reg(fmt, a);
		cpu->f[2] = g->f[2] = in_reg(fmt, b);
		cpu->f[3] = g->f[3] = in_reg(fmt, c);
		cpu->x[1] = g->x[1] = a;
		cpu->x[5] = g->x[5] = 0;
		cpu->fflags = g->fflags = 0;
		assert_int_equal(rv64_fpu_exec(cpu, insn), 0);
		assert_int_equal(rv64_fpu_exec_generic(g, insn), 0);
		if (cpu->f[4] != g->f[4] || cpu->x[5] != g->x[5] || cpu->fflags != g->fflags) {
			if (mismatches++ < 10)
				print_message("# insn %08x a %llx b %llx c %llx: sse %llx/%llx %x, "
					      "generic %llx/%llx %x\n",
					      insn, (unsigned long long)a, (unsigned long long)b,
					      (unsigned long long)c, (unsigned long long)cpu->f[4],
					      (unsigned long long)cpu->x[5], cpu->fflags,
					      (unsigned long long)g->f[4],
					      (unsigned long long)g->x[5], g->fflags);
		}
	}
	free(g);
	if (mismatches)
		fail_msg("%u mismatches between the SSE and generic paths", mismatches);
}
#endif

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rounding_add_tie),
		cmocka_unit_test(test_rounding_mul_div_sqrt),
		cmocka_unit_test(test_dynamic_rm),
		cmocka_unit_test(test_overflow),
		cmocka_unit_test(test_underflow),
		cmocka_unit_test(test_special_operations),
		cmocka_unit_test(test_nan_propagation),
		cmocka_unit_test(test_nan_boxing),
		cmocka_unit_test(test_sign_injection),
		cmocka_unit_test(test_min_max),
		cmocka_unit_test(test_compare),
		cmocka_unit_test(test_classify),
		cmocka_unit_test(test_cvt_to_int_saturation),
		cmocka_unit_test(test_cvt_to_int_rounding),
		cmocka_unit_test(test_cvt_from_int),
		cmocka_unit_test(test_cvt_s_d),
		cmocka_unit_test(test_fma),
		cmocka_unit_test(test_illegal),
		cmocka_unit_test(test_flags_accrue),
		cmocka_unit_test(test_host_flag_isolation),
#if defined(__x86_64__)
		cmocka_unit_test(test_generic_path_agrees),
#endif
	};

	return cmocka_run_group_tests_name("rv64_fpu", tests, setup, teardown);
}
