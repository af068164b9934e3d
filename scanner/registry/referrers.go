package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/singleflight"

	"github.com/imagetrust/imagetrust/scanner/internal/redact"
)

// Referrers returns the OCI referrers of subject (signatures, attestations, Sigstore bundles,
// SBOMs attached to it): the registry's referrers API where it has one, else the referrers tag
// schema ("sha256-<hex>" tag holding an index), an empty index when neither lists anything. A
// registry found to lack the API is asked for the tag directly for a while, so such registries
// cost one request per listing, not two. Listings are kept for Options.ReferrersTTL and
// concurrent calls for one subject share one request, so the phases of one assessment
// (signature and attestation discovery, SBOM referrers) list once; callers may modify the
// returned value. Errors are sanitised; a subject without referrers is not an error.
func (c *Client) Referrers(ctx context.Context, subject name.Digest) (*v1.IndexManifest, error) {
	idx, err := c.referrers.do(subject.String(), func() (*v1.IndexManifest, error) {
		return c.listReferrers(ctx, subject)
	})
	if err != nil {
		return nil, redact.Error(fmt.Errorf("listing referrers of %s: %w", subject, err))
	}
	return idx, nil
}

func (c *Client) listReferrers(ctx context.Context, subject name.Digest) (*v1.IndexManifest, error) {
	reg := subject.Context().Registry
	if c.shared.lacksReferrersAPI(hostKey(&url.URL{Scheme: reg.Scheme(), Host: reg.RegistryStr()})) {
		return c.referrersTag(ctx, subject)
	}
	ii, err := remote.Referrers(subject, c.RemoteOptions(ctx)...)
	if err != nil {
		return nil, err
	}
	return ii.IndexManifest()
}

// referrersTag reads the referrers tag schema: the index tagged "<alg>-<hex>" next to subject.
func (c *Client) referrersTag(ctx context.Context, subject name.Digest) (*v1.IndexManifest, error) {
	tag := subject.Context().Tag(strings.Replace(subject.DigestStr(), ":", "-", 1))
	p, err := c.pull()
	if err != nil {
		return nil, err
	}
	got, err := p.Get(ctx, tag)
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		return &v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}, nil
	}
	if err != nil {
		return nil, err
	}
	return v1.ParseIndexManifest(bytes.NewReader(got.Manifest))
}

// referrerMemo keeps referrers listings for a short time and merges concurrent calls.
type referrerMemo struct {
	ttl    time.Duration
	flight singleflight.Group

	mu      sync.Mutex
	entries map[string]referrerEntry
}

type referrerEntry struct {
	idx *v1.IndexManifest
	at  time.Time
}

func newReferrerMemo(ttl time.Duration) *referrerMemo {
	return &referrerMemo{ttl: ttl, entries: map[string]referrerEntry{}}
}

// do returns a copy of key's listing from memory when it is younger than the TTL, else calls
// list (once for all concurrent callers) and remembers a successful answer.
func (m *referrerMemo) do(key string, list func() (*v1.IndexManifest, error)) (*v1.IndexManifest, error) {
	if m.ttl > 0 {
		m.mu.Lock()
		e, ok := m.entries[key]
		m.mu.Unlock()
		if ok && time.Since(e.at) < m.ttl {
			return copyIndex(e.idx), nil
		}
	}
	v, err, _ := m.flight.Do(key, func() (any, error) {
		idx, err := list()
		if err == nil && m.ttl > 0 {
			m.mu.Lock()
			if len(m.entries) > 10_000 {
				clear(m.entries)
			}
			m.entries[key] = referrerEntry{idx: idx, at: time.Now()}
			m.mu.Unlock()
		}
		return idx, err
	})
	if err != nil {
		return nil, err
	}
	return copyIndex(v.(*v1.IndexManifest)), nil
}

// copyIndex copies an index deeply enough that a caller editing entries or their annotations
// cannot change what another caller sees.
func copyIndex(in *v1.IndexManifest) *v1.IndexManifest {
	out := *in
	out.Manifests = slices.Clone(in.Manifests)
	for i := range out.Manifests {
		d := &out.Manifests[i]
		if d.Annotations != nil {
			ann := make(map[string]string, len(d.Annotations))
			for k, v := range d.Annotations {
				ann[k] = v
			}
			d.Annotations = ann
		}
		if d.Platform != nil {
			p := *d.Platform
			d.Platform = &p
		}
	}
	return &out
}
