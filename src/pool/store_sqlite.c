/*
 * store_sqlite.c - the SQLite backend of the pool store: one connection in WAL mode with a
 * busy timeout (several controller processes may share the file), prepared statements cached
 * by their SQL text's address (every statement is a string literal).
 */
#include <errno.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kumo/base.h"
#include "kumo/pool/store.h"

#define STMT_CACHE 128

struct sqlite_db {
	struct pool_db base;
	sqlite3 *h;
	struct {
		const char *sql;
		sqlite3_stmt *stmt;
	} cache[STMT_CACHE];
};

static struct sqlite_db *to_sq(struct pool_db *db)
{
	return (struct sqlite_db *)db;
}

static int sq_err(struct sqlite_db *d, int rc)
{
	err_set("sqlite: %s", sqlite3_errmsg(d->h));
	if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
		return -EBUSY;
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		return -EEXIST;
	return -EIO;
}

static int sq_prepare(struct sqlite_db *d, const char *sql, sqlite3_stmt **out)
{
	unsigned slot = (unsigned)(((uintptr_t)sql >> 3) % STMT_CACHE);
	int rc;

	for (unsigned i = 0; i < STMT_CACHE; i++) {
		unsigned s = (slot + i) % STMT_CACHE;

		if (d->cache[s].sql == sql) {
			*out = d->cache[s].stmt;
			return 0;
		}
		if (!d->cache[s].sql) {
			rc = sqlite3_prepare_v2(d->h, sql, -1, out, NULL);
			if (rc != SQLITE_OK)
				return sq_err(d, rc);
			d->cache[s].sql = sql;
			d->cache[s].stmt = *out;
			return 0;
		}
	}
	rc = sqlite3_prepare_v2(d->h, sql, -1, out, NULL); /* cache full: caller finalizes */
	return rc == SQLITE_OK ? 1 : sq_err(d, rc);
}

static int grow(struct pool_rows *out, int ncols, int *cap)
{
	if (out->nrows < *cap)
		return 0;
	int ncap = *cap ? *cap * 2 : 16;
	char **c = realloc(out->cell, sizeof(char *) * (size_t)ncap * (size_t)ncols);

	if (!c)
		return -ENOMEM;
	out->cell = c;
	*cap = ncap;
	return 0;
}

static int sq_exec(struct pool_db *db, const char *sql, const struct pool_val *args, int nargs,
		   struct pool_rows *out, int64_t *changes)
{
	struct sqlite_db *d = to_sq(db);
	sqlite3_stmt *st;
	int rc, ret, cap = 0, owned;

	if (out)
		memset(out, 0, sizeof(*out));
	owned = sq_prepare(d, sql, &st);
	if (owned < 0)
		return owned;
	for (int i = 0; i < nargs; i++) {
		switch (args[i].type) {
		case POOL_INT: rc = sqlite3_bind_int64(st, i + 1, args[i].i); break;
		case POOL_REAL: rc = sqlite3_bind_double(st, i + 1, args[i].d); break;
		case POOL_TEXT: rc = sqlite3_bind_text(st, i + 1, args[i].s, -1, SQLITE_TRANSIENT); break;
		default: rc = sqlite3_bind_null(st, i + 1); break;
		}
		if (rc != SQLITE_OK) {
			ret = sq_err(d, rc);
			goto out_reset;
		}
	}
	if (out)
		out->ncols = sqlite3_column_count(st);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (!out)
			continue;
		ret = grow(out, out->ncols, &cap);
		if (ret)
			goto out_reset;
		for (int c = 0; c < out->ncols; c++) {
			const unsigned char *t = sqlite3_column_text(st, c);

			out->cell[out->nrows * out->ncols + c] = t ? strdup((const char *)t) : NULL;
		}
		out->nrows++;
	}
	if (rc != SQLITE_DONE) {
		ret = sq_err(d, rc);
		goto out_reset;
	}
	if (changes)
		*changes = sqlite3_changes(d->h);
	ret = 0;
out_reset:
	if (ret && out)
		pool_rows_fini(out);
	if (owned == 1)
		sqlite3_finalize(st);
	else {
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
	}
	return ret;
}

static int sq_script(struct pool_db *db, const char *sql)
{
	struct sqlite_db *d = to_sq(db);
	char *msg = NULL;
	int rc = sqlite3_exec(d->h, sql, NULL, NULL, &msg);

	if (rc != SQLITE_OK) {
		err_set("sqlite: %s", msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		return -EIO;
	}
	return 0;
}

static int sq_begin(struct pool_db *db)
{
	return sq_exec(db, "BEGIN IMMEDIATE", NULL, 0, NULL, NULL);
}

static int sq_commit(struct pool_db *db)
{
	return sq_exec(db, "COMMIT", NULL, 0, NULL, NULL);
}

static int sq_rollback(struct pool_db *db)
{
	return sq_exec(db, "ROLLBACK", NULL, 0, NULL, NULL);
}

static void sq_close(struct pool_db *db)
{
	struct sqlite_db *d = to_sq(db);

	if (!d)
		return;
	for (int i = 0; i < STMT_CACHE; i++)
		if (d->cache[i].stmt)
			sqlite3_finalize(d->cache[i].stmt);
	sqlite3_close(d->h);
	free(d);
}

static const struct pool_db_ops sqlite_ops = {
	.name = "sqlite",
	.exec = sq_exec,
	.script = sq_script,
	.begin = sq_begin,
	.commit = sq_commit,
	.rollback = sq_rollback,
	.close = sq_close,
	.id_type = "INTEGER PRIMARY KEY AUTOINCREMENT",
	.migrate_lock = NULL, /* BEGIN IMMEDIATE already excludes other writers */
};

int pool_sqlite_open(const char *path, struct pool_db **out)
{
	struct sqlite_db *d = calloc(1, sizeof(*d));
	int rc;

	if (!d)
		return -ENOMEM;
	d->base.ops = &sqlite_ops;
	rc = sqlite3_open_v2(path, &d->h,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		err_set("cannot open SQLite database %s: %s", path,
			d->h ? sqlite3_errmsg(d->h) : sqlite3_errstr(rc));
		sq_close(&d->base);
		return -EIO;
	}
	sqlite3_busy_timeout(d->h, 10000);
	/* WAL: readers never block the writer; NORMAL sync is durable across process crashes. */
	/*
	 * Switching to WAL needs a moment alone with the file and does not wait on the busy
	 * handler: controllers starting together retry (bounded, ~10 s).
	 */
	for (int tries = 0;; tries++) {
		int rc2 = sqlite3_exec(d->h, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);

		if (rc2 == SQLITE_OK)
			break;
		if ((rc2 != SQLITE_BUSY && rc2 != SQLITE_LOCKED) || tries >= 200) {
			sq_err(d, rc2);
			sq_close(&d->base);
			return -EIO;
		}
		usleep(50000);
	}
	if (sq_script(&d->base, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")) {
		sq_close(&d->base);
		return -EIO;
	}
	*out = &d->base;
	return 0;
}
