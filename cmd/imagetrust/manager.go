package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"time"

	"github.com/robfig/cron/v3"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2/textlogger"
	ctrl "sigs.k8s.io/controller-runtime"
	ctrlcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/controllers"
	"github.com/imagetrust/imagetrust/internal/admission"
	"github.com/imagetrust/imagetrust/scanner/registry"
	"github.com/imagetrust/imagetrust/scanner/sbom"
	"github.com/imagetrust/imagetrust/scanner/vulndb"
)

// managerFlags are the flags of `imagetrust manager`.
type managerFlags struct {
	concurrency         int
	maxFindings         int
	reportGrace         time.Duration
	statusRefresh       time.Duration
	cacheDir            string
	cacheMaxBytes       int64
	trustRootCacheDir   string
	publicGoodTrust     bool
	dbDir               string
	dbArchive           string
	dbArchivePoll       time.Duration
	dbOCIRef            string
	dbUpdateURL         string
	dbUpdateSchedule    string
	dbMaxAge            time.Duration
	fullRematch         time.Duration
	leaderElect         bool
	leaderElectionNS    string
	metricsAddr         string
	metricsSecure       bool
	probeAddr           string
	registryQPS         float64
	registryConcurrency int
	insecure            stringList
	defaultPlatform     string
	jitter              time.Duration
	stalledRetry        time.Duration
	watchNamespaces     stringList
	admission           admission.Flags
}

func (f *managerFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&f.concurrency, "concurrency", 2, "image digests assessed in parallel")
	fs.IntVar(&f.maxFindings, "max-findings", 50, fmt.Sprintf("top findings kept in a report (at most %d)", securityv1alpha1.MaxReportFindings))
	fs.DurationVar(&f.reportGrace, "report-grace-period", time.Hour, "how long a report outlives the last pod or RegistryScan using its digest")
	fs.DurationVar(&f.statusRefresh, "status-refresh-interval", 24*time.Hour, "longest a report's checkedAt/scannedAt may lag when nothing else changed")
	fs.StringVar(&f.cacheDir, "cache-dir", defaultDir("manager"), "directory for the SBOM cache (and the DB when --db-dir is not set); mount a volume to survive restarts")
	fs.Int64Var(&f.cacheMaxBytes, "cache-max-bytes", 2<<30, "SBOM cache size limit in bytes (0: unlimited)")
	fs.StringVar(&f.trustRootCacheDir, "trust-root-cache-dir", "", "directory for the TUF trust roots' caches (default <cache-dir>/trust-roots)")
	fs.BoolVar(&f.publicGoodTrust, "public-good-trust-root", true, "use the public-good Sigstore trust root (TUF, needs egress to tuf-repo-cdn.sigstore.dev) for authorities that name it\n"+
		"or keyless authorities that name no roots; false for air-gapped clusters: nothing contacts it and such authorities are Stalled")
	fs.StringVar(&f.dbDir, "db-dir", "", "Grype vulnerability DB directory (default <cache-dir>/vulndb)")
	fs.StringVar(&f.dbArchive, "db-archive", "", "Grype DB archive to import at start and whenever the file changes (air-gapped)")
	fs.DurationVar(&f.dbArchivePoll, "db-archive-poll-interval", 30*time.Second, "how often --db-archive is checked for changes")
	fs.StringVar(&f.dbOCIRef, "db-oci-ref", "", "OCI reference of a Grype DB archive artifact, imported at start and on --db-update-schedule")
	fs.StringVar(&f.dbUpdateURL, "db-update-url", "", "Grype DB listing URL (latest.json) to check for updates; empty disables downloads")
	fs.StringVar(&f.dbUpdateSchedule, "db-update-schedule", "0 */6 * * *", "cron schedule of DB update checks (--db-update-url, --db-oci-ref)")
	fs.DurationVar(&f.dbMaxAge, "db-max-age", 5*24*time.Hour, "refuse to match against a DB built longer ago than this (0: no limit)")
	fs.DurationVar(&f.fullRematch, "full-rematch-interval", 7*24*time.Hour, "how often every cached SBOM is rematched in full, the safety net behind the incremental rematch after DB updates (0: never)")
	fs.BoolVar(&f.leaderElect, "leader-elect", false, "enable leader election (run several replicas, one active)")
	fs.StringVar(&f.leaderElectionNS, "leader-election-namespace", "", "namespace of the leader election Lease (default: the pod's namespace)")
	fs.StringVar(&f.metricsAddr, "metrics-bind-address", ":8080", `metrics endpoint address ("0" disables it)`)
	fs.BoolVar(&f.metricsSecure, "metrics-secure", false, "serve metrics over HTTPS, allowing only callers with RBAC access to /metrics (TokenReview + SubjectAccessReview)")
	fs.StringVar(&f.probeAddr, "health-probe-bind-address", ":8081", "health and readiness probe address")
	fs.Float64Var(&f.registryQPS, "registry-qps", registry.DefaultRequestsPerSecond, "requests per second per registry host (negative: unlimited)")
	fs.IntVar(&f.registryConcurrency, "registry-max-concurrency", registry.DefaultMaxConcurrentPerRegistry, "concurrent requests per registry host (negative: unbounded)")
	fs.Var(&f.insecure, "insecure-registry", "registry `host[:port]` reachable over plain HTTP or unverified TLS; repeatable")
	fs.StringVar(&f.defaultPlatform, "default-platform", "linux/amd64", "platform picked from a multi-arch image for pods that have not pulled it yet")
	fs.DurationVar(&f.jitter, "requeue-jitter", 30*time.Second, "scheduled re-verifications are spread over this window")
	fs.DurationVar(&f.stalledRetry, "stalled-retry-interval", 5*time.Minute, "how long something a person must fix (a missing Secret, refused credentials, an unreadable image) waits before it is tried again")
	fs.Var(&f.watchNamespaces, "watch-namespace", "watch only this namespace's pods, RegistryScans and reports (namespaced mode, with Roles instead of a ClusterRole: config/components/namespaced); repeatable")
	f.admission.Register(fs)
}

func (f *managerFlags) validate() error {
	if f.concurrency < 1 {
		return errors.New("--concurrency must be at least 1")
	}
	if f.maxFindings < 1 || f.maxFindings > securityv1alpha1.MaxReportFindings {
		return fmt.Errorf("--max-findings must be between 1 and %d", securityv1alpha1.MaxReportFindings)
	}
	if f.reportGrace <= 0 {
		return errors.New("--report-grace-period must be positive")
	}
	if f.stalledRetry <= 0 {
		return errors.New("--stalled-retry-interval must be positive")
	}
	if f.dbUpdateSchedule != "" {
		if _, err := cron.ParseStandard(f.dbUpdateSchedule); err != nil {
			return fmt.Errorf("--db-update-schedule: %w", err)
		}
	}
	if f.fullRematch < 0 {
		return errors.New("--full-rematch-interval must not be negative")
	}
	if f.dbUpdateURL != "" && f.dbArchive != "" {
		return errors.New("--db-update-url and --db-archive are alternatives; set one")
	}
	if f.admission.Enabled() {
		if _, err := f.admission.Options(); err != nil {
			return err
		}
	}
	return nil
}

func newManagerFlagSet(f *managerFlags) *flag.FlagSet {
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f.register(fs)
	return fs
}

var managerCommand = commandLine{name: "manager", about: `Run the Kubernetes operator against the cluster in KUBECONFIG (or in-cluster config) until
SIGTERM: it watches pods, RegistryScans and ImageTrustPolicies and writes ImageTrustReports.`}

// runManager runs the operator until SIGTERM.
func runManager(args []string, stdout io.Writer) error {
	var f managerFlags
	fs := newManagerFlagSet(&f)
	// klog's text logger: structured key=value lines, -v for verbosity. (controller-runtime's
	// zap helper would need github.com/go-logr/zapr in go.mod.)
	logCfg := textlogger.NewConfig()
	logCfg.AddFlags(fs)
	if _, err := managerCommand.parse(fs, args, stdout); err != nil {
		return err
	}
	if err := f.validate(); err != nil {
		return usageError("manager", "%v", err)
	}
	ctrl.SetLogger(textlogger.NewLogger(logCfg))
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	ctx := ctrl.SetupSignalHandler()
	return startManager(ctx, cfg, f)
}

func startManager(ctx context.Context, cfg *rest.Config, f managerFlags) error {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := securityv1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	dbDir := f.dbDir
	if dbDir == "" {
		dbDir = filepath.Join(f.cacheDir, "vulndb")
	}
	regOpts := registry.Options{
		RequestsPerSecond:        f.registryQPS,
		MaxConcurrentPerRegistry: f.registryConcurrency,
		Insecure:                 f.insecure,
		// every client (one per set of credentials, and the DB's) spends one budget per registry
		Shared: registry.NewShared(),
	}
	dbOpts := regOpts
	dbOpts.Observe = controllers.ObserveRegistryRequest // the scanners' clients get it from Setup
	dbRegistry := registry.New(dbOpts)
	db, err := vulndb.New(vulndb.Config{Dir: dbDir, ListingURL: f.dbUpdateURL, MaxAge: f.dbMaxAge, ValidateChecksum: true,
		OCINameOptions: dbRegistry.NameOptions})
	if err != nil {
		return err
	}
	defer db.Close()
	cache, err := sbom.NewCache(filepath.Join(f.cacheDir, "sbom"), f.cacheMaxBytes)
	if err != nil {
		return err
	}
	trustRootDir := f.trustRootCacheDir
	if trustRootDir == "" {
		trustRootDir = filepath.Join(f.cacheDir, "trust-roots")
	}

	metricsOpts := metricsserver.Options{BindAddress: f.metricsAddr}
	if f.metricsSecure {
		// In a cluster, metrics reveal which images run where and what is vulnerable: only
		// callers allowed `get /metrics` by RBAC may read them (config/rbac/metrics_reader_role).
		metricsOpts.SecureServing = true
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	cacheOpts := controllers.CacheOptions()
	if len(f.watchNamespaces) > 0 {
		// namespaced objects come from these namespaces only; policies and namespaces are
		// cluster-scoped and still watched everywhere
		cacheOpts.DefaultNamespaces = map[string]ctrlcache.Config{}
		for _, ns := range f.watchNamespaces {
			cacheOpts.DefaultNamespaces[ns] = ctrlcache.Config{}
		}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Cache:                         cacheOpts,
		Metrics:                       metricsOpts,
		HealthProbeBindAddress:        f.probeAddr,
		LeaderElection:                f.leaderElect,
		LeaderElectionID:              "imagetrust.security.imagetrust.dev",
		LeaderElectionNamespace:       f.leaderElectionNS,
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return err
	}
	dbSource := controllers.DBOptions{
		Archive:             f.dbArchive,
		ArchivePollInterval: f.dbArchivePoll,
		OCIRef:              f.dbOCIRef,
		UpdateURL:           f.dbUpdateURL,
		UpdateSchedule:      f.dbUpdateSchedule,
		FullRematchInterval: f.fullRematch,
	}
	if f.dbOCIRef != "" {
		dbSource.OCIRemoteOptions = dbRegistry.RemoteOptions(ctx)
	}
	// admission's tag cache, fed by RegistryScans; set once admission is wired, before Start
	var tags *admission.TagCache
	ctrls, err := controllers.Setup(ctx, mgr, controllers.Options{
		Concurrency:                f.concurrency,
		MaxFindings:                f.maxFindings,
		ReportGracePeriod:          f.reportGrace,
		StatusRefreshInterval:      f.statusRefresh,
		Jitter:                     f.jitter,
		StalledRetryInterval:       f.stalledRetry,
		DefaultPlatform:            f.defaultPlatform,
		Registry:                   regOpts,
		DB:                         db,
		DBSource:                   dbSource,
		Cache:                      cache,
		ServeAdmission:             f.admission.Enabled(),
		OnTag:                      func(repo, tag, digest string) { tags.Observe(repo, tag, digest) },
		TrustRootCacheDir:          trustRootDir,
		DisablePublicGoodTrustRoot: !f.publicGoodTrust,
	})
	if err != nil {
		return err
	}
	if f.admission.Enabled() {
		opts, err := f.admission.Options()
		if err != nil {
			return err
		}
		// never-assessed images reach the leader's Engine, and tags resolve through its
		// registry clients and limits
		opts.Assessor, opts.Resolver = ctrls.Admission, ctrls.Admission
		adm, err := admission.Setup(mgr, opts)
		if err != nil {
			return err
		}
		tags = adm.Tags
	}
	ctrl.Log.WithName("setup").Info("starting manager", "concurrency", f.concurrency, "dbDir", dbDir, "cacheDir", f.cacheDir)
	if err := mgr.Start(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
