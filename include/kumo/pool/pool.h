/*
 * pool.h - the compute pool's processes: the controller (REST API over libmicrohttpd, JSON with
 * jansson), the host agent with its hypervisor drivers, and the HTTP client (libcurl) that the
 * agent and the CLI use. docs/pool.md describes the API.
 *
 * Usage: pool_ctl_new() opens the store and loads the host cache; pool_ctl_handle() serves one
 * request without any HTTP (the benchmark and unit tests call it); pool_ctl_listen() serves it
 * over HTTP on its own threads until pool_ctl_free(). One mutex per controller serialises the
 * store connection and the host cache; several controller processes coordinate only through
 * the database (generation compare-and-swap).
 */
#ifndef KUMO_POOL_POOL_H
#define KUMO_POOL_POOL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "kumo/pool/sched.h"

#define POOL_MAX_BODY (64 * 1024) /* larger request bodies get 413 */

struct pool_ctl;

struct pool_ctl_config {
	const char *db_url;	/* "sqlite:PATH", a path, or "postgresql://..." */
	const char *admin_token; /* required; compared in constant time */
	int64_t refresh_ms;	/* host cache refresh period (default 500) */
	struct sched_config sched;
};

int pool_ctl_new(const struct pool_ctl_config *cfg, struct pool_ctl **out);
/* Serves HTTP on addr:port (addr like "127.0.0.1"); threads run until pool_ctl_free. */
int pool_ctl_listen(struct pool_ctl *ctl, const char *addr, int port);
void pool_ctl_free(struct pool_ctl *ctl);

/*
 * One API request: method, path (with any "?query"), the bearer token (NULL if none), the body
 * (NULL or NUL-terminated, at most POOL_MAX_BODY). Returns the JSON reply (caller decrefs) and
 * the HTTP status in *status. Never fails: errors are {"error": "..."} with a 4xx/5xx status.
 * Any thread.
 */
json_t *pool_ctl_handle(struct pool_ctl *ctl, const char *method, const char *path,
			const char *token, const char *body, size_t len, int *status);

/* --- HTTP client (libcurl) --- */

/*
 * One request; `body` may be NULL. *reply gets the response body (malloc'd, NUL-terminated),
 * *status the HTTP status. 0 or -errno (connection failures: -ECONNREFUSED with err_set).
 */
int pool_http(const char *method, const char *url, const char *token, const char *body,
	      int timeout_ms, int *status, char **reply);

/* The same on a Unix socket (a VMM's control API, docs/api.md): path like "/vm". */
int pool_http_unix(const char *sock, const char *method, const char *path, const char *body,
		   int timeout_ms, int *status, char **reply);

/* --- agent --- */

struct pool_agent_config {
	const char *controller;	/* base URL, e.g. http://127.0.0.1:7000 */
	const char *token;	/* this host's agent token (POST /v1/hosts/tokens) */
	const char *name;	/* host name */
	const char *listen_addr; /* console server, e.g. 127.0.0.2 */
	int listen_port;
	const char *state_dir;	/* pid/state/console files per VM; survives agent restarts */
	const char *az;
	uint32_t archs, drivers;
	int64_t total[SCHED_NRES], reserved[SCHED_NRES];
	double ratio[SCHED_NRES];
	int heartbeat_ms;	/* default 1000 */
	const char *kumo_bin;	/* for the kumo driver: path of the kumo binary */
};

/* Runs until *stop becomes true (set from a signal handler). 0 or -errno. */
int pool_agent_run(const struct pool_agent_config *cfg, volatile int *stop);

/* --- drivers --- */

struct pool_vm_spec {
	int64_t id;
	int64_t vcpus, ram_mb;
	const char *kernel, *initrd, *append;
};

struct pool_driver {
	const char *name;
	/* Starts a VM as its own process (setsid), console to dir/console.log, pid to dir/pid. */
	int (*start)(const char *dir, const struct pool_vm_spec *spec, const char *kumo_bin);
	/* true while the VM process of dir/ is running (checks the recorded start time too) */
	bool (*alive)(const char *dir);
	/* Asks the guest to stop, then forces it after timeout_ms. */
	int (*stop)(const char *dir, int timeout_ms);
	/* Optional (NULL: not known): the hypervisor's own word for the VM's state. 0 or -errno. */
	int (*state)(const char *dir, char *buf, size_t len);
};

extern const struct pool_driver pool_driver_kumo;
extern const struct pool_driver pool_driver_qemu;
const struct pool_driver *pool_driver_find(const char *name);

/* Process helpers shared by the drivers (src/pool/drivers/proc.c). */
int pool_proc_spawn(const char *dir, char *const argv[], bool daemonizes);
bool pool_proc_alive(const char *dir);
int pool_proc_kill(const char *dir, int timeout_ms);

#endif
