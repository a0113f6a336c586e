/*
 * memmap.c - guest-physical address space: one RAM region and a sorted table of MMIO ranges.
 * Lookups binary-search the table; it is only modified before vCPUs start. Also the dirty log
 * of guest RAM (one bit per 4 KiB page, memmap.h).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "kumo/base.h"
#include "kumo/memmap.h"

struct mmio_region {
	uint64_t base, size;
	const struct mmio_ops *ops;
	void *opaque;
	char name[32];
};

struct memmap {
	uint8_t *ram;
	uint64_t ram_base, ram_size;
	struct mmio_region *regions; /* sorted by base, non-overlapping */
	memmap_write_hook *write_hook; /* set before vCPUs and devices run */
	void *write_opaque;
	_Atomic uint64_t *dirty;  /* [dirty_words]: one bit per RAM page; NULL without RAM */
	size_t dirty_words;
	_Atomic bool dirty_on;    /* the log records marks */
	unsigned nregions, cap;
};

struct memmap *memmap_new(void)
{
	return calloc(1, sizeof(struct memmap));
}

void memmap_free(struct memmap *mm)
{
	if (!mm)
		return;
	free(mm->regions);
	free((void *)mm->dirty);
	free(mm);
}

static bool overlaps(uint64_t a, uint64_t asz, uint64_t b, uint64_t bsz)
{
	return a < b + bsz && b < a + asz;
}

int memmap_add_ram(struct memmap *mm, uint64_t base, uint64_t size, void *host)
{
	if (!size || base + size < base || !host)
		return -EINVAL;
	if (mm->ram)
		return -EEXIST;
	for (unsigned i = 0; i < mm->nregions; i++)
		if (overlaps(base, size, mm->regions[i].base, mm->regions[i].size))
			return -EEXIST;
	mm->dirty_words = (size_t)(((size + MEMMAP_DIRTY_PAGE - 1) >> MEMMAP_DIRTY_PAGE_SHIFT) + 63) / 64;
	mm->dirty = calloc(mm->dirty_words, sizeof(*mm->dirty));
	if (!mm->dirty) {
		mm->dirty_words = 0;
		return -ENOMEM;
	}
	mm->ram = host;
	mm->ram_base = base;
	mm->ram_size = size;
	return 0;
}

int memmap_add_mmio(struct memmap *mm, const char *name, uint64_t base, uint64_t size,
		    const struct mmio_ops *ops, void *opaque)
{
	unsigned pos;

	if (!size || base + size < base || !ops)
		return -EINVAL;
	if (mm->ram && overlaps(base, size, mm->ram_base, mm->ram_size))
		return -EEXIST;
	for (pos = 0; pos < mm->nregions; pos++) {
		if (overlaps(base, size, mm->regions[pos].base, mm->regions[pos].size))
			return -EEXIST;
		if (mm->regions[pos].base > base)
			break;
	}
	if (mm->nregions == mm->cap) {
		unsigned cap = mm->cap ? mm->cap * 2 : 16;
		struct mmio_region *r = realloc(mm->regions, cap * sizeof(*r));

		if (!r)
			return -ENOMEM;
		mm->regions = r;
		mm->cap = cap;
	}
	memmove(&mm->regions[pos + 1], &mm->regions[pos],
		(mm->nregions - pos) * sizeof(mm->regions[0]));
	mm->regions[pos] = (struct mmio_region){.base = base, .size = size, .ops = ops,
						.opaque = opaque};
	snprintf(mm->regions[pos].name, sizeof(mm->regions[pos].name), "%s", name ? name : "?");
	mm->nregions++;
	return 0;
}

static const struct mmio_region *find(const struct memmap *mm, uint64_t gpa, unsigned size)
{
	unsigned lo = 0, hi = mm->nregions;

	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;
		const struct mmio_region *r = &mm->regions[mid];

		if (gpa < r->base)
			hi = mid;
		else if (gpa - r->base >= r->size)
			lo = mid + 1;
		else
			return gpa - r->base + size <= r->size ? r : NULL;
	}
	return NULL;
}

int memmap_mmio_read(const struct memmap *mm, uint64_t gpa, unsigned size, uint64_t *val)
{
	const struct mmio_region *r = find(mm, gpa, size);

	if (!r)
		return -ENOENT;
	*val = r->ops->read ? r->ops->read(r->opaque, gpa - r->base, size) : 0;
	if (size < 8)
		*val &= (1ULL << (size * 8)) - 1;
	return 0;
}

int memmap_mmio_write(const struct memmap *mm, uint64_t gpa, unsigned size, uint64_t val)
{
	const struct mmio_region *r = find(mm, gpa, size);

	if (!r)
		return -ENOENT;
	if (size < 8)
		val &= (1ULL << (size * 8)) - 1;
	if (r->ops->write)
		r->ops->write(r->opaque, gpa - r->base, val, size);
	return 0;
}

void *memmap_ram_ptr(const struct memmap *mm, uint64_t gpa, uint64_t len)
{
	if (!mm->ram || gpa < mm->ram_base)
		return NULL;
	uint64_t off = gpa - mm->ram_base;
	if (off > mm->ram_size || len > mm->ram_size - off)
		return NULL;
	return mm->ram + off;
}

void memmap_set_write_hook(struct memmap *mm, memmap_write_hook *hook, void *opaque)
{
	mm->write_hook = hook;
	mm->write_opaque = opaque;
}

/* Calls hook for the part of [host, host+len) that lies in guest RAM, and marks it dirty. */
static void ram_announced(const struct memmap *mm, memmap_write_hook *hook, void *opaque,
			  const void *host, uint64_t len)
{
	const uint8_t *p = host;
	uint64_t gpa;

	if (!len || !mm->ram || p < mm->ram || p - mm->ram >= (ptrdiff_t)mm->ram_size)
		return;
	if (len > mm->ram_size - (uint64_t)(p - mm->ram))
		len = mm->ram_size - (uint64_t)(p - mm->ram);
	gpa = mm->ram_base + (uint64_t)(p - mm->ram);
	memmap_dirty_mark(mm, gpa, len);
	if (hook)
		hook(opaque, gpa, len);
}

void memmap_ram_written(const struct memmap *mm, const void *host, uint64_t len)
{
	ram_announced(mm, mm->write_hook, mm->write_opaque, host, len);
}

void memmap_ram_will_write(const struct memmap *mm, const void *host, uint64_t len)
{
	ram_announced(mm, NULL, NULL, host, len);
}

/* ---- dirty log */

int memmap_dirty_log_start(struct memmap *mm)
{
	if (!mm->dirty)
		return -ENODEV;
	for (size_t w = 0; w < mm->dirty_words; w++)
		atomic_store_explicit(&mm->dirty[w], 0, memory_order_relaxed);
	/* Release: a writer that sees the log on marks into a cleared bitmap. */
	atomic_store_explicit(&mm->dirty_on, true, memory_order_release);
	return 0;
}

void memmap_dirty_log_stop(struct memmap *mm)
{
	atomic_store_explicit(&mm->dirty_on, false, memory_order_release);
}

bool memmap_dirty_log_active(const struct memmap *mm)
{
	return atomic_load_explicit(&mm->dirty_on, memory_order_acquire);
}

size_t memmap_dirty_log_words(const struct memmap *mm)
{
	return mm->dirty_words;
}

int memmap_dirty_log_fetch(struct memmap *mm, uint64_t *out, size_t nwords)
{
	if (nwords != mm->dirty_words)
		return -EINVAL;
	for (size_t w = 0; w < nwords; w++)
		out[w] = atomic_exchange_explicit(&mm->dirty[w], 0, memory_order_acq_rel);
	return 0;
}

void memmap_dirty_mark(const struct memmap *mm, uint64_t gpa, uint64_t len)
{
	uint64_t first, last, end;

	if (!len || !atomic_load_explicit(&mm->dirty_on, memory_order_acquire) || !mm->ram ||
	    gpa >= mm->ram_base + mm->ram_size || gpa + len <= mm->ram_base || gpa + len < gpa)
		return;
	if (gpa < mm->ram_base) {
		len -= mm->ram_base - gpa;
		gpa = mm->ram_base;
	}
	end = gpa + len - mm->ram_base;
	if (end > mm->ram_size)
		end = mm->ram_size;
	first = (gpa - mm->ram_base) >> MEMMAP_DIRTY_PAGE_SHIFT;
	last = (end - 1) >> MEMMAP_DIRTY_PAGE_SHIFT;
	for (uint64_t pg = first; pg <= last; pg++) {
		_Atomic uint64_t *w = &mm->dirty[pg / 64];
		uint64_t bit = 1ull << (pg % 64);

		/* A plain load first: most marks find the bit set and need no locked operation. */
		if (!(atomic_load_explicit(w, memory_order_relaxed) & bit))
			atomic_fetch_or_explicit(w, bit, memory_order_relaxed);
	}
}

bool memmap_dirty_page_clean(const struct memmap *mm, uint64_t gpa)
{
	uint64_t pg;

	if (!atomic_load_explicit(&mm->dirty_on, memory_order_acquire) || !mm->ram ||
	    gpa < mm->ram_base || gpa - mm->ram_base >= mm->ram_size)
		return false;
	pg = (gpa - mm->ram_base) >> MEMMAP_DIRTY_PAGE_SHIFT;
	return !(atomic_load_explicit(&mm->dirty[pg / 64], memory_order_relaxed) & (1ull << (pg % 64)));
}

uint64_t memmap_ram_base(const struct memmap *mm)
{
	return mm->ram_base;
}

uint64_t memmap_ram_size(const struct memmap *mm)
{
	return mm->ram_size;
}

void *memmap_ram_host(const struct memmap *mm)
{
	return mm->ram;
}
