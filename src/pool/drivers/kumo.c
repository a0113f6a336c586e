/*
 * kumo.c - the `kumo` driver: one `kumo run` process per VM (our own VMM) with its control API
 * on DIR/vm.sock (docs/api.md) and its serial console in DIR/console.log. The driver talks to
 * the VMM only through that API: GET /vm says whether the VM runs (a process whose VM is
 * "stopped" is on its way out), and a stop is PUT /actions {"action": "shutdown"} (the guest
 * is asked to power off through its serial console's Magic SysRq), then, after half the
 * timeout, {"action": "stop"}. Only a VMM whose API does not answer gets signals (SIGTERM,
 * then SIGKILL). Every call opens a new connection, so an agent restarted over running VMs
 * simply reconnects to their sockets.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>

#include "kumo/base.h"
#include "kumo/pool/pool.h"

#define API_TIMEOUT_MS 2000

static int sock_path(const char *dir, char *buf, size_t len)
{
	struct sockaddr_un sa;
	int n = snprintf(buf, len, "%s/vm.sock", dir);

	if (n < 0 || (size_t)n >= len || (size_t)n >= sizeof(sa.sun_path)) {
		err_set("%s/vm.sock is too long for a Unix socket path", dir);
		return -ENAMETOOLONG;
	}
	return 0;
}

static int kumo_start(const char *dir, const struct pool_vm_spec *s, const char *kumo_bin)
{
	char mem[32], cpus[16], sock[600];
	char *argv[20];
	int n = 0, ret;

	if (!s->kernel || !*s->kernel)
		return -EINVAL;
	ret = sock_path(dir, sock, sizeof(sock));
	if (ret)
		return ret;
	snprintf(mem, sizeof(mem), "%lldM", (long long)s->ram_mb);
	snprintf(cpus, sizeof(cpus), "%lld", (long long)s->vcpus);
	argv[n++] = (char *)kumo_bin;
	argv[n++] = "run";
	argv[n++] = "--kernel";
	argv[n++] = (char *)s->kernel;
	if (s->initrd && *s->initrd) {
		argv[n++] = "--initrd";
		argv[n++] = (char *)s->initrd;
	}
	if (s->append && *s->append) {
		argv[n++] = "--append";
		argv[n++] = (char *)s->append;
	}
	argv[n++] = "--mem";
	argv[n++] = mem;
	argv[n++] = "--cpus";
	argv[n++] = cpus;
	argv[n++] = "--api-sock";
	argv[n++] = sock;
	argv[n] = NULL;
	return pool_proc_spawn(dir, argv, false);
}

/* GET /vm's "state" (configuring, running, paused, stopped). 0 or -errno (no API answer). */
static int kumo_state(const char *dir, char *buf, size_t len)
{
	char sock[600], *reply = NULL;
	json_t *vm, *st;
	int status = 0, ret;

	ret = sock_path(dir, sock, sizeof(sock));
	if (ret)
		return ret;
	ret = pool_http_unix(sock, "GET", "/vm", NULL, API_TIMEOUT_MS, &status, &reply);
	if (ret)
		return ret;
	vm = status == 200 ? json_loads(reply, 0, NULL) : NULL;
	free(reply);
	st = json_object_get(vm, "state");
	ret = json_is_string(st) ? 0 : -EPROTO;
	if (!ret)
		snprintf(buf, len, "%s", json_string_value(st));
	json_decref(vm);
	return ret;
}

static bool kumo_alive(const char *dir)
{
	char state[32];

	if (!pool_proc_alive(dir))
		return false;
	/* no answer: the process is alive, its API busy or not up yet; trust the process */
	if (kumo_state(dir, state, sizeof(state)))
		return true;
	return strcmp(state, "stopped") != 0;
}

static int put_action(const char *dir, const char *body)
{
	char sock[600], *reply = NULL;
	int status = 0, ret = sock_path(dir, sock, sizeof(sock));

	if (!ret)
		ret = pool_http_unix(sock, "PUT", "/actions", body, API_TIMEOUT_MS, &status, &reply);
	if (!ret && status != 204) {
		err_set("PUT /actions %s: HTTP %d %s", body, status, reply ? reply : "");
		ret = -EIO;
	}
	free(reply);
	return ret;
}

static bool wait_exit(const char *dir, int ms)
{
	for (int w = 0; w < ms; w += 50) {
		struct timespec ts = {0, 50 * 1000000L};

		if (!pool_proc_alive(dir))
			return true;
		nanosleep(&ts, NULL);
	}
	return !pool_proc_alive(dir);
}

static int kumo_stop(const char *dir, int timeout_ms)
{
	int grace = timeout_ms / 2;
	char body[96];

	if (!pool_proc_alive(dir))
		return 0;
	/* the VMM's own grace is longer than ours, so the "stop" below is what ends it */
	snprintf(body, sizeof(body), "{\"action\":\"shutdown\",\"grace_ms\":%d}", grace + 1000);
	if (!put_action(dir, body) && wait_exit(dir, grace)) {
		log_info("kumo driver: %s: the guest powered off after a shutdown request", dir);
		return 0;
	}
	if (!put_action(dir, "{\"action\":\"stop\"}") && wait_exit(dir, timeout_ms / 4)) {
		log_info("kumo driver: %s: stopped through the control API", dir);
		return 0;
	}
	if (!pool_proc_alive(dir))
		return 0;
	log_warn("kumo driver: %s: the control API did not stop the VM (%s); signalling it", dir,
		 err_get());
	return pool_proc_kill(dir, timeout_ms / 4);
}

const struct pool_driver pool_driver_kumo = {
	.name = "kumo",
	.start = kumo_start,
	.alive = kumo_alive,
	.stop = kumo_stop,
	.state = kumo_state,
};
