/*
 * proc.c - VM processes for the drivers: spawned in their own session (setsid) so they survive
 * the agent, console to DIR/console.log, pid in DIR/pid with the process start time (from
 * /proc/PID/stat field 22) so a recycled pid is never mistaken for the VM after a restart.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kumo/base.h"
#include "kumo/pool/pool.h"

/* Field 22 (starttime) of /proc/PID/stat, and whether the process is a zombie. */
static int proc_start(pid_t pid, unsigned long long *start, bool *zombie)
{
	char path[64], buf[1024], *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -ENOENT;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')'); /* comm may hold spaces */
	if (!p || p[1] != ' ')
		return -EINVAL;
	*zombie = p[2] == 'Z' || p[2] == 'X';
	p += 2;
	for (int field = 3; field < 22 && p; field++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	if (!p)
		return -EINVAL;
	*start = strtoull(p, NULL, 10);
	return 0;
}

static int read_pid(const char *dir, pid_t *pid, unsigned long long *start)
{
	char path[512];
	long long a = 0;
	unsigned long long b = 0;
	FILE *f;
	int n;

	snprintf(path, sizeof(path), "%s/pid", dir);
	f = fopen(path, "r");
	if (!f)
		return -ENOENT;
	n = fscanf(f, "%lld %llu", &a, &b);
	fclose(f);
	if (n < 1 || a <= 0)
		return -EINVAL;
	*pid = (pid_t)a;
	*start = n == 2 ? b : 0;
	return 0;
}

/* Records pid + start time; a daemonizing program (QEMU -daemonize) wrote its pid itself. */
static int write_pid(const char *dir, pid_t pid)
{
	char path[512], tmp[520];
	unsigned long long start = 0;
	bool z;
	FILE *f;

	proc_start(pid, &start, &z);
	snprintf(path, sizeof(path), "%s/pid", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return -errno;
	fprintf(f, "%d %llu\n", (int)pid, start);
	if (fclose(f))
		return -EIO;
	return rename(tmp, path) ? -errno : 0;
}

int pool_proc_spawn(const char *dir, char *const argv[], bool daemonizes)
{
	char log[512];
	int pfd[2];
	pid_t child, vm = 0;
	int status;

	snprintf(log, sizeof(log), "%s/console.log", dir);
	if (pipe2(pfd, O_CLOEXEC))
		return -errno;
	child = fork();
	if (child < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return -errno;
	}
	if (!child) {
		/* first child: new session, then fork the VM so it is never the agent's child */
		setsid();
		pid_t g = daemonizes ? 0 : fork();

		if (g > 0 || g < 0) {
			(void)!write(pfd[1], &g, sizeof(g));
			_exit(g > 0 ? 0 : 1);
		}
		int in = open("/dev/null", O_RDONLY);
		int out = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);

		if (in < 0 || out < 0)
			_exit(126);
		dup2(in, 0);
		dup2(out, 1);
		dup2(out, 2);
		execv(argv[0], argv);
		_exit(127);
	}
	close(pfd[1]);
	if (!daemonizes && read(pfd[0], &vm, sizeof(vm)) != (ssize_t)sizeof(vm))
		vm = -1;
	close(pfd[0]);
	waitpid(child, &status, 0);
	if (daemonizes)
		return WIFEXITED(status) && !WEXITSTATUS(status) ? 0 : -EIO;
	if (vm <= 0) {
		err_set("cannot fork the VM process");
		return -EAGAIN;
	}
	return write_pid(dir, vm);
}

bool pool_proc_alive(const char *dir)
{
	unsigned long long start, now_start;
	pid_t pid;
	bool zombie;

	if (read_pid(dir, &pid, &start) || proc_start(pid, &now_start, &zombie))
		return false;
	if (zombie || (start && start != now_start))
		return false;
	return true;
}

int pool_proc_kill(const char *dir, int timeout_ms)
{
	unsigned long long start;
	pid_t pid;

	if (!pool_proc_alive(dir) || read_pid(dir, &pid, &start))
		return 0;
	kill(pid, SIGTERM);
	for (int waited = 0; waited < timeout_ms; waited += 50) {
		struct timespec ts = {0, 50 * 1000000L};

		if (!pool_proc_alive(dir))
			return 0;
		nanosleep(&ts, NULL);
	}
	kill(pid, SIGKILL);
	return 0;
}
