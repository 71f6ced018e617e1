# ledgergate — build, run and test. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
export CGO_ENABLED := 0
PKG := ./gateway/cmd/ledgergate
# How long each fuzz target runs inside `make test`: a number of inputs
# (about 5 s each on a 2-core VM), times FUZZ_SCALE. A count, not a
# duration: with a duration Go 1.26's fuzz coordinator can fail a run at its
# deadline with "context deadline exceeded" and no failing input
# (go.dev/issue/75804, fixed in Go 1.27); that failed CI twice here.
FUZZ_SCALE ?= 1
fuzz = $(GO) test $(1) -run '^$$' -fuzz '^$(2)$$' -fuzztime $$(( $(3) * $(FUZZ_SCALE) ))x

# Debian packages the tests drive as real peers.
TEST_DEBS := mosquitto-clients swtpm tpm2-tools openssl bind9-utils libcoap3-bin
# ... and the packaging tests (packaging/test.sh).
TEST_DEBS += lintian systemd debootstrap qemu-user-static file
# ... and the dashboard's browser tests (headless, driven by chromedp).
TEST_DEBS += chromium fonts-dejavu-core
# ... and the independent Python device (TestPythonDevice, gateway/cmd/ledgergate/testdata/pydevice).
TEST_DEBS += python3 python3-cbor2 python3-paho-mqtt python3-cryptography
# ... and the C device library (bridge/c: make c-test): mbedTLS, libsodium
# for Ed25519, cJSON and libcbor for its tests, sanitizers and libFuzzer,
# valgrind, and the Cortex-M4 cross compiler.
TEST_DEBS += gcc libmbedtls-dev libsodium-dev libcjson-dev libcbor-dev valgrind clang libclang-rt-14-dev gcc-arm-none-eabi libnewlib-arm-none-eabi
# ... and the example C device (TestLgdev, bridge/c/examples/lgdev): MQTT, CoAP with DTLS (libcoap's OpenSSL build), mbedTLS, libsodium (Ed25519).
TEST_DEBS += gcc make pkg-config libmosquitto-dev libcoap3-dev libmbedtls-dev libsodium-dev
# ... and the egress connectors' sinks (TestEgress*: a real MQTT broker and JetStream server, started by
# the tests on free ports). Debian starts and enables their services on install, and mosquitto's takes
# 127.0.0.1:1883, the dev gateway's MQTT port: `make deps` installs them with services kept from
# starting (policy-rc.d) and disables the services of the ones it installed.
TEST_DEBS += mosquitto nats-server
TEST_SERVICES := mosquitto nats-server

.PHONY: help run cluster cluster-clean build cross deb deps test test-go packaging-test fuzz-short verify bench bench-presign bench-peer sim chaos screenshots vectors clean c c-test

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

run: build ## start a single-node dev gateway (data in ./ledgergate-data, API on 127.0.0.1:8080)
	./bin/ledgergate run --dev

cluster: ## four gateways on this machine as one chain (data in ./cluster-data, APIs on 127.0.0.1:8081-8084)
	./packaging/cluster.sh

cluster-clean: ## remove ./cluster-data: the keys, genesis and ledgers of `make cluster`
	rm -rf cluster-data cluster-data.new

build: ## build bin/ledgergate for this machine
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ledgergate $(PKG)

cross: ## pure-Go builds for amd64, arm64, armv6 and armv7 into dist/
	GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/ledgergate-linux-amd64 $(PKG)
	GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/ledgergate-linux-arm64 $(PKG)
	GOOS=linux GOARCH=arm GOARM=6 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/ledgergate-linux-armv6 $(PKG)
	GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/ledgergate-linux-armv7 $(PKG)

deb: cross ## .deb packages for amd64, arm64 and armhf into dist/ (nfpm; packaging/README.md)
	VERSION='$(VERSION)' ./packaging/build-deb.sh

deps: ## install the Debian packages the tests use, when missing (needs root)
	@missing=""; for p in $(TEST_DEBS); do \
	  dpkg-query -W -f '$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  prc=/usr/sbin/policy-rc.d; own=""; \
	  if [ ! -e $$prc ]; then printf '#!/bin/sh\nexit 101\n' > $$prc && chmod 755 $$prc && own=1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; rc=$$?; \
	  if [ -n "$$own" ]; then rm -f $$prc; fi; \
	  for s in $(TEST_SERVICES); do case " $$missing " in *" $$s "*) systemctl disable --quiet $$s 2>/dev/null || true;; esac; done; \
	  exit $$rc; \
	fi

test: deps verify cross test-go packaging-test fuzz-short c-test ## everything CI runs: deps, verify, cross builds, all tests, short fuzzing, the C library

# The end-to-end package takes 5-6 minutes on a quiet machine and twice that
# on a loaded one: the timeout catches a hang, not a slow run.
test-go:
	$(GO) test -count=1 -timeout 20m ./...
	cd bridge/mochi && $(GO) vet ./... && $(GO) test -count=1 -timeout 5m ./...  # the patched broker (bridge/mochi/README.md)

packaging-test: deb ## lintian, systemd-analyze, install/upgrade/purge in a Debian chroot, arm binaries under qemu (needs root)
	VERSION='$(VERSION)' ./packaging/test.sh

# Each fuzz target of outside bytes runs briefly; crashers land in testdata/fuzz.
fuzz-short:
	$(call fuzz,./gateway/ledger,FuzzDecodeTx,50000)
	$(call fuzz,./gateway/ledger,FuzzClaimToken,20000)
	$(call fuzz,./gateway/ledger,FuzzOpenCanonical,20000)
	$(call fuzz,./gateway/ledger,FuzzRecordBody,20000)
	$(call fuzz,./gateway/ledger,FuzzDecodeBlock,30000)
	$(call fuzz,./gateway/ledger,FuzzDecodePrunedBlock,20000)
	$(call fuzz,./gateway/ledger,FuzzDecodeBase,20000)
	$(call fuzz,./gateway/ledger,FuzzDecodeReceipt,7000)
	$(call fuzz,./gateway/ledger,FuzzMembershipProof,3000)
	$(call fuzz,./gateway/state,FuzzPolicyEval,3000)
	$(call fuzz,./gateway/ledger,FuzzLogOpen,1500)
	$(call fuzz,./gateway/ledger,FuzzDecodeAnswer,4000)
	$(call fuzz,./gateway/ledger,FuzzVerifyAsStdlib,20000)
	$(call fuzz,./gateway/ledger,FuzzES256AsBigInt,5000)
	$(call fuzz,./bridge/device,FuzzOpen,10000)
	$(call fuzz,./gateway/state,FuzzRestore,20000)
	$(call fuzz,./gateway/snapshot,FuzzAccept,3000)
	$(call fuzz,./gateway/ledger,FuzzDecodeSnapshotProof,300)
	$(call fuzz,./gateway/config,FuzzParse,5000)
	$(call fuzz,./bridge/mqtt,FuzzDevicePublish,3000)
	$(call fuzz,./bridge/mqtt,FuzzSizeGuard,10000)
	$(call fuzz,./bridge/coap,FuzzCoAPMessage,1000)
	$(call fuzz,./gateway/cluster,FuzzFrame,50000)
	$(call fuzz,./tpm,FuzzNodePublic,40000)
	$(call fuzz,./gateway/pbft,FuzzStep,20000)
	$(call fuzz,./gateway/pbft,FuzzStepReconfig,10000)
	$(call fuzz,./seeds,FuzzValidate,4000)
	$(call fuzz,./gateway/api,FuzzDecodeCursor,20000)
	$(call fuzz,./gateway/daemon,FuzzRestore,2000)

verify: ## gofmt, go vet, staticcheck, go mod tidy diff
	@out=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	@# go.mod must be tidy. go.sum is not compared: tidy adds or drops the
	@# go.sum lines of modules that only our dependencies' own tests import
	@# (github.com/google/pprof for modernc.org/sqlite) depending on whether
	@# the module proxy serves them that day. A go.sum line our build needs is
	@# checked by go vet above and every go test (-mod=readonly).
	@d=$$($(GO) mod tidy -e -diff 2>/dev/null); \
	  if printf '%s\n' "$$d" | grep -q '^diff current/go.mod'; then \
	    printf '%s\n' "$$d"; echo "go.mod is not tidy: run 'go mod tidy -e'"; exit 1; fi

# How many seeds `make sim` runs through the PBFT simulator.
SEEDS ?= 100000

sim: ## long PBFT simulation: SEEDS seeded runs with faults, Byzantine replicas and membership changes, and SEEDS/5 with an add, a remove and a replace each (a failing seed replays with -seed N)
	$(GO) test ./gateway/pbft/pbfttest -run '^TestSim(Reconfig)?$$' -seeds $(SEEDS) -timeout 0 -v

# `make chaos` runs SEEDS schedules (20 unless given); FAULTS=safe keeps
# to kills and clock steps, one gateway at a time.
FAULTS ?= all
chaos: SEEDS = 20

chaos: ## chaos: SEEDS (20) random fault schedules over four real gateways under device load, about a minute each (docs/chaos.md); a failing seed replays with -seed N
	$(GO) test -count=1 $(PKG) -run '^TestChaos$$' -timeout 0 -v -args -seeds $(SEEDS) -faults $(FAULTS)

bench: bench-presign bench-peer ## benchmarks (numbers go to docs/benchmarks.md)
	$(GO) test -run '^$$' -bench . -benchtime 3x ./gateway/chain
	$(GO) test -run '^$$' -bench . ./gateway/ledger
	$(GO) test -run '^$$' -bench Policy -count 5 ./gateway/state
	$(GO) test -run '^$$' -bench . -benchtime 200x -timeout 30m ./gateway/index
	$(GO) test -run '^$$' -bench IdleSessions -benchtime 1x ./bridge/mqtt -mqtt.sessions=10000
	$(GO) test -run '^$$' -bench MQTT -benchtime 1x -timeout 15m ./bridge/sim
	$(GO) test -run '^$$' -bench Cluster -benchtime 1x -timeout 30m ./gateway/cmd/ledgergate
	$(GO) test -run '^$$' -bench Swtpm -benchtime 3s ./tpm
	$(GO) test -run '^$$' -bench . ./bridge/device
	$(GO) test -run '^$$' -bench ConfigVerify -benchtime 1x ./gateway/cmd/ledgergate
	$(GO) test -run '^$$' -bench FrontEnds -benchtime 1x ./gateway/cmd/ledgergate
	$(GO) test -run '^$$' -bench '^BenchmarkStart$$' -benchtime 1x -timeout 30m ./gateway/cmd/ledgergate

bench-presign: ## the commit path at its limit: the same pre-signed MQTT load to a dev gateway and to mosquitto, CPU per message side by side
	$(GO) test -run '^$$' -bench Presign -benchtime 1x -timeout 10m $(PKG)

# The peer `make bench-peer` measures four gateways against: CometBFT, its
# binary built from the module proxy into bin/peer (git-ignored), driven by
# the benchmark as processes through its CLI and JSON-RPC; our go.mod does
# not depend on it.
COMETBFT_VERSION := v0.38.26
COMETBFT := $(CURDIR)/bin/peer/cometbft

bench-peer: ## four gateways and CometBFT's 4-validator kvstore on loopback, the same bounded load, in one run: msgs/s, p99 and the ratio
	@$(GO) version -m $(COMETBFT) 2>/dev/null | grep -Eq '^\s+mod\s+github.com/cometbft/cometbft\s+$(COMETBFT_VERSION)\s' || \
	  { echo "building cometbft $(COMETBFT_VERSION) into bin/peer"; \
	    GOBIN=$(CURDIR)/bin/peer $(GO) install github.com/cometbft/cometbft/cmd/cometbft@$(COMETBFT_VERSION); }
	$(GO) test -run '^$$' -bench '^BenchmarkPeer$$' -benchtime 1x -timeout 15m $(PKG) -args -cometbft $(COMETBFT)

vectors: ## regenerate docs/vectors, the protocol's test vectors, from the code (review the diff)
	$(GO) test -count=1 ./bridge/device/vectors -run '^TestVectorsUpToDate$$' -update
	$(GO) test -count=1 ./bridge/device/vectors

screenshots: deps ## run the dashboard's browser test and keep its screenshots in docs/screenshots
	$(GO) test -count=1 -run '^TestDashboard(Tokens|Fleet)?$$' $(PKG) -args -screenshots=$(CURDIR)/docs/screenshots

clean: ## remove build outputs (not ./ledgergate-data)
	rm -rf bin dist bridge/c/build

# The C device library (bridge/c) builds with its own Makefile and the
# system's C compiler: CGO_ENABLED=0 above is for Go and does not reach it.
c: ## build the C device library, bridge/c/build/liblg.a
	$(MAKE) -C bridge/c CC=gcc all

c-test: ## the C device library: vectors and unit tests (ASan+UBSan, valgrind), fuzzing, Cortex-M4 build
	$(MAKE) -C bridge/c CC=gcc test fuzz cortex-m4
