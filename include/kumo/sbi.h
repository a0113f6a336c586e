/*
 * sbi.h - the SBI firmware served by the VMM as hypercalls (SBI spec v2.0).
 *
 * Usage: the VMM fills struct sbi_host with callbacks into itself and, for every
 * ACCEL_EXIT_SBI from S-mode, calls sbi_call() on the calling hart's thread; sbi_call() decodes
 * the extension/function, acts through the callbacks and fills ret[0] (error) and ret[1]
 * (value). Extensions: BASE, TIME, IPI, RFENCE, HSM, SRST, DBCN. Unknown ones return
 * SBI_ERR_NOT_SUPPORTED; nothing the guest passes can crash the VMM.
 */
#ifndef KUMO_SBI_H
#define KUMO_SBI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Extension ids (SBI v2.0 chapters 4-12). */
#define SBI_EXT_BASE 0x10
#define SBI_EXT_TIME 0x54494D45
#define SBI_EXT_IPI 0x735049
#define SBI_EXT_RFENCE 0x52464E43
#define SBI_EXT_HSM 0x48534D
#define SBI_EXT_SRST 0x53525354
#define SBI_EXT_DBCN 0x4442434E

/* Error codes (SBI v2.0 §3.2 table 1). */
#define SBI_SUCCESS 0
#define SBI_ERR_FAILED (-1)
#define SBI_ERR_NOT_SUPPORTED (-2)
#define SBI_ERR_INVALID_PARAM (-3)
#define SBI_ERR_DENIED (-4)
#define SBI_ERR_INVALID_ADDRESS (-5)
#define SBI_ERR_ALREADY_AVAILABLE (-6)
#define SBI_ERR_ALREADY_STARTED (-7)
#define SBI_ERR_ALREADY_STOPPED (-8)

/* HSM states (SBI v2.0 §9 table). */
enum sbi_hart_state {
	SBI_HSM_STARTED = 0,
	SBI_HSM_STOPPED = 1,
	SBI_HSM_START_PENDING = 2,
	SBI_HSM_STOP_PENDING = 3,
	SBI_HSM_SUSPENDED = 4,
	SBI_HSM_SUSPEND_PENDING = 5,
	SBI_HSM_RESUME_PENDING = 6,
};

enum sbi_fence {
	SBI_FENCE_I,        /* remote FENCE.I */
	SBI_FENCE_VMA,      /* remote SFENCE.VMA (range) */
	SBI_FENCE_VMA_ASID, /* remote SFENCE.VMA with ASID */
};

#define SBI_IMPL_ID_KUMO 0x6b756d6f /* "kumo": not in the SBI registry; see docs/design.md */
#define SBI_IMPL_VERSION 1
#define SBI_SPEC_VERSION ((2u << 24) | 0u) /* v2.0 */

struct sbi_host {
	void *opaque;
	unsigned nharts;
	/* Guest RAM access for DBCN: host pointer for [gpa, gpa+len) or NULL. */
	void *(*ram_ptr)(void *opaque, uint64_t gpa, uint64_t len);
	/* Arms the calling hart's supervisor timer (stimecmp) for guest time `when`. */
	void (*set_timer)(void *opaque, unsigned hart, uint64_t when);
	/* Sets supervisor software interrupt pending on `hart`. */
	void (*send_ipi)(void *opaque, unsigned hart);
	/* Runs a fence on `hart` before it next executes guest code. */
	void (*remote_fence)(void *opaque, unsigned hart, enum sbi_fence kind, uint64_t start,
			     uint64_t size, uint64_t asid);
	/* HSM: returns an SBI error code. */
	int (*hart_start)(void *opaque, unsigned hart, uint64_t start_addr, uint64_t arg);
	int (*hart_stop)(void *opaque, unsigned hart);
	int (*hart_status)(void *opaque, unsigned hart); /* enum sbi_hart_state or error */
	int (*hart_suspend)(void *opaque, unsigned hart, uint32_t type, uint64_t resume_addr,
			    uint64_t arg);
	/* SRST: type 0 shutdown, 1 cold reboot, 2 warm reboot; reason 0 none, 1 failure. */
	void (*system_reset)(void *opaque, uint32_t type, uint32_t reason);
	/* DBCN: write bytes to / read bytes from the console; return bytes done or -errno. */
	long (*console_write)(void *opaque, const uint8_t *buf, size_t len);
	long (*console_read)(void *opaque, uint8_t *buf, size_t len);
	/* Values returned by BASE get_mvendorid/marchid/mimpid. */
	uint64_t mvendorid, marchid, mimpid;
};

/* Counters per extension, for metrics. Index: see sbi_ext_index(). */
#define SBI_STAT_EXTS 8
struct sbi_stats {
	uint64_t calls[SBI_STAT_EXTS]; /* base time ipi rfence hsm srst dbcn other */
};

/*
 * Serves one SBI call from S-mode hart `hart`. args are a0..a5, ret receives a0 (error) and a1
 * (value). Called on the hart's vCPU thread. `stats` may be NULL.
 */
void sbi_call(const struct sbi_host *host, unsigned hart, uint64_t ext, uint64_t fid,
	      const uint64_t args[6], int64_t ret[2], struct sbi_stats *stats);
const char *sbi_ext_name(unsigned index);

#endif
