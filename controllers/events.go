package controllers

// Events: notify decides, purely, which events a transition between two report statuses
// deserves; emit records them on the report and its workloads.

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner"
)

// Event reasons. Each is emitted only on a transition, never for a status that stayed the same.
const (
	// ReasonSignatureNotVerified: a Verified signature became Invalid or Unsigned.
	ReasonSignatureNotVerified = "SignatureNotVerified"
	// ReasonNewVulnerabilities: Critical or High findings that the report did not list before.
	ReasonNewVulnerabilities = "NewVulnerabilities"
	// ReasonVerdictChanged: the policy verdict changed (folded into another event's message when
	// that event explains the change).
	ReasonVerdictChanged = "VerdictChanged"
	// ReasonUntrusted: a new report starts out Untrusted.
	ReasonUntrusted = "Untrusted"
	// ReasonSBOMDowngraded: the SBOM now comes from a less trustworthy source.
	ReasonSBOMDowngraded = "SBOMDowngraded"
	// ReasonDBStale: the vulnerability DB is older than the allowed age, so findings are not current.
	ReasonDBStale = "VulnerabilityDBStale"
	// ReasonAttestedSBOMInvalid: a verified SBOM attestation does not parse — someone publishes
	// broken SBOMs under a trusted key.
	ReasonAttestedSBOMInvalid = "AttestedSBOMInvalid"
)

// maxEventIDs bounds the vulnerability ids listed in one event.
const maxEventIDs = 10

// maxEventWorkloads bounds how many workloads get a copy of a report's event.
const maxEventWorkloads = 5

// maxEventMessageLen bounds an event's note (the API allows 1 KiB).
const maxEventMessageLen = 1000

// maxFailedChecksInEvent bounds the failed checks an event lists.
const maxFailedChecksInEvent = 3

// eventSpec is one event to emit.
type eventSpec struct {
	Type    string // corev1.EventTypeNormal or Warning
	Reason  string
	Message string
}

// eventSink is the part of the events recorder the Engine uses (events.k8s.io/v1 semantics).
type eventSink interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...interface{})
}

var sbomRank = map[securityv1alpha1.SBOMSource]int{
	securityv1alpha1.SBOMAttested: 3, securityv1alpha1.SBOMReferrer: 2, securityv1alpha1.SBOMGenerated: 1, securityv1alpha1.SBOMNone: 0,
}

func criticalHighIDs(st *securityv1alpha1.ImageTrustReportStatus) map[string]bool {
	out := map[string]bool{}
	if st == nil {
		return out
	}
	for _, f := range st.TopFindings {
		if scanner.SeverityRank(string(f.Severity)) >= scanner.SeverityRank(scanner.SeverityHigh) {
			out[f.ID] = true
		}
	}
	return out
}

func conditionReason(st *securityv1alpha1.ImageTrustReportStatus, typ string) string {
	if st == nil {
		return ""
	}
	for _, c := range st.Conditions {
		if c.Type == typ {
			return c.Reason
		}
	}
	return ""
}

// notify lists the events for the transition from old (nil for a new report) to new. It is
// pure, so every rule is table-tested. Old findings come from the stored report's top
// findings, which keeps the comparison correct across manager restarts.
func notify(old, cur *securityv1alpha1.ImageTrustReportStatus) []eventSpec {
	var out []eventSpec
	oldSig, newSig := securityv1alpha1.SignatureState(""), securityv1alpha1.SignatureState("")
	if old != nil && old.Signature != nil {
		oldSig = old.Signature.State
	}
	if cur.Signature != nil {
		newSig = cur.Signature.State
	}
	if oldSig == securityv1alpha1.SignatureVerified && (newSig == securityv1alpha1.SignatureInvalid || newSig == securityv1alpha1.SignatureUnsigned) {
		out = append(out, eventSpec{corev1.EventTypeWarning, ReasonSignatureNotVerified,
			fmt.Sprintf("signature was Verified, now %s: %s", newSig, cur.Signature.Reason)})
	}

	before := criticalHighIDs(old)
	var added []string
	for id := range criticalHighIDs(cur) {
		if !before[id] {
			added = append(added, id)
		}
	}
	if len(added) > 0 {
		sort.Strings(added)
		shown, more := added, ""
		if len(shown) > maxEventIDs {
			shown, more = shown[:maxEventIDs], fmt.Sprintf(" and %d more", len(added)-maxEventIDs)
		}
		out = append(out, eventSpec{corev1.EventTypeWarning, ReasonNewVulnerabilities,
			fmt.Sprintf("%d new Critical/High vulnerabilities: %s%s", len(added), strings.Join(shown, ", "), more)})
	}

	if old != nil && old.SBOM != nil && cur.SBOM != nil && sbomRank[cur.SBOM.Source] < sbomRank[old.SBOM.Source] {
		out = append(out, eventSpec{corev1.EventTypeWarning, ReasonSBOMDowngraded,
			fmt.Sprintf("SBOM source downgraded from %s to %s: %s", old.SBOM.Source, cur.SBOM.Source, cur.SBOM.Reason)})
	}

	if cur.SBOM != nil && cur.SBOM.AttestationError != "" && (old == nil || old.SBOM == nil || old.SBOM.AttestationError == "") {
		out = append(out, eventSpec{corev1.EventTypeWarning, ReasonAttestedSBOMInvalid, cur.SBOM.AttestationError})
	}

	if conditionReason(cur, securityv1alpha1.ConditionScanned) == securityv1alpha1.ReasonDBStale && conditionReason(old, securityv1alpha1.ConditionScanned) != securityv1alpha1.ReasonDBStale {
		out = append(out, eventSpec{corev1.EventTypeWarning, ReasonDBStale,
			"vulnerability DB is older than the allowed maximum age; findings are not current"})
	}

	newVerdict := securityv1alpha1.Verdict("")
	if cur.Policy != nil {
		newVerdict = cur.Policy.Verdict
	}
	switch {
	case old == nil || old.Policy == nil:
		if newVerdict == securityv1alpha1.VerdictUntrusted {
			out = foldVerdict(out, eventSpec{corev1.EventTypeWarning, ReasonUntrusted, "image is Untrusted: " + failedSummary(cur)})
		}
	case old.Policy.Verdict != newVerdict:
		typ := corev1.EventTypeNormal
		if newVerdict == securityv1alpha1.VerdictUntrusted {
			typ = corev1.EventTypeWarning
		}
		msg := fmt.Sprintf("verdict changed from %s to %s", old.Policy.Verdict, newVerdict)
		if s := failedSummary(cur); s != "" {
			msg += ": " + s
		}
		out = foldVerdict(out, eventSpec{typ, ReasonVerdictChanged, msg})
	}
	for i := range out {
		// events are read by anyone who can list them: redact whatever reached a status
		out[i].Message = trunc(scanner.Redact(out[i].Message), maxEventMessageLen)
	}
	return out
}

// foldVerdict appends a verdict event, or, when another event already explains the change,
// adds the verdict to that event's message: one transition, one alert.
func foldVerdict(out []eventSpec, v eventSpec) []eventSpec {
	for i := range out {
		if out[i].Type == corev1.EventTypeWarning {
			out[i].Message += "; " + v.Message
			return out
		}
	}
	return append(out, v)
}

func failedSummary(st *securityv1alpha1.ImageTrustReportStatus) string {
	if st.Policy == nil {
		return ""
	}
	var parts []string
	for i, f := range st.Policy.FailedChecks {
		if i == maxFailedChecksInEvent {
			parts = append(parts, fmt.Sprintf("and %d more", len(st.Policy.FailedChecks)-maxFailedChecksInEvent))
			break
		}
		parts = append(parts, f.Policy+"/"+f.Check+": "+f.Message)
	}
	return strings.Join(parts, "; ")
}

// emit records events on the report and on (a bounded number of) its workloads.
func (w *reportWriter) emit(report *securityv1alpha1.ImageTrustReport, in *reportInput, evs []eventSpec) {
	if w.events == nil || len(evs) == 0 {
		return
	}
	for _, ev := range evs {
		w.events.Eventf(report, nil, ev.Type, ev.Reason, "Assess", "%s", ev.Message)
		for _, wl := range firstN(in.view.workloads, maxEventWorkloads) {
			ref := &corev1.ObjectReference{APIVersion: wl.APIVersion, Kind: wl.Kind, Namespace: in.key.Namespace, Name: wl.Name, UID: wl.UID}
			w.events.Eventf(ref, report, ev.Type, ev.Reason, "Assess", "%s: %s", in.view.repo+"@"+shortDigest(in.key.Digest), ev.Message)
		}
	}
}
