package admission

// The envtest harness: real kube-apiservers calling this package's front doors, served by a
// real controller-runtime manager whose cache watches those API servers.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/internal/kustomize"
	"github.com/imagetrust/imagetrust/internal/testenv"
	"github.com/imagetrust/imagetrust/scanner/registry/registrytest"
)

const managerNS = "imagetrust-system"

// world is one API server with one manager serving admission for it.
type world struct {
	env      *testenv.Env
	adm      *Admission
	queue    *Queue
	probe    string // base URL of the manager's health probes
	port     int    // webhook / ImageReview listener
	gkURL    string // Gatekeeper door
	gkClient tls.Certificate
	gkPair   keyPair // the same client certificate as PEM
	auditLog string  // the API server's audit log, when it keeps one
	stop     context.CancelFunc
	done     chan error
}

var (
	worldsMu sync.Mutex
	worlds   = map[string]*world{}
	started  = map[string]error{}

	regOnce sync.Once
	reg     *registrytest.Registry
	regErr  error
)

func TestMain(m *testing.M) {
	ctrl.SetLogger(logr.Discard())
	code := m.Run()
	for _, w := range worlds {
		w.close()
	}
	if reg != nil {
		reg.Close()
	}
	os.Exit(code)
}

// getWorld starts a world once per test binary, on first use, so unit tests alone never boot a
// control plane.
func getWorld(t testing.TB, name string, start func() (*world, error)) *world {
	t.Helper()
	worldsMu.Lock()
	defer worldsMu.Unlock()
	if w, ok := worlds[name]; ok {
		return w
	}
	if err, ok := started[name]; ok {
		t.Fatalf("%s world failed to start: %v", name, err)
	}
	w, err := start()
	started[name] = err
	if err != nil {
		t.Fatalf("%s world: %v", name, err)
	}
	worlds[name] = w
	return w
}

func testRegistry(t testing.TB) *registrytest.Registry {
	t.Helper()
	regOnce.Do(func() { reg, regErr = registrytest.Start() })
	if regErr != nil {
		t.Fatal(regErr)
	}
	return reg
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startManager runs a manager with admission against env and waits until /readyz passes.
func startManager(env *testenv.Env, cfg *rest.Config, opts Options) (*world, error) {
	w, err := launchManager(env, cfg, opts)
	if err != nil {
		return nil, err
	}
	if err := w.waitReady(60 * time.Second); err != nil {
		w.stop()
		return nil, err
	}
	return w, nil
}

// launchManager starts a manager with admission against env (as the user of cfg).
func launchManager(env *testenv.Env, cfg *rest.Config, opts Options) (*world, error) {
	probePort, err := freePort()
	if err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: fmt.Sprintf("127.0.0.1:%d", probePort),
	})
	if err != nil {
		return nil, err
	}
	adm, err := Setup(mgr, opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &world{env: env, adm: adm, port: opts.WebhookPort, stop: cancel, done: make(chan error, 1),
		probe: fmt.Sprintf("http://127.0.0.1:%d", probePort)}
	if q, ok := opts.Assessor.(*Queue); ok {
		w.queue = q
	}
	go func() { w.done <- mgr.Start(ctx) }()
	return w, nil
}

// readyz returns the manager's readiness answer.
func (w *world) readyz() (int, string) {
	resp, err := http.Get(w.probe + "/readyz?verbose")
	if err != nil {
		return 0, err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (w *world) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		select {
		case err := <-w.done:
			return fmt.Errorf("manager exited: %v", err)
		default:
		}
		code, body := w.readyz()
		if code == http.StatusOK {
			return nil
		}
		last = body
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("manager not ready after %s: %s", timeout, last)
}

func (w *world) close() {
	if w.stop != nil {
		w.stop()
		select {
		case err := <-w.done:
			_ = err // the manager's exit does not matter at teardown
		case <-time.After(30 * time.Second):
		}
	}
	_ = w.env.Stop()
}

// shippedWebhook is the ValidatingWebhookConfiguration of config/components/admission, pointed
// at a listener of this process instead of the in-cluster Service.
func shippedWebhook(url string) (*admissionregistrationv1.ValidatingWebhookConfiguration, error) {
	objs, err := kustomize.BuildObjects("config/overlays/admission")
	if err != nil {
		return nil, err
	}
	for _, u := range objs {
		if u.GetKind() != "ValidatingWebhookConfiguration" {
			continue
		}
		var cfg admissionregistrationv1.ValidatingWebhookConfiguration
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &cfg); err != nil {
			return nil, err
		}
		for i := range cfg.Webhooks {
			path := *cfg.Webhooks[i].ClientConfig.Service.Path
			cfg.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: new(url + path)}
		}
		return &cfg, nil
	}
	return nil, errors.New("config/overlays/admission renders no ValidatingWebhookConfiguration")
}

// startWebhookWorld: the shipped webhook configuration, self-managed certificates (the manager
// writes the CA bundle the API server then uses), and the Gatekeeper door with mTLS.
func startWebhookWorld() (*world, error) {
	env, err := testenv.Start()
	if err != nil {
		return nil, err
	}
	w, err := webhookWorldOn(env)
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	return w, nil
}

func webhookWorldOn(env *testenv.Env) (*world, error) {
	ctx := context.Background()
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: managerNS}}); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	gkPort, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg, err := shippedWebhook(fmt.Sprintf("https://127.0.0.1:%d", port))
	if err != nil {
		return nil, err
	}
	if err := env.Client.Create(ctx, cfg); err != nil {
		return nil, err
	}
	gkCA, gkPair, gkClient, err := gatekeeperClientCert()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "admission-gk-")
	if err != nil {
		return nil, err
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, gkCA, 0o600); err != nil {
		return nil, err
	}
	r, err := registryForWorlds()
	if err != nil {
		return nil, err
	}
	w, err := startManager(env, env.Config, Options{
		ManagerNamespace: managerNS, Assessor: NewQueue(256),
		Resolver:         newScannerResolver(r.Host()),
		BreakGlassGroups: []string{"sre"},
		Webhook:          true, WebhookHost: "127.0.0.1", WebhookPort: port,
		Gatekeeper: true, GatekeeperAddr: fmt.Sprintf("127.0.0.1:%d", gkPort), GatekeeperClientCAFile: caFile,
		Certs: CertOptions{Hosts: []string{"127.0.0.1"}, WebhookConfigurations: []string{cfg.Name}, RefreshInterval: 200 * time.Millisecond},
	})
	if err != nil {
		return nil, err
	}
	w.gkURL, w.gkClient, w.gkPair = fmt.Sprintf("https://127.0.0.1:%d%s", gkPort, GatekeeperPath), gkClient, gkPair
	return w, waitFor(30*time.Second, func() (bool, error) {
		var got admissionregistrationv1.ValidatingWebhookConfiguration
		if err := env.Client.Get(ctx, types.NamespacedName{Name: cfg.Name}, &got); err != nil {
			return false, err
		}
		return len(got.Webhooks[0].ClientConfig.CABundle) > 0, nil
	})
}

// registryForWorlds is the shared test registry, started without a testing.T because worlds
// outlive single tests.
func registryForWorlds() (*registrytest.Registry, error) {
	regOnce.Do(func() { reg, regErr = registrytest.Start() })
	return reg, regErr
}

// gatekeeperClientCert plays Gatekeeper's part: a CA and a client certificate it signs.
func gatekeeperClientCert() ([]byte, keyPair, tls.Certificate, error) {
	ca, err := newCA(time.Now(), 24*time.Hour)
	if err != nil {
		return nil, keyPair{}, tls.Certificate{}, err
	}
	pair, err := clientCert(ca, "gatekeeper-webhook-service.gatekeeper-system.svc")
	if err != nil {
		return nil, keyPair{}, tls.Certificate{}, err
	}
	c, err := tls.X509KeyPair(pair.Cert, pair.Key)
	return ca.Cert, pair, c, err
}

// clientCert issues a TLS client certificate signed by ca.
func clientCert(ca keyPair, cn string) (keyPair, error) {
	caCert, caKey, err := parsePair(ca)
	if err != nil {
		return keyPair{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return keyPair{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: serialNumber(), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return keyPair{}, err
	}
	return encodePair(der, key)
}

func waitFor(timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New("condition not met")
			}
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// userClient is a client authenticated as a user of the API server (system:masters, so RBAC
// never interferes) that records the warnings the API server returns.
type userClient struct {
	client.Client
	warnings *warningLog
}

type warningLog struct {
	mu   sync.Mutex
	seen []string
}

func (l *warningLog) HandleWarningHeader(_ int, _ string, text string) {
	l.mu.Lock()
	l.seen = append(l.seen, text)
	l.mu.Unlock()
}

func (l *warningLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.seen
	l.seen = nil
	return out
}

func (w *world) user(t testing.TB, name string, groups ...string) *userClient {
	t.Helper()
	u, err := w.env.AddUser(envtest.User{Name: name, Groups: append([]string{"system:masters"}, groups...)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := u.Config()
	cfg.QPS, cfg.Burst = -1, 0 // client-go's default 5 QPS would dominate latency measurements
	log := &warningLog{}
	cfg.WarningHandler = log
	c, err := client.New(cfg, client.Options{Scheme: w.env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return &userClient{Client: c, warnings: log}
}

// takeAssessed drains the Assessor queue: repository@digest of each queued image.
func (w *world) takeAssessed() []string {
	var out []string
	for {
		select {
		case a := <-w.queue.C():
			out = append(out, a.Repository+"@"+a.Digest)
			w.queue.Done(a)
		default:
			return out
		}
	}
}

// waitCached waits until the manager's cache holds obj with the given resource version or
// newer, so a decision sees what the test just wrote.
func (w *world) waitCached(t testing.TB, obj client.Object) {
	t.Helper()
	cache := w.adm.Admitter.Gatherer.Cache
	err := waitFor(10*time.Second, func() (bool, error) {
		got := obj.DeepCopyObject().(client.Object)
		if err := cache.Get(context.Background(), client.ObjectKeyFromObject(obj), got); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		return got.GetResourceVersion() == obj.GetResourceVersion(), nil
	})
	if err != nil {
		t.Fatalf("cache never saw %s: %v", client.ObjectKeyFromObject(obj), err)
	}
}

// ensureNamespace creates a namespace with labels (in every world given).
func ensureNamespace(t testing.TB, w *world, name string, labels map[string]string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if err := w.env.Client.Create(context.Background(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// writeReport creates a report and sets its status as the controllers would.
func writeReport(t testing.TB, w *world, ns, name, repo, digest string, st v1.ImageTrustReportStatus) *v1.ImageTrustReport {
	t.Helper()
	ctx := context.Background()
	ensureNamespace(t, w, ns, nil)
	r := &v1.ImageTrustReport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1.ImageTrustReportSpec{Image: repo, Digest: digest}}
	if err := w.env.Client.Create(ctx, r); err != nil {
		t.Fatal(err)
	}
	r.Status = st
	if err := w.env.Client.Status().Update(ctx, r); err != nil {
		t.Fatal(err)
	}
	w.waitCached(t, r)
	return r
}
