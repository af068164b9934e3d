package controllers

// The results store: per image, the last assessment (an immutable value a pass swaps in whole)
// and the work asked of the next pass.

import (
	"sync"
	"time"

	"github.com/imagetrust/imagetrust/scanner"
)

// assessment is everything one pass concluded about an image. Nothing mutates one once it is
// stored, so reports are built from it without a lock.
type assessment struct {
	verification *scanner.Verification
	// verifyKey is the authorityKey the verification was made with: it is reused only while
	// the image's policies have exactly these authorities.
	verifyKey string
	// sbom is the SBOM's metadata; the document lives in the SBOM cache.
	sbom       *scanner.SBOM
	sbomReason string
	scan       *scanner.Scan
	scanReason string
	scanHash   string
	scannedAt  time.Time
	// dbWait is why the last match could not run (*WaitingError: DBNotLoaded or DBStale); it
	// stands until a match runs again.
	dbWait error
	// problems are the last pass's other errors: plain ones are retried with backoff,
	// *StallingError ones need a person.
	problems error
}

// retrying reports whether the assessment has a problem that is being retried.
func (a *assessment) retrying() bool { return kindOf(a.problems) == errGeneric }

// work is what the next pass over an image must redo even though nothing it depends on changed.
type work struct {
	verify bool // a schedule asked for re-verification, or the last one failed
	match  bool // the DB changed, or the last match could not run
}

func (w work) or(o work) work { return work{verify: w.verify || o.verify, match: w.match || o.match} }

// results holds the assessments and pending work of every image.
type results struct {
	mu            sync.Mutex
	byImage       map[imageKey]*assessment
	pending       map[imageKey]work
	verifications map[imageKey]int // full verifications per image, for tests and logs
}

func newResults() *results {
	return &results{byImage: map[imageKey]*assessment{}, pending: map[imageKey]work{}, verifications: map[imageKey]int{}}
}

// take returns the image's assessment (nil before its first pass) and the work asked of this
// pass, which it clears: work asked while the pass runs goes to the next one.
func (r *results) take(k imageKey) (*assessment, work) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.pending[k]
	delete(r.pending, k)
	return r.byImage[k], w
}

// ask records work for the image's next pass.
func (r *results) ask(k imageKey, w work) {
	r.mu.Lock()
	r.pending[k] = r.pending[k].or(w)
	r.mu.Unlock()
}

// store swaps in a pass's assessment, with the work its outcome asks of the next pass.
func (r *results) store(k imageKey, a *assessment, next work) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byImage[k] = a
	if next != (work{}) {
		r.pending[k] = r.pending[k].or(next)
	}
}

// get returns the image's assessment.
func (r *results) get(k imageKey) *assessment {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byImage[k]
}

// verified counts one full verification of the image.
func (r *results) verified(k imageKey) {
	r.mu.Lock()
	r.verifications[k]++
	r.mu.Unlock()
}

// settled reports whether every image in keys has an assessment, no pending work and no problem
// being retried.
func (r *results) settled(keys []imageKey) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		a := r.byImage[k]
		if a == nil || r.pending[k] != (work{}) || a.retrying() {
			return false
		}
	}
	return true
}

// forget drops the images' assessments.
func (r *results) forget(keys []imageKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		delete(r.byImage, k)
		delete(r.pending, k)
	}
}

// verificationCounts copies the verification counters, keyed "repository@digest".
func (r *results) verificationCounts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.verifications))
	for k, v := range r.verifications {
		out[k.String()] = v
	}
	return out
}
