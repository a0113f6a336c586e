/*
 * atomics.c - a static riscv64 Linux program that hammers shared counters from several threads
 * with the A extension's AMOs and LR/SC loops and checks the exact totals.
 *
 * Usage (inside the guest): atomics [THREADS [ITERATIONS | SECONDSs]]  (defaults: 4, 200000)
 * With "20s" each thread runs until 20 seconds have passed (checked every 1024 iterations) and
 * the expected totals come from the iteration counts the threads report, so a run lasts long
 * enough to be measured from the host whatever the CPU's speed.
 * Prints one "PASS NAME got=X" or "FAIL NAME got=X want=Y" line per counter, then
 * "ATOMICS-DONE pass=N fail=M threads=T iters=I", and exits 0 only when every counter is exact.
 *
 * Every operation is written in inline assembly so the instruction under test is certain
 * (unpriv 20191213 §8.2 LR/SC, §8.4 AMOs), whatever the compiler would choose for C11 atomics.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MAX_THREADS 64

/* Each counter on its own 64-byte line so the tests do not alias each other. */
struct counters {
	_Alignas(64) uint32_t amoadd_w;
	_Alignas(64) uint64_t amoadd_d;
	_Alignas(64) uint64_t lrsc_d;
	_Alignas(64) uint32_t lrsc_w;
	_Alignas(64) uint32_t lock;           /* amoswap.w.aq spinlock word */
	_Alignas(64) uint64_t locked_plain;   /* plain loads/stores under the lock */
	_Alignas(64) uint64_t locked_plain2;  /* second word under the same lock */
	_Alignas(64) uint64_t amoor_d;        /* each thread ORs in its own bits */
	_Alignas(64) uint64_t amoxor_d;       /* XOR of per-iteration values */
	_Alignas(64) int64_t amomax_d;        /* max of everything seen */
	_Alignas(64) int64_t amomin_d;
	_Alignas(64) uint64_t c11_add;        /* __atomic builtins (compiler's choice of sequence) */
	_Alignas(64) uint64_t cas_d;          /* compare-and-swap built from LR/SC */
};

static struct counters C;
static unsigned nthreads = 4;
static unsigned long iters = 200000;    /* per thread, fixed mode */
static double duration;                   /* seconds, timed mode (0: fixed mode) */
static int stop_flag;                     /* timed mode: set by main when the time is up */
static unsigned long done_iters[MAX_THREADS];
static pthread_barrier_t start_barrier;

static inline void amoadd_w(uint32_t *p, uint32_t v)
{
	__asm__ volatile("amoadd.w zero, %1, %0" : "+A"(*p) : "r"(v) : "memory");
}

static inline void amoadd_d(uint64_t *p, uint64_t v)
{
	__asm__ volatile("amoadd.d zero, %1, %0" : "+A"(*p) : "r"(v) : "memory");
}

static inline void amoor_d(uint64_t *p, uint64_t v)
{
	__asm__ volatile("amoor.d zero, %1, %0" : "+A"(*p) : "r"(v) : "memory");
}

static inline void amoxor_d(uint64_t *p, uint64_t v)
{
	__asm__ volatile("amoxor.d zero, %1, %0" : "+A"(*p) : "r"(v) : "memory");
}

static inline void amomax_d(int64_t *p, int64_t v)
{
	__asm__ volatile("amomax.d zero, %1, %0" : "+A"(*p) : "r"(v) : "memory");
}

static inline void amomin_d(int64_t *p, int64_t v)
{
	__asm__ volatile("amomin.d zero, %1, %0" : "+A"(*p) : "r"(v) : "memory");
}

/* Increment with an lr.d/sc.d retry loop (unpriv §8.3's constrained loop shape). */
static inline void lrsc_inc_d(uint64_t *p)
{
	uint64_t tmp, fail;
	__asm__ volatile("1: lr.d %0, %2\n"
			 "   addi %0, %0, 1\n"
			 "   sc.d %1, %0, %2\n"
			 "   bnez %1, 1b\n"
			 : "=&r"(tmp), "=&r"(fail), "+A"(*p)
			 :
			 : "memory");
}

static inline void lrsc_inc_w(uint32_t *p)
{
	uint32_t tmp, fail;
	__asm__ volatile("1: lr.w.aq %0, %2\n"
			 "   addiw %0, %0, 3\n"
			 "   sc.w.rl %1, %0, %2\n"
			 "   bnez %1, 1b\n"
			 : "=&r"(tmp), "=&r"(fail), "+A"(*p)
			 :
			 : "memory");
}

/* Returns the value found; stores desired only when it equalled expected. */
static inline uint64_t cas_d(uint64_t *p, uint64_t expected, uint64_t desired)
{
	uint64_t old, fail;
	__asm__ volatile("1: lr.d.aqrl %0, %2\n"
			 "   bne %0, %3, 2f\n"
			 "   sc.d.rl %1, %4, %2\n"
			 "   bnez %1, 1b\n"
			 "2:\n"
			 : "=&r"(old), "=&r"(fail), "+A"(*p)
			 : "r"(expected), "r"(desired)
			 : "memory");
	return old;
}

static inline void spin_lock(uint32_t *l)
{
	uint32_t old;
	for (;;) {
		__asm__ volatile("amoswap.w.aq %0, %2, %1" : "=r"(old), "+A"(*l) : "r"(1u) : "memory");
		if (old == 0)
			return;
		while (__atomic_load_n(l, __ATOMIC_RELAXED))
			;
	}
}

static inline void spin_unlock(uint32_t *l)
{
	__asm__ volatile("amoswap.w.rl zero, zero, %0" : "+A"(*l) : : "memory");
}

static void *worker(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	uint64_t mybits = 0xffull << (8 * (id % 8));
	unsigned long i;
	pthread_barrier_wait(&start_barrier);
	for (i = 0; duration > 0 || i < iters; i++) {
		if (duration > 0 && (i & 1023) == 0 && __atomic_load_n(&stop_flag, __ATOMIC_RELAXED))
			break;
		amoadd_w(&C.amoadd_w, 1);
		amoadd_d(&C.amoadd_d, id + 1);
		lrsc_inc_d(&C.lrsc_d);
		lrsc_inc_w(&C.lrsc_w);
		if ((i & 3) == 0) {
			spin_lock(&C.lock);
			/* volatile: the compiler may not merge these into one update */
			uint64_t v = *(volatile uint64_t *)&C.locked_plain;
			*(volatile uint64_t *)&C.locked_plain = v + 1;
			*(volatile uint64_t *)&C.locked_plain2 = *(volatile uint64_t *)&C.locked_plain2 + v;
			spin_unlock(&C.lock);
		}
		if ((i & 1023) == 0)
			amoor_d(&C.amoor_d, mybits & (i | 0x0101010101010101ull << (id % 8)));
		amoxor_d(&C.amoxor_d, (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ull * (2 * id + 1));
		amomax_d(&C.amomax_d, (int64_t)(i * (id + 1)));
		amomin_d(&C.amomin_d, -(int64_t)(i * (id + 1)));
		__atomic_fetch_add(&C.c11_add, 2, __ATOMIC_SEQ_CST);
		for (;;) {
			uint64_t cur = __atomic_load_n(&C.cas_d, __ATOMIC_RELAXED);
			if (cas_d(&C.cas_d, cur, cur + 5) == cur)
				break;
		}
	}
	done_iters[id] = i;
	return NULL;
}

static unsigned pass_count, fail_count;

static void check(const char *name, uint64_t got, uint64_t want)
{
	if (got == want) {
		printf("PASS %s got=%llu\n", name, (unsigned long long)got);
		pass_count++;
	} else {
		printf("FAIL %s got=%llu want=%llu\n", name, (unsigned long long)got, (unsigned long long)want);
		fail_count++;
	}
}

int main(int argc, char **argv)
{
	pthread_t tids[MAX_THREADS];
	struct timespec t0, t1;

	if (argc > 1)
		nthreads = (unsigned)strtoul(argv[1], NULL, 0);
	if (argc > 2) {
		char *end;
		unsigned long v = strtoul(argv[2], &end, 0);
		if (*end == 's')
			duration = (double)v;
		else
			iters = v;
	}
	if (nthreads < 1 || nthreads > MAX_THREADS || iters < 1) {
		fprintf(stderr, "usage: atomics [THREADS(1..%d) [ITERATIONS | SECONDSs]]\n", MAX_THREADS);
		return 2;
	}
	if (pthread_barrier_init(&start_barrier, NULL, nthreads) != 0) {
		perror("pthread_barrier_init");
		return 2;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned t = 0; t < nthreads; t++) {
		if (pthread_create(&tids[t], NULL, worker, (void *)(uintptr_t)t) != 0) {
			perror("pthread_create");
			return 2;
		}
	}
	if (duration > 0) {
		struct timespec d = {.tv_sec = (time_t)duration};
		while (nanosleep(&d, &d) != 0)
			;
		__atomic_store_n(&stop_flag, 1, __ATOMIC_RELAXED);
	}
	for (unsigned t = 0; t < nthreads; t++)
		pthread_join(tids[t], NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);

	/* Expected values, computed the slow way. */
	uint64_t total = 0, weighted = 0, locked = 0, locked2 = 0, orv = 0, xorv = 0;
	unsigned long min_iters = ~0ul;
	int64_t maxv = 0, minv = 0;
	for (unsigned t = 0; t < nthreads; t++) {
		uint64_t mybits = 0xffull << (8 * (t % 8));
		unsigned long k = done_iters[t];
		total += k;
		weighted += (uint64_t)k * (t + 1);
		if (k < min_iters)
			min_iters = k;
		for (unsigned long i = 0; i < k; i++) {
			if ((i & 3) == 0) {
				locked2 += locked; /* order-independent: see below */
				locked++;
			}
			if ((i & 1023) == 0)
				orv |= mybits & (i | 0x0101010101010101ull << (t % 8));
			xorv ^= (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ull * (2 * t + 1);
		}
		int64_t top = k ? (int64_t)((k - 1) * (t + 1)) : 0;
		if (top > maxv)
			maxv = top;
		if (-top < minv)
			minv = -top;
	}
	/*
	 * locked_plain2 accumulates the value of locked_plain seen before each increment: whatever
	 * the interleaving, that is 0 + 1 + ... + (K-1) for K increments in total, as computed.
	 */
	check("amoadd.w", C.amoadd_w, (uint32_t)total);
	check("amoadd.d", C.amoadd_d, weighted);
	check("lr.d/sc.d", C.lrsc_d, total);
	check("lr.w/sc.w", C.lrsc_w, (uint32_t)(3 * total));
	check("amoswap-lock", C.locked_plain, locked);
	check("amoswap-lock-sum", C.locked_plain2, locked2);
	check("amoor.d", C.amoor_d, orv);
	check("amoxor.d", C.amoxor_d, xorv);
	check("amomax.d", (uint64_t)C.amomax_d, (uint64_t)maxv);
	check("amomin.d", (uint64_t)C.amomin_d, (uint64_t)minv);
	check("c11-fetch-add", C.c11_add, 2 * total);
	check("lr/sc-cas", C.cas_d, 5 * total);
	double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("ATOMICS-DONE pass=%u fail=%u threads=%u iters=%llu min-per-thread=%lu seconds=%.2f\n",
	       pass_count, fail_count, nthreads, (unsigned long long)total, min_iters, secs);
	return fail_count ? 1 : 0;
}
