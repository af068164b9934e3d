// Package demo builds the demo world of `make demo`: a local OCI registry holding images that
// cover every case imagetrust distinguishes, the keys and CA that signed them, and a small
// vulnerability DB written with Grype's own writer. Everything is made in code, offline.
//
// THE VULNERABILITY DATA IS DEMO DATA: the ids look like real CVE ids but the records are made
// up for the demo and say nothing about the real packages.
package demo

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/anchore/syft/syft/format"
	"github.com/anchore/syft/syft/format/spdxjson"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"

	"github.com/imagetrust/imagetrust/scanner/registry/registrytest"
	"github.com/imagetrust/imagetrust/scanner/sbom"
	"github.com/imagetrust/imagetrust/scanner/verify/signtest"
	"github.com/imagetrust/imagetrust/scanner/vulndb/dbtest"
)

// Keyless identity of the demo CI.
const (
	KeylessSubject = "ci@demo.imagetrust.dev"
	KeylessIssuer  = "https://issuer.demo.imagetrust.dev"
	BuilderID      = "https://ci.demo.imagetrust.dev/builder@v1"
)

// Vulns is the demo vulnerability data (made up; see the package comment).
var Vulns = []dbtest.Vuln{
	{ID: "CVE-2026-1000", Severity: "Critical", Ecosystem: dbtest.EcosystemDeb, Package: "openssl",
		Constraint: "< 3.0.15-1~deb12u1", FixedVersion: "3.0.15-1~deb12u1", Description: "DEMO DATA"},
	{ID: "CVE-2026-1001", Severity: "Low", Ecosystem: dbtest.EcosystemDeb, Package: "tar", Constraint: "", Description: "DEMO DATA"},
	{ID: "CVE-2026-1002", Severity: "High", Ecosystem: dbtest.EcosystemDeb, Package: "curl",
		Constraint: "< 7.88.1-10+deb12u8", FixedVersion: "7.88.1-10+deb12u8", Description: "DEMO DATA"},
	{ID: "CVE-2026-2000", Severity: "High", Ecosystem: dbtest.EcosystemAPK, Package: "busybox",
		Constraint: "< 1.36.1-r16", FixedVersion: "1.36.1-r16", Description: "DEMO DATA"},
	{ID: "GHSA-demo-lodash-0001", Aliases: []string{"CVE-2026-3000"}, Severity: "Critical", Ecosystem: dbtest.EcosystemNPM,
		Package: "lodash", Constraint: "< 4.17.21", FixedVersion: "4.17.21", Description: "DEMO DATA"},
}

// Image is one demo image and what the demo expects imagetrust to say about it.
type Image struct {
	// Name is a short label ("signed-key", ...).
	Name string
	// Ref is the pushed digest reference (for an index: the index digest).
	Ref name.Digest
	// Tag is the tag the image was pushed with.
	Tag string
	// Platforms is the number of platform images (1 unless a multi-arch index).
	Platforms int
	// Signature and Verdict are the expected report values.
	Signature, SBOM, Verdict string
}

// World is the built demo.
type World struct {
	Registry  *registrytest.Registry
	Key       *signtest.KeyPair
	CA        *signtest.CA
	DBArchive string
	Dir       string
	Images    []Image
}

// Repo is the registry repository of the demo images.
func (w *World) Repo(name string) string { return w.Registry.Repo("demo/" + name) }

// Close stops the registry.
func (w *World) Close() { w.Registry.Close() }

var (
	debian = []registrytest.Pkg{{Name: "openssl", Version: "3.0.15-1~deb12u1"}, {Name: "tar", Version: "1.34+dfsg-1.2+deb12u1"}, {Name: "bash", Version: "5.2.15-2+b7"}}
	// vulnerable has an openssl and a curl the demo DB knows to be vulnerable.
	vulnerable = []registrytest.Pkg{{Name: "openssl", Version: "3.0.11-1~deb12u2"}, {Name: "curl", Version: "7.88.1-10+deb12u5"}, {Name: "tar", Version: "1.34+dfsg-1.2+deb12u1"}}
	alpine     = []registrytest.Pkg{{Name: "busybox", Version: "1.36.1-r16"}, {Name: "musl", Version: "1.2.4_git20230717-r5"}}
)

// Build starts a registry and pushes the demo images; progress goes to logf.
func Build(ctx context.Context, dir string, logf func(string, ...any)) (*World, error) {
	reg, err := registrytest.Start()
	if err != nil {
		return nil, err
	}
	w := &World{Registry: reg, Dir: dir}
	ok := false
	defer func() {
		if !ok {
			reg.Close()
		}
	}()
	if w.Key, err = signtest.NewKeyPair(); err != nil {
		return nil, err
	}
	if w.CA, err = signtest.NewCA("imagetrust demo CA"); err != nil {
		return nil, err
	}
	leaf, err := w.CA.IssueLeaf(KeylessSubject, KeylessIssuer, time.Now().Add(-time.Minute), time.Now().Add(24*time.Hour))
	if err != nil {
		return nil, err
	}
	opts := []ociremote.Option{ociremote.WithRemoteOptions(reg.RemoteOptions(ctx)...)}
	push := func(tag string, t remote.Taggable) (name.Digest, error) {
		return reg.Push(ctx, w.Repo(tag), t)
	}
	// Images with the same content have the same digest whatever their repository; a marker
	// layer keeps each demo image distinct, as real images are.
	unique := func(img v1.Image, label string) v1.Image {
		out, err := mutate.AppendLayers(img, registrytest.LayerFromFiles(map[string]string{"etc/imagetrust-demo": label + "\n"}))
		if err != nil {
			panic(err) // in-memory layers cannot fail
		}
		return out
	}

	logf("registry %s: pushing demo images", reg.Host())
	// 1. Signed with a key, SBOM attested (in-toto SPDX), clean.
	ref, err := push("signed-key:1.0", unique(registrytest.DebianImage(debian), "signed-key"))
	if err != nil {
		return nil, err
	}
	if err := signtest.SignImage(ctx, ref, w.Key, opts...); err != nil {
		return nil, err
	}
	spdx, err := SPDXFor(ctx, ref)
	if err != nil {
		return nil, err
	}
	if err := signtest.Attest(ctx, ref, ref, "https://spdx.dev/Document", spdx, w.Key, opts...); err != nil {
		return nil, err
	}
	w.Images = append(w.Images, Image{Name: "signed-key", Ref: ref, Tag: "1.0", Platforms: 1, Signature: "Verified", SBOM: "Attested", Verdict: "Trusted"})

	// 2. Signed keyless by the demo CA, SBOM as a signed referrer, SLSA provenance.
	ref, err = push("signed-keyless:2.0", unique(registrytest.AlpineImage(alpine), "signed-keyless"))
	if err != nil {
		return nil, err
	}
	if err := signtest.SignImageKeyless(ctx, ref, leaf, opts...); err != nil {
		return nil, err
	}
	if spdx, err = SPDXFor(ctx, ref); err != nil {
		return nil, err
	}
	art, err := AttachReferrer(ctx, ref, "application/spdx+json", spdx, reg.RemoteOptions(ctx)...)
	if err != nil {
		return nil, err
	}
	if err := signtest.SignImageKeyless(ctx, art, leaf, opts...); err != nil {
		return nil, err
	}
	prov := []byte(`{"buildDefinition":{"buildType":"https://demo.imagetrust.dev/build/v1","externalParameters":{}},"runDetails":{"builder":{"id":"` + BuilderID + `"}}}`)
	if err := signtest.Attest(ctx, ref, ref, "https://slsa.dev/provenance/v1", prov, leaf, opts...); err != nil {
		return nil, err
	}
	w.Images = append(w.Images, Image{Name: "signed-keyless", Ref: ref, Tag: "2.0", Platforms: 1, Signature: "Verified", SBOM: "Referrer", Verdict: "Trusted"})

	// 3. Unsigned.
	if ref, err = push("unsigned:1.0", unique(registrytest.DebianImage(debian), "unsigned")); err != nil {
		return nil, err
	}
	w.Images = append(w.Images, Image{Name: "unsigned", Ref: ref, Tag: "1.0", Platforms: 1, Signature: "Unsigned", SBOM: "Generated", Verdict: "Untrusted"})

	// 4. Signed, then the signature payload tampered with.
	if ref, err = push("tampered:1.0", unique(registrytest.AlpineImage(alpine), "tampered")); err != nil {
		return nil, err
	}
	if err := signtest.SignImage(ctx, ref, w.Key, opts...); err != nil {
		return nil, err
	}
	if err := signtest.TamperSignaturePayload(ctx, ref, opts...); err != nil {
		return nil, err
	}
	w.Images = append(w.Images, Image{Name: "tampered", Ref: ref, Tag: "1.0", Platforms: 1, Signature: "Invalid", SBOM: "Generated", Verdict: "Untrusted"})

	// 5. A multi-arch index signed recursively with the key (the index and each platform
	// image, as `cosign sign --recursive` does): pods run platform digests.
	idx := registrytest.Index(map[string]v1.Image{
		"linux/amd64": unique(registrytest.DebianImage(debian), "multiarch-amd64"),
		"linux/arm64": unique(registrytest.AlpineImage(alpine), "multiarch-arm64"),
	})
	if ref, err = push("multiarch:3.0", idx); err != nil {
		return nil, err
	}
	manifest, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	toSign := []name.Digest{ref}
	for _, m := range manifest.Manifests {
		toSign = append(toSign, ref.Context().Digest(m.Digest.String()))
	}
	for _, d := range toSign {
		if err := signtest.SignImage(ctx, d, w.Key, opts...); err != nil {
			return nil, err
		}
	}
	w.Images = append(w.Images, Image{Name: "multiarch", Ref: ref, Tag: "3.0", Platforms: 2, Signature: "Verified", SBOM: "Generated", Verdict: "Trusted"})

	// 6. Signed with the key but carrying known-vulnerable packages: fails the critical gate.
	if ref, err = push("vulnerable:0.9", unique(registrytest.DebianImage(vulnerable), "vulnerable")); err != nil {
		return nil, err
	}
	if err := signtest.SignImage(ctx, ref, w.Key, opts...); err != nil {
		return nil, err
	}
	w.Images = append(w.Images, Image{Name: "vulnerable", Ref: ref, Tag: "0.9", Platforms: 1, Signature: "Verified", SBOM: "Generated", Verdict: "Untrusted"})

	logf("building the demo vulnerability DB (DEMO DATA, %d made-up records) with Grype's writer", len(Vulns))
	if w.DBArchive, err = dbtest.Archive(filepath.Join(dir, "db-build"), time.Now().Add(-time.Hour), Vulns); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "cosign.pub"), w.Key.PublicPEM, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "demo-ca.pem"), w.CA.RootPEM, 0o644); err != nil {
		return nil, err
	}
	ok = true
	return w, nil
}

// SPDXFor generates the image's SBOM with Syft and encodes it as SPDX JSON, as a build
// pipeline would before attesting or attaching it.
func SPDXFor(ctx context.Context, ref name.Digest) ([]byte, error) {
	s, err := (&sbom.Generator{}).Fetch(ctx, ref)
	if err != nil {
		return nil, err
	}
	doc, _, _, err := format.Decode(bytes.NewReader(s.Document))
	if err != nil {
		return nil, err
	}
	enc, err := spdxjson.NewFormatEncoderWithConfig(spdxjson.DefaultEncoderConfig())
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := enc.Encode(&buf, *doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// AttachReferrer pushes doc as an OCI artifact (config and layer of mediaType) whose subject
// is ref, the way `oras attach` does, and returns the artifact's digest reference.
func AttachReferrer(ctx context.Context, ref name.Digest, mediaType string, doc []byte, opts ...remote.Option) (name.Digest, error) {
	desc, err := remote.Head(ref, opts...)
	if err != nil {
		return name.Digest{}, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.MediaType(mediaType))
	img, err = mutate.Append(img, mutate.Addendum{Layer: static.NewLayer(doc, types.MediaType(mediaType))})
	if err != nil {
		return name.Digest{}, err
	}
	img = mutate.Subject(img, v1.Descriptor{MediaType: desc.MediaType, Size: desc.Size, Digest: desc.Digest}).(v1.Image)
	dig, err := img.Digest()
	if err != nil {
		return name.Digest{}, err
	}
	art := ref.Context().Digest(dig.String())
	if err := remote.Write(art, img, opts...); err != nil {
		return name.Digest{}, fmt.Errorf("pushing referrer: %w", err)
	}
	return art, nil
}
