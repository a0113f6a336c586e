/*
 * net_slirp.c - user-mode networking through libslirp: a TCP/IP stack in the VMM that turns
 * the guest's connections into host sockets, so no privileges are needed. The guest network
 * is 10.0.2.0/24: the guest gets 10.0.2.15 by DHCP, the gateway 10.0.2.2 is the host (its
 * loopback included), 10.0.2.3 answers DNS with the host's resolver. hostfwd= entries forward
 * host ports to the guest.
 *
 * Threads. libslirp is not thread-safe, so every call into it happens under `lock`. The
 * back end's own thread runs the poll loop: slirp_pollfds_fill, poll() (plus an eventfd that
 * wakes it), slirp_pollfds_poll, expired timers. Frames from the guest come in on the I/O
 * thread (send -> slirp_input) and wake the poll loop, since they may have opened sockets.
 * Frames for the guest leave through slirp's send_packet callback, on whichever thread is
 * inside slirp at the time, into the client's bounded queue. While the client cannot take
 * more, the loop stops polling slirp's sockets (the host's TCP windows close) and only runs
 * timers, until rx_ready() wakes it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <slirp/libslirp.h>

#include "devices/backend/net.h"
#include "kumo/base.h"

struct slirp_timer {
	struct slirp_timer *next;
	SlirpTimerCb cb;
	void *cb_opaque;
	int64_t expire_ms; /* -1: not armed */
};

struct net_slirp {
	struct net_backend be;
	pthread_mutex_t lock;          /* every call into slirp; the timer list; the pollfd array */
	Slirp *slirp;
	struct net_client client;
	struct slirp_timer *timers;
	struct pollfd *pfd;
	unsigned npfd, cap_pfd;
	int wake_fd;                   /* eventfd: new work for the poll loop, or stop */
	pthread_t thread;
	bool started;
	atomic_bool stop;
};

static int64_t now_ms(void)
{
	return (int64_t)(clock_ns() / 1000000);
}

static void wake(struct net_slirp *s)
{
	uint64_t one = 1;

	/* A full counter already means "wake up": the write may fail harmlessly. */
	if (write(s->wake_fd, &one, sizeof(one)) < 0) {
		return;
	}
}

/* ---- SlirpCb (called with s->lock held, from inside slirp) ---- */

static ssize_t cb_send_packet(const void *buf, size_t len, void *opaque)
{
	struct net_slirp *s = opaque;

	if (s->client.receive)
		s->client.receive(s->client.opaque, buf, len);
	return (ssize_t)len; /* a dropped frame is a lost frame on the wire */
}

static void cb_guest_error(const char *msg, void *opaque)
{
	guest_error("slirp: %s", msg);
}

static int64_t cb_clock_get_ns(void *opaque)
{
	return (int64_t)clock_ns();
}

static void *cb_timer_new(SlirpTimerCb cb, void *cb_opaque, void *opaque)
{
	struct net_slirp *s = opaque;
	struct slirp_timer *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->cb = cb;
	t->cb_opaque = cb_opaque;
	t->expire_ms = -1;
	t->next = s->timers;
	s->timers = t;
	return t;
}

static void cb_timer_free(void *timer, void *opaque)
{
	struct net_slirp *s = opaque;

	for (struct slirp_timer **pp = &s->timers; *pp; pp = &(*pp)->next) {
		if (*pp == timer) {
			*pp = ((struct slirp_timer *)timer)->next;
			free(timer);
			return;
		}
	}
}

static void cb_timer_mod(void *timer, int64_t expire_time, void *opaque)
{
	struct net_slirp *s = opaque;

	((struct slirp_timer *)timer)->expire_ms = expire_time;
	wake(s);
}

static void cb_register_poll_fd(int fd, void *opaque)
{
}

static void cb_unregister_poll_fd(int fd, void *opaque)
{
}

static void cb_notify(void *opaque)
{
	wake(opaque);
}

static const SlirpCb slirp_callbacks = {
	.send_packet = cb_send_packet,
	.guest_error = cb_guest_error,
	.clock_get_ns = cb_clock_get_ns,
	.timer_new = cb_timer_new,
	.timer_free = cb_timer_free,
	.timer_mod = cb_timer_mod,
	.register_poll_fd = cb_register_poll_fd,
	.unregister_poll_fd = cb_unregister_poll_fd,
	.notify = cb_notify,
};

/* ---- the poll loop ---- */

static int add_poll(int fd, int events, void *opaque)
{
	struct net_slirp *s = opaque;
	short ev = 0;

	if (s->npfd == s->cap_pfd) {
		unsigned cap = s->cap_pfd ? s->cap_pfd * 2 : 64;
		struct pollfd *p = realloc(s->pfd, cap * sizeof(*p));

		if (!p)
			return -1; /* slirp then skips this socket for this round */
		s->pfd = p;
		s->cap_pfd = cap;
	}
	if (events & SLIRP_POLL_IN)
		ev |= POLLIN;
	if (events & SLIRP_POLL_OUT)
		ev |= POLLOUT;
	if (events & SLIRP_POLL_PRI)
		ev |= POLLPRI;
	s->pfd[s->npfd] = (struct pollfd){.fd = fd, .events = ev};
	return (int)s->npfd++;
}

static int get_revents(int idx, void *opaque)
{
	struct net_slirp *s = opaque;
	short re;
	int ev = 0;

	if (idx < 0 || (unsigned)idx >= s->npfd)
		return 0;
	re = s->pfd[idx].revents;
	if (re & POLLIN)
		ev |= SLIRP_POLL_IN;
	if (re & POLLOUT)
		ev |= SLIRP_POLL_OUT;
	if (re & POLLPRI)
		ev |= SLIRP_POLL_PRI;
	if (re & (POLLERR | POLLNVAL))
		ev |= SLIRP_POLL_ERR;
	if (re & POLLHUP)
		ev |= SLIRP_POLL_HUP;
	return ev;
}

/* Runs expired timers (lock held); returns ms until the next one, or -1. */
static int64_t run_timers(struct net_slirp *s)
{
	int64_t now = now_ms(), next = -1;
	bool again = true;

	/* A callback may add, re-arm or free timers: restart the walk after each one. */
	while (again) {
		again = false;
		for (struct slirp_timer *t = s->timers; t; t = t->next) {
			if (t->expire_ms >= 0 && t->expire_ms <= now) {
				t->expire_ms = -1;
				t->cb(t->cb_opaque);
				again = true;
				break;
			}
		}
	}
	for (struct slirp_timer *t = s->timers; t; t = t->next)
		if (t->expire_ms >= 0 && (next < 0 || t->expire_ms - now < next))
			next = t->expire_ms - now;
	return next;
}

static void *slirp_thread(void *opaque)
{
	struct net_slirp *s = opaque;

	pthread_mutex_lock(&s->lock);
	while (!atomic_load(&s->stop)) {
		uint32_t timeout = 1000; /* ms */
		int64_t next = run_timers(s);
		bool polling = !s->client.can_receive || s->client.can_receive(s->client.opaque);
		int r;

		s->npfd = 0;
		add_poll(s->wake_fd, SLIRP_POLL_IN, s);
		if (polling)
			slirp_pollfds_fill(s->slirp, &timeout, add_poll, s);
		if (next >= 0 && next < timeout)
			timeout = (uint32_t)next;
		pthread_mutex_unlock(&s->lock);
		r = poll(s->pfd, s->npfd, (int)timeout);
		pthread_mutex_lock(&s->lock);
		if (r > 0 && (s->pfd[0].revents & POLLIN)) {
			uint64_t v;

			if (read(s->wake_fd, &v, sizeof(v)) < 0) {
				/* EAGAIN: another reader drained it */
			}
		}
		if (polling)
			slirp_pollfds_poll(s->slirp, r < 0, get_revents, s);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* ---- ops ---- */

static int slirp_be_start(struct net_backend *be, const struct net_client *client)
{
	struct net_slirp *s = (struct net_slirp *)be;
	int ret;

	pthread_mutex_lock(&s->lock);
	s->client = *client;
	pthread_mutex_unlock(&s->lock);
	ret = pthread_create(&s->thread, NULL, slirp_thread, s);
	if (ret) {
		err_set("cannot start the slirp thread: %s", strerror(ret));
		return -ret;
	}
	s->started = true;
	return 0;
}

static int slirp_be_send(struct net_backend *be, const struct iovec *iov, unsigned iovcnt)
{
	struct net_slirp *s = (struct net_slirp *)be;

	if (iovcnt != 1 || iov[0].iov_len > NET_MAX_FRAME)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	slirp_input(s->slirp, iov[0].iov_base, (int)iov[0].iov_len);
	pthread_mutex_unlock(&s->lock);
	wake(s); /* the frame may have opened a socket the loop must now poll */
	return 0;
}

static void slirp_be_rx_ready(struct net_backend *be)
{
	wake((struct net_slirp *)be);
}

static void slirp_be_free(struct net_backend *be)
{
	struct net_slirp *s = (struct net_slirp *)be;

	if (s->started) {
		atomic_store(&s->stop, true);
		wake(s);
		pthread_join(s->thread, NULL);
	}
	if (s->slirp)
		slirp_cleanup(s->slirp); /* frees its timers through cb_timer_free */
	while (s->timers) {
		struct slirp_timer *t = s->timers;

		s->timers = t->next;
		free(t);
	}
	free(s->pfd);
	if (s->wake_fd >= 0)
		close(s->wake_fd);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static const struct net_backend_ops slirp_ops = {
	.name = "user",
	.start = slirp_be_start,
	.send = slirp_be_send,
	.rx_ready = slirp_be_rx_ready,
	.free = slirp_be_free,
};

int net_slirp_new(const struct net_spec *spec, struct net_backend **out)
{
	struct net_slirp *s = calloc(1, sizeof(*s));
	SlirpConfig cfg = {0};

	if (!s) {
		err_set("out of memory creating the slirp back end");
		return -ENOMEM;
	}
	s->be.ops = &slirp_ops;
	pthread_mutex_init(&s->lock, NULL);
	s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->wake_fd < 0) {
		int e = errno;

		err_set("cannot create an eventfd for slirp: %s", strerror(e));
		s->wake_fd = -1;
		slirp_be_free(&s->be);
		return -e;
	}
	cfg.version = 1;
	cfg.restricted = 0;
	cfg.in_enabled = true;
	inet_pton(AF_INET, "10.0.2.0", &cfg.vnetwork);
	inet_pton(AF_INET, "255.255.255.0", &cfg.vnetmask);
	inet_pton(AF_INET, "10.0.2.2", &cfg.vhost);
	inet_pton(AF_INET, "10.0.2.15", &cfg.vdhcp_start);
	inet_pton(AF_INET, "10.0.2.3", &cfg.vnameserver);
	cfg.in6_enabled = false;
	cfg.vhostname = "kumo";
	s->slirp = slirp_new(&cfg, &slirp_callbacks, s);
	if (!s->slirp) {
		err_set("libslirp could not create its network stack");
		slirp_be_free(&s->be);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < spec->nfwd; i++) {
		const struct net_hostfwd *f = &spec->fwd[i];
		struct in_addr host = {.s_addr = htonl(INADDR_ANY)}, guest;

		if (f->host_addr[0])
			inet_pton(AF_INET, f->host_addr, &host);
		inet_pton(AF_INET, f->guest_addr[0] ? f->guest_addr : "10.0.2.15", &guest);
		errno = 0;
		if (slirp_add_hostfwd(s->slirp, f->udp, host, f->host_port, guest, f->guest_port) < 0) {
			int e = errno ? errno : EADDRINUSE;

			err_set("--net: cannot forward host %s port %s:%u to the guest: %s",
				f->udp ? "udp" : "tcp", f->host_addr[0] ? f->host_addr : "0.0.0.0",
				f->host_port, strerror(e));
			slirp_be_free(&s->be);
			return -e;
		}
	}
	*out = &s->be;
	return 0;
}
