/*
 * uart8250.c - NS16550A UART (TI/National PC16550D datasheet), byte registers at a stride of 1.
 *
 *   0 RBR (read) / THR (write) / DLL when LCR.DLAB     4 MCR
 *   1 IER / DLM when LCR.DLAB                           5 LSR
 *   2 IIR (read) / FCR (write)                          6 MSR
 *   3 LCR                                               7 SCR
 *
 * Transmission is instantaneous: a THR write goes straight to the tx callback, so LSR.THRE and
 * LSR.TEMT always read 1. Reception goes through a receive FIFO of 16 bytes (1 byte when
 * FCR.FIFOE is clear, as in 16450 mode) fed by uart8250_receive(); input that does not fit is
 * refused (returned to the host) rather than overrunning, and the rx_ready callback tells the
 * host when the guest has emptied the FIFO again.
 *
 * Interrupts (datasheet table "Interrupt Control Functions"), highest priority first:
 * receiver line status (IER.ELSI and LSR.OE), received data available (IER.ERBFI and the FIFO
 * holds data; we report it as "data available" whatever the trigger level, which every driver
 * treats like the character timeout), transmitter holding register empty (IER.ETBEI; set when
 * THR empties or ETBEI is turned on, cleared by reading IIR while it is the reported cause or
 * by writing THR). Modem-status interrupts never occur: the modem lines never change. The
 * interrupt output is a level on the irq line.
 *
 * Loopback (MCR.LOOP): THR bytes go to the receive FIFO and MSR reflects MCR's outputs, which
 * is what Linux's 8250 probe checks.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "machine/devices.h"

#define UART_RX_FIFO 16
#define UART_CLOCK_HZ 3686400

enum {
	UART_RBR = 0, UART_THR = 0, UART_DLL = 0,
	UART_IER = 1, UART_DLM = 1,
	UART_IIR = 2, UART_FCR = 2,
	UART_LCR = 3, UART_MCR = 4, UART_LSR = 5, UART_MSR = 6, UART_SCR = 7,
};

#define IER_ERBFI 0x01
#define IER_ETBEI 0x02
#define IER_ELSI 0x04
#define IER_EDSSI 0x08

#define IIR_NONE 0x01
#define IIR_MSI 0x00
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_RLSI 0x06
#define IIR_FIFO 0xc0

#define FCR_FIFOE 0x01
#define FCR_RXRST 0x02

#define LCR_DLAB 0x80

#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10

#define LSR_DR 0x01
#define LSR_OE 0x02
#define LSR_BI 0x10
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI 0x40
#define MSR_DCD 0x80

struct uart8250 {
	pthread_mutex_t lock;
	struct uart8250_config cfg;
	uint8_t rx[UART_RX_FIFO];
	unsigned rx_head, rx_count;
	bool refused;     /* input was refused since the FIFO last emptied */
	bool thr_ipending; /* THRE interrupt condition */
	bool irq_level;
	uint8_t ier, fcr, lcr, mcr, lsr_err, scr, dll, dlm;
	uint64_t tx_bytes, rx_bytes, rx_refused; /* counters */
};

static unsigned uart_rx_cap(const struct uart8250 *u)
{
	return u->fcr & FCR_FIFOE ? UART_RX_FIFO : 1;
}

static bool uart_rx_push(struct uart8250 *u, uint8_t c)
{
	if (u->rx_count >= uart_rx_cap(u))
		return false;
	u->rx[(u->rx_head + u->rx_count) % UART_RX_FIFO] = c;
	u->rx_count++;
	return true;
}

/* The highest-priority interrupt cause, or IIR_NONE. */
static uint8_t uart_cause(const struct uart8250 *u)
{
	if ((u->ier & IER_ELSI) && u->lsr_err)
		return IIR_RLSI;
	if ((u->ier & IER_ERBFI) && u->rx_count)
		return IIR_RDI;
	if ((u->ier & IER_ETBEI) && u->thr_ipending)
		return IIR_THRI;
	return IIR_NONE;
}

static void uart_update_irq(struct uart8250 *u)
{
	bool level = uart_cause(u) != IIR_NONE;

	if (level != u->irq_level) {
		u->irq_level = level;
		irq_line_set(&u->cfg.irq, level);
	}
}

static uint8_t uart_msr(const struct uart8250 *u)
{
	if (u->mcr & MCR_LOOP)
		return (u->mcr & MCR_RTS ? MSR_CTS : 0) | (u->mcr & MCR_DTR ? MSR_DSR : 0) |
		       (u->mcr & MCR_OUT1 ? MSR_RI : 0) | (u->mcr & MCR_OUT2 ? MSR_DCD : 0);
	return MSR_DCD | MSR_DSR | MSR_CTS; /* a terminal is always attached */
}

/* Reads RBR; returns true when the guest just emptied a FIFO that had refused input. */
static bool uart_read_rbr(struct uart8250 *u, uint8_t *c)
{
	*c = 0;
	if (!u->rx_count)
		return false;
	*c = u->rx[u->rx_head];
	u->rx_head = (u->rx_head + 1) % UART_RX_FIFO;
	u->rx_count--;
	if (u->rx_count || !u->refused)
		return false;
	u->refused = false;
	return true;
}

static uint64_t uart_read(void *opaque, uint64_t off, unsigned size)
{
	struct uart8250 *u = opaque;
	bool drained = false;
	uint8_t val = 0;

	if (size != 1)
		guest_error("uart: %u-byte read at %#" PRIx64 " (registers are bytes)", size, off);
	pthread_mutex_lock(&u->lock);
	switch (off) {
	case UART_RBR:
		if (u->lcr & LCR_DLAB)
			val = u->dll;
		else
			drained = uart_read_rbr(u, &val);
		break;
	case UART_IER:
		val = u->lcr & LCR_DLAB ? u->dlm : u->ier;
		break;
	case UART_IIR:
		val = uart_cause(u);
		if (val == IIR_THRI)
			u->thr_ipending = false;
		if (u->fcr & FCR_FIFOE)
			val |= IIR_FIFO;
		break;
	case UART_LCR:
		val = u->lcr;
		break;
	case UART_MCR:
		val = u->mcr;
		break;
	case UART_LSR:
		val = LSR_THRE | LSR_TEMT | u->lsr_err | (u->rx_count ? LSR_DR : 0);
		u->lsr_err = 0; /* error bits clear on read */
		break;
	case UART_MSR:
		val = uart_msr(u);
		break;
	case UART_SCR:
		val = u->scr;
		break;
	default:
		break;
	}
	uart_update_irq(u);
	pthread_mutex_unlock(&u->lock);
	if (drained && u->cfg.rx_ready)
		u->cfg.rx_ready(u->cfg.opaque);
	return val;
}

static void uart_write_thr(struct uart8250 *u, uint8_t c)
{
	if (u->mcr & MCR_LOOP) {
		if (!uart_rx_push(u, c))
			u->lsr_err |= LSR_OE;
	} else {
		u->tx_bytes++;
		if (u->cfg.tx)
			u->cfg.tx(u->cfg.opaque, &c, 1);
	}
	/* The byte left at once: THR is empty again (datasheet: THRE interrupt re-arms). */
	u->thr_ipending = true;
}

static void uart_write_fcr(struct uart8250 *u, uint8_t val)
{
	/* Changing FIFOE resets both FIFOs; RXRST resets the receive FIFO. */
	if ((val ^ u->fcr) & FCR_FIFOE || val & FCR_RXRST) {
		u->rx_head = 0;
		u->rx_count = 0;
	}
	u->fcr = val & (FCR_FIFOE | 0xc0); /* keep FIFOE and the trigger level */
}

static void uart_write(void *opaque, uint64_t off, uint64_t val64, unsigned size)
{
	struct uart8250 *u = opaque;
	uint8_t val = (uint8_t)val64;
	bool drained = false;

	if (size != 1)
		guest_error("uart: %u-byte write at %#" PRIx64 " (registers are bytes)", size, off);
	pthread_mutex_lock(&u->lock);
	switch (off) {
	case UART_THR:
		if (u->lcr & LCR_DLAB)
			u->dll = val;
		else
			uart_write_thr(u, val);
		break;
	case UART_IER:
		if (u->lcr & LCR_DLAB) {
			u->dlm = val;
		} else {
			/* Enabling ETBEI while THR is empty raises the THRE interrupt. */
			if (!(u->ier & IER_ETBEI) && (val & IER_ETBEI))
				u->thr_ipending = true;
			u->ier = val & (IER_ERBFI | IER_ETBEI | IER_ELSI | IER_EDSSI);
		}
		break;
	case UART_FCR:
		uart_write_fcr(u, val);
		if (!u->rx_count && u->refused) {
			u->refused = false;
			drained = true;
		}
		break;
	case UART_LCR:
		u->lcr = val;
		break;
	case UART_MCR:
		u->mcr = val & 0x1f;
		break;
	case UART_SCR:
		u->scr = val;
		break;
	default: /* LSR and MSR are read-only; writes are ignored as on the real part */
		break;
	}
	uart_update_irq(u);
	pthread_mutex_unlock(&u->lock);
	if (drained && u->cfg.rx_ready)
		u->cfg.rx_ready(u->cfg.opaque);
}

size_t uart8250_receive(struct uart8250 *u, const uint8_t *buf, size_t len)
{
	size_t n = 0;

	pthread_mutex_lock(&u->lock);
	if (!(u->mcr & MCR_LOOP)) /* in loopback the line is disconnected from the outside */
		while (n < len && uart_rx_push(u, buf[n]))
			n++;
	u->rx_bytes += n;
	if (n < len) {
		u->rx_refused += len - n;
		u->refused = true;
		log_debug("uart: receive FIFO full, %zu input bytes refused", len - n);
	}
	uart_update_irq(u);
	pthread_mutex_unlock(&u->lock);
	return n;
}

bool uart8250_break(struct uart8250 *u)
{
	bool ok;

	pthread_mutex_lock(&u->lock);
	/* A break arrives as a NUL character with LSR.BI set while it is at the FIFO's head. */
	ok = !(u->mcr & MCR_LOOP) && !u->rx_count && uart_rx_push(u, 0);
	if (ok) {
		u->lsr_err |= LSR_BI;
		uart_update_irq(u);
	}
	pthread_mutex_unlock(&u->lock);
	return ok;
}

size_t uart8250_rx_room(struct uart8250 *u)
{
	size_t room;

	pthread_mutex_lock(&u->lock);
	room = u->mcr & MCR_LOOP ? 0 : uart_rx_cap(u) - u->rx_count;
	pthread_mutex_unlock(&u->lock);
	return room;
}

int uart8250_new(const struct uart8250_config *cfg, struct uart8250 **out)
{
	struct uart8250 *u = calloc(1, sizeof(*u));

	if (!u) {
		err_set("out of memory creating the UART");
		return -ENOMEM;
	}
	pthread_mutex_init(&u->lock, NULL);
	u->cfg = *cfg;
	*out = u;
	return 0;
}

static void uart8250_free(void *dev)
{
	struct uart8250 *u = dev;

	if (!u)
		return;
	pthread_mutex_destroy(&u->lock);
	free(u);
}

/* Datasheet "Reset Control": IER, IIR (no interrupt), FCR, LCR, MCR, LSR errors cleared. */
static void uart8250_reset(void *dev)
{
	struct uart8250 *u = dev;

	pthread_mutex_lock(&u->lock);
	u->rx_head = u->rx_count = 0;
	u->refused = false;
	u->thr_ipending = false;
	u->ier = u->fcr = u->lcr = u->mcr = u->lsr_err = u->scr = 0;
	u->dll = u->dlm = 0;
	u->irq_level = false;
	irq_line_set(&u->cfg.irq, false);
	pthread_mutex_unlock(&u->lock);
}

static const struct mmio_ops uart8250_mmio = {.read = uart_read, .write = uart_write};

/* Linux Documentation/devicetree/bindings/serial/8250.yaml */
static int uart8250_dt_node(void *dev, void *fdt, const struct dt_ctx *ctx, uint64_t base,
			    uint64_t size)
{
	struct uart8250 *u = dev;
	int node, err;

	node = dt_add_soc_node(fdt, "serial", base, size);
	if (node < 0)
		return node;
	err = fdt_setprop_string(fdt, node, "compatible", "ns16550a");
	if (!err)
		err = fdt_setprop_u32(fdt, node, "clock-frequency", UART_CLOCK_HZ);
	if (!err)
		err = fdt_setprop_u32(fdt, node, "reg-shift", 0);
	if (!err)
		err = fdt_setprop_u32(fdt, node, "reg-io-width", 1);
	if (!err)
		err = dt_set_plic_irq(fdt, node, ctx, u->cfg.plic_irq);
	return err;
}

/* Snapshot image of the registers and the receive FIFO (no host pointers). */
struct uart8250_state {
	uint8_t rx[UART_RX_FIFO];
	uint32_t rx_head, rx_count;
	uint8_t refused, thr_ipending, irq_level;
	uint8_t ier, fcr, lcr, mcr, lsr_err, scr, dll, dlm;
	uint64_t tx_bytes, rx_bytes, rx_refused;
};

static int uart8250_save(void *dev, void *buf, size_t cap)
{
	struct uart8250 *u = dev;
	struct uart8250_state s;

	if (cap < sizeof(s))
		return -ENOSPC;
	memset(&s, 0, sizeof(s)); /* padding too: equal states give equal bytes */
	pthread_mutex_lock(&u->lock);
	memcpy(s.rx, u->rx, sizeof(s.rx));
	s.rx_head = u->rx_head;
	s.rx_count = u->rx_count;
	s.refused = u->refused;
	s.thr_ipending = u->thr_ipending;
	s.irq_level = u->irq_level;
	s.ier = u->ier, s.fcr = u->fcr, s.lcr = u->lcr, s.mcr = u->mcr;
	s.lsr_err = u->lsr_err, s.scr = u->scr, s.dll = u->dll, s.dlm = u->dlm;
	s.tx_bytes = u->tx_bytes, s.rx_bytes = u->rx_bytes, s.rx_refused = u->rx_refused;
	pthread_mutex_unlock(&u->lock);
	memcpy(buf, &s, sizeof(s));
	return (int)sizeof(s);
}

static int uart8250_load(void *dev, const void *buf, size_t len)
{
	struct uart8250 *u = dev;
	struct uart8250_state s;

	if (len != sizeof(s))
		return -EINVAL;
	memcpy(&s, buf, sizeof(s));
	if (s.rx_head >= UART_RX_FIFO || s.rx_count > UART_RX_FIFO)
		return -EINVAL;
	pthread_mutex_lock(&u->lock);
	memcpy(u->rx, s.rx, sizeof(s.rx));
	u->rx_head = s.rx_head;
	u->rx_count = s.rx_count;
	u->refused = s.refused;
	u->thr_ipending = s.thr_ipending;
	u->ier = s.ier, u->fcr = s.fcr, u->lcr = s.lcr, u->mcr = s.mcr;
	u->lsr_err = s.lsr_err, u->scr = s.scr, u->dll = s.dll, u->dlm = s.dlm;
	u->tx_bytes = s.tx_bytes, u->rx_bytes = s.rx_bytes, u->rx_refused = s.rx_refused;
	/* Drive the line from the restored registers, whatever level it had before. */
	u->irq_level = !s.irq_level;
	irq_line_set(&u->cfg.irq, false);
	u->irq_level = false;
	uart_update_irq(u);
	pthread_mutex_unlock(&u->lock);
	return 0;
}

const struct vdev_class uart8250_class = {
	.name = "serial",
	.mmio = &uart8250_mmio,
	.reset = uart8250_reset,
	.dt_node = uart8250_dt_node,
	.free = uart8250_free,
	.save = uart8250_save,
	.load = uart8250_load,
};
