/*
 * kumo.c - the `kumo` driver: one `kumo run` process per VM (our own VMM), serial console to
 * the VM directory's console.log. Stopping sends SIGTERM, which kumo run handles by stopping
 * the VM from the host (exit status 4).
 */
#include <errno.h>
#include <stdio.h>

#include "kumo/pool/pool.h"

static int kumo_start(const char *dir, const struct pool_vm_spec *s, const char *kumo_bin)
{
	char mem[32], cpus[16];
	char *argv[16];
	int n = 0;

	if (!s->kernel || !*s->kernel)
		return -EINVAL;
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
	argv[n] = NULL;
	return pool_proc_spawn(dir, argv, false);
}

static int kumo_stop(const char *dir, int timeout_ms)
{
	return pool_proc_kill(dir, timeout_ms);
}

const struct pool_driver pool_driver_kumo = {
	.name = "kumo",
	.start = kumo_start,
	.alive = pool_proc_alive,
	.stop = kumo_stop,
};
