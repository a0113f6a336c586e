/*
 * test_dirty_log.c - the dirty log of guest RAM (memmap.h) and how the software RV64 CPU fills
 * it through its TLB's not-dirty flag (mmu.h RV64_TLB_REQ_DIRTY): every kind of guest write
 * (plain, FP, misaligned, page-crossing stores, AMOs, SC, the page-table walker's A/D updates)
 * marks exactly the pages it wrote; the second store to a page takes the fast path (it is not
 * logged again until the log is re-armed); re-arming (fetch-and-clear + dirty_log_sync) makes
 * the next store log again; device DMA announced through the memory map is marked; stores to
 * devices, to nothing and across the end of RAM mark nothing.
 *
 * Programs are encoded by hand, run through accel_rv64_ops and end in an ECALL that exits to
 * the test. The CPU tests run twice: with the JIT (KUMO_JIT=1: stores are translated to
 * its inline TLB path) and with the interpreter alone (KUMO_JIT=0).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "accel/rv64/cpu.h"
#include "accel/rv64/mmu.h"
#include "kumo/accel.h"
#include "kumo/memmap.h"
#include "kumo/virtio.h"
#include "accel_harness.h"
#include "virtio_harness.h"

#define RAM_BASE 0x80000000ull
#define RAM_SIZE (4ull << 20)
#define NPAGES (RAM_SIZE / 4096)
#define CODE (RAM_BASE + 0x0)
#define HANDLER_M (RAM_BASE + 0x10000) /* mtvec: ECALL (exits), so traps show as a wrong pc */
#define DATA (RAM_BASE + 0x100000)
#define PT (RAM_BASE + 0x200000) /* page tables for the walker test */

#define ECALL 0x00000073u
#define MS_FS (3ull << 13)
#define C_MSTATUS 0x300
#define C_MTVEC 0x305
#define C_SATP 0x180

enum { A0 = 10, A1 = 11, A2 = 12, A3 = 13 };

/* --- encoders (unpriv 20191213 §2.3, §8.2, §11.5) */

static uint32_t S(unsigned op, unsigned f3, unsigned rs1, unsigned rs2, int32_t imm)
{
	uint32_t u = (uint32_t)imm;

	return ((u >> 5) & 0x7f) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | (u & 31) << 7 | op;
}

static uint32_t SD(unsigned rs1, unsigned rs2, int32_t imm)
{
	return S(0x23, 3, rs1, rs2, imm);
}

static uint32_t SB(unsigned rs1, unsigned rs2, int32_t imm)
{
	return S(0x23, 0, rs1, rs2, imm);
}

static uint32_t FSD(unsigned rs1, unsigned frs2, int32_t imm)
{
	return S(0x27, 3, rs1, frs2, imm);
}

static uint32_t LD(unsigned rd, unsigned rs1, int32_t imm)
{
	return ((uint32_t)imm & 0xfff) << 20 | rs1 << 15 | 3u << 12 | rd << 7 | 0x03;
}

static uint32_t ADDI(unsigned rd, unsigned rs1, int32_t imm)
{
	return ((uint32_t)imm & 0xfff) << 20 | rs1 << 15 | rd << 7 | 0x13;
}

static uint32_t BNE(unsigned rs1, unsigned rs2, int32_t imm)
{
	uint32_t u = (uint32_t)imm;

	return ((u >> 12) & 1) << 31 | ((u >> 5) & 0x3f) << 25 | rs2 << 20 | rs1 << 15 | 1u << 12 |
	       ((u >> 1) & 0xf) << 8 | ((u >> 11) & 1) << 7 | 0x63;
}

/* AMO with funct5 f5, .D (funct3 3): rd = op(mem[rs1], rs2). */
static uint32_t AMO_D(unsigned f5, unsigned rd, unsigned rs1, unsigned rs2)
{
	return f5 << 27 | rs2 << 20 | rs1 << 15 | 3u << 12 | rd << 7 | 0x2f;
}

/* --- a one-hart VM over RAM_SIZE bytes with the dirty log */

struct t {
	struct accel_harness h; /* one hart */
	struct rv64_cpu *cpu;	/* the same hart, for looking at its TLB */
	uint64_t bits[NPAGES / 64];
};

static struct t *t_new(bool jit)
{
	struct t *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	ah_init(&t->h, &(struct ah_config){.ram_base = RAM_BASE,
					   .ram_size = RAM_SIZE,
					   .ncpus = 1,
					   .ecall_exit_mask = 0xb, /* ECALL exits from U, S and M */
					   .jit = jit ? AH_JIT_ON : AH_JIT_OFF});
	assert_int_equal(memmap_dirty_log_words(t->h.mm), NPAGES / 64);
	assert_non_null(t->h.ops->dirty_log_sync);
	t->cpu = (struct rv64_cpu *)t->h.cpu[0];
	for (unsigned i = 0; i < 16; i++)
		ah_put32(&t->h, HANDLER_M + 4 * i, ECALL);
	ah_set(&t->h, 0, ACCEL_REG_CSR(C_MTVEC), HANDLER_M);
	ah_set(&t->h, 0, ACCEL_REG_CSR(C_MSTATUS), MS_FS);
	return t;
}

static void t_free(struct t *t)
{
	ah_fini(&t->h);
	free(t);
}

static int setup_jit(void **state)
{
	*state = t_new(true);
	return 0;
}

static int setup_interp(void **state)
{
	*state = t_new(false);
	return 0;
}

static int teardown(void **state)
{
	t_free(*state);
	return 0;
}

static void setx(struct t *t, unsigned n, uint64_t v)
{
	ah_set(&t->h, 0, ACCEL_REG_X(n), v);
}

static uint64_t getx(struct t *t, unsigned n)
{
	return ah_get(&t->h, 0, ACCEL_REG_X(n));
}

/* Clears the log and makes the hart forget its write permissions (what snapshots do). */
static void arm(struct t *t)
{
	assert_int_equal(memmap_dirty_log_start(t->h.mm), 0);
	assert_true(memmap_dirty_log_active(t->h.mm));
	assert_int_equal(t->h.ops->dirty_log_sync(t->h.cpu[0]), 0);
}

/* Fetches and clears the log into t->bits; returns the number of dirty pages. */
static unsigned fetch(struct t *t)
{
	unsigned n = 0;

	assert_int_equal(memmap_dirty_log_fetch(t->h.mm, t->bits, NPAGES / 64), 0);
	for (unsigned w = 0; w < NPAGES / 64; w++)
		n += (unsigned)__builtin_popcountll(t->bits[w]);
	return n;
}

static bool dirty(const struct t *t, uint64_t pa)
{
	uint64_t pg = (pa - RAM_BASE) / 4096;

	return t->bits[pg / 64] >> (pg % 64) & 1;
}

/* Fetches the log and expects exactly the pages of pa[0..n) dirty. */
static void expect_dirty(struct t *t, const uint64_t *pa, unsigned n)
{
	assert_int_equal(fetch(t), n);
	for (unsigned i = 0; i < n; i++) {
		if (!dirty(t, pa[i]))
			fail_msg("page 0x%llx is not dirty", (unsigned long long)pa[i]);
	}
}

/* Writes the program (an ECALL follows) at CODE, runs it at privilege `priv` to the next ECALL
 * exit and returns the pc there. */
static uint64_t run_code(struct t *t, const uint32_t *insn, unsigned n, unsigned priv)
{
	for (unsigned i = 0; i < n; i++)
		ah_put32(&t->h, CODE + 4 * i, insn[i]);
	ah_put32(&t->h, CODE + 4 * n, ECALL);
	ah_set(&t->h, 0, ACCEL_REG_PRIV, priv);
	ah_set(&t->h, 0, ACCEL_REG_PC, CODE);
	ah_run_to_ecall(&t->h, 0);
	return ah_get(&t->h, 0, ACCEL_REG_PC);
}

/* Runs the program at privilege `priv` to its own ECALL. */
static void run_prog(struct t *t, const uint32_t *insn, unsigned n, unsigned priv)
{
	assert_int_equal(run_code(t, insn, n, priv), CODE + 4 * n); /* not the trap handler */
}

/* True when the hart's write TLB entry for va serves an aligned 8-byte store now. */
static bool store_is_fast(struct t *t, uint64_t va)
{
	return rv64_tlb_match(t->cpu, rv64_tlb_slot(t->cpu, RV64_ACC_WRITE, va), RV64_ACC_WRITE, va,
			      8);
}

/* --- tests */

/* A store marks its page; the second store to it takes the fast path; re-arming logs again. */
static void test_store(void **state)
{
	struct t *t = *state;
	const uint32_t prog[] = {SD(A1, A2, 8)};
	const uint64_t page[] = {DATA};

	arm(t);
	setx(t, A1, DATA);
	setx(t, A2, 0x1122334455667788ull);
	run_prog(t, prog, 1, 3);
	assert_int_equal(ah_get64(&t->h, DATA + 8), 0x1122334455667788ull);
	assert_true(store_is_fast(t, DATA)); /* refilled without the not-dirty flag */
	expect_dirty(t, page, 1);

	/*
	 * Fetched and cleared, but the hart was not told: its entry still allows the store, so
	 * the next one takes the fast path and nothing is logged (this is why dirty_log_sync
	 * exists, and the proof that a logged page costs nothing more).
	 */
	setx(t, A2, 2);
	run_prog(t, prog, 1, 3);
	assert_int_equal(ah_get64(&t->h, DATA + 8), 2);
	assert_int_equal(fetch(t), 0);

	/* Re-armed: the hart dropped its write entries; the next store logs the page again. */
	arm(t);
	ah_run(&t->h, 0); /* the SBI completion: pc += 4, ECALL */
	assert_false(store_is_fast(t, DATA));
	setx(t, A1, DATA); /* the completion wrote the SBI return values to a0 and a1 */
	setx(t, A2, 3);
	run_prog(t, prog, 1, 3);
	assert_int_equal(ah_get64(&t->h, DATA + 8), 3);
	expect_dirty(t, page, 1);
}

/* Stores to many pages in a loop (the JIT translates it): exactly those pages. */
static void test_store_loop(void **state)
{
	struct t *t = *state;
	/* do { sd a2, 0(a1); sb a2, 100(a1); a1 += 4096 * 2; } while (a1 != a3) */
	const uint32_t prog[] = {SD(A1, A2, 0),	     SB(A1, A2, 100),	 ADDI(A1, A1, 2047),
				 ADDI(A1, A1, 2047), ADDI(A1, A1, 2047), ADDI(A1, A1, 2047),
				 ADDI(A1, A1, 4),    BNE(A1, A3, -28)};
	uint64_t pages[32];

	arm(t);
	for (unsigned i = 0; i < 32; i++)
		pages[i] = DATA + 8192ull * i;
	setx(t, A1, DATA);
	setx(t, A2, 0xabcdef);
	setx(t, A3, DATA + 8192ull * 32);
	run_prog(t, prog, 8, 3);
	expect_dirty(t, pages, 32);
	for (unsigned i = 0; i < 32; i++) {
		assert_int_equal(ah_get64(&t->h, pages[i]), 0xabcdef);
		assert_false(dirty(t, pages[i] + 4096)); /* the page in between */
	}
	/* Again without re-arming: every store is fast now, nothing is logged. */
	setx(t, A1, DATA);
	run_prog(t, prog, 8, 3);
	assert_int_equal(fetch(t), 0);
}

static void test_fsd(void **state)
{
	struct t *t = *state;
	const uint32_t prog[] = {FSD(A1, 5, 16)};
	const uint64_t page[] = {DATA + 0x3000};

	arm(t);
	ah_set(&t->h, 0, ACCEL_REG_F(5), 0x400921fb54442d18ull);
	setx(t, A1, DATA + 0x3000);
	run_prog(t, prog, 1, 3);
	assert_int_equal(ah_get64(&t->h, DATA + 0x3010), 0x400921fb54442d18ull);
	expect_dirty(t, page, 1);
}

/* A misaligned store inside one page marks it; one across a page boundary marks both. */
static void test_misaligned(void **state)
{
	struct t *t = *state;
	const uint32_t prog[] = {SD(A1, A2, 0)};
	const uint64_t inside[] = {DATA + 0x5000}, across[] = {DATA + 0x6000, DATA + 0x7000};

	arm(t);
	setx(t, A1, DATA + 0x5003);
	setx(t, A2, 0x0102030405060708ull);
	run_prog(t, prog, 1, 3);
	expect_dirty(t, inside, 1);

	arm(t);
	setx(t, A1, DATA + 0x7000 - 3);
	run_prog(t, prog, 1, 3);
	assert_int_equal(t->h.ram[DATA + 0x7000 - 3 - RAM_BASE], 0x08);
	assert_int_equal(t->h.ram[DATA + 0x7000 + 4 - RAM_BASE], 0x01);
	expect_dirty(t, across, 2);
}

/* AMOs and SC write: they mark their page. LR only reads: it does not. */
static void test_amo_lr_sc(void **state)
{
	struct t *t = *state;
	const uint32_t amo[] = {AMO_D(0x00, A0, A1, A2)}; /* amoadd.d a0, a2, (a1) */
	const uint32_t lr[] = {AMO_D(0x02, A0, A1, 0)};
	const uint32_t lrsc[] = {AMO_D(0x02, A0, A1, 0), AMO_D(0x03, A3, A1, A2)};
	const uint64_t p1[] = {DATA + 0x8000}, p2[] = {DATA + 0x9000};

	arm(t);
	ah_put64(&t->h, DATA + 0x8000, 40);
	setx(t, A1, DATA + 0x8000);
	setx(t, A2, 2);
	run_prog(t, amo, 1, 3);
	assert_int_equal(getx(t, A0), 40);
	assert_int_equal(ah_get64(&t->h, DATA + 0x8000), 42);
	expect_dirty(t, p1, 1);

	arm(t);
	setx(t, A1, DATA + 0x9000);
	run_prog(t, lr, 1, 3);
	assert_int_equal(fetch(t), 0);

	arm(t);
	ah_put64(&t->h, DATA + 0x9000, 7);
	setx(t, A2, 99);
	run_prog(t, lrsc, 2, 3);
	assert_int_equal(getx(t, A3), 0); /* SC succeeded */
	assert_int_equal(ah_get64(&t->h, DATA + 0x9000), 99);
	expect_dirty(t, p2, 1);
}

/*
 * The page-table walker's A and D updates write PTEs in guest RAM: a load through a PTE
 * without A marks the page-table page (not the data page); a store through a PTE without D
 * marks the page-table page and the data page.
 */
static void test_ptw_ad(void **state)
{
	struct t *t = *state;
	const uint64_t l1 = PT + 0x1000, l0 = PT + 0x2000, va = 0x1000;
	const uint32_t load[] = {LD(A0, A1, 0)}, store[] = {SD(A1, A2, 0)};
	const uint64_t pt_only[] = {l0}, pt_data[] = {l0, DATA + 0xa000};

	/* Sv39: root[2] maps the RAM gigapage 1:1 (code; A and D set), va 0x1000 -> DATA+0xa000. */
	ah_put64(&t->h, PT + 2 * 8, (RAM_BASE >> 12) << 10 | 0xcf); /* V R W X A D */
	ah_put64(&t->h, PT + 0 * 8, (l1 >> 12) << 10 | 1);
	ah_put64(&t->h, l1 + 0 * 8, (l0 >> 12) << 10 | 1);
	ah_put64(&t->h, l0 + 1 * 8, ((DATA + 0xa000) >> 12) << 10 | 0x7); /* V R W, no A or D */
	ah_put64(&t->h, DATA + 0xa000, 0x5555);
	ah_set(&t->h, 0, ACCEL_REG_CSR(C_SATP), 8ull << 60 | PT >> 12);

	arm(t);
	setx(t, A1, va);
	run_prog(t, load, 1, 1);
	assert_int_equal(getx(t, A0), 0x5555);
	assert_true(ah_get64(&t->h, l0 + 8) & 0x40);  /* A */
	assert_false(ah_get64(&t->h, l0 + 8) & 0x80); /* no D */
	expect_dirty(t, pt_only, 1);

	arm(t);
	setx(t, A2, 0x6666);
	run_prog(t, store, 1, 1);
	assert_true(ah_get64(&t->h, l0 + 8) & 0x80); /* D */
	assert_int_equal(ah_get64(&t->h, DATA + 0xa000), 0x6666);
	expect_dirty(t, pt_data, 2);
	ah_set(&t->h, 0, ACCEL_REG_CSR(C_SATP), 0);
}

/* With the log off, stores mark nothing and write entries are fast from the start. */
static void test_log_off(void **state)
{
	struct t *t = *state;
	const uint32_t prog[] = {SD(A1, A2, 0)};

	arm(t);
	memmap_dirty_log_stop(t->h.mm);
	assert_false(memmap_dirty_log_active(t->h.mm));
	setx(t, A1, DATA + 0xb000);
	setx(t, A2, 1);
	run_prog(t, prog, 1, 3);
	assert_true(store_is_fast(t, DATA + 0xb000));
	assert_int_equal(fetch(t), 0);
	assert_false(memmap_dirty_page_clean(t->h.mm, DATA + 0xb000));
}

/* Device DMA announced through the memory map is marked, clipped to RAM. */
static void test_dma(void **state)
{
	struct t *t = *state;
	const uint64_t two[] = {DATA + 0xc000, DATA + 0xd000};
	const uint64_t one[] = {DATA + 0xe000};
	const uint64_t ends[] = {RAM_BASE, RAM_BASE + RAM_SIZE - 4096};

	arm(t);
	assert_true(memmap_dirty_page_clean(t->h.mm, DATA + 0xc000));
	/* crosses a page */
	memmap_ram_written(t->h.mm, ah_ptr(&t->h, DATA + 0xcff0, 0x20), 0x20);
	assert_false(memmap_dirty_page_clean(t->h.mm, DATA + 0xc000));
	expect_dirty(t, two, 2);

	memmap_ram_will_write(t->h.mm, t->h.ram + (DATA + 0xe000 - RAM_BASE), 4096);
	expect_dirty(t, one, 1);

	/* Pointers and addresses outside RAM are ignored or clipped. */
	memmap_ram_written(t->h.mm, t->h.ram + RAM_SIZE, 4096);
	memmap_dirty_mark(t->h.mm, RAM_BASE - 8192, 8192 + 1);
	memmap_dirty_mark(t->h.mm, RAM_BASE + RAM_SIZE - 1, 4096);
	memmap_dirty_mark(t->h.mm, RAM_BASE + RAM_SIZE, 4096);
	memmap_dirty_mark(t->h.mm, ~0ull - 10, 100); /* wraps */
	expect_dirty(t, ends, 2);

	/* Off: announced writes are not logged. */
	memmap_dirty_log_stop(t->h.mm);
	memmap_ram_written(t->h.mm, t->h.ram + (DATA - RAM_BASE), 8);
	assert_int_equal(fetch(t), 0);
	assert_int_equal(memmap_dirty_log_fetch(t->h.mm, t->bits, 1), -EINVAL);
}

/* A store to a page that holds decoded code (the decode cache's not-code flag) is logged. */
static void test_store_to_code(void **state)
{
	struct t *t = *state;
	/* sd a2, 0(a1) rewrites the next instructions of the running page into NOPs. */
	const uint32_t prog[] = {ADDI(A0, 0, 1), SD(A1, A2, 0), ADDI(A0, A0, 1), ADDI(0, 0, 0)};
	const uint64_t page[] = {CODE};
	uint64_t nops = (uint64_t)ADDI(0, 0, 0) << 32 | ADDI(0, 0, 0);

	arm(t);
	setx(t, A1, CODE + 8);
	setx(t, A2, nops);
	run_prog(t, prog, 4, 3);
	assert_int_equal(ah_get64(&t->h, CODE + 8), nops);
	expect_dirty(t, page, 1);
}

/* A device that records the stores it gets. */
#define DEV_BASE 0x10000000ull
#define DEV_SIZE 0x1000ull
#define NOTHING 0x20000000ull /* neither RAM nor a device */

struct dev_log {
	unsigned writes;
	uint64_t last_off, last_val;
};

static uint64_t dev_read(void *opaque, uint64_t off, unsigned size)
{
	return 0;
}

static void dev_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	struct dev_log *d = opaque;

	d->writes++;
	d->last_off = off;
	d->last_val = val;
}

static const struct mmio_ops dev_ops = {.read = dev_read, .write = dev_write};

/* Runs prog at CODE, expecting a trap into HANDLER_M (whose ECALL exits); returns mcause. */
static uint64_t run_trap(struct t *t, const uint32_t *insn, unsigned n)
{
	assert_int_equal(run_code(t, insn, n, 3), HANDLER_M);
	return ah_get(&t->h, 0, ACCEL_REG_CSR(0x342));
}

/*
 * While logging, a guest that stores to a device, to where nothing is mapped, with an AMO to a
 * device, or across the end of RAM: the device gets its stores, the others trap (store access
 * fault, priv 1.12 §3.7.1), and no page is marked, none written, nothing crashes.
 */
static void test_store_not_ram(void **state)
{
	struct t *t = *state;
	struct dev_log dev = {0};
	const uint32_t store[] = {SD(A1, A2, 8)}, twice[] = {SD(A1, A2, 8), SD(A1, A2, 16)};
	const uint32_t amo[] = {AMO_D(0x00, A0, A1, A2)};
	uint8_t tail[8];

	assert_int_equal(memmap_add_mmio(t->h.mm, "dev", DEV_BASE, DEV_SIZE, &dev_ops, &dev), 0);
	arm(t);
	setx(t, A1, DEV_BASE);
	setx(t, A2, 0x77);
	run_prog(t, twice, 2, 3);
	run_prog(t, store, 1, 3);
	assert_int_equal(dev.writes, 3);
	assert_int_equal(dev.last_off, 8);
	assert_int_equal(dev.last_val, 0x77);
	assert_false(store_is_fast(t, DEV_BASE));
	assert_int_equal(fetch(t), 0);

	arm(t);
	setx(t, A1, NOTHING);
	assert_int_equal(run_trap(t, store, 1), 7);
	setx(t, A1, DEV_BASE);
	assert_int_equal(run_trap(t, amo, 1), 7);
	assert_int_equal(dev.writes, 3);
	/* The last RAM page and the void after it: both halves are checked before writing. */
	memcpy(tail, t->h.ram + RAM_SIZE - 8, 8);
	setx(t, A1, RAM_BASE + RAM_SIZE - 4 - 8);
	assert_int_equal(run_trap(t, store, 1), 7);
	assert_memory_equal(tail, t->h.ram + RAM_SIZE - 8, 8);
	assert_int_equal(fetch(t), 0);
}

/* A virtio-console back end: no input, output counted. */
static size_t con_pending(void *opaque)
{
	return 0;
}

static size_t con_read(void *opaque, uint8_t *buf, size_t n)
{
	return 0;
}

static void con_write(void *opaque, const uint8_t *buf, size_t n)
{
	*(size_t *)opaque += n;
}

static bool harness_dirty(struct harness *h, uint64_t *bits, size_t nwords, uint64_t gpa)
{
	uint64_t pg = (gpa - H_RAM_BASE) / 4096;

	assert_int_equal(memmap_dirty_log_fetch(h->mm, bits, nwords), 0);
	return bits[pg / 64] >> (pg % 64) & 1;
}

/*
 * The device area is written by the device alone (virtio 1.2 §2.7): with VIRTIO_F_EVENT_IDX
 * even a kick of an empty queue stores avail_event (§2.7.10). Every such store is logged: a
 * guest may have written the word meanwhile (it is guest RAM), and a diff snapshot that
 * missed the device's store would differ from a full one. A completion logs the used ring.
 */
static void test_virtio_device_area(void **state)
{
	struct harness *h = h_new();
	struct virtio_console_backend be = {
	    .pending = con_pending, .read = con_read, .write = con_write};
	struct virtio_dev *dev;
	uint64_t bits[H_RAM_SIZE / 4096 / 64];
	const uint64_t used_tx = H_USED + VIRTIO_CONSOLE_TXQ * 0x10000;
	size_t out = 0;

	be.opaque = &out;
	assert_int_equal(virtio_console_new(h->mm, &be, &dev), 0);
	h_attach(h, dev);
	h_init(h, H_FEATURES);
	assert_int_equal(memmap_dirty_log_words(h->mm), ARRAY_SIZE(bits));

	assert_int_equal(memmap_dirty_log_start(h->mm), 0);
	*(uint16_t *)h_ptr(h, used_tx + 4 + 8 * H_QSIZE) = 0x5a5a; /* a guest scribbles */
	h_kick(h, VIRTIO_CONSOLE_TXQ);				   /* empty: avail_event only */
	assert_int_equal(*(uint16_t *)h_ptr(h, used_tx + 4 + 8 * H_QSIZE), 0);
	assert_true(harness_dirty(h, bits, ARRAY_SIZE(bits), used_tx));

	h_set_desc(h, VIRTIO_CONSOLE_TXQ, 0, H_BUF, 5, 0, 0);
	memcpy(h_ptr(h, H_BUF), "hello", 5);
	h_offer(h, VIRTIO_CONSOLE_TXQ, 0);
	h_kick(h, VIRTIO_CONSOLE_TXQ);
	assert_int_equal(out, 5);
	assert_true(harness_dirty(h, bits, ARRAY_SIZE(bits), used_tx));
	assert_false(bits[(H_BUF - H_RAM_BASE) / 4096 / 64] >> ((H_BUF - H_RAM_BASE) / 4096 % 64) &
		     1);
	h_free(h);
}

int main(void)
{
#define BOTH(fn)                                                                                   \
	{#fn " (jit)", fn, setup_jit, teardown, NULL},                                             \
	{                                                                                          \
#fn " (interpreter)", fn, setup_interp, teardown, NULL                             \
	}
	const struct CMUnitTest tests[] = {
	    BOTH(test_store),
	    BOTH(test_store_loop),
	    BOTH(test_fsd),
	    BOTH(test_misaligned),
	    BOTH(test_amo_lr_sc),
	    BOTH(test_ptw_ad),
	    BOTH(test_log_off),
	    BOTH(test_store_to_code),
	    BOTH(test_store_not_ram),
	    cmocka_unit_test_setup_teardown(test_dma, setup_interp, teardown),
	    cmocka_unit_test(test_virtio_device_area),
	};
#undef BOTH

	return cmocka_run_group_tests(tests, NULL, NULL);
}
