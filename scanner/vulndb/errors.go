package vulndb

import (
	"errors"
	"fmt"

	"github.com/imagetrust/imagetrust/scanner/internal/redact"
)

// Sentinel errors; every error the Manager returns for these conditions wraps one of them so
// callers can branch with errors.Is.
var (
	// ErrNoDB means no vulnerability database is installed or loaded yet.
	ErrNoDB = errors.New("vulndb: no vulnerability database installed")
	// ErrStale means the loaded database is older than Config.MaxAge; matching refuses to run
	// so that an outdated database never yields a falsely clean result.
	ErrStale = errors.New("vulndb: vulnerability database is stale")
	// ErrInvalidDB means an installed or imported database failed grype's validation
	// (checksum mismatch, unsupported schema, unreadable file).
	ErrInvalidDB = errors.New("vulndb: vulnerability database is invalid")
	// ErrSBOMTooLarge means an SBOM document exceeded Config.MaxSBOMBytes.
	ErrSBOMTooLarge = errors.New("vulndb: SBOM document too large")
	// ErrInvalidSBOM means an SBOM document could not be decoded as syft JSON, SPDX or CycloneDX.
	ErrInvalidSBOM = errors.New("vulndb: invalid SBOM document")
	// ErrUpdate means checking or downloading a database update failed.
	ErrUpdate = errors.New("vulndb: database update failed")
	// ErrArtifact means an OCI artifact does not hold a database archive in the expected shape.
	ErrArtifact = errors.New("vulndb: invalid database artifact")
)

// sanitizedError keeps the sentinel for errors.Is but deliberately drops the underlying error
// chain: its messages may carry credentials that scrub removed from the text.
type sanitizedError struct {
	kind error
	msg  string
}

func (e *sanitizedError) Error() string { return e.msg }
func (e *sanitizedError) Unwrap() error { return e.kind }

// sanitized wraps err under kind with a scrubbed message "<kind>: <context>: <err>".
func sanitized(kind error, context string, err error) error {
	msg := kind.Error()
	if context != "" {
		msg += ": " + context
	}
	if err != nil {
		msg += ": " + err.Error()
	}
	return &sanitizedError{kind: kind, msg: redact.Text(msg)}
}

func errorf(kind error, format string, args ...any) error {
	return sanitized(kind, fmt.Sprintf(format, args...), nil)
}
