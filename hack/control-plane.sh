#!/usr/bin/env bash
# Builds the real Kubernetes control plane (kube-apiserver, kubectl, etcd) that envtest runs,
# from the Go module proxy, because setup-envtest's download is not reachable from our machines.
#
# The binaries land in bin/k8s/<kube>-etcd<etcd>/ and the script prints that directory.
# A second run finds them and returns at once; delete the folder to force a rebuild.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-1.37.2}
ETCD_VERSION=${ETCD_VERSION:-3.7.0}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${CONTROL_PLANE_DIR:-$ROOT/bin/k8s/${KUBE_VERSION}-etcd${ETCD_VERSION}}

have_all() {
  [[ -x $OUT/kube-apiserver && -x $OUT/kubectl && -x $OUT/etcd ]]
}
if have_all; then
  echo "$OUT"
  exit 0
fi

log() { echo "control-plane: $*" >&2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$OUT"
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off

# --- kube-apiserver + kubectl -------------------------------------------------------------
# k8s.io/kubernetes points its staging modules at ./staging/src with replace directives, which
# `go install pkg@version` refuses. A scratch module pins each staging module to its published
# v0.X.Y twin instead.
minor=${KUBE_VERSION#*.}; minor=${minor%%.*}
staging_version="v0.${KUBE_VERSION#*.}"
if [[ ! -x $OUT/kube-apiserver || ! -x $OUT/kubectl ]]; then
  log "building kube-apiserver and kubectl v$KUBE_VERSION into $OUT (cold: ~6 min, 2.4 GB peak memory; once)"
  mkdir -p "$work/kube"
  cd "$work/kube"
  kmod=$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module imagetrust.local/controlplane"
    echo
    grep -E '^go ' "$kmod"
    echo
    echo "require k8s.io/kubernetes v$KUBE_VERSION"
    echo
    echo "replace ("
    sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/k8s\.io/[a-z0-9-]*$#\t\1 => \1 '"$staging_version"'#p' "$kmod"
    echo ")"
  } > go.mod
  cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  go mod tidy >&2
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=v$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  go build -trimpath -ldflags "$ldflags" -o "$OUT/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
  go build -trimpath -ldflags "$ldflags" -o "$OUT/kubectl.tmp" k8s.io/kubernetes/cmd/kubectl
  mv "$OUT/kube-apiserver.tmp" "$OUT/kube-apiserver"
  mv "$OUT/kubectl.tmp" "$OUT/kubectl"
fi

# --- etcd ----------------------------------------------------------------------------------
if [[ ! -x $OUT/etcd ]]; then
  log "building etcd v$ETCD_VERSION into $OUT (cold: ~1 min; once)"
  mkdir -p "$work/etcd"
  cd "$work/etcd"
  cat > go.mod <<GOMOD
module imagetrust.local/etcd

go 1.26.0

require go.etcd.io/etcd/server/v3 v$ETCD_VERSION
GOMOD
  cat > tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  go mod tidy >&2
  go build -trimpath -ldflags "-s -w" -o "$OUT/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$OUT/etcd.tmp" "$OUT/etcd"
fi

have_all
log "$("$OUT/kube-apiserver" --version) / $("$OUT/etcd" --version | head -1)"
echo "$OUT"
