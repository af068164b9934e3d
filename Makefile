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

CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
KUSTOMIZE ?= $(LOCALBIN)/kustomize-$(KUSTOMIZE_VERSION)
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)

# Test flags; CI adds -race on the packages where it is affordable.
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
test: control-plane ## Run every test against the real control plane built by hack/control-plane.sh.
	KUBEBUILDER_ASSETS="$$(KUBE_VERSION=$(KUBE_VERSION) ETCD_VERSION=$(ETCD_VERSION) hack/control-plane.sh)" \
		go test $(GOTEST_FLAGS) ./...

.PHONY: verify
verify: generate manifests fmt ## Regenerate everything and fail if the tree changed.
	@hack/verify-clean.sh

##@ Build

.PHONY: build
build: ## Build the manager/CLI binary into bin/imagetrust.
	go build -trimpath -o bin/imagetrust ./cmd/imagetrust

.PHONY: run
run: manifests generate ## Run the manager against the cluster in KUBECONFIG.
	go run ./cmd/imagetrust manager

.PHONY: docker-build
docker-build: ## Build the container image (needs a Docker engine).
	docker build -t $(IMG) .

##@ Tools

$(LOCALBIN):
	mkdir -p $(LOCALBIN)

$(CONTROLLER_GEN): | $(LOCALBIN)
	hack/go-install-tool.sh $@ sigs.k8s.io/controller-tools/cmd/controller-gen $(CONTROLLER_TOOLS_VERSION)

$(KUSTOMIZE): | $(LOCALBIN)
	hack/go-install-tool.sh $@ sigs.k8s.io/kustomize/kustomize/v5 $(KUSTOMIZE_VERSION)

$(GOLANGCI_LINT): | $(LOCALBIN)
	hack/go-install-tool.sh $@ github.com/golangci/golangci-lint/v2/cmd/golangci-lint $(GOLANGCI_LINT_VERSION)

.PHONY: controller-gen kustomize golangci-lint
controller-gen: $(CONTROLLER_GEN) ## Install controller-gen.
kustomize: $(KUSTOMIZE) ## Install kustomize.
golangci-lint: $(GOLANGCI_LINT) ## Install golangci-lint.
