/* clock.c - host clocks and the guest time base (10 MHz ticks since the VM's epoch). */
#include <stdatomic.h>
#include <time.h>

#include "kumo/base.h"

uint64_t clock_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

uint64_t clock_realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static _Atomic uint64_t epoch_ns;   /* host monotonic ns at guest tick 0 */
static _Atomic int64_t tick_offset; /* added to the ticks derived from the epoch */

#define NS_PER_TICK (1000000000ULL / KUMO_TIMEBASE_HZ)

static uint64_t epoch(void)
{
	uint64_t e = atomic_load_explicit(&epoch_ns, memory_order_relaxed);

	if (unlikely(!e)) {
		uint64_t zero = 0, now = clock_ns();

		/* First caller fixes the epoch; racing callers adopt the winner's. */
		if (atomic_compare_exchange_strong(&epoch_ns, &zero, now))
			return now;
		return zero;
	}
	return e;
}

uint64_t clock_guest_ticks(void)
{
	uint64_t e = epoch();

	return (clock_ns() - e) / NS_PER_TICK +
	       (uint64_t)atomic_load_explicit(&tick_offset, memory_order_relaxed);
}

void clock_guest_set_offset(int64_t ticks)
{
	atomic_store(&tick_offset, ticks);
}

int64_t clock_guest_get_offset(void)
{
	return atomic_load(&tick_offset);
}

uint64_t clock_guest_ticks_to_ns(uint64_t ticks)
{
	uint64_t e = epoch();
	int64_t off = atomic_load_explicit(&tick_offset, memory_order_relaxed);
	uint64_t rel = ticks - (uint64_t)off;

	if ((int64_t)off > 0 && ticks < (uint64_t)off)
		return e;
	if (rel > (UINT64_MAX - e) / NS_PER_TICK)
		return UINT64_MAX;
	return e + rel * NS_PER_TICK;
}
