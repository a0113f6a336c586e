/*
 * sched.c - filter, weigh, pick: the scheduler's driver loop (see kumo/pool/sched.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kumo/pool/sched.h"

void sched_config_init(struct sched_config *cfg, uint64_t seed)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->heartbeat_timeout_ms = 10000;
	cfg->max_instances_per_host = 50;
	cfg->max_builds_per_host = 10;
	cfg->mult[SCHED_W_FREE_RAM] = 1.0;
	cfg->mult[SCHED_W_FREE_VCPU] = 1.0;
	cfg->mult[SCHED_W_FREE_DISK] = 0.5;
	cfg->mult[SCHED_W_INSTANCES] = -0.5;
	cfg->mult[SCHED_W_BUILDS] = -1.0;
	cfg->mult[SCHED_W_SOFT_AFFINITY] = 2.0;
	cfg->mult[SCHED_W_SOFT_ANTI] = -2.0;
	cfg->mult[SCHED_W_BUILD_FAILURES] = -3.0;
	cfg->top_n = 3;
	cfg->max_attempts = 3;
	cfg->sample = 64;
	cfg->rng = seed ? seed : 0x9e3779b97f4a7c15ULL;
}

/* xorshift64* (Vigna 2014): cheap, good enough to break herding. */
static uint64_t rng_next(struct sched_config *cfg)
{
	uint64_t x = cfg->rng ? cfg->rng : 0x9e3779b97f4a7c15ULL;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	cfg->rng = x;
	return x * 0x2545f4914f6cdd1dULL;
}

static int pick_cmp(const void *a, const void *b)
{
	const struct sched_pick *x = a, *y = b;

	if (x->score != y->score)
		return x->score > y->score ? -1 : 1;
	return x->host_id < y->host_id ? -1 : x->host_id > y->host_id;
}

void sched_result_fini(struct sched_result *res)
{
	free(res->ranked);
	free(res->rejects);
	memset(res, 0, sizeof(*res));
}

int sched_select(struct sched_config *cfg, const struct sched_request *req,
		 const struct sched_host *hosts, int nhosts, unsigned flags, struct sched_result *res)
{
	bool explain = flags & SCHED_EXPLAIN;
	bool full = explain || (flags & SCHED_FULL_RANKING) || cfg->sample <= 0;
	int want = full ? nhosts : (cfg->sample < nhosts ? cfg->sample : nhosts);
	int start = 0, ncand = 0, i;
	double lo[SCHED_NWEIGHERS], hi[SCHED_NWEIGHERS];
	double *raw = NULL;
	char detail[96];
	int ret = -ENOMEM;

	memset(res, 0, sizeof(*res));
	if (nhosts <= 0)
		return -ENOSPC;
	res->ranked = calloc((size_t)want, sizeof(*res->ranked));
	if (!res->ranked)
		goto out;
	if (explain) {
		res->rejects = calloc((size_t)nhosts, sizeof(*res->rejects));
		if (!res->rejects)
			goto out;
	}
	if (!full)
		start = (int)(rng_next(cfg) % (uint64_t)nhosts);

	for (i = 0; i < nhosts && ncand < want; i++) {
		int idx = start + i < nhosts ? start + i : start + i - nhosts;
		const struct sched_host *h = &hosts[idx];
		int f;

		for (f = 0; f < SCHED_NFILTERS; f++) {
			if (sched_filter_run(f, cfg, req, h, explain ? detail : NULL, sizeof(detail)))
				break;
		}
		if (f < SCHED_NFILTERS) {
			res->removed[f]++;
			if (explain) {
				struct sched_reject *r = &res->rejects[res->nrejects++];

				r->host_id = h->id;
				r->filter = f;
				memcpy(r->detail, detail, sizeof(r->detail));
			}
			continue;
		}
		res->ranked[ncand].host_id = h->id;
		res->ranked[ncand].index = idx;
		ncand++;
	}
	res->scanned = i;
	res->nfeasible = ncand;
	if (!ncand) {
		ret = -ENOSPC;
		goto out;
	}

	raw = malloc(sizeof(double) * SCHED_NWEIGHERS * (size_t)ncand);
	if (!raw)
		goto out;
	for (int w = 0; w < SCHED_NWEIGHERS; w++) {
		lo[w] = hi[w] = 0;
		if (cfg->mult[w] == 0)
			continue;
		for (int c = 0; c < ncand; c++) {
			double v = sched_weigher_raw(w, req, &hosts[res->ranked[c].index]);

			raw[c * SCHED_NWEIGHERS + w] = v;
			if (!c || v < lo[w])
				lo[w] = v;
			if (!c || v > hi[w])
				hi[w] = v;
		}
	}
	for (int c = 0; c < ncand; c++) {
		struct sched_pick *p = &res->ranked[c];

		p->score = 0;
		for (int w = 0; w < SCHED_NWEIGHERS; w++) {
			double span = hi[w] - lo[w];

			p->contrib[w] = 0;
			if (cfg->mult[w] == 0 || span <= 0)
				continue;
			p->contrib[w] = cfg->mult[w] * (raw[c * SCHED_NWEIGHERS + w] - lo[w]) / span;
			p->score += p->contrib[w];
		}
	}
	qsort(res->ranked, (size_t)ncand, sizeof(*res->ranked), pick_cmp);

	if (!(flags & SCHED_FULL_RANKING)) {
		int top = cfg->top_n < 1 ? 1 : (cfg->top_n < ncand ? cfg->top_n : ncand);
		int j = (int)(rng_next(cfg) % (uint64_t)top);

		if (j) {
			struct sched_pick t = res->ranked[0];

			res->ranked[0] = res->ranked[j];
			res->ranked[j] = t;
		}
		res->nranked = cfg->max_attempts < 1 ? 1
			       : (cfg->max_attempts < ncand ? cfg->max_attempts : ncand);
	} else {
		res->nranked = ncand;
	}
	ret = 0;
out:
	free(raw);
	return ret;
}

static const char *const arch_names[] = {"riscv64", "x86_64", "aarch64"};
static const char *const driver_names[] = {"kumo", "qemu"};

static uint32_t bit_of(const char *const *names, unsigned n, const char *s)
{
	for (unsigned i = 0; s && i < n; i++)
		if (!strcmp(names[i], s))
			return 1u << i;
	return 0;
}

static const char *name_of(const char *const *names, unsigned n, uint32_t bit)
{
	for (unsigned i = 0; i < n; i++)
		if (bit & (1u << i))
			return names[i];
	return "?";
}

uint32_t sched_arch_bit(const char *name)
{
	return bit_of(arch_names, 3, name);
}

uint32_t sched_driver_bit(const char *name)
{
	return bit_of(driver_names, 2, name);
}

const char *sched_arch_name(uint32_t bit)
{
	return name_of(arch_names, 3, bit);
}

const char *sched_driver_name(uint32_t bit)
{
	return name_of(driver_names, 2, bit);
}

static const char *const policy_names[] = {
	[SCHED_GROUP_NONE] = "none",
	[SCHED_GROUP_AFFINITY] = "affinity",
	[SCHED_GROUP_ANTI_AFFINITY] = "anti-affinity",
	[SCHED_GROUP_SOFT_AFFINITY] = "soft-affinity",
	[SCHED_GROUP_SOFT_ANTI_AFFINITY] = "soft-anti-affinity",
};

int sched_group_policy_parse(const char *s)
{
	for (int i = 0; s && i < (int)(sizeof(policy_names) / sizeof(policy_names[0])); i++)
		if (!strcmp(policy_names[i], s))
			return i;
	return -1;
}

const char *sched_group_policy_name(int policy)
{
	return policy >= 0 && policy < (int)(sizeof(policy_names) / sizeof(policy_names[0]))
		       ? policy_names[policy]
		       : "?";
}
