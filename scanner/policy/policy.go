// Package policy evaluates what the scanner observed about an image against trust policies.
//
// Evaluation is pure: an Input (what was observed) and a Policy go through an ordered chain of
// checks, each `func(Policy, Input) Outcome`, in the style of cert-manager's policy chains. No
// I/O happens here, so editing a policy re-evaluates every image from cached observations.
package policy

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/imagetrust/imagetrust/scanner/severity"
)

// Verdict is the outcome of evaluating one or more policies.
type Verdict string

// Verdicts. Unknown means an input needed by a check is missing (verification errored, no
// scan yet) and nothing failed outright: the image is neither trusted nor known bad.
const (
	Trusted   Verdict = "Trusted"
	Untrusted Verdict = "Untrusted"
	Unknown   Verdict = "Unknown"
)

// SeverityRank orders severities: Critical 5 … Unknown 0; unrecognised names rank as Unknown.
func SeverityRank(s string) int { return severity.Rank(s) }

// Exception accepts one vulnerability id or alias until Expires (zero: never).
type Exception struct {
	ID      string
	Reason  string
	Expires time.Time
}

// VulnerabilityGate fails images with findings at or above FailOn.
type VulnerabilityGate struct {
	FailOn    string
	OnlyFixed bool
	Ignore    []Exception
}

// Policy is the scanner's view of an ImageTrustPolicy.
type Policy struct {
	Name string
	// Images are glob patterns over the image repository (see MatchImage).
	Images []string
	// RequireSignature: a signature from one of Authorities must verify.
	RequireSignature bool
	// Authorities are the names of the authorities (as reported in Signer.Authority) that
	// count for this policy.
	Authorities []string
	// RequireSBOMAttestation: the SBOM must be Attested, or a signed Referrer.
	RequireSBOMAttestation bool
	// RequireProvenance: a signed SLSA provenance must exist; AllowedBuilderIDs pins the builder.
	RequireProvenance bool
	AllowedBuilderIDs []string
	// RequireSignedBase: the declared base image must be signed by the authorities.
	RequireSignedBase bool
	// AllowedRegistries: registry hosts with optional path prefix.
	AllowedRegistries []string
	// Vulnerabilities gate; nil disables it.
	Vulnerabilities *VulnerabilityGate
}

// Signature states as the verifier reports them.
const (
	SignatureVerified = "Verified"
	SignatureUnsigned = "Unsigned"
	SignatureInvalid  = "Invalid"
	SignatureError    = "Error"
)

// Finding is what the vulnerability gate needs to know about one finding.
type Finding struct {
	ID       string
	Aliases  []string
	Package  string
	Severity string
	Fixed    bool
}

// Input is everything observed about one image digest.
type Input struct {
	// Image is the repository reference, e.g. registry.example.com/team/app.
	Image string
	// SignatureState is Verified/Unsigned/Invalid/Error, or empty when not checked.
	SignatureState  string
	SignatureReason string
	// Signers lists the authority names that verified the image.
	Signers []string
	// SBOMSource is Attested, Referrer or Generated; empty when no SBOM was obtained.
	SBOMSource string
	SBOMReason string
	// Provenance: ProvenanceChecked false means not looked at (or errored).
	ProvenanceChecked bool
	ProvenanceBuilder string // empty when none was found
	ProvenanceSigners []string
	ProvenanceReason  string
	// Base image: BaseName empty means the image declares none.
	BaseName    string
	BaseChecked bool
	BaseSigners []string
	BaseReason  string
	// Scanned is true when Findings are a complete scan result.
	Scanned    bool
	ScanReason string
	Findings   []Finding
	// Now is the evaluation time, for exception expiry.
	Now time.Time
}

// Outcome is one check's result. Failed and Indeterminate are exclusive; neither means passed.
type Outcome struct {
	Check         string
	Failed        bool
	Indeterminate bool
	Message       string
}

// Check is one link of the evaluation chain.
type Check func(Policy, Input) Outcome

// Chain is the ordered list of checks every policy is evaluated with.
var Chain = []Check{
	CheckRegistry,
	CheckSignature,
	CheckSBOMAttestation,
	CheckProvenance,
	CheckBaseImage,
	CheckVulnerabilities,
}

// Result of evaluating one policy.
type Result struct {
	Policy  string
	Verdict Verdict
	// Failures are the failed checks (Untrusted) or, when none failed, the indeterminate ones.
	Failures []Outcome
}

// Evaluate runs the chain for one policy.
func Evaluate(p Policy, in Input) Result {
	res := Result{Policy: p.Name, Verdict: Trusted}
	var unknown []Outcome
	for _, check := range Chain {
		o := check(p, in)
		switch {
		case o.Failed:
			res.Failures = append(res.Failures, o)
		case o.Indeterminate:
			unknown = append(unknown, o)
		}
	}
	switch {
	case len(res.Failures) > 0:
		res.Verdict = Untrusted
	case len(unknown) > 0:
		res.Verdict = Unknown
		res.Failures = unknown
	}
	return res
}

// Combined is the verdict over every policy that applies to an image.
type Combined struct {
	Verdict  Verdict
	Policies []string
	Results  []Result
}

// EvaluateAll evaluates every policy. Untrusted wins over Unknown, which wins over Trusted;
// an image no policy applies to is Unknown (nothing vouches for it).
func EvaluateAll(policies []Policy, in Input) Combined {
	c := Combined{Verdict: Unknown}
	if len(policies) == 0 {
		return c
	}
	c.Verdict = Trusted
	for _, p := range policies {
		r := Evaluate(p, in)
		c.Policies = append(c.Policies, p.Name)
		c.Results = append(c.Results, r)
		switch {
		case r.Verdict == Untrusted:
			c.Verdict = Untrusted
		case r.Verdict == Unknown && c.Verdict == Trusted:
			c.Verdict = Unknown
		}
	}
	return c
}

func pass(check string) Outcome { return Outcome{Check: check} }
func fail(check, format string, args ...any) Outcome {
	return Outcome{Check: check, Failed: true, Message: fmt.Sprintf(format, args...)}
}
func indeterminate(check, format string, args ...any) Outcome {
	return Outcome{Check: check, Indeterminate: true, Message: fmt.Sprintf(format, args...)}
}

// Check names, as they appear in reports.
const (
	CheckNameRegistry        = "registry"
	CheckNameSignature       = "signature"
	CheckNameSBOMAttestation = "attestation-sbom"
	CheckNameProvenance      = "slsa-provenance"
	CheckNameBaseImage       = "base-image"
	CheckNameVulnerabilities = "vulnerabilities"
)

// CheckRegistry enforces AllowedRegistries.
func CheckRegistry(p Policy, in Input) Outcome {
	if len(p.AllowedRegistries) == 0 {
		return pass(CheckNameRegistry)
	}
	for _, allowed := range p.AllowedRegistries {
		if RegistryAllowed(in.Image, allowed) {
			return pass(CheckNameRegistry)
		}
	}
	return fail(CheckNameRegistry, "registry of %s is not in the allowed registries %v", in.Image, p.AllowedRegistries)
}

// RegistryAllowed reports whether image is on the registry host (with optional path prefix)
// given by allowed. The match is on whole path segments: "registry.example.com" does not
// allow "registry.example.com.evil.io/x".
func RegistryAllowed(image, allowed string) bool {
	allowed = strings.TrimSuffix(allowed, "/")
	return image == allowed || strings.HasPrefix(image, allowed+"/")
}

func intersects(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

// CheckSignature requires a verified signature from one of the policy's authorities.
func CheckSignature(p Policy, in Input) Outcome {
	if !p.RequireSignature {
		return pass(CheckNameSignature)
	}
	switch in.SignatureState {
	case SignatureVerified:
		if intersects(in.Signers, p.Authorities) {
			return pass(CheckNameSignature)
		}
		return fail(CheckNameSignature, "signed, but by none of the policy's authorities %v", p.Authorities)
	case SignatureUnsigned:
		return fail(CheckNameSignature, "image is not signed: %s", in.SignatureReason)
	case SignatureInvalid:
		return fail(CheckNameSignature, "no valid signature: %s", in.SignatureReason)
	case SignatureError:
		return indeterminate(CheckNameSignature, "signature could not be verified: %s", in.SignatureReason)
	default:
		return indeterminate(CheckNameSignature, "signature not verified yet")
	}
}

// CheckSBOMAttestation requires that the SBOM was attested (or a signed referrer).
func CheckSBOMAttestation(p Policy, in Input) Outcome {
	if !p.RequireSBOMAttestation {
		return pass(CheckNameSBOMAttestation)
	}
	switch in.SBOMSource {
	case "Attested", "Referrer":
		return pass(CheckNameSBOMAttestation)
	case "":
		return indeterminate(CheckNameSBOMAttestation, "no SBOM obtained yet: %s", in.SBOMReason)
	default:
		return fail(CheckNameSBOMAttestation, "no signed SBOM attestation; SBOM was %s: %s", strings.ToLower(in.SBOMSource), in.SBOMReason)
	}
}

// CheckProvenance requires signed SLSA provenance from an allowed builder.
func CheckProvenance(p Policy, in Input) Outcome {
	if !p.RequireProvenance {
		return pass(CheckNameProvenance)
	}
	if !in.ProvenanceChecked {
		return indeterminate(CheckNameProvenance, "provenance not verified yet: %s", in.ProvenanceReason)
	}
	if in.ProvenanceBuilder == "" {
		return fail(CheckNameProvenance, "no signed SLSA provenance: %s", in.ProvenanceReason)
	}
	if len(p.Authorities) > 0 && !intersects(in.ProvenanceSigners, p.Authorities) {
		return fail(CheckNameProvenance, "provenance is not signed by the policy's authorities %v", p.Authorities)
	}
	if len(p.AllowedBuilderIDs) > 0 && !slices.Contains(p.AllowedBuilderIDs, in.ProvenanceBuilder) {
		return fail(CheckNameProvenance, "builder %q is not in the allowed builders %v", in.ProvenanceBuilder, p.AllowedBuilderIDs)
	}
	return pass(CheckNameProvenance)
}

// CheckBaseImage requires the declared base image to be signed by the policy's authorities.
func CheckBaseImage(p Policy, in Input) Outcome {
	if !p.RequireSignedBase {
		return pass(CheckNameBaseImage)
	}
	if in.BaseName == "" {
		return fail(CheckNameBaseImage, "image declares no base image (org.opencontainers.image.base.name annotation or base.image label)")
	}
	if !in.BaseChecked {
		return indeterminate(CheckNameBaseImage, "base image %s not verified yet: %s", in.BaseName, in.BaseReason)
	}
	if !intersects(in.BaseSigners, p.Authorities) {
		return fail(CheckNameBaseImage, "base image %s is not signed by the policy's authorities: %s", in.BaseName, in.BaseReason)
	}
	return pass(CheckNameBaseImage)
}

// CheckVulnerabilities fails on findings at or above the gate's severity that are not ignored.
func CheckVulnerabilities(p Policy, in Input) Outcome {
	g := p.Vulnerabilities
	if g == nil {
		return pass(CheckNameVulnerabilities)
	}
	if !in.Scanned {
		return indeterminate(CheckNameVulnerabilities, "not scanned yet: %s", in.ScanReason)
	}
	threshold := SeverityRank(g.FailOn)
	if g.FailOn == "" {
		threshold = SeverityRank(severity.Critical)
	}
	var ids []string
	seen := map[string]bool{}
	for _, f := range in.Findings {
		if SeverityRank(f.Severity) < threshold || (g.OnlyFixed && !f.Fixed) || ignored(g.Ignore, f, in.Now) {
			continue
		}
		if !seen[f.ID] {
			seen[f.ID] = true
			ids = append(ids, f.ID)
		}
	}
	if len(ids) == 0 {
		return pass(CheckNameVulnerabilities)
	}
	slices.Sort(ids)
	shown := ids
	if len(shown) > 5 {
		shown = shown[:5]
	}
	more := ""
	if len(ids) > len(shown) {
		more = fmt.Sprintf(" and %d more", len(ids)-len(shown))
	}
	fixed := ""
	if g.OnlyFixed {
		fixed = " fixable"
	}
	return fail(CheckNameVulnerabilities, "%d%s vulnerabilities at or above %s: %s%s",
		len(ids), fixed, orDefault(g.FailOn, severity.Critical), strings.Join(shown, ", "), more)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func ignored(exceptions []Exception, f Finding, now time.Time) bool {
	for _, e := range exceptions {
		if !e.Expires.IsZero() && !now.Before(e.Expires) {
			continue
		}
		if strings.EqualFold(e.ID, f.ID) {
			return true
		}
		for _, a := range f.Aliases {
			if strings.EqualFold(e.ID, a) {
				return true
			}
		}
	}
	return false
}

// MatchImage reports whether image (a repository, optionally with :tag or @digest) matches
// pattern. "*" matches within one path segment, "**" any number of segments; a pattern with
// no tag part matches every tag and digest of the repository.
func MatchImage(pattern, image string) bool {
	repo := StripTagDigest(image)
	if pattern == image || pattern == repo {
		return true
	}
	return globSegments(strings.Split(pattern, "/"), strings.Split(repo, "/")) ||
		globSegments(strings.Split(pattern, "/"), strings.Split(image, "/"))
}

func globSegments(pat, segs []string) bool {
	if len(pat) == 0 {
		return len(segs) == 0
	}
	if pat[0] == "**" {
		for i := 0; i <= len(segs); i++ {
			if globSegments(pat[1:], segs[i:]) {
				return true
			}
		}
		return false
	}
	if len(segs) == 0 {
		return false
	}
	ok, err := path.Match(pat[0], segs[0])
	return err == nil && ok && globSegments(pat[1:], segs[1:])
}

// StripTagDigest removes a trailing :tag and/or @digest from an image reference, keeping a
// registry port.
func StripTagDigest(image string) string {
	if i := strings.Index(image, "@"); i >= 0 {
		image = image[:i]
	}
	slash := strings.LastIndex(image, "/")
	if colon := strings.LastIndex(image, ":"); colon > slash {
		image = image[:colon]
	}
	return image
}
