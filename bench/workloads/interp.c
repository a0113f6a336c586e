/*
 * interp: branchy code. A switch-dispatched bytecode interpreter (a stack machine) runs a
 * program that counts the primes below LIMIT by trial division (default 60000), so nearly
 * every guest instruction is a load, a compare or an indirect/conditional branch whose target
 * depends on data. Prints the prime count and a checksum of the primes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

enum op { PUSH, LOAD, STORE, ADD, SUB, MUL, MOD, LT, JZ, JMP, DUP, POP, HALT };

struct insn {
	enum op op;
	int64_t arg;
};

/* Variables: 0 n, 1 d, 2 count, 3 sum, 4 limit. */

/* The program is assembled at run time so jump targets stay readable. */
static struct insn code[64];
static int ncode;

static int emit(enum op op, int64_t arg)
{
	code[ncode].op = op;
	code[ncode].arg = arg;
	return ncode++;
}

static void assemble(void)
{
	int loop, out, inner, prime, notprime, j_out, j_prime, j_np;

	emit(PUSH, 2);
	emit(STORE, 0); /* n = 2 */
	loop = emit(LOAD, 0);
	emit(LOAD, 4);
	emit(LT, 0);
	j_out = emit(JZ, 0); /* while (n < limit) */
	emit(PUSH, 2);
	emit(STORE, 1); /* d = 2 */
	inner = emit(LOAD, 1);
	emit(DUP, 0);
	emit(MUL, 0);
	emit(LOAD, 0);
	emit(PUSH, 1);
	emit(ADD, 0);
	emit(LT, 0);
	j_prime = emit(JZ, 0); /* if (!(d*d < n+1)) prime */
	emit(LOAD, 0);
	emit(LOAD, 1);
	emit(MOD, 0);
	j_np = emit(JZ, 0); /* if (n % d == 0) not prime */
	emit(LOAD, 1);
	emit(PUSH, 1);
	emit(ADD, 0);
	emit(STORE, 1); /* d++ */
	emit(JMP, inner);
	prime = emit(LOAD, 2);
	emit(PUSH, 1);
	emit(ADD, 0);
	emit(STORE, 2); /* count++ */
	emit(LOAD, 3);
	emit(PUSH, 31);
	emit(MUL, 0);
	emit(LOAD, 0);
	emit(ADD, 0);
	emit(PUSH, 1000000007);
	emit(MOD, 0);
	emit(STORE, 3); /* sum = (sum * 31 + n) % p */
	notprime = emit(LOAD, 0);
	emit(PUSH, 1);
	emit(ADD, 0);
	emit(STORE, 0); /* n++ */
	emit(JMP, loop);
	out = emit(HALT, 0);
	code[j_out].arg = out;
	code[j_prime].arg = prime;
	code[j_np].arg = notprime;
}

static void run(int64_t *vars)
{
	int64_t stack[16];
	int sp = 0, pc = 0;

	for (;;) {
		const struct insn *in = &code[pc++];

		switch (in->op) {
		case PUSH: stack[sp++] = in->arg; break;
		case LOAD: stack[sp++] = vars[in->arg]; break;
		case STORE: vars[in->arg] = stack[--sp]; break;
		case ADD: sp--; stack[sp - 1] += stack[sp]; break;
		case SUB: sp--; stack[sp - 1] -= stack[sp]; break;
		case MUL: sp--; stack[sp - 1] *= stack[sp]; break;
		case MOD: sp--; stack[sp - 1] %= stack[sp]; break;
		case LT: sp--; stack[sp - 1] = stack[sp - 1] < stack[sp]; break;
		case JZ: if (stack[--sp] == 0) pc = (int)in->arg; break;
		case JMP: pc = (int)in->arg; break;
		case DUP: stack[sp] = stack[sp - 1]; sp++; break;
		case POP: sp--; break;
		case HALT: return;
		}
	}
}

int main(int argc, char **argv)
{
	int64_t vars[5] = { 0, 0, 0, 0, argc > 1 ? atol(argv[1]) : 60000 };

	assemble();
	run(vars);
	printf("interp %lld %lld\n", (long long)vars[2], (long long)vars[3]);
	return 0;
}
