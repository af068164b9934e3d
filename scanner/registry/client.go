// Package registry is the one registry client the scanner uses: every request to a container
// registry (tag listing, manifests and configs, cosign's signature fetches, referrers, Syft's
// layer pulls, the air-gapped DB pull) goes through a single transport that bounds concurrency
// and request rate per registry host, retries transient failures with backoff (honouring
// Retry-After), and reports every attempt to a metrics hook. It is built on
// go-containerregistry; RemoteOptions hands the same transport, credentials and connections to
// other ggcr-based libraries, Image hands Syft an image read through it, and what a registry
// said once (its ping answer, a digest's manifest and config, a subject's referrers for a few
// seconds) is not asked again.
package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Defaults applied by New to zero-valued Options fields. They aim at a scanner that touches many
// images on shared public registries: polite enough not to trip abuse limits, fast enough for
// a cluster's worth of images.
const (
	DefaultRequestsPerSecond        = 20.0
	DefaultMaxConcurrentPerRegistry = 8
	DefaultMaxRetries               = 4
	DefaultMinBackoff               = 500 * time.Millisecond
	DefaultMaxBackoff               = 30 * time.Second
	DefaultTimeout                  = 60 * time.Second
	DefaultUserAgent                = "imagetrust-scanner"
	DefaultReferrersTTL             = 30 * time.Second
)

// pullerTTL bounds how long the Client reuses the per-repository connections go-containerregistry
// set up (ping answer, negotiated scheme, bearer token, resolved credentials): long enough that
// a fleet scan pays the handshake once per repository, short enough that credentials a keychain
// resolves dynamically are looked up again.
const pullerTTL = 15 * time.Minute

// Options configures a Client. The zero value is usable: every zero field gets its Default*
// value; negative numbers switch a limit off.
type Options struct {
	// Keychain resolves credentials per registry; nil means anonymous.
	Keychain authn.Keychain
	// Insecure lists registry hosts ("host" or "host:port") that may be spoken to over plain HTTP
	// or over TLS without certificate verification. An entry without a port matches any port.
	Insecure []string
	// RootCAs verifies registry TLS certificates; nil uses the system pool. Include the system
	// roots yourself if private and public registries are both needed.
	RootCAs *x509.CertPool
	// RequestsPerSecond is a token-bucket rate applied per registry host; negative = unlimited.
	RequestsPerSecond float64
	// Burst is the bucket size; zero means 2×RequestsPerSecond (at least 1).
	Burst int
	// MaxConcurrentPerRegistry bounds in-flight requests per host (a request is in flight until
	// its response body is closed or read to the end); negative = unbounded.
	MaxConcurrentPerRegistry int
	// MaxRetries is the number of retries after the first attempt; negative = never retry.
	MaxRetries int
	// MinBackoff and MaxBackoff bound the exponential backoff between attempts; MaxBackoff also
	// caps a server's Retry-After.
	MinBackoff, MaxBackoff time.Duration
	// Timeout bounds each attempt until the response headers arrive; the body is then governed by
	// the caller's context only, so large layer downloads are not cut off. Negative = none.
	Timeout time.Duration
	// Observe, if set, is called once per attempt (including retried ones) with the registry
	// host, the HTTP method, the status code (0 when no response arrived) and the time to the
	// response headers. It must be fast and safe for concurrent use. Not reported: the https
	// half of the scheme probe to a plain-HTTP port of a host clients may reach over HTTP (an
	// expected failure, sent once per hostFactTTL), and answers served from memory (pings).
	Observe func(host string, method string, code int, dur time.Duration)
	// UserAgent is sent on every request (ggcr appends its own version).
	UserAgent string
	// Shared is the per-host state (rate and concurrency budgets, ping answers, plain-HTTP
	// ports, referrers API support) this Client uses; nil gives it its own. Give every Client
	// of a process the same Shared so a registry sees one budget whatever the credentials.
	Shared *Shared
	// ReferrersTTL is how long Referrers keeps a subject's listing so that the phases of one
	// assessment (signature discovery, SBOM referrers) share one request; 0 means
	// DefaultReferrersTTL, negative lists afresh on every call.
	ReferrersTTL time.Duration
}

// withDefaults fills zero fields so the rest of the package never has to special-case them.
func (o Options) withDefaults() Options {
	if o.RequestsPerSecond == 0 {
		o.RequestsPerSecond = DefaultRequestsPerSecond
	}
	if o.Burst <= 0 && o.RequestsPerSecond > 0 {
		o.Burst = int(2 * o.RequestsPerSecond)
		if o.Burst < 1 {
			o.Burst = 1
		}
	}
	if o.MaxConcurrentPerRegistry == 0 {
		o.MaxConcurrentPerRegistry = DefaultMaxConcurrentPerRegistry
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = DefaultMaxRetries
	} else if o.MaxRetries < 0 {
		o.MaxRetries = 0
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	} else if o.Timeout < 0 {
		o.Timeout = 0
	}
	if o.UserAgent == "" {
		o.UserAgent = DefaultUserAgent
	}
	if o.Keychain == nil {
		o.Keychain = authn.NewMultiKeychain() // resolves to Anonymous
	}
	if o.Shared == nil {
		o.Shared = NewShared()
	}
	if o.ReferrersTTL == 0 {
		o.ReferrersTTL = DefaultReferrersTTL
	}
	return o
}

// Client talks to container registries. It is safe for concurrent use; share one per process so
// the per-host limits are global.
type Client struct {
	opts      Options
	insecure  map[string]bool
	secure    http.RoundTripper
	noVerify  http.RoundTripper
	transport *limitingTransport
	shared    *Shared

	pullMu   sync.Mutex
	puller   *remote.Puller
	pullerAt time.Time

	id        uint64        // scopes this Client's entries in the shared content memory
	referrers *referrerMemo // referrers listings by subject, for ReferrersTTL
}

// clientIDs numbers Clients, so content one Client fetched with its credentials is never
// served to another Client (other credentials) from the memory they share.
var clientIDs atomic.Uint64

// New builds a Client; see Options for the defaults.
func New(opts Options) *Client {
	opts = opts.withDefaults()
	c := &Client{
		opts:      opts,
		insecure:  map[string]bool{},
		shared:    opts.Shared,
		id:        clientIDs.Add(1),
		referrers: newReferrerMemo(opts.ReferrersTTL),
	}
	for _, h := range opts.Insecure {
		h = strings.ToLower(strings.TrimSpace(h))
		h = strings.TrimPrefix(strings.TrimPrefix(h, "https://"), "http://")
		h = strings.TrimSuffix(h, "/")
		if h != "" {
			c.insecure[h] = true
		}
	}
	c.secure = baseTransport(&tls.Config{RootCAs: opts.RootCAs, MinVersion: tls.VersionTLS12})
	c.noVerify = baseTransport(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}) //nolint:gosec // only for hosts listed in Options.Insecure
	c.transport = &limitingTransport{c: c}
	return c
}

// baseTransport clones ggcr's tuned default transport so connection pooling behaves like ggcr's
// own, changing only TLS verification.
func baseTransport(cfg *tls.Config) http.RoundTripper {
	var t *http.Transport
	if dt, ok := remote.DefaultTransport.(*http.Transport); ok {
		t = dt.Clone()
	} else {
		t = http.DefaultTransport.(*http.Transport).Clone()
	}
	t.TLSClientConfig = cfg
	return t
}

// isInsecure matches a request or reference host against Options.Insecure.
func (c *Client) isInsecure(host string) bool {
	host = strings.ToLower(host)
	if c.insecure[host] {
		return true
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		return c.insecure[host[:i]]
	}
	return false
}

// contentKey names a repository@digest in the shared content memory, for this Client only.
func (c *Client) contentKey(ref name.Digest) string {
	return strconv.FormatUint(c.id, 10) + "|" + ref.String()
}

// mayFallBackToHTTP reports whether clients try plain HTTP after https for host: hosts listed
// in Options.Insecure, and those go-containerregistry treats as local (localhost, loopback and
// private addresses).
func (c *Client) mayFallBackToHTTP(host string) bool {
	if c.isInsecure(host) {
		return true
	}
	reg, err := name.NewRegistry(host, name.WeakValidation)
	return err == nil && reg.Scheme() == "http"
}

// Transport returns the shared RoundTripper: per-host concurrency bound and rate limit,
// retries with backoff, Retry-After, Observe. Give it to any HTTP-based registry library.
func (c *Client) Transport() http.RoundTripper { return c.transport }

// Options returns the effective options after defaults were applied.
func (c *Client) Options() Options { return c.opts }

// neverRetry disables ggcr's own retry layer: retries live in our transport, and stacking both
// would multiply attempts (and rate-limit pressure) by 4.
func neverRetry(error) bool { return false }

// RemoteOptions returns the ggcr remote options every caller should use: our transport, the
// keychain, ctx and user agent, with ggcr's own retries switched off (ours apply), and the
// Client's shared puller, so a repository's handshake (ping, scheme, token) is made once and
// reused by every call made with these options. Build them per call (or at least per few
// minutes): the puller is replaced every pullerTTL.
func (c *Client) RemoteOptions(ctx context.Context) []remote.Option {
	opts := c.baseOptions(ctx)
	if p := c.currentPuller(); p != nil {
		opts = append(opts, remote.Reuse(p))
	}
	return opts
}

func (c *Client) baseOptions(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(c.opts.Keychain),
		remote.WithTransport(c.transport),
		remote.WithUserAgent(c.opts.UserAgent),
		remote.WithRetryPredicate(neverRetry),
		remote.WithRetryStatusCodes(),
		remote.WithRetryBackoff(remote.Backoff{Duration: time.Millisecond, Factor: 1, Steps: 1}),
	}
}

// pull returns the shared puller, or why there is none.
func (c *Client) pull() (*remote.Puller, error) {
	if p := c.currentPuller(); p != nil {
		return p, nil
	}
	return nil, errors.New("registry: no puller could be built from the client's options")
}

// currentPuller returns the puller every read shares, replacing it once it is pullerTTL old.
func (c *Client) currentPuller() *remote.Puller {
	c.pullMu.Lock()
	defer c.pullMu.Unlock()
	if c.puller != nil && time.Since(c.pullerAt) < pullerTTL {
		return c.puller
	}
	p, err := remote.NewPuller(c.baseOptions(context.Background())...)
	if err != nil {
		return nil // only invalid option values fail, and ours are fixed: calls then set up their own
	}
	c.puller, c.pullerAt = p, time.Now()
	return p
}

// NameOptions returns the name options to parse ref with: name.Insecure when ref's registry is
// listed in Options.Insecure (ggcr then falls back to plain HTTP).
func (c *Client) NameOptions(ref string) []name.Option {
	if reg := registryOf(ref); reg != "" && c.isInsecure(reg) {
		return []name.Option{name.Insecure}
	}
	return nil
}

// registryOf returns the registry part of a reference string the way ggcr splits it: the first
// path component when it looks like a host (has '.' or ':' or is localhost).
func registryOf(ref string) string {
	if i := strings.IndexAny(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	first, _, found := strings.Cut(ref, "/")
	if !found {
		return ""
	}
	if strings.ContainsAny(first, ".:") || first == "localhost" {
		return strings.ToLower(first)
	}
	return ""
}
