package controllers

// RegistryScan conditions: derived from what one reconcile observed.

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner"
)

// setScanConditions derives a RegistryScan's conditions from the observation.
func setScanConditions(conds *[]metav1.Condition, o scanObservation, gen int64, now time.Time) {
	var st *StallingError
	switch {
	case errors.As(o.Err, &st):
		setCondition(conds, securityv1alpha1.ConditionStalled, metav1.ConditionTrue, st.Reason, st.Message, gen, now)
		meta.RemoveStatusCondition(conds, securityv1alpha1.ConditionReconciling)
		setCondition(conds, securityv1alpha1.ConditionReady, metav1.ConditionFalse, st.Reason, st.Message, gen, now)
	case o.Err != nil:
		// any error of the reconcile lands here, not only the scanner's (which are redacted)
		msg := scanner.Redact(o.Err.Error())
		meta.RemoveStatusCondition(conds, securityv1alpha1.ConditionStalled)
		setCondition(conds, securityv1alpha1.ConditionReconciling, metav1.ConditionTrue, securityv1alpha1.ReasonProgressingWithRetry, msg, gen, now)
		setCondition(conds, securityv1alpha1.ConditionReady, metav1.ConditionFalse, securityv1alpha1.ReasonListingFailed, msg, gen, now)
	default:
		meta.RemoveStatusCondition(conds, securityv1alpha1.ConditionStalled)
		meta.RemoveStatusCondition(conds, securityv1alpha1.ConditionReconciling)
		if o.KeepReady && readySucceeded(*conds) {
			break
		}
		setCondition(conds, securityv1alpha1.ConditionReady, metav1.ConditionTrue, scanReadyReason(o), scanReadyMessage(o), gen, now)
	}
	sortConditions(*conds)
}

func readySucceeded(conds []metav1.Condition) bool {
	c := meta.FindStatusCondition(conds, securityv1alpha1.ConditionReady)
	return c != nil && c.Status == metav1.ConditionTrue && c.Reason == securityv1alpha1.ReasonSucceeded
}

func scanReadyReason(o scanObservation) string {
	if o.Suspended {
		return securityv1alpha1.ReasonSuspended
	}
	return securityv1alpha1.ReasonSucceeded
}

func scanReadyMessage(o scanObservation) string {
	if o.Suspended {
		return "scheduled listing is suspended; existing reports are kept"
	}
	msg := fmt.Sprintf("%d tags, %d digests", o.TagsFound, o.DigestsFound)
	if len(o.Skipped) > 0 {
		msg += fmt.Sprintf("; %d tags skipped (requested platform missing or tag gone): %s", len(o.Skipped), strings.Join(firstN(o.Skipped, 5), ", "))
	}
	return msg
}
