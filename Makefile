# Connection Vault — build, run and test from a fresh Debian machine with Swift installed.
#   make run    install system packages if missing, build, start `connvaultd --dev` in the foreground
#   make test   install, build, run every test (what CI runs)
#   make bench  release build, token-path benchmark beside nginx and a bare SwiftNIO server, and the proxy route beside
#               nginx proxy_pass (BENCH_ARGS="--proxy-only" for that alone)
#   make fuzz   long randomized bad-input run against a live daemon, then every libFuzzer target for FUZZ_SECONDS
#               (make test runs a short fixed-seed profile of both)
#   make soak   long kill -9 / restart durability run, then the whole suite under AddressSanitizer and
#               ThreadSanitizer (Tests/Scripts/sanitize.sh)
#   make scale  release build, 100,000 connections and a million audit rows: start-up, memory, list, show, edit,
#               rotate-key, audit --verify, a million cached token requests (SCALE_ARGS, e.g. --seed-cache DIR)
#   make install / make uninstall   binaries, units, sysusers, tmpfiles, man pages, completions (PREFIX, DESTDIR)
#   make deb    connvault_<version>_<arch>.deb: release binaries with the Swift runtime linked in statically

SWIFT ?= swift
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := libsodium-dev libsqlite3-dev pkg-config util-linux systemd systemd-container curl dpkg-dev lintian \
	libstdc++-12-dev
BENCH_PACKAGES := nginx-light
# make fuzz's schemathesis run (Tests/Scripts/schemathesis.sh): a virtual environment, and socat to bridge the sockets.
FUZZ_PACKAGES := python3-venv socat
BIN := $(CURDIR)/.build/debug

.PHONY: deps bench-deps build run test bench scale fuzz soak lint clean man completions install uninstall release deb \
	test-systemd

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

# One `swift test` run for every suite. It used to take four, because one run hung: a `connvaultd --dev` started by
# one test through Foundation's Process inherited the write end of another test's output pipe, so that test never saw
# end-of-file, and Foundation's shared child reaper, blocked in wait4 on systemd-socket-activate, held up every
# waitUntilExit. Tests now start children through TestSupport's ChildProcess (posix_spawn, close-on-exec descriptors,
# closefrom above the passed ones, a reaper per child, a deadline on every wait), and the suites that block threads
# run off Swift's cooperative pool (.offCooperativePool), so they starve neither it nor each other. Suites that must
# not run beside their own tests say so with .serialized. The systemd suite boots a container (systemd-nspawn) and
# installs the Debian package into it, so the package is built first (release binaries in .build-release).
# At most TEST_WIDTH tests at a time (Swift Testing's --experimental-maximum-parallelization-width): unbounded, the
# run starts some 80 suites at once on two cores, and tests that measure elapsed time fail under that self-made load
# (a refused connection took 8 s where 0.9 s is allowed); 6 costs no wall time (35 s for the run either way).
TEST_ENV := CONNVAULT_BIN_DIR=$(BIN)
TEST_WIDTH ?= 6

test: deps
	$(SWIFT) build --build-tests
	$(MAKE) deb
	$(MAKE) fuzz-build
	Fuzz/run.sh --short
	$(TEST_ENV) CONNVAULT_DEB=$(CURDIR)/$(DEB) $(SWIFT) test --skip-build \
		--experimental-maximum-parallelization-width $(TEST_WIDTH)

# The service under a real systemd (built binaries, then the package); skipped where no container can boot, unless
# CONNVAULT_REQUIRE_SYSTEMD=1.
test-systemd:
	$(TEST_ENV) CONNVAULT_DEB=$(wildcard $(CURDIR)/$(DEB)) $(SWIFT) test --skip-build --filter SystemdTests --no-parallel

bench: bench-deps
	$(SWIFT) build -c release --product connvaultd
	$(SWIFT) build -c release --product connvaultctl
	$(SWIFT) build -c release --product bench-nio-server
	$(SWIFT) build -c release --product connvault-bench
	$(CURDIR)/.build/release/connvault-bench --bin-dir $(CURDIR)/.build/release $(BENCH_ARGS)

scale: deps
	$(SWIFT) build -c release --product connvaultd
	$(SWIFT) build -c release --product connvaultctl
	$(SWIFT) build -c release --product connvault-scale
	$(CURDIR)/.build/release/connvault-scale --bin-dir $(CURDIR)/.build/release $(SCALE_ARGS)

fuzz: deps
	$(SWIFT) build --build-tests
	CONNVAULT_BIN_DIR=$(BIN) CONNVAULT_FUZZ_ITERATIONS=20000 $(SWIFT) test --skip-build --filter Fuzz
	$(MAKE) --no-print-directory deps APT_PACKAGES="$(FUZZ_PACKAGES)"
	CONNVAULT_BIN_DIR=$(BIN) SWIFT=$(SWIFT) Tests/Scripts/schemathesis.sh
	$(MAKE) fuzz-build
	Fuzz/run.sh $(FUZZ_SECONDS)

# The libFuzzer targets (Fuzz/, docs/SECURITY.md "Fuzzing"): one executable holding all of them, instrumented for
# coverage and AddressSanitizer, in a scratch path of its own so that the debug build stays untouched. make fuzz runs
# each for FUZZ_SECONDS; make test runs each briefly with a fixed seed.
FUZZ_SECONDS ?= 120
FUZZ_FLAGS := --scratch-path .build-fuzz -c debug -Xswiftc -sanitize=fuzzer,address -Xswiftc -DCONNVAULT_LIBFUZZER
fuzz-build: deps
	$(SWIFT) build $(FUZZ_FLAGS) --product connvault-fuzz

soak: deps
	$(SWIFT) build --build-tests
	CONNVAULT_BIN_DIR=$(BIN) CONNVAULT_SOAK_ROUNDS=200 $(SWIFT) test --skip-build --filter Soak
	SWIFT=$(SWIFT) Tests/Scripts/sanitize.sh address
	SWIFT=$(SWIFT) Tests/Scripts/sanitize.sh thread

# MARK: installing and packaging

VERSION ?= 0.1.0
ARCH ?= $(shell dpkg --print-architecture 2>/dev/null || uname -m)
DEB := connvault_$(VERSION)_$(ARCH).deb
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/vendor-completions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
RELEASE_BIN := $(CURDIR)/.build-release/release
# The binaries install takes: the release build (built first) unless told otherwise, e.g. INSTALL_BIN=$(BIN) for the
# debug build. SKIP_BUILD=1: install what is there.
INSTALL_BIN ?= $(RELEASE_BIN)
GENERATED := $(CURDIR)/.build/generated
INSTALL_BUILD := $(if $(SKIP_BUILD),,$(if $(filter $(RELEASE_BIN),$(INSTALL_BIN)),release,build))

# Man pages from the argument parsers (swift-argument-parser's generate-manual tool, built once by its plugin, which
# names the executable generate-manual-tool in a fresh build; a tree built otherwise may hold generate-manual).
man:
	@find_tool() { find .build \( -name generate-manual-tool -o -name generate-manual \) -type f -perm -u+x \
		2>/dev/null | sort -r | head -1; }; \
	tool=$$(find_tool); \
	if [ -z "$$tool" ]; then \
		$(SWIFT) package plugin generate-manual --configuration debug >/dev/null && tool=$$(find_tool); \
	fi; \
	[ -n "$$tool" ] || { echo "generate-manual was not built" >&2; exit 1; }; \
	mkdir -p $(GENERATED)/man && \
	$$tool $(INSTALL_BIN)/connvaultctl --section 1 --authors 'Connection Vault authors' \
		--output-directory $(GENERATED)/man && \
	$$tool $(INSTALL_BIN)/connvaultd --section 8 --authors 'Connection Vault authors' \
		--output-directory $(GENERATED)/man && \
	sed -i '/^[[:space:]]*$$/d' $(GENERATED)/man/connvaultctl.1 $(GENERATED)/man/connvaultd.8

completions:
	mkdir -p $(GENERATED)/completions
	$(INSTALL_BIN)/connvaultctl --generate-completion-script bash > $(GENERATED)/completions/connvaultctl.bash
	$(INSTALL_BIN)/connvaultctl --generate-completion-script zsh > $(GENERATED)/completions/_connvaultctl
	$(INSTALL_BIN)/connvaultctl --generate-completion-script fish > $(GENERATED)/completions/connvaultctl.fish

install: $(INSTALL_BUILD)
	$(MAKE) --no-print-directory man completions INSTALL_BIN=$(INSTALL_BIN)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) \
		$(DESTDIR)$(FISHCOMPDIR)
	install -m 0755 $(INSTALL_BIN)/connvaultd $(INSTALL_BIN)/connvaultctl $(DESTDIR)$(BINDIR)/
	sed 's#/usr/bin/connvaultd#$(BINDIR)/connvaultd#' systemd/connvaultd.service > $(DESTDIR)$(UNITDIR)/connvaultd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/connvaultd.service
	install -m 0644 systemd/connvaultd.socket systemd/connvaultd-admin.socket $(DESTDIR)$(UNITDIR)/
	install -m 0644 systemd/connvault.sysusers $(DESTDIR)$(SYSUSERSDIR)/connvault.conf
	install -m 0644 systemd/connvault.tmpfiles $(DESTDIR)$(TMPFILESDIR)/connvault.conf
	install -m 0644 $(GENERATED)/man/connvaultctl.1 $(DESTDIR)$(MANDIR)/man1/connvaultctl.1
	install -m 0644 $(GENERATED)/man/connvaultd.8 $(DESTDIR)$(MANDIR)/man8/connvaultd.8
	install -m 0644 $(GENERATED)/completions/connvaultctl.bash $(DESTDIR)$(BASHCOMPDIR)/connvaultctl
	install -m 0644 $(GENERATED)/completions/_connvaultctl $(DESTDIR)$(ZSHCOMPDIR)/_connvaultctl
	install -m 0644 $(GENERATED)/completions/connvaultctl.fish $(DESTDIR)$(FISHCOMPDIR)/connvaultctl.fish
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
		systemd-sysusers connvault.conf && systemd-tmpfiles --create connvault.conf && systemctl daemon-reload; \
	fi

# Removes what install installed; the state directory, the key credential and the user stay (they hold data).
uninstall:
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
		systemctl disable --now connvaultd.socket connvaultd-admin.socket connvaultd.service 2>/dev/null || true; \
	fi
	rm -f $(DESTDIR)$(BINDIR)/connvaultd $(DESTDIR)$(BINDIR)/connvaultctl \
		$(DESTDIR)$(UNITDIR)/connvaultd.service $(DESTDIR)$(UNITDIR)/connvaultd.socket \
		$(DESTDIR)$(UNITDIR)/connvaultd-admin.socket \
		$(DESTDIR)$(SYSUSERSDIR)/connvault.conf $(DESTDIR)$(TMPFILESDIR)/connvault.conf \
		$(DESTDIR)$(MANDIR)/man1/connvaultctl.1 $(DESTDIR)$(MANDIR)/man8/connvaultd.8 \
		$(DESTDIR)$(BASHCOMPDIR)/connvaultctl $(DESTDIR)$(ZSHCOMPDIR)/_connvaultctl \
		$(DESTDIR)$(FISHCOMPDIR)/connvaultctl.fish
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

# Release binaries with the Swift runtime linked statically, in a scratch path of their own (the debug build's lock
# and artefacts stay untouched). The static runtime asks for -lstdc++; a search directory holding only libstdc++.a
# makes that the static library, so the package needs no libstdc++6 (libgcc_s comes with libc6). The -lz a dependency
# asks for still resolves to the system's libz.so.1 (zlib1g, which dpkg itself pre-depends on). No RUNPATH: nothing
# is loaded from next to the binary.
STATIC_LIBS := $(CURDIR)/.build-release/static-libs
RELEASE_FLAGS := -c release --static-swift-stdlib --disable-local-rpath --scratch-path .build-release \
	-Xlinker -L$(STATIC_LIBS)
release: deps
	mkdir -p $(STATIC_LIBS)
	ln -sf "$$(c++ -print-file-name=libstdc++.a)" $(STATIC_LIBS)/libstdc++.a
	$(SWIFT) build $(RELEASE_FLAGS) --product connvaultd
	$(SWIFT) build $(RELEASE_FLAGS) --product connvaultctl

deb: release
	packaging/build-deb.sh --version $(VERSION) --arch $(ARCH) --bin-dir $(RELEASE_BIN) --output $(CURDIR)/$(DEB)

lint:
	$(SWIFT) format lint --strict --recursive Sources Tests Benchmarks Fuzz Package.swift

clean:
	rm -rf .build .build-release .connvault connvault_*.deb
