# imagetrust — continuous container-image trust for Kubernetes.
# Everything a target needs is built into ./bin from the Go module proxy at pinned versions.

IMG ?= ghcr.io/imagetrust/imagetrust:dev
VERSION ?= 0.1.0

LOCALBIN ?= $(shell pwd)/bin
CONTROLLER_TOOLS_VERSION ?= v0.23.0
KUSTOMIZE_VERSION ?= v5.8.2
GOLANGCI_LINT_VERSION ?= v2.15.0
KUBE_VERSION ?= 1.37.2
ETCD_VERSION ?= 3.7.0

# OLM bundle: channels follow https://olm.operatorframework.io/docs/best-practices/channel-naming
BUNDLE_IMG ?= ghcr.io/imagetrust/imagetrust-bundle:v$(VERSION)
BUNDLE_CHANNELS ?= candidate
BUNDLE_DEFAULT_CHANNEL ?= candidate
# Deployment targets talk to the cluster in KUBECONFIG with this kubectl.
KUBECTL ?= kubectl

CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
KUSTOMIZE ?= $(LOCALBIN)/kustomize-$(KUSTOMIZE_VERSION)
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
CRD_REF_DOCS_VERSION ?= v0.3.0
CRD_REF_DOCS ?= $(LOCALBIN)/crd-ref-docs-$(CRD_REF_DOCS_VERSION)
# cert-manager whose CRDs the config tests validate config/components/admission-cert-manager
# against (read from its Go module, fetched through the module proxy).
CERT_MANAGER_VERSION ?= v1.21.2

# What `imagetrust version` reports: the release this tree builds and its commit ("-dirty" when
# tracked files are modified).
IMAGETRUST_COMMIT ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)$(shell git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo -dirty)
LDFLAGS ?= -X main.version=v$(VERSION) -X main.commit=$(IMAGETRUST_COMMIT)

# Test flags for `make test` and `make test-race`.
GOTEST_FLAGS ?= -count=1
export GOFLAGS ?= -buildvcs=false

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs and RBAC from the Go markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd:maxDescLen=400 paths="./api/..." paths="./controllers/..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: fmt
fmt: ## go fmt.
	go fmt ./...

.PHONY: vet
vet: ## go vet.
	go vet ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## golangci-lint, including the depguard rules that keep scanner/ and api/ clean.
	$(GOLANGCI_LINT) run --timeout 20m ./...

.PHONY: control-plane
control-plane: ## Build kube-apiserver, etcd and kubectl for envtest into bin/k8s (cached).
	@KUBE_VERSION=$(KUBE_VERSION) ETCD_VERSION=$(ETCD_VERSION) hack/control-plane.sh >/dev/null

.PHONY: test
test: control-plane $(KUSTOMIZE) dockerfile-check interop-tools ## Run every test against the real control plane built by hack/control-plane.sh and the upstream signing CLIs.
	KUSTOMIZE=$(KUSTOMIZE) KUBEBUILDER_ASSETS="$$(KUBE_VERSION=$(KUBE_VERSION) ETCD_VERSION=$(ETCD_VERSION) hack/control-plane.sh)" \
		go test $(GOTEST_FLAGS) ./...

# The registry fault tests (429, Retry-After, resets), parallel fleet matching and the
# manager's queue and workers, under the race detector; the rest is single-goroutine or slow
# enough under -race to cost more than it finds.
RACE_VULNDB_TESTS := TestConcurrentMatchManyEqualsMatch|TestSmallSBOMDoesNotWaitForALargeOne

.PHONY: test-race
test-race: control-plane $(KUSTOMIZE) ## The fault and concurrency tests under -race (scanner, scanner/registry, controllers, parallel matching).
	KUSTOMIZE=$(KUSTOMIZE) KUBEBUILDER_ASSETS="$$(KUBE_VERSION=$(KUBE_VERSION) ETCD_VERSION=$(ETCD_VERSION) hack/control-plane.sh)" \
		go test -race $(GOTEST_FLAGS) ./scanner/ ./scanner/registry/... ./controllers/
	go test -race $(GOTEST_FLAGS) -run '^($(RACE_VULNDB_TESTS))$$' ./scanner/vulndb/

.PHONY: dockerfile-check
dockerfile-check: ## Parse Dockerfile and bundle.Dockerfile with BuildKit's parser and check the image hardening.
	cd hack/dockerfile-check && go test $(GOTEST_FLAGS) ./...

.PHONY: verify
verify: generate manifests fmt bundle api-docs ## Regenerate everything (code, manifests, OLM bundle) and fail if the tree changed or a tracked file is over 5 MB.
	@hack/verify-clean.sh
	@hack/check-large-files.sh

.PHONY: api-docs
api-docs: $(CRD_REF_DOCS) ## Generate docs/api-reference.md from the API types.
	$(CRD_REF_DOCS) --source-path=./api/v1alpha1 --config=hack/api-docs/config.yaml --renderer=markdown \
		--output-path=docs/api-reference.md >/dev/null

##@ Demo

.PHONY: demo
demo: ## Local control plane + local registry + demo images, the real manager, and its reports (DEMO_KEEP=1 keeps it up).
	@KUBE_VERSION=$(KUBE_VERSION) ETCD_VERSION=$(ETCD_VERSION) LDFLAGS="$(LDFLAGS)" hack/demo.sh

##@ Build

.PHONY: build
build: ## Build the manager/CLI binary into bin/imagetrust.
	go build -trimpath -ldflags "$(LDFLAGS)" -o bin/imagetrust ./cmd/imagetrust

.PHONY: run
run: manifests generate ## Run the manager against the cluster in KUBECONFIG.
	go run ./cmd/imagetrust manager

.PHONY: docker-build
docker-build: ## Build the container image (needs a Docker engine).
	docker build -t $(IMG) .

.PHONY: docker-push
docker-push: ## Push the container image (needs a Docker engine).
	docker push $(IMG)

.PHONY: build-installer
build-installer: manifests $(KUSTOMIZE) ## Write dist/install.yaml: everything config/default installs, with image IMG.
	mkdir -p dist
	hack/kustomize-image.sh $(KUSTOMIZE) config/default $(IMG) > dist/install.yaml

##@ Deployment

ifndef ignore-not-found
  ignore-not-found = false
endif

.PHONY: install
install: manifests $(KUSTOMIZE) ## Install the CRDs into the cluster in KUBECONFIG.
	$(KUSTOMIZE) build config/crd | $(KUBECTL) apply --server-side -f -

.PHONY: uninstall
uninstall: manifests $(KUSTOMIZE) ## Remove the CRDs (and every report, policy and scan) from the cluster. ignore-not-found=true to ignore missing ones.
	$(KUSTOMIZE) build config/crd | $(KUBECTL) delete --ignore-not-found=$(ignore-not-found) -f -

.PHONY: deploy
deploy: manifests $(KUSTOMIZE) ## Deploy the manager with image IMG (config/default) to the cluster in KUBECONFIG.
	hack/kustomize-image.sh $(KUSTOMIZE) config/default $(IMG) | $(KUBECTL) apply --server-side -f -

.PHONY: undeploy
undeploy: $(KUSTOMIZE) ## Remove everything config/default installed. ignore-not-found=true to ignore missing objects.
	$(KUSTOMIZE) build config/default | $(KUBECTL) delete --ignore-not-found=$(ignore-not-found) -f -

##@ OLM bundle

.PHONY: bundle
bundle: manifests $(KUSTOMIZE) ## Generate the OLM bundle (bundle/, bundle.Dockerfile) for VERSION and IMG from config/manifests.
	$(KUSTOMIZE) build config/manifests | go run ./hack/bundle -version $(VERSION) -image $(IMG) \
		-channels $(BUNDLE_CHANNELS) -default-channel $(BUNDLE_DEFAULT_CHANNEL)

.PHONY: bundle-build
bundle-build: ## Build the bundle image BUNDLE_IMG (needs a Docker engine).
	docker build -f bundle.Dockerfile -t $(BUNDLE_IMG) .

.PHONY: bundle-push
bundle-push: ## Push the bundle image BUNDLE_IMG (needs a Docker engine).
	docker push $(BUNDLE_IMG)

##@ Tools

$(LOCALBIN):
	mkdir -p $(LOCALBIN)

$(CONTROLLER_GEN): | $(LOCALBIN)
	hack/go-install-tool.sh $@ sigs.k8s.io/controller-tools/cmd/controller-gen $(CONTROLLER_TOOLS_VERSION)

$(KUSTOMIZE): | $(LOCALBIN)
	hack/go-install-tool.sh $@ sigs.k8s.io/kustomize/kustomize/v5 $(KUSTOMIZE_VERSION)

$(CRD_REF_DOCS): | $(LOCALBIN)
	hack/go-install-tool.sh $@ github.com/elastic/crd-ref-docs $(CRD_REF_DOCS_VERSION)

$(GOLANGCI_LINT): | $(LOCALBIN)
	hack/go-install-tool.sh $@ github.com/golangci/golangci-lint/v2/cmd/golangci-lint $(GOLANGCI_LINT_VERSION)

.PHONY: controller-gen kustomize golangci-lint
controller-gen: $(CONTROLLER_GEN) ## Install controller-gen.
kustomize: $(KUSTOMIZE) ## Install kustomize.
golangci-lint: $(GOLANGCI_LINT) ## Install golangci-lint.

##@ Interop tools

# Upstream signers, verifiers and registries the scanner/verify interop tests agree with.
COSIGN_V2_VERSION ?= v2.6.5
COSIGN_V3_VERSION ?= v3.1.3
# NOTATION_VERSION must match hack/interop/notation/go.mod (the proxy refuses `go install` of it).
NOTATION_VERSION ?= v1.3.2
ORAS_VERSION ?= v1.3.6
DISTRIBUTION_VERSION ?= v3.1.2
COSIGN_V2 ?= $(LOCALBIN)/cosign-$(COSIGN_V2_VERSION)
COSIGN_V3 ?= $(LOCALBIN)/cosign-$(COSIGN_V3_VERSION)
NOTATION ?= $(LOCALBIN)/notation-$(NOTATION_VERSION)
ORAS ?= $(LOCALBIN)/oras-$(ORAS_VERSION)
DISTRIBUTION_REGISTRY ?= $(LOCALBIN)/registry-$(DISTRIBUTION_VERSION)
INTEROP_TOOLS := $(COSIGN_V2) $(COSIGN_V3) $(NOTATION) $(ORAS) $(DISTRIBUTION_REGISTRY)
# The interop tests find the binaries through these variables.
export IMAGETRUST_COSIGN_V2 := $(COSIGN_V2)
export IMAGETRUST_COSIGN_V3 := $(COSIGN_V3)
export IMAGETRUST_NOTATION := $(NOTATION)
export IMAGETRUST_ORAS := $(ORAS)
export IMAGETRUST_DISTRIBUTION_REGISTRY := $(DISTRIBUTION_REGISTRY)

$(COSIGN_V2): | $(LOCALBIN)
	hack/go-install-tool.sh $@ github.com/sigstore/cosign/v2/cmd/cosign $(COSIGN_V2_VERSION)

$(COSIGN_V3): | $(LOCALBIN)
	hack/go-install-tool.sh $@ github.com/sigstore/cosign/v3/cmd/cosign $(COSIGN_V3_VERSION)

$(NOTATION): hack/interop/notation/go.mod | $(LOCALBIN)
	cd hack/interop/notation && GOFLAGS="-mod=mod -buildvcs=false" go build -trimpath -o $@ github.com/notaryproject/notation/cmd/notation

$(ORAS): | $(LOCALBIN)
	hack/go-install-tool.sh $@ oras.land/oras/cmd/oras $(ORAS_VERSION)

$(DISTRIBUTION_REGISTRY): | $(LOCALBIN)
	hack/go-install-tool.sh $@ github.com/distribution/distribution/v3/cmd/registry $(DISTRIBUTION_VERSION)

.PHONY: interop-tools
interop-tools: $(INTEROP_TOOLS) ## Build cosign v2 and v3, notation, oras and the distribution registry into bin/ for the verify interop tests (~10 min cold).

##@ Benchmark

GRYPE_VERSION ?= v0.121.2
GRYPE ?= $(LOCALBIN)/grype-$(GRYPE_VERSION)
BENCH_SCALE ?= full
BENCH_ARGS ?=

$(GRYPE): | $(LOCALBIN)
	cd hack/bench/tools && go build -trimpath -ldflags='-s -w' -o $@ github.com/anchore/grype/cmd/grype

.PHONY: grype
grype: $(GRYPE) ## Build the upstream grype CLI (hack/bench/tools pins it) into bin/.

.PHONY: bench
bench: $(GRYPE) ## Fleet benchmark at BENCH_SCALE (ci|medium|large|full): grype CLI vs Match vs MatchMany vs rescan after a 1% DB update.
	go build -o $(LOCALBIN)/bench ./hack/bench
	$(LOCALBIN)/bench -scale $(BENCH_SCALE) -grype $(GRYPE) $(BENCH_ARGS)

.PHONY: bench-admission
bench-admission: control-plane $(KUSTOMIZE) ## Admission latency: a 5-container Pod decided from the cache vs by re-verifying signatures, and what the webhook adds to a Pod create.
	KUSTOMIZE=$(KUSTOMIZE) KUBEBUILDER_ASSETS="$$(KUBE_VERSION=$(KUBE_VERSION) ETCD_VERSION=$(ETCD_VERSION) hack/control-plane.sh)" \
		go test ./internal/admission -run '^$$' -bench . -benchtime 1000x -timeout 20m

.PHONY: bench-ci
bench-ci: ## The fleet benchmark at CI scale; compares with the grype CLI only when bin/grype-$(GRYPE_VERSION) is already built.
	go build -o $(LOCALBIN)/bench ./hack/bench
	@if [ -x "$(GRYPE)" ]; then $(LOCALBIN)/bench -scale ci -grype $(GRYPE) $(BENCH_ARGS); \
	else echo "bench-ci: $(GRYPE) not built (make grype, ~4 min cold): skipping phase (a), the grype CLI"; \
	$(LOCALBIN)/bench -scale ci $(BENCH_ARGS); fi
