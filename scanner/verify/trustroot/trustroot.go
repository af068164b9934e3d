// Package trustroot supplies Sigstore trusted material (Fulcio certificate authorities, Rekor
// logs, certificate-transparency logs and timestamp authorities) to the verifier without ever
// blocking it: a Provider answers from what it already holds, or says why it holds nothing.
//
// Three providers cover the ways Sigstore users distribute trust: a trusted_root.json document
// (the format `cosign verify --trusted-root` and sigstore-go take, the air-gapped choice), the
// public-good instance through TUF with sigstore-go's embedded root, and a TUF mirror of it.
// TUF providers load in the background, keep their metadata and targets in a disk cache, and
// refresh periodically; a caller that finds one not loaded reports "Unknown", never "Verified".
package trustroot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/sigstore/sigstore-go/pkg/root"

	"github.com/imagetrust/imagetrust/scanner/internal/redact"
)

// Provider supplies trusted material. Material never blocks on the network: it returns the
// material held now, or an error for which IsUnavailable is true.
type Provider interface {
	// Name identifies the trust root in reasons and statuses.
	Name() string
	// Material returns the current trusted material.
	Material(ctx context.Context) (root.TrustedMaterial, error)
}

// ErrNotLoaded means a provider has not finished its first load yet.
var ErrNotLoaded = errors.New("not loaded yet")

// UnavailableError says why a provider has no material. It wraps ErrNotLoaded while the first
// load is pending, or the load's failure once it failed.
type UnavailableError struct {
	// Name is the provider's name.
	Name string
	// Err is the cause, with URLs sanitised.
	Err error
}

// Error implements error.
func (e *UnavailableError) Error() string {
	return fmt.Sprintf("trust root %q unavailable: %v", e.Name, e.Err)
}

// Unwrap returns the cause.
func (e *UnavailableError) Unwrap() error { return e.Err }

// IsUnavailable reports whether err says a trust root has no material (pending or failed):
// verification against it cannot be judged.
func IsUnavailable(err error) bool {
	var u *UnavailableError
	return errors.As(err, &u)
}

// Static is trusted material fixed at construction, from a document or built in code.
type Static struct {
	name     string
	material root.TrustedMaterial
	digest   string // of the document it was parsed from; empty when built in code
}

// NewStatic wraps material built in code (for example by sigstore-go's root.NewTrustedRoot).
func NewStatic(name string, m root.TrustedMaterial) *Static {
	return &Static{name: name, material: m}
}

// FromJSON parses a trusted_root.json document (media type
// application/vnd.dev.sigstore.trustedroot+json). Errors say what is wrong with the document;
// they are configuration errors, reported once, not per verification.
func FromJSON(name string, doc []byte) (*Static, error) {
	tr, err := root.NewTrustedRootFromJSON(doc)
	if err != nil {
		return nil, fmt.Errorf("trust root %q: invalid trusted_root.json: %v", name, err)
	}
	if len(tr.FulcioCertificateAuthorities()) == 0 && len(tr.RekorLogs()) == 0 && len(tr.TimestampingAuthorities()) == 0 {
		return nil, fmt.Errorf("trust root %q: trusted_root.json has no certificate authority, transparency log or timestamp authority", name)
	}
	return &Static{name: name, material: tr, digest: digestOf(doc)}, nil
}

// Name implements Provider.
func (s *Static) Name() string { return s.name }

// MarshalJSON identifies the document (its name and digest), not the parsed material, so
// configurations that name different documents fingerprint differently.
func (s *Static) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		TrustedRoot string `json:"trustedRoot"`
		Digest      string `json:"digest,omitempty"`
	}{s.name, s.digest})
}

// digestOf is "sha256:<hex>" of data.
func digestOf(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Material implements Provider; it always succeeds.
func (s *Static) Material(context.Context) (root.TrustedMaterial, error) { return s.material, nil }

// sanitize strips credentials and query strings from URLs in an error's message.
func sanitize(err error) error {
	if err == nil {
		return nil
	}
	return errors.New(redact.Text(err.Error()))
}
