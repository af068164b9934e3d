package controllers

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/internal/policyconv/appliestable"
)

// TestAppliesTable runs the shared table through the manager's path: the policy compiled as the
// policy controller compiles it, a running pod's container (digest from the runtime's image ID,
// tag from the spec) turned into uses as the pod controller does, and the demand's scope of the
// image. Admission and the CLI run the same table.
func TestAppliesTable(t *testing.T) {
	for _, tc := range appliestable.Cases {
		t.Run(tc.Image+" "+tc.Images[0], func(t *testing.T) {
			p := &securityv1alpha1.ImageTrustPolicy{
				ObjectMeta: metav1.ObjectMeta{Name: "table", Generation: 1},
				Spec:       securityv1alpha1.ImageTrustPolicySpec{Images: tc.Images},
			}
			cp, err := compilePolicy(context.Background(), nil, nil, p)
			if err != nil || cp.Stalled() {
				t.Fatalf("compile: %v %v", err, cp.Scanner.Problems)
			}
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "web"},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: tc.Image}}},
				Status:     corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "app", ImageID: appliestable.Digest}}},
			}
			uses, errs := (&PodReconciler{}).uses(context.Background(), pod, Workload{Kind: "Pod", Name: "web"}, anonymous)
			if len(errs) > 0 || len(uses) != 1 {
				t.Fatalf("uses %+v, errors %v", uses, errs)
			}
			d := newDemand(&FakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
			d.setPolicies([]*compiledPolicy{cp})
			d.setPodUses(types.NamespacedName{Namespace: "apps", Name: "web"}, uses, anonymous)
			s, ok := d.scope(imageKey{uses[0].Repository, uses[0].Digest})
			if !ok || len(s.namespaces) != 1 {
				t.Fatalf("no scope for %+v", uses[0])
			}
			if got := len(s.namespaces[0].policies) == 1; got != tc.Want {
				t.Errorf("policy %v applies to pod image %s (repository %s, tag %q): %v, want %v",
					tc.Images, tc.Image, uses[0].Repository, uses[0].Tag, got, tc.Want)
			}
		})
	}
}
