package verify

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/notaryproject/notation-core-go/signature/cose"
	"github.com/notaryproject/notation-core-go/signature/jws"
	"github.com/notaryproject/notation-go"
	nverifier "github.com/notaryproject/notation-go/verifier"
	"github.com/notaryproject/notation-go/verifier/trustpolicy"
	"github.com/notaryproject/notation-go/verifier/truststore"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Notation verification levels, as in Notation's trust policy.
const (
	NotationStrict     = "strict"
	NotationPermissive = "permissive"
	NotationAudit      = "audit"
	NotationSkip       = "skip"
)

// Notation is a Notation authority's trust policy, in Notation's own terms (one trust policy
// of a trustpolicy.json, with its trust store inline).
type Notation struct {
	// TrustStorePEM holds the certificates of the "ca" trust store: signing certificate chains
	// must end in one of them.
	TrustStorePEM []byte
	// TSATrustStorePEM optionally holds the roots of timestamp authorities whose RFC 3161
	// countersignatures are trusted ("tsa" trust store).
	TSATrustStorePEM []byte
	// Scopes are the registry scopes the policy covers ("registry.example.com/team/app"), or
	// "*"; empty means "*".
	Scopes []string
	// TrustedIdentities are "x509.subject: C=..., ST=..., O=..." DNs the signing certificate's
	// subject must match, or "*"; empty means "*". Notation requires C, ST and O in each DN.
	TrustedIdentities []string
	// Level is strict (default), permissive, audit or skip. Whatever the level, imagetrust
	// reports Verified only when integrity and authenticity (the trust store and identities)
	// verified: audit never lets an untrusted certificate through, and skip verifies nothing.
	Level string
	// Revocation overrides the level's revocation check: "" keeps the level's, or "enforce",
	// "log", "skip". Enforcing contacts the OCSP/CRL URLs certificates carry: air-gapped
	// clusters set "skip" or "log".
	Revocation string
}

// notationAuthority is a compiled Notation trust policy.
type notationAuthority struct {
	verifier notation.Verifier
	skip     bool
}

// The envelope packages register the JWS and COSE formats with notation-core-go.
var notationEnvelopes = []string{jws.MediaTypeEnvelope, cose.MediaTypeEnvelope}

func compileNotation(name string, n Notation) (*notationAuthority, error) {
	if n.Level == NotationSkip {
		// Notation's skip level takes no trust store or identity: there is nothing to check.
		return &notationAuthority{skip: true}, nil
	}
	ca, err := parseCerts(n.TrustStorePEM)
	if err != nil || len(ca) == 0 {
		return nil, fmt.Errorf("trustStore: at least one PEM certificate is required (%v)", err)
	}
	tsa, err := parseCerts(n.TSATrustStorePEM)
	if err != nil {
		return nil, fmt.Errorf("tsaTrustStore: %v", err)
	}
	level := n.Level
	if level == "" {
		level = NotationStrict
	}
	sv := trustpolicy.SignatureVerification{VerificationLevel: level}
	if n.Revocation != "" {
		sv.Override = map[trustpolicy.ValidationType]trustpolicy.ValidationAction{
			trustpolicy.TypeRevocation: trustpolicy.ValidationAction(n.Revocation),
		}
	}
	stores := []string{"ca:imagetrust"}
	if len(tsa) > 0 {
		stores = append(stores, "tsa:imagetrust")
	}
	doc := &trustpolicy.Document{
		Version: "1.0",
		TrustPolicies: []trustpolicy.TrustPolicy{{
			Name:                  "imagetrust",
			RegistryScopes:        orStar(n.Scopes),
			SignatureVerification: sv,
			TrustStores:           stores,
			TrustedIdentities:     orStar(n.TrustedIdentities),
		}},
	}
	if err := doc.Validate(); err != nil {
		return nil, errors.New(strings.ReplaceAll(err.Error(), `"imagetrust"`, "of authority "+name))
	}
	v, err := nverifier.New(doc, memTrustStore{ca: ca, tsa: tsa}, nil)
	if err != nil {
		return nil, err
	}
	return &notationAuthority{verifier: v}, nil
}

func orStar(list []string) []string {
	if len(list) == 0 {
		return []string{"*"}
	}
	return list
}

// memTrustStore is Notation's X.509 trust store held in memory.
type memTrustStore struct{ ca, tsa []*x509.Certificate }

func (s memTrustStore) GetCertificates(_ context.Context, t truststore.Type, _ string) ([]*x509.Certificate, error) {
	switch t {
	case truststore.TypeCA:
		return s.ca, nil
	case truststore.TypeTSA:
		return s.tsa, nil
	}
	return nil, fmt.Errorf("no %s trust store", t)
}

// notations verifies the Notation signatures among the image's referrers.
func (r *run) notations(ctx context.Context, refs *referrerSet) layoutOutcome {
	l := newLayout("Notation referrers")
	l.errs = append(l.errs, refs.errs...)
	var artifact *ocispec.Descriptor
	for _, ref := range refs.notations {
		l.found++
		env, mediaType, err := r.loadNotation(ctx, ref)
		if err != nil {
			l.errs = append(l.errs, err.Error())
			continue
		}
		label := "Notation signature " + shortDigest(ref.digest) + ": "
		for _, c := range r.auths {
			if c.notation == nil {
				continue
			}
			if err := r.subjectError(ref.manifest); err != nil {
				l.cause(c.name, label+err.Error())
				continue
			}
			if artifact == nil {
				if artifact, err = r.artifactDescriptor(ctx); err != nil {
					l.errs = append(l.errs, err.Error())
					return l
				}
			}
			h, err := r.verifyNotation(ctx, c, *artifact, env, mediaType)
			if err != nil {
				l.cause(c.name, label+shortCause(err))
				continue
			}
			l.hits = append(l.hits, h)
		}
	}
	return l
}

// loadNotation fetches a signature envelope and returns it with its media type.
func (r *run) loadNotation(ctx context.Context, ref referrer) ([]byte, string, error) {
	layer, err := singleLayer(ref.manifest, func(mt string) bool {
		for _, e := range notationEnvelopes {
			if mt == e {
				return true
			}
		}
		return false
	})
	if err != nil {
		return nil, "", fmt.Errorf("unreadable Notation signature %s: %v (JWS and COSE envelopes are supported)", ref.digest, err)
	}
	env, err := r.blob(ctx, layer, maxEnvelopeBytes)
	if err != nil {
		return nil, "", err
	}
	return env, string(layer.MediaType), nil
}

// artifactDescriptor is the image's descriptor from the registry: a Notation payload names the
// media type and size of what was signed, and they must match.
func (r *run) artifactDescriptor(ctx context.Context) (*ocispec.Descriptor, error) {
	d, err := remote.Head(r.ref, r.remoteOptions(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("registry error: reading the descriptor of %s: %s", r.ref.DigestStr(), sanitize(err.Error()))
	}
	if d.Digest.String() != r.ref.DigestStr() {
		return nil, fmt.Errorf("registry error: %s answered with digest %s", r.ref.DigestStr(), d.Digest)
	}
	return &ocispec.Descriptor{MediaType: string(d.MediaType), Digest: digest.Digest(d.Digest.String()), Size: d.Size}, nil
}

// notationReference is the reference Notation matches registry scopes against.
func (r *run) notationReference() string {
	host := r.ref.Context().RegistryStr()
	if host == "index.docker.io" {
		host = "docker.io"
	}
	return host + "/" + r.ref.Context().RepositoryStr() + "@" + r.ref.DigestStr()
}

// verifyNotation runs notation-go's verifier on one envelope for one authority.
func (r *run) verifyNotation(ctx context.Context, c *compiled, artifact ocispec.Descriptor, env []byte, mediaType string) (hit, error) {
	if c.notation.skip {
		return hit{}, errors.New("verification level skip verifies nothing: use strict, permissive or audit")
	}
	out, err := c.notation.verifier.Verify(ctx, artifact, env, notation.VerifierVerifyOptions{
		ArtifactReference:  r.notationReference(),
		SignatureMediaType: mediaType,
	})
	if err != nil {
		return hit{}, err
	}
	if out == nil || out.EnvelopeContent == nil {
		return hit{}, errors.New("notation returned no verified envelope")
	}
	for _, vr := range out.VerificationResults {
		// Audit only logs authenticity failures; a signature counts only if it is authentic.
		if vr.Error != nil && (vr.Type == trustpolicy.TypeIntegrity || vr.Type == trustpolicy.TypeAuthenticity) {
			return hit{}, fmt.Errorf("%s: %w", vr.Type, vr.Error)
		}
	}
	return notationHit(c, out)
}

func notationHit(c *compiled, out *notation.VerificationOutcome) (hit, error) {
	si := out.EnvelopeContent.SignerInfo
	if len(si.CertificateChain) == 0 {
		return hit{}, errors.New("verified envelope has no certificate")
	}
	leaf := si.CertificateChain[0]
	fp, err := Fingerprint(leaf.PublicKey)
	if err != nil {
		return hit{}, err
	}
	proof := "none: certificate checked at verification time"
	if len(bytes.TrimSpace(si.UnsignedAttributes.TimestampSignature)) > 0 && authenticTimestampPassed(out) {
		proof = "RFC 3161 timestamp countersignature"
	}
	return hit{signer: Signer{
		Authority:              c.name,
		KeyFingerprint:         fp,
		Format:                 FormatNotation,
		TimeProof:              proof,
		CertificateSubject:     leaf.Subject.String(),
		CertificateFingerprint: certFingerprint(leaf),
	}}, nil
}

func authenticTimestampPassed(out *notation.VerificationOutcome) bool {
	for _, vr := range out.VerificationResults {
		if vr.Type == trustpolicy.TypeAuthenticTimestamp {
			return vr.Error == nil && vr.Action == trustpolicy.ActionEnforce
		}
	}
	return false
}
