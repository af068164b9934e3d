// Package scanner is imagetrust's trust pipeline as a library: resolve an image to platform
// digests, verify its signatures and attestations, obtain its SBOM (attested, referrer or
// generated, cached by digest), match the SBOM against the Grype vulnerability DB, and evaluate
// policies over the results.
//
// The package imports no Kubernetes client code: the controllers and the `imagetrust scan` CLI
// both drive it. Each phase is a method so callers can cache and repeat them independently:
// re-verification runs on a policy's schedule, matching runs again whenever the DB changes
// (from the cached SBOM, with no registry traffic), and policy edits only re-run Evaluate.
package scanner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/singleflight"

	"github.com/imagetrust/imagetrust/scanner/internal/redact"
	"github.com/imagetrust/imagetrust/scanner/policy"
	"github.com/imagetrust/imagetrust/scanner/registry"
	"github.com/imagetrust/imagetrust/scanner/sbom"
	"github.com/imagetrust/imagetrust/scanner/severity"
	"github.com/imagetrust/imagetrust/scanner/verify"
	"github.com/imagetrust/imagetrust/scanner/vulndb"
)

// SBOM source names a Policy orders, as in the ImageTrustPolicy API.
const (
	SourceAttestation = "Attestation"
	SourceReferrer    = "Referrer"
	SourceGenerate    = "Generate"
)

// DefaultSBOMSources is the order used when a policy sets none: the most trustworthy first.
var DefaultSBOMSources = []string{SourceAttestation, SourceReferrer, SourceGenerate}

// Policy is a trust policy with everything the pipeline needs: the pure checks (policy.Policy)
// plus the authorities' key material and the SBOM source order.
type Policy struct {
	policy.Policy
	// AuthorityConfigs are the authorities with key material. Their names must be unique
	// across all policies evaluated together; policy.Policy.Authorities lists the same names.
	AuthorityConfigs []verify.Authority
	// SBOMSources orders Attestation, Referrer and Generate.
	SBOMSources []string
	// AllowUnsignedReferrers accepts referrer SBOMs that no authority signed.
	AllowUnsignedReferrers bool
	// Problems are configuration errors a person must fix (a key that does not parse, a
	// missing Secret). A policy with problems still applies, but it cannot be enforced: its
	// verdict is Unknown with the problems as the reason, never Trusted.
	Problems []string
}

// Stalled reports whether a person must fix the policy before it can be enforced.
func (p Policy) Stalled() bool { return len(p.Problems) > 0 }

// Config wires the pipeline's parts.
type Config struct {
	// Registry is the shared registry client (limits, retries, credentials).
	Registry *registry.Client
	// DB is the loaded vulnerability DB. Nil disables matching.
	DB *vulndb.Manager
	// Cache holds SBOMs by image digest. Nil disables caching.
	Cache *sbom.Cache
	// Generator regenerates SBOMs with Syft; nil builds one from Registry's options.
	Generator sbom.Source
	// MaxFindings bounds Assessment.TopFindings; 0 means 50.
	MaxFindings int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Scanner runs the pipeline. It is safe for concurrent use.
type Scanner struct {
	cfg       Config
	generator sbom.Source

	metaMu sync.Mutex
	meta   map[string]imageMeta // by digest: manifests are immutable

	// sbomFlight makes concurrent requests for one digest's SBOM share a single fetch or
	// generation: ten pods starting with the same new image cost one pull.
	sbomFlight singleflight.Group
}

// New builds a Scanner.
func New(cfg Config) (*Scanner, error) {
	if cfg.Registry == nil {
		return nil, errors.New("scanner: a registry client is required")
	}
	if cfg.MaxFindings <= 0 {
		cfg.MaxFindings = 50
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Scanner{cfg: cfg, meta: map[string]imageMeta{}}
	s.generator = cfg.Generator
	if s.generator == nil {
		s.generator = &sbom.Generator{Images: cfg.Registry}
	}
	return s, nil
}

// Image is one platform image: what reports are keyed by.
type Image struct {
	// Repository without tag or digest, e.g. registry.example.com/team/app.
	Repository string `json:"repository"`
	// Tag the image was reached through, if any.
	Tag string `json:"tag,omitempty"`
	// Digest of the platform manifest.
	Digest string `json:"digest"`
	// Platform is os/arch[/variant] when known.
	Platform string `json:"platform,omitempty"`
	// IndexDigest is the multi-arch index the digest was reached through.
	IndexDigest string `json:"indexDigest,omitempty"`
}

// Ref is the image's digest reference.
func (i Image) Ref() (name.Digest, error) {
	return name.NewDigest(i.Repository+"@"+i.Digest, name.WeakValidation)
}

// Resolve turns a reference (tag or digest) into one Image per platform.
func (s *Scanner) Resolve(ctx context.Context, ref string, platforms []string) ([]Image, error) {
	var ps []v1.Platform
	for _, p := range platforms {
		pl, err := v1.ParsePlatform(p)
		if err != nil {
			return nil, fmt.Errorf("platform %q: %w", p, err)
		}
		ps = append(ps, *pl)
	}
	resolved, err := s.cfg.Registry.Resolve(ctx, ref, ps)
	if err != nil {
		return nil, err
	}
	out := make([]Image, 0, len(resolved))
	for _, r := range resolved {
		out = append(out, Image{Repository: r.Repository, Tag: r.Tag, Digest: r.Digest, Platform: r.Platform, IndexDigest: r.IndexDigest})
	}
	return out, nil
}

// Provenance is the verified SLSA provenance of an image.
type Provenance struct {
	// Checked is false when provenance could not be looked at (attestation fetch errored).
	Checked       bool     `json:"checked"`
	PredicateType string   `json:"predicateType,omitempty"`
	BuilderID     string   `json:"builderID,omitempty"`
	Signers       []string `json:"signers,omitempty"`
	Reason        string   `json:"reason,omitempty"`
}

// BaseImage is the declared base image and its signature check.
type BaseImage struct {
	Name    string   `json:"name,omitempty"`
	Digest  string   `json:"digest,omitempty"`
	Checked bool     `json:"checked"`
	Signers []string `json:"signers,omitempty"`
	Reason  string   `json:"reason,omitempty"`
}

// Verification is everything that depends on the authorities: it is redone on a policy's
// schedule because signatures get removed and keys rotated.
type Verification struct {
	// Signature is the image signature result; State "NotRequired" when no policy asks for
	// signatures and none has authorities.
	Signature verify.SignatureResult `json:"signature"`
	// Provenance is the SLSA provenance result.
	Provenance Provenance `json:"provenance"`
	// Base is the declared base image.
	Base BaseImage `json:"base"`
	// CheckedAt is when the verification ran.
	CheckedAt time.Time `json:"checkedAt"`
	// SBOMAttestationError says why a verified SBOM attestation could not be used (its
	// predicate does not parse as an SBOM): someone publishes broken SBOMs under a trusted key.
	SBOMAttestationError string `json:"sbomAttestationError,omitempty"`
	// attestedSBOM is an SBOM from a verified attestation, handed to the SBOM phase.
	attestedSBOM *sbom.SBOM
	// attestationsReason says why no SBOM came from the attestations (none, or not fetched).
	attestationsReason string
}

// NotRequired is the signature state when nothing asks for a signature.
const NotRequired verify.State = "NotRequired"

// authorities returns the union of the policies' authorities.
func authorities(pols []Policy) []verify.Authority {
	var out []verify.Authority
	seen := map[string]bool{}
	for _, p := range pols {
		for _, a := range p.AuthorityConfigs {
			if !seen[a.Name] {
				seen[a.Name] = true
				out = append(out, a)
			}
		}
	}
	return out
}

// Verify checks signatures, attestations (SBOM and SLSA provenance) and the base image's
// signature against the union of the policies' authorities.
func (s *Scanner) Verify(ctx context.Context, img Image, pols []Policy) Verification {
	v := Verification{CheckedAt: s.cfg.Now()}
	auths := authorities(pols)
	ref, err := img.Ref()
	if err != nil {
		v.Signature = verify.SignatureResult{State: verify.Error, Reason: err.Error()}
		return v
	}
	if len(auths) == 0 {
		v.Signature = verify.SignatureResult{State: NotRequired, Reason: "no policy with authorities applies to this image"}
		v.Provenance.Reason = "no authorities to verify provenance with"
		v.attestationsReason = "no authorities to verify attestations with"
	} else {
		// One referrers listing serves signatures and attestations in every format.
		sig, att := s.verifier(ctx).VerifyImage(ctx, ref, auths)
		v.Signature = sig
		v.Provenance, v.attestedSBOM, v.SBOMAttestationError, v.attestationsReason = s.readAttestations(img, att)
	}
	v.Base = s.verifyBase(ctx, ref, auths)
	return v
}

// readAttestations takes the provenance and the SBOM from verified attestations; broken says
// why a verified SBOM attestation could not be used (its signer published a broken SBOM).
func (s *Scanner) readAttestations(img Image, att verify.AttestationResult) (prov Provenance, attested *sbom.SBOM, broken, reason string) {
	prov = Provenance{Checked: att.State != verify.Error, Reason: att.Reason}
	for _, a := range att.Attestations {
		if p, ok := verify.ProvenanceFromAttestation(a); ok {
			if prov.BuilderID == "" {
				prov.PredicateType, prov.BuilderID, prov.Reason = p.PredicateType, p.BuilderID, ""
			}
			if p.BuilderID == prov.BuilderID && !slices.Contains(prov.Signers, a.Signer.Authority) {
				prov.Signers = append(prov.Signers, a.Signer.Authority)
			}
			continue
		}
		if attested != nil || !verify.IsSBOMPredicate(a.PredicateType) {
			continue
		}
		doc, err := s.attestedSBOM(img, a)
		if err != nil {
			if broken == "" {
				broken = redact.Text(fmt.Sprintf("the SBOM attestation (%s) signed by %s could not be parsed: %v", a.PredicateType, a.Signer.Authority, err))
			}
			continue
		}
		attested = doc
	}
	if prov.Checked && prov.BuilderID == "" && prov.Reason == "" {
		prov.Reason = "no SLSA provenance attestation among the verified attestations"
	}
	reason = att.Reason
	switch {
	case attested != nil:
	case broken != "":
		reason = broken
	case reason == "":
		reason = "no SBOM attestation among the verified attestations"
	}
	return prov, attested, broken, reason
}

// attestedSBOM is the SBOM document of a verified SBOM attestation, validated.
func (s *Scanner) attestedSBOM(img Image, a verify.Attestation) (*sbom.SBOM, error) {
	_, doc, ok := verify.SBOMFromAttestation(a)
	if !ok {
		return nil, errors.New("the predicate is not an SBOM document")
	}
	format, n, err := sbom.Detect(doc)
	if err != nil {
		return nil, err
	}
	return &sbom.SBOM{
		Source: sbom.SourceAttested, Format: format, Document: doc, Packages: n,
		Digest: sbom.DocumentDigest(doc), ImageDigest: img.Digest, CreatedAt: s.cfg.Now(),
		Note: "verified in-toto attestation signed by " + a.Signer.Authority,
	}, nil
}

// SBOMResult is the SBOM phase's outcome.
type SBOMResult struct {
	SBOM *sbom.SBOM
	// Reason explains a fallback or failure.
	Reason string
}

// SBOM returns the image's SBOM: from the cache when present (and no better source is already
// at hand), else from the first source in the policies' order that yields a trusted one.
func (s *Scanner) SBOM(ctx context.Context, img Image, pols []Policy, v Verification) (SBOMResult, error) {
	key := img.Digest
	if v.attestedSBOM != nil {
		key += "+attested"
	}
	res, err, _ := s.sbomFlight.Do(key, func() (any, error) {
		return s.sbom(ctx, img, pols, v)
	})
	return res.(SBOMResult), err
}

func (s *Scanner) sbom(ctx context.Context, img Image, pols []Policy, v Verification) (SBOMResult, error) {
	ref, err := img.Ref()
	if err != nil {
		return SBOMResult{Reason: err.Error()}, err
	}
	var src sbom.Source = s.sources(pols, v)
	if s.cfg.Cache != nil {
		src = sbom.CachedSource{Cache: s.cfg.Cache, Next: src, Accept: func(cached *sbom.SBOM) bool {
			// a verified attestation at hand beats a cached SBOM from a weaker source
			return cached.Source == sbom.SourceAttested || v.attestedSBOM == nil
		}}
	}
	doc, err := src.Fetch(ctx, ref)
	if err != nil {
		err = redactErr(err)
		return SBOMResult{Reason: err.Error()}, err
	}
	return SBOMResult{SBOM: doc, Reason: redact.Text(doc.Note)}, nil
}

// sources is the chain of SBOM sources in the order of the first policy (the default order
// when there is none).
func (s *Scanner) sources(pols []Policy, v Verification) sbom.Chain {
	order := DefaultSBOMSources
	allowUnsigned := false
	if len(pols) > 0 {
		if len(pols[0].SBOMSources) > 0 {
			order = pols[0].SBOMSources
		}
		allowUnsigned = pols[0].AllowUnsignedReferrers
	}
	auths := authorities(pols)
	var chain sbom.Chain
	for _, src := range order {
		switch src {
		case SourceAttestation:
			chain.Sources = append(chain.Sources, attestedSource{sbom: v.attestedSBOM, reason: v.attestationsReason})
		case SourceReferrer:
			chain.Sources = append(chain.Sources, &sbom.ReferrerSource{
				RemoteOptions: s.cfg.Registry.RemoteOptions(context.Background()),
				Lister:        s.cfg.Registry.Referrers,
				AllowUnsigned: allowUnsigned,
				Trust: func(ctx context.Context, artifact name.Digest) error {
					if len(auths) == 0 {
						return errors.New("no authorities to verify the referrer's signature with")
					}
					r := s.verifier(ctx).VerifyDigestSignature(ctx, artifact, auths)
					if r.State != verify.Verified {
						return fmt.Errorf("signature %s: %s", strings.ToLower(string(r.State)), r.Reason)
					}
					return nil
				},
			})
		case SourceGenerate:
			chain.Sources = append(chain.Sources, s.generator)
		}
	}
	return chain
}

type attestedSource struct {
	sbom   *sbom.SBOM
	reason string
}

func (a attestedSource) Name() string { return "attestation" }

func (a attestedSource) Fetch(context.Context, name.Digest) (*sbom.SBOM, error) {
	if a.sbom == nil {
		return nil, fmt.Errorf("%w: %s", sbom.ErrNotFound, a.reason)
	}
	return a.sbom, nil
}

// Summary counts findings by severity.
type Summary struct {
	Critical   int `json:"critical"`
	High       int `json:"high"`
	Medium     int `json:"medium"`
	Low        int `json:"low"`
	Negligible int `json:"negligible"`
	Unknown    int `json:"unknown"`
	Fixable    int `json:"fixable"`
}

// Count is the number of findings of one severity.
func (s Summary) Count(sev string) int {
	switch severity.Normalize(sev) {
	case severity.Critical:
		return s.Critical
	case severity.High:
		return s.High
	case severity.Medium:
		return s.Medium
	case severity.Low:
		return s.Low
	case severity.Negligible:
		return s.Negligible
	}
	return s.Unknown
}

// Total is the number of findings.
func (s Summary) Total() int {
	return s.Critical + s.High + s.Medium + s.Low + s.Negligible + s.Unknown
}

// Summarize counts findings by severity and fixability.
func Summarize(findings []vulndb.Finding) Summary {
	var s Summary
	for _, f := range findings {
		switch severity.Normalize(f.Severity) {
		case severity.Critical:
			s.Critical++
		case severity.High:
			s.High++
		case severity.Medium:
			s.Medium++
		case severity.Low:
			s.Low++
		case severity.Negligible:
			s.Negligible++
		default:
			s.Unknown++
		}
		if len(f.FixedVersions) > 0 {
			s.Fixable++
		}
	}
	return s
}

// Scan is the matching phase's outcome.
type Scan struct {
	Findings  []vulndb.Finding `json:"findings"`
	Summary   Summary          `json:"summary"`
	DB        vulndb.Status    `json:"db"`
	Packages  int              `json:"packages"`
	ScannedAt time.Time        `json:"scannedAt"`
}

// Match matches an SBOM against the loaded DB. It never touches a registry.
func (s *Scanner) Match(ctx context.Context, doc *sbom.SBOM) (*Scan, error) {
	if s.cfg.DB == nil {
		return nil, errors.New("no vulnerability DB configured")
	}
	res, err := s.cfg.DB.Match(ctx, doc.Document)
	if err != nil {
		return nil, redactErr(err)
	}
	return newScan(res, s.cfg.Now()), nil
}

// newScan is the Scan of one DB match result.
func newScan(r *vulndb.MatchResult, at time.Time) *Scan {
	return &Scan{Findings: r.Findings, Summary: Summarize(r.Findings), DB: r.DB, Packages: r.Packages, ScannedAt: at}
}

// redactErr is err with a redacted message, the original kept for errors.Is/As.
func redactErr(err error) error { return redact.Error(err) }

// Assessment is the full result for one platform image.
type Assessment struct {
	Image        Image           `json:"image"`
	Verification Verification    `json:"verification"`
	SBOM         *sbom.SBOM      `json:"sbom,omitempty"`
	SBOMReason   string          `json:"sbomReason,omitempty"`
	Scan         *Scan           `json:"scan,omitempty"`
	ScanReason   string          `json:"scanReason,omitempty"`
	Verdict      policy.Combined `json:"verdict"`
}

// Assess runs every phase for one platform image and evaluates the policies. Phase failures
// are recorded in the assessment (and make the verdict Unknown or Untrusted); only a context
// cancellation returns an error.
func (s *Scanner) Assess(ctx context.Context, img Image, pols []Policy) (*Assessment, error) {
	a := &Assessment{Image: img}
	a.Verification = s.Verify(ctx, img, pols)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sr, err := s.SBOM(ctx, img, pols, a.Verification)
	a.SBOM, a.SBOMReason = sr.SBOM, sr.Reason
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		a.ScanReason = "no SBOM: " + err.Error()
	} else {
		scan, err := s.Match(ctx, sr.SBOM)
		if err != nil {
			a.ScanReason = err.Error()
		}
		a.Scan = scan
	}
	a.Verdict = Evaluate(pols, a, s.cfg.Now())
	return a, nil
}

// Evaluate applies the policies to an assessment's observations. It is pure: callers re-run
// it when policies change without repeating any registry or DB work. A stalled policy is
// Unknown with its problems as the reason, so an image never looks Trusted because its
// policy's key could not be read. Results are in policy name order.
func Evaluate(pols []Policy, a *Assessment, now time.Time) policy.Combined {
	var healthy []policy.Policy
	for _, p := range pols {
		if !p.Stalled() {
			healthy = append(healthy, p.Policy)
		}
	}
	c := policy.EvaluateAll(healthy, Input(a, now))
	for _, p := range pols {
		if !p.Stalled() {
			continue
		}
		r := policy.Result{Policy: p.Name, Verdict: policy.Unknown}
		for _, msg := range p.Problems {
			r.Failures = append(r.Failures, policy.Outcome{Check: CheckPolicy, Indeterminate: true, Message: "policy cannot be enforced: " + msg})
		}
		c.Results = append(c.Results, r)
		c.Policies = append(c.Policies, p.Name)
		if c.Verdict == policy.Trusted {
			c.Verdict = policy.Unknown
		}
	}
	slices.Sort(c.Policies)
	slices.SortStableFunc(c.Results, func(x, y policy.Result) int { return strings.Compare(x.Policy, y.Policy) })
	return c
}

// CheckPolicy is the check name of a stalled policy's problems in results.
const CheckPolicy = "policy"

// Input converts an assessment into the pure policy input.
func Input(a *Assessment, now time.Time) policy.Input {
	v := a.Verification
	in := policy.Input{
		Image:             a.Image.Repository,
		SignatureState:    string(v.Signature.State),
		SignatureReason:   v.Signature.Reason,
		ProvenanceChecked: v.Provenance.Checked,
		ProvenanceBuilder: v.Provenance.BuilderID,
		ProvenanceSigners: v.Provenance.Signers,
		ProvenanceReason:  v.Provenance.Reason,
		BaseName:          v.Base.Name,
		BaseChecked:       v.Base.Checked,
		BaseSigners:       v.Base.Signers,
		BaseReason:        v.Base.Reason,
		SBOMReason:        a.SBOMReason,
		ScanReason:        a.ScanReason,
		Now:               now,
	}
	for _, sg := range v.Signature.Signers {
		in.Signers = append(in.Signers, sg.Authority)
	}
	if a.SBOM != nil {
		in.SBOMSource = a.SBOM.Source
	}
	if a.Scan != nil {
		in.Scanned = true
		for _, f := range a.Scan.Findings {
			in.Findings = append(in.Findings, policy.Finding{
				ID: f.ID, Aliases: f.Aliases, Package: f.Package, Severity: f.Severity, Fixed: len(f.FixedVersions) > 0,
			})
		}
	}
	return in
}

// TopFindings returns at most n findings in vulndb's order: most severe first, then fixable
// first, then by id and package.
func TopFindings(findings []vulndb.Finding, n int) []vulndb.Finding {
	out := slices.Clone(findings)
	vulndb.SortFindings(out)
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// verifier is a Verifier over the registry client's current options, built per call so that
// the connections it reuses are the client's current ones (renewed every few minutes).
func (s *Scanner) verifier(ctx context.Context) *verify.Verifier {
	// one referrers listing per image, shared with the SBOM referrer source
	return &verify.Verifier{RegistryOptions: s.cfg.Registry.RemoteOptions(ctx), Referrers: s.cfg.Registry.Referrers}
}
