/*
 * net.h - virtio-net and its host network back ends (libslirp user-mode networking, TAP).
 *
 * Usage (the VMM):
 *
 *     struct net_spec spec;
 *     net_spec_parse("user,hostfwd=tcp:127.0.0.1:2222-:22", &spec);   // kumo run --net
 *     net_backend_new(&spec, &be);                 // opens the TAP / creates the slirp stack
 *     virtio_net_new(mm, be, spec.mac, &dev);      // the device owns be from here on
 *     ... the board wraps dev in a virtio-mmio transport, the I/O thread serves its queues ...
 *
 * A back end is a small ops table, so unit tests plug in a memory back end: `send` takes a
 * frame from the guest, `start` hands the back end a struct net_client through which frames
 * for the guest arrive. Frames are plain Ethernet frames (no virtio-net header, no FCS).
 *
 * Threads. send() runs on the VMM's I/O thread (virtio-net's transmit queue). A back end
 * delivers received frames from its own thread (slirp's poll loop, the TAP reader) through
 * client->receive(), which never blocks: the device queues a bounded number of frames and
 * kicks its receive queue. While client->can_receive() is false (the guest posts no receive
 * buffers and the queue is full), back ends stop reading from the host (TCP flow control then
 * slows the far end down) until the device calls ops->rx_ready(). Frames a back end produces
 * anyway (ARP or DHCP replies, timers) beyond the bound are dropped and counted.
 */
#ifndef KUMO_NET_H
#define KUMO_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct memmap;
struct virtio_dev;

#define NET_MAX_FRAME 65550  /* largest frame a back end may deliver (bytes) */
#define NET_MAX_HOSTFWD 16   /* hostfwd= entries per --net option */
#define NET_IFNAME_MAX 16    /* IFNAMSIZ */

/* Where frames for the guest go; provided by the device (virtio-net) or a test. */
struct net_client {
	void *opaque;
	/*
	 * A frame for the guest (len <= NET_MAX_FRAME). Any back-end thread; never blocks.
	 * Returns 0, or -ENOBUFS when the frame was dropped (queue full), -EINVAL for a bad length.
	 */
	int (*receive)(void *opaque, const void *frame, size_t len);
	/* False while the guest cannot take more frames: stop reading the host. Any thread. */
	bool (*can_receive)(void *opaque);
};

struct net_backend;

struct net_backend_ops {
	const char *name; /* "user", "tap", "memory" */
	/* Starts delivering frames to `client` (copied). Set-up thread, once. 0 or -errno. */
	int (*start)(struct net_backend *be, const struct net_client *client);
	/*
	 * One frame from the guest to the host network (iov: the frame without the virtio-net
	 * header). I/O thread. Returns 0 or -errno (the frame is dropped; the guest's protocols
	 * retransmit).
	 */
	int (*send)(struct net_backend *be, const struct iovec *iov, unsigned iovcnt);
	/* The client can take frames again after can_receive() said false. Any thread. */
	void (*rx_ready)(struct net_backend *be);
	/* Stops the back end's thread and frees it. No client call happens after it returns. */
	void (*free)(struct net_backend *be);
};

struct net_backend {
	const struct net_backend_ops *ops;
};

/* ---- --net option ---- */

enum net_kind { NET_USER = 1, NET_TAP = 2 };

struct net_hostfwd {
	bool udp;                /* false: tcp */
	char host_addr[64];      /* numeric IPv4 address, "" means 0.0.0.0 (all) */
	uint16_t host_port;      /* 1..65535 */
	char guest_addr[64];     /* numeric IPv4 address, "" means the DHCP address 10.0.2.15 */
	uint16_t guest_port;     /* 1..65535 */
};

struct net_spec {
	enum net_kind kind;
	uint8_t mac[6];          /* default 52:54:00:12:34:56 */
	char ifname[NET_IFNAME_MAX]; /* tap: the interface name */
	struct net_hostfwd fwd[NET_MAX_HOSTFWD];
	unsigned nfwd;
};

/*
 * Parses a --net value: "user[,hostfwd=tcp|udp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT]...
 * [,mac=XX:XX:XX:XX:XX:XX]" or "tap,ifname=NAME[,mac=...]". Returns 0, or -EINVAL with
 * err_set() naming the bad part. Any thread.
 */
int net_spec_parse(const char *arg, struct net_spec *out);

/*
 * Creates the back end a spec names (slirp stack with its port forwards, or the TAP device).
 * A port already in use, a missing /dev/net/tun or a permission problem fails here with one
 * err_set() sentence. The back end's thread starts with ops->start. Set-up thread.
 */
int net_backend_new(const struct net_spec *spec, struct net_backend **out);

/* libslirp back end (net_slirp.c): guest 10.0.2.15/24, gateway 10.0.2.2, DNS 10.0.2.3. */
int net_slirp_new(const struct net_spec *spec, struct net_backend **out);
/* TAP back end (net_tap.c): /dev/net/tun with IFF_TAP | IFF_NO_PI. */
int net_tap_new(const struct net_spec *spec, struct net_backend **out);

/* ---- the device (devices/virtio/net.c) ---- */

/* Queue indexes (virtio 1.2 §5.1.2): one pair, no control queue. */
#define VIRTIO_NET_RXQ 0
#define VIRTIO_NET_TXQ 1

/* Frames queued for the guest before back ends are told to stop reading, and the hard cap. */
#define VIRTIO_NET_RX_HIGH 128
#define VIRTIO_NET_RX_MAX 256

/* Counters beyond struct virtio_stats. Relaxed atomics; any thread reads. */
struct virtio_net_stats {
	uint64_t rx_frames;   /* frames delivered to the guest */
	uint64_t tx_frames;   /* frames sent to the back end */
	uint64_t rx_dropped;  /* frames dropped: queue full, or guest buffer too small */
	uint64_t tx_errors;   /* frames the back end refused */
};

/*
 * virtio-net (virtio 1.2 §5.1) with MAC and STATUS (link up). Takes ownership of `be`
 * (freed by virtio_dev_free, also on failure here) and starts it. Set-up thread.
 */
int virtio_net_new(struct memmap *mm, struct net_backend *be, const uint8_t mac[6],
		   struct virtio_dev **out);
/* Snapshot of the device's counters. Any thread. */
void virtio_net_get_stats(struct virtio_dev *d, struct virtio_net_stats *out);

#endif
