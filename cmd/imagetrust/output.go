package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/imagetrust/imagetrust/scanner"
	"github.com/imagetrust/imagetrust/scanner/policy"
	"github.com/imagetrust/imagetrust/scanner/severity"
	"github.com/imagetrust/imagetrust/scanner/vulndb"
)

// ScanReportAPIVersion versions the JSON output of `imagetrust scan -o json`. Fields are only
// ever added within a version; a removal or change of meaning bumps it.
const ScanReportAPIVersion = "imagetrust.dev/scan/v1"

// ScanReport is the documented JSON output of `imagetrust scan -o json` (see README).
type ScanReport struct {
	APIVersion string `json:"apiVersion"`
	// Version is the imagetrust build and the grype, syft and cosign libraries it links.
	Version VersionInfo `json:"version"`
	// Image is the reference as given on the command line.
	Image string `json:"image"`
	// Verdict over every platform: Untrusted if any is, else Unknown if any is, else Trusted.
	Verdict string `json:"verdict"`
	// DB is the vulnerability DB the findings come from.
	DB DBInfo `json:"db"`
	// Results has one entry per platform image.
	Results []PlatformResult `json:"results"`
}

// DBInfo describes the vulnerability DB.
type DBInfo struct {
	Schema string    `json:"schema"`
	Built  time.Time `json:"built"`
	Source string    `json:"source,omitempty"`
}

// PlatformResult is the assessment of one platform image.
type PlatformResult struct {
	Repository  string             `json:"repository"`
	Tag         string             `json:"tag,omitempty"`
	Digest      string             `json:"digest"`
	Platform    string             `json:"platform,omitempty"`
	IndexDigest string             `json:"indexDigest,omitempty"`
	Signature   SignatureJSON      `json:"signature"`
	SBOM        SBOMJSON           `json:"sbom"`
	Provenance  scanner.Provenance `json:"provenance"`
	BaseImage   scanner.BaseImage  `json:"baseImage"`
	Summary     scanner.Summary    `json:"summary"`
	Scanned     bool               `json:"scanned"`
	ScanReason  string             `json:"scanReason,omitempty"`
	Findings    []FindingJSON      `json:"findings"`
	Verdict     string             `json:"verdict"`
	Failures    []FailureJSON      `json:"failures,omitempty"`
	// Notes point out what the verdict does not show, e.g. findings the gate does not count.
	Notes []string `json:"notes,omitempty"`
}

// SignatureJSON is the signature result.
type SignatureJSON struct {
	State   string       `json:"state"`
	Signers []SignerJSON `json:"signers,omitempty"`
	Reason  string       `json:"reason,omitempty"`
}

// SignerJSON identifies a signer.
type SignerJSON struct {
	Authority      string `json:"authority"`
	KeyFingerprint string `json:"keyFingerprint,omitempty"`
	Subject        string `json:"subject,omitempty"`
	Issuer         string `json:"issuer,omitempty"`
	// Format is cosign-legacy, sigstore-bundle or notation.
	Format string `json:"format,omitempty"`
	// TimeProof says what proved when the signature was made.
	TimeProof              string `json:"timeProof,omitempty"`
	CertificateSubject     string `json:"certificateSubject,omitempty"`
	CertificateFingerprint string `json:"certificateFingerprint,omitempty"`
}

// SBOMJSON describes the SBOM used.
type SBOMJSON struct {
	Source   string `json:"source"`
	Format   string `json:"format,omitempty"`
	Packages int    `json:"packages"`
	Digest   string `json:"digest,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// FindingJSON is one vulnerability in one package (name, version, type), wherever it was found.
type FindingJSON struct {
	ID            string   `json:"id"`
	Aliases       []string `json:"aliases,omitempty"`
	Severity      string   `json:"severity"`
	Package       string   `json:"package"`
	Version       string   `json:"version"`
	Type          string   `json:"type"`
	FixedVersions []string `json:"fixedVersions,omitempty"`
	FixState      string   `json:"fixState,omitempty"`
	Namespace     string   `json:"namespace,omitempty"`
	// Locations are the files the package was found in (from the SBOM): a module linked into
	// two binaries is one finding with two locations.
	Locations []string `json:"locations,omitempty"`
}

// FailureJSON is a failed (or undecidable) policy check.
type FailureJSON struct {
	Policy  string `json:"policy"`
	Check   string `json:"check"`
	Message string `json:"message"`
}

// assessed is one platform's assessment with the policies it was evaluated against.
type assessed struct {
	*scanner.Assessment
	policies []scanner.Policy
}

func newReport(image string, results []assessed, db vulndb.Status) ScanReport {
	r := ScanReport{
		APIVersion: ScanReportAPIVersion, Version: buildVersion(), Image: image, Verdict: string(policy.Trusted),
		DB:      DBInfo{Schema: db.SchemaVersion, Built: db.Built, Source: db.Source},
		Results: []PlatformResult{},
	}
	if len(results) == 0 {
		r.Verdict = string(policy.Unknown)
	}
	for _, a := range results {
		pr := PlatformResult{
			Repository: a.Image.Repository, Tag: a.Image.Tag, Digest: a.Image.Digest, Platform: a.Image.Platform,
			IndexDigest: a.Image.IndexDigest,
			Signature:   SignatureJSON{State: string(a.Verification.Signature.State), Reason: a.Verification.Signature.Reason},
			Provenance:  a.Verification.Provenance, BaseImage: a.Verification.Base,
			SBOM:     SBOMJSON{Source: "None", Reason: a.SBOMReason},
			Findings: []FindingJSON{}, Verdict: string(a.Verdict.Verdict), ScanReason: a.ScanReason,
		}
		for _, s := range a.Verification.Signature.Signers {
			pr.Signature.Signers = append(pr.Signature.Signers, SignerJSON{Authority: s.Authority, KeyFingerprint: s.KeyFingerprint, Subject: s.Subject, Issuer: s.Issuer,
				Format: string(s.Format), TimeProof: s.TimeProof, CertificateSubject: s.CertificateSubject, CertificateFingerprint: s.CertificateFingerprint})
		}
		if a.SBOM != nil {
			pr.SBOM = SBOMJSON{Source: a.SBOM.Source, Format: a.SBOM.Format, Packages: a.SBOM.Packages, Digest: a.SBOM.Digest, Reason: a.SBOMReason}
		}
		if a.Scan != nil {
			pr.Scanned = true
			pr.Summary = a.Scan.Summary
			for _, f := range scanner.TopFindings(a.Scan.Findings, len(a.Scan.Findings)) {
				pr.Findings = append(pr.Findings, FindingJSON{
					ID: f.ID, Aliases: f.Aliases, Severity: f.Severity, Package: f.Package, Version: f.Version,
					Type: f.Type, FixedVersions: f.FixedVersions, FixState: f.FixState, Namespace: f.Namespace, Locations: f.Locations,
				})
			}
			if note := uncountedUnknown(a.Scan.Summary, a.policies); note != "" {
				pr.Notes = append(pr.Notes, note)
			}
		}
		for _, res := range a.Verdict.Results {
			for _, o := range res.Failures {
				pr.Failures = append(pr.Failures, FailureJSON{Policy: res.Policy, Check: o.Check, Message: o.Message})
			}
		}
		switch {
		case pr.Verdict == string(policy.Untrusted):
			r.Verdict = pr.Verdict
		case pr.Verdict == string(policy.Unknown) && r.Verdict == string(policy.Trusted):
			r.Verdict = pr.Verdict
		}
		r.Results = append(r.Results, pr)
	}
	return r
}

// uncountedUnknown says so when findings without a severity exist and no vulnerability gate
// that applies counts them: a gate at Low passes an image whose every finding is Unknown.
func uncountedUnknown(sum scanner.Summary, pols []scanner.Policy) string {
	gated := false
	for _, p := range pols {
		if g := p.Vulnerabilities; g != nil {
			if severity.Rank(g.FailOn) == severity.Rank(severity.Unknown) && g.FailOn != "" {
				return ""
			}
			gated = true
		}
	}
	if !gated || sum.Unknown == 0 {
		return ""
	}
	return fmt.Sprintf("%d %s no severity; --fail-on unknown (failOnSeverity: Unknown) counts them",
		sum.Unknown, plural(sum.Unknown, "finding has", "findings have"))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func writeJSON(w io.Writer, r ScanReport) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// signerLine is one signer in the table: who, in which format, and what proved the time.
func signerLine(s SignerJSON) string {
	who := s.KeyFingerprint
	switch {
	case s.Subject != "":
		who = s.Subject + " (" + s.Issuer + ")"
	case s.CertificateSubject != "":
		who = s.CertificateSubject + " " + s.CertificateFingerprint
	}
	var how []string
	for _, x := range []string{s.Format, s.TimeProof} {
		if x != "" {
			how = append(how, x)
		}
	}
	if len(how) == 0 {
		return s.Authority + ": " + who
	}
	return fmt.Sprintf("%s: %s [%s]", s.Authority, who, strings.Join(how, ", "))
}

func writeTable(w io.Writer, r ScanReport, maxFindings int) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "IMAGE\t%s\n", r.Image)
	fmt.Fprintf(tw, "VERDICT\t%s\n", r.Verdict)
	fmt.Fprintf(tw, "DB\tschema %s, built %s\n", r.DB.Schema, r.DB.Built.Format(time.RFC3339))
	for _, p := range r.Results {
		fmt.Fprintln(tw)
		fmt.Fprintf(tw, "DIGEST\t%s %s\n", p.Digest, p.Platform)
		sig := p.Signature.State
		for _, s := range p.Signature.Signers {
			sig += "; " + signerLine(s)
		}
		if p.Signature.Reason != "" && p.Signature.State != "Verified" {
			sig += " — " + p.Signature.Reason
		}
		fmt.Fprintf(tw, "SIGNATURE\t%s\n", sig)
		fmt.Fprintf(tw, "SBOM\t%s %s, %d packages\n", p.SBOM.Source, p.SBOM.Format, p.SBOM.Packages)
		if p.Provenance.BuilderID != "" {
			fmt.Fprintf(tw, "PROVENANCE\t%s\n", p.Provenance.BuilderID)
		}
		if p.BaseImage.Name != "" {
			fmt.Fprintf(tw, "BASE IMAGE\t%s signed=%v\n", p.BaseImage.Name, len(p.BaseImage.Signers) > 0)
		}
		s := p.Summary
		if p.Scanned {
			fmt.Fprintf(tw, "VULNERABILITIES\tcritical %d, high %d, medium %d, low %d, negligible %d, unknown %d, fixable %d\n",
				s.Critical, s.High, s.Medium, s.Low, s.Negligible, s.Unknown, s.Fixable)
		} else {
			fmt.Fprintf(tw, "VULNERABILITIES\tnot scanned: %s\n", p.ScanReason)
		}
		for _, n := range p.Notes {
			fmt.Fprintf(tw, "NOTE\t%s\n", n)
		}
		fmt.Fprintf(tw, "VERDICT\t%s\n", p.Verdict)
		for _, f := range p.Failures {
			fmt.Fprintf(tw, "  %s/%s\t%s\n", f.Policy, f.Check, f.Message)
		}
		writeFindings(tw, p.Findings, maxFindings)
	}
	return tw.Flush()
}

// writeFindings lists findings as grype's table does, one row per vulnerability and package,
// with where the package was found.
func writeFindings(tw io.Writer, findings []FindingJSON, maxFindings int) {
	if len(findings) == 0 {
		return
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "  ID\tSEVERITY\tPACKAGE\tINSTALLED\tFIXED IN\tTYPE\tLOCATION")
	for i, f := range findings {
		if i == maxFindings {
			fmt.Fprintf(tw, "  … %d more (use -o json)\t\t\t\t\t\t\n", len(findings)-maxFindings)
			break
		}
		loc := ""
		if len(f.Locations) > 0 {
			loc = f.Locations[0]
			if n := len(f.Locations) - 1; n > 0 {
				loc += fmt.Sprintf(" (+%d more)", n)
			}
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.ID, f.Severity, f.Package, f.Version, strings.Join(f.FixedVersions, ", "), f.Type, loc)
	}
}

// SARIF 2.1.0, the subset code-scanning dashboards read: one rule per vulnerability id, one
// result per (vulnerability, package, platform).
func writeSARIF(w io.Writer, r ScanReport) error {
	type msg struct {
		Text string `json:"text"`
	}
	type rule struct {
		ID               string         `json:"id"`
		ShortDescription msg            `json:"shortDescription"`
		Properties       map[string]any `json:"properties,omitempty"`
	}
	type logicalLocation struct {
		Name               string `json:"name"`
		FullyQualifiedName string `json:"fullyQualifiedName"`
	}
	type location struct {
		PhysicalLocation struct {
			ArtifactLocation struct {
				URI string `json:"uri"`
			} `json:"artifactLocation"`
		} `json:"physicalLocation"`
		// LogicalLocations are the files in the image, as grype's SARIF names them.
		LogicalLocations []logicalLocation `json:"logicalLocations,omitempty"`
	}
	type result struct {
		RuleID    string     `json:"ruleId"`
		Level     string     `json:"level"`
		Message   msg        `json:"message"`
		Locations []location `json:"locations"`
	}
	var rules []rule
	seen := map[string]bool{}
	results := []result{}
	for _, p := range r.Results {
		for _, f := range p.Findings {
			if !seen[f.ID] {
				seen[f.ID] = true
				rules = append(rules, rule{ID: f.ID, ShortDescription: msg{Text: f.ID + " (" + f.Severity + ")"},
					Properties: map[string]any{"security-severity": securitySeverity(f.Severity)}})
			}
			fix := "no fix available"
			if len(f.FixedVersions) > 0 {
				fix = "fixed in " + strings.Join(f.FixedVersions, ", ")
			}
			var loc location
			loc.PhysicalLocation.ArtifactLocation.URI = p.Repository + "@" + p.Digest
			for _, path := range f.Locations {
				loc.LogicalLocations = append(loc.LogicalLocations, logicalLocation{Name: path, FullyQualifiedName: p.Repository + "@" + p.Digest + ":" + path})
			}
			results = append(results, result{
				RuleID: f.ID, Level: sarifLevel(f.Severity),
				Message:   msg{Text: fmt.Sprintf("%s %s %s is affected by %s (%s); %s", f.Type, f.Package, f.Version, f.ID, f.Severity, fix)},
				Locations: []location{loc},
			})
		}
	}
	doc := map[string]any{
		"$schema": "https://json.schemastore.org/sarif-2.1.0.json",
		"version": "2.1.0",
		"runs": []any{map[string]any{
			"tool":    map[string]any{"driver": map[string]any{"name": "imagetrust", "informationUri": "https://github.com/imagetrust/imagetrust", "rules": rules}},
			"results": results,
		}},
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

func sarifLevel(sev string) string {
	switch severity.Normalize(sev) {
	case severity.Critical, severity.High:
		return "error"
	case severity.Medium:
		return "warning"
	default:
		return "note"
	}
}

// securitySeverity is the CVSS-like score GitHub code scanning ranks SARIF results by.
func securitySeverity(sev string) string {
	return map[string]string{severity.Critical: "9.5", severity.High: "8.0", severity.Medium: "5.5", severity.Low: "2.0"}[severity.Normalize(sev)]
}
