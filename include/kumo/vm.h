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
};

struct vm;

int vm_new(const struct vm_config *cfg, struct vm **out);
/* Runs until the guest stops; returns enum vm_exit. Call once. */
int vm_run(struct vm *vm);
void vm_request_stop(struct vm *vm, enum vm_exit why);
void vm_free(struct vm *vm);

#endif
