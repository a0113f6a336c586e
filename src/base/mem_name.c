/*
 * mem_name.c - names for anonymous mappings (kumo/base.h).
 */
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
