package controllers

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// Workload is the top-level owner of pods: what a report lists and where events go.
type Workload struct {
	APIVersion string
	Kind       string
	Name       string
	UID        types.UID
}

// ownerLookup fetches an owner's metadata (ReplicaSets and Jobs, from metadata-only caches).
// It returns nil, nil when the owner does not exist.
type ownerLookup func(ctx context.Context, apiVersion, kind, namespace, name string) (*metav1.ObjectMeta, error)

// controllerOf returns the controller owner reference, or nil.
func controllerOf(refs []metav1.OwnerReference) *metav1.OwnerReference {
	for i := range refs {
		if refs[i].Controller != nil && *refs[i].Controller {
			return &refs[i]
		}
	}
	return nil
}

// resolveOwner walks a pod's controller references up to the workload a person manages:
// Pod → ReplicaSet → Deployment, Pod → Job → CronJob, Pod → StatefulSet/DaemonSet, and a bare
// pod is its own workload. Only ReplicaSets and Jobs are looked up (they are the intermediate
// owners Kubernetes creates); any other controller (a Rollout, a custom operator) is taken as the
// top. A ReplicaSet or Job that is already gone is reported as itself rather than guessed at.
func resolveOwner(ctx context.Context, pod *metav1.ObjectMeta, lookup ownerLookup) (Workload, error) {
	self := Workload{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID}
	ref := controllerOf(pod.OwnerReferences)
	if ref == nil {
		return self, nil
	}
	w := Workload{APIVersion: ref.APIVersion, Kind: ref.Kind, Name: ref.Name, UID: ref.UID}
	for depth := 0; depth < 2; depth++ {
		if !(w.Kind == "ReplicaSet" && isGroup(w.APIVersion, "apps")) && !(w.Kind == "Job" && isGroup(w.APIVersion, "batch")) {
			return w, nil
		}
		meta, err := lookup(ctx, w.APIVersion, w.Kind, pod.Namespace, w.Name)
		if err != nil {
			if apierrors.IsNotFound(err) {
				return w, nil
			}
			return w, err
		}
		if meta == nil {
			return w, nil
		}
		up := controllerOf(meta.OwnerReferences)
		if up == nil {
			return w, nil
		}
		w = Workload{APIVersion: up.APIVersion, Kind: up.Kind, Name: up.Name, UID: up.UID}
	}
	return w, nil
}

func isGroup(apiVersion, group string) bool {
	gv, err := schema.ParseGroupVersion(apiVersion)
	return err == nil && gv.Group == group
}
