package signtest

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/cosign/v2/pkg/cosign"
)

func TestIssueLeaf(t *testing.T) {
	ca, err := NewCA("unit")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	leaf, err := ca.IssueLeaf("dev@example.com", "https://issuer.example.com", now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if got := leaf.Cert.EmailAddresses; len(got) != 1 || got[0] != "dev@example.com" {
		t.Errorf("email SANs = %v", got)
	}
	// cosign reads the raw-string v1 extension.
	if got := (&cosign.CertExtensions{Cert: leaf.Cert}).GetIssuer(); got != "https://issuer.example.com" {
		t.Errorf("cosign sees issuer %q", got)
	}
	var v2 string
	for _, e := range leaf.Cert.Extensions {
		if e.Id.Equal(OIDIssuerV2) {
			if _, err := asn1.Unmarshal(e.Value, &v2); err != nil {
				t.Fatal(err)
			}
		}
	}
	if v2 != "https://issuer.example.com" {
		t.Errorf("v2 issuer extension = %q", v2)
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(ca.Root)
	inters.AddCert(ca.Intermediate)
	if _, err := leaf.Cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}); err != nil {
		t.Errorf("leaf does not chain to its CA: %v", err)
	}
	if !leaf.Cert.NotAfter.Equal(now.Add(time.Hour)) {
		t.Errorf("NotAfter = %v", leaf.Cert.NotAfter)
	}

	uri, err := ca.IssueLeaf("https://github.com/acme/app/.github/workflows/r.yml@refs/heads/main", "https://token.actions.githubusercontent.com", now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(uri.Cert.URIs) != 1 || uri.Cert.URIs[0].String() != "https://github.com/acme/app/.github/workflows/r.yml@refs/heads/main" || len(uri.Cert.EmailAddresses) != 0 {
		t.Errorf("URI SANs = %v, emails = %v", uri.Cert.URIs, uri.Cert.EmailAddresses)
	}
}

func TestAttestRejectsBadInput(t *testing.T) {
	kp, err := NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewDigest("127.0.0.1:1/app@sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	// Fails before any registry call (nothing listens on port 1).
	if err := Attest(context.Background(), ref, ref, "x", []byte("{not json"), kp); err == nil || err.Error() != "predicate is not valid JSON" {
		t.Errorf("Attest with invalid predicate: %v", err)
	}
	if kp.Fingerprint() == "" || len(kp.Fingerprint()) != len("SHA256:")+64 {
		t.Errorf("Fingerprint = %q", kp.Fingerprint())
	}
}
