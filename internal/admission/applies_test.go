package admission

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/internal/policyconv/appliestable"
)

// TestAppliesTable runs the shared table through admission's path: the policy's view as the
// doors hold it, and the image of a container as a request names it. The manager and the CLI
// run the same table.
func TestAppliesTable(t *testing.T) {
	for _, tc := range appliestable.Cases {
		p := &v1.ImageTrustPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "table"},
			Spec:       v1.ImageTrustPolicySpec{Images: tc.Images, Admission: &v1.AdmissionSpec{Mode: v1.AdmissionEnforce}},
		}
		view, ok := viewOf(p)
		if !ok {
			t.Fatalf("%v: no admission view", tc.Images)
		}
		ref, err := parseImage(tc.Image)
		if err != nil {
			t.Fatalf("%s: %v", tc.Image, err)
		}
		if got := view.appliesTo(ref, nil); got != tc.Want {
			t.Errorf("policy %v applies to %s (%+v): %v, want %v", tc.Images, tc.Image, ref, got, tc.Want)
		}
	}
}
