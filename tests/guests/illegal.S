/*
 * illegal.S - executes words that are not instructions of RV64GC (M-mode).
 * Each must raise an illegal-instruction exception (cause 2) with mtval holding the
 * instruction bits (priv 1.12 §3.1.16), after which the handler skips it.
 */
#include "guest.h"

	.text
	.globl guest_main
guest_main:
	addi sp, sp, -16
	sd ra, 0(sp)
	PRINTLN "illegal: start"
ill_zero:
	.2byte 0x0000		/* defined illegal (unpriv 20191213 §16.1) */
	/* expect: trap cause=2 tval=0x0 epc=@ill_zero */
ill_lwsp:
	.2byte 0x4002		/* c.lwsp x0: reserved */
	/* expect: trap cause=2 tval=0x4002 epc=@ill_lwsp */
ill_custom0:
	.4byte 0x0000000b	/* custom-0 opcode: nothing implemented there */
	/* expect: trap cause=2 tval=0xb epc=@ill_custom0 */
ill_reserved:
	.4byte 0x12345677	/* opcode 1110111: reserved */
	/* expect: trap cause=2 tval=0x12345677 epc=@ill_reserved */
ill_rm:
	.4byte 0x02b55553	/* fadd.d fa0, fa0, fa1 with rm = 5 (reserved) */
	/* expect: trap cause=2 tval=0x2b55553 epc=@ill_rm */
ill_csr:
	csrr a0, 0x7ff		/* no CSR at 0x7ff */
	/* expect: trap cause=2 tval=0x7ff02573 epc=@ill_csr */
ill_ro_csr:
	csrw mhartid, a0	/* read-only CSR written (priv 1.12 §2.1) */
	/* expect: trap cause=2 tval=0xf1451073 epc=@ill_ro_csr */
ill_amo:
	.4byte 0xf8b5252f	/* AMO funct5 11111 with width .w: reserved */
	/* expect: trap cause=2 tval=0xf8b5252f epc=@ill_amo */
ill_shamt:
	.4byte 0x0205951b	/* slliw with shamt[5] set: reserved on RV64 */
	/* expect: trap cause=2 tval=0x205951b epc=@ill_shamt */
	PRINTLN "illegal: done"
	/* expect: illegal: done */
	ld ra, 0(sp)
	addi sp, sp, 16
	ret
