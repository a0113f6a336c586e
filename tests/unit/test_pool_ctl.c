/*
 * test_pool_ctl.c - the controller's request handler without HTTP: hostile bodies and paths
 * always get a 4xx JSON error (never a crash), and two controllers with independent host
 * caches on one SQLite file never overcommit a host or break anti-affinity. Per-host agent
 * tokens act only for their own host.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kumo/base.h"
#include "kumo/pool/pool.h"
#include "kumo/pool/store.h"

#define ADMIN "unit-admin-token"

static char path[64];

static struct pool_ctl *new_ctl(void)
{
	struct pool_ctl_config cfg = {.db_url = path, .admin_token = ADMIN, .refresh_ms = 100000};
	struct pool_ctl *ctl;

	sched_config_init(&cfg.sched, (uint64_t)getpid());
	cfg.sched.heartbeat_timeout_ms = 3600 * 1000;
	assert_int_equal(pool_ctl_new(&cfg, &ctl), 0);
	return ctl;
}

static int call(struct pool_ctl *ctl, const char *m, const char *p, const char *tok,
		const char *body, json_t **out)
{
	int status = 0;
	json_t *j = pool_ctl_handle(ctl, m, p, tok, body, body ? strlen(body) : 0, &status);

	assert_non_null(j);
	if (status >= 400)
		assert_true(json_is_string(json_object_get(j, "error")));
	if (out)
		*out = j;
	else
		json_decref(j);
	return status;
}

static int setup(void **state)
{
	snprintf(path, sizeof(path), "/tmp/kumo-test-ctl-%d.db", getpid());
	unlink(path);
	return 0;
}

static int teardown(void **state)
{
	char p[80];

	unlink(path);
	snprintf(p, sizeof(p), "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path);
	unlink(p);
	return 0;
}

static void test_hostile_input(void **state)
{
	struct pool_ctl *ctl = new_ctl();
	static const char *const paths[] = {
		"/v1/servers", "/v1/flavors", "/v1/images", "/v1/tenants", "/v1/hosts/1",
		"/v1/server-groups", "/v1/agent/register", "/v1/agent/servers/1",
		"/v1/agent/hosts/1/heartbeat", "/v1/servers/1", "/v1/usage?start=x&end=",
		"/", "//v1//", "/v2/servers", "/v1/servers/-1", "/v1/servers/99999999999999999999999",
		"/v1/agent/hosts/abc/heartbeat", "/v1/hosts/0",
	};
	static const char *const methods[] = {"GET", "POST", "PUT", "DELETE", "PATCH"};
	uint64_t rng = 88172645463325252ULL;
	char body[512];

	for (int i = 0; i < 3000; i++) {
		size_t n;

		rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
		n = rng % sizeof(body);
		for (size_t k = 0; k < n; k++) {
			rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
			/* mostly JSON-ish bytes so the parser gets past the first character */
			body[k] = "{}[]\":,0123456789abcdeftrunl \\"[rng % 31];
		}
		body[n] = '\0';
		int st = call(ctl, methods[rng % 5], paths[(rng >> 8) % ARRAY_SIZE(paths)], ADMIN, body,
			      NULL);
		assert_true(st >= 200 && st < 500); /* a GET may succeed; nothing is a 5xx */
	}
	/* well-formed JSON with hostile values */
	assert_int_equal(call(ctl, "POST", "/v1/flavors", ADMIN,
			      "{\"name\":\"x\",\"vcpus\":-5,\"ram_mb\":1}", NULL), 400);
	assert_int_equal(call(ctl, "POST", "/v1/flavors", ADMIN,
			      "{\"name\":\"../../etc\",\"vcpus\":1,\"ram_mb\":1}", NULL), 400);
	assert_int_equal(call(ctl, "POST", "/v1/agent/register", ADMIN,
			      "{\"name\":\"h\",\"url\":\"http://x\",\"archs\":[\"riscv64\"],"
			      "\"drivers\":[],\"vcpus\":1,\"ram_mb\":1,\"disk_gb\":1,\"ram_ratio\":0}",
			      NULL), 400);
	assert_int_equal(call(ctl, "GET", "/v1/hosts", NULL, NULL, NULL), 401);
	char big[300];

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(call(ctl, "GET", "/v1/servers", big, NULL, NULL), 401);
	int status = 0;
	json_t *j = pool_ctl_handle(ctl, "POST", "/v1/flavors", ADMIN, "{}", POOL_MAX_BODY + 1,
				    &status);

	assert_int_equal(status, 413);
	json_decref(j);
	pool_ctl_free(ctl);
}

static void test_two_controllers_never_overcommit(void **state)
{
	struct pool_ctl *a = new_ctl(), *b = new_ctl();
	char body[256], token[80];
	json_t *j;
	int placed = 0;

	for (int i = 0; i < 4; i++) {
		snprintf(body, sizeof(body),
			 "{\"name\":\"h%d\",\"url\":\"http://127.0.0.1:1\",\"archs\":[\"riscv64\"],"
			 "\"drivers\":[\"kumo\"],\"vcpus\":2,\"ram_mb\":2048,\"disk_gb\":10}",
			 i);
		assert_int_equal(call(a, "POST", "/v1/agent/register", ADMIN, body, NULL), 200);
	}
	assert_int_equal(call(a, "POST", "/v1/flavors", ADMIN,
			      "{\"name\":\"f\",\"vcpus\":1,\"ram_mb\":512,\"disk_gb\":1}", NULL), 201);
	assert_int_equal(call(a, "POST", "/v1/images", ADMIN, "{\"name\":\"i\",\"arch\":\"riscv64\"}",
			      NULL), 201);
	assert_int_equal(call(a, "POST", "/v1/tenants", ADMIN, "{\"name\":\"t\",\"max_instances\":100}",
			      &j), 201);
	snprintf(token, sizeof(token), "%s", json_string_value(json_object_get(j, "token")));
	json_decref(j);
	assert_int_equal(call(a, "POST", "/v1/server-groups", token,
			      "{\"name\":\"g\",\"policy\":\"anti-affinity\"}", NULL), 201);
	/* b's cache is stale from here on (refresh every 100 s): only the CAS keeps it honest */
	assert_int_equal(call(b, "GET", "/v1/flavors", token, NULL, NULL), 200);
	for (int i = 0; i < 20; i++) {
		snprintf(body, sizeof(body), "{\"name\":\"v%d\",\"flavor\":\"f\",\"image\":\"i\"%s}", i,
			 i < 6 ? ",\"group\":\"g\"" : "");
		int st = call(i % 2 ? b : a, "POST", "/v1/servers", token, body, NULL);

		assert_true(st == 202 || st == 409);
		placed += st == 202;
	}
	/* 4 hosts x 2 vCPUs = 8 slots; the group takes at most 4 (one per host) */
	assert_int_equal(placed, 4 + 4);
	assert_int_equal(call(a, "GET", "/v1/hosts", ADMIN, NULL, &j), 200);
	json_t *h;
	size_t i;

	json_array_foreach(json_object_get(j, "hosts"), i, h) {
		assert_true(json_integer_value(json_object_get(h, "vcpus_used")) <= 2);
		assert_true(json_integer_value(json_object_get(h, "ram_mb_used")) <= 2048);
	}
	json_decref(j);
	pool_ctl_free(a);
	pool_ctl_free(b);
}

static void token_of(json_t *j, char *out, size_t len)
{
	snprintf(out, len, "%s", json_string_value(json_object_get(j, "token")));
	json_decref(j);
}

static void test_agent_tokens(void **state)
{
	static const char reg[] = "{\"name\":\"%s\",\"url\":\"http://127.0.0.1:1\","
				  "\"archs\":[\"riscv64\"],\"drivers\":[\"kumo\"],\"vcpus\":1,"
				  "\"ram_mb\":1024,\"disk_gb\":10,\"console_key\":\"k\"}";
	struct pool_ctl *ctl = new_ctl();
	char a1[80], a2[80], ten[80], body[512], p[96];
	int64_t id1, id2, vm, on;
	json_t *j;

	assert_int_equal(call(ctl, "POST", "/v1/hosts/tokens", ADMIN, "{\"host\":\"a1\"}", &j), 201);
	token_of(j, a1, sizeof(a1));
	assert_int_equal(call(ctl, "POST", "/v1/hosts/tokens", ADMIN, "{\"host\":\"a2\"}", &j), 201);
	token_of(j, a2, sizeof(a2));
	assert_int_equal(call(ctl, "POST", "/v1/hosts/tokens", ADMIN, "{\"host\":\"../x\"}", NULL),
			 400);
	assert_int_equal(call(ctl, "POST", "/v1/hosts/tokens", ADMIN, "{}", NULL), 400);
	/* each agent registers its own host, never the other's */
	snprintf(body, sizeof(body), reg, "a2");
	assert_int_equal(call(ctl, "POST", "/v1/agent/register", a1, body, NULL), 403);
	snprintf(body, sizeof(body), reg, "a1");
	assert_int_equal(call(ctl, "POST", "/v1/agent/register", a1, body, &j), 200);
	id1 = json_integer_value(json_object_get(j, "id"));
	json_decref(j);
	snprintf(body, sizeof(body), reg, "a2");
	assert_int_equal(call(ctl, "POST", "/v1/agent/register", a2, body, &j), 200);
	id2 = json_integer_value(json_object_get(j, "id"));
	json_decref(j);
	snprintf(p, sizeof(p), "/v1/agent/hosts/%lld/heartbeat", (long long)id1);
	assert_int_equal(call(ctl, "POST", p, a1, NULL, NULL), 200);
	assert_int_equal(call(ctl, "POST", p, a2, NULL, NULL), 403);
	snprintf(p, sizeof(p), "/v1/agent/hosts/%lld/heartbeat", (long long)(id2 + 50));
	assert_int_equal(call(ctl, "POST", p, a1, NULL, NULL), 403);
	/* an agent token reaches nothing outside /v1/agent */
	assert_int_equal(call(ctl, "GET", "/v1/hosts", a1, NULL, NULL), 403);
	assert_int_equal(call(ctl, "GET", "/v1/servers", a1, NULL, NULL), 403);
	assert_int_equal(call(ctl, "GET", "/v1/usage", a1, NULL, NULL), 403);
	assert_int_equal(call(ctl, "POST", "/v1/hosts/tokens", a1, "{\"host\":\"a1\"}", NULL), 403);

	/* server state reports only from the server's own host */
	assert_int_equal(call(ctl, "POST", "/v1/flavors", ADMIN,
			      "{\"name\":\"f\",\"vcpus\":1,\"ram_mb\":512,\"disk_gb\":1}", NULL), 201);
	assert_int_equal(call(ctl, "POST", "/v1/images", ADMIN, "{\"name\":\"i\",\"arch\":\"riscv64\"}",
			      NULL), 201);
	assert_int_equal(call(ctl, "POST", "/v1/tenants", ADMIN, "{\"name\":\"t\"}", &j), 201);
	token_of(j, ten, sizeof(ten));
	snprintf(p, sizeof(p), "/v1/agent/hosts/%lld/heartbeat", (long long)id1);
	assert_int_equal(call(ctl, "POST", p, ten, NULL, NULL), 403);
	assert_int_equal(call(ctl, "POST", "/v1/servers", ten,
			      "{\"name\":\"v\",\"flavor\":\"f\",\"image\":\"i\"}", &j), 202);
	vm = json_integer_value(json_object_get(j, "id"));
	json_decref(j);
	assert_int_equal(call(ctl, "GET", "/v1/servers", ADMIN, NULL, &j), 200);
	on = json_integer_value(json_object_get(json_array_get(json_object_get(j, "servers"), 0),
						"host_id"));
	json_decref(j);
	assert_true(on == id1 || on == id2);
	snprintf(p, sizeof(p), "/v1/agent/servers/%lld", (long long)vm);
	assert_int_equal(call(ctl, "PUT", p, on == id1 ? a2 : a1, "{\"state\":\"active\"}", NULL),
			 403);
	assert_int_equal(call(ctl, "PUT", p, on == id1 ? a1 : a2, "{\"state\":\"active\"}", NULL),
			 200);
	/* a re-issued token replaces the old one */
	assert_int_equal(call(ctl, "POST", "/v1/hosts/tokens", ADMIN, "{\"host\":\"a1\"}", &j), 201);
	json_decref(j);
	snprintf(p, sizeof(p), "/v1/agent/hosts/%lld/heartbeat", (long long)id1);
	assert_int_equal(call(ctl, "POST", p, a1, NULL, NULL), 401);
	pool_ctl_free(ctl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_hostile_input, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_controllers_never_overcommit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_agent_tokens, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
