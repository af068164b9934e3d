package scanner

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/imagetrust/imagetrust/scanner/verify"

	"github.com/imagetrust/imagetrust/scanner/internal/redact"
)

// Where an image declares its base: the OCI annotations (set by BuildKit and most builders on
// the manifest) or, for images built by older tooling, a base.image label in the config.
const (
	AnnotationBaseName   = "org.opencontainers.image.base.name"
	AnnotationBaseDigest = "org.opencontainers.image.base.digest"
	LabelBaseImage       = "base.image"
)

// imageMeta is what the pipeline reads from an image's manifest and config. Both are immutable
// for a digest, so they are fetched once per digest and kept.
type imageMeta struct {
	baseName, baseDigest string
}

func (s *Scanner) metadata(ctx context.Context, ref name.Digest) (imageMeta, error) {
	s.metaMu.Lock()
	m, ok := s.meta[ref.DigestStr()]
	s.metaMu.Unlock()
	if ok {
		return m, nil
	}
	// the registry client remembers manifest and config, so SBOM generation reads them again
	// from memory rather than from the registry
	img, err := s.cfg.Registry.Image(ctx, ref)
	if err != nil {
		return m, err
	}
	manifest, err := img.Manifest()
	if err != nil {
		return m, fmt.Errorf("reading manifest of %s: %w", ref.DigestStr(), redact.Error(err))
	}
	m.baseName = manifest.Annotations[AnnotationBaseName]
	m.baseDigest = manifest.Annotations[AnnotationBaseDigest]
	if m.baseName == "" {
		cfg, err := img.ConfigFile()
		if err != nil {
			return m, fmt.Errorf("reading config of %s: %w", ref.DigestStr(), redact.Error(err))
		}
		m.baseName = cfg.Config.Labels[LabelBaseImage]
	}
	s.metaMu.Lock()
	if len(s.meta) > 100_000 { // a bound, not a policy: entries are tiny and refetchable
		clear(s.meta)
	}
	s.meta[ref.DigestStr()] = m
	s.metaMu.Unlock()
	return m, nil
}

// verifyBase reads the declared base image and checks its signature against auths. A base
// declared only by name (no digest) is resolved to the digest its tag points at now.
func (s *Scanner) verifyBase(ctx context.Context, ref name.Digest, auths []verify.Authority) BaseImage {
	m, err := s.metadata(ctx, ref)
	if err != nil {
		return BaseImage{Reason: "reading image metadata: " + err.Error()}
	}
	b := BaseImage{Name: m.baseName, Digest: m.baseDigest}
	if b.Name == "" {
		b.Checked = true
		b.Reason = "no base image declared"
		return b
	}
	if len(auths) == 0 {
		b.Reason = "no authorities to verify the base image with"
		return b
	}
	baseRef := b.Name
	if b.Digest != "" {
		baseRef = stripTag(b.Name) + "@" + b.Digest
	}
	if b.Digest == "" {
		imgs, err := s.Resolve(ctx, baseRef, nil)
		if err != nil || len(imgs) == 0 {
			b.Reason = fmt.Sprintf("resolving base image %s: %v", b.Name, err)
			return b
		}
		// An index digest is what a tag signature covers; prefer it when there is one.
		b.Digest = imgs[0].Digest
		if imgs[0].IndexDigest != "" {
			b.Digest = imgs[0].IndexDigest
		}
		baseRef = imgs[0].Repository + "@" + b.Digest
	}
	d, err := name.NewDigest(baseRef, name.WeakValidation)
	if err != nil {
		b.Reason = fmt.Sprintf("base image reference %q: %v", baseRef, err)
		return b
	}
	r := s.verifier(ctx).VerifyDigestSignature(ctx, d, auths)
	b.Checked = r.State != verify.Error
	for _, sg := range r.Signers {
		b.Signers = append(b.Signers, sg.Authority)
	}
	if r.State != verify.Verified {
		b.Reason = fmt.Sprintf("base image %s: %s", strings.ToLower(string(r.State)), r.Reason)
	}
	return b
}

func stripTag(ref string) string {
	slash := strings.LastIndex(ref, "/")
	if colon := strings.LastIndex(ref, ":"); colon > slash {
		return ref[:colon]
	}
	return ref
}
