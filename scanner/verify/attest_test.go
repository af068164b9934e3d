package verify

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/scanner/verify/signtest"
)

const spdxDoc = `{
  "spdxVersion": "SPDX-2.3",
  "dataLicense": "CC0-1.0",
  "SPDXID": "SPDXRef-DOCUMENT",
  "name": "app",
  "packages": [{"SPDXID": "SPDXRef-Package-openssl", "name": "openssl", "versionInfo": "3.0.11-1~deb12u2"}]
}`

func compact(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestAttestationSBOM(t *testing.T) {
	host := testRegistry(t, nil)
	ref := pushImage(t, host, "app")
	kp := newKey(t)
	auths := []Authority{keyAuthority("release-key", kp)}

	if res := verifier().VerifyAttestations(ctx, ref, auths); res.State != Unsigned || res.Reason != "no attestations found for "+ref.DigestStr()+" (looked at cosign .att tag: none; Sigstore bundle referrers: none)" {
		t.Fatalf("before attesting: %+v", res)
	}
	if err := signtest.Attest(ctx, ref, ref, "https://spdx.dev/Document", []byte(spdxDoc), kp, writeOpts()...); err != nil {
		t.Fatal(err)
	}
	res := verifier().VerifyAttestations(ctx, ref, auths)
	if res.State != Verified || len(res.Attestations) != 1 {
		t.Fatalf("got %+v, want one verified attestation", res)
	}
	a := res.Attestations[0]
	wantSigner := keySigner(t, "release-key", kp)
	if a.PredicateType != "https://spdx.dev/Document" || a.Signer != wantSigner {
		t.Errorf("attestation = %s by %+v", a.PredicateType, a.Signer)
	}
	format, doc, ok := SBOMFromAttestation(a)
	if !ok || format != "spdx-json" || !bytes.Equal(doc, compact(t, spdxDoc)) {
		t.Errorf("SBOMFromAttestation = %q, %s, %v", format, doc, ok)
	}
	// Attestations are not signatures: the image itself is still unsigned.
	if sres := verifier().VerifySignatures(ctx, ref, auths); sres.State != Unsigned {
		t.Errorf("signatures: %+v", sres)
	}
}

func TestAttestationKeyless(t *testing.T) {
	host := testRegistry(t, nil)
	ref := pushImage(t, host, "app")
	ca := newCA(t, "test")
	now := time.Now()
	leaf := issue(t, ca, "builder@example.com", "https://issuer.example.com", now.Add(-time.Minute), now.Add(10*time.Minute))
	if err := signtest.Attest(ctx, ref, ref, "https://cyclonedx.org/bom/v1.5", []byte(`{"bomFormat":"CycloneDX","specVersion":"1.5"}`), leaf, writeOpts()...); err != nil {
		t.Fatal(err)
	}
	res := verifier().VerifyAttestations(ctx, ref, []Authority{keylessAuthority("ci", ca, Identity{Issuer: "https://issuer.example.com", Subject: "builder@example.com"})})
	if res.State != Verified || len(res.Attestations) != 1 {
		t.Fatalf("got %+v", res)
	}
	want := keylessSigner(t, "ci", leaf, "builder@example.com", "https://issuer.example.com", FormatCosignLegacy, "none: transparency log ignored, certificate checked at verification time")
	if res.Attestations[0].Signer != want {
		t.Errorf("signer = %+v, want %+v", res.Attestations[0].Signer, want)
	}
	if f, _, ok := SBOMFromAttestation(res.Attestations[0]); !ok || f != "cyclonedx-json" {
		t.Errorf("format = %q, %v", f, ok)
	}
}

// An attestation whose statement names another digest, stored under this digest (what
// copying another image's .att manifest produces), must be rejected.
func TestAttestationCopiedFromAnotherDigest(t *testing.T) {
	host := testRegistry(t, nil)
	ref := pushImage(t, host, "app")
	other := pushImage(t, host, "other")
	kp := newKey(t)
	if err := signtest.Attest(ctx, ref, other, "https://spdx.dev/Document", []byte(spdxDoc), kp, writeOpts()...); err != nil {
		t.Fatal(err)
	}
	res := verifier().VerifyAttestations(ctx, ref, []Authority{keyAuthority("release-key", kp)})
	if res.State != Invalid || len(res.Attestations) != 0 {
		t.Fatalf("got %+v, want Invalid", res)
	}
	mustContain(t, "reason", res.Reason,
		"1 attestation found, none verified by authorities [release-key]: ",
		"attestation subject is not "+ref.DigestStr(), "no matching subject digest found")
}

// A statement that its signer cut short is malformed, not "copied from another artifact".
func TestAttestationMalformedStatement(t *testing.T) {
	host := testRegistry(t, nil)
	ref := pushImage(t, host, "app")
	kp := newKey(t)
	truncated := []byte(`{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://spdx.dev/Document","subject":[{"name":"x","digest":{"sha256":"` + ref.DigestStr()[7:])
	if err := signtest.AttestRaw(ctx, ref, "https://spdx.dev/Document", truncated, kp, writeOpts()...); err != nil {
		t.Fatal(err)
	}
	res := verifier().VerifyAttestations(ctx, ref, []Authority{keyAuthority("release-key", kp)})
	if res.State != Invalid || len(res.Attestations) != 0 {
		t.Fatalf("got %+v, want Invalid", res)
	}
	mustContain(t, "reason", res.Reason, "attestation is malformed", "decoding in-toto statement")
	if strings.Contains(res.Reason, "copied from another") {
		t.Errorf("a malformed statement is called copied: %s", res.Reason)
	}
}

func TestAttestationWrongKey(t *testing.T) {
	host := testRegistry(t, nil)
	ref := pushImage(t, host, "app")
	if err := signtest.Attest(ctx, ref, ref, "https://spdx.dev/Document", []byte(spdxDoc), newKey(t), writeOpts()...); err != nil {
		t.Fatal(err)
	}
	res := verifier().VerifyAttestations(ctx, ref, []Authority{keyAuthority("release-key", newKey(t))})
	if res.State != Invalid {
		t.Fatalf("got %+v, want Invalid", res)
	}
	mustContain(t, "reason", res.Reason, "1 attestation found, none verified", "invalid DSSE envelope signature")
}

func TestAttestationTlogRequired(t *testing.T) {
	host := testRegistry(t, nil)
	ref := pushImage(t, host, "app")
	kp := newKey(t)
	if err := signtest.Attest(ctx, ref, ref, "https://spdx.dev/Document", []byte(spdxDoc), kp, writeOpts()...); err != nil {
		t.Fatal(err)
	}
	a := keyAuthority("release-key", kp)
	a.IgnoreTlog = false
	res := verifier().VerifyAttestations(ctx, ref, []Authority{a})
	if res.State != Invalid {
		t.Fatalf("got %+v, want Invalid", res)
	}
	mustContain(t, "reason", res.Reason, "transparency-log proof is required")
}

func TestProvenanceAttestations(t *testing.T) {
	host := testRegistry(t, nil)
	ref := pushImage(t, host, "app")
	kp := newKey(t)
	v02 := `{"builder":{"id":"https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml@refs/tags/v1.9.0"},"buildType":"https://github.com/slsa-framework/slsa-github-generator/container@v1"}`
	v1 := `{"buildDefinition":{"buildType":"https://actions.github.io/buildtypes/workflow/v1"},"runDetails":{"builder":{"id":"https://github.com/actions/runner/github-hosted"}}}`
	for _, p := range []struct{ pt, body string }{
		{"https://slsa.dev/provenance/v0.2", v02},
		{"https://slsa.dev/provenance/v1", v1},
	} {
		if err := signtest.Attest(ctx, ref, ref, p.pt, []byte(p.body), kp, writeOpts()...); err != nil {
			t.Fatal(err)
		}
	}
	res := verifier().VerifyAttestations(ctx, ref, []Authority{keyAuthority("release-key", kp)})
	if res.State != Verified || len(res.Attestations) != 2 {
		t.Fatalf("got %+v", res)
	}
	var got []Provenance
	for _, a := range res.Attestations {
		p, ok := ProvenanceFromAttestation(a)
		if !ok {
			t.Fatalf("no provenance in %s", a.PredicateType)
		}
		got = append(got, p)
		if _, _, ok := SBOMFromAttestation(a); ok {
			t.Errorf("%s taken for an SBOM", a.PredicateType)
		}
	}
	want := []Provenance{
		{PredicateType: "https://slsa.dev/provenance/v0.2", BuilderID: "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml@refs/tags/v1.9.0"},
		{PredicateType: "https://slsa.dev/provenance/v1", BuilderID: "https://github.com/actions/runner/github-hosted"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("provenance = %+v, want %+v", got, want)
	}
}

func TestProvenanceFromAttestation(t *testing.T) {
	for _, tc := range []struct {
		name, pt, body, want string
		ok                   bool
	}{
		{"v0.1", "https://slsa.dev/provenance/v0.1", `{"builder":{"id":"b01"}}`, "b01", true},
		{"v0.2 missing builder", "https://slsa.dev/provenance/v0.2", `{"buildType":"x"}`, "", false},
		{"v1 with v0.2 shape", "https://slsa.dev/provenance/v1", `{"builder":{"id":"b"}}`, "", false},
		{"not provenance", "https://spdx.dev/Document", `{"builder":{"id":"b"}}`, "", false},
		{"malformed", "https://slsa.dev/provenance/v1", `[1]`, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ok := ProvenanceFromAttestation(Attestation{PredicateType: tc.pt, Predicate: json.RawMessage(tc.body)})
			if ok != tc.ok || p.BuilderID != tc.want {
				t.Errorf("got %+v, %v; want %q, %v", p, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestSBOMFromAttestation(t *testing.T) {
	spdxString, _ := json.Marshal(spdxDoc)
	tagValue, _ := json.Marshal("SPDXVersion: SPDX-2.3\nDataLicense: CC0-1.0\n")
	for _, tc := range []struct {
		name, pt, body string
		wantFormat     string
		wantDoc        string
		ok             bool
	}{
		{"spdx", "https://spdx.dev/Document", spdxDoc, "spdx-json", spdxDoc, true},
		{"spdx v2.3", "https://spdx.dev/Document/v2.3", spdxDoc, "spdx-json", spdxDoc, true},
		{"spdx as JSON string", "https://spdx.dev/Document", string(spdxString), "spdx-json", spdxDoc, true},
		{"spdx tag-value", "https://spdx.dev/Document", string(tagValue), "spdx-tag-value", "SPDXVersion: SPDX-2.3\nDataLicense: CC0-1.0", true},
		{"cyclonedx", "https://cyclonedx.org/bom", `{"bomFormat":"CycloneDX"}`, "cyclonedx-json", `{"bomFormat":"CycloneDX"}`, true},
		{"cyclonedx v1.6", "https://cyclonedx.org/bom/v1.6", `{"bomFormat":"CycloneDX"}`, "cyclonedx-json", `{"bomFormat":"CycloneDX"}`, true},
		{"syft", "https://syft.dev/bom", `{"artifacts":[]}`, "syft-json", `{"artifacts":[]}`, true},
		{"lookalike type", "https://spdx.dev/Documentation", spdxDoc, "", "", false},
		{"provenance", "https://slsa.dev/provenance/v1", `{}`, "", "", false},
		{"null predicate", "https://spdx.dev/Document", `null`, "", "", false},
		{"array predicate", "https://cyclonedx.org/bom", `[]`, "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, doc, ok := SBOMFromAttestation(Attestation{PredicateType: tc.pt, Predicate: json.RawMessage(tc.body)})
			if ok != tc.ok || f != tc.wantFormat || string(doc) != tc.wantDoc {
				t.Errorf("got %q, %q, %v; want %q, %q, %v", f, doc, ok, tc.wantFormat, tc.wantDoc, tc.ok)
			}
		})
	}
}
