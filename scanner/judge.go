package scanner

import (
	"slices"
	"strings"
	"time"

	"github.com/imagetrust/imagetrust/scanner/verify"
)

// Judgement is what the policies of one scope (a namespace in a cluster, or one CLI run)
// conclude from one assessment. Verification runs once against the authorities of every
// scope that wants the image; each scope counts only the signers its own policies trust, so
// whether a namespace trusts a signer is decided here and nowhere else.
type Judgement struct {
	// Verdict is the combined verdict of the scope's policies.
	Verdict Combined
	// Authorities are the names of the authorities of the scope's policies.
	Authorities []string
	// Signature is the signature result as the scope sees it: NotRequired when none of its
	// policies has an authority, and only signers of its own authorities.
	Signature SignatureResult
	// Provenance is the SLSA provenance as the scope sees it; nil when none of its policies has
	// an authority to verify it with.
	Provenance *ProvenanceJudgement
	// Base is the declared base image as the scope sees it; nil when the image declares none.
	Base *BaseJudgement
}

// ProvenanceJudgement is whether a scope's authorities vouch for the image's provenance.
type ProvenanceJudgement struct {
	Verified      bool
	PredicateType string
	BuilderID     string
	Reason        string
}

// BaseJudgement is whether a scope's authorities signed the declared base image.
type BaseJudgement struct {
	Name   string
	Digest string
	Signed bool
	Reason string
}

// Reasons a scope gives where its view differs from the verification's.
const (
	reasonNoAuthorities    = "no policy with authorities applies to this image in this namespace"
	reasonOtherSigners     = "signed, but by none of the authorities of the policies that apply in this namespace"
	reasonOtherProvenance  = "provenance is signed by none of the authorities of the policies that apply here"
	reasonOtherBaseSigners = "base image is signed by none of the authorities of the policies that apply here"
)

// Judge evaluates the scope's policies over an assessment and derives the scope's view of the
// signature, provenance and base image. It is pure.
func Judge(pols []Policy, a *Assessment, now time.Time) Judgement {
	j := Judgement{Verdict: Evaluate(pols, a, now)}
	for _, p := range pols {
		for _, auth := range p.AuthorityConfigs {
			j.Authorities = append(j.Authorities, auth.Name)
		}
	}
	v := a.Verification
	j.Signature = judgeSignature(v.Signature, j.Authorities)
	if why := uncheckedSignature(pols); why != "" && j.Signature.State != Verified {
		// a policy that requires a signature cannot be enforced: the signature was not
		// checked against it, which is an error, not "not required"
		j.Signature = SignatureResult{State: Error, Reason: why}
	}
	if len(j.Authorities) > 0 {
		j.Provenance = judgeProvenance(v.Provenance, j.Authorities)
	}
	if v.Base.Name != "" {
		j.Base = judgeBase(v.Base, j.Authorities)
	}
	return j
}

func judgeSignature(sig SignatureResult, auths []string) SignatureResult {
	if len(auths) == 0 {
		return SignatureResult{State: NotRequired, Reason: reasonNoAuthorities}
	}
	out := SignatureResult{State: sig.State, Reason: sig.Reason}
	for _, sg := range sig.Signers {
		if slices.Contains(auths, sg.Authority) {
			out.Signers = append(out.Signers, sg)
		}
	}
	if sig.State == verify.Verified && len(out.Signers) == 0 {
		out.State, out.Reason = Invalid, reasonOtherSigners
	}
	return out
}

// uncheckedSignature says which stalled policies require a signature ("" when none does).
func uncheckedSignature(pols []Policy) string {
	var parts []string
	for _, p := range pols {
		if p.Stalled() && p.RequireSignature {
			parts = append(parts, "policy "+p.Name+" cannot be enforced: "+strings.Join(p.Problems, "; "))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "signature could not be checked: " + strings.Join(parts, "; ")
}

func judgeProvenance(p Provenance, auths []string) *ProvenanceJudgement {
	switch {
	case p.BuilderID != "" && anyIn(p.Signers, auths):
		return &ProvenanceJudgement{Verified: true, PredicateType: p.PredicateType, BuilderID: p.BuilderID}
	case p.BuilderID != "":
		return &ProvenanceJudgement{Reason: reasonOtherProvenance}
	}
	return &ProvenanceJudgement{Reason: p.Reason}
}

func judgeBase(b BaseImage, auths []string) *BaseJudgement {
	out := &BaseJudgement{Name: b.Name, Digest: b.Digest, Signed: anyIn(b.Signers, auths)}
	if !out.Signed {
		out.Reason = b.Reason
		if out.Reason == "" && len(b.Signers) > 0 {
			out.Reason = reasonOtherBaseSigners
		}
	}
	return out
}

func anyIn(xs, set []string) bool {
	for _, x := range xs {
		if slices.Contains(set, x) {
			return true
		}
	}
	return false
}
