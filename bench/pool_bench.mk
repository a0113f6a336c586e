# The pool's placement benchmark (bench/pool_bench.c); bench/run.sh runs it.
$(BUILD)/bench/pool_bench: bench/pool_bench.c $(LIBKUMO)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIBKUMO) $(LDLIBS)
