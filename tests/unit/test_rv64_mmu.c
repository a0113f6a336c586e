/*
 * test_rv64_mmu.c - the software CPU's MMU: Sv39/48/57 walks, superpages, A/D updates,
 * permissions (SUM, MXR, MPRV), canonical checks, MMIO dispatch, misaligned and page-crossing
 * accesses, the software TLB and PMP. Page tables are built by hand in a RAM buffer.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "accel/rv64/cpu.h"
#include "accel/rv64/mmu.h"
#include "kumo/memmap.h"

#define RAM_BASE 0x80000000ull
#define RAM_SIZE (32ull << 20)
#define PT_POOL (RAM_BASE + (16ull << 20)) /* page tables are allocated from here up */
#define DEV_BASE 0x10000000ull
#define DEV_SIZE 0x1000ull

#define SV39 8ull
#define SV48 9ull
#define SV57 10ull

#define V (1ull << 0)
#define R (1ull << 1)
#define W (1ull << 2)
#define X (1ull << 3)
#define U (1ull << 4)
#define A (1ull << 6)
#define D (1ull << 7)

#define MSTATUS_MPRV (1ull << 17)
#define MSTATUS_SUM (1ull << 18)
#define MSTATUS_MXR (1ull << 19)

struct fake_dev {
	uint64_t last_off, last_val;
	unsigned last_size, writes;
};

struct fx {
	struct rv64_vm vm;
	struct rv64_cpu *cpu;
	uint8_t *ram;
	struct memmap *mm;
	struct fake_dev dev;
	uint64_t next_pt; /* bump allocator for page-table pages */
	uint64_t root;
	unsigned levels;
};

static uint64_t dev_read(void *opaque, uint64_t off, unsigned size)
{
	(void)opaque;
	return 0xd0d0000000000000ull | off << 8 | size;
}

static void dev_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	struct fake_dev *d = opaque;

	d->last_off = off;
	d->last_val = val;
	d->last_size = size;
	d->writes++;
}

static const struct mmio_ops dev_ops = {.read = dev_read, .write = dev_write};

static uint64_t rd64(struct fx *f, uint64_t pa)
{
	uint64_t v;

	memcpy(&v, f->ram + (pa - RAM_BASE), 8);
	return v;
}

static void wr64(struct fx *f, uint64_t pa, uint64_t v)
{
	memcpy(f->ram + (pa - RAM_BASE), &v, 8);
}

static uint64_t pt_alloc(struct fx *f)
{
	uint64_t pa = f->next_pt;

	f->next_pt += 4096;
	memset(f->ram + (pa - RAM_BASE), 0, 4096);
	return pa;
}

static void sync_state(struct fx *f)
{
	rv64_mmu_state_changed(f->cpu);
}

/* Turns on paging mode `mode` with a fresh root table; the cpu runs in S-mode. */
static void paging(struct fx *f, uint64_t mode)
{
	f->levels = mode == SV39 ? 3 : mode == SV48 ? 4 : 5;
	f->root = pt_alloc(f);
	f->cpu->satp = mode << 60 | f->root >> 12;
	f->cpu->priv = RV64_PRIV_S;
	sync_state(f);
}

/* Maps va -> pa with a leaf at `level` (0: 4 KiB); returns the leaf PTE's guest address. */
static uint64_t map(struct fx *f, uint64_t va, uint64_t pa, unsigned level, uint64_t flags)
{
	uint64_t table = f->root;

	for (unsigned i = f->levels - 1; i > level; i--) {
		uint64_t pte_pa = table + ((va >> (12 + 9 * i)) & 511) * 8;
		uint64_t pte = rd64(f, pte_pa);

		if (!(pte & V)) {
			pte = (pt_alloc(f) >> 12) << 10 | V;
			wr64(f, pte_pa, pte);
		}
		table = ((pte >> 10) & ((1ull << 44) - 1)) << 12;
	}
	table += ((va >> (12 + 9 * level)) & 511) * 8;
	wr64(f, table, (pa >> 12) << 10 | flags);
	return table;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->ram = aligned_alloc(4096, RAM_SIZE);
	assert_non_null(f->ram);
	memset(f->ram, 0, RAM_SIZE);
	f->mm = memmap_new();
	assert_non_null(f->mm);
	assert_int_equal(memmap_add_ram(f->mm, RAM_BASE, RAM_SIZE, f->ram), 0);
	assert_int_equal(memmap_add_mmio(f->mm, "fake", DEV_BASE, DEV_SIZE, &dev_ops, &f->dev), 0);
	f->vm.ram = f->ram;
	f->vm.ram_base = RAM_BASE;
	f->vm.ram_size = RAM_SIZE;
	f->vm.memmap = f->mm;
	f->vm.ncpus = 1;
	f->cpu = calloc(1, sizeof(*f->cpu));
	assert_non_null(f->cpu);
	f->cpu->vm = &f->vm;
	f->cpu->priv = RV64_PRIV_M;
	f->next_pt = PT_POOL;
	rv64_tlb_flush(f->cpu);
	sync_state(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	memmap_free(f->mm);
	free(f->ram);
	free(f->cpu);
	free(f);
	return 0;
}

#define assert_fault(f, call, cause, tval) \
	do { \
		(f)->cpu->exc_cause = ~0ull; \
		(f)->cpu->exc_tval = ~0ull; \
		assert_int_equal((call), -1); \
		assert_int_equal((f)->cpu->exc_cause, (cause)); \
		assert_int_equal((f)->cpu->exc_tval, (tval)); \
	} while (0)

static uint64_t load(struct fx *f, uint64_t va, unsigned size)
{
	uint64_t v = 0xbad;

	assert_int_equal(rv64_mem_load(f->cpu, va, size, &v), 0);
	return v;
}

static void store(struct fx *f, uint64_t va, unsigned size, uint64_t v)
{
	assert_int_equal(rv64_mem_store(f->cpu, va, size, v), 0);
}

/* --- untranslated */

static void test_bare(void **state)
{
	struct fx *f = *state;

	wr64(f, RAM_BASE + 0x1000, 0x1122334455667788ull);
	assert_int_equal(load(f, RAM_BASE + 0x1000, 8), 0x1122334455667788ull);
	assert_int_equal(load(f, RAM_BASE + 0x1002, 2), 0x5566);
	store(f, RAM_BASE + 0x1004, 4, 0xcafef00d);
	assert_int_equal(rd64(f, RAM_BASE + 0x1000), 0xcafef00d55667788ull);
	/* S-mode with satp Bare is untranslated too. */
	f->cpu->priv = RV64_PRIV_S;
	sync_state(f);
	assert_int_equal(load(f, RAM_BASE + 0x1000, 8), 0xcafef00d55667788ull);
	/* Outside RAM and devices: access faults with the address as tval. */
	assert_fault(f, rv64_mem_load(f->cpu, 0x40000000, 4, &(uint64_t){0}),
		     RV64_EXC_LOAD_ACCESS, 0x40000000);
	assert_fault(f, rv64_mem_store(f->cpu, RAM_BASE + RAM_SIZE, 1, 0), RV64_EXC_STORE_ACCESS,
		     RAM_BASE + RAM_SIZE);
	assert_fault(f, rv64_mem_fetch(f->cpu, RAM_BASE - 4, &(uint32_t){0}), RV64_EXC_INSN_ACCESS,
		     RAM_BASE - 4);
}

static void test_m_mode_untranslated(void **state)
{
	struct fx *f = *state;

	paging(f, SV39); /* no mappings at all */
	f->cpu->priv = RV64_PRIV_M;
	sync_state(f);
	wr64(f, RAM_BASE + 0x3000, 42);
	assert_int_equal(load(f, RAM_BASE + 0x3000, 8), 42);
	wr64(f, RAM_BASE + 0x3000, 0x00000013); /* nop */
	uint32_t insn;
	assert_int_equal(rv64_mem_fetch(f->cpu, RAM_BASE + 0x3000, &insn), 0);
	assert_int_equal(insn, 0x13);
	/* The same address from S-mode is translated and unmapped. */
	f->cpu->priv = RV64_PRIV_S;
	sync_state(f);
	assert_fault(f, rv64_mem_load(f->cpu, RAM_BASE + 0x3000, 8, &(uint64_t){0}),
		     RV64_EXC_LOAD_PAGE_FAULT, RAM_BASE + 0x3000);
	assert_fault(f, rv64_mem_fetch(f->cpu, RAM_BASE + 0x3000, &insn), RV64_EXC_INSN_PAGE_FAULT,
		     RAM_BASE + 0x3000);
}

/* --- translation modes and superpages */

static void check_4k(struct fx *f, uint64_t mode, uint64_t va)
{
	uint64_t pa = RAM_BASE + 0x123000, got;

	paging(f, mode);
	map(f, va, pa, 0, V | R | W | X | A | D);
	wr64(f, pa + 0x10, 0xfeedfacecafebeefull ^ mode);
	assert_int_equal(load(f, va + 0x10, 8), 0xfeedfacecafebeefull ^ mode);
	store(f, va + 0x18, 4, 0x12345678);
	assert_int_equal(rd64(f, pa + 0x18) & 0xffffffff, 0x12345678);
	assert_int_equal(rv64_mmu_translate(f->cpu, va + 0x234, RV64_ACC_READ, &got), 0);
	assert_int_equal(got, pa + 0x234);
	/* The neighbouring page is not mapped. */
	assert_fault(f, rv64_mem_load(f->cpu, va + 0x1000, 8, &got), RV64_EXC_LOAD_PAGE_FAULT,
		     va + 0x1000);
}

static void test_sv39(void **state)
{
	check_4k(*state, SV39, 0x0000000012345000ull);
	check_4k(*state, SV39, 0xffffffc012345000ull); /* upper half: bits 63..39 all ones */
}

static void test_sv48(void **state)
{
	check_4k(*state, SV48, 0x00007f1234567000ull);
	check_4k(*state, SV48, 0xffff800000001000ull);
}

static void test_sv57(void **state)
{
	check_4k(*state, SV57, 0x00ff123456789000ull);
	check_4k(*state, SV57, 0xff00000000002000ull);
}

static void test_superpages(void **state)
{
	struct fx *f = *state;
	uint64_t pa;

	paging(f, SV39);
	/* 2 MiB at level 1. */
	map(f, 0x40000000ull, RAM_BASE + 0x200000, 1, V | R | W | A | D);
	wr64(f, RAM_BASE + 0x200000 + 0x1abc8, 0x2222);
	assert_int_equal(load(f, 0x40000000ull + 0x1abc8, 8), 0x2222);
	/* 1 GiB at level 2: RAM_BASE is 1 GiB aligned. */
	map(f, 0x1c0000000ull, RAM_BASE, 2, V | R | W | A | D);
	wr64(f, RAM_BASE + 0x1234568, 0x1111);
	assert_int_equal(load(f, 0x1c0000000ull + 0x1234568, 8), 0x1111);
	assert_int_equal(rv64_mmu_translate(f->cpu, 0x1c0000000ull + 0x1234567, RV64_ACC_READ, &pa),
			 0);
	assert_int_equal(pa, RAM_BASE + 0x1234567);

	/* 512 GiB at level 3 of Sv48: maps physical 0.. so RAM sits at offset RAM_BASE. */
	paging(f, SV48);
	map(f, 0x0000008000000000ull, 0, 3, V | R | W | A | D);
	wr64(f, RAM_BASE + 0x5008, 0x5125);
	assert_int_equal(load(f, 0x0000008000000000ull + RAM_BASE + 0x5008, 8), 0x5125);
	/* Devices through a superpage too. */
	assert_int_equal(load(f, 0x0000008000000000ull + DEV_BASE + 0x40, 4), (0x40 << 8 | 4));
}

static void test_misaligned_superpage(void **state)
{
	struct fx *f = *state;

	paging(f, SV39);
	/* A 2 MiB leaf whose PPN is only 4 KiB aligned. */
	map(f, 0x40000000ull, RAM_BASE + 0x201000, 1, V | R | W | X | A | D);
	assert_fault(f, rv64_mem_load(f->cpu, 0x40000010ull, 8, &(uint64_t){0}),
		     RV64_EXC_LOAD_PAGE_FAULT, 0x40000010ull);
	assert_fault(f, rv64_mem_store(f->cpu, 0x40000010ull, 8, 0), RV64_EXC_STORE_PAGE_FAULT,
		     0x40000010ull);
	/* A 1 GiB leaf that is only 2 MiB aligned. */
	map(f, 0x80000000ull, RAM_BASE + 0x200000, 2, V | R | W | X | A | D);
	assert_fault(f, rv64_mem_fetch(f->cpu, 0x80000100ull, &(uint32_t){0}),
		     RV64_EXC_INSN_PAGE_FAULT, 0x80000100ull);
}

/* --- A and D */

static void test_accessed_dirty(void **state)
{
	struct fx *f = *state;
	uint64_t va = 0x10000ull, pte_pa;
	uint32_t insn;

	paging(f, SV39);
	pte_pa = map(f, va, RAM_BASE + 0x40000, 0, V | R | W | X);
	load(f, va + 8, 8);
	assert_int_equal(rd64(f, pte_pa) & (A | D), A);
	/* The store hits nothing in the write TLB: it walks again and sets D. */
	store(f, va + 8, 8, 7);
	assert_int_equal(rd64(f, pte_pa) & (A | D), A | D);
	assert_int_equal(rd64(f, RAM_BASE + 0x40008), 7);

	/* A fetch sets A only. */
	pte_pa = map(f, va + 0x1000, RAM_BASE + 0x41000, 0, V | R | X);
	assert_int_equal(rv64_mem_fetch(f->cpu, va + 0x1000, &insn), 0);
	assert_int_equal(rd64(f, pte_pa) & (A | D), A);
	/* A store that faults (no W) sets neither D nor anything else. */
	assert_fault(f, rv64_mem_store(f->cpu, va + 0x1000, 1, 0), RV64_EXC_STORE_PAGE_FAULT,
		     va + 0x1000);
	assert_int_equal(rd64(f, pte_pa) & D, 0);

	/* A store first sets both. */
	pte_pa = map(f, va + 0x2000, RAM_BASE + 0x42000, 0, V | R | W);
	store(f, va + 0x2000, 2, 0xabcd);
	assert_int_equal(rd64(f, pte_pa) & (A | D), A | D);
	/* Other PTE bits (and the PPN) are preserved. */
	assert_int_equal(rd64(f, pte_pa), ((RAM_BASE + 0x42000) >> 12) << 10 | V | R | W | A | D);
}

/* --- permissions */

static void test_permissions(void **state)
{
	struct fx *f = *state;
	uint64_t va = 0x200000ull;
	uint32_t insn;

	paging(f, SV39);
	map(f, va, RAM_BASE + 0x50000, 0, V | R | A | D);            /* read-only */
	map(f, va + 0x1000, RAM_BASE + 0x51000, 0, V | X | A | D);   /* execute-only */
	map(f, va + 0x2000, RAM_BASE + 0x52000, 0, V | R | W | A | D); /* no execute */
	map(f, va + 0x3000, RAM_BASE + 0x53000, 0, R | W | A | D);   /* invalid */
	map(f, va + 0x4000, RAM_BASE + 0x54000, 0, V | W | A | D);   /* W without R: reserved */
	map(f, va + 0x5000, RAM_BASE + 0x55000, 0, V | R | A | D | 1ull << 54); /* reserved bit */
	map(f, va + 0x6000, RAM_BASE + 0x56000, 0, V | R | A | D | 1ull << 63); /* N bit */
	map(f, va + 0x7000, RAM_BASE + 0x57000, 0, V | R | A | D | 1ull << 61); /* PBMT */

	load(f, va, 8);
	assert_fault(f, rv64_mem_store(f->cpu, va + 8, 8, 0), RV64_EXC_STORE_PAGE_FAULT, va + 8);
	assert_fault(f, rv64_mem_fetch(f->cpu, va, &insn), RV64_EXC_INSN_PAGE_FAULT, va);
	assert_fault(f, rv64_mem_load(f->cpu, va + 0x1010, 4, &(uint64_t){0}),
		     RV64_EXC_LOAD_PAGE_FAULT, va + 0x1010);
	assert_int_equal(rv64_mem_fetch(f->cpu, va + 0x1010, &insn), 0);
	assert_fault(f, rv64_mem_fetch(f->cpu, va + 0x2010, &insn), RV64_EXC_INSN_PAGE_FAULT,
		     va + 0x2010);
	store(f, va + 0x2010, 8, 1);
	for (uint64_t p = 3; p <= 7; p++) {
		assert_fault(f, rv64_mem_load(f->cpu, va + p * 0x1000, 1, &(uint64_t){0}),
			     RV64_EXC_LOAD_PAGE_FAULT, va + p * 0x1000);
		assert_fault(f, rv64_mem_store(f->cpu, va + p * 0x1000 + 1, 1, 0),
			     RV64_EXC_STORE_PAGE_FAULT, va + p * 0x1000 + 1);
	}
}

static void test_nonleaf_reserved_bits(void **state)
{
	struct fx *f = *state;
	uint64_t va = 0x40000000ull, root_pte;

	paging(f, SV39);
	map(f, va, RAM_BASE + 0x60000, 0, V | R | W | A | D);
	load(f, va, 8);
	root_pte = f->root + ((va >> 30) & 511) * 8;
	for (unsigned i = 0; i < 3; i++) {
		const uint64_t bad[] = {A, D, U};

		wr64(f, root_pte, rd64(f, root_pte) | bad[i]);
		rv64_tlb_flush(f->cpu);
		assert_fault(f, rv64_mem_load(f->cpu, va, 8, &(uint64_t){0}),
			     RV64_EXC_LOAD_PAGE_FAULT, va);
		wr64(f, root_pte, rd64(f, root_pte) & ~bad[i]);
	}
	rv64_tlb_flush(f->cpu);
	load(f, va, 8);
	/* A pointer at level 0 (no leaf found) faults. */
	map(f, va + 0x1000, RAM_BASE + 0x61000, 0, V);
	assert_fault(f, rv64_mem_load(f->cpu, va + 0x1000, 8, &(uint64_t){0}),
		     RV64_EXC_LOAD_PAGE_FAULT, va + 0x1000);
}

static void test_user_supervisor(void **state)
{
	struct fx *f = *state;
	uint64_t uva = 0x10000ull, sva = 0x20000ull;
	uint32_t insn;

	paging(f, SV39);
	map(f, uva, RAM_BASE + 0x70000, 0, V | R | W | X | U | A | D);
	map(f, sva, RAM_BASE + 0x71000, 0, V | R | W | X | A | D);
	wr64(f, RAM_BASE + 0x70000, 0x7575);

	/* U-mode: its own page yes, supervisor pages no. */
	f->cpu->priv = RV64_PRIV_U;
	sync_state(f);
	assert_int_equal(load(f, uva, 8), 0x7575);
	store(f, uva + 8, 8, 1);
	assert_int_equal(rv64_mem_fetch(f->cpu, uva, &insn), 0);
	assert_fault(f, rv64_mem_load(f->cpu, sva, 8, &(uint64_t){0}), RV64_EXC_LOAD_PAGE_FAULT,
		     sva);
	assert_fault(f, rv64_mem_store(f->cpu, sva, 8, 0), RV64_EXC_STORE_PAGE_FAULT, sva);
	assert_fault(f, rv64_mem_fetch(f->cpu, sva, &insn), RV64_EXC_INSN_PAGE_FAULT, sva);

	/* S-mode, SUM=0: U pages fault even though U-mode just filled the TLB. */
	f->cpu->priv = RV64_PRIV_S;
	sync_state(f);
	assert_fault(f, rv64_mem_load(f->cpu, uva, 8, &(uint64_t){0}), RV64_EXC_LOAD_PAGE_FAULT,
		     uva);
	assert_fault(f, rv64_mem_store(f->cpu, uva + 8, 8, 0), RV64_EXC_STORE_PAGE_FAULT, uva + 8);
	load(f, sva, 8);
	/* SUM=1: loads and stores work, execution never does. */
	f->cpu->mstatus |= MSTATUS_SUM;
	sync_state(f);
	assert_int_equal(load(f, uva, 8), 0x7575);
	store(f, uva + 8, 8, 2);
	assert_fault(f, rv64_mem_fetch(f->cpu, uva, &insn), RV64_EXC_INSN_PAGE_FAULT, uva);
	/* SUM back to 0: the cached translations must not leak through. */
	f->cpu->mstatus &= ~MSTATUS_SUM;
	sync_state(f);
	assert_fault(f, rv64_mem_load(f->cpu, uva, 8, &(uint64_t){0}), RV64_EXC_LOAD_PAGE_FAULT,
		     uva);
	assert_fault(f, rv64_mem_store(f->cpu, uva + 8, 8, 0), RV64_EXC_STORE_PAGE_FAULT, uva + 8);
	/* And to U again: the supervisor page cached by S-mode is refused. */
	f->cpu->priv = RV64_PRIV_U;
	sync_state(f);
	assert_fault(f, rv64_mem_load(f->cpu, sva, 8, &(uint64_t){0}), RV64_EXC_LOAD_PAGE_FAULT,
		     sva);
}

static void test_mxr(void **state)
{
	struct fx *f = *state;
	uint64_t va = 0x30000ull;

	paging(f, SV39);
	map(f, va, RAM_BASE + 0x80000, 0, V | X | A | D);
	wr64(f, RAM_BASE + 0x80000, 0x1234);
	assert_fault(f, rv64_mem_load(f->cpu, va, 8, &(uint64_t){0}), RV64_EXC_LOAD_PAGE_FAULT, va);
	f->cpu->mstatus |= MSTATUS_MXR;
	sync_state(f);
	assert_int_equal(load(f, va, 8), 0x1234);
	/* MXR never allows stores. */
	assert_fault(f, rv64_mem_store(f->cpu, va, 8, 0), RV64_EXC_STORE_PAGE_FAULT, va);
	f->cpu->mstatus &= ~MSTATUS_MXR;
	sync_state(f);
	assert_fault(f, rv64_mem_load(f->cpu, va, 8, &(uint64_t){0}), RV64_EXC_LOAD_PAGE_FAULT, va);
}

static void test_mprv(void **state)
{
	struct fx *f = *state;
	uint64_t va = 0x50000ull;
	uint32_t insn;

	paging(f, SV39);
	map(f, va, RAM_BASE + 0x90000, 0, V | R | W | A | D);
	wr64(f, RAM_BASE + 0x90000, 0x9090);
	wr64(f, RAM_BASE + 0x1000, 0x13);
	f->cpu->priv = RV64_PRIV_M;
	f->cpu->mstatus |= MSTATUS_MPRV | 1ull << 11; /* MPP = S */
	sync_state(f);
	assert_int_equal(load(f, va, 8), 0x9090);
	store(f, va + 8, 8, 0x77);
	assert_int_equal(rd64(f, RAM_BASE + 0x90008), 0x77);
	/* Fetches ignore MPRV. */
	assert_int_equal(rv64_mem_fetch(f->cpu, RAM_BASE + 0x1000, &insn), 0);
	assert_int_equal(insn, 0x13);
	/* MPP = U: the supervisor page is refused. */
	f->cpu->mstatus &= ~(3ull << 11);
	sync_state(f);
	assert_fault(f, rv64_mem_load(f->cpu, va, 8, &(uint64_t){0}), RV64_EXC_LOAD_PAGE_FAULT, va);
	/* MPP = M: untranslated again. */
	f->cpu->mstatus |= 3ull << 11;
	sync_state(f);
	assert_int_equal(load(f, RAM_BASE + 0x90000, 8), 0x9090);
	/* MPRV = 0: plain M-mode. */
	f->cpu->mstatus &= ~(MSTATUS_MPRV | 3ull << 11);
	sync_state(f);
	assert_int_equal(load(f, RAM_BASE + 0x90000, 8), 0x9090);
}

static void test_non_canonical(void **state)
{
	struct fx *f = *state;
	uint64_t v;

	paging(f, SV39);
	/* Map index 256 of the root so that only canonicality can fail. */
	map(f, 0xffffffc000000000ull, RAM_BASE, 2, V | R | W | X | A | D);
	load(f, 0xffffffc000001000ull, 8);
	assert_fault(f, rv64_mem_load(f->cpu, 0x0000004000001000ull, 8, &v),
		     RV64_EXC_LOAD_PAGE_FAULT, 0x0000004000001000ull);
	assert_fault(f, rv64_mem_store(f->cpu, 0x7fffffc000001000ull, 8, 0),
		     RV64_EXC_STORE_PAGE_FAULT, 0x7fffffc000001000ull);
	assert_fault(f, rv64_mem_fetch(f->cpu, 0x8000004000000000ull, &(uint32_t){0}),
		     RV64_EXC_INSN_PAGE_FAULT, 0x8000004000000000ull);

	paging(f, SV48);
	map(f, 0xffff800000000000ull, 0, 3, V | R | W | A | D);
	load(f, 0xffff800000000000ull + RAM_BASE, 8);
	assert_fault(f, rv64_mem_load(f->cpu, 0x0000800000000000ull + RAM_BASE, 8, &v),
		     RV64_EXC_LOAD_PAGE_FAULT, 0x0000800000000000ull + RAM_BASE);

	paging(f, SV57);
	assert_fault(f, rv64_mem_load(f->cpu, 0x0100000000000000ull, 8, &v),
		     RV64_EXC_LOAD_PAGE_FAULT, 0x0100000000000000ull);
}

static void test_pte_outside_ram(void **state)
{
	struct fx *f = *state;
	uint64_t va = 0x40000000ull;

	paging(f, SV39);
	/* A root entry pointing at a device page, another pointing past RAM. */
	wr64(f, f->root + 1 * 8, (DEV_BASE >> 12) << 10 | V);
	wr64(f, f->root + 2 * 8, ((RAM_BASE + RAM_SIZE) >> 12) << 10 | V);
	assert_fault(f, rv64_mem_load(f->cpu, va, 8, &(uint64_t){0}), RV64_EXC_LOAD_ACCESS, va);
	assert_fault(f, rv64_mem_store(f->cpu, va, 8, 0), RV64_EXC_STORE_ACCESS, va);
	assert_fault(f, rv64_mem_fetch(f->cpu, 2 * va, &(uint32_t){0}), RV64_EXC_INSN_ACCESS,
		     2 * va);
	/* satp pointing outside RAM. */
	f->cpu->satp = SV39 << 60 | 0x1000;
	sync_state(f);
	assert_fault(f, rv64_mem_load(f->cpu, 0, 1, &(uint64_t){0}), RV64_EXC_LOAD_ACCESS, 0);
}

/* --- devices */

static void test_mmio(void **state)
{
	struct fx *f = *state;
	uint64_t va = 0x60000ull;
	uint32_t insn;

	paging(f, SV39);
	map(f, va, DEV_BASE, 0, V | R | W | X | A | D);
	map(f, va + 0x1000, 0x20000000ull, 0, V | R | W | A | D); /* nothing there */
	for (int round = 0; round < 2; round++) { /* again with the translation cached */
		assert_int_equal(load(f, va + 0x10, 4), 0x10 << 8 | 4);
		assert_int_equal(load(f, va + 0x18, 8), 0xd0d0000000000000ull | 0x18 << 8 | 8);
		store(f, va + 0x20, 2, 0xbeef);
		assert_int_equal(f->dev.last_off, 0x20);
		assert_int_equal(f->dev.last_val, 0xbeef);
		assert_int_equal(f->dev.last_size, 2);
	}
	assert_int_equal(f->dev.writes, 2);
	assert_fault(f, rv64_mem_fetch(f->cpu, va, &insn), RV64_EXC_INSN_ACCESS, va);
	assert_fault(f, rv64_mem_load(f->cpu, va + 0x1008, 8, &(uint64_t){0}),
		     RV64_EXC_LOAD_ACCESS, va + 0x1008);
	assert_fault(f, rv64_mem_store(f->cpu, va + 0x1008, 8, 0), RV64_EXC_STORE_ACCESS,
		     va + 0x1008);
	/* Misaligned device access: access fault, the device sees nothing. */
	assert_fault(f, rv64_mem_store(f->cpu, va + 0x21, 2, 0), RV64_EXC_STORE_ACCESS, va + 0x21);
	assert_int_equal(f->dev.writes, 2);
	/* Atomics on devices fault as stores. */
	void *host;
	uint64_t pa;
	assert_fault(f, rv64_mem_atomic_ptr(f->cpu, va + 8, 8, false, &host, &pa),
		     RV64_EXC_STORE_ACCESS, va + 8);
	assert_fault(f, rv64_mem_atomic_ptr(f->cpu, va + 8, 8, true, &host, &pa),
		     RV64_EXC_LOAD_ACCESS, va + 8);
}

/* --- misaligned and page-crossing */

static void test_misaligned(void **state)
{
	struct fx *f = *state;
	uint64_t va = 0x100000ull;

	paging(f, SV39);
	/* Two virtual neighbours mapped to distant physical pages. */
	map(f, va, RAM_BASE + 0xa0000, 0, V | R | W | A | D);
	map(f, va + 0x1000, RAM_BASE + 0xc0000, 0, V | R | W | A | D);
	map(f, va + 0x2000, RAM_BASE + 0xd0000, 0, V | R | A | D);
	wr64(f, RAM_BASE + 0xa0000, 0x8877665544332211ull);
	wr64(f, RAM_BASE + 0xa0008, 0xffeeddccbbaa9988ull);
	assert_int_equal(load(f, va + 3, 8), 0xaa99888877665544ull);
	assert_int_equal(load(f, va + 7, 2), 0x8888);
	store(f, va + 1, 4, 0xdeadbeef);
	assert_int_equal(rd64(f, RAM_BASE + 0xa0000), 0x887766deadbeef11ull);

	wr64(f, RAM_BASE + 0xa0ff8, 0x0706050403020100ull);
	wr64(f, RAM_BASE + 0xc0000, 0x0f0e0d0c0b0a0908ull);
	assert_int_equal(load(f, va + 0xffc, 8), 0x0b0a090807060504ull);
	assert_int_equal(load(f, va + 0xfff, 2), 0x0807);
	store(f, va + 0xffd, 8, 0x1112131415161718ull);
	assert_int_equal(rd64(f, RAM_BASE + 0xa0ff8), 0x1617180403020100ull);
	assert_int_equal(rd64(f, RAM_BASE + 0xc0000), 0x0f0e0d1112131415ull);

	/* Store crossing into a read-only page: fault at the second page, nothing written. */
	wr64(f, RAM_BASE + 0xc0ff8, 0);
	assert_fault(f, rv64_mem_store(f->cpu, va + 0x1ffe, 4, 0xffffffff),
		     RV64_EXC_STORE_PAGE_FAULT, va + 0x2000);
	assert_int_equal(rd64(f, RAM_BASE + 0xc0ff8), 0);
	/* Load crossing into an unmapped page. */
	assert_fault(f, rv64_mem_load(f->cpu, va + 0x2ffa, 8, &(uint64_t){0}),
		     RV64_EXC_LOAD_PAGE_FAULT, va + 0x3000);
	/* The first portion's fault wins and reports the original address. */
	assert_fault(f, rv64_mem_load(f->cpu, va - 2, 4, &(uint64_t){0}),
		     RV64_EXC_LOAD_PAGE_FAULT, va - 2);
	/* Atomics must be aligned. */
	void *host;
	uint64_t pa;
	assert_fault(f, rv64_mem_atomic_ptr(f->cpu, va + 4, 8, false, &host, &pa),
		     RV64_EXC_STORE_MISALIGNED, va + 4);
	assert_fault(f, rv64_mem_atomic_ptr(f->cpu, va + 2, 4, true, &host, &pa),
		     RV64_EXC_LOAD_MISALIGNED, va + 2);
}

static void test_fetch_crossing(void **state)
{
	struct fx *f = *state;
	uint64_t va = 0x400000ull;
	uint32_t insn;

	paging(f, SV39);
	map(f, va, RAM_BASE + 0xe0000, 0, V | R | X | A | D);
	/* A 16-bit instruction in the last parcel needs nothing from the next page. */
	memcpy(f->ram + 0xe0ffe, &(uint16_t){0x4501}, 2); /* c.li a0, 0 */
	assert_int_equal(rv64_mem_fetch(f->cpu, va + 0xffe, &insn), 0);
	assert_int_equal(insn, 0x4501);
	/* A 32-bit one whose second half is on an unmapped page. */
	memcpy(f->ram + 0xe0ffe, &(uint16_t){0x0513}, 2);
	assert_fault(f, rv64_mem_fetch(f->cpu, va + 0xffe, &insn), RV64_EXC_INSN_PAGE_FAULT,
		     va + 0x1000);
	/* Mapped elsewhere: both halves come together. */
	map(f, va + 0x1000, RAM_BASE + 0xf0000, 0, V | X | A | D);
	memcpy(f->ram + 0xf0000, &(uint16_t){0x0010}, 2);
	assert_int_equal(rv64_mem_fetch(f->cpu, va + 0xffe, &insn), 0);
	assert_int_equal(insn, 0x00100513); /* li a0, 1 */
	/* Ordinary fetches. */
	memcpy(f->ram + 0xe0100, &(uint32_t){0x00a00593}, 4);
	assert_int_equal(rv64_mem_fetch(f->cpu, va + 0x100, &insn), 0);
	assert_int_equal(insn, 0x00a00593);
	assert_fault(f, rv64_mem_fetch(f->cpu, va + 0x101, &insn), RV64_EXC_INSN_MISALIGNED,
		     va + 0x101);
}

/* --- TLB */

static void test_tlb_reuse_and_flush(void **state)
{
	struct fx *f = *state;
	uint64_t va = 0x700000ull, pte_pa, misses;

	paging(f, SV39);
	pte_pa = map(f, va, RAM_BASE + 0x100000, 0, V | R | W | A | D);
	wr64(f, RAM_BASE + 0x100000, 1);
	wr64(f, RAM_BASE + 0x101000, 2);
	assert_int_equal(load(f, va, 8), 1);
	misses = f->cpu->stats.tlb_misses;
	assert_int_equal(load(f, va, 8), 1);
	assert_int_equal(f->cpu->stats.tlb_misses, misses);
	assert_true(f->cpu->stats.tlb_hits > 0);
	/* Retarget the PTE without a fence: the old translation is still used... */
	wr64(f, pte_pa, ((RAM_BASE + 0x101000) >> 12) << 10 | V | R | W | A | D);
	assert_int_equal(load(f, va, 8), 1);
	/* ...until SFENCE.VMA of that address. */
	rv64_tlb_flush_page(f->cpu, va + 0x123);
	assert_int_equal(load(f, va, 8), 2);
	assert_int_equal(f->cpu->stats.tlb_misses, misses + 1);
	/* Unmapped: fault after a full flush. */
	wr64(f, pte_pa, 0);
	assert_int_equal(load(f, va, 8), 2);
	rv64_tlb_flush(f->cpu);
	assert_fault(f, rv64_mem_load(f->cpu, va, 8, &(uint64_t){0}), RV64_EXC_LOAD_PAGE_FAULT, va);
}

static void test_tlb_superpage_flush(void **state)
{
	struct fx *f = *state;
	uint64_t va = 0x40000000ull, pte_pa;

	paging(f, SV39);
	pte_pa = map(f, va, RAM_BASE + 0x200000, 1, V | R | W | A | D);
	wr64(f, RAM_BASE + 0x200000 + 0x5000, 5);
	assert_int_equal(load(f, va + 0x5000, 8), 5);
	/* Remove the superpage and fence a different address inside it. */
	wr64(f, pte_pa, 0);
	rv64_tlb_flush_page(f->cpu, va + 0x1ff000);
	assert_fault(f, rv64_mem_load(f->cpu, va + 0x5000, 8, &(uint64_t){0}),
		     RV64_EXC_LOAD_PAGE_FAULT, va + 0x5000);
}

static void test_tlb_satp_change(void **state)
{
	struct fx *f = *state;
	uint64_t va = 0x800000ull, first_root;

	paging(f, SV39);
	map(f, va, RAM_BASE + 0x110000, 0, V | R | W | A | D);
	wr64(f, RAM_BASE + 0x110000, 11);
	wr64(f, RAM_BASE + 0x120000, 12);
	assert_int_equal(load(f, va, 8), 11);
	first_root = f->root;
	paging(f, SV39); /* a new address space (satp write) */
	map(f, va, RAM_BASE + 0x120000, 0, V | R | W | A | D);
	assert_int_equal(load(f, va, 8), 12);
	f->cpu->satp = SV39 << 60 | first_root >> 12;
	sync_state(f);
	assert_int_equal(load(f, va, 8), 11);
}

static void test_tlb_victim(void **state)
{
	struct fx *f = *state;
	uint64_t va1 = 0xa00000ull, va2 = va1 + RV64_TLB_SIZE * 4096ull, pte1, misses;

	/* Two pages that share a direct-mapped slot: both stay cached, via the victim TLB. */
	paging(f, SV39);
	pte1 = map(f, va1, RAM_BASE + 0x140000, 0, V | R | W | A | D);
	map(f, va2, RAM_BASE + 0x141000, 0, V | R | W | A | D);
	wr64(f, RAM_BASE + 0x140000, 1);
	wr64(f, RAM_BASE + 0x141000, 2);
	wr64(f, RAM_BASE + 0x142000, 3);
	assert_int_equal(load(f, va1, 8), 1);
	assert_int_equal(load(f, va2, 8), 2);
	misses = f->cpu->stats.tlb_misses;
	for (int i = 0; i < 4; i++) {
		assert_int_equal(load(f, va1, 8), 1);
		assert_int_equal(load(f, va2, 8), 2);
	}
	assert_int_equal(f->cpu->stats.tlb_misses, misses);
	/* SFENCE.VMA of the page now in the victim TLB drops it there too. */
	wr64(f, pte1, ((RAM_BASE + 0x142000) >> 12) << 10 | V | R | W | A | D);
	rv64_tlb_flush_page(f->cpu, va1);
	assert_int_equal(load(f, va2, 8), 2);
	assert_int_equal(load(f, va1, 8), 3);
	/* A full flush empties it. */
	wr64(f, pte1, 0);
	assert_int_equal(load(f, va2, 8), 2);
	rv64_tlb_flush(f->cpu);
	assert_fault(f, rv64_mem_load(f->cpu, va1, 8, &(uint64_t){0}), RV64_EXC_LOAD_PAGE_FAULT,
		     va1);
}

/* The guest's own PTE updates (another hart) are never lost to the walker's A/D writes. */
struct pte_racer {
	uint64_t *pte;
	_Atomic bool stop;
	unsigned lost, rounds;
};

static void *pte_racer_run(void *arg)
{
	struct pte_racer *r = arg;
	uint64_t expect = 0;

	while (!r->stop) {
		/* Toggle an RSW bit; the old value must show our previous toggle. */
		uint64_t old = __atomic_fetch_xor(r->pte, 1ull << 8, __ATOMIC_SEQ_CST);

		if ((old & (1ull << 8)) != expect)
			r->lost++;
		expect = (old & (1ull << 8)) ^ (1ull << 8);
		__atomic_fetch_and(r->pte, ~(A | D), __ATOMIC_SEQ_CST);
		r->rounds++;
	}
	return NULL;
}

static void test_ad_update_atomic(void **state)
{
	struct fx *f = *state;
	uint64_t va = 0xb00000ull, pte_pa;
	struct pte_racer r = {.lost = 0};
	pthread_t t;

	paging(f, SV39);
	pte_pa = map(f, va, RAM_BASE + 0x150000, 0, V | R | W);
	r.pte = (uint64_t *)(f->ram + (pte_pa - RAM_BASE));
	assert_int_equal(pthread_create(&t, NULL, pte_racer_run, &r), 0);
	for (unsigned i = 0; i < 200000; i++) {
		rv64_tlb_flush_page(f->cpu, va);
		store(f, va + 8 * (i & 7), 8, i);
	}
	r.stop = true;
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(r.lost, 0);
	assert_true(r.rounds > 0);
	assert_int_equal(rd64(f, pte_pa) >> 10, (RAM_BASE + 0x150000) >> 12);
}

static void test_atomic_ptr(void **state)
{
	struct fx *f = *state;
	uint64_t va = 0x900000ull, pte_pa, pa;
	void *host;

	paging(f, SV39);
	pte_pa = map(f, va, RAM_BASE + 0x130000, 0, V | R | W | A);
	map(f, va + 0x1000, RAM_BASE + 0x131000, 0, V | R | A | D);
	assert_int_equal(rv64_mem_atomic_ptr(f->cpu, va + 8, 8, true, &host, &pa), 0);
	assert_ptr_equal(host, f->ram + 0x130008);
	assert_int_equal(pa, RAM_BASE + 0x130008);
	assert_int_equal(rd64(f, pte_pa) & D, 0);
	assert_int_equal(rv64_mem_atomic_ptr(f->cpu, va + 8, 8, false, &host, &pa), 0);
	assert_int_equal(rd64(f, pte_pa) & D, D);
	/* LR works on a read-only page; AMO/SC need write permission. */
	assert_int_equal(rv64_mem_atomic_ptr(f->cpu, va + 0x1004, 4, true, &host, &pa), 0);
	assert_fault(f, rv64_mem_atomic_ptr(f->cpu, va + 0x1004, 4, false, &host, &pa),
		     RV64_EXC_STORE_PAGE_FAULT, va + 0x1004);
}

/* --- PMP, priv 1.12 §3.7 */

#define PMP_R 1u
#define PMP_W 2u
#define PMP_X 4u
#define PMP_TOR (1u << 3)
#define PMP_NA4 (2u << 3)
#define PMP_NAPOT (3u << 3)
#define PMP_L 0x80u

static uint64_t napot(uint64_t base, uint64_t size)
{
	return (base >> 2) | ((size >> 3) - 1);
}

static void pmp_set(struct fx *f, unsigned i, uint8_t cfg, uint64_t addr)
{
	f->cpu->pmpcfg[i] = cfg;
	f->cpu->pmpaddr[i] = addr;
	rv64_pmp_changed(f->cpu);
}

/* OpenSBI's shape: entry 0 fences off firmware memory, the last entry gives S-mode everything. */
static void test_pmp_napot(void **state)
{
	struct fx *f = *state;

	wr64(f, RAM_BASE + 0x8000, 0x88);
	wr64(f, RAM_BASE + 0x10000, 0x1010);
	/* M-mode loads fill the TLB first; the PMP writes must take effect regardless. */
	assert_int_equal(load(f, RAM_BASE + 0x8000, 8), 0x88);
	pmp_set(f, 0, PMP_NAPOT, napot(RAM_BASE, 0x10000));
	pmp_set(f, 15, PMP_NAPOT | PMP_R | PMP_W | PMP_X, ~0ull >> 10);
	assert_int_equal(load(f, RAM_BASE + 0x8000, 8), 0x88); /* M: entry not locked */
	f->cpu->priv = RV64_PRIV_S;
	sync_state(f);
	assert_fault(f, rv64_mem_load(f->cpu, RAM_BASE + 0x8000, 8, &(uint64_t){0}),
		     RV64_EXC_LOAD_ACCESS, RAM_BASE + 0x8000);
	assert_fault(f, rv64_mem_store(f->cpu, RAM_BASE + 0xfff8, 8, 0), RV64_EXC_STORE_ACCESS,
		     RAM_BASE + 0xfff8);
	assert_fault(f, rv64_mem_fetch(f->cpu, RAM_BASE, &(uint32_t){0}), RV64_EXC_INSN_ACCESS,
		     RAM_BASE);
	assert_int_equal(load(f, RAM_BASE + 0x10000, 8), 0x1010);
	/* Straddling the boundary: partial match of entry 0 fails. */
	assert_fault(f, rv64_mem_load(f->cpu, RAM_BASE + 0xfffc, 8, &(uint64_t){0}),
		     RV64_EXC_LOAD_ACCESS, RAM_BASE + 0xfffc);
	/* Translated S-mode accesses are checked on the physical address. */
	paging(f, SV39);
	map(f, 0x5000, RAM_BASE + 0x8000, 0, V | R | W | A | D);
	map(f, 0x6000, RAM_BASE + 0x10000, 0, V | R | W | A | D);
	assert_fault(f, rv64_mem_load(f->cpu, 0x5000, 8, &(uint64_t){0}), RV64_EXC_LOAD_ACCESS,
		     0x5000);
	assert_int_equal(load(f, 0x6000, 8), 0x1010);
	/* Page tables inside the protected region: the walk itself faults (S-mode implicit). */
	f->cpu->satp = SV39 << 60 | (RAM_BASE + 0x4000) >> 12;
	sync_state(f);
	assert_fault(f, rv64_mem_store(f->cpu, 0x6000, 8, 0), RV64_EXC_STORE_ACCESS, 0x6000);

	/* Locked: applies to M-mode too. */
	f->cpu->priv = RV64_PRIV_M;
	sync_state(f);
	pmp_set(f, 0, PMP_NAPOT | PMP_L | PMP_R, napot(RAM_BASE, 0x10000));
	assert_int_equal(load(f, RAM_BASE + 0x8000, 8), 0x88);
	assert_fault(f, rv64_mem_store(f->cpu, RAM_BASE + 0x8000, 8, 0), RV64_EXC_STORE_ACCESS,
		     RAM_BASE + 0x8000);
	assert_fault(f, rv64_mem_fetch(f->cpu, RAM_BASE + 0x8000, &(uint32_t){0}),
		     RV64_EXC_INSN_ACCESS, RAM_BASE + 0x8000);
	/* M-mode with no matching entry succeeds. */
	pmp_set(f, 15, 0, 0);
	assert_int_equal(load(f, RAM_BASE + 0x10000, 8), 0x1010);
	/* S-mode with no matching entry (but active entries) fails. */
	f->cpu->priv = RV64_PRIV_S;
	f->cpu->satp = 0;
	sync_state(f);
	assert_fault(f, rv64_mem_load(f->cpu, RAM_BASE + 0x10000, 8, &(uint64_t){0}),
		     RV64_EXC_LOAD_ACCESS, RAM_BASE + 0x10000);
	/* With every entry off, S-mode may go anywhere (PMP never programmed). */
	pmp_set(f, 0, 0, 0);
	assert_int_equal(load(f, RAM_BASE + 0x10000, 8), 0x1010);
}

static void test_pmp_tor_priority(void **state)
{
	struct fx *f = *state;

	f->cpu->priv = RV64_PRIV_S;
	sync_state(f);
	wr64(f, RAM_BASE + 0x2000, 0x2000);
	wr64(f, RAM_BASE + 0x3000, 0x3000);
	/* Entry 0: TOR [0, RAM_BASE+0x3000) read-only; entry 1: TOR up to RAM end, RW. */
	pmp_set(f, 0, PMP_TOR | PMP_R, (RAM_BASE + 0x3000) >> 2);
	pmp_set(f, 1, PMP_TOR | PMP_R | PMP_W, (RAM_BASE + RAM_SIZE) >> 2);
	assert_int_equal(load(f, RAM_BASE + 0x2000, 8), 0x2000);
	assert_fault(f, rv64_mem_store(f->cpu, RAM_BASE + 0x2ff8, 8, 0), RV64_EXC_STORE_ACCESS,
		     RAM_BASE + 0x2ff8);
	store(f, RAM_BASE + 0x3000, 8, 0x3333);
	assert_fault(f, rv64_mem_fetch(f->cpu, RAM_BASE + 0x3000, &(uint32_t){0}),
		     RV64_EXC_INSN_ACCESS, RAM_BASE + 0x3000);
	/* A store crossing from entry 0 into entry 1 fails on its first portion. */
	assert_fault(f, rv64_mem_store(f->cpu, RAM_BASE + 0x2ffc, 8, 0), RV64_EXC_STORE_ACCESS,
		     RAM_BASE + 0x2ffc);

	/* Priority: an NA4 entry 2 can't override entry 1 for the word it names... */
	pmp_set(f, 2, PMP_NA4, (RAM_BASE + 0x4000) >> 2);
	assert_int_equal(load(f, RAM_BASE + 0x4000, 4), 0);
	/* ...but as entry 0 it wins over everything below, for those 4 bytes only. */
	pmp_set(f, 2, 0, 0);
	pmp_set(f, 1, PMP_TOR | PMP_R | PMP_W, (RAM_BASE + 0x3000) >> 2); /* empty below */
	pmp_set(f, 0, PMP_NA4, (RAM_BASE + 0x4000) >> 2);
	pmp_set(f, 3, PMP_NAPOT | PMP_R | PMP_W, ~0ull >> 10);
	/* Same page, twice each: the non-uniform page must not be cached as accessible. */
	for (int round = 0; round < 2; round++) {
		assert_int_equal(load(f, RAM_BASE + 0x4008, 8), 0);
		assert_fault(f, rv64_mem_load(f->cpu, RAM_BASE + 0x4000, 4, &(uint64_t){0}),
			     RV64_EXC_LOAD_ACCESS, RAM_BASE + 0x4000);
		assert_fault(f, rv64_mem_load(f->cpu, RAM_BASE + 0x4000, 8, &(uint64_t){0}),
			     RV64_EXC_LOAD_ACCESS, RAM_BASE + 0x4000);
		assert_int_equal(load(f, RAM_BASE + 0x4004, 4), 0);
	}
	/* TOR with top <= bottom matches nothing: entry 1 is now [RAM_BASE+0x3000, same). */
	pmp_set(f, 0, 0, RAM_BASE >> 2);
	pmp_set(f, 1, PMP_TOR, RAM_BASE >> 2);
	assert_int_equal(load(f, RAM_BASE, 8), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bare, setup, teardown),
		cmocka_unit_test_setup_teardown(test_m_mode_untranslated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sv39, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sv48, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sv57, setup, teardown),
		cmocka_unit_test_setup_teardown(test_superpages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_misaligned_superpage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_accessed_dirty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_permissions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nonleaf_reserved_bits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_user_supervisor, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mxr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mprv, setup, teardown),
		cmocka_unit_test_setup_teardown(test_non_canonical, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pte_outside_ram, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mmio, setup, teardown),
		cmocka_unit_test_setup_teardown(test_misaligned, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fetch_crossing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tlb_reuse_and_flush, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tlb_superpage_flush, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tlb_satp_change, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tlb_victim, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ad_update_atomic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_atomic_ptr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pmp_napot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pmp_tor_priority, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
