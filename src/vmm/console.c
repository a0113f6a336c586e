/* console.c - host terminal handling and the console input queue (see console.h). */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "vmm/console.h"

#define CTRL_A 0x01

void console_init(struct console *c, int fd)
{
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	c->is_tty = fd >= 0 && isatty(fd);
	pthread_mutex_init(&c->lock, NULL);
}

void console_start(struct console *c)
{
	struct termios t;

	if (!c->is_tty || c->raw || tcgetattr(c->fd, &c->saved))
		return;
	t = c->saved;
	cfmakeraw(&t);
	t.c_oflag |= OPOST | ONLCR; /* keep the host's newline translation for our own messages */
	t.c_cc[VMIN] = 1;
	t.c_cc[VTIME] = 0;
	if (!tcsetattr(c->fd, TCSANOW, &t))
		c->raw = true;
}

void console_stop(struct console *c)
{
	if (c->raw) {
		tcsetattr(c->fd, TCSANOW, &c->saved);
		c->raw = false;
	}
}

void console_fini(struct console *c)
{
	console_stop(c);
	pthread_mutex_destroy(&c->lock);
}

int console_fd(const struct console *c)
{
	return c->fd;
}

static void enqueue(struct console *c, const uint8_t *buf, size_t n)
{
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < n && c->len < CONSOLE_QUEUE; i++) {
		c->queue[(c->head + c->len) % CONSOLE_QUEUE] = buf[i];
		c->len++;
	}
	pthread_mutex_unlock(&c->lock);
}

static const char help[] = "\r\nC-a h    print this help\r\n"
			   "C-a x    exit kumo\r\n"
			   "C-a C-a  send C-a to the guest\r\n";

int console_read_host(struct console *c, console_write_fn *out, void *opaque)
{
	uint8_t in[256], keep[256];
	size_t nkeep = 0;
	ssize_t n;

	if (c->fd < 0)
		return 0;
	/* Don't read more than the queue can take: the rest stays in the kernel's buffer. */
	pthread_mutex_lock(&c->lock);
	size_t room = CONSOLE_QUEUE - c->len;
	pthread_mutex_unlock(&c->lock);
	if (!room)
		return 0;
	n = read(c->fd, in, room < sizeof(in) ? room : sizeof(in));
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (n <= 0) {
		c->fd = -1; /* EOF: the guest keeps running without input */
		return 0;
	}
	for (ssize_t i = 0; i < n; i++) {
		uint8_t ch = in[i];

		if (c->escape) {
			c->escape = false;
			if (ch == 'x' || ch == 'X')
				return CONSOLE_QUIT;
			if (ch == 'h' || ch == 'H' || ch == '?') {
				out(opaque, (const uint8_t *)help, sizeof(help) - 1);
				continue;
			}
			if (ch == CTRL_A || ch == 'a')
				keep[nkeep++] = CTRL_A;
			continue; /* unknown escapes are swallowed, as QEMU does */
		}
		if (ch == CTRL_A) {
			c->escape = true;
			continue;
		}
		keep[nkeep++] = ch;
	}
	enqueue(c, keep, nkeep);
	return 0;
}

size_t console_peek_input(struct console *c, uint8_t *buf, size_t n)
{
	size_t i;

	pthread_mutex_lock(&c->lock);
	for (i = 0; i < n && i < c->len; i++)
		buf[i] = c->queue[(c->head + i) % CONSOLE_QUEUE];
	pthread_mutex_unlock(&c->lock);
	return i;
}

void console_consume_input(struct console *c, size_t n)
{
	pthread_mutex_lock(&c->lock);
	if (n > c->len)
		n = c->len;
	c->head = (c->head + n) % CONSOLE_QUEUE;
	c->len -= n;
	pthread_mutex_unlock(&c->lock);
}

size_t console_pending_input(struct console *c)
{
	size_t n;

	pthread_mutex_lock(&c->lock);
	n = c->len;
	pthread_mutex_unlock(&c->lock);
	return n;
}

size_t console_queue_input(struct console *c, const uint8_t *buf, size_t n)
{
	size_t before, after;

	pthread_mutex_lock(&c->lock);
	before = c->len;
	pthread_mutex_unlock(&c->lock);
	enqueue(c, buf, n);
	pthread_mutex_lock(&c->lock);
	after = c->len;
	pthread_mutex_unlock(&c->lock);
	return after > before ? after - before : 0;
}

size_t console_take_input(struct console *c, uint8_t *buf, size_t n)
{
	size_t got = console_peek_input(c, buf, n);

	console_consume_input(c, got);
	return got;
}
