/*
 * test_devices.c - the virt board's devices driven through memmap_mmio_read/write with fake
 * hooks: UART, CLINT, PLIC (also standalone, with its own source lines), goldfish RTC and the
 * sifive,test syscon.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "kumo/accel.h"
#include "kumo/base.h"
#include "kumo/board.h"
#include "machine/devices.h"

/* --- fake hooks --- */

struct fake {
	pthread_mutex_t lock;
	bool irq[BOARD_MAX_CPUS][16];
	unsigned irq_calls;
	uint64_t timer[BOARD_MAX_CPUS];
	unsigned timer_calls;
	enum board_event ev;
	uint64_t ev_data;
	unsigned ev_calls;
	char out[256];
	size_t out_len;
	unsigned rx_ready_calls;
	const uint8_t *refeed; /* rx_ready offers these bytes again, from inside the hook */
	size_t refeed_len;
};

static struct fake fk = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void f_cpu_irq(void *o, unsigned hart, unsigned irq, bool level)
{
	struct fake *f = o;

	assert_true(hart < BOARD_MAX_CPUS && irq < 16);
	pthread_mutex_lock(&f->lock);
	f->irq[hart][irq] = level;
	f->irq_calls++;
	pthread_mutex_unlock(&f->lock);
}

static void f_cpu_timer(void *o, unsigned hart, uint64_t cmp)
{
	struct fake *f = o;

	pthread_mutex_lock(&f->lock);
	f->timer[hart] = cmp;
	f->timer_calls++;
	pthread_mutex_unlock(&f->lock);
}

static void f_event(void *o, enum board_event ev, uint64_t data)
{
	struct fake *f = o;

	f->ev = ev;
	f->ev_data = data;
	f->ev_calls++;
}

static void f_console(void *o, const uint8_t *buf, size_t len)
{
	struct fake *f = o;

	assert_true(f->out_len + len < sizeof(f->out));
	memcpy(f->out + f->out_len, buf, len);
	f->out_len += len;
}

static struct board *board;
static struct memmap *mm;

static void f_rx_ready(void *o)
{
	struct fake *f = o;
	size_t n;

	f->rx_ready_calls++;
	if (f->refeed_len) {
		n = board_console_input(board, f->refeed, f->refeed_len);
		f->refeed += n;
		f->refeed_len -= n;
	}
}

static bool irq_level(unsigned hart, unsigned irq)
{
	bool v;

	pthread_mutex_lock(&fk.lock);
	v = fk.irq[hart][irq];
	pthread_mutex_unlock(&fk.lock);
	return v;
}

static int setup(void **state)
{
	struct board_config cfg = {
		.ncpus = 4,
		.ram_size = 64ULL << 20,
		.isa = "rv64imafdc_zicsr_zifencei",
		.hooks = {.opaque = &fk,
			  .cpu_irq = f_cpu_irq,
			  .cpu_timer = f_cpu_timer,
			  .system_event = f_event,
			  .console_write = f_console,
			  .console_rx_ready = f_rx_ready},
	};

	pthread_mutex_lock(&fk.lock);
	memset(fk.irq, 0, sizeof(fk.irq));
	memset(fk.timer, 0, sizeof(fk.timer));
	fk.irq_calls = fk.timer_calls = fk.ev_calls = fk.rx_ready_calls = 0;
	fk.out_len = 0;
	fk.refeed_len = 0;
	pthread_mutex_unlock(&fk.lock);
	if (board_new(&cfg, &board))
		return -1;
	board_reset(board);
	mm = board_memmap(board);
	return 0;
}

static int teardown(void **state)
{
	board_free(board);
	board = NULL;
	return 0;
}

static uint64_t rd(uint64_t gpa, unsigned size)
{
	uint64_t v = 0xdeadbeef;

	assert_int_equal(memmap_mmio_read(mm, gpa, size, &v), 0);
	return v;
}

static void wr(uint64_t gpa, unsigned size, uint64_t v)
{
	assert_int_equal(memmap_mmio_write(mm, gpa, size, v), 0);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* PLIC registers (riscv-plic-spec 1.0.0 §3). */
#define PLIC_PRIO(s) (VIRT_PLIC_BASE + 4 * (s))
#define PLIC_PEND(w) (VIRT_PLIC_BASE + 0x1000 + 4 * (w))
#define PLIC_EN(c, w) (VIRT_PLIC_BASE + 0x2000 + 0x80 * (c) + 4 * (w))
#define PLIC_THRESH(c) (VIRT_PLIC_BASE + 0x200000 + 0x1000 * (c))
#define PLIC_CLAIM(c) (PLIC_THRESH(c) + 4)

/* Routes PLIC source s to hart 0's S-mode context (1) with priority 1. */
static void route_to_hart0_s(unsigned s)
{
	wr(PLIC_PRIO(s), 4, 1);
	wr(PLIC_EN(1, s / 32), 4, rd(PLIC_EN(1, s / 32), 4) | 1u << (s % 32));
	wr(PLIC_THRESH(1), 4, 0);
}

/* --- UART --- */

#define UART(r) (VIRT_UART0_BASE + (r))

static void test_uart_tx(void **state)
{
	const char *msg = "hello\n";

	for (const char *p = msg; *p; p++)
		wr(UART(0), 1, (uint8_t)*p);
	assert_int_equal(fk.out_len, strlen(msg));
	assert_memory_equal(fk.out, msg, strlen(msg));
	assert_int_equal(rd(UART(5), 1) & 0x60, 0x60); /* THRE | TEMT */
	assert_int_equal(rd(UART(5), 1) & 0x01, 0);    /* no data */
}

static void test_uart_rx_fifo(void **state)
{
	uint8_t in[20];

	for (unsigned i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)('a' + i);
	/* FIFO off after reset: a single holding register. */
	assert_int_equal(board_console_input(board, in, 3), 1);
	assert_int_equal(rd(UART(5), 1) & 1, 1);
	assert_int_equal(rd(UART(0), 1), 'a');
	assert_int_equal(rd(UART(5), 1) & 1, 0);
	assert_int_equal(fk.rx_ready_calls, 1); /* refused input, then drained */

	wr(UART(2), 1, 0x07); /* FIFO on, both cleared */
	assert_int_equal(board_console_input(board, in, sizeof(in)), 16);
	assert_int_equal(board_console_input(board, in, 1), 0);
	for (unsigned i = 0; i < 16; i++) {
		assert_int_equal(rd(UART(5), 1) & 1, 1);
		assert_int_equal(rd(UART(0), 1), in[i]);
	}
	assert_int_equal(rd(UART(5), 1) & 1, 0);
	assert_int_equal(rd(UART(0), 1), 0); /* empty FIFO reads 0 */
	assert_int_equal(fk.rx_ready_calls, 2);

	/* FCR receive reset drops queued bytes. */
	assert_int_equal(board_console_input(board, in, 4), 4);
	wr(UART(2), 1, 0x03);
	assert_int_equal(rd(UART(5), 1) & 1, 0);
}

/* The host re-offers refused input from inside console_rx_ready: no board lock is held. */
static void test_uart_rx_refeed(void **state)
{
	static const uint8_t msg[] = "0123456789abcdefghijklmnopqrstuvwxyz";
	char got[sizeof(msg)] = {0};
	size_t n, i = 0;

	wr(UART(2), 1, 0x01);
	n = board_console_input(board, msg, sizeof(msg) - 1);
	assert_int_equal(n, 16);
	fk.refeed = msg + n;
	fk.refeed_len = sizeof(msg) - 1 - n;
	while (rd(UART(5), 1) & 1) {
		assert_true(i < sizeof(msg) - 1);
		got[i++] = (char)rd(UART(0), 1);
	}
	assert_int_equal(i, sizeof(msg) - 1);
	assert_string_equal(got, (const char *)msg);
	assert_int_equal(fk.rx_ready_calls, 2);
}

/* Context 2h is hart h's M-mode external interrupt, 2h+1 its S-mode one. */
static void test_plic_board_contexts(void **state)
{
	wr(PLIC_PRIO(VIRT_UART0_IRQ), 4, 1);
	wr(PLIC_EN(6, 0), 4, 1u << VIRT_UART0_IRQ);
	wr(UART(1), 1, 0x01);
	assert_int_equal(board_console_input(board, (const uint8_t *)"k", 1), 1);
	for (unsigned h = 0; h < 4; h++) {
		assert_int_equal(irq_level(h, ACCEL_IRQ_MEI), h == 3);
		assert_false(irq_level(h, ACCEL_IRQ_SEI));
	}
	wr(PLIC_EN(7, 0), 4, 1u << VIRT_UART0_IRQ);
	assert_true(irq_level(3, ACCEL_IRQ_SEI));
	assert_int_equal(rd(PLIC_CLAIM(7), 4), VIRT_UART0_IRQ);
	assert_false(irq_level(3, ACCEL_IRQ_SEI));
	assert_false(irq_level(3, ACCEL_IRQ_MEI)); /* claimed: gone for every context */
	rd(UART(0), 1);
	wr(PLIC_CLAIM(7), 4, VIRT_UART0_IRQ);
	assert_false(irq_level(3, ACCEL_IRQ_MEI) || irq_level(3, ACCEL_IRQ_SEI));
}

static void test_uart_rx_interrupt(void **state)
{
	uint8_t c = 'x';

	route_to_hart0_s(VIRT_UART0_IRQ);
	wr(UART(2), 1, 0x01);
	assert_int_equal(board_console_input(board, &c, 1), 1);
	assert_false(irq_level(0, ACCEL_IRQ_SEI)); /* IER.ERBFI still off */
	assert_int_equal(rd(UART(2), 1), 0xc1);    /* FIFOs on, no interrupt */
	wr(UART(1), 1, 0x01);
	assert_true(irq_level(0, ACCEL_IRQ_SEI));
	assert_false(irq_level(0, ACCEL_IRQ_MEI));
	assert_false(irq_level(1, ACCEL_IRQ_SEI));
	assert_int_equal(rd(UART(2), 1), 0xc4); /* received data available */
	assert_int_equal(rd(PLIC_CLAIM(1), 4), VIRT_UART0_IRQ);
	assert_false(irq_level(0, ACCEL_IRQ_SEI)); /* claimed */
	assert_int_equal(rd(UART(0), 1), 'x');
	wr(PLIC_CLAIM(1), 4, VIRT_UART0_IRQ);
	assert_false(irq_level(0, ACCEL_IRQ_SEI)); /* source low at completion */
	assert_int_equal(rd(UART(2), 1), 0xc1);
}

static void test_uart_thre_interrupt(void **state)
{
	route_to_hart0_s(VIRT_UART0_IRQ);
	wr(UART(1), 1, 0x02); /* ETBEI on with THR empty: interrupt */
	assert_true(irq_level(0, ACCEL_IRQ_SEI));
	assert_int_equal(rd(UART(2), 1), 0x02);
	assert_int_equal(rd(UART(2), 1), 0x01); /* IIR read cleared it */
	assert_false(irq_level(0, ACCEL_IRQ_SEI));
	wr(UART(0), 1, 'z'); /* THR empties again at once */
	assert_true(irq_level(0, ACCEL_IRQ_SEI));
	wr(UART(1), 1, 0x00);
	assert_false(irq_level(0, ACCEL_IRQ_SEI));
	/* RX data outranks THRE. */
	wr(UART(1), 1, 0x03);
	assert_int_equal(board_console_input(board, (const uint8_t *)"q", 1), 1);
	assert_int_equal(rd(UART(2), 1) & 0x0f, 0x04);
	rd(UART(0), 1);
	assert_int_equal(rd(UART(2), 1) & 0x0f, 0x02);
}

static void test_uart_dlab_and_regs(void **state)
{
	wr(UART(1), 1, 0x05);
	wr(UART(3), 1, 0x83); /* DLAB, 8N1 */
	wr(UART(0), 1, 0x0c);
	wr(UART(1), 1, 0x01);
	assert_int_equal(rd(UART(0), 1), 0x0c);
	assert_int_equal(rd(UART(1), 1), 0x01);
	assert_int_equal(fk.out_len, 0); /* DLL write is not a transmit */
	wr(UART(3), 1, 0x03);
	assert_int_equal(rd(UART(3), 1), 0x03);
	assert_int_equal(rd(UART(1), 1), 0x05); /* IER kept across DLAB */
	/* Linux's 8250 probe: IER keeps its low 4 bits, SCR stores a byte. */
	wr(UART(1), 1, 0xff);
	assert_int_equal(rd(UART(1), 1), 0x0f);
	wr(UART(1), 1, 0);
	assert_int_equal(rd(UART(1), 1), 0);
	wr(UART(7), 1, 0xa5);
	assert_int_equal(rd(UART(7), 1), 0xa5);
	/* Loopback: MSR mirrors MCR (the probe expects 0x90 for RTS|OUT2), THR comes back. */
	wr(UART(4), 1, 0x1a);
	assert_int_equal(rd(UART(6), 1) & 0xf0, 0x90);
	wr(UART(0), 1, 'L');
	assert_int_equal(fk.out_len, 0);
	assert_int_equal(rd(UART(5), 1) & 1, 1);
	assert_int_equal(rd(UART(0), 1), 'L');
	wr(UART(4), 1, 0x00);
	assert_int_equal(rd(UART(6), 1) & 0xb0, 0xb0); /* DCD, DSR, CTS */
	/* Reset clears the registers. */
	board_reset(board);
	assert_int_equal(rd(UART(3), 1), 0);
	assert_int_equal(rd(UART(7), 1), 0);
}

/* --- CLINT --- */

#define CLINT(o) (VIRT_CLINT_BASE + (o))

static void test_clint_msip(void **state)
{
	wr(CLINT(4 * 1), 4, 1);
	assert_true(irq_level(1, ACCEL_IRQ_MSI));
	assert_false(irq_level(0, ACCEL_IRQ_MSI));
	assert_int_equal(rd(CLINT(4), 4), 1);
	wr(CLINT(4 * 3), 4, 0xffffffff);
	assert_int_equal(rd(CLINT(4 * 3), 4), 1); /* only bit 0 exists */
	assert_true(irq_level(3, ACCEL_IRQ_MSI));
	wr(CLINT(4 * 1), 4, 0);
	assert_false(irq_level(1, ACCEL_IRQ_MSI));
	/* A 64-bit access covers harts 2 and 3. */
	wr(CLINT(8), 8, 1ULL | 0ULL << 32);
	assert_true(irq_level(2, ACCEL_IRQ_MSI));
	assert_false(irq_level(3, ACCEL_IRQ_MSI));
	/* Beyond the last hart: reads 0, no hook. */
	unsigned calls = fk.irq_calls;
	wr(CLINT(4 * 10), 4, 1);
	assert_int_equal(rd(CLINT(4 * 10), 4), 0);
	assert_int_equal(fk.irq_calls, calls);
	board_reset(board);
	assert_false(irq_level(2, ACCEL_IRQ_MSI));
}

static void test_clint_mtimecmp(void **state)
{
	/* Reset drove every hart's compare to "never". */
	for (unsigned h = 0; h < 4; h++)
		assert_int_equal(fk.timer[h], UINT64_MAX);
	assert_int_equal(rd(CLINT(0x4000 + 8 * 2), 8), UINT64_MAX);
	wr(CLINT(0x4000 + 8 * 2), 8, 0x123456789abcdefULL);
	assert_int_equal(fk.timer[2], 0x123456789abcdefULL);
	assert_int_equal(fk.timer[1], UINT64_MAX);
	assert_int_equal(rd(CLINT(0x4000 + 8 * 2), 8), 0x123456789abcdefULL);
	/* 32-bit halves (RV32 style: high to all ones first, then low, then high). */
	wr(CLINT(0x4000 + 8 + 4), 4, 0xffffffff);
	wr(CLINT(0x4000 + 8), 4, 0x11223344);
	wr(CLINT(0x4000 + 8 + 4), 4, 0x55);
	assert_int_equal(fk.timer[1], 0x5511223344ULL);
	assert_int_equal(rd(CLINT(0x4000 + 8), 4), 0x11223344);
	assert_int_equal(rd(CLINT(0x4000 + 8 + 4), 4), 0x55);
	/* Bad sizes are guest errors, with no effect. */
	uint64_t errs = guest_error_count();
	unsigned calls = fk.timer_calls;
	wr(CLINT(0x4000), 1, 0);
	wr(CLINT(0x4002), 2, 0);
	assert_int_equal(fk.timer_calls, calls);
	assert_true(guest_error_count() >= errs + 2);
}

static void test_clint_mtime(void **state)
{
	uint64_t a = rd(CLINT(0xbff8), 8);
	uint64_t host = clock_guest_ticks();
	uint64_t b = rd(CLINT(0xbff8), 8);

	assert_true(a <= host && host <= b);
	sleep_ms(2);
	uint64_t c = rd(CLINT(0xbff8), 8);
	assert_true(c >= b + 2 * KUMO_TIMEBASE_HZ / 1000 - 1); /* advanced >= 2 ms of ticks */
	/* Halves agree with the 64-bit value. */
	uint64_t lo = rd(CLINT(0xbff8), 4), hi = rd(CLINT(0xbffc), 4);
	assert_true(((hi << 32) | lo) >= c);
	/* Writing mtime moves the guest clock for everyone. */
	uint64_t want = c + 1000ULL * KUMO_TIMEBASE_HZ;
	wr(CLINT(0xbff8), 8, want);
	uint64_t d = rd(CLINT(0xbff8), 8);
	assert_true(d >= want && d < want + KUMO_TIMEBASE_HZ);
	assert_true(clock_guest_ticks() >= want);
	/* ... and back, by writing the low half only. */
	wr(CLINT(0xbff8), 4, (uint32_t)c);
	wr(CLINT(0xbffc), 4, c >> 32);
	d = rd(CLINT(0xbff8), 8);
	assert_true(d >= c && d < c + KUMO_TIMEBASE_HZ);
}

/* --- PLIC, standalone: sources driven directly --- */

struct plic_fixture {
	struct plic *p;
	struct memmap *mm;
	struct irq_line lines[4]; /* 2 harts */
	bool out[4];
};

static struct plic_fixture pf;

static void pf_set(void *o, unsigned n, bool level)
{
	pf.out[n] = level;
}

static int plic_setup(void **state)
{
	memset(&pf, 0, sizeof(pf));
	for (unsigned c = 0; c < 4; c++)
		pf.lines[c] = (struct irq_line){pf_set, NULL, c};
	if (plic_new(&(struct plic_config){.ncpus = 2, .ctx = pf.lines}, &pf.p))
		return -1;
	pf.mm = memmap_new();
	if (!pf.mm || memmap_add_mmio(pf.mm, "plic", 0, VIRT_PLIC_SIZE, plic_class.mmio, pf.p))
		return -1;
	plic_class.reset(pf.p);
	return 0;
}

static int plic_teardown(void **state)
{
	memmap_free(pf.mm);
	plic_class.free(pf.p);
	return 0;
}

static uint32_t prd(uint64_t off)
{
	uint64_t v;

	assert_int_equal(memmap_mmio_read(pf.mm, off, 4, &v), 0);
	return (uint32_t)v;
}

static void pwr(uint64_t off, uint32_t v)
{
	assert_int_equal(memmap_mmio_write(pf.mm, off, 4, v), 0);
}

#define P_PRIO(s) (4u * (s))
#define P_PEND(w) (0x1000u + 4 * (w))
#define P_EN(c, w) (0x2000u + 0x80 * (c) + 4 * (w))
#define P_THRESH(c) (0x200000u + 0x1000 * (c))
#define P_CLAIM(c) (P_THRESH(c) + 4)

static void test_plic_priority_regs(void **state)
{
	pwr(P_PRIO(5), 0xff);
	assert_int_equal(prd(P_PRIO(5)), 7);
	pwr(P_PRIO(0), 3);
	assert_int_equal(prd(P_PRIO(0)), 0); /* source 0 does not exist */
	pwr(P_PRIO(95), 2);
	assert_int_equal(prd(P_PRIO(95)), 2);
	pwr(P_PRIO(96), 2);
	assert_int_equal(prd(P_PRIO(96)), 0);
	pwr(P_THRESH(3), 0xff);
	assert_int_equal(prd(P_THRESH(3)), 7);
	pwr(P_EN(2, 0), 0xffffffff);
	assert_int_equal(prd(P_EN(2, 0)), 0xfffffffe);
	pwr(P_EN(2, 2), 0xffffffff);
	assert_int_equal(prd(P_EN(2, 2)), 0xffffffff); /* sources 64..95 */
	pwr(P_EN(2, 3), 0xffffffff);
	assert_int_equal(prd(P_EN(2, 3)), 0);
	/* A context that does not exist (2 harts: 0..3). */
	pwr(P_EN(4, 0), 0xffffffff);
	assert_int_equal(prd(P_EN(4, 0)), 0);
	/* 64-bit access covers two words. */
	uint64_t v;
	assert_int_equal(memmap_mmio_write(pf.mm, P_EN(1, 0), 8, 0x0000000300000006ULL), 0);
	assert_int_equal(memmap_mmio_read(pf.mm, P_EN(1, 0), 8, &v), 0);
	assert_int_equal(v, 0x0000000300000006ULL);
}

static void test_plic_gating(void **state)
{
	plic_set_irq(pf.p, 5, true);
	assert_int_equal(prd(P_PEND(0)), 1u << 5);
	assert_false(pf.out[1]); /* priority 0 */
	pwr(P_PRIO(5), 3);
	assert_false(pf.out[1]); /* not enabled */
	pwr(P_EN(1, 0), 1u << 5);
	assert_true(pf.out[1]);
	assert_false(pf.out[0] || pf.out[2] || pf.out[3]);
	pwr(P_THRESH(1), 3);
	assert_false(pf.out[1]); /* priority must exceed the threshold */
	pwr(P_THRESH(1), 2);
	assert_true(pf.out[1]);
	/* The same source enabled in hart 1's M context too. */
	pwr(P_EN(2, 0), 1u << 5);
	assert_true(pf.out[2]);
	plic_set_irq(pf.p, 5, false);
	assert_false(pf.out[1] || pf.out[2]);
	assert_int_equal(prd(P_PEND(0)), 0);
	/* Pending bits are read-only. */
	pwr(P_PEND(0), 0xffffffff);
	assert_int_equal(prd(P_PEND(0)), 0);
}

static void test_plic_claim_complete(void **state)
{
	pwr(P_PRIO(5), 1);
	pwr(P_EN(1, 0), 1u << 5);
	assert_int_equal(prd(P_CLAIM(1)), 0); /* nothing pending */
	plic_set_irq(pf.p, 5, true);
	assert_true(pf.out[1]);
	assert_int_equal(prd(P_CLAIM(1)), 5);
	assert_false(pf.out[1]);
	assert_int_equal(prd(P_PEND(0)), 0);
	/* Still high while in flight: no new request until completion. */
	plic_set_irq(pf.p, 5, true);
	assert_false(pf.out[1]);
	assert_int_equal(prd(P_CLAIM(1)), 0);
	/* Completion of a source the context has not enabled is ignored. */
	pwr(P_CLAIM(3), 5);
	assert_false(pf.out[1]);
	pwr(P_CLAIM(1), 5);
	assert_true(pf.out[1]); /* level still high: pending again */
	assert_int_equal(prd(P_PEND(0)), 1u << 5);
	assert_int_equal(prd(P_CLAIM(1)), 5);
	plic_set_irq(pf.p, 5, false);
	pwr(P_CLAIM(1), 5);
	assert_false(pf.out[1]); /* level low at completion */
	assert_int_equal(prd(P_PEND(0)), 0);
	/* Completing again or an unclaimed id changes nothing. */
	pwr(P_CLAIM(1), 5);
	assert_false(pf.out[1]);
}

static void test_plic_priority_order(void **state)
{
	pwr(P_PRIO(3), 2);
	pwr(P_PRIO(7), 2);
	pwr(P_PRIO(40), 5);
	pwr(P_EN(0, 0), 1u << 3 | 1u << 7);
	pwr(P_EN(0, 1), 1u << (40 - 32));
	plic_set_irq(pf.p, 7, true);
	plic_set_irq(pf.p, 3, true);
	plic_set_irq(pf.p, 40, true);
	assert_int_equal(prd(P_PEND(1)), 1u << 8);
	assert_int_equal(prd(P_CLAIM(0)), 40); /* highest priority */
	assert_int_equal(prd(P_CLAIM(0)), 3);  /* tie: lowest id */
	assert_int_equal(prd(P_CLAIM(0)), 7);
	assert_int_equal(prd(P_CLAIM(0)), 0);
	assert_false(pf.out[0]);
	/* Not enabled for context 1: nothing to claim there. */
	pwr(P_CLAIM(0), 3);
	assert_true(pf.out[0]);
	assert_false(pf.out[1]);
	assert_int_equal(prd(P_CLAIM(1)), 0);
	/* Reset: every output low, levels still known. */
	plic_class.reset(pf.p);
	assert_false(pf.out[0]);
	assert_int_equal(prd(P_PRIO(40)), 0);
	assert_int_equal(prd(P_PEND(0)) & (1u << 3), 1u << 3);
	/* Bad sources from devices are ignored. */
	plic_set_irq(pf.p, 0, true);
	plic_set_irq(pf.p, 200, true);
	assert_int_equal(prd(P_PEND(0)) & 1, 0);
}

/* --- goldfish RTC --- */

#define RTC(o) (VIRT_RTC_BASE + (o))

static uint64_t rtc_time(void)
{
	uint64_t lo = rd(RTC(0x00), 4);

	return rd(RTC(0x04), 4) << 32 | lo;
}

static void test_rtc_time(void **state)
{
	uint64_t host = clock_realtime_ns(), t = rtc_time();

	assert_true(t >= host && t - host < 1000000000ULL);
	/* Set it the way Linux does (high word first), to 2001-09-09T01:46:40Z. */
	uint64_t want = 1000000000ULL * 1000000000ULL;
	wr(RTC(0x04), 4, want >> 32);
	wr(RTC(0x00), 4, (uint32_t)want);
	t = rtc_time();
	assert_true(t >= want && t - want < 1000000000ULL);
	sleep_ms(3);
	assert_true(rtc_time() >= t + 3000000ULL);
	/* Reset keeps the time (battery-backed). */
	board_reset(board);
	assert_true(rtc_time() - want < 2000000000ULL);
}

static void test_rtc_latch(void **state)
{
	/* 20 ms before the low word wraps: TIME_HIGH must return the value latched with LOW. */
	uint64_t base = (5ULL << 32) | (0xffffffffULL - 20000000ULL), lo = 0;

	for (unsigned attempt = 0; attempt < 5; attempt++) {
		wr(RTC(0x04), 4, base >> 32);
		wr(RTC(0x00), 4, (uint32_t)base);
		lo = rd(RTC(0x00), 4);
		if (lo >= 0x80000000ULL) /* else this thread slept past the wrap: again */
			break;
	}
	assert_true(lo >= 0xfe000000ULL);
	sleep_ms(30);
	assert_int_equal(rd(RTC(0x04), 4), 5);
	rd(RTC(0x00), 4);
	assert_int_equal(rd(RTC(0x04), 4), 6);
}

static bool wait_level(unsigned hart, unsigned irq, bool level, unsigned ms)
{
	for (unsigned i = 0; i < ms; i++) {
		if (irq_level(hart, irq) == level)
			return true;
		sleep_ms(1);
	}
	return irq_level(hart, irq) == level;
}

static void test_rtc_alarm(void **state)
{
	route_to_hart0_s(VIRT_RTC_IRQ);
	uint64_t now = rtc_time(), at = now + 30000000ULL; /* 30 ms */

	wr(RTC(0x0c), 4, at >> 32);
	wr(RTC(0x08), 4, (uint32_t)at);
	wr(RTC(0x10), 4, 1);
	assert_int_equal(rd(RTC(0x10), 4), 1);
	assert_int_equal(rd(RTC(0x18), 4), 1);
	assert_false(irq_level(0, ACCEL_IRQ_SEI));
	assert_true(wait_level(0, ACCEL_IRQ_SEI, true, 2000));
	assert_true(rtc_time() >= at);
	assert_int_equal(rd(RTC(0x18), 4), 0);
	assert_int_equal(rd(PLIC_CLAIM(1), 4), VIRT_RTC_IRQ);
	wr(RTC(0x1c), 4, 1);
	wr(PLIC_CLAIM(1), 4, VIRT_RTC_IRQ);
	assert_false(irq_level(0, ACCEL_IRQ_SEI));

	/* An alarm in the past fires at once; with IRQ_ENABLED clear the line stays low. */
	wr(RTC(0x10), 4, 0);
	wr(RTC(0x0c), 4, 0);
	wr(RTC(0x08), 4, 1);
	assert_int_equal(rd(RTC(0x18), 4), 0);
	assert_false(irq_level(0, ACCEL_IRQ_SEI));
	wr(RTC(0x10), 4, 1); /* the latched interrupt shows once enabled */
	assert_true(irq_level(0, ACCEL_IRQ_SEI));
	wr(RTC(0x1c), 4, 1);
	assert_false(irq_level(0, ACCEL_IRQ_SEI));

	/* CLEAR_ALARM disarms a future alarm. */
	now = rtc_time();
	at = now + 20000000ULL;
	wr(RTC(0x0c), 4, at >> 32);
	wr(RTC(0x08), 4, (uint32_t)at);
	assert_int_equal(rd(RTC(0x18), 4), 1);
	wr(RTC(0x14), 4, 1);
	assert_int_equal(rd(RTC(0x18), 4), 0);
	sleep_ms(40);
	assert_false(irq_level(0, ACCEL_IRQ_SEI));
}

/* --- sifive,test syscon --- */

static void test_syscon(void **state)
{
	wr(VIRT_TEST_BASE, 4, 0x5555);
	assert_int_equal(fk.ev_calls, 1);
	assert_int_equal(fk.ev, BOARD_EVENT_POWEROFF);
	wr(VIRT_TEST_BASE, 4, 0x7777);
	assert_int_equal(fk.ev_calls, 2);
	assert_int_equal(fk.ev, BOARD_EVENT_REBOOT);
	wr(VIRT_TEST_BASE, 4, 42u << 16 | 0x3333);
	assert_int_equal(fk.ev_calls, 3);
	assert_int_equal(fk.ev, BOARD_EVENT_FAIL);
	assert_int_equal(fk.ev_data, 42);
	/* OpenSBI resets with a 16-bit store. */
	wr(VIRT_TEST_BASE, 2, 0x7777);
	assert_int_equal(fk.ev_calls, 4);
	assert_int_equal(fk.ev, BOARD_EVENT_REBOOT);
	fk.ev_calls = 3;
	uint64_t errs = guest_error_count();
	wr(VIRT_TEST_BASE, 1, 0x55);
	assert_int_equal(fk.ev_calls, 3);
	assert_int_equal(guest_error_count(), ++errs);
	wr(VIRT_TEST_BASE, 4, 0x1234);
	wr(VIRT_TEST_BASE + 4, 4, 0x5555);
	assert_int_equal(fk.ev_calls, 3);
	assert_int_equal(guest_error_count(), errs + 2);
	assert_int_equal(rd(VIRT_TEST_BASE, 4), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_uart_tx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uart_rx_fifo, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uart_rx_refeed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uart_rx_interrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plic_board_contexts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uart_thre_interrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uart_dlab_and_regs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_clint_msip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_clint_mtimecmp, setup, teardown),
		cmocka_unit_test_setup_teardown(test_clint_mtime, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plic_priority_regs, plic_setup, plic_teardown),
		cmocka_unit_test_setup_teardown(test_plic_gating, plic_setup, plic_teardown),
		cmocka_unit_test_setup_teardown(test_plic_claim_complete, plic_setup, plic_teardown),
		cmocka_unit_test_setup_teardown(test_plic_priority_order, plic_setup, plic_teardown),
		cmocka_unit_test_setup_teardown(test_rtc_time, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rtc_latch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rtc_alarm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_syscon, setup, teardown),
	};

	log_level = LOG_ERR; /* the guest-error tests are noisy on purpose */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
