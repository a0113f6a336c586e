# kumo build. `make` builds everything, `make run` boots the default guest, `make test` runs the
# whole suite, `make bench` compares kumo with QEMU. Sources are discovered: a new .c file under
# src/ joins libkumo, a new tests/unit/test_*.c becomes a cmocka test binary, and a directory may
# add rules in a *.mk fragment (tests/*/*.mk, bench/*.mk, guest/*.mk).

CC ?= gcc
BUILD ?= build
OPT ?= -O2
SAN ?=
CFLAGS ?=
override CFLAGS += -std=gnu11 $(OPT) -g -Wall -Wextra -Werror -Wno-unused-parameter \
	-fno-strict-aliasing -D_GNU_SOURCE -Iinclude -Isrc -MMD -MP $(SAN)
LDFLAGS += $(SAN)
LDLIBS += -lfdt -lpthread -lm

LIB_SRCS := $(shell find src -name '*.c' -not -path 'src/cmd/*' | sort)
CMD_SRCS := $(shell find src/cmd -name '*.c' | sort)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_HELPERS := $(filter-out tests/unit/test_%.c,$(wildcard tests/unit/*.c))

LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
CMD_OBJS := $(CMD_SRCS:%.c=$(BUILD)/%.o)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/unit/%)
UNIT_HELPER_OBJS := $(UNIT_HELPERS:%.c=$(BUILD)/%.o)

KUMO := $(BUILD)/kumo
LIBKUMO := $(BUILD)/libkumo.a

.PHONY: all deps run test unit bench image clean asan tsan format
# Keep objects of test binaries: they are not throwaway intermediates.
.SECONDARY:
all: $(KUMO) $(UNIT_BINS)

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIBKUMO): $(LIB_OBJS)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(KUMO): $(CMD_OBJS) $(LIBKUMO)
	$(CC) $(LDFLAGS) -o $@ $(CMD_OBJS) $(LIBKUMO) $(LDLIBS)

$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(UNIT_HELPER_OBJS) $(LIBKUMO)
	$(CC) $(LDFLAGS) -o $@ $< $(UNIT_HELPER_OBJS) $(LIBKUMO) $(LDLIBS) -lcmocka

# Installs the Debian packages the build and the tests need (apt-get; explains itself when not root).
deps:
	@bash scripts/install-deps.sh

# Fetches (once, cached under ~/.cache/kumo) the default Debian guest: kernel + initramfs, and
# the ext4 root disk built from the same packages (guest/rootfs.sh).
image: deps
	@bash guest/debian-image.sh
	@bash guest/rootfs.sh --quiet >/dev/null

# Ctrl-A x (exit status 4) is the normal way out of an interactive run, not a failure.
run: deps $(KUMO) image
	@$(KUMO) run --default-guest || [ $$? -eq 4 ]

test: deps
	@bash scripts/test.sh

bench: deps
	@bash bench/run.sh

asan:
	$(MAKE) BUILD=build-asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" all

# ThreadSanitizer build of the VMM (gcc cannot instrument atomic_thread_fence: -Wno-tsan). Guest
# RAM shared between vCPUs and devices shows up as races by design (virtqueues use fences).
tsan:
	$(MAKE) BUILD=build-tsan OPT=-O1 SAN="-fsanitize=thread -fno-omit-frame-pointer -Wno-tsan" build-tsan/kumo

format:
	clang-format -i $$(find src include tests -name '*.[ch]')

clean:
	rm -rf build build-asan build-*

-include $(wildcard src/*.mk src/*/*.mk tests/*/*.mk bench/*.mk guest/*.mk)
-include $(LIB_OBJS:.o=.d) $(CMD_OBJS:.o=.d) $(UNIT_BINS:=.d)

# Guest-side test programs (bare-metal guests, differential-test binaries); fragments add to it.
.PHONY: test-programs
test-programs:
