/*
 * mkdata: writes MIB mebibytes of deterministic, compressible text to stdout (the input of the
 * sha256sum and gzip workloads). Words are drawn from a fixed vocabulary by a xorshift64
 * generator with a fixed seed, so kumo's and QEMU's guests hash and compress the same bytes.
 *
 *   mkdata MIB > FILE
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char *const words[] = {
	"virtio", "queue", "descriptor", "hart", "trap", "page", "table", "kernel", "guest",
	"host", "interrupt", "timer", "the", "a", "of", "and", "to", "in", "is", "with",
	"memory", "device", "block", "network", "packet", "0x80200000", "sfence.vma", "csr",
	"instret", "benchmark", "kumo", "qemu", "tlb", "decode", "cache", "load", "store",
	"atomic", "fence", "lr.d", "sc.d", "mret", "sret", "ecall", "satp", "sv39", "mmu",
};

int main(int argc, char **argv)
{
	static char buf[1 << 16];
	uint64_t x = 0x9e3779b97f4a7c15u;
	long mib = argc > 1 ? atol(argv[1]) : 64;
	uint64_t left = (uint64_t)mib << 20;
	size_t nw = sizeof(words) / sizeof(words[0]);

	if (mib <= 0) {
		fprintf(stderr, "usage: mkdata MIB\n");
		return 2;
	}
	while (left > 0) {
		size_t len = 0;

		while (len < sizeof(buf) - 32) {
			const char *w;

			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			w = words[(x >> 11) % nw];
			while (*w)
				buf[len++] = *w++;
			buf[len++] = (x & 0xf) == 0 ? '\n' : ' ';
		}
		if (len > left)
			len = (size_t)left;
		for (size_t off = 0; off < len;) {
			ssize_t n = write(STDOUT_FILENO, buf + off, len - off);

			if (n <= 0) {
				perror("mkdata: write");
				return 1;
			}
			off += (size_t)n;
		}
		left -= len;
	}
	return 0;
}
