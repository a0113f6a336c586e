/*
 * paging.S - S-mode with Sv39 translation (priv 1.12 §4.4) over a three-entry root table of
 * gigapages: VA 0x80000000 maps RAM identically (RWX), VA 0xc0000000 maps RAM read-only, the
 * rest is invalid. Loads, stores, AMOs and fetches that the table refuses must raise page
 * faults (causes 13, 15, 12) with mtval = the faulting virtual address; non-canonical
 * addresses (bits 63..39 not all equal to bit 38) fault too (priv 1.12 §4.4.1).
 */
#include "guest.h"

#define PTE_V 0x01
#define PTE_R 0x02
#define PTE_W 0x04
#define PTE_X 0x08
#define PTE_A 0x40
#define PTE_D 0x80
#define SATP_SV39 (8 << 60)

	.text
	.globl guest_main
guest_main:
	addi sp, sp, -16
	sd ra, 0(sp)
	PRINTLN "paging: start"
	lla t0, pt_root
	srli t0, t0, 12
	li t1, SATP_SV39
	or t0, t0, t1
	csrw satp, t0
	sfence.vma
	SET_RESUME 1f
	ENTER 1, s_code
1:	csrw satp, zero
	sfence.vma
	PRINTLN "paging: done"
	ld ra, 0(sp)
	addi sp, sp, 16
	ret

	/* S-mode, translated; each faulting instruction is skipped by the M-mode handler. */
s_code:
	li s0, 0x40000123
pf_load:
	ld a0, 0(s0)
	/* expect: trap cause=13 tval=0x40000123 epc=@pf_load */
pf_store:
	sw a0, 8(s0)
	/* expect: trap cause=15 tval=0x4000012b epc=@pf_store */
	addi s1, s0, -0x123
pf_amo:
	amoor.d a0, a0, (s1)
	/* expect: trap cause=15 tval=0x40000000 epc=@pf_amo */
	/* The read-only alias: loads see RAM, stores fault. */
	lla s1, marker
	li t0, 0xc0000000 - RAM_BASE
	add s1, s1, t0		/* marker's alias: 0xc0000000 + (marker - RAM_BASE) */
ro_load:
	ld a0, 0(s1)
	li t0, 0x600dc0de
	beq a0, t0, 1f
	.4byte 0x0000000b	/* wrong data: an illegal instruction makes it visible */
1:
ro_store:
	sd a0, 0(s1)
	/* expect: trap cause=15 tval=@marker+0x40000000 epc=@ro_store */
	li s0, 0x8000000000	/* bit 39 set, bit 38 clear: not canonical */
pf_noncanon:
	lbu a0, 0(s0)
	/* expect: trap cause=13 tval=0x8000000000 epc=@pf_noncanon */
	li s0, -0x40000000	/* 0xffffffffc0000000: canonical, root entry 511, invalid */
pf_high:
	lw a0, 0(s0)
	/* expect: trap cause=13 tval=0xffffffffc0000000 epc=@pf_high */
	/* Last: a fetch from an unmapped page resumes in M-mode. */
	li s0, 0x40000000
pf_fetch:
	jalr s0
	/* expect: trap cause=12 tval=0x40000000 epc=0x40000000 */
	j pf_fetch
	/* printed by guest_main in M-mode after the fetch fault: */
	/* expect: paging: done */

	.data
	.balign 4096
pt_root:
	.dword 0						/* VA 0x00000000 */
	.dword 0						/* VA 0x40000000 */
	.dword (RAM_BASE >> 12) << 10 | PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D
	.dword (RAM_BASE >> 12) << 10 | PTE_V | PTE_R | PTE_A	/* VA 0xc0000000 */
	.fill 508, 8, 0
	.balign 8
marker:
	.dword 0x600dc0de
