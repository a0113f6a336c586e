/* accel.c - registry of accelerator backends. */
#include <string.h>

#include "kumo/accel.h"

static const struct accel_ops *const backends[] = {
	&accel_rv64_ops,
};

const struct accel_ops *accel_find(const char *name)
{
	for (unsigned i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
		if (!strcmp(backends[i]->name, name))
			return backends[i];
	return NULL;
}

const char *accel_exit_name(uint32_t reason)
{
	static const char *const names[ACCEL_EXIT__COUNT] = {
		[ACCEL_EXIT_NONE] = "none",
		[ACCEL_EXIT_MMIO] = "mmio",
		[ACCEL_EXIT_SBI] = "sbi",
		[ACCEL_EXIT_HALT] = "halt",
		[ACCEL_EXIT_INTR] = "intr",
		[ACCEL_EXIT_SYSTEM_EVENT] = "system_event",
		[ACCEL_EXIT_DEBUG] = "debug",
		[ACCEL_EXIT_INTERNAL_ERROR] = "internal_error",
	};
	return reason < ACCEL_EXIT__COUNT ? names[reason] : "unknown";
}
