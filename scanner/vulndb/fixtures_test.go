package vulndb

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/anchore/syft/syft"
	"github.com/anchore/syft/syft/format"
	"github.com/anchore/syft/syft/format/cyclonedxjson"
	"github.com/anchore/syft/syft/format/spdxjson"
	"github.com/anchore/syft/syft/format/syftjson"
	"github.com/anchore/syft/syft/sbom"

	"github.com/imagetrust/imagetrust/scanner/vulndb/dbtest"
)

// testVulns is the database content the tests match against. Debian and Alpine records carry
// the source package name, as the distro feeds do.
var testVulns = []dbtest.Vuln{
	// Debian 12
	{ID: "CVE-2024-1000", Severity: "High", Ecosystem: dbtest.EcosystemDeb, Package: "openssl",
		Constraint: "< 3.0.13-1~deb12u1", FixedVersion: "3.0.13-1~deb12u1", Description: "openssl issue"},
	{ID: "CVE-2024-1002", Severity: "Negligible", Ecosystem: dbtest.EcosystemDeb, Package: "tar",
		Constraint: ""}, // not fixed: every version affected
	{ID: "CVE-2024-1003", Severity: "Critical", Ecosystem: dbtest.EcosystemDeb, Package: "curl",
		Constraint: "< 7.88.1-10+deb12u5", FixedVersion: "7.88.1-10+deb12u5"}, // installed version is the fix
	{ID: "CVE-2024-1004", Severity: "High", Ecosystem: dbtest.EcosystemDeb, Package: "linux",
		Constraint: "< 6.1.90-1", FixedVersion: "6.1.90-1"}, // reaches linux-libc-dev only indirectly: ignored by default
	{ID: "CVE-2024-1005", Severity: "High", Ecosystem: dbtest.EcosystemDeb, Distro: "debian:11", Package: "openssl",
		Constraint: "< 9.9.9", FixedVersion: "9.9.9"}, // other Debian release: must not match
	// Alpine 3.19
	{ID: "CVE-2024-2000", Severity: "Medium", Ecosystem: dbtest.EcosystemAPK, Package: "busybox",
		Constraint: "< 1.36.1-r16", FixedVersion: "1.36.1-r16"},
	{ID: "CVE-2024-2001", Severity: "High", Ecosystem: dbtest.EcosystemAPK, Package: "musl",
		Constraint: "< 1.2.4_git20230717-r5", FixedVersion: "1.2.4_git20230717-r5"}, // installed version is the fix
	// Go modules
	{ID: "GHSA-4v7x-pqxf-cx7m", Aliases: []string{"CVE-2023-45288"}, Severity: "High", Ecosystem: dbtest.EcosystemGo,
		Package: "golang.org/x/net", Constraint: "< 0.23.0", FixedVersion: "0.23.0"},
	{ID: "GHSA-69ch-w2m2-3vjp", Aliases: []string{"CVE-2022-32149"}, Severity: "High", Ecosystem: dbtest.EcosystemGo,
		Package: "golang.org/x/text", Constraint: "< 0.3.8", FixedVersion: "0.3.8"}, // installed is newer
	// npm
	{ID: "GHSA-35jh-r3h4-6jhm", Aliases: []string{"CVE-2021-23337"}, Severity: "Critical", Ecosystem: dbtest.EcosystemNPM,
		Package: "lodash", Constraint: "< 4.17.21", FixedVersion: "4.17.21"},
}

// wantDebianRootFindings are the exact findings for the Debian root filesystem fixture.
var wantDebianRootFindings = []Finding{
	{ID: "GHSA-35jh-r3h4-6jhm", Aliases: []string{"CVE-2021-23337"}, Package: "lodash", Version: "4.17.20", Type: "npm",
		FixedVersions: []string{"4.17.21"}, FixState: "fixed", Severity: "Critical", Namespace: "github:language:javascript"},
	{ID: "CVE-2024-1000", Package: "libssl3", Version: "3.0.11-1~deb12u2", Type: "deb",
		FixedVersions: []string{"3.0.13-1~deb12u1"}, FixState: "fixed", Severity: "High", Namespace: "debian:distro:debian:12"},
	{ID: "CVE-2024-1000", Package: "openssl", Version: "3.0.11-1~deb12u2", Type: "deb",
		FixedVersions: []string{"3.0.13-1~deb12u1"}, FixState: "fixed", Severity: "High", Namespace: "debian:distro:debian:12"},
	{ID: "GHSA-4v7x-pqxf-cx7m", Aliases: []string{"CVE-2023-45288"}, Package: "golang.org/x/net", Version: "v0.20.0", Type: "go-module",
		FixedVersions: []string{"0.23.0"}, FixState: "fixed", Severity: "High", Namespace: "github:language:go"},
	{ID: "CVE-2024-1002", Package: "tar", Version: "1.34+dfsg-1.2+deb12u1", Type: "deb",
		FixState: "not-fixed", Severity: "Negligible", Namespace: "debian:distro:debian:12"},
}

// wantAlpineRootFindings are the exact findings for the Alpine root filesystem fixture.
var wantAlpineRootFindings = []Finding{
	{ID: "CVE-2024-2000", Package: "busybox", Version: "1.36.1-r15", Type: "apk",
		FixedVersions: []string{"1.36.1-r16"}, FixState: "fixed", Severity: "Medium", Namespace: "alpine:distro:alpine:3.19"},
	{ID: "CVE-2024-2000", Package: "busybox-binsh", Version: "1.36.1-r15", Type: "apk",
		FixedVersions: []string{"1.36.1-r16"}, FixState: "fixed", Severity: "Medium", Namespace: "alpine:distro:alpine:3.19"},
}

const debianOSRelease = `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
`

func dpkgEntry(name, source, version string) string {
	s := "Package: " + name + "\nStatus: install ok installed\nPriority: optional\nSection: libs\nInstalled-Size: 100\n" +
		"Maintainer: Debian <debian@example.org>\nArchitecture: amd64\n"
	if source != "" {
		s += "Source: " + source + "\n"
	}
	return s + "Version: " + version + "\nDescription: " + name + " test package\n test package\n\n"
}

const alpineOSRelease = `NAME="Alpine Linux"
ID=alpine
VERSION_ID=3.19.1
PRETTY_NAME="Alpine Linux v3.19"
HOME_URL="https://alpinelinux.org/"
`

func apkEntry(name, origin, version string) string {
	return "C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nP:" + name + "\nV:" + version + "\nA:x86_64\nS:1000\nI:2000\n" +
		"T:" + name + " test package\nU:https://alpinelinux.org\nL:MIT\no:" + origin + "\nm:Alpine <alpine@example.org>\nt:1700000000\nc:0000000000000000000000000000000000000000\n\n"
}

const goMod = `module example.com/app

go 1.22

require (
	golang.org/x/net v0.20.0
	golang.org/x/text v0.14.0
)
`

const packageLock = `{
  "name": "app",
  "version": "1.0.0",
  "lockfileVersion": 3,
  "requires": true,
  "packages": {
    "": {"name": "app", "version": "1.0.0", "dependencies": {"lodash": "4.17.20"}},
    "node_modules/lodash": {
      "version": "4.17.20",
      "resolved": "https://registry.npmjs.org/lodash/-/lodash-4.17.20.tgz",
      "integrity": "sha512-PlhdFcillOINfeV7Ni6oF1TAEayyZBoZ8bcshTHqOYJYlrqzRK5hagpagky5o4HfCzzd1TRkXPMFq6cKk9rGmA==",
      "license": "MIT"
    }
  }
}
`

func writeFiles(root string, files map[string]string) error {
	for p, content := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// catalogDir runs syft's directory source and default catalogers over root, like
// `syft dir:root`.
func catalogDir(root string) (*sbom.SBOM, error) {
	ctx := context.Background()
	src, err := syft.GetSource(ctx, root, syft.DefaultGetSourceConfig().WithSources("dir"))
	if err != nil {
		return nil, err
	}
	defer src.Close()
	return syft.CreateSBOM(ctx, src, syft.DefaultCreateSBOMConfig())
}

// sbomDocs holds one SBOM encoded in the three supported formats.
type sbomDocs struct {
	syftJSON, spdxJSON, cdxJSON []byte
}

func (d sbomDocs) all() map[string][]byte {
	return map[string][]byte{"syft-json": d.syftJSON, "spdx-json": d.spdxJSON, "cyclonedx-json": d.cdxJSON}
}

func encodeAll(s *sbom.SBOM) (sbomDocs, error) {
	var d sbomDocs
	spdxEnc, err := spdxjson.NewFormatEncoderWithConfig(spdxjson.DefaultEncoderConfig())
	if err != nil {
		return d, err
	}
	cdxEnc, err := cyclonedxjson.NewFormatEncoderWithConfig(cyclonedxjson.DefaultEncoderConfig())
	if err != nil {
		return d, err
	}
	for _, e := range []struct {
		enc sbom.FormatEncoder
		out *[]byte
	}{{syftjson.NewFormatEncoder(), &d.syftJSON}, {spdxEnc, &d.spdxJSON}, {cdxEnc, &d.cdxJSON}} {
		b, err := format.Encode(*s, e.enc)
		if err != nil {
			return d, err
		}
		*e.out = b
	}
	return d, nil
}

// catalogFixture writes a root filesystem and returns syft's SBOM of it in all formats.
func catalogFixture(root string, files map[string]string) (sbomDocs, error) {
	if err := writeFiles(root, files); err != nil {
		return sbomDocs{}, err
	}
	s, err := catalogDir(root)
	if err != nil {
		return sbomDocs{}, err
	}
	return encodeAll(s)
}

var (
	fixturesOnce sync.Once
	debianDocs   sbomDocs
	alpineDocs   sbomDocs
	fixturesErr  error
)

// fixtures catalogs the Debian and Alpine root filesystems once per test binary (syft takes a
// moment) and returns their SBOMs in all three formats.
func fixtures(t testing.TB) (debian, alpine sbomDocs) {
	t.Helper()
	fixturesOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vulndb-fixtures-")
		if err != nil {
			fixturesErr = err
			return
		}
		defer os.RemoveAll(dir)
		debianDocs, fixturesErr = catalogFixture(filepath.Join(dir, "debian"), map[string]string{
			"etc/os-release": debianOSRelease,
			"var/lib/dpkg/status": dpkgEntry("libssl3", "openssl", "3.0.11-1~deb12u2") +
				dpkgEntry("openssl", "", "3.0.11-1~deb12u2") +
				dpkgEntry("tar", "", "1.34+dfsg-1.2+deb12u1") +
				dpkgEntry("curl", "", "7.88.1-10+deb12u5") +
				dpkgEntry("linux-libc-dev", "linux", "6.1.76-1"),
			"app/go.mod":            goMod,
			"app/package-lock.json": packageLock,
		})
		if fixturesErr != nil {
			return
		}
		alpineDocs, fixturesErr = catalogFixture(filepath.Join(dir, "alpine"), map[string]string{
			"etc/os-release": alpineOSRelease,
			"lib/apk/db/installed": apkEntry("busybox", "busybox", "1.36.1-r15") +
				apkEntry("busybox-binsh", "busybox", "1.36.1-r15") +
				apkEntry("musl", "musl", "1.2.4_git20230717-r5"),
		})
	})
	if fixturesErr != nil {
		t.Fatalf("building SBOM fixtures with syft: %v", fixturesErr)
	}
	return debianDocs, alpineDocs
}

// newTestArchive archives vulns built at built and returns the archive path.
func newTestArchive(t testing.TB, built time.Time, vulns []dbtest.Vuln) string {
	t.Helper()
	p, err := dbtest.Archive(t.TempDir(), built, vulns)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// newLoadedManager returns a Manager with testVulns imported (built an hour ago).
func newLoadedManager(t testing.TB, cfg Config) *Manager {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	changed, err := m.Import(context.Background(), newTestArchive(t, time.Now().Add(-time.Hour), testVulns))
	if err != nil {
		t.Fatal(err)
	}
	if !changed {
		t.Fatal("first import reported changed=false")
	}
	return m
}
