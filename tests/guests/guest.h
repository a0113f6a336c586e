/*
 * guest.h - addresses and macros shared by the bare-metal test guests (tests/guests/*.S).
 *
 * Each guest defines guest_main (called in M-mode with a stack, mtvec set to the shared trap
 * handler of common.S, PMP entry 0 open to every mode, mstatus.FS = Initial) and returns to
 * power off through the syscon. The trap handler prints
 *     trap cause=<decimal> tval=0x<hex> epc=0x<hex>      (exceptions)
 *     trap cause=0x<hex>                                   (interrupts)
 * on the UART and then: for fetch faults (causes 1, 12) and ECALLs from U/S (8, 9) it resumes
 * in M-mode at the address in trap_resume (set with SET_RESUME); for other exceptions it skips
 * the faulting instruction (2 or 4 bytes) and returns to the mode that trapped; for interrupts
 * it silences the source (mtimecmp = max, MSIP = 0) and returns.
 *
 * Lines a test script must find in the output are written in the guest's source as
 * comments of the form   expect: TEXT   where @symbol in TEXT stands for that symbol's
 * address (tests/guests/test_guests.sh substitutes it from the ELF's symbol table).
 */
#ifndef KUMO_TEST_GUEST_H
#define KUMO_TEST_GUEST_H

#define UART_BASE 0x10000000   /* ns16550a: THR at +0, LSR at +5 (bit 5: THR empty) */
#define SYSCON_BASE 0x100000   /* sifive,test: 0x5555 poweroff, 0x7777 reboot, 0x3333 fail */
#define CLINT_BASE 0x2000000
#define CLINT_MTIMECMP (CLINT_BASE + 0x4000)
#define CLINT_MTIME (CLINT_BASE + 0xbff8)
#define RAM_BASE 0x80000000
#define RAM_SIZE 0x4000000     /* the test runs kumo with --mem 64M */

#define MSTATUS_MPP (3 << 11)
#define MSTATUS_MIE (1 << 3)
#define MIE_MTIE (1 << 7)

/* Prints a string literal (no newline added) through puts. Clobbers caller-saved registers. */
.macro PRINT str
	.pushsection .rodata
.Lstr\@:
	.asciz "\str"
	.popsection
	lla a0, .Lstr\@
	call puts
.endm

/* Prints a string literal followed by a newline. */
.macro PRINTLN str
	PRINT "\str\n"
.endm

/* Where the trap handler resumes (in M-mode) after a fetch fault or an ECALL from U/S. */
.macro SET_RESUME label
	lla t0, \label
	lla t1, trap_resume
	sd t0, 0(t1)
.endm

/* Drops to privilege `mode` (0 U, 1 S) at `target` with mret; priv 1.12 §3.3.2. */
.macro ENTER mode, target
	li t0, MSTATUS_MPP
	csrc mstatus, t0
	li t0, (\mode) << 11
	csrs mstatus, t0
	lla t0, \target
	csrw mepc, t0
	mret
.endm

#endif
