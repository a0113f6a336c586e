/*
 * jit.c - the x86-64 translator for RV64 integer code (see jit.h for the contract).
 *
 * Host registers inside translated code:
 *   rbx  struct rv64_cpu * (guest x[i] at [rbx + 8 i], pc, TLBs)
 *   r12  virtual address of the guest page the block belongs to
 *   r13  instruction budget left << BUDGET_SHIFT | TLB hits counted in this run (each block
 *        subtracts its length and adds its loads and stores on entry, in one add; a side
 *        exit gives back what it did not run; rv64_jit_run() splits the two)
 *   r14, r15, rbp, rdi, r8-r11 (rsi too in blocks without loads and stores): guest
 *        registers cached for the block (struct em's hreg[])
 *   rax, rcx, rdx (rsi, rdi when not caching): scratch; calls clobber them and r8-r11
 *   [rsp], [rsp + 8]: scratch (a slow load's value)
 * The shared entry saves the callee-saved registers and jumps to the block; every exit sets
 * cpu->pc and rdx (the status) and jumps to the shared epilogue, which returns r13 in rax.
 */
#include "accel/rv64/jit.h"

#ifdef RV64_JIT

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "accel/rv64/mmu.h"
#include "kumo/base.h"

#define JIT_BUF_SIZE (32u << 20) /* per hart; flushed whole when full */
/*
 * More than one instruction's code or one side exit's code can take: the emitter writes
 * without bounds checks and checks room() once per such unit instead, keeping this far from
 * the end of the buffer.
 */
#define JIT_EMIT_MAX 4096u
#define JIT_BLOCK_MAX 64          /* guest instructions per block */
#define JIT_STUBS_MAX (2 * JIT_BLOCK_MAX)
#define PAGE_SLOTS 2048           /* 2-byte parcels per guest page */

enum { RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8, R9, R10, R11, R12, R13, R14, R15 };

#define OFF_X(r) ((int32_t)(offsetof(struct rv64_cpu, x) + 8 * (r)))
#define OFF_PC ((int32_t)offsetof(struct rv64_cpu, pc))
#define OFF_PRIV ((int32_t)offsetof(struct rv64_cpu, priv))
#define OFF_VM ((int32_t)offsetof(struct rv64_cpu, vm))
#define OFF_F(r) ((int32_t)(offsetof(struct rv64_cpu, f) + 8 * (r)))
#define OFF_MSTATUS ((int32_t)offsetof(struct rv64_cpu, mstatus))
#define MS_FS 0x6000u /* mstatus.FS, priv 1.12 §3.1.6.6 */
#define MS_TVM (1ull << 20) /* mstatus.TVM, priv 1.12 §3.1.6.5 */
#define OFF_FFLAGS ((int32_t)offsetof(struct rv64_cpu, fflags))
#define OFF_FRM ((int32_t)offsetof(struct rv64_cpu, frm))
/*
 * r13's budget field starts here; below it, the run's TLB hits, which stay under 2^20 as
 * rv64_jit_run() caps a run's budget at RUN_MAX (a run retires at most that many instructions
 * plus one block, each with at most one access, plus one block's worth counted up front).
 */
#define BUDGET_SHIFT 20
#define RUN_MAX (1 << 18)
#define OFF_TLB(acc) ((int32_t)(offsetof(struct rv64_cpu, tlb) + (acc) * sizeof(((struct rv64_cpu *)0)->tlb[0])))
#define OFF_ALLOW(acc) ((int32_t)(offsetof(struct rv64_cpu, tlb_allow) + (acc) * sizeof(uint64_t)))
#define OFF_RESV_ADDR ((int32_t)offsetof(struct rv64_cpu, resv_addr))
#define OFF_RESV_VAL ((int32_t)offsetof(struct rv64_cpu, resv_val))
#define OFF_TLB_PADDR ((int32_t)offsetof(struct rv64_tlb_entry, paddr))

bool rv64_jit_wanted(void)
{
	const char *s = getenv("KUMO_JIT");

	return !(s && s[0] == '0');
}

/* --- The emitter: writes through the RW view; positions are offsets valid in both views. */

struct em {
	struct rv64_jit *j;
	uint64_t pos;
	uint64_t limit; /* room() fails beyond this: j->size - JIT_EMIT_MAX */
	bool full;
	/*
	 * Guest registers cached in host registers for the whole block (hreg[x] >= 0): loaded
	 * on entry, written back to cpu->x[] (writeback_regs()) before every exit, side exit and
	 * helper call; caller-saved ones are reloaded after calls (reload_regs()).
	 */
	int8_t hreg[32];
	/*
	 * Guest registers the block writes (bit x), known in full once its last instruction is
	 * being translated: exits, which all come from there or later, write back only these;
	 * the others still equal cpu->x[]. A write-back before a helper call in the middle of
	 * the block takes all (writeback_all()): a loop may have written later ones already.
	 */
	uint32_t written;
	/*
	 * A TLB group (mem_fast()): true right after an integer load (class RV64_ACC_READ) or
	 * store (RV64_ACC_WRITE) through x[grp_rs1], a register cached in a host register that
	 * the access left unchanged. Then, wherever the code emitted so far goes on here, rcx
	 * holds the host addend and rdx the tag | allow of the page that access hit, or rdx is
	 * 0 (a slow path ran; its stub zeroes rdx), which no access matches. The next
	 * instruction, if it is a load or store of the same class through the same register,
	 * checks only that it falls in that page (a follower). Its correctness rests on the
	 * rcx/rdx pair alone; the same base register only makes a hit likely. Everything else
	 * ends the group (emit_block()), and jumps inside the block never land on a follower.
	 */
	bool grp_valid;
	uint8_t grp_rs1, grp_acc;
};

/* True when the next unit (an instruction, a side exit) fits; else marks the buffer full. */
static bool room(struct em *e)
{
	if (e->pos > e->limit)
		e->full = true;
	return !e->full;
}

static void b1(struct em *e, unsigned v)
{
	e->j->rw[e->pos++] = (uint8_t)v;
}

static void b4(struct em *e, uint32_t v)
{
	memcpy(e->j->rw + e->pos, &v, 4); /* little-endian, like x86 immediates */
	e->pos += 4;
}

static void b8(struct em *e, uint64_t v)
{
	b4(e, (uint32_t)v);
	b4(e, (uint32_t)(v >> 32));
}

static void patch32(struct em *e, uint64_t at, uint32_t v)
{
	memcpy(e->j->rw + at, &v, 4);
}

/* Opcode bytes, most significant first (0x0fb6 is 0f b6). */
static void opc(struct em *e, uint32_t op)
{
	if (op > 0xffff)
		b1(e, op >> 16);
	if (op > 0xff)
		b1(e, (op >> 8) & 0xff);
	b1(e, op & 0xff);
}

static void rex(struct em *e, bool w, unsigned r, unsigned b)
{
	unsigned v = 0x40 | (w ? 8 : 0) | (r >> 3) << 2 | (b >> 3);

	if (v != 0x40)
		b1(e, v);
}

/* op r, [base + disp] (or op [base + disp], r: the opcode decides). */
static void op_mem(struct em *e, bool w, uint32_t op, unsigned r, unsigned base, int32_t disp)
{
	unsigned rm = base & 7;

	rex(e, w, r, base);
	opc(e, op);
	if (disp >= -128 && disp <= 127) {
		b1(e, 0x40 | (r & 7) << 3 | rm);
		if (rm == 4)
			b1(e, 0x24);
		b1(e, (uint8_t)disp);
	} else {
		b1(e, 0x80 | (r & 7) << 3 | rm);
		if (rm == 4)
			b1(e, 0x24);
		b4(e, (uint32_t)disp);
	}
}

/* op r, rm (register form). */
static void op_rr(struct em *e, bool w, uint32_t op, unsigned r, unsigned rm)
{
	rex(e, w, r, rm);
	opc(e, op);
	b1(e, 0xc0 | (r & 7) << 3 | (rm & 7));
}

/* op r, [rbx + rax + disp] (the TLB entry at the offset in rax, tlb_index()). */
static void op_tlb(struct em *e, uint32_t op, unsigned r, int32_t disp)
{
	rex(e, true, r, 0);
	opc(e, op);
	b1(e, 0x84 | (r & 7) << 3);
	b1(e, 0x03); /* [rbx + rax] */
	b4(e, (uint32_t)disp);
}

/* op r, [base + index + disp] (index not rsp). */
static void op_sib(struct em *e, bool w, uint32_t op, unsigned r, unsigned base, unsigned index,
		   int32_t disp)
{
	unsigned v = 0x40 | (w ? 8 : 0) | (r >> 3) << 2 | (index >> 3) << 1 | (base >> 3);
	bool d8 = disp >= -128 && disp <= 127, d0 = !disp && (base & 7) != RBP;

	if (v != 0x40)
		b1(e, v);
	opc(e, op);
	b1(e, (d0 ? 0x00 : d8 ? 0x40 : 0x80) | (r & 7) << 3 | 4);
	b1(e, (index & 7) << 3 | (base & 7));
	if (d8 && !d0)
		b1(e, (uint8_t)disp);
	else if (!d8)
		b4(e, (uint32_t)disp);
}

/* r = x[xr], 64 bits or (w false) its low 32 bits zero-extended. */
static void ld_xw(struct em *e, bool w, unsigned r, unsigned xr)
{
	if (!xr)
		op_rr(e, false, 0x31, r, r); /* xor r32, r32 */
	else if (e->hreg[xr] >= 0)
		op_rr(e, w, 0x89, (unsigned)e->hreg[xr], r);
	else
		op_mem(e, w, 0x8b, r, RBX, OFF_X(xr));
}

static void ld_x(struct em *e, unsigned r, unsigned xr)
{
	ld_xw(e, true, r, xr);
}

static void ld_x32(struct em *e, unsigned r, unsigned xr)
{
	ld_xw(e, false, r, xr);
}

static void st_x(struct em *e, unsigned xr, unsigned r)
{
	if (!xr)
		return;
	if (e->hreg[xr] >= 0)
		op_rr(e, true, 0x89, r, (unsigned)e->hreg[xr]);
	else
		op_mem(e, true, 0x89, r, RBX, OFF_X(xr));
}

/* op r, x[xr] (r/m operand from the cached register or cpu->x[]). */
static void op_x(struct em *e, bool w, uint32_t op, unsigned r, unsigned xr)
{
	if (xr && e->hreg[xr] >= 0)
		op_rr(e, w, op, r, (unsigned)e->hreg[xr]);
	else
		op_mem(e, w, op, r, RBX, OFF_X(xr));
}

/* x[xr] = sign-extended imm32. */
static void st_x_imm(struct em *e, unsigned xr, uint32_t imm)
{
	if (!xr)
		return;
	if (e->hreg[xr] >= 0)
		op_rr(e, true, 0xc7, 0, (unsigned)e->hreg[xr]);
	else
		op_mem(e, true, 0xc7, 0, RBX, OFF_X(xr));
	b4(e, imm);
}

/* The host register that receives a new x[rd]: the one caching it, else rax (then put_x). */
static unsigned dst_reg(const struct em *e, unsigned rd)
{
	return rd && e->hreg[rd] >= 0 ? (unsigned)e->hreg[rd] : RAX;
}

/* x[rd] = d, a value computed into dst_reg(rd). */
static void put_x(struct em *e, unsigned rd, unsigned d)
{
	if (d == RAX)
		st_x(e, rd, RAX);
}

/* d = dst_reg(rd) = x[rs1], ready for an operation on it in place. */
static unsigned src_to_dst(struct em *e, unsigned rd, unsigned rs1)
{
	unsigned d = dst_reg(e, rd);

	if (d == RAX || rd != rs1)
		ld_x(e, d, rs1);
	return d;
}

/*
 * d = dst_reg(rd) = x[rs1] op x[rs2] for an x86 "op r, r/m" opcode (add, sub, xor, or,
 * and, imul), straight on the cached registers; a commutative op may swap its operands.
 * Returns d.
 */
static unsigned bin_op(struct em *e, bool w, uint32_t op, bool comm, unsigned rd, unsigned rs1,
		       unsigned rs2)
{
	unsigned d = dst_reg(e, rd);

	if (d != RAX && rd == rs2 && rd != rs1) {
		if (comm) {
			op_x(e, w, op, d, rs1);
			return d;
		}
		d = RAX; /* x[rs2] is still needed after x[rs1] lands in d */
	}
	if (d == RAX || rd != rs1)
		ld_x(e, d, rs1);
	op_x(e, w, op, d, rs2);
	return d;
}

/* x[rd] = x[rs] with one move (C.MV, MV, and other ops with an identity operand). */
static void mov_x(struct em *e, unsigned rd, unsigned rs)
{
	if (!rd || rd == rs)
		return;
	if (e->hreg[rd] >= 0)
		ld_x(e, (unsigned)e->hreg[rd], rs);
	else if (!rs)
		st_x_imm(e, rd, 0);
	else if (e->hreg[rs] >= 0)
		st_x(e, rd, (unsigned)e->hreg[rs]);
	else {
		ld_x(e, RAX, rs);
		st_x(e, rd, RAX);
	}
}

/* Flags of x[rs1] - x[rs2] (cmp); x[rs2] = x0 as test, which gives the same conditions. */
static void cmp_x(struct em *e, unsigned rs1, unsigned rs2)
{
	if (rs1 && e->hreg[rs1] >= 0) {
		unsigned h = (unsigned)e->hreg[rs1];

		if (rs2)
			op_x(e, true, 0x3b, h, rs2);
		else
			op_rr(e, true, 0x85, h, h);
	} else if (rs2 && e->hreg[rs2] >= 0) {
		op_mem(e, true, 0x39, (unsigned)e->hreg[rs2], RBX, OFF_X(rs1)); /* cmp [x1], h2 */
	} else {
		ld_x(e, RAX, rs1);
		if (rs2)
			op_x(e, true, 0x3b, RAX, rs2);
		else
			op_rr(e, true, 0x85, RAX, RAX);
	}
}

/* cpu->x[] = the cached registers the block writes (flags and scratch registers untouched). */
static void writeback_regs(struct em *e)
{
	for (unsigned x = 1; x < 32; x++)
		if (e->hreg[x] >= 0 && (e->written >> x & 1))
			op_mem(e, true, 0x89, (unsigned)e->hreg[x], RBX, OFF_X(x));
}

/* cpu->x[] = all cached registers, for a call in the middle of the block. */
static void writeback_all(struct em *e)
{
	for (unsigned x = 1; x < 32; x++)
		if (e->hreg[x] >= 0)
			op_mem(e, true, 0x89, (unsigned)e->hreg[x], RBX, OFF_X(x));
}

static bool host_callee_saved(unsigned r)
{
	return r == RBP || r == R14 || r == R15;
}

/* Reloads cached registers from cpu->x[]: all, or only those a call may have clobbered. */
static void reload_regs(struct em *e, bool all)
{
	for (unsigned x = 1; x < 32; x++)
		if (e->hreg[x] >= 0 && (all || !host_callee_saved((unsigned)e->hreg[x])))
			op_mem(e, true, 0x8b, (unsigned)e->hreg[x], RBX, OFF_X(x));
}

/* ALU group 1 with imm32 (ext: 0 add, 1 or, 4 and, 5 sub, 6 xor, 7 cmp). */
static void alu_imm(struct em *e, bool w, unsigned ext, unsigned r, int32_t imm)
{
	if (imm >= -128 && imm <= 127) {
		op_rr(e, w, 0x83, ext, r);
		b1(e, (uint8_t)imm);
	} else {
		op_rr(e, w, 0x81, ext, r);
		b4(e, (uint32_t)imm);
	}
}

static void shift_imm(struct em *e, bool w, unsigned ext, unsigned r, unsigned sh)
{
	op_rr(e, w, 0xc1, ext, r);
	b1(e, sh);
}

static void mov_imm64(struct em *e, unsigned r, uint64_t v)
{
	rex(e, true, 0, r);
	b1(e, 0xb8 + (r & 7));
	b8(e, v);
}

static void call_abs(struct em *e, const void *fn)
{
	mov_imm64(e, RAX, (uint64_t)(uintptr_t)fn);
	b1(e, 0xff);
	b1(e, 0xd0);
}

/* jcc/jmp rel32 to a position not known yet: returns where to patch. */
static uint64_t jcc_fwd(struct em *e, unsigned cc)
{
	b1(e, 0x0f);
	b1(e, 0x80 | cc);
	b4(e, 0);
	return e->pos - 4;
}

static uint64_t jmp_fwd(struct em *e)
{
	b1(e, 0xe9);
	b4(e, 0);
	return e->pos - 4;
}

static void fix_here(struct em *e, uint64_t at)
{
	patch32(e, at, (uint32_t)(e->pos - (at + 4)));
}

static void fix_to(struct em *e, uint64_t at, uint64_t target)
{
	patch32(e, at, (uint32_t)(target - (at + 4)));
}

static void jmp_to(struct em *e, uint64_t target)
{
	fix_to(e, jmp_fwd(e), target);
}

enum {
	CC_B = 2, CC_AE = 3, CC_E = 4, CC_NE = 5, CC_A = 7, CC_S = 8, CC_NP = 0xb, CC_L = 0xc,
	CC_GE = 0xd, CC_LE = 0xe
};

/* rax = page va + off. */
static void lea_pc(struct em *e, unsigned r, int64_t off)
{
	op_mem(e, true, 0x8d, r, R12, (int32_t)off);
}

static void set_pc_off(struct em *e, int64_t off)
{
	lea_pc(e, RAX, off);
	op_mem(e, true, 0x89, RAX, RBX, OFF_PC);
}

/* Budget += insns and TLB hits += hits in r13 (|insns|, |hits| <= a block's length). */
static void r13_adjust(struct em *e, int32_t insns, int32_t hits)
{
	int32_t v = (int32_t)((uint32_t)insns << BUDGET_SHIFT) + hits;

	if (v)
		alu_imm(e, true, 0, R13, v);
}

/* TLB hits += v (blocks count their loads and stores as hits up front). */
static void hits_add(struct em *e, int32_t v)
{
	r13_adjust(e, 0, v);
}

static void jmp_epilogue(struct em *e)
{
	jmp_to(e, (uint64_t)(e->j->epilogue - e->j->rx));
}

/*
 * Fibonacci hashing of the low 32 bits of the parcel address: the top bits of the product mix
 * all of its bits (kernel and user pcs differ in their low 32 bits too).
 */
#define JC_HASH_MUL 0x9e3779b1u /* 2^32 / golden ratio, odd */

/* jc_exit() scales the index by 3 * 8. */
_Static_assert(sizeof(struct rv64_jc_entry) == 24, "jump cache entry layout");

static unsigned jc_index(uint64_t pc)
{
	return (((uint32_t)pc >> 1) * JC_HASH_MUL) >> (32 - RV64_JC_BITS);
}

/*
 * Goes on at the guest virtual address in rax (registers written back): through the jump
 * cache (jit.h) when it holds the target and budget is left, else a far exit to exec.c.
 * Inline at each exit, so each has its own indirect jump for the host to predict. Computes
 * jc_index() in rcx and the current tag (see jit.h) in rsi; clobbers rdx and rdi too, and r12
 * when it jumps.
 */
static void jc_exit(struct em *e)
{
	uint64_t miss[3];

	op_rr(e, true, 0x85, R13, R13); /* test r13, r13 */
	miss[0] = jcc_fwd(e, CC_LE);
	op_rr(e, false, 0x89, RAX, RCX);  /* mov ecx, eax */
	shift_imm(e, false, 5, RCX, 1);   /* shr ecx, 1 */
	op_rr(e, false, 0x69, RCX, RCX);  /* imul ecx, ecx, JC_HASH_MUL */
	b4(e, JC_HASH_MUL);
	shift_imm(e, false, 5, RCX, 32 - RV64_JC_BITS);
	mov_imm64(e, RDX, (uint64_t)(uintptr_t)e->j->jc);
	op_mem(e, true, 0x8b, RDI, RBX, OFF_VM);
	op_mem(e, true, 0x8b, RDI, RDI, (int32_t)offsetof(struct rv64_vm, code_inval));
	op_mem(e, true, 0x8b, RSI, RDX, (int32_t)offsetof(struct rv64_jc, gen));
	b1(e, 0x48); /* lea rsi, [rsi + rdi * 4] */
	b1(e, 0x8d);
	b1(e, 0x34);
	b1(e, 0xbe);
	op_mem(e, false, 0x8b, RDI, RBX, OFF_PRIV); /* edi = priv */
	op_rr(e, true, 0x09, RDI, RSI);             /* or rsi, rdi */
	b1(e, 0x48); /* lea rcx, [rcx + rcx * 2] */
	b1(e, 0x8d);
	b1(e, 0x0c);
	b1(e, 0x49);
	b1(e, 0x48); /* lea rcx, [rdx + rcx * 8 + offsetof(e)]: the entry */
	b1(e, 0x8d);
	b1(e, 0x4c);
	b1(e, 0xca);
	b1(e, (unsigned)offsetof(struct rv64_jc, e));
	op_mem(e, true, 0x3b, RAX, RCX, (int32_t)offsetof(struct rv64_jc_entry, pc));
	miss[1] = jcc_fwd(e, CC_NE);
	op_mem(e, true, 0x3b, RSI, RCX, (int32_t)offsetof(struct rv64_jc_entry, tag));
	miss[2] = jcc_fwd(e, CC_NE);
	op_rr(e, true, 0x89, RAX, R12); /* r12 = the new page */
	alu_imm(e, true, 4, R12, (int32_t)RV64_PAGE_MASK);
	op_mem(e, false, 0xff, 4, RCX, (int32_t)offsetof(struct rv64_jc_entry, code)); /* jmp */
	for (unsigned i = 0; i < 3; i++)
		fix_to(e, miss[i], e->j->jc_miss);
}

/*
 * Leaves for the instruction at page offset t: within the page, through a chaining cell while
 * budget is left; elsewhere (or with t at the page end), a far exit.
 */
static void exit_to(struct em *e, int64_t t)
{
	uint64_t jle, lea_cell, jmp_cell, slow;

	writeback_regs(e);
	if (t < 0 || t >= (int64_t)RV64_PAGE_SIZE) {
		lea_pc(e, RAX, t);
		jc_exit(e);
		return;
	}
	op_rr(e, true, 0x85, R13, R13); /* test r13, r13 */
	jle = jcc_fwd(e, CC_LE);
	b1(e, 0xff); /* jmp [rip + cell] */
	b1(e, 0x25);
	b4(e, 0);
	jmp_cell = e->pos - 4;
	slow = e->pos;
	fix_here(e, jle);
	set_pc_off(e, t);
	b1(e, 0x48); /* lea rdx, [rip + cell] */
	b1(e, 0x8d);
	b1(e, 0x15);
	b4(e, 0);
	lea_cell = e->pos - 4;
	jmp_epilogue(e);
	while (e->pos & 7)
		b1(e, 0xcc);
	fix_here(e, jmp_cell);
	fix_here(e, lea_cell);
	b8(e, (uint64_t)(uintptr_t)(e->j->rx + slow));
}

/*
 * x[rd] = DIV, DIVU, REM, REMU (f3 4..7) of x[rs1] and x[rs2], or their W forms (w false:
 * 32-bit operands, sign-extended result), inline with the RISC-V results of the cases x86
 * would fault on (unpriv 20191213 §7.2): by zero, the quotient is all ones and the remainder
 * the dividend; the signed overflow (most negative / -1) gives the dividend and 0, which is
 * what negation and 0 give for any divisor -1, so -1 never reaches idiv. rdx and rcx are
 * scratch, so nothing is written back.
 */
static void tr_div(struct em *e, unsigned f3, bool w, unsigned rd, unsigned rs1, unsigned rs2)
{
	bool is_signed = !(f3 & 1), rem = f3 >= 6;
	uint64_t zero, minus1 = 0, done[2];
	unsigned res = rem ? RDX : RAX;

	ld_x(e, RCX, rs2);
	ld_x(e, RAX, rs1);
	op_rr(e, w, 0x85, RCX, RCX); /* test rcx, rcx */
	zero = jcc_fwd(e, CC_E);
	if (is_signed) {
		alu_imm(e, w, 7, RCX, -1);
		minus1 = jcc_fwd(e, CC_E);
		if (w)
			b1(e, 0x48);
		b1(e, 0x99);                  /* cqo / cdq */
		op_rr(e, w, 0xf7, 7, RCX);    /* idiv rcx */
	} else {
		op_rr(e, false, 0x31, RDX, RDX);
		op_rr(e, w, 0xf7, 6, RCX);    /* div rcx */
	}
	done[0] = jmp_fwd(e);
	if (is_signed) {
		fix_here(e, minus1);
		if (rem)
			op_rr(e, false, 0x31, RDX, RDX);
		else
			op_rr(e, w, 0xf7, 3, RAX); /* neg rax */
		done[1] = jmp_fwd(e);
	} else {
		done[1] = 0;
	}
	fix_here(e, zero);
	if (rem)
		op_rr(e, true, 0x89, RAX, RDX); /* the dividend */
	else
		alu_imm(e, true, 1, RAX, -1); /* all ones */
	fix_here(e, done[0]);
	if (done[1])
		fix_here(e, done[1]);
	if (!w)
		op_rr(e, true, 0x63, res, res); /* movsxd */
	st_x(e, rd, res);
}

/* --- Block translation. */

/* STUB_BACK: a taken branch back into the block ran out of budget (resume: its bound). */
enum stub_kind { STUB_LOAD, STUB_STORE, STUB_BRANCH, STUB_STEP, STUB_FPU, STUB_CSR, STUB_BACK };
enum load_ext { EXT_NONE, EXT_S8, EXT_S16, EXT_S32 };

struct stub {
	uint8_t kind, size, ext, rs2;
	uint8_t rd;      /* a load's destination (its value arrives in rax on the slow path) */
	uint8_t base;    /* loads, stores: the host register holding x[rs1]... */
	int32_t imm;     /* ...and the offset: the access is [base + rcx + imm], va = base + imm */
	bool fp;         /* a store's value comes from f[rs2] */
	bool follows;    /* a TLB group follower: the stub runs the full TLB test first... */
	uint8_t acc;     /* ...of this class, back to `access` on a hit (mem_fast()) */
	uint64_t access; /* a follower's access, after its short test */
	uint16_t idx;    /* instruction index in the block */
	uint16_t off;    /* its byte offset in the page */
	uint16_t len;    /* its length in bytes */
	uint16_t mem;    /* loads and stores in the block up to and including it */
	uint64_t fix;    /* rel32 of the jcc that enters the stub */
	uint64_t fix2[3]; /* more such jccs (0: none) */
	uint32_t insn;   /* STUB_FPU: the instruction for rv64_fpu_exec() */
	uint64_t resume; /* where the fast path continues (loads, stores) */
	int64_t target;  /* branch target, page offset */
};

struct blk {
	struct em e;
	unsigned nmem; /* loads and stores emitted so far */
	struct stub stubs[JIT_STUBS_MAX];
	unsigned nstubs;
	/*
	 * Per instruction of the block: where its host code starts, its page offset, and the
	 * loads and stores before it. Every instruction boundary has the cached registers in
	 * their host registers, so a jump inside the block may land on any of them.
	 */
	uint64_t ipos[JIT_BLOCK_MAX];
	uint16_t ioff[JIT_BLOCK_MAX];
	uint16_t imem[JIT_BLOCK_MAX];
	int64_t follow; /* tr_insn() returned 2: the block goes on at this page offset */
	unsigned n;     /* instructions, once emitted */
	/*
	 * The block has loads or stores, which need rsi for addresses. assign_regs() scans the
	 * instructions emit_block() translates; should the two ever disagree, the block is
	 * emitted again without a guest register cached in rsi (no_rsi).
	 */
	bool mem_ops, no_rsi;
	uint64_t follower; /* bit k: instruction k is a TLB group follower (mem_fast()) */
	/*
	 * Slots (page offset / 2) whose instruction must not be a follower: a jump inside the
	 * block arrives there, where rcx and rdx hold whatever the jump's origin left. Found when
	 * a jump to a follower is emitted (grp_clash); the block is then emitted again.
	 */
	uint64_t lead[PAGE_SLOTS / 64];
	bool grp_clash;
};

/*
 * A JAL to page offset t that is not to an instruction already in the block (unpriv
 * 20191213 §2.5): the block leaves (JAL_EXIT, another page), goes on with the instructions
 * after the JAL when the target is a little ahead of them (JAL_SKIP: the jump becomes a jump
 * inside the block once the block reaches the target, so both arms of an if-else and loops
 * entered at their condition stay in one block), or goes on at the target (JAL_FOLLOW).
 */
#define JIT_SKIP_MAX 256 /* bytes a skipped or branched-over stretch may have */

enum jal_way { JAL_EXIT, JAL_SKIP, JAL_FOLLOW };

static enum jal_way jal_way(unsigned rd, unsigned off, unsigned len, int64_t t)
{
	if (t < 0 || t >= (int64_t)RV64_PAGE_SIZE)
		return JAL_EXIT;
	if (!rd && t > (int64_t)off && t - (int64_t)(off + len) <= JIT_SKIP_MAX)
		return JAL_SKIP;
	return JAL_FOLLOW;
}

static struct stub *stub_add(struct blk *bk, enum stub_kind kind, unsigned idx, unsigned off,
			     unsigned len)
{
	struct stub *s = &bk->stubs[bk->nstubs++];

	memset(s, 0, sizeof(*s));
	s->kind = (uint8_t)kind;
	s->idx = (uint16_t)idx;
	s->off = (uint16_t)off;
	s->len = (uint16_t)len;
	s->mem = (uint16_t)bk->nmem;
	return s;
}

/* The index of the block's instruction at page offset t among its first `upto`, or -1. */
static int insn_at(const struct blk *bk, unsigned upto, int64_t t)
{
	for (unsigned k = 0; k < upto; k++)
		if (bk->ioff[k] == t)
			return (int)k;
	return -1;
}

/*
 * Where a jump inside the block to its instruction k lands: k's start. A follower there would
 * find rcx and rdx from wherever the jump came from, so k must lead its group: the block is
 * marked for emission again with k's slot in bk->lead (emit_block_exact()).
 */
static uint64_t insn_entry(struct blk *bk, unsigned k)
{
	if (bk->follower >> k & 1) {
		bk->lead[bk->ioff[k] / 128] |= 1ull << (bk->ioff[k] / 2 % 64);
		bk->grp_clash = true;
	}
	return bk->ipos[k];
}

/*
 * A taken jump from instruction idx to instruction k of the same block (n instructions long
 * once done), staying in translated code with the registers where they are; `mem`: loads
 * and stores run up to the jump. The entry charged n instructions and n loads and stores
 * assuming a run to the end: the jump gives back what it skipped and charges again from k.
 * A backward jump (a loop) first checks the budget as a chained exit would, and leaves for
 * the instruction at page offset t when it has run out.
 */
static void jump_inside(struct blk *bk, unsigned n, unsigned idx, unsigned mem, unsigned k,
			int64_t t)
{
	struct em *e = &bk->e;
	uint64_t slow = 0;

	if (k <= idx) {
		/* budget + given back <= 0, i.e. r13 < (1 - given back) << BUDGET_SHIFT */
		alu_imm(e, true, 7, R13, (int32_t)((uint32_t)(1 - (int32_t)(n - idx - 1)) << BUDGET_SHIFT));
		slow = jcc_fwd(e, CC_L);
	}
	r13_adjust(e, (int32_t)k - (int32_t)idx - 1, (int32_t)mem - (int32_t)bk->imem[k]);
	jmp_to(e, insn_entry(bk, k));
	if (k <= idx) {
		fix_here(e, slow);
		r13_adjust(e, (int32_t)(n - idx - 1), (int32_t)mem - (int32_t)bk->nmem);
		exit_to(e, t);
	}
}

static int64_t imm_i(uint32_t insn)
{
	return (int64_t)(int32_t)insn >> 20;
}

static int64_t imm_s(uint32_t insn)
{
	return (int64_t)(((uint64_t)((int64_t)(int32_t)insn >> 25) << 5) | ((insn >> 7) & 31));
}

static int64_t imm_b(uint32_t insn)
{
	return ((int64_t)(int32_t)(insn & 0x80000000u) >> 19) | ((insn >> 20) & 0x7e0) |
	       ((insn >> 7) & 0x1e) | ((insn << 4) & 0x800);
}

static int64_t imm_j(uint32_t insn)
{
	return ((int64_t)(int32_t)(insn & 0x80000000u) >> 11) | (insn & 0xff000) |
	       ((insn >> 9) & 0x800) | ((insn >> 20) & 0x7fe);
}

/* rax = the byte offset of the TLB entry of the address in register r (for op_tlb). */
static void tlb_index(struct em *e, unsigned r)
{
	_Static_assert(sizeof(struct rv64_tlb_entry) == 32, "entries are 1 << 5 bytes");
	if (__builtin_cpu_supports("bmi2")) {
		b1(e, 0xc4); /* rorx rax, r, 12 - 5: VEX.LZ.F2.0F3A.W1 f0 /r ib */
		b1(e, 0xc3 | (r < 8 ? 0x20 : 0)); /* ~R ~X ~B, map 0F3A */
		b1(e, 0xfb);                      /* W1, no vvvv, LZ, F2 */
		b1(e, 0xf0);
		b1(e, 0xc0 | (r & 7));
		b1(e, RV64_PAGE_SHIFT - 5);
	} else {
		op_rr(e, false, 0x89, r, RAX);                    /* mov eax, r32 */
		shift_imm(e, false, 5, RAX, RV64_PAGE_SHIFT - 5); /* shr eax, 7 */
	}
	b1(e, 0x25); /* and eax, (TLB size - 1) << 5 */
	b4(e, (RV64_TLB_SIZE - 1) << 5);
}

/*
 * The TLB test of an access of `size` bytes at [base + imm] (mmu.h's rv64_tlb_match():
 * (tag | allow) == (va + size - 1) | (4096 - size)), leaving the flags of the compare, rax =
 * the entry's offset (tlb_index()) and rdx = tag | allow when it matches.
 */
static void tlb_test(struct em *e, enum rv64_access acc, unsigned base, int64_t imm, unsigned size)
{
	/* rdx = va + size - 1: in va's page when va is aligned, so it indexes the TLB too */
	op_mem(e, true, 0x8d, RDX, base, (int32_t)(imm + (int64_t)size - 1));
	tlb_index(e, imm ? RDX : base);
	op_tlb(e, 0x8b, RCX, OFF_TLB(acc));             /* rcx = tag */
	op_mem(e, true, 0x0b, RCX, RBX, OFF_ALLOW(acc)); /* rcx |= allow */
	alu_imm(e, true, 1, RDX, (int32_t)(RV64_PAGE_SIZE - size));
	op_rr(e, true, 0x39, RDX, RCX); /* cmp rcx, rdx */
}

/*
 * The TLB fast path of a load or store of x[rs1] + imm: jumps to a new stub when the entry
 * misses (tlb_test()), else leaves rcx = host_addend, so that the access is [base + rcx +
 * imm] with base = the stub's base register (mem_op()), and rdx = tag | allow. The guest
 * address itself is never formed on this path (the stub does that for the slow access).
 *
 * A follower in a TLB group (struct em) tests only (va + size - 1) | (4096 - size) == rdx,
 * with no loads: its entry is the one rdx and rcx came from exactly when that value lies in
 * the entry's page, and then the full test would compare the same two values. When the
 * short test fails (another page, misaligned, or rdx = 0), its stub runs the full test and
 * comes back to the access on a hit, with rcx and rdx set for the followers after it; only
 * a miss of that takes the slow path. Nothing between two adjacent accesses changes the TLB
 * or cpu->tlb_allow (no helper calls on the fast path), so dirty logging and the protection
 * of pages with decoded code (their write entries never match) hold for followers too.
 */
static struct stub *mem_fast(struct blk *bk, enum stub_kind kind, enum rv64_access acc,
			     unsigned rs1, int64_t imm, unsigned size, unsigned idx,
			     unsigned off, unsigned len)
{
	struct em *e = &bk->e;
	bool follows = e->grp_valid; /* emit_block() checked that this access follows */
	unsigned base = RSI;
	struct stub *s;

	bk->nmem++;
	if (follows) {
		base = (unsigned)e->hreg[rs1];
		op_mem(e, true, 0x8d, RAX, base, (int32_t)(imm + (int64_t)size - 1));
		alu_imm(e, true, 1, RAX, (int32_t)(RV64_PAGE_SIZE - size));
		op_rr(e, true, 0x39, RDX, RAX); /* cmp rax, rdx */
		bk->follower |= 1ull << idx;
	} else {
		if (rs1 && e->hreg[rs1] >= 0)
			base = (unsigned)e->hreg[rs1];
		else
			ld_x(e, RSI, rs1);
		tlb_test(e, acc, base, imm, size);
	}
	s = stub_add(bk, kind, idx, off, len);
	s->size = (uint8_t)size;
	s->base = (uint8_t)base;
	s->imm = (int32_t)imm;
	s->fix = jcc_fwd(e, CC_NE);
	if (follows) {
		s->follows = true;
		s->acc = (uint8_t)acc;
		s->access = e->pos;
	} else {
		op_tlb(e, 0x8b, RCX, OFF_TLB(acc) + 8); /* rcx = host_addend */
	}
	return s;
}

/*
 * After an integer load or store through x[rs1] (its access emitted): the next instruction
 * may follow it in a TLB group when x[rs1] is in a host register that the access (a load to
 * x[rd]) did not overwrite.
 */
static void grp_begin(struct em *e, enum rv64_access acc, unsigned rs1, unsigned rd)
{
	e->grp_valid = rs1 && e->hreg[rs1] >= 0 && rd != rs1;
	e->grp_rs1 = (uint8_t)rs1;
	e->grp_acc = (uint8_t)acc;
}

/*
 * True when insn, at slot `slot`, follows the access just emitted in its TLB group (struct
 * em): an integer load or store of that class through the same register, and no jump inside
 * the block arrives at it.
 */
static bool grp_follows(const struct blk *bk, uint32_t insn, unsigned slot)
{
	const struct em *e = &bk->e;
	unsigned f3 = (insn >> 12) & 7;
	enum rv64_access acc;

	if (!e->grp_valid || ((insn >> 15) & 31) != e->grp_rs1 ||
	    (bk->lead[slot / 64] >> (slot % 64) & 1))
		return false;
	if ((insn & 0x7f) == 0x03 && f3 != 7)
		acc = RV64_ACC_READ;
	else if ((insn & 0x7f) == 0x23 && f3 <= 3)
		acc = RV64_ACC_WRITE;
	else
		return false;
	return acc == e->grp_acc;
}

/* op r, [the access of the fast path that made stub s] */
static void mem_op(struct em *e, const struct stub *s, bool w, uint32_t op, unsigned r)
{
	op_sib(e, w, op, r, s->base, RCX, s->imm);
}

static void tr_count(struct em *e, unsigned kind, bool w);

/*
 * A-extension instructions (unpriv 20191213 §8): LR, SC and the AMOs on a RAM page the TLB
 * maps (LR for reading; the rest for writing, which also keeps out pages with decoded code),
 * with xchg, lock xadd or a lock cmpxchg loop, each as ordered as .aqrl; anything else
 * (misaligned, MMIO, not in the TLB) leaves with RV64_JIT_EXIT_STEP for the interpreter,
 * which raises the exception. LR/SC keep exec.c's reservation: the guest-physical address
 * and the value LR loaded; SC stores only if both still hold, and always drops it. Returns
 * like tr_insn.
 */
static int tr_amo(struct blk *bk, uint32_t insn, unsigned off, unsigned len, unsigned idx)
{
	struct em *e = &bk->e;
	unsigned rd = (insn >> 7) & 31, rs1 = (insn >> 15) & 31, rs2 = (insn >> 20) & 31;
	unsigned f3 = (insn >> 12) & 7, f5 = insn >> 27;
	bool w = f3 == 3;
	enum rv64_access acc = f5 == 0x02 ? RV64_ACC_READ : RV64_ACC_WRITE;
	uint64_t fail[2], done, retry;
	struct stub *s;

	if ((f3 != 2 && f3 != 3) || (f5 == 0x02 && rs2))
		return -1;
	switch (f5) {
	case 0x00: case 0x01: case 0x02: case 0x03: case 0x04: case 0x08: case 0x0c: case 0x10:
	case 0x14: case 0x18: case 0x1c:
		break;
	default:
		return -1;
	}
	s = mem_fast(bk, STUB_STEP, acc, rs1, 0, w ? 8 : 4, idx, off, len);
	s->mem--; /* on that exit, the interpreter counts the access */
	op_sib(e, true, 0x8d, RSI, s->base, RCX, 0); /* rsi = the host address */
	if (f5 == 0x02 || f5 == 0x03) {
		/* rcx = guest-physical address: the entry's page | the offset of x[rs1] */
		op_tlb(e, 0x8b, RCX, OFF_TLB(acc) + OFF_TLB_PADDR);
		ld_x32(e, RDX, rs1);
		alu_imm(e, false, 4, RDX, RV64_PAGE_SIZE - 1);
		op_rr(e, true, 0x09, RDX, RCX);
	}
	switch (f5) {
	case 0x02: /* LR */
		op_mem(e, true, 0x89, RCX, RBX, OFF_RESV_ADDR);
		op_mem(e, w, 0x8b, RAX, RSI, 0);
		op_mem(e, true, 0x89, RAX, RBX, OFF_RESV_VAL); /* a word zero-extended */
		break;
	case 0x03: /* SC: x[rd] = 0 when stored, else 1 */
		op_mem(e, true, 0x3b, RCX, RBX, OFF_RESV_ADDR);
		fail[0] = jcc_fwd(e, CC_NE);
		op_mem(e, w, 0x8b, RAX, RBX, OFF_RESV_VAL);
		ld_x(e, RDX, rs2);
		b1(e, 0xf0);
		op_mem(e, w, 0x0fb1, RDX, RSI, 0); /* lock cmpxchg */
		fail[1] = jcc_fwd(e, CC_NE);
		op_rr(e, false, 0x31, RAX, RAX);
		done = jmp_fwd(e);
		fix_here(e, fail[0]);
		fix_here(e, fail[1]);
		b1(e, 0xb8); /* mov eax, 1 */
		b4(e, 1);
		fix_here(e, done);
		op_mem(e, true, 0xc7, 0, RBX, OFF_RESV_ADDR); /* no reservation: ~0 */
		b4(e, 0xffffffffu);
		break;
	case 0x01: /* AMOSWAP */
		ld_x(e, RAX, rs2);
		op_mem(e, w, 0x87, RAX, RSI, 0); /* xchg (locked by itself) */
		break;
	case 0x00: /* AMOADD */
		ld_x(e, RAX, rs2);
		b1(e, 0xf0);
		op_mem(e, w, 0x0fc1, RAX, RSI, 0); /* lock xadd */
		break;
	default: { /* the rest: rcx = op(old, rdx) until lock cmpxchg finds old unchanged */
		static const uint32_t cmov[4] = {0x0f4f, 0x0f4c, 0x0f47, 0x0f42}; /* g l a b */

		ld_x(e, RDX, rs2);
		op_mem(e, w, 0x8b, RAX, RSI, 0);
		retry = e->pos;
		op_rr(e, w, 0x89, RAX, RCX);
		if (f5 < 0x10) {
			op_rr(e, w, f5 == 0x04 ? 0x31 : f5 == 0x08 ? 0x09 : 0x21, RDX, RCX);
		} else {
			op_rr(e, w, 0x39, RDX, RCX); /* cmp rcx, rdx */
			op_rr(e, w, cmov[(f5 - 0x10) >> 2], RCX, RDX);
		}
		b1(e, 0xf0);
		op_mem(e, w, 0x0fb1, RCX, RSI, 0);
		fix_to(e, jcc_fwd(e, CC_NE), retry);
		break;
	}
	}
	if (!w && f5 != 0x03)
		op_rr(e, true, 0x63, RAX, RAX); /* sign-extend the old word */
	st_x(e, rd, RAX);
	return 0;
}

/*
 * Zbb/Zbs/Zba extras (bitmanip 1.0.0 §2.1-§2.4) of OP, OP-IMM, OP-32, OP-IMM-32 that tr_insn's
 * base cases do not handle. Returns 0 when translated, -1 when not one of them.
 */
static int tr_zb(struct em *e, uint32_t insn)
{
	unsigned rd = (insn >> 7) & 31, rs1 = (insn >> 15) & 31, rs2 = (insn >> 20) & 31;
	unsigned f3 = (insn >> 12) & 7, f7 = insn >> 25, f6 = insn >> 26, f12 = insn >> 20;
	unsigned sh6 = (insn >> 20) & 63;
	unsigned k = f7 << 3 | f3;

	switch (insn & 0x7f) {
	case 0x33:
		switch (k) {
		case 0x20 << 3 | 4: /* XNOR */
		case 0x20 << 3 | 6: /* ORN */
		case 0x20 << 3 | 7: /* ANDN */
			if (!rd)
				return 0;
			ld_x(e, RAX, rs2);
			if (f3 != 4)
				op_rr(e, true, 0xf7, 2, RAX); /* not rax */
			ld_x(e, RCX, rs1);
			op_rr(e, true, f3 == 4 ? 0x31 : f3 == 6 ? 0x09 : 0x21, RCX, RAX);
			if (f3 == 4)
				op_rr(e, true, 0xf7, 2, RAX);
			break;
		case 0x05 << 3 | 4: /* MIN, MINU, MAX, MAXU: cmovg, cmova, cmovl, cmovb */
		case 0x05 << 3 | 5:
		case 0x05 << 3 | 6:
		case 0x05 << 3 | 7: {
			static const uint32_t cmov[4] = {0x0f4f, 0x0f47, 0x0f4c, 0x0f42};

			if (!rd)
				return 0;
			ld_x(e, RAX, rs1);
			ld_x(e, RCX, rs2);
			op_rr(e, true, 0x39, RCX, RAX); /* cmp rax, rcx */
			op_rr(e, true, cmov[f3 - 4], RAX, RCX);
			break;
		}
		case 0x30 << 3 | 1: /* ROL, ROR: x86 masks cl to 6 bits */
		case 0x30 << 3 | 5:
			if (!rd)
				return 0;
			ld_x(e, RCX, rs2);
			ld_x(e, RAX, rs1);
			op_rr(e, true, 0xd3, f3 == 1 ? 0 : 1, RAX);
			break;
		case 0x14 << 3 | 1: /* BSET, BCLR, BINV, BEXT: bts, btr, btc, bt (bit index mod 64) */
		case 0x24 << 3 | 1:
		case 0x34 << 3 | 1:
		case 0x24 << 3 | 5:
			if (!rd)
				return 0;
			ld_x(e, RCX, rs2);
			ld_x(e, RAX, rs1);
			if (f3 == 5) {
				op_rr(e, true, 0x0fa3, RCX, RAX);
				op_rr(e, false, 0x0f92, 0, RAX); /* setc al */
				op_rr(e, false, 0x0fb6, RAX, RAX);
			} else {
				op_rr(e, true, f7 == 0x14 ? 0x0fab : f7 == 0x24 ? 0x0fb3 : 0x0fbb, RCX,
				      RAX);
			}
			break;
		default:
			return -1;
		}
		st_x(e, rd, RAX);
		return 0;
	case 0x13:
		if (f3 == 1 && (f6 == 0x0a || f6 == 0x12 || f6 == 0x1a)) { /* BSETI, BCLRI, BINVI */
			if (!rd)
				return 0;
			ld_x(e, RAX, rs1);
			op_rr(e, true, 0x0fba, f6 == 0x0a ? 5 : f6 == 0x12 ? 6 : 7, RAX);
			b1(e, sh6);
		} else if (f3 == 5 && f6 == 0x12) { /* BEXTI */
			if (!rd)
				return 0;
			ld_x(e, RAX, rs1);
			shift_imm(e, true, 5, RAX, sh6);
			alu_imm(e, false, 4, RAX, 1);
		} else if (f3 == 5 && f6 == 0x18) { /* RORI */
			if (!rd)
				return 0;
			ld_x(e, RAX, rs1);
			shift_imm(e, true, 1, RAX, sh6);
		} else if (f3 == 5 && f12 == 0x6b8) { /* REV8 */
			if (!rd)
				return 0;
			ld_x(e, RAX, rs1);
			b1(e, 0x48);
			b1(e, 0x0f);
			b1(e, 0xc8); /* bswap rax */
		} else if (f3 == 5 && f12 == 0x287) { /* ORC.B: bytes == 0 -> 0, else 0xff */
			if (!rd)
				return 0;
			ld_x(e, RAX, rs1);
			b1(e, 0x66);
			op_rr(e, true, 0x0f6e, 0, RAX); /* movq xmm0, rax */
			b1(e, 0x66);
			op_rr(e, false, 0x0fef, 1, 1); /* pxor xmm1, xmm1 */
			b1(e, 0x66);
			op_rr(e, false, 0x0f74, 0, 1); /* pcmpeqb xmm0, xmm1 */
			b1(e, 0x66);
			op_rr(e, true, 0x0f7e, 0, RAX); /* movq rax, xmm0 */
			op_rr(e, true, 0xf7, 2, RAX);   /* not rax */
		} else if (f3 == 1 && f12 >= 0x600 && f12 <= 0x605 && f12 != 0x603) {
			if (!rd)
				return 0;
			if (f12 == 0x602 && !__builtin_cpu_supports("popcnt"))
				return -1;
			ld_x(e, RDX, rs1);
			tr_count(e, f12 & 7, true);
		} else {
			return -1;
		}
		st_x(e, rd, RAX);
		return 0;
	case 0x1b:
		if (f3 == 1 && f6 == 0x02) { /* SLLI.UW (Zba) */
			if (!rd)
				return 0;
			ld_x32(e, RAX, rs1);
			if (sh6)
				shift_imm(e, true, 4, RAX, sh6);
			st_x(e, rd, RAX);
			return 0;
		}
		if (f3 == 1 && f7 == 0x30 && rs2 <= 2) { /* CLZW, CTZW, CPOPW */
			if (!rd)
				return 0;
			if (rs2 == 2 && !__builtin_cpu_supports("popcnt"))
				return -1;
			ld_x32(e, RDX, rs1);
			tr_count(e, rs2, false);
			st_x(e, rd, RAX);
			return 0;
		}
		if (f3 == 5 && f7 == 0x30) { /* RORIW */
			if (!rd)
				return 0;
			ld_x32(e, RAX, rs1);
			shift_imm(e, false, 1, RAX, rs2);
			op_rr(e, true, 0x63, RAX, RAX);
			st_x(e, rd, RAX);
			return 0;
		}
		return -1;
	case 0x3b:
		switch (k) {
		case 0x10 << 3 | 2: /* SH1ADD.UW, SH2ADD.UW, SH3ADD.UW (Zba) */
		case 0x10 << 3 | 4:
		case 0x10 << 3 | 6:
			if (!rd)
				return 0;
			ld_x32(e, RAX, rs1);
			shift_imm(e, true, 4, RAX, f3 >> 1);
			op_x(e, true, 0x03, RAX, rs2);
			break;
		case 0x04 << 3 | 4: /* ZEXT.H */
			if (rs2)
				return -1;
			if (!rd)
				return 0;
			ld_x32(e, RAX, rs1);
			op_rr(e, false, 0x0fb7, RAX, RAX);
			break;
		case 0x30 << 3 | 1: /* ROLW, RORW: 32-bit rotates take cl mod 32 */
		case 0x30 << 3 | 5:
			if (!rd)
				return 0;
			ld_x(e, RCX, rs2);
			ld_x32(e, RAX, rs1);
			op_rr(e, false, 0xd3, f3 == 1 ? 0 : 1, RAX);
			op_rr(e, true, 0x63, RAX, RAX);
			break;
		default:
			return -1;
		}
		st_x(e, rd, RAX);
		return 0;
	}
	return -1;
}

/*
 * rax = clz (kind 0), ctz (1), cpop (2), sext.b (4), sext.h (5) of rdx; 64-bit, or the 32-bit
 * W forms (rdx zero-extended). bsr/bsf leave ZF set for a zero input.
 */
static void tr_count(struct em *e, unsigned kind, bool w)
{
	switch (kind) {
	case 0:
		b1(e, 0xb9); /* mov ecx, 2 * width - 1: ^ (width - 1) gives width */
		b4(e, w ? 127 : 63);
		op_rr(e, w, 0x0fbd, RAX, RDX); /* bsr */
		op_rr(e, w, 0x0f44, RAX, RCX); /* cmovz */
		alu_imm(e, false, 6, RAX, w ? 63 : 31);
		break;
	case 1:
		b1(e, 0xb9);
		b4(e, w ? 64 : 32);
		op_rr(e, w, 0x0fbc, RAX, RDX); /* bsf */
		op_rr(e, w, 0x0f44, RAX, RCX);
		break;
	case 2:
		b1(e, 0xf3);
		op_rr(e, w, 0x0fb8, RAX, RDX); /* popcnt */
		break;
	case 4:
		op_rr(e, true, 0x0fbe, RAX, RDX);
		break;
	default:
		op_rr(e, true, 0x0fbf, RAX, RDX);
		break;
	}
}


/* Leaves with RV64_JIT_EXIT_STEP at this instruction when mstatus.FS is Off (priv 1.12 §3.1.6.6). */
static void fs_check(struct blk *bk, unsigned idx, unsigned off, unsigned len)
{
	struct em *e = &bk->e;
	struct stub *s;

	op_mem(e, false, 0xf7, 0, RBX, OFF_MSTATUS); /* test dword [mstatus], FS */
	b4(e, MS_FS);
	s = stub_add(bk, STUB_STEP, idx, off, len);
	s->fix = jcc_fwd(e, CC_E);
}

static void fs_dirty(struct em *e)
{
	op_mem(e, false, 0x81, 1, RBX, OFF_MSTATUS); /* or dword [mstatus], FS */
	b4(e, MS_FS);
}

/* An SSE instruction: op xmm, [base + disp] with a mandatory prefix (0xf2 sd, 0x66 pd). */
static void sse_mem(struct em *e, unsigned prefix, uint32_t op, unsigned xmm, unsigned base,
		    int32_t disp)
{
	b1(e, prefix);
	op_mem(e, false, op, xmm, base, disp);
}

/* The same in register form (w: REX.W, for cvtsi2sd r64 and movq). */
static void sse_rr(struct em *e, unsigned prefix, bool w, uint32_t op, unsigned r, unsigned rm)
{
	b1(e, prefix);
	op_rr(e, w, op, r, rm);
}

/*
 * MXCSR flag bits (IE DE ZE OE UE PE, bits 0..5) -> fflags (NV DZ OF UF NX, unpriv §11.2); DE
 * has no guest flag. The same mapping as fpu.c's mx_to_ff.
 */
#define MX_FF(m) \
	(((m)&1) << 4 | ((m) >> 2 & 1) << 3 | ((m) >> 3 & 1) << 2 | ((m) >> 4 & 1) << 1 | \
	 ((m) >> 5 & 1))
#define MX_FF4(m) MX_FF(m), MX_FF(m + 1), MX_FF(m + 2), MX_FF(m + 3)
#define MX_FF16(m) MX_FF4(m), MX_FF4(m + 4), MX_FF4(m + 8), MX_FF4(m + 12)
static const uint8_t mx_to_fflags[64] = {MX_FF16(0), MX_FF16(16), MX_FF16(32), MX_FF16(48)};

/* eax = fflags of the MXCSR flag bits in eax (rdx: mx_to_fflags) */
static void mx_flags_to_ff(struct em *e)
{
	b1(e, 0x0f); /* movzx eax, byte [rdx + rax] */
	b1(e, 0xb6);
	b1(e, 0x04);
	b1(e, 0x02);
}

/*
 * The guard of an inline double-precision operation, fpu.c's host_begin() without the MXCSR
 * write: MXCSR must already hold the guest's rounding control (`rm` 0..3, or 7: frm, which
 * must be 0..3) and no flag the guest's fflags lack (DE aside). Otherwise the stub `s`
 * calls rv64_fpu_exec(), which sets MXCSR up. Leaves rdx = mx_to_fflags. With that guard,
 * fflags |= MXCSR flags after the operation is exact whatever fpu.c leaves in MXCSR; fpu.c's
 * sticky-flag scheme is what makes the guard pass in the steady state.
 */
static void fp_guard(struct em *e, struct stub *s, unsigned rm)
{
	static const uint8_t rc[4] = {0, 3, 1, 2}; /* RNE RTZ RDN RUP -> MXCSR.RC */
	unsigned nfix = 0;

	if (rm == 7) {
		op_mem(e, false, 0x8b, RCX, RBX, OFF_FRM);
		alu_imm(e, false, 7, RCX, 3);
		s->fix2[nfix++] = jcc_fwd(e, CC_A); /* RMM or invalid: the C path */
		b1(e, 0xba);                        /* mov edx, the RC of each mode in a nibble */
		b4(e, (uint32_t)rc[3] << 12 | rc[2] << 8 | rc[1] << 4 | rc[0]);
		shift_imm(e, false, 4, RCX, 2);
		op_rr(e, false, 0xd3, 5, RDX); /* shr edx, cl */
		alu_imm(e, false, 4, RDX, 3);
		shift_imm(e, false, 4, RDX, 13);
		alu_imm(e, false, 1, RDX, 0x1f80);
	} else {
		b1(e, 0xba);
		b4(e, 0x1f80u | (uint32_t)rc[rm] << 13);
	}
	op_mem(e, false, 0x0fae, 3, RSP, 8); /* stmxcsr [rsp + 8] */
	op_mem(e, false, 0x8b, RAX, RSP, 8);
	op_rr(e, false, 0x89, RAX, RCX);
	alu_imm(e, false, 4, RCX, -64); /* and ecx, ~0x3f: the control bits */
	op_rr(e, false, 0x39, RDX, RCX);
	s->fix2[nfix++] = jcc_fwd(e, CC_NE);
	alu_imm(e, false, 4, RAX, 0x3d); /* flags but DE */
	mov_imm64(e, RDX, (uint64_t)(uintptr_t)mx_to_fflags);
	mx_flags_to_ff(e);
	op_mem(e, false, 0x8b, RCX, RBX, OFF_FFLAGS);
	op_rr(e, false, 0xf7, 2, RCX); /* not ecx */
	op_rr(e, false, 0x85, RAX, RCX);
	s->fix = jcc_fwd(e, CC_NE);
}

/* After the operation: fflags |= the MXCSR flags (fpu.c's host_end(); the control is kept). */
static void fp_accrue(struct em *e, struct stub *s)
{
	op_mem(e, false, 0x0fae, 3, RSP, 8); /* stmxcsr [rsp + 8] */
	op_mem(e, false, 0x8b, RAX, RSP, 8);
	alu_imm(e, false, 4, RAX, 0x3f);
	mx_flags_to_ff(e);
	op_mem(e, false, 0x09, RAX, RBX, OFF_FFLAGS);
	s->resume = e->pos;
}

/*
 * Inline code for the common double-precision OP-FP instructions (unpriv 20191213 §12.4-12.7,
 * §11.6-11.8 for their semantics), with exactly fpu.c's results and fflags: FADD/FSUB/FMUL/
 * FDIV/FSQRT.D and FCVT.D.W/L on the host's SSE unit under fp_guard() (NaN results made
 * canonical, §11.3), FEQ/FLT/FLE.D with UCOMISD (quiet) and COMISD (signaling), FSGNJ[N|X].D,
 * FMV.X.D and FMV.D.X as integer moves, and the FMADD family of D with FMA3 when the host has
 * it. Returns false (nothing emitted) for anything else.
 */
static bool tr_fp_inline(struct blk *bk, uint32_t insn, unsigned off, unsigned len,
			 unsigned idx)
{
	struct em *e = &bk->e;
	unsigned rd = (insn >> 7) & 31, rs1 = (insn >> 15) & 31, rs2 = (insn >> 20) & 31;
	unsigned rm = (insn >> 12) & 7, f7 = insn >> 25;
	struct stub *s;
	uint64_t ok;

	if ((insn & 0x7f) != 0x53) {
		static const uint8_t vfma[4] = {0xb9, 0xbb, 0xbd, 0xbf}; /* vf[n]madd/msub231sd */

		/*
		 * FMADD/FMSUB/FNMSUB/FNMADD.D (unpriv §12.6) with FMA3: a NaN result (NaN operand,
		 * inf * 0, inf - inf) goes to rv64_fpu_exec() before anything is written; fpu.c
		 * gives those their RISC-V flags, and the guard clears what the host raised here.
		 */
		if ((f7 & 3) != 1 || (rm > 3 && rm != 7) || !__builtin_cpu_supports("fma"))
			return false;
		fs_check(bk, idx, off, len);
		s = stub_add(bk, STUB_FPU, idx, off, len);
		s->insn = insn;
		fp_guard(e, s, rm);
		sse_mem(e, 0xf2, 0x0f10, 0, RBX, OFF_F(insn >> 27)); /* xmm0 = c */
		sse_mem(e, 0xf2, 0x0f10, 1, RBX, OFF_F(rs1));        /* xmm1 = a */
		b1(e, 0xc4); /* VEX.LIG.66.0F38.W1, vvvv = xmm1: vfm*231sd xmm0, xmm1, b */
		b1(e, 0xe2);
		b1(e, 0xf1);
		op_mem(e, false, vfma[((insn & 0x7f) - 0x43) >> 2], 0, RBX, OFF_F(rs2));
		sse_rr(e, 0x66, false, 0x0f2e, 0, 0); /* ucomisd xmm0, xmm0 */
		s->fix2[2] = jcc_fwd(e, 0xa);         /* jp: NaN */
		sse_mem(e, 0xf2, 0x0f11, 0, RBX, OFF_F(rd));
		fp_accrue(e, s);
		fs_dirty(e);
		return true;
	}
	switch (f7) {
	case 0x01: case 0x05: case 0x09: case 0x0d: case 0x2d: /* FADD..FDIV, FSQRT */
		if ((rm > 3 && rm != 7) || (f7 == 0x2d && rs2 != 0))
			return false;
		fs_check(bk, idx, off, len);
		s = stub_add(bk, STUB_FPU, idx, off, len);
		s->insn = insn;
		fp_guard(e, s, rm);
		sse_mem(e, 0xf2, 0x0f10, 0, RBX, OFF_F(rs1)); /* movsd xmm0, f[rs1] */
		if (f7 == 0x2d)
			sse_mem(e, 0xf2, 0x0f51, 0, RBX, OFF_F(rs1));
		else
			sse_mem(e, 0xf2, (uint32_t[]){0x0f58, 0x0f5c, 0x0f59, 0x0f5e}[f7 >> 2], 0,
				RBX, OFF_F(rs2));
		sse_rr(e, 0x66, true, 0x0f7e, 0, RAX); /* movq rax, xmm0 */
		sse_rr(e, 0x66, false, 0x0f2e, 0, 0);  /* ucomisd xmm0, xmm0: PF for NaN */
		ok = jcc_fwd(e, CC_NP);
		mov_imm64(e, RAX, 0x7ff8000000000000ULL);
		fix_here(e, ok);
		op_mem(e, true, 0x89, RAX, RBX, OFF_F(rd));
		fp_accrue(e, s);
		break;
	case 0x69: /* FCVT.D.W, FCVT.D.L */
		if ((rm > 3 && rm != 7) || (rs2 != 0 && rs2 != 2))
			return false;
		fs_check(bk, idx, off, len);
		s = stub_add(bk, STUB_FPU, idx, off, len);
		s->insn = insn;
		fp_guard(e, s, rm);
		ld_x(e, RCX, rs1);
		sse_rr(e, 0xf2, rs2 == 2, 0x0f2a, 0, RCX);      /* cvtsi2sd xmm0, ecx/rcx */
		sse_mem(e, 0xf2, 0x0f11, 0, RBX, OFF_F(rd)); /* movsd f[rd], xmm0 */
		fp_accrue(e, s);
		break;
	case 0x51: /* FLE, FLT, FEQ */
		if (rm > 2)
			return false;
		fs_check(bk, idx, off, len);
		s = stub_add(bk, STUB_FPU, idx, off, len);
		s->insn = insn;
		fp_guard(e, s, 0);
		sse_mem(e, 0xf2, 0x0f10, 0, RBX, OFF_F(rs1));
		sse_mem(e, 0xf2, 0x0f10, 1, RBX, OFF_F(rs2));
		if (rm == 2) {
			sse_rr(e, 0x66, false, 0x0f2e, 0, 1); /* ucomisd xmm0, xmm1 */
			op_rr(e, false, 0x0f94, 0, RAX);      /* sete al */
			op_rr(e, false, 0x0f9b, 0, RCX);      /* setnp cl */
			op_rr(e, false, 0x21, RCX, RAX);      /* and eax, ecx */
		} else {
			sse_rr(e, 0x66, false, 0x0f2f, 1, 0); /* comisd xmm1, xmm0: false if NaN */
			op_rr(e, false, rm == 1 ? 0x0f97 : 0x0f93, 0, RAX); /* seta / setae al */
		}
		op_rr(e, false, 0x0fb6, RAX, RAX); /* movzx eax, al */
		st_x(e, rd, RAX);
		fp_accrue(e, s);
		break;
	case 0x11: /* FSGNJ.D, FSGNJN.D, FSGNJX.D */
		if (rm > 2)
			return false;
		fs_check(bk, idx, off, len);
		op_mem(e, true, 0x8b, RAX, RBX, OFF_F(rs1));
		op_mem(e, true, 0x8b, RCX, RBX, OFF_F(rs2));
		if (rm == 1)
			op_rr(e, true, 0xf7, 2, RCX); /* not rcx */
		if (rm == 2) {
			mov_imm64(e, RDX, 1ULL << 63);
			op_rr(e, true, 0x21, RDX, RCX); /* and rcx, rdx */
			op_rr(e, true, 0x31, RCX, RAX); /* xor rax, rcx */
		} else {
			op_rr(e, true, 0x0fba, 6, RAX); /* btr rax, 63 */
			b1(e, 63);
			shift_imm(e, true, 5, RCX, 63); /* shr rcx, 63 */
			shift_imm(e, true, 4, RCX, 63); /* shl rcx, 63 */
			op_rr(e, true, 0x09, RCX, RAX); /* or rax, rcx */
		}
		op_mem(e, true, 0x89, RAX, RBX, OFF_F(rd));
		break;
	case 0x71: /* FMV.X.D */
		if (rm != 0 || rs2 != 0)
			return false;
		fs_check(bk, idx, off, len);
		op_mem(e, true, 0x8b, RAX, RBX, OFF_F(rs1));
		st_x(e, rd, RAX);
		break;
	case 0x79: /* FMV.D.X */
		if (rm != 0 || rs2 != 0)
			return false;
		fs_check(bk, idx, off, len);
		ld_x(e, RAX, rs1);
		op_mem(e, true, 0x89, RAX, RBX, OFF_F(rd));
		break;
	default:
		return false;
	}
	fs_dirty(e);
	return true;
}

/*
 * LOAD-FP, STORE-FP (unpriv 20191213 §11.5, §12.3): FLW NaN-boxes (§12.2); loads mark FS
 * dirty. OP-FP and the FMADD family: tr_fp_inline() for the common double-precision ops,
 * else a call of rv64_fpu_exec(), which keeps fpu.c's exact rounding, flags and NaN rules.
 * Returns like tr_insn.
 */
static int tr_fp(struct blk *bk, uint32_t insn, unsigned off, unsigned len, unsigned idx)
{
	struct em *e = &bk->e;
	unsigned rd = (insn >> 7) & 31, rs1 = (insn >> 15) & 31, rs2 = (insn >> 20) & 31;
	unsigned f3 = (insn >> 12) & 7;
	struct stub *s;

	switch (insn & 0x7f) {
	case 0x07:
		if (f3 != 2 && f3 != 3)
			return -1;
		fs_check(bk, idx, off, len);
		s = mem_fast(bk, STUB_LOAD, RV64_ACC_READ, rs1, imm_i(insn), f3 == 2 ? 4 : 8, idx,
			     off, len);
		s->ext = EXT_NONE;
		mem_op(e, s, f3 == 3, 0x8b, RAX);
		s->resume = e->pos;
		if (f3 == 2) {
			mov_imm64(e, RCX, 0xffffffff00000000ULL);
			op_rr(e, true, 0x09, RCX, RAX); /* or rax, rcx */
		}
		op_mem(e, true, 0x89, RAX, RBX, OFF_F(rd));
		fs_dirty(e);
		return 0;
	case 0x27:
		if (f3 != 2 && f3 != 3)
			return -1;
		fs_check(bk, idx, off, len);
		s = mem_fast(bk, STUB_STORE, RV64_ACC_WRITE, rs1, imm_s(insn), f3 == 2 ? 4 : 8, idx,
			     off, len);
		s->rs2 = (uint8_t)rs2;
		s->fp = true;
		op_mem(e, true, 0x8b, RDX, RBX, OFF_F(rs2));
		mem_op(e, s, f3 == 3, 0x89, RDX);
		s->resume = e->pos;
		return 0;
	default: /* 0x43, 0x47, 0x4b, 0x4f, 0x53 */
		if (tr_fp_inline(bk, insn, off, len, idx))
			return 0;
		fs_check(bk, idx, off, len);
		writeback_all(e); /* it may read x[rs1]; before rdi and rsi, which may cache some */
		op_rr(e, true, 0x89, RBX, RDI); /* rdi = cpu */
		b1(e, 0xbe);                    /* mov esi, insn */
		b4(e, insn);
		call_abs(e, (const void *)rv64_fpu_exec);
		reload_regs(e, true); /* it may have written x[rd] */
		op_rr(e, false, 0x85, RAX, RAX);
		s = stub_add(bk, STUB_STEP, idx, off, len); /* refused: the interpreter traps */
		s->fix = jcc_fwd(e, CC_NE);
		fs_dirty(e);
		return 0;
	}
}

/*
 * A CSR instruction (CSRRW/RS/RC and their immediate forms, unpriv 20191213 §9.1) for
 * translated code, with the registers written back: rv64_csr_insn() does the work, as in the
 * interpreter. Returns -1 when it refused (nothing changed: the interpreter raises the illegal
 * instruction trap), 0 when the block may go on, or the status to leave with after it:
 * RV64_JIT_EXIT_EVENT when the write may have made an interrupt deliverable (an enable bit,
 * a pending software bit, delegation or a timer compare changed; priv 1.12 §3.1.9) and an
 * enabled one is pending now (the run loop's own test, with the clock read now: one that
 * becomes pending later is taken at the end of the slice, as always), so the run loop looks
 * before the next instruction; RV64_JIT_EXIT_CODE when it flushed the TLB
 * (satp, PMP: priv 1.12 §4.1.11, §3.7.2), so the next instruction is fetched through the new
 * translation. Writes that only disable interrupts or change SUM, MXR, MPRV or FS go on:
 * translated loads and stores read tlb_allow, and FP code mstatus.FS and frm, at each use.
 */
static int jit_csr(struct rv64_cpu *cpu, uint32_t insn)
{
	unsigned rd = (insn >> 7) & 31, rs1 = (insn >> 15) & 31, f3 = (insn >> 12) & 7;
	unsigned op = f3 & 3;
	uint64_t src = (f3 & 4) ? rs1 : cpu->x[rs1], v;
	bool wr = op == 1 || rs1 != 0;
	uint64_t ie = cpu->mstatus & 0xa, mie = cpu->mie, mip = cpu->mip;
	uint64_t mideleg = cpu->mideleg, stimecmp = cpu->stimecmp, menvcfg = cpu->menvcfg;
	uint64_t gen = cpu->jit->jc->gen;

	if (rv64_csr_insn(cpu, insn >> 20, op, src, rd != 0, wr, &v))
		return -1;
	if (rd)
		cpu->x[rd] = v;
	if (!wr)
		return 0;
	if (((cpu->mstatus & 0xa & ~ie) || (cpu->mie & ~mie) || (cpu->mip & ~mip) ||
	     cpu->mideleg != mideleg || cpu->stimecmp != stimecmp || cpu->menvcfg != menvcfg) &&
	    (rv64_irq_pending(cpu, clock_guest_ticks()) & cpu->mie))
		return RV64_JIT_EXIT_EVENT;
	if (cpu->jit->jc->gen != gen)
		return RV64_JIT_EXIT_CODE;
	return 0;
}

/*
 * The call of a SYSTEM instruction's helper fn(cpu, insn[, page_va]) with the registers written
 * back (it reads and writes cpu->x[]) and reloaded after it. fn returns < 0 when it refused
 * the instruction (the interpreter raises the trap), 0 when the block goes on, else the status
 * to leave with after the instruction.
 */
static void system_call(struct blk *bk, const void *fn, bool page_va, uint32_t insn,
			unsigned off, unsigned len, unsigned idx)
{
	struct em *e = &bk->e;
	struct stub *s;

	writeback_all(e); /* before rdi and rsi, which may cache some */
	op_rr(e, true, 0x89, RBX, RDI); /* rdi = cpu */
	b1(e, 0xbe);                    /* mov esi, insn */
	b4(e, insn);
	if (page_va)
		op_rr(e, true, 0x89, R12, RDX); /* rdx = the page's virtual address */
	call_abs(e, fn);
	reload_regs(e, true); /* it may have written x[rd] */
	op_rr(e, false, 0x85, RAX, RAX);
	s = stub_add(bk, STUB_STEP, idx, off, len); /* refused: the interpreter traps */
	s->fix = jcc_fwd(e, CC_S);
	s = stub_add(bk, STUB_CSR, idx, off, len); /* leave after it with status eax */
	s->fix = jcc_fwd(e, CC_NE);
}

/*
 * CSR instructions through jit_csr(). The counters that count retired instructions or cycles
 * (cycle, instret, the hpm counters, their machine forms, mcountinhibit) stay with the
 * interpreter, which brings instret up to date first; `time` reads the host clock.
 */
static int tr_csr(struct blk *bk, uint32_t insn, unsigned off, unsigned len, unsigned idx)
{
	unsigned f3 = (insn >> 12) & 7, csr = insn >> 20;

	if (f3 == 0 || f3 == 4)
		return -1;
	if (((csr & 0xf60) == 0xb00 || (csr & 0xf60) == 0xc00) && csr != 0xc01)
		return -1;
	if (csr == 0x320)
		return -1;
	system_call(bk, (const void *)jit_csr, false, insn, off, len, idx);
	return 0;
}

/*
 * SFENCE.VMA (priv 1.12 §4.2.1) for translated code on the page at page_va, with the registers
 * written back: -1 when it is illegal here (U-mode, or S-mode with mstatus.TVM; the
 * interpreter raises the trap), else the TLB flush the interpreter does, then 0 to go on in
 * the block when this page's own instruction-TLB entry came through the flush untouched (a
 * fence of another page that shares no superpage region with it: Linux fences single kernel
 * pages ~100k times per boot), else RV64_JIT_EXIT_CODE: the next instruction is fetched
 * through a fresh lookup, as the fence may have changed this page's translation. A fence
 * orders only the translations of its address (§4.2.1), so going on with this page's is what
 * a hart whose instruction TLB kept the entry does.
 */
static int jit_sfence(struct rv64_cpu *cpu, uint32_t insn, uint64_t page_va)
{
	unsigned rs1 = (insn >> 15) & 31;
	struct rv64_tlb_entry *e = rv64_tlb_slot(cpu, RV64_ACC_EXEC, page_va);
	bool held = rv64_tlb_match(cpu, e, RV64_ACC_EXEC, page_va, 2);
	uint64_t tag = e->tag;

	if (cpu->priv == RV64_PRIV_U || (cpu->priv == RV64_PRIV_S && (cpu->mstatus & MS_TVM)))
		return -1;
	if (!rs1) {
		rv64_tlb_flush(cpu);
		return RV64_JIT_EXIT_CODE;
	}
	rv64_tlb_flush_page(cpu, cpu->x[rs1]);
	return held && e->tag == tag && rv64_tlb_match(cpu, e, RV64_ACC_EXEC, page_va, 2)
		       ? 0
		       : RV64_JIT_EXIT_CODE;
}

/* SFENCE.VMA through jit_sfence(); the block goes on unless the fence touched its page. */
static int tr_sfence(struct blk *bk, uint32_t insn, unsigned off, unsigned len, unsigned idx)
{
	system_call(bk, (const void *)jit_sfence, true, insn, off, len, idx);
	return 0;
}

/*
 * Translates one instruction (RVC already expanded) at page offset `off`. Returns 0 to go
 * on, 1 when it ended the block (it left), -1 when it is not translated (nothing emitted).
 */
static int tr_insn(struct blk *bk, uint32_t insn, unsigned off, unsigned len, unsigned idx)
{
	struct em *e = &bk->e;
	unsigned rd = (insn >> 7) & 31, rs1 = (insn >> 15) & 31, rs2 = (insn >> 20) & 31;
	unsigned f3 = (insn >> 12) & 7, f7 = insn >> 25;
	int64_t imm = imm_i(insn);
	struct stub *s;
	unsigned d, v;
	int k;

	switch (insn & 0x7f) {
	case 0x37: /* LUI */
		st_x_imm(e, rd, insn & 0xfffff000u);
		return 0;
	case 0x17: /* AUIPC */
		if (rd) {
			unsigned d = dst_reg(e, rd);

			lea_pc(e, d, (int64_t)off + (int32_t)(insn & 0xfffff000u));
			put_x(e, rd, d);
		}
		return 0;
	case 0x6f: /* JAL */
		if (rd) {
			lea_pc(e, RAX, off + len);
			st_x(e, rd, RAX);
		}
		k = insn_at(bk, idx + 1, (int64_t)off + imm_j(insn));
		if (k >= 0) { /* a loop closed by a jump back into this block */
			jump_inside(bk, idx + 1, idx, bk->nmem, (unsigned)k, (int64_t)off + imm_j(insn));
			return 1;
		}
		switch (jal_way(rd, off, len, (int64_t)off + imm_j(insn))) {
		case JAL_SKIP: /* resolved with the branches, once the block is complete */
			s = stub_add(bk, STUB_BRANCH, idx, off, len);
			s->target = (int64_t)off + imm_j(insn);
			s->fix = jmp_fwd(e);
			return 0;
		case JAL_FOLLOW:
			bk->follow = (int64_t)off + imm_j(insn);
			return 2;
		default:
			exit_to(e, (int64_t)off + imm_j(insn));
			return 1;
		}
	case 0x67: /* JALR: target before the link, rd may be rs1 */
		if (f3)
			return -1;
		ld_x(e, RAX, rs1);
		if (imm)
			alu_imm(e, true, 0, RAX, (int32_t)imm);
		alu_imm(e, true, 4, RAX, -2);
		if (rd) {
			lea_pc(e, RCX, off + len);
			st_x(e, rd, RCX);
		}
		writeback_regs(e);
		jc_exit(e);
		return 1;
	case 0x63: { /* BRANCH: taken leaves through a stub */
		static const uint8_t cc[8] = {CC_E, CC_NE, 0, 0, CC_L, CC_GE, CC_B, CC_AE};

		if (f3 == 2 || f3 == 3)
			return -1;
		cmp_x(e, rs1, rs2);
		k = insn_at(bk, idx + 1, (int64_t)off + imm_b(insn));
		if (k >= 0) { /* a loop closed by a branch back: taken stays inline */
			uint64_t skip = jcc_fwd(e, cc[f3] ^ 1); /* x86 conditions pair by bit 0 */

			/* The budget check of jump_inside(), its bound patched once n is known. */
			op_rr(e, true, 0x81, 7, R13); /* cmp r13, imm32 */
			b4(e, 0);
			s = stub_add(bk, STUB_BACK, idx, off, len);
			s->resume = e->pos - 4;
			s->target = (int64_t)off + imm_b(insn);
			s->fix = jcc_fwd(e, CC_L);
			r13_adjust(e, k - (int)idx - 1, (int32_t)bk->nmem - (int32_t)bk->imem[k]);
			jmp_to(e, insn_entry(bk, (unsigned)k));
			fix_here(e, skip);
			return 0;
		}
		s = stub_add(bk, STUB_BRANCH, idx, off, len);
		s->target = (int64_t)off + imm_b(insn);
		s->fix = jcc_fwd(e, cc[f3]);
		return 0;
	}
	case 0x03: { /* LOAD: a load to x0 still accesses memory */
		static const uint32_t op[7] = {0x0fbe, 0x0fbf, 0x63, 0x8b, 0x0fb6, 0x0fb7, 0x8b};
		static const bool w[7] = {true, true, true, true, false, false, false};
		static const uint8_t ext[7] = {EXT_S8, EXT_S16, EXT_S32, EXT_NONE,
					       EXT_NONE, EXT_NONE, EXT_NONE};

		if (f3 == 7)
			return -1;
		s = mem_fast(bk, STUB_LOAD, RV64_ACC_READ, rs1, imm, 1u << (f3 & 3), idx, off,
			     len);
		s->ext = ext[f3];
		s->rd = (uint8_t)rd;
		mem_op(e, s, w[f3], op[f3], dst_reg(e, rd));
		s->resume = e->pos;
		put_x(e, rd, dst_reg(e, rd));
		grp_begin(e, RV64_ACC_READ, rs1, rd);
		return 0;
	}
	case 0x23: /* STORE */
		if (f3 > 3)
			return -1;
		s = mem_fast(bk, STUB_STORE, RV64_ACC_WRITE, rs1, imm_s(insn), 1u << f3, idx, off,
			     len);
		s->rs2 = (uint8_t)rs2;
		/*
		 * From the cached register; not rbp/rsi/rdi as a byte (ch/dh/bh without REX).
		 * Else from rax, free once the TLB test is done (rcx and rdx stay for a group).
		 */
		v = dst_reg(e, rs2);
		if (v == RAX || (f3 == 0 && v >= RSP && v <= RDI)) {
			v = RAX;
			ld_x(e, RAX, rs2);
		}
		switch (f3) {
		case 0:
			mem_op(e, s, false, 0x88, v);
			break;
		case 1:
			b1(e, 0x66);
			mem_op(e, s, false, 0x89, v);
			break;
		case 2:
			mem_op(e, s, false, 0x89, v);
			break;
		default:
			mem_op(e, s, true, 0x89, v);
			break;
		}
		s->resume = e->pos;
		grp_begin(e, RV64_ACC_WRITE, rs1, 0);
		return 0;
	case 0x13: /* OP-IMM */
		switch (f3) {
		case 1:
			if (insn >> 26)
				return tr_zb(e, insn);
			break;
		case 5:
			if ((insn >> 26) != 0 && (insn >> 26) != 0x10)
				return tr_zb(e, insn);
			break;
		}
		if (!rd)
			return 0; /* a NOP or hint */
		if (f3 == 0 && !rs1) {
			st_x_imm(e, rd, (uint32_t)imm);
			return 0;
		}
		if (f3 == 2 || f3 == 3) { /* SLTI, SLTIU */
			if (rs1 && e->hreg[rs1] >= 0) {
				alu_imm(e, true, 7, (unsigned)e->hreg[rs1], (int32_t)imm);
			} else {
				ld_x(e, RAX, rs1);
				alu_imm(e, true, 7, RAX, (int32_t)imm);
			}
			op_rr(e, false, f3 == 2 ? 0x0f9c : 0x0f92, 0, RAX);
			op_rr(e, false, 0x0fb6, RAX, RAX);
			st_x(e, rd, RAX);
			return 0;
		}
		if (f3 == 0 && !imm) { /* MV */
			mov_x(e, rd, rs1);
			return 0;
		}
		d = src_to_dst(e, rd, rs1);
		switch (f3) {
		case 0:
			if (imm)
				alu_imm(e, true, 0, d, (int32_t)imm);
			break;
		case 4:
			alu_imm(e, true, 6, d, (int32_t)imm);
			break;
		case 6:
			alu_imm(e, true, 1, d, (int32_t)imm);
			break;
		case 7:
			alu_imm(e, true, 4, d, (int32_t)imm);
			break;
		case 1:
			shift_imm(e, true, 4, d, (insn >> 20) & 63);
			break;
		default:
			shift_imm(e, true, (insn >> 26) ? 7 : 5, d, (insn >> 20) & 63);
			break;
		}
		put_x(e, rd, d);
		return 0;
	case 0x1b: /* OP-IMM-32 */
		if (f3 == 1 && f7 != 0)
			return tr_zb(e, insn);
		if (f3 == 5 && f7 != 0 && f7 != 0x20)
			return tr_zb(e, insn);
		if (f3 != 0 && f3 != 1 && f3 != 5)
			return -1;
		if (!rd)
			return 0;
		if (f3 == 0 && !imm) { /* SEXT.W: one movsxd from wherever x[rs1] is */
			d = dst_reg(e, rd);
			if (rs1)
				op_x(e, true, 0x63, d, rs1);
			else
				op_rr(e, false, 0x31, d, d);
			put_x(e, rd, d);
			return 0;
		}
		d = src_to_dst(e, rd, rs1);
		if (f3 == 0)
			alu_imm(e, false, 0, d, (int32_t)imm);
		else
			shift_imm(e, false, f3 == 1 ? 4 : (f7 ? 7 : 5), d, rs2);
		op_rr(e, true, 0x63, d, d); /* movsxd */
		put_x(e, rd, d);
		return 0;
	case 0x33: { /* OP */
		unsigned k = f7 << 3 | f3;
		static const struct {
			unsigned k;
			uint32_t op;
		} alu[] = {
			{0x00 << 3 | 0, 0x03}, {0x20 << 3 | 0, 0x2b}, {0x00 << 3 | 4, 0x33},
			{0x00 << 3 | 6, 0x0b}, {0x00 << 3 | 7, 0x23},
		};

		switch (k) {
		case 0x00 << 3 | 0: case 0x20 << 3 | 0: case 0x00 << 3 | 1: case 0x00 << 3 | 2:
		case 0x00 << 3 | 3: case 0x00 << 3 | 4: case 0x00 << 3 | 5: case 0x20 << 3 | 5:
		case 0x00 << 3 | 6: case 0x00 << 3 | 7: case 0x01 << 3 | 0: case 0x01 << 3 | 1:
		case 0x01 << 3 | 2: case 0x01 << 3 | 3: case 0x10 << 3 | 2: case 0x10 << 3 | 4:
		case 0x10 << 3 | 6: case 0x01 << 3 | 4: case 0x01 << 3 | 5: case 0x01 << 3 | 6:
		case 0x01 << 3 | 7:
			break;
		default:
			return tr_zb(e, insn);
		}
		if (!rd)
			return 0;
		if (f7 == 0x01 && f3 >= 4) {
			tr_div(e, f3, true, rd, rs1, rs2);
			return 0;
		}
		if (!rs2 && k != (0x00 << 3 | 7) && (f7 == 0x00 || f7 == 0x20) && f3 != 2 &&
		    f3 != 3) { /* ADD, SUB, XOR, OR, shifts of x[rs1] by x0 */
			mov_x(e, rd, rs1);
			return 0;
		}
		if (!rs1 && (k == (0x00 << 3 | 0) || k == (0x00 << 3 | 4) || k == (0x00 << 3 | 6))) {
			mov_x(e, rd, rs2); /* C.MV is ADD rd, x0, rs2 */
			return 0;
		}
		for (unsigned i = 0; i < sizeof(alu) / sizeof(alu[0]); i++) {
			if (alu[i].k == k) {
				d = bin_op(e, true, alu[i].op, k != (0x20 << 3 | 0), rd, rs1, rs2);
				put_x(e, rd, d);
				return 0;
			}
		}
		switch (k) {
		case 0x00 << 3 | 1: /* shifts by rs2 & 63: what x86 does with cl */
		case 0x00 << 3 | 5:
		case 0x20 << 3 | 5:
			ld_x(e, RCX, rs2);
			d = src_to_dst(e, rd, rs1);
			op_rr(e, true, 0xd3, f3 == 1 ? 4 : (f7 ? 7 : 5), d);
			put_x(e, rd, d);
			return 0;
		case 0x00 << 3 | 2:
		case 0x00 << 3 | 3:
			cmp_x(e, rs1, rs2);
			op_rr(e, false, f3 == 2 ? 0x0f9c : 0x0f92, 0, RAX);
			op_rr(e, false, 0x0fb6, RAX, RAX);
			break;
		case 0x01 << 3 | 0: /* MUL */
			put_x(e, rd, bin_op(e, true, 0x0faf, true, rd, rs1, rs2));
			return 0;
		case 0x01 << 3 | 1: /* MULH */
		case 0x01 << 3 | 3: /* MULHU */
			ld_x(e, RAX, rs1);
			op_x(e, true, 0xf7, f3 == 1 ? 5 : 4, rs2);
			op_rr(e, true, 0x89, RDX, RAX);
			break;
		case 0x01 << 3 | 2: /* MULHSU = MULHU - (rs1 < 0 ? rs2 : 0) */
			ld_x(e, RAX, rs1);
			op_rr(e, true, 0x89, RAX, RCX);
			op_x(e, true, 0xf7, 4, rs2);
			shift_imm(e, true, 7, RCX, 63);
			op_x(e, true, 0x23, RCX, rs2);
			op_rr(e, true, 0x29, RCX, RDX); /* sub rdx, rcx */
			op_rr(e, true, 0x89, RDX, RAX);
			break;
		default: /* SH1ADD, SH2ADD, SH3ADD (Zba) */
			ld_x(e, RAX, rs1);
			shift_imm(e, true, 4, RAX, f3 >> 1);
			op_x(e, true, 0x03, RAX, rs2);
			break;
		}
		st_x(e, rd, RAX);
		return 0;
	}
	case 0x3b: { /* OP-32 */
		unsigned k = f7 << 3 | f3;

		switch (k) {
		case 0x00 << 3 | 0: case 0x20 << 3 | 0: case 0x00 << 3 | 1: case 0x00 << 3 | 5:
		case 0x20 << 3 | 5: case 0x01 << 3 | 0: case 0x04 << 3 | 0: case 0x01 << 3 | 4:
		case 0x01 << 3 | 5: case 0x01 << 3 | 6: case 0x01 << 3 | 7:
			break;
		default:
			return tr_zb(e, insn);
		}
		if (!rd)
			return 0;
		if (f7 == 0x01 && f3 >= 4) {
			tr_div(e, f3, false, rd, rs1, rs2);
			return 0;
		}
		switch (k) {
		case 0x04 << 3 | 0: /* ADD.UW (Zba) */
			ld_x32(e, RAX, rs1);
			op_x(e, true, 0x03, RAX, rs2);
			st_x(e, rd, RAX);
			return 0;
		case 0x00 << 3 | 0:
			d = bin_op(e, false, 0x03, true, rd, rs1, rs2);
			break;
		case 0x20 << 3 | 0:
			d = bin_op(e, false, 0x2b, false, rd, rs1, rs2);
			break;
		case 0x01 << 3 | 0:
			d = bin_op(e, false, 0x0faf, true, rd, rs1, rs2);
			break;
		default: /* SLLW, SRLW, SRAW: x86 masks cl to 5 bits for 32-bit shifts */
			ld_x(e, RCX, rs2);
			d = src_to_dst(e, rd, rs1);
			op_rr(e, false, 0xd3, f3 == 1 ? 4 : (f7 ? 7 : 5), d);
			break;
		}
		op_rr(e, true, 0x63, d, d); /* movsxd */
		put_x(e, rd, d);
		return 0;
	}
	case 0x2f:
		return tr_amo(bk, insn, off, len, idx);
	case 0x0f: /* FENCE; FENCE.I stays with the interpreter (it may drop decoded code) */
		if (f3)
			return -1;
		/*
		 * Loads and stores are plain host accesses and x86 keeps every order but store ->
		 * load (TSO), so only a fence with W in its predecessor and R in its successor set
		 * (unpriv 20191213 §2.7) needs mfence, exactly as the interpreter does it.
		 */
		if ((insn & (1u << 24)) && (insn & (1u << 21))) {
			b1(e, 0x0f);
			b1(e, 0xae);
			b1(e, 0xf0);
		}
		return 0;
	case 0x07:
	case 0x27:
	case 0x43:
	case 0x47:
	case 0x4b:
	case 0x4f:
	case 0x53:
		return tr_fp(bk, insn, off, len, idx);
	case 0x73:
		if ((insn & 0xfe007fffu) == 0x12000073u)
			return tr_sfence(bk, insn, off, len, idx);
		return tr_csr(bk, insn, off, len, idx);
	default:
		return -1;
	}
}

/*
 * A load or store's exit with `status` at page offset `off`, giving back `insns` and `hits`:
 * loads edx and rcx and jumps to the block's shared tail for that status (*tail, emitted on
 * first use), which writes the registers back, sets the pc and adds rcx to r13.
 */
static void mem_exit(struct em *e, uint64_t *tail, unsigned status, unsigned off, int32_t insns,
		     int32_t hits)
{
	b1(e, 0xba); /* mov edx, off */
	b4(e, off);
	op_rr(e, true, 0xc7, 0, RCX); /* mov rcx, the r13 adjustment */
	b4(e, (uint32_t)((uint32_t)insns << BUDGET_SHIFT) + (uint32_t)hits);
	if (*tail) {
		jmp_to(e, *tail);
		return;
	}
	*tail = e->pos;
	writeback_regs(e);
	b1(e, 0x49); /* lea rax, [r12 + rdx] */
	b1(e, 0x8d);
	b1(e, 0x04);
	b1(e, 0x14);
	op_mem(e, true, 0x89, RAX, RBX, OFF_PC);
	op_rr(e, true, 0x01, RCX, R13); /* add r13, rcx */
	b1(e, 0xba);
	b4(e, status);
	jmp_epilogue(e);
}

/*
 * Side exits, after the block's straight-line code: n is the block's instruction count. Each
 * exit takes back the hits counted up front for loads and stores it skips; a slow path counts
 * its own access.
 */
static void emit_stubs(struct blk *bk, unsigned n)
{
	int32_t nmem = (int32_t)bk->nmem;
	uint64_t tails[2] = {0, 0}; /* the block's shared EXC and CODE exits, once emitted */
	struct em *e = &bk->e;

	for (unsigned i = 0; i < bk->nstubs && room(e); i++) {
		struct stub *s = &bk->stubs[i];
		uint64_t exc, code = 0;

		fix_here(e, s->fix);
		for (unsigned k = 0; k < 3; k++)
			if (s->fix2[k])
				fix_here(e, s->fix2[k]);
		if (s->kind == STUB_STEP || s->kind == STUB_FPU)
			writeback_regs(e); /* exit_to() does it for branches, exits for the rest */
		if (s->kind == STUB_FPU) {
			op_rr(e, true, 0x89, RBX, RDI); /* rdi = cpu */
			b1(e, 0xbe);                    /* mov esi, insn */
			b4(e, s->insn);
			call_abs(e, (const void *)rv64_fpu_exec);
			reload_regs(e, true); /* it may have written x[rd] */
			op_rr(e, false, 0x85, RAX, RAX);
			exc = jcc_fwd(e, CC_NE);
			jmp_to(e, s->resume);
			fix_here(e, exc); /* refused: the interpreter raises the trap */
		}
		if (s->kind == STUB_CSR) {
			/* Retired: leave for the next instruction with jit_csr()'s status. */
			op_rr(e, false, 0x89, RAX, RDX); /* mov edx, eax */
			writeback_regs(e);
			set_pc_off(e, s->off + s->len);
			r13_adjust(e, (int32_t)(n - s->idx - 1), s->mem - nmem);
			jmp_epilogue(e);
			continue;
		}
		if (s->kind == STUB_STEP || s->kind == STUB_FPU) {
			set_pc_off(e, s->off);
			r13_adjust(e, (int32_t)(n - s->idx), s->mem - nmem);
			b1(e, 0xba);
			b4(e, RV64_JIT_EXIT_STEP);
			jmp_epilogue(e);
			continue;
		}
		if (s->kind == STUB_BACK) {
			/* budget + given back <= 0, i.e. r13 < (1 - given back) << BUDGET_SHIFT */
			patch32(e, s->resume,
				(uint32_t)(1 - (int32_t)(n - s->idx - 1)) << BUDGET_SHIFT);
			r13_adjust(e, (int32_t)(n - s->idx - 1), s->mem - nmem);
			exit_to(e, s->target);
			continue;
		}
		if (s->kind == STUB_BRANCH) {
			int k = insn_at(bk, n, s->target);

			if (k >= 0) {
				jump_inside(bk, n, s->idx, s->mem, (unsigned)k, s->target);
				continue;
			}
			r13_adjust(e, (int32_t)(n - s->idx - 1), s->mem - nmem);
			exit_to(e, s->target);
			continue;
		}
		if (s->follows) {
			uint64_t miss;

			tlb_test(e, s->acc, s->base, s->imm, s->size);
			miss = jcc_fwd(e, CC_NE);
			op_tlb(e, 0x8b, RCX, OFF_TLB(s->acc) + 8); /* rcx = host_addend */
			jmp_to(e, s->access);
			fix_here(e, miss);
		}
		/*
		 * The slow access through a shared trampoline that keeps every host register but
		 * rax, rcx and rdx (emit_base()): the cached registers stay where they are and are
		 * written back only when the access leaves the block.
		 */
		hits_add(e, -1);
		op_mem(e, true, 0x8d, RSI, s->base, s->imm); /* rsi = va */
		if (s->kind == STUB_STORE) {
			if (s->fp)
				op_mem(e, true, 0x8b, RCX, RBX, OFF_F(s->rs2));
			else
				ld_x(e, RCX, s->rs2);
		}
		b1(e, 0xba); /* mov edx, size */
		b4(e, s->size);
		b1(e, 0xe8); /* call the trampoline */
		b4(e, 0);
		fix_to(e, e->pos - 4,
		       (uint64_t)((s->kind == STUB_LOAD ? e->j->slow_load : e->j->slow_store) -
				  e->j->rx));
		op_rr(e, false, 0x85, RAX, RAX);
		if (s->kind == STUB_LOAD) {
			exc = jcc_fwd(e, CC_NE);
			switch (s->ext) { /* the value is in rcx */
			case EXT_S8:
				op_rr(e, true, 0x0fbe, RAX, RCX);
				break;
			case EXT_S16:
				op_rr(e, true, 0x0fbf, RAX, RCX);
				break;
			case EXT_S32:
				op_rr(e, true, 0x63, RAX, RCX);
				break;
			default:
				op_rr(e, true, 0x89, RCX, RAX);
				break;
			}
			if (dst_reg(e, s->rd) != RAX)
				op_rr(e, true, 0x89, RAX, dst_reg(e, s->rd)); /* resume is past put_x() */
		} else {
			exc = jcc_fwd(e, CC_S);
			code = jcc_fwd(e, CC_NE);
		}
		/* rcx and rdx are lost: a follower next must miss (mem_fast()) */
		if (s->idx + 1u < n && (bk->follower >> (s->idx + 1) & 1))
			op_rr(e, false, 0x31, RDX, RDX); /* xor edx, edx */
		jmp_to(e, s->resume);
		/* The access trapped: the instruction did not retire. */
		fix_here(e, exc);
		mem_exit(e, &tails[0], RV64_JIT_EXIT_EXC, s->off, (int32_t)(n - s->idx),
			 s->mem - nmem);
		if (s->kind == STUB_STORE) {
			/* The store rewrote decoded code: leave after it (exec.c looks up again). */
			fix_here(e, code);
			mem_exit(e, &tails[1], RV64_JIT_EXIT_CODE, s->off + s->len,
				 (int32_t)(n - s->idx - 1), s->mem - nmem);
		}
	}
}

static uint32_t parcel(const uint8_t *page, unsigned slot)
{
	/* Other harts may store to the page meanwhile: read each parcel once, atomically. */
	return __atomic_load_n((const uint16_t *)(page + 2 * slot), __ATOMIC_RELAXED);
}

/* j->used: only the translator's thread writes it; rv64_get_stats() reads it from others. */
static void jit_set_used(struct rv64_jit *j, uint64_t used)
{
	__atomic_store_n(&j->used, used, __ATOMIC_RELAXED);
}

static void jit_flush(struct rv64_jit *j)
{
	jit_set_used(j, j->base_used);
	j->nblocks = 0;
	j->flushes++;
	rv64_jit_jc_invalidate(j); /* its entries point into the old code */
}

/*
 * Picks the guest registers the block starting at `slot` uses most (a scan of the same
 * instructions emit_block will see, at most up to its first jump; uses inside a loop closed
 * by a jump back into the scanned code count 8 times) and assigns them host registers,
 * callee-saved ones first. rdi joins them (calls get it back from cpu->x[] like r8-r11),
 * rsi too when no load or store needs it for addresses. A register used once gains nothing
 * over cpu->x[].
 */
static void assign_regs(struct em *e, const uint8_t *page, unsigned slot, bool no_rsi)
{
	static const uint8_t host[] = {R14, R15, RBP, RDI, R8, R9, R10, R11, RSI};
	uint32_t insns[JIT_BLOCK_MAX];
	uint16_t at[JIT_BLOCK_MAX];
	uint8_t weight[JIT_BLOCK_MAX];
	unsigned uses[32] = {0}, n = 0, nhost = sizeof(host) - no_rsi, ncand = 0;
	uint8_t cand[31];

	memset(e->hreg, -1, sizeof(e->hreg));
	for (unsigned s = slot; n < JIT_BLOCK_MAX && s < PAGE_SLOTS;) {
		uint32_t lo = parcel(page, s), insn;
		unsigned opc;
		int64_t t = -1;
		bool back = false;

		for (unsigned k = 0; k < n; k++)
			if (at[k] == s) { /* runs on into scanned code (after a JAL_FOLLOW) */
				for (unsigned i = k; i < n; i++)
					weight[i] = 8;
				back = true;
			}
		if (back)
			break;
		at[n] = (uint16_t)s;
		if ((lo & 3) == 3) {
			if (s + 1 >= PAGE_SLOTS)
				break;
			insn = lo | parcel(page, s + 1) << 16;
			s += 2;
		} else {
			insn = rv64_rvc_expand16(lo);
			s += 1;
			if (!insn)
				break;
		}
		opc = insn & 0x7f;
		if (opc != 0x33 && opc != 0x3b && opc != 0x63 && opc != 0x23 && opc != 0x13 &&
		    opc != 0x1b && opc != 0x03 && opc != 0x67 && opc != 0x07 && opc != 0x27 &&
		    opc != 0x37 && opc != 0x17 && opc != 0x6f && opc != 0x43 && opc != 0x47 &&
		    opc != 0x4b && opc != 0x4f && opc != 0x53 && opc != 0x0f && opc != 0x2f &&
		    opc != 0x73)
			break;
		if (opc == 0x03 || opc == 0x23 || opc == 0x07 || opc == 0x27 || opc == 0x2f)
			nhost = sizeof(host) - 1; /* rsi holds addresses */
		insns[n] = insn;
		weight[n++] = 1;
		if (opc == 0x63)
			t = (int64_t)at[n - 1] + imm_b(insn) / 2;
		if (opc == 0x6f)
			t = (int64_t)at[n - 1] + imm_j(insn) / 2;
		for (unsigned k = 0; t >= 0 && k < n; k++)
			if (at[k] == t) {
				for (unsigned i = k; i < n; i++)
					weight[i] = 8;
				back = true;
			}
		if (opc == 0x67 || (opc == 0x6f && back))
			break;
		if (opc == 0x6f) {
			enum jal_way way = jal_way((insn >> 7) & 31, 2u * at[n - 1],
						   2 * (s - at[n - 1]), 2 * t);

			if (way == JAL_EXIT)
				break;
			if (way == JAL_FOLLOW)
				s = (unsigned)t;
		}
	}
	for (unsigned i = 0; i < n; i++) {
		uint32_t insn = insns[i];
		unsigned opc = insn & 0x7f, w = weight[i];

		switch (opc) {
		case 0x33: case 0x3b: case 0x63: case 0x23: case 0x2f: /* rs2 */
			uses[(insn >> 20) & 31] += w;
			/* fall through */
		case 0x13: case 0x1b: case 0x03: case 0x67: case 0x07: case 0x27: /* rs1 */
			uses[(insn >> 15) & 31] += w;
			/* fall through */
		case 0x37: case 0x17: case 0x6f: /* rd */
			if (opc != 0x63 && opc != 0x23 && opc != 0x07 && opc != 0x27)
				uses[(insn >> 7) & 31] += w;
			break;
		default: /* f registers; CSR instructions (jit_csr() uses cpu->x[]) */
			break;
		}
	}
	/* Most used first, ties to the lower register number, among those used at least twice. */
	for (unsigned x = 1; x < 32; x++)
		if (uses[x] >= 2)
			cand[ncand++] = (uint8_t)x;
	for (unsigned h = 0; h < nhost && h < ncand; h++) {
		unsigned best = h, x;

		for (unsigned i = h + 1; i < ncand; i++)
			if (uses[cand[i]] > uses[cand[best]] ||
			    (uses[cand[i]] == uses[cand[best]] && cand[i] < cand[best]))
				best = i;
		x = cand[best];
		cand[best] = cand[h];
		cand[h] = (uint8_t)x;
		e->hreg[x] = (int8_t)host[h];
	}
}

/* Emits one block at j->used; returns its start, or UINT64_MAX (not translatable / full). */
static uint64_t emit_block(struct rv64_jit *j, struct blk *bk, const uint8_t *page,
			   unsigned slot, bool *full)
{
	struct em *e = &bk->e;
	uint64_t start, sub;
	unsigned n = 0, s = slot;
	bool ended = false;

	e->j = j;
	e->pos = start = j->used;
	e->limit = j->size - JIT_EMIT_MAX;
	e->full = false;
	bk->nstubs = 0;
	bk->nmem = 0;
	bk->follower = 0;
	bk->grp_clash = false;
	e->written = 0;
	e->grp_valid = false;
	if (!room(e)) {
		*full = true;
		return UINT64_MAX;
	}
	/* add r13, -(n << BUDGET_SHIFT) + loads and stores: the imm32 form, patched below */
	alu_imm(e, true, 0, R13, 0x7fffffff);
	sub = e->pos - 4;
	assign_regs(e, page, slot, bk->no_rsi);
	bk->mem_ops = false;
	reload_regs(e, true);
	while (n < JIT_BLOCK_MAX && s < PAGE_SLOTS && bk->nstubs + 2 < JIT_STUBS_MAX) {
		uint32_t lo = parcel(page, s), insn;
		unsigned len;
		int r, k = n ? insn_at(bk, n, (int64_t)s * 2) : -1;

		if (!room(e))
			break;
		if (k >= 0) { /* runs on into an instruction the block has (after a JAL_FOLLOW) */
			jump_inside(bk, n, n - 1, bk->nmem, (unsigned)k, (int64_t)s * 2);
			ended = true;
			break;
		}
		if ((lo & 3) == 3) {
			if (s + 1 >= PAGE_SLOTS)
				break; /* straddles the page end: the interpreter */
			insn = lo | parcel(page, s + 1) << 16;
			len = 4;
		} else {
			insn = rv64_rvc_expand16(lo);
			len = 2;
			if (!insn)
				break;
		}
		if ((insn & 0x7f) == 0x03 || (insn & 0x7f) == 0x23 || (insn & 0x7f) == 0x07 ||
		    (insn & 0x7f) == 0x27 || (insn & 0x7f) == 0x2f)
			bk->mem_ops = true;
		/* Everything but branches and stores may write x[rd] (FP ops: assume so). */
		if ((insn & 0x7f) != 0x63 && (insn & 0x7f) != 0x23 && (insn & 0x7f) != 0x27 &&
		    (insn & 0x7f) != 0x07)
			e->written |= 1u << ((insn >> 7) & 31);
		if (!grp_follows(bk, insn, s))
			e->grp_valid = false; /* a TLB group ends at anything but a follower */
		bk->ipos[n] = e->pos;
		bk->ioff[n] = (uint16_t)(s * 2);
		bk->imem[n] = (uint16_t)bk->nmem;
		r = tr_insn(bk, insn, s * 2, len, n);
		if (r < 0)
			break;
		n++;
		s += len / 2;
		if (r == 2) {
			s = (unsigned)(bk->follow / 2);
			continue;
		}
		if (r > 0) {
			ended = true;
			break;
		}
	}
	if (e->full || !n) {
		*full = e->full;
		return UINT64_MAX;
	}
	if (!ended && room(e))
		exit_to(e, (int64_t)s * 2);
	bk->n = n;
	emit_stubs(bk, n);
	patch32(e, sub, (uint32_t)bk->nmem - ((uint32_t)n << BUDGET_SHIFT));
	*full = e->full;
	if (e->full)
		return UINT64_MAX;
	while (e->pos & 15)
		b1(e, 0xcc);
	jit_set_used(j, e->pos);
	return start;
}

static bool rsi_cached(const struct em *e)
{
	for (unsigned x = 1; x < 32; x++)
		if (e->hreg[x] == RSI)
			return true;
	return false;
}

/*
 * emit_block(), again without rsi for guest registers when it turns out to be needed, and
 * again while a jump inside the block turns out to land on a TLB group follower (each time
 * one more instruction leads: insn_entry()).
 */
static uint64_t emit_block_exact(struct rv64_jit *j, struct blk *bk, const uint8_t *page,
				 unsigned slot, bool *full)
{
	uint64_t start;

	bk->no_rsi = false;
	memset(bk->lead, 0, sizeof(bk->lead));
	for (;;) {
		start = emit_block(j, bk, page, slot, full);
		if (start == UINT64_MAX)
			return start;
		if (!bk->grp_clash) {
			if (bk->no_rsi || !bk->mem_ops || !rsi_cached(&bk->e))
				return start;
			bk->no_rsi = true;
		}
		jit_set_used(j, start);
	}
}

/*
 * Debugging: with KUMO_JIT_DUMP=FILE set, every block is appended to FILE as one line: the
 * translator, the block's offset in the code buffer (perf shows it as the memfd offset), its
 * guest instructions' page offsets and words, and its host code, all in hex.
 */
static void jit_dump(const struct rv64_jit *j, const struct blk *bk, const uint8_t *page,
		     uint64_t start)
{
	static FILE *f;
	static bool tried;
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

	if (__atomic_load_n(&tried, __ATOMIC_ACQUIRE) && !f)
		return;
	pthread_mutex_lock(&lock);
	if (!tried) {
		const char *path = getenv("KUMO_JIT_DUMP");

		f = path && path[0] ? fopen(path, "a") : NULL;
		__atomic_store_n(&tried, true, __ATOMIC_RELEASE);
	}
	if (f) {
		fprintf(f, "jit %p at %#" PRIx64 " insns", (const void *)j, start);
		for (unsigned i = 0; i < bk->n; i++) {
			unsigned o = bk->ioff[i];
			uint32_t w = parcel(page, o / 2);

			if ((w & 3) == 3 && o + 2 < RV64_PAGE_SIZE)
				w |= parcel(page, o / 2 + 1) << 16;
			fprintf(f, " %x:%x", o, w);
		}
		fputs(" code ", f);
		for (uint64_t p = start; p < j->used; p++)
			fprintf(f, "%02x", j->rw[p]);
		fputc('\n', f);
		fflush(f);
	}
	pthread_mutex_unlock(&lock);
}

int rv64_jit_compile(struct rv64_jit *j, const uint8_t *page, unsigned slot, const void *owner)
{
	struct blk *bk;
	uint64_t start;
	bool full;

	if (slot >= PAGE_SLOTS)
		return -1;
	if (j->nblocks == j->cap) {
		uint32_t cap = j->cap ? 2 * j->cap : 4096;
		struct rv64_jit_block *nb = realloc(j->blocks, cap * sizeof(*nb));

		if (!nb)
			return -1;
		j->blocks = nb;
		j->cap = cap;
	}
	bk = malloc(sizeof(*bk));
	if (!bk)
		return -1;
	start = emit_block_exact(j, bk, page, slot, &full);
	if (full) {
		jit_flush(j);
		start = emit_block_exact(j, bk, page, slot, &full);
	}
	if (start != UINT64_MAX)
		jit_dump(j, bk, page, start);
	free(bk);
	if (start == UINT64_MAX)
		return -1;
	j->blocks[j->nblocks].owner = owner;
	j->blocks[j->nblocks].code = j->rx + start;
	j->translated++;
	return (int)j->nblocks++;
}

typedef struct rv64_jit_ret (*jit_entry_fn)(struct rv64_cpu *cpu, uint64_t page_va, int64_t left,
					     const void *code);

struct rv64_jit_ret rv64_jit_run(struct rv64_jit *j, struct rv64_cpu *cpu, uint64_t page_va,
				 int64_t left, const void *code)
{
	jit_entry_fn fn = (jit_entry_fn)(uintptr_t)j->rx;
	int64_t run = left < RUN_MAX ? left : RUN_MAX;
	struct rv64_jit_ret r;

	r = fn(cpu, page_va, (int64_t)((uint64_t)run << BUDGET_SHIFT), code);
	RV64_STAT_ADD(cpu, tlb_hits, (uint64_t)r.left & ((1u << BUDGET_SHIFT) - 1));
	r.left = (r.left >> BUDGET_SHIFT) + (left - run);
	return r;
}

void rv64_jit_jc_fill(struct rv64_jit *j, const struct rv64_cpu *cpu, uint64_t pc,
		      const void *code, const uint32_t *state, uint32_t state_val)
{
	struct rv64_jc_entry *en = &j->jc->e[jc_index(pc)];
	/*
	 * The count first, then the page: code_invalidate() changes them the other way round, so
	 * either the page is seen invalid or the count moves past the tag afterwards.
	 */
	uint64_t inval = __atomic_load_n(&cpu->vm->code_inval, __ATOMIC_ACQUIRE);

	if (__atomic_load_n(state, __ATOMIC_ACQUIRE) != state_val)
		return;
	en->pc = pc;
	en->tag = (j->jc->gen + 4 * inval) | cpu->priv;
	en->code = code;
	j->jc->pages[rv64_jc_page_bit(pc) / 64] |= 1ull << (rv64_jc_page_bit(pc) % 64);
}

void rv64_jit_link(struct rv64_jit *j, uint64_t cell, const void *code)
{
	uint64_t at = cell - (uint64_t)(uintptr_t)j->rx;

	if (at >= j->base_used && at + 8 <= j->used)
		__atomic_store_n((uint64_t *)(j->rw + at), (uint64_t)(uintptr_t)code,
				 __ATOMIC_RELAXED);
}

/*
 * A slow load or store for the stubs (called with rbx = cpu, rsi = va, edx = size, and for a
 * store rcx = the value): rv64_mmu_load_slow()/rv64_mmu_store_slow() with rdi, rsi and r8-r11
 * preserved, as they may hold guest registers (the callee saves the rest). Returns the
 * status in eax and a load's value in rcx. The stack stays 16-byte aligned at the call: the
 * stub's call and six pushes leave rsp 8 off, the scratch area puts it back.
 */
static void emit_slow_trampoline(struct em *e, bool load)
{
	static const uint8_t saved[] = {RDI, RSI, R8, R9, R10, R11};

	for (unsigned i = 0; i < sizeof(saved); i++) {
		rex(e, false, 0, saved[i]);
		b1(e, 0x50 + (saved[i] & 7)); /* push */
	}
	alu_imm(e, true, 5, RSP, 24);
	op_rr(e, true, 0x89, RBX, RDI); /* rdi = cpu */
	if (load)
		op_rr(e, true, 0x89, RSP, RCX); /* rcx = &scratch */
	call_abs(e, load ? (const void *)rv64_mmu_load_slow : (const void *)rv64_mmu_store_slow);
	if (load)
		op_mem(e, true, 0x8b, RCX, RSP, 0);
	alu_imm(e, true, 0, RSP, 24);
	for (unsigned i = sizeof(saved); i-- > 0;) {
		rex(e, false, 0, saved[i]);
		b1(e, 0x58 + (saved[i] & 7)); /* pop */
	}
	b1(e, 0xc3);
	while (e->pos & 15)
		b1(e, 0xcc);
}

/* The shared entry (at offset 0), the far exit of jump cache misses and the epilogue. */
static void emit_base(struct rv64_jit *j)
{
	struct em e = {.j = j, .pos = 0, .limit = j->size};
	static const uint8_t entry[] = {
		0x53,                   /* push rbx */
		0x55,                   /* push rbp */
		0x41, 0x54,             /* push r12 */
		0x41, 0x55,             /* push r13 */
		0x41, 0x56,             /* push r14 */
		0x41, 0x57,             /* push r15 */
		0x48, 0x83, 0xec, 0x18, /* sub rsp, 24: scratch, and rsp 16-aligned for calls */
		0x48, 0x89, 0xfb,       /* mov rbx, rdi */
		0x49, 0x89, 0xf4,       /* mov r12, rsi */
		0x49, 0x89, 0xd5,       /* mov r13, rdx */
		0xff, 0xe1,             /* jmp rcx */
	};
	static const uint8_t epilogue[] = {
		0x4c, 0x89, 0xe8,       /* mov rax, r13 */
		0x48, 0x83, 0xc4, 0x18, /* add rsp, 24 */
		0x41, 0x5f,             /* pop r15 */
		0x41, 0x5e,             /* pop r14 */
		0x41, 0x5d,             /* pop r13 */
		0x41, 0x5c,             /* pop r12 */
		0x5d,                   /* pop rbp */
		0x5b,                   /* pop rbx */
		0xc3,                   /* ret */
	};

	for (unsigned i = 0; i < sizeof(entry); i++)
		b1(&e, entry[i]);
	while (e.pos & 15)
		b1(&e, 0xcc);
	/* A jump cache miss (jc_exit): a far exit to the pc in rax, into the epilogue. */
	j->jc_miss = e.pos;
	op_mem(&e, true, 0x89, RAX, RBX, OFF_PC);
	op_rr(&e, false, 0x31, RDX, RDX); /* status FAR */
	j->epilogue = j->rx + e.pos;
	for (unsigned i = 0; i < sizeof(epilogue); i++)
		b1(&e, epilogue[i]);
	while (e.pos & 15)
		b1(&e, 0xcc);
	j->slow_load = j->rx + e.pos;
	emit_slow_trampoline(&e, true);
	j->slow_store = j->rx + e.pos;
	emit_slow_trampoline(&e, false);
	j->base_used = e.pos;
	jit_set_used(j, e.pos);
}

/*
 * The code buffer has one of two layouts (jit.h):
 * - one private anonymous mapping, readable, writable and executable, that the host may back
 *   with transparent huge pages (MADV_HUGEPAGE). A Debian boot runs tens of MiB of translated
 *   code; on 4 KiB pages its jumps between blocks miss the host's instruction TLB often (the
 *   default Debian guest boots ~4% faster with 2 MiB pages here). QEMU's TCG lays out its
 *   code buffer the same way by default.
 * - W^X (KUMO_JIT_WX=1, and whenever the host's transparent huge pages are off, where the
 *   first layout would gain nothing): one memory file mapped twice, written through a
 *   read-write view and run from a read-execute view, so no page is ever writable and
 *   executable at once. A memory file cannot have huge pages on a default Debian host
 *   (shmem_enabled is never).
 */
static bool jit_want_wx(void)
{
	const char *wx = getenv("KUMO_JIT_WX");

	return (wx && wx[0] && strcmp(wx, "0")) || mem_thp_mode() != 1;
}

static int jit_map_huge(struct rv64_jit *j)
{
	const uint64_t huge = 2u << 20;
	uint8_t *p = mmap(NULL, JIT_BUF_SIZE + huge, PROT_READ | PROT_WRITE | PROT_EXEC,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uint64_t head;

	if (p == MAP_FAILED)
		return -errno;
	/* 2 MiB-aligned, so that every huge page of the buffer can be one */
	head = (huge - ((uintptr_t)p & (huge - 1))) & (huge - 1);
	if (head)
		munmap(p, head);
	munmap(p + head + JIT_BUF_SIZE, huge - head);
	p += head;
	madvise(p, JIT_BUF_SIZE, MADV_HUGEPAGE); /* a hint: 4 KiB pages work too */
	mem_name(p, JIT_BUF_SIZE, "kumo-jit-code");
	j->rw = p;
	j->rx = p;
	j->wx = false;
	return 0;
}

static int jit_map_wx(struct rv64_jit *j)
{
	void *rw, *rx;
	int fd, ret;

	fd = memfd_create("kumo-jit", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, JIT_BUF_SIZE)) {
		ret = -errno;
		goto out_fd;
	}
	rw = mmap(NULL, JIT_BUF_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (rw == MAP_FAILED) {
		ret = -errno;
		goto out_fd;
	}
	rx = mmap(NULL, JIT_BUF_SIZE, PROT_READ | PROT_EXEC, MAP_SHARED, fd, 0);
	if (rx == MAP_FAILED) {
		ret = -errno;
		munmap(rw, JIT_BUF_SIZE);
		goto out_fd;
	}
	j->rw = rw;
	j->rx = rx;
	j->wx = true;
	ret = 0;
out_fd:
	close(fd);
	return ret;
}

int rv64_jit_new(struct rv64_jit **out)
{
	struct rv64_jit *j = calloc(1, sizeof(*j));
	int ret;

	if (!j)
		return -ENOMEM;
	ret = jit_want_wx() ? jit_map_wx(j) : jit_map_huge(j);
	if (ret)
		goto out_j;
	j->size = JIT_BUF_SIZE;
	j->jc = calloc(1, sizeof(*j->jc));
	if (!j->jc) {
		ret = -ENOMEM;
		goto out_map;
	}
	j->jc->gen = 4;
	j->eager = getenv("KUMO_JIT") && !strcmp(getenv("KUMO_JIT"), "1");
	emit_base(j);
	*out = j;
	return 0;

out_map:
	munmap(j->rw, JIT_BUF_SIZE);
	if (j->wx)
		munmap((void *)(uintptr_t)j->rx, JIT_BUF_SIZE);
out_j:
	free(j);
	return ret;
}

void rv64_jit_free(struct rv64_jit *j)
{
	if (!j)
		return;
	munmap(j->rw, j->size);
	if (j->wx)
		munmap((void *)(uintptr_t)j->rx, j->size);
	free(j->jc);
	free(j->blocks);
	free(j);
}

#endif /* RV64_JIT */
