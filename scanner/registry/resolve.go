package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imagetrust/imagetrust/scanner/internal/redact"
)

// Resolved is one concrete, single-platform image manifest that a reference resolved to.
type Resolved struct {
	// Repository is the fully qualified repository, e.g. "index.docker.io/library/nginx".
	Repository string
	// Tag is the tag the reference named, empty for digest references.
	Tag string
	// Digest is the image manifest digest, "sha256:...".
	Digest string
	// Platform is "os/arch" or "os/arch/variant" from the index entry; empty when the reference
	// named a single image directly (its platform is not known without fetching its config).
	Platform string
	// IndexDigest is the digest of the image index the manifest was selected from, if any.
	IndexDigest string
	// Ref is Repository@Digest, ready for remote.Image, cosign or syft.
	Ref name.Digest
}

// attestationRefType marks BuildKit's attestation manifests inside an index; they carry the
// platform "unknown/unknown" and are not runnable images.
const attestationRefType = "vnd.docker.reference.type"

// Resolve turns a tag or digest reference into the concrete image manifest(s) it stands for,
// with as few requests as the Client's memory allows: a tag seen for the first time costs one
// GET (its manifest is needed anyway); a tag seen before costs one HEAD (free of pull limits
// on registries such as Docker Hub), plus one GET by digest only when it moved to content not
// in memory; a digest already fetched costs nothing. The manifests fetched are remembered for
// Image. An index fans out to platforms: with platforms empty every runnable platform in the
// index is returned, in index order; otherwise one Resolved per requested platform in request
// order (a platform without variant matches any variant), and a requested platform missing
// from the index fails with ErrPlatformNotFound. A reference that names a single image resolves
// to itself regardless of platforms. One that names no image at all — a cosign signature,
// attestation or SBOM, an OCI artifact, a referrers index — fails with ErrNotAnImage. Errors
// are sanitised.
func (c *Client) Resolve(ctx context.Context, image string, platforms []v1.Platform) ([]Resolved, error) {
	out, err := c.resolve(ctx, image, platforms)
	if err != nil {
		return nil, redact.Error(fmt.Errorf("resolve %s: %w", image, err))
	}
	return out, nil
}

// ParseImage returns the repository and tag Resolve reports for an image reference: the tag is
// "latest" when neither tag nor digest is written, and the written tag of "repo:tag@digest"
// (the digest is what runs; policies may match on the tag, as they do in the cluster).
func ParseImage(image string) (repository, tag string, err error) {
	ref, tag, err := parseImage(image, name.WeakValidation)
	if err != nil {
		return "", "", err
	}
	return ref.Context().Name(), tag, nil
}

func parseImage(image string, opts ...name.Option) (name.Reference, string, error) {
	ref, err := name.ParseReference(image, opts...)
	if err != nil {
		return nil, "", fmt.Errorf("invalid image reference: %w", err)
	}
	switch r := ref.(type) {
	case name.Tag:
		return ref, r.TagStr(), nil
	case name.Digest:
		base := image[:strings.LastIndex(image, "@")]
		if strings.Contains(base[strings.LastIndex(base, "/")+1:], ":") {
			if t, err := name.NewTag(base, opts...); err == nil {
				return ref, t.TagStr(), nil
			}
		}
	}
	return ref, "", nil
}

func (c *Client) resolve(ctx context.Context, image string, platforms []v1.Platform) ([]Resolved, error) {
	ref, tag, err := parseImage(image, c.NameOptions(image)...)
	if err != nil {
		return nil, err
	}
	repo := ref.Context()
	raw, desc, err := c.lookup(ctx, ref)
	if err != nil {
		return nil, err
	}
	mt, err := manifestKind(desc.MediaType, raw)
	if err != nil {
		return nil, err
	}
	if mt.IsImage() {
		mf, err := v1.ParseManifest(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("%w: image manifest %s: %v", ErrMalformedManifest, desc.Digest, err)
		}
		if why := notAnImage(mf); why != "" {
			return nil, fmt.Errorf("%w: %s is %s", ErrNotAnImage, desc.Digest, why)
		}
		return []Resolved{{
			Repository: repo.Name(),
			Tag:        tag,
			Digest:     desc.Digest.String(),
			Ref:        repo.Digest(desc.Digest.String()),
		}}, nil
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: image index %s: %v", ErrMalformedManifest, desc.Digest, err)
	}
	if !slices.ContainsFunc(idx.Manifests, runnable) {
		if why := notAnImageIndex(idx); why != "" {
			return nil, fmt.Errorf("%w: %s is %s", ErrNotAnImage, desc.Digest, why)
		}
	}
	return selectPlatforms(repo, tag, desc.Digest.String(), idx, platforms)
}

// lookup returns the manifest ref names: a digest from memory or with one GET; a tag seen for
// the first time with one GET; a tag seen before with a HEAD, then from memory or with one GET
// by the digest the HEAD reported, so a tag moving in between cannot mix two manifests.
func (c *Client) lookup(ctx context.Context, ref name.Reference) ([]byte, v1.Descriptor, error) {
	t, isTag := ref.(name.Tag)
	if !isTag || !c.shared.tags.has(t.String()) {
		raw, desc, err := c.manifest(ctx, ref)
		if err == nil && isTag {
			c.shared.tags.add(t.String())
		}
		return raw, desc, err
	}
	p, err := c.pull()
	if err != nil {
		return nil, v1.Descriptor{}, err
	}
	desc, err := p.Head(ctx, ref)
	if err != nil {
		if !headFallbackOK(err) {
			return nil, v1.Descriptor{}, err
		}
		// Some registries answer HEAD badly (no digest header, 405); GET tells us the same.
		return c.manifest(ctx, ref)
	}
	return c.manifest(ctx, ref.Context().Digest(desc.Digest.String()))
}

// manifestKind is the media type of a manifest, recovered from its content when the registry
// served it with a missing or generic Content-Type.
func manifestKind(mt types.MediaType, raw []byte) (types.MediaType, error) {
	if mt.IsImage() || mt.IsIndex() {
		return mt, nil
	}
	return sniffMediaType(mt, raw)
}

// headFallbackOK decides whether a failed HEAD is worth a GET: yes when the registry answered
// but HEAD itself is unsupported or incomplete; no when the answer is definitive (auth, not
// found, throttled, server error) or the network is down — a GET would only repeat the failure.
func headFallbackOK(err error) bool {
	var terr *transport.Error
	if errors.As(err, &terr) {
		return terr.StatusCode == http.StatusMethodNotAllowed || terr.StatusCode == http.StatusNotImplemented
	}
	// ggcr's own complaints about a 200 HEAD lacking Content-Type, Content-Length or
	// Docker-Content-Digest; anything else (network, TLS, ping) would fail the GET too.
	return strings.Contains(err.Error(), "response did not include")
}

// sniffMediaType recovers the kind of a manifest served with a missing or generic
// Content-Type from its own mediaType field or its shape.
func sniffMediaType(mt types.MediaType, raw []byte) (types.MediaType, error) {
	var probe struct {
		SchemaVersion int               `json:"schemaVersion"`
		MediaType     types.MediaType   `json:"mediaType"`
		Manifests     []json.RawMessage `json:"manifests"`
		Config        json.RawMessage   `json:"config"`
		Layers        []json.RawMessage `json:"layers"`
		FSLayers      []json.RawMessage `json:"fsLayers"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return "", fmt.Errorf("%w: manifest with media type %q is not valid JSON: %v", ErrMalformedManifest, mt, err)
	}
	switch {
	case probe.MediaType.IsImage() || probe.MediaType.IsIndex():
		return probe.MediaType, nil
	case probe.MediaType.IsSchema1() || mt.IsSchema1() || probe.FSLayers != nil:
		return "", fmt.Errorf("%w: Docker schema 1 manifests are not supported", ErrMalformedManifest)
	case probe.Manifests != nil:
		return types.OCIImageIndex, nil
	case probe.Config != nil && probe.Layers != nil:
		return types.OCIManifestSchema1, nil
	}
	return "", fmt.Errorf("%w: unsupported manifest media type %q", ErrMalformedManifest, mt)
}

// runnable filters index entries down to images a node could run: it drops attestation
// manifests, entries without platform, "unknown" platforms and nested artifacts/indexes.
func runnable(d v1.Descriptor) bool {
	if d.Platform == nil || d.Platform.OS == "" || d.Platform.Architecture == "" {
		return false
	}
	if d.Platform.OS == "unknown" || d.Platform.Architecture == "unknown" {
		return false
	}
	if d.Annotations[attestationRefType] != "" {
		return false
	}
	return d.MediaType == "" || d.MediaType.IsImage()
}

// platformString renders the os/arch[/variant] form used everywhere in imagetrust.
func platformString(p *v1.Platform) string {
	if p == nil || p.OS == "" {
		return ""
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// normalizeVariant treats arm64 without a variant as arm64/v8, as containerd does.
func normalizeVariant(p v1.Platform) v1.Platform {
	if p.Architecture == "arm64" && p.Variant == "" {
		p.Variant = "v8"
	}
	return p
}

func selectPlatforms(repo name.Repository, tag, indexDigest string, idx *v1.IndexManifest, want []v1.Platform) ([]Resolved, error) {
	mk := func(d v1.Descriptor) Resolved {
		return Resolved{
			Repository:  repo.Name(),
			Tag:         tag,
			Digest:      d.Digest.String(),
			Platform:    platformString(d.Platform),
			IndexDigest: indexDigest,
			Ref:         repo.Digest(d.Digest.String()),
		}
	}
	var candidates []v1.Descriptor
	for _, d := range idx.Manifests {
		if runnable(d) {
			candidates = append(candidates, d)
		}
	}
	if len(want) == 0 {
		if len(candidates) == 0 {
			return nil, fmt.Errorf("%w: index %s lists no runnable platform", ErrPlatformNotFound, indexDigest)
		}
		out := make([]Resolved, 0, len(candidates))
		for _, d := range candidates {
			out = append(out, mk(d))
		}
		return out, nil
	}

	var out []Resolved
	seen := map[string]bool{}
	var missing []string
	for _, w := range want {
		found := false
		for _, d := range candidates {
			// The spec stays as given ("linux/arm64" matches any arm64); only the index side
			// gets arm64's implicit v8 so "linux/arm64/v8" matches an entry without variant.
			if normalizeVariant(*d.Platform).Satisfies(w) {
				found = true
				if !seen[d.Digest.String()] {
					seen[d.Digest.String()] = true
					out = append(out, mk(d))
				}
				break
			}
		}
		if !found {
			missing = append(missing, platformString(&w))
		}
	}
	if len(missing) > 0 {
		var avail []string
		for _, d := range candidates {
			avail = append(avail, platformString(d.Platform))
		}
		sort.Strings(avail)
		return nil, fmt.Errorf("%w: %s not in index %s (available: %s)", ErrPlatformNotFound,
			strings.Join(missing, ", "), indexDigest, strings.Join(avail, ", "))
	}
	return out, nil
}
