package verify

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/oci"
	ctypes "github.com/sigstore/cosign/v2/pkg/types"
)

// Attestation is a verified in-toto statement about the digest, from cosign's .att tag or a
// Sigstore bundle; Signer.Format says which.
type Attestation struct {
	// PredicateType is the statement's predicate type, taken from the signed statement (not
	// from the unsigned OCI annotation).
	PredicateType string `json:"predicateType"`
	// Predicate is the raw predicate JSON.
	Predicate json.RawMessage `json:"predicate"`
	// Signer is who signed the attestation.
	Signer Signer `json:"signer"`
}

// AttestationResult is the outcome of VerifyAttestations.
type AttestationResult struct {
	State State `json:"state"`
	// Attestations lists every (attestation, authority) pair that verified.
	Attestations []Attestation `json:"attestations,omitempty"`
	// Reason explains the state in terms a person can act on.
	Reason string `json:"reason,omitempty"`
}

// VerifyAttestations checks the in-toto attestations stored for ref (cosign's .att tag and
// Sigstore bundles in referrers) against every authority. An attestation verifies only if its
// in-toto subject is ref's digest, so an attestation copied from another image is rejected
// even though its signature is genuine.
func (v *Verifier) VerifyAttestations(ctx context.Context, ref name.Digest, auths []Authority) AttestationResult {
	r, out, ok := v.newRun(ctx, ref, auths, kindAttestation)
	if !ok {
		return AttestationResult{State: out.state, Reason: out.reason}
	}
	return r.attestationResult(r.attestations(ctx))
}

// attestationResult lists verified attestations in the order the authorities were given.
func (r *run) attestationResult(out outcome) AttestationResult {
	result := AttestationResult{State: out.state, Reason: out.reason}
	for _, c := range r.auths {
		for _, h := range out.hits {
			if h.signer.Authority != c.name {
				continue
			}
			if h.statement == nil { // set on every attestation hit; kept for fail-closed clarity
				return AttestationResult{State: Error, Reason: "internal error: verified attestation without a statement"}
			}
			result.Attestations = append(result.Attestations, Attestation{
				PredicateType: h.statement.PredicateType,
				Predicate:     h.statement.Predicate,
				Signer:        h.signer,
			})
		}
	}
	return result
}

// attestationClaims binds a signed attestation to h. A statement that does not even decode is
// malformed — its signer published garbage — which is a different thing from a well-formed
// statement about another artifact (copied from it).
func attestationClaims(sig oci.Signature, h v1.Hash, ann map[string]interface{}) error {
	if _, err := legacyStatement(sig, h); err != nil && !errors.Is(err, errOtherSubject) {
		return fmt.Errorf("attestation is malformed: %w", err)
	}
	if err := cosign.IntotoSubjectClaimVerifier(sig, h, ann); err != nil {
		return fmt.Errorf("attestation subject is not %s (copied from another artifact?): %w", h, err)
	}
	return nil
}

// errOtherSubject: a well-formed in-toto statement about another artifact.
var errOtherSubject = errors.New("attestation subject is another artifact")

type statement struct {
	Type          string `json:"_type"`
	PredicateType string `json:"predicateType"`
	Subject       []struct {
		Name   string            `json:"name"`
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
	Predicate json.RawMessage `json:"predicate"`
}

// legacyStatement decodes the DSSE envelope of a verified cosign attestation and re-checks
// that the statement is about h, independently of cosign's claim verifier.
func legacyStatement(att oci.Signature, h v1.Hash) (*statement, error) {
	pl, err := att.Payload()
	if err != nil {
		return nil, err
	}
	var env struct {
		PayloadType string `json:"payloadType"`
		Payload     string `json:"payload"`
	}
	if err := json.Unmarshal(pl, &env); err != nil {
		return nil, fmt.Errorf("decoding DSSE envelope: %w", err)
	}
	raw, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, fmt.Errorf("decoding DSSE payload: %w", err)
	}
	return statementAbout(env.PayloadType, raw, h)
}

// statementAbout decodes an in-toto statement from a DSSE payload and checks that one of its
// subjects is h.
func statementAbout(payloadType string, payload []byte, h v1.Hash) (*statement, error) {
	if payloadType != ctypes.IntotoPayloadType {
		return nil, fmt.Errorf("unexpected DSSE payload type %q", payloadType)
	}
	var st statement
	if err := json.Unmarshal(payload, &st); err != nil {
		return nil, fmt.Errorf("decoding in-toto statement: %w", err)
	}
	for _, s := range st.Subject {
		if d, ok := s.Digest[h.Algorithm]; ok && d == h.Hex {
			return &st, nil
		}
	}
	return nil, fmt.Errorf("%w: not %s", errOtherSubject, h)
}

// SBOM formats returned by SBOMFromAttestation; they are syft's format IDs.
const (
	FormatSPDXJSON      = "spdx-json"
	FormatSPDXTagValue  = "spdx-tag-value"
	FormatCycloneDXJSON = "cyclonedx-json"
	FormatCycloneDXXML  = "cyclonedx-xml"
	FormatSyftJSON      = "syft-json"
)

// SBOMFromAttestation extracts the SBOM document from an SPDX, CycloneDX or syft-JSON
// attestation. Predicates stored as a JSON string (cosign's `--type spdx` for tag-value, or a
// string-wrapped document) are unwrapped. ok is false for other predicate types or an empty
// predicate.
func SBOMFromAttestation(a Attestation) (format string, doc []byte, ok bool) {
	jsonFormat, textFormat := sbomFormats(a.PredicateType)
	if jsonFormat == "" {
		return "", nil, false
	}
	p := bytes.TrimSpace(a.Predicate)
	if len(p) > 0 && p[0] == '"' {
		var s string
		if err := json.Unmarshal(p, &s); err != nil {
			return "", nil, false
		}
		p = bytes.TrimSpace([]byte(s))
		if len(p) > 0 && p[0] != '{' {
			if textFormat == "" {
				return "", nil, false
			}
			return textFormat, p, true
		}
	}
	if len(p) == 0 || p[0] != '{' || !json.Valid(p) {
		return "", nil, false
	}
	return jsonFormat, p, true
}

// IsSBOMPredicate reports whether a predicate type declares an SBOM (SPDX, CycloneDX, syft).
func IsSBOMPredicate(predicateType string) bool {
	f, _ := sbomFormats(predicateType)
	return f != ""
}

// sbomFormats are the JSON and text formats an SBOM predicate type declares ("" when none).
func sbomFormats(predicateType string) (jsonFormat, textFormat string) {
	pt := strings.TrimSuffix(predicateType, "/")
	switch {
	case isVersioned(pt, "https://spdx.dev/Document"):
		return FormatSPDXJSON, FormatSPDXTagValue
	case isVersioned(pt, "https://cyclonedx.org/bom"):
		return FormatCycloneDXJSON, FormatCycloneDXXML
	case isVersioned(pt, "https://syft.dev/bom"):
		return FormatSyftJSON, ""
	}
	return "", ""
}

// isVersioned accepts base itself and base followed by a version path ("/v2.3", "/v1.5").
func isVersioned(pt, base string) bool {
	return pt == base || (strings.HasPrefix(pt, base+"/v") && len(pt) > len(base)+2)
}

// Provenance is what the scanner needs from a SLSA provenance attestation.
type Provenance struct {
	PredicateType string `json:"predicateType"`
	// BuilderID identifies the build platform that produced the artifact.
	BuilderID string `json:"builderID"`
}

// ProvenanceFromAttestation reads the builder id of a SLSA provenance attestation: v0.1 and
// v0.2 (predicate.builder.id) or v1 (predicate.runDetails.builder.id). ok is false for other
// predicate types or when the builder id is missing.
func ProvenanceFromAttestation(a Attestation) (Provenance, bool) {
	var id string
	switch a.PredicateType {
	case "https://slsa.dev/provenance/v0.1", "https://slsa.dev/provenance/v0.2":
		var p struct {
			Builder struct {
				ID string `json:"id"`
			} `json:"builder"`
		}
		if err := json.Unmarshal(a.Predicate, &p); err != nil {
			return Provenance{}, false
		}
		id = p.Builder.ID
	case "https://slsa.dev/provenance/v1":
		var p struct {
			RunDetails struct {
				Builder struct {
					ID string `json:"id"`
				} `json:"builder"`
			} `json:"runDetails"`
		}
		if err := json.Unmarshal(a.Predicate, &p); err != nil {
			return Provenance{}, false
		}
		id = p.RunDetails.Builder.ID
	default:
		return Provenance{}, false
	}
	if id == "" {
		return Provenance{}, false
	}
	return Provenance{PredicateType: a.PredicateType, BuilderID: id}, true
}
