/*
 * ecall.S - drops to U-mode and to S-mode with mret and executes ECALL there (causes 8 and 9,
 * priv 1.12 §3.3.1), then tries privileged things from S and U that must be illegal
 * instructions (priv 1.12 §2.1: a CSR above the current privilege, MRET below M, SRET in U,
 * sstatus from U).
 */
#include "guest.h"

	.text
	.globl guest_main
guest_main:
	addi sp, sp, -16
	sd ra, 0(sp)
	PRINTLN "ecall: start"
	SET_RESUME 1f
	ENTER 0, u_ecall
	/* expect: trap cause=8 tval=0x0 epc=@u_ecall_insn */
1:	csrr t0, mscratch	/* M-only: traps unless the handler resumed us in M-mode */
	PRINTLN "ecall: back from U"
	/* expect: ecall: back from U */
	SET_RESUME 1f
	ENTER 1, s_ecall
	/* expect: trap cause=9 tval=0x0 epc=@s_ecall_insn */
1:	PRINTLN "ecall: back from S"
	/* expect: ecall: back from S */

	SET_RESUME 1f
	ENTER 1, s_illegal
1:	SET_RESUME 1f
	ENTER 0, u_illegal
1:	PRINTLN "ecall: done"
	ld ra, 0(sp)
	addi sp, sp, 16
	ret

u_ecall:
	li a7, 0x10
u_ecall_insn:
	ecall
	j u_ecall

s_ecall:
	li a7, 0x10
	li a6, 0
s_ecall_insn:
	ecall
	j s_ecall

s_illegal:
	csrr a0, mstatus
	/* expect: trap cause=2 tval=0x30002573 epc=@s_illegal */
s_mscratch:
	csrw mscratch, a0
	/* expect: trap cause=2 tval=0x34051073 epc=@s_mscratch */
s_mret:
	mret
	/* expect: trap cause=2 tval=0x30200073 epc=@s_mret */
s_pmp:
	csrw pmpcfg0, zero
	/* expect: trap cause=2 tval=0x3a001073 epc=@s_pmp */
	csrr a0, sstatus	/* legal in S */
s_end:
	ecall
	/* expect: trap cause=9 tval=0x0 epc=@s_end */

u_illegal:
	csrr a0, sstatus
	/* expect: trap cause=2 tval=0x10002573 epc=@u_illegal */
u_sret:
	sret
	/* expect: trap cause=2 tval=0x10200073 epc=@u_sret */
u_sfence:
	sfence.vma
	/* expect: trap cause=2 tval=0x12000073 epc=@u_sfence */
u_satp:
	csrw satp, zero
	/* expect: trap cause=2 tval=0x18001073 epc=@u_satp */
u_end:
	ecall
	/* expect: trap cause=8 tval=0x0 epc=@u_end */
	/* back in M-mode, after the U-mode code above: */
	/* expect: ecall: done */
