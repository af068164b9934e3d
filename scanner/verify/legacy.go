package verify

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/oci"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// legacy verifies cosign's ".sig" or ".att" tag layout with cosign's own verifier.
func (r *run) legacy(ctx context.Context, kind string) layoutOutcome {
	l := newLayout("cosign .sig tag")
	if kind == kindAttestation {
		l.name = "cosign .att tag"
	}
	sigs, err := r.legacySignatures(ctx, kind)
	if err != nil {
		l.errs = append(l.errs, err.Error())
		return l
	}
	l.found = len(sigs.list)
	l.errs = append(l.errs, sigs.fetchErrs...)
	for _, sig := range sigs.list {
		for _, c := range r.auths {
			if c.notation != nil {
				continue
			}
			if err := ctx.Err(); err != nil {
				return l
			}
			h, err := r.legacyOne(ctx, c, sig, kind)
			if err != nil {
				if isUnavailable(err) {
					l.errs = appendUnique(l.errs, err.Error())
				} else {
					l.cause(c.name, shortCause(err))
				}
				continue
			}
			l.hits = append(l.hits, h)
		}
	}
	return l
}

type legacySigs struct {
	list []oci.Signature
	// fetchErrs are registry errors reading individual signature layers.
	fetchErrs []string
}

// legacySignatures reads the signatures (or attestations) stored under the digest's tag. No
// tag manifest means none.
func (r *run) legacySignatures(ctx context.Context, kind string) (legacySigs, error) {
	opts := []ociremote.Option{ociremote.WithRemoteOptions(r.remoteOptions(ctx)...)}
	var tag name.Tag
	var err error
	if kind == kindAttestation {
		tag, err = ociremote.AttestationTag(r.ref, opts...)
	} else {
		tag, err = ociremote.SignatureTag(r.ref, opts...)
	}
	if err != nil {
		return legacySigs{}, errors.New("registry error: " + sanitize(err.Error()))
	}
	sigs, err := ociremote.Signatures(tag, opts...)
	if err == nil {
		var list []oci.Signature
		if list, err = sigs.Get(); err == nil {
			return loadPayloads(list), nil
		}
	}
	return legacySigs{}, fmt.Errorf("registry error: reading %ss of %s: %s", kind, r.ref.DigestStr(), sanitize(err.Error()))
}

// loadPayloads reads each payload once: it is the only part of a signature that lives in a
// blob, so a failure here is the registry's, not the signature's.
func loadPayloads(list []oci.Signature) legacySigs {
	var out legacySigs
	for _, s := range list {
		pl, err := s.Payload()
		if err != nil {
			out.fetchErrs = append(out.fetchErrs, "registry error: reading payload: "+sanitize(err.Error()))
			continue
		}
		out.list = append(out.list, &loadedSig{ociSignature: s, payload: pl})
	}
	return out
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

// legacyOne verifies one signature for one authority with cosign.
func (r *run) legacyOne(ctx context.Context, c *compiled, sig oci.Signature, kind string) (hit, error) {
	if err := r.precheck(c, sig, kind); err != nil {
		return hit{}, err
	}
	co, err := r.checkOpts(ctx, c)
	if err != nil {
		return hit{}, err
	}
	var st *statement
	if kind == kindAttestation {
		co.ClaimVerifier = attestationClaims
		// VerifyBlobAttestation is cosign's per-attestation check (DSSE signature,
		// certificate, bundle, then ClaimVerifier against the digest), the one
		// VerifyImageAttestations loops over.
		if _, err = cosign.VerifyBlobAttestation(ctx, sig, r.hash, co); err != nil && strings.Contains(err.Error(), "accepted signatures do not match threshold") {
			// go-securesystemslib's wording for "the envelope signature is not this key's".
			err = fmt.Errorf("invalid DSSE envelope signature (%w)", err)
		}
		if err == nil {
			// An extra fail-closed gate, independent of cosign's claim verifier.
			st, err = legacyStatement(sig, r.hash)
		}
	} else {
		co.ClaimVerifier = signatureClaims
		_, err = cosign.VerifyImageSignature(ctx, sig, r.hash, co)
	}
	if err != nil {
		return hit{}, err
	}
	s, err := legacySigner(c, sig)
	if err != nil {
		return hit{}, err
	}
	return hit{signer: s, statement: st}, nil
}

// signatureClaims binds a simple-signing payload to the digest being verified, so a signature
// copied from another image is rejected.
func signatureClaims(sig oci.Signature, h v1.Hash, ann map[string]interface{}) error {
	if err := cosign.SimpleClaimVerifier(sig, h, ann); err != nil {
		return fmt.Errorf("signature payload is not for %s: %w", h, err)
	}
	return nil
}

// checkOpts builds cosign's options for one authority. Nothing here can reach the network:
// no Rekor client, no TUF fetch, and Offline set so cosign never looks up the log. With a
// trust root, cosign takes all trusted material from it (its TrustedMaterial excludes the
// individual key and pool fields).
func (r *run) checkOpts(ctx context.Context, c *compiled) (*cosign.CheckOpts, error) {
	co := &cosign.CheckOpts{IgnoreTlog: c.ignoreTlog, Offline: true, MaxWorkers: 1}
	if c.trustRoot != nil {
		m, err := c.material(ctx)
		if err != nil {
			return nil, err
		}
		co.TrustedMaterial = m
	} else {
		co.RekorPubKeys = c.rekor
	}
	if !c.keyless() {
		co.SigVerifier = c.verifier
		return co, nil
	}
	co.Identities = c.identities
	co.IgnoreSCT = c.ignoreSCT
	if c.trustRoot == nil {
		co.RootCerts = c.roots
		co.IntermediateCerts = c.intermediates
		co.CTLogPubKeys = c.ctLog
	}
	return co, nil
}

// precheck enforces transparency-log policy before cosign runs, with reasons that say what to
// do, and guarantees cosign is never asked to look up the log online.
func (r *run) precheck(c *compiled, sig oci.Signature, kind string) error {
	if c.ignoreTlog {
		return nil
	}
	if c.rekor == nil && c.trustRoot == nil {
		return errors.New("transparency-log proof is required but the authority has no Rekor public key to check it offline (configure rekorPublicKey or a trust root, or set ignoreTlog to accept signatures without it)")
	}
	b, err := sig.Bundle()
	if err != nil {
		return fmt.Errorf("reading Rekor bundle: %w", err)
	}
	if b == nil {
		return fmt.Errorf("transparency-log proof is required but the %s carries no Rekor bundle", kind)
	}
	return nil
}

// legacySigner describes who made a signature cosign has accepted for authority c.
func legacySigner(c *compiled, sig oci.Signature) (Signer, error) {
	s := Signer{Authority: c.name, Format: FormatCosignLegacy, TimeProof: "none: transparency log ignored"}
	if !c.ignoreTlog {
		b, err := sig.Bundle()
		if err != nil || b == nil {
			return Signer{}, errors.New("no Rekor bundle on a signature that required one")
		}
		s.TimeProof = fmt.Sprintf("rekor v1 log index %d (signed entry timestamp)", b.Payload.LogIndex)
	} else if c.keyless() {
		s.TimeProof = "none: transparency log ignored, certificate checked at verification time"
	}
	if !c.keyless() {
		s.KeyFingerprint = c.fingerprint
		return s, nil
	}
	cert, err := sig.Cert()
	if err != nil {
		return Signer{}, err
	}
	if cert == nil {
		return Signer{}, errors.New("no certificate on signature")
	}
	if s.KeyFingerprint, err = Fingerprint(cert.PublicKey); err != nil {
		return Signer{}, err
	}
	ce := cosign.CertExtensions{Cert: cert}
	s.Subject, s.Issuer = matchedSubject(cryptoutils.GetSubjectAlternateNames(cert), c), ce.GetIssuer()
	s.CertificateFingerprint = certFingerprint(cert)
	return s, nil
}

// matchedSubject picks the SAN that satisfied the authority's identities (certificates usually
// have exactly one).
func matchedSubject(sans []string, c *compiled) string {
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

// certFingerprint is "SHA256:<hex>" of a certificate's DER encoding.
func certFingerprint(cert *x509.Certificate) string {
	return "SHA256:" + sha256Hex(cert.Raw)
}
