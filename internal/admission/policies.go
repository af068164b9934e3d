package admission

import (
	"fmt"
	"sort"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner/policy"
)

// policyView is an ImageTrustPolicy as admission uses it: which images and namespaces it
// covers and what to do with its verdicts.
type policyView struct {
	ref        PolicyRef
	generation int64
	images     policy.Policy // Name and Images: what Applies needs
	selector   labels.Selector
	// problem makes the policy unenforceable (an invalid namespace selector); it then applies
	// in every namespace and its images get the OnUnknown action, never a silent pass.
	problem string
}

// appliesTo reports whether the policy covers an image in a namespace with these labels.
func (p *policyView) appliesTo(ref imageRef, nsLabels map[string]string) bool {
	if p.selector != nil && !p.selector.Matches(labels.Set(nsLabels)) {
		return false
	}
	var tags []string
	if ref.Tag != "" {
		tags = []string{ref.Tag}
	}
	return p.images.Applies(ref.Repository, tags)
}

// viewOf converts a policy; ok is false when admission is Off for it.
func viewOf(p *v1.ImageTrustPolicy) (*policyView, bool) {
	a := p.Spec.Admission
	if a == nil || a.Mode == "" || a.Mode == v1.AdmissionOff {
		return nil, false
	}
	onUnknown := a.OnUnknown
	if onUnknown == "" {
		onUnknown = v1.UnknownDeny
	}
	pv := &policyView{
		ref:        PolicyRef{Name: p.Name, Mode: a.Mode, OnUnknown: onUnknown},
		generation: p.Generation,
		images:     policy.Policy{Name: p.Name, Images: p.Spec.Images},
	}
	if s := p.Spec.NamespaceSelector; s != nil {
		sel, err := metav1.LabelSelectorAsSelector(s)
		if err != nil {
			pv.problem = fmt.Sprintf("its namespaceSelector is invalid: %v", err)
		} else {
			pv.selector = sel
		}
	}
	return pv, true
}

// policyViews memoizes conversions by UID and generation: selectors are parsed once per policy
// change, not once per admission request.
type policyViews struct {
	mu   sync.Mutex
	memo map[types.UID]memoView
}

type memoView struct {
	generation int64
	view       *policyView // nil: admission Off
}

// views converts the cached policies, sorted by name, dropping those with admission Off.
func (m *policyViews) views(list []v1.ImageTrustPolicy) []*policyView {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.memo == nil || len(m.memo) > 2*len(list)+16 {
		m.memo = make(map[types.UID]memoView, len(list))
	}
	out := make([]*policyView, 0, len(list))
	for i := range list {
		p := &list[i]
		e, ok := m.memo[p.UID]
		if !ok || e.generation != p.Generation || p.UID == "" {
			v, _ := viewOf(p)
			e = memoView{generation: p.Generation, view: v}
			m.memo[p.UID] = e
		}
		if e.view != nil {
			out = append(out, e.view)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ref.Name < out[j].ref.Name })
	return out
}

// verdictRank orders verdicts from best to worst; a missing verdict ranks below all.
var verdictRank = map[v1.Verdict]int{v1.VerdictTrusted: 1, v1.VerdictUnknown: 2, v1.VerdictUntrusted: 3}

// evidenceFor reads a policy's verdict for one image from its reports (any namespace). Fresh
// verdicts win over stale ones; among equals the worst verdict wins, so one report saying
// Untrusted is enough to refuse.
func evidenceFor(p *policyView, reports []*v1.ImageTrustReport) Evidence {
	if p.problem != "" {
		return Evidence{Problem: p.problem}
	}
	var best Evidence
	bestRank, bestFresh := 0, false
	for _, r := range reports {
		pr := r.Status.Policy
		if pr == nil {
			continue
		}
		for _, res := range pr.Results {
			if res.Policy != p.ref.Name {
				continue
			}
			fresh := res.ObservedGeneration == 0 || res.ObservedGeneration >= p.generation
			rank := verdictRank[res.Verdict]
			if rank == 0 {
				rank = verdictRank[v1.VerdictUnknown] // a verdict this version does not know
			}
			if (fresh && !bestFresh) || (fresh == bestFresh && rank > bestRank) {
				best = Evidence{Verdict: res.Verdict, Stale: !fresh, Report: r.Namespace + "/" + r.Name, FailedChecks: failedChecksOf(pr, p.ref.Name)}
				if verdictRank[res.Verdict] == 0 {
					best.Verdict = v1.VerdictUnknown
				}
				bestRank, bestFresh = rank, fresh
			}
		}
	}
	return best
}

func failedChecksOf(pr *v1.PolicyResult, name string) []v1.FailedCheck {
	var out []v1.FailedCheck
	for _, c := range pr.FailedChecks {
		if c.Policy == name {
			out = append(out, c)
		}
	}
	return out
}
