/*
 * common.S - start-up code, UART output and the trap handler shared by the bare-metal test
 * guests (see guest.h). Runs in M-mode from 0x80000000 as the firmware kumo loads with --bios.
 */
#include "guest.h"

	.option norelax

	.section .text.start, "ax"
	.globl _start
_start:
	lla sp, stack_top
	lla t0, trap_entry
	csrw mtvec, t0
	lla t0, trap_stack_top
	csrw mscratch, t0
	csrw mie, zero
	/* PMP entry 0: NAPOT over everything, RWX for S and U (priv 1.12 §3.7.1). */
	li t0, -1
	csrw pmpaddr0, t0
	li t0, 0x1f
	csrw pmpcfg0, t0
	/* mstatus.FS = Initial so FP instructions are legal (priv 1.12 §3.1.6.6). */
	li t0, 1 << 13
	csrs mstatus, t0
	call guest_main
	.globl poweroff
poweroff:
	li t0, SYSCON_BASE
	li t1, 0x5555
	sw t1, 0(t0)
1:	j 1b

	.globl fail
	/* Reports failure through the syscon (kumo exits 3). */
fail:
	PRINTLN "guest: FAILED"
	li t0, SYSCON_BASE
	li t1, 0x13333 /* code 1 << 16 | FAIL */
	sw t1, 0(t0)
1:	j 1b

	.text
	.globl putc
	/* putc(a0): waits for LSR.THRE, then writes THR. Clobbers t0, t1. */
putc:
	li t0, UART_BASE
1:	lbu t1, 5(t0)
	andi t1, t1, 0x20
	beqz t1, 1b
	sb a0, 0(t0)
	ret

	.globl puts
	/* puts(a0): a NUL-terminated string. */
puts:
	addi sp, sp, -16
	sd ra, 0(sp)
	sd s0, 8(sp)
	mv s0, a0
1:	lbu a0, 0(s0)
	beqz a0, 2f
	call putc
	addi s0, s0, 1
	j 1b
2:	ld ra, 0(sp)
	ld s0, 8(sp)
	addi sp, sp, 16
	ret

	.globl puthex
	/* puthex(a0): "0x" and the value in hex without leading zeros. */
puthex:
	addi sp, sp, -32
	sd ra, 0(sp)
	sd s0, 8(sp)
	sd s1, 16(sp)
	sd s2, 24(sp)
	mv s0, a0
	li a0, '0'
	call putc
	li a0, 'x'
	call putc
	li s1, 60 /* shift of the current digit */
	li s2, 0  /* a non-zero digit was printed */
1:	srl a0, s0, s1
	andi a0, a0, 15
	or s2, s2, a0
	beqz s1, 2f
	beqz s2, 3f
2:	addi a0, a0, '0'
	li t0, '0' + 10
	blt a0, t0, 4f
	addi a0, a0, 'a' - '0' - 10
4:	call putc
3:	addi s1, s1, -4
	bgez s1, 1b
	ld ra, 0(sp)
	ld s0, 8(sp)
	ld s1, 16(sp)
	ld s2, 24(sp)
	addi sp, sp, 32
	ret

	.globl putdec
	/* putdec(a0): an unsigned value in decimal. */
putdec:
	addi sp, sp, -48
	sd ra, 0(sp)
	sd s0, 8(sp)
	addi s0, sp, 47
	sb zero, 0(s0)
	li t1, 10
1:	remu t0, a0, t1
	divu a0, a0, t1
	addi t0, t0, '0'
	addi s0, s0, -1
	sb t0, 0(s0)
	bnez a0, 1b
	mv a0, s0
	call puts
	ld ra, 0(sp)
	ld s0, 8(sp)
	addi sp, sp, 48
	ret

/*
 * The M-mode trap handler (priv 1.12 §3.1.7 direct mode). Runs on its own stack (mscratch) so
 * traps from S and U code with any sp work. Not re-entrant: the handler itself must not trap.
 */
	.balign 4
	.globl trap_entry
trap_entry:
	csrrw sp, mscratch, sp
	addi sp, sp, -256
	.irp r, 1,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	sd x\r, \r * 8(sp)
	.endr
	lla t0, trap_count
	ld t1, 0(t0)
	addi t1, t1, 1
	sd t1, 0(t0)
	lla t0, trap_quiet
	ld t0, 0(t0)
	bnez t0, .Ldecide
	PRINT "trap cause="
	csrr a0, mcause
	bltz a0, .Lprint_irq
	call putdec
	PRINT " tval="
	csrr a0, mtval
	call puthex
	PRINT " epc="
	csrr a0, mepc
	call puthex
	j .Lprint_nl
.Lprint_irq:
	call puthex
.Lprint_nl:
	li a0, '\n'
	call putc
.Ldecide:
	csrr t0, mcause
	bltz t0, .Lirq
	li t1, 1
	beq t0, t1, .Lresume
	li t1, 12
	beq t0, t1, .Lresume
	li t1, 8
	beq t0, t1, .Lresume
	li t1, 9
	beq t0, t1, .Lresume
	/* Skip the faulting instruction: 16 or 32 bits (unpriv 20191213 §1.5). */
	csrr t0, mepc
	lhu t1, 0(t0)
	andi t1, t1, 3
	li t2, 3
	addi t0, t0, 2
	bne t1, t2, 1f
	addi t0, t0, 2
1:	csrw mepc, t0
	j .Lreturn
.Lresume:
	lla t0, trap_resume
	ld t1, 0(t0)
	beqz t1, .Lno_resume
	sd zero, 0(t0)
	csrw mepc, t1
	li t0, MSTATUS_MPP
	csrs mstatus, t0
	j .Lreturn
.Lno_resume:
	PRINTLN "trap: no resume point for this trap"
	j fail
.Lirq:
	slli t0, t0, 1
	srli t0, t0, 1
	li t1, 7
	bne t0, t1, 2f
	li t1, CLINT_MTIMECMP
	li t2, -1
	sd t2, 0(t1)
	li t1, MIE_MTIE
	csrc mie, t1
	j .Lreturn
2:	li t1, 3
	bne t0, t1, 3f
	li t1, CLINT_BASE
	sw zero, 0(t1)
	j .Lreturn
3:	csrw mie, zero
.Lreturn:
	.irp r, 1,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	ld x\r, \r * 8(sp)
	.endr
	addi sp, sp, 256
	csrrw sp, mscratch, sp
	mret

	.data
	.balign 8
	.globl trap_resume, trap_count, trap_quiet
trap_resume:	.dword 0	/* M-mode address to resume at after a fetch fault or ECALL */
trap_count:	.dword 0	/* traps taken so far */
trap_quiet:	.dword 0	/* non-zero: count traps without printing them */

	.bss
	.balign 16
	.space 8192
stack_top:
	.space 4096
trap_stack_top:
