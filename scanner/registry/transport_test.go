package registry_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imagetrust/imagetrust/scanner/registry"
	"github.com/imagetrust/imagetrust/scanner/registry/registrytest"

	"github.com/imagetrust/imagetrust/scanner/internal/redact"
)

// observed records Observe calls.
type observed struct {
	mu    sync.Mutex
	calls []string
	codes []int
}

func (o *observed) hook(host, method string, code int, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, method+" "+host)
	o.codes = append(o.codes, code)
}

func (o *observed) reset() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls, o.codes = nil, nil
}

func (o *observed) codesOf(method string) []int {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []int
	for i, c := range o.calls {
		if strings.HasPrefix(c, method+" ") {
			out = append(out, o.codes[i])
		}
	}
	return out
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// knowTag resolves ref once so the client re-checks it with a HEAD from then on.
func knowTag(t *testing.T, c *registry.Client, ref string) {
	t.Helper()
	if _, err := c.Resolve(ctxT(t), ref, nil); err != nil {
		t.Fatalf("Resolve %s: %v", ref, err)
	}
}

func TestRetryAfter429IsHonoured(t *testing.T) {
	reg := registrytest.New(t)
	want := pushImage(t, reg, "app:1.0")
	obs := &observed{}
	c := newClient(t, reg, func(o *registry.Options) {
		o.MaxBackoff = 3 * time.Second // above Retry-After, so it is not capped
		o.Observe = obs.hook
	})
	knowTag(t, c, reg.Repo("app:1.0"))
	reg.Fail("/manifests/", http.MethodHead, http.StatusTooManyRequests, 1, "1")
	reg.Reset()

	start := time.Now()
	got, err := c.Resolve(ctxT(t), reg.Repo("app:1.0"), nil)
	elapsed := time.Since(start)
	if err != nil || len(got) != 1 || got[0].Digest != want {
		t.Fatalf("Resolve = %+v, %v; want success with %s", got, err, want)
	}
	if elapsed < time.Second {
		t.Errorf("took %s, want >= 1s (Retry-After: 1)", elapsed)
	}
	if codes := obs.codesOf(http.MethodHead); !equalInts(codes, []int{429, 200}) {
		t.Errorf("observed HEAD codes %v, want [429 200]", codes)
	}
	if n := reg.Counts().Manifests.HEAD; n != 2 {
		t.Errorf("server saw %d HEADs, want 2", n)
	}
}

func TestRetryAfterIsCappedByMaxBackoff(t *testing.T) {
	reg := registrytest.New(t)
	pushImage(t, reg, "app:1.0")
	c := newClient(t, reg, func(o *registry.Options) { o.MaxBackoff = 50 * time.Millisecond })
	knowTag(t, c, reg.Repo("app:1.0"))
	reg.Fail("/manifests/", http.MethodHead, http.StatusServiceUnavailable, 1, "3600")
	start := time.Now()
	if _, err := c.Resolve(ctxT(t), reg.Repo("app:1.0"), nil); err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("took %s; Retry-After 3600 should be capped at MaxBackoff 50ms", el)
	}
}

func TestRetry500TwiceThenSuccess(t *testing.T) {
	reg := registrytest.New(t)
	want := pushImage(t, reg, "app:1.0")
	obs := &observed{}
	c := newClient(t, reg, func(o *registry.Options) { o.Observe = obs.hook })
	knowTag(t, c, reg.Repo("app:1.0"))
	reg.Fail("/manifests/", http.MethodHead, http.StatusInternalServerError, 2, "")
	reg.Reset()
	got, err := c.Resolve(ctxT(t), reg.Repo("app:1.0"), nil)
	if err != nil || len(got) != 1 || got[0].Digest != want {
		t.Fatalf("Resolve = %+v, %v; want success", got, err)
	}
	if codes := obs.codesOf(http.MethodHead); !equalInts(codes, []int{500, 500, 200}) {
		t.Errorf("observed HEAD codes %v, want [500 500 200]", codes)
	}
	if n := reg.Counts().Manifests.HEAD; n != 3 {
		t.Errorf("server saw %d HEADs, want 3", n)
	}
}

func TestRetry500ForeverGivesUpWithSanitisedError(t *testing.T) {
	reg := registrytest.New(t)
	pushImage(t, reg, "app:1.0")
	c := newClient(t, reg, func(o *registry.Options) { o.MaxRetries = 2 })
	knowTag(t, c, reg.Repo("app:1.0"))
	// The registry echoes a signed URL with credentials; none of it may reach the error.
	reg.AddFault(registrytest.Fault{
		PathContains: "/manifests/", Method: http.MethodGet, Status: http.StatusInternalServerError, Times: -1,
		Body: `{"errors":[{"code":"UNKNOWN","message":"backend https://bob:hunter2@storage.example/blob?token=abc123&X-Amz-Signature=deadbeef failed"}]}`,
	})
	reg.Reset()

	// A GET (remote.Get) shows the body in the error; HEAD responses have none.
	ref, _ := name.ParseReference(reg.Repo("app:1.0"))
	_, err := remote.Get(ref, c.RemoteOptions(ctxT(t))...)
	if err == nil {
		t.Fatal("remote.Get succeeded against a registry failing forever")
	}
	if n := reg.Counts().Manifests.GET; n != 3 {
		t.Errorf("server saw %d GETs, want 3 (1 + MaxRetries 2, ggcr's own retries off)", n)
	}
	serr := redact.Error(err)
	msg := serr.Error()
	for _, secret := range []string{"hunter2", "bob:", "abc123", "deadbeef", "token="} {
		if strings.Contains(msg, secret) {
			t.Errorf("sanitised error %q still contains %q", msg, secret)
		}
	}
	if !strings.Contains(msg, "https://storage.example/blob") || !strings.Contains(msg, "UNKNOWN") || !strings.Contains(msg, "/v2/app/manifests/1.0") {
		t.Errorf("sanitised error %q lost the useful parts", msg)
	}
	if !registry.IsTransient(serr) || registry.IsNotFound(serr) {
		t.Errorf("IsTransient=%v IsNotFound=%v, want true,false", registry.IsTransient(serr), registry.IsNotFound(serr))
	}

	// Resolve does the same through HEAD and sanitises by itself.
	reg.Fail("/manifests/", http.MethodHead, http.StatusInternalServerError, -1, "")
	reg.Reset()
	_, err = c.Resolve(ctxT(t), reg.Repo("app:1.0"), nil)
	if err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("Resolve err = %v, want a 500 error", err)
	}
	if m := reg.Counts().Manifests; m.HEAD != 3 || m.GET != 0 {
		t.Errorf("manifest requests %+v, want 3 HEADs and no GET fallback", m)
	}
}

func TestRetryDroppedConnectionAndTimeout(t *testing.T) {
	t.Run("dropped connection", func(t *testing.T) {
		reg := registrytest.New(t)
		want := pushImage(t, reg, "app:1.0")
		// net/http itself re-sends an idempotent request once when a reused connection dies,
		// so drop three times to be sure our retry loop sees connection errors.
		obs := &observed{}
		c := newClient(t, reg, func(o *registry.Options) { o.Observe = obs.hook })
		knowTag(t, c, reg.Repo("app:1.0"))
		obs.reset()
		reg.Fail("/manifests/", http.MethodHead, 0, 3, "")
		reg.Reset()
		got, err := c.Resolve(ctxT(t), reg.Repo("app:1.0"), nil)
		if err != nil || got[0].Digest != want {
			t.Fatalf("Resolve = %+v, %v", got, err)
		}
		codes := obs.codesOf(http.MethodHead)
		if len(codes) < 2 || codes[0] != 0 || codes[len(codes)-1] != 200 {
			t.Errorf("observed HEAD codes %v, want connection errors (0) then 200", codes)
		}
		if n := reg.Counts().Manifests.HEAD; n != 4 {
			t.Errorf("server saw %d HEADs, want 4 (3 dropped + 1 answered)", n)
		}
	})
	t.Run("attempt timeout", func(t *testing.T) {
		reg := registrytest.New(t)
		want := pushImage(t, reg, "app:1.0")
		obs := &observed{}
		c := newClient(t, reg, func(o *registry.Options) {
			o.Timeout = 200 * time.Millisecond
			o.Observe = obs.hook
		})
		knowTag(t, c, reg.Repo("app:1.0"))
		obs.reset()
		reg.AddFault(registrytest.Fault{PathContains: "/manifests/", Method: http.MethodHead, Status: -1, Times: 1, Delay: 2 * time.Second})
		start := time.Now()
		got, err := c.Resolve(ctxT(t), reg.Repo("app:1.0"), nil)
		if err != nil || got[0].Digest != want {
			t.Fatalf("Resolve = %+v, %v", got, err)
		}
		if el := time.Since(start); el > 1500*time.Millisecond {
			t.Errorf("took %s, the 2s-slow attempt should have been abandoned after 200ms", el)
		}
		if codes := obs.codesOf(http.MethodHead); !equalInts(codes, []int{0, 200}) {
			t.Errorf("observed HEAD codes %v, want [0 200]", codes)
		}
	})
}

func TestNonReplayableBodiesAreNotRetried(t *testing.T) {
	reg := registrytest.New(t)
	reg.Fail("/v2/x/", "", http.StatusInternalServerError, -1, "")
	c := newClient(t, reg, nil)
	hc := &http.Client{Transport: c.Transport()}
	ctx := ctxT(t)

	cases := []struct {
		name     string
		method   string
		body     func() io.Reader
		attempts int
	}{
		{"PUT with replayable body", http.MethodPut, func() io.Reader { return bytes.NewReader([]byte("manifest")) }, 4},
		{"PUT with stream body", http.MethodPut, func() io.Reader { return io.MultiReader(strings.NewReader("layer")) }, 1},
		{"PATCH with replayable body", http.MethodPatch, func() io.Reader { return bytes.NewReader([]byte("chunk")) }, 1},
		{"POST without body", http.MethodPost, func() io.Reader { return nil }, 4},
		{"GET", http.MethodGet, func() io.Reader { return nil }, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reg.Reset()
			req, err := http.NewRequestWithContext(ctx, tc.method, reg.URL()+"/v2/x/blobs/uploads/", tc.body())
			if err != nil {
				t.Fatal(err)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusInternalServerError {
				t.Errorf("status %d, want the final 500 passed through", resp.StatusCode)
			}
			if n := reg.Counts().Total; n != tc.attempts {
				t.Errorf("server saw %d attempts, want %d", n, tc.attempts)
			}
		})
	}
}

func TestConcurrencyBoundPerHost(t *testing.T) {
	const bound = 2
	reg := registrytest.New(t)
	pushImage(t, reg, "app:1.0")
	c := newClient(t, reg, func(o *registry.Options) { o.MaxConcurrentPerRegistry = bound })
	knowTag(t, c, reg.Repo("app:1.0"))
	// Every request is slow, so callers pile up on the client side.
	reg.AddFault(registrytest.Fault{Status: -1, Times: -1, Delay: 60 * time.Millisecond})
	reg.Reset()

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Resolve(ctxT(t), reg.Repo("app:1.0"), nil)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Resolve: %v", err)
		}
	}
	if got := reg.MaxInFlight(); got != bound {
		t.Errorf("max in-flight at the server = %d, want exactly the bound %d", got, bound)
	}
	if n := reg.Counts().Manifests.HEAD; n != 8 {
		t.Errorf("HEADs = %d, want 8", n)
	}
}

func TestRateLimitIsPerHost(t *testing.T) {
	regA := registrytest.New(t)
	regB := registrytest.New(t)
	c := newClient(t, regA, func(o *registry.Options) {
		o.RequestsPerSecond = 2 // one token every 500ms
		o.Burst = 1
	})
	hc := &http.Client{Transport: c.Transport()}
	get := func(reg *registrytest.Registry) time.Duration {
		t.Helper()
		start := time.Now()
		// not /v2/ itself: the client answers repeated pings from memory
		req, _ := http.NewRequestWithContext(ctxT(t), http.MethodGet, reg.URL()+"/v2/app/tags/list", nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET tags/list: %v", err)
		}
		resp.Body.Close()
		return time.Since(start)
	}
	start := time.Now()
	get(regA) // spends A's only token
	if d := get(regB); d > 300*time.Millisecond {
		t.Errorf("first request to B took %s: B must not wait for A's bucket", d)
	}
	get(regA)
	if el := time.Since(start); el < 450*time.Millisecond {
		t.Errorf("two requests to A done after %s, want >= ~500ms (2 req/s, burst 1)", el)
	}
	get(regA)
	if el := time.Since(start); el < 950*time.Millisecond {
		t.Errorf("three requests to A done after %s, want >= ~1s", el)
	}
}

func TestRemoteOptionsShareTransportWithoutDoubleRetries(t *testing.T) {
	reg := registrytest.New(t)
	pushImage(t, reg, "app:1.0")
	c := newClient(t, reg, func(o *registry.Options) { o.MaxRetries = 1 })
	ctx := ctxT(t)
	ref, err := name.ParseReference(reg.Repo("app:1.0"), c.NameOptions(reg.Repo("app:1.0"))...)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref, c.RemoteOptions(ctx)...)
	if err != nil {
		t.Fatalf("remote.Image: %v", err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %v %v", layers, err)
	}
	reg.Fail("/blobs/", http.MethodGet, http.StatusBadGateway, -1, "")
	reg.Reset()
	rc, err := layers[0].Compressed()
	if err == nil {
		_, err = io.ReadAll(rc)
		rc.Close()
	}
	if err == nil {
		t.Fatal("layer download succeeded against a failing registry")
	}
	if n := reg.Counts().Blobs.GET; n != 2 {
		t.Errorf("blob GETs = %d, want 2 (1 + MaxRetries 1; ggcr must not retry on top)", n)
	}
}

func TestNameOptionsForInsecureHosts(t *testing.T) {
	c := registry.New(registry.Options{Insecure: []string{"reg.local:5000", "plain.example"}})
	cases := map[string]int{
		"reg.local:5000/app:1":       1,
		"reg.local:5001/app:1":       0,
		"plain.example/team/app@sha": 1,
		"plain.example:8080/app":     1, // entry without port matches any port
		"docker.io/library/nginx":    0,
		"nginx":                      0,
	}
	for ref, want := range cases {
		if got := len(c.NameOptions(ref)); got != want {
			t.Errorf("NameOptions(%q) has %d options, want %d", ref, got, want)
		}
	}
}

func TestUserAgentIsSent(t *testing.T) {
	reg := registrytest.New(t)
	var ua string
	var mu sync.Mutex
	reg.Override(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/v2/" {
			mu.Lock()
			ua = r.Header.Get("User-Agent")
			mu.Unlock()
		}
		return false
	})
	c := newClient(t, reg, func(o *registry.Options) { o.UserAgent = "imagetrust-test/1.2" })
	_, _ = c.ListTags(context.Background(), reg.Repo("none"))
	mu.Lock()
	defer mu.Unlock()
	if !strings.HasPrefix(ua, "imagetrust-test/1.2") {
		t.Errorf("User-Agent = %q, want prefix imagetrust-test/1.2", ua)
	}
}
