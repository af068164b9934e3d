package controllers

// The match memo: the last vulnerability match of each digest's SBOM, shared by every
// repository holding the digest, so a DB change costs one match per digest, not one per mirror.

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/sync/singleflight"

	"github.com/imagetrust/imagetrust/scanner"
)

// matchMemo is one digest's last successful match. It is replaced, never mutated.
type matchMemo struct {
	sbomDigest string // document digest of the SBOM matched
	gen        uint64 // matcher generation when the match started
	scan       *scanner.Scan
}

// matcher matches SBOMs through the scanner's fleet and memoises the result per digest until
// the DB changes (a new generation).
type matcher struct {
	fleet *scanner.Fleet
	cache *scanner.SBOMCache
	// large holds a token per huge SBOM being matched: fewer than the workers, so they never
	// all sit on huge matches while small images wait.
	large chan struct{}

	mu        sync.Mutex
	memo      map[string]*matchMemo
	gen       uint64
	matches   map[string]int // matches per digest, for tests and logs
	refreshed map[string]int // per digest: fleet rematches that installed a new match
	flight    singleflight.Group
}

// largeSBOMPackages is where an SBOM counts as huge: matching it cold takes many seconds (a
// 100,000-package one, a minute or more).
const largeSBOMPackages = 10_000

func newMatcher(fleet *scanner.Fleet, cache *scanner.SBOMCache, workers int) *matcher {
	return &matcher{fleet: fleet, cache: cache, large: make(chan struct{}, max(1, workers-1)),
		memo: map[string]*matchMemo{}, matches: map[string]int{}, refreshed: map[string]int{}}
}

// admit takes a huge-SBOM token for sb, if it needs one; ok is false when all are taken, and
// release gives it back.
func (m *matcher) admit(sb *scanner.SBOM) (release func(), ok bool) {
	if sb.Packages < largeSBOMPackages {
		return func() {}, true
	}
	select {
	case m.large <- struct{}{}:
		return func() { <-m.large }, true
	default:
		return nil, false
	}
}

// match matches the SBOM sb of digest against the DB, or reuses the match another repository
// holding the same digest made of the same SBOM since the DB last changed. doc is the SBOM
// document when at hand; evicted is true when it was not and the SBOM cache no longer has it.
func (m *matcher) match(ctx context.Context, digest string, sb, doc *scanner.SBOM) (res *scanner.Scan, evicted bool, err error) {
	gen := m.generation()
	if s := m.reuse(digest, sb.Digest, gen); s != nil {
		return s, false, nil
	}
	type outcome struct {
		scan    *scanner.Scan
		evicted bool
	}
	// Concurrent callers for one digest, SBOM and generation share one match; a caller arriving
	// just after it finished finds it memoised.
	v, err, _ := m.flight.Do(fmt.Sprintf("%s|%s|%d", digest, sb.Digest, gen), func() (any, error) {
		if s := m.reuse(digest, sb.Digest, gen); s != nil {
			return outcome{scan: s}, nil
		}
		d := doc
		if d == nil {
			d = m.document(sb)
		}
		if d == nil {
			return outcome{evicted: true}, nil
		}
		s, err := m.fleet.Match(ctx, d)
		m.mu.Lock()
		defer m.mu.Unlock()
		m.matches[digest]++
		if err != nil {
			return outcome{}, err
		}
		if cur := m.memo[digest]; cur == nil || cur.gen <= gen {
			m.memo[digest] = &matchMemo{sbomDigest: sb.Digest, gen: gen, scan: s}
		}
		return outcome{scan: s}, nil
	})
	if err != nil {
		return nil, false, err
	}
	o := v.(outcome)
	return o.scan, o.evicted, nil
}

func (m *matcher) generation() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.gen
}

// reuse returns the memoised match of digest if it is of this SBOM and of generation gen, which
// is still the current one.
func (m *matcher) reuse(digest, sbomDigest string, gen uint64) *scanner.Scan {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.memo[digest]; c != nil && c.gen == m.gen && c.gen == gen && c.sbomDigest == sbomDigest {
		return c.scan
	}
	return nil
}

// document reads the SBOM document for a rematch from the cache (no registry request).
func (m *matcher) document(meta *scanner.SBOM) *scanner.SBOM {
	if meta.Document != nil {
		return meta
	}
	doc, ok, err := m.cache.Get(meta.ImageDigest)
	if err != nil || !ok {
		return nil
	}
	return doc
}

// invalidate starts a new generation: every memoised match is out of date.
func (m *matcher) invalidate() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gen++
	return m.gen
}

// install memoises a match made by a fleet rematch, in generation gen.
func (m *matcher) install(digest, sbomDigest string, gen uint64, s *scanner.Scan) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.memo[digest] = &matchMemo{sbomDigest: sbomDigest, gen: gen, scan: s}
	m.refreshed[digest]++
}

// keepOnly drops the memos of digests not in live.
func (m *matcher) keepOnly(live map[string]bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for d := range m.memo {
		if !live[d] {
			delete(m.memo, d)
		}
	}
}

// counts copies the match and refresh counters.
func (m *matcher) counts() (matches, refreshed map[string]int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	matches, refreshed = map[string]int{}, map[string]int{}
	for k, v := range m.matches {
		matches[k] = v
	}
	for k, v := range m.refreshed {
		refreshed[k] = v
	}
	return matches, refreshed
}
