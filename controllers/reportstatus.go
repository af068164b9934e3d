package controllers

// Report status: the pure builders that turn an assessment, as one namespace judges it, into a
// report's spec, status, conditions and content hash. Formatting only: every decision was made
// by the scanner (scanner.Judge) or by the pass.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner"
)

// The API's bounds on a report's strings and lists (api/v1alpha1 imagetrustreport_types.go).
const (
	maxImageLen          = 512
	maxTagLen            = 128
	maxContainers        = 8
	maxScans             = 16
	maxReasonLen         = 1024
	maxFormatLen         = 32
	maxPredicateTypeLen  = 128
	maxBuilderIDLen      = 512
	maxDigestLen         = 71
	maxFindingIDLen      = 128
	maxPackageLen        = 256
	maxVersionLen        = 128
	maxPackageTypeLen    = 32
	maxPolicies          = 16
	maxFailedChecks      = 16
	maxSigners           = 8
	maxAuthorityLen      = 63
	maxFingerprintLen    = 100
	maxIdentityLen       = 512
	maxTimeProofLen      = 256
	maxSchemaLen         = 32
	maxConditionMsgLen   = 32768
	maxPolicyNameInCheck = 253
	maxLocations         = 1_000_000
)

// reportInput is everything one report is built from: the namespace's view of the image, the
// image's assessment and the policies that apply in the namespace.
type reportInput struct {
	key  reportKey
	view nsView
	// assessment is the image's assessment, its Image named by the namespace's repository.
	assessment *scanner.Assessment
	// policies apply to the image in the namespace, by name; generations are their
	// metadata.generation, which each per-policy verdict records for admission.
	policies    []scanner.Policy
	generations map[string]int64
	now         time.Time
	scannedAt   time.Time
	// dbWait and problems are the assessment's typed errors (see assessment).
	dbWait, problems error
}

// reportInputs are the inputs of the reports of every namespace of the scope.
func reportInputs(s *imageScope, a *assessment, now time.Time) []*reportInput {
	if a.verification == nil {
		return nil
	}
	out := make([]*reportInput, 0, len(s.namespaces))
	for _, ns := range s.namespaces {
		img := s.image
		img.Repository, img.Tag = ns.view.repo, ""
		gens := make(map[string]int64, len(ns.policies))
		for _, p := range ns.policies {
			gens[p.Name] = p.Generation
		}
		out = append(out, &reportInput{
			key: reportKey{ns.namespace, s.key.Repository, s.key.Digest}, view: ns.view, generations: gens,
			assessment: &scanner.Assessment{Image: img, Verification: *a.verification, SBOM: a.sbom, SBOMReason: a.sbomReason,
				Scan: a.scan, ScanReason: a.scanReason},
			policies: scannerPolicies(ns.policies), now: now,
			scannedAt: a.scannedAt, dbWait: a.dbWait, problems: a.problems,
		})
	}
	return out
}

func trunc(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - 3
	for cut > 0 && (s[cut]&0xC0) == 0x80 { // do not split a UTF-8 sequence
		cut--
	}
	return s[:cut] + "..."
}

func metaTime(t time.Time) *metav1.Time {
	if t.IsZero() {
		return nil
	}
	mt := metav1.NewTime(t.UTC().Truncate(time.Second))
	return &mt
}

// buildSpec is the report's spec: what image, and where it was seen.
func buildSpec(in *reportInput) securityv1alpha1.ImageTrustReportSpec {
	img := in.assessment.Image
	spec := securityv1alpha1.ImageTrustReportSpec{
		Image: trunc(in.view.repo, maxImageLen), Digest: img.Digest, ShortDigest: shortDigest(img.Digest),
		Platform: img.Platform, IndexDigest: img.IndexDigest, WorkloadCount: int32(in.view.total),
	}
	for _, t := range firstN(in.view.tags, securityv1alpha1.MaxReportTags) {
		spec.Tags = append(spec.Tags, trunc(t, maxTagLen))
	}
	for _, w := range firstN(in.view.workloads, securityv1alpha1.MaxReportWorkloads) {
		spec.Workloads = append(spec.Workloads, securityv1alpha1.WorkloadReference{
			Kind: w.Kind, Name: w.Name, Containers: firstN(w.containers, maxContainers)})
	}
	spec.RegistryScans = firstN(in.view.scans, maxScans)
	return spec
}

func firstN[T any](xs []T, n int) []T {
	if len(xs) > n {
		xs = xs[:n]
	}
	return append([]T(nil), xs...)
}

// buildStatus is the report's status without conditions and hash: the assessment as the
// namespace's policies judge it (scanner.Judge), formatted.
func buildStatus(in *reportInput, maxFindings int) securityv1alpha1.ImageTrustReportStatus {
	a, j := in.assessment, scanner.Judge(in.policies, in.assessment, in.now)
	st := securityv1alpha1.ImageTrustReportStatus{
		Signature: signatureStatus(j.Signature, a.Verification.CheckedAt),
		SBOM:      sbomStatus(a.SBOM, a.SBOMReason, a.Verification.SBOMAttestationError),
		Policy:    policyResult(j.Verdict, in.generations),
	}
	if p := j.Provenance; p != nil {
		st.Provenance = &securityv1alpha1.ProvenanceStatus{Verified: p.Verified, PredicateType: trunc(p.PredicateType, maxPredicateTypeLen),
			BuilderID: trunc(p.BuilderID, maxBuilderIDLen), Reason: trunc(p.Reason, maxReasonLen)}
	}
	if b := j.Base; b != nil {
		st.BaseImage = &securityv1alpha1.BaseImageStatus{Name: trunc(b.Name, maxImageLen), Digest: trunc(b.Digest, maxDigestLen),
			Signed: b.Signed, Reason: trunc(b.Reason, maxReasonLen)}
	}
	if s := a.Scan; s != nil {
		st.Vulnerabilities = vulnerabilitySummary(s, in.scannedAt)
		st.TopFindings = topFindings(s.Findings, min(maxFindings, securityv1alpha1.MaxReportFindings))
	}
	return st
}

// signatureStatus is the signature result as one namespace's policies see it.
func signatureStatus(sig scanner.SignatureResult, checkedAt time.Time) *securityv1alpha1.SignatureStatus {
	ss := &securityv1alpha1.SignatureStatus{State: securityv1alpha1.SignatureState(sig.State), Reason: trunc(sig.Reason, maxReasonLen),
		CheckedAt: metaTime(checkedAt)}
	seen := map[string]bool{}
	for _, sg := range sig.Signers {
		// One entry per signer and format: the same key in the legacy layout and in a bundle
		// are two signatures, each shown with its own time proof.
		k := sg.Authority + "|" + sg.KeyFingerprint + "|" + sg.CertificateFingerprint + "|" + string(sg.Format)
		if seen[k] || len(ss.Signers) == maxSigners {
			continue
		}
		seen[k] = true
		ss.Signers = append(ss.Signers, securityv1alpha1.SignerIdentity{
			Authority: trunc(sg.Authority, maxAuthorityLen), KeyFingerprint: trunc(sg.KeyFingerprint, maxFingerprintLen),
			Subject: trunc(sg.Subject, maxIdentityLen), Issuer: trunc(sg.Issuer, maxIdentityLen),
			Format: signatureFormat(sg.Format), TimeProof: trunc(sg.TimeProof, maxTimeProofLen),
			CertificateSubject: trunc(sg.CertificateSubject, maxIdentityLen), CertificateFingerprint: trunc(sg.CertificateFingerprint, maxFingerprintLen),
		})
	}
	return ss
}

// signatureFormat names the scanner's signature format in the API's words; a format the API
// does not know is left out rather than failing the whole status write.
func signatureFormat(f scanner.SignatureFormat) securityv1alpha1.SignatureFormat {
	switch f {
	case scanner.FormatCosignLegacy:
		return securityv1alpha1.SignatureFormatCosignLegacy
	case scanner.FormatSigstoreBundle:
		return securityv1alpha1.SignatureFormatSigstoreBundle
	case scanner.FormatNotation:
		return securityv1alpha1.SignatureFormatNotation
	}
	return ""
}

func sbomStatus(s *scanner.SBOM, reason, attestationErr string) *securityv1alpha1.SBOMStatus {
	st := &securityv1alpha1.SBOMStatus{Source: securityv1alpha1.SBOMNone, Reason: trunc(reason, maxReasonLen),
		AttestationError: trunc(attestationErr, maxReasonLen)}
	if s != nil {
		st.Source, st.Format, st.Packages, st.Digest = securityv1alpha1.SBOMSource(s.Source), trunc(s.Format, maxFormatLen), int32(s.Packages), s.Digest
	}
	return st
}

func vulnerabilitySummary(s *scanner.Scan, scannedAt time.Time) *securityv1alpha1.VulnerabilitySummary {
	sum := s.Summary
	vs := &securityv1alpha1.VulnerabilitySummary{
		Critical: int32(sum.Critical), High: int32(sum.High), Medium: int32(sum.Medium), Low: int32(sum.Low),
		Negligible: int32(sum.Negligible), Unknown: int32(sum.Unknown), Fixable: int32(sum.Fixable),
		DBSchema: trunc(s.DB.SchemaVersion, maxSchemaLen), DBBuilt: metaTime(s.DB.Built), ScannedAt: metaTime(scannedAt),
	}
	return vs
}

func topFindings(findings []scanner.Finding, n int) []securityv1alpha1.Finding {
	var out []securityv1alpha1.Finding
	for _, f := range scanner.TopFindings(findings, n) {
		fixed := ""
		if len(f.FixedVersions) > 0 {
			fixed = f.FixedVersions[0]
		}
		out = append(out, securityv1alpha1.Finding{
			ID: trunc(f.ID, maxFindingIDLen), Severity: securityv1alpha1.Severity(scanner.NormalizeSeverity(f.Severity)),
			Package: trunc(f.Package, maxPackageLen), InstalledVersion: trunc(f.Version, maxVersionLen),
			FixedVersion: trunc(fixed, maxVersionLen), Type: trunc(f.Type, maxPackageTypeLen),
			Locations: int32(min(len(f.Locations), maxLocations)),
		})
	}
	return out
}

// policyResult is the combined verdict, each policy's own verdict (for admission, which
// decides per policy from any namespace's report) and the failed checks.
func policyResult(c scanner.Combined, generations map[string]int64) *securityv1alpha1.PolicyResult {
	pr := &securityv1alpha1.PolicyResult{Verdict: securityv1alpha1.Verdict(c.Verdict), Policies: firstN(c.Policies, maxPolicies)}
	for _, r := range firstN(c.Results, maxPolicies) {
		pr.Results = append(pr.Results, securityv1alpha1.PolicyVerdict{Policy: trunc(r.Policy, maxPolicyNameInCheck),
			Verdict: securityv1alpha1.Verdict(r.Verdict), ObservedGeneration: generations[r.Policy]})
	}
	for _, r := range c.Results {
		for _, f := range r.Failures {
			if len(pr.FailedChecks) == maxFailedChecks {
				break
			}
			pr.FailedChecks = append(pr.FailedChecks, securityv1alpha1.FailedCheck{
				Policy: trunc(r.Policy, maxPolicyNameInCheck), Check: f.Check, Message: trunc(f.Message, maxReasonLen)})
		}
	}
	return pr
}

// contentHash fingerprints a report without its timestamps: the report is written only when
// this changes (or the timestamps are older than the refresh interval).
func contentHash(spec securityv1alpha1.ImageTrustReportSpec, owners []metav1.OwnerReference, st securityv1alpha1.ImageTrustReportStatus) string {
	st = *st.DeepCopy()
	st.ObservedGeneration = 0
	st.ContentHash = ""
	if st.Signature != nil {
		st.Signature.CheckedAt = nil
	}
	if st.Vulnerabilities != nil {
		st.Vulnerabilities.ScannedAt = nil
	}
	for i := range st.Conditions {
		st.Conditions[i].LastTransitionTime = metav1.Time{}
		st.Conditions[i].ObservedGeneration = 0
	}
	var ownerNames []string
	for _, o := range owners {
		ownerNames = append(ownerNames, o.Kind+"/"+o.Name+"/"+string(o.UID))
	}
	b, _ := json.Marshal(struct {
		Spec   securityv1alpha1.ImageTrustReportSpec
		Owners []string
		Status securityv1alpha1.ImageTrustReportStatus
	}{spec, ownerNames, st})
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// timestampsStale reports whether the stored timestamps lag the desired ones by more than
// the refresh interval: timestamps alone never cause a write more often than that.
func timestampsStale(old, desired *securityv1alpha1.ImageTrustReportStatus, refresh time.Duration) bool {
	lag := func(o, d *metav1.Time) bool {
		if d == nil {
			return false
		}
		if o == nil {
			return true
		}
		return d.Sub(o.Time) >= refresh
	}
	if old.Signature != nil && desired.Signature != nil && lag(old.Signature.CheckedAt, desired.Signature.CheckedAt) {
		return true
	}
	if old.Vulnerabilities != nil && desired.Vulnerabilities != nil && lag(old.Vulnerabilities.ScannedAt, desired.Vulnerabilities.ScannedAt) {
		return true
	}
	return false
}
