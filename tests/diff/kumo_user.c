/*
 * kumo_user.c - runs a static riscv64 Linux ELF in U-mode on kumo's software CPU (the
 * differential test's counterpart of qemu-riscv64).
 *
 * Usage: kumo-user [--timeout SECONDS] ELF      run ELF, exit with its exit status
 *        kumo-user --isa                        print the ISA string the rv64 backend advertises
 *
 * The ELF's PT_LOAD segments are copied into one RAM region that starts at the lowest segment
 * and continues with a 1 MiB stack and one page holding the M-mode trap vector. The hart starts
 * in U-mode at the entry point with satp = Bare, PMP entry 0 granting RWX on everything and
 * mstatus.FS = Initial. ECALLs from U-mode leave vcpu_run() as ACCEL_EXIT_SBI
 * (ecall_exit_mask bit 0) and are served as Linux syscalls: write (64) to fd 1 and 2,
 * exit (93) and exit_group (94); every other number returns -ENOSYS. Any other trap lands on a
 * WFI at the trap vector, so vcpu_run() returns ACCEL_EXIT_HALT and the runner reports
 * mcause/mepc/mtval.
 *
 * Exit status: the program's own status; 1 for bad input or a runner failure (one line on
 * stderr); 3 when the program trapped, timed out or the CPU stopped with an internal error.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kumo/accel.h"
#include "kumo/base.h"
#include "kumo/memmap.h"

#define KU_PAGE 4096ULL
#define KU_STACK_SIZE (1ULL << 20)

/* CSR numbers, priv 1.12 §2.2 table 2.5. */
#define CSR_SATP 0x180
#define CSR_MSTATUS 0x300
#define CSR_MIE 0x304
#define CSR_MTVEC 0x305
#define CSR_MCOUNTEREN 0x306
#define CSR_MEPC 0x341
#define CSR_MCAUSE 0x342
#define CSR_MTVAL 0x343
#define CSR_PMPCFG0 0x3a0
#define CSR_PMPADDR0 0x3b0

#define MSTATUS_FS_INITIAL (1ULL << 13) /* priv 1.12 §3.1.6.6 */
#define MSTATUS_FS_MASK (3ULL << 13)
#define MSTATUS_MPP_MASK (3ULL << 11)

/* Linux riscv64 syscall numbers (asm-generic/unistd.h). */
#define SYS_WRITE 64
#define SYS_EXIT 93
#define SYS_EXIT_GROUP 94

struct ku_image {
	uint64_t base;  /* guest-physical base of RAM */
	uint64_t size;  /* bytes of RAM */
	uint64_t entry; /* ELF entry point */
	uint64_t sp;    /* initial stack pointer */
	uint64_t trap;  /* M-mode trap vector (a WFI loop) */
	uint8_t *ram;   /* host mapping of RAM */
};

struct ku_watchdog {
	const struct accel_ops *ops;
	struct accel_vcpu *vcpu;
	unsigned seconds;
	atomic_bool fired;
};

static const char *prog_name = "kumo-user";

static int read_file(const char *path, uint8_t **out, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		err_set("cannot open %s: %s", path, strerror(e));
		return -e;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		err_set("%s is not a regular file", path);
		close(fd);
		return -EINVAL;
	}
	uint8_t *buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		close(fd);
		err_set("out of memory reading %s", path);
		return -ENOMEM;
	}
	size_t done = 0;
	while (done < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);
		if (n <= 0) {
			err_set("cannot read %s: %s", path, n < 0 ? strerror(errno) : "short file");
			free(buf);
			close(fd);
			return -EIO;
		}
		done += (size_t)n;
	}
	close(fd);
	*out = buf;
	*len = done;
	return 0;
}

/* Checks the ELF header and program headers and lays out RAM; gabi 4.1 chapters 4 and 5. */
static int image_layout(const char *path, const uint8_t *f, size_t len, struct ku_image *img)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)f;
	if (len < sizeof(*eh) || memcmp(eh->e_ident, ELFMAG, SELFMAG)) {
		err_set("%s is not an ELF file", path);
		return -ENOEXEC;
	}
	if (eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_ident[EI_DATA] != ELFDATA2LSB ||
	    eh->e_machine != EM_RISCV) {
		err_set("%s is not a 64-bit little-endian RISC-V ELF", path);
		return -ENOEXEC;
	}
	if (eh->e_type != ET_EXEC) {
		err_set("%s is not a static executable (ET_EXEC)", path);
		return -ENOEXEC;
	}
	if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phoff > len ||
	    (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > len - eh->e_phoff) {
		err_set("%s has a malformed program header table", path);
		return -ENOEXEC;
	}
	const Elf64_Phdr *ph = (const Elf64_Phdr *)(f + eh->e_phoff);
	uint64_t lo = UINT64_MAX, hi = 0;
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type != PT_LOAD || !ph[i].p_memsz)
			continue;
		if (ph[i].p_filesz > ph[i].p_memsz || ph[i].p_offset > len ||
		    ph[i].p_filesz > len - ph[i].p_offset ||
		    ph[i].p_vaddr + ph[i].p_memsz < ph[i].p_vaddr ||
		    ph[i].p_vaddr + ph[i].p_memsz > (1ULL << 38)) {
			err_set("%s has a malformed PT_LOAD segment %u", path, i);
			return -ENOEXEC;
		}
		if (ph[i].p_vaddr < lo)
			lo = ph[i].p_vaddr;
		if (ph[i].p_vaddr + ph[i].p_memsz > hi)
			hi = ph[i].p_vaddr + ph[i].p_memsz;
	}
	if (lo == UINT64_MAX) {
		err_set("%s has no PT_LOAD segment", path);
		return -ENOEXEC;
	}
	lo = ALIGN_DOWN(lo, KU_PAGE);
	hi = ALIGN_UP(hi, KU_PAGE);
	if (eh->e_entry < lo || eh->e_entry >= hi) {
		err_set("%s has its entry point outside its segments", path);
		return -ENOEXEC;
	}
	img->base = lo;
	img->entry = eh->e_entry;
	img->sp = hi + KU_STACK_SIZE - 256;
	img->trap = hi + KU_STACK_SIZE;
	img->size = hi - lo + KU_STACK_SIZE + KU_PAGE;
	return 0;
}

static void image_load(const uint8_t *f, struct ku_image *img)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)f;
	const Elf64_Phdr *ph = (const Elf64_Phdr *)(f + eh->e_phoff);
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type != PT_LOAD || !ph[i].p_memsz)
			continue;
		memcpy(img->ram + (ph[i].p_vaddr - img->base), f + ph[i].p_offset, ph[i].p_filesz);
	}
	/* Trap vector: wfi; j .-4 (unpriv 20191213 §2.5, priv 1.12 §3.3.3). */
	static const uint32_t vec[2] = { 0x10500073, 0xffdff06f };
	memcpy(img->ram + (img->trap - img->base), vec, sizeof(vec));
	/* Initial stack as Linux builds it: argc = 1, argv = { name, NULL }, envp = { NULL },
	 * auxv = { AT_NULL }. */
	uint64_t name = img->sp + 64;
	uint64_t words[6] = { 1, name, 0, 0, AT_NULL, 0 };
	memcpy(img->ram + (img->sp - img->base), words, sizeof(words));
	memcpy(img->ram + (name - img->base), "prog", 5);
}

static void *watchdog_main(void *arg)
{
	struct ku_watchdog *wd = arg;
	struct timespec ts = { .tv_sec = wd->seconds };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	atomic_store(&wd->fired, true);
	wd->ops->vcpu_kick(wd->vcpu);
	return NULL;
}

static int vcpu_setup(const struct accel_ops *ops, struct accel_vcpu *vcpu,
		      const struct ku_image *img)
{
	uint64_t mstatus;
	int rc = ops->get_reg(vcpu, ACCEL_REG_CSR(CSR_MSTATUS), &mstatus);
	if (rc)
		return rc;
	mstatus = (mstatus & ~(MSTATUS_FS_MASK | MSTATUS_MPP_MASK)) | MSTATUS_FS_INITIAL;
	/* priv 1.12 §3.7.1: NAPOT with all-ones pmpaddr matches the whole address space. */
	const struct {
		uint32_t id;
		uint64_t val;
	} regs[] = {
		{ ACCEL_REG_CSR(CSR_PMPADDR0), ~0ULL },
		{ ACCEL_REG_CSR(CSR_PMPCFG0), 0x1f },
		{ ACCEL_REG_CSR(CSR_SATP), 0 },
		{ ACCEL_REG_CSR(CSR_MIE), 0 },
		{ ACCEL_REG_CSR(CSR_MTVEC), img->trap },
		{ ACCEL_REG_CSR(CSR_MCOUNTEREN), 7 },
		{ ACCEL_REG_CSR(CSR_MSTATUS), mstatus },
		{ ACCEL_REG_X(2), img->sp },
		{ ACCEL_REG_PC, img->entry },
		{ ACCEL_REG_PRIV, 0 },
	};
	for (unsigned i = 0; i < ARRAY_SIZE(regs); i++) {
		rc = ops->set_reg(vcpu, regs[i].id, regs[i].val);
		if (rc) {
			err_set("cannot set register 0x%x: %s", regs[i].id, strerror(-rc));
			return rc;
		}
	}
	uint64_t check;
	if (!ops->get_reg(vcpu, ACCEL_REG_CSR(CSR_MTVEC), &check) && check != img->trap) {
		err_set("mtvec did not take 0x%llx", (unsigned long long)img->trap);
		return -EINVAL;
	}
	return 0;
}

static int64_t sys_write(const struct memmap *mm, uint64_t fd, uint64_t buf, uint64_t len)
{
	if (fd != 1 && fd != 2)
		return -EBADF;
	if (!len)
		return 0;
	const uint8_t *p = memmap_ram_ptr(mm, buf, len);
	if (!p)
		return -EFAULT;
	uint64_t done = 0;
	while (done < len) {
		ssize_t n = write((int)fd, p + done, len - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return done ? (int64_t)done : -errno;
		}
		done += (uint64_t)n;
	}
	return (int64_t)done;
}

static void report_trap(const struct accel_ops *ops, struct accel_vcpu *vcpu)
{
	uint64_t cause = 0, epc = 0, tval = 0, priv = 0;
	ops->get_reg(vcpu, ACCEL_REG_CSR(CSR_MCAUSE), &cause);
	ops->get_reg(vcpu, ACCEL_REG_CSR(CSR_MEPC), &epc);
	ops->get_reg(vcpu, ACCEL_REG_CSR(CSR_MTVAL), &tval);
	ops->get_reg(vcpu, ACCEL_REG_PRIV, &priv);
	fprintf(stderr, "%s: trap mcause=%llu mepc=0x%llx mtval=0x%llx (now in priv %llu)\n",
		prog_name, (unsigned long long)cause, (unsigned long long)epc,
		(unsigned long long)tval, (unsigned long long)priv);
}

/* Runs the hart until the program exits; returns the process exit status. */
static int run_loop(const struct accel_ops *ops, struct accel_vcpu *vcpu, struct memmap *mm,
		    struct ku_watchdog *wd)
{
	struct accel_run *run = ops->vcpu_run_state(vcpu);
	for (;;) {
		int rc = ops->vcpu_run(vcpu);
		if (rc) {
			fprintf(stderr, "%s: vcpu_run failed: %s\n", prog_name, strerror(-rc));
			return 3;
		}
		switch (run->exit_reason) {
		case ACCEL_EXIT_SBI: {
			uint64_t nr = run->sbi.ext;
			uint64_t *a = run->sbi.args;
			run->sbi.ret[1] = (int64_t)a[1]; /* a Linux syscall only writes a0 */
			if (nr == SYS_EXIT || nr == SYS_EXIT_GROUP)
				return (int)(a[0] & 0xff);
			if (nr == SYS_WRITE)
				run->sbi.ret[0] = sys_write(mm, a[0], a[1], a[2]);
			else
				run->sbi.ret[0] = -ENOSYS;
			break;
		}
		case ACCEL_EXIT_HALT:
			report_trap(ops, vcpu);
			return 3;
		case ACCEL_EXIT_INTR:
			if (atomic_load(&wd->fired)) {
				uint64_t pc = 0;
				ops->get_reg(vcpu, ACCEL_REG_PC, &pc);
				fprintf(stderr, "%s: timed out after %u s at pc 0x%llx\n", prog_name,
					wd->seconds, (unsigned long long)pc);
				return 3;
			}
			break;
		case ACCEL_EXIT_MMIO:
			fprintf(stderr, "%s: %s of %u bytes at unmapped 0x%llx\n", prog_name,
				run->mmio.is_write ? "store" : "load", run->mmio.len,
				(unsigned long long)run->mmio.gpa);
			return 3;
		case ACCEL_EXIT_INTERNAL_ERROR:
			fprintf(stderr, "%s: internal error: %.*s\n", prog_name,
				(int)sizeof(run->internal.msg), run->internal.msg);
			return 3;
		default:
			fprintf(stderr, "%s: unexpected exit %s\n", prog_name,
				accel_exit_name(run->exit_reason));
			return 3;
		}
	}
}

static void usage(FILE *to)
{
	fprintf(to, "usage: %s [--timeout SECONDS] ELF\n       %s --isa\n", prog_name, prog_name);
}

int main(int argc, char **argv)
{
	unsigned timeout = 60;
	const char *path = NULL;
	int status = 1;

	const struct accel_ops *ops = accel_find("rv64");
	if (!ops) {
		fprintf(stderr, "%s: the rv64 accelerator is not built in\n", prog_name);
		return 1;
	}
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--isa")) {
			printf("%s\n", ops->isa ? ops->isa : "");
			return 0;
		} else if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
			char *end;
			unsigned long v = strtoul(argv[++i], &end, 10);
			if (*end || !v || v > 86400) {
				fprintf(stderr, "%s: bad --timeout %s\n", prog_name, argv[i]);
				return 1;
			}
			timeout = (unsigned)v;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else if (argv[i][0] == '-' || path) {
			usage(stderr);
			return 1;
		} else {
			path = argv[i];
		}
	}
	if (!path) {
		usage(stderr);
		return 1;
	}

	uint8_t *file = NULL;
	size_t len = 0;
	struct ku_image img = { 0 };
	if (read_file(path, &file, &len)) {
		fprintf(stderr, "%s: %s\n", prog_name, err_get());
		return 1;
	}
	if (image_layout(path, file, len, &img)) {
		fprintf(stderr, "%s: %s\n", prog_name, err_get());
		goto out_file;
	}
	img.ram = mmap(NULL, img.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (img.ram == MAP_FAILED) {
		fprintf(stderr, "%s: cannot map %llu bytes of RAM: %s\n", prog_name,
			(unsigned long long)img.size, strerror(errno));
		goto out_file;
	}
	image_load(file, &img);

	struct memmap *mm = memmap_new();
	if (!mm) {
		fprintf(stderr, "%s: out of memory\n", prog_name);
		goto out_ram;
	}
	int rc = memmap_add_ram(mm, img.base, img.size, img.ram);
	if (rc) {
		fprintf(stderr, "%s: cannot add RAM: %s\n", prog_name, strerror(-rc));
		goto out_mm;
	}
	struct accel_vm_config cfg = {
		.ram = img.ram,
		.ram_base = img.base,
		.ram_size = img.size,
		.memmap = mm,
		.ncpus = 1,
		.ecall_exit_mask = 1u << 0,
	};
	struct accel_vm *vm;
	rc = ops->vm_new(&cfg, &vm);
	if (rc) {
		fprintf(stderr, "%s: cannot create the VM: %s\n", prog_name, strerror(-rc));
		goto out_mm;
	}
	struct accel_vcpu *vcpu;
	rc = ops->vcpu_new(vm, 0, &vcpu);
	if (rc) {
		fprintf(stderr, "%s: cannot create the vCPU: %s\n", prog_name, strerror(-rc));
		goto out_vm;
	}
	if (vcpu_setup(ops, vcpu, &img)) {
		fprintf(stderr, "%s: %s\n", prog_name, err_get());
		goto out_vcpu;
	}

	struct ku_watchdog wd = { .ops = ops, .vcpu = vcpu, .seconds = timeout };
	pthread_t wd_thread;
	if (pthread_create(&wd_thread, NULL, watchdog_main, &wd)) {
		fprintf(stderr, "%s: cannot start the watchdog thread\n", prog_name);
		goto out_vcpu;
	}
	pthread_detach(wd_thread);
	fflush(stdout);
	status = run_loop(ops, vcpu, mm, &wd);
	/* The detached watchdog may still kick the vCPU: leave it and the VM to process exit. */
	free(file);
	return status;

out_vcpu:
	ops->vcpu_free(vcpu);
out_vm:
	ops->vm_free(vm);
out_mm:
	memmap_free(mm);
out_ram:
	munmap(img.ram, img.size);
out_file:
	free(file);
	return status;
}
