#!/usr/bin/env python3
"""Generates a random user-level RV64GC (+Zba/Zbb/Zbs) test program for the differential test.

Usage: gen.py --seed N --kind KIND [--count SEQS] [--length INSNS] -o OUT.S

The program runs COUNT independent sequences. Each one starts from random register values
(x1, x3..x31, f0..f31, fcsr) and a random 512-byte scratch buffer, executes LENGTH random
instructions of the chosen kind, then writes one binary record to stdout (Linux write, syscall 64):

    scratch[512] | seq number (8) | x1..x31 (31*8) | f0..f31 raw bits (32*8) | fcsr (8)

sp is the only register with a fixed meaning: it points 256 bytes into the scratch buffer, so
loads/stores/AMOs address the buffer as sp-256..sp+255 and the record area follows it. sp is
page-aligned, so misaligned accesses just below it cross a page boundary.
Nothing in a sequence traps: every generated instruction is legal for a user-mode hart that
implements RV64GC + Zba/Zbb/Zbs, and atomic addresses are aligned.

Kinds: int (RV64I, M, C), mem (loads/stores, misaligned ones, A), zb (Zba/Zbb/Zbs),
fp (F and D), mix (all of them).
"""
import argparse
import random
import struct

SCRATCH = 512
HALF = SCRATCH // 2
RECORD = SCRATCH + 8 + 31 * 8 + 32 * 8 + 8

XNAMES = ["zero", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "s0", "s1", "a0", "a1", "a2",
          "a3", "a4", "a5", "a6", "a7", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9",
          "s10", "s11", "t3", "t4", "t5", "t6"]
FNAMES = ["ft0", "ft1", "ft2", "ft3", "ft4", "ft5", "ft6", "ft7", "fs0", "fs1", "fa0", "fa1",
          "fa2", "fa3", "fa4", "fa5", "fa6", "fa7", "fs2", "fs3", "fs4", "fs5", "fs6", "fs7",
          "fs8", "fs9", "fs10", "fs11", "ft8", "ft9", "ft10", "ft11"]
RMS = ["rne", "rtz", "rdn", "rup", "rmm", "dyn"]
RM_BITS = {"rne": 0, "rtz": 1, "rdn": 2, "rup": 3, "rmm": 4, "dyn": 7}

M64 = (1 << 64) - 1
INT_SPECIALS = [0, 1, 2, M64, M64 - 1, 1 << 63, (1 << 63) - 1, 0x7fffffff, 0x80000000,
                0xffffffff80000000, 0xffffffff, 0x100000000, 0xff, 0x80, 0x8000, 0xffff,
                0x0123456789abcdef, 0xfedcba9876543210, 31, 32, 63, 64]

D_SPECIALS = [0x0, 0x8000000000000000, 0x7ff0000000000000, 0xfff0000000000000,
              0x7ff8000000000000, 0xfff8000000000000, 0x7ff0000000000001, 0x7ff4000000000000,
              0x7ff8dead0000beef, 0x0000000000000001, 0x800fffffffffffff, 0x0010000000000000,
              0x7fefffffffffffff, 0xffefffffffffffff, 0x3ff0000000000000, 0xbff0000000000000,
              0x3fe0000000000000, 0x3ff8000000000000, 0x4004000000000000, 0xc004000000000000,
              0x41e0000000000000, 0xc1e0000000000000, 0x43e0000000000000, 0xc3e0000000000000,
              0x43f0000000000000, 0x41efffffffe00000, 0x41effffffff00000, 0xbfe0000000000000,
              0x4330000000000001, 0x3ca0000000000000, 0x47efffffe0000000, 0x36a0000000000000,
              0x380fffffffffffff, 0xc1e0000000200000, 0x3fefffffffffffff]
S_SPECIALS = [0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000,
              0x7f800001, 0x7fa00000, 0x7fc0beef, 0x00000001, 0x807fffff, 0x00800000,
              0x7f7fffff, 0xff7fffff, 0x3f800000, 0xbf800000, 0x3f000000, 0x3fc00000,
              0x40200000, 0xc0200000, 0x4f000000, 0xcf000000, 0x5f000000, 0xdf000000,
              0x5f800000, 0x4f800000, 0xbf000000, 0x4b000001, 0x33800000, 0x3f7fffff,
              0x4effffff]
BOX = 0xffffffff00000000
TRACE_BASE = 1000000  # record numbers of the per-item dumps of a traced sequence


class Gen:
    def __init__(self, seed, kind, count, length, zb=True, trace=None):
        self.zb_ok = zb
        self.trace = trace
        self.r = random.Random(seed)
        self.seed = seed
        self.kind = kind
        self.count = count
        self.length = length
        self.nlabel = 0

    # ---- operand helpers
    def xd(self):
        """A destination register: anything but sp (x0 now and then)."""
        if self.r.random() < 0.03:
            return "zero"
        return XNAMES[self.r.choice([i for i in range(1, 32) if i != 2])]

    def xs(self):
        return XNAMES[self.r.randrange(32)]

    def xd_c(self):
        """A register usable in the 3-bit rd'/rs' fields of RVC (x8..x15)."""
        return XNAMES[self.r.randrange(8, 16)]

    def f(self):
        return FNAMES[self.r.randrange(32)]

    def f_c(self):
        return FNAMES[self.r.randrange(8, 16)]

    def imm12(self):
        c = self.r.random()
        if c < 0.2:
            return self.r.choice([0, 1, -1, 2047, -2048, 0x7ff, 0x800 - 1, -2047])
        return self.r.randrange(-2048, 2048)

    def int_value(self):
        c = self.r.random()
        if c < 0.35:
            return self.r.choice(INT_SPECIALS)
        if c < 0.5:
            return self.r.randrange(-300, 300) & M64
        if c < 0.6:
            v = self.r.getrandbits(32)
            return (v | BOX) if v & 0x80000000 else v
        return self.r.getrandbits(64)

    def d_value(self):
        c = self.r.random()
        if c < 0.45:
            v = self.r.choice(D_SPECIALS)
            return v ^ (self.r.random() < 0.3) << 63
        if c < 0.65:  # nice numbers: small integers and halves, exact ties for conversions
            v = self.r.randrange(-1000, 1000) / self.r.choice([1, 2, 4, 8, 3])
            return struct.unpack("<Q", struct.pack("<d", v))[0]
        if c < 0.75:  # subnormals
            return self.r.getrandbits(52) | (self.r.getrandbits(1) << 63)
        if c < 0.85:  # moderate exponents
            e = self.r.randrange(1023 - 70, 1023 + 70)
            return (self.r.getrandbits(1) << 63) | (e << 52) | self.r.getrandbits(52)
        return self.r.getrandbits(64)

    def s_value(self):
        c = self.r.random()
        if c < 0.45:
            v = self.r.choice(S_SPECIALS) ^ ((self.r.random() < 0.3) << 31)
        elif c < 0.65:
            v = self.r.randrange(-1000, 1000) / self.r.choice([1, 2, 4, 8, 3])
            v = struct.unpack("<I", struct.pack("<f", v))[0]
        elif c < 0.75:
            v = self.r.getrandbits(23) | (self.r.getrandbits(1) << 31)
        elif c < 0.85:
            e = self.r.randrange(127 - 40, 127 + 40)
            v = (self.r.getrandbits(1) << 31) | (e << 23) | self.r.getrandbits(23)
        else:
            v = self.r.getrandbits(32)
        if self.r.random() < 0.04:  # not NaN-boxed: must read as the canonical NaN
            return self.r.getrandbits(32) << 32 | v
        return BOX | v

    def f_value(self):
        return self.d_value() if self.r.random() < 0.5 else self.s_value()

    def rm(self):
        return self.r.choice(RMS)

    def label(self):
        self.nlabel += 1
        return ".Ls%d" % self.nlabel

    # ---- instruction classes: each returns a list of assembly lines (one "item")
    def alu(self):
        r = self.r
        c = r.random()
        if c < 0.45:
            op = r.choice(["add", "sub", "sll", "slt", "sltu", "xor", "srl", "sra", "or", "and",
                           "addw", "subw", "sllw", "srlw", "sraw"])
            return ["%s %s, %s, %s" % (op, self.xd(), self.xs(), self.xs())]
        if c < 0.75:
            op = r.choice(["addi", "slti", "sltiu", "xori", "ori", "andi", "addiw"])
            return ["%s %s, %s, %d" % (op, self.xd(), self.xs(), self.imm12())]
        if c < 0.88:
            op = r.choice(["slli", "srli", "srai"])
            if r.random() < 0.5:
                return ["%s %s, %s, %d" % (op, self.xd(), self.xs(), r.randrange(64))]
            return ["%sw %s, %s, %d" % (op, self.xd(), self.xs(), r.randrange(32))]
        if c < 0.94:
            return ["lui %s, 0x%x" % (self.xd(), r.getrandbits(20))]
        return ["auipc %s, 0x%x" % (self.xd(), r.getrandbits(20))]

    def li(self):
        return ["li %s, 0x%x" % (self.xd(), self.int_value())]

    def muldiv(self):
        r = self.r
        op = r.choice(["mul", "mulh", "mulhsu", "mulhu", "div", "divu", "rem", "remu",
                       "mulw", "divw", "divuw", "remw", "remuw"])
        rd, a, b = self.xd(), self.xd(), self.xd()
        out = []
        c = r.random()
        if c < 0.15:  # division by zero
            out.append("li %s, 0" % b)
        elif c < 0.3:  # signed overflow: MIN / -1
            out.append("li %s, %s" % (a, r.choice(["0x8000000000000000", "-0x80000000"])))
            out.append("li %s, -1" % b)
        elif c < 0.4:
            out.append("li %s, 0x%x" % (b, r.choice(INT_SPECIALS)))
        if a == b and len(out) > 1:
            out = out[:1]
        out.append("%s %s, %s, %s" % (op, rd, a, b))
        return out

    def base_reg(self, off_lo, off_hi, align, compressed=False):
        """addi BASE, sp, K so that BASE+[off_lo, off_hi] stays inside the scratch buffer."""
        base = self.xd_c() if compressed else self.xd()
        while base == "zero":
            base = self.xd()
        lo = -HALF - off_lo
        hi = HALF - off_hi
        k = self.r.randrange(lo, hi)
        if align:
            k -= (k + HALF) % align
            if k < lo:
                k += align
        return base, k

    def loadstore(self):
        r = self.r
        sizes = {"lb": 1, "lh": 2, "lw": 4, "ld": 8, "lbu": 1, "lhu": 2, "lwu": 4,
                 "sb": 1, "sh": 2, "sw": 4, "sd": 8, "flw": 4, "fld": 8, "fsw": 4, "fsd": 8}
        op = r.choice(list(sizes))
        size = sizes[op]
        aligned = r.random() < 0.7
        if r.random() < 0.6:  # sp-relative
            off = r.randrange(-HALF, HALF - size + 1)
            if aligned:
                off -= (off + HALF) % size
            elif size > 1 and r.random() < 0.3:  # straddle the page boundary at sp
                off = -r.randrange(1, size)
            base, pre = "sp", []
        else:
            off = r.randrange(-64, 64)
            base, k = self.base_reg(off, off + size, 0)
            if aligned:
                k -= (k + off + HALF) % size
                if k + off < -HALF:
                    k += size
            pre = ["addi %s, sp, %d" % (base, k)]
        if op[0] == "f":
            reg = self.f()
        elif op[0] == "s":
            reg = self.xs()
        else:
            reg = self.xd()
            if reg == base and r.random() < 0.5:
                reg = self.xd()
        return pre + ["%s %s, %d(%s)" % (op, reg, off, base)]

    def amo(self):
        r = self.r
        width = r.choice(["w", "d"])
        size = 4 if width == "w" else 8
        base, k = self.base_reg(0, size, size)
        order = r.choice(["", "", ".aq", ".rl", ".aqrl"])
        pre = ["addi %s, sp, %d" % (base, k)]
        if r.random() < 0.3:
            lr_rd = self.xd()
            while lr_rd == base:
                lr_rd = self.xd()
            body = ["lr.%s%s %s, (%s)" % (width, order, lr_rd, base)]
            for _ in range(r.randrange(3)):
                rd = self.xd()
                if rd != base:
                    body.append("addi %s, %s, %d" % (rd, self.xs(), self.imm12()))
            sc_rd = self.xd()
            body.append("sc.%s%s %s, %s, (%s)" % (width, r.choice(["", ".rl", ".aqrl"]),
                                                  sc_rd, self.xs(), base))
            if r.random() < 0.3 and sc_rd != base:  # the reservation is gone: must fail
                body.append("sc.%s %s, %s, (%s)" % (width, self.xd(), self.xs(), base))
            return pre + body
        op = r.choice(["amoswap", "amoadd", "amoxor", "amoand", "amoor", "amomin", "amomax",
                       "amominu", "amomaxu"])
        return pre + ["%s.%s%s %s, %s, (%s)" % (op, width, order, self.xd(), self.xs(), base)]

    def zb(self):
        r = self.r
        rr = ["add.uw", "sh1add", "sh2add", "sh3add", "sh1add.uw", "sh2add.uw", "sh3add.uw",
              "andn", "orn", "xnor", "max", "maxu", "min", "minu", "rol", "rolw", "ror", "rorw",
              "bclr", "bext", "binv", "bset"]
        un = ["clz", "clzw", "ctz", "ctzw", "cpop", "cpopw", "sext.b", "sext.h", "zext.h",
              "orc.b", "rev8"]
        im = [("slli.uw", 64), ("rori", 64), ("roriw", 32), ("bclri", 64), ("bexti", 64),
              ("binvi", 64), ("bseti", 64)]
        c = r.random()
        if c < 0.5:
            return ["%s %s, %s, %s" % (r.choice(rr), self.xd(), self.xs(), self.xs())]
        if c < 0.8:
            op = r.choice(un)
            if op == "ctzw":
                return self.ctzw()
            return ["%s %s, %s" % (op, self.xd(), self.xs())]
        op, lim = r.choice(im)
        return ["%s %s, %s, %d" % (op, self.xd(), self.xs(), r.randrange(lim))]

    def ctzw(self):
        """ctzw on an operand qemu-riscv64 7.2 gets right: it returns ctz of all 64 bits when the
        low word is zero (0x8000000000000000 gives 63; Zbb 1.0 says 32), so such a word appears
        only with bit 32 set, where both answers are 32."""
        rs = self.xd()
        while rs == "zero":
            rs = self.xd()
        v = self.int_value()
        if v & 0xffffffff == 0 and v != 0:
            v |= 1 << 32
        return ["li %s, 0x%x" % (rs, v), "ctzw %s, %s" % (self.xd(), rs)]

    def rvc(self):
        r = self.r
        c = r.random()
        if c < 0.12:
            rd = self.xd()
            while rd == "zero":
                rd = self.xd()
            op = r.choice(["c.addi", "c.li", "c.addiw"])
            imm = r.randrange(-32, 32)
            if op == "c.addi" and imm == 0:
                imm = 1
            return ["%s %s, %d" % (op, rd, imm)]
        if c < 0.2:
            rd = self.xd()
            while rd in ("zero", "sp"):
                rd = self.xd()
            v = r.randrange(1, 64)
            return ["c.lui %s, 0x%x" % (rd, v if v < 32 else 0xfffc0 + v)]
        if c < 0.3:
            rd = self.xd()
            while rd == "zero":
                rd = self.xd()
            return ["c.slli %s, %d" % (rd, r.randrange(1, 64))]
        if c < 0.38:
            op = r.choice(["c.srli", "c.srai"])
            return ["%s %s, %d" % (op, self.xd_c(), r.randrange(1, 64))]
        if c < 0.44:
            return ["c.andi %s, %d" % (self.xd_c(), r.randrange(-32, 32))]
        if c < 0.56:
            rd = self.xd()
            while rd == "zero":
                rd = self.xd()
            rs = self.xs()
            while rs == "zero":
                rs = self.xs()
            return ["%s %s, %s" % (r.choice(["c.mv", "c.add"]), rd, rs)]
        if c < 0.68:
            op = r.choice(["c.sub", "c.xor", "c.or", "c.and", "c.subw", "c.addw"])
            return ["%s %s, %s" % (op, self.xd_c(), self.xd_c())]
        if c < 0.8:  # loads/stores with a compressed base register
            op, size = r.choice([("c.lw", 4), ("c.ld", 8), ("c.sw", 4), ("c.sd", 8),
                                 ("c.fld", 8), ("c.fsd", 8)])
            off = r.randrange(0, (124 if size == 4 else 248) // size + 1) * size
            base, k = self.base_reg(off, off + size, 0, compressed=True)
            reg = self.f_c() if "f" in op else self.xd_c()
            return ["addi %s, sp, %d" % (base, k), "%s %s, %d(%s)" % (op, reg, off, base)]
        if c < 0.88:
            op, size = r.choice([("c.lwsp", 4), ("c.ldsp", 8), ("c.swsp", 4), ("c.sdsp", 8),
                                 ("c.fldsp", 8), ("c.fsdsp", 8)])
            off = r.randrange(0, (HALF - 8) // size) * size
            if "f" in op:
                reg = self.f()
            elif op in ("c.lwsp", "c.ldsp"):
                reg = self.xd()
                while reg == "zero":
                    reg = self.xd()
            else:
                reg = self.xs()
            return ["%s %s, %d(sp)" % (op, reg, off)]
        if c < 0.92:
            return ["c.addi4spn %s, sp, %d" % (self.xd_c(), 4 * r.randrange(1, 256))]
        return [self.raw_rvc()]

    def raw_rvc(self):
        """An RVC instruction emitted as .2byte from its encoding (unpriv 20191213 §16.8)."""
        r = self.r
        kind = r.choice(["addi", "li", "slli", "mv", "add", "alu", "aluw"])
        if kind in ("addi", "li", "slli"):
            rd = r.choice([i for i in range(1, 32) if i != 2])
            if kind == "slli":
                imm = r.randrange(1, 64)
                f3, op = 0, 2
            else:
                imm = r.randrange(-32, 32) or 5
                f3, op = (0 if kind == "addi" else 2), 1
            imm &= 0x3f
            h = (f3 << 13) | ((imm >> 5) << 12) | (rd << 7) | ((imm & 31) << 2) | op
        elif kind in ("mv", "add"):
            rd = r.choice([i for i in range(1, 32) if i != 2])
            rs2 = r.randrange(1, 32)
            h = (4 << 13) | ((kind == "add") << 12) | (rd << 7) | (rs2 << 2) | 2
        else:
            rd, rs2 = r.randrange(8), r.randrange(8)
            f2 = r.randrange(4) if kind == "alu" else r.randrange(2)
            h = (4 << 13) | ((kind == "aluw") << 12) | (3 << 10) | (rd << 7) | (f2 << 5) | \
                (rs2 << 2) | 1
        return ".2byte 0x%04x" % h

    def branch(self, target):
        r = self.r
        c = r.random()
        if c < 0.6:
            op = r.choice(["beq", "bne", "blt", "bge", "bltu", "bgeu"])
            a = self.xs()
            b = a if r.random() < 0.1 else self.xs()
            return ["%s %s, %s, %s" % (op, a, b, target)]
        if c < 0.75:
            return ["%s %s, %s" % (r.choice(["c.beqz", "c.bnez"]), self.xd_c(), target)]
        if c < 0.85:
            return ["jal %s, %s" % (self.xd(), target)]
        if c < 0.9:
            return ["c.j %s" % target]
        tmp = self.xd()
        while tmp == "zero":
            tmp = self.xd()
        return ["lla %s, %s" % (tmp, target), "jalr %s, 0(%s)" % (self.xd(), tmp)]

    def fp(self):
        r = self.r
        p = r.choice(["s", "d"])
        c = r.random()
        if c < 0.3:
            op = r.choice(["fadd", "fsub", "fmul", "fdiv"])
            return ["%s.%s %s, %s, %s, %s" % (op, p, self.f(), self.f(), self.f(), self.rm())]
        if c < 0.36:
            return ["fsqrt.%s %s, %s, %s" % (p, self.f(), self.f(), self.rm())]
        if c < 0.46:
            op = r.choice(["fmadd", "fmsub", "fnmsub", "fnmadd"])
            return ["%s.%s %s, %s, %s, %s, %s" % (op, p, self.f(), self.f(), self.f(), self.f(),
                                                  self.rm())]
        if c < 0.54:
            op = r.choice(["fmin", "fmax", "fsgnj", "fsgnjn", "fsgnjx"])
            return ["%s.%s %s, %s, %s" % (op, p, self.f(), self.f(), self.f())]
        if c < 0.6:
            op = r.choice(["feq", "flt", "fle"])
            return ["%s.%s %s, %s, %s" % (op, p, self.xd(), self.f(), self.f())]
        if c < 0.63:
            return ["fclass.%s %s, %s" % (p, self.xd(), self.f())]
        if c < 0.73:  # float -> integer
            it = r.choice(["w", "wu", "l", "lu"])
            return ["fcvt.%s.%s %s, %s, %s" % (it, p, self.xd(), self.f(), self.rm())]
        if c < 0.81:  # integer -> float
            it = r.choice(["w", "wu", "l", "lu"])
            if p == "s" or it in ("l", "lu"):
                return ["fcvt.%s.%s %s, %s, %s" % (p, it, self.f(), self.xs(), self.rm())]
            # fcvt.d.w[u] is exact; binutils takes no rm, so encode one (funct7 0x69)
            rm = self.rm()
            rs2 = "x0" if it == "w" else "x1"
            return [".insn r 0x53, %d, 0x69, %s, %s, %s" % (RM_BITS[rm], self.f(), self.xs(),
                                                           rs2)]
        if c < 0.86:
            if r.random() < 0.5:
                return ["fcvt.s.d %s, %s, %s" % (self.f(), self.f(), self.rm())]
            return [".insn r 0x53, %d, 0x21, %s, %s, x0" % (RM_BITS[self.rm()], self.f(),
                                                           self.f())]
        if c < 0.9:
            op = r.choice(["fmv.x.w", "fmv.x.d"])
            return ["%s %s, %s" % (op, self.xd(), self.f())]
        if c < 0.95:  # a fresh special operand
            t = self.xd()
            while t == "zero":
                t = self.xd()
            if r.random() < 0.5:
                return ["li %s, 0x%x" % (t, self.d_value()), "fmv.d.x %s, %s" % (self.f(), t)]
            return ["li %s, 0x%x" % (t, self.s_value() & 0xffffffff),
                    "fmv.w.x %s, %s" % (self.f(), t)]
        return self.fcsr()

    def fcsr(self):
        r = self.r
        c = r.random()
        if c < 0.3:
            return ["fsrmi %s, %d" % (self.xd(), r.randrange(5))]
        if c < 0.45:
            t = self.xd()
            while t == "zero":
                t = self.xd()
            return ["li %s, %d" % (t, r.randrange(5)), "fsrm %s, %s" % (self.xd(), t)]
        if c < 0.6:
            return ["fsflagsi %s, %d" % (self.xd(), r.randrange(32))]
        if c < 0.7:
            return ["fsflags %s, %s" % (self.xd(), self.xs())]
        return ["%s %s" % (r.choice(["frcsr", "frflags", "frrm"]), self.xd())]

    def traced(self, n, branch):
        """In a traced sequence the dumps between items push compressed branches out of range:
        use the 32-bit forms, which behave the same."""
        if n != self.trace:
            return branch
        out = []
        for line in branch:
            for c, full in (("c.beqz ", "beq zero, "), ("c.bnez ", "bne zero, "),
                            ("c.j ", "jal zero, ")):
                if line.startswith(c):
                    reg, _, target = line[len(c):].partition(", ")
                    line = (full + target) if c == "c.j " else \
                        "%s %s, zero, %s" % (full.split()[0], reg, target)
            out.append(line)
        return out

    # ---- sequences
    def classes(self):
        k = self.kind
        if k == "int":
            return [(self.alu, 40), (self.li, 5), (self.muldiv, 20), (self.rvc, 25)]
        if k == "mem":
            return [(self.loadstore, 45), (self.amo, 30), (self.alu, 10), (self.rvc, 15)]
        if k == "zb":
            return [(self.zb, 60), (self.alu, 20), (self.li, 10), (self.rvc, 10)]
        if k == "fp":
            return [(self.fp, 80), (self.loadstore, 8), (self.li, 4), (self.fcsr, 8)]
        mix = [(self.alu, 20), (self.li, 3), (self.muldiv, 8), (self.loadstore, 12),
               (self.amo, 8), (self.zb, 10), (self.rvc, 12), (self.fp, 25), (self.fcsr, 2)]
        return [c for c in mix if self.zb_ok or c[0] != self.zb]

    def sequence(self, n):
        cls = self.classes()
        funcs = [c for c, _ in cls]
        weights = [w for _, w in cls]
        items = [self.r.choices(funcs, weights)[0]() for _ in range(self.length)]
        # forward branches: a branch before item i to a label before item j > i
        labels = {}
        branches = {}
        for _ in range(self.length // 8):
            i = self.r.randrange(self.length)
            j = min(self.length, i + self.r.randrange(1, 7))
            if i in branches:
                continue
            lab = labels.setdefault(j, self.label())
            branches[i] = self.branch(lab)
        lines = []
        for i, item in enumerate(items):
            if i in labels:
                lines.append(labels[i] + ":")
            if i in branches:
                lines += self.traced(n, branches[i])
            if n == self.trace:
                lines.append("DUMP %d" % (TRACE_BASE + i))
            lines += item
        if self.length in labels:
            lines.append(labels[self.length] + ":")
        return lines

    def program(self):
        out = []
        w = out.append
        w("/* generated by tests/diff/gen.py --seed %d --kind %s --count %d --length %d */"
          % (self.seed, self.kind, self.count, self.length))
        w(".option norelax")
        w(".macro INIT tbl")
        w("\tlla t6, \\tbl")
        w("\taddi t5, sp, -%d" % HALF)
        w("\tli t4, %d" % (SCRATCH // 8))
        w("1:\tld t3, 0(t6)\n\tsd t3, 0(t5)\n\taddi t6, t6, 8\n\taddi t5, t5, 8")
        w("\taddi t4, t4, -1\n\tbnez t4, 1b")
        for i in range(32):
            w("\tfld f%d, %d(t6)" % (i, 8 * i))
        w("\tld t5, 256(t6)\n\tfscsr t5")
        for i in range(1, 32):
            if i != 2 and i != 31:
                w("\tld x%d, %d(t6)" % (i, 256 + 8 * i))
        w("\tld x31, %d(t6)" % (256 + 8 * 31))
        w(".endm")
        w(".macro DUMP n")
        for i in range(1, 32):
            w("\tsd x%d, %d(sp)" % (i, HALF + 8 + 8 * (i - 1)))
        for i in range(32):
            w("\tfsd f%d, %d(sp)" % (i, HALF + 8 + 31 * 8 + 8 * i))
        w("\tfrcsr t0\n\tsd t0, %d(sp)" % (HALF + 8 + 63 * 8))
        w("\tli t0, \\n\n\tsd t0, %d(sp)" % HALF)
        w("\tli a0, 1\n\taddi a1, sp, -%d\n\tli a2, %d\n\tli a7, 64\n\tecall" % (HALF, RECORD))
        for i in (5, 10, 11, 12, 17):  # put back what the dump used: DUMP is transparent
            w("\tld x%d, %d(sp)" % (i, HALF + 8 + 8 * (i - 1)))
        w(".endm")
        w(".text\n.globl _start\n_start:")
        w("\tlla sp, scratch + %d" % HALF)
        for n in range(self.count):
            w("\tINIT init_%d" % n)
            w(".globl seq_%d_start\nseq_%d_start:" % (n, n))
            for line in self.sequence(n):
                w(line if line.endswith(":") else "\t" + line)
            w(".globl seq_%d_end\nseq_%d_end:" % (n, n))
            w("\tDUMP %d" % n)
        w("\tli a0, 0\n\tli a7, 93\n\tecall")
        # sp (scratch + 256) sits on a page boundary: misaligned accesses around it cross pages
        w(".data\n.balign 4096\n.space %d\nscratch:\t.space %d" % (4096 - HALF, RECORD + 64))
        w(".section .rodata\n.balign 8")
        for n in range(self.count):
            w("init_%d:" % n)
            data = [self.r.getrandbits(64) for _ in range(SCRATCH // 8)]
            for i in range(0, len(data), 4):
                w("\t.dword " + ", ".join("0x%x" % v for v in data[i:i + 4]))
            w("\t.dword " + ", ".join("0x%x" % self.f_value() for _ in range(32)))
            fcsr = self.r.randrange(5) << 5 | self.r.randrange(32)
            w("\t.dword 0x%x" % fcsr)
            w("\t.dword " + ", ".join("0x%x" % self.int_value() for _ in range(31)))
        return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--kind", choices=["int", "mem", "zb", "fp", "mix"], default="mix")
    ap.add_argument("--count", type=int, default=64)
    ap.add_argument("--length", type=int, default=48)
    ap.add_argument("--no-zb", action="store_true", help="leave Zba/Zbb/Zbs out of mix")
    ap.add_argument("--trace", type=int, metavar="SEQ",
                    help="also dump the state before every item of sequence SEQ")
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args()
    text = Gen(a.seed, a.kind, a.count, a.length, not a.no_zb, a.trace).program()
    with open(a.output, "w") as fh:
        fh.write(text)


if __name__ == "__main__":
    main()
