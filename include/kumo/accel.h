/*
 * accel.h - the accelerator interface: how the VMM runs virtual CPUs.
 *
 * Shaped like KVM's run loop (and QEMU's AccelOps): the VMM creates an accelerator VM over guest
 * RAM and a memory map, creates one vCPU per hart, and each vCPU thread loops on vcpu_run().
 * vcpu_run() executes guest code until something needs the VMM and then returns with
 * accel_run(vcpu)->exit_reason saying why:
 *
 *   ACCEL_EXIT_SBI            an ECALL the VMM serves as a hypercall (SBI firmware in the VMM).
 *                             Fill run->sbi.ret[0..1] (a0, a1); the next vcpu_run() writes them
 *                             back and steps past the ECALL.
 *   ACCEL_EXIT_HALT           WFI with no interrupt pending. run->halt.deadline_ticks is the
 *                             guest time at which a timer fires (UINT64_MAX: none). The VMM may
 *                             call vcpu_wait() to sleep until then or until an interrupt/kick.
 *   ACCEL_EXIT_INTR           vcpu_kick() was called (from any thread).
 *   ACCEL_EXIT_MMIO           an access to a range the backend does not dispatch itself. Loads:
 *                             the VMM fills run->mmio.data and the next vcpu_run() completes it.
 *   ACCEL_EXIT_SYSTEM_EVENT   reserved for backends that detect shutdown themselves.
 *   ACCEL_EXIT_DEBUG          reserved (breakpoints, single-step).
 *   ACCEL_EXIT_INTERNAL_ERROR the backend cannot go on (run->internal.msg says why). Guest
 *                             mistakes are never internal errors: they are architectural traps.
 *
 * The software RV64 backend dispatches MMIO itself on the vCPU thread through the memmap (the
 * fast path TCG also takes); devices never know which accelerator runs them.
 *
 * Threads: vcpu_run/get_reg/set_reg only on the thread that owns the vCPU (or while it is not
 * running). vcpu_kick, set_interrupt, set_timer, flush_tlb and vcpu_wait's wake-ups are callable
 * from any thread. All functions return 0 or -errno unless they say otherwise.
 */
#ifndef KUMO_ACCEL_H
#define KUMO_ACCEL_H

#include <stdbool.h>
#include <stdint.h>

struct memmap;
struct accel_vm;
struct accel_vcpu;

enum accel_exit_reason {
	ACCEL_EXIT_NONE = 0,
	ACCEL_EXIT_MMIO,
	ACCEL_EXIT_SBI,
	ACCEL_EXIT_HALT,
	ACCEL_EXIT_INTR,
	ACCEL_EXIT_SYSTEM_EVENT,
	ACCEL_EXIT_DEBUG,
	ACCEL_EXIT_INTERNAL_ERROR,
	ACCEL_EXIT__COUNT,
};

struct accel_run {
	uint32_t exit_reason; /* enum accel_exit_reason */
	union {
		struct {
			uint64_t gpa;
			uint64_t data; /* store value, or load result filled by the VMM */
			uint32_t len;  /* 1, 2, 4 or 8 bytes */
			bool is_write;
		} mmio;
		struct {
			uint64_t ext;     /* a7: SBI extension id */
			uint64_t fid;     /* a6: function id */
			uint64_t args[6]; /* a0..a5 */
			int64_t ret[2];   /* written back to a0 (error), a1 (value) */
			uint32_t priv;    /* privilege the ECALL came from: 0 U, 1 S, 3 M */
		} sbi;
		struct {
			uint64_t deadline_ticks; /* guest time of the next timer interrupt, UINT64_MAX: none */
		} halt;
		struct {
			uint32_t type;
			uint64_t data;
		} system_event;
		struct {
			char msg[128];
		} internal;
	};
};

/* Registers by id (KVM ONE_REG style): snapshots and debuggers never see backend structs. */
#define ACCEL_REG_PC 0x0u
#define ACCEL_REG_PRIV 0x1u /* 0 U, 1 S, 3 M */
/*
 * The pending-interrupt bits the hart holds itself: what software wrote to mip (priv 1.12
 * §3.1.9) and an SSIP the VMM raised for an SBI IPI. Reading the mip CSR also ORs in the levels
 * of interrupt lines (PLIC, ACLINT) and timers; those belong to the devices, which drive them
 * again when restored, so a snapshot saves this register instead of mip.
 */
#define ACCEL_REG_MIP_SOFT 0x2u
#define ACCEL_REG_X(n) (0x100u + (n)) /* x0..x31 */
#define ACCEL_REG_F(n) (0x200u + (n)) /* f0..f31, raw 64-bit (NaN-boxed singles) */
#define ACCEL_REG_CSR(n) (0x1000u + (n)) /* 12-bit CSR number; writes keep WARL rules */

/* Interrupt numbers for set_interrupt(): the mip bit positions (priv 1.12 §3.1.9). */
enum accel_irq {
	ACCEL_IRQ_SSI = 1,
	ACCEL_IRQ_MSI = 3,
	ACCEL_IRQ_STI = 5,
	ACCEL_IRQ_MTI = 7,
	ACCEL_IRQ_SEI = 9,
	ACCEL_IRQ_MEI = 11,
};

struct accel_vm_config {
	void *ram;            /* host address of guest RAM */
	uint64_t ram_base;    /* guest-physical base of RAM */
	uint64_t ram_size;    /* bytes */
	struct memmap *memmap; /* MMIO dispatch; must outlive the accel VM */
	unsigned ncpus;
	/*
	 * Bit p set: ECALL from privilege p (0 U, 1 S, 3 M) exits with ACCEL_EXIT_SBI instead of
	 * trapping. The VMM's SBI firmware sets bit 1; a user-mode test harness sets bit 0.
	 */
	uint32_t ecall_exit_mask;
};

struct accel_stats {
	uint64_t instret;                      /* instructions retired */
	uint64_t exits[ACCEL_EXIT__COUNT];     /* vcpu_run() returns by reason */
	uint64_t traps;                        /* exceptions taken by the guest */
	uint64_t interrupts;                   /* interrupts taken by the guest */
	uint64_t tlb_hits, tlb_misses;
	uint64_t dcache_hits, dcache_misses;   /* decode cache, 0 when the backend has none */
	uint64_t dcache_bytes; /* host memory the decode cache holds now (anonymous) */
	uint64_t code_bytes;   /* translated code held now (0 without a translator) */
};

struct accel_ops {
	const char *name;
	const char *isa; /* ISA string to advertise, e.g. "rv64imafdc_zicsr_zifencei_sstc" */

	int (*vm_new)(const struct accel_vm_config *cfg, struct accel_vm **out);
	void (*vm_free)(struct accel_vm *vm);

	/* vCPU `id` (0..ncpus-1) starts reset: M-mode, pc 0, all registers 0 except mhartid. */
	int (*vcpu_new)(struct accel_vm *vm, unsigned id, struct accel_vcpu **out);
	void (*vcpu_free)(struct accel_vcpu *vcpu);
	struct accel_run *(*vcpu_run_state)(struct accel_vcpu *vcpu);
	int (*vcpu_run)(struct accel_vcpu *vcpu);
	/* Makes vcpu_run() return ACCEL_EXIT_INTR promptly and ends a vcpu_wait(). Any thread. */
	void (*vcpu_kick)(struct accel_vcpu *vcpu);
	/*
	 * Sleeps until an interrupt is pending and locally enabled (the WFI wake-up condition), the
	 * guest time reaches deadline_ticks, or vcpu_kick() is called. Returns at once if any holds.
	 */
	void (*vcpu_wait)(struct accel_vcpu *vcpu, uint64_t deadline_ticks);

	/* Raises or lowers an interrupt source (enum accel_irq) atomically; wakes a waiting vCPU. */
	int (*set_interrupt)(struct accel_vcpu *vcpu, unsigned irq, bool level);
	/* Sets the hart's machine timer compare (ACLINT mtimecmp): MTIP = time >= mtimecmp. */
	int (*set_timer)(struct accel_vcpu *vcpu, uint64_t mtimecmp);
	/* Flushes the hart's address-translation caches before it next runs guest code. */
	int (*flush_tlb)(struct accel_vcpu *vcpu);

	/*
	 * Guest RAM [gpa, gpa+len) was written by something other than a vCPU (device DMA):
	 * cached decodings of code there must not be used again. Any thread. May be NULL.
	 */
	void (*ram_written)(struct accel_vm *vm, uint64_t gpa, uint64_t len);

	int (*get_reg)(struct accel_vcpu *vcpu, uint32_t id, uint64_t *val);
	int (*set_reg)(struct accel_vcpu *vcpu, uint32_t id, uint64_t val);
	int (*get_stats)(struct accel_vcpu *vcpu, struct accel_stats *out);

	/*
	 * The memory map's dirty log (memmap_dirty_log_*) was started or fetched-and-cleared:
	 * the vCPU forgets the write permissions it cached, before it next runs guest code, so
	 * that its next store to each page that is now clean marks the page (the software TLB's
	 * not-dirty flag, DESIGN.md §4). Call it for every vCPU while none runs guest code (a
	 * paused VM): stores through cached permissions between the clear and this call are not
	 * logged otherwise. Any thread. May be NULL (then the backend cannot log vCPU stores).
	 */
	int (*dirty_log_sync)(struct accel_vcpu *vcpu);
};

/* Backends. */
extern const struct accel_ops accel_rv64_ops;

/* Looks a backend up by name ("rv64"); NULL when unknown. */
const struct accel_ops *accel_find(const char *name);
const char *accel_exit_name(uint32_t reason);

#endif
