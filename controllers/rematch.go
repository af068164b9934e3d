package controllers

// Rematching after a vulnerability DB change: the scanner's fleet names the SBOMs whose
// findings changed, and only their images are queued — with the new match memoised, so nothing
// is matched twice and nothing reaches a registry.

import (
	"context"
	"errors"

	"github.com/imagetrust/imagetrust/scanner"
)

// FleetRematch describes one RematchFleet run.
type FleetRematch struct {
	// RematchInfo is the fleet's account of the rematch (zero when the DB had not moved).
	scanner.RematchInfo
	// Queued is the number of images queued to have their reports rewritten or their SBOM
	// matched one by one (on a fallback: the number of digests Rematch queued).
	Queued int
	// Fallback says why the fleet could not be used and every image was rematched one by one
	// through Rematch; empty when the fleet was used.
	Fallback string
}

// fleetImage is a wanted image with an SBOM, as a rematch sees it.
type fleetImage struct {
	key imageKey
	fk  scanner.FleetKey
	// matched is false when the image's last match did not succeed: it is matched on its own.
	matched bool
}

// fleetImages lists the wanted images that have an SBOM.
func (e *Engine) fleetImages() []fleetImage {
	var out []fleetImage
	for _, k := range e.demand.wanted() {
		a := e.results.get(k)
		if a == nil || a.sbom == nil {
			continue
		}
		out = append(out, fleetImage{key: k, fk: scanner.FleetKey{ImageDigest: k.Digest, SBOMDigest: a.sbom.Digest},
			matched: a.scan != nil && a.dbWait == nil && a.scanReason == ""})
	}
	return out
}

// RematchFleet brings the reports up to date with the active vulnerability DB after it changed
// (all false: only the SBOMs the DB diff touched are rematched) or periodically (all true:
// every SBOM is rematched, the safety net behind the diff). Only images whose findings changed
// are queued. When the fleet cannot be used (no DB, a stale DB, a failure) every image is
// rematched one by one through Rematch.
func (e *Engine) RematchFleet(ctx context.Context, all bool) FleetRematch {
	imgs := e.fleetImages()
	live := make([]scanner.FleetKey, len(imgs))
	for i, im := range imgs {
		live[i] = im.fk
	}
	res, err := e.fleet.Rematch(ctx, all, live)
	if err != nil {
		return e.rematchFallback(ctx, err)
	}
	unknown := map[scanner.FleetKey]bool{}
	for _, k := range res.Unknown {
		unknown[k] = true
	}
	out := FleetRematch{RematchInfo: res.RematchInfo}
	gen := e.matcher.invalidate()
	installed := map[string]bool{}
	for _, im := range imgs {
		scan := res.Changed[im.fk]
		switch {
		case !im.matched || unknown[im.fk]:
		case scan != nil:
			if !installed[im.key.Digest] {
				installed[im.key.Digest] = true
				e.matcher.install(im.key.Digest, im.fk.SBOMDigest, gen, scan)
			}
		default:
			continue // findings unchanged: nothing to write
		}
		e.results.ask(im.key, work{match: true})
		e.enqueue(priorityRematch, im.key)
		out.Queued++
	}
	e.setLastRematch(out)
	return out
}

// rematchFallback rematches every image one by one when the fleet cannot be used; a missing or
// stale DB then lands in the reports as DBNotLoaded or DBStale.
func (e *Engine) rematchFallback(ctx context.Context, err error) FleetRematch {
	if ctx.Err() != nil {
		return FleetRematch{Fallback: ctx.Err().Error()}
	}
	if !errors.Is(err, scanner.ErrNoDB) && !errors.Is(err, scanner.ErrStaleDB) {
		e.log.Error(err, "rematching the fleet of SBOMs failed; rematching every image one by one")
	}
	out := FleetRematch{Fallback: err.Error(), Queued: e.Rematch()}
	e.setLastRematch(out)
	return out
}

// Rematch queues every wanted image for matching against the (new) vulnerability DB and returns
// the number of digests to rematch: the fallback of RematchFleet, and what a DB turning stale
// needs (every report then says DBStale). The SBOMs come from the SBOM cache, so this sends
// nothing to registries, and the repositories of one digest share its match.
func (e *Engine) Rematch() int {
	e.matcher.invalidate()
	digests := map[string]bool{}
	for _, im := range e.fleetImages() {
		e.results.ask(im.key, work{match: true})
		e.enqueue(priorityRematch, im.key)
		digests[im.key.Digest] = true
	}
	return len(digests)
}

func (e *Engine) setLastRematch(r FleetRematch) {
	e.statsMu.Lock()
	e.lastRematch = r
	e.statsMu.Unlock()
}
