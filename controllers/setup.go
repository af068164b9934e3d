// Package controllers runs imagetrust in a cluster: it watches pods, RegistryScans and
// ImageTrustPolicies, drives the scanner library through one work queue keyed by image
// (repository and digest),
// and writes ImageTrustReports, events and metrics. No scanning logic lives here; everything
// about images is the scanner package's business.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner/registry"
	"github.com/imagetrust/imagetrust/scanner/sbom"
	"github.com/imagetrust/imagetrust/scanner/vulndb"
)

// Reports and events. Secrets are read (get) only where a RegistryScan or a
// policy references them, but the controllers watch Secret metadata (list/watch, no data is
// cached) so that a Secret created after the object that needs it un-stalls the object.
//
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=security.imagetrust.dev,resources=imagetrustreports,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=security.imagetrust.dev,resources=imagetrustreports/status,verbs=get;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
//
// Events go through the events.k8s.io/v1 API only. The leader-election Lease (and its core
// events) are covered by the namespaced leader-election Role
// (config/rbac/leader_election_role.yaml), not by this ClusterRole.

// Options configures the controllers; cmd/imagetrust's manager flags fill it.
type Options struct {
	// Concurrency is the number of digest workers (default 2).
	Concurrency int
	// PodConcurrency is the number of pod reconcilers (default 4).
	PodConcurrency int
	// MaxFindings bounds a report's top findings (default 50, at most api MaxReportFindings).
	MaxFindings int
	// ReportGracePeriod is how long a report outlives the last pod or scan wanting its digest
	// (default 1h).
	ReportGracePeriod time.Duration
	// GCInterval is how often unwanted reports are looked for (default min(grace/2, 10m)).
	GCInterval time.Duration
	// StatusRefreshInterval is the longest a report's checkedAt/scannedAt lag the last
	// verification when nothing else changed (default 24h): timestamps alone never cause more
	// writes than this.
	StatusRefreshInterval time.Duration
	// Jitter spreads scheduled re-verifications over [0, Jitter) (default 30s).
	Jitter time.Duration
	// RetryBaseDelay and RetryMaxDelay bound the backoff of digests whose assessment failed
	// transiently (default 2s and 10m).
	RetryBaseDelay, RetryMaxDelay time.Duration
	// SchedulerInterval is how often the schedule clock is polled (default 1s).
	SchedulerInterval time.Duration
	// DefaultPlatform picks the platform of a multi-arch image for a pod that has not pulled it
	// yet (default linux/amd64).
	DefaultPlatform string
	// Registry are the base registry client options (rate limits, insecure hosts). Observe is
	// chained after the metrics hook.
	Registry registry.Options
	// DB is the vulnerability DB manager (required).
	DB *vulndb.Manager
	// DBSource configures loading and updating DB.
	DBSource DBOptions
	// Cache is the SBOM cache (required: rematching without registry traffic depends on it).
	Cache *sbom.Cache
	// Generator overrides the Syft SBOM generator (nil: the scanner's default).
	Generator sbom.Source
	// Clock defaults to the wall clock.
	Clock Clock
	// Events overrides the manager's event recorder.
	Events eventSink
	// SkipNameValidation allows several managers with these controllers in one process (tests).
	SkipNameValidation bool
}

func (o *Options) defaults() error {
	if o.DB == nil {
		return errors.New("controllers: Options.DB is required")
	}
	if o.Cache == nil {
		return errors.New("controllers: Options.Cache is required")
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 2
	}
	if o.PodConcurrency <= 0 {
		o.PodConcurrency = 4
	}
	if o.MaxFindings <= 0 {
		o.MaxFindings = 50
	}
	if o.MaxFindings > securityv1alpha1.MaxReportFindings {
		o.MaxFindings = securityv1alpha1.MaxReportFindings
	}
	if o.ReportGracePeriod <= 0 {
		o.ReportGracePeriod = time.Hour
	}
	if o.GCInterval <= 0 {
		o.GCInterval = min(o.ReportGracePeriod/2, 10*time.Minute)
	}
	if o.StatusRefreshInterval <= 0 {
		o.StatusRefreshInterval = 24 * time.Hour
	}
	if o.Jitter < 0 {
		o.Jitter = 0
	}
	if o.RetryBaseDelay <= 0 {
		o.RetryBaseDelay = 2 * time.Second
	}
	if o.RetryMaxDelay <= 0 {
		o.RetryMaxDelay = 10 * time.Minute
	}
	if o.DefaultPlatform == "" {
		o.DefaultPlatform = "linux/amd64"
	}
	if o.Clock == nil {
		o.Clock = RealClock{}
	}
	return nil
}

// CacheOptions are the manager cache options the controllers need: pods trimmed to the fields
// read (trimPod) and managed fields stripped from everything.
func CacheOptions() cache.Options {
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}: {Transform: trimPod},
		},
	}
}

// Controllers are the pieces Setup wired, for the manager command and tests.
type Controllers struct {
	Engine        *Engine
	Scheduler     *Scheduler
	RegistryScans *RegistryScanReconciler
	Policies      *PolicyReconciler
	db            *dbRunner
}

// CheckDBArchive checks the DB archive file for changes now, as its poll job does.
func (c *Controllers) CheckDBArchive(ctx context.Context) { c.db.checkArchive(ctx) }

// Setup adds the controllers to mgr. The manager must have been created with CacheOptions.
func Setup(ctx context.Context, mgr manager.Manager, opts Options) (*Controllers, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	log := ctrl.Log.WithName("imagetrust")
	if err := setupIndexes(ctx, mgr); err != nil {
		return nil, err
	}
	regOpts := opts.Registry
	observe := regOpts.Observe
	regOpts.Observe = func(host, method string, code int, d time.Duration) {
		ObserveRegistryRequest(host, method, code, d)
		if observe != nil {
			observe(host, method, code, d)
		}
	}
	sched := NewScheduler(opts.Clock, opts.SchedulerInterval)
	pool := newScannerPool(regOpts, opts.DB, opts.Cache, opts.MaxFindings, opts.Clock.Now)
	pool.generator = opts.Generator
	events := opts.Events
	if events == nil {
		events = mgr.GetEventRecorder("imagetrust")
	}
	engine := newEngine(mgr.GetClient(), mgr.GetAPIReader(), events, opts, sched, pool, log.WithName("engine"))
	db := newDBRunner(opts.DB, opts.DBSource, engine, sched, opts.Clock, log.WithName("vulndb"))
	ctrls := &Controllers{Engine: engine, Scheduler: sched, db: db}

	ctrlOpts := func(workers int) controller.Options {
		o := controller.Options{MaxConcurrentReconciles: workers}
		if opts.SkipNameValidation {
			o.SkipNameValidation = ptr.To(true)
		}
		return o
	}

	pods := &PodReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Engine: engine}
	if err := ctrl.NewControllerManagedBy(mgr).Named("pod").For(&corev1.Pod{}).
		WithOptions(ctrlOpts(opts.PodConcurrency)).Complete(pods); err != nil {
		return nil, err
	}
	nss := &NamespaceReconciler{Client: mgr.GetClient(), Engine: engine}
	if err := ctrl.NewControllerManagedBy(mgr).Named("namespace").For(&corev1.Namespace{}, builder.OnlyMetadata).
		WithOptions(ctrlOpts(1)).Complete(nss); err != nil {
		return nil, err
	}

	scans := &RegistryScanReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Engine: engine,
		Clock: opts.Clock, Scheduler: sched, Kick: make(chan event.GenericEvent, 64)}
	ctrls.RegistryScans = scans
	if err := ctrl.NewControllerManagedBy(mgr).Named("registryscan").
		For(&securityv1alpha1.RegistryScan{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(secretToScans(mgr.GetClient()))).
		WatchesRawSource(source.Channel(scans.Kick, &handler.EnqueueRequestForObject{})).
		WithOptions(ctrlOpts(2)).Complete(scans); err != nil {
		return nil, err
	}

	pols := &PolicyReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Engine: engine,
		Clock: opts.Clock, Scheduler: sched, Kick: make(chan event.GenericEvent, 64)}
	ctrls.Policies = pols
	if err := ctrl.NewControllerManagedBy(mgr).Named("imagetrustpolicy").
		For(&securityv1alpha1.ImageTrustPolicy{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(secretToPolicies(mgr.GetClient()))).
		WatchesRawSource(source.Channel(pols.Kick, &handler.EnqueueRequestForObject{})).
		WithOptions(ctrlOpts(1)).Complete(pols); err != nil {
		return nil, err
	}

	// Before the first digest is worked on: the DB load has been attempted, every policy is
	// compiled and namespace labels are known, so startup does not assess everything twice.
	engine.beforeStart = func(ctx context.Context) error {
		select {
		case <-db.initialized:
		case <-ctx.Done():
			return ctx.Err()
		}
		if err := pols.loadAll(ctx); err != nil {
			return err
		}
		if err := engine.loadNamespaces(ctx); err != nil {
			return err
		}
		return engine.watchReports(ctx, mgr.GetCache())
	}

	for _, r := range []manager.Runnable{sched, engine, db} {
		if err := mgr.Add(r); err != nil {
			return nil, err
		}
	}
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		engine.armGC(ctx)
		<-ctx.Done()
		return nil
	})); err != nil {
		return nil, err
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("vulndb", func(*http.Request) error {
		if st := opts.DB.Status(); !st.Loaded() {
			if st.Err != "" {
				return fmt.Errorf("vulnerability DB not loaded: %s", st.Err)
			}
			return errors.New("vulnerability DB not loaded")
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("caches", func(req *http.Request) error {
		c, cancel := context.WithTimeout(req.Context(), time.Second)
		defer cancel()
		if !mgr.GetCache().WaitForCacheSync(c) {
			return errors.New("informer caches not synced")
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return ctrls, nil
}

func setupIndexes(ctx context.Context, mgr manager.Manager) error {
	fi := mgr.GetFieldIndexer()
	if err := fi.IndexField(ctx, &securityv1alpha1.ImageTrustReport{}, indexReportDigest, func(o client.Object) []string {
		return []string{o.(*securityv1alpha1.ImageTrustReport).Spec.Digest}
	}); err != nil {
		return err
	}
	if err := fi.IndexField(ctx, &securityv1alpha1.ImageTrustReport{}, indexReportScan, func(o client.Object) []string {
		return o.(*securityv1alpha1.ImageTrustReport).Spec.RegistryScans
	}); err != nil {
		return err
	}
	if err := fi.IndexField(ctx, &securityv1alpha1.RegistryScan{}, indexScanSecrets, func(o client.Object) []string {
		s := o.(*securityv1alpha1.RegistryScan)
		var out []string
		if s.Spec.CredentialsSecretRef != nil {
			out = append(out, s.Spec.CredentialsSecretRef.Name)
		}
		if s.Spec.CABundleSecretRef != nil {
			out = append(out, s.Spec.CABundleSecretRef.Name)
		}
		return out
	}); err != nil {
		return err
	}
	return fi.IndexField(ctx, &securityv1alpha1.ImageTrustPolicy{}, indexPolicySecrets, func(o client.Object) []string {
		var out []string
		for _, a := range o.(*securityv1alpha1.ImageTrustPolicy).Spec.Authorities {
			if a.Key != nil && a.Key.SecretRef != nil {
				out = append(out, a.Key.SecretRef.Namespace+"/"+a.Key.SecretRef.Name)
			}
		}
		return out
	})
}

// secretToScans maps a Secret to the RegistryScans in its namespace that reference it.
func secretToScans(c client.Client) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		var list securityv1alpha1.RegistryScanList
		if err := c.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{indexScanSecrets: o.GetName()}); err != nil {
			return nil
		}
		out := make([]reconcile.Request, 0, len(list.Items))
		for _, s := range list.Items {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: s.Namespace, Name: s.Name}})
		}
		return out
	}
}

// secretToPolicies maps a Secret to the policies whose keys it holds.
func secretToPolicies(c client.Client) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		var list securityv1alpha1.ImageTrustPolicyList
		if err := c.List(ctx, &list, client.MatchingFields{indexPolicySecrets: o.GetNamespace() + "/" + o.GetName()}); err != nil {
			return nil
		}
		out := make([]reconcile.Request, 0, len(list.Items))
		for _, p := range list.Items {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: p.Name}})
		}
		return out
	}
}

// loadAll compiles every policy and installs them at once.
func (r *PolicyReconciler) loadAll(ctx context.Context) error {
	var list securityv1alpha1.ImageTrustPolicyList
	if err := r.Client.List(ctx, &list); err != nil {
		return err
	}
	compiled := map[string]*compiledPolicy{}
	for i := range list.Items {
		cp, err := compilePolicy(ctx, r.APIReader, &list.Items[i])
		if err != nil {
			return err
		}
		compiled[cp.Name] = cp
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.compiled == nil {
		r.compiled, r.lastVerified = map[string]*compiledPolicy{}, map[string]time.Time{}
	}
	for k, v := range compiled {
		if _, ok := r.compiled[k]; !ok {
			r.compiled[k] = v
		}
	}
	r.install()
	return nil
}

// loadNamespaces records every namespace's labels, through the same metadata-only informer
// the namespace controller uses.
func (e *Engine) loadNamespaces(ctx context.Context) error {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NamespaceList"))
	if err := e.client.List(ctx, list); err != nil {
		return err
	}
	for _, ns := range list.Items {
		e.SetNamespaceLabels(ns.Name, nonNil(ns.Labels))
	}
	return nil
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// watchReports requeues an image when someone deletes or edits one of its reports, so the
// report comes back (or is corrected) without waiting for the next schedule.
func (e *Engine) watchReports(ctx context.Context, c cache.Cache) error {
	inf, err := c.GetInformer(ctx, &securityv1alpha1.ImageTrustReport{})
	if err != nil {
		return err
	}
	requeue := func(obj interface{}, deleted bool) {
		if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		r, ok := obj.(*securityv1alpha1.ImageTrustReport)
		if !ok {
			return
		}
		k := reportKeyOf(r)
		e.mu.Lock()
		ent := e.images[k.image()]
		wanted := ent != nil && e.wantedInLocked(ent, k.Namespace)
		if deleted {
			delete(e.written, k)
		} else if e.written[k] == r.Status.ContentHash || r.Status.ContentHash == "" {
			wanted = false
		}
		e.mu.Unlock()
		if wanted {
			e.enqueue(k.image())
		}
	}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, obj interface{}) { requeue(obj, false) },
		DeleteFunc: func(obj interface{}) { requeue(obj, true) },
	})
	return err
}

// armGC schedules CollectGarbage every GCInterval.
func (e *Engine) armGC(ctx context.Context) {
	e.sched.Set("gc", e.clock.Now().Add(e.opts.GCInterval), func() {
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
