/*
 * test_dt.c - the virt board's device tree, re-parsed with libfdt: cpus and their ISA strings,
 * memory, chosen, phandles of interrupts-extended, PLIC ndev, every device's reg against the
 * address table; and bad board configurations refused with an err_get() sentence.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libfdt.h>

#include "kumo/base.h"
#include "kumo/board.h"

#define DT_BUF (1u << 20)
#define TEST_ISA "rv64imafdc_zicsr_zifencei_zicbom_sstc"

static struct board_config base_config(unsigned ncpus)
{
	return (struct board_config){
		.ncpus = ncpus,
		.ram_size = 256ULL << 20,
		.isa = TEST_ISA,
		.mmu_type = "riscv,sv48",
		.bootargs = "console=ttyS0 earlycon",
	};
}

static void *build(const struct board_config *cfg, int *size)
{
	struct board *b = NULL;
	void *buf = calloc(1, DT_BUF);

	assert_non_null(buf);
	assert_int_equal(board_new(cfg, &b), 0);
	*size = board_dt_build(b, buf, DT_BUF);
	board_free(b);
	assert_true(*size > 0);
	assert_int_equal(fdt_check_header(buf), 0);
	assert_int_equal((int)fdt_totalsize(buf), *size);
	return buf;
}

/* Properties are only 4-byte aligned in the blob. */
static uint64_t ld64(const void *p, unsigned i)
{
	fdt64_t v;

	memcpy(&v, (const char *)p + 8 * i, sizeof(v));
	return fdt64_to_cpu(v);
}

static int node(const void *fdt, const char *path)
{
	int off = fdt_path_offset(fdt, path);

	if (off < 0)
		fail_msg("node %s missing: %s", path, fdt_strerror(off));
	return off;
}

static const void *prop(const void *fdt, const char *path, const char *name, int *len)
{
	const void *p = fdt_getprop(fdt, node(fdt, path), name, len);

	if (!p)
		fail_msg("%s:%s missing", path, name);
	return p;
}

static uint32_t prop_u32(const void *fdt, const char *path, const char *name)
{
	int len;
	const fdt32_t *p = prop(fdt, path, name, &len);

	assert_int_equal(len, 4);
	return fdt32_to_cpu(*p);
}

static const char *prop_str(const void *fdt, const char *path, const char *name)
{
	int len;
	const char *p = prop(fdt, path, name, &len);

	assert_true(len > 0);
	assert_int_equal(p[len - 1], '\0');
	return p;
}

static void check_reg(const void *fdt, const char *path, uint64_t base, uint64_t size)
{
	int len;
	const void *reg = prop(fdt, path, "reg", &len);

	assert_int_equal(len, 16);
	assert_int_equal(ld64(reg, 0), base);
	assert_int_equal(ld64(reg, 1), size);
}

/* Checks the interrupts-extended of `path` is <intc(h) a intc(h) b> for every hart. */
static void check_per_hart(const void *fdt, const char *path, unsigned ncpus, uint32_t a,
			   uint32_t b)
{
	int len;
	const fdt32_t *c = prop(fdt, path, "interrupts-extended", &len);

	assert_int_equal(len, (int)(16 * ncpus));
	for (unsigned h = 0; h < ncpus; h++) {
		char intc[64];
		uint32_t ph;

		snprintf(intc, sizeof(intc), "/cpus/cpu@%u/interrupt-controller", h);
		ph = fdt_get_phandle(fdt, node(fdt, intc));
		assert_int_not_equal(ph, 0);
		assert_int_equal(fdt32_to_cpu(c[4 * h]), ph);
		assert_int_equal(fdt32_to_cpu(c[4 * h + 1]), a);
		assert_int_equal(fdt32_to_cpu(c[4 * h + 2]), ph);
		assert_int_equal(fdt32_to_cpu(c[4 * h + 3]), b);
		/* The phandle resolves back to that very node. */
		assert_int_equal(fdt_node_offset_by_phandle(fdt, ph), node(fdt, intc));
	}
}

static bool stringlist_has(const void *fdt, const char *path, const char *name, const char *s)
{
	return fdt_stringlist_search(fdt, node(fdt, path), name, s) >= 0;
}

static void check_tree(unsigned ncpus)
{
	struct board_config cfg = base_config(ncpus);
	int size, len;
	void *fdt;

	cfg.initrd_start = 0x88000000;
	cfg.initrd_end = 0x88123456;
	fdt = build(&cfg, &size);

	/* Root. */
	assert_int_equal(prop_u32(fdt, "/", "#address-cells"), 2);
	assert_int_equal(prop_u32(fdt, "/", "#size-cells"), 2);
	assert_string_equal(prop_str(fdt, "/", "compatible"), "riscv-virtio");

	/* CPUs. */
	assert_int_equal(prop_u32(fdt, "/cpus", "timebase-frequency"), KUMO_TIMEBASE_HZ);
	assert_int_equal(prop_u32(fdt, "/cpus", "#address-cells"), 1);
	assert_int_equal(prop_u32(fdt, "/cpus", "#size-cells"), 0);
	int count = 0, off;
	fdt_for_each_subnode(off, fdt, node(fdt, "/cpus"))
	{
		const char *name = fdt_get_name(fdt, off, NULL);

		if (!strncmp(name, "cpu@", 4))
			count++;
	}
	assert_int_equal(count, (int)ncpus);
	for (unsigned h = 0; h < ncpus; h++) {
		char path[64], core[64];
		static const char *const exts[] = {"i", "m", "a", "f", "d", "c",
						   "zicsr", "zifencei", "zicbom", "sstc"};

		snprintf(path, sizeof(path), "/cpus/cpu@%u", h);
		assert_int_equal(prop_u32(fdt, path, "reg"), h);
		assert_string_equal(prop_str(fdt, path, "device_type"), "cpu");
		assert_string_equal(prop_str(fdt, path, "status"), "okay");
		assert_string_equal(prop_str(fdt, path, "compatible"), "riscv");
		assert_string_equal(prop_str(fdt, path, "riscv,isa"), TEST_ISA);
		assert_string_equal(prop_str(fdt, path, "riscv,isa-base"), "rv64i");
		assert_string_equal(prop_str(fdt, path, "mmu-type"), "riscv,sv48");
		assert_int_equal(prop_u32(fdt, path, "riscv,cbom-block-size"), 64);
		assert_null(fdt_getprop(fdt, node(fdt, path), "riscv,cboz-block-size", NULL));
		assert_int_equal(fdt_stringlist_count(fdt, node(fdt, path), "riscv,isa-extensions"),
				 (int)ARRAY_SIZE(exts));
		for (unsigned i = 0; i < ARRAY_SIZE(exts); i++)
			assert_int_equal(fdt_stringlist_search(fdt, node(fdt, path),
							       "riscv,isa-extensions", exts[i]),
					 (int)i);
		snprintf(path, sizeof(path), "/cpus/cpu@%u/interrupt-controller", h);
		assert_string_equal(prop_str(fdt, path, "compatible"), "riscv,cpu-intc");
		assert_int_equal(prop_u32(fdt, path, "#interrupt-cells"), 1);
		assert_non_null(fdt_getprop(fdt, node(fdt, path), "interrupt-controller", &len));
		assert_int_equal(len, 0);
		snprintf(core, sizeof(core), "/cpus/cpu-map/cluster0/core%u", h);
		snprintf(path, sizeof(path), "/cpus/cpu@%u", h);
		assert_int_equal(prop_u32(fdt, core, "cpu"), fdt_get_phandle(fdt, node(fdt, path)));
	}
	/* cpu nodes appear in ascending order. */
	int prev = -1;
	for (unsigned h = 0; h < ncpus; h++) {
		char path[64];

		snprintf(path, sizeof(path), "/cpus/cpu@%u", h);
		assert_true(node(fdt, path) > prev);
		prev = node(fdt, path);
	}

	/* Memory. */
	assert_string_equal(prop_str(fdt, "/memory@80000000", "device_type"), "memory");
	check_reg(fdt, "/memory@80000000", VIRT_DRAM_BASE, 256ULL << 20);

	/* Chosen. */
	assert_string_equal(prop_str(fdt, "/chosen", "bootargs"), "console=ttyS0 earlycon");
	assert_string_equal(prop_str(fdt, "/chosen", "stdout-path"), "/soc/serial@10000000");
	const void *v = prop(fdt, "/chosen", "linux,initrd-start", &len);
	assert_int_equal(len, 8);
	assert_int_equal(ld64(v, 0), 0x88000000);
	v = prop(fdt, "/chosen", "linux,initrd-end", &len);
	assert_int_equal(len, 8);
	assert_int_equal(ld64(v, 0), 0x88123456);
	/* stdout-path names a node that exists. */
	node(fdt, prop_str(fdt, "/chosen", "stdout-path"));

	/* SoC and devices, each reg from the address table. */
	assert_true(stringlist_has(fdt, "/soc", "compatible", "simple-bus"));
	assert_non_null(prop(fdt, "/soc", "ranges", &len));
	assert_int_equal(len, 0);

	uint32_t plic = fdt_get_phandle(fdt, node(fdt, "/soc/plic@c000000"));
	assert_int_not_equal(plic, 0);
	check_reg(fdt, "/soc/plic@c000000", VIRT_PLIC_BASE, VIRT_PLIC_SIZE);
	assert_true(stringlist_has(fdt, "/soc/plic@c000000", "compatible", "sifive,plic-1.0.0"));
	assert_true(stringlist_has(fdt, "/soc/plic@c000000", "compatible", "riscv,plic0"));
	assert_int_equal(prop_u32(fdt, "/soc/plic@c000000", "riscv,ndev"), VIRT_PLIC_NDEV);
	assert_int_equal(prop_u32(fdt, "/soc/plic@c000000", "#interrupt-cells"), 1);
	assert_int_equal(prop_u32(fdt, "/soc/plic@c000000", "#address-cells"), 0);
	assert_non_null(prop(fdt, "/soc/plic@c000000", "interrupt-controller", &len));
	check_per_hart(fdt, "/soc/plic@c000000", ncpus, 11, 9);

	check_reg(fdt, "/soc/clint@2000000", VIRT_CLINT_BASE, VIRT_CLINT_SIZE);
	assert_true(stringlist_has(fdt, "/soc/clint@2000000", "compatible", "sifive,clint0"));
	assert_true(stringlist_has(fdt, "/soc/clint@2000000", "compatible", "riscv,clint0"));
	check_per_hart(fdt, "/soc/clint@2000000", ncpus, 3, 7);

	check_reg(fdt, "/soc/serial@10000000", VIRT_UART0_BASE, VIRT_UART0_SIZE);
	assert_string_equal(prop_str(fdt, "/soc/serial@10000000", "compatible"), "ns16550a");
	assert_int_equal(prop_u32(fdt, "/soc/serial@10000000", "clock-frequency"), 3686400);
	assert_int_equal(prop_u32(fdt, "/soc/serial@10000000", "reg-shift"), 0);
	assert_int_equal(prop_u32(fdt, "/soc/serial@10000000", "reg-io-width"), 1);
	assert_int_equal(prop_u32(fdt, "/soc/serial@10000000", "interrupts"), VIRT_UART0_IRQ);
	assert_int_equal(prop_u32(fdt, "/soc/serial@10000000", "interrupt-parent"), plic);

	check_reg(fdt, "/soc/rtc@101000", VIRT_RTC_BASE, VIRT_RTC_SIZE);
	assert_string_equal(prop_str(fdt, "/soc/rtc@101000", "compatible"), "google,goldfish-rtc");
	assert_int_equal(prop_u32(fdt, "/soc/rtc@101000", "interrupts"), VIRT_RTC_IRQ);
	assert_int_equal(prop_u32(fdt, "/soc/rtc@101000", "interrupt-parent"), plic);

	check_reg(fdt, "/soc/test@100000", VIRT_TEST_BASE, VIRT_TEST_SIZE);
	assert_true(stringlist_has(fdt, "/soc/test@100000", "compatible", "sifive,test0"));
	assert_true(stringlist_has(fdt, "/soc/test@100000", "compatible", "syscon"));
	uint32_t test = fdt_get_phandle(fdt, node(fdt, "/soc/test@100000"));
	assert_int_not_equal(test, 0);
	assert_string_equal(prop_str(fdt, "/poweroff", "compatible"), "syscon-poweroff");
	assert_int_equal(prop_u32(fdt, "/poweroff", "regmap"), test);
	assert_int_equal(prop_u32(fdt, "/poweroff", "offset"), 0);
	assert_int_equal(prop_u32(fdt, "/poweroff", "value"), 0x5555);
	assert_string_equal(prop_str(fdt, "/reboot", "compatible"), "syscon-reboot");
	assert_int_equal(prop_u32(fdt, "/reboot", "regmap"), test);
	assert_int_equal(prop_u32(fdt, "/reboot", "value"), 0x7777);

	/* No virtio-mmio nodes yet. */
	assert_true(fdt_node_offset_by_compatible(fdt, -1, "virtio,mmio") < 0);

	/* Every phandle in the tree is unique. */
	for (off = fdt_next_node(fdt, -1, NULL); off >= 0; off = fdt_next_node(fdt, off, NULL)) {
		uint32_t ph = fdt_get_phandle(fdt, off);

		if (ph)
			assert_int_equal(fdt_node_offset_by_phandle(fdt, ph), off);
	}

	/* Free space left for firmware that edits the tree in place. */
	assert_true(fdt_totalsize(fdt) - (fdt_off_dt_strings(fdt) + fdt_size_dt_strings(fdt)) >=
		    16384);
	free(fdt);
}

static void test_dt_one_hart(void **state)
{
	check_tree(1);
}

static void test_dt_four_harts(void **state)
{
	check_tree(4);
}

static void test_dt_max_harts(void **state)
{
	check_tree(BOARD_MAX_CPUS);
}

/* No bootargs, no initrd, rv64gc: properties absent, "g" expanded. */
static void test_dt_minimal(void **state)
{
	struct board_config cfg = base_config(1);
	int size;
	void *fdt;

	cfg.bootargs = NULL;
	cfg.isa = "rv64gc";
	cfg.mmu_type = NULL;
	fdt = build(&cfg, &size);
	assert_null(fdt_getprop(fdt, node(fdt, "/chosen"), "bootargs", NULL));
	assert_null(fdt_getprop(fdt, node(fdt, "/chosen"), "linux,initrd-start", NULL));
	assert_null(fdt_getprop(fdt, node(fdt, "/cpus/cpu@0"), "mmu-type", NULL));
	assert_string_equal(prop_str(fdt, "/cpus/cpu@0", "riscv,isa"), "rv64gc");
	int o = node(fdt, "/cpus/cpu@0");
	static const char *const exts[] = {"i", "m", "a", "f", "d", "zicsr", "zifencei", "c"};
	assert_int_equal(fdt_stringlist_count(fdt, o, "riscv,isa-extensions"),
			 (int)ARRAY_SIZE(exts));
	for (unsigned i = 0; i < ARRAY_SIZE(exts); i++)
		assert_true(fdt_stringlist_search(fdt, o, "riscv,isa-extensions", exts[i]) >= 0);
	free(fdt);
}

/* board_set_initrd after board_new; a bad initrd fails the build with a sentence. */
static void test_dt_set_initrd(void **state)
{
	struct board_config cfg = base_config(2);
	struct board *b;
	void *buf = malloc(DT_BUF);
	const void *v;
	int len;

	assert_int_equal(board_new(&cfg, &b), 0);
	board_set_initrd(b, 0x84000000, 0x84001000);
	assert_true(board_dt_build(b, buf, DT_BUF) > 0);
	v = fdt_getprop(buf, fdt_path_offset(buf, "/chosen"), "linux,initrd-end", &len);
	assert_non_null(v);
	assert_int_equal(ld64(v, 0), 0x84001000);

	err_clear();
	board_set_initrd(b, 0x84000000, 0x80000000 + (512ULL << 20));
	assert_int_equal(board_dt_build(b, buf, DT_BUF), -EINVAL);
	assert_non_null(strstr(err_get(), "initrd"));
	board_free(b);
	free(buf);
}

static void test_dt_too_small(void **state)
{
	struct board_config cfg = base_config(4);
	struct board *b;
	char buf[512];

	assert_int_equal(board_new(&cfg, &b), 0);
	err_clear();
	assert_int_equal(board_dt_build(b, buf, sizeof(buf)), -ENOSPC);
	assert_true(strlen(err_get()) > 10);
	board_free(b);
}

/* The blob is exactly as big as needed plus slack, never more than the buffer. */
static void test_dt_tight_buffer(void **state)
{
	struct board_config cfg = base_config(2);
	struct board *b;
	void *buf = malloc(DT_BUF);
	int full, packed;

	assert_int_equal(board_new(&cfg, &b), 0);
	full = board_dt_build(b, buf, DT_BUF);
	assert_true(full > 0);
	packed = (int)(fdt_off_dt_strings(buf) + fdt_size_dt_strings(buf));
	assert_int_equal(board_dt_build(b, buf, (size_t)packed + 8), packed + 8);
	assert_int_equal(fdt_check_header(buf), 0);
	board_free(b);
	free(buf);
}

static void expect_bad(struct board_config cfg, const char *word)
{
	struct board *b = (struct board *)0x1;

	err_clear();
	assert_int_equal(board_new(&cfg, &b), -EINVAL);
	if (!strstr(err_get(), word))
		fail_msg("error '%s' does not mention '%s'", err_get(), word);
}

static void test_bad_configs(void **state)
{
	struct board_config cfg;

	cfg = base_config(0);
	expect_bad(cfg, "harts");
	cfg = base_config(BOARD_MAX_CPUS + 1);
	expect_bad(cfg, "harts");
	cfg = base_config(1);
	cfg.ram_size = 8ULL << 20;
	expect_bad(cfg, "RAM");
	cfg.ram_size = (16ULL << 20) + 1;
	expect_bad(cfg, "RAM");
	cfg.ram_size = BOARD_MAX_RAM + 4096;
	expect_bad(cfg, "RAM");
	cfg = base_config(1);
	cfg.isa = "rv32imac";
	expect_bad(cfg, "ISA");
	cfg.isa = "rv64imac_";
	expect_bad(cfg, "ISA");
	cfg.isa = "rv64iMac";
	expect_bad(cfg, "ISA");
	cfg = base_config(1);
	cfg.mmu_type = "riscv,sv32";
	expect_bad(cfg, "mmu-type");
	cfg = base_config(1);
	cfg.initrd_start = 0x90000000;
	cfg.initrd_end = 0x80000000;
	expect_bad(cfg, "initrd");
	cfg.initrd_start = 0x70000000;
	cfg.initrd_end = 0x80001000;
	expect_bad(cfg, "initrd");
	assert_int_equal(board_new(NULL, &(struct board *){NULL}), -EINVAL);
}

/* The memory map refuses RAM that overlaps a device, accepts it at VIRT_DRAM_BASE. */
static void test_memmap_layout(void **state)
{
	struct board_config cfg = base_config(1);
	struct board *b;
	static uint8_t ram[4096];
	uint64_t v;

	assert_int_equal(board_new(&cfg, &b), 0);
	assert_int_equal(memmap_add_ram(board_memmap(b), VIRT_UART0_BASE, sizeof(ram), ram),
			 -EEXIST);
	assert_int_equal(memmap_add_ram(board_memmap(b), VIRT_DRAM_BASE, sizeof(ram), ram), 0);
	/* Devices answer at their table addresses; the virtio window is reserved but empty. */
	assert_int_equal(memmap_mmio_read(board_memmap(b), VIRT_UART0_BASE + 5, 1, &v), 0);
	assert_int_equal(v & 0x60, 0x60);
	assert_int_equal(memmap_mmio_read(board_memmap(b), VIRT_PLIC_BASE + 4, 4, &v), 0);
	assert_int_equal(memmap_mmio_read(board_memmap(b), VIRT_CLINT_BASE + 0xbff8, 8, &v), 0);
	assert_int_equal(memmap_mmio_read(board_memmap(b), VIRT_RTC_BASE, 4, &v), 0);
	assert_int_equal(memmap_mmio_read(board_memmap(b), VIRT_TEST_BASE, 4, &v), 0);
	assert_int_equal(memmap_mmio_read(board_memmap(b), VIRT_VIRTIO_BASE, 4, &v), -ENOENT);
	board_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dt_one_hart),     cmocka_unit_test(test_dt_four_harts),
		cmocka_unit_test(test_dt_max_harts),    cmocka_unit_test(test_dt_minimal),
		cmocka_unit_test(test_dt_set_initrd),   cmocka_unit_test(test_dt_too_small),
		cmocka_unit_test(test_dt_tight_buffer), cmocka_unit_test(test_bad_configs),
		cmocka_unit_test(test_memmap_layout),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
