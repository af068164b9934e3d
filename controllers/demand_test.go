package controllers

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner"
	"github.com/imagetrust/imagetrust/scanner/policy"
	"github.com/imagetrust/imagetrust/scanner/verify"
)

func keyPolicy(name string, sel labels.Selector) *compiledPolicy {
	auth := name + "/key"
	return &compiledPolicy{Name: name, Selector: sel, Scanner: scanner.Policy{
		Policy:           policy.Policy{Name: name, Images: []string{"r.example/**"}, Authorities: []string{auth}},
		AuthorityConfigs: []verify.Authority{{Name: auth, PublicKeyPEM: []byte(name)}},
	}}
}

func names(pols []*compiledPolicy) []string {
	var out []string
	for _, p := range pols {
		out = append(out, p.Name)
	}
	return out
}

// The scope of a pass is decided once, from the demand: which namespaces want the image, the
// policies of each, and their union that verification runs against.
func TestScopeIsTheDemandOfOneMoment(t *testing.T) {
	clk := &FakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	d := newDemand(clk)
	secure := labels.SelectorFromSet(labels.Set{"secure": "true"})
	d.setPolicies([]*compiledPolicy{keyPolicy("strict", secure), keyPolicy("base", nil)})
	d.setNamespaceLabels("a", map[string]string{"secure": "true"})
	d.setNamespaceLabels("b", map[string]string{})
	img := imageKey{"r.example/app", "sha256:" + hexA}
	use := func(ns, pod string) {
		d.setPodUses(types.NamespacedName{Namespace: ns, Name: pod}, []PodUse{{Repository: img.Repository, Digest: img.Digest,
			Tag: "1.0", Container: "app", Workload: Workload{Kind: "Pod", Name: pod}}}, anonymous)
	}
	use("a", "p1")
	use("b", "p2")

	s, ok := d.scope(img)
	if !ok || strings.Join(names(s.union), ",") != "base,strict" || len(s.namespaces) != 2 {
		t.Fatalf("scope: ok %v union %v namespaces %d", ok, names(s.union), len(s.namespaces))
	}
	if a, b := s.namespaces[0], s.namespaces[1]; a.namespace != "a" || strings.Join(names(a.policies), ",") != "base,strict" ||
		b.namespace != "b" || strings.Join(names(b.policies), ",") != "base" || a.view.tags[0] != "1.0" || a.view.total != 1 {
		t.Fatalf("per namespace: %+v / %+v", a, b)
	}
	if s.authorityKey != authorityKey([]*compiledPolicy{keyPolicy("base", nil), keyPolicy("strict", secure)}) {
		t.Error("the authority key is not the union's")
	}
	if !d.current(&s) {
		t.Fatal("nothing changed, yet the scope is not current")
	}
	if got := d.policyMatches(); got["base"] != 2 || got["strict"] != 1 {
		t.Errorf("policy matches %v, want base 2 strict 1", got)
	}

	// a label change moves the policies: the scope taken before is out of date
	d.setNamespaceLabels("b", map[string]string{"secure": "true"})
	if d.current(&s) {
		t.Fatal("a namespace's labels changed, yet the old scope is current")
	}
	s2, _ := d.scope(img)
	if strings.Join(names(s2.namespaces[1].policies), ",") != "base,strict" {
		t.Fatalf("after relabelling: %v", names(s2.namespaces[1].policies))
	}

	// the last pod in b goes: b's report starts its grace period, a's stays wanted
	d.setPodUses(types.NamespacedName{Namespace: "b", Name: "p2"}, nil, nil)
	if d.current(&s2) {
		t.Fatal("a pod went away, yet the old scope is current")
	}
	s3, _ := d.scope(img)
	if len(s3.namespaces) != 1 || !d.wantedIn(reportKey{"a", img.Repository, img.Digest}) || d.wantedIn(reportKey{"b", img.Repository, img.Digest}) {
		t.Fatalf("after the pod left b: %d namespaces", len(s3.namespaces))
	}
	report := &securityv1alpha1.ImageTrustReport{ObjectMeta: metav1.ObjectMeta{Namespace: "b"},
		Spec: securityv1alpha1.ImageTrustReportSpec{Image: img.Repository, Digest: img.Digest}}
	written := func(reportKey) bool { return true }
	if d.collectable(report, clk.Now().Add(59*time.Minute), time.Hour, written) {
		t.Error("collectable within the grace period")
	}
	if !d.collectable(report, clk.Now().Add(time.Hour), time.Hour, written) {
		t.Error("not collectable after the grace period")
	}
}
