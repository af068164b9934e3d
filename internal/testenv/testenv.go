// Package testenv starts the real control plane (kube-apiserver + etcd built by
// hack/control-plane.sh) under controller-runtime's envtest, with the imagetrust CRDs installed.
//
// Tests call Start from TestMain. KUBEBUILDER_ASSETS (set by `make test`) points at the binaries;
// without it the build script is run, which returns at once when the binaries are cached.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
)

// Env is a running control plane with the imagetrust CRDs installed.
type Env struct {
	*envtest.Environment
	Config *rest.Config
	Client client.Client
	Scheme *k8sruntime.Scheme
}

// RepoRoot is the repository root, found from this file's location so tests in any package
// can locate config/ and hack/. A binary built with -trimpath (bin/demo) knows only the module
// path: then it is the nearest directory above the working directory holding this module's
// go.mod.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	if filepath.IsAbs(file) {
		return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	}
	dir, err := os.Getwd()
	if err != nil {
		return "."
	}
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && strings.HasPrefix(string(b), "module github.com/imagetrust/imagetrust\n") {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}

// Assets returns the directory holding kube-apiserver, etcd and kubectl.
func Assets() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	cmd := exec.Command(filepath.Join(RepoRoot(), "hack", "control-plane.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("building the control plane with hack/control-plane.sh: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Scheme returns a scheme with the core Kubernetes types and the imagetrust API.
func Scheme() *k8sruntime.Scheme {
	s := k8sruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := securityv1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// Start boots the control plane and installs the CRDs from config/crd/bases.
func Start() (*Env, error) { return StartWith(nil) }

// StartWith is Start with a hook that adjusts the environment before it boots, for example to
// pass kube-apiserver flags (ControlPlane.GetAPIServer().Configure()).
func StartWith(configure func(*envtest.Environment)) (*Env, error) {
	assets, err := Assets()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	if configure != nil {
		configure(env)
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting envtest: %w", err)
	}
	scheme := Scheme()
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	return &Env{Environment: env, Config: cfg, Client: c, Scheme: scheme}, nil
}

// GVK is a shorthand for an imagetrust kind's GroupVersionKind.
func GVK(kind string) schema.GroupVersionKind {
	return securityv1alpha1.GroupVersion.WithKind(kind)
}
