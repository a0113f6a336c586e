/*
 * sort: branchy code with data-dependent branches. Sorts 1 Mi pseudo-random 32-bit keys with a
 * hand-written quicksort (median of three, insertion sort for short runs) R times (default 3),
 * regenerating the keys each round. Checks the order and prints a checksum.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define N (1u << 20)

static void insertion(uint32_t *v, long lo, long hi)
{
	for (long i = lo + 1; i <= hi; i++) {
		uint32_t k = v[i];
		long j = i - 1;

		while (j >= lo && v[j] > k) {
			v[j + 1] = v[j];
			j--;
		}
		v[j + 1] = k;
	}
}

static void swap(uint32_t *v, long i, long j)
{
	uint32_t t = v[i];

	v[i] = v[j];
	v[j] = t;
}

static void quick(uint32_t *v, long lo, long hi)
{
	while (hi - lo > 16) {
		long mid = lo + (hi - lo) / 2, i = lo, j = hi;
		uint32_t pivot;

		if (v[mid] < v[lo])
			swap(v, mid, lo);
		if (v[hi] < v[lo])
			swap(v, hi, lo);
		if (v[hi] < v[mid])
			swap(v, hi, mid);
		pivot = v[mid];
		while (i <= j) {
			while (v[i] < pivot)
				i++;
			while (v[j] > pivot)
				j--;
			if (i <= j)
				swap(v, i++, j--);
		}
		if (j - lo < hi - i) { /* recurse on the smaller side: O(log n) stack */
			quick(v, lo, j);
			lo = i;
		} else {
			quick(v, i, hi);
			hi = j;
		}
	}
	insertion(v, lo, hi);
}

int main(int argc, char **argv)
{
	long rounds = argc > 1 ? atol(argv[1]) : 3;
	uint32_t *v = malloc(N * sizeof(*v));
	uint64_t x = 0x2545f4914f6cdd1du, sum = 0;

	if (!v) {
		fprintf(stderr, "sort: out of memory\n");
		return 1;
	}
	for (long r = 0; r < rounds; r++) {
		for (uint32_t i = 0; i < N; i++) {
			x ^= x >> 12;
			x ^= x << 25;
			x ^= x >> 27;
			v[i] = (uint32_t)((x * 0x2545f4914f6cdd1du) >> 32);
		}
		quick(v, 0, N - 1);
		for (uint32_t i = 1; i < N; i++) {
			if (v[i - 1] > v[i]) {
				fprintf(stderr, "sort: not sorted at %u\n", i);
				return 1;
			}
		}
		for (uint32_t i = 0; i < N; i += 4096)
			sum = sum * 131 + v[i];
	}
	printf("sort %016llx\n", (unsigned long long)sum);
	free(v);
	return 0;
}
