/*
 * store_pg.c - the PostgreSQL backend of the pool store (libpq). Parameters go as text and
 * PostgreSQL infers their types from the statement; transactions run at READ COMMITTED, where
 * a conditional UPDATE re-checks its WHERE clause on the newest row version after waiting
 * for a concurrent writer, which is what makes the generation compare-and-swap safe.
 */
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kumo/base.h"
#include "kumo/pool/store.h"

#define PG_MAX_ARGS 32

struct pg_db {
	struct pool_db base;
	PGconn *conn;
};

static PGconn *conn_of(struct pool_db *db)
{
	return ((struct pg_db *)db)->conn;
}

static int pg_status(PGresult *res, PGconn *c)
{
	ExecStatusType s = PQresultStatus(res);
	const char *state;

	if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK)
		return 0;
	err_set("postgresql: %s", res ? PQresultErrorMessage(res) : PQerrorMessage(c));
	state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	if (state && !strcmp(state, "23505"))
		return -EEXIST; /* unique_violation */
	if (state && (!strcmp(state, "40001") || !strcmp(state, "40P01")))
		return -EAGAIN; /* serialization failure, deadlock */
	return -EIO;
}

static int pg_exec(struct pool_db *db, const char *sql, const struct pool_val *args, int nargs,
		   struct pool_rows *out, int64_t *changes)
{
	PGconn *c = conn_of(db);
	char bufs[PG_MAX_ARGS][32];
	const char *vals[PG_MAX_ARGS];
	PGresult *res;
	int ret;

	if (out)
		memset(out, 0, sizeof(*out));
	if (nargs > PG_MAX_ARGS) {
		err_set("postgresql: %d parameters, at most %d", nargs, PG_MAX_ARGS);
		return -E2BIG;
	}
	for (int i = 0; i < nargs; i++) {
		switch (args[i].type) {
		case POOL_INT:
			snprintf(bufs[i], sizeof(bufs[i]), "%" PRId64, args[i].i);
			vals[i] = bufs[i];
			break;
		case POOL_REAL:
			snprintf(bufs[i], sizeof(bufs[i]), "%.17g", args[i].d);
			vals[i] = bufs[i];
			break;
		case POOL_TEXT: vals[i] = args[i].s; break;
		default: vals[i] = NULL; break;
		}
	}
	res = PQexecParams(c, sql, nargs, NULL, vals, NULL, NULL, 0);
	ret = pg_status(res, c);
	if (ret)
		goto out;
	if (changes) {
		const char *t = PQcmdTuples(res);

		*changes = t && *t ? strtoll(t, NULL, 10) : 0;
	}
	if (out && PQresultStatus(res) == PGRES_TUPLES_OK) {
		out->nrows = PQntuples(res);
		out->ncols = PQnfields(res);
		out->cell = calloc((size_t)out->nrows * (size_t)out->ncols + 1, sizeof(char *));
		if (!out->cell) {
			ret = -ENOMEM;
			out->nrows = 0;
			goto out;
		}
		for (int r = 0; r < out->nrows; r++)
			for (int k = 0; k < out->ncols; k++)
				if (!PQgetisnull(res, r, k))
					out->cell[r * out->ncols + k] = strdup(PQgetvalue(res, r, k));
	}
out:
	PQclear(res);
	return ret;
}

static int pg_script(struct pool_db *db, const char *sql)
{
	PGresult *res = PQexec(conn_of(db), sql);
	int ret = pg_status(res, conn_of(db));

	PQclear(res);
	return ret;
}

static int pg_begin(struct pool_db *db)
{
	return pg_script(db, "BEGIN");
}

static int pg_commit(struct pool_db *db)
{
	return pg_script(db, "COMMIT");
}

static int pg_rollback(struct pool_db *db)
{
	return pg_script(db, "ROLLBACK");
}

static void pg_close(struct pool_db *db)
{
	if (!db)
		return;
	PQfinish(conn_of(db));
	free(db);
}

static const struct pool_db_ops pg_ops = {
	.name = "postgresql",
	.exec = pg_exec,
	.script = pg_script,
	.begin = pg_begin,
	.commit = pg_commit,
	.rollback = pg_rollback,
	.close = pg_close,
	.id_type = "BIGSERIAL PRIMARY KEY",
	/* controllers starting together: one applies a migration, the others wait and skip it */
	.migrate_lock = "SELECT pg_advisory_xact_lock(7261009)",
};

int pool_pg_open(const char *url, struct pool_db **out)
{
	struct pg_db *d = calloc(1, sizeof(*d));

	if (!d)
		return -ENOMEM;
	d->base.ops = &pg_ops;
	d->conn = PQconnectdb(url);
	if (PQstatus(d->conn) != CONNECTION_OK) {
		err_set("cannot connect to PostgreSQL: %s", PQerrorMessage(d->conn));
		pg_close(&d->base);
		return -ECONNREFUSED;
	}
	if (pg_script(&d->base, "SET client_min_messages = warning")) {
		pg_close(&d->base);
		return -EIO;
	}
	*out = &d->base;
	return 0;
}
