/*
 * mem.c - host memory helpers (kumo/base.h): names for anonymous mappings, and whether the
 * host gives transparent huge pages.
 */
#include <stdio.h>
#include <string.h>
#include <stddef.h>
#include <sys/prctl.h>

#include "kumo/base.h"

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41 /* linux/prctl.h, Linux 5.17 */
#define PR_SET_VMA_ANON_NAME 0
#endif

void mem_name(void *addr, size_t len, const char *name)
{
	/* Best effort: without the kernel's support the mapping just stays unnamed. */
	(void)prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, addr, len, name);
}

int mem_thp_mode(void)
{
	char buf[128] = "";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");

	if (!f)
		return -1;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	fclose(f);
	if (strstr(buf, "[never]"))
		return 0;
	return buf[0] ? 1 : -1;
}
