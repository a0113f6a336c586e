/*
 * seip.S - mip.SEIP is the OR of the bit M-mode software writes and the PLIC's S-mode line
 * (priv 1.12 §3.1.9 "Machine Interrupt Registers"): with the UART's THR-empty interrupt routed
 * to hart 0's S-mode context (plic spec §3: priority, enable, threshold), SEIP reads 1 while
 * the line is high and 0 again once the UART stops asking, although software never wrote it.
 *
 * The line stays high for 3 s of guest time between the two lines printed below, so
 * tests/api/test_snapshot.py can pause the VM there, snapshot it and restore it in a new
 * process: the restored hart must see SEIP follow the line as well (a snapshot that stored
 * the line's level as the software bit would leave SEIP stuck at 1, and a Linux guest taking
 * external interrupts forever). mie stays 0: no interrupt is taken.
 */
#include "guest.h"

#define PLIC_BASE 0xc000000
#define UART_IRQ 10
#define PLIC_S_ENABLE (PLIC_BASE + 0x2000 + 0x80 * 1)	/* context 1: hart 0, S-mode */
#define PLIC_S_THRESHOLD (PLIC_BASE + 0x200000 + 0x1000 * 1)
#define MIP_SEIP (1 << 9)
#define UART_IER 1
#define IER_ETBEI 0x02
#define WAIT_TICKS 30000000	/* 3 s at 10 MHz */

	.text
	.globl guest_main
guest_main:
	addi sp, sp, -16
	sd ra, 0(sp)
	PRINTLN "seip: start"

	/* Route the UART to S-mode context 1: priority 1, enabled, threshold 0. */
	li t0, PLIC_BASE + 4 * UART_IRQ
	li t1, 1
	sw t1, 0(t0)
	li t0, PLIC_S_ENABLE
	li t1, 1 << UART_IRQ
	sw t1, 0(t0)
	li t0, PLIC_S_THRESHOLD
	sw zero, 0(t0)
	/* THR is empty: enabling its interrupt raises the UART's line at once. */
	li t0, UART_BASE
	li t1, IER_ETBEI
	sb t1, UART_IER(t0)
	csrr t0, mip
	andi t0, t0, MIP_SEIP
	beqz t0, fail
	PRINTLN "seip: external line high, mip.SEIP set"
	/* expect: seip: external line high, mip.SEIP set */

	/*
	 * Hold the line high for WAIT_TICKS of guest time (a snapshot may be taken here): SEIP
	 * must read 1 all along, also in a restored VM whose PLIC drives the line again.
	 */
	li s0, CLINT_MTIME
	ld s1, 0(s0)
	li t0, WAIT_TICKS
	add s1, s1, t0
1:	csrr t0, mip
	andi t0, t0, MIP_SEIP
	beqz t0, dropped
	ld t0, 0(s0)
	bltu t0, s1, 1b

	/* The UART stops asking: its line, the PLIC's and SEIP fall together. */
	li t0, UART_BASE
	sb zero, UART_IER(t0)
	csrr t0, mip
	andi t0, t0, MIP_SEIP
	bnez t0, stuck
	PRINTLN "seip: line low, mip.SEIP clear"
	/* expect: seip: line low, mip.SEIP clear */
	ld ra, 0(sp)
	addi sp, sp, 16
	ret

stuck:
	PRINTLN "seip: line low but mip.SEIP still set"
	j fail

dropped:
	PRINTLN "seip: line high but mip.SEIP clear"
	j fail
