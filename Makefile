# Slipway: continuous delivery for Docker fleets.
# `make run` starts the guided demo; `make test` runs every test.

SHELL := /bin/bash
BIN := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)
GO ?= go
MODULES := proto platform services/coordinator services/nodeagent services/edge cli deployments/demo deployments/guide faults
COMMANDS := \
	services/coordinator/cmd/slipway-coordinator \
	services/nodeagent/cmd/slipway-nodeagent \
	services/edge/cmd/slipway-edge \
	cli/cmd/slipctl
# Build stamp: every binary prints it with -version (slipctl: version).
# From a fresh clone these come from git; without git, "dev" and "unknown".
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X slipway.dev/platform/buildinfo.Version=$(VERSION) -X slipway.dev/platform/buildinfo.Commit=$(COMMIT)
DIST := $(CURDIR)/dist
DIST_PLATFORMS := linux/amd64 linux/arm64
# Tests of packages in parallel; each test starts what it needs on free ports.
TEST_FLAGS ?= -race -count=1 -timeout 25m
# Test artifacts (the dashboard's browser screenshots), one directory per test.
ARTIFACTS ?= $(CURDIR)/.run/test-artifacts

.PHONY: help tools proto proto-check lint breaking fmt-check vet build dist images check test faults bench bench-fleet run compose-up compose-down clean

help: ## Show the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

tools: ## Install pinned tools into ./bin (buf, protoc plugins, grpcurl, consul) and nginx/wrk/chromium from Debian.
	@scripts/tools.sh

proto: ## Regenerate the Go code from proto/ (committed).
	@test -x $(BIN)/buf || scripts/tools.sh
	$(BIN)/buf generate

proto-check: proto ## Fail if the committed generated code is stale.
	@git diff --exit-code --stat -- proto || { echo "generated code is stale: run 'make proto' and commit" >&2; exit 1; }
	@test -z "$$(git status --porcelain -- proto)" || { git status --porcelain -- proto; echo "generated code is stale: run 'make proto' and commit" >&2; exit 1; }

lint: ## buf lint (STANDARD).
	@test -x $(BIN)/buf || scripts/tools.sh
	$(BIN)/buf lint

breaking: ## buf breaking (FILE) against the previous main (BREAKING_AGAINST=<ref> to choose, =none to skip).
	@test -x $(BIN)/buf || scripts/tools.sh
	@BUF=$(BIN)/buf scripts/breaking.sh

fmt-check: ## Fail if any Go file is not gofmt-clean.
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); test -z "$$out" || { echo "gofmt needed:"; echo "$$out"; exit 1; }

vet: ## go vet every module.
	@for m in $(MODULES); do (cd $$m && $(GO) vet ./...) || exit 1; done

build: ## Build the binaries into ./bin, stamped with the version and commit (-version).
	@mkdir -p $(BIN)
	@for c in $(COMMANDS); do $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./$$c || exit 1; done

dist: ## Release artifacts: static, versioned binaries for linux/amd64 and arm64 in ./dist, with SHA256SUMS.
	@rm -rf $(DIST) && mkdir -p $(DIST)
	@for p in $(DIST_PLATFORMS); do os=$${p%/*}; arch=$${p#*/}; \
		for c in $(COMMANDS); do name=$$(basename $$c); \
			echo "  $(DIST)/$$name-$(VERSION)-$$os-$$arch"; \
			CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '-s -w $(LDFLAGS)' \
				-o $(DIST)/$$name-$(VERSION)-$$os-$$arch ./$$c || exit 1; \
		done; \
	done
	@cd $(DIST) && sha256sum $$(ls | grep -v SHA256SUMS) > SHA256SUMS && echo "  $(DIST)/SHA256SUMS"

images: build ## Build the demo images slipway/demo:v1..v5 FROM scratch.
	@scripts/demo-images.sh

check: fmt-check vet lint breaking ## Fast inner loop: gofmt, vet, buf lint and breaking, unit tests (-short).
	@for m in $(MODULES); do (cd $$m && $(GO) test -short -count=1 ./...) || exit 1; done

test: tools proto-check fmt-check vet lint breaking build ## Every test, with the race detector, against real Consul, Docker, nginx and raft.
	@set -o pipefail; fail=0; for m in $(MODULES); do \
		echo "==> go test $$m"; \
		(cd $$m && SLIPWAY_BIN=$(BIN) SLIPWAY_ARTIFACTS=$(ARTIFACTS) $(GO) test $(TEST_FLAGS) ./...) || fail=1; \
	done; echo "test artifacts (screenshots) in $(ARTIFACTS)"; exit $$fail

faults: tools build ## The fault suite's long profile: FAULTS_RUNS (100) random-seeded runs of every scenario (FAULTS_SEED, FAULTS_SCENARIOS), then the table.
	cd faults && SLIPWAY_BIN=$(BIN) FAULTS_PROFILE=long $(GO) test -count=1 -timeout 0 -run TestFaults -v .

bench: build ## Benchmarks against peers measured in the same run, printed as tables.
	@SLIPWAY_TOOLS_BENCH=1 scripts/tools.sh
	@scripts/bench.sh

# bench-fleet: one row per FLEET_NODES entry; FLEET_ARGS are extra
# slipway-fleetsim flags (e.g. -flapping 0.1 -stuck 1).
FLEET_NODES ?= 1000
FLEET_ARGS ?=
bench-fleet: build ## Fleet scale: N simulated node agents (real API, mTLS, Consul) against 3 real coordinators; one table row per FLEET_NODES (1000).
	@test -x $(BIN)/consul || scripts/tools.sh
	@$(GO) build -o $(BIN)/ ./services/coordinator/cmd/slipway-fleetsim
	@header=true; for n in $(FLEET_NODES); do \
		$(BIN)/slipway-fleetsim -bin $(BIN) -nodes $$n -header=$$header $(FLEET_ARGS) || exit 1; header=false; \
	done

run: tools build ## The guided demo on the embedded default stack (ONCE=1 exits after it).
	@scripts/run.sh

compose-up: build ## Build the FROM-scratch images locally and start the compose cluster (3 coordinators, Consul, 2 agents, edge).
	@scripts/compose.sh up

compose-down: ## Stop the compose cluster, remove its volumes and the demo containers its agents started.
	@scripts/compose.sh down

clean: ## Remove build output and demo state.
	rm -rf $(BIN) $(DIST) .run
