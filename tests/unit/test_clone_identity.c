/*
 * test_clone_identity.c - what makes a clone its own machine, without a guest:
 *   - the vmgenid device (src/machine/vmgenid.c) through its MMIO ops: a random ID, a new one
 *     per generation with the interrupt held until the guest reads the ID, read-only window,
 *     save/load, and its device-tree node on the board;
 *   - the guest agent channel (src/vmm/agent.c) against a fake guest agent that reads the
 *     requests from the virtio-console back end and writes answers into it: pings until
 *     hello, set-mac and macs, errors, echoes ignored, the timeout counted only while running,
 *     and GET /agent's ping.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <libfdt.h>

#include "kumo/agent.h"
#include "kumo/base.h"
#include "kumo/board.h"
#include "kumo/memmap.h"
#include "kumo/virtio.h"
#include "machine/devices.h"

/* ---- vmgenid ---- */

static bool line_level;
static unsigned line_calls;

static void fake_irq(void *opaque, unsigned n, bool level)
{
	assert_int_equal(n, 12);
	line_level = level;
	line_calls++;
}

static void read_id(struct vmgenid *g, uint8_t id[16])
{
	/* As the guest's memcpy may: one 8-byte, two 4-byte, a 2-byte and two 1-byte reads. */
	uint64_t v = vmgenid_class.mmio->read(g, 0, 8);

	memcpy(id, &v, 8);
	for (unsigned off = 8; off < 12; off += 4) {
		uint32_t w = (uint32_t)vmgenid_class.mmio->read(g, off, 4);
		memcpy(id + off, &w, 4);
	}
	uint16_t hw = (uint16_t)vmgenid_class.mmio->read(g, 12, 2);
	memcpy(id + 12, &hw, 2);
	id[14] = (uint8_t)vmgenid_class.mmio->read(g, 14, 1);
	id[15] = (uint8_t)vmgenid_class.mmio->read(g, 15, 1);
}

static void test_vmgenid_generations(void **state)
{
	struct vmgenid *g, *g2;
	uint8_t a[16], b[16], c[16], via_get[16], zero[16] = {0};
	uint8_t saved[256];
	int n;

	line_level = false;
	line_calls = 0;
	assert_int_equal(
	    vmgenid_new(&(struct vmgenid_config){.irq = {fake_irq, NULL, 12}, .plic_irq = 12}, &g),
	    0);
	assert_int_equal(
	    vmgenid_new(&(struct vmgenid_config){.irq = {fake_irq, NULL, 12}, .plic_irq = 12}, &g2),
	    0);
	vmgenid_class.reset(g);
	assert_false(line_level);
	read_id(g, a);
	vmgenid_get(g, via_get);
	assert_memory_equal(a, via_get, 16);
	assert_memory_not_equal(a, zero, 16);
	read_id(g2, b);
	assert_memory_not_equal(a, b, 16); /* random per device */
	assert_int_equal(a[7] >> 4, 4);	   /* version 4 */
	assert_int_equal(a[8] >> 6, 2);	   /* RFC variant */

	/* A new generation: new ID, the line up until the guest reads the ID. */
	assert_int_equal(vmgenid_new_generation(g), 0);
	assert_true(line_level);
	assert_int_equal(vmgenid_class.mmio->read(g, 0x20, 4), 0); /* outside the ID: no ack */
	assert_true(line_level);
	read_id(g, c);
	assert_false(line_level);
	assert_memory_not_equal(a, c, 16);

	/* Read-only: a write changes nothing. */
	vmgenid_class.mmio->write(g, 0, 0xffffffffffffffffULL, 8);
	read_id(g, b);
	assert_memory_equal(b, c, 16);

	/* Save with the line up, load into the other device: same ID, line re-driven. */
	assert_int_equal(vmgenid_new_generation(g), 0);
	vmgenid_get(g, a);
	n = vmgenid_class.save(g, saved, sizeof(saved));
	assert_true(n > 0);
	line_level = false;
	assert_int_equal(vmgenid_class.load(g2, saved, (size_t)n), 0);
	assert_true(line_level);
	read_id(g2, b);
	assert_memory_equal(a, b, 16);
	assert_false(line_level);
	assert_int_equal(vmgenid_class.load(g2, saved, (size_t)n - 1), -EINVAL);

	vmgenid_class.free(g);
	vmgenid_class.free(g2);
}

static void test_vmgenid_board(void **state)
{
	struct board_config bc = {.ncpus = 1,
				  .ram_size = 64ULL << 20,
				  .isa = NULL,
				  .mmu_type = "riscv,sv39",
				  .bootargs = "console=ttyS0"};
	static uint8_t fdt[1 << 16];
	uint8_t before[16], after[16];
	struct board *b;
	int node, len;
	const fdt32_t *irq;
	const char *compat;

	assert_int_equal(board_new(&bc, &b), 0);
	board_reset(b);
	board_vmgenid(b, before);
	assert_int_equal(board_vmgenid_new_generation(b), 0);
	board_vmgenid(b, after);
	assert_memory_not_equal(before, after, 16);
	assert_true(board_dt_build(b, fdt, sizeof(fdt)) > 0);
	node = fdt_path_offset(fdt, "/soc/vmgenid@102000");
	assert_true(node >= 0);
	compat = fdt_getprop(fdt, node, "compatible", &len);
	assert_non_null(compat);
	assert_string_equal(compat, "microsoft,vmgenid");
	irq = fdt_getprop(fdt, node, "interrupts", &len);
	assert_non_null(irq);
	assert_int_equal(fdt32_to_cpu(irq[0]), VIRT_VMGENID_IRQ);
	board_free(b);
}

/*
 * The guest's view through the board's memory map: every width at every offset of the window
 * (aligned or not) reads the ID's little-endian bytes, zero past them; every write at every
 * offset and width is ignored (the ID and the line stay) without stopping anything.
 */
static void test_vmgenid_every_access(void **state)
{
	struct board_config bc = {.ncpus = 1,
				  .ram_size = 64ULL << 20,
				  .isa = NULL,
				  .mmu_type = "riscv,sv39",
				  .bootargs = "console=ttyS0"};
	static const unsigned sizes[] = {1, 2, 4, 8};
	uint8_t id[16], again[16];
	struct board *b;
	struct memmap *mm;
	uint64_t before = guest_error_count();

	assert_int_equal(board_new(&bc, &b), 0);
	board_reset(b);
	mm = board_memmap(b);
	board_vmgenid(b, id);
	for (uint64_t off = 0; off < VIRT_VMGENID_SIZE; off++)
		for (unsigned i = 0; i < ARRAY_SIZE(sizes); i++) {
			unsigned size = sizes[i];
			uint64_t v = 0xdeadbeef, want = 0;

			if (off + size > VIRT_VMGENID_SIZE) {
				assert_int_equal(
				    memmap_mmio_read(mm, VIRT_VMGENID_BASE + off, size, &v),
				    -ENOENT);
				continue;
			}
			for (unsigned k = 0; k < size && off + k < 16; k++)
				want |= (uint64_t)id[off + k] << (8 * k);
			assert_int_equal(memmap_mmio_read(mm, VIRT_VMGENID_BASE + off, size, &v),
					 0);
			assert_true(v == want);
		}
	/* Writes: a few offsets per width over the whole window, including the last bytes. */
	for (uint64_t off = 0; off < VIRT_VMGENID_SIZE; off += off < 64 ? 1 : 509)
		for (unsigned i = 0; i < ARRAY_SIZE(sizes); i++)
			if (off + sizes[i] <= VIRT_VMGENID_SIZE)
				assert_int_equal(
				    memmap_mmio_write(mm, VIRT_VMGENID_BASE + off, sizes[i], ~0ULL),
				    0);
	assert_int_equal(memmap_mmio_write(mm, VIRT_VMGENID_BASE + VIRT_VMGENID_SIZE - 8, 8, 0), 0);
	board_vmgenid(b, again);
	assert_memory_equal(id, again, 16);
	assert_true(guest_error_count() > before); /* each write is a guest error */
	board_free(b);
}

/* ---- the guest agent channel against a fake guest agent ---- */

struct fake_guest {
	pthread_mutex_t lock;
	bool running;
	unsigned kicks;
};

static struct fake_guest fg = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void fg_kick(void *opaque)
{
	pthread_mutex_lock(&fg.lock);
	fg.kicks++;
	pthread_mutex_unlock(&fg.lock);
}

static bool fg_running(void *opaque)
{
	bool r;

	pthread_mutex_lock(&fg.lock);
	r = fg.running;
	pthread_mutex_unlock(&fg.lock);
	return r;
}

static void set_running(bool r)
{
	pthread_mutex_lock(&fg.lock);
	fg.running = r;
	pthread_mutex_unlock(&fg.lock);
}

/* Takes one request line the VMM queued for the guest, waiting up to ms. */
static bool take_line(struct virtio_console_backend *be, char *line, size_t cap, unsigned ms)
{
	size_t len = 0;
	uint64_t deadline = clock_ns() + ms * 1000000ULL;

	while (clock_ns() < deadline) {
		uint8_t ch;

		if (be->pending(be->opaque) && be->read(be->opaque, &ch, 1) == 1) {
			if (ch == '\n') {
				line[len] = '\0';
				return true;
			}
			if (len + 1 < cap)
				line[len++] = (char)ch;
			continue;
		}
		struct timespec ts = {0, 2000000};
		nanosleep(&ts, NULL);
	}
	return false;
}

static void say(struct virtio_console_backend *be, const char *s)
{
	be->write(be->opaque, (const uint8_t *)s, strlen(s));
}

static struct agent *agent_setup(struct virtio_console_backend *be)
{
	struct agent_hooks hooks = {.kick = fg_kick, .running = fg_running};
	struct agent *a;

	set_running(true);
	fg.kicks = 0;
	assert_int_equal(agent_new(&hooks, &a), 0);
	agent_console_backend(a, be);
	assert_int_equal(agent_start(a), 0);
	return a;
}

static const uint8_t mac_old[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
static const uint8_t mac_new[6] = {0x52, 0x54, 0x00, 0xc1, 0x00, 0x01};

static void test_agent_set_mac(void **state)
{
	struct virtio_console_backend be;
	struct agent *a = agent_setup(&be);
	struct agent_nic_info ni;
	struct agent_info ai;
	char line[256], reply[300];
	unsigned id;

	agent_info(a, &ai);
	assert_int_equal(ai.state, AGENT_WAITING);
	assert_int_equal(agent_set_mac(a, 0, mac_old, mac_new), 0);
	assert_int_equal(agent_set_mac(a, AGENT_MAX_NICS, mac_old, mac_new), -EINVAL);

	/* No agent yet: pings, one at a time, again after AGENT_RETRY_MS. */
	assert_true(take_line(&be, line, sizeof(line), 2000));
	assert_int_equal(sscanf(line, "%u ping", &id), 1);
	assert_false(take_line(&be, line, sizeof(line), AGENT_RETRY_MS / 2));
	assert_true(take_line(&be, line, sizeof(line), AGENT_RETRY_MS * 2));
	assert_int_equal(sscanf(line, "%u ping", &id), 1);
	assert_true(fg.kicks >= 2);

	/* The tty's echo of a request and noise are not answers. */
	say(&be, "1 ping\r\ngarbage\n\n");
	agent_info(a, &ai);
	assert_int_equal(ai.state, AGENT_WAITING);

	/* The agent starts: hello, then the VMM sends the set-mac. */
	say(&be, "0 hello kumo-agent 1\r\n");
	assert_true(take_line(&be, line, sizeof(line), 2000));
	if (strstr(line, "ping"))
		assert_true(take_line(&be, line, sizeof(line), 2000));
	assert_int_equal(sscanf(line, "%u set-mac", &id), 1);
	assert_non_null(strstr(line, " set-mac 52:54:00:12:34:56 52:54:00:c1:00:01"));
	agent_info(a, &ai);
	assert_int_equal(ai.state, AGENT_CONNECTED);
	assert_string_equal(ai.version, "kumo-agent 1");
	assert_int_equal(agent_nic_info(a, 0, &ni), 0);
	assert_int_equal(ni.state, AGENT_MAC_PENDING);

	/* Answered in two pieces; then the VMM asks for the interfaces. */
	snprintf(reply, sizeof(reply), "%u ok eth0 dh", id);
	say(&be, reply);
	say(&be, "cp=ok\n");
	assert_int_equal(agent_nic_info(a, 0, &ni), 0);
	assert_int_equal(ni.state, AGENT_MAC_DONE);
	assert_string_equal(ni.detail, "eth0 dhcp=ok");
	assert_true(take_line(&be, line, sizeof(line), 2000));
	assert_int_equal(sscanf(line, "%u macs", &id), 1);
	snprintf(reply, sizeof(reply), "%u ok eth0=52:54:00:c1:00:01 lo=00:00:00:00:00:00 bad=zz\n",
		 id);
	say(&be, reply);
	agent_info(a, &ai);
	assert_int_equal(ai.nifaces, 2);
	assert_string_equal(ai.ifaces[0].name, "eth0");
	assert_memory_equal(ai.ifaces[0].mac, mac_new, 6);
	assert_true(ai.last_seen_ns > 0);

	/* An error answer. */
	assert_int_equal(agent_set_mac(a, 1, mac_new, mac_old), 0);
	assert_true(take_line(&be, line, sizeof(line), 2000));
	assert_int_equal(sscanf(line, "%u set-mac", &id), 1);
	snprintf(reply, sizeof(reply), "%u err no interface has 52:54:00:c1:00:01\n", id);
	say(&be, reply);
	assert_int_equal(agent_nic_info(a, 1, &ni), 0);
	assert_int_equal(ni.state, AGENT_MAC_FAILED);
	assert_string_equal(ni.detail, "no interface has 52:54:00:c1:00:01");
	agent_free(a);
}

/* A guest that answers pings from its own thread (agent_ping blocks the caller). */
struct pinger {
	struct virtio_console_backend *be;
	bool answer;
};

static void *pinger_main(void *arg)
{
	struct pinger *p = arg;
	char line[256], reply[64];
	unsigned id;

	if (take_line(p->be, line, sizeof(line), 2000) && sscanf(line, "%u ping", &id) == 1 &&
	    p->answer) {
		snprintf(reply, sizeof(reply), "%u ok pong\n", id);
		say(p->be, reply);
	}
	return NULL;
}

static void test_agent_ping(void **state)
{
	struct virtio_console_backend be;
	struct agent *a = agent_setup(&be);
	struct pinger p = {.be = &be, .answer = true};
	pthread_t t;
	uint64_t rtt = 0;

	pthread_create(&t, NULL, pinger_main, &p);
	assert_int_equal(agent_ping(a, 2000, &rtt), 0);
	pthread_join(t, NULL);
	assert_true(rtt > 0);

	p.answer = false;
	pthread_create(&t, NULL, pinger_main, &p);
	assert_int_equal(agent_ping(a, 300, &rtt), -ETIMEDOUT);
	pthread_join(t, NULL);
	agent_stop(a);
	assert_int_equal(agent_ping(a, 300, &rtt), -ESHUTDOWN);
	agent_free(a);
}

/* While paused, no ping goes out and the timeout does not advance. */
static void test_agent_paused(void **state)
{
	struct virtio_console_backend be;
	struct agent *a;
	struct agent_nic_info ni;
	char line[256];

	set_running(false);
	{
		struct agent_hooks hooks = {.kick = fg_kick, .running = fg_running};

		assert_int_equal(agent_new(&hooks, &a), 0);
	}
	agent_console_backend(a, &be);
	assert_int_equal(agent_start(a), 0);
	assert_int_equal(agent_set_mac(a, 0, mac_old, mac_new), 0);
	assert_false(take_line(&be, line, sizeof(line), 500));
	set_running(true);
	assert_true(take_line(&be, line, sizeof(line), 2000));
	assert_non_null(strstr(line, " ping"));
	assert_int_equal(agent_nic_info(a, 0, &ni), 0);
	assert_int_equal(ni.state, AGENT_MAC_PENDING);
	agent_free(a);
}

/* ---- a hostile guest on the agent channel ---- */

static bool all_printable(const char *s)
{
	for (; *s; s++)
		if (*s < 0x20 || *s > 0x7e)
			return false;
	return true;
}

/* Garbage, endless lines, lines longer than the buffer, bytes that are not ASCII. */
static void test_agent_garbage(void **state)
{
	struct virtio_console_backend be;
	struct agent *a = agent_setup(&be);
	struct agent_info ai;
	static uint8_t junk[1 << 16];
	char line[AGENT_LINE_MAX + 64];
	uint32_t x = 12345;

	/* 64 KiB of noise in odd-sized writes: no state change, no crash. */
	for (size_t i = 0; i < sizeof(junk); i++) {
		x = x * 1103515245u + 12345u;
		junk[i] = (uint8_t)(x >> 16);
	}
	for (size_t off = 0; off < sizeof(junk);) {
		size_t n = (off % 977) + 1;

		if (n > sizeof(junk) - off)
			n = sizeof(junk) - off;
		be.write(be.opaque, junk + off, n);
		off += n;
	}
	say(&be, "\n");
	agent_info(a, &ai);
	assert_int_equal(ai.state, AGENT_WAITING);

	/* A line that never ends (1 MiB), then a hello on the same line: all of it dropped. */
	memset(junk, 'x', sizeof(junk));
	for (int i = 0; i < 16; i++)
		be.write(be.opaque, junk, sizeof(junk));
	say(&be, " 0 hello tail-of-a-long-line\n");
	agent_info(a, &ai);
	assert_int_equal(ai.state, AGENT_WAITING);

	/* One byte longer than the buffer holds: dropped; one that fits: taken. */
	snprintf(line, sizeof(line), "0 hello %0*d\n", AGENT_LINE_MAX - 8, 0);
	assert_int_equal(strlen(line), AGENT_LINE_MAX + 1);
	say(&be, line);
	agent_info(a, &ai);
	assert_int_equal(ai.state, AGENT_WAITING);
	snprintf(line, sizeof(line), "0 hello %0*d\n", AGENT_LINE_MAX - 9, 7);
	say(&be, line);
	agent_info(a, &ai);
	assert_int_equal(ai.state, AGENT_CONNECTED);
	assert_int_equal(strlen(ai.version), sizeof(ai.version) - 1);

	/* Control characters, escape sequences and invalid UTF-8 never reach logs or JSON. */
	static const uint8_t odd[] = "0 hello \x1b[31m\xff\xfe\xc3(\x01 v\0x\n";
	be.write(be.opaque, odd, sizeof(odd) - 1);
	agent_info(a, &ai);
	assert_true(all_printable(ai.version));
	assert_string_equal(ai.version, "?[31m??"
					"?(? v?x");
	agent_free(a);
}

/* Answers with wrong or malformed IDs are ignored; only the request's own ID counts. */
static void test_agent_fake_answers(void **state)
{
	struct virtio_console_backend be;
	struct agent *a = agent_setup(&be);
	struct agent_nic_info ni;
	struct agent_info ai;
	char line[256], reply[1400];
	unsigned id;

	/* An answer before any hello (to a ping it was never sent) counts as contact only. */
	say(&be, "77 ok pong\n");
	agent_info(a, &ai);
	assert_int_equal(ai.state, AGENT_CONNECTED);

	assert_int_equal(agent_set_mac(a, 0, mac_old, mac_new), 0);
	do
		assert_true(take_line(&be, line, sizeof(line), 2000));
	while (!strstr(line, "set-mac"));
	assert_int_equal(sscanf(line, "%u set-mac", &id), 1);

	snprintf(reply, sizeof(reply),
		 "%u ok wrong-id\n%u ok wrong-id\n4294967296 ok too-big\n-1 ok negative\n"
		 "%ux ok suffix\n %u\n%u maybe\n%u\n0 ok zero\n",
		 id + 100, id - 1, id, id, id, id);
	say(&be, reply);
	assert_int_equal(agent_nic_info(a, 0, &ni), 0);
	assert_int_equal(ni.state, AGENT_MAC_PENDING);

	/* The right ID with an error far longer than the detail field: cut, still a string. */
	int n = snprintf(reply, sizeof(reply), "%u err ", id);
	memset(reply + n, 'e', 1000); /* the line still fits in AGENT_LINE_MAX */
	memcpy(reply + n + 1000, "\n", 2);
	say(&be, reply);
	assert_int_equal(agent_nic_info(a, 0, &ni), 0);
	assert_int_equal(ni.state, AGENT_MAC_FAILED);
	assert_int_equal(strlen(ni.detail), sizeof(ni.detail) - 1);

	/* A macs answer with more interfaces than remembered, and names too long. */
	do
		assert_true(take_line(&be, line, sizeof(line), 2000));
	while (!strstr(line, "macs"));
	assert_int_equal(sscanf(line, "%u macs", &id), 1);
	n = snprintf(reply, sizeof(reply), "%u ok averyveryverylongifname=52:54:00:00:00:01", id);
	for (int i = 0; i < 40; i++)
		n += snprintf(reply + n, sizeof(reply) - (size_t)n, " e%d=52:54:00:00:00:%02x", i,
			      i);
	snprintf(reply + n, sizeof(reply) - (size_t)n, "\n");
	say(&be, reply);
	agent_info(a, &ai);
	assert_int_equal(ai.nifaces, AGENT_MAX_IFACES);
	assert_string_equal(ai.ifaces[0].name, "e0");
	for (unsigned i = 0; i < ai.nifaces; i++)
		assert_true(strlen(ai.ifaces[i].name) < sizeof(ai.ifaces[i].name));
	agent_free(a);
}

/* A guest that answers every ping it reads, for a while (pings from several threads). */
struct answerer {
	struct virtio_console_backend *be;
	unsigned ms, answered;
};

static void *answerer_main(void *arg)
{
	struct answerer *p = arg;
	uint64_t end = clock_ns() + p->ms * 1000000ULL;
	char line[256], reply[64];
	unsigned id;

	while (clock_ns() < end)
		if (take_line(p->be, line, sizeof(line), 50) && sscanf(line, "%u ping", &id) == 1) {
			snprintf(reply, sizeof(reply), "%u ok pong\n", id);
			say(p->be, reply);
			p->answered++;
		}
	return NULL;
}

struct ping_call {
	struct agent *a;
	int ret;
};

static void *ping_main(void *arg)
{
	struct ping_call *c = arg;
	uint64_t rtt;

	c->ret = agent_ping(c->a, 2000, &rtt);
	return NULL;
}

/* Pings from several API threads at once take turns; each gets its own answer. */
static void test_agent_concurrent_pings(void **state)
{
	struct virtio_console_backend be;
	struct agent *a = agent_setup(&be);
	struct answerer ans = {.be = &be, .ms = 1500};
	struct ping_call calls[4];
	pthread_t g, t[4];

	say(&be, "0 hello kumo-agent 1\n");
	pthread_create(&g, NULL, answerer_main, &ans);
	for (int i = 0; i < 4; i++) {
		calls[i] = (struct ping_call){.a = a, .ret = 1};
		pthread_create(&t[i], NULL, ping_main, &calls[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(calls[i].ret, 0);
	}
	pthread_join(g, NULL);
	assert_true(ans.answered >= 4);
	agent_free(a);
}

/* A guest that never reads its queue: pings fail fast once it is full; stopping still works. */
static void test_agent_never_reads(void **state)
{
	struct virtio_console_backend be;
	struct agent *a = agent_setup(&be);
	uint64_t rtt, t0 = clock_ns();
	int ret = 0;
	unsigned pings = 0;

	while (pings < 2000) {
		ret = agent_ping(a, 1, &rtt);
		pings++;
		if (ret == -ETIMEDOUT && strstr(err_get(), "full"))
			break;
		assert_int_equal(ret, -ETIMEDOUT);
	}
	assert_non_null(strstr(err_get(), "full"));
	assert_true(pings > 10 && pings < 2000);
	assert_true(be.pending(be.opaque) <= 2048);
	assert_true(clock_ns() - t0 < 10ULL * 1000000000ULL);
	agent_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_vmgenid_generations),
	    cmocka_unit_test(test_vmgenid_board),
	    cmocka_unit_test(test_vmgenid_every_access),
	    cmocka_unit_test(test_agent_set_mac),
	    cmocka_unit_test(test_agent_ping),
	    cmocka_unit_test(test_agent_paused),
	    cmocka_unit_test(test_agent_garbage),
	    cmocka_unit_test(test_agent_fake_answers),
	    cmocka_unit_test(test_agent_concurrent_pings),
	    cmocka_unit_test(test_agent_never_reads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
