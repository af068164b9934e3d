package admission

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	v1 "github.com/imagetrust/imagetrust/api/v1alpha1"
)

// DefaultBreakGlassControllers are the kube-controller-manager identities that create Pods and
// ReplicaSets from templates: an object they create and own carries the template's
// break-glass annotation, which a member of a break-glass group set when the template was
// admitted.
var DefaultBreakGlassControllers = []string{
	"system:kube-controller-manager",
	"system:serviceaccount:kube-system:replicaset-controller",
	"system:serviceaccount:kube-system:deployment-controller",
	"system:serviceaccount:kube-system:statefulset-controller",
	"system:serviceaccount:kube-system:daemon-set-controller",
	"system:serviceaccount:kube-system:job-controller",
	"system:serviceaccount:kube-system:cronjob-controller",
}

// Options configure admission; cmd/imagetrust's flags fill them (see Flags).
type Options struct {
	// ManagerNamespace is the manager's namespace: never judged (so the manager can always
	// start) and home of the self-managed certificate Secret. Required.
	ManagerNamespace string
	// ExcludedNamespaces are never judged, in addition to kube-system and ManagerNamespace.
	ExcludedNamespaces []string
	// Assessor takes digests no report has a verdict for. Nil: they are not queued.
	Assessor Assessor
	// Resolver looks up tags missing from the tag cache. Nil: such tags are unresolved.
	Resolver Resolver
	// ResolveTimeout bounds one lookup (default 2s, well inside the webhook's 10s timeout).
	ResolveTimeout time.Duration
	// Tags is the tag-to-digest cache; nil makes one with TagTTL (default 30s) and
	// TagCacheSize (default 4096) entries.
	Tags         *TagCache
	TagTTL       time.Duration
	TagCacheSize int
	// BreakGlassGroups may set AnnotationBreakGlass; empty disables break-glass.
	BreakGlassGroups []string
	// BreakGlassControllers default to DefaultBreakGlassControllers.
	BreakGlassControllers []string
	// Events records audit and break-glass events; nil uses the manager's recorder.
	Events EventRecorder
	// Certs configure the serving certificates of both listeners.
	Certs CertOptions
	// Webhook and ImagePolicy serve the ValidatingWebhook (WebhookPath) and ImagePolicyWebhook
	// (ImageReviewPath) doors on one listener at WebhookHost:WebhookPort (default :9443).
	Webhook, ImagePolicy bool
	WebhookHost          string
	WebhookPort          int
	// Gatekeeper serves the external-data door (GatekeeperPath) on its own mTLS listener at
	// GatekeeperAddr (default :8090), accepting client certificates signed by the CA in
	// GatekeeperClientCAFile (Gatekeeper's, from its webhook certificate Secret).
	Gatekeeper             bool
	GatekeeperAddr         string
	GatekeeperClientCAFile string
}

// Admission is what Setup wired.
type Admission struct {
	// Admitter answers for every door; tests and benchmarks call it directly.
	Admitter *Admitter
	// Tags is the tag cache; feed RegistryScan results into it with Tags.Observe.
	Tags *TagCache
}

func (o *Options) defaults() error {
	if o.ManagerNamespace == "" {
		return errors.New("admission: Options.ManagerNamespace is required")
	}
	if !o.Webhook && !o.ImagePolicy && !o.Gatekeeper {
		return errors.New("admission: no front door enabled")
	}
	if o.Gatekeeper && o.GatekeeperClientCAFile == "" {
		return errors.New("admission: the Gatekeeper door needs GatekeeperClientCAFile (Gatekeeper authenticates with a client certificate)")
	}
	setDefault(&o.ResolveTimeout, 2*time.Second)
	setDefault(&o.TagTTL, 30*time.Second)
	setDefault(&o.TagCacheSize, 4096)
	setDefault(&o.WebhookPort, 9443)
	setDefault(&o.GatekeeperAddr, ":8090")
	if o.BreakGlassControllers == nil {
		o.BreakGlassControllers = DefaultBreakGlassControllers
	}
	c := &o.Certs
	setDefault(&c.Mode, CertsSelfManaged)
	setDefault(&c.SecretName, "imagetrust-admission-certs")
	setDefault(&c.Validity, 90*24*time.Hour)
	setDefault(&c.CAValidity, 3*365*24*time.Hour)
	setDefault(&c.RefreshInterval, time.Minute)
	switch c.Mode {
	case CertsSelfManaged:
		if len(c.Hosts) == 0 {
			return errors.New("admission: self-managed certificates need CertOptions.Hosts (the webhook Service's DNS names)")
		}
	case CertsFromFiles:
		if c.Dir == "" {
			return errors.New("admission: CertOptions.Dir is required with certificates from files")
		}
	default:
		return fmt.Errorf("admission: unknown certificate mode %q", c.Mode)
	}
	return nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Setup adds admission to mgr: the report index, the front doors, the certificates and a
// readiness check that passes only once the report, policy and namespace caches have synced
// and a serving certificate is loaded. Everything runs on every replica.
func Setup(mgr manager.Manager, opts Options) (*Admission, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	log := ctrl.Log.WithName("admission")
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &v1.ImageTrustReport{}, IndexReportImage, reportImageKeys); err != nil {
		return nil, fmt.Errorf("admission: indexing reports: %w", err)
	}
	tags := opts.Tags
	if tags == nil {
		tags = NewTagCache(opts.TagTTL, opts.TagCacheSize, nil)
	}
	excluded := map[string]bool{metav1.NamespaceSystem: true, opts.ManagerNamespace: true}
	for _, ns := range opts.ExcludedNamespaces {
		excluded[ns] = true
	}
	events := opts.Events
	if events == nil {
		events = mgr.GetEventRecorder("imagetrust-admission")
	}
	a := &Admitter{Assessor: opts.Assessor, Events: events, Log: log, Gatherer: &Gatherer{
		Cache: mgr.GetCache(), Live: mgr.GetAPIReader(), Tags: tags, Resolver: opts.Resolver,
		ResolveTimeout: opts.ResolveTimeout, Excluded: excluded,
		BreakGlassGroups: opts.BreakGlassGroups, BreakGlassControllers: opts.BreakGlassControllers,
	}}
	src := &certSource{}
	if err := addCerts(mgr, opts, src); err != nil {
		return nil, err
	}
	if err := addDoors(mgr, opts, a, src); err != nil {
		return nil, err
	}
	if err := mgr.Add(&cacheGate{cache: mgr.GetCache(), admitter: a}); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("admission", func(*http.Request) error {
		if !a.Ready() {
			return ErrNotReady
		}
		if !src.loaded() {
			return errors.New("admission serving certificate not loaded yet")
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return &Admission{Admitter: a, Tags: tags}, nil
}

// addCerts adds the certificate runnable, after a first load: runnables other than caches and
// listeners start only once the caches have synced, and a listener without a certificate
// cannot even tell its caller that it is not ready yet.
func addCerts(mgr manager.Manager, opts Options, src *certSource) error {
	log := ctrl.Log.WithName("admission-certs")
	if opts.Certs.Mode == CertsFromFiles {
		f := &fileCerts{src: src, dir: opts.Certs.Dir, log: log}
		if err := f.load(); err != nil {
			log.Info("serving certificate not there yet", "dir", opts.Certs.Dir, "error", err.Error())
		}
		return mgr.Add(f)
	}
	m := &selfManagedCerts{src: src, client: mgr.GetClient(), reader: mgr.GetAPIReader(),
		namespace: opts.ManagerNamespace, opts: opts.Certs, now: time.Now, log: log}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.sync(ctx); err != nil {
		log.Info("first certificate sync failed; retrying in the background", "error", err.Error())
	}
	return mgr.Add(m)
}

// addDoors adds the listeners of the enabled front doors.
func addDoors(mgr manager.Manager, opts Options, a *Admitter, src *certSource) error {
	tlsOpt := func(c *tls.Config) {
		c.MinVersion = tls.VersionTLS12
		c.GetCertificate = src.GetCertificate
	}
	if opts.Webhook || opts.ImagePolicy {
		srv := webhook.NewServer(webhook.Options{Host: opts.WebhookHost, Port: opts.WebhookPort, TLSOpts: []func(*tls.Config){tlsOpt}})
		if opts.Webhook {
			srv.Register(WebhookPath, &webhook.Admission{Handler: &webhookHandler{a: a}})
		}
		if opts.ImagePolicy {
			srv.Register(ImageReviewPath, &imageReviewHandler{a: a})
		}
		if err := mgr.Add(srv); err != nil {
			return err
		}
		if err := mgr.AddReadyzCheck("admission-listener", srv.StartedChecker()); err != nil {
			return err
		}
	}
	if opts.Gatekeeper {
		return mgr.Add(&gatekeeperServer{addr: opts.GatekeeperAddr, handler: &gatekeeperHandler{a: a}, certs: src,
			clientCA: &caFile{path: opts.GatekeeperClientCAFile}, log: ctrl.Log.WithName("admission-gatekeeper")})
	}
	return nil
}

// cacheGate marks the Admitter ready once the informers it reads have synced. GetInformer
// starts an informer that is not running yet and blocks until it has synced.
type cacheGate struct {
	cache    cache.Cache
	admitter *Admitter
}

// NeedLeaderElection: every replica answers admission requests.
func (*cacheGate) NeedLeaderElection() bool { return false }

// Start waits for the report, policy and namespace informers.
func (g *cacheGate) Start(ctx context.Context) error {
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	for _, obj := range []client.Object{&v1.ImageTrustReport{}, &v1.ImageTrustPolicy{}, ns} {
		if _, err := g.cache.GetInformer(ctx, obj); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("admission: waiting for the %T cache: %w", obj, err)
		}
	}
	if !g.cache.WaitForCacheSync(ctx) {
		return nil
	}
	g.admitter.SetReady()
	return nil
}
