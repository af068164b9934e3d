package policyconv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	v1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner/verify/signtest"
	"github.com/imagetrust/imagetrust/scanner/verify/trustroot"
)

// The shipped sample policies convert as the manager converts them: with the ConfigMaps their
// comments say to create, the only problems left are public-good TUF roots still loading.
func TestSamplePoliciesConvert(t *testing.T) {
	ca, err := signtest.NewCA("samples")
	if err != nil {
		t.Fatal(err)
	}
	cluster := objects{
		"imagetrust-system/sigstore-trusted-root/trusted_root.json": privateRoot(t),
		"imagetrust-system/notation-ca/ca.pem":                      ca.RootPEM,
	}
	files, err := filepath.Glob("../../config/samples/security_v1alpha1_imagetrustpolicy_*.yaml")
	if err != nil || len(files) < 6 {
		t.Fatalf("samples: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var p v1.ImageTrustPolicy
			if err := yaml.UnmarshalStrict(data, &p); err != nil {
				t.Fatal(err)
			}
			pool := trustroot.NewPool(trustroot.PoolConfig{CacheDir: t.TempDir()})
			c, err := Convert(bg, &p, cluster.env(pool))
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Policy.Problems) != len(c.Pending) {
				t.Errorf("problems beyond roots still loading: %q", c.Policy.Problems)
			}
			for _, msg := range c.Pending {
				if !strings.Contains(msg, trustroot.PublicGoodName) {
					t.Errorf("pending %q is not the public-good root", msg)
				}
			}
			if len(c.Policy.AuthorityConfigs) != len(p.Spec.Authorities) {
				t.Errorf("%d of %d authorities converted", len(c.Policy.AuthorityConfigs), len(p.Spec.Authorities))
			}
		})
	}
}
