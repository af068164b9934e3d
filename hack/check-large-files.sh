#!/usr/bin/env bash
# Fails when a tracked file is larger than 5 MB: build outputs and binaries live in bin/, which
# is ignored, and nothing that large belongs in the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
limit=$((5 * 1024 * 1024))
big=$(git ls-files -z | xargs -0 -r stat -c '%s %n' | awk -v l="$limit" '$1 > l {print}')
if [[ -n $big ]]; then
  echo "check-large-files: tracked files over 5 MB (build outputs belong in bin/):" >&2
  echo "$big" >&2
  exit 1
fi
echo "check-large-files: no tracked file over 5 MB"
