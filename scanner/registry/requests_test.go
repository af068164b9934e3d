package registry_test

// What the client sends per operation: one ping per registry, no repeated https probe, every
// attempt observed, manifests and configs fetched once, one referrers listing per subject.

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imagetrust/imagetrust/scanner/registry"
	"github.com/imagetrust/imagetrust/scanner/registry/registrytest"
)

// TestOnePingPerRegistryAndNoRepeatedProbe: go-containerregistry pings a registry before
// every new repository connection, https first for hosts it may reach over plain HTTP. The
// client pings once per registry, sends the https probe to a plain-HTTP port once, does not
// report that expected failure, and reports every request the registry answered.
func TestOnePingPerRegistryAndNoRepeatedProbe(t *testing.T) {
	reg := registrytest.New(t)
	for _, r := range []string{"a:1", "b:1", "c:1"} {
		pushImage(t, reg, r)
	}
	obs := &observed{}
	c := newClient(t, reg, func(o *registry.Options) {
		o.Insecure = []string{reg.Host()}
		o.Observe = obs.hook
	})
	reg.Reset()
	for _, r := range []string{"a:1", "b:1", "c:1"} {
		if _, err := c.Resolve(ctxT(t), reg.Repo(r), nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.ListTags(ctxT(t), reg.Repo("a")); err != nil {
		t.Fatal(err)
	}
	counts := reg.Counts()
	if counts.Ping != 1 {
		t.Errorf("pings = %d for 3 repositories and a tag listing, want 1", counts.Ping)
	}
	if n := reg.TLSAttempts(); n != 1 {
		t.Errorf("https probes at the plain-HTTP port = %d, want 1 (then refused without sending)", n)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.codes) != counts.Total {
		t.Errorf("observed %d attempts, the registry answered %d: every request must be observed once", len(obs.codes), counts.Total)
	}
	for i, code := range obs.codes {
		if code == 0 {
			t.Errorf("attempt %d (%s) observed with code 0: the expected https probe failure was counted", i, obs.calls[i])
		}
	}
}

// TestSharedBudgetAcrossClients: clients with different credentials given one Shared spend
// one concurrency budget per registry and one ping.
func TestSharedBudgetAcrossClients(t *testing.T) {
	const bound = 2
	reg := registrytest.New(t)
	pushImage(t, reg, "app:1.0")
	shared := registry.NewShared()
	clients := []*registry.Client{
		newClient(t, reg, func(o *registry.Options) { o.Shared, o.MaxConcurrentPerRegistry = shared, bound }),
		newClient(t, reg, func(o *registry.Options) { o.Shared, o.MaxConcurrentPerRegistry = shared, bound }),
	}
	reg.AddFault(registrytest.Fault{Status: -1, Times: -1, Delay: 50 * time.Millisecond})
	reg.Reset()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := clients[i%2].ListTags(ctxT(t), reg.Repo("app"))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := reg.MaxInFlight(); got > bound {
		t.Errorf("max in flight = %d across two clients sharing a budget of %d", got, bound)
	}
	if n := reg.Counts().Ping; n != 1 {
		t.Errorf("pings = %d for two clients sharing per-host state, want 1", n)
	}
}

// TestImageReusesResolvedManifestAndFetchesConfigOnce: what Resolve fetched is not fetched
// again, the config is fetched once however often the image is built, and layers are read
// through the client.
func TestImageReusesResolvedManifestAndFetchesConfigOnce(t *testing.T) {
	reg := registrytest.New(t)
	pushImage(t, reg, "app:1.0")
	obs := &observed{}
	c := newClient(t, reg, func(o *registry.Options) { o.Observe = obs.hook })
	got, err := c.Resolve(ctxT(t), reg.Repo("app:1.0"), nil)
	if err != nil {
		t.Fatal(err)
	}
	reg.Reset()
	for range 2 {
		img, err := c.Image(ctxT(t), got[0].Ref)
		if err != nil {
			t.Fatalf("Image: %v", err)
		}
		cf, err := img.ConfigFile()
		if err != nil || cf.OS == "" {
			t.Fatalf("config: %+v %v", cf, err)
		}
		layers, err := img.Layers()
		if err != nil || len(layers) != 1 {
			t.Fatalf("layers: %v %v", layers, err)
		}
		if _, err := layers[0].DiffID(); err != nil {
			t.Fatal(err)
		}
		rc, err := layers[0].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatalf("reading the layer: %v", err)
		}
		rc.Close()
	}
	c2 := reg.Counts()
	if c2.Manifests.Sum() != 0 {
		t.Errorf("manifest requests after Resolve = %+v, want none (in memory)", c2.Manifests)
	}
	if c2.Blobs.GET != 3 || c2.Blobs.HEAD != 0 {
		t.Errorf("blob requests = %+v, want 3 GETs: the config once, the layer once per read, no HEAD", c2.Blobs)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.codes) < c2.Total+2 { // + the resolve's ping and GET before Reset
		t.Errorf("observed %d attempts for %d requests: the layer pulls bypass the transport", len(obs.codes), c2.Total)
	}
}

// cosignLikeManifest pushes a manifest shaped like cosign's signatures (image config, a
// simple-signing JSON layer) under tag.
func cosignLikeManifest(t *testing.T, reg *registrytest.Registry, repoTag string, layerType types.MediaType) {
	t.Helper()
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: static.NewLayer([]byte(`{"critical":{}}`), layerType)})
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
	if _, err := reg.Push(ctxT(t), repoTag, img); err != nil {
		t.Fatal(err)
	}
}

// TestArtifactsAreNotImages: signatures, attestations, OCI artifacts and referrers indexes
// fail Resolve and Image with ErrNotAnImage, which is neither transient nor "not found".
func TestArtifactsAreNotImages(t *testing.T) {
	reg := registrytest.New(t, registrytest.WithoutReferrersAPI()) // the referrers tag schema in use
	subject := pushImage(t, reg, "app:1.0")
	hexd := subject[len("sha256:"):]
	cosignLikeManifest(t, reg, "app:sha256-"+hexd+".sig", "application/vnd.dev.cosign.simplesigning.v1+json")
	cosignLikeManifest(t, reg, "app:sha256-"+hexd+".att", "application/vnd.dsse.envelope.v1+json")
	sbomArt, err := mutate.Append(empty.Image, mutate.Addendum{Layer: static.NewLayer([]byte(`{}`), "application/spdx+json")})
	if err != nil {
		t.Fatal(err)
	}
	sbomArt = mutate.ConfigMediaType(mutate.MediaType(sbomArt, types.OCIManifestSchema1), "application/spdx+json")
	desc := v1.Descriptor{MediaType: types.DockerManifestSchema2, Digest: v1.Hash{Algorithm: "sha256", Hex: hexd}, Size: 1}
	sbomArt = mutate.Subject(sbomArt, desc).(v1.Image) // ggcr's writer also writes the sha256-<hex> referrers tag
	if _, err := reg.Push(ctxT(t), "app:sbom", sbomArt); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, reg, nil)
	for _, tag := range []string{"sha256-" + hexd + ".sig", "sha256-" + hexd + ".att", "sbom", "sha256-" + hexd} {
		t.Run(tag, func(t *testing.T) {
			_, err := c.Resolve(ctxT(t), reg.Repo("app:"+tag), nil)
			if !errors.Is(err, registry.ErrNotAnImage) {
				t.Fatalf("Resolve = %v, want ErrNotAnImage", err)
			}
			if registry.IsTransient(err) || registry.IsNotFound(err) {
				t.Errorf("ErrNotAnImage classified as transient or not found: %v", err)
			}
			t.Logf("%v", err)
		})
	}
	sig, err := name.ParseReference(reg.Repo("app:sha256-" + hexd + ".sig"))
	if err != nil {
		t.Fatal(err)
	}
	_, desc2, err := manifestOf(t, c, sig)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Image(ctxT(t), sig.Context().Digest(desc2)); !errors.Is(err, registry.ErrNotAnImage) {
		t.Errorf("Image of a cosign signature = %v, want ErrNotAnImage", err)
	}
	if got, err := c.Resolve(ctxT(t), reg.Repo("app:1.0"), nil); err != nil || len(got) != 1 {
		t.Errorf("the image itself must still resolve: %+v %v", got, err)
	}
}

// manifestOf returns the digest a tag points at, via a HEAD with plain net/http.
func manifestOf(t *testing.T, c *registry.Client, ref name.Reference) (int, string, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodHead, "http://"+ref.Context().RegistryStr()+"/v2/"+ref.Context().RepositoryStr()+"/manifests/"+ref.Identifier(), nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Accept", string(types.OCIManifestSchema1))
	resp, err := (&http.Client{Transport: c.Transport()}).Do(req)
	if err != nil {
		return 0, "", err
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), nil
}

func TestIsArtifactTag(t *testing.T) {
	hex := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for tag, want := range map[string]bool{
		"sha256-" + hex + ".sig":  true,
		"sha256-" + hex + ".att":  true,
		"sha256-" + hex + ".sbom": true,
		"sha256-" + hex:           true,
		"sha512-" + hex:           true, // the tag schema truncates longer digests to 64 characters
		"sha256-" + hex + ".txt":  false,
		"sha256-" + hex[:10]:      false,
		"v1.2.3":                  false,
		"latest":                  false,
		"sha256":                  false,
	} {
		if got := registry.IsArtifactTag(tag); got != want {
			t.Errorf("IsArtifactTag(%q) = %v, want %v", tag, got, want)
		}
	}
}

// attachReferrer pushes an artifact whose subject is subject (ggcr's writer also maintains the
// sha256-<hex> tag on registries without the referrers API).
func attachReferrer(t *testing.T, reg *registrytest.Registry, repo, subject, artifactType string) {
	t.Helper()
	art, err := mutate.Append(empty.Image, mutate.Addendum{Layer: static.NewLayer([]byte(`{}`), types.MediaType(artifactType))})
	if err != nil {
		t.Fatal(err)
	}
	art = mutate.ConfigMediaType(mutate.MediaType(art, types.OCIManifestSchema1), types.MediaType(artifactType))
	h, err := v1.NewHash(subject)
	if err != nil {
		t.Fatal(err)
	}
	art = mutate.Subject(art, v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: h, Size: 1}).(v1.Image)
	d, err := art.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Push(ctxT(t), repo+"@"+d.String(), art); err != nil {
		t.Fatal(err)
	}
}

func TestReferrersOneListingPerSubject(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []registrytest.Option
		// requests for the first subject, then for a second subject of the same registry
		first, second registrytest.Counts
	}{
		{"referrers API", nil, registrytest.Counts{Referrers: 1}, registrytest.Counts{Referrers: 1}},
		// distribution answers 404: the first listing learns it, the next go to the tag directly
		{"tag schema", []registrytest.Option{registrytest.WithoutReferrersAPI()},
			registrytest.Counts{Referrers: 1, Manifests: registrytest.MethodCounts{GET: 1}},
			registrytest.Counts{Manifests: registrytest.MethodCounts{GET: 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := registrytest.New(t, tc.opts...)
			a := pushImage(t, reg, "app:1")
			b, err := reg.Push(ctxT(t), "app:2", registrytest.AlpineImage(nil))
			if err != nil {
				t.Fatal(err)
			}
			attachReferrer(t, reg, "app", a, "application/spdx+json")
			attachReferrer(t, reg, "app", a, "application/vnd.dev.sigstore.bundle.v0.3+json")
			c := newClient(t, reg, nil)
			if _, err := c.ListTags(ctxT(t), reg.Repo("app")); err != nil { // pays the ping
				t.Fatal(err)
			}
			subj, _ := name.NewDigest(reg.Repo("app@") + a)
			reg.Reset()
			var wg sync.WaitGroup
			for range 4 { // concurrent phases of one assessment share one listing
				wg.Add(1)
				go func() {
					defer wg.Done()
					idx, err := c.Referrers(ctxT(t), subj)
					if err != nil || len(idx.Manifests) != 2 {
						t.Errorf("Referrers = %+v, %v; want 2 referrers", idx, err)
					}
				}()
			}
			wg.Wait()
			idx, _ := c.Referrers(ctxT(t), subj)
			idx.Manifests[0].ArtifactType = "changed by a caller"
			if again, _ := c.Referrers(ctxT(t), subj); again.Manifests[0].ArtifactType == "changed by a caller" {
				t.Error("a caller's edit reached another caller's listing")
			}
			assertCounts(t, "first subject", reg.Counts(), tc.first)

			reg.Reset()
			other, _ := name.NewDigest(reg.Repo("app@") + b.DigestStr())
			if idx, err := c.Referrers(ctxT(t), other); err != nil || len(idx.Manifests) != 0 {
				t.Errorf("Referrers of an image without any = %+v, %v; want an empty index", idx, err)
			}
			assertCounts(t, "second subject", reg.Counts(), tc.second)
		})
	}
}

func TestReferrersTTL(t *testing.T) {
	reg := registrytest.New(t)
	a := pushImage(t, reg, "app:1")
	c := newClient(t, reg, func(o *registry.Options) { o.ReferrersTTL = 50 * time.Millisecond })
	subj, _ := name.NewDigest(reg.Repo("app@") + a)
	if idx, err := c.Referrers(ctxT(t), subj); err != nil || len(idx.Manifests) != 0 {
		t.Fatalf("Referrers = %+v, %v", idx, err)
	}
	attachReferrer(t, reg, "app", a, "application/spdx+json")
	time.Sleep(80 * time.Millisecond)
	if idx, err := c.Referrers(ctxT(t), subj); err != nil || len(idx.Manifests) != 1 {
		t.Errorf("after the TTL: Referrers = %+v, %v; want the new referrer", idx, err)
	}
}

func assertCounts(t *testing.T, what string, got, want registrytest.Counts) {
	t.Helper()
	got.Total, want.Total = 0, 0
	if got != want {
		t.Errorf("%s: requests %+v, want %+v", what, got, want)
	}
}

// TestSharedStateNeverCrossesCredentials: two clients share per-host state, one with the
// private registry's credentials and one without. What the first fetched is never served to
// the second: it asks the registry, which refuses it.
func TestSharedStateNeverCrossesCredentials(t *testing.T) {
	reg := registrytest.New(t, registrytest.WithBasicAuth("robot", "s3cret-pw"))
	pushImage(t, reg, "private:1")
	shared := registry.NewShared()
	withCreds := newClient(t, reg, func(o *registry.Options) { o.Shared = shared })
	anonymous := newClient(t, reg, func(o *registry.Options) { o.Shared, o.Keychain = shared, nil })
	got, err := withCreds.Resolve(ctxT(t), reg.Repo("private:1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	img, err := withCreds.Image(ctxT(t), got[0].Ref)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := img.ConfigFile(); err != nil {
		t.Fatal(err)
	}
	reg.Reset()
	if _, err := anonymous.Resolve(ctxT(t), got[0].Ref.String(), nil); !registry.IsUnauthorized(err) {
		t.Errorf("anonymous Resolve of a digest the other client fetched = %v, want the registry's refusal", err)
	}
	if _, err := anonymous.Image(ctxT(t), got[0].Ref); !registry.IsUnauthorized(err) {
		t.Errorf("anonymous Image of a digest the other client fetched = %v, want the registry's refusal", err)
	}
	if n := reg.Counts().Manifests.GET; n < 2 {
		t.Errorf("manifest GETs by the anonymous client = %d, want each answered by the registry", n)
	}
}

// TestManifestAndBlobOfArtifactsAreReadOnce: the verify layer reads referrers (bundles,
// signatures) with Manifest and Blob; immutable by digest, they cost one GET each however often
// they are re-verified, and a blob whose content does not match its descriptor is refused.
func TestManifestAndBlobOfArtifactsAreReadOnce(t *testing.T) {
	reg := registrytest.New(t)
	bundle := []byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`)
	art, err := mutate.Append(empty.Image, mutate.Addendum{Layer: static.NewLayer(bundle, "application/vnd.dev.sigstore.bundle.v0.3+json")})
	if err != nil {
		t.Fatal(err)
	}
	art = mutate.ConfigMediaType(mutate.MediaType(art, types.OCIManifestSchema1), types.OCIEmptyJSON)
	d, err := reg.Push(ctxT(t), "app:bundle", art)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, reg, nil)
	reg.Reset()
	var layer v1.Descriptor
	for range 3 {
		raw, desc, err := c.Manifest(ctxT(t), d)
		if err != nil || desc.Digest.String() != d.DigestStr() {
			t.Fatalf("Manifest = %s %+v %v", raw, desc, err)
		}
		mf, err := v1.ParseManifest(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		layer = mf.Layers[0]
		got, err := c.Blob(ctxT(t), d.Context(), layer)
		if err != nil || string(got) != string(bundle) {
			t.Fatalf("Blob = %q, %v", got, err)
		}
	}
	if m, b := reg.Counts().Manifests, reg.Counts().Blobs; m.GET != 1 || b.GET != 1 {
		t.Errorf("three reads cost manifests %+v, blobs %+v; want one GET each", m, b)
	}
	short := layer
	short.Size--
	if _, err := newClient(t, reg, nil).Blob(ctxT(t), d.Context(), short); err == nil {
		t.Error("a blob longer than its descriptor says was accepted")
	}
}
