package registrytest_test

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imagetrust/imagetrust/scanner/registry/registrytest"
)

// files returns path → content of the flattened image filesystem.
func files(t *testing.T, img v1.Image) map[string]string {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	out := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("reading image filesystem: %v", err)
		}
		if h.Typeflag == tar.TypeReg {
			b, _ := io.ReadAll(tr)
			out[h.Name] = string(b)
		}
	}
}

func TestDebianImageContent(t *testing.T) {
	img := registrytest.DebianImage([]registrytest.Pkg{{Name: "zlib1g", Version: "1:1.2.13.dfsg-1"}, {Name: "libssl3", Version: "3.0.11-1~deb12u2"}})
	fs := files(t, img)
	if !strings.Contains(fs["etc/os-release"], "ID=debian") || !strings.Contains(fs["etc/os-release"], `VERSION_ID="12"`) ||
		!strings.Contains(fs["etc/os-release"], "VERSION_CODENAME=bookworm") {
		t.Errorf("os-release = %q", fs["etc/os-release"])
	}
	status := fs["var/lib/dpkg/status"]
	stanzas := strings.Split(strings.TrimSpace(status), "\n\n")
	if len(stanzas) != 2 {
		t.Fatalf("dpkg status has %d stanzas, want 2:\n%s", len(stanzas), status)
	}
	if !strings.HasPrefix(stanzas[0], "Package: libssl3\nStatus: install ok installed\n") || !strings.Contains(stanzas[0], "\nVersion: 3.0.11-1~deb12u2\n") {
		t.Errorf("first stanza (sorted by name) = %q", stanzas[0])
	}
	if !strings.Contains(stanzas[1], "Package: zlib1g\n") || !strings.Contains(stanzas[1], "\nVersion: 1:1.2.13.dfsg-1\n") {
		t.Errorf("second stanza = %q", stanzas[1])
	}
	cf, _ := img.ConfigFile()
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("config platform = %s/%s", cf.OS, cf.Architecture)
	}
	mt, _ := img.MediaType()
	if mt != types.OCIManifestSchema1 {
		t.Errorf("media type = %s, want OCI manifest", mt)
	}
	// Reproducible: same input, same digest.
	d1, _ := img.Digest()
	d2, _ := registrytest.DebianImage([]registrytest.Pkg{{Name: "libssl3", Version: "3.0.11-1~deb12u2"}, {Name: "zlib1g", Version: "1:1.2.13.dfsg-1"}}).Digest()
	if d1 != d2 {
		t.Errorf("digests differ for the same packages: %s vs %s", d1, d2)
	}
}

func TestAlpineImageContent(t *testing.T) {
	fs := files(t, registrytest.AlpineImage([]registrytest.Pkg{{Name: "musl", Version: "1.2.4_git20230717-r4"}, {Name: "busybox", Version: "1.36.1-r15"}}))
	if !strings.Contains(fs["etc/os-release"], "ID=alpine") || !strings.Contains(fs["etc/os-release"], "VERSION_ID=3.19.1") {
		t.Errorf("os-release = %q", fs["etc/os-release"])
	}
	db := fs["lib/apk/db/installed"]
	entries := strings.Split(strings.TrimSpace(db), "\n\n")
	if len(entries) != 2 {
		t.Fatalf("apk db has %d entries, want 2:\n%s", len(entries), db)
	}
	if !strings.HasPrefix(entries[0], "C:Q1") || !strings.Contains(entries[0], "\nP:busybox\nV:1.36.1-r15\n") {
		t.Errorf("first entry = %q", entries[0])
	}
	if !strings.Contains(entries[1], "\nP:musl\nV:1.2.4_git20230717-r4\n") {
		t.Errorf("second entry = %q", entries[1])
	}
}

func TestAppImageContent(t *testing.T) {
	fs := files(t, registrytest.AppImage(
		[]registrytest.Pkg{{Name: "lodash", Version: "4.17.20"}, {Name: "@types/node", Version: "20.1.0"}},
		[]registrytest.Pkg{{Name: "golang.org/x/text", Version: "0.3.7"}, {Name: "github.com/gorilla/mux", Version: "v1.8.0"}},
	))
	var root struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	if err := json.Unmarshal([]byte(fs["app/package.json"]), &root); err != nil {
		t.Fatalf("app/package.json: %v", err)
	}
	if root.Dependencies["lodash"] != "4.17.20" || root.Dependencies["@types/node"] != "20.1.0" {
		t.Errorf("dependencies = %v", root.Dependencies)
	}
	var mod struct{ Name, Version string }
	if err := json.Unmarshal([]byte(fs["app/node_modules/@types/node/package.json"]), &mod); err != nil || mod.Name != "@types/node" || mod.Version != "20.1.0" {
		t.Errorf("scoped module package.json = %+v, %v", mod, err)
	}
	wantMod := "module example.com/imagetrust/demo-app\n\ngo 1.22\n\nrequire (\n\tgithub.com/gorilla/mux v1.8.0\n\tgolang.org/x/text v0.3.7\n)\n"
	if fs["app/go.mod"] != wantMod {
		t.Errorf("go.mod = %q, want %q", fs["app/go.mod"], wantMod)
	}
}

func TestBaseAnnotationsIndexAndAttestation(t *testing.T) {
	base := registrytest.DebianImage(nil)
	img := registrytest.WithBaseAnnotations(mutate.Annotations(registrytest.AppImage([]registrytest.Pkg{{Name: "a", Version: "1.0.0"}}, nil),
		map[string]string{"keep": "me"}).(v1.Image), "docker.io/library/debian:12", "sha256:"+strings.Repeat("ab", 32))
	m, _ := img.Manifest()
	if m.Annotations[registrytest.AnnotationBaseName] != "docker.io/library/debian:12" ||
		m.Annotations[registrytest.AnnotationBaseDigest] != "sha256:"+strings.Repeat("ab", 32) || m.Annotations["keep"] != "me" {
		t.Errorf("annotations = %v", m.Annotations)
	}
	cf, _ := img.ConfigFile()
	if cf.Config.Labels[registrytest.LabelBaseImage] != "docker.io/library/debian:12" {
		t.Errorf("labels = %v", cf.Config.Labels)
	}

	idx := registrytest.AddAttestation(registrytest.Index(map[string]v1.Image{"linux/arm/v7": base, "linux/amd64": base}), base)
	im, _ := idx.IndexManifest()
	if len(im.Manifests) != 3 {
		t.Fatalf("index has %d manifests, want 3", len(im.Manifests))
	}
	wantPlat := []string{"linux/amd64", "linux/arm/v7", "unknown/unknown"}
	for i, d := range im.Manifests {
		if got := d.Platform.String(); got != wantPlat[i] {
			t.Errorf("manifest %d platform %s, want %s", i, got, wantPlat[i])
		}
	}
	if im.Manifests[0].Digest == im.Manifests[1].Digest {
		t.Errorf("per-platform images share a digest; configs should differ")
	}
	child, err := idx.Image(im.Manifests[1].Digest)
	if err != nil {
		t.Fatal(err)
	}
	if ccf, _ := child.ConfigFile(); ccf.Architecture != "arm" || ccf.Variant != "v7" {
		t.Errorf("arm/v7 child config = %s/%s", ccf.Architecture, ccf.Variant)
	}
	if im.Manifests[2].Annotations["vnd.docker.reference.type"] != "attestation-manifest" {
		t.Errorf("attestation annotations = %v", im.Manifests[2].Annotations)
	}
}

func TestCountsFaultsAndLog(t *testing.T) {
	reg := registrytest.New(t)
	ctx := context.Background()
	img := registrytest.DebianImage(nil)
	d, err := reg.Push(ctx, "app:1", img)
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	if want, _ := img.Digest(); d.DigestStr() != want.String() || d.Context().Name() != reg.Repo("app") {
		t.Errorf("Push returned %s, want %s@%s", d, reg.Repo("app"), want)
	}
	reg.Reset()
	if c := reg.Counts(); c != (registrytest.Counts{}) {
		t.Fatalf("Reset left %+v", c)
	}

	f := reg.Fail("/manifests/", http.MethodGet, http.StatusTooManyRequests, 1, "7")
	do := func(method, path string) *http.Response {
		req, _ := http.NewRequest(method, reg.URL()+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		resp.Body.Close()
		return resp
	}
	resp := do(http.MethodHead, "/v2/app/manifests/1") // method does not match the fault
	if resp.StatusCode != 200 {
		t.Errorf("HEAD status %d", resp.StatusCode)
	}
	resp = do(http.MethodGet, "/v2/app/manifests/1")
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "7" {
		t.Errorf("faulted GET: status %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if do(http.MethodGet, "/v2/app/manifests/1").StatusCode != 200 || f.Hits() != 1 {
		t.Errorf("fault should have been used up after 1 hit (hits %d)", f.Hits())
	}
	do(http.MethodGet, "/v2/")
	do(http.MethodGet, "/v2/app/tags/list")
	do(http.MethodGet, "/v2/app/blobs/"+d.DigestStr())
	do(http.MethodGet, "/v2/app/referrers/"+d.DigestStr())

	want := registrytest.Counts{Ping: 1, Manifests: registrytest.MethodCounts{GET: 2, HEAD: 1}, Blobs: registrytest.MethodCounts{GET: 1}, Tags: 1, Referrers: 1, Total: 7}
	if got := reg.Counts(); got != want {
		t.Errorf("Counts = %+v, want %+v", got, want)
	}
	log := reg.Requests()
	if len(log) != 7 || !log[1].Injected || log[1].Status != 429 || log[0].Injected || log[0].Kind != registrytest.KindManifest {
		t.Errorf("request log = %+v", log)
	}
}

func TestDroppedConnectionFault(t *testing.T) {
	reg := registrytest.New(t)
	reg.Fail("/v2/", "", 0, 1, "")
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	_, err := (&http.Client{Transport: tr}).Get(reg.URL() + "/v2/")
	if err == nil {
		t.Fatal("GET succeeded through a dropped connection")
	}
	if log := reg.Requests(); len(log) != 1 || log[0].Status != 0 || !log[0].Injected {
		t.Errorf("log = %+v", log)
	}
}

func TestBasicAuthAndTLS(t *testing.T) {
	reg := registrytest.New(t, registrytest.WithBasicAuth("u", "p"), registrytest.WithTLS())
	if reg.CertPool() == nil || !strings.HasPrefix(reg.URL(), "https://") {
		t.Fatalf("TLS registry: pool %v url %s", reg.CertPool(), reg.URL())
	}
	ctx := context.Background()
	if _, err := reg.Push(ctx, "app:1", registrytest.DebianImage(nil)); err != nil {
		t.Fatalf("Push with credentials over TLS: %v", err)
	}
	ref, _ := name.ParseReference(reg.Repo("app:1"))
	// Right transport, no credentials: 401.
	_, err := remote.Head(ref, remote.WithTransport(reg.Transport()))
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("anonymous HEAD err = %v, want 401", err)
	}
	if _, err := remote.Head(ref, reg.RemoteOptions(ctx)...); err != nil {
		t.Errorf("HEAD with credentials: %v", err)
	}
}

func TestTagPaginationLinks(t *testing.T) {
	reg := registrytest.New(t, registrytest.WithTagPagination(2))
	if _, err := reg.PushTags(context.Background(), "app", registrytest.DebianImage(nil), "a", "b", "c", "d", "e"); err != nil {
		t.Fatal(err)
	}
	next := "/v2/app/tags/list"
	var pages [][]string
	for next != "" && len(pages) < 10 {
		resp, err := http.Get(reg.URL() + next)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Tags []string }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		pages = append(pages, body.Tags)
		next = ""
		if l := resp.Header.Get("Link"); l != "" {
			next = l[1:strings.Index(l, ">")]
		}
	}
	got, _ := json.Marshal(pages)
	if string(got) != `[["a","b"],["c","d"],["e"]]` {
		t.Errorf("pages = %s", got)
	}
}

func TestServeRawManifest(t *testing.T) {
	reg := registrytest.New(t)
	dgst := reg.ServeRawManifest("broken", "v1", "application/vnd.oci.image.index.v1+json", []byte("{nope"))
	for _, p := range []string{"/v2/broken/manifests/v1", "/v2/broken/manifests/" + dgst} {
		resp, err := http.Get(reg.URL() + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "{nope" || resp.Header.Get("Docker-Content-Digest") != dgst {
			t.Errorf("%s: body %q digest %q", p, b, resp.Header.Get("Docker-Content-Digest"))
		}
	}
}

func TestStartWithoutTestingT(t *testing.T) {
	reg, err := registrytest.Start()
	if err != nil {
		t.Fatal(err)
	}
	url := reg.URL()
	reg.Close()
	reg.Close() // idempotent
	c := &http.Client{Timeout: 2 * time.Second}
	if _, err := c.Get(url + "/v2/"); err == nil {
		t.Error("registry still answers after Close")
	}
}
