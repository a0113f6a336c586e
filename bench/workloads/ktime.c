/*
 * ktime: times one workload inside the benchmark guest (bench/workloads.py runs it).
 *
 *   ktime [-i] NAME PROGRAM [ARG...]
 *
 * Forks and execs PROGRAM with its stdout on a pipe, waits for it, and prints one line:
 *
 *   KTIME NAME status=S ns=N instret=I out=LAST
 *
 * ns is CLOCK_MONOTONIC wall time from just before fork() to just after waitpid(); instret is
 * the hart's retired-instruction count over the same span when -i is given (the `instret` CSR,
 * unpriv 20191213 §10.1, readable from U-mode when the kernel and the SBI set the IR bit in
 * scounteren and mcounteren), else -1. It counts every instruction the hart retired, the
 * kernel's included, so the workload should run alone on a 1-vCPU guest. LAST is the last
 * non-empty line the program printed (its checksum), with blanks turned into '_' so the line
 * stays one token per field. The program's stderr passes through unchanged.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define OUT_MAX 160

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t read_instret(void)
{
	uint64_t v;

	__asm__ volatile("csrr %0, instret" : "=r"(v)); /* unpriv 20191213 §10.1 */
	return v;
}

/* Keeps the last non-empty line of everything read from fd in last[] (NUL-terminated). */
static void drain(int fd, char *last)
{
	char buf[4096], line[OUT_MAX];
	size_t len = 0;
	ssize_t n;

	last[0] = '\0';
	for (;;) {
		n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n; i++) {
			char c = buf[i];

			if (c == '\n') {
				if (len > 0) {
					memcpy(last, line, len);
					last[len] = '\0';
				}
				len = 0;
				continue;
			}
			if (len + 1 < sizeof(line))
				line[len++] = (c == ' ' || c == '\t' || c == '\r') ? '_' : c;
		}
	}
	if (len > 0) {
		memcpy(last, line, len);
		last[len] = '\0';
	}
}

int main(int argc, char **argv)
{
	char last[OUT_MAX];
	uint64_t t0, t1, i0 = 0, i1 = 0;
	int fds[2], status, argi = 1;
	int use_instret = 0;
	pid_t pid;

	if (argc > 1 && strcmp(argv[1], "-i") == 0) {
		use_instret = 1;
		argi++;
	}
	if (argc - argi < 2) {
		fprintf(stderr, "usage: ktime [-i] NAME PROGRAM [ARG...]\n");
		return 2;
	}
	if (pipe(fds) < 0) {
		perror("ktime: pipe");
		return 1;
	}
	if (use_instret)
		i0 = read_instret();
	t0 = now_ns();
	pid = fork();
	if (pid < 0) {
		perror("ktime: fork");
		return 1;
	}
	if (pid == 0) {
		close(fds[0]);
		if (dup2(fds[1], STDOUT_FILENO) < 0)
			_exit(126);
		close(fds[1]);
		execvp(argv[argi + 1], &argv[argi + 1]);
		fprintf(stderr, "ktime: cannot run %s: %s\n", argv[argi + 1], strerror(errno));
		_exit(127);
	}
	close(fds[1]);
	drain(fds[0], last);
	close(fds[0]);
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			perror("ktime: waitpid");
			return 1;
		}
	}
	t1 = now_ns();
	if (use_instret)
		i1 = read_instret();
	printf("KTIME %s status=%d ns=%llu instret=%lld out=%s\n", argv[argi],
	       WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
	       (unsigned long long)(t1 - t0), use_instret ? (long long)(i1 - i0) : -1LL,
	       last[0] ? last : "-");
	return 0;
}
