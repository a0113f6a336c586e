/*
 * sched_weighers.c - raw values of the scheduler's weighers. sched.c normalizes them to [0,1]
 * over the candidate hosts and multiplies by each weigher's multiplier. Every raw value is a
 * quantity where "positive multiplier prefers more of it".
 */
#include <string.h>

#include "kumo/pool/sched.h"

static double free_after(const struct sched_request *req, const struct sched_host *h,
			 enum sched_res r)
{
	return (double)(sched_capacity(h, r) - h->used[r] - req->need[r]);
}

static int members_on(const struct sched_request *req, int64_t host)
{
	int n = 0;

	for (int i = 0; i < req->ngroup_hosts; i++)
		n += req->group_hosts[i] == host;
	return n;
}

double sched_weigher_raw(int weigher, const struct sched_request *req, const struct sched_host *h)
{
	switch (weigher) {
	case SCHED_W_FREE_RAM: return free_after(req, h, SCHED_RAM);
	case SCHED_W_FREE_VCPU: return free_after(req, h, SCHED_VCPU);
	case SCHED_W_FREE_DISK: return free_after(req, h, SCHED_DISK);
	case SCHED_W_INSTANCES: return h->instances;
	case SCHED_W_BUILDS: return h->builds;
	case SCHED_W_SOFT_AFFINITY:
		return req->group_policy == SCHED_GROUP_SOFT_AFFINITY ? members_on(req, h->id) : 0;
	case SCHED_W_SOFT_ANTI:
		return req->group_policy == SCHED_GROUP_SOFT_ANTI_AFFINITY ? members_on(req, h->id)
									     : 0;
	case SCHED_W_BUILD_FAILURES: return h->recent_failures;
	default: return 0;
	}
}

static const char *const names[SCHED_NWEIGHERS] = {
	[SCHED_W_FREE_RAM] = "free_ram",
	[SCHED_W_FREE_VCPU] = "free_vcpu",
	[SCHED_W_FREE_DISK] = "free_disk",
	[SCHED_W_INSTANCES] = "instances",
	[SCHED_W_BUILDS] = "builds",
	[SCHED_W_SOFT_AFFINITY] = "soft_affinity",
	[SCHED_W_SOFT_ANTI] = "soft_anti_affinity",
	[SCHED_W_BUILD_FAILURES] = "build_failures",
};

const char *sched_weigher_name(int weigher)
{
	return weigher >= 0 && weigher < SCHED_NWEIGHERS ? names[weigher] : "?";
}

int sched_weigher_by_name(const char *name)
{
	for (int i = 0; i < SCHED_NWEIGHERS; i++)
		if (!strcmp(names[i], name))
			return i;
	return -1;
}
