package policyconv

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner/verify/signtest"
)

func TestConvert(t *testing.T) {
	kp, err := signtest.NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := signtest.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	expires := metav1.NewTime(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))
	p := &v1.ImageTrustPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "prod"},
		Spec: v1.ImageTrustPolicySpec{
			Images:           []string{"r.example.com/team/*"},
			RequireSignature: true,
			Authorities: []v1.Authority{
				{Name: "inline", Key: &v1.KeyAuthority{Data: string(kp.PublicPEM)}, IgnoreTransparencyLog: true},
				{Name: "from-secret", Key: &v1.KeyAuthority{SecretRef: &v1.SecretKeyReference{Namespace: "ops", Name: "keys", Key: "cosign.pub"}}},
				{Name: "missing", Key: &v1.KeyAuthority{SecretRef: &v1.SecretKeyReference{Namespace: "ops", Name: "gone", Key: "k"}}},
				{Name: "ci", Keyless: &v1.KeylessAuthority{Roots: string(ca.RootPEM), Identities: []v1.KeylessIdentity{{Issuer: "https://i", Subject: "s@x"}}}},
				{Name: "public", Keyless: &v1.KeylessAuthority{Identities: []v1.KeylessIdentity{{Issuer: "https://i", Subject: "s@x"}}}},
				{Name: "garbage", Key: &v1.KeyAuthority{Data: "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----"}},
			},
			Attestations:    v1.AttestationRequirements{SBOM: true, SLSAProvenance: &v1.SLSAProvenanceRequirement{AllowedBuilderIDs: []string{"b"}}},
			Vulnerabilities: &v1.VulnerabilityGate{FailOnSeverity: v1.SeverityHigh, OnlyFixed: true, Ignore: []v1.VulnerabilityException{{ID: "CVE-1", Reason: "r", Expires: &expires}}},
			SBOMSources:     []v1.SBOMSourceType{v1.SBOMSourceReferrer, v1.SBOMSourceGenerate},
		},
	}
	read := func(_ context.Context, ns, name, key string) ([]byte, string, error) {
		if ns == "ops" && name == "keys" && key == "cosign.pub" {
			return kp.PublicPEM, "", nil
		}
		return nil, "Secret " + ns + "/" + name + " not found", nil
	}
	c, err := Convert(context.Background(), p, Env{Secrets: read})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Policy.Authorities, []string{"prod/inline", "prod/from-secret", "prod/ci"}; !slices.Equal(got, want) {
		t.Errorf("authorities %v, want %v", got, want)
	}
	if len(c.Policy.Problems) != 3 || !strings.Contains(c.Policy.Problems[0], "Secret ops/gone not found") ||
		!strings.Contains(c.Policy.Problems[1], "trust roots are not available here") || !strings.Contains(c.Policy.Problems[2], "garbage") {
		t.Errorf("problems %q", c.Policy.Problems)
	}
	if len(c.SecretRefs) != 2 {
		t.Errorf("secret refs %v", c.SecretRefs)
	}
	pp := c.Policy
	if !pp.RequireSignature || !pp.RequireSBOMAttestation || !pp.RequireProvenance || pp.AllowedBuilderIDs[0] != "b" ||
		pp.Vulnerabilities.FailOn != "High" || !pp.Vulnerabilities.OnlyFixed || !pp.Vulnerabilities.Ignore[0].Expires.Equal(expires.Time) ||
		!slices.Equal(pp.SBOMSources, []string{"Referrer", "Generate"}) || !pp.AuthorityConfigs[0].IgnoreTlog {
		t.Errorf("converted %+v", pp)
	}
	if !pp.Applies("r.example.com/team/app", []string{"v1"}) || pp.Applies("r.example.com/other/app", nil) {
		t.Error("Applies")
	}

	// Without a cluster, Secret references are a problem, not a silent drop.
	c, err = Convert(context.Background(), p, Env{})
	if err != nil || !strings.Contains(strings.Join(c.Policy.Problems, ";"), "need a cluster") {
		t.Fatalf("nil reader: %v %q", err, c.Policy.Problems)
	}
	// A failing API call is an error (retry), not a problem (user fix).
	boom := errors.New("apiserver down")
	if _, err := Convert(context.Background(), p, Env{Secrets: func(context.Context, string, string, string) ([]byte, string, error) {
		return nil, "", boom
	}}); !errors.Is(err, boom) {
		t.Fatalf("read error: %v", err)
	}
}
