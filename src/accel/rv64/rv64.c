/*
 * rv64.c - the software RV64GC accelerator: accel_ops glue, the run loop, WFI sleeps, kicks.
 *
 * vcpu_run() alternates between rv64_exec() (exec.c), which runs a bounded number of
 * instructions, and the checks that need not happen per instruction: kicks, remote TLB flush
 * requests, dirty-log re-arms (dirty_log_sync), timers and pending interrupts. Interrupts are
 * therefore taken at instruction boundaries, at most RUN_BUDGET instructions after they become
 * pending and enabled; the executor ends its slice early after anything that can enable an
 * interrupt (CSR writes, xRET).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "accel/rv64/cpu.h"
#include "accel/rv64/jit.h"
#include "accel/rv64/mmu.h"
#include "kumo/accel.h"
#include "kumo/base.h"

/*
 * Instructions per slice between checks of kicks, flush requests and interrupts: about 10 us
 * of guest time at translated speed. Every slice end leaves translated code and looks the pc
 * up again; at 4096 a 1-vCPU Debian boot ended ~970,000 slices and took ~6% more host CPU.
 */
#define RUN_BUDGET 16384
/* Retired instructions after which a slice cut short (CSR write, xRET) reads the clock again. */
#define CLOCK_EVERY 2048

#define IRQ_STI (1ULL << 5)
#define IRQ_MTI (1ULL << 7)
#define MENVCFG_STCE (1ULL << 63)

static struct rv64_cpu *to_cpu(struct accel_vcpu *v)
{
	return (struct rv64_cpu *)v;
}

static struct rv64_vm *to_vm(struct accel_vm *v)
{
	return (struct rv64_vm *)v;
}

static int rv64_vm_new(const struct accel_vm_config *cfg, struct accel_vm **out)
{
	struct rv64_vm *vm;

	if (!cfg || !cfg->memmap || !cfg->ncpus || !out)
		return -EINVAL;
	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return -ENOMEM;
	vm->cpus = calloc(cfg->ncpus, sizeof(*vm->cpus));
	if (!vm->cpus)
		goto out_vm;
	/* One word per RAM page for the decode cache's invalidation (mmu.h). */
	vm->code_state = calloc((cfg->ram_size + 4095) / 4096, sizeof(*vm->code_state));
	if (!vm->code_state)
		goto out_cpus;
	vm->ram = cfg->ram;
	vm->ram_base = cfg->ram_base;
	vm->ram_size = cfg->ram_size;
	vm->memmap = cfg->memmap;
	vm->ncpus = cfg->ncpus;
	vm->ecall_exit_mask = cfg->ecall_exit_mask;
	*out = (struct accel_vm *)vm;
	return 0;

out_cpus:
	free(vm->cpus);
out_vm:
	free(vm);
	return -ENOMEM;
}

static void cpu_destroy(struct rv64_cpu *cpu)
{
	rv64_dcache_free(cpu);
	pthread_cond_destroy(&cpu->wait_cond);
	pthread_mutex_destroy(&cpu->wait_lock);
	free(cpu);
}

static void rv64_vm_free(struct accel_vm *v)
{
	struct rv64_vm *vm = to_vm(v);

	if (!vm)
		return;
	for (unsigned i = 0; i < vm->ncpus; i++)
		if (vm->cpus[i])
			cpu_destroy(vm->cpus[i]);
	free(vm->cpus);
	free(vm->code_state);
	free(vm);
}

static int rv64_vcpu_new(struct accel_vm *v, unsigned id, struct accel_vcpu **out)
{
	struct rv64_vm *vm = to_vm(v);
	struct rv64_cpu *cpu;
	pthread_condattr_t attr;
	int ret;

	if (!vm || !out || id >= vm->ncpus)
		return -EINVAL;
	if (vm->cpus[id])
		return -EEXIST;
	cpu = aligned_alloc(64, ALIGN_UP(sizeof(*cpu), 64));
	if (!cpu)
		return -ENOMEM;
	memset(cpu, 0, sizeof(*cpu));
	ret = -pthread_mutex_init(&cpu->wait_lock, NULL);
	if (ret)
		goto out_cpu;
	/* vcpu_wait() computes absolute CLOCK_MONOTONIC deadlines (clock_guest_ticks_to_ns). */
	ret = -pthread_condattr_init(&attr);
	if (ret)
		goto out_mutex;
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	ret = -pthread_cond_init(&cpu->wait_cond, &attr);
	pthread_condattr_destroy(&attr);
	if (ret)
		goto out_mutex;
	cpu->vm = vm;
	cpu->mhartid = id;
	cpu->code_epoch_seen = __atomic_load_n(&vm->code_epoch, __ATOMIC_ACQUIRE);
	ret = rv64_dcache_new(cpu);
	if (ret)
		goto out_cond;
	rv64_cpu_reset(cpu);
	vm->cpus[id] = cpu;
	*out = (struct accel_vcpu *)cpu;
	return 0;

out_cond:
	pthread_cond_destroy(&cpu->wait_cond);
out_mutex:
	pthread_mutex_destroy(&cpu->wait_lock);
out_cpu:
	free(cpu);
	return ret;
}

static void rv64_vcpu_free(struct accel_vcpu *v)
{
	struct rv64_cpu *cpu = to_cpu(v);

	if (!cpu)
		return;
	cpu->vm->cpus[cpu->mhartid] = NULL;
	cpu_destroy(cpu);
}

static struct accel_run *rv64_vcpu_run_state(struct accel_vcpu *v)
{
	return &to_cpu(v)->run;
}

static void wake(struct rv64_cpu *cpu)
{
	/* Taking the lock orders this wake-up after the waiter's check of the state we changed. */
	pthread_mutex_lock(&cpu->wait_lock);
	pthread_cond_broadcast(&cpu->wait_cond);
	pthread_mutex_unlock(&cpu->wait_lock);
}

/* Earliest guest time a timer whose interrupt is locally enabled fires (the WFI wake-up). */
static uint64_t wake_deadline(struct rv64_cpu *cpu)
{
	uint64_t d = UINT64_MAX;

	if (cpu->mie & IRQ_MTI)
		d = atomic_load_explicit(&cpu->mtimecmp, memory_order_relaxed);
	if ((cpu->mie & IRQ_STI) && (cpu->menvcfg & MENVCFG_STCE) && cpu->stimecmp < d)
		d = cpu->stimecmp;
	return d;
}

static int finish(struct rv64_cpu *cpu, uint32_t reason)
{
	cpu->run.exit_reason = reason;
	RV64_STAT_ADD(cpu, exits[reason], 1);
	return 0;
}

static int rv64_vcpu_run(struct accel_vcpu *v)
{
	struct rv64_cpu *cpu = to_cpu(v);
	uint64_t now = 0, clock_at = 0;
	bool have_clock = false;

	if (cpu->sbi_pending) {
		/* Complete the hypercall: a0/a1 from the VMM, then step over the ECALL. */
		cpu->sbi_pending = false;
		cpu->x[10] = (uint64_t)cpu->run.sbi.ret[0];
		cpu->x[11] = (uint64_t)cpu->run.sbi.ret[1];
		cpu->pc += 4;
		rv64_retire(cpu, 1);
	}
	for (;;) {
		uint64_t pending;
		int stop;

		if (unlikely(atomic_load_explicit(&cpu->exit_request, memory_order_acquire))) {
			atomic_store_explicit(&cpu->exit_request, 0, memory_order_relaxed);
			return finish(cpu, ACCEL_EXIT_INTR);
		}
		if (unlikely(atomic_load_explicit(&cpu->flush_request, memory_order_acquire))) {
			atomic_store_explicit(&cpu->flush_request, 0, memory_order_relaxed);
			rv64_tlb_flush(cpu);
			/*
			 * A remote FENCE.I (the VMM sends one request for every fence kind): like
			 * FENCE.I, decoded code survives unless a hart may have written code unnoticed.
			 */
			rv64_code_sync(cpu);
			if (!rv64_code_all_synced(cpu))
				rv64_dcache_flush(cpu);
		}
		if (unlikely(atomic_load_explicit(&cpu->dirty_request, memory_order_acquire))) {
			atomic_store_explicit(&cpu->dirty_request, 0, memory_order_relaxed);
			rv64_tlb_flush_writes(cpu);
		}
		if (!have_clock || cpu->stats.instret - clock_at >= CLOCK_EVERY) {
			now = clock_guest_ticks();
			clock_at = cpu->stats.instret;
			have_clock = true;
		}
		pending = rv64_irq_pending(cpu, now);
		if (pending & cpu->mie)
			rv64_irq_take(cpu, pending);

		stop = rv64_exec(cpu, RUN_BUDGET);
		if (stop == RV64_STOP_SBI)
			return finish(cpu, ACCEL_EXIT_SBI);
		if (stop == RV64_STOP_WFI) {
			now = clock_guest_ticks();
			clock_at = cpu->stats.instret;
			if (rv64_irq_pending(cpu, now) & cpu->mie)
				continue;
			cpu->run.halt.deadline_ticks = wake_deadline(cpu);
			return finish(cpu, ACCEL_EXIT_HALT);
		}
		if (stop == RV64_STOP_BUDGET)
			have_clock = false; /* a full slice went by, even if it only trapped */
	}
}

static void rv64_vcpu_kick(struct accel_vcpu *v)
{
	struct rv64_cpu *cpu = to_cpu(v);

	atomic_store_explicit(&cpu->exit_request, 1, memory_order_release);
	wake(cpu);
}

static void rv64_vcpu_wait(struct accel_vcpu *v, uint64_t deadline)
{
	struct rv64_cpu *cpu = to_cpu(v);

	pthread_mutex_lock(&cpu->wait_lock);
	for (;;) {
		uint64_t now = clock_guest_ticks(), until = deadline, ns;
		struct timespec ts;

		if (atomic_load_explicit(&cpu->exit_request, memory_order_acquire))
			break;
		/* The WFI wake-up condition ignores mstatus.MIE/SIE (priv 1.12 §3.3.3). */
		if (rv64_irq_pending(cpu, now) & cpu->mie)
			break;
		if (now >= deadline)
			break;
		if (wake_deadline(cpu) < until)
			until = wake_deadline(cpu);
		ns = clock_guest_ticks_to_ns(until);
		if (until == UINT64_MAX || ns == UINT64_MAX) {
			pthread_cond_wait(&cpu->wait_cond, &cpu->wait_lock);
			continue;
		}
		ts.tv_sec = (time_t)(ns / 1000000000ULL);
		ts.tv_nsec = (long)(ns % 1000000000ULL);
		pthread_cond_timedwait(&cpu->wait_cond, &cpu->wait_lock, &ts);
	}
	pthread_mutex_unlock(&cpu->wait_lock);
}

static int rv64_set_interrupt(struct accel_vcpu *v, unsigned irq, bool level)
{
	struct rv64_cpu *cpu = to_cpu(v);
	uint64_t bit;

	switch (irq) {
	case ACCEL_IRQ_SSI:
	case ACCEL_IRQ_MSI:
	case ACCEL_IRQ_STI:
	case ACCEL_IRQ_MTI:
	case ACCEL_IRQ_SEI:
	case ACCEL_IRQ_MEI:
		break;
	default:
		return -EINVAL;
	}
	bit = 1ULL << irq;
	/* Release pairs with the acquire load in rv64_irq_pending(). */
	if (level)
		atomic_fetch_or_explicit(&cpu->mip_ext, bit, memory_order_release);
	else
		atomic_fetch_and_explicit(&cpu->mip_ext, ~bit, memory_order_release);
	if (level)
		wake(cpu);
	return 0;
}

static int rv64_set_timer(struct accel_vcpu *v, uint64_t mtimecmp)
{
	struct rv64_cpu *cpu = to_cpu(v);

	atomic_store_explicit(&cpu->mtimecmp, mtimecmp, memory_order_relaxed);
	wake(cpu); /* a sleeping vCPU recomputes its deadline */
	return 0;
}

static int rv64_flush_tlb(struct accel_vcpu *v)
{
	struct rv64_cpu *cpu = to_cpu(v);

	/* The target flushes at its next slice boundary, before it runs more guest code. */
	atomic_store_explicit(&cpu->flush_request, 1, memory_order_release);
	wake(cpu);
	return 0;
}

static int rv64_get_reg(struct accel_vcpu *v, uint32_t id, uint64_t *val)
{
	struct rv64_cpu *cpu = to_cpu(v);

	if (id == ACCEL_REG_PC) {
		*val = cpu->pc;
	} else if (id == ACCEL_REG_PRIV) {
		*val = cpu->priv;
	} else if (id == ACCEL_REG_MIP_SOFT) {
		*val = rv64_mip_soft_get(cpu);
	} else if (id >= ACCEL_REG_X(0) && id <= ACCEL_REG_X(31)) {
		*val = cpu->x[id - ACCEL_REG_X(0)];
	} else if (id >= ACCEL_REG_F(0) && id <= ACCEL_REG_F(31)) {
		*val = cpu->f[id - ACCEL_REG_F(0)];
	} else if (id >= ACCEL_REG_CSR(0) && id <= ACCEL_REG_CSR(0xfff)) {
		return rv64_csr_get(cpu, id - ACCEL_REG_CSR(0), val);
	} else {
		return -ENOENT;
	}
	return 0;
}

static int rv64_set_reg(struct accel_vcpu *v, uint32_t id, uint64_t val)
{
	struct rv64_cpu *cpu = to_cpu(v);

	if (id == ACCEL_REG_PC) {
		/* Redirecting the hart drops a pending SBI completion (it would step pc by 4). */
		cpu->pc = val & ~1ULL;
		cpu->sbi_pending = false;
		/* The VMM may have written guest code (loader, tests) without telling anyone. */
		rv64_dcache_flush(cpu);
	} else if (id == ACCEL_REG_PRIV) {
		if (val != RV64_PRIV_U && val != RV64_PRIV_S && val != RV64_PRIV_M)
			return -EINVAL;
		cpu->priv = (uint32_t)val;
		rv64_mmu_state_changed(cpu);
	} else if (id == ACCEL_REG_MIP_SOFT) {
		rv64_mip_soft_set(cpu, val);
	} else if (id >= ACCEL_REG_X(0) && id <= ACCEL_REG_X(31)) {
		if (id != ACCEL_REG_X(0))
			cpu->x[id - ACCEL_REG_X(0)] = val;
	} else if (id >= ACCEL_REG_F(0) && id <= ACCEL_REG_F(31)) {
		cpu->f[id - ACCEL_REG_F(0)] = val;
	} else if (id >= ACCEL_REG_CSR(0) && id <= ACCEL_REG_CSR(0xfff)) {
		return rv64_csr_set(cpu, id - ACCEL_REG_CSR(0), val);
	} else {
		return -ENOENT;
	}
	return 0;
}

static int rv64_get_stats(struct accel_vcpu *v, struct accel_stats *out)
{
	const struct rv64_cpu *cpu = to_cpu(v);
	const uint64_t *from = (const uint64_t *)&cpu->stats;
	uint64_t *to = (uint64_t *)out;

	/* Counter by counter: the hart adds to them meanwhile (RV64_STAT_ADD). */
	_Static_assert(sizeof(*out) % sizeof(uint64_t) == 0, "accel_stats holds only counters");
	for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
		to[i] = __atomic_load_n(&from[i], __ATOMIC_RELAXED);
	out->dcache_bytes = rv64_dcache_bytes(cpu);
#ifdef RV64_JIT
	if (cpu->jit) /* the code buffer's bytes in use */
		out->code_bytes = __atomic_load_n(&cpu->jit->used, __ATOMIC_RELAXED);
#endif
	return 0;
}

static void rv64_ram_written(struct accel_vm *v, uint64_t gpa, uint64_t len)
{
	rv64_code_ram_written(to_vm(v), gpa, len);
}

static int rv64_dirty_log_sync(struct accel_vcpu *v)
{
	/*
	 * The hart drops its write entries at its next slice boundary, before it runs guest code
	 * again; the acquire load in rv64_vcpu_run() pairs with this release. The caller makes
	 * sure no hart runs guest code meanwhile (accel.h), so none stores unlogged.
	 */
	atomic_store_explicit(&to_cpu(v)->dirty_request, 1, memory_order_release);
	return 0;
}

const struct accel_ops accel_rv64_ops = {
	.name = "rv64",
	.isa = "rv64imafdc_zicsr_zifencei_zicntr_zba_zbb_zbs_sstc",
	.vm_new = rv64_vm_new,
	.vm_free = rv64_vm_free,
	.vcpu_new = rv64_vcpu_new,
	.vcpu_free = rv64_vcpu_free,
	.vcpu_run_state = rv64_vcpu_run_state,
	.vcpu_run = rv64_vcpu_run,
	.vcpu_kick = rv64_vcpu_kick,
	.vcpu_wait = rv64_vcpu_wait,
	.set_interrupt = rv64_set_interrupt,
	.set_timer = rv64_set_timer,
	.flush_tlb = rv64_flush_tlb,
	.ram_written = rv64_ram_written,
	.get_reg = rv64_get_reg,
	.set_reg = rv64_set_reg,
	.get_stats = rv64_get_stats,
	.dirty_log_sync = rv64_dirty_log_sync,
};
