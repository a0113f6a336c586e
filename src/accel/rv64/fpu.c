/*
 * fpu.c - the F and D extensions of the software RV64 CPU: OP-FP and the fused multiply-add
 * family (unpriv 20191213 chapters 11 and 12).
 *
 * Results are computed on one of two paths:
 *   host  the host FPU with the guest's rounding mode loaded and the IEEE flags read back. On
 *         x86-64 the SSE instructions and MXCSR are driven with inline assembly, so the compiler
 *         can neither fold nor move an operation across the mode switch; elsewhere <fenv.h> and
 *         volatile operands do the same job. Used for RNE, RTZ, RDN and RUP: the common case.
 *   soft  exact integer arithmetic on the significands followed by one rounding routine
 *         (fpu_round_pack). Used for RMM (no host has it), for fused multiply-add when the host
 *         has no FMA unit, and for every integer<->float conversion.
 * Both detect tininess after rounding, as RISC-V requires (unpriv §11.2, IEEE 754-2008 §7.5);
 * so does x86 SSE with underflow masked.
 *
 * NaNs (unpriv §11.3): any NaN result is the canonical NaN; a single read from an f register
 * that is not NaN-boxed (upper 32 bits all ones, unpriv §12.2) is the canonical NaN; single
 * results are written NaN-boxed.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "kumo/base.h"
#include "cpu.h"

#if defined(__x86_64__) && !defined(KUMO_FPU_GENERIC)
#define FPU_HOST_X86 1
#else
#define FPU_HOST_X86 0
#include <fenv.h>
#endif

/* Rounding modes, unpriv §11.2 table 11.1. */
enum { RM_RNE = 0, RM_RTZ = 1, RM_RDN = 2, RM_RUP = 3, RM_RMM = 4, RM_DYN = 7 };

/* fflags bits, unpriv §11.2 table 11.2. */
enum { FF_NX = 1, FF_UF = 2, FF_OF = 4, FF_DZ = 8, FF_NV = 16 };

#define CANON_S 0x7fc00000ull
#define CANON_D 0x7ff8000000000000ull
#define BOX_S 0xffffffff00000000ull

/* A binary interchange format: p significand bits including the hidden one. */
struct fpu_fmt {
	unsigned p;     /* precision: 24 or 53 */
	unsigned width; /* 32 or 64 */
	int bias;       /* 127 or 1023; also emax */
	unsigned emask; /* all-ones exponent field */
};

static const struct fpu_fmt fmt_s = {24, 32, 127, 0xff};
static const struct fpu_fmt fmt_d = {53, 64, 1023, 0x7ff};

typedef unsigned __int128 u128;

/* ---- bit-level helpers */

static inline uint64_t fpu_mant(const struct fpu_fmt *f, uint64_t v)
{
	return v & ((1ull << (f->p - 1)) - 1);
}

static inline unsigned fpu_exp(const struct fpu_fmt *f, uint64_t v)
{
	return (unsigned)(v >> (f->p - 1)) & f->emask;
}

static inline bool fpu_sign(const struct fpu_fmt *f, uint64_t v)
{
	return (v >> (f->width - 1)) & 1;
}

static inline bool fpu_is_nan(const struct fpu_fmt *f, uint64_t v)
{
	return fpu_exp(f, v) == f->emask && fpu_mant(f, v) != 0;
}

/* Signaling NaN: the quiet bit (the top fraction bit) is clear, IEEE 754-2008 §6.2.1. */
static inline bool fpu_is_snan(const struct fpu_fmt *f, uint64_t v)
{
	return fpu_is_nan(f, v) && !((v >> (f->p - 2)) & 1);
}

static inline bool fpu_is_inf(const struct fpu_fmt *f, uint64_t v)
{
	return fpu_exp(f, v) == f->emask && fpu_mant(f, v) == 0;
}

static inline bool fpu_is_zero(const struct fpu_fmt *f, uint64_t v)
{
	return (v & ~(1ull << (f->width - 1))) == 0;
}

/* Finite and not zero: the operands the soft path computes with. */
static inline bool fpu_is_finite_nz(const struct fpu_fmt *f, uint64_t v)
{
	return fpu_exp(f, v) != f->emask && !fpu_is_zero(f, v);
}

static inline uint64_t fpu_canon(const struct fpu_fmt *f)
{
	return f == &fmt_d ? CANON_D : CANON_S;
}

static inline uint64_t fpu_inf(const struct fpu_fmt *f, bool sign)
{
	return (uint64_t)sign << (f->width - 1) | (uint64_t)f->emask << (f->p - 1);
}

/* A single from an f register: improperly NaN-boxed values read as the canonical NaN. */
static inline uint64_t fpu_unbox(uint64_t v)
{
	return (v >> 32) == 0xffffffffu ? (uint32_t)v : CANON_S;
}

static inline double d_of(uint64_t v)
{
	double d;
	memcpy(&d, &v, sizeof(d));
	return d;
}

static inline uint64_t d_bits(double d)
{
	uint64_t v;
	memcpy(&v, &d, sizeof(v));
	return v;
}

static inline float s_of(uint64_t v)
{
	uint32_t w = (uint32_t)v;
	float s;
	memcpy(&s, &w, sizeof(s));
	return s;
}

static inline uint64_t s_bits(float s)
{
	uint32_t w;
	memcpy(&w, &s, sizeof(w));
	return w;
}

/* Exact value of a non-NaN operand as a double (widening a single is exact). */
static inline double fpu_val(const struct fpu_fmt *f, uint64_t v)
{
	return f == &fmt_d ? d_of(v) : (double)s_of(v);
}

static inline int clz128(u128 v)
{
	uint64_t hi = (uint64_t)(v >> 64);
	return hi ? __builtin_clzll(hi) : 64 + __builtin_clzll((uint64_t)v);
}

/* ---- soft path: exact arithmetic and one correctly rounding pack */

/* A finite non-zero operand: value = (-1)^sign * sig * 2^exp, sig has bit p-1 set. */
struct fpu_num {
	bool sign;
	int exp;
	uint64_t sig;
};

static void fpu_unpack(const struct fpu_fmt *f, uint64_t v, struct fpu_num *n)
{
	unsigned e = fpu_exp(f, v);
	uint64_t m = fpu_mant(f, v);

	n->sign = fpu_sign(f, v);
	if (e == 0) {
		int sh = __builtin_clzll(m) - (int)(64 - f->p);

		n->sig = m << sh;
		n->exp = 1 - f->bias - (int)(f->p - 1) - sh;
	} else {
		n->sig = m | 1ull << (f->p - 1);
		n->exp = (int)e - f->bias - (int)(f->p - 1);
	}
}

/*
 * sig >> shift rounded in mode rm for a value of sign `sign`; 1 <= shift <= 64. *inexact says
 * whether any non-zero bit was shifted out.
 */
static inline uint64_t fpu_round_shift(uint64_t sig, unsigned shift, unsigned rm, bool sign,
				       bool *inexact)
{
	uint64_t q = shift >= 64 ? 0 : sig >> shift;
	uint64_t rem = shift >= 64 ? sig : sig & ((1ull << shift) - 1);
	uint64_t half = 1ull << (shift - 1);

	*inexact = rem != 0;
	switch (rm) {
	case RM_RNE:
		q += rem > half || (rem == half && (q & 1));
		break;
	case RM_RMM:
		q += rem >= half;
		break;
	case RM_RDN:
		q += rem != 0 && sign;
		break;
	case RM_RUP:
		q += rem != 0 && !sign;
		break;
	default: /* RTZ */
		break;
	}
	return q;
}

/*
 * Rounds (-1)^sign * sig * 2^exp (sig != 0) to format f in mode rm and packs it, accruing NX,
 * UF and OF. A sticky bit may be OR-ed into bit 0 of sig as long as sig then has bit 63 set
 * (64 bits of precision leave the sticky well below the rounding position).
 */
static uint64_t fpu_round_pack(const struct fpu_fmt *f, bool sign, int exp, uint64_t sig,
			       unsigned rm, uint32_t *fl)
{
	int lz = __builtin_clzll(sig);
	int e, emin = 1 - f->bias;
	unsigned shift = 64 - f->p;
	uint64_t q, sbit = (uint64_t)sign << (f->width - 1);
	bool inexact;

	sig <<= lz;
	e = exp - lz + 63; /* exponent of the leading bit */
	if (e >= emin) {
		q = fpu_round_shift(sig, shift, rm, sign, &inexact);
		if (q >> f->p) { /* rounded up to 2^p */
			q >>= 1;
			e++;
		}
		if (e > f->bias) {
			/* unpriv §11.2 / IEEE 754-2008 §7.4: overflow result depends on the mode */
			bool to_inf = rm == RM_RNE || rm == RM_RMM || (rm == RM_RDN && sign) ||
				      (rm == RM_RUP && !sign);

			*fl |= FF_OF | FF_NX;
			return to_inf ? fpu_inf(f, sign) : fpu_inf(f, sign) - 1;
		}
		/* q's hidden bit adds the last 1 to the exponent field */
		q = sbit | (((uint64_t)(e + f->bias - 1) << (f->p - 1)) + q);
	} else {
		/* tiny after rounding: even rounded to p bits with unbounded exponent it stays
		 * below 2^emin (IEEE 754-2008 §7.5) */
		bool tiny = true, ix;
		unsigned sub_shift;

		if (e == emin - 1)
			tiny = !(fpu_round_shift(sig, shift, rm, sign, &ix) >> f->p);
		sub_shift = shift + (unsigned)(emin - e);
		if (sub_shift > 64) { /* the whole value lies below half the smallest step */
			sig = 1;
			sub_shift = 64;
		}
		q = fpu_round_shift(sig, sub_shift, rm, sign, &inexact);
		if (tiny && inexact)
			*fl |= FF_UF;
		q |= sbit; /* a carry to 2^(p-1) reads as the smallest normal */
	}
	if (inexact)
		*fl |= FF_NX;
	return q;
}

/* Same for a 128-bit significand. */
static uint64_t fpu_round_pack128(const struct fpu_fmt *f, bool sign, int exp, u128 m,
				  unsigned rm, uint32_t *fl)
{
	uint64_t hi = (uint64_t)(m >> 64), lo = (uint64_t)m;

	if (hi) {
		int lz = __builtin_clzll(hi);
		uint64_t sig = lz ? hi << lz | lo >> (64 - lz) : hi;

		sig |= (lo << lz) != 0;
		return fpu_round_pack(f, sign, exp + 64 - lz, sig, rm, fl);
	}
	return fpu_round_pack(f, sign, exp, lo, rm, fl);
}

static inline u128 shift_right_jam128(u128 v, unsigned d)
{
	if (d == 0)
		return v;
	if (d >= 127)
		return v != 0;
	return v >> d | ((v << (128 - d)) != 0);
}

/*
 * Adds two magnitudes given with their leading bits at bit 125: (-1)^sa * a * 2^ea +
 * (-1)^sb * b * 2^eb, rounded once.
 */
static uint64_t fpu_add_aligned(const struct fpu_fmt *f, bool sa, int ea, u128 a, bool sb,
				int eb, u128 b, unsigned rm, uint32_t *fl)
{
	u128 m;
	bool sign;

	if (ea < eb) {
		u128 t = a;
		int te = ea;
		bool ts = sa;

		a = b, ea = eb, sa = sb;
		b = t, eb = te, sb = ts;
	}
	b = shift_right_jam128(b, (unsigned)(ea - eb));
	if (sa == sb) {
		m = a + b;
		sign = sa;
	} else if (a >= b) {
		m = a - b;
		sign = sa;
	} else {
		m = b - a;
		sign = sb;
	}
	if (m == 0) /* exact cancellation: +0, or -0 when rounding down (IEEE 754-2008 §6.3) */
		return (uint64_t)(rm == RM_RDN) << (f->width - 1);
	return fpu_round_pack128(f, sign, ea, m, rm, fl);
}

/* a + b for finite non-zero a and b. */
static uint64_t soft_add(const struct fpu_fmt *f, uint64_t a, uint64_t b, unsigned rm,
			 uint32_t *fl)
{
	struct fpu_num x, y;
	unsigned up = 125 - (f->p - 1);

	fpu_unpack(f, a, &x);
	fpu_unpack(f, b, &y);
	return fpu_add_aligned(f, x.sign, x.exp - (int)up, (u128)x.sig << up, y.sign,
			       y.exp - (int)up, (u128)y.sig << up, rm, fl);
}

static uint64_t soft_mul(const struct fpu_fmt *f, uint64_t a, uint64_t b, unsigned rm,
			 uint32_t *fl)
{
	struct fpu_num x, y;

	fpu_unpack(f, a, &x);
	fpu_unpack(f, b, &y);
	return fpu_round_pack128(f, x.sign ^ y.sign, x.exp + y.exp, (u128)x.sig * y.sig, rm, fl);
}

static uint64_t soft_div(const struct fpu_fmt *f, uint64_t a, uint64_t b, unsigned rm,
			 uint32_t *fl)
{
	struct fpu_num x, y;
	u128 n, q;

	fpu_unpack(f, a, &x);
	fpu_unpack(f, b, &y);
	n = (u128)x.sig << 64;
	q = n / y.sig; /* >= 2^63: 64 bits or more, so the sticky bit sits below rounding */
	q |= (n % y.sig) != 0;
	return fpu_round_pack128(f, x.sign ^ y.sign, x.exp - y.exp - 64, q, rm, fl);
}

/* sqrt(a) for finite a > 0. */
static uint64_t soft_sqrt(const struct fpu_fmt *f, uint64_t a, unsigned rm, uint32_t *fl)
{
	struct fpu_num x;
	u128 n, rem = 0, root = 0;
	int e, s;

	fpu_unpack(f, a, &x);
	n = x.sig;
	e = x.exp;
	if (e & 1) {
		n <<= 1;
		e--;
	}
	s = 126 - (127 - clz128(n));
	s &= ~1; /* keep the exponent even */
	n <<= s;
	e -= s;
	/* digit-by-digit square root: 64 result bits from 128 input bits */
	for (int i = 0; i < 64; i++) {
		u128 t;

		root <<= 1;
		rem = rem << 2 | n >> 126;
		n <<= 2;
		t = root << 1 | 1;
		if (rem >= t) {
			rem -= t;
			root |= 1;
		}
	}
	return fpu_round_pack(f, false, e / 2, (uint64_t)root | (rem != 0), rm, fl);
}

/* a * b + c for finite non-zero a, b and finite c, rounded once. */
static uint64_t soft_fma(const struct fpu_fmt *f, uint64_t a, uint64_t b, uint64_t c,
			 unsigned rm, uint32_t *fl)
{
	struct fpu_num x, y, z;
	unsigned up = 125 - (f->p - 1);
	u128 prod;
	int ep, sh;

	fpu_unpack(f, a, &x);
	fpu_unpack(f, b, &y);
	prod = (u128)x.sig * y.sig;
	ep = x.exp + y.exp;
	if (fpu_is_zero(f, c))
		return fpu_round_pack128(f, x.sign ^ y.sign, ep, prod, rm, fl);
	fpu_unpack(f, c, &z);
	sh = clz128(prod) - 2; /* leading bit to 125 */
	prod <<= sh;
	return fpu_add_aligned(f, x.sign ^ y.sign, ep - sh, prod, z.sign, z.exp - (int)up,
			       (u128)z.sig << up, rm, fl);
}

/*
 * a * b + c when no rounding is needed or the soft path applies (RMM, or no host FMA).
 * NaN operands were handled by the caller.
 */
static uint64_t soft_fma_full(const struct fpu_fmt *f, uint64_t a, uint64_t b, uint64_t c,
			      unsigned rm, uint32_t *fl)
{
	bool sp = fpu_sign(f, a) ^ fpu_sign(f, b);

	if (fpu_is_inf(f, a) || fpu_is_inf(f, b)) {
		/* inf * 0 was caught with the NaNs */
		if (fpu_is_inf(f, c) && fpu_sign(f, c) != sp) {
			*fl |= FF_NV;
			return fpu_canon(f);
		}
		return fpu_inf(f, sp);
	}
	if (fpu_is_inf(f, c))
		return c;
	if (fpu_is_zero(f, a) || fpu_is_zero(f, b)) {
		/* exact zero product: the sum is c, or a signed zero (IEEE 754-2008 §6.3) */
		if (!fpu_is_zero(f, c))
			return c;
		if (fpu_sign(f, c) == sp)
			return c;
		return (uint64_t)(rm == RM_RDN) << (f->width - 1);
	}
	return soft_fma(f, a, b, c, rm, fl);
}

/* ---- host path */

enum fpu_op { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_SQRT };

#if FPU_HOST_X86
/*
 * MXCSR: flags in bits 0..5 (IE DE ZE OE UE PE), exception masks 7..12, rounding control
 * 13..14, FTZ 15, DAZ 6. Guest arithmetic runs with everything masked and FTZ/DAZ off.
 *
 * Flags are never cleared after an operation: that takes an ldmxcsr, and reading MXCSR soon
 * after an ldmxcsr stalled for ~100 ns on the Xeon we measured. Instead host_begin() clears the host's
 * sticky flags only when one of them is not yet set in the guest's fflags. Host flags the
 * guest already has cannot change the guest's accrued result, so after the operation the
 * guest ORs in whatever MXCSR shows. In the steady state (the guest has NX, the host has PE)
 * an RNE operation costs two MXCSR reads and no write.
 */
#define MXCSR_GUEST 0x1f80u
#define MXCSR_FLAGS 0x3fu
#define MXCSR_CTRL (~MXCSR_FLAGS)

static const uint8_t mxcsr_rc[5] = {
	[RM_RNE] = 0, [RM_RTZ] = 3, [RM_RDN] = 1, [RM_RUP] = 2, [RM_RMM] = 0,
};

/* fflags -> the MXCSR flag bits they correspond to, and back (DE, bit 1, has no guest flag) */
#define FF_TO_MX(f) \
	(((f) >> 4 & 1) | ((f) >> 3 & 1) << 2 | ((f) >> 2 & 1) << 3 | ((f) >> 1 & 1) << 4 | \
	 ((f)&1) << 5)
#define MX_TO_FF(m) \
	(((m)&1) << 4 | ((m) >> 2 & 1) << 3 | ((m) >> 3 & 1) << 2 | ((m) >> 4 & 1) << 1 | \
	 ((m) >> 5 & 1))
#define X4(F, b) F(b), F(b + 1), F(b + 2), F(b + 3)
#define X16(F, b) X4(F, b), X4(F, b + 4), X4(F, b + 8), X4(F, b + 12)

static const uint8_t ff_to_mx[32] = {X16(FF_TO_MX, 0), X16(FF_TO_MX, 16)};
static const uint8_t mx_to_ff[64] = {X16(MX_TO_FF, 0), X16(MX_TO_FF, 16), X16(MX_TO_FF, 32),
				     X16(MX_TO_FF, 48)};

static inline uint32_t mxcsr_get(void)
{
	uint32_t m;

	__asm__ volatile("stmxcsr %0" : "=m"(m));
	return m;
}

static inline void mxcsr_set(uint32_t m)
{
	__asm__ volatile("ldmxcsr %0" : : "m"(m));
}

/*
 * Loads the guest's rounding mode and makes sure every flag the guest lacks is clear on the
 * host; `have` is the guest's fflags. Returns the host MXCSR for host_end().
 */
static inline uint32_t host_begin(unsigned rm, uint32_t have)
{
	uint32_t saved = mxcsr_get(), want = MXCSR_GUEST | (uint32_t)mxcsr_rc[rm] << 13;

	if (unlikely((saved & MXCSR_CTRL) != want ||
		     (saved & MXCSR_FLAGS & ~ff_to_mx[have & 31] & ~0x02u)))
		mxcsr_set(want | (saved & MXCSR_FLAGS & ff_to_mx[have & 31]));
	return saved;
}

/* The guest flags to OR in after the operation; restores the host's control bits. */
static inline uint32_t host_end(uint32_t saved)
{
	uint32_t m = mxcsr_get();

	if (unlikely((m ^ saved) & MXCSR_CTRL))
		mxcsr_set((saved & MXCSR_CTRL) | (m & MXCSR_FLAGS));
	return mx_to_ff[m & MXCSR_FLAGS];
}

#define HOST_OP2(insn, a, b) \
	({ \
		__typeof__(a) r_ = (a); \
		__asm__ volatile(insn " %1, %0" : "+x"(r_) : "x"(b)); \
		r_; \
	})

static inline double host_op_d(unsigned op, double a, double b)
{
	double r;

	switch (op) {
	case OP_ADD:
		return HOST_OP2("addsd", a, b);
	case OP_SUB:
		return HOST_OP2("subsd", a, b);
	case OP_MUL:
		return HOST_OP2("mulsd", a, b);
	case OP_DIV:
		return HOST_OP2("divsd", a, b);
	default:
		__asm__ volatile("sqrtsd %1, %0" : "=x"(r) : "x"(a));
		return r;
	}
}

static inline float host_op_s(unsigned op, float a, float b)
{
	float r;

	switch (op) {
	case OP_ADD:
		return HOST_OP2("addss", a, b);
	case OP_SUB:
		return HOST_OP2("subss", a, b);
	case OP_MUL:
		return HOST_OP2("mulss", a, b);
	case OP_DIV:
		return HOST_OP2("divss", a, b);
	default:
		__asm__ volatile("sqrtss %1, %0" : "=x"(r) : "x"(a));
		return r;
	}
}

static inline double host_fma_d(double a, double b, double c)
{
	__asm__ volatile("vfmadd231sd %2, %1, %0" : "+x"(c) : "x"(a), "x"(b));
	return c;
}

static inline float host_fma_s(float a, float b, float c)
{
	__asm__ volatile("vfmadd231ss %2, %1, %0" : "+x"(c) : "x"(a), "x"(b));
	return c;
}

static inline float host_cvt_s_d(double a)
{
	float r;

	__asm__ volatile("cvtsd2ss %1, %0" : "=x"(r) : "x"(a));
	return r;
}

static inline bool host_has_fma(void)
{
	return __builtin_cpu_supports("fma");
}

#else /* generic host: <fenv.h>; volatile operands keep the operations between the calls */

static const int fenv_rc[5] = {
	[RM_RNE] = FE_TONEAREST, [RM_RTZ] = FE_TOWARDZERO, [RM_RDN] = FE_DOWNWARD,
	[RM_RUP] = FE_UPWARD,    [RM_RMM] = FE_TONEAREST,
};

static inline int host_begin(unsigned rm, uint32_t have)
{
	int saved = fegetround();

	fesetround(fenv_rc[rm]);
	feclearexcept(FE_ALL_EXCEPT);
	return saved;
}

static inline uint32_t host_end(int saved)
{
	int e = fetestexcept(FE_ALL_EXCEPT);
	uint32_t fl = 0;

	fesetround(saved);
	if (e & FE_INVALID)
		fl |= FF_NV;
	if (e & FE_DIVBYZERO)
		fl |= FF_DZ;
	if (e & FE_OVERFLOW)
		fl |= FF_OF;
	if (e & FE_UNDERFLOW)
		fl |= FF_UF;
	if (e & FE_INEXACT)
		fl |= FF_NX;
	return fl;
}

static inline double host_op_d(unsigned op, double a, double b)
{
	volatile double va = a, vb = b, r;

	switch (op) {
	case OP_ADD:
		r = va + vb;
		break;
	case OP_SUB:
		r = va - vb;
		break;
	case OP_MUL:
		r = va * vb;
		break;
	case OP_DIV:
		r = va / vb;
		break;
	default:
		r = sqrt(va);
		break;
	}
	return r;
}

static inline float host_op_s(unsigned op, float a, float b)
{
	volatile float va = a, vb = b, r;

	switch (op) {
	case OP_ADD:
		r = va + vb;
		break;
	case OP_SUB:
		r = va - vb;
		break;
	case OP_MUL:
		r = va * vb;
		break;
	case OP_DIV:
		r = va / vb;
		break;
	default:
		r = sqrtf(va);
		break;
	}
	return r;
}

static inline double host_fma_d(double a, double b, double c)
{
	return fma(a, b, c);
}

static inline float host_fma_s(float a, float b, float c)
{
	return fmaf(a, b, c);
}

static inline float host_cvt_s_d(double a)
{
	volatile double va = a;
	volatile float r = (float)va;

	return r;
}

/* libm's fma is not trusted to round and flag exactly in every mode: use the soft path. */
static inline bool host_has_fma(void)
{
	return false;
}
#endif

/* ---- arithmetic instructions */

/*
 * FADD/FSUB/FMUL/FDIV/FSQRT (b unused for sqrt). RMM runs on the soft path when rounding
 * happens; special operands (NaN, inf, zero, negative sqrt) give the same result and flags in
 * RMM as in RNE, so those go to the host in RNE.
 */
static uint64_t fpu_arith(const struct fpu_fmt *f, unsigned op, uint64_t a, uint64_t b,
			  unsigned rm, uint32_t *fl)
{
	uint64_t r;

	if (unlikely(rm == RM_RMM)) {
		bool soft = fpu_is_finite_nz(f, a) &&
			    (op == OP_SQRT ? !fpu_sign(f, a) : fpu_is_finite_nz(f, b));

		if (soft) {
			switch (op) {
			case OP_ADD:
				return soft_add(f, a, b, rm, fl);
			case OP_SUB:
				return soft_add(f, a, b ^ 1ull << (f->width - 1), rm, fl);
			case OP_MUL:
				return soft_mul(f, a, b, rm, fl);
			case OP_DIV:
				return soft_div(f, a, b, rm, fl);
			default:
				return soft_sqrt(f, a, rm, fl);
			}
		}
		rm = RM_RNE;
	}
	if (f == &fmt_d) {
		__typeof__(host_begin(0, 0)) saved = host_begin(rm, *fl);
		double x = host_op_d(op, d_of(a), d_of(b));

		*fl |= host_end(saved);
		r = d_bits(x);
	} else {
		__typeof__(host_begin(0, 0)) saved = host_begin(rm, *fl);
		float x = host_op_s(op, s_of(a), s_of(b));

		*fl |= host_end(saved);
		r = s_bits(x);
	}
	if (unlikely(fpu_is_nan(f, r)))
		r = fpu_canon(f);
	return r;
}

/* a * b + c with the operand signs already applied (FMADD family, unpriv §11.6). */
static uint64_t fpu_fma(const struct fpu_fmt *f, uint64_t a, uint64_t b, uint64_t c, unsigned rm,
			uint32_t *fl)
{
	bool inf_zero = (fpu_is_inf(f, a) && fpu_is_zero(f, b)) ||
			(fpu_is_zero(f, a) && fpu_is_inf(f, b));

	if (unlikely(fpu_is_nan(f, a) || fpu_is_nan(f, b) || fpu_is_nan(f, c) || inf_zero)) {
		/* unpriv §11.6: inf * 0 is invalid even when the addend is a quiet NaN */
		if (inf_zero || fpu_is_snan(f, a) || fpu_is_snan(f, b) || fpu_is_snan(f, c))
			*fl |= FF_NV;
		return fpu_canon(f);
	}
	if (unlikely(rm == RM_RMM || !host_has_fma()))
		return soft_fma_full(f, a, b, c, rm, fl);
	if (f == &fmt_d) {
		__typeof__(host_begin(0, 0)) saved = host_begin(rm, *fl);
		double x = host_fma_d(d_of(a), d_of(b), d_of(c));

		*fl |= host_end(saved);
		a = d_bits(x);
	} else {
		__typeof__(host_begin(0, 0)) saved = host_begin(rm, *fl);
		float x = host_fma_s(s_of(a), s_of(b), s_of(c));

		*fl |= host_end(saved);
		a = s_bits(x);
	}
	return fpu_is_nan(f, a) ? fpu_canon(f) : a;
}

/* FCVT.S.D (unpriv §12.5). */
static uint64_t fpu_cvt_s_d(uint64_t a, unsigned rm, uint32_t *fl)
{
	if (fpu_is_nan(&fmt_d, a)) {
		if (fpu_is_snan(&fmt_d, a))
			*fl |= FF_NV;
		return CANON_S;
	}
	if (rm == RM_RMM || !FPU_HOST_X86) {
		struct fpu_num n;

		if (fpu_is_inf(&fmt_d, a))
			return fpu_inf(&fmt_s, fpu_sign(&fmt_d, a));
		if (fpu_is_zero(&fmt_d, a))
			return (a >> 63) << 31;
		fpu_unpack(&fmt_d, a, &n);
		return fpu_round_pack(&fmt_s, n.sign, n.exp, n.sig, rm, fl);
	} else {
		__typeof__(host_begin(0, 0)) saved = host_begin(rm, *fl);
		float x = host_cvt_s_d(d_of(a));

		*fl |= host_end(saved);
		return s_bits(x);
	}
}

/* FCVT.D.S: exact. */
static uint64_t fpu_cvt_d_s(uint64_t a, uint32_t *fl)
{
	if (fpu_is_nan(&fmt_s, a)) {
		if (fpu_is_snan(&fmt_s, a))
			*fl |= FF_NV;
		return CANON_D;
	}
	return d_bits((double)s_of(a));
}

/*
 * FCVT.{W,WU,L,LU}.{S,D} (unpriv §11.7 table 11.4): rounds per rm; NaN and out-of-range values
 * saturate and raise NV only; in-range inexact values raise NX. kind: 0 W, 1 WU, 2 L, 3 LU.
 * 32-bit results are returned sign-extended.
 */
static uint64_t fpu_to_int(const struct fpu_fmt *f, uint64_t a, unsigned kind, unsigned rm,
			   uint32_t *fl)
{
	bool is_signed = !(kind & 1), sign = fpu_sign(f, a), inexact = false, ok;
	uint64_t umax = kind & 2 ? ~0ull : 0xffffffffull, smax = umax >> 1, mag, r;
	struct fpu_num n;

	if (fpu_exp(f, a) == f->emask) {
		ok = false;
		if (fpu_mant(f, a) != 0)
			sign = false; /* NaN saturates like +inf */
		mag = 0;
	} else if (fpu_is_zero(f, a)) {
		r = 0;
		goto out;
	} else {
		fpu_unpack(f, a, &n);
		if (n.exp >= 0) {
			ok = (int)(f->p - 1) + n.exp < 64;
			mag = ok ? n.sig << n.exp : 0;
		} else if (n.exp < -64) {
			mag = fpu_round_shift(1, 64, rm, sign, &inexact);
			ok = true;
		} else {
			mag = fpu_round_shift(n.sig, (unsigned)-n.exp, rm, sign, &inexact);
			ok = true;
		}
		if (ok) {
			if (is_signed)
				ok = sign ? mag <= smax + 1 : mag <= smax;
			else
				ok = sign ? mag == 0 : mag <= umax;
		}
	}
	if (!ok) {
		*fl |= FF_NV;
		if (is_signed)
			r = sign ? ~smax : smax;
		else
			r = sign ? 0 : umax;
	} else {
		if (inexact)
			*fl |= FF_NX;
		r = sign ? -mag : mag;
	}
out:
	if (!(kind & 2))
		r = (uint64_t)(int64_t)(int32_t)(uint32_t)r;
	return r;
}

/* FCVT.{S,D}.{W,WU,L,LU}: correctly rounded in rm. */
static uint64_t fpu_from_int(const struct fpu_fmt *f, uint64_t x, unsigned kind, unsigned rm,
			     uint32_t *fl)
{
	bool sign = false;
	uint64_t mag;

	switch (kind) {
	case 0:
		sign = (int32_t)x < 0;
		mag = sign ? -(uint64_t)(int64_t)(int32_t)x : (uint32_t)x;
		break;
	case 1:
		mag = (uint32_t)x;
		break;
	case 2:
		sign = (int64_t)x < 0;
		mag = sign ? -x : x;
		break;
	default:
		mag = x;
		break;
	}
	if (mag == 0)
		return 0;
	return fpu_round_pack(f, sign, 0, mag, rm, fl);
}

/* ---- non-arithmetic instructions */

/* FMIN/FMAX (unpriv 20191213 §11.6: IEEE 754-2019 minimumNumber/maximumNumber). */
static uint64_t fpu_minmax(const struct fpu_fmt *f, uint64_t a, uint64_t b, bool is_max,
			   uint32_t *fl)
{
	bool na = fpu_is_nan(f, a), nb = fpu_is_nan(f, b);
	double x, y;

	if (unlikely(na || nb)) {
		if (fpu_is_snan(f, a) || fpu_is_snan(f, b))
			*fl |= FF_NV;
		if (na && nb)
			return fpu_canon(f);
		return na ? b : a;
	}
	x = fpu_val(f, a);
	y = fpu_val(f, b);
	if (x < y)
		return is_max ? b : a;
	if (y < x)
		return is_max ? a : b;
	/* equal: differ only for zeros, where -0 < +0 */
	return is_max ? (a & b) : (a | b);
}

/* FEQ (quiet: NV only for sNaN), FLT and FLE (signaling: NV for any NaN), unpriv §11.8. */
static uint64_t fpu_compare(const struct fpu_fmt *f, unsigned funct3, uint64_t a, uint64_t b,
			    uint32_t *fl)
{
	double x, y;

	if (unlikely(fpu_is_nan(f, a) || fpu_is_nan(f, b))) {
		if (funct3 != 2 || fpu_is_snan(f, a) || fpu_is_snan(f, b))
			*fl |= FF_NV;
		return 0;
	}
	x = fpu_val(f, a);
	y = fpu_val(f, b);
	switch (funct3) {
	case 2:
		return x == y;
	case 1:
		return x < y;
	default:
		return x <= y;
	}
}

/* FCLASS, unpriv §11.9 table 11.5. */
static uint64_t fpu_classify(const struct fpu_fmt *f, uint64_t a)
{
	bool sign = fpu_sign(f, a);
	unsigned e = fpu_exp(f, a);
	uint64_t m = fpu_mant(f, a);

	if (e == f->emask) {
		if (m == 0)
			return sign ? 1u << 0 : 1u << 7;
		return (m >> (f->p - 2)) & 1 ? 1u << 9 : 1u << 8;
	}
	if (e == 0) {
		if (m == 0)
			return sign ? 1u << 3 : 1u << 4;
		return sign ? 1u << 2 : 1u << 5;
	}
	return sign ? 1u << 1 : 1u << 6;
}

/* FSGNJ/FSGNJN/FSGNJX: raw bits, unpriv §11.6. */
static uint64_t fpu_sgnj(const struct fpu_fmt *f, unsigned funct3, uint64_t a, uint64_t b)
{
	uint64_t sbit = 1ull << (f->width - 1);

	switch (funct3) {
	case 0:
		return (a & ~sbit) | (b & sbit);
	case 1:
		return (a & ~sbit) | (~b & sbit);
	default:
		return a ^ (b & sbit);
	}
}

/* ---- decode */

/*
 * The bulk of FP-heavy code: FADD/FSUB/FMUL/FDIV.{S,D} in a mode the host has. Returns false
 * (nothing done) for anything else, which the full decoder below handles.
 */
static inline bool fpu_exec_fast(struct rv64_cpu *cpu, uint32_t insn)
{
	unsigned rm = (insn >> 12) & 7, op = insn >> 27;
	uint64_t a = cpu->f[(insn >> 15) & 31], b = cpu->f[(insn >> 20) & 31], r;
	uint32_t fl = cpu->fflags;

	if (rm == RM_DYN)
		rm = cpu->frm;
	if (unlikely(rm >= RM_RMM))
		return false;
	if (insn & (1u << 25)) {
		__typeof__(host_begin(0, 0)) saved = host_begin(rm, fl);
		double x = host_op_d(op, d_of(a), d_of(b));

		fl |= host_end(saved);
		r = d_bits(x);
		if (unlikely(fpu_is_nan(&fmt_d, r)))
			r = CANON_D;
	} else {
		__typeof__(host_begin(0, 0)) saved;
		float x;

		if (unlikely((a >> 32) != 0xffffffffu || (b >> 32) != 0xffffffffu))
			return false;
		saved = host_begin(rm, fl);
		x = host_op_s(op, s_of(a), s_of(b));
		fl |= host_end(saved);
		r = s_bits(x);
		if (unlikely(fpu_is_nan(&fmt_s, r)))
			r = CANON_S;
		r |= BOX_S;
	}
	cpu->f[(insn >> 7) & 31] = r;
	cpu->fflags = fl;
	return true;
}

int rv64_fpu_exec(struct rv64_cpu *cpu, uint32_t insn)
{
	unsigned opc = insn & 0x7f, rd = (insn >> 7) & 31, funct3 = (insn >> 12) & 7;
	unsigned rs1 = (insn >> 15) & 31, rs2 = (insn >> 20) & 31, fmt = (insn >> 25) & 3;
	unsigned funct5 = insn >> 27, rm = funct3 == RM_DYN ? cpu->frm : funct3;
	bool dbl = fmt == 1, rm_ok = rm <= RM_RMM;
	const struct fpu_fmt *f = dbl ? &fmt_d : &fmt_s;
	uint64_t a, b, r;
	uint32_t fl = cpu->fflags; /* accrues; host_begin() needs to know what is already set */

	/* OP-FP, fmt S or D, funct5 0..3 */
	if (likely((insn & 0xe400007f) == 0x00000053) && fpu_exec_fast(cpu, insn))
		return 0;
	if (fmt > 1) /* H and Q are not implemented */
		goto illegal;
	a = dbl ? cpu->f[rs1] : fpu_unbox(cpu->f[rs1]);
	b = dbl ? cpu->f[rs2] : fpu_unbox(cpu->f[rs2]);

	if (opc != 0x53) {
		uint64_t c = dbl ? cpu->f[funct5] : fpu_unbox(cpu->f[funct5]);
		uint64_t sbit = 1ull << (f->width - 1);

		if (!rm_ok)
			goto illegal;
		switch (opc) {
		case 0x43: /* FMADD */
			break;
		case 0x47: /* FMSUB */
			c ^= sbit;
			break;
		case 0x4b: /* FNMSUB */
			a ^= sbit;
			break;
		case 0x4f: /* FNMADD */
			a ^= sbit;
			c ^= sbit;
			break;
		default:
			goto illegal;
		}
		r = fpu_fma(f, a, b, c, rm, &fl);
		goto write_f;
	}

	switch (funct5) {
	case 0x00: /* FADD */
	case 0x01: /* FSUB */
	case 0x02: /* FMUL */
	case 0x03: /* FDIV */
		if (!rm_ok)
			goto illegal;
		r = fpu_arith(f, funct5, a, b, rm, &fl);
		goto write_f;
	case 0x0b: /* FSQRT */
		if (!rm_ok || rs2 != 0)
			goto illegal;
		r = fpu_arith(f, OP_SQRT, a, 0, rm, &fl);
		goto write_f;
	case 0x04: /* FSGNJ, FSGNJN, FSGNJX */
		if (funct3 > 2)
			goto illegal;
		r = fpu_sgnj(f, funct3, a, b);
		goto write_f;
	case 0x05: /* FMIN, FMAX */
		if (funct3 > 1)
			goto illegal;
		r = fpu_minmax(f, a, b, funct3 == 1, &fl);
		goto write_f;
	case 0x08: /* FCVT.S.D, FCVT.D.S */
		if (!rm_ok || rs2 != (dbl ? 0u : 1u))
			goto illegal;
		if (dbl)
			r = fpu_cvt_d_s(fpu_unbox(cpu->f[rs1]), &fl);
		else
			r = fpu_cvt_s_d(cpu->f[rs1], rm, &fl);
		goto write_f;
	case 0x14: /* FLE, FLT, FEQ */
		if (funct3 > 2)
			goto illegal;
		r = fpu_compare(f, funct3, a, b, &fl);
		goto write_x;
	case 0x18: /* FCVT.W/WU/L/LU.fmt */
		if (!rm_ok || rs2 > 3)
			goto illegal;
		r = fpu_to_int(f, a, rs2, rm, &fl);
		goto write_x;
	case 0x1a: /* FCVT.fmt.W/WU/L/LU */
		if (!rm_ok || rs2 > 3)
			goto illegal;
		r = fpu_from_int(f, cpu->x[rs1], rs2, rm, &fl);
		goto write_f;
	case 0x1c: /* FMV.X.W/FMV.X.D, FCLASS */
		if (rs2 != 0 || funct3 > 1)
			goto illegal;
		if (funct3 == 1)
			r = fpu_classify(f, a);
		else if (dbl)
			r = cpu->f[rs1];
		else /* the low 32 bits, boxed or not (unpriv §11.7) */
			r = (uint64_t)(int64_t)(int32_t)(uint32_t)cpu->f[rs1];
		goto write_x;
	case 0x1e: /* FMV.W.X, FMV.D.X */
		if (rs2 != 0 || funct3 != 0)
			goto illegal;
		r = dbl ? cpu->x[rs1] : (uint32_t)cpu->x[rs1];
		goto write_f;
	default:
		goto illegal;
	}

write_f:
	cpu->f[rd] = dbl ? r : (r | BOX_S);
	cpu->fflags = fl;
	return 0;
write_x:
	if (rd != 0)
		cpu->x[rd] = r;
	cpu->fflags = fl;
	return 0;
illegal:
	cpu->exc_cause = RV64_EXC_ILLEGAL_INSN;
	cpu->exc_tval = insn;
	return -1;
}
