package scanner

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imagetrust/imagetrust/scanner/internal/redact"
	"github.com/imagetrust/imagetrust/scanner/policy"
	"github.com/imagetrust/imagetrust/scanner/registry"
	"github.com/imagetrust/imagetrust/scanner/sbom"
	"github.com/imagetrust/imagetrust/scanner/severity"
	"github.com/imagetrust/imagetrust/scanner/verify"
	"github.com/imagetrust/imagetrust/scanner/verify/trustroot"
	"github.com/imagetrust/imagetrust/scanner/vulndb"
)

// The pipeline's vocabulary, so a caller (the controllers, the CLI) talks to this one package.
type (
	// RegistryOptions configures the registry client: limits, retries, credentials, insecure hosts.
	RegistryOptions = registry.Options
	// RegistryClient is the one registry client every request goes through.
	RegistryClient = registry.Client
	// RegistryShared is the per-registry-host state (budgets, ping answers, plain-HTTP ports)
	// that registry clients with different credentials share through RegistryOptions.Shared.
	RegistryShared = registry.Shared
	// TagFilter selects tags of a repository (include/exclude patterns, semver, latest N).
	TagFilter = registry.TagFilter
	// SBOM is one validated SBOM document of an image digest.
	SBOM = sbom.SBOM
	// SBOMCache holds SBOMs by image digest on disk.
	SBOMCache = sbom.Cache
	// SBOMSource produces SBOMs (the Syft generator can be replaced through Config.Generator).
	SBOMSource = sbom.Source
	// DB is the vulnerability database manager (load, import, update, match).
	DB = vulndb.Manager
	// DBStatus describes the active vulnerability database.
	DBStatus = vulndb.Status
	// RematchInfo describes one rematch of the fleet after a database change.
	RematchInfo = vulndb.RematchInfo
	// Finding is one vulnerability matched to one package.
	Finding = vulndb.Finding
	// Authority is one party whose signatures are accepted.
	Authority = verify.Authority
	// SignatureResult is the outcome of a signature verification.
	SignatureResult = verify.SignatureResult
	// Signer identifies who made a verified signature.
	Signer = verify.Signer
	// SignatureFormat is the layout and envelope a signature verified in.
	SignatureFormat = verify.SignatureFormat
	// SignatureState is Verified, Unsigned, Invalid, Error or NotRequired.
	SignatureState = verify.State
	// Verdict is Trusted, Untrusted or Unknown.
	Verdict = policy.Verdict
	// Combined is the verdict over every policy that applies to an image.
	Combined = policy.Combined
	// PolicyResult is the verdict of one policy.
	PolicyResult = policy.Result
	// Outcome is one check's result.
	Outcome = policy.Outcome
	// TrustRootProvider supplies an authority's Sigstore trusted material without blocking.
	TrustRootProvider = trustroot.Provider
	// TrustRoots hands out one trust-root provider per source and runs the TUF ones.
	TrustRoots = trustroot.Pool
	// TrustRootsConfig configures TrustRoots: TUF cache, the public-good switch, load hooks.
	TrustRootsConfig = trustroot.PoolConfig
)

// NewTrustRoots returns an empty pool of trust-root providers; it contacts nothing until
// Start.
func NewTrustRoots(cfg TrustRootsConfig) *TrustRoots { return trustroot.NewPool(cfg) }

// Signature states and verdicts.
const (
	Verified  = verify.Verified
	Unsigned  = verify.Unsigned
	Invalid   = verify.Invalid
	Error     = verify.Error
	Trusted   = policy.Trusted
	Untrusted = policy.Untrusted
	Unknown   = policy.Unknown

	FormatCosignLegacy   = verify.FormatCosignLegacy
	FormatSigstoreBundle = verify.FormatSigstoreBundle
	FormatNotation       = verify.FormatNotation
)

// Errors callers test with errors.Is.
var (
	// ErrNoDB: no vulnerability database is loaded yet.
	ErrNoDB = vulndb.ErrNoDB
	// ErrStaleDB: the database is older than the allowed maximum age.
	ErrStaleDB = vulndb.ErrStale
	// ErrNoSBOM: no source had an SBOM for the image (the sources' reasons are in the message).
	ErrNoSBOM = sbom.ErrNotFound
	// ErrPlatformNotFound: a requested platform is not in the image index.
	ErrPlatformNotFound = registry.ErrPlatformNotFound
	// ErrNotAnImage: the reference names a cosign signature, attestation or SBOM, an OCI
	// artifact or a referrers index, not a container image. Skip it; retrying cannot help.
	ErrNotAnImage = registry.ErrNotAnImage
)

// NewRegistryShared returns per-host state for RegistryOptions.Shared: give the same one to
// every registry client of a process so each registry sees one rate and concurrency budget.
func NewRegistryShared() *RegistryShared { return registry.NewShared() }

// NewRegistryClient builds the registry client a Scanner (and tag listing) uses.
func NewRegistryClient(opts RegistryOptions) *RegistryClient { return registry.New(opts) }

// KeychainFromDockerConfig parses a docker config.json (or .dockercfg) document into a
// keychain. Errors never echo credentials.
func KeychainFromDockerConfig(data []byte) (authn.Keychain, error) {
	return registry.KeychainFromDockerConfigJSON(data)
}

// Redact removes credentials, signed query strings and tokens from text. The pipeline's own
// errors and reasons are already redacted; this is for text that reaches a log, an event or a
// status field from elsewhere.
func Redact(text string) string { return redact.Text(text) }

// ErrorClass says what a caller should do about an error from the pipeline.
type ErrorClass int

const (
	// ErrorNone is a nil error.
	ErrorNone ErrorClass = iota
	// ErrorCanceled: the caller's context ended; nothing is known about the image.
	ErrorCanceled
	// ErrorTransient: retry later with backoff (rate limits, 5xx answers, network failures).
	ErrorTransient
	// ErrorUnauthorized: the registry refused the credentials; a person must fix them.
	ErrorUnauthorized
	// ErrorNotFound: the repository, tag or digest does not exist.
	ErrorNotFound
	// ErrorOther: anything else (a malformed manifest, a missing platform, an invalid
	// document). Callers retry it with backoff unless they know better.
	ErrorOther
	// ErrorNotAnImage: the reference names an artifact, not an image (ErrNotAnImage). Callers
	// skip it and do not retry.
	ErrorNotAnImage
)

// Classify sorts an error from the pipeline into an ErrorClass.
func Classify(err error) ErrorClass {
	switch {
	case err == nil:
		return ErrorNone
	case errors.Is(err, context.Canceled):
		return ErrorCanceled
	case errors.Is(err, registry.ErrNotAnImage):
		return ErrorNotAnImage
	case registry.IsUnauthorized(err):
		return ErrorUnauthorized
	case registry.IsTransient(err):
		return ErrorTransient
	case registry.IsNotFound(err):
		return ErrorNotFound
	}
	return ErrorOther
}

// ListTags lists a repository's image tags through the registry client and keeps those the
// filter selects. Tags of cosign signatures, attestations and SBOMs ("sha256-<hex>.sig",
// ".att", ".sbom") and of the referrers tag schema ("sha256-<hex>") are never listed: they
// name artifacts about images, not images. The filter is checked first, so a bad pattern costs
// no registry request.
func (s *Scanner) ListTags(ctx context.Context, repo string, f TagFilter) ([]string, error) {
	if err := ValidateTagFilter(f); err != nil {
		return nil, err
	}
	tags, err := s.cfg.Registry.ListTags(ctx, repo)
	if err != nil {
		return nil, err
	}
	return registry.FilterTags(slices.DeleteFunc(tags, registry.IsArtifactTag), f)
}

// IsArtifactTag reports whether a tag names a signature, attestation, SBOM or referrers index
// by cosign's and the OCI distribution spec's naming conventions rather than an image.
func IsArtifactTag(tag string) bool { return registry.IsArtifactTag(tag) }

// ValidateTagFilter reports a filter whose patterns or constraints do not parse.
func ValidateTagFilter(f TagFilter) error {
	_, err := registry.FilterTags(nil, f)
	return err
}

// Severity names in Grype's order, and the helpers over them (see package severity).
const (
	SeverityCritical   = severity.Critical
	SeverityHigh       = severity.High
	SeverityMedium     = severity.Medium
	SeverityLow        = severity.Low
	SeverityNegligible = severity.Negligible
	SeverityUnknown    = severity.Unknown
)

// Severities returns the severity names, most severe first.
func Severities() []string { return severity.Names() }

// SeverityRank orders severities: Unknown 0 … Critical 5, as Grype does.
func SeverityRank(s string) int { return severity.Rank(s) }

// NormalizeSeverity returns the canonical severity name of s, Unknown for anything else.
func NormalizeSeverity(s string) string { return severity.Normalize(s) }

// RepositoryOf returns the canonical repository of an image reference, as the scanner names
// images: "nginx:1.27" → "index.docker.io/library/nginx".
func RepositoryOf(ref string) (string, error) {
	repo, _, err := registry.ParseImage(ref)
	return repo, err
}

// ParseImage returns the canonical repository and the tag of an image reference, as Resolve
// reports them: "nginx" runs "latest", "app:1.2@sha256:…" runs the digest under tag 1.2, and
// "app@sha256:…" has no tag. Policies match on that tag wherever they are applied.
func ParseImage(ref string) (repository, tag string, err error) { return registry.ParseImage(ref) }

// Digest returns the manifest digest a reference points at now — an image index's for a
// multi-arch tag — with one HEAD through the registry client.
func (s *Scanner) Digest(ctx context.Context, ref string) (string, error) {
	r, err := name.ParseReference(ref, s.cfg.Registry.NameOptions(ref)...)
	if err != nil {
		return "", fmt.Errorf("invalid image reference %q: %w", ref, err)
	}
	desc, err := remote.Head(r, s.cfg.Registry.RemoteOptions(ctx)...)
	if err != nil {
		return "", redactErr(fmt.Errorf("HEAD %s: %w", ref, err))
	}
	return desc.Digest.String(), nil
}
