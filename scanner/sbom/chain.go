package sbom

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/imagetrust/imagetrust/scanner/internal/redact"
)

// Chain tries its sources in order and returns the first SBOM found. A source failing for any
// reason moves on to the next one (a referrer listing that errors should not stop generation),
// but every reason is kept: in the error when all fail, in SBOM.Note when a later one succeeds.
type Chain struct {
	// Sources are tried in this order.
	Sources []Source
}

// Name implements Source.
func (c Chain) Name() string { return "chain" }

// Attempt is one source's failure inside a ChainError.
type Attempt struct {
	// Source is the failing source's Name.
	Source string
	// Err is what it returned.
	Err error
}

// ChainError reports why every source of a Chain failed, e.g.
// "attestation: no SBOM found; referrer: ... rejected: ...; generate: ...".
// errors.Is(err, ErrNotFound) holds only when every source reported ErrNotFound; a real failure
// anywhere means "no SBOM exists" cannot be concluded.
type ChainError struct {
	// Attempts lists the sources in the order they were tried.
	Attempts []Attempt
}

// Error implements error.
func (e *ChainError) Error() string {
	parts := make([]string, len(e.Attempts))
	for i, a := range e.Attempts {
		parts[i] = a.Source + ": " + a.Err.Error()
	}
	return strings.Join(parts, "; ")
}

// Unwrap exposes the failures that were not ErrNotFound if there are any, else all of them.
func (e *ChainError) Unwrap() []error {
	var hard, all []error
	for _, a := range e.Attempts {
		all = append(all, a.Err)
		if !errors.Is(a.Err, ErrNotFound) {
			hard = append(hard, a.Err)
		}
	}
	if len(hard) > 0 {
		return hard
	}
	return all
}

// Fetch implements Source.
func (c Chain) Fetch(ctx context.Context, image name.Digest) (*SBOM, error) {
	chainErr := &ChainError{}
	for _, src := range c.Sources {
		if err := ctx.Err(); err != nil {
			chainErr.Attempts = append(chainErr.Attempts, Attempt{Source: src.Name(), Err: err})
			return nil, chainErr
		}
		s, err := src.Fetch(ctx, image)
		if err == nil && s == nil {
			err = errors.New("source returned neither an SBOM nor an error")
		}
		if err == nil && s.ImageDigest != image.DigestStr() {
			err = fmt.Errorf("source returned an SBOM for %s, not %s", s.ImageDigest, image.DigestStr())
		}
		if err != nil {
			chainErr.Attempts = append(chainErr.Attempts, Attempt{Source: src.Name(), Err: redact.Error(err)})
			continue
		}
		if len(chainErr.Attempts) > 0 {
			s.Note = joinNotes(s.Note, "earlier sources: "+chainErr.Error())
		}
		return s, nil
	}
	if len(c.Sources) == 0 {
		return nil, errors.New("sbom chain: no SBOM sources configured")
	}
	return nil, chainErr
}

// joinNotes concatenates non-empty notes.
func joinNotes(notes ...string) string {
	var out []string
	for _, n := range notes {
		if n != "" {
			out = append(out, n)
		}
	}
	return strings.Join(out, "; ")
}
