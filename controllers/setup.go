// Package controllers runs imagetrust in a cluster: it translates pods, RegistryScans,
// namespaces and ImageTrustPolicies into calls on the scanner library's front door (package
// scanner), through one work queue keyed by image (repository and digest), and writes
// ImageTrustReports, events and metrics. Verifying, fetching SBOMs, matching and judging are
// the scanner's business; this package decides what is wanted, when, and what to write.
//
// The parts: demand (what is wanted, handed to each pass as an imageScope), the results store
// and the pass (verify → sbom → match → commit), the match memo and fleet rematches, report
// status (pure builders) and report writing (ledger, create/patch, GC, events). This file wires
// them into a manager.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
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
	"sigs.k8s.io/controller-runtime/pkg/source"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner"
)

// Reports and events. Secrets are read with direct gets through the API reader, only where a
// RegistryScan, a policy or a pod's imagePullSecrets names them: the manager never lists or
// watches Secrets, so its cache holds none. A Secret created after the object that needs it is
// picked up when the stalled object is retried (StalledRetryInterval).
//
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
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
	// StalledRetryInterval is how long something a person must fix waits before it is tried
	// again (default 5m): a missing Secret, refused credentials, an image that cannot be read.
	// Secrets are not watched, so this is also how soon a Secret created later is noticed.
	StalledRetryInterval time.Duration
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
	Registry scanner.RegistryOptions
	// DB is the vulnerability DB manager (required).
	DB *scanner.DB
	// DBSource configures loading and updating DB.
	DBSource DBOptions
	// Cache is the SBOM cache (required: rematching without registry traffic depends on it).
	Cache *scanner.SBOMCache
	// Generator overrides the Syft SBOM generator (nil: the scanner's default).
	Generator scanner.SBOMSource
	// TrustRootCacheDir holds the TUF trust roots' caches (a subdirectory per source), so a
	// restart while the repository is unreachable still verifies. Empty refuses TUF trust
	// roots: policies naming one are Stalled.
	TrustRootCacheDir string
	// DisablePublicGoodTrustRoot refuses the public-good Sigstore trust root, so the manager
	// never contacts tuf-repo-cdn.sigstore.dev (air-gapped clusters): policies that name it, or
	// keyless authorities with no roots, are Stalled saying so.
	DisablePublicGoodTrustRoot bool
	// Clock defaults to the wall clock.
	Clock Clock
	// Events overrides the manager's event recorder.
	Events eventSink
	// SkipNameValidation allows several managers with these controllers in one process (tests).
	SkipNameValidation bool
	// OnTag, when set, is told the manifest digest (an index's for multi-arch) each tag a
	// RegistryScan resolved points at: admission's tag cache.
	OnTag func(repository, tag, digest string)
	// ServeAdmission makes readiness independent of the vulnerability DB: admission answers from
	// reports (which say Unknown while no DB is loaded), and a replica that is not ready does not
	// answer at all.
	ServeAdmission bool
	// fifo gives all work the same priority: the baseline of the queue benchmark.
	fifo bool
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
	if o.StalledRetryInterval <= 0 {
		o.StalledRetryInterval = 5 * time.Minute
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
	Engine *Engine
	// Admission queues images admission found no verdict for and resolves tags for it.
	Admission     *Admission
	Scheduler     *Scheduler
	RegistryScans *RegistryScanReconciler
	Policies      *PolicyReconciler
	// TrustRoots are the trust-root providers the policies name, one per source.
	TrustRoots *scanner.TrustRoots
	db         *dbRunner
}

// CheckDBArchive checks the DB archive file for changes now, as its poll job does.
func (c *Controllers) CheckDBArchive(ctx context.Context) { c.db.checkArchive(ctx) }

// Setup adds the controllers to mgr. The manager must have been created with CacheOptions.
func Setup(ctx context.Context, mgr manager.Manager, opts Options) (*Controllers, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	if err := setupIndexes(ctx, mgr); err != nil {
		return nil, err
	}
	log := ctrl.Log.WithName("imagetrust")
	sched := NewScheduler(opts.Clock, opts.SchedulerInterval)
	pool := newScannerPool(observed(opts.Registry), opts.DB, opts.Cache, opts.MaxFindings, opts.Clock.Now)
	pool.generator = opts.Generator
	events := opts.Events
	if events == nil {
		events = mgr.GetEventRecorder("imagetrust")
	}
	writer := &reportWriter{client: mgr.GetClient(), apiReader: mgr.GetAPIReader(), events: events, metrics: newEngineMetrics(),
		clock: opts.Clock, maxFindings: opts.MaxFindings, refresh: opts.StatusRefreshInterval, written: map[reportKey]string{}}
	engine := newEngine(writer, opts, sched, pool, log.WithName("engine"))
	ctrls := &Controllers{Engine: engine, Scheduler: sched, db: newDBRunner(opts.DB, opts.DBSource, engine, sched, opts.Clock, log.WithName("vulndb"))}
	ctrls.Admission = newAdmission(mgr.GetClient(), mgr.GetAPIReader(), pool)
	ctrls.TrustRoots = scanner.NewTrustRoots(scanner.TrustRootsConfig{
		CacheDir: opts.TrustRootCacheDir, DisablePublicGood: opts.DisablePublicGoodTrustRoot,
		OnLoad: func() {
			if p := ctrls.Policies; p != nil {
				p.trustRootLoaded()
			}
		},
	})
	nss, err := ctrls.addReconcilers(mgr, opts, pool)
	if err != nil {
		return nil, err
	}
	// Before the first image is worked on: the DB load has been attempted, every policy is
	// compiled and namespace labels are known, so startup does not assess everything twice.
	engine.beforeStart = func(ctx context.Context) error {
		select {
		case <-ctrls.db.initialized:
		case <-ctx.Done():
			return ctx.Err()
		}
		if err := ctrls.Policies.loadAll(ctx); err != nil {
			return err
		}
		if err := nss.loadAll(ctx); err != nil {
			return err
		}
		return writer.watchReports(ctx, mgr.GetCache(), func(k reportKey) {
			if engine.demand.wantedIn(k) {
				engine.enqueue(priorityDemand, k.image())
			}
		}, func(r admissionRequest, at time.Time) {
			// reading the pull secrets is an API call: not in the informer's handler
			go engine.setRequest(ctx, r, at, mgr.GetAPIReader())
		})
	}
	if err := ctrls.addRunnables(mgr); err != nil {
		return nil, err
	}
	return ctrls, addHealthChecks(mgr, opts)
}

// observed chains the registry metrics hook before the caller's Observe.
func observed(o scanner.RegistryOptions) scanner.RegistryOptions {
	next := o.Observe
	o.Observe = func(host, method string, code int, d time.Duration) {
		ObserveRegistryRequest(host, method, code, d)
		if next != nil {
			next(host, method, code, d)
		}
	}
	return o
}

// addReconcilers adds the pod, namespace, RegistryScan and policy controllers.
func (c *Controllers) addReconcilers(mgr manager.Manager, opts Options, pool *scannerPool) (*NamespaceReconciler, error) {
	ctrlOpts := func(workers int) controller.Options {
		o := controller.Options{MaxConcurrentReconciles: workers}
		if opts.SkipNameValidation {
			o.SkipNameValidation = ptr.To(true)
		}
		return o
	}
	engine, cl, reader := c.Engine, mgr.GetClient(), mgr.GetAPIReader()
	pods := &PodReconciler{Client: cl, APIReader: reader, Engine: engine, Pool: pool, Clock: opts.Clock, DefaultPlatform: opts.DefaultPlatform}
	if err := ctrl.NewControllerManagedBy(mgr).Named("pod").For(&corev1.Pod{}).
		WithOptions(ctrlOpts(opts.PodConcurrency)).Complete(pods); err != nil {
		return nil, err
	}
	nss := &NamespaceReconciler{Client: cl, Engine: engine}
	if err := ctrl.NewControllerManagedBy(mgr).Named("namespace").For(&corev1.Namespace{}, builder.OnlyMetadata).
		WithOptions(ctrlOpts(1)).Complete(nss); err != nil {
		return nil, err
	}
	c.RegistryScans = &RegistryScanReconciler{Client: cl, APIReader: reader, Engine: engine, Pool: pool,
		Clock: opts.Clock, Scheduler: c.Scheduler, Kick: make(chan event.GenericEvent, 64), OnTag: opts.OnTag,
		StalledRetry: opts.StalledRetryInterval}
	if err := ctrl.NewControllerManagedBy(mgr).Named("registryscan").
		For(&securityv1alpha1.RegistryScan{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesRawSource(source.Channel(c.RegistryScans.Kick, &handler.EnqueueRequestForObject{})).
		WithOptions(ctrlOpts(2)).Complete(c.RegistryScans); err != nil {
		return nil, err
	}
	c.Policies = &PolicyReconciler{Client: cl, APIReader: reader, Engine: engine, TrustRoots: c.TrustRoots,
		Clock: opts.Clock, Scheduler: c.Scheduler, Kick: make(chan event.GenericEvent, 64), StalledRetry: opts.StalledRetryInterval}
	if err := ctrl.NewControllerManagedBy(mgr).Named("imagetrustpolicy").
		For(&securityv1alpha1.ImageTrustPolicy{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesRawSource(source.Channel(c.Policies.Kick, &handler.EnqueueRequestForObject{})).
		WithOptions(ctrlOpts(1)).Complete(c.Policies); err != nil {
		return nil, err
	}
	return nss, nil
}

// addRunnables adds the scheduler, the Engine, the DB runner, the trust roots' loads and the
// GC to the manager.
func (c *Controllers) addRunnables(mgr manager.Manager) error {
	for _, r := range []manager.Runnable{c.Scheduler, c.Engine, c.db, c.Admission} {
		if err := mgr.Add(r); err != nil {
			return err
		}
	}
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		c.TrustRoots.Start(ctx)
		<-ctx.Done()
		return nil
	})); err != nil {
		return err
	}
	return mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		c.Engine.armGC(ctx)
		c.Policies.followMatches(ctx, policyMatchesRefresh)
		return nil
	}))
}

// policyMatchesRefresh is how soon a policy's matchedReports follows a change of what is wanted.
const policyMatchesRefresh = 2 * time.Second

// addHealthChecks makes the manager ready once the caches synced and, unless it serves
// admission, the DB is loaded.
func addHealthChecks(mgr manager.Manager, opts Options) error {
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if !opts.ServeAdmission {
		if err := addDBReadiness(mgr, opts.DB); err != nil {
			return err
		}
	}
	return mgr.AddReadyzCheck("caches", func(req *http.Request) error {
		c, cancel := context.WithTimeout(req.Context(), time.Second)
		defer cancel()
		if !mgr.GetCache().WaitForCacheSync(c) {
			return errors.New("informer caches not synced")
		}
		return nil
	})
}

func addDBReadiness(mgr manager.Manager, db *scanner.DB) error {
	return mgr.AddReadyzCheck("vulndb", func(*http.Request) error {
		if st := db.Status(); !st.Loaded() {
			if st.Err != "" {
				return fmt.Errorf("vulnerability DB not loaded: %s", st.Err)
			}
			return errors.New("vulnerability DB not loaded")
		}
		return nil
	})
}

func setupIndexes(ctx context.Context, mgr manager.Manager) error {
	fi := mgr.GetFieldIndexer()
	if err := fi.IndexField(ctx, &securityv1alpha1.ImageTrustReport{}, indexReportDigest, func(o client.Object) []string {
		return []string{o.(*securityv1alpha1.ImageTrustReport).Spec.Digest}
	}); err != nil {
		return err
	}
	return fi.IndexField(ctx, &securityv1alpha1.ImageTrustReport{}, indexReportScan, func(o client.Object) []string {
		return o.(*securityv1alpha1.ImageTrustReport).Spec.RegistryScans
	})
}
