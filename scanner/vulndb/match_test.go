package vulndb

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anchore/syft/syft/format"
	"github.com/anchore/syft/syft/format/syftjson"
	"github.com/anchore/syft/syft/linux"
	syftPkg "github.com/anchore/syft/syft/pkg"
	"github.com/anchore/syft/syft/sbom"

	"github.com/imagetrust/imagetrust/scanner/vulndb/dbtest"
)

// core keeps the fields that do not depend on how the SBOM format carries package details.
func core(fs []Finding) []Finding {
	out := make([]Finding, 0, len(fs))
	for _, f := range fs {
		f.PURL, f.Matchers, f.MatchTypes, f.Locations = "", nil, nil, nil
		out = append(out, f)
	}
	return out
}

func diffFindings(t *testing.T, label string, got, want []Finding) {
	t.Helper()
	if reflect.DeepEqual(got, want) {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: findings differ\n got:\n", label)
	for _, f := range got {
		fmt.Fprintf(&b, "  %+v\n", f)
	}
	b.WriteString(" want:\n")
	for _, f := range want {
		fmt.Fprintf(&b, "  %+v\n", f)
	}
	t.Error(b.String())
}

// TestMatchSyftSBOMs matches SBOMs that syft produced from Debian 12 and Alpine 3.19 root
// filesystems (dpkg, apk, go.mod, package-lock.json) in all three formats. Besides the hits it
// pins the misses: installed fixed versions (curl, musl, x/text), a record for another Debian
// release and linux-libc-dev, which grype's default kernel-header rule ignores.
func TestMatchSyftSBOMs(t *testing.T) {
	debian, alpine := fixtures(t)
	m := newLoadedManager(t, Config{MaxAge: 24 * time.Hour, ValidateChecksum: true})
	ctx := context.Background()

	for _, tc := range []struct {
		name     string
		docs     sbomDocs
		packages int
		want     []Finding
	}{
		{"debian", debian, 9, wantDebianRootFindings},
		{"alpine", alpine, 3, wantAlpineRootFindings},
	} {
		for fmtName, doc := range tc.docs.all() {
			t.Run(tc.name+"/"+fmtName, func(t *testing.T) {
				res, err := m.Match(ctx, doc)
				if err != nil {
					t.Fatal(err)
				}
				if res.Packages != tc.packages {
					t.Errorf("packages = %d, want %d", res.Packages, tc.packages)
				}
				diffFindings(t, fmtName, core(res.Findings), tc.want)
				if res.DB.Stale || res.DB.Checksum == "" || res.DB.SchemaVersion != "v6.1.10" {
					t.Errorf("DB status = %+v", res.DB)
				}
			})
		}
	}

	// syft JSON carries full package metadata: pin matcher, match type, PURL and location too
	// (the primary evidence only: not the deb packages' copyright and md5sums files)
	res, err := m.Match(ctx, debian.syftJSON)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ pkg, purl, matcher, matchType, location string }{
		{"lodash", "pkg:npm/lodash@4.17.20", "javascript-matcher", "exact-direct-match", "/app/package-lock.json"},
		{"libssl3", "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=debian-12&upstream=openssl", "dpkg-matcher", "exact-indirect-match", "/var/lib/dpkg/status"},
		{"openssl", "pkg:deb/debian/openssl@3.0.11-1~deb12u2?arch=amd64&distro=debian-12", "dpkg-matcher", "exact-direct-match", "/var/lib/dpkg/status"},
		{"golang.org/x/net", "pkg:golang/golang.org/x/net@v0.20.0", "go-module-matcher", "exact-direct-match", "/app/go.mod"},
		{"tar", "pkg:deb/debian/tar@1.34%2Bdfsg-1.2%2Bdeb12u1?arch=amd64&distro=debian-12", "dpkg-matcher", "exact-direct-match", "/var/lib/dpkg/status"},
	}
	if len(res.Findings) != len(want) {
		t.Fatalf("got %d findings, want %d", len(res.Findings), len(want))
	}
	for i, w := range want {
		f := res.Findings[i]
		if f.Package != w.pkg || f.PURL != w.purl || !reflect.DeepEqual(f.Matchers, []string{w.matcher}) || !reflect.DeepEqual(f.MatchTypes, []string{w.matchType}) ||
			!reflect.DeepEqual(f.Locations, []string{w.location}) {
			t.Errorf("finding %d = %s %s %v %v %v, want %+v", i, f.Package, f.PURL, f.Matchers, f.MatchTypes, f.Locations, w)
		}
	}
}

// Hand-written minimal documents, the shape other SBOM generators (and syft) emit.
func syftJSONDoc(name, version, purl string) string {
	return `{
 "artifacts": [{"id": "a1", "name": "` + name + `", "version": "` + version + `", "type": "deb", "foundBy": "dpkg-db-cataloger",
   "locations": [], "licenses": [], "language": "", "cpes": [], "purl": "` + purl + `",
   "metadataType": "dpkg-db-entry", "metadata": {"package": "` + name + `", "source": "", "version": "` + version + `",
   "sourceVersion": "", "architecture": "amd64", "maintainer": "", "installedSize": 0, "files": []}}],
 "artifactRelationships": [],
 "source": {"id": "s1", "name": "example", "version": "", "type": "image", "metadata": {"userInput": "example", "imageID": "", "manifestDigest": "", "mediaType": "", "tags": [], "imageSize": 0, "layers": [], "manifest": "", "config": "", "repoDigests": [], "architecture": "amd64", "os": "linux"}},
 "distro": {"prettyName": "Debian GNU/Linux 12 (bookworm)", "name": "Debian GNU/Linux", "id": "debian", "versionID": "12", "versionCodename": "bookworm"},
 "descriptor": {"name": "syft", "version": "1.57.0"},
 "schema": {"version": "16.1.13", "url": "https://raw.githubusercontent.com/anchore/syft/main/schema/json/schema-16.1.13.json"}
}`
}

func spdxDoc(name, version, purl string) string {
	return `{
 "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT", "name": "example",
 "documentNamespace": "https://example.com/spdx/example",
 "creationInfo": {"created": "2024-01-01T00:00:00Z", "creators": ["Tool: handwritten"]},
 "packages": [{"name": "` + name + `", "SPDXID": "SPDXRef-Package-1", "versionInfo": "` + version + `",
   "downloadLocation": "NOASSERTION", "filesAnalyzed": false,
   "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": "` + purl + `"}]}]
}`
}

func cdxDoc(name, version, purl string) string {
	return `{"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
 "components": [{"type": "library", "bom-ref": "c1", "name": "` + name + `", "version": "` + version + `", "purl": "` + purl + `"}]}`
}

// TestMatchHandWrittenDocuments matches minimal syft JSON, SPDX and CycloneDX documents for
// each ecosystem, once at a vulnerable version and once at the fixed version.
func TestMatchHandWrittenDocuments(t *testing.T) {
	m := newLoadedManager(t, Config{})
	ctx := context.Background()
	openssl := Finding{ID: "CVE-2024-1000", Package: "openssl", Version: "3.0.11-1~deb12u2", Type: "deb",
		FixedVersions: []string{"3.0.13-1~deb12u1"}, FixState: "fixed", Severity: "High", Namespace: "debian:distro:debian:12"}
	lodash := Finding{ID: "GHSA-35jh-r3h4-6jhm", Aliases: []string{"CVE-2021-23337"}, Package: "lodash", Version: "4.17.20", Type: "npm",
		FixedVersions: []string{"4.17.21"}, FixState: "fixed", Severity: "Critical", Namespace: "github:language:javascript"}
	busybox := Finding{ID: "CVE-2024-2000", Package: "busybox", Version: "1.36.1-r15", Type: "apk",
		FixedVersions: []string{"1.36.1-r16"}, FixState: "fixed", Severity: "Medium", Namespace: "alpine:distro:alpine:3.19"}
	xnet := Finding{ID: "GHSA-4v7x-pqxf-cx7m", Aliases: []string{"CVE-2023-45288"}, Package: "golang.org/x/net", Version: "v0.20.0", Type: "go-module",
		FixedVersions: []string{"0.23.0"}, FixState: "fixed", Severity: "High", Namespace: "github:language:go"}

	for _, tc := range []struct {
		name string
		doc  string
		want []Finding
	}{
		{"syft-json deb vulnerable", syftJSONDoc("openssl", "3.0.11-1~deb12u2", "pkg:deb/debian/openssl@3.0.11-1~deb12u2?arch=amd64&distro=debian-12"), []Finding{openssl}},
		{"syft-json deb fixed", syftJSONDoc("openssl", "3.0.13-1~deb12u1", "pkg:deb/debian/openssl@3.0.13-1~deb12u1?arch=amd64&distro=debian-12"), nil},
		{"spdx npm vulnerable", spdxDoc("lodash", "4.17.20", "pkg:npm/lodash@4.17.20"), []Finding{lodash}},
		{"spdx npm fixed", spdxDoc("lodash", "4.17.21", "pkg:npm/lodash@4.17.21"), nil},
		{"spdx deb via source package", spdxDoc("libssl3", "3.0.11-1~deb12u2", "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&upstream=openssl&distro=debian-12"),
			[]Finding{{ID: "CVE-2024-1000", Package: "libssl3", Version: "3.0.11-1~deb12u2", Type: "deb",
				FixedVersions: []string{"3.0.13-1~deb12u1"}, FixState: "fixed", Severity: "High", Namespace: "debian:distro:debian:12"}}},
		{"spdx deb other release", spdxDoc("openssl", "3.0.11-1~deb12u2", "pkg:deb/debian/openssl@3.0.11-1~deb12u2?arch=amd64&distro=debian-13"), nil},
		{"cyclonedx apk vulnerable", cdxDoc("busybox", "1.36.1-r15", "pkg:apk/alpine/busybox@1.36.1-r15?arch=x86_64&distro=alpine-3.19.1"), []Finding{busybox}},
		{"cyclonedx apk fixed", cdxDoc("busybox", "1.36.1-r16", "pkg:apk/alpine/busybox@1.36.1-r16?arch=x86_64&distro=alpine-3.19.1"), nil},
		{"cyclonedx go vulnerable", cdxDoc("golang.org/x/net", "v0.20.0", "pkg:golang/golang.org/x/net@v0.20.0"), []Finding{xnet}},
		{"cyclonedx go fixed", cdxDoc("golang.org/x/net", "v0.23.0", "pkg:golang/golang.org/x/net@v0.23.0"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := m.Match(ctx, []byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			if res.Packages != 1 {
				t.Errorf("packages = %d, want 1", res.Packages)
			}
			got := core(res.Findings)
			if len(got) == 0 {
				got = nil
			}
			diffFindings(t, tc.name, got, tc.want)
		})
	}
}

func TestMatchMalformedSBOM(t *testing.T) {
	m := newLoadedManager(t, Config{})
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"empty", "", "vulndb: invalid SBOM document: empty document"},
		{"whitespace", " \n\t", "vulndb: invalid SBOM document: empty document"},
		{"not json", "this is not an SBOM", "vulndb: invalid SBOM document: unable to decode sbom: sbom format not recognized"},
		{"unknown json", `{"hello": "world"}`, "vulndb: invalid SBOM document: unable to decode sbom: sbom format not recognized"},
		{"truncated syft json", syftJSONDoc("openssl", "1", "pkg:deb/debian/openssl@1")[:200], "vulndb: invalid SBOM document: unable to decode sbom: sbom format not recognized"},
		{"truncated cyclonedx", cdxDoc("a", "1", "pkg:npm/a@1")[:60], "vulndb: invalid SBOM document: unable to decode sbom: sbom format not recognized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := m.Match(context.Background(), []byte(tc.doc))
			if !errors.Is(err, ErrInvalidSBOM) {
				t.Fatalf("err = %v (result %v), want ErrInvalidSBOM", err, res)
			}
			if err.Error() != tc.want {
				t.Errorf("err = %q, want %q", err, tc.want)
			}
		})
	}
}

func TestMatchRejectsOversizedSBOM(t *testing.T) {
	m := newLoadedManager(t, Config{MaxSBOMBytes: 512})
	doc := []byte(spdxDoc("lodash", "4.17.20", "pkg:npm/lodash@4.17.20"))
	_, err := m.Match(context.Background(), doc)
	if !errors.Is(err, ErrSBOMTooLarge) {
		t.Fatalf("err = %v, want ErrSBOMTooLarge", err)
	}
	if want := fmt.Sprintf("vulndb: SBOM document too large: %d bytes exceeds the limit of 512", len(doc)); err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
	if n, err := New(Config{Dir: t.TempDir()}); err != nil || n.cfg.MaxSBOMBytes != 256<<20 {
		t.Errorf("default limit = %d (%v), want 256 MiB", n.cfg.MaxSBOMBytes, err)
	}
}

func TestMatchWithoutDB(t *testing.T) {
	m, err := New(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Match(context.Background(), []byte(cdxDoc("a", "1", "pkg:npm/a@1")))
	if !errors.Is(err, ErrNoDB) || err.Error() != "vulndb: no vulnerability database installed: load or import one before matching" {
		t.Fatalf("err = %v, want ErrNoDB", err)
	}
}

func TestMatchRefusesStaleDB(t *testing.T) {
	dir := t.TempDir()
	built := time.Now().Add(-30 * 24 * time.Hour).UTC().Round(time.Second)
	m, err := New(Config{Dir: dir, MaxAge: 7 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.Import(context.Background(), newTestArchive(t, built, testVulns)); err != nil {
		t.Fatal(err)
	}
	st := m.Status()
	if !st.Stale || !st.Built.Equal(built) || st.Age < 29*24*time.Hour {
		t.Errorf("status = %+v, want stale, built %s", st, built)
	}
	_, err = m.Match(context.Background(), []byte(spdxDoc("lodash", "4.17.20", "pkg:npm/lodash@4.17.20")))
	if !errors.Is(err, ErrStale) {
		t.Fatalf("err = %v, want ErrStale", err)
	}
	wantPrefix := "vulndb: vulnerability database is stale: built " + built.Format(time.RFC3339) + " (720h"
	if !strings.HasPrefix(err.Error(), wantPrefix) || !strings.HasSuffix(err.Error(), "ago), max age 168h0m0s") {
		t.Errorf("err = %q, want %q…max age 168h0m0s", err, wantPrefix)
	}

	// the same database without an age limit matches
	m2, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if err := m2.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	res, err := m2.Match(context.Background(), []byte(spdxDoc("lodash", "4.17.20", "pkg:npm/lodash@4.17.20")))
	if err != nil || len(res.Findings) != 1 || res.DB.Stale {
		t.Fatalf("without MaxAge: %v %+v", err, res)
	}
}

func TestSortFindings(t *testing.T) {
	fs := []Finding{
		{ID: "B", Package: "x", Severity: "Low"},
		{ID: "A", Package: "y", Severity: "Unknown"},
		{ID: "A", Package: "x", Severity: "Critical"},
		{ID: "C", Package: "a", Severity: "Critical"},
		{ID: "A", Package: "b", Severity: "Low"},
		{ID: "A", Package: "b", Version: "0", Severity: "Low", Type: "npm"},
		{ID: "Z", Package: "z", Severity: "Negligible"},
		{ID: "M", Package: "m", Severity: "Medium"},
		{ID: "H", Package: "h", Severity: "High"},
	}
	SortFindings(fs)
	var got []string
	for _, f := range fs {
		got = append(got, f.Severity+"/"+f.ID+"/"+f.Package+"/"+f.Version)
	}
	want := []string{"Critical/A/x/", "Critical/C/a/", "High/H/h/", "Medium/M/m/", "Low/A/b/", "Low/A/b/0", "Low/B/x/", "Negligible/Z/z/", "Unknown/A/y/"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("order = %v, want %v", got, want)
	}
}

// largeSBOM encodes n npm packages with syft's JSON encoder; every 10,000th is a vulnerable
// lodash.
func largeSBOM(t testing.TB, n int) (doc []byte, vulnerable int) {
	t.Helper()
	c := syftPkg.NewCollection()
	for i := 0; i < n; i++ {
		name, ver := fmt.Sprintf("package-%06d", i), "1.0.0"
		if i%10000 == 0 {
			name, ver = "lodash", fmt.Sprintf("4.17.%d", i/10000%21) // 4.17.0 … 4.17.20, all < 4.17.21
			vulnerable++
		}
		p := syftPkg.Package{Name: name, Version: ver, Type: syftPkg.NpmPkg, Language: syftPkg.JavaScript,
			PURL: "pkg:npm/" + name + "@" + ver, FoundBy: "javascript-lock-cataloger"}
		p.SetID()
		c.Add(p)
	}
	s := sbom.SBOM{Artifacts: sbom.Artifacts{Packages: c, LinuxDistribution: &linux.Release{ID: "debian", VersionID: "12"}}}
	doc, err := format.Encode(s, syftjson.NewFormatEncoder())
	if err != nil {
		t.Fatal(err)
	}
	return doc, vulnerable
}

// heapSampler records the peak live heap while it runs.
type heapSampler struct {
	peak atomic.Uint64
	stop chan struct{}
	done sync.WaitGroup
}

func startHeapSampler() *heapSampler {
	h := &heapSampler{stop: make(chan struct{})}
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	h.done.Add(1)
	go func() {
		defer h.done.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > h.peak.Load() {
				h.peak.Store(v)
			}
			select {
			case <-h.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return h
}

func (h *heapSampler) Stop() uint64 {
	close(h.stop)
	h.done.Wait()
	return h.peak.Load()
}

// TestMatchLargeSBOM matches a 100,000-package SBOM (5,000 with -short, 300 under -race, as
// grype's matcher spends ~0.3 ms per package in SQLite lookups, ~30 s for 100k on 2 cores, and
// ~40x that under the race detector) and bounds the peak live heap.
func TestMatchLargeSBOM(t *testing.T) {
	n := 100_000
	switch {
	case raceEnabled:
		n = 300
	case testing.Short():
		n = 5_000
	}
	doc, vulnerable := largeSBOM(t, n)
	m := newLoadedManager(t, Config{})

	runtime.GC()
	hs := startHeapSampler()
	start := time.Now()
	res, err := m.Match(context.Background(), doc)
	elapsed := time.Since(start)
	peak := hs.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if res.Packages != n {
		t.Errorf("packages = %d, want %d", res.Packages, n)
	}
	if len(res.Findings) != vulnerable {
		t.Errorf("findings = %d, want %d", len(res.Findings), vulnerable)
	}
	for _, f := range res.Findings {
		if f.ID != "GHSA-35jh-r3h4-6jhm" || f.Package != "lodash" {
			t.Errorf("unexpected finding %+v", f)
		}
	}
	t.Logf("%d packages, SBOM %.1f MiB: matched in %s, peak live heap %.0f MiB, %d findings",
		n, float64(len(doc))/(1<<20), elapsed.Round(time.Millisecond), float64(peak)/(1<<20), len(res.Findings))
	// the document is held throughout; decoding and matching must stay within a small
	// multiple of it plus a fixed allowance
	if limit := uint64(40*len(doc)) + 256<<20; peak > limit {
		t.Errorf("peak live heap %d MiB exceeds %d MiB", peak>>20, limit>>20)
	}
}

// dbtestVulnsPlus returns testVulns with one more record, to build a distinguishable DB.
func dbtestVulnsPlus(extra ...dbtest.Vuln) []dbtest.Vuln {
	return append(append([]dbtest.Vuln(nil), testVulns...), extra...)
}
