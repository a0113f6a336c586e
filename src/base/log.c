/* log.c - stderr logging, the rate-limited guest error log and per-thread error sentences. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "kumo/base.h"

int log_level = LOG_WARN;

static const char *const level_names[] = {"error", "warning", "info", "debug"};

void log_msg(int level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	if (level > log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* One fprintf per line so lines from different threads do not interleave. */
	fprintf(stderr, "kumo: %s: %s\n", level_names[level < 0 ? 0 : level > 3 ? 3 : level], line);
}

static _Atomic uint64_t guest_errors;
static _Atomic uint64_t guest_error_window; /* start of the current 1 s window, ns */
static _Atomic uint32_t guest_error_in_window;

#define GUEST_ERRORS_PER_SECOND 10

void guest_error(const char *fmt, ...)
{
	uint64_t now = clock_ns(), start = atomic_load(&guest_error_window);
	char line[512];
	va_list ap;

	atomic_fetch_add(&guest_errors, 1);
	if (now - start >= 1000000000ULL &&
	    atomic_compare_exchange_strong(&guest_error_window, &start, now))
		atomic_store(&guest_error_in_window, 0);
	if (atomic_fetch_add(&guest_error_in_window, 1) >= GUEST_ERRORS_PER_SECOND)
		return;
	if (log_level < LOG_WARN)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "kumo: guest error: %s\n", line);
}

uint64_t guest_error_count(void)
{
	return atomic_load(&guest_errors);
}

static _Thread_local char err_buf[512];

void err_set(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err_buf, sizeof(err_buf), fmt, ap);
	va_end(ap);
}

const char *err_get(void)
{
	return err_buf;
}

void err_clear(void)
{
	err_buf[0] = '\0';
}
