package v1alpha1

// Condition types shared by the imagetrust kinds. Ready, Reconciling and Stalled follow
// kstatus so that generic tooling (kstatus, Argo CD, Flux health checks) understands them.
const (
	// ConditionReady is True when the object's last reconciliation fully succeeded.
	ConditionReady = "Ready"
	// ConditionReconciling is True while work is in progress or being retried.
	ConditionReconciling = "Reconciling"
	// ConditionStalled is True when progress needs a change by the user (bad key, missing Secret).
	ConditionStalled = "Stalled"

	// ConditionSignatureVerified reports the signature check of a report.
	ConditionSignatureVerified = "SignatureVerified"
	// ConditionSBOMAvailable reports whether an SBOM was obtained for a report's digest.
	ConditionSBOMAvailable = "SBOMAvailable"
	// ConditionScanned reports whether the SBOM was matched against the vulnerability DB.
	ConditionScanned = "Scanned"
)

// Condition reasons. A report's SignatureVerified condition also uses the SignatureState
// values, and its SBOMAvailable condition the SBOMSource values, as reasons.
const (
	// ReasonSucceeded: the last reconciliation fully succeeded (Ready).
	ReasonSucceeded = "Succeeded"
	// ReasonProgressingWithRetry: a transient problem is being retried (Reconciling, Ready).
	ReasonProgressingWithRetry = "ProgressingWithRetry"
	// ReasonInvalidConfiguration: a policy cannot be enforced until a person fixes it.
	ReasonInvalidConfiguration = "InvalidConfiguration"
	// ReasonTrustRootPending: a trust root a policy names is still loading (TUF); the policy
	// is re-evaluated when it loads (Stalled, Reconciling, Ready).
	ReasonTrustRootPending = "TrustRootPending"
	// ReasonTrustRootUnavailable: a trust root a policy names could not be loaded (TUF
	// repository unreachable, metadata refused); loading is retried with backoff.
	ReasonTrustRootUnavailable = "TrustRootUnavailable"

	// ReasonVerified: a signature of an authority verified (SignatureVerified).
	ReasonVerified = "Verified"
	// ReasonVerificationFailed: signatures could not be checked (Ready).
	ReasonVerificationFailed = "VerificationFailed"
	// ReasonNoSBOM: no SBOM could be obtained (SBOMAvailable, Scanned).
	ReasonNoSBOM = "NoSBOM"
	// ReasonMatched: the SBOM was matched against the vulnerability DB (Scanned).
	ReasonMatched = "Matched"
	// ReasonDBNotLoaded: no vulnerability DB is loaded yet (Scanned, Ready).
	ReasonDBNotLoaded = "DBNotLoaded"
	// ReasonDBStale: the vulnerability DB is older than its allowed maximum age (Scanned, Ready).
	ReasonDBStale = "DBStale"
	// ReasonMatchFailed: matching the SBOM failed (Scanned, Ready).
	ReasonMatchFailed = "MatchFailed"
	// ReasonMatchDeferred: a huge SBOM waits for a worker that may match it.
	ReasonMatchDeferred = "MatchDeferred"
	// ReasonPolicyStalled: a policy that applies cannot be enforced (Stalled, Ready).
	ReasonPolicyStalled = "PolicyStalled"

	// ReasonRegistryAccessDenied: the registry refused the credentials (Stalled, Ready).
	ReasonRegistryAccessDenied = "RegistryAccessDenied"
	// ReasonImageUnreadable: the image's manifest or layers cannot be read (gone, malformed, not
	// a tar); retried after a long delay or when it changes (Stalled, Ready).
	ReasonImageUnreadable = "ImageUnreadable"
	// ReasonRepositoryNotFound: a RegistryScan's repository does not exist.
	ReasonRepositoryNotFound = "RepositoryNotFound"
	// ReasonListingFailed: listing a RegistryScan's repositories failed and is being retried.
	ReasonListingFailed = "ListingFailed"
	// ReasonInvalidSchedule: a schedule does not parse.
	ReasonInvalidSchedule = "InvalidSchedule"
	// ReasonInvalidTagFilter: a RegistryScan's tag filter does not parse.
	ReasonInvalidTagFilter = "InvalidTagFilter"
	// ReasonCredentialsSecretNotReady: a credentials Secret or its key is missing or unreadable.
	ReasonCredentialsSecretNotReady = "CredentialsSecretNotReady"
	// ReasonInvalidCredentials: a credentials Secret does not hold a docker config.
	ReasonInvalidCredentials = "InvalidCredentials"
	// ReasonCABundleSecretNotReady: a CA bundle Secret or its key is missing or unreadable.
	ReasonCABundleSecretNotReady = "CABundleSecretNotReady"
	// ReasonInvalidCABundle: a CA bundle holds no PEM certificate.
	ReasonInvalidCABundle = "InvalidCABundle"
	// ReasonSuspended: a RegistryScan's scheduled listing is suspended.
	ReasonSuspended = "Suspended"
)

// Severity is a vulnerability severity as Grype reports it.
// +kubebuilder:validation:Enum=Critical;High;Medium;Low;Negligible;Unknown
type Severity string

// Severities, most severe first.
const (
	SeverityCritical   Severity = "Critical"
	SeverityHigh       Severity = "High"
	SeverityMedium     Severity = "Medium"
	SeverityLow        Severity = "Low"
	SeverityNegligible Severity = "Negligible"
	SeverityUnknown    Severity = "Unknown"
)

// CronSchedule is a five-field cron expression (minute hour day-of-month month day-of-week) or
// one of the descriptors @yearly, @monthly, @weekly, @daily, @hourly and @every <duration>.
// The pattern rejects most malformed schedules at admission; the controller parses it again
// with robfig/cron and reports anything the pattern let through as Stalled.
// +kubebuilder:validation:MaxLength=100
// +kubebuilder:validation:Pattern=`^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|@every ([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+|(TZ=[A-Za-z_/+-]+ )?(\*|\?|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?(,(\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?)*( (\*|\?|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?(,(\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?)*){4})$`
type CronSchedule string

// LocalSecretKeyReference names a key of a Secret in the same namespace as the referring object.
type LocalSecretKeyReference struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
	// Key within the Secret's data.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Key string `json:"key,omitempty"`
}

// SecretKeyReference names a key of a Secret in a given namespace. Cluster-scoped policies
// use it, so the namespace is explicit.
type SecretKeyReference struct {
	// Namespace of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace"`
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
	// Key within the Secret's data.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key"`
}

// ConfigMapKeyReference names a key of a ConfigMap in a given namespace.
type ConfigMapKeyReference struct {
	// Namespace of the ConfigMap.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace"`
	// Name of the ConfigMap.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
	// Key within the ConfigMap's data (or binaryData).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key"`
}

// DataSource is a document held inline, in a ConfigMap key or in a Secret key. Referenced
// objects are read with a direct get when the policy is reconciled (about once a minute), so
// an edit is picked up without restarting anything.
// +kubebuilder:validation:XValidation:rule="(has(self.data) ? 1 : 0) + (has(self.configMapRef) ? 1 : 0) + (has(self.secretRef) ? 1 : 0) == 1",message="set exactly one of data, configMapRef or secretRef"
type DataSource struct {
	// Data is the document itself.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=65536
	// +optional
	Data string `json:"data,omitempty"`
	// ConfigMapRef names a ConfigMap key holding the document.
	// +optional
	ConfigMapRef *ConfigMapKeyReference `json:"configMapRef,omitempty"`
	// SecretRef names a Secret key holding the document.
	// +optional
	SecretRef *SecretKeyReference `json:"secretRef,omitempty"`
}
