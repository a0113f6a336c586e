/*
 * access.S - M-mode accesses to nothing: fetches from unmapped addresses and beyond
 * RAM (access fault, cause 1), loads and stores to unassigned MMIO holes and beyond RAM
 * (cause 5 and 7, AMOs report 7) and misaligned AMOs (cause 6). priv 1.12 §3.1.15,
 * unpriv 20191213 §8.4 (AMOs must be naturally aligned).
 */
#include "guest.h"

#define HOLE 0x5000000			/* between the CLINT and the PLIC: nothing there */
#define BEYOND (RAM_BASE + RAM_SIZE)	/* first byte after 64 MiB of RAM */

	.text
	.globl guest_main
guest_main:
	addi sp, sp, -16
	sd ra, 0(sp)
	PRINTLN "access: start"

	/* Instruction fetches: mepc = tval = the target. */
	SET_RESUME 1f
	li t2, HOLE
	jalr t2
	/* expect: trap cause=1 tval=0x5000000 epc=0x5000000 */
1:	SET_RESUME 1f
	li t2, BEYOND
	jalr t2
	/* expect: trap cause=1 tval=0x84000000 epc=0x84000000 */
1:	SET_RESUME 1f
	li t2, 0x40000000000
	jalr t2
	/* expect: trap cause=1 tval=0x40000000000 epc=0x40000000000 */
1:
	/* Loads and stores to an MMIO hole. */
	li s0, HOLE
ld_hole:
	ld a0, 8(s0)
	/* expect: trap cause=5 tval=0x5000008 epc=@ld_hole */
lb_hole:
	lb a0, 3(s0)
	/* expect: trap cause=5 tval=0x5000003 epc=@lb_hole */
sw_hole:
	sw a0, 16(s0)
	/* expect: trap cause=7 tval=0x5000010 epc=@sw_hole */
amo_hole:
	amoadd.w a0, a1, (s0)
	/* expect: trap cause=7 tval=0x5000000 epc=@amo_hole */
lr_hole:
	lr.d a0, (s0)
	/* expect: trap cause=5 tval=0x5000000 epc=@lr_hole */
flw_hole:
	flw fa0, 4(s0)
	/* expect: trap cause=5 tval=0x5000004 epc=@flw_hole */
c_sd_hole:
	c.sd a0, 8(s0)
	/* expect: trap cause=7 tval=0x5000008 epc=@c_sd_hole */

	/* Beyond the end of RAM, and at the top of the address space. */
	li s0, BEYOND
ld_beyond:
	ld a0, 0(s0)
	/* expect: trap cause=5 tval=0x84000000 epc=@ld_beyond */
sd_beyond:
	sd a0, 0x100(s0)
	/* expect: trap cause=7 tval=0x84000100 epc=@sd_beyond */
	li s0, -8
ld_top:
	ld a0, 0(s0)
	/* expect: trap cause=5 tval=0xfffffffffffffff8 epc=@ld_top */
	li s0, 0x100000000000
sd_far:
	sd a0, 0(s0)
	/* expect: trap cause=7 tval=0x100000000000 epc=@sd_far */

	/* Misaligned atomics in RAM. */
	lla s0, scratch
	addi s1, s0, 2
amo_misaligned:
	amoswap.w a0, a1, (s1)
	/* expect: trap cause=6 tval=@scratch+2 epc=@amo_misaligned */
	addi s1, s0, 4
amo_misaligned_d:
	amoadd.d a0, a1, (s1)
	/* expect: trap cause=6 tval=@scratch+4 epc=@amo_misaligned_d */

	/* Memory still works afterwards. */
	li a0, 0x1234
	sd a0, 0(s0)
	ld a1, 0(s0)
	bne a0, a1, fail
	PRINTLN "access: done"
	/* expect: access: done */
	ld ra, 0(sp)
	addi sp, sp, 16
	ret

	.data
	.balign 16
scratch:
	.space 64
