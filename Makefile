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

.PHONY: all build run test unit fuzz integration bench bench-place bench-http bench-scale bench-processes fmt vet clean

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

# Every fuzz target for a bounded number of executions (package:Name:budget).
# A count, not a duration: with a duration -fuzztime, Go 1.26's fuzz
# coordinator can report a spurious "context deadline exceeded" failure at the
# deadline on a loaded machine (golang/go#75804, fixed in Go 1.27); a count has
# no deadline to race. FUZZTIME overrides every budget (make fuzz FUZZTIME=10m
# for a long exploratory run). The HTTP handler target is ~10x slower per exec.
FUZZTIME ?=
FUZZ_TARGETS = ./consensus:FuzzDecodeCommand:60000x ./consensus:FuzzApply:60000x \
	./consensus:FuzzRestore:60000x ./placement:FuzzTableUnmarshal:60000x \
	./migration:FuzzReadFrame:60000x .:FuzzHTTPHandlers:8000x

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; budget=$${rest#*:}; \
		budget=$${FUZZTIME:-$$budget}; \
		echo "fuzz $$pkg $$name for $$budget"; \
		$(GO) test -run='^$$' -fuzz="^$$name$$" -fuzztime=$$budget $$pkg; \
	done

# The fault-injection scenarios (integration/nemesis_test.go) run with fixed
# seeds. make integration SEED=… overrides them; DURATION=… (e.g. 5m) runs only
# TestNemesis_MixedRandom, with a random schedule that long drawn from SEED
# (and no test timeout unless INTEGRATION_TIMEOUT is given).
SEED     ?=
DURATION ?=
INTEGRATION_TIMEOUT ?= $(if $(DURATION),0,25m)
INTEGRATION_RUN     ?= $(if $(DURATION),^TestNemesis_MixedRandom$$,.)

# Each scenario's outcome and time is printed at the end (go test shows
# passing tests' logs only with -v).
NEMESIS_TIMES = $(CURDIR)/tmp/nemesis-times.txt

integration:
	@mkdir -p $(dir $(NEMESIS_TIMES)) && rm -f $(NEMESIS_TIMES)
	@st=0; KELPIE_NEMESIS_TIMES=$(NEMESIS_TIMES) KELPIE_SEED=$(SEED) KELPIE_DURATION=$(DURATION) \
		$(GO) test -count=1 -timeout $(INTEGRATION_TIMEOUT) -run '$(INTEGRATION_RUN)' ./integration/... || st=$$?; \
	if [ -f $(NEMESIS_TIMES) ]; then echo "fault-injection scenarios (outcome, time):"; sort $(NEMESIS_TIMES); fi; \
	exit $$st

# The benchmark suite (see BENCHMARKS.md): every part appends its figures to
# one JSON-lines file ($(BENCH_RAW)), then internal/benchreport prints the
# table and rewrites BENCHMARKS.md and BENCHMARKS.json. The process-level
# parts need root (private network namespaces, nftables). Knobs:
# BENCH_TRIALS (detection/failover trials), BENCH_SIZES (detection cluster
# sizes), BENCH_FP_DURATION (the loss/pause false-positive run); BENCH_PARTS
# with BENCH_BASE=BENCHMARKS.json re-runs some parts and carries the other
# figures over from the earlier report (marked as such in it);
# BENCH_PROC_RUN picks the process-level tests (e.g. TestFalsePositives).
BENCH_RAW         ?= $(CURDIR)/tmp/bench.jsonl
BENCH_TRIALS      ?= 20
BENCH_SIZES       ?= 5,50
BENCH_FP_DURATION ?= 10m
BENCH_BASE        ?=
BENCH_PROC_RUN    ?= TestDetection|TestFailover|TestFalsePositives
BENCH_ENV = KELPIE_BENCH_OUT=$(BENCH_RAW)

# Every part runs even if an earlier one fails (a part fails when it cannot
# measure, e.g. a fleet that never converges; a missed target is a record,
# not a failure); the report is written from whatever was measured, and the
# target fails at the end if any part did.
BENCH_PARTS ?= bench-place bench-http bench-scale bench-processes

bench:
	@mkdir -p $(dir $(BENCH_RAW)) && rm -f $(BENCH_RAW)
	@failed=""; for p in $(BENCH_PARTS); do \
		$(MAKE) --no-print-directory $$p || failed="$$failed $$p"; \
	done; \
	$(GO) run ./internal/benchreport -in $(BENCH_RAW) -md BENCHMARKS.md -json BENCHMARKS.json $(if $(BENCH_BASE),-base $(BENCH_BASE)) \
		-cmd "make bench BENCH_TRIALS=$(BENCH_TRIALS) BENCH_SIZES=$(BENCH_SIZES) BENCH_FP_DURATION=$(BENCH_FP_DURATION)$(if $(BENCH_BASE), BENCH_PARTS='$(BENCH_PARTS)' BENCH_PROC_RUN='$(BENCH_PROC_RUN)' BENCH_BASE=$(BENCH_BASE))$(if $(KELPIE_BENCH_PROFILES), KELPIE_BENCH_PROFILES=$(KELPIE_BENCH_PROFILES))" || exit 1; \
	if [ -n "$$failed" ]; then echo "bench: these parts failed:$$failed (see their output above)"; exit 1; fi

# Library Place against the raw-Raft baselines (same run), Lookup, Migration.
bench-place:
	$(BENCH_ENV) KELPIE_BENCH=1 $(GO) test -count=1 -timeout 30m -v -run '^TestBench(Placement|Lookup|Migration)$$' .

# Placement over HTTP: a load-driver process against 3 kelpied voters.
bench-http:
	$(BENCH_ENV) scripts/bench-http.sh

# A 1,000-member in-process fleet: join storm, epochs, detection at N=1,000;
# then the same at BENCH_SCALE_SMALL members, for the trend.
BENCH_SCALE_SMALL ?= 250
bench-scale:
	@st=0; \
	$(BENCH_ENV) KELPIE_BENCH_SCALE=1 $(GO) test -count=1 -timeout 30m -v -run '^TestScaleJoinStorm1000$$' . || st=1; \
	$(BENCH_ENV) KELPIE_BENCH_SCALE=1 KELPIE_BENCH_SCALE_N=$(BENCH_SCALE_SMALL) $(GO) test -count=1 -timeout 30m -v -run '^TestScaleJoinStorm1000$$' . || st=1; \
	exit $$st

# Failure detection, actor failover and false positives on kelpied processes.
bench-processes:
	$(BENCH_ENV) KELPIE_BENCH=1 KELPIE_BENCH_TRIALS=$(BENCH_TRIALS) KELPIE_BENCH_SIZES=$(BENCH_SIZES) \
		KELPIE_BENCH_FP_DURATION=$(BENCH_FP_DURATION) \
		$(GO) test -count=1 -timeout 120m -v -run '$(BENCH_PROC_RUN)' ./integration/bench

fmt:
	gofmt -l -w .

vet:
	$(GO) vet ./...

clean:
	rm -rf $(BIN) tmp
