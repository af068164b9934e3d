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
	Name string `json:"name"`
	// Key within the Secret's data.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key"`
}
