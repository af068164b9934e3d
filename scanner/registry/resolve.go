package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
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

// Resolve turns a tag or digest reference into the concrete image manifest(s) it stands for.
// It sends one HEAD for the reference; only when that names an index does it GET the index
// (by digest, so the content is verified) and fan out to platforms. With platforms empty every
// runnable platform in the index is returned, in index order; otherwise one Resolved per
// requested platform in request order (a platform without variant matches any variant), and a
// requested platform missing from the index fails with ErrPlatformNotFound. A reference that
// names a single image resolves to itself regardless of platforms. Errors are sanitised.
func (c *Client) Resolve(ctx context.Context, image string, platforms []v1.Platform) ([]Resolved, error) {
	out, err := c.resolve(ctx, image, platforms)
	if err != nil {
		return nil, redact.Error(fmt.Errorf("resolve %s: %w", image, err))
	}
	return out, nil
}

func (c *Client) resolve(ctx context.Context, image string, platforms []v1.Platform) ([]Resolved, error) {
	ref, err := name.ParseReference(image, c.NameOptions(image)...)
	if err != nil {
		return nil, fmt.Errorf("invalid image reference: %w", err)
	}
	puller, err := remote.NewPuller(c.RemoteOptions(ctx)...)
	if err != nil {
		return nil, err
	}
	repo := ref.Context()
	tag := ""
	if t, ok := ref.(name.Tag); ok {
		tag = t.TagStr()
	}

	desc, err := puller.Head(ctx, ref)
	var raw []byte
	if err != nil {
		if !headFallbackOK(err) {
			return nil, err
		}
		// Some registries answer HEAD badly (no digest header, 405); GET tells us the same.
		got, gerr := puller.Get(ctx, ref)
		if gerr != nil {
			return nil, gerr
		}
		d := got.Descriptor
		desc, raw = &d, got.Manifest
	}

	mt := desc.MediaType
	if !mt.IsImage() && !mt.IsIndex() {
		if raw == nil {
			got, gerr := puller.Get(ctx, repo.Digest(desc.Digest.String()))
			if gerr != nil {
				return nil, gerr
			}
			raw = got.Manifest
		}
		mt, err = sniffMediaType(mt, raw)
		if err != nil {
			return nil, err
		}
	}

	if mt.IsImage() {
		if raw != nil {
			if _, err := v1.ParseManifest(bytes.NewReader(raw)); err != nil {
				return nil, fmt.Errorf("%w: image manifest %s: %v", ErrMalformedManifest, desc.Digest, err)
			}
		}
		return []Resolved{{
			Repository: repo.Name(),
			Tag:        tag,
			Digest:     desc.Digest.String(),
			Ref:        repo.Digest(desc.Digest.String()),
		}}, nil
	}

	// An index: fetch it by the digest HEAD reported so a tag moving in between cannot mix
	// two different indexes into one answer.
	if raw == nil {
		got, err := puller.Get(ctx, repo.Digest(desc.Digest.String()))
		if err != nil {
			return nil, err
		}
		raw = got.Manifest
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: image index %s: %v", ErrMalformedManifest, desc.Digest, err)
	}
	return selectPlatforms(repo, tag, desc.Digest.String(), idx, platforms)
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
