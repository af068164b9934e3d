package vulndb

import (
	"bytes"
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anchore/clio"
	"github.com/anchore/grype/grype"
	"github.com/anchore/grype/grype/matcher"
	grypePkg "github.com/anchore/grype/grype/pkg"
	"github.com/anchore/grype/grype/presenter/models"
	"github.com/anchore/grype/grype/presenter/table"
	"github.com/anchore/packageurl-go"
	"github.com/anchore/syft/syft/artifact"
	"github.com/anchore/syft/syft/file"
	"github.com/anchore/syft/syft/format"
	"github.com/anchore/syft/syft/format/syftjson"
	"github.com/anchore/syft/syft/linux"
	syftPkg "github.com/anchore/syft/syft/pkg"
	"github.com/anchore/syft/syft/sbom"
	"github.com/anchore/syft/syft/source"

	"github.com/imagetrust/imagetrust/scanner/severity"
	"github.com/imagetrust/imagetrust/scanner/vulndb/dbtest"
)

// locationVulns: a Go module vulnerability, a Debian one and an npm record without a severity,
// as many real Go and npm records have none.
var locationVulns = []dbtest.Vuln{
	{ID: "GHSA-4v7x-pqxf-cx7m", Aliases: []string{"CVE-2023-45288"}, Severity: "High", Ecosystem: dbtest.EcosystemGo,
		Package: "golang.org/x/net", Constraint: "< 0.23.0", FixedVersion: "0.23.0"},
	{ID: "CVE-2024-1000", Severity: "High", Ecosystem: dbtest.EcosystemDeb, Package: "openssl",
		Constraint: "< 3.0.13-1~deb12u1", FixedVersion: "3.0.13-1~deb12u1"},
	{ID: "GHSA-0000-0000-0001", Ecosystem: dbtest.EcosystemNPM, Package: "left-pad", Constraint: "< 1.3.0", FixedVersion: "1.3.0"},
}

func primary(path string) file.Location {
	return file.NewLocation(path).WithAnnotation(syftPkg.EvidenceAnnotationKey, syftPkg.PrimaryEvidenceAnnotation)
}

func supporting(path string) file.Location {
	return file.NewLocation(path).WithAnnotation(syftPkg.EvidenceAnnotationKey, syftPkg.SupportingEvidenceAnnotation)
}

// twoBinariesSBOM is what syft reports for a Debian image with two Go binaries built with the
// same golang.org/x/net, and one npm package installed in two applications: each occurrence is
// a package of its own, with its own location.
func twoBinariesSBOM(t *testing.T) []byte {
	t.Helper()
	var pkgs []syftPkg.Package
	for _, bin := range []string{"/usr/local/bin/api", "/usr/local/bin/worker"} {
		pkgs = append(pkgs, syftPkg.Package{
			Name: "golang.org/x/net", Version: "v0.20.0", Type: syftPkg.GoModulePkg, Language: syftPkg.Go,
			PURL: "pkg:golang/golang.org/x/net@v0.20.0", FoundBy: "go-module-binary-cataloger",
			Locations: file.NewLocationSet(primary(bin)),
			Metadata:  syftPkg.GolangBinaryBuildinfoEntry{GoCompiledVersion: "go1.22.1", Architecture: "amd64", MainModule: "example.com" + bin},
		})
	}
	for _, app := range []string{"/app", "/srv/admin"} {
		pkgs = append(pkgs, syftPkg.Package{
			Name: "left-pad", Version: "1.1.0", Type: syftPkg.NpmPkg, Language: syftPkg.JavaScript,
			PURL: "pkg:npm/left-pad@1.1.0", FoundBy: "javascript-package-cataloger",
			Locations: file.NewLocationSet(primary(app + "/node_modules/left-pad/package.json")),
		})
	}
	pkgs = append(pkgs, syftPkg.Package{
		Name: "libssl3", Version: "3.0.11-1~deb12u2", Type: syftPkg.DebPkg, FoundBy: "dpkg-db-cataloger",
		PURL: packageurl.NewPackageURL("deb", "debian", "libssl3", "3.0.11-1~deb12u2",
			packageurl.Qualifiers{{Key: "arch", Value: "amd64"}, {Key: "distro", Value: "debian-12"}}, "").ToString(),
		Locations: file.NewLocationSet(primary("/var/lib/dpkg/status"), supporting("/usr/share/doc/libssl3/copyright"),
			supporting("/var/lib/dpkg/info/libssl3:amd64.md5sums")),
		Metadata: syftPkg.DpkgDBEntry{Package: "libssl3", Source: "openssl", Version: "3.0.11-1~deb12u2", Architecture: "amd64"},
	})
	for i := range pkgs {
		pkgs[i].SetID()
	}
	s := sbom.SBOM{
		Artifacts: sbom.Artifacts{
			Packages:          syftPkg.NewCollection(pkgs...),
			LinuxDistribution: &linux.Release{ID: "debian", VersionID: "12", Name: "Debian GNU/Linux"},
		},
		Relationships: []artifact.Relationship{},
		Source:        source.Description{Name: "app", Metadata: source.DirectoryMetadata{Path: "/"}},
		Descriptor:    sbom.Descriptor{Name: "syft", Version: "1.57.0"},
	}
	doc, err := format.Encode(s, syftjson.NewFormatEncoder())
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// grypeTable renders the SBOM's matches with grype's own table presenter (what `grype sbom:FILE`
// prints) and returns its rows, split into columns.
func grypeTable(t *testing.T, m *Manager, doc []byte) (rows [][]string, matches int) {
	t.Helper()
	h := m.acquire()
	defer h.inflight.Done()
	pkgs, pkgCtx, _, err := grypePkg.ProvideFromReader(bytes.NewReader(doc), providerConfig())
	if err != nil {
		t.Fatal(err)
	}
	vm := grype.VulnerabilityMatcher{VulnerabilityProvider: h.provider, Matchers: matcher.NewDefaultMatchers(defaultMatcherConfig()), IgnoreRules: defaultIgnoreRules}
	remaining, _, err := vm.FindMatchesContext(context.Background(), pkgs, pkgCtx)
	if err != nil {
		t.Fatal(err)
	}
	d, err := models.NewDocument(clio.Identification{Name: "grype"}, pkgs, pkgCtx, *remaining, nil, h.provider, nil, nil, models.DefaultSortStrategy, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := table.NewPresenter(models.PresenterConfig{Document: d}, false).Present(&out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "NAME") {
		t.Fatalf("grype's table:\n%s", out.String())
	}
	for _, l := range lines[1:] {
		rows = append(rows, strings.Fields(l))
	}
	return rows, remaining.Count()
}

// TestFindingsCountPackagesNotOccurrences: the same vulnerability in the same module in two
// binaries is one finding with two locations, so the counts are grype table's counts, and the
// fleet path (MatchMany, and replay from the cache) agrees with Match.
func TestFindingsCountPackagesNotOccurrences(t *testing.T) {
	m := newLoadedManagerEmpty(t, Config{MatchWorkers: 2})
	importVulns(t, m, time.Now().Add(-time.Hour), locationVulns)
	doc := twoBinariesSBOM(t)

	res, err := m.Match(context.Background(), doc)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		id, pkg, severity string
		locations         []string
	}{
		{"CVE-2024-1000", "libssl3", "High", []string{"/var/lib/dpkg/status"}},
		{"GHSA-4v7x-pqxf-cx7m", "golang.org/x/net", "High", []string{"/usr/local/bin/api", "/usr/local/bin/worker"}},
		{"GHSA-0000-0000-0001", "left-pad", "Unknown", []string{"/app/node_modules/left-pad/package.json", "/srv/admin/node_modules/left-pad/package.json"}},
	}
	if len(res.Findings) != len(want) {
		t.Fatalf("%d findings, want %d: %+v", len(res.Findings), len(want), res.Findings)
	}
	for i, w := range want {
		f := res.Findings[i]
		if f.ID != w.id || f.Package != w.pkg || f.Severity != w.severity || !slices.Equal(f.Locations, w.locations) {
			t.Errorf("finding %d = %s %s %s %v, want %+v", i, f.ID, f.Package, f.Severity, f.Locations, w)
		}
	}

	rows, matches := grypeTable(t, m, doc)
	if matches != 5 {
		t.Fatalf("grype found %d matches, want one per occurrence (5): the SBOM does not test merging", matches)
	}
	if len(rows) != len(res.Findings) {
		t.Errorf("grype's table has %d rows, imagetrust %d findings:\n%v", len(rows), len(res.Findings), rows)
	}
	bySeverity := map[string]int{}
	for _, r := range rows {
		bySeverity[severity.Normalize(r[len(r)-3])]++ // … SEVERITY EPSS RISK, EPSS and RISK "N/A"
	}
	for _, f := range res.Findings {
		bySeverity[f.Severity]--
	}
	for s, n := range bySeverity {
		if n != 0 {
			t.Errorf("severity %s: grype's table and imagetrust differ by %d (rows %v)", s, n, rows)
		}
	}

	many, err := m.MatchMany(context.Background(), map[string][]byte{"img": doc})
	if err != nil {
		t.Fatal(err)
	}
	diffFindings(t, "MatchMany", many["img"].Findings, res.Findings)
	// a replay from the cache, with the decoded records gone, rebuilds the same locations
	h := m.acquire()
	defer h.inflight.Done()
	m.fleetMu.Lock()
	defer m.fleetMu.Unlock()
	replayed, _, err := replay(h.provider, func(k string) *entry { return m.fleetState().entries[k] }, m.fleetState().docs["img"], m.statusOf(h))
	if err != nil {
		t.Fatal(err)
	}
	diffFindings(t, "replay", replayed.Findings, res.Findings)
}

// identity decides which findings merge: a difference in any field but Locations, including
// one added later, must keep two findings apart.
func TestIdentitySeesEveryFieldButLocations(t *testing.T) {
	base := Finding{ID: "CVE-1", Aliases: []string{"GHSA-1"}, Package: "p", Version: "1", Type: "deb", PURL: "pkg:deb/p@1",
		FixedVersions: []string{"2"}, FixState: "fixed", Severity: "High", Namespace: "debian", Matchers: []string{"dpkg"},
		MatchTypes: []string{"exact-direct"}, Locations: []string{"/a"}}
	typ := reflect.TypeOf(base)
	for i := range typ.NumField() {
		other := base
		v := reflect.ValueOf(&other).Elem().Field(i)
		switch v.Kind() {
		case reflect.String:
			v.SetString(v.String() + "x")
		case reflect.Slice:
			v.Set(reflect.Append(reflect.MakeSlice(v.Type(), 0, 1), reflect.ValueOf("x")))
		default:
			t.Fatalf("field %s has kind %s: teach identity and this test about it", typ.Field(i).Name, v.Kind())
		}
		merged := len(mergeLocations([]Finding{base, other}))
		if name := typ.Field(i).Name; name == "Locations" {
			if merged != 1 {
				t.Errorf("findings differing only in Locations are not merged")
			}
		} else if merged != 2 {
			t.Errorf("findings differing in %s are merged", name)
		}
	}
	// an empty slice and a field boundary must not collide: {"a","b"} vs {"ab"}
	a, b := base, base
	a.Aliases, b.Aliases = []string{"a", "b"}, []string{"ab"}
	if identity(a) == identity(b) {
		t.Error("identity joins list items ambiguously")
	}
	got := mergeLocations([]Finding{{ID: "x", Locations: []string{"/b", "/a"}}, {ID: "x", Locations: []string{"/a", "/c"}}})
	if len(got) != 1 || !slices.Equal(got[0].Locations, []string{"/a", "/b", "/c"}) {
		t.Errorf("merged locations = %+v, want one finding at /a /b /c", got)
	}
}
