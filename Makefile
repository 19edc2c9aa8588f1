# Connection Vault — build, run and test from a fresh Debian machine with Swift installed.
#   make run    install system packages if missing, build, start `connvaultd --dev` in the foreground
#   make test   install, build, run every test (what CI runs)
#   make bench  release build, token-path benchmark beside nginx and a bare SwiftNIO server
#   make fuzz   long randomized bad-input run against a live daemon (make test runs a short fixed-seed profile)
#   make soak   long kill -9 / restart durability run

SWIFT ?= swift
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := libsodium-dev libsqlite3-dev pkg-config util-linux
BENCH_PACKAGES := nginx-light
BIN := $(CURDIR)/.build/debug

.PHONY: deps bench-deps build run test bench fuzz soak lint clean

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

bench-deps: deps
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BENCH_PACKAGES); }

build: deps
	$(SWIFT) build

run: build
	$(BIN)/connvaultd --dev

# Suites that block threads while they wait (blocking socket clients, child processes) run in their own
# invocations, so that they cannot starve Swift's cooperative pool (two threads on a two-core machine) under the
# timing-sensitive async suites. Every test target not named below runs in the first invocation.
BLOCKING_SUITES := VaultClientTests VaultServerTests
TEST_ENV := CONNVAULT_BIN_DIR=$(BIN)

test: deps
	$(SWIFT) build --build-tests
	$(TEST_ENV) $(SWIFT) test --skip-build --skip 'VaultClientTests|VaultServerTests|EndToEndTests'
	$(foreach suite,$(BLOCKING_SUITES),$(TEST_ENV) $(SWIFT) test --skip-build --filter $(suite) &&) true
	$(TEST_ENV) $(SWIFT) test --skip-build --filter EndToEndTests --no-parallel

bench: bench-deps
	$(SWIFT) build -c release --product connvaultd
	$(SWIFT) build -c release --product connvaultctl
	$(SWIFT) build -c release --product bench-nio-server
	$(SWIFT) build -c release --product connvault-bench
	$(CURDIR)/.build/release/connvault-bench --bin-dir $(CURDIR)/.build/release $(BENCH_ARGS)

fuzz: deps
	$(SWIFT) build --build-tests
	CONNVAULT_BIN_DIR=$(BIN) CONNVAULT_FUZZ_ITERATIONS=20000 $(SWIFT) test --skip-build --filter Fuzz

soak: deps
	$(SWIFT) build --build-tests
	CONNVAULT_BIN_DIR=$(BIN) CONNVAULT_SOAK_ROUNDS=200 $(SWIFT) test --skip-build --filter Soak

lint:
	$(SWIFT) format lint --strict --recursive Sources Tests Package.swift

clean:
	rm -rf .build .connvault
