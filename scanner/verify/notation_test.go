package verify

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imagetrust/imagetrust/scanner/verify/signtest"
)

func notaryAuthority(n string, s *signtest.NotationSigner, mod func(*Notation)) Authority {
	cfg := &Notation{TrustStorePEM: s.RootPEM, TrustedIdentities: []string{s.Identity}, Revocation: "skip"}
	if mod != nil {
		mod(cfg)
	}
	return Authority{Name: n, Notation: cfg}
}

func newNotationSigner(t *testing.T, org string, notAfter time.Time) *signtest.NotationSigner {
	t.Helper()
	s, err := signtest.NewNotationSigner(org, notAfter)
	mustDo(t, err)
	return s
}

func TestNotationVerifies(t *testing.T) {
	s := newNotationSigner(t, "acme", time.Time{})
	for _, l := range layouts {
		for _, env := range []string{signtest.NotationJWS, signtest.NotationCOSE} {
			t.Run(l.name+"/"+env, func(t *testing.T) {
				host := testRegistryWith(t, l.referrers, nil)
				ref := pushImage(t, host, "app")
				mustDo(t, s.Sign(ctx, ref, env, true))
				res := verifier().VerifySignatures(ctx, ref, []Authority{notaryAuthority("notary", s, nil)})
				want := Signer{
					Authority: "notary", KeyFingerprint: fingerprintOf(t, s.Leaf.PublicKey), Format: FormatNotation,
					TimeProof:          "none: certificate checked at verification time",
					CertificateSubject: "CN=acme release,O=acme,L=Seattle,ST=WA,C=US", CertificateFingerprint: s.Fingerprint(),
				}
				if res.State != Verified || len(res.Signers) != 1 || res.Signers[0] != want {
					t.Fatalf("got %+v, want Verified by %+v", res, want)
				}
				mustContain(t, "reason", res.Reason, "Notation referrers: 1 found, verified")
			})
		}
	}
}

func TestNotationNegatives(t *testing.T) {
	s := newNotationSigner(t, "acme", time.Time{})
	other := newNotationSigner(t, "evil", time.Time{})
	host := testRegistryWith(t, true, nil)
	for i, tc := range []struct {
		name  string
		sign  func(t *testing.T, ref name.Digest)
		auth  Authority
		state State
		want  string
	}{
		{"untrusted root", func(t *testing.T, ref name.Digest) { mustDo(t, other.Sign(ctx, ref, signtest.NotationJWS, true)) },
			notaryAuthority("notary", s, nil), Invalid, "the signature's certificate chain does not contain any trusted certificate"},
		{"wrong identity", func(t *testing.T, ref name.Digest) { mustDo(t, s.Sign(ctx, ref, signtest.NotationCOSE, true)) },
			notaryAuthority("notary", s, func(n *Notation) {
				n.TrustedIdentities = []string{"x509.subject: C=US, ST=WA, O=acme, CN=someone else"}
			}), Invalid, "signing certificate from the digital signature does not match the X.509 trusted identities"},
		{"audit does not accept an untrusted root", func(t *testing.T, ref name.Digest) {
			mustDo(t, other.Sign(ctx, ref, signtest.NotationJWS, true))
		}, notaryAuthority("notary", s, func(n *Notation) { n.Level = NotationAudit }), Invalid, "authenticity: "},
		{"skip verifies nothing", func(t *testing.T, ref name.Digest) { mustDo(t, s.Sign(ctx, ref, signtest.NotationJWS, true)) },
			notaryAuthority("notary", s, func(n *Notation) { n.Level = NotationSkip }), Invalid, "verification level skip verifies nothing"},
		{"scope excludes the repository", func(t *testing.T, ref name.Digest) { mustDo(t, s.Sign(ctx, ref, signtest.NotationJWS, true)) },
			notaryAuthority("notary", s, func(n *Notation) { n.Scopes = []string{"registry.example.com/other"} }), Invalid, "has no applicable trust policy statement"},
		{"copied from another digest", func(t *testing.T, ref name.Digest) {
			src := pushImage(t, host, fmt.Sprintf("notation-src/%d", time.Now().UnixNano()))
			mustDo(t, s.Sign(ctx, src, signtest.NotationJWS, true))
			copyReferrers(t, src, ref)
		}, notaryAuthority("notary", s, nil), Invalid, "content descriptor mismatch"},
		{"cosign signature only", func(t *testing.T, ref name.Digest) {
			mustDo(t, signtest.SignImage(ctx, ref, newKey(t), writeOpts()...))
		},
			notaryAuthority("notary", s, nil), Invalid, "no signature in a format this authority verifies"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := pushImage(t, host, fmt.Sprintf("notation/%d", i))
			tc.sign(t, ref)
			res := verifier().VerifySignatures(ctx, ref, []Authority{tc.auth})
			if res.State != tc.state || len(res.Signers) != 0 {
				t.Fatalf("got %+v, want %s", res, tc.state)
			}
			mustContain(t, "reason", res.Reason, tc.want)
		})
	}
}

// An expired signing certificate is accepted by permissive (expiry is only logged) and
// rejected by strict.
func TestNotationExpiry(t *testing.T) {
	s := newNotationSigner(t, "acme", time.Now().Add(2*time.Second))
	host := testRegistryWith(t, true, nil)
	ref := pushImage(t, host, "app")
	mustDo(t, s.Sign(ctx, ref, signtest.NotationJWS, true))
	time.Sleep(time.Until(s.Leaf.NotAfter.Add(time.Second)))
	if res := verifier().VerifySignatures(ctx, ref, []Authority{notaryAuthority("notary", s, nil)}); res.State != Invalid {
		t.Errorf("strict: %+v", res)
	} else {
		mustContain(t, "reason", res.Reason, "expired")
	}
	res := verifier().VerifySignatures(ctx, ref, []Authority{notaryAuthority("notary", s, func(n *Notation) { n.Level = NotationPermissive })})
	if res.State != Verified {
		t.Errorf("permissive: %+v", res)
	}
}

func TestNotationAuthorityValidation(t *testing.T) {
	s := newNotationSigner(t, "acme", time.Time{})
	for name, n := range map[string]Notation{
		"no trust store":        {TrustedIdentities: []string{s.Identity}},
		"identity without O":    {TrustStorePEM: s.RootPEM, TrustedIdentities: []string{"x509.subject: C=US, ST=WA, CN=x"}},
		"unknown level":         {TrustStorePEM: s.RootPEM, Level: "lenient"},
		"bad revocation action": {TrustStorePEM: s.RootPEM, Revocation: "maybe"},
	} {
		if err := (Authority{Name: "n", Notation: &n}).Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := (Authority{Name: "n", Notation: &Notation{TrustStorePEM: s.RootPEM}, IgnoreTlog: true, PublicKeyPEM: newKey(t).PublicPEM}).Validate(); err == nil {
		t.Error("key and notation together accepted")
	}
}

// copyReferrers re-points every referrer manifest of src at dst, keeping its content: what an
// attacker copying signatures between images produces.
func copyReferrers(t *testing.T, src, dst name.Digest) {
	t.Helper()
	idx, err := remote.Referrers(src, anon...)
	mustDo(t, err)
	im, err := idx.IndexManifest()
	mustDo(t, err)
	dstDesc, err := remote.Head(dst, anon...)
	mustDo(t, err)
	for _, d := range im.Manifests {
		got, err := remote.Get(src.Context().Digest(d.Digest.String()), anon...)
		mustDo(t, err)
		var m map[string]any
		mustDo(t, json.Unmarshal(got.Manifest, &m))
		m["subject"] = map[string]any{"mediaType": dstDesc.MediaType, "digest": dstDesc.Digest.String(), "size": dstDesc.Size}
		raw, err := json.Marshal(m)
		mustDo(t, err)
		// Blobs live per repository: mount them by pushing the layers again.
		for _, l := range m["layers"].([]any) {
			ld, err := v1.NewHash(l.(map[string]any)["digest"].(string))
			mustDo(t, err)
			layer, err := remote.Layer(src.Context().Digest(ld.String()), anon...)
			mustDo(t, err)
			mustDo(t, remote.WriteLayer(dst.Context(), layer, anon...))
		}
		cfg, err := v1.NewHash(m["config"].(map[string]any)["digest"].(string))
		mustDo(t, err)
		cl, err := remote.Layer(src.Context().Digest(cfg.String()), anon...)
		mustDo(t, err)
		mustDo(t, remote.WriteLayer(dst.Context(), cl, anon...))
		h, _, err := v1.SHA256(bytesReader(raw))
		mustDo(t, err)
		mustDo(t, remote.Put(dst.Context().Digest(h.String()), rawManifest{raw: raw, mt: got.MediaType}, anon...))
	}
}

// Audit and permissive accept what strict accepts; revocation checking stays on by default and
// certificates without OCSP or CRL URLs need no network for it.
func TestNotationLevels(t *testing.T) {
	s := newNotationSigner(t, "acme", time.Time{})
	host := testRegistryWith(t, false, nil)
	ref := pushImage(t, host, "app")
	mustDo(t, s.Sign(ctx, ref, signtest.NotationCOSE, true))
	for _, mod := range []func(*Notation){
		func(n *Notation) { n.Level, n.Revocation = NotationStrict, "" },
		func(n *Notation) { n.Level = NotationPermissive },
		func(n *Notation) { n.Level = NotationAudit },
		func(n *Notation) { n.Scopes = []string{ref.Context().Name()} },
	} {
		auth := notaryAuthority("notary", s, mod)
		if res := verifier().VerifySignatures(ctx, ref, []Authority{auth}); res.State != Verified {
			t.Errorf("%+v: %+v", *auth.Notation, res)
		}
	}
}
