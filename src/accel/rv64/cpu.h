/*
 * cpu.h - the software RV64GC CPU's internal state, shared by its files (internal to
 * src/accel/rv64; the rest of kumo sees only include/kumo/accel.h).
 *
 * Files and owners of each concern:
 *   rv64.c   accel_ops glue, run loop, interrupts, WFI, kicks   cpu.c/exec  decode + execute
 *   csr.c    CSR file, privilege checks, traps and xRET          mmu.c       Sv39/48/57, TLB, PMP,
 *   fpu.c    F and D arithmetic (OP-FP, FMADD family)                        loads/stores/fetch
 *
 * A function here runs on the vCPU's own thread unless it says otherwise.
 */
#ifndef KUMO_RV64_CPU_H
#define KUMO_RV64_CPU_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "kumo/accel.h"

enum rv64_priv { RV64_PRIV_U = 0, RV64_PRIV_S = 1, RV64_PRIV_M = 3 };

/* Exception causes, priv 1.12 §3.1.15 table 3.6. */
enum rv64_exc {
	RV64_EXC_INSN_MISALIGNED = 0,
	RV64_EXC_INSN_ACCESS = 1,
	RV64_EXC_ILLEGAL_INSN = 2,
	RV64_EXC_BREAKPOINT = 3,
	RV64_EXC_LOAD_MISALIGNED = 4,
	RV64_EXC_LOAD_ACCESS = 5,
	RV64_EXC_STORE_MISALIGNED = 6, /* also AMO */
	RV64_EXC_STORE_ACCESS = 7,
	RV64_EXC_ECALL_U = 8,
	RV64_EXC_ECALL_S = 9,
	RV64_EXC_ECALL_M = 11,
	RV64_EXC_INSN_PAGE_FAULT = 12,
	RV64_EXC_LOAD_PAGE_FAULT = 13,
	RV64_EXC_STORE_PAGE_FAULT = 15,
};

enum rv64_access { RV64_ACC_READ = 0, RV64_ACC_WRITE = 1, RV64_ACC_EXEC = 2 };

/*
 * One software-TLB entry (DESIGN.md §4): a hit is one compare of the page tag and one add of
 * host_addend. Bits 3..11 of `tag` are requirement flags (RV64_TLB_REQ_* in mmu.h): a flag is
 * CLEAR when the entry needs that condition (privilege class, SUM, MXR) and the per-access-type
 * cpu->tlb_allow mask supplies the conditions that hold now; MMIO pages keep a flag nothing
 * allows, so they always take the slow path. A tag of 0 is invalid (so is a calloc'd TLB).
 * Owned by mmu.c; use the helpers in mmu.h.
 */
struct rv64_tlb_entry {
	/*
	 * Guest-virtual page address | (RV64_TLB_FLAGS & ~required) | 7; 0: invalid. 16-aligned
	 * (malloc's alignment), so tag and host_addend always share a cache line.
	 */
	_Alignas(16) uint64_t tag;
	uintptr_t host_addend; /* host address = guest virtual + host_addend (RAM pages only) */
	uint64_t paddr;        /* guest-physical page address (for MMIO and decode caches) */
	uint64_t spare;        /* pads the entry to 32 bytes: translated code indexes with a shift */
};

#define RV64_TLB_BITS 8
#define RV64_TLB_SIZE (1u << RV64_TLB_BITS)
#define RV64_TLB_VICTIM 8 /* fully associative victim entries per access type */
#define RV64_TLB_LP 8     /* superpage regions (half per VA half) for SFENCE.VMA (mmu.c) */

struct rv64_vm;

struct rv64_cpu {
	/* Hot: touched by every instruction. */
	uint64_t x[32]; /* x[0] reads 0: the executor never writes it */
	uint64_t pc;
	uint64_t f[32]; /* raw bits; singles are NaN-boxed (upper 32 bits all ones) */
	uint32_t priv;  /* enum rv64_priv */
	uint32_t fflags; /* fcsr accrued exceptions, bits NV DZ OF UF NX (4..0) */
	uint32_t frm;    /* fcsr rounding mode, 0..4 valid */

	/* Software TLB per access type, indexed by (vaddr >> 12) & (RV64_TLB_SIZE - 1). */
	struct rv64_tlb_entry tlb[3][RV64_TLB_SIZE];
	uint64_t tlb_allow[3];   /* per access type: RV64_TLB_REQ_* conditions true now (mmu.c) */
	uint64_t tlb_satp;       /* satp the TLB contents were filled under (mmu.c) */
	uint64_t tlb_lp_addr[RV64_TLB_LP]; /* regions holding every superpage fill: address... */
	uint64_t tlb_lp_mask[RV64_TLB_LP]; /* ...and mask (0: unused); flush_page in one flushes all */
	struct rv64_tlb_entry tlb_victim[3][RV64_TLB_VICTIM]; /* evicted entries (mmu.c) */
	uint32_t tlb_victim_next[3];                          /* round-robin replacement */

	/* Pending exception set by a failing helper (mem, fpu, csr) for the executor to raise. */
	uint64_t exc_cause;
	uint64_t exc_tval;

	/* LR/SC reservation (unprivileged 20191213 §8.2). */
	uint64_t resv_addr; /* guest-physical address; ~0 when no reservation */
	uint64_t resv_val;  /* value loaded by LR, compared by SC */

	/* Machine- and supervisor-level CSRs (priv 1.12 chapters 3 and 4). */
	uint64_t mstatus; /* sstatus is a view of it */
	uint64_t misa;
	uint64_t medeleg, mideleg;
	uint64_t mie;
	uint64_t mip;  /* bits written by software (SSIP, STIP without Sstc, SEIP) */
	uint64_t mtvec, mscratch, mepc, mcause, mtval;
	uint64_t mcounteren, mcountinhibit, menvcfg, mseccfg;
	uint64_t stvec, sscratch, sepc, scause, stval, scounteren, senvcfg;
	uint64_t satp;
	uint64_t stimecmp; /* Sstc */
	uint64_t mhartid;
	uint64_t cycle_base; /* mcycle/minstret derive from instret plus this offset */
	uint64_t instret;
	uint8_t pmpcfg[64];
	uint64_t pmpaddr[64];

	/* Written by other threads. */
	_Atomic uint64_t mip_ext;      /* interrupt lines driven from outside (set_interrupt) */
	_Atomic uint64_t mtimecmp;     /* ACLINT timer compare (set_timer) */
	_Atomic uint32_t exit_request; /* kick: return ACCEL_EXIT_INTR at the next block boundary */
	_Atomic uint32_t flush_request; /* flush_tlb from another hart */
	_Atomic uint32_t dirty_request; /* dirty log restarted: drop write TLB entries (rv64.c) */
	pthread_mutex_t wait_lock;     /* with wait_cond: vcpu_wait() sleeps here */
	pthread_cond_t wait_cond;

	struct rv64_vm *vm;
	struct accel_run run;
	struct accel_stats stats; /* add with RV64_STAT_ADD: API threads read it meanwhile */
	bool sbi_pending; /* an ACCEL_EXIT_SBI awaits its return values */

	/* Decode cache (exec.c) and decoded-code tracking (mmu.c). */
	struct rv64_dcache *dcache; /* NULL: none, every instruction is fetched and decoded */
	bool code_written;          /* a store of this hart just invalidated decoded code */
	uint64_t code_epoch_seen;   /* vm->code_epoch at the last rv64_code_sync() (atomic) */
	uint32_t in_exec;           /* inside rv64_exec(), between its two syncs (atomic) */

	/* Translated code (jit.c, x86-64 hosts); NULL: the decode cache alone runs the guest. */
	struct rv64_jit *jit;
};

struct rv64_vm {
	uint8_t *ram;       /* host address of guest RAM */
	uint64_t ram_base;  /* guest-physical */
	uint64_t ram_size;
	struct memmap *memmap;
	unsigned ncpus;
	uint32_t ecall_exit_mask;
	struct rv64_cpu **cpus; /* [ncpus], NULL until vcpu_new */
	/*
	 * Per RAM page: generation << 1 | 1 when some hart holds decoded code of it; NULL: no
	 * tracking (then there is no decode cache). Atomic builtins only.
	 */
	uint32_t *code_state;
	uint64_t code_epoch; /* bumped whenever a page gains decoded code (atomic) */
	uint64_t code_inval; /* bumped whenever a page loses decoded code (atomic; jit.h) */
};

/* --- mmu.c: translation and memory access. Each returns 0, or -1 with exc_cause/exc_tval set. */

/* Loads `size` (1, 2, 4, 8) bytes at virtual `va`, zero-extended. Misaligned accesses work. */
int rv64_mem_load(struct rv64_cpu *cpu, uint64_t va, unsigned size, uint64_t *val);
int rv64_mem_store(struct rv64_cpu *cpu, uint64_t va, unsigned size, uint64_t val);
/* Fetches the instruction at va: 16 bits if compressed, else 32 (may cross a page). */
int rv64_mem_fetch(struct rv64_cpu *cpu, uint64_t va, uint32_t *insn);
/*
 * Host pointer for an aligned atomic access (AMO, LR, SC) of `size` bytes at va, checked for
 * read+write permission (LR: read only). RAM only: MMIO or misalignment gives the architectural
 * exception. *pa receives the guest-physical address.
 */
int rv64_mem_atomic_ptr(struct rv64_cpu *cpu, uint64_t va, unsigned size, bool lr, void **host,
			uint64_t *pa);
/* Translates va for `acc` at the effective privilege (MPRV honoured for loads/stores). */
int rv64_mmu_translate(struct rv64_cpu *cpu, uint64_t va, enum rv64_access acc, uint64_t *pa);
void rv64_tlb_flush(struct rv64_cpu *cpu);
/*
 * Drops every write TLB entry (direct-mapped and victims), so that the next store to each page
 * is filled again and, while the memory map's dirty log is on, logged (mmu.h RV64_TLB_REQ_DIRTY).
 */
void rv64_tlb_flush_writes(struct rv64_cpu *cpu);
void rv64_tlb_flush_page(struct rv64_cpu *cpu, uint64_t va);
/*
 * Must be called after every change of satp, mstatus (MPRV/MPP/SUM/MXR), or priv (traps, xRET,
 * set_reg), and once after the cpu is created: it recomputes what TLB entries may be used and
 * flushes the TLB when satp changed. Cheap (no flush) for SUM/MXR/MPRV/priv changes.
 */
void rv64_mmu_state_changed(struct rv64_cpu *cpu);
/* Must be called after any pmpcfg/pmpaddr write (priv 1.12 §3.7.2): flushes the TLB. */
void rv64_pmp_changed(struct rv64_cpu *cpu);

/* --- fpu.c */

/*
 * Executes an OP-FP (0x53) or FMADD/FMSUB/FNMSUB/FNMADD (0x43/0x47/0x4b/0x4f) instruction of F
 * or D. Applies the rounding mode (instruction rm, or frm when rm = DYN) and accrues fflags.
 * Returns 0, or -1 with exc_cause = illegal instruction (bad rm/frm, unknown encoding). The
 * caller checked mstatus.FS != Off and marks FS dirty on success.
 */
int rv64_fpu_exec(struct rv64_cpu *cpu, uint32_t insn);

/* --- csr.c */

/* CSR read/write with privilege and existence checks: 0, or -1 with illegal instruction set. */
int rv64_csr_read(struct rv64_cpu *cpu, unsigned csr, uint64_t *val);
int rv64_csr_write(struct rv64_cpu *cpu, unsigned csr, uint64_t val);
/* Takes a trap (exception cause, or interrupt with bit 63 set) at the current pc. */
void rv64_trap(struct rv64_cpu *cpu, uint64_t cause, uint64_t tval);

/* --- CPU core internals shared by exec.c, csr.c and rv64.c */

/* Why rv64_exec() returned. */
enum rv64_stop {
	RV64_STOP_BUDGET = 0, /* ran `budget` instructions */
	RV64_STOP_EVENT,      /* state that gates interrupts may have changed (CSR write, xRET, fence) */
	RV64_STOP_WFI,        /* WFI with no locally enabled interrupt pending */
	RV64_STOP_SBI,        /* ECALL to exit: run->sbi filled, sbi_pending set, pc at the ECALL */
};

/* Executes up to `budget` instructions from cpu->pc; traps are taken inline. enum rv64_stop. */
int rv64_exec(struct rv64_cpu *cpu, uint64_t budget);
/* Adds n retired instructions to instret/cycle (honouring mcountinhibit) and the stats. */
void rv64_retire(struct rv64_cpu *cpu, uint64_t n);
/* Effective mip: software bits | external lines | MTIP/STIP from the timers at now_ticks. */
uint64_t rv64_irq_pending(struct rv64_cpu *cpu, uint64_t now_ticks);
/* Takes the highest-priority pending and enabled interrupt (priv 1.12 §3.1.9); true if one. */
bool rv64_irq_take(struct rv64_cpu *cpu, uint64_t pending);
/* Earliest guest time a timer (mtimecmp, stimecmp when STCE) fires; UINT64_MAX when none. */
uint64_t rv64_timer_deadline(struct rv64_cpu *cpu);
/* CSR instruction: op 1 RW, 2 RS, 3 RC; reads only if `rd_used`, writes only if `wr`. */
int rv64_csr_insn(struct rv64_cpu *cpu, unsigned csr, unsigned op, uint64_t src, bool rd_used,
		  bool wr, uint64_t *old);
/* Debugger/snapshot access: no privilege checks, WARL masks kept. -ENOENT if no such CSR. */
int rv64_csr_get(struct rv64_cpu *cpu, unsigned csr, uint64_t *val);
int rv64_csr_set(struct rv64_cpu *cpu, unsigned csr, uint64_t val);
/* ACCEL_REG_MIP_SOFT: mip's bits the hart holds itself, without device lines and timers. */
uint64_t rv64_mip_soft_get(struct rv64_cpu *cpu);
void rv64_mip_soft_set(struct rv64_cpu *cpu, uint64_t val);
/* MRET / SRET with their privilege and TSR checks: 0, or -1 with illegal instruction set. */
int rv64_mret(struct rv64_cpu *cpu);
int rv64_sret(struct rv64_cpu *cpu);
/* Decode cache (exec.c): allocate, free, and drop every decoded page of this hart (O(1)). */
int rv64_dcache_new(struct rv64_cpu *cpu);
void rv64_dcache_free(struct rv64_cpu *cpu);
/* Host memory the decode cache holds (any thread: a relaxed read of a growing count). */
uint64_t rv64_dcache_bytes(const struct rv64_cpu *cpu);
void rv64_dcache_flush(struct rv64_cpu *cpu);
/* The 32-bit form of a 16-bit instruction parcel (unpriv 20191213 §16.8); 0: reserved. */
uint32_t rv64_rvc_expand16(uint32_t parcel);
/* Resets the architectural state of a hart (M-mode, pc 0, mhartid kept). */
void rv64_cpu_reset(struct rv64_cpu *cpu);

/*
 * Adds n to a counter in cpu->stats. Only the hart's own thread writes them while other
 * threads (the API's metrics, rv64_get_stats()) read them: relaxed atomic stores, which cost
 * a plain store on the hosts we run on.
 */
#define RV64_STAT_ADD(cpu, field, n)                                                           \
	__atomic_store_n(&(cpu)->stats.field, (cpu)->stats.field + (n), __ATOMIC_RELAXED)

#endif
