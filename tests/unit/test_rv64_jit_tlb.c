/*
 * test_rv64_jit_tlb.c - the inline TLB fast path of translated loads and stores (jit.c
 * mem_fast(), the tag test of mmu.h rv64_tlb_match()). Each test runs the same program on a
 * machine with KUMO_JIT=1 and one with KUMO_JIT=0 and compares registers, trap CSRs,
 * minstret and memory; rv64_mmu_load_slow/store_slow are wrapped (tests/unit/jit_tlb.mk) to
 * count the accesses that left the fast path:
 *   - loads and stores of every size through many base registers at once (so that the block
 *     keeps them in different host registers), offsets 0 and not, around a page boundary:
 *     once the TLB is warm, no aligned access may take the slow path, and all must agree;
 *   - misaligned and page-crossing accesses: they must miss and still be exact;
 *   - S-mode under Sv39: one translated block reads a U page, which must fault while
 *     sstatus.SUM is clear and succeed while it is set, with the TLB entry present all along;
 *   - a remapped page: after the PTE changes and SFENCE.VMA runs, the same translated block
 *     must read the new page, never the stale host address;
 *   - tiered translation as the VMM runs it (KUMO_JIT unset): code run once stays
 *     interpreted, its second run or a loop's second round is translated.
 * Programs end in ECALL, which leaves vcpu_run() from M-mode (S-mode ECALLs trap to an mtvec
 * that holds one). On hosts without the translator both machines interpret and the checks
 * that need translated code are skipped.
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
#include "accel/rv64/mmu.h"
#include "accel_harness.h"
#include "kumo/accel.h"

#define RAM_BASE 0x80000000ULL
#define RAM_SIZE (1ULL << 20)
#define TRAP (RAM_BASE + 0x800)
#define CODE (RAM_BASE + 0x1000)
#define CODE_MAX 0x3000
#define DATA (RAM_BASE + 0x10000) /* two data pages: DATA - 4096 .. DATA + 4096 */
#define DATA_LO (DATA - 4096)
#define PT_ROOT (RAM_BASE + 0x20000) /* Sv39 tables for the S-mode tests */
#define PT_L1 (RAM_BASE + 0x21000)
#define PT_L0 (RAM_BASE + 0x22000)
#define PAGE_A (RAM_BASE + 0x30000)
#define PAGE_B (RAM_BASE + 0x31000)
#define VA_U 0x1000ULL /* a U page (PAGE_A, later PAGE_B) */

#define ECALL 0x00000073u
#define SFENCE_VMA 0x12000073u
#define CSR_MSTATUS 0x300
#define CSR_MTVEC 0x305
#define CSR_MEPC 0x341
#define CSR_MCAUSE 0x342
#define CSR_MTVAL 0x343
#define CSR_MINSTRET 0xb02
#define CSR_SATP 0x180
#define CSR_PMPCFG0 0x3a0
#define CSR_PMPADDR0 0x3b0
#define MSTATUS_SUM (1ULL << 18) /* priv 1.12 §3.1.6.3 */
#define PTE_V 0x01
#define PTE_R 0x02
#define PTE_W 0x04
#define PTE_X 0x08
#define PTE_U 0x10
#define PTE_A 0x40
#define PTE_D 0x80

enum { LOOP = 31 };

/* Slow-path accesses per hart (the wrappers below), indexed by the cpu pointer's machine. */
static const void *slow_cpu[2];
static unsigned slow_count[2];

int __real_rv64_mmu_load_slow(struct rv64_cpu *cpu, uint64_t va, unsigned size, uint64_t *val);
int __real_rv64_mmu_store_slow(struct rv64_cpu *cpu, uint64_t va, unsigned size, uint64_t val);
int __wrap_rv64_mmu_load_slow(struct rv64_cpu *cpu, uint64_t va, unsigned size, uint64_t *val);
int __wrap_rv64_mmu_store_slow(struct rv64_cpu *cpu, uint64_t va, unsigned size, uint64_t val);

static void count_slow(const struct rv64_cpu *cpu)
{
	for (unsigned k = 0; k < 2; k++)
		if (slow_cpu[k] == cpu)
			slow_count[k]++;
}

int __wrap_rv64_mmu_load_slow(struct rv64_cpu *cpu, uint64_t va, unsigned size, uint64_t *val)
{
	count_slow(cpu);
	return __real_rv64_mmu_load_slow(cpu, va, size, val);
}

int __wrap_rv64_mmu_store_slow(struct rv64_cpu *cpu, uint64_t va, unsigned size, uint64_t val)
{
	count_slow(cpu);
	return __real_rv64_mmu_store_slow(cpu, va, size, val);
}

struct fx {
	struct accel_harness m[2]; /* [0] translated, [1] interpreted */
	uint8_t code[CODE_MAX];
	unsigned len;
	uint64_t rng;
};

/* The first machine's vCPU is created as `jit` says, the second's with the interpreter alone. */
static int setup_mode(void **state, enum ah_jit jit)
{
	const struct ah_config c = {.ram_base = RAM_BASE, .ram_size = RAM_SIZE, .ncpus = 1,
				    .ecall_exit_mask = 1u << 3, /* M-mode ECALLs exit */
				    .jit = jit};
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	ah_init_pair(f->m, &c);
	slow_cpu[0] = f->m[0].cpu[0];
	slow_cpu[1] = f->m[1].cpu[0];
	f->rng = 0x2545f4914f6cdd1dULL;
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_mode(state, AH_JIT_ON);
}

/* The translator as the VMM runs it (KUMO_JIT unset): tiered. */
static int setup_tiered(void **state)
{
	unsetenv("KUMO_JIT");
	return setup_mode(state, AH_JIT_ENV);
}

static int teardown(void **state)
{
	struct fx *f = *state;

	slow_cpu[0] = slow_cpu[1] = NULL;
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

/* Copies the program, the trap ECALL and `data` (both data pages) into both machines. */
static void load_code(struct fx *f, const uint8_t *data)
{
	for (unsigned k = 0; k < 2; k++) {
		struct accel_harness *m = &f->m[k];

		memcpy(m->ram + (CODE - RAM_BASE), f->code, f->len);
		memcpy(m->ram + (TRAP - RAM_BASE), &(uint32_t){ECALL}, 4);
		if (data)
			memcpy(m->ram + (DATA_LO - RAM_BASE), data, 8192);
		ah_set(m, 0, ACCEL_REG_CSR(CSR_MTVEC), TRAP);
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
	static const unsigned csrs[] = {CSR_MEPC, CSR_MCAUSE, CSR_MTVAL, CSR_MINSTRET};
	struct accel_harness *a = &f->m[0], *b = &f->m[1];

	for (unsigned i = 0; i < 32; i++) {
		uint64_t x = ah_get(a, 0, ACCEL_REG_X(i)), y = ah_get(b, 0, ACCEL_REG_X(i));

		if (x != y)
			fail_msg("round %u: x%u: translated %#llx, interpreted %#llx", round, i,
				 (unsigned long long)x, (unsigned long long)y);
	}
	assert_int_equal(ah_get(a, 0, ACCEL_REG_PC), ah_get(b, 0, ACCEL_REG_PC));
	for (unsigned i = 0; i < sizeof(csrs) / sizeof(csrs[0]); i++)
		if (ah_get(a, 0, ACCEL_REG_CSR(csrs[i])) != ah_get(b, 0, ACCEL_REG_CSR(csrs[i])))
			fail_msg("round %u: csr %#x differs", round, csrs[i]);
	assert_memory_equal(a->ram + (DATA_LO - RAM_BASE), b->ram + (DATA_LO - RAM_BASE), 8192);
	assert_memory_equal(a->ram + (PAGE_A - RAM_BASE), b->ram + (PAGE_A - RAM_BASE), 8192);
}

static bool translated(struct fx *f)
{
#ifdef RV64_JIT
	struct rv64_cpu *cpu = (struct rv64_cpu *)f->m[0].cpu[0];

	return cpu->jit && cpu->jit->translated > 0;
#else
	(void)f;
	return false;
#endif
}

/* On x86-64 hosts the first machine must really have run translated code. */
static void check_translated(struct fx *f)
{
#ifdef RV64_JIT
	assert_true(translated(f));
#else
	(void)f;
#endif
}

/*
 * A loop of `n` loads and stores through the base registers bases[0..nb) (each pointing
 * somewhere in the two data pages, 8-aligned, set by the caller), aligned or not, then ECALL.
 * Loads write only registers that are not bases.
 */
static void gen_accesses(struct fx *f, const unsigned *bases, unsigned nb, unsigned n,
			 bool aligned)
{
	unsigned top;

	f->len = 0;
	emit32(f, i_type(0x13, LOOP, 0, 0, 3)); /* li x31, 3 */
	top = f->len;
	for (unsigned i = 0; i < n; i++) {
		unsigned b = bases[pick(f, nb)], f3, size, rd;
		int32_t off = pick(f, 3) ? (int32_t)pick(f, 256) - 128 : 0;
		bool is_bases;

		do {
			rd = 1 + pick(f, 30);
			is_bases = false;
			for (unsigned k = 0; k < nb; k++)
				is_bases |= bases[k] == rd;
		} while (is_bases);
		if (pick(f, 2)) {
			f3 = pick(f, 7);
			size = 1u << (f3 & 3);
			if (aligned)
				off &= ~(int32_t)(size - 1);
			else if (size > 1 && !(off & (int32_t)(size - 1)))
				off |= 1;
			emit32(f, i_type(0x03, rd, f3, b, off));
		} else {
			f3 = pick(f, 4);
			size = 1u << f3;
			if (aligned)
				off &= ~(int32_t)(size - 1);
			else if (size > 1 && !(off & (int32_t)(size - 1)))
				off |= 1;
			emit32(f, s_type(f3, b, 1 + pick(f, 30), off));
		}
	}
	emit32(f, i_type(0x13, LOOP, 0, LOOP, -1));
	emit32(f, b_type(1, LOOP, 0, (int32_t)top - (int32_t)f->len)); /* bnez x31, top */
	emit32(f, ECALL);
}

/* Registers: random values, bases = 8-aligned addresses within 256 bytes of the page boundary. */
static void set_regs(struct fx *f, const unsigned *bases, unsigned nb)
{
	uint64_t regs[32];

	for (unsigned i = 1; i < 32; i++)
		regs[i] = rnd(f);
	for (unsigned k = 0; k < nb; k++)
		regs[bases[k]] = DATA - 256 + 8 * pick(f, 64);
	for (unsigned k = 0; k < 2; k++) {
		for (unsigned i = 1; i < 32; i++)
			ah_set(&f->m[k], 0, ACCEL_REG_X(i), regs[i]);
		ah_set(&f->m[k], 0, ACCEL_REG_PC, CODE);
	}
}

static void pick_bases(struct fx *f, unsigned *bases, unsigned nb)
{
	for (unsigned k = 0; k < nb; k++) {
		bool dup;

		do {
			bases[k] = 1 + pick(f, 30);
			dup = false;
			for (unsigned i = 0; i < k; i++)
				dup |= bases[i] == bases[k];
		} while (dup);
	}
}

static void random_data(struct fx *f, uint8_t *data)
{
	for (unsigned i = 0; i < 8192; i += 8) {
		uint64_t v = rnd(f);

		memcpy(data + i, &v, 8);
	}
}

/* Aligned accesses through up to 12 base registers: exact, and on a warm TLB never slow. */
static void test_aligned_every_base(void **state)
{
	struct fx *f = *state;
	static uint8_t data[8192];

	for (unsigned round = 0; round < 60; round++) {
		unsigned bases[12], nb = 1 + pick(f, 12);

		pick_bases(f, bases, nb);
		gen_accesses(f, bases, nb, 4 + pick(f, 40), true);
		random_data(f, data);
		load_code(f, data);
		set_regs(f, bases, nb);
		slow_count[0] = 0;
		run_both(f);
		compare(f, round);
		if (round == 0) /* cold: the first access of a page fills the TLB (the wrap works) */
			assert_true(slow_count[0] > 0);
		/* Again with the TLB filled and the block translated: every access hits. */
		set_regs(f, bases, nb);
		slow_count[0] = slow_count[1] = 0;
		run_both(f);
		compare(f, round);
		if (translated(f) && slow_count[0])
			fail_msg("round %u: %u aligned accesses left the fast path on a warm TLB",
				 round, slow_count[0]);
	}
	check_translated(f);
}

/* Misaligned accesses (some crossing the page boundary) miss and still give exact results. */
static void test_misaligned(void **state)
{
	struct fx *f = *state;
	static uint8_t data[8192];

	for (unsigned round = 0; round < 60; round++) {
		unsigned bases[12], nb = 1 + pick(f, 12);

		pick_bases(f, bases, nb);
		gen_accesses(f, bases, nb, 4 + pick(f, 40), false);
		random_data(f, data);
		load_code(f, data);
		set_regs(f, bases, nb);
		slow_count[0] = 0;
		run_both(f);
		compare(f, round);
		if (translated(f))
			assert_true(slow_count[0] > 0);
	}
	check_translated(f);
}

/*
 * S-mode with Sv39: the gigapage of RAM is an S page mapped 1:1 (code, trap vector, tables),
 * VA_U a U page on `phys`. PMP entry 0 grants everything to S and U.
 */
static void smode_setup(struct fx *f, uint64_t phys)
{
	for (unsigned k = 0; k < 2; k++) {
		struct accel_harness *m = &f->m[k];
		uint64_t *root = (uint64_t *)(m->ram + (PT_ROOT - RAM_BASE));
		uint64_t *l1 = (uint64_t *)(m->ram + (PT_L1 - RAM_BASE));
		uint64_t *l0 = (uint64_t *)(m->ram + (PT_L0 - RAM_BASE));

		memset(root, 0, 3 * 4096);
		root[2] = (RAM_BASE >> 12) << 10 | PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D;
		root[0] = (PT_L1 >> 12) << 10 | PTE_V;
		l1[0] = (PT_L0 >> 12) << 10 | PTE_V;
		l0[VA_U >> 12] = (phys >> 12) << 10 | PTE_V | PTE_R | PTE_W | PTE_U | PTE_A | PTE_D;
		ah_set(m, 0, ACCEL_REG_CSR(CSR_PMPADDR0), (1ULL << 54) - 1);
		ah_set(m, 0, ACCEL_REG_CSR(CSR_PMPCFG0), 0x1f); /* NAPOT, RWX */
		ah_set(m, 0, ACCEL_REG_CSR(CSR_SATP), 8ULL << 60 | PT_ROOT >> 12);
	}
}

/* Enters S-mode at CODE with mstatus = `mstatus`. */
static void smode_enter(struct fx *f, uint64_t mstatus)
{
	for (unsigned k = 0; k < 2; k++) {
		ah_set(&f->m[k], 0, ACCEL_REG_PRIV, 3);
		ah_set(&f->m[k], 0, ACCEL_REG_CSR(CSR_MSTATUS), mstatus);
		ah_set(&f->m[k], 0, ACCEL_REG_PRIV, 1);
		ah_set(&f->m[k], 0, ACCEL_REG_PC, CODE);
		ah_set(&f->m[k], 0, ACCEL_REG_X(9), VA_U);
	}
}

/*
 * [SFENCE.VMA,] a loop of loads from the U page (x9 = VA_U) and a store to it, then ECALL:
 * mcause 9 (from S) when it ran, 13 with mtval = the address when the first load faulted.
 */
static void gen_u_block(struct fx *f, bool sfence)
{
	unsigned top;

	f->len = 0;
	if (sfence)
		emit32(f, SFENCE_VMA);
	emit32(f, i_type(0x13, LOOP, 0, 0, 4));
	top = f->len;
	emit32(f, i_type(0x03, 10, 3, 9, 16));   /* ld a0, 16(x9) */
	emit32(f, i_type(0x03, 11, 2, 9, 0));    /* lw a1, 0(x9) */
	emit32(f, i_type(0x13, 12, 0, 12, 1));   /* addi a2, a2, 1 */
	emit32(f, s_type(3, 9, 12, 24));         /* sd a2, 24(x9) */
	emit32(f, i_type(0x13, LOOP, 0, LOOP, -1));
	emit32(f, b_type(1, LOOP, 0, (int32_t)top - (int32_t)f->len));
	emit32(f, ECALL);
}

static void test_sum_toggle(void **state)
{
	struct fx *f = *state;

	gen_u_block(f, false);
	load_code(f, NULL);
	for (unsigned k = 0; k < 2; k++) {
		memset(f->m[k].ram + (PAGE_A - RAM_BASE), 0, 4096);
		memcpy(f->m[k].ram + (PAGE_A - RAM_BASE) + 16, &(uint64_t){0x1122334455667788ULL}, 8);
	}
	smode_setup(f, PAGE_A);
	for (unsigned round = 0; round < 8; round++) {
		bool sum = round % 2 == 0;

		smode_enter(f, sum ? MSTATUS_SUM : 0);
		for (unsigned k = 0; k < 2; k++)
			ah_set(&f->m[k], 0, ACCEL_REG_X(10), 0);
		run_both(f);
		compare(f, round);
		if (sum) {
			assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_CSR(CSR_MCAUSE)), 9);
			assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_X(10)), 0x1122334455667788ULL);
		} else {
			assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_CSR(CSR_MCAUSE)), 13);
			assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_CSR(CSR_MTVAL)), VA_U + 16);
			assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_X(10)), 0);
		}
	}
	check_translated(f);
}

/* The PTE of VA_U moves from PAGE_A to PAGE_B; SFENCE.VMA, then the same block reads PAGE_B. */
static void test_remap(void **state)
{
	struct fx *f = *state;

	gen_u_block(f, true);
	load_code(f, NULL);
	for (unsigned k = 0; k < 2; k++) {
		memset(f->m[k].ram + (PAGE_A - RAM_BASE), 0, 8192);
		memcpy(f->m[k].ram + (PAGE_A - RAM_BASE) + 16, &(uint64_t){0xaaaa}, 8);
		memcpy(f->m[k].ram + (PAGE_B - RAM_BASE) + 16, &(uint64_t){0xbbbb}, 8);
	}
	smode_setup(f, PAGE_A);
	for (unsigned round = 0; round < 6; round++) {
		bool b = round % 2 == 1;

		for (unsigned k = 0; k < 2; k++) {
			uint64_t *l0 = (uint64_t *)(f->m[k].ram + (PT_L0 - RAM_BASE));

			l0[VA_U >> 12] = ((b ? PAGE_B : PAGE_A) >> 12) << 10 | PTE_V | PTE_R |
					 PTE_W | PTE_U | PTE_A | PTE_D;
		}
		smode_enter(f, MSTATUS_SUM);
		run_both(f);
		compare(f, round);
		assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_CSR(CSR_MCAUSE)), 9);
		assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_X(10)), b ? 0xbbbb : 0xaaaa);
	}
	check_translated(f);
}

static uint64_t blocks(struct fx *f)
{
#ifdef RV64_JIT
	return ((struct rv64_cpu *)f->m[0].cpu[0])->jit->translated;
#else
	(void)f;
	return 0;
#endif
}

/* JAL ra, to the byte offset `to` of the program from where it is being emitted. */
static void emit_jal(struct fx *f, unsigned to)
{
	uint32_t i = (uint32_t)((int32_t)to - (int32_t)f->len);

	emit32(f, ((i >> 20) & 1) << 31 | ((i >> 1) & 0x3ff) << 21 | ((i >> 11) & 1) << 20 |
			  ((i >> 12) & 0xff) << 12 | 1u << 7 | 0x6f);
}

/*
 * Tiered translation (exec.c h_WARM, as the VMM runs it: KUMO_JIT unset): a function of
 * straight-line loads called once stays interpreted, called twice it is translated at the
 * second call; a loop is translated in its first run (its top arrives again). All exact.
 */
static void test_tiered(void **state)
{
	struct fx *f = *state;
	static uint8_t data[8192];
	unsigned bases[4] = {5, 6, 7, 28};
	uint64_t before;

	random_data(f, data);
	for (unsigned calls = 1; calls <= 2; calls++) {
		f->len = 0;
		for (unsigned c = 0; c < calls; c++)
			emit_jal(f, 4 * (calls + 1)); /* the function after the ECALL */
		emit32(f, ECALL);
		for (unsigned i = 0; i < 20; i++)
			emit32(f, i_type(0x03, 10 + (i & 7), 3, bases[i & 3], 8 * (int32_t)(i & 7)));
		emit32(f, i_type(0x67, 0, 0, 1, 0)); /* ret */
		load_code(f, data);
		set_regs(f, bases, 4);
		run_both(f);
		compare(f, calls);
#ifdef RV64_JIT
		if (calls == 1)
			assert_int_equal(blocks(f), 0);
		else
			assert_true(blocks(f) > 0);
#endif
	}
	before = blocks(f);
	gen_accesses(f, bases, 4, 12, true); /* a loop of 3 rounds */
	load_code(f, data);
	set_regs(f, bases, 4);
	run_both(f);
	compare(f, 3);
#ifdef RV64_JIT
	assert_true(blocks(f) > before);
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_aligned_every_base, setup, teardown),
		cmocka_unit_test_setup_teardown(test_misaligned, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sum_toggle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tiered, setup_tiered, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
