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
 * through an inlined TLB fast path (mmu.h) with rv64_mmu_*_slow() calls behind it, and F/D
 * arithmetic: the common double-precision ops inline on SSE (guarded by MXCSR holding the
 * guest's rounding mode and no flag the guest lacks), the rest and the guard's misses as
 * direct calls of rv64_fpu_exec() (an FP instruction while mstatus.FS is Off, or one it
 * refuses, leaves with RV64_JIT_EXIT_STEP for the interpreter to raise the trap), FENCE, and
 * LR/SC/AMOs on RAM the TLB maps (else EXIT_STEP). Conditional branches leave the block when
 * taken, unless their target is an instruction of the same block: then they jump there (a
 * backward jump checks the budget first); JAL/JALR, the page end, an instruction the
 * translator does not handle, or a length limit end it. Guest registers live in cpu->x[] (rbx = cpu) between
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
 * Executable memory is one memfd mapped twice: written through a read-write view, run from a
 * read-execute view (never writable and executable at once).
 */
#ifndef KUMO_RV64_JIT_H
#define KUMO_RV64_JIT_H

#if defined(__x86_64__)
#define RV64_JIT 1

#include <stdbool.h>
#include <stdint.h>

#include "accel/rv64/cpu.h"

/* How a block left (rv64_jit_ret.status); larger values are chaining cells (see above). */
enum rv64_jit_exit {
	RV64_JIT_EXIT_FAR = 0,  /* cpu->pc: the next instruction, anywhere */
	RV64_JIT_EXIT_EXC = 1,  /* cpu->pc: the faulting instruction, exc_cause/exc_tval set */
	RV64_JIT_EXIT_CODE = 2, /* a store rewrote decoded code; cpu->pc: the next instruction */
	RV64_JIT_EXIT_STEP = 3, /* cpu->pc: an instruction for the interpreter (e.g. FP with FS off) */
	RV64_JIT_EXIT_CELL = 4, /* and above: in-page cpu->pc; status is the cell to link */
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
	const uint8_t *rx;  /* executable view of the same memory */
	uint64_t size;      /* bytes in each view */
	uint64_t used;      /* bytes handed out */
	uint64_t base_used; /* bytes of the shared entry/exit code at the start */
	const uint8_t *epilogue; /* shared exit: returns r13 (left) and rdx (status) */
	const uint8_t *slow_load, *slow_store; /* shared slow-access trampolines (jit.c) */
	struct rv64_jit_block *blocks;
	uint32_t nblocks, cap;
	uint64_t flushes;    /* full flushes of the code buffer */
	uint64_t translated; /* blocks compiled */
	/*
	 * KUMO_JIT=1: translate at an op's first arrival (the translator's tests). Otherwise the
	 * decode cache runs an op's first arrival interpreted and translates at the second, so
	 * code that runs once (most of a kernel's boot) is never translated.
	 */
	bool eager;
};

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

#endif /* __x86_64__ */
#endif
