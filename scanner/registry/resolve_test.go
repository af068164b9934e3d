package registry_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imagetrust/imagetrust/scanner/registry"
	"github.com/imagetrust/imagetrust/scanner/registry/registrytest"
)

// newClient returns a client for reg with test-speed backoff and no rate limit; mod adjusts it.
func newClient(t *testing.T, reg *registrytest.Registry, mod func(*registry.Options)) *registry.Client {
	t.Helper()
	o := registry.Options{
		Keychain:          reg.Keychain(),
		RootCAs:           reg.CertPool(),
		RequestsPerSecond: -1,
		MinBackoff:        5 * time.Millisecond,
		MaxBackoff:        20 * time.Millisecond,
		MaxRetries:        3,
		Timeout:           5 * time.Second,
	}
	if mod != nil {
		mod(&o)
	}
	return registry.New(o)
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var debPkgs = []registrytest.Pkg{{Name: "libssl3", Version: "3.0.11-1~deb12u2"}, {Name: "zlib1g", Version: "1:1.2.13.dfsg-1"}}

func pushImage(t *testing.T, reg *registrytest.Registry, ref string) string {
	t.Helper()
	d, err := reg.Push(ctxT(t), ref, registrytest.DebianImage(debPkgs))
	if err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return d.DigestStr()
}

func TestResolveTagFirstGETThenHEAD(t *testing.T) {
	reg := registrytest.New(t)
	want := pushImage(t, reg, "app:1.0")
	c := newClient(t, reg, nil)
	reg.Reset()

	got, err := c.Resolve(ctxT(t), reg.Repo("app:1.0"), nil)
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if len(got) != 1 {
		t.Fatalf("got %d results, want 1: %+v", len(got), got)
	}
	r := got[0]
	if r.Repository != reg.Repo("app") || r.Tag != "1.0" || r.Digest != want || r.Platform != "" || r.IndexDigest != "" {
		t.Errorf("Resolved = %+v, want repo %s tag 1.0 digest %s, no platform, no index", r, reg.Repo("app"), want)
	}
	if r.Ref.String() != reg.Repo("app")+"@"+want {
		t.Errorf("Ref = %s, want %s@%s", r.Ref, reg.Repo("app"), want)
	}
	if m := reg.Counts().Manifests; m.GET != 1 || m.Sum() != 1 {
		t.Errorf("first sight: manifest requests = %+v, want exactly 1 GET (the manifest is needed anyway)", m)
	}

	reg.Reset()
	if got, err = c.Resolve(ctxT(t), reg.Repo("app:1.0"), nil); err != nil || got[0].Digest != want {
		t.Fatalf("second Resolve = %+v, %v", got, err)
	}
	if m := reg.Counts().Manifests; m.HEAD != 1 || m.Sum() != 1 {
		t.Errorf("known tag: manifest requests = %+v, want exactly 1 HEAD (content in memory)", m)
	}

	moved, err := reg.Push(ctxT(t), "app:1.0", registrytest.AlpineImage(nil))
	if err != nil {
		t.Fatal(err)
	}
	reg.Reset()
	if got, err = c.Resolve(ctxT(t), reg.Repo("app:1.0"), nil); err != nil || got[0].Digest != moved.DigestStr() {
		t.Fatalf("Resolve after the tag moved = %+v, %v; want %s", got, err, moved.DigestStr())
	}
	if m := reg.Counts().Manifests; m.HEAD != 1 || m.GET != 1 || m.Sum() != 2 {
		t.Errorf("moved tag: manifest requests = %+v, want 1 HEAD + 1 GET by the new digest", m)
	}
	if last := reg.Requests(); len(last) == 0 || !strings.HasSuffix(last[len(last)-1].Path, moved.DigestStr()) {
		t.Errorf("the GET after a moved tag must be by digest, got %+v", last)
	}
}

// pushIndex pushes a 3-platform index with an attestation entry and returns it.
func pushIndex(t *testing.T, reg *registrytest.Registry, ref string) (v1.ImageIndex, map[string]string) {
	t.Helper()
	amd := registrytest.DebianImage(debPkgs)
	idx := registrytest.Index(map[string]v1.Image{
		"linux/amd64":  amd,
		"linux/arm64":  registrytest.DebianImage(debPkgs),
		"linux/arm/v7": registrytest.AlpineImage([]registrytest.Pkg{{Name: "musl", Version: "1.2.4_git20230717-r4"}}),
	})
	idx = registrytest.AddAttestation(idx, amd)
	if _, err := reg.Push(ctxT(t), ref, idx); err != nil {
		t.Fatalf("push index: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	digests := map[string]string{}
	for _, d := range im.Manifests {
		p := d.Platform.OS + "/" + d.Platform.Architecture
		if d.Platform.Variant != "" {
			p += "/" + d.Platform.Variant
		}
		digests[p] = d.Digest.String()
	}
	if len(digests) != 4 || digests["unknown/unknown"] == "" {
		t.Fatalf("fixture index should have 3 platforms + attestation, got %v", digests)
	}
	return idx, digests
}

func TestResolveIndexWithPlatformFilter(t *testing.T) {
	reg := registrytest.New(t)
	idx, digests := pushIndex(t, reg, "multi:latest")
	idxDigest, _ := idx.Digest()
	c := newClient(t, reg, nil)
	reg.Reset()

	got, err := c.Resolve(ctxT(t), reg.Repo("multi:latest"), []v1.Platform{
		{OS: "linux", Architecture: "arm", Variant: "v7"},
		{OS: "linux", Architecture: "arm64"},
	})
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	want := []registry.Resolved{
		{Repository: reg.Repo("multi"), Tag: "latest", Digest: digests["linux/arm/v7"], Platform: "linux/arm/v7", IndexDigest: idxDigest.String()},
		{Repository: reg.Repo("multi"), Tag: "latest", Digest: digests["linux/arm64"], Platform: "linux/arm64", IndexDigest: idxDigest.String()},
	}
	assertResolved(t, got, want)
	if m := reg.Counts().Manifests; m.GET != 1 || m.Sum() != 1 {
		t.Errorf("manifest requests = %+v, want 1 GET (the index by tag)", m)
	}
}

func TestResolveIndexAllPlatformsSkipsAttestations(t *testing.T) {
	reg := registrytest.New(t)
	idx, digests := pushIndex(t, reg, "multi:latest")
	idxDigest, _ := idx.Digest()
	c := newClient(t, reg, nil)

	got, err := c.Resolve(ctxT(t), reg.Repo("multi:latest"), nil)
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	var want []registry.Resolved
	for _, p := range []string{"linux/amd64", "linux/arm/v7", "linux/arm64"} { // index order
		want = append(want, registry.Resolved{Repository: reg.Repo("multi"), Tag: "latest", Digest: digests[p], Platform: p, IndexDigest: idxDigest.String()})
	}
	assertResolved(t, got, want)
}

func TestResolveIndexMissingPlatform(t *testing.T) {
	reg := registrytest.New(t)
	pushIndex(t, reg, "multi:latest")
	c := newClient(t, reg, nil)

	_, err := c.Resolve(ctxT(t), reg.Repo("multi:latest"), []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "s390x"}})
	if !errors.Is(err, registry.ErrPlatformNotFound) {
		t.Fatalf("err = %v, want ErrPlatformNotFound", err)
	}
	for _, s := range []string{"linux/s390x", "available: linux/amd64, linux/arm/v7, linux/arm64"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

func TestResolveArm64VariantMatchesImplicitV8(t *testing.T) {
	reg := registrytest.New(t)
	_, digests := pushIndex(t, reg, "multi:latest")
	c := newClient(t, reg, nil)
	got, err := c.Resolve(ctxT(t), reg.Repo("multi:latest"), []v1.Platform{{OS: "linux", Architecture: "arm64", Variant: "v8"}})
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if len(got) != 1 || got[0].Digest != digests["linux/arm64"] || got[0].Platform != "linux/arm64" {
		t.Errorf("got %+v, want the linux/arm64 entry %s", got, digests["linux/arm64"])
	}
}

func TestResolveDigestRefs(t *testing.T) {
	reg := registrytest.New(t)
	idx, digests := pushIndex(t, reg, "multi:latest")
	idxDigest, _ := idx.Digest()
	c := newClient(t, reg, nil)

	t.Run("platform digest resolves to itself", func(t *testing.T) {
		reg.Reset()
		ref := reg.Repo("multi@") + digests["linux/arm64"]
		got, err := c.Resolve(ctxT(t), ref, []v1.Platform{{OS: "linux", Architecture: "amd64"}})
		if err != nil {
			t.Fatalf("Resolve: %v", err)
		}
		assertResolved(t, got, []registry.Resolved{{Repository: reg.Repo("multi"), Digest: digests["linux/arm64"]}})
		if m := reg.Counts().Manifests; m.GET != 1 || m.Sum() != 1 {
			t.Errorf("manifest requests = %+v, want 1 GET", m)
		}
		reg.Reset()
		if _, err := c.Resolve(ctxT(t), ref, nil); err != nil {
			t.Fatal(err)
		}
		if n := reg.Counts().Total; n != 0 {
			t.Errorf("a digest resolved before cost %d requests, want 0 (content is immutable)", n)
		}
	})
	t.Run("index digest fans out", func(t *testing.T) {
		got, err := c.Resolve(ctxT(t), reg.Repo("multi@")+idxDigest.String(), []v1.Platform{{OS: "linux", Architecture: "amd64"}})
		if err != nil {
			t.Fatalf("Resolve: %v", err)
		}
		assertResolved(t, got, []registry.Resolved{{Repository: reg.Repo("multi"), Digest: digests["linux/amd64"], Platform: "linux/amd64", IndexDigest: idxDigest.String()}})
	})
}

func assertResolved(t *testing.T, got, want []registry.Resolved) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d results %+v, want %d %+v", len(got), got, len(want), want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Repository != w.Repository || g.Tag != w.Tag || g.Digest != w.Digest || g.Platform != w.Platform || g.IndexDigest != w.IndexDigest {
			t.Errorf("result %d = %+v, want %+v", i, g, w)
		}
		if g.Ref.String() != w.Repository+"@"+w.Digest {
			t.Errorf("result %d Ref = %s, want %s@%s", i, g.Ref, w.Repository, w.Digest)
		}
	}
}

func TestResolveNotFound(t *testing.T) {
	reg := registrytest.New(t)
	pushImage(t, reg, "app:1.0")
	c := newClient(t, reg, nil)
	reg.Reset()

	_, err := c.Resolve(ctxT(t), reg.Repo("app:nope"), nil)
	if err == nil {
		t.Fatal("Resolve of a missing tag succeeded")
	}
	if !registry.IsNotFound(err) || registry.IsUnauthorized(err) || registry.IsTransient(err) {
		t.Errorf("IsNotFound=%v IsUnauthorized=%v IsTransient=%v for %v; want true,false,false",
			registry.IsNotFound(err), registry.IsUnauthorized(err), registry.IsTransient(err), err)
	}
	if !strings.Contains(err.Error(), "MANIFEST_UNKNOWN") {
		t.Errorf("error %q does not carry the registry's reason", err)
	}
	if m := reg.Counts().Manifests; m.Sum() != 1 {
		t.Errorf("manifest requests = %+v, want a single one (404 is final)", m)
	}
}

func TestResolveUnauthorized(t *testing.T) {
	t.Run("injected 401", func(t *testing.T) {
		reg := registrytest.New(t)
		pushImage(t, reg, "app:1.0")
		reg.Fail("/manifests/", "", http.StatusUnauthorized, -1, "")
		c := newClient(t, reg, nil)
		reg.Reset()
		_, err := c.Resolve(ctxT(t), reg.Repo("app:1.0"), nil)
		if !registry.IsUnauthorized(err) || registry.IsNotFound(err) || registry.IsTransient(err) {
			t.Errorf("IsUnauthorized=%v IsNotFound=%v IsTransient=%v for %v", registry.IsUnauthorized(err), registry.IsNotFound(err), registry.IsTransient(err), err)
		}
		if n := reg.Counts().Manifests.Sum(); n != 1 {
			t.Errorf("manifest requests = %d, want 1 (401 is not retried)", n)
		}
	})
	t.Run("basic auth registry without credentials", func(t *testing.T) {
		reg := registrytest.New(t, registrytest.WithBasicAuth("alice", "s3cret-pw"))
		pushImage(t, reg, "app:1.0")
		c := registry.New(registry.Options{RequestsPerSecond: -1})
		_, err := c.Resolve(ctxT(t), reg.Repo("app:1.0"), nil)
		if !registry.IsUnauthorized(err) {
			t.Errorf("IsUnauthorized = false for %v", err)
		}
	})
}

func TestResolveMalformedManifest(t *testing.T) {
	reg := registrytest.New(t)
	c := newClient(t, reg, nil)
	cases := []struct {
		name, mediaType, body string
		wantText              []string
	}{
		{"index that is not JSON", string(types.OCIImageIndex), `{"schemaVersion": 2, "manifests": [`, []string{"malformed", "image index"}},
		{"unknown type, not JSON", "application/octet-stream", `<html>oops</html>`, []string{"malformed", "not valid JSON"}},
		{"unknown type, unknown shape", "application/octet-stream", `{"hello":"world"}`, []string{"unsupported manifest media type", "application/octet-stream"}},
		{"schema 1", string(types.DockerManifestSchema1), `{"schemaVersion":1,"fsLayers":[]}`, []string{"schema 1"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tag := "bad" + string(rune('a'+i))
			reg.ServeRawManifest("broken", tag, tc.mediaType, []byte(tc.body))
			_, err := c.Resolve(ctxT(t), reg.Repo("broken:"+tag), nil)
			if !errors.Is(err, registry.ErrMalformedManifest) {
				t.Fatalf("err = %v, want ErrMalformedManifest", err)
			}
			for _, s := range tc.wantText {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			if registry.IsTransient(err) {
				t.Errorf("malformed manifest reported as transient")
			}
		})
	}
}

func TestResolveInvalidReference(t *testing.T) {
	c := registry.New(registry.Options{})
	_, err := c.Resolve(context.Background(), "Not A Ref!!", nil)
	if err == nil || !strings.Contains(err.Error(), "invalid image reference") {
		t.Errorf("err = %v, want invalid image reference", err)
	}
}

func TestResolveOverTLS(t *testing.T) {
	reg := registrytest.New(t, registrytest.WithTLS())
	want := pushImage(t, reg, "app:1.0")

	t.Run("trusted CA", func(t *testing.T) {
		c := newClient(t, reg, nil)
		got, err := c.Resolve(ctxT(t), reg.Repo("app:1.0"), nil)
		if err != nil || len(got) != 1 || got[0].Digest != want {
			t.Fatalf("Resolve = %+v, %v; want digest %s", got, err, want)
		}
		tags, err := c.ListTags(ctxT(t), reg.Repo("app"))
		if err != nil || len(tags) != 1 || tags[0] != "1.0" {
			t.Errorf("ListTags over TLS = %v, %v; want [1.0]", tags, err)
		}
	})
	t.Run("untrusted CA fails fast without retries", func(t *testing.T) {
		var attempts int
		c := newClient(t, reg, func(o *registry.Options) {
			o.RootCAs = nil
			o.Observe = func(string, string, int, time.Duration) { attempts++ }
		})
		_, err := c.Resolve(ctxT(t), reg.Repo("app:1.0"), nil)
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("err = %v, want a certificate error", err)
		}
		if registry.IsTransient(err) {
			t.Errorf("certificate error reported as transient")
		}
		// ggcr pings https and (for 127.0.0.1) http; neither is retried.
		if attempts > 2 {
			t.Errorf("%d attempts, want at most 2 (no retries of TLS failures)", attempts)
		}
	})
	t.Run("insecure host skips verification", func(t *testing.T) {
		c := newClient(t, reg, func(o *registry.Options) {
			o.RootCAs = nil
			o.Insecure = []string{reg.Host()}
		})
		got, err := c.Resolve(ctxT(t), reg.Repo("app:1.0"), nil)
		if err != nil || len(got) != 1 || got[0].Digest != want {
			t.Fatalf("Resolve = %+v, %v; want digest %s", got, err, want)
		}
	})
}

func TestResolveFallsBackToGetWhenHeadIsUnusable(t *testing.T) {
	cases := []struct {
		name string
		head func(w http.ResponseWriter)
	}{
		{"HEAD without Docker-Content-Digest", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", string(types.OCIManifestSchema1))
			w.Header().Set("Content-Length", "10")
			w.WriteHeader(http.StatusOK)
		}},
		{"HEAD not allowed", func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusMethodNotAllowed)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reg := registrytest.New(t)
			want := pushImage(t, reg, "app:1.0")
			c := newClient(t, reg, nil)
			if _, err := c.Resolve(ctxT(t), reg.Repo("app:1.0"), nil); err != nil { // the tag is known: HEAD next
				t.Fatal(err)
			}
			reg.Override(func(w http.ResponseWriter, r *http.Request) bool {
				if r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/manifests/") {
					tc.head(w)
					return true
				}
				return false
			})
			reg.Reset()
			got, err := c.Resolve(ctxT(t), reg.Repo("app:1.0"), nil)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			assertResolved(t, got, []registry.Resolved{{Repository: reg.Repo("app"), Tag: "1.0", Digest: want}})
			if m := reg.Counts().Manifests; m.HEAD != 1 || m.GET != 1 {
				t.Errorf("manifest requests = %+v, want 1 HEAD then 1 GET", m)
			}
		})
	}
}
