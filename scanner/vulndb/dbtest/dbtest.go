// Package dbtest builds small but real Grype v6 vulnerability databases for tests and demos.
//
// The databases are written with grype's own v6 writer, so the schema, blobs and indexes are
// exactly what grype reads in production; only the content is hand-picked. The values used for
// operating systems, ecosystems and version formats are the ones syft emits for real images, so
// SBOMs produced by syft (or hand-written to look like syft's output) match as they would against
// the public database.
package dbtest

import (
	"archive/tar"
	"compress/gzip"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	v6 "github.com/anchore/grype/grype/db/v6"
	"github.com/anchore/grype/grype/db/v6/distribution"
	"github.com/anchore/grype/grype/db/v6/name"
	syftPkg "github.com/anchore/syft/syft/pkg"
	"github.com/spf13/afero"
)

// Ecosystem names accepted in Vuln.Ecosystem. They are syft package types, which is what grype
// keys affected packages on.
const (
	// EcosystemDeb is a Debian package (syft type "deb"); defaults to Debian 12.
	EcosystemDeb = "deb"
	// EcosystemAPK is an Alpine package (syft type "apk"); defaults to Alpine 3.19.
	EcosystemAPK = "apk"
	// EcosystemGo is a Go module (syft type "go-module").
	EcosystemGo = "go-module"
	// EcosystemNPM is an npm package (syft type "npm").
	EcosystemNPM = "npm"
	// EcosystemCPE is an NVD record keyed by CPE (provider "nvd"): Package is the CPE product
	// and Vendor its vendor. Grype's stock matcher finds it through a package's CPEs.
	EcosystemCPE = "cpe"
)

// Vuln describes one vulnerability record and one package it affects. Several Vulns with the
// same ID and Provider become one vulnerability with several affected packages, as in the real
// database.
type Vuln struct {
	// ID is the vulnerability identifier as the provider publishes it (CVE-…, GHSA-…).
	ID string
	// Aliases are other identifiers of the same vulnerability (e.g. the CVE of a GHSA).
	Aliases []string
	// Severity is one of Critical, High, Medium, Low, Negligible; empty means unknown.
	Severity string
	// Ecosystem is one of the Ecosystem* constants.
	Ecosystem string
	// Distro overrides the operating system of deb/apk records as "name:version", e.g.
	// "debian:11" or "alpine:3.18". Empty selects debian:12 or alpine:3.19.
	Distro string
	// Package is the affected package name (for deb and apk usually the source package).
	Package string
	// Constraint is the affected version range in the ecosystem's version syntax, e.g. "< 1.2.3".
	Constraint string
	// FixedVersion is the first fixed version; empty records the vulnerability as not fixed.
	FixedVersion string
	// FixState overrides the fix state ("fixed", "not-fixed", "wont-fix", "unknown"); empty
	// derives it from FixedVersion.
	FixState string
	// Provider is the data provider (namespace prefix); empty selects debian, alpine or github.
	Provider string
	// Description is free text stored with the vulnerability.
	Description string
	// Vendor is the CPE vendor of an EcosystemCPE record; empty means "*".
	Vendor string
}

// ecosystemInfo holds the values grype's own transformers write for each supported ecosystem.
type ecosystemInfo struct {
	versionType   string
	provider      string
	scheme        v6.SeverityScheme
	defaultDistro string
}

var ecosystems = map[string]ecosystemInfo{
	// OS providers (vunnel debian/alpine → transformers/os) use the CHMLN scheme and the package
	// type as version format; GitHub advisories use CHML and the lower-cased ecosystem.
	EcosystemDeb: {versionType: "dpkg", provider: "debian", scheme: v6.SeveritySchemeCHMLN, defaultDistro: "debian:12"},
	EcosystemAPK: {versionType: "apk", provider: "alpine", scheme: v6.SeveritySchemeCHMLN, defaultDistro: "alpine:3.19"},
	EcosystemGo:  {versionType: "go", provider: "github", scheme: v6.SeveritySchemeCHML},
	EcosystemNPM: {versionType: "npm", provider: "github", scheme: v6.SeveritySchemeCHML},
	EcosystemCPE: {versionType: "unknown", provider: "nvd", scheme: v6.SeveritySchemeCHML},
}

// debianCodenames mirrors the codename column the public database carries for Debian rows.
var debianCodenames = map[string]string{"10": "buster", "11": "bullseye", "12": "bookworm", "13": "trixie"}

// Build writes a v6 database file into dir (created if missing) and returns its path. built is
// recorded as the database build time (rounded to the second, UTC), so tests can create stale
// databases. Files are not byte-reproducible (gorm emits the schema's constraints in map
// order), so compare databases by build time, not digest. An existing database in dir is
// replaced.
func Build(dir string, built time.Time, vulns []Vuln) (string, error) {
	if built.IsZero() {
		return "", errors.New("dbtest: built time must be set")
	}
	built = built.UTC().Round(time.Second)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("dbtest: %w", err)
	}

	w, err := v6.NewWriter(v6.Config{DBDirPath: dir, CacheSizeKiB: 16 * 1024})
	if err != nil {
		return "", fmt.Errorf("dbtest: open writer: %w", err)
	}
	if err := write(w, built, vulns); err != nil {
		_ = w.Close()
		return "", err
	}
	if err := w.Close(); err != nil {
		return "", fmt.Errorf("dbtest: close writer: %w", err)
	}

	dbPath := filepath.Join(dir, v6.VulnerabilityDBFileName)
	if err := setBuilt(dbPath, built); err != nil {
		return "", err
	}
	return dbPath, nil
}

func write(w v6.ReadWriter, built time.Time, vulns []Vuln) error {
	type key struct{ provider, id string }
	handles := map[key]*v6.VulnerabilityHandle{}
	for i, v := range vulns {
		info, ok := ecosystems[v.Ecosystem]
		if !ok {
			return fmt.Errorf("dbtest: vuln %d (%s): unsupported ecosystem %q", i, v.ID, v.Ecosystem)
		}
		if v.ID == "" || v.Package == "" {
			return fmt.Errorf("dbtest: vuln %d: ID and Package are required", i)
		}
		provider := v.Provider
		if provider == "" {
			provider = info.provider
		}

		k := key{provider, v.ID}
		h := handles[k]
		if h == nil {
			captured := built
			h = &v6.VulnerabilityHandle{
				Name:       v.ID,
				Status:     v6.VulnerabilityActive,
				ProviderID: provider,
				Provider: &v6.Provider{
					ID:           provider,
					Version:      "1",
					Processor:    "imagetrust-dbtest",
					DateCaptured: &captured,
				},
				BlobValue: &v6.VulnerabilityBlob{
					ID:          v.ID,
					Description: v.Description,
					Aliases:     v.Aliases,
					Severities:  severities(v.Severity, info.scheme),
				},
			}
			if err := w.AddVulnerabilities(h); err != nil {
				return fmt.Errorf("dbtest: add vulnerability %s: %w", v.ID, err)
			}
			handles[k] = h
		}

		cves := v.Aliases
		if strings.HasPrefix(strings.ToUpper(v.ID), "CVE-") {
			cves = append([]string{v.ID}, v.Aliases...)
		}
		if v.Ecosystem == EcosystemCPE {
			vendor := v.Vendor
			if vendor == "" {
				vendor = "*"
			}
			ach := &v6.AffectedCPEHandle{
				VulnerabilityID: h.ID,
				CPE:             &v6.Cpe{Part: "a", Vendor: vendor, Product: v.Package},
				BlobValue: &v6.PackageBlob{
					CVEs:   onlyCVEs(cves),
					Ranges: []v6.Range{{Version: v6.Version{Type: info.versionType, Constraint: v.Constraint}, Fix: fix(v)}},
				},
			}
			if err := w.AddAffectedCPEs(ach); err != nil {
				return fmt.Errorf("dbtest: add affected CPE %s for %s: %w", v.Package, v.ID, err)
			}
			continue
		}
		osRow, err := operatingSystem(v, info)
		if err != nil {
			return err
		}
		aph := &v6.AffectedPackageHandle{
			VulnerabilityID: h.ID,
			OperatingSystem: osRow,
			Package: &v6.Package{
				Ecosystem: v.Ecosystem,
				Name:      name.Normalize(v.Package, syftPkg.Type(v.Ecosystem)),
			},
			BlobValue: &v6.PackageBlob{
				CVEs: onlyCVEs(cves),
				Ranges: []v6.Range{{
					Version: v6.Version{Type: info.versionType, Constraint: v.Constraint},
					Fix:     fix(v),
				}},
			},
		}
		if err := w.AddAffectedPackages(aph); err != nil {
			return fmt.Errorf("dbtest: add affected package %s for %s: %w", v.Package, v.ID, err)
		}
	}
	return nil
}

func severities(sev string, scheme v6.SeverityScheme) []v6.Severity {
	s := strings.ToLower(strings.TrimSpace(sev))
	if s == "" || s == "unknown" {
		return nil
	}
	return []v6.Severity{{Scheme: scheme, Value: s, Rank: 1}}
}

func fix(v Vuln) *v6.Fix {
	state := v6.NotFixedStatus
	if v.FixedVersion != "" {
		state = v6.FixedStatus
	}
	if v.FixState != "" {
		state = v6.FixStatus(v.FixState)
	}
	return &v6.Fix{Version: v.FixedVersion, State: state}
}

func onlyCVEs(ids []string) []string {
	var out []string
	for _, id := range ids {
		if strings.HasPrefix(strings.ToUpper(id), "CVE-") {
			out = append(out, id)
		}
	}
	return out
}

// operatingSystem returns the OS row the way grype's OS transformer derives it from a
// "name:version" namespace: major and minor split on the first dot.
func operatingSystem(v Vuln, info ecosystemInfo) (*v6.OperatingSystem, error) {
	if info.defaultDistro == "" {
		if v.Distro != "" {
			return nil, fmt.Errorf("dbtest: vuln %s: Distro is only valid for deb and apk records", v.ID)
		}
		return nil, nil
	}
	d := v.Distro
	if d == "" {
		d = info.defaultDistro
	}
	osName, ver, ok := strings.Cut(d, ":")
	if !ok || osName == "" || ver == "" {
		return nil, fmt.Errorf("dbtest: vuln %s: Distro %q is not name:version", v.ID, d)
	}
	major, minor, _ := strings.Cut(ver, ".")
	os := &v6.OperatingSystem{Name: osName, ReleaseID: osName, MajorVersion: major, MinorVersion: minor}
	if osName == "debian" {
		os.Codename = debianCodenames[major]
	}
	return os, nil
}

// setBuilt overwrites the build timestamp that grype's writer stamps with time.Now. grype's
// v6 writer offers no option for it, and the store it returns hides its connection, so the
// file is updated through database/sql with the "sqlite" driver that grype's gorm adapter
// (glebarez/go-sqlite) registers in every binary that links grype/db/v6.
func setBuilt(dbPath string, built time.Time) error {
	db, err := sql.Open("sqlite", "file:"+dbPath)
	if err != nil {
		return fmt.Errorf("dbtest: open %s to set build time: %w", dbPath, err)
	}
	defer db.Close()
	res, err := db.Exec(`UPDATE db_metadata SET build_timestamp = ?`, built)
	if err != nil {
		return fmt.Errorf("dbtest: set build time: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("dbtest: set build time: expected 1 metadata row, updated %d (%v)", n, err)
	}
	// rewrite the file so the replaced timestamp leaves no residue in free space
	if _, err := db.Exec(`VACUUM`); err != nil {
		return fmt.Errorf("dbtest: vacuum: %w", err)
	}
	return db.Close()
}

// Archive builds a database like Build and packs it as a .tar.gz archive in dir, in the layout
// grype publishes and `grype db import` accepts: vulnerability.db plus import.json at the root.
// The file name follows grype-db's vulnerability-db_v<schema>_<date>_<epoch>.tar.gz pattern.
func Archive(dir string, built time.Time, vulns []Vuln) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("dbtest: %w", err)
	}
	work, err := os.MkdirTemp(dir, "dbtest-build-")
	if err != nil {
		return "", fmt.Errorf("dbtest: %w", err)
	}
	defer os.RemoveAll(work)

	if _, err := Build(work, built, vulns); err != nil {
		return "", err
	}
	// grype-db ships import.json when present; the curator rewrites it on import anyway, but
	// carrying it keeps the archive identical in shape to the published ones.
	if _, err := v6.WriteImportMetadata(afero.NewOsFs(), work, ""); err != nil {
		return "", fmt.Errorf("dbtest: write import metadata: %w", err)
	}

	built = built.UTC().Round(time.Second)
	archiveName := fmt.Sprintf("vulnerability-db_v%d.%d.%d_%s_%d.tar.gz",
		v6.ModelVersion, v6.Revision, v6.Addition, built.Format("2006-01-02T15-04-05Z"), built.Unix())
	archivePath := filepath.Join(dir, archiveName)
	if err := writeTarGz(archivePath, work, built, v6.VulnerabilityDBFileName, v6.ImportMetadataFileName); err != nil {
		return "", err
	}
	return archivePath, nil
}

func writeTarGz(dst, srcDir string, modTime time.Time, files ...string) (err error) {
	f, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("dbtest: create archive: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("dbtest: close archive: %w", cerr)
		}
		if err != nil {
			_ = os.Remove(dst)
		}
	}()
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	for _, name := range files {
		if err := addFile(tw, filepath.Join(srcDir, name), name, modTime); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("dbtest: finish tar: %w", err)
	}
	if err := gz.Close(); err != nil {
		return fmt.Errorf("dbtest: finish gzip: %w", err)
	}
	return nil
}

func addFile(tw *tar.Writer, path, nameInArchive string, modTime time.Time) error {
	src, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("dbtest: %w", err)
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return fmt.Errorf("dbtest: %w", err)
	}
	hdr := &tar.Header{Name: nameInArchive, Mode: 0o644, Size: st.Size(), ModTime: modTime, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("dbtest: tar header: %w", err)
	}
	if _, err := io.Copy(tw, src); err != nil {
		return fmt.Errorf("dbtest: tar %s: %w", nameInArchive, err)
	}
	return nil
}

// WriteListing writes grype's listing document (latest.json) next to archivePath, describing
// that archive, and returns the listing's path. Serve the directory over HTTP and point grype's
// distribution client at "<base URL>/…/latest.json" (or at the directory above a "v6" folder) to
// exercise database updates offline.
func WriteListing(archivePath string, built time.Time) (string, error) {
	a, err := distribution.NewArchive(archivePath, built.UTC().Round(time.Second), v6.ModelVersion, v6.Revision, v6.Addition)
	if err != nil {
		return "", fmt.Errorf("dbtest: describe archive: %w", err)
	}
	doc := distribution.NewLatestDocument(*a)
	if doc == nil {
		return "", errors.New("dbtest: grype refused to build a listing for the archive")
	}
	listingPath := filepath.Join(filepath.Dir(archivePath), distribution.LatestFileName)
	f, err := os.Create(listingPath)
	if err != nil {
		return "", fmt.Errorf("dbtest: create listing: %w", err)
	}
	if err := doc.Write(f); err != nil {
		_ = f.Close()
		return "", fmt.Errorf("dbtest: write listing: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("dbtest: close listing: %w", err)
	}
	return listingPath, nil
}
