package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SBOMSourceType is one place an SBOM can come from.
// +kubebuilder:validation:Enum=Attestation;Referrer;Generate
type SBOMSourceType string

// SBOM sources, in the order a policy may try them.
const (
	// SBOMSourceAttestation is a signed cosign in-toto attestation with an SBOM predicate.
	SBOMSourceAttestation SBOMSourceType = "Attestation"
	// SBOMSourceReferrer is an SBOM attached to the image as an OCI referrer.
	SBOMSourceReferrer SBOMSourceType = "Referrer"
	// SBOMSourceGenerate regenerates the SBOM from the image's layers with Syft.
	SBOMSourceGenerate SBOMSourceType = "Generate"
)

// ImageTrustPolicySpec says which images a policy covers and what they must satisfy.
// +kubebuilder:validation:XValidation:rule="!self.requireSignature || (has(self.authorities) && size(self.authorities) > 0)",message="authorities must list at least one key, keyless identity or notation trust policy when requireSignature is true"
type ImageTrustPolicySpec struct {
	// Images are glob patterns matched against the image repository, with or without a tag,
	// for example "registry.example.com/team/*" or "ghcr.io/org/app:1.*". "*" matches within one
	// path segment, "**" across segments. Docker Hub is written as the kubelet reads it:
	// "nginx", "docker.io/library/nginx" and "index.docker.io/library/nginx" are one repository.
	// A pattern with a tag covers an image by the tag it is run or listed under: "app" runs
	// "latest", "app:1.2@sha256:…" runs the digest under tag 1.2, and "app@sha256:…" has no tag.
	// The manager, admission and `imagetrust scan --policy` read patterns the same way.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=512
	// +listType=set
	Images []string `json:"images"`

	// NamespaceSelector limits the policy to running images in matching namespaces.
	// Registry images found by a RegistryScan are matched by the scan's namespace.
	// An empty or absent selector matches every namespace.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// RequireSignature makes an image that no authority verifies Untrusted.
	// +kubebuilder:default=true
	// +optional
	RequireSignature bool `json:"requireSignature"`

	// Authorities that may sign the images. A signature from any one of them suffices.
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=name
	// +optional
	Authorities []Authority `json:"authorities,omitempty"`

	// Attestations that must be present and verified by the same authorities.
	// +optional
	Attestations AttestationRequirements `json:"attestations,omitempty"`

	// BaseImage requirements, read from the image's org.opencontainers.image.base.* annotations
	// or its base.image label.
	// +optional
	BaseImage BaseImageRequirements `json:"baseImage,omitempty"`

	// AllowedRegistries lists registry hosts, optionally with a path prefix
	// ("registry.example.com" or "registry.example.com/team"); images elsewhere are Untrusted.
	// Empty allows every registry.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	// +listType=set
	// +optional
	AllowedRegistries []string `json:"allowedRegistries,omitempty"`

	// Vulnerabilities is the gate on scan findings.
	// +optional
	Vulnerabilities *VulnerabilityGate `json:"vulnerabilities,omitempty"`

	// SBOMSources is the order in which SBOM sources are tried; the first that yields a
	// trusted SBOM wins.
	// +kubebuilder:default={Attestation,Referrer,Generate}
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=3
	// +kubebuilder:validation:XValidation:rule="self.all(x, self.exists_one(y, y == x))",message="sbomSources must not repeat a source"
	// +optional
	SBOMSources []SBOMSourceType `json:"sbomSources,omitempty"`

	// AllowUnsignedReferrers accepts SBOM referrers that carry no valid signature from the
	// authorities. Off by default: an unsigned SBOM can be swapped by anyone who can push.
	// +optional
	AllowUnsignedReferrers bool `json:"allowUnsignedReferrers,omitempty"`

	// Schedule re-verifies signatures and attestations of matched images (signatures get
	// removed, keys rotated, certificates expire).
	// +kubebuilder:default="0 */6 * * *"
	// +optional
	Schedule CronSchedule `json:"schedule,omitempty"`

	// Admission decides whether the policy's verdicts are enforced when Pods and workloads are
	// created or updated. Absent means Off: a policy never starts refusing workloads unless
	// asked to.
	// +optional
	Admission *AdmissionSpec `json:"admission,omitempty"`
}

// AdmissionMode says what admission does with a policy's verdicts.
// +kubebuilder:validation:Enum=Enforce;Audit;Off
type AdmissionMode string

// Admission modes.
const (
	// AdmissionEnforce refuses workloads whose images the policy finds Untrusted.
	AdmissionEnforce AdmissionMode = "Enforce"
	// AdmissionAudit admits them with a warning to the client and an Event.
	AdmissionAudit AdmissionMode = "Audit"
	// AdmissionOff leaves admission alone; reports are still written.
	AdmissionOff AdmissionMode = "Off"
)

// UnknownAction is what admission does with an image it has no Trusted or Untrusted verdict
// for.
// +kubebuilder:validation:Enum=Deny;Warn;Allow
type UnknownAction string

// Unknown actions.
const (
	// UnknownDeny treats the image as Untrusted: refused under Enforce, warned under Audit.
	UnknownDeny UnknownAction = "Deny"
	// UnknownWarn admits the image with a warning to the client.
	UnknownWarn UnknownAction = "Warn"
	// UnknownAllow admits the image silently.
	UnknownAllow UnknownAction = "Allow"
)

// AdmissionSpec configures admission for the images a policy covers. Decisions come from the
// verdicts already in ImageTrustReports (of any namespace, for the same repository and digest),
// never from a registry round trip at admission time.
// +kubebuilder:validation:XValidation:rule="self.mode != 'Off' || !has(self.onUnknown) || self.onUnknown == 'Deny'",message="onUnknown has no effect while mode is Off; set mode to Enforce or Audit"
type AdmissionSpec struct {
	// Mode is Enforce (refuse Untrusted images), Audit (admit them with a warning and an
	// Event) or Off.
	// +kubebuilder:default=Off
	// +optional
	Mode AdmissionMode `json:"mode,omitempty"`

	// OnUnknown is the action for an image without a Trusted or Untrusted verdict: its digest
	// was never assessed (it is queued for assessment at once, so a retry has an answer), its
	// verdict is Unknown, or its tag could not be resolved to a digest. Deny (the default) fails
	// closed; under Audit it only warns.
	// +kubebuilder:default=Deny
	// +optional
	OnUnknown UnknownAction `json:"onUnknown,omitempty"`
}

// Authority is one trusted signer: a cosign public key, a keyless (Fulcio) identity or a
// Notation trust policy.
// +kubebuilder:validation:XValidation:rule="(has(self.key) ? 1 : 0) + (has(self.keyless) ? 1 : 0) + (has(self.notation) ? 1 : 0) == 1",message="an authority sets exactly one of key, keyless or notation"
// +kubebuilder:validation:XValidation:rule="!has(self.notation) || (!has(self.trustRoot) && !has(self.rekorPublicKey) && !(has(self.ignoreTransparencyLog) && self.ignoreTransparencyLog))",message="a notation authority takes its trust from notation.trustStore: trustRoot, rekorPublicKey and ignoreTransparencyLog do not apply"
type Authority struct {
	// Name identifies the authority in reports and events.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// Key is a cosign public key.
	// +optional
	Key *KeyAuthority `json:"key,omitempty"`

	// Keyless trusts short-lived certificates issued to an OIDC identity.
	// +optional
	Keyless *KeylessAuthority `json:"keyless,omitempty"`

	// Notation trusts Notary Project signatures (JWS or COSE envelopes) under a Notation trust
	// policy.
	// +optional
	Notation *NotationAuthority `json:"notation,omitempty"`

	// TrustRoot supplies Sigstore trusted material — Fulcio CAs, Rekor logs, CT logs and
	// timestamp authorities — in addition to the inline keyless.roots, rekorPublicKey and
	// keyless.ctLogPublicKey. A keyless authority that names neither a trust root nor roots
	// uses the public-good Sigstore instance (as trustRoot: {tuf: {}}). A key authority may
	// name one for its Rekor logs and timestamp authorities.
	// +optional
	TrustRoot *TrustRoot `json:"trustRoot,omitempty"`

	// IgnoreTransparencyLog accepts signatures without a transparency-log (Rekor) proof or
	// trusted timestamp. Needed for private deployments without Rekor; weakens keyless
	// verification.
	// +optional
	IgnoreTransparencyLog bool `json:"ignoreTransparencyLog,omitempty"`

	// RekorPublicKey is the PEM public key of a private Rekor instance, used to verify the
	// offline inclusion bundle that cosign attaches to signatures.
	// +kubebuilder:validation:MaxLength=8192
	// +optional
	RekorPublicKey string `json:"rekorPublicKey,omitempty"`
}

// TrustRoot is where Sigstore trusted material comes from: a TUF repository (the public-good
// Sigstore instance or a mirror of it) or a trusted_root.json document. Authorities naming
// the same source share one copy of it in the manager.
// +kubebuilder:validation:XValidation:rule="has(self.tuf) != has(self.trustedRoot)",message="a trustRoot sets exactly one of tuf or trustedRoot"
type TrustRoot struct {
	// TUF fetches trusted_root.json from a TUF repository and refreshes it daily, caching it
	// on the manager's cache volume. `tuf: {}` is the public-good Sigstore instance, which
	// needs egress to tuf-repo-cdn.sigstore.dev.
	// +optional
	TUF *TUFTrustRoot `json:"tuf,omitempty"`

	// TrustedRoot is a trusted_root.json document (the format `cosign verify --trusted-root`
	// takes; `cosign trusted-root create` writes one). Nothing is fetched: the air-gapped
	// choice.
	// +optional
	TrustedRoot *DataSource `json:"trustedRoot,omitempty"`
}

// TUFTrustRoot is a TUF repository serving a Sigstore trusted_root.json target.
type TUFTrustRoot struct {
	// Mirror is the repository's base URL. Absent means the public-good instance,
	// https://tuf-repo-cdn.sigstore.dev. TUF metadata is signed, so plain HTTP mirrors are
	// safe.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:Pattern=`^https?://[^\s]+$`
	// +optional
	Mirror string `json:"mirror,omitempty"`

	// Root is the initial root.json trust is bootstrapped from. Absent means the public-good
	// root built into imagetrust, which is right for the public-good instance and for
	// verbatim mirrors of it.
	// +optional
	Root *DataSource `json:"root,omitempty"`
}

// NotationVerificationLevel is a Notation trust policy's verification level.
// +kubebuilder:validation:Enum=strict;permissive;audit;skip
type NotationVerificationLevel string

// Notation verification levels.
const (
	// NotationStrict enforces integrity, authenticity, expiry, timestamps and revocation.
	NotationStrict NotationVerificationLevel = "strict"
	// NotationPermissive enforces integrity and authenticity, and only logs expiry and
	// revocation failures.
	NotationPermissive NotationVerificationLevel = "permissive"
	// NotationAudit enforces integrity only in Notation; imagetrust still requires
	// authenticity before it reports a signature Verified.
	NotationAudit NotationVerificationLevel = "audit"
	// NotationSkip verifies nothing: the authority then accepts no signature at all.
	NotationSkip NotationVerificationLevel = "skip"
)

// NotationRevocation overrides the revocation check of a verification level.
// +kubebuilder:validation:Enum=enforce;log;skip
type NotationRevocation string

// Notation revocation actions.
const (
	// NotationRevocationEnforce fails a signature whose certificate is revoked or whose
	// revocation status cannot be obtained.
	NotationRevocationEnforce NotationRevocation = "enforce"
	// NotationRevocationLog checks revocation but only logs a failure.
	NotationRevocationLog NotationRevocation = "log"
	// NotationRevocationSkip does not check revocation: no OCSP or CRL request is made.
	NotationRevocationSkip NotationRevocation = "skip"
)

// NotationAuthority is one Notation trust policy: the certificates signing chains must end in,
// the repositories it covers, the identities it accepts and how strictly it verifies.
// +kubebuilder:validation:XValidation:rule="has(self.trustStore) || (has(self.level) && self.level == 'skip')",message="notation.trustStore is required unless level is skip"
type NotationAuthority struct {
	// TrustStore holds the PEM certificates of the "ca" trust store: a signing certificate
	// chain must end in one of them.
	// +optional
	TrustStore *DataSource `json:"trustStore,omitempty"`

	// TSATrustStore holds the PEM root certificates of timestamp authorities whose RFC 3161
	// countersignatures are trusted ("tsa" trust store).
	// +optional
	TSATrustStore *DataSource `json:"tsaTrustStore,omitempty"`

	// RegistryScopes are the repositories the trust policy covers, such as
	// "registry.example.com/team/app", or "*". Absent means "*".
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=512
	// +listType=set
	// +optional
	RegistryScopes []string `json:"registryScopes,omitempty"`

	// TrustedIdentities are the signing certificate subjects accepted, as
	// "x509.subject: C=US, ST=WA, O=Example, CN=release", or "*". Absent means "*": any
	// certificate chaining to the trust store. Notation requires C, ST and O in each DN.
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="self.all(x, x == '*' || x.startsWith('x509.subject:'))",message="trustedIdentities are \"*\" or \"x509.subject: <DN>\""
	// +listType=set
	// +optional
	TrustedIdentities []string `json:"trustedIdentities,omitempty"`

	// Level is the verification level: strict (default), permissive, audit or skip. Whatever
	// the level, a signature counts as Verified only when its integrity and authenticity
	// (trust store and identities) verified.
	// +kubebuilder:default=strict
	// +optional
	Level NotationVerificationLevel `json:"level,omitempty"`

	// Revocation overrides the level's revocation check: enforce, log or skip. Checking
	// contacts the OCSP and CRL URLs the certificates carry: air-gapped clusters set skip
	// (no request) or log.
	// +optional
	Revocation NotationRevocation `json:"revocation,omitempty"`
}

// KeyAuthority is a cosign public key, inline or from a Secret.
// +kubebuilder:validation:XValidation:rule="has(self.data) != has(self.secretRef)",message="a key sets exactly one of data or secretRef"
type KeyAuthority struct {
	// Data is the PEM-encoded public key.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=8192
	// +kubebuilder:validation:XValidation:rule="self.contains('-----BEGIN PUBLIC KEY-----')",message="data must be a PEM public key (-----BEGIN PUBLIC KEY-----)"
	// +optional
	Data string `json:"data,omitempty"`

	// SecretRef names a Secret key holding the PEM public key.
	// +optional
	SecretRef *SecretKeyReference `json:"secretRef,omitempty"`
}

// KeylessAuthority trusts Fulcio-style certificates bound to an OIDC identity.
type KeylessAuthority struct {
	// Identities accepted; a certificate must match one of them.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	Identities []KeylessIdentity `json:"identities"`

	// Roots are PEM certificates of a private Fulcio CA. With neither roots nor the
	// authority's trustRoot, the public-good Sigstore trust root is used (through TUF).
	// +kubebuilder:validation:MaxLength=65536
	// +optional
	Roots string `json:"roots,omitempty"`

	// Intermediates are PEM intermediate certificates of a private Fulcio CA.
	// +kubebuilder:validation:MaxLength=65536
	// +optional
	Intermediates string `json:"intermediates,omitempty"`

	// CTLogPublicKey is the PEM public key of a private certificate transparency log.
	// +kubebuilder:validation:MaxLength=8192
	// +optional
	CTLogPublicKey string `json:"ctLogPublicKey,omitempty"`

	// IgnoreSCT accepts certificates without a signed certificate timestamp.
	// +optional
	IgnoreSCT bool `json:"ignoreSCT,omitempty"`
}

// KeylessIdentity is an OIDC issuer and subject, exact or as regular expressions.
// +kubebuilder:validation:XValidation:rule="has(self.issuer) != has(self.issuerRegExp)",message="set exactly one of issuer or issuerRegExp"
// +kubebuilder:validation:XValidation:rule="has(self.subject) != has(self.subjectRegExp)",message="set exactly one of subject or subjectRegExp"
type KeylessIdentity struct {
	// Issuer is the exact OIDC issuer URL.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Issuer string `json:"issuer,omitempty"`
	// IssuerRegExp is a regular expression (RE2) for the OIDC issuer.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="''.matches(self) == ''.matches(self)",message="issuerRegExp must be a valid regular expression"
	// +optional
	IssuerRegExp string `json:"issuerRegExp,omitempty"`
	// Subject is the exact certificate subject (email or URI).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Subject string `json:"subject,omitempty"`
	// SubjectRegExp is a regular expression (RE2) for the certificate subject.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="''.matches(self) == ''.matches(self)",message="subjectRegExp must be a valid regular expression"
	// +optional
	SubjectRegExp string `json:"subjectRegExp,omitempty"`
}

// AttestationRequirements lists attestations an image must carry.
type AttestationRequirements struct {
	// SBOM requires a signed SBOM attestation (or signed referrer) rather than a generated SBOM.
	// +optional
	SBOM bool `json:"sbom,omitempty"`

	// SLSAProvenance requires a signed SLSA provenance attestation (v0.2 or v1).
	// +optional
	SLSAProvenance *SLSAProvenanceRequirement `json:"slsaProvenance,omitempty"`
}

// SLSAProvenanceRequirement requires provenance and optionally pins its builder.
type SLSAProvenanceRequirement struct {
	// AllowedBuilderIDs lists accepted builder ids; empty accepts any builder.
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=512
	// +listType=set
	// +optional
	AllowedBuilderIDs []string `json:"allowedBuilderIDs,omitempty"`
}

// BaseImageRequirements constrains the image an image was built from.
type BaseImageRequirements struct {
	// RequireSigned makes an image Untrusted when its declared base image carries no
	// signature from the policy's authorities, or declares no base image at all.
	// +optional
	RequireSigned bool `json:"requireSigned,omitempty"`
}

// VulnerabilityGate fails images with findings at or above a severity.
type VulnerabilityGate struct {
	// FailOnSeverity fails the image when a finding is at least this severe, in Grype's order:
	// Critical > High > Medium > Low > Negligible > Unknown. Unknown is the lowest: it counts
	// every finding, including those whose record carries no severity (many Go and npm
	// records), which every other level lets pass.
	// +kubebuilder:default=Critical
	// +optional
	FailOnSeverity Severity `json:"failOnSeverity,omitempty"`

	// OnlyFixed counts only findings for which a fixed version exists.
	// +optional
	OnlyFixed bool `json:"onlyFixed,omitempty"`

	// Ignore lists accepted findings; each entry expires so exceptions get reviewed.
	// +kubebuilder:validation:MaxItems=256
	// +listType=map
	// +listMapKey=id
	// +optional
	Ignore []VulnerabilityException `json:"ignore,omitempty"`
}

// VulnerabilityException accepts one vulnerability id (or alias) until it expires.
type VulnerabilityException struct {
	// ID is a vulnerability id or alias, for example CVE-2024-1234 or GHSA-xxxx-xxxx-xxxx.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	ID string `json:"id"`
	// Reason the finding is accepted.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason"`
	// Expires is when the exception stops applying. Absent means never.
	// +optional
	Expires *metav1.Time `json:"expires,omitempty"`
}

// ImageTrustPolicyStatus is the observed state of an ImageTrustPolicy.
type ImageTrustPolicyStatus struct {
	// ObservedGeneration is the generation last reconciled.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// MatchedReports counts the reports (namespace and image) this policy currently applies to.
	// A policy that applies to nothing shows 0.
	// +kubebuilder:default=0
	// +optional
	MatchedReports int32 `json:"matchedReports"`
	// LastVerificationTime is when the scheduled re-verification last ran.
	// +optional
	LastVerificationTime *metav1.Time `json:"lastVerificationTime,omitempty"`
	// NextVerificationTime is when the next scheduled re-verification runs.
	// +optional
	NextVerificationTime *metav1.Time `json:"nextVerificationTime,omitempty"`
	// Conditions: Ready, Reconciling, Stalled.
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ImageTrustPolicy states which signers, attestations, registries and vulnerability levels
// are acceptable for the images it matches.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=itp,categories=imagetrust
// +kubebuilder:printcolumn:name="Signature",type=boolean,JSONPath=`.spec.requireSignature`,description="Signature required"
// +kubebuilder:printcolumn:name="Fail On",type=string,JSONPath=`.spec.vulnerabilities.failOnSeverity`
// +kubebuilder:printcolumn:name="Schedule",type=string,JSONPath=`.spec.schedule`
// +kubebuilder:printcolumn:name="Admission",type=string,JSONPath=`.spec.admission.mode`
// +kubebuilder:printcolumn:name="Reports",type=integer,JSONPath=`.status.matchedReports`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ImageTrustPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ImageTrustPolicySpec   `json:"spec"`
	Status ImageTrustPolicyStatus `json:"status,omitempty"`
}

// ImageTrustPolicyList is a list of ImageTrustPolicy.
// +kubebuilder:object:root=true
type ImageTrustPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ImageTrustPolicy `json:"items"`
}
