/*
 * loader.c - kernel, firmware and initrd loading.
 *
 * Formats: the RISC-V Linux Image header (Documentation/arch/riscv/boot-image-header.rst: code0,
 * code1, text_offset @8, image_size @16, flags @24, version @32, magic "RISCV\0\0\0" @48, magic2
 * "RSC\x05" @56, PE offset @60), optionally wrapped in an EFI/PE stub whose section table tells
 * how many bytes the file must have; and ELF64 for RISC-V (e_machine 243), loaded by PT_LOAD
 * physical address.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kumo/base.h"
#include "kumo/loader.h"
#include "kumo/memmap.h"

#define IMAGE_HDR_SIZE 64
#define MAX_FILE_SIZE (1ULL << 32)

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v; /* the host is little-endian like RISC-V (checked at build time below) */
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "kumo assumes a little-endian host");

/* Opens a regular file of at most 4 GiB for reading: its fd (>= 0) and size, or -errno. */
static int open_file(const char *path, size_t *size)
{
	struct stat st;
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		err_set("%s: %s", path, strerror(errno));
		return ret;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		err_set("%s: not a regular file", path);
		close(fd);
		return -EINVAL;
	}
	if ((uint64_t)st.st_size > MAX_FILE_SIZE) {
		err_set("%s: file is larger than 4 GiB", path);
		close(fd);
		return -EFBIG;
	}
	*size = (size_t)st.st_size;
	return fd;
}

/* Reads exactly len bytes at file offset off into dst; -EIO (message set) when it cannot. */
static int read_at(int fd, const char *path, uint8_t *dst, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, dst + done, len - done, off + (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err_set("%s: read failed: %s", path, n < 0 ? strerror(errno) : "file shrank");
			return -EIO;
		}
		done += (size_t)n;
	}
	return 0;
}

int loader_read_file(const char *path, uint8_t **data, size_t *len)
{
	size_t size;
	uint8_t *buf;
	int fd = open_file(path, &size), ret;

	if (fd < 0)
		return fd;
	buf = malloc(size ? size : 1);
	if (!buf) {
		err_set("%s: out of memory reading it", path);
		close(fd);
		return -ENOMEM;
	}
	ret = read_at(fd, path, buf, size, 0);
	close(fd);
	if (ret) {
		free(buf);
		return ret;
	}
	*data = buf;
	*len = size;
	return 0;
}

static bool is_image(const uint8_t *d, size_t len)
{
	return len >= IMAGE_HDR_SIZE && !memcmp(d + 48, "RISCV\0\0\0", 8);
}

static bool is_elf(const uint8_t *d, size_t len)
{
	return len >= 4 && !memcmp(d, ELFMAG, SELFMAG);
}

/*
 * An Image with an EFI stub carries a PE header (offset at 0x3c, "PE\0\0"); its section table
 * says where the file's data ends, which catches truncated kernels. Returns the required file
 * size, or 0 when there is no PE header to tell.
 */
static uint64_t pe_required_size(const uint8_t *d, size_t len)
{
	uint32_t pe = rd32(d + 60), opt_size, nsec;
	uint64_t need = 0;

	if (pe == 0 || pe > len || len - pe < 24 || memcmp(d + pe, "PE\0\0", 4))
		return 0;
	nsec = d[pe + 6] | d[pe + 7] << 8;
	opt_size = d[pe + 20] | d[pe + 21] << 8;
	for (uint32_t i = 0; i < nsec; i++) {
		uint64_t off = (uint64_t)pe + 24 + opt_size + 40ULL * i;

		if (off + 40 > len)
			return off + 40;
		uint64_t end = (uint64_t)rd32(d + off + 20) + rd32(d + off + 16);
		if (end > need)
			need = end;
	}
	return need;
}

int loader_probe(const uint8_t *d, size_t len)
{
	if (is_image(d, len)) {
		uint64_t need = pe_required_size(d, len);

		if (need > len)
			return -EINVAL;
		return 1;
	}
	if (is_elf(d, len))
		return 2;
	return 0;
}

/* Guest RAM for [addr, addr + memsz), or NULL with the "raise --mem" message set. */
static uint8_t *ram_dst(struct memmap *mm, const char *path, uint64_t addr, uint64_t memsz)
{
	uint8_t *dst = memmap_ram_ptr(mm, addr, memsz);

	if (!dst)
		err_set("%s: does not fit in guest RAM at 0x%llx (needs %llu bytes; RAM is 0x%llx..0x%llx): raise --mem",
			path, (unsigned long long)addr, (unsigned long long)memsz,
			(unsigned long long)memmap_ram_base(mm),
			(unsigned long long)(memmap_ram_base(mm) + memmap_ram_size(mm)));
	return dst;
}

static int copy_in(struct memmap *mm, const char *path, uint64_t addr, const void *src,
		   uint64_t size, uint64_t memsz)
{
	uint8_t *dst = ram_dst(mm, path, addr, memsz);

	if (!dst)
		return -ENOSPC;
	memcpy(dst, src, size);
	memset(dst + size, 0, memsz - size);
	return 0;
}

/*
 * An Image (header in hdr, the file's first bytes) of len bytes, read from fd straight to its
 * place in guest RAM: no copy of tens of MiB through a buffer of its own. The checks that need
 * the whole file (the PE section table) run on it there; on an error the RAM holds garbage,
 * which nothing runs (the VM is not created).
 */
static int load_image(struct memmap *mm, const char *path, int fd, const uint8_t *hdr,
		      size_t len, struct loaded_image *out)
{
	uint64_t text_offset = rd64(hdr + 8), image_size = rd64(hdr + 16);
	uint64_t addr = memmap_ram_base(mm) + text_offset, need;
	uint8_t *dst;
	int ret;

	if (image_size < len)
		image_size = len; /* old headers may leave image_size 0 */
	if (text_offset & 0xfff || text_offset >= memmap_ram_size(mm)) {
		err_set("%s: bad text_offset 0x%llx in the Image header", path,
			(unsigned long long)text_offset);
		return -EINVAL;
	}
	dst = ram_dst(mm, path, addr, image_size);
	if (!dst)
		return -ENOSPC;
	ret = read_at(fd, path, dst, len, 0);
	if (ret)
		return ret;
	need = pe_required_size(dst, len);
	if (need > len) {
		err_set("%s: truncated kernel image (%zu bytes, its header needs %llu)", path, len,
			(unsigned long long)need);
		return -EINVAL;
	}
	memset(dst + len, 0, image_size - len);
	*out = (struct loaded_image){.entry = addr, .start = addr, .end = addr + image_size,
				     .kind = "Image"};
	return 0;
}

static int load_elf(struct memmap *mm, const char *path, const uint8_t *d, size_t len,
		    struct loaded_image *out)
{
	const Elf64_Ehdr *eh = (const void *)d;
	uint64_t lo = UINT64_MAX, hi = 0;
	int loaded = 0;

	if (len < sizeof(*eh) || d[EI_CLASS] != ELFCLASS64 || d[EI_DATA] != ELFDATA2LSB) {
		err_set("%s: not a 64-bit little-endian ELF file", path);
		return -EINVAL;
	}
	if (eh->e_machine != EM_RISCV) {
		err_set("%s: ELF file is not for RISC-V (e_machine %u)", path, eh->e_machine);
		return -EINVAL;
	}
	if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phoff > len ||
	    (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > len - eh->e_phoff) {
		err_set("%s: truncated or corrupt ELF program headers", path);
		return -EINVAL;
	}
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		Elf64_Phdr ph;

		memcpy(&ph, d + eh->e_phoff + i * sizeof(ph), sizeof(ph));
		if (ph.p_type != PT_LOAD || !ph.p_memsz)
			continue;
		if (ph.p_filesz > ph.p_memsz || ph.p_offset > len || ph.p_filesz > len - ph.p_offset) {
			err_set("%s: truncated ELF file (segment %u lies past its end)", path, i);
			return -EINVAL;
		}
		int ret = copy_in(mm, path, ph.p_paddr, d + ph.p_offset, ph.p_filesz, ph.p_memsz);
		if (ret)
			return ret;
		lo = ph.p_paddr < lo ? ph.p_paddr : lo;
		hi = ph.p_paddr + ph.p_memsz > hi ? ph.p_paddr + ph.p_memsz : hi;
		loaded++;
	}
	if (!loaded) {
		err_set("%s: ELF file has no loadable segments", path);
		return -EINVAL;
	}
	*out = (struct loaded_image){.entry = eh->e_entry, .start = lo, .end = hi, .kind = "ELF"};
	return 0;
}

/* A raw binary: copied as is to addr, entered at its first byte. */
static int load_raw(struct memmap *mm, const char *path, uint64_t addr, const uint8_t *d,
		    size_t len, struct loaded_image *out)
{
	int ret = copy_in(mm, path, addr, d, len, len);

	if (!ret)
		*out = (struct loaded_image){.entry = addr, .start = addr, .end = addr + len,
					     .kind = "raw"};
	return ret;
}

int loader_load_kernel(struct memmap *mm, const char *path, bool allow_raw, uint64_t raw_addr,
		       struct loaded_image *out)
{
	uint8_t hdr[IMAGE_HDR_SIZE], *d;
	size_t len;
	int fd = open_file(path, &len), ret;

	if (fd < 0)
		return fd;
	/* An Image goes straight to guest RAM; the other formats are read whole first. */
	ret = len >= IMAGE_HDR_SIZE ? read_at(fd, path, hdr, IMAGE_HDR_SIZE, 0) : 0;
	if (!ret && len >= IMAGE_HDR_SIZE && is_image(hdr, IMAGE_HDR_SIZE))
		ret = load_image(mm, path, fd, hdr, len, out);
	else if (!ret)
		ret = 1;
	close(fd);
	if (ret <= 0)
		return ret;
	ret = loader_read_file(path, &d, &len);
	if (ret)
		return ret;
	if (is_image(d, len)) { /* it became one since: the file changed under us */
		err_set("%s: changed while it was being read", path);
		ret = -EIO;
	} else if (is_elf(d, len)) {
		ret = load_elf(mm, path, d, len, out);
	} else if (allow_raw && len > 0) {
		ret = load_raw(mm, path, raw_addr, d, len, out);
	} else {
		err_set("%s: not a RISC-V Linux kernel (no Image header, not an ELF file)", path);
		ret = -EINVAL;
	}
	free(d);
	return ret;
}

int loader_load_firmware(struct memmap *mm, const char *path, uint64_t addr,
			 struct loaded_image *out)
{
	uint8_t *d;
	size_t len;
	int ret = loader_read_file(path, &d, &len);

	if (ret)
		return ret;
	if (len == 0) {
		err_set("%s: firmware file is empty", path);
		ret = -EINVAL;
	} else if (is_elf(d, len)) {
		ret = load_elf(mm, path, d, len, out);
	} else {
		ret = load_raw(mm, path, addr, d, len, out);
	}
	free(d);
	return ret;
}

int loader_load_blob(struct memmap *mm, const char *path, uint64_t addr, uint64_t limit,
		     uint64_t *size)
{
	size_t len;
	uint8_t *dst;
	int fd = open_file(path, &len), ret;

	if (fd < 0)
		return fd;
	if (addr + len > limit) {
		err_set("%s: %zu bytes do not fit in guest RAM (raise --mem)", path, len);
		close(fd);
		return -ENOSPC;
	}
	dst = ram_dst(mm, path, addr, len);
	ret = dst ? read_at(fd, path, dst, len, 0) : -ENOSPC;
	close(fd);
	if (!ret)
		*size = len;
	return ret;
}
