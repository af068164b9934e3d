package controllers

import (
	"context"
	"errors"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
)

// CollectGarbage deletes reports whose image (repository and digest) no pod runs and no
// RegistryScan lists in their namespace, once that has been true for the grace period — and only when every workload and
// tag the report listed already has its replacement report. Reports this manager never saw
// wanted (left from before a restart) start their grace period when the manager started.
// It returns the number of reports deleted.
func (e *Engine) CollectGarbage(ctx context.Context) (int, error) {
	var list securityv1alpha1.ImageTrustReportList
	if err := e.client.List(ctx, &list, client.MatchingLabels{LabelManagedBy: ManagedByValue}); err != nil {
		return 0, err
	}
	now := e.clock.Now()
	deleted := 0
	var errs []error
	for i := range list.Items {
		r := &list.Items[i]
		k := reportKeyOf(r)
		e.mu.Lock()
		ent := e.images[k.image()]
		wanted := ent != nil && e.wantedInLocked(ent, k.Namespace)
		since, ok := e.unwanted[k]
		if !ok {
			since = e.startedAt
		}
		pending := !wanted && e.replacementPendingLocked(r)
		e.mu.Unlock()
		if wanted || now.Sub(since) < e.opts.ReportGracePeriod || pending {
			continue
		}
		uid := r.UID
		err := e.client.Delete(ctx, r, client.Preconditions{UID: &uid})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, err)
			continue
		}
		deleted++
		e.mu.Lock()
		delete(e.unwanted, k)
		delete(e.written, k)
		e.mu.Unlock()
		e.metrics.deleteReport(k)
	}
	e.forgetUnwanted(now)
	return deleted, errors.Join(errs...)
}

// replacementPendingLocked reports whether a workload the report lists now runs another image
// (another digest, or the same digest from another repository), or a tag of the report's
// repository now points at another digest, whose report has not been written yet: deleting now
// would leave a gap.
func (e *Engine) replacementPendingLocked(r *securityv1alpha1.ImageTrustReport) bool {
	ns := r.Namespace
	self := reportKeyOf(r).image()
	for _, w := range r.Spec.Workloads {
		for p, src := range e.pods {
			if p.Namespace != ns {
				continue
			}
			for _, u := range src.uses {
				if u.Workload.Kind == w.Kind && u.Workload.Name == w.Name && u.image() != self {
					if _, ok := e.written[reportKey{ns, u.Repository, u.Digest}]; !ok {
						return true
					}
				}
			}
		}
	}
	for _, t := range r.Spec.Tags {
		for s, src := range e.scans {
			if s.Namespace != ns {
				continue
			}
			for k, im := range src.images {
				if k == self || k.Repository != self.Repository {
					continue
				}
				for _, tag := range im.Tags {
					if tag == t {
						if _, ok := e.written[reportKey{ns, k.Repository, k.Digest}]; !ok {
							return true
						}
					}
				}
			}
		}
	}
	return false
}

// forgetUnwanted drops the memory of images no namespace wants any more once their grace period
// is over (their reports are gone or about to go); an image that comes back is assessed anew.
// The memoised match of a digest goes with the last of its images.
func (e *Engine) forgetUnwanted(now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for ik, ent := range e.images {
		if ent.wanted() {
			continue
		}
		keep := false
		for k, since := range e.unwanted {
			if k.image() == ik && now.Sub(since) < e.opts.ReportGracePeriod {
				keep = true
				break
			}
		}
		if !keep {
			delete(e.images, ik)
			for k := range e.unwanted {
				if k.image() == ik {
					delete(e.unwanted, k)
				}
			}
		}
	}
	live := map[string]bool{}
	for ik := range e.images {
		live[ik.Digest] = true
	}
	for d := range e.matches {
		if !live[d] {
			delete(e.matches, d)
		}
	}
}
