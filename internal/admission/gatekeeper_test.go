package admission

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/frameworks/constraint/pkg/apis"
	"github.com/open-policy-agent/frameworks/constraint/pkg/apis/externaldata/unversioned"
	templatesv1 "github.com/open-policy-agent/frameworks/constraint/pkg/apis/templates/v1"
	"github.com/open-policy-agent/frameworks/constraint/pkg/client/drivers/rego"
	"github.com/open-policy-agent/frameworks/constraint/pkg/core/templates"
	"github.com/open-policy-agent/frameworks/constraint/pkg/externaldata"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/yaml"

	v1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/internal/testenv"
)

// TestGatekeeperProviderRequiresGatekeepersCertificate: the provider answers only callers with
// a client certificate from the configured CA.
func TestGatekeeperProviderRequiresGatekeepersCertificate(t *testing.T) {
	w := webhookWorld(t)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(w.servingCA(t))
	post := func(certs []tls.Certificate) error {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs, MinVersion: tls.VersionTLS12}}}
		resp, err := c.Post(w.gkURL, "application/json", strings.NewReader(`{"apiVersion":"externaldata.gatekeeper.sh/v1beta1","kind":"ProviderRequest","request":{"keys":["nginx"]}}`))
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		return nil
	}
	if err := post(nil); err == nil {
		t.Error("answered a caller without a client certificate")
	}
	otherCA, _ := newCA(time.Now(), time.Hour)
	stranger, _ := clientCert(otherCA, "stranger")
	sc, _ := tls.X509KeyPair(stranger.Cert, stranger.Key)
	if err := post([]tls.Certificate{sc}); err == nil {
		t.Error("answered a client certificate from another CA")
	}
	if err := post([]tls.Certificate{w.gkClient}); err != nil {
		t.Errorf("refused Gatekeeper's certificate: %v", err)
	}
}

// TestGatekeeperProviderKeys: bad keys get an error on their own item; a request too large gets
// a system error; every item echoes its key, with the canonical repository.
func TestGatekeeperProviderKeys(t *testing.T) {
	w := webhookWorld(t)
	ensureNamespace(t, w, "gk-keys", nil)
	resp := gatekeeperQuery(t, w, []string{"gk-keys|nginx:1.27", "Bad/Upper", "no-such-namespace|nginx", "kube-system|docker.io/library/redis"})
	items := resp.Response.Items
	v0, _ := items[0].Value.(map[string]any)
	if items[0].Key != "gk-keys|nginx:1.27" || items[0].Error != "" || v0["decision"] != "allow" || v0["repository"] != "index.docker.io/library/nginx" || v0["registry"] != "index.docker.io" {
		t.Errorf("item 0 = %+v", items[0])
	}
	if items[1].Error == "" || !strings.Contains(items[1].Error, "invalid image reference") || items[1].Value != nil {
		t.Errorf("item 1 = %+v, want an error for the bad reference", items[1])
	}
	if !strings.Contains(items[2].Error, "namespace not found") {
		t.Errorf("item 2 = %+v, want an error for the unknown namespace", items[2])
	}
	if v3, _ := items[3].Value.(map[string]any); v3["decision"] != "allow" || v3["repository"] != "index.docker.io/library/redis" {
		t.Errorf("item 3 = %+v", items[3])
	}
	keys := make([]string, maxKeys+1)
	for i := range keys {
		keys[i] = "nginx"
	}
	p := &unversioned.Provider{ObjectMeta: metav1.ObjectMeta{Name: "imagetrust-many"},
		Spec: unversioned.ProviderSpec{URL: w.gkURL, Timeout: 10, CABundle: b64(w.servingCA(t))}}
	big, _, err := externaldata.DefaultSendRequestToProvider(context.Background(), p, keys, &w.gkClient)
	if err != nil || !strings.Contains(big.Response.SystemError, "at most 256") || len(big.Response.Items) != 0 {
		t.Errorf("oversized request: %+v, %v", big, err)
	}
}

// gatekeeperEngine is Gatekeeper's own Rego driver with its external_data builtin, talking to
// the provider with Gatekeeper's client certificate.
type gatekeeperEngine struct {
	driver *rego.Driver
	target string
}

func newGatekeeperEngine(t *testing.T, w *world) *gatekeeperEngine {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	_ = os.WriteFile(certFile, w.gkPair.Cert, 0o600)
	_ = os.WriteFile(keyFile, w.gkPair.Key, 0o600)
	cw, err := certwatcher.New(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pc := externaldata.NewCache()
	// The Provider as config/samples ships it, pointed at this process.
	var prov unversioned.Provider
	readYAML(t, "config/samples/admission/gatekeeper/provider.yaml", &prov)
	prov.Spec.URL, prov.Spec.CABundle = w.gkURL, b64(w.servingCA(t))
	if err := pc.Upsert(&prov); err != nil {
		t.Fatal(err)
	}
	d, err := rego.New(rego.AddExternalDataProviderCache(pc), rego.EnableExternalDataClientAuth(), rego.AddExternalDataClientCertWatcher(cw))
	if err != nil {
		t.Fatal(err)
	}
	return &gatekeeperEngine{driver: d, target: "admission.k8s.gatekeeper.sh"}
}

func readYAML(t *testing.T, rel string, into any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), rel))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, into); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
}

// addTemplate loads a sample ConstraintTemplate and a Constraint of its kind.
func (g *gatekeeperEngine) addTemplate(t *testing.T, templateFile, constraintFile string, params map[string]any) *unstructured.Unstructured {
	t.Helper()
	var v1ct templatesv1.ConstraintTemplate
	readYAML(t, templateFile, &v1ct)
	scheme := runtime.NewScheme()
	if err := apis.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	var ct templates.ConstraintTemplate
	if err := scheme.Convert(&v1ct, &ct, nil); err != nil {
		t.Fatal(err)
	}
	if err := g.driver.AddTemplate(context.Background(), &ct); err != nil {
		t.Fatalf("Gatekeeper rejects %s: %v", templateFile, err)
	}
	c := &unstructured.Unstructured{}
	readYAML(t, constraintFile, &c.Object)
	if params != nil {
		if err := unstructured.SetNestedMap(c.Object, params, "spec", "parameters"); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.driver.AddConstraint(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	return c
}

// review asks the engine about an object as Gatekeeper's admission target would.
func (g *gatekeeperEngine) review(t *testing.T, c *unstructured.Unstructured, obj any, kind, ns string) []string {
	t.Helper()
	raw, _ := json.Marshal(obj)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	review := map[string]any{"object": m, "namespace": ns, "kind": map[string]any{"kind": kind}, "operation": "CREATE"}
	resp, err := g.driver.Query(context.Background(), g.target, []*unstructured.Unstructured{c}, review)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, r := range resp.Results {
		msgs = append(msgs, r.Msg)
	}
	return msgs
}

// TestGatekeeperTemplates runs the sample ConstraintTemplates in Gatekeeper's own Rego engine,
// whose external_data calls reach the provider over mTLS: Untrusted images are refused in Pods
// and workloads, warnings become violations only for a Constraint that asks for them, and the
// registry allow-list compares canonical names.
func TestGatekeeperTemplates(t *testing.T) {
	w := webhookWorld(t)
	s := newScenario(t, w, "gk-templates", v1.AdmissionEnforce)
	a := newScenario(t, w, "gk-templates-audit", v1.AdmissionAudit)
	g := newGatekeeperEngine(t, w)
	const dir = "config/samples/admission/gatekeeper/"
	deny := g.addTemplate(t, dir+"template-untrusted.yaml", dir+"constraint-untrusted.yaml", nil)

	expect := func(name string, got []string, want ...string) {
		t.Helper()
		all := strings.Join(got, "\n")
		if len(want) == 0 && len(got) > 0 {
			t.Errorf("%s: violations %q, want none", name, got)
		}
		for _, s := range want {
			if !strings.Contains(all, s) {
				t.Errorf("%s: violations %q lack %q", name, got, s)
			}
		}
		if len(want) > 0 && len(got) == 0 {
			t.Errorf("%s: no violation, want %q", name, want)
		}
	}
	expect("trusted Pod", g.review(t, deny, pod(s.ns, s.trusted, nil), "Pod", s.ns))
	expect("untrusted Pod", g.review(t, deny, pod(s.ns, s.untrusted, nil), "Pod", s.ns), "is Untrusted", "signature: no signature found")
	dep := deployment(s.ns, s.trusted, nil)
	dep.Spec.Template.Spec.InitContainers = []corev1.Container{{Name: "init", Image: s.untrusted}}
	expect("Deployment with an untrusted init container", g.review(t, deny, dep, "Deployment", s.ns), "is Untrusted")
	cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: "cj"}, Spec: batchv1.CronJobSpec{JobTemplate: batchv1.JobTemplateSpec{
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: s.unassessed}}}}}}}}
	expect("CronJob with an unassessed image", g.review(t, deny, cj, "CronJob", s.ns), "has not been assessed")
	w.takeAssessed()
	expect("Audit: no violation for a deny constraint", g.review(t, deny, pod(a.ns, a.untrusted, nil), "Pod", a.ns))
	expect("a bad reference is refused", g.review(t, deny, pod(s.ns, "Bad/Upper", nil), "Pod", s.ns), "imagetrust cannot judge", "invalid image reference")

	g2 := newGatekeeperEngine(t, w)
	warn := g2.addTemplate(t, dir+"template-untrusted.yaml", dir+"constraint-untrusted.yaml", map[string]any{"decisions": []any{"warn"}})
	expect("Audit: a warn constraint reports it", g2.review(t, warn, pod(a.ns, a.untrusted, nil), "Pod", a.ns), "is in Audit mode")
	expect("warn constraint ignores denials", g2.review(t, warn, pod(s.ns, s.untrusted, nil), "Pod", s.ns))

	g3 := newGatekeeperEngine(t, w)
	regs := g3.addTemplate(t, dir+"template-allowed-registries.yaml", dir+"constraint-allowed-registries.yaml", nil)
	for _, ok := range []string{"registry.example.com/team/app:1", "nginx", "docker.io/library/redis:7", "registry.example.com/x@sha256:" + strings.Repeat("a", 64)} {
		expect("allowed "+ok, g3.review(t, regs, pod("default", ok, nil), "Pod", "default"))
	}
	for _, bad := range []string{"ghcr.io/x/y:1", "registry.example.com.evil.io/x:1", "docker.io/someone/app:1", "quay.io/registry.example.com/x"} {
		expect("refused "+bad, g3.review(t, regs, pod("default", bad, nil), "Pod", "default"), "which is not in an allowed registry")
	}
	expect("bad reference", g3.review(t, regs, pod("default", "Bad/Upper", nil), "Pod", "default"), "is not a valid image reference")
	w.takeAssessed()
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
