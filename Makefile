# Tern build. Plain GNU make + pkg-config (see README "Design").
#
#   make            release build in build/
#   make run        install missing Debian packages, build, first-run setup, start
#   make test       install test dependencies, ASan+UBSan build in build-asan/, run all tests
#   make fuzz       build libFuzzer targets in build-fuzz/ and run each briefly
#   make format     clang-format every C file in place
#   make bench      install Prosody/ejabberd, benchmark Tern side by side (bench/README.md)

PKGS := libuv expat openssl sqlite3 libidn2 icu-uc
CC ?= cc
ifeq ($(CC),cc)
CC := gcc
endif

BUILD ?= build
SAN ?=
OPT ?= -O2 -g

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wno-unused-parameter -Wformat=2 -Wvla
CPPFLAGS_ALL := -D_GNU_SOURCE -Isrc -Iinclude $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
CFLAGS_ALL := -std=c17 $(OPT) $(WARN) -fno-strict-aliasing $(CFLAGS)
LDLIBS_ALL := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lhttp_parser -lwslay -lpthread -lm

ifneq ($(SAN),)
CFLAGS_ALL += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS_ALL += -fsanitize=address,undefined
endif

LIB_SRC := $(sort $(filter-out src/main.c src/ternctl.c,$(wildcard src/*.c src/*/*.c src/*/*/*.c)))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all run test unit e2e fuzz format format-check deps deps-test clean conformance bench
all: $(BUILD)/tern $(BUILD)/ternctl

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(BUILD)/libtern.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/tern: $(BUILD)/src/main.o $(BUILD)/libtern.a
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/ternctl: $(BUILD)/src/ternctl.o $(BUILD)/libtern.a
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(BUILD)/libtern.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL) -lcmocka

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

deps:
	@scripts/deps.sh run

deps-test:
	@scripts/deps.sh test

run: deps
	@$(MAKE) --no-print-directory all
	@scripts/run.sh $(BUILD)

# The whole suite runs against the sanitizer build.
test: deps-test
	@$(MAKE) --no-print-directory format-check
	@$(MAKE) --no-print-directory BUILD=build-asan SAN=1 OPT="-O1 -g" all $(UNIT_SRC:tests/unit/%.c=build-asan/tests/%)
	@scripts/test.sh build-asan

unit:
	@$(MAKE) --no-print-directory BUILD=build-asan SAN=1 OPT="-O1 -g" $(UNIT_SRC:tests/unit/%.c=build-asan/tests/%)
	@scripts/test.sh build-asan unit

fuzz:
	@scripts/fuzz.sh

format:
	clang-format -i $$(git ls-files --cached --others --exclude-standard '*.c' '*.h')

format-check:
	@clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h') && echo "format: clean"

conformance: all
	@scripts/conformance.sh $(BUILD)

# Side by side with Prosody and ejabberd (bench/README.md). BENCH_ARGS is
# passed to bench/run, e.g. make bench BENCH_ARGS="--quick --servers tern".
BENCH_ARGS ?=
bench:
	@bench/run suite $(BENCH_ARGS)

clean:
	rm -rf build build-asan build-fuzz
