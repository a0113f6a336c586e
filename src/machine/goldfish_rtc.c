/*
 * goldfish_rtc.c - the Android goldfish real-time clock ("google,goldfish-rtc"), as Linux's
 * drivers/rtc/rtc-goldfish.c and QEMU's virt machine use it. Time is nanoseconds since the Unix
 * epoch: the host wall clock plus an offset the guest sets by writing the time.
 *
 *   0x00 TIME_LOW         R: samples the time, returns bits 31:0 and latches bits 63:32
 *                         W: sets the time to (staged TIME_HIGH << 32) | value
 *   0x04 TIME_HIGH        R: the latched bits 63:32   W: stages bits 63:32 for TIME_LOW
 *   0x08 ALARM_LOW        W: alarm = (ALARM_HIGH << 32) | value, and arms it
 *   0x0c ALARM_HIGH       W: bits 63:32 of the next alarm
 *   0x10 IRQ_ENABLED      bit 0: the alarm interrupt reaches the irq line
 *   0x14 CLEAR_ALARM      W: disarms the alarm
 *   0x18 ALARM_STATUS     R: 1 while an alarm is armed
 *   0x1c CLEAR_INTERRUPT  W: clears the alarm interrupt
 *
 * An armed alarm is watched by a thread of this device that sleeps on a condition variable
 * until the alarm is due; when the alarm time is already past at arming it fires at once.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "machine/devices.h"

enum {
	RTC_TIME_LOW = 0x00,
	RTC_TIME_HIGH = 0x04,
	RTC_ALARM_LOW = 0x08,
	RTC_ALARM_HIGH = 0x0c,
	RTC_IRQ_ENABLED = 0x10,
	RTC_CLEAR_ALARM = 0x14,
	RTC_ALARM_STATUS = 0x18,
	RTC_CLEAR_INTERRUPT = 0x1c,
};

/* Longest sleep of the alarm thread, so host wall-clock jumps are noticed. */
#define RTC_MAX_SLEEP_NS 1000000000ULL

struct goldfish_rtc {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* signalled when the alarm or `stop` changes */
	pthread_t thread;
	struct goldfish_rtc_config cfg;
	int64_t offset_ns;      /* guest time - host wall clock */
	uint32_t time_high;     /* latched by a TIME_LOW read */
	uint32_t time_high_set; /* staged by a TIME_HIGH write */
	bool time_high_staged;
	uint32_t alarm_high;
	uint64_t alarm_ns;
	bool alarm_armed;
	bool irq_enabled;
	bool irq_pending;
	bool irq_level;
	bool stop;
	uint64_t alarms_fired; /* counter */
};

static uint64_t rtc_now(const struct goldfish_rtc *r)
{
	return clock_realtime_ns() + (uint64_t)r->offset_ns;
}

static void rtc_update_irq(struct goldfish_rtc *r)
{
	bool level = r->irq_pending && r->irq_enabled;

	if (level != r->irq_level) {
		r->irq_level = level;
		irq_line_set(&r->cfg.irq, level);
	}
}

/* Fires the alarm when due. Lock held. */
static void rtc_check_alarm(struct goldfish_rtc *r)
{
	if (!r->alarm_armed || rtc_now(r) < r->alarm_ns)
		return;
	r->alarm_armed = false;
	r->irq_pending = true;
	r->alarms_fired++;
	rtc_update_irq(r);
}

static void *rtc_alarm_thread(void *arg)
{
	struct goldfish_rtc *r = arg;

	pthread_mutex_lock(&r->lock);
	while (!r->stop) {
		if (!r->alarm_armed) {
			pthread_cond_wait(&r->cond, &r->lock);
			continue;
		}
		rtc_check_alarm(r);
		if (!r->alarm_armed)
			continue;
		uint64_t wait = r->alarm_ns - rtc_now(r);
		uint64_t deadline = clock_ns() + (wait < RTC_MAX_SLEEP_NS ? wait : RTC_MAX_SLEEP_NS);
		struct timespec ts = {.tv_sec = (time_t)(deadline / 1000000000ULL),
				      .tv_nsec = (long)(deadline % 1000000000ULL)};

		pthread_cond_timedwait(&r->cond, &r->lock, &ts);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

static uint64_t rtc_read(void *opaque, uint64_t off, unsigned size)
{
	struct goldfish_rtc *r = opaque;
	uint64_t val = 0, now;

	if (size != 4 || off % 4) {
		guest_error("goldfish-rtc: %u-byte read at %#" PRIx64 " ignored", size, off);
		return 0;
	}
	pthread_mutex_lock(&r->lock);
	switch (off) {
	case RTC_TIME_LOW:
		now = rtc_now(r);
		r->time_high = (uint32_t)(now >> 32);
		val = (uint32_t)now;
		break;
	case RTC_TIME_HIGH:
		val = r->time_high;
		break;
	case RTC_ALARM_LOW:
		val = (uint32_t)r->alarm_ns;
		break;
	case RTC_ALARM_HIGH:
		val = r->alarm_high;
		break;
	case RTC_IRQ_ENABLED:
		val = r->irq_enabled;
		break;
	case RTC_ALARM_STATUS:
		val = r->alarm_armed;
		break;
	default:
		break;
	}
	pthread_mutex_unlock(&r->lock);
	return val;
}

static void rtc_write(void *opaque, uint64_t off, uint64_t val64, unsigned size)
{
	struct goldfish_rtc *r = opaque;
	uint32_t val = (uint32_t)val64;
	uint64_t t;

	if (size != 4 || off % 4) {
		guest_error("goldfish-rtc: %u-byte write at %#" PRIx64 " ignored", size, off);
		return;
	}
	pthread_mutex_lock(&r->lock);
	switch (off) {
	case RTC_TIME_LOW:
		t = r->time_high_staged ? r->time_high_set : (uint32_t)(rtc_now(r) >> 32);
		t = t << 32 | val;
		r->time_high_staged = false;
		r->offset_ns = (int64_t)(t - clock_realtime_ns());
		pthread_cond_signal(&r->cond);
		break;
	case RTC_TIME_HIGH:
		r->time_high_set = val;
		r->time_high_staged = true;
		break;
	case RTC_ALARM_LOW:
		r->alarm_ns = (uint64_t)r->alarm_high << 32 | val;
		r->alarm_armed = true;
		rtc_check_alarm(r);
		pthread_cond_signal(&r->cond);
		break;
	case RTC_ALARM_HIGH:
		r->alarm_high = val;
		break;
	case RTC_IRQ_ENABLED:
		r->irq_enabled = val & 1;
		rtc_update_irq(r);
		break;
	case RTC_CLEAR_ALARM:
		r->alarm_armed = false;
		pthread_cond_signal(&r->cond);
		break;
	case RTC_CLEAR_INTERRUPT:
		r->irq_pending = false;
		rtc_update_irq(r);
		break;
	default:
		guest_error("goldfish-rtc: write to unknown register %#" PRIx64, off);
		break;
	}
	pthread_mutex_unlock(&r->lock);
}

int goldfish_rtc_new(const struct goldfish_rtc_config *cfg, struct goldfish_rtc **out)
{
	struct goldfish_rtc *r = calloc(1, sizeof(*r));
	pthread_condattr_t attr;
	int err;

	if (!r) {
		err_set("out of memory creating the RTC");
		return -ENOMEM;
	}
	r->cfg = *cfg;
	pthread_mutex_init(&r->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* deadlines come from clock_ns() */
	pthread_cond_init(&r->cond, &attr);
	pthread_condattr_destroy(&attr);
	err = pthread_create(&r->thread, NULL, rtc_alarm_thread, r);
	if (err) {
		err_set("cannot start the RTC alarm thread: %s", strerror(err));
		goto out_free;
	}
	*out = r;
	return 0;

out_free:
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	free(r);
	return -err;
}

static void goldfish_rtc_free(void *dev)
{
	struct goldfish_rtc *r = dev;

	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->stop = true;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
	pthread_join(r->thread, NULL);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

/* The clock keeps its time across a reset, like a battery-backed RTC; the alarm does not. */
static void goldfish_rtc_reset(void *dev)
{
	struct goldfish_rtc *r = dev;

	pthread_mutex_lock(&r->lock);
	r->alarm_armed = false;
	r->alarm_ns = 0;
	r->alarm_high = 0;
	r->time_high_staged = false;
	r->irq_enabled = false;
	r->irq_pending = false;
	r->irq_level = false;
	irq_line_set(&r->cfg.irq, false);
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

/* Snapshot image. The guest's clock keeps its offset from the host wall clock. */
struct goldfish_rtc_state {
	int64_t offset_ns;
	uint64_t alarm_ns, alarms_fired;
	uint32_t time_high, time_high_set, alarm_high;
	uint8_t time_high_staged, alarm_armed, irq_enabled, irq_pending;
};

static int goldfish_rtc_save(void *dev, void *buf, size_t cap)
{
	struct goldfish_rtc *r = dev;
	struct goldfish_rtc_state s = {0};

	if (cap < sizeof(s))
		return -ENOSPC;
	pthread_mutex_lock(&r->lock);
	s.offset_ns = r->offset_ns;
	s.alarm_ns = r->alarm_ns;
	s.alarms_fired = r->alarms_fired;
	s.time_high = r->time_high;
	s.time_high_set = r->time_high_set;
	s.alarm_high = r->alarm_high;
	s.time_high_staged = r->time_high_staged;
	s.alarm_armed = r->alarm_armed;
	s.irq_enabled = r->irq_enabled;
	s.irq_pending = r->irq_pending;
	pthread_mutex_unlock(&r->lock);
	memcpy(buf, &s, sizeof(s));
	return (int)sizeof(s);
}

static int goldfish_rtc_load(void *dev, const void *buf, size_t len)
{
	struct goldfish_rtc *r = dev;
	struct goldfish_rtc_state s;

	if (len != sizeof(s))
		return -EINVAL;
	memcpy(&s, buf, sizeof(s));
	pthread_mutex_lock(&r->lock);
	r->offset_ns = s.offset_ns;
	r->alarm_ns = s.alarm_ns;
	r->alarms_fired = s.alarms_fired;
	r->time_high = s.time_high;
	r->time_high_set = s.time_high_set;
	r->alarm_high = s.alarm_high;
	r->time_high_staged = s.time_high_staged;
	r->alarm_armed = s.alarm_armed;
	r->irq_enabled = s.irq_enabled;
	r->irq_pending = s.irq_pending;
	r->irq_level = false;
	irq_line_set(&r->cfg.irq, false);
	rtc_update_irq(r);
	pthread_cond_signal(&r->cond); /* the alarm thread re-reads the deadline */
	pthread_mutex_unlock(&r->lock);
	return 0;
}

static const struct mmio_ops goldfish_rtc_mmio = {.read = rtc_read, .write = rtc_write};

/* Linux Documentation/devicetree/bindings/rtc/trivial-rtc.yaml lists google,goldfish-rtc. */
static int goldfish_rtc_dt_node(void *dev, void *fdt, const struct dt_ctx *ctx, uint64_t base,
				uint64_t size)
{
	struct goldfish_rtc *r = dev;
	int node, err;

	node = dt_add_soc_node(fdt, "rtc", base, size);
	if (node < 0)
		return node;
	err = fdt_setprop_string(fdt, node, "compatible", "google,goldfish-rtc");
	if (!err)
		err = dt_set_plic_irq(fdt, node, ctx, r->cfg.plic_irq);
	return err;
}

const struct vdev_class goldfish_rtc_class = {
	.name = "rtc",
	.mmio = &goldfish_rtc_mmio,
	.reset = goldfish_rtc_reset,
	.dt_node = goldfish_rtc_dt_node,
	.free = goldfish_rtc_free,
	.save = goldfish_rtc_save,
	.load = goldfish_rtc_load,
};
