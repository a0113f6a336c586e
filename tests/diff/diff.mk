# Differential CPU test (tests/diff/test_diff.py): the kumo user-mode runner. The random test
# programs themselves are generated and assembled by the test script, which picks the seeds.
$(BUILD)/tests/diff/kumo-user: $(BUILD)/tests/diff/kumo_user.o $(LIBKUMO)
	$(CC) $(LDFLAGS) -o $@ $< $(LIBKUMO) $(LDLIBS)

-include $(BUILD)/tests/diff/kumo_user.d

test-programs: $(BUILD)/tests/diff/kumo-user
