package admission

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/imagetrust/imagetrust/internal/testenv"
)

// startImagePolicyWorld boots an API server with the ImagePolicyWebhook admission plugin
// pointed at this process. The plugin reads its kubeconfig at boot, so the backend's port, CA
// and serving certificate exist before the API server starts; the manager serves them from
// files (the mode cert-manager and OLM use). defaultAllow is false: a backend error refuses.
func startImagePolicyWorld() (*world, error) {
	dir, err := os.MkdirTemp("", "admission-imagepolicy-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	ca, err := newCA(now, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	serving, err := issue(ca, []string{"127.0.0.1"}, now, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{"ca.crt": ca.Cert, "tls.crt": serving.Cert, "tls.key": serving.Key,
		"kubeconfig": imagePolicyKubeconfig(port, filepath.Join(dir, "ca.crt")),
		"admission.yaml": []byte(fmt.Sprintf(`apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: ImagePolicyWebhook
  configuration:
    imagePolicy:
      kubeConfigFile: %s
      # no answer caching: every table case is a fresh question
      allowTTL: -1
      denyTTL: -1
      retryBackoff: 100
      defaultAllow: false
`, filepath.Join(dir, "kubeconfig")))}
	// Metadata-level audit of Pods: where the API server records the ImageReview's audit
	// annotations (this door's warnings).
	files["audit-policy.yaml"] = []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  resources: [{group: \"\", resources: [pods]}]\n")
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return nil, err
		}
	}
	env, err := testenv.StartWith(func(e *envtest.Environment) {
		e.ControlPlane.GetAPIServer().Configure().
			Append("enable-admission-plugins", "ImagePolicyWebhook").
			Set("admission-control-config-file", filepath.Join(dir, "admission.yaml")).
			Set("audit-policy-file", filepath.Join(dir, "audit-policy.yaml")).
			Set("audit-log-path", filepath.Join(dir, "audit.log"))
	})
	if err != nil {
		return nil, err
	}
	if err := env.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: managerNS}}); err != nil {
		_ = env.Stop()
		return nil, err
	}
	r, err := registryForWorlds()
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	w, err := startManager(env, env.Config, Options{
		ManagerNamespace: managerNS, Assessor: NewQueue(256),
		Resolver:    newScannerResolver(r.Host()),
		ImagePolicy: true, WebhookHost: "127.0.0.1", WebhookPort: port,
		Certs: CertOptions{Mode: CertsFromFiles, Dir: dir},
	})
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	w.auditLog = filepath.Join(dir, "audit.log")
	return w, nil
}

func imagePolicyKubeconfig(port int, caFile string) []byte {
	return []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: imagetrust
  cluster:
    server: https://127.0.0.1:%d%s
    certificate-authority: %s
users:
- name: kube-apiserver
  user: {}
contexts:
- name: imagetrust
  context: {cluster: imagetrust, user: kube-apiserver}
current-context: imagetrust
`, port, ImageReviewPath, caFile))
}
