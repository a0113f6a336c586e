/*
 * accel_harness.h - a small machine for the unit tests of the software RV64 CPU (test_rv64_*.c,
 * test_dirty_log.c): guest RAM in a page-aligned, zeroed host buffer behind a memmap, an
 * accel_rv64_ops VM over it and up to AH_CPUS_MAX vCPUs, with helpers that put words in RAM,
 * read and write registers by id and run a hart to its next exit. Every helper fails the
 * running cmocka test on an error (the library underneath returns -errno; a test stops).
 *
 *   struct ah_config c = {.ram_base = 0x80000000, .ram_size = 1 << 20, .ncpus = 1,
 *                         .ecall_exit_mask = 1u << 3, .jit = AH_JIT_OFF};
 *   struct accel_harness h;
 *
 *   ah_init(&h, &c);
 *   ah_put32(&h, 0x80000000, 0x00000073);     (an ECALL)
 *   ah_set(&h, 0, ACCEL_REG_PC, 0x80000000);
 *   a0 = ah_run_to_ecall(&h, 0);
 *   ah_fini(&h);
 *
 * Programs usually leave vcpu_run() through an ECALL that ecall_exit_mask turns into an SBI
 * exit (bit n: ECALLs from privilege n); the next vcpu_run() goes on after it. Tests that
 * compare the translator with the interpreter keep two harnesses, one with AH_JIT_ON and one
 * with AH_JIT_OFF.
 */
#ifndef KUMO_TEST_ACCEL_HARNESS_H
#define KUMO_TEST_ACCEL_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kumo/accel.h"
#include "kumo/memmap.h"

#define AH_CPUS_MAX 4

/* Whether the vCPUs get the translator: KUMO_JIT is read once, by vcpu_new(). */
enum ah_jit {
	AH_JIT_ENV, /* as the environment says (the translator unless KUMO_JIT=0) */
	AH_JIT_ON,  /* the translator where the host has one */
	AH_JIT_OFF, /* the interpreter alone */
};

struct ah_config {
	uint64_t ram_base;	  /* guest-physical, page-aligned */
	uint64_t ram_size;	  /* bytes, a multiple of 4096 */
	unsigned ncpus;		  /* 1..AH_CPUS_MAX */
	uint32_t ecall_exit_mask; /* accel_vm_config.ecall_exit_mask */
	enum ah_jit jit;
};

struct accel_harness {
	const struct accel_ops *ops; /* &accel_rv64_ops */
	uint8_t *ram;		     /* ram_size bytes, guest-physical ram_base */
	uint64_t ram_base;
	uint64_t ram_size;
	struct memmap *mm; /* RAM registered at ram_base */
	struct accel_vm *vm;
	unsigned ncpus;
	struct accel_vcpu *cpu[AH_CPUS_MAX]; /* hart i, [0, ncpus) */
};

static inline void ah_init(struct accel_harness *h, const struct ah_config *c)
{
	struct accel_vm_config cfg = {0};
	const char *env = getenv("KUMO_JIT");
	char *saved = env ? strdup(env) : NULL;

	assert_true(c->ncpus >= 1 && c->ncpus <= AH_CPUS_MAX);
	assert_true(c->ram_size % 4096 == 0);
	memset(h, 0, sizeof(*h));
	h->ops = &accel_rv64_ops;
	h->ram_base = c->ram_base;
	h->ram_size = c->ram_size;
	h->ncpus = c->ncpus;
	h->ram = aligned_alloc(4096, c->ram_size);
	assert_non_null(h->ram);
	memset(h->ram, 0, c->ram_size);
	h->mm = memmap_new();
	assert_non_null(h->mm);
	assert_int_equal(memmap_add_ram(h->mm, c->ram_base, c->ram_size, h->ram), 0);
	cfg.ram = h->ram;
	cfg.ram_base = c->ram_base;
	cfg.ram_size = c->ram_size;
	cfg.memmap = h->mm;
	cfg.ncpus = c->ncpus;
	cfg.ecall_exit_mask = c->ecall_exit_mask;
	if (c->jit != AH_JIT_ENV)
		setenv("KUMO_JIT", c->jit == AH_JIT_ON ? "1" : "0", 1);
	assert_int_equal(h->ops->vm_new(&cfg, &h->vm), 0);
	for (unsigned i = 0; i < c->ncpus; i++)
		assert_int_equal(h->ops->vcpu_new(h->vm, i, &h->cpu[i]), 0);
	if (c->jit != AH_JIT_ENV) {
		if (saved)
			setenv("KUMO_JIT", saved, 1);
		else
			unsetenv("KUMO_JIT");
	}
	free(saved);
}

static inline void ah_fini(struct accel_harness *h)
{
	for (unsigned i = 0; i < h->ncpus; i++)
		h->ops->vcpu_free(h->cpu[i]);
	h->ops->vm_free(h->vm);
	memmap_free(h->mm);
	free(h->ram);
	memset(h, 0, sizeof(*h));
}

/* ah_init() on a harness of its own; ah_free() or ah_teardown() releases it. */
static inline struct accel_harness *ah_new(const struct ah_config *c)
{
	struct accel_harness *h = malloc(sizeof(*h));

	assert_non_null(h);
	ah_init(h, c);
	return h;
}

static inline void ah_free(struct accel_harness *h)
{
	ah_fini(h);
	free(h);
}

/* A cmocka teardown for a *state set to ah_new()'s harness. */
static inline int ah_teardown(void **state)
{
	ah_free(*state);
	return 0;
}

/* The host address of guest-physical [gpa, gpa + len), which must lie inside RAM. */
static inline void *ah_ptr(struct accel_harness *h, uint64_t gpa, uint64_t len)
{
	assert_true(gpa >= h->ram_base && len <= h->ram_size &&
		    gpa - h->ram_base <= h->ram_size - len);
	return h->ram + (gpa - h->ram_base);
}

static inline void ah_put16(struct accel_harness *h, uint64_t gpa, uint16_t v)
{
	memcpy(ah_ptr(h, gpa, 2), &v, 2);
}

static inline void ah_put32(struct accel_harness *h, uint64_t gpa, uint32_t v)
{
	memcpy(ah_ptr(h, gpa, 4), &v, 4);
}

static inline void ah_put64(struct accel_harness *h, uint64_t gpa, uint64_t v)
{
	memcpy(ah_ptr(h, gpa, 8), &v, 8);
}

static inline uint64_t ah_get64(struct accel_harness *h, uint64_t gpa)
{
	uint64_t v;

	memcpy(&v, ah_ptr(h, gpa, 8), 8);
	return v;
}

/* Register id as in accel.h: ACCEL_REG_PC, ACCEL_REG_X(n), ACCEL_REG_CSR(n), ... */
static inline void ah_set(struct accel_harness *h, unsigned hart, uint32_t id, uint64_t v)
{
	assert_int_equal(h->ops->set_reg(h->cpu[hart], id, v), 0);
}

static inline uint64_t ah_get(struct accel_harness *h, unsigned hart, uint32_t id)
{
	uint64_t v = 0;

	assert_int_equal(h->ops->get_reg(h->cpu[hart], id, &v), 0);
	return v;
}

static inline struct accel_run *ah_run_state(struct accel_harness *h, unsigned hart)
{
	return h->ops->vcpu_run_state(h->cpu[hart]);
}

/* Runs hart to its next exit; returns the exit reason (ACCEL_EXIT_*). */
static inline uint32_t ah_run(struct accel_harness *h, unsigned hart)
{
	assert_int_equal(h->ops->vcpu_run(h->cpu[hart]), 0);
	return ah_run_state(h, hart)->exit_reason;
}

/* Runs hart to its next exit, which must be an ECALL's (ACCEL_EXIT_SBI); returns a0 there. */
static inline uint64_t ah_run_to_ecall(struct accel_harness *h, unsigned hart)
{
	assert_int_equal(ah_run(h, hart), ACCEL_EXIT_SBI);
	return ah_get(h, hart, ACCEL_REG_X(10));
}

/*
 * Two one-machine harnesses for comparing the translator with the interpreter: pair[0] as
 * c->jit says, pair[1] with the interpreter alone; ah_fini_pair() frees both.
 */
static inline void ah_init_pair(struct accel_harness pair[2], const struct ah_config *c)
{
	struct ah_config interp = *c;

	interp.jit = AH_JIT_OFF;
	ah_init(&pair[0], c);
	ah_init(&pair[1], &interp);
}

static inline void ah_fini_pair(struct accel_harness pair[2])
{
	ah_fini(&pair[0]);
	ah_fini(&pair[1]);
}

/* xorshift64*: the random program generators' numbers (state never 0). */
static inline uint64_t ah_rnd(uint64_t *state)
{
	*state ^= *state >> 12;
	*state ^= *state << 25;
	*state ^= *state >> 27;
	return *state * 0x2545f4914f6cdd1dULL;
}

/* A random number below n. */
static inline unsigned ah_pick(uint64_t *state, unsigned n)
{
	return (unsigned)(ah_rnd(state) % n);
}

#endif
