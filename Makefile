# ironlb — see README.md. Every target works on a fresh Debian machine with Go; targets
# that need Debian packages install them (as root) or say exactly what is missing.

SHELL := /bin/bash
GO ?= go
CONTROLLER_GEN := $(GO) run sigs.k8s.io/controller-tools/cmd/controller-gen@v0.23.0
DEB_PACKAGES := iproute2 iptables frr bird2 arping curl tcpdump iputils-ping procps ndisc6 openssl nginx wrk nftables
FUZZTIME ?= 5s
KEEP ?=
# The image: name and tag (deploy/image and the chart's image.tag default to "dev").
VERSION ?= dev
IMAGE ?= ghcr.io/ironlb/ironlb:$(VERSION)
IMAGE_OUT ?= _output/image/ironlb.tar
# IPTABLES=0 builds the image without iptables (the speaker's --proxy=iptables then cannot run).
IPTABLES ?= 1

.PHONY: all build test unit fuzz e2e e2e-lab bench bench-unit bench-lab bench-metallb generate verify-generate lint deps lab-binaries demo lab-clean clean image tools-test reference verify-reference

all: build

## build: the binaries into bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/ ./cmd/...

## image: the OCI image of every binary as one tar ($(IMAGE_OUT): docker/podman load, ctr import, kind load image-archive), reproducible, built without a container daemon; IMAGE=name:tag, PUSH=1 also pushes it
image:
	rm -rf _output/image/bin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o _output/image/bin/ ./cmd/...
	cd tools/image && SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || echo 0) $(GO) run . \
		--tag $(IMAGE) --out $(CURDIR)/$(IMAGE_OUT) $(if $(filter 1,$(IPTABLES)),--iptables) $(if $(PUSH),--push) \
		--label org.opencontainers.image.source=https://github.com/ironlb/ironlb \
		--label org.opencontainers.image.revision=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
		$(CURDIR)/_output/image/bin/*

## tools-test: the image tool's tests (reproducible digest, config, binaries and iptables run inside the image); the
## image-building tests run without -race (they compress 100 MB; the race detector makes that ten times slower)
tools-test:
	cd tools/image && $(GO) test -race -short -count=1 ./... && $(GO) test -count=1 -timeout 20m ./...

## test: unit tests (race), short fuzz runs, then the lab e2e suites (real kube-apiserver, etcd, network namespaces; skipped with one line when not root)
test: lint verify-generate verify-reference unit tools-test fuzz e2e

unit:
	$(GO) test -race -count=1 ./...

## fuzz: every fuzz target of the main module for FUZZTIME (default 5s) each
fuzz:
	FUZZTIME=$(FUZZTIME) hack/fuzz.sh

e2e:
	@if [ "$$(uname -s)" != Linux ] || [ "$$(id -u)" -ne 0 ]; then \
	  echo "e2e: skipped: the lab suites need Linux and root (network namespaces); the unit tests above ran"; \
	else $(MAKE) --no-print-directory e2e-lab; fi

e2e-lab: deps lab-binaries build
	cd test && IRONLB_BIN=$(CURDIR)/bin $(GO) test -race -p 1 -count=1 -timeout 40m ./...

## bench: the in-memory benchmarks, then the lab measurements (figures in docs/benchmarks.md)
bench: bench-unit bench-lab

## bench-unit: allocator benchmarks and the same burst on MetalLB's allocator
bench-unit:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./allocator/
	bench/metallb/run.sh

## bench-lab: on the lab's real kube-apiserver: a burst of 1,000 Services and restarts with 10,000 live Services, ironlb-controller vs MetalLB's controller (v0.15.2) in one run; then the speaker's L2 failover (kill, link cut, SIGTERM, partition; probes every 10 ms), and kill, link cut and SIGTERM again on MetalLB's own speaker (v0.15.2) in the same run, with the ratios; then ironlb-ingress vs Debian's nginx (wrk: HTTP and TLS requests/s, p50/p99; errors under 100 route + 100 endpoint changes); then BGP mode against FRR (Service -> route, 1,000 routes, next hop gone on kill/link cut with and without BFD, probes lost on SIGTERM); then ironlb's proxy vs kube-proxy in iptables and nftables mode (10,000 Services x 10 endpoints: sync after the last object, one Service change, new-connection latency; PROXY_BENCH_ARGS=-services N for a smaller run)
bench-lab: deps lab-binaries build
	@if [ "$$(id -u)" -ne 0 ]; then echo "bench-lab: needs root (network namespaces)"; exit 1; fi
	cd test && IRONLB_BIN=$(CURDIR)/bin $(GO) run ./cmd/benchcontroller $(BENCH_ARGS)
	cd test && IRONLB_BIN=$(CURDIR)/bin $(GO) run ./cmd/benchspeaker -peer metallb $(SPEAKER_BENCH_ARGS)
	cd test && IRONLB_BIN=$(CURDIR)/bin $(GO) run ./cmd/benchingress $(BENCH_INGRESS_ARGS)
	cd test && IRONLB_BIN=$(CURDIR)/bin $(GO) run ./cmd/benchbgp $(BGP_BENCH_ARGS)
	cd test && IRONLB_BIN=$(CURDIR)/bin $(GO) run ./cmd/benchproxy $(PROXY_BENCH_ARGS)

## bench-metallb: only the MetalLB side of the allocator comparison (go.universe.tf/metallb v0.16.2, unmodified)
bench-metallb:
	bench/metallb/run.sh

## generate: deepcopy and CRD YAML from api/ with a pinned controller-gen
generate:
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/... \
		crd:crdVersions=v1 output:crd:artifacts:config=deploy/crds

# verify-generate regenerates and compares with the working tree (no git needed).
verify-generate:
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	  cp api/v1alpha1/zz_generated.deepcopy.go deploy/crds/*.yaml $$tmp/; \
	  $(MAKE) --no-print-directory -s generate >/dev/null; \
	  for f in $$tmp/*; do \
	    g=$$( [ "$${f##*.}" = go ] && echo api/v1alpha1/$$(basename $$f) || echo deploy/crds/$$(basename $$f) ); \
	    cmp -s $$f $$g || { echo "generated file $$g was stale (now regenerated): commit it"; exit 1; }; \
	  done; echo "generated files are up to date"

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd test && $(GO) vet ./...
	cd tools/image && $(GO) vet ./...

## deps: Debian packages the lab needs (installed when root, else listed)
deps:
	@hack/deps.sh $(DEB_PACKAGES)

## lab-binaries: build (once, cached by version) kube-apiserver, etcd and the pod server
lab-binaries:
	cd test && $(GO) run ./tools/buildbins

## demo: the lab with a real control plane, 3 nodes and a router; an IPPool and the nginx Service get their VIP. KEEP=1 leaves it up.
demo: deps lab-binaries build
	cd test && IRONLB_BIN=$(CURDIR)/bin $(GO) run ./cmd/demo $(if $(KEEP),--keep)

## lab-clean: remove leftovers of crashed lab runs (only network namespaces and links named ilb*)
lab-clean:
	cd test && $(GO) run ./cmd/labclean

## reference: docs/reference.md from the binaries' --help and the CRDs in deploy/crds
reference: build
	$(GO) run ./hack/reference --bin bin --crds deploy/crds > docs/reference.md

# verify-reference regenerates docs/reference.md into a temporary file and compares.
verify-reference: build
	@tmp=$$(mktemp); trap 'rm -f $$tmp' EXIT; \
	  $(GO) run ./hack/reference --bin bin --crds deploy/crds > $$tmp; \
	  cmp -s $$tmp docs/reference.md || { cp $$tmp docs/reference.md; echo "docs/reference.md was stale (now regenerated): commit it"; exit 1; }; \
	  echo "docs/reference.md is up to date"

clean:
	rm -rf bin _output
