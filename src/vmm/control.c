/*
 * control.c - the VM lifecycle state machine and the operations behind the control API.
 *
 * One mutex (ctl->lock) serializes every operation; the state only changes under it. The VM
 * itself is run by the main thread (vm_run); this file only pauses, resumes, stops and
 * inspects it, and builds it when the API configures and starts it.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kumo/accel.h"
#include "kumo/agent.h"
#include "kumo/base.h"
#include "kumo/board.h"
#include "kumo/control.h"
#include "kumo/sbi.h"
#include "kumo/vm.h"

#define CONTROL_ID_MAX 32

/* ---- the state-machine table ---- */

static const char *const state_names[VM_STATE__COUNT] = {
	[VM_STATE_CONFIGURING] = "configuring",
	[VM_STATE_RUNNING] = "running",
	[VM_STATE_PAUSED] = "paused",
	[VM_STATE_STOPPED] = "stopped",
};

static const char *const op_names[CONTROL_OP__COUNT] = {
	[CONTROL_OP_CONFIGURE] = "configure",
	[CONTROL_OP_START] = "start",
	[CONTROL_OP_RESTORE] = "restore",
	[CONTROL_OP_PAUSE] = "pause",
	[CONTROL_OP_RESUME] = "resume",
	[CONTROL_OP_SHUTDOWN] = "shutdown",
	[CONTROL_OP_STOP] = "stop",
	[CONTROL_OP_SNAPSHOT] = "snapshot",
	[CONTROL_OP_CONSOLE] = "use the console",
};

/* NULL: allowed. Otherwise the sentence a client gets with its 400. */
static const char *const rules[CONTROL_OP__COUNT][VM_STATE__COUNT] = {
	[CONTROL_OP_CONFIGURE] = {
		[VM_STATE_RUNNING] = "the VM is running: its configuration can only change before it starts",
		[VM_STATE_PAUSED] = "the VM is paused: its configuration can only change before it starts",
		[VM_STATE_STOPPED] = "the VM has stopped",
	},
	[CONTROL_OP_START] = {
		[VM_STATE_RUNNING] = "the VM is already running",
		[VM_STATE_PAUSED] = "the VM has started and is paused: resume it with PATCH /vm {\"state\": \"running\"}",
		[VM_STATE_STOPPED] = "the VM has stopped: start a new kumo process",
	},
	[CONTROL_OP_RESTORE] = {
		[VM_STATE_RUNNING] = "a snapshot can only be loaded into a VMM that has not started a VM",
		[VM_STATE_PAUSED] = "a snapshot can only be loaded into a VMM that has not started a VM",
		[VM_STATE_STOPPED] = "the VM has stopped: start a new kumo process with --restore",
	},
	[CONTROL_OP_PAUSE] = {
		[VM_STATE_CONFIGURING] = "the VM has not started yet",
		[VM_STATE_PAUSED] = "the VM is already paused",
		[VM_STATE_STOPPED] = "the VM has stopped",
	},
	[CONTROL_OP_RESUME] = {
		[VM_STATE_CONFIGURING] = "the VM has not started yet: use PUT /actions {\"action\": \"start\"}",
		[VM_STATE_RUNNING] = "the VM is already running",
		[VM_STATE_STOPPED] = "the VM has stopped",
	},
	[CONTROL_OP_SHUTDOWN] = {
		[VM_STATE_CONFIGURING] = "the VM has not started yet",
		[VM_STATE_STOPPED] = "the VM has already stopped",
	},
	[CONTROL_OP_STOP] = {
		[VM_STATE_STOPPED] = "the VM has already stopped",
	},
	[CONTROL_OP_SNAPSHOT] = {
		[VM_STATE_CONFIGURING] = "the VM has not started yet",
		[VM_STATE_RUNNING] = "the VM is running: pause it first with PATCH /vm {\"state\": \"paused\"}",
		[VM_STATE_STOPPED] = "the VM has stopped",
	},
	[CONTROL_OP_CONSOLE] = {
		[VM_STATE_CONFIGURING] = "the VM has not started yet",
		[VM_STATE_STOPPED] = "the VM has stopped",
	},
};

const char *control_state_name(enum vm_state s)
{
	return s < VM_STATE__COUNT ? state_names[s] : "unknown";
}

const char *control_op_name(enum control_op op)
{
	return op < CONTROL_OP__COUNT ? op_names[op] : "unknown";
}

bool control_op_allowed(enum control_op op, enum vm_state s, const char **why)
{
	const char *r;

	if (op >= CONTROL_OP__COUNT || s >= VM_STATE__COUNT) {
		if (why)
			*why = "unknown operation or state";
		return false;
	}
	r = rules[op][s];
	if (why)
		*why = r;
	return r == NULL;
}

/* ---- the control object ---- */

struct control_drive {
	char id[CONTROL_ID_MAX];
	char *path, *serial;
	struct vm_disk disk;
};

struct control_net {
	char id[CONTROL_ID_MAX];
	char *spec;
};

struct control {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* vm handed over, aborted, or the shutdown timer ends */
	enum vm_state state;
	struct vm *vm;       /* running or paused VM (owned by the main thread) */
	bool vm_ready;       /* built by the API, not yet taken by control_wait_vm() */
	bool aborted;
	int exit_status;     /* enum vm_exit once stopped, -1 before */
	uint64_t started_ns;

	/* Pending configuration (configuring state). */
	unsigned vcpus;
	uint64_t mem;
	int agent; /* enum vm_agent */
	int huge_pages; /* enum vm_huge_pages */
	char *kernel, *initrd, *cmdline, *bios;
	struct control_drive drives[VM_MAX_DISKS];
	unsigned ndrives;
	struct control_net nets[VM_MAX_NETS];
	unsigned nnets;
	int console_in, console_out;
	/* vm_new() keeps pointers into these: they live as long as the control object. */
	struct vm_disk cfg_disks[VM_MAX_DISKS];
	const char *cfg_nets[VM_MAX_NETS];

	/* Clones: NIC i's MAC in the snapshot, when the restore gave the NIC another one. */
	bool mac_changed[VM_MAX_NETS];
	uint8_t snap_mac[VM_MAX_NETS][6];

	/* control_agent_ping() callers waiting without the lock; the VM outlives them. */
	unsigned agent_pings;

	pthread_t shutdown_thread;
	bool shutdown_started;
	uint64_t shutdown_deadline_ns;
};

static int set_str(char **dst, const char *src)
{
	char *d = NULL;

	if (src) {
		d = strdup(src);
		if (!d) {
			err_set("out of memory");
			return -ENOMEM;
		}
	}
	free(*dst);
	*dst = d;
	return 0;
}

int control_new(int console_in, int console_out, struct control **out)
{
	struct control *ctl = calloc(1, sizeof(*ctl));
	pthread_condattr_t ca;

	if (!ctl) {
		err_set("out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&ctl->lock, NULL);
	/* The shutdown timer waits for CLOCK_MONOTONIC deadlines (clock_ns). */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&ctl->cond, &ca);
	pthread_condattr_destroy(&ca);
	ctl->state = VM_STATE_CONFIGURING;
	ctl->exit_status = -1;
	ctl->vcpus = 1;
	ctl->mem = 512ULL << 20;
	ctl->console_in = console_in;
	ctl->console_out = console_out;
	*out = ctl;
	return 0;
}

void control_free(struct control *ctl)
{
	if (!ctl)
		return;
	pthread_mutex_lock(&ctl->lock);
	ctl->aborted = true;
	pthread_cond_broadcast(&ctl->cond);
	pthread_mutex_unlock(&ctl->lock);
	if (ctl->shutdown_started)
		pthread_join(ctl->shutdown_thread, NULL);
	free(ctl->kernel);
	free(ctl->initrd);
	free(ctl->cmdline);
	free(ctl->bios);
	for (unsigned i = 0; i < ctl->ndrives; i++) {
		free(ctl->drives[i].path);
		free(ctl->drives[i].serial);
	}
	for (unsigned i = 0; i < ctl->nnets; i++)
		free(ctl->nets[i].spec);
	pthread_cond_destroy(&ctl->cond);
	pthread_mutex_destroy(&ctl->lock);
	free(ctl);
}

enum vm_state control_state(struct control *ctl)
{
	enum vm_state s;

	pthread_mutex_lock(&ctl->lock);
	s = ctl->state;
	pthread_mutex_unlock(&ctl->lock);
	return s;
}

/* Lock held. -EPERM with the table's sentence when op is not allowed now. */
static int check(struct control *ctl, enum control_op op)
{
	const char *why;

	if (control_op_allowed(op, ctl->state, &why))
		return 0;
	err_set("cannot %s: %s (the VM is %s)", op_names[op], why, state_names[ctl->state]);
	return -EPERM;
}

int control_status(int err)
{
	switch (err) {
	case 0:
		return 200;
	case -EPERM:
	case -EINVAL:
	case -ENOSPC:
	case -EOPNOTSUPP:
	case -ENAMETOOLONG:
	case -EALREADY:
	case -EEXIST:
		return 400;
	case -ENOENT:
		return 404;
	default:
		return 500;
	}
}

int control_set_machine(struct control *ctl, unsigned vcpus, uint64_t mem_bytes)
{
	int ret;

	pthread_mutex_lock(&ctl->lock);
	ret = check(ctl, CONTROL_OP_CONFIGURE);
	if (!ret && (vcpus < 1 || vcpus > VM_MAX_CPUS)) {
		err_set("vcpu_count %u is out of range: kumo runs 1 to %d vCPUs", vcpus, VM_MAX_CPUS);
		ret = -EINVAL;
	}
	if (!ret && (mem_bytes < VM_MIN_MEM || mem_bytes > VM_MAX_MEM || mem_bytes % 4096)) {
		err_set("mem_size_mib %" PRIu64 " is out of range: use 16 MiB to 1 TiB", mem_bytes >> 20);
		ret = -EINVAL;
	}
	if (!ret) {
		ctl->vcpus = vcpus;
		ctl->mem = mem_bytes;
	}
	pthread_mutex_unlock(&ctl->lock);
	return ret;
}

static const char *const agent_names[] = {
    [VM_AGENT_AUTO] = "auto", [VM_AGENT_OFF] = "off", [VM_AGENT_ON] = "on"};

int control_agent_mode(const char *name)
{
	for (int i = 0; name && i < (int)ARRAY_SIZE(agent_names); i++)
		if (!strcmp(name, agent_names[i]))
			return i;
	err_set("agent '%s' is not auto, on or off", name ? name : "");
	return -EINVAL;
}

int control_set_agent(struct control *ctl, int mode)
{
	int ret;

	pthread_mutex_lock(&ctl->lock);
	ret = check(ctl, CONTROL_OP_CONFIGURE);
	if (!ret && mode != VM_AGENT_AUTO && mode != VM_AGENT_OFF && mode != VM_AGENT_ON) {
		err_set("agent mode %d is not auto, on or off", mode);
		ret = -EINVAL;
	}
	if (!ret)
		ctl->agent = mode;
	pthread_mutex_unlock(&ctl->lock);
	return ret;
}

static const char *const huge_pages_names[] = {[VM_HUGE_PAGES_NONE] = "none",
					       [VM_HUGE_PAGES_THP] = "thp"};

int control_huge_pages_mode(const char *name)
{
	for (int i = 0; name && i < (int)ARRAY_SIZE(huge_pages_names); i++)
		if (!strcmp(name, huge_pages_names[i]))
			return i;
	err_set("huge_pages '%s' is not none or thp", name ? name : "");
	return -EINVAL;
}

int control_set_huge_pages(struct control *ctl, int mode)
{
	int ret;

	pthread_mutex_lock(&ctl->lock);
	ret = check(ctl, CONTROL_OP_CONFIGURE);
	if (!ret && mode != VM_HUGE_PAGES_NONE && mode != VM_HUGE_PAGES_THP) {
		err_set("huge pages mode %d is not none or thp", mode);
		ret = -EINVAL;
	}
	if (!ret)
		ctl->huge_pages = mode;
	pthread_mutex_unlock(&ctl->lock);
	return ret;
}

int control_set_boot(struct control *ctl, const char *kernel, const char *initrd,
		     const char *cmdline, const char *bios)
{
	int ret;

	pthread_mutex_lock(&ctl->lock);
	ret = check(ctl, CONTROL_OP_CONFIGURE);
	if (!ret && !kernel && !bios) {
		err_set("boot-source needs kernel_image_path (or firmware_path)");
		ret = -EINVAL;
	}
	if (!ret)
		ret = set_str(&ctl->kernel, kernel);
	if (!ret)
		ret = set_str(&ctl->initrd, initrd);
	if (!ret)
		ret = set_str(&ctl->cmdline, cmdline);
	if (!ret)
		ret = set_str(&ctl->bios, bios);
	pthread_mutex_unlock(&ctl->lock);
	return ret;
}

static bool id_ok(const char *id)
{
	size_t n = strlen(id);

	if (!n || n >= CONTROL_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') ||
		      (id[i] >= '0' && id[i] <= '9') || id[i] == '_' || id[i] == '-'))
			return false;
	return true;
}

int control_set_drive(struct control *ctl, const char *id, const struct vm_disk *disk)
{
	struct control_drive *d = NULL;
	int ret;

	pthread_mutex_lock(&ctl->lock);
	ret = check(ctl, CONTROL_OP_CONFIGURE);
	if (!ret && !id_ok(id)) {
		err_set("drive id '%s' must be 1 to %d letters, digits, '-' or '_'", id,
			CONTROL_ID_MAX - 1);
		ret = -EINVAL;
	}
	if (!ret && (!disk->path || !*disk->path)) {
		err_set("drive '%s' needs path_on_host", id);
		ret = -EINVAL;
	}
	if (!ret && disk->serial && strlen(disk->serial) > 20) {
		err_set("drive '%s': serial is longer than 20 bytes", id);
		ret = -EINVAL;
	}
	for (unsigned i = 0; !ret && i < ctl->ndrives; i++)
		if (!strcmp(ctl->drives[i].id, id))
			d = &ctl->drives[i];
	if (!ret && !d) {
		if (ctl->ndrives + ctl->nnets >= VM_MAX_DISKS) {
			err_set("too many devices: the virt board has %d virtio slots", VM_MAX_DISKS);
			ret = -ENOSPC;
		} else {
			d = &ctl->drives[ctl->ndrives++];
			*d = (struct control_drive){0};
			snprintf(d->id, sizeof(d->id), "%s", id);
		}
	}
	if (!ret) {
		ret = set_str(&d->path, disk->path);
		if (!ret)
			ret = set_str(&d->serial, disk->serial);
		d->disk = *disk;
		d->disk.path = d->path;
		d->disk.serial = d->serial;
	}
	pthread_mutex_unlock(&ctl->lock);
	return ret;
}

int control_set_net(struct control *ctl, const char *id, const char *net_spec)
{
	struct control_net *n = NULL;
	int ret;

	pthread_mutex_lock(&ctl->lock);
	ret = check(ctl, CONTROL_OP_CONFIGURE);
	if (!ret && !id_ok(id)) {
		err_set("interface id '%s' must be 1 to %d letters, digits, '-' or '_'", id,
			CONTROL_ID_MAX - 1);
		ret = -EINVAL;
	}
	for (unsigned i = 0; !ret && i < ctl->nnets; i++)
		if (!strcmp(ctl->nets[i].id, id))
			n = &ctl->nets[i];
	if (!ret && !n) {
		if (ctl->ndrives + ctl->nnets >= VM_MAX_NETS) {
			err_set("too many devices: the virt board has %d virtio slots", VM_MAX_NETS);
			ret = -ENOSPC;
		} else {
			n = &ctl->nets[ctl->nnets++];
			*n = (struct control_net){0};
			snprintf(n->id, sizeof(n->id), "%s", id);
		}
	}
	if (!ret)
		ret = set_str(&n->spec, net_spec);
	pthread_mutex_unlock(&ctl->lock);
	return ret;
}

/* Lock held: the VM is built; the main thread takes it in control_wait_vm(). */
static void hand_over(struct control *ctl, struct vm *vm)
{
	ctl->vm = vm;
	ctl->vm_ready = true;
	ctl->state = VM_STATE_RUNNING;
	ctl->started_ns = clock_ns();
	pthread_cond_broadcast(&ctl->cond);
}

int control_start(struct control *ctl)
{
	struct vm_config cfg = {0};
	struct vm *vm = NULL;
	int ret;

	pthread_mutex_lock(&ctl->lock);
	ret = check(ctl, CONTROL_OP_START);
	if (ret)
		goto out;
	if (!ctl->kernel && !ctl->bios) {
		err_set("cannot start: no boot source (PUT /boot-source first)");
		ret = -EINVAL;
		goto out;
	}
	for (unsigned i = 0; i < ctl->ndrives; i++)
		ctl->cfg_disks[i] = ctl->drives[i].disk;
	for (unsigned i = 0; i < ctl->nnets; i++)
		ctl->cfg_nets[i] = ctl->nets[i].spec;
	cfg = (struct vm_config){.kernel = ctl->kernel, .initrd = ctl->initrd,
				 .append = ctl->cmdline, .bios = ctl->bios, .mem = ctl->mem,
				 .ncpus = ctl->vcpus, .console_in = ctl->console_in,
				 .console_out = ctl->console_out, .disks = ctl->cfg_disks,
				 .ndisks = ctl->ndrives, .nets = ctl->cfg_nets, .nnets = ctl->nnets,
				 .agent = ctl->agent, .huge_pages = ctl->huge_pages};
	ret = vm_new(&cfg, &vm);
	if (ret) {
		vm_free(vm);
		if (ret != -ENOMEM && ret != -EPERM)
			ret = -EINVAL; /* a bad file, size or option: the client's to fix */
		goto out;
	}
	hand_over(ctl, vm);
out:
	pthread_mutex_unlock(&ctl->lock);
	return ret;
}

/*
 * Lock held. A clone whose NIC got a new MAC: the device has it, but the guest's driver keeps
 * the MAC it read at probe time, so the guest agent is asked to change the interface.
 */
static void queue_mac_changes(struct control *ctl, struct vm *vm, const struct vm_config *snap,
			      const struct vm_config *cfg)
{
	struct agent *ag = vm_agent(vm);

	for (unsigned i = 0; i < cfg->nnets && i < VM_MAX_NETS; i++) {
		uint8_t old[6], new[6];
		char olds[18], news[18];

		ctl->mac_changed[i] = false;
		if (vm_net_mac(snap, i, old) || vm_net_mac(cfg, i, new) || !memcmp(old, new, 6))
			continue;
		ctl->mac_changed[i] = true;
		memcpy(ctl->snap_mac[i], old, 6);
		agent_format_mac(old, olds);
		agent_format_mac(new, news);
		if (ag && !agent_set_mac(ag, i, old, new))
			log_info("NIC %u: MAC %s -> %s; the guest agent will be asked to change it", i,
				 olds, news);
		else if (!ag)
			log_warn("NIC %u: the clone's device has MAC %s, but the snapshot has no guest "
				 "agent channel: inside the guest the interface keeps %s",
				 i, news, olds);
	}
	if (ag)
		agent_probe(ag);
}

int control_restore(struct control *ctl, const char *dir, const struct vm_disk *disks,
		    unsigned ndisks, const char *const *nets, unsigned nnets)
{
	struct vm_config cfg = {0}, snap;
	struct vm *vm = NULL;
	int ret;

	pthread_mutex_lock(&ctl->lock);
	ret = check(ctl, CONTROL_OP_RESTORE);
	if (ret)
		goto out;
	ret = snapshot_read_config(dir, &cfg);
	if (ret)
		goto out;
	if ((ndisks && ndisks != cfg.ndisks) || (nnets && nnets != cfg.nnets)) {
		err_set("the snapshot has %u disks and %u network interfaces: a clone replaces all "
			"of them or none", cfg.ndisks, cfg.nnets);
		ret = -EINVAL;
		goto out;
	}
	snap = cfg;
	if (ndisks)
		cfg.disks = disks;
	if (nnets)
		cfg.nets = nets;
	cfg.console_in = ctl->console_in;
	cfg.console_out = ctl->console_out;
	ret = vm_new(&cfg, &vm);
	if (!ret)
		ret = snapshot_restore(vm, dir);
	if (ret) {
		vm_free(vm);
		goto out;
	}
	ctl->vcpus = cfg.ncpus;
	ctl->mem = cfg.mem;
	ctl->huge_pages = cfg.huge_pages;
	ctl->agent = cfg.agent; /* on or off: whether the snapshot's VM had the channel */
	/* Every restore may be one of many clones: a new VM generation reseeds the guest's RNG. */
	if (board_vmgenid_new_generation(vm_board(vm)))
		log_warn("%s: the restored guest keeps its VM generation ID", err_get());
	queue_mac_changes(ctl, vm, &snap, &cfg);
	hand_over(ctl, vm);
out:
	pthread_mutex_unlock(&ctl->lock);
	return ret;
}

struct vm *control_wait_vm(struct control *ctl)
{
	struct vm *vm = NULL;

	pthread_mutex_lock(&ctl->lock);
	while (!ctl->vm_ready && !ctl->aborted)
		pthread_cond_wait(&ctl->cond, &ctl->lock);
	if (ctl->vm_ready) {
		ctl->vm_ready = false;
		vm = ctl->vm;
	}
	pthread_mutex_unlock(&ctl->lock);
	return vm;
}

void control_abort(struct control *ctl)
{
	pthread_mutex_lock(&ctl->lock);
	ctl->aborted = true;
	if (ctl->state == VM_STATE_CONFIGURING)
		ctl->state = VM_STATE_STOPPED;
	pthread_cond_broadcast(&ctl->cond);
	pthread_mutex_unlock(&ctl->lock);
}

void control_attach(struct control *ctl, struct vm *vm)
{
	pthread_mutex_lock(&ctl->lock);
	ctl->vm = vm;
	ctl->state = VM_STATE_RUNNING;
	ctl->started_ns = clock_ns();
	if (vm) {
		const struct vm_config *c = vm_get_config(vm);

		ctl->vcpus = c->ncpus;
		ctl->mem = c->mem;
		ctl->huge_pages = c->huge_pages;
		set_str(&ctl->kernel, c->kernel);
		set_str(&ctl->initrd, c->initrd);
		set_str(&ctl->cmdline, c->append);
		set_str(&ctl->bios, c->bios);
	}
	pthread_mutex_unlock(&ctl->lock);
}

void control_vm_exited(struct control *ctl, int status)
{
	pthread_mutex_lock(&ctl->lock);
	ctl->vm = NULL;
	ctl->state = VM_STATE_STOPPED;
	ctl->exit_status = status;
	pthread_cond_broadcast(&ctl->cond);
	/*
	 * The caller frees the VM next: wait for pings still using its agent. vm_run() stopped
	 * the agent, which ends their waits (-ESHUTDOWN) at once.
	 */
	while (ctl->agent_pings)
		pthread_cond_wait(&ctl->cond, &ctl->lock);
	pthread_mutex_unlock(&ctl->lock);
}

int control_pause(struct control *ctl)
{
	int ret;

	pthread_mutex_lock(&ctl->lock);
	ret = check(ctl, CONTROL_OP_PAUSE);
	if (!ret) {
		ret = vm_pause(ctl->vm);
		if (!ret)
			ctl->state = VM_STATE_PAUSED;
		else
			err_set("cannot pause: the VM is stopping");
	}
	pthread_mutex_unlock(&ctl->lock);
	return ret;
}

int control_resume(struct control *ctl)
{
	int ret;

	pthread_mutex_lock(&ctl->lock);
	ret = check(ctl, CONTROL_OP_RESUME);
	if (!ret) {
		ret = vm_resume(ctl->vm);
		if (!ret)
			ctl->state = VM_STATE_RUNNING;
		else
			err_set("cannot resume: the VM is not paused");
	}
	pthread_mutex_unlock(&ctl->lock);
	return ret;
}

/* Waits ms on ctl->cond (lock held, released while waiting). False when the VM is gone. */
static bool wait_ms(struct control *ctl, unsigned ms)
{
	uint64_t until = clock_ns() + ms * 1000000ULL;
	struct timespec ts = {.tv_sec = (time_t)(until / 1000000000ULL),
			      .tv_nsec = (long)(until % 1000000000ULL)};

	while (ctl->vm && !ctl->aborted && clock_ns() < until)
		pthread_cond_timedwait(&ctl->cond, &ctl->lock, &ts);
	return ctl->vm && !ctl->aborted;
}

/*
 * The guest's power button on a serial console: a BREAK followed by a Magic SysRq key, the way
 * a terminal server asks Linux (drivers/tty/serial: uart_handle_break, CONFIG_MAGIC_SYSRQ_SERIAL)
 * — "s" emergency sync, "u" remount read-only, "o" power off, which ends in SBI SRST. A key is
 * sent only after the guest's driver consumed the break, so a kernel that is not listening
 * (still booting, console elsewhere) never sees stray characters. Lock held.
 */
static void sysrq_shutdown(struct control *ctl)
{
	static const char keys[] = "suo";

	for (const char *k = keys; *k; k++) {
		struct board *b = vm_board(ctl->vm);
		size_t room = board_console_room(b);
		unsigned waited = 0;

		while (!board_console_break(b)) {
			if (waited++ >= 100 || !wait_ms(ctl, 10))
				return;
			b = vm_board(ctl->vm);
			room = board_console_room(b);
		}
		for (waited = 0; board_console_room(b) != room; waited++) {
			if (waited >= 100 || !wait_ms(ctl, 10))
				return; /* nobody read the break: the kernel is not listening */
			b = vm_board(ctl->vm);
		}
		if (board_console_input(b, (const uint8_t *)k, 1) != 1 || !wait_ms(ctl, 300))
			return;
	}
}

static void *shutdown_timer(void *arg)
{
	struct control *ctl = arg;
	struct timespec ts;
	const struct vm_config *cfg;

	pthread_mutex_lock(&ctl->lock);
	cfg = ctl->vm ? vm_get_config(ctl->vm) : NULL;
	if (cfg && !cfg->virtio_console && (!cfg->append || strstr(cfg->append, "console=ttyS0")))
		sysrq_shutdown(ctl);
	ts.tv_sec = (time_t)(ctl->shutdown_deadline_ns / 1000000000ULL);
	ts.tv_nsec = (long)(ctl->shutdown_deadline_ns % 1000000000ULL);
	while (ctl->vm && !ctl->aborted && clock_ns() < ctl->shutdown_deadline_ns)
		pthread_cond_timedwait(&ctl->cond, &ctl->lock, &ts);
	if (ctl->vm) {
		if (ctl->state == VM_STATE_PAUSED)
			vm_resume(ctl->vm); /* let the threads see the stop */
		log_warn("the guest did not power off within the shutdown grace period: stopping it");
		vm_request_stop(ctl->vm, VM_EXIT_USER);
	}
	pthread_mutex_unlock(&ctl->lock);
	return NULL;
}

int control_shutdown(struct control *ctl, unsigned grace_ms)
{
	int ret;

	pthread_mutex_lock(&ctl->lock);
	ret = check(ctl, CONTROL_OP_SHUTDOWN);
	if (!ret && ctl->shutdown_started) {
		err_set("cannot shutdown: a shutdown is already under way");
		ret = -EALREADY;
	}
	if (!ret && ctl->state == VM_STATE_PAUSED) {
		/* The guest must run to shut down. */
		if (!vm_resume(ctl->vm))
			ctl->state = VM_STATE_RUNNING;
	}
	if (!ret) {
		ctl->shutdown_deadline_ns = clock_ns() + (uint64_t)grace_ms * 1000000ULL;
		ret = -pthread_create(&ctl->shutdown_thread, NULL, shutdown_timer, ctl);
		if (ret)
			err_set("cannot start the shutdown timer: %s", strerror(-ret));
		else
			ctl->shutdown_started = true;
	}
	pthread_mutex_unlock(&ctl->lock);
	return ret;
}

int control_stop(struct control *ctl)
{
	int ret;

	pthread_mutex_lock(&ctl->lock);
	ret = check(ctl, CONTROL_OP_STOP);
	if (!ret && ctl->state == VM_STATE_CONFIGURING) {
		ctl->state = VM_STATE_STOPPED;
		ctl->aborted = true;
		pthread_cond_broadcast(&ctl->cond);
	} else if (!ret) {
		vm_request_stop(ctl->vm, VM_EXIT_USER);
		if (ctl->state == VM_STATE_PAUSED)
			vm_resume(ctl->vm);
	}
	pthread_mutex_unlock(&ctl->lock);
	return ret;
}

int control_snapshot(struct control *ctl, const char *dir, bool diff, bool compress)
{
	int ret;

	pthread_mutex_lock(&ctl->lock);
	ret = check(ctl, CONTROL_OP_SNAPSHOT);
	if (!ret)
		ret = snapshot_save(ctl->vm, dir, diff, compress);
	pthread_mutex_unlock(&ctl->lock);
	return ret;
}

int control_console_read(struct control *ctl, uint64_t *pos, uint8_t *buf, size_t n, size_t *got)
{
	int ret;

	pthread_mutex_lock(&ctl->lock);
	ret = check(ctl, CONTROL_OP_CONSOLE);
	*got = ret ? 0 : vm_console_read(ctl->vm, pos, buf, n);
	pthread_mutex_unlock(&ctl->lock);
	return ret;
}

int control_console_write(struct control *ctl, const uint8_t *buf, size_t n, size_t *took)
{
	int ret;

	pthread_mutex_lock(&ctl->lock);
	ret = check(ctl, CONTROL_OP_CONSOLE);
	*took = ret ? 0 : vm_console_write(ctl->vm, buf, n);
	pthread_mutex_unlock(&ctl->lock);
	return ret;
}

int control_agent_ping(struct control *ctl, unsigned timeout_ms, uint64_t *rtt_us)
{
	struct agent *ag;
	int ret;

	pthread_mutex_lock(&ctl->lock);
	ret = check(ctl, CONTROL_OP_CONSOLE);
	if (!ret && !vm_agent(ctl->vm)) {
		err_set("the VM has no guest agent channel (it needs a network interface and a free "
			"virtio slot when it starts)");
		ret = -ENOENT;
	}
	if (!ret && vm_is_paused(ctl->vm)) {
		err_set("cannot ping the guest agent: the VM is paused");
		ret = -EPERM;
	}
	if (ret) {
		pthread_mutex_unlock(&ctl->lock);
		return ret;
	}
	/*
	 * The wait (up to timeout_ms) happens without the lock, so every other API call is
	 * answered meanwhile; agent_pings keeps the VM, and so its agent, from being freed
	 * (control_vm_exited waits for it to drop to 0).
	 */
	ag = vm_agent(ctl->vm);
	ctl->agent_pings++;
	pthread_mutex_unlock(&ctl->lock);
	ret = agent_ping(ag, timeout_ms, rtt_us);
	pthread_mutex_lock(&ctl->lock);
	if (!--ctl->agent_pings)
		pthread_cond_broadcast(&ctl->cond);
	pthread_mutex_unlock(&ctl->lock);
	return ret;
}

/* ---- GET /vm ---- */

/* Lock held: the guest agent channel and what it knows about each NIC's MAC in the guest. */
static json_t *describe_agent(struct control *ctl)
{
	const struct vm_config *c = vm_get_config(ctl->vm);
	struct agent *ag = vm_agent(ctl->vm);
	struct agent_info ai = {0};
	json_t *o = json_object(), *nics = json_array(), *ifs = json_object();
	char mac[18];

	if (ag) {
		agent_info(ag, &ai);
		json_object_set_new(o, "state", json_string(agent_state_name(ai.state)));
		json_object_set_new(o, "version", ai.version[0] ? json_string(ai.version) : json_null());
		json_object_set_new(o, "last_seen_ms",
				    ai.last_seen_ns ? json_integer((json_int_t)((clock_ns() -
										 ai.last_seen_ns) /
										1000000))
						    : json_null());
		for (unsigned i = 0; i < ai.nifaces; i++) {
			agent_format_mac(ai.ifaces[i].mac, mac);
			json_object_set_new(ifs, ai.ifaces[i].name, json_string(mac));
		}
		json_object_set_new(o, "interfaces", ifs);
	} else {
		json_decref(ifs);
		json_object_set_new(o, "state", json_string("absent"));
	}
	for (unsigned i = 0; i < c->nnets && i < VM_MAX_NETS; i++) {
		struct agent_nic_info ni = {0};
		uint8_t dev[6];
		const uint8_t *guest = dev;
		const char *sync = "none";

		if (vm_net_mac(c, i, dev))
			continue;
		if (ag && !agent_nic_info(ag, i, &ni) && ni.state != AGENT_MAC_NONE) {
			sync = agent_mac_state_name(ni.state);
			guest = ni.state == AGENT_MAC_DONE ? ni.new_mac : ni.old_mac;
		} else if (ctl->mac_changed[i]) {
			sync = "no_agent";
			guest = ctl->snap_mac[i];
		}
		json_t *n = json_object();
		agent_format_mac(dev, mac);
		json_object_set_new(n, "index", json_integer(i));
		json_object_set_new(n, "mac", json_string(mac));
		agent_format_mac(guest, mac);
		json_object_set_new(n, "guest_mac", json_string(mac));
		json_object_set_new(n, "mac_change", json_string(sync));
		if (ni.detail[0])
			json_object_set_new(n, "detail", json_string(ni.detail));
		json_array_append_new(nics, n);
	}
	json_object_set_new(o, "nics", nics);
	return o;
}

static const char *hsm_name(int st)
{
	static const char *const names[] = {"started", "stopped", "start_pending", "stop_pending",
					    "suspended", "suspend_pending", "resume_pending"};

	return st >= 0 && st < (int)ARRAY_SIZE(names) ? names[st] : "unknown";
}

/*
 * The vCPU state machine, derived from the VM state, the thread and the hart's HSM state:
 * created (no thread yet) -> running | halted-by-HSM (stopped) -> paused (parked) -> exited.
 */
static const char *vcpu_state(enum vm_state s, const struct vm_vcpu_info *vi)
{
	if (s == VM_STATE_STOPPED)
		return "exited";
	if (vi->parked)
		return "paused";
	if (!vi->thread_running)
		return "created";
	if (vi->hsm_state == SBI_HSM_STOPPED)
		return "stopped";
	if (vi->hsm_state == SBI_HSM_SUSPENDED)
		return "suspended";
	return "running";
}

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

json_t *control_describe(struct control *ctl)
{
	json_t *o = json_object(), *cfg = json_object(), *drives = json_array(),
	       *nets = json_array(), *vcpus = json_array();

	pthread_mutex_lock(&ctl->lock);
	json_object_set_new(o, "state", json_string(state_names[ctl->state]));
	json_object_set_new(cfg, "machine-config",
			    json_pack("{s:I,s:I,s:s,s:s}", "vcpu_count", (json_int_t)ctl->vcpus,
				      "mem_size_mib", (json_int_t)(ctl->mem >> 20), "agent",
				      agent_names[ctl->agent], "huge_pages",
				      huge_pages_names[ctl->huge_pages]));
	json_object_set_new(cfg, "boot-source",
			    json_pack("{s:o,s:o,s:o,s:o}", "kernel_image_path",
				      str_or_null(ctl->kernel), "initrd_path", str_or_null(ctl->initrd),
				      "boot_args", str_or_null(ctl->cmdline), "firmware_path",
				      str_or_null(ctl->bios)));
	for (unsigned i = 0; i < ctl->ndrives; i++)
		json_array_append_new(
			drives, json_pack("{s:s,s:s,s:b,s:o}", "drive_id", ctl->drives[i].id,
					  "path_on_host", ctl->drives[i].path, "is_read_only",
					  ctl->drives[i].disk.readonly, "serial",
					  str_or_null(ctl->drives[i].serial)));
	for (unsigned i = 0; i < ctl->nnets; i++)
		json_array_append_new(nets, json_pack("{s:s,s:s}", "iface_id", ctl->nets[i].id,
						      "spec", ctl->nets[i].spec));
	json_object_set_new(cfg, "drives", drives);
	json_object_set_new(cfg, "network-interfaces", nets);
	json_object_set_new(o, "config", cfg);
	if (ctl->vm) {
		for (unsigned i = 0; i < vm_ncpus(ctl->vm); i++) {
			struct vm_vcpu_info vi;

			if (vm_vcpu_info(ctl->vm, i, &vi))
				continue;
			json_array_append_new(vcpus,
					      json_pack("{s:I,s:s,s:s}", "id", (json_int_t)i, "state",
							vcpu_state(ctl->state, &vi), "hsm",
							hsm_name(vi.hsm_state)));
		}
		json_object_set_new(o, "uptime_ms",
				    json_integer((json_int_t)(vm_uptime_ns(ctl->vm) / 1000000)));
		json_object_set_new(o, "agent", describe_agent(ctl));
		{
			uint8_t id[16];
			char hexid[33];

			board_vmgenid(vm_board(ctl->vm), id);
			for (unsigned i = 0; i < 16; i++)
				snprintf(hexid + 2 * i, 3, "%02x", id[i]);
			json_object_set_new(o, "generation_id", json_string(hexid));
		}
	}
	json_object_set_new(o, "vcpus", vcpus);
	if (ctl->exit_status >= 0)
		json_object_set_new(o, "exit_status", json_integer(ctl->exit_status));
	pthread_mutex_unlock(&ctl->lock);
	return o;
}

/* ---- metrics ---- */

/* Lock held. Calls emit() for each sample: name, labels (or ""), value. */
struct metric_sink {
	void (*emit)(struct metric_sink *s, const char *name, const char *help, const char *labels,
		     double value);
	json_t *json;    /* JSON sink */
	char *text;      /* Prometheus sink */
	size_t len, cap;
	const char *last_name;
	const char *only;          /* Prometheus: emit only this family in this pass */
	const char *families[64];  /* Prometheus: family names in first-seen order */
	unsigned nfamilies;
	bool listing;              /* Prometheus: this pass only lists the families */
	bool failed;
};

static void collect(struct control *ctl, struct metric_sink *s)
{
	struct vm *vm = ctl->vm;
	char lab[128];
	uint64_t guest_errors = guest_error_count();

	for (int st = 0; st < VM_STATE__COUNT; st++) {
		snprintf(lab, sizeof(lab), "state=\"%s\"", state_names[st]);
		s->emit(s, "kumo_vm_state", "1 for the VM's current lifecycle state", lab,
			ctl->state == (enum vm_state)st);
	}
	s->emit(s, "kumo_guest_errors_total", "guest mistakes logged (bad MMIO, bad rings, ...)", "",
		(double)guest_errors);
	if (!vm)
		return;
	s->emit(s, "kumo_vm_uptime_seconds", "time since the vCPUs started", "",
		vm_uptime_ns(vm) / 1e9);
	for (unsigned i = 0; i < vm_ncpus(vm); i++) {
		struct vm_vcpu_info vi;

		if (vm_vcpu_info(vm, i, &vi))
			continue;
		snprintf(lab, sizeof(lab), "vcpu=\"%u\"", i);
		s->emit(s, "kumo_vcpu_instructions_total", "guest instructions retired", lab,
			(double)vi.instret);
		s->emit(s, "kumo_vcpu_cpu_seconds_total", "host CPU time of the vCPU thread", lab,
			vi.cpu_ns / 1e9);
		s->emit(s, "kumo_vcpu_traps_total", "exceptions taken by the guest", lab,
			(double)vi.traps);
		s->emit(s, "kumo_vcpu_interrupts_total", "interrupts taken by the guest", lab,
			(double)vi.interrupts);
		s->emit(s, "kumo_vcpu_tlb_hits_total", "software TLB hits", lab, (double)vi.tlb_hits);
		s->emit(s, "kumo_vcpu_tlb_misses_total", "software TLB misses", lab,
			(double)vi.tlb_misses);
		s->emit(s, "kumo_vcpu_decode_cache_hits_total", "decoded-instruction cache hits", lab,
			(double)vi.dcache_hits);
		s->emit(s, "kumo_vcpu_decode_cache_misses_total", "decoded-instruction cache misses",
			lab, (double)vi.dcache_misses);
		s->emit(s, "kumo_vcpu_decode_cache_bytes", "host memory the decode cache holds", lab,
			(double)vi.dcache_bytes);
		s->emit(s, "kumo_vcpu_code_bytes", "translated code held in the code buffer", lab,
			(double)vi.code_bytes);
		for (unsigned r = 1; r < ACCEL_EXIT__COUNT; r++) {
			snprintf(lab, sizeof(lab), "vcpu=\"%u\",reason=\"%s\"", i, accel_exit_name(r));
			s->emit(s, "kumo_vcpu_exits_total", "vcpu_run() returns by exit reason", lab,
				(double)vi.exits[r]);
		}
		for (unsigned e = 0; e < SBI_STAT_EXTS; e++) {
			snprintf(lab, sizeof(lab), "vcpu=\"%u\",extension=\"%s\"", i, sbi_ext_name(e));
			s->emit(s, "kumo_vcpu_sbi_calls_total", "SBI calls served by extension", lab,
				(double)vi.sbi_calls[e]);
		}
	}
	for (unsigned d = 0; d < vm_nvirtio(vm); d++) {
		struct vm_dev_info di;

		if (vm_dev_info(vm, d, &di))
			continue;
		snprintf(lab, sizeof(lab), "slot=\"%u\",device=\"%s\"", d, di.name);
		s->emit(s, "kumo_device_requests_total", "virtio requests completed", lab,
			(double)di.requests);
		s->emit(s, "kumo_device_read_bytes_total", "bytes read from the host back end", lab,
			(double)di.bytes_read);
		s->emit(s, "kumo_device_written_bytes_total", "bytes written to the host back end", lab,
			(double)di.bytes_written);
		s->emit(s, "kumo_device_errors_total", "requests that failed", lab, (double)di.errors);
		s->emit(s, "kumo_device_notifications_total", "queue notifications from the guest", lab,
			(double)di.notifications);
		s->emit(s, "kumo_device_interrupts_total", "interrupts raised", lab,
			(double)di.interrupts);
		s->emit(s, "kumo_device_needs_reset_total", "times the device needed a reset", lab,
			(double)di.needs_reset);
	}
}

/* JSON: {"name": value} or {"name": [{"labels": {...}, "value": v}, ...]} per metric. */
static void emit_json(struct metric_sink *s, const char *name, const char *help, const char *labels,
		      double value)
{
	json_t *v = value == (double)(json_int_t)value ? json_integer((json_int_t)value)
						       : json_real(value);

	if (!*labels) {
		json_object_set_new(s->json, name, v);
		return;
	}
	json_t *arr = json_object_get(s->json, name), *lab = json_object();
	char buf[128], *save = NULL, *kv;

	if (!arr) {
		arr = json_array();
		json_object_set_new(s->json, name, arr);
	}
	snprintf(buf, sizeof(buf), "%s", labels);
	for (kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		size_t n;

		if (!eq)
			continue;
		*eq = '\0';
		n = strlen(eq + 1);
		if (n >= 2) {
			eq[n] = '\0'; /* strip the quotes */
			json_object_set_new(lab, kv, json_string(eq + 2));
		}
	}
	json_array_append_new(arr, json_pack("{s:o,s:o}", "labels", lab, "value", v));
}

static void text_add(struct metric_sink *s, const char *fmt, ...) KUMO_PRINTF(2, 3);
static void text_add(struct metric_sink *s, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (s->failed)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(s->text + s->len, s->cap - s->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			s->failed = true;
			return;
		}
		if ((size_t)n < s->cap - s->len) {
			s->len += (size_t)n;
			return;
		}
		char *t = realloc(s->text, s->cap * 2 + (size_t)n);

		if (!t) {
			s->failed = true;
			return;
		}
		s->text = t;
		s->cap = s->cap * 2 + (size_t)n;
	}
}

/* Prometheus text exposition format 0.0.4: HELP/TYPE once per family, then samples. */
static void emit_text(struct metric_sink *s, const char *name, const char *help, const char *labels,
		      double value)
{
	if (s->listing) {
		for (unsigned i = 0; i < s->nfamilies; i++)
			if (!strcmp(s->families[i], name))
				return;
		if (s->nfamilies < ARRAY_SIZE(s->families))
			s->families[s->nfamilies++] = name;
		return;
	}
	if (strcmp(name, s->only))
		return;
	if (!s->last_name || strcmp(s->last_name, name)) {
		size_t n = strlen(name);
		bool counter = n > 6 && !strcmp(name + n - 6, "_total");

		text_add(s, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
			 counter ? "counter" : "gauge");
		s->last_name = name;
	}
	if (*labels)
		text_add(s, "%s{%s} %.17g\n", name, labels, value);
	else
		text_add(s, "%s %.17g\n", name, value);
}

json_t *control_metrics_json(struct control *ctl)
{
	struct metric_sink s = {.emit = emit_json, .json = json_object()};

	pthread_mutex_lock(&ctl->lock);
	collect(ctl, &s);
	pthread_mutex_unlock(&ctl->lock);
	return s.json;
}

char *control_metrics_prometheus(struct control *ctl)
{
	struct metric_sink s = {.emit = emit_text, .cap = 4096};

	s.text = malloc(s.cap);
	if (!s.text)
		return NULL;
	s.text[0] = '\0';
	pthread_mutex_lock(&ctl->lock);
	/*
	 * A family's samples must be contiguous, and collect() emits per vCPU: list the families
	 * in one pass, then emit one family per pass.
	 */
	s.listing = true;
	collect(ctl, &s);
	s.listing = false;
	for (unsigned i = 0; i < s.nfamilies; i++) {
		s.only = s.families[i];
		collect(ctl, &s);
	}
	pthread_mutex_unlock(&ctl->lock);
	if (s.failed) {
		free(s.text);
		return NULL;
	}
	return s.text;
}
