package registry

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
)

// hostLimiter holds the per-registry-host budget: a semaphore for in-flight requests and a
// token bucket for request rate. Auth servers (e.g. auth.docker.io) get their own budget.
type hostLimiter struct {
	sem    chan struct{} // nil = unbounded
	bucket *tokenBucket  // nil = unlimited
}

func (c *Client) limiterFor(host string) *hostLimiter { return c.shared.limiter(host, c.opts) }

func (l *hostLimiter) acquire(ctx context.Context) error {
	if l.sem == nil {
		return nil
	}
	select {
	case l.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *hostLimiter) release() {
	if l.sem != nil {
		<-l.sem
	}
}

// tokenBucket is a reservation-style token bucket: a waiter takes its token immediately (the
// balance may go negative) and sleeps until the balance would have covered it, so waiters are
// served in arrival order without a queue.
type tokenBucket struct {
	mu     sync.Mutex
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
}

func newTokenBucket(rate float64, burst int) *tokenBucket {
	if burst < 1 {
		burst = 1
	}
	return &tokenBucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: time.Now()}
}

func (b *tokenBucket) wait(ctx context.Context) error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	now := time.Now()
	b.tokens += now.Sub(b.last).Seconds() * b.rate
	if b.tokens > b.burst {
		b.tokens = b.burst
	}
	b.last = now
	b.tokens--
	var d time.Duration
	if b.tokens < 0 {
		d = time.Duration(-b.tokens / b.rate * float64(time.Second))
	}
	b.mu.Unlock()
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		b.tokens++ // give the unused reservation back
		b.mu.Unlock()
		return ctx.Err()
	}
}

// limitingTransport is the RoundTripper behind Client.Transport.
type limitingTransport struct {
	c *Client
}

// hostKey canonicalises a URL host so "r.io" and "r.io:443" share one budget.
func hostKey(u *url.URL) string {
	h := strings.ToLower(u.Host)
	switch {
	case u.Scheme == "https" && strings.HasSuffix(h, ":443"):
		h = strings.TrimSuffix(h, ":443")
	case u.Scheme == "http" && strings.HasSuffix(h, ":80"):
		h = strings.TrimSuffix(h, ":80")
	}
	return h
}

// hostPort is the URL's host with the scheme's default port made explicit: what a connection
// is opened to, so facts about a port (it speaks plain HTTP) never leak to another port.
func hostPort(u *url.URL) string {
	h := strings.ToLower(u.Host)
	if u.Port() != "" {
		return h
	}
	if u.Scheme == "http" {
		return h + ":80"
	}
	return h + ":443"
}

// replayable reports whether a failed attempt may be sent again. A body that cannot be
// re-created must not be retried, and a POST/PATCH that carried a body may already have been
// applied by the server (e.g. a blob chunk appended), so it is sent once only.
func replayable(req *http.Request) bool {
	hasBody := req.Body != nil && req.Body != http.NoBody
	if !hasBody {
		return true
	}
	if req.GetBody == nil {
		return false
	}
	switch req.Method {
	case http.MethodPost, http.MethodPatch:
		return false
	}
	return true
}

// RoundTrip implements http.RoundTripper. Before anything is sent it answers what the host
// already told us: a ping (GET /v2/) from the remembered answer, and an https request to a port
// that answered TLS with plain HTTP with an immediate error (the https half of ggcr's parallel
// https/http probe), neither of which takes a token or reaches Observe.
func (t *limitingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c := t.c
	if req.URL.Scheme == "https" && c.shared.speaksPlainHTTP(hostPort(req.URL)) {
		return nil, fmt.Errorf("https://%s: %w", req.URL.Host, errPlainHTTP)
	}
	if isPing(req) {
		return c.shared.ping(req, t.send)
	}
	resp, err := t.send(req)
	if err != nil {
		return nil, err
	}
	if req.Method == http.MethodGet && referrersPath(req.URL.Path) && noReferrersAPI(resp) {
		c.shared.markNoReferrersAPI(hostKey(req.URL))
	}
	return resp, nil
}

// noReferrersAPI reads a referrers API answer the way the distribution spec defines it: a
// registry with the API answers 200 with an OCI index (empty when nothing refers to the
// subject); 404 or another content type means it has none.
func noReferrersAPI(resp *http.Response) bool {
	switch resp.StatusCode {
	case http.StatusNotFound, http.StatusNotAcceptable:
		return true
	case http.StatusOK:
		return resp.Header.Get("Content-Type") != string(types.OCIImageIndex)
	}
	return false
}

// send makes the attempts of one request: per-host concurrency slot and token, Observe, and
// retries with backoff (Retry-After honoured) while the failure is transient.
func (t *limitingTransport) send(req *http.Request) (*http.Response, error) {
	c := t.c
	ctx := req.Context()
	host := hostKey(req.URL)
	lim := c.limiterFor(host)
	maxRetries := c.opts.MaxRetries
	if !replayable(req) {
		maxRetries = 0
	}
	for attempt := 0; ; attempt++ {
		areq, err := t.attemptRequest(req, attempt)
		if err != nil {
			return nil, err
		}
		if err := lim.acquire(ctx); err != nil {
			return nil, err
		}
		if err := lim.bucket.wait(ctx); err != nil {
			lim.release()
			return nil, err
		}
		resp, cancel, err := t.attempt(areq, host)

		retry := attempt < maxRetries && ctx.Err() == nil
		if err != nil {
			retry = retry && isRetryableNetErr(err)
		} else {
			retry = retry && retryableStatus(resp.StatusCode)
		}
		if !retry {
			if err != nil {
				cancel(nil)
				lim.release()
				return nil, err
			}
			resp.Body = &releasingBody{ReadCloser: resp.Body, done: func() {
				cancel(nil)
				lim.release()
			}}
			return resp, nil
		}

		delay := backoff(attempt, c.opts.MinBackoff, c.opts.MaxBackoff)
		if resp != nil {
			if ra, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
				delay = min(ra, c.opts.MaxBackoff)
			}
			// Drain a little so the connection can be reused, then let it go.
			_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
			resp.Body.Close()
		}
		cancel(nil)
		lim.release()

		if err := sleepCtx(ctx, delay); err != nil {
			last := "network error"
			if resp != nil {
				last = fmt.Sprintf("status %d", resp.StatusCode)
			}
			return nil, fmt.Errorf("gave up retrying %s request after %d attempt(s) (last: %s): %w",
				req.Method, attempt+1, last, err)
		}
	}
}

// attemptRequest is the request of one attempt: a clone with a fresh body and our user agent.
func (t *limitingTransport) attemptRequest(req *http.Request, attempt int) (*http.Request, error) {
	areq := req.Clone(req.Context())
	if attempt > 0 && req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return nil, fmt.Errorf("re-creating request body for retry: %w", err)
		}
		areq.Body = body
	}
	if areq.Header.Get("User-Agent") == "" {
		areq.Header.Set("User-Agent", t.c.opts.UserAgent)
	}
	return areq, nil
}

// attempt sends one attempt, bounded by Options.Timeout until the headers arrive, and reports
// it to Observe — except the expected failure of an https probe to a plain-HTTP port, which is
// how a client discovers that the port speaks plain HTTP, not a registry failure.
func (t *limitingTransport) attempt(areq *http.Request, host string) (*http.Response, context.CancelCauseFunc, error) {
	c := t.c
	base := c.secure
	if c.isInsecure(host) || c.isInsecure(areq.URL.Host) {
		base = c.noVerify
	}
	actx, cancel := context.WithCancelCause(areq.Context())
	var timer *time.Timer
	if c.opts.Timeout > 0 {
		timer = time.AfterFunc(c.opts.Timeout, func() { cancel(errAttemptTimeout) })
	}
	start := time.Now()
	resp, err := base.RoundTrip(areq.WithContext(actx))
	dur := time.Since(start)
	if timer != nil && !timer.Stop() {
		// The deadline fired: even if headers squeaked in, the body would be cut off.
		if resp != nil {
			resp.Body.Close()
			resp = nil
		}
		err = fmt.Errorf("no response within %s: %w", c.opts.Timeout, errAttemptTimeout)
	}
	code := 0
	if err == nil {
		code = resp.StatusCode
	}
	probe := false
	if err != nil && areq.URL.Scheme == "https" && answeredPlainHTTP(err) {
		c.shared.markPlainHTTP(hostPort(areq.URL))
		probe = c.mayFallBackToHTTP(areq.URL.Host)
	}
	if c.opts.Observe != nil && !probe {
		c.opts.Observe(host, areq.Method, code, dur)
	}
	return resp, cancel, err
}

// backoff is exponential from min, capped at max, with "equal jitter" (half fixed, half random)
// so synchronized clients spread out without ever retrying immediately.
func backoff(attempt int, minD, maxD time.Duration) time.Duration {
	d := minD
	for i := 0; i < attempt && d < maxD; i++ {
		d *= 2
	}
	if d > maxD {
		d = maxD
	}
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + rand.N(half+1)
}

// parseRetryAfter understands both forms RFC 9110 allows: delay-seconds and an HTTP-date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int64(24*time.Hour/time.Second) {
			secs = int64(24 * time.Hour / time.Second)
		}
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		d := t.Sub(now)
		if d < 0 {
			d = 0
		}
		return d, true
	}
	return 0, false
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// releasingBody frees the host's concurrency slot and the attempt's context when the body is
// closed or fully read, whichever comes first.
type releasingBody struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (b *releasingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.once.Do(b.done)
	}
	return n, err
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.done)
	return err
}
