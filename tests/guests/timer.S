/*
 * timer.S - the CLINT machine timer (priv 1.12 §3.2.1): WFI with a timer armed 1 ms ahead
 * and interrupts enabled takes the interrupt (mcause 0x8000000000000007); WFI with MTIE set
 * but mstatus.MIE clear still wakes up (priv 1.12 §3.3.3) and leaves mip.MTIP set; mtime
 * advances; a software interrupt through MSIP is delivered as cause 0x8000000000000003.
 */
#include "guest.h"

	.text
	.globl guest_main
guest_main:
	addi sp, sp, -16
	sd ra, 0(sp)
	PRINTLN "timer: start"

	/* mtime advances. */
	li s0, CLINT_MTIME
	ld s1, 0(s0)
	li t0, 100000
1:	addi t0, t0, -1
	bnez t0, 1b
	ld s2, 0(s0)
	bleu s2, s1, fail
	PRINTLN "timer: mtime advances"
	/* expect: timer: mtime advances */

	/* WFI until the timer interrupt is taken. */
	li s1, CLINT_MTIMECMP
	ld t0, 0(s0)
	li t1, 10000		/* 1 ms at 10 MHz */
	add t0, t0, t1
	sd t0, 0(s1)
	li t0, MIE_MTIE
	csrs mie, t0
	csrsi mstatus, MSTATUS_MIE
1:	wfi
	lla t0, trap_count
	ld t0, 0(t0)
	beqz t0, 1b		/* a spurious wake-up is allowed: wait again */
	/* expect: trap cause=0x8000000000000007 */
	csrci mstatus, MSTATUS_MIE
	PRINTLN "timer: interrupt taken"
	/* expect: timer: interrupt taken */

	/* WFI with the interrupt locally enabled but globally off: wakes, no trap. */
	ld t0, 0(s0)
	li t1, 10000
	add t0, t0, t1
	sd t0, 0(s1)
	li t0, MIE_MTIE
	csrs mie, t0
1:	csrr t0, mip
	andi t0, t0, MIE_MTIE
	bnez t0, 2f
	wfi
	j 1b
2:	lla t0, trap_count
	ld t0, 0(t0)
	li t1, 1
	bne t0, t1, fail
	PRINTLN "timer: wfi woke with mip.MTIP set"
	/* expect: timer: wfi woke with mip.MTIP set */
	li t0, -1
	sd t0, 0(s1)
	csrr t0, mip
	andi t0, t0, MIE_MTIE
	bnez t0, fail		/* MTIP follows mtimecmp */
	li t0, MIE_MTIE
	csrc mie, t0

	/* Software interrupt to ourselves through MSIP. */
	li t0, 1 << 3
	csrs mie, t0
	csrsi mstatus, MSTATUS_MIE
	li t0, CLINT_BASE
	li t1, 1
	sw t1, 0(t0)
	li t2, 100000
1:	addi t2, t2, -1
	bnez t2, 1b
	/* expect: trap cause=0x8000000000000003 */
	csrci mstatus, MSTATUS_MIE
	lla t0, trap_count
	ld t0, 0(t0)
	li t1, 2
	bne t0, t1, fail
	PRINTLN "timer: done"
	/* expect: timer: done */
	ld ra, 0(sp)
	addi sp, sp, 16
	ret
