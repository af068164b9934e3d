package sbom

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imagetrust/imagetrust/scanner/internal/redact"
)

// Media types (artifactType or config media type) that mark an OCI artifact as an SBOM.
const (
	// MediaTypeSPDXJSON is the IANA type of SPDX JSON.
	MediaTypeSPDXJSON = "application/spdx+json"
	// MediaTypeCycloneDXJSON is the IANA type of CycloneDX JSON.
	MediaTypeCycloneDXJSON = "application/vnd.cyclonedx+json"
	// MediaTypeSyftJSON is the type Syft-aware tools use for Syft's native JSON.
	MediaTypeSyftJSON = "application/vnd.syft+json"
)

// emptyConfigMediaType is the config of OCI 1.1 artifacts; registries that list the config media
// type instead of the manifest's artifactType (go-containerregistry's) report it for every
// artifact, so the manifest must be read to know what the artifact is.
const emptyConfigMediaType = "application/vnd.oci.empty.v1+json"

// maxReferrerManifestBytes bounds an artifact manifest; real ones are a few hundred bytes.
const maxReferrerManifestBytes = 4 << 20

// mediaTypeFormat maps an SBOM media type to the format its content must Detect as.
var mediaTypeFormat = map[string]string{
	MediaTypeSPDXJSON:      FormatSPDXJSON,
	MediaTypeCycloneDXJSON: FormatCycloneDXJSON,
	MediaTypeSyftJSON:      FormatSyftJSON,
}

// formatPreference orders referrers when several are acceptable: richest first for matching.
var formatPreference = map[string]int{
	FormatSPDXJSON:      0,
	FormatCycloneDXJSON: 1,
	FormatSyftJSON:      2,
}

// sbomFormatOf returns the SBOM format a media type declares ("" if it is not an SBOM type).
// Parameters such as ";version=1.5" are ignored.
func sbomFormatOf(mediaType string) string {
	if mediaType == "" {
		return ""
	}
	mt, _, err := mime.ParseMediaType(mediaType)
	if err != nil {
		mt = strings.TrimSpace(strings.SplitN(mediaType, ";", 2)[0])
	}
	return mediaTypeFormat[strings.ToLower(mt)]
}

// ReferrerSource finds SBOMs attached to an image as OCI referrers (the referrers API, or the
// "sha256-<hex>" tag schema on registries without it). An artifact is only used if Trust accepts
// its digest, unless AllowUnsigned is set.
type ReferrerSource struct {
	// RemoteOptions configure registry access (auth, transport); the context is added per call.
	RemoteOptions []remote.Option
	// Lister lists the image's referrers (registry.Client.Referrers, which shares one listing
	// between signature discovery and this source); nil lists with remote.Referrers.
	Lister func(ctx context.Context, subject name.Digest) (*v1.IndexManifest, error)
	// Trust verifies a referrer artifact (typically its signature); nil error means trusted.
	// With Trust nil and AllowUnsigned false every referrer is rejected: failing closed.
	Trust func(ctx context.Context, artifact name.Digest) error
	// AllowUnsigned accepts referrers without calling Trust.
	AllowUnsigned bool
}

// Rejection records why a referrer SBOM was not used.
type Rejection struct {
	// Digest is the referrer artifact's manifest digest.
	Digest string
	// Reason is the human-readable cause.
	Reason string
}

// String renders the rejection the way callers report it.
func (r Rejection) String() string {
	return "referrer SBOM " + r.Digest + " rejected: " + r.Reason
}

// RejectedError is returned when SBOM referrers exist but none was acceptable. It wraps
// ErrNotFound (the next source should be tried) and its message carries every reason.
type RejectedError struct {
	// Rejections lists each candidate with its reason.
	Rejections []Rejection
}

// Error implements error.
func (e *RejectedError) Error() string {
	parts := make([]string, len(e.Rejections))
	for i, r := range e.Rejections {
		parts[i] = r.String()
	}
	return "no acceptable referrer SBOM: " + strings.Join(parts, "; ")
}

// Unwrap makes errors.Is(err, ErrNotFound) true.
func (e *RejectedError) Unwrap() error { return ErrNotFound }

// Name implements Source.
func (r *ReferrerSource) Name() string { return "referrer" }

// list returns the referrers index of image.
func (r *ReferrerSource) list(ctx context.Context, image name.Digest, opts []remote.Option) (*v1.IndexManifest, error) {
	if r.Lister != nil {
		im, err := r.Lister(ctx, image)
		if err != nil {
			return nil, redact.Error(err)
		}
		return im, nil
	}
	idx, err := remote.Referrers(image, opts...)
	if err != nil {
		return nil, fmt.Errorf("listing referrers of %s: %w", image.DigestStr(), redact.Error(err))
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("reading referrers of %s: %w", image.DigestStr(), redact.Error(err))
	}
	return im, nil
}

// candidate is a referrer worth looking at, with what can be known before fetching it.
type candidate struct {
	desc    v1.Descriptor
	format  string // from the index's artifactType; "" if the index did not say
	created string
}

// Fetch implements Source.
func (r *ReferrerSource) Fetch(ctx context.Context, image name.Digest) (*SBOM, error) {
	opts := append(slices.Clone(r.RemoteOptions), remote.WithContext(ctx))
	im, err := r.list(ctx, image, opts)
	if err != nil {
		return nil, err
	}

	var cands []candidate
	for _, d := range im.Manifests {
		f := sbomFormatOf(d.ArtifactType)
		if d.ArtifactType != "" && d.ArtifactType != emptyConfigMediaType && f == "" {
			continue // a signature, attestation or other artifact: not ours
		}
		cands = append(cands, candidate{desc: d, format: f, created: d.Annotations["org.opencontainers.image.created"]})
	}
	// deterministic choice whatever order the registry lists them in: preferred format, newest, digest
	sort.SliceStable(cands, func(i, j int) bool {
		pi, pj := preference(cands[i].format), preference(cands[j].format)
		if pi != pj {
			return pi < pj
		}
		if cands[i].created != cands[j].created {
			return cands[i].created > cands[j].created
		}
		return cands[i].desc.Digest.String() < cands[j].desc.Digest.String()
	})

	var rejected []Rejection
	for _, c := range cands {
		s, reason, err := r.try(ctx, image, c, opts)
		if err != nil {
			return nil, err // the context ended: no verdict on the rest
		}
		if s == nil && reason == "" {
			continue // turned out not to be an SBOM artifact
		}
		if s == nil {
			rejected = append(rejected, Rejection{Digest: c.desc.Digest.String(), Reason: reason})
			continue
		}
		var notes []string
		for _, rj := range rejected {
			notes = append(notes, rj.String())
		}
		s.Note = joinNotes(s.Note, strings.Join(notes, "; "))
		return s, nil
	}
	if len(rejected) > 0 {
		return nil, &RejectedError{Rejections: rejected}
	}
	return nil, fmt.Errorf("%w: image %s has no SBOM referrers", ErrNotFound, image.DigestStr())
}

func preference(format string) int {
	if p, ok := formatPreference[format]; ok {
		return p
	}
	return len(formatPreference) // type unknown until the manifest is read
}

// try evaluates one candidate. It returns the SBOM, or a rejection reason, or ("", nil) for an
// artifact that is not an SBOM after all. A non-nil error means ctx ended.
func (r *ReferrerSource) try(ctx context.Context, image name.Digest, c candidate, opts []remote.Option) (*SBOM, string, error) {
	artifact := image.Context().Digest(c.desc.Digest.String())
	if c.desc.Size > maxReferrerManifestBytes {
		return nil, fmt.Sprintf("manifest is %d bytes, over the %d byte limit", c.desc.Size, maxReferrerManifestBytes), nil
	}
	desc, err := remote.Get(artifact, opts...)
	if err != nil {
		return nil, "fetching manifest: " + redact.Error(err).Error(), ctx.Err()
	}
	var m v1.Manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		return nil, "manifest is not valid JSON: " + err.Error(), nil
	}

	declared := m.ArtifactType
	if declared == "" {
		declared = string(m.Config.MediaType)
	}
	format := sbomFormatOf(declared)
	switch {
	case format == "" && c.format == "":
		return nil, "", nil // the index did not say and the manifest is not an SBOM: not ours
	case format == "":
		return nil, fmt.Sprintf("listed as %s but the manifest declares %q", c.format, declared), nil
	case c.format != "" && c.format != format:
		return nil, fmt.Sprintf("listed as %s but the manifest declares %s", c.format, format), nil
	}
	// the tag-schema index is an ordinary writable tag: do not take its word for the subject
	if m.Subject == nil || m.Subject.Digest.String() != image.DigestStr() {
		got := "none"
		if m.Subject != nil {
			got = m.Subject.Digest.String()
		}
		return nil, fmt.Sprintf("subject is %s, not the image %s", got, image.DigestStr()), nil
	}

	// trust before download: an untrusted artifact's content is never read
	note := "from referrer " + artifact.DigestStr()
	if r.AllowUnsigned {
		note += " (signature not checked: unsigned referrers allowed)"
	} else {
		if r.Trust == nil {
			return nil, "no trust policy configured for referrer SBOMs", nil
		}
		if err := r.Trust(ctx, artifact); err != nil {
			if ctx.Err() != nil {
				return nil, "", ctx.Err()
			}
			return nil, "untrusted: " + redact.Error(err).Error(), nil
		}
		note += " (trusted)"
	}

	layer, reason := pickLayer(m.Layers, format)
	if reason != "" {
		return nil, reason, nil
	}
	doc, err := fetchBlob(image, layer, opts)
	if err != nil {
		return nil, "fetching layer " + layer.Digest.String() + ": " + redact.Error(err).Error(), ctx.Err()
	}
	got, pkgs, err := Detect(doc)
	if err != nil {
		return nil, "invalid SBOM: " + err.Error(), nil
	}
	if got != format {
		return nil, fmt.Sprintf("declared %s but the content is %s", format, got), nil
	}

	created := time.Now().UTC()
	if ts := m.Annotations["org.opencontainers.image.created"]; ts != "" {
		if t, err := time.Parse(time.RFC3339, ts); err == nil {
			created = t.UTC()
		}
	}
	return &SBOM{
		Source:      SourceReferrer,
		Format:      format,
		Document:    doc,
		Packages:    pkgs,
		Digest:      DocumentDigest(doc),
		ImageDigest: image.DigestStr(),
		CreatedAt:   created,
		Note:        note,
	}, "", nil
}

// pickLayer selects the SBOM blob: the layer whose media type declares the format, or the only layer.
func pickLayer(layers []v1.Descriptor, format string) (v1.Descriptor, string) {
	for _, l := range layers {
		if sbomFormatOf(string(l.MediaType)) == format {
			return l, ""
		}
	}
	if len(layers) == 1 {
		return layers[0], ""
	}
	return v1.Descriptor{}, fmt.Sprintf("%d layers and none has an SBOM media type", len(layers))
}

// fetchBlob downloads a layer within MaxDocumentBytes and checks its size and digest itself, so a
// registry serving a short or altered blob is caught whatever the client library does.
func fetchBlob(image name.Digest, l v1.Descriptor, opts []remote.Option) ([]byte, error) {
	limit := MaxDocumentBytes
	if l.Size < 0 || (limit > 0 && l.Size > limit) {
		return nil, fmt.Errorf("blob is %d bytes, over the %d byte limit", l.Size, limit)
	}
	if l.Digest.Algorithm != "sha256" {
		return nil, fmt.Errorf("unsupported digest algorithm %q", l.Digest.Algorithm)
	}
	rl, err := remote.Layer(image.Context().Digest(l.Digest.String()), opts...)
	if err != nil {
		return nil, err
	}
	rc, err := rl.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	doc, err := io.ReadAll(io.LimitReader(rc, l.Size+1))
	if err != nil {
		return nil, err
	}
	if int64(len(doc)) != l.Size {
		return nil, fmt.Errorf("blob is %d bytes, descriptor says %d", len(doc), l.Size)
	}
	if got := DocumentDigest(doc); got != l.Digest.String() {
		return nil, errors.New("blob digest mismatch: got " + got)
	}
	return doc, nil
}
