/*
 * agent.c - `kumo agent`: registers its host (inventory and traits), heartbeats, and makes the
 * VMs the controller assigned to it real through a driver. The heartbeat reply lists the
 * host's servers with their wanted state; the agent compares it with what runs and reports
 * differences (PUT /v1/agent/servers/ID). Each VM lives in STATE_DIR/vms/ID/ (driver, pid,
 * console.log), so an agent restarted over running VMs simply finds them alive and keeps them
 * (re-adoption). A small HTTP server serves console logs to the controller.
 *
 * Credentials: the agent talks to the controller with its own host token (cfg->token, issued
 * by the admin for this host name), which lets it act for this host only. The controller in
 * turn presents a random console key that the agent made at start and sent when it registered,
 * so neither side needs the admin token.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "kumo/base.h"
#include "kumo/pool/pool.h"

#define CONSOLE_TAIL (64 * 1024)
#define STOP_TIMEOUT_MS 10000 /* a driver's stop: guest shutdown, then forced */
#define MAX_STOPPING 32	      /* deletes in flight on their own threads */

struct agent {
	const struct pool_agent_config *cfg;
	int64_t host_id;
	char url[160];
	char console_key[65]; /* hex; the controller's bearer token for /v1/console */
	pthread_mutex_t lock; /* guards stopping[] */
	int64_t stopping[MAX_STOPPING]; /* ids being stopped by a stop_thread (0 = free slot) */
};

struct stop_job {
	struct agent *a;
	const struct pool_driver *drv;
	int64_t id;
	char dir[512];
};

static void vm_dir(const struct agent *a, int64_t id, char *buf, size_t len)
{
	snprintf(buf, len, "%s/vms/%" PRId64, a->cfg->state_dir, id);
}

static int read_small(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return -ENOENT;
	n = fread(buf, 1, len - 1, f);
	fclose(f);
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

static int write_small(const char *path, const char *s)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return -errno;
	fputs(s, f);
	return fclose(f) ? -EIO : 0;
}

/* The last non-empty line of a small log file (the VMM's error sentence). */
static void last_line(const char *path, char *out, size_t len)
{
	char buf[2048];
	FILE *f = fopen(path, "r");
	size_t n;

	out[0] = '\0';
	if (!f)
		return;
	if (fseek(f, -(long)(sizeof(buf) - 1), SEEK_END))
		fseek(f, 0, SEEK_SET);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	char *nl = strrchr(buf, '\n');

	const char *src = nl ? nl + 1 : buf;
	size_t m = strlen(src) < len - 1 ? strlen(src) : len - 1;

	memcpy(out, src, m);
	out[m] = '\0';
}

static void rm_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[600];

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%.400s/%.64s", dir, e->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

/* --- console server --- */

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned code, char *text, size_t n)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(n, text, MHD_RESPMEM_MUST_FREE);
	enum MHD_Result ret;

	if (!r) {
		free(text);
		return MHD_NO;
	}
	ret = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result on_console(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct agent *a = cls;
	const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	char dir[512], path[600], *buf;
	int64_t id;
	char *end;
	FILE *f;

	if (!auth || strncmp(auth, "Bearer ", 7) || strcmp(auth + 7, a->console_key))
		return send_text(c, 401, strdup("invalid token\n"), 14);
	if (strcmp(method, "GET") || strncmp(url, "/v1/console/", 12))
		return send_text(c, 404, strdup("not found\n"), 10);
	id = strtoll(url + 12, &end, 10);
	if (*end || id <= 0)
		return send_text(c, 404, strdup("not found\n"), 10);
	vm_dir(a, id, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/console.log", dir);
	buf = malloc(CONSOLE_TAIL + 1);
	if (!buf)
		return MHD_NO;
	f = fopen(path, "r");
	if (!f) {
		free(buf);
		return send_text(c, 404, strdup("no console\n"), 11);
	}
	if (fseek(f, -CONSOLE_TAIL, SEEK_END))
		fseek(f, 0, SEEK_SET);
	size_t n = fread(buf, 1, CONSOLE_TAIL, f);

	fclose(f);
	return send_text(c, 200, buf, n);
}

/* --- control loop --- */

static int api(struct agent *a, const char *method, const char *path, json_t *body, json_t **out)
{
	char url[512], *text = NULL, *reply = NULL;
	int status = 0, ret;

	snprintf(url, sizeof(url), "%s%s", a->cfg->controller, path);
	if (body) {
		text = json_dumps(body, JSON_COMPACT);
		json_decref(body);
	}
	ret = pool_http(method, url, a->cfg->token, text, 5000, &status, &reply);
	free(text);
	if (ret)
		return ret;
	if (status >= 300) {
		err_set("%s %s: HTTP %d %s", method, path, status, reply);
		free(reply);
		return status == 404 ? -ENOENT : -EIO;
	}
	if (out)
		*out = json_loads(reply, 0, NULL);
	free(reply);
	return out && !*out ? -EPROTO : 0;
}

static int do_register(struct agent *a)
{
	const struct pool_agent_config *c = a->cfg;
	json_t *archs = json_array(), *drivers = json_array(), *out = NULL;
	int ret;

	for (uint32_t b = 1; b; b <<= 1) {
		if (c->archs & b)
			json_array_append_new(archs, json_string(sched_arch_name(b)));
		if (c->drivers & b)
			json_array_append_new(drivers, json_string(sched_driver_name(b)));
	}
	ret = api(a, "POST", "/v1/agent/register",
		  json_pack("{ss ss ss ss so so sI sI sI sI sI sI sf sf sf}", "name", c->name,
			    "url", a->url, "console_key", a->console_key, "az", c->az ? c->az : "", "archs", archs, "drivers", drivers,
			    "vcpus", (json_int_t)c->total[0], "ram_mb", (json_int_t)c->total[1],
			    "disk_gb", (json_int_t)c->total[2], "reserved_vcpus",
			    (json_int_t)c->reserved[0], "reserved_ram_mb",
			    (json_int_t)c->reserved[1], "reserved_disk_gb",
			    (json_int_t)c->reserved[2], "vcpu_ratio", c->ratio[0], "ram_ratio",
			    c->ratio[1], "disk_ratio", c->ratio[2]),
		  &out);
	if (ret)
		return ret;
	a->host_id = json_integer_value(json_object_get(out, "id"));
	json_decref(out);
	log_info("agent: registered host %s as %" PRId64, c->name, a->host_id);
	return a->host_id > 0 ? 0 : -EPROTO;
}

static void report(struct agent *a, int64_t id, const char *state, const char *fault)
{
	char path[96];

	snprintf(path, sizeof(path), "/v1/agent/servers/%" PRId64, id);
	if (api(a, "PUT", path, json_pack("{ss ss}", "state", state, "fault", fault ? fault : ""),
		NULL))
		log_warn("agent: reporting server %" PRId64 " %s: %s", id, state, err_get());
}

/*
 * A graceful stop takes seconds (the guest is asked to power off first), longer than the
 * heartbeat period: deletes run on their own threads so heartbeats go on. Each id has at most
 * one stop in flight; returns -EBUSY when the table is full (the caller stops inline).
 */
static void *stop_thread(void *arg)
{
	struct stop_job *j = arg;

	j->drv->stop(j->dir, STOP_TIMEOUT_MS);
	rm_dir(j->dir);
	report(j->a, j->id, "deleted", NULL);
	pthread_mutex_lock(&j->a->lock);
	for (int i = 0; i < MAX_STOPPING; i++)
		if (j->a->stopping[i] == j->id)
			j->a->stopping[i] = 0;
	pthread_mutex_unlock(&j->a->lock);
	free(j);
	return NULL;
}

static int stop_async(struct agent *a, const struct pool_driver *drv, int64_t id, const char *dir)
{
	struct stop_job *j;
	pthread_attr_t attr;
	pthread_t th;
	int slot = -1, ret = 0;

	pthread_mutex_lock(&a->lock);
	for (int i = 0; i < MAX_STOPPING; i++) {
		if (a->stopping[i] == id)
			goto out_unlock; /* already on its way */
		if (!a->stopping[i] && slot < 0)
			slot = i;
	}
	if (slot < 0) {
		ret = -EBUSY;
		goto out_unlock;
	}
	j = calloc(1, sizeof(*j));
	if (!j) {
		ret = -ENOMEM;
		goto out_unlock;
	}
	*j = (struct stop_job){.a = a, .drv = drv, .id = id};
	snprintf(j->dir, sizeof(j->dir), "%s", dir);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	ret = -pthread_create(&th, &attr, stop_thread, j);
	pthread_attr_destroy(&attr);
	if (ret)
		free(j);
	else
		a->stopping[slot] = id;
out_unlock:
	pthread_mutex_unlock(&a->lock);
	return ret;
}

static int stops_in_flight(struct agent *a)
{
	int n = 0;

	pthread_mutex_lock(&a->lock);
	for (int i = 0; i < MAX_STOPPING; i++)
		n += a->stopping[i] != 0;
	pthread_mutex_unlock(&a->lock);
	return n;
}

static const struct pool_driver *driver_for(struct agent *a, const char *dir, const char *wanted)
{
	char path[600], name[32];

	snprintf(path, sizeof(path), "%s/driver", dir);
	if (!read_small(path, name, sizeof(name)))
		return pool_driver_find(name);
	if (wanted && *wanted)
		return (a->cfg->drivers & sched_driver_bit(wanted)) ? pool_driver_find(wanted) : NULL;
	return (a->cfg->drivers & SCHED_DRV_KUMO) ? &pool_driver_kumo : &pool_driver_qemu;
}

static void reconcile_one(struct agent *a, json_t *s)
{
	int64_t id = json_integer_value(json_object_get(s, "id"));
	const char *state = json_string_value(json_object_get(s, "state"));
	const char *hyp = json_string_value(json_object_get(s, "hypervisor"));
	const struct pool_driver *drv;
	char dir[512], path[600];
	bool exists, alive;
	struct stat stb;

	if (id <= 0 || !state)
		return;
	vm_dir(a, id, dir, sizeof(dir));
	exists = !stat(dir, &stb);
	drv = driver_for(a, dir, hyp);
	if (!drv) {
		if (!strcmp(state, "building"))
			report(a, id, "error", "this host offers no driver for the image");
		return;
	}
	alive = exists && drv->alive(dir);

	if (!strcmp(state, "deleting")) {
		if (exists && !stop_async(a, drv, id, dir)) /* reports "deleted" when done */
			return;
		if (exists) {
			drv->stop(dir, STOP_TIMEOUT_MS);
			rm_dir(dir);
		}
		report(a, id, "deleted", NULL);
		return;
	}
	if (!strcmp(state, "building")) {
		if (alive) {
			report(a, id, "active", NULL);
			return;
		}
		struct pool_vm_spec spec = {
			.id = id,
			.vcpus = json_integer_value(json_object_get(s, "vcpus")),
			.ram_mb = json_integer_value(json_object_get(s, "ram_mb")),
			.kernel = json_string_value(json_object_get(s, "kernel")),
			.initrd = json_string_value(json_object_get(s, "initrd")),
			.append = json_string_value(json_object_get(s, "append")),
		};
		snprintf(path, sizeof(path), "%s/vms", a->cfg->state_dir);
		mkdir(path, 0755);
		mkdir(dir, 0755);
		snprintf(path, sizeof(path), "%s/driver", dir);
		write_small(path, drv->name);
		err_clear();
		int ret = drv->start(dir, &spec, a->cfg->kumo_bin);

		/* a VMM that rejects its arguments exits at once: give it a moment to do so */
		for (int w = 0; !ret && w < 400 && drv->alive(dir); w += 50) {
			struct timespec ts = {0, 50 * 1000000L};

			nanosleep(&ts, NULL);
		}
		if (ret || !drv->alive(dir)) {
			char fault[256], last[160] = "";

			snprintf(path, sizeof(path), "%s/console.log", dir);
			last_line(path, last, sizeof(last));
			snprintf(fault, sizeof(fault), "%s driver could not start the VM: %s",
				 drv->name,
				 *last ? last : *err_get() ? err_get() : strerror(ret ? -ret : ESRCH));
			rm_dir(dir);
			report(a, id, "error", fault);
			return;
		}
		log_info("agent: started server %" PRId64 " with the %s driver", id, drv->name);
		report(a, id, "active", NULL);
		return;
	}
	if (!strcmp(state, "active") && !alive) {
		char vmm[32];

		/* a VMM whose API still answers "stopped" is on its way out */
		if (exists && drv->state && !drv->state(dir, vmm, sizeof(vmm)))
			report(a, id, "stopped", "the VM stopped (the VMM reports it stopped)");
		else
			report(a, id, "stopped", "the VM process exited");
	}
}

/* At start: VMs that kept running while the agent was away are simply kept (re-adoption). */
static void adopt(struct agent *a)
{
	char path[512], dir[600], vmm[32];
	struct dirent *e;
	DIR *d;

	snprintf(path, sizeof(path), "%s/vms", a->cfg->state_dir);
	d = opendir(path);
	if (!d)
		return;
	while ((e = readdir(d))) {
		int64_t id = strtoll(e->d_name, NULL, 10);
		const struct pool_driver *drv;

		if (id <= 0)
			continue;
		snprintf(dir, sizeof(dir), "%.400s/%.64s", path, e->d_name);
		drv = driver_for(a, dir, NULL);
		if (!drv || !drv->alive(dir))
			continue;
		if (!drv->state || drv->state(dir, vmm, sizeof(vmm)))
			snprintf(vmm, sizeof(vmm), "alive");
		log_info("agent: re-adopted server %" PRId64 " (%s driver, VM %s)", id, drv->name,
			 vmm);
	}
	closedir(d);
}

/* VM directories the controller no longer lists (deleted while we were away): stop them. */
static void sweep(struct agent *a, json_t *servers)
{
	char path[512], dir[600];
	struct dirent *e;
	DIR *d;

	snprintf(path, sizeof(path), "%s/vms", a->cfg->state_dir);
	d = opendir(path);
	if (!d)
		return;
	while ((e = readdir(d))) {
		int64_t id = strtoll(e->d_name, NULL, 10);
		bool listed = false;
		json_t *s;
		size_t i;

		if (id <= 0)
			continue;
		json_array_foreach(servers, i, s)
			listed |= json_integer_value(json_object_get(s, "id")) == id;
		if (listed)
			continue;
		snprintf(dir, sizeof(dir), "%.400s/%.64s", path, e->d_name);
		const struct pool_driver *drv = driver_for(a, dir, NULL);

		if (drv)
			drv->stop(dir, STOP_TIMEOUT_MS);
		rm_dir(dir);
		log_info("agent: removed server %" PRId64 " the controller no longer lists", id);
	}
	closedir(d);
}

int pool_agent_run(const struct pool_agent_config *cfg, volatile int *stop)
{
	struct agent a = {.cfg = cfg, .lock = PTHREAD_MUTEX_INITIALIZER};
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cfg->listen_port)};
	struct MHD_Daemon *mhd;
	int period = cfg->heartbeat_ms > 0 ? cfg->heartbeat_ms : 1000;
	char path[512];

	if (inet_pton(AF_INET, cfg->listen_addr, &sa.sin_addr) != 1) {
		err_set("'%s' is not an IPv4 address", cfg->listen_addr);
		return -EINVAL;
	}
	if (mkdir(cfg->state_dir, 0755) && errno != EEXIST) {
		err_set("cannot create %s: %s", cfg->state_dir, strerror(errno));
		return -errno;
	}
	snprintf(path, sizeof(path), "%s/vms", cfg->state_dir);
	mkdir(path, 0755);
	snprintf(a.url, sizeof(a.url), "http://%s:%d", cfg->listen_addr, cfg->listen_port);
	unsigned char raw[24];

	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
		err_set("no randomness for the console key");
		return -EIO;
	}
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(a.console_key + 2 * i, 3, "%02x", raw[i]);
	adopt(&a);
	mhd = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD, (uint16_t)cfg->listen_port, NULL, NULL,
			       on_console, &a, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_END);
	if (!mhd) {
		err_set("cannot listen on %s", a.url);
		return -EADDRINUSE;
	}
	while (!*stop) {
		json_t *out = NULL, *servers, *s;
		char hb[96];
		size_t i;

		if (!a.host_id && do_register(&a)) {
			log_warn("agent: cannot register yet: %s", err_get());
			goto sleep;
		}
		snprintf(hb, sizeof(hb), "/v1/agent/hosts/%" PRId64 "/heartbeat", a.host_id);
		int ret = api(&a, "POST", hb, NULL, &out);

		if (ret == -ENOENT) {
			a.host_id = 0; /* the controller forgot us (new database): register again */
			goto sleep;
		}
		if (ret) {
			log_warn("agent: heartbeat failed: %s", err_get());
			goto sleep;
		}
		servers = json_object_get(out, "servers");
		json_array_foreach(servers, i, s)
			reconcile_one(&a, s);
		if (json_is_array(servers))
			sweep(&a, servers);
		json_decref(out);
sleep:
		for (int w = 0; w < period && !*stop; w += 50) {
			struct timespec ts = {0, 50 * 1000000L};

			nanosleep(&ts, NULL);
		}
	}
	/* let deletes in flight finish (each is bounded by STOP_TIMEOUT_MS) */
	for (int w = 0; w < STOP_TIMEOUT_MS + 2000 && stops_in_flight(&a); w += 50) {
		struct timespec ts = {0, 50 * 1000000L};

		nanosleep(&ts, NULL);
	}
	MHD_stop_daemon(mhd);
	return 0;
}
