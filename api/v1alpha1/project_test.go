package v1alpha1_test

import (
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/imagetrust/imagetrust/internal/testenv"
)

// TestProjectFileDescribesTheAPI keeps the kubebuilder PROJECT file honest: every resource it
// lists exists in the scheme with the same group, version and scope as the generated CRD, and
// every kind of the API is listed.
func TestProjectFileDescribesTheAPI(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "PROJECT"))
	if err != nil {
		t.Fatal(err)
	}
	var project struct {
		Domain    string   `json:"domain"`
		Layout    []string `json:"layout"`
		Repo      string   `json:"repo"`
		Version   string   `json:"version"`
		Resources []struct {
			API struct {
				CRDVersion string `json:"crdVersion"`
				Namespaced bool   `json:"namespaced"`
			} `json:"api"`
			Domain  string `json:"domain"`
			Group   string `json:"group"`
			Kind    string `json:"kind"`
			Path    string `json:"path"`
			Version string `json:"version"`
		} `json:"resources"`
	}
	if err := yaml.UnmarshalStrict(data, &project); err != nil {
		// UnmarshalStrict fails on keys this struct does not know; plugins is one of them.
		if err := yaml.Unmarshal(data, &project); err != nil {
			t.Fatal(err)
		}
	}
	if project.Version != "3" || len(project.Layout) == 0 || project.Layout[0] != "go.kubebuilder.io/v4" {
		t.Fatalf("PROJECT is not a kubebuilder v4 project file: version %q layout %v", project.Version, project.Layout)
	}
	if project.Repo != "github.com/imagetrust/imagetrust" {
		t.Errorf("repo %q", project.Repo)
	}
	scheme := testenv.Scheme()
	listed := map[string]bool{}
	for _, r := range project.Resources {
		listed[r.Kind] = true
		gvk := testenv.GVK(r.Kind)
		if r.Group+"."+r.Domain != gvk.Group || r.Version != gvk.Version {
			t.Errorf("%s: group %s.%s version %s, want %s", r.Kind, r.Group, r.Domain, r.Version, gvk.GroupVersion())
		}
		if !scheme.Recognizes(gvk) {
			t.Errorf("PROJECT lists %s, which the API does not define", r.Kind)
		}
		if r.Path != "github.com/imagetrust/imagetrust/api/v1alpha1" {
			t.Errorf("%s: path %s", r.Kind, r.Path)
		}
		crd, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "crd", "bases", "security.imagetrust.dev_"+plural(r.Kind)+".yaml"))
		if err != nil {
			t.Errorf("%s: no generated CRD: %v", r.Kind, err)
			continue
		}
		var c struct {
			Spec struct {
				Scope string `json:"scope"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal(crd, &c); err != nil {
			t.Fatal(err)
		}
		if (c.Spec.Scope == "Namespaced") != r.API.Namespaced {
			t.Errorf("%s: PROJECT namespaced=%v but the CRD scope is %s", r.Kind, r.API.Namespaced, c.Spec.Scope)
		}
	}
	for gvk, typ := range scheme.AllKnownTypes() {
		if typ.PkgPath() == project.Repo+"/api/v1alpha1" && !listed[gvk.Kind] && !isList(gvk.Kind) {
			t.Errorf("the API defines %s but PROJECT does not list it", gvk.Kind)
		}
	}
}

func plural(kind string) string {
	return map[string]string{
		"ImageTrustReport": "imagetrustreports",
		"ImageTrustPolicy": "imagetrustpolicies",
		"RegistryScan":     "registryscans",
	}[kind]
}

func isList(kind string) bool { return len(kind) > 4 && kind[len(kind)-4:] == "List" }
