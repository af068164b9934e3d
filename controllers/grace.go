package controllers

// Grace periods: how long a report outlives the last source wanting its image in its
// namespace, and when the memory of an image nobody wants any more is dropped.

import (
	"time"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
)

// updateGraceLocked starts or stops the grace period of the image's report in ns.
func (d *demand) updateGraceLocked(w *want, ns string) {
	k := reportKey{ns, w.image.Repository, w.image.Digest}
	if d.wantedInLocked(w, ns) {
		delete(d.unwanted, k)
		return
	}
	if _, ok := d.unwanted[k]; !ok {
		d.unwanted[k] = d.clock.Now()
	}
}

func (d *demand) wantedInLocked(w *want, ns string) bool {
	for p := range w.pods {
		if p.Namespace == ns {
			return true
		}
	}
	for s := range w.scans {
		if s.Namespace == ns {
			return true
		}
	}
	_, ok := w.requests[ns]
	return ok
}

// wantedIn reports whether a source in the report's namespace wants its image.
func (d *demand) wantedIn(k reportKey) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.wants[k.image()]
	return w != nil && d.wantedInLocked(w, k.Namespace)
}

// collectable reports whether the report r may be deleted now: nothing in its namespace wants
// its image, that has been so for the grace period (reports this manager never saw wanted
// count from its start), and every workload and tag it listed already has its replacement
// report (written tells which reports exist).
func (d *demand) collectable(r *securityv1alpha1.ImageTrustReport, now time.Time, grace time.Duration, written func(reportKey) bool) bool {
	k := reportKeyOf(r)
	d.mu.Lock()
	defer d.mu.Unlock()
	if w := d.wants[k.image()]; w != nil && d.wantedInLocked(w, k.Namespace) {
		return false
	}
	since, ok := d.unwanted[k]
	if !ok {
		since = d.startedAt
	}
	return now.Sub(since) >= grace && !d.replacementPendingLocked(r, written)
}

// collected forgets the grace period of a deleted report.
func (d *demand) collected(k reportKey) {
	d.mu.Lock()
	delete(d.unwanted, k)
	d.mu.Unlock()
}

// replacementPendingLocked reports whether a workload the report lists now runs another image
// (another digest, or the same digest from another repository), or a tag of the report's
// repository now points at another digest, whose report has not been written yet: deleting now
// would leave a gap.
func (d *demand) replacementPendingLocked(r *securityv1alpha1.ImageTrustReport, written func(reportKey) bool) bool {
	ns := r.Namespace
	self := reportKeyOf(r).image()
	for _, w := range r.Spec.Workloads {
		for p, src := range d.pods {
			if p.Namespace != ns {
				continue
			}
			for _, u := range src.uses {
				if u.Workload.Kind == w.Kind && u.Workload.Name == w.Name && u.image() != self && !written(reportKey{ns, u.Repository, u.Digest}) {
					return true
				}
			}
		}
	}
	for _, t := range r.Spec.Tags {
		for s, src := range d.scans {
			if s.Namespace != ns {
				continue
			}
			for k, im := range src.images {
				if k == self || k.Repository != self.Repository {
					continue
				}
				for _, tag := range im.Tags {
					if tag == t && !written(reportKey{ns, k.Repository, k.Digest}) {
						return true
					}
				}
			}
		}
	}
	return false
}

// forget drops images no namespace wants any more once every grace period of theirs is over
// (their reports are gone or about to go). It returns the forgotten images and the digests
// still known, so the results and match memos can follow.
func (d *demand) forget(now time.Time, grace time.Duration) (gone []imageKey, live map[string]bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.expireRequestsLocked(now, grace)
	for ik, w := range d.wants {
		if w.wanted() {
			continue
		}
		keep := false
		for k, since := range d.unwanted {
			if k.image() == ik && now.Sub(since) < grace {
				keep = true
				break
			}
		}
		if keep {
			continue
		}
		delete(d.wants, ik)
		gone = append(gone, ik)
		for k := range d.unwanted {
			if k.image() == ik {
				delete(d.unwanted, k)
			}
		}
	}
	live = map[string]bool{}
	for ik := range d.wants {
		live[ik.Digest] = true
	}
	return gone, live
}

// expireRequestsLocked ends admission's requests older than the grace period: their reports
// then age out like any other unless a pod or scan wants the image by then.
func (d *demand) expireRequestsLocked(now time.Time, grace time.Duration) {
	for _, w := range d.wants {
		for ns, r := range w.requests {
			if now.Sub(r.at) >= grace {
				delete(w.requests, ns)
				d.updateGraceLocked(w, ns)
			}
		}
	}
}
