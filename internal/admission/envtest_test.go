package admission

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	v1 "github.com/imagetrust/imagetrust/api/v1alpha1"
)

// scenario is a namespace with one Enforce (or Audit) policy over registry.example.com/<ns>/**
// and reports for a trusted and an untrusted digest.
type scenario struct {
	ns, trusted, untrusted, unassessed string
}

func newScenario(t *testing.T, w *world, ns string, mode v1.AdmissionMode) scenario {
	t.Helper()
	root := "registry.example.com/" + ns
	ensureNamespace(t, w, ns, nil)
	p := &v1.ImageTrustPolicy{ObjectMeta: metav1.ObjectMeta{Name: ns},
		Spec: v1.ImageTrustPolicySpec{Images: []string{root + "/**"}, Admission: &v1.AdmissionSpec{Mode: mode}}}
	if err := w.env.Client.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	w.waitCached(t, p)
	s := scenario{ns: ns, trusted: root + "/app@" + digestOf(ns, 1), untrusted: root + "/app@" + digestOf(ns, 2), unassessed: root + "/app@" + digestOf(ns, 3)}
	verdict := func(v v1.Verdict) v1.ImageTrustReportStatus {
		st := v1.ImageTrustReportStatus{Policy: &v1.PolicyResult{Verdict: v, Results: []v1.PolicyVerdict{{Policy: ns, Verdict: v, ObservedGeneration: p.Generation}}}}
		if v == v1.VerdictUntrusted {
			st.Policy.FailedChecks = []v1.FailedCheck{{Policy: ns, Check: "signature", Message: "no signature found"}}
		}
		return st
	}
	writeReport(t, w, ns, "trusted", root+"/app", digestOf(ns, 1), verdict(v1.VerdictTrusted))
	writeReport(t, w, ns, "untrusted", root+"/app", digestOf(ns, 2), verdict(v1.VerdictUntrusted))
	return s
}

func pod(ns, image string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: podName("pod"), Annotations: annotations},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}}}
}

func deployment(ns, image string, annotations map[string]string) *appsv1.Deployment {
	labels := map[string]string{"app": "x"}
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: podName("deploy")},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}}}}}
}

// events returns the events with reason in ns, waiting up to a few seconds for at least one
// (the recorder is asynchronous) unless none are expected.
func events(t *testing.T, w *world, ns, reason string, wantAny bool) []eventsv1.Event {
	t.Helper()
	var out []eventsv1.Event
	deadline := time.Now().Add(5 * time.Second)
	for {
		var list eventsv1.EventList
		if err := w.env.Client.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		out = out[:0]
		for _, e := range list.Items {
			if e.Reason == reason {
				out = append(out, e)
			}
		}
		if len(out) > 0 || !wantAny || time.Now().After(deadline) {
			return out
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func mustDeny(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("admitted, want a refusal mentioning %q", want)
	}
	for _, s := range want {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("refusal %q lacks %q", err, s)
		}
	}
}

func mustAllow(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("refused: %v", err)
	}
}

// TestBreakGlass: only members of the break-glass group may set the annotation; their use is
// admitted, warned about and recorded; a workload controller copying it into Pods it owns is
// honoured; a non-member keeping it while changing the image is not.
func TestBreakGlass(t *testing.T) {
	w := webhookWorld(t)
	s := newScenario(t, w, "break-glass", v1.AdmissionEnforce)
	ctx := context.Background()
	alice, bob := w.user(t, "alice", "sre"), w.user(t, "bob", "developers")
	bg := map[string]string{AnnotationBreakGlass: "INC-7 hotfix"}

	p := pod(s.ns, s.untrusted, bg)
	mustAllow(t, alice.Create(ctx, p))
	if ws := alice.warnings.take(); len(ws) != 1 || !strings.Contains(ws[0], `break-glass by "alice" (INC-7 hotfix)`) {
		t.Errorf("alice's warnings = %q", ws)
	}
	evs := events(t, w, s.ns, ReasonBreakGlass, true)
	if len(evs) != 1 || evs[0].Regarding.Kind != "Pod" || evs[0].Regarding.Name != p.Name || evs[0].Type != corev1.EventTypeWarning ||
		!strings.Contains(evs[0].Note, `break-glass by "alice" (INC-7 hotfix)`) || !strings.Contains(evs[0].Note, "is Untrusted") {
		t.Fatalf("break-glass events = %+v", evs)
	}

	mustDeny(t, bob.Create(ctx, pod(s.ns, s.untrusted, bg)), `user "bob" may not set annotation imagetrust.dev/break-glass`)
	mustDeny(t, bob.Create(ctx, pod(s.ns, s.trusted, bg)), "may not set annotation")
	mustDeny(t, bob.Create(ctx, pod(s.ns, s.untrusted, nil)), "is Untrusted")

	// alice rolls out a Deployment under break-glass; the ReplicaSet controller's Pods (owned,
	// carrying the template's annotation) are admitted.
	dep := deployment(s.ns, s.untrusted, bg)
	mustAllow(t, alice.Create(ctx, dep))
	rsController := w.user(t, "system:serviceaccount:kube-system:replicaset-controller")
	owned := pod(s.ns, s.untrusted, bg)
	owned.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: dep.Name + "-1", UID: "u", Controller: ptr.To(true)}}
	mustAllow(t, rsController.Create(ctx, owned))
	notOwned := pod(s.ns, s.untrusted, bg)
	mustDeny(t, rsController.Create(ctx, notOwned), "may not set annotation")

	// bob keeps alice's annotation but swaps in another image: not his to use.
	if err := bob.Get(ctx, client.ObjectKeyFromObject(dep), dep); err != nil {
		t.Fatal(err)
	}
	dep.Spec.Template.Spec.Containers[0].Image = s.unassessed
	mustDeny(t, bob.Update(ctx, dep), "has not been assessed")
	if ws := bob.warnings.take(); len(ws) == 0 || !strings.Contains(strings.Join(ws, " "), "not honoured") {
		t.Errorf("bob's warnings = %q", ws)
	}
	w.takeAssessed()
}

// TestAuditRecordsEvents: an Audit policy admits an untrusted image, warns the client and
// records an Event on the Pod.
func TestAuditRecordsEvents(t *testing.T) {
	w := webhookWorld(t)
	s := newScenario(t, w, "audit-events", v1.AdmissionAudit)
	u := w.user(t, "auditor")
	p := pod(s.ns, s.untrusted, nil)
	mustAllow(t, u.Create(context.Background(), p))
	if ws := u.warnings.take(); len(ws) != 1 || !strings.Contains(ws[0], "would be denied") {
		t.Errorf("warnings = %q", ws)
	}
	evs := events(t, w, s.ns, ReasonAudit, true)
	if len(evs) != 1 || evs[0].Regarding.Name != p.Name || !strings.Contains(evs[0].Note, "signature: no signature found") {
		t.Fatalf("audit events = %+v", evs)
	}
}

// TestDryRunHasNoSideEffects: a server-side dry run is judged the same, but queues nothing and
// records no event (the webhook declares sideEffects NoneOnDryRun).
func TestDryRunHasNoSideEffects(t *testing.T) {
	w := webhookWorld(t)
	s := newScenario(t, w, "dry-run", v1.AdmissionEnforce)
	audit := newScenario(t, w, "dry-run-audit", v1.AdmissionAudit)
	u := w.user(t, "dry")
	ctx := context.Background()
	mustDeny(t, u.Create(ctx, pod(s.ns, s.unassessed, nil), client.DryRunAll), "has not been assessed")
	mustAllow(t, u.Create(ctx, pod(audit.ns, audit.untrusted, nil), client.DryRunAll))
	if got := w.takeAssessed(); len(got) != 0 {
		t.Errorf("dry run queued %v", got)
	}
	time.Sleep(time.Second)
	if evs := events(t, w, audit.ns, ReasonAudit, false); len(evs) != 0 {
		t.Errorf("dry run recorded %d events", len(evs))
	}
	// The same requests for real do both.
	mustDeny(t, u.Create(ctx, pod(s.ns, s.unassessed, nil)), "has not been assessed")
	if got := w.takeAssessed(); len(got) != 1 || got[0] != "registry.example.com/dry-run/app@"+digestOf("dry-run", 3) {
		t.Errorf("queued %v", got)
	}
}

// TestUpdatesJudgeChangedImages: an update that keeps the images (a scale) is admitted even
// when their verdict turned; a changed image and an added ephemeral container are judged.
func TestUpdatesJudgeChangedImages(t *testing.T) {
	w := webhookWorld(t)
	s := newScenario(t, w, "updates", v1.AdmissionEnforce)
	u := w.user(t, "updater")
	ctx := context.Background()
	dep := deployment(s.ns, s.trusted, nil)
	mustAllow(t, u.Create(ctx, dep))
	p := pod(s.ns, s.trusted, nil)
	mustAllow(t, u.Create(ctx, p))

	// The trusted digest turns Untrusted.
	var r v1.ImageTrustReport
	if err := w.env.Client.Get(ctx, types.NamespacedName{Namespace: s.ns, Name: "trusted"}, &r); err != nil {
		t.Fatal(err)
	}
	r.Status.Policy.Results[0].Verdict = v1.VerdictUntrusted
	if err := w.env.Client.Status().Update(ctx, &r); err != nil {
		t.Fatal(err)
	}
	w.waitCached(t, &r)

	dep.Spec.Replicas = ptr.To(int32(3))
	mustAllow(t, u.Update(ctx, dep))
	dep.Spec.Template.Spec.Containers[0].Image = s.untrusted
	mustDeny(t, u.Update(ctx, dep), "is Untrusted")

	p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
		Name: "debug", Image: s.untrusted, TerminationMessagePolicy: corev1.TerminationMessageReadFile, ImagePullPolicy: corev1.PullIfNotPresent}}}
	mustDeny(t, u.SubResource("ephemeralcontainers").Update(ctx, p), `(ephemeralContainer "debug") is Untrusted`)
}

// TestObservedTagsNeedNoRegistry: a tag fed through Tags.Observe (as RegistryScans will) is
// judged by its digest's report without any registry request.
func TestObservedTagsNeedNoRegistry(t *testing.T) {
	w := webhookWorld(t)
	s := newScenario(t, w, "observed-tags", v1.AdmissionEnforce)
	u := w.user(t, "tagger")
	before := testRegistry(t).Counts()
	w.adm.Tags.Observe("registry.example.com/observed-tags/app", "v9", digestOf("observed-tags", 2))
	mustDeny(t, u.Create(context.Background(), pod(s.ns, "registry.example.com/observed-tags/app:v9", nil)), "is Untrusted", "app:v9")
	if after := testRegistry(t).Counts(); after.Total != before.Total {
		t.Errorf("registry saw %d requests", after.Total-before.Total)
	}
}

// TestWebhookDownFollowsFailurePolicy: with the shipped failurePolicy (Fail) a request the
// webhook cannot answer is refused; with Ignore it is admitted.
func TestWebhookDownFollowsFailurePolicy(t *testing.T) {
	w := webhookWorld(t)
	ctx := context.Background()
	down, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := shippedWebhook("https://127.0.0.1:" + strconv.Itoa(down))
	if err != nil {
		t.Fatal(err)
	}
	if fp := *cfg.Webhooks[0].FailurePolicy; fp != admissionregistrationv1.Fail {
		t.Fatalf("shipped failurePolicy = %s, want Fail", fp)
	}
	cfg.Name = "imagetrust-admission-down"
	sel := cfg.Webhooks[0].NamespaceSelector
	sel.MatchLabels = map[string]string{"imagetrust-test": "webhook-down"}
	cfg.Webhooks[0].ClientConfig.CABundle = w.servingCA(t)
	if err := w.env.Client.Create(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.env.Client.Delete(ctx, cfg) })
	ensureNamespace(t, w, "webhook-down", map[string]string{"imagetrust-test": "webhook-down"})
	u := w.user(t, "down")

	err = waitFor(10*time.Second, func() (bool, error) {
		err := u.Create(ctx, pod("webhook-down", "registry.example.com/none/app:1", nil), client.DryRunAll)
		return err != nil && strings.Contains(err.Error(), "failed calling webhook"), err
	})
	if err != nil {
		t.Fatalf("with failurePolicy Fail and no webhook: %v", err)
	}
	cfg.Webhooks[0].FailurePolicy = ptr.To(admissionregistrationv1.Ignore)
	if err := w.env.Client.Update(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	err = waitFor(10*time.Second, func() (bool, error) {
		err := u.Create(ctx, pod("webhook-down", "registry.example.com/none/app:1", nil), client.DryRunAll)
		return err == nil, err
	})
	if err != nil {
		t.Fatalf("with failurePolicy Ignore and no webhook: %v", err)
	}
}

// TestImagePolicyWebhookSparesKubeSystem: the ImagePolicyWebhook has no namespace selector,
// so the backend itself never refuses kube-system (or its own namespace), even for images a
// policy covers and nobody assessed.
func TestImagePolicyWebhookSparesKubeSystem(t *testing.T) {
	w := imagePolicyWorld(t)
	ctx := context.Background()
	p := &v1.ImageTrustPolicy{ObjectMeta: metav1.ObjectMeta{Name: "everything"},
		Spec: v1.ImageTrustPolicySpec{Images: []string{"registry.example.com/system-images/**"}, Admission: &v1.AdmissionSpec{Mode: v1.AdmissionEnforce}}}
	if err := w.env.Client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	w.waitCached(t, p)
	u := w.user(t, "system-admin")
	img := "registry.example.com/system-images/coredns@" + digestOf("kube-system", 1)
	mustAllow(t, u.Create(ctx, pod("kube-system", img, nil)))
	mustAllow(t, u.Create(ctx, pod(managerNS, img, nil)))
	ensureNamespace(t, w, "ordinary", nil)
	mustDeny(t, u.Create(ctx, pod("ordinary", img, nil)), "image policy webhook backend denied one or more images", "has not been assessed")
	w.takeAssessed()
}

// TestReadinessWaitsForCaches: a replica whose report cache cannot sync (here: no RBAC to list
// reports yet) stays unready, so a Service never routes admission requests to it; once it can
// sync it becomes ready by itself.
func TestReadinessWaitsForCaches(t *testing.T) {
	w := webhookWorld(t)
	ctx := context.Background()
	user, err := w.env.AddUser(envtest.User{Name: "replica", Groups: []string{"replicas"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	grant := func(name string, rules ...rbacv1.PolicyRule) {
		t.Helper()
		cr := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}
		crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name},
			Subjects: []rbacv1.Subject{{Kind: "Group", Name: "replicas"}}}
		for _, o := range []client.Object{cr, crb} {
			if err := w.env.Client.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
	}
	list := []string{"get", "list", "watch"}
	grant("replica-base",
		rbacv1.PolicyRule{APIGroups: []string{"security.imagetrust.dev"}, Resources: []string{"imagetrustpolicies"}, Verbs: list},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: list},
		rbacv1.PolicyRule{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}})

	dir := t.TempDir()
	now := time.Now()
	ca, _ := newCA(now, time.Hour)
	serving, _ := issue(ca, []string{"127.0.0.1"}, now, time.Hour)
	_ = os.WriteFile(filepath.Join(dir, "tls.crt"), serving.Cert, 0o600)
	_ = os.WriteFile(filepath.Join(dir, "tls.key"), serving.Key, 0o600)
	port, _ := freePort()
	replica, err := launchManager(w.env, user.Config(), Options{ManagerNamespace: managerNS, Webhook: true,
		WebhookHost: "127.0.0.1", WebhookPort: port, Certs: CertOptions{Mode: CertsFromFiles, Dir: dir}})
	if err != nil {
		t.Fatal(err)
	}
	granted := false
	t.Cleanup(func() {
		if granted { // a manager whose caches never synced does not stop
			replica.stop()
			if err := <-replica.done; err != nil {
				t.Errorf("replica manager: %v", err)
			}
		}
	})
	var body string
	for i := 0; i < 30; i++ {
		var code int
		if code, body = replica.readyz(); code == http.StatusOK {
			t.Fatalf("replica ready without being able to list reports: %s", body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(body, "[-]admission failed") || !strings.Contains(body, "[+]admission-listener ok") {
		t.Errorf("readyz while the report cache cannot sync:\n%s", body)
	}
	// Requests reaching it anyway (no Service in front) are answered with an error, never from
	// an empty cache: the API server then applies failurePolicy.
	resp := postAdmissionReview(t, port, ca.Cert)
	if !strings.Contains(resp, `"allowed":false`) || !strings.Contains(resp, "admission caches have not synced yet") {
		t.Errorf("answer before sync: %s", resp)
	}
	grant("replica-reports", rbacv1.PolicyRule{APIGroups: []string{"security.imagetrust.dev"}, Resources: []string{"imagetrustreports"}, Verbs: list})
	granted = true
	if err := replica.waitReady(90 * time.Second); err != nil {
		t.Fatalf("replica did not become ready once it could list reports: %v", err)
	}
}

// postAdmissionReview sends a minimal Pod AdmissionReview straight to a webhook listener.
func postAdmissionReview(t *testing.T, port int, caPEM []byte) string {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	body := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","kind":{"group":"","version":"v1","kind":"Pod"},` +
		`"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"default","operation":"CREATE","userInfo":{"username":"x"},` +
		`"object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default"},"spec":{"containers":[{"name":"a","image":"nginx"}]}}}}`
	resp, err := c.Post(fmt.Sprintf("https://127.0.0.1:%d%s", port, WebhookPath), "application/json", strings.NewReader(body))
	if err != nil {
		t.Error(err)
		return ""
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestImagePolicyWarningsAreAudited: ImageReview cannot warn a client, so what the webhook door
// would warn about reaches the API server's audit log as an audit annotation of the request.
func TestImagePolicyWarningsAreAudited(t *testing.T) {
	w := imagePolicyWorld(t)
	s := newScenario(t, w, "imagepolicy-audit", v1.AdmissionAudit)
	p := pod(s.ns, s.untrusted, nil)
	mustAllow(t, w.user(t, "audited").Create(context.Background(), p))
	const key = "imagepolicywebhook.image-policy.k8s.io/" + ImageReviewWarningsKey
	err := waitFor(10*time.Second, func() (bool, error) {
		b, err := os.ReadFile(w.auditLog)
		if err != nil {
			return false, err
		}
		for _, line := range strings.Split(string(b), "\n") {
			var ev struct {
				Stage       string                `json:"stage"`
				ObjectRef   struct{ Name string } `json:"objectRef"`
				Annotations map[string]string     `json:"annotations"`
			}
			if json.Unmarshal([]byte(line), &ev) != nil || ev.ObjectRef.Name != p.Name || ev.Stage != "ResponseComplete" {
				continue
			}
			v := ev.Annotations[key]
			if !strings.Contains(v, "would be denied") || !strings.Contains(v, "signature: no signature found") {
				return false, fmt.Errorf("audit annotations %v", ev.Annotations)
			}
			return true, nil
		}
		return false, fmt.Errorf("no audit event for pod %s", p.Name)
	})
	if err != nil {
		t.Fatal(err)
	}
}
