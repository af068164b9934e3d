package controllers

// A pass is one trip of an image through the pipeline: an ordered list of steps over one pass
// struct — verify, sbom, match — in the Flux style, each reading what the steps before it left.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner"
)

// pass is the state of one pass over an image.
type pass struct {
	scope imageScope
	sc    *scanner.Scanner
	prev  *assessment // the last assessment; nil on the first pass
	asked work        // work asked of this pass
	next  assessment  // what this pass concludes, starting from prev

	doc       *scanner.SBOM // the SBOM document, when this pass fetched it
	verified  bool          // the verify step ran
	newSBOM   bool          // the SBOM step got another SBOM than prev had
	started   time.Time
	problems  []error
	evicted   bool // the SBOM left the cache before it could be matched
	deferred  bool // a huge SBOM waits for a worker that may match huge SBOMs
	nextAsked work // work this pass's outcome asks of the next one
}

func newPass(scope imageScope, sc *scanner.Scanner, prev *assessment, asked work) *pass {
	p := &pass{scope: scope, sc: sc, prev: prev, asked: asked, started: time.Now()}
	if prev != nil {
		p.next = *prev
	}
	p.next.problems = nil
	return p
}

// step is one stage of a pass. An error aborts the pass (the context ended); problems of the
// image itself are recorded on the pass instead.
type step func(ctx context.Context, p *pass) error

// fail records a problem of the image.
func (p *pass) fail(err error) { p.problems = append(p.problems, err) }

// needsVerify reports whether the verification must run: never done, asked for, or made with
// other authorities than the scope's policies have now.
func (p *pass) needsVerify() bool {
	return p.asked.verify || p.prev == nil || p.prev.verification == nil || p.prev.verifyKey != p.scope.authorityKey
}

// verifyStep checks signatures, attestations and the base image against the union of the
// scope's authorities.
func (e *Engine) verifyStep(ctx context.Context, p *pass) error {
	if !p.needsVerify() {
		return nil
	}
	start := time.Now()
	v := p.sc.Verify(ctx, p.scope.image, p.scope.scannerPolicies())
	e.metrics.verifyDuration.Observe(time.Since(start).Seconds())
	if err := ctx.Err(); err != nil {
		return err
	}
	e.results.verified(p.scope.key)
	e.log.V(1).Info("verified", "image", p.scope.key.String(), "policies", len(p.scope.union), "state", v.Signature.State, "reason", v.Signature.Reason)
	p.next.verification, p.next.verifyKey, p.verified = &v, p.scope.authorityKey, true
	if v.Signature.State == scanner.Error {
		p.fail(fmt.Errorf("signature verification: %s", v.Signature.Reason))
	}
	return nil
}

// sbomStep obtains the SBOM after a verification (an attested SBOM may have appeared) or when
// none is known. A failed fetch keeps the SBOM the image had.
func (e *Engine) sbomStep(ctx context.Context, p *pass) error {
	if !p.verified && p.next.sbom != nil {
		return nil
	}
	res, err := p.sc.SBOM(ctx, p.scope.image, p.scope.scannerPolicies(), *p.next.verification)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		reason := res.Reason
		if reason == "" {
			reason = err.Error()
		}
		p.next.sbomReason = reason
		switch cls := scanner.Classify(err); {
		case cls == scanner.ErrorUnauthorized:
			p.fail(stalling(securityv1alpha1.ReasonRegistryAccessDenied, "registry refused access while fetching the SBOM: %s", reason))
		case cls == scanner.ErrorTransient:
			p.fail(fmt.Errorf("SBOM: %s", reason))
		case !errors.Is(err, scanner.ErrNoSBOM):
			// a manifest that is gone or malformed, a layer that is not a tar: the image cannot
			// be read, and retrying soon will not change that
			p.fail(stalling(securityv1alpha1.ReasonImageUnreadable, "the image cannot be read: %s", reason))
		}
		return nil
	}
	if old := p.next.sbom; old == nil || old.Digest != res.SBOM.Digest || old.Source != res.SBOM.Source {
		p.newSBOM = true
	}
	p.doc = res.SBOM
	meta := *res.SBOM
	meta.Document = nil // the cache holds it; keep memory per image small
	p.next.sbom, p.next.sbomReason = &meta, res.Reason
	return nil
}

// matchStep matches the SBOM against the vulnerability DB when it is new, when asked (the DB
// changed) or when the last match could not run.
func (e *Engine) matchStep(ctx context.Context, p *pass) error {
	defer p.noSBOM()
	if p.next.sbom == nil || !(p.asked.match || p.newSBOM || p.next.scan == nil) {
		return nil
	}
	release, ok := e.matcher.admit(p.next.sbom)
	if !ok {
		p.deferred, p.nextAsked.match = true, true
		return nil
	}
	defer release()
	defer func() { e.metrics.scanDuration.Observe(time.Since(p.started).Seconds()) }()
	res, evicted, err := e.matcher.match(ctx, p.scope.key.Digest, p.next.sbom, p.doc)
	switch {
	case evicted:
		// fetched again on the next pass through the SBOM step
		p.evicted, p.next.sbom = true, nil
		p.nextAsked.match = true
	case err != nil && ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, scanner.ErrNoDB):
		// not an error of this image: the DB subscription rematches once one is loaded
		p.next.dbWait = waiting(time.Minute, securityv1alpha1.ReasonDBNotLoaded, "vulnerability DB not loaded yet")
		p.next.scanReason = "vulnerability DB not loaded yet"
	case errors.Is(err, scanner.ErrStaleDB):
		p.next.dbWait = waiting(0, securityv1alpha1.ReasonDBStale, "%w", err)
		p.next.scanReason = err.Error()
	case err != nil:
		p.next.dbWait, p.next.scanReason = nil, err.Error()
		p.fail(fmt.Errorf("matching: %s", err.Error()))
	default:
		if h := hashScan(res); h != p.next.scanHash || p.next.scannedAt.IsZero() {
			p.next.scannedAt = res.ScannedAt
			p.next.scanHash = h
		}
		p.next.scan, p.next.scanReason, p.next.dbWait = res, "", nil
	}
	return nil
}

// noSBOM clears the scan of an image that has no SBOM: there is nothing it could describe.
func (p *pass) noSBOM() {
	if p.next.sbom == nil && !p.evicted {
		p.next.scan, p.next.scanHash, p.next.dbWait = nil, "", nil
		p.next.scanReason = "no SBOM: " + p.next.sbomReason
	}
}

// outcome is the assessment the pass stores and the work it asks of the next pass: a retried
// verification problem re-verifies, a DB that is not loaded yet rematches.
func (p *pass) outcome() (*assessment, work) {
	a := p.next
	a.problems = errors.Join(p.problems...)
	next := p.nextAsked
	if p.verified && kindOf(a.problems) == errGeneric {
		next.verify = true
	}
	if waitingFor(a.dbWait, securityv1alpha1.ReasonDBNotLoaded) {
		next.match = true
	}
	return &a, next
}

// waitingFor reports whether err is a WaitingError with the given reason.
func waitingFor(err error, reason string) bool {
	var w *WaitingError
	return errors.As(err, &w) && w.Reason == reason
}

// hashScan fingerprints what a scan found and against which DB, to keep scannedAt stable while
// nothing changed.
func hashScan(s *scanner.Scan) string {
	type f struct{ ID, Pkg, Sev string }
	var fs []f
	for _, x := range s.Findings {
		fs = append(fs, f{x.ID, x.Package, x.Severity})
	}
	sort.Slice(fs, func(i, j int) bool {
		if fs[i].ID != fs[j].ID {
			return fs[i].ID < fs[j].ID
		}
		return fs[i].Pkg < fs[j].Pkg
	})
	b, _ := json.Marshal(struct {
		F   []f
		DB  string
		Blt time.Time
	}{fs, s.DB.Checksum, s.DB.Built})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
