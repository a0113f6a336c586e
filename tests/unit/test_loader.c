/* test_loader.c - kernel/firmware/initrd loading: formats, placement and clean refusals. */
#include <elf.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kumo/base.h"
#include "kumo/loader.h"
#include "kumo/memmap.h"

#define RAM_BASE 0x80000000ULL
#define RAM_SIZE (8ULL << 20)

static struct memmap *mm;
static uint8_t *ram;
static char path[64];

static int setup(void **state)
{
	ram = calloc(1, RAM_SIZE);
	mm = memmap_new();
	assert_int_equal(memmap_add_ram(mm, RAM_BASE, RAM_SIZE, ram), 0);
	snprintf(path, sizeof(path), "/tmp/kumo-loader-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	err_clear();
	return 0;
}

static int teardown(void **state)
{
	unlink(path);
	memmap_free(mm);
	free(ram);
	return 0;
}

static void write_file(const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	fclose(f);
}

/* A RISC-V Image header (boot-image-header.rst) with an optional PE section table. */
static size_t make_image(uint8_t *buf, size_t len, uint64_t text_offset, uint64_t image_size,
			 uint32_t pe_data_end)
{
	memset(buf, 0, len);
	for (size_t i = 64; i < len; i++)
		buf[i] = (uint8_t)(i * 7);
	memcpy(buf + 8, &text_offset, 8);
	memcpy(buf + 16, &image_size, 8);
	memcpy(buf + 48, "RISCV\0\0\0", 8);
	memcpy(buf + 56, "RSC\x05", 4);
	if (pe_data_end) {
		uint32_t pe = 0x40, raw_size = pe_data_end - 0x200, raw_ptr = 0x200;
		uint16_t nsec = 1, opt = 0;

		memcpy(buf + 60, &pe, 4);
		memcpy(buf + pe, "PE\0\0", 4);
		memcpy(buf + pe + 6, &nsec, 2);
		memcpy(buf + pe + 20, &opt, 2);
		memcpy(buf + pe + 24 + 16, &raw_size, 4);
		memcpy(buf + pe + 24 + 20, &raw_ptr, 4);
	}
	return len;
}

static void test_image_loads_at_text_offset(void **state)
{
	static uint8_t img[8192];
	struct loaded_image li;

	make_image(img, sizeof(img), 0x200000, 0x300000, sizeof(img));
	write_file(img, sizeof(img));
	assert_int_equal(loader_load_kernel(mm, path, false, 0, &li), 0);
	assert_int_equal(li.entry, RAM_BASE + 0x200000);
	assert_int_equal(li.end, RAM_BASE + 0x200000 + 0x300000);
	assert_string_equal(li.kind, "Image");
	assert_memory_equal(ram + 0x200000, img, sizeof(img));
}

static void test_truncated_image_refused(void **state)
{
	static uint8_t img[8192];
	struct loaded_image li;

	make_image(img, sizeof(img), 0x200000, 0x300000, 64 * 1024); /* PE says 64 KiB */
	write_file(img, sizeof(img));
	assert_int_equal(loader_load_kernel(mm, path, false, 0, &li), -EINVAL);
	assert_non_null(strstr(err_get(), "truncated"));
	assert_int_equal(loader_probe(img, sizeof(img)), -EINVAL);
}

static void test_image_too_big_for_ram(void **state)
{
	static uint8_t img[4096];
	struct loaded_image li;

	make_image(img, sizeof(img), 0x200000, 64ULL << 20, 0);
	write_file(img, sizeof(img));
	assert_int_equal(loader_load_kernel(mm, path, false, 0, &li), -ENOSPC);
	assert_non_null(strstr(err_get(), "raise --mem"));
}

static void test_not_a_kernel(void **state)
{
	struct loaded_image li;

	write_file("#!/bin/sh\necho hi\n", 18);
	assert_int_equal(loader_load_kernel(mm, path, false, 0, &li), -EINVAL);
	assert_non_null(strstr(err_get(), "not a RISC-V Linux kernel"));
	/* ...but a raw next stage is fine behind firmware. */
	assert_int_equal(loader_load_kernel(mm, path, true, RAM_BASE + 0x200000, &li), 0);
	assert_string_equal(li.kind, "raw");
	assert_memory_equal(ram + 0x200000, "#!/bin/sh", 9);
}

static void test_elf_segments(void **state)
{
	static uint8_t buf[4096];
	Elf64_Ehdr *eh = (void *)buf;
	Elf64_Phdr *ph = (void *)(buf + sizeof(*eh));

	memset(buf, 0, sizeof(buf));
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_machine = EM_RISCV;
	eh->e_entry = RAM_BASE + 0x1000;
	eh->e_phoff = sizeof(*eh);
	eh->e_phentsize = sizeof(*ph);
	eh->e_phnum = 1;
	ph->p_type = PT_LOAD;
	ph->p_offset = 0x800;
	ph->p_paddr = RAM_BASE + 0x1000;
	ph->p_filesz = 16;
	ph->p_memsz = 64; /* bss is zeroed */
	memcpy(buf + 0x800, "0123456789abcdef", 16);
	memset(ram + 0x1000, 0xee, 64);
	write_file(buf, sizeof(buf));

	struct loaded_image li;
	assert_int_equal(loader_load_kernel(mm, path, false, 0, &li), 0);
	assert_string_equal(li.kind, "ELF");
	assert_int_equal(li.entry, RAM_BASE + 0x1000);
	assert_memory_equal(ram + 0x1000, "0123456789abcdef", 16);
	assert_int_equal(ram + 0x1000 + 16 == memchr(ram + 0x1000, 0, 64), 1);
	assert_int_equal(ram[0x1000 + 63], 0);

	/* A segment outside RAM is refused, not written anywhere. */
	ph->p_paddr = 0x1000;
	write_file(buf, sizeof(buf));
	assert_int_equal(loader_load_kernel(mm, path, false, 0, &li), -ENOSPC);
	/* A segment whose data lies past the end of the file is refused. */
	ph->p_paddr = RAM_BASE;
	ph->p_filesz = ph->p_memsz = 1 << 20;
	write_file(buf, sizeof(buf));
	assert_int_equal(loader_load_kernel(mm, path, false, 0, &li), -EINVAL);
	assert_non_null(strstr(err_get(), "truncated"));
	/* Wrong machine. */
	eh->e_machine = EM_X86_64;
	write_file(buf, sizeof(buf));
	assert_int_equal(loader_load_kernel(mm, path, false, 0, &li), -EINVAL);
	assert_non_null(strstr(err_get(), "not for RISC-V"));
}

static void test_blob_limits(void **state)
{
	uint64_t size = 0;

	write_file("initrd-bytes", 12);
	assert_int_equal(loader_load_blob(mm, path, RAM_BASE + 0x100, RAM_BASE + RAM_SIZE, &size), 0);
	assert_int_equal(size, 12);
	assert_memory_equal(ram + 0x100, "initrd-bytes", 12);
	assert_int_equal(loader_load_blob(mm, path, RAM_BASE + 0x100, RAM_BASE + 0x104, &size),
			 -ENOSPC);
	assert_int_equal(loader_load_blob(mm, "/nonexistent/kumo", RAM_BASE, RAM_BASE + RAM_SIZE,
					  &size),
			 -ENOENT);
	assert_non_null(strstr(err_get(), "No such file"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_image_loads_at_text_offset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncated_image_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_image_too_big_for_ram, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_a_kernel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_elf_segments, setup, teardown),
		cmocka_unit_test_setup_teardown(test_blob_limits, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
