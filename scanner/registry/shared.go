package registry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// hostFactTTL bounds how long what a registry host told us about itself (its answer to the
// API-version check, that it speaks plain HTTP, that it lacks the referrers API) is believed.
// A registry reconfigured meanwhile costs at most one wasted request per fact after that.
const hostFactTTL = 10 * time.Minute

// maxPingBody bounds the answer to GET /v2/ that is kept; real ones are "{}" or a short error.
const maxPingBody = 4 << 10

// Shared is the per-registry-host state that every Client given the same Shared has in common,
// whatever its credentials: the rate and concurrency budget of each host, the registry's answer
// to the unauthenticated API-version check (GET /v2/), which ports answer TLS with plain HTTP,
// and which registries lack the referrers API. Give one Shared to all the Clients of a process
// (one per set of credentials) so that a registry sees one budget, one ping per TTL and no
// repeated probes. Clients sharing it should use the same limits: the first Client to reach a
// host sets that host's rate and concurrency. It also bounds, for all of them together, the
// memory of immutable content (manifests and configs, kept apart per Client so one set of
// credentials never reads what another fetched) and of tags seen before. The zero value is
// not usable; call NewShared.
type Shared struct {
	pingFlight singleflight.Group // concurrent pings of one host share one request
	content    *contentMemo       // manifests and configs, keyed per Client (credentials)
	tags       *seenTags          // tags resolved before by any Client: HEAD, not GET, next time

	mu        sync.Mutex
	limiters  map[string]*hostLimiter
	pings     map[string]pingAnswer // by scheme://host:port
	plain     map[string]time.Time  // host:port that answered a TLS handshake with plain HTTP
	noRefsAPI map[string]time.Time  // registry hosts (as hostKey names them) without the referrers API
	now       func() time.Time
}

// NewShared returns an empty Shared.
func NewShared() *Shared {
	return &Shared{
		content:   newContentMemo(maxMemoEntryBytes, maxMemoBytes),
		tags:      newSeenTags(maxSeenTags),
		limiters:  map[string]*hostLimiter{},
		pings:     map[string]pingAnswer{},
		plain:     map[string]time.Time{},
		noRefsAPI: map[string]time.Time{},
		now:       time.Now,
	}
}

// limiter returns host's budget, creating it from opts on first use.
func (s *Shared) limiter(host string, opts Options) *hostLimiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.limiters[host]; ok {
		return l
	}
	l := &hostLimiter{}
	if opts.MaxConcurrentPerRegistry > 0 {
		l.sem = make(chan struct{}, opts.MaxConcurrentPerRegistry)
	}
	if opts.RequestsPerSecond > 0 {
		l.bucket = newTokenBucket(opts.RequestsPerSecond, opts.Burst)
	}
	s.limiters[host] = l
	return l
}

// pingAnswer is a registry's answer to GET /v2/: only its status and headers matter to a
// client (the auth challenge and the API version), so it can be replayed to later pings.
type pingAnswer struct {
	status int
	header http.Header
	body   []byte
	at     time.Time
}

// isPing reports whether req is the unauthenticated API-version check every client library
// sends before talking to a registry.
func isPing(req *http.Request) bool {
	return req.Method == http.MethodGet && (req.URL.Path == "/v2/" || req.URL.Path == "/v2") &&
		req.URL.RawQuery == "" && req.Header.Get("Authorization") == ""
}

func pingKey(req *http.Request) string { return req.URL.Scheme + "://" + hostPort(req.URL) }

// ping answers a ping from memory when the host answered one within hostFactTTL, else sends
// it with send, once for all concurrent callers, and remembers an answer a client acts on
// (200: no auth needed; 401: the challenge).
func (s *Shared) ping(req *http.Request, send func(*http.Request) (*http.Response, error)) (*http.Response, error) {
	key := pingKey(req)
	s.mu.Lock()
	a, ok := s.pings[key]
	s.mu.Unlock()
	if ok && s.now().Sub(a.at) <= hostFactTTL {
		return a.response(req), nil
	}
	v, err, joined := s.pingFlight.Do(key, func() (any, error) {
		resp, err := send(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxPingBody+1))
		if err != nil {
			return nil, err
		}
		a := pingAnswer{status: resp.StatusCode, header: resp.Header.Clone(), body: body, at: s.now()}
		if (a.status == http.StatusOK || a.status == http.StatusUnauthorized) && len(body) <= maxPingBody {
			s.mu.Lock()
			if len(s.pings) > 10_000 { // a bound, not a policy: entries are tiny and refetchable
				clear(s.pings)
			}
			s.pings[key] = a
			s.mu.Unlock()
		}
		return a, nil
	})
	if err != nil && joined && req.Context().Err() == nil &&
		(errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		// the request joined was given up by its own caller, not by this one
		return send(req)
	}
	if err != nil {
		return nil, err
	}
	return v.(pingAnswer).response(req), nil
}

// response replays the answer as a fresh response to req.
func (a pingAnswer) response(req *http.Request) *http.Response {
	return &http.Response{
		Status:        http.StatusText(a.status),
		StatusCode:    a.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        a.header.Clone(),
		Body:          io.NopCloser(bytes.NewReader(a.body)),
		ContentLength: int64(len(a.body)),
		Request:       req,
	}
}

// markPlainHTTP records that hp answered a TLS handshake with plain HTTP.
func (s *Shared) markPlainHTTP(hp string) { s.mark(s.plain, hp) }

// speaksPlainHTTP reports whether hp answered TLS with plain HTTP within hostFactTTL.
func (s *Shared) speaksPlainHTTP(hp string) bool { return s.known(s.plain, hp) }

// markNoReferrersAPI records that host answered the referrers API with something else than an
// OCI index: it lacks the API, and clients use the referrers tag schema instead.
func (s *Shared) markNoReferrersAPI(host string) { s.mark(s.noRefsAPI, host) }

// lacksReferrersAPI reports whether host lacked the referrers API within hostFactTTL.
func (s *Shared) lacksReferrersAPI(host string) bool { return s.known(s.noRefsAPI, host) }

func (s *Shared) mark(m map[string]time.Time, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(m) > 10_000 {
		clear(m)
	}
	m[key] = s.now()
}

func (s *Shared) known(m map[string]time.Time, key string) bool {
	s.mu.Lock()
	at, ok := m[key]
	s.mu.Unlock()
	return ok && s.now().Sub(at) <= hostFactTTL
}

// referrersPath reports whether path is the referrers API of some repository.
func referrersPath(path string) bool {
	return strings.HasPrefix(path, "/v2/") && strings.Contains(path, "/referrers/")
}
