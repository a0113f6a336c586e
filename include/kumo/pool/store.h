/*
 * store.h - the pool's state: one small SQL backend interface (SQLite or PostgreSQL) and the
 * domain operations written once on top of it (DESIGN.md §5).
 *
 * Usage: pool_store_open("sqlite:/path/pool.db" | "/path/pool.db" | "postgresql://...") opens
 * the database and applies the numbered migrations in src/pool/migrations/ that it lacks.
 * Every statement is written once with $1, $2, ... placeholders (SQLite accepts them as named
 * parameters numbered in order of appearance, so each statement uses them in order).
 *
 * Claims (pool_store_claim) are one transaction: a conditional quota update on the tenant row,
 * a generation compare-and-swap on the host row (UPDATE ... WHERE generation = $n, plus the
 * capacity check as a safety net), a compare-and-swap on the server group's generation, and
 * the VM insert. Heartbeats only touch hosts.heartbeat_ms and never bump the generation. Every
 * change to a host's usage bumps its generation and stamps hosts.seq from a counter row, so a
 * controller refreshes its host cache with "WHERE seq > last seen" (the counter row's lock
 * orders commits, so no change is skipped).
 *
 * A struct pool_store is one connection: not thread-safe, the caller serialises (the
 * controller holds one per process behind a mutex). Functions return 0 or -errno and set
 * err_set() with a sentence.
 */
#ifndef KUMO_POOL_STORE_H
#define KUMO_POOL_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kumo/pool/sched.h"

enum pool_val_type { POOL_NULL, POOL_INT, POOL_REAL, POOL_TEXT };

struct pool_val {
	enum pool_val_type type;
	int64_t i;
	double d;
	const char *s;
};

#define PV_I(x) ((struct pool_val){.type = POOL_INT, .i = (x)})
#define PV_D(x) ((struct pool_val){.type = POOL_REAL, .d = (x)})
static inline struct pool_val pool_val_text(const char *s)
{
	return (struct pool_val){.type = s ? POOL_TEXT : POOL_NULL, .s = s};
}
#define PV_S(x) pool_val_text(x)

/* Query results as text cells (NULL for SQL NULL); owned by the struct, freed by pool_rows_fini. */
struct pool_rows {
	int nrows, ncols;
	char **cell; /* row-major, nrows * ncols */
};

struct pool_db;

struct pool_db_ops {
	const char *name;
	/* One statement; `out` (may be NULL) receives the rows, `changes` the rows modified. */
	int (*exec)(struct pool_db *db, const char *sql, const struct pool_val *args, int nargs,
		    struct pool_rows *out, int64_t *changes);
	/* Several statements without parameters (migrations). */
	int (*script)(struct pool_db *db, const char *sql);
	int (*begin)(struct pool_db *db); /* write transaction (SQLite: BEGIN IMMEDIATE) */
	int (*commit)(struct pool_db *db);
	int (*rollback)(struct pool_db *db);
	void (*close)(struct pool_db *db);
	const char *id_type;	  /* the migrations' %ID% column type */
	const char *migrate_lock; /* statement run first in the migration transaction, or NULL */
};

struct pool_db {
	const struct pool_db_ops *ops;
};

int pool_sqlite_open(const char *path, struct pool_db **out);
int pool_pg_open(const char *url, struct pool_db **out);

const char *pool_rows_get(const struct pool_rows *r, int row, int col);
int64_t pool_rows_int(const struct pool_rows *r, int row, int col);
double pool_rows_real(const struct pool_rows *r, int row, int col);
void pool_rows_fini(struct pool_rows *r);

/* Embedded migrations (src/pool/migrations.c). */
struct pool_migration {
	int version;
	const char *name;
	const char *sql;
};
extern const struct pool_migration pool_migrations[];
extern const int pool_nmigrations;

/* --- domain --- */

struct pool_tenant {
	int64_t id;
	char name[64];
	int64_t quota_instances, quota_vcpus, quota_ram_mb;
	int64_t used_instances, used_vcpus, used_ram_mb;
};

struct pool_flavor {
	int64_t id;
	char name[64];
	int64_t vcpus, ram_mb, disk_gb;
};

struct pool_image {
	int64_t id;
	char name[64];
	char arch[16];	      /* "riscv64" */
	char hypervisor[16];  /* "" = any driver, "kumo", "qemu" */
	int64_t min_ram_mb;
	char kernel[256], initrd[256], append[256];
};

struct pool_group {
	int64_t id, tenant_id;
	char name[64];
	int policy; /* enum sched_group_policy */
	int64_t generation;
};

struct pool_vm {
	int64_t id, tenant_id, host_id, group_id, flavor_id, image_id;
	char name[64];
	int64_t vcpus, ram_mb, disk_gb;
	char state[16]; /* building, active, stopped, error, deleting, deleted */
	char fault[256];
	int64_t attempts;
	char alternates[256]; /* comma-separated host ids still to try after a failed build */
	int64_t created_ms, started_ms, deleted_ms;
	char host_name[64];
	char flavor_name[64], image_name[64];
};

struct pool_host_info {
	char name[64];
	char url[128];	    /* agent's base URL, e.g. http://127.0.0.2:7001 */
	char az[32];
	uint32_t archs, drivers;
	int64_t total[SCHED_NRES], reserved[SCHED_NRES];
	double ratio[SCHED_NRES];
	int64_t isolated_tenant;
	char console_key[65]; /* the agent's secret for console requests ("" = none) */
};

struct pool_claim {
	int64_t tenant_id;
	const char *name;
	int64_t flavor_id, image_id;
	int64_t need[SCHED_NRES];
	int64_t host_id, host_generation;
	int64_t group_id, group_generation; /* group_id 0: none */
	const char *alternates;
	const char *request_id; /* idempotency key or NULL */
};

struct pool_store {
	struct pool_db *db;
	int64_t host_seq; /* highest hosts.seq loaded by pool_store_hosts_refresh */
	int64_t heartbeat_seen_ms;
};

int pool_store_open(const char *url, struct pool_store **out);
void pool_store_close(struct pool_store *st);
int64_t pool_now_ms(void);

/* Tenants. `token` is returned once in the clear; only its SHA-256 is stored. */
int pool_store_tenant_create(struct pool_store *st, const char *name, int64_t q_instances,
			     int64_t q_vcpus, int64_t q_ram_mb, char token[65], int64_t *id);
int pool_store_tenant_by_token(struct pool_store *st, const char *token, struct pool_tenant *t);
int pool_store_tenant_get(struct pool_store *st, int64_t id, struct pool_tenant *t);
int pool_store_tenant_list(struct pool_store *st, struct pool_tenant **out, int *n);

int pool_store_flavor_create(struct pool_store *st, const struct pool_flavor *f, int64_t *id);
int pool_store_flavor_get(struct pool_store *st, const char *name, struct pool_flavor *f);
int pool_store_flavor_list(struct pool_store *st, struct pool_flavor **out, int *n);
int pool_store_flavor_delete(struct pool_store *st, const char *name);

int pool_store_image_create(struct pool_store *st, const struct pool_image *im, int64_t *id);
int pool_store_image_get(struct pool_store *st, const char *name, struct pool_image *im);
int pool_store_image_get_id(struct pool_store *st, int64_t id, struct pool_image *im);
int pool_store_image_list(struct pool_store *st, struct pool_image **out, int *n);

int pool_store_group_create(struct pool_store *st, int64_t tenant, const char *name, int policy,
			    int64_t *id);
int pool_store_group_get(struct pool_store *st, int64_t tenant, const char *name,
			 struct pool_group *g);
int pool_store_group_get_id(struct pool_store *st, int64_t id, struct pool_group *g);
/* Host of every live member (repeats kept); *out malloc'd. */
int pool_store_group_hosts(struct pool_store *st, int64_t group, int64_t **out, int *n);

/* Hosts. Register upserts by name (inventory changes bump the generation). */
int pool_store_host_register(struct pool_store *st, const struct pool_host_info *hi, int64_t *id);
int pool_store_host_heartbeat(struct pool_store *st, int64_t id);
int pool_store_host_set(struct pool_store *st, int64_t id, int enabled, int64_t isolated_tenant);
int pool_store_host_url(struct pool_store *st, int64_t id, char *url, size_t len);
/* The agent's URL and the console key it registered (key: 65 bytes). */
int pool_store_host_agent(struct pool_store *st, int64_t id, char *url, size_t len, char *key);

/*
 * Per-host agent credentials: issue (or replace) the token of host `host_name` (returned once
 * in the clear, only its SHA-256 stored); look a token up: 0 with the host name it acts for,
 * -ENOENT if it is no host token.
 */
int pool_store_host_token_create(struct pool_store *st, const char *host_name, char token[65]);
int pool_store_host_token_check(struct pool_store *st, const char *token, char host_name[64]);
/* Full load of every host; *out malloc'd (names/az included). */
int pool_store_hosts_load(struct pool_store *st, struct sched_host **out, int *n);
/*
 * Brings a loaded array up to date: rows whose seq moved (claims, registrations) and recent
 * heartbeats. New hosts are appended (the array may be reallocated).
 */
int pool_store_hosts_refresh(struct pool_store *st, struct sched_host **hosts, int *n, int *cap);
int pool_store_host_reload(struct pool_store *st, struct sched_host *h);

/*
 * The claim transaction. 0 with *vm_id; -EAGAIN when the host's or group's generation moved
 * (refresh and try an alternate); -EDQUOT over the tenant's quota; -ENOSPC the host is full
 * (cache was stale); -EEXIST request_id already used (*vm_id is that VM).
 */
int pool_store_claim(struct pool_store *st, const struct pool_claim *c, int64_t *vm_id);
/*
 * Moves a failed build to host `to` (generation CAS as in a claim), returning the resources on
 * its old host and counting a failure there. -EAGAIN/-ENOSPC as for claims.
 */
int pool_store_vm_move(struct pool_store *st, int64_t vm, int64_t to, int64_t to_generation,
		       const char *alternates);
/*
 * The same for a member of a server group: also a compare-and-swap on the group's generation
 * (the caller re-ran the group filter with the members it read at that generation). -EAGAIN
 * when the group changed. pool_store_vm_move refuses (-EINVAL) a member of a group.
 */
int pool_store_vm_move_group(struct pool_store *st, int64_t vm, int64_t to, int64_t to_generation,
			     int64_t group_generation, const char *alternates);
/* Frees a VM's claim: host usage, tenant usage; writes a usage record; state 'deleted'. */
int pool_store_vm_release(struct pool_store *st, int64_t vm, const char *final_state,
			  const char *fault);
/* Agent reports: building->active etc. Clears the host's build count when a build ends. */
int pool_store_vm_set_state(struct pool_store *st, int64_t vm, const char *state,
			    const char *fault);
int pool_store_vm_get(struct pool_store *st, int64_t id, struct pool_vm *vm);
/* tenant 0: all tenants; host 0: all hosts. Deleted VMs are left out. */
int pool_store_vm_list(struct pool_store *st, int64_t tenant, int64_t host, struct pool_vm **out,
		       int *n);

struct pool_usage {
	int64_t tenant_id;
	char tenant[64];
	double vm_seconds, vcpu_seconds, gib_seconds; /* RAM GiB-seconds */
};
/* Usage per tenant over [from_ms, to_ms); tenant 0: every tenant. */
int pool_store_usage(struct pool_store *st, int64_t tenant, int64_t from_ms, int64_t to_ms,
		     struct pool_usage **out, int *n);

/* SHA-256 (FIPS 180-4) as 64 hex digits; used for API tokens. */
void pool_sha256_hex(const void *data, size_t len, char out[65]);

#endif
