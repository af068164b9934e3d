// Package config_test renders the kustomize trees under config/ with the kustomize binary built
// into bin/ and hands every object to the real kube-apiserver (envtest), so that a manifest the
// API server would refuse — a typo'd field, a bad value, a RoleBinding to a missing role — fails
// CI instead of a user's `make deploy`.
package config_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/internal/kustomize"
	"github.com/imagetrust/imagetrust/internal/testenv"
)

const (
	namespace      = "imagetrust-system"
	serviceAccount = "imagetrust-controller-manager"
	deployment     = "imagetrust-controller-manager"
	defaultImage   = "ghcr.io/imagetrust/imagetrust:dev"
	cacheDir       = "/var/cache/imagetrust"
	fieldManager   = "imagetrust-config-test"
)

var (
	env *testenv.Env
	dyn dynamic.Interface
)

func TestMain(m *testing.M) {
	// Fail before booting a control plane when kustomize is missing, with the fix in the message.
	if _, err := kustomize.Binary(); err != nil {
		fmt.Fprintln(os.Stderr, "config tests:", err)
		os.Exit(1)
	}
	var err error
	env, err = testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dyn, err = dynamic.NewForConfig(env.Config)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		_ = env.Stop()
		os.Exit(1)
	}
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping envtest:", err)
	}
	os.Exit(code)
}

// render builds a kustomize directory, failing the test on any error.
func render(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := kustomize.BuildObjects(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) == 0 {
		t.Fatalf("kustomize build %s rendered no objects", dir)
	}
	return objs
}

func id(u *unstructured.Unstructured) string {
	if ns := u.GetNamespace(); ns != "" {
		return fmt.Sprintf("%s %s/%s", u.GetKind(), ns, u.GetName())
	}
	return fmt.Sprintf("%s %s", u.GetKind(), u.GetName())
}

func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, u := range objs {
		if u.GetKind() == kind && u.GetName() == name {
			return u
		}
	}
	t.Fatalf("rendered manifests have no %s %q", kind, name)
	return nil
}

// into converts an unstructured object into a typed one, rejecting fields the type lacks.
func into(t *testing.T, u *unstructured.Unstructured, out any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, out, true); err != nil {
		t.Fatalf("%s: %v", id(u), err)
	}
}

// apply sends obj as a server-side apply with strict field validation, so unknown and duplicate
// fields are errors rather than warnings. dryRun asks for every admission and validation stage
// without persisting anything.
func apply(ctx context.Context, u *unstructured.Unstructured, dryRun bool) error {
	mapping, err := env.Client.RESTMapper().RESTMapping(u.GroupVersionKind().GroupKind(), u.GroupVersionKind().Version)
	if err != nil {
		return fmt.Errorf("%s: no REST mapping: %w", id(u), err)
	}
	data, err := json.Marshal(u.Object)
	if err != nil {
		return err
	}
	opts := metav1.PatchOptions{FieldManager: fieldManager, FieldValidation: "Strict", Force: new(true)}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
	if mapping.Scope.Name() == "namespace" {
		if u.GetNamespace() == "" {
			return fmt.Errorf("%s: namespaced object without a namespace", id(u))
		}
		ri = dyn.Resource(mapping.Resource).Namespace(u.GetNamespace())
	} else if u.GetNamespace() != "" {
		return fmt.Errorf("%s: cluster-scoped object carries namespace %q", id(u), u.GetNamespace())
	}
	if _, err := ri.Patch(ctx, u.GetName(), types.ApplyPatchType, data, opts); err != nil {
		return fmt.Errorf("%s: %w", id(u), err)
	}
	return nil
}

func ensureNamespace(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := env.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// applyAll applies the Namespace objects for real (dry-run of namespaced objects needs their
// namespace to exist) and everything else with dryRun.
func applyAll(t *testing.T, ctx context.Context, objs []*unstructured.Unstructured, dryRun bool) {
	t.Helper()
	for _, u := range objs {
		if u.GetKind() == "Namespace" {
			if err := apply(ctx, u, false); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, u := range objs {
		if u.GetKind() == "Namespace" {
			continue
		}
		if err := apply(ctx, u, dryRun); err != nil {
			t.Error(err)
		}
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestDefaultRendersExpectedObjects pins the object set of config/default, so that a resource
// dropped from a kustomization (or renamed by a prefix change) is noticed.
func TestDefaultRendersExpectedObjects(t *testing.T) {
	objs := render(t, "config/default")
	var got []string
	for _, u := range objs {
		got = append(got, id(u))
	}
	sort.Strings(got)
	want := []string{
		"ClusterRole imagetrust-imagetrustpolicy-editor-role",
		"ClusterRole imagetrust-imagetrustpolicy-viewer-role",
		"ClusterRole imagetrust-imagetrustreport-editor-role",
		"ClusterRole imagetrust-imagetrustreport-viewer-role",
		"ClusterRole imagetrust-manager-role",
		"ClusterRole imagetrust-metrics-auth-role",
		"ClusterRole imagetrust-metrics-reader",
		"ClusterRole imagetrust-registryscan-editor-role",
		"ClusterRole imagetrust-registryscan-viewer-role",
		"ClusterRoleBinding imagetrust-manager-rolebinding",
		"ClusterRoleBinding imagetrust-metrics-auth-rolebinding",
		"CustomResourceDefinition imagetrustpolicies.security.imagetrust.dev",
		"CustomResourceDefinition imagetrustreports.security.imagetrust.dev",
		"CustomResourceDefinition registryscans.security.imagetrust.dev",
		"Deployment imagetrust-system/imagetrust-controller-manager",
		"Namespace imagetrust-system",
		"Role imagetrust-system/imagetrust-leader-election-role",
		"RoleBinding imagetrust-system/imagetrust-leader-election-rolebinding",
		"Service imagetrust-system/imagetrust-controller-manager-metrics-service",
		"ServiceAccount imagetrust-system/imagetrust-controller-manager",
	}
	if !slices.Equal(got, want) {
		t.Errorf("config/default renders\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestDefaultAppliesServerSide is the CI gate: every object of config/default passes the real API
// server's validation (schema, strict fields, admission) as a server-side apply.
func TestDefaultAppliesServerSide(t *testing.T) {
	ctx := testContext(t)
	applyAll(t, ctx, render(t, "config/default"), true)
}

// TestCachePVCOverlayAppliesServerSide checks the optional PVC component: it renders, the API
// server accepts it, and the manager's cache volume really is the claim.
func TestCachePVCOverlayAppliesServerSide(t *testing.T) {
	ctx := testContext(t)
	objs := render(t, "config/overlays/cache-pvc")
	applyAll(t, ctx, objs, true)

	pvc := &corev1.PersistentVolumeClaim{}
	into(t, find(t, objs, "PersistentVolumeClaim", "imagetrust-cache"), pvc)
	if pvc.Namespace != namespace {
		t.Errorf("PVC namespace = %q, want %q", pvc.Namespace, namespace)
	}
	if !slices.Equal(pvc.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}) {
		t.Errorf("PVC access modes = %v", pvc.Spec.AccessModes)
	}
	dep := &appsv1.Deployment{}
	into(t, find(t, objs, "Deployment", deployment), dep)
	vol := volumeMountedAt(t, dep, cacheDir)
	if vol.PersistentVolumeClaim == nil || vol.PersistentVolumeClaim.ClaimName != pvc.Name {
		t.Errorf("cache volume = %+v, want the claim %q", vol.VolumeSource, pvc.Name)
	}
	if dep.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("strategy = %q, want Recreate (a ReadWriteOnce volume cannot follow a rolling update to another node)", dep.Spec.Strategy.Type)
	}
	if sc := dep.Spec.Template.Spec.SecurityContext; sc == nil || sc.FSGroup == nil || *sc.FSGroup != 65532 {
		t.Errorf("pod securityContext %+v lacks fsGroup 65532: the non-root manager could not write the volume", sc)
	}
	if tmp := volumeMountedAt(t, dep, "/tmp"); tmp.EmptyDir == nil {
		t.Errorf("/tmp volume = %+v, want the emptyDir kept", tmp.VolumeSource)
	}
}

func volumeMountedAt(t *testing.T, dep *appsv1.Deployment, path string) corev1.Volume {
	t.Helper()
	c := managerContainer(t, dep)
	for _, m := range c.VolumeMounts {
		if m.MountPath != path {
			continue
		}
		for _, v := range dep.Spec.Template.Spec.Volumes {
			if v.Name == m.Name {
				return v
			}
		}
		t.Fatalf("mount %s names volume %q, which the pod does not define", path, m.Name)
	}
	t.Fatalf("manager container mounts nothing at %s", path)
	return corev1.Volume{}
}

func managerContainer(t *testing.T, dep *appsv1.Deployment) corev1.Container {
	t.Helper()
	for _, c := range dep.Spec.Template.Spec.Containers {
		if c.Name == "manager" {
			return c
		}
	}
	t.Fatalf("Deployment %s has no container named manager", dep.Name)
	return corev1.Container{}
}

// TestManagerDeploymentHardening checks the properties the install promises: non-root, read-only
// root filesystem, no privilege escalation or capabilities, RuntimeDefault seccomp, probes on the
// health port, resources, writable cache and /tmp, leader election and secure metrics.
func TestManagerDeploymentHardening(t *testing.T) {
	objs := render(t, "config/default")
	dep := &appsv1.Deployment{}
	into(t, find(t, objs, "Deployment", deployment), dep)
	pod := dep.Spec.Template.Spec
	c := managerContainer(t, dep)

	if pod.ServiceAccountName != serviceAccount {
		t.Errorf("serviceAccountName = %q, want %q", pod.ServiceAccountName, serviceAccount)
	}
	find(t, objs, "ServiceAccount", pod.ServiceAccountName)
	if c.Image != defaultImage {
		t.Errorf("image = %q, want %q", c.Image, defaultImage)
	}
	if !slices.Equal(c.Command, []string{"/imagetrust"}) {
		t.Errorf("command = %q, want the image's entrypoint /imagetrust", c.Command)
	}
	wantArgs := []string{"manager", "--leader-elect", "--health-probe-bind-address=:8081", "--metrics-bind-address=:8443", "--cache-dir=" + cacheDir}
	for _, a := range wantArgs {
		if !slices.Contains(c.Args, a) {
			t.Errorf("args %q lack %q", c.Args, a)
		}
	}
	// Without a DB source the manager never loads a vulnerability DB and scans nothing.
	if !slices.ContainsFunc(c.Args, func(a string) bool {
		return strings.HasPrefix(a, "--db-update-url=https://") || strings.HasPrefix(a, "--db-oci-ref=") || strings.HasPrefix(a, "--db-archive=/")
	}) {
		t.Errorf("args %q name no vulnerability DB source (--db-update-url, --db-oci-ref or --db-archive)", c.Args)
	}
	if len(c.Args) == 0 || c.Args[0] != "manager" {
		t.Errorf("args %q must start with the subcommand manager", c.Args)
	}

	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("pod securityContext.runAsNonRoot must be true: %+v", psc)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod seccompProfile must be RuntimeDefault: %+v", psc)
	}
	if psc != nil && psc.RunAsUser != nil && *psc.RunAsUser == 0 {
		t.Errorf("pod runs as UID 0")
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("manager container has no securityContext")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("allowPrivilegeEscalation must be false")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("readOnlyRootFilesystem must be true")
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Error("container runAsNonRoot must be true")
	case sc.Privileged != nil && *sc.Privileged:
		t.Error("container must not be privileged")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0:
		t.Errorf("capabilities = %+v, want drop [ALL] and nothing added", sc.Capabilities)
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("container seccompProfile = %+v, want RuntimeDefault", sc.SeccompProfile)
	}

	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe missing or not HTTP: %+v", name, p)
			continue
		}
		want := map[string]string{"liveness": "/healthz", "readiness": "/readyz"}[name]
		if p.HTTPGet.Path != want {
			t.Errorf("%s probe path = %q, want %q", name, p.HTTPGet.Path, want)
		}
		if port := containerPort(t, c, p.HTTPGet.Port.String()); port != 8081 {
			t.Errorf("%s probe port %s is container port %d, want the health port 8081", name, p.HTTPGet.Port.String(), port)
		}
	}

	req, lim := c.Resources.Requests, c.Resources.Limits
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := req[r]; !ok {
			t.Errorf("no %s request", r)
		}
	}
	if mem, ok := lim[corev1.ResourceMemory]; !ok || mem.Cmp(resource.MustParse("1Gi")) < 0 {
		t.Errorf("memory limit %v: want at least 1Gi, the Grype DB alone needs hundreds of MB", lim.Memory())
	}
	if lim.Memory().Cmp(*req.Memory()) < 0 || lim.Cpu().Cmp(*req.Cpu()) < 0 {
		t.Errorf("limits %v below requests %v", lim, req)
	}

	if v := volumeMountedAt(t, dep, cacheDir); v.EmptyDir == nil {
		t.Errorf("default cache volume = %+v, want an emptyDir", v.VolumeSource)
	}
	if v := volumeMountedAt(t, dep, "/tmp"); v.EmptyDir == nil {
		t.Errorf("/tmp volume = %+v, want an emptyDir (the root filesystem is read-only)", v.VolumeSource)
	}

	// The metrics Service must reach the container's 8443 through the pod's labels.
	svc := &corev1.Service{}
	into(t, find(t, objs, "Service", "imagetrust-controller-manager-metrics-service"), svc)
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(dep.Spec.Template.Labels)) || len(svc.Spec.Selector) == 0 {
		t.Errorf("metrics Service selector %v does not select the manager pods %v", svc.Spec.Selector, dep.Spec.Template.Labels)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 8443 || svc.Spec.Ports[0].Name != "https" {
		t.Fatalf("metrics Service ports = %+v, want one port https/8443", svc.Spec.Ports)
	}
	if port := containerPort(t, c, svc.Spec.Ports[0].TargetPort.String()); port != 8443 {
		t.Errorf("metrics Service targets container port %d, want 8443", port)
	}
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(dep.Spec.Template.Labels)) {
		t.Errorf("Deployment selector %v does not match its pod template labels (%v)", dep.Spec.Selector, err)
	}
}

// containerPort resolves a named or numeric port of the container.
func containerPort(t *testing.T, c corev1.Container, port string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == port || fmt.Sprint(p.ContainerPort) == port {
			return p.ContainerPort
		}
	}
	t.Errorf("container %s declares no port %q", c.Name, port)
	return 0
}

// TestRBACWiring applies the RBAC of config/default for real and asks the API server's own
// authorizer (SubjectAccessReview) what the manager's service account may do: this catches a
// binding to a misspelt role or subject as well as a missing permission.
func TestRBACWiring(t *testing.T) {
	ctx := testContext(t)
	objs := render(t, "config/default")
	for _, u := range objs {
		if u.GetKind() == "Namespace" {
			if err := apply(ctx, u, false); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, u := range objs {
		switch u.GetKind() {
		case "ServiceAccount", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding":
			if err := apply(ctx, u, false); err != nil {
				t.Fatal(err)
			}
		}
	}

	user := "system:serviceaccount:" + namespace + ":" + serviceAccount
	groups := []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"}
	cases := []struct {
		name    string
		attrs   authorizationv1.ResourceAttributes
		allowed bool
	}{
		{"leader election lease", authorizationv1.ResourceAttributes{Namespace: namespace, Verb: "update", Group: "coordination.k8s.io", Resource: "leases"}, true},
		{"lease elsewhere", authorizationv1.ResourceAttributes{Namespace: "default", Verb: "update", Group: "coordination.k8s.io", Resource: "leases"}, false},
		{"metrics authn", authorizationv1.ResourceAttributes{Verb: "create", Group: "authentication.k8s.io", Resource: "tokenreviews"}, true},
		{"metrics authz", authorizationv1.ResourceAttributes{Verb: "create", Group: "authorization.k8s.io", Resource: "subjectaccessreviews"}, true},
		{"watch pods", authorizationv1.ResourceAttributes{Verb: "watch", Resource: "pods"}, true},
		{"write reports", authorizationv1.ResourceAttributes{Namespace: "default", Verb: "create", Group: securityv1alpha1.GroupVersion.Group, Resource: "imagetrustreports"}, true},
		{"read policies", authorizationv1.ResourceAttributes{Verb: "list", Group: securityv1alpha1.GroupVersion.Group, Resource: "imagetrustpolicies"}, true},
		{"read scans", authorizationv1.ResourceAttributes{Namespace: "default", Verb: "watch", Group: securityv1alpha1.GroupVersion.Group, Resource: "registryscans"}, true},
		{"no pod deletion", authorizationv1.ResourceAttributes{Namespace: "default", Verb: "delete", Resource: "pods"}, false},
		{"no secret writes", authorizationv1.ResourceAttributes{Namespace: "default", Verb: "update", Resource: "secrets"}, false},
		// Secrets are read only by name (pull secrets, credentials, keys), never listed or watched
		{"no secret list anywhere", authorizationv1.ResourceAttributes{Verb: "list", Resource: "secrets"}, false},
		{"no secret watch anywhere", authorizationv1.ResourceAttributes{Verb: "watch", Resource: "secrets"}, false},
		{"no secret list in kube-system", authorizationv1.ResourceAttributes{Namespace: "kube-system", Verb: "list", Resource: "secrets"}, false},
		{"get a named pull secret", authorizationv1.ResourceAttributes{Namespace: "default", Verb: "get", Resource: "secrets"}, true},
		{"get a trust root ConfigMap", authorizationv1.ResourceAttributes{Namespace: "imagetrust-system", Verb: "get", Resource: "configmaps"}, true},
		{"no ConfigMap list anywhere", authorizationv1.ResourceAttributes{Verb: "list", Resource: "configmaps"}, false},
		{"no ConfigMap watch anywhere", authorizationv1.ResourceAttributes{Verb: "watch", Resource: "configmaps"}, false},
		{"no ConfigMap writes", authorizationv1.ResourceAttributes{Namespace: "imagetrust-system", Verb: "update", Resource: "configmaps"}, false},
		{"no policy writes", authorizationv1.ResourceAttributes{Verb: "update", Group: securityv1alpha1.GroupVersion.Group, Resource: "imagetrustpolicies"}, false},
		{"no RBAC escalation", authorizationv1.ResourceAttributes{Verb: "create", Group: "rbac.authorization.k8s.io", Resource: "clusterrolebindings"}, false},
	}
	// RBAC objects reach the authorizer through its informer: wait (bounded) until the last
	// binding applied above is effective before asking the real questions.
	settle := authorizationv1.ResourceAttributes{Namespace: "default", Verb: "create", Group: securityv1alpha1.GroupVersion.Group, Resource: "imagetrustreports"}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: user, Groups: groups, ResourceAttributes: &settle}}
		if err := env.Client.Create(ctx, sar); err != nil {
			t.Fatal(err)
		}
		if sar.Status.Allowed {
			break
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User: user, Groups: groups, ResourceAttributes: &tc.attrs,
			}}
			if err := env.Client.Create(ctx, sar); err != nil {
				t.Fatal(err)
			}
			if sar.Status.Allowed != tc.allowed {
				t.Errorf("%s %s/%s in %q: allowed = %v, want %v (%s)", tc.attrs.Verb, tc.attrs.Group, tc.attrs.Resource,
					tc.attrs.Namespace, sar.Status.Allowed, tc.allowed, sar.Status.Reason)
			}
		})
	}

	// metrics-reader is for the scraper; bound to a test user it must allow GET /metrics.
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "config-test-metrics-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "imagetrust-metrics-reader"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "prometheus"}},
	}
	if err := env.Client.Create(ctx, crb); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), crb) })
	// The API server's RBAC authorizer sees a new binding through its informer, a moment after
	// the create returns: ask until the answer settles (bounded), then assert.
	allowed := func(user string) bool {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: "/metrics", Verb: "get"},
		}}
		if err := env.Client.Create(ctx, sar); err != nil {
			t.Fatal(err)
		}
		return sar.Status.Allowed
	}
	deadline := time.Now().Add(10 * time.Second)
	for !allowed("prometheus") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	for user, want := range map[string]bool{"prometheus": true, "someone-else": false} {
		if got := allowed(user); got != want {
			t.Errorf("GET /metrics as %s: allowed = %v, want %v", user, got, want)
		}
	}
}

// TestManagerCannotListSecrets does what `kubectl auth can-i --as` checks, for real: a client
// impersonating the manager's ServiceAccount under the installed RBAC is refused every list and
// watch of Secrets, in every namespace.
func TestManagerCannotListSecrets(t *testing.T) {
	ctx := testContext(t)
	applyRBAC(t, ctx, "config/default")
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + namespace + ":" + serviceAccount,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"}}
	as, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	waitAllowed(t, ctx, as)
	for _, ns := range []string{"", "kube-system", "default"} {
		var list corev1.SecretList
		if err := as.List(ctx, &list, client.InNamespace(ns)); !apierrors.IsForbidden(err) {
			t.Errorf("listing Secrets in %q as the manager: %v, want Forbidden", ns, err)
		}
	}
	w, err := client.NewWithWatch(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if wi, err := w.Watch(ctx, &corev1.SecretList{}); !apierrors.IsForbidden(err) {
		if wi != nil {
			wi.Stop()
		}
		t.Errorf("watching Secrets as the manager: %v, want Forbidden", err)
	}
}

// TestNamespacedModeRBAC: with config/components/namespaced the manager may read the Secrets,
// pods and reports of the namespaces it watches and nothing namespaced elsewhere — not even a
// named Secret in kube-system.
func TestNamespacedModeRBAC(t *testing.T) {
	ctx := testContext(t)
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps"}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	applyRBAC(t, ctx, "config/overlays/namespaced")
	t.Cleanup(func() { applyRBAC(t, context.Background(), "config/default") })
	user := "system:serviceaccount:" + namespace + ":" + serviceAccount
	groups := []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"}
	ask := func(a authorizationv1.ResourceAttributes) bool {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: user, Groups: groups, ResourceAttributes: &a}}
		if err := env.Client.Create(ctx, sar); err != nil {
			t.Fatal(err)
		}
		return sar.Status.Allowed
	}
	settle := authorizationv1.ResourceAttributes{Namespace: "apps", Verb: "get", Resource: "secrets"}
	for deadline := time.Now().Add(10 * time.Second); !ask(settle) && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	cases := []struct {
		name    string
		attrs   authorizationv1.ResourceAttributes
		allowed bool
	}{
		{"a watched namespace's pull secret", settle, true},
		{"a named Secret in kube-system", authorizationv1.ResourceAttributes{Namespace: "kube-system", Verb: "get", Resource: "secrets"}, false},
		{"a named Secret in default", authorizationv1.ResourceAttributes{Namespace: "default", Verb: "get", Resource: "secrets"}, false},
		{"a watched namespace's trust root ConfigMap", authorizationv1.ResourceAttributes{Namespace: "apps", Verb: "get", Resource: "configmaps"}, true},
		{"a ConfigMap in kube-system", authorizationv1.ResourceAttributes{Namespace: "kube-system", Verb: "get", Resource: "configmaps"}, false},
		{"ConfigMaps listed in the watched namespace", authorizationv1.ResourceAttributes{Namespace: "apps", Verb: "list", Resource: "configmaps"}, false},
		{"pods in the watched namespace", authorizationv1.ResourceAttributes{Namespace: "apps", Verb: "watch", Resource: "pods"}, true},
		{"pods cluster-wide", authorizationv1.ResourceAttributes{Verb: "list", Resource: "pods"}, false},
		{"reports in the watched namespace", authorizationv1.ResourceAttributes{Namespace: "apps", Verb: "create", Group: securityv1alpha1.GroupVersion.Group, Resource: "imagetrustreports"}, true},
		{"reports elsewhere", authorizationv1.ResourceAttributes{Namespace: "default", Verb: "create", Group: securityv1alpha1.GroupVersion.Group, Resource: "imagetrustreports"}, false},
		{"policies (cluster-scoped)", authorizationv1.ResourceAttributes{Verb: "watch", Group: securityv1alpha1.GroupVersion.Group, Resource: "imagetrustpolicies"}, true},
		{"namespace labels", authorizationv1.ResourceAttributes{Verb: "list", Resource: "namespaces"}, true},
	}
	for _, tc := range cases {
		if got := ask(tc.attrs); got != tc.allowed {
			t.Errorf("%s: allowed = %v, want %v", tc.name, got, tc.allowed)
		}
	}
	dep := &appsv1.Deployment{}
	into(t, find(t, render(t, "config/overlays/namespaced"), "Deployment", "imagetrust-controller-manager"), dep)
	if !slices.Contains(dep.Spec.Template.Spec.Containers[0].Args, "--watch-namespace=apps") {
		t.Errorf("the namespaced overlay does not pass --watch-namespace=apps: %v", dep.Spec.Template.Spec.Containers[0].Args)
	}
}

// applyRBAC applies the namespaces, ServiceAccounts and RBAC objects dir renders.
func applyRBAC(t *testing.T, ctx context.Context, dir string) {
	t.Helper()
	objs := render(t, dir)
	for _, kinds := range [][]string{{"Namespace"}, {"ServiceAccount", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}} {
		for _, u := range objs {
			if slices.Contains(kinds, u.GetKind()) {
				if err := apply(ctx, u, false); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// waitAllowed waits (bounded) until the RBAC just applied reaches the authorizer: the manager may
// list pods.
func waitAllowed(t *testing.T, ctx context.Context, as client.Client) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var list corev1.PodList
		if err := as.List(ctx, &list, client.InNamespace("default")); err == nil {
			return
		}
	}
	t.Fatal("the manager's RBAC never took effect")
}

// TestRBACRoles checks what the API server cannot: no wildcards anywhere, and the aggregation
// labels that fold the viewer/editor roles into the built-in view/edit/admin roles (the
// aggregation controller does not run under envtest).
func TestRBACRoles(t *testing.T) {
	objs := render(t, "config/default")
	for _, u := range objs {
		if u.GetKind() != "ClusterRole" && u.GetKind() != "Role" {
			continue
		}
		role := &rbacv1.ClusterRole{}
		into(t, u, role)
		if len(role.Rules) == 0 {
			t.Errorf("%s has no rules", id(u))
		}
		for _, r := range role.Rules {
			for _, list := range [][]string{r.Verbs, r.Resources, r.APIGroups, r.NonResourceURLs} {
				if slices.Contains(list, "*") {
					t.Errorf("%s has a wildcard rule %+v", id(u), r)
				}
			}
		}
	}
	const (
		view  = "rbac.authorization.k8s.io/aggregate-to-view"
		edit  = "rbac.authorization.k8s.io/aggregate-to-edit"
		admin = "rbac.authorization.k8s.io/aggregate-to-admin"
	)
	aggregation := map[string][]string{
		"imagetrust-imagetrustreport-viewer-role": {view, edit, admin},
		"imagetrust-imagetrustpolicy-viewer-role": {view, edit, admin},
		"imagetrust-registryscan-viewer-role":     {view, edit, admin},
		"imagetrust-registryscan-editor-role":     {edit, admin},
		"imagetrust-imagetrustreport-editor-role": nil, // reports are the manager's to write
		"imagetrust-imagetrustpolicy-editor-role": nil, // cluster-wide trust decisions: bind explicitly
		"imagetrust-manager-role":                 nil,
		"imagetrust-metrics-reader":               nil,
		"imagetrust-metrics-auth-role":            nil,
	}
	for name, want := range aggregation {
		u := find(t, objs, "ClusterRole", name)
		var got []string
		for k, v := range u.GetLabels() {
			if strings.HasPrefix(k, "rbac.authorization.k8s.io/aggregate-to-") {
				if v != "true" {
					t.Errorf("%s label %s=%q, want \"true\"", name, k, v)
				}
				got = append(got, k)
			}
		}
		sort.Strings(got)
		w := slices.Clone(want)
		sort.Strings(w)
		if !slices.Equal(got, w) {
			t.Errorf("%s aggregates to %v, want %v", name, got, w)
		}
	}
	// Editor and viewer roles cover their own kind only.
	for _, kind := range []struct{ lower, plural string }{
		{"imagetrustreport", "imagetrustreports"}, {"imagetrustpolicy", "imagetrustpolicies"}, {"registryscan", "registryscans"},
	} {
		for _, suffix := range []string{"viewer", "editor"} {
			role := &rbacv1.ClusterRole{}
			into(t, find(t, objs, "ClusterRole", "imagetrust-"+kind.lower+"-"+suffix+"-role"), role)
			for _, r := range role.Rules {
				if !slices.Equal(r.APIGroups, []string{securityv1alpha1.GroupVersion.Group}) {
					t.Errorf("%s-%s rule %+v leaves the API group", kind.lower, suffix, r)
				}
				for _, res := range r.Resources {
					if res != kind.plural && res != kind.plural+"/status" {
						t.Errorf("%s-%s covers %q", kind.lower, suffix, res)
					}
				}
				if suffix == "viewer" && slices.ContainsFunc(r.Verbs, func(v string) bool { return v != "get" && v != "list" && v != "watch" }) {
					t.Errorf("viewer role %s has write verbs %v", kind.lower, r.Verbs)
				}
			}
		}
	}
}

// TestSamplesAreAcceptedByTheCRDs creates config/samples for real, so the API server checks them
// against the CRDs' schemas and CEL rules, and then reads them back.
func TestSamplesAreAcceptedByTheCRDs(t *testing.T) {
	ctx := testContext(t)
	const ns = "imagetrust-samples"
	ensureNamespace(t, ctx, ns)
	objs := render(t, "config/samples")
	for _, u := range objs {
		if u.GroupVersionKind().Group != securityv1alpha1.GroupVersion.Group {
			t.Errorf("%s is not an imagetrust object", id(u))
			continue
		}
		if u.GetKind() == "RegistryScan" && u.GetNamespace() == "" {
			u.SetNamespace(ns)
		}
		if err := apply(ctx, u, false); err != nil {
			t.Error(err)
		}
	}

	policies := map[string]*securityv1alpha1.ImageTrustPolicy{}
	list := &securityv1alpha1.ImageTrustPolicyList{}
	if err := env.Client.List(ctx, list); err != nil {
		t.Fatal(err)
	}
	for i := range list.Items {
		policies[list.Items[i].Name] = &list.Items[i]
	}

	// The samples promised by the docs, checked on what the API server stored (with defaults).
	key := policies["payments-release-key"]
	if key == nil || !key.Spec.RequireSignature || len(key.Spec.Authorities) != 1 || key.Spec.Authorities[0].Key == nil ||
		!strings.Contains(key.Spec.Authorities[0].Key.Data, "BEGIN PUBLIC KEY") || len(key.Spec.Images) != 1 ||
		!strings.HasPrefix(key.Spec.Images[0], "registry.example.com/") {
		t.Errorf("cosign key sample for one registry is missing or changed: %+v", key)
	}
	if key != nil && (key.Spec.Admission == nil || key.Spec.Admission.Mode != securityv1alpha1.AdmissionAudit || key.Spec.Admission.OnUnknown != securityv1alpha1.UnknownDeny) {
		t.Errorf("cosign key sample admission = %+v, want Audit with onUnknown Deny", key.Spec.Admission)
	}
	for name, p := range policies {
		if name != "payments-release-key" && p.Spec.Admission != nil {
			t.Errorf("sample %s sets admission %+v: samples other than the Audit one must not start refusing workloads", name, p.Spec.Admission)
		}
	}
	keyless := policies["example-org-keyless"]
	if keyless == nil || len(keyless.Spec.Authorities) != 1 || keyless.Spec.Authorities[0].Keyless == nil {
		t.Fatalf("keyless sample missing: %+v", keyless)
	}
	idn := keyless.Spec.Authorities[0].Keyless.Identities
	if len(idn) != 1 || idn[0].Issuer != "https://token.actions.githubusercontent.com" || idn[0].SubjectRegExp == "" {
		t.Errorf("keyless sample identities = %+v, want GitHub's issuer and a subject pattern", idn)
	}
	if keyless.Spec.Schedule != "0 */6 * * *" {
		t.Errorf("keyless sample schedule = %q, want the CRD default applied", keyless.Spec.Schedule)
	}
	if got := keyless.Spec.SBOMSources; !slices.Equal(got, []securityv1alpha1.SBOMSourceType{"Attestation", "Referrer", "Generate"}) {
		t.Errorf("keyless sample sbomSources = %v, want the CRD default", got)
	}
	allow := policies["only-company-registry"]
	if allow == nil || !slices.Equal(allow.Spec.AllowedRegistries, []string{"registry.example.com"}) || allow.Spec.RequireSignature {
		t.Errorf("registry allow-list sample = %+v, want exactly one registry and no signature requirement", allow)
	}
	gate := policies["no-fixable-criticals"]
	if gate == nil || gate.Spec.Vulnerabilities == nil || gate.Spec.Vulnerabilities.FailOnSeverity != securityv1alpha1.SeverityCritical ||
		len(gate.Spec.Vulnerabilities.Ignore) != 1 || gate.Spec.Vulnerabilities.Ignore[0].Expires == nil {
		t.Errorf("critical gate sample = %+v, want failOnSeverity Critical and one expiring exception", gate)
	}
	checkTrustSamples(t, policies)
	if len(policies) != 6 {
		t.Errorf("stored %d policies, want the 6 samples", len(policies))
	}

	scan := &securityv1alpha1.RegistryScan{}
	if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "payments-releases"}, scan); err != nil {
		t.Fatal(err)
	}
	if f := scan.Spec.TagFilter; len(f.Include) == 0 || len(f.Exclude) == 0 || f.Semver == "" || f.Latest != 5 {
		t.Errorf("RegistryScan sample tag filter = %+v", f)
	}
}

// checkTrustSamples checks the samples of each trust source: the public-good TUF root for the
// cosign key and GitHub keyless samples, a trusted_root.json ConfigMap for the private CA, and
// a Notation trust policy.
func checkTrustSamples(t *testing.T, policies map[string]*securityv1alpha1.ImageTrustPolicy) {
	t.Helper()
	for _, name := range []string{"payments-release-key", "example-org-keyless"} {
		if p := policies[name]; p == nil || p.Spec.Authorities[0].TrustRoot == nil || p.Spec.Authorities[0].TrustRoot.TUF == nil ||
			p.Spec.Authorities[0].TrustRoot.TUF.Mirror != "" {
			t.Errorf("sample %s does not name the public-good TUF root", name)
		}
	}
	private := policies["internal-ci-keyless"]
	if private == nil || private.Spec.Authorities[0].Keyless == nil || private.Spec.Authorities[0].Keyless.Roots != "" ||
		private.Spec.Authorities[0].TrustRoot == nil || private.Spec.Authorities[0].TrustRoot.TrustedRoot == nil ||
		private.Spec.Authorities[0].TrustRoot.TrustedRoot.ConfigMapRef == nil {
		t.Errorf("private-CA keyless sample = %+v, want a trusted_root.json ConfigMap and no pasted roots", private)
	}
	notary := policies["wabbit-networks-notation"]
	if notary == nil || notary.Spec.Authorities[0].Notation == nil || notary.Spec.Authorities[0].Notation.TrustStore == nil ||
		len(notary.Spec.Authorities[0].Notation.TrustedIdentities) != 1 || notary.Spec.Authorities[0].Notation.Level != securityv1alpha1.NotationStrict {
		t.Errorf("notation sample = %+v", notary)
	}
}

// TestBrokenManifestsAreRejected proves that the apply path used above really validates: a
// manifest with a typo'd field, a bad value or a sample that breaks a CEL rule is refused.
func TestBrokenManifestsAreRejected(t *testing.T) {
	ctx := testContext(t)
	const ns = "imagetrust-broken"
	ensureNamespace(t, ctx, ns)
	defaults := render(t, "config/default")
	samples := render(t, "config/samples")

	cases := []struct {
		name   string
		obj    *unstructured.Unstructured
		dryRun bool
		break_ func(u *unstructured.Unstructured)
		want   string
	}{
		{
			name: "unknown Deployment field", obj: find(t, defaults, "Deployment", deployment), dryRun: true,
			break_: func(u *unstructured.Unstructured) {
				must(t, unstructured.SetNestedField(u.Object, true, "spec", "template", "spec", "readOnlyRootFilesytem"))
			},
			want: ".spec.template.spec.readOnlyRootFilesytem: field not declared in schema",
		},
		{
			name: "bad probe port", obj: find(t, defaults, "Deployment", deployment), dryRun: true,
			break_: func(u *unstructured.Unstructured) {
				c := containers(t, u)
				c[0].(map[string]any)["livenessProbe"].(map[string]any)["httpGet"].(map[string]any)["port"] = int64(70000)
				must(t, unstructured.SetNestedSlice(u.Object, c, "spec", "template", "spec", "containers"))
			},
			want: "livenessProbe.httpGet.port: Invalid value: 70000",
		},
		{
			name: "policy without authorities", obj: find(t, samples, "ImageTrustPolicy", "payments-release-key"),
			break_: func(u *unstructured.Unstructured) {
				u.SetName("broken-no-authorities")
				unstructured.RemoveNestedField(u.Object, "spec", "authorities")
			},
			want: "authorities must list at least one key, keyless identity or notation trust policy when requireSignature is true",
		},
		{
			name: "scan with a bad regexp", obj: find(t, samples, "RegistryScan", "payments-releases"),
			break_: func(u *unstructured.Unstructured) {
				u.SetNamespace(ns)
				must(t, unstructured.SetNestedStringSlice(u.Object, []string{"(unclosed"}, "spec", "tagFilter", "include"))
			},
			want: "include must hold valid regular expressions",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := tc.obj.DeepCopy()
			tc.break_(u)
			err := apply(ctx, u, tc.dryRun)
			if err == nil {
				t.Fatalf("the API server accepted the broken %s", id(u))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v\nwant it to mention %q", err, tc.want)
			}
			// The unbroken original passes the same path.
			orig := tc.obj.DeepCopy()
			if orig.GetKind() == "RegistryScan" {
				orig.SetNamespace(ns)
			}
			if err := apply(ctx, orig, true); err != nil {
				t.Errorf("the unmodified object fails too: %v", err)
			}
		})
	}
}

func containers(t *testing.T, u *unstructured.Unstructured) []any {
	t.Helper()
	c, ok, err := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
	if err != nil || !ok || len(c) == 0 {
		t.Fatalf("%s has no containers (%v)", id(u), err)
	}
	return c
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
