/*
 * iothread.c - the epoll loop of the VMM's I/O thread (see kumo/iothread.h). Watches are kept
 * in a list under a mutex; epoll_event.data.ptr points at a watch, and a deleted watch is
 * only marked dead and unlinked, then freed by iothread_free(), so an event already fetched
 * by epoll_wait() never points at freed memory.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "kumo/base.h"
#include "kumo/iothread.h"

#define MAX_EVENTS 32

struct watch {
	int fd;
	iothread_fn *fn;
	void *opaque;
	_Atomic bool dead;
	struct watch *next;
};

struct iothread {
	int epfd;
	int stop_fd; /* eventfd: wakes the loop to stop */
	pthread_t thread;
	bool started;
	_Atomic bool stopping;
	pthread_mutex_t lock; /* protects the lists */
	struct watch *watches, *graveyard;
	_Atomic uint64_t dispatches;
};

int iothread_new(struct iothread **out)
{
	struct iothread *it = calloc(1, sizeof(*it));
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	int e;

	if (!it) {
		err_set("out of memory creating the I/O thread");
		return -ENOMEM;
	}
	it->epfd = epoll_create1(EPOLL_CLOEXEC);
	it->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (it->epfd < 0 || it->stop_fd < 0 || epoll_ctl(it->epfd, EPOLL_CTL_ADD, it->stop_fd, &ev)) {
		e = errno;
		if (it->epfd >= 0)
			close(it->epfd);
		if (it->stop_fd >= 0)
			close(it->stop_fd);
		free(it);
		err_set("cannot create the I/O thread's event loop: %s", strerror(e));
		return -e;
	}
	pthread_mutex_init(&it->lock, NULL);
	*out = it;
	return 0;
}

int iothread_add_fd(struct iothread *it, int fd, uint32_t events, iothread_fn *fn, void *opaque)
{
	struct watch *w = calloc(1, sizeof(*w));
	struct epoll_event ev = {.events = events};
	int ret = 0;

	if (!w)
		return -ENOMEM;
	*w = (struct watch){.fd = fd, .fn = fn, .opaque = opaque};
	ev.data.ptr = w;
	pthread_mutex_lock(&it->lock);
	if (epoll_ctl(it->epfd, EPOLL_CTL_ADD, fd, &ev)) {
		ret = -errno;
		free(w);
	} else {
		w->next = it->watches;
		it->watches = w;
	}
	pthread_mutex_unlock(&it->lock);
	return ret;
}

int iothread_mod_fd(struct iothread *it, int fd, uint32_t events)
{
	int ret = -ENOENT;

	pthread_mutex_lock(&it->lock);
	for (struct watch *w = it->watches; w; w = w->next) {
		struct epoll_event ev = {.events = events, .data.ptr = w};

		if (w->fd != fd)
			continue;
		ret = epoll_ctl(it->epfd, EPOLL_CTL_MOD, fd, &ev) ? -errno : 0;
		break;
	}
	pthread_mutex_unlock(&it->lock);
	return ret;
}

int iothread_del_fd(struct iothread *it, int fd)
{
	int ret = -ENOENT;

	pthread_mutex_lock(&it->lock);
	for (struct watch **p = &it->watches; *p; p = &(*p)->next) {
		struct watch *w = *p;

		if (w->fd != fd)
			continue;
		epoll_ctl(it->epfd, EPOLL_CTL_DEL, fd, NULL);
		atomic_store(&w->dead, true);
		*p = w->next;
		w->next = it->graveyard;
		it->graveyard = w;
		ret = 0;
		break;
	}
	pthread_mutex_unlock(&it->lock);
	return ret;
}

static void *iothread_loop(void *arg)
{
	struct iothread *it = arg;
	struct epoll_event evs[MAX_EVENTS];

	while (!atomic_load(&it->stopping)) {
		int n = epoll_wait(it->epfd, evs, MAX_EVENTS, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_err("I/O thread: epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n && !atomic_load(&it->stopping); i++) {
			struct watch *w = evs[i].data.ptr;

			if (!w || atomic_load(&w->dead))
				continue; /* the stop eventfd, or deleted since epoll_wait */
			atomic_fetch_add_explicit(&it->dispatches, 1, memory_order_relaxed);
			w->fn(w->opaque, w->fd, evs[i].events);
		}
	}
	return NULL;
}

int iothread_start(struct iothread *it)
{
	int ret;

	if (it->started)
		return 0;
	atomic_store(&it->stopping, false);
	ret = pthread_create(&it->thread, NULL, iothread_loop, it);
	if (ret) {
		err_set("cannot start the I/O thread: %s", strerror(ret));
		return -ret;
	}
	it->started = true;
	return 0;
}

void iothread_stop(struct iothread *it)
{
	uint64_t one = 1;

	if (!it || !it->started)
		return;
	atomic_store(&it->stopping, true);
	if (write(it->stop_fd, &one, sizeof(one)) < 0) {
		/* a saturated counter still wakes the loop */
	}
	pthread_join(it->thread, NULL);
	it->started = false;
}

void iothread_free(struct iothread *it)
{
	if (!it)
		return;
	iothread_stop(it);
	for (struct watch *lists[2] = {it->watches, it->graveyard}, **l = lists; l < lists + 2; l++)
		while (*l) {
			struct watch *w = *l;

			*l = w->next;
			free(w);
		}
	close(it->epfd);
	close(it->stop_fd);
	pthread_mutex_destroy(&it->lock);
	free(it);
}

uint64_t iothread_dispatches(struct iothread *it)
{
	return atomic_load(&it->dispatches);
}
