/*
 * test_api_control.c - the lifecycle table, the API's request handling without a socket
 * (api_handle on a control object that has no VM), and device state round trips through
 * board_save/board_load (the snapshot's devices.bin).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kumo/api.h"
#include "kumo/base.h"
#include "kumo/board.h"
#include "kumo/control.h"
#include "kumo/memmap.h"

/* ---- the state-machine table ---- */

static void test_table_every_refusal_says_why(void **state)
{
	for (int op = 0; op < CONTROL_OP__COUNT; op++)
		for (int s = 0; s < VM_STATE__COUNT; s++) {
			const char *why = "unset";
			bool ok = control_op_allowed(op, s, &why);

			if (ok)
				assert_null(why);
			else
				assert_true(why && strlen(why) > 10);
		}
	assert_false(control_op_allowed(CONTROL_OP__COUNT, VM_STATE_RUNNING, NULL));
	assert_false(control_op_allowed(CONTROL_OP_PAUSE, VM_STATE__COUNT, NULL));
}

static void test_table_lifecycle(void **state)
{
	/* configuring -> running <-> paused -> stopped */
	static const struct {
		enum control_op op;
		bool ok[VM_STATE__COUNT]; /* configuring, running, paused, stopped */
	} want[] = {
		{CONTROL_OP_CONFIGURE, {true, false, false, false}},
		{CONTROL_OP_START, {true, false, false, false}},
		{CONTROL_OP_RESTORE, {true, false, false, false}},
		{CONTROL_OP_PAUSE, {false, true, false, false}},
		{CONTROL_OP_RESUME, {false, false, true, false}},
		{CONTROL_OP_SHUTDOWN, {false, true, true, false}},
		{CONTROL_OP_STOP, {true, true, true, false}},
		{CONTROL_OP_SNAPSHOT, {false, false, true, false}},
		{CONTROL_OP_CONSOLE, {false, true, true, false}},
	};

	for (unsigned i = 0; i < ARRAY_SIZE(want); i++)
		for (int s = 0; s < VM_STATE__COUNT; s++)
			assert_int_equal(control_op_allowed(want[i].op, s, NULL), want[i].ok[s]);
	assert_string_equal(control_state_name(VM_STATE_PAUSED), "paused");
	assert_string_equal(control_op_name(CONTROL_OP_SNAPSHOT), "snapshot");
}

/* ---- api_handle ---- */

struct resp_check {
	int status;
	const char *needle; /* in the body */
};

static void req(struct control *ctl, const char *method, const char *path, const char *body,
		int status, const char *needle)
{
	struct api_response r;

	api_handle(ctl, method, path, NULL, body, body ? strlen(body) : 0, &r);
	if (r.status != status || (needle && (!r.body || !strstr(r.body, needle))))
		fail_msg("%s %s %s: got %d %s, want %d with '%s'", method, path, body ? body : "",
			 r.status, r.body ? r.body : "(no body)", status, needle ? needle : "");
	free(r.body);
}

static void test_api_handle_configuring(void **state)
{
	struct control *ctl;
	struct api_response r;

	assert_int_equal(control_new(-1, 1, &ctl), 0);
	req(ctl, "GET", "/vm", NULL, 200, "\"state\":\"configuring\"");
	req(ctl, "GET", "/nope", NULL, 404, "error");
	req(ctl, "DELETE", "/vm", NULL, 405, "not allowed");
	req(ctl, "GET", "/drives/x", NULL, 405, "/drives/{drive_id}");
	req(ctl, "PUT", "/drives/", "{\"path_on_host\":\"/x\"}", 404, "error");
	req(ctl, "PUT", "/drives/a/b", "{\"path_on_host\":\"/x\"}", 404, "error");
	req(ctl, "PATCH", "/vm", "{\"state\":\"paused\"}", 400, "has not started");
	req(ctl, "PATCH", "/vm", "{\"state\":1}", 400, "must be a string");
	req(ctl, "PATCH", "/vm", "{}", 400, "required");
	req(ctl, "PATCH", "/vm", "{\"state\":\"paused\",\"x\":true}", 400, "unknown field 'x'");
	req(ctl, "PUT", "/actions", "{\"action\":", 400, "malformed JSON");
	req(ctl, "PUT", "/actions", "\"start\"", 400, "malformed JSON");
	req(ctl, "PUT", "/actions", "{\"action\":\"start\"}", 400, "no boot source");
	req(ctl, "PUT", "/actions", "{\"action\":\"shutdown\",\"grace_ms\":-1}", 400, "grace_ms");
	req(ctl, "PUT", "/machine-config", "{\"vcpu_count\":65,\"mem_size_mib\":64}", 400,
	    "out of range");
	req(ctl, "PUT", "/machine-config", "{\"vcpu_count\":3,\"mem_size_mib\":64}", 204, NULL);
	req(ctl, "PUT", "/boot-source", "{\"boot_args\":\"x\"}", 400, "kernel_image_path");
	req(ctl, "PUT", "/boot-source", "{\"kernel_image_path\":\"/k\",\"boot_args\":\"quiet\"}",
	    204, NULL);
	req(ctl, "PUT", "/network-interfaces/n0", "{\"backend\":\"tap\",\"hostfwd\":[\"x\"]}", 400,
	    NULL);
	req(ctl, "PUT", "/network-interfaces/n0", "{\"backend\":\"user\",\"hostfwd\":[1]}", 400,
	    "array of strings");
	req(ctl, "GET", "/vm", NULL, 200, "\"vcpu_count\":3");
	req(ctl, "GET", "/vm", NULL, 200, "\"boot_args\":\"quiet\"");
	req(ctl, "PUT", "/snapshot/create", "{\"snapshot_path\":\"/tmp/x\"}", 400, "not started");
	req(ctl, "GET", "/console", NULL, 400, "not started");
	req(ctl, "PUT", "/console", "ls\n", 400, "not started");
	req(ctl, "DELETE", "/console", NULL, 405, "GET, PUT");
	req(ctl, "PUT", "/snapshot/load", "{\"snapshot_path\":\"/nonexistent-kumo\"}", 400,
	    "not a kumo snapshot");

	/* A body over the limit is refused before it is parsed. */
	api_handle(ctl, "PUT", "/actions", NULL, "{}", API_BODY_MAX + 1, &r);
	assert_int_equal(r.status, 413);
	free(r.body);
	/* Prometheus output: every family once. */
	api_handle(ctl, "GET", "/metrics", &(struct api_query){.format = "prometheus"}, NULL, 0, &r);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "# TYPE kumo_vm_state gauge\n"));
	assert_non_null(strstr(r.body, "kumo_vm_state{state=\"configuring\"} 1\n"));
	assert_null(strstr(strstr(r.body, "# TYPE kumo_vm_state") + 1, "# TYPE kumo_vm_state"));
	free(r.body);
	api_handle(ctl, "GET", "/metrics", &(struct api_query){.format = "yaml"}, NULL, 0, &r);
	assert_int_equal(r.status, 400);
	free(r.body);

	/* stop while configuring ends the wait for a VM; everything is refused afterwards. */
	req(ctl, "PUT", "/actions", "{\"action\":\"stop\"}", 204, NULL);
	assert_null(control_wait_vm(ctl));
	assert_int_equal(control_state(ctl), VM_STATE_STOPPED);
	req(ctl, "PUT", "/actions", "{\"action\":\"stop\"}", 400, "already stopped");
	req(ctl, "PUT", "/machine-config", "{\"vcpu_count\":1,\"mem_size_mib\":64}", 400,
	    "has stopped");
	control_free(ctl);
}

/* ---- device state round trip ---- */

static void nop_irq(void *o, unsigned h, unsigned irq, bool level) {}
static void nop_timer(void *o, unsigned h, uint64_t t) {}
static void nop_event(void *o, enum board_event ev, uint64_t d) {}
static void nop_write(void *o, const uint8_t *b, size_t n) {}

static struct board *new_board(unsigned ncpus)
{
	struct board_config cfg = {.ncpus = ncpus, .ram_size = 64 << 20,
				   .hooks = {.cpu_irq = nop_irq, .cpu_timer = nop_timer,
					     .system_event = nop_event, .console_write = nop_write}};
	struct board *b;

	assert_int_equal(board_new(&cfg, &b), 0);
	board_reset(b);
	return b;
}

static uint64_t rd(struct board *b, uint64_t gpa, unsigned size)
{
	uint64_t v = 0;

	assert_int_equal(memmap_mmio_read(board_memmap(b), gpa, size, &v), 0);
	return v;
}

static void wr(struct board *b, uint64_t gpa, unsigned size, uint64_t v)
{
	assert_int_equal(memmap_mmio_write(board_memmap(b), gpa, size, v), 0);
}

static void test_board_save_load(void **state)
{
	struct board *a = new_board(2), *b = new_board(2), *c = new_board(1);
	void *img = NULL;
	size_t len = 0;
	uint8_t rx[3] = {'k', 'u', 'm'};

	/* UART: scratch, divisor latch, line control, received bytes. */
	wr(a, VIRT_UART0_BASE + 7, 1, 0x5a);
	wr(a, VIRT_UART0_BASE + 3, 1, 0x80);
	wr(a, VIRT_UART0_BASE + 0, 1, 0x0c);
	wr(a, VIRT_UART0_BASE + 3, 1, 0x03);
	wr(a, VIRT_UART0_BASE + 2, 1, 0x01); /* FIFO on: 16 bytes */
	assert_int_equal(board_console_input(a, rx, 3), 3);
	/* PLIC: a priority, an enable, a threshold. CLINT: mtimecmp of hart 1, MSIP of hart 0. */
	wr(a, VIRT_PLIC_BASE + 4 * 10, 4, 5);
	wr(a, VIRT_PLIC_BASE + 0x2000 + 0x80, 4, 1u << 10);
	wr(a, VIRT_PLIC_BASE + 0x200000 + 0x1000, 4, 2);
	wr(a, VIRT_CLINT_BASE + 0x4000 + 8, 8, 0x123456789ULL);
	wr(a, VIRT_CLINT_BASE, 4, 1);

	assert_int_equal(board_save(a, &img, &len), 0);
	assert_true(len > 0);
	assert_int_equal(board_load(b, img, len), 0);
	assert_int_equal(rd(b, VIRT_UART0_BASE + 7, 1), 0x5a);
	wr(b, VIRT_UART0_BASE + 3, 1, 0x80);
	assert_int_equal(rd(b, VIRT_UART0_BASE + 0, 1), 0x0c);
	wr(b, VIRT_UART0_BASE + 3, 1, 0x03);
	assert_int_equal(rd(b, VIRT_UART0_BASE + 0, 1), 'k');
	assert_int_equal(rd(b, VIRT_UART0_BASE + 0, 1), 'u');
	assert_int_equal(rd(b, VIRT_PLIC_BASE + 4 * 10, 4), 5);
	assert_int_equal(rd(b, VIRT_PLIC_BASE + 0x2000 + 0x80, 4), 1u << 10);
	assert_int_equal(rd(b, VIRT_PLIC_BASE + 0x200000 + 0x1000, 4), 2);
	assert_int_equal(rd(b, VIRT_CLINT_BASE + 0x4000 + 8, 8), 0x123456789ULL);
	assert_int_equal(rd(b, VIRT_CLINT_BASE, 4), 1);

	/* A board with another hart count, a truncated image, a flipped name: refused. */
	assert_int_equal(board_load(c, img, len), -EINVAL);
	assert_int_equal(board_load(b, img, len - 8), -EINVAL);
	((char *)img)[0] ^= 1;
	assert_int_equal(board_load(b, img, len), -EINVAL);
	assert_non_null(strstr(err_get(), "does not match"));
	free(img);
	board_free(a);
	board_free(b);
	board_free(c);
}

/* A serial BREAK (the shutdown request's first half): LSR.BI with a NUL, only on an empty FIFO. */
static void test_uart_break(void **state)
{
	struct board *b = new_board(1);
	uint8_t s = 's';

	wr(b, VIRT_UART0_BASE + 2, 1, 0x01); /* FIFO on */
	assert_int_equal(board_console_room(b), 16);
	assert_true(board_console_break(b));
	assert_false(board_console_break(b)); /* the NUL is still in the FIFO */
	assert_int_equal(board_console_room(b), 15);
	assert_int_equal(rd(b, VIRT_UART0_BASE + 5, 1) & 0x11, 0x11); /* BI | DR */
	assert_int_equal(rd(b, VIRT_UART0_BASE + 5, 1) & 0x10, 0);    /* BI clears on read */
	assert_int_equal(rd(b, VIRT_UART0_BASE + 0, 1), 0);
	assert_int_equal(board_console_room(b), 16);
	assert_int_equal(board_console_input(b, &s, 1), 1);
	assert_false(board_console_break(b));
	assert_int_equal(rd(b, VIRT_UART0_BASE + 0, 1), 's');
	assert_true(board_console_break(b));
	board_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_every_refusal_says_why),
		cmocka_unit_test(test_table_lifecycle),
		cmocka_unit_test(test_api_handle_configuring),
		cmocka_unit_test(test_board_save_load),
		cmocka_unit_test(test_uart_break),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
