package scanner_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"

	"github.com/imagetrust/imagetrust/internal/demo"
	"github.com/imagetrust/imagetrust/scanner"
	"github.com/imagetrust/imagetrust/scanner/policy"
	"github.com/imagetrust/imagetrust/scanner/registry"
	"github.com/imagetrust/imagetrust/scanner/registry/registrytest"
	"github.com/imagetrust/imagetrust/scanner/sbom"
	"github.com/imagetrust/imagetrust/scanner/verify"
	"github.com/imagetrust/imagetrust/scanner/verify/signtest"
	"github.com/imagetrust/imagetrust/scanner/vulndb"
	"github.com/imagetrust/imagetrust/scanner/vulndb/dbtest"
)

// The fixture world: a registry, a key, a CA, a tiny DB, and images built for each case.

var vulns = []dbtest.Vuln{
	{ID: "CVE-2026-1000", Severity: "Critical", Ecosystem: dbtest.EcosystemDeb, Package: "openssl",
		Constraint: "< 3.0.15-1~deb12u1", FixedVersion: "3.0.15-1~deb12u1"},
	{ID: "CVE-2026-1001", Severity: "Low", Ecosystem: dbtest.EcosystemDeb, Package: "tar", Constraint: ""},
	{ID: "CVE-2026-2000", Severity: "High", Ecosystem: dbtest.EcosystemAPK, Package: "busybox",
		Constraint: "< 1.36.1-r16", FixedVersion: "1.36.1-r16"},
	{ID: "GHSA-35jh-r3h4-6jhm", Aliases: []string{"CVE-2021-23337"}, Severity: "Critical", Ecosystem: dbtest.EcosystemNPM,
		Package: "lodash", Constraint: "< 4.17.21", FixedVersion: "4.17.21"},
}

var debianPkgs = []registrytest.Pkg{{Name: "openssl", Version: "3.0.11-1~deb12u2"}, {Name: "tar", Version: "1.34+dfsg-1.2+deb12u1"}, {Name: "bash", Version: "5.2.15-2+b7"}}
var alpinePkgs = []registrytest.Pkg{{Name: "busybox", Version: "1.36.1-r15"}, {Name: "musl", Version: "1.2.4_git20230717-r5"}}

type world struct {
	reg  *registrytest.Registry
	key  *signtest.KeyPair
	ca   *signtest.CA
	db   *vulndb.Manager
	sc   *scanner.Scanner
	opts []ociremote.Option
}

func newWorld(t testing.TB) *world {
	t.Helper()
	ctx := context.Background()
	w := &world{reg: registrytest.New(t)}
	var err error
	if w.key, err = signtest.NewKeyPair(); err != nil {
		t.Fatal(err)
	}
	if w.ca, err = signtest.NewCA("imagetrust test CA"); err != nil {
		t.Fatal(err)
	}
	archive, err := dbtest.Archive(t.TempDir(), time.Now().Add(-time.Hour), vulns)
	if err != nil {
		t.Fatal(err)
	}
	if w.db, err = vulndb.New(vulndb.Config{Dir: t.TempDir(), ValidateChecksum: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.db.Close() })
	if _, err := w.db.Import(ctx, archive); err != nil {
		t.Fatal(err)
	}
	cache, err := sbom.NewCache(t.TempDir(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	w.sc, err = scanner.New(scanner.Config{Registry: registry.New(registry.Options{RequestsPerSecond: -1}), DB: w.db, Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	w.opts = []ociremote.Option{ociremote.WithRemoteOptions(w.reg.RemoteOptions(ctx)...)}
	return w
}

func (w *world) push(t testing.TB, repoTag string, img remote.Taggable) name.Digest {
	t.Helper()
	d, err := w.reg.Push(context.Background(), w.reg.Repo(repoTag), img)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (w *world) keyPolicy(name string) scanner.Policy {
	auth := verify.Authority{Name: name + "/release", PublicKeyPEM: w.key.PublicPEM, IgnoreTlog: true}
	return scanner.Policy{
		Policy: policy.Policy{
			Name: name, Images: []string{w.reg.Host() + "/**"}, RequireSignature: true, Authorities: []string{auth.Name},
			Vulnerabilities: &policy.VulnerabilityGate{FailOn: "Critical"},
		},
		AuthorityConfigs: []verify.Authority{auth},
	}
}

func (w *world) keylessPolicy(name, subject, issuer string) scanner.Policy {
	auth := verify.Authority{Name: name + "/ci", IgnoreTlog: true, Keyless: &verify.Keyless{
		Identities: []verify.Identity{{Subject: subject, Issuer: issuer}}, RootsPEM: w.ca.RootPEM, IgnoreSCT: true,
	}}
	return scanner.Policy{
		Policy:           policy.Policy{Name: name, Images: []string{"**"}, RequireSignature: true, Authorities: []string{auth.Name}},
		AuthorityConfigs: []verify.Authority{auth},
	}
}

func (w *world) assess(t testing.TB, ref name.Digest, pols ...scanner.Policy) *scanner.Assessment {
	t.Helper()
	imgs, err := w.sc.Resolve(context.Background(), ref.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 {
		t.Fatalf("resolved %d images, want 1", len(imgs))
	}
	a, err := w.sc.Assess(context.Background(), imgs[0], pols)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func ids(a *scanner.Assessment) []string {
	if a.Scan == nil {
		return nil
	}
	var out []string
	for _, f := range a.Scan.Findings {
		out = append(out, f.ID+" "+f.Package+" "+f.Version+" "+strings.Join(f.FixedVersions, ","))
	}
	slices.Sort(out)
	return out
}

// spdxOf generates ref's SBOM with Syft and encodes it as SPDX JSON, as a build pipeline
// would before attesting or attaching it.
func spdxOf(t testing.TB, ref name.Digest) []byte {
	t.Helper()
	doc, err := demo.SPDXFor(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestKeySignedImageWithAttestedSBOM(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	ref := w.push(t, "team/web:v1", registrytest.DebianImage(debianPkgs))
	if err := signtest.SignImage(ctx, ref, w.key, w.opts...); err != nil {
		t.Fatal(err)
	}
	spdx := spdxOf(t, ref)
	if err := signtest.Attest(ctx, ref, ref, "https://spdx.dev/Document", spdx, w.key, w.opts...); err != nil {
		t.Fatal(err)
	}

	a := w.assess(t, ref, w.keyPolicy("prod"))
	if a.Verification.Signature.State != verify.Verified {
		t.Fatalf("signature %+v", a.Verification.Signature)
	}
	if fp := w.key.Fingerprint(); a.Verification.Signature.Signers[0].KeyFingerprint != fp {
		t.Errorf("signer %+v, want fingerprint %s", a.Verification.Signature.Signers, fp)
	}
	if a.SBOM == nil || a.SBOM.Source != sbom.SourceAttested || a.SBOM.Format != sbom.FormatSPDXJSON || a.SBOM.Packages != 4 {
		// 4: the three dpkg packages and SPDX's package for the image itself.
		t.Fatalf("sbom %s reason %q", describe(a.SBOM), a.SBOMReason)
	}
	want := []string{"CVE-2026-1000 openssl 3.0.11-1~deb12u2 3.0.15-1~deb12u1", "CVE-2026-1001 tar 1.34+dfsg-1.2+deb12u1 "}
	if got := ids(a); !slices.Equal(got, want) {
		t.Fatalf("findings\n got %q\nwant %q", got, want)
	}
	if s := a.Scan.Summary; s.Critical != 1 || s.Low != 1 || s.Fixable != 1 || s.Total() != 2 {
		t.Errorf("summary %+v", s)
	}
	// The critical openssl finding fails the gate: verdict Untrusted with the id in the message.
	if a.Verdict.Verdict != policy.Untrusted || !strings.Contains(a.Verdict.Results[0].Failures[0].Message, "CVE-2026-1000") {
		t.Fatalf("verdict %+v", a.Verdict)
	}
	// Ignoring it makes the image Trusted, re-evaluated purely from the assessment.
	p := w.keyPolicy("prod")
	p.Vulnerabilities.Ignore = []policy.Exception{{ID: "CVE-2026-1000", Reason: "mitigated"}}
	if v := scanner.Evaluate([]scanner.Policy{p}, a, time.Now()); v.Verdict != policy.Trusted {
		t.Fatalf("with exception: %+v", v)
	}
}

// A verified SBOM attestation whose predicate is not an SBOM is not skipped in silence: the
// verification says that its signer published a broken SBOM, and the SBOM falls back.
func TestBrokenAttestedSBOMIsNamed(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	ref := w.push(t, "team/broken:v1", registrytest.DebianImage(debianPkgs))
	if err := signtest.SignImage(ctx, ref, w.key, w.opts...); err != nil {
		t.Fatal(err)
	}
	if err := signtest.Attest(ctx, ref, ref, "https://spdx.dev/Document", []byte(`{"garbage": true}`), w.key, w.opts...); err != nil {
		t.Fatal(err)
	}
	a := w.assess(t, ref, w.keyPolicy("prod"))
	if a.Verification.Signature.State != verify.Verified {
		t.Fatalf("signature %+v", a.Verification.Signature)
	}
	e := a.Verification.SBOMAttestationError
	if !strings.Contains(e, "the SBOM attestation (https://spdx.dev/Document) signed by prod/release could not be parsed") {
		t.Fatalf("SBOMAttestationError = %q", e)
	}
	if a.SBOM == nil || a.SBOM.Source != sbom.SourceGenerated || !strings.Contains(a.SBOMReason, "could not be parsed") {
		t.Fatalf("sbom %s reason %q", describe(a.SBOM), a.SBOMReason)
	}
}

func TestKeylessSignedReferrerSBOMAndProvenance(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	ref := w.push(t, "team/api:v2", registrytest.AlpineImage(alpinePkgs))
	leaf, err := w.ca.IssueLeaf("ci@example.com", "https://issuer.example.com", time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := signtest.SignImageKeyless(ctx, ref, leaf, w.opts...); err != nil {
		t.Fatal(err)
	}
	// SBOM as a referrer, itself signed by the same identity.
	art, err := demo.AttachReferrer(ctx, ref, "application/spdx+json", spdxOf(t, ref), w.reg.RemoteOptions(ctx)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := signtest.SignImageKeyless(ctx, art, leaf, w.opts...); err != nil {
		t.Fatal(err)
	}
	prov := []byte(`{"builder":{"id":"https://ci.example.com/builder@v1"},"buildType":"https://example.com/build"}`)
	if err := signtest.Attest(ctx, ref, ref, "https://slsa.dev/provenance/v0.2", prov, leaf, w.opts...); err != nil {
		t.Fatal(err)
	}
	p := w.keylessPolicy("ci", "ci@example.com", "https://issuer.example.com")
	p.RequireProvenance, p.AllowedBuilderIDs = true, []string{"https://ci.example.com/builder@v1"}
	p.RequireSBOMAttestation = true

	a := w.assess(t, ref, p)
	sig := a.Verification.Signature
	if sig.State != verify.Verified || sig.Signers[0].Subject != "ci@example.com" || sig.Signers[0].Issuer != "https://issuer.example.com" {
		t.Fatalf("signature %+v", sig)
	}
	if a.SBOM == nil || a.SBOM.Source != sbom.SourceReferrer {
		t.Fatalf("sbom %s reason %q", describe(a.SBOM), a.SBOMReason)
	}
	if a.Verification.Provenance.BuilderID != "https://ci.example.com/builder@v1" {
		t.Fatalf("provenance %+v", a.Verification.Provenance)
	}
	want := []string{"CVE-2026-2000 busybox 1.36.1-r15 1.36.1-r16"}
	if got := ids(a); !slices.Equal(got, want) {
		t.Fatalf("findings %q, want %q", got, want)
	}
	if a.Verdict.Verdict != policy.Trusted {
		t.Fatalf("verdict %+v", a.Verdict)
	}

	// A wrong identity: Invalid, and the referrer SBOM is no longer trusted (its signature does
	// not verify either), so the SBOM is generated and the attestation requirement fails.
	w2 := w.keylessPolicy("other", "someone@example.com", "https://issuer.example.com")
	w2.RequireSBOMAttestation = true
	w.sc = mustScanner(t, w, nil) // fresh cache so the SBOM source is decided again
	b := w.assess(t, ref, w2)
	if b.Verification.Signature.State != verify.Invalid {
		t.Fatalf("wrong identity: %+v", b.Verification.Signature)
	}
	if b.SBOM == nil || b.SBOM.Source != sbom.SourceGenerated || !strings.Contains(b.SBOMReason, "rejected") {
		t.Fatalf("sbom %s reason %q", describe(b.SBOM), b.SBOMReason)
	}
	if b.Verdict.Verdict != policy.Untrusted {
		t.Fatalf("verdict %+v", b.Verdict)
	}
}

func mustScanner(t testing.TB, w *world, cache *sbom.Cache) *scanner.Scanner {
	sc, err := scanner.New(scanner.Config{Registry: registry.New(registry.Options{}), DB: w.db, Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

func TestUnsignedAndTamperedImages(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	unsigned := w.push(t, "team/unsigned:v1", registrytest.DebianImage(debianPkgs[1:]))
	tampered := w.push(t, "team/tampered:v1", registrytest.AlpineImage(alpinePkgs))
	if err := signtest.SignImage(ctx, tampered, w.key, w.opts...); err != nil {
		t.Fatal(err)
	}
	if err := signtest.TamperSignaturePayload(ctx, tampered, w.opts...); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ref    name.Digest
		state  verify.State
		reason string
	}{
		{unsigned, verify.Unsigned, "no signatures"},
		{tampered, verify.Invalid, "none verified"},
	} {
		a := w.assess(t, tc.ref, w.keyPolicy("prod"))
		if a.Verification.Signature.State != tc.state || !strings.Contains(a.Verification.Signature.Reason, tc.reason) {
			t.Errorf("%s: signature %+v, want %s with %q", tc.ref, a.Verification.Signature, tc.state, tc.reason)
		}
		if a.Verdict.Verdict != policy.Untrusted || a.Verdict.Results[0].Failures[0].Check != policy.CheckNameSignature {
			t.Errorf("%s: verdict %+v", tc.ref, a.Verdict)
		}
		// Still scanned: a generated SBOM gives findings even for untrusted images.
		if a.SBOM == nil || a.SBOM.Source != sbom.SourceGenerated || a.Scan == nil {
			t.Errorf("%s: sbom %s scan %v (%s)", tc.ref, describe(a.SBOM), a.Scan, a.ScanReason)
		}
	}
}

func TestNoPolicyMeansNotRequiredAndUnknown(t *testing.T) {
	w := newWorld(t)
	ref := w.push(t, "team/free:v1", registrytest.DebianImage(debianPkgs))
	a := w.assess(t, ref)
	if a.Verification.Signature.State != scanner.NotRequired || a.Verdict.Verdict != policy.Unknown {
		t.Fatalf("signature %s verdict %s", a.Verification.Signature.State, a.Verdict.Verdict)
	}
	if got := len(ids(a)); got != 2 {
		t.Fatalf("%d findings, want 2", got)
	}
}

func TestBaseImageSignature(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	signedBase := w.push(t, "base/debian:12", registrytest.DebianImage(debianPkgs[:1]))
	if err := signtest.SignImage(ctx, signedBase, w.key, w.opts...); err != nil {
		t.Fatal(err)
	}
	unsignedBase := w.push(t, "base/other:1", registrytest.DebianImage(debianPkgs[1:]))
	onSigned := w.push(t, "team/on-signed:v1", registrytest.WithBaseAnnotations(registrytest.DebianImage(debianPkgs), w.reg.Repo("base/debian:12"), signedBase.DigestStr()))
	onUnsigned := w.push(t, "team/on-unsigned:v1", registrytest.WithBaseAnnotations(registrytest.DebianImage(debianPkgs), w.reg.Repo("base/other:1"), unsignedBase.DigestStr()))
	for _, ref := range []name.Digest{onSigned, onUnsigned} {
		if err := signtest.SignImage(ctx, ref, w.key, w.opts...); err != nil {
			t.Fatal(err)
		}
	}
	p := w.keyPolicy("prod")
	p.Vulnerabilities, p.RequireSignedBase = nil, true

	a := w.assess(t, onSigned, p)
	if b := a.Verification.Base; b.Name != w.reg.Repo("base/debian:12") || b.Digest != signedBase.DigestStr() || len(b.Signers) != 1 {
		t.Fatalf("base %+v", b)
	}
	if a.Verdict.Verdict != policy.Trusted {
		t.Fatalf("verdict %+v", a.Verdict)
	}
	a = w.assess(t, onUnsigned, p)
	if a.Verdict.Verdict != policy.Untrusted || a.Verdict.Results[0].Failures[0].Check != policy.CheckNameBaseImage ||
		!strings.Contains(a.Verdict.Results[0].Failures[0].Message, "not signed") {
		t.Fatalf("verdict %+v base %+v", a.Verdict, a.Verification.Base)
	}
}

func TestRegistryAllowList(t *testing.T) {
	w := newWorld(t)
	ref := w.push(t, "team/x:v1", registrytest.DebianImage(debianPkgs[1:]))
	p := scanner.Policy{Policy: policy.Policy{Name: "allow", Images: []string{"**"}, AllowedRegistries: []string{"registry.example.com"}}}
	a := w.assess(t, ref, p)
	if a.Verdict.Verdict != policy.Untrusted || a.Verdict.Results[0].Failures[0].Check != policy.CheckNameRegistry {
		t.Fatalf("verdict %+v", a.Verdict)
	}
	p.AllowedRegistries = []string{w.reg.Host()}
	if v := scanner.Evaluate([]scanner.Policy{p}, a, time.Now()); v.Verdict != policy.Trusted {
		t.Fatalf("allowed registry: %+v", v)
	}
}

func TestMultiArchIndexFansOut(t *testing.T) {
	w := newWorld(t)
	idx := registrytest.Index(map[string]v1.Image{
		"linux/amd64": registrytest.DebianImage(debianPkgs),
		"linux/arm64": registrytest.AlpineImage(alpinePkgs),
	})
	ref := w.push(t, "team/multi:v1", idx)
	imgs, err := w.sc.Resolve(context.Background(), w.reg.Repo("team/multi:v1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 2 {
		t.Fatalf("%d platform images, want 2: %+v", len(imgs), imgs)
	}
	got := map[string][]string{}
	for _, img := range imgs {
		if img.IndexDigest != ref.DigestStr() || img.Tag != "v1" {
			t.Errorf("image %+v, want index %s", img, ref.DigestStr())
		}
		a, err := w.sc.Assess(context.Background(), img, nil)
		if err != nil {
			t.Fatal(err)
		}
		got[img.Platform] = ids(a)
	}
	if len(got["linux/amd64"]) != 2 || len(got["linux/arm64"]) != 1 || got["linux/arm64"][0] != "CVE-2026-2000 busybox 1.36.1-r15 1.36.1-r16" {
		t.Fatalf("per-platform findings %q", got)
	}
	// Asking for one platform assesses just that one.
	one, err := w.sc.Resolve(context.Background(), w.reg.Repo("team/multi:v1"), []string{"linux/arm64"})
	if err != nil || len(one) != 1 || one[0].Platform != "linux/arm64" {
		t.Fatalf("platform filter: %+v %v", one, err)
	}
}

// TestRescanUsesCachedSBOM: the second assessment of a digest pulls no layer and no manifest
// for the SBOM; matching after a DB change touches no registry at all.
func TestRescanUsesCachedSBOM(t *testing.T) {
	w := newWorld(t)
	ref := w.push(t, "team/cached:v1", registrytest.DebianImage(debianPkgs))
	first := w.assess(t, ref)
	if first.SBOM.Source != sbom.SourceGenerated {
		t.Fatalf("first sbom %s", describe(first.SBOM))
	}
	w.reg.Reset()
	second := w.assess(t, ref)
	if c := w.reg.Counts(); c.Blobs.GET != 0 {
		t.Fatalf("second assessment fetched %d blobs: %+v", c.Blobs.GET, c)
	}
	if !slices.Equal(ids(first), ids(second)) {
		t.Fatalf("findings differ: %q vs %q", ids(first), ids(second))
	}
	w.reg.Reset()
	scan, err := w.sc.Match(context.Background(), second.SBOM)
	if err != nil {
		t.Fatal(err)
	}
	if c := w.reg.Counts(); c.Total != 0 || len(scan.Findings) != 2 {
		t.Fatalf("rematch: %d registry requests, %d findings", c.Total, len(scan.Findings))
	}
}

// TestConcurrentAssessments shares one scanner and one loaded DB between many goroutines;
// run with -race.
func TestConcurrentAssessments(t *testing.T) {
	w := newWorld(t)
	var refs []name.Digest
	for i := range 4 {
		pkgs := append(slices.Clone(debianPkgs), registrytest.Pkg{Name: fmt.Sprintf("extra%d", i), Version: "1.0"})
		refs = append(refs, w.push(t, fmt.Sprintf("team/c%d:v1", i), registrytest.DebianImage(pkgs)))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ref := refs[i%len(refs)]
			imgs, err := w.sc.Resolve(context.Background(), ref.String(), nil)
			if err != nil {
				errs <- err
				return
			}
			a, err := w.sc.Assess(context.Background(), imgs[0], []scanner.Policy{w.keyPolicy("prod")})
			if err != nil {
				errs <- err
				return
			}
			if a.Scan == nil || len(a.Scan.Findings) != 2 || a.SBOM.Packages != 4 {
				errs <- fmt.Errorf("%s: scan %+v sbom %s (%s)", ref, a.Scan, describe(a.SBOM), a.ScanReason)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestAssessmentJSONRoundTrip(t *testing.T) {
	// The CLI's JSON output is built from these fields; make sure they serialise.
	a := scanner.Assessment{Image: scanner.Image{Repository: "r/x", Digest: "sha256:00"}}
	b, err := json.Marshal(a)
	if err != nil || !strings.Contains(string(b), `"repository":"r/x"`) {
		t.Fatalf("%s %v", b, err)
	}
}

func describe(s *sbom.SBOM) string {
	if s == nil {
		return "<nil>"
	}
	return fmt.Sprintf("{source %s format %s packages %d note %q}", s.Source, s.Format, s.Packages, s.Note)
}

// benchImage pushes an npm + Go application image and resolves it.
func benchImage(b *testing.B) (*world, scanner.Image, []scanner.Policy) {
	w := newWorld(b)
	ref := w.push(b, "team/bench:v1", registrytest.AppImage(
		[]registrytest.Pkg{{Name: "lodash", Version: "4.17.20"}, {Name: "express", Version: "4.18.2"}},
		[]registrytest.Pkg{{Name: "golang.org/x/net", Version: "v0.20.0"}}))
	imgs, err := w.sc.Resolve(context.Background(), ref.String(), nil)
	if err != nil {
		b.Fatal(err)
	}
	return w, imgs[0], []scanner.Policy{w.keyPolicy("prod")}
}

// BenchmarkFirstScan is the cost of a digest seen for the first time: verification, SBOM
// generation with Syft (layers pulled) and matching. Compare with BenchmarkRescanCached.
func BenchmarkFirstScan(b *testing.B) {
	w, img, pols := benchImage(b)
	b.ResetTimer()
	for range b.N {
		sc := mustScanner(b, w, nil) // no SBOM cache: every iteration generates
		if _, err := sc.Assess(context.Background(), img, pols); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRescanCached is the scheduled rescan of a known digest: signatures re-verified,
// the SBOM read from the cache (no layer pulled), matched against the loaded DB.
func BenchmarkRescanCached(b *testing.B) {
	w, img, pols := benchImage(b)
	if _, err := w.sc.Assess(context.Background(), img, pols); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := w.sc.Assess(context.Background(), img, pols); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRematchOnly is what a DB change costs per cached digest: matching only, no registry.
func BenchmarkRematchOnly(b *testing.B) {
	w := newWorld(b)
	ref := w.push(b, "team/bench:v1", registrytest.DebianImage(debianPkgs))
	a := w.assess(b, ref)
	b.ResetTimer()
	for range b.N {
		if _, err := w.sc.Match(context.Background(), a.SBOM); err != nil {
			b.Fatal(err)
		}
	}
}
