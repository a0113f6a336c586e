/*
 * mmu.h - inline fast paths of the software CPU's memory access (the slow paths are in mmu.c).
 *
 * Usage from the executor (exec.c and friends), on the vCPU thread:
 *
 *	uint64_t v;
 *	if (rv64_mmu_load(cpu, va, 4, &v))      // 0, or -1 with cpu->exc_cause/exc_tval set
 *		goto raise;                      //   -> rv64_trap(cpu, cpu->exc_cause, cpu->exc_tval)
 *	if (rv64_mmu_store(cpu, va, 8, v)) ...
 *	if (rv64_mmu_fetch(cpu, pc, &insn)) ... // 16-bit insns come back zero-extended
 *
 * Sizes are 1, 2, 4 or 8 (pass constants so the switch folds away). Loads zero-extend; sign
 * extension is the caller's job. Misaligned and page-crossing accesses work (slow path).
 * rv64_mem_load/store/fetch in cpu.h are the same operations out of line.
 *
 * The contract that keeps the fast path correct: call rv64_mmu_state_changed(cpu) after every
 * change of priv, satp, or mstatus MPRV/MPP/SUM/MXR (that is cheap: it recomputes
 * cpu->tlb_allow and flushes only when satp changed), rv64_pmp_changed(cpu) after a pmpcfg or
 * pmpaddr write, rv64_tlb_flush(cpu) for SFENCE.VMA with rs1 = x0 and for remote flush
 * requests, and rv64_tlb_flush_page(cpu, va) for SFENCE.VMA with rs1 = va.
 *
 * How a hit works (DESIGN.md §4): cpu->tlb[acc][vpn & 255] holds the page's tag; bits 3..11 of
 * the tag are the RV64_TLB_REQ_* flags, cleared for each condition the entry needs (the page's
 * privilege class, SUM for U pages touched from S, MXR for execute-only pages read), and bits
 * 0..2 are ones. The access hits when (tag | cpu->tlb_allow[acc]) equals
 * (va + size - 1) | (4096 - size): the page address of va with all low 12 bits set exactly
 * when va is aligned (the low log2(size) bits of va + size - 1 are all ones only then, and an
 * aligned access stays in its page). One OR, one add, one OR of a constant, one compare, and
 * misaligned accesses miss; translated code (jit.c) emits the same test.
 *
 * Stores and decoded code: rv64_mmu_store() returns 1 (the store was done) when it wrote to a
 * page whose decoded instructions it just invalidated (it also sets cpu->code_written); the
 * executor must then leave the page and look its code up again. Pages with decoded code have
 * RV64_TLB_REQ_CODE required in their write entries, so the store fast path stays one compare.
 * Dirty logging works the same way with RV64_TLB_REQ_DIRTY: every slow-path write to RAM (plain
 * stores, misaligned and page-crossing ones, AMOs and SC, the page-table walker's A/D updates)
 * marks its pages in the memory map's dirty log.
 */
#ifndef KUMO_RV64_MMU_H
#define KUMO_RV64_MMU_H

#include <stdint.h>

#include "accel/rv64/cpu.h"
#include "kumo/base.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the rv64 software CPU accesses guest RAM in host byte order: little-endian hosts only"
#endif

#define RV64_PAGE_SHIFT 12
#define RV64_PAGE_SIZE (1ull << RV64_PAGE_SHIFT)
#define RV64_PAGE_MASK (~(RV64_PAGE_SIZE - 1))

/* Conditions an entry may require; cleared in the tag when required. */
#define RV64_TLB_REQ_M (1ull << 3)    /* untranslated, effective privilege M (PMP as M) */
#define RV64_TLB_REQ_PHYS (1ull << 4) /* untranslated, S/U with satp Bare (PMP as S/U) */
#define RV64_TLB_REQ_S (1ull << 5)    /* translated S page (PTE.U = 0), effective privilege S */
#define RV64_TLB_REQ_U (1ull << 6)    /* translated U page: privilege U, or S loads/stores with SUM */
#define RV64_TLB_REQ_MXR (1ull << 7)  /* load from an execute-only page: needs mstatus.MXR */
#define RV64_TLB_REQ_SLOW (1ull << 8) /* never allowed: MMIO, or PMP not uniform over the page */
/*
 * Never allowed, write entries only: the page holds decoded code (the decode cache, dcache.c),
 * so stores take the slow path, which drops the decoded copy and then clears this requirement.
 */
#define RV64_TLB_REQ_CODE (1ull << 9)
/*
 * Never allowed, write entries only: the memory map's dirty log is on and the page was clean
 * when the entry was filled (DESIGN.md §4), so the first store takes the slow path, which marks
 * the page (memmap_dirty_mark) and then clears this requirement. While the log is on, a write
 * entry without it maps a page already marked since the log was last cleared: clearing the
 * log drops every write entry (rv64_tlb_flush_writes through accel_ops.dirty_log_sync).
 */
#define RV64_TLB_REQ_DIRTY (1ull << 10)
#define RV64_TLB_FLAGS 0xff8ull       /* every flag bit (bits 3..11) */
#define RV64_TLB_LOW 7ull             /* bits 0..2: always set in a valid tag */

int rv64_mmu_load_slow(struct rv64_cpu *cpu, uint64_t va, unsigned size, uint64_t *val);
/* 0, 1 when the store invalidated decoded code (done all the same), or -1 with the exception. */
int rv64_mmu_store_slow(struct rv64_cpu *cpu, uint64_t va, unsigned size, uint64_t val);
int rv64_mmu_fetch_slow(struct rv64_cpu *cpu, uint64_t va, uint32_t *insn);
/*
 * For the decode cache: translates va (even) for execution and fills the instruction TLB.
 * 0 with the guest-physical page in *pa when the page can be cached (RAM, PMP uniform: a fast
 * TLB entry now serves it); 1 when each instruction must be fetched on its own; -1 with the
 * fetch's exception set.
 */
int rv64_mmu_code_page(struct rv64_cpu *cpu, uint64_t va, uint64_t *pa);

static inline struct rv64_tlb_entry *rv64_tlb_slot(struct rv64_cpu *cpu, enum rv64_access acc,
						   uint64_t va)
{
	return &cpu->tlb[acc][(va >> RV64_PAGE_SHIFT) & (RV64_TLB_SIZE - 1)];
}

/* True when entry e serves an access of `size` bytes at va now (aligned, same page, allowed). */
static inline bool rv64_tlb_match(const struct rv64_cpu *cpu, const struct rv64_tlb_entry *e,
				  enum rv64_access acc, uint64_t va, unsigned size)
{
	return (e->tag | cpu->tlb_allow[acc]) == ((va + (size - 1)) | (RV64_PAGE_SIZE - size));
}

/*
 * The fast paths alone, for the executor: true when the TLB served the access (nothing is
 * counted); false when the caller must use rv64_mmu_load_slow/store_slow.
 */
static inline bool rv64_mmu_load_fast(struct rv64_cpu *cpu, uint64_t va, unsigned size,
				      uint64_t *val)
{
	const struct rv64_tlb_entry *e = rv64_tlb_slot(cpu, RV64_ACC_READ, va);

	if (likely(rv64_tlb_match(cpu, e, RV64_ACC_READ, va, size))) {
		uintptr_t h = (uintptr_t)va + e->host_addend;

		/* Aligned: single-copy atomic as RVWMO requires (unpriv 20191213 §14.1). */
		switch (size) {
		case 1:
			*val = __atomic_load_n((const uint8_t *)h, __ATOMIC_RELAXED);
			break;
		case 2:
			*val = __atomic_load_n((const uint16_t *)h, __ATOMIC_RELAXED);
			break;
		case 4:
			*val = __atomic_load_n((const uint32_t *)h, __ATOMIC_RELAXED);
			break;
		default:
			*val = __atomic_load_n((const uint64_t *)h, __ATOMIC_RELAXED);
			break;
		}
		return true;
	}
	return false;
}

static inline int rv64_mmu_load(struct rv64_cpu *cpu, uint64_t va, unsigned size, uint64_t *val)
{
	if (likely(rv64_mmu_load_fast(cpu, va, size, val))) {
		RV64_STAT_ADD(cpu, tlb_hits, 1);
		return 0;
	}
	return rv64_mmu_load_slow(cpu, va, size, val);
}

static inline bool rv64_mmu_store_fast(struct rv64_cpu *cpu, uint64_t va, unsigned size,
				       uint64_t val)
{
	const struct rv64_tlb_entry *e = rv64_tlb_slot(cpu, RV64_ACC_WRITE, va);

	if (likely(rv64_tlb_match(cpu, e, RV64_ACC_WRITE, va, size))) {
		uintptr_t h = (uintptr_t)va + e->host_addend;

		switch (size) {
		case 1:
			__atomic_store_n((uint8_t *)h, (uint8_t)val, __ATOMIC_RELAXED);
			break;
		case 2:
			__atomic_store_n((uint16_t *)h, (uint16_t)val, __ATOMIC_RELAXED);
			break;
		case 4:
			__atomic_store_n((uint32_t *)h, (uint32_t)val, __ATOMIC_RELAXED);
			break;
		default:
			__atomic_store_n((uint64_t *)h, val, __ATOMIC_RELAXED);
			break;
		}
		return true;
	}
	return false;
}

/* 0; 1: done, and it invalidated decoded code (see above); -1 with exc_cause/exc_tval set. */
static inline int rv64_mmu_store(struct rv64_cpu *cpu, uint64_t va, unsigned size, uint64_t val)
{
	if (likely(rv64_mmu_store_fast(cpu, va, size, val))) {
		RV64_STAT_ADD(cpu, tlb_hits, 1);
		return 0;
	}
	return rv64_mmu_store_slow(cpu, va, size, val);
}

/* Fetches at va (even): a 32-bit instruction, or a 16-bit one zero-extended (low bits != 11). */
static inline int rv64_mmu_fetch(struct rv64_cpu *cpu, uint64_t va, uint32_t *insn)
{
	const struct rv64_tlb_entry *e = rv64_tlb_slot(cpu, RV64_ACC_EXEC, va);

	/* Parcels are 2-byte aligned; all 4 bytes must lie in the page to read them at once. */
	if (likely(rv64_tlb_match(cpu, e, RV64_ACC_EXEC, va, 2) &&
		   (va & (RV64_PAGE_SIZE - 1)) <= RV64_PAGE_SIZE - 4)) {
		const uint16_t *h = (const uint16_t *)((uintptr_t)va + e->host_addend);
		uint32_t lo = h[0];

		*insn = (lo & 3) == 3 ? lo | (uint32_t)h[1] << 16 : lo;
		RV64_STAT_ADD(cpu, tlb_hits, 1);
		return 0;
	}
	return rv64_mmu_fetch_slow(cpu, va, insn);
}

/*
 * Decoded-code tracking (the decode cache lives in exec.c; the per-page state in
 * rv64_vm.code_state). Each RAM page has a state word: generation << 1 | has-decoded-code.
 */

/*
 * Marks the RAM page at `pa` as holding decoded code on this hart's behalf and returns the
 * generation the decoded copy is valid for. This hart's write-TLB entries for the page stop
 * using the fast path at once; other harts' at their next rv64_code_sync().
 */
uint32_t rv64_code_mark(struct rv64_cpu *cpu, uint64_t pa);
/* Current generation of the RAM page at pa (decoded copies of older generations are stale). */
static inline uint32_t rv64_code_gen(const struct rv64_vm *vm, uint64_t pa)
{
	return __atomic_load_n(&vm->code_state[(pa - vm->ram_base) >> RV64_PAGE_SHIFT],
			       __ATOMIC_ACQUIRE) >> 1;
}
/*
 * A write to guest RAM [pa, pa + len) that bypassed the TLB (device DMA, the VMM): decoded
 * copies of those pages become stale. Any thread.
 */
void rv64_code_ram_written(struct rv64_vm *vm, uint64_t pa, uint64_t len);
/*
 * Catches up with pages other harts marked as code since the last call: this hart's fast write
 * entries for them become slow ones, and since the hart may have stored through them already,
 * those pages are invalidated. Called at every entry to and exit from rv64_exec().
 */
void rv64_code_sync(struct rv64_cpu *cpu);
/* True when every other hart has run rv64_code_sync() since the last page was marked. */
bool rv64_code_all_synced(struct rv64_cpu *cpu);

#endif
