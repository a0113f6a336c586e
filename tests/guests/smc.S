/*
 * smc.S - self-modifying code (unpriv 20191213 §3.2: FENCE.I makes stores visible to later
 * fetches of the same hart). A decode cache must notice: code is rewritten in a function that
 * already ran, in the very next instruction of the running code, in a 32-bit instruction that
 * straddles a page boundary, and in a function rewritten on every call of a loop. Patched
 * code is assembled without RVC so each patch replaces exactly one 32-bit instruction.
 */
#include "guest.h"

#define LI_A0(v) (((v) << 20) | (10 << 7) | 0x13)	/* addi a0, zero, v */

	.text
	.option norvc
	.globl guest_main
guest_main:
	addi sp, sp, -16
	sd ra, 0(sp)
	PRINTLN "smc: start"

	/* 1: a function run once, rewritten, run again. */
	lla s0, patch_fn
	jalr s0
	li t0, 1
	bne a0, t0, fail
	li t0, LI_A0(2)
	sw t0, 0(s0)
	fence.i
	jalr s0
	li t0, 2
	bne a0, t0, fail
	PRINTLN "smc: rewritten function runs the new code"
	/* expect: smc: rewritten function runs the new code */

	/* 2: the next instruction of the running code. */
	lla s0, next_insn
	li t0, LI_A0(7)
	li a0, 0
	sw t0, 0(s0)
	fence.i
next_insn:
	addi a0, zero, 3
	li t0, 7
	bne a0, t0, fail
	PRINTLN "smc: next instruction rewritten"
	/* expect: smc: next instruction rewritten */

	/* 3: a 32-bit instruction across a page boundary, each half written separately. */
	lla s0, straddle
	jalr s0
	li t0, 5
	bne a0, t0, fail
	li t0, LI_A0(9)
	sh t0, 0(s0)
	srli t0, t0, 16
	sh t0, 2(s0)
	fence.i
	jalr s0
	li t0, 9
	bne a0, t0, fail
	PRINTLN "smc: page-straddling instruction rewritten"
	/* expect: smc: page-straddling instruction rewritten */

	/* 4: loops that rewrite their own body many times (catches stale cached blocks). */
	li s1, 0
	li s2, 200
1:	lla s0, counter_fn
	andi t1, s1, 0x3ff
	slli t1, t1, 20
	li t0, LI_A0(0)
	or t0, t0, t1
	sw t0, 0(s0)
	fence.i
	jalr s0
	andi t1, s1, 0x3ff
	bne a0, t1, fail
	addi s1, s1, 1
	bne s1, s2, 1b
	PRINTLN "smc: 200 rewrites seen"
	/* expect: smc: 200 rewrites seen */
	PRINTLN "smc: done"
	/* expect: smc: done */
	ld ra, 0(sp)
	addi sp, sp, 16
	ret

	.balign 4
patch_fn:
	addi a0, zero, 1
	ret
counter_fn:
	addi a0, zero, -1
	ret

	/* A 4-byte instruction whose halves lie on two pages. */
	.balign 4096
	.space 4096 - 2
straddle:
	addi a0, zero, 5
	ret
