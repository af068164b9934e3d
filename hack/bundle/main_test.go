package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/imagetrust/imagetrust/internal/kustomize"
)

// makeOptions are the options `make bundle` passes, read from the Makefile's defaults.
func makeOptions(t *testing.T) options {
	t.Helper()
	mk := filepath.Join(kustomize.RepoRoot(), "Makefile")
	get := func(name string) string {
		v, err := kustomize.MakefileVar(mk, name)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	return options{
		Package: "imagetrust", Version: get("VERSION"), Image: get("IMG"),
		Channels: get("BUNDLE_CHANNELS"), DefaultChannel: get("BUNDLE_DEFAULT_CHANNEL"),
	}
}

func renderManifests(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	objs, err := kustomize.BuildObjects("config/manifests")
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// TestCommittedBundleIsUpToDate regenerates the bundle from config/manifests and compares it
// with bundle/ and bundle.Dockerfile as committed: a change to config/ without `make bundle`
// fails here (and in `make verify`).
func TestCommittedBundleIsUpToDate(t *testing.T) {
	files, err := generate(renderManifests(t), makeOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	root := kustomize.RepoRoot()
	var committed []string
	err = filepath.WalkDir(filepath.Join(root, "bundle"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		committed = append(committed, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatalf("reading bundle/: %v (run `make bundle`)", err)
	}
	committed = append(committed, "bundle.Dockerfile")
	sort.Strings(committed)
	if want := sortedKeys(files); !slices.Equal(committed, want) {
		t.Fatalf("bundle files differ; run `make bundle`.\ncommitted: %v\ngenerated: %v", committed, want)
	}
	for _, name := range committed {
		got, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(name)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, files[name]) {
			t.Errorf("%s is out of date: run `make bundle`", name)
		}
	}
}

// TestGenerateIsDeterministic guards `make verify`: two runs give identical bytes.
func TestGenerateIsDeterministic(t *testing.T) {
	objs := renderManifests(t)
	a, err := generate(objs, makeOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	// Reverse the input order: the output must not depend on it.
	rev := slices.Clone(renderManifests(t))
	slices.Reverse(rev)
	b, err := generate(rev, makeOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != len(b) {
		t.Fatalf("%d vs %d files", len(a), len(b))
	}
	for name := range a {
		if !bytes.Equal(a[name], b[name]) {
			t.Errorf("%s differs between runs", name)
		}
	}
}

// csvOf generates the bundle and decodes its CSV.
func csvOf(t *testing.T, objs []*unstructured.Unstructured, opts options) (map[string][]byte, map[string]any) {
	t.Helper()
	files, err := generate(objs, opts)
	if err != nil {
		t.Fatal(err)
	}
	var csv map[string]any
	if err := yaml.Unmarshal(files["bundle/manifests/imagetrust.clusterserviceversion.yaml"], &csv); err != nil {
		t.Fatal(err)
	}
	return files, csv
}

// TestCSVContents checks what the generator derives from config/: the Deployment, the RBAC
// split, the examples and the owned CRDs.
func TestCSVContents(t *testing.T) {
	objs := renderManifests(t)
	opts := makeOptions(t)
	opts.Image = "registry.example.com/imagetrust@sha256:" + strings.Repeat("ab", 32)
	files, csv := csvOf(t, objs, opts)
	u := &unstructured.Unstructured{Object: csv}

	if got := u.GetName(); got != "imagetrust.v"+opts.Version {
		t.Errorf("CSV name = %q", got)
	}
	if v, _, _ := unstructured.NestedString(csv, "spec", "version"); v != opts.Version {
		t.Errorf("spec.version = %q, want %q", v, opts.Version)
	}
	if u.GetAnnotations()["containerImage"] != opts.Image {
		t.Errorf("containerImage = %q", u.GetAnnotations()["containerImage"])
	}

	// Install strategy: the rendered Deployment, with the image replaced and nothing else.
	deps, _, _ := unstructured.NestedSlice(csv, "spec", "install", "spec", "deployments")
	if len(deps) != 1 {
		t.Fatalf("deployments = %d, want 1", len(deps))
	}
	dep := deps[0].(map[string]any)
	if dep["name"] != "imagetrust-controller-manager" {
		t.Errorf("deployment name = %v", dep["name"])
	}
	var rendered *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			rendered = o.DeepCopy()
		}
	}
	if err := setManagerImage(rendered, opts.Image); err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(rendered.Object["spec"])
	got, _ := json.Marshal(dep["spec"])
	if !bytes.Equal(want, got) {
		t.Errorf("CSV deployment spec differs from config/default's Deployment:\n got %s\nwant %s", got, want)
	}

	// RBAC: the leader-election Role is namespaced; manager and metrics-auth roles are cluster
	// wide; unbound roles ship as bundle manifests of their own.
	rules := func(field string) []any {
		perms, _, _ := unstructured.NestedSlice(csv, "spec", "install", "spec", field)
		if len(perms) != 1 || perms[0].(map[string]any)["serviceAccountName"] != "imagetrust-controller-manager" {
			t.Fatalf("%s = %v, want one entry for imagetrust-controller-manager", field, perms)
		}
		return perms[0].(map[string]any)["rules"].([]any)
	}
	if !hasRule(rules("permissions"), "coordination.k8s.io", "leases", "update") {
		t.Error("permissions lack the leader-election lease rule")
	}
	if hasRule(rules("permissions"), "authentication.k8s.io", "tokenreviews", "create") {
		t.Error("cluster-scoped tokenreviews ended up in namespaced permissions")
	}
	cluster := rules("clusterPermissions")
	for _, r := range [][3]string{
		{"authentication.k8s.io", "tokenreviews", "create"},
		{"authorization.k8s.io", "subjectaccessreviews", "create"},
		{"", "pods", "watch"},
	} {
		if !hasRule(cluster, r[0], r[1], r[2]) {
			t.Errorf("clusterPermissions lack %s %s/%s", r[2], r[0], r[1])
		}
	}
	for _, name := range []string{
		"bundle/manifests/imagetrust-metrics-reader_rbac.authorization.k8s.io_v1_clusterrole.yaml",
		"bundle/manifests/imagetrust-registryscan-editor-role_rbac.authorization.k8s.io_v1_clusterrole.yaml",
		"bundle/manifests/imagetrust-controller-manager-metrics-service_v1_service.yaml",
		"bundle/manifests/security.imagetrust.dev_imagetrustreports.yaml",
	} {
		if files[name] == nil {
			t.Errorf("bundle lacks %s", name)
		}
	}
	for name := range files {
		if strings.Contains(name, "_serviceaccount") || strings.Contains(name, "binding") || strings.Contains(name, "_namespace") ||
			strings.Contains(name, "manager-role") || strings.Contains(name, "leader-election") {
			t.Errorf("bundle ships %s, which OLM creates from the CSV", name)
		}
		if strings.Contains(string(files[name]), "namespace: imagetrust-system") {
			t.Errorf("%s pins namespace imagetrust-system; OLM chooses the namespace", name)
		}
	}

	// alm-examples: the samples, as valid JSON, without namespaces.
	var examples []map[string]any
	if err := json.Unmarshal([]byte(u.GetAnnotations()["alm-examples"]), &examples); err != nil {
		t.Fatalf("alm-examples: %v", err)
	}
	var kinds []string
	for _, e := range examples {
		ex := &unstructured.Unstructured{Object: e}
		kinds = append(kinds, ex.GetKind()+"/"+ex.GetName())
		if ex.GetNamespace() != "" {
			t.Errorf("example %s has a namespace", ex.GetName())
		}
	}
	samples, err := kustomize.BuildObjects("config/samples")
	if err != nil {
		t.Fatal(err)
	}
	var wantKinds []string
	for _, s := range samples {
		wantKinds = append(wantKinds, s.GetKind()+"/"+s.GetName())
	}
	sort.Strings(wantKinds)
	if len(wantKinds) < 2 || !slices.Equal(kinds, wantKinds) {
		t.Errorf("alm-examples = %v, want %v", kinds, wantKinds)
	}

	checkWebhookDefinitions(t, csv, files, cluster)

	modes, _, _ := unstructured.NestedSlice(csv, "spec", "installModes")
	supported := map[string]bool{}
	for _, m := range modes {
		mm := m.(map[string]any)
		supported[mm["type"].(string)] = mm["supported"].(bool)
	}
	if !slices.Equal(sortedKeys(supported), []string{"AllNamespaces", "MultiNamespace", "OwnNamespace", "SingleNamespace"}) ||
		!supported["AllNamespaces"] || supported["OwnNamespace"] || supported["SingleNamespace"] || supported["MultiNamespace"] {
		t.Errorf("installModes = %v, want only AllNamespaces supported", supported)
	}
}

// checkWebhookDefinitions: admission ships as one webhookdefinition OLM can serve: the
// Deployment's webhook port and path, every workload kind, failing open (OLM's selector reaches
// kube-system), certificates from OLM's mount, and no rights the manager only needs to manage
// certificates itself.
func checkWebhookDefinitions(t *testing.T, csv map[string]any, files map[string][]byte, cluster []any) {
	t.Helper()
	defs, _, _ := unstructured.NestedSlice(csv, "spec", "webhookdefinitions")
	if len(defs) != 1 {
		t.Fatalf("webhookdefinitions = %v, want one", defs)
	}
	d := defs[0].(map[string]any)
	for k, want := range map[string]any{
		"type": "ValidatingAdmissionWebhook", "generateName": "workloads.admission.imagetrust.dev", "deploymentName": "imagetrust-controller-manager",
		"targetPort": "webhook", "webhookPath": "/validate-imagetrust", "failurePolicy": "Ignore", "sideEffects": "NoneOnDryRun",
	} {
		if d[k] != want {
			t.Errorf("webhookdefinition %s = %v, want %v", k, d[k], want)
		}
	}
	if _, ok := d["namespaceSelector"]; ok {
		t.Error("webhookdefinition carries a namespaceSelector, which OLM ignores")
	}
	var resources []string
	for _, r := range d["rules"].([]any) {
		resources = append(resources, anyStrings(r.(map[string]any)["resources"])...)
	}
	for _, want := range []string{"pods", "pods/ephemeralcontainers", "deployments", "statefulsets", "daemonsets", "replicasets", "jobs", "cronjobs"} {
		if !slices.Contains(resources, want) {
			t.Errorf("webhookdefinition does not cover %s", want)
		}
	}
	deps, _, _ := unstructured.NestedSlice(csv, "spec", "install", "spec", "deployments")
	containers, _, _ := unstructured.NestedSlice(deps[0].(map[string]any), "spec", "template", "spec", "containers")
	args := anyStrings(containers[0].(map[string]any)["args"])
	for _, want := range []string{"--admission=webhook,imagepolicy", "--admission-cert-mode=files", "--admission-cert-dir=/tmp/k8s-webhook-server/serving-certs"} {
		if !slices.Contains(args, want) {
			t.Errorf("bundled manager args %v lack %s", args, want)
		}
	}
	if hasRule(cluster, "admissionregistration.k8s.io", "validatingwebhookconfigurations", "update") {
		t.Error("clusterPermissions let the manager write webhook configurations; OLM injects the CA")
	}
	for name := range files {
		if strings.Contains(name, "imagetrust-admission_v1_service") || strings.Contains(name, "admission-certs") {
			t.Errorf("bundle ships %s: OLM creates the webhook Service and certificates", name)
		}
	}
	if files["bundle/manifests/imagetrust-controller-manager_policy_v1_poddisruptionbudget.yaml"] == nil {
		t.Error("bundle lacks the PodDisruptionBudget")
	}
}

func hasRule(rules []any, group, resource, verb string) bool {
	for _, r := range rules {
		m := r.(map[string]any)
		if slices.Contains(anyStrings(m["apiGroups"]), group) && slices.Contains(anyStrings(m["resources"]), resource) &&
			slices.Contains(anyStrings(m["verbs"]), verb) {
			return true
		}
	}
	return false
}

func anyStrings(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// TestGenerateRejectsBrokenInput: each kind of inconsistency between config/ and the base CSV
// stops `make bundle` with a message naming it.
func TestGenerateRejectsBrokenInput(t *testing.T) {
	cases := []struct {
		name   string
		opts   func(*options)
		break_ func(t *testing.T, objs []*unstructured.Unstructured) []*unstructured.Unstructured
		want   string
	}{
		{
			name: "descriptor path not in the schema",
			break_: func(t *testing.T, objs []*unstructured.Unstructured) []*unstructured.Unstructured {
				editOwned(t, objs, "registryscans.security.imagetrust.dev", func(e map[string]any) {
					e["specDescriptors"] = append(e["specDescriptors"].([]any), map[string]any{"path": "tagFilter.newest", "displayName": "Newest"})
				})
				return objs
			},
			want: `registryscans.security.imagetrust.dev specDescriptors: descriptor path "tagFilter.newest": spec.tagFilter.newest is not in the CRD schema`,
		},
		{
			name: "status descriptor not in the schema",
			break_: func(t *testing.T, objs []*unstructured.Unstructured) []*unstructured.Unstructured {
				editOwned(t, objs, "imagetrustreports.security.imagetrust.dev", func(e map[string]any) {
					e["statusDescriptors"] = append(e["statusDescriptors"].([]any), map[string]any{"path": "verdict", "displayName": "Verdict"})
				})
				return objs
			},
			want: `imagetrustreports.security.imagetrust.dev statusDescriptors: descriptor path "verdict": status.verdict is not in the CRD schema`,
		},
		{
			name: "CRD not owned by the CSV",
			break_: func(t *testing.T, objs []*unstructured.Unstructured) []*unstructured.Unstructured {
				csv := findObj(t, objs, "ClusterServiceVersion")
				owned, _, _ := unstructured.NestedSlice(csv.Object, "spec", "customresourcedefinitions", "owned")
				must(t, unstructured.SetNestedSlice(csv.Object, owned[:2], "spec", "customresourcedefinitions", "owned"))
				return objs
			},
			want: "CRD registryscans.security.imagetrust.dev is not listed in the base CSV's spec.customresourcedefinitions.owned",
		},
		{
			name: "owned CRD missing",
			break_: func(t *testing.T, objs []*unstructured.Unstructured) []*unstructured.Unstructured {
				return slices.DeleteFunc(objs, func(u *unstructured.Unstructured) bool {
					return u.GetName() == "imagetrustreports.security.imagetrust.dev"
				})
			},
			want: `base CSV owns "imagetrustreports.security.imagetrust.dev", but no such CRD is rendered`,
		},
		{
			name: "binding to a missing role",
			break_: func(t *testing.T, objs []*unstructured.Unstructured) []*unstructured.Unstructured {
				return slices.DeleteFunc(objs, func(u *unstructured.Unstructured) bool {
					return u.GetKind() == "ClusterRole" && u.GetName() == "imagetrust-metrics-auth-role"
				})
			},
			want: `ClusterRoleBinding imagetrust-metrics-auth-rolebinding refers to ClusterRole "imagetrust-metrics-auth-role", which the input does not define`,
		},
		{
			name: "binding to another subject",
			break_: func(t *testing.T, objs []*unstructured.Unstructured) []*unstructured.Unstructured {
				for _, u := range objs {
					if u.GetKind() == "ClusterRoleBinding" && u.GetName() == "imagetrust-manager-rolebinding" {
						must(t, unstructured.SetNestedSlice(u.Object, []any{map[string]any{"kind": "User", "name": "alice"}}, "subjects"))
					}
				}
				return objs
			},
			want: "OLM can only grant RBAC to the operator's own account",
		},
		{
			name: "an object the bundle cannot carry",
			break_: func(t *testing.T, objs []*unstructured.Unstructured) []*unstructured.Unstructured {
				cm := &unstructured.Unstructured{}
				cm.SetAPIVersion("batch/v1")
				cm.SetKind("Job")
				cm.SetName("migrate")
				return append(objs, cm)
			},
			want: `Job "migrate": hack/bundle does not know where this belongs in an OLM bundle`,
		},
		{
			name: "deployment's account missing",
			break_: func(t *testing.T, objs []*unstructured.Unstructured) []*unstructured.Unstructured {
				return slices.DeleteFunc(objs, func(u *unstructured.Unstructured) bool { return u.GetKind() == "ServiceAccount" })
			},
			want: `the Deployment imagetrust-controller-manager runs as ServiceAccount "imagetrust-controller-manager", which the input does not define`,
		},
		{
			name: "webhook with a namespace selector",
			break_: func(t *testing.T, objs []*unstructured.Unstructured) []*unstructured.Unstructured {
				editWebhook(t, objs, func(wh map[string]any) { wh["namespaceSelector"] = map[string]any{} })
				return objs
			},
			want: "OLM chooses the namespaceSelector",
		},
		{
			name: "webhook called by URL",
			break_: func(t *testing.T, objs []*unstructured.Unstructured) []*unstructured.Unstructured {
				editWebhook(t, objs, func(wh map[string]any) { wh["clientConfig"] = map[string]any{"url": "https://example.com/x"} })
				return objs
			},
			want: "a URL client configuration cannot be bundled",
		},
		{
			name: "webhook Service missing",
			break_: func(t *testing.T, objs []*unstructured.Unstructured) []*unstructured.Unstructured {
				return slices.DeleteFunc(objs, func(u *unstructured.Unstructured) bool {
					return u.GetKind() == "Service" && u.GetName() == "imagetrust-admission"
				})
			},
			want: `calls Service "imagetrust-admission", which the input does not define`,
		},
		{
			name: "webhook Service selecting other pods",
			break_: func(t *testing.T, objs []*unstructured.Unstructured) []*unstructured.Unstructured {
				for _, u := range objs {
					if u.GetKind() == "Service" && u.GetName() == "imagetrust-admission" {
						must(t, unstructured.SetNestedStringMap(u.Object, map[string]string{"app": "other"}, "spec", "selector"))
					}
				}
				return objs
			},
			want: "does not select the Deployment imagetrust-controller-manager's Pods",
		},
		{
			name: "webhook calling a port the Service lacks",
			break_: func(t *testing.T, objs []*unstructured.Unstructured) []*unstructured.Unstructured {
				editWebhook(t, objs, func(wh map[string]any) {
					wh["clientConfig"].(map[string]any)["service"].(map[string]any)["port"] = int64(8443)
				})
				return objs
			},
			want: "Service imagetrust-admission has no port 8443",
		},
		{
			name: "not a semantic version",
			opts: func(o *options) { o.Version = "v0.1" },
			want: `version "v0.1" is not a semantic version such as 0.1.0`,
		},
		{
			name: "default channel not a channel",
			opts: func(o *options) { o.DefaultChannel = "stable" },
			want: `default channel "stable" is not one of the channels "candidate"`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := renderManifests(t)
			opts := makeOptions(t)
			if tc.break_ != nil {
				objs = tc.break_(t, objs)
			}
			if tc.opts != nil {
				tc.opts(&opts)
			}
			_, err := generate(objs, opts)
			if err == nil {
				t.Fatal("generate accepted the broken input")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func findObj(t *testing.T, objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	t.Helper()
	for _, u := range objs {
		if u.GetKind() == kind {
			return u
		}
	}
	t.Fatalf("no %s rendered", kind)
	return nil
}

func editOwned(t *testing.T, objs []*unstructured.Unstructured, name string, edit func(map[string]any)) {
	t.Helper()
	csv := findObj(t, objs, "ClusterServiceVersion")
	owned, _, _ := unstructured.NestedSlice(csv.Object, "spec", "customresourcedefinitions", "owned")
	for _, o := range owned {
		if e := o.(map[string]any); e["name"] == name {
			edit(e)
		}
	}
	must(t, unstructured.SetNestedSlice(csv.Object, owned, "spec", "customresourcedefinitions", "owned"))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestSchemaHasPath covers the descriptor path walker, including array items.
func TestSchemaHasPath(t *testing.T) {
	schema := map[string]any{"properties": map[string]any{"spec": map[string]any{"properties": map[string]any{
		"authorities": map[string]any{"type": "array", "items": map[string]any{"properties": map[string]any{"name": map[string]any{"type": "string"}}}},
		"schedule":    map[string]any{"type": "string"},
	}}}}
	for path, ok := range map[string]bool{
		"schedule": true, "authorities": true, "authorities[0].name": true, "authorities[].name": true,
		"authorities.name": false, "schedule[0]": false, "nope": false, "authorities[0].key": false,
	} {
		if err := schemaHasPath(schema, "spec", path); (err == nil) != ok {
			t.Errorf("schemaHasPath(%q) = %v, want ok=%v", path, err, ok)
		}
	}
}

func editWebhook(t *testing.T, objs []*unstructured.Unstructured, edit func(map[string]any)) {
	t.Helper()
	cfg := findObj(t, objs, "ValidatingWebhookConfiguration")
	hooks, _, _ := unstructured.NestedSlice(cfg.Object, "webhooks")
	edit(hooks[0].(map[string]any))
	must(t, unstructured.SetNestedSlice(cfg.Object, hooks, "webhooks"))
}
