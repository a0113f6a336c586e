/*
 * sched.h - the pool's placement engine: filter, then weigh, then pick (issue 5, DESIGN.md §5).
 *
 * Usage: the controller keeps an array of struct sched_host (its in-memory host cache), fills a
 * struct sched_request for one VM and calls sched_select(). Filters are hard: each returns pass
 * or a machine-readable reason code (a static string such as "ram") plus, when explaining, a
 * human detail. Weighers give every surviving host a raw value; raw values are normalized to
 * [0,1] over the candidates ((v - min) / (max - min), all 0 when max == min) and multiplied by
 * the weigher's multiplier; the sum is the host's score. A positive multiplier prefers hosts
 * with more of the raw quantity (spreading for free_ram/free_vcpu/free_disk), a negative one
 * prefers less (packing). The best top_n hosts are shuffled so concurrent schedulers do not
 * herd onto one host; the ranked list after the pick serves as alternates for retries.
 *
 * To stay fast at 10,000 hosts the scan starts at a rotating offset and stops once `sample`
 * feasible hosts were found (0 = scan every host); a request nobody can take always scans every
 * host, so its explanation is complete. Pure computation: no locks, no I/O, no allocation
 * except the result's arrays. Any thread; the caller serialises access to its host array.
 */
#ifndef KUMO_POOL_SCHED_H
#define KUMO_POOL_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sched_res { SCHED_VCPU, SCHED_RAM, SCHED_DISK, SCHED_NRES }; /* units: vCPUs, MiB, GiB */

/* Architectures and drivers as bits, so traits compare with one AND. */
enum { SCHED_ARCH_RISCV64 = 1u << 0, SCHED_ARCH_X86_64 = 1u << 1, SCHED_ARCH_AARCH64 = 1u << 2 };
enum { SCHED_DRV_KUMO = 1u << 0, SCHED_DRV_QEMU = 1u << 1 };

enum sched_group_policy {
	SCHED_GROUP_NONE,
	SCHED_GROUP_AFFINITY,		/* hard: all members on one host */
	SCHED_GROUP_ANTI_AFFINITY,	/* hard: no two members on one host */
	SCHED_GROUP_SOFT_AFFINITY,	/* weigher prefers member hosts */
	SCHED_GROUP_SOFT_ANTI_AFFINITY, /* weigher avoids member hosts */
};

enum sched_filter_id {
	SCHED_F_ALIVE,		/* heartbeat younger than heartbeat_timeout_ms */
	SCHED_F_ENABLED,	/* admin has not disabled the host */
	SCHED_F_VCPU,		/* (total - reserved) * ratio - used >= need */
	SCHED_F_RAM,
	SCHED_F_DISK,
	SCHED_F_AZ,		/* availability zone matches the request's */
	SCHED_F_IMAGE,		/* host runs the image's arch and (if named) hypervisor; RAM >= image min */
	SCHED_F_GROUP,		/* hard affinity / anti-affinity */
	SCHED_F_SAME_HOST,	/* hint: same host as these VMs */
	SCHED_F_DIFFERENT_HOST, /* hint: none of these VMs' hosts */
	SCHED_F_TENANT,		/* host isolated to another tenant (aggregate metadata) */
	SCHED_F_MAX_INSTANCES,	/* instances < max_instances_per_host */
	SCHED_F_MAX_BUILDS,	/* builds in progress < max_builds_per_host */
	SCHED_NFILTERS
};

enum sched_weigher_id {
	SCHED_W_FREE_RAM,	 /* raw: free MiB after the claim */
	SCHED_W_FREE_VCPU,	 /* raw: free vCPUs after the claim */
	SCHED_W_FREE_DISK,	 /* raw: free GiB after the claim */
	SCHED_W_INSTANCES,	 /* raw: instances on the host */
	SCHED_W_BUILDS,		 /* raw: builds in progress */
	SCHED_W_SOFT_AFFINITY,	 /* raw: group members on the host (soft-affinity groups only) */
	SCHED_W_SOFT_ANTI,	 /* raw: group members on the host (soft-anti-affinity groups only) */
	SCHED_W_BUILD_FAILURES,	 /* raw: recent failed builds on the host */
	SCHED_NWEIGHERS
};

struct sched_host {
	int64_t id;
	int64_t generation;		/* bumped by every claim/release; heartbeats never bump it */
	int64_t used[SCHED_NRES];	/* sum of claims */
	int64_t total[SCHED_NRES];
	int64_t reserved[SCHED_NRES];
	double ratio[SCHED_NRES];	/* allocation ratio, > 0 */
	int64_t heartbeat_ms;		/* wall clock ms of the last heartbeat */
	int32_t instances;		/* VMs placed on the host (any state but deleted) */
	int32_t builds;			/* VMs still building */
	int32_t recent_failures;	/* failed builds, decayed by the controller */
	uint32_t archs;			/* SCHED_ARCH_* bits */
	uint32_t drivers;		/* SCHED_DRV_* bits */
	int64_t isolated_tenant;	/* 0: any tenant; else only this tenant's VMs */
	bool enabled;
	char az[32];			/* availability zone; "" when none was given */
	char name[64];
};

struct sched_request {
	int64_t tenant_id;
	int64_t need[SCHED_NRES];
	uint32_t arch;			/* one SCHED_ARCH_* bit the image needs */
	uint32_t drivers;		/* SCHED_DRV_* bits acceptable; 0 = any */
	int64_t image_min_ram;		/* MiB the image needs as a host-capacity floor */
	const char *az;			/* NULL or "": any zone */
	enum sched_group_policy group_policy;
	const int64_t *group_hosts;	/* host of every current group member (repeats allowed) */
	int ngroup_hosts;
	const int64_t *same_host;	/* host ids the VM must share (from same_host hints) */
	int nsame_host;
	const int64_t *different_host;	/* host ids the VM must avoid */
	int ndifferent_host;
	int64_t now_ms;			/* wall clock for the liveness filter */
};

struct sched_config {
	int64_t heartbeat_timeout_ms;	/* default 10000 */
	int32_t max_instances_per_host; /* default 50 */
	int32_t max_builds_per_host;	/* default 10 */
	double mult[SCHED_NWEIGHERS];	/* weigher multipliers */
	int32_t top_n;			/* random pick among the best top_n (>= 1) */
	int32_t max_attempts;		/* chosen host + alternates returned (>= 1) */
	int32_t sample;			/* stop after this many feasible hosts; 0 = all */
	uint64_t rng;			/* xorshift state, advanced by every select */
};

struct sched_pick {
	int64_t host_id;
	int32_t index;			/* into the caller's host array */
	double score;
	double contrib[SCHED_NWEIGHERS]; /* multiplier * normalized raw value */
};

struct sched_reject {
	int64_t host_id;
	int32_t filter;			/* enum sched_filter_id */
	char detail[96];
};

struct sched_result {
	struct sched_pick *ranked;	/* chosen first, then alternates (or the full ranking) */
	int nranked;
	int nfeasible;			/* hosts that passed every filter among those scanned */
	int scanned;
	int removed[SCHED_NFILTERS];	/* hosts each filter removed (first failing filter counts) */
	struct sched_reject *rejects;	/* SCHED_EXPLAIN only: every removed host and why */
	int nrejects;
};

enum {
	SCHED_EXPLAIN = 1u << 0,	/* record each removed host's reason; implies a full scan */
	SCHED_FULL_RANKING = 1u << 1,	/* return every feasible host ranked (dry run), full scan */
};

/* Default multipliers and limits. */
void sched_config_init(struct sched_config *cfg, uint64_t seed);

/* Capacity a host offers for one resource: (total - reserved) * ratio, floored at 0. */
int64_t sched_capacity(const struct sched_host *h, enum sched_res r);

/*
 * Runs one filter on one host: NULL when it passes, else a static reason code; when `detail`
 * is not NULL a sentence for humans goes there.
 */
const char *sched_filter_run(int filter, const struct sched_config *cfg,
			     const struct sched_request *req, const struct sched_host *h,
			     char *detail, size_t len);
/* Raw value of one weigher for one host (before normalization). */
double sched_weigher_raw(int weigher, const struct sched_request *req, const struct sched_host *h);

const char *sched_filter_name(int filter);
const char *sched_weigher_name(int weigher);
int sched_weigher_by_name(const char *name); /* -1 if unknown */

/*
 * Filters and weighs `hosts`. 0 with res->ranked[0] the chosen host and up to max_attempts - 1
 * alternates after it (or every feasible host with SCHED_FULL_RANKING); -ENOSPC when no host
 * passes (res->removed says which filter removed how many, res->rejects each host with
 * SCHED_EXPLAIN); -ENOMEM. The caller frees with sched_result_fini() in every case.
 */
int sched_select(struct sched_config *cfg, const struct sched_request *req,
		 const struct sched_host *hosts, int nhosts, unsigned flags, struct sched_result *res);
void sched_result_fini(struct sched_result *res);

/* "riscv64" -> SCHED_ARCH_RISCV64 etc.; 0 when unknown. */
uint32_t sched_arch_bit(const char *name);
uint32_t sched_driver_bit(const char *name);
const char *sched_arch_name(uint32_t bit);
const char *sched_driver_name(uint32_t bit);
int sched_group_policy_parse(const char *s); /* -1 when unknown */
const char *sched_group_policy_name(int policy);

#endif
