package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// ErrPlatformNotFound is returned (wrapped) by Resolve when a requested platform is not in an
// image index. It is a "user must fix" condition: retrying will not make the platform appear.
var ErrPlatformNotFound = errors.New("platform not found in image index")

// ErrMalformedManifest is returned (wrapped) when a registry serves a manifest that cannot be
// parsed or whose media type is not one we can resolve. Retrying rarely helps; the image (or the
// registry) is broken.
var ErrMalformedManifest = errors.New("malformed or unsupported manifest")

// errAttemptTimeout marks an attempt that got no response headers within Options.Timeout; it is
// distinct from the caller's context expiring, which must never be retried.
var errAttemptTimeout = errors.New("registry request timed out waiting for a response")

// statusCode extracts the HTTP status of a registry error, 0 if the error did not come from a
// registry response.
func statusCode(err error) (int, []transport.Diagnostic) {
	var terr *transport.Error
	if errors.As(err, &terr) {
		return terr.StatusCode, terr.Errors
	}
	return 0, nil
}

func hasCode(diags []transport.Diagnostic, codes ...transport.ErrorCode) bool {
	for _, d := range diags {
		for _, c := range codes {
			if d.Code == c {
				return true
			}
		}
	}
	return false
}

// IsNotFound reports whether err means the repository, tag or digest does not exist (404 or a
// *_UNKNOWN registry error code). The user must fix the reference; retrying will not help.
func IsNotFound(err error) bool {
	code, diags := statusCode(err)
	return code == http.StatusNotFound ||
		hasCode(diags, transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode)
}

// IsUnauthorized reports whether the registry refused the credentials or access (401/403,
// UNAUTHORIZED or DENIED). The user must fix credentials or permissions.
func IsUnauthorized(err error) bool {
	code, diags := statusCode(err)
	return code == http.StatusUnauthorized || code == http.StatusForbidden ||
		hasCode(diags, transport.UnauthorizedErrorCode, transport.DeniedErrorCode)
}

// IsRateLimited reports whether the registry throttled us (429 or TOOMANYREQUESTS) even after
// the transport's retries: the caller should back off and try later.
func IsRateLimited(err error) bool {
	code, diags := statusCode(err)
	return code == http.StatusTooManyRequests || hasCode(diags, transport.TooManyRequestsErrorCode)
}

// IsTransient reports whether err is worth retrying later: rate limiting, a 5xx/408 answer, or a
// network failure (timeout, refused or reset connection). Errors that need a human (401, 403,
// 404, malformed manifests, TLS verification failures) are not transient.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	if IsRateLimited(err) {
		return true
	}
	if code, _ := statusCode(err); code != 0 {
		return retryableStatus(code)
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	return isRetryableNetErr(err) || errors.Is(err, context.DeadlineExceeded)
}

// retryableStatus lists the answers that mean "the registry could not serve this right now".
func retryableStatus(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooManyRequests,
		http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// isRetryableNetErr separates flaky networks (retry) from misconfiguration such as a TLS
// verification failure or a plain-HTTP server spoken to over TLS (never retry: it cannot heal,
// and ggcr's insecure ping races https against http and needs the https leg to fail fast).
func isRetryableNetErr(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, errAttemptTimeout) {
		return true
	}
	var (
		recErr   tls.RecordHeaderError
		uaErr    x509.UnknownAuthorityError
		hostErr  x509.HostnameError
		certErr  x509.CertificateInvalidError
		verifErr *tls.CertificateVerificationError
	)
	if errors.As(err, &recErr) || errors.As(err, &uaErr) || errors.As(err, &hostErr) ||
		errors.As(err, &certErr) || errors.As(err, &verifErr) {
		return false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed) {
		return true
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.IsTimeout || dnsErr.IsTemporary
	}
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		return true
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return true
	}
	return false
}

// urlPattern finds URLs embedded in free text, e.g. the "GET https://..." prefix of ggcr's
// transport errors or a URL echoed back in a registry's error body.
var urlPattern = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.\-]*://[^\s"'<>]+`)

// secretPatterns catch credentials that are not inside a URL: authorization header values and
// key=value pairs whose key names a secret.
var secretPatterns = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`(?i)(authorization:\s*)(bearer|basic)\s+\S+`), "$1$2 REDACTED"},
	{regexp.MustCompile(`(?i)\b((?:access_|refresh_|id_|registry|identity)?token|password|passwd|secret|sig|signature|x-amz-signature|x-amz-credential|x-goog-signature|x-goog-credential)=[^&\s"'<>]+`), "$1=REDACTED"},
	{regexp.MustCompile(`(?i)"((?:access_|refresh_)?token|password|auth|identitytoken|registrytoken)"\s*:\s*"[^"]*"`), `"$1":"REDACTED"`},
}

// SanitizeURL removes what must never reach a log or a status field from a URL: userinfo,
// the query string (signed redirects and tokens live there) and the fragment. Text that does not
// parse as a URL has userinfo-looking and query parts cut textually.
func SanitizeURL(raw string) string {
	u, err := url.Parse(raw)
	if err == nil && u.Scheme != "" && u.Host != "" {
		u.User = nil
		u.RawQuery = ""
		u.ForceQuery = false
		u.Fragment = ""
		u.RawFragment = ""
		return u.String()
	}
	s := raw
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	if scheme := strings.Index(s, "://"); scheme >= 0 {
		rest := s[scheme+3:]
		end := strings.IndexByte(rest, '/')
		if end < 0 {
			end = len(rest)
		}
		if at := strings.LastIndexByte(rest[:end], '@'); at >= 0 {
			s = s[:scheme+3] + rest[at+1:]
		}
	}
	return s
}

// SanitizeText applies SanitizeURL to every URL in s and redacts bearer/basic credentials and
// token-like key=value pairs outside URLs.
func SanitizeText(s string) string {
	s = urlPattern.ReplaceAllStringFunc(s, func(m string) string {
		// Keep punctuation that ends a sentence out of the URL.
		trail := ""
		for len(m) > 0 && strings.ContainsRune(".,;:)]}", rune(m[len(m)-1])) {
			trail = m[len(m)-1:] + trail
			m = m[:len(m)-1]
		}
		return SanitizeURL(m) + trail
	})
	for _, p := range secretPatterns {
		s = p.re.ReplaceAllString(s, p.repl)
	}
	s = bearerPattern.ReplaceAllStringFunc(s, func(m string) string {
		word, tok, _ := strings.Cut(m, " ")
		if tok == "REDACTED" || !looksLikeToken(tok) {
			return m
		}
		return word + " REDACTED"
	})
	return s
}

// bearerPattern finds "Bearer <x>" / "Basic <x>" outside an Authorization header; looksLikeToken
// then decides, so prose such as "basic authentication" survives.
var bearerPattern = regexp.MustCompile(`(?i)\b(?:bearer|basic) [A-Za-z0-9._~+/\-]+=*`)

// looksLikeToken: base64 of "user:pass", or something long with the digits and punctuation of a
// JWT or opaque token.
func looksLikeToken(s string) bool {
	if raw, err := base64.StdEncoding.DecodeString(s); err == nil && strings.Contains(string(raw), ":") {
		return true
	}
	if len(s) < 12 {
		return false
	}
	return strings.ContainsAny(s, "0123456789._-+/=")
}

// sanitizedError carries a scrubbed message while keeping the original chain reachable through
// errors.Is/As, so IsNotFound & co. still work on sanitised errors.
type sanitizedError struct {
	msg string
	err error
}

func (e *sanitizedError) Error() string { return e.msg }
func (e *sanitizedError) Unwrap() error { return e.err }

// SanitizeError returns an error whose message has every URL sanitised (see SanitizeURL) and
// credentials redacted. The original error stays in the Unwrap chain for errors.Is/As; print
// only the returned error's message. nil stays nil.
func SanitizeError(err error) error {
	if err == nil {
		return nil
	}
	if se, ok := err.(*sanitizedError); ok {
		return se
	}
	return &sanitizedError{msg: SanitizeText(err.Error()), err: err}
}
