// Package verify checks cosign signatures and in-toto attestations stored next to an artifact
// in an OCI registry, against a list of trusted authorities (public keys or keyless
// certificate identities), entirely offline apart from the registry: transparency-log proof
// is checked from the Rekor bundle carried by the signature, never by asking Rekor, and no
// TUF root is fetched.
//
// Verification fails closed: a registry, network or configuration problem yields Error, never
// Verified, and Unsigned is reported only when the registry positively says there is no
// signature manifest.
package verify

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/oci"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

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

// Signer identifies who made a verified signature.
type Signer struct {
	// Authority is the name of the authority that accepted the signature.
	Authority string `json:"authority"`
	// KeyFingerprint is "SHA256:<hex>" of the DER public key that verified the signature
	// (the authority's key, or the certificate's key for keyless signatures).
	KeyFingerprint string `json:"keyFingerprint"`
	// Subject is the certificate identity (email or URI SAN); empty for key-based signatures.
	Subject string `json:"subject,omitempty"`
	// Issuer is the certificate's OIDC issuer; empty for key-based signatures.
	Issuer string `json:"issuer,omitempty"`
}

// SignatureResult is the outcome of VerifySignatures.
type SignatureResult struct {
	State State `json:"state"`
	// Signers lists every (signature, authority) pair that verified.
	Signers []Signer `json:"signers,omitempty"`
	// Reason explains the state in terms a person can act on.
	Reason string `json:"reason,omitempty"`
}

// Verifier verifies signatures and attestations in registries. It holds no mutable state and
// is safe for concurrent use.
type Verifier struct {
	// RegistryOptions are go-containerregistry options (keychain, transport, retries) used
	// for every registry call. With none, registries are accessed anonymously.
	RegistryOptions []remote.Option
}

// VerifyDigestSignature checks that an arbitrary artifact digest (an image, an index, an SBOM
// referrer, a base image...) in any repository carries a signature from one of auths. The
// artifact's own manifest is never fetched, so any manifest type works.
func (v *Verifier) VerifyDigestSignature(ctx context.Context, ref name.Digest, auths []Authority) SignatureResult {
	return v.VerifySignatures(ctx, ref, auths)
}

// VerifySignatures checks the cosign signatures stored for ref against every authority and
// reports all signers that verified.
func (v *Verifier) VerifySignatures(ctx context.Context, ref name.Digest, auths []Authority) SignatureResult {
	run, res, ok := v.start(ctx, ref, auths, "signature")
	if !ok {
		return SignatureResult{State: res.state, Reason: res.reason}
	}
	out := run.verifyAll(ctx, func(c *compiled) *cosign.CheckOpts {
		co := run.checkOpts(c)
		co.ClaimVerifier = signatureClaims
		return co
	}, func(ctx context.Context, sig oci.Signature, co *cosign.CheckOpts) error {
		_, err := cosign.VerifyImageSignature(ctx, sig, run.hash, co)
		return err
	}, nil)
	return SignatureResult{State: out.state, Signers: run.signersOf(out.hits), Reason: out.reason}
}

// signatureClaims binds a simple-signing payload to the digest being verified, so a signature
// copied from another image is rejected.
func signatureClaims(sig oci.Signature, h v1.Hash, ann map[string]interface{}) error {
	if err := cosign.SimpleClaimVerifier(sig, h, ann); err != nil {
		return fmt.Errorf("signature payload is not for %s: %w", h, err)
	}
	return nil
}

// run is one verification call: the parsed authorities and the fetched signatures.
type run struct {
	ref     name.Digest
	hash    v1.Hash
	kind    string // "signature" or "attestation"
	auths   []*compiled
	badAuth []string // configuration errors of authorities that could not be parsed
	sigs    []oci.Signature
	// fetchErrs are registry errors reading individual signature layers.
	fetchErrs []string
}

type outcome struct {
	state  State
	reason string
	hits   []hit
}

// hit is one signature accepted by one authority.
type hit struct {
	signer Signer
	sig    oci.Signature
}

// start parses the authorities and fetches the signatures (or attestations). ok is false when
// the outcome is already decided.
func (v *Verifier) start(ctx context.Context, ref name.Digest, auths []Authority, kind string) (*run, outcome, bool) {
	if err := ctx.Err(); err != nil {
		return nil, outcome{state: Error, reason: "verification cancelled: " + err.Error()}, false
	}
	h, err := v1.NewHash(ref.DigestStr())
	if err != nil {
		return nil, outcome{state: Error, reason: fmt.Sprintf("invalid digest %q: %v", ref.DigestStr(), err)}, false
	}
	r := &run{ref: ref, hash: h, kind: kind}
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

	opts := v.ociOptions(ctx)
	var tag name.Tag
	if kind == "attestation" {
		tag, err = ociremote.AttestationTag(ref, opts...)
	} else {
		tag, err = ociremote.SignatureTag(ref, opts...)
	}
	if err != nil {
		return nil, outcome{state: Error, reason: "registry error: " + sanitize(err.Error())}, false
	}
	sigs, err := ociremote.Signatures(tag, opts...)
	if err != nil {
		return nil, outcome{state: Error, reason: fmt.Sprintf("registry error: reading %ss of %s: %s", kind, ref.DigestStr(), sanitize(err.Error()))}, false
	}
	list, err := sigs.Get()
	if err != nil {
		return nil, outcome{state: Error, reason: fmt.Sprintf("registry error: reading %ss of %s: %s", kind, ref.DigestStr(), sanitize(err.Error()))}, false
	}
	if len(list) == 0 {
		return nil, outcome{state: Unsigned, reason: fmt.Sprintf("no %ss found for %s", kind, ref.DigestStr())}, false
	}
	for _, s := range list {
		// Read each payload once: it is the only part of a signature that lives in a blob, so
		// a failure here is the registry's, not the signature's.
		pl, err := s.Payload()
		if err != nil {
			r.fetchErrs = append(r.fetchErrs, sanitize(err.Error()))
			continue
		}
		r.sigs = append(r.sigs, &loadedSig{ociSignature: s, payload: pl})
	}
	return r, outcome{}, true
}

// loadedSig serves a signature's payload from memory so cosign's repeated reads don't go back
// to the registry.
type loadedSig struct {
	ociSignature
	payload []byte
}

// ociSignature lets loadedSig embed oci.Signature despite its Signature method.
type ociSignature = oci.Signature

func (s *loadedSig) Payload() ([]byte, error) { return s.payload, nil }

func (v *Verifier) ociOptions(ctx context.Context) []ociremote.Option {
	ropts := append(append([]remote.Option{}, v.RegistryOptions...), remote.WithContext(ctx))
	return []ociremote.Option{ociremote.WithRemoteOptions(ropts...)}
}

// checkOpts builds cosign's options for one authority. Nothing here can reach the network:
// no Rekor client, no TUF trusted root, and Offline set so cosign never looks up the log.
func (r *run) checkOpts(c *compiled) *cosign.CheckOpts {
	co := &cosign.CheckOpts{
		IgnoreTlog:   c.ignoreTlog,
		RekorPubKeys: c.rekor,
		Offline:      true,
		MaxWorkers:   1,
	}
	if c.keyless() {
		co.RootCerts = c.roots
		co.IntermediateCerts = c.intermediates
		co.Identities = c.identities
		co.IgnoreSCT = c.ignoreSCT
		co.CTLogPubKeys = c.ctLog
	} else {
		co.SigVerifier = c.verifier
	}
	return co
}

type verifyFn func(ctx context.Context, sig oci.Signature, co *cosign.CheckOpts) error

// verifyAll tries every signature against every authority. check, when set, runs after cosign
// accepted a signature, as an extra fail-closed gate.
func (r *run) verifyAll(ctx context.Context, opts func(*compiled) *cosign.CheckOpts, fn verifyFn, check func(oci.Signature) error) outcome {
	causes := map[string][]string{}
	var hits []hit
	for _, sig := range r.sigs {
		for _, c := range r.auths {
			if err := ctx.Err(); err != nil {
				return outcome{state: Error, reason: "verification cancelled: " + err.Error()}
			}
			err := r.precheck(c, sig)
			if err == nil {
				err = fn(ctx, sig, opts(c))
			}
			if err == nil && check != nil {
				err = check(sig)
			}
			if err != nil {
				causes[c.name] = appendUnique(causes[c.name], shortCause(err))
				continue
			}
			s, err := signerOf(c, sig)
			if err != nil {
				causes[c.name] = appendUnique(causes[c.name], shortCause(err))
				continue
			}
			hits = append(hits, hit{signer: s, sig: sig})
		}
	}
	if len(hits) > 0 {
		var names []string
		for _, h := range hits {
			names = appendUnique(names, h.signer.Authority)
		}
		return outcome{state: Verified, hits: hits, reason: fmt.Sprintf("%s verified by authorities [%s]", r.kind, strings.Join(names, ", "))}
	}
	if len(r.fetchErrs) > 0 {
		return outcome{state: Error, reason: fmt.Sprintf("registry error: reading %s payloads of %s: %s", r.kind, r.ref.DigestStr(), strings.Join(uniq(r.fetchErrs), "; "))}
	}
	var names, parts []string
	for _, c := range r.auths {
		names = append(names, c.name)
		if len(r.auths) == 1 {
			parts = append(parts, strings.Join(causes[c.name], "; "))
		} else {
			parts = append(parts, c.name+": "+strings.Join(causes[c.name], "; "))
		}
	}
	n := len(r.sigs)
	plural := r.kind
	if n != 1 {
		plural += "s"
	}
	reason := fmt.Sprintf("%d %s found, none verified by authorities [%s]: %s", n, plural, strings.Join(names, ", "), truncate(strings.Join(parts, " | "), 600))
	if len(r.badAuth) > 0 {
		// A misconfigured authority might have accepted the signature: the result is not a
		// verdict on the image, so report it as an error to be fixed.
		return outcome{state: Error, reason: "authority configuration error: " + strings.Join(r.badAuth, "; ") + "; " + reason}
	}
	return outcome{state: Invalid, reason: reason}
}

// precheck enforces transparency-log policy before cosign runs, with reasons that say what to
// do, and guarantees cosign is never asked to look up the log online.
func (r *run) precheck(c *compiled, sig oci.Signature) error {
	if c.ignoreTlog {
		return nil
	}
	if c.rekor == nil {
		return errors.New("transparency-log proof is required but the authority has no Rekor public key to check it offline (configure rekorPublicKey, or set ignoreTlog to accept signatures without it)")
	}
	b, err := sig.Bundle()
	if err != nil {
		return fmt.Errorf("reading Rekor bundle: %w", err)
	}
	if b == nil {
		return fmt.Errorf("transparency-log proof is required but the %s carries no Rekor bundle", r.kind)
	}
	return nil
}

// signerOf describes who made a signature cosign has accepted for authority c.
func signerOf(c *compiled, sig oci.Signature) (Signer, error) {
	if !c.keyless() {
		return Signer{Authority: c.name, KeyFingerprint: c.fingerprint}, nil
	}
	cert, err := sig.Cert()
	if err != nil {
		return Signer{}, err
	}
	if cert == nil {
		return Signer{}, errors.New("no certificate on signature")
	}
	fp, err := Fingerprint(cert.PublicKey)
	if err != nil {
		return Signer{}, err
	}
	ce := cosign.CertExtensions{Cert: cert}
	return Signer{
		Authority:      c.name,
		KeyFingerprint: fp,
		Subject:        matchedSubject(cert, c),
		Issuer:         ce.GetIssuer(),
	}, nil
}

// matchedSubject picks the SAN that satisfied the authority's identities (certificates usually
// have exactly one).
func matchedSubject(cert *x509.Certificate, c *compiled) string {
	sans := cryptoutils.GetSubjectAlternateNames(cert)
	for i, id := range c.identities {
		for _, san := range sans {
			if (id.Subject != "" && san == id.Subject) || (c.subjectREs[i] != nil && c.subjectREs[i].MatchString(san)) {
				return san
			}
		}
	}
	if len(sans) > 0 {
		return sans[0]
	}
	return ""
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

// shortCause turns a cosign error into one line without advice that does not apply here.
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
