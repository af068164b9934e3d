package controllers

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner"
	"github.com/imagetrust/imagetrust/scanner/registry"
)

// DefaultScanSchedule is the listing schedule of a RegistryScan that sets none.
const DefaultScanSchedule = "0 */6 * * *"

// indexScanSecrets indexes RegistryScans by the names of the Secrets they reference.
const indexScanSecrets = "spec.secretRefs"

// resolveParallelism bounds concurrent tag resolutions of one scan run; the registry client's
// per-host limits apply on top.
const resolveParallelism = 4

// +kubebuilder:rbac:groups=security.imagetrust.dev,resources=registryscans,verbs=get;list;watch
// +kubebuilder:rbac:groups=security.imagetrust.dev,resources=registryscans/status,verbs=get;patch

// RegistryScanReconciler lists a RegistryScan's repositories on its cron schedule and hands the
// digests found to the Engine.
type RegistryScanReconciler struct {
	Client    client.Client
	APIReader client.Reader
	Engine    *Engine
	Clock     Clock
	Scheduler *Scheduler
	// Kick receives an event when a scan's schedule comes due.
	Kick chan event.GenericEvent
}

// scanObservation is what a reconcile saw; the conditions are derived from it.
type scanObservation struct {
	Suspended    bool
	Ran          bool
	Err          error
	TagsFound    int
	DigestsFound int
	Skipped      []string // tags without a requested platform, or gone before they resolved
	// KeepReady leaves a True Ready condition as the last run wrote it (no run happened now).
	KeepReady bool
}

func scheduleKey(k types.NamespacedName) string { return "registryscan/" + k.String() }

// Reconcile implements reconcile.Reconciler: fetch, decide whether the schedule is due, list,
// and patch the status in a deferred step whatever happened.
func (r *RegistryScanReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	var scan securityv1alpha1.RegistryScan
	if err := r.Client.Get(ctx, req.NamespacedName, &scan); err != nil {
		if apierrors.IsNotFound(err) {
			r.Engine.RemoveScan(req.NamespacedName)
			r.Scheduler.Remove(scheduleKey(req.NamespacedName))
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	before := scan.DeepCopy()
	obs := scanObservation{}
	now := r.Clock.Now()
	defer func() {
		obs.Err = retErr
		setScanConditions(&scan.Status.Conditions, obs, scan.Generation, now)
		if !equality.Semantic.DeepEqual(before.Status, scan.Status) {
			if err := r.Client.Status().Patch(ctx, &scan, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
				retErr = errors.Join(retErr, err)
			}
		}
		result, retErr = resultFor(retErr)
	}()

	spec := string(scan.Spec.Schedule)
	if spec == "" {
		spec = DefaultScanSchedule
	}
	sched, err := cron.ParseStandard(spec)
	if err != nil {
		r.Scheduler.Remove(scheduleKey(req.NamespacedName))
		scan.Status.NextScheduleTime = nil
		return ctrl.Result{}, stalling("InvalidSchedule", "schedule %q: %v", spec, err)
	}

	var credRef, caRef *localSecretRef
	if c := scan.Spec.CredentialsSecretRef; c != nil {
		credRef = &localSecretRef{Name: c.Name, Key: c.Key}
	}
	if c := scan.Spec.CABundleSecretRef; c != nil {
		caRef = &localSecretRef{Name: c.Name, Key: c.Key}
	}
	acc, accErr := scanAccess(ctx, r.APIReader, scan.Namespace, credRef, caRef, scan.Spec.Insecure, scan.Spec.Repositories)
	if accErr != nil && kindOf(accErr) != errStalling {
		return ctrl.Result{}, accErr
	}
	if !r.Engine.HasScan(req.NamespacedName) {
		// After a restart: keep what the scan listed last time (its reports) wanted until it
		// runs again, so reports are not garbage-collected in between.
		seedAcc := acc
		if seedAcc == nil {
			seedAcc = anonymous
		}
		if err := r.seed(ctx, &scan, seedAcc); err != nil {
			return ctrl.Result{}, err
		}
	}
	if accErr != nil {
		return ctrl.Result{}, accErr
	}

	if scan.Spec.Suspend {
		obs.Suspended = true
		r.Scheduler.Remove(scheduleKey(req.NamespacedName))
		scan.Status.NextScheduleTime = nil
		return ctrl.Result{}, nil
	}

	if due, next := scanDue(&scan.Status, scan.Generation, sched, now); !due {
		r.schedule(req.NamespacedName, next)
		t := metav1.NewTime(next)
		scan.Status.NextScheduleTime = &t
		obs.TagsFound, obs.DigestsFound = int(scan.Status.TagsFound), int(scan.Status.DigestsFound)
		obs.KeepReady = true
		return ctrl.Result{}, nil
	}

	// One run per due reconcile, even when several ticks were missed while the manager was down.
	started := metav1.NewTime(now.Truncate(time.Second))
	scan.Status.LastScheduleTime = &started
	next := sched.Next(now)
	r.schedule(req.NamespacedName, next)
	nt := metav1.NewTime(next)
	scan.Status.NextScheduleTime = &nt

	images, tagsFound, skipped, err := r.list(ctx, &scan, acc)
	obs.Ran, obs.Skipped = true, skipped
	if err != nil {
		return ctrl.Result{}, err
	}
	r.Engine.SetScanImages(req.NamespacedName, scan.UID, images, acc)
	digests := map[string]bool{}
	for _, im := range images {
		digests[im.Image.Digest] = true
	}
	obs.TagsFound, obs.DigestsFound = tagsFound, len(digests)
	scan.Status.LastSuccessfulTime = &started
	scan.Status.TagsFound = int32(tagsFound)
	scan.Status.DigestsFound = int32(len(digests))
	scan.Status.ObservedGeneration = scan.Generation
	return ctrl.Result{}, nil
}

// scanDue decides whether a scan lists now: it never ran, its last run failed, its spec changed,
// or its schedule came round. However many ticks were missed (the manager was down), the answer
// is one run now, and the next tick counts from it — like a CronJob's startingDeadline. When not
// due, next is when it will be.
func scanDue(st *securityv1alpha1.RegistryScanStatus, generation int64, sched cron.Schedule, now time.Time) (bool, time.Time) {
	last, lastOK := st.LastScheduleTime, st.LastSuccessfulTime
	if last == nil || lastOK == nil || lastOK.Before(last) || st.ObservedGeneration != generation {
		return true, time.Time{}
	}
	next := sched.Next(last.Time)
	return !next.After(now), next
}

func (r *RegistryScanReconciler) schedule(k types.NamespacedName, at time.Time) {
	r.Scheduler.Set(scheduleKey(k), at, func() {
		ev := event.GenericEvent{Object: &securityv1alpha1.RegistryScan{ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name}}}
		go func() { r.Kick <- ev }()
	})
}

// Trigger queues a reconcile of the scan, as its schedule coming due does.
func (r *RegistryScanReconciler) Trigger(k types.NamespacedName) {
	r.Kick <- event.GenericEvent{Object: &securityv1alpha1.RegistryScan{ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name}}}
}

// seed hands the Engine the digests of the scan's existing reports.
func (r *RegistryScanReconciler) seed(ctx context.Context, scan *securityv1alpha1.RegistryScan, acc *access) error {
	var list securityv1alpha1.ImageTrustReportList
	if err := r.Client.List(ctx, &list, client.InNamespace(scan.Namespace), client.MatchingFields{indexReportScan: scan.Name}); err != nil {
		return err
	}
	var images []ScanImage
	for _, rep := range list.Items {
		images = append(images, ScanImage{
			Image: scanner.Image{Repository: rep.Spec.Image, Digest: rep.Spec.Digest, Platform: rep.Spec.Platform, IndexDigest: rep.Spec.IndexDigest},
			Tags:  rep.Spec.Tags,
		})
	}
	r.Engine.SetScanImages(types.NamespacedName{Namespace: scan.Namespace, Name: scan.Name}, scan.UID, images, acc)
	return nil
}

// list lists, filters and resolves every repository's tags. Any error fails the whole run so
// the Engine keeps the previous run's digests (a flaky registry must not drop reports).
func (r *RegistryScanReconciler) list(ctx context.Context, scan *securityv1alpha1.RegistryScan, acc *access) ([]ScanImage, int, []string, error) {
	rc, err := r.Engine.pool.registryFor(acc)
	if err != nil {
		return nil, 0, nil, err
	}
	sc, err := r.Engine.pool.get(acc)
	if err != nil {
		return nil, 0, nil, err
	}
	f := scan.Spec.TagFilter
	filter := registry.TagFilter{Include: f.Include, Exclude: f.Exclude, Semver: f.Semver, Latest: int(f.Latest)}
	if _, err := registry.FilterTags(nil, filter); err != nil {
		return nil, 0, nil, stalling("InvalidTagFilter", "tagFilter: %v", err)
	}
	type job struct{ repo, tag string }
	var jobs []job
	for _, repo := range scan.Spec.Repositories {
		tags, err := rc.ListTags(ctx, repo)
		if err != nil {
			return nil, 0, nil, classifyRegistryError(err)
		}
		kept, err := registry.FilterTags(tags, filter)
		if err != nil {
			return nil, 0, nil, stalling("InvalidTagFilter", "tagFilter: %v", err)
		}
		for _, t := range kept {
			jobs = append(jobs, job{repo, t})
		}
	}

	var (
		mu      sync.Mutex
		images  []ScanImage
		skipped []string
		errs    []error
		wg      sync.WaitGroup
		sem     = make(chan struct{}, resolveParallelism)
	)
	for _, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			imgs, err := sc.Resolve(ctx, j.repo+":"+j.tag, scan.Spec.Platforms)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, registry.ErrPlatformNotFound), err != nil && registry.IsNotFound(err):
				skipped = append(skipped, j.repo+":"+j.tag)
			case err != nil:
				errs = append(errs, err)
			default:
				for _, im := range imgs {
					images = append(images, ScanImage{Image: im, Tags: []string{j.tag}})
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, 0, nil, classifyRegistryError(err)
	}
	sort.Strings(skipped)
	sort.Slice(images, func(i, j int) bool {
		if images[i].Image.Digest != images[j].Image.Digest {
			return images[i].Image.Digest < images[j].Image.Digest
		}
		if images[i].Image.Repository != images[j].Image.Repository {
			return images[i].Image.Repository < images[j].Image.Repository
		}
		return images[i].Tags[0] < images[j].Tags[0]
	})
	return images, len(jobs), skipped, nil
}

// classifyRegistryError turns refusals a person must fix into stalling errors; everything else
// is retried with backoff.
func classifyRegistryError(err error) error {
	msg := registry.SanitizeText(err.Error())
	switch {
	case registry.IsUnauthorized(err):
		return stalling("RegistryAccessDenied", "registry refused access (check credentialsSecretRef): %s", msg)
	case registry.IsNotFound(err):
		return stalling("RepositoryNotFound", "%s", msg)
	}
	return errors.New(msg)
}

// setScanConditions derives a RegistryScan's conditions from the observation.
func setScanConditions(conds *[]metav1.Condition, o scanObservation, gen int64, now time.Time) {
	var st *StallingError
	switch {
	case errors.As(o.Err, &st):
		setCondition(conds, securityv1alpha1.ConditionStalled, metav1.ConditionTrue, st.Reason, st.Message, gen, now)
		removeCondition(conds, securityv1alpha1.ConditionReconciling)
		setCondition(conds, securityv1alpha1.ConditionReady, metav1.ConditionFalse, st.Reason, st.Message, gen, now)
	case o.Err != nil:
		msg := registry.SanitizeText(o.Err.Error())
		removeCondition(conds, securityv1alpha1.ConditionStalled)
		setCondition(conds, securityv1alpha1.ConditionReconciling, metav1.ConditionTrue, "ProgressingWithRetry", msg, gen, now)
		setCondition(conds, securityv1alpha1.ConditionReady, metav1.ConditionFalse, "ListingFailed", msg, gen, now)
	default:
		removeCondition(conds, securityv1alpha1.ConditionStalled)
		removeCondition(conds, securityv1alpha1.ConditionReconciling)
		if o.KeepReady && conditionIs(*conds, securityv1alpha1.ConditionReady, metav1.ConditionTrue, "Succeeded") {
			break
		}
		if o.Suspended {
			setCondition(conds, securityv1alpha1.ConditionReady, metav1.ConditionTrue, "Suspended", "scheduled listing is suspended; existing reports are kept", gen, now)
		} else {
			msg := fmt.Sprintf("%d tags, %d digests", o.TagsFound, o.DigestsFound)
			if len(o.Skipped) > 0 {
				shown := o.Skipped
				if len(shown) > 5 {
					shown = shown[:5]
				}
				msg += fmt.Sprintf("; %d tags skipped (requested platform missing or tag gone): %s", len(o.Skipped), strings.Join(shown, ", "))
			}
			setCondition(conds, securityv1alpha1.ConditionReady, metav1.ConditionTrue, "Succeeded", msg, gen, now)
		}
	}
	sort.Slice(*conds, func(i, j int) bool { return (*conds)[i].Type < (*conds)[j].Type })
}

// resultFor turns a typed error into the controller's result: stalling errors are not retried
// (a watch brings the object back when the user fixes it), waiting errors are requeued after
// their delay, others are returned for exponential backoff.
func resultFor(err error) (ctrl.Result, error) {
	switch kindOf(err) {
	case errNone, errStalling:
		return ctrl.Result{}, nil
	case errWaiting:
		var w *WaitingError
		errors.As(err, &w)
		return ctrl.Result{RequeueAfter: w.RequeueAfter}, nil
	}
	return ctrl.Result{}, err
}

func conditionIs(conds []metav1.Condition, typ string, status metav1.ConditionStatus, reason string) bool {
	for _, c := range conds {
		if c.Type == typ {
			return c.Status == status && c.Reason == reason
		}
	}
	return false
}
