package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RegistryScanSpec lists registry repositories to assess on a schedule, whether or not the
// images run in the cluster.
type RegistryScanSpec struct {
	// Repositories to list, for example registry.example.com/team/app.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=512
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([a-z0-9.:_-]*[a-z0-9])?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)+$`
	// +listType=set
	Repositories []string `json:"repositories"`

	// TagFilter selects which tags are assessed.
	// +optional
	TagFilter TagFilter `json:"tagFilter,omitempty"`

	// Schedule on which the repositories are listed.
	// +kubebuilder:default="0 */6 * * *"
	// +optional
	Schedule CronSchedule `json:"schedule,omitempty"`

	// Suspend stops scheduled listing; existing reports stay.
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// CredentialsSecretRef names a kubernetes.io/dockerconfigjson Secret in this namespace.
	// +optional
	CredentialsSecretRef *LocalSecretKeyReference `json:"credentialsSecretRef,omitempty"`

	// Platforms to assess in multi-arch indexes, as os/arch[/variant]. Empty assesses every
	// platform of the index.
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9.]+)?$`
	// +kubebuilder:validation:items:MaxLength=64
	// +listType=set
	// +optional
	Platforms []string `json:"platforms,omitempty"`

	// Insecure talks to the registry over plain HTTP or without verifying its certificate.
	// +optional
	Insecure bool `json:"insecure,omitempty"`

	// CABundleSecretRef names a Secret key in this namespace holding PEM CA certificates for a
	// registry with a private CA.
	// +optional
	CABundleSecretRef *LocalSecretKeyReference `json:"caBundleSecretRef,omitempty"`
}

// TagFilter selects tags: include and exclude regular expressions, a semver constraint, and
// keep only the latest N of what remains.
type TagFilter struct {
	// Include keeps tags matching any of these regular expressions (RE2). Empty keeps all.
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self.all(r, ''.matches(r) == ''.matches(r))",message="include must hold valid regular expressions"
	// +optional
	Include []string `json:"include,omitempty"`
	// Exclude drops tags matching any of these regular expressions (RE2).
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self.all(r, ''.matches(r) == ''.matches(r))",message="exclude must hold valid regular expressions"
	// +optional
	Exclude []string `json:"exclude,omitempty"`
	// Semver keeps tags that parse as semantic versions and satisfy this constraint, for
	// example ">=1.2.0 <2".
	// +kubebuilder:validation:MaxLength=256
	// +optional
	Semver string `json:"semver,omitempty"`
	// Latest keeps the N newest remaining tags (by semantic version when set, else by name).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	Latest int32 `json:"latest,omitempty"`
}

// RegistryScanStatus is the observed state of a RegistryScan.
type RegistryScanStatus struct {
	// ObservedGeneration is the generation last reconciled.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// LastScheduleTime is when listing last started.
	// +optional
	LastScheduleTime *metav1.Time `json:"lastScheduleTime,omitempty"`
	// NextScheduleTime is when listing starts next.
	// +optional
	NextScheduleTime *metav1.Time `json:"nextScheduleTime,omitempty"`
	// LastSuccessfulTime is when listing last completed without error.
	// +optional
	LastSuccessfulTime *metav1.Time `json:"lastSuccessfulTime,omitempty"`
	// TagsFound counts tags kept by the filter in the last run.
	// +optional
	TagsFound int32 `json:"tagsFound,omitempty"`
	// DigestsFound counts distinct platform digests in the last run.
	// +optional
	DigestsFound int32 `json:"digestsFound,omitempty"`
	// Conditions: Ready, Reconciling, Stalled.
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// RegistryScan lists repositories on a schedule and writes an ImageTrustReport per image digest.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=regscan,categories=imagetrust
// +kubebuilder:printcolumn:name="Schedule",type=string,JSONPath=`.spec.schedule`
// +kubebuilder:printcolumn:name="Suspend",type=boolean,JSONPath=`.spec.suspend`
// +kubebuilder:printcolumn:name="Tags",type=integer,JSONPath=`.status.tagsFound`
// +kubebuilder:printcolumn:name="Digests",type=integer,JSONPath=`.status.digestsFound`
// +kubebuilder:printcolumn:name="Last Success",type=date,JSONPath=`.status.lastSuccessfulTime`
// +kubebuilder:printcolumn:name="Next",type=string,JSONPath=`.status.nextScheduleTime`,description="When listing starts next (RFC 3339)"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type RegistryScan struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   RegistryScanSpec   `json:"spec"`
	Status RegistryScanStatus `json:"status,omitempty"`
}

// RegistryScanList is a list of RegistryScan.
// +kubebuilder:object:root=true
type RegistryScanList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RegistryScan `json:"items"`
}
