package vulndb

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/anchore/grype/grype"
	"github.com/anchore/grype/grype/distro"
	"github.com/anchore/grype/grype/match"
	"github.com/anchore/grype/grype/matcher"
	"github.com/anchore/grype/grype/matcher/dotnet"
	"github.com/anchore/grype/grype/matcher/dpkg"
	"github.com/anchore/grype/grype/matcher/golang"
	"github.com/anchore/grype/grype/matcher/hex"
	"github.com/anchore/grype/grype/matcher/java"
	"github.com/anchore/grype/grype/matcher/javascript"
	"github.com/anchore/grype/grype/matcher/python"
	"github.com/anchore/grype/grype/matcher/rpm"
	"github.com/anchore/grype/grype/matcher/ruby"
	"github.com/anchore/grype/grype/matcher/rust"
	"github.com/anchore/grype/grype/matcher/stock"
	"github.com/anchore/grype/grype/pkg"
	"github.com/anchore/grype/grype/version"
	"github.com/anchore/grype/grype/vulnerability"
	"github.com/anchore/syft/syft/file"
	syftPkg "github.com/anchore/syft/syft/pkg"

	"github.com/imagetrust/imagetrust/scanner/severity"

	"github.com/imagetrust/imagetrust/scanner/internal/redact"
)

// Finding is one vulnerability in one package (name, version, type), wherever in the image that
// package was found: grype matches each package occurrence on its own, so a Go module linked
// into two binaries is two matches, but it is one finding with two Locations — as grype's table
// shows it, one row.
type Finding struct {
	// ID is the vulnerability ID as recorded by its provider (CVE-…, GHSA-…).
	ID string
	// Aliases are related vulnerability IDs (e.g. the CVE of a GHSA), sorted.
	Aliases []string
	// Package and Version identify the affected package as the SBOM names it.
	Package, Version string
	// Type is the syft package type: deb, apk, go-module, npm, …
	Type string
	// PURL is the package URL from the SBOM, when present.
	PURL string
	// FixedVersions lists versions that fix the vulnerability (empty when not fixed).
	FixedVersions []string
	// FixState is fixed, not-fixed, wont-fix or unknown.
	FixState string
	// Severity is Critical, High, Medium, Low, Negligible or Unknown.
	Severity string
	// Namespace is grype's record namespace, e.g. "debian:distro:debian:12" or "github:language:go".
	Namespace string
	// Matchers names the grype matchers that found it (e.g. "dpkg-matcher"), sorted.
	Matchers []string
	// MatchTypes are how it matched (exact-direct-match, exact-indirect-match, cpe-match), sorted.
	MatchTypes []string
	// Locations are the files the package was found in, from the SBOM (sorted, distinct): one
	// per occurrence, e.g. each Go binary that links the module. Only a package's primary
	// evidence counts (a deb package is in /var/lib/dpkg/status, not in its copyright file).
	Locations []string
}

// MatchResult is the outcome of matching one SBOM.
type MatchResult struct {
	// Findings are sorted by severity (highest first), then ID, package, version, type and namespace.
	Findings []Finding
	// Packages is the number of packages grype read from the SBOM.
	Packages int
	// DB describes the database the SBOM was matched against.
	DB Status
}

// defaultIgnoreRules are the rules the grype CLI adds with its default configuration
// (match-upstream-kernel-headers: false): kernel header packages do not inherit every kernel
// vulnerability through their source package.
var defaultIgnoreRules = []match.IgnoreRule{
	{Package: match.IgnoreRulePackage{Name: "kernel-headers", UpstreamName: "kernel", Type: string(syftPkg.RpmPkg)}, MatchType: match.ExactIndirectMatch},
	{Package: match.IgnoreRulePackage{Name: "linux(-.*)?-headers-.*", UpstreamName: "linux.*", Type: string(syftPkg.DebPkg)}, MatchType: match.ExactIndirectMatch},
	{Package: match.IgnoreRulePackage{Name: "linux-libc-dev", UpstreamName: "linux", Type: string(syftPkg.DebPkg)}, MatchType: match.ExactIndirectMatch},
	{Package: match.IgnoreRulePackage{Name: "linux-kbuild-.*", UpstreamName: "linux.*", Type: string(syftPkg.DebPkg)}, MatchType: match.ExactIndirectMatch},
}

// defaultMatcherConfig mirrors the grype CLI's default match configuration (options.defaultMatchConfig
// and defaultExternalSources): CPE matching only for the stock matcher, no network lookups.
func defaultMatcherConfig() matcher.Config {
	return matcher.Config{
		Java: java.MatcherConfig{ExternalSearchConfig: java.ExternalSearchConfig{
			SearchMavenUpstream: false,
			MavenBaseURL:        "https://search.maven.org/solrsearch/select",
			MavenRateLimit:      300 * time.Millisecond,
		}},
		Ruby:       ruby.MatcherConfig{},
		Python:     python.MatcherConfig{},
		Dotnet:     dotnet.MatcherConfig{},
		Javascript: javascript.MatcherConfig{},
		Golang:     golang.MatcherConfig{},
		Rust:       rust.MatcherConfig{},
		Hex:        hex.MatcherConfig{},
		Stock:      stock.MatcherConfig{UseCPEs: true},
		Dpkg:       dpkg.MatcherConfig{MissingEpochStrategy: version.MissingEpochStrategyZero},
		Rpm:        rpm.MatcherConfig{MissingEpochStrategy: version.MissingEpochStrategyAuto},
	}
}

// providerConfig mirrors the SBOM part of the grype CLI's provider configuration: no distro
// override, no generated CPEs, grype's default fix channels.
func providerConfig() pkg.ProviderConfig {
	return pkg.ProviderConfig{
		SynthesisConfig: pkg.SynthesisConfig{
			Distro: pkg.DistroConfig{FixChannels: distro.DefaultFixChannels()},
		},
	}
}

// Match decodes an SBOM document (syft JSON, SPDX JSON or CycloneDX JSON, detected from the
// content) and matches its packages against the loaded database with grype's default matchers
// and the CLI's default ignore rules. It fails with ErrSBOMTooLarge, ErrInvalidSBOM, ErrNoDB or
// ErrStale rather than returning a possibly incomplete result.
func (m *Manager) Match(ctx context.Context, sbom []byte) (*MatchResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if int64(len(sbom)) > m.cfg.MaxSBOMBytes {
		return nil, fmt.Errorf("%w: %d bytes exceeds the limit of %d", ErrSBOMTooLarge, len(sbom), m.cfg.MaxSBOMBytes)
	}
	h, st, err := m.acquireFresh()
	if err != nil {
		return nil, err
	}
	defer h.inflight.Done()
	if len(bytes.TrimSpace(sbom)) == 0 {
		return nil, fmt.Errorf("%w: empty document", ErrInvalidSBOM)
	}

	findings, n, err := matchSBOM(ctx, h.provider, sbom)
	if err != nil {
		return nil, err
	}
	return &MatchResult{Findings: findings, Packages: n, DB: st}, nil
}

// matchSBOM is the grype part of Match: decode, match with the CLI's defaults, convert.
func matchSBOM(ctx context.Context, vp vulnerability.Provider, sbom []byte) ([]Finding, int, error) {
	pkgs, pkgCtx, _, err := pkg.ProvideFromReader(bytes.NewReader(sbom), providerConfig())
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %s", ErrInvalidSBOM, redact.Text(err.Error()))
	}

	// a matcher per call: VulnerabilityMatcher and some matchers keep per-run state
	vm := grype.VulnerabilityMatcher{
		VulnerabilityProvider: vp,
		Matchers:              matcher.NewDefaultMatchers(defaultMatcherConfig()),
		IgnoreRules:           defaultIgnoreRules,
	}
	remaining, _, err := vm.FindMatchesContext(ctx, pkgs, pkgCtx)
	if err != nil {
		return nil, 0, fmt.Errorf("vulndb: match: %w", err)
	}

	return toFindings(vp, remaining.Sorted()), len(pkgs), nil
}

// toFindings converts grype's matches, one finding per distinct finding whatever the number of
// occurrences, sorted.
func toFindings(vp vulnerability.Provider, matches []match.Match) []Finding {
	findings := make([]Finding, 0, len(matches))
	for _, mm := range matches {
		findings = append(findings, toFinding(vp, mm))
	}
	findings = mergeLocations(findings)
	SortFindings(findings)
	return findings
}

func toFinding(vp vulnerability.Provider, mm match.Match) Finding {
	v := mm.Vulnerability
	f := Finding{
		ID:            v.ID,
		Package:       mm.Package.Name,
		Version:       mm.Package.Version,
		Type:          string(mm.Package.Type),
		PURL:          mm.Package.PURL,
		FixedVersions: nonEmpty(v.Fix.Versions),
		FixState:      string(v.Fix.State),
		Namespace:     v.Namespace,
		Severity:      severityOf(vp, v),
		Locations:     findingLocations(mm.Package.Locations),
	}
	if f.FixState == "" {
		f.FixState = string(vulnerability.FixStateUnknown)
	}
	for _, r := range v.RelatedVulnerabilities {
		if r.ID != v.ID && !slices.Contains(f.Aliases, r.ID) {
			f.Aliases = append(f.Aliases, r.ID)
		}
	}
	sort.Strings(f.Aliases)
	for _, d := range mm.Details {
		if s := string(d.Matcher); s != "" && !slices.Contains(f.Matchers, s) {
			f.Matchers = append(f.Matchers, s)
		}
		if s := string(d.Type); s != "" && !slices.Contains(f.MatchTypes, s) {
			f.MatchTypes = append(f.MatchTypes, s)
		}
	}
	sort.Strings(f.Matchers)
	sort.Strings(f.MatchTypes)
	return f
}

// findingLocations are the paths a package was found at: its primary evidence when the SBOM
// marks it (syft does), else every location the SBOM records (SPDX, CycloneDX).
func findingLocations(ls file.LocationSet) []string {
	var primary, all []string
	for _, l := range ls.ToSlice() {
		if l.RealPath == "" {
			continue
		}
		all = append(all, l.RealPath)
		if l.Annotations[syftPkg.EvidenceAnnotationKey] == syftPkg.PrimaryEvidenceAnnotation {
			primary = append(primary, l.RealPath)
		}
	}
	if len(primary) > 0 {
		all = primary
	}
	slices.Sort(all)
	return slices.Compact(all)
}

// mergeLocations folds findings that differ only in Locations into one that lists them all.
// Everything else must agree (the vulnerability record, fix, severity, matchers): two records
// of one ID from different namespaces stay two findings, as they stay two rows in grype's
// table when their severity or fix differs.
func mergeLocations(fs []Finding) []Finding {
	index := make(map[string]int, len(fs))
	out := fs[:0]
	for _, f := range fs {
		k := identity(f)
		if i, ok := index[k]; ok {
			out[i].Locations = append(out[i].Locations, f.Locations...)
			continue
		}
		index[k] = len(out)
		out = append(out, f)
	}
	for i := range out {
		slices.Sort(out[i].Locations)
		out[i].Locations = slices.Compact(out[i].Locations)
	}
	return out
}

// identity is every field of a finding but its Locations, unambiguously joined.
func identity(f Finding) string {
	var b strings.Builder
	for _, s := range []string{f.ID, f.Package, f.Version, f.Type, f.PURL, f.FixState, f.Severity, f.Namespace} {
		b.WriteString(s)
		b.WriteByte(0)
	}
	for _, l := range [][]string{f.Aliases, f.FixedVersions, f.Matchers, f.MatchTypes} {
		for _, s := range l {
			b.WriteString(s)
			b.WriteByte(1)
		}
		b.WriteByte(0)
	}
	return b.String()
}

func nonEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return slices.Clone(s)
}

// severityOf normalises grype's severity to one of the six names.
func severityOf(vp vulnerability.Provider, v vulnerability.Vulnerability) string {
	md := v.Metadata
	if md == nil {
		// v6 attaches metadata to every vulnerability; the lookup is the documented fallback
		if looked, err := vp.VulnerabilityMetadata(v.Reference); err == nil { //nolint:staticcheck // SA1019: fallback for records without inline metadata
			md = looked
		}
	}
	sev := vulnerability.UnknownSeverity
	if md != nil {
		sev = vulnerability.ParseSeverity(md.Severity)
	}
	return severity.Normalize(sev.String())
}

// SortFindings sorts findings in the one order imagetrust shows them in (CompareFindings).
func SortFindings(fs []Finding) { slices.SortStableFunc(fs, CompareFindings) }

// CompareFindings orders findings deterministically: severity (highest first), fixable before
// not fixable, then ID, package, version, type, namespace and PURL.
func CompareFindings(a, b Finding) int {
	return cmp.Or(
		cmp.Compare(severity.Rank(b.Severity), severity.Rank(a.Severity)),
		compareFixable(a, b),
		cmp.Compare(a.ID, b.ID),
		cmp.Compare(a.Package, b.Package),
		cmp.Compare(a.Version, b.Version),
		cmp.Compare(a.Type, b.Type),
		cmp.Compare(a.Namespace, b.Namespace),
		cmp.Compare(a.PURL, b.PURL),
	)
}

func compareFixable(a, b Finding) int {
	fa, fb := len(a.FixedVersions) > 0, len(b.FixedVersions) > 0
	switch {
	case fa == fb:
		return 0
	case fa:
		return -1
	}
	return 1
}
