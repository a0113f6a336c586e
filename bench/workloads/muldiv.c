/*
 * muldiv: 64-bit multiply (low and high halves), divide and remainder, signed and unsigned, and
 * their 32-bit forms. Fixed work: N iterations (default 15e6). Prints the checksum.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 15000000L;
	uint64_t x = 88172645463325252u, acc = 0;
	int64_t s = -123456789;
	uint32_t w = 12345;

	for (long i = 0; i < n; i++) {
		unsigned __int128 p;
		uint64_t q, r;

		x = x * 6364136223846793005u + 1442695040888963407u; /* mul */
		p = (unsigned __int128)x * (x | 1);                   /* mulhu */
		q = x / ((p >> 64) | 1);                              /* divu */
		r = x % ((uint64_t)i + 3);                            /* remu */
		s = s / 3 + (int64_t)(r * 7) - (s % 1000003);         /* div, rem */
		w = w * 2654435761u / ((w >> 7) | 1) + (uint32_t)q;   /* mulw, divuw */
		acc += q ^ r ^ (uint64_t)s ^ w;
	}
	printf("muldiv %016llx\n", (unsigned long long)acc);
	return 0;
}
