package controllers

// Report writing: the ledger of what was written, find/create/patch of ImageTrustReports
// (only when their content changed), and the events of each transition.

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner"
)

// Labels and field indexes on reports.
const (
	// LabelManagedBy marks reports written by imagetrust.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is LabelManagedBy's value.
	ManagedByValue = "imagetrust"
	// indexReportDigest indexes reports by spec.digest.
	indexReportDigest = "spec.digest"
	// indexReportScan indexes reports by the RegistryScans in spec.registryScans.
	indexReportScan = "spec.registryScans"
)

// reportWriter writes reports and remembers the content hash it last wrote (or found) for each.
type reportWriter struct {
	client      client.Client
	apiReader   client.Reader
	events      eventSink
	metrics     *engineMetrics
	clock       Clock
	maxFindings int
	refresh     time.Duration // Options.StatusRefreshInterval

	mu      sync.Mutex
	written map[reportKey]string
}

// lastWritten is the content hash last written or found for a report, "" when none.
func (w *reportWriter) lastWritten(k reportKey) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.written[k]
}

// has reports whether the report is known to exist.
func (w *reportWriter) has(k reportKey) bool { return w.lastWritten(k) != "" }

// forget drops a deleted report from the ledger and the metrics.
func (w *reportWriter) forget(k reportKey) {
	w.mu.Lock()
	delete(w.written, k)
	w.mu.Unlock()
	w.metrics.deleteReport(k)
}

// findReport returns the report for (namespace, repository, digest) from the cache. Reports of
// the same digest in other repositories (mirrors) are other images' reports.
func (w *reportWriter) findReport(ctx context.Context, k reportKey) (*securityv1alpha1.ImageTrustReport, error) {
	var list securityv1alpha1.ImageTrustReportList
	if err := w.client.List(ctx, &list, client.InNamespace(k.Namespace), client.MatchingFields{indexReportDigest: k.Digest}); err != nil {
		return nil, err
	}
	var mine []*securityv1alpha1.ImageTrustReport
	for i := range list.Items {
		if k.describes(&list.Items[i]) {
			mine = append(mine, &list.Items[i])
		}
	}
	if len(mine) == 0 {
		return nil, nil
	}
	sort.Slice(mine, func(i, j int) bool { return mine[i].CreationTimestamp.Before(&mine[j].CreationTimestamp) })
	return mine[0], nil
}

// stored returns the report as stored: from the cache, or from the API server when the cache
// has not seen the last write yet (or someone edited the report), so transitions are computed
// against what is really there.
func (w *reportWriter) stored(ctx context.Context, k reportKey) (*securityv1alpha1.ImageTrustReport, error) {
	existing, err := w.findReport(ctx, k)
	if err != nil || existing == nil {
		return existing, err
	}
	if last := w.lastWritten(k); last == "" || existing.Status.ContentHash == last {
		return existing, nil
	}
	var fresh securityv1alpha1.ImageTrustReport
	if err := w.apiReader.Get(ctx, client.ObjectKeyFromObject(existing), &fresh); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return &fresh, nil
}

// desired is a report's spec, owners and status (with conditions derived against the stored
// ones of generation gen) and the observation they came from.
type desired struct {
	spec   securityv1alpha1.ImageTrustReportSpec
	owners []metav1.OwnerReference
	status securityv1alpha1.ImageTrustReportStatus
	obs    observation
}

func (w *reportWriter) desire(in *reportInput, stored []metav1.Condition, gen int64) desired {
	d := desired{spec: buildSpec(in), status: buildStatus(in, w.maxFindings)}
	if len(in.view.workloads) == 0 {
		// Reports only a RegistryScan wants go away with the scan; a report pods also use
		// must not be garbage-collected under them, so it carries no owner.
		d.owners = in.view.owners
	}
	d.status.Conditions = append([]metav1.Condition(nil), stored...)
	d.obs = observe(in, &d.status)
	setReportConditions(&d.status.Conditions, d.obs, gen, w.clock.Now())
	d.status.ContentHash = contentHash(d.spec, d.owners, d.status)
	return d
}

// write creates or patches one report when its content changed, then emits events for the
// transitions between the stored and the new status.
func (w *reportWriter) write(ctx context.Context, in *reportInput) error {
	existing, err := w.stored(ctx, in.key)
	if err != nil {
		return err
	}
	var d desired
	if existing != nil {
		d = w.desire(in, existing.Status.Conditions, existing.Generation)
		if existing.Status.ContentHash == d.status.ContentHash && !timestampsStale(&existing.Status, &d.status, w.refresh) {
			w.markWritten(in, &d.status)
			return nil
		}
	} else {
		d = w.desire(in, nil, 0)
		if w.lastWritten(in.key) == d.status.ContentHash {
			return nil // written a moment ago; the cache has not caught up
		}
	}
	obj, old, err := w.ensure(ctx, in, existing, &d)
	if err != nil || obj == nil {
		return err
	}
	d.status.ObservedGeneration = obj.Generation
	for i := range d.status.Conditions {
		d.status.Conditions[i].ObservedGeneration = obj.Generation
	}
	before := obj.DeepCopy()
	obj.Status = d.status
	if err := w.client.Status().Patch(ctx, obj, client.MergeFrom(before)); err != nil {
		return err
	}
	w.markWritten(in, &d.status)
	w.emit(obj, in, notify(old, &d.status))
	return nil
}

// ensure makes the report object exist with the desired spec, owners and label, and returns it
// with its status before this write (nil for a new report). A nil object means an adopted
// report already holds the desired status.
func (w *reportWriter) ensure(ctx context.Context, in *reportInput, existing *securityv1alpha1.ImageTrustReport, d *desired) (*securityv1alpha1.ImageTrustReport, *securityv1alpha1.ImageTrustReportStatus, error) {
	if existing == nil {
		obj, err := w.createReport(ctx, in, d.spec, d.owners)
		if err != nil || obj.Status.ContentHash == "" {
			return obj, nil, err
		}
		// adopted a report another manager created: derive the conditions against its own
		*d = w.desire(in, obj.Status.Conditions, obj.Generation)
		if obj.Status.ContentHash == d.status.ContentHash {
			w.markWritten(in, &d.status)
			return nil, nil, nil
		}
		return obj, obj.Status.DeepCopy(), nil
	}
	obj := existing.DeepCopy()
	if equality.Semantic.DeepEqual(obj.Spec, d.spec) && ownersEqual(obj.OwnerReferences, d.owners) && obj.Labels[LabelManagedBy] == ManagedByValue {
		return obj, existing.Status.DeepCopy(), nil
	}
	before := obj.DeepCopy()
	obj.Spec, obj.OwnerReferences = d.spec, d.owners
	if obj.Labels == nil {
		obj.Labels = map[string]string{}
	}
	obj.Labels[LabelManagedBy] = ManagedByValue
	if err := w.client.Patch(ctx, obj, client.MergeFrom(before)); err != nil {
		return nil, nil, err
	}
	return obj, existing.Status.DeepCopy(), nil
}

func ownersEqual(a, b []metav1.OwnerReference) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].UID != b[i].UID || a[i].Name != b[i].Name || a[i].Kind != b[i].Kind {
			return false
		}
	}
	return true
}

// createReport creates the report, adopting an existing one of the same image (created by a
// previous manager whose cache entry has not arrived yet) and lengthening the name on a clash
// with a report of another image: the same digest in another repository with the same
// basename (a mirror, common), or, astronomically unlikely, another digest with the same prefix.
func (w *reportWriter) createReport(ctx context.Context, in *reportInput, spec securityv1alpha1.ImageTrustReportSpec, owners []metav1.OwnerReference) (*securityv1alpha1.ImageTrustReport, error) {
	for extra := 0; extra <= 52; extra += 4 {
		obj := &securityv1alpha1.ImageTrustReport{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: in.key.Namespace, Name: reportName(in.view.repo, in.key.Digest, extra),
				Labels: map[string]string{LabelManagedBy: ManagedByValue}, OwnerReferences: owners,
			},
			Spec: spec,
		}
		err := w.client.Create(ctx, obj)
		if err == nil {
			return obj, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, err
		}
		var cur securityv1alpha1.ImageTrustReport
		if err := w.apiReader.Get(ctx, client.ObjectKeyFromObject(obj), &cur); err != nil {
			return nil, err
		}
		if !in.key.describes(&cur) {
			continue
		}
		if !equality.Semantic.DeepEqual(cur.Spec, spec) || !ownersEqual(cur.OwnerReferences, owners) {
			before := cur.DeepCopy()
			cur.Spec, cur.OwnerReferences = spec, owners
			if err := w.client.Patch(ctx, &cur, client.MergeFrom(before)); err != nil {
				return nil, err
			}
		}
		return &cur, nil
	}
	return nil, fmt.Errorf("no free report name for %s", in.key)
}

func (w *reportWriter) markWritten(in *reportInput, st *securityv1alpha1.ImageTrustReportStatus) {
	w.mu.Lock()
	w.written[in.key] = st.ContentHash
	w.mu.Unlock()
	var sum *scanner.Summary
	if in.assessment.Scan != nil {
		s := in.assessment.Scan.Summary
		sum = &s
	}
	w.metrics.setReport(in.key, string(st.Policy.Verdict), string(st.Signature.State), sum)
}

// watchReports calls requeue when someone deletes or edits one of our reports, so the report
// comes back (or is corrected) without waiting for the next schedule, and requested for the
// request reports admission creates (including those that exist when the watch starts).
func (w *reportWriter) watchReports(ctx context.Context, c cache.Cache, requeue func(reportKey), requested func(admissionRequest, time.Time)) error {
	inf, err := c.GetInformer(ctx, &securityv1alpha1.ImageTrustReport{})
	if err != nil {
		return err
	}
	changed := func(obj interface{}, deleted bool) {
		if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		r, ok := obj.(*securityv1alpha1.ImageTrustReport)
		if !ok {
			return
		}
		k := reportKeyOf(r)
		if deleted {
			w.mu.Lock()
			delete(w.written, k)
			w.mu.Unlock()
		} else if r.Status.ContentHash == "" || w.lastWritten(k) == r.Status.ContentHash {
			return
		}
		requeue(k)
	}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj interface{}) {
			if r, ok := obj.(*securityv1alpha1.ImageTrustReport); ok {
				if req, ok := requestOf(r); ok {
					requested(req, r.CreationTimestamp.Time)
				}
			}
		},
		UpdateFunc: func(_, obj interface{}) { changed(obj, false) },
		DeleteFunc: func(obj interface{}) { changed(obj, true) },
	})
	return err
}
