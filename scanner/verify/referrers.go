package verify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Artifact types of signature referrers.
const (
	// BundleMediaTypePrefix starts the media type of every Sigstore bundle version
	// ("application/vnd.dev.sigstore.bundle.v0.3+json", "...bundle+json;version=0.2").
	BundleMediaTypePrefix = "application/vnd.dev.sigstore.bundle"
	// NotationArtifactType is the artifact type of Notary Project signatures.
	NotationArtifactType = "application/vnd.cncf.notary.signature"

	emptyConfigMediaType = "application/vnd.oci.empty.v1+json"
)

// Bounds on what one image's referrers may cost: real signature manifests are a few hundred
// bytes, Notation envelopes a few KiB, bundles carry whole attested SBOMs.
const (
	maxReferrers             = 256
	maxReferrerManifestBytes = 1 << 20
	maxBundleBytes           = 64 << 20
	maxEnvelopeBytes         = 4 << 20
)

type referrerKind int

const (
	kindOther referrerKind = iota
	kindBundle
	kindNotation
)

// referrer is a signature-bearing referrer with its manifest.
type referrer struct {
	digest   string
	manifest *v1.Manifest
}

// referrerSet is one listing of an image's referrers, classified. errs are failures that leave
// the listing incomplete: the listing itself, or a referrer whose type could not be read.
type referrerSet struct {
	bundles, notations []referrer
	errs               []string
	listed             bool
}

// listReferrers lists the image's referrers through the Verifier's lister, or directly.
func (r *run) listReferrers(ctx context.Context) (*v1.IndexManifest, error) {
	if r.v.Referrers != nil {
		im, err := r.v.Referrers(ctx, r.ref)
		if err != nil || im == nil {
			return im, err
		}
		cp := *im // the lister's copy is shared: never cut it in place
		cp.Manifests = slices.Clone(im.Manifests)
		return &cp, nil
	}
	idx, err := remote.Referrers(r.ref, r.remoteOptions(ctx)...)
	if err != nil {
		return nil, err
	}
	return idx.IndexManifest()
}

// referrers lists the image's referrers once per run (the referrers API, or the tag-schema
// index on registries without it) and fetches the manifests of those that may be signatures.
func (r *run) referrers(ctx context.Context) *referrerSet {
	if r.refs != nil {
		return r.refs
	}
	set := &referrerSet{}
	r.refs = set
	im, err := r.listReferrers(ctx)
	if err != nil {
		set.errs = append(set.errs, fmt.Sprintf("registry error: listing referrers of %s: %s", r.ref.DigestStr(), sanitize(err.Error())))
		return set
	}
	set.listed = true
	if len(im.Manifests) > maxReferrers {
		set.errs = append(set.errs, fmt.Sprintf("%s has %d referrers, more than the %d looked at", r.ref.DigestStr(), len(im.Manifests), maxReferrers))
		im.Manifests = im.Manifests[:maxReferrers]
	}
	for _, d := range im.Manifests {
		kind := kindOf(d.ArtifactType)
		if kind == kindOther && !untyped(d.ArtifactType) {
			continue // an SBOM or another artifact the listing names: not a signature
		}
		m, err := r.manifest(ctx, d)
		if err != nil {
			set.errs = append(set.errs, err.Error())
			continue
		}
		if kind == kindOther {
			kind = kindOf(declaredType(m))
		}
		switch kind {
		case kindBundle:
			set.bundles = append(set.bundles, referrer{digest: d.Digest.String(), manifest: m})
		case kindNotation:
			set.notations = append(set.notations, referrer{digest: d.Digest.String(), manifest: m})
		}
	}
	return set
}

func kindOf(artifactType string) referrerKind {
	switch {
	case strings.HasPrefix(artifactType, BundleMediaTypePrefix):
		return kindBundle
	case artifactType == NotationArtifactType:
		return kindNotation
	}
	return kindOther
}

// untyped is true for listings that do not say what a referrer is: registries that report the
// empty config type (go-containerregistry's) or nothing.
func untyped(artifactType string) bool {
	return artifactType == "" || artifactType == emptyConfigMediaType
}

// declaredType is a manifest's artifact type: artifactType, else the config media type.
func declaredType(m *v1.Manifest) string {
	if m.ArtifactType != "" {
		return m.ArtifactType
	}
	return string(m.Config.MediaType)
}

// manifest fetches a referrer manifest by digest; go-containerregistry checks the digest.
func (r *run) manifest(ctx context.Context, d v1.Descriptor) (*v1.Manifest, error) {
	if d.Size > maxReferrerManifestBytes {
		return nil, fmt.Errorf("referrer %s: manifest is %d bytes, over the %d byte limit", d.Digest, d.Size, maxReferrerManifestBytes)
	}
	desc, err := remote.Get(r.ref.Context().Digest(d.Digest.String()), r.remoteOptions(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("registry error: fetching referrer %s: %s", d.Digest, sanitize(err.Error()))
	}
	var m v1.Manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		return nil, fmt.Errorf("referrer %s: manifest is not valid JSON: %v", d.Digest, err)
	}
	return &m, nil
}

// subjectError says why a referrer manifest is not about this image, or nil. The tag-schema
// index is an ordinary writable tag, so its word for the subject is not taken.
func (r *run) subjectError(m *v1.Manifest) error {
	if m.Subject == nil {
		return errors.New("referrer manifest has no subject")
	}
	if m.Subject.Digest.String() != r.ref.DigestStr() {
		return fmt.Errorf("referrer subject is %s, not %s", m.Subject.Digest, r.ref.DigestStr())
	}
	return nil
}

// singleLayer returns the one layer whose media type starts with prefix.
func singleLayer(m *v1.Manifest, accept func(mediaType string) bool) (v1.Descriptor, error) {
	var found []v1.Descriptor
	for _, l := range m.Layers {
		if accept(string(l.MediaType)) {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		return v1.Descriptor{}, fmt.Errorf("expected one signature layer, found %d", len(found))
	}
	return found[0], nil
}

// blob downloads a layer within limit and checks its size and digest itself, so a registry
// serving a short or altered blob is caught whatever the client library does.
func (r *run) blob(ctx context.Context, l v1.Descriptor, limit int64) ([]byte, error) {
	if l.Size < 0 || l.Size > limit {
		return nil, fmt.Errorf("blob %s is %d bytes, over the %d byte limit", l.Digest, l.Size, limit)
	}
	if l.Digest.Algorithm != "sha256" {
		return nil, fmt.Errorf("blob %s: unsupported digest algorithm", l.Digest)
	}
	rl, err := remote.Layer(r.ref.Context().Digest(l.Digest.String()), r.remoteOptions(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("registry error: fetching blob %s: %s", l.Digest, sanitize(err.Error()))
	}
	rc, err := rl.Compressed()
	if err != nil {
		return nil, fmt.Errorf("registry error: fetching blob %s: %s", l.Digest, sanitize(err.Error()))
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, l.Size+1))
	if err != nil {
		return nil, fmt.Errorf("registry error: reading blob %s: %s", l.Digest, sanitize(err.Error()))
	}
	if int64(len(data)) != l.Size || sha256Hex(data) != l.Digest.Hex {
		return nil, fmt.Errorf("registry error: blob %s does not match its descriptor", l.Digest)
	}
	return data, nil
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
