// Package kustomize renders the repository's kustomize trees with the kustomize binary that
// `make kustomize` builds into bin/, so tests and generators see exactly what `kubectl apply -k`
// and `make deploy` would install.
package kustomize

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// RepoRoot is the repository root, found from this file's location so that callers in any
// package (and `go run ./hack/...`) resolve config/ the same way.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Binary returns the kustomize executable: $KUSTOMIZE when set (the Makefile passes its own
// $(KUSTOMIZE)), else bin/kustomize-<KUSTOMIZE_VERSION> with the version read from the Makefile,
// so a test never silently renders with some other kustomize found on PATH.
func Binary() (string, error) {
	if p := os.Getenv("KUSTOMIZE"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("KUSTOMIZE=%s: %w (run `make kustomize`)", p, err)
		}
		return p, nil
	}
	root := RepoRoot()
	version, err := MakefileVar(filepath.Join(root, "Makefile"), "KUSTOMIZE_VERSION")
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, "bin", "kustomize-"+version)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("kustomize %s is not built at %s: run `make kustomize` (make test does it)", version, p)
	}
	return p, nil
}

// MakefileVar reads a `NAME ?= value` (or := or =) assignment from a Makefile, so tests use the
// same pinned versions and defaults as the make targets.
func MakefileVar(makefile, name string) (string, error) {
	f, err := os.Open(makefile)
	if err != nil {
		return "", err
	}
	defer func() { _ = f.Close() }()
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		for _, op := range []string{"?=", ":=", "="} {
			if v, ok := strings.CutPrefix(line, name+" "+op); ok {
				return strings.TrimSpace(v), nil
			}
		}
	}
	if err := s.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("%s does not set %s", makefile, name)
}

// Build runs `kustomize build` on dir (relative to the repository root, or absolute) and returns
// the rendered multi-document YAML.
func Build(dir string) ([]byte, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(RepoRoot(), dir)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "build", dir)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w: %s", dir, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// Decode splits multi-document YAML into objects. Empty documents are skipped; a document
// without apiVersion or kind is an error, as kubectl would refuse it.
func Decode(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for i := 0; ; i++ {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetAPIVersion() == "" || u.GetKind() == "" {
			return nil, fmt.Errorf("document %d (%q) has no apiVersion or kind", i, u.GetName())
		}
		objs = append(objs, u)
	}
}

// BuildObjects renders dir and decodes the result.
func BuildObjects(dir string) ([]*unstructured.Unstructured, error) {
	data, err := Build(dir)
	if err != nil {
		return nil, err
	}
	return Decode(data)
}
