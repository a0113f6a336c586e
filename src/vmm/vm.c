/*
 * vm.c - VM set-up, the vCPU threads and their exit loop, SBI hooks, and the console loop.
 *
 * Threads: vm_run()'s caller serves the console (host input, stop requests); each vCPU
 * has its own thread running vcpu_loop(); virtio devices do their work on the I/O thread
 * (vm->io, an epoll loop over their notify eventfds, see kumo/iothread.h). Cross-thread state is the atomic stop reason, the
 * per-vCPU HSM state under vcpu->lock, and the console input queue under vm->in_lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <termios.h>
#include <unistd.h>

#include "kumo/accel.h"
#include "kumo/agent.h"
#include "kumo/base.h"
#include "kumo/block.h"
#include "kumo/board.h"
#include "kumo/iothread.h"
#include "kumo/loader.h"
#include "kumo/memmap.h"
#include "kumo/sbi.h"
#include "kumo/virtio.h"
#include "kumo/vm.h"
#include "devices/backend/net.h"
#include "vmm/console.h"

/* CSR numbers used to prepare harts (priv 1.12 tables 2.2-2.5). */
#define CSR_SSTATUS 0x100
#define CSR_SIE 0x104
#define CSR_SCOUNTEREN 0x106
#define CSR_STIMECMP 0x14d
#define CSR_SATP 0x180
#define CSR_MSTATUS 0x300
#define CSR_MEDELEG 0x302
#define CSR_MIDELEG 0x303
#define CSR_MCOUNTEREN 0x306
#define CSR_MENVCFG 0x30a
#define CSR_PMPCFG0 0x3a0
#define CSR_PMPADDR0 0x3b0
#define CSR_MVENDORID 0xf11
#define CSR_MARCHID 0xf12
#define CSR_MIMPID 0xf13

#define SSTATUS_SIE (1ULL << 1)
#define MENVCFG_STCE (1ULL << 63)

#define KERNEL_OFFSET 0x200000ULL /* where firmware expects the next stage (fw_jump default) */
#define DTB_REGION (2ULL << 20)   /* the device tree lives in the top 2 MiB of RAM */
#define DTB_MAX (1ULL << 20)

/* OpenSBI's fw_dynamic hand-over structure (fw_dynamic.h: magic "OSBI", version 2). */
struct fw_dynamic_info {
	uint64_t magic, version, next_addr, next_mode, options, boot_hart;
};
#define FW_DYNAMIC_MAGIC 0x4942534fULL
#define FW_DYNAMIC_NEXT_MODE_S 1

struct vcpu {
	struct vm *vm;
	unsigned id;
	struct accel_vcpu *av;
	struct accel_run *run;
	pthread_t thread;
	_Atomic bool thread_started; /* read by the API thread (vm_vcpu_info) */

	pthread_mutex_t lock; /* protects the HSM fields below */
	pthread_cond_t cond;
	int hsm_state;        /* enum sbi_hart_state */
	uint64_t start_addr, start_arg;
	bool resume_pending;  /* START_PENDING/RESUME_PENDING: set registers before running */

	_Atomic bool in_run;        /* inside vcpu_run(): may be executing guest code */
	_Atomic uint64_t run_seq;   /* incremented each time vcpu_run() returns */
	struct sbi_stats sbi_stats; /* touched only by this vCPU's thread */
	uint64_t cpu_ns;            /* host CPU time of the thread when it stopped */
	bool parked;                /* parked by vm_pause(), under vm->pause_lock */
	_Atomic bool exited;        /* the thread left vcpu_loop (cpu_ns is final) */
};

struct vm {
	struct vm_config cfg;
	const struct accel_ops *ops;
	struct accel_vm *avm;
	struct board *board;
	struct memmap *mm;
	void *ram;
	struct sbi_host sbi;
	bool sbi_in_vmm;

	_Atomic int stop_reason; /* -1 while running, else enum vm_exit */
	int wake_fd;             /* eventfd: wakes the I/O thread */

	struct console con;
	pthread_mutex_t out_lock;
	/* The last VM_CONSOLE_RING bytes of console output, for the control API (out_lock). */
	uint8_t con_ring[VM_CONSOLE_RING];
	uint64_t con_total;   /* bytes of output since the VM was created */

	struct iothread *io;             /* virtio queue processing */
	struct virtio_dev *virtio[VIRT_VIRTIO_COUNT]; /* owned by the board */
	struct io_slot {
		struct vm *vm;
		struct virtio_dev *dev;
	} io_slots[VIRT_VIRTIO_COUNT];                /* the I/O thread's callback arguments */
	unsigned nvirtio;
	struct virtio_dev *vcon;         /* virtio-console, when it is the console */
	struct agent *agent;             /* guest agent channel, NULL: none */
	struct virtio_dev *agent_dev;    /* its virtio-console (owned by the board) */

	_Atomic uint64_t start_ns, stop_ns; /* read by the API thread (vm_uptime_ns) */

	/* Pause (vm_pause/vm_resume): vCPU threads park in park_vcpu() while pause_req is set. */
	pthread_mutex_t pause_lock;
	pthread_cond_t pause_cond; /* parked count changed, or pause_req cleared, or stopping */
	_Atomic bool pause_req;
	unsigned parked;           /* vCPU threads parked, under pause_lock */
	bool io_paused;            /* the I/O thread must not process virtio queues */
	bool io_busy;              /* the I/O thread is processing a device, under pause_lock */
	bool paused;               /* every thread parked and the guest clock frozen */
	uint64_t pause_ticks;      /* guest time when the pause completed */

	unsigned ncpus;
	struct vcpu vcpus[];
};

static bool stopping(struct vm *vm)
{
	return atomic_load(&vm->stop_reason) >= 0;
}

/* ---- board hooks ---- */

static void hook_cpu_irq(void *opaque, unsigned hart, unsigned irq, bool level)
{
	struct vm *vm = opaque;

	if (hart < vm->ncpus)
		vm->ops->set_interrupt(vm->vcpus[hart].av, irq, level);
}

static void hook_cpu_timer(void *opaque, unsigned hart, uint64_t mtimecmp)
{
	struct vm *vm = opaque;

	if (hart < vm->ncpus)
		vm->ops->set_timer(vm->vcpus[hart].av, mtimecmp);
}

static void hook_system_event(void *opaque, enum board_event ev, uint64_t data)
{
	struct vm *vm = opaque;

	switch (ev) {
	case BOARD_EVENT_POWEROFF:
		vm_request_stop(vm, VM_EXIT_POWEROFF);
		break;
	case BOARD_EVENT_REBOOT:
		vm_request_stop(vm, VM_EXIT_REBOOT);
		break;
	default:
		log_warn("guest reported failure (code %" PRIu64 ")", data);
		vm_request_stop(vm, VM_EXIT_FAIL);
	}
}

static long console_out(struct vm *vm, const uint8_t *buf, size_t len)
{
	size_t done = 0;

	pthread_mutex_lock(&vm->out_lock);
	for (size_t i = 0; i < len; i++)
		vm->con_ring[(vm->con_total + i) % VM_CONSOLE_RING] = buf[i];
	vm->con_total += len;
	while (done < len) {
		ssize_t n = write(vm->cfg.console_out, buf + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* the host side went away: drop output, keep the guest running */
		done += n;
	}
	pthread_mutex_unlock(&vm->out_lock);
	return (long)len;
}

static void hook_console_write(void *opaque, const uint8_t *buf, size_t len)
{
	console_out(opaque, buf, len);
}

static void hook_console_rx_ready(void *opaque)
{
	struct vm *vm = opaque;
	uint64_t one = 1;

	/* Wake the I/O thread to offer the queued input again. */
	if (write(vm->wake_fd, &one, sizeof(one)) < 0) {
		/* a full eventfd counter already means "wake up" */
	}
}

/* Device DMA into guest RAM: the accelerator forgets decoded code there. Any thread. */
static void hook_ram_written(void *opaque, uint64_t gpa, uint64_t len)
{
	struct vm *vm = opaque;

	vm->ops->ram_written(vm->avm, gpa, len);
}

/* ---- SBI host callbacks (VMM firmware mode) ---- */

static void *sbi_ram_ptr(void *opaque, uint64_t gpa, uint64_t len)
{
	struct vm *vm = opaque;

	return memmap_ram_ptr(vm->mm, gpa, len);
}

static void sbi_set_timer(void *opaque, unsigned hart, uint64_t when)
{
	struct vm *vm = opaque;

	/* With menvcfg.STCE set, STIP follows time >= stimecmp (Sstc), which also clears it. */
	vm->ops->set_reg(vm->vcpus[hart].av, ACCEL_REG_CSR(CSR_STIMECMP), when);
}

static void sbi_send_ipi(void *opaque, unsigned hart)
{
	struct vm *vm = opaque;

	vm->ops->set_interrupt(vm->vcpus[hart].av, ACCEL_IRQ_SSI, true);
}

static void sbi_remote_fence(void *opaque, unsigned hart, enum sbi_fence kind, uint64_t start,
			     uint64_t size, uint64_t asid)
{
	struct vm *vm = opaque;

	struct vcpu *v = &vm->vcpus[hart];
	uint64_t seq = atomic_load(&v->run_seq);

	/* A full flush of translations and decoded code covers every fence kind. */
	vm->ops->flush_tlb(v->av);
	/*
	 * SBI v2.0 §8: the fence is done when the call returns (Linux frees page tables right
	 * after). The target flushes before it next runs guest code, so wait until it has left
	 * vcpu_run() once; a hart outside vcpu_run() is not executing guest code. The caller
	 * itself is outside vcpu_run(), so two harts fencing each other cannot deadlock.
	 */
	if (!atomic_load(&v->in_run))
		return;
	vm->ops->vcpu_kick(v->av);
	while (atomic_load(&v->in_run) && atomic_load(&v->run_seq) == seq && !stopping(vm))
		sched_yield();
}

static int sbi_hart_start(void *opaque, unsigned hart, uint64_t addr, uint64_t arg)
{
	struct vm *vm = opaque;
	struct vcpu *v = &vm->vcpus[hart];
	int ret = SBI_SUCCESS;

	if (!memmap_ram_ptr(vm->mm, addr, 4))
		return SBI_ERR_INVALID_ADDRESS;
	pthread_mutex_lock(&v->lock);
	if (v->hsm_state != SBI_HSM_STOPPED) {
		ret = SBI_ERR_ALREADY_AVAILABLE;
	} else {
		v->start_addr = addr;
		v->start_arg = arg;
		v->hsm_state = SBI_HSM_START_PENDING;
		v->resume_pending = true;
		pthread_cond_signal(&v->cond);
	}
	pthread_mutex_unlock(&v->lock);
	return ret;
}

static int sbi_hart_stop(void *opaque, unsigned hart)
{
	struct vm *vm = opaque;
	struct vcpu *v = &vm->vcpus[hart];

	pthread_mutex_lock(&v->lock);
	v->hsm_state = SBI_HSM_STOPPED; /* vcpu_loop parks the thread before running again */
	pthread_mutex_unlock(&v->lock);
	return SBI_SUCCESS;
}

static int sbi_hart_status(void *opaque, unsigned hart)
{
	struct vm *vm = opaque;
	struct vcpu *v = &vm->vcpus[hart];
	int st;

	pthread_mutex_lock(&v->lock);
	st = v->hsm_state;
	pthread_mutex_unlock(&v->lock);
	return st;
}

static int sbi_hart_suspend(void *opaque, unsigned hart, uint32_t type, uint64_t resume_addr,
			    uint64_t arg)
{
	struct vm *vm = opaque;
	struct vcpu *v = &vm->vcpus[hart];

	/* §9.4: 0 retentive, 0x80000000 non-retentive default suspend; others unsupported. */
	if (type != 0 && type != 0x80000000u)
		return (type < 0x10000000u || (type >= 0x80000001u && type < 0x90000000u))
			       ? SBI_ERR_INVALID_PARAM
			       : SBI_ERR_NOT_SUPPORTED;
	if (type && !memmap_ram_ptr(vm->mm, resume_addr, 4))
		return SBI_ERR_INVALID_ADDRESS;
	pthread_mutex_lock(&v->lock);
	v->hsm_state = SBI_HSM_SUSPENDED;
	pthread_mutex_unlock(&v->lock);
	/* Sleep like WFI until an enabled interrupt is pending (or the VM stops). */
	vm->ops->vcpu_wait(v->av, UINT64_MAX);
	pthread_mutex_lock(&v->lock);
	v->hsm_state = SBI_HSM_STARTED;
	if (type) {
		v->start_addr = resume_addr;
		v->start_arg = arg;
		v->resume_pending = true;
	}
	pthread_mutex_unlock(&v->lock);
	return SBI_SUCCESS;
}

static void sbi_system_reset(void *opaque, uint32_t type, uint32_t reason)
{
	struct vm *vm = opaque;

	if (reason == 1)
		vm_request_stop(vm, VM_EXIT_FAIL);
	else
		vm_request_stop(vm, type == 0 ? VM_EXIT_POWEROFF : VM_EXIT_REBOOT);
}

static long sbi_console_write(void *opaque, const uint8_t *buf, size_t len)
{
	return console_out(opaque, buf, len);
}

static long sbi_console_read(void *opaque, uint8_t *buf, size_t len)
{
	struct vm *vm = opaque;
	size_t n = console_take_input(&vm->con, buf, len);

	/* buf is guest RAM written behind the vCPUs' backs (decode cache, dirty log). */
	memmap_ram_written(vm->mm, buf, n);
	return (long)n;
}

/* ---- vCPU threads ---- */

/* Puts a hart into S-mode at `addr` with a0 = hartid, a1 = arg (SBI §9.1 start state). */
static void enter_supervisor(struct vcpu *v, uint64_t addr, uint64_t arg)
{
	const struct accel_ops *ops = v->vm->ops;
	uint64_t sstatus = 0;

	ops->set_reg(v->av, ACCEL_REG_PRIV, 1);
	ops->set_reg(v->av, ACCEL_REG_CSR(CSR_SATP), 0);
	ops->get_reg(v->av, ACCEL_REG_CSR(CSR_SSTATUS), &sstatus);
	ops->set_reg(v->av, ACCEL_REG_CSR(CSR_SSTATUS), sstatus & ~SSTATUS_SIE);
	ops->set_reg(v->av, ACCEL_REG_X(10), v->id);
	ops->set_reg(v->av, ACCEL_REG_X(11), arg);
	ops->set_reg(v->av, ACCEL_REG_PC, addr); /* also discards a pending SBI completion */
}

/*
 * Parks a stopped hart until HSM starts it, the VM stops, or a pause is requested. Returns false
 * when stopping; the caller re-checks hsm_state after a pause.
 */
static bool wait_until_started(struct vcpu *v)
{
	bool run;

	pthread_mutex_lock(&v->lock);
	while (v->hsm_state == SBI_HSM_STOPPED && !stopping(v->vm) &&
	       !atomic_load(&v->vm->pause_req))
		pthread_cond_wait(&v->cond, &v->lock);
	run = !stopping(v->vm);
	if (run && v->hsm_state == SBI_HSM_START_PENDING)
		v->hsm_state = SBI_HSM_STARTED;
	pthread_mutex_unlock(&v->lock);
	return run;
}

/* Parks the calling vCPU thread outside vcpu_run() while a pause is requested. */
static void park_vcpu(struct vcpu *v)
{
	struct vm *vm = v->vm;

	pthread_mutex_lock(&vm->pause_lock);
	v->parked = true;
	vm->parked++;
	pthread_cond_broadcast(&vm->pause_cond);
	while (atomic_load(&vm->pause_req) && !stopping(vm))
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	vm->parked--;
	v->parked = false;
	pthread_mutex_unlock(&vm->pause_lock);
}

static void *vcpu_loop(void *arg)
{
	struct vcpu *v = arg;
	struct vm *vm = v->vm;
	const struct accel_ops *ops = vm->ops;
	struct timespec ts;

	while (!stopping(vm)) {
		if (atomic_load(&vm->pause_req)) {
			park_vcpu(v);
			continue;
		}
		if (vm->sbi_in_vmm) {
			bool still_stopped;

			if (!wait_until_started(v))
				break;
			pthread_mutex_lock(&v->lock);
			still_stopped = v->hsm_state == SBI_HSM_STOPPED;
			pthread_mutex_unlock(&v->lock);
			if (still_stopped)
				continue; /* woken by a pause request */
			pthread_mutex_lock(&v->lock);
			if (v->resume_pending) {
				v->resume_pending = false;
				enter_supervisor(v, v->start_addr, v->start_arg);
			}
			pthread_mutex_unlock(&v->lock);
		}
		atomic_store(&v->in_run, true);
		int rc = ops->vcpu_run(v->av);
		atomic_store(&v->in_run, false);
		atomic_fetch_add(&v->run_seq, 1);
		if (rc < 0) {
			log_err("vcpu %u: run failed", v->id);
			vm_request_stop(vm, VM_EXIT_ERROR);
			break;
		}
		switch (v->run->exit_reason) {
		case ACCEL_EXIT_SBI:
			if (v->run->sbi.priv == 1 && vm->sbi_in_vmm) {
				sbi_call(&vm->sbi, v->id, v->run->sbi.ext, v->run->sbi.fid,
					 v->run->sbi.args, v->run->sbi.ret, &v->sbi_stats);
			} else {
				v->run->sbi.ret[0] = SBI_ERR_NOT_SUPPORTED;
				v->run->sbi.ret[1] = 0;
			}
			break;
		case ACCEL_EXIT_HALT:
			ops->vcpu_wait(v->av, v->run->halt.deadline_ticks);
			break;
		case ACCEL_EXIT_INTR:
			break;
		case ACCEL_EXIT_INTERNAL_ERROR:
			log_err("vcpu %u: %s", v->id, v->run->internal.msg);
			vm_request_stop(vm, VM_EXIT_FAIL);
			break;
		default:
			log_err("vcpu %u: unexpected exit %s", v->id,
				accel_exit_name(v->run->exit_reason));
			vm_request_stop(vm, VM_EXIT_FAIL);
		}
	}
	if (!clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts))
		v->cpu_ns = (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
	atomic_store(&v->exited, true);
	return NULL;
}

void vm_request_stop(struct vm *vm, enum vm_exit why)
{
	int none = -1;
	uint64_t one = 1;

	if (!atomic_compare_exchange_strong(&vm->stop_reason, &none, (int)why))
		return;
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		if (!v->av)
			continue;
		vm->ops->vcpu_kick(v->av);
		pthread_mutex_lock(&v->lock);
		pthread_cond_broadcast(&v->cond);
		pthread_mutex_unlock(&v->lock);
	}
	pthread_mutex_lock(&vm->pause_lock);
	pthread_cond_broadcast(&vm->pause_cond); /* parked threads and vm_pause() waiters */
	pthread_mutex_unlock(&vm->pause_lock);
	if (write(vm->wake_fd, &one, sizeof(one)) < 0) {
		/* the eventfd counter cannot overflow here; nothing to do */
	}
}

/* ---- set-up ---- */

static int validate(const struct vm_config *cfg)
{
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
	uint64_t host = pages > 0 && psz > 0 ? (uint64_t)pages * psz : 0;

	if (cfg->ncpus < 1 || cfg->ncpus > VM_MAX_CPUS) {
		err_set("--cpus %u is out of range: kumo runs 1 to %d vCPUs", cfg->ncpus,
			VM_MAX_CPUS);
		return -EINVAL;
	}
	if (cfg->mem < VM_MIN_MEM || cfg->mem > VM_MAX_MEM || cfg->mem % 4096) {
		if (cfg->mem % (1 << 20) == 0)
			err_set("--mem %" PRIu64 " MiB is impossible: use between 16 MiB and 1 TiB",
				cfg->mem >> 20);
		else
			err_set("--mem %" PRIu64 " bytes is impossible: use a multiple of 4 KiB "
				"between 16 MiB and 1 TiB",
				cfg->mem);
		return -EINVAL;
	}
	if (host && cfg->mem > host) {
		err_set("--mem %" PRIu64 " MiB is more than this host's %" PRIu64 " MiB of memory",
			cfg->mem >> 20, host >> 20);
		return -EINVAL;
	}
	if (cfg->huge_pages != VM_HUGE_PAGES_NONE && cfg->huge_pages != VM_HUGE_PAGES_THP) {
		err_set("huge pages mode %d is not none or thp", (int)cfg->huge_pages);
		return -EINVAL;
	}
	if (!cfg->kernel && !cfg->bios && !cfg->restoring) {
		err_set("nothing to boot: give --kernel FILE (or --bios FILE)");
		return -EINVAL;
	}
	return 0;
}

static void setup_sbi_host(struct vm *vm)
{
	vm->sbi = (struct sbi_host){
		.opaque = vm,
		.nharts = vm->ncpus,
		.ram_ptr = sbi_ram_ptr,
		.set_timer = sbi_set_timer,
		.send_ipi = sbi_send_ipi,
		.remote_fence = sbi_remote_fence,
		.hart_start = sbi_hart_start,
		.hart_stop = sbi_hart_stop,
		.hart_status = sbi_hart_status,
		.hart_suspend = sbi_hart_suspend,
		.system_reset = sbi_system_reset,
		.console_write = sbi_console_write,
		.console_read = sbi_console_read,
	};
	vm->ops->get_reg(vm->vcpus[0].av, ACCEL_REG_CSR(CSR_MVENDORID), &vm->sbi.mvendorid);
	vm->ops->get_reg(vm->vcpus[0].av, ACCEL_REG_CSR(CSR_MARCHID), &vm->sbi.marchid);
	vm->ops->get_reg(vm->vcpus[0].av, ACCEL_REG_CSR(CSR_MIMPID), &vm->sbi.mimpid);
}

/*
 * VMM firmware mode: what OpenSBI would leave behind before entering the kernel. Exceptions the
 * supervisor can handle and all S-level interrupts are delegated (priv 1.12 §3.1.8), counters
 * are readable from S/U, Sstc is enabled, and PMP entry 0 opens all memory to S/U.
 */
static void prepare_sbi_hart(struct vm *vm, struct vcpu *v)
{
	const struct accel_ops *ops = vm->ops;
	uint64_t medeleg = 0xb1ffULL; /* causes 0-8, 12, 13, 15: all but ECALL from S/M */

	ops->set_reg(v->av, ACCEL_REG_CSR(CSR_MEDELEG), medeleg);
	ops->set_reg(v->av, ACCEL_REG_CSR(CSR_MIDELEG), (1 << 1) | (1 << 5) | (1 << 9));
	ops->set_reg(v->av, ACCEL_REG_CSR(CSR_MCOUNTEREN), 7);
	/*
	 * OpenSBI also opens cycle/time/instret to U-mode at hart init; Linux's vDSO reads `time`
	 * from user space and only its SBI PMU driver would set scounteren otherwise.
	 */
	ops->set_reg(v->av, ACCEL_REG_CSR(CSR_SCOUNTEREN), 7);
	ops->set_reg(v->av, ACCEL_REG_CSR(CSR_MENVCFG), MENVCFG_STCE);
	ops->set_reg(v->av, ACCEL_REG_CSR(CSR_PMPADDR0), ~0ULL >> 10);
	ops->set_reg(v->av, ACCEL_REG_CSR(CSR_PMPCFG0), 0x1f); /* NAPOT, R W X */
	ops->set_reg(v->av, ACCEL_REG_CSR(CSR_STIMECMP), UINT64_MAX);
	v->hsm_state = v->id == 0 ? SBI_HSM_STARTED : SBI_HSM_STOPPED;
}

static int load_guest(struct vm *vm, const struct vm_config *cfg)
{
	uint64_t base = VIRT_DRAM_BASE, end = base + cfg->mem;
	uint64_t dtb_addr = ALIGN_DOWN(end - DTB_REGION, DTB_REGION) < base
				    ? base
				    : ALIGN_DOWN(end - DTB_REGION, DTB_REGION);
	uint64_t info_addr = dtb_addr + DTB_MAX; /* fw_dynamic info after the DTB's room */
	struct loaded_image kernel = {0}, fw = {0};
	uint64_t kernel_entry = base + KERNEL_OFFSET;
	void *dtb;
	int ret, size;

	if (cfg->bios) {
		ret = loader_load_firmware(vm->mm, cfg->bios, base, &fw);
		if (ret)
			return ret;
		if (fw.end > base + KERNEL_OFFSET && cfg->kernel) {
			err_set("%s: firmware is too large (%" PRIu64 " bytes): it overlaps the kernel at 0x%llx",
				cfg->bios, fw.end - fw.start, (unsigned long long)(base + KERNEL_OFFSET));
			return -EINVAL;
		}
	}
	if (cfg->kernel) {
		ret = loader_load_kernel(vm->mm, cfg->kernel, cfg->bios != NULL,
					 base + KERNEL_OFFSET, &kernel);
		if (ret)
			return ret;
		kernel_entry = kernel.entry;
		if (kernel.end > dtb_addr) {
			err_set("%s: kernel (%" PRIu64 " MiB with bss) does not fit in %" PRIu64
				" MiB of RAM: raise --mem",
				cfg->kernel, (kernel.end - kernel.start) >> 20, cfg->mem >> 20);
			return -ENOSPC;
		}
	}
	if (cfg->initrd) {
		/* As QEMU does: far enough above the kernel that it is not clobbered early. */
		uint64_t half = cfg->mem / 2 < (128ULL << 20) ? cfg->mem / 2 : 128ULL << 20;
		uint64_t start = ALIGN_UP(kernel_entry + half, 4096), size64 = 0;

		if (kernel.end && start < ALIGN_UP(kernel.end, 4096))
			start = ALIGN_UP(kernel.end, 4096);
		ret = loader_load_blob(vm->mm, cfg->initrd, start, dtb_addr, &size64);
		if (ret)
			return ret;
		board_set_initrd(vm->board, start, start + size64);
	}
	dtb = memmap_ram_ptr(vm->mm, dtb_addr, DTB_MAX);
	size = dtb ? board_dt_build(vm->board, dtb, DTB_MAX) : -ENOSPC;
	if (size < 0) {
		if (!*err_get())
			err_set("cannot build the device tree (%s)", strerror(-size));
		return size;
	}

	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		if (cfg->bios) {
			/* Every hart enters the firmware in M-mode (OpenSBI picks a boot hart). */
			struct fw_dynamic_info *info = memmap_ram_ptr(vm->mm, info_addr, sizeof(*info));

			if (info && i == 0)
				*info = (struct fw_dynamic_info){
					.magic = FW_DYNAMIC_MAGIC, .version = 2,
					.next_addr = kernel_entry, .next_mode = FW_DYNAMIC_NEXT_MODE_S,
					.options = 0, .boot_hart = 0};
			vm->ops->set_reg(v->av, ACCEL_REG_X(10), i);
			vm->ops->set_reg(v->av, ACCEL_REG_X(11), dtb_addr);
			vm->ops->set_reg(v->av, ACCEL_REG_X(12), info_addr);
			vm->ops->set_reg(v->av, ACCEL_REG_PC, fw.entry);
			v->hsm_state = SBI_HSM_STARTED;
		} else {
			prepare_sbi_hart(vm, v);
			if (i == 0) {
				v->start_addr = kernel_entry;
				v->start_arg = dtb_addr;
				v->resume_pending = true;
			}
		}
	}
	log_info("RAM 0x%llx..0x%llx, kernel %s at 0x%llx, dtb at 0x%llx (%d bytes)",
		 (unsigned long long)base, (unsigned long long)end, kernel.kind ? kernel.kind : "none",
		 (unsigned long long)kernel_entry, (unsigned long long)dtb_addr, size);
	return 0;
}

/* ---- virtio devices ---- */

static void io_virtio(void *opaque, int fd, uint32_t events)
{
	struct io_slot *slot = opaque;
	struct vm *vm = slot->vm;

	/* A paused VM's devices touch neither guest RAM nor their rings (snapshots). */
	pthread_mutex_lock(&vm->pause_lock);
	while (vm->io_paused && !stopping(vm))
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	vm->io_busy = true;
	pthread_mutex_unlock(&vm->pause_lock);
	virtio_dev_process(slot->dev);
	pthread_mutex_lock(&vm->pause_lock);
	vm->io_busy = false;
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
}

static size_t vcon_pending(void *opaque)
{
	struct vm *vm = opaque;

	return console_pending_input(&vm->con);
}

static size_t vcon_read(void *opaque, uint8_t *buf, size_t n)
{
	struct vm *vm = opaque;
	size_t got = console_take_input(&vm->con, buf, n);
	uint64_t one = 1;

	/* Room in the queue again: the console thread may read the host once more. */
	if (got && write(vm->wake_fd, &one, sizeof(one)) < 0) {
		/* a full counter already means "wake up" */
	}
	return got;
}

static void vcon_write(void *opaque, const uint8_t *buf, size_t n)
{
	console_out(opaque, buf, n);
}

static void agent_kick(void *opaque)
{
	struct vm *vm = opaque;

	virtio_dev_kick(vm->agent_dev, VIRTIO_CONSOLE_RXQ);
}

static bool agent_running(void *opaque)
{
	struct vm *vm = opaque;

	return !atomic_load(&vm->pause_req) && !stopping(vm);
}

/* Puts dev on the board and on the I/O thread; frees it on failure. */
static int attach_virtio(struct vm *vm, struct virtio_dev *dev)
{
	int ret = board_add_virtio(vm->board, dev);

	if (ret) {
		virtio_dev_free(dev);
		return ret;
	}
	vm->virtio[vm->nvirtio++] = dev;
	vm->io_slots[vm->nvirtio - 1] = (struct io_slot){.vm = vm, .dev = dev};
	ret = iothread_add_fd(vm->io, dev->notify_fd, EPOLLIN, io_virtio,
			      &vm->io_slots[vm->nvirtio - 1]);
	if (ret)
		err_set("cannot watch a virtio device: %s", strerror(-ret));
	return ret;
}

static int create_virtio(struct vm *vm, const struct vm_config *cfg)
{
	unsigned used = cfg->ndisks + cfg->nnets + cfg->rng + cfg->virtio_console;
	struct virtio_dev *dev;
	int ret;

	if (used + (cfg->agent == VM_AGENT_ON) > VIRT_VIRTIO_COUNT) {
		err_set("too many virtio devices: the virt board has %d slots", VIRT_VIRTIO_COUNT);
		return -ENOSPC;
	}
	if (cfg->agent == VM_AGENT_AUTO)
		vm->cfg.agent = cfg->nnets && used < VIRT_VIRTIO_COUNT ? VM_AGENT_ON : VM_AGENT_OFF;
	ret = iothread_new(&vm->io);
	if (ret)
		return ret;
	for (unsigned i = 0; i < cfg->ndisks; i++) {
		const struct vm_disk *dk = &cfg->disks[i];
		struct block_file_config bc = {.path = dk->path, .readonly = dk->readonly,
					       .direct = dk->direct, .discard = dk->discard};
		struct block_backend *be;

		ret = block_file_open(&bc, &be);
		if (ret)
			return ret;
		ret = virtio_blk_new(vm->mm, be, dk->serial, &dev);
		if (ret) {
			block_backend_close(be);
			return ret;
		}
		ret = attach_virtio(vm, dev);
		if (ret)
			return ret;
	}
	for (unsigned i = 0; i < cfg->nnets; i++) {
		struct net_spec spec;
		struct net_backend *nb;

		ret = net_spec_parse(cfg->nets[i], &spec);
		if (ret)
			return ret;
		ret = vm_net_mac(cfg, i, spec.mac);
		if (ret)
			return ret;
		ret = net_backend_new(&spec, &nb);
		if (ret)
			return ret;
		ret = virtio_net_new(vm->mm, nb, spec.mac, &dev); /* owns nb, also on failure */
		if (!ret)
			ret = attach_virtio(vm, dev);
		if (ret)
			return ret;
	}
	if (cfg->rng) {
		ret = virtio_rng_new(vm->mm, NULL, &dev);
		if (!ret)
			ret = attach_virtio(vm, dev);
		if (ret)
			return ret;
	}
	if (cfg->virtio_console) {
		struct virtio_console_backend be = {.opaque = vm, .pending = vcon_pending,
						    .read = vcon_read, .write = vcon_write};

		ret = virtio_console_new(vm->mm, &be, &dev);
		if (!ret)
			ret = attach_virtio(vm, dev);
		if (ret)
			return ret;
		vm->vcon = dev;
	}
	if (vm->cfg.agent == VM_AGENT_ON) {
		/* The last slot: the guest agent finds it as the hvc that is not a console. */
		struct agent_hooks hooks = {.opaque = vm, .kick = agent_kick,
					    .running = agent_running};
		struct virtio_console_backend be;

		ret = agent_new(&hooks, &vm->agent);
		if (ret)
			return ret;
		agent_console_backend(vm->agent, &be);
		ret = virtio_console_new(vm->mm, &be, &dev);
		if (!ret)
			ret = attach_virtio(vm, dev);
		if (ret)
			return ret;
		vm->agent_dev = dev;
	}
	return 0;
}

int vm_net_mac(const struct vm_config *cfg, unsigned i, uint8_t mac[6])
{
	struct net_spec spec;
	int ret;

	if (i >= cfg->nnets)
		return -ENOENT;
	ret = net_spec_parse(cfg->nets[i], &spec);
	if (ret)
		return ret;
	/* Several NICs with the default MAC get distinct ones (..:56, ..:57, ...). */
	if (i && !memcmp(spec.mac, "\x52\x54\x00\x12\x34\x56", 6))
		spec.mac[5] = (uint8_t)(spec.mac[5] + i);
	memcpy(mac, spec.mac, 6);
	return 0;
}

struct agent *vm_agent(struct vm *vm)
{
	return vm->agent;
}

/*
 * Asks for transparent huge pages on guest RAM. When the host cannot give them the VM still
 * runs, on 4 KiB pages, after one warning: madvise() fails only on kernels built without THP,
 * and succeeds when THP is "never", so that mode is read from sysfs.
 */
static void advise_huge_pages(void *ram, uint64_t size)
{
	if (madvise(ram, size, MADV_HUGEPAGE)) {
		log_warn("huge pages: madvise(MADV_HUGEPAGE): %s (a host kernel without transparent "
			 "huge pages?): guest RAM uses 4 KiB pages", strerror(errno));
		return;
	}
	if (mem_thp_mode() == 0)
		log_warn("huge pages: the host's transparent huge pages are off "
			 "(/sys/kernel/mm/transparent_hugepage/enabled is never): guest RAM uses "
			 "4 KiB pages");
}

int vm_new(const struct vm_config *cfg, struct vm **out)
{
	struct board_config bc = {0};
	struct accel_vm_config ac = {0};
	struct vm *vm;
	int ret;

	ret = validate(cfg);
	if (ret)
		return ret;
	vm = calloc(1, sizeof(*vm) + cfg->ncpus * sizeof(struct vcpu));
	if (!vm) {
		err_set("out of memory");
		return -ENOMEM;
	}
	vm->cfg = *cfg;
	vm->ncpus = cfg->ncpus;
	vm->sbi_in_vmm = !cfg->bios;
	vm->wake_fd = -1;
	atomic_init(&vm->stop_reason, -1);
	pthread_mutex_init(&vm->out_lock, NULL);
	pthread_mutex_init(&vm->pause_lock, NULL);
	pthread_cond_init(&vm->pause_cond, NULL);
	console_init(&vm->con, cfg->console_in);
	for (unsigned i = 0; i < vm->ncpus; i++) {
		vm->vcpus[i].vm = vm;
		vm->vcpus[i].id = i;
		pthread_mutex_init(&vm->vcpus[i].lock, NULL);
		pthread_cond_init(&vm->vcpus[i].cond, NULL);
	}
	*out = vm;

	vm->ops = accel_find(cfg->accel ? cfg->accel : "rv64");
	if (!vm->ops) {
		err_set("unknown accelerator '%s'", cfg->accel);
		return -EINVAL;
	}
	vm->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->wake_fd < 0) {
		err_set("eventfd: %s", strerror(errno));
		return -errno;
	}
	vm->ram = mmap(NULL, cfg->mem, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (vm->ram == MAP_FAILED) {
		vm->ram = NULL;
		err_set("cannot map %" PRIu64 " MiB of guest RAM: %s", cfg->mem >> 20,
			strerror(errno));
		return -ENOMEM;
	}
	mem_name(vm->ram, cfg->mem, "kumo-guest-ram");
	/*
	 * Off by default: zeroing a whole 2 MiB page on its first touch costs more than the host
	 * TLB reach gains while a guest boots or fills fresh memory (docs/design.md, Boot).
	 */
	if (cfg->huge_pages == VM_HUGE_PAGES_THP)
		advise_huge_pages(vm->ram, cfg->mem);

	bc.ncpus = cfg->ncpus;
	bc.ram_size = cfg->mem;
	bc.isa = vm->ops->isa;
	bc.mmu_type = "riscv,sv57";
	/*
	 * With virtio-console, keep ttyS0 first: a kernel whose virtio_mmio is a module (Debian's)
	 * has no console at all until its initramfs loads it. The last console= is /dev/console.
	 */
	bc.bootargs = cfg->append		? cfg->append
		      : cfg->virtio_console ? "console=ttyS0 console=hvc0"
					    : "console=ttyS0";
	bc.hooks = (struct board_hooks){.opaque = vm,
					.cpu_irq = hook_cpu_irq,
					.cpu_timer = hook_cpu_timer,
					.system_event = hook_system_event,
					.console_write = hook_console_write,
					.console_rx_ready = hook_console_rx_ready};
	ret = board_new(&bc, &vm->board);
	if (ret)
		return ret;
	vm->mm = board_memmap(vm->board);
	ret = memmap_add_ram(vm->mm, VIRT_DRAM_BASE, cfg->mem, vm->ram);
	if (ret) {
		err_set("cannot add guest RAM to the memory map (%s)", strerror(-ret));
		return ret;
	}
	ret = create_virtio(vm, cfg);
	if (ret)
		return ret;

	ac = (struct accel_vm_config){.ram = vm->ram,
				      .ram_base = VIRT_DRAM_BASE,
				      .ram_size = cfg->mem,
				      .memmap = vm->mm,
				      .ncpus = cfg->ncpus,
				      .ecall_exit_mask = vm->sbi_in_vmm ? 1u << 1 : 0};
	ret = vm->ops->vm_new(&ac, &vm->avm);
	if (ret) {
		if (!*err_get())
			err_set("accelerator %s: cannot create the VM (%s)", vm->ops->name,
				strerror(-ret));
		return ret;
	}
	if (vm->ops->ram_written)
		memmap_set_write_hook(vm->mm, hook_ram_written, vm);
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		ret = vm->ops->vcpu_new(vm->avm, i, &v->av);
		if (ret) {
			err_set("accelerator %s: cannot create vCPU %u (%s)", vm->ops->name, i,
				strerror(-ret));
			return ret;
		}
		v->run = vm->ops->vcpu_run_state(v->av);
	}
	board_reset(vm->board); /* drives every interrupt line and timer to its reset level */
	setup_sbi_host(vm);
	if (cfg->restoring) {
		for (unsigned i = 0; i < vm->ncpus; i++)
			vm->vcpus[i].hsm_state = vm->sbi_in_vmm ? SBI_HSM_STOPPED : SBI_HSM_STARTED;
		return 0;
	}
	return load_guest(vm, cfg);
}

static void print_stats(struct vm *vm)
{
	double secs = (atomic_load(&vm->stop_ns) - atomic_load(&vm->start_ns)) / 1e9;
	uint64_t total = 0;

	fprintf(stderr, "kumo: stats: %.3f s wall\n", secs);
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		struct accel_stats st = {0};
		uint64_t tlb = 0;

		vm->ops->get_stats(v->av, &st);
		total += st.instret;
		tlb = st.tlb_hits + st.tlb_misses;
		fprintf(stderr,
			"kumo: stats: vcpu%u: %" PRIu64 " instructions, %.1f MIPS, cpu %.3f s, "
			"%" PRIu64 " traps, %" PRIu64 " interrupts, tlb hit %.2f%%",
			i, st.instret, secs > 0 ? st.instret / secs / 1e6 : 0.0, v->cpu_ns / 1e9,
			st.traps, st.interrupts, tlb ? 100.0 * st.tlb_hits / tlb : 0.0);
		if (st.dcache_hits + st.dcache_misses)
			fprintf(stderr, ", decode cache hit %.2f%%",
				100.0 * st.dcache_hits / (st.dcache_hits + st.dcache_misses));
		fprintf(stderr, "\nkumo: stats: vcpu%u exits:", i);
		for (unsigned r = 1; r < ACCEL_EXIT__COUNT; r++)
			if (st.exits[r])
				fprintf(stderr, " %s=%" PRIu64, accel_exit_name(r), st.exits[r]);
		fprintf(stderr, "\nkumo: stats: vcpu%u sbi calls:", i);
		for (unsigned e = 0; e < SBI_STAT_EXTS; e++)
			if (v->sbi_stats.calls[e])
				fprintf(stderr, " %s=%" PRIu64, sbi_ext_name(e), v->sbi_stats.calls[e]);
		fputc('\n', stderr);
	}
	for (unsigned i = 0; i < vm->nvirtio; i++) {
		struct virtio_stats *vs = &vm->virtio[i]->stats;

		fprintf(stderr,
			"kumo: stats: %s@slot%u: %" PRIu64 " requests, %" PRIu64 " bytes read, %" PRIu64
			" bytes written, %" PRIu64 " errors, %" PRIu64 " notifications, %" PRIu64
			" interrupts, %" PRIu64 " resets needed\n",
			vm->virtio[i]->ops->name, i, atomic_load(&vs->requests),
			atomic_load(&vs->bytes_read), atomic_load(&vs->bytes_written),
			atomic_load(&vs->errors), atomic_load(&vs->notifications),
			atomic_load(&vs->interrupts), atomic_load(&vs->needs_reset));
	}
	fprintf(stderr, "kumo: stats: total %" PRIu64 " instructions, %.1f MIPS, %" PRIu64
			" guest errors\n",
		total, secs > 0 ? total / secs / 1e6 : 0.0, guest_error_count());
}

/* Feeds queued console input to the UART; returns true while some is still waiting. */
static bool pump_input(struct vm *vm)
{
	uint8_t buf[64];
	size_t n = console_peek_input(&vm->con, buf, sizeof(buf));

	if (!n)
		return false;
	size_t took = board_console_input(vm->board, buf, n);
	console_consume_input(&vm->con, took);
	return console_pending_input(&vm->con) > 0;
}

int vm_run(struct vm *vm)
{
	int ret;

	atomic_store(&vm->start_ns, clock_ns());
	if (vm->io && iothread_start(vm->io))
		vm_request_stop(vm, VM_EXIT_ERROR);
	if (vm->agent && agent_start(vm->agent))
		log_warn("%s: the guest agent channel stays silent", err_get());
	for (unsigned i = 0; i < vm->ncpus && !stopping(vm); i++) {
		struct vcpu *v = &vm->vcpus[i];

		ret = pthread_create(&v->thread, NULL, vcpu_loop, v);
		if (ret) {
			err_set("cannot start vCPU thread %u: %s", i, strerror(ret));
			vm_request_stop(vm, VM_EXIT_ERROR);
			break;
		}
		atomic_store(&v->thread_started, true);
	}
	console_start(&vm->con);
	while (!stopping(vm)) {
		/* With virtio-console the I/O thread takes input as the guest posts buffers. */
		bool more = vm->vcon ? false : pump_input(vm);
		/* A full queue stops reading the host (poll ignores negative fds). */
		bool room = console_pending_input(&vm->con) < CONSOLE_QUEUE;
		struct pollfd pfd[2] = {{.fd = vm->wake_fd, .events = POLLIN},
					{.fd = room ? console_fd(&vm->con) : -1, .events = POLLIN}};
		int n = poll(pfd, 2, more ? 20 : -1);
		uint64_t cnt;

		if (n < 0 && errno != EINTR)
			break;
		if (n > 0 && (pfd[0].revents & POLLIN) && read(vm->wake_fd, &cnt, sizeof(cnt)) < 0) {
			/* EAGAIN: another reader drained it; nothing to do */
		}
		if (n > 0 && pfd[1].fd >= 0 && (pfd[1].revents & (POLLIN | POLLHUP | POLLERR))) {
			int r = console_read_host(&vm->con, hook_console_write, vm);

			if (r == CONSOLE_QUIT)
				vm_request_stop(vm, VM_EXIT_USER);
			else if (vm->vcon && console_pending_input(&vm->con))
				virtio_dev_kick(vm->vcon, VIRTIO_CONSOLE_RXQ);
		}
	}
	for (unsigned i = 0; i < vm->ncpus; i++)
		if (atomic_load(&vm->vcpus[i].thread_started)) {
			pthread_join(vm->vcpus[i].thread, NULL);
			atomic_store(&vm->vcpus[i].thread_started, false);
		}
	agent_stop(vm->agent);
	iothread_stop(vm->io);
	atomic_store(&vm->stop_ns, clock_ns());
	console_stop(&vm->con);
	if (vm->cfg.stats)
		print_stats(vm);
	return atomic_load(&vm->stop_reason);
}

void vm_free(struct vm *vm)
{
	if (!vm)
		return;
	if (atomic_load(&vm->stop_reason) < 0)
		vm_request_stop(vm, VM_EXIT_USER);
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		if (atomic_load(&v->thread_started))
			pthread_join(v->thread, NULL);
	}
	for (unsigned i = 0; i < vm->ncpus; i++) {
		if (vm->vcpus[i].av)
			vm->ops->vcpu_free(vm->vcpus[i].av);
		pthread_mutex_destroy(&vm->vcpus[i].lock);
		pthread_cond_destroy(&vm->vcpus[i].cond);
	}
	if (vm->avm)
		vm->ops->vm_free(vm->avm);
	iothread_free(vm->io); /* before the board frees the devices it watches */
	if (vm->board)
		board_free(vm->board);
	agent_free(vm->agent); /* after the device whose back end it is */
	if (vm->ram)
		munmap(vm->ram, vm->cfg.mem);
	if (vm->wake_fd >= 0)
		close(vm->wake_fd);
	console_fini(&vm->con);
	pthread_mutex_destroy(&vm->out_lock);
	pthread_mutex_destroy(&vm->pause_lock);
	pthread_cond_destroy(&vm->pause_cond);
	free(vm);
}

/* ---- control: pause/resume, metrics, snapshot access ---- */

int vm_pause(struct vm *vm)
{
	bool paused;

	pthread_mutex_lock(&vm->pause_lock);
	if (stopping(vm)) {
		pthread_mutex_unlock(&vm->pause_lock);
		return -ESHUTDOWN;
	}
	if (atomic_load(&vm->pause_req)) {
		pthread_mutex_unlock(&vm->pause_lock);
		return -EALREADY;
	}
	atomic_store(&vm->pause_req, true);
	pthread_mutex_unlock(&vm->pause_lock);
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		vm->ops->vcpu_kick(v->av); /* leaves vcpu_run() or vcpu_wait() */
		pthread_mutex_lock(&v->lock);
		pthread_cond_broadcast(&v->cond); /* leaves wait_until_started() */
		pthread_mutex_unlock(&v->lock);
	}
	pthread_mutex_lock(&vm->pause_lock);
	while (vm->parked < vm->ncpus && !stopping(vm))
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	/* Then the I/O thread: finish the device it is serving, take no more. */
	vm->io_paused = true;
	while (vm->io_busy && !stopping(vm))
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	paused = vm->paused = vm->parked == vm->ncpus && !vm->io_busy;
	vm->pause_ticks = clock_guest_ticks();
	if (!paused) {
		/* Stopping: let the I/O thread go too; vm_resume() is not going to come. */
		vm->io_paused = false;
		pthread_cond_broadcast(&vm->pause_cond);
	}
	pthread_mutex_unlock(&vm->pause_lock);
	return paused ? 0 : -ESHUTDOWN;
}

int vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	if (!atomic_load(&vm->pause_req)) {
		pthread_mutex_unlock(&vm->pause_lock);
		return -EALREADY;
	}
	if (vm->paused) {
		/* The guest clock continues from where it stopped: time paused never happened. */
		uint64_t now = clock_guest_ticks();

		clock_guest_set_offset(clock_guest_get_offset() - (int64_t)(now - vm->pause_ticks));
	}
	vm->paused = false;
	vm->io_paused = false;
	atomic_store(&vm->pause_req, false);
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
	return 0;
}

bool vm_is_paused(struct vm *vm)
{
	bool p;

	pthread_mutex_lock(&vm->pause_lock);
	p = vm->paused;
	pthread_mutex_unlock(&vm->pause_lock);
	return p;
}

uint64_t vm_paused_ticks(struct vm *vm)
{
	uint64_t t;

	pthread_mutex_lock(&vm->pause_lock);
	t = vm->paused ? vm->pause_ticks : clock_guest_ticks();
	pthread_mutex_unlock(&vm->pause_lock);
	return t;
}

bool vm_is_stopping(struct vm *vm)
{
	return stopping(vm);
}

const struct vm_config *vm_get_config(const struct vm *vm)
{
	return &vm->cfg;
}

unsigned vm_ncpus(const struct vm *vm)
{
	return vm->ncpus;
}

uint64_t vm_uptime_ns(const struct vm *vm)
{
	uint64_t start = atomic_load(&vm->start_ns), stop = atomic_load(&vm->stop_ns);

	if (!start)
		return 0;
	return (stop ? stop : clock_ns()) - start;
}

int vm_vcpu_info(struct vm *vm, unsigned i, struct vm_vcpu_info *out)
{
	struct accel_stats st = {0};
	struct vcpu *v;
	clockid_t cid;
	struct timespec ts;

	_Static_assert(ACCEL_EXIT__COUNT <= 16, "vm_vcpu_info.exits is too small");
	_Static_assert(SBI_STAT_EXTS <= 8, "vm_vcpu_info.sbi_calls is too small");
	if (i >= vm->ncpus)
		return -ENOENT;
	v = &vm->vcpus[i];
	*out = (struct vm_vcpu_info){0};
	vm->ops->get_stats(v->av, &st);
	out->instret = st.instret;
	out->traps = st.traps;
	out->interrupts = st.interrupts;
	memcpy(out->exits, st.exits, sizeof(st.exits));
	out->tlb_hits = st.tlb_hits;
	out->tlb_misses = st.tlb_misses;
	out->dcache_hits = st.dcache_hits;
	out->dcache_misses = st.dcache_misses;
	out->dcache_bytes = st.dcache_bytes;
	out->code_bytes = st.code_bytes;
	memcpy(out->sbi_calls, v->sbi_stats.calls, sizeof(v->sbi_stats.calls));
	out->thread_running = atomic_load(&v->thread_started) && !atomic_load(&v->exited);
	if (out->thread_running && !pthread_getcpuclockid(v->thread, &cid) &&
	    !clock_gettime(cid, &ts))
		out->cpu_ns = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
	else
		out->cpu_ns = v->cpu_ns;
	pthread_mutex_lock(&v->lock);
	out->hsm_state = v->hsm_state;
	pthread_mutex_unlock(&v->lock);
	pthread_mutex_lock(&vm->pause_lock);
	out->parked = v->parked;
	pthread_mutex_unlock(&vm->pause_lock);
	return 0;
}

unsigned vm_nvirtio(const struct vm *vm)
{
	return vm->nvirtio;
}

int vm_dev_info(struct vm *vm, unsigned i, struct vm_dev_info *out)
{
	struct virtio_stats *vs;

	if (i >= vm->nvirtio)
		return -ENOENT;
	vs = &vm->virtio[i]->stats;
	*out = (struct vm_dev_info){
		.name = vm->virtio[i]->ops->name,
		.requests = atomic_load(&vs->requests),
		.bytes_read = atomic_load(&vs->bytes_read),
		.bytes_written = atomic_load(&vs->bytes_written),
		.errors = atomic_load(&vs->errors),
		.notifications = atomic_load(&vs->notifications),
		.interrupts = atomic_load(&vs->interrupts),
		.needs_reset = atomic_load(&vs->needs_reset),
	};
	return 0;
}

const struct accel_ops *vm_accel_ops(const struct vm *vm)
{
	return vm->ops;
}

struct accel_vcpu *vm_accel_vcpu(struct vm *vm, unsigned i)
{
	return i < vm->ncpus ? vm->vcpus[i].av : NULL;
}

void *vm_ram(struct vm *vm, uint64_t *size)
{
	*size = vm->cfg.mem;
	return vm->ram;
}

struct board *vm_board(struct vm *vm)
{
	return vm->board;
}

int vm_hsm_state(struct vm *vm, unsigned i)
{
	struct vcpu *v = &vm->vcpus[i];
	int st;

	pthread_mutex_lock(&v->lock);
	st = v->hsm_state;
	pthread_mutex_unlock(&v->lock);
	return st;
}

int vm_set_hsm_state(struct vm *vm, unsigned i, int state)
{
	struct vcpu *v;

	if (i >= vm->ncpus || (state != SBI_HSM_STARTED && state != SBI_HSM_STOPPED))
		return -EINVAL;
	v = &vm->vcpus[i];
	pthread_mutex_lock(&v->lock);
	v->hsm_state = state;
	v->resume_pending = false;
	pthread_cond_broadcast(&v->cond);
	pthread_mutex_unlock(&v->lock);
	return 0;
}

size_t vm_console_read(struct vm *vm, uint64_t *pos, uint8_t *buf, size_t n)
{
	size_t got = 0;

	pthread_mutex_lock(&vm->out_lock);
	if (*pos > vm->con_total)
		*pos = vm->con_total;
	if (vm->con_total - *pos > VM_CONSOLE_RING)
		*pos = vm->con_total - VM_CONSOLE_RING; /* older output is gone */
	while (got < n && *pos < vm->con_total) {
		buf[got++] = vm->con_ring[*pos % VM_CONSOLE_RING];
		(*pos)++;
	}
	pthread_mutex_unlock(&vm->out_lock);
	return got;
}

size_t vm_console_write(struct vm *vm, const uint8_t *buf, size_t n)
{
	size_t took = console_queue_input(&vm->con, buf, n);
	uint64_t one = 1;

	if (vm->vcon)
		virtio_dev_kick(vm->vcon, VIRTIO_CONSOLE_RXQ);
	else if (write(vm->wake_fd, &one, sizeof(one)) < 0) {
		/* a full counter already means "wake up" */
	}
	return took;
}

void vm_kick_virtio(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nvirtio; i++)
		for (unsigned q = 0; q < vm->virtio[i]->num_queues; q++)
			if (vm->virtio[i]->vq[q].ready)
				virtio_dev_kick(vm->virtio[i], q);
}

void vm_settle_vcpu(struct vm *vm, unsigned i)
{
	struct vcpu *v = &vm->vcpus[i];
	uint64_t pc = 0;

	if (v->run->exit_reason != ACCEL_EXIT_SBI)
		return;
	/* What the next vcpu_run() would do first (accel.h ACCEL_EXIT_SBI). */
	vm->ops->set_reg(v->av, ACCEL_REG_X(10), (uint64_t)v->run->sbi.ret[0]);
	vm->ops->set_reg(v->av, ACCEL_REG_X(11), (uint64_t)v->run->sbi.ret[1]);
	vm->ops->get_reg(v->av, ACCEL_REG_PC, &pc);
	vm->ops->set_reg(v->av, ACCEL_REG_PC, pc + 4); /* drops the pending completion */
	v->run->exit_reason = ACCEL_EXIT_NONE;
}
