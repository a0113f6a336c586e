# test_rv64_jit_tlbgroup counts the loads and stores that leave the translated fast path, and
# poisons rcx and rdx on the store slow path's return, by wrapping mmu.c's slow-path entry
# points (ld --wrap; the JIT calls them by address from jit.o).
$(BUILD)/tests/unit/test_rv64_jit_tlbgroup: LDFLAGS += -Wl,--wrap=rv64_mmu_load_slow -Wl,--wrap=rv64_mmu_store_slow
