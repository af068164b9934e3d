package dbtest

import (
	"fmt"
	"math/rand/v2"
	"sort"

	"github.com/anchore/packageurl-go"
	"github.com/anchore/syft/syft/artifact"
	"github.com/anchore/syft/syft/file"
	"github.com/anchore/syft/syft/format"
	"github.com/anchore/syft/syft/format/syftjson"
	"github.com/anchore/syft/syft/linux"
	syftPkg "github.com/anchore/syft/syft/pkg"
	"github.com/anchore/syft/syft/sbom"
	"github.com/anchore/syft/syft/source"
)

// FleetConfig sizes a synthetic fleet: images built on a few base distributions that share
// their base packages and draw application dependencies (npm, Go) from one pool, as real
// clusters do, plus a vulnerability database covering them.
type FleetConfig struct {
	// Seed makes the fleet reproducible.
	Seed uint64
	// Images is the number of image SBOMs.
	Images int
	// MinPackages and MaxPackages bound the packages per image.
	MinPackages, MaxPackages int
	// BasePackages is the number of OS packages per distribution (shared by its images).
	BasePackages int
	// AppPackages is the size of the shared npm and Go module pools (each).
	AppPackages int
	// ExtraVulns adds records for packages no image has, so the database has a realistic size.
	ExtraVulns int
}

// FleetDistros are the five base distributions of a fleet, as "name:version".
var FleetDistros = []string{"debian:11", "debian:12", "debian:13", "alpine:3.19", "alpine:3.20"}

// Fleet is a generated fleet.
type Fleet struct {
	// Vulns is the database content.
	Vulns []Vuln
	// SBOMs maps an image name to its syft JSON SBOM.
	SBOMs map[string][]byte
}

type fleetPkg struct {
	name, source, version string
	typ                   syftPkg.Type
}

var debVersions = []string{"1.0-1", "1.1-1", "1.2-1", "2.0-1"}
var apkVersions = []string{"1.0-r0", "1.1-r0", "1.2-r0", "2.0-r0"}
var appVersions = []string{"1.0.0", "1.1.0", "1.2.0", "2.0.0"}

// GenerateFleet builds a fleet deterministically from cfg.
func GenerateFleet(cfg FleetConfig) (*Fleet, error) {
	if cfg.Images < 1 || cfg.MinPackages < 1 || cfg.MaxPackages < cfg.MinPackages || cfg.BasePackages < 4 || cfg.AppPackages < 1 {
		return nil, fmt.Errorf("dbtest: invalid fleet config %+v", cfg)
	}
	r := rand.New(rand.NewPCG(cfg.Seed, 0x5eed))
	fl := &Fleet{SBOMs: map[string][]byte{}}

	// OS packages per distro: binary packages grouped under source packages; the same names
	// exist in every release of a distribution with release-specific versions
	base := map[string][]fleetPkg{}
	for di, d := range FleetDistros {
		deb := d[:6] == "debian"
		vers := apkVersions
		typ := syftPkg.ApkPkg
		if deb {
			vers, typ = debVersions, syftPkg.DebPkg
		}
		var pkgs []fleetPkg
		for i := 0; i < cfg.BasePackages; i++ {
			src := fmt.Sprintf("src%d", i/3)
			pkgs = append(pkgs, fleetPkg{name: fmt.Sprintf("lib%s-%d", src, i%3), source: src, version: vers[(i+di)%len(vers)], typ: typ})
		}
		if deb {
			// grype's default ignore rules drop the kernel's vulnerabilities reached through these
			pkgs = append(pkgs,
				fleetPkg{name: "linux-libc-dev", source: "linux", version: "6.1.76-1", typ: typ},
				fleetPkg{name: "linux-headers-6.1.0-18-amd64", source: "linux", version: "6.1.76-1", typ: typ},
				fleetPkg{name: "linux-image-6.1.0-18-amd64", source: "linux", version: "6.1.76-1", typ: typ})
		}
		base[d] = pkgs
		// vulnerabilities: every 4th source package, one fixed and one not-fixed record for some
		for i := 0; i < cfg.BasePackages/3; i++ {
			if i%4 != 0 {
				continue
			}
			src := fmt.Sprintf("src%d", i)
			fix := vers[2]
			fl.Vulns = append(fl.Vulns, Vuln{ID: fmt.Sprintf("CVE-2024-%d%05d", di, i), Severity: sev(i), Ecosystem: string(typ),
				Distro: d, Package: src, Constraint: "< " + fix, FixedVersion: fix})
			if i%8 == 0 {
				fl.Vulns = append(fl.Vulns, Vuln{ID: fmt.Sprintf("CVE-2023-%d%05d", di, i), Severity: "Low", Ecosystem: string(typ),
					Distro: d, Package: src})
			}
		}
		if deb {
			fl.Vulns = append(fl.Vulns, Vuln{ID: fmt.Sprintf("CVE-2024-9%d999", di), Severity: "High", Ecosystem: EcosystemDeb,
				Distro: d, Package: "linux", Constraint: "< 6.1.90-1", FixedVersion: "6.1.90-1"})
		}
	}
	var npm, gomod []fleetPkg
	for i := 0; i < cfg.AppPackages; i++ {
		npm = append(npm, fleetPkg{name: fmt.Sprintf("npm-lib-%d", i), version: appVersions[i%len(appVersions)], typ: syftPkg.NpmPkg})
		gomod = append(gomod, fleetPkg{name: fmt.Sprintf("example.com/mod%d", i), version: "v" + appVersions[(i+1)%len(appVersions)], typ: syftPkg.GoModulePkg})
		if i%5 == 0 {
			fl.Vulns = append(fl.Vulns,
				Vuln{ID: fmt.Sprintf("GHSA-npm-%05d", i), Aliases: []string{fmt.Sprintf("CVE-2022-%05d", i)}, Severity: sev(i), Ecosystem: EcosystemNPM,
					Package: npm[i].name, Constraint: "< 1.2.0", FixedVersion: "1.2.0"},
				Vuln{ID: fmt.Sprintf("GHSA-go-%05d", i), Severity: sev(i + 1), Ecosystem: EcosystemGo,
					Package: gomod[i].name, Constraint: "< 1.2.0", FixedVersion: "1.2.0"})
		}
	}
	// ExtraVulns records for packages no image has, shaped like the public database: a distro
	// advisory covers every release of its distribution and usually more than one source
	// package, a Go advisory both the module and its /v2 path; ~4.4 affected-package rows per
	// record, with a description of typical length.
	for i := 0; i < cfg.ExtraVulns; i++ {
		desc := fmt.Sprintf(extraDescription, i)
		switch i % 8 {
		case 0:
			fl.Vulns = append(fl.Vulns, Vuln{ID: fmt.Sprintf("GHSA-xnpm-%06d", i), Severity: "Medium", Ecosystem: EcosystemNPM,
				Package: fmt.Sprintf("unused-npm-%d", i), Constraint: "< 2.0.0", FixedVersion: "2.0.0", Description: desc})
		case 1:
			for _, suffix := range []string{"", "/v2"} {
				fl.Vulns = append(fl.Vulns, Vuln{ID: fmt.Sprintf("GHSA-xgo-%06d", i), Severity: "High", Ecosystem: EcosystemGo,
					Package: fmt.Sprintf("example.org/unused%d%s", i, suffix), Constraint: "< 2.0.0", FixedVersion: "2.0.0", Description: desc})
			}
		default:
			// debian (3 releases) for i%8 in 2..5, alpine (2 releases) for 6..7; two source packages each
			ds, eco := FleetDistros[:3], EcosystemDeb
			if i%8 >= 6 {
				ds, eco = FleetDistros[3:], EcosystemAPK
			}
			for _, d := range ds {
				for _, p := range []string{fmt.Sprintf("unused-src-%d", i), fmt.Sprintf("unused-src-%d", i/7)} {
					fl.Vulns = append(fl.Vulns, Vuln{ID: fmt.Sprintf("CVE-2099-%07d", i), Severity: "Low", Ecosystem: eco, Distro: d,
						Package: p, Constraint: "< 9.0-1", FixedVersion: "9.0-1", Description: desc})
				}
			}
		}
	}

	for img := 0; img < cfg.Images; img++ {
		d := FleetDistros[img%len(FleetDistros)]
		n := cfg.MinPackages + r.IntN(cfg.MaxPackages-cfg.MinPackages+1)
		// a tenth of the image (at most 300 packages) is its own application dependencies; the
		// rest comes from its distribution's base set and, when that runs out, the shared pools
		own := min(n/10, 300)
		var pkgs []fleetPkg
		bp := base[d]
		// every image has the first 30% of its base and a random part of the rest
		for i, p := range bp {
			if len(pkgs) >= n-own {
				break
			}
			if i < len(bp)*3/10 || r.IntN(2) == 0 || p.source == "linux" {
				pkgs = append(pkgs, p)
			}
		}
		for len(pkgs) < n-own {
			if r.IntN(2) == 0 {
				pkgs = append(pkgs, npm[r.IntN(len(npm))])
			} else {
				pkgs = append(pkgs, gomod[r.IntN(len(gomod))])
			}
		}
		for j := 0; j < own; j++ {
			v := appVersions[j%len(appVersions)]
			if j%2 == 0 {
				pkgs = append(pkgs, fleetPkg{name: fmt.Sprintf("img%04d-npm-%d", img, j), version: v, typ: syftPkg.NpmPkg})
			} else {
				pkgs = append(pkgs, fleetPkg{name: fmt.Sprintf("example.com/img%04d/mod%d", img, j), version: "v" + v, typ: syftPkg.GoModulePkg})
			}
		}
		doc, err := encodeImage(d, dedupe(pkgs))
		if err != nil {
			return nil, err
		}
		fl.SBOMs[fmt.Sprintf("image-%04d", img)] = doc
	}
	return fl, nil
}

// extraDescription is a description about as long as a public record's text with its
// references (~1 KiB), so the database has a realistic size.
const extraDescription = "Synthetic record %d. A flaw was found in the parsing of crafted input by this package that may allow a remote attacker " +
	"to cause a denial of service or possibly execute arbitrary code via a specially crafted request. Versions before the fixed version are affected; " +
	"upgrade to the fixed version. The issue is caused by an integer overflow when computing the size of a buffer for decoded data, which leads to " +
	"an out-of-bounds write on the heap. Exploitation requires the application to process untrusted input with the affected function, which is the " +
	"default for network-facing services that accept compressed or encoded payloads. References: https://example.org/advisories/synthetic, " +
	"https://example.org/bugs/synthetic, https://example.org/commits/synthetic-fix, https://example.org/mailing-list/security/synthetic, " +
	"https://example.org/tracker/synthetic. Credit: reported by an independent researcher through the coordinated disclosure process. " +
	"Mitigation: none known other than upgrading; disabling the affected feature reduces exposure but is not supported in all configurations."

func sev(i int) string {
	return []string{"Critical", "High", "Medium", "Low", "Negligible"}[i%5]
}

func dedupe(ps []fleetPkg) []fleetPkg {
	seen := map[string]bool{}
	var out []fleetPkg
	for _, p := range ps {
		k := string(p.typ) + "/" + p.name
		if !seen[k] {
			seen[k] = true
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// encodeImage writes a syft JSON SBOM for one image: the distro release, its packages with
// the metadata syft records (dpkg source, apk origin), and an ownership relationship from the
// first OS package to the image's application packages, as syft emits for files a package
// manager owns.
func encodeImage(d string, ps []fleetPkg) ([]byte, error) {
	name, ver := d[:6], d[7:]
	if name != "debian" {
		name, ver = "alpine", d[7:]+".1"
	}
	var all []syftPkg.Package
	var owner *syftPkg.Package
	var rels []artifact.Relationship
	for _, fp := range ps {
		p := syftPkg.Package{Name: fp.name, Version: fp.version, Type: fp.typ}
		switch fp.typ {
		case syftPkg.DebPkg:
			p.Metadata = syftPkg.DpkgDBEntry{Package: fp.name, Source: fp.source, Version: fp.version, Architecture: "amd64"}
			p.Locations = file.NewLocationSet(file.NewLocation("/var/lib/dpkg/status"))
			p.PURL = packageurl.NewPackageURL("deb", "debian", fp.name, fp.version,
				packageurl.Qualifiers{{Key: "arch", Value: "amd64"}, {Key: "distro", Value: "debian-" + ver}}, "").ToString()
		case syftPkg.ApkPkg:
			p.Metadata = syftPkg.ApkDBEntry{Package: fp.name, OriginPackage: fp.source, Version: fp.version, Architecture: "x86_64"}
			p.Locations = file.NewLocationSet(file.NewLocation("/lib/apk/db/installed"))
			p.PURL = packageurl.NewPackageURL("apk", "alpine", fp.name, fp.version,
				packageurl.Qualifiers{{Key: "arch", Value: "x86_64"}, {Key: "distro", Value: "alpine-" + ver}}, "").ToString()
		case syftPkg.NpmPkg:
			p.Language = syftPkg.JavaScript
			p.Locations = file.NewLocationSet(file.NewLocation("/app/package-lock.json"))
			p.PURL = packageurl.NewPackageURL("npm", "", fp.name, fp.version, nil, "").ToString()
		case syftPkg.GoModulePkg:
			p.Language = syftPkg.Go
			p.Locations = file.NewLocationSet(file.NewLocation("/app/go.mod"))
			p.PURL = "pkg:golang/" + fp.name + "@" + fp.version
		}
		p.SetID()
		all = append(all, p)
		if owner == nil && (fp.typ == syftPkg.DebPkg || fp.typ == syftPkg.ApkPkg) {
			o := p
			owner = &o
		}
	}
	if owner != nil {
		for _, p := range all {
			if p.Type == syftPkg.NpmPkg {
				rels = append(rels, artifact.Relationship{From: *owner, To: p, Type: artifact.OwnershipByFileOverlapRelationship})
			}
		}
	}
	s := sbom.SBOM{
		Artifacts: sbom.Artifacts{
			Packages:          syftPkg.NewCollection(all...),
			LinuxDistribution: &linux.Release{ID: name, VersionID: ver, Name: name},
		},
		Relationships: rels,
		Source:        source.Description{Name: "image", Metadata: source.DirectoryMetadata{Path: "/"}},
		Descriptor:    sbom.Descriptor{Name: "syft", Version: "1.57.0"},
	}
	return format.Encode(s, syftjson.NewFormatEncoder())
}

// MutateFleet returns a copy of vulns with about frac of the records changed the way a daily
// database update changes them: fixes published (constraint and fixed version move), records
// added and records withdrawn. It also returns the distinct package names it touched.
func MutateFleet(vulns []Vuln, frac float64, seed uint64) ([]Vuln, []string) {
	r := rand.New(rand.NewPCG(seed, 0xd1ff))
	out := make([]Vuln, 0, len(vulns))
	touched := map[string]bool{}
	// the decision is per vulnerability record (ID), so every affected-package row of a chosen
	// record changes together and frac is a fraction of records, not of rows
	type decision struct {
		change bool
		kind   int
	}
	decided := map[string]decision{}
	n := 0
	for _, v := range vulns {
		dc, ok := decided[v.ID]
		if !ok {
			dc = decision{change: r.Float64() < frac, kind: n % 3}
			decided[v.ID] = dc
			n++
		}
		if !dc.change {
			out = append(out, v)
			continue
		}
		touched[v.Package] = true
		switch dc.kind {
		case 0: // withdrawn
		case 1: // fix moves
			v.Severity = "Critical"
			if v.Ecosystem == EcosystemDeb {
				v.Constraint, v.FixedVersion = "< 1.1-1", "1.1-1"
			} else if v.Ecosystem == EcosystemAPK {
				v.Constraint, v.FixedVersion = "< 1.1-r0", "1.1-r0"
			} else {
				v.Constraint, v.FixedVersion = "< 1.1.0", "1.1.0"
			}
			out = append(out, v)
		default: // a new record for the same package
			out = append(out, v)
			nv := v
			nv.ID = v.ID + "-NEW"
			nv.Aliases = nil
			out = append(out, nv)
		}
	}
	names := make([]string, 0, len(touched))
	for n := range touched {
		names = append(names, n)
	}
	sort.Strings(names)
	return out, names
}
