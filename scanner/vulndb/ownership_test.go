package vulndb

import (
	"context"
	"testing"
	"time"

	"github.com/anchore/packageurl-go"
	"github.com/anchore/syft/syft/artifact"
	"github.com/anchore/syft/syft/file"
	"github.com/anchore/syft/syft/format"
	"github.com/anchore/syft/syft/format/syftjson"
	"github.com/anchore/syft/syft/linux"
	syftPkg "github.com/anchore/syft/syft/pkg"
	"github.com/anchore/syft/syft/sbom"
	"github.com/anchore/syft/syft/source"

	"github.com/imagetrust/imagetrust/scanner/vulndb/dbtest"
)

// ownedDoc is a Debian 12 image with a dpkg package (source owner-src) and an npm package whose
// files that dpkg package owns when owned is true, as syft records it.
func ownedDoc(t *testing.T, ownerVersion string, owned bool) []byte {
	t.Helper()
	owner := syftPkg.Package{Name: "owner-pkg", Version: ownerVersion, Type: syftPkg.DebPkg,
		Metadata:  syftPkg.DpkgDBEntry{Package: "owner-pkg", Source: "owner-src", Version: ownerVersion, Architecture: "amd64"},
		Locations: file.NewLocationSet(file.NewLocation("/var/lib/dpkg/status")),
		PURL: packageurl.NewPackageURL("deb", "debian", "owner-pkg", ownerVersion,
			packageurl.Qualifiers{{Key: "arch", Value: "amd64"}, {Key: "distro", Value: "debian-12"}}, "").ToString()}
	owner.SetID()
	lib := syftPkg.Package{Name: "owned-lib", Version: "4.0.0", Type: syftPkg.NpmPkg, Language: syftPkg.JavaScript,
		Locations: file.NewLocationSet(file.NewLocation("/usr/lib/node_modules/owned-lib/package.json")),
		PURL:      "pkg:npm/owned-lib@4.0.0"}
	lib.SetID()
	s := sbom.SBOM{
		Artifacts: sbom.Artifacts{
			Packages:          syftPkg.NewCollection(owner, lib),
			LinuxDistribution: &linux.Release{ID: "debian", VersionID: "12", Name: "debian"},
		},
		Source:     source.Description{Name: "image", Metadata: source.DirectoryMetadata{Path: "/"}},
		Descriptor: sbom.Descriptor{Name: "syft", Version: "1.57.0"},
	}
	if owned {
		s.Relationships = []artifact.Relationship{{From: owner, To: lib, Type: artifact.OwnershipByFileOverlapRelationship}}
	}
	b, err := format.Encode(s, syftjson.NewFormatEncoder())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Grype drops a vulnerability of a package whose files a distro package owns when the distro
// says that package is fixed (an ownership ignore filter naming the owner). The fleet shares
// match results between SBOMs, so it must still apply the filter per SBOM, with each SBOM's
// own owners, including when a result is replayed from the cache after a rematch.
func TestMatchManyAppliesOwnershipPerSBOM(t *testing.T) {
	const id = "CVE-2026-7777"
	vulns := []dbtest.Vuln{
		{ID: id, Ecosystem: dbtest.EcosystemDeb, Distro: "debian:12", Package: "owner-src", Constraint: "< 1.0-1", FixedVersion: "1.0-1", Severity: "High"},
		{ID: id, Ecosystem: dbtest.EcosystemNPM, Package: "owned-lib", Constraint: "< 5.0.0", FixedVersion: "5.0.0", Severity: "High"},
	}
	docs := map[string][]byte{
		"owner-fixed":      ownedDoc(t, "2.0-1", true),
		"owner-fixed-free": ownedDoc(t, "2.0-1", false),
		"owner-vulnerable": ownedDoc(t, "0.5-1", true),
	}
	m := newLoadedManagerEmpty(t, Config{MatchWorkers: 2})
	importVulns(t, m, time.Now().Add(-time.Hour), vulns)
	want := matchEach(t, m, docs)

	// the reference itself must show the filter at work, or this test proves nothing
	has := func(fs []Finding, pkg string) bool {
		for _, f := range fs {
			if f.ID == id && f.Package == pkg {
				return true
			}
		}
		return false
	}
	if has(want["owner-fixed"], "owned-lib") || !has(want["owner-fixed-free"], "owned-lib") ||
		!has(want["owner-vulnerable"], "owned-lib") || !has(want["owner-vulnerable"], "owner-pkg") {
		t.Fatalf("grype's own results are not what this test is built on: %+v", want)
	}

	got, err := m.MatchMany(context.Background(), docs)
	if err != nil {
		t.Fatal(err)
	}
	assertSameFindings(t, "first match", got, want)
	// a second batch reuses every cached result and rebuilds each package from the cache
	again, err := m.MatchMany(context.Background(), map[string][]byte{"owner-fixed-again": docs["owner-fixed"]})
	if err != nil {
		t.Fatal(err)
	}
	if st := m.FleetStats(); st.Matched != 3 {
		t.Errorf("matched %d distinct packages, want 3 (owner-pkg twice, owned-lib once)", st.Matched)
	}
	assertSameFindings(t, "cached", again, map[string][]Finding{"owner-fixed-again": want["owner-fixed"]})
	if _, err := m.RematchAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	for k, w := range want {
		if d := m.fl.docs[k]; d == nil || !sameFindings(d.result.Findings, w) {
			t.Errorf("%s after RematchAll differs from Match", k)
		}
	}
}
