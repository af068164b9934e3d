#!/usr/bin/env bash
# Counts the registry requests of a first assessment and of a scheduled re-verification, for
# this checkout and for a baseline commit (default: BASE=2b61524, before the one-transport work),
# in one run, and prints them side by side with the ratio. Both checkouts run the same
# measurement (measure_test.go, copied into scanner/ of each): 10 images in 10 repositories of a
# registry listed as insecure (plain HTTP), each resolved by tag, assessed with a Syft-generated
# SBOM, then re-verified; once with no policy and once with a key policy and half the images
# signed. "sent" is every request that reached the registry host: HTTP requests it answered
# plus https attempts at its plain-HTTP port (counted by a TCP proxy in front of it). "observed"
# is what the registry client's Observe hook (the metrics) saw.
#
#   hack/registry-requests/run.sh            # BASE=<commit> to compare against another commit
set -euo pipefail

root=$(git -C "$(dirname "$0")/../.." rev-parse --show-toplevel)
base=${BASE:-2b61524}
work=$(mktemp -d)
cleanup() {
	git -C "$root" worktree remove --force "$work/base" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

git -C "$root" worktree add --detach "$work/base" "$base" >/dev/null 2>&1

measure() { # dir out
	cp "$root/hack/registry-requests/measure_test.go" "$1/scanner/zz_registry_requests_test.go"
	(cd "$1" && REGISTRY_REQUESTS_OUT="$2" go test -count=1 -tags registryrequests \
		-run '^TestMeasureRegistryRequests$' ./scanner/ >"$2.log" 2>&1) || { cat "$2.log"; exit 1; }
	rm "$1/scanner/zz_registry_requests_test.go"
}

echo "measuring baseline $(git -C "$root" rev-parse --short "$base") ..." >&2
measure "$work/base" "$work/base.json"
echo "measuring this checkout $(git -C "$root" rev-parse --short HEAD) (+ uncommitted changes) ..." >&2
measure "$root" "$work/head.json"

python3 - "$work/base.json" "$work/head.json" <<'EOF'
import json, sys
base, head = (json.load(open(p)) for p in sys.argv[1:3])
key = lambda m: (m["scenario"], m["phase"])
b = {key(m): m for m in base}
print("| scenario | phase | per image: sent before | sent after | ratio | observed before | observed after |")
print("|---|---|---|---|---|---|---|")
for h in head:
    o = b[key(h)]
    n = h["images"]
    sb, sa = (o["http"] + o["tlsProbes"]) / n, (h["http"] + h["tlsProbes"]) / n
    ratio = f"{sb / sa:.1f}x fewer" if sa else "all avoided"
    print(f"| {h['scenario']} | {h['phase']} | {sb:.1f} | {sa:.1f} | {ratio} | {o['observed'] / n:.1f} | {h['observed'] / n:.1f} |")
print()
print("requests by API and method, per fleet of", head[0]["images"], "images (before → after):")
for h in head:
    o = b[key(h)]
    kinds = sorted(set(o["byKindVerb"]) | set(h["byKindVerb"]))
    parts = [f"{k} {o['byKindVerb'].get(k, 0)}→{h['byKindVerb'].get(k, 0)}" for k in kinds]
    parts.append(f"https probe {o['tlsProbes']}→{h['tlsProbes']}")
    print(f"- {h['scenario']}, {h['phase']}: " + ", ".join(parts))
EOF
