package vulndb

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/anchore/grype/grype"
	"github.com/anchore/grype/grype/db/v6/installation"

	"github.com/imagetrust/imagetrust/scanner/vulndb/dbtest"
)

// benchVulns returns testVulns padded with n synthetic npm and Debian records, so the
// database has a realistic number of rows to open and hash.
func benchVulns(n int) []dbtest.Vuln {
	vulns := append([]dbtest.Vuln(nil), testVulns...)
	for i := 0; i < n; i++ {
		if i%2 == 0 {
			vulns = append(vulns, dbtest.Vuln{ID: fmt.Sprintf("GHSA-bench-%06d", i), Severity: "Medium", Ecosystem: dbtest.EcosystemNPM,
				Package: fmt.Sprintf("bench-npm-%d", i), Constraint: "< 2.0.0", FixedVersion: "2.0.0", Description: "synthetic"})
		} else {
			vulns = append(vulns, dbtest.Vuln{ID: fmt.Sprintf("CVE-2099-%06d", i), Severity: "Low", Ecosystem: dbtest.EcosystemDeb,
				Package: fmt.Sprintf("bench-deb-%d", i), Constraint: "< 1.0-2", FixedVersion: "1.0-2", Description: "synthetic"})
		}
	}
	return vulns
}

// benchmarkMatch compares matching N images against a database loaded once (Manager.Match)
// with loading the database for every image as the grype CLI does (LoadVulnerabilityDB with
// its default checksum and age validation, match, close).
func benchmarkMatch(b *testing.B, perImageLoad bool) {
	debian, _ := fixtures(b)
	doc := debian.syftJSON
	for _, size := range []int{0, 20_000} {
		b.Run(fmt.Sprintf("db=%d-extra-records", size), func(b *testing.B) {
			m, err := New(Config{Dir: b.TempDir(), ValidateChecksum: true})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			archive, err := dbtest.Archive(b.TempDir(), time.Now().Add(-time.Hour), benchVulns(size))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := m.Import(context.Background(), archive); err != nil {
				b.Fatal(err)
			}
			root := m.current().root
			ctx := context.Background()
			b.ResetTimer()
			for b.Loop() {
				if !perImageLoad {
					res, err := m.Match(ctx, doc)
					if err != nil || len(res.Findings) != len(wantDebianRootFindings) {
						b.Fatalf("match: %v", err)
					}
					continue
				}
				ic := installation.Config{DBRootDir: root, ValidateChecksum: true, ValidateAge: true, MaxAllowedBuiltAge: 5 * 24 * time.Hour}
				vp, _, err := grype.LoadVulnerabilityDB(m.distCfg, ic, false)
				if err != nil {
					b.Fatal(err)
				}
				findings, _, err := matchSBOM(ctx, vp, doc)
				if err != nil || len(findings) != len(wantDebianRootFindings) {
					b.Fatalf("match: %v", err)
				}
				if err := vp.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMatchLoadedDB matches one image SBOM per iteration against the shared database.
func BenchmarkMatchLoadedDB(b *testing.B) { benchmarkMatch(b, false) }

// BenchmarkMatchLoadPerImage loads the database for every image, as one grype CLI run does.
func BenchmarkMatchLoadPerImage(b *testing.B) { benchmarkMatch(b, true) }
