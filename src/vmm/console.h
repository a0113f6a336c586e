/*
 * console.h - the host side of the guest console: stdin in raw mode, the Ctrl-A escape (as in
 * QEMU: Ctrl-A x quits, Ctrl-A a sends Ctrl-A, Ctrl-A h helps) and a queue of bytes waiting for
 * the guest. The I/O thread reads the host and pumps the queue; SBI DBCN reads take from it on
 * vCPU threads, so the queue has a lock.
 */
#ifndef KUMO_VMM_CONSOLE_H
#define KUMO_VMM_CONSOLE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <termios.h>

#define CONSOLE_QUEUE 4096
#define CONSOLE_QUIT 1

struct console {
	int fd;           /* host input, -1 once closed or absent */
	bool is_tty;
	bool raw;         /* terminal switched to raw mode; `saved` restores it */
	struct termios saved;
	bool escape;      /* the previous byte was Ctrl-A */
	pthread_mutex_t lock; /* protects the queue */
	uint8_t queue[CONSOLE_QUEUE];
	size_t head, len;
};

typedef void console_write_fn(void *opaque, const uint8_t *buf, size_t len);

void console_init(struct console *c, int fd);
/* Puts a terminal into raw mode (no echo, no signals, byte at a time). */
void console_start(struct console *c);
/* Restores the terminal. Safe to call twice. */
void console_stop(struct console *c);
void console_fini(struct console *c);
int console_fd(const struct console *c);
/*
 * Reads what the host typed, handles escapes (help text goes to `out`), queues the rest.
 * Returns CONSOLE_QUIT for Ctrl-A x, else 0. On EOF the console stops reading.
 */
int console_read_host(struct console *c, console_write_fn *out, void *opaque);
size_t console_peek_input(struct console *c, uint8_t *buf, size_t n);
void console_consume_input(struct console *c, size_t n);
size_t console_pending_input(struct console *c);
size_t console_take_input(struct console *c, uint8_t *buf, size_t n);
/* Queues bytes from another source (the control API); returns how many fit. Any thread. */
size_t console_queue_input(struct console *c, const uint8_t *buf, size_t n);

#endif
