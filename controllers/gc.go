package controllers

// Garbage collection: deleting reports whose image nothing wants any more, once their grace
// period is over and their replacements exist.

import (
	"context"
	"errors"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
)

// CollectGarbage deletes reports whose image (repository and digest) no pod runs and no
// RegistryScan lists in their namespace, once that has been true for the grace period — and only
// when every workload and tag the report listed already has its replacement report. Reports
// this manager never saw wanted (left from before a restart) start their grace period when the
// manager started. It returns the number of reports deleted.
func (e *Engine) CollectGarbage(ctx context.Context) (int, error) {
	var list securityv1alpha1.ImageTrustReportList
	if err := e.writer.client.List(ctx, &list, client.MatchingLabels{LabelManagedBy: ManagedByValue}); err != nil {
		return 0, err
	}
	now := e.opts.Clock.Now()
	deleted := 0
	var errs []error
	for i := range list.Items {
		r := &list.Items[i]
		if !e.demand.collectable(r, now, e.opts.ReportGracePeriod, e.writer.has) {
			continue
		}
		uid := r.UID
		if err := e.writer.client.Delete(ctx, r, client.Preconditions{UID: &uid}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, err)
			continue
		}
		deleted++
		k := reportKeyOf(r)
		e.demand.collected(k)
		e.writer.forget(k)
	}
	gone, live := e.demand.forget(now, e.opts.ReportGracePeriod)
	e.results.forget(gone)
	e.matcher.keepOnly(live)
	return deleted, errors.Join(errs...)
}

// armGC schedules CollectGarbage every GCInterval.
func (e *Engine) armGC(ctx context.Context) {
	e.sched.Set("gc", e.opts.Clock.Now().Add(e.opts.GCInterval), func() {
		go func() {
			if n, err := e.CollectGarbage(ctx); err != nil {
				e.log.Error(err, "deleting unwanted reports")
			} else if n > 0 {
				e.log.Info("deleted reports no workload or scan uses any more", "count", n)
			}
		}()
		e.armGC(ctx)
	})
}
