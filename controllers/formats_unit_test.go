package controllers

import (
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner"
	"github.com/imagetrust/imagetrust/scanner/verify"
	"github.com/imagetrust/imagetrust/scanner/verify/signtest"
	"github.com/imagetrust/imagetrust/scanner/verify/trustroot"
)

// Signer entries say which format verified, what proved the time, and who signed; the same
// key in two formats is two entries, and every string is bounded.
func TestSignatureStatusSigners(t *testing.T) {
	long := strings.Repeat("x", 600)
	sig := verify.SignatureResult{State: verify.Verified, Signers: []verify.Signer{
		{Authority: "p/release", KeyFingerprint: "SHA256:ab", Format: verify.FormatCosignLegacy, TimeProof: "none: transparency log ignored"},
		{Authority: "p/release", KeyFingerprint: "SHA256:ab", Format: verify.FormatSigstoreBundle, TimeProof: "rekor v1 log index 7"},
		{Authority: "p/release", KeyFingerprint: "SHA256:ab", Format: verify.FormatSigstoreBundle, TimeProof: "rekor v1 log index 7"},
		{Authority: "p/ci", KeyFingerprint: "SHA256:cd", Subject: "ci@example.com", Issuer: "https://issuer.example", Format: verify.FormatSigstoreBundle,
			TimeProof: long, CertificateFingerprint: "SHA256:ef"},
		{Authority: "p/notary", KeyFingerprint: "SHA256:01", Format: verify.FormatNotation, TimeProof: "RFC 3161 timestamp countersignature",
			CertificateSubject: "CN=release,O=Example,ST=WA,C=US", CertificateFingerprint: "SHA256:23"},
		{Authority: "p/future", KeyFingerprint: "SHA256:45", Format: "cosign-v9"},
	}}
	got := signatureStatus(sig, time.Now()).Signers
	if len(got) != 5 {
		t.Fatalf("%d signers, want 5 (duplicates folded): %+v", len(got), got)
	}
	want := []securityv1alpha1.SignatureFormat{securityv1alpha1.SignatureFormatCosignLegacy, securityv1alpha1.SignatureFormatSigstoreBundle,
		securityv1alpha1.SignatureFormatSigstoreBundle, securityv1alpha1.SignatureFormatNotation, ""}
	for i, s := range got {
		if s.Format != want[i] {
			t.Errorf("signer %d format %q, want %q", i, s.Format, want[i])
		}
	}
	if got[1].TimeProof != "rekor v1 log index 7" || len([]rune(got[2].TimeProof)) > maxTimeProofLen || got[2].CertificateFingerprint != "SHA256:ef" ||
		got[2].Subject != "ci@example.com" {
		t.Errorf("bundle signers %+v", got[1:3])
	}
	if n := got[3]; n.CertificateSubject != "CN=release,O=Example,ST=WA,C=US" || n.CertificateFingerprint != "SHA256:23" || n.TimeProof == "" {
		t.Errorf("notation signer %+v", n)
	}
}

func TestPolicyConditionsForTrustRoots(t *testing.T) {
	pending := "authority ci: trust root \"TUF mirror https://tuf\" unavailable: not loaded yet"
	failed := "authority ci: trust root \"TUF mirror https://tuf\" unavailable: TUF update from https://tuf: refused"
	for _, tc := range []struct {
		name string
		cp   *compiledPolicy
		want map[string]string
	}{
		{"still loading", &compiledPolicy{Scanner: scanner.Policy{Problems: []string{pending}}, Pending: []string{pending}},
			map[string]string{"Ready": "False/TrustRootPending", "Reconciling": "True/TrustRootPending", "Stalled": "True/TrustRootPending"}},
		{"failed", &compiledPolicy{Scanner: scanner.Policy{Problems: []string{failed}}, Unavailable: []string{failed}},
			map[string]string{"Ready": "False/TrustRootUnavailable", "Stalled": "True/TrustRootUnavailable"}},
		{"loading, and a missing Secret", &compiledPolicy{Scanner: scanner.Policy{Problems: []string{pending, "authority k: Secret ns/s not found"}}, Pending: []string{pending}},
			map[string]string{"Ready": "False/InvalidConfiguration", "Stalled": "True/InvalidConfiguration"}},
	} {
		var conds []metav1.Condition
		setPolicyConditions(&conds, tc.cp, time.Now())
		if got := condMap(conds); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: conditions %v, want %v", tc.name, got, tc.want)
		}
		for _, c := range conds {
			if c.Type == "Stalled" && c.Message != strings.Join(tc.cp.Scanner.Problems, "; ") {
				t.Errorf("%s: Stalled message %q", tc.name, c.Message)
			}
		}
	}
}

// Compilations naming the same provider are the same; another provider for an equal document
// (after the pool dropped the first) is a change.
func TestSameCompiledComparesProvidersByIdentity(t *testing.T) {
	ca, err := signtest.NewCA("same")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := signtest.TrustedRoot{CAs: []*signtest.CA{ca}}.JSON()
	if err != nil {
		t.Fatal(err)
	}
	a1, _ := trustroot.FromJSON("cm", doc)
	a2, _ := trustroot.FromJSON("cm", doc)
	mk := func(p trustroot.Provider) *compiledPolicy {
		return &compiledPolicy{Name: "p", TrustRoots: []scanner.TrustRootProvider{p}, Scanner: scanner.Policy{
			AuthorityConfigs: []verify.Authority{{Name: "p/ci", TrustRoot: p, Keyless: &verify.Keyless{Identities: []verify.Identity{{Issuer: "i", Subject: "s"}}}}}}}
	}
	if !sameCompiled(mk(a1), mk(a1)) {
		t.Error("the same provider compared different")
	}
	if sameCompiled(mk(a1), mk(a2)) {
		t.Error("another provider compared the same")
	}
	other := mk(a1)
	other.Scanner.AuthorityConfigs[0].Keyless.Identities[0].Subject = "t"
	if sameCompiled(mk(a1), other) {
		t.Error("another identity compared the same")
	}
	if sameCompiled(nil, mk(a1)) || !sameCompiled(nil, nil) {
		t.Error("nil")
	}
}
