/*
 * ptw.S - hostile page tables for S-mode Sv39 (priv 1.12 §4.3.2, §4.4). A walk that reads a
 * PTE from nowhere raises an access fault of the original access type (fetch 1, load 5,
 * store 7); a leaf whose physical page is outside RAM gives an access fault on the access; a
 * reserved encoding (W without R), a misaligned superpage and a U page touched from S with
 * SUM = 0 give page faults. mtval is the virtual address in every case.
 */
#include "guest.h"

#define HOLE 0x5000000
#define PTE_V 0x01
#define PTE_R 0x02
#define PTE_W 0x04
#define PTE_X 0x08
#define PTE_U 0x10
#define PTE_A 0x40
#define PTE_D 0x80
#define LEAF(pa, f) ((((pa) >> 12) << 10) | PTE_V | PTE_A | PTE_D | (f))
#define TABLE(pa) ((((pa) >> 12) << 10) | PTE_V)
#define SATP_SV39 (8 << 60)

	.text
	.globl guest_main
guest_main:
	addi sp, sp, -16
	sd ra, 0(sp)
	PRINTLN "ptw: start"

	/* The root table itself is in a hole: the first fetch faults. */
	li t0, SATP_SV39 | (HOLE >> 12)
	csrw satp, t0
	sfence.vma
	SET_RESUME 1f
	ENTER 1, s_code
	/* expect: trap cause=1 tval=@s_code epc=@s_code */
1:	lla t0, empty		/* root entry 6 = TABLE(empty) */
	srli t0, t0, 12
	slli t0, t0, 10
	ori t0, t0, PTE_V
	lla t1, pt_root
	sd t0, 6 * 8(t1)
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
	PRINTLN "ptw: done"
	ld ra, 0(sp)
	addi sp, sp, 16
	ret

s_code:
	li s0, 0x1000		/* root entry 0: a table in a hole */
walk_load:
	ld a0, 0(s0)
	/* expect: trap cause=5 tval=0x1000 epc=@walk_load */
walk_store:
	sd a0, 8(s0)
	/* expect: trap cause=7 tval=0x1008 epc=@walk_store */
	li s0, 0x40000010	/* root entry 1: a gigapage at 4 GiB, beyond RAM */
far_load:
	lw a0, 0(s0)
	/* expect: trap cause=5 tval=0x40000010 epc=@far_load */
far_store:
	sw a0, 4(s0)
	/* expect: trap cause=7 tval=0x40000014 epc=@far_store */
	li s0, 0xc0000020	/* root entry 3: W without R */
wr_load:
	ld a0, 0(s0)
	/* expect: trap cause=13 tval=0xc0000020 epc=@wr_load */
	li s0, 0x100000040	/* root entry 4: gigapage with PPN[1:0] != 0 */
misaligned_sp:
	ld a0, 0(s0)
	/* expect: trap cause=13 tval=0x100000040 epc=@misaligned_sp */
	li s0, 0x140000000	/* root entry 5: a U page */
u_page:
	sd a0, 0(s0)
	/* expect: trap cause=15 tval=0x140000000 epc=@u_page */
	li s0, 0x180000008	/* root entry 6: a table of invalid entries in RAM */
empty_table:
	ld a0, 0(s0)
	/* expect: trap cause=13 tval=0x180000008 epc=@empty_table */
	li s0, 0x1000		/* a fetch through the table in a hole */
walk_fetch:
	jalr s0
	/* expect: trap cause=1 tval=0x1000 epc=0x1000 */
	j walk_fetch
	/* expect: ptw: done */

	.data
	.balign 4096
pt_root:
	.dword TABLE(HOLE)				/* VA 0x000000000 */
	.dword LEAF(0x100000000, PTE_R | PTE_W)		/* VA 0x040000000 */
	.dword LEAF(RAM_BASE, PTE_R | PTE_W | PTE_X)	/* VA 0x080000000: identity */
	.dword LEAF(RAM_BASE, PTE_W)			/* VA 0x0c0000000: reserved */
	.dword LEAF(RAM_BASE + 0x1000, PTE_R)		/* VA 0x100000000: misaligned */
	.dword LEAF(RAM_BASE, PTE_R | PTE_W | PTE_U)	/* VA 0x140000000: user */
	.dword 0					/* VA 0x180000000: set at run time */
	.fill 505, 8, 0
empty:
	.fill 512, 8, 0
