package scanner

import (
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/scanner/policy"
	"github.com/imagetrust/imagetrust/scanner/verify"
)

// policyTrusting is a policy with no requirements whose authorities are auths.
func policyTrusting(name string, auths ...string) Policy {
	p := Policy{Policy: policy.Policy{Name: name, Authorities: auths}}
	for _, a := range auths {
		p.AuthorityConfigs = append(p.AuthorityConfigs, verify.Authority{Name: a})
	}
	return p
}

// Verification runs once against every scope's authorities; a scope counts only the signers of
// its own policies.
func TestJudgeSignaturePerScope(t *testing.T) {
	a := &Assessment{Verification: Verification{Signature: verify.SignatureResult{State: verify.Verified, Signers: []verify.Signer{
		{Authority: "a/key", KeyFingerprint: "SHA256:1"}, {Authority: "b/key", KeyFingerprint: "SHA256:2"},
	}}}}
	tests := []struct {
		name  string
		auths []string
		state verify.State
		n     int
	}{
		{"no policy here", nil, NotRequired, 0},
		{"own authority signed", []string{"a/key"}, verify.Verified, 1},
		{"only another namespace's authority signed", []string{"c/key"}, verify.Invalid, 0},
		{"both", []string{"a/key", "b/key"}, verify.Verified, 2},
	}
	for _, tt := range tests {
		var pols []Policy
		if tt.auths != nil {
			pols = []Policy{policyTrusting("p", tt.auths...)}
		}
		got := Judge(pols, a, time.Now()).Signature
		if got.State != tt.state || len(got.Signers) != tt.n {
			t.Errorf("%s: state %s signers %d, want %s %d", tt.name, got.State, len(got.Signers), tt.state, tt.n)
		}
	}
}

func TestJudgeProvenanceAndBasePerScope(t *testing.T) {
	a := &Assessment{Verification: Verification{
		Provenance: Provenance{Checked: true, PredicateType: "https://slsa.dev/provenance/v1", BuilderID: "https://ci", Signers: []string{"a/key"}},
		Base:       BaseImage{Name: "r.example/base", Checked: true, Signers: []string{"a/key"}},
	}}
	own := Judge([]Policy{policyTrusting("p", "a/key")}, a, time.Now())
	if !own.Provenance.Verified || own.Provenance.BuilderID != "https://ci" || !own.Base.Signed {
		t.Errorf("own authority: provenance %+v base %+v", own.Provenance, own.Base)
	}
	other := Judge([]Policy{policyTrusting("q", "c/key")}, a, time.Now())
	if other.Provenance.Verified || other.Provenance.Reason != reasonOtherProvenance || other.Base.Signed || other.Base.Reason != reasonOtherBaseSigners {
		t.Errorf("other authority: provenance %+v base %+v", other.Provenance, other.Base)
	}
	if none := Judge(nil, a, time.Now()); none.Provenance != nil || none.Base == nil || none.Base.Signed {
		t.Errorf("no policy: provenance %+v base %+v", none.Provenance, none.Base)
	}
}

func TestEvaluateWithStalledPolicy(t *testing.T) {
	a := &Assessment{Image: Image{Repository: "r.example/app"},
		Verification: Verification{Signature: verify.SignatureResult{State: verify.Verified, Signers: []verify.Signer{{Authority: "ok/key"}}}}}
	okPol := Policy{Policy: policy.Policy{Name: "ok", RequireSignature: true, Authorities: []string{"ok/key"}}}
	badPol := Policy{Problems: []string{"authority key: Secret ns/k not found"}, Policy: policy.Policy{Name: "bad", RequireSignature: true}}
	failPol := Policy{Policy: policy.Policy{Name: "strict", AllowedRegistries: []string{"other.example"}}}

	c := Evaluate([]Policy{okPol}, a, time.Now())
	if c.Verdict != policy.Trusted {
		t.Fatalf("healthy policy verdict = %s", c.Verdict)
	}
	c = Evaluate([]Policy{okPol, badPol}, a, time.Now())
	if c.Verdict != policy.Unknown || strings.Join(c.Policies, ",") != "bad,ok" {
		t.Fatalf("stalled policy: verdict %s policies %v", c.Verdict, c.Policies)
	}
	if msg := c.Results[0].Failures[0].Message; msg != "policy cannot be enforced: authority key: Secret ns/k not found" {
		t.Fatalf("stalled policy reason = %q", msg)
	}
	c = Evaluate([]Policy{badPol, failPol}, a, time.Now())
	if c.Verdict != policy.Untrusted {
		t.Fatalf("a failing healthy policy must keep Untrusted, got %s", c.Verdict)
	}
	c = Evaluate(nil, a, time.Now())
	if c.Verdict != policy.Unknown || len(c.Policies) != 0 {
		t.Fatalf("no policy: %+v", c)
	}
}

// A policy that requires a signature but cannot be enforced (its key does not parse) leaves the
// signature unchecked: an Error that says why, never NotRequired.
func TestJudgeStalledSignaturePolicy(t *testing.T) {
	a := &Assessment{Verification: Verification{Signature: SignatureResult{State: NotRequired, Reason: "no authorities"}}}
	stalled := Policy{Policy: policy.Policy{Name: "prod", RequireSignature: true}, Problems: []string{"authority key: publicKey is not a valid PEM public key"}}
	j := Judge([]Policy{stalled}, a, time.Now())
	if j.Signature.State != verify.Error || !strings.Contains(j.Signature.Reason, "policy prod cannot be enforced: authority key: publicKey is not a valid PEM public key") {
		t.Fatalf("signature %+v", j.Signature)
	}
	if j.Verdict.Verdict != policy.Unknown {
		t.Fatalf("verdict %s, want Unknown", j.Verdict.Verdict)
	}
	// a stalled policy that asks for no signature changes nothing about it
	noSig := Policy{Policy: policy.Policy{Name: "scan-only"}, Problems: []string{"schedule: bad"}}
	if got := Judge([]Policy{noSig}, a, time.Now()).Signature.State; got != NotRequired {
		t.Fatalf("signature %s, want NotRequired", got)
	}
}
