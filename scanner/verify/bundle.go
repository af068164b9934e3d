package verify

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/root"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	"golang.org/x/mod/semver"
	"google.golang.org/protobuf/encoding/protojson"
)

// CosignSignPredicateType is the predicate of the in-toto statement cosign v3 signs images
// with: a bundle with this predicate is a signature, any other predicate an attestation.
const CosignSignPredicateType = "https://sigstore.dev/cosign/sign/v1"

// loadedBundle is a parsed bundle with what its (not yet verified) content claims to be.
type loadedBundle struct {
	digest string
	b      *bundle.Bundle
	// payloadType and payload are the DSSE content; empty for message signatures.
	payloadType string
	payload     []byte
	// predicateType classifies the bundle before verification decides whether it counts.
	predicateType string
}

func (lb *loadedBundle) kind() string {
	if lb.payload == nil || lb.predicateType == CosignSignPredicateType {
		return kindSignature
	}
	return kindAttestation
}

// bundles verifies the Sigstore bundles among the image's referrers that are of kind.
func (r *run) bundles(ctx context.Context, refs *referrerSet, kind string) layoutOutcome {
	l := newLayout("Sigstore bundle referrers")
	l.errs = append(l.errs, refs.errs...)
	for _, ref := range refs.bundles {
		lb, err := r.bundle(ctx, ref)
		if err != nil {
			if hint := kindHint(ref.manifest); hint == "" || hint == kind {
				l.errs = append(l.errs, err.Error())
			}
			continue
		}
		if lb.kind() != kind {
			continue
		}
		l.found++
		label := "Sigstore bundle " + shortDigest(ref.digest) + ": "
		for _, c := range r.auths {
			if c.notation != nil {
				continue
			}
			h, err := r.verifyBundle(ctx, c, lb, ref)
			switch {
			case err == nil:
				l.hits = append(l.hits, h)
			case isUnavailable(err):
				l.errs = appendUnique(l.errs, err.Error())
			default:
				l.cause(c.name, label+bundleCause(err, lb))
			}
		}
	}
	return l
}

// bundlePredicateAnnotation is where cosign writes a bundle's predicate type on its manifest.
const bundlePredicateAnnotation = "dev.sigstore.bundle.predicateType"

// kindHint is the kind a bundle manifest's (unsigned) annotation claims, "" when it says
// nothing. It only decides which result an unreadable bundle makes an Error.
func kindHint(m *v1.Manifest) string {
	switch pt := m.Annotations[bundlePredicateAnnotation]; pt {
	case "":
		return ""
	case CosignSignPredicateType:
		return kindSignature
	default:
		return kindAttestation
	}
}

type bundleLoad struct {
	lb  *loadedBundle
	err error
}

// bundle loads a bundle once per run: VerifyImage looks at each for signatures and for
// attestations.
func (r *run) bundle(ctx context.Context, ref referrer) (*loadedBundle, error) {
	if l, ok := r.bundleCache[ref.digest]; ok {
		return l.lb, l.err
	}
	lb, err := r.loadBundle(ctx, ref)
	if r.bundleCache == nil {
		r.bundleCache = map[string]bundleLoad{}
	}
	r.bundleCache[ref.digest] = bundleLoad{lb, err}
	return lb, err
}

// loadBundle fetches and parses one bundle referrer. Errors are registry errors or unreadable
// bundles: either way no verdict can be given on it.
func (r *run) loadBundle(ctx context.Context, ref referrer) (*loadedBundle, error) {
	layer, err := singleLayer(ref.manifest, func(mt string) bool { return strings.HasPrefix(mt, BundleMediaTypePrefix) })
	if err != nil {
		return nil, fmt.Errorf("unreadable Sigstore bundle referrer %s: %v", ref.digest, err)
	}
	data, err := r.blob(ctx, layer, maxBundleBytes)
	if err != nil {
		return nil, err
	}
	b, err := parseBundle(data)
	if err != nil {
		return nil, fmt.Errorf("unreadable Sigstore bundle %s: %v", ref.digest, err)
	}
	lb := &loadedBundle{digest: ref.digest, b: b}
	if env := b.GetDsseEnvelope(); env != nil {
		lb.payloadType, lb.payload = env.GetPayloadType(), env.GetPayload()
		var st struct {
			PredicateType string `json:"predicateType"`
		}
		if err := json.Unmarshal(lb.payload, &st); err != nil {
			return nil, fmt.Errorf("unreadable Sigstore bundle %s: DSSE payload is not an in-toto statement: %v", ref.digest, err)
		}
		lb.predicateType = st.PredicateType
	}
	return lb, nil
}

// bundleCause words sigstore-go's errors for the report.
func bundleCause(err error, lb *loadedBundle) string {
	s := shortCause(err)
	switch {
	case strings.Contains(s, "accepted signatures do not match threshold"):
		return "invalid DSSE envelope signature (" + s + ")"
	case strings.Contains(s, "leaf certificate verification failed"):
		vc, verr := lb.b.VerificationContent()
		if verr != nil || vc.Certificate() == nil {
			return s
		}
		if until := vc.Certificate().NotAfter; time.Now().After(until) {
			return s + fmt.Sprintf(" (the certificate expired at %s and no trusted timestamp or log entry proves a signing time within its validity)", until.UTC().Format(time.RFC3339))
		}
		return s + " (the certificate does not chain to a trusted root at the proven signing time)"
	}
	return s
}

// parseBundle parses bundle JSON of any supported version. Certificate chains are allowed in
// v0.3 bundles (cosign writes them for private CAs); trust is still decided by the roots.
func parseBundle(data []byte) (*bundle.Bundle, error) {
	pb := &protobundle.Bundle{}
	if err := protojson.Unmarshal(data, pb); err != nil {
		return nil, err
	}
	v, err := (&bundle.Bundle{Bundle: pb}).Version()
	if err != nil {
		return nil, err
	}
	var opts []bundle.Option
	if semver.Compare(v, "v0.3") >= 0 {
		opts = append(opts, bundle.AllowCertificateChain())
	}
	return bundle.NewBundle(pb, opts...)
}

// verifyBundle checks one bundle for one authority with sigstore-go: signature, binding to the
// image digest, key or certificate identity, and the time proof the authority requires.
func (r *run) verifyBundle(ctx context.Context, c *compiled, lb *loadedBundle, ref referrer) (hit, error) {
	if err := r.subjectError(ref.manifest); err != nil {
		return hit{}, err
	}
	m, err := c.material(ctx)
	if err != nil {
		return hit{}, err
	}
	if !c.keyless() {
		m = keyMaterial(m, c.verifier)
	}
	vopts, err := bundleVerifierOptions(c, lb.b, m)
	if err != nil {
		return hit{}, err
	}
	v, err := sgverify.NewVerifier(m, vopts...)
	if err != nil {
		return hit{}, err
	}
	digest, err := hex.DecodeString(r.hash.Hex)
	if err != nil {
		return hit{}, err
	}
	popts, err := c.bundlePolicy()
	if err != nil {
		return hit{}, err
	}
	var entity sgverify.SignedEntity = lb.b
	if c.intermediates != nil {
		entity = withoutChain{lb.b} // configured intermediates are the only ones used
	}
	res, err := v.Verify(entity, sgverify.NewPolicy(sgverify.WithArtifactDigest(r.hash.Algorithm, digest), popts...))
	if err != nil {
		return hit{}, err
	}
	var st *statement
	if lb.payload != nil {
		// sigstore-go matched a subject already; this re-check is independent of it.
		if st, err = statementAbout(lb.payloadType, lb.payload, r.hash); err != nil {
			return hit{}, err
		}
	}
	s, err := bundleSigner(c, lb.b, res, m)
	if err != nil {
		return hit{}, err
	}
	return hit{signer: s, statement: st}, nil
}

// bundleVerifierOptions decides which proofs a bundle must carry. Without ignoreTlog a bundle
// needs a Rekor entry (v1 signed entry timestamp or inclusion proof, v2 inclusion proof and
// checkpoint) or an RFC 3161 timestamp, each verified by the trusted material. A certificate
// is only accepted at a proven time: the log's integration time or a trusted timestamp; with
// ignoreTlog and no trusted timestamp, at the time of verification, as cosign does.
func bundleVerifierOptions(c *compiled, b *bundle.Bundle, m root.TrustedMaterial) ([]sgverify.VerifierOption, error) {
	entries, err := b.TlogEntries()
	if err != nil {
		return nil, err
	}
	stamps, err := b.Timestamps()
	if err != nil {
		return nil, err
	}
	var opts []sgverify.VerifierOption
	if c.keyless() && !c.ignoreSCT {
		opts = append(opts, sgverify.WithSignedCertificateTimestamps(1))
	}
	trustsTSA := len(m.TimestampingAuthorities()) > 0
	switch {
	case !c.ignoreTlog && len(entries) > 0:
		if len(m.RekorLogs()) == 0 {
			return nil, errors.New("the bundle's transparency-log entry cannot be checked: the authority trusts no Rekor log (configure rekorPublicKey or a trust root)")
		}
		opts = append(opts, sgverify.WithTransparencyLog(1))
		if c.keyless() {
			opts = append(opts, sgverify.WithObserverTimestamps(1))
		} else {
			opts = append(opts, sgverify.WithNoObserverTimestamps())
		}
	case !c.ignoreTlog && len(stamps) > 0:
		if !trustsTSA {
			return nil, errors.New("the bundle's RFC 3161 timestamp cannot be checked: the authority trusts no timestamp authority (configure a trust root with one)")
		}
		opts = append(opts, sgverify.WithSignedTimestamps(1))
	case !c.ignoreTlog:
		return nil, errors.New("transparency-log proof is required but the bundle carries no Rekor entry and no RFC 3161 timestamp (set ignoreTlog to accept it without)")
	case c.keyless() && len(stamps) > 0 && trustsTSA:
		opts = append(opts, sgverify.WithSignedTimestamps(1))
	case c.keyless():
		opts = append(opts, sgverify.WithCurrentTime())
	default:
		opts = append(opts, sgverify.WithNoObserverTimestamps())
	}
	return opts, nil
}

// bundlePolicy is the identity half of sigstore-go's policy: the pinned key, or any of the
// keyless identities.
func (c *compiled) bundlePolicy() ([]sgverify.PolicyOption, error) {
	if !c.keyless() {
		return []sgverify.PolicyOption{sgverify.WithKey()}, nil
	}
	var opts []sgverify.PolicyOption
	for _, id := range c.identities {
		san, err := sgverify.NewSANMatcher(id.Subject, id.SubjectRegExp)
		if err != nil {
			return nil, err
		}
		iss, err := sgverify.NewIssuerMatcher(id.Issuer, id.IssuerRegExp)
		if err != nil {
			return nil, err
		}
		ci, err := sgverify.NewCertificateIdentity(san, iss, certificate.Extensions{})
		if err != nil {
			return nil, err
		}
		opts = append(opts, sgverify.WithCertificateIdentity(ci))
	}
	return opts, nil
}

// bundleSigner describes a verified bundle's signer and what proved its time.
func bundleSigner(c *compiled, b *bundle.Bundle, res *sgverify.VerificationResult, m root.TrustedMaterial) (Signer, error) {
	s := Signer{Authority: c.name, Format: FormatSigstoreBundle, TimeProof: timeProof(c, b, res, m)}
	if !c.keyless() {
		s.KeyFingerprint = c.fingerprint
		return s, nil
	}
	vc, err := b.VerificationContent()
	if err != nil {
		return Signer{}, err
	}
	cert := vc.Certificate()
	if cert == nil || res.Signature == nil || res.Signature.Certificate == nil {
		return Signer{}, errors.New("verified bundle has no certificate")
	}
	if s.KeyFingerprint, err = Fingerprint(cert.PublicKey); err != nil {
		return Signer{}, err
	}
	s.Subject, s.Issuer = res.Signature.Certificate.SubjectAlternativeName, res.Signature.Certificate.Issuer
	s.CertificateFingerprint = certFingerprint(cert)
	return s, nil
}

// timeProof names the log entries and timestamps that verified, in the words of the report.
func timeProof(c *compiled, b *bundle.Bundle, res *sgverify.VerificationResult, m root.TrustedMaterial) string {
	var parts []string
	if !c.ignoreTlog {
		entries, _ := b.TlogEntries() // parsed already by the verification that succeeded
		logs := m.RekorLogs()
		for _, e := range entries {
			if _, ok := logs[hex.EncodeToString([]byte(e.LogKeyID()))]; !ok {
				continue // an entry of a log the authority does not trust proved nothing
			}
			if e.IsRekorV2() {
				parts = append(parts, fmt.Sprintf("rekor v2 log index %d (inclusion proof, checkpoint)", e.LogIndex()))
			} else {
				parts = append(parts, fmt.Sprintf("rekor v1 log index %d, integrated %s", e.LogIndex(), e.IntegratedTime().UTC().Format(time.RFC3339)))
			}
		}
	}
	for _, ts := range res.VerifiedTimestamps {
		switch ts.Type {
		case "TimestampAuthority":
			by := ts.URI
			if by == "" {
				by = "a trusted TSA"
			}
			parts = append(parts, fmt.Sprintf("RFC 3161 timestamp by %s at %s", by, ts.Timestamp.UTC().Format(time.RFC3339)))
		case "CurrentTime":
			parts = append(parts, "none: transparency log ignored, certificate checked at verification time")
		}
	}
	if len(parts) == 0 {
		return "none: transparency log ignored"
	}
	return strings.Join(parts, "; ")
}

// withoutChain hides the certificate chain a bundle carries, so only the authority's
// configured intermediates build the path.
type withoutChain struct{ *bundle.Bundle }

func (w withoutChain) VerificationContent() (sgverify.VerificationContent, error) {
	vc, err := w.Bundle.VerificationContent()
	if err != nil {
		return nil, err
	}
	return leafOnly{vc}, nil
}

type leafOnly struct{ sgverify.VerificationContent }

func (leafOnly) Intermediates() []*x509.Certificate { return nil }
