package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner"
	"github.com/imagetrust/imagetrust/scanner/policy"
	"github.com/imagetrust/imagetrust/scanner/registry"
	"github.com/imagetrust/imagetrust/scanner/verify"
)

// Labels and field indexes on reports.
const (
	// LabelManagedBy marks reports written by imagetrust.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is LabelManagedBy's value.
	ManagedByValue = "imagetrust"
	// indexReportDigest indexes reports by spec.digest.
	indexReportDigest = "spec.digest"
	// indexReportScan indexes reports by the RegistryScans in spec.registryScans.
	indexReportScan = "spec.registryScans"
)

// reportInput is everything one report is built from: the namespace's view of the digest and
// the Engine's results. It is computed under the Engine's lock and used without it.
type reportInput struct {
	key             reportKey
	view            nsView
	assessment      *scanner.Assessment
	verdict         policy.Combined
	authorities     []string // authority names of the policies applying in this namespace
	stalledPolicies []string
	scannedAt       time.Time
	dbProblem       string
	retry           string
	stalled         string
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

// buildSpec is the report's spec: what image, and where it was seen.
func buildSpec(in *reportInput) securityv1alpha1.ImageTrustReportSpec {
	img := in.assessment.Image
	spec := securityv1alpha1.ImageTrustReportSpec{
		Image:       trunc(in.view.repo, 512),
		Digest:      img.Digest,
		ShortDigest: shortDigest(img.Digest),
		Platform:    img.Platform,
		IndexDigest: img.IndexDigest,
	}
	for _, t := range in.view.tags {
		if len(spec.Tags) == securityv1alpha1.MaxReportTags {
			break
		}
		spec.Tags = append(spec.Tags, trunc(t, 128))
	}
	for _, w := range in.view.workloads {
		if len(spec.Workloads) == securityv1alpha1.MaxReportWorkloads {
			break
		}
		ref := securityv1alpha1.WorkloadReference{Kind: w.Kind, Name: w.Name}
		for _, c := range w.containers {
			if len(ref.Containers) == 8 {
				break
			}
			ref.Containers = append(ref.Containers, c)
		}
		spec.Workloads = append(spec.Workloads, ref)
	}
	spec.WorkloadCount = int32(in.view.total)
	for _, s := range in.view.scans {
		if len(spec.RegistryScans) == 16 {
			break
		}
		spec.RegistryScans = append(spec.RegistryScans, s)
	}
	return spec
}

var severityOf = map[string]securityv1alpha1.Severity{
	"Critical": securityv1alpha1.SeverityCritical, "High": securityv1alpha1.SeverityHigh,
	"Medium": securityv1alpha1.SeverityMedium, "Low": securityv1alpha1.SeverityLow,
	"Negligible": securityv1alpha1.SeverityNegligible,
}

// buildStatus is the report's status without conditions and hash.
func buildStatus(in *reportInput, maxFindings int) securityv1alpha1.ImageTrustReportStatus {
	a := in.assessment
	var st securityv1alpha1.ImageTrustReportStatus
	st.Signature = signatureStatus(a.Verification, in.authorities)

	if a.SBOM != nil {
		st.SBOM = &securityv1alpha1.SBOMStatus{
			Source:   securityv1alpha1.SBOMSource(a.SBOM.Source),
			Format:   trunc(a.SBOM.Format, 32),
			Packages: int32(a.SBOM.Packages),
			Digest:   a.SBOM.Digest,
			Reason:   trunc(registry.SanitizeText(a.SBOMReason), 1024),
		}
	} else {
		st.SBOM = &securityv1alpha1.SBOMStatus{Source: securityv1alpha1.SBOMNone, Reason: trunc(registry.SanitizeText(a.SBOMReason), 1024)}
	}

	if len(in.authorities) > 0 {
		p := a.Verification.Provenance
		prov := &securityv1alpha1.ProvenanceStatus{Reason: trunc(p.Reason, 1024)}
		if p.BuilderID != "" && anyIn(p.Signers, in.authorities) {
			prov.Verified = true
			prov.PredicateType = trunc(p.PredicateType, 128)
			prov.BuilderID = trunc(p.BuilderID, 512)
			prov.Reason = ""
		} else if p.BuilderID != "" {
			prov.Reason = "provenance is signed by none of the authorities of the policies that apply here"
		}
		st.Provenance = prov
	}

	if b := a.Verification.Base; b.Name != "" {
		bs := &securityv1alpha1.BaseImageStatus{Name: trunc(b.Name, 512), Digest: trunc(b.Digest, 71)}
		bs.Signed = anyIn(b.Signers, in.authorities)
		if !bs.Signed {
			bs.Reason = trunc(registry.SanitizeText(b.Reason), 1024)
			if bs.Reason == "" && len(b.Signers) > 0 {
				bs.Reason = "base image is signed by none of the authorities of the policies that apply here"
			}
		}
		st.BaseImage = bs
	}

	if s := a.Scan; s != nil {
		sum := s.Summary
		vs := &securityv1alpha1.VulnerabilitySummary{
			Critical: int32(sum.Critical), High: int32(sum.High), Medium: int32(sum.Medium),
			Low: int32(sum.Low), Negligible: int32(sum.Negligible), Unknown: int32(sum.Unknown),
			Fixable: int32(sum.Fixable), DBSchema: trunc(s.DB.SchemaVersion, 32),
		}
		if !s.DB.Built.IsZero() {
			t := metav1.NewTime(s.DB.Built.UTC().Truncate(time.Second))
			vs.DBBuilt = &t
		}
		if !in.scannedAt.IsZero() {
			t := metav1.NewTime(in.scannedAt.UTC().Truncate(time.Second))
			vs.ScannedAt = &t
		}
		st.Vulnerabilities = vs
		if maxFindings > securityv1alpha1.MaxReportFindings {
			maxFindings = securityv1alpha1.MaxReportFindings
		}
		for _, f := range scanner.TopFindings(s.Findings, maxFindings) {
			sev, ok := severityOf[f.Severity]
			if !ok {
				sev = securityv1alpha1.SeverityUnknown
			}
			fixed := ""
			if len(f.FixedVersions) > 0 {
				fixed = f.FixedVersions[0]
			}
			st.TopFindings = append(st.TopFindings, securityv1alpha1.Finding{
				ID: trunc(f.ID, 128), Severity: sev, Package: trunc(f.Package, 256),
				InstalledVersion: trunc(f.Version, 128), FixedVersion: trunc(fixed, 128), Type: trunc(f.Type, 32),
			})
		}
	}

	pr := &securityv1alpha1.PolicyResult{Verdict: securityv1alpha1.Verdict(in.verdict.Verdict)}
	for _, p := range in.verdict.Policies {
		if len(pr.Policies) < 16 {
			pr.Policies = append(pr.Policies, p)
		}
	}
	for _, r := range in.verdict.Results {
		for _, f := range r.Failures {
			if len(pr.FailedChecks) == 16 {
				break
			}
			pr.FailedChecks = append(pr.FailedChecks, securityv1alpha1.FailedCheck{
				Policy: r.Policy, Check: f.Check, Message: trunc(registry.SanitizeText(f.Message), 1024),
			})
		}
	}
	st.Policy = pr
	return st
}

func anyIn(xs, set []string) bool {
	for _, x := range xs {
		for _, s := range set {
			if x == s {
				return true
			}
		}
	}
	return false
}

// signatureStatus is the signature result as seen from one namespace. Verification ran once
// against the authorities of every namespace's policies; here only the signers this
// namespace's policies trust count, and without such policies a signature is NotRequired.
func signatureStatus(v scanner.Verification, authorities []string) *securityv1alpha1.SignatureStatus {
	ss := &securityv1alpha1.SignatureStatus{}
	if !v.CheckedAt.IsZero() {
		t := metav1.NewTime(v.CheckedAt.UTC().Truncate(time.Second))
		ss.CheckedAt = &t
	}
	if len(authorities) == 0 {
		ss.State = securityv1alpha1.SignatureNotRequired
		ss.Reason = "no policy with authorities applies to this image in this namespace"
		return ss
	}
	ss.State = securityv1alpha1.SignatureState(v.Signature.State)
	ss.Reason = trunc(registry.SanitizeText(v.Signature.Reason), 1024)
	seen := map[string]bool{}
	for _, sg := range v.Signature.Signers {
		if !anyIn([]string{sg.Authority}, authorities) {
			continue
		}
		k := sg.Authority + "|" + sg.KeyFingerprint
		if seen[k] || len(ss.Signers) == 8 {
			continue
		}
		seen[k] = true
		ss.Signers = append(ss.Signers, securityv1alpha1.SignerIdentity{
			Authority: trunc(sg.Authority, 63), KeyFingerprint: trunc(sg.KeyFingerprint, 100),
			Subject: trunc(sg.Subject, 512), Issuer: trunc(sg.Issuer, 512),
		})
	}
	if v.Signature.State == verify.Verified && len(ss.Signers) == 0 {
		ss.State = securityv1alpha1.SignatureInvalid
		ss.Reason = "signed, but by none of the authorities of the policies that apply in this namespace"
	}
	return ss
}

// observation is the observed state a report's conditions are derived from.
type observation struct {
	SignatureState  securityv1alpha1.SignatureState
	SignatureReason string
	SBOMSource      securityv1alpha1.SBOMSource
	SBOMReason      string
	Scanned         bool
	ScanProblem     string // reason when not scanned: DBNotLoaded, DBStale, NoSBOM, MatchFailed
	ScanReason      string
	Retrying        string // message of a transient problem being retried
	Stalled         string // message of a problem a person must fix
	StalledReason   string
	Verdict         securityv1alpha1.Verdict
}

func observe(in *reportInput, st *securityv1alpha1.ImageTrustReportStatus) observation {
	o := observation{
		SignatureState:  st.Signature.State,
		SignatureReason: st.Signature.Reason,
		SBOMSource:      st.SBOM.Source,
		SBOMReason:      st.SBOM.Reason,
		Verdict:         st.Policy.Verdict,
		Retrying:        registry.SanitizeText(in.retry),
	}
	a := in.assessment
	switch {
	case a.Scan != nil && in.dbProblem == "":
		o.Scanned = true
	case in.dbProblem != "":
		o.ScanProblem, o.ScanReason = in.dbProblem, a.ScanReason
	case a.SBOM == nil:
		o.ScanProblem, o.ScanReason = "NoSBOM", a.ScanReason
	default:
		o.ScanProblem, o.ScanReason = "MatchFailed", a.ScanReason
	}
	switch {
	case in.stalled != "":
		o.StalledReason, o.Stalled = "RegistryAccessDenied", registry.SanitizeText(in.stalled)
	case len(in.stalledPolicies) > 0:
		o.StalledReason, o.Stalled = "PolicyStalled", "a policy that applies cannot be enforced: "+strings.Join(in.stalledPolicies, "; ")
	}
	return o
}

// Condition setters: each derives one condition from the observation and nothing else.

func setCondition(conds *[]metav1.Condition, typ string, status metav1.ConditionStatus, reason, msg string, gen int64, now time.Time) {
	msg = trunc(msg, 32768)
	for i := range *conds {
		c := &(*conds)[i]
		if c.Type != typ {
			continue
		}
		if c.Status != status {
			c.LastTransitionTime = metav1.NewTime(now.Truncate(time.Second))
		}
		c.Status, c.Reason, c.Message, c.ObservedGeneration = status, reason, msg, gen
		return
	}
	*conds = append(*conds, metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg,
		ObservedGeneration: gen, LastTransitionTime: metav1.NewTime(now.Truncate(time.Second))})
}

func removeCondition(conds *[]metav1.Condition, typ string) {
	out := (*conds)[:0]
	for _, c := range *conds {
		if c.Type != typ {
			out = append(out, c)
		}
	}
	*conds = out
}

func setSignatureCondition(conds *[]metav1.Condition, o observation, gen int64, now time.Time) {
	if o.SignatureState == securityv1alpha1.SignatureVerified {
		setCondition(conds, securityv1alpha1.ConditionSignatureVerified, metav1.ConditionTrue, "Verified", "signature verified", gen, now)
		return
	}
	setCondition(conds, securityv1alpha1.ConditionSignatureVerified, metav1.ConditionFalse, string(o.SignatureState), o.SignatureReason, gen, now)
}

func setSBOMCondition(conds *[]metav1.Condition, o observation, gen int64, now time.Time) {
	if o.SBOMSource == securityv1alpha1.SBOMNone || o.SBOMSource == "" {
		setCondition(conds, securityv1alpha1.ConditionSBOMAvailable, metav1.ConditionFalse, "NoSBOM", o.SBOMReason, gen, now)
		return
	}
	setCondition(conds, securityv1alpha1.ConditionSBOMAvailable, metav1.ConditionTrue, string(o.SBOMSource), "SBOM source: "+string(o.SBOMSource), gen, now)
}

func setScannedCondition(conds *[]metav1.Condition, o observation, gen int64, now time.Time) {
	if o.Scanned {
		setCondition(conds, securityv1alpha1.ConditionScanned, metav1.ConditionTrue, "Matched", "SBOM matched against the vulnerability DB", gen, now)
		return
	}
	setCondition(conds, securityv1alpha1.ConditionScanned, metav1.ConditionFalse, o.ScanProblem, o.ScanReason, gen, now)
}

// setReadiness sets the kstatus conditions: Stalled when a person must act, Reconciling while a
// transient problem is retried, Ready when the assessment is complete.
func setReadiness(conds *[]metav1.Condition, o observation, gen int64, now time.Time) {
	if o.Stalled != "" {
		setCondition(conds, securityv1alpha1.ConditionStalled, metav1.ConditionTrue, o.StalledReason, o.Stalled, gen, now)
	} else {
		removeCondition(conds, securityv1alpha1.ConditionStalled)
	}
	if o.Retrying != "" && o.Stalled == "" {
		setCondition(conds, securityv1alpha1.ConditionReconciling, metav1.ConditionTrue, "ProgressingWithRetry", o.Retrying, gen, now)
	} else {
		removeCondition(conds, securityv1alpha1.ConditionReconciling)
	}
	switch {
	case o.Stalled != "":
		setCondition(conds, securityv1alpha1.ConditionReady, metav1.ConditionFalse, o.StalledReason, o.Stalled, gen, now)
	case o.SignatureState == securityv1alpha1.SignatureError:
		setCondition(conds, securityv1alpha1.ConditionReady, metav1.ConditionFalse, "VerificationFailed", o.SignatureReason, gen, now)
	case o.Retrying != "":
		setCondition(conds, securityv1alpha1.ConditionReady, metav1.ConditionFalse, "ProgressingWithRetry", o.Retrying, gen, now)
	case !o.Scanned:
		setCondition(conds, securityv1alpha1.ConditionReady, metav1.ConditionFalse, o.ScanProblem, o.ScanReason, gen, now)
	default:
		setCondition(conds, securityv1alpha1.ConditionReady, metav1.ConditionTrue, "Succeeded", "verdict: "+string(o.Verdict), gen, now)
	}
}

// setReportConditions derives every report condition from the observation.
func setReportConditions(conds *[]metav1.Condition, o observation, gen int64, now time.Time) {
	setSignatureCondition(conds, o, gen, now)
	setSBOMCondition(conds, o, gen, now)
	setScannedCondition(conds, o, gen, now)
	setReadiness(conds, o, gen, now)
	sort.Slice(*conds, func(i, j int) bool { return (*conds)[i].Type < (*conds)[j].Type })
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

// findReport returns the report for (namespace, repository, digest) from the cache. Reports of
// the same digest in other repositories (mirrors) are other images' reports.
func (e *Engine) findReport(ctx context.Context, k reportKey) (*securityv1alpha1.ImageTrustReport, error) {
	var list securityv1alpha1.ImageTrustReportList
	if err := e.client.List(ctx, &list, client.InNamespace(k.Namespace), client.MatchingFields{indexReportDigest: k.Digest}); err != nil {
		return nil, err
	}
	var mine []*securityv1alpha1.ImageTrustReport
	for i := range list.Items {
		if k.describes(&list.Items[i]) {
			mine = append(mine, &list.Items[i])
		}
	}
	if len(mine) == 0 {
		return nil, nil
	}
	sort.Slice(mine, func(i, j int) bool { return mine[i].CreationTimestamp.Before(&mine[j].CreationTimestamp) })
	return mine[0], nil
}

// writeReport creates or patches one report when its content changed, then emits events for
// the transitions between the stored and the new status.
func (e *Engine) writeReport(ctx context.Context, in *reportInput) error {
	existing, err := e.findReport(ctx, in.key)
	if err != nil {
		return err
	}
	e.mu.Lock()
	last := e.written[in.key]
	e.mu.Unlock()
	if existing != nil && last != "" && existing.Status.ContentHash != last {
		// The cache has not seen our last write yet (or someone edited the report): read the
		// report itself, so transitions are computed against what is really stored.
		var fresh securityv1alpha1.ImageTrustReport
		if err := e.apiReader.Get(ctx, client.ObjectKeyFromObject(existing), &fresh); err != nil {
			if !apierrors.IsNotFound(err) {
				return err
			}
			existing = nil
		} else {
			existing = &fresh
		}
	}
	now := e.clock.Now()
	spec := buildSpec(in)
	st := buildStatus(in, e.opts.MaxFindings)
	var owners []metav1.OwnerReference
	if len(in.view.workloads) == 0 {
		// Reports only a RegistryScan wants go away with the scan; a report pods also use
		// must not be garbage-collected under them, so it carries no owner.
		owners = in.view.owners
	}
	var gen int64
	if existing != nil {
		st.Conditions = append([]metav1.Condition(nil), existing.Status.Conditions...)
		gen = existing.Generation
	}
	o := observe(in, &st)
	setReportConditions(&st.Conditions, o, gen, now)
	st.ContentHash = contentHash(spec, owners, st)

	if existing != nil && existing.Status.ContentHash == st.ContentHash && !timestampsStale(&existing.Status, &st, e.opts.StatusRefreshInterval) {
		e.markWritten(in, st.ContentHash, &st)
		return nil
	}
	if existing == nil && last == st.ContentHash {
		return nil // written a moment ago; the cache has not caught up
	}

	var oldStatus *securityv1alpha1.ImageTrustReportStatus
	var obj *securityv1alpha1.ImageTrustReport
	if existing == nil {
		obj, err = e.createReport(ctx, in, spec, owners)
		if err != nil {
			return err
		}
		if obj.Status.ContentHash != "" {
			oldStatus = obj.Status.DeepCopy()
			st.Conditions = append([]metav1.Condition(nil), obj.Status.Conditions...)
			setReportConditions(&st.Conditions, o, obj.Generation, now)
			st.ContentHash = contentHash(spec, owners, st)
			if obj.Status.ContentHash == st.ContentHash {
				e.markWritten(in, st.ContentHash, &st)
				return nil
			}
		}
	} else {
		oldStatus = existing.Status.DeepCopy()
		obj = existing.DeepCopy()
		if !equality.Semantic.DeepEqual(obj.Spec, spec) || !ownersEqual(obj.OwnerReferences, owners) || obj.Labels[LabelManagedBy] != ManagedByValue {
			before := obj.DeepCopy()
			obj.Spec = spec
			obj.OwnerReferences = owners
			if obj.Labels == nil {
				obj.Labels = map[string]string{}
			}
			obj.Labels[LabelManagedBy] = ManagedByValue
			if err := e.client.Patch(ctx, obj, client.MergeFrom(before)); err != nil {
				return err
			}
		}
	}
	st.ObservedGeneration = obj.Generation
	for i := range st.Conditions {
		st.Conditions[i].ObservedGeneration = obj.Generation
	}
	before := obj.DeepCopy()
	obj.Status = st
	if err := e.client.Status().Patch(ctx, obj, client.MergeFrom(before)); err != nil {
		return err
	}
	e.markWritten(in, st.ContentHash, &st)
	e.emit(obj, in, notify(oldStatus, &st))
	return nil
}

func ownersEqual(a, b []metav1.OwnerReference) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].UID != b[i].UID || a[i].Name != b[i].Name || a[i].Kind != b[i].Kind {
			return false
		}
	}
	return true
}

// createReport creates the report, adopting an existing one of the same image (created by a
// previous manager whose cache entry has not arrived yet) and lengthening the name on a clash
// with a report of another image: the same digest in another repository with the same
// basename (a mirror, common), or, astronomically unlikely, another digest with the same prefix.
func (e *Engine) createReport(ctx context.Context, in *reportInput, spec securityv1alpha1.ImageTrustReportSpec, owners []metav1.OwnerReference) (*securityv1alpha1.ImageTrustReport, error) {
	for extra := 0; extra <= 52; extra += 4 {
		obj := &securityv1alpha1.ImageTrustReport{
			ObjectMeta: metav1.ObjectMeta{
				Namespace:       in.key.Namespace,
				Name:            reportName(in.view.repo, in.key.Digest, extra),
				Labels:          map[string]string{LabelManagedBy: ManagedByValue},
				OwnerReferences: owners,
			},
			Spec: spec,
		}
		err := e.client.Create(ctx, obj)
		if err == nil {
			return obj, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, err
		}
		var cur securityv1alpha1.ImageTrustReport
		if err := e.apiReader.Get(ctx, client.ObjectKeyFromObject(obj), &cur); err != nil {
			return nil, err
		}
		if in.key.describes(&cur) {
			if !equality.Semantic.DeepEqual(cur.Spec, spec) || !ownersEqual(cur.OwnerReferences, owners) {
				before := cur.DeepCopy()
				cur.Spec, cur.OwnerReferences = spec, owners
				if err := e.client.Patch(ctx, &cur, client.MergeFrom(before)); err != nil {
					return nil, err
				}
			}
			return &cur, nil
		}
	}
	return nil, fmt.Errorf("no free report name for %s", in.key)
}

func (e *Engine) markWritten(in *reportInput, hash string, st *securityv1alpha1.ImageTrustReportStatus) {
	e.mu.Lock()
	e.written[in.key] = hash
	e.mu.Unlock()
	var sum *scanner.Summary
	if in.assessment.Scan != nil {
		s := in.assessment.Scan.Summary
		sum = &s
	}
	e.metrics.setReport(in.key, string(st.Policy.Verdict), string(st.Signature.State), sum)
}
