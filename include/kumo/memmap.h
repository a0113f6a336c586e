/*
 * memmap.h - the guest-physical address space: one RAM region plus MMIO ranges.
 *
 * Usage: the board creates a memmap, adds RAM and registers each device's MMIO range with its
 * mmio_ops; accelerators dispatch loads/stores that miss RAM through memmap_mmio_read/write.
 * Registration happens before vCPUs start (single thread); lookups afterwards are lock-free and
 * callable from any thread. Devices do their own locking inside their ops.
 */
#ifndef KUMO_MEMMAP_H
#define KUMO_MEMMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mmio_ops {
	/* size is 1, 2, 4 or 8; off is relative to the region base. Unimplemented registers read 0. */
	uint64_t (*read)(void *opaque, uint64_t off, unsigned size);
	void (*write)(void *opaque, uint64_t off, uint64_t val, unsigned size);
};

struct memmap;

struct memmap *memmap_new(void);
void memmap_free(struct memmap *mm);

/* RAM: host memory [host, host+size) appears at guest-physical base. At most one RAM region. */
int memmap_add_ram(struct memmap *mm, uint64_t base, uint64_t size, void *host);
/* Registers an MMIO range. -EEXIST when it overlaps RAM or another range; -EINVAL on size 0. */
int memmap_add_mmio(struct memmap *mm, const char *name, uint64_t base, uint64_t size,
		    const struct mmio_ops *ops, void *opaque);

/* -ENOENT when nothing is mapped at [gpa, gpa+size): the caller raises an access fault. */
int memmap_mmio_read(const struct memmap *mm, uint64_t gpa, unsigned size, uint64_t *val);
int memmap_mmio_write(const struct memmap *mm, uint64_t gpa, unsigned size, uint64_t val);

/* Host pointer for guest RAM [gpa, gpa+len), or NULL when any part lies outside RAM. */
void *memmap_ram_ptr(const struct memmap *mm, uint64_t gpa, uint64_t len);
/*
 * Writes to guest RAM that bypass the vCPUs (device DMA) must be announced so that caches of
 * guest code (the software CPU's decode cache) drop what they hold for those bytes. The VMM
 * sets the hook; devices call memmap_ram_written() with the host pointer and length they
 * wrote, from any thread. Without a hook it does nothing.
 */
typedef void memmap_write_hook(void *opaque, uint64_t gpa, uint64_t len);
void memmap_set_write_hook(struct memmap *mm, memmap_write_hook *hook, void *opaque);
void memmap_ram_written(const struct memmap *mm, const void *host, uint64_t len);
/*
 * The other side: a device announces the guest buffers it MAY write before it writes them, so
 * that write-protected guest RAM (dirty tracking for diff snapshots) is opened first; back
 * ends fill buffers with system calls (preadv), which fail with EFAULT on protected pages
 * instead of faulting. Set by the VMM; any thread; nothing without a hook.
 */
void memmap_set_prewrite_hook(struct memmap *mm, memmap_write_hook *hook, void *opaque);
void memmap_ram_will_write(const struct memmap *mm, const void *host, uint64_t len);

uint64_t memmap_ram_base(const struct memmap *mm);
uint64_t memmap_ram_size(const struct memmap *mm);
void *memmap_ram_host(const struct memmap *mm);

#endif
