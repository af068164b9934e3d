package controllers

import (
	"context"
	"errors"
	"sort"

	"github.com/imagetrust/imagetrust/scanner"
	"github.com/imagetrust/imagetrust/scanner/sbom"
	"github.com/imagetrust/imagetrust/scanner/vulndb"
)

// The Engine matches SBOMs through the vulnerability DB's fleet (vulndb.Manager.MatchMany):
// the fleet remembers every SBOM matched and the matcher output of each distinct package, so
// after a DB change RematchChanged recomputes only the SBOMs with packages the DB diff touched
// and names those whose findings changed. Only their reports are queued; every other report
// is left as it is (findings unchanged, so nothing to write). When the diff is unavailable
// (schema change, unknown previous DB) the fleet rematches everything and every report is
// refreshed, as before the fleet existed.

// FleetRematch describes one RematchFleet run.
type FleetRematch struct {
	// RematchInfo is the fleet's account of the rematch (zero when it did not run).
	vulndb.RematchInfo
	// Queued is the number of images queued to have their reports rewritten or their SBOM
	// matched one by one (on a fallback: the number of digests Rematch queued).
	Queued int
	// Fallback says why the fleet could not be used and every image was rematched one by one
	// through Rematch; empty when the fleet was used.
	Fallback string
}

// refreshBatch is how many SBOM documents a full refresh reads from the cache at a time.
const refreshBatch = 16

// fleetKey names an SBOM in the fleet: the image digest and the SBOM document's digest, so the
// two SBOMs a digest can have (attested in one repository, generated in another) never share
// a result.
func fleetKey(digest, sbomDigest string) string { return digest + " " + sbomDigest }

// scanOf is the scanner.Scan the Engine keeps for a fleet result: exactly what scanner.Match
// builds from vulndb.Manager.Match, whose results MatchMany's equal.
func (e *Engine) scanOf(r *vulndb.MatchResult) *scanner.Scan {
	return &scanner.Scan{Findings: r.Findings, Summary: scanner.Summarize(r.Findings), DB: r.DB, Packages: r.Packages, ScannedAt: e.clock.Now()}
}

// matchOne matches one SBOM through the fleet, which remembers it for RematchFleet. A document
// the fleet cannot take (invalid, too large, a matcher failure) is matched alone through the
// scanner, so its result or error reads exactly as it always did.
func (e *Engine) matchOne(ctx context.Context, sc *scanner.Scanner, digest string, doc *sbom.SBOM) (*scanner.Scan, error) {
	key := fleetKey(digest, doc.Digest)
	e.fleetMu.Lock()
	res, err := e.opts.DB.MatchMany(ctx, map[string][]byte{key: doc.Document})
	r := res[key]
	if r != nil {
		if e.fleetAt != "" && r.DB.Checksum != e.fleetAt {
			// This match moved the fleet to a DB RematchFleet has not seen: the diff's list of
			// changed SBOMs went with it, so RematchFleet must refresh them all.
			e.fleetLost = true
		}
		e.fleetAt = r.DB.Checksum
		e.mu.Lock()
		e.fleetKeys[key] = true
		e.mu.Unlock()
	}
	e.fleetMu.Unlock()
	if r != nil {
		return e.scanOf(r), nil
	}
	if err == nil {
		err = errors.New("vulndb: the fleet returned no result")
	}
	if ctx.Err() != nil || errors.Is(err, vulndb.ErrNoDB) || errors.Is(err, vulndb.ErrStale) {
		return nil, err
	}
	return sc.Match(ctx, doc)
}

// RematchFleet brings the reports up to date with the active vulnerability DB after it changed
// (all false: only the SBOMs the DB diff touched are rematched) or periodically (all true:
// every SBOM is rematched, the safety net behind the diff). Only images whose findings changed
// are queued; each gets its new match from the memo, so nothing is matched twice and nothing
// reaches a registry. Images the fleet does not know (not matched yet, or whose last match
// failed) are queued for a match of their own. When the fleet cannot be used (no DB, a stale
// DB, a failure) every image is rematched one by one through Rematch.
func (e *Engine) RematchFleet(ctx context.Context, all bool) FleetRematch {
	e.fleetMu.Lock()
	defer e.fleetMu.Unlock()
	var changed map[string]*vulndb.MatchResult
	var err error
	if all {
		changed, err = e.opts.DB.RematchAll(ctx)
	} else {
		changed, err = e.opts.DB.RematchChanged(ctx)
	}
	if err != nil {
		return e.rematchFallback(ctx, err)
	}
	st := e.opts.DB.FleetStats()
	var out FleetRematch
	moved := all || (e.fleetAt != "" && e.fleetAt != st.DBChecksum)
	if moved {
		out.RematchInfo = st.LastRematch
	}
	// A full rematch forced by the DB (no usable diff) may come with a new schema or model:
	// every report is refreshed, not only those whose findings changed. So is everything when
	// a match moved the fleet before this ran and the diff's changes are unknown.
	refreshAll := e.fleetLost || (moved && !all && st.LastRematch.Full)
	e.fleetAt, e.fleetLost = st.DBChecksum, false

	e.mu.Lock()
	byKey := map[string][]*imageEntry{}
	var loose []*imageEntry
	used := map[string]bool{}
	for k, ent := range e.images {
		if !ent.wanted() || ent.sbom == nil {
			continue
		}
		fk := fleetKey(k.Digest, ent.sbom.Digest)
		used[fk] = true
		if !e.fleetKeys[fk] || ent.scan == nil || ent.dbProblem != "" || ent.scanReason != "" {
			loose = append(loose, ent)
			continue
		}
		byKey[fk] = append(byKey[fk], ent)
	}
	var gone []string
	for fk := range e.fleetKeys {
		if !used[fk] {
			gone = append(gone, fk)
			delete(e.fleetKeys, fk)
		}
	}
	e.mu.Unlock()
	// SBOMs of images no longer wanted leave the fleet, so it does not keep rematching them.
	e.opts.DB.Forget(gone...)

	if refreshAll {
		// SBOMs are read from the cache a batch at a time, so a large fleet's documents are
		// never all in memory at once.
		fks := make([]string, 0, len(byKey))
		for fk := range byKey {
			fks = append(fks, fk)
		}
		sort.Strings(fks)
		changed = map[string]*vulndb.MatchResult{}
		for len(fks) > 0 {
			n := min(len(fks), refreshBatch)
			docs := map[string][]byte{}
			for _, fk := range fks[:n] {
				ents := byKey[fk]
				if d := e.sbomDocument(ents[0].sbom); d != nil && d.Digest == ents[0].sbom.Digest {
					docs[fk] = d.Document
				}
			}
			fks = fks[n:]
			// Documents that fail here are left out of the result and so matched one by one below.
			res, err := e.opts.DB.MatchMany(ctx, docs)
			if res == nil && err != nil {
				return e.rematchFallback(ctx, err)
			}
			for fk, r := range res {
				if r.DB.Checksum != e.fleetAt {
					e.fleetLost = true // the DB changed again meanwhile: its notification refreshes
				}
				changed[fk] = r
			}
		}
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	e.matchGen++
	gen := e.matchGen
	for fk, ents := range byKey {
		r := changed[fk]
		if r == nil {
			if refreshAll {
				loose = append(loose, ents...)
			}
			continue
		}
		// The memo of the new generation is what process finds when it matches these images.
		digest := ents[0].key.Digest
		e.matches[digest] = &matchMemo{sbomDigest: ents[0].sbom.Digest, gen: gen, scan: e.scanOf(r)}
		e.refreshed[digest]++
		for _, ent := range ents {
			ent.needMatch = true
			e.enqueue(ent.key)
			out.Queued++
		}
	}
	for _, ent := range loose {
		ent.needMatch = true
		e.enqueue(ent.key)
		out.Queued++
	}
	e.lastRematch = out
	return out
}

// rematchFallback rematches every image one by one, as before the fleet, when it cannot be used;
// a missing or stale DB then lands in the reports as DBNotLoaded or DBStale. Callers hold
// fleetMu.
func (e *Engine) rematchFallback(ctx context.Context, err error) FleetRematch {
	if ctx.Err() != nil {
		return FleetRematch{Fallback: ctx.Err().Error()}
	}
	if !errors.Is(err, vulndb.ErrNoDB) && !errors.Is(err, vulndb.ErrStale) {
		e.log.Error(err, "rematching the fleet of SBOMs failed; rematching every image one by one")
	}
	out := FleetRematch{Fallback: err.Error()}
	out.Queued = e.Rematch()
	e.mu.Lock()
	e.lastRematch = out
	e.mu.Unlock()
	return out
}
