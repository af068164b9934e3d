package controllers

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner"
	"github.com/imagetrust/imagetrust/scanner/registry/registrytest"
	"github.com/imagetrust/imagetrust/scanner/vulndb/dbtest"
)

func controllerRef(obj client.Object, apiVersion, kind string) *metav1.OwnerReference {
	return &metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: obj.GetName(), UID: obj.GetUID(), Controller: ptr.To(true)}
}

func podTemplate(lbls map[string]string, image string, restart corev1.RestartPolicy) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: lbls},
		Spec:       corev1.PodSpec{RestartPolicy: restart, Containers: []corev1.Container{{Name: "c", Image: image}}},
	}
}

func workloadsOf(r *securityv1alpha1.ImageTrustReport) string {
	var parts []string
	for _, w := range r.Spec.Workloads {
		parts = append(parts, w.Kind+"/"+w.Name+"["+strings.Join(w.Containers, ",")+"]")
	}
	return strings.Join(parts, " ")
}

func findingIDs(r *securityv1alpha1.ImageTrustReport) []string {
	var ids []string
	for _, f := range r.Status.TopFindings {
		ids = append(ids, f.ID+" "+string(f.Severity)+" "+f.Package+" "+f.InstalledVersion+" "+f.FixedVersion)
	}
	return ids
}

// sigRequests counts GETs of the cosign signature tag of digest.
func sigRequests(reg *registrytest.Registry, digest string) int {
	tag := strings.Replace(digest, ":", "-", 1) + ".sig"
	n := 0
	for _, r := range reg.Requests() {
		if r.Method == "GET" && strings.HasSuffix(r.Path, "/manifests/"+tag) {
			n++
		}
	}
	return n
}

// TestPodsBecomeReports: pods with statuses set like a kubelet's → one report per (namespace,
// digest) with the right digest, top-level owners, signature, SBOM and counts; the digest
// used in two namespaces is verified once.
func TestPodsBecomeReports(t *testing.T) {
	h := newHarness(t, "secure", "open")
	h.labelNamespace("secure", map[string]string{"imagetrust-test/secure": "true"})
	app := h.push("team/app:1.0", registrytest.DebianImage(debianPkgs))
	h.sign(app, syftSBOM(t, app))
	tool := h.push("team/tool:3.19", registrytest.AlpineImage(alpinePkgs))
	pol := h.keyPolicy("secure")
	h.create(pol)

	secure := h.ns["secure"]
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: secure, Name: "web"},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: podTemplate(map[string]string{"app": "web"}, "app", corev1.RestartPolicyAlways)},
	}
	h.create(deploy)
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: secure, Name: "web-5d9f8", OwnerReferences: []metav1.OwnerReference{*controllerRef(deploy, "apps/v1", "Deployment")}},
		Spec: appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: podTemplate(map[string]string{"app": "web"}, "app", corev1.RestartPolicyAlways)},
	}
	h.create(rs)
	cron := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Namespace: secure, Name: "backup"},
		Spec: batchv1.CronJobSpec{Schedule: "0 * * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
			Template: podTemplate(nil, "tool", corev1.RestartPolicyNever)}}},
	}
	h.create(cron)
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: secure, Name: "backup-29000000", OwnerReferences: []metav1.OwnerReference{*controllerRef(cron, "batch/v1", "CronJob")}},
		Spec:       batchv1.JobSpec{Template: podTemplate(nil, "tool", corev1.RestartPolicyNever)},
	}
	h.create(job)

	h.start()
	appSpec, toolSpec := h.reg.Repo("team/app:1.0"), h.reg.Repo("team/tool:3.19")
	appID := app.String()                                                // containerd: repo@sha256:…
	toolID := "docker-pullable://" + tool.String()                       // cri-dockerd
	bareToolID := tool.DigestStr()                                       // bare digest: repository from the spec
	for _, pod := range []string{"web-5d9f8-abcde", "web-5d9f8-fghij"} { // two replicas, one workload
		h.runPod("secure", pod, controllerRef(rs, "apps/v1", "ReplicaSet"),
			ctr{name: "app", image: appSpec, imageID: appID},
			ctr{name: "setup", image: toolSpec, imageID: toolID, kind: "init"},
			ctr{name: "debug", image: toolSpec, imageID: toolID, kind: "ephemeral"})
	}
	h.runPod("secure", "backup-29000000-x7k2p", controllerRef(job, "batch/v1", "Job"), ctr{name: "backup", image: toolSpec, imageID: bareToolID})
	h.waitReport("secure", app.DigestStr(), isReady)
	h.waitIdle()
	sigFetches := sigRequests(h.reg, app.DigestStr())
	registryBefore := h.reg.Counts().Total
	// The same digest starts running in a second namespace: its report is fanned out from the
	// assessment already made, without another verification or any registry request.
	h.runPod("open", "adhoc", nil, ctr{name: "app", image: appSpec, imageID: appID})
	appOpen := h.waitReport("open", app.DigestStr(), isReady)
	h.waitIdle()
	// Before its status arrives the new pod's tag is resolved (one GET, plus the ping that
	// precedes it); nothing about the image itself is fetched again.
	reqs := h.reg.Requests()
	for _, r := range reqs[registryBefore:] {
		if r.Path != "/v2/" && !((r.Method == "HEAD" || r.Method == "GET") && r.Path == "/v2/team/app/manifests/1.0") {
			t.Errorf("the second namespace's report cost a registry request: %s %s", r.Method, r.Path)
		}
	}
	appSecure := h.waitReport("secure", app.DigestStr(), isReady)
	toolSecure := h.waitReport("secure", tool.DigestStr(), isReady)

	repo := h.reg.Repo("team/app")
	if appSecure.Spec.Image != repo || appSecure.Spec.ShortDigest != shortDigest(app.DigestStr()) ||
		appSecure.Name != reportName(repo, app.DigestStr(), 0) || !slices.Equal(appSecure.Spec.Tags, []string{"1.0"}) {
		t.Errorf("app spec: name %s %+v", appSecure.Name, appSecure.Spec)
	}
	if got := workloadsOf(appSecure); got != "Deployment/web[app]" || appSecure.Spec.WorkloadCount != 1 {
		t.Errorf("app workloads in secure = %q (count %d)", got, appSecure.Spec.WorkloadCount)
	}
	if got := workloadsOf(toolSecure); got != "CronJob/backup[backup] Deployment/web[debug,setup]" || toolSecure.Spec.WorkloadCount != 2 {
		t.Errorf("tool workloads in secure = %q (count %d)", got, toolSecure.Spec.WorkloadCount)
	}
	if got := workloadsOf(appOpen); got != "Pod/adhoc[app]" {
		t.Errorf("app workloads in open = %q", got)
	}

	sig := appSecure.Status.Signature
	authority := AuthorityName(pol.Name, "release")
	if sig.State != securityv1alpha1.SignatureVerified || len(sig.Signers) != 1 || sig.Signers[0].Authority != authority ||
		sig.Signers[0].KeyFingerprint != h.key.Fingerprint() || sig.CheckedAt == nil {
		t.Errorf("app signature in secure: %+v", sig)
	}
	if s := appSecure.Status.SBOM; s.Source != securityv1alpha1.SBOMAttested || s.Format != "syft-json" || s.Packages != 3 {
		t.Errorf("app SBOM: %+v", s)
	}
	v := appSecure.Status.Vulnerabilities
	if v.Critical != 1 || v.High != 0 || v.Low != 1 || v.Fixable != 1 || v.DBSchema == "" || v.ScannedAt == nil {
		t.Errorf("app vulnerabilities: %+v", v)
	}
	wantFindings := []string{"CVE-2026-1000 Critical openssl 3.0.11-1~deb12u2 3.0.15-1~deb12u1", "CVE-2026-1001 Low tar 1.34+dfsg-1.2+deb12u1 "}
	if got := findingIDs(appSecure); !slices.Equal(got, wantFindings) {
		t.Errorf("app findings\n got %q\nwant %q", got, wantFindings)
	}
	if p := appSecure.Status.Policy; p.Verdict != securityv1alpha1.VerdictUntrusted || len(p.FailedChecks) != 1 ||
		p.FailedChecks[0].Check != "vulnerabilities" || !strings.Contains(p.FailedChecks[0].Message, "CVE-2026-1000") {
		t.Errorf("app policy in secure: %+v", p)
	}

	if s := toolSecure.Status.Signature; s.State != securityv1alpha1.SignatureUnsigned {
		t.Errorf("tool signature: %+v", s)
	}
	if s := toolSecure.Status.SBOM; s.Source != securityv1alpha1.SBOMGenerated || s.Format != "syft-json" || s.Packages < 2 {
		t.Errorf("tool SBOM: %+v", s)
	}
	if v := toolSecure.Status.Vulnerabilities; v.High != 1 || v.Critical != 0 || v.Fixable != 1 {
		t.Errorf("tool vulnerabilities: %+v", v)
	}
	if p := toolSecure.Status.Policy; p.Verdict != securityv1alpha1.VerdictUntrusted || p.FailedChecks[0].Check != "signature" {
		t.Errorf("tool policy: %+v", p)
	}

	// The open namespace has no policy: NotRequired and Unknown, but SBOM and findings all the same.
	if s := appOpen.Status.Signature; s.State != securityv1alpha1.SignatureNotRequired || len(s.Signers) != 0 {
		t.Errorf("app signature in open: %+v", s)
	}
	if p := appOpen.Status.Policy; p.Verdict != securityv1alpha1.VerdictUnknown || len(p.Policies) != 0 {
		t.Errorf("app policy in open: %+v", p)
	}
	if got := findingIDs(appOpen); !slices.Equal(got, wantFindings) {
		t.Errorf("app findings in open: %q", got)
	}
	if c := conditionOf(appOpen, securityv1alpha1.ConditionSignatureVerified); c == nil || c.Reason != "NotRequired" {
		t.Errorf("open SignatureVerified condition: %+v", c)
	}
	for _, typ := range []string{"Ready", "SBOMAvailable", "Scanned"} {
		if c := conditionOf(appSecure, typ); c == nil || c.Status != metav1.ConditionTrue {
			t.Errorf("%s condition: %+v", typ, c)
		}
	}

	// One digest, two namespaces, three pods: verified once, its signature fetched once.
	st := h.ctrls.Engine.Stats()
	if n := st.Verifications[imageOf(app)]; n != 1 {
		t.Errorf("app digest verified %d times, want 1", n)
	}
	if n := sigRequests(h.reg, app.DigestStr()); n != sigFetches || n == 0 {
		t.Errorf("app signature tag fetched %d times in total, %d of them for the first namespace", n, sigFetches)
	}
	if n := st.Verifications[imageOf(tool)]; n != 1 {
		t.Errorf("tool digest verified %d times, want 1", n)
	}

	// The Untrusted app report warned once, on the report and on its Deployment.
	reportEv := h.events.about("ImageTrustReport/" + secure + "/" + appSecure.Name)
	if len(reportEv) != 1 || reportEv[0].Type != corev1.EventTypeWarning || reportEv[0].Reason != ReasonNewVulnerabilities ||
		!strings.HasPrefix(reportEv[0].Note, "1 new Critical/High vulnerabilities: CVE-2026-1000; image is Untrusted: ") {
		t.Errorf("events on the app report: %+v", reportEv)
	}
	if ev := h.events.about("Deployment/" + secure + "/web"); len(ev) != 2 { // app and tool reports
		t.Errorf("events on the Deployment: %+v", ev)
	}
	h.eventually(20*time.Second, "event stored in the API", func() error {
		evs, err := h.apiEvents(secure, "ImageTrustReport", appSecure.Name)
		if err != nil {
			return err
		}
		if len(evs) != 1 || evs[0].Type != corev1.EventTypeWarning || evs[0].Reason != ReasonNewVulnerabilities || evs[0].Action != "Assess" {
			return fmt.Errorf("events %+v", evs)
		}
		return nil
	})

	// A pod going away keeps the report while the other replica and workload remain.
	var pod corev1.Pod
	if err := h.c.Get(h.ctx, client.ObjectKey{Namespace: secure, Name: "backup-29000000-x7k2p"}, &pod); err != nil {
		t.Fatal(err)
	}
	if err := h.c.Delete(h.ctx, &pod); err != nil {
		t.Fatal(err)
	}
	h.waitReport("secure", tool.DigestStr(), func(r *securityv1alpha1.ImageTrustReport) error {
		if got := workloadsOf(r); got != "Deployment/web[debug,setup]" || r.Spec.WorkloadCount != 1 {
			return fmt.Errorf("workloads %q", got)
		}
		return nil
	})
}

// TestRegistryScanTagFilterAndNewTag: a RegistryScan's filtered tags become reports owned by
// the scan; a tag pushed later shows up after the next tick of the (fake) clock.
func TestRegistryScanTagFilterAndNewTag(t *testing.T) {
	h := newHarness(t, "scans")
	ns := h.ns["scans"]
	version := func(v string) name.Digest {
		return h.push("scan/app:"+v, registrytest.ImageFromLayers(registrytest.LayerFromFiles(map[string]string{"etc/app-version": v})))
	}
	d100 := version("1.0.0")
	d110 := version("1.1.0")
	if _, err := h.reg.Push(h.ctx, h.reg.Repo("scan/app:latest"), registrytest.ImageFromLayers(registrytest.LayerFromFiles(map[string]string{"etc/app-version": "1.1.0"}))); err != nil {
		t.Fatal(err)
	}
	drc := version("2.0.0-rc1")
	ddev := version("dev")
	scan := &securityv1alpha1.RegistryScan{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "catalog"},
		Spec: securityv1alpha1.RegistryScanSpec{
			Repositories: []string{h.reg.Repo("scan/app")},
			TagFilter:    securityv1alpha1.TagFilter{Include: []string{`^\d+\.\d+\.\d+`}, Exclude: []string{`-rc`}, Semver: ">=1.0.0"},
			Schedule:     "@every 1h",
			Insecure:     true,
		},
	}
	h.create(scan)
	h.start()

	var first metav1.Time
	h.eventually(60*time.Second, "scan status", func() error {
		var s securityv1alpha1.RegistryScan
		if err := h.c.Get(h.ctx, client.ObjectKeyFromObject(scan), &s); err != nil {
			return err
		}
		st := s.Status
		if st.TagsFound != 2 || st.DigestsFound != 2 || st.LastSuccessfulTime == nil || st.NextScheduleTime == nil {
			return fmt.Errorf("status %+v", st)
		}
		if !st.NextScheduleTime.Time.Equal(st.LastScheduleTime.Time.Add(time.Hour)) {
			return fmt.Errorf("next %v is not last %v + 1h", st.NextScheduleTime, st.LastScheduleTime)
		}
		if c := findCondition(st.Conditions, "Ready"); c == nil || c.Status != metav1.ConditionTrue || c.Message != "2 tags, 2 digests" {
			return fmt.Errorf("conditions %+v", st.Conditions)
		}
		first = *st.LastScheduleTime
		return nil
	})
	for d, tags := range map[string][]string{d100.DigestStr(): {"1.0.0"}, d110.DigestStr(): {"1.1.0"}} {
		r := h.waitReport("scans", d, isReady)
		if !slices.Equal(r.Spec.Tags, tags) || !slices.Equal(r.Spec.RegistryScans, []string{"catalog"}) || r.Spec.WorkloadCount != 0 {
			t.Errorf("report %s spec %+v", r.Name, r.Spec)
		}
		if len(r.OwnerReferences) != 1 || r.OwnerReferences[0].Kind != "RegistryScan" || r.OwnerReferences[0].Name != "catalog" ||
			r.OwnerReferences[0].UID != scan.UID {
			t.Errorf("report %s owners %+v", r.Name, r.OwnerReferences)
		}
		if r.Status.Signature.State != securityv1alpha1.SignatureNotRequired || r.Status.Policy.Verdict != securityv1alpha1.VerdictUnknown ||
			r.Status.SBOM.Source != securityv1alpha1.SBOMGenerated {
			t.Errorf("report %s status %+v", r.Name, r.Status)
		}
	}
	rs, err := h.reports("scans")
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[drc.DigestStr()] != nil || rs[ddev.DigestStr()] != nil {
		t.Fatalf("reports for %d digests (rc or dev must be filtered out)", len(rs))
	}

	// A new release: nothing happens until the schedule comes round.
	d120 := version("1.2.0")
	h.waitIdle()
	time.Sleep(300 * time.Millisecond)
	if rs, _ := h.reports("scans"); len(rs) != 2 {
		t.Fatalf("the new tag was listed before the next tick: %d reports", len(rs))
	}
	h.clock.Advance(time.Hour)
	h.waitReport("scans", d120.DigestStr(), isReady)
	var s securityv1alpha1.RegistryScan
	if err := h.c.Get(h.ctx, client.ObjectKeyFromObject(scan), &s); err != nil {
		t.Fatal(err)
	}
	if s.Status.TagsFound != 3 || s.Status.DigestsFound != 3 || !s.Status.LastScheduleTime.Time.Equal(first.Add(time.Hour)) {
		t.Fatalf("after the tick: %+v (first run %v)", s.Status, first)
	}
}

func findCondition(conds []metav1.Condition, typ string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == typ {
			return &conds[i]
		}
	}
	return nil
}

// TestSignatureRemovedWarnsOnce: the signature disappears from the registry; the policy's next
// scheduled re-verification flips the report, with exactly one Warning event.
func TestSignatureRemovedWarnsOnce(t *testing.T) {
	h := newHarness(t, "secure")
	h.labelNamespace("secure", map[string]string{"imagetrust-test/secure": "true"})
	img := h.push("team/signed:1", registrytest.DebianImage([]registrytest.Pkg{{Name: "tar", Version: "1.34+dfsg-1.2+deb12u1"}, {Name: "zlib1g", Version: "1:1.2.13.dfsg-1"}}))
	h.sign(img, syftSBOM(t, img))
	pol := h.keyPolicy("sig")
	pol.Spec.Vulnerabilities = nil // Trusted while signed
	h.create(pol)
	h.start()
	h.runPod("secure", "signed", nil, ctr{name: "app", image: h.reg.Repo("team/signed:1"), imageID: img.String()})

	r := h.waitReport("secure", img.DigestStr(), func(r *securityv1alpha1.ImageTrustReport) error {
		if err := isReady(r); err != nil {
			return err
		}
		if r.Status.Signature.State != securityv1alpha1.SignatureVerified || r.Status.Policy.Verdict != securityv1alpha1.VerdictTrusted {
			return fmt.Errorf("signature %s verdict %s", r.Status.Signature.State, r.Status.Policy.Verdict)
		}
		return nil
	})
	h.waitIdle()
	regarding := "ImageTrustReport/" + h.ns["secure"] + "/" + r.Name
	before := len(h.events.about(regarding))
	podBefore := len(h.events.about("Pod/" + h.ns["secure"] + "/signed"))

	sigTag := img.Context().Tag(strings.Replace(img.DigestStr(), ":", "-", 1) + ".sig")
	if err := remote.Delete(sigTag, h.reg.RemoteOptions(h.ctx)...); err != nil {
		t.Fatal(err)
	}
	// Nothing re-verifies before the schedule.
	time.Sleep(300 * time.Millisecond)
	if n := h.ctrls.Engine.Stats().Verifications[imageOf(img)]; n != 1 {
		t.Fatalf("re-verified %d times before the schedule", n)
	}
	h.clock.Advance(time.Hour)
	h.waitReport("secure", img.DigestStr(), func(r *securityv1alpha1.ImageTrustReport) error {
		if r.Status.Signature.State != securityv1alpha1.SignatureUnsigned || r.Status.Policy.Verdict != securityv1alpha1.VerdictUntrusted {
			return fmt.Errorf("signature %s verdict %s", r.Status.Signature.State, r.Status.Policy.Verdict)
		}
		return nil
	})
	h.waitIdle()
	time.Sleep(500 * time.Millisecond)
	evs := h.events.about(regarding)[before:]
	if len(evs) != 1 || evs[0].Type != corev1.EventTypeWarning || evs[0].Reason != ReasonSignatureNotVerified ||
		!strings.Contains(evs[0].Note, "signature was Verified, now Unsigned") || !strings.Contains(evs[0].Note, "verdict changed from Trusted to Untrusted") {
		t.Fatalf("events after the signature was removed: %+v", evs)
	}
	if ev := h.events.about("Pod/" + h.ns["secure"] + "/signed")[podBefore:]; len(ev) != 1 || ev[0].Reason != ReasonSignatureNotVerified {
		t.Fatalf("events on the pod: %+v", ev)
	}
	h.eventually(20*time.Second, "one SignatureNotVerified event in the API", func() error {
		evs, err := h.apiEvents(h.ns["secure"], "ImageTrustReport", r.Name)
		if err != nil {
			return err
		}
		n := 0
		for _, e := range evs {
			if e.Reason == ReasonSignatureNotVerified {
				n++
				if e.Type != corev1.EventTypeWarning || e.Series != nil {
					return fmt.Errorf("event %+v", e)
				}
			}
		}
		if n != 1 {
			return fmt.Errorf("%d SignatureNotVerified events", n)
		}
		return nil
	})
	// The next cycle finds the same state: no further event.
	h.clock.Advance(time.Hour)
	h.eventually(20*time.Second, "second re-verification", func() error {
		if n := h.ctrls.Engine.Stats().Verifications[imageOf(img)]; n != 3 {
			return fmt.Errorf("%d verifications", n)
		}
		return nil
	})
	h.waitIdle()
	if n := len(h.events.about(regarding)) - before; n != 1 {
		t.Fatalf("%d events after an unchanged re-verification, want still 1", n)
	}
}

// TestDBSwapRematchesWithoutRegistryTraffic: a new DB archive with a new CVE in bash updates
// the reports from the cached SBOMs — no manifest or blob request reaches the registry. Of a
// fleet of four images only the one with bash is rematched (the DB diff touches bash alone)
// and only its report is written; every report's findings equal a fresh match against the new
// DB.
func TestDBSwapRematchesWithoutRegistryTraffic(t *testing.T) {
	h := newHarness(t, "apps")
	app := h.push("team/app:1.0", registrytest.DebianImage(debianPkgs))
	slim := h.push("team/slim:1.0", registrytest.DebianImage(debianPkgs[:2])) // openssl and tar, no bash
	tool := h.push("team/tool:3.19", registrytest.AlpineImage(alpinePkgs))
	files := h.push("team/files:1", registrytest.ImageFromLayers(registrytest.LayerFromFiles(map[string]string{"etc/files-version": "1"})))
	fleet := []name.Digest{app, slim, tool, files}
	h.start()
	h.runPod("apps", "web", nil, ctr{name: "app", image: h.reg.Repo("team/app:1.0"), imageID: app.String()},
		ctr{name: "slim", image: h.reg.Repo("team/slim:1.0"), imageID: slim.String()},
		ctr{name: "tool", image: h.reg.Repo("team/tool:3.19"), imageID: tool.String()},
		ctr{name: "files", image: h.reg.Repo("team/files:1"), imageID: files.String()})
	var r *securityv1alpha1.ImageTrustReport
	for _, d := range fleet {
		if got := h.waitReport("apps", d.DigestStr(), isReady); d == app {
			r = got
		}
	}
	h.waitIdle()
	if r.Status.Vulnerabilities.Critical != 1 || slices.ContainsFunc(findingIDs(r), func(s string) bool { return strings.HasPrefix(s, "CVE-2026-3000") }) {
		t.Fatalf("before the swap: %+v %q", r.Status.Vulnerabilities, findingIDs(r))
	}
	oldBuilt := r.Status.Vulnerabilities.DBBuilt
	before := h.ctrls.Engine.Stats()
	rvs := map[string]string{}
	rs, err := h.reports("apps")
	if err != nil {
		t.Fatal(err)
	}
	for d, rep := range rs {
		rvs[d] = rep.ResourceVersion
	}

	h.reg.Reset()
	h.writes.reset()
	copyFile(t, newArchive, h.archive)
	h.ctrls.CheckDBArchive(h.ctx)
	r = h.waitReport("apps", app.DigestStr(), func(r *securityv1alpha1.ImageTrustReport) error {
		if r.Status.Vulnerabilities.Critical != 2 {
			return fmt.Errorf("critical %d", r.Status.Vulnerabilities.Critical)
		}
		return nil
	})
	h.waitIdle()
	time.Sleep(300 * time.Millisecond) // room for a stray write to show
	want := []string{"CVE-2026-1000 Critical openssl 3.0.11-1~deb12u2 3.0.15-1~deb12u1",
		"CVE-2026-3000 Critical bash 5.2.15-2+b7 5.2.15-3", "CVE-2026-1001 Low tar 1.34+dfsg-1.2+deb12u1 "}
	if got := findingIDs(r); !slices.Equal(got, want) {
		t.Errorf("findings after the swap\n got %q\nwant %q", got, want)
	}
	if !r.Status.Vulnerabilities.DBBuilt.After(oldBuilt.Time) {
		t.Errorf("dbBuilt %v not after %v", r.Status.Vulnerabilities.DBBuilt, oldBuilt)
	}
	c := h.reg.Counts()
	t.Logf("registry requests during the rematch: %+v", c)
	if c.Manifests.Sum() != 0 || c.Blobs.Sum() != 0 || c.Total != 0 {
		t.Fatalf("the rematch reached the registry: %+v", c)
	}

	// Only the image with bash was rematched, and only its report was written.
	after := h.ctrls.Engine.Stats()
	lr := after.LastRematch
	writes := h.writes.snapshot()
	t.Logf("DB swap: rematch %+v; API writes %v (report writes %d)", lr, writes, h.writes.reportWrites())
	if lr.Full || lr.Fallback != "" || lr.Rematched != 1 || lr.Changed != 1 || lr.Queued != 1 || lr.Invalidated < 1 {
		t.Errorf("last rematch %+v, want incremental: 1 SBOM rematched, 1 changed, 1 image queued", lr)
	}
	if n := h.writes.reportWrites(); n != 1 || writes["patch ImageTrustReport/status"] != 1 {
		t.Errorf("%d report writes (%v), want the one status patch of %s", n, writes, shortDigest(app.DigestStr()))
	}
	rs, err = h.reports("apps")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range fleet {
		rep := rs[d.DigestStr()]
		if changed := rep.ResourceVersion != rvs[d.DigestStr()]; changed != (d == app) {
			t.Errorf("report of %s: resourceVersion %s → %s, want a change only for the image with bash",
				imageOf(d), rvs[d.DigestStr()], rep.ResourceVersion)
		}
		// The findings of every report, written or not, are those of a fresh match of its SBOM
		// against the new DB.
		doc, ok, err := sharedCache.Get(d.DigestStr())
		if err != nil || !ok {
			t.Fatalf("SBOM of %s not cached: %v", imageOf(d), err)
		}
		fresh, err := h.db.Match(h.ctx, doc.Document)
		if err != nil {
			t.Fatal(err)
		}
		var wantIDs []string
		for _, f := range fresh.Findings {
			fixed := ""
			if len(f.FixedVersions) > 0 {
				fixed = f.FixedVersions[0]
			}
			wantIDs = append(wantIDs, f.ID+" "+f.Severity+" "+f.Package+" "+f.Version+" "+fixed)
		}
		gotIDs := findingIDs(rep)
		slices.Sort(wantIDs)
		slices.Sort(gotIDs)
		if !slices.Equal(gotIDs, wantIDs) {
			t.Errorf("findings of %s\n got %q\nwant %q (fresh match)", imageOf(d), gotIDs, wantIDs)
		}
		sum := scanner.Summarize(fresh.Findings)
		if v := rep.Status.Vulnerabilities; v == nil || int(v.Critical) != sum.Critical || int(v.High) != sum.High ||
			int(v.Low) != sum.Low || int(v.Fixable) != sum.Fixable {
			t.Errorf("summary of %s: %+v, fresh match %+v", imageOf(d), rep.Status.Vulnerabilities, sum)
		}
		digest := d.DigestStr()
		if after.Verifications[imageOf(d)] != before.Verifications[imageOf(d)] {
			t.Errorf("%s re-verified on a DB change", imageOf(d))
		}
		// The rematch came from the fleet: no image was matched one by one again.
		if after.Matches[digest] != before.Matches[digest] {
			t.Errorf("%s matched one by one %d times after the swap", imageOf(d), after.Matches[digest]-before.Matches[digest])
		}
		if wantRefreshed := map[bool]int{true: 1}[d == app]; after.Refreshed[digest] != wantRefreshed {
			t.Errorf("%s refreshed %d times, want %d", imageOf(d), after.Refreshed[digest], wantRefreshed)
		}
	}
	ev := h.events.about("ImageTrustReport/" + h.ns["apps"] + "/" + r.Name)
	if len(ev) != 2 || ev[1].Reason != ReasonNewVulnerabilities || ev[1].Note != "1 new Critical/High vulnerabilities: CVE-2026-3000" {
		t.Errorf("events: %+v", ev)
	}

	// The periodic full rematch recomputes every SBOM, finds nothing changed and writes nothing.
	h.writes.reset()
	full := h.ctrls.Engine.RematchFleet(h.ctx, true)
	h.waitIdle()
	t.Logf("full rematch: %+v; report writes %d", full, h.writes.reportWrites())
	if !full.Full || full.Rematched != len(fleet) || full.Changed != 0 || full.Queued != 0 || full.Fallback != "" {
		t.Errorf("full rematch %+v, want all %d SBOMs rematched and none changed", full, len(fleet))
	}
	if n := h.writes.reportWrites(); n != 0 {
		t.Errorf("%d report writes after a full rematch that changed nothing", n)
	}
}

// TestDBSwapWithoutDiffRefreshesEveryReport: a DB change the diff cannot describe (a new
// operating system row) makes the fleet rematch every SBOM, and every report is refreshed —
// findings and DB build — as before the fleet, still without a registry request.
func TestDBSwapWithoutDiffRefreshesEveryReport(t *testing.T) {
	h := newHarness(t, "nodiff")
	app := h.push("team/app:1.0", registrytest.DebianImage(debianPkgs))
	tool := h.push("team/tool:3.19", registrytest.AlpineImage(alpinePkgs))
	h.start()
	h.runPod("nodiff", "web", nil, ctr{name: "app", image: h.reg.Repo("team/app:1.0"), imageID: app.String()},
		ctr{name: "tool", image: h.reg.Repo("team/tool:3.19"), imageID: tool.String()})
	old := map[string]*securityv1alpha1.ImageTrustReport{}
	for _, d := range []name.Digest{app, tool} {
		old[d.DigestStr()] = h.waitReport("nodiff", d.DigestStr(), isReady)
	}
	h.waitIdle()

	vulns := append(append([]dbtest.Vuln(nil), baseVulns...), newVuln,
		dbtest.Vuln{ID: "CVE-2030-0001", Severity: "High", Ecosystem: dbtest.EcosystemDeb, Distro: "debian:10", Package: "x", Constraint: "< 1"})
	archive, err := dbtest.Archive(filepath.Join(t.TempDir(), "os"), time.Now().Add(-time.Hour), vulns)
	if err != nil {
		t.Fatal(err)
	}
	h.reg.Reset()
	h.writes.reset()
	copyFile(t, archive, h.archive)
	h.ctrls.CheckDBArchive(h.ctx)
	for _, d := range []name.Digest{app, tool} {
		h.waitReport("nodiff", d.DigestStr(), func(r *securityv1alpha1.ImageTrustReport) error {
			if !r.Status.Vulnerabilities.DBBuilt.After(old[d.DigestStr()].Status.Vulnerabilities.DBBuilt.Time) {
				return fmt.Errorf("dbBuilt %v", r.Status.Vulnerabilities.DBBuilt)
			}
			return nil
		})
	}
	h.waitIdle()
	lr := h.ctrls.Engine.Stats().LastRematch
	t.Logf("DB swap without a diff: rematch %+v; report writes %d", lr, h.writes.reportWrites())
	if !lr.Full || lr.Reason != "table operating_systems changed" || lr.Rematched != 2 || lr.Changed != 1 || lr.Queued != 2 || lr.Fallback != "" {
		t.Errorf("last rematch %+v, want a full one over 2 SBOMs (1 changed) queuing both images", lr)
	}
	if n := h.writes.reportWrites(); n != 2 {
		t.Errorf("%d report writes, want one for each image", n)
	}
	rs, err := h.reports("nodiff")
	if err != nil {
		t.Fatal(err)
	}
	wantCritical := map[string]int32{app.DigestStr(): 2, tool.DigestStr(): 0}
	wantHigh := map[string]int32{app.DigestStr(): 0, tool.DigestStr(): 1}
	for d, r := range rs {
		if v := r.Status.Vulnerabilities; v.Critical != wantCritical[d] || v.High != wantHigh[d] {
			t.Errorf("%s: %+v", shortDigest(d), v)
		}
	}
	if c := h.reg.Counts(); c.Total != 0 {
		t.Errorf("the rematch reached the registry: %+v", c)
	}
}

// TestSteadyStateWritesNothing: a full schedule cycle (policy re-verification and a registry
// scan relisting) with nothing changed writes no report.
func TestSteadyStateWritesNothing(t *testing.T) {
	h := newHarness(t, "steady")
	h.labelNamespace("steady", map[string]string{"imagetrust-test/secure": "true"})
	app := h.push("team/app:1.0", registrytest.DebianImage(debianPkgs))
	h.sign(app, syftSBOM(t, app))
	tool := h.push("team/tool:3.19", registrytest.AlpineImage(alpinePkgs))
	listed := h.push("scan/app:1.0.0", registrytest.ImageFromLayers(registrytest.LayerFromFiles(map[string]string{"etc/app-version": "1.0.0"})))
	h.create(h.keyPolicy("steady"))
	scan := &securityv1alpha1.RegistryScan{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.ns["steady"], Name: "catalog"},
		Spec:       securityv1alpha1.RegistryScanSpec{Repositories: []string{h.reg.Repo("scan/app")}, Schedule: "@every 1h", Insecure: true},
	}
	h.create(scan)
	h.start()
	h.runPod("steady", "web", nil, ctr{name: "app", image: h.reg.Repo("team/app:1.0"), imageID: app.String()},
		ctr{name: "tool", image: h.reg.Repo("team/tool:3.19"), imageID: tool.String()})
	for _, d := range []name.Digest{app, tool, listed} {
		h.waitReport("steady", d.DigestStr(), isReady)
	}
	h.waitIdle()
	time.Sleep(300 * time.Millisecond)

	var s securityv1alpha1.RegistryScan
	if err := h.c.Get(h.ctx, client.ObjectKeyFromObject(scan), &s); err != nil {
		t.Fatal(err)
	}
	lastRun := s.Status.LastScheduleTime.Time
	rvs := map[string]string{}
	rs, _ := h.reports("steady")
	for d, r := range rs {
		rvs[d] = r.ResourceVersion
	}
	before := h.ctrls.Engine.Stats().Verifications
	h.writes.reset()
	h.reg.Reset()

	h.clock.Advance(time.Hour + time.Second) // one full cycle of the policy and the scan
	h.eventually(30*time.Second, "the cycle ran", func() error {
		if err := h.c.Get(h.ctx, client.ObjectKeyFromObject(scan), &s); err != nil {
			return err
		}
		if !s.Status.LastScheduleTime.Time.After(lastRun) {
			return errors.New("scan did not run")
		}
		st := h.ctrls.Engine.Stats()
		for _, d := range []name.Digest{app, tool, listed} {
			if st.Verifications[imageOf(d)] != before[imageOf(d)]+1 {
				return fmt.Errorf("%s verified %d times", shortDigest(d.DigestStr()), st.Verifications[imageOf(d)])
			}
		}
		return nil
	})
	h.waitIdle()
	time.Sleep(time.Second)
	writes := h.writes.snapshot()
	c := h.reg.Counts()
	t.Logf("steady-state cycle: API writes %v (total %d, report writes %d); registry requests %d (manifests %+v, blobs %+v, tags %d, referrers %d, ping %d)",
		writes, h.writes.total(), h.writes.reportWrites(), c.Total, c.Manifests, c.Blobs, c.Tags, c.Referrers, c.Ping)
	if n := h.writes.reportWrites(); n != 0 {
		t.Fatalf("%d report writes in a steady state: %v", n, writes)
	}
	rs, _ = h.reports("steady")
	for d, r := range rs {
		if r.ResourceVersion != rvs[d] {
			t.Errorf("report %s changed (resourceVersion %s → %s)", r.Name, rvs[d], r.ResourceVersion)
		}
	}
	// Re-verification reads signature and attestation payloads (small blobs of the .sig and
	// .att artifacts); the images' own layers and configs are never pulled again.
	own := map[string]bool{}
	for _, img := range []v1.Image{registrytest.DebianImage(debianPkgs), registrytest.AlpineImage(alpinePkgs),
		registrytest.ImageFromLayers(registrytest.LayerFromFiles(map[string]string{"etc/app-version": "1.0.0"}))} {
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		own[m.Config.Digest.String()] = true
		for _, l := range m.Layers {
			own[l.Digest.String()] = true
		}
	}
	for _, r := range h.reg.Requests() {
		if r.Kind == registrytest.KindBlob && own[r.Path[strings.LastIndex(r.Path, "/")+1:]] {
			t.Errorf("a steady-state cycle pulled an image blob: %s %s", r.Method, r.Path)
		}
	}
}

// TestManagerRestartMidScan: the manager stops while an image is being assessed; its successor
// finishes the work without losing, duplicating or rewriting reports.
func TestManagerRestartMidScan(t *testing.T) {
	h := newHarness(t, "restart")
	var digests []name.Digest
	for i, v := range []string{"a", "b", "c"} {
		d := h.push(fmt.Sprintf("restart/%s:1", v), registrytest.ImageFromLayers(registrytest.LayerFromFiles(map[string]string{"etc/restart": v + fmt.Sprint(i)})))
		digests = append(digests, d)
	}
	slow := digests[2]
	fault := h.reg.AddFault(registrytest.Fault{PathContains: "/manifests/" + slow.DigestStr(), Method: "GET", Status: -1, Delay: 20 * time.Second, Times: 1})
	h.start()
	for i, d := range digests {
		h.runPod("restart", fmt.Sprintf("p%d", i), nil, ctr{name: "c", image: d.Context().Tag("1").String(), imageID: d.String()})
	}
	first := map[string]*securityv1alpha1.ImageTrustReport{}
	for _, d := range digests[:2] {
		first[d.DigestStr()] = h.waitReport("restart", d.DigestStr(), isReady)
	}
	h.eventually(10*time.Second, "the slow image is being assessed", func() error {
		if fault.Hits() != 1 {
			return errors.New("not yet")
		}
		return nil
	})
	if rs, _ := h.reports("restart"); rs[slow.DigestStr()] != nil {
		t.Fatal("the slow image was reported before the restart")
	}
	h.stop()

	h.writes.reset()
	h.start()
	h.waitReport("restart", slow.DigestStr(), isReady)
	h.waitIdle()
	rs, err := h.reports("restart")
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 {
		t.Fatalf("%d reports after the restart, want 3", len(rs))
	}
	for d, r := range first {
		now := rs[d]
		if now.UID != r.UID || now.Name != r.Name || now.ResourceVersion != r.ResourceVersion {
			t.Errorf("report %s was replaced or rewritten: uid %s→%s rv %s→%s", r.Name, r.UID, now.UID, r.ResourceVersion, now.ResourceVersion)
		}
	}
	w := h.writes.snapshot()
	if w["delete ImageTrustReport"] != 0 || w["create ImageTrustReport"] != 1 || w["patch ImageTrustReport/status"] != 1 {
		t.Errorf("writes of the second manager: %v", w)
	}
}

// TestMissingSecretsStallAndRecover: a RegistryScan whose credentials Secret is missing is
// Stalled with a message naming it, and recovers once it is created; a policy whose key Secret
// is missing is Stalled and its reports say why.
func TestMissingSecretsStallAndRecover(t *testing.T) {
	h := newHarness(t, "private")
	ns := h.ns["private"]
	priv := registrytest.New(t, registrytest.WithBasicAuth("robot", "s3cret-pass"))
	h.reg = priv // the harness registry is the private one for this test
	img := h.push("private/app:1.0", registrytest.ImageFromLayers(registrytest.LayerFromFiles(map[string]string{"etc/private": "1"})))
	pol := h.keyPolicy("private")
	pol.Spec.NamespaceSelector = nil
	pol.Spec.Authorities[0].Key = &securityv1alpha1.KeyAuthority{SecretRef: &securityv1alpha1.SecretKeyReference{Namespace: ns, Name: "cosign-pub", Key: "cosign.pub"}}
	h.create(pol)
	scan := &securityv1alpha1.RegistryScan{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "private"},
		Spec: securityv1alpha1.RegistryScanSpec{Repositories: []string{priv.Repo("private/app")}, Schedule: "@every 1h", Insecure: true,
			CredentialsSecretRef: &securityv1alpha1.LocalSecretKeyReference{Name: "regcreds"}},
	}
	h.create(scan)
	h.start()

	h.eventually(30*time.Second, "scan stalled", func() error {
		var s securityv1alpha1.RegistryScan
		if err := h.c.Get(h.ctx, client.ObjectKeyFromObject(scan), &s); err != nil {
			return err
		}
		c := findCondition(s.Status.Conditions, "Stalled")
		want := fmt.Sprintf("credentials Secret %s/regcreds not found", ns)
		if c == nil || c.Status != metav1.ConditionTrue || c.Reason != "CredentialsSecretNotReady" || c.Message != want {
			return fmt.Errorf("conditions %+v", s.Status.Conditions)
		}
		if r := findCondition(s.Status.Conditions, "Ready"); r == nil || r.Status != metav1.ConditionFalse || r.Message != want {
			return fmt.Errorf("ready %+v", r)
		}
		return nil
	})
	h.eventually(30*time.Second, "policy stalled", func() error {
		var p securityv1alpha1.ImageTrustPolicy
		if err := h.c.Get(h.ctx, client.ObjectKeyFromObject(pol), &p); err != nil {
			return err
		}
		c := findCondition(p.Status.Conditions, "Stalled")
		if c == nil || c.Status != metav1.ConditionTrue || c.Message != fmt.Sprintf("authority release: Secret %s/cosign-pub not found", ns) {
			return fmt.Errorf("conditions %+v", p.Status.Conditions)
		}
		return nil
	})
	if rs, _ := h.reports("private"); len(rs) != 0 {
		t.Fatalf("reports before the credentials exist: %d", len(rs))
	}

	cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{priv.Host(): map[string]string{"username": "robot", "password": "s3cret-pass"}}})
	h.create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "regcreds"}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: cfg}})
	r := h.waitReport("private", img.DigestStr(), func(r *securityv1alpha1.ImageTrustReport) error {
		c := conditionOf(r, securityv1alpha1.ConditionStalled)
		if c == nil || c.Reason != "PolicyStalled" {
			return fmt.Errorf("conditions %+v", r.Status.Conditions)
		}
		return nil
	})
	wantMsg := fmt.Sprintf("policy cannot be enforced: authority release: Secret %s/cosign-pub not found", ns)
	if p := r.Status.Policy; p.Verdict != securityv1alpha1.VerdictUnknown || len(p.FailedChecks) != 1 || p.FailedChecks[0].Message != wantMsg {
		t.Errorf("report policy with a stalled policy: %+v", p)
	}
	if c := conditionOf(r, securityv1alpha1.ConditionReady); c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "cosign-pub not found") {
		t.Errorf("report Ready: %+v", c)
	}
	var s securityv1alpha1.RegistryScan
	if err := h.c.Get(h.ctx, client.ObjectKeyFromObject(scan), &s); err != nil {
		t.Fatal(err)
	}
	if findCondition(s.Status.Conditions, "Stalled") != nil || findCondition(s.Status.Conditions, "Ready").Status != metav1.ConditionTrue || s.Status.LastSuccessfulTime == nil {
		t.Errorf("scan after the Secret appeared: %+v", s.Status)
	}

	// The key Secret appears and the image gets signed: the policy recovers, the report verifies.
	h.sign(img, nil)
	h.create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cosign-pub"}, Data: map[string][]byte{"cosign.pub": h.key.PublicPEM}})
	h.waitReport("private", img.DigestStr(), func(r *securityv1alpha1.ImageTrustReport) error {
		if r.Status.Signature.State != securityv1alpha1.SignatureVerified || conditionOf(r, securityv1alpha1.ConditionStalled) != nil {
			return fmt.Errorf("signature %s conditions %+v", r.Status.Signature.State, r.Status.Conditions)
		}
		return isReady(r)
	})
	var p securityv1alpha1.ImageTrustPolicy
	if err := h.c.Get(h.ctx, client.ObjectKeyFromObject(pol), &p); err != nil {
		t.Fatal(err)
	}
	if findCondition(p.Status.Conditions, "Stalled") != nil || findCondition(p.Status.Conditions, "Ready").Status != metav1.ConditionTrue {
		t.Errorf("policy after the Secret appeared: %+v", p.Status.Conditions)
	}
	// No credential anywhere in what the controllers wrote.
	all, _ := json.Marshal(s.Status)
	for _, e := range h.events.events {
		all = append(all, e.Note...)
	}
	if strings.Contains(string(all), "s3cret-pass") {
		t.Fatal("a credential leaked into a status or event")
	}
}

// TestGarbageCollectionWaitsForReplacement: after a rollout the old digest's report is deleted
// once the grace period has passed — but not before the new digest's report exists.
func TestGarbageCollectionWaitsForReplacement(t *testing.T) {
	h := newHarness(t, "gc")
	ns := h.ns["gc"]
	oldImg := h.push("gc/app:1", registrytest.ImageFromLayers(registrytest.LayerFromFiles(map[string]string{"etc/gc": "1"})))
	newV1 := registrytest.ImageFromLayers(registrytest.LayerFromFiles(map[string]string{"etc/gc": "2"}))
	newImg := h.push("gc/app:2", newV1)
	newCfg, err := newV1.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: podTemplate(map[string]string{"app": "web"}, "app", corev1.RestartPolicyAlways)},
	}
	h.create(deploy)
	rs := func(n string) *appsv1.ReplicaSet {
		r := &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: n, OwnerReferences: []metav1.OwnerReference{*controllerRef(deploy, "apps/v1", "Deployment")}},
			Spec: appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				Template: podTemplate(map[string]string{"app": "web"}, "app", corev1.RestartPolicyAlways)},
		}
		h.create(r)
		return r
	}
	rs1, rs2 := rs("web-1"), rs("web-2")
	h.start()
	old := h.runPod("gc", "web-1-a", controllerRef(rs1, "apps/v1", "ReplicaSet"), ctr{name: "c", image: h.reg.Repo("gc/app:1"), imageID: oldImg.String()})
	oldReport := h.waitReport("gc", oldImg.DigestStr(), isReady)

	// The rollout: the new pod's image takes a while to assess, the old pod goes away.
	fault := h.reg.AddFault(registrytest.Fault{PathContains: "/blobs/" + newCfg.String(), Method: "GET", Status: -1, Delay: 3 * time.Second, Times: 1})
	h.runPod("gc", "web-2-a", controllerRef(rs2, "apps/v1", "ReplicaSet"), ctr{name: "c", image: h.reg.Repo("gc/app:2"), imageID: newImg.String()})
	if err := h.c.Delete(h.ctx, old); err != nil {
		t.Fatal(err)
	}
	h.eventually(10*time.Second, "the new image is being assessed", func() error {
		if fault.Hits() != 1 {
			return errors.New("not yet")
		}
		return nil
	})
	// The old report keeps listing the workload that last ran it: that is how the collector
	// knows which replacement to wait for.
	h.eventually(10*time.Second, "old pod forgotten", func() error {
		if h.ctrls.Engine.demand.isWanted(imageKey{oldImg.Context().Name(), oldImg.DigestStr()}) {
			return errors.New("old digest still wanted")
		}
		return nil
	})

	n, err := h.ctrls.Engine.CollectGarbage(h.ctx)
	if err != nil || n != 0 {
		t.Fatalf("within the grace period: deleted %d, err %v", n, err)
	}
	h.clock.Advance(2 * time.Hour)
	n, err = h.ctrls.Engine.CollectGarbage(h.ctx)
	if err != nil || n != 0 {
		t.Fatalf("before the replacement exists: deleted %d, err %v", n, err)
	}
	if rs, _ := h.reports("gc"); rs[oldImg.DigestStr()] == nil {
		t.Fatal("the old report was deleted before its replacement existed")
	}
	h.waitReport("gc", newImg.DigestStr(), func(r *securityv1alpha1.ImageTrustReport) error {
		if got := workloadsOf(r); got != "Deployment/web[c]" {
			return fmt.Errorf("workloads %q", got)
		}
		return isReady(r)
	})
	if _, err := h.ctrls.Engine.CollectGarbage(h.ctx); err != nil {
		t.Fatal(err)
	}
	h.eventually(10*time.Second, "old report deleted", func() error {
		var r securityv1alpha1.ImageTrustReport
		err := h.c.Get(h.ctx, client.ObjectKeyFromObject(oldReport), &r)
		if err == nil {
			return errors.New("still there")
		}
		return client.IgnoreNotFound(err)
	})
	if rs, _ := h.reports("gc"); len(rs) != 1 || rs[newImg.DigestStr()] == nil {
		t.Fatalf("reports after the collection: %d", len(rs))
	}
}

// TestPolicyEditReevaluatesFromCache: accepting a finding in the policy flips the verdict from
// the cached assessment, without a registry request; the metrics follow.
func TestPolicyEditReevaluatesFromCache(t *testing.T) {
	h := newHarness(t, "edit")
	h.labelNamespace("edit", map[string]string{"imagetrust-test/secure": "true"})
	app := h.push("team/app:1.0", registrytest.DebianImage(debianPkgs))
	h.sign(app, syftSBOM(t, app))
	pol := h.keyPolicy("edit")
	h.create(pol)
	h.start()
	h.runPod("edit", "web", nil, ctr{name: "app", image: h.reg.Repo("team/app:1.0"), imageID: app.String()})
	h.waitReport("edit", app.DigestStr(), func(r *securityv1alpha1.ImageTrustReport) error {
		if r.Status.Policy == nil || r.Status.Policy.Verdict != securityv1alpha1.VerdictUntrusted {
			return fmt.Errorf("policy %+v", r.Status.Policy)
		}
		return isReady(r)
	})
	h.waitIdle()
	h.reg.Reset()
	verified := h.ctrls.Engine.Stats().Verifications[imageOf(app)]

	var p securityv1alpha1.ImageTrustPolicy
	if err := h.c.Get(h.ctx, client.ObjectKeyFromObject(pol), &p); err != nil {
		t.Fatal(err)
	}
	p.Spec.Vulnerabilities.Ignore = []securityv1alpha1.VulnerabilityException{{ID: "CVE-2026-1000", Reason: "not reachable"}}
	if err := h.c.Update(h.ctx, &p); err != nil {
		t.Fatal(err)
	}
	r := h.waitReport("edit", app.DigestStr(), func(r *securityv1alpha1.ImageTrustReport) error {
		if r.Status.Policy.Verdict != securityv1alpha1.VerdictTrusted {
			return fmt.Errorf("verdict %s", r.Status.Policy.Verdict)
		}
		return nil
	})
	h.waitIdle()
	if c := h.reg.Counts(); c.Total != 0 {
		t.Fatalf("a policy edit reached the registry: %+v", c)
	}
	if n := h.ctrls.Engine.Stats().Verifications[imageOf(app)]; n != verified {
		t.Fatalf("a policy edit re-verified the image (%d → %d)", verified, n)
	}
	ev := h.events.about("ImageTrustReport/" + h.ns["edit"] + "/" + r.Name)
	if last := ev[len(ev)-1]; last.Type != corev1.EventTypeNormal || last.Reason != ReasonVerdictChanged || last.Note != "verdict changed from Untrusted to Trusted" {
		t.Errorf("last event: %+v", last)
	}
	h.eventually(10*time.Second, "policy status", func() error {
		if err := h.c.Get(h.ctx, client.ObjectKeyFromObject(pol), &p); err != nil {
			return err
		}
		if p.Status.ObservedGeneration != p.Generation || p.Status.MatchedReports != 1 || p.Status.NextVerificationTime == nil ||
			findCondition(p.Status.Conditions, "Ready") == nil || findCondition(p.Status.Conditions, "Ready").Status != metav1.ConditionTrue {
			return fmt.Errorf("status %+v", p.Status)
		}
		return nil
	})

	// The metrics are on controller-runtime's registry.
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, f := range families {
		found[f.GetName()] = true
		if f.GetName() == "imagetrust_registry_requests_total" {
			hostSeen := false
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "registry" && l.GetValue() == h.reg.Host() {
						hostSeen = true
					}
				}
			}
			if !hostSeen {
				t.Errorf("no registry request series for %s", h.reg.Host())
			}
		}
	}
	for _, n := range []string{"imagetrust_images", "imagetrust_images_by_signature", "imagetrust_vulnerabilities", "imagetrust_scan_duration_seconds",
		"imagetrust_verify_duration_seconds", "imagetrust_queue_depth", "imagetrust_vulndb_age_seconds", "imagetrust_vulndb_info", "imagetrust_registry_requests_total"} {
		if !found[n] {
			t.Errorf("metric %s not registered", n)
		}
	}
}

// TestStoredReportSizeWith500Findings stores the report of an image with 500 findings in the
// API server and measures it: the top-findings bound keeps it small whatever the image holds.
func TestStoredReportSizeWith500Findings(t *testing.T) {
	h := newHarness(t, "size")
	var vulns []dbtest.Vuln
	sev := []string{"Critical", "High", "Medium", "Low", "Negligible"}
	for i := 0; i < 500; i++ {
		pkg := []string{"openssl", "tar", "bash"}[i%3]
		v := dbtest.Vuln{ID: fmt.Sprintf("CVE-2025-%05d", 10000+i), Severity: sev[i%len(sev)], Ecosystem: dbtest.EcosystemDeb, Package: pkg,
			Constraint: "< 99:99", Description: "synthetic vulnerability for the report size measurement"}
		if i%2 == 0 {
			v.FixedVersion = "99:99"
		}
		vulns = append(vulns, v)
	}
	archive, err := dbtest.Archive(t.TempDir(), time.Now().Add(-time.Hour), vulns)
	if err != nil {
		t.Fatal(err)
	}
	copyFile(t, archive, h.archive)
	app := h.push("team/app:1.0", registrytest.DebianImage(debianPkgs))
	h.start()
	h.runPod("size", "web", nil, ctr{name: "app", image: h.reg.Repo("team/app:1.0"), imageID: app.String()})
	r := h.waitReport("size", app.DigestStr(), isReady)
	v := r.Status.Vulnerabilities
	if total := v.Critical + v.High + v.Medium + v.Low + v.Negligible + v.Unknown; total != 500 || v.Fixable != 250 || len(r.Status.TopFindings) != 50 {
		t.Fatalf("summary %+v, %d top findings", v, len(r.Status.TopFindings))
	}
	full, _ := json.Marshal(r)
	r.ManagedFields = nil
	bare, _ := json.Marshal(r)
	t.Logf("stored ImageTrustReport with 500 findings: %d bytes as read (%d without managedFields)", len(full), len(bare))
	if len(full) > 32<<10 {
		t.Fatalf("report is %d bytes", len(full))
	}
}

// A DB change reaches a report at once even when the image's scheduled re-verification is
// already queued behind a slow registry: the rematch pass leaves the verification to a
// background pass that follows it.
func TestRematchDoesNotWaitForAQueuedReverification(t *testing.T) {
	h := newHarness(t, "apps")
	h.labelNamespace("apps", map[string]string{"imagetrust-test/secure": "true"})
	app := h.push("team/app:1.0", registrytest.DebianImage(debianPkgs))
	h.sign(app, syftSBOM(t, app))
	pol := h.keyPolicy("slow")
	h.create(pol)
	h.start()
	h.runPod("apps", "web", nil, ctr{name: "app", image: h.reg.Repo("team/app:1.0"), imageID: app.String()})
	h.waitReport("apps", app.DigestStr(), isReady)
	h.waitIdle()
	k := imageKey{app.Context().Name(), app.DigestStr()}
	before := h.ctrls.Engine.Stats().Verifications[k.String()]

	// every signature lookup now takes a second; the re-verification is asked, then the DB changes
	h.reg.AddFault(registrytest.Fault{PathContains: ".sig", Status: -1, Times: -1, Delay: time.Second})
	h.ctrls.Engine.results.ask(k, work{verify: true})
	copyFile(t, newArchive, h.archive)
	h.ctrls.CheckDBArchive(h.ctx)
	start := time.Now()
	h.waitReport("apps", app.DigestStr(), func(r *securityv1alpha1.ImageTrustReport) error {
		if r.Status.Vulnerabilities == nil || r.Status.Vulnerabilities.Critical != 2 {
			return errors.New("new DB not in the report yet")
		}
		return nil
	})
	if n := h.ctrls.Engine.Stats().Verifications[k.String()]; n != before {
		t.Fatalf("the rematch pass re-verified first (%d → %d verifications, %v)", before, n, time.Since(start))
	}
	h.eventually(30*time.Second, "deferred re-verification", func() error {
		if n := h.ctrls.Engine.Stats().Verifications[k.String()]; n != before+1 {
			return fmt.Errorf("%d verifications", n)
		}
		return nil
	})
}

// A policy's matchedReports (kubectl's REPORTS column) follows the pods within seconds, not at
// the next minute's status refresh.
func TestPolicyMatchedReportsFollowPods(t *testing.T) {
	h := newHarness(t, "apps")
	h.labelNamespace("apps", map[string]string{"imagetrust-test/secure": "true"})
	app := h.push("team/app:1.0", registrytest.DebianImage(debianPkgs))
	pol := h.keyPolicy("counted")
	h.create(pol)
	h.start()
	// read as kubectl's REPORTS column does: an absent field is an empty cell, not 0
	matched := func(want int64) func() error {
		return func() error {
			var p unstructured.Unstructured
			p.SetGroupVersionKind(securityv1alpha1.GroupVersion.WithKind("ImageTrustPolicy"))
			if err := h.c.Get(h.ctx, client.ObjectKeyFromObject(pol), &p); err != nil {
				return err
			}
			n, found, err := unstructured.NestedInt64(p.Object, "status", "matchedReports")
			gen, _, _ := unstructured.NestedInt64(p.Object, "status", "observedGeneration")
			if err != nil || !found || n != want || gen == 0 {
				return fmt.Errorf("matchedReports %d (present %v, %v; generation %d)", n, found, err, gen)
			}
			return nil
		}
	}
	h.eventually(20*time.Second, "no report yet", matched(0))
	pod := h.runPod("apps", "web", nil, ctr{name: "app", image: h.reg.Repo("team/app:1.0"), imageID: app.String()})
	h.eventually(20*time.Second, "one report", matched(1))
	if err := h.c.Delete(h.ctx, pod); err != nil {
		t.Fatal(err)
	}
	h.eventually(20*time.Second, "the pod is gone", matched(0))
}
