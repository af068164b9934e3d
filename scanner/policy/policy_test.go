package policy

import (
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func strict() Policy {
	return Policy{
		Name:                   "strict",
		Images:                 []string{"registry.example.com/team/*"},
		RequireSignature:       true,
		Authorities:            []string{"strict/release"},
		RequireSBOMAttestation: true,
		RequireProvenance:      true,
		AllowedBuilderIDs:      []string{"https://ci.example.com/builder@v1"},
		RequireSignedBase:      true,
		AllowedRegistries:      []string{"registry.example.com"},
		Vulnerabilities: &VulnerabilityGate{FailOn: "High", OnlyFixed: true, Ignore: []Exception{
			{ID: "CVE-2024-0001", Reason: "not reachable"},
			{ID: "CVE-2024-0002", Reason: "expired", Expires: now.Add(-time.Hour)},
			{ID: "GHSA-aaaa-bbbb-cccc", Reason: "by alias", Expires: now.Add(time.Hour)},
		}},
	}
}

func good() Input {
	return Input{
		Image:             "registry.example.com/team/app",
		SignatureState:    SignatureVerified,
		Signers:           []string{"strict/release"},
		SBOMSource:        "Attested",
		ProvenanceChecked: true,
		ProvenanceBuilder: "https://ci.example.com/builder@v1",
		ProvenanceSigners: []string{"strict/release"},
		BaseName:          "registry.example.com/base/debian:12",
		BaseChecked:       true,
		BaseSigners:       []string{"strict/release"},
		Scanned:           true,
		Findings: []Finding{
			{ID: "CVE-2024-0001", Severity: "Critical", Fixed: true},                                       // ignored
			{ID: "CVE-2024-0003", Severity: "High", Fixed: false},                                          // not fixable
			{ID: "CVE-2024-0004", Severity: "Medium", Fixed: true},                                         // below gate
			{ID: "CVE-2024-0005", Aliases: []string{"GHSA-aaaa-bbbb-cccc"}, Severity: "High", Fixed: true}, // ignored by alias
		},
		Now: now,
	}
}

func TestEvaluate(t *testing.T) {
	cases := []struct {
		name        string
		mutate      func(*Policy, *Input)
		verdict     Verdict
		check, want string
	}{
		{"all good", func(*Policy, *Input) {}, Trusted, "", ""},
		{"registry not allowed", func(_ *Policy, in *Input) { in.Image = "registry.example.com.evil.io/team/app" }, Untrusted, CheckNameRegistry, "not in the allowed registries"},
		{"unsigned", func(_ *Policy, in *Input) {
			in.SignatureState, in.Signers, in.SignatureReason = SignatureUnsigned, nil, "no signatures found"
		}, Untrusted, CheckNameSignature, "image is not signed: no signatures found"},
		{"invalid signature", func(_ *Policy, in *Input) { in.SignatureState, in.Signers = SignatureInvalid, nil }, Untrusted, CheckNameSignature, "no valid signature"},
		{"signed by another policy's authority", func(_ *Policy, in *Input) { in.Signers = []string{"other/key"} }, Untrusted, CheckNameSignature, "by none of the policy's authorities"},
		{"verification error is unknown", func(_ *Policy, in *Input) {
			in.SignatureState, in.SignatureReason = SignatureError, "registry returned 503"
		}, Unknown, CheckNameSignature, "registry returned 503"},
		{"signature not required", func(p *Policy, in *Input) { p.RequireSignature = false; in.SignatureState = SignatureUnsigned }, Trusted, "", ""},
		{"generated sbom", func(_ *Policy, in *Input) { in.SBOMSource, in.SBOMReason = "Generated", "no attestation" }, Untrusted, CheckNameSBOMAttestation, "SBOM was generated"},
		{"signed referrer sbom counts", func(_ *Policy, in *Input) { in.SBOMSource = "Referrer" }, Trusted, "", ""},
		{"no provenance", func(_ *Policy, in *Input) { in.ProvenanceBuilder, in.ProvenanceReason = "", "none found" }, Untrusted, CheckNameProvenance, "no signed SLSA provenance"},
		{"wrong builder", func(_ *Policy, in *Input) { in.ProvenanceBuilder = "https://evil.example.com" }, Untrusted, CheckNameProvenance, `builder "https://evil.example.com"`},
		{"any builder allowed", func(p *Policy, in *Input) { p.AllowedBuilderIDs = nil; in.ProvenanceBuilder = "x" }, Trusted, "", ""},
		{"no base declared", func(_ *Policy, in *Input) { in.BaseName = "" }, Untrusted, CheckNameBaseImage, "declares no base image"},
		{"unsigned base", func(_ *Policy, in *Input) { in.BaseSigners, in.BaseReason = nil, "no signatures found" }, Untrusted, CheckNameBaseImage, "is not signed"},
		{"fixable high", func(_ *Policy, in *Input) {
			in.Findings = append(in.Findings, Finding{ID: "CVE-2024-9999", Severity: "High", Fixed: true})
		}, Untrusted, CheckNameVulnerabilities, "1 fixable vulnerabilities at or above High: CVE-2024-9999"},
		{"expired exception no longer ignores", func(_ *Policy, in *Input) {
			in.Findings = append(in.Findings, Finding{ID: "CVE-2024-0002", Severity: "Critical", Fixed: true})
		}, Untrusted, CheckNameVulnerabilities, "CVE-2024-0002"},
		{"unfixed counts without onlyFixed", func(p *Policy, _ *Input) { p.Vulnerabilities.OnlyFixed = false }, Untrusted, CheckNameVulnerabilities, "CVE-2024-0003"},
		{"not scanned is unknown", func(_ *Policy, in *Input) { in.Scanned, in.ScanReason = false, "vulnerability DB is stale" }, Unknown, CheckNameVulnerabilities, "DB is stale"},
		{"failure beats unknown", func(_ *Policy, in *Input) {
			in.Scanned = false
			in.SignatureState = SignatureUnsigned
		}, Untrusted, CheckNameSignature, "not signed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, in := strict(), good()
			tc.mutate(&p, &in)
			r := Evaluate(p, in)
			if r.Verdict != tc.verdict {
				t.Fatalf("verdict %s, want %s (failures %+v)", r.Verdict, tc.verdict, r.Failures)
			}
			if tc.check == "" {
				if len(r.Failures) != 0 {
					t.Fatalf("unexpected failures %+v", r.Failures)
				}
				return
			}
			if len(r.Failures) != 1 || r.Failures[0].Check != tc.check || !strings.Contains(r.Failures[0].Message, tc.want) {
				t.Fatalf("failures %+v, want one %s check containing %q", r.Failures, tc.check, tc.want)
			}
		})
	}
}

func TestVulnerabilityMessageIsBounded(t *testing.T) {
	p, in := strict(), good()
	for i := range 40 {
		in.Findings = append(in.Findings, Finding{ID: "CVE-2025-" + string(rune('A'+i)), Severity: "Critical", Fixed: true})
	}
	o := CheckVulnerabilities(p, in)
	if !o.Failed || !strings.Contains(o.Message, "and 35 more") || len(o.Message) > 200 {
		t.Fatalf("message %q", o.Message)
	}
}

func TestEvaluateAll(t *testing.T) {
	lax := Policy{Name: "lax"}
	if c := EvaluateAll(nil, good()); c.Verdict != Unknown {
		t.Fatalf("no policies: %s, want Unknown", c.Verdict)
	}
	in := good()
	in.SignatureState = SignatureUnsigned
	c := EvaluateAll([]Policy{lax, strict()}, in)
	if c.Verdict != Untrusted || len(c.Results) != 2 || c.Results[0].Verdict != Trusted {
		t.Fatalf("combined %+v", c)
	}
	in = good()
	in.Scanned = false
	if c := EvaluateAll([]Policy{lax, strict()}, in); c.Verdict != Unknown {
		t.Fatalf("combined %s, want Unknown", c.Verdict)
	}
}

func TestMatchImage(t *testing.T) {
	cases := []struct {
		pattern, image string
		want           bool
	}{
		{"registry.example.com/team/*", "registry.example.com/team/app", true},
		{"registry.example.com/team/*", "registry.example.com/team/app:v1", true},
		{"registry.example.com/team/*", "registry.example.com/team/app@sha256:abc", true},
		{"registry.example.com/team/*", "registry.example.com/team/sub/app", false},
		{"registry.example.com/team/**", "registry.example.com/team/sub/app", true},
		{"registry.example.com/**", "registry.example.com/team/sub/app", true},
		{"registry.example.com/team/*", "registry.example.com/other/app", false},
		{"localhost:5000/app", "localhost:5000/app:latest", true},
		{"localhost:5000/app*", "localhost:5000/application", true},
		{"ghcr.io/org/app:v1.*", "ghcr.io/org/app:v1.2", true},
		{"ghcr.io/org/app:v1.*", "ghcr.io/org/app:v2.0", false},
		{"*", "nginx", true},
		{"[", "x", false},
	}
	for _, tc := range cases {
		if got := MatchImage(tc.pattern, tc.image); got != tc.want {
			t.Errorf("MatchImage(%q, %q) = %v, want %v", tc.pattern, tc.image, got, tc.want)
		}
	}
}

func TestStripTagDigest(t *testing.T) {
	for in, want := range map[string]string{
		"localhost:5000/app:v1": "localhost:5000/app",
		"localhost:5000/app":    "localhost:5000/app",
		"r.io/a/b@sha256:00":    "r.io/a/b",
		"r.io/a/b:v1@sha256:00": "r.io/a/b",
		"nginx":                 "nginx",
	} {
		if got := StripTagDigest(in); got != want {
			t.Errorf("StripTagDigest(%q) = %q, want %q", in, got, want)
		}
	}
}
