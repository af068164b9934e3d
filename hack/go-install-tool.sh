#!/usr/bin/env bash
# go-install-tool.sh TARGET PACKAGE VERSION: installs PACKAGE@VERSION as the file TARGET, so that
# each tool version has its own name in bin/ and a version bump rebuilds it.
set -euo pipefail
target=$1 pkg=$2 version=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "installing $pkg@$version" >&2
GOBIN=$tmp GOFLAGS= go install "$pkg@$version"
mv "$tmp/$(basename "${pkg%/v[0-9]*}")" "$target" 2>/dev/null || mv "$tmp"/* "$target"
