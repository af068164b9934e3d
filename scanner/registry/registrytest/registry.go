// Package registrytest runs go-containerregistry's real in-memory OCI registry behind
// net/http/httptest, instrumented for tests and demos: request counters and a request log,
// fault injection (status codes, Retry-After, dropped connections, delays), optional basic auth,
// optional TLS with a test CA, Link-header tag pagination, and raw manifest overrides. It also
// builds small but real-looking images (Debian, Alpine, npm/Go apps) that Syft catalogues.
//
// Nothing here is a mock: manifests, blobs, tags and referrers are served by
// github.com/google/go-containerregistry/pkg/registry; the wrapper only observes requests or,
// when a test asks for it, answers instead of the registry.
package registrytest

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Option configures a Registry.
type Option func(*config)

type config struct {
	user, pass  string
	tls         bool
	tagPageSize int
	logOutput   io.Writer
	noReferrers bool
}

// WithBasicAuth makes every request require HTTP basic auth with these credentials; others get
// 401 with a Basic challenge, as a real registry would.
func WithBasicAuth(user, pass string) Option {
	return func(c *config) { c.user, c.pass = user, pass }
}

// WithTLS serves HTTPS with a certificate from a fresh test CA; see Registry.CertPool.
func WithTLS() Option {
	return func(c *config) { c.tls = true }
}

// WithTagPagination makes tags/list return at most n tags per page with a Link rel="next"
// header (what Docker Hub and distribution do). Without it, ggcr's registry truncates at the
// client's n and sends no Link header.
func WithTagPagination(n int) Option {
	return func(c *config) { c.tagPageSize = n }
}

// WithoutReferrersAPI serves no OCI referrers API: its endpoint answers 404, as the
// distribution registry (v3) and other registries without the API do, so clients fall back to
// the referrers tag schema ("sha256-<hex>" index tags, which go-containerregistry's writer
// maintains when it pushes a manifest with a subject).
func WithoutReferrersAPI() Option {
	return func(c *config) { c.noReferrers = true }
}

// WithLogOutput sends ggcr's per-request log lines to w (discarded by default).
func WithLogOutput(w io.Writer) Option {
	return func(c *config) { c.logOutput = w }
}

// Kind classifies a request by the registry API it addresses.
type Kind string

// The request kinds counted separately.
const (
	KindPing      Kind = "ping"
	KindManifest  Kind = "manifest"
	KindBlob      Kind = "blob"
	KindTags      Kind = "tags"
	KindReferrers Kind = "referrers"
	KindOther     Kind = "other"
)

// MethodCounts counts requests of one kind by HTTP method.
type MethodCounts struct {
	GET, HEAD, PUT, POST, PATCH, DELETE, Other int
}

// Sum returns the number of requests of all methods.
func (m MethodCounts) Sum() int {
	return m.GET + m.HEAD + m.PUT + m.POST + m.PATCH + m.DELETE + m.Other
}

func (m *MethodCounts) add(method string) {
	switch method {
	case http.MethodGet:
		m.GET++
	case http.MethodHead:
		m.HEAD++
	case http.MethodPut:
		m.PUT++
	case http.MethodPost:
		m.POST++
	case http.MethodPatch:
		m.PATCH++
	case http.MethodDelete:
		m.DELETE++
	default:
		m.Other++
	}
}

// Counts is a snapshot of the requests the registry received since start or the last Reset,
// including requests answered by injected faults or rejected by basic auth.
type Counts struct {
	Ping      int
	Manifests MethodCounts
	Blobs     MethodCounts
	Tags      int
	Referrers int
	Other     int
	Total     int
}

// Request is one entry of the request log.
type Request struct {
	Method string
	Path   string
	Query  string
	Kind   Kind
	// Status is the answer's status code; 0 when the connection was dropped on purpose.
	Status int
	// Injected is true when a Fault or an override answered instead of the registry.
	Injected bool
	Start    time.Time
	Duration time.Duration
}

// Fault makes the registry misbehave for matching requests.
type Fault struct {
	// PathContains selects requests whose URL path contains it ("" = all, "/manifests/", ...).
	PathContains string
	// Method selects one HTTP method; "" = any.
	Method string
	// Status is the answer. 0 drops the connection without an answer (a network failure).
	Status int
	// Times is how many matching requests fail; negative = forever.
	Times int
	// RetryAfter, if set, is sent as the Retry-After header.
	RetryAfter string
	// Body replaces the default registry-style JSON error body.
	Body string
	// Delay is slept before answering (or before passing through when Status is -1).
	Delay time.Duration
	// Every, when above 1, makes only every Every-th matching request fail (the others pass
	// through and do not count towards Times): "every third request answers 429".
	Every int

	seen int
	hits int
	reg  *Registry
}

// Registry is a running test registry.
type Registry struct {
	srv   *httptest.Server
	cfg   config
	inner http.Handler
	host  string
	pool  *x509.CertPool

	mu          sync.Mutex
	counts      Counts
	log         []Request
	faults      []*Fault
	overrides   []func(http.ResponseWriter, *http.Request) bool
	inFlight    int
	maxInFlight int
	tlsAttempts int
	closeOnce   sync.Once
}

// New starts a registry for a test and closes it when the test ends. It fails the test if the
// registry cannot start.
func New(t testing.TB, opts ...Option) *Registry {
	t.Helper()
	r, err := Start(opts...)
	if err != nil {
		t.Fatalf("registrytest: %v", err)
	}
	t.Cleanup(r.Close)
	return r
}

// Start starts a registry without a testing.T (e.g. for a demo program); call Close when done.
func Start(opts ...Option) (*Registry, error) {
	cfg := config{logOutput: io.Discard}
	for _, o := range opts {
		o(&cfg)
	}
	r := &Registry{
		cfg: cfg,
		inner: registry.New(
			registry.WithReferrersSupport(!cfg.noReferrers),
			registry.Logger(log.New(cfg.logOutput, "registrytest: ", log.LstdFlags)),
		),
	}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(r.serve))
	// TLS handshake failures are expected in tests of certificate handling; keep them quiet.
	r.srv.Config.ErrorLog = log.New(cfg.logOutput, "registrytest: ", log.LstdFlags)
	if !cfg.tls {
		r.srv.Listener = &probeListener{Listener: r.srv.Listener, reg: r}
	}
	if cfg.tls {
		r.srv.StartTLS()
		r.pool = x509.NewCertPool()
		r.pool.AddCert(r.srv.Certificate())
	} else {
		r.srv.Start()
	}
	u, err := url.Parse(r.srv.URL)
	if err != nil {
		r.srv.Close()
		return nil, fmt.Errorf("parsing test server URL: %w", err)
	}
	r.host = u.Host
	return r, nil
}

// Close stops the server. It is safe to call more than once.
func (r *Registry) Close() {
	r.closeOnce.Do(func() {
		r.srv.CloseClientConnections()
		r.srv.Close()
	})
}

// Host returns "127.0.0.1:port", the registry part of image references.
func (r *Registry) Host() string { return r.host }

// URL returns the base URL ("http://127.0.0.1:port" or https).
func (r *Registry) URL() string { return r.srv.URL }

// Repo returns a full repository name on this registry, e.g. Repo("app") = "127.0.0.1:port/app".
func (r *Registry) Repo(repo string) string { return r.host + "/" + repo }

// CertPool returns a pool trusting the server's certificate, nil without WithTLS.
func (r *Registry) CertPool() *x509.CertPool { return r.pool }

// Keychain returns credentials for this registry (anonymous without WithBasicAuth).
func (r *Registry) Keychain() authn.Keychain {
	if r.cfg.user == "" {
		return authn.NewMultiKeychain()
	}
	return staticKeychain{host: r.host, auth: &authn.Basic{Username: r.cfg.user, Password: r.cfg.pass}}
}

type staticKeychain struct {
	host string
	auth authn.Authenticator
}

func (k staticKeychain) Resolve(res authn.Resource) (authn.Authenticator, error) {
	if res.RegistryStr() == k.host {
		return k.auth, nil
	}
	return authn.Anonymous, nil
}

// Transport returns an HTTP transport that reaches this registry (trusting its CA with TLS),
// without credentials.
func (r *Registry) Transport() http.RoundTripper {
	return r.srv.Client().Transport
}

// RemoteOptions are ggcr options that reach this registry: its credentials and, with TLS, a
// transport trusting its CA. Used by Push; handy for tests that talk to it directly.
func (r *Registry) RemoteOptions(ctx context.Context) []remote.Option {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(r.Keychain())}
	if r.cfg.tls {
		opts = append(opts, remote.WithTransport(r.Transport()))
	}
	return opts
}

// Counts returns a snapshot of the request counters.
func (r *Registry) Counts() Counts {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts
}

// Requests returns a copy of the request log.
func (r *Registry) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.log...)
}

// MaxInFlight returns the highest number of requests the server handled at the same time since
// start or the last Reset.
func (r *Registry) MaxInFlight() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.maxInFlight
}

// TLSAttempts returns how many connections to this plain-HTTP registry opened with a TLS
// handshake since start or the last Reset: the https half of a client's scheme probe, which
// the server answers with an HTTP error and which never becomes a request in Counts.
func (r *Registry) TLSAttempts() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tlsAttempts
}

// Reset zeroes the counters, the request log, TLSAttempts and MaxInFlight; faults and
// overrides stay.
func (r *Registry) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts = Counts{}
	r.log = nil
	r.maxInFlight = r.inFlight
	r.tlsAttempts = 0
}

// Fail injects a fault: the next `times` requests (negative = all) whose path contains
// pathSubstring and whose method is method ("" = any) get status (0 = dropped connection), with
// Retry-After set when retryAfter is not empty. Faults are consumed in the order added.
func (r *Registry) Fail(pathSubstring, method string, status, times int, retryAfter string) *Fault {
	return r.AddFault(Fault{PathContains: pathSubstring, Method: method, Status: status, Times: times, RetryAfter: retryAfter})
}

// AddFault injects a fully specified fault; Status -1 only delays (see Fault.Delay) and then
// lets the registry answer.
func (r *Registry) AddFault(f Fault) *Fault {
	r.mu.Lock()
	defer r.mu.Unlock()
	fp := &f
	fp.hits, fp.reg = 0, r
	r.faults = append(r.faults, fp)
	return fp
}

// Hits returns how many requests this fault has matched so far.
func (f *Fault) Hits() int {
	f.reg.mu.Lock()
	defer f.reg.mu.Unlock()
	return f.hits
}

// ClearFaults removes all faults.
func (r *Registry) ClearFaults() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults = nil
}

// Override lets a test answer requests itself: h returns true when it wrote a response. It runs
// after basic auth and faults, before the registry.
func (r *Registry) Override(h func(w http.ResponseWriter, req *http.Request) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.overrides = append(r.overrides, h)
}

// ServeRawManifest makes the registry answer HEAD/GET of repo's manifest `reference` (a tag)
// and of the body's own digest with body and mediaType, whatever the body is — the way to
// serve broken or exotic manifests that ggcr's registry would refuse to store. It returns the
// body's digest ("sha256:...").
func (r *Registry) ServeRawManifest(repo, reference, mediaType string, body []byte) string {
	sum := sha256.Sum256(body)
	dgst := "sha256:" + hex.EncodeToString(sum[:])
	paths := map[string]bool{
		"/v2/" + repo + "/manifests/" + reference: true,
		"/v2/" + repo + "/manifests/" + dgst:      true,
	}
	r.Override(func(w http.ResponseWriter, req *http.Request) bool {
		if !paths[req.URL.Path] || (req.Method != http.MethodGet && req.Method != http.MethodHead) {
			return false
		}
		w.Header().Set("Content-Type", mediaType)
		w.Header().Set("Docker-Content-Digest", dgst)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		if req.Method == http.MethodGet {
			_, _ = w.Write(body)
		}
		return true
	})
	return dgst
}

func kindOf(p string) Kind {
	switch {
	case p == "/v2/" || p == "/v2":
		return KindPing
	case strings.Contains(p, "/manifests/"):
		return KindManifest
	case strings.Contains(p, "/blobs/"):
		return KindBlob
	case strings.HasSuffix(p, "/tags/list"):
		return KindTags
	case strings.Contains(p, "/referrers/"):
		return KindReferrers
	}
	return KindOther
}

// statusWriter remembers the status code for the request log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (r *Registry) serve(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	kind := kindOf(req.URL.Path)
	r.mu.Lock()
	r.inFlight++
	if r.inFlight > r.maxInFlight {
		r.maxInFlight = r.inFlight
	}
	switch kind {
	case KindPing:
		r.counts.Ping++
	case KindManifest:
		r.counts.Manifests.add(req.Method)
	case KindBlob:
		r.counts.Blobs.add(req.Method)
	case KindTags:
		r.counts.Tags++
	case KindReferrers:
		r.counts.Referrers++
	default:
		r.counts.Other++
	}
	r.counts.Total++
	r.mu.Unlock()

	sw := &statusWriter{ResponseWriter: w}
	injected := false
	var once sync.Once
	record := func() {
		once.Do(func() {
			r.mu.Lock()
			r.inFlight--
			r.log = append(r.log, Request{
				Method: req.Method, Path: req.URL.Path, Query: req.URL.RawQuery, Kind: kind,
				Status: sw.status, Injected: injected, Start: start, Duration: time.Since(start),
			})
			r.mu.Unlock()
		})
	}
	defer record()

	if r.cfg.user != "" {
		user, pass, ok := req.BasicAuth()
		if !ok || user != r.cfg.user || pass != r.cfg.pass {
			injected = true
			sw.Header().Set("WWW-Authenticate", `Basic realm="registrytest"`)
			writeRegistryError(sw, req, http.StatusUnauthorized, "", "")
			return
		}
	}

	if f := r.matchFault(req); f != nil {
		if f.Delay > 0 {
			select {
			case <-time.After(f.Delay):
			case <-req.Context().Done():
			}
		}
		if f.Status >= 0 {
			injected = true
			if f.Status == 0 {
				record() // before the client can see the connection drop
				dropConnection(sw)
				return
			}
			if f.RetryAfter != "" {
				sw.Header().Set("Retry-After", f.RetryAfter)
			}
			writeRegistryError(sw, req, f.Status, "", f.Body)
			return
		}
	}

	r.mu.Lock()
	overrides := append([]func(http.ResponseWriter, *http.Request) bool(nil), r.overrides...)
	r.mu.Unlock()
	for _, o := range overrides {
		if o(sw, req) {
			injected = true
			return
		}
	}

	if r.cfg.tagPageSize > 0 && kind == KindTags && req.Method == http.MethodGet {
		r.serveTagsPaginated(sw, req)
		return
	}
	r.inner.ServeHTTP(sw, req)
}

func (r *Registry) matchFault(req *http.Request) *Fault {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.faults {
		if f.Times >= 0 && f.hits >= f.Times {
			continue
		}
		if f.Method != "" && !strings.EqualFold(f.Method, req.Method) {
			continue
		}
		if f.PathContains != "" && !strings.Contains(req.URL.Path, f.PathContains) {
			continue
		}
		f.seen++
		if f.Every > 1 && f.seen%f.Every != 0 {
			continue
		}
		f.hits++
		return f
	}
	return nil
}

// dropConnection closes the TCP connection without an answer, the way a crashing proxy does.
func dropConnection(w http.ResponseWriter) {
	var rw http.ResponseWriter = w
	if sw, ok := w.(*statusWriter); ok {
		rw = sw.ResponseWriter
	}
	hj, ok := rw.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

// registryCode picks the distribution-spec error code a real registry sends with status.
func registryCode(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "UNAUTHORIZED"
	case http.StatusForbidden:
		return "DENIED"
	case http.StatusNotFound:
		return "MANIFEST_UNKNOWN"
	case http.StatusTooManyRequests:
		return "TOOMANYREQUESTS"
	case http.StatusServiceUnavailable:
		return "UNAVAILABLE"
	}
	return "UNKNOWN"
}

func writeRegistryError(w http.ResponseWriter, req *http.Request, status int, code, body string) {
	if body == "" {
		if code == "" {
			code = registryCode(status)
		}
		b, _ := json.Marshal(map[string]any{"errors": []map[string]string{{
			"code": code, "message": strings.ToLower(http.StatusText(status)) + " (registrytest)",
		}}})
		body = string(b)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if req.Method != http.MethodHead {
		_, _ = io.WriteString(w, body)
	}
}

// serveTagsPaginated asks the registry for the full list and cuts pages itself, with correct
// "last" handling and Link headers.
func (r *Registry) serveTagsPaginated(w http.ResponseWriter, req *http.Request) {
	inner := req.Clone(req.Context())
	inner.URL.RawQuery = ""
	inner.RequestURI = ""
	rec := httptest.NewRecorder()
	r.inner.ServeHTTP(rec, inner)
	if rec.Code != http.StatusOK {
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
		return
	}
	var list struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil {
		writeRegistryError(w, req, http.StatusInternalServerError, "", "")
		return
	}
	sort.Strings(list.Tags)
	q := req.URL.Query()
	if last := q.Get("last"); last != "" {
		i := sort.SearchStrings(list.Tags, last)
		for i < len(list.Tags) && list.Tags[i] <= last {
			i++
		}
		list.Tags = list.Tags[i:]
	}
	n := r.cfg.tagPageSize
	if v, err := strconv.Atoi(q.Get("n")); err == nil && v > 0 && v < n {
		n = v
	}
	if len(list.Tags) > n {
		list.Tags = list.Tags[:n]
		next := url.Values{}
		next.Set("n", strconv.Itoa(n))
		next.Set("last", list.Tags[n-1])
		w.Header().Set("Link", fmt.Sprintf(`<%s?%s>; rel="next"`, req.URL.Path, next.Encode()))
	}
	if list.Tags == nil {
		list.Tags = []string{}
	}
	b, _ := json.Marshal(list)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// Push writes an image or index (anything remote.Taggable) to ref on this registry. A ref
// without a registry host ("app:1.0") is placed on this registry.
func (r *Registry) Push(ctx context.Context, ref string, t remote.Taggable) (name.Digest, error) {
	return Push(ctx, r.qualify(ref), t, r.RemoteOptions(ctx)...)
}

// PushTags pushes t once and tags it with every tag in repo on this registry.
func (r *Registry) PushTags(ctx context.Context, repo string, t remote.Taggable, tags ...string) (name.Digest, error) {
	return PushTags(ctx, r.qualify(repo), t, tags, r.RemoteOptions(ctx)...)
}

func (r *Registry) qualify(ref string) string {
	first, _, found := strings.Cut(ref, "/")
	if found && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return ref
	}
	return r.host + "/" + ref
}

// Push writes an image or index to ref (tag or digest) with ggcr and returns its digest
// reference.
func Push(ctx context.Context, ref string, t remote.Taggable, opts ...remote.Option) (name.Digest, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return name.Digest{}, fmt.Errorf("parsing %q: %w", ref, err)
	}
	opts = append([]remote.Option{remote.WithContext(ctx)}, opts...)
	if err := remote.Push(r, t, opts...); err != nil {
		return name.Digest{}, fmt.Errorf("pushing %s: %w", ref, err)
	}
	return digestRef(r.Context(), t)
}

// PushTags pushes t to repo once and then points each tag at it (one manifest PUT per tag,
// several in flight).
func PushTags(ctx context.Context, repo string, t remote.Taggable, tags []string, opts ...remote.Option) (name.Digest, error) {
	rp, err := name.NewRepository(repo)
	if err != nil {
		return name.Digest{}, fmt.Errorf("parsing %q: %w", repo, err)
	}
	d, err := digestRef(rp, t)
	if err != nil {
		return name.Digest{}, err
	}
	opts = append([]remote.Option{remote.WithContext(ctx)}, opts...)
	pusher, err := remote.NewPusher(opts...)
	if err != nil {
		return name.Digest{}, err
	}
	if err := pusher.Push(ctx, d, t); err != nil {
		return name.Digest{}, fmt.Errorf("pushing %s: %w", d, err)
	}
	// The content is in place, so each tag is a bare manifest PUT; a few in parallel keep
	// thousands of tags (pagination tests) fast.
	work := make(chan string)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for tag := range work {
				if err := pusher.Put(ctx, rp.Tag(tag), t); err != nil {
					select {
					case errs <- fmt.Errorf("tagging %s:%s: %w", repo, tag, err):
					default:
					}
				}
			}
		}()
	}
	for _, tag := range tags {
		work <- tag
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return name.Digest{}, err
	default:
	}
	return d, nil
}

func digestRef(repo name.Repository, t remote.Taggable) (name.Digest, error) {
	raw, err := t.RawManifest()
	if err != nil {
		return name.Digest{}, err
	}
	sum := sha256.Sum256(raw)
	return repo.Digest("sha256:" + hex.EncodeToString(sum[:])), nil
}
