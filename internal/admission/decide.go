package admission

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/imagetrust/imagetrust/api/v1alpha1"
)

// Event reasons admission emits.
const (
	// ReasonAudit: an Audit-mode policy would have refused the object.
	ReasonAudit = "AdmissionAudit"
	// ReasonBreakGlass: the object was admitted under break-glass despite a refusal.
	ReasonBreakGlass = "BreakGlass"
)

// Bounds on what a decision says, so a Pod with many containers and policies cannot produce an
// answer the API server truncates mid-sentence.
const (
	maxMessageRunes = 4000
	maxWarningRunes = 500
	maxWarnings     = 16
	maxChecksShown  = 3
)

// Evidence is what the reports say about one image under one policy.
type Evidence struct {
	// Verdict of the policy; empty when no report carries one for this repository and digest.
	Verdict v1.Verdict
	// Stale is true when the verdict was computed for an older generation of the policy.
	Stale bool
	// Report is namespace/name of the report the verdict was read from.
	Report string
	// FailedChecks of this policy in that report.
	FailedChecks []v1.FailedCheck
	// Problem makes the policy unenforceable (for example an invalid namespace selector).
	Problem string
}

// PolicyRef is an applicable policy's admission settings.
type PolicyRef struct {
	Name      string
	Mode      v1.AdmissionMode
	OnUnknown v1.UnknownAction
}

// PolicyCheck is one policy that applies to an image, with the evidence for it.
type PolicyCheck struct {
	Policy   PolicyRef
	Evidence Evidence
}

// ImageInput is one container image with everything gathered about it.
type ImageInput struct {
	Container  Container
	Repository string
	Tag        string
	// Digest the image runs: given in the reference or resolved from the tag.
	Digest string
	// Unresolved says why the digest is not known (bad reference, tag lookup failed).
	Unresolved string
	// Policies that apply to the image in the object's namespace, in name order.
	Policies []PolicyCheck
}

// BreakGlass is the break-glass state of a request.
type BreakGlass struct {
	// Requested: the object carries the break-glass annotation.
	Requested bool
	// Reason is the annotation's value.
	Reason string
	// Changed: this request adds the annotation or changes its value.
	Changed bool
	// Enabled: break-glass groups are configured.
	Enabled bool
	// Authorized: the requesting user is in a break-glass group, or is a workload controller
	// creating an object it owns from a template that carried the annotation.
	Authorized bool
	// User is the requesting user, for messages and events.
	User string
}

// Input is everything a decision depends on.
type Input struct {
	Object ObjectRef
	// Excluded namespaces (kube-system, the manager's own) are always admitted.
	Excluded   bool
	Images     []ImageInput
	BreakGlass BreakGlass
}

// Event is an Event to record about the admitted object.
type Event struct{ Type, Reason, Message string }

// AssessRequest is an image to assess so that the next admission has a verdict.
type AssessRequest struct{ Repository, Digest, Tag string }

// Decision is the answer of every front door.
type Decision struct {
	Allowed bool
	// Message explains a refusal: each image, the policy, the failed checks and the report.
	Message string
	// Warnings go back to the client (kubectl prints them).
	Warnings []string
	Events   []Event
	Assess   []AssessRequest
	// Images are the images judged, with the digest each resolved to (empty when unknown).
	Images []JudgedImage
}

// JudgedImage is one image of a decision.
type JudgedImage struct{ Image, Repository, Digest string }

// Action is what admission does about one image under one policy.
type Action string

// Actions, from most to least severe.
const (
	ActionDeny  Action = "Deny"
	ActionWarn  Action = "Warn"
	ActionAllow Action = "Allow"
)

// outcome is the judgement of one image under one policy.
type outcome struct {
	action  Action
	msg     string
	audited bool // a Deny softened to Warn by Audit mode
	assess  bool
}

// Decide judges every image under every policy that applies to it and combines the results.
// It is pure: all it knows is in the input.
func Decide(in Input) Decision {
	if in.Excluded {
		return Decision{Allowed: true}
	}
	var d Decision
	var denials, audits []string
	queued := map[string]bool{}
	for _, img := range in.Images {
		d.Images = append(d.Images, JudgedImage{Image: img.Container.Image, Repository: img.Repository, Digest: img.Digest})
		for _, pc := range img.Policies {
			o := judge(img, pc)
			switch o.action {
			case ActionDeny:
				denials = append(denials, o.msg)
			case ActionWarn:
				d.Warnings = append(d.Warnings, o.msg)
				if o.audited {
					audits = append(audits, o.msg)
				}
			}
			if k := img.Repository + "@" + img.Digest; o.assess && !queued[k] {
				queued[k] = true
				d.Assess = append(d.Assess, AssessRequest{Repository: img.Repository, Digest: img.Digest, Tag: img.Tag})
			}
		}
	}
	return conclude(in, d, denials, audits)
}

// judge decides one image under one policy.
func judge(img ImageInput, pc PolicyCheck) outcome {
	ev, p := pc.Evidence, pc.Policy
	subject := describeImage(img)
	var o outcome
	switch {
	case ev.Problem != "":
		o = unknown(p, fmt.Sprintf("%s cannot be checked: ImageTrustPolicy %q cannot be enforced, %s", subject, p.Name, ev.Problem))
	case img.Unresolved != "":
		o = unknown(p, fmt.Sprintf("%s has no known digest (%s), so ImageTrustPolicy %q cannot be checked", subject, img.Unresolved, p.Name))
	case ev.Verdict == "":
		o = unknown(p, fmt.Sprintf("%s has not been assessed under ImageTrustPolicy %q yet; it is queued for assessment, retry shortly", subject, p.Name))
		o.assess = true
	case ev.Stale:
		o = unknown(p, fmt.Sprintf("%s was assessed under an older version of ImageTrustPolicy %q; it is queued for re-assessment, retry shortly (report %s)", subject, p.Name, ev.Report))
		o.assess = true
	case ev.Verdict == v1.VerdictTrusted:
		return outcome{action: ActionAllow}
	case ev.Verdict == v1.VerdictUntrusted:
		o = outcome{action: ActionDeny, msg: fmt.Sprintf("%s is Untrusted under ImageTrustPolicy %q: %s (report %s)", subject, p.Name, checks(ev.FailedChecks), ev.Report)}
	default:
		o = unknown(p, fmt.Sprintf("%s has verdict Unknown under ImageTrustPolicy %q: %s (report %s)", subject, p.Name, checks(ev.FailedChecks), ev.Report))
	}
	if p.Mode == v1.AdmissionAudit && o.action == ActionDeny {
		o.action, o.audited = ActionWarn, true
		o.msg = fmt.Sprintf("would be denied, ImageTrustPolicy %q is in Audit mode: %s", p.Name, o.msg)
	}
	return o
}

// unknown applies a policy's OnUnknown action to an image without a usable verdict.
func unknown(p PolicyRef, msg string) outcome {
	switch p.OnUnknown {
	case v1.UnknownAllow:
		return outcome{action: ActionAllow}
	case v1.UnknownWarn:
		return outcome{action: ActionWarn, msg: msg}
	default: // Deny, and anything a newer API might add: fail closed
		return outcome{action: ActionDeny, msg: msg}
	}
}

func describeImage(img ImageInput) string {
	s := fmt.Sprintf("image %q", img.Container.Image)
	if img.Container.Name != "" {
		s += fmt.Sprintf(" (%s %q)", img.Container.Kind, img.Container.Name)
	}
	return s
}

// checks renders failed checks as "check: message; ...", bounded.
func checks(fc []v1.FailedCheck) string {
	if len(fc) == 0 {
		return "no failed check recorded"
	}
	parts := make([]string, 0, maxChecksShown+1)
	for i, c := range fc {
		if i == maxChecksShown {
			parts = append(parts, fmt.Sprintf("and %d more", len(fc)-i))
			break
		}
		parts = append(parts, c.Check+": "+truncRunes(c.Message, 200))
	}
	return strings.Join(parts, "; ")
}

// conclude applies break-glass and turns the collected judgements into the decision.
func conclude(in Input, d Decision, denials, audits []string) Decision {
	bg := in.BreakGlass
	switch {
	case !bg.Requested:
	case !bg.Enabled:
		d.Warnings = append(d.Warnings, fmt.Sprintf("annotation %s ignored: break-glass is not enabled", AnnotationBreakGlass))
	case bg.Authorized && len(denials) > 0:
		msg := fmt.Sprintf("break-glass by %q (%s): %s admitted despite: %s", bg.User, bg.Reason, in.Object, strings.Join(denials, "; "))
		d.Warnings = append(d.Warnings, msg)
		d.Events = append(d.Events, Event{Type: corev1.EventTypeWarning, Reason: ReasonBreakGlass, Message: msg})
		denials = nil
	case !bg.Authorized && bg.Changed:
		denials = append([]string{fmt.Sprintf("user %q may not set annotation %s: only members of the break-glass groups may", bg.User, AnnotationBreakGlass)}, denials...)
	case !bg.Authorized && len(denials) > 0:
		d.Warnings = append(d.Warnings, fmt.Sprintf("annotation %s not honoured: user %q is not in a break-glass group", AnnotationBreakGlass, bg.User))
	}
	if len(audits) > 0 {
		d.Events = append(d.Events, Event{Type: corev1.EventTypeWarning, Reason: ReasonAudit,
			Message: truncRunes(in.Object.String()+": "+strings.Join(audits, "; "), maxMessageRunes)})
	}
	d.Warnings = boundWarnings(d.Warnings)
	if len(denials) > 0 {
		d.Message = truncRunes(in.Object.String()+": "+strings.Join(denials, "; "), maxMessageRunes)
		return d
	}
	d.Allowed = true
	return d
}

func boundWarnings(ws []string) []string {
	if len(ws) > maxWarnings {
		rest := len(ws) - maxWarnings + 1
		ws = append(ws[:maxWarnings-1:maxWarnings-1], fmt.Sprintf("and %d more warnings", rest))
	}
	for i := range ws {
		ws[i] = truncRunes(ws[i], maxWarningRunes)
	}
	return ws
}

// truncRunes cuts s to at most n runes, marking the cut.
func truncRunes(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-3]) + "..."
}
