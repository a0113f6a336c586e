/*
 * mmu.c - the software CPU's memory system: Sv39/Sv48/Sv57 page-table walks with hardware A/D
 * updates, PMP, the software TLB's slow paths, MMIO dispatch, misaligned and page-crossing
 * accesses. The inline fast paths and the TLB tag format are in mmu.h.
 *
 * Everything here runs on the vCPU's own thread. Guest RAM is shared with other vCPU threads
 * and the guest's own page-table writes: PTEs are read atomically and A/D bits are set with a
 * compare-and-swap so no concurrent update is lost (priv 1.12 §4.3.2 step 7).
 */
#include <errno.h>
#include <string.h>

#include "accel/rv64/jit.h"
#include "accel/rv64/mmu.h"
#include "kumo/base.h"
#include "kumo/memmap.h"

/* mstatus fields, priv 1.12 §3.1.6. */
#define MSTATUS_MPP_SHIFT 11
#define MSTATUS_MPRV (1ull << 17)
#define MSTATUS_SUM (1ull << 18)
#define MSTATUS_MXR (1ull << 19)

/* satp, priv 1.12 §4.1.11: MODE in bits 63..60, PPN in 43..0 (ASID is not used for tagging). */
#define SATP_MODE_SHIFT 60
#define SATP_PPN_MASK ((1ull << 44) - 1)
enum { SATP_BARE = 0, SATP_SV39 = 8, SATP_SV48 = 9, SATP_SV57 = 10 };

/* Page-table entries, priv 1.12 §4.4.1 (Sv39; Sv48 and Sv57 share the format). */
#define PTE_V (1ull << 0)
#define PTE_R (1ull << 1)
#define PTE_W (1ull << 2)
#define PTE_X (1ull << 3)
#define PTE_U (1ull << 4)
#define PTE_A (1ull << 6)
#define PTE_D (1ull << 7)
#define PTE_PPN_SHIFT 10
#define PTE_PPN_MASK ((1ull << 44) - 1)
/*
 * Bits 63..54: N (Svnapot), PBMT (Svpbmt) and reserved bits 60..54. We advertise neither
 * extension, so any of them set makes the PTE invalid (page fault).
 */
#define PTE_HIGH_BITS (0x3ffull << 54)

/* PMP configuration bits, priv 1.12 §3.7.1. */
#define PMP_R 0x01u
#define PMP_W 0x02u
#define PMP_X 0x04u
#define PMP_A_SHIFT 3
#define PMP_L 0x80u
enum { PMP_OFF = 0, PMP_TOR = 1, PMP_NA4 = 2, PMP_NAPOT = 3 };
#define PMP_ENTRIES 64
#define PMPADDR_MASK ((1ull << 54) - 1) /* RV64 pmpaddr holds physical address bits 55..2 */

/* Where an access lands once translated and checked. */
struct mmu_loc {
	uint64_t pa;
	uint8_t *host; /* RAM: host address of pa; NULL: MMIO (or nothing) at pa */
};

static const uint64_t page_fault_cause[3] = {
	[RV64_ACC_READ] = RV64_EXC_LOAD_PAGE_FAULT,
	[RV64_ACC_WRITE] = RV64_EXC_STORE_PAGE_FAULT,
	[RV64_ACC_EXEC] = RV64_EXC_INSN_PAGE_FAULT,
};

static const uint64_t access_fault_cause[3] = {
	[RV64_ACC_READ] = RV64_EXC_LOAD_ACCESS,
	[RV64_ACC_WRITE] = RV64_EXC_STORE_ACCESS,
	[RV64_ACC_EXEC] = RV64_EXC_INSN_ACCESS,
};

static const unsigned pmp_need[3] = {
	[RV64_ACC_READ] = PMP_R,
	[RV64_ACC_WRITE] = PMP_W,
	[RV64_ACC_EXEC] = PMP_X,
};

static int fault(struct rv64_cpu *cpu, uint64_t cause, uint64_t tval)
{
	cpu->exc_cause = cause;
	cpu->exc_tval = tval;
	return -1;
}

/* Host address of guest RAM [pa, pa+len), or NULL when any byte lies outside RAM. */
static uint8_t *ram_host(const struct rv64_vm *vm, uint64_t pa, uint64_t len)
{
	uint64_t off;

	if (pa < vm->ram_base)
		return NULL;
	off = pa - vm->ram_base;
	if (off >= vm->ram_size || len > vm->ram_size - off)
		return NULL;
	return vm->ram + off;
}

/* Privilege that loads/stores (or fetches) are checked at: MPP when MPRV=1 in M-mode (§3.1.6.3). */
static unsigned effective_priv(const struct rv64_cpu *cpu, enum rv64_access acc)
{
	unsigned mpp;

	if (acc == RV64_ACC_EXEC || cpu->priv != RV64_PRIV_M || !(cpu->mstatus & MSTATUS_MPRV))
		return cpu->priv;
	mpp = (cpu->mstatus >> MSTATUS_MPP_SHIFT) & 3;
	return mpp == 2 ? RV64_PRIV_U : mpp; /* 2 is reserved; csr.c keeps MPP WARL */
}

static unsigned satp_mode(uint64_t satp)
{
	return (unsigned)(satp >> SATP_MODE_SHIFT);
}

/* The RV64_TLB_REQ_* conditions that hold for `acc` in the current state. */
static uint64_t tlb_allow_for(const struct rv64_cpu *cpu, enum rv64_access acc)
{
	unsigned priv = effective_priv(cpu, acc);
	uint64_t allow;

	if (priv == RV64_PRIV_M)
		return RV64_TLB_REQ_M;
	if (satp_mode(cpu->satp) == SATP_BARE)
		return RV64_TLB_REQ_PHYS;
	if (priv == RV64_PRIV_S) {
		allow = RV64_TLB_REQ_S;
		/* SUM lets S-mode load and store, never execute, U pages (§4.3.1). */
		if (acc != RV64_ACC_EXEC && (cpu->mstatus & MSTATUS_SUM))
			allow |= RV64_TLB_REQ_U;
	} else {
		allow = RV64_TLB_REQ_U;
	}
	if (acc == RV64_ACC_READ && (cpu->mstatus & MSTATUS_MXR))
		allow |= RV64_TLB_REQ_MXR;
	return allow;
}

void rv64_tlb_flush(struct rv64_cpu *cpu)
{
#ifdef RV64_JIT
	rv64_jit_jc_invalidate(cpu->jit); /* it maps virtual pcs to code: translations */
#endif
	memset(cpu->tlb, 0, sizeof(cpu->tlb));
	memset(cpu->tlb_victim, 0, sizeof(cpu->tlb_victim));
	memset(cpu->tlb_lp_mask, 0, sizeof(cpu->tlb_lp_mask));
	memset(cpu->tlb_lp_addr, 0, sizeof(cpu->tlb_lp_addr));
}

void rv64_tlb_flush_writes(struct rv64_cpu *cpu)
{
	memset(cpu->tlb[RV64_ACC_WRITE], 0, sizeof(cpu->tlb[RV64_ACC_WRITE]));
	memset(cpu->tlb_victim[RV64_ACC_WRITE], 0, sizeof(cpu->tlb_victim[RV64_ACC_WRITE]));
}

void rv64_tlb_flush_page(struct rv64_cpu *cpu, uint64_t va)
{
	/*
	 * The TLB holds 4 KiB pieces of superpages under other indexes; SFENCE.VMA of any address
	 * in a superpage must drop them all (§4.2.1), so inside a region that had superpage fills
	 * everything goes. (A used region's mask is never 0: see tlb_note_superpage().)
	 */
	for (unsigned i = 0; i < RV64_TLB_LP; i++) {
		if (cpu->tlb_lp_mask[i] && (va & cpu->tlb_lp_mask[i]) == cpu->tlb_lp_addr[i]) {
			rv64_tlb_flush(cpu);
			return;
		}
	}
#ifdef RV64_JIT
	rv64_jit_jc_invalidate_page(cpu->jit, va);
#endif
	for (unsigned acc = 0; acc < 3; acc++) {
		struct rv64_tlb_entry *e = rv64_tlb_slot(cpu, acc, va);

		if ((e->tag & RV64_PAGE_MASK) == (va & RV64_PAGE_MASK))
			e->tag = 0;
		for (unsigned i = 0; i < RV64_TLB_VICTIM; i++) {
			e = &cpu->tlb_victim[acc][i];
			if ((e->tag & RV64_PAGE_MASK) == (va & RV64_PAGE_MASK))
				e->tag = 0;
		}
	}
}

void rv64_mmu_state_changed(struct rv64_cpu *cpu)
{
	/* No ASID tagging: any satp change (mode, ASID or root) starts from an empty TLB. */
	if (cpu->satp != cpu->tlb_satp) {
		rv64_tlb_flush(cpu);
		cpu->tlb_satp = cpu->satp;
	}
	for (unsigned acc = 0; acc < 3; acc++)
		cpu->tlb_allow[acc] = tlb_allow_for(cpu, acc);
}

void rv64_pmp_changed(struct rv64_cpu *cpu)
{
	/* Entries were filled under the old PMP permissions (§3.7.2: PMP changes need SFENCE.VMA too). */
	rv64_tlb_flush(cpu);
}

#define LP_MERGE_BITS 39 /* superpage regions grow to 512 GiB before a free one is taken */

/*
 * Remembers that a superpage of `size` bytes at va was cached (see rv64_tlb_flush_page): in a
 * region of va's half (bit 63) that covers it already, else by widening the region of that
 * half that needs the least widening if that keeps it within 2^LP_MERGE_BITS bytes, else in a
 * free region, else by widening anyway. Regions never span both halves, so a used mask keeps
 * bit 63 and is never 0. Separate regions keep Linux's fixmap, whose 4 KiB pages it fences
 * one by one for every text patch, outside the regions of its linear map, vmemmap and kernel
 * image: those fences stay page flushes (and keep the jump cache) instead of full flushes.
 */
static void tlb_note_superpage(struct rv64_cpu *cpu, uint64_t va, uint64_t size)
{
	unsigned first = (unsigned)(va >> 63) * (RV64_TLB_LP / 2);
	unsigned best = RV64_TLB_LP, free = RV64_TLB_LP;
	uint64_t want = ~(size - 1), best_mask = 0;

	for (unsigned i = first; i < first + RV64_TLB_LP / 2; i++) {
		uint64_t mask = cpu->tlb_lp_mask[i] & want;

		if (!cpu->tlb_lp_mask[i]) {
			if (free == RV64_TLB_LP)
				free = i;
			continue;
		}
		/* Widen until both fit; stops at bit 63, which both share. */
		while ((va & mask) != (cpu->tlb_lp_addr[i] & mask))
			mask <<= 1;
		if (mask == cpu->tlb_lp_mask[i])
			return; /* covered already */
		if (best == RV64_TLB_LP || mask > best_mask) { /* a larger mask: a narrower region */
			best = i;
			best_mask = mask;
		}
	}
	if (free != RV64_TLB_LP && (best == RV64_TLB_LP || ~best_mask >> LP_MERGE_BITS)) {
		best = free;
		best_mask = want;
	}
	cpu->tlb_lp_mask[best] = best_mask;
	cpu->tlb_lp_addr[best] = va & best_mask;
}

/* --- PMP, priv 1.12 §3.7 */

static bool pmp_any_active(const struct rv64_cpu *cpu)
{
	uint64_t any = 0;

	/* Straight from pmpcfg[] (a copy to the stack first stalls on store forwarding). */
	for (unsigned i = 0; i < PMP_ENTRIES; i += 8) {
		uint64_t w;

		memcpy(&w, cpu->pmpcfg + i, 8);
		any |= w;
	}
	return (any & 0x1818181818181818ull) != 0; /* any A field nonzero */
}

/* Range [lo, hi) that entry i covers; false when it is off or matches nothing (§3.7.1.1). */
static bool pmp_range(const struct rv64_cpu *cpu, unsigned i, uint64_t *lo, uint64_t *hi)
{
	uint64_t addr = cpu->pmpaddr[i] & PMPADDR_MASK;
	unsigned t;

	switch ((cpu->pmpcfg[i] >> PMP_A_SHIFT) & 3) {
	case PMP_TOR:
		*lo = i ? (cpu->pmpaddr[i - 1] & PMPADDR_MASK) << 2 : 0;
		*hi = addr << 2;
		return *lo < *hi;
	case PMP_NA4:
		*lo = addr << 2;
		*hi = *lo + 4;
		return true;
	case PMP_NAPOT:
		/* yyyy0111: t trailing ones give a 2^(t+3)-byte naturally aligned range. */
		t = addr == PMPADDR_MASK ? 54 : (unsigned)__builtin_ctzll(~addr);
		*lo = (addr & ~((1ull << t) - 1)) << 2;
		*hi = *lo + (1ull << (t + 3));
		return true;
	default:
		return false;
	}
}

/*
 * Permission (PMP_R/W/X bits) that PMP gives privilege `priv` over every byte of [pa, last],
 * or -1 when the bytes are not all governed by the same entry (a partial match fails the access,
 * §3.7.1.3). The lowest-numbered entry that matches any byte decides; M-mode ignores entries
 * without L; with no match M succeeds and S/U fail when any entry is active (QEMU's reading of
 * "implemented": a hart whose PMP was never programmed lets S-mode run, as kumo boots kernels
 * directly in S-mode).
 */
static int pmp_perm(const struct rv64_cpu *cpu, uint64_t pa, uint64_t last, unsigned priv)
{
	if (!pmp_any_active(cpu))
		return PMP_R | PMP_W | PMP_X;
	for (unsigned i = 0; i < PMP_ENTRIES; i++) {
		uint8_t cfg = cpu->pmpcfg[i];
		uint64_t lo, hi;

		if (!pmp_range(cpu, i, &lo, &hi))
			continue;
		if (last < lo || pa >= hi)
			continue;
		if (pa < lo || last >= hi)
			return -1;
		if (priv == RV64_PRIV_M && !(cfg & PMP_L))
			return PMP_R | PMP_W | PMP_X;
		return cfg & (PMP_R | PMP_W | PMP_X);
	}
	return priv == RV64_PRIV_M ? (int)(PMP_R | PMP_W | PMP_X) : 0;
}

static bool pmp_ok(const struct rv64_cpu *cpu, uint64_t pa, uint64_t len, unsigned priv,
		   unsigned need)
{
	int perm = pmp_perm(cpu, pa, pa + len - 1, priv);

	return perm >= 0 && ((unsigned)perm & need) == need;
}

/* --- translation, priv 1.12 §4.3.2 */

struct mmu_walk {
	uint64_t pa;
	uint64_t req;       /* RV64_TLB_REQ_* a TLB entry for this translation needs */
	uint64_t page_size; /* bytes the leaf maps */
};

static int mmu_walk(struct rv64_cpu *cpu, uint64_t va, enum rv64_access acc, unsigned priv,
		    struct mmu_walk *w)
{
	bool sum = cpu->mstatus & MSTATUS_SUM, mxr = cpu->mstatus & MSTATUS_MXR;
	unsigned levels, vabits;
	int64_t sext;

	switch (satp_mode(cpu->satp)) {
	case SATP_SV39:
		levels = 3;
		break;
	case SATP_SV48:
		levels = 4;
		break;
	case SATP_SV57:
		levels = 5;
		break;
	default: /* csr.c keeps satp.MODE WARL; anything else cannot translate */
		return fault(cpu, page_fault_cause[acc], va);
	}
	/* Bits 63..vabits-1 must all equal bit vabits-1 (§4.4.1, §4.5.1, §4.6.1). */
	vabits = 12 + 9 * levels;
	sext = (int64_t)(va << (64 - vabits)) >> (64 - vabits);
	if ((uint64_t)sext != va)
		return fault(cpu, page_fault_cause[acc], va);

	for (;;) {
		uint64_t a = (cpu->satp & SATP_PPN_MASK) << 12;
		int i = (int)levels - 1;
		uint64_t pte, pte_pa, ppn, need, size;
		uint64_t *ptep;

		for (;;) {
			/* Step 2: PTE reads are implicit S-mode accesses checked by PMP (§3.7.1). */
			pte_pa = a + ((va >> (12 + 9 * i)) & 0x1ff) * 8;
			ptep = (uint64_t *)ram_host(cpu->vm, pte_pa, 8);
			if (!ptep || !pmp_ok(cpu, pte_pa, 8, RV64_PRIV_S, PMP_R))
				return fault(cpu, access_fault_cause[acc], va);
			pte = __atomic_load_n(ptep, __ATOMIC_ACQUIRE);
			/* Step 3. */
			if (!(pte & PTE_V) || (!(pte & PTE_R) && (pte & PTE_W)) ||
			    (pte & PTE_HIGH_BITS))
				return fault(cpu, page_fault_cause[acc], va);
			if (pte & (PTE_R | PTE_X))
				break;
			/*
			 * Step 4: a pointer. D, A and U are reserved in non-leaf PTEs (§4.3.1);
			 * like Spike and QEMU we treat them as an invalid PTE.
			 */
			if ((pte & (PTE_D | PTE_A | PTE_U)) || i == 0)
				return fault(cpu, page_fault_cause[acc], va);
			a = ((pte >> PTE_PPN_SHIFT) & PTE_PPN_MASK) << 12;
			i--;
		}

		/* Step 5: leaf permissions, with SUM and MXR (§4.3.1, §3.1.6.3). */
		if (pte & PTE_U) {
			if (priv == RV64_PRIV_S && (acc == RV64_ACC_EXEC || !sum))
				return fault(cpu, page_fault_cause[acc], va);
		} else if (priv == RV64_PRIV_U) {
			return fault(cpu, page_fault_cause[acc], va);
		}
		if ((acc == RV64_ACC_READ && !(pte & PTE_R) && !(mxr && (pte & PTE_X))) ||
		    (acc == RV64_ACC_WRITE && !(pte & PTE_W)) ||
		    (acc == RV64_ACC_EXEC && !(pte & PTE_X)))
			return fault(cpu, page_fault_cause[acc], va);

		/* Step 6: a superpage's low PPN fields must be zero. */
		ppn = (pte >> PTE_PPN_SHIFT) & PTE_PPN_MASK;
		if (i > 0 && (ppn & ((1ull << (9 * i)) - 1)))
			return fault(cpu, page_fault_cause[acc], va);

		/*
		 * Step 7: set A, and D for stores, atomically with the check that the PTE is
		 * unchanged; if someone else changed it, walk again.
		 */
		need = PTE_A | (acc == RV64_ACC_WRITE ? PTE_D : 0);
		if ((pte & need) != need) {
			uint64_t expected = pte;

			if (!pmp_ok(cpu, pte_pa, 8, RV64_PRIV_S, PMP_W))
				return fault(cpu, access_fault_cause[acc], va);
			if (!__atomic_compare_exchange_n(ptep, &expected, pte | need, false,
							 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
				continue;
			/* The PTE write is a write to guest RAM like any other: log it. */
			if (cpu->vm->memmap)
				memmap_dirty_mark(cpu->vm->memmap, pte_pa, 8);
		}

		/* Step 8. */
		size = 1ull << (12 + 9 * i);
		w->pa = ((ppn << 12) & ~(size - 1)) | (va & (size - 1));
		w->page_size = size;
		w->req = (pte & PTE_U) ? RV64_TLB_REQ_U : RV64_TLB_REQ_S;
		if (acc == RV64_ACC_READ && !(pte & PTE_R))
			w->req |= RV64_TLB_REQ_MXR;
		return 0;
	}
}

/* --- decoded-code tracking (see mmu.h) */

static uint32_t *code_word(const struct rv64_vm *vm, uint64_t pa)
{
	if (!vm->code_state || pa < vm->ram_base || pa - vm->ram_base >= vm->ram_size)
		return NULL;
	return &vm->code_state[(pa - vm->ram_base) >> RV64_PAGE_SHIFT];
}

static bool page_is_code(const struct rv64_vm *vm, uint64_t pa)
{
	const uint32_t *w = code_word(vm, pa);

	return w && (__atomic_load_n(w, __ATOMIC_ACQUIRE) & 1);
}

/* Drops decoded copies of pa's page: next generation, no code. True if it had code. */
static bool code_invalidate(struct rv64_vm *vm, uint64_t pa)
{
	uint32_t *w = code_word(vm, pa);
	uint32_t old;

	if (!w)
		return false;
	old = __atomic_load_n(w, __ATOMIC_ACQUIRE);
	do {
		if (!(old & 1))
			return false;
	} while (!__atomic_compare_exchange_n(w, &old, (old | 1) + 1, true, __ATOMIC_ACQ_REL,
					      __ATOMIC_ACQUIRE));
	/* After the state word: pairs with rv64_jit_jc_fill(), which reads them the other way. */
	__atomic_fetch_add(&vm->code_inval, 1, __ATOMIC_RELEASE);
	return true;
}

/* Applies `code` (true: require RV64_TLB_REQ_CODE) to this hart's write entries for page pa. */
static void tlb_set_code(struct rv64_cpu *cpu, uint64_t pa, bool code)
{
	for (unsigned i = 0; i < RV64_TLB_SIZE + RV64_TLB_VICTIM; i++) {
		struct rv64_tlb_entry *e = i < RV64_TLB_SIZE ? &cpu->tlb[RV64_ACC_WRITE][i]
							 : &cpu->tlb_victim[RV64_ACC_WRITE][i - RV64_TLB_SIZE];

		if (!e->tag || e->paddr != pa)
			continue;
		if (code)
			e->tag &= ~RV64_TLB_REQ_CODE;
		else
			e->tag |= RV64_TLB_REQ_CODE;
	}
}

uint32_t rv64_code_mark(struct rv64_cpu *cpu, uint64_t pa)
{
	struct rv64_vm *vm = cpu->vm;
	uint32_t *w = code_word(vm, pa);
	uint32_t old;

	if (!w)
		return 0;
	/* Seq-cst pairs with the load in tlb_fill(): a racing fill sees the bit or the epoch. */
	old = __atomic_fetch_or(w, 1, __ATOMIC_SEQ_CST);
	if (!(old & 1)) {
		__atomic_fetch_add(&vm->code_epoch, 1, __ATOMIC_SEQ_CST);
		tlb_set_code(cpu, pa & RV64_PAGE_MASK, true);
	}
	return old >> 1;
}

void rv64_code_ram_written(struct rv64_vm *vm, uint64_t pa, uint64_t len)
{
	uint64_t end = pa + len;

	if (!len || end < pa)
		return;
	for (uint64_t p = pa & RV64_PAGE_MASK; p < end; p += RV64_PAGE_SIZE)
		code_invalidate(vm, p);
}

void rv64_code_sync(struct rv64_cpu *cpu)
{
	struct rv64_vm *vm = cpu->vm;
	uint64_t epoch = __atomic_load_n(&vm->code_epoch, __ATOMIC_SEQ_CST);

	if (epoch == cpu->code_epoch_seen)
		return;
	for (unsigned i = 0; i < RV64_TLB_SIZE + RV64_TLB_VICTIM; i++) {
		struct rv64_tlb_entry *e = i < RV64_TLB_SIZE ? &cpu->tlb[RV64_ACC_WRITE][i]
							 : &cpu->tlb_victim[RV64_ACC_WRITE][i - RV64_TLB_SIZE];

		if (!e->tag || !(e->tag & RV64_TLB_REQ_CODE) || !page_is_code(vm, e->paddr))
			continue;
		/* It may have written the page through the fast path since it became code. */
		e->tag &= ~RV64_TLB_REQ_CODE;
		code_invalidate(vm, e->paddr);
	}
	__atomic_store_n(&cpu->code_epoch_seen, epoch, __ATOMIC_RELEASE);
}

bool rv64_code_all_synced(struct rv64_cpu *cpu)
{
	struct rv64_vm *vm = cpu->vm;
	uint64_t epoch = __atomic_load_n(&vm->code_epoch, __ATOMIC_SEQ_CST);

	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct rv64_cpu *c = vm->cpus ? vm->cpus[i] : NULL;

		/*
		 * A hart outside rv64_exec() synced when it left and has stored nothing since
		 * (a halted hart must not force flushes on the others).
		 */
		if (c && c != cpu && __atomic_load_n(&c->in_exec, __ATOMIC_SEQ_CST) &&
		    __atomic_load_n(&c->code_epoch_seen, __ATOMIC_ACQUIRE) != epoch)
			return false;
	}
	return true;
}

/*
 * After a slow-path store of this hart to RAM at pa: drops decoded copies of the page and lets
 * later stores take the fast path again. 1 when decoded code was invalidated, else 0.
 */
static int code_store(struct rv64_cpu *cpu, uint64_t va, uint64_t pa)
{
	const struct rv64_tlb_entry *e = rv64_tlb_slot(cpu, RV64_ACC_WRITE, va);
	bool had, guarded;

	if (!cpu->vm->code_state)
		return 0;
	had = code_invalidate(cpu->vm, pa);
	if (had)
		cpu->code_written = true;
	guarded = e->tag && !(e->tag & RV64_TLB_REQ_CODE) && e->paddr == (pa & RV64_PAGE_MASK);
	if ((had || guarded) && !page_is_code(cpu->vm, pa))
		tlb_set_code(cpu, pa & RV64_PAGE_MASK, false);
	return had;
}

/*
 * After a slow-path write of this hart to RAM at pa (reached through va's write entry, which
 * mmu_lookup just filled or found): logs the page when the entry still requires
 * RV64_TLB_REQ_DIRTY, then lifts the requirement so later stores take the fast path. An entry
 * without it maps a page already logged (mmu.h), so a slow-path entry (PMP, code) costs no
 * extra work per store.
 */
static void dirty_store(struct rv64_cpu *cpu, uint64_t va, uint64_t pa)
{
	struct rv64_tlb_entry *e = rv64_tlb_slot(cpu, RV64_ACC_WRITE, va);
	bool found = e->tag && e->paddr == (pa & RV64_PAGE_MASK);

	if (found && (e->tag & RV64_TLB_REQ_DIRTY))
		return;
	if (cpu->vm->memmap)
		memmap_dirty_mark(cpu->vm->memmap, pa, 1);
	if (found)
		e->tag |= RV64_TLB_REQ_DIRTY;
}

/*
 * Caches the translation of va's 4 KiB page. RAM pages with uniform PMP permission for `acc`
 * get a fast entry; anything else an entry that only the slow path uses (it skips the walk, but
 * every access is still checked against PMP and dispatched).
 */
static void tlb_fill(struct rv64_cpu *cpu, uint64_t va, enum rv64_access acc, unsigned priv,
		     const struct mmu_walk *w)
{
	struct rv64_tlb_entry *e = rv64_tlb_slot(cpu, acc, va);
	uint64_t page = w->pa & RV64_PAGE_MASK, req = w->req;
	uint8_t *host = ram_host(cpu->vm, page, RV64_PAGE_SIZE);
	int perm = pmp_perm(cpu, page, page + RV64_PAGE_SIZE - 1, priv);

	if (e->tag) {
		unsigned v = cpu->tlb_victim_next[acc]++ % RV64_TLB_VICTIM;

		cpu->tlb_victim[acc][v] = *e;
	}
	if (!host || perm < 0 || ((unsigned)perm & pmp_need[acc]) != pmp_need[acc])
		req |= RV64_TLB_REQ_SLOW;
	else if (acc == RV64_ACC_WRITE && page_is_code(cpu->vm, page))
		req |= RV64_TLB_REQ_CODE;
	if (acc == RV64_ACC_WRITE && host && cpu->vm->memmap &&
	    memmap_dirty_page_clean(cpu->vm->memmap, page))
		req |= RV64_TLB_REQ_DIRTY;
	e->tag = (va & RV64_PAGE_MASK) | (RV64_TLB_FLAGS & ~req) | RV64_TLB_LOW;
	e->host_addend = host ? (uintptr_t)host - (uintptr_t)(va & RV64_PAGE_MASK) : 0;
	e->paddr = page;
	if (w->page_size > RV64_PAGE_SIZE)
		tlb_note_superpage(cpu, va, w->page_size);
}

/* True when e translates va's page now, as a fast or a slow-path entry. */
static bool tlb_usable(const struct rv64_cpu *cpu, const struct rv64_tlb_entry *e,
		       enum rv64_access acc, uint64_t va)
{
	return (e->tag | cpu->tlb_allow[acc] | RV64_TLB_REQ_SLOW | RV64_TLB_REQ_CODE |
		RV64_TLB_REQ_DIRTY) ==
	       ((va & RV64_PAGE_MASK) | RV64_TLB_FLAGS | RV64_TLB_LOW);
}

/* Looks for va's page among the victims; a hit trades places with the direct-mapped entry e. */
static void tlb_victim_swap(struct rv64_cpu *cpu, enum rv64_access acc, uint64_t va,
			    struct rv64_tlb_entry *e)
{
	for (unsigned i = 0; i < RV64_TLB_VICTIM; i++) {
		struct rv64_tlb_entry *v = &cpu->tlb_victim[acc][i], tmp;

		if (tlb_usable(cpu, v, acc, va)) {
			tmp = *v;
			*v = *e;
			*e = tmp;
			return;
		}
	}
}

/*
 * Translates and checks [va, va+len), which must lie in one page, for `acc`; PMP must grant
 * `need`. On success *loc says where it landed. On failure sets the exception with tval = va.
 */
static int mmu_lookup(struct rv64_cpu *cpu, uint64_t va, unsigned len, enum rv64_access acc,
		      unsigned need, struct mmu_loc *loc)
{
	struct rv64_tlb_entry *e = rv64_tlb_slot(cpu, acc, va);
	unsigned priv = effective_priv(cpu, acc);
	struct mmu_walk w;

	if (!tlb_usable(cpu, e, acc, va))
		tlb_victim_swap(cpu, acc, va, e);
	if (rv64_tlb_match(cpu, e, acc, va & RV64_PAGE_MASK, 1)) {
		/* A fast entry, here because va is misaligned or crosses into the next page. */
		RV64_STAT_ADD(cpu, tlb_hits, 1);
		loc->pa = e->paddr | (va & ~RV64_PAGE_MASK);
		loc->host = (uint8_t *)((uintptr_t)va + e->host_addend);
		if (need != pmp_need[acc] && !pmp_ok(cpu, loc->pa, len, priv, need))
			return fault(cpu, access_fault_cause[acc], va);
		return 0;
	}
	if (tlb_usable(cpu, e, acc, va)) {
		/* A slow-path entry: the translation is known, the access still gets checked. */
		RV64_STAT_ADD(cpu, tlb_hits, 1);
		w.pa = e->paddr | (va & ~RV64_PAGE_MASK);
	} else {
		RV64_STAT_ADD(cpu, tlb_misses, 1);
		if (priv == RV64_PRIV_M || satp_mode(cpu->satp) == SATP_BARE) {
			w.pa = va;
			w.req = priv == RV64_PRIV_M ? RV64_TLB_REQ_M : RV64_TLB_REQ_PHYS;
			w.page_size = RV64_PAGE_SIZE;
		} else if (mmu_walk(cpu, va, acc, priv, &w)) {
			return -1;
		}
		tlb_fill(cpu, va, acc, priv, &w);
	}

	if (w.pa + len - 1 < w.pa || !pmp_ok(cpu, w.pa, len, priv, need))
		return fault(cpu, access_fault_cause[acc], va);
	loc->pa = w.pa;
	loc->host = ram_host(cpu->vm, w.pa, len);
	/* No instruction fetch from MMIO (a PMA: devices are not executable). */
	if (!loc->host && acc == RV64_ACC_EXEC)
		return fault(cpu, access_fault_cause[acc], va);
	return 0;
}

/* --- accesses */

/* Reads `size` bytes of guest RAM at h: single-copy atomic when aligned (unpriv §14.1). */
static uint64_t host_read(const uint8_t *h, unsigned size)
{
	uint64_t v = 0;

	if ((uintptr_t)h & (size - 1)) {
		memcpy(&v, h, size); /* little-endian host: the low bytes of v */
		return v;
	}
	switch (size) {
	case 1:
		return __atomic_load_n(h, __ATOMIC_RELAXED);
	case 2:
		return __atomic_load_n((const uint16_t *)h, __ATOMIC_RELAXED);
	case 4:
		return __atomic_load_n((const uint32_t *)h, __ATOMIC_RELAXED);
	default:
		return __atomic_load_n((const uint64_t *)h, __ATOMIC_RELAXED);
	}
}

static void host_write(uint8_t *h, unsigned size, uint64_t v)
{
	if ((uintptr_t)h & (size - 1)) {
		memcpy(h, &v, size);
		return;
	}
	switch (size) {
	case 1:
		__atomic_store_n(h, (uint8_t)v, __ATOMIC_RELAXED);
		break;
	case 2:
		__atomic_store_n((uint16_t *)h, (uint16_t)v, __ATOMIC_RELAXED);
		break;
	case 4:
		__atomic_store_n((uint32_t *)h, (uint32_t)v, __ATOMIC_RELAXED);
		break;
	default:
		__atomic_store_n((uint64_t *)h, v, __ATOMIC_RELAXED);
		break;
	}
}

/*
 * The slow paths first refresh what the fast path relies on, so a caller that forgot
 * rv64_mmu_state_changed() still gets correct results from here on.
 */
static void mmu_sync(struct rv64_cpu *cpu)
{
	rv64_mmu_state_changed(cpu);
}

static int mmio_load(struct rv64_cpu *cpu, uint64_t va, uint64_t pa, unsigned size, uint64_t *val)
{
	const struct memmap *mm = cpu->vm->memmap;

	/* Device registers are accessed naturally aligned; anything else is an access fault. */
	if ((pa & (size - 1)) || !mm || memmap_mmio_read(mm, pa, size, val)) {
		guest_error("rv64: hart %llu: load of %u bytes from 0x%llx (va 0x%llx): %s",
			    (unsigned long long)cpu->mhartid, size, (unsigned long long)pa,
			    (unsigned long long)va,
			    (pa & (size - 1)) ? "misaligned device access" : "nothing there");
		return fault(cpu, RV64_EXC_LOAD_ACCESS, va);
	}
	return 0;
}

static int mmio_store(struct rv64_cpu *cpu, uint64_t va, uint64_t pa, unsigned size, uint64_t val)
{
	const struct memmap *mm = cpu->vm->memmap;

	if ((pa & (size - 1)) || !mm || memmap_mmio_write(mm, pa, size, val)) {
		guest_error("rv64: hart %llu: store of %u bytes to 0x%llx (va 0x%llx): %s",
			    (unsigned long long)cpu->mhartid, size, (unsigned long long)pa,
			    (unsigned long long)va,
			    (pa & (size - 1)) ? "misaligned device access" : "nothing there");
		return fault(cpu, RV64_EXC_STORE_ACCESS, va);
	}
	return 0;
}

int rv64_mmu_load_slow(struct rv64_cpu *cpu, uint64_t va, unsigned size, uint64_t *val)
{
	unsigned first = (unsigned)(RV64_PAGE_SIZE - (va & ~RV64_PAGE_MASK));
	struct mmu_loc lo, hi;

	mmu_sync(cpu);
	if (size <= first) {
		if (mmu_lookup(cpu, va, size, RV64_ACC_READ, PMP_R, &lo))
			return -1;
		if (!lo.host)
			return mmio_load(cpu, va, lo.pa, size, val);
		*val = host_read(lo.host, size);
		return 0;
	}
	/*
	 * Crosses a page: check both portions before reading; a fault reports the address of the
	 * portion that faulted (§3.1.16). Only RAM is split (devices: access fault).
	 */
	if (mmu_lookup(cpu, va, first, RV64_ACC_READ, PMP_R, &lo))
		return -1;
	if (!lo.host)
		return fault(cpu, RV64_EXC_LOAD_ACCESS, va);
	if (mmu_lookup(cpu, va + first, size - first, RV64_ACC_READ, PMP_R, &hi))
		return -1;
	if (!hi.host)
		return fault(cpu, RV64_EXC_LOAD_ACCESS, va + first);
	*val = 0;
	memcpy(val, lo.host, first);
	memcpy((uint8_t *)val + first, hi.host, size - first);
	return 0;
}

int rv64_mmu_store_slow(struct rv64_cpu *cpu, uint64_t va, unsigned size, uint64_t val)
{
	unsigned first = (unsigned)(RV64_PAGE_SIZE - (va & ~RV64_PAGE_MASK));
	struct mmu_loc lo, hi;

	mmu_sync(cpu);
	if (size <= first) {
		if (mmu_lookup(cpu, va, size, RV64_ACC_WRITE, PMP_W, &lo))
			return -1;
		if (!lo.host)
			return mmio_store(cpu, va, lo.pa, size, val);
		host_write(lo.host, size, val);
		dirty_store(cpu, va, lo.pa);
		return code_store(cpu, va, lo.pa);
	}
	/* Both portions are translated (D set) and checked before any byte is written. */
	if (mmu_lookup(cpu, va, first, RV64_ACC_WRITE, PMP_W, &lo))
		return -1;
	if (!lo.host)
		return fault(cpu, RV64_EXC_STORE_ACCESS, va);
	if (mmu_lookup(cpu, va + first, size - first, RV64_ACC_WRITE, PMP_W, &hi))
		return -1;
	if (!hi.host)
		return fault(cpu, RV64_EXC_STORE_ACCESS, va + first);
	memcpy(lo.host, &val, first);
	memcpy(hi.host, (uint8_t *)&val + first, size - first);
	dirty_store(cpu, va, lo.pa);
	dirty_store(cpu, va + first, hi.pa);
	return code_store(cpu, va, lo.pa) | code_store(cpu, va + first, hi.pa);
}

int rv64_mmu_fetch_slow(struct rv64_cpu *cpu, uint64_t va, uint32_t *insn)
{
	struct mmu_loc lo, hi;
	uint32_t parcel;

	mmu_sync(cpu);
	if (va & 1)
		return fault(cpu, RV64_EXC_INSN_MISALIGNED, va);
	if (mmu_lookup(cpu, va, 2, RV64_ACC_EXEC, PMP_X, &lo))
		return -1;
	parcel = (uint32_t)host_read(lo.host, 2);
	if ((parcel & 3) != 3) {
		*insn = parcel;
		return 0;
	}
	/*
	 * The second parcel may lie on the next page (or past the end of RAM): a fault there
	 * reports its own address, as Spike and QEMU do.
	 */
	if (mmu_lookup(cpu, va + 2, 2, RV64_ACC_EXEC, PMP_X, &hi))
		return -1;
	*insn = parcel | (uint32_t)host_read(hi.host, 2) << 16;
	return 0;
}

int rv64_mmu_code_page(struct rv64_cpu *cpu, uint64_t va, uint64_t *pa)
{
	struct mmu_loc loc;

	mmu_sync(cpu);
	if (mmu_lookup(cpu, va, 2, RV64_ACC_EXEC, PMP_X, &loc))
		return -1;
	if (!rv64_tlb_match(cpu, rv64_tlb_slot(cpu, RV64_ACC_EXEC, va), RV64_ACC_EXEC, va, 2))
		return 1;
	*pa = loc.pa & RV64_PAGE_MASK;
	return 0;
}

int rv64_mem_load(struct rv64_cpu *cpu, uint64_t va, unsigned size, uint64_t *val)
{
	return rv64_mmu_load(cpu, va, size, val);
}

int rv64_mem_store(struct rv64_cpu *cpu, uint64_t va, unsigned size, uint64_t val)
{
	return rv64_mmu_store(cpu, va, size, val) < 0 ? -1 : 0;
}

int rv64_mem_fetch(struct rv64_cpu *cpu, uint64_t va, uint32_t *insn)
{
	return rv64_mmu_fetch(cpu, va, insn);
}

int rv64_mem_atomic_ptr(struct rv64_cpu *cpu, uint64_t va, unsigned size, bool lr, void **host,
			uint64_t *pa)
{
	enum rv64_access acc = lr ? RV64_ACC_READ : RV64_ACC_WRITE;
	struct mmu_loc loc;

	mmu_sync(cpu);
	/* unpriv 20191213 §8.2-8.4: misaligned LR faults as a load, SC and AMOs as stores. */
	if (va & (size - 1))
		return fault(cpu, lr ? RV64_EXC_LOAD_MISALIGNED : RV64_EXC_STORE_MISALIGNED, va);
	if (mmu_lookup(cpu, va, size, acc, lr ? PMP_R : PMP_R | PMP_W, &loc))
		return -1;
	/* Atomics on devices are not supported (a PMA): access fault. */
	if (!loc.host)
		return fault(cpu, access_fault_cause[acc], va);
	if (!lr) {
		dirty_store(cpu, va, loc.pa);  /* before the write: the VM is paused to read the log */
		code_store(cpu, va, loc.pa); /* sets code_written: the executor leaves the page */
	}
	*host = loc.host;
	*pa = loc.pa;
	return 0;
}

int rv64_mmu_translate(struct rv64_cpu *cpu, uint64_t va, enum rv64_access acc, uint64_t *pa)
{
	struct mmu_loc loc;

	mmu_sync(cpu);
	if (mmu_lookup(cpu, va, 1, acc, pmp_need[acc], &loc))
		return -1;
	*pa = loc.pa;
	return 0;
}
