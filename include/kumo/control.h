/*
 * control.h - the VMM side of the control API: the VM lifecycle state machine, the operations
 * the API server calls (configure, start, pause, resume, shutdown, stop, snapshot, restore),
 * metrics, and snapshots.
 *
 * Usage: `kumo run` creates one struct control per process. With a kernel on the command line
 * it builds the VM itself and calls control_attach(); with only --api-sock it waits in
 * control_wait_vm() until a client configured the VM and asked to start it (Firecracker's
 * flow: PUT /machine-config, PUT /boot-source, PUT /actions {"action":"start"}), or to restore
 * a snapshot. When vm_run() returns, control_vm_exited() moves the state machine to stopped.
 *
 * The lifecycle (one table in control.c says which operation is allowed in which state):
 *
 *     configuring --start/restore--> running <--pause/resume--> paused
 *          |                            |                          |
 *          +------------stop------------+-----stop/shutdown--------+--> stopped
 *
 * Threads: every control_* function may be called from any thread except the vCPU threads; a
 * mutex serializes them (a snapshot holds it while it writes). Operations return 0 or -errno;
 * on failure err_get() (of the calling thread) holds one sentence that says why, and
 * control_status() maps the error to an HTTP status (400 wrong state or bad value, 404, 500).
 */
#ifndef KUMO_CONTROL_H
#define KUMO_CONTROL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "kumo/vm.h"

enum vm_state {
	VM_STATE_CONFIGURING,
	VM_STATE_RUNNING,
	VM_STATE_PAUSED,
	VM_STATE_STOPPED,
	VM_STATE__COUNT,
};

enum control_op {
	CONTROL_OP_CONFIGURE, /* machine config, boot source, drives, network interfaces */
	CONTROL_OP_START,
	CONTROL_OP_RESTORE,   /* load a snapshot into this (still empty) VMM */
	CONTROL_OP_PAUSE,
	CONTROL_OP_RESUME,
	CONTROL_OP_SHUTDOWN,  /* graceful request, see docs/api.md */
	CONTROL_OP_STOP,      /* hard stop */
	CONTROL_OP_SNAPSHOT,
	CONTROL_OP_CONSOLE,   /* read output / send input over the API */
	CONTROL_OP__COUNT,
};

const char *control_state_name(enum vm_state s);
const char *control_op_name(enum control_op op);
/*
 * The state-machine table: true when `op` is allowed in state `s`; otherwise *why (if not
 * NULL) is a sentence that says why not. Pure; any thread.
 */
bool control_op_allowed(enum control_op op, enum vm_state s, const char **why);

struct control;

/* Console fds given to a VM configured through the API (as kumo run's --console). */
int control_new(int console_in, int console_out, struct control **out);
void control_free(struct control *ctl);

enum vm_state control_state(struct control *ctl);

/* Configuring: each replaces that part of the pending configuration. */
int control_set_machine(struct control *ctl, unsigned vcpus, uint64_t mem_bytes);
/* The guest agent channel: enum vm_agent (kumo run --agent, machine-config "agent"). */
int control_set_agent(struct control *ctl, int mode);
/* "auto", "on", "off" -> enum vm_agent; -EINVAL (err_set says why) for anything else. */
int control_agent_mode(const char *name);
/* Host huge pages for guest RAM: enum vm_huge_pages (kumo run --hugepages, "huge_pages"). */
int control_set_huge_pages(struct control *ctl, int mode);
/* "none", "thp" -> enum vm_huge_pages; -EINVAL (err_set says why) for anything else. */
int control_huge_pages_mode(const char *name);
int control_set_boot(struct control *ctl, const char *kernel, const char *initrd,
		     const char *cmdline, const char *bios);
/* Adds or replaces drive `id` (a name, at most 31 bytes) / network interface `id`. */
int control_set_drive(struct control *ctl, const char *id, const struct vm_disk *disk);
int control_set_net(struct control *ctl, const char *id, const char *net_spec);

/* Configuring -> running: builds the VM (vm_new) and hands it to control_wait_vm(). */
int control_start(struct control *ctl);
/*
 * Configuring -> running: builds a VM from snapshot directory `dir` and hands it over. Clones:
 * ndisks > 0 replaces the snapshot's disks (same count, same order: new paths and options),
 * nnets > 0 its network interfaces (same count: e.g. a new MAC or host forwarding). The
 * guest keeps what its drivers read at boot (a virtio-net driver keeps the MAC it read).
 */
int control_restore(struct control *ctl, const char *dir, const struct vm_disk *disks,
		    unsigned ndisks, const char *const *nets, unsigned nnets);

/*
 * Main thread: blocks until a VM exists (control_start/control_restore from the API) or
 * control_abort() was called; returns the VM (owned by the caller, who runs and frees it) or
 * NULL when aborted.
 */
struct vm *control_wait_vm(struct control *ctl);
/* Ends a control_wait_vm() (signals while configuring). */
void control_abort(struct control *ctl);
/* Main thread: vm was built from the command line (or a --config file) and is about to run. */
void control_attach(struct control *ctl, struct vm *vm);
/* Main thread: vm_run() returned `status` (enum vm_exit); the VM is about to be freed. */
void control_vm_exited(struct control *ctl, int status);

int control_pause(struct control *ctl);
int control_resume(struct control *ctl);
/*
 * Graceful shutdown request (see docs/api.md): a paused VM is resumed; on a serial console
 * the guest gets a BREAK + Magic SysRq s, u, o (sync, remount read-only, power off); if it has
 * not powered off after grace_ms, it is stopped like control_stop() (exit status 4).
 */
int control_shutdown(struct control *ctl, unsigned grace_ms);
int control_stop(struct control *ctl);
/* Paused only: writes a (full or diff) snapshot of the VM into `dir` (created if missing). */
int control_snapshot(struct control *ctl, const char *dir, bool diff, bool compress);

/*
 * Console over the API (running or paused): output from byte offset *pos (advanced; see
 * vm_console_read) into buf, at most n bytes; *got receives the count. Input is queued as if
 * typed; *took receives how many bytes fit (the queue holds 4 KiB).
 */
int control_console_read(struct control *ctl, uint64_t *pos, uint8_t *buf, size_t n, size_t *got);
int control_console_write(struct control *ctl, const uint8_t *buf, size_t n, size_t *took);

/*
 * Guest agent liveness (GET /agent): a ping through the agent channel, answered within
 * timeout_ms (waited for without the control lock: other calls are served meanwhile; pings
 * take turns). 0 with *rtt_us; -ETIMEDOUT; -ENOENT when the VM has no agent channel; -EPERM
 * when not running; -ESHUTDOWN when the VM stops during the wait.
 */
int control_agent_ping(struct control *ctl, unsigned timeout_ms, uint64_t *rtt_us);

/* GET /vm: state, configuration and vCPUs. New reference. */
json_t *control_describe(struct control *ctl);
/* GET /metrics as JSON (new reference) or Prometheus text (malloc'd, caller frees). */
json_t *control_metrics_json(struct control *ctl);
char *control_metrics_prometheus(struct control *ctl);

/* Maps an operation's -errno to an HTTP status: 400, 404, 409 or 500. */
int control_status(int err);

/* ---- snapshots (src/vmm/snapshot.c) ---- */

#define SNAPSHOT_FORMAT_VERSION 2 /* 2: dirty.bin holds one bit per 4 KiB page (1: per 2 MiB) */

/*
 * Writes manifest.json (format version, configuration, every hart's registers, the guest
 * clock, checksums), devices.bin (board_save) and memory.bin (guest RAM as a sparse file:
 * all-zero pages are holes) into dir. The VM must be paused. Refuses a VM whose devices
 * cannot be saved. diff: memory.bin holds only the 4 KiB pages written since the previous
 * snapshot (or restore) of this VM in this process, which becomes the manifest's parent;
 * restoring it restores the parent chain first. After any snapshot the memory map's dirty
 * log is restarted to track the next diff (see snapshot.c). compress: memory.zst (one zstd
 * frame per non-zero 2 MiB chunk; in a diff, the chunk's dirty pages over zeros) and
 * memory.idx instead of memory.bin; restoring it decompresses every chunk at once (not lazy).
 */
int snapshot_save(struct vm *vm, const char *dir, bool diff, bool compress);
/*
 * Reads and checks dir's manifest (version, sizes, checksums of the device state and of the
 * memory file) and fills cfg for vm_new(): mem, ncpus, accel, restoring, and the virtio
 * devices (disks, nets, rng, console) in their slots. Strings and arrays in cfg point into
 * static storage, valid until the next call (one restore per process).
 */
int snapshot_read_config(const char *dir, struct vm_config *cfg);
/*
 * Restores a VM created from snapshot_read_config()'s configuration: maps memory.bin over
 * guest RAM lazily (MAP_PRIVATE: pages are read on first touch, writes stay private), loads
 * the devices and every hart's registers, and sets the guest clock to where it stopped.
 */
int snapshot_restore(struct vm *vm, const char *dir);

#endif
