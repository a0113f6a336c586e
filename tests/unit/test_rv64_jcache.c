/*
 * test_rv64_jcache.c - the translator's jump cache (jit.h) must never send a hart to code the
 * dispatcher would not find itself. Every test calls a function on another page with JALR
 * (translated code then looks the target up in the jump cache) over and over, changes what
 * that call must reach, and checks the new code runs (or the right trap is taken):
 *   - a remapped virtual page: PTE rewrite + SFENCE.VMA (all, and one address), satp switch;
 *     SFENCE.VMA of a page without code keeps the entries;
 *   - privilege: U-mode must fault on an S page an S-mode call already went to;
 *   - rewritten code: a store of the hart itself, another hart's store + FENCE.I, a host write
 *     announced with rv64_code_ram_written(), and one the VMM makes before set_reg(PC);
 *   - exactness: minstret and results of a long call loop across many run slices, and a
 *     kick still stops a hart that only jumps between translated blocks (the budget check).
 * Programs leave vcpu_run() through ECALL (ecall_exit_mask covers U, S and M); the next
 * vcpu_run() goes on after it, so the jump cache survives between rounds (set_reg(PC) would
 * drop it). On hosts without the translator the same programs run interpreted.
 */
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

#include "accel/rv64/cpu.h"
#include "accel/rv64/jit.h"
#include "accel/rv64/mmu.h"
#include "kumo/accel.h"
#include "kumo/memmap.h"

#include "accel_harness.h"

#define RAM_BASE 0x80000000ULL
#define RAM_SIZE (1ULL << 20)
#define TRAP (RAM_BASE + 0x800)     /* M-mode trap vector: ECALL */
#define CALLER (RAM_BASE + 0x1000)  /* S page */
#define UCALLER (RAM_BASE + 0x3000) /* U page */
#define FN (RAM_BASE + 0x5000)      /* S page: the function called */
#define CODE1 (RAM_BASE + 0x8000)   /* hart 1's program */
#define PT1 (RAM_BASE + 0x10000)    /* root, L1, L0 of address space 1 */
#define PT2 (RAM_BASE + 0x13000)    /* and of address space 2 */
#define P1 (RAM_BASE + 0x30000)     /* two physical pages behind... */
#define P2 (RAM_BASE + 0x31000)
#define VPAGE (RAM_BASE + 0x180000) /* ...one virtual page (past the end of RAM) */

#define ECALL 0x00000073u
#define SRET 0x10200073u
#define FENCE_I 0x0000100fu
#define SFENCE_ALL 0x12000073u
#define CSR_SATP 0x180
#define CSR_SEPC 0x141
#define CSR_SSTATUS 0x100
#define CSR_MTVEC 0x305
#define CSR_MEPC 0x341
#define CSR_MCAUSE 0x342
#define CSR_MTVAL 0x343
#define CSR_MINSTRET 0xb02
#define SSTATUS_SPP 0x100
#define SV39 8ULL

enum { RA = 1, T0 = 5, T1 = 6, S0 = 8, S1 = 9, A0 = 10, S2 = 18, S3 = 19 };
enum { PTE_V = 1, PTE_R = 2, PTE_W = 4, PTE_X = 8, PTE_U = 16, PTE_A = 64, PTE_D = 128 };

static uint32_t addi(unsigned rd, unsigned rs1, int32_t imm)
{
	return ((uint32_t)imm << 20) | rs1 << 15 | rd << 7 | 0x13;
}

static uint32_t jalr(unsigned rd, unsigned rs1, int32_t imm)
{
	return ((uint32_t)imm << 20) | rs1 << 15 | rd << 7 | 0x67;
}

static uint32_t jal(unsigned rd, int32_t off)
{
	uint32_t i = (uint32_t)off;

	return ((i >> 20) & 1) << 31 | ((i >> 1) & 0x3ff) << 21 | ((i >> 11) & 1) << 20 |
	       ((i >> 12) & 0xff) << 12 | rd << 7 | 0x6f;
}

static uint32_t bne(unsigned rs1, unsigned rs2, int32_t off)
{
	uint32_t i = (uint32_t)off;

	return ((i >> 12) & 1) << 31 | ((i >> 5) & 0x3f) << 25 | rs2 << 20 | rs1 << 15 | 1 << 12 |
	       ((i >> 1) & 0xf) << 8 | ((i >> 11) & 1) << 7 | 0x63;
}

static uint32_t store(unsigned f3, unsigned rs2, unsigned rs1, int32_t imm)
{
	return ((uint32_t)(imm >> 5) & 0x7f) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 |
	       ((uint32_t)imm & 31) << 7 | 0x23;
}

/* csrrw/csrrc x0, csr, rs1 */
static uint32_t csrw(unsigned csr, unsigned rs1)
{
	return csr << 20 | rs1 << 15 | 1 << 12 | 0x73;
}

static uint32_t csrc(unsigned csr, unsigned rs1)
{
	return csr << 20 | rs1 << 15 | 3 << 12 | 0x73;
}

static uint32_t sfence_vma(unsigned rs1)
{
	return SFENCE_ALL | rs1 << 15;
}

static int setup(void **state)
{
	*state = ah_new(&(struct ah_config){.ram_base = RAM_BASE,
					    .ram_size = RAM_SIZE,
					    .ncpus = 2,
					    .ecall_exit_mask = 1u << 0 | 1u << 1 | 1u << 3,
					    .jit = AH_JIT_ON});
	return 0;
}

/* True when hart's jump cache holds a live entry for pc (always true without a translator). */
static bool jc_holds(struct accel_harness *f, unsigned hart, uint64_t pc)
{
#ifdef RV64_JIT
	struct rv64_cpu *cpu = (struct rv64_cpu *)f->cpu[hart];
	const struct rv64_jc *jc;

	if (!cpu->jit)
		return true;
	jc = cpu->jit->jc;
	for (unsigned i = 0; i < (1u << RV64_JC_BITS); i++)
		if (jc->e[i].pc == pc && (jc->e[i].tag & ~3ULL) == jc->gen + 4 * cpu->vm->code_inval)
			return true;
	return false;
#else
	(void)f;
	(void)hart;
	(void)pc;
	return true;
#endif
}

/* The function at `at`: a0 = v; return. */
static void put_fn(struct accel_harness *f, uint64_t at, int32_t v)
{
	ah_put32(f, at, addi(A0, 0, v));
	ah_put32(f, at + 4, jalr(0, RA, 0));
}

static uint64_t pte(uint64_t pa, unsigned flags)
{
	return (pa >> 12) << 10 | flags;
}

/*
 * Sv39 tables at pt (root, L1, L0 in three pages): RAM identity-mapped with 4 KiB pages, S
 * pages except UCALLER (a U page), and VPAGE mapped to `vpage_pa`.
 */
static void map_sv39(struct accel_harness *f, uint64_t pt, uint64_t vpage_pa)
{
	uint64_t root = pt, l1 = pt + 0x1000, l0 = pt + 0x2000;
	unsigned rwx = PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D;

	memset(f->ram + (pt - RAM_BASE), 0, 0x3000);
	ah_put64(f, root + 8 * ((RAM_BASE >> 30) & 511), pte(l1, PTE_V));
	ah_put64(f, l1 + 8 * ((RAM_BASE >> 21) & 511), pte(l0, PTE_V));
	for (uint64_t pa = RAM_BASE; pa < RAM_BASE + RAM_SIZE; pa += 0x1000)
		ah_put64(f, l0 + 8 * ((pa >> 12) & 511),
			 pte(pa, pa == UCALLER ? rwx | PTE_U : rwx));
	ah_put64(f, l0 + 8 * ((VPAGE >> 12) & 511), pte(vpage_pa, rwx));
}

static uint64_t satp_of(uint64_t pt)
{
	return SV39 << 60 | pt >> 12;
}

/* S-mode under address space 1 from CALLER, calling s1 = VPAGE. */
static void start_paged(struct accel_harness *f)
{
	put_fn(f, P1, 1);
	put_fn(f, P2, 2);
	map_sv39(f, PT1, P1);
	map_sv39(f, PT2, P2);
	ah_set(f, 0, ACCEL_REG_CSR(CSR_MTVEC), TRAP);
	ah_put32(f, TRAP, ECALL);
	ah_set(f, 0, ACCEL_REG_CSR(CSR_SATP), satp_of(PT1));
	ah_set(f, 0, ACCEL_REG_PRIV, RV64_PRIV_S);
	ah_set(f, 0, ACCEL_REG_PC, CALLER);
	ah_set(f, 0, ACCEL_REG_X(S1), VPAGE);
}

/*
 * The guest rewrites VPAGE's PTE (P1 <-> P2) and fences with `fence` (SFENCE.VMA of all or of
 * VPAGE): the next call must reach the new page.
 */
static void remap_with(struct accel_harness *f, uint32_t fence)
{
	uint64_t pte_va = PT1 + 0x2000 + 8 * ((VPAGE >> 12) & 511);

	/* loop: jalr ra, 0(s1); jalr ra, 0(s1); ecall; sd t0, 0(s2); <fence>; j loop */
	ah_put32(f, CALLER, jalr(RA, S1, 0));
	ah_put32(f, CALLER + 4, jalr(RA, S1, 0));
	ah_put32(f, CALLER + 8, ECALL);
	ah_put32(f, CALLER + 12, store(3, T0, S2, 0));
	ah_put32(f, CALLER + 16, fence);
	ah_put32(f, CALLER + 20, jal(0, -20));
	start_paged(f);
	ah_set(f, 0, ACCEL_REG_X(S2), pte_va);
	assert_int_equal(ah_run_to_ecall(f, 0), 1);
	for (unsigned i = 1; i <= 30; i++) {
		unsigned want = (i / 3) % 2 ? 2 : 1; /* some rounds keep the mapping: cache hits */

		ah_set(f, 0, ACCEL_REG_X(T0),
		       pte(want == 1 ? P1 : P2, PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D));
		assert_int_equal(ah_run_to_ecall(f, 0), want);
		assert_true(jc_holds(f, 0, VPAGE));
	}
}

static void test_remap_sfence_all(void **state)
{
	remap_with(*state, SFENCE_ALL);
}

static void test_remap_sfence_page(void **state)
{
	remap_with(*state, sfence_vma(S1));
}

/* The jump cache generation: changes whenever the whole cache was dropped (0 without one). */
static uint64_t jc_gen(struct accel_harness *f, unsigned hart)
{
#ifdef RV64_JIT
	struct rv64_cpu *cpu = (struct rv64_cpu *)f->cpu[hart];

	return cpu->jit ? cpu->jit->jc->gen : 0;
#else
	(void)f;
	(void)hart;
	return 0;
#endif
}

/* SFENCE.VMA of a page without code keeps the jump cache (and the calls still work). */
static void test_sfence_of_data_page_keeps_entries(void **state)
{
	struct accel_harness *f = *state;
	uint64_t gen;

	/* loop: jalr ra, 0(s1); ecall; sfence.vma s2; j loop */
	ah_put32(f, CALLER, jalr(RA, S1, 0));
	ah_put32(f, CALLER + 4, ECALL);
	ah_put32(f, CALLER + 8, sfence_vma(S2));
	ah_put32(f, CALLER + 12, jal(0, -12));
	start_paged(f);
	ah_set(f, 0, ACCEL_REG_X(S2), RAM_BASE + 0x40000);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(ah_run_to_ecall(f, 0), 1);
	gen = jc_gen(f, 0);
	for (unsigned i = 0; i < 10; i++)
		assert_int_equal(ah_run_to_ecall(f, 0), 1);
	assert_int_equal(jc_gen(f, 0), gen);
	assert_true(jc_holds(f, 0, VPAGE));
}

/* A satp write alone switches address spaces (kumo's TLB has no ASIDs: it flushes). */
static void test_remap_satp(void **state)
{
	struct accel_harness *f = *state;

	/* loop: jalr ra, 0(s1); jalr ra, 0(s1); ecall; csrw satp, t0; j loop */
	ah_put32(f, CALLER, jalr(RA, S1, 0));
	ah_put32(f, CALLER + 4, jalr(RA, S1, 0));
	ah_put32(f, CALLER + 8, ECALL);
	ah_put32(f, CALLER + 12, csrw(CSR_SATP, T0));
	ah_put32(f, CALLER + 16, jal(0, -16));
	start_paged(f);
	assert_int_equal(ah_run_to_ecall(f, 0), 1);
	for (unsigned i = 1; i <= 30; i++) {
		unsigned want = (i / 3) % 2 ? 2 : 1;

		ah_set(f, 0, ACCEL_REG_X(T0), satp_of(want == 1 ? PT1 : PT2));
		assert_int_equal(ah_run_to_ecall(f, 0), want);
	}
}

/*
 * S-mode calls FN (an S page) until the jump cache knows it, then drops to U-mode, which calls
 * the same address: that must be an instruction page fault (priv 1.12 §4.3.1: U-mode never
 * executes S pages), taken to M-mode with mepc = mtval = FN, not a run of FN.
 */
static void test_user_does_not_follow_supervisor_entry(void **state)
{
	struct accel_harness *f = *state;

	/* S: loop: jalr ra, 0(s1); ecall; bne s2, zero, loop; csrc sstatus, t1; csrw sepc, s3; sret */
	ah_put32(f, CALLER, jalr(RA, S1, 0));
	ah_put32(f, CALLER + 4, ECALL);
	ah_put32(f, CALLER + 8, bne(S2, 0, -8));
	ah_put32(f, CALLER + 12, csrc(CSR_SSTATUS, T1));
	ah_put32(f, CALLER + 16, csrw(CSR_SEPC, S3));
	ah_put32(f, CALLER + 20, SRET);
	/* U: jalr ra, 0(s1); ecall */
	ah_put32(f, UCALLER, jalr(RA, S1, 0));
	ah_put32(f, UCALLER + 4, ECALL);
	put_fn(f, FN, 7);
	start_paged(f);
	ah_set(f, 0, ACCEL_REG_X(S1), FN);
	ah_set(f, 0, ACCEL_REG_X(S2), 1);
	ah_set(f, 0, ACCEL_REG_X(S3), UCALLER);
	ah_set(f, 0, ACCEL_REG_X(T1), SSTATUS_SPP);
	for (unsigned i = 0; i < 5; i++)
		assert_int_equal(ah_run_to_ecall(f, 0), 7);
	assert_true(jc_holds(f, 0, FN));
	ah_set(f, 0, ACCEL_REG_X(S2), 0);
	ah_set(f, 0, ACCEL_REG_X(A0), 0);
	assert_int_equal(ah_run_to_ecall(f, 0), 0); /* the ECALL at TRAP, in M-mode */
	assert_int_equal(ah_get(f, 0, ACCEL_REG_PRIV), RV64_PRIV_M);
	assert_int_equal(ah_get(f, 0, ACCEL_REG_CSR(CSR_MCAUSE)), RV64_EXC_INSN_PAGE_FAULT);
	assert_int_equal(ah_get(f, 0, ACCEL_REG_CSR(CSR_MEPC)), FN);
	assert_int_equal(ah_get(f, 0, ACCEL_REG_CSR(CSR_MTVAL)), FN);
	assert_true(jc_holds(f, 0, FN)); /* the S-mode entry was there all along */
}

/* M-mode, untranslated: loop: jalr ra, 0(s1); ecall; <between>; j loop. */
static void start_calls(struct accel_harness *f, uint32_t between)
{
	ah_put32(f, CALLER, jalr(RA, S1, 0));
	ah_put32(f, CALLER + 4, ECALL);
	ah_put32(f, CALLER + 8, between);
	ah_put32(f, CALLER + 12, jal(0, -12));
	put_fn(f, FN, 1);
	ah_set(f, 0, ACCEL_REG_PC, CALLER);
	ah_set(f, 0, ACCEL_REG_X(S1), FN);
}

/* The hart's own store to the called function (no FENCE.I needed: kumo is precise). */
static void test_own_store_rewrites_target(void **state)
{
	struct accel_harness *f = *state;

	start_calls(f, store(2, T0, S1, 0)); /* sw t0, 0(s1) */
	ah_set(f, 0, ACCEL_REG_X(T0), addi(A0, 0, 1));
	for (int v = 1; v < 4; v++)
		assert_int_equal(ah_run_to_ecall(f, 0), 1);
	assert_true(jc_holds(f, 0, FN));
	for (int v = 2; v < 40; v++) {
		ah_set(f, 0, ACCEL_REG_X(T0), addi(A0, 0, v));
		assert_int_equal(ah_run_to_ecall(f, 0), (uint64_t)v);
		assert_int_equal(ah_run_to_ecall(f, 0), (uint64_t)v);
	}
}

/* Hart 1 rewrites the function; hart 0 runs FENCE.I between its calls. */
static void test_other_hart_store_and_fence_i(void **state)
{
	struct accel_harness *f = *state;

	start_calls(f, FENCE_I);
	/* hart 1 -- loop: sw t0, 0(s0); ecall; j loop */
	ah_put32(f, CODE1, store(2, T0, S0, 0));
	ah_put32(f, CODE1 + 4, ECALL);
	ah_put32(f, CODE1 + 8, jal(0, -8));
	ah_set(f, 1, ACCEL_REG_PC, CODE1);
	ah_set(f, 1, ACCEL_REG_X(S0), FN);
	for (int v = 1; v < 4; v++)
		assert_int_equal(ah_run_to_ecall(f, 0), 1);
	for (int v = 2; v < 30; v++) {
		ah_set(f, 1, ACCEL_REG_X(T0), addi(A0, 0, v));
		ah_run_to_ecall(f, 1);
		assert_int_equal(ah_run_to_ecall(f, 0), (uint64_t)v);
		assert_int_equal(ah_run_to_ecall(f, 0), (uint64_t)v);
	}
}

/* Host writes: announced (DMA), or made by the VMM before it points the hart somewhere. */
static void test_host_writes(void **state)
{
	struct accel_harness *f = *state;

	start_calls(f, addi(0, 0, 0));
	for (int v = 1; v < 4; v++)
		assert_int_equal(ah_run_to_ecall(f, 0), 1);
	for (int v = 2; v < 20; v++) {
		ah_put32(f, FN, addi(A0, 0, v));
		rv64_code_ram_written((struct rv64_vm *)f->vm, FN, 4);
		assert_int_equal(ah_run_to_ecall(f, 0), (uint64_t)v);
		assert_int_equal(ah_run_to_ecall(f, 0), (uint64_t)v);
	}
	for (int v = 20; v < 30; v++) {
		ah_put32(f, FN, addi(A0, 0, v));
		ah_set(f, 0, ACCEL_REG_PC, CALLER);
		assert_int_equal(ah_run_to_ecall(f, 0), (uint64_t)v);
		assert_int_equal(ah_run_to_ecall(f, 0), (uint64_t)v);
	}
}

/*
 * 200000 calls of FN (a0 += 3) in one vcpu_run(), many run slices long: the result and
 * minstret are exact (5 instructions a round: addi, jalr, addi, jalr, bne).
 */
static void test_call_loop_counts_exactly(void **state)
{
	struct accel_harness *f = *state;
	const uint64_t rounds = 200000;
	uint64_t before;

	/* loop: addi s2, s2, -1; jalr ra, 0(s1); bne s2, zero, loop; ecall */
	ah_put32(f, CALLER, addi(S2, S2, -1));
	ah_put32(f, CALLER + 4, jalr(RA, S1, 0));
	ah_put32(f, CALLER + 8, bne(S2, 0, -8));
	ah_put32(f, CALLER + 12, ECALL);
	ah_put32(f, FN, addi(A0, A0, 3));
	ah_put32(f, FN + 4, jalr(0, RA, 0));
	ah_set(f, 0, ACCEL_REG_PC, CALLER);
	ah_set(f, 0, ACCEL_REG_X(S1), FN);
	ah_set(f, 0, ACCEL_REG_X(S2), rounds);
	ah_set(f, 0, ACCEL_REG_X(A0), 0);
	before = ah_get(f, 0, ACCEL_REG_CSR(CSR_MINSTRET));
	assert_int_equal(ah_run_to_ecall(f, 0), 3 * rounds);
	assert_int_equal(ah_get(f, 0, ACCEL_REG_CSR(CSR_MINSTRET)) - before, 5 * rounds);
	assert_int_equal(ah_get(f, 0, ACCEL_REG_PC), CALLER + 12);
}

static void *kick_later(void *arg)
{
	struct timespec ts = {0, 50 * 1000 * 1000};

	nanosleep(&ts, NULL);
	accel_rv64_ops.vcpu_kick(arg);
	return NULL;
}

/*
 * Endless jumps between two pages, each one through the jump cache, still end run slices (the
 * budget check): a kick stops the hart. Without the check vcpu_run() would never return; the
 * alarm then kills the test program, which counts as a failure.
 */
static void test_kick_stops_jump_loop(void **state)
{
	struct accel_harness *f = *state;
	pthread_t t;

	ah_put32(f, CALLER, jalr(0, S1, 0)); /* jr s1 */
	ah_put32(f, FN, jalr(0, S2, 0));     /* jr s2 */
	ah_set(f, 0, ACCEL_REG_PC, CALLER);
	ah_set(f, 0, ACCEL_REG_X(S1), FN);
	ah_set(f, 0, ACCEL_REG_X(S2), CALLER);
	assert_int_equal(pthread_create(&t, NULL, kick_later, f->cpu[0]), 0);
	alarm(20);
	assert_int_equal(ah_run(f, 0), ACCEL_EXIT_INTR);
	alarm(0);
	pthread_join(t, NULL);
	assert_true(jc_holds(f, 0, FN));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_remap_sfence_all, setup, ah_teardown),
		cmocka_unit_test_setup_teardown(test_remap_sfence_page, setup, ah_teardown),
		cmocka_unit_test_setup_teardown(test_remap_satp, setup, ah_teardown),
		cmocka_unit_test_setup_teardown(test_sfence_of_data_page_keeps_entries, setup,
						ah_teardown),
		cmocka_unit_test_setup_teardown(test_user_does_not_follow_supervisor_entry, setup,
						ah_teardown),
		cmocka_unit_test_setup_teardown(test_own_store_rewrites_target, setup, ah_teardown),
		cmocka_unit_test_setup_teardown(test_other_hart_store_and_fence_i, setup, ah_teardown),
		cmocka_unit_test_setup_teardown(test_host_writes, setup, ah_teardown),
		cmocka_unit_test_setup_teardown(test_call_loop_counts_exactly, setup, ah_teardown),
		cmocka_unit_test_setup_teardown(test_kick_stops_jump_loop, setup, ah_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
