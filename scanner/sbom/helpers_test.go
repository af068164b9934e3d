package sbom

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// testRegistry starts ggcr's in-process registry with the referrers API on. wrap, if set, sits in
// front of the registry handler (to truncate or stall responses).
func testRegistry(t testing.TB, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = registry.New(registry.WithReferrersSupport(true), registry.Logger(discardLogger()))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// tarLayer builds a gzip layer holding files (path → content), with parent directories.
func tarLayer(t testing.TB, files map[string]string) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	dirs := map[string]bool{}
	mtime := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, p := range paths {
		parts := strings.Split(p, "/")
		for i := 1; i < len(parts); i++ {
			d := strings.Join(parts[:i], "/") + "/"
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: mtime}); err != nil {
				t.Fatal(err)
			}
		}
		content := files[p]
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: 0o644, Size: int64(len(content)), ModTime: mtime}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, content); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// pushImage pushes a linux/amd64 image made of layers to host/repo and returns its digest.
func pushImage(t testing.TB, host, repo string, layers ...v1.Layer) name.Digest {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	return pushArtifact(t, host, repo, img)
}

func pushArtifact(t testing.TB, host, repo string, img v1.Image) name.Digest {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewDigest(fmt.Sprintf("%s/%s@%s", host, repo, d))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

// attachSBOM pushes an OCI artifact manifest whose subject is image: config media type and
// artifactType set to artifactType (ggcr's registry reports the config media type), one layer.
func attachSBOM(t testing.TB, image name.Digest, artifactType, layerType string, doc []byte, annotations map[string]string) name.Digest {
	t.Helper()
	desc, err := remote.Head(image)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: static.NewLayer(doc, types.MediaType(layerType))})
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.MediaType(artifactType))
	if annotations != nil {
		img = mutate.Annotations(img, annotations).(v1.Image)
	}
	img = mutate.Subject(img, v1.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}).(v1.Image)
	return pushArtifact(t, image.RegistryStr(), image.RepositoryStr(), img)
}

// spdxDoc renders a minimal valid SPDX 2.3 JSON document with n packages.
func spdxDoc(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"spdxVersion":"SPDX-2.3","dataLicense":"CC0-1.0","SPDXID":"SPDXRef-DOCUMENT","name":"test",` +
		`"documentNamespace":"https://example.com/spdx/test","creationInfo":{"created":"2024-01-01T00:00:00Z","creators":["Tool: test"]},"packages":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"name":"pkg-%d","SPDXID":"SPDXRef-Package-%d","versionInfo":"1.%d.0","downloadLocation":"NOASSERTION",`+
			`"externalRefs":[{"referenceCategory":"PACKAGE-MANAGER","referenceType":"purl","referenceLocator":"pkg:npm/pkg-%d@1.%d.0"}]}`, i, i, i, i, i)
	}
	b.WriteString(`],"relationships":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"spdxElementId":"SPDXRef-DOCUMENT","relationshipType":"DESCRIBES","relatedSpdxElement":"SPDXRef-Package-%d"}`, i)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// cyclonedxDoc renders a CycloneDX 1.5 JSON document with top components, the first of which
// carries nested sub-components.
func cyclonedxDoc(top, nested int) []byte {
	type comp struct {
		Type       string `json:"type"`
		Name       string `json:"name"`
		Version    string `json:"version"`
		Purl       string `json:"purl"`
		Components []comp `json:"components,omitempty"`
	}
	var comps []comp
	for i := 0; i < top; i++ {
		comps = append(comps, comp{Type: "library", Name: fmt.Sprintf("lib%d", i), Version: "2.0.0", Purl: fmt.Sprintf("pkg:npm/lib%d@2.0.0", i)})
	}
	for i := 0; i < nested && top > 0; i++ {
		comps[0].Components = append(comps[0].Components, comp{Type: "library", Name: fmt.Sprintf("sub%d", i), Version: "0.1.0"})
	}
	doc := map[string]any{
		"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
		"serialNumber": "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79",
		"metadata":     map[string]any{"timestamp": "2024-01-01T00:00:00Z"},
		"components":   comps,
	}
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	return b
}

// syftDoc renders a minimal Syft JSON document with n artifacts.
func syftDoc(n int) []byte {
	var arts []map[string]any
	for i := 0; i < n; i++ {
		arts = append(arts, map[string]any{"id": fmt.Sprint(i), "name": fmt.Sprintf("p%d", i), "version": "1.0", "type": "deb"})
	}
	b, err := json.Marshal(map[string]any{
		"artifacts": arts, "artifactRelationships": []any{},
		"source":     map[string]any{"id": "x", "type": "image"},
		"distro":     map[string]any{},
		"descriptor": map[string]any{"name": "syft", "version": "1.57.0"},
		"schema":     map[string]any{"version": "16.0.0", "url": "https://raw.githubusercontent.com/anchore/syft/main/schema/json/schema-16.0.0.json"},
	})
	if err != nil {
		panic(err)
	}
	return b
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }
