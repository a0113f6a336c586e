/*
 * test_pool_sched.c - every scheduler filter (pass and each reason), every weigher's raw value
 * and normalization, the multiplier sign (spread vs pack), the random top-N pick, alternates,
 * sampling, and the explanation of a refused request.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kumo/pool/sched.h"

#define NOW 1000000

static void host_init(struct sched_host *h, int64_t id)
{
	memset(h, 0, sizeof(*h));
	h->id = id;
	h->total[SCHED_VCPU] = 8;
	h->total[SCHED_RAM] = 16384;
	h->total[SCHED_DISK] = 100;
	for (int r = 0; r < SCHED_NRES; r++)
		h->ratio[r] = 1.0;
	h->heartbeat_ms = NOW;
	h->archs = SCHED_ARCH_RISCV64;
	h->drivers = SCHED_DRV_KUMO;
	h->enabled = true;
	strcpy(h->az, "az1");
}

static void req_init(struct sched_request *q)
{
	memset(q, 0, sizeof(*q));
	q->tenant_id = 1;
	q->need[SCHED_VCPU] = 2;
	q->need[SCHED_RAM] = 2048;
	q->need[SCHED_DISK] = 10;
	q->arch = SCHED_ARCH_RISCV64;
	q->now_ms = NOW;
}

static const char *run(int f, const struct sched_request *q, const struct sched_host *h)
{
	struct sched_config cfg;
	char detail[96];

	sched_config_init(&cfg, 1);
	return sched_filter_run(f, &cfg, q, h, detail, sizeof(detail));
}

static void test_filter_alive(void **state)
{
	struct sched_host h;
	struct sched_request q;

	host_init(&h, 1);
	req_init(&q);
	assert_null(run(SCHED_F_ALIVE, &q, &h));
	h.heartbeat_ms = NOW - 10000;
	assert_null(run(SCHED_F_ALIVE, &q, &h));
	h.heartbeat_ms = NOW - 10001;
	assert_string_equal(run(SCHED_F_ALIVE, &q, &h), "host_down");
}

static void test_filter_enabled(void **state)
{
	struct sched_host h;
	struct sched_request q;

	host_init(&h, 1);
	req_init(&q);
	assert_null(run(SCHED_F_ENABLED, &q, &h));
	h.enabled = false;
	assert_string_equal(run(SCHED_F_ENABLED, &q, &h), "host_disabled");
}

static void test_filter_resources(void **state)
{
	struct sched_host h;
	struct sched_request q;
	struct sched_config cfg;
	char detail[96];

	host_init(&h, 1);
	req_init(&q);
	assert_null(run(SCHED_F_VCPU, &q, &h));
	assert_null(run(SCHED_F_RAM, &q, &h));
	assert_null(run(SCHED_F_DISK, &q, &h));

	/* vCPU: 8 total, 2 reserved, ratio 2 -> 12 schedulable; 11 used leaves 1 < 2 */
	h.reserved[SCHED_VCPU] = 2;
	h.ratio[SCHED_VCPU] = 2.0;
	assert_int_equal(sched_capacity(&h, SCHED_VCPU), 12);
	h.used[SCHED_VCPU] = 10;
	assert_null(run(SCHED_F_VCPU, &q, &h));
	h.used[SCHED_VCPU] = 11;
	assert_string_equal(run(SCHED_F_VCPU, &q, &h), "vcpu");

	/* RAM: reserved counts before the ratio; ratio < 1 shrinks */
	h.reserved[SCHED_RAM] = 4096;
	h.ratio[SCHED_RAM] = 0.5;
	assert_int_equal(sched_capacity(&h, SCHED_RAM), 6144);
	h.used[SCHED_RAM] = 4096;
	assert_null(run(SCHED_F_RAM, &q, &h));
	h.used[SCHED_RAM] = 4097;
	sched_config_init(&cfg, 1);
	assert_string_equal(sched_filter_run(SCHED_F_RAM, &cfg, &q, &h, detail, sizeof(detail)),
			    "ram");
	assert_non_null(strstr(detail, "needs 2048 MiB"));

	h.reserved[SCHED_DISK] = 95;
	assert_string_equal(run(SCHED_F_DISK, &q, &h), "disk");
	h.reserved[SCHED_DISK] = 200; /* reserved beyond total: capacity 0, never negative */
	assert_int_equal(sched_capacity(&h, SCHED_DISK), 0);
}

static void test_filter_az(void **state)
{
	struct sched_host h;
	struct sched_request q;

	host_init(&h, 1);
	req_init(&q);
	assert_null(run(SCHED_F_AZ, &q, &h));
	q.az = "az1";
	assert_null(run(SCHED_F_AZ, &q, &h));
	q.az = "az2";
	assert_string_equal(run(SCHED_F_AZ, &q, &h), "availability_zone");
}

static void test_filter_image(void **state)
{
	struct sched_host h;
	struct sched_request q;

	host_init(&h, 1);
	req_init(&q);
	assert_null(run(SCHED_F_IMAGE, &q, &h));
	q.arch = SCHED_ARCH_X86_64;
	assert_string_equal(run(SCHED_F_IMAGE, &q, &h), "image_arch");
	q.arch = SCHED_ARCH_RISCV64;
	q.drivers = SCHED_DRV_QEMU;
	assert_string_equal(run(SCHED_F_IMAGE, &q, &h), "image_hypervisor");
	h.drivers |= SCHED_DRV_QEMU;
	assert_null(run(SCHED_F_IMAGE, &q, &h));
	q.image_min_ram = 32768;
	assert_string_equal(run(SCHED_F_IMAGE, &q, &h), "image_min_ram");
}

static void test_filter_group(void **state)
{
	struct sched_host h;
	struct sched_request q;
	int64_t members[] = {2, 3};

	host_init(&h, 1);
	req_init(&q);
	q.group_policy = SCHED_GROUP_ANTI_AFFINITY;
	assert_null(run(SCHED_F_GROUP, &q, &h));
	q.group_hosts = members;
	q.ngroup_hosts = 2;
	assert_null(run(SCHED_F_GROUP, &q, &h));
	h.id = 3;
	assert_string_equal(run(SCHED_F_GROUP, &q, &h), "anti_affinity");

	q.group_policy = SCHED_GROUP_AFFINITY;
	assert_null(run(SCHED_F_GROUP, &q, &h));
	h.id = 1;
	assert_string_equal(run(SCHED_F_GROUP, &q, &h), "affinity");
	q.ngroup_hosts = 0; /* the first member goes anywhere */
	assert_null(run(SCHED_F_GROUP, &q, &h));

	q.group_policy = SCHED_GROUP_SOFT_ANTI_AFFINITY; /* soft: never filters */
	q.ngroup_hosts = 2;
	h.id = 2;
	assert_null(run(SCHED_F_GROUP, &q, &h));
}

static void test_filter_hints(void **state)
{
	struct sched_host h;
	struct sched_request q;
	int64_t same[] = {5}, diff[] = {7, 9};

	host_init(&h, 5);
	req_init(&q);
	q.same_host = same;
	q.nsame_host = 1;
	assert_null(run(SCHED_F_SAME_HOST, &q, &h));
	h.id = 6;
	assert_string_equal(run(SCHED_F_SAME_HOST, &q, &h), "same_host");

	q.different_host = diff;
	q.ndifferent_host = 2;
	assert_null(run(SCHED_F_DIFFERENT_HOST, &q, &h));
	h.id = 9;
	assert_string_equal(run(SCHED_F_DIFFERENT_HOST, &q, &h), "different_host");
}

static void test_filter_tenant(void **state)
{
	struct sched_host h;
	struct sched_request q;

	host_init(&h, 1);
	req_init(&q);
	assert_null(run(SCHED_F_TENANT, &q, &h));
	h.isolated_tenant = 1;
	assert_null(run(SCHED_F_TENANT, &q, &h));
	h.isolated_tenant = 2;
	assert_string_equal(run(SCHED_F_TENANT, &q, &h), "tenant_isolation");
}

static void test_filter_limits(void **state)
{
	struct sched_host h;
	struct sched_request q;

	host_init(&h, 1);
	req_init(&q);
	h.instances = 49;
	assert_null(run(SCHED_F_MAX_INSTANCES, &q, &h));
	h.instances = 50;
	assert_string_equal(run(SCHED_F_MAX_INSTANCES, &q, &h), "max_instances");
	h.builds = 9;
	assert_null(run(SCHED_F_MAX_BUILDS, &q, &h));
	h.builds = 10;
	assert_string_equal(run(SCHED_F_MAX_BUILDS, &q, &h), "max_builds");
}

static void test_weigher_raw(void **state)
{
	struct sched_host h;
	struct sched_request q;
	int64_t members[] = {1, 1, 2};

	host_init(&h, 1);
	req_init(&q);
	h.used[SCHED_RAM] = 1024;
	h.used[SCHED_VCPU] = 1;
	h.instances = 4;
	h.builds = 2;
	h.recent_failures = 3;
	assert_true(sched_weigher_raw(SCHED_W_FREE_RAM, &q, &h) == 16384 - 1024 - 2048);
	assert_true(sched_weigher_raw(SCHED_W_FREE_VCPU, &q, &h) == 5);
	assert_true(sched_weigher_raw(SCHED_W_FREE_DISK, &q, &h) == 90);
	assert_true(sched_weigher_raw(SCHED_W_INSTANCES, &q, &h) == 4);
	assert_true(sched_weigher_raw(SCHED_W_BUILDS, &q, &h) == 2);
	assert_true(sched_weigher_raw(SCHED_W_BUILD_FAILURES, &q, &h) == 3);
	q.group_hosts = members;
	q.ngroup_hosts = 3;
	assert_true(sched_weigher_raw(SCHED_W_SOFT_AFFINITY, &q, &h) == 0); /* no soft group */
	q.group_policy = SCHED_GROUP_SOFT_AFFINITY;
	assert_true(sched_weigher_raw(SCHED_W_SOFT_AFFINITY, &q, &h) == 2);
	assert_true(sched_weigher_raw(SCHED_W_SOFT_ANTI, &q, &h) == 0);
	q.group_policy = SCHED_GROUP_SOFT_ANTI_AFFINITY;
	assert_true(sched_weigher_raw(SCHED_W_SOFT_ANTI, &q, &h) == 2);
	for (int w = 0; w < SCHED_NWEIGHERS; w++)
		assert_int_equal(sched_weigher_by_name(sched_weigher_name(w)), w);
}

/* Only one weigher on, top_n 1: the ranking must follow that weigher's sign. */
static int64_t best_with(int weigher, double mult, struct sched_host *hosts, int n,
			 struct sched_request *q)
{
	struct sched_config cfg;
	struct sched_result res;
	int64_t id;

	sched_config_init(&cfg, 7);
	memset(cfg.mult, 0, sizeof(cfg.mult));
	cfg.mult[weigher] = mult;
	cfg.top_n = 1;
	cfg.sample = 0;
	assert_int_equal(sched_select(&cfg, q, hosts, n, SCHED_FULL_RANKING, &res), 0);
	assert_int_equal(res.nranked, n);
	for (int i = 0; i < res.nranked; i++) {
		assert_true(res.ranked[i].contrib[weigher] >= -1.0 * (mult < 0 ? -mult : mult));
		assert_true(res.ranked[i].contrib[weigher] <= (mult < 0 ? -mult : mult));
	}
	/* normalized: the best gets |mult| (or 0 when mult < 0), the worst the other end */
	id = res.ranked[0].host_id;
	if (mult > 0)
		assert_true(res.ranked[0].contrib[weigher] == mult);
	else
		assert_true(res.ranked[0].contrib[weigher] == 0);
	sched_result_fini(&res);
	return id;
}

static void test_weighers_spread_and_pack(void **state)
{
	struct sched_host hosts[3];
	struct sched_request q;
	int64_t members[] = {3, 3};

	req_init(&q);
	for (int i = 0; i < 3; i++)
		host_init(&hosts[i], i + 1);
	hosts[0].used[SCHED_RAM] = 8192;
	hosts[1].used[SCHED_RAM] = 1024;
	hosts[2].used[SCHED_RAM] = 4096;
	assert_int_equal(best_with(SCHED_W_FREE_RAM, 1.0, hosts, 3, &q), 2);  /* spread */
	assert_int_equal(best_with(SCHED_W_FREE_RAM, -1.0, hosts, 3, &q), 1); /* pack */

	hosts[0].used[SCHED_VCPU] = 1;
	hosts[1].used[SCHED_VCPU] = 6;
	hosts[2].used[SCHED_VCPU] = 3;
	assert_int_equal(best_with(SCHED_W_FREE_VCPU, 1.0, hosts, 3, &q), 1);
	assert_int_equal(best_with(SCHED_W_FREE_VCPU, -1.0, hosts, 3, &q), 2);

	hosts[0].used[SCHED_DISK] = 50;
	hosts[1].used[SCHED_DISK] = 60;
	hosts[2].used[SCHED_DISK] = 0;
	assert_int_equal(best_with(SCHED_W_FREE_DISK, 2.0, hosts, 3, &q), 3);

	hosts[0].instances = 5;
	hosts[1].instances = 1;
	hosts[2].instances = 3;
	assert_int_equal(best_with(SCHED_W_INSTANCES, -1.0, hosts, 3, &q), 2);

	hosts[0].builds = 0;
	hosts[1].builds = 4;
	hosts[2].builds = 2;
	assert_int_equal(best_with(SCHED_W_BUILDS, -1.0, hosts, 3, &q), 1);

	hosts[0].recent_failures = 2;
	hosts[1].recent_failures = 0;
	hosts[2].recent_failures = 5;
	assert_int_equal(best_with(SCHED_W_BUILD_FAILURES, -1.0, hosts, 3, &q), 2);

	q.group_hosts = members;
	q.ngroup_hosts = 2;
	q.group_policy = SCHED_GROUP_SOFT_AFFINITY;
	assert_int_equal(best_with(SCHED_W_SOFT_AFFINITY, 1.0, hosts, 3, &q), 3);
	q.group_policy = SCHED_GROUP_SOFT_ANTI_AFFINITY;
	assert_int_not_equal(best_with(SCHED_W_SOFT_ANTI, -1.0, hosts, 3, &q), 3);
}

static void test_select_explain(void **state)
{
	struct sched_host hosts[4];
	struct sched_request q;
	struct sched_config cfg;
	struct sched_result res;

	req_init(&q);
	for (int i = 0; i < 4; i++)
		host_init(&hosts[i], i + 1);
	hosts[0].heartbeat_ms = 0;
	hosts[1].used[SCHED_RAM] = 16000;
	hosts[2].used[SCHED_RAM] = 15000;
	hosts[3].archs = SCHED_ARCH_X86_64;
	sched_config_init(&cfg, 3);
	assert_int_equal(sched_select(&cfg, &q, hosts, 4, 0, &res), -ENOSPC);
	assert_int_equal(res.removed[SCHED_F_ALIVE], 1);
	assert_int_equal(res.removed[SCHED_F_RAM], 2);
	assert_int_equal(res.removed[SCHED_F_IMAGE], 1);
	assert_int_equal(res.scanned, 4);
	assert_int_equal(res.nrejects, 0);
	sched_result_fini(&res);

	assert_int_equal(sched_select(&cfg, &q, hosts, 4, SCHED_EXPLAIN, &res), -ENOSPC);
	assert_int_equal(res.nrejects, 4);
	assert_int_equal(res.rejects[0].host_id, 1);
	assert_int_equal(res.rejects[0].filter, SCHED_F_ALIVE);
	assert_int_equal(res.rejects[1].filter, SCHED_F_RAM);
	assert_non_null(strstr(res.rejects[1].detail, "MiB"));
	assert_int_equal(res.rejects[3].filter, SCHED_F_IMAGE);
	assert_non_null(strstr(res.rejects[3].detail, "riscv64"));
	sched_result_fini(&res);
	assert_int_equal(sched_select(&cfg, &q, hosts, 0, 0, &res), -ENOSPC);
	sched_result_fini(&res);
}

static void test_select_top_n_and_alternates(void **state)
{
	enum { N = 20 };
	struct sched_host hosts[N];
	struct sched_request q;
	struct sched_config cfg;
	int seen[N + 1] = {0};

	req_init(&q);
	for (int i = 0; i < N; i++) {
		host_init(&hosts[i], i + 1);
		hosts[i].used[SCHED_RAM] = i * 512; /* host 1 has the most free RAM */
	}
	sched_config_init(&cfg, 11);
	memset(cfg.mult, 0, sizeof(cfg.mult));
	cfg.mult[SCHED_W_FREE_RAM] = 1.0;
	cfg.top_n = 3;
	cfg.max_attempts = 4;
	cfg.sample = 0;
	for (int k = 0; k < 300; k++) {
		struct sched_result res;

		assert_int_equal(sched_select(&cfg, &q, hosts, N, 0, &res), 0);
		assert_int_equal(res.nranked, 4);
		assert_true(res.ranked[0].host_id >= 1 && res.ranked[0].host_id <= 3);
		seen[res.ranked[0].host_id]++;
		/* alternates: the rest of the top 4, all distinct */
		for (int i = 0; i < 4; i++) {
			assert_true(res.ranked[i].host_id <= 4);
			for (int j = 0; j < i; j++)
				assert_int_not_equal(res.ranked[i].host_id, res.ranked[j].host_id);
		}
		sched_result_fini(&res);
	}
	/* random among the top 3: each is picked a fair share of 300 times */
	for (int i = 1; i <= 3; i++)
		assert_true(seen[i] > 50);
}

static void test_select_sample(void **state)
{
	enum { N = 1000 };
	struct sched_host *hosts = calloc(N, sizeof(*hosts));
	struct sched_request q;
	struct sched_config cfg;
	struct sched_result res;

	assert_non_null(hosts);
	req_init(&q);
	for (int i = 0; i < N; i++)
		host_init(&hosts[i], i + 1);
	sched_config_init(&cfg, 5);
	cfg.sample = 16;
	assert_int_equal(sched_select(&cfg, &q, hosts, N, 0, &res), 0);
	assert_int_equal(res.nfeasible, 16);
	assert_int_equal(res.scanned, 16);
	sched_result_fini(&res);
	/* only one feasible host: the scan goes all the way round to find it */
	for (int i = 0; i < N; i++)
		hosts[i].enabled = i == 617;
	assert_int_equal(sched_select(&cfg, &q, hosts, N, 0, &res), 0);
	assert_int_equal(res.ranked[0].host_id, 618);
	assert_int_equal(res.removed[SCHED_F_ENABLED] + res.nfeasible, res.scanned);
	sched_result_fini(&res);
	free(hosts);
}

static void test_names(void **state)
{
	assert_int_equal(sched_arch_bit("riscv64"), SCHED_ARCH_RISCV64);
	assert_int_equal(sched_arch_bit("sparc"), 0);
	assert_int_equal(sched_driver_bit("qemu"), SCHED_DRV_QEMU);
	assert_string_equal(sched_driver_name(SCHED_DRV_KUMO), "kumo");
	assert_int_equal(sched_group_policy_parse("anti-affinity"), SCHED_GROUP_ANTI_AFFINITY);
	assert_int_equal(sched_group_policy_parse("bogus"), -1);
	for (int f = 0; f < SCHED_NFILTERS; f++)
		assert_string_not_equal(sched_filter_name(f), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_filter_alive),
		cmocka_unit_test(test_filter_enabled),
		cmocka_unit_test(test_filter_resources),
		cmocka_unit_test(test_filter_az),
		cmocka_unit_test(test_filter_image),
		cmocka_unit_test(test_filter_group),
		cmocka_unit_test(test_filter_hints),
		cmocka_unit_test(test_filter_tenant),
		cmocka_unit_test(test_filter_limits),
		cmocka_unit_test(test_weigher_raw),
		cmocka_unit_test(test_weighers_spread_and_pack),
		cmocka_unit_test(test_select_explain),
		cmocka_unit_test(test_select_top_n_and_alternates),
		cmocka_unit_test(test_select_sample),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
