/*
 * test_rv64_jit_tlbgroup.c - TLB groups of the translator (jit.c mem_fast()): a load or store
 * through the same base register as the access just before it (same class) only checks that
 * it stays in that access's page, reusing the host addend in rcx and the tag in rdx. Each test
 * runs a program on a machine with the translator (KUMO_JIT=1, translated at first arrival)
 * and one with the interpreter alone (jit_compare.h) and compares registers, pc, minstret,
 * mcause, mepc, mtval, all of RAM and what devices saw:
 *   - groups of loads and stores of every size: exact, and on a warm TLB not one access
 *     leaves the fast path, with the same TLB hit count as the interpreter;
 *   - a follower in the next page: mapped (RAM, or a non-adjacent page under Sv39), past the
 *     end of RAM (access fault, also after a leader that stored the value the follower's
 *     test compares) and unmapped (page fault): right mtval and mepc, the leader's store done;
 *   - misaligned followers; a cold leader (its slow path fills the TLB, the followers then
 *     hit through their stub's full test); leaders and followers on a device page next to
 *     RAM, both ways round;
 *   - jumps inside the block that land on what would be a follower: a loop whose head
 *     follows the access before the loop, a forward branch, both arriving with rcx clobbered;
 *   - the dirty log: a follower's store to a clean page marks it; a follower's store to a
 *     page with decoded code (the next instruction) is seen by the block.
 * The store slow path is wrapped (tests/unit/jit_tlbgroup.mk): it counts calls, and returns
 * with rdx = the tag value of the page it stored to and rcx = a host addend 64 bytes off, so
 * a follower that trusted rcx and rdx after its leader's slow path would store elsewhere.
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
#include "jit_compare.h"
#include "kumo/accel.h"
#include "kumo/memmap.h"

#define RAM_END (RAM_BASE + RAM_SIZE)
#define DEV_LO (RAM_BASE - 4096) /* test_mmio(): a device page just below RAM... */
#define DEV_HI RAM_END           /* ...and one just above it (elsewhere: nothing there) */
#define PT_ROOT (RAM_BASE + 0x20000)
#define PT_L1 (RAM_BASE + 0x21000)
#define PT_L0 (RAM_BASE + 0x22000)
#define PAGE_A (RAM_BASE + 0x30000)
#define PAGE_C (RAM_BASE + 0x38000) /* not next to PAGE_A */
#define VA_A 0x1000ULL              /* -> PAGE_A; VA_A + 4096 -> PAGE_C; VA_A + 8192 unmapped */

#define CSR_MTVAL 0x343
#define CSR_SATP 0x180
#define CSR_PMPCFG0 0x3a0
#define CSR_PMPADDR0 0x3b0
#define PTE_VRWAD 0xc7 /* V R W A D */

enum { S2 = 18, S3 = 19, A6 = 16, A7 = 17 };

/* --- the wrapped slow paths */

static const void *jit_cpu;   /* the translating machine's hart */
static uint64_t jit_addend;   /* its host address - guest-physical address of RAM */
static unsigned slow_loads, slow_stores; /* its slow-path calls */
/* What __wrap_rv64_mmu_store_slow returns in rdx and rcx (global: its assembly reads them). */
extern uint64_t poison_rdx, poison_rcx;
uint64_t poison_rdx, poison_rcx;

int __real_rv64_mmu_load_slow(struct rv64_cpu *cpu, uint64_t va, unsigned size, uint64_t *val);
int __real_rv64_mmu_store_slow(struct rv64_cpu *cpu, uint64_t va, unsigned size, uint64_t val);
int __wrap_rv64_mmu_load_slow(struct rv64_cpu *cpu, uint64_t va, unsigned size, uint64_t *val);
int tg_store_slow(struct rv64_cpu *cpu, uint64_t va, unsigned size, uint64_t val);

int __wrap_rv64_mmu_load_slow(struct rv64_cpu *cpu, uint64_t va, unsigned size, uint64_t *val)
{
	if (cpu == jit_cpu)
		slow_loads++;
	return __real_rv64_mmu_load_slow(cpu, va, size, val);
}

int tg_store_slow(struct rv64_cpu *cpu, uint64_t va, unsigned size, uint64_t val)
{
	if (cpu == jit_cpu)
		slow_stores++;
	poison_rdx = (va + size - 1) | (RV64_PAGE_SIZE - 1); /* what an aligned access compares */
	poison_rcx = jit_addend + 64;
	return __real_rv64_mmu_store_slow(cpu, va, size, val);
}

#ifdef __x86_64__
/* The C wrapper above, then rdx and rcx from poison_rdx and poison_rcx (both caller-saved). */
__asm__(".text\n"
	".globl __wrap_rv64_mmu_store_slow\n"
	".type __wrap_rv64_mmu_store_slow, @function\n"
	"__wrap_rv64_mmu_store_slow:\n"
	"\tsub $8, %rsp\n"
	"\tcall tg_store_slow\n"
	"\tmov poison_rdx(%rip), %rdx\n"
	"\tmov poison_rcx(%rip), %rcx\n"
	"\tadd $8, %rsp\n"
	"\tret\n"
	".size __wrap_rv64_mmu_store_slow, . - __wrap_rv64_mmu_store_slow\n");
#else
int __wrap_rv64_mmu_store_slow(struct rv64_cpu *cpu, uint64_t va, unsigned size, uint64_t val);

int __wrap_rv64_mmu_store_slow(struct rv64_cpu *cpu, uint64_t va, unsigned size, uint64_t val)
{
	return tg_store_slow(cpu, va, size, val);
}
#endif

/* --- devices: a page that reads back a pattern of the offset and logs the writes */

struct dev {
	uint64_t log[16][3]; /* off, value, size */
	unsigned n;
};

static struct dev devs[2][2]; /* [machine][low, high] */

static uint64_t dev_read(void *opaque, uint64_t off, unsigned size)
{
	(void)opaque;
	return (0x0102030405060708ULL * (off + 1)) & (size == 8 ? ~0ULL : (1ULL << 8 * size) - 1);
}

static void dev_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	struct dev *d = opaque;

	if (d->n < 16) {
		d->log[d->n][0] = off;
		d->log[d->n][1] = val;
		d->log[d->n][2] = size;
	}
	d->n++;
}

static const struct mmio_ops dev_ops = {.read = dev_read, .write = dev_write};

static int setup(void **state)
{
	struct jc *f;

	jc_setup(state);
	f = *state;
	memset(devs, 0, sizeof(devs));
	jit_cpu = f->m[0].cpu[0];
	jit_addend = (uint64_t)(uintptr_t)f->m[0].ram - RAM_BASE;
	slow_loads = slow_stores = 0;
	return 0;
}

static int teardown(void **state)
{
	jit_cpu = NULL;
	return jc_teardown(state);
}

/* --- programs */

static uint32_t ld(unsigned f3, unsigned rd, unsigned rs1, int32_t imm)
{
	return i_type(0x03, rd, f3, rs1, imm);
}

static uint32_t st(unsigned f3, unsigned rs1, unsigned rs2, int32_t imm)
{
	return s_type(f3, rs1, rs2, imm);
}

static uint32_t addi(unsigned rd, unsigned rs1, int32_t imm)
{
	return i_type(0x13, rd, 0, rs1, imm);
}

static uint32_t sll(unsigned rd, unsigned rs1, unsigned rs2)
{
	return r_type(0x33, rd, 1, rs1, rs2, 0);
}

/* Sets x[r] in both machines (after jc_load()). */
static void set_both(struct jc *f, unsigned r, uint64_t v)
{
	for (unsigned k = 0; k < 2; k++)
		ah_set(&f->m[k], 0, ACCEL_REG_X(r), v);
}

static uint64_t hits(struct jc *f, unsigned k)
{
	return jc_cpu(&f->m[k])->stats.tlb_hits;
}

/* jc_compare() and more: mepc, mtval, all of RAM, the devices' write logs. */
static void compare_all(struct jc *f)
{
	static const unsigned csrs[] = {CSR_MEPC, CSR_MTVAL};
	struct accel_harness *a = &f->m[0], *b = &f->m[1];

	jc_compare(f);
	if (hits(f, 0) != hits(f, 1))
		fail_msg("TLB hits: translated %llu, interpreted %llu",
			 (unsigned long long)hits(f, 0), (unsigned long long)hits(f, 1));
	for (unsigned i = 0; i < sizeof(csrs) / sizeof(csrs[0]); i++)
		if (ah_get(a, 0, ACCEL_REG_CSR(csrs[i])) != ah_get(b, 0, ACCEL_REG_CSR(csrs[i])))
			fail_msg("csr %#x: translated %#llx, interpreted %#llx", csrs[i],
				 (unsigned long long)ah_get(a, 0, ACCEL_REG_CSR(csrs[i])),
				 (unsigned long long)ah_get(b, 0, ACCEL_REG_CSR(csrs[i])));
	if (memcmp(a->ram, b->ram, RAM_SIZE)) {
		for (uint64_t i = 0; i < RAM_SIZE; i++)
			if (a->ram[i] != b->ram[i])
				fail_msg("RAM differs first at %#llx",
					 (unsigned long long)(RAM_BASE + i));
	}
	for (unsigned d = 0; d < 2; d++) {
		assert_int_equal(devs[0][d].n, devs[1][d].n);
		assert_memory_equal(devs[0][d].log, devs[1][d].log, sizeof(devs[0][d].log));
	}
}

/* Loads the program, lets `regs` set registers, runs both and compares everything. */
static void run_cmp(struct jc *f, void (*regs)(struct jc *f))
{
	jc_load(f);
	if (regs)
		regs(f);
	jc_run_both(f);
	compare_all(f);
}

static uint64_t mcause(struct jc *f)
{
	return ah_get(&f->m[0], 0, ACCEL_REG_CSR(CSR_MCAUSE));
}

/* --- tests */

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static void regs_bases(struct jc *f)
{
	set_both(f, S1, DATA + 512);
	set_both(f, S2, DATA + 4096 + 1024);
	set_both(f, S3, DATA + 2 * 4096);
}

/*
 * Groups of 2..6 loads or stores of random sizes at aligned offsets through s0, s1, s2 or s3
 * (each pointing into its own page), loads into registers that are no base: exact; the second
 * run, on a warm TLB, takes no slow path and counts the same TLB hits as the interpreter.
 */
static void test_group_sizes(void **state)
{
	struct jc *f = *state;
	static const unsigned bases[4] = {S0, S1, S2, S3};

	for (unsigned round = 0; round < 40; round++) {
		uint64_t h0, h1;

		f->len = 0;
		for (unsigned g = 0; g < 6; g++) {
			unsigned b = bases[ah_pick(&rng, 4)], n = 2 + ah_pick(&rng, 5);
			bool load = ah_pick(&rng, 2);

			for (unsigned i = 0; i < n; i++) {
				unsigned f3 = ah_pick(&rng, load ? 7 : 4), size = 1u << (f3 & 3);
				int32_t off = (int32_t)(ah_pick(&rng, 256) & ~(size - 1));

				if (load)
					jc_emit(f, ld(f3, A0 + ah_pick(&rng, 6), b, off));
				else
					jc_emit(f, st(f3, b, 1 + ah_pick(&rng, 31), off));
			}
		}
		jc_emit(f, ECALL);
		run_cmp(f, regs_bases);
		slow_loads = slow_stores = 0;
		h0 = hits(f, 0);
		h1 = hits(f, 1);
		run_cmp(f, regs_bases);
		if (slow_loads || slow_stores)
			fail_msg("round %u: %u loads, %u stores left the fast path on a warm TLB",
				 round, slow_loads, slow_stores);
		assert_int_equal(hits(f, 0) - h0, hits(f, 1) - h1);
	}
	jc_check_translated(f);
}

static void regs_page_end(struct jc *f)
{
	set_both(f, S1, DATA + 4096 - 8);
	set_both(f, S2, RAM_END - 16);
}

/*
 * Leader at the last 8 bytes of a page, follower at the first of the next: RAM (both runs:
 * cold, then warm) and past the end of RAM (a store access fault at the follower, the leader's
 * store done).
 */
static void test_next_page(void **state)
{
	struct jc *f = *state;

	jc_emit(f, st(3, S1, A1, 0));
	jc_emit(f, st(3, S1, A2, 8));
	jc_emit(f, ld(3, A3, S1, 0));
	jc_emit(f, ld(2, A4, S1, 8));
	jc_emit(f, ld(3, A5, S1, 12));
	jc_emit(f, ld(3, A6, S2, 8));  /* the last 8 bytes of RAM */
	jc_emit(f, ld(3, A7, S2, 16)); /* past the end */
	jc_emit(f, ECALL);
	for (unsigned run = 0; run < 2; run++) {
		run_cmp(f, regs_page_end);
		assert_int_equal(mcause(f), 5); /* load access fault */
		assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_CSR(CSR_MTVAL)), RAM_END);
		assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_CSR(CSR_MEPC)), CODE + 4 * 6);
		assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_X(A2)),
				 ah_get64(&f->m[0], DATA + 4096));
	}
	/*
	 * The leader stores the value the follower compares with its page's tag (a1 is used
	 * once, so no host register caches it): that must not land in rdx.
	 */
	f->len = 0;
	jc_emit(f, st(3, S2, A1, 8));
	jc_emit(f, st(3, S2, A2, 16));
	jc_emit(f, ECALL);
	for (unsigned run = 0; run < 2; run++) {
		jc_load(f);
		regs_page_end(f);
		set_both(f, A1, RAM_END | (RV64_PAGE_SIZE - 1));
		jc_run_both(f);
		compare_all(f);
		assert_int_equal(mcause(f), 7); /* store access fault */
		assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_CSR(CSR_MTVAL)), RAM_END);
		assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_CSR(CSR_MEPC)), CODE + 4);
		assert_int_equal(ah_get64(&f->m[0], RAM_END - 8),
				 ah_get(&f->m[0], 0, ACCEL_REG_X(A1)));
	}
	jc_check_translated(f);
}

/*
 * S-mode under Sv39 with the RAM gigapage mapped 1:1, VA_A -> PAGE_A, VA_A + 4096 -> PAGE_C,
 * VA_A + 8192 unmapped; PMP entry 0 open. Enters S-mode at CODE.
 */
static void regs_sv39(struct jc *f)
{
	for (unsigned k = 0; k < 2; k++) {
		struct accel_harness *m = &f->m[k];
		uint64_t *root = ah_ptr(m, PT_ROOT, 4096), *l1 = ah_ptr(m, PT_L1, 4096);
		uint64_t *l0 = ah_ptr(m, PT_L0, 4096);

		memset(root, 0, 4096);
		memset(l1, 0, 4096);
		memset(l0, 0, 4096);
		root[2] = (RAM_BASE >> 12) << 10 | PTE_VRWAD | 0x08; /* and X */
		root[0] = (PT_L1 >> 12) << 10 | 1;
		l1[0] = (PT_L0 >> 12) << 10 | 1;
		l0[VA_A >> 12] = (PAGE_A >> 12) << 10 | PTE_VRWAD;
		l0[(VA_A >> 12) + 1] = (PAGE_C >> 12) << 10 | PTE_VRWAD;
		ah_set(m, 0, ACCEL_REG_CSR(CSR_PMPADDR0), (1ULL << 54) - 1);
		ah_set(m, 0, ACCEL_REG_CSR(CSR_PMPCFG0), 0x1f);
		ah_set(m, 0, ACCEL_REG_CSR(CSR_SATP), 8ULL << 60 | PT_ROOT >> 12);
		ah_set(m, 0, ACCEL_REG_PRIV, 1);
		ah_set(m, 0, ACCEL_REG_X(S1), VA_A + 4096 - 16);
		ah_set(m, 0, ACCEL_REG_X(S2), VA_A + 2 * 4096 - 8);
	}
}

/*
 * Followers in the next virtual page, which is not the next physical page (the leader's host
 * addend would store to the wrong place), and in an unmapped one (a page fault at the
 * follower with mtval its address, the leader's effect done).
 */
static void test_next_page_sv39(void **state)
{
	struct jc *f = *state;

	jc_emit(f, st(3, S1, A1, 0));
	jc_emit(f, st(3, S1, A2, 8));
	jc_emit(f, st(3, S1, A3, 16)); /* PAGE_C */
	jc_emit(f, st(2, S1, A4, 20));
	jc_emit(f, ld(3, A5, S1, 8));
	jc_emit(f, ld(3, A6, S1, 16)); /* PAGE_C */
	jc_emit(f, ld(3, A7, S2, 0));  /* the end of PAGE_C */
	jc_emit(f, ld(3, A0, S2, 8));  /* unmapped: load page fault */
	jc_emit(f, ECALL);
	for (unsigned run = 0; run < 2; run++) {
		run_cmp(f, regs_sv39);
		assert_int_equal(mcause(f), 13);
		assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_CSR(CSR_MTVAL)), VA_A + 2 * 4096);
		assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_CSR(CSR_MEPC)), CODE + 4 * 7);
		assert_int_equal((uint32_t)ah_get64(&f->m[0], PAGE_C),
				 (uint32_t)ah_get(&f->m[0], 0, ACCEL_REG_X(A3)));
	}
	f->len = 0;
	jc_emit(f, st(3, S2, A1, 0));
	jc_emit(f, st(3, S2, A2, 8)); /* unmapped: store page fault */
	jc_emit(f, ECALL);
	for (unsigned run = 0; run < 2; run++) {
		run_cmp(f, regs_sv39);
		assert_int_equal(mcause(f), 15);
		assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_CSR(CSR_MTVAL)), VA_A + 2 * 4096);
		assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_CSR(CSR_MEPC)), CODE + 4);
		assert_int_equal(ah_get64(&f->m[0], PAGE_C + 4096 - 8),
				 ah_get(&f->m[0], 0, ACCEL_REG_X(A1)));
	}
	jc_check_translated(f);
}

/* Misaligned followers, inside the page and across its end: slow, and exact. */
static void test_misaligned(void **state)
{
	struct jc *f = *state;

	jc_emit(f, ld(3, A0, S1, 0));
	jc_emit(f, ld(3, A1, S1, 3));
	jc_emit(f, ld(2, A2, S1, 10));
	jc_emit(f, ld(1, A3, S1, 13));
	jc_emit(f, ld(3, A4, S1, 16));
	jc_emit(f, st(3, S1, A5, 1));
	jc_emit(f, st(1, S1, A6, 7));
	jc_emit(f, st(2, S1, A7, 14));
	jc_emit(f, ld(3, A0, S2, 0));
	jc_emit(f, ld(3, A1, S2, 4)); /* across the page end */
	jc_emit(f, st(3, S2, A2, 0));
	jc_emit(f, st(3, S2, A3, 6));
	jc_emit(f, ECALL);
	for (unsigned run = 0; run < 2; run++) {
		slow_loads = slow_stores = 0;
		jc_load(f);
		set_both(f, S1, DATA + 64);
		set_both(f, S2, DATA + 4096 - 8);
		jc_run_both(f);
		compare_all(f);
#ifdef RV64_JIT
		assert_true(slow_loads >= 4 && slow_stores >= 4);
#endif
	}
	jc_check_translated(f);
}

static void regs_cold(struct jc *f)
{
	set_both(f, S1, DATA + 3 * 4096);
	set_both(f, S2, DATA + 5 * 4096 + 64);
}

/*
 * A leader that misses (the first touch of its page, in code translated at its first run)
 * and its followers: one slow path per page; after it, the followers hit through their stub's
 * full test. The store slow path returns rdx and rcx poisoned, so a follower that trusted
 * them would store 64 bytes off.
 */
static void test_cold_leader(void **state)
{
	struct jc *f = *state;

	jc_emit(f, st(3, S1, A1, 0));
	jc_emit(f, st(3, S1, A2, 8));
	jc_emit(f, st(2, S1, A3, 16));
	jc_emit(f, st(0, S1, A4, 21));
	jc_emit(f, ld(3, A5, S2, 0));
	jc_emit(f, ld(3, A6, S2, 8));
	jc_emit(f, ld(1, A7, S2, 18));
	jc_emit(f, ECALL);
	slow_loads = slow_stores = 0;
	run_cmp(f, regs_cold);
#ifdef RV64_JIT
	assert_int_equal(slow_stores, 1);
	assert_int_equal(slow_loads, 1);
#endif
	assert_int_equal(ah_get64(&f->m[0], DATA + 3 * 4096 + 8),
			 ah_get(&f->m[0], 0, ACCEL_REG_X(A2)));
	jc_check_translated(f);
}

static void regs_dev(struct jc *f)
{
	set_both(f, S1, RAM_BASE - 8);
	set_both(f, S2, RAM_END - 8);
}

/*
 * A device page just below RAM and one just above: leader on the device, follower in RAM and
 * the other way round, loads and stores, twice (the RAM side's TLB warm the second time).
 */
static void test_mmio(void **state)
{
	struct jc *f = *state;

	for (unsigned k = 0; k < 2; k++) {
		assert_int_equal(
		    memmap_add_mmio(f->m[k].mm, "lo", DEV_LO, 4096, &dev_ops, &devs[k][0]), 0);
		assert_int_equal(
		    memmap_add_mmio(f->m[k].mm, "hi", DEV_HI, 4096, &dev_ops, &devs[k][1]), 0);
	}
	jc_emit(f, ld(3, A0, S1, 0));  /* device */
	jc_emit(f, ld(3, A1, S1, 8));  /* RAM */
	jc_emit(f, ld(2, A2, S1, 12));
	jc_emit(f, ld(3, A3, S2, 0));  /* RAM */
	jc_emit(f, ld(3, A4, S2, 8));  /* device */
	jc_emit(f, ld(1, A5, S2, 10));
	jc_emit(f, st(3, S1, A6, 0));  /* device */
	jc_emit(f, st(3, S1, A7, 8));  /* RAM */
	jc_emit(f, st(2, S2, A6, 4));  /* RAM */
	jc_emit(f, st(3, S2, A7, 8));  /* device */
	jc_emit(f, st(0, S2, A6, 9));
	jc_emit(f, ECALL);
	for (unsigned run = 0; run < 2; run++) {
		run_cmp(f, regs_dev);
		assert_int_equal(mcause(f), 0);
		assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_X(A4)), dev_read(NULL, 0, 8));
	}
	assert_int_equal(devs[0][0].n, 2);
	assert_int_equal(devs[0][1].n, 4);
	jc_check_translated(f);
}

/*
 * A loop whose head would follow the load before the loop. On the way back the last
 * instruction leaves rdx = the tag of s1's page (the head's own) but rcx = x[a4], an addend
 * 64 bytes off: a follower there would load from the wrong place.
 */
static void test_loop_head(void **state)
{
	struct jc *f = *state;
	unsigned top;

	jc_emit(f, addi(T0, 0, 5));
	jc_emit(f, ld(3, A0, S1, 0));
	top = jc_emit(f, ld(3, A1, S1, 8)); /* the loop's head */
	jc_emit(f, addi(A2, A2, 1));
	jc_emit(f, addi(T0, T0, -1));
	jc_emit(f, ld(3, A5, S1, 16));
	jc_emit(f, sll(A3, A3, A4)); /* rcx = x[a4] */
	jc_emit(f, b_to(1, T0, 0, f->len, top)); /* bnez t0, top */
	jc_emit(f, ECALL);
	for (unsigned run = 0; run < 2; run++) {
		jc_load(f);
		set_both(f, S1, DATA + 64);
		for (unsigned k = 0; k < 2; k++)
			ah_set(&f->m[k], 0, ACCEL_REG_X(A4),
			       (uint64_t)(uintptr_t)f->m[0].ram - RAM_BASE + 64);
		jc_run_both(f);
		compare_all(f);
		assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_X(A1)),
				 ah_get64(&f->m[0], DATA + 72));
	}
	jc_check_translated(f);
}

/* The same for a forward branch that lands on what would be a follower. */
static void test_forward_branch(void **state)
{
	struct jc *f = *state;
	unsigned br;

	jc_emit(f, ld(3, A0, S1, 0));
	jc_emit(f, sll(A3, A3, A4)); /* rcx = x[a4] */
	br = jc_emit(f, 0);          /* beq x0, x0: always taken */
	jc_emit(f, ld(3, A5, S1, 16));
	f->code[br] = b_to(0, 0, 0, br, jc_emit(f, ld(3, A1, S1, 8)));
	jc_emit(f, ld(3, A2, S1, 24));
	jc_emit(f, ECALL);
	for (unsigned run = 0; run < 2; run++) {
		jc_load(f);
		set_both(f, S1, DATA + 64);
		for (unsigned k = 0; k < 2; k++)
			ah_set(&f->m[k], 0, ACCEL_REG_X(A4),
			       (uint64_t)(uintptr_t)f->m[0].ram - RAM_BASE + 64);
		jc_run_both(f);
		compare_all(f);
		assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_X(A1)),
				 ah_get64(&f->m[0], DATA + 72));
	}
	jc_check_translated(f);
}

/* Fetches and clears machine k's dirty log; true when the pages of pa[0..n) are all in it. */
static bool pages_dirty(struct jc *f, unsigned k, const uint64_t *pa, unsigned n)
{
	uint64_t bits[RAM_SIZE / 4096 / 64];

	assert_int_equal(memmap_dirty_log_fetch(f->m[k].mm, bits, RAM_SIZE / 4096 / 64), 0);
	for (unsigned i = 0; i < n; i++) {
		uint64_t pg = (pa[i] - RAM_BASE) / 4096;

		if (!(bits[pg / 64] >> (pg % 64) & 1))
			return false;
	}
	return true;
}

#define TOUCH (CODE + 0x800) /* a second program: sd x0, 0(s2); ECALL */

/*
 * The dirty log on and re-armed (every page clean, write entries dropped): a leader's store
 * to a clean page (its slow path marks it) and a follower on it; then a leader on the last
 * bytes of a page and followers on the next, clean page. The second time the leader's page
 * was made dirty just before, so its store hits and only the followers' page is new. Every
 * page written is marked, in both machines.
 */
static void test_dirty_log(void **state)
{
	struct jc *f = *state;
	const uint64_t pages[] = {DATA + 8 * 4096, DATA + 9 * 4096, DATA + 10 * 4096};

	jc_emit(f, st(3, S1, A1, 0));
	jc_emit(f, st(3, S1, A2, 8));
	jc_emit(f, st(3, S2, A3, 0)); /* the end of page 9 */
	jc_emit(f, st(3, S2, A4, 8)); /* page 10 */
	jc_emit(f, st(3, S2, A5, 16));
	jc_emit(f, ECALL);
	for (unsigned run = 0; run < 2; run++) {
		jc_load(f);
		for (unsigned k = 0; k < 2; k++) {
			struct accel_harness *m = &f->m[k];

			ah_set(m, 0, ACCEL_REG_X(S1), pages[0]);
			ah_set(m, 0, ACCEL_REG_X(S2), pages[2] - 8);
			assert_int_equal(memmap_dirty_log_start(m->mm), 0);
			assert_int_equal(m->ops->dirty_log_sync(m->cpu[0]), 0);
			if (run == 1) {
				ah_put32(m, TOUCH, st(3, S2, 0, 0));
				ah_put32(m, TOUCH + 4, ECALL);
				ah_set(m, 0, ACCEL_REG_PC, TOUCH);
				assert_int_equal(ah_run(m, 0), ACCEL_EXIT_SBI);
				ah_set(m, 0, ACCEL_REG_PC, CODE);
			}
		}
		jc_run_both(f);
		compare_all(f);
		for (unsigned k = 0; k < 2; k++)
			if (!pages_dirty(f, k, pages, 3))
				fail_msg("machine %u, run %u: a page written is not in the log", k,
					 run);
	}
	jc_check_translated(f);
}

/*
 * A follower's store rewrites the next instruction (on the code page, the leader on the page
 * before): the new instruction runs, as on the interpreter.
 */
static void test_code_page(void **state)
{
	struct jc *f = *state;
	unsigned at;

	jc_emit(f, addi(A0, 0, 1));
	jc_emit(f, st(3, S1, A1, 0));
	at = jc_emit(f, st(2, S1, A2, 0)); /* imm patched below: the next instruction */
	jc_emit(f, addi(A5, 0, 5));        /* becomes addi a5, x0, 7 */
	jc_emit(f, addi(A0, A0, 1));
	jc_emit(f, ECALL);
	f->code[at] = st(2, S1, A2, (int32_t)(CODE + 4 * (at + 1) - (CODE - 8)));
	for (unsigned run = 0; run < 2; run++) {
		jc_load(f);
		set_both(f, S1, CODE - 8);
		set_both(f, A2, addi(A5, 0, 7));
		jc_run_both(f);
		compare_all(f);
		assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_X(A5)), 7);
		assert_int_equal(ah_get(&f->m[0], 0, ACCEL_REG_X(A0)), 2);
	}
	jc_check_translated(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_group_sizes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_next_page, setup, teardown),
		cmocka_unit_test_setup_teardown(test_next_page_sv39, setup, teardown),
		cmocka_unit_test_setup_teardown(test_misaligned, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cold_leader, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mmio, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loop_head, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forward_branch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dirty_log, setup, teardown),
		cmocka_unit_test_setup_teardown(test_code_page, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
