/*
 * qemu.c - the `qemu` driver: qemu-system-riscv64 -M virt, daemonized with its pid file in the
 * VM directory, serial console to console.log, and a QMP socket (qmp.sock) through which the
 * driver asks for query-status, system_powerdown and quit (QMP spec, docs/interop/qmp-spec).
 */
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "kumo/base.h"
#include "kumo/pool/pool.h"

static const char *qemu_bin(void)
{
	const char *b = getenv("KUMO_QEMU");

	return b && *b ? b : "/usr/bin/qemu-system-riscv64";
}

static int qemu_start(const char *dir, const struct pool_vm_spec *s, const char *kumo_bin)
{
	char mem[32], cpus[16], serial[600], qmp[600], pid[600];
	char *argv[32];
	int n = 0;

	if (!s->kernel || !*s->kernel)
		return -EINVAL;
	snprintf(mem, sizeof(mem), "%lldM", (long long)s->ram_mb);
	snprintf(cpus, sizeof(cpus), "%lld", (long long)s->vcpus);
	snprintf(serial, sizeof(serial), "file:%s/console.log", dir);
	snprintf(qmp, sizeof(qmp), "unix:%s/qmp.sock,server=on,wait=off", dir);
	snprintf(pid, sizeof(pid), "%s/pid", dir);
	argv[n++] = (char *)qemu_bin();
	argv[n++] = "-M";
	argv[n++] = "virt";
	argv[n++] = "-m";
	argv[n++] = mem;
	argv[n++] = "-smp";
	argv[n++] = cpus;
	argv[n++] = "-display";
	argv[n++] = "none";
	argv[n++] = "-monitor";
	argv[n++] = "none";
	argv[n++] = "-serial";
	argv[n++] = serial;
	argv[n++] = "-qmp";
	argv[n++] = qmp;
	argv[n++] = "-daemonize";
	argv[n++] = "-pidfile";
	argv[n++] = pid;
	argv[n++] = "-kernel";
	argv[n++] = (char *)s->kernel;
	if (s->initrd && *s->initrd) {
		argv[n++] = "-initrd";
		argv[n++] = (char *)s->initrd;
	}
	if (s->append && *s->append) {
		argv[n++] = "-append";
		argv[n++] = (char *)s->append;
	}
	argv[n] = NULL;
	return pool_proc_spawn(dir, argv, true);
}

/* Reads one line (a QMP message) with a deadline; 0 or -errno. */
static int qmp_line(int fd, char *buf, size_t len, int timeout_ms)
{
	size_t o = 0;

	while (o + 1 < len) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t r;

		if (poll(&p, 1, timeout_ms) <= 0)
			return -ETIMEDOUT;
		r = read(fd, buf + o, 1);
		if (r <= 0)
			return -EPIPE;
		if (buf[o] == '\n') {
			buf[o] = '\0';
			return 0;
		}
		o++;
	}
	return -E2BIG;
}

/* Sends one command and returns its "return" (or "error") reply, skipping events. */
static int qmp_cmd(int fd, const char *cmd, char *reply, size_t len)
{
	char msg[128];
	int n = snprintf(msg, sizeof(msg), "{\"execute\":\"%s\"}\n", cmd);

	if (write(fd, msg, (size_t)n) != n)
		return -EPIPE;
	for (int i = 0; i < 32; i++) {
		int ret = qmp_line(fd, reply, len, 2000);

		if (ret)
			return ret;
		if (!strstr(reply, "\"event\""))
			return strstr(reply, "\"error\"") ? -EIO : 0;
	}
	return -ETIMEDOUT;
}

static int qmp_open(const char *dir)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char line[4096];
	int fd;

	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/qmp.sock", dir) >=
	    sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* greeting, then capabilities negotiation (QMP spec §4) */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) || qmp_line(fd, line, sizeof(line), 2000) ||
	    qmp_cmd(fd, "qmp_capabilities", line, sizeof(line))) {
		close(fd);
		return -ECONNREFUSED;
	}
	return fd;
}

static bool qemu_alive(const char *dir)
{
	char line[4096];
	int fd;
	bool running;

	if (!pool_proc_alive(dir))
		return false;
	fd = qmp_open(dir);
	if (fd < 0)
		return true; /* process alive, monitor busy: trust the process */
	running = !qmp_cmd(fd, "query-status", line, sizeof(line)) &&
		  !strstr(line, "\"shutdown\"");
	close(fd);
	return running;
}

static int qemu_stop(const char *dir, int timeout_ms)
{
	char line[4096];
	int fd = qmp_open(dir);

	if (fd >= 0) {
		qmp_cmd(fd, "system_powerdown", line, sizeof(line));
		for (int w = 0; w < timeout_ms / 2 && pool_proc_alive(dir); w += 100) {
			struct timespec ts = {0, 100 * 1000000L};

			nanosleep(&ts, NULL);
		}
		if (pool_proc_alive(dir))
			qmp_cmd(fd, "quit", line, sizeof(line));
		close(fd);
	}
	return pool_proc_kill(dir, timeout_ms / 2);
}

const struct pool_driver pool_driver_qemu = {
	.name = "qemu",
	.start = qemu_start,
	.alive = qemu_alive,
	.stop = qemu_stop,
};

const struct pool_driver *pool_driver_find(const char *name)
{
	if (!strcmp(name, "kumo"))
		return &pool_driver_kumo;
	if (!strcmp(name, "qemu"))
		return &pool_driver_qemu;
	return NULL;
}
