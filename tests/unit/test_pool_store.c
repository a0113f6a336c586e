/*
 * test_pool_store.c - the pool store on SQLite: migrations (idempotent), hashed tokens, the
 * claim transaction (generation CAS, capacity safety net, quota, server-group CAS, request
 * ids), heartbeats that leave the generation alone, cache refresh by seq, release and usage,
 * failed-build moves (with the group CAS for server-group members), per-host agent tokens
 * and the console key. Also SHA-256 against FIPS 180-4 example vectors.
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

#include "kumo/pool/store.h"

static char path[64];

static int setup(void **state)
{
	struct pool_store *st;

	snprintf(path, sizeof(path), "/tmp/kumo-test-store-%d.db", getpid());
	unlink(path);
	if (pool_store_open(path, &st))
		return -1;
	*state = st;
	return 0;
}

static int teardown(void **state)
{
	char p[80];

	pool_store_close(*state);
	unlink(path);
	snprintf(p, sizeof(p), "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path);
	unlink(p);
	return 0;
}

static int64_t add_host(struct pool_store *st, const char *name, int64_t vcpus, int64_t ram)
{
	struct pool_host_info hi = {.archs = SCHED_ARCH_RISCV64, .drivers = SCHED_DRV_KUMO};
	int64_t id;

	snprintf(hi.name, sizeof(hi.name), "%s", name);
	snprintf(hi.url, sizeof(hi.url), "http://127.0.0.1:1");
	hi.total[SCHED_VCPU] = vcpus;
	hi.total[SCHED_RAM] = ram;
	hi.total[SCHED_DISK] = 100;
	for (int r = 0; r < SCHED_NRES; r++)
		hi.ratio[r] = 1.0;
	assert_int_equal(pool_store_host_register(st, &hi, &id), 0);
	return id;
}

static struct sched_host load_one(struct pool_store *st, int64_t id)
{
	struct sched_host h = {.id = id};

	assert_int_equal(pool_store_host_reload(st, &h), 0);
	return h;
}

static void test_sha256(void **state)
{
	char out[65];

	pool_sha256_hex("abc", 3, out);
	assert_string_equal(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	pool_sha256_hex("", 0, out);
	assert_string_equal(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	pool_sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, out);
	assert_string_equal(out, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_reopen_migrations(void **state)
{
	struct pool_store *again;

	/* a second open of the same file skips the applied migration */
	assert_int_equal(pool_store_open(path, &again), 0);
	pool_store_close(again);
}

static void test_tenant_tokens(void **state)
{
	struct pool_store *st = *state;
	struct pool_tenant t;
	char token[65];
	int64_t id;

	assert_int_equal(pool_store_tenant_create(st, "acme", 10, 20, 8192, token, &id), 0);
	assert_int_equal(strlen(token), 48);
	assert_int_equal(pool_store_tenant_by_token(st, token, &t), 0);
	assert_int_equal(t.id, id);
	assert_string_equal(t.name, "acme");
	assert_int_equal(pool_store_tenant_by_token(st, "nope", &t), -ENOENT);
	assert_int_equal(pool_store_tenant_create(st, "acme", 1, 1, 1, token, &id), -EEXIST);
}

static void test_claim_cas(void **state)
{
	struct pool_store *st = *state;
	char token[65];
	int64_t tenant, host, vm, vm2;
	struct sched_host h;
	struct pool_flavor f = {.vcpus = 2, .ram_mb = 1024, .disk_gb = 10};
	struct pool_claim c = {0};
	struct pool_tenant t;

	assert_int_equal(pool_store_tenant_create(st, "t1", 3, 100, 100000, token, &tenant), 0);
	host = add_host(st, "h1", 4, 4096);
	snprintf(f.name, sizeof(f.name), "small");
	assert_int_equal(pool_store_flavor_create(st, &f, &f.id), 0);
	h = load_one(st, host);
	c.tenant_id = tenant;
	c.name = "vm1";
	c.flavor_id = f.id;
	c.need[SCHED_VCPU] = 2;
	c.need[SCHED_RAM] = 1024;
	c.need[SCHED_DISK] = 10;
	c.host_id = host;
	c.host_generation = h.generation;
	c.request_id = "req-1";
	assert_int_equal(pool_store_claim(st, &c, &vm), 0);
	/* same generation again: the CAS fails, nothing is written */
	c.request_id = "req-2";
	assert_int_equal(pool_store_claim(st, &c, &vm2), -EAGAIN);
	/* the request id is idempotent */
	c.request_id = "req-1";
	assert_int_equal(pool_store_claim(st, &c, &vm2), -EEXIST);
	assert_int_equal(vm2, vm);

	/* heartbeats do not move the generation */
	h = load_one(st, host);
	assert_int_equal(pool_store_host_heartbeat(st, host), 0);
	assert_int_equal(load_one(st, host).generation, h.generation);
	assert_int_equal(h.used[SCHED_VCPU], 2);
	assert_int_equal(h.builds, 1);
	assert_int_equal(h.instances, 1);

	/* with a fresh generation but no room: the capacity safety net refuses */
	c.request_id = "req-3";
	c.host_generation = h.generation;
	c.need[SCHED_VCPU] = 3;
	assert_int_equal(pool_store_claim(st, &c, &vm2), -EAGAIN);
	c.need[SCHED_VCPU] = 2;
	assert_int_equal(pool_store_claim(st, &c, &vm2), 0);

	/* quota: 3 instances; host full now, so add room and claim twice */
	add_host(st, "h2", 64, 65536);
	int64_t h2 = load_one(st, 2).id;

	c.host_id = h2;
	c.host_generation = load_one(st, h2).generation;
	c.request_id = "req-4";
	assert_int_equal(pool_store_claim(st, &c, &vm2), 0);
	c.host_generation = load_one(st, h2).generation;
	c.request_id = "req-5";
	assert_int_equal(pool_store_claim(st, &c, &vm2), -EDQUOT);
	assert_int_equal(pool_store_tenant_get(st, tenant, &t), 0);
	assert_int_equal(t.used_instances, 3);
	assert_int_equal(t.used_vcpus, 6);

	/* release returns everything and is idempotent */
	assert_int_equal(pool_store_vm_release(st, vm, "deleted", NULL), 0);
	assert_int_equal(pool_store_vm_release(st, vm, "deleted", NULL), 0);
	h = load_one(st, host);
	assert_int_equal(h.used[SCHED_VCPU], 2);
	assert_int_equal(h.instances, 1);
	assert_int_equal(pool_store_tenant_get(st, tenant, &t), 0);
	assert_int_equal(t.used_instances, 2);
}

static void test_group_cas_and_hosts(void **state)
{
	struct pool_store *st = *state;
	char token[65];
	int64_t tenant, h1, h2, gid, vm, *hosts;
	struct pool_group g;
	struct pool_claim c = {0};
	int n;

	assert_int_equal(pool_store_tenant_create(st, "t2", 100, 100, 100000, token, &tenant), 0);
	h1 = add_host(st, "g1", 8, 8192);
	h2 = add_host(st, "g2", 8, 8192);
	assert_int_equal(pool_store_group_create(st, tenant, "web", SCHED_GROUP_ANTI_AFFINITY, &gid),
			 0);
	assert_int_equal(pool_store_group_get(st, tenant, "web", &g), 0);
	assert_int_equal(g.policy, SCHED_GROUP_ANTI_AFFINITY);
	c.tenant_id = tenant;
	c.name = "a";
	c.need[SCHED_VCPU] = 1;
	c.need[SCHED_RAM] = 512;
	c.group_id = gid;
	c.group_generation = g.generation;
	c.host_id = h1;
	c.host_generation = load_one(st, h1).generation;
	assert_int_equal(pool_store_claim(st, &c, &vm), 0);
	/* a second scheduler with the old group generation loses even on another host */
	c.host_id = h2;
	c.host_generation = load_one(st, h2).generation;
	assert_int_equal(pool_store_claim(st, &c, &vm), -EAGAIN);
	assert_int_equal(pool_store_group_get(st, tenant, "web", &g), 0);
	c.group_generation = g.generation;
	assert_int_equal(pool_store_claim(st, &c, &vm), 0);
	assert_int_equal(pool_store_group_hosts(st, gid, &hosts, &n), 0);
	assert_int_equal(n, 2);
	assert_true((hosts[0] == h1 && hosts[1] == h2) || (hosts[0] == h2 && hosts[1] == h1));
	free(hosts);
}

/* A failed group member moves only with the group's current generation. */
static void test_group_member_move(void **state)
{
	struct pool_store *st = *state;
	char token[65];
	int64_t tenant, h1, h2, h3, gid, vm, vm2;
	struct pool_group g;
	struct pool_claim c = {0};
	struct pool_vm v;

	assert_int_equal(pool_store_tenant_create(st, "t5", 100, 100, 100000, token, &tenant), 0);
	h1 = add_host(st, "m1", 8, 8192);
	h2 = add_host(st, "m2", 8, 8192);
	h3 = add_host(st, "m3", 8, 8192);
	assert_int_equal(pool_store_group_create(st, tenant, "ha", SCHED_GROUP_ANTI_AFFINITY, &gid),
			 0);
	assert_int_equal(pool_store_group_get_id(st, gid, &g), 0);
	assert_string_equal(g.name, "ha");
	assert_int_equal(g.policy, SCHED_GROUP_ANTI_AFFINITY);
	assert_int_equal(pool_store_group_get_id(st, gid + 100, &g), -ENOENT);
	assert_int_equal(pool_store_group_get_id(st, gid, &g), 0);
	c.tenant_id = tenant;
	c.name = "a";
	c.need[SCHED_VCPU] = 1;
	c.need[SCHED_RAM] = 512;
	c.group_id = gid;
	c.group_generation = g.generation;
	c.host_id = h1;
	c.host_generation = load_one(st, h1).generation;
	assert_int_equal(pool_store_claim(st, &c, &vm), 0);
	int64_t seen = g.generation + 1; /* what a controller read after the claim */

	/* the plain move refuses a group member */
	assert_int_equal(pool_store_vm_move(st, vm, h2, load_one(st, h2).generation, ""), -EINVAL);
	/* another member joins (h3): a move with the generation read before loses */
	c.name = "b";
	c.group_generation = seen;
	c.host_id = h3;
	c.host_generation = load_one(st, h3).generation;
	assert_int_equal(pool_store_claim(st, &c, &vm2), 0);
	assert_int_equal(pool_store_vm_move_group(st, vm, h2, load_one(st, h2).generation, seen, ""),
			 -EAGAIN);
	assert_int_equal(pool_store_vm_get(st, vm, &v), 0);
	assert_int_equal(v.host_id, h1);
	assert_int_equal(load_one(st, h2).used[SCHED_VCPU], 0);
	/* with the current generation it moves, and the group's generation moves on */
	assert_int_equal(pool_store_group_get_id(st, gid, &g), 0);
	assert_int_equal(pool_store_vm_move_group(st, vm, h2, load_one(st, h2).generation,
						  g.generation, ""),
			 0);
	assert_int_equal(pool_store_vm_get(st, vm, &v), 0);
	assert_int_equal(v.host_id, h2);
	assert_int_equal(v.attempts, 2);
	assert_int_equal(load_one(st, h1).used[SCHED_VCPU], 0);
	assert_int_equal(load_one(st, h2).used[SCHED_VCPU], 1);
	int64_t old = g.generation;

	assert_int_equal(pool_store_group_get_id(st, gid, &g), 0);
	assert_true(g.generation > old);
}

static void test_host_tokens(void **state)
{
	struct pool_store *st = *state;
	char t1[65], t2[65], t1b[65], name[64], url[128], key[65];
	struct pool_host_info hi = {.archs = SCHED_ARCH_RISCV64, .drivers = SCHED_DRV_KUMO};
	int64_t id;

	assert_int_equal(pool_store_host_token_create(st, "k1", t1), 0);
	assert_int_equal(pool_store_host_token_create(st, "k2", t2), 0);
	assert_int_equal((int)strlen(t1), 48);
	assert_string_not_equal(t1, t2);
	assert_int_equal(pool_store_host_token_check(st, t1, name), 0);
	assert_string_equal(name, "k1");
	assert_int_equal(pool_store_host_token_check(st, t2, name), 0);
	assert_string_equal(name, "k2");
	assert_int_equal(pool_store_host_token_check(st, "nope", name), -ENOENT);
	/* a tenant token is no host token and the other way round */
	int64_t tenant;
	char tt[65];
	struct pool_tenant t;

	assert_int_equal(pool_store_tenant_create(st, "t6", 1, 1, 1, tt, &tenant), 0);
	assert_int_equal(pool_store_host_token_check(st, tt, name), -ENOENT);
	assert_int_equal(pool_store_tenant_by_token(st, t1, &t), -ENOENT);
	/* issuing again replaces: the old token stops working */
	assert_int_equal(pool_store_host_token_create(st, "k1", t1b), 0);
	assert_int_equal(pool_store_host_token_check(st, t1, name), -ENOENT);
	assert_int_equal(pool_store_host_token_check(st, t1b, name), 0);
	assert_string_equal(name, "k1");

	/* the console key registered with the host comes back with its URL */
	snprintf(hi.name, sizeof(hi.name), "k1");
	snprintf(hi.url, sizeof(hi.url), "http://10.213.1.2:7001");
	snprintf(hi.console_key, sizeof(hi.console_key), "abc123");
	hi.total[SCHED_VCPU] = 1;
	for (int r = 0; r < SCHED_NRES; r++)
		hi.ratio[r] = 1.0;
	assert_int_equal(pool_store_host_register(st, &hi, &id), 0);
	assert_int_equal(pool_store_host_agent(st, id, url, sizeof(url), key), 0);
	assert_string_equal(url, "http://10.213.1.2:7001");
	assert_string_equal(key, "abc123");
	snprintf(hi.console_key, sizeof(hi.console_key), "def456"); /* agent restarted */
	assert_int_equal(pool_store_host_register(st, &hi, &id), 0);
	assert_int_equal(pool_store_host_agent(st, id, url, sizeof(url), key), 0);
	assert_string_equal(key, "def456");
	assert_int_equal(pool_store_host_agent(st, id + 100, url, sizeof(url), key), -ENOENT);
}

static void test_refresh_and_move(void **state)
{
	struct pool_store *st = *state;
	struct sched_host *hosts;
	int n, cap;
	char token[65];
	int64_t tenant, a, b, vm;
	struct pool_claim c = {0};
	struct pool_vm v;

	a = add_host(st, "r1", 8, 8192);
	assert_int_equal(pool_store_hosts_load(st, &hosts, &n), 0);
	cap = n;
	assert_int_equal(n, 1);
	b = add_host(st, "r2", 8, 8192);
	assert_int_equal(pool_store_tenant_create(st, "t3", 100, 100, 100000, token, &tenant), 0);
	c.tenant_id = tenant;
	c.name = "m";
	c.need[SCHED_VCPU] = 4;
	c.need[SCHED_RAM] = 1024;
	c.host_id = a;
	c.host_generation = hosts[0].generation;
	assert_int_equal(pool_store_claim(st, &c, &vm), 0);
	assert_int_equal(pool_store_hosts_refresh(st, &hosts, &n, &cap), 0);
	assert_int_equal(n, 2);
	assert_int_equal(hosts[0].id, a);
	assert_int_equal(hosts[0].used[SCHED_VCPU], 4);
	assert_int_equal(hosts[1].id, b);

	/* the build failed on a: move to b, a gets its resources back and a failure */
	assert_int_equal(pool_store_vm_move(st, vm, b, hosts[1].generation, ""), 0);
	assert_int_equal(pool_store_hosts_refresh(st, &hosts, &n, &cap), 0);
	assert_int_equal(hosts[0].used[SCHED_VCPU], 0);
	assert_int_equal(hosts[0].recent_failures, 1);
	assert_int_equal(hosts[0].builds, 0);
	assert_int_equal(hosts[1].used[SCHED_VCPU], 4);
	assert_int_equal(pool_store_vm_get(st, vm, &v), 0);
	assert_int_equal(v.host_id, b);
	assert_int_equal(v.attempts, 2);

	assert_int_equal(pool_store_vm_set_state(st, vm, "active", NULL), 0);
	assert_int_equal(pool_store_hosts_refresh(st, &hosts, &n, &cap), 0);
	assert_int_equal(hosts[1].builds, 0);
	assert_int_equal(pool_store_vm_get(st, vm, &v), 0);
	assert_string_equal(v.state, "active");
	assert_true(v.started_ms > 0);
	free(hosts);
}

static void test_usage(void **state)
{
	struct pool_store *st = *state;
	char token[65];
	int64_t tenant, h, vm;
	struct pool_claim c = {0};
	struct pool_usage *u;
	int n;

	assert_int_equal(pool_store_tenant_create(st, "t4", 100, 100, 100000, token, &tenant), 0);
	h = add_host(st, "u1", 8, 8192);
	c.tenant_id = tenant;
	c.name = "u";
	c.need[SCHED_VCPU] = 2;
	c.need[SCHED_RAM] = 2048;
	c.host_id = h;
	c.host_generation = load_one(st, h).generation;
	assert_int_equal(pool_store_claim(st, &c, &vm), 0);
	usleep(200000);
	assert_int_equal(pool_store_vm_release(st, vm, "deleted", NULL), 0);
	assert_int_equal(pool_store_usage(st, tenant, 0, pool_now_ms() + 1000, &u, &n), 0);
	assert_int_equal(n, 1);
	assert_true(u[0].vm_seconds >= 0.2 && u[0].vm_seconds < 5);
	assert_true(u[0].vcpu_seconds > 1.9 * u[0].vm_seconds &&
		    u[0].vcpu_seconds < 2.1 * u[0].vm_seconds);
	assert_true(u[0].gib_seconds > 1.9 * u[0].vm_seconds);
	free(u);
	/* a period before the VM existed has no usage */
	assert_int_equal(pool_store_usage(st, tenant, 0, 1000, &u, &n), 0);
	assert_int_equal(n, 0);
	free(u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha256),
		cmocka_unit_test_setup_teardown(test_reopen_migrations, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tenant_tokens, setup, teardown),
		cmocka_unit_test_setup_teardown(test_claim_cas, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_cas_and_hosts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refresh_and_move, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_member_move, setup, teardown),
		cmocka_unit_test_setup_teardown(test_host_tokens, setup, teardown),
		cmocka_unit_test_setup_teardown(test_usage, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
