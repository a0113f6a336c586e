/*
 * controller.c - `kumo controller`: the pool's REST API, placement (scheduler + atomic claim
 * with retries on the alternates), agent reports, and the libmicrohttpd glue. The API is
 * described in docs/pool.md.
 */
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "kumo/base.h"
#include "kumo/pool/pool.h"
#include "kumo/pool/store.h"

#define CLAIM_TRIES 8

struct pool_ctl {
	pthread_mutex_t lock; /* guards st, hosts, sched.rng */
	struct pool_store *st;
	struct sched_host *hosts; /* cache, sorted by id */
	int nhosts, cap;
	int64_t last_refresh_ms;
	int64_t refresh_ms;
	struct sched_config sched;
	char admin_token[128];
	struct MHD_Daemon *mhd;
};

struct who {
	bool admin;
	bool agent;   /* a per-host agent token: acts only for host `host` */
	char host[64];
	struct pool_tenant tenant;
};

static json_t *reply(int *status, int code, const char *fmt, ...) KUMO_PRINTF(3, 4);

static json_t *reply(int *status, int code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	*status = code;
	return json_pack("{ss}", "error", msg);
}

static json_t *store_error(int *status, int ret)
{
	const char *e = *err_get() ? err_get() : strerror(-ret);

	if (ret == -ENOENT)
		return reply(status, 404, "%s", e);
	if (ret == -EEXIST)
		return reply(status, 409, "%s", e);
	return reply(status, 500, "store: %s", e);
}

/* --- strict JSON bodies --- */

struct field {
	const char *name;
	json_type type;
	bool required;
};

/* Parses an object whose keys must all be in `spec` with the right types. NULL + reply on error. */
static json_t *parse_body(const char *body, size_t len, const struct field *spec, int *status,
			  json_t **err)
{
	json_error_t je;
	json_t *o, *v;
	const char *k;

	if (!body || !len) {
		*err = reply(status, 400, "a JSON object body is required");
		return NULL;
	}
	o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (!o) {
		*err = reply(status, 400, "malformed JSON at line %d column %d: %s", je.line,
			     je.column, je.text);
		return NULL;
	}
	if (!json_is_object(o)) {
		*err = reply(status, 400, "the body must be a JSON object");
		goto out_free;
	}
	json_object_foreach(o, k, v) {
		const struct field *f;

		for (f = spec; f->name && strcmp(f->name, k); f++)
			;
		if (!f->name) {
			*err = reply(status, 400, "unknown field '%s'", k);
			goto out_free;
		}
		bool ok = json_typeof(v) == f->type ||
			  (f->type == JSON_TRUE && json_is_boolean(v)) ||
			  (f->type == JSON_REAL && json_is_number(v));

		if (!ok) {
			static const char *const tn[] = {"an object", "an array", "a string",
							 "an integer", "a number", "a boolean",
							 "a boolean", "null"};
			*err = reply(status, 400, "field '%s' must be %s", k, tn[f->type]);
			goto out_free;
		}
	}
	for (const struct field *f = spec; f->name; f++) {
		if (f->required && !json_object_get(o, f->name)) {
			*err = reply(status, 400, "missing field '%s'", f->name);
			goto out_free;
		}
	}
	return o;
out_free:
	json_decref(o);
	return NULL;
}

static const char *jstr(json_t *o, const char *k, const char *dflt)
{
	json_t *v = json_object_get(o, k);

	return json_is_string(v) ? json_string_value(v) : dflt;
}

static int64_t jint(json_t *o, const char *k, int64_t dflt)
{
	json_t *v = json_object_get(o, k);

	return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

static bool name_ok(const char *s)
{
	size_t n = strlen(s);

	if (!n || n >= 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(s[i] == '-' || s[i] == '_' || s[i] == '.' || (s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')))
			return false;
	return true;
}

/* --- JSON views --- */

static json_t *vm_json(const struct pool_vm *v, bool admin)
{
	json_t *o = json_pack("{sI sI ss ss ss ss ss sI sI sI sI sI}", "id", (json_int_t)v->id,
			      "tenant_id", (json_int_t)v->tenant_id, "name", v->name, "state",
			      v->state, "flavor", v->flavor_name, "image", v->image_name, "fault",
			      v->fault, "vcpus", (json_int_t)v->vcpus, "ram_mb",
			      (json_int_t)v->ram_mb, "disk_gb", (json_int_t)v->disk_gb, "attempts",
			      (json_int_t)v->attempts, "created_ms", (json_int_t)v->created_ms);

	/* Tenants never learn host names (users never name hosts); admins do. */
	if (o && admin) {
		json_object_set_new(o, "host", json_string(v->host_name));
		json_object_set_new(o, "host_id", json_integer(v->host_id));
	}
	return o;
}

static json_t *host_json(const struct sched_host *h, int64_t now, int64_t timeout)
{
	json_t *archs = json_array(), *drivers = json_array();

	for (uint32_t b = 1; b; b <<= 1) {
		if (h->archs & b)
			json_array_append_new(archs, json_string(sched_arch_name(b)));
		if (h->drivers & b)
			json_array_append_new(drivers, json_string(sched_driver_name(b)));
	}
	return json_pack("{sI ss ss so so sb sb sI sI sI sI sI sI si si si sI sI}", "id",
			 (json_int_t)h->id, "name", h->name, "az", h->az, "archs", archs, "drivers",
			 drivers, "enabled", h->enabled, "up", now - h->heartbeat_ms <= timeout,
			 "vcpus", (json_int_t)sched_capacity(h, SCHED_VCPU), "vcpus_used",
			 (json_int_t)h->used[SCHED_VCPU], "ram_mb",
			 (json_int_t)sched_capacity(h, SCHED_RAM), "ram_mb_used",
			 (json_int_t)h->used[SCHED_RAM], "disk_gb",
			 (json_int_t)sched_capacity(h, SCHED_DISK), "disk_gb_used",
			 (json_int_t)h->used[SCHED_DISK], "instances", h->instances, "builds",
			 h->builds, "recent_failures", h->recent_failures, "generation",
			 (json_int_t)h->generation, "isolated_tenant",
			 (json_int_t)h->isolated_tenant);
}

/* --- host cache --- */

static int cache_refresh(struct pool_ctl *ctl, bool force)
{
	int64_t now = pool_now_ms();
	int ret;

	if (!force && now - ctl->last_refresh_ms < ctl->refresh_ms)
		return 0;
	ret = pool_store_hosts_refresh(ctl->st, &ctl->hosts, &ctl->nhosts, &ctl->cap);
	if (!ret)
		ctl->last_refresh_ms = now;
	return ret;
}

static struct sched_host *cache_find(struct pool_ctl *ctl, int64_t id)
{
	int lo = 0, hi = ctl->nhosts - 1;

	while (lo <= hi) {
		int mid = (lo + hi) / 2;

		if (ctl->hosts[mid].id == id)
			return &ctl->hosts[mid];
		if (ctl->hosts[mid].id < id)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return NULL;
}

/* After our own write to a host: one row, by primary key. */
static void cache_reload(struct pool_ctl *ctl, int64_t id)
{
	struct sched_host *h = cache_find(ctl, id);

	if (h)
		pool_store_host_reload(ctl->st, h);
	else
		cache_refresh(ctl, true);
}

/* An agent token acts for its own host only (by name: the id is the controller's). */
static bool agent_owns(struct pool_ctl *ctl, const struct who *who, int64_t host_id)
{
	struct sched_host *h;

	if (!who->agent)
		return true;
	h = cache_find(ctl, host_id);
	if (!h) {
		cache_refresh(ctl, true);
		h = cache_find(ctl, host_id);
	}
	return h && !strcmp(h->name, who->host);
}

/* --- placement --- */

struct placement {
	struct pool_flavor flavor;
	struct pool_image image;
	struct pool_group group;
	int64_t *group_hosts;
	int ngroup_hosts;
	int64_t same[16], diff[16];
	struct sched_request req;
};

static json_t *explain_json(struct pool_ctl *ctl, const struct sched_result *res)
{
	json_t *removed = json_object(), *rej = json_array();

	for (int f = 0; f < SCHED_NFILTERS; f++)
		if (res->removed[f])
			json_object_set_new(removed, sched_filter_name(f),
					    json_integer(res->removed[f]));
	for (int i = 0; i < res->nrejects && i < 1000; i++) {
		const struct sched_host *h = cache_find(ctl, res->rejects[i].host_id);

		json_array_append_new(
			rej, json_pack("{ss ss ss}", "host", h ? h->name : "?", "filter",
				       sched_filter_name(res->rejects[i].filter), "reason",
				       res->rejects[i].detail));
	}
	return json_pack("{si so so}", "hosts", ctl->nhosts, "removed", removed, "rejected", rej);
}

static json_t *ranking_json(struct pool_ctl *ctl, const struct sched_result *res)
{
	json_t *arr = json_array();

	for (int i = 0; i < res->nranked && i < 200; i++) {
		const struct sched_pick *p = &res->ranked[i];
		json_t *w = json_object();

		for (int k = 0; k < SCHED_NWEIGHERS; k++)
			json_object_set_new(w, sched_weigher_name(k), json_real(p->contrib[k]));
		json_array_append_new(arr, json_pack("{ss sf so}", "host",
						     ctl->hosts[p->index].name, "score", p->score,
						     "weighers", w));
	}
	return arr;
}

static void alternates_str(const struct sched_result *res, int from, char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (int i = from; i < res->nranked && o + 24 < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%" PRId64, o ? "," : "",
				      res->ranked[i].host_id);
}

/* Called with ctl->lock held. */
static json_t *create_server(struct pool_ctl *ctl, const struct who *who, json_t *o, int *status)
{
	struct pool_store *st = ctl->st;
	struct placement pl = {0};
	struct sched_result res = {0};
	const char *gname = jstr(o, "group", NULL), *name = jstr(o, "name", "");
	json_t *hints = json_object_get(o, "hints"), *out = NULL;
	bool dry = json_is_true(json_object_get(o, "dry_run"));
	int64_t vm_id = 0;
	int ret;

	if (who->admin)
		return reply(status, 403, "servers belong to tenants: use a tenant token");
	if (!name_ok(name))
		return reply(status, 400, "field 'name' must be 1-63 letters, digits, '-', '_', '.'");
	err_clear();
	ret = pool_store_flavor_get(st, jstr(o, "flavor", ""), &pl.flavor);
	if (!ret)
		ret = pool_store_image_get(st, jstr(o, "image", ""), &pl.image);
	if (ret)
		return ret == -ENOENT ? reply(status, 400, "%s", err_get()) : store_error(status, ret);
	if (gname) {
		ret = pool_store_group_get(st, who->tenant.id, gname, &pl.group);
		if (!ret)
			ret = pool_store_group_hosts(st, pl.group.id, &pl.group_hosts,
						     &pl.ngroup_hosts);
		if (ret)
			return ret == -ENOENT ? reply(status, 400, "%s", err_get())
					      : store_error(status, ret);
	}
	struct sched_request *q = &pl.req;

	q->tenant_id = who->tenant.id;
	q->need[SCHED_VCPU] = pl.flavor.vcpus;
	q->need[SCHED_RAM] = pl.flavor.ram_mb;
	q->need[SCHED_DISK] = pl.flavor.disk_gb;
	q->arch = sched_arch_bit(pl.image.arch);
	q->drivers = sched_driver_bit(pl.image.hypervisor);
	q->image_min_ram = pl.image.min_ram_mb;
	q->az = jstr(o, "availability_zone", NULL);
	q->group_policy = gname ? pl.group.policy : SCHED_GROUP_NONE;
	q->group_hosts = pl.group_hosts;
	q->ngroup_hosts = pl.ngroup_hosts;
	if (hints) {
		static const char *const keys[] = {"same_host", "different_host"};

		for (int k = 0; k < 2; k++) {
			json_t *arr = json_object_get(hints, keys[k]), *v;
			int64_t *dst = k ? pl.diff : pl.same;
			int *n = k ? &q->ndifferent_host : &q->nsame_host;
			size_t i;

			json_array_foreach(arr, i, v) {
				struct pool_vm other;

				if (!json_is_integer(v) || *n >= 16) {
					out = reply(status, 400, "hint '%s' takes up to 16 server ids",
						    keys[k]);
					goto out;
				}
				if (pool_store_vm_get(st, json_integer_value(v), &other) ||
				    other.tenant_id != who->tenant.id) {
					out = reply(status, 400, "hint '%s': no server %" PRId64,
						    keys[k], (int64_t)json_integer_value(v));
					goto out;
				}
				dst[(*n)++] = other.host_id;
			}
		}
		q->same_host = pl.same;
		q->different_host = pl.diff;
	}
	if (!q->arch) {
		out = reply(status, 400, "image '%s' names an unknown architecture '%s'",
			    pl.image.name, pl.image.arch);
		goto out;
	}
	cache_refresh(ctl, false);

	for (int attempt = 0; attempt < CLAIM_TRIES; attempt++) {
		q->now_ms = pool_now_ms();
		sched_result_fini(&res);
		ret = sched_select(&ctl->sched, q, ctl->hosts, ctl->nhosts,
				   dry ? SCHED_FULL_RANKING : 0, &res);
		if (ret == -ENOSPC) {
			sched_result_fini(&res);
			sched_select(&ctl->sched, q, ctl->hosts, ctl->nhosts, SCHED_EXPLAIN, &res);
			*status = 409;
			out = json_pack("{ss so}", "error",
					"no valid host: every host was removed by a filter (see explain)",
					"explain", explain_json(ctl, &res));
			goto out;
		}
		if (ret) {
			out = reply(status, 500, "scheduler: %s", strerror(-ret));
			goto out;
		}
		if (dry) {
			*status = 200;
			out = json_pack("{sb si so}", "dry_run", 1, "feasible", res.nfeasible,
					"ranking", ranking_json(ctl, &res));
			goto out;
		}
		/* try the pick, then its alternates, each with a generation CAS */
		for (int i = 0; i < res.nranked; i++) {
			struct sched_host *h = &ctl->hosts[res.ranked[i].index];
			char alts[256];
			struct pool_claim c = {
				.tenant_id = who->tenant.id,
				.name = name,
				.flavor_id = pl.flavor.id,
				.image_id = pl.image.id,
				.need = {q->need[0], q->need[1], q->need[2]},
				.host_id = h->id,
				.host_generation = h->generation,
				.group_id = gname ? pl.group.id : 0,
				.group_generation = pl.group.generation,
				.alternates = alts,
				.request_id = jstr(o, "request_id", NULL),
			};

			if (i && sched_filter_run(0, &ctl->sched, q, h, NULL, 0))
				continue;
			alternates_str(&res, i + 1, alts, sizeof(alts));
			err_clear();
			ret = pool_store_claim(st, &c, &vm_id);
			if (!ret || ret == -EEXIST) {
				struct pool_vm v;

				cache_reload(ctl, h->id);
				if (pool_store_vm_get(st, vm_id, &v))
					out = reply(status, 500, "claimed VM vanished");
				else {
					*status = ret ? 200 : 202;
					out = vm_json(&v, false);
				}
				goto out;
			}
			if (ret == -EDQUOT) {
				out = reply(status, 403, "%s", err_get());
				goto out;
			}
			if (ret != -EAGAIN) {
				out = store_error(status, ret);
				goto out;
			}
			/* lost a race: refresh what we know about that host (and the group) */
			cache_reload(ctl, h->id);
			if (gname && c.group_id) {
				free(pl.group_hosts);
				pl.group_hosts = NULL;
				if (pool_store_group_get(st, who->tenant.id, gname, &pl.group) ||
				    pool_store_group_hosts(st, pl.group.id, &pl.group_hosts,
							   &pl.ngroup_hosts)) {
					out = store_error(status, -EIO);
					goto out;
				}
				q->group_hosts = pl.group_hosts;
				q->ngroup_hosts = pl.ngroup_hosts;
				break; /* the group changed: every alternate must be re-filtered */
			}
		}
		cache_refresh(ctl, true);
	}
	out = reply(status, 503, "too much contention: %d placement attempts lost their claims",
		    CLAIM_TRIES);
out:
	sched_result_fini(&res);
	free(pl.group_hosts);
	return out;
}

/*
 * A build failed: try the next alternate that still passes the filters, else error. A member
 * of a server group is filtered against the group's members as read at one group generation
 * (itself left out: it leaves the failed host), and the move is a compare-and-swap on that
 * generation as well as on the host's, so affinity and anti-affinity hold against concurrent
 * placements; a lost race re-reads the group and walks the alternates again (bounded).
 */
static void build_failed(struct pool_ctl *ctl, const struct pool_vm *v, const char *fault)
{
	char alts[256], *save, *tok;
	struct pool_image im;
	struct pool_group g = {0};
	struct sched_request q = {0};
	int64_t *members = NULL;
	int nmembers = 0;

	if (v->attempts >= ctl->sched.max_attempts || !*v->alternates ||
	    pool_store_image_get_id(ctl->st, v->image_id, &im))
		goto out_error;
	q.tenant_id = v->tenant_id;
	q.need[SCHED_VCPU] = v->vcpus;
	q.need[SCHED_RAM] = v->ram_mb;
	q.need[SCHED_DISK] = v->disk_gb;
	q.arch = sched_arch_bit(im.arch);
	q.drivers = sched_driver_bit(im.hypervisor);
	for (int round = 0; round < CLAIM_TRIES; round++) {
		bool raced = false;

		if (v->group_id) {
			free(members);
			members = NULL;
			if (pool_store_group_get_id(ctl->st, v->group_id, &g) ||
			    pool_store_group_hosts(ctl->st, g.id, &members, &nmembers))
				goto out_error;
			for (int i = 0; i < nmembers; i++) {
				if (members[i] == v->host_id) {
					members[i] = members[--nmembers];
					break;
				}
			}
			q.group_policy = g.policy;
			q.group_hosts = members;
			q.ngroup_hosts = nmembers;
		}
		q.now_ms = pool_now_ms();
		cache_refresh(ctl, true);
		snprintf(alts, sizeof(alts), "%s", v->alternates);
		save = NULL;
		for (tok = strtok_r(alts, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			struct sched_host *h = cache_find(ctl, strtoll(tok, NULL, 10));
			const char *rest = save && *save ? save : "";
			int f, ret;

			if (!h)
				continue;
			for (f = 0; f < SCHED_NFILTERS; f++)
				if (sched_filter_run(f, &ctl->sched, &q, h, NULL, 0))
					break;
			if (f < SCHED_NFILTERS)
				continue;
			ret = v->group_id ? pool_store_vm_move_group(ctl->st, v->id, h->id,
								     h->generation, g.generation,
								     rest)
					  : pool_store_vm_move(ctl->st, v->id, h->id, h->generation,
							       rest);
			if (!ret) {
				log_info("pool: server %" PRId64 " failed on host %" PRId64
					 " (%s); retrying on alternate %s",
					 v->id, v->host_id, fault, h->name);
				cache_refresh(ctl, true);
				free(members);
				return;
			}
			if (ret == -EAGAIN) {
				raced = true;
				break;
			}
		}
		if (!raced)
			break;
	}
out_error:
	free(members);
	pool_store_vm_set_state(ctl->st, v->id, "error", fault);
	cache_reload(ctl, v->host_id);
}

/* --- routing --- */

static bool tok_eq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned char d = la != lb;

	for (size_t i = 0; i < la && i < lb; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return !d;
}

static int split(char *path, char **seg, int max)
{
	int n = 0;

	for (char *s = strtok(path, "/"); s && n < max; s = strtok(NULL, "/"))
		seg[n++] = s;
	return n;
}

static bool parse_id(const char *s, int64_t *id)
{
	char *end;

	errno = 0;
	*id = strtoll(s, &end, 10);
	return !errno && *s && !*end && *id > 0;
}

static int64_t query_int(const char *query, const char *key, int64_t dflt)
{
	size_t kl = strlen(key);

	for (const char *p = query; p && *p;) {
		if (!strncmp(p, key, kl) && p[kl] == '=')
			return strtoll(p + kl + 1, NULL, 10);
		p = strchr(p, '&');
		if (p)
			p++;
	}
	return dflt;
}

static json_t *agent_servers(struct pool_ctl *ctl, int64_t host, int *status)
{
	struct pool_vm *vms;
	json_t *arr;
	int n;

	if (pool_store_vm_list(ctl->st, 0, host, &vms, &n))
		return store_error(status, -EIO);
	arr = json_array();
	for (int i = 0; i < n; i++) {
		struct pool_image im = {0};

		pool_store_image_get_id(ctl->st, vms[i].image_id, &im);
		json_array_append_new(arr, json_pack("{sI ss ss sI sI ss ss ss ss}", "id",
						     (json_int_t)vms[i].id, "name", vms[i].name,
						     "state", vms[i].state, "vcpus",
						     (json_int_t)vms[i].vcpus, "ram_mb",
						     (json_int_t)vms[i].ram_mb, "kernel", im.kernel,
						     "initrd", im.initrd, "append", im.append,
						     "hypervisor", im.hypervisor));
	}
	free(vms);
	*status = 200;
	return json_pack("{so}", "servers", arr);
}

static json_t *route(struct pool_ctl *ctl, const char *method, char *path, const char *query,
		     const struct who *who, const char *body, size_t len, int *status)
{
	static const struct field f_server[] = {
		{"name", JSON_STRING, true},	   {"flavor", JSON_STRING, true},
		{"image", JSON_STRING, true},	   {"group", JSON_STRING, false},
		{"availability_zone", JSON_STRING, false}, {"hints", JSON_OBJECT, false},
		{"dry_run", JSON_TRUE, false},	   {"request_id", JSON_STRING, false},
		{NULL, 0, false},
	};
	static const struct field f_flavor[] = {
		{"name", JSON_STRING, true},	{"vcpus", JSON_INTEGER, true},
		{"ram_mb", JSON_INTEGER, true}, {"disk_gb", JSON_INTEGER, false},
		{NULL, 0, false},
	};
	static const struct field f_image[] = {
		{"name", JSON_STRING, true},	     {"arch", JSON_STRING, true},
		{"hypervisor", JSON_STRING, false},  {"min_ram_mb", JSON_INTEGER, false},
		{"kernel", JSON_STRING, false},	     {"initrd", JSON_STRING, false},
		{"append", JSON_STRING, false},	     {NULL, 0, false},
	};
	static const struct field f_tenant[] = {
		{"name", JSON_STRING, true},		 {"max_instances", JSON_INTEGER, false},
		{"max_vcpus", JSON_INTEGER, false},	 {"max_ram_mb", JSON_INTEGER, false},
		{NULL, 0, false},
	};
	static const struct field f_group[] = {
		{"name", JSON_STRING, true}, {"policy", JSON_STRING, true}, {NULL, 0, false}};
	static const struct field f_host_set[] = {
		{"enabled", JSON_TRUE, false}, {"isolated_tenant", JSON_INTEGER, false},
		{NULL, 0, false}};
	static const struct field f_register[] = {
		{"name", JSON_STRING, true},	      {"url", JSON_STRING, true},
		{"az", JSON_STRING, false},	      {"archs", JSON_ARRAY, true},
		{"drivers", JSON_ARRAY, true},	      {"vcpus", JSON_INTEGER, true},
		{"ram_mb", JSON_INTEGER, true},	      {"disk_gb", JSON_INTEGER, true},
		{"reserved_vcpus", JSON_INTEGER, false}, {"reserved_ram_mb", JSON_INTEGER, false},
		{"reserved_disk_gb", JSON_INTEGER, false}, {"vcpu_ratio", JSON_REAL, false},
		{"ram_ratio", JSON_REAL, false},      {"disk_ratio", JSON_REAL, false},
		{"isolated_tenant", JSON_INTEGER, false}, {"console_key", JSON_STRING, false},
		{NULL, 0, false},
	};
	static const struct field f_token[] = {{"host", JSON_STRING, true}, {NULL, 0, false}};
	static const struct field f_state[] = {
		{"state", JSON_STRING, true}, {"fault", JSON_STRING, false}, {NULL, 0, false}};
	struct pool_store *st = ctl->st;
	char *seg[8];
	int n = split(path, seg, 8);
	bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST"),
	     put = !strcmp(method, "PUT"), del = !strcmp(method, "DELETE");
	json_t *o = NULL, *out = NULL, *err = NULL;
	int64_t id = 0;
	int ret;

	if (n < 2 || strcmp(seg[0], "v1"))
		return reply(status, 404, "no such resource (the API lives under /v1)");
	const char *res = seg[1];

	if (who->agent && strcmp(res, "agent"))
		return reply(status, 403, "an agent token only registers, heartbeats and reports "
					  "for its own host (/v1/agent/...)");

#define BODY(spec) \
	do { \
		o = parse_body(body, len, spec, status, &err); \
		if (!o) \
			return err; \
	} while (0)
#define ADMIN_ONLY() \
	do { \
		if (!who->admin) \
			return reply(status, 403, "this needs the admin token"); \
	} while (0)

	if (!strcmp(res, "servers")) {
		if (who->admin && !(get && n == 2))
			return reply(status, 403, "servers belong to tenants: use a tenant token");
		if (n == 2 && post) {
			BODY(f_server);
			out = create_server(ctl, who, o, status);
			json_decref(o);
			return out;
		}
		if (n == 2 && get) {
			struct pool_vm *vms;
			int nv;

			if (pool_store_vm_list(st, who->admin ? 0 : who->tenant.id, 0, &vms, &nv))
				return store_error(status, -EIO);
			out = json_array();
			for (int i = 0; i < nv; i++)
				json_array_append_new(out, vm_json(&vms[i], who->admin));
			free(vms);
			*status = 200;
			return json_pack("{so}", "servers", out);
		}
		if (n < 3 || !parse_id(seg[2], &id))
			return reply(status, 404, "no such server");
		struct pool_vm v;

		/* Another tenant's server does not exist for you: 404, not 403. */
		if (pool_store_vm_get(st, id, &v) || v.tenant_id != who->tenant.id ||
		    !strcmp(v.state, "deleted"))
			return reply(status, 404, "no server %" PRId64, id);
		if (n == 3 && get) {
			*status = 200;
			return vm_json(&v, false);
		}
		if (n == 3 && del) {
			ret = pool_store_vm_set_state(st, id, "deleting", NULL);
			if (ret)
				return store_error(status, ret);
			cache_reload(ctl, v.host_id);
			pool_store_vm_get(st, id, &v);
			*status = 202;
			return vm_json(&v, false);
		}
		if (n == 4 && get && !strcmp(seg[3], "console")) {
			char url[256], agent[128], key[65], *text = NULL;
			int st_code = 0;

			if (pool_store_host_agent(st, v.host_id, agent, sizeof(agent), key))
				return reply(status, 502, "the server's host is unknown");
			snprintf(url, sizeof(url), "%s/v1/console/%" PRId64, agent, id);
			/* the agent proves nothing to us here; we present the key it registered */
			pthread_mutex_unlock(&ctl->lock);
			ret = pool_http("GET", url, key, NULL, 3000, &st_code, &text);
			pthread_mutex_lock(&ctl->lock);
			if (ret || st_code != 200) {
				free(text);
				return reply(status, 502, "the host agent did not return the console");
			}
			*status = 200;
			out = json_pack("{ss}", "console", text);
			free(text);
			return out;
		}
		return reply(status, 405, "method not allowed on this server resource");
	}
	if (!strcmp(res, "flavors") || !strcmp(res, "images")) {
		bool fl = res[0] == 'f';

		if (n == 2 && get) {
			out = json_array();
			if (fl) {
				struct pool_flavor *f;
				int nf;

				if (pool_store_flavor_list(st, &f, &nf))
					return store_error(status, -EIO);
				for (int i = 0; i < nf; i++)
					json_array_append_new(
						out, json_pack("{ss sI sI sI}", "name", f[i].name,
							       "vcpus", (json_int_t)f[i].vcpus, "ram_mb",
							       (json_int_t)f[i].ram_mb, "disk_gb",
							       (json_int_t)f[i].disk_gb));
				free(f);
			} else {
				struct pool_image *im;
				int ni;

				if (pool_store_image_list(st, &im, &ni))
					return store_error(status, -EIO);
				for (int i = 0; i < ni; i++)
					json_array_append_new(
						out, json_pack("{ss ss ss sI ss ss ss}", "name",
							       im[i].name, "arch", im[i].arch,
							       "hypervisor", im[i].hypervisor,
							       "min_ram_mb", (json_int_t)im[i].min_ram_mb,
							       "kernel", im[i].kernel, "initrd",
							       im[i].initrd, "append", im[i].append));
				free(im);
			}
			*status = 200;
			return json_pack("{so}", fl ? "flavors" : "images", out);
		}
		ADMIN_ONLY();
		if (n == 2 && post && fl) {
			struct pool_flavor f = {0};

			BODY(f_flavor);
			snprintf(f.name, sizeof(f.name), "%s", jstr(o, "name", ""));
			f.vcpus = jint(o, "vcpus", 0);
			f.ram_mb = jint(o, "ram_mb", 0);
			f.disk_gb = jint(o, "disk_gb", 0);
			json_decref(o);
			if (!name_ok(f.name) || f.vcpus < 1 || f.vcpus > 1024 || f.ram_mb < 1 ||
			    f.disk_gb < 0)
				return reply(status, 400, "a flavor needs a name, vcpus 1-1024, "
							  "ram_mb >= 1 and disk_gb >= 0");
			err_clear();
			ret = pool_store_flavor_create(st, &f, &f.id);
			if (ret)
				return store_error(status, ret);
			*status = 201;
			return json_pack("{ss sI}", "name", f.name, "id", (json_int_t)f.id);
		}
		if (n == 2 && post) {
			struct pool_image im = {0};

			BODY(f_image);
			snprintf(im.name, sizeof(im.name), "%s", jstr(o, "name", ""));
			snprintf(im.arch, sizeof(im.arch), "%s", jstr(o, "arch", ""));
			snprintf(im.hypervisor, sizeof(im.hypervisor), "%s",
				 jstr(o, "hypervisor", ""));
			im.min_ram_mb = jint(o, "min_ram_mb", 0);
			snprintf(im.kernel, sizeof(im.kernel), "%s", jstr(o, "kernel", ""));
			snprintf(im.initrd, sizeof(im.initrd), "%s", jstr(o, "initrd", ""));
			snprintf(im.append, sizeof(im.append), "%s", jstr(o, "append", "console=ttyS0"));
			json_decref(o);
			if (!name_ok(im.name) || !sched_arch_bit(im.arch) ||
			    (*im.hypervisor && !sched_driver_bit(im.hypervisor)) || im.min_ram_mb < 0)
				return reply(status, 400, "an image needs a name, an arch (riscv64, "
							  "x86_64, aarch64) and optionally a "
							  "hypervisor (kumo, qemu)");
			err_clear();
			ret = pool_store_image_create(st, &im, &im.id);
			if (ret)
				return store_error(status, ret);
			*status = 201;
			return json_pack("{ss sI}", "name", im.name, "id", (json_int_t)im.id);
		}
		if (n == 3 && del && fl) {
			err_clear();
			ret = pool_store_flavor_delete(st, seg[2]);
			if (ret)
				return store_error(status, ret);
			*status = 200;
			return json_pack("{ss}", "deleted", seg[2]);
		}
		return reply(status, 405, "method not allowed");
	}
	if (!strcmp(res, "server-groups")) {
		if (who->admin)
			return reply(status, 403, "server groups belong to tenants");
		if (n == 2 && post) {
			BODY(f_group);
			int policy = sched_group_policy_parse(jstr(o, "policy", ""));
			char gname[64];

			snprintf(gname, sizeof(gname), "%s", jstr(o, "name", ""));
			json_decref(o);
			if (policy <= 0 || !name_ok(gname))
				return reply(status, 400, "a group needs a name and a policy: affinity, "
							  "anti-affinity, soft-affinity, "
							  "soft-anti-affinity");
			err_clear();
			ret = pool_store_group_create(st, who->tenant.id, gname, policy, &id);
			if (ret)
				return store_error(status, ret);
			*status = 201;
			return json_pack("{ss sI ss}", "name", gname, "id", (json_int_t)id, "policy",
					 sched_group_policy_name(policy));
		}
		return reply(status, 405, "method not allowed");
	}
	if (!strcmp(res, "usage")) {
		struct pool_usage *u;
		int nu;
		int64_t now = pool_now_ms();
		int64_t from = query_int(query, "start", now / 1000 - 86400) * 1000;
		int64_t to = query_int(query, "end", now / 1000 + 1) * 1000;

		if (!get || n != 2)
			return reply(status, 405, "method not allowed");
		if (pool_store_usage(st, who->admin ? 0 : who->tenant.id, from, to, &u, &nu))
			return store_error(status, -EIO);
		out = json_array();
		for (int i = 0; i < nu; i++)
			json_array_append_new(out, json_pack("{sI ss sf sf sf}", "tenant_id",
							     (json_int_t)u[i].tenant_id, "tenant",
							     u[i].tenant, "vm_seconds", u[i].vm_seconds,
							     "vcpu_seconds", u[i].vcpu_seconds,
							     "ram_gib_seconds", u[i].gib_seconds));
		free(u);
		*status = 200;
		return json_pack("{sI sI so}", "start", (json_int_t)(from / 1000), "end",
				 (json_int_t)(to / 1000), "usage", out);
	}

	if (!who->agent)
		ADMIN_ONLY();
	if (!strcmp(res, "tenants")) {
		if (n == 2 && post) {
			char token[65], tname[64];

			BODY(f_tenant);
			snprintf(tname, sizeof(tname), "%s", jstr(o, "name", ""));
			int64_t qi = jint(o, "max_instances", 10), qv = jint(o, "max_vcpus", 20),
				qr = jint(o, "max_ram_mb", 51200);

			json_decref(o);
			if (!name_ok(tname) || qi < 0 || qv < 0 || qr < 0)
				return reply(status, 400, "a tenant needs a name and non-negative quotas");
			err_clear();
			ret = pool_store_tenant_create(st, tname, qi, qv, qr, token, &id);
			if (ret)
				return store_error(status, ret);
			*status = 201;
			return json_pack("{sI ss ss}", "id", (json_int_t)id, "name", tname, "token",
					 token);
		}
		if (n == 2 && get) {
			struct pool_tenant *t;
			int nt;

			if (pool_store_tenant_list(st, &t, &nt))
				return store_error(status, -EIO);
			out = json_array();
			for (int i = 0; i < nt; i++)
				json_array_append_new(
					out, json_pack("{sI ss sI sI sI sI sI sI}", "id",
						       (json_int_t)t[i].id, "name", t[i].name,
						       "max_instances", (json_int_t)t[i].quota_instances,
						       "max_vcpus", (json_int_t)t[i].quota_vcpus,
						       "max_ram_mb", (json_int_t)t[i].quota_ram_mb,
						       "instances", (json_int_t)t[i].used_instances,
						       "vcpus", (json_int_t)t[i].used_vcpus, "ram_mb",
						       (json_int_t)t[i].used_ram_mb));
			free(t);
			*status = 200;
			return json_pack("{so}", "tenants", out);
		}
		return reply(status, 405, "method not allowed");
	}
	if (!strcmp(res, "hosts")) {
		int64_t now = pool_now_ms();

		if (n == 2 && get) {
			cache_refresh(ctl, true);
			out = json_array();
			for (int i = 0; i < ctl->nhosts; i++)
				json_array_append_new(out, host_json(&ctl->hosts[i], now,
								     ctl->sched.heartbeat_timeout_ms));
			*status = 200;
			return json_pack("{so}", "hosts", out);
		}
		if (n == 3 && post && !strcmp(seg[2], "tokens")) {
			char token[65], hname[64];

			BODY(f_token);
			snprintf(hname, sizeof(hname), "%s", jstr(o, "host", ""));
			json_decref(o);
			if (!name_ok(hname))
				return reply(status, 400, "field 'host' must be a host name");
			err_clear();
			ret = pool_store_host_token_create(st, hname, token);
			if (ret)
				return store_error(status, ret);
			*status = 201;
			return json_pack("{ss ss}", "host", hname, "token", token);
		}
		if (n == 3 && put && parse_id(seg[2], &id)) {
			BODY(f_host_set);
			json_t *en = json_object_get(o, "enabled");
			int enabled = en ? json_is_true(en) : -1;
			int64_t iso = jint(o, "isolated_tenant", -1);

			json_decref(o);
			err_clear();
			ret = pool_store_host_set(st, id, enabled, iso);
			if (ret)
				return store_error(status, ret);
			cache_refresh(ctl, true);
			*status = 200;
			return json_pack("{sI}", "id", (json_int_t)id);
		}
		return reply(status, 405, "method not allowed");
	}
	if (!strcmp(res, "agent")) {
		if (n == 3 && post && !strcmp(seg[2], "register")) {
			struct pool_host_info hi = {0};
			json_t *v;
			size_t i;

			BODY(f_register);
			snprintf(hi.name, sizeof(hi.name), "%s", jstr(o, "name", ""));
			snprintf(hi.url, sizeof(hi.url), "%s", jstr(o, "url", ""));
			snprintf(hi.az, sizeof(hi.az), "%s", jstr(o, "az", ""));
			json_array_foreach(json_object_get(o, "archs"), i, v)
				hi.archs |= sched_arch_bit(json_string_value(v));
			json_array_foreach(json_object_get(o, "drivers"), i, v)
				hi.drivers |= sched_driver_bit(json_string_value(v));
			hi.total[SCHED_VCPU] = jint(o, "vcpus", 0);
			hi.total[SCHED_RAM] = jint(o, "ram_mb", 0);
			hi.total[SCHED_DISK] = jint(o, "disk_gb", 0);
			hi.reserved[SCHED_VCPU] = jint(o, "reserved_vcpus", 0);
			hi.reserved[SCHED_RAM] = jint(o, "reserved_ram_mb", 0);
			hi.reserved[SCHED_DISK] = jint(o, "reserved_disk_gb", 0);
			static const char *const rk[] = {"vcpu_ratio", "ram_ratio", "disk_ratio"};

			for (int r = 0; r < SCHED_NRES; r++) {
				json_t *x = json_object_get(o, rk[r]);

				hi.ratio[r] = x ? json_number_value(x) : 1.0;
			}
			hi.isolated_tenant = jint(o, "isolated_tenant", 0);
			snprintf(hi.console_key, sizeof(hi.console_key), "%s",
				 jstr(o, "console_key", ""));
			json_decref(o);
			if (who->agent && strcmp(hi.name, who->host))
				return reply(status, 403, "this agent token is for host '%s', not '%s'",
					     who->host, hi.name);
			if (!name_ok(hi.name) || !hi.archs || hi.total[0] < 0 || hi.total[1] < 0 ||
			    hi.total[2] < 0 || hi.ratio[0] <= 0 || hi.ratio[1] <= 0 ||
			    hi.ratio[2] <= 0 || strncmp(hi.url, "http", 4))
				return reply(status, 400, "a host needs a name, an http URL, known "
							  "archs, non-negative inventory and "
							  "positive ratios");
			err_clear();
			ret = pool_store_host_register(st, &hi, &id);
			if (ret)
				return store_error(status, ret);
			cache_refresh(ctl, true);
			*status = 200;
			return json_pack("{sI}", "id", (json_int_t)id);
		}
		if (n == 5 && post && !strcmp(seg[2], "hosts") && parse_id(seg[3], &id) &&
		    !strcmp(seg[4], "heartbeat")) {
			if (!agent_owns(ctl, who, id))
				return reply(status, 403, "this agent token is for host '%s', not host "
							  "%" PRId64, who->host, id);
			err_clear();
			ret = pool_store_host_heartbeat(st, id);
			if (ret)
				return store_error(status, ret);
			return agent_servers(ctl, id, status);
		}
		if (n == 4 && put && !strcmp(seg[2], "servers") && parse_id(seg[3], &id)) {
			struct pool_vm v;

			BODY(f_state);
			const char *state = jstr(o, "state", ""), *fault = jstr(o, "fault", "");

			if (pool_store_vm_get(st, id, &v)) {
				json_decref(o);
				return reply(status, 404, "no server %" PRId64, id);
			}
			if (!agent_owns(ctl, who, v.host_id)) {
				json_decref(o);
				return reply(status, 403, "server %" PRId64 " is not placed on host '%s'",
					     id, who->host);
			}
			if (!strcmp(state, "deleted")) {
				ret = pool_store_vm_release(st, id, "deleted", NULL);
			} else if (!strcmp(state, "error") && !strcmp(v.state, "building")) {
				build_failed(ctl, &v, fault);
				ret = 0;
			} else if (!strcmp(state, "active") || !strcmp(state, "stopped") ||
				   !strcmp(state, "error")) {
				ret = pool_store_vm_set_state(st, id, state, fault);
			} else {
				json_decref(o);
				return reply(status, 400, "unknown state '%s'", state);
			}
			json_decref(o);
			if (ret)
				return store_error(status, ret);
			cache_reload(ctl, v.host_id);
			*status = 200;
			return json_pack("{sI}", "id", (json_int_t)id);
		}
	}
	return reply(status, 404, "no such resource");
}

json_t *pool_ctl_handle(struct pool_ctl *ctl, const char *method, const char *path,
			const char *token, const char *body, size_t len, int *status)
{
	char buf[512];
	const char *q = strchr(path, '?');
	size_t pl = q ? (size_t)(q - path) : strlen(path);
	struct who who = {0};
	json_t *out;

	if (pl >= sizeof(buf))
		return reply(status, 414, "path too long");
	memcpy(buf, path, pl);
	buf[pl] = '\0';
	if (!token || !*token)
		return reply(status, 401, "missing bearer token (Authorization: Bearer TOKEN)");
	if (len > POOL_MAX_BODY)
		return reply(status, 413, "request body over %d bytes", POOL_MAX_BODY);
	pthread_mutex_lock(&ctl->lock);
	if (tok_eq(token, ctl->admin_token)) {
		who.admin = true;
	} else if (strlen(token) > 128 ||
		   (pool_store_tenant_by_token(ctl->st, token, &who.tenant) &&
		    pool_store_host_token_check(ctl->st, token, who.host))) {
		pthread_mutex_unlock(&ctl->lock);
		return reply(status, 401, "invalid token");
	}
	who.agent = *who.host != '\0';
	out = route(ctl, method, buf, q ? q + 1 : NULL, &who, body, len, status);
	pthread_mutex_unlock(&ctl->lock);
	if (!out)
		out = reply(status, 500, "out of memory");
	return out;
}

int pool_ctl_new(const struct pool_ctl_config *cfg, struct pool_ctl **out)
{
	struct pool_ctl *ctl = calloc(1, sizeof(*ctl));
	int ret;

	if (!ctl)
		return -ENOMEM;
	if (!cfg->admin_token || strlen(cfg->admin_token) < 8 ||
	    strlen(cfg->admin_token) >= sizeof(ctl->admin_token)) {
		err_set("the admin token must be 8 to 127 characters");
		free(ctl);
		return -EINVAL;
	}
	snprintf(ctl->admin_token, sizeof(ctl->admin_token), "%s", cfg->admin_token);
	pthread_mutex_init(&ctl->lock, NULL);
	ctl->sched = cfg->sched;
	ctl->refresh_ms = cfg->refresh_ms > 0 ? cfg->refresh_ms : 500;
	ret = pool_store_open(cfg->db_url, &ctl->st);
	if (!ret)
		ret = pool_store_hosts_load(ctl->st, &ctl->hosts, &ctl->nhosts);
	if (ret) {
		pool_ctl_free(ctl);
		return ret;
	}
	ctl->cap = ctl->nhosts;
	ctl->last_refresh_ms = pool_now_ms();
	*out = ctl;
	return 0;
}

/* --- libmicrohttpd glue --- */

struct conn {
	char *body;
	size_t len;
	bool too_big;
};

static enum MHD_Result send_json(struct MHD_Connection *c, int status, json_t *j)
{
	char *text = json_dumps(j, JSON_COMPACT);
	struct MHD_Response *r;
	enum MHD_Result ret;

	json_decref(j);
	if (!text)
		return MHD_NO;
	size_t n = strlen(text);

	text[n] = '\0';
	r = MHD_create_response_from_buffer(n, text, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", "application/json");
	ret = MHD_queue_response(c, (unsigned)status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct pool_ctl *ctl = cls;
	struct conn *cn = *con_cls;
	const char *auth, *token = NULL;
	char path[600];
	int status = 500;
	json_t *j;

	if (!cn) {
		cn = calloc(1, sizeof(*cn));
		if (!cn)
			return MHD_NO;
		*con_cls = cn;
		return MHD_YES;
	}
	if (*upload_size) {
		if (!cn->too_big && cn->len + *upload_size <= POOL_MAX_BODY) {
			char *b = realloc(cn->body, cn->len + *upload_size + 1);

			if (!b)
				return MHD_NO;
			cn->body = b;
			memcpy(cn->body + cn->len, upload, *upload_size);
			cn->len += *upload_size;
			cn->body[cn->len] = '\0';
		} else {
			cn->too_big = true;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (cn->too_big)
		return send_json(c, 413,
				 reply(&status, 413, "request body over %d bytes", POOL_MAX_BODY));
	auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	if (auth && !strncmp(auth, "Bearer ", 7))
		token = auth + 7;
	/* MHD gives the path without its query; rebuild "start=..&end=.." for /v1/usage */
	const char *start = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "start");
	const char *end = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "end");

	size_t o = (size_t)snprintf(path, sizeof(path), "%.400s?", url);

	if (start)
		o += (size_t)snprintf(path + o, sizeof(path) - o, "start=%.40s&", start);
	if (end)
		snprintf(path + o, sizeof(path) - o, "end=%.40s", end);
	j = pool_ctl_handle(ctl, method, path, token, cn->body, cn->len, &status);
	return send_json(c, status, j);
}

static void on_done(void *cls, struct MHD_Connection *c, void **con_cls,
		    enum MHD_RequestTerminationCode toe)
{
	struct conn *cn = *con_cls;

	if (cn) {
		free(cn->body);
		free(cn);
		*con_cls = NULL;
	}
}

int pool_ctl_listen(struct pool_ctl *ctl, const char *addr, int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};

	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
		err_set("'%s' is not an IPv4 address", addr);
		return -EINVAL;
	}
	ctl->mhd = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, (uint16_t)port,
				    NULL, NULL, on_request, ctl, MHD_OPTION_SOCK_ADDR, &sa,
				    MHD_OPTION_NOTIFY_COMPLETED, on_done, ctl,
				    MHD_OPTION_THREAD_POOL_SIZE, 4u, MHD_OPTION_CONNECTION_LIMIT,
				    2000u, MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
	if (!ctl->mhd) {
		err_set("cannot listen on %s:%d", addr, port);
		return -EADDRINUSE;
	}
	return 0;
}

void pool_ctl_free(struct pool_ctl *ctl)
{
	if (!ctl)
		return;
	if (ctl->mhd)
		MHD_stop_daemon(ctl->mhd);
	pool_store_close(ctl->st);
	free(ctl->hosts);
	pthread_mutex_destroy(&ctl->lock);
	free(ctl);
}
