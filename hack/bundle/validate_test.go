package main

// This file needs github.com/operator-framework/api (the validators OLM, operator-sdk and
// OperatorHub run on bundles) in go.mod.

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/operator-framework/api/pkg/manifests"
	"github.com/operator-framework/api/pkg/validation"
	"github.com/operator-framework/api/pkg/validation/errors"

	"github.com/imagetrust/imagetrust/internal/kustomize"
)

// validators are operator-sdk's default bundle checks plus the OperatorHub, capability,
// category, good-practice and deprecated-API checks that catalogs run.
var validators = append(slices.Clone(validation.DefaultBundleValidators),
	validation.OperatorHubV2Validator,
	validation.StandardCapabilitiesValidator,
	validation.StandardCategoriesValidator,
	validation.GoodPracticesValidator,
	validation.AlphaDeprecatedAPIsValidator,
)

// minKubeVersion must match the CSV; the deprecated-API validator checks removals up to it.
const k8sVersion = "1.29.0"

// expectedWarnings are warnings accepted on purpose, each with the reason.
var expectedWarnings = []*regexp.Regexp{
	// Reports are written by the operator (and listed as internal-objects); a user-created
	// example would be misleading.
	regexp.MustCompile(`Kind=ImageTrustReport: provided API should have an example annotation$`),
	// The deprecated-API checks flag any RBAC rule on events.k8s.io/events or batch/cronjobs
	// because their v1beta1 versions were removed in 1.25. RBAC rules carry no version; the
	// manager uses events.k8s.io/v1 and batch/v1. Only rules (not manifests) are excused.
	regexp.MustCompile(`removed in v1\.25\. .*Migrate the API\(s\) for (events|cronjobs): \(\[("ClusterServiceVersion\.Spec\.InstallStrategy\.StrategySpec\.(Cluster)?Permissions\[\d+\]\.Rules\[\d+\]"[, ]?)+\]\)$`),
}

func validate(t *testing.T, dir string) (errs, warns []errors.Error) {
	t.Helper()
	bundle, err := manifests.GetBundleFromDir(dir)
	if err != nil {
		t.Fatalf("loading bundle %s: %v", dir, err)
	}
	// Every object of the bundle, not just the bundle: the CSV and CRD validators only look at
	// CSVs and CRDs passed to them directly.
	objs := append(bundle.ObjectsToValidate(), map[string]string{"k8s-version": k8sVersion})
	results := validators.Validate(objs...)
	for _, r := range results {
		errs = append(errs, r.Errors...)
		warns = append(warns, r.Warnings...)
	}
	return errs, warns
}

// TestBundlePassesOperatorFrameworkValidation runs the operator framework's own validators on
// the committed bundle/: any error fails, and so does any warning not listed above.
func TestBundlePassesOperatorFrameworkValidation(t *testing.T) {
	dir := filepath.Join(kustomize.RepoRoot(), "bundle")
	bundle, err := manifests.GetBundleFromDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if bundle.Package != "imagetrust" || bundle.DefaultChannel != "candidate" || !slices.Equal(bundle.Channels, []string{"candidate"}) {
		t.Errorf("bundle metadata: package %q, channels %v, default %q", bundle.Package, bundle.Channels, bundle.DefaultChannel)
	}
	if bundle.CSV == nil || len(bundle.V1CRDs) != 3 {
		t.Fatalf("bundle has CSV %v and %d CRDs, want a CSV and 3 CRDs", bundle.CSV != nil, len(bundle.V1CRDs))
	}
	if got := bundle.CSV.Spec.MinKubeVersion; got != k8sVersion {
		t.Errorf("minKubeVersion = %q, test validates against %q", got, k8sVersion)
	}
	strategy := bundle.CSV.Spec.InstallStrategy.StrategySpec
	if len(strategy.DeploymentSpecs) != 1 || len(strategy.Permissions) != 1 || len(strategy.ClusterPermissions) != 1 {
		t.Errorf("install strategy: %d deployments, %d permissions, %d clusterPermissions; want 1 each",
			len(strategy.DeploymentSpecs), len(strategy.Permissions), len(strategy.ClusterPermissions))
	}
	for _, owned := range bundle.CSV.Spec.CustomResourceDefinitions.Owned {
		if len(owned.SpecDescriptors) == 0 || len(owned.StatusDescriptors) == 0 {
			t.Errorf("owned CRD %s lacks spec or status descriptors", owned.Name)
		}
	}

	errs, warns := validate(t, dir)
	for _, e := range errs {
		t.Errorf("validation error: %s", e.Error())
	}
	for _, w := range warns {
		if !slices.ContainsFunc(expectedWarnings, func(re *regexp.Regexp) bool { return re.MatchString(w.Error()) }) {
			t.Errorf("validation warning: %s", w.Error())
		}
	}
}

// TestValidationCatchesBrokenBundles makes sure the validators above are really looking at our
// content: each mutation of a copy of bundle/ must produce the named error.
func TestValidationCatchesBrokenBundles(t *testing.T) {
	src := filepath.Join(kustomize.RepoRoot(), "bundle")
	csvFile := filepath.Join("manifests", "imagetrust.clusterserviceversion.yaml")
	cases := []struct {
		name   string
		mutate func(t *testing.T, dir string)
		want   string
	}{
		{
			name: "owned CRD missing from the bundle",
			mutate: func(t *testing.T, dir string) {
				must(t, os.Remove(filepath.Join(dir, "manifests", "security.imagetrust.dev_registryscans.yaml")))
			},
			want: `owned CRD "security.imagetrust.dev/v1alpha1, Kind=RegistryScan" not found in bundle`,
		},
		{
			name: "no install mode supported",
			mutate: func(t *testing.T, dir string) {
				replaceIn(t, filepath.Join(dir, csvFile), "  - supported: true\n    type: AllNamespaces", "  - supported: false\n    type: AllNamespaces")
			},
			want: "none of InstallModeTypes are supported",
		},
		{
			name: "example of a kind the bundle does not provide",
			mutate: func(t *testing.T, dir string) {
				replaceIn(t, filepath.Join(dir, csvFile), `"kind": "RegistryScan"`, `"kind": "RegistryScanner"`)
			},
			want: "example must have a provided API",
		},
		{
			name: "invalid category",
			mutate: func(t *testing.T, dir string) {
				replaceIn(t, filepath.Join(dir, csvFile), "categories: Security", "categories: Safety")
			},
			want: `csv.Metadata.Annotations["categories"] value "Safety" is not in the set of standard categories`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			copyDir(t, src, dir)
			tc.mutate(t, dir)
			errs, _ := validate(t, dir)
			var msgs []string
			for _, e := range errs {
				msgs = append(msgs, e.Error())
			}
			if !slices.ContainsFunc(msgs, func(m string) bool { return strings.Contains(m, tc.want) }) {
				t.Errorf("errors %q\nwant one containing %q", msgs, tc.want)
			}
		})
	}
}

func replaceIn(t *testing.T, file, old, new string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s does not contain %q", file, old)
	}
	must(t, os.WriteFile(file, []byte(strings.Replace(string(b), old, new, 1)), 0o644))
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestExpectedWarningsAreNarrow keeps the excuses above from swallowing real problems.
func TestExpectedWarningsAreNarrow(t *testing.T) {
	const prefix = "Warning: Value imagetrust.v0.1.0: this bundle is using APIs which were deprecated and removed in v1.25. More info: https://kubernetes.io/docs/reference/using-api/deprecation-guide/#v1-25. "
	for msg, want := range map[string]bool{
		"Warning: Value security.imagetrust.dev/v1alpha1, Kind=ImageTrustReport: provided API should have an example annotation":                                                                                                        true,
		"Warning: Value security.imagetrust.dev/v1alpha1, Kind=RegistryScan: provided API should have an example annotation":                                                                                                            false,
		prefix + `Migrate the API(s) for events: (["ClusterServiceVersion.Spec.InstallStrategy.StrategySpec.ClusterPermissions[0].Rules[1]"])`:                                                                                          true,
		prefix + `Migrate the API(s) for cronjobs: (["ClusterServiceVersion.Spec.InstallStrategy.StrategySpec.Permissions[0].Rules[3]"])`:                                                                                               true,
		prefix + `Migrate the API(s) for events: (["ClusterServiceVersion.Spec.InstallStrategy.StrategySpec.ClusterPermissions[0].Rules[2]" "ClusterServiceVersion.Spec.InstallStrategy.StrategySpec.ClusterPermissions[0].Rules[6]"])`: true,
		prefix + `Migrate the API(s) for events: (["ClusterServiceVersion.Spec.InstallStrategy.StrategySpec.ClusterPermissions[0].Rules[2]" "bundle/manifests/events.yaml"])`:                                                           false,
		prefix + `Migrate the API(s) for CronJob: (["imagetrust-cleanup"])`:                                                                                                                                                             false,
		prefix + `Migrate the API(s) for poddisruptionbudgets: (["ClusterServiceVersion.Spec.InstallStrategy.StrategySpec.ClusterPermissions[0].Rules[1]"])`:                                                                            false,
	} {
		got := slices.ContainsFunc(expectedWarnings, func(re *regexp.Regexp) bool { return re.MatchString(msg) })
		if got != want {
			t.Errorf("excused = %v, want %v for %q", got, want, msg)
		}
	}
}
