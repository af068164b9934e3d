package controllers

// Report conditions: derived from one observed-state struct by small pure setters, in the
// cluster-api style, with apimachinery's condition helpers.

import (
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner"
)

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
		SignatureState: st.Signature.State, SignatureReason: st.Signature.Reason,
		SBOMSource: st.SBOM.Source, SBOMReason: st.SBOM.Reason, Verdict: st.Policy.Verdict,
		Retrying: messagesOf(in.problems, errGeneric),
	}
	a := in.assessment
	var w *WaitingError
	switch {
	case asWaiting(in.dbWait, &w):
		o.ScanProblem, o.ScanReason = w.Reason, a.ScanReason
	case a.Scan != nil:
		o.Scanned = true
	case a.SBOM == nil:
		o.ScanProblem, o.ScanReason = securityv1alpha1.ReasonNoSBOM, a.ScanReason
	default:
		o.ScanProblem, o.ScanReason = securityv1alpha1.ReasonMatchFailed, a.ScanReason
	}
	if s := firstStalling(in.problems); s != nil {
		o.StalledReason, o.Stalled = s.Reason, messagesOf(in.problems, errStalling)
	} else if stalled := stalledPolicies(in.policies); len(stalled) > 0 {
		o.StalledReason, o.Stalled = securityv1alpha1.ReasonPolicyStalled, "a policy that applies cannot be enforced: "+strings.Join(stalled, "; ")
	}
	return o
}

// stalledPolicies lists "name: problems" of the policies that cannot be enforced.
func stalledPolicies(pols []scanner.Policy) []string {
	var out []string
	for _, p := range pols {
		if p.Stalled() {
			out = append(out, p.Name+": "+strings.Join(p.Problems, "; "))
		}
	}
	return out
}

func asWaiting(err error, w **WaitingError) bool {
	walk(err, func(e error) {
		if x, ok := e.(*WaitingError); ok && *w == nil {
			*w = x
		}
	})
	return *w != nil
}

// setCondition sets one condition; its transition time moves only when its status changes.
func setCondition(conds *[]metav1.Condition, typ string, status metav1.ConditionStatus, reason, msg string, gen int64, now time.Time) {
	meta.SetStatusCondition(conds, metav1.Condition{Type: typ, Status: status, Reason: reason, Message: trunc(msg, maxConditionMsgLen),
		ObservedGeneration: gen, LastTransitionTime: metav1.NewTime(now.Truncate(time.Second))})
}

// Condition setters: each derives one condition from the observation and nothing else.

func setSignatureCondition(conds *[]metav1.Condition, o observation, gen int64, now time.Time) {
	if o.SignatureState == securityv1alpha1.SignatureVerified {
		setCondition(conds, securityv1alpha1.ConditionSignatureVerified, metav1.ConditionTrue, securityv1alpha1.ReasonVerified, "signature verified", gen, now)
		return
	}
	setCondition(conds, securityv1alpha1.ConditionSignatureVerified, metav1.ConditionFalse, string(o.SignatureState), o.SignatureReason, gen, now)
}

func setSBOMCondition(conds *[]metav1.Condition, o observation, gen int64, now time.Time) {
	if o.SBOMSource == securityv1alpha1.SBOMNone || o.SBOMSource == "" {
		setCondition(conds, securityv1alpha1.ConditionSBOMAvailable, metav1.ConditionFalse, securityv1alpha1.ReasonNoSBOM, o.SBOMReason, gen, now)
		return
	}
	setCondition(conds, securityv1alpha1.ConditionSBOMAvailable, metav1.ConditionTrue, string(o.SBOMSource), "SBOM source: "+string(o.SBOMSource), gen, now)
}

func setScannedCondition(conds *[]metav1.Condition, o observation, gen int64, now time.Time) {
	if o.Scanned {
		setCondition(conds, securityv1alpha1.ConditionScanned, metav1.ConditionTrue, securityv1alpha1.ReasonMatched, "SBOM matched against the vulnerability DB", gen, now)
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
		meta.RemoveStatusCondition(conds, securityv1alpha1.ConditionStalled)
	}
	if o.Retrying != "" && o.Stalled == "" {
		setCondition(conds, securityv1alpha1.ConditionReconciling, metav1.ConditionTrue, securityv1alpha1.ReasonProgressingWithRetry, o.Retrying, gen, now)
	} else {
		meta.RemoveStatusCondition(conds, securityv1alpha1.ConditionReconciling)
	}
	status, reason, msg := metav1.ConditionFalse, "", ""
	switch {
	case o.Stalled != "":
		reason, msg = o.StalledReason, o.Stalled
	case o.SignatureState == securityv1alpha1.SignatureError:
		reason, msg = securityv1alpha1.ReasonVerificationFailed, o.SignatureReason
	case o.Retrying != "":
		reason, msg = securityv1alpha1.ReasonProgressingWithRetry, o.Retrying
	case !o.Scanned:
		reason, msg = o.ScanProblem, o.ScanReason
	default:
		status, reason, msg = metav1.ConditionTrue, securityv1alpha1.ReasonSucceeded, "verdict: "+string(o.Verdict)
	}
	setCondition(conds, securityv1alpha1.ConditionReady, status, reason, msg, gen, now)
}

// setReportConditions derives every report condition from the observation.
func setReportConditions(conds *[]metav1.Condition, o observation, gen int64, now time.Time) {
	setSignatureCondition(conds, o, gen, now)
	setSBOMCondition(conds, o, gen, now)
	setScannedCondition(conds, o, gen, now)
	setReadiness(conds, o, gen, now)
	sortConditions(*conds)
}

func sortConditions(conds []metav1.Condition) {
	sort.Slice(conds, func(i, j int) bool { return conds[i].Type < conds[j].Type })
}
