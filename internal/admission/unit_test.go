package admission

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	v1 "github.com/imagetrust/imagetrust/api/v1alpha1"
)

func TestParseImage(t *testing.T) {
	const d = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	cases := []struct {
		in   string
		want imageRef
		err  string
	}{
		{in: "nginx", want: imageRef{Repository: "index.docker.io/library/nginx", Tag: "latest"}},
		{in: "docker.io/team/app:1.2", want: imageRef{Repository: "index.docker.io/team/app", Tag: "1.2"}},
		{in: "registry.example.com:5000/team/app", want: imageRef{Repository: "registry.example.com:5000/team/app", Tag: "latest"}},
		{in: "registry.example.com/app@" + d, want: imageRef{Repository: "registry.example.com/app", Digest: d}},
		{in: "registry.example.com:5000/app:v1@" + d, want: imageRef{Repository: "registry.example.com:5000/app", Tag: "v1", Digest: d}},
		{in: "127.0.0.1:5000/app@" + d, want: imageRef{Repository: "127.0.0.1:5000/app", Digest: d}},
		{in: "Bad/Upper", err: "invalid image reference"},
		{in: "app@sha256:short", err: "invalid image reference"},
		{in: "", err: "empty image reference"},
	}
	for _, tc := range cases {
		got, err := parseImage(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseImage(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseImage(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestTagCache(t *testing.T) {
	now := time.Unix(1000, 0)
	c := NewTagCache(30*time.Second, 2, func() time.Time { return now })
	c.Observe("r/a", "1", "sha256:a1")
	c.Observe("r/b", "1", "sha256:b1")
	if d, ok := c.Lookup("r/a", "1"); !ok || d != "sha256:a1" {
		t.Fatalf("lookup a = %q %v", d, ok)
	}
	c.Observe("r/c", "1", "sha256:c1") // evicts b, the least recently used
	if _, ok := c.Lookup("r/b", "1"); ok {
		t.Error("b survived eviction")
	}
	if c.Len() != 2 {
		t.Errorf("len = %d, bound 2", c.Len())
	}
	c.Observe("r/a", "1", "sha256:a2") // a tag moved
	if d, _ := c.Lookup("r/a", "1"); d != "sha256:a2" {
		t.Errorf("moved tag = %q", d)
	}
	now = now.Add(30 * time.Second)
	if _, ok := c.Lookup("r/a", "1"); ok {
		t.Error("entry outlived its TTL")
	}
	if c.Len() != 1 {
		t.Errorf("expired entry kept: len %d", c.Len())
	}
}

func report(ns, name string, results []v1.PolicyVerdict, checks ...v1.FailedCheck) *v1.ImageTrustReport {
	return &v1.ImageTrustReport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Status: v1.ImageTrustReportStatus{Policy: &v1.PolicyResult{Results: results, FailedChecks: checks}}}
}

func TestEvidenceFor(t *testing.T) {
	pv := &policyView{ref: PolicyRef{Name: "team"}, generation: 3}
	cases := []struct {
		name    string
		reports []*v1.ImageTrustReport
		want    Evidence
	}{
		{name: "no report", want: Evidence{}},
		{name: "report without this policy", reports: []*v1.ImageTrustReport{report("a", "r", []v1.PolicyVerdict{{Policy: "other", Verdict: v1.VerdictTrusted}})}, want: Evidence{}},
		{name: "another namespace's report counts", reports: []*v1.ImageTrustReport{report("b", "r", []v1.PolicyVerdict{{Policy: "team", Verdict: v1.VerdictTrusted, ObservedGeneration: 3}})},
			want: Evidence{Verdict: v1.VerdictTrusted, Report: "b/r"}},
		{name: "worst fresh verdict wins", reports: []*v1.ImageTrustReport{
			report("a", "r", []v1.PolicyVerdict{{Policy: "team", Verdict: v1.VerdictTrusted, ObservedGeneration: 3}}),
			report("b", "r", []v1.PolicyVerdict{{Policy: "team", Verdict: v1.VerdictUntrusted, ObservedGeneration: 3}},
				v1.FailedCheck{Policy: "team", Check: "signature", Message: "x"}, v1.FailedCheck{Policy: "other", Check: "registry", Message: "y"}),
		}, want: Evidence{Verdict: v1.VerdictUntrusted, Report: "b/r", FailedChecks: []v1.FailedCheck{{Policy: "team", Check: "signature", Message: "x"}}}},
		{name: "fresh beats stale", reports: []*v1.ImageTrustReport{
			report("a", "r", []v1.PolicyVerdict{{Policy: "team", Verdict: v1.VerdictUntrusted, ObservedGeneration: 2}}),
			report("b", "r", []v1.PolicyVerdict{{Policy: "team", Verdict: v1.VerdictTrusted, ObservedGeneration: 3}}),
		}, want: Evidence{Verdict: v1.VerdictTrusted, Report: "b/r"}},
		{name: "only stale", reports: []*v1.ImageTrustReport{report("a", "r", []v1.PolicyVerdict{{Policy: "team", Verdict: v1.VerdictTrusted, ObservedGeneration: 2}})},
			want: Evidence{Verdict: v1.VerdictTrusted, Stale: true, Report: "a/r"}},
		{name: "unversioned verdict is taken as current", reports: []*v1.ImageTrustReport{report("a", "r", []v1.PolicyVerdict{{Policy: "team", Verdict: v1.VerdictTrusted}})},
			want: Evidence{Verdict: v1.VerdictTrusted, Report: "a/r"}},
		{name: "a verdict this version does not know is Unknown", reports: []*v1.ImageTrustReport{report("a", "r", []v1.PolicyVerdict{{Policy: "team", Verdict: "Excellent"}})},
			want: Evidence{Verdict: v1.VerdictUnknown, Report: "a/r"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := evidenceFor(pv, tc.reports)
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(tc.want)
			if string(gj) != string(wj) {
				t.Errorf("evidence = %s\nwant       %s", gj, wj)
			}
		})
	}
}

func TestPolicyViews(t *testing.T) {
	pol := func(name, uid string, gen int64, a *v1.AdmissionSpec, sel *metav1.LabelSelector) v1.ImageTrustPolicy {
		return v1.ImageTrustPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, UID: k8stypes.UID("uid-" + uid), Generation: gen},
			Spec: v1.ImageTrustPolicySpec{Images: []string{"nginx", "registry.example.com/team/**"}, Admission: a, NamespaceSelector: sel}}
	}
	var m policyViews
	list := []v1.ImageTrustPolicy{
		pol("z-off", "1", 1, nil, nil),
		pol("b-enforce", "2", 1, &v1.AdmissionSpec{Mode: v1.AdmissionEnforce}, &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}),
		pol("a-audit", "3", 1, &v1.AdmissionSpec{Mode: v1.AdmissionAudit, OnUnknown: v1.UnknownAllow}, nil),
		pol("c-bad", "4", 1, &v1.AdmissionSpec{Mode: v1.AdmissionEnforce}, &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "env", Operator: "Near"}}}),
	}
	views := m.views(list)
	var names []string
	for _, v := range views {
		names = append(names, v.ref.Name)
	}
	if !slices.Equal(names, []string{"a-audit", "b-enforce", "c-bad"}) {
		t.Fatalf("views = %v: admission Off must be dropped, the rest sorted", names)
	}
	if views[0].ref.OnUnknown != v1.UnknownAllow || views[1].ref.OnUnknown != v1.UnknownDeny {
		t.Errorf("onUnknown = %s, %s", views[0].ref.OnUnknown, views[1].ref.OnUnknown)
	}
	if views[2].problem == "" {
		t.Error("an invalid selector was not flagged")
	}
	nginx, _ := parseImage("nginx:1.27")
	if !views[1].appliesTo(nginx, map[string]string{"env": "prod"}) || views[1].appliesTo(nginx, map[string]string{"env": "dev"}) {
		t.Error("namespace selector not applied")
	}
	other, _ := parseImage("ghcr.io/other/app:1")
	if views[0].appliesTo(other, nil) {
		t.Error("policy applied to an image its patterns do not cover")
	}
	// Memoized per generation: the same view until the generation changes.
	again := m.views(list)
	if again[1] != views[1] {
		t.Error("conversion not memoized")
	}
	list[1].Generation = 2
	list[1].Spec.Admission.Mode = v1.AdmissionAudit
	if v := m.views(list)[1]; v == views[1] || v.ref.Mode != v1.AdmissionAudit {
		t.Error("a new generation was not converted again")
	}
}

func TestDecodeWorkload(t *testing.T) {
	spec := corev1.PodSpec{
		InitContainers:      []corev1.Container{{Name: "init", Image: "busybox"}},
		Containers:          []corev1.Container{{Name: "app", Image: " registry.example.com/app:1 "}},
		EphemeralContainers: []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "debug:1"}}},
		ImagePullSecrets:    []corev1.LocalObjectReference{{Name: "regcred"}},
	}
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{AnnotationBreakGlass: "INC-1"}}, Spec: spec}
	meta := metav1.ObjectMeta{Namespace: "shop", Name: "web"}
	objs := map[schema.GroupKind]any{
		{Kind: "Pod"}: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", GenerateName: "web-", Annotations: tmpl.Annotations,
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-1", Controller: ptr.To(true)}}}, Spec: spec},
		{Group: "apps", Kind: "Deployment"}:  &appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{Template: tmpl}},
		{Group: "apps", Kind: "StatefulSet"}: &appsv1.StatefulSet{ObjectMeta: meta, Spec: appsv1.StatefulSetSpec{Template: tmpl}},
		{Group: "apps", Kind: "DaemonSet"}:   &appsv1.DaemonSet{ObjectMeta: meta, Spec: appsv1.DaemonSetSpec{Template: tmpl}},
		{Group: "apps", Kind: "ReplicaSet"}:  &appsv1.ReplicaSet{ObjectMeta: meta, Spec: appsv1.ReplicaSetSpec{Template: tmpl}},
		{Group: "batch", Kind: "Job"}:        &batchv1.Job{ObjectMeta: meta, Spec: batchv1.JobSpec{Template: tmpl}},
		{Group: "batch", Kind: "CronJob"}:    &batchv1.CronJob{ObjectMeta: meta, Spec: batchv1.CronJobSpec{JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl}}}},
	}
	for gk, obj := range objs {
		raw, _ := json.Marshal(obj)
		w, ok, err := DecodeWorkload(gk, raw)
		if !ok || err != nil {
			t.Fatalf("%s: ok=%v err=%v", gk, ok, err)
		}
		var images []string
		for _, c := range w.Containers {
			images = append(images, c.Kind+"/"+c.Name+"="+c.Image)
		}
		want := []string{"initContainer/init=busybox", "container/app=registry.example.com/app:1", "ephemeralContainer/debug=debug:1"}
		if !slices.Equal(images, want) {
			t.Errorf("%s: containers %v, want %v", gk, images, want)
		}
		if w.Annotations[AnnotationBreakGlass] != "INC-1" || !slices.Equal(w.PullSecrets, []string{"regcred"}) || w.Namespace != "shop" {
			t.Errorf("%s: workload %+v", gk, w)
		}
		if gk.Kind == "Pod" && (w.Name != "web-*" || !w.Owned) {
			t.Errorf("pod name %q owned %v", w.Name, w.Owned)
		}
	}
	if _, ok, _ := DecodeWorkload(schema.GroupKind{Kind: "ConfigMap"}, []byte(`{}`)); ok {
		t.Error("ConfigMap treated as a workload")
	}
	if _, _, err := DecodeWorkload(schema.GroupKind{Kind: "Pod"}, []byte(`{"spec": 1}`)); err == nil {
		t.Error("malformed Pod decoded")
	}
}

func TestNewImages(t *testing.T) {
	old := []Container{{Name: "a", Image: "x:1"}, {Name: "b", Image: "y:1"}}
	cur := []Container{{Name: "a", Image: "x:1"}, {Name: "b", Image: "y:2"}, {Name: "c", Image: "z:1"}}
	got := newImages(cur, old)
	if len(got) != 2 || got[0].Image != "y:2" || got[1].Image != "z:1" {
		t.Errorf("new images = %+v", got)
	}
}

func TestBreakGlassState(t *testing.T) {
	g := &Gatherer{BreakGlassGroups: []string{"sre"}, BreakGlassControllers: DefaultBreakGlassControllers}
	ann := map[string]string{AnnotationBreakGlass: "INC-7"}
	rs := "system:serviceaccount:kube-system:replicaset-controller"
	user := func(name string, groups ...string) *authenticationv1.UserInfo {
		return &authenticationv1.UserInfo{Username: name, Groups: groups}
	}
	cases := []struct {
		name string
		req  Request
		want BreakGlass
	}{
		{"no annotation", Request{User: user("alice", "sre")}, BreakGlass{}},
		{"door without a user", Request{Annotations: ann}, BreakGlass{}},
		{"member creates", Request{Annotations: ann, User: user("alice", "sre")},
			BreakGlass{Requested: true, Reason: "INC-7", Changed: true, Enabled: true, Authorized: true, User: "alice"}},
		{"non-member creates", Request{Annotations: ann, User: user("bob", "dev")},
			BreakGlass{Requested: true, Reason: "INC-7", Changed: true, Enabled: true, User: "bob"}},
		{"non-member keeps it on update", Request{Annotations: ann, OldAnnotations: ann, Update: true, User: user("bob")},
			BreakGlass{Requested: true, Reason: "INC-7", Enabled: true, User: "bob"}},
		{"non-member changes the reason", Request{Annotations: ann, OldAnnotations: map[string]string{AnnotationBreakGlass: "INC-1"}, Update: true, User: user("bob")},
			BreakGlass{Requested: true, Reason: "INC-7", Changed: true, Enabled: true, User: "bob"}},
		{"controller creates an owned object", Request{Annotations: ann, Owned: true, User: user(rs)},
			BreakGlass{Requested: true, Reason: "INC-7", Changed: true, Enabled: true, Authorized: true, User: rs}},
		{"controller creates an object it does not own", Request{Annotations: ann, User: user(rs)},
			BreakGlass{Requested: true, Reason: "INC-7", Changed: true, Enabled: true, User: rs}},
	}
	for _, tc := range cases {
		if got := g.breakGlass(tc.req); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
	off := &Gatherer{}
	if got := off.breakGlass(Request{Annotations: ann, User: user("alice", "sre")}); got.Enabled || got.Authorized {
		t.Errorf("break-glass without groups: %+v", got)
	}
}
