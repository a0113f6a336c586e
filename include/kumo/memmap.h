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
 * guest code (the software CPU's decode cache) drop what they hold for those bytes, and so
 * that the dirty log (below) records them. The VMM sets the hook; devices call
 * memmap_ram_written() with the host pointer and length they wrote, from any thread. Without
 * a hook only the dirty log is updated.
 */
typedef void memmap_write_hook(void *opaque, uint64_t gpa, uint64_t len);
void memmap_set_write_hook(struct memmap *mm, memmap_write_hook *hook, void *opaque);
void memmap_ram_written(const struct memmap *mm, const void *host, uint64_t len);
/*
 * The other side: a device announces the guest buffers it MAY write before it writes them
 * (before the back end's preadv/recv fills them), from any thread. Those pages are marked in
 * the dirty log (below) when it is on; nothing else happens.
 */
void memmap_ram_will_write(const struct memmap *mm, const void *host, uint64_t len);

/*
 * Dirty log of guest RAM (diff snapshots, migration): one bit per 4 KiB page, set when the
 * page may have been written since the log was started or last fetched. Writers: the
 * accelerator (the first store of a vCPU to a clean page, DESIGN.md §4), device DMA
 * (memmap_ram_written/memmap_ram_will_write mark what they announce) and anyone calling
 * memmap_dirty_mark(); bits are set with atomic OR from any thread. The bitmap exists from
 * memmap_add_ram() to memmap_free(). Turning the log on or clearing it does not make an
 * accelerator forget what it cached: the caller also runs accel_ops.dirty_log_sync (the
 * VMM's snapshot code does both while the VM is paused).
 */
#define MEMMAP_DIRTY_PAGE_SHIFT 12
#define MEMMAP_DIRTY_PAGE (1ull << MEMMAP_DIRTY_PAGE_SHIFT)

/* Clears every bit and turns the log on. -ENODEV without RAM. Any thread. */
int memmap_dirty_log_start(struct memmap *mm);
/* Turns the log off (marks are ignored from now on); the bits stay until the next start. */
void memmap_dirty_log_stop(struct memmap *mm);
bool memmap_dirty_log_active(const struct memmap *mm);
/* Number of 64-bit words of the bitmap: ceil(RAM pages / 64). 0 without RAM. */
size_t memmap_dirty_log_words(const struct memmap *mm);
/*
 * Fetch and clear: copies the bitmap into out[0..nwords) (bit i of word w: the page at RAM
 * offset (64 * w + i) * 4 KiB) and clears each word atomically as it is read, so a mark that
 * races with the fetch lands in this copy or stays for the next. -EINVAL when nwords differs
 * from memmap_dirty_log_words(). The log stays on.
 */
int memmap_dirty_log_fetch(struct memmap *mm, uint64_t *out, size_t nwords);
/* Marks the pages of guest-physical [gpa, gpa+len) that lie in RAM; nothing when off. */
void memmap_dirty_mark(const struct memmap *mm, uint64_t gpa, uint64_t len);
/* True when the log is on and the page holding gpa (in RAM) is not marked yet. */
bool memmap_dirty_page_clean(const struct memmap *mm, uint64_t gpa);

uint64_t memmap_ram_base(const struct memmap *mm);
uint64_t memmap_ram_size(const struct memmap *mm);
void *memmap_ram_host(const struct memmap *mm);

#endif
