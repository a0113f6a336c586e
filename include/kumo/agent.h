/*
 * agent.h - the VMM's end of the guest agent channel: a line protocol spoken over a second
 * virtio-console device (the guest sees it as an hvc tty) with a small agent inside the guest
 * (guest/kumo-agent, a busybox shell script). docs/guest-agent.md describes the protocol.
 *
 * Usage (the VMM, src/vmm/vm.c): agent_new() with hooks into the VM, agent_console_backend()
 * gives the host side for virtio_console_new(), agent_start() once the VM runs, agent_stop()
 * before the devices go away, agent_free(). Clones (src/vmm/control.c): after a restore that
 * changed a NIC's MAC, agent_set_mac() queues "set-mac OLD NEW"; the agent's thread first
 * pings until the guest agent answers, then sends each command and retries it until it is
 * answered, for at most AGENT_TIMEOUT_MS of running guest time (a paused VM's clock does
 * not count). Without an answer the command ends "timeout" with a warning in the log; an
 * agent that says hello later still gets it.
 *
 * Threads: the back end's callbacks run on the I/O thread; the agent's own thread sends and
 * retries; agent_set_mac/agent_probe/agent_ping/agent_*_info may be called from any thread
 * except the I/O thread (agent_ping blocks). One mutex inside protects everything.
 */
#ifndef KUMO_AGENT_H
#define KUMO_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_TIMEOUT_MS 60000 /* running guest time a command may wait for its answer */
#define AGENT_RETRY_MS 1000    /* a request without an answer is sent again after this */
#define AGENT_MAX_NICS 8
#define AGENT_MAX_IFACES 16 /* guest interfaces remembered from the last "macs" answer */
#define AGENT_LINE_MAX 1024 /* longer lines from the guest are dropped */

struct agent;
struct virtio_console_backend;

struct agent_hooks {
	void *opaque;
	/* Input for the guest is waiting: kick the device's receive queue. Any thread. */
	void (*kick)(void *opaque);
	/* False while the VM is paused or stopping: the agent's timeouts do not advance. */
	bool (*running)(void *opaque);
};

enum agent_state {
	AGENT_WAITING,	    /* nothing heard from the guest agent yet */
	AGENT_CONNECTED,    /* the guest agent said hello or answered */
	AGENT_UNRESPONSIVE, /* a command timed out without any answer */
};

enum agent_mac_state {
	AGENT_MAC_NONE,	   /* no change asked for this NIC */
	AGENT_MAC_PENDING, /* queued or sent, no answer yet */
	AGENT_MAC_DONE,	   /* the guest interface now has the new MAC */
	AGENT_MAC_FAILED,  /* the agent answered with an error (detail says which) */
	AGENT_MAC_TIMEOUT, /* no answer within AGENT_TIMEOUT_MS */
};

struct agent_iface {
	char name[16]; /* IFNAMSIZ */
	uint8_t mac[6];
};

struct agent_info {
	enum agent_state state;
	uint64_t last_seen_ns; /* clock_ns() of the last line from the guest agent, 0: never */
	char version[32];      /* from its hello line, "" if not seen */
	unsigned nifaces;      /* interfaces from the last "macs" answer */
	struct agent_iface ifaces[AGENT_MAX_IFACES];
};

struct agent_nic_info {
	enum agent_mac_state state;
	uint8_t old_mac[6], new_mac[6];
	char detail[96]; /* the agent's answer (interface name or error), "" if none */
};

/* 0 or -errno (err_set says why). hooks is copied. */
int agent_new(const struct agent_hooks *hooks, struct agent **out);
/* The host side of the agent's virtio-console device (callbacks run on the I/O thread). */
void agent_console_backend(struct agent *a, struct virtio_console_backend *be);
/* Starts the agent's thread. 0 or -errno. */
int agent_start(struct agent *a);
/* Stops and joins the thread; safe when not started or twice. Wakes agent_ping() waiters. */
void agent_stop(struct agent *a);
void agent_free(struct agent *a);

/* Queues "set-mac OLD NEW" for NIC `nic` (replaces an earlier one). 0 or -EINVAL. */
int agent_set_mac(struct agent *a, unsigned nic, const uint8_t old_mac[6],
		  const uint8_t new_mac[6]);
/* Pings until the guest agent answers (or the timeout), then asks for its interfaces. */
void agent_probe(struct agent *a);
/*
 * Liveness: sends a ping and waits up to timeout_ms (wall time) for its answer. 0 with
 * *rtt_us set, -ETIMEDOUT without an answer, -ESHUTDOWN when the agent stopped.
 */
int agent_ping(struct agent *a, unsigned timeout_ms, uint64_t *rtt_us);

void agent_info(struct agent *a, struct agent_info *out);
int agent_nic_info(struct agent *a, unsigned nic, struct agent_nic_info *out);
const char *agent_state_name(enum agent_state s);
const char *agent_mac_state_name(enum agent_mac_state s);
/* "52:54:00:12:34:56" into out (at least 18 bytes). */
void agent_format_mac(const uint8_t mac[6], char *out);

#endif
