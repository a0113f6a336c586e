/*
 * migrations.c - the numbered SQL migrations of src/pool/migrations/, embedded into the binary
 * at build time with the assembler's .incbin (NUL-terminated), applied by pool_store_open().
 */
#include "kumo/pool/store.h"

#define EMBED(sym, file) \
	__asm__(".section .rodata\n" \
		".global " #sym "\n" \
		".type " #sym ", @object\n" \
		".balign 16\n" #sym ":\n" \
		".incbin \"" file "\"\n" \
		".byte 0\n" \
		".previous\n")

EMBED(pool_migration_001, "src/pool/migrations/001_init.sql");
extern const char pool_migration_001[];
EMBED(pool_migration_002, "src/pool/migrations/002_agent_tokens.sql");
extern const char pool_migration_002[];

const struct pool_migration pool_migrations[] = {
	{1, "001_init", pool_migration_001},
	{2, "002_agent_tokens", pool_migration_002},
};
const int pool_nmigrations = sizeof(pool_migrations) / sizeof(pool_migrations[0]);
