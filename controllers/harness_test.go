package controllers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/internal/testenv"
	"github.com/imagetrust/imagetrust/scanner/registry"
	"github.com/imagetrust/imagetrust/scanner/registry/registrytest"
	"github.com/imagetrust/imagetrust/scanner/sbom"
	"github.com/imagetrust/imagetrust/scanner/verify/signtest"
	"github.com/imagetrust/imagetrust/scanner/vulndb"
	"github.com/imagetrust/imagetrust/scanner/vulndb/dbtest"
)

// The envtest suite: the real kube-apiserver and etcd, go-containerregistry's registry over
// httptest, cosign signatures made with signtest, and tiny Grype DBs written by grype's writer.

var baseVulns = []dbtest.Vuln{
	{ID: "CVE-2026-1000", Severity: "Critical", Ecosystem: dbtest.EcosystemDeb, Package: "openssl",
		Constraint: "< 3.0.15-1~deb12u1", FixedVersion: "3.0.15-1~deb12u1"},
	{ID: "CVE-2026-1001", Severity: "Low", Ecosystem: dbtest.EcosystemDeb, Package: "tar", Constraint: ""},
	{ID: "CVE-2026-2000", Severity: "High", Ecosystem: dbtest.EcosystemAPK, Package: "busybox",
		Constraint: "< 1.36.1-r16", FixedVersion: "1.36.1-r16"},
}

// newVuln is what the swapped-in DB adds: a Critical in bash, which the Debian image has.
var newVuln = dbtest.Vuln{ID: "CVE-2026-3000", Severity: "Critical", Ecosystem: dbtest.EcosystemDeb, Package: "bash",
	Constraint: "< 5.2.15-3", FixedVersion: "5.2.15-3"}

var (
	debianPkgs = []registrytest.Pkg{{Name: "openssl", Version: "3.0.11-1~deb12u2"}, {Name: "tar", Version: "1.34+dfsg-1.2+deb12u1"}, {Name: "bash", Version: "5.2.15-2+b7"}}
	alpinePkgs = []registrytest.Pkg{{Name: "busybox", Version: "1.36.1-r15"}, {Name: "musl", Version: "1.2.4_git20230717-r5"}}
)

var (
	envOnce  sync.Once
	env      *testenv.Env
	envErr   error
	suiteDir string
	// archives of the base DB and of the DB with newVuln added.
	baseArchive, newArchive string
	// sharedCache is the SBOM cache every manager of the suite uses, as a PVC would be shared
	// by successive manager pods: an image's SBOM is generated once for the whole suite.
	sharedCache *sbom.Cache
)

func TestMain(m *testing.M) {
	if os.Getenv("IMAGETRUST_TEST_LOG") != "" {
		ctrl.SetLogger(funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, prefix, args) }, funcr.Options{Verbosity: 1}))
	} else {
		ctrl.SetLogger(logr.Discard())
	}
	code := m.Run()
	if env != nil {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}
	if suiteDir != "" {
		_ = os.RemoveAll(suiteDir)
	}
	os.Exit(code)
}

// startEnv boots the control plane and builds the suite's fixtures on first use, so the table
// tests of this package run without it.
func startEnv(t testing.TB) {
	t.Helper()
	envOnce.Do(func() {
		env, envErr = testenv.Start()
		if envErr != nil {
			return
		}
		suiteDir, envErr = os.MkdirTemp("", "imagetrust-controllers-")
		if envErr != nil {
			return
		}
		built := time.Now().Add(-2 * time.Hour)
		if baseArchive, envErr = dbtest.Archive(filepath.Join(suiteDir, "base"), built, baseVulns); envErr != nil {
			return
		}
		if newArchive, envErr = dbtest.Archive(filepath.Join(suiteDir, "new"), built.Add(time.Hour), append(append([]dbtest.Vuln(nil), baseVulns...), newVuln)); envErr != nil {
			return
		}
		sharedCache, envErr = sbom.NewCache(filepath.Join(suiteDir, "sbom"), 0)
	})
	if envErr != nil {
		t.Fatalf("starting the envtest suite: %v", envErr)
	}
}

// writeCounter counts API writes made through the manager's client, by verb and kind.
type writeCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (w *writeCounter) add(verb string, obj client.Object, sub string) {
	kind := reflect.TypeOf(obj).Elem().Name()
	if sub != "" {
		kind += "/" + sub
	}
	w.mu.Lock()
	w.counts[verb+" "+kind]++
	w.mu.Unlock()
}

func (w *writeCounter) snapshot() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]int{}
	for k, v := range w.counts {
		out[k] = v
	}
	return out
}

func (w *writeCounter) reset() {
	w.mu.Lock()
	w.counts = map[string]int{}
	w.mu.Unlock()
}

// reportWrites is the number of writes to ImageTrustReports (objects and status).
func (w *writeCounter) reportWrites() int {
	n := 0
	for k, v := range w.snapshot() {
		if strings.Contains(k, " ImageTrustReport") {
			n += v
		}
	}
	return n
}

func (w *writeCounter) total() int {
	n := 0
	for _, v := range w.snapshot() {
		n += v
	}
	return n
}

type countingClient struct {
	client.Client
	w *writeCounter
}

func (c *countingClient) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	c.w.add("create", obj, "")
	return c.Client.Create(ctx, obj, opts...)
}

func (c *countingClient) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	c.w.add("update", obj, "")
	return c.Client.Update(ctx, obj, opts...)
}

func (c *countingClient) Patch(ctx context.Context, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
	c.w.add("patch", obj, "")
	return c.Client.Patch(ctx, obj, p, opts...)
}

func (c *countingClient) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	c.w.add("delete", obj, "")
	return c.Client.Delete(ctx, obj, opts...)
}

func (c *countingClient) Status() client.SubResourceWriter {
	return &countingStatus{SubResourceWriter: c.Client.Status(), w: c.w}
}

type countingStatus struct {
	client.SubResourceWriter
	w *writeCounter
}

func (s *countingStatus) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	s.w.add("update", obj, "status")
	return s.SubResourceWriter.Update(ctx, obj, opts...)
}

func (s *countingStatus) Patch(ctx context.Context, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
	s.w.add("patch", obj, "status")
	return s.SubResourceWriter.Patch(ctx, obj, p, opts...)
}

// recordedEvent is one event the Engine emitted.
type recordedEvent struct {
	Regarding string // Kind/namespace/name
	Type      string
	Reason    string
	Note      string
}

// eventLog records the Engine's events and forwards them to the manager's real recorder.
type eventLog struct {
	mu     sync.Mutex
	next   eventSink
	events []recordedEvent
}

func (l *eventLog) Eventf(regarding, related runtime.Object, typ, reason, action, note string, args ...interface{}) {
	var who string
	switch o := regarding.(type) {
	case *corev1.ObjectReference:
		who = o.Kind + "/" + o.Namespace + "/" + o.Name
	case client.Object:
		who = reflect.TypeOf(o).Elem().Name() + "/" + o.GetNamespace() + "/" + o.GetName()
	}
	l.mu.Lock()
	l.events = append(l.events, recordedEvent{Regarding: who, Type: typ, Reason: reason, Note: fmt.Sprintf(note, args...)})
	next := l.next
	l.mu.Unlock()
	if next != nil {
		next.Eventf(regarding, related, typ, reason, action, note, args...)
	}
}

func (l *eventLog) about(regarding string) []recordedEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []recordedEvent
	for _, e := range l.events {
		if e.Regarding == regarding {
			out = append(out, e)
		}
	}
	return out
}

// harness is one manager running the controllers against the suite's control plane, with a
// fake clock, counted writes and recorded events. Its cache sees only the harness's namespaces,
// so tests do not see each other's pods.
type harness struct {
	t      testing.TB
	ctx    context.Context
	c      client.Client // direct client, for the test's own reads and writes
	reg    *registrytest.Registry
	key    *signtest.KeyPair
	clock  *FakeClock
	ns     map[string]string // logical → real namespace name
	suffix string

	writes  *writeCounter
	events  *eventLog
	ctrls   *Controllers
	db      *vulndb.Manager
	archive string // the --db-archive file

	cancel context.CancelFunc
	done   chan error
	// tune, when set, changes the Options before Setup (benchmarks).
	tune func(*Options)
}

var harnessSeq int

func newHarness(t testing.TB, namespaces ...string) *harness {
	t.Helper()
	startEnv(t)
	harnessSeq++
	h := &harness{
		t: t, ctx: context.Background(), c: env.Client,
		reg:    registrytest.New(t),
		clock:  &FakeClock{t: time.Now().UTC().Truncate(time.Second)},
		ns:     map[string]string{},
		suffix: fmt.Sprintf("%d", harnessSeq),
		writes: &writeCounter{counts: map[string]int{}},
		events: &eventLog{},
	}
	var err error
	if h.key, err = signtest.NewKeyPair(); err != nil {
		t.Fatal(err)
	}
	for _, n := range namespaces {
		real := strings.ToLower(fmt.Sprintf("%s-%s-%s", n, strings.NewReplacer("_", "-", "/", "-").Replace(t.Name()), h.suffix))
		if len(real) > 63 {
			real = real[:55] + "-" + h.suffix
		}
		h.ns[n] = real
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: real}}
		if err := env.Client.Create(h.ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	h.archive = filepath.Join(t.TempDir(), "grype-db.tar.gz")
	copyFile(t, baseArchive, h.archive)
	return h
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	tmp := to + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, to); err != nil {
		t.Fatal(err)
	}
}

// start runs a manager with the controllers until stop (or the test's end).
func (h *harness) start() {
	t := h.t
	t.Helper()
	var err error
	h.db, err = vulndb.New(vulndb.Config{Dir: t.TempDir(), ValidateChecksum: true})
	if err != nil {
		t.Fatal(err)
	}
	co := CacheOptions()
	co.DefaultNamespaces = map[string]cache.Config{}
	for _, real := range h.ns {
		co.DefaultNamespaces[real] = cache.Config{}
	}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 env.Scheme,
		Cache:                  co,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		NewClient: func(cfg *rest.Config, o client.Options) (client.Client, error) {
			c, err := client.New(cfg, o)
			if err != nil {
				return nil, err
			}
			return &countingClient{Client: c, w: h.writes}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	h.events.mu.Lock()
	h.events.next = mgr.GetEventRecorder("imagetrust")
	h.events.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	opts := Options{
		Concurrency:       2,
		ReportGracePeriod: time.Hour,
		SchedulerInterval: 20 * time.Millisecond,
		RetryBaseDelay:    50 * time.Millisecond,
		RetryMaxDelay:     time.Second,
		// Secrets are not watched: a stalled object notices a new Secret when it is retried
		StalledRetryInterval: 200 * time.Millisecond,
		Registry: registry.Options{
			Insecure: []string{h.reg.Host()}, RequestsPerSecond: -1,
			MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		},
		DB:                 h.db,
		DBSource:           DBOptions{Archive: h.archive, ArchivePollInterval: time.Hour},
		Cache:              sharedCache,
		Clock:              h.clock,
		Events:             h.events,
		SkipNameValidation: true,
		// Tests never reach for the public-good Sigstore instance.
		TrustRootCacheDir:          t.TempDir(),
		DisablePublicGoodTrustRoot: true,
	}
	if h.tune != nil {
		h.tune(&opts)
	}
	h.ctrls, err = Setup(ctx, mgr, opts)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- mgr.Start(ctx) }()
	t.Cleanup(h.stop)
}

// stop stops the manager and waits for it.
func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("manager: %v", err)
		}
	case <-time.After(30 * time.Second):
		h.t.Error("manager did not stop within 30s")
	}
	h.cancel = nil
	_ = h.db.Close()
}

// eventually polls f until it returns nil or the timeout passes.
func (h *harness) eventually(timeout time.Duration, what string, f func() error) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s: still failing after %s: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// push pushes img to repoTag on the test registry.
func (h *harness) push(repoTag string, img remote.Taggable) name.Digest {
	h.t.Helper()
	d, err := h.reg.Push(h.ctx, h.reg.Repo(repoTag), img)
	if err != nil {
		h.t.Fatal(err)
	}
	return d
}

func (h *harness) ociOpts() []ociremote.Option {
	return []ociremote.Option{ociremote.WithRemoteOptions(h.reg.RemoteOptions(h.ctx)...)}
}

// sign signs ref with the harness key and, when doc is set, attests it as a syft SBOM.
func (h *harness) sign(ref name.Digest, doc []byte) {
	h.t.Helper()
	if err := signtest.SignImage(h.ctx, ref, h.key, h.ociOpts()...); err != nil {
		h.t.Fatal(err)
	}
	if doc != nil {
		if err := signtest.Attest(h.ctx, ref, ref, "https://syft.dev/bom", doc, h.key, h.ociOpts()...); err != nil {
			h.t.Fatal(err)
		}
	}
}

var (
	generatedMu sync.Mutex
	generated   = map[string][]byte{}
)

// syftSBOM generates (once per digest for the whole suite) the syft JSON SBOM of ref.
func syftSBOM(t testing.TB, ref name.Digest) []byte {
	t.Helper()
	generatedMu.Lock()
	defer generatedMu.Unlock()
	if doc, ok := generated[ref.DigestStr()]; ok {
		return doc
	}
	s, err := (&sbom.Generator{}).Fetch(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	generated[ref.DigestStr()] = s.Document
	return s.Document
}

// keyPolicy is a policy trusting the harness key for every image of the test registry, in
// namespaces labelled imagetrust-test/secure=true.
func (h *harness) keyPolicy(name string) *securityv1alpha1.ImageTrustPolicy {
	return &securityv1alpha1.ImageTrustPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-" + h.suffix},
		Spec: securityv1alpha1.ImageTrustPolicySpec{
			Images:           []string{h.reg.Host() + "/**"},
			RequireSignature: true,
			Authorities: []securityv1alpha1.Authority{{
				Name: "release", Key: &securityv1alpha1.KeyAuthority{Data: string(h.key.PublicPEM)}, IgnoreTransparencyLog: true,
			}},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"imagetrust-test/secure": "true"}},
			Vulnerabilities:   &securityv1alpha1.VulnerabilityGate{FailOnSeverity: securityv1alpha1.SeverityCritical},
			Schedule:          "@every 1h",
		},
	}
}

func (h *harness) create(obj client.Object) {
	h.t.Helper()
	if err := h.c.Create(h.ctx, obj); err != nil {
		h.t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
	h.t.Cleanup(func() { _ = env.Client.Delete(context.Background(), obj) })
}

func (h *harness) labelNamespace(logical string, lbls map[string]string) {
	h.t.Helper()
	var ns corev1.Namespace
	if err := h.c.Get(h.ctx, client.ObjectKey{Name: h.ns[logical]}, &ns); err != nil {
		h.t.Fatal(err)
	}
	if ns.Labels == nil {
		ns.Labels = map[string]string{}
	}
	for k, v := range lbls {
		ns.Labels[k] = v
	}
	if err := h.c.Update(h.ctx, &ns); err != nil {
		h.t.Fatal(err)
	}
}

// ctr is one container of a test pod: the image in the spec and the imageID the kubelet
// would report.
type ctr struct {
	name, image, imageID string
	kind                 string // "", "init" or "ephemeral"
}

// runPod creates a pod and fills in its status through the status subresource, as a kubelet
// would after pulling the images.
func (h *harness) runPod(logicalNS, name string, owner *metav1.OwnerReference, ctrs ...ctr) *corev1.Pod {
	h.t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns[logicalNS], Name: name}}
	if owner != nil {
		pod.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	var ephemeral []corev1.EphemeralContainer
	for _, c := range ctrs {
		switch c.kind {
		case "init":
			pod.Spec.InitContainers = append(pod.Spec.InitContainers, corev1.Container{Name: c.name, Image: c.image})
		case "ephemeral":
			ephemeral = append(ephemeral, corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: c.name, Image: c.image}})
		default:
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: c.name, Image: c.image})
		}
	}
	h.create(pod)
	if len(ephemeral) > 0 {
		pod.Spec.EphemeralContainers = ephemeral
		if err := h.c.SubResource("ephemeralcontainers").Update(h.ctx, pod); err != nil {
			h.t.Fatalf("adding ephemeral containers: %v", err)
		}
	}
	pod.Status.Phase = corev1.PodRunning
	for _, c := range ctrs {
		st := corev1.ContainerStatus{Name: c.name, Image: c.image, ImageID: c.imageID, Ready: true}
		switch c.kind {
		case "init":
			pod.Status.InitContainerStatuses = append(pod.Status.InitContainerStatuses, st)
		case "ephemeral":
			pod.Status.EphemeralContainerStatuses = append(pod.Status.EphemeralContainerStatuses, st)
		default:
			pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, st)
		}
	}
	if err := h.c.Status().Update(h.ctx, pod); err != nil {
		h.t.Fatalf("setting pod status: %v", err)
	}
	return pod
}

// reports lists the reports in a namespace by digest; it fails on two reports for one digest.
func (h *harness) reports(logicalNS string) (map[string]*securityv1alpha1.ImageTrustReport, error) {
	return h.reportsBy(logicalNS, func(r *securityv1alpha1.ImageTrustReport) string { return r.Spec.Digest })
}

// reportsBy lists the reports in a namespace by key; it fails on two reports for one key.
func (h *harness) reportsBy(logicalNS string, key func(*securityv1alpha1.ImageTrustReport) string) (map[string]*securityv1alpha1.ImageTrustReport, error) {
	var list securityv1alpha1.ImageTrustReportList
	if err := h.c.List(h.ctx, &list, client.InNamespace(h.ns[logicalNS])); err != nil {
		return nil, err
	}
	out := map[string]*securityv1alpha1.ImageTrustReport{}
	for i := range list.Items {
		r := &list.Items[i]
		k := key(r)
		if prev, dup := out[k]; dup {
			return nil, fmt.Errorf("two reports for %s in %s: %s and %s", k, logicalNS, prev.Name, r.Name)
		}
		out[k] = r
	}
	return out, nil
}

// readyReport waits until the report for digest in ns is Ready (per cond) and returns it.
func (h *harness) waitReport(logicalNS, digest string, cond func(*securityv1alpha1.ImageTrustReport) error) *securityv1alpha1.ImageTrustReport {
	h.t.Helper()
	var got *securityv1alpha1.ImageTrustReport
	h.eventually(60*time.Second, "report for "+shortDigest(digest)+" in "+logicalNS, func() error {
		rs, err := h.reports(logicalNS)
		if err != nil {
			return err
		}
		r := rs[digest]
		if r == nil {
			return errors.New("no report yet")
		}
		if cond != nil {
			if err := cond(r); err != nil {
				return err
			}
		}
		got = r
		return nil
	})
	return got
}

func conditionOf(r *securityv1alpha1.ImageTrustReport, typ string) *metav1.Condition {
	for i := range r.Status.Conditions {
		if r.Status.Conditions[i].Type == typ {
			return &r.Status.Conditions[i]
		}
	}
	return nil
}

func isReady(r *securityv1alpha1.ImageTrustReport) error {
	c := conditionOf(r, securityv1alpha1.ConditionReady)
	if c == nil || c.Status != metav1.ConditionTrue {
		return fmt.Errorf("not ready: %+v", r.Status.Conditions)
	}
	return nil
}

// apiEvents lists the events.k8s.io events regarding an object.
func (h *harness) apiEvents(ns, kind, name string) ([]eventsv1.Event, error) {
	var list eventsv1.EventList
	if err := h.c.List(h.ctx, &list, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Kind == kind && e.Regarding.Name == name {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Reason < out[j].Reason })
	return out, nil
}

// waitIdle waits until the Engine has nothing queued or in progress.
func (h *harness) waitIdle() {
	h.t.Helper()
	h.eventually(60*time.Second, "engine idle", func() error {
		// Two observations apart: a digest taken off the queue is counted busy a moment later.
		for i := 0; i < 2; i++ {
			if !h.ctrls.Engine.Idle() {
				return errors.New("engine busy")
			}
			time.Sleep(100 * time.Millisecond)
		}
		return nil
	})
}

var _ = io.Discard

// imageOf names an image the way the Engine keys it: repository@digest.
func imageOf(d name.Digest) string { return d.Context().Name() + "@" + d.DigestStr() }
