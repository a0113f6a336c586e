/*
 * csr.c - the RV64 CSR file, privilege checks, traps, interrupts and xRET (priv 1.12 ch. 3-4).
 *
 * Everything here runs on the vCPU's own thread. The only state written by other threads is
 * mip_ext and mtimecmp (atomics, read here) and the wake-up machinery in rv64.c.
 */
#include <errno.h>

#include "accel/rv64/cpu.h"
#include "kumo/base.h"

/* mstatus fields, priv 1.12 §3.1.6. */
#define MS_SIE (1ULL << 1)
#define MS_MIE (1ULL << 3)
#define MS_SPIE (1ULL << 5)
#define MS_MPIE (1ULL << 7)
#define MS_SPP (1ULL << 8)
#define MS_MPP_SHIFT 11
#define MS_MPP (3ULL << MS_MPP_SHIFT)
#define MS_FS (3ULL << 13)
#define MS_MPRV (1ULL << 17)
#define MS_SUM (1ULL << 18)
#define MS_MXR (1ULL << 19)
#define MS_TVM (1ULL << 20)
#define MS_TW (1ULL << 21)
#define MS_TSR (1ULL << 22)
#define MS_UXL (3ULL << 32)
#define MS_SXL (3ULL << 34)
#define MS_SD (1ULL << 63)

#define MSTATUS_WMASK                                                                          \
	(MS_SIE | MS_MIE | MS_SPIE | MS_MPIE | MS_SPP | MS_MPP | MS_FS | MS_MPRV | MS_SUM |    \
	 MS_MXR | MS_TVM | MS_TW | MS_TSR)
/* sstatus is a restricted view of mstatus, priv 1.12 §4.1.1. */
#define SSTATUS_MASK (MS_SIE | MS_SPIE | MS_SPP | MS_FS | MS_SUM | MS_MXR | MS_UXL | MS_SD)
#define SSTATUS_WMASK (MS_SIE | MS_SPIE | MS_SPP | MS_FS | MS_SUM | MS_MXR)

/* mip/mie bits, priv 1.12 §3.1.9. */
#define IRQ_SSI (1ULL << 1)
#define IRQ_MSI (1ULL << 3)
#define IRQ_STI (1ULL << 5)
#define IRQ_MTI (1ULL << 7)
#define IRQ_SEI (1ULL << 9)
#define IRQ_MEI (1ULL << 11)
#define IRQ_S_MASK (IRQ_SSI | IRQ_STI | IRQ_SEI)
#define IRQ_ALL (IRQ_S_MASK | IRQ_MSI | IRQ_MTI | IRQ_MEI)

/* medeleg: ECALL from M (11) is read-only zero, priv 1.12 §3.1.8; 10 and 14 are reserved. */
#define MEDELEG_WMASK (0xffffULL & ~((1ULL << 10) | (1ULL << 11) | (1ULL << 14)))

#define MENVCFG_FIOM (1ULL << 0)
#define MENVCFG_STCE (1ULL << 63)

#define MCOUNTINHIBIT_CY (1ULL << 0)
#define MCOUNTINHIBIT_IR (1ULL << 2)

#define SATP_MODE_SHIFT 60
#define SATP_ASID_MASK (0xffffULL << 44)
#define SATP_PPN_MASK ((1ULL << 44) - 1)

#define PMPADDR_MASK ((1ULL << 54) - 1)
#define PMP_L 0x80
#define PMP_A_TOR 0x08
#define PMP_A_MASK 0x18
#define PMP_R 0x01
#define PMP_W 0x02

#define CAUSE_INTR (1ULL << 63)

/* Misa: MXL=2 (64-bit), extensions A C D F I M S U (priv 1.12 §3.1.1). */
#define MISA_VALUE                                                                             \
	((2ULL << 62) | (1u << ('A' - 'A')) | (1u << ('C' - 'A')) | (1u << ('D' - 'A')) |      \
	 (1u << ('F' - 'A')) | (1u << ('I' - 'A')) | (1u << ('M' - 'A')) | (1u << ('S' - 'A')) | \
	 (1u << ('U' - 'A')))

enum csr_num {
	CSR_FFLAGS = 0x001,
	CSR_FRM = 0x002,
	CSR_FCSR = 0x003,
	CSR_CYCLE = 0xc00,
	CSR_TIME = 0xc01,
	CSR_INSTRET = 0xc02,
	CSR_HPMCOUNTER3 = 0xc03,
	CSR_HPMCOUNTER31 = 0xc1f,
	CSR_SSTATUS = 0x100,
	CSR_SIE = 0x104,
	CSR_STVEC = 0x105,
	CSR_SCOUNTEREN = 0x106,
	CSR_SENVCFG = 0x10a,
	CSR_SSCRATCH = 0x140,
	CSR_SEPC = 0x141,
	CSR_SCAUSE = 0x142,
	CSR_STVAL = 0x143,
	CSR_SIP = 0x144,
	CSR_STIMECMP = 0x14d,
	CSR_SATP = 0x180,
	CSR_MVENDORID = 0xf11,
	CSR_MARCHID = 0xf12,
	CSR_MIMPID = 0xf13,
	CSR_MHARTID = 0xf14,
	CSR_MCONFIGPTR = 0xf15,
	CSR_MSTATUS = 0x300,
	CSR_MISA = 0x301,
	CSR_MEDELEG = 0x302,
	CSR_MIDELEG = 0x303,
	CSR_MIE = 0x304,
	CSR_MTVEC = 0x305,
	CSR_MCOUNTEREN = 0x306,
	CSR_MENVCFG = 0x30a,
	CSR_MCOUNTINHIBIT = 0x320,
	CSR_MHPMEVENT3 = 0x323,
	CSR_MHPMEVENT31 = 0x33f,
	CSR_MSCRATCH = 0x340,
	CSR_MEPC = 0x341,
	CSR_MCAUSE = 0x342,
	CSR_MTVAL = 0x343,
	CSR_MIP = 0x344,
	CSR_PMPCFG0 = 0x3a0,
	CSR_PMPCFG15 = 0x3af,
	CSR_PMPADDR0 = 0x3b0,
	CSR_PMPADDR63 = 0x3ef,
	CSR_MSECCFG = 0x747,
	CSR_MCYCLE = 0xb00,
	CSR_MINSTRET = 0xb02,
	CSR_MHPMCOUNTER3 = 0xb03,
	CSR_MHPMCOUNTER31 = 0xb1f,
};

static void set_illegal(struct rv64_cpu *cpu)
{
	cpu->exc_cause = RV64_EXC_ILLEGAL_INSN;
	cpu->exc_tval = 0; /* the executor fills in the instruction bits */
}

static bool stce(const struct rv64_cpu *cpu)
{
	return cpu->menvcfg & MENVCFG_STCE;
}

void rv64_retire(struct rv64_cpu *cpu, uint64_t n)
{
	/* mcycle = instret + cycle_base; keep each counter frozen when inhibited (§3.1.13). */
	bool cy = !(cpu->mcountinhibit & MCOUNTINHIBIT_CY);
	bool ir = !(cpu->mcountinhibit & MCOUNTINHIBIT_IR);

	RV64_STAT_ADD(cpu, instret, n);
	if (ir)
		cpu->instret += n;
	if (cy && !ir)
		cpu->cycle_base += n;
	else if (!cy && ir)
		cpu->cycle_base -= n;
}

uint64_t rv64_irq_pending(struct rv64_cpu *cpu, uint64_t now)
{
	uint64_t p = cpu->mip | atomic_load_explicit(&cpu->mip_ext, memory_order_acquire);

	if (now >= atomic_load_explicit(&cpu->mtimecmp, memory_order_relaxed))
		p |= IRQ_MTI;
	/* Sstc: STIP reflects stimecmp and is read-only while STCE is set. */
	if (stce(cpu) && now >= cpu->stimecmp)
		p |= IRQ_STI;
	return p;
}

uint64_t rv64_timer_deadline(struct rv64_cpu *cpu)
{
	uint64_t d = atomic_load_explicit(&cpu->mtimecmp, memory_order_relaxed);

	if (stce(cpu) && cpu->stimecmp < d)
		d = cpu->stimecmp;
	return d;
}

/* Highest priority first: MEI MSI MTI SEI SSI STI (priv 1.12 §3.1.9). */
static int pick_irq(uint64_t bits)
{
	static const uint8_t order[] = {11, 3, 7, 9, 1, 5};

	for (unsigned i = 0; i < sizeof(order); i++)
		if (bits & (1ULL << order[i]))
			return order[i];
	return -1;
}

bool rv64_irq_take(struct rv64_cpu *cpu, uint64_t pending)
{
	uint64_t en = pending & cpu->mie;
	uint64_t m, s = 0;
	int irq;

	if (!en)
		return false;
	/* Global enables, priv 1.12 §3.1.6.1: a lower mode is always interruptible. */
	m = en & ~cpu->mideleg;
	if (cpu->priv == RV64_PRIV_M && !(cpu->mstatus & MS_MIE))
		m = 0;
	if (cpu->priv < RV64_PRIV_S || (cpu->priv == RV64_PRIV_S && (cpu->mstatus & MS_SIE)))
		s = en & cpu->mideleg;
	irq = pick_irq(m ? m : s);
	if (irq < 0)
		return false;
	RV64_STAT_ADD(cpu, interrupts, 1);
	rv64_trap(cpu, CAUSE_INTR | (uint64_t)irq, 0);
	return true;
}

void rv64_trap(struct rv64_cpu *cpu, uint64_t cause, uint64_t tval)
{
	bool intr = cause & CAUSE_INTR;
	uint64_t code = cause & ~CAUSE_INTR;
	uint64_t deleg = intr ? cpu->mideleg : cpu->medeleg;
	uint64_t prev = cpu->priv;
	uint64_t s = cpu->mstatus;
	uint64_t vec;

	if (!intr)
		RV64_STAT_ADD(cpu, traps, 1);
	/* Delegation, priv 1.12 §3.1.8: never from M, only for causes with their medeleg bit. */
	if (prev <= RV64_PRIV_S && code < 64 && (deleg >> code) & 1) {
		cpu->scause = cause;
		cpu->sepc = cpu->pc;
		cpu->stval = tval;
		s &= ~(MS_SPIE | MS_SPP | MS_SIE);
		if (cpu->mstatus & MS_SIE)
			s |= MS_SPIE;
		if (prev == RV64_PRIV_S)
			s |= MS_SPP;
		vec = cpu->stvec;
		cpu->priv = RV64_PRIV_S;
	} else {
		cpu->mcause = cause;
		cpu->mepc = cpu->pc;
		cpu->mtval = tval;
		s &= ~(MS_MPIE | MS_MPP | MS_MIE);
		if (cpu->mstatus & MS_MIE)
			s |= MS_MPIE;
		s |= prev << MS_MPP_SHIFT;
		vec = cpu->mtvec;
		cpu->priv = RV64_PRIV_M;
	}
	cpu->mstatus = s;
	/* xtvec MODE 1 = vectored: interrupts go to BASE + 4 * cause (§3.1.7). */
	cpu->pc = (vec & ~3ULL) + ((intr && (vec & 1)) ? 4 * code : 0);
	rv64_mmu_state_changed(cpu);
}

int rv64_mret(struct rv64_cpu *cpu)
{
	uint64_t s = cpu->mstatus;
	unsigned mpp = (s >> MS_MPP_SHIFT) & 3;

	if (cpu->priv != RV64_PRIV_M) {
		set_illegal(cpu);
		return -1;
	}
	/* priv 1.12 §3.3.2: MIE = MPIE, MPIE = 1, MPP = U; leaving M clears MPRV. */
	s &= ~(MS_MIE | MS_MPP);
	if (s & MS_MPIE)
		s |= MS_MIE;
	s |= MS_MPIE;
	if (mpp != RV64_PRIV_M)
		s &= ~MS_MPRV;
	cpu->mstatus = s;
	cpu->priv = mpp;
	cpu->pc = cpu->mepc;
	rv64_mmu_state_changed(cpu);
	return 0;
}

int rv64_sret(struct rv64_cpu *cpu)
{
	uint64_t s = cpu->mstatus;
	unsigned spp = (s & MS_SPP) ? RV64_PRIV_S : RV64_PRIV_U;

	/* U-mode never; S-mode only when mstatus.TSR is clear (§3.1.6.5). */
	if (cpu->priv < RV64_PRIV_S || (cpu->priv == RV64_PRIV_S && (s & MS_TSR))) {
		set_illegal(cpu);
		return -1;
	}
	s &= ~(MS_SIE | MS_SPP | MS_MPRV);
	if (s & MS_SPIE)
		s |= MS_SIE;
	s |= MS_SPIE;
	cpu->mstatus = s;
	cpu->priv = spp;
	cpu->pc = cpu->sepc;
	rv64_mmu_state_changed(cpu);
	return 0;
}

static uint64_t read_mstatus(const struct rv64_cpu *cpu)
{
	uint64_t s = (cpu->mstatus & MSTATUS_WMASK) | (2ULL << 32) | (2ULL << 34);

	if ((s & MS_FS) == MS_FS)
		s |= MS_SD;
	return s;
}

static void write_mstatus(struct rv64_cpu *cpu, uint64_t val, uint64_t wmask)
{
	uint64_t old = cpu->mstatus;
	uint64_t s = (old & ~wmask) | (val & wmask);

	/* MPP is WARL over {U, S, M}: the reserved value 2 keeps the old field. */
	if (((s & MS_MPP) >> MS_MPP_SHIFT) == 2)
		s = (s & ~MS_MPP) | (old & MS_MPP);
	cpu->mstatus = s;
	if ((old ^ s) & (MS_MPRV | MS_MPP | MS_SUM | MS_MXR))
		rv64_mmu_state_changed(cpu);
}

static uint64_t read_time(void)
{
	return clock_guest_ticks();
}

static uint64_t read_mip(struct rv64_cpu *cpu)
{
	return rv64_irq_pending(cpu, read_time()) & IRQ_ALL;
}

/* Bits of mip that M-mode software writes (§3.1.9); STIP belongs to Sstc while STCE is set. */
static uint64_t mip_wmask(const struct rv64_cpu *cpu)
{
	return stce(cpu) ? (IRQ_SSI | IRQ_SEI) : IRQ_S_MASK;
}

/*
 * An SSIP raised from outside (an IPI the VMM's SBI delivers with set_interrupt) acts like the
 * software-writable bit firmware would have set: the guest acknowledges it by clearing SSIP.
 */
static void clear_ext_ssip(struct rv64_cpu *cpu)
{
	atomic_fetch_and_explicit(&cpu->mip_ext, ~IRQ_SSI, memory_order_relaxed);
}

uint64_t rv64_mip_soft_get(struct rv64_cpu *cpu)
{
	return cpu->mip | (atomic_load_explicit(&cpu->mip_ext, memory_order_acquire) & IRQ_SSI);
}

/* The value replaces every software-writable bit; an SSIP the VMM raised travels in it. */
void rv64_mip_soft_set(struct rv64_cpu *cpu, uint64_t val)
{
	clear_ext_ssip(cpu);
	cpu->mip = val & mip_wmask(cpu);
}

static bool pmpaddr_locked(const struct rv64_cpu *cpu, unsigned i)
{
	if (cpu->pmpcfg[i] & PMP_L)
		return true;
	/* A locked TOR entry also locks the address register below it (§3.7.1). */
	return i + 1 < 64 && (cpu->pmpcfg[i + 1] & PMP_L) &&
	       (cpu->pmpcfg[i + 1] & PMP_A_MASK) == PMP_A_TOR;
}

static void write_pmpcfg(struct rv64_cpu *cpu, unsigned idx, uint64_t val)
{
	for (unsigned b = 0; b < 8; b++) {
		unsigned i = idx * 4 + b; /* pmpcfg2k holds entries 8k..8k+7 on RV64 */
		uint8_t v = (uint8_t)(val >> (8 * b)) & 0x9f;

		if (cpu->pmpcfg[i] & PMP_L)
			continue;
		/* R=0 W=1 is reserved: WARL maps it to no access. */
		if ((v & (PMP_R | PMP_W)) == PMP_W)
			v &= ~PMP_W;
		cpu->pmpcfg[i] = v;
	}
	rv64_pmp_changed(cpu);
}

static uint64_t read_pmpcfg(const struct rv64_cpu *cpu, unsigned idx)
{
	uint64_t v = 0;

	for (unsigned b = 0; b < 8; b++)
		v |= (uint64_t)cpu->pmpcfg[idx * 4 + b] << (8 * b);
	return v;
}

/*
 * Access rules that depend on the current privilege beyond the address-encoded ones:
 * counter enables (§3.1.11, §4.1.4), TVM for satp (§3.1.6.5), FS for the FP CSRs, Sstc.
 */
static bool csr_allowed(const struct rv64_cpu *cpu, unsigned csr)
{
	unsigned priv = cpu->priv;

	if (((csr >> 8) & 3) > priv)
		return false;
	if (csr >= CSR_CYCLE && csr <= CSR_HPMCOUNTER31) {
		unsigned bit = csr - CSR_CYCLE;

		if (priv < RV64_PRIV_M && !((cpu->mcounteren >> bit) & 1))
			return false;
		if (priv < RV64_PRIV_S && !((cpu->scounteren >> bit) & 1))
			return false;
	}
	if (csr == CSR_SATP && priv == RV64_PRIV_S && (cpu->mstatus & MS_TVM))
		return false;
	if (csr == CSR_STIMECMP && priv < RV64_PRIV_M &&
	    (!stce(cpu) || !(cpu->mcounteren & 2)))
		return false;
	if (csr >= CSR_FFLAGS && csr <= CSR_FCSR && !(cpu->mstatus & MS_FS))
		return false;
	return true;
}

int rv64_csr_get(struct rv64_cpu *cpu, unsigned csr, uint64_t *val)
{
	uint64_t v;

	switch (csr) {
	case CSR_FFLAGS:
		v = cpu->fflags & 0x1f;
		break;
	case CSR_FRM:
		v = cpu->frm & 7;
		break;
	case CSR_FCSR:
		v = (cpu->fflags & 0x1f) | ((cpu->frm & 7) << 5);
		break;
	case CSR_CYCLE:
	case CSR_MCYCLE:
		v = cpu->instret + cpu->cycle_base;
		break;
	case CSR_TIME:
		v = read_time();
		break;
	case CSR_INSTRET:
	case CSR_MINSTRET:
		v = cpu->instret;
		break;
	case CSR_SSTATUS:
		v = read_mstatus(cpu) & SSTATUS_MASK;
		break;
	case CSR_SIE:
		v = cpu->mie & cpu->mideleg;
		break;
	case CSR_STVEC:
		v = cpu->stvec;
		break;
	case CSR_SCOUNTEREN:
		v = cpu->scounteren;
		break;
	case CSR_SENVCFG:
		v = cpu->senvcfg;
		break;
	case CSR_SSCRATCH:
		v = cpu->sscratch;
		break;
	case CSR_SEPC:
		v = cpu->sepc;
		break;
	case CSR_SCAUSE:
		v = cpu->scause;
		break;
	case CSR_STVAL:
		v = cpu->stval;
		break;
	case CSR_SIP:
		v = read_mip(cpu) & cpu->mideleg;
		break;
	case CSR_STIMECMP:
		v = cpu->stimecmp;
		break;
	case CSR_SATP:
		v = cpu->satp;
		break;
	case CSR_MVENDORID:
	case CSR_MARCHID:
	case CSR_MIMPID:
	case CSR_MCONFIGPTR:
		v = 0;
		break;
	case CSR_MHARTID:
		v = cpu->mhartid;
		break;
	case CSR_MSTATUS:
		v = read_mstatus(cpu);
		break;
	case CSR_MISA:
		v = cpu->misa;
		break;
	case CSR_MEDELEG:
		v = cpu->medeleg;
		break;
	case CSR_MIDELEG:
		v = cpu->mideleg;
		break;
	case CSR_MIE:
		v = cpu->mie;
		break;
	case CSR_MTVEC:
		v = cpu->mtvec;
		break;
	case CSR_MCOUNTEREN:
		v = cpu->mcounteren;
		break;
	case CSR_MENVCFG:
		v = cpu->menvcfg;
		break;
	case CSR_MCOUNTINHIBIT:
		v = cpu->mcountinhibit;
		break;
	case CSR_MSCRATCH:
		v = cpu->mscratch;
		break;
	case CSR_MEPC:
		v = cpu->mepc;
		break;
	case CSR_MCAUSE:
		v = cpu->mcause;
		break;
	case CSR_MTVAL:
		v = cpu->mtval;
		break;
	case CSR_MIP:
		v = read_mip(cpu);
		break;
	case CSR_MSECCFG:
		v = cpu->mseccfg;
		break;
	default:
		if ((csr >= CSR_HPMCOUNTER3 && csr <= CSR_HPMCOUNTER31) ||
		    (csr >= CSR_MHPMCOUNTER3 && csr <= CSR_MHPMCOUNTER31) ||
		    (csr >= CSR_MHPMEVENT3 && csr <= CSR_MHPMEVENT31)) {
			v = 0; /* no hardware performance monitors: read-only zero */
		} else if (csr >= CSR_PMPCFG0 && csr <= CSR_PMPCFG15 && !(csr & 1)) {
			v = read_pmpcfg(cpu, csr - CSR_PMPCFG0);
		} else if (csr >= CSR_PMPADDR0 && csr <= CSR_PMPADDR63) {
			v = cpu->pmpaddr[csr - CSR_PMPADDR0];
		} else {
			return -ENOENT;
		}
	}
	*val = v;
	return 0;
}

int rv64_csr_set(struct rv64_cpu *cpu, unsigned csr, uint64_t val)
{
	switch (csr) {
	case CSR_FFLAGS:
		cpu->fflags = val & 0x1f;
		break;
	case CSR_FRM:
		cpu->frm = val & 7;
		break;
	case CSR_FCSR:
		cpu->fflags = val & 0x1f;
		cpu->frm = (val >> 5) & 7;
		break;
	case CSR_MCYCLE:
		cpu->cycle_base = val - cpu->instret;
		break;
	case CSR_MINSTRET: {
		uint64_t cycle = cpu->instret + cpu->cycle_base;

		cpu->instret = val;
		cpu->cycle_base = cycle - val;
		break;
	}
	case CSR_SSTATUS:
		write_mstatus(cpu, val, SSTATUS_WMASK);
		break;
	case CSR_SIE:
		cpu->mie = (cpu->mie & ~cpu->mideleg) | (val & cpu->mideleg & IRQ_ALL);
		break;
	case CSR_STVEC:
		if ((val & 3) < 2)
			cpu->stvec = val;
		break;
	case CSR_SCOUNTEREN:
		cpu->scounteren = val & 0xffffffffULL;
		break;
	case CSR_SENVCFG:
		cpu->senvcfg = val & MENVCFG_FIOM;
		break;
	case CSR_SSCRATCH:
		cpu->sscratch = val;
		break;
	case CSR_SEPC:
		cpu->sepc = val & ~1ULL;
		break;
	case CSR_SCAUSE:
		cpu->scause = val;
		break;
	case CSR_STVAL:
		cpu->stval = val;
		break;
	case CSR_SIP:
		/* Only SSIP is writable through sip, and only when delegated (§4.1.3). */
		cpu->mip = (cpu->mip & ~(cpu->mideleg & IRQ_SSI)) | (val & cpu->mideleg & IRQ_SSI);
		if ((cpu->mideleg & IRQ_SSI) && !(val & IRQ_SSI))
			clear_ext_ssip(cpu);
		break;
	case CSR_STIMECMP:
		cpu->stimecmp = val;
		break;
	case CSR_SATP: {
		uint64_t mode = val >> SATP_MODE_SHIFT;

		/* Bare, Sv39, Sv48, Sv57; any other mode leaves satp unchanged (§4.1.11). */
		if (mode != 0 && mode != 8 && mode != 9 && mode != 10)
			break;
		if (mode == 0)
			val = 0;
		cpu->satp = val & ((0xfULL << SATP_MODE_SHIFT) | SATP_ASID_MASK | SATP_PPN_MASK);
		rv64_mmu_state_changed(cpu);
		break;
	}
	case CSR_MSTATUS:
		write_mstatus(cpu, val, MSTATUS_WMASK);
		break;
	case CSR_MISA:
		break; /* WARL, read-only here */
	case CSR_MEDELEG:
		cpu->medeleg = val & MEDELEG_WMASK;
		break;
	case CSR_MIDELEG:
		cpu->mideleg = val & IRQ_S_MASK;
		break;
	case CSR_MIE:
		cpu->mie = val & IRQ_ALL;
		break;
	case CSR_MTVEC:
		if ((val & 3) < 2)
			cpu->mtvec = val;
		break;
	case CSR_MCOUNTEREN:
		cpu->mcounteren = val & 0xffffffffULL;
		break;
	case CSR_MENVCFG:
		cpu->menvcfg = val & (MENVCFG_FIOM | MENVCFG_STCE);
		break;
	case CSR_MCOUNTINHIBIT:
		cpu->mcountinhibit = val & (MCOUNTINHIBIT_CY | MCOUNTINHIBIT_IR);
		break;
	case CSR_MSCRATCH:
		cpu->mscratch = val;
		break;
	case CSR_MEPC:
		cpu->mepc = val & ~1ULL;
		break;
	case CSR_MCAUSE:
		cpu->mcause = val;
		break;
	case CSR_MTVAL:
		cpu->mtval = val;
		break;
	case CSR_MIP:
		cpu->mip = (cpu->mip & ~mip_wmask(cpu)) | (val & mip_wmask(cpu));
		if (!(val & IRQ_SSI))
			clear_ext_ssip(cpu);
		break;
	case CSR_MSECCFG:
		break; /* no Smepmp: mseccfg reads zero */
	case CSR_CYCLE:
	case CSR_TIME:
	case CSR_INSTRET:
	case CSR_MVENDORID:
	case CSR_MARCHID:
	case CSR_MIMPID:
	case CSR_MHARTID:
	case CSR_MCONFIGPTR:
		break; /* read-only; the instruction path rejects writes earlier */
	default:
		if ((csr >= CSR_HPMCOUNTER3 && csr <= CSR_HPMCOUNTER31) ||
		    (csr >= CSR_MHPMCOUNTER3 && csr <= CSR_MHPMCOUNTER31) ||
		    (csr >= CSR_MHPMEVENT3 && csr <= CSR_MHPMEVENT31)) {
			break;
		} else if (csr >= CSR_PMPCFG0 && csr <= CSR_PMPCFG15 && !(csr & 1)) {
			write_pmpcfg(cpu, csr - CSR_PMPCFG0, val);
		} else if (csr >= CSR_PMPADDR0 && csr <= CSR_PMPADDR63) {
			unsigned i = csr - CSR_PMPADDR0;

			if (!pmpaddr_locked(cpu, i)) {
				cpu->pmpaddr[i] = val & PMPADDR_MASK;
				rv64_pmp_changed(cpu);
			}
		} else {
			return -ENOENT;
		}
	}
	return 0;
}

int rv64_csr_read(struct rv64_cpu *cpu, unsigned csr, uint64_t *val)
{
	if (!csr_allowed(cpu, csr) || rv64_csr_get(cpu, csr, val)) {
		set_illegal(cpu);
		return -1;
	}
	return 0;
}

int rv64_csr_write(struct rv64_cpu *cpu, unsigned csr, uint64_t val)
{
	uint64_t dummy;

	/* csr[11:10] = 3: read-only (§2.1). */
	if ((csr >> 10) == 3 || !csr_allowed(cpu, csr) || rv64_csr_get(cpu, csr, &dummy)) {
		set_illegal(cpu);
		return -1;
	}
	rv64_csr_set(cpu, csr, val);
	if (csr >= CSR_FFLAGS && csr <= CSR_FCSR)
		cpu->mstatus |= MS_FS; /* writing FP state makes FS dirty */
	return 0;
}

int rv64_csr_insn(struct rv64_cpu *cpu, unsigned csr, unsigned op, uint64_t src, bool rd_used,
		  bool wr, uint64_t *old)
{
	uint64_t v = 0, base;

	/* unpriv 20191213 §9.1: CSRRW with rd=x0 does not read; RS/RC with rs1=x0 do not write. */
	if (wr && ((csr >> 10) == 3 || !csr_allowed(cpu, csr))) {
		set_illegal(cpu);
		return -1;
	}
	if ((rd_used || op != 1) && rv64_csr_read(cpu, csr, &v))
		return -1;
	*old = v;
	if (!wr)
		return 0;
	/* Read-modify-write of mip uses the software-writable SEIP, not the external line. */
	base = v;
	if (csr == CSR_MIP || csr == CSR_SIP)
		base = (v & ~IRQ_SEI) | (cpu->mip & IRQ_SEI);
	if (op == 2)
		v = base | src;
	else if (op == 3)
		v = base & ~src;
	else
		v = src;
	return rv64_csr_write(cpu, csr, v);
}

void rv64_cpu_reset(struct rv64_cpu *cpu)
{
	uint64_t hartid = cpu->mhartid;

	for (unsigned i = 0; i < 32; i++) {
		cpu->x[i] = 0;
		cpu->f[i] = 0;
	}
	cpu->pc = 0;
	cpu->priv = RV64_PRIV_M;
	cpu->fflags = cpu->frm = 0;
	cpu->exc_cause = cpu->exc_tval = 0;
	cpu->resv_addr = ~0ULL;
	cpu->resv_val = 0;
	cpu->mstatus = 0;
	cpu->misa = MISA_VALUE;
	cpu->medeleg = cpu->mideleg = cpu->mie = cpu->mip = 0;
	cpu->mtvec = cpu->mscratch = cpu->mepc = cpu->mcause = cpu->mtval = 0;
	cpu->mcounteren = cpu->mcountinhibit = cpu->menvcfg = cpu->mseccfg = 0;
	cpu->stvec = cpu->sscratch = cpu->sepc = cpu->scause = cpu->stval = 0;
	cpu->scounteren = cpu->senvcfg = 0;
	cpu->satp = 0;
	cpu->stimecmp = UINT64_MAX;
	cpu->mhartid = hartid;
	cpu->cycle_base = 0;
	cpu->instret = 0;
	for (unsigned i = 0; i < 64; i++) {
		cpu->pmpcfg[i] = 0;
		cpu->pmpaddr[i] = 0;
	}
	atomic_store(&cpu->mip_ext, 0);
	atomic_store(&cpu->mtimecmp, UINT64_MAX);
	cpu->sbi_pending = false;
	rv64_tlb_flush(cpu);
	rv64_mmu_state_changed(cpu);
}
