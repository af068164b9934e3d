package vulndb

// MatchMany: matching new SBOMs into the fleet. The fleet lock is held only for bookkeeping —
// claiming the packages to match, storing their entries, registering the documents — while
// the matching and the replay run outside it, so one huge SBOM never holds the others.

import (
	"context"
	"errors"
	"sort"
)

// pendingFill is a claim on packages one MatchMany matches outside the lock; ok tells a waiter
// whether their entries were stored.
type pendingFill struct {
	done chan struct{}
	ok   bool
}

// maxMatchAttempts bounds how often a match starts over because the fleet moved to another
// database (or another caller's claim failed) while it ran.
const maxMatchAttempts = 4

// errFleetMoved means the fleet moved to another database while a match ran outside the lock:
// its results describe a database that is no longer the fleet's, so it starts over.
var errFleetMoved = errors.New("vulndb: the fleet moved to another database during the match")

// MatchMany matches a batch of SBOM documents (keyed by any caller-chosen name, e.g. an image
// digest) and remembers them for RematchChanged. Each distinct package across the batch and
// all earlier batches is matched against the database once; every result equals what Match
// returns for that document. A key seen before is replaced. Documents that fail to decode are
// reported in the returned error (which names their keys) and left out of the result map; the
// other documents are still matched and returned.
//
// Documents are decoded and matched a few at a time, so a large batch needs no more memory
// than a small one beyond the caller's own copy of the documents. Concurrent calls match in
// parallel: a package another call is matching is waited for, not matched twice.
func (m *Manager) MatchMany(ctx context.Context, docs map[string][]byte) (map[string]*MatchResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(docs))
	for k := range docs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	chunk := max(2*m.workers(), 8)
	out := make(map[string]*MatchResult, len(docs))
	var derrs []error
	for len(keys) > 0 {
		n := min(chunk, len(keys))
		part := make(map[string][]byte, n)
		for _, k := range keys[:n] {
			part[k] = docs[k]
		}
		keys = keys[n:]
		decoded, derr := m.decodeAll(ctx, part)
		if derr != nil {
			derrs = append(derrs, derr)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := m.matchDecoded(ctx, decoded, out); err != nil {
			return nil, err
		}
	}
	return out, errors.Join(derrs...)
}

// matchDecoded matches decoded documents on the active database, starting over with the new
// one when the fleet moves meanwhile.
func (m *Manager) matchDecoded(ctx context.Context, decoded map[string]*fleetDoc, out map[string]*MatchResult) error {
	if len(decoded) == 0 {
		return nil
	}
	for attempt := 1; ; attempt++ {
		h, st, err := m.acquireFresh()
		if err != nil {
			return err
		}
		res, err := m.matchOn(ctx, h, st, decoded)
		if err == nil {
			m.indexSoon(h)
		}
		h.inflight.Done()
		switch {
		case err == nil:
			for k, r := range res {
				out[k] = r
			}
			return nil
		case !errors.Is(err, errFleetMoved) || attempt == maxMatchAttempts:
			return err
		}
	}
}

// matchOn matches decoded documents on h: claim the packages nobody has cached or is matching
// (lock), match them (no lock), store the entries (lock), wait for the packages others are
// matching, snapshot the entries and register the documents (lock), replay (no lock), store
// the results (lock). If the fleet moved to another database in between, it returns
// errFleetMoved and stores nothing.
func (m *Manager) matchOn(ctx context.Context, h *handle, st Status, decoded map[string]*fleetDoc) (map[string]*MatchResult, error) {
	gen, mine, theirs, err := m.claim(ctx, h, decoded)
	if err != nil {
		return nil, err
	}
	entries, err := m.matchJobs(ctx, h, mine)
	if err := m.settle(gen, mine, entries, err); err != nil {
		return nil, err
	}
	for _, c := range theirs {
		select {
		case <-c.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if !c.ok {
			return nil, errFleetMoved // their match failed: claim the packages ourselves
		}
	}
	snap, err := m.register(gen, decoded)
	if err != nil {
		return nil, err
	}
	results, reused, err := m.replayWith(h, func(k string) *entry { return snap[k] }, decoded, st)
	if err != nil {
		return nil, err
	}
	return results, m.store(gen, decoded, results, reused)
}

// claim brings the fleet to h's database when it is elsewhere, then claims every package of
// decoded that is neither cached nor being matched: mine are to be matched by this call, theirs
// are being matched by others. gen is the database the claims belong to.
func (m *Manager) claim(ctx context.Context, h *handle, decoded map[string]*fleetDoc) (gen string, mine []job, theirs []*pendingFill, err error) {
	m.fleetMu.Lock()
	defer m.fleetMu.Unlock()
	f := m.fleetState()
	if f.checksum != h.status.Checksum {
		// documents matched before were matched against another database: the rematch brings
		// them (and the cache) over, incrementally when it can; their changes are kept for the
		// next RematchChanged
		changed, err := m.rematchLocked(ctx, h, false)
		if err != nil {
			return "", nil, nil, err
		}
		if f.unclaimed == nil {
			f.unclaimed = map[string]bool{}
		}
		for k := range changed {
			f.unclaimed[k] = true
		}
	}
	if f.filling == nil {
		f.filling = map[string]*pendingFill{}
	}
	seen := map[string]bool{}
	for _, d := range decoded {
		for i := range d.pkgs {
			o := &d.pkgs[i]
			if seen[o.key] || f.entries[o.key] != nil {
				continue
			}
			seen[o.key] = true
			if c := f.filling[o.key]; c != nil {
				theirs = append(theirs, c)
				continue
			}
			if o.full == nil {
				return "", nil, nil, errors.New("vulndb: internal error: no record for an uncached package")
			}
			f.filling[o.key] = &pendingFill{done: make(chan struct{})}
			mine = append(mine, job{o.key, stripped(*o.full)})
		}
	}
	return f.checksum, mine, theirs, nil
}

// settle stores the entries of the packages this call claimed — unless matching failed or the
// fleet moved meanwhile — and releases the claims.
func (m *Manager) settle(gen string, mine []job, entries []*entry, matchErr error) error {
	m.fleetMu.Lock()
	defer m.fleetMu.Unlock()
	f := m.fleetState()
	ok := matchErr == nil && f.checksum == gen
	for i, j := range mine {
		if ok {
			f.entries[j.key] = entries[i]
			f.matched++
		}
		if c := f.filling[j.key]; c != nil {
			c.ok = ok
			close(c.done)
			delete(f.filling, j.key)
		}
	}
	switch {
	case matchErr != nil:
		return matchErr
	case !ok:
		return errFleetMoved
	}
	return nil
}

// register remembers the documents and returns the entries of their packages, so the replay
// can run without the lock.
func (m *Manager) register(gen string, decoded map[string]*fleetDoc) (map[string]*entry, error) {
	m.fleetMu.Lock()
	defer m.fleetMu.Unlock()
	f := m.fleetState()
	if f.checksum != gen {
		return nil, errFleetMoved
	}
	snap := map[string]*entry{}
	for _, d := range decoded {
		for i := range d.pkgs {
			k := d.pkgs[i].key
			e := f.entries[k]
			if e == nil {
				return nil, errFleetMoved // another call's claim was dropped: start over
			}
			snap[k] = e
		}
	}
	for k, d := range decoded {
		f.docs[k] = d
	}
	return snap, nil
}

// store keeps the results with their documents, unless the fleet moved meanwhile (its rematch
// then computed them anew).
func (m *Manager) store(gen string, decoded map[string]*fleetDoc, results map[string]*MatchResult, reused int) error {
	m.fleetMu.Lock()
	defer m.fleetMu.Unlock()
	f := m.fleetState()
	f.reused += int64(reused)
	if f.checksum != gen {
		return errFleetMoved
	}
	for k, d := range decoded {
		if f.docs[k] != d {
			continue // replaced by a newer match of the same key
		}
		// the decoded records were needed for this first match only
		for i := range d.pkgs {
			d.pkgs[i].full = nil
		}
		d.result = results[k]
	}
	return nil
}
