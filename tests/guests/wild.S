/*
 * wild.S - a hostile guest: random stores and loads of every size (aligned or not) over every
 * MMIO device region and the holes between them, a hostile virtio set-up with queues pointing
 * anywhere, then jumps to random addresses outside RAM. The VMM must survive all of it
 * (exit 0 after the final poweroff, or 3 if a random write reached the syscon's fail code),
 * never die from a signal. Traps are counted quietly. The sequence is reproducible: a fixed
 * xorshift64 seed (Marsaglia, JSS 2003).
 */
#include "guest.h"

#define OPS_PER_REGION 3000
#define JUMPS 300

	.text
	.globl guest_main
guest_main:
	addi sp, sp, -64
	sd ra, 0(sp)
	sd s0, 8(sp)
	sd s1, 16(sp)
	sd s2, 24(sp)
	sd s3, 32(sp)
	PRINT "wild: start, seed "
	lla t0, rng_state
	ld a0, 0(t0)
	call puthex
	li a0, '\n'
	call putc
	lla t0, trap_quiet
	li t1, 1
	sd t1, 0(t0)

	/* Random accesses over each region of the table. */
	lla s0, regions
1:	ld s1, 0(s0)		/* base */
	ld s2, 8(s0)		/* size */
	beqz s2, 4f
	li s3, OPS_PER_REGION
2:	call random_access
	addi s3, s3, -1
	bnez s3, 2b
	addi s0, s0, 16
	j 1b
4:
	call virtio_hostile
	call uart_restore
	PRINTLN "wild: mmio done"

	/* Jumps to random addresses outside RAM: each must be a fetch access fault. */
	li s3, JUMPS
5:	call rand
	li t0, RAM_BASE
	sub t1, a0, t0
	li t2, RAM_SIZE
	bgeu t1, t2, 6f
	li t1, 1 << 40		/* inside RAM: move it out */
	xor a0, a0, t1
6:	andi t1, s3, 3
	bnez t1, 7f
	li t1, 0xfffffff	/* every fourth jump lands in the low MMIO area */
	and a0, a0, t1
7:	mv s1, a0
	SET_RESUME 8f
	jalr s1
8:	addi s3, s3, -1
	bnez s3, 5b

	lla t0, trap_quiet
	sd zero, 0(t0)
	call uart_restore
	PRINT "wild: traps taken "
	lla t0, trap_count
	ld a0, 0(t0)
	call putdec
	li a0, '\n'
	call putc
	PRINTLN "wild: done"
	/* expect: wild: done */
	ld ra, 0(sp)
	ld s0, 8(sp)
	ld s1, 16(sp)
	ld s2, 24(sp)
	ld s3, 32(sp)
	addi sp, sp, 64
	ret

/* rand(): the next xorshift64 value in a0. Clobbers t0, t1. */
rand:
	lla t0, rng_state
	ld a0, 0(t0)
	slli t1, a0, 13
	xor a0, a0, t1
	srli t1, a0, 7
	xor a0, a0, t1
	slli t1, a0, 17
	xor a0, a0, t1
	sd a0, 0(t0)
	ret

/* random_access(s1 = base, s2 = size): one load or store of 1, 2, 4 or 8 bytes in range. */
random_access:
	addi sp, sp, -32
	sd ra, 0(sp)
	sd s4, 8(sp)
	sd s5, 16(sp)
	call rand
	remu s4, a0, s2
	add s4, s4, s1		/* address */
	srli s5, a0, 59		/* op: bits 63..59 */
	call rand		/* value */
	li t0, SYSCON_BASE
	bne s1, t0, 1f
	/* The syscon: never the poweroff/reboot/fail codes, never a load-only op. */
	li t0, 0xffff
	and t1, a0, t0
	li t0, 0x3333
	beq t1, t0, 2f
	li t0, 0x5555
	beq t1, t0, 2f
	li t0, 0x7777
	bne t1, t0, 3f
2:	xori a0, a0, 1
3:	ori s5, s5, 4		/* stores only */
1:	andi t0, s5, 7
	li t1, 0
	beq t0, t1, .Lld1
	li t1, 1
	beq t0, t1, .Lld2
	li t1, 2
	beq t0, t1, .Lld4
	li t1, 3
	beq t0, t1, .Lld8
	li t1, 4
	beq t0, t1, .Lsd1
	li t1, 5
	beq t0, t1, .Lsd2
	li t1, 6
	beq t0, t1, .Lsd4
	sd a0, 0(s4)
	j 9f
.Lld1:	lbu a0, 0(s4)
	j 9f
.Lld2:	lhu a0, 0(s4)
	j 9f
.Lld4:	lw a0, 0(s4)
	j 9f
.Lld8:	ld a0, 0(s4)
	j 9f
.Lsd1:	sb a0, 0(s4)
	j 9f
.Lsd2:	sh a0, 0(s4)
	j 9f
.Lsd4:	sw a0, 0(s4)
9:	ld ra, 0(sp)
	ld s4, 8(sp)
	ld s5, 16(sp)
	addi sp, sp, 32
	ret

/*
 * virtio_hostile: for each virtio-mmio slot, a driver set-up (virtio 1.2 §4.2.3.1.1) with
 * random queue sizes and ring addresses that point at the end of RAM, beyond it, into MMIO or
 * at 0, then DRIVER_OK and a notify of every queue 0..3.
 */
virtio_hostile:
	addi sp, sp, -32
	sd ra, 0(sp)
	sd s4, 8(sp)
	sd s5, 16(sp)
	li s4, 0x10001000
	li s5, 8
1:	sw zero, 0x70(s4)		/* Status: reset */
	li t0, 3
	sw t0, 0x70(s4)			/* ACKNOWLEDGE | DRIVER */
	li t0, 1
	sw t0, 0x24(s4)			/* DriverFeaturesSel = 1 */
	sw t0, 0x20(s4)			/* VIRTIO_F_VERSION_1 */
	li t0, 0xb
	sw t0, 0x70(s4)			/* FEATURES_OK */
	li a1, 0
2:	sw a1, 0x30(s4)			/* QueueSel */
	call rand
	sw a0, 0x38(s4)			/* QueueNum: anything */
	call hostile_addr
	sw a0, 0x80(s4)			/* QueueDescLow */
	srli a0, a0, 32
	sw a0, 0x84(s4)
	call hostile_addr
	sw a0, 0x90(s4)			/* QueueDriverLow */
	srli a0, a0, 32
	sw a0, 0x94(s4)
	call hostile_addr
	sw a0, 0xa0(s4)			/* QueueDeviceLow */
	srli a0, a0, 32
	sw a0, 0xa4(s4)
	li t0, 1
	sw t0, 0x44(s4)			/* QueueReady */
	addi a1, a1, 1
	li t0, 4
	bne a1, t0, 2b
	li t0, 0xf
	sw t0, 0x70(s4)			/* DRIVER_OK */
	li a1, 0
3:	sw a1, 0x50(s4)			/* QueueNotify */
	addi a1, a1, 1
	li t0, 4
	bne a1, t0, 3b
	call rand
	sw a0, 0x64(s4)			/* InterruptACK: anything */
	li t0, 0x1000
	add s4, s4, t0
	addi s5, s5, -1
	bnez s5, 1b
	ld ra, 0(sp)
	ld s4, 8(sp)
	ld s5, 16(sp)
	addi sp, sp, 32
	ret

/* hostile_addr(): a0 = a ring address that is not the guest's own code (keeps a1). */
hostile_addr:
	addi sp, sp, -16
	sd ra, 0(sp)
	call rand
	andi t0, a0, 3
	srli a0, a0, 8
	li t1, 0
	beq t0, t1, 1f
	li t1, 1
	beq t0, t1, 2f
	li t1, 2
	beq t0, t1, 3f
	li a0, 0			/* 0 */
	j 9f
1:	li t1, RAM_BASE + RAM_SIZE - 16	/* straddles the end of RAM */
	andi a0, a0, 15
	add a0, a0, t1
	j 9f
2:	li t1, 1 << 40			/* far beyond RAM */
	or a0, a0, t1
	j 9f
3:	li t1, 0x10000000		/* MMIO */
	andi a0, a0, 0xff
	add a0, a0, t1
9:	ld ra, 0(sp)
	addi sp, sp, 16
	ret

/* uart_restore: 8N1, divisor latch off, no loopback, no interrupts (ns16550a registers). */
uart_restore:
	li t0, UART_BASE
	li t1, 0x03
	sb t1, 3(t0)		/* LCR */
	sb zero, 1(t0)		/* IER */
	sb zero, 4(t0)		/* MCR */
	li t1, 0x07
	sb t1, 2(t0)		/* FCR: FIFO on, cleared */
	ret

	.data
	.balign 8
rng_state:
	.dword 0x9e3779b97f4a7c15
regions:		/* base, size; a zero size ends the table */
	.dword 0x10000000, 0x100	/* UART */
	.dword 0x10001000, 0x8000	/* virtio-mmio x8 */
	.dword 0xc000000, 0x600000	/* PLIC */
	.dword 0x2000000, 0x10000	/* CLINT */
	.dword 0x101000, 0x1000		/* RTC */
	.dword 0x100000, 0x1000		/* syscon */
	.dword 0x0, 0x100000		/* holes */
	.dword 0x10100000, 0x1000000
	.dword 0x84000000, 0x10000000
	.dword 0, 0
