// Package interop checks scanner/verify against the upstream signing tools: cosign v2 and v3,
// notation and oras sign and attest images in go-containerregistry's registry (referrers API)
// and in the distribution registry (referrers tag schema), and imagetrust must agree with the
// tool's own `verify` on every case, positive and negative. The tests run the binaries that
// `make interop-tools` builds into bin/; they fail, never skip, when one is missing.
package interop
