/*
 * snapshot.c - snapshots of a paused VM into a directory, and restore in a new process.
 *
 * A snapshot directory holds these files:
 *   manifest.json  format name and version, the configuration, the guest clock, every hart's
 *                  registers (by accel register id) and HSM state, and the size and checksum
 *                  of the other files
 *   devices.bin    board_save(): one record per board device
 *   memory.bin     guest RAM, as large as RAM; all-zero pages are holes (sparse file)
 *   dirty.bin      diff snapshots only: one bit per 4 KiB page of RAM (little-endian 64-bit
 *                  words: bit p % 64 of word p / 64 is page p), 1 when memory.bin holds that
 *                  page; the other pages come from the parent snapshot
 *   (compressed: memory.zst and memory.idx instead of memory.bin, see save_memory_zstd)
 *
 * Dirty tracking for diff snapshots uses the memory map's dirty log (memmap.h: one bit per
 * page, set atomically from any thread). After every snapshot (and after a restore), with the
 * VM paused, the log is cleared and every vCPU is told to forget its cached write permissions
 * (accel_ops.dirty_log_sync); the software CPU then sends the first store to each clean page
 * through its slow path, which marks the page and refills the TLB entry without the not-dirty
 * flag (RV64_TLB_REQ_DIRTY, DESIGN.md §4), so later stores to it cost nothing extra. Device
 * DMA is marked where devices announce it (memmap_ram_will_write, memmap_ram_written). A diff
 * snapshot fetches and clears the log and writes only the pages marked there.
 *
 * Checksums are 64-bit FNV-1a style hashes (not cryptographic: they catch truncation and
 * corruption, not tampering). The memory checksum covers the non-zero pages and their offsets,
 * so restore verifies it reading only the file's data extents (SEEK_DATA), then maps the file
 * MAP_PRIVATE over guest RAM: pages come from the page cache on first touch, and the guest's
 * writes stay private to the process, so any number of VMs can restore from one snapshot.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "kumo/accel.h"
#include "kumo/base.h"
#include "kumo/board.h"
#include "kumo/control.h"
#include "kumo/memmap.h"
#include "kumo/sbi.h"
#include "kumo/vm.h"

#define SNAP_FORMAT "kumo-snapshot"
#define SNAP_PAGE 4096u
#define SNAP_MANIFEST_MAX (4u << 20)
#define SNAP_DEVICES_MAX (16u << 20)

#define SNAP_CHUNK (2u << 20)
#define SNAP_CHAIN_MAX 64

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

/*
 * CSRs saved per hart, in restore order (priv 1.12 tables 2.2-2.5): mstatus before the
 * registers whose writability depends on it, pmpaddr before pmpcfg (a locked entry ignores
 * later address writes), satp after mstatus. sstatus/sie/sip are views of the M registers.
 */
static const uint16_t snap_csrs[] = {
	0x300, /* mstatus */
	0x301, /* misa */
	0x302, 0x303, /* medeleg, mideleg */
	0x304, 0x305, 0x306, /* mie, mtvec, mcounteren */
	0x30a, 0x320, /* menvcfg, mcountinhibit */
	0x340, 0x341, 0x342, 0x343, /* mscratch, mepc, mcause, mtval */
	0x747, /* mseccfg */
	0x105, 0x106, 0x10a, /* stvec, scounteren, senvcfg */
	0x140, 0x141, 0x142, 0x143, /* sscratch, sepc, scause, stval */
	0x14d, /* stimecmp */
	0x180, /* satp */
	0x003, /* fcsr */
	0xb00, 0xb02, /* mcycle, minstret */
};
#define SNAP_PMPCFG0 0x3a0
#define SNAP_PMPADDR0 0x3b0

uint64_t snapshot_hash(uint64_t h, const void *buf, size_t len);
uint64_t snapshot_hash(uint64_t h, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * FNV_PRIME;
	return h;
}

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;
	uint64_t acc = 0;

	for (unsigned i = 0; i < SNAP_PAGE / 8; i++)
		acc |= w[i];
	return acc == 0;
}

/* Memory checksum: per non-zero page, its offset then its words (four lanes for speed). */
static uint64_t hash_page(uint64_t h, uint64_t off, const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;
	uint64_t l[4] = {h ^ off, h + off, h * 3 + off, ~h ^ off};

	for (unsigned i = 0; i < SNAP_PAGE / 8; i += 4)
		for (unsigned k = 0; k < 4; k++)
			l[k] = (l[k] ^ w[i + k]) * FNV_PRIME;
	return snapshot_hash(h, l, sizeof(l));
}

static char *path_in(const char *dir, const char *name)
{
	char *p = NULL;

	if (asprintf(&p, "%s/%s", dir, name) < 0)
		return NULL;
	return p;
}

static json_t *hex(uint64_t v)
{
	char b[24];

	snprintf(b, sizeof(b), "0x%" PRIx64, v);
	return json_string(b);
}

static bool unhex(json_t *j, uint64_t *out)
{
	const char *s = json_string_value(j);
	char *end;

	if (!s || strncmp(s, "0x", 2))
		return false;
	errno = 0;
	*out = strtoull(s + 2, &end, 16);
	return !errno && *end == '\0' && end != s + 2;
}

static int write_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static int write_file(const char *dir, const char *name, const void *buf, size_t len)
{
	char *p = path_in(dir, name);
	int fd, ret;

	if (!p)
		return -ENOMEM;
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		ret = -errno;
		err_set("cannot write %s: %s", p, strerror(errno));
		free(p);
		return ret;
	}
	ret = write_all(fd, buf, len, 0);
	if (!ret && fsync(fd))
		ret = -errno;
	if (ret)
		err_set("cannot write %s: %s", p, strerror(-ret));
	close(fd);
	free(p);
	return ret;
}

/* ---- dirty tracking: the memory map's dirty log (one bit per 4 KiB page, memmap.h) ---- */

/* What the next diff snapshot is relative to (one VM per process snapshots or restores). */
static struct {
	uint8_t *ram;          /* guest RAM of the VM whose writes are logged; NULL: none */
	char parent[PATH_MAX]; /* the snapshot the next diff is relative to */
} track;

static bool page_dirty(const uint64_t *bits, uint64_t off)
{
	uint64_t pg = off / SNAP_PAGE;

	return bits[pg / 64] >> (pg % 64) & 1;
}

/* Words of a dirty bitmap of guest RAM of `size` bytes (the memory map's layout). */
static size_t dirty_words(uint64_t size)
{
	return (size_t)((size / SNAP_PAGE + 63) / 64);
}

/*
 * Starts (or restarts) tracking relative to snapshot `dir`: every page clean in the memory
 * map's dirty log, and every vCPU forgets its cached write permissions so that its next store
 * to each page is logged (accel_ops.dirty_log_sync). The VM must be paused.
 */
static int track_start(struct vm *vm, const char *dir)
{
	const struct accel_ops *ops = vm_accel_ops(vm);
	struct memmap *mm = board_memmap(vm_board(vm));
	uint64_t size;
	uint8_t *ram = vm_ram(vm, &size);
	int ret;

	track.ram = NULL;
	if (!ops->dirty_log_sync) {
		err_set("accelerator %s cannot log guest writes", ops->name);
		return -ENOTSUP;
	}
	if (!realpath(dir, track.parent)) {
		ret = -errno;
		err_set("cannot resolve %s: %s", dir, strerror(errno));
		return ret;
	}
	if (memmap_dirty_log_words(mm) != dirty_words(size)) {
		err_set("the memory map's dirty log does not cover guest RAM");
		return -EINVAL;
	}
	ret = memmap_dirty_log_start(mm);
	if (ret) {
		err_set("cannot start the dirty log: %s", strerror(-ret));
		return ret;
	}
	for (unsigned i = 0; i < vm_ncpus(vm); i++) {
		ret = ops->dirty_log_sync(vm_accel_vcpu(vm, i));
		if (ret) {
			memmap_dirty_log_stop(mm);
			err_set("vCPU %u cannot log its writes: %s", i, strerror(-ret));
			return ret;
		}
	}
	track.ram = ram;
	return 0;
}

/* A diff snapshot failed after fetching the log: its pages stay dirty for the next one. */
static void track_putback(struct vm *vm, const uint64_t *bits, size_t nwords)
{
	struct memmap *mm = board_memmap(vm_board(vm));
	uint64_t base = memmap_ram_base(mm);

	for (size_t w = 0; w < nwords; w++)
		for (uint64_t b = bits[w]; b; b &= b - 1) {
			uint64_t pg = (uint64_t)w * 64 + (unsigned)__builtin_ctzll(b);

			memmap_dirty_mark(mm, base + pg * SNAP_PAGE, 1);
		}
}

/*
 * Writes guest RAM as a sparse file; runs of non-zero pages go out in one pwrite. With
 * `dirty` (diff: one bit per page), only pages marked there are written and hashed.
 */
static int save_memory(const char *dir, const uint8_t *ram, uint64_t size, uint64_t *hash,
		       uint64_t *data_bytes, const uint64_t *dirty)
{
	char *p = path_in(dir, "memory.bin");
	uint64_t h = FNV_OFFSET, run = 0, nrun = 0;
	int fd, ret = 0;

	if (!p)
		return -ENOMEM;
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || ftruncate(fd, (off_t)size)) {
		ret = -errno;
		err_set("cannot create %s: %s", p, strerror(errno));
		goto out;
	}
	*data_bytes = 0;
	for (uint64_t off = 0; off <= size; off += SNAP_PAGE) {
		bool zero = off == size || (dirty && !page_dirty(dirty, off)) ||
			    page_is_zero(ram + off);

		if (!zero) {
			h = hash_page(h, off, ram + off);
			if (!nrun)
				run = off;
			nrun += SNAP_PAGE;
			if (nrun < (64u << 20))
				continue;
		}
		if (nrun) {
			ret = write_all(fd, ram + run, nrun, run);
			if (ret) {
				err_set("cannot write %s: %s", p, strerror(-ret));
				goto out;
			}
			*data_bytes += nrun;
			nrun = 0;
		}
	}
	if (fsync(fd)) {
		ret = -errno;
		err_set("cannot write %s: %s", p, strerror(errno));
	}
	*hash = h;
out:
	if (fd >= 0)
		close(fd);
	free(p);
	return ret;
}

/* ---- zstd-compressed memory (memory.zst + memory.idx) ---- */

/* One index entry per 2 MiB chunk: where its zstd frame is in memory.zst; len 0: all zero. */
struct snap_zidx {
	uint64_t off, len;
};

/*
 * Writes guest RAM as one zstd frame per non-zero 2 MiB chunk into memory.zst and the index
 * into memory.idx. With `dirty` (diff: one bit per page), only chunks with a dirty page are
 * written, their clean pages compressed as zeros (restore copies just the dirty pages out of
 * the frame), so the diff stays page-granular. The checksum is the one of the uncompressed
 * form (non-zero pages written and their offsets), so both forms verify alike.
 */
static int save_memory_zstd(const char *dir, const uint8_t *ram, uint64_t size, uint64_t *hash,
			    uint64_t *data_bytes, const uint64_t *dirty, uint64_t *idx_hash)
{
	size_t n = (size_t)((size + SNAP_CHUNK - 1) / SNAP_CHUNK), bound = ZSTD_compressBound(SNAP_CHUNK);
	struct snap_zidx *idx = calloc(n, sizeof(*idx));
	uint8_t *zbuf = malloc(bound), *part = dirty ? malloc(SNAP_CHUNK) : NULL;
	char *p = path_in(dir, "memory.zst");
	uint64_t h = FNV_OFFSET, pos = 0;
	int fd = -1, ret = 0;

	if (!idx || !zbuf || !p || (dirty && !part)) {
		err_set("out of memory compressing guest RAM");
		ret = -ENOMEM;
		goto out;
	}
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		ret = -errno;
		err_set("cannot create %s: %s", p, strerror(errno));
		goto out;
	}
	for (size_t c = 0; c < n; c++) {
		uint64_t off = (uint64_t)c * SNAP_CHUNK;
		uint64_t len = size - off < SNAP_CHUNK ? size - off : SNAP_CHUNK;
		const uint8_t *src = ram + off;
		bool zero = true;
		size_t z;

		if (dirty) {
			/* The dirty pages of the chunk over zeros; nothing at all when none is dirty. */
			bool any = false;

			for (uint64_t o = 0; o < len; o += SNAP_PAGE) {
				bool d = page_dirty(dirty, off + o);

				any |= d;
				if (d)
					memcpy(part + o, ram + off + o, SNAP_PAGE);
				else
					memset(part + o, 0, SNAP_PAGE);
			}
			if (!any)
				continue;
			src = part;
		}
		for (uint64_t o = 0; o < len; o += SNAP_PAGE)
			if (!page_is_zero(src + o)) {
				h = hash_page(h, off + o, src + o);
				zero = false;
			}
		if (zero)
			continue;
		z = ZSTD_compress(zbuf, bound, src, len, 3);
		if (ZSTD_isError(z)) {
			err_set("zstd: %s", ZSTD_getErrorName(z));
			ret = -EIO;
			goto out;
		}
		ret = write_all(fd, zbuf, z, pos);
		if (ret) {
			err_set("cannot write %s: %s", p, strerror(-ret));
			goto out;
		}
		idx[c] = (struct snap_zidx){.off = pos, .len = z};
		pos += z;
	}
	if (fsync(fd)) {
		ret = -errno;
		err_set("cannot write %s: %s", p, strerror(errno));
		goto out;
	}
	ret = write_file(dir, "memory.idx", idx, n * sizeof(*idx));
	*hash = h;
	*data_bytes = pos;
	*idx_hash = snapshot_hash(FNV_OFFSET, idx, n * sizeof(*idx));
out:
	if (fd >= 0)
		close(fd);
	free(p);
	free(part);
	free(zbuf);
	free(idx);
	return ret;
}

static json_t *save_hart(struct vm *vm, unsigned i)
{
	const struct accel_ops *ops = vm_accel_ops(vm);
	struct accel_vcpu *av = vm_accel_vcpu(vm, i);
	json_t *o = json_object(), *x = json_array(), *f = json_array(), *csr = json_object();
	uint64_t v = 0;
	char name[8];

	vm_settle_vcpu(vm, i);
	json_object_set_new(o, "id", json_integer(i));
	json_object_set_new(o, "hsm", json_integer(vm_hsm_state(vm, i)));
	ops->get_reg(av, ACCEL_REG_PC, &v);
	json_object_set_new(o, "pc", hex(v));
	ops->get_reg(av, ACCEL_REG_PRIV, &v);
	json_object_set_new(o, "priv", json_integer((json_int_t)v));
	for (unsigned r = 0; r < 32; r++) {
		v = 0;
		ops->get_reg(av, ACCEL_REG_X(r), &v);
		json_array_append_new(x, hex(v));
		v = 0;
		ops->get_reg(av, ACCEL_REG_F(r), &v);
		json_array_append_new(f, hex(v));
	}
	for (unsigned k = 0; k < ARRAY_SIZE(snap_csrs); k++) {
		snprintf(name, sizeof(name), "0x%03x", snap_csrs[k]);
		if (!ops->get_reg(av, ACCEL_REG_CSR(snap_csrs[k]), &v))
			json_object_set_new(csr, name, hex(v));
	}
	/* Not the mip CSR: its device lines are the devices' state (accel.h ACCEL_REG_MIP_SOFT). */
	if (!ops->get_reg(av, ACCEL_REG_MIP_SOFT, &v))
		json_object_set_new(o, "mip_soft", hex(v));
	for (unsigned k = 0; k < 64; k++) {
		snprintf(name, sizeof(name), "0x%03x", SNAP_PMPADDR0 + k);
		if (!ops->get_reg(av, ACCEL_REG_CSR(SNAP_PMPADDR0 + k), &v))
			json_object_set_new(csr, name, hex(v));
	}
	for (unsigned k = 0; k < 16; k += 2) { /* RV64: even pmpcfg registers only */
		snprintf(name, sizeof(name), "0x%03x", SNAP_PMPCFG0 + k);
		if (!ops->get_reg(av, ACCEL_REG_CSR(SNAP_PMPCFG0 + k), &v))
			json_object_set_new(csr, name, hex(v));
	}
	json_object_set_new(o, "x", x);
	json_object_set_new(o, "f", f);
	json_object_set_new(o, "csr", csr);
	return o;
}

int snapshot_save(struct vm *vm, const char *dir, bool diff, bool compress)
{
	const struct vm_config *cfg = vm_get_config(vm);
	json_t *m = NULL, *harts, *memj;
	void *devs = NULL, *ram;
	uint64_t *dirty = NULL;
	size_t devs_len = 0, nwords = 0;
	uint64_t ram_size, mem_hash = 0, data = 0, idx_hash = 0, t0 = clock_ns();
	char *text = NULL, real[PATH_MAX];
	int ret;

	if (!vm_is_paused(vm)) {
		err_set("cannot snapshot: the VM is not paused");
		return -EPERM;
	}
	if (!dir || !*dir || strlen(dir) > PATH_MAX - 32) {
		err_set("snapshot path is empty or too long");
		return -EINVAL;
	}
	if (mkdir(dir, 0755) && errno != EEXIST) {
		ret = -errno;
		err_set("cannot create snapshot directory %s: %s", dir, strerror(errno));
		return ret;
	}
	ram = vm_ram(vm, &ram_size);
	if (diff) {
		struct memmap *mm = board_memmap(vm_board(vm));

		if (!track.ram || track.ram != ram || !memmap_dirty_log_active(mm)) {
			err_set("cannot take a diff snapshot: it needs an earlier snapshot (or a restore) "
				"of this VM in this process");
			return -EPERM;
		}
		if (!realpath(dir, real) || !strcmp(real, track.parent)) {
			err_set("cannot take a diff snapshot into %s: it is its own parent", dir);
			return -EINVAL;
		}
		/*
		 * The vCPUs are parked and the I/O thread quiesced: the log is stable. Fetched
		 * and cleared here; a failure below puts the pages back (track_putback).
		 */
		nwords = memmap_dirty_log_words(mm);
		dirty = malloc(nwords * sizeof(*dirty));
		if (!dirty) {
			err_set("out of memory");
			return -ENOMEM;
		}
		ret = memmap_dirty_log_fetch(mm, dirty, nwords);
		if (ret) {
			err_set("cannot read the dirty log: %s", strerror(-ret));
			free(dirty);
			return ret;
		}
	}
	ret = board_save(vm_board(vm), &devs, &devs_len);
	if (ret)
		goto out;
	for (unsigned i = 0; i < vm_ncpus(vm); i++) {
		int st = vm_hsm_state(vm, i);

		if (st != SBI_HSM_STARTED && st != SBI_HSM_STOPPED) {
			err_set("cannot snapshot: hart %u is changing state (HSM %d); try again", i, st);
			ret = -EAGAIN;
			goto out;
		}
	}
	if (compress)
		ret = save_memory_zstd(dir, ram, ram_size, &mem_hash, &data, dirty, &idx_hash);
	else
		ret = save_memory(dir, ram, ram_size, &mem_hash, &data, dirty);
	if (ret)
		goto out;
	ret = write_file(dir, "devices.bin", devs, devs_len);
	if (!ret && diff)
		ret = write_file(dir, "dirty.bin", dirty, nwords * sizeof(*dirty));
	if (ret)
		goto out;

	m = json_object();
	json_object_set_new(m, "format", json_string(SNAP_FORMAT));
	json_object_set_new(m, "version", json_integer(SNAPSHOT_FORMAT_VERSION));
	json_object_set_new(m, "created_unix_ns", json_integer((json_int_t)clock_realtime_ns()));
	json_object_set_new(
		m, "config",
		json_pack("{s:I,s:o,s:s,s:o,s:o,s:o}", "vcpu_count", (json_int_t)cfg->ncpus,
			  "mem_bytes", hex(cfg->mem), "accel", cfg->accel ? cfg->accel : "rv64",
			  "firmware_path", cfg->bios ? json_string(cfg->bios) : json_null(),
			  "kernel_image_path", cfg->kernel ? json_string(cfg->kernel) : json_null(),
			  "boot_args", cfg->append ? json_string(cfg->append) : json_null()));
	{
		json_t *drives = json_array(), *nets = json_array();

		for (unsigned i = 0; i < cfg->ndisks; i++) {
			const struct vm_disk *dk = &cfg->disks[i];

			json_array_append_new(
				drives, json_pack("{s:s,s:b,s:o,s:b,s:b}", "path_on_host", dk->path,
						  "is_read_only", dk->readonly, "serial",
						  dk->serial ? json_string(dk->serial) : json_null(),
						  "direct", dk->direct, "discard", dk->discard));
		}
		for (unsigned i = 0; i < cfg->nnets; i++)
			json_array_append_new(nets, json_string(cfg->nets[i]));
		json_object_set_new(json_object_get(m, "config"), "drives", drives);
		json_object_set_new(json_object_get(m, "config"), "nets", nets);
		json_object_set_new(json_object_get(m, "config"), "rng", json_boolean(cfg->rng));
		json_object_set_new(json_object_get(m, "config"), "virtio_console",
				    json_boolean(cfg->virtio_console));
		json_object_set_new(json_object_get(m, "config"), "agent",
				    json_boolean(cfg->agent == VM_AGENT_ON));
		json_object_set_new(json_object_get(m, "config"), "huge_pages",
				    json_string(cfg->huge_pages == VM_HUGE_PAGES_THP ? "thp" : "none"));
	}
	json_object_set_new(m, "guest_ticks", hex(vm_paused_ticks(vm)));
	harts = json_array();
	for (unsigned i = 0; i < vm_ncpus(vm); i++)
		json_array_append_new(harts, save_hart(vm, i));
	json_object_set_new(m, "harts", harts);
	json_object_set_new(m, "devices",
			    json_pack("{s:s,s:I,s:o}", "file", "devices.bin", "size",
				      (json_int_t)devs_len, "checksum",
				      hex(snapshot_hash(FNV_OFFSET, devs, devs_len))));
	memj = json_pack("{s:s,s:o,s:o,s:o}", "file", compress ? "memory.zst" : "memory.bin",
			 "size", hex(ram_size), "data_bytes", hex(data), "checksum", hex(mem_hash));
	if (compress) {
		json_object_set_new(memj, "compression", json_string("zstd"));
		json_object_set_new(memj, "index",
				    json_pack("{s:s,s:I,s:o}", "file", "memory.idx", "chunk_bytes",
					      (json_int_t)SNAP_CHUNK, "checksum", hex(idx_hash)));
	}
	if (diff) {
		size_t nbytes = nwords * sizeof(*dirty), npages = 0;

		for (size_t w = 0; w < nwords; w++)
			npages += (size_t)__builtin_popcountll(dirty[w]);
		json_object_set_new(memj, "parent", json_string(track.parent));
		json_object_set_new(memj, "dirty",
				    json_pack("{s:s,s:I,s:I,s:I,s:o}", "file", "dirty.bin", "page_bytes",
					      (json_int_t)SNAP_PAGE, "size", (json_int_t)nbytes,
					      "pages", (json_int_t)npages, "checksum",
					      hex(snapshot_hash(FNV_OFFSET, dirty, nbytes))));
	}
	json_object_set_new(m, "memory", memj);
	text = json_dumps(m, JSON_INDENT(1) | JSON_SORT_KEYS);
	if (!text) {
		err_set("out of memory writing the manifest");
		ret = -ENOMEM;
		goto out;
	}
	/* The manifest goes last: a directory without one is not a snapshot. */
	ret = write_file(dir, "manifest.json", text, strlen(text));
	if (ret)
		goto out;
	log_info("%s snapshot %s: %" PRIu64 " MiB RAM (%" PRIu64 " MiB data) in %.1f ms",
		 diff ? "diff" : "full", dir, ram_size >> 20, data >> 20, (clock_ns() - t0) / 1e6);
	/* The next diff snapshot is relative to this one. */
	if (track_start(vm, dir))
		log_warn("diff snapshots are unavailable: %s", err_get());
out:
	if (ret && dirty)
		track_putback(vm, dirty, nwords);
	free(dirty);
	free(text);
	json_decref(m);
	free(devs);
	return ret;
}

/* ---- restore ---- */

/* Reads the manifest; one clear sentence for every way it can be wrong. */
static json_t *read_manifest(const char *dir)
{
	char *p = path_in(dir, "manifest.json");
	json_error_t jerr;
	json_t *m = NULL, *v;
	struct stat st;

	if (!p) {
		err_set("out of memory");
		return NULL;
	}
	if (stat(p, &st)) {
		err_set("%s is not a kumo snapshot: %s is missing", dir, p);
		goto out;
	}
	if (st.st_size > SNAP_MANIFEST_MAX) {
		err_set("%s: manifest is too large (%lld bytes)", p, (long long)st.st_size);
		goto out;
	}
	m = json_load_file(p, JSON_REJECT_DUPLICATES, &jerr);
	if (!m) {
		err_set("%s is corrupted or truncated: %s (line %d)", p, jerr.text, jerr.line);
		goto out;
	}
	v = json_object_get(m, "format");
	if (!json_is_string(v) || strcmp(json_string_value(v), SNAP_FORMAT)) {
		err_set("%s is not a kumo snapshot manifest", p);
		goto bad;
	}
	v = json_object_get(m, "version");
	if (!json_is_integer(v) || json_integer_value(v) != SNAPSHOT_FORMAT_VERSION) {
		if (json_is_integer(v))
			err_set("%s has snapshot format version %lld, this kumo reads version %d", dir,
				(long long)json_integer_value(v), SNAPSHOT_FORMAT_VERSION);
		else
			err_set("%s/manifest.json has no format version", dir);
		goto bad;
	}
	goto out;
bad:
	json_decref(m);
	m = NULL;
out:
	free(p);
	return m;
}

/* Strings of the configuration snapshot_read_config() returns (valid until the next call). */
static struct {
	char accel[32], bios[PATH_MAX];
	char paths[VM_MAX_DISKS][PATH_MAX], serials[VM_MAX_DISKS][24];
	char nets[VM_MAX_NETS][512];
	struct vm_disk disks[VM_MAX_DISKS];
	const char *net_ptrs[VM_MAX_NETS];
} rcfg;

static int read_devices(const char *dir, json_t *c, struct vm_config *cfg)
{
	json_t *drives = json_object_get(c, "drives"), *nets = json_object_get(c, "nets");

	if (json_array_size(drives) > VM_MAX_DISKS || json_array_size(nets) > VM_MAX_NETS)
		goto bad;
	for (size_t i = 0; i < json_array_size(drives); i++) {
		json_t *d = json_array_get(drives, i);
		const char *path = json_string_value(json_object_get(d, "path_on_host"));
		const char *serial = json_string_value(json_object_get(d, "serial"));

		if (!path || strlen(path) >= PATH_MAX || (serial && strlen(serial) > 20))
			goto bad;
		snprintf(rcfg.paths[i], PATH_MAX, "%s", path);
		rcfg.disks[i] = (struct vm_disk){
			.path = rcfg.paths[i],
			.readonly = json_is_true(json_object_get(d, "is_read_only")),
			.direct = json_is_true(json_object_get(d, "direct")),
			.discard = json_is_true(json_object_get(d, "discard"))};
		if (serial) {
			snprintf(rcfg.serials[i], sizeof(rcfg.serials[i]), "%s", serial);
			rcfg.disks[i].serial = rcfg.serials[i];
		}
	}
	for (size_t i = 0; i < json_array_size(nets); i++) {
		const char *s = json_string_value(json_array_get(nets, i));

		if (!s || strlen(s) >= sizeof(rcfg.nets[i]))
			goto bad;
		snprintf(rcfg.nets[i], sizeof(rcfg.nets[i]), "%s", s);
		rcfg.net_ptrs[i] = rcfg.nets[i];
	}
	cfg->disks = rcfg.disks;
	cfg->ndisks = (unsigned)json_array_size(drives);
	cfg->nets = rcfg.net_ptrs;
	cfg->nnets = (unsigned)json_array_size(nets);
	cfg->rng = json_is_true(json_object_get(c, "rng"));
	cfg->virtio_console = json_is_true(json_object_get(c, "virtio_console"));
	/* The device set must match the snapshot's: older snapshots have no agent channel. */
	cfg->agent = json_is_true(json_object_get(c, "agent")) ? VM_AGENT_ON : VM_AGENT_OFF;
	return 0;
bad:
	err_set("%s/manifest.json is corrupted: bad drives or nets", dir);
	return -EINVAL;
}

int snapshot_read_config(const char *dir, struct vm_config *cfg)
{
	char *accel = rcfg.accel, *bios = rcfg.bios;
	json_t *m = read_manifest(dir), *c, *v;
	uint64_t mem = 0;
	json_int_t n;

	if (!m)
		return -EINVAL;
	c = json_object_get(m, "config");
	v = json_object_get(c, "vcpu_count");
	n = json_is_integer(v) ? json_integer_value(v) : 0;
	if (n < 1 || n > VM_MAX_CPUS || !unhex(json_object_get(c, "mem_bytes"), &mem) ||
	    mem < VM_MIN_MEM || mem > VM_MAX_MEM || mem % SNAP_PAGE ||
	    !json_is_array(json_object_get(m, "harts")) ||
	    json_array_size(json_object_get(m, "harts")) != (size_t)n) {
		err_set("%s/manifest.json is corrupted: bad vcpu_count, mem_bytes or harts", dir);
		json_decref(m);
		return -EINVAL;
	}
	*cfg = (struct vm_config){.mem = mem, .ncpus = (unsigned)n, .restoring = true};
	if (read_devices(dir, c, cfg)) {
		json_decref(m);
		return -EINVAL;
	}
	v = json_object_get(c, "accel");
	snprintf(accel, sizeof(rcfg.accel), "%s", json_is_string(v) ? json_string_value(v) : "rv64");
	cfg->accel = accel;
	v = json_object_get(c, "firmware_path");
	if (json_is_string(v)) {
		snprintf(bios, sizeof(rcfg.bios), "%s", json_string_value(v));
		cfg->bios = bios; /* not loaded: it only selects M-mode firmware instead of SBI in the VMM */
	}
	/* Older snapshots have no huge_pages: "none", the default. */
	v = json_object_get(c, "huge_pages");
	if (v && (!json_is_string(v) || (strcmp(json_string_value(v), "none") &&
					  strcmp(json_string_value(v), "thp")))) {
		err_set("%s/manifest.json is corrupted: huge_pages is not none or thp", dir);
		json_decref(m);
		return -EINVAL;
	}
	cfg->huge_pages = v && !strcmp(json_string_value(v), "thp") ? VM_HUGE_PAGES_THP
								  : VM_HUGE_PAGES_NONE;
	json_decref(m);
	return 0;
}

static void *read_small_file(const char *dir, const char *name, size_t max, size_t *len)
{
	char *p = path_in(dir, name);
	uint8_t *buf = NULL;
	struct stat st;
	int fd = p ? open(p, O_RDONLY | O_CLOEXEC) : -1;

	if (fd < 0 || fstat(fd, &st) || (uint64_t)st.st_size > max) {
		err_set("%s/%s is missing or too large", dir, name);
		goto out;
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf || read(fd, buf, (size_t)st.st_size) != st.st_size) {
		err_set("cannot read %s/%s", dir, name);
		free(buf);
		buf = NULL;
		goto out;
	}
	*len = (size_t)st.st_size;
out:
	if (fd >= 0)
		close(fd);
	free(p);
	return buf;
}

/* Hashes the non-zero pages of the memory file, reading only its data extents. */
static int verify_memory(int fd, uint64_t size, uint64_t want)
{
	uint64_t h = FNV_OFFSET;
	size_t chunk = 8u << 20;
	uint8_t *buf = malloc(chunk);
	off_t data = 0;
	int ret = 0;

	if (!buf)
		return -ENOMEM;
	for (;;) {
		off_t hole;

		data = lseek(fd, data, SEEK_DATA);
		if (data < 0 || (uint64_t)data >= size)
			break; /* ENXIO: no more data */
		data = ALIGN_DOWN(data, (off_t)SNAP_PAGE);
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0 || (uint64_t)hole > size)
			hole = (off_t)size;
		hole = ALIGN_UP(hole, (off_t)SNAP_PAGE);
		while (data < hole) {
			size_t want_n = (size_t)(hole - data) < chunk ? (size_t)(hole - data) : chunk;
			ssize_t got = pread(fd, buf, want_n, data);

			if (got <= 0 || (size_t)got % SNAP_PAGE) {
				ret = -EIO;
				goto out;
			}
			for (size_t o = 0; o < (size_t)got; o += SNAP_PAGE)
				if (!page_is_zero(buf + o))
					h = hash_page(h, (uint64_t)data + o, buf + o);
			data += got;
		}
	}
	if (h != want)
		ret = -EBADMSG;
out:
	free(buf);
	return ret;
}

static int restore_hart(struct vm *vm, unsigned i, json_t *hj)
{
	const struct accel_ops *ops = vm_accel_ops(vm);
	struct accel_vcpu *av = vm_accel_vcpu(vm, i);
	json_t *x = json_object_get(hj, "x"), *f = json_object_get(hj, "f"),
	       *csr = json_object_get(hj, "csr"), *v;
	uint64_t val, keep;
	char name[8];
	int ret = 0;

	if (json_array_size(x) != 32 || json_array_size(f) != 32 || !json_is_object(csr))
		return -EINVAL;
	for (unsigned k = 0; k < ARRAY_SIZE(snap_csrs) && !ret; k++) {
		snprintf(name, sizeof(name), "0x%03x", snap_csrs[k]);
		v = json_object_get(csr, name);
		if (v && (!unhex(v, &val) || ops->set_reg(av, ACCEL_REG_CSR(snap_csrs[k]), val)))
			ret = -EINVAL;
	}
	/*
	 * After menvcfg (whether STIP is writable). Snapshots written before "mip_soft" existed
	 * kept the mip CSR as read, in which SEIP was the PLIC's line: the restored PLIC drives
	 * that line again, and keeping it as the software bit would hold SEIP at 1 for good.
	 */
	v = json_object_get(hj, "mip_soft");
	keep = ~0ULL;
	if (!v) {
		v = json_object_get(csr, "0x344");
		keep = ~(1ULL << ACCEL_IRQ_SEI);
	}
	if (v && !ret && (!unhex(v, &val) || ops->set_reg(av, ACCEL_REG_MIP_SOFT, val & keep)))
		ret = -EINVAL;
	for (unsigned k = 0; k < 64 && !ret; k++) {
		snprintf(name, sizeof(name), "0x%03x", SNAP_PMPADDR0 + k);
		v = json_object_get(csr, name);
		if (v && (!unhex(v, &val) || ops->set_reg(av, ACCEL_REG_CSR(SNAP_PMPADDR0 + k), val)))
			ret = -EINVAL;
	}
	for (unsigned k = 0; k < 16 && !ret; k += 2) {
		snprintf(name, sizeof(name), "0x%03x", SNAP_PMPCFG0 + k);
		v = json_object_get(csr, name);
		if (v && (!unhex(v, &val) || ops->set_reg(av, ACCEL_REG_CSR(SNAP_PMPCFG0 + k), val)))
			ret = -EINVAL;
	}
	for (unsigned r = 1; r < 32 && !ret; r++)
		if (!unhex(json_array_get(x, r), &val) || ops->set_reg(av, ACCEL_REG_X(r), val))
			ret = -EINVAL;
	for (unsigned r = 0; r < 32 && !ret; r++)
		if (!unhex(json_array_get(f, r), &val) || ops->set_reg(av, ACCEL_REG_F(r), val))
			ret = -EINVAL;
	v = json_object_get(hj, "priv");
	if (!ret && (!json_is_integer(v) ||
		     ops->set_reg(av, ACCEL_REG_PRIV, (uint64_t)json_integer_value(v))))
		ret = -EINVAL;
	if (!ret && (!unhex(json_object_get(hj, "pc"), &val) || ops->set_reg(av, ACCEL_REG_PC, val)))
		ret = -EINVAL;
	v = json_object_get(hj, "hsm");
	if (!ret && (!json_is_integer(v) || vm_set_hsm_state(vm, i, (int)json_integer_value(v))))
		ret = -EINVAL;
	return ret;
}

static int read_at(int fd, uint8_t *buf, uint64_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pread(fd, buf, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		buf += n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

/*
 * Decompresses memory.zst into guest RAM: every chunk (full snapshot; RAM is still the zeroed
 * anonymous mapping) or the dirty pages marked in `dirty` (diff: the frame holds the chunk's
 * dirty pages over zeros; a dirty page that became all zero is cleared), and checks the
 * checksum of what it produced. Not lazy: every non-zero chunk is read now.
 */
static int restore_memory_zstd(const char *dir, json_t *mem, uint8_t *ram, uint64_t size,
			       uint64_t want, const uint64_t *dirty)
{
	size_t n = (size_t)((size + SNAP_CHUNK - 1) / SNAP_CHUNK), got = 0;
	struct snap_zidx *idx = read_small_file(dir, "memory.idx", n * sizeof(*idx), &got);
	uint64_t h = FNV_OFFSET, idx_want = 0;
	json_t *ij = json_object_get(mem, "index");
	char *p = path_in(dir, "memory.zst");
	uint8_t *zbuf = NULL, *part = NULL;
	struct stat st;
	int fd = -1, ret = -EINVAL;

	if (!idx || got != n * sizeof(*idx) || !unhex(json_object_get(ij, "checksum"), &idx_want) ||
	    snapshot_hash(FNV_OFFSET, idx, got) != idx_want ||
	    json_integer_value(json_object_get(ij, "chunk_bytes")) != SNAP_CHUNK) {
		err_set("%s/memory.idx is missing, truncated or corrupted", dir);
		goto out;
	}
	fd = p ? open(p, O_RDONLY | O_CLOEXEC) : -1;
	if (fd < 0 || fstat(fd, &st)) {
		err_set("%s/memory.zst is missing", dir);
		goto out;
	}
	zbuf = malloc(ZSTD_compressBound(SNAP_CHUNK));
	part = dirty ? malloc(SNAP_CHUNK) : NULL;
	if (!zbuf || (dirty && !part)) {
		ret = -ENOMEM;
		goto out;
	}
	for (size_t c = 0; c < n; c++) {
		uint64_t off = (uint64_t)c * SNAP_CHUNK;
		uint64_t len = size - off < SNAP_CHUNK ? size - off : SNAP_CHUNK;
		uint8_t *dst = dirty ? part : ram + off;
		size_t z;

		if (!idx[c].len) {
			for (uint64_t o = 0; dirty && o < len; o += SNAP_PAGE)
				if (page_dirty(dirty, off + o)) /* a dirty page that became all zero */
					memset(ram + off + o, 0, SNAP_PAGE);
			continue;
		}
		if (idx[c].len > ZSTD_compressBound(SNAP_CHUNK) ||
		    idx[c].off + idx[c].len > (uint64_t)st.st_size ||
		    read_at(fd, zbuf, idx[c].len, idx[c].off)) {
			err_set("%s/memory.zst is truncated", dir);
			goto out;
		}
		z = ZSTD_decompress(dst, len, zbuf, idx[c].len);
		if (ZSTD_isError(z) || z != len) {
			err_set("%s/memory.zst is corrupted (chunk %zu does not decompress)", dir, c);
			goto out;
		}
		for (uint64_t o = 0; o < len; o += SNAP_PAGE) {
			if (dirty && page_dirty(dirty, off + o))
				memcpy(ram + off + o, dst + o, SNAP_PAGE);
			if (!page_is_zero(dst + o))
				h = hash_page(h, off + o, dst + o);
		}
	}
	if (h != want) {
		err_set("%s/memory.zst is corrupted (checksum mismatch)", dir);
		goto out;
	}
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	free(part);
	free(zbuf);
	free(p);
	free(idx);
	return ret;
}

static int restore_memory(struct vm *vm, const char *dir, unsigned depth);

/*
 * Diff snapshot: reads and checks dirty.bin (*dirty, one bit per page, caller frees), then
 * restores the parent.
 */
static int restore_parent(struct vm *vm, const char *dir, const char *parent, unsigned depth,
			  uint64_t want, uint64_t **dirty)
{
	uint64_t ram_size;
	size_t n, got = 0;
	int ret;

	vm_ram(vm, &ram_size);
	n = dirty_words(ram_size) * sizeof(**dirty);
	*dirty = read_small_file(dir, "dirty.bin", n, &got);
	if (!*dirty || got != n || snapshot_hash(FNV_OFFSET, *dirty, n) != want) {
		if (*dirty)
			err_set("%s/dirty.bin is truncated or corrupted (size or checksum mismatch)", dir);
		return -EINVAL;
	}
	ret = restore_memory(vm, parent, depth + 1);
	if (ret) {
		char why[512];

		snprintf(why, sizeof(why), "%s", err_get());
		err_set("parent of %s: %s", dir, why);
	}
	return ret;
}

/*
 * Puts snapshot dir's memory into guest RAM: a full snapshot's memory.bin is mapped lazily
 * (MAP_PRIVATE over the RAM mapping; the accelerator keeps its pointer); a diff snapshot
 * first restores its parent (recursively), then reads its dirty pages over it (a dirty page
 * that became all zero is a hole in memory.bin and reads as zeros).
 */
static int restore_memory(struct vm *vm, const char *dir, unsigned depth)
{
	json_t *m, *mem, *dj;
	uint64_t ram_size, size = 0, hash = 0, want = 0, *dirty = NULL;
	uint8_t *ram = vm_ram(vm, &ram_size);
	size_t nbytes = dirty_words(ram_size) * sizeof(uint64_t);
	const char *parent;
	char *mp = NULL;
	struct stat st;
	int fd = -1, ret = -EINVAL;

	if (depth > SNAP_CHAIN_MAX) {
		err_set("%s: the chain of diff snapshots is longer than %d", dir, SNAP_CHAIN_MAX);
		return -EINVAL;
	}
	m = read_manifest(dir);
	if (!m)
		return -EINVAL;
	mem = json_object_get(m, "memory");
	parent = json_string_value(json_object_get(mem, "parent"));
	dj = json_object_get(mem, "dirty");
	if (!unhex(json_object_get(mem, "size"), &size) || size != ram_size ||
	    !unhex(json_object_get(mem, "checksum"), &hash) ||
	    (parent && (json_integer_value(json_object_get(dj, "page_bytes")) != SNAP_PAGE ||
			json_integer_value(json_object_get(dj, "size")) != (json_int_t)nbytes ||
			!unhex(json_object_get(dj, "checksum"), &want)))) {
		err_set("%s/manifest.json is corrupted: memory size or checksum (or not this VM's)", dir);
		goto out;
	}
	if (json_object_get(mem, "compression")) {
		const char *comp = json_string_value(json_object_get(mem, "compression"));

		if (!comp || strcmp(comp, "zstd")) {
			err_set("%s: unknown memory compression", dir);
			goto out;
		}
		ret = parent ? restore_parent(vm, dir, parent, depth, want, &dirty) : 0;
		if (!ret)
			ret = restore_memory_zstd(dir, mem, ram, size, hash, dirty);
		goto out;
	}
	mp = path_in(dir, "memory.bin");
	fd = mp ? open(mp, O_RDONLY | O_CLOEXEC) : -1;
	if (fd < 0 || fstat(fd, &st)) {
		err_set("%s/memory.bin is missing", dir);
		goto out;
	}
	if ((uint64_t)st.st_size != size) {
		err_set("%s/memory.bin is truncated: %lld bytes, the manifest says %" PRIu64, dir,
			(long long)st.st_size, size);
		goto out;
	}
	ret = verify_memory(fd, size, hash);
	if (ret) {
		err_set("%s/memory.bin is corrupted (checksum mismatch)", dir);
		ret = -EINVAL;
		goto out;
	}
	if (!parent) {
		if (mmap(ram, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE,
			 fd, 0) == MAP_FAILED) {
			ret = -errno;
			err_set("cannot map %s: %s", mp, strerror(errno));
		}
		goto out;
	}
	ret = restore_parent(vm, dir, parent, depth, want, &dirty);
	if (ret)
		goto out;
	/* Runs of dirty pages, one pread each. */
	for (uint64_t off = 0; off < size && !ret;) {
		uint64_t end;

		if (!page_dirty(dirty, off)) {
			off += SNAP_PAGE;
			continue;
		}
		for (end = off + SNAP_PAGE; end < size && page_dirty(dirty, end); end += SNAP_PAGE)
			;
		ret = read_at(fd, ram + off, end - off, off);
		off = end;
	}
	if (ret)
		err_set("cannot read %s: %s", mp, strerror(-ret));
out:
	if (fd >= 0)
		close(fd);
	free(dirty);
	free(mp);
	json_decref(m);
	return ret;
}

int snapshot_restore(struct vm *vm, const char *dir)
{
	json_t *m = read_manifest(dir), *mem, *dev, *harts;
	uint64_t ram_size, size = 0, hash = 0, ticks = 0, t0 = clock_ns();
	void *devs = NULL;
	size_t devs_len = 0;
	int ret = -EINVAL;

	vm_ram(vm, &ram_size);
	if (!m)
		return -EINVAL;
	mem = json_object_get(m, "memory");
	dev = json_object_get(m, "devices");
	harts = json_object_get(m, "harts");
	if (!unhex(json_object_get(mem, "size"), &size) || size != ram_size ||
	    !unhex(json_object_get(mem, "checksum"), &hash) ||
	    !unhex(json_object_get(m, "guest_ticks"), &ticks) ||
	    json_array_size(harts) != vm_ncpus(vm)) {
		err_set("%s/manifest.json is corrupted: memory size, checksum, clock or harts", dir);
		goto out;
	}
	/* Device state: its size and checksum. */
	devs = read_small_file(dir, "devices.bin", SNAP_DEVICES_MAX, &devs_len);
	if (!devs)
		goto out;
	{
		uint64_t want = 0;
		json_t *sz = json_object_get(dev, "size");

		if (!json_is_integer(sz) || (size_t)json_integer_value(sz) != devs_len ||
		    !unhex(json_object_get(dev, "checksum"), &want) ||
		    snapshot_hash(FNV_OFFSET, devs, devs_len) != want) {
			err_set("%s/devices.bin is truncated or corrupted (size or checksum mismatch)",
				dir);
			goto out;
		}
	}
	ret = restore_memory(vm, dir, 0);
	if (ret)
		goto out;
	ret = board_load(vm_board(vm), devs, devs_len);
	if (ret)
		goto out;
	vm_kick_virtio(vm);
	/* Guest time continues at the tick the snapshot was taken (the guest never saw later). */
	clock_guest_set_offset((int64_t)(ticks - (clock_guest_ticks() - clock_guest_get_offset())));
	for (unsigned i = 0; i < vm_ncpus(vm); i++) {
		ret = restore_hart(vm, i, json_array_get(harts, i));
		if (ret) {
			err_set("%s/manifest.json: hart %u's registers are invalid", dir, i);
			goto out;
		}
	}
	log_info("restored %s in %.1f ms", dir, (clock_ns() - t0) / 1e6);
	/* A diff snapshot of the restored VM is relative to this one. */
	if (track_start(vm, dir))
		log_warn("diff snapshots are unavailable: %s", err_get());
out:
	free(devs);
	json_decref(m);
	return ret;
}
