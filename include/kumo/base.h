/*
 * base.h - logging, error messages, time and small helpers shared by every layer.
 *
 * Usage: library code reports a failure by calling err_set("...") with one human sentence and
 * returning -errno; main() prints err_get() as the single error line. Guest mistakes go to
 * guest_error(), which is rate-limited and never stops the VMM (QEMU's LOG_GUEST_ERROR).
 * Everything here is thread-safe unless a comment says otherwise.
 */
#ifndef KUMO_BASE_H
#define KUMO_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define ALIGN_UP(x, a) (((x) + (a) - 1) & ~((__typeof__(x))(a) - 1))
#define ALIGN_DOWN(x, a) ((x) & ~((__typeof__(x))(a) - 1))
#define KUMO_PRINTF(f, a) __attribute__((format(printf, f, a)))

enum log_level { LOG_ERR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* Messages at or below this level reach stderr. Set once by main() before threads start. */
extern int log_level;

void log_msg(int level, const char *fmt, ...) KUMO_PRINTF(2, 3);
#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) \
	do { \
		if (unlikely(log_level >= LOG_DEBUG)) \
			log_msg(LOG_DEBUG, __VA_ARGS__); \
	} while (0)

/*
 * Something the guest did wrong (bad MMIO, malformed descriptors, ...). Rate-limited to a few
 * lines per second; counted in guest_error_count. Never fatal.
 */
void guest_error(const char *fmt, ...) KUMO_PRINTF(1, 2);
uint64_t guest_error_count(void);

/*
 * The calling thread's last error sentence (no trailing newline, no "kumo:" prefix).
 * err_set() overwrites it; err_get() returns "" when nothing was set.
 */
void err_set(const char *fmt, ...) KUMO_PRINTF(1, 2);
const char *err_get(void);
void err_clear(void);

/* Host monotonic clock in nanoseconds. */
uint64_t clock_ns(void);
/* Host wall clock in nanoseconds since the Unix epoch. */
uint64_t clock_realtime_ns(void);

/*
 * Guest time base: ticks of KUMO_TIMEBASE_HZ since the VM's clock epoch. This is what the
 * `time` CSR and the ACLINT mtime register read. clock_guest_set_offset() shifts it (restore).
 */
#define KUMO_TIMEBASE_HZ 10000000ULL
uint64_t clock_guest_ticks(void);
void clock_guest_set_offset(int64_t ticks);
/* The offset last set with clock_guest_set_offset() (0 at start). */
int64_t clock_guest_get_offset(void);
/* Host monotonic ns at which the guest clock reaches `ticks` (saturating). */
uint64_t clock_guest_ticks_to_ns(uint64_t ticks);

/* Parses sizes like "512M", "2G", "1048576", "64k" into bytes; -EINVAL on junk or overflow. */
int parse_size(const char *s, uint64_t *out);

/*
 * Names an anonymous mapping "[anon:NAME]" in /proc/PID/maps and smaps (Linux 5.17+ with
 * CONFIG_ANON_VMA_NAME; elsewhere nothing happens). A named mapping also never merges with a
 * neighbour, so its size stays its own.
 */
void mem_name(void *addr, size_t len, const char *name);

/*
 * The host's transparent huge pages (/sys/kernel/mm/transparent_hugepage/enabled): 1 when
 * MADV_HUGEPAGE gets them ("always" or "madvise"), 0 when they are off ("never"), -1 when the
 * kernel does not say (built without them).
 */
int mem_thp_mode(void);

#endif
