// Package verify checks the signatures and in-toto attestations stored next to an artifact in
// an OCI registry against a list of trusted authorities (public keys, keyless certificate
// identities, Notation trust policies), in every layout real signers write:
//
//   - cosign's legacy ".sig" / ".att" tags (cosign v2 and `cosign sign --new-bundle-format=false`);
//   - Sigstore bundles stored as OCI 1.1 referrers (cosign v3's default), for signatures and for
//     attestations of any predicate type;
//   - Notary Project (Notation) signatures stored as referrers, JWS or COSE.
//
// Referrers are listed once per image through the OCI referrers API, with the referrers tag
// schema as fallback on registries without it. Transparency-log proofs and timestamps are
// checked from what the signature carries, never by asking Rekor; trusted material comes from
// the authority's inline PEM fields and, optionally, a trustroot.Provider that never blocks.
//
// Verification fails closed: Verified when any layout verified for any authority; otherwise
// Error when anything could not be judged (registry error, unreadable bundle, unavailable
// trust root, misconfigured authority), Invalid when signatures exist but none verified, and
// Unsigned only when every layout positively holds nothing.
package verify

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imagetrust/imagetrust/scanner/internal/redact"
)

// State is the outcome of a verification.
type State string

const (
	// Verified means at least one signature verified against at least one authority.
	Verified State = "Verified"
	// Unsigned means the registry holds no signature (or attestation) for the digest.
	Unsigned State = "Unsigned"
	// Invalid means signatures exist but none verifies against any authority.
	Invalid State = "Invalid"
	// Error means verification could not be completed (registry, network or configuration).
	Error State = "Error"
)

// SignatureFormat names the layout and envelope a signature was verified in.
type SignatureFormat string

const (
	// FormatCosignLegacy is cosign's ".sig"/".att" tag layout (simple signing or DSSE layers).
	FormatCosignLegacy SignatureFormat = "cosign-legacy"
	// FormatSigstoreBundle is a Sigstore bundle stored as an OCI referrer (cosign v3).
	FormatSigstoreBundle SignatureFormat = "sigstore-bundle"
	// FormatNotation is a Notary Project signature (JWS or COSE envelope) stored as a referrer.
	FormatNotation SignatureFormat = "notation"
)

// Signer identifies who made a verified signature and how it was proven.
type Signer struct {
	// Authority is the name of the authority that accepted the signature.
	Authority string `json:"authority"`
	// KeyFingerprint is "SHA256:<hex>" of the DER public key that verified the signature
	// (the authority's key, or the certificate's key for certificate-based signatures).
	KeyFingerprint string `json:"keyFingerprint"`
	// Subject is the certificate identity (email or URI SAN); empty for key-based signatures.
	Subject string `json:"subject,omitempty"`
	// Issuer is the certificate's OIDC issuer; empty for key-based signatures.
	Issuer string `json:"issuer,omitempty"`
	// Format is the signature format that verified.
	Format SignatureFormat `json:"format,omitempty"`
	// TimeProof says what proved when the signature was made, e.g. "rekor v1 log index 7",
	// "rekor v2 log index 3 (inclusion proof, checkpoint)", "RFC 3161 timestamp by
	// https://tsa.example", or "none: transparency log ignored".
	TimeProof string `json:"timeProof,omitempty"`
	// CertificateSubject is the X.509 subject DN of the signing certificate (Notation).
	CertificateSubject string `json:"certificateSubject,omitempty"`
	// CertificateFingerprint is "SHA256:<hex>" of the signing certificate's DER encoding.
	CertificateFingerprint string `json:"certificateFingerprint,omitempty"`
}

// SignatureResult is the outcome of VerifySignatures.
type SignatureResult struct {
	State State `json:"state"`
	// Signers lists every (signature, authority) pair that verified.
	Signers []Signer `json:"signers,omitempty"`
	// Reason explains the state in terms a person can act on, including which layouts were
	// looked at and what each held.
	Reason string `json:"reason,omitempty"`
}

// Verifier verifies signatures and attestations in registries. It holds no mutable state and
// is safe for concurrent use.
type Verifier struct {
	// RegistryOptions are go-containerregistry options (keychain, transport, retries) used
	// for every registry call. With none, registries are accessed anonymously.
	RegistryOptions []remote.Option
	// Referrers, when set, lists a subject's referrers (the registry client's, which every
	// consumer of an image's referrers shares); nil lists them with RegistryOptions.
	Referrers func(ctx context.Context, subject name.Digest) (*v1.IndexManifest, error)
}

// VerifyDigestSignature checks that an arbitrary artifact digest (an image, an index, an SBOM
// referrer, a base image...) in any repository carries a signature from one of auths, in any
// layout. The artifact's own manifest is read only for Notation signatures, whose payload
// names the artifact's media type and size.
func (v *Verifier) VerifyDigestSignature(ctx context.Context, ref name.Digest, auths []Authority) SignatureResult {
	return v.VerifySignatures(ctx, ref, auths)
}

// VerifySignatures checks every signature stored for ref against every authority and reports
// all signers that verified.
func (v *Verifier) VerifySignatures(ctx context.Context, ref name.Digest, auths []Authority) SignatureResult {
	r, out, ok := v.newRun(ctx, ref, auths, kindSignature)
	if !ok {
		return SignatureResult{State: out.state, Reason: out.reason}
	}
	return r.signatureResult(r.signatures(ctx))
}

// VerifyImage verifies signatures and attestations of ref with one referrers listing shared
// by both, which is what a full assessment of an image needs.
func (v *Verifier) VerifyImage(ctx context.Context, ref name.Digest, auths []Authority) (SignatureResult, AttestationResult) {
	r, out, ok := v.newRun(ctx, ref, auths, kindSignature)
	if !ok {
		return SignatureResult{State: out.state, Reason: out.reason}, AttestationResult{State: out.state, Reason: strings.ReplaceAll(out.reason, kindSignature, kindAttestation)}
	}
	sig := r.signatureResult(r.signatures(ctx))
	return sig, r.attestationResult(r.attestations(ctx))
}

const (
	kindSignature   = "signature"
	kindAttestation = "attestation"
)

// run is one verification call: the parsed authorities and what was read from the registry,
// shared between the signature and attestation checks.
type run struct {
	v       *Verifier
	ref     name.Digest
	hash    v1.Hash
	auths   []*compiled
	badAuth []string // configuration errors of authorities that could not be parsed
	refs    *referrerSet
	puller  *remote.Puller
	// bundleCache holds each bundle referrer loaded in this run, by manifest digest.
	bundleCache map[string]bundleLoad
}

// newRun parses the authorities; ok is false when the outcome is already decided.
func (v *Verifier) newRun(ctx context.Context, ref name.Digest, auths []Authority, kind string) (*run, outcome, bool) {
	if err := ctx.Err(); err != nil {
		return nil, outcome{state: Error, reason: "verification cancelled: " + err.Error()}, false
	}
	h, err := v1.NewHash(ref.DigestStr())
	if err != nil {
		return nil, outcome{state: Error, reason: fmt.Sprintf("invalid digest %q: %v", ref.DigestStr(), err)}, false
	}
	r := &run{v: v, ref: ref, hash: h}
	for _, a := range auths {
		c, err := compile(a)
		if err != nil {
			r.badAuth = append(r.badAuth, err.Error())
			continue
		}
		r.auths = append(r.auths, c)
	}
	if len(auths) == 0 {
		return nil, outcome{state: Error, reason: "no authorities configured: nothing can verify " + kind + "s"}, false
	}
	if len(r.auths) == 0 {
		return nil, outcome{state: Error, reason: "authority configuration error: " + strings.Join(r.badAuth, "; ")}, false
	}
	return r, outcome{}, true
}

// signatures looks at every signature layout.
func (r *run) signatures(ctx context.Context) outcome {
	layouts := []layoutOutcome{r.legacy(ctx, kindSignature)}
	if err := ctx.Err(); err != nil {
		return outcome{state: Error, reason: "verification cancelled: " + err.Error()}
	}
	refs := r.referrers(ctx)
	layouts = append(layouts, r.bundles(ctx, refs, kindSignature), r.notations(ctx, refs))
	return r.merge(ctx, kindSignature, layouts)
}

// attestations looks at cosign's .att tag and at Sigstore bundles.
func (r *run) attestations(ctx context.Context) outcome {
	layouts := []layoutOutcome{r.legacy(ctx, kindAttestation)}
	if err := ctx.Err(); err != nil {
		return outcome{state: Error, reason: "verification cancelled: " + err.Error()}
	}
	layouts = append(layouts, r.bundles(ctx, r.referrers(ctx), kindAttestation))
	return r.merge(ctx, kindAttestation, layouts)
}

func (r *run) signatureResult(out outcome) SignatureResult {
	return SignatureResult{State: out.state, Signers: r.signersOf(out.hits), Reason: out.reason}
}

// remoteOptions are the registry options of every call of the run; they share one puller,
// so the registry handshake (ping, token) is done once per repository, not per request.
func (r *run) remoteOptions(ctx context.Context) []remote.Option {
	opts := append(append([]remote.Option{}, r.v.RegistryOptions...), remote.WithContext(ctx))
	if r.puller == nil {
		p, err := remote.NewPuller(opts...)
		if err != nil {
			return opts // the calls themselves will report the option error
		}
		r.puller = p
	}
	return append(opts, remote.Reuse(r.puller))
}

// signersOf lists distinct signers in the order the authorities were given.
func (r *run) signersOf(hits []hit) []Signer {
	var out []Signer
	seen := map[Signer]bool{}
	for _, c := range r.auths {
		for _, h := range hits {
			if h.signer.Authority == c.name && !seen[h.signer] {
				seen[h.signer] = true
				out = append(out, h.signer)
			}
		}
	}
	return out
}

// shortCause turns a library error into one line without advice that does not apply here.
func shortCause(err error) string {
	s := err.Error()
	s = strings.ReplaceAll(s, ". Check your TUF root (see cosign initialize) or set a custom root with env var SIGSTORE_ROOT_FILE", "")
	s = strings.Join(strings.Fields(s), " ")
	return truncate(sanitize(s), 300)
}

// sanitize strips credentials, query strings and fragments from URLs in a message: registry
// errors may carry tokens in either.
func sanitize(s string) string { return redact.Text(s) }

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

func uniq(list []string) []string {
	var out []string
	for _, s := range list {
		out = appendUnique(out, s)
	}
	return out
}

// shortDigest abbreviates a digest for reasons: "sha256:0123456789ab".
func shortDigest(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}
