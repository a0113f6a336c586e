/*
 * fpu_qemu.c - cross-checks kumo's FPU (src/accel/rv64/fpu.c) against qemu-riscv64.
 *
 * One source, two programs:
 *   built for riscv64 (fpu-qemu-rv64, run under qemu-riscv64): reads cases from stdin, executes
 *     each instruction natively (written into an executable buffer) and prints
 *     "f28 x28 fflags" per case;
 *   built for the host (fpu-qemu-host, linked with libkumo):
 *     fpu-qemu-host gen N SEED          prints N random cases
 *     fpu-qemu-host compare CASES OUT   runs every case through rv64_fpu_exec and compares it
 *                                       with qemu's output, one TAP line per instruction name.
 * A case is "insn frm f5 f6 f7 x5" in hex: sources are f5 (rs1), f6 (rs2), f7 (rs3) or x5
 * (integer rs1); the destination is f28 or x28.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fq_case {
	uint32_t insn;
	uint32_t frm;
	uint64_t a, b, c, x;
};

static int fq_read_case(FILE *f, struct fq_case *k)
{
	return fscanf(f, "%" SCNx32 " %" SCNx32 " %" SCNx64 " %" SCNx64 " %" SCNx64 " %" SCNx64,
		      &k->insn, &k->frm, &k->a, &k->b, &k->c, &k->x) == 6;
}

#ifdef __riscv
#include <sys/mman.h>

struct fq_io {
	uint64_t a, b, c, x; /* 0, 8, 16, 24 */
	uint64_t out_f;      /* 32 */
	uint64_t out_x;      /* 40 */
	uint64_t fflags;     /* 48 */
	uint64_t frm;        /* 56 */
};

static void fq_run(uint32_t *code, struct fq_io *io)
{
	__asm__ volatile("ld t4, 56(%0)\n\t"
			 "fsrm t4\n\t"
			 "fsflags zero\n\t"
			 "fld f5, 0(%0)\n\t"
			 "fld f6, 8(%0)\n\t"
			 "fld f7, 16(%0)\n\t"
			 "ld t0, 24(%0)\n\t"
			 "li t3, 0\n\t"
			 "fmv.d.x f28, zero\n\t"
			 "jalr ra, 0(%1)\n\t"
			 "frflags t4\n\t"
			 "sd t4, 48(%0)\n\t"
			 "fsd f28, 32(%0)\n\t"
			 "sd t3, 40(%0)\n\t"
			 :
			 : "r"(io), "r"(code)
			 : "ra", "t0", "t3", "t4", "f5", "f6", "f7", "f28", "memory");
}

int main(void)
{
	uint32_t *code = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct fq_case k;

	if (code == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	while (fq_read_case(stdin, &k)) {
		struct fq_io io = {.a = k.a, .b = k.b, .c = k.c, .x = k.x, .frm = k.frm};

		code[0] = k.insn;
		code[1] = 0x00008067; /* ret */
		__builtin___clear_cache((char *)code, (char *)(code + 2));
		fq_run(code, &io);
		printf("%016" PRIx64 " %016" PRIx64 " %02" PRIx64 "\n", io.out_f, io.out_x,
		       io.fflags);
	}
	return 0;
}

#else /* host */

#include "accel/rv64/cpu.h"
#include "kumo/base.h"

#define FQ_BOX 0xffffffff00000000ull

/* One instruction form. funct3 < 0: a rounding mode; rs2 < 0: register f6. */
struct fq_op {
	const char *name;
	unsigned opc, funct5;
	int funct3, rs2;
	bool rd_x, rs1_x;
	int src_fmt; /* -1: same as fmt */
};

static const struct fq_op fq_ops[] = {
	{"fadd", 0x53, 0x00, -1, -1, false, false, -1},
	{"fsub", 0x53, 0x01, -1, -1, false, false, -1},
	{"fmul", 0x53, 0x02, -1, -1, false, false, -1},
	{"fdiv", 0x53, 0x03, -1, -1, false, false, -1},
	{"fsqrt", 0x53, 0x0b, -1, 0, false, false, -1},
	{"fsgnj", 0x53, 0x04, 0, -1, false, false, -1},
	{"fsgnjn", 0x53, 0x04, 1, -1, false, false, -1},
	{"fsgnjx", 0x53, 0x04, 2, -1, false, false, -1},
	{"fmin", 0x53, 0x05, 0, -1, false, false, -1},
	{"fmax", 0x53, 0x05, 1, -1, false, false, -1},
	{"fle", 0x53, 0x14, 0, -1, true, false, -1},
	{"flt", 0x53, 0x14, 1, -1, true, false, -1},
	{"feq", 0x53, 0x14, 2, -1, true, false, -1},
	{"fcvt.w", 0x53, 0x18, -1, 0, true, false, -1},
	{"fcvt.wu", 0x53, 0x18, -1, 1, true, false, -1},
	{"fcvt.l", 0x53, 0x18, -1, 2, true, false, -1},
	{"fcvt.lu", 0x53, 0x18, -1, 3, true, false, -1},
	{"fcvt.from.w", 0x53, 0x1a, -1, 0, false, true, -1},
	{"fcvt.from.wu", 0x53, 0x1a, -1, 1, false, true, -1},
	{"fcvt.from.l", 0x53, 0x1a, -1, 2, false, true, -1},
	{"fcvt.from.lu", 0x53, 0x1a, -1, 3, false, true, -1},
	{"fmv.to.x", 0x53, 0x1c, 0, 0, true, false, -1},
	{"fclass", 0x53, 0x1c, 1, 0, true, false, -1},
	{"fmv.from.x", 0x53, 0x1e, 0, 0, false, true, -1},
	{"fcvt.other", 0x53, 0x08, -1, -2, false, false, -2}, /* S.D or D.S */
	{"fmadd", 0x43, 0, -1, -1, false, false, -1},
	{"fmsub", 0x47, 0, -1, -1, false, false, -1},
	{"fnmsub", 0x4b, 0, -1, -1, false, false, -1},
	{"fnmadd", 0x4f, 0, -1, -1, false, false, -1},
};

static uint64_t fq_rng_state;

static uint64_t fq_rng(void)
{
	fq_rng_state ^= fq_rng_state << 13;
	fq_rng_state ^= fq_rng_state >> 7;
	fq_rng_state ^= fq_rng_state << 17;
	return fq_rng_state;
}

static uint64_t fq_d(double d)
{
	uint64_t v;

	memcpy(&v, &d, sizeof(v));
	return v;
}

static uint64_t fq_s(float s)
{
	uint32_t v;

	memcpy(&v, &s, sizeof(v));
	return v;
}

/* A random operand of format fmt (0 S, 1 D), raw (unboxed); `near` biases toward a value. */
static uint64_t fq_value(unsigned fmt, uint64_t near)
{
	static const double interesting[] = {
		0.0,   -0.0,  1.0,   -1.0,  0.5,   -0.5,   1.5,   2.5,    -2.5,   3.5,
		0x1p31, -0x1p31, 0x1p31 - 1, 0x1p31 - 0.5, -0x1p31 - 0.5, -0x1p31 - 1, 0x1p32,
		0x1p32 - 1, 0x1p32 - 0.5, 0x1p63, -0x1p63, 0x1p64, 0x1p64 - 2048, 0x1p24 + 1, 1e300,
		1e-300, 0x1p-126, 0x1p-1022, 0x1p-149, 0x1p127,
	};
	uint64_t r = fq_rng(), v;
	unsigned kind = r % 10;

	r >>= 4;
	if (fmt == 1) {
		switch (kind) {
		case 0: /* specials: zeros, infinities, NaNs, extremes, subnormals */
			switch (r % 10) {
			case 0:
				return 0x7ff0000000000000ull | (r >> 8 & 1) << 63;
			case 1:
				return 0x7ff0000000000000ull | (r >> 8 & 0x7ffffffffffff) | 1;
			case 2:
				return 0x7ff8000000000000ull | (r >> 8 & 0xff) | (r >> 20 & 1) << 63;
			case 3:
				return 0x7fefffffffffffffull | (r >> 8 & 1) << 63;
			case 4:
				return (r >> 8 & 0xfffffffffffff) | (r >> 60 & 1) << 63;
			default:
				return fq_d(interesting[r % ARRAY_SIZE(interesting)]);
			}
		case 1:
		case 2: /* close to `near`: cancellation, ties */
			return near ^ (r & 0x3f) ^ (r >> 10 & 1) << 63;
		case 3: /* few significant bits */
			return (r & 0x8000000000000000ull) |
			       (uint64_t)(1000 + (r >> 12) % 80) << 52 | (r & 0xf) << 48;
		case 4: /* tiny */
			return (r & 0x800fffffffffffffull) | (uint64_t)((r >> 40) % 64) << 52;
		case 5: /* huge */
			return (r & 0x800fffffffffffffull) | (uint64_t)(2000 + (r >> 40) % 47) << 52;
		default:
			v = fq_rng();
			return v;
		}
	}
	switch (kind) {
	case 0:
		switch (r % 10) {
		case 0:
			return 0x7f800000 | (r >> 8 & 1) << 31;
		case 1:
			return 0x7f800000 | (r >> 8 & 0x3fffff) | 1;
		case 2:
			return 0x7fc00000 | (r >> 8 & 0xff) | (r >> 20 & 1) << 31;
		case 3:
			return 0x7f7fffff | (r >> 8 & 1) << 31;
		case 4:
			return (r >> 8 & 0x7fffff) | (r >> 60 & 1) << 31;
		default:
			return fq_s((float)interesting[r % ARRAY_SIZE(interesting)]);
		}
	case 1:
	case 2:
		return (near ^ (r & 0xf) ^ (r >> 10 & 1) << 31) & 0xffffffff;
	case 3:
		return (r & 0x80000000) | (uint64_t)(110 + (r >> 12) % 60) << 23 | (r & 0xf) << 19;
	case 4:
		return (r & 0x807fffff) | (uint64_t)((r >> 40) % 30) << 23;
	case 5:
		return (r & 0x807fffff) | (uint64_t)(225 + (r >> 40) % 30) << 23;
	default:
		return fq_rng() & 0xffffffff;
	}
}

static uint64_t fq_reg(unsigned fmt, uint64_t v)
{
	if (fmt == 1)
		return v;
	if (fq_rng() % 64 == 0) /* now and then an improperly boxed single */
		return v | (fq_rng() & FQ_BOX & ~(1ull << 40));
	return v | FQ_BOX;
}

static uint64_t fq_int(void)
{
	uint64_t r = fq_rng();

	switch (r % 6) {
	case 0:
		return (int64_t)(int8_t)(r >> 8);
	case 1: /* around 2^24, 2^31, 2^32, 2^53, 2^63 */
		return ((1ull << (24 + (r >> 8) % 40)) + ((int64_t)(r >> 20) % 8)) *
		       (r >> 50 & 1 ? ~0ull : 1);
	case 2:
		return r >> ((r >> 8) % 64);
	default:
		return fq_rng();
	}
}

static void fq_gen(unsigned n)
{
	static const unsigned rms[] = {0, 1, 2, 3, 4, 7};

	for (unsigned i = 0; i < n; i++) {
		const struct fq_op *op = &fq_ops[fq_rng() % ARRAY_SIZE(fq_ops)];
		unsigned fmt = fq_rng() & 1, frm = fq_rng() % 5, src = fmt;
		unsigned f3 = op->funct3 >= 0 ? (unsigned)op->funct3 : rms[fq_rng() % 6];
		unsigned rs2 = op->rs2 >= 0 ? (unsigned)op->rs2 : 6;
		uint64_t a, b, c, prod;
		uint32_t insn;

		if (op->rs2 == -2) { /* FCVT.S.D (fmt S, rs2 1) or FCVT.D.S (fmt D, rs2 0) */
			rs2 = fmt ? 0 : 1;
			src = !fmt;
		}
		a = fq_value(src, 0);
		b = fq_value(fmt, a);
		if (fmt == 1) { /* c near -(a*b) for fused multiply-add cancellation */
			double x, y;

			memcpy(&x, &a, 8);
			memcpy(&y, &b, 8);
			prod = fq_d(-(x * y));
		} else {
			float x, y;
			uint32_t wa = (uint32_t)a, wb = (uint32_t)b;

			memcpy(&x, &wa, 4);
			memcpy(&y, &wb, 4);
			prod = fq_s(-(x * y));
		}
		c = fq_value(fmt, prod);
		if (op->opc == 0x53)
			insn = op->funct5 << 27 | fmt << 25 | rs2 << 20 | 5u << 15 |
			       f3 << 12 | 28u << 7 | 0x53;
		else
			insn = 7u << 27 | fmt << 25 | 6u << 20 | 5u << 15 | f3 << 12 | 28u << 7 |
			       op->opc;
		printf("%08" PRIx32 " %x %016" PRIx64 " %016" PRIx64 " %016" PRIx64 " %016" PRIx64
		       "\n",
		       insn, frm, fq_reg(src, a), fq_reg(fmt, b), fq_reg(fmt, c), fq_int());
	}
}

static const char *fq_name(uint32_t insn, char *buf, size_t len)
{
	unsigned opc = insn & 0x7f, funct5 = insn >> 27, fmt = (insn >> 25) & 3;
	unsigned f3 = (insn >> 12) & 7, rs2 = (insn >> 20) & 31;

	for (size_t i = 0; i < ARRAY_SIZE(fq_ops); i++) {
		const struct fq_op *op = &fq_ops[i];

		if (op->opc != opc || (opc == 0x53 && op->funct5 != funct5))
			continue;
		if (op->funct3 >= 0 && (unsigned)op->funct3 != f3)
			continue;
		if (op->rs2 >= 0 && (unsigned)op->rs2 != rs2)
			continue;
		snprintf(buf, len, "%s.%s", op->name, fmt ? "d" : "s");
		return buf;
	}
	snprintf(buf, len, "unknown");
	return buf;
}

struct fq_stat {
	char name[32];
	unsigned n, bad;
};

static int fq_stat_cmp(const void *a, const void *b)
{
	return strcmp(((const struct fq_stat *)a)->name, ((const struct fq_stat *)b)->name);
}

static int fq_compare(const char *cases_path, const char *out_path)
{
	FILE *cf = fopen(cases_path, "r"), *of = fopen(out_path, "r");
	struct rv64_cpu *cpu = calloc(1, sizeof(*cpu));
	struct fq_stat stats[2 * ARRAY_SIZE(fq_ops)];
	unsigned nstats = 0, total = 0, failed = 0;
	struct fq_case k;

	if (!cf || !of || !cpu) {
		printf("not ok - fpu vs qemu: cannot open %s or %s\n", cases_path, out_path);
		return 1;
	}
	memset(stats, 0, sizeof(stats));
	while (fq_read_case(cf, &k)) {
		uint64_t qf, qx, qfl, kf, kx, kfl;
		char name[32];
		struct fq_stat *st = NULL;
		int rc;

		if (fscanf(of, "%" SCNx64 " %" SCNx64 " %" SCNx64, &qf, &qx, &qfl) != 3) {
			printf("not ok - fpu vs qemu: qemu output ends after %u cases\n", total);
			return 1;
		}
		memset(cpu->f, 0, sizeof(cpu->f));
		memset(cpu->x, 0, sizeof(cpu->x));
		cpu->f[5] = k.a;
		cpu->f[6] = k.b;
		cpu->f[7] = k.c;
		cpu->x[5] = k.x;
		cpu->frm = k.frm;
		cpu->fflags = 0;
		rc = rv64_fpu_exec(cpu, k.insn);
		kf = cpu->f[28];
		kx = cpu->x[28];
		kfl = cpu->fflags;
		/* again with some flags already accrued: same result, flags OR-ed (fpu.c keeps
		 * host flags sticky between instructions and must not leak them) */
		{
			uint32_t pre = (k.insn ^ (uint32_t)k.a) % 32;

			cpu->f[5] = k.a;
			cpu->f[6] = k.b;
			cpu->f[7] = k.c;
			cpu->x[5] = k.x;
			cpu->f[28] = cpu->x[28] = 0;
			cpu->fflags = pre;
			if (rv64_fpu_exec(cpu, k.insn) != rc || cpu->f[28] != kf || cpu->x[28] != kx ||
			    cpu->fflags != (kfl | pre))
				kfl |= 0x100; /* reported as a mismatch */
		}
		fq_name(k.insn, name, sizeof(name));
		for (unsigned i = 0; i < nstats; i++)
			if (!strcmp(stats[i].name, name))
				st = &stats[i];
		if (!st) {
			st = &stats[nstats++];
			snprintf(st->name, sizeof(st->name), "%s", name);
		}
		st->n++;
		total++;
		if (rc != 0 || kf != qf || kx != qx || kfl != qfl) {
			if (st->bad++ < 3)
				printf("# %s: insn %08" PRIx32 " frm %u a %016" PRIx64 " b %016" PRIx64
				       " c %016" PRIx64 " x %016" PRIx64 ": qemu %016" PRIx64
				       " %016" PRIx64 " %02" PRIx64 ", kumo %s%016" PRIx64
				       " %016" PRIx64 " %02" PRIx64 "\n",
				       name, k.insn, k.frm, k.a, k.b, k.c, k.x, qf, qx, qfl,
				       rc ? "(illegal) " : "", kf, kx, kfl);
		}
	}
	qsort(stats, nstats, sizeof(stats[0]), fq_stat_cmp);
	for (unsigned i = 0; i < nstats; i++) {
		if (stats[i].bad) {
			failed++;
			printf("not ok - fpu vs qemu: %s: %u of %u cases differ\n", stats[i].name,
			       stats[i].bad, stats[i].n);
		} else {
			printf("ok - fpu vs qemu: %s (%u cases)\n", stats[i].name, stats[i].n);
		}
	}
	if (total == 0) {
		printf("not ok - fpu vs qemu: no cases\n");
		return 1;
	}
	free(cpu);
	fclose(cf);
	fclose(of);
	return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "gen")) {
		fq_rng_state = strtoull(argv[3], NULL, 0) * 0x9e3779b97f4a7c15ull | 1;
		fq_gen((unsigned)strtoul(argv[2], NULL, 0));
		return 0;
	}
	if (argc == 4 && !strcmp(argv[1], "compare"))
		return fq_compare(argv[2], argv[3]);
	fprintf(stderr, "usage: %s gen N SEED | compare CASES QEMU_OUTPUT\n", argv[0]);
	return 2;
}
#endif
