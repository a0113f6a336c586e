/*
 * irq.h - interrupts as values.
 *
 * A device holds a struct irq_line and calls irq_line_set(line, level); it never knows what is
 * on the other end (a PLIC source, a hart's mip bit). The receiver's set() must be callable
 * from any thread and must not call back into the device.
 */
#ifndef KUMO_IRQ_H
#define KUMO_IRQ_H

#include <stdbool.h>

struct irq_line {
	void (*set)(void *opaque, unsigned n, bool level); /* NULL: line not connected */
	void *opaque;
	unsigned n; /* receiver-defined number (PLIC source, mip bit, ...) */
};

static inline void irq_line_set(const struct irq_line *line, bool level)
{
	if (line && line->set)
		line->set(line->opaque, line->n, level);
}

#endif
