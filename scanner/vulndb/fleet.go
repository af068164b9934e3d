package vulndb

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unique"

	"github.com/anchore/grype/grype/match"
	"github.com/anchore/grype/grype/matcher"
	"github.com/anchore/grype/grype/pkg"
	"github.com/anchore/grype/grype/vulnerability"
	"github.com/anchore/syft/syft/artifact"
	"github.com/anchore/syft/syft/file"
	syftPkg "github.com/anchore/syft/syft/pkg"

	"github.com/imagetrust/imagetrust/scanner/internal/redact"
)

// A fleet is the set of SBOMs handed to MatchMany, remembered by caller-chosen key so that
// RematchChanged can bring their findings up to date after a database change.
//
// Why results can be shared between SBOMs: grype matches every package on its own (each matcher
// sees one pkg.Package and the provider); only three steps look across packages of one SBOM —
// the matcher-emitted ignore filters (ownership overlap: a distro package's NAK/unaffected
// records suppress the same vulnerability on packages whose files it owns), the de-duplication
// of matches, and the user/default ignore rules. So the cache stores, per distinct package, what
// the matchers returned (matches and ignore filters, before any cross-package step), and those
// steps are replayed per SBOM exactly as grype's VulnerabilityMatcher runs them.

// FleetStats describes the match-result cache behind MatchMany and RematchChanged.
type FleetStats struct {
	// Documents is the number of SBOMs remembered for rematching.
	Documents int
	// Entries is the number of distinct packages whose match results are cached.
	Entries int
	// Matched counts packages matched against the database (cache misses) since New.
	Matched int64
	// Reused counts package occurrences served from the cache since New.
	Reused int64
	// DBChecksum is the database the cache entries were computed against.
	DBChecksum string
	// LastRematch describes the most recent RematchChanged or RematchAll.
	LastRematch RematchInfo
}

// RematchInfo describes one RematchChanged or RematchAll run.
type RematchInfo struct {
	// Full is true when every cache entry was dropped (schema change, unknown previous
	// database, RematchAll, or a change outside the tables the diff understands).
	Full bool
	// Reason says why the rematch was full; empty for incremental ones.
	Reason string
	// TouchedNames is the number of package/CPE names the database diff reported as changed.
	TouchedNames int
	// TouchedVulns is the number of vulnerability records the diff reported as changed.
	TouchedVulns int
	// Invalidated is the number of cache entries dropped.
	Invalidated int
	// Rematched is the number of SBOMs whose findings were recomputed.
	Rematched int
	// Changed is the number of SBOMs whose findings differ from before.
	Changed int
	// Took is the wall time of the run, including the diff's share when it ran here.
	Took time.Duration
}

// occurrence is one package of a remembered SBOM: only what differs between occurrences of
// the same package (its ID and the packages owning its files, which grype's ownership ignore
// filters compare) and the cache key under which everything else is kept once. A large fleet
// repeats each distinct package many times, so this is what keeps its memory small.
type occurrence struct {
	id     pkg.ID
	owners []pkg.ID // RelatedPackages[ownership-by-file-overlap]
	key    string
	locs   unique.Handle[string] // findingLocations joined by NUL: one pointer, shared by equal lists
	full   *pkg.Package          // the decoded record, only until its document has been matched
}

// pkgFor rebuilds the package grype would have seen for this occurrence: the cached record
// (identical in every field the key covers) with this occurrence's identity and owners, and the
// locations a finding lists. The other locations are not kept: no matcher reads them, and a
// result that depends on them (an ignore filter naming a location) is never shared (see
// shareable).
func (o *occurrence) pkgFor(e *entry) pkg.Package {
	if o.full != nil {
		return *o.full
	}
	p := e.src
	p.ID = o.id
	p.Locations = file.LocationSet{}
	if paths := o.locs.Value(); paths != "" {
		for path := range strings.SplitSeq(paths, "\x00") {
			p.Locations.Add(file.NewLocation(path).WithAnnotation(syftPkg.EvidenceAnnotationKey, syftPkg.PrimaryEvidenceAnnotation))
		}
	}
	if len(o.owners) > 0 {
		rel := make([]*pkg.Package, len(o.owners))
		for i, id := range o.owners {
			rel[i] = &pkg.Package{ID: id}
		}
		p.RelatedPackages = map[artifact.RelationshipType][]*pkg.Package{artifact.OwnershipByFileOverlapRelationship: rel}
	}
	return p
}

// fleetDoc is one remembered SBOM.
type fleetDoc struct {
	pkgs   []occurrence
	result *MatchResult
}

// entry is the cached matcher output for one distinct package.
type entry struct {
	src     pkg.Package // the record (without identity, locations, relationships), rematched when stale
	stale   bool
	local   bool // the matchers' output cannot be shared: every occurrence is matched at replay
	srcID   pkg.ID
	matches []match.Match // Package left empty: replay sets each occurrence's
	ignores []match.IgnoreFilter
	names   []uint64 // nameHash of the normalised names the package is searched by
	vulnIDs []uint64 // nameHash of the lower-cased vulnerability IDs in matches and ignore filters
}

// stripped is p as an entry keeps it: what only one occurrence has is dropped, which also
// stops the entry from keeping the rest of that SBOM's packages alive through RelatedPackages.
func stripped(p pkg.Package) pkg.Package {
	p.RelatedPackages = nil
	p.Locations = file.LocationSet{}
	return p
}

// fleet is the Manager's fleet state, guarded by Manager.fleetMu.
type fleet struct {
	checksum string // database the entries belong to
	entries  map[string]*entry
	docs     map[string]*fleetDoc
	matched  int64
	reused   int64
	pending  *dbDiff // changes from checksum to the active database, computed at install time
	last     RematchInfo
	// unclaimed names the documents whose findings changed when MatchMany had to move the
	// fleet to a new database itself; the next RematchChanged or RematchAll returns them, so a
	// caller never loses a change because a match happened to run first.
	unclaimed map[string]bool
	// filling are the packages a MatchMany is matching outside the lock, so a concurrent one
	// waits for them instead of matching them again.
	filling map[string]*pendingFill
}

func (m *Manager) fleetState() *fleet {
	if m.fl == nil {
		m.fl = &fleet{entries: map[string]*entry{}, docs: map[string]*fleetDoc{}}
	}
	return m.fl
}

// FleetStats reports the fleet cache.
func (m *Manager) FleetStats() FleetStats {
	m.fleetMu.Lock()
	defer m.fleetMu.Unlock()
	f := m.fleetState()
	return FleetStats{Documents: len(f.docs), Entries: len(f.entries), Matched: f.matched, Reused: f.reused, DBChecksum: f.checksum, LastRematch: f.last}
}

// Forget drops remembered SBOMs (e.g. images no longer running). Cache entries stay until
// the next database change.
func (m *Manager) Forget(keys ...string) {
	m.fleetMu.Lock()
	defer m.fleetMu.Unlock()
	f := m.fleetState()
	for _, k := range keys {
		delete(f.docs, k)
	}
}

// RematchChanged brings the remembered SBOMs up to date with the active database and returns
// the results of those whose findings changed (nothing when the database did not change).
// When the previous database is known and has the same schema, only cache entries for package
// names and vulnerabilities the database diff touched are rematched; otherwise every entry is.
func (m *Manager) RematchChanged(ctx context.Context) (map[string]*MatchResult, error) {
	return m.rematch(ctx, false)
}

// RematchAll drops the whole cache and rematches every remembered SBOM: the periodic safety
// net behind the incremental RematchChanged. It returns the results whose findings changed.
func (m *Manager) RematchAll(ctx context.Context) (map[string]*MatchResult, error) {
	return m.rematch(ctx, true)
}

func (m *Manager) rematch(ctx context.Context, full bool) (map[string]*MatchResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h, _, err := m.acquireFresh()
	if err != nil {
		return nil, err
	}
	defer h.inflight.Done()
	m.fleetMu.Lock()
	defer m.fleetMu.Unlock()
	changed, err := m.rematchLocked(ctx, h, full)
	if err != nil {
		return nil, err
	}
	f := m.fleetState()
	for k := range f.unclaimed {
		if d := f.docs[k]; d != nil && d.result != nil && changed[k] == nil {
			changed[k] = d.result
		}
	}
	f.unclaimed = nil
	return changed, nil
}

// Results returns the current result of each remembered document among keys; keys the fleet
// does not remember are left out. Nothing is matched.
func (m *Manager) Results(keys ...string) map[string]*MatchResult {
	m.fleetMu.Lock()
	defer m.fleetMu.Unlock()
	f := m.fleetState()
	out := make(map[string]*MatchResult, len(keys))
	for _, k := range keys {
		if d := f.docs[k]; d != nil && d.result != nil {
			out[k] = d.result
		}
	}
	return out
}

// rematchLocked moves the fleet to h's database. Callers hold fleetMu and h.
func (m *Manager) rematchLocked(ctx context.Context, h *handle, full bool) (map[string]*MatchResult, error) {
	start := time.Now()
	f := m.fleetState()
	info := RematchInfo{Full: full}
	if full {
		info.Reason = "full rematch requested"
	}
	affected := map[string]*fleetDoc{}
	switch {
	case full:
	case f.checksum == h.status.Checksum:
		return map[string]*MatchResult{}, nil
	case f.checksum == "" && len(f.entries) == 0:
		// nothing cached yet: nothing to invalidate
		f.checksum = h.status.Checksum
		return map[string]*MatchResult{}, nil
	case f.pending == nil || f.pending.from != f.checksum || f.pending.to != h.status.Checksum:
		full, info.Full, info.Reason = true, true, "no diff from the previous database"
	case f.pending.full:
		full, info.Full, info.Reason = true, true, f.pending.reason
	}
	// entries no remembered document uses any more (their images are gone) are dropped rather
	// than rematched, so the cache follows the fleet
	used := make(map[string]bool, len(f.entries))
	for _, d := range f.docs {
		for i := range d.pkgs {
			used[d.pkgs[i].key] = true
		}
	}
	for k := range f.entries {
		if !used[k] {
			delete(f.entries, k)
		}
	}
	if full {
		for _, e := range f.entries {
			e.stale = true
		}
		info.Invalidated = len(f.entries)
		for k, d := range f.docs {
			affected[k] = d
		}
	} else {
		d := f.pending
		info.TouchedNames, info.TouchedVulns = len(d.names), len(d.vulns)
		dropped := map[string]bool{}
		for k, e := range f.entries {
			// a local entry's matcher output was never cached: it can change with anything
			if e.local || e.touchedBy(d) {
				e.stale = true
				dropped[k] = true
			}
		}
		info.Invalidated = len(dropped)
		for k, doc := range f.docs {
			for i := range doc.pkgs {
				if dropped[doc.pkgs[i].key] {
					affected[k] = doc
					break
				}
			}
		}
	}
	f.checksum = h.status.Checksum
	f.pending = nil

	if err := m.fillLocked(ctx, h, affected); err != nil {
		return nil, err
	}
	st := m.statusOf(h)
	changed := map[string]*MatchResult{}
	results, err := m.replayAll(h, f, affected, st)
	if err != nil {
		return nil, err
	}
	for k, d := range affected {
		res := results[k]
		if d.result == nil || !sameFindings(d.result.Findings, res.Findings) {
			changed[k] = res
		}
		d.result = res
	}
	// the others keep their findings; their results now describe the new database
	for _, d := range f.docs {
		if d.result != nil {
			d.result.DB = st
		}
	}
	info.Rematched, info.Changed, info.Took = len(affected), len(changed), time.Since(start)
	f.last = info
	return changed, nil
}

// decodeAll decodes documents in parallel into slim packages with their cache keys.
func (m *Manager) decodeAll(ctx context.Context, docs map[string][]byte) (map[string]*fleetDoc, error) {
	type job struct {
		key string
		doc []byte
	}
	jobs := make(chan job)
	var mu sync.Mutex
	out := make(map[string]*fleetDoc, len(docs))
	var errs []error
	var wg sync.WaitGroup
	for range m.workers() {
		wg.Go(func() {
			for j := range jobs {
				d, err := m.decode(j.doc)
				mu.Lock()
				if err != nil {
					errs = append(errs, fmt.Errorf("document %q: %w", j.key, err))
				} else {
					out[j.key] = d
				}
				mu.Unlock()
			}
		})
	}
	keys := make([]string, 0, len(docs))
	for k := range docs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if ctx.Err() != nil {
			break
		}
		jobs <- job{k, docs[k]}
	}
	close(jobs)
	wg.Wait()
	return out, errors.Join(errs...)
}

func (m *Manager) decode(doc []byte) (*fleetDoc, error) {
	if int64(len(doc)) > m.cfg.MaxSBOMBytes {
		return nil, fmt.Errorf("%w: %d bytes exceeds the limit of %d", ErrSBOMTooLarge, len(doc), m.cfg.MaxSBOMBytes)
	}
	if len(bytes.TrimSpace(doc)) == 0 {
		return nil, fmt.Errorf("%w: empty document", ErrInvalidSBOM)
	}
	pkgs, _, _, err := pkg.ProvideFromReader(bytes.NewReader(doc), providerConfig())
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalidSBOM, redact.Text(err.Error()))
	}
	d := &fleetDoc{pkgs: make([]occurrence, len(pkgs))}
	for i := range pkgs {
		p := &pkgs[i]
		o := occurrence{id: p.ID, full: p, locs: unique.Make(strings.Join(findingLocations(p.Locations), "\x00"))}
		for _, r := range p.RelatedPackages[artifact.OwnershipByFileOverlapRelationship] {
			if r != nil {
				o.owners = append(o.owners, r.ID)
			}
		}
		k, err := packageKey(*p)
		if err != nil {
			return nil, fmt.Errorf("vulndb: key package %s: %w", p.Name, err)
		}
		o.key = k
		d.pkgs[i] = o
	}
	return d, nil
}

// matchConfigFingerprint identifies the matcher configuration and ignore rules in cache keys,
// so a change to either can never serve results computed under the old one.
var matchConfigFingerprint = func() string {
	b, _ := json.Marshal(struct {
		M any
		I any
		P any
	}{defaultMatcherConfig(), defaultIgnoreRules, providerConfig()})
	s := sha256.Sum256(b)
	return fmt.Sprintf("%x", s[:8])
}()

// keyedPackage is everything of a grype package a matcher can read: all fields except the
// identity (ID), where it was found (Locations) and its relationships, which only the
// per-SBOM replay uses.
type keyedPackage struct {
	Name, Version, PURL, Type, Language string
	Licenses                            []string
	CPEs                                []string
	Upstreams                           []pkg.UpstreamPackage
	Distro                              *keyedDistro
	MetadataType                        string
	Metadata                            any
	Annotations                         map[string][]string
	Config                              string
}

type keyedDistro struct {
	Type, Version, Codename, Major, Minor, Remaining string
	Channels, IDLike                                 []string
	SupportEnd                                       *time.Time
}

func packageKey(p pkg.Package) (string, error) {
	k := keyedPackage{Name: p.Name, Version: p.Version, PURL: p.PURL, Type: string(p.Type), Language: string(p.Language),
		Licenses: p.Licenses, Upstreams: p.Upstreams, Metadata: p.Metadata, MetadataType: fmt.Sprintf("%T", p.Metadata),
		Annotations: p.Annotations, Config: matchConfigFingerprint}
	for _, c := range p.CPEs {
		k.CPEs = append(k.CPEs, c.Attributes.BindToFmtString()+"|"+string(c.Source))
	}
	if d := p.Distro; d != nil {
		k.Distro = &keyedDistro{Type: string(d.Type), Version: d.Version, Codename: d.Codename, Major: d.MajorVersion(),
			Minor: d.MinorVersion(), Remaining: d.RemainingVersion(), Channels: d.Channels, IDLike: d.IDLike, SupportEnd: d.SupportEnd}
	}
	b, err := json.Marshal(k)
	if err != nil {
		return "", err
	}
	s := sha256.Sum256(b)
	return string(s[:]), nil
}

// fillLocked matches every package of docs whose key is not cached, and every stale entry,
// spread over the worker providers, and caches the results. Callers hold fleetMu and h.
func (m *Manager) fillLocked(ctx context.Context, h *handle, docs map[string]*fleetDoc) error {
	f := m.fleetState()
	var todo []job
	want := map[string]bool{}
	for k, e := range f.entries {
		if e.stale {
			want[k] = true
			p := e.src
			p.ID = e.srcID
			todo = append(todo, job{k, p})
		}
	}
	for _, d := range docs {
		for i := range d.pkgs {
			o := &d.pkgs[i]
			if _, ok := f.entries[o.key]; ok || want[o.key] {
				continue
			}
			if o.full == nil {
				return errors.New("vulndb: internal error: no record for an uncached package")
			}
			want[o.key] = true
			todo = append(todo, job{o.key, stripped(*o.full)})
		}
	}
	results, err := m.matchJobs(ctx, h, todo)
	if err != nil {
		return err
	}
	for i, j := range todo {
		f.matched++
		f.entries[j.key] = results[i]
	}
	return nil
}

// job is one distinct package to match: its cache key and the record.
type job struct {
	key string
	p   pkg.Package
}

// matchJobs matches packages spread over the worker providers and returns their entries in
// order. It touches no fleet state, so it runs without the lock.
func (m *Manager) matchJobs(ctx context.Context, h *handle, todo []job) ([]*entry, error) {
	results := make([]*entry, len(todo))
	if len(todo) == 0 {
		return results, nil
	}
	provs := h.providers(min(m.workers(), len(todo)))
	type matchers struct {
		index map[syftPkg.Type][]match.Matcher
		def   match.Matcher
	}
	perWorker := make([]*matchers, len(provs))
	err := onWorkers(provs, len(todo), func(w int, vp vulnerability.Provider, i int) error {
		ms := perWorker[w]
		if ms == nil {
			ms = &matchers{}
			ms.index, ms.def = matcherIndex(matcher.NewDefaultMatchers(defaultMatcherConfig()))
			perWorker[w] = ms
		}
		e, err := matchOne(vp, ms.index, ms.def, todo[i].p)
		if err == nil {
			err = ctx.Err()
			e.src = todo[i].p
			e.src.ID = ""
		}
		results[i] = e
		return err
	})
	return results, err
}

// matchOne runs grype's per-package step of VulnerabilityMatcher.searchDBForMatches. When a
// matcher failed non-fatally or emitted an ignore filter that refers to where the package was
// found, the result is local: replay matches each occurrence in place, as grype does.
func matchOne(vp vulnerability.Provider, index map[syftPkg.Type][]match.Matcher, def match.Matcher, p pkg.Package) (*entry, error) {
	matches, ignores, failed, err := searchPackage(vp, index, def, p)
	if err != nil {
		return nil, err
	}
	e := &entry{srcID: p.ID, names: searchNames(p)}
	if failed || !shareable(ignores, p.ID) {
		e.local = true
		return e, nil
	}
	for i := range matches {
		matches[i].Package = pkg.Package{}
	}
	e.matches, e.ignores = matches, ignores
	seen := map[uint64]bool{}
	add := func(id string) {
		if id == "" {
			return
		}
		if h := nameHash(strings.ToLower(id)); !seen[h] {
			seen[h] = true
			e.vulnIDs = append(e.vulnIDs, h)
		}
	}
	for _, mm := range matches {
		add(mm.Vulnerability.ID)
		for _, r := range mm.Vulnerability.RelatedVulnerabilities {
			add(r.ID)
		}
	}
	for _, ig := range ignores {
		switch r := ig.(type) {
		case match.IgnoreRelatedPackage:
			add(r.VulnerabilityID)
		case match.IgnoreRule:
			add(r.Vulnerability)
		}
	}
	return e, nil
}

// searchPackage is grype's loop body for one package: the type's matchers (or the stock
// matcher), panics turned into fatal errors, the explicit (hard-coded) ignore rules applied
// to each matcher's output. failed reports a non-fatal matcher error, which grype logs and
// skips.
func searchPackage(vp vulnerability.Provider, index map[syftPkg.Type][]match.Matcher, def match.Matcher, p pkg.Package) (matches []match.Match, ignores []match.IgnoreFilter, failed bool, err error) {
	against, ok := index[p.Type]
	if !ok {
		against = []match.Matcher{def}
	}
	for _, mt := range against {
		ms, igs, err := callMatcher(mt, vp, p)
		if err != nil {
			if match.IsFatalError(err) {
				return nil, nil, false, fmt.Errorf("vulndb: match: %w", err)
			}
			failed = true
		}
		ignores = append(ignores, igs...)
		filtered, _ := match.ApplyExplicitIgnoreRules(nil, match.NewMatches(ms...))
		matches = append(matches, filtered.Sorted()...)
	}
	return matches, ignores, failed, nil
}

func callMatcher(mt match.Matcher, vp vulnerability.Provider, p pkg.Package) (ms []match.Match, igs []match.IgnoreFilter, err error) {
	defer func() {
		if e := recover(); e != nil {
			err = match.NewFatalError(mt.Type(), fmt.Errorf("%v at:\n%s", e, string(debug.Stack())))
		}
	}()
	return mt.Match(vp, p)
}

// matcherIndex mirrors grype's newMatcherIndex.
func matcherIndex(ms []match.Matcher) (map[syftPkg.Type][]match.Matcher, match.Matcher) {
	index := map[syftPkg.Type][]match.Matcher{}
	var def match.Matcher
	for _, mt := range ms {
		if mt.Type() == match.StockMatcher {
			def = mt
			continue
		}
		for _, t := range mt.PackageTypes() {
			index[t] = append(index[t], mt)
		}
	}
	if def == nil {
		panic("vulndb: grype's default matchers lack the stock matcher")
	}
	return index, def
}

// shareable reports whether a package's ignore filters can be moved to another occurrence of
// the same package: ownership filters naming the package itself (re-pointed at replay) and
// rules that name only package coordinates and vulnerabilities.
func shareable(ignores []match.IgnoreFilter, src pkg.ID) bool {
	for _, ig := range ignores {
		switch r := ig.(type) {
		case match.IgnoreRelatedPackage:
			if r.RelatedPackageID != src {
				return false
			}
		case match.IgnoreRule:
			if r.Package.Location != "" {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// replayAll replays docs spread over the worker providers (results are independent per SBOM).
// Callers hold fleetMu and h.
func (m *Manager) replayAll(h *handle, f *fleet, docs map[string]*fleetDoc, st Status) (map[string]*MatchResult, error) {
	results, reused, err := m.replayWith(h, func(k string) *entry { return f.entries[k] }, docs, st)
	f.reused += int64(reused)
	return results, err
}

// replayWith replays docs spread over the worker providers, reading cache entries through
// lookup. It touches no fleet state itself, so with a snapshot as lookup it runs without the
// lock. It returns how many occurrences were served from the cache.
func (m *Manager) replayWith(h *handle, lookup func(string) *entry, docs map[string]*fleetDoc, st Status) (map[string]*MatchResult, int, error) {
	keys := make([]string, 0, len(docs))
	for k := range docs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	results := make([]*MatchResult, len(keys))
	reused := make([]int, len(keys))
	provs := h.providers(min(m.workers(), max(len(keys), 1)))
	err := onWorkers(provs, len(keys), func(_ int, vp vulnerability.Provider, i int) error {
		var err error
		results[i], reused[i], err = replay(vp, lookup, docs[keys[i]], st)
		return err
	})
	total := 0
	for _, n := range reused {
		total += n
	}
	if err != nil {
		return nil, total, err
	}
	out := make(map[string]*MatchResult, len(keys))
	for i, k := range keys {
		out[k] = results[i]
	}
	return out, total, nil
}

// onWorkers calls fn for every i in [0, n), one goroutine per provider (w is its index), which
// take the next i in turn. It stops handing out work at the first error and returns it.
func onWorkers(provs []vulnerability.Provider, n int, fn func(w int, vp vulnerability.Provider, i int) error) error {
	var (
		next     atomic.Int64
		failed   atomic.Bool
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	for w, vp := range provs {
		wg.Go(func() {
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(w, vp, i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					failed.Store(true)
					return
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

// replay rebuilds one SBOM's result from cached entries, running grype's cross-package steps
// (ignore filters, de-duplication, ignore rules) exactly as VulnerabilityMatcher does. Local
// packages are matched here, on vp. It reports how many occurrences were served from the
// cache. It only reads entries through lookup, so SBOMs can be replayed in parallel.
func replay(vp vulnerability.Provider, lookup func(string) *entry, d *fleetDoc, st Status) (*MatchResult, int, error) {
	var all []match.Match
	var ignores []match.IgnoreFilter
	var index map[syftPkg.Type][]match.Matcher
	var def match.Matcher
	reused := 0
	for i := range d.pkgs {
		o := &d.pkgs[i]
		e := lookup(o.key)
		if e == nil {
			return nil, 0, errors.New("vulndb: internal error: cache entry lost for a remembered package")
		}
		if e.local {
			if index == nil {
				index, def = matcherIndex(matcher.NewDefaultMatchers(defaultMatcherConfig()))
			}
			ms, igs, _, err := searchPackage(vp, index, def, o.pkgFor(e))
			if err != nil {
				return nil, 0, err
			}
			all = append(all, ms...)
			ignores = append(ignores, igs...)
			continue
		}
		reused++
		if len(e.matches) == 0 && len(e.ignores) == 0 {
			continue // most packages: nothing to rebuild
		}
		real := o.pkgFor(e)
		for _, mm := range e.matches {
			mm.Package = real
			all = append(all, mm)
		}
		for _, ig := range e.ignores {
			if r, ok := ig.(match.IgnoreRelatedPackage); ok {
				r.RelatedPackageID = real.ID
				ig = r
			}
			ignores = append(ignores, ig)
		}
	}
	filtered, _ := match.ApplyIgnoreFilters(all, ignoredMatchFilter(ignores))
	res := match.NewMatches(filtered...)
	res, _ = match.ApplyIgnoreRules(res, defaultIgnoreRules)
	return &MatchResult{Findings: toFindings(vp, res.Sorted()), Packages: len(d.pkgs), DB: st}, reused, nil
}

// ignoreIndex mirrors grype's unexported ignoreRulesByIndex/ignoredMatchFilter, so a replayed
// SBOM filters exactly as grype would (including which rules its index can see).
type ignoreIndex struct {
	remaining []match.IgnoreFilter
	location  map[string][]match.IgnoreRule
	name      map[string][]match.IgnoreRule
	vulnID    map[string][]match.IgnoreFilter
}

func ignoredMatchFilter(ignores []match.IgnoreFilter) ignoreIndex {
	out := ignoreIndex{location: map[string][]match.IgnoreRule{}, name: map[string][]match.IgnoreRule{}, vulnID: map[string][]match.IgnoreFilter{}}
	for _, ig := range ignores {
		if r, ok := ig.(match.IgnoreRule); ok {
			if r.Package.Location != "" && !strings.ContainsRune(r.Package.Location, '*') {
				out.location[r.Package.Location] = append(out.location[r.Package.Location], r)
				continue
			}
			if r.Package.Name != "" {
				out.name[r.Package.Name] = append(out.name[r.Package.Name], r)
				continue
			}
			if r.Vulnerability != "" && r.IncludeAliases {
				out.vulnID[r.Vulnerability] = append(out.vulnID[r.Vulnerability], ig)
				continue
			}
		}
		if r, ok := ig.(match.IgnoreRelatedPackage); ok && r.VulnerabilityID != "" {
			out.vulnID[r.VulnerabilityID] = append(out.vulnID[r.VulnerabilityID], ig)
			continue
		}
		out.remaining = append(out.remaining, ig)
	}
	return out
}

// IgnoreMatch implements match.IgnoreFilter.
func (i ignoreIndex) IgnoreMatch(m match.Match) []match.IgnoreRule {
	if r := firstIgnore(m, i.vulnID[m.Vulnerability.ID]); r != nil {
		return r
	}
	for _, rel := range m.Vulnerability.RelatedVulnerabilities {
		if r := firstIgnore(m, i.vulnID[rel.ID]); r != nil {
			return r
		}
	}
	if r := firstIgnore(m, i.name[m.Package.Name]); r != nil {
		return r
	}
	for _, l := range m.Package.Locations.ToSlice() {
		if r := firstIgnore(m, i.location[l.RealPath]); r != nil {
			return r
		}
	}
	return firstIgnore(m, i.remaining)
}

func firstIgnore[E match.IgnoreFilter](m match.Match, fs []E) []match.IgnoreRule {
	for _, f := range fs {
		if r := f.IgnoreMatch(m); r != nil {
			return r
		}
	}
	return nil
}

// workers is the number of goroutines (and database handles) used for batch matching.
func (m *Manager) workers() int {
	if m.cfg.MatchWorkers > 0 {
		return m.cfg.MatchWorkers
	}
	return runtime.GOMAXPROCS(0)
}

// sameFindings compares two sorted finding lists field by field.
func sameFindings(a, b []Finding) bool {
	return slices.EqualFunc(a, b, func(x, y Finding) bool {
		return x.ID == y.ID && x.Package == y.Package && x.Version == y.Version && x.Type == y.Type && x.PURL == y.PURL &&
			x.FixState == y.FixState && x.Severity == y.Severity && x.Namespace == y.Namespace &&
			slices.Equal(x.Aliases, y.Aliases) && slices.Equal(x.FixedVersions, y.FixedVersions) &&
			slices.Equal(x.Matchers, y.Matchers) && slices.Equal(x.MatchTypes, y.MatchTypes) &&
			slices.Equal(x.Locations, y.Locations)
	})
}
