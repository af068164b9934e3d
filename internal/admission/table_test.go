package admission

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/imagetrust/imagetrust/api/v1alpha1"
)

// The one table of cases every front door must decide the same way. Each case lives in its own
// namespace with its own repositories and policies, so cases never see each other's state.

type policyFixture struct {
	name      string
	mode      v1.AdmissionMode
	onUnknown v1.UnknownAction
	selector  map[string]string
}

type imageFixture struct {
	container string
	init      bool
	repo      string // below the case's repository root
	tag       string
	digest    int  // index of the digest: digestOf(case, n); 0 = none (tag only)
	pushed    bool // the tag exists in the test registry, so it resolves
}

type reportFixture struct {
	namespace string // "" = the case's namespace
	image     int    // index into images
	results   map[string]v1.Verdict
	failed    []v1.FailedCheck
	// indexOnly reports the image as a platform of the digest (spec.indexDigest).
	indexOnly bool
}

type expectation struct {
	allowed bool
	warned  bool
	// text are substrings of the refusal, or of the warnings when allowed.
	text []string
	// assessed counts the digests queued for assessment.
	assessed int
}

type tableCase struct {
	name     string
	nsLabels map[string]string
	policies []policyFixture
	images   []imageFixture
	reports  []reportFixture
	want     expectation
}

var sigFailed = []v1.FailedCheck{{Policy: "team", Check: "signature", Message: "no signature found"}}

var doorTable = []tableCase{
	{
		name:     "trusted image",
		policies: []policyFixture{{name: "team", mode: v1.AdmissionEnforce}},
		images:   []imageFixture{{container: "app", repo: "app", tag: "1.0", digest: 1}},
		reports:  []reportFixture{{image: 0, results: map[string]v1.Verdict{"team": v1.VerdictTrusted}}},
		want:     expectation{allowed: true},
	},
	{
		name:     "untrusted image under Enforce",
		policies: []policyFixture{{name: "team", mode: v1.AdmissionEnforce}},
		images:   []imageFixture{{container: "app", repo: "app", tag: "1.0", digest: 1}},
		reports:  []reportFixture{{image: 0, results: map[string]v1.Verdict{"team": v1.VerdictUntrusted}, failed: sigFailed}},
		want:     expectation{text: []string{"is Untrusted under ImageTrustPolicy", "signature: no signature found", "(report {ns}/r0)", "/app:1.0@"}},
	},
	{
		name:     "untrusted image under Audit",
		policies: []policyFixture{{name: "team", mode: v1.AdmissionAudit}},
		images:   []imageFixture{{container: "app", repo: "app", digest: 1}},
		reports:  []reportFixture{{image: 0, results: map[string]v1.Verdict{"team": v1.VerdictUntrusted}, failed: sigFailed}},
		want:     expectation{allowed: true, warned: true, text: []string{"is in Audit mode", "signature: no signature found"}},
	},
	{
		name:     "never assessed, onUnknown Deny",
		policies: []policyFixture{{name: "team", mode: v1.AdmissionEnforce}},
		images:   []imageFixture{{container: "app", repo: "app", digest: 1}},
		want:     expectation{text: []string{"has not been assessed", "queued for assessment"}, assessed: 1},
	},
	{
		name:     "never assessed, onUnknown Warn",
		policies: []policyFixture{{name: "team", mode: v1.AdmissionEnforce, onUnknown: v1.UnknownWarn}},
		images:   []imageFixture{{container: "app", repo: "app", digest: 1}},
		want:     expectation{allowed: true, warned: true, text: []string{"has not been assessed"}, assessed: 1},
	},
	{
		name:     "never assessed, onUnknown Allow",
		policies: []policyFixture{{name: "team", mode: v1.AdmissionEnforce, onUnknown: v1.UnknownAllow}},
		images:   []imageFixture{{container: "app", repo: "app", digest: 1}},
		want:     expectation{allowed: true, assessed: 1},
	},
	{
		name:     "verdict Unknown follows onUnknown",
		policies: []policyFixture{{name: "team", mode: v1.AdmissionEnforce}},
		images:   []imageFixture{{container: "app", repo: "app", digest: 1}},
		reports: []reportFixture{{image: 0, results: map[string]v1.Verdict{"team": v1.VerdictUnknown},
			failed: []v1.FailedCheck{{Policy: "team", Check: "signature", Message: "registry unreachable"}}}},
		want: expectation{text: []string{"verdict Unknown", "registry unreachable"}},
	},
	{
		name:     "another namespace's report decides",
		policies: []policyFixture{{name: "team", mode: v1.AdmissionEnforce}},
		images:   []imageFixture{{container: "app", repo: "app", digest: 1}},
		reports:  []reportFixture{{namespace: "elsewhere", image: 0, results: map[string]v1.Verdict{"team": v1.VerdictUntrusted}, failed: sigFailed}},
		want:     expectation{text: []string{"is Untrusted", "(report elsewhere/r0)"}},
	},
	{
		name:     "a multi-arch index digest is judged by its platforms' reports",
		policies: []policyFixture{{name: "team", mode: v1.AdmissionEnforce}},
		images:   []imageFixture{{container: "app", repo: "app", digest: 1}},
		reports:  []reportFixture{{image: 0, indexOnly: true, results: map[string]v1.Verdict{"team": v1.VerdictUntrusted}, failed: sigFailed}},
		want:     expectation{text: []string{"is Untrusted"}},
	},
	{
		name:     "namespace selector does not match",
		nsLabels: map[string]string{"env": "dev"},
		policies: []policyFixture{{name: "team", mode: v1.AdmissionEnforce, selector: map[string]string{"env": "prod"}}},
		images:   []imageFixture{{container: "app", repo: "app", digest: 1}},
		reports:  []reportFixture{{image: 0, results: map[string]v1.Verdict{"team": v1.VerdictUntrusted}, failed: sigFailed}},
		want:     expectation{allowed: true},
	},
	{
		name:     "namespace selector matches",
		nsLabels: map[string]string{"env": "prod"},
		policies: []policyFixture{{name: "team", mode: v1.AdmissionEnforce, selector: map[string]string{"env": "prod"}}},
		images:   []imageFixture{{container: "app", repo: "app", digest: 1}},
		reports:  []reportFixture{{image: 0, results: map[string]v1.Verdict{"team": v1.VerdictUntrusted}, failed: sigFailed}},
		want:     expectation{text: []string{"is Untrusted"}},
	},
	{
		name:     "admission Off never refuses",
		policies: []policyFixture{{name: "team", mode: v1.AdmissionOff}},
		images:   []imageFixture{{container: "app", repo: "app", digest: 1}},
		reports:  []reportFixture{{image: 0, results: map[string]v1.Verdict{"team": v1.VerdictUntrusted}, failed: sigFailed}},
		want:     expectation{allowed: true},
	},
	{
		name:     "an untrusted init container among trusted ones",
		policies: []policyFixture{{name: "team", mode: v1.AdmissionEnforce}},
		images: []imageFixture{
			{container: "setup", init: true, repo: "setup", digest: 2},
			{container: "app", repo: "app", digest: 1},
		},
		reports: []reportFixture{
			{image: 0, results: map[string]v1.Verdict{"team": v1.VerdictUntrusted}, failed: sigFailed},
			{image: 1, results: map[string]v1.Verdict{"team": v1.VerdictTrusted}},
		},
		want: expectation{text: []string{"/setup@", "is Untrusted"}},
	},
	{
		name:     "a tag is resolved in the registry and its digest judged",
		policies: []policyFixture{{name: "team", mode: v1.AdmissionEnforce}},
		images:   []imageFixture{{container: "app", repo: "app", tag: "v1", pushed: true}},
		reports:  []reportFixture{{image: 0, results: map[string]v1.Verdict{"team": v1.VerdictUntrusted}, failed: sigFailed}},
		want:     expectation{text: []string{"is Untrusted", "/app:v1"}},
	},
	{
		name:     "a tag the registry does not have follows onUnknown",
		policies: []policyFixture{{name: "team", mode: v1.AdmissionEnforce}},
		images:   []imageFixture{{container: "app", repo: "app", tag: "missing"}},
		want:     expectation{text: []string{"has no known digest"}},
	},
	{
		name: "the worst of two policies decides",
		policies: []policyFixture{
			{name: "team", mode: v1.AdmissionEnforce},
			{name: "gate", mode: v1.AdmissionAudit},
		},
		images:  []imageFixture{{container: "app", repo: "app", digest: 1}},
		reports: []reportFixture{{image: 0, results: map[string]v1.Verdict{"team": v1.VerdictTrusted, "gate": v1.VerdictUntrusted}}},
		want:    expectation{allowed: true, warned: true, text: []string{"is in Audit mode"}},
	},
}

// caseWorld is a table case set up in one world.
type caseWorld struct {
	tc     tableCase
	ns     string
	root   string   // repository root of the case's images
	images []string // container images as written in the Pod
	digest []string // digest each image runs
}

func caseID(i int) string { return fmt.Sprintf("case%02d", i) }

func digestOf(id string, n int) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s-%d", id, n)))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// setUp creates the case's namespace, policies, pushed tags and reports in w.
func (tc tableCase) setUp(t *testing.T, w *world, i int) *caseWorld {
	t.Helper()
	id := caseID(i)
	cw := &caseWorld{tc: tc, ns: id, root: "registry.example.com/" + id}
	for _, im := range tc.images {
		if im.pushed || (im.tag != "" && im.digest == 0) {
			cw.root = testRegistry(t).Host() + "/" + id // tags resolve against the test registry
		}
	}
	ensureNamespace(t, w, cw.ns, tc.nsLabels)
	for _, pf := range tc.policies {
		p := &v1.ImageTrustPolicy{ObjectMeta: metav1.ObjectMeta{Name: id + "-" + pf.name},
			Spec: v1.ImageTrustPolicySpec{Images: []string{cw.root + "/**"}, Admission: &v1.AdmissionSpec{Mode: pf.mode, OnUnknown: pf.onUnknown}}}
		if pf.selector != nil {
			p.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: pf.selector}
		}
		if err := w.env.Client.Create(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		w.waitCached(t, p)
	}
	for _, im := range tc.images {
		ref, d := cw.root+"/"+im.repo, ""
		if im.digest > 0 {
			d = digestOf(id, im.digest)
		}
		if im.pushed {
			d = pushRandom(t, ref+":"+im.tag)
		}
		s := ref
		if im.tag != "" {
			s += ":" + im.tag
		}
		if im.digest > 0 {
			s += "@" + d
		}
		cw.images, cw.digest = append(cw.images, s), append(cw.digest, d)
	}
	for n, rf := range tc.reports {
		ns := rf.namespace
		if ns == "" {
			ns = cw.ns
		}
		st := v1.ImageTrustReportStatus{Policy: &v1.PolicyResult{Verdict: v1.VerdictTrusted}}
		for pol, v := range rf.results {
			st.Policy.Results = append(st.Policy.Results, v1.PolicyVerdict{Policy: id + "-" + pol, Verdict: v})
		}
		for _, f := range rf.failed {
			f.Policy = id + "-" + f.Policy
			st.Policy.FailedChecks = append(st.Policy.FailedChecks, f)
		}
		repo, d := cw.root+"/"+tc.images[rf.image].repo, cw.digest[rf.image]
		if rf.indexOnly {
			writeReportSpec(t, w, ns, fmt.Sprintf("r%d", n), v1.ImageTrustReportSpec{Image: repo, Digest: digestOf(id, 100+n), IndexDigest: d, Platform: "linux/amd64"}, st)
		} else {
			writeReport(t, w, ns, fmt.Sprintf("r%d", n), repo, d, st)
		}
	}
	return cw
}

// expandText fills {ns} in expected substrings.
func (cw *caseWorld) expandText() []string {
	out := make([]string, 0, len(cw.tc.want.text))
	for _, s := range cw.tc.want.text {
		out = append(out, strings.ReplaceAll(s, "{ns}", cw.ns))
	}
	return out
}

// doorAnswer is what a door answered, in door-independent terms.
type doorAnswer struct {
	allowed  bool
	text     string // refusal, or the warnings when allowed
	warnings int
	assessed int
}

func (cw *caseWorld) check(t *testing.T, door string, got doorAnswer) {
	t.Helper()
	want := cw.tc.want
	if got.allowed != want.allowed {
		t.Errorf("%s: allowed = %v, want %v: %s", door, got.allowed, want.allowed, got.text)
		return
	}
	if (got.warnings > 0) != want.warned {
		t.Errorf("%s: warnings %d, want warned=%v: %s", door, got.warnings, want.warned, got.text)
	}
	for _, s := range cw.expandText() {
		if !strings.Contains(got.text, s) {
			t.Errorf("%s: answer lacks %q:\n%s", door, s, got.text)
		}
	}
	if got.assessed != want.assessed {
		t.Errorf("%s: %d digests queued for assessment, want %d", door, got.assessed, want.assessed)
	}
}
