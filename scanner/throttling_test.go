package scanner_test

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/imagetrust/imagetrust/scanner"
	"github.com/imagetrust/imagetrust/scanner/registry"
	"github.com/imagetrust/imagetrust/scanner/registry/registrytest"
	"github.com/imagetrust/imagetrust/scanner/sbom"
)

// attempt is one attempt the registry client reported to Observe.
type attempt struct {
	method string
	code   int
}

// TestGeneratedSBOMUnder429GoesThroughTheTransport: a registry answers every fourth request
// with 429 and Retry-After: 2 while three images with four layers each are assessed at once
// and their SBOMs generated with Syft. Every request the registry saw — resolve, manifest and
// config, referrers, every layer pull — was an attempt of the registry client (reported to
// Observe with the same status), no throttled request was retried sooner than Retry-After, and
// the layer pulls (four at a time per image, three images) never exceeded the client's
// per-registry concurrency.
func TestGeneratedSBOMUnder429GoesThroughTheTransport(t *testing.T) {
	const bound, retryAfter = 2, 2 * time.Second
	ctx := context.Background()
	reg := registrytest.New(t)
	var refs []string
	for i := range 3 {
		img, err := mutate.AppendLayers(registrytest.DebianImage(debianPkgs),
			registrytest.AppLayer([]registrytest.Pkg{{Name: "lodash", Version: fmt.Sprintf("4.17.%d", 10+i)}}, nil),
			registrytest.LayerFromFiles(map[string]string{"etc/motd": fmt.Sprintf("image %d\n", i)}),
			registrytest.LayerFromFiles(map[string]string{"srv/data.txt": strings.Repeat("x", 64<<10)}))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reg.Push(ctx, reg.Repo(fmt.Sprintf("team/layered%d:v1", i)), img); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, reg.Repo(fmt.Sprintf("team/layered%d:v1", i)))
	}

	var mu sync.Mutex
	var seen []attempt
	rc := registry.New(registry.Options{
		RequestsPerSecond: -1, MaxConcurrentPerRegistry: bound, MaxRetries: 6,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 5 * time.Second,
		Observe: func(_, method string, code int, _ time.Duration) {
			mu.Lock()
			seen = append(seen, attempt{method, code})
			mu.Unlock()
		},
	})
	sc, err := scanner.New(scanner.Config{Registry: rc, Generator: &sbom.Generator{Images: rc, LayerPulls: 4}})
	if err != nil {
		t.Fatal(err)
	}
	reg.AddFault(registrytest.Fault{Status: http.StatusTooManyRequests, Times: -1, Every: 4, RetryAfter: "2"})
	reg.Reset()

	var wg sync.WaitGroup
	for _, ref := range refs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			imgs, err := sc.Resolve(ctx, ref, nil)
			if err != nil {
				t.Errorf("resolve %s: %v", ref, err)
				return
			}
			a, err := sc.Assess(ctx, imgs[0], nil)
			if err != nil || a.SBOM == nil || a.SBOM.Source != sbom.SourceGenerated || a.SBOM.Packages != len(debianPkgs)+2 {
				t.Errorf("assess %s: %v, SBOM %s (%s)", ref, err, describe(a.SBOM), a.SBOMReason)
			}
		}()
	}
	wg.Wait()

	log := reg.Requests()
	t.Logf("per path (method path: statuses):\n%s", perPath(log))
	assertObservedEqualsServed(t, log, seen, &mu)
	assertRetriesWaited(t, log, retryAfter)
	if got := reg.MaxInFlight(); got > bound {
		t.Errorf("the registry served %d requests at once; the client's bound is %d", got, bound)
	}
	layers := 0
	for _, r := range log {
		if r.Kind == registrytest.KindBlob && r.Status == http.StatusOK {
			layers++
		}
	}
	if layers != 3*5 { // 4 layers and a config per image
		t.Errorf("blobs pulled = %d, want 15 (each config and layer exactly once)", layers)
	}
}

// assertObservedEqualsServed compares the registry's log with the client's Observe reports as
// multisets of (method, status): a request the client did not send through its transport
// would be in the log only.
func assertObservedEqualsServed(t *testing.T, log []registrytest.Request, seen []attempt, mu *sync.Mutex) {
	t.Helper()
	served := map[attempt]int{}
	for _, r := range log {
		served[attempt{r.Method, r.Status}]++
	}
	mu.Lock()
	defer mu.Unlock()
	observed := map[attempt]int{}
	for _, a := range seen {
		observed[a]++
	}
	for a, n := range served {
		if observed[a] != n {
			t.Errorf("%s answered %d: the registry served %d, the client observed %d", a.method, a.code, n, observed[a])
		}
	}
	for a, n := range observed {
		if served[a] == 0 {
			t.Errorf("%s answered %d: observed %d times, never served", a.method, a.code, n)
		}
	}
	if served[attempt{http.MethodGet, http.StatusTooManyRequests}] == 0 {
		t.Error("no request was throttled: the test proves nothing")
	}
}

// assertRetriesWaited checks that after each 429 the same request came again no sooner than
// Retry-After after the answer.
func assertRetriesWaited(t *testing.T, log []registrytest.Request, retryAfter time.Duration) {
	t.Helper()
	for i, r := range log {
		if r.Status != http.StatusTooManyRequests {
			continue
		}
		done := r.Start.Add(r.Duration)
		for _, next := range log[i+1:] {
			if next.Method != r.Method || next.Path != r.Path || next.Query != r.Query {
				continue
			}
			if gap := next.Start.Sub(done); gap < retryAfter-50*time.Millisecond {
				t.Errorf("%s %s retried %s after a 429 with Retry-After %s", r.Method, r.Path, gap.Round(time.Millisecond), retryAfter)
			}
			break
		}
	}
}

// perPath renders the request log as one line per method and path with the statuses in order.
func perPath(log []registrytest.Request) string {
	by := map[string][]string{}
	for _, r := range log {
		k := r.Method + " " + r.Path
		by[k] = append(by[k], fmt.Sprint(r.Status))
	}
	keys := make([]string, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s: %s\n", k, strings.Join(by[k], " "))
	}
	return b.String()
}
