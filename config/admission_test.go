package config_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/internal/kustomize"
)

// installCertManagerCRDs installs cert-manager's own CRDs (from its Go module at the version
// the Makefile pins), so the Certificate and Issuer of the cert-manager component meet the real
// schema.
func installCertManagerCRDs(t *testing.T) {
	t.Helper()
	version, err := kustomize.MakefileVar(filepath.Join(kustomize.RepoRoot(), "Makefile"), "CERT_MANAGER_VERSION")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "mod", "download", "-json", "github.com/cert-manager/cert-manager@"+version)
	cmd.Dir = t.TempDir() // outside the module: go.mod is not touched
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go mod download cert-manager %s: %v", version, err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go mod download: %s", out)
	}
	crds := filepath.Join(mod.Dir, "deploy", "crds")
	if _, err := envtest.InstallCRDs(env.Config, envtest.CRDInstallOptions{
		Paths: []string{filepath.Join(crds, "cert-manager.io_certificates.yaml"), filepath.Join(crds, "cert-manager.io_issuers.yaml")},
	}); err != nil {
		t.Fatal(err)
	}
}

// TestAdmissionOverlaysApplyServerSide: the three admission overlays render and every object
// passes the API server (cert-manager's objects against cert-manager's CRDs).
func TestAdmissionOverlaysApplyServerSide(t *testing.T) {
	installCertManagerCRDs(t)
	for _, dir := range []string{"config/overlays/admission", "config/overlays/admission-cert-manager", "config/overlays/admission-gatekeeper"} {
		t.Run(dir, func(t *testing.T) {
			applyAll(t, testContext(t), render(t, dir), true)
		})
	}
}

func webhookOf(t *testing.T, objs []*unstructured.Unstructured) admissionregistrationv1.ValidatingWebhook {
	t.Helper()
	var cfg admissionregistrationv1.ValidatingWebhookConfiguration
	into(t, find(t, objs, "ValidatingWebhookConfiguration", "imagetrust-admission"), &cfg)
	if len(cfg.Webhooks) != 1 {
		t.Fatalf("%d webhooks, want 1", len(cfg.Webhooks))
	}
	return cfg.Webhooks[0]
}

func argValues(c corev1.Container, flag string) []string {
	var out []string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			out = append(out, v)
		}
	}
	return out
}

// TestAdmissionComponentWiring checks what makes admission work and fail safe: the webhook
// covers Pods and every workload kind, fails closed, is short, never judges kube-system or
// the manager's own namespace, reaches the manager's webhook port through the Service, and
// the certificate the manager makes covers that Service; two replicas and a disruption budget
// keep an answer available.
func TestAdmissionComponentWiring(t *testing.T) {
	objs := render(t, "config/overlays/admission")
	wh := webhookOf(t, objs)
	if *wh.FailurePolicy != admissionregistrationv1.Fail || *wh.SideEffects != admissionregistrationv1.SideEffectClassNoneOnDryRun ||
		wh.TimeoutSeconds == nil || *wh.TimeoutSeconds > 10 {
		t.Errorf("failurePolicy %v, sideEffects %v, timeout %v", *wh.FailurePolicy, *wh.SideEffects, wh.TimeoutSeconds)
	}
	var covered []string
	for _, r := range wh.Rules {
		for _, res := range r.Resources {
			covered = append(covered, r.APIGroups[0]+"/"+res)
		}
		if !slices.Contains(r.Operations, admissionregistrationv1.Create) || !slices.Contains(r.Operations, admissionregistrationv1.Update) {
			t.Errorf("rule %v does not cover CREATE and UPDATE", r.Resources)
		}
	}
	slices.Sort(covered)
	want := []string{"/pods", "/pods/ephemeralcontainers", "apps/daemonsets", "apps/deployments", "apps/replicasets", "apps/statefulsets", "batch/cronjobs", "batch/jobs"}
	if !slices.Equal(covered, want) {
		t.Errorf("webhook covers %v, want %v", covered, want)
	}
	sel, err := metav1LabelSelector(wh)
	if err != nil {
		t.Fatal(err)
	}
	for ns, judged := range map[string]bool{"kube-system": false, namespace: false, "default": true, "shop": true} {
		if got := sel.Matches(labels.Set{"kubernetes.io/metadata.name": ns}); got != judged {
			t.Errorf("namespace %s judged = %v, want %v", ns, got, judged)
		}
	}

	dep := &appsv1.Deployment{}
	into(t, find(t, objs, "Deployment", deployment), dep)
	c := managerContainer(t, dep)
	svc := &corev1.Service{}
	into(t, find(t, objs, "Service", wh.ClientConfig.Service.Name), svc)
	if svc.Namespace != wh.ClientConfig.Service.Namespace || svc.Namespace != dep.Namespace {
		t.Errorf("webhook Service %s/%s, Deployment in %s", svc.Namespace, svc.Name, dep.Namespace)
	}
	if *wh.ClientConfig.Service.Path != "/validate-imagetrust" || svc.Spec.Ports[0].Port != *wh.ClientConfig.Service.Port {
		t.Errorf("webhook path %s port %d, Service port %d", *wh.ClientConfig.Service.Path, *wh.ClientConfig.Service.Port, svc.Spec.Ports[0].Port)
	}
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(dep.Spec.Template.Labels)) {
		t.Error("the webhook Service does not select the manager's Pods")
	}
	port := svc.Spec.Ports[0].TargetPort.StrVal
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == port && p.ContainerPort == 9443 }) {
		t.Errorf("Service targets port %q, which the manager container does not expose on 9443: %+v", port, c.Ports)
	}
	hosts := argValues(c, "--admission-cert-host")
	if !slices.Contains(hosts, svc.Name+"."+svc.Namespace+".svc") {
		t.Errorf("serving certificate hosts %v do not cover the Service", hosts)
	}
	if got := argValues(c, "--admission-webhook-configuration"); !slices.Equal(got, []string{"imagetrust-admission"}) {
		t.Errorf("CA bundle goes to %v", got)
	}
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "POD_NAMESPACE" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace"
	}) {
		t.Error("POD_NAMESPACE is not the pod's namespace")
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas < 2 {
		t.Errorf("replicas = %v, want at least 2 with failurePolicy Fail", dep.Spec.Replicas)
	}
	pdb := &policyv1.PodDisruptionBudget{}
	into(t, find(t, objs, "PodDisruptionBudget", "imagetrust-controller-manager"), pdb)
	if pdb.Namespace != dep.Namespace || pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() < 1 ||
		!labels.SelectorFromSet(pdb.Spec.Selector.MatchLabels).Matches(labels.Set(dep.Spec.Template.Labels)) {
		t.Errorf("PodDisruptionBudget %+v does not protect the manager", pdb.Spec)
	}
}

func metav1LabelSelector(wh admissionregistrationv1.ValidatingWebhook) (labels.Selector, error) {
	return metav1.LabelSelectorAsSelector(wh.NamespaceSelector)
}

// TestAdmissionCertManagerWiring: cert-manager's Certificate covers the webhook Service, its
// Secret is mounted where the manager reads, the cainjector fills the caBundle, and the
// manager keeps no rights it no longer needs.
func TestAdmissionCertManagerWiring(t *testing.T) {
	objs := render(t, "config/overlays/admission-cert-manager")
	cert := find(t, objs, "Certificate", "imagetrust-admission-serving")
	dns, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
	secret, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName")
	if !slices.Contains(dns, "imagetrust-admission.imagetrust-system.svc") {
		t.Errorf("certificate dnsNames %v do not cover the Service", dns)
	}
	vwc := find(t, objs, "ValidatingWebhookConfiguration", "imagetrust-admission")
	if got := vwc.GetAnnotations()["cert-manager.io/inject-ca-from"]; got != cert.GetNamespace()+"/"+cert.GetName() {
		t.Errorf("inject-ca-from = %q", got)
	}
	dep := &appsv1.Deployment{}
	into(t, find(t, objs, "Deployment", deployment), dep)
	c := managerContainer(t, dep)
	if m := argValues(c, "--admission-cert-mode"); !slices.Equal(m, []string{"files"}) {
		t.Errorf("--admission-cert-mode = %v", m)
	}
	dir := argValues(c, "--admission-cert-dir")
	if len(dir) != 1 {
		t.Fatalf("--admission-cert-dir = %v", dir)
	}
	if vol := volumeMountedAt(t, dep, dir[0]); vol.Secret == nil || vol.Secret.SecretName != secret {
		t.Errorf("%s is %+v, want the Secret %s", dir[0], vol.VolumeSource, secret)
	}
	for _, u := range objs {
		if u.GetName() == "imagetrust-admission-certs" {
			t.Errorf("%s kept: with cert-manager the manager needs no Secret rights", id(u))
		}
	}
	cr := find(t, objs, "ClusterRole", "imagetrust-admission")
	b, _ := json.Marshal(cr.Object["rules"])
	if strings.Contains(string(b), "validatingwebhookconfigurations") {
		t.Errorf("ClusterRole still writes webhook configurations: %s", b)
	}
}

// TestAdmissionGatekeeperWiring: the provider port, its Service, and the Gatekeeper CA where
// the flag says.
func TestAdmissionGatekeeperWiring(t *testing.T) {
	objs := render(t, "config/overlays/admission-gatekeeper")
	dep := &appsv1.Deployment{}
	into(t, find(t, objs, "Deployment", deployment), dep)
	c := managerContainer(t, dep)
	doors := strings.Join(argValues(c, "--admission"), ",")
	for _, d := range []string{"webhook", "imagepolicy", "gatekeeper"} {
		if !strings.Contains(doors, d) {
			t.Errorf("--admission %q lacks %s", doors, d)
		}
	}
	svc := &corev1.Service{}
	into(t, find(t, objs, "Service", "imagetrust-admission-gatekeeper"), svc)
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool {
		return p.Name == svc.Spec.Ports[0].TargetPort.StrVal && p.ContainerPort == 8090
	}) {
		t.Errorf("Gatekeeper Service targets %q, not the container's 8090", svc.Spec.Ports[0].TargetPort.StrVal)
	}
	ca := argValues(c, "--admission-gatekeeper-client-ca")
	if len(ca) != 1 {
		t.Fatalf("--admission-gatekeeper-client-ca = %v", ca)
	}
	if vol := volumeMountedAt(t, dep, filepath.Dir(ca[0])); vol.Secret == nil || vol.Secret.SecretName != "imagetrust-gatekeeper-ca" {
		t.Errorf("Gatekeeper CA volume = %+v", vol.VolumeSource)
	}
	if !slices.Contains(argValues(c, "--admission-cert-host"), svc.Name+"."+svc.Namespace+".svc") {
		t.Error("the serving certificate does not cover the Gatekeeper Service")
	}
}

// TestAdmissionRBAC: bound as shipped, the manager can do what admission needs and no more.
func TestAdmissionRBAC(t *testing.T) {
	ctx := testContext(t)
	objs := render(t, "config/overlays/admission-gatekeeper")
	for _, u := range objs {
		switch u.GetKind() {
		case "Namespace", "ServiceAccount", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding":
			if err := apply(ctx, u, false); err != nil {
				t.Fatal(err)
			}
		}
	}
	user := "system:serviceaccount:" + namespace + ":" + serviceAccount
	ask := func(a authorizationv1.ResourceAttributes) bool {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: user,
			Groups: []string{"system:serviceaccounts", "system:authenticated"}, ResourceAttributes: &a}}
		if err := env.Client.Create(ctx, sar); err != nil {
			t.Fatal(err)
		}
		return sar.Status.Allowed
	}
	settle := authorizationv1.ResourceAttributes{Verb: "patch", Group: "externaldata.gatekeeper.sh", Resource: "providers", Name: "imagetrust"}
	for deadline := time.Now().Add(10 * time.Second); !ask(settle) && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	g := securityv1alpha1.GroupVersion.Group
	cases := []struct {
		attrs   authorizationv1.ResourceAttributes
		allowed bool
	}{
		{authorizationv1.ResourceAttributes{Verb: "watch", Group: g, Resource: "imagetrustreports"}, true},
		{authorizationv1.ResourceAttributes{Verb: "list", Group: g, Resource: "imagetrustpolicies"}, true},
		{authorizationv1.ResourceAttributes{Verb: "watch", Resource: "namespaces"}, true},
		{authorizationv1.ResourceAttributes{Namespace: "shop", Verb: "create", Group: "events.k8s.io", Resource: "events"}, true},
		{authorizationv1.ResourceAttributes{Verb: "update", Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations", Name: "imagetrust-admission"}, true},
		{authorizationv1.ResourceAttributes{Verb: "update", Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations", Name: "someone-elses"}, false},
		{authorizationv1.ResourceAttributes{Verb: "delete", Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations", Name: "imagetrust-admission"}, false},
		{authorizationv1.ResourceAttributes{Namespace: namespace, Verb: "create", Resource: "secrets"}, true},
		{authorizationv1.ResourceAttributes{Namespace: namespace, Verb: "update", Resource: "secrets", Name: "imagetrust-admission-certs"}, true},
		{authorizationv1.ResourceAttributes{Namespace: namespace, Verb: "update", Resource: "secrets", Name: "other"}, false},
		{authorizationv1.ResourceAttributes{Namespace: "shop", Verb: "create", Resource: "secrets"}, false},
		{authorizationv1.ResourceAttributes{Verb: "patch", Group: "externaldata.gatekeeper.sh", Resource: "providers", Name: "imagetrust"}, true},
		{authorizationv1.ResourceAttributes{Verb: "patch", Group: "externaldata.gatekeeper.sh", Resource: "providers", Name: "other"}, false},
	}
	for _, tc := range cases {
		a := tc.attrs
		if got := ask(a); got != tc.allowed {
			t.Errorf("%s %s/%s %q in %q: allowed = %v, want %v", a.Verb, a.Group, a.Resource, a.Name, a.Namespace, got, tc.allowed)
		}
	}
}

// TestAdmissionSamples: the webhook door's samples are accepted by the API server, and the
// ImagePolicyWebhook files are a valid AdmissionConfiguration and kubeconfig pointing at the
// backend's path.
func TestAdmissionSamples(t *testing.T) {
	ctx := testContext(t)
	ensureNamespace(t, ctx, "payments")
	for _, f := range []string{"enforce-policy.yaml", "break-glass-pod.yaml"} {
		b, err := os.ReadFile(filepath.Join(kustomize.RepoRoot(), "config/samples/admission/webhook", f))
		if err != nil {
			t.Fatal(err)
		}
		objs, err := kustomize.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range objs {
			if err := apply(ctx, u, true); err != nil {
				t.Errorf("%s: %v", f, err)
			}
		}
	}
	var pol securityv1alpha1.ImageTrustPolicy
	b, _ := os.ReadFile(filepath.Join(kustomize.RepoRoot(), "config/samples/admission/webhook/enforce-policy.yaml"))
	if err := yaml.UnmarshalStrict(b, &pol); err != nil || pol.Spec.Admission == nil || pol.Spec.Admission.Mode != securityv1alpha1.AdmissionEnforce {
		t.Errorf("enforce sample: %v %+v", err, pol.Spec.Admission)
	}

	dir := filepath.Join(kustomize.RepoRoot(), "config/samples/admission/imagepolicy")
	b, err := os.ReadFile(filepath.Join(dir, "admission-config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ac apiserverv1.AdmissionConfiguration
	if err := yaml.UnmarshalStrict(b, &ac); err != nil || len(ac.Plugins) != 1 || ac.Plugins[0].Name != "ImagePolicyWebhook" {
		t.Fatalf("admission-config.yaml: %v %+v", err, ac)
	}
	var ip struct {
		ImagePolicy struct {
			KubeConfigFile string `json:"kubeConfigFile"`
			AllowTTL       int    `json:"allowTTL"`
			DenyTTL        int    `json:"denyTTL"`
			RetryBackoff   int    `json:"retryBackoff"`
			DefaultAllow   bool   `json:"defaultAllow"`
		} `json:"imagePolicy"`
	}
	if err := yaml.UnmarshalStrict(ac.Plugins[0].Configuration.Raw, &ip); err != nil || ip.ImagePolicy.DefaultAllow || ip.ImagePolicy.DenyTTL > 30 {
		t.Errorf("imagePolicy configuration %+v: %v (want defaultAllow false and a short denyTTL)", ip, err)
	}
	kc, err := clientcmd.LoadFromFile(filepath.Join(dir, "imagepolicy-kubeconfig.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cluster := kc.Clusters[kc.Contexts[kc.CurrentContext].Cluster]
	if cluster == nil || !strings.HasSuffix(cluster.Server, "/imagepolicy") || !strings.HasPrefix(cluster.Server, "https://") || cluster.CertificateAuthority == "" {
		t.Errorf("kubeconfig cluster %+v: want https to the /imagepolicy path with a CA", cluster)
	}
}
