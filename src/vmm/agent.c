/*
 * agent.c - the VMM's end of the guest agent channel (see kumo/agent.h and
 * docs/guest-agent.md).
 *
 * Requests are "ID COMMAND ARGS\n" with ID > 0; answers are "ID ok DETAIL\n" or
 * "ID err MESSAGE\n"; the guest agent announces itself with "0 hello VERSION\n". Lines that
 * are neither (a tty echoing before the agent switched it to raw mode) are ignored.
 *
 * One request is in flight at a time. Until the guest agent has answered once, the request
 * is a ping, sent again every AGENT_RETRY_MS while the previous one has been taken by the
 * guest (so an absent agent finds at most a few pings queued when it starts). Once it is
 * connected, commands are sent once: virtio-console does not lose lines, and a second
 * set-mac behind a slow DHCP run would only wait in line. A hello while a command is in
 * flight (the agent restarted) sends it again.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kumo/agent.h"
#include "kumo/base.h"
#include "kumo/virtio.h"

#define AGENT_OUT_MAX 2048 /* bytes queued for the guest */
#define AGENT_TICK_MS 100  /* the thread's period while work is outstanding */
#define MS 1000000ULL

enum req_kind { REQ_NONE, REQ_PING, REQ_SET_MAC, REQ_MACS };

struct agent {
	struct agent_hooks hooks;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* work queued, an answer arrived, or stopping (CLOCK_MONOTONIC) */
	pthread_t thread;
	bool started, stop;

	uint8_t out[AGENT_OUT_MAX]; /* requests not yet taken by the guest */
	size_t out_len;
	char line[AGENT_LINE_MAX]; /* guest output up to the next newline */
	size_t line_len;
	bool line_overflow; /* drop the rest of an overlong line */

	enum agent_state state;
	uint64_t last_seen_ns;
	char version[32];
	struct agent_iface ifaces[AGENT_MAX_IFACES];
	unsigned nifaces;
	struct agent_nic_info nics[AGENT_MAX_NICS];

	bool probe;	  /* ping until the guest agent answers */
	bool macs_wanted; /* ask for the guest's interfaces when nothing else is queued */
	uint32_t next_id;
	struct {
		enum req_kind kind;
		unsigned nic;
		uint32_t first_id, id; /* answers to any id in [first_id, id] count */
		uint64_t sent_at;      /* active_ns when last sent */
		uint64_t began;	       /* active_ns when first sent */
	} cur;
	bool blocked;		/* a request did not fit: the guest is not reading its queue */
	uint64_t blocked_since; /* active_ns when the first request did not fit */
	uint64_t active_ns;	/* running guest time while work was outstanding */
	uint64_t work_began;	/* active_ns when the current wait for a connection began */

	bool ping_busy;	  /* an agent_ping() caller owns ping_* (callers take turns) */
	uint32_t ping_id; /* agent_ping()'s request, 0: none */
	bool ping_answered;
	uint64_t ping_sent_ns, ping_rtt_ns;
};

const char *agent_state_name(enum agent_state s)
{
	static const char *const names[] = {"waiting", "connected", "unresponsive"};

	return s < ARRAY_SIZE(names) ? names[s] : "unknown";
}

const char *agent_mac_state_name(enum agent_mac_state s)
{
	static const char *const names[] = {"none", "pending", "done", "failed", "timeout"};

	return s < ARRAY_SIZE(names) ? names[s] : "unknown";
}

void agent_format_mac(const uint8_t mac[6], char *out)
{
	snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4],
		 mac[5]);
}

static bool parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char end;

	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
		   &end) != 6)
		return false;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	return true;
}

/* ---- the back end (I/O thread) ---- */

static size_t be_pending(void *opaque)
{
	struct agent *a = opaque;
	size_t n;

	pthread_mutex_lock(&a->lock);
	n = a->out_len;
	pthread_mutex_unlock(&a->lock);
	return n;
}

static size_t be_read(void *opaque, uint8_t *buf, size_t n)
{
	struct agent *a = opaque;

	pthread_mutex_lock(&a->lock);
	if (n > a->out_len)
		n = a->out_len;
	memcpy(buf, a->out, n);
	memmove(a->out, a->out + n, a->out_len - n);
	a->out_len -= n;
	pthread_mutex_unlock(&a->lock);
	return n;
}

/* Lock held. Queues one request line; false when it does not fit (sent on a later tick). */
static bool send_line(struct agent *a, const char *fmt, ...) KUMO_PRINTF(2, 3);
static bool send_line(struct agent *a, const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf) || a->out_len + (size_t)n > AGENT_OUT_MAX)
		return false;
	memcpy(a->out + a->out_len, buf, (size_t)n);
	a->out_len += (size_t)n;
	a->hooks.kick(a->hooks.opaque);
	return true;
}

/* Lock held: "eth0=52:54:00:12:34:56 lo=00:00:00:00:00:00" from a macs answer. */
static void parse_ifaces(struct agent *a, char *s)
{
	char *save = NULL;

	a->nifaces = 0;
	for (char *tok = strtok_r(s, " ", &save); tok && a->nifaces < AGENT_MAX_IFACES;
	     tok = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(tok, '=');
		struct agent_iface *f = &a->ifaces[a->nifaces];

		if (!eq || eq == tok || (size_t)(eq - tok) >= sizeof(f->name) ||
		    !parse_mac(eq + 1, f->mac))
			continue;
		memcpy(f->name, tok, (size_t)(eq - tok));
		f->name[eq - tok] = '\0';
		a->nifaces++;
	}
}

/* Lock held: a set-mac answer for NIC `nic`. */
static void mac_answer(struct agent *a, unsigned nic, bool ok, const char *detail)
{
	struct agent_nic_info *n = &a->nics[nic];
	char old[18], new[18];

	agent_format_mac(n->old_mac, old);
	agent_format_mac(n->new_mac, new);
	snprintf(n->detail, sizeof(n->detail), "%s", detail);
	if (ok) {
		n->state = AGENT_MAC_DONE;
		log_info("guest agent: NIC %u: MAC %s -> %s inside the guest (%s)", nic, old, new,
			 n->detail);
	} else {
		n->state = AGENT_MAC_FAILED;
		log_warn("guest agent: NIC %u: could not change the guest's MAC %s to %s: %s", nic,
			 old, new, n->detail); /* the guest's words, cut to the field's size */
	}
	a->macs_wanted = true;
}

/* Lock held: one line from the guest, without its newline. */
static void handle_line(struct agent *a, char *line)
{
	char *save = NULL, *id_s, *status, *rest, *end;
	unsigned long id;

	id_s = strtok_r(line, " ", &save);
	status = strtok_r(NULL, " ", &save);
	rest = strtok_r(NULL, "", &save);
	if (!id_s || !status)
		return;
	id = strtoul(id_s, &end, 10);
	if (*end || id > UINT32_MAX)
		return;
	if (!rest)
		rest = "";
	if (id == 0 && !strcmp(status, "hello")) {
		bool was = a->state == AGENT_CONNECTED;

		snprintf(a->version, sizeof(a->version), "%s", rest);
		a->state = AGENT_CONNECTED;
		a->last_seen_ns = clock_ns();
		a->probe = false;
		a->macs_wanted = true;
		/* A command in flight went to an agent that is gone: send it again. */
		if (a->cur.kind != REQ_NONE)
			a->cur.kind = REQ_NONE;
		/* Late agent: the commands that timed out still get their chance. */
		for (unsigned i = 0; i < AGENT_MAX_NICS; i++)
			if (a->nics[i].state == AGENT_MAC_TIMEOUT)
				a->nics[i].state = AGENT_MAC_PENDING;
		a->work_began = a->active_ns;
		a->blocked = false;
		if (!was)
			log_info("guest agent connected (%s)", a->version);
		pthread_cond_broadcast(&a->cond);
		return;
	}
	if (id == 0 || (strcmp(status, "ok") && strcmp(status, "err")))
		return; /* not an answer: an echo or noise */
	if (a->state != AGENT_CONNECTED)
		log_info("guest agent connected");
	a->state = AGENT_CONNECTED;
	a->last_seen_ns = clock_ns();
	if (a->ping_id && id == a->ping_id) {
		a->ping_answered = true;
		a->ping_rtt_ns = clock_ns() - a->ping_sent_ns;
		a->ping_id = 0;
	}
	if (a->cur.kind != REQ_NONE && id >= a->cur.first_id && id <= a->cur.id) {
		switch (a->cur.kind) {
		case REQ_PING:
			a->probe = false;
			a->macs_wanted = true;
			break;
		case REQ_SET_MAC:
			mac_answer(a, a->cur.nic, !strcmp(status, "ok"), rest);
			break;
		case REQ_MACS:
			a->macs_wanted = false;
			if (!strcmp(status, "ok"))
				parse_ifaces(a, rest);
			break;
		default:
			break;
		}
		a->cur.kind = REQ_NONE;
	}
	pthread_cond_broadcast(&a->cond);
}

/*
 * The guest's bytes end up in log lines (version, error details) and in GET /vm's JSON, which
 * must be UTF-8: anything but printable ASCII is kept as '?' (the protocol is ASCII).
 */
static char line_char(uint8_t b)
{
	return b >= 0x20 && b < 0x7f ? (char)b : '?';
}

static void be_write(void *opaque, const uint8_t *buf, size_t n)
{
	struct agent *a = opaque;

	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < n; i++) {
		char ch = buf[i] == '\n' || buf[i] == '\r' ? (char)buf[i] : line_char(buf[i]);

		if (ch == '\n') {
			if (!a->line_overflow) {
				a->line[a->line_len] = '\0';
				handle_line(a, a->line);
			}
			a->line_len = 0;
			a->line_overflow = false;
		} else if (ch == '\r') {
			continue;
		} else if (a->line_len + 1 < AGENT_LINE_MAX) {
			a->line[a->line_len++] = ch;
		} else {
			a->line_overflow = true;
		}
	}
	pthread_mutex_unlock(&a->lock);
}

void agent_console_backend(struct agent *a, struct virtio_console_backend *be)
{
	*be = (struct virtio_console_backend){
	    .opaque = a, .pending = be_pending, .read = be_read, .write = be_write};
}

/* ---- the agent's thread ---- */

/* Lock held. */
static bool have_work(struct agent *a)
{
	if (a->probe || a->cur.kind != REQ_NONE)
		return true;
	for (unsigned i = 0; i < AGENT_MAX_NICS; i++)
		if (a->nics[i].state == AGENT_MAC_PENDING)
			return true;
	return a->macs_wanted && a->state == AGENT_CONNECTED;
}

/* Lock held: starts request `kind` (a new logical request, or resends the current one). */
static void send_req(struct agent *a, enum req_kind kind, unsigned nic, bool resend)
{
	uint32_t id = a->next_id;
	char old[18], new[18];
	bool sent;

	switch (kind) {
	case REQ_PING:
		sent = send_line(a, "%u ping\n", id);
		break;
	case REQ_SET_MAC:
		agent_format_mac(a->nics[nic].old_mac, old);
		agent_format_mac(a->nics[nic].new_mac, new);
		sent = send_line(a, "%u set-mac %s %s\n", id, old, new);
		break;
	default:
		sent = send_line(a, "%u macs\n", id);
	}
	if (!sent) {
		if (!a->blocked)
			a->blocked_since = a->active_ns;
		a->blocked = true;
		return;
	}
	a->blocked = false;
	a->next_id = id + 1 ? id + 1 : 1;
	if (!resend) {
		a->cur.kind = kind;
		a->cur.nic = nic;
		a->cur.first_id = id;
		a->cur.began = a->active_ns;
	}
	a->cur.id = id;
	a->cur.sent_at = a->active_ns;
}

/* Lock held: nothing answered within AGENT_TIMEOUT_MS of running time. */
static void give_up(struct agent *a, const char *why)
{
	bool told = false;

	for (unsigned i = 0; i < AGENT_MAX_NICS; i++) {
		struct agent_nic_info *n = &a->nics[i];
		char old[18], new[18];

		if (n->state != AGENT_MAC_PENDING)
			continue;
		n->state = AGENT_MAC_TIMEOUT;
		agent_format_mac(n->old_mac, old);
		agent_format_mac(n->new_mac, new);
		log_warn("guest agent: %s within %u s: NIC %u keeps MAC %s inside the guest (its "
			 "device has %s)",
			 why, AGENT_TIMEOUT_MS / 1000, i, old, new);
		told = true;
	}
	/* Only a probe: a guest without an agent is not a problem until it is asked for something.
	 */
	if (!told)
		log_info("guest agent: %s within %u s", why, AGENT_TIMEOUT_MS / 1000);
	a->probe = false;
	a->macs_wanted = false;
	a->cur.kind = REQ_NONE;
	a->blocked = false;
	a->state = AGENT_UNRESPONSIVE;
}

/* Lock held: one step of the state machine. */
static void step(struct agent *a)
{
	uint64_t timeout = AGENT_TIMEOUT_MS * MS;

	if (a->state != AGENT_CONNECTED) {
		if (a->active_ns - a->work_began > timeout) {
			give_up(a, "no guest agent answered");
			return;
		}
		/* A ping again when the last one was taken by the guest and is overdue. */
		if (a->cur.kind == REQ_NONE)
			send_req(a, REQ_PING, 0, false);
		else if (!a->out_len && a->active_ns - a->cur.sent_at >= AGENT_RETRY_MS * MS)
			send_req(a, a->cur.kind, a->cur.nic, true);
		return;
	}
	if (a->cur.kind != REQ_NONE) {
		if (a->active_ns - a->cur.began > timeout) {
			if (a->cur.kind == REQ_SET_MAC)
				a->nics[a->cur.nic].state =
				    AGENT_MAC_PENDING; /* give_up reports it */
			give_up(a, "the guest agent did not answer a command");
		}
		return;
	}
	/*
	 * A connected agent that stopped reading its queue (full of GET /agent pings, say): the
	 * command cannot even be sent; it times out like an unanswered one.
	 */
	if (a->blocked && a->active_ns - a->blocked_since > timeout) {
		give_up(a, "the guest agent did not read its channel");
		return;
	}
	for (unsigned i = 0; i < AGENT_MAX_NICS; i++)
		if (a->nics[i].state == AGENT_MAC_PENDING) {
			send_req(a, REQ_SET_MAC, i, false);
			return;
		}
	if (a->macs_wanted)
		send_req(a, REQ_MACS, 0, false);
}

static void *agent_thread(void *arg)
{
	struct agent *a = arg;
	uint64_t last = clock_ns();

	pthread_mutex_lock(&a->lock);
	while (!a->stop) {
		uint64_t now = clock_ns();
		bool work = have_work(a);
		struct timespec ts;

		/* Time counts only while the guest runs (a paused VM cannot answer). */
		pthread_mutex_unlock(&a->lock);
		bool running = a->hooks.running(a->hooks.opaque);
		pthread_mutex_lock(&a->lock);
		if (running && work)
			a->active_ns += now - last;
		last = now;
		if (!work) {
			a->work_began = a->active_ns;
			pthread_cond_wait(&a->cond, &a->lock);
			last = clock_ns();
			continue;
		}
		if (running)
			step(a);
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += AGENT_TICK_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&a->cond, &a->lock, &ts);
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

/* ---- public ---- */

int agent_new(const struct agent_hooks *hooks, struct agent **out)
{
	struct agent *a;
	pthread_condattr_t ca;

	if (!hooks || !hooks->kick || !hooks->running) {
		err_set("guest agent: incomplete hooks");
		return -EINVAL;
	}
	a = calloc(1, sizeof(*a));
	if (!a) {
		err_set("out of memory creating the guest agent channel");
		return -ENOMEM;
	}
	a->hooks = *hooks;
	a->next_id = 1;
	pthread_mutex_init(&a->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&a->cond, &ca);
	pthread_condattr_destroy(&ca);
	*out = a;
	return 0;
}

int agent_start(struct agent *a)
{
	int ret;

	if (a->started)
		return 0;
	ret = pthread_create(&a->thread, NULL, agent_thread, a);
	if (ret) {
		err_set("cannot start the guest agent thread: %s", strerror(ret));
		return -ret;
	}
	a->started = true;
	return 0;
}

void agent_stop(struct agent *a)
{
	if (!a)
		return;
	pthread_mutex_lock(&a->lock);
	a->stop = true;
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->lock);
	if (a->started) {
		pthread_join(a->thread, NULL);
		a->started = false;
	}
}

void agent_free(struct agent *a)
{
	if (!a)
		return;
	agent_stop(a);
	pthread_cond_destroy(&a->cond);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

int agent_set_mac(struct agent *a, unsigned nic, const uint8_t old_mac[6], const uint8_t new_mac[6])
{
	if (nic >= AGENT_MAX_NICS) {
		err_set("guest agent: NIC %u is out of range", nic);
		return -EINVAL;
	}
	pthread_mutex_lock(&a->lock);
	a->nics[nic] = (struct agent_nic_info){.state = AGENT_MAC_PENDING};
	memcpy(a->nics[nic].old_mac, old_mac, 6);
	memcpy(a->nics[nic].new_mac, new_mac, 6);
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->lock);
	return 0;
}

void agent_probe(struct agent *a)
{
	pthread_mutex_lock(&a->lock);
	a->probe = true;
	if (a->state == AGENT_UNRESPONSIVE)
		a->state = AGENT_WAITING;
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->lock);
}

/* Lock held: waits on a->cond until woken or until deadline (clock_ns()). */
static void cond_wait_until(struct agent *a, uint64_t deadline)
{
	uint64_t now = clock_ns(), left = deadline > now ? deadline - now : 0;
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)(left / 1000000000ULL);
	ts.tv_nsec += (long)(left % 1000000000ULL);
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&a->cond, &a->lock, &ts);
}

int agent_ping(struct agent *a, unsigned timeout_ms, uint64_t *rtt_us)
{
	uint64_t deadline = clock_ns() + timeout_ms * MS;
	int ret = -ETIMEDOUT;

	pthread_mutex_lock(&a->lock);
	/* One ping at a time: a second caller waits for the first, within its own timeout. */
	while (a->ping_busy && !a->stop && clock_ns() < deadline)
		cond_wait_until(a, deadline);
	if (a->stop) {
		pthread_mutex_unlock(&a->lock);
		err_set("the VM is stopping");
		return -ESHUTDOWN;
	}
	if (a->ping_busy) {
		pthread_mutex_unlock(&a->lock);
		err_set("the guest agent did not answer within %u ms (another ping was waiting)",
			timeout_ms);
		return -ETIMEDOUT;
	}
	a->ping_busy = true;
	a->ping_id = a->next_id;
	a->next_id = a->next_id + 1 ? a->next_id + 1 : 1;
	a->ping_answered = false;
	a->ping_sent_ns = clock_ns();
	if (!send_line(a, "%u ping\n", a->ping_id)) {
		a->ping_id = 0;
		a->ping_busy = false;
		pthread_cond_broadcast(&a->cond);
		pthread_mutex_unlock(&a->lock);
		err_set("the guest agent channel is full: the guest is not reading it");
		return -ETIMEDOUT;
	}
	while (!a->ping_answered && !a->stop && clock_ns() < deadline)
		cond_wait_until(a, deadline);
	a->ping_busy = false;
	pthread_cond_broadcast(&a->cond); /* the next caller's turn */
	if (a->ping_answered) {
		*rtt_us = a->ping_rtt_ns / 1000;
		ret = 0;
	} else {
		a->ping_id = 0;
		if (a->stop) {
			err_set("the VM is stopping");
			ret = -ESHUTDOWN;
		} else {
			err_set("the guest agent did not answer within %u ms", timeout_ms);
		}
	}
	pthread_mutex_unlock(&a->lock);
	return ret;
}

void agent_info(struct agent *a, struct agent_info *out)
{
	pthread_mutex_lock(&a->lock);
	*out = (struct agent_info){
	    .state = a->state, .last_seen_ns = a->last_seen_ns, .nifaces = a->nifaces};
	memcpy(out->version, a->version, sizeof(out->version));
	memcpy(out->ifaces, a->ifaces, sizeof(out->ifaces));
	pthread_mutex_unlock(&a->lock);
}

int agent_nic_info(struct agent *a, unsigned nic, struct agent_nic_info *out)
{
	if (nic >= AGENT_MAX_NICS)
		return -ENOENT;
	pthread_mutex_lock(&a->lock);
	*out = a->nics[nic];
	pthread_mutex_unlock(&a->lock);
	return 0;
}
