package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
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

// ErrNotAnImage is returned (wrapped) when a reference names something that is not a container
// image: an OCI artifact (a manifest with an artifactType, or a config that is not an image
// config), a cosign signature, attestation or SBOM manifest, or a referrers index. It is not a
// failure to retry: callers skip the reference.
var ErrNotAnImage = errors.New("not a container image")

// errPlainHTTP refuses, without sending it, an https request to a port that answered a TLS
// handshake with plain HTTP: it cannot succeed, and sending it would spend a token.
var errPlainHTTP = errors.New("this port answered TLS with plain HTTP; list the registry as insecure to use plain HTTP")

// answeredPlainHTTP reports whether a TLS handshake failed because the server answered in plain
// HTTP (an https request to a plain-HTTP registry).
func answeredPlainHTTP(err error) bool {
	var rec tls.RecordHeaderError
	return errors.As(err, &rec) && rec.Conn != nil
}

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
