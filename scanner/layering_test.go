package scanner_test

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestScannerImportsNoKubernetesClient keeps scanner/ a library usable from a CLI: nothing it
// links, directly or through a dependency, may be controller-runtime or client-go. depguard
// checks direct imports; this checks the whole dependency graph.
func TestScannerImportsNoKubernetesClient(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "list", "-deps", "./scanner/...")
	cmd.Dir = filepath.Join(filepath.Dir(file), "..")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 100 {
		t.Fatalf("go list returned only %d packages; the check would prove nothing", len(deps))
	}
	for _, p := range deps {
		if strings.HasPrefix(p, "sigs.k8s.io/controller-runtime") || strings.HasPrefix(p, "k8s.io/client-go") ||
			strings.HasPrefix(p, "github.com/imagetrust/imagetrust/controllers") {
			t.Errorf("scanner/ depends on %s", p)
		}
	}
}
