package controllers

import (
	"context"
	"errors"
	"sort"
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
)

// DefaultScanSchedule is the listing schedule of a RegistryScan that sets none.
const DefaultScanSchedule = "0 */6 * * *"

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
	// Pool reaches the registries, with the scan's credentials.
	Pool      *scannerPool
	Clock     Clock
	Scheduler *Scheduler
	// Kick receives an event when a scan's schedule comes due.
	Kick chan event.GenericEvent
	// OnTag, when set, is told the manifest digest each resolved tag points at.
	OnTag func(repository, tag, digest string)
	// StalledRetry is how long a stalled scan waits before it is tried again.
	StalledRetry time.Duration
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

// scanRun is one reconcile of a RegistryScan: the object, what the steps observed, and what
// they found out for the steps after them.
type scanRun struct {
	key   types.NamespacedName
	scan  *securityv1alpha1.RegistryScan
	obs   scanObservation
	now   time.Time
	sched cron.Schedule
	acc   *access
}

// scanStep is one step of a reconcile; done ends the reconcile early without an error.
type scanStep func(ctx context.Context, run *scanRun) (done bool, err error)

// Reconcile implements reconcile.Reconciler: fetch, then the steps in order — schedule, access,
// suspension, due, listing — and patch the status in a deferred step whatever happened.
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
	run := &scanRun{key: req.NamespacedName, scan: &scan, now: r.Clock.Now()}
	defer func() {
		run.obs.Err = retErr
		setScanConditions(&scan.Status.Conditions, run.obs, scan.Generation, run.now)
		if !equality.Semantic.DeepEqual(before.Status, scan.Status) {
			if err := r.Client.Status().Patch(ctx, &scan, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
				retErr = errors.Join(retErr, err)
			}
		}
		result, retErr = resultFor(retErr, r.StalledRetry)
	}()
	for _, step := range []scanStep{r.reconcileSchedule, r.reconcileAccess, r.reconcileSuspend, r.reconcileDue, r.reconcileListing} {
		if done, err := step(ctx, run); err != nil || done {
			return ctrl.Result{}, err
		}
	}
	return ctrl.Result{}, nil
}

// reconcileSchedule parses the schedule; a bad one stalls the scan.
func (r *RegistryScanReconciler) reconcileSchedule(_ context.Context, run *scanRun) (bool, error) {
	spec := string(run.scan.Spec.Schedule)
	if spec == "" {
		spec = DefaultScanSchedule
	}
	sched, err := cron.ParseStandard(spec)
	if err != nil {
		r.Scheduler.Remove(scheduleKey(run.key))
		run.scan.Status.NextScheduleTime = nil
		return true, stalling(securityv1alpha1.ReasonInvalidSchedule, "schedule %q: %w", spec, err)
	}
	run.sched = sched
	return false, nil
}

// reconcileAccess reads the scan's credentials and CA bundle. After a restart it first seeds
// the Engine with the images the scan's reports list, so they are not garbage-collected before
// the scan runs again — even when the credentials are broken now.
func (r *RegistryScanReconciler) reconcileAccess(ctx context.Context, run *scanRun) (bool, error) {
	spec := run.scan.Spec
	var credRef, caRef *localSecretRef
	if c := spec.CredentialsSecretRef; c != nil {
		credRef = &localSecretRef{Name: c.Name, Key: c.Key}
	}
	if c := spec.CABundleSecretRef; c != nil {
		caRef = &localSecretRef{Name: c.Name, Key: c.Key}
	}
	acc, err := scanAccess(ctx, r.APIReader, run.scan.Namespace, credRef, caRef, spec.Insecure, spec.Repositories)
	if err != nil && kindOf(err) != errStalling {
		return true, err
	}
	if !r.Engine.HasScan(run.key) {
		seedAcc := acc
		if seedAcc == nil {
			seedAcc = anonymous
		}
		if serr := r.seed(ctx, run.scan, seedAcc); serr != nil {
			return true, serr
		}
	}
	run.acc = acc
	return err != nil, err
}

// reconcileSuspend stops scheduled listing of a suspended scan; its reports are kept.
func (r *RegistryScanReconciler) reconcileSuspend(_ context.Context, run *scanRun) (bool, error) {
	if !run.scan.Spec.Suspend {
		return false, nil
	}
	run.obs.Suspended = true
	r.Scheduler.Remove(scheduleKey(run.key))
	run.scan.Status.NextScheduleTime = nil
	return true, nil
}

// reconcileDue arms the next run when the schedule has not come round yet.
func (r *RegistryScanReconciler) reconcileDue(_ context.Context, run *scanRun) (bool, error) {
	st := &run.scan.Status
	due, next := scanDue(st, run.scan.Generation, run.sched, run.now)
	if due {
		return false, nil
	}
	r.schedule(run.key, next)
	t := metav1.NewTime(next)
	st.NextScheduleTime = &t
	run.obs.TagsFound, run.obs.DigestsFound, run.obs.KeepReady = int(st.TagsFound), int(st.DigestsFound), true
	return true, nil
}

// reconcileListing lists the repositories once — one run per due reconcile, even when several
// ticks were missed while the manager was down — and hands the images to the Engine.
func (r *RegistryScanReconciler) reconcileListing(ctx context.Context, run *scanRun) (bool, error) {
	st := &run.scan.Status
	started := metav1.NewTime(run.now.Truncate(time.Second))
	st.LastScheduleTime = &started
	next := run.sched.Next(run.now)
	r.schedule(run.key, next)
	nt := metav1.NewTime(next)
	st.NextScheduleTime = &nt

	images, tagsFound, skipped, err := r.list(ctx, run.scan, run.acc)
	run.obs.Ran, run.obs.Skipped = true, skipped
	if err != nil {
		return true, err
	}
	r.Engine.SetScanImages(run.key, run.scan.UID, images, run.acc)
	digests := map[string]bool{}
	for _, im := range images {
		digests[im.Image.Digest] = true
	}
	run.obs.TagsFound, run.obs.DigestsFound = tagsFound, len(digests)
	st.LastSuccessfulTime = &started
	st.TagsFound, st.DigestsFound = int32(tagsFound), int32(len(digests))
	st.ObservedGeneration = run.scan.Generation
	return true, nil
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
	sc, err := r.Pool.get(acc)
	if err != nil {
		return nil, 0, nil, err
	}
	f := scan.Spec.TagFilter
	filter := scanner.TagFilter{Include: f.Include, Exclude: f.Exclude, Semver: f.Semver, Latest: int(f.Latest)}
	if err := scanner.ValidateTagFilter(filter); err != nil {
		return nil, 0, nil, stalling(securityv1alpha1.ReasonInvalidTagFilter, "tagFilter: %w", err)
	}
	type job struct{ repo, tag string }
	var jobs []job
	for _, repo := range scan.Spec.Repositories {
		kept, err := sc.ListTags(ctx, repo, filter)
		if err != nil {
			return nil, 0, nil, classifyRegistryError(err)
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
			switch cls := scanner.Classify(err); {
			case errors.Is(err, scanner.ErrPlatformNotFound), cls == scanner.ErrorNotFound, cls == scanner.ErrorNotAnImage:
				skipped = append(skipped, j.repo+":"+j.tag)
			case err != nil:
				errs = append(errs, err)
			default:
				for _, im := range imgs {
					images = append(images, ScanImage{Image: im, Tags: []string{j.tag}})
				}
				r.observeTag(j.repo, j.tag, imgs)
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

// observeTag tells OnTag the manifest digest a tag resolved to: the index's when it names one.
func (r *RegistryScanReconciler) observeTag(repo, tag string, imgs []scanner.Image) {
	if r.OnTag == nil || len(imgs) == 0 {
		return
	}
	d := imgs[0].Digest
	if imgs[0].IndexDigest != "" {
		d = imgs[0].IndexDigest
	}
	r.OnTag(imgs[0].Repository, tag, d)
}

// classifyRegistryError turns refusals a person must fix into stalling errors; everything else
// is retried with backoff.
func classifyRegistryError(err error) error {
	switch scanner.Classify(err) {
	case scanner.ErrorUnauthorized:
		return stalling(securityv1alpha1.ReasonRegistryAccessDenied, "registry refused access (check credentialsSecretRef): %w", err)
	case scanner.ErrorNotFound:
		return stalling(securityv1alpha1.ReasonRepositoryNotFound, "%w", err)
	}
	return err
}

// resultFor turns a typed error into the controller's result: stalling errors are tried again
// after stalled (Secrets are not watched: a Secret created later is noticed then), waiting errors
// after their delay; others are returned for exponential backoff.
func resultFor(err error, stalled time.Duration) (ctrl.Result, error) {
	switch kindOf(err) {
	case errNone:
		return ctrl.Result{}, nil
	case errStalling:
		return ctrl.Result{RequeueAfter: stalled}, nil
	case errWaiting:
		return ctrl.Result{RequeueAfter: requeueAfter(err)}, nil
	}
	return ctrl.Result{}, err
}
