package sbom

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// countBlobGets counts GET requests for blobs by digest.
type blobCounter struct {
	mu   sync.Mutex
	gets map[string]int
}

func (c *blobCounter) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			if i := strings.LastIndex(r.URL.Path, "/blobs/"); i >= 0 {
				c.mu.Lock()
				c.gets[r.URL.Path[i+len("/blobs/"):]]++
				c.mu.Unlock()
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (c *blobCounter) count(digest string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gets[digest]
}

// trustOnly trusts exactly the listed artifact digests and records every call.
type trustRecorder struct {
	mu      sync.Mutex
	trusted map[string]bool
	calls   []string
}

func (tr *trustRecorder) trust(_ context.Context, artifact name.Digest) error {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.calls = append(tr.calls, artifact.String())
	if tr.trusted[artifact.DigestStr()] {
		return nil
	}
	return errors.New("no matching signatures: no signature found for " + artifact.DigestStr())
}

func docDigest(doc []byte) string { return DocumentDigest(doc) }

func TestReferrerTrustedSPDX(t *testing.T) {
	bc := &blobCounter{gets: map[string]int{}}
	host := testRegistry(t, bc.wrap)
	img := pushImage(t, host, "app", tarLayer(t, map[string]string{"etc/hostname": "x\n"}))
	doc := spdxDoc(7)
	art := attachSBOM(t, img, MediaTypeSPDXJSON, MediaTypeSPDXJSON, doc,
		map[string]string{"org.opencontainers.image.created": "2024-05-01T10:00:00Z"})
	// an unrelated referrer (a signature-like artifact) must be ignored, not rejected
	attachSBOM(t, img, "application/vnd.dev.cosign.artifact.sig.v1+json", "application/vnd.dev.cosign.simplesigning.v1+json", []byte(`{"critical":{}}`), nil)

	tr := &trustRecorder{trusted: map[string]bool{art.DigestStr(): true}}
	s, err := (&ReferrerSource{Trust: tr.trust}).Fetch(context.Background(), img)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if s.Source != SourceReferrer || s.Format != FormatSPDXJSON || s.Packages != 7 {
		t.Errorf("got %s/%s/%d packages, want Referrer/spdx-json/7", s.Source, s.Format, s.Packages)
	}
	if !bytes.Equal(s.Document, doc) || s.Digest != docDigest(doc) || s.ImageDigest != img.DigestStr() {
		t.Errorf("document/digest/image digest do not match what was attached")
	}
	if got := s.CreatedAt.Format("2006-01-02T15:04:05Z07:00"); got != "2024-05-01T10:00:00Z" {
		t.Errorf("CreatedAt = %s, want the artifact's created annotation", got)
	}
	if want := "from referrer " + art.DigestStr() + " (trusted)"; s.Note != want {
		t.Errorf("Note = %q, want %q", s.Note, want)
	}
	if len(tr.calls) != 1 || tr.calls[0] != art.String() {
		t.Errorf("Trust calls = %q, want exactly [%s]", tr.calls, art)
	}
}

func TestReferrerUntrustedRejected(t *testing.T) {
	bc := &blobCounter{gets: map[string]int{}}
	host := testRegistry(t, bc.wrap)
	img := pushImage(t, host, "app", tarLayer(t, map[string]string{"etc/hostname": "x\n"}))
	doc := spdxDoc(3)
	art := attachSBOM(t, img, MediaTypeSPDXJSON, MediaTypeSPDXJSON, doc, nil)

	tr := &trustRecorder{trusted: map[string]bool{}}
	s, err := (&ReferrerSource{Trust: tr.trust}).Fetch(context.Background(), img)
	if err == nil {
		t.Fatalf("Fetch accepted an untrusted referrer (%d packages)", s.Packages)
	}
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("error %q does not wrap ErrNotFound", err)
	}
	want := "referrer SBOM " + art.DigestStr() + " rejected: untrusted: no matching signatures: no signature found for " + art.DigestStr()
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
	var rej *RejectedError
	if !errors.As(err, &rej) || len(rej.Rejections) != 1 || rej.Rejections[0].Digest != art.DigestStr() {
		t.Errorf("error is not a RejectedError naming %s: %#v", art.DigestStr(), rej)
	}
	if n := bc.count(docDigest(doc)); n != 0 {
		t.Errorf("the untrusted SBOM blob was downloaded %d times; trust must be checked first", n)
	}
}

func TestReferrerAllowUnsigned(t *testing.T) {
	host := testRegistry(t, nil)
	img := pushImage(t, host, "app", tarLayer(t, map[string]string{"etc/hostname": "x\n"}))
	art := attachSBOM(t, img, MediaTypeSPDXJSON, MediaTypeSPDXJSON, spdxDoc(2), nil)

	src := &ReferrerSource{
		AllowUnsigned: true,
		Trust: func(context.Context, name.Digest) error {
			t.Error("Trust called although AllowUnsigned is set")
			return errors.New("unexpected")
		},
	}
	s, err := src.Fetch(context.Background(), img)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if s.Packages != 2 || s.Format != FormatSPDXJSON {
		t.Errorf("got %s with %d packages, want spdx-json with 2", s.Format, s.Packages)
	}
	if want := "from referrer " + art.DigestStr() + " (signature not checked: unsigned referrers allowed)"; s.Note != want {
		t.Errorf("Note = %q, want %q", s.Note, want)
	}
}

func TestReferrerNoTrustPolicyFailsClosed(t *testing.T) {
	host := testRegistry(t, nil)
	img := pushImage(t, host, "app", tarLayer(t, map[string]string{"etc/hostname": "x\n"}))
	art := attachSBOM(t, img, MediaTypeSPDXJSON, MediaTypeSPDXJSON, spdxDoc(2), nil)

	_, err := (&ReferrerSource{}).Fetch(context.Background(), img)
	want := "referrer SBOM " + art.DigestStr() + " rejected: no trust policy configured for referrer SBOMs"
	if err == nil || !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want ErrNotFound containing %q", err, want)
	}
}

func TestReferrerFormats(t *testing.T) {
	host := testRegistry(t, nil)
	allow := &ReferrerSource{AllowUnsigned: true}
	tests := []struct {
		name       string
		artType    string
		layerType  string
		doc        []byte
		wantFormat string
		wantPkgs   int
	}{
		{name: "cyclonedx", artType: MediaTypeCycloneDXJSON, layerType: MediaTypeCycloneDXJSON, doc: cyclonedxDoc(3, 1), wantFormat: FormatCycloneDXJSON, wantPkgs: 4},
		{name: "cyclonedx with version parameter", artType: MediaTypeCycloneDXJSON + ";version=1.5", layerType: "application/octet-stream", doc: cyclonedxDoc(2, 0), wantFormat: FormatCycloneDXJSON, wantPkgs: 2},
		{name: "syft", artType: MediaTypeSyftJSON, layerType: MediaTypeSyftJSON, doc: syftDoc(4), wantFormat: FormatSyftJSON, wantPkgs: 4},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := pushImage(t, host, "fmt", tarLayer(t, map[string]string{"id": string(rune('a' + i))}))
			attachSBOM(t, img, tc.artType, tc.layerType, tc.doc, nil)
			s, err := allow.Fetch(context.Background(), img)
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if s.Format != tc.wantFormat || s.Packages != tc.wantPkgs || !bytes.Equal(s.Document, tc.doc) {
				t.Errorf("got %s with %d packages, want %s with %d", s.Format, s.Packages, tc.wantFormat, tc.wantPkgs)
			}
		})
	}
}

func TestReferrerInvalidContentSkipped(t *testing.T) {
	host := testRegistry(t, nil)
	allow := &ReferrerSource{AllowUnsigned: true}

	t.Run("only a corrupt one", func(t *testing.T) {
		img := pushImage(t, host, "bad", tarLayer(t, map[string]string{"id": "1"}))
		art := attachSBOM(t, img, MediaTypeSPDXJSON, MediaTypeSPDXJSON, []byte(`{"hello":"world"}`), nil)
		_, err := allow.Fetch(context.Background(), img)
		want := "referrer SBOM " + art.DigestStr() + " rejected: invalid SBOM: not an SBOM: JSON has no spdxVersion"
		if err == nil || !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), want) {
			t.Fatalf("err = %v, want ErrNotFound containing %q", err, want)
		}
	})
	t.Run("content does not match declared type", func(t *testing.T) {
		img := pushImage(t, host, "bad", tarLayer(t, map[string]string{"id": "2"}))
		art := attachSBOM(t, img, MediaTypeSPDXJSON, MediaTypeSPDXJSON, cyclonedxDoc(1, 0), nil)
		_, err := allow.Fetch(context.Background(), img)
		want := "referrer SBOM " + art.DigestStr() + " rejected: declared spdx-json but the content is cyclonedx-json"
		if err == nil || !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), want) {
			t.Fatalf("err = %v, want ErrNotFound containing %q", err, want)
		}
	})
	t.Run("corrupt skipped, good one used", func(t *testing.T) {
		img := pushImage(t, host, "bad", tarLayer(t, map[string]string{"id": "3"}))
		bad := attachSBOM(t, img, MediaTypeSPDXJSON, MediaTypeSPDXJSON, []byte("SPDXVersion: SPDX-2.3\n"), nil)
		good := attachSBOM(t, img, MediaTypeCycloneDXJSON, MediaTypeCycloneDXJSON, cyclonedxDoc(5, 0), nil)
		s, err := allow.Fetch(context.Background(), img)
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		if s.Format != FormatCycloneDXJSON || s.Packages != 5 {
			t.Errorf("got %s with %d packages, want cyclonedx-json with 5", s.Format, s.Packages)
		}
		wantNote := "from referrer " + good.DigestStr() + " (signature not checked: unsigned referrers allowed); referrer SBOM " +
			bad.DigestStr() + " rejected: invalid SBOM: not a supported SBOM: SPDX tag-value is not supported, only SPDX JSON"
		if s.Note != wantNote {
			t.Errorf("Note = %q\nwant   %q", s.Note, wantNote)
		}
	})
	t.Run("oversized layer not downloaded", func(t *testing.T) {
		old := MaxDocumentBytes
		t.Cleanup(func() { MaxDocumentBytes = old })
		doc := spdxDoc(50)
		img := pushImage(t, host, "bad", tarLayer(t, map[string]string{"id": "4"}))
		art := attachSBOM(t, img, MediaTypeSPDXJSON, MediaTypeSPDXJSON, doc, nil)
		MaxDocumentBytes = 1000
		_, err := allow.Fetch(context.Background(), img)
		want := "referrer SBOM " + art.DigestStr() + " rejected: fetching layer " + docDigest(doc) + ": blob is " + strconv.Itoa(len(doc)) + " bytes, over the 1000 byte limit"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("err = %v, want %q", err, want)
		}
	})
}

func TestReferrerTruncatedBlob(t *testing.T) {
	doc := spdxDoc(20)
	host := testRegistry(t, truncateBlob(docDigest(doc)))
	img := pushImage(t, host, "app", tarLayer(t, map[string]string{"id": "t"}))
	art := attachSBOM(t, img, MediaTypeSPDXJSON, MediaTypeSPDXJSON, doc, nil)
	_, err := (&ReferrerSource{AllowUnsigned: true}).Fetch(context.Background(), img)
	want := "referrer SBOM " + art.DigestStr() + " rejected: fetching layer " + docDigest(doc) + ": "
	if err == nil || !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want ErrNotFound containing %q", err, want)
	}
}

func TestReferrerNone(t *testing.T) {
	host := testRegistry(t, nil)
	img := pushImage(t, host, "app", tarLayer(t, map[string]string{"id": "n"}))
	attachSBOM(t, img, "application/vnd.dev.cosign.artifact.sig.v1+json", "application/octet-stream", []byte("sig"), nil)
	_, err := (&ReferrerSource{AllowUnsigned: true}).Fetch(context.Background(), img)
	want := "no SBOM found: image " + img.DigestStr() + " has no SBOM referrers"
	if err == nil || !errors.Is(err, ErrNotFound) || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
	var rej *RejectedError
	if errors.As(err, &rej) {
		t.Errorf("no referrer was rejected, yet got %v", rej)
	}
}

// TestReferrerTagSchemaFallback uses a registry without the referrers API: the SBOM is found
// through the "sha256-<hex>" tag index that remote.Write maintains.
func TestReferrerTagSchemaFallback(t *testing.T) {
	var referrersCalls atomic.Int32
	host := testRegistry(t, func(next http.Handler) http.Handler {
		plain := registry.New(registry.Logger(discardLogger())) // referrers API off
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/referrers/") {
				referrersCalls.Add(1)
			}
			plain.ServeHTTP(w, r)
		})
	})
	img := pushImage(t, host, "app", tarLayer(t, map[string]string{"id": "f"}))
	doc := spdxDoc(4)
	attachSBOM(t, img, MediaTypeSPDXJSON, MediaTypeSPDXJSON, doc, nil)

	s, err := (&ReferrerSource{AllowUnsigned: true}).Fetch(context.Background(), img)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if s.Packages != 4 || !bytes.Equal(s.Document, doc) {
		t.Errorf("got %d packages, want 4 and the attached document", s.Packages)
	}
	if referrersCalls.Load() == 0 {
		t.Errorf("the referrers API was never tried before the fallback")
	}
}

// TestReferrerSubjectMismatch plants, in the writable tag-schema index of image A, an SBOM
// artifact whose subject is image B. It must not be taken as A's SBOM.
func TestReferrerSubjectMismatch(t *testing.T) {
	host := testRegistry(t, func(http.Handler) http.Handler {
		return registry.New(registry.Logger(discardLogger()))
	})
	a := pushImage(t, host, "app", tarLayer(t, map[string]string{"id": "A"}))
	b := pushImage(t, host, "app", tarLayer(t, map[string]string{"id": "B"}))
	art := attachSBOM(t, b, MediaTypeSPDXJSON, MediaTypeSPDXJSON, spdxDoc(1), nil)

	artDesc, err := remote.Get(art)
	if err != nil {
		t.Fatal(err)
	}
	artImg, err := artDesc.Image()
	if err != nil {
		t.Fatal(err)
	}
	idx := mutate.IndexMediaType(mutate.AppendManifests(empty.Index, mutate.IndexAddendum{
		Add:        artImg,
		Descriptor: v1.Descriptor{MediaType: types.OCIManifestSchema1, ArtifactType: MediaTypeSPDXJSON},
	}), types.OCIImageIndex)
	fallback := a.Context().Tag(strings.Replace(a.DigestStr(), ":", "-", 1))
	if err := remote.WriteIndex(fallback, idx); err != nil {
		t.Fatal(err)
	}

	_, err = (&ReferrerSource{AllowUnsigned: true}).Fetch(context.Background(), a)
	want := "referrer SBOM " + art.DigestStr() + " rejected: subject is " + b.DigestStr() + ", not the image " + a.DigestStr()
	if err == nil || !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want ErrNotFound containing %q", err, want)
	}
}

func TestReferrerRegistryErrorIsNotNotFound(t *testing.T) {
	host := testRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/referrers/") {
				http.Error(w, `{"errors":[{"code":"DENIED","message":"access to referrers denied"}]}`, http.StatusForbidden)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	img := pushImage(t, host, "app", tarLayer(t, map[string]string{"id": "e"}))
	_, err := (&ReferrerSource{AllowUnsigned: true}).Fetch(context.Background(), img)
	if err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want a failure that is not ErrNotFound", err)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "listing referrers of "+img.DigestStr()+": ") || !strings.HasSuffix(msg, "DENIED: access to referrers denied") {
		t.Errorf("error %q does not name the image and the registry's reason", msg)
	}
}

func TestReferrerCancelledTrust(t *testing.T) {
	host := testRegistry(t, nil)
	img := pushImage(t, host, "app", tarLayer(t, map[string]string{"id": "c"}))
	attachSBOM(t, img, MediaTypeSPDXJSON, MediaTypeSPDXJSON, spdxDoc(1), nil)
	ctx, cancel := context.WithCancel(context.Background())
	src := &ReferrerSource{Trust: func(ctx context.Context, _ name.Digest) error {
		cancel()
		return ctx.Err()
	}}
	_, err := src.Fetch(ctx, img)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want context.Canceled and not ErrNotFound", err)
	}
}

func TestReferrerRandomImageWithoutSubjectArtifacts(t *testing.T) {
	// a plain image in the same repository (no subject) never shows up as a referrer
	host := testRegistry(t, nil)
	img := pushImage(t, host, "app", tarLayer(t, map[string]string{"id": "r"}))
	other, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	pushArtifact(t, host, "app", other)
	_, err = (&ReferrerSource{AllowUnsigned: true}).Fetch(context.Background(), img)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}

// TestReferrerErrorsCarryNoSecrets redirects the SBOM blob to a pre-signed style URL with
// credentials in userinfo and query, which then fails: the rejection must name neither.
func TestReferrerErrorsCarryNoSecrets(t *testing.T) {
	doc := spdxDoc(2)
	var host string
	host = testRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case strings.HasSuffix(r.URL.Path, "/blobs/"+docDigest(doc)) && r.Method == http.MethodGet:
				http.Redirect(w, r, "http://robot:hunter2@"+host+"/cdn/blob?X-Amz-Signature=topsecret&X-Amz-Credential=AKIAEXAMPLE", http.StatusTemporaryRedirect)
			case strings.HasPrefix(r.URL.Path, "/cdn/"):
				http.Error(w, "expired", http.StatusForbidden)
			default:
				next.ServeHTTP(w, r)
			}
		})
	})
	img := pushImage(t, host, "app", tarLayer(t, map[string]string{"id": "s"}))
	art := attachSBOM(t, img, MediaTypeSPDXJSON, MediaTypeSPDXJSON, doc, nil)
	_, err := (&ReferrerSource{AllowUnsigned: true}).Fetch(context.Background(), img)
	if err == nil {
		t.Fatal("Fetch succeeded on a blob that answers 403")
	}
	msg := err.Error()
	t.Logf("error: %s", msg)
	for _, secret := range []string{"hunter2", "robot", "topsecret", "AKIAEXAMPLE", "X-Amz"} {
		if strings.Contains(msg, secret) {
			t.Errorf("error leaks %q: %s", secret, msg)
		}
	}
	if want := "referrer SBOM " + art.DigestStr() + " rejected: fetching layer " + docDigest(doc) + ": "; !strings.Contains(msg, want) {
		t.Errorf("error %q does not contain %q", msg, want)
	}
}

// An OCI 1.1 artifact (empty config, artifactType in the manifest, as oras attach writes it)
// listed by a registry that reports the config media type must still be found.
func TestReferrerOCIArtifactWithEmptyConfig(t *testing.T) {
	host := testRegistry(t, nil)
	img := pushImage(t, host, "app", tarLayer(t, map[string]string{"etc/hostname": "x\n"}))
	doc := spdxDoc(3)
	art := attachArtifact(t, img, MediaTypeSPDXJSON, MediaTypeSPDXJSON, doc)
	tr := &trustRecorder{trusted: map[string]bool{art.DigestStr(): true}}
	s, err := (&ReferrerSource{Trust: tr.trust}).Fetch(context.Background(), img)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if s.Format != FormatSPDXJSON || s.Packages != 3 || !bytes.Equal(s.Document, doc) {
		t.Errorf("got %s with %d packages", s.Format, s.Packages)
	}
}

// attachArtifact pushes an OCI 1.1 artifact manifest: empty config, artifactType, one layer.
func attachArtifact(t *testing.T, image name.Digest, artifactType, layerType string, doc []byte) name.Digest {
	t.Helper()
	subject, err := remote.Head(image)
	if err != nil {
		t.Fatal(err)
	}
	emptyCfg := static.NewLayer([]byte("{}"), "application/vnd.oci.empty.v1+json")
	layer := static.NewLayer(doc, types.MediaType(layerType))
	var descs []v1.Descriptor
	for _, l := range []v1.Layer{emptyCfg, layer} {
		if err := remote.WriteLayer(image.Context(), l); err != nil {
			t.Fatal(err)
		}
		d, _ := l.Digest()
		n, _ := l.Size()
		mt, _ := l.MediaType()
		descs = append(descs, v1.Descriptor{MediaType: mt, Digest: d, Size: n})
	}
	raw, err := json.Marshal(v1.Manifest{
		SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: artifactType,
		Config: descs[0], Layers: descs[1:],
		Subject: &v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size},
	})
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	ref := image.Context().Digest(h.String())
	if err := remote.Put(ref, rawManifest(raw)); err != nil {
		t.Fatal(err)
	}
	return ref
}

type rawManifest []byte

func (m rawManifest) RawManifest() ([]byte, error)        { return m, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
