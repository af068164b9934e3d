package interop

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/imagetrust/imagetrust/internal/upstream"
	"github.com/imagetrust/imagetrust/scanner/verify"
	"github.com/imagetrust/imagetrust/scanner/verify/signtest"
)

// notationPolicy writes the CLI's trustpolicy.json: one strict policy trusting store and id.
func notationPolicy(e *env, store, id string) {
	e.t.Helper()
	doc := map[string]any{"version": "1.0", "trustPolicies": []any{map[string]any{
		"name": "imagetrust-interop", "registryScopes": []string{"*"},
		"signatureVerification": map[string]any{"level": "strict"},
		"trustStores":           []string{"ca:" + store}, "trustedIdentities": []string{id},
	}}}
	b, err := json.Marshal(doc)
	if err != nil {
		e.t.Fatal(err)
	}
	e.File(filepath.Join(".config", "notation", "trustpolicy.json"), b)
}

// TestNotationCLI signs with notation v1.3.2 in JWS and COSE, by a trusted and an untrusted
// key, plus a signature copied from another image, and compares `notation verify`.
func TestNotationCLI(t *testing.T) {
	for _, r := range registries(t) {
		t.Run(r.name, func(t *testing.T) {
			e := newEnv(t)
			trusted, id := e.NotationCert("acme", "--default")
			e.NotationCert("evil")
			notationPolicy(e, "acme", id)
			auth := verify.Authority{Name: "notary", Notation: &verify.Notation{TrustStorePEM: trusted, TrustedIdentities: []string{id}}}
			for _, tc := range []struct {
				name, format, key string
				copyFrom          bool
				want              bool
			}{
				{"jws", "jws", "acme", false, true},
				{"cose", "cose", "acme", false, true},
				{"untrusted key", "jws", "evil", false, false},
				{"copied from another image", "cose", "acme", true, false},
			} {
				t.Run(tc.name, func(t *testing.T) {
					ref := pushImage(t, r.host, fmt.Sprintf("notation/%s", tc.format+"-"+tc.key+fmt.Sprint(tc.copyFrom)))
					signed := ref
					if tc.copyFrom {
						signed = pushImage(t, r.host, "notation/source")
					}
					e.Must(notationCLI, "sign", "--insecure-registry", "--signature-format", tc.format, "--key", tc.key, signed.String())
					if tc.copyFrom {
						upstream.CopyReferrers(t, signed, ref, anon...)
					}
					out, ok := e.Run(notationCLI, "verify", "--insecure-registry", ref.String())
					res := verifier().VerifySignatures(ctx, ref, []verify.Authority{auth})
					agree(t, "notation verify "+tc.name, tc.want, ok, out, res.State, res.Reason)
					if res.State == verify.Verified {
						s := res.Signers[0]
						if s.Format != verify.FormatNotation || "x509.subject: "+s.CertificateSubject != id || s.CertificateFingerprint == "" {
							t.Errorf("signer %+v", s)
						}
					}
				})
			}
		})
	}
}

// TestNotationTimestamp signs with an RFC 3161 countersignature from a local TSA: with the
// TSA in a "tsa" trust store both `notation verify` and imagetrust accept it and imagetrust
// reports the timestamp as the time proof.
func TestNotationTimestamp(t *testing.T) {
	tsa, err := signtest.NewTSA("notation")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(tsa)
	defer srv.Close()
	host := ggcrRegistry(t)
	e := newEnv(t)
	trusted, id := e.NotationCert("acme", "--default")
	tsaRoot := e.File("tsa-root.pem", tsa.RootPEM)
	e.File(filepath.Join(".config", "notation", "truststore", "x509", "tsa", "interop", "tsa-root.pem"), tsa.RootPEM)
	doc := map[string]any{"version": "1.0", "trustPolicies": []any{map[string]any{
		"name": "imagetrust-interop", "registryScopes": []string{"*"},
		"signatureVerification": map[string]any{"level": "strict"},
		"trustStores":           []string{"ca:acme", "tsa:interop"}, "trustedIdentities": []string{id},
	}}}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	e.File(filepath.Join(".config", "notation", "trustpolicy.json"), b)

	ref := pushImage(t, host, "notation/stamped")
	e.Must(notationCLI, "sign", "--insecure-registry", "--timestamp-url", srv.URL, "--timestamp-root-cert", tsaRoot, ref.String())
	out, ok := e.Run(notationCLI, "verify", "--insecure-registry", ref.String())
	auth := verify.Authority{Name: "notary", Notation: &verify.Notation{TrustStorePEM: trusted, TSATrustStorePEM: tsa.RootPEM, TrustedIdentities: []string{id}}}
	res := verifier().VerifySignatures(ctx, ref, []verify.Authority{auth})
	agree(t, "notation verify, timestamped", true, ok, out, res.State, res.Reason)
	if res.State == verify.Verified && res.Signers[0].TimeProof != "RFC 3161 timestamp countersignature" {
		t.Errorf("time proof %q", res.Signers[0].TimeProof)
	}
}
