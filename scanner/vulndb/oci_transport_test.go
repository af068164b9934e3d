package vulndb

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	imregistry "github.com/imagetrust/imagetrust/scanner/registry"
	"github.com/imagetrust/imagetrust/scanner/registry/registrytest"
)

// TestImportOCIThroughTheRegistryClient: the air-gapped DB pull, given the registry client's
// options as the manager does, makes every attempt through its transport (observed, throttled,
// retried after Retry-After), uses the call's context rather than the one the options were
// built with, and parses the reference as the client says (insecure hosts, default registry).
func TestImportOCIThroughTheRegistryClient(t *testing.T) {
	reg := registrytest.New(t)
	ctx := context.Background()
	archive := newTestArchive(t, time.Now().Add(-time.Hour).UTC().Round(time.Second), testVulns)
	if _, err := PushArchiveOCI(ctx, reg.Repo("security/grype-db:v6"), archive); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var observed []int
	rc := imregistry.New(imregistry.Options{
		RequestsPerSecond: -1, MinBackoff: 5 * time.Millisecond, MaxBackoff: 3 * time.Second,
		Observe: func(_, _ string, code int, _ time.Duration) {
			mu.Lock()
			observed = append(observed, code)
			mu.Unlock()
		},
	})
	// built once with a context that is over by the time ImportOCI runs, as at manager start-up
	startCtx, stop := context.WithCancel(ctx)
	opts := rc.RemoteOptions(startCtx)
	stop()

	m, err := New(Config{Dir: t.TempDir(), ValidateChecksum: true,
		OCINameOptions: func(string) []name.Option { return []name.Option{name.WithDefaultRegistry(reg.Host())} }})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	reg.AddFault(registrytest.Fault{Status: http.StatusTooManyRequests, Times: -1, Every: 2, RetryAfter: "1"})
	reg.Reset()
	changed, err := m.ImportOCI(ctx, "security/grype-db:v6", opts...) // no host: the name options supply it
	if err != nil || !changed {
		t.Fatalf("ImportOCI = %v, %v", changed, err)
	}

	log := reg.Requests()
	mu.Lock()
	defer mu.Unlock()
	if len(observed) != len(log) {
		t.Errorf("observed %d attempts, the registry answered %d", len(observed), len(log))
	}
	throttled := 0
	for i, r := range log {
		if r.Status != http.StatusTooManyRequests {
			continue
		}
		throttled++
		for _, next := range log[i+1:] {
			if next.Method == r.Method && next.Path == r.Path {
				if gap := next.Start.Sub(r.Start.Add(r.Duration)); gap < 950*time.Millisecond {
					t.Errorf("%s %s retried %s after a 429 with Retry-After: 1", r.Method, r.Path, gap)
				}
				break
			}
		}
	}
	if throttled == 0 || !strings.Contains(log[len(log)-1].Path, "/blobs/") {
		t.Errorf("the fault never fired or the layer was not pulled last: %+v", log)
	}
}
