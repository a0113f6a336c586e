/*
 * jit_compare.h - the translator against the interpreter, for the unit tests of
 * src/accel/rv64/jit.c (test_rv64_jit_loops.c, test_rv64_jit_region.c): two one-hart machines
 * of accel_harness.h, [0] with the translator (AH_JIT_ON) and [1] with the interpreter alone
 * (AH_JIT_OFF), are given the same program and start state, run to the program's ECALL and
 * must end alike: x0..x31, pc, minstret, mcause and the DATA area.
 *
 *   static void test_x(void **state)
 *   {
 *           struct jc *f = *state;        (cmocka_unit_test_setup_teardown(.., jc_setup, jc_teardown))
 *
 *           jc_emit(f, lui(T0, 1));
 *           ...
 *           jc_emit(f, ECALL);
 *           jc_run_compare(f);            (jc_load, jc_run_both, jc_compare)
 *           jc_check_translated(f);
 *   }
 *
 * Layout (guest-physical): the code at CODE, DATA_SIZE bytes of patterned data at DATA (s0
 * points there), an ECALL at TRAP where mtvec points, so a trap also ends the run. Every other
 * register starts at 0x1000 * n + 5. The instruction encoders below cover what the tests
 * build programs from (unpriv 20191213 §2.2-§2.5).
 */
#ifndef KUMO_TEST_JIT_COMPARE_H
#define KUMO_TEST_JIT_COMPARE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "accel/rv64/cpu.h"
#include "accel/rv64/jit.h"
#include "accel_harness.h"

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

struct jc {
	struct accel_harness m[2]; /* [0] translated, [1] interpreted; one hart each */
	uint32_t code[256];
	unsigned len; /* words in code[] */
};

/* A cmocka setup: *state becomes a struct jc with both machines and no code. */
static inline int jc_setup(void **state)
{
	const struct ah_config c = {.ram_base = RAM_BASE, .ram_size = RAM_SIZE, .ncpus = 1,
				    .ecall_exit_mask = 1u << 3, /* M-mode ECALLs exit */
				    .jit = AH_JIT_ON};
	struct jc *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	ah_init_pair(f->m, &c);
	*state = f;
	return 0;
}

static inline int jc_teardown(void **state)
{
	struct jc *f = *state;

	ah_fini_pair(f->m);
	free(f);
	return 0;
}

static inline struct rv64_cpu *jc_cpu(struct accel_harness *m)
{
	return (struct rv64_cpu *)m->cpu[0];
}

/* Appends an instruction; returns its word index. */
static inline unsigned jc_emit(struct jc *f, uint32_t insn)
{
	assert_true(f->len < sizeof(f->code) / sizeof(f->code[0]));
	f->code[f->len] = insn;
	return f->len++;
}

static inline uint32_t i_type(unsigned op, unsigned rd, unsigned f3, unsigned rs1, int32_t imm)
{
	return ((uint32_t)imm & 0xfff) << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op;
}

static inline uint32_t r_type(unsigned op, unsigned rd, unsigned f3, unsigned rs1, unsigned rs2,
			      unsigned f7)
{
	return f7 << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op;
}

static inline uint32_t s_type(unsigned f3, unsigned rs1, unsigned rs2, int32_t imm)
{
	uint32_t i = (uint32_t)imm;

	return ((i >> 5) & 0x7f) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | (i & 31) << 7 | 0x23;
}

/* A branch at word `at` to word `to` (unpriv 20191213 §2.5). */
static inline uint32_t b_to(unsigned f3, unsigned rs1, unsigned rs2, unsigned at, unsigned to)
{
	uint32_t i = (uint32_t)(4 * ((int32_t)to - (int32_t)at));

	return ((i >> 12) & 1) << 31 | ((i >> 5) & 0x3f) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 |
	       ((i >> 1) & 0xf) << 8 | ((i >> 11) & 1) << 7 | 0x63;
}

/* A JAL at word `at` to word `to` (unpriv 20191213 §2.5). */
static inline uint32_t jal_to(unsigned rd, unsigned at, unsigned to)
{
	uint32_t i = (uint32_t)(4 * ((int32_t)to - (int32_t)at));

	return ((i >> 20) & 1) << 31 | ((i >> 1) & 0x3ff) << 21 | ((i >> 11) & 1) << 20 |
	       ((i >> 12) & 0xff) << 12 | rd << 7 | 0x6f;
}

static inline uint32_t lui(unsigned rd, uint32_t hi20)
{
	return hi20 << 12 | rd << 7 | 0x37;
}

/* The program and one start state in both machines. */
static inline void jc_load(struct jc *f)
{
	for (unsigned k = 0; k < 2; k++) {
		struct accel_harness *m = &f->m[k];
		uint8_t *data = ah_ptr(m, DATA, DATA_SIZE);

		memcpy(ah_ptr(m, CODE, 4 * f->len), f->code, 4 * f->len);
		for (unsigned i = 0; i < DATA_SIZE; i++)
			data[i] = (uint8_t)(i * 37 + 11);
		ah_put32(m, TRAP, ECALL);
		for (unsigned i = 1; i < 32; i++)
			ah_set(m, 0, ACCEL_REG_X(i), 0x1000 * i + 5);
		ah_set(m, 0, ACCEL_REG_X(S0), DATA);
		ah_set(m, 0, ACCEL_REG_CSR(CSR_MSTATUS), MSTATUS_FS_INITIAL);
		ah_set(m, 0, ACCEL_REG_CSR(CSR_MTVEC), TRAP);
		ah_set(m, 0, ACCEL_REG_PC, CODE);
	}
}

/* Runs both machines to their next exit, which must be an ECALL's. */
static inline void jc_run_both(struct jc *f)
{
	for (unsigned k = 0; k < 2; k++)
		assert_int_equal(ah_run(&f->m[k], 0), ACCEL_EXIT_SBI);
}

static inline void jc_compare(struct jc *f)
{
	struct accel_harness *a = &f->m[0], *b = &f->m[1];

	for (unsigned i = 0; i < 32; i++) {
		uint64_t x = ah_get(a, 0, ACCEL_REG_X(i)), y = ah_get(b, 0, ACCEL_REG_X(i));

		if (x != y)
			fail_msg("x%u: translated %#llx, interpreted %#llx", i,
				 (unsigned long long)x, (unsigned long long)y);
	}
	assert_int_equal(ah_get(a, 0, ACCEL_REG_PC), ah_get(b, 0, ACCEL_REG_PC));
	assert_int_equal(ah_get(a, 0, ACCEL_REG_CSR(CSR_MINSTRET)),
			 ah_get(b, 0, ACCEL_REG_CSR(CSR_MINSTRET)));
	assert_int_equal(ah_get(a, 0, ACCEL_REG_CSR(CSR_MCAUSE)),
			 ah_get(b, 0, ACCEL_REG_CSR(CSR_MCAUSE)));
	assert_memory_equal(ah_ptr(a, DATA, DATA_SIZE), ah_ptr(b, DATA, DATA_SIZE), DATA_SIZE);
}

static inline void jc_run_compare(struct jc *f)
{
	jc_load(f);
	jc_run_both(f);
	jc_compare(f);
}

/* The translating machine did translate (where the host has a translator). */
static inline void jc_check_translated(struct jc *f)
{
#ifdef RV64_JIT
	assert_non_null(jc_cpu(&f->m[0])->jit);
	assert_true(jc_cpu(&f->m[0])->jit->translated > 0);
#else
	(void)f;
#endif
}

#endif
