/*
 * kumo.c - the `kumo` command: `kumo run` boots one VM in this process; `kumo image pull`
 * fetches the default Debian guest. The only place in kumo that calls exit().
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devices/backend/net.h"
#include "kumo/api.h"
#include "kumo/base.h"
#include "kumo/control.h"
#include "kumo/vm.h"

#define KUMO_VERSION "0.1.0"
#define DEFAULT_APPEND "console=ttyS0"

static struct vm *running_vm;
static struct control *running_ctl; /* set while waiting for the API to configure a VM */

int pool_cli_main(int argc, char **argv); /* src/cmd/pool_cli.c */
int vm_cli_main(int argc, char **argv);   /* src/cmd/vm_cli.c */

static void usage(FILE *f)
{
	fputs("usage: kumo run [options]          boot a virtual machine\n"
	      "       kumo image pull              fetch the default Debian riscv64 guest\n"
	      "       kumo vm start|pause|resume|stop|shutdown|snapshot|restore|metrics|status|configure\n"
	      "                                    drive a VM through its control API (kumo vm --help)\n"
	      "       kumo version\n"
	      "\n"
	      "compute pool (docs/pool.md):\n"
	      "       kumo controller [--db URL] [--listen ADDR:PORT]   REST API + scheduler\n"
	      "       kumo agent --name N --state-dir D [--listen ADDR:PORT]   host agent\n"
	      "       kumo up                      controller + local agent on this machine\n"
	      "       kumo server create|list|show|delete|console   (--json for JSON)\n"
	      "       kumo host list|enable|disable|token create, kumo flavor list|create|delete\n"
	      "       kumo image list|create, kumo group create, kumo tenant list|create\n"
	      "       kumo usage [--start S] [--end S]\n"
	      "\n"
	      "kumo run options:\n"
	      "  --kernel FILE      Linux Image or ELF (with --bios: any next-stage binary)\n"
	      "  --initrd FILE      initial ramdisk\n"
	      "  --append STR       kernel command line (default \"" DEFAULT_APPEND "\")\n"
	      "  --mem SIZE         guest RAM, e.g. 512M, 2G; a plain number is MiB (default 512M)\n"
	      "  --cpus N           number of vCPUs, 1.." "64" " (default 1)\n"
	      "  --bios FILE|none   M-mode firmware such as OpenSBI; none (default): kumo\n"
	      "                     serves SBI v2.0 itself and enters the kernel in S-mode\n"
	      "  --default-guest    boot the cached default Debian guest (see kumo image pull)\n"
	      "  --stats            print instructions, MIPS, exits and TLB hit rates at exit\n"
	      "  --disk path=FILE[,readonly=on][,serial=STR][,direct=on][,discard=on]\n"
	      "                     virtio-blk disk on a raw image (repeatable, up to 8 devices)\n"
	      "  --net user[,hostfwd=tcp|udp:[HOSTADDR]:PORT-[GUESTADDR]:PORT][,mac=MAC]\n"
	      "                     virtio-net with user-mode networking (libslirp): DHCP gives\n"
	      "                     the guest 10.0.2.15, the host is 10.0.2.2 (repeatable)\n"
	      "  --net tap,ifname=NAME[,mac=MAC]\n"
	      "                     virtio-net on an existing TAP interface\n"
	      "  --rng              virtio-rng entropy device fed by the host's getrandom()\n"
	      "  --console serial|virtio\n"
	      "                     where host input goes: the UART (default) or virtio-console\n"
	      "                     (hvc0; default command line \"console=ttyS0 console=hvc0\");\n"
	      "                     --vconsole is --console virtio\n"
	      "  --api-sock PATH    serve the control API (docs/api.md) on a Unix socket; without\n"
	      "                     --kernel the VM waits to be configured and started through it\n"
	      "  --config FILE      VM configuration as JSON (same bodies as the API, docs/api.md)\n"
	      "  --restore DIR      continue a snapshot taken with PUT /snapshot/create; with\n"
	      "                     --disk/--net: a clone with new disk files / interfaces\n"
	      "  --agent auto|on|off\n"
	      "                     guest agent channel, a second virtio-console (docs/guest-agent.md);\n"
	      "                     auto (default): on when the VM has a NIC and a free virtio slot\n"
	      "  --hugepages        back guest RAM with transparent huge pages (madvise); off by\n"
	      "                     default: faster host TLB for large long-lived working sets, but\n"
	      "                     each first touch zeroes 2 MiB (slower boots and fresh memory)\n"
	      "  -v, --verbose      more log output (repeat for debug)\n"
	      "\n"
	      "Console: the guest's serial port on stdin/stdout; Ctrl-A x quits, Ctrl-A h helps.\n"
	      "Exit status: 0 guest powered off, 1 error, 2 guest rebooted, 3 guest failure,\n"
	      "4 stopped from the host (Ctrl-A x, SIGINT, SIGTERM).\n",
	      f);
}

/*
 * SIGINT/SIGTERM/SIGHUP are blocked in every thread and taken by this one with sigwait(), so
 * stopping the VM (which takes locks and kicks vCPUs) never runs inside a signal handler that
 * may have interrupted a thread holding one of those locks.
 */
static pthread_mutex_t running_lock = PTHREAD_MUTEX_INITIALIZER; /* guards running_vm/_ctl */
static sigset_t stop_signals;

static void *signal_thread(void *unused)
{
	for (;;) {
		int sig;

		if (sigwait(&stop_signals, &sig))
			continue;
		pthread_mutex_lock(&running_lock);
		if (running_vm)
			vm_request_stop(running_vm, VM_EXIT_USER);
		else if (running_ctl)
			control_abort(running_ctl);
		pthread_mutex_unlock(&running_lock);
	}
	return NULL;
}

static void set_running(struct vm *vm, struct control *ctl)
{
	pthread_mutex_lock(&running_lock);
	running_vm = vm;
	running_ctl = ctl;
	pthread_mutex_unlock(&running_lock);
}

/* Call before any thread is created: they all inherit the blocked mask. */
static int take_stop_signals(void)
{
	pthread_t t;

	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGHUP);
	if (pthread_sigmask(SIG_BLOCK, &stop_signals, NULL))
		return -1;
	if (pthread_create(&t, NULL, signal_thread, NULL))
		return -1;
	pthread_detach(t);
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

static int die(const char *fmt, const char *arg)
{
	fprintf(stderr, "kumo: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	return VM_EXIT_ERROR;
}

/* Directory where the default guest is cached (guest/debian-image.sh writes it). */
static int default_guest_dir(char *buf, size_t len)
{
	const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
	int n;

	if (xdg && *xdg)
		n = snprintf(buf, len, "%s/kumo/guest/debian-trixie", xdg);
	else if (home && *home)
		n = snprintf(buf, len, "%s/.cache/kumo/guest/debian-trixie", home);
	else
		return -ENOENT;
	return n > 0 && (size_t)n < len ? 0 : -ENAMETOOLONG;
}

/* Finds files shipped beside the binary (build/kumo -> ../guest/debian-image.sh). */
static int find_script(const char *argv0, const char *rel, char *out, size_t len)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	const char *roots[] = {"/..", "/../share/kumo", ""};

	(void)argv0;
	if (n <= 0)
		return -ENOENT;
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	if (slash)
		*slash = '\0';
	for (unsigned i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
		int w = snprintf(out, len, "%s%s/%s", self, roots[i], rel);

		if (w > 0 && (size_t)w < len && !access(out, R_OK))
			return 0;
	}
	return -ENOENT;
}

static int cmd_image(int argc, char **argv)
{
	char script[PATH_MAX];

	if (argc < 2 || strcmp(argv[1], "pull") != 0) {
		fprintf(stderr, "usage: kumo image pull\n");
		return VM_EXIT_ERROR;
	}
	if (find_script(argv[0], "guest/debian-image.sh", script, sizeof(script)))
		return die("%s", "cannot find guest/debian-image.sh next to the kumo binary");
	execlp("bash", "bash", script, (char *)NULL);
	return die("cannot run bash: %s", strerror(errno));
}

/* Parses an on/off value of a --disk key; -1 when it is neither. */
static int parse_bool(const char *v)
{
	if (!strcmp(v, "on") || !strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "1"))
		return 1;
	if (!strcmp(v, "off") || !strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "0"))
		return 0;
	return -1;
}

/*
 * --disk path=FILE[,readonly=on][,serial=STR][,direct=on][,discard=on]: splits `arg` (kept
 * alive by argv) in place. Prints one error line and returns false on bad input.
 */
static bool parse_disk(char *arg, struct vm_disk *d)
{
	char *save = NULL, *kv;

	*d = (struct vm_disk){0};
	for (kv = strtok_r(arg, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		int b;

		if (!eq) {
			fprintf(stderr, "kumo: --disk: '%s' is not KEY=VALUE (keys: path, readonly, "
					"serial, direct, discard)\n", kv);
			return false;
		}
		*eq = '\0';
		if (!strcmp(kv, "path")) {
			if (!eq[1]) {
				fprintf(stderr, "kumo: --disk: path= is empty\n");
				return false;
			}
			d->path = eq + 1;
			continue;
		}
		if (!strcmp(kv, "serial")) {
			if (strlen(eq + 1) > 20) {
				fprintf(stderr, "kumo: --disk: serial '%s' is longer than 20 bytes\n", eq + 1);
				return false;
			}
			d->serial = eq + 1;
			continue;
		}
		b = parse_bool(eq + 1);
		if (!strcmp(kv, "readonly") || !strcmp(kv, "direct") || !strcmp(kv, "discard")) {
			if (b < 0) {
				fprintf(stderr, "kumo: --disk: %s='%s' is not on or off\n", kv, eq + 1);
				return false;
			}
			if (!strcmp(kv, "readonly"))
				d->readonly = b;
			else if (!strcmp(kv, "direct"))
				d->direct = b;
			else
				d->discard = b;
			continue;
		}
		fprintf(stderr, "kumo: --disk: unknown key '%s' (keys: path, readonly, serial, direct, "
				"discard)\n", kv);
		return false;
	}
	if (!d->path) {
		fprintf(stderr, "kumo: --disk needs path=FILE\n");
		return false;
	}
	return true;
}

static bool is_file(const char *path)
{
	struct stat st;

	return !stat(path, &st) && S_ISREG(st.st_mode);
}

static int cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{"kernel", required_argument, NULL, 'k'}, {"initrd", required_argument, NULL, 'i'},
		{"append", required_argument, NULL, 'a'}, {"mem", required_argument, NULL, 'm'},
		{"cpus", required_argument, NULL, 'c'},   {"bios", required_argument, NULL, 'b'},
		{"default-guest", no_argument, NULL, 'D'}, {"stats", no_argument, NULL, 's'},
		{"disk", required_argument, NULL, 'd'},   {"rng", no_argument, NULL, 'r'},
		{"net", required_argument, NULL, 'n'},
		{"console", required_argument, NULL, 'C'}, {"vconsole", no_argument, NULL, 'V'},
		{"verbose", no_argument, NULL, 'v'},      {"help", no_argument, NULL, 'h'},
		{"api-sock", required_argument, NULL, 'A'}, {"config", required_argument, NULL, 'F'},
		{"restore", required_argument, NULL, 'R'}, {"agent", required_argument, NULL, 'G'},
		{"hugepages", no_argument, NULL, 'H'},
		{NULL, 0, NULL, 0},
	};
	static struct vm_disk disks[VM_MAX_DISKS];
	static const char *nets[VM_MAX_NETS];
	struct vm_config cfg = {.mem = 512ULL << 20, .ncpus = 1, .console_in = STDIN_FILENO,
				.console_out = STDOUT_FILENO};
	static char kernel[PATH_MAX], initrd[PATH_MAX];
	bool default_guest = false, agent_given = false;
	const char *api_sock = NULL, *config = NULL, *restore = NULL;
	struct control *ctl = NULL;
	struct api_server *srv = NULL;
	struct vm *vm = NULL;
	int c, ret;

	optind = 1;
	opterr = 0; /* one line of our own instead of getopt's message plus usage */
	while ((c = getopt_long(argc, argv, ":vh", opts, NULL)) != -1) {
		switch (c) {
		case 'k': cfg.kernel = optarg; break;
		case 'i': cfg.initrd = optarg; break;
		case 'a': cfg.append = optarg; break;
		case 'b': cfg.bios = strcmp(optarg, "none") ? optarg : NULL; break;
		case 'D': default_guest = true; break;
		case 's': cfg.stats = true; break;
		case 'v': log_level++; break;
		case 'r': cfg.rng = true; break;
		case 'V': cfg.virtio_console = true; break;
		case 'C':
			if (!strcmp(optarg, "virtio") || !strcmp(optarg, "hvc"))
				cfg.virtio_console = true;
			else if (!strcmp(optarg, "serial") || !strcmp(optarg, "uart"))
				cfg.virtio_console = false;
			else
				return die("--console '%s' is not serial or virtio", optarg);
			break;
		case 'd':
			if (cfg.ndisks == VM_MAX_DISKS) {
				fprintf(stderr, "kumo: too many --disk options: at most %d\n", VM_MAX_DISKS);
				return VM_EXIT_ERROR;
			}
			if (!parse_disk(optarg, &disks[cfg.ndisks]))
				return VM_EXIT_ERROR;
			cfg.ndisks++;
			cfg.disks = disks;
			break;
		case 'n': {
			struct net_spec spec;

			if (cfg.nnets == VM_MAX_NETS) {
				fprintf(stderr, "kumo: too many --net options: at most %d\n", VM_MAX_NETS);
				return VM_EXIT_ERROR;
			}
			if (net_spec_parse(optarg, &spec))
				return die("%s", err_get());
			nets[cfg.nnets++] = optarg;
			cfg.nets = nets;
			break;
		}
		case 'm':
			if (parse_size(optarg, &cfg.mem)) {
				return die("--mem '%s' is not a size (try 512M or 2G)", optarg);
			}
			/* A plain number means MiB, as QEMU's -m does. */
			if (strspn(optarg, "0123456789") == strlen(optarg)) {
				if (cfg.mem > (UINT64_MAX >> 20))
					return die("--mem '%s' is not a size (try 512M or 2G)", optarg);
				cfg.mem <<= 20;
			}
			break;
		case 'c': {
			char *end;
			long n;

			errno = 0;
			n = strtol(optarg, &end, 10);
			if (errno || *end || end == optarg || n < 1 || n > VM_MAX_CPUS) {
				fprintf(stderr, "kumo: --cpus '%s' is out of range: kumo runs 1 to %d vCPUs\n",
					optarg, VM_MAX_CPUS);
				return VM_EXIT_ERROR;
			}
			cfg.ncpus = (unsigned)n;
			break;
		}
		case 'A': api_sock = optarg; break;
		case 'F': config = optarg; break;
		case 'R': restore = optarg; break;
		case 'G': {
			int mode = control_agent_mode(optarg);

			if (mode < 0)
				return die("--agent '%s' is not auto, on or off", optarg);
			cfg.agent = mode;
			agent_given = true;
			break;
		}
		case 'H': cfg.huge_pages = VM_HUGE_PAGES_THP; break;
		case 'h': usage(stdout); return 0;
		case ':': return die("option %s needs a value (see kumo run --help)", argv[optind - 1]);
		default: return die("unknown option '%s' (see kumo run --help)", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return die("unexpected argument '%s' (see kumo run --help)", argv[optind]);
	if (default_guest) {
		char dir[PATH_MAX - 32];

		if (default_guest_dir(dir, sizeof(dir)))
			return die("%s", "cannot locate the cache directory: set HOME or XDG_CACHE_HOME");
		snprintf(kernel, sizeof(kernel), "%s/vmlinux", dir);
		snprintf(initrd, sizeof(initrd), "%s/initramfs.cpio.gz", dir);
		if (!is_file(kernel) || !is_file(initrd))
			return die("the default guest is not in %s: run `make image` or `kumo image pull`",
				   dir);
		if (!cfg.kernel)
			cfg.kernel = kernel;
		if (!cfg.initrd)
			cfg.initrd = initrd;
	}

	if ((config || restore) && (cfg.kernel || cfg.bios))
		return die("%s", "--config and --restore replace --kernel/--bios/--default-guest");
	if (config && restore)
		return die("%s", "--config and --restore cannot be combined");
	if (agent_given && restore)
		return die("%s", "--agent cannot be combined with --restore: the snapshot records "
				 "whether the VM has the agent channel");
	if (cfg.huge_pages != VM_HUGE_PAGES_NONE && restore)
		return die("%s", "--hugepages cannot be combined with --restore: the snapshot records "
				 "the machine configuration");
	if (take_stop_signals())
		return die("%s", "cannot set up signal handling");
	if (control_new(cfg.console_in, cfg.console_out, &ctl))
		return die("%s", err_get());

	ret = 0;
	if (config)
		ret = api_config_load(ctl, config);
	/* Over the file's machine-config "agent", for a VM built by --config or the API. */
	if (!ret && agent_given)
		ret = control_set_agent(ctl, cfg.agent);
	/* Likewise over "huge_pages". */
	if (!ret && cfg.huge_pages != VM_HUGE_PAGES_NONE)
		ret = control_set_huge_pages(ctl, cfg.huge_pages);
	if (!ret && api_sock)
		ret = api_server_start(api_sock, ctl, &srv);
	if (!ret && restore)
		ret = control_restore(ctl, restore, cfg.disks, cfg.ndisks, cfg.nets, cfg.nnets);
	else if (!ret && config)
		ret = control_start(ctl);
	if (ret)
		goto out_err;
	if (restore || config || (api_sock && !cfg.kernel && !cfg.bios)) {
		/* Built by control_restore/control_start, now or later from the API. */
		set_running(NULL, ctl);
		vm = control_wait_vm(ctl);
		set_running(NULL, NULL);
		if (!vm) {
			ret = VM_EXIT_USER;
			goto out;
		}
	} else {
		ret = vm_new(&cfg, &vm);
		if (ret) {
			vm_free(vm);
			vm = NULL;
			goto out_err;
		}
		control_attach(ctl, vm);
	}
	set_running(vm, NULL);
	ret = vm_run(vm);
	set_running(NULL, NULL);
	control_vm_exited(ctl, ret);
	vm_free(vm);
	if (ret == VM_EXIT_ERROR && *err_get())
		fprintf(stderr, "kumo: %s\n", err_get());
	goto out;
out_err:
	fprintf(stderr, "kumo: %s\n", *err_get() ? err_get() : strerror(-ret));
	ret = VM_EXIT_ERROR;
out:
	api_server_stop(srv);
	control_free(ctl);
	return ret;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return VM_EXIT_ERROR;
	}
	if (!strcmp(argv[1], "run"))
		return cmd_run(argc - 1, argv + 1);
	if (!strcmp(argv[1], "vm"))
		return vm_cli_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "image") && (argc < 3 || !strcmp(argv[2], "pull")))
		return cmd_image(argc - 1, argv + 1);
	static const char *const pool_cmds[] = {"controller", "agent", "up",	 "server", "host",
						"flavor",     "image", "usage", "tenant", "group"};
	for (unsigned i = 0; i < sizeof(pool_cmds) / sizeof(pool_cmds[0]); i++)
		if (!strcmp(argv[1], pool_cmds[i]))
			return pool_cli_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
		printf("kumo %s\n", KUMO_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "kumo: unknown command '%s' (try kumo help)\n", argv[1]);
	return VM_EXIT_ERROR;
}
