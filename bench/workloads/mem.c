/*
 * mem: memory streaming in the manner of STREAM (copy, scale, add, triad) on three 16 MiB
 * arrays of 64-bit integers, far larger than any cache or software TLB reach, for P passes
 * (default 8). Prints a checksum of the arrays.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define N (2u << 20) /* elements per array: 16 MiB of uint64_t */

int main(int argc, char **argv)
{
	long passes = argc > 1 ? atol(argv[1]) : 8;
	uint64_t *a = malloc(N * sizeof(*a)), *b = malloc(N * sizeof(*b)), *c = malloc(N * sizeof(*c));
	uint64_t sum = 0;

	if (!a || !b || !c) {
		fprintf(stderr, "mem: out of memory\n");
		return 1;
	}
	for (uint32_t i = 0; i < N; i++) {
		a[i] = i;
		b[i] = (uint64_t)i * 3;
		c[i] = 0;
	}
	for (long p = 0; p < passes; p++) {
		for (uint32_t i = 0; i < N; i++) /* copy */
			c[i] = a[i];
		for (uint32_t i = 0; i < N; i++) /* scale */
			b[i] = 3 * c[i] + (uint64_t)p;
		for (uint32_t i = 0; i < N; i++) /* add */
			c[i] = a[i] + b[i];
		for (uint32_t i = 0; i < N; i++) /* triad */
			a[i] = b[i] + 5 * c[i];
	}
	for (uint32_t i = 0; i < N; i++)
		sum = sum * 31 + (a[i] ^ b[i] ^ c[i]);
	printf("mem %016llx\n", (unsigned long long)sum);
	free(a);
	free(b);
	free(c);
	return 0;
}
