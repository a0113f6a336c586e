/*
 * sys: syscall-heavy code. N rounds (default 150000) of getppid() through syscall(2) (no libc
 * caching) and a 64-byte write() to /dev/null: every round is two traps into the guest kernel
 * and two returns. Prints the number of bytes written and a sum of the results.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 150000L;
	char buf[64] = "kumo bench: syscall workload writes this line to /dev/null\n";
	long ppid = syscall(SYS_getppid), bad = 0;
	uint64_t written = 0;
	int fd = open("/dev/null", O_WRONLY);

	if (fd < 0) {
		perror("sys: /dev/null");
		return 1;
	}
	for (long i = 0; i < n; i++) {
		ssize_t w;

		if (syscall(SYS_getppid) != ppid)
			bad++;
		w = write(fd, buf, sizeof(buf));
		if (w > 0)
			written += (uint64_t)w;
	}
	close(fd);
	printf("sys %llu %ld\n", (unsigned long long)written, bad);
	return bad != 0;
}
