// Package v1alpha1 contains the imagetrust API: ImageTrustReport, ImageTrustPolicy and
// RegistryScan in the security.imagetrust.dev group.
//
// +kubebuilder:object:generate=true
// +groupName=security.imagetrust.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of every type in this package.
	GroupVersion = schema.GroupVersion{Group: "security.imagetrust.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this package with a runtime.Scheme. It is
	// apimachinery's, so importing the API pulls in no controller-runtime.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this package to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&ImageTrustReport{}, &ImageTrustReportList{},
		&ImageTrustPolicy{}, &ImageTrustPolicyList{},
		&RegistryScan{}, &RegistryScanList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
