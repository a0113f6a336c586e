/*
 * store.c - the pool's domain operations, written once over the SQL backend interface
 * (see kumo/pool/store.h for the transaction and caching rules).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "kumo/base.h"
#include "kumo/pool/store.h"

#define EXEC(st, sql, out, ch, ...) \
	({ \
		const struct pool_val a_[] = {PV_I(0), ##__VA_ARGS__}; \
		(st)->db->ops->exec((st)->db, (sql), a_ + 1, (int)ARRAY_SIZE(a_) - 1, (out), (ch)); \
	})

int64_t pool_now_ms(void)
{
	return (int64_t)(clock_realtime_ns() / 1000000);
}

const char *pool_rows_get(const struct pool_rows *r, int row, int col)
{
	if (row < 0 || row >= r->nrows || col < 0 || col >= r->ncols)
		return NULL;
	return r->cell[row * r->ncols + col];
}

int64_t pool_rows_int(const struct pool_rows *r, int row, int col)
{
	const char *s = pool_rows_get(r, row, col);

	return s ? strtoll(s, NULL, 10) : 0;
}

double pool_rows_real(const struct pool_rows *r, int row, int col)
{
	const char *s = pool_rows_get(r, row, col);

	return s ? strtod(s, NULL) : 0;
}

void pool_rows_fini(struct pool_rows *r)
{
	if (!r->cell)
		return;
	for (int i = 0; i < r->nrows * r->ncols; i++)
		free(r->cell[i]);
	free(r->cell);
	memset(r, 0, sizeof(*r));
}

static void copy_str(char *dst, size_t len, const char *s)
{
	snprintf(dst, len, "%s", s ? s : "");
}

/* --- open and migrate --- */

static char *expand_ids(const char *sql, const char *id_type)
{
	size_t n = strlen(sql), tl = strlen(id_type), cnt = 0;
	const char *p;
	char *out, *o;

	for (p = sql; (p = strstr(p, "%ID%")); p += 4)
		cnt++;
	out = malloc(n + cnt * tl + 1);
	if (!out)
		return NULL;
	for (o = out, p = sql; *p;) {
		if (!strncmp(p, "%ID%", 4)) {
			memcpy(o, id_type, tl);
			o += tl;
			p += 4;
		} else {
			*o++ = *p++;
		}
	}
	*o = '\0';
	return out;
}

static int migrate(struct pool_store *st)
{
	const struct pool_db_ops *ops = st->db->ops;
	struct pool_rows rows;
	int ret;

	ret = ops->begin(st->db);
	if (ret)
		return ret;
	if (ops->migrate_lock)
		ret = ops->exec(st->db, ops->migrate_lock, NULL, 0, NULL, NULL);
	if (!ret)
		ret = ops->script(st->db, "CREATE TABLE IF NOT EXISTS schema_migrations ("
					  "version BIGINT PRIMARY KEY, name TEXT NOT NULL, "
					  "applied_ms BIGINT NOT NULL)");
	if (ret)
		goto out_rollback;
	ret = ops->commit(st->db);
	if (ret)
		return ret;
	for (int i = 0; i < pool_nmigrations; i++) {
		const struct pool_migration *m = &pool_migrations[i];
		char *sql;

		ret = ops->begin(st->db);
		if (ret)
			return ret;
		if (ops->migrate_lock) {
			ret = ops->exec(st->db, ops->migrate_lock, NULL, 0, NULL, NULL);
			if (ret)
				goto out_rollback;
		}
		ret = EXEC(st, "SELECT version FROM schema_migrations WHERE version = $1", &rows, NULL,
			   PV_I(m->version));
		if (ret)
			goto out_rollback;
		bool done = rows.nrows > 0;

		pool_rows_fini(&rows);
		if (done) {
			ops->commit(st->db);
			continue;
		}
		sql = expand_ids(m->sql, ops->id_type);
		ret = sql ? ops->script(st->db, sql) : -ENOMEM;
		free(sql);
		if (ret)
			goto out_rollback;
		ret = EXEC(st, "INSERT INTO schema_migrations (version, name, applied_ms) "
			       "VALUES ($1, $2, $3)",
			   NULL, NULL, PV_I(m->version), PV_S(m->name), PV_I(pool_now_ms()));
		if (ret)
			goto out_rollback;
		ret = ops->commit(st->db);
		if (ret)
			return ret;
		log_info("pool: applied migration %s", m->name);
	}
	return 0;
out_rollback:
	ops->rollback(st->db);
	return ret;
}

int pool_store_open(const char *url, struct pool_store **out)
{
	struct pool_store *st = calloc(1, sizeof(*st));
	int ret;

	if (!st)
		return -ENOMEM;
	if (!strncmp(url, "postgres://", 11) || !strncmp(url, "postgresql://", 13))
		ret = pool_pg_open(url, &st->db);
	else
		ret = pool_sqlite_open(!strncmp(url, "sqlite:", 7) ? url + 7 : url, &st->db);
	if (ret) {
		free(st);
		return ret;
	}
	ret = migrate(st);
	if (ret) {
		pool_store_close(st);
		return ret;
	}
	*out = st;
	return 0;
}

void pool_store_close(struct pool_store *st)
{
	if (!st)
		return;
	if (st->db)
		st->db->ops->close(st->db);
	free(st);
}

static int txn_begin(struct pool_store *st)
{
	return st->db->ops->begin(st->db);
}

static int txn_end(struct pool_store *st, int ret)
{
	if (ret) {
		st->db->ops->rollback(st->db);
		return ret;
	}
	return st->db->ops->commit(st->db);
}

/* Next value of the host change counter; its row lock orders host changes by commit. */
static int next_seq(struct pool_store *st, int64_t *seq)
{
	struct pool_rows r;
	int ret = EXEC(st, "UPDATE pool_meta SET v = v + 1 WHERE k = 'host_seq' RETURNING v", &r,
		       NULL);

	if (ret)
		return ret;
	*seq = pool_rows_int(&r, 0, 0);
	pool_rows_fini(&r);
	return 0;
}

/* --- tenants --- */

#define TENANT_COLS \
	"id, name, quota_instances, quota_vcpus, quota_ram_mb, used_instances, used_vcpus, " \
	"used_ram_mb"

/*
 * The end of a "one row by key" or "every row" query, shared by each kind of record: convert
 * the rows with FROM(rows, index, record) and release them. ROWS_ONE gives -ENOENT when nothing
 * matched; ROWS_ALL fills *OUT with a calloc'ed array of *N records (one spare, zeroed, so an
 * empty result is still a valid pointer) that the caller frees, or gives -ENOMEM.
 */
#define ROWS_ONE(rows, from, rec) \
	({ \
		int ret_ = (rows)->nrows ? 0 : -ENOENT; \
		if (!ret_) \
			from((rows), 0, (rec)); \
		pool_rows_fini(rows); \
		ret_; \
	})
#define ROWS_ALL(rows, from, out, n) \
	({ \
		int ret_ = 0; \
		*(out) = calloc((size_t)(rows)->nrows + 1, sizeof(**(out))); \
		if (!*(out)) { \
			ret_ = -ENOMEM; \
		} else { \
			for (int i_ = 0; i_ < (rows)->nrows; i_++) \
				from((rows), i_, &(*(out))[i_]); \
			*(n) = (rows)->nrows; \
		} \
		pool_rows_fini(rows); \
		ret_; \
	})

static void tenant_from(const struct pool_rows *r, int i, struct pool_tenant *t)
{
	t->id = pool_rows_int(r, i, 0);
	copy_str(t->name, sizeof(t->name), pool_rows_get(r, i, 1));
	t->quota_instances = pool_rows_int(r, i, 2);
	t->quota_vcpus = pool_rows_int(r, i, 3);
	t->quota_ram_mb = pool_rows_int(r, i, 4);
	t->used_instances = pool_rows_int(r, i, 5);
	t->used_vcpus = pool_rows_int(r, i, 6);
	t->used_ram_mb = pool_rows_int(r, i, 7);
}

int pool_store_tenant_create(struct pool_store *st, const char *name, int64_t q_instances,
			     int64_t q_vcpus, int64_t q_ram_mb, char token[65], int64_t *id)
{
	unsigned char raw[24];
	char hash[65];
	struct pool_rows r;
	int ret;

	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
		err_set("no randomness for a token");
		return -EIO;
	}
	for (size_t i = 0; i < sizeof(raw); i++)
		sprintf(token + 2 * i, "%02x", raw[i]);
	pool_sha256_hex(token, strlen(token), hash);
	ret = EXEC(st, "INSERT INTO tenants (name, token_hash, quota_instances, quota_vcpus, "
		       "quota_ram_mb, created_ms) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
		   &r, NULL, PV_S(name), PV_S(hash), PV_I(q_instances), PV_I(q_vcpus),
		   PV_I(q_ram_mb), PV_I(pool_now_ms()));
	if (ret == -EEXIST)
		err_set("a tenant named '%s' exists", name);
	if (ret)
		return ret;
	*id = pool_rows_int(&r, 0, 0);
	pool_rows_fini(&r);
	return 0;
}

int pool_store_tenant_by_token(struct pool_store *st, const char *token, struct pool_tenant *t)
{
	char hash[65];
	struct pool_rows r;
	int ret;

	pool_sha256_hex(token, strlen(token), hash);
	ret = EXEC(st, "SELECT " TENANT_COLS " FROM tenants WHERE token_hash = $1", &r, NULL,
		   PV_S(hash));
	return ret ? ret : ROWS_ONE(&r, tenant_from, t);
}

int pool_store_tenant_get(struct pool_store *st, int64_t id, struct pool_tenant *t)
{
	struct pool_rows r;
	int ret = EXEC(st, "SELECT " TENANT_COLS " FROM tenants WHERE id = $1", &r, NULL, PV_I(id));

	return ret ? ret : ROWS_ONE(&r, tenant_from, t);
}

int pool_store_tenant_list(struct pool_store *st, struct pool_tenant **out, int *n)
{
	struct pool_rows r;
	int ret = EXEC(st, "SELECT " TENANT_COLS " FROM tenants ORDER BY id", &r, NULL);

	return ret ? ret : ROWS_ALL(&r, tenant_from, out, n);
}

/* --- flavors and images --- */

static void flavor_from(const struct pool_rows *r, int i, struct pool_flavor *f)
{
	f->id = pool_rows_int(r, i, 0);
	copy_str(f->name, sizeof(f->name), pool_rows_get(r, i, 1));
	f->vcpus = pool_rows_int(r, i, 2);
	f->ram_mb = pool_rows_int(r, i, 3);
	f->disk_gb = pool_rows_int(r, i, 4);
}

int pool_store_flavor_create(struct pool_store *st, const struct pool_flavor *f, int64_t *id)
{
	struct pool_rows r;
	int ret = EXEC(st, "INSERT INTO flavors (name, vcpus, ram_mb, disk_gb, created_ms) VALUES "
			   "($1, $2, $3, $4, $5) RETURNING id",
		       &r, NULL, PV_S(f->name), PV_I(f->vcpus), PV_I(f->ram_mb), PV_I(f->disk_gb),
		       PV_I(pool_now_ms()));

	if (ret == -EEXIST)
		err_set("a flavor named '%s' exists", f->name);
	if (ret)
		return ret;
	*id = pool_rows_int(&r, 0, 0);
	pool_rows_fini(&r);
	return 0;
}

int pool_store_flavor_get(struct pool_store *st, const char *name, struct pool_flavor *f)
{
	struct pool_rows r;
	int ret = EXEC(st, "SELECT id, name, vcpus, ram_mb, disk_gb FROM flavors WHERE name = $1",
		       &r, NULL, PV_S(name));

	if (ret)
		return ret;
	ret = r.nrows ? 0 : -ENOENT;
	if (!ret)
		flavor_from(&r, 0, f);
	else
		err_set("no flavor named '%s'", name);
	pool_rows_fini(&r);
	return ret;
}

int pool_store_flavor_list(struct pool_store *st, struct pool_flavor **out, int *n)
{
	struct pool_rows r;
	int ret = EXEC(st, "SELECT id, name, vcpus, ram_mb, disk_gb FROM flavors ORDER BY id", &r,
		       NULL);

	return ret ? ret : ROWS_ALL(&r, flavor_from, out, n);
}

int pool_store_flavor_delete(struct pool_store *st, const char *name)
{
	int64_t ch = 0;
	int ret = EXEC(st, "DELETE FROM flavors WHERE name = $1", NULL, &ch, PV_S(name));

	if (!ret && !ch) {
		err_set("no flavor named '%s'", name);
		ret = -ENOENT;
	}
	return ret;
}

#define IMAGE_COLS "id, name, arch, hypervisor, min_ram_mb, kernel, initrd, append"

static void image_from(const struct pool_rows *r, int i, struct pool_image *im)
{
	im->id = pool_rows_int(r, i, 0);
	copy_str(im->name, sizeof(im->name), pool_rows_get(r, i, 1));
	copy_str(im->arch, sizeof(im->arch), pool_rows_get(r, i, 2));
	copy_str(im->hypervisor, sizeof(im->hypervisor), pool_rows_get(r, i, 3));
	im->min_ram_mb = pool_rows_int(r, i, 4);
	copy_str(im->kernel, sizeof(im->kernel), pool_rows_get(r, i, 5));
	copy_str(im->initrd, sizeof(im->initrd), pool_rows_get(r, i, 6));
	copy_str(im->append, sizeof(im->append), pool_rows_get(r, i, 7));
}

int pool_store_image_create(struct pool_store *st, const struct pool_image *im, int64_t *id)
{
	struct pool_rows r;
	int ret = EXEC(st, "INSERT INTO images (name, arch, hypervisor, min_ram_mb, kernel, initrd, "
			   "append, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
		       &r, NULL, PV_S(im->name), PV_S(im->arch), PV_S(im->hypervisor),
		       PV_I(im->min_ram_mb), PV_S(im->kernel), PV_S(im->initrd), PV_S(im->append),
		       PV_I(pool_now_ms()));

	if (ret == -EEXIST)
		err_set("an image named '%s' exists", im->name);
	if (ret)
		return ret;
	*id = pool_rows_int(&r, 0, 0);
	pool_rows_fini(&r);
	return 0;
}

int pool_store_image_get(struct pool_store *st, const char *name, struct pool_image *im)
{
	struct pool_rows r;
	int ret = EXEC(st, "SELECT " IMAGE_COLS " FROM images WHERE name = $1", &r, NULL,
		       PV_S(name));

	if (ret)
		return ret;
	ret = r.nrows ? 0 : -ENOENT;
	if (!ret)
		image_from(&r, 0, im);
	else
		err_set("no image named '%s'", name);
	pool_rows_fini(&r);
	return ret;
}

int pool_store_image_get_id(struct pool_store *st, int64_t id, struct pool_image *im)
{
	struct pool_rows r;
	int ret = EXEC(st, "SELECT " IMAGE_COLS " FROM images WHERE id = $1", &r, NULL, PV_I(id));

	return ret ? ret : ROWS_ONE(&r, image_from, im);
}

int pool_store_image_list(struct pool_store *st, struct pool_image **out, int *n)
{
	struct pool_rows r;
	int ret = EXEC(st, "SELECT " IMAGE_COLS " FROM images ORDER BY id", &r, NULL);

	return ret ? ret : ROWS_ALL(&r, image_from, out, n);
}

/* --- server groups --- */

int pool_store_group_create(struct pool_store *st, int64_t tenant, const char *name, int policy,
			    int64_t *id)
{
	struct pool_rows r;
	int ret = EXEC(st, "INSERT INTO server_groups (tenant_id, name, policy, created_ms) VALUES "
			   "($1, $2, $3, $4) RETURNING id",
		       &r, NULL, PV_I(tenant), PV_S(name), PV_S(sched_group_policy_name(policy)),
		       PV_I(pool_now_ms()));

	if (ret == -EEXIST)
		err_set("a server group named '%s' exists", name);
	if (ret)
		return ret;
	*id = pool_rows_int(&r, 0, 0);
	pool_rows_fini(&r);
	return 0;
}

int pool_store_group_get(struct pool_store *st, int64_t tenant, const char *name,
			 struct pool_group *g)
{
	struct pool_rows r;
	int ret = EXEC(st, "SELECT id, tenant_id, name, policy, generation FROM server_groups "
			   "WHERE tenant_id = $1 AND name = $2",
		       &r, NULL, PV_I(tenant), PV_S(name));

	if (ret)
		return ret;
	if (!r.nrows) {
		err_set("no server group named '%s'", name);
		pool_rows_fini(&r);
		return -ENOENT;
	}
	g->id = pool_rows_int(&r, 0, 0);
	g->tenant_id = pool_rows_int(&r, 0, 1);
	copy_str(g->name, sizeof(g->name), pool_rows_get(&r, 0, 2));
	g->policy = sched_group_policy_parse(pool_rows_get(&r, 0, 3));
	g->generation = pool_rows_int(&r, 0, 4);
	pool_rows_fini(&r);
	return 0;
}

int pool_store_group_get_id(struct pool_store *st, int64_t id, struct pool_group *g)
{
	struct pool_rows r;
	int ret = EXEC(st, "SELECT id, tenant_id, name, policy, generation FROM server_groups "
			   "WHERE id = $1",
		       &r, NULL, PV_I(id));

	if (ret)
		return ret;
	if (!r.nrows) {
		err_set("no server group %lld", (long long)id);
		pool_rows_fini(&r);
		return -ENOENT;
	}
	g->id = pool_rows_int(&r, 0, 0);
	g->tenant_id = pool_rows_int(&r, 0, 1);
	copy_str(g->name, sizeof(g->name), pool_rows_get(&r, 0, 2));
	g->policy = sched_group_policy_parse(pool_rows_get(&r, 0, 3));
	g->generation = pool_rows_int(&r, 0, 4);
	pool_rows_fini(&r);
	return 0;
}

int pool_store_group_hosts(struct pool_store *st, int64_t group, int64_t **out, int *n)
{
	struct pool_rows r;
	int ret = EXEC(st, "SELECT host_id FROM vms WHERE group_id = $1 AND state <> 'deleted'", &r,
		       NULL, PV_I(group));

	if (ret)
		return ret;
	*out = calloc((size_t)r.nrows + 1, sizeof(int64_t));
	if (!*out) {
		pool_rows_fini(&r);
		return -ENOMEM;
	}
	for (int i = 0; i < r.nrows; i++)
		(*out)[i] = pool_rows_int(&r, i, 0);
	*n = r.nrows;
	pool_rows_fini(&r);
	return 0;
}

/* --- hosts --- */

#define HOST_COLS \
	"id, generation, vcpu_used, ram_used, disk_used, vcpu_total, ram_total, disk_total, " \
	"vcpu_reserved, ram_reserved, disk_reserved, vcpu_ratio, ram_ratio, disk_ratio, " \
	"heartbeat_ms, instances, builds, recent_failures, archs, drivers, isolated_tenant, " \
	"enabled, az, name, seq"

static void host_from(const struct pool_rows *r, int i, struct sched_host *h)
{
	memset(h, 0, sizeof(*h));
	h->id = pool_rows_int(r, i, 0);
	h->generation = pool_rows_int(r, i, 1);
	for (int k = 0; k < SCHED_NRES; k++) {
		h->used[k] = pool_rows_int(r, i, 2 + k);
		h->total[k] = pool_rows_int(r, i, 5 + k);
		h->reserved[k] = pool_rows_int(r, i, 8 + k);
		h->ratio[k] = pool_rows_real(r, i, 11 + k);
	}
	h->heartbeat_ms = pool_rows_int(r, i, 14);
	h->instances = (int32_t)pool_rows_int(r, i, 15);
	h->builds = (int32_t)pool_rows_int(r, i, 16);
	h->recent_failures = (int32_t)pool_rows_int(r, i, 17);
	h->archs = (uint32_t)pool_rows_int(r, i, 18);
	h->drivers = (uint32_t)pool_rows_int(r, i, 19);
	h->isolated_tenant = pool_rows_int(r, i, 20);
	h->enabled = pool_rows_int(r, i, 21) != 0;
	copy_str(h->az, sizeof(h->az), pool_rows_get(r, i, 22));
	copy_str(h->name, sizeof(h->name), pool_rows_get(r, i, 23));
}

int pool_store_host_register(struct pool_store *st, const struct pool_host_info *hi, int64_t *id)
{
	struct pool_rows r;
	int64_t seq, now = pool_now_ms();
	int ret = txn_begin(st);

	if (ret)
		return ret;
	ret = next_seq(st, &seq);
	if (ret)
		goto out;
	ret = EXEC(st, "SELECT id FROM hosts WHERE name = $1", &r, NULL, PV_S(hi->name));
	if (ret)
		goto out;
	if (r.nrows) {
		*id = pool_rows_int(&r, 0, 0);
		pool_rows_fini(&r);
		ret = EXEC(st, "UPDATE hosts SET url = $1, az = $2, archs = $3, drivers = $4, "
			       "vcpu_total = $5, vcpu_reserved = $6, vcpu_ratio = $7, ram_total = $8, "
			       "ram_reserved = $9, ram_ratio = $10, disk_total = $11, "
			       "disk_reserved = $12, disk_ratio = $13, isolated_tenant = $14, "
			       "heartbeat_ms = $15, seq = $16, generation = generation + 1 "
			       "WHERE id = $17",
			   NULL, NULL, PV_S(hi->url), PV_S(hi->az), PV_I(hi->archs),
			   PV_I(hi->drivers), PV_I(hi->total[0]), PV_I(hi->reserved[0]),
			   PV_D(hi->ratio[0]), PV_I(hi->total[1]), PV_I(hi->reserved[1]),
			   PV_D(hi->ratio[1]), PV_I(hi->total[2]), PV_I(hi->reserved[2]),
			   PV_D(hi->ratio[2]), PV_I(hi->isolated_tenant), PV_I(now), PV_I(seq),
			   PV_I(*id));
		goto out;
	}
	ret = EXEC(st, "INSERT INTO hosts (name, url, az, archs, drivers, vcpu_total, vcpu_reserved, "
		       "vcpu_ratio, ram_total, ram_reserved, ram_ratio, disk_total, disk_reserved, "
		       "disk_ratio, isolated_tenant, heartbeat_ms, seq, created_ms) VALUES ($1, $2, "
		       "$3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) "
		       "RETURNING id",
		   &r, NULL, PV_S(hi->name), PV_S(hi->url), PV_S(hi->az), PV_I(hi->archs),
		   PV_I(hi->drivers), PV_I(hi->total[0]), PV_I(hi->reserved[0]), PV_D(hi->ratio[0]),
		   PV_I(hi->total[1]), PV_I(hi->reserved[1]), PV_D(hi->ratio[1]), PV_I(hi->total[2]),
		   PV_I(hi->reserved[2]), PV_D(hi->ratio[2]), PV_I(hi->isolated_tenant), PV_I(now),
		   PV_I(seq), PV_I(now));
	if (!ret) {
		*id = pool_rows_int(&r, 0, 0);
		pool_rows_fini(&r);
	}
out:
	if (!ret)
		ret = EXEC(st, "UPDATE hosts SET console_key = $1 WHERE id = $2", NULL, NULL,
			   PV_S(hi->console_key), PV_I(*id));
	return txn_end(st, ret);
}

int pool_store_host_heartbeat(struct pool_store *st, int64_t id)
{
	int64_t ch = 0;
	int ret = EXEC(st, "UPDATE hosts SET heartbeat_ms = $1 WHERE id = $2", NULL, &ch,
		       PV_I(pool_now_ms()), PV_I(id));

	if (!ret && !ch) {
		err_set("no host %lld", (long long)id);
		ret = -ENOENT;
	}
	return ret;
}

int pool_store_host_set(struct pool_store *st, int64_t id, int enabled, int64_t isolated_tenant)
{
	int64_t seq, ch = 0;
	int ret = txn_begin(st);

	if (ret)
		return ret;
	ret = next_seq(st, &seq);
	if (!ret)
		ret = EXEC(st, "UPDATE hosts SET enabled = CASE WHEN $1 < 0 THEN enabled ELSE $2 END, "
			       "isolated_tenant = CASE WHEN $3 < 0 THEN isolated_tenant ELSE $4 END, "
			       "generation = generation + 1, seq = $5 WHERE id = $6",
			   NULL, &ch, PV_I(enabled), PV_I(enabled), PV_I(isolated_tenant),
			   PV_I(isolated_tenant), PV_I(seq), PV_I(id));
	if (!ret && !ch) {
		err_set("no host %lld", (long long)id);
		ret = -ENOENT;
	}
	return txn_end(st, ret);
}

int pool_store_host_url(struct pool_store *st, int64_t id, char *url, size_t len)
{
	struct pool_rows r;
	int ret = EXEC(st, "SELECT url FROM hosts WHERE id = $1", &r, NULL, PV_I(id));

	if (ret)
		return ret;
	ret = r.nrows ? 0 : -ENOENT;
	if (!ret)
		copy_str(url, len, pool_rows_get(&r, 0, 0));
	pool_rows_fini(&r);
	return ret;
}

int pool_store_host_agent(struct pool_store *st, int64_t id, char *url, size_t len, char *key)
{
	struct pool_rows r;
	int ret = EXEC(st, "SELECT url, console_key FROM hosts WHERE id = $1", &r, NULL, PV_I(id));

	if (ret)
		return ret;
	ret = r.nrows ? 0 : -ENOENT;
	if (!ret) {
		copy_str(url, len, pool_rows_get(&r, 0, 0));
		copy_str(key, 65, pool_rows_get(&r, 0, 1));
	}
	pool_rows_fini(&r);
	return ret;
}

static int random_token(char token[65])
{
	unsigned char raw[24];

	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
		err_set("no randomness for a token");
		return -EIO;
	}
	for (size_t i = 0; i < sizeof(raw); i++)
		sprintf(token + 2 * i, "%02x", raw[i]);
	return 0;
}

int pool_store_host_token_create(struct pool_store *st, const char *host_name, char token[65])
{
	char hash[65];
	int ret = random_token(token);

	if (ret)
		return ret;
	pool_sha256_hex(token, strlen(token), hash);
	ret = txn_begin(st);
	if (ret)
		return ret;
	ret = EXEC(st, "DELETE FROM host_tokens WHERE host_name = $1", NULL, NULL,
		   PV_S(host_name));
	if (!ret)
		ret = EXEC(st, "INSERT INTO host_tokens (host_name, token_hash, created_ms) "
			       "VALUES ($1, $2, $3)",
			   NULL, NULL, PV_S(host_name), PV_S(hash), PV_I(pool_now_ms()));
	return txn_end(st, ret);
}

int pool_store_host_token_check(struct pool_store *st, const char *token, char host_name[64])
{
	char hash[65];
	struct pool_rows r;
	int ret;

	pool_sha256_hex(token, strlen(token), hash);
	ret = EXEC(st, "SELECT host_name FROM host_tokens WHERE token_hash = $1", &r, NULL,
		   PV_S(hash));
	if (ret)
		return ret;
	ret = r.nrows ? 0 : -ENOENT;
	if (!ret)
		copy_str(host_name, 64, pool_rows_get(&r, 0, 0));
	pool_rows_fini(&r);
	return ret;
}

int pool_store_hosts_load(struct pool_store *st, struct sched_host **out, int *n)
{
	struct pool_rows r;
	int64_t maxseq = 0;
	int ret = EXEC(st, "SELECT " HOST_COLS " FROM hosts ORDER BY id", &r, NULL);

	if (ret)
		return ret;
	*out = calloc((size_t)r.nrows + 1, sizeof(**out));
	if (!*out) {
		pool_rows_fini(&r);
		return -ENOMEM;
	}
	for (int i = 0; i < r.nrows; i++) {
		host_from(&r, i, &(*out)[i]);
		if (pool_rows_int(&r, i, 24) > maxseq)
			maxseq = pool_rows_int(&r, i, 24);
	}
	*n = r.nrows;
	st->host_seq = maxseq;
	st->heartbeat_seen_ms = pool_now_ms();
	pool_rows_fini(&r);
	return 0;
}

static struct sched_host *find_host(struct sched_host *hosts, int n, int64_t id)
{
	/* ids are ascending in the array (loaded ORDER BY id, new ones appended) */
	int lo = 0, hi = n - 1;

	while (lo <= hi) {
		int mid = (lo + hi) / 2;

		if (hosts[mid].id == id)
			return &hosts[mid];
		if (hosts[mid].id < id)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return NULL;
}

int pool_store_hosts_refresh(struct pool_store *st, struct sched_host **hosts, int *n, int *cap)
{
	struct pool_rows r;
	int64_t now = pool_now_ms();
	int ret;

	ret = EXEC(st, "SELECT " HOST_COLS " FROM hosts WHERE seq > $1 ORDER BY id", &r, NULL,
		   PV_I(st->host_seq));
	if (ret)
		return ret;
	for (int i = 0; i < r.nrows; i++) {
		struct sched_host h, *c;

		host_from(&r, i, &h);
		if (pool_rows_int(&r, i, 24) > st->host_seq)
			st->host_seq = pool_rows_int(&r, i, 24);
		c = find_host(*hosts, *n, h.id);
		if (c) {
			*c = h;
			continue;
		}
		if (*n >= *cap) {
			int ncap = *cap ? *cap * 2 : 64;
			struct sched_host *g = realloc(*hosts, sizeof(*g) * (size_t)ncap);

			if (!g) {
				pool_rows_fini(&r);
				return -ENOMEM;
			}
			*hosts = g;
			*cap = ncap;
		}
		/* a new id is larger than every cached one unless registrations raced */
		int pos = *n;

		while (pos > 0 && (*hosts)[pos - 1].id > h.id)
			pos--;
		memmove(&(*hosts)[pos + 1], &(*hosts)[pos], sizeof(h) * (size_t)(*n - pos));
		(*hosts)[pos] = h;
		(*n)++;
	}
	pool_rows_fini(&r);

	/* Heartbeats: only rows that beat since the last look (with slack for commit delays). */
	ret = EXEC(st, "SELECT id, heartbeat_ms FROM hosts WHERE heartbeat_ms > $1", &r, NULL,
		   PV_I(st->heartbeat_seen_ms - 2000));
	if (ret)
		return ret;
	for (int i = 0; i < r.nrows; i++) {
		struct sched_host *c = find_host(*hosts, *n, pool_rows_int(&r, i, 0));

		if (c)
			c->heartbeat_ms = pool_rows_int(&r, i, 1);
	}
	st->heartbeat_seen_ms = now;
	pool_rows_fini(&r);
	return 0;
}

int pool_store_host_reload(struct pool_store *st, struct sched_host *h)
{
	struct pool_rows r;
	int ret = EXEC(st, "SELECT " HOST_COLS " FROM hosts WHERE id = $1", &r, NULL, PV_I(h->id));

	return ret ? ret : ROWS_ONE(&r, host_from, h);
}

/* --- claims --- */

/* Adds (sign +1) or returns (-1) a claim on a host; with a generation CAS when gen > 0. */
static int host_charge(struct pool_store *st, int64_t host, int64_t gen, const int64_t *need,
		       int sign, int builds, int failures)
{
	int64_t seq, ch = 0;
	int ret = next_seq(st, &seq);

	if (ret)
		return ret;
	if (sign > 0) {
		ret = EXEC(st, "UPDATE hosts SET vcpu_used = vcpu_used + $1, ram_used = ram_used + $2, "
			       "disk_used = disk_used + $3, instances = instances + 1, "
			       "builds = builds + 1, generation = generation + 1, seq = $4 "
			       "WHERE id = $5 AND generation = $6 "
			       "AND vcpu_used + $7 <= (vcpu_total - vcpu_reserved) * vcpu_ratio "
			       "AND ram_used + $8 <= (ram_total - ram_reserved) * ram_ratio "
			       "AND disk_used + $9 <= (disk_total - disk_reserved) * disk_ratio",
			   NULL, &ch, PV_I(need[0]), PV_I(need[1]), PV_I(need[2]), PV_I(seq),
			   PV_I(host), PV_I(gen), PV_I(need[0]), PV_I(need[1]), PV_I(need[2]));
		if (!ret && !ch) {
			err_set("host %lld changed under the claim", (long long)host);
			ret = -EAGAIN;
		}
		return ret;
	}
	return EXEC(st, "UPDATE hosts SET vcpu_used = vcpu_used - $1, ram_used = ram_used - $2, "
			"disk_used = disk_used - $3, instances = instances - 1, "
			"builds = builds - $4, recent_failures = recent_failures + $5, "
			"generation = generation + 1, seq = $6 WHERE id = $7",
		    NULL, NULL, PV_I(need[0]), PV_I(need[1]), PV_I(need[2]), PV_I(builds),
		    PV_I(failures), PV_I(seq), PV_I(host));
}

static int group_cas(struct pool_store *st, int64_t group, int64_t gen)
{
	int64_t ch = 0;
	int ret;

	if (!group)
		return 0;
	ret = EXEC(st, "UPDATE server_groups SET generation = generation + 1 WHERE id = $1 AND "
		       "generation = $2",
		   NULL, &ch, PV_I(group), PV_I(gen));
	if (!ret && !ch) {
		err_set("server group %lld changed under the claim", (long long)group);
		ret = -EAGAIN;
	}
	return ret;
}

int pool_store_claim(struct pool_store *st, const struct pool_claim *c, int64_t *vm_id)
{
	struct pool_rows r;
	int64_t ch = 0;
	int ret;

	if (c->request_id) {
		ret = EXEC(st, "SELECT id FROM vms WHERE tenant_id = $1 AND request_id = $2", &r, NULL,
			   PV_I(c->tenant_id), PV_S(c->request_id));
		if (ret)
			return ret;
		if (r.nrows) {
			*vm_id = pool_rows_int(&r, 0, 0);
			pool_rows_fini(&r);
			return -EEXIST;
		}
		pool_rows_fini(&r);
	}
	ret = txn_begin(st);
	if (ret)
		return ret;
	/* Lock order everywhere: tenant row, counter row, host row, group row. */
	ret = EXEC(st, "UPDATE tenants SET used_instances = used_instances + 1, "
		       "used_vcpus = used_vcpus + $1, used_ram_mb = used_ram_mb + $2 WHERE id = $3 "
		       "AND used_instances + 1 <= quota_instances AND used_vcpus + $4 <= quota_vcpus "
		       "AND used_ram_mb + $5 <= quota_ram_mb",
		   NULL, &ch, PV_I(c->need[0]), PV_I(c->need[1]), PV_I(c->tenant_id),
		   PV_I(c->need[0]), PV_I(c->need[1]));
	if (!ret && !ch) {
		err_set("quota exceeded: the tenant's instances, vCPUs or RAM would go over its quota");
		ret = -EDQUOT;
	}
	if (ret)
		goto out;
	ret = host_charge(st, c->host_id, c->host_generation, c->need, +1, 0, 0);
	if (ret)
		goto out;
	ret = group_cas(st, c->group_id, c->group_generation);
	if (ret)
		goto out;
	ret = EXEC(st, "INSERT INTO vms (tenant_id, name, flavor_id, image_id, group_id, host_id, "
		       "vcpus, ram_mb, disk_gb, state, alternates, request_id, created_ms) VALUES "
		       "($1, $2, $3, $4, $5, $6, $7, $8, $9, 'building', $10, $11, $12) RETURNING id",
		   &r, NULL, PV_I(c->tenant_id), PV_S(c->name), PV_I(c->flavor_id),
		   PV_I(c->image_id), PV_I(c->group_id), PV_I(c->host_id), PV_I(c->need[0]),
		   PV_I(c->need[1]), PV_I(c->need[2]), PV_S(c->alternates ? c->alternates : ""),
		   PV_S(c->request_id), PV_I(pool_now_ms()));
	if (!ret) {
		*vm_id = pool_rows_int(&r, 0, 0);
		pool_rows_fini(&r);
	}
out:
	return txn_end(st, ret);
}

#define VM_COLS \
	"v.id, v.tenant_id, v.host_id, v.group_id, v.flavor_id, v.image_id, v.name, v.vcpus, " \
	"v.ram_mb, v.disk_gb, v.state, v.fault, v.attempts, v.alternates, v.created_ms, " \
	"v.started_ms, v.deleted_ms, h.name, f.name, i.name"
#define VM_FROM \
	" FROM vms v LEFT JOIN hosts h ON h.id = v.host_id LEFT JOIN flavors f ON " \
	"f.id = v.flavor_id LEFT JOIN images i ON i.id = v.image_id "

static void vm_from(const struct pool_rows *r, int i, struct pool_vm *v)
{
	memset(v, 0, sizeof(*v));
	v->id = pool_rows_int(r, i, 0);
	v->tenant_id = pool_rows_int(r, i, 1);
	v->host_id = pool_rows_int(r, i, 2);
	v->group_id = pool_rows_int(r, i, 3);
	v->flavor_id = pool_rows_int(r, i, 4);
	v->image_id = pool_rows_int(r, i, 5);
	copy_str(v->name, sizeof(v->name), pool_rows_get(r, i, 6));
	v->vcpus = pool_rows_int(r, i, 7);
	v->ram_mb = pool_rows_int(r, i, 8);
	v->disk_gb = pool_rows_int(r, i, 9);
	copy_str(v->state, sizeof(v->state), pool_rows_get(r, i, 10));
	copy_str(v->fault, sizeof(v->fault), pool_rows_get(r, i, 11));
	v->attempts = pool_rows_int(r, i, 12);
	copy_str(v->alternates, sizeof(v->alternates), pool_rows_get(r, i, 13));
	v->created_ms = pool_rows_int(r, i, 14);
	v->started_ms = pool_rows_int(r, i, 15);
	v->deleted_ms = pool_rows_int(r, i, 16);
	copy_str(v->host_name, sizeof(v->host_name), pool_rows_get(r, i, 17));
	copy_str(v->flavor_name, sizeof(v->flavor_name), pool_rows_get(r, i, 18));
	copy_str(v->image_name, sizeof(v->image_name), pool_rows_get(r, i, 19));
}

int pool_store_vm_get(struct pool_store *st, int64_t id, struct pool_vm *vm)
{
	struct pool_rows r;
	int ret = EXEC(st, "SELECT " VM_COLS VM_FROM "WHERE v.id = $1", &r, NULL, PV_I(id));

	return ret ? ret : ROWS_ONE(&r, vm_from, vm);
}

int pool_store_vm_list(struct pool_store *st, int64_t tenant, int64_t host, struct pool_vm **out,
		       int *n)
{
	struct pool_rows r;
	int ret = EXEC(st, "SELECT " VM_COLS VM_FROM "WHERE v.state <> 'deleted' AND "
			   "($1 = 0 OR v.tenant_id = $2) AND ($3 = 0 OR v.host_id = $4) ORDER BY v.id",
		       &r, NULL, PV_I(tenant), PV_I(tenant), PV_I(host), PV_I(host));

	return ret ? ret : ROWS_ALL(&r, vm_from, out, n);
}

static void need_of(const struct pool_vm *v, int64_t need[SCHED_NRES])
{
	need[SCHED_VCPU] = v->vcpus;
	need[SCHED_RAM] = v->ram_mb;
	need[SCHED_DISK] = v->disk_gb;
}

int pool_store_vm_move(struct pool_store *st, int64_t vm, int64_t to, int64_t to_generation,
		       const char *alternates)
{
	return pool_store_vm_move_group(st, vm, to, to_generation, 0, alternates);
}

int pool_store_vm_move_group(struct pool_store *st, int64_t vm, int64_t to, int64_t to_generation,
			     int64_t group_generation, const char *alternates)
{
	struct pool_vm v;
	int64_t need[SCHED_NRES];
	int ret = txn_begin(st);

	if (ret)
		return ret;
	ret = pool_store_vm_get(st, vm, &v);
	if (ret)
		goto out;
	if (strcmp(v.state, "building") && strcmp(v.state, "error")) {
		err_set("VM %lld is %s, not a failed build", (long long)vm, v.state);
		ret = -EINVAL;
		goto out;
	}
	need_of(&v, need);
	ret = host_charge(st, v.host_id, 0, need, -1, !strcmp(v.state, "building"), 1);
	if (ret)
		goto out;
	ret = host_charge(st, to, to_generation, need, +1, 0, 0);
	if (ret)
		goto out;
	if (v.group_id && !group_generation) {
		err_set("VM %lld is in server group %lld: its move needs the group's generation",
			(long long)vm, (long long)v.group_id);
		ret = -EINVAL;
		goto out;
	}
	/* lock order tenant -> counter -> host -> group, as in a claim */
	ret = group_cas(st, v.group_id, group_generation);
	if (ret)
		goto out;
	ret = EXEC(st, "UPDATE vms SET host_id = $1, state = 'building', fault = '', "
		       "attempts = attempts + 1, alternates = $2 WHERE id = $3",
		   NULL, NULL, PV_I(to), PV_S(alternates), PV_I(vm));
out:
	return txn_end(st, ret);
}

int pool_store_vm_release(struct pool_store *st, int64_t vm, const char *final_state,
			  const char *fault)
{
	struct pool_vm v;
	int64_t need[SCHED_NRES], now = pool_now_ms();
	int ret = txn_begin(st);

	if (ret)
		return ret;
	ret = pool_store_vm_get(st, vm, &v);
	if (ret)
		goto out;
	if (!strcmp(v.state, "deleted"))
		goto out; /* released already: idempotent */
	need_of(&v, need);
	ret = EXEC(st, "UPDATE tenants SET used_instances = used_instances - 1, "
		       "used_vcpus = used_vcpus - $1, used_ram_mb = used_ram_mb - $2 WHERE id = $3",
		   NULL, NULL, PV_I(need[0]), PV_I(need[1]), PV_I(v.tenant_id));
	if (ret)
		goto out;
	ret = host_charge(st, v.host_id, 0, need, -1, !strcmp(v.state, "building"),
			  !strcmp(final_state, "error"));
	if (ret)
		goto out;
	ret = EXEC(st, "UPDATE vms SET state = 'deleted', fault = $1, deleted_ms = $2 WHERE id = $3",
		   NULL, NULL, PV_S(fault ? fault : ""), PV_I(now), PV_I(vm));
	if (ret)
		goto out;
	ret = EXEC(st, "INSERT INTO usage_records (tenant_id, vm_id, vcpus, ram_mb, disk_gb, "
		       "start_ms, end_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
		   NULL, NULL, PV_I(v.tenant_id), PV_I(vm), PV_I(v.vcpus), PV_I(v.ram_mb),
		   PV_I(v.disk_gb), PV_I(v.created_ms), PV_I(now));
out:
	return txn_end(st, ret);
}

int pool_store_vm_set_state(struct pool_store *st, int64_t vm, const char *state,
			    const char *fault)
{
	struct pool_vm v;
	int64_t seq;
	int ret = txn_begin(st);

	if (ret)
		return ret;
	ret = pool_store_vm_get(st, vm, &v);
	if (ret)
		goto out;
	if (!strcmp(v.state, state) || !strcmp(v.state, "deleted") ||
	    (!strcmp(v.state, "deleting") && strcmp(state, "deleted")))
		goto out; /* nothing new, or a delete is under way and wins */
	if (!strcmp(v.state, "building")) {
		/* the build ended (active or error): one build fewer on the host */
		ret = next_seq(st, &seq);
		if (!ret)
			ret = EXEC(st, "UPDATE hosts SET builds = builds - 1, recent_failures = "
				       "recent_failures + $1, generation = generation + 1, seq = $2 "
				       "WHERE id = $3",
				   NULL, NULL, PV_I(!strcmp(state, "error")), PV_I(seq),
				   PV_I(v.host_id));
		if (ret)
			goto out;
	}
	ret = EXEC(st, "UPDATE vms SET state = $1, fault = $2, started_ms = CASE WHEN $3 = 1 AND "
		       "started_ms = 0 THEN $4 ELSE started_ms END WHERE id = $5",
		   NULL, NULL, PV_S(state), PV_S(fault ? fault : ""), PV_I(!strcmp(state, "active")),
		   PV_I(pool_now_ms()), PV_I(vm));
out:
	return txn_end(st, ret);
}

/* --- usage --- */

int pool_store_usage(struct pool_store *st, int64_t tenant, int64_t from_ms, int64_t to_ms,
		     struct pool_usage **out, int *n)
{
	struct pool_rows r;
	int64_t now = pool_now_ms();
	int ret;

	/* Finished runs from usage_records plus live VMs (running up to now), clipped to the period. */
	ret = EXEC(st, "SELECT t.id, t.name, u.vcpus, u.ram_mb, u.start_ms, u.end_ms FROM "
		       "(SELECT tenant_id, vcpus, ram_mb, start_ms, end_ms FROM usage_records "
		       "WHERE end_ms > $1 AND start_ms < $2 UNION ALL SELECT tenant_id, vcpus, "
		       "ram_mb, created_ms, CAST($3 AS BIGINT) FROM vms WHERE state <> 'deleted' AND created_ms < $4) u "
		       "JOIN tenants t ON t.id = u.tenant_id WHERE ($5 = 0 OR t.id = $6) ORDER BY t.id",
		   &r, NULL, PV_I(from_ms), PV_I(to_ms), PV_I(now), PV_I(to_ms), PV_I(tenant),
		   PV_I(tenant));
	if (ret)
		return ret;
	*out = calloc((size_t)r.nrows + 1, sizeof(**out));
	if (!*out) {
		pool_rows_fini(&r);
		return -ENOMEM;
	}
	*n = 0;
	for (int i = 0; i < r.nrows; i++) {
		int64_t id = pool_rows_int(&r, i, 0);
		int64_t s = pool_rows_int(&r, i, 4), e = pool_rows_int(&r, i, 5);
		struct pool_usage *u;
		double secs;

		if (s < from_ms)
			s = from_ms;
		if (e > to_ms)
			e = to_ms;
		if (e <= s)
			continue;
		if (!*n || (*out)[*n - 1].tenant_id != id) {
			u = &(*out)[(*n)++];
			u->tenant_id = id;
			copy_str(u->tenant, sizeof(u->tenant), pool_rows_get(&r, i, 1));
		}
		u = &(*out)[*n - 1];
		secs = (double)(e - s) / 1000.0;
		u->vm_seconds += secs;
		u->vcpu_seconds += secs * (double)pool_rows_int(&r, i, 2);
		u->gib_seconds += secs * (double)pool_rows_int(&r, i, 3) / 1024.0;
	}
	pool_rows_fini(&r);
	return 0;
}
