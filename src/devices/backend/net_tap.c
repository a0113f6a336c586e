/*
 * net_tap.c - a TAP interface as the guest's network: frames go to and come from the host
 * kernel's tap device (/dev/net/tun with IFF_TAP | IFF_NO_PI: plain Ethernet frames, no
 * packet-information prefix, no offloads). The interface must exist and be usable by this
 * user (ip tuntap add dev NAME mode tap user USER), or the VMM needs CAP_NET_ADMIN.
 *
 * Threads: the back end's thread reads the tap fd (poll with a wake eventfd) and hands frames
 * to the client; while the client cannot take more it stops reading (the host kernel queues,
 * then drops). send() writes on the I/O thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "devices/backend/net.h"
#include "kumo/base.h"

struct net_tap {
	struct net_backend be;
	int fd;                  /* the tap queue, non-blocking */
	int wake_fd;             /* eventfd: rx_ready or stop */
	struct net_client client;
	pthread_t thread;
	bool started;
	atomic_bool stop;
	char ifname[IFNAMSIZ];    /* the interface the kernel attached us to */
	uint8_t buf[NET_MAX_FRAME];
};

static void tap_wake(struct net_tap *t)
{
	uint64_t one = 1;

	if (write(t->wake_fd, &one, sizeof(one)) < 0) {
		return; /* a full counter already means "wake up" */
	}
}

static void *tap_thread(void *opaque)
{
	struct net_tap *t = opaque;
	bool gone = false; /* the interface was deleted: the tap fd only reports errors now */

	while (!atomic_load(&t->stop)) {
		bool room = !gone && t->client.can_receive(t->client.opaque);
		struct pollfd pfd[2] = {{.fd = t->wake_fd, .events = POLLIN},
					{.fd = room ? t->fd : -1, .events = POLLIN}};
		uint64_t v;

		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		if (pfd[0].revents & POLLIN) {
			if (read(t->wake_fd, &v, sizeof(v)) < 0) {
				/* EAGAIN: nothing to drain */
			}
		}
		if (room && (pfd[1].revents & (POLLERR | POLLHUP | POLLNVAL))) {
			/*
			 * The tun driver answers poll with POLLERR once the interface is gone (ip link
			 * del). It never comes back to this fd: stop polling it rather than spin. The
			 * guest's frames to it fail in send() and are counted as transmit errors.
			 */
			log_warn("--net tap: interface %s is gone; the guest's network is cut off", t->ifname);
			gone = true;
			continue;
		}
		if (!room || !(pfd[1].revents & POLLIN))
			continue;
		/* A batch, then back to poll so a stop or a full queue is noticed. */
		for (int i = 0; i < 64 && t->client.can_receive(t->client.opaque); i++) {
			ssize_t n = read(t->fd, t->buf, sizeof(t->buf));

			if (n <= 0)
				break;
			t->client.receive(t->client.opaque, t->buf, (size_t)n);
		}
	}
	return NULL;
}

static int tap_start(struct net_backend *be, const struct net_client *client)
{
	struct net_tap *t = (struct net_tap *)be;
	int ret;

	t->client = *client;
	ret = pthread_create(&t->thread, NULL, tap_thread, t);
	if (ret) {
		err_set("cannot start the tap thread: %s", strerror(ret));
		return -ret;
	}
	t->started = true;
	return 0;
}

static int tap_send(struct net_backend *be, const struct iovec *iov, unsigned iovcnt)
{
	struct net_tap *t = (struct net_tap *)be;
	ssize_t n;

	do
		n = writev(t->fd, iov, (int)iovcnt);
	while (n < 0 && errno == EINTR);
	/* EAGAIN: the host's queue is full; the frame is lost like on a congested wire. */
	return n < 0 ? -errno : 0;
}

static void tap_rx_ready(struct net_backend *be)
{
	tap_wake((struct net_tap *)be);
}

static void tap_free(struct net_backend *be)
{
	struct net_tap *t = (struct net_tap *)be;

	if (t->started) {
		atomic_store(&t->stop, true);
		tap_wake(t);
		pthread_join(t->thread, NULL);
	}
	if (t->fd >= 0)
		close(t->fd);
	if (t->wake_fd >= 0)
		close(t->wake_fd);
	free(t);
}

static const struct net_backend_ops tap_ops = {
	.name = "tap",
	.start = tap_start,
	.send = tap_send,
	.rx_ready = tap_rx_ready,
	.free = tap_free,
};

int net_tap_new(const struct net_spec *spec, struct net_backend **out)
{
	struct net_tap *t = calloc(1, sizeof(*t));
	struct ifreq ifr = {0};
	int e;

	if (!t) {
		err_set("out of memory creating the tap back end");
		return -ENOMEM;
	}
	t->be.ops = &tap_ops;
	t->wake_fd = -1;
	t->fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (t->fd < 0) {
		e = errno;
		err_set("--net tap: cannot open /dev/net/tun: %s%s", strerror(e),
			e == ENOENT ? " (no tun driver on this host)" : "");
		goto out_free;
	}
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	memcpy(ifr.ifr_name, spec->ifname, sizeof(ifr.ifr_name) < sizeof(spec->ifname) ? sizeof(ifr.ifr_name) : sizeof(spec->ifname));
	ifr.ifr_name[IFNAMSIZ - 1] = 0;
	if (ioctl(t->fd, TUNSETIFF, &ifr) < 0) {
		e = errno;
		err_set("--net tap: cannot attach to interface %s: %s%s", spec->ifname, strerror(e),
			e == EPERM || e == EBUSY
				? " (create it for this user first: ip tuntap add dev NAME mode tap user USER)"
				: "");
		goto out_free;
	}
	memcpy(t->ifname, ifr.ifr_name, sizeof(t->ifname));
	t->ifname[IFNAMSIZ - 1] = 0;
	t->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (t->wake_fd < 0) {
		e = errno;
		err_set("cannot create an eventfd for the tap back end: %s", strerror(e));
		goto out_free;
	}
	*out = &t->be;
	return 0;
out_free:
	tap_free(&t->be);
	return -e;
}
