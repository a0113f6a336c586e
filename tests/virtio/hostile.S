/*
 * hostile.S - a bare-metal guest (M-mode, linked with tests/guests/common.S) that attacks the
 * virtio-blk device in slot 0 (0x10001000) with malformed descriptor chains, then reads a
 * sector from the well-formed read-only disk in slot 1 (0x10002000). tests/virtio/
 * test_hostile.py runs it as `kumo run --bios hostile.bin --mem 64M --disk path=A
 * --disk path=B,readonly=on` and checks each "case NAME: RESULT" line:
 *   needs-reset isr=0x2   the device set DEVICE_NEEDS_RESET and raised a config interrupt
 *   status N              the request completed with virtio-blk status N (1 = IOERR)
 *   timeout               nothing happened (a failure)
 * Device programming follows virtio 1.2 §3.1.1 and §4.2.3 (virtio-mmio, version 2); it
 * polls instead of taking interrupts.
 */
#include "guest.h"

#define DEV_A 0x10001000
#define DEV_B 0x10002000
#define DESC 0x80100000
#define AVAIL 0x80101000
#define USED 0x80102000
#define HDR 0x80103000
#define DATA 0x80104000
#define STATUS 0x80105000
#define IND 0x80106000
#define RAM_END (RAM_BASE + RAM_SIZE)
#define QSIZE 8

#define F_NEXT 1
#define F_WRITE 2
#define F_INDIRECT 4
#define FEAT_INDIRECT (1 << 28)

/* Sets descriptor `idx` of the table at `table`: addr, len, flags, next. */
.macro DESCR table, idx, addr, len, flags, next
	li a0, \table + 16 * (\idx)
	li a1, \addr
	li a2, \len
	li a3, (\flags) | ((\next) << 16)
	call set_desc
.endm

/* A request header at HDR: type, sector. */
.macro HEADER type, sector
	li t0, HDR
	li t1, \type
	sw t1, 0(t0)
	sw zero, 4(t0)
	li t1, \sector
	sd t1, 8(t0)
.endm

	.text
	.globl guest_main
guest_main:
	addi sp, sp, -16
	sd ra, 0(sp)
	PRINTLN "virtio hostile guest"

	/* 1. A chain that loops: 0 -> 1 -> 0. */
	call init_a
	HEADER 0, 0
	DESCR DESC, 0, HDR, 16, F_NEXT, 1
	DESCR DESC, 1, DATA, 512, F_WRITE | F_NEXT, 0
	li a1, 0
	lla a2, s_loop
	call submit_report

	/* 2. A buffer whose length runs past the end of RAM. */
	call init_a
	DESCR DESC, 0, HDR, 16, F_NEXT, 1
	DESCR DESC, 1, RAM_END - 256, 4096, F_WRITE | F_NEXT, 2
	DESCR DESC, 2, STATUS, 1, F_WRITE, 0
	li a1, 0
	lla a2, s_past_ram
	call submit_report

	/* 3. A buffer address outside RAM (the CLINT's MMIO range). */
	call init_a
	DESCR DESC, 0, HDR, 16, F_NEXT, 1
	DESCR DESC, 1, CLINT_BASE, 512, F_WRITE | F_NEXT, 2
	DESCR DESC, 2, STATUS, 1, F_WRITE, 0
	li a1, 0
	lla a2, s_outside_ram
	call submit_report

	/* 4. An address that wraps around the 64-bit space. */
	call init_a
	DESCR DESC, 0, -256, 4096, 0, 0
	li a1, 0
	lla a2, s_wrap
	call submit_report

	/* 5. Too many descriptors: a 64-entry indirect table on an 8-entry queue. */
	call init_a
	DESCR DESC, 0, IND, 16 * 64, F_INDIRECT, 0
	li a1, 0
	lla a2, s_too_many
	call submit_report

	/* 6. An indirect table outside RAM. */
	call init_a
	DESCR DESC, 0, RAM_END - 32, 64, F_INDIRECT, 0
	li a1, 0
	lla a2, s_ind_outside
	call submit_report

	/* 7. A nested indirect table. */
	call init_a
	DESCR IND, 0, IND, 32, F_INDIRECT, 0
	DESCR IND, 1, STATUS, 1, F_WRITE, 0
	DESCR DESC, 0, IND, 32, F_INDIRECT, 0
	li a1, 0
	lla a2, s_nested
	call submit_report

	/* 8. A loop inside an indirect table. */
	call init_a
	DESCR IND, 0, HDR, 16, F_NEXT, 1
	DESCR IND, 1, STATUS, 1, F_WRITE | F_NEXT, 0
	DESCR DESC, 0, IND, 32, F_INDIRECT, 0
	li a1, 0
	lla a2, s_ind_loop
	call submit_report

	/* 9. A head index beyond the queue size. */
	call init_a
	li a1, 200
	lla a2, s_head
	call submit_report

	/* 10. A well-formed read beyond the disk's capacity: IOERR. */
	call init_a
	HEADER 0, 0x100000000
	call good_chain
	li a1, 0
	lla a2, s_beyond
	call submit_report

	/* 11. The device works again after a reset: read sector 0 of disk A. */
	call init_a
	HEADER 0, 0
	call good_chain
	li a1, 0
	lla a2, s_a_again
	call submit_report

	/* 12. A write to the read-only disk B: IOERR. */
	li a0, DEV_B
	call dev_init
	HEADER 1, 0
	DESCR DESC, 0, HDR, 16, F_NEXT, 1
	DESCR DESC, 1, DATA, 512, F_NEXT, 2
	DESCR DESC, 2, STATUS, 1, F_WRITE, 0
	li a0, DEV_B
	li a1, 0
	lla a2, s_ro_write
	call submit_report_dev

	/* 13. Disk B serves a good read; print its first 16 bytes. */
	li a0, DEV_B
	call dev_init
	HEADER 0, 0
	call good_chain
	li t0, DATA
	sd zero, 0(t0)
	sd zero, 8(t0)
	sb zero, 16(t0)
	li a0, DEV_B
	li a1, 0
	lla a2, s_b_read
	call submit_report_dev
	PRINT "disk B sector 0: "
	li a0, DATA
	call puts
	li a0, '\n'
	call putc

	PRINTLN "virtio hostile guest: done"
	ld ra, 0(sp)
	addi sp, sp, 16
	ret

/* good_chain: header, a 512-byte writable data buffer, the status byte. */
good_chain:
	addi sp, sp, -16
	sd ra, 0(sp)
	DESCR DESC, 0, HDR, 16, F_NEXT, 1
	DESCR DESC, 1, DATA, 512, F_WRITE | F_NEXT, 2
	DESCR DESC, 2, STATUS, 1, F_WRITE, 0
	ld ra, 0(sp)
	addi sp, sp, 16
	ret

/* set_desc(a0 = descriptor address, a1 = addr, a2 = len, a3 = flags | next << 16) */
set_desc:
	sd a1, 0(a0)
	sw a2, 8(a0)
	sh a3, 12(a0)
	srli a3, a3, 16
	sh a3, 14(a0)
	ret

init_a:
	li a0, DEV_A
	j dev_init

/*
 * dev_init(a0 = device base): reset, handshake with VERSION_1 + INDIRECT_DESC, queue 0 with 8
 * entries at DESC/AVAIL/USED, DRIVER_OK. Fails the test if the device is not a virtio-blk.
 */
dev_init:
	li t0, 0x74726976
	lw t1, 0(a0)
	bne t0, t1, 9f
	lw t1, 4(a0)
	li t0, 2
	bne t0, t1, 9f
	lw t1, 8(a0)
	bne t0, t1, 9f /* device id 2: block */
	sw zero, 0x70(a0)
	li t0, 1
	sw t0, 0x70(a0)
	li t0, 3
	sw t0, 0x70(a0)
	sw zero, 0x24(a0)
	li t0, FEAT_INDIRECT
	sw t0, 0x20(a0)
	li t0, 1
	sw t0, 0x24(a0)
	sw t0, 0x20(a0)
	li t0, 0xb
	sw t0, 0x70(a0)
	lw t1, 0x70(a0)
	andi t1, t1, 8
	beqz t1, 9f
	/* Fresh rings: avail flags/idx and used flags/idx are zero. */
	li t0, AVAIL
	sd zero, 0(t0)
	li t0, USED
	sd zero, 0(t0)
	sw zero, 0x30(a0)
	li t0, QSIZE
	sw t0, 0x38(a0)
	li t0, DESC
	sw t0, 0x80(a0)
	sw zero, 0x84(a0)
	li t0, AVAIL
	sw t0, 0x90(a0)
	sw zero, 0x94(a0)
	li t0, USED
	sw t0, 0xa0(a0)
	sw zero, 0xa4(a0)
	li t0, 1
	sw t0, 0x44(a0)
	li t0, 0xf
	sw t0, 0x70(a0)
	fence iorw, iorw
	ret
9:	PRINTLN "dev_init: not a working virtio-blk device"
	j fail

submit_report:
	li a0, DEV_A
	/* fall through */
/*
 * submit_report_dev(a0 = device, a1 = head, a2 = case name): offers head at avail slot 0,
 * notifies queue 0, polls for a used entry or NEEDS_RESET and prints the outcome.
 */
submit_report_dev:
	addi sp, sp, -32
	sd ra, 0(sp)
	sd s0, 8(sp)
	sd s1, 16(sp)
	mv s0, a0
	mv s1, a2
	li t0, STATUS
	li t1, 0xff
	sb t1, 0(t0)
	li t0, AVAIL
	sh a1, 4(t0)
	fence w, w
	li t1, 1
	sh t1, 2(t0)
	fence iorw, iorw
	sw zero, 0x50(s0)
	li t2, 20000000
1:	lw t3, 0x70(s0)
	andi t4, t3, 0x40
	bnez t4, 3f
	li t0, USED
	lhu t4, 2(t0)
	bnez t4, 4f
	addi t2, t2, -1
	bnez t2, 1b
	PRINT "case "
	mv a0, s1
	call puts
	PRINTLN ": timeout"
	j 5f
3:	PRINT "case "
	mv a0, s1
	call puts
	PRINT ": needs-reset isr="
	lw a0, 0x60(s0)
	sw a0, 0x64(s0)
	call puthex
	li a0, '\n'
	call putc
	j 5f
4:	fence iorw, iorw
	lw a0, 0x60(s0)
	sw a0, 0x64(s0)
	PRINT "case "
	mv a0, s1
	call puts
	PRINT ": status "
	li t0, STATUS
	lbu a0, 0(t0)
	call putdec
	li a0, '\n'
	call putc
5:	ld ra, 0(sp)
	ld s0, 8(sp)
	ld s1, 16(sp)
	addi sp, sp, 32
	ret

	.section .rodata
s_loop: .asciz "loop"
s_past_ram: .asciz "length-past-ram"
s_outside_ram: .asciz "address-outside-ram"
s_wrap: .asciz "address-wraps"
s_too_many: .asciz "too-many-descriptors"
s_ind_outside: .asciz "indirect-outside-ram"
s_nested: .asciz "nested-indirect"
s_ind_loop: .asciz "indirect-loop"
s_head: .asciz "head-out-of-range"
s_beyond: .asciz "read-beyond-capacity"
s_a_again: .asciz "disk-A-after-reset"
s_ro_write: .asciz "write-read-only-disk"
s_b_read: .asciz "disk-B-read"
