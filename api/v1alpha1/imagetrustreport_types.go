package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Bounds that keep a report far below etcd's 1.5 MiB object limit whatever an image holds.
// The worst case (every list full, every string at its maximum) is about 600 KiB; realistic
// reports are a few KiB.
const (
	// MaxReportWorkloads is how many workloads a report lists; WorkloadCount has the total.
	MaxReportWorkloads = 20
	// MaxReportFindings is the hard cap on top findings kept in a report.
	MaxReportFindings = 100
	// MaxReportTags is how many tags a report lists.
	MaxReportTags = 32
)

// SignatureState is the outcome of signature verification.
// +kubebuilder:validation:Enum=Verified;Unsigned;Invalid;Error;NotRequired
type SignatureState string

// Signature states.
const (
	// SignatureVerified means at least one authority verified a signature.
	SignatureVerified SignatureState = "Verified"
	// SignatureUnsigned means the image has no signature at all.
	SignatureUnsigned SignatureState = "Unsigned"
	// SignatureInvalid means signatures exist but none verifies against the authorities.
	SignatureInvalid SignatureState = "Invalid"
	// SignatureError means verification could not complete (registry down, bad key config).
	SignatureError SignatureState = "Error"
	// SignatureNotRequired means no policy asks for a signature on this image.
	SignatureNotRequired SignatureState = "NotRequired"
)

// SBOMSource says where a report's SBOM came from.
// +kubebuilder:validation:Enum=Attested;Referrer;Generated;None
type SBOMSource string

// SBOM origins, most trustworthy first.
const (
	SBOMAttested  SBOMSource = "Attested"
	SBOMReferrer  SBOMSource = "Referrer"
	SBOMGenerated SBOMSource = "Generated"
	SBOMNone      SBOMSource = "None"
)

// Verdict is the policy outcome for an image.
// +kubebuilder:validation:Enum=Trusted;Untrusted;Unknown
type Verdict string

// Verdicts.
const (
	VerdictTrusted   Verdict = "Trusted"
	VerdictUntrusted Verdict = "Untrusted"
	VerdictUnknown   Verdict = "Unknown"
)

// ImageTrustReportSpec identifies the image a report is about and where it was seen.
// The controller owns it; users read it.
type ImageTrustReportSpec struct {
	// Image is the repository without tag or digest, for example registry.example.com/team/app.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image"`

	// Digest is the manifest digest of the platform image.
	// +kubebuilder:validation:Pattern=`^sha256:[a-f0-9]{64}$`
	Digest string `json:"digest"`

	// ShortDigest is the first 12 hex digits of the digest, for display.
	// +kubebuilder:validation:MaxLength=19
	// +optional
	ShortDigest string `json:"shortDigest,omitempty"`

	// Platform is os/arch[/variant] of the digest, when known.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Platform string `json:"platform,omitempty"`

	// IndexDigest is the digest of the multi-arch index the platform image was reached through.
	// +kubebuilder:validation:MaxLength=71
	// +optional
	IndexDigest string `json:"indexDigest,omitempty"`

	// Tags seen pointing at this digest (bounded).
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=128
	// +listType=set
	// +optional
	Tags []string `json:"tags,omitempty"`

	// Workloads running the image in this namespace: top-level owners (bounded).
	// +kubebuilder:validation:MaxItems=20
	// +optional
	Workloads []WorkloadReference `json:"workloads,omitempty"`

	// WorkloadCount is the total number of workloads, including those not listed.
	// +optional
	WorkloadCount int32 `json:"workloadCount,omitempty"`

	// RegistryScans that listed this digest.
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=253
	// +listType=set
	// +optional
	RegistryScans []string `json:"registryScans,omitempty"`
}

// WorkloadReference is the top-level owner of pods that run an image.
type WorkloadReference struct {
	// Kind of the owner: Deployment, StatefulSet, DaemonSet, CronJob, Job or Pod.
	// +kubebuilder:validation:MaxLength=63
	Kind string `json:"kind"`
	// Name of the owner.
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Containers of the workload that run the image (bounded).
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:MaxLength=63
	// +optional
	Containers []string `json:"containers,omitempty"`
}

// SignatureStatus is the last signature verification of the digest.
type SignatureStatus struct {
	// State of verification.
	State SignatureState `json:"state"`
	// Signers that verified (bounded).
	// +kubebuilder:validation:MaxItems=8
	// +optional
	Signers []SignerIdentity `json:"signers,omitempty"`
	// Reason explains the state in words a person can act on.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Reason string `json:"reason,omitempty"`
	// CheckedAt is when signatures were last verified.
	// +optional
	CheckedAt *metav1.Time `json:"checkedAt,omitempty"`
}

// SignerIdentity names who signed: a key fingerprint or a certificate identity.
type SignerIdentity struct {
	// Authority is the policy authority that matched.
	// +kubebuilder:validation:MaxLength=63
	// +optional
	Authority string `json:"authority,omitempty"`
	// KeyFingerprint is the SHA-256 fingerprint of the public key (key-based signing).
	// +kubebuilder:validation:MaxLength=100
	// +optional
	KeyFingerprint string `json:"keyFingerprint,omitempty"`
	// Subject is the certificate subject (keyless signing).
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Subject string `json:"subject,omitempty"`
	// Issuer is the OIDC issuer of the certificate (keyless signing).
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Issuer string `json:"issuer,omitempty"`
	// Format is the signature format that verified.
	// +optional
	Format SignatureFormat `json:"format,omitempty"`
	// TimeProof says what proved when the signature was made: a Rekor entry, an RFC 3161
	// timestamp, or none (transparency log ignored, or a Notation signature checked against
	// the current time).
	// +kubebuilder:validation:MaxLength=256
	// +optional
	TimeProof string `json:"timeProof,omitempty"`
	// CertificateSubject is the X.509 subject DN of the signing certificate (Notation).
	// +kubebuilder:validation:MaxLength=512
	// +optional
	CertificateSubject string `json:"certificateSubject,omitempty"`
	// CertificateFingerprint is "SHA256:<hex>" of the signing certificate.
	// +kubebuilder:validation:MaxLength=100
	// +optional
	CertificateFingerprint string `json:"certificateFingerprint,omitempty"`
}

// SignatureFormat is the layout and envelope a signature was verified in.
// +kubebuilder:validation:Enum=CosignLegacy;SigstoreBundle;Notation
type SignatureFormat string

// Signature formats.
const (
	// SignatureFormatCosignLegacy is cosign's ".sig"/".att" tag layout (cosign v2, or
	// `cosign sign --new-bundle-format=false`).
	SignatureFormatCosignLegacy SignatureFormat = "CosignLegacy"
	// SignatureFormatSigstoreBundle is a Sigstore bundle stored as an OCI referrer (cosign
	// v3's default).
	SignatureFormatSigstoreBundle SignatureFormat = "SigstoreBundle"
	// SignatureFormatNotation is a Notary Project signature (JWS or COSE) stored as a referrer.
	SignatureFormatNotation SignatureFormat = "Notation"
)

// SBOMStatus describes the SBOM the findings are based on.
type SBOMStatus struct {
	// Source of the SBOM.
	Source SBOMSource `json:"source"`
	// Format, for example spdx-json, cyclonedx-json or syft-json.
	// +kubebuilder:validation:MaxLength=32
	// +optional
	Format string `json:"format,omitempty"`
	// Packages counts the packages in the SBOM.
	// +optional
	Packages int32 `json:"packages,omitempty"`
	// Digest is the sha256 of the SBOM document as cached.
	// +kubebuilder:validation:MaxLength=71
	// +optional
	Digest string `json:"digest,omitempty"`
	// Reason explains why a less trusted source was used, or why there is none.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Reason string `json:"reason,omitempty"`
	// AttestationError says why a verified SBOM attestation could not be used: its signer
	// published an SBOM that does not parse.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	AttestationError string `json:"attestationError,omitempty"`
}

// ProvenanceStatus is the verified SLSA provenance of the digest.
type ProvenanceStatus struct {
	// Verified is true when a signed provenance attestation for this digest was found.
	Verified bool `json:"verified"`
	// PredicateType is the SLSA predicate type (v0.2 or v1).
	// +kubebuilder:validation:MaxLength=128
	// +optional
	PredicateType string `json:"predicateType,omitempty"`
	// BuilderID is the builder that produced the image.
	// +kubebuilder:validation:MaxLength=512
	// +optional
	BuilderID string `json:"builderID,omitempty"`
	// Reason explains a missing or rejected provenance.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Reason string `json:"reason,omitempty"`
}

// BaseImageStatus is the image this image declares it was built from.
type BaseImageStatus struct {
	// Name of the base image as declared.
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Name string `json:"name,omitempty"`
	// Digest of the base image as declared.
	// +kubebuilder:validation:MaxLength=71
	// +optional
	Digest string `json:"digest,omitempty"`
	// Signed is true when the base image's signature verified against the policy.
	Signed bool `json:"signed"`
	// Reason explains the signature result.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Reason string `json:"reason,omitempty"`
}

// VulnerabilitySummary counts findings by severity.
type VulnerabilitySummary struct {
	Critical   int32 `json:"critical"`
	High       int32 `json:"high"`
	Medium     int32 `json:"medium"`
	Low        int32 `json:"low"`
	Negligible int32 `json:"negligible"`
	Unknown    int32 `json:"unknown"`
	// Fixable counts findings with a fixed version available.
	Fixable int32 `json:"fixable"`
	// DBSchema is the Grype DB schema version used.
	// +kubebuilder:validation:MaxLength=32
	// +optional
	DBSchema string `json:"dbSchema,omitempty"`
	// DBBuilt is when the vulnerability DB was built.
	// +optional
	DBBuilt *metav1.Time `json:"dbBuilt,omitempty"`
	// ScannedAt is when the SBOM was last matched.
	// +optional
	ScannedAt *metav1.Time `json:"scannedAt,omitempty"`
}

// Finding is one vulnerability in one package (name, version, type), wherever in the image the
// package was found.
type Finding struct {
	// ID of the vulnerability, for example CVE-2024-1234.
	// +kubebuilder:validation:MaxLength=128
	ID string `json:"id"`
	// Severity of the vulnerability.
	Severity Severity `json:"severity"`
	// Package name.
	// +kubebuilder:validation:MaxLength=256
	Package string `json:"package"`
	// InstalledVersion of the package.
	// +kubebuilder:validation:MaxLength=128
	InstalledVersion string `json:"installedVersion"`
	// FixedVersion, when a fix exists.
	// +kubebuilder:validation:MaxLength=128
	// +optional
	FixedVersion string `json:"fixedVersion,omitempty"`
	// Type of the package: deb, apk, go-module, npm, ...
	// +kubebuilder:validation:MaxLength=32
	// +optional
	Type string `json:"type,omitempty"`
	// Locations is the number of places in the image the package was found (files, e.g. each
	// Go binary that links the module): one finding counts the vulnerability once however many
	// copies there are. `imagetrust scan -o json` lists the paths.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000
	// +optional
	Locations int32 `json:"locations,omitempty"`
}

// PolicyResult is the verdict of the policies that apply to the image.
type PolicyResult struct {
	// Verdict of the policies.
	Verdict Verdict `json:"verdict"`
	// Policies that matched the image.
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=253
	// +listType=set
	// +optional
	Policies []string `json:"policies,omitempty"`
	// FailedChecks lists the checks that failed (bounded).
	// +kubebuilder:validation:MaxItems=16
	// +optional
	FailedChecks []FailedCheck `json:"failedChecks,omitempty"`
	// Results are the verdicts of each policy on its own. A policy's verdict for a repository
	// and digest does not depend on the namespace (the policy's own authorities verify the
	// signature), so admission can read it from the report of any namespace.
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=policy
	// +optional
	Results []PolicyVerdict `json:"results,omitempty"`
}

// PolicyVerdict is one policy's verdict for the image.
type PolicyVerdict struct {
	// Policy is the ImageTrustPolicy's name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Policy string `json:"policy"`
	// Verdict of this policy alone.
	Verdict Verdict `json:"verdict"`
	// ObservedGeneration is the policy generation the verdict was computed for; admission
	// treats a verdict for an older generation as Unknown until it is recomputed.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// FailedCheck is one failed policy check.
type FailedCheck struct {
	// Policy that failed.
	// +kubebuilder:validation:MaxLength=253
	Policy string `json:"policy"`
	// Check is the name of the check: signature, attestation-sbom, slsa-provenance,
	// base-image, registry, vulnerabilities.
	// +kubebuilder:validation:MaxLength=63
	Check string `json:"check"`
	// Message explains the failure.
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message"`
}

// ImageTrustReportStatus is the result of verifying and scanning the digest.
type ImageTrustReportStatus struct {
	// ObservedGeneration is the generation the status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Signature verification result.
	// +optional
	Signature *SignatureStatus `json:"signature,omitempty"`
	// SBOM the findings are based on.
	// +optional
	SBOM *SBOMStatus `json:"sbom,omitempty"`
	// Provenance is the SLSA provenance result.
	// +optional
	Provenance *ProvenanceStatus `json:"provenance,omitempty"`
	// BaseImage the image was built from.
	// +optional
	BaseImage *BaseImageStatus `json:"baseImage,omitempty"`
	// Vulnerabilities counts findings by severity.
	// +optional
	Vulnerabilities *VulnerabilitySummary `json:"vulnerabilities,omitempty"`
	// TopFindings are the most severe findings, most severe first (bounded; the summary has
	// the totals).
	// +kubebuilder:validation:MaxItems=100
	// +optional
	TopFindings []Finding `json:"topFindings,omitempty"`
	// Policy is the verdict.
	// +optional
	Policy *PolicyResult `json:"policy,omitempty"`
	// ContentHash is a hash of everything above except timestamps; the controller writes the
	// report only when it changes.
	// +kubebuilder:validation:MaxLength=80
	// +optional
	ContentHash string `json:"contentHash,omitempty"`
	// Conditions: Ready, Reconciling, Stalled, SignatureVerified, SBOMAvailable, Scanned.
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ImageTrustReport is the trust state of one image digest (in one repository) in one namespace:
// signature, SBOM, provenance, vulnerabilities and the policy verdict. One report is shared by
// every workload in the namespace that runs the image; a digest mirrored in another repository
// gets its own report, because signatures are stored per repository.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=itr,categories=imagetrust
// +kubebuilder:printcolumn:name="Image",type=string,JSONPath=`.spec.image`
// +kubebuilder:printcolumn:name="Digest",type=string,JSONPath=`.spec.shortDigest`
// +kubebuilder:printcolumn:name="Signature",type=string,JSONPath=`.status.signature.state`
// +kubebuilder:printcolumn:name="SBOM",type=string,JSONPath=`.status.sbom.source`
// +kubebuilder:printcolumn:name="Critical",type=integer,JSONPath=`.status.vulnerabilities.critical`
// +kubebuilder:printcolumn:name="High",type=integer,JSONPath=`.status.vulnerabilities.high`
// +kubebuilder:printcolumn:name="Fixable",type=integer,JSONPath=`.status.vulnerabilities.fixable`
// +kubebuilder:printcolumn:name="Verdict",type=string,JSONPath=`.status.policy.verdict`
// +kubebuilder:printcolumn:name="Scanned",type=date,JSONPath=`.status.vulnerabilities.scannedAt`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Platform",type=string,JSONPath=`.spec.platform`,priority=1
// +kubebuilder:printcolumn:name="Full Digest",type=string,JSONPath=`.spec.digest`,priority=1
type ImageTrustReport struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ImageTrustReportSpec   `json:"spec"`
	Status ImageTrustReportStatus `json:"status,omitempty"`
}

// ImageTrustReportList is a list of ImageTrustReport.
// +kubebuilder:object:root=true
type ImageTrustReportList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ImageTrustReport `json:"items"`
}
