/*
 * vm.h - one virtual machine: guest RAM, the board, the accelerator, vCPU threads, console.
 *
 * Usage: fill struct vm_config, vm_new() validates it and loads everything (a bad file, size or
 * count fails here with err_get() set to one sentence), vm_run() runs the guest on one host
 * thread per vCPU while the calling thread serves the console, and returns how the guest
 * stopped (enum vm_exit). vm_free() releases everything and restores the terminal.
 * vm_request_stop() may be called from any thread, including signal-handler-safe contexts'
 * deferred work (it only stores and kicks).
 */
#ifndef KUMO_VM_H
#define KUMO_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VM_MAX_CPUS 64
#define VM_MIN_MEM (16ULL << 20)
#define VM_MAX_MEM (1ULL << 40) /* RAM at 0x80000000 must stay within the 56-bit space */

/* Process exit statuses of `kumo run`. */
enum vm_exit {
	VM_EXIT_POWEROFF = 0, /* the guest powered off */
	VM_EXIT_ERROR = 1,    /* VMM error or bad input */
	VM_EXIT_REBOOT = 2,   /* the guest asked for a reboot */
	VM_EXIT_FAIL = 3,     /* the guest reported a failure, or a vCPU hit an internal error */
	VM_EXIT_USER = 4,     /* stopped from the host: Ctrl-A x, SIGINT, SIGTERM */
};

/* A virtio-blk disk on a raw image file (kumo run --disk). */
struct vm_disk {
	const char *path;
	const char *serial; /* GET_ID string (20 bytes used), NULL: none */
	bool readonly;      /* the guest sees a read-only device; writes fail with IOERR */
	bool direct;        /* O_DIRECT on the host (aligned bounce buffers) */
	bool discard;       /* offer DISCARD and WRITE_ZEROES (host hole punching) */
};

#define VM_MAX_DISKS 8 /* the virt board has 8 virtio slots in all */
#define VM_MAX_NETS 8

/* How guest RAM is backed on the host (kumo run --hugepages, machine-config "huge_pages"). */
enum vm_huge_pages {
	VM_HUGE_PAGES_NONE = 0, /* 4 KiB pages, THP left to the host's default (none with "madvise") */
	VM_HUGE_PAGES_THP,      /* madvise(MADV_HUGEPAGE): transparent 2 MiB pages where the host can */
};

struct vm_config {
	const char *kernel;  /* Image/ELF; with bios also a raw next stage; NULL: none */
	const char *initrd;  /* NULL: none */
	const char *append;  /* kernel command line; NULL: "console=ttyS0" */
	const char *bios;    /* M-mode firmware; NULL: the VMM serves SBI itself */
	const char *accel;   /* backend name; NULL: "rv64" */
	uint64_t mem;        /* bytes of RAM */
	unsigned ncpus;
	bool stats;          /* print execution statistics on stderr when the VM stops */
	int console_in;      /* host fd for console input (-1: none) */
	int console_out;     /* host fd for console output */
	const struct vm_disk *disks; /* [ndisks], in slot order */
	unsigned ndisks;
	bool rng;            /* virtio-rng fed by getrandom() */
	bool virtio_console; /* the console is virtio-console (hvc0) instead of the UART's input */
	/* --net values ("user[,hostfwd=...][,mac=...]", "tap,ifname=NAME"), slots after the disks */
	const char *const *nets;
	unsigned nnets;
	/* Restore: create RAM, board and vCPUs but load nothing (snapshot_restore fills them). */
	bool restoring;
	/* Guest agent channel (a second virtio-console, see kumo/agent.h): enum vm_agent. */
	int agent;
	/*
	 * Host huge pages for guest RAM. When the host has none to give (THP "never", or a kernel
	 * without THP), vm_new() logs one warning and the VM runs on 4 KiB pages.
	 */
	enum vm_huge_pages huge_pages;
};

enum vm_agent {
	VM_AGENT_AUTO = 0, /* on when the VM has a network interface and a virtio slot is free */
	VM_AGENT_OFF,
	VM_AGENT_ON,
};

struct vm;

int vm_new(const struct vm_config *cfg, struct vm **out);
/* Runs until the guest stops; returns enum vm_exit. Call once. */
int vm_run(struct vm *vm);
void vm_request_stop(struct vm *vm, enum vm_exit why);
void vm_free(struct vm *vm);

/*
 * Control (src/vmm/control.c and snapshot.c use these; any thread but the vCPU threads).
 * vm_pause() asks every vCPU thread to park outside vcpu_run() and returns once all are parked
 * (host CPU ~0) with the guest clock frozen; vm_resume() shifts the guest clock back by the
 * paused time (clock_guest_set_offset) and lets them run. -EALREADY when already in that state,
 * -ESHUTDOWN when the VM is stopping. Pause requests made before vm_run() take effect as soon
 * as the vCPU threads start.
 */
int vm_pause(struct vm *vm);
int vm_resume(struct vm *vm);
bool vm_is_paused(struct vm *vm);
/* Guest time (ticks) at which the current pause began; the guest saw no time after it. */
uint64_t vm_paused_ticks(struct vm *vm);
bool vm_is_stopping(struct vm *vm);
const struct vm_config *vm_get_config(const struct vm *vm);
unsigned vm_ncpus(const struct vm *vm);
uint64_t vm_uptime_ns(const struct vm *vm); /* since vm_run() started, 0 before */

/* What metrics report about one vCPU. Exact while paused, approximate while running. */
struct vm_vcpu_info {
	uint64_t instret, traps, interrupts;
	uint64_t exits[16];     /* by enum accel_exit_reason (ACCEL_EXIT__COUNT entries used) */
	uint64_t tlb_hits, tlb_misses, dcache_hits, dcache_misses;
	uint64_t dcache_bytes, code_bytes; /* decode cache, translated code held now */
	uint64_t sbi_calls[8];  /* by sbi_ext_index() order: base time ipi rfence hsm srst dbcn other */
	uint64_t cpu_ns;        /* host CPU time of the vCPU thread */
	int hsm_state;          /* enum sbi_hart_state */
	bool parked;            /* parked by vm_pause() */
	bool thread_running;
};
int vm_vcpu_info(struct vm *vm, unsigned i, struct vm_vcpu_info *out);

/* Per-device I/O counters of virtio slot i (0..vm_nvirtio()-1). */
struct vm_dev_info {
	const char *name;       /* "virtio-blk", ... (static) */
	uint64_t requests, bytes_read, bytes_written, errors, notifications, interrupts,
		needs_reset;
};
unsigned vm_nvirtio(const struct vm *vm);
int vm_dev_info(struct vm *vm, unsigned i, struct vm_dev_info *out);

/*
 * Snapshot access (src/vmm/snapshot.c), only while paused or before vm_run(): the accelerator
 * and its vCPUs, guest RAM, the board, and each hart's HSM state. vm_settle_vcpu() completes a
 * hypercall the hart is in the middle of (a0/a1 written, pc past the ECALL), so that its
 * registers alone describe it.
 */
struct accel_ops;
struct accel_vcpu;
struct board;
const struct accel_ops *vm_accel_ops(const struct vm *vm);
struct accel_vcpu *vm_accel_vcpu(struct vm *vm, unsigned i);
void *vm_ram(struct vm *vm, uint64_t *size);
struct board *vm_board(struct vm *vm);
int vm_hsm_state(struct vm *vm, unsigned i);
int vm_set_hsm_state(struct vm *vm, unsigned i, int state);
void vm_settle_vcpu(struct vm *vm, unsigned i);
/*
 * Console over the control API. vm_console_read() copies output from byte offset *pos (since
 * the VM was created; moved up to the oldest byte kept when older output is gone) and
 * advances *pos; vm_console_write() queues input as if typed (returns bytes taken). Any thread.
 */
#define VM_CONSOLE_RING (256u << 10)
size_t vm_console_read(struct vm *vm, uint64_t *pos, uint8_t *buf, size_t n);
size_t vm_console_write(struct vm *vm, const uint8_t *buf, size_t n);
/* After a restore: every ready virtqueue is looked at once (kicks are not saved). */
void vm_kick_virtio(struct vm *vm);

/*
 * The guest agent channel, NULL when the VM has none. vm_get_config(vm)->agent says
 * VM_AGENT_ON or VM_AGENT_OFF once the VM exists (AUTO is resolved by vm_new). Any thread;
 * valid until vm_free().
 */
struct agent;
struct agent *vm_agent(struct vm *vm);
/*
 * The MAC of cfg's network interface i as vm_new() gives it to the device: the --net spec's
 * mac=, or the default with several default NICs made distinct (..:56, ..:57, ...).
 * 0, -EINVAL (bad spec, err_set) or -ENOENT (no such interface). Pure; any thread.
 */
int vm_net_mac(const struct vm_config *cfg, unsigned i, uint8_t mac[6]);

#endif
