# kelpie-cluster. The targets mirror what a user runs:
#   make run    3-server cluster on 127.0.0.11-13 (Ctrl-C stops it)
#   make test   vet, unit tests with -race, then the multi-process integration suite

GO      ?= go
BIN     ?= bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

# Unit packages: everything except the integration suite (evaluated lazily so
# that targets that do not need it never run go list).
UNIT_PKGS = $(shell $(GO) list ./... | grep -v -e '/integration$$' -e '/integration/')

.PHONY: all build run test unit fuzz integration bench fmt vet clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/kelpied ./cmd/kelpied
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/kelpiectl ./cmd/kelpiectl

run:
	VERSION=$(VERSION) scripts/run-local.sh

# The integration suite builds the binaries it runs itself (TestMain).
test: vet unit fuzz integration

unit:
	$(GO) test -race -count=1 -timeout 10m $(UNIT_PKGS)

# Every fuzz target for a bounded time (FUZZTIME each; longer runs:
# make fuzz FUZZTIME=10m). Targets are package:Name.
FUZZTIME ?= 15s
FUZZ_TARGETS = ./consensus:FuzzDecodeCommand ./consensus:FuzzApply ./consensus:FuzzRestore \
	./placement:FuzzTableUnmarshal ./migration:FuzzReadFrame .:FuzzHTTPHandlers

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t#*:}; \
		echo "fuzz $$pkg $$name for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$$name$$" -fuzztime=$(FUZZTIME) $$pkg; \
	done

# The fault-injection scenarios (integration/nemesis_test.go) run with fixed
# seeds. make integration SEED=… overrides them; DURATION=… (e.g. 5m) runs only
# TestNemesis_MixedRandom, with a random schedule that long drawn from SEED
# (and no test timeout unless INTEGRATION_TIMEOUT is given).
SEED     ?=
DURATION ?=
INTEGRATION_TIMEOUT ?= $(if $(DURATION),0,25m)
INTEGRATION_RUN     ?= $(if $(DURATION),^TestNemesis_MixedRandom$$,.)

integration:
	KELPIE_SEED=$(SEED) KELPIE_DURATION=$(DURATION) $(GO) test -count=1 -timeout $(INTEGRATION_TIMEOUT) -run '$(INTEGRATION_RUN)' ./integration/...

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./...

fmt:
	gofmt -l -w .

vet:
	$(GO) vet ./...

clean:
	rm -rf $(BIN) tmp

# Measured benchmark runs (issue 9); records go to $(KELPIE_BENCH_OUT) when set.
.PHONY: bench-place bench-http
bench-place:
	KELPIE_BENCH=1 KELPIE_BENCH_OUT=$(KELPIE_BENCH_OUT) $(GO) test -count=1 -timeout 30m -v -run '^TestBench(Placement|Lookup|Migration)$$' .

bench-http:
	KELPIE_BENCH_OUT=$(KELPIE_BENCH_OUT) scripts/bench-http.sh
