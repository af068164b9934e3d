// Package sbom obtains a software bill of materials for an image digest: from an OCI referrer
// artifact, by generating one with Syft straight from the registry, or from an on-disk cache
// keyed by image digest. Every document is validated (format identified, packages counted)
// before it is handed on, so callers never match vulnerabilities against something that is not
// an SBOM.
package sbom

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// Where an SBOM came from; recorded so reports can say how much to trust it.
const (
	// SourceAttested marks an SBOM taken from a verified in-toto attestation.
	SourceAttested = "Attested"
	// SourceReferrer marks an SBOM taken from an OCI referrer artifact of the image.
	SourceReferrer = "Referrer"
	// SourceGenerated marks an SBOM produced by Syft from the image's layers.
	SourceGenerated = "Generated"
)

// Document formats understood by Detect.
const (
	// FormatSPDXJSON is SPDX 2.x in its JSON serialisation.
	FormatSPDXJSON = "spdx-json"
	// FormatCycloneDXJSON is CycloneDX in its JSON serialisation.
	FormatCycloneDXJSON = "cyclonedx-json"
	// FormatSyftJSON is Syft's native JSON document.
	FormatSyftJSON = "syft-json"
)

// SBOM is one validated SBOM document for one image digest.
type SBOM struct {
	// Source is SourceAttested, SourceReferrer or SourceGenerated.
	Source string `json:"source"`
	// Format is FormatSPDXJSON, FormatCycloneDXJSON or FormatSyftJSON.
	Format string `json:"format"`
	// Document is the raw SBOM, exactly as fetched or generated.
	Document []byte `json:"-"`
	// Packages is the number of packages Detect counted in Document.
	Packages int `json:"packages"`
	// Digest is "sha256:<hex>" of Document; the cache uses it to detect corruption.
	Digest string `json:"digest"`
	// ImageDigest is the "sha256:<hex>" manifest digest the SBOM describes.
	ImageDigest string `json:"imageDigest"`
	// CreatedAt is when the SBOM was produced (or, for referrers, when it claims to be).
	CreatedAt time.Time `json:"createdAt"`
	// Note is human-readable provenance: which artifact was used, what was rejected on the way.
	Note string `json:"note,omitempty"`
}

// ErrNotFound means a source has no SBOM for the digest, so the next source should be tried.
// Any other error means the source failed and its answer is unknown.
var ErrNotFound = errors.New("no SBOM found")

// Source produces an SBOM for an image digest.
type Source interface {
	// Name is a short label used in combined failure reasons ("referrer", "generate", ...).
	Name() string
	// Fetch returns a validated SBOM, an error wrapping ErrNotFound, or another error.
	Fetch(ctx context.Context, image name.Digest) (*SBOM, error)
}

// DocumentDigest returns "sha256:<hex>" of doc, the form used in SBOM.Digest.
func DocumentDigest(doc []byte) string {
	sum := sha256.Sum256(doc)
	return "sha256:" + hex.EncodeToString(sum[:])
}
