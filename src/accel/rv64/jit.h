/*
 * jit.h - an x86-64 translator for the software RV64 CPU's hot integer code (internal to
 * src/accel/rv64; built only on x86-64 hosts, where RV64_JIT is defined).
 *
 * Usage from the decode cache (exec.c), on the vCPU thread that owns the translator:
 *
 *	if (rv64_jit_wanted() && rv64_jit_new(&cpu->jit) == 0) ...   // per hart, KUMO_JIT=0: off
 *	                                                          // (KUMO_JIT=1: eager, below)
 *	int b = rv64_jit_compile(cpu->jit, page_host, slot, op);      // -1: not translatable here
 *	const void *code = rv64_jit_code(cpu->jit, b, op);            // NULL: the block is gone
 *	struct rv64_jit_ret r = rv64_jit_run(cpu->jit, cpu, page_va, budget_left, code);
 *
 * A block is straight-line code of one guest page starting at `slot` (a 2-byte parcel index):
 * RV64I/M integer ops, Zba, Zbb and Zbs, RVC expanded, loads and stores (FLW/FLD/FSW/FSD too)
 * through an inlined TLB fast path (mmu.h) with rv64_mmu_*_slow() calls behind it (a load or
 * store right after one of the same kind through the same base register only checks that it
 * stays in that page, reusing the host addend: a TLB group, jit.c mem_fast()), and F/D
 * arithmetic: the common double-precision ops inline on SSE (guarded by MXCSR holding the
 * guest's rounding mode and no flag the guest lacks), the rest and the guard's misses as
 * direct calls of rv64_fpu_exec() (an FP instruction while mstatus.FS is Off, or one it
 * refuses, leaves with RV64_JIT_EXIT_STEP for the interpreter to raise the trap), FENCE, and
 * LR/SC/AMOs on RAM the TLB maps (else EXIT_STEP), CSR instructions (but the counters) and
 * SFENCE.VMA through calls of jit_csr()/jit_sfence(): a CSR write that may make an interrupt
 * deliverable leaves with RV64_JIT_EXIT_EVENT, one that flushed the TLB and an SFENCE.VMA
 * that may have changed the block's own page's translation (without an address, or when the
 * page's instruction-TLB entry did not come through it) with RV64_JIT_EXIT_CODE (a fresh lookup of the next pc). Conditional branches leave the block when
 * taken, unless their target is an instruction of the same block: then they jump there (a
 * backward jump checks the budget first). A JAL within the page does not end it: a short
 * forward one becomes such a jump over the instructions after it, which the block goes on
 * with; others are followed (the block goes on at the target). JALR, a JAL elsewhere, the
 * page end, an instruction the translator does not handle, or a length limit end it. Guest registers live in cpu->x[] (rbx = cpu) between
 * blocks; inside one, its most used ones sit in host registers, written back before every
 * exit and helper call. The pc is written only when the block leaves; the guest page's virtual address lives in r12, so one
 * translation serves every virtual mapping of the physical page, exactly like the decoded ops.
 *
 * Validity: a block belongs to one decoded op (its `owner`), so it dies with the decoded page
 * (code-page generations, epochs: exec.c) and with a full flush of the code buffer, after
 * which rv64_jit_code() refuses every old index. Exits to another block of the same page go
 * through a per-exit cell that rv64_jit_link() points at the next block (block chaining);
 * such a chain checks the instruction budget before following a cell.
 *
 * Executable memory (jit.c, before rv64_jit_new()): by default one private mapping the host
 * may back with huge pages, writable and executable (rw == rx); with KUMO_JIT_WX=1, or when
 * the host has no transparent huge pages, one memfd mapped twice instead (wx): written through
 * a read-write view, run from a read-execute view, never writable and executable at once.
 *
 * The jump cache (QEMU's tb_jmp_cache with lookup_and_goto_ptr): exits to another page (JAL,
 * a taken branch or the fall-through off the page) and every JALR look their target up in a
 * per-hart direct-mapped table of {virtual pc, tag, code} (inline code at each such exit) and
 * jump straight to the block while budget is left (r13 > 0), setting r12 to the new page; the
 * block's own entry subtracts its length from r13 as usual, so instret stays exact. On a miss
 * they leave with RV64_JIT_EXIT_FAR as before. Only exec.c fills it (rv64_jit_jc_fill()), when
 * its own lookup (instruction TLB with the execute, PMP and privilege checks, then the decode
 * cache) reached a translated block, so an entry holds nothing the dispatcher would not find.
 * An entry is followed only while its pc is equal (the table is indexed by a hash of it) and
 * its tag, (rv64_jc.gen + 4 * rv64_vm.code_inval) | priv, still matches: the privilege it was
 * filled at, and
 *   - no event of this hart since that may change what a virtual pc means or frees code
 *     (rv64_jit_jc_invalidate(): every TLB flush, hence SFENCE.VMA, satp writes, PMP writes
 *     and remote flush requests; dropping the decode cache (its epoch); a flush of the code
 *     buffer; and rv64_jit_jc_invalidate_page() for SFENCE.VMA of one page: only when a
 *     filter of the pages filled since says the page may have entries): rv64_jc.gen;
 *   - no decoded code of any page was invalidated since, by any hart's store or by DMA
 *     (rv64_vm.code_inval, a VM-wide count: both counts only grow, so their sum is unchanged
 *     only when each is).
 * A block reached this way may leave through a chaining cell from a page exec.c did not
 * enter; exec.c then links the cell once its own lookup finds the target (see h_JIT).
 */
#ifndef KUMO_RV64_JIT_H
#define KUMO_RV64_JIT_H

#if defined(__x86_64__)
#define RV64_JIT 1

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "accel/rv64/cpu.h"

/* How a block left (rv64_jit_ret.status); larger values are chaining cells (see above). */
enum rv64_jit_exit {
	RV64_JIT_EXIT_FAR = 0,  /* cpu->pc: the next instruction, anywhere */
	RV64_JIT_EXIT_EXC = 1,  /* cpu->pc: the faulting instruction, exc_cause/exc_tval set */
	RV64_JIT_EXIT_CODE = 2, /* a store rewrote decoded code; cpu->pc: the next instruction */
	RV64_JIT_EXIT_STEP = 3, /* cpu->pc: an instruction for the interpreter (e.g. FP with FS off) */
	RV64_JIT_EXIT_EVENT = 4, /* a CSR write may have made an interrupt deliverable; cpu->pc: next */
	RV64_JIT_EXIT_CELL = 5, /* and above: in-page cpu->pc; status is the cell to link */
};

struct rv64_jit_ret {
	int64_t left;    /* instruction budget left (negative: overshot by a block) */
	uint64_t status; /* enum rv64_jit_exit, or a cell address */
};

struct rv64_jit_block {
	const void *owner; /* the decoded op this block replaces */
	const void *code;  /* entry in the executable view */
};

struct rv64_jit {
	uint8_t *rw;        /* writable view of the code buffer */
	const uint8_t *rx;  /* executable view of the same memory (== rw unless wx) */
	bool wx;            /* two views of one memfd: never writable and executable at once */
	uint64_t size;      /* bytes in each view */
	uint64_t used;      /* bytes handed out */
	uint64_t base_used; /* bytes of the shared entry/exit code at the start */
	const uint8_t *epilogue; /* shared exit: returns r13 (left) and rdx (status) */
	const uint8_t *slow_load, *slow_store; /* shared slow-access trampolines (jit.c) */
	struct rv64_jit_block *blocks;
	uint32_t nblocks, cap;
	uint64_t flushes;    /* full flushes of the code buffer */
	uint64_t translated; /* blocks compiled */
	struct rv64_jc *jc;  /* the jump cache (see above) */
	uint64_t jc_miss;    /* offset of the shared far exit to the pc in rax (a miss) */
	/*
	 * KUMO_JIT=1: translate at an op's first arrival (the translator's tests). Otherwise the
	 * decode cache runs an op's first arrival interpreted and translates at the second, so
	 * code that runs once (most of a kernel's boot) is never translated.
	 */
	bool eager;
};

#define RV64_JC_BITS 13      /* jump cache entries: 1 << RV64_JC_BITS (24 bytes each) */
#define RV64_JC_PAGE_BITS 12 /* bits in the filter of pages with entries */

struct rv64_jc_entry {
	uint64_t pc;      /* guest virtual address of the block */
	uint64_t tag;     /* (rv64_jc.gen + 4 * rv64_vm.code_inval) | priv when filled */
	const void *code; /* the block's entry in the executable view */
};

struct rv64_jc {
	uint64_t gen; /* a multiple of 4 (priv fills bits 0..1); never 0, so zeroed entries miss */
	uint64_t pad;
	struct rv64_jc_entry e[1u << RV64_JC_BITS];
	/* Bit rv64_jc_page_bit(pc) set for every fill since gen last changed (a Bloom filter). */
	uint64_t pages[(1u << RV64_JC_PAGE_BITS) / 64];
};

static inline unsigned rv64_jc_page_bit(uint64_t va)
{
	return ((uint32_t)(va >> 12) * 0x9e3779b1u) >> (32 - RV64_JC_PAGE_BITS);
}

/* False when KUMO_JIT=0 is set in the environment. Any thread. */
bool rv64_jit_wanted(void);
/* A translator with its own code buffer; 0 or -errno. */
int rv64_jit_new(struct rv64_jit **out);
void rv64_jit_free(struct rv64_jit *j);
/*
 * Translates the block at `slot` of the 4 KiB guest page at `page` (host view of guest RAM,
 * read once per parcel) for the decoded op `owner`. Returns the block's index, or -1 when the
 * first instruction is not one the translator handles. A full code buffer is flushed first.
 */
int rv64_jit_compile(struct rv64_jit *j, const uint8_t *page, unsigned slot, const void *owner);

/* The code of block `idx` if it still belongs to `owner`, else NULL. */
static inline const void *rv64_jit_code(const struct rv64_jit *j, int32_t idx,
					const void *owner)
{
	if ((uint32_t)idx >= j->nblocks || j->blocks[idx].owner != owner)
		return NULL;
	return j->blocks[idx].code;
}

/* Runs from `code` with the guest page at virtual page_va, `left` instructions of budget. */
struct rv64_jit_ret rv64_jit_run(struct rv64_jit *j, struct rv64_cpu *cpu, uint64_t page_va,
				 int64_t left, const void *code);
/* Points the exit cell `cell` (a status >= RV64_JIT_EXIT_CELL) at `code`. */
void rv64_jit_link(struct rv64_jit *j, uint64_t cell, const void *code);

/*
 * Records that virtual `pc` runs `code` at cpu's privilege now: a block of the physical page
 * whose code-state word is `state`, decoded under the value `state_val`. Nothing is recorded
 * when the page has been invalidated since. For exec.c's dispatcher only (see above).
 */
void rv64_jit_jc_fill(struct rv64_jit *j, const struct rv64_cpu *cpu, uint64_t pc,
		      const void *code, const uint32_t *state, uint32_t state_val);

/* Forgets every jump cache entry. j may be NULL (no translator). */
static inline void rv64_jit_jc_invalidate(struct rv64_jit *j)
{
	if (j) {
		j->jc->gen += 4;
		memset(j->jc->pages, 0, sizeof(j->jc->pages));
	}
}

/* Forgets the entries of blocks in the virtual page of va (and maybe more). j may be NULL. */
static inline void rv64_jit_jc_invalidate_page(struct rv64_jit *j, uint64_t va)
{
	unsigned b = rv64_jc_page_bit(va);

	if (j && (j->jc->pages[b / 64] >> (b % 64) & 1))
		rv64_jit_jc_invalidate(j);
}

#endif /* __x86_64__ */
#endif
