#!/usr/bin/env bash
# kustomize-image.sh KUSTOMIZE DIR IMG: prints `kustomize build DIR` with the manager image set to
# IMG (tag or digest), without editing the committed kustomization files: the image is set in a
# throw-away overlay under bin/.
set -euo pipefail
kustomize=$1 dir=$2 img=$3
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$root/bin"
overlay=$(mktemp -d "$root/bin/.overlay.XXXXXX")
trap 'rm -rf "$overlay"' EXIT
target=$(realpath --relative-to="$overlay" "$root/$dir")
cd "$overlay"
"$kustomize" create --resources "$target"
"$kustomize" edit set image "ghcr.io/imagetrust/imagetrust=$img"
"$kustomize" build .
