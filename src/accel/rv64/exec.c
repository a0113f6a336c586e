/*
 * exec.c - decode and execute RV64IMAFDC + Zicsr, Zifencei, Zba, Zbb, Zbs (unpriv 20191213,
 * bitmanip 1.0.0) and the privileged instructions (priv 1.12 §3.3).
 *
 * Everything runs on the vCPU thread. rv64_exec() runs decoded ops from a per-page decode
 * cache (see "The decode cache" below) with threaded dispatch; compressed instructions are
 * expanded to their 32-bit equivalents first (unpriv 20191213 §16.8 tables). x[0] stays zero
 * because the decoder turns every op that would write it into a NOP or, where the instruction
 * still has effects (loads, CSR, AMO), into a generic op: interp_one(), the plain
 * switch-based interpreter, which also runs instructions that straddle pages or come from
 * pages that cannot be cached, and clears x[0] after each instruction.
 *
 * On x86-64 hosts a decoded op may instead hold H_JIT: the slot starts a block translated to
 * host code (jit.c, jit.h), which runs until it leaves its straight-line integer code; these
 * ops die with their decoded page, so the translator inherits the cache's invalidation.
 */
#include <errno.h>
#include <stdlib.h>

#include "accel/rv64/cpu.h"
#include "accel/rv64/jit.h"
#include "accel/rv64/mmu.h"
#include "kumo/base.h"

#define MS_SIE (1ULL << 1)
#define MS_MIE (1ULL << 3)
#define MS_FS (3ULL << 13)
#define MS_TVM (1ULL << 20)
#define MS_TW (1ULL << 21)

#define BITS(x, hi, lo) (((x) >> (lo)) & ((1u << ((hi) - (lo) + 1)) - 1))

static inline int64_t sext(uint64_t v, unsigned bits)
{
	return (int64_t)(v << (64 - bits)) >> (64 - bits);
}

static inline uint64_t sext32(uint64_t v)
{
	return (uint64_t)(int64_t)(int32_t)v;
}

/* --- RVC expansion (unpriv 20191213 §16). Returns 0 for reserved/illegal encodings. */

static inline uint32_t enc_i(unsigned op, unsigned rd, unsigned f3, unsigned rs1, int32_t imm)
{
	return ((uint32_t)imm << 20) | rs1 << 15 | f3 << 12 | rd << 7 | op;
}

static inline uint32_t enc_s(unsigned op, unsigned f3, unsigned rs1, unsigned rs2, uint32_t imm)
{
	return ((imm >> 5) & 0x7f) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | (imm & 31) << 7 | op;
}

static inline uint32_t enc_r(unsigned op, unsigned rd, unsigned f3, unsigned rs1, unsigned rs2,
			     unsigned f7)
{
	return f7 << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op;
}

static inline uint32_t enc_b(unsigned f3, unsigned rs1, unsigned rs2, uint32_t imm)
{
	return ((imm >> 12) & 1) << 31 | ((imm >> 5) & 0x3f) << 25 | rs2 << 20 | rs1 << 15 |
	       f3 << 12 | ((imm >> 1) & 0xf) << 8 | ((imm >> 11) & 1) << 7 | 0x63;
}

static inline uint32_t enc_j(unsigned rd, uint32_t imm)
{
	return ((imm >> 20) & 1) << 31 | ((imm >> 1) & 0x3ff) << 21 | ((imm >> 11) & 1) << 20 |
	       ((imm >> 12) & 0xff) << 12 | rd << 7 | 0x6f;
}

static uint32_t rvc_expand(uint32_t c)
{
	unsigned rd = BITS(c, 11, 7), rs2 = BITS(c, 6, 2);
	unsigned rdp = 8 + BITS(c, 4, 2), rs1p = 8 + BITS(c, 9, 7);
	int32_t imm6 = (int32_t)sext(BITS(c, 12, 12) << 5 | BITS(c, 6, 2), 6);
	uint32_t imm;

	switch ((c & 3) << 3 | BITS(c, 15, 13)) {
	case 000: /* C.ADDI4SPN; nzuimm = 0 (including the all-zero parcel) is illegal */
		imm = BITS(c, 12, 11) << 4 | BITS(c, 10, 7) << 6 | BITS(c, 6, 6) << 2 |
		      BITS(c, 5, 5) << 3;
		return imm ? enc_i(0x13, rdp, 0, 2, (int32_t)imm) : 0;
	case 001: /* C.FLD */
		imm = BITS(c, 12, 10) << 3 | BITS(c, 6, 5) << 6;
		return enc_i(0x07, rdp, 3, rs1p, (int32_t)imm);
	case 002: /* C.LW */
		imm = BITS(c, 12, 10) << 3 | BITS(c, 6, 6) << 2 | BITS(c, 5, 5) << 6;
		return enc_i(0x03, rdp, 2, rs1p, (int32_t)imm);
	case 003: /* C.LD */
		imm = BITS(c, 12, 10) << 3 | BITS(c, 6, 5) << 6;
		return enc_i(0x03, rdp, 3, rs1p, (int32_t)imm);
	case 005: /* C.FSD */
		imm = BITS(c, 12, 10) << 3 | BITS(c, 6, 5) << 6;
		return enc_s(0x27, 3, rs1p, rdp, imm);
	case 006: /* C.SW */
		imm = BITS(c, 12, 10) << 3 | BITS(c, 6, 6) << 2 | BITS(c, 5, 5) << 6;
		return enc_s(0x23, 2, rs1p, rdp, imm);
	case 007: /* C.SD */
		imm = BITS(c, 12, 10) << 3 | BITS(c, 6, 5) << 6;
		return enc_s(0x23, 3, rs1p, rdp, imm);
	case 010: /* C.ADDI (C.NOP, hints) */
		return enc_i(0x13, rd, 0, rd, imm6);
	case 011: /* C.ADDIW; rd = 0 reserved */
		return rd ? enc_i(0x1b, rd, 0, rd, imm6) : 0;
	case 012: /* C.LI */
		return enc_i(0x13, rd, 0, 0, imm6);
	case 013:
		if (rd == 2) { /* C.ADDI16SP */
			imm = (uint32_t)sext(BITS(c, 12, 12) << 9 | BITS(c, 6, 6) << 4 |
						     BITS(c, 5, 5) << 6 | BITS(c, 4, 3) << 7 |
						     BITS(c, 2, 2) << 5,
					     10);
			return imm ? enc_i(0x13, 2, 0, 2, (int32_t)imm) : 0;
		}
		/* C.LUI; nzimm = 0 reserved */
		imm = (uint32_t)sext(BITS(c, 12, 12) << 17 | BITS(c, 6, 2) << 12, 18);
		return imm ? ((imm & 0xfffff000u) | rd << 7 | 0x37) : 0;
	case 014: {
		unsigned shamt = BITS(c, 12, 12) << 5 | BITS(c, 6, 2);
		unsigned r2 = 8 + BITS(c, 4, 2);

		switch (BITS(c, 11, 10)) {
		case 0: /* C.SRLI */
			return enc_i(0x13, rs1p, 5, rs1p, (int32_t)shamt);
		case 1: /* C.SRAI */
			return enc_i(0x13, rs1p, 5, rs1p, (int32_t)(0x400 | shamt));
		case 2: /* C.ANDI */
			return enc_i(0x13, rs1p, 7, rs1p, imm6);
		default:
			if (!BITS(c, 12, 12)) {
				static const uint8_t f3[4] = {0, 4, 6, 7}; /* SUB XOR OR AND */

				return enc_r(0x33, rs1p, f3[BITS(c, 6, 5)], rs1p, r2,
					     BITS(c, 6, 5) ? 0 : 0x20);
			}
			if (BITS(c, 6, 5) == 0) /* C.SUBW */
				return enc_r(0x3b, rs1p, 0, rs1p, r2, 0x20);
			if (BITS(c, 6, 5) == 1) /* C.ADDW */
				return enc_r(0x3b, rs1p, 0, rs1p, r2, 0);
			return 0;
		}
	}
	case 015: /* C.J */
		imm = (uint32_t)sext(BITS(c, 12, 12) << 11 | BITS(c, 11, 11) << 4 |
					     BITS(c, 10, 9) << 8 | BITS(c, 8, 8) << 10 |
					     BITS(c, 7, 7) << 6 | BITS(c, 6, 6) << 7 |
					     BITS(c, 5, 3) << 1 | BITS(c, 2, 2) << 5,
				     12);
		return enc_j(0, imm);
	case 016: /* C.BEQZ */
	case 017: /* C.BNEZ */
		imm = (uint32_t)sext(BITS(c, 12, 12) << 8 | BITS(c, 11, 10) << 3 |
					     BITS(c, 6, 5) << 6 | BITS(c, 4, 3) << 1 |
					     BITS(c, 2, 2) << 5,
				     9);
		return enc_b(BITS(c, 13, 13), rs1p, 0, imm);
	case 020: /* C.SLLI */
		return enc_i(0x13, rd, 1, rd, (int32_t)(BITS(c, 12, 12) << 5 | BITS(c, 6, 2)));
	case 021: /* C.FLDSP */
		imm = BITS(c, 12, 12) << 5 | BITS(c, 6, 5) << 3 | BITS(c, 4, 2) << 6;
		return enc_i(0x07, rd, 3, 2, (int32_t)imm);
	case 022: /* C.LWSP; rd = 0 reserved */
		imm = BITS(c, 12, 12) << 5 | BITS(c, 6, 4) << 2 | BITS(c, 3, 2) << 6;
		return rd ? enc_i(0x03, rd, 2, 2, (int32_t)imm) : 0;
	case 023: /* C.LDSP; rd = 0 reserved */
		imm = BITS(c, 12, 12) << 5 | BITS(c, 6, 5) << 3 | BITS(c, 4, 2) << 6;
		return rd ? enc_i(0x03, rd, 3, 2, (int32_t)imm) : 0;
	case 024:
		if (!BITS(c, 12, 12)) {
			if (rs2) /* C.MV */
				return enc_r(0x33, rd, 0, 0, rs2, 0);
			return rd ? enc_i(0x67, 0, 0, rd, 0) : 0; /* C.JR; rs1 = 0 reserved */
		}
		if (!rs2)
			return rd ? enc_i(0x67, 1, 0, rd, 0) : 0x00100073; /* C.JALR / C.EBREAK */
		return enc_r(0x33, rd, 0, rd, rs2, 0);                    /* C.ADD */
	case 025: /* C.FSDSP */
		imm = BITS(c, 12, 10) << 3 | BITS(c, 9, 7) << 6;
		return enc_s(0x27, 3, 2, rs2, imm);
	case 026: /* C.SWSP */
		imm = BITS(c, 12, 9) << 2 | BITS(c, 8, 7) << 6;
		return enc_s(0x23, 2, 2, rs2, imm);
	case 027: /* C.SDSP */
		imm = BITS(c, 12, 10) << 3 | BITS(c, 9, 7) << 6;
		return enc_s(0x23, 3, 2, rs2, imm);
	default: /* 004: reserved */
		return 0;
	}
}

/*
 * Every 16-bit parcel expanded once: one load instead of a decode per executed compressed
 * instruction (about half of a typical kernel's instructions). Entries for parcels whose low
 * bits are 11 are unused; 0 marks a reserved encoding. Filled before main() runs.
 */
static uint32_t rvc_table[1 << 16];

__attribute__((constructor)) static void rvc_table_init(void)
{
	for (uint32_t c = 0; c < (1u << 16); c++)
		rvc_table[c] = (c & 3) == 3 ? 0 : rvc_expand(c);
}

uint32_t rv64_rvc_expand16(uint32_t parcel)
{
	return rvc_table[parcel & 0xffff];
}

/* --- M extension (unpriv 20191213 §7.2: division by zero and overflow do not trap). */

static inline uint64_t do_div(int64_t a, int64_t b)
{
	if (b == 0)
		return UINT64_MAX;
	if (a == INT64_MIN && b == -1)
		return (uint64_t)a;
	return (uint64_t)(a / b);
}

static inline uint64_t do_rem(int64_t a, int64_t b)
{
	if (b == 0)
		return (uint64_t)a;
	if (a == INT64_MIN && b == -1)
		return 0;
	return (uint64_t)(a % b);
}

static inline uint64_t do_divw(int32_t a, int32_t b)
{
	if (b == 0)
		return UINT64_MAX;
	if (a == INT32_MIN && b == -1)
		return sext32((uint32_t)a);
	return sext32((uint32_t)(a / b));
}

static inline uint64_t do_remw(int32_t a, int32_t b)
{
	if (b == 0)
		return sext32((uint32_t)a);
	if (a == INT32_MIN && b == -1)
		return 0;
	return sext32((uint32_t)(a % b));
}

/* --- Zbb helpers (bitmanip 1.0.0 §2.1.2). */

static inline uint64_t rol64(uint64_t a, unsigned s)
{
	s &= 63;
	return s ? (a << s) | (a >> (64 - s)) : a;
}

static inline uint64_t ror64(uint64_t a, unsigned s)
{
	s &= 63;
	return s ? (a >> s) | (a << (64 - s)) : a;
}

static inline uint64_t rorw(uint64_t a, unsigned s)
{
	uint32_t v = (uint32_t)a;

	s &= 31;
	return sext32(s ? (v >> s) | (v << (32 - s)) : v);
}

static inline uint64_t orc_b(uint64_t a)
{
	uint64_t r = 0;

	for (unsigned i = 0; i < 64; i += 8)
		if ((a >> i) & 0xff)
			r |= 0xffULL << i;
	return r;
}

/* --- A extension (unpriv 20191213 §8.4) on host atomics: other vCPU threads see them atomic. */

static uint64_t amo64(unsigned f5, uint64_t *p, uint64_t v)
{
	uint64_t old, nv;

	switch (f5) {
	case 0x01:
		return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
	case 0x00:
		return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
	case 0x04:
		return __atomic_fetch_xor(p, v, __ATOMIC_SEQ_CST);
	case 0x0c:
		return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST);
	case 0x08:
		return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST);
	}
	old = __atomic_load_n(p, __ATOMIC_RELAXED);
	do {
		switch (f5) {
		case 0x10:
			nv = (int64_t)old < (int64_t)v ? old : v;
			break;
		case 0x14:
			nv = (int64_t)old > (int64_t)v ? old : v;
			break;
		case 0x18:
			nv = old < v ? old : v;
			break;
		default:
			nv = old > v ? old : v;
			break;
		}
	} while (!__atomic_compare_exchange_n(p, &old, nv, true, __ATOMIC_SEQ_CST,
					      __ATOMIC_RELAXED));
	return old;
}

static uint32_t amo32(unsigned f5, uint32_t *p, uint32_t v)
{
	uint32_t old, nv;

	switch (f5) {
	case 0x01:
		return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
	case 0x00:
		return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
	case 0x04:
		return __atomic_fetch_xor(p, v, __ATOMIC_SEQ_CST);
	case 0x0c:
		return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST);
	case 0x08:
		return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST);
	}
	old = __atomic_load_n(p, __ATOMIC_RELAXED);
	do {
		switch (f5) {
		case 0x10:
			nv = (int32_t)old < (int32_t)v ? old : v;
			break;
		case 0x14:
			nv = (int32_t)old > (int32_t)v ? old : v;
			break;
		case 0x18:
			nv = old < v ? old : v;
			break;
		default:
			nv = old > v ? old : v;
			break;
		}
	} while (!__atomic_compare_exchange_n(p, &old, nv, true, __ATOMIC_SEQ_CST,
					      __ATOMIC_RELAXED));
	return old;
}

static bool amo_funct_valid(unsigned f5)
{
	switch (f5) {
	case 0x00:
	case 0x01:
	case 0x02:
	case 0x03:
	case 0x04:
	case 0x08:
	case 0x0c:
	case 0x10:
	case 0x14:
	case 0x18:
	case 0x1c:
		return true;
	default:
		return false;
	}
}

/* Returns 0, or -1 with exc_cause/exc_tval set (tval 0 for illegal: the caller fills it). */
static int exec_amo(struct rv64_cpu *cpu, uint32_t insn, unsigned rd, unsigned rs1, unsigned rs2)
{
	unsigned f3 = BITS(insn, 14, 12), f5 = insn >> 27;
	unsigned size = f3 == 2 ? 4 : 8;
	uint64_t va = cpu->x[rs1], pa, v = cpu->x[rs2];
	void *h;

	if ((f3 != 2 && f3 != 3) || !amo_funct_valid(f5) || (f5 == 0x02 && rs2)) {
		cpu->exc_cause = RV64_EXC_ILLEGAL_INSN;
		return -1;
	}
	if (f5 == 0x02) { /* LR */
		if (rv64_mem_atomic_ptr(cpu, va, size, true, &h, &pa))
			return -1;
		if (size == 4) {
			uint32_t w = __atomic_load_n((uint32_t *)h, __ATOMIC_SEQ_CST);

			cpu->resv_val = w;
			cpu->x[rd] = sext32(w);
		} else {
			cpu->resv_val = __atomic_load_n((uint64_t *)h, __ATOMIC_SEQ_CST);
			cpu->x[rd] = cpu->resv_val;
		}
		cpu->resv_addr = pa;
		return 0;
	}
	if (rv64_mem_atomic_ptr(cpu, va, size, false, &h, &pa))
		return -1;
	if (f5 == 0x03) { /* SC: succeeds only on the reserved address with the value LR saw */
		bool ok = false;

		if (cpu->resv_addr == pa) {
			if (size == 4) {
				uint32_t expect = (uint32_t)cpu->resv_val;

				ok = __atomic_compare_exchange_n((uint32_t *)h, &expect, (uint32_t)v,
								 false, __ATOMIC_SEQ_CST,
								 __ATOMIC_SEQ_CST);
			} else {
				uint64_t expect = cpu->resv_val;

				ok = __atomic_compare_exchange_n((uint64_t *)h, &expect, v, false,
								 __ATOMIC_SEQ_CST,
								 __ATOMIC_SEQ_CST);
			}
		}
		cpu->resv_addr = ~0ULL;
		cpu->x[rd] = ok ? 0 : 1;
		return 0;
	}
	if (size == 4)
		cpu->x[rd] = sext32(amo32(f5, (uint32_t *)h, (uint32_t)v));
	else
		cpu->x[rd] = amo64(f5, (uint64_t *)h, v);
	return 0;
}

static inline bool fs_off(const struct rv64_cpu *cpu)
{
	return !(cpu->mstatus & MS_FS);
}

static inline uint64_t imm_i(uint32_t insn)
{
	return (uint64_t)((int64_t)(int32_t)insn >> 20);
}

static inline uint64_t imm_s(uint32_t insn)
{
	return ((uint64_t)((int64_t)(int32_t)insn >> 25) << 5) | ((insn >> 7) & 31);
}

static inline uint64_t imm_b(uint32_t insn)
{
	return (uint64_t)((int64_t)(int32_t)(insn & 0x80000000u) >> 19) |
	       ((insn >> 20) & 0x7e0) | ((insn >> 7) & 0x1e) | ((insn << 4) & 0x800);
}

static inline uint64_t imm_j(uint32_t insn)
{
	return (uint64_t)((int64_t)(int32_t)(insn & 0x80000000u) >> 11) | (insn & 0xff000) |
	       ((insn >> 9) & 0x800) | ((insn >> 20) & 0x7fe);
}

static inline uint64_t op_reg(uint32_t insn, uint64_t a, uint64_t b, bool *ok)
{
	unsigned sh = b & 63;

	switch ((insn >> 25) << 3 | BITS(insn, 14, 12)) {
	case 0x00 << 3 | 0:
		return a + b;
	case 0x20 << 3 | 0:
		return a - b;
	case 0x00 << 3 | 1:
		return a << sh;
	case 0x00 << 3 | 2:
		return (int64_t)a < (int64_t)b;
	case 0x00 << 3 | 3:
		return a < b;
	case 0x00 << 3 | 4:
		return a ^ b;
	case 0x00 << 3 | 5:
		return a >> sh;
	case 0x20 << 3 | 5:
		return (uint64_t)((int64_t)a >> sh);
	case 0x00 << 3 | 6:
		return a | b;
	case 0x00 << 3 | 7:
		return a & b;
	/* M */
	case 0x01 << 3 | 0:
		return a * b;
	case 0x01 << 3 | 1:
		return (uint64_t)(((__int128)(int64_t)a * (__int128)(int64_t)b) >> 64);
	case 0x01 << 3 | 2:
		return (uint64_t)(((__int128)(int64_t)a * (__int128)b) >> 64);
	case 0x01 << 3 | 3:
		return (uint64_t)(((unsigned __int128)a * b) >> 64);
	case 0x01 << 3 | 4:
		return do_div((int64_t)a, (int64_t)b);
	case 0x01 << 3 | 5:
		return b ? a / b : UINT64_MAX;
	case 0x01 << 3 | 6:
		return do_rem((int64_t)a, (int64_t)b);
	case 0x01 << 3 | 7:
		return b ? a % b : a;
	/* Zbb */
	case 0x20 << 3 | 4:
		return ~(a ^ b);
	case 0x20 << 3 | 6:
		return a | ~b;
	case 0x20 << 3 | 7:
		return a & ~b;
	case 0x05 << 3 | 4:
		return (int64_t)a < (int64_t)b ? a : b;
	case 0x05 << 3 | 5:
		return a < b ? a : b;
	case 0x05 << 3 | 6:
		return (int64_t)a > (int64_t)b ? a : b;
	case 0x05 << 3 | 7:
		return a > b ? a : b;
	case 0x30 << 3 | 1:
		return rol64(a, sh);
	case 0x30 << 3 | 5:
		return ror64(a, sh);
	/* Zba */
	case 0x10 << 3 | 2:
		return (a << 1) + b;
	case 0x10 << 3 | 4:
		return (a << 2) + b;
	case 0x10 << 3 | 6:
		return (a << 3) + b;
	/* Zbs */
	case 0x14 << 3 | 1:
		return a | (1ULL << sh);
	case 0x24 << 3 | 1:
		return a & ~(1ULL << sh);
	case 0x24 << 3 | 5:
		return (a >> sh) & 1;
	case 0x34 << 3 | 1:
		return a ^ (1ULL << sh);
	}
	*ok = false;
	return 0;
}

static inline uint64_t op_reg32(uint32_t insn, uint64_t a, uint64_t b, bool *ok)
{
	unsigned sh = b & 31;

	switch ((insn >> 25) << 3 | BITS(insn, 14, 12)) {
	case 0x00 << 3 | 0:
		return sext32(a + b);
	case 0x20 << 3 | 0:
		return sext32(a - b);
	case 0x00 << 3 | 1:
		return sext32((uint32_t)a << sh);
	case 0x00 << 3 | 5:
		return sext32((uint32_t)a >> sh);
	case 0x20 << 3 | 5:
		return (uint64_t)(int64_t)((int32_t)a >> sh);
	case 0x01 << 3 | 0:
		return sext32((uint32_t)a * (uint32_t)b);
	case 0x01 << 3 | 4:
		return do_divw((int32_t)a, (int32_t)b);
	case 0x01 << 3 | 5:
		return (uint32_t)b ? sext32((uint32_t)a / (uint32_t)b) : UINT64_MAX;
	case 0x01 << 3 | 6:
		return do_remw((int32_t)a, (int32_t)b);
	case 0x01 << 3 | 7:
		return (uint32_t)b ? sext32((uint32_t)a % (uint32_t)b) : sext32(a);
	/* Zba */
	case 0x04 << 3 | 0:
		return (uint32_t)a + b;
	case 0x10 << 3 | 2:
		return ((uint64_t)(uint32_t)a << 1) + b;
	case 0x10 << 3 | 4:
		return ((uint64_t)(uint32_t)a << 2) + b;
	case 0x10 << 3 | 6:
		return ((uint64_t)(uint32_t)a << 3) + b;
	/* Zbb */
	case 0x04 << 3 | 4:
		if (BITS(insn, 24, 20) == 0)
			return (uint16_t)a; /* zext.h */
		break;
	case 0x30 << 3 | 1:
		return rorw(a, 32 - sh);
	case 0x30 << 3 | 5:
		return rorw(a, sh);
	}
	*ok = false;
	return 0;
}

static inline uint64_t op_imm_shift(uint32_t insn, uint64_t a, bool *ok)
{
	unsigned sh = BITS(insn, 25, 20);
	unsigned f12 = insn >> 20;

	if (BITS(insn, 14, 12) == 1) {
		switch (insn >> 26) {
		case 0x00:
			return a << sh;
		case 0x0a:
			return a | (1ULL << sh);
		case 0x12:
			return a & ~(1ULL << sh);
		case 0x1a:
			return a ^ (1ULL << sh);
		}
		switch (f12) {
		case 0x600:
			return a ? (uint64_t)__builtin_clzll(a) : 64;
		case 0x601:
			return a ? (uint64_t)__builtin_ctzll(a) : 64;
		case 0x602:
			return (uint64_t)__builtin_popcountll(a);
		case 0x604:
			return (uint64_t)(int64_t)(int8_t)a;
		case 0x605:
			return (uint64_t)(int64_t)(int16_t)a;
		}
	} else {
		switch (insn >> 26) {
		case 0x00:
			return a >> sh;
		case 0x10:
			return (uint64_t)((int64_t)a >> sh);
		case 0x18:
			return ror64(a, sh);
		case 0x12:
			return (a >> sh) & 1;
		}
		if (f12 == 0x287)
			return orc_b(a);
		if (f12 == 0x6b8)
			return __builtin_bswap64(a);
	}
	*ok = false;
	return 0;
}

static inline uint64_t op_imm32(uint32_t insn, uint64_t a, bool *ok)
{
	unsigned f3 = BITS(insn, 14, 12), f7 = insn >> 25, sh = BITS(insn, 24, 20);

	if (f3 == 0)
		return sext32(a + imm_i(insn));
	if (f3 == 1) {
		if (f7 == 0x00)
			return sext32((uint32_t)a << sh);
		if ((insn >> 26) == 0x02) /* slli.uw, 6-bit shamt */
			return (uint64_t)(uint32_t)a << BITS(insn, 25, 20);
		if (f7 == 0x30) {
			uint32_t w = (uint32_t)a;

			switch (sh) {
			case 0:
				return w ? (uint64_t)__builtin_clz(w) : 32;
			case 1:
				return w ? (uint64_t)__builtin_ctz(w) : 32;
			case 2:
				return (uint64_t)__builtin_popcount(w);
			}
		}
	} else if (f3 == 5) {
		if (f7 == 0x00)
			return sext32((uint32_t)a >> sh);
		if (f7 == 0x20)
			return (uint64_t)(int64_t)((int32_t)a >> sh);
		if (f7 == 0x30)
			return rorw(a, sh);
	}
	*ok = false;
	return 0;
}

static inline bool branch_taken(unsigned f3, uint64_t a, uint64_t b)
{
	switch (f3) {
	case 0:
		return a == b;
	case 1:
		return a != b;
	case 4:
		return (int64_t)a < (int64_t)b;
	case 5:
		return (int64_t)a >= (int64_t)b;
	case 6:
		return a < b;
	default:
		return a >= b;
	}
}

/* What a WFI does now: true if a locally enabled interrupt is pending (priv 1.12 §3.3.3). */
static bool wfi_wakes(struct rv64_cpu *cpu)
{
	return rv64_irq_pending(cpu, clock_guest_ticks()) & cpu->mie;
}


/* What interp_one() did, besides the RV64_STOP_* values it shares with rv64_exec(). */
enum {
	STEP_EXC = -1, /* not retired; exc_cause/exc_tval set (tval of illegal: `raw`) */
	STEP_NEXT = 0, /* retired; cpu->pc is the next instruction */
	STEP_JUMP = 8, /* retired; cpu->pc set; the code must be looked up again */
};

/* Interrupt-relevant state a CSR write may change (then the run loop must look again). */
struct irq_state {
	uint64_t mstatus_ie, mie, mip, mideleg, stimecmp, menvcfg;
	uint32_t priv;
};

static void irq_state_get(const struct rv64_cpu *cpu, struct irq_state *s)
{
	s->mstatus_ie = cpu->mstatus & (MS_MIE | MS_SIE);
	s->mie = cpu->mie;
	s->mip = cpu->mip;
	s->mideleg = cpu->mideleg;
	s->stimecmp = cpu->stimecmp;
	s->menvcfg = cpu->menvcfg;
	s->priv = cpu->priv;
}

static bool irq_state_same(const struct irq_state *a, const struct irq_state *b)
{
	return a->mstatus_ie == b->mstatus_ie && a->mie == b->mie && a->mip == b->mip &&
	       a->mideleg == b->mideleg && a->stimecmp == b->stimecmp &&
	       a->menvcfg == b->menvcfg && a->priv == b->priv;
}

/*
 * Executes one instruction (`insn`, RVC already expanded; `raw` as fetched, for tval) at pc,
 * `len` bytes long, with x[0] kept zero. The caller has retired the instructions before it, so
 * counters read here are exact. Returns STEP_* or RV64_STOP_EVENT/WFI/SBI (EVENT and WFI
 * retired with cpu->pc = next; SBI not retired, cpu->pc at the ECALL).
 */
static int interp_one(struct rv64_cpu *cpu, uint32_t insn, uint32_t raw, uint64_t pc,
		      unsigned len)
{
	uint64_t *x = cpu->x;
	uint64_t npc = pc + len, a, v;
	unsigned rd = BITS(insn, 11, 7), rs1 = BITS(insn, 19, 15), rs2 = BITS(insn, 24, 20);
	unsigned f3 = BITS(insn, 14, 12);
	int ret = STEP_NEXT;
	bool ok = true;

	switch (insn & 0x7f) {
	case 0x37: /* LUI */
		x[rd] = (uint64_t)(int64_t)(int32_t)(insn & 0xfffff000u);
		break;
	case 0x17: /* AUIPC */
		x[rd] = pc + (uint64_t)(int64_t)(int32_t)(insn & 0xfffff000u);
		break;
	case 0x6f: /* JAL */
		x[rd] = npc;
		npc = pc + imm_j(insn);
		ret = STEP_JUMP;
		break;
	case 0x67: /* JALR */
		if (f3)
			goto illegal;
		a = (x[rs1] + imm_i(insn)) & ~1ULL;
		x[rd] = npc;
		npc = a;
		ret = STEP_JUMP;
		break;
	case 0x63: /* BRANCH */
		if (f3 == 2 || f3 == 3)
			goto illegal;
		if (branch_taken(f3, x[rs1], x[rs2])) {
			npc = pc + imm_b(insn);
			ret = STEP_JUMP;
		}
		break;
	case 0x03: /* LOAD */
		a = x[rs1] + imm_i(insn);
		switch (f3) {
		case 0:
			if (rv64_mmu_load(cpu, a, 1, &v))
				return STEP_EXC;
			v = (uint64_t)(int64_t)(int8_t)v;
			break;
		case 1:
			if (rv64_mmu_load(cpu, a, 2, &v))
				return STEP_EXC;
			v = (uint64_t)(int64_t)(int16_t)v;
			break;
		case 2:
			if (rv64_mmu_load(cpu, a, 4, &v))
				return STEP_EXC;
			v = sext32(v);
			break;
		case 3:
			if (rv64_mmu_load(cpu, a, 8, &v))
				return STEP_EXC;
			break;
		case 4:
			if (rv64_mmu_load(cpu, a, 1, &v))
				return STEP_EXC;
			break;
		case 5:
			if (rv64_mmu_load(cpu, a, 2, &v))
				return STEP_EXC;
			break;
		case 6:
			if (rv64_mmu_load(cpu, a, 4, &v))
				return STEP_EXC;
			break;
		default:
			goto illegal;
		}
		x[rd] = v;
		break;
	case 0x23: /* STORE */
		a = x[rs1] + imm_s(insn);
		if (f3 > 3)
			goto illegal;
		if (rv64_mmu_store(cpu, a, 1u << f3, x[rs2]) < 0)
			return STEP_EXC;
		break;
	case 0x13: /* OP-IMM */
		a = x[rs1];
		switch (f3) {
		case 0:
			x[rd] = a + imm_i(insn);
			break;
		case 2:
			x[rd] = (int64_t)a < (int64_t)imm_i(insn);
			break;
		case 3:
			x[rd] = a < imm_i(insn);
			break;
		case 4:
			x[rd] = a ^ imm_i(insn);
			break;
		case 6:
			x[rd] = a | imm_i(insn);
			break;
		case 7:
			x[rd] = a & imm_i(insn);
			break;
		default:
			v = op_imm_shift(insn, a, &ok);
			if (!ok)
				goto illegal;
			x[rd] = v;
			break;
		}
		break;
	case 0x1b: /* OP-IMM-32 */
		v = op_imm32(insn, x[rs1], &ok);
		if (!ok)
			goto illegal;
		x[rd] = v;
		break;
	case 0x33: /* OP */
		v = op_reg(insn, x[rs1], x[rs2], &ok);
		if (!ok)
			goto illegal;
		x[rd] = v;
		break;
	case 0x3b: /* OP-32 */
		v = op_reg32(insn, x[rs1], x[rs2], &ok);
		if (!ok)
			goto illegal;
		x[rd] = v;
		break;
	case 0x0f: /* MISC-MEM */
		if (f3 == 0) {
			/*
			 * FENCE. Loads and stores are plain host accesses; on a TSO host only
			 * store->load ordering needs a real barrier.
			 */
#if defined(__x86_64__) || defined(__i386__)
			if ((insn & (1u << 24)) && (insn & (1u << 21)))
				__atomic_thread_fence(__ATOMIC_SEQ_CST);
#else
			__atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
			break;
		}
		if (f3 == 1) {
			/*
			 * FENCE.I (unpriv 20191213 §3.2). Stores of this hart and of harts that
			 * have synced since the page became code have already invalidated their
			 * pages; the next lookup sees that. A hart that has not synced yet may have
			 * written through an old fast TLB entry: then drop everything decoded.
			 */
			__atomic_thread_fence(__ATOMIC_SEQ_CST);
			if (!rv64_code_all_synced(cpu))
				rv64_dcache_flush(cpu);
			ret = STEP_JUMP;
			break;
		}
		goto illegal;
	case 0x2f: /* AMO */
		if (exec_amo(cpu, insn, rd, rs1, rs2)) {
			if (cpu->exc_cause == RV64_EXC_ILLEGAL_INSN)
				goto illegal;
			return STEP_EXC;
		}
		break;
	case 0x07: /* LOAD-FP */
		if (fs_off(cpu) || (f3 != 2 && f3 != 3))
			goto illegal;
		a = x[rs1] + imm_i(insn);
		if (f3 == 2) {
			if (rv64_mmu_load(cpu, a, 4, &v))
				return STEP_EXC;
			v |= 0xffffffff00000000ULL; /* NaN-box, unpriv 20191213 §12.2 */
		} else if (rv64_mmu_load(cpu, a, 8, &v)) {
			return STEP_EXC;
		}
		cpu->f[rd] = v;
		cpu->mstatus |= MS_FS;
		break;
	case 0x27: /* STORE-FP */
		if (fs_off(cpu) || (f3 != 2 && f3 != 3))
			goto illegal;
		a = x[rs1] + imm_s(insn);
		if (rv64_mmu_store(cpu, a, f3 == 2 ? 4 : 8, cpu->f[rs2]) < 0)
			return STEP_EXC;
		break;
	case 0x43:
	case 0x47:
	case 0x4b:
	case 0x4f:
	case 0x53: /* FMADD family, OP-FP */
		if (fs_off(cpu))
			goto illegal;
		if (rv64_fpu_exec(cpu, insn)) {
			if (cpu->exc_cause == RV64_EXC_ILLEGAL_INSN)
				goto illegal;
			return STEP_EXC;
		}
		cpu->mstatus |= MS_FS;
		break;
	case 0x73: /* SYSTEM */
		if (f3 == 0) {
			switch (insn) {
			case 0x00000073: /* ECALL */
				if (cpu->vm->ecall_exit_mask & (1u << cpu->priv)) {
					struct accel_run *run = &cpu->run;

					run->sbi.ext = x[17];
					run->sbi.fid = x[16];
					for (unsigned i = 0; i < 6; i++)
						run->sbi.args[i] = x[10 + i];
					run->sbi.ret[0] = run->sbi.ret[1] = 0;
					run->sbi.priv = cpu->priv;
					cpu->sbi_pending = true;
					cpu->pc = pc;
					return RV64_STOP_SBI;
				}
				cpu->exc_cause = RV64_EXC_ECALL_U + cpu->priv;
				cpu->exc_tval = 0;
				return STEP_EXC;
			case 0x00100073: /* EBREAK: tval = pc (priv 1.12 §3.1.16) */
				cpu->exc_cause = RV64_EXC_BREAKPOINT;
				cpu->exc_tval = pc;
				return STEP_EXC;
			case 0x30200073: /* MRET */
				if (rv64_mret(cpu))
					goto illegal;
				return RV64_STOP_EVENT;
			case 0x10200073: /* SRET */
				if (rv64_sret(cpu))
					goto illegal;
				return RV64_STOP_EVENT;
			case 0x10500073: /* WFI, priv 1.12 §3.1.6.5 */
				if (cpu->priv == RV64_PRIV_U ||
				    (cpu->priv == RV64_PRIV_S && (cpu->mstatus & MS_TW)))
					goto illegal;
				cpu->pc = npc;
				return wfi_wakes(cpu) ? RV64_STOP_EVENT : RV64_STOP_WFI;
			}
			if ((insn & 0xfe007fffu) == 0x12000073u) { /* SFENCE.VMA */
				if (cpu->priv == RV64_PRIV_U ||
				    (cpu->priv == RV64_PRIV_S && (cpu->mstatus & MS_TVM)))
					goto illegal;
				if (rs1)
					rv64_tlb_flush_page(cpu, x[rs1]);
				else
					rv64_tlb_flush(cpu);
				ret = STEP_JUMP;
				break;
			}
			goto illegal;
		}
		if (f3 == 4)
			goto illegal;
		{
			unsigned csr = insn >> 20, op = f3 & 3;
			uint64_t src = (f3 & 4) ? rs1 : x[rs1];
			bool wr = op == 1 || rs1 != 0;
			struct irq_state before, after;

			irq_state_get(cpu, &before);

			if (rv64_csr_insn(cpu, csr, op, src, rd != 0, wr, &v))
				goto illegal;
			x[rd] = v;
			if (wr) {
				/*
				 * A write may enable an interrupt (the run loop must look) or change
				 * translation (satp, PMP: look the code up again).
				 */
				x[0] = 0;
				cpu->pc = npc;
				irq_state_get(cpu, &after);
				if (!irq_state_same(&before, &after))
					return RV64_STOP_EVENT;
				return STEP_JUMP;
			}
		}
		break;
	default:
		goto illegal;
	}
	x[0] = 0;
	cpu->pc = npc;
	return ret;

illegal:
	x[0] = 0;
	cpu->exc_cause = RV64_EXC_ILLEGAL_INSN;
	cpu->exc_tval = raw;
	return STEP_EXC;
}

/*
 * --- The decode cache (DESIGN.md §4).
 *
 * Each guest-physical RAM page that runs code gets a page of pre-decoded ops, one slot per
 * 2-byte parcel (an instruction may start at any even offset) plus a sentinel that leaves the
 * page. Slots are decoded lazily, the first time control reaches them: a fresh page has every
 * slot pointing at the decoder. An op holds the address of its handler inside rv64_exec()
 * (computed goto) and its operands unpacked. Within a page, sequential flow and branches whose
 * target lies in the same page move the op pointer without any lookup; the pc is derived from
 * the op's slot when needed. Leaving the page (far jumps, falling off its end, traps) goes
 * through the instruction TLB and this cache again.
 *
 * Validity: a page is decoded under a generation of vm->code_state (mmu.c); any store that
 * reaches a page with decoded code bumps it (stores to such pages take the TLB slow path), and
 * a lookup compares generations. A per-hart epoch drops everything at once (FENCE.I when some
 * hart may have written code unnoticed, set_reg(PC) after the VMM wrote guest memory).
 * Translation changes need nothing here: the cache is physical and every page entry goes
 * through the TLB.
 */
#define DC_SLOTS 2048 /* parcels per page */
#define DC_SETS 1024
#define DC_WAYS 2

struct dc_op {
	const void *h; /* handler label in rv64_exec() */
	int32_t imm;   /* immediate; slot delta for in-page jumps; expanded insn for generic ops */
	uint8_t rd, rs1, rs2;
	uint8_t len; /* slots (2-byte parcels) to the next op */
};

struct dc_page {
	uint64_t pa;    /* guest-physical page address */
	uint64_t epoch; /* rv64_dcache.epoch it belongs to */
	uint32_t gen;   /* code_state generation it was decoded under */
	const uint8_t *host;
	struct dc_op ops[DC_SLOTS + 1]; /* + the sentinel: leave at the end of the page */
};

struct rv64_dcache {
	uint64_t epoch;                          /* pages of other epochs are empty */
	uint64_t npages; /* dc_pages allocated (kept until rv64_dcache_free); API threads read it */
	struct dc_page *set[DC_SETS][DC_WAYS]; /* [0] most recently used */
};

int rv64_dcache_new(struct rv64_cpu *cpu)
{
	if (!cpu->vm->code_state)
		return 0; /* no tracking, no cache: every instruction is fetched */
	cpu->dcache = calloc(1, sizeof(*cpu->dcache));
	if (!cpu->dcache)
		return -ENOMEM;
	cpu->dcache->epoch = 1;
#ifdef RV64_JIT
	/* Without a translator (no memfd, KUMO_JIT=0) the decoded ops run everything. */
	if (rv64_jit_wanted() && rv64_jit_new(&cpu->jit))
		cpu->jit = NULL;
#endif
	return 0;
}

uint64_t rv64_dcache_bytes(const struct rv64_cpu *cpu)
{
	const struct rv64_dcache *dc = cpu->dcache;

	if (!dc)
		return 0;
	return sizeof(*dc) + __atomic_load_n(&dc->npages, __ATOMIC_RELAXED) * sizeof(struct dc_page);
}

void rv64_dcache_free(struct rv64_cpu *cpu)
{
	struct rv64_dcache *dc = cpu->dcache;

	if (!dc)
		return;
#ifdef RV64_JIT
	rv64_jit_free(cpu->jit);
	cpu->jit = NULL;
#endif
	for (unsigned i = 0; i < DC_SETS; i++)
		for (unsigned w = 0; w < DC_WAYS; w++)
			free(dc->set[i][w]);
	free(dc);
	cpu->dcache = NULL;
}

void rv64_dcache_flush(struct rv64_cpu *cpu)
{
	if (cpu->dcache)
		cpu->dcache->epoch++;
#ifdef RV64_JIT
	rv64_jit_jc_invalidate(cpu->jit); /* its entries skip the epoch check */
#endif
}

static bool dc_valid(const struct dc_page *p, uint64_t pa, uint64_t epoch, uint32_t gen)
{
	return p && p->pa == pa && p->epoch == epoch && p->gen == gen;
}

/*
 * The decoded page for RAM page pa (from a fast instruction-TLB entry, so pa is RAM), reset to
 * undecoded when new or stale; NULL when out of memory (the caller interprets instead).
 */
static struct dc_page *dc_get(struct rv64_cpu *cpu, uint64_t pa, const void *decode,
			      const void *leave)
{
	struct rv64_dcache *dc = cpu->dcache;
	struct rv64_vm *vm = cpu->vm;
	uint64_t pfn = (pa - vm->ram_base) >> RV64_PAGE_SHIFT;
	struct dc_page **set = dc->set[(pfn ^ (pfn >> 10)) & (DC_SETS - 1)];
	uint32_t gen = rv64_code_gen(vm, pa);
	struct dc_page *p = set[0];

	if (likely(dc_valid(p, pa, dc->epoch, gen))) {
		RV64_STAT_ADD(cpu, dcache_hits, 1);
		return p;
	}
	p = set[1];
	if (dc_valid(p, pa, dc->epoch, gen)) {
		set[1] = set[0];
		set[0] = p;
		RV64_STAT_ADD(cpu, dcache_hits, 1);
		return p;
	}
	RV64_STAT_ADD(cpu, dcache_misses, 1);
	/* Reuse a stale copy of the same page, else the least recently used way. */
	if (set[0] && set[0]->pa == pa) {
		p = set[0];
	} else {
		if (!(set[1] && set[1]->pa == pa)) {
			if (!p) {
				p = malloc(sizeof(*p));
				if (!p)
					return NULL;
				__atomic_store_n(&dc->npages, dc->npages + 1, __ATOMIC_RELAXED);
			}
		}
		set[1] = set[0];
		set[0] = p;
	}
	p->pa = pa;
	p->epoch = dc->epoch;
	p->host = vm->ram + (pa - vm->ram_base);
	/* Mark first, decode later: stores from now on invalidate what we decode. */
	p->gen = rv64_code_mark(cpu, pa);
	for (unsigned i = 0; i < DC_SLOTS; i++)
		p->ops[i].h = decode;
	p->ops[DC_SLOTS].h = leave;
	p->ops[DC_SLOTS].len = 0;
	return p;
}

#define DC_RECENT 8

struct dc_recent {
	uint64_t va; /* guest-virtual page address */
	struct dc_page *dp;
	uint32_t stamp; /* valid while equal to rv64_exec()'s stamp */
};

/* Handlers of decoded ops; H_ names index the label table in rv64_exec(). */
/*
 * T(name): an op that also exists as a 16-bit instruction gets a twin handler name_C that
 * steps one slot instead of two, so the common path needs no length load.
 */
#define DC_HANDLERS(X, T)                                                                      \
	X(DECODE) X(LEAVE) X(STEP) X(ILLEGAL) X(GENERIC) X(NOP) X(FPU) X(JIT)                      \
	T(LUI) X(AUIPC) X(LI) X(LLA) X(CALL)                                                   \
	X(JAL) X(J) X(JAL_FAR) X(J_FAR) X(JALR) X(JR)                                          \
	X(BEQ) X(BNE) X(BLT) X(BGE) X(BLTU) X(BGEU)                                            \
	X(BEQ_FAR) X(BNE_FAR) X(BLT_FAR) X(BGE_FAR) X(BLTU_FAR) X(BGEU_FAR)                    \
	T(LB) T(LH) T(LW) T(LD) T(LBU) T(LHU) T(LWU) T(SB) T(SH) T(SW) T(SD)                   \
	X(FLW) X(FLD) X(FSW) X(FSD)                                                            \
	T(ADDI) T(SLTI) T(SLTIU) T(XORI) T(ORI) T(ANDI) T(SLLI) T(SRLI) T(SRAI)                \
	T(ADDIW) T(SLLIW) T(SRLIW) T(SRAIW)                                                    \
	T(ADD) T(SUB) T(SLL) T(SLT) T(SLTU) T(XOR) T(SRL) T(SRA) T(OR) T(AND)                  \
	T(ADDW) T(SUBW) T(SLLW) T(SRLW) T(SRAW)                                                \
	T(MUL) T(MULH) T(MULHSU) T(MULHU) T(DIV) T(DIVU) T(REM) T(REMU)                        \
	T(MULW) T(DIVW) T(DIVUW) T(REMW) T(REMUW)                                              \
	T(SH1ADD) T(SH2ADD) T(SH3ADD) T(ADDUW) X(OPG) X(OP32G) X(OPIMMG) X(OPIMM32G)

#define DC_ENUM(n) H_##n,
#define DC_ENUM_T(n) H_##n, H_##n##_C,
enum dc_handler { DC_HANDLERS(DC_ENUM, DC_ENUM_T) H__COUNT };
#define DC_TWIN(n) [H_##n] = true,
#define DC_TWIN_NONE(n)
/* Handlers with a 16-bit twin right after them. */
static const bool dc_has_twin[H__COUNT] = {DC_HANDLERS(DC_TWIN_NONE, DC_TWIN)};
#undef DC_ENUM
#undef DC_ENUM_T
#undef DC_TWIN
#undef DC_TWIN_NONE

static inline uint32_t dc_parcel(const uint8_t *page, unsigned slot)
{
	/* Other harts may store to the page meanwhile: read each parcel once, atomically. */
	return __atomic_load_n((const uint16_t *)(page + 2 * slot), __ATOMIC_RELAXED);
}

/* The instruction at `slot` expanded to 32 bits (0: illegal), its length in slots in *len. */
static uint32_t dc_fetch(const uint8_t *page, unsigned slot, unsigned *len)
{
	uint32_t lo = dc_parcel(page, slot);

	if ((lo & 3) != 3) {
		*len = 1;
		return rvc_table[lo];
	}
	*len = 2;
	return lo | dc_parcel(page, slot + 1) << 16;
}

static bool fits_i32(int64_t v)
{
	return v == (int64_t)(int32_t)v;
}

/*
 * Fuses `lui/auipc rd` at `slot` (its 32-bit value hi) with the next instruction when that
 * one completes it: lui+addi(w) (a constant), auipc+addi (an address), auipc+jalr with the
 * same rd (a call). Returns the handler, or H__COUNT when nothing fuses.
 */
static unsigned dc_fuse(struct dc_op *op, const uint8_t *page, unsigned slot, bool lui,
			unsigned rd, int64_t hi)
{
	unsigned next = slot + op->len, len2;
	uint32_t i2;
	int64_t lo, v;

	if (next >= DC_SLOTS || ((dc_parcel(page, next) & 3) == 3 && next + 1 >= DC_SLOTS))
		return H__COUNT;
	i2 = dc_fetch(page, next, &len2);
	if (!i2 || BITS(i2, 19, 15) != rd)
		return H__COUNT;
	lo = (int64_t)imm_i(i2);
	if (lui && (i2 & 0x707f) == 0x0013 && BITS(i2, 11, 7) == rd) { /* addi */
		v = hi + lo;
		if (!fits_i32(v))
			return H__COUNT;
	} else if (lui && (i2 & 0x707f) == 0x001b && BITS(i2, 11, 7) == rd) { /* addiw */
		v = (int64_t)(int32_t)(uint32_t)(hi + lo);
	} else if (!lui && (i2 & 0x707f) == 0x0013 && BITS(i2, 11, 7) == rd) { /* addi */
		v = hi + lo;
		if (!fits_i32(v))
			return H__COUNT;
	} else if (!lui && (i2 & 0x707f) == 0x0067 && BITS(i2, 11, 7) == rd) { /* jalr */
		v = hi + lo;
		if (!fits_i32(v))
			return H__COUNT;
		op->imm = (int32_t)v;
		op->len += len2;
		return H_CALL;
	} else {
		return H__COUNT;
	}
	op->imm = (int32_t)v;
	op->len += len2;
	return lui ? H_LI : H_LLA;
}

/* Jump or branch at `slot` by byte offset `off`: an in-page slot delta, or a far jump. */
static bool dc_near(struct dc_op *op, unsigned slot, int64_t off)
{
	int64_t t = (int64_t)slot * 2 + off;

	if (t >= 0 && t < (int64_t)RV64_PAGE_SIZE) {
		op->imm = (int32_t)(off / 2);
		return true;
	}
	op->imm = (int32_t)off;
	return false;
}

/* Decodes the instruction at `slot` of `page` into op; returns its handler (enum dc_handler). */
static unsigned dc_decode(struct dc_op *op, const uint8_t *page, unsigned slot)
{
	uint32_t lo = dc_parcel(page, slot), insn;
	unsigned len, rd, rs1, f3, f7;
	bool ok = true;

	if ((lo & 3) == 3 && slot == DC_SLOTS - 1) {
		op->len = 2;
		return H_STEP; /* straddles two pages: fetched and run one at a time */
	}
	insn = dc_fetch(page, slot, &len);
	op->len = (uint8_t)len;
	if (!insn)
		return H_ILLEGAL;
	rd = BITS(insn, 11, 7);
	rs1 = BITS(insn, 19, 15);
	f3 = BITS(insn, 14, 12);
	f7 = insn >> 25;
	op->rd = (uint8_t)rd;
	op->rs1 = (uint8_t)rs1;
	op->rs2 = (uint8_t)BITS(insn, 24, 20);
	op->imm = (int32_t)imm_i(insn);

	switch (insn & 0x7f) {
	case 0x37: { /* LUI */
		int64_t hi = (int32_t)(insn & 0xfffff000u);
		unsigned h;

		if (!rd)
			return H_NOP;
		h = dc_fuse(op, page, slot, true, rd, hi);
		if (h != H__COUNT)
			return h;
		op->imm = (int32_t)hi;
		return H_LUI;
	}
	case 0x17: { /* AUIPC */
		int64_t hi = (int32_t)(insn & 0xfffff000u);
		unsigned h;

		if (!rd)
			return H_NOP;
		h = dc_fuse(op, page, slot, false, rd, hi);
		if (h != H__COUNT)
			return h;
		op->imm = (int32_t)hi;
		return H_AUIPC;
	}
	case 0x6f: /* JAL */
		if (dc_near(op, slot, (int64_t)imm_j(insn)))
			return rd ? H_JAL : H_J;
		return rd ? H_JAL_FAR : H_J_FAR;
	case 0x67: /* JALR */
		if (f3)
			return H_ILLEGAL;
		return rd ? H_JALR : H_JR;
	case 0x63: { /* BRANCH */
		static const uint8_t near[8] = {H_BEQ, H_BNE, 0, 0, H_BLT, H_BGE, H_BLTU, H_BGEU};
		static const uint8_t far[8] = {H_BEQ_FAR, H_BNE_FAR, 0, 0,
					       H_BLT_FAR, H_BGE_FAR, H_BLTU_FAR, H_BGEU_FAR};

		if (f3 == 2 || f3 == 3)
			return H_ILLEGAL;
		return dc_near(op, slot, (int64_t)imm_b(insn)) ? near[f3] : far[f3];
	}
	case 0x03: { /* LOAD */
		static const uint8_t h[8] = {H_LB, H_LH, H_LW, H_LD, H_LBU, H_LHU, H_LWU, 0};

		if (f3 == 7)
			return H_ILLEGAL;
		if (rd)
			return h[f3];
		op->imm = (int32_t)insn; /* a load to x0 still accesses memory */
		return H_GENERIC;
	}
	case 0x23: { /* STORE */
		static const uint8_t h[4] = {H_SB, H_SH, H_SW, H_SD};

		if (f3 > 3)
			return H_ILLEGAL;
		op->imm = (int32_t)imm_s(insn);
		return h[f3];
	}
	case 0x07: /* LOAD-FP */
		if (f3 != 2 && f3 != 3)
			return H_ILLEGAL;
		return f3 == 2 ? H_FLW : H_FLD;
	case 0x27: /* STORE-FP */
		if (f3 != 2 && f3 != 3)
			return H_ILLEGAL;
		op->imm = (int32_t)imm_s(insn);
		return f3 == 2 ? H_FSW : H_FSD;
	case 0x13: { /* OP-IMM */
		static const uint8_t h[8] = {H_ADDI, 0, H_SLTI, H_SLTIU, H_XORI, 0, H_ORI, H_ANDI};
		unsigned r;

		if (f3 != 1 && f3 != 5)
			return rd ? h[f3] : H_NOP;
		op->imm = (int32_t)BITS(insn, 25, 20);
		if (f3 == 1 && (insn >> 26) == 0)
			r = H_SLLI;
		else if (f3 == 5 && (insn >> 26) == 0)
			r = H_SRLI;
		else if (f3 == 5 && (insn >> 26) == 0x10)
			r = H_SRAI;
		else {
			op_imm_shift(insn, 0, &ok);
			if (!ok)
				return H_ILLEGAL;
			op->imm = (int32_t)insn;
			r = H_OPIMMG;
		}
		return rd ? r : H_NOP;
	}
	case 0x1b: { /* OP-IMM-32 */
		unsigned r;

		op_imm32(insn, 0, &ok);
		if (!ok)
			return H_ILLEGAL;
		if (f3 == 0) {
			r = H_ADDIW;
		} else {
			op->imm = (int32_t)BITS(insn, 24, 20);
			if (f3 == 1 && f7 == 0)
				r = H_SLLIW;
			else if (f3 == 5 && f7 == 0)
				r = H_SRLIW;
			else if (f3 == 5 && f7 == 0x20)
				r = H_SRAIW;
			else {
				op->imm = (int32_t)insn;
				r = H_OPIMM32G;
			}
		}
		return rd ? r : H_NOP;
	}
	case 0x33: { /* OP */
		unsigned r;

		op_reg(insn, 0, 0, &ok);
		if (!ok)
			return H_ILLEGAL;
		switch (f7 << 3 | f3) {
		case 0x00 << 3 | 0: r = H_ADD; break;
		case 0x20 << 3 | 0: r = H_SUB; break;
		case 0x00 << 3 | 1: r = H_SLL; break;
		case 0x00 << 3 | 2: r = H_SLT; break;
		case 0x00 << 3 | 3: r = H_SLTU; break;
		case 0x00 << 3 | 4: r = H_XOR; break;
		case 0x00 << 3 | 5: r = H_SRL; break;
		case 0x20 << 3 | 5: r = H_SRA; break;
		case 0x00 << 3 | 6: r = H_OR; break;
		case 0x00 << 3 | 7: r = H_AND; break;
		case 0x01 << 3 | 0: r = H_MUL; break;
		case 0x01 << 3 | 1: r = H_MULH; break;
		case 0x01 << 3 | 2: r = H_MULHSU; break;
		case 0x01 << 3 | 3: r = H_MULHU; break;
		case 0x01 << 3 | 4: r = H_DIV; break;
		case 0x01 << 3 | 5: r = H_DIVU; break;
		case 0x01 << 3 | 6: r = H_REM; break;
		case 0x01 << 3 | 7: r = H_REMU; break;
		case 0x10 << 3 | 2: r = H_SH1ADD; break;
		case 0x10 << 3 | 4: r = H_SH2ADD; break;
		case 0x10 << 3 | 6: r = H_SH3ADD; break;
		default:
			op->imm = (int32_t)insn;
			r = H_OPG;
			break;
		}
		return rd ? r : H_NOP;
	}
	case 0x3b: { /* OP-32 */
		unsigned r;

		op_reg32(insn, 0, 0, &ok);
		if (!ok)
			return H_ILLEGAL;
		switch (f7 << 3 | f3) {
		case 0x00 << 3 | 0: r = H_ADDW; break;
		case 0x20 << 3 | 0: r = H_SUBW; break;
		case 0x00 << 3 | 1: r = H_SLLW; break;
		case 0x00 << 3 | 5: r = H_SRLW; break;
		case 0x20 << 3 | 5: r = H_SRAW; break;
		case 0x01 << 3 | 0: r = H_MULW; break;
		case 0x01 << 3 | 4: r = H_DIVW; break;
		case 0x01 << 3 | 5: r = H_DIVUW; break;
		case 0x01 << 3 | 6: r = H_REMW; break;
		case 0x01 << 3 | 7: r = H_REMUW; break;
		case 0x04 << 3 | 0: r = H_ADDUW; break;
		default:
			op->imm = (int32_t)insn;
			r = H_OP32G;
			break;
		}
		return rd ? r : H_NOP;
	}
	case 0x43:
	case 0x47:
	case 0x4b:
	case 0x4f:
	case 0x53: /* FMADD family, OP-FP */
		op->imm = (int32_t)insn;
		return H_FPU;
	default: /* SYSTEM, MISC-MEM, AMO, and anything the interpreter refuses */
		op->imm = (int32_t)insn;
		return H_GENERIC;
	}
}

/*
 * Runs up to about `budget` instructions from cpu->pc (checked at taken jumps and page
 * changes; traps count too, so a trap loop still returns). Retired instructions are counted
 * in a local and added to instret when the slice ends or before an instruction that reads
 * the counters.
 */
int rv64_exec(struct rv64_cpu *cpu, uint64_t budget)
{
#define DC_LABEL(n) [H_##n] = &&h_##n,
#define DC_LABEL_T(n) [H_##n] = &&h_##n, [H_##n##_C] = &&h_##n##_C,
	static const void *const label[H__COUNT] = {DC_HANDLERS(DC_LABEL, DC_LABEL_T)};
#undef DC_LABEL
#undef DC_LABEL_T
	uint64_t *const x = cpu->x;
	uint64_t n = 0;       /* instructions retired in this slice */
	uint64_t retired = 0; /* of which already added to instret */
	uint64_t spent = 0;   /* traps taken */
	uint64_t hits = 0;    /* TLB fast-path hits of loads and stores */
	uint64_t misses;
	uint64_t pc = cpu->pc, page_va = 0;
	struct dc_page *dp = NULL;
	struct dc_op *ops = NULL, *op = NULL;
	/*
	 * Pages entered recently in this slice, so far jumps between them (calls and returns)
	 * skip the lookup. Nothing that could change a translation or drop decoded code happens
	 * without passing `stepped`, `trap` or `code_written`, which forget them (stamp++).
	 */
	struct dc_recent recent[DC_RECENT] = {{0}};
	uint32_t stamp = 1;
	int stop = RV64_STOP_BUDGET, r;
#ifdef RV64_JIT
	/*
	 * A chaining cell left unlinked because its target had no block yet or lay on a page
	 * this loop did not enter (the jump cache went there): linked when the lookup of
	 * link_pc reaches a block, if nothing that could change translations or code happened
	 * meanwhile (same stamp, no flush of the code buffer).
	 */
	uint64_t link_cell = 0, link_pc = 0, link_flushes = 0;
	uint32_t link_stamp = 0;
	/*
	 * The next translated block reached is worth a jump cache entry: translated code left
	 * for its pc (a jump cache miss). Blocks reached otherwise (after an interpreted op, a
	 * trap, a CSR write) are not what translated code jumps to.
	 */
	bool jc_want = false;
#endif

#define PC() (page_va + ((uint64_t)(op - ops) << 1))
#define DISPATCH() goto *op->h
#define NEXT()                                                                                 \
	do {                                                                                   \
		n++;                                                                           \
		op += op->len;                                                                 \
		DISPATCH();                                                                    \
	} while (0)
#define IMM ((uint64_t)(int64_t)op->imm)
#define RD x[op->rd]
#define RS1 x[op->rs1]
#define RS2 x[op->rs2]
/* A taken in-page jump: the slot delta is in imm. */
#define JUMP_NEAR()                                                                            \
	do {                                                                                   \
		n++;                                                                           \
		op += op->imm;                                                                 \
		if (unlikely(n >= budget))                                                     \
			goto out_op;                                                           \
		DISPATCH();                                                                    \
	} while (0)
/* A taken jump to a computed address: stays in the page without a lookup when it can. */
#define JUMP_TO(target)                                                                        \
	do {                                                                                   \
		n++;                                                                           \
		GOTO_PC(target);                                                               \
	} while (0)
/* Goes on at a computed address (nothing more retired). */
#define GOTO_PC(target)                                                                        \
	do {                                                                                   \
		uint64_t t_ = (target);                                                        \
		if (likely(((t_ ^ page_va) & RV64_PAGE_MASK) == 0 && n < budget)) {            \
			op = ops + ((t_ & ~RV64_PAGE_MASK) >> 1);                              \
			DISPATCH();                                                            \
		}                                                                              \
		if (likely(n < budget)) {                                                      \
			struct dc_recent *q_ = &recent[(t_ >> RV64_PAGE_SHIFT) & (DC_RECENT - 1)]; \
			if (q_->stamp == stamp && q_->va == (t_ & RV64_PAGE_MASK)) {           \
				dp = q_->dp;                                                   \
				ops = dp->ops;                                                 \
				page_va = q_->va;                                              \
				op = ops + ((t_ & ~RV64_PAGE_MASK) >> 1);                      \
				DISPATCH();                                                    \
			}                                                                      \
		}                                                                              \
		pc = t_;                                                                       \
		goto lookup;                                                                   \
	} while (0)
#define BRANCH(name, cond)                                                                     \
	h_##name : if (cond) JUMP_NEAR();                                                      \
	NEXT();                                                                                \
	h_##name##_FAR : if (cond) JUMP_TO(PC() + IMM);                                        \
	NEXT();
/* STEP(k): to the op k slots on (k constant in twin handlers). */
#define STEP(k)                                                                                \
	do {                                                                                   \
		n++;                                                                           \
		op += (k);                                                                     \
		DISPATCH();                                                                    \
	} while (0)
#define ALU_(label, expr, k)                                                                   \
	h_##label : RD = (expr);                                                               \
	STEP(k);
#define ALU(name, expr) ALU_(name, expr, 2) ALU_(name##_C, expr, 1)
/* Memory ops count TLB fast-path hits in a local; the slow paths count their own. */
#define LOAD(name, size, ext) LOAD_(name, size, ext, 2) LOAD_(name##_C, size, ext, 1)
#define LOAD_(name, size, ext, k)                                                              \
	h_##name : {                                                                           \
		uint64_t v_, a_ = RS1 + IMM;                                                   \
		if (likely(rv64_mmu_load_fast(cpu, a_, size, &v_)))                            \
			hits++;                                                                \
		else if (unlikely(rv64_mmu_load_slow(cpu, a_, size, &v_)))                     \
			goto exc;                                                              \
		RD = (ext);                                                                    \
		STEP(k);                                                                       \
	}
#define STORE(name, size, val) STORE_(name, size, val, 2) STORE_(name##_C, size, val, 1)
/* k: slots to the next op, or op->len. */
#define STORE_(name, size, val, k)                                                             \
	h_##name : {                                                                           \
		uint64_t a_ = RS1 + IMM;                                                       \
		int r_ = 0;                                                                    \
		if (likely(rv64_mmu_store_fast(cpu, a_, size, val)))                           \
			hits++;                                                                \
		else                                                                           \
			r_ = rv64_mmu_store_slow(cpu, a_, size, val);                          \
		if (unlikely(r_)) {                                                            \
			if (r_ < 0)                                                            \
				goto exc;                                                      \
			goto code_written; /* this page may be the one rewritten */            \
		}                                                                              \
		STEP(k);                                                                        \
	}

	__atomic_store_n(&cpu->in_exec, 1, __ATOMIC_SEQ_CST);
	rv64_code_sync(cpu);

lookup: /* pc: where to go on; looks its page up in the TLB and the decode cache */
	if (unlikely(n + spent >= budget))
		goto out_pc;
	cpu->code_written = false;
	if (likely(cpu->dcache && !(pc & 1))) {
		struct rv64_tlb_entry *e = rv64_tlb_slot(cpu, RV64_ACC_EXEC, pc);
		uint64_t pa;

		if (likely(rv64_tlb_match(cpu, e, RV64_ACC_EXEC, pc, 2))) {
			RV64_STAT_ADD(cpu, tlb_hits, 1);
			pa = e->paddr;
		} else {
			r = rv64_mmu_code_page(cpu, pc, &pa);
			if (r < 0)
				goto exc_pc;
			if (r > 0)
				goto step;
		}
		misses = cpu->stats.dcache_misses;
		dp = dc_get(cpu, pa, &&h_DECODE, &&h_LEAVE);
		if (unlikely(!dp))
			goto step;
		if (unlikely(misses != cpu->stats.dcache_misses))
			stamp++; /* it may have recycled a page that `recent` points to */
		ops = dp->ops;
		page_va = pc & RV64_PAGE_MASK;
		op = ops + ((pc & ~RV64_PAGE_MASK) >> 1);
		{
			struct dc_recent *q = &recent[(pc >> RV64_PAGE_SHIFT) & (DC_RECENT - 1)];

			q->va = page_va;
			q->dp = dp;
			q->stamp = stamp;
		}
		DISPATCH();
	}
	goto step;

h_DECODE : {
	unsigned id = dc_decode(op, dp->host, (unsigned)(op - ops));

	if (dc_has_twin[id] && op->len == 1)
		id++;
	op->h = label[id];
#ifdef RV64_JIT
	if (cpu->jit) {
		/*
		 * A first arrival runs interpreted and a second one translates (h_WARM): code that
		 * runs once, like most of a kernel's boot, never pays for translation (jit.h).
		 */
		if (cpu->jit->eager)
			goto translate;
		op->h = &&h_WARM;
		goto *label[id];
	}
#endif
	DISPATCH();
}
h_WARM: /* the second arrival at an op with a translator: translate from here */
#ifdef RV64_JIT
{
	unsigned id = dc_decode(op, dp->host, (unsigned)(op - ops));

	if (dc_has_twin[id] && op->len == 1)
		id++;
	op->h = label[id];
}
translate: {
	int b = rv64_jit_compile(cpu->jit, dp->host, (unsigned)(op - ops), op);

	if (b >= 0) {
		op->h = &&h_JIT;
		op->imm = b;
	}
	DISPATCH();
}
#else
	goto h_DECODE; /* never reached: only a translator sets h_WARM */
#endif
h_JIT: /* translated code from this op on (jit.h) */
#ifdef RV64_JIT
{
	const void *code = rv64_jit_code(cpu->jit, op->imm, op);
	struct rv64_jit_ret jr;
	int64_t left = (int64_t)(budget - n);

	if (unlikely(!code)) { /* the code buffer was flushed: translate again */
		op->h = &&h_WARM;
		DISPATCH();
	}
	if (unlikely(link_cell)) {
		if (link_pc == PC() && link_stamp == stamp && link_flushes == cpu->jit->flushes)
			rv64_jit_link(cpu->jit, link_cell, code);
		link_cell = 0;
	}
	/* A lookup for translated code reached a block: later exits to PC() may go there directly. */
	if (jc_want) {
		rv64_jit_jc_fill(cpu->jit, cpu, PC(), code,
				 &cpu->vm->code_state[(dp->pa - cpu->vm->ram_base) >> RV64_PAGE_SHIFT],
				 dp->gen << 1 | 1);
		jc_want = false;
	}
	jr = rv64_jit_run(cpu->jit, cpu, page_va, left, code);
	n += (uint64_t)(left - jr.left);
	pc = cpu->pc;
	if (unlikely(jr.status == RV64_JIT_EXIT_EXC))
		goto exc_pc;
	if (unlikely(jr.status == RV64_JIT_EXIT_CODE)) {
		stamp++;
		goto lookup;
	}
	if (unlikely(jr.status == RV64_JIT_EXIT_STEP))
		goto step;
	if (unlikely(jr.status == RV64_JIT_EXIT_EVENT)) {
		/* A CSR write may have enabled an interrupt: the run loop looks (rv64.c). */
		stop = RV64_STOP_EVENT;
		goto out_pc;
	}
	if (jr.status >= RV64_JIT_EXIT_CELL && n < budget) {
		/* In-page exit with budget left: chain the exit to the block it reaches. */
		if (likely(((pc ^ page_va) & RV64_PAGE_MASK) == 0)) {
			op = ops + ((pc & ~RV64_PAGE_MASK) >> 1);
			code = op->h == &&h_JIT ? rv64_jit_code(cpu->jit, op->imm, op) : NULL;
			if (code) {
				rv64_jit_link(cpu->jit, jr.status, code);
				DISPATCH();
			}
		}
		link_cell = jr.status;
		link_pc = pc;
		link_stamp = stamp;
		link_flushes = cpu->jit->flushes;
	}
	jc_want = true;
	GOTO_PC(pc);
}
#else
	goto h_DECODE; /* never reached: only the translator sets h_JIT */
#endif
h_LEAVE: /* fell off the end of the page */
	pc = page_va + RV64_PAGE_SIZE;
	goto lookup;
h_STEP:
	pc = PC();
	goto step;
h_NOP:
	NEXT();
h_ILLEGAL:
	goto illegal;

h_GENERIC : {
	unsigned len = (unsigned)op->len << 1;

	pc = PC();
	cpu->pc = pc;
	rv64_retire(cpu, n - retired); /* counters read by this instruction are exact */
	retired = n;
	r = interp_one(cpu, (uint32_t)op->imm, (uint32_t)op->imm, pc, len);
	if (likely(r == STEP_NEXT && !cpu->code_written)) {
		/* Nothing here changes translations or decoded code: stay on the page. */
		NEXT();
	}
	if (r == STEP_EXC && cpu->exc_cause == RV64_EXC_ILLEGAL_INSN)
		goto illegal;
	goto stepped;
}

h_FPU:
	if (unlikely(fs_off(cpu)))
		goto illegal;
	if (unlikely(rv64_fpu_exec(cpu, (uint32_t)op->imm))) {
		if (cpu->exc_cause == RV64_EXC_ILLEGAL_INSN)
			goto illegal;
		goto exc;
	}
	cpu->mstatus |= MS_FS;
	NEXT();

	/* Constants, fused pairs. */
	ALU(LUI, IMM)
	ALU_(AUIPC, PC() + IMM, 2)
h_LI: /* lui + addi(w) */
	RD = IMM;
	n += 2;
	op += op->len;
	DISPATCH();
h_LLA: /* auipc + addi */
	RD = PC() + IMM;
	n += 2;
	op += op->len;
	DISPATCH();
h_CALL : { /* auipc ra + jalr ra: link, then jump */
	uint64_t here = PC();

	RD = here + ((uint64_t)op->len << 1);
	n++;
	JUMP_TO(here + IMM);
}

	/* Jumps and branches. */
h_JAL:
	RD = PC() + ((uint64_t)op->len << 1);
	JUMP_NEAR();
h_J:
	JUMP_NEAR();
h_JAL_FAR : {
	uint64_t here = PC();

	RD = here + ((uint64_t)op->len << 1);
	JUMP_TO(here + IMM);
}
h_J_FAR:
	JUMP_TO(PC() + IMM);
h_JALR : {
	uint64_t t = (RS1 + IMM) & ~1ULL; /* before the link: rd may be rs1 */

	RD = PC() + ((uint64_t)op->len << 1);
	JUMP_TO(t);
}
h_JR:
	JUMP_TO((RS1 + IMM) & ~1ULL);

	BRANCH(BEQ, RS1 == RS2)
	BRANCH(BNE, RS1 != RS2)
	BRANCH(BLT, (int64_t)RS1 < (int64_t)RS2)
	BRANCH(BGE, (int64_t)RS1 >= (int64_t)RS2)
	BRANCH(BLTU, RS1 < RS2)
	BRANCH(BGEU, RS1 >= RS2)

	/* Loads and stores. */
	LOAD(LB, 1, (uint64_t)(int64_t)(int8_t)v_)
	LOAD(LH, 2, (uint64_t)(int64_t)(int16_t)v_)
	LOAD(LW, 4, sext32(v_))
	LOAD(LD, 8, v_)
	LOAD(LBU, 1, v_)
	LOAD(LHU, 2, v_)
	LOAD(LWU, 4, v_)
	STORE(SB, 1, RS2)
	STORE(SH, 2, RS2)
	STORE(SW, 4, RS2)
	STORE(SD, 8, RS2)

h_FLW : {
	uint64_t v;

	if (unlikely(fs_off(cpu)))
		goto illegal;
	if (unlikely(rv64_mmu_load(cpu, RS1 + IMM, 4, &v)))
		goto exc;
	cpu->f[op->rd] = v | 0xffffffff00000000ULL; /* NaN-box, unpriv 20191213 §12.2 */
	cpu->mstatus |= MS_FS;
	NEXT();
}
h_FLD : {
	uint64_t v;

	if (unlikely(fs_off(cpu)))
		goto illegal;
	if (unlikely(rv64_mmu_load(cpu, RS1 + IMM, 8, &v)))
		goto exc;
	cpu->f[op->rd] = v;
	cpu->mstatus |= MS_FS;
	NEXT();
}
h_FSW:
	if (unlikely(fs_off(cpu)))
		goto illegal;
	goto h_FSW_go;
h_FSD:
	if (unlikely(fs_off(cpu)))
		goto illegal;
	goto h_FSD_go;
	STORE_(FSW_go, 4, cpu->f[op->rs2], op->len)
	STORE_(FSD_go, 8, cpu->f[op->rs2], op->len)

	/* Integer computation. */
	ALU(ADDI, RS1 + IMM)
	ALU(SLTI, (int64_t)RS1 < (int64_t)IMM)
	ALU(SLTIU, RS1 < IMM)
	ALU(XORI, RS1 ^ IMM)
	ALU(ORI, RS1 | IMM)
	ALU(ANDI, RS1 & IMM)
	ALU(SLLI, RS1 << op->imm)
	ALU(SRLI, RS1 >> op->imm)
	ALU(SRAI, (uint64_t)((int64_t)RS1 >> op->imm))
	ALU(ADDIW, sext32(RS1 + IMM))
	ALU(SLLIW, sext32((uint32_t)RS1 << op->imm))
	ALU(SRLIW, sext32((uint32_t)RS1 >> op->imm))
	ALU(SRAIW, (uint64_t)(int64_t)((int32_t)RS1 >> op->imm))
	ALU(ADD, RS1 + RS2)
	ALU(SUB, RS1 - RS2)
	ALU(SLL, RS1 << (RS2 & 63))
	ALU(SLT, (int64_t)RS1 < (int64_t)RS2)
	ALU(SLTU, RS1 < RS2)
	ALU(XOR, RS1 ^ RS2)
	ALU(SRL, RS1 >> (RS2 & 63))
	ALU(SRA, (uint64_t)((int64_t)RS1 >> (RS2 & 63)))
	ALU(OR, RS1 | RS2)
	ALU(AND, RS1 & RS2)
	ALU(ADDW, sext32(RS1 + RS2))
	ALU(SUBW, sext32(RS1 - RS2))
	ALU(SLLW, sext32((uint32_t)RS1 << (RS2 & 31)))
	ALU(SRLW, sext32((uint32_t)RS1 >> (RS2 & 31)))
	ALU(SRAW, (uint64_t)(int64_t)((int32_t)RS1 >> (RS2 & 31)))
	ALU(MUL, RS1 * RS2)
	ALU(MULH, (uint64_t)(((__int128)(int64_t)RS1 * (__int128)(int64_t)RS2) >> 64))
	ALU(MULHSU, (uint64_t)(((__int128)(int64_t)RS1 * (__int128)RS2) >> 64))
	ALU(MULHU, (uint64_t)(((unsigned __int128)RS1 * RS2) >> 64))
	ALU(DIV, do_div((int64_t)RS1, (int64_t)RS2))
	ALU(DIVU, RS2 ? RS1 / RS2 : UINT64_MAX)
	ALU(REM, do_rem((int64_t)RS1, (int64_t)RS2))
	ALU(REMU, RS2 ? RS1 % RS2 : RS1)
	ALU(MULW, sext32((uint32_t)RS1 * (uint32_t)RS2))
	ALU(DIVW, do_divw((int32_t)RS1, (int32_t)RS2))
	ALU(DIVUW, (uint32_t)RS2 ? sext32((uint32_t)RS1 / (uint32_t)RS2) : UINT64_MAX)
	ALU(REMW, do_remw((int32_t)RS1, (int32_t)RS2))
	ALU(REMUW, (uint32_t)RS2 ? sext32((uint32_t)RS1 % (uint32_t)RS2) : sext32(RS1))
	ALU(SH1ADD, (RS1 << 1) + RS2)
	ALU(SH2ADD, (RS1 << 2) + RS2)
	ALU(SH3ADD, (RS1 << 3) + RS2)
	ALU(ADDUW, (uint64_t)(uint32_t)RS1 + RS2)
h_OPG : {
	bool ok = true; /* validated when decoded */

	RD = op_reg((uint32_t)op->imm, RS1, RS2, &ok);
	NEXT();
}
h_OP32G : {
	bool ok = true;

	RD = op_reg32((uint32_t)op->imm, RS1, RS2, &ok);
	NEXT();
}
h_OPIMMG : {
	bool ok = true;

	RD = op_imm_shift((uint32_t)op->imm, RS1, &ok);
	NEXT();
}
h_OPIMM32G : {
	bool ok = true;

	RD = op_imm32((uint32_t)op->imm, RS1, &ok);
	NEXT();
}

code_written: /* a store of the op at `op` rewrote decoded code: go on from a fresh lookup */
	stamp++;
	n++;
	pc = PC() + ((uint64_t)op->len << 1);
	goto lookup;

step : { /* one instruction at pc without the cache (straddling, uncacheable, misaligned) */
	uint32_t raw, insn;
	unsigned len;

	cpu->pc = pc;
	if (unlikely(rv64_mmu_fetch(cpu, pc, &raw)))
		goto trap;
	len = (raw & 3) == 3 ? 4 : 2;
	insn = len == 4 ? raw : rvc_table[raw & 0xffff];
	if (unlikely(!insn)) {
		cpu->exc_cause = RV64_EXC_ILLEGAL_INSN;
		cpu->exc_tval = raw;
		goto trap;
	}
	rv64_retire(cpu, n - retired);
	retired = n;
	r = interp_one(cpu, insn, raw, pc, len);
	goto stepped;
}

stepped: /* after interp_one() of the instruction at cpu->pc: r says what happened */
	stamp++;
	if (r == STEP_EXC)
		goto trap;
	if (r == RV64_STOP_SBI) {
		stop = r;
		goto out;
	}
	n++;
	if (r == RV64_STOP_EVENT || r == RV64_STOP_WFI) {
		stop = r;
		goto out;
	}
	pc = cpu->pc;
	goto lookup;

illegal: /* the op at `op`: tval is the instruction as fetched (priv 1.12 §3.1.16) */
	{
		uint32_t raw = 0;

		pc = PC();
		if (rv64_mmu_fetch(cpu, pc, &raw))
			raw = 0;
		cpu->exc_cause = RV64_EXC_ILLEGAL_INSN;
		cpu->exc_tval = raw;
		goto exc_pc;
	}
exc: /* the op at `op` raised cpu->exc_cause */
	pc = PC();
exc_pc:
	cpu->pc = pc;
trap:
	stamp++;
	rv64_trap(cpu, cpu->exc_cause, cpu->exc_tval);
	spent++;
	pc = cpu->pc;
	goto lookup;

out_op:
	pc = PC();
out_pc:
	cpu->pc = pc;
out:
	RV64_STAT_ADD(cpu, tlb_hits, hits);
	rv64_retire(cpu, n - retired);
	rv64_code_sync(cpu);
	__atomic_store_n(&cpu->in_exec, 0, __ATOMIC_SEQ_CST);
	return stop;

#undef PC
#undef DISPATCH
#undef NEXT
#undef IMM
#undef RD
#undef RS1
#undef RS2
#undef JUMP_NEAR
#undef JUMP_TO
#undef GOTO_PC
#undef BRANCH
#undef ALU
#undef ALU_
#undef LOAD
#undef LOAD_
#undef STORE
#undef STORE_
#undef STEP
}
