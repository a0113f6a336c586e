/*
 * alu: integer ALU work (shifts, xors, adds, rotates, compares) in four independent chains so
 * an engine that overlaps them gets credit. Fixed work: N iterations (default 75e6).
 * Prints the checksum.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static inline uint64_t rotl(uint64_t v, unsigned k)
{
	return (v << k) | (v >> (64 - k));
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 75000000L;
	uint64_t a = 1, b = 2, c = 3, d = 4;
	uint32_t w = 7;

	for (long i = 0; i < n; i++) {
		a ^= a << 13;
		a ^= a >> 7;
		a ^= a << 17;
		b = rotl(b + a, 23) ^ (uint64_t)i;
		c += (b < a) ? (b >> 3) : (a >> 5);
		d = (d ^ c) + rotl(d, 9);
		w = (w + (uint32_t)d) ^ (w >> 3); /* 32-bit ops (addw, srliw) */
	}
	printf("alu %016llx\n", (unsigned long long)(a ^ b ^ c ^ d ^ w));
	return 0;
}
