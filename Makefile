# nanoseg — run `make help` for the targets.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
BIN := bin/nanoseg
# Kernel tests run when this runs as root; the whole suite stays under 15 minutes.
TEST_TIMEOUT ?= 14m

.PHONY: help build web web-dist web-verify image test unit bench lint fmt-check vet demo demo-containers demo-kubernetes generate verify clean kube-bins conformance kube-up

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build: web-dist ## build bin/nanoseg (with the web page), its kubectl plugin link bin/kubectl-nanoseg, and bin/uishots (the demo's screenshots)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/nanoseg
	ln -sf nanoseg bin/kubectl-nanoseg
	$(GO) build -o bin/uishots ./internal/cmd/uishots

# The web page (web/src, bundled with its pinned npm packages into web/dist,
# which the binary embeds). web/dist is committed, so go build needs no node
# and make build needs no npm or registry as long as web/dist is current.
#
# "Current" is decided by content, not by file times: web/dist.sha256
# (committed with web/dist) holds the SHA-256 of every input of the build
# (web/src/*, web/build.mjs, web/package.json, web/package-lock.json). A git
# checkout gives files the time it wrote them, in no fixed order, so in a
# fresh clone a source can look newer than web/dist although nothing changed;
# comparing hashes is immune to that, and to touch/cp -p as well.
#   web-dist   (make build) rebuilds web/dist only when the inputs' hashes
#              differ from web/dist.sha256 (npm ci when package-lock.json
#              changed, node build.mjs, a new stamp); without npm it warns
#              and the binary embeds the committed (stale) dist.
#   web        always rebuilds web/dist and its stamp.
#   web-verify (make test) builds into a temporary directory and fails when
#              the result or the stamp differs from what is committed.
WEB_STAMP := web/dist.sha256
# The inputs' hashes, one line per file (paths relative to web/), sorted.
web_hashes = (cd web && LC_ALL=C sha256sum $$(LC_ALL=C ls -d src/* | sort) build.mjs package.json package-lock.json)
# npm ci when node_modules is missing or older than package-lock.json.
web_modules = cd web && if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then \
	  npm ci --no-audit --no-fund --loglevel=error; fi

web-dist: ## rebuild web/dist only when its inputs changed (content hash in web/dist.sha256; no npm needed otherwise)
	@if $(web_hashes) | cmp -s - $(WEB_STAMP); then exit 0; fi; \
	if ! command -v npm >/dev/null || ! command -v node >/dev/null; then \
	  echo "make: web/src changed since web/dist was built ($(WEB_STAMP)) but there is no node/npm: the binary embeds the committed web/dist"; exit 0; fi; \
	$(MAKE) --no-print-directory web

web: ## rebuild web/dist and web/dist.sha256 from web/src (needs npm: npm ci, node build.mjs)
	@if ! command -v npm >/dev/null || ! command -v node >/dev/null; then \
	  echo "make web: needs node and npm"; exit 1; fi
	@$(web_modules) && node build.mjs
	@$(web_hashes) > $(WEB_STAMP)

web-verify: ## fail if web/dist or web/dist.sha256 is not what web/src builds (run make web and commit both)
	@if ! $(web_hashes) | cmp -s - $(WEB_STAMP); then \
	  $(web_hashes) | diff $(WEB_STAMP) - ; echo "web/dist.sha256 is stale: run make web and commit web/dist and web/dist.sha256"; exit 1; fi
	@if ! command -v npm >/dev/null || ! command -v node >/dev/null; then \
	  echo "make web-verify: no node/npm: web/dist not rebuilt to compare"; exit 0; fi; \
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	( $(web_modules) && node build.mjs "$$tmp" ) && \
	if ! diff -r "$$tmp" web/dist >/dev/null; then \
	  diff -rq "$$tmp" web/dist; echo "web/dist is stale: run make web and commit it"; exit 1; fi

image: ## build the image nanoseg.io/nanoseg:dev as out/images/nanoseg.tar (docker archive, no registry: ctr -n k8s.io image import)
	./hack/image.sh

# make test runs every package with the race detector except these, each for a
# reason (-race timings per package: docs/benchmarks.md):
#   ./e2e  the agent under test is a separate binary that TestMain builds
#          with plain `go build`, so -race here would instrument only the test
#          harness, not the agent whose races matter.
# A package listed here that no longer exists fails make test.
NORACE := ./e2e

# The Kubernetes binaries the tests run (kube-apiserver, kubelet, kubectl),
# built from the k8s.io/kubernetes module once per version into the user's
# cache dir (~15 min the first time, 1-2 s after).
kube-bins: ## build the Kubernetes test binaries once per version (hack/kube-bins.sh)
	./hack/kube-bins.sh

# make test builds the Kubernetes binaries first (kube-bins) and requires
# them: a cluster test that cannot start its API server fails instead of
# skipping (NANOSEG_KUBE_REQUIRED=1; etcd comes from Debian's etcd-server).
# A throwaway API server (Debian's etcd + kube-apiserver on 127.0.0.1,
# nanoseg's CRDs) for trying `nanoseg node` on a lab by hand; it runs in
# the foreground until its kubeconfig is removed (README "Trying the node
# agent on a lab"). No kubelet, scheduler or controller-manager.
KUBE_UP ?= /tmp/nanoseg-kube-up.kubeconfig
kube-up: kube-bins ## a throwaway API server for trying `nanoseg node` by hand; writes $(KUBE_UP), rm it to stop
	NANOSEG_KUBE_UP=$(abspath $(KUBE_UP)) NANOSEG_KUBE_REQUIRED=1 go test -count=1 -timeout 0 -v -run '^TestServe$$' ./internal/kubetest

test: fmt-check vet verify web-verify build ## gofmt check, go vet, generated files check, unit tests with -race, Kubernetes API server tests, and (as root) kernel and end-to-end tests
	@if [ "$$(id -u)" != 0 ]; then echo "make test: not root: kernel tests will skip (they need network namespaces); run as root for the full suite"; fi
	@kubebin=$$(./hack/kube-bins.sh) || { echo "make test: hack/kube-bins.sh failed: the Kubernetes tests need its binaries"; exit 1; }; \
	export NANOSEG_KUBE_BIN=$$kubebin NANOSEG_KUBE_REQUIRED=1; \
	race=-race; if [ "$$($(GO) env CGO_ENABLED)" != 1 ]; then \
	  echo "make test: no C compiler, so no cgo: running without the race detector (install gcc for -race)"; race=; fi; \
	norace=$$($(GO) list $(NORACE)) || exit 1; \
	pkgs=$$($(GO) list ./... | grep -vxF "$$norace"); \
	set -x; \
	$(GO) test $$race -count=1 -timeout $(TEST_TIMEOUT) $$pkgs && \
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $$norace

bench: build ## benchmarks: ratios against baselines measured in the same run (root for kernel benchmarks)
	$(GO) test -run '^$$' -bench . -benchmem -timeout 60m ./...

lint: fmt-check vet ## gofmt check and go vet

fmt-check: ## fail if gofmt would change a file
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet: ## go vet
	$(GO) vet ./...

demo: build ## the main job: bring up the shop lab, show its traffic, tear it down (root)
	./scripts/demo.sh

# The same story on real Podman containers (scripts/demo-containers.sh): the
# agent finds them through Podman's API (--containers podman://...).
demo-containers: build ## the main job on real Podman containers: Compose-labelled shop, intruder dropped, restart under enforce (root, podman; ~1 min)
	./scripts/demo-containers.sh

# The Kubernetes variant (scripts/demo-kubernetes.sh): an API server, the
# lab as pods of two nodes, two controller replicas, two node agents.
demo-kubernetes: build kube-bins ## the main job through an API server and kubectl: two nodes, two controller replicas, failover (root, 2-2.5 min)
	./scripts/demo-kubernetes.sh

generate: ## regenerate generated code and manifests (controller-gen: deep-copy, CRDs)
	./hack/generate.sh

# What hack/generate.sh writes; verify compares it with the committed files
# (modified and new files both count).
GENERATED := manifests/crds ':(glob)policies/**/zz_generated.*.go'

verify: generate ## fail if generated files are stale (runs offline: controller-gen is a go.mod tool)
	@if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	  echo "make verify: not a git checkout, nothing to compare the generated files with: skipped"; exit 0; fi; \
	if [ -n "$$(git status --porcelain -- $(GENERATED))" ]; then \
	  git status --short -- $(GENERATED); git --no-pager diff --stat -- $(GENERATED); \
	  echo "generated files are stale: run make generate and commit the result"; exit 1; fi

conformance: ## upstream NetworkPolicy e2e suite against nanoseg as a DaemonSet on a real node (root, 15-25 min; docs/conformance.md)
	./hack/conformance.sh

clean: ## remove build output
	rm -rf bin out
