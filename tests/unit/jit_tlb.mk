# test_rv64_jit_tlb counts the loads and stores that leave the translated fast path by wrapping
# the slow-path entry points of mmu.c (ld --wrap; the JIT calls them by address from jit.o).
$(BUILD)/tests/unit/test_rv64_jit_tlb: LDFLAGS += -Wl,--wrap=rv64_mmu_load_slow -Wl,--wrap=rv64_mmu_store_slow
