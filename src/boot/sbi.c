/*
 * sbi.c - SBI v2.0 served by the VMM. Section numbers refer to the RISC-V Supervisor Binary
 * Interface Specification v2.0.
 */
#include <errno.h>

#include "kumo/base.h"
#include "kumo/sbi.h"

static const char *const ext_names[SBI_STAT_EXTS] = {"base", "time", "ipi",  "rfence",
						     "hsm",  "srst", "dbcn", "other"};

const char *sbi_ext_name(unsigned index)
{
	return index < SBI_STAT_EXTS ? ext_names[index] : "?";
}

static unsigned ext_index(uint64_t ext)
{
	switch (ext) {
	case SBI_EXT_BASE: return 0;
	case SBI_EXT_TIME: return 1;
	case SBI_EXT_IPI: return 2;
	case SBI_EXT_RFENCE: return 3;
	case SBI_EXT_HSM: return 4;
	case SBI_EXT_SRST: return 5;
	case SBI_EXT_DBCN: return 6;
	default: return 7;
	}
}

static bool ext_supported(uint64_t ext)
{
	return ext_index(ext) < 7;
}

/* §3.1: hart_mask is a bit vector relative to hart_mask_base; base -1 means every hart. */
static int for_each_hart(const struct sbi_host *h, uint64_t mask, uint64_t base,
			 void (*fn)(const struct sbi_host *, unsigned, const uint64_t *),
			 const uint64_t *extra)
{
	if (base == UINT64_MAX) {
		for (unsigned i = 0; i < h->nharts; i++)
			fn(h, i, extra);
		return SBI_SUCCESS;
	}
	/* Validate first so a bad mask changes nothing. */
	for (unsigned bit = 0; bit < 64; bit++)
		if ((mask >> bit & 1) && (base >= h->nharts || bit >= h->nharts - base))
			return SBI_ERR_INVALID_PARAM;
	for (unsigned bit = 0; bit < 64; bit++)
		if (mask >> bit & 1)
			fn(h, (unsigned)(base + bit), extra);
	return SBI_SUCCESS;
}

static void do_ipi(const struct sbi_host *h, unsigned hart, const uint64_t *unused)
{
	h->send_ipi(h->opaque, hart);
}

/* extra: kind, start, size, asid */
static void do_fence(const struct sbi_host *h, unsigned hart, const uint64_t *e)
{
	h->remote_fence(h->opaque, hart, (enum sbi_fence)e[0], e[1], e[2], e[3]);
}

static void base_call(const struct sbi_host *h, uint64_t fid, const uint64_t *a, int64_t *ret)
{
	/* §4 */
	switch (fid) {
	case 0: ret[1] = SBI_SPEC_VERSION; break;
	case 1: ret[1] = SBI_IMPL_ID_KUMO; break;
	case 2: ret[1] = SBI_IMPL_VERSION; break;
	case 3: ret[1] = ext_supported(a[0]); break;
	case 4: ret[1] = (int64_t)h->mvendorid; break;
	case 5: ret[1] = (int64_t)h->marchid; break;
	case 6: ret[1] = (int64_t)h->mimpid; break;
	default: ret[0] = SBI_ERR_NOT_SUPPORTED; break;
	}
}

static void rfence_call(const struct sbi_host *h, uint64_t fid, const uint64_t *a, int64_t *ret)
{
	/* §8: fid 0 FENCE.I, 1 SFENCE.VMA, 2 SFENCE.VMA.ASID; 3..6 are hypervisor fences. */
	uint64_t extra[4] = {0, a[2], a[3], a[4]};

	switch (fid) {
	case 0: extra[0] = SBI_FENCE_I; break;
	case 1: extra[0] = SBI_FENCE_VMA; break;
	case 2: extra[0] = SBI_FENCE_VMA_ASID; break;
	default: ret[0] = SBI_ERR_NOT_SUPPORTED; return;
	}
	ret[0] = for_each_hart(h, a[0], a[1], do_fence, extra);
}

static void hsm_call(const struct sbi_host *h, unsigned hart, uint64_t fid, const uint64_t *a,
		     int64_t *ret)
{
	/* §9 */
	switch (fid) {
	case 0: /* hart_start(hartid, start_addr, opaque) */
		if (a[0] >= h->nharts)
			ret[0] = SBI_ERR_INVALID_PARAM;
		else
			ret[0] = h->hart_start(h->opaque, (unsigned)a[0], a[1], a[2]);
		break;
	case 1: /* hart_stop(): does not return on success */
		ret[0] = h->hart_stop(h->opaque, hart);
		break;
	case 2: /* hart_get_status(hartid) */
		if (a[0] >= h->nharts) {
			ret[0] = SBI_ERR_INVALID_PARAM;
		} else {
			int st = h->hart_status(h->opaque, (unsigned)a[0]);

			if (st < 0)
				ret[0] = st;
			else
				ret[1] = st;
		}
		break;
	case 3: /* hart_suspend(suspend_type, resume_addr, opaque) */
		if (a[0] > UINT32_MAX)
			ret[0] = SBI_ERR_INVALID_PARAM;
		else
			ret[0] = h->hart_suspend(h->opaque, hart, (uint32_t)a[0], a[1], a[2]);
		break;
	default:
		ret[0] = SBI_ERR_NOT_SUPPORTED;
	}
}

static void srst_call(const struct sbi_host *h, uint64_t fid, const uint64_t *a, int64_t *ret)
{
	/* §10: fid 0 system_reset(type, reason). Types above 2 are reserved or vendor. */
	if (fid != 0) {
		ret[0] = SBI_ERR_NOT_SUPPORTED;
		return;
	}
	if (a[0] > 2 || (a[1] > 1 && a[1] < 0xF0000000ULL) || a[1] > UINT32_MAX) {
		ret[0] = SBI_ERR_INVALID_PARAM;
		return;
	}
	h->system_reset(h->opaque, (uint32_t)a[0], (uint32_t)a[1]);
	ret[0] = SBI_SUCCESS; /* the VMM stops the VM; the hart never resumes */
}

static void dbcn_call(const struct sbi_host *h, uint64_t fid, const uint64_t *a, int64_t *ret)
{
	/* §12: write(num_bytes, base_lo, base_hi), read(...), write_byte(byte). */
	long n;

	switch (fid) {
	case 0:
	case 1: {
		uint64_t len = a[0], gpa = a[1]; /* RV64: base_hi (a2) must be 0 */
		uint8_t *p;

		if (a[2] != 0) {
			ret[0] = SBI_ERR_INVALID_PARAM;
			return;
		}
		if (len == 0) {
			ret[1] = 0;
			return;
		}
		p = h->ram_ptr(h->opaque, gpa, len);
		if (!p) {
			ret[0] = SBI_ERR_INVALID_PARAM;
			return;
		}
		n = fid == 0 ? h->console_write(h->opaque, p, len)
			     : h->console_read(h->opaque, p, len);
		if (n < 0)
			ret[0] = SBI_ERR_FAILED;
		else
			ret[1] = n;
		return;
	}
	case 2: {
		uint8_t byte = (uint8_t)a[0];

		if (h->console_write(h->opaque, &byte, 1) < 0)
			ret[0] = SBI_ERR_FAILED;
		return;
	}
	default:
		ret[0] = SBI_ERR_NOT_SUPPORTED;
	}
}

void sbi_call(const struct sbi_host *h, unsigned hart, uint64_t ext, uint64_t fid,
	      const uint64_t a[6], int64_t ret[2], struct sbi_stats *stats)
{
	ret[0] = SBI_SUCCESS;
	ret[1] = 0;
	if (stats)
		stats->calls[ext_index(ext)]++;
	switch (ext) {
	case SBI_EXT_BASE:
		base_call(h, fid, a, ret);
		break;
	case SBI_EXT_TIME: /* §6: set_timer(stime_value) */
		if (fid == 0)
			h->set_timer(h->opaque, hart, a[0]);
		else
			ret[0] = SBI_ERR_NOT_SUPPORTED;
		break;
	case SBI_EXT_IPI: /* §7: send_ipi(hart_mask, hart_mask_base) */
		if (fid == 0)
			ret[0] = for_each_hart(h, a[0], a[1], do_ipi, NULL);
		else
			ret[0] = SBI_ERR_NOT_SUPPORTED;
		break;
	case SBI_EXT_RFENCE:
		rfence_call(h, fid, a, ret);
		break;
	case SBI_EXT_HSM:
		hsm_call(h, hart, fid, a, ret);
		break;
	case SBI_EXT_SRST:
		srst_call(h, fid, a, ret);
		break;
	case SBI_EXT_DBCN:
		dbcn_call(h, fid, a, ret);
		break;
	default:
		log_debug("hart %u: unsupported SBI call ext 0x%llx fid %llu", hart,
			  (unsigned long long)ext, (unsigned long long)fid);
		ret[0] = SBI_ERR_NOT_SUPPORTED;
	}
}
