/*
 * iothread.h - the VMM's I/O thread: one host thread running an epoll loop over file
 * descriptors (virtio notify eventfds, host back ends such as TAP or slirp sockets).
 *
 * Usage: iothread_new(), iothread_add_fd() for each source with a callback, iothread_start()
 * when the VM starts, iothread_stop() (joins the thread) before the devices are freed,
 * iothread_free(). Callbacks run on the I/O thread, one at a time, with no lock held; they
 * must not block for long on anything but their own host I/O (a slow disk stalls only the
 * I/O thread, never a vCPU).
 *
 * Threads: iothread_add_fd/iothread_del_fd may be called from any thread, including from a
 * callback; after iothread_del_fd() returns on the I/O thread the callback is not called
 * again (from another thread, at most one call already under way may still finish).
 */
#ifndef KUMO_IOTHREAD_H
#define KUMO_IOTHREAD_H

#include <stdint.h>

struct iothread;

/* events: EPOLLIN/EPOLLOUT/... bits that were reported for fd. */
typedef void iothread_fn(void *opaque, int fd, uint32_t events);

int iothread_new(struct iothread **out);
/* Watches fd for `events` (EPOLLIN, EPOLLOUT; level-triggered). -EEXIST if fd is watched. */
int iothread_add_fd(struct iothread *it, int fd, uint32_t events, iothread_fn *fn, void *opaque);
/* Changes the events watched on fd. */
int iothread_mod_fd(struct iothread *it, int fd, uint32_t events);
int iothread_del_fd(struct iothread *it, int fd);
/* Starts the thread. Returns 0 or -errno (err_set says why). */
int iothread_start(struct iothread *it);
/* Stops and joins the thread; safe to call when not started or twice. Not from a callback. */
void iothread_stop(struct iothread *it);
void iothread_free(struct iothread *it);
/* Callback invocations so far (for tests and statistics). */
uint64_t iothread_dispatches(struct iothread *it);

#endif
