package scanner_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"

	"github.com/imagetrust/imagetrust/scanner"
	"github.com/imagetrust/imagetrust/scanner/registry"
	"github.com/imagetrust/imagetrust/scanner/registry/registrytest"
	"github.com/imagetrust/imagetrust/scanner/verify/signtest"
)

// TestCosignArtifactsAreNotImages: a repository signed and attested with cosign's library,
// with an SBOM attached the legacy cosign way (".sbom" tag) and one attached as an OCI
// referrer on a registry without the referrers API (so the "sha256-<hex>" tag schema holds the
// referrers index). Listing its tags yields the images only, and resolving any of the
// artifacts' tags fails with ErrNotAnImage, which Classify reports as ErrorNotAnImage.
func TestCosignArtifactsAreNotImages(t *testing.T) {
	ctx := context.Background()
	reg := registrytest.New(t, registrytest.WithoutReferrersAPI())
	key, err := signtest.NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	opts := []ociremote.Option{ociremote.WithRemoteOptions(reg.RemoteOptions(ctx)...)}
	repo := reg.Repo("team/signed")
	var images []name.Digest
	for _, tag := range []string{"v1.0.0", "v1.1.0"} {
		d, err := reg.Push(ctx, repo+":"+tag, registrytest.DebianImage(append(slices.Clone(debianPkgs), registrytest.Pkg{Name: tag, Version: "1"})))
		if err != nil {
			t.Fatal(err)
		}
		images = append(images, d)
		if err := signtest.SignImage(ctx, d, key, opts...); err != nil {
			t.Fatal(err)
		}
		if err := signtest.Attest(ctx, d, d, "https://slsa.dev/provenance/v1", []byte(`{"buildDefinition":{}}`), key, opts...); err != nil {
			t.Fatal(err)
		}
	}
	pushLegacySBOM(t, reg, images[0])
	attachSBOMReferrer(t, reg, images[1])

	rc := registry.New(registry.Options{RequestsPerSecond: -1})
	sc, err := scanner.New(scanner.Config{Registry: rc})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := rc.ListTags(ctx, repo)
	if err != nil {
		t.Fatal(err)
	}
	var artifactTags []string
	for _, tg := range raw {
		if strings.HasPrefix(tg, "sha256-") {
			artifactTags = append(artifactTags, tg)
		}
	}
	// per image .sig and .att; .sbom for the first; the referrers index of the second
	if len(artifactTags) != 6 {
		t.Fatalf("fixture: the registry lists %v; want 6 artifact tags next to the images", raw)
	}
	tags, err := sc.ListTags(ctx, repo, scanner.TagFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"v1.1.0", "v1.0.0"}; !slices.Equal(tags, want) {
		t.Errorf("ListTags = %v, want only the images %v", tags, want)
	}
	for _, tg := range artifactTags {
		_, err := sc.Resolve(ctx, repo+":"+tg, nil)
		if !errors.Is(err, scanner.ErrNotAnImage) || scanner.Classify(err) != scanner.ErrorNotAnImage {
			t.Errorf("Resolve %s = %v (class %d), want ErrNotAnImage", tg, err, scanner.Classify(err))
			continue
		}
		t.Logf("%s: %v", tg, err)
	}
	for _, d := range images {
		if imgs, err := sc.Resolve(ctx, d.String(), nil); err != nil || len(imgs) != 1 {
			t.Errorf("Resolve %s = %+v, %v; the signed image itself must resolve", d, imgs, err)
		}
	}
}

// pushLegacySBOM attaches an SPDX document the way `cosign attach sbom` did: a manifest with
// an image config and the document as its layer, tagged sha256-<hex>.sbom.
func pushLegacySBOM(t *testing.T, reg *registrytest.Registry, subject name.Digest) {
	t.Helper()
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: static.NewLayer([]byte(`{"spdxVersion":"SPDX-2.3"}`), "text/spdx+json")})
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
	tag := strings.Replace(subject.DigestStr(), ":", "-", 1) + ".sbom"
	if _, err := reg.Push(context.Background(), subject.Context().Tag(tag).String(), img); err != nil {
		t.Fatal(err)
	}
}

// attachSBOMReferrer pushes an SPDX artifact whose subject is the image, as `oras attach`
// does; go-containerregistry's writer also maintains the referrers tag of the subject.
func attachSBOMReferrer(t *testing.T, reg *registrytest.Registry, subject name.Digest) {
	t.Helper()
	desc, err := registry.New(registry.Options{}).Image(context.Background(), subject)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := desc.RawManifest()
	mt, _ := desc.MediaType()
	h, _ := v1.NewHash(subject.DigestStr())
	art, err := mutate.Append(empty.Image, mutate.Addendum{Layer: static.NewLayer([]byte(`{"spdxVersion":"SPDX-2.3"}`), "application/spdx+json")})
	if err != nil {
		t.Fatal(err)
	}
	art = mutate.ConfigMediaType(mutate.MediaType(art, types.OCIManifestSchema1), "application/spdx+json")
	art = mutate.Subject(art, v1.Descriptor{MediaType: mt, Digest: h, Size: int64(len(raw))}).(v1.Image)
	d, err := art.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Push(context.Background(), subject.Context().Digest(d.String()).String(), art); err != nil {
		t.Fatal(err)
	}
}
