/*
 * sched_filters.c - the scheduler's hard filters. Each is a small function: NULL means pass,
 * otherwise a static machine-readable reason code; the human detail is only formatted when the
 * caller asks for it (explain), so the hot path never calls snprintf.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "kumo/pool/sched.h"

#define DETAIL(...) \
	do { \
		if (detail) \
			snprintf(detail, len, __VA_ARGS__); \
	} while (0)

int64_t sched_capacity(const struct sched_host *h, enum sched_res r)
{
	double cap = (double)(h->total[r] - h->reserved[r]) * h->ratio[r];

	return cap > 0 ? (int64_t)cap : 0;
}

static const char *f_alive(const struct sched_config *cfg, const struct sched_request *req,
			   const struct sched_host *h, char *detail, size_t len)
{
	int64_t age = req->now_ms - h->heartbeat_ms;

	if (age <= cfg->heartbeat_timeout_ms)
		return NULL;
	DETAIL("last heartbeat %lld s ago (timeout %lld s)", (long long)(age / 1000),
	       (long long)(cfg->heartbeat_timeout_ms / 1000));
	return "host_down";
}

static const char *f_enabled(const struct sched_config *cfg, const struct sched_request *req,
			     const struct sched_host *h, char *detail, size_t len)
{
	if (h->enabled)
		return NULL;
	DETAIL("host disabled by an administrator");
	return "host_disabled";
}

static const char *fit(enum sched_res r, const char *code, const char *unit,
		       const struct sched_request *req, const struct sched_host *h, char *detail,
		       size_t len)
{
	int64_t free_ = sched_capacity(h, r) - h->used[r];

	if (req->need[r] <= free_)
		return NULL;
	DETAIL("needs %lld %s, %lld free of %lld (reserved %lld, ratio %.2g)",
	       (long long)req->need[r], unit, (long long)(free_ > 0 ? free_ : 0),
	       (long long)h->total[r], (long long)h->reserved[r], h->ratio[r]);
	return code;
}

static const char *f_vcpu(const struct sched_config *cfg, const struct sched_request *req,
			  const struct sched_host *h, char *detail, size_t len)
{
	return fit(SCHED_VCPU, "vcpu", "vCPUs", req, h, detail, len);
}

static const char *f_ram(const struct sched_config *cfg, const struct sched_request *req,
			 const struct sched_host *h, char *detail, size_t len)
{
	return fit(SCHED_RAM, "ram", "MiB RAM", req, h, detail, len);
}

static const char *f_disk(const struct sched_config *cfg, const struct sched_request *req,
			  const struct sched_host *h, char *detail, size_t len)
{
	return fit(SCHED_DISK, "disk", "GiB disk", req, h, detail, len);
}

static const char *f_az(const struct sched_config *cfg, const struct sched_request *req,
			const struct sched_host *h, char *detail, size_t len)
{
	if (!req->az || !*req->az || !strcmp(req->az, h->az))
		return NULL;
	DETAIL("in zone '%s', request wants '%s'", h->az, req->az);
	return "availability_zone";
}

static const char *f_image(const struct sched_config *cfg, const struct sched_request *req,
			   const struct sched_host *h, char *detail, size_t len)
{
	if (req->arch && !(h->archs & req->arch)) {
		DETAIL("cannot run %s guests", sched_arch_name(req->arch));
		return "image_arch";
	}
	if (req->drivers && !(h->drivers & req->drivers)) {
		DETAIL("offers no %s hypervisor driver", sched_driver_name(req->drivers));
		return "image_hypervisor";
	}
	if (req->image_min_ram > sched_capacity(h, SCHED_RAM)) {
		DETAIL("image needs %lld MiB RAM, host has %lld", (long long)req->image_min_ram,
		       (long long)sched_capacity(h, SCHED_RAM));
		return "image_min_ram";
	}
	return NULL;
}

static int members_on(const struct sched_request *req, int64_t host)
{
	int n = 0;

	for (int i = 0; i < req->ngroup_hosts; i++)
		n += req->group_hosts[i] == host;
	return n;
}

static const char *f_group(const struct sched_config *cfg, const struct sched_request *req,
			   const struct sched_host *h, char *detail, size_t len)
{
	if (req->group_policy == SCHED_GROUP_ANTI_AFFINITY && members_on(req, h->id)) {
		DETAIL("already runs a member of the anti-affinity group");
		return "anti_affinity";
	}
	/* Hard affinity: the first member may go anywhere; the rest follow it. */
	if (req->group_policy == SCHED_GROUP_AFFINITY && req->ngroup_hosts &&
	    !members_on(req, h->id)) {
		DETAIL("affinity group lives on host %lld", (long long)req->group_hosts[0]);
		return "affinity";
	}
	return NULL;
}

static const char *f_same_host(const struct sched_config *cfg, const struct sched_request *req,
			       const struct sched_host *h, char *detail, size_t len)
{
	for (int i = 0; i < req->nsame_host; i++) {
		if (req->same_host[i] != h->id) {
			DETAIL("same_host hint names a VM on host %lld", (long long)req->same_host[i]);
			return "same_host";
		}
	}
	return NULL;
}

static const char *f_different_host(const struct sched_config *cfg,
				    const struct sched_request *req, const struct sched_host *h,
				    char *detail, size_t len)
{
	for (int i = 0; i < req->ndifferent_host; i++) {
		if (req->different_host[i] == h->id) {
			DETAIL("different_host hint names a VM on this host");
			return "different_host";
		}
	}
	return NULL;
}

static const char *f_tenant(const struct sched_config *cfg, const struct sched_request *req,
			    const struct sched_host *h, char *detail, size_t len)
{
	if (!h->isolated_tenant || h->isolated_tenant == req->tenant_id)
		return NULL;
	DETAIL("reserved for tenant %lld", (long long)h->isolated_tenant);
	return "tenant_isolation";
}

static const char *f_max_instances(const struct sched_config *cfg,
				   const struct sched_request *req, const struct sched_host *h,
				   char *detail, size_t len)
{
	if (h->instances < cfg->max_instances_per_host)
		return NULL;
	DETAIL("runs %d instances (max %d)", h->instances, cfg->max_instances_per_host);
	return "max_instances";
}

static const char *f_max_builds(const struct sched_config *cfg, const struct sched_request *req,
				const struct sched_host *h, char *detail, size_t len)
{
	if (h->builds < cfg->max_builds_per_host)
		return NULL;
	DETAIL("%d builds in progress (max %d)", h->builds, cfg->max_builds_per_host);
	return "max_builds";
}

typedef const char *(*sched_filter_fn)(const struct sched_config *, const struct sched_request *,
				       const struct sched_host *, char *, size_t);

static const struct {
	const char *name;
	sched_filter_fn fn;
} filters[SCHED_NFILTERS] = {
	[SCHED_F_ALIVE] = {"alive", f_alive},
	[SCHED_F_ENABLED] = {"enabled", f_enabled},
	[SCHED_F_VCPU] = {"vcpu", f_vcpu},
	[SCHED_F_RAM] = {"ram", f_ram},
	[SCHED_F_DISK] = {"disk", f_disk},
	[SCHED_F_AZ] = {"availability_zone", f_az},
	[SCHED_F_IMAGE] = {"image_properties", f_image},
	[SCHED_F_GROUP] = {"server_group", f_group},
	[SCHED_F_SAME_HOST] = {"same_host", f_same_host},
	[SCHED_F_DIFFERENT_HOST] = {"different_host", f_different_host},
	[SCHED_F_TENANT] = {"tenant_isolation", f_tenant},
	[SCHED_F_MAX_INSTANCES] = {"max_instances", f_max_instances},
	[SCHED_F_MAX_BUILDS] = {"max_builds", f_max_builds},
};

const char *sched_filter_run(int filter, const struct sched_config *cfg,
			     const struct sched_request *req, const struct sched_host *h,
			     char *detail, size_t len)
{
	if (filter < 0 || filter >= SCHED_NFILTERS)
		return "unknown_filter";
	if (detail && len)
		detail[0] = '\0';
	return filters[filter].fn(cfg, req, h, detail, len);
}

const char *sched_filter_name(int filter)
{
	return filter >= 0 && filter < SCHED_NFILTERS ? filters[filter].name : "?";
}
