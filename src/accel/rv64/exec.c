/*
 * exec.c - decode and execute RV64IMAFDC + Zicsr, Zifencei, Zba, Zbb, Zbs (unpriv 20191213,
 * bitmanip 1.0.0) and the privileged instructions (priv 1.12 §3.3).
 *
 * The loop runs on the vCPU thread. Compressed instructions are expanded to their 32-bit
 * equivalents (unpriv 20191213 §16.8 tables) and run through the same switch. x[0] is forced
 * back to zero after every instruction, so handlers write rd unconditionally.
 */
#include "accel/rv64/cpu.h"
#include "accel/rv64/mmu.h"
#include "kumo/base.h"

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
	return (uint64_t)(((int64_t)(int32_t)insn >> 25 << 5) | ((insn >> 7) & 31));
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

int rv64_exec(struct rv64_cpu *cpu, uint64_t budget)
{
	uint64_t *x = cpu->x;
	uint64_t n = 0; /* retired, not yet added to instret */
	uint64_t steps = 0;
	int stop = RV64_STOP_BUDGET;

	/* Traps count against the budget too, so a trap loop still returns to the run loop. */
	while (steps++ < budget) {
		uint64_t pc = cpu->pc, npc, a, v;
		uint32_t raw = 0, insn;
		unsigned rd, rs1, rs2, f3;
		bool ok = true;

		n++;
		if (unlikely(rv64_mmu_fetch(cpu, pc, &raw)))
			goto exception;
		if (likely((raw & 3) == 3)) {
			insn = raw;
			npc = pc + 4;
		} else {
			insn = rvc_table[raw & 0xffff];
			npc = pc + 2;
			if (unlikely(!insn))
				goto illegal;
		}
		rd = BITS(insn, 11, 7);
		rs1 = BITS(insn, 19, 15);
		rs2 = BITS(insn, 24, 20);
		f3 = BITS(insn, 14, 12);

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
			break;
		case 0x67: /* JALR */
			if (f3)
				goto illegal;
			a = (x[rs1] + imm_i(insn)) & ~1ULL;
			x[rd] = npc;
			npc = a;
			break;
		case 0x63: /* BRANCH */
			if (f3 == 2 || f3 == 3)
				goto illegal;
			if (branch_taken(f3, x[rs1], x[rs2]))
				npc = pc + imm_b(insn);
			break;
		case 0x03: /* LOAD */
			a = x[rs1] + imm_i(insn);
			switch (f3) {
			case 0:
				if (rv64_mmu_load(cpu, a, 1, &v))
					goto exception;
				v = (uint64_t)(int64_t)(int8_t)v;
				break;
			case 1:
				if (rv64_mmu_load(cpu, a, 2, &v))
					goto exception;
				v = (uint64_t)(int64_t)(int16_t)v;
				break;
			case 2:
				if (rv64_mmu_load(cpu, a, 4, &v))
					goto exception;
				v = sext32(v);
				break;
			case 3:
				if (rv64_mmu_load(cpu, a, 8, &v))
					goto exception;
				break;
			case 4:
				if (rv64_mmu_load(cpu, a, 1, &v))
					goto exception;
				break;
			case 5:
				if (rv64_mmu_load(cpu, a, 2, &v))
					goto exception;
				break;
			case 6:
				if (rv64_mmu_load(cpu, a, 4, &v))
					goto exception;
				break;
			default:
				goto illegal;
			}
			x[rd] = v;
			break;
		case 0x23: /* STORE */
			a = x[rs1] + imm_s(insn);
			switch (f3) {
			case 0:
				if (rv64_mmu_store(cpu, a, 1, x[rs2]))
					goto exception;
				break;
			case 1:
				if (rv64_mmu_store(cpu, a, 2, x[rs2]))
					goto exception;
				break;
			case 2:
				if (rv64_mmu_store(cpu, a, 4, x[rs2]))
					goto exception;
				break;
			case 3:
				if (rv64_mmu_store(cpu, a, 8, x[rs2]))
					goto exception;
				break;
			default:
				goto illegal;
			}
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
				 * FENCE. Loads and stores are plain host accesses; on a TSO host
				 * only store->load ordering needs a real barrier.
				 */
#if defined(__x86_64__) || defined(__i386__)
				if ((insn & (1u << 24)) && (insn & (1u << 21)))
					__atomic_thread_fence(__ATOMIC_SEQ_CST);
#else
				__atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
				break;
			}
			if (f3 == 1) { /* FENCE.I: no decoded state to drop yet */
				cpu->pc = npc;
				stop = RV64_STOP_EVENT;
				goto out;
			}
			goto illegal;
		case 0x2f: /* AMO */
			if (exec_amo(cpu, insn, rd, rs1, rs2)) {
				if (cpu->exc_cause == RV64_EXC_ILLEGAL_INSN)
					goto illegal;
				goto exception;
			}
			break;
		case 0x07: /* LOAD-FP */
			if (fs_off(cpu) || (f3 != 2 && f3 != 3))
				goto illegal;
			a = x[rs1] + imm_i(insn);
			if (f3 == 2) {
				if (rv64_mmu_load(cpu, a, 4, &v))
					goto exception;
				v |= 0xffffffff00000000ULL; /* NaN-box, unpriv 20191213 §12.2 */
			} else if (rv64_mmu_load(cpu, a, 8, &v)) {
				goto exception;
			}
			cpu->f[rd] = v;
			cpu->mstatus |= MS_FS;
			break;
		case 0x27: /* STORE-FP */
			if (fs_off(cpu) || (f3 != 2 && f3 != 3))
				goto illegal;
			a = x[rs1] + imm_s(insn);
			if (rv64_mmu_store(cpu, a, f3 == 2 ? 4 : 8, cpu->f[rs2]))
				goto exception;
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
				goto exception;
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
						n--;
						stop = RV64_STOP_SBI;
						goto out;
					}
					cpu->exc_cause = RV64_EXC_ECALL_U + cpu->priv;
					cpu->exc_tval = 0;
					goto exception;
				case 0x00100073: /* EBREAK: tval = pc (priv 1.12 §3.1.16) */
					cpu->exc_cause = RV64_EXC_BREAKPOINT;
					cpu->exc_tval = pc;
					goto exception;
				case 0x30200073: /* MRET */
					if (rv64_mret(cpu))
						goto illegal;
					stop = RV64_STOP_EVENT;
					goto out;
				case 0x10200073: /* SRET */
					if (rv64_sret(cpu))
						goto illegal;
					stop = RV64_STOP_EVENT;
					goto out;
				case 0x10500073: /* WFI, priv 1.12 §3.1.6.5 */
					if (cpu->priv == RV64_PRIV_U ||
					    (cpu->priv == RV64_PRIV_S && (cpu->mstatus & MS_TW)))
						goto illegal;
					cpu->pc = npc;
					stop = wfi_wakes(cpu) ? RV64_STOP_EVENT : RV64_STOP_WFI;
					goto out;
				}
				if ((insn & 0xfe007fffu) == 0x12000073u) { /* SFENCE.VMA */
					if (cpu->priv == RV64_PRIV_U ||
					    (cpu->priv == RV64_PRIV_S && (cpu->mstatus & MS_TVM)))
						goto illegal;
					if (rs1)
						rv64_tlb_flush_page(cpu, x[rs1]);
					else
						rv64_tlb_flush(cpu);
					cpu->pc = npc;
					stop = RV64_STOP_EVENT;
					goto out;
				}
				goto illegal;
			}
			if (f3 == 4)
				goto illegal;
			{
				unsigned csr = insn >> 20, op = f3 & 3;
				uint64_t src = (f3 & 4) ? rs1 : x[rs1];
				bool wr = op == 1 || rs1 != 0;

				/* Counters read inside the block see the instructions before. */
				rv64_retire(cpu, n - 1);
				n = 1;
				if (rv64_csr_insn(cpu, csr, op, src, rd != 0, wr, &v))
					goto illegal;
				x[rd] = v;
				if (wr) {
					x[0] = 0;
					cpu->pc = npc;
					stop = RV64_STOP_EVENT;
					goto out;
				}
			}
			break;
		default:
			goto illegal;
		}
		x[0] = 0;
		cpu->pc = npc;
		continue;
	illegal:
		cpu->exc_cause = RV64_EXC_ILLEGAL_INSN;
		cpu->exc_tval = raw;
	exception:
		x[0] = 0;
		n--;
		rv64_trap(cpu, cpu->exc_cause, cpu->exc_tval);
	}
out:
	rv64_retire(cpu, n);
	return stop;
}
