package sbom

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
)

// CachedSource is a read-through cache in front of another Source: a hit is served from disk,
// a miss is fetched from Next and stored. A broken cache never blocks an answer: read and write
// failures fall through to Next and are reported in SBOM.Note.
type CachedSource struct {
	// Cache stores SBOMs by image digest.
	Cache *Cache
	// Next produces SBOMs on a miss.
	Next Source
	// Accept, when set, decides whether a cached SBOM may be served; one it refuses is
	// fetched from Next again (and the answer cached in its place).
	Accept func(cached *SBOM) bool
}

// Name implements Source.
func (c CachedSource) Name() string { return "cache" }

// Fetch implements Source.
func (c CachedSource) Fetch(ctx context.Context, image name.Digest) (*SBOM, error) {
	if c.Next == nil {
		return nil, errors.New("sbom cached source: no next source configured")
	}
	var cacheNote string
	if c.Cache != nil {
		s, ok, err := c.Cache.Get(image.DigestStr())
		switch {
		case err != nil:
			cacheNote = "cache read failed: " + err.Error()
		case ok && (c.Accept == nil || c.Accept(s)):
			return s, nil
		}
	}
	s, err := c.Next.Fetch(ctx, image)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return nil, fmt.Errorf("%s returned neither an SBOM nor an error", c.Next.Name())
	}
	if s.ImageDigest != image.DigestStr() {
		return nil, fmt.Errorf("%s returned an SBOM for %s, not %s", c.Next.Name(), s.ImageDigest, image.DigestStr())
	}
	if c.Cache != nil {
		if err := c.Cache.Put(s); err != nil {
			cacheNote = joinNotes(cacheNote, "not cached: "+err.Error())
		}
	}
	if cacheNote != "" {
		cp := *s
		cp.Note = joinNotes(s.Note, cacheNote)
		s = &cp
	}
	return s, nil
}
