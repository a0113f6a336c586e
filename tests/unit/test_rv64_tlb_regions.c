/*
 * test_rv64_tlb_regions.c - SFENCE.VMA of one page and the TLB's superpage regions (mmu.c
 * tlb_note_superpage, rv64_tlb_flush_page). The TLB keeps 4 KiB pieces of superpages under
 * other indexes, so a fence of any address inside a cached superpage must drop them all
 * (priv 1.12 §4.2.1); mmu.c remembers a few regions that hold every superpage fill and
 * flushes everything for a fence inside one. Checked here, with Sv57 tables in RAM:
 *   - many superpages far apart in both halves (more than the regions, so regions widen):
 *     each remapped and fenced at another address inside it reads through the new mapping;
 *   - a fence of a 4 KiB page outside every superpage (Linux's fixmap, next to its vmemmap
 *     and linear map) is a page flush: a superpage remapped without a fence of its own still
 *     reads the old frame, as §4.2.1 allows (it did not before: every such fence flushed all).
 */
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
#define FRAME_A (RAM_BASE + (2ull << 20)) /* two 2 MiB frames with different contents */
#define FRAME_B (RAM_BASE + (4ull << 20))
#define PT_POOL (RAM_BASE + (16ull << 20))

#define SV57 10ull
#define V (1ull << 0)
#define R (1ull << 1)
#define W (1ull << 2)
#define A (1ull << 6)
#define D (1ull << 7)

struct fx {
	struct rv64_vm vm;
	struct rv64_cpu *cpu;
	uint8_t *ram;
	struct memmap *mm;
	uint64_t next_pt;
	uint64_t root;
};

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
	assert_true(f->next_pt <= RAM_BASE + RAM_SIZE);
	memset(f->ram + (pa - RAM_BASE), 0, 4096);
	return pa;
}

/* Maps va -> pa with a leaf at `level` (0: 4 KiB, 1: 2 MiB); returns the leaf PTE's address. */
static uint64_t map(struct fx *f, uint64_t va, uint64_t pa, unsigned level)
{
	uint64_t table = f->root;

	for (unsigned i = 4; i > level; i--) {
		uint64_t pte_pa = table + ((va >> (12 + 9 * i)) & 511) * 8;
		uint64_t pte = rd64(f, pte_pa);

		if (!(pte & V)) {
			pte = (pt_alloc(f) >> 12) << 10 | V;
			wr64(f, pte_pa, pte);
		}
		table = ((pte >> 10) & ((1ull << 44) - 1)) << 12;
	}
	table += ((va >> (12 + 9 * level)) & 511) * 8;
	wr64(f, table, (pa >> 12) << 10 | V | R | W | A | D);
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
	f->vm.ram = f->ram;
	f->vm.ram_base = RAM_BASE;
	f->vm.ram_size = RAM_SIZE;
	f->vm.memmap = f->mm;
	f->vm.ncpus = 1;
	f->cpu = calloc(1, sizeof(*f->cpu));
	assert_non_null(f->cpu);
	f->cpu->vm = &f->vm;
	f->next_pt = PT_POOL;
	f->root = pt_alloc(f);
	f->cpu->satp = SV57 << 60 | f->root >> 12;
	f->cpu->priv = RV64_PRIV_S;
	rv64_tlb_flush(f->cpu);
	rv64_mmu_state_changed(f->cpu);
	/* Each frame says which it is at the offsets read below. */
	wr64(f, FRAME_A + 0x5000, 0xaaaa);
	wr64(f, FRAME_B + 0x5000, 0xbbbb);
	wr64(f, FRAME_A + 0x1000, 0xa1);
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

static uint64_t load(struct fx *f, uint64_t va)
{
	uint64_t v = 0xbad;

	assert_int_equal(rv64_mem_load(f->cpu, va, 8, &v), 0);
	return v;
}

#define NSP 24

/* Superpage i: 12 in each half, at addresses that share ever fewer high bits. */
static uint64_t sp_va(unsigned i)
{
	uint64_t half = i % 2 ? 0xff00000000000000ull : 0;

	return half | (uint64_t)(i / 2 + 1) << (21 + 2 * (i / 2)) | (uint64_t)(i & 3) << 21;
}

static void test_many_superpages(void **state)
{
	struct fx *f = *state;
	uint64_t pte[NSP];

	for (unsigned i = 0; i < NSP; i++)
		for (unsigned k = 0; k < i; k++)
			assert_true((sp_va(i) >> 21) != (sp_va(k) >> 21));
	for (unsigned i = 0; i < NSP; i++) {
		pte[i] = map(f, sp_va(i), FRAME_A, 1);
		assert_int_equal(load(f, sp_va(i) + 0x5000), 0xaaaa);
		assert_int_equal(load(f, sp_va(i) + 0x1000), 0xa1);
	}
	/* Remap each to B and fence another address inside it: the TLB must not keep A. */
	for (unsigned i = 0; i < NSP; i++) {
		wr64(f, pte[i], (FRAME_B >> 12) << 10 | V | R | W | A | D);
		rv64_tlb_flush_page(f->cpu, sp_va(i) + 0x1ff000);
		if (load(f, sp_va(i) + 0x5000) != 0xbbbb)
			fail_msg("superpage %u at %#llx still maps the old frame after its fence", i,
				 (unsigned long long)sp_va(i));
		for (unsigned k = i + 1; k < NSP; k++)
			assert_int_equal(load(f, sp_va(k) + 0x5000), 0xaaaa);
	}
}

static void test_fence_outside_superpages(void **state)
{
	struct fx *f = *state;
	uint64_t linear = 0xff60000000000000ull, vmemmap = 0xff1c000000000000ull;
	uint64_t image = 0xffffffff80000000ull, fixmap = 0xff1bfffffebfa000ull;
	uint64_t pte_linear;

	pte_linear = map(f, linear, FRAME_A, 1);
	map(f, linear + (2ull << 20), FRAME_A, 1);
	map(f, vmemmap, FRAME_A, 1);
	map(f, vmemmap + (2ull << 20), FRAME_A, 1);
	map(f, image, FRAME_A, 1);
	map(f, fixmap, FRAME_B + 0x5000, 0);
	assert_int_equal(load(f, linear + 0x5000), 0xaaaa);
	assert_int_equal(load(f, linear + (2ull << 20) + 0x5000), 0xaaaa);
	assert_int_equal(load(f, vmemmap + 0x5000), 0xaaaa);
	assert_int_equal(load(f, vmemmap + (2ull << 20) + 0x5000), 0xaaaa);
	assert_int_equal(load(f, image + 0x5000), 0xaaaa);
	assert_int_equal(load(f, fixmap), 0xbbbb);
	/* Remap the linear map's first superpage without fencing it; fence the fixmap page. */
	wr64(f, pte_linear, (FRAME_B >> 12) << 10 | V | R | W | A | D);
	rv64_tlb_flush_page(f->cpu, fixmap);
	assert_int_equal(load(f, fixmap), 0xbbbb);
	if (load(f, linear + 0x5000) != 0xaaaa)
		fail_msg("a fence of a 4 KiB page outside every superpage flushed the whole TLB");
	/* Its own fence (any address inside it) makes the new mapping visible. */
	rv64_tlb_flush_page(f->cpu, linear + 0x123000);
	assert_int_equal(load(f, linear + 0x5000), 0xbbbb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_many_superpages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fence_outside_superpages, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
