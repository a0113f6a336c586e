/*
 * par: a parallel CPU workload for the SMP speed-up measurement (bench/io.py). A fixed total of
 * N work items (default 400e6; bench/io.py passes its own) of integer hashing is split into T equal contiguous ranges, one
 * per POSIX thread; each thread sums a hash of its item indices, so the total is the same for
 * every T and every engine. Threads share nothing while they run (padded result slots).
 *
 *   par T [N]
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_THREADS 64

struct slot {
	uint64_t lo, hi, sum;
	char pad[64 - 3 * sizeof(uint64_t)];
};

static struct slot slots[MAX_THREADS] __attribute__((aligned(64)));

static uint64_t mix(uint64_t z)
{
	z += 0x9e3779b97f4a7c15u;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

static void *work(void *arg)
{
	struct slot *s = arg;
	uint64_t sum = 0;

	for (uint64_t i = s->lo; i < s->hi; i++)
		sum += mix(i) >> 7;
	s->sum = sum;
	return NULL;
}

int main(int argc, char **argv)
{
	long t = argc > 1 ? atol(argv[1]) : 1;
	uint64_t n = argc > 2 ? strtoull(argv[2], NULL, 0) : 400000000u, total = 0;
	pthread_t tid[MAX_THREADS];

	if (t < 1 || t > MAX_THREADS) {
		fprintf(stderr, "usage: par T [N] (1 <= T <= %d)\n", MAX_THREADS);
		return 2;
	}
	for (long i = 0; i < t; i++) {
		slots[i].lo = n * (uint64_t)i / (uint64_t)t;
		slots[i].hi = n * (uint64_t)(i + 1) / (uint64_t)t;
		if (pthread_create(&tid[i], NULL, work, &slots[i]) != 0) {
			fprintf(stderr, "par: cannot create thread %ld\n", i);
			return 1;
		}
	}
	for (long i = 0; i < t; i++) {
		pthread_join(tid[i], NULL);
		total += slots[i].sum;
	}
	printf("par %016llx\n", (unsigned long long)total);
	return 0;
}
