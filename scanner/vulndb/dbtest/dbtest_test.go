package dbtest

import (
	"archive/tar"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v6 "github.com/anchore/grype/grype/db/v6"
	"github.com/anchore/grype/grype/db/v6/distribution"
	"github.com/anchore/grype/grype/db/v6/installation"
)

var sample = []Vuln{
	{ID: "CVE-2024-0001", Severity: "High", Ecosystem: EcosystemDeb, Package: "openssl", Constraint: "< 3.0.13-1~deb12u1", FixedVersion: "3.0.13-1~deb12u1"},
	{ID: "CVE-2024-0002", Severity: "Low", Ecosystem: EcosystemAPK, Package: "busybox", Constraint: "< 1.36.1-r16", FixedVersion: "1.36.1-r16"},
	{ID: "GHSA-aaaa-bbbb-cccc", Aliases: []string{"CVE-2024-0003"}, Severity: "Critical", Ecosystem: EcosystemGo, Package: "golang.org/x/net", Constraint: "< 0.23.0", FixedVersion: "0.23.0"},
	{ID: "GHSA-dddd-eeee-ffff", Severity: "Medium", Ecosystem: EcosystemNPM, Package: "lodash", Constraint: "< 4.17.21"},
}

func TestBuildWritesReadableDBWithBuiltTime(t *testing.T) {
	built := time.Date(2024, 5, 6, 7, 8, 9, 400_000_000, time.UTC)
	dbPath, err := Build(t.TempDir(), built, sample)
	if err != nil {
		t.Fatal(err)
	}
	d, err := v6.ReadDescription(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if want := built.Round(time.Second); !d.Built.Time.Equal(want) {
		t.Errorf("built = %s, want %s", d.Built.Time, want)
	}
	if got, want := d.SchemaVersion.String(), "v6.1.10"; got != want {
		t.Errorf("schema = %q, want %q", got, want)
	}

	r, err := v6.NewReader(v6.Config{DBDirPath: filepath.Dir(dbPath)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	vulns, err := r.GetVulnerabilities(&v6.VulnerabilitySpecifier{Name: "GHSA-aaaa-bbbb-cccc"}, &v6.GetVulnerabilityOptions{Preload: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(vulns) != 1 {
		t.Fatalf("got %d vulnerabilities, want 1", len(vulns))
	}
	v := vulns[0]
	if v.ProviderID != "github" || !slices.Equal(v.BlobValue.Aliases, []string{"CVE-2024-0003"}) {
		t.Errorf("provider=%q aliases=%v", v.ProviderID, v.BlobValue.Aliases)
	}
	if len(v.BlobValue.Severities) != 1 || v.BlobValue.Severities[0].Scheme != v6.SeveritySchemeCHML || v.BlobValue.Severities[0].Value != "critical" {
		t.Errorf("severities = %+v", v.BlobValue.Severities)
	}
}

func TestBuildRejectsBadInput(t *testing.T) {
	for _, tc := range []struct {
		name  string
		vulns []Vuln
		want  string
	}{
		{"ecosystem", []Vuln{{ID: "X", Ecosystem: "rpm", Package: "p"}}, `unsupported ecosystem "rpm"`},
		{"package", []Vuln{{ID: "X", Ecosystem: EcosystemNPM}}, "ID and Package are required"},
		{"distro format", []Vuln{{ID: "X", Ecosystem: EcosystemDeb, Package: "p", Distro: "debian12"}}, `Distro "debian12" is not name:version`},
		{"distro on language", []Vuln{{ID: "X", Ecosystem: EcosystemNPM, Package: "p", Distro: "debian:12"}}, "Distro is only valid for deb and apk"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(t.TempDir(), time.Now(), tc.vulns)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestArchiveImportsWithGrypeCurator(t *testing.T) {
	dir := t.TempDir()
	built := time.Now().Add(-time.Hour).UTC().Round(time.Second)
	archive, err := Archive(dir, built, sample)
	if err != nil {
		t.Fatal(err)
	}
	if names := tarNames(t, archive); !slices.Equal(names, []string{"vulnerability.db", "import.json"}) {
		t.Errorf("archive holds %v", names)
	}

	listing, err := WriteListing(archive, built)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(listing)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := distribution.NewLatestFromReader(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if doc.Path != filepath.Base(archive) || !strings.HasPrefix(doc.Checksum, "sha256:") || !doc.Built.Time.Equal(built) {
		t.Errorf("listing = %+v", doc)
	}

	client, err := distribution.NewClient(distribution.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	c, err := installation.NewCurator(installation.Config{DBRootDir: root, ValidateChecksum: true, ValidateAge: true, MaxAllowedBuiltAge: 24 * time.Hour}, client)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Import(archive); err != nil {
		t.Fatal(err)
	}
	s := c.Status()
	if s.Error != nil {
		t.Fatalf("status error: %v", s.Error)
	}
	if !s.Built.Equal(built) || s.SchemaVersion != "v6.1.10" {
		t.Errorf("status = %+v", s)
	}
}

func tarNames(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
}
