/*
 * loader.h - loading kernels, firmware and initrds into guest RAM.
 *
 * Usage: loader_read_file() slurps a host file; loader_load_kernel() recognises a RISC-V Linux
 * Image (with or without the EFI stub header), a 64-bit RISC-V ELF, or (only when `allow_raw`)
 * a raw binary, and copies it into guest RAM through the memmap. Every failure returns -errno
 * with err_set() naming the file and what is wrong with it. Single-threaded (VM set-up).
 */
#ifndef KUMO_LOADER_H
#define KUMO_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct memmap;

struct loaded_image {
	uint64_t entry; /* guest-physical entry point */
	uint64_t start; /* lowest guest-physical address written */
	uint64_t end;   /* end of the image in RAM, including bss (Image: image_size) */
	const char *kind; /* "Image", "ELF" or "raw" */
};

/* Reads a whole file into a malloc'ed buffer (caller frees). */
int loader_read_file(const char *path, uint8_t **data, size_t *len);

/*
 * Loads a kernel or a next-stage payload. An Image goes to ram_base + its text_offset; an ELF to
 * its physical addresses; a raw binary (allow_raw) to `raw_addr`.
 */
int loader_load_kernel(struct memmap *mm, const char *path, bool allow_raw, uint64_t raw_addr,
		       struct loaded_image *out);

/* Loads firmware (raw binary or ELF) at `addr` (ELF: its own addresses). */
int loader_load_firmware(struct memmap *mm, const char *path, uint64_t addr,
			 struct loaded_image *out);

/* Loads a file verbatim at `addr`; fails cleanly when it would not fit below `limit`. */
int loader_load_blob(struct memmap *mm, const char *path, uint64_t addr, uint64_t limit,
		     uint64_t *size);

/* Checks a buffer (exposed for tests): 1 Image, 2 ELF, 0 neither; -EINVAL if malformed. */
int loader_probe(const uint8_t *data, size_t len);

#endif
