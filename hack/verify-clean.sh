#!/usr/bin/env bash
# Fails when generated files (code, manifests, the OLM bundle) or formatting differ from what is
# committed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -n "$(git status --porcelain --untracked-files=all -- api config cmd controllers scanner hack internal docs bundle bundle.Dockerfile go.mod go.sum)" ]]; then
  echo "verify: the tree is dirty after 'make generate manifests fmt bundle'; commit the regenerated files:" >&2
  git status --porcelain --untracked-files=all -- api config cmd controllers scanner hack internal docs bundle bundle.Dockerfile go.mod go.sum >&2
  git --no-pager diff --stat >&2
  exit 1
fi
echo "verify: generated code, manifests and formatting are in sync"
