package admission

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/open-policy-agent/frameworks/constraint/pkg/apis/externaldata/unversioned"
	"github.com/open-policy-agent/frameworks/constraint/pkg/externaldata"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/imagetrust/imagetrust/api/v1alpha1"
)

func webhookWorld(t testing.TB) *world {
	return getWorld(t, "webhook", startWebhookWorld)
}

func imagePolicyWorld(t testing.TB) *world {
	return getWorld(t, "imagepolicy", startImagePolicyWorld)
}

var pushed sync.Map // ref -> digest: a case set up in two worlds pushes its tag once

// pushRandom pushes a small random image under ref to the test registry (once per ref) and
// returns its digest.
func pushRandom(t testing.TB, ref string) string {
	t.Helper()
	if d, ok := pushed.Load(ref); ok {
		return d.(string)
	}
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	d, err := testRegistry(t).Push(context.Background(), ref, img)
	if err != nil {
		t.Fatal(err)
	}
	pushed.Store(ref, d.DigestStr())
	return d.DigestStr()
}

func writeReportSpec(t testing.TB, w *world, ns, name string, spec v1.ImageTrustReportSpec, st v1.ImageTrustReportStatus) *v1.ImageTrustReport {
	t.Helper()
	ctx := context.Background()
	ensureNamespace(t, w, ns, nil)
	r := &v1.ImageTrustReport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
	if err := w.env.Client.Create(ctx, r); err != nil {
		t.Fatal(err)
	}
	r.Status = st
	if err := w.env.Client.Status().Update(ctx, r); err != nil {
		t.Fatal(err)
	}
	w.waitCached(t, r)
	return r
}

func (cw *caseWorld) podSpec() corev1.PodSpec {
	var spec corev1.PodSpec
	for i, im := range cw.tc.images {
		c := corev1.Container{Name: im.container, Image: cw.images[i]}
		if im.init {
			spec.InitContainers = append(spec.InitContainers, c)
		} else {
			spec.Containers = append(spec.Containers, c)
		}
	}
	return spec
}

var podSeq struct {
	sync.Mutex
	n int
}

func podName(prefix string) string {
	podSeq.Lock()
	defer podSeq.Unlock()
	podSeq.n++
	return fmt.Sprintf("%s-%d", prefix, podSeq.n)
}

// createOutcome turns an API call's result into an doorAnswer.
func createOutcome(err error, warnings []string, assessed []string) doorAnswer {
	o := doorAnswer{allowed: err == nil, warnings: len(warnings), assessed: len(assessed)}
	if err != nil {
		o.text = err.Error()
	} else {
		o.text = strings.Join(warnings, "\n")
	}
	return o
}

// webhookPod creates the case's Pod through the ValidatingWebhookConfiguration.
func webhookPod(t *testing.T, w *world, u *userClient, cw *caseWorld) doorAnswer {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: cw.ns, Name: podName("pod")}, Spec: cw.podSpec()}
	err := u.Create(context.Background(), pod)
	return createOutcome(err, u.warnings.take(), w.takeAssessed())
}

// webhookDeployment creates a Deployment with the case's pod template.
func webhookDeployment(t *testing.T, w *world, u *userClient, cw *caseWorld) doorAnswer {
	labels := map[string]string{"app": "x"}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: cw.ns, Name: podName("deploy")},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: cw.podSpec()}}}
	err := u.Create(context.Background(), dep)
	return createOutcome(err, u.warnings.take(), w.takeAssessed())
}

// imagePolicyPod creates the case's Pod on the API server that uses ImagePolicyWebhook. That
// door cannot warn the client; warnings become an audit annotation, so only allowed/refused and
// the refusal's text are compared.
func imagePolicyPod(t *testing.T, w *world, u *userClient, cw *caseWorld) doorAnswer {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: cw.ns, Name: podName("pod")}, Spec: cw.podSpec()}
	err := u.Create(context.Background(), pod)
	o := createOutcome(err, nil, w.takeAssessed())
	if err == nil && cw.tc.want.warned {
		o.warnings, o.text = 1, strings.Join(cw.expandText(), "\n") // the client cannot see them; TestImagePolicyWarningsAreAudited reads them
	}
	if err != nil && !strings.Contains(err.Error(), "image policy webhook backend denied one or more images") {
		t.Errorf("refusal did not come from the ImagePolicyWebhook backend: %v", err)
	}
	return o
}

// gatekeeperKeys asks the Gatekeeper door about every image of the case, with Gatekeeper's own
// client (mTLS with its client certificate) and response types, and combines the per-key
// values the way the sample ConstraintTemplate does.
func gatekeeperKeys(t *testing.T, w *world, cw *caseWorld) doorAnswer {
	t.Helper()
	var keys []string
	for _, im := range cw.images {
		keys = append(keys, cw.ns+KeySeparator+im)
	}
	resp := gatekeeperQuery(t, w, keys)
	o := doorAnswer{allowed: true}
	var texts []string
	for _, it := range resp.Response.Items {
		if it.Error != "" {
			o.allowed = false
			texts = append(texts, it.Error)
			continue
		}
		v, _ := it.Value.(map[string]any)
		switch v["decision"] {
		case "deny":
			o.allowed = false
			texts = append(texts, fmt.Sprint(v["message"]))
		case "warn":
			o.warnings++
			for _, w := range v["warnings"].([]any) {
				texts = append(texts, fmt.Sprint(w))
			}
		case "allow":
		default:
			t.Errorf("key %q: decision %v", it.Key, v["decision"])
		}
	}
	if !o.allowed {
		o.warnings = 0 // a refusal's warnings are not compared across doors
		texts = filterDenials(resp)
	}
	o.text = strings.Join(texts, "\n")
	o.assessed = len(w.takeAssessed())
	return o
}

func filterDenials(resp *externaldata.ProviderResponse) []string {
	var out []string
	for _, it := range resp.Response.Items {
		if v, ok := it.Value.(map[string]any); ok && v["decision"] == "deny" {
			out = append(out, fmt.Sprint(v["message"]))
		}
	}
	return out
}

var providerSeq struct {
	sync.Mutex
	n int
}

// gatekeeperQuery sends keys with Gatekeeper's client, trusting the CA the manager published.
func gatekeeperQuery(t testing.TB, w *world, keys []string) *externaldata.ProviderResponse {
	t.Helper()
	providerSeq.Lock()
	providerSeq.n++
	name := fmt.Sprintf("imagetrust-%d", providerSeq.n)
	providerSeq.Unlock()
	p := &unversioned.Provider{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: unversioned.ProviderSpec{URL: w.gkURL, Timeout: 10, CABundle: b64(w.servingCA(t))}}
	resp, code, err := externaldata.DefaultSendRequestToProvider(context.Background(), p, keys, &w.gkClient)
	if err != nil || code != 200 {
		t.Fatalf("Gatekeeper request: code %d, %v", code, err)
	}
	if resp.Kind != "ProviderResponse" || resp.APIVersion != "externaldata.gatekeeper.sh/v1beta1" || resp.Response.SystemError != "" {
		t.Fatalf("response %+v", resp)
	}
	if len(resp.Response.Items) != len(keys) {
		t.Fatalf("%d items for %d keys", len(resp.Response.Items), len(keys))
	}
	return resp
}

// servingCA is the self-managed CA, read from the Secret the manager keeps.
func (w *world) servingCA(t testing.TB) []byte {
	t.Helper()
	var sec corev1.Secret
	if err := w.env.Client.Get(context.Background(), types.NamespacedName{Namespace: managerNS, Name: "imagetrust-admission-certs"}, &sec); err != nil {
		t.Fatal(err)
	}
	return sec.Data[secretCACert]
}

// TestDoorsDecideTheSameTable runs every case of doorTable through the three front doors: a Pod
// and a Deployment through the ValidatingWebhookConfiguration, a Pod through the API server's
// ImagePolicyWebhook plugin, and the images as keys through the Gatekeeper provider.
func TestDoorsDecideTheSameTable(t *testing.T) {
	wh, ip := webhookWorld(t), imagePolicyWorld(t)
	whUser, ipUser := wh.user(t, "table"), ip.user(t, "table")
	for i, tc := range doorTable {
		t.Run(tc.name, func(t *testing.T) {
			cwh := tc.setUp(t, wh, i)
			cip := tc.setUp(t, ip, i)
			cwh.check(t, "webhook Pod", webhookPod(t, wh, whUser, cwh))
			cwh.check(t, "webhook Deployment", webhookDeployment(t, wh, whUser, cwh))
			cwh.check(t, "Gatekeeper provider", gatekeeperKeys(t, wh, cwh))
			cip.check(t, "ImagePolicyWebhook Pod", imagePolicyPod(t, ip, ipUser, cip))
		})
	}
}
