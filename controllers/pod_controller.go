package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/imagetrust/imagetrust/scanner"
)

// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=replicasets,verbs=get;list;watch
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch

// PodReconciler tells the Engine which digests each pod runs and under which workload.
type PodReconciler struct {
	Client    client.Client
	APIReader client.Reader
	Engine    *Engine
	// Pool reaches registries for pods that have not pulled their images yet.
	Pool *scannerPool
	// Clock bounds how long a resolved tag is reused.
	Clock Clock
	// DefaultPlatform picks the platform of a multi-arch image a pod has not pulled yet.
	DefaultPlatform string

	resolveMu sync.Mutex
	resolved  map[string]resolvedSpec // access key + spec image → digest, for pods still pulling
}

type resolvedSpec struct {
	repo, digest string
	at           time.Time
}

// specResolveTTL bounds how long a tag resolved for a pending pod is reused; once the pod
// runs, its status carries the digest the node pulled.
const specResolveTTL = 5 * time.Minute

// Reconcile implements reconcile.Reconciler.
func (r *PodReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var pod corev1.Pod
	if err := r.Client.Get(ctx, req.NamespacedName, &pod); err != nil {
		if apierrors.IsNotFound(err) {
			r.Engine.SetPodUses(req.NamespacedName, nil, nil)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		r.Engine.SetPodUses(req.NamespacedName, nil, nil)
		return ctrl.Result{}, nil
	}
	owner, err := resolveOwner(ctx, &pod.ObjectMeta, r.lookupOwner)
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("resolving the owner of pod %s: %w", req.NamespacedName, err)
	}
	var secrets []string
	for _, s := range pod.Spec.ImagePullSecrets {
		secrets = append(secrets, s.Name)
	}
	acc := r.Pool.pullAccess(ctx, r.APIReader, pod.Namespace, secrets)

	uses, errs := r.uses(ctx, &pod, owner, acc)
	r.Engine.SetPodUses(req.NamespacedName, uses, acc)
	return ctrl.Result{}, errors.Join(errs...)
}

// uses lists the pod's containers (init, regular and ephemeral) with their digests.
func (r *PodReconciler) uses(ctx context.Context, pod *corev1.Pod, owner Workload, acc *access) ([]PodUse, []error) {
	type ctr struct{ name, image string }
	var ctrs []ctr
	for _, c := range pod.Spec.InitContainers {
		ctrs = append(ctrs, ctr{c.Name, c.Image})
	}
	for _, c := range pod.Spec.Containers {
		ctrs = append(ctrs, ctr{c.Name, c.Image})
	}
	for _, c := range pod.Spec.EphemeralContainers {
		ctrs = append(ctrs, ctr{c.Name, c.Image})
	}
	ids := map[string]string{}
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses, pod.Status.EphemeralContainerStatuses} {
		for _, s := range list {
			ids[s.Name] = s.ImageID
		}
	}
	var uses []PodUse
	var errs []error
	for _, c := range ctrs {
		repo, digest, ok := parseImageID(ids[c.name], c.image)
		if !ok {
			var err error
			repo, digest, err = r.resolveSpec(ctx, acc, c.image)
			if err != nil {
				errs = append(errs, fmt.Errorf("container %s: %w", c.name, err))
				continue
			}
		}
		uses = append(uses, PodUse{Digest: digest, Repository: repo, Tag: specTag(c.image), Container: c.name, Workload: owner})
	}
	return uses, errs
}

// resolveSpec finds the digest of a container image that has no imageID yet (the pod is still
// pulling or cannot pull): a digest pinned in the spec is used as is; a tag is resolved through
// the registry, for the default platform when it names a multi-arch index.
func (r *PodReconciler) resolveSpec(ctx context.Context, acc *access, image string) (string, string, error) {
	repo, err := normaliseRepo(image)
	if err != nil {
		return "", "", fmt.Errorf("invalid image %q: %w", image, err)
	}
	key := acc.key + "|" + image
	now := r.Clock.Now()
	r.resolveMu.Lock()
	if r.resolved == nil {
		r.resolved = map[string]resolvedSpec{}
	}
	if c, ok := r.resolved[key]; ok && now.Sub(c.at) < specResolveTTL {
		r.resolveMu.Unlock()
		return c.repo, c.digest, nil
	}
	r.resolveMu.Unlock()

	sc, err := r.Pool.get(acc)
	if err != nil {
		return "", "", err
	}
	imgs, err := sc.Resolve(ctx, image, []string{r.DefaultPlatform})
	if errors.Is(err, scanner.ErrPlatformNotFound) {
		imgs, err = sc.Resolve(ctx, image, nil)
	}
	if err != nil {
		return "", "", err
	}
	if len(imgs) == 0 {
		return "", "", fmt.Errorf("image %s resolved to no platform image", image)
	}
	d := imgs[0].Digest
	if pinned := specDigest(image); pinned != "" && imgs[0].IndexDigest == "" {
		d = pinned
	}
	r.resolveMu.Lock()
	if len(r.resolved) > 10000 {
		clear(r.resolved)
	}
	r.resolved[key] = resolvedSpec{repo: repo, digest: d, at: now}
	r.resolveMu.Unlock()
	return repo, d, nil
}

// lookupOwner reads a ReplicaSet's or Job's metadata from the metadata-only cache.
func (r *PodReconciler) lookupOwner(ctx context.Context, apiVersion, kind, namespace, name string) (*metav1.ObjectMeta, error) {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(schema.FromAPIVersionAndKind(apiVersion, kind))
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, m); err != nil {
		return nil, err
	}
	return &m.ObjectMeta, nil
}

// trimPod is the cache transform for pods: it keeps only what the controllers read, so a
// large cluster's pods cost a few hundred bytes each in memory instead of kilobytes.
func trimPod(obj interface{}) (interface{}, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{
		TypeMeta: pod.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID, ResourceVersion: pod.ResourceVersion,
			Labels: pod.Labels, OwnerReferences: pod.OwnerReferences, DeletionTimestamp: pod.DeletionTimestamp,
		},
		Spec: corev1.PodSpec{
			ServiceAccountName: pod.Spec.ServiceAccountName,
			ImagePullSecrets:   pod.Spec.ImagePullSecrets,
		},
		Status: corev1.PodStatus{Phase: pod.Status.Phase},
	}
	for _, c := range pod.Spec.InitContainers {
		out.Spec.InitContainers = append(out.Spec.InitContainers, corev1.Container{Name: c.Name, Image: c.Image})
	}
	for _, c := range pod.Spec.Containers {
		out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: c.Name, Image: c.Image})
	}
	for _, c := range pod.Spec.EphemeralContainers {
		out.Spec.EphemeralContainers = append(out.Spec.EphemeralContainers, corev1.EphemeralContainer{
			EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: c.Name, Image: c.Image},
		})
	}
	trim := func(in []corev1.ContainerStatus) []corev1.ContainerStatus {
		var o []corev1.ContainerStatus
		for _, s := range in {
			o = append(o, corev1.ContainerStatus{Name: s.Name, Image: s.Image, ImageID: s.ImageID})
		}
		return o
	}
	out.Status.InitContainerStatuses = trim(pod.Status.InitContainerStatuses)
	out.Status.ContainerStatuses = trim(pod.Status.ContainerStatuses)
	out.Status.EphemeralContainerStatuses = trim(pod.Status.EphemeralContainerStatuses)
	return out, nil
}

// NamespaceReconciler feeds namespace labels to the Engine for policy namespace selectors.
type NamespaceReconciler struct {
	Client client.Client
	Engine *Engine
}

// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch

// Reconcile implements reconcile.Reconciler.
func (r *NamespaceReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	if err := r.Client.Get(ctx, req.NamespacedName, m); err != nil {
		if apierrors.IsNotFound(err) {
			r.Engine.SetNamespaceLabels(req.Name, nil)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	r.Engine.SetNamespaceLabels(req.Name, nonNil(m.Labels))
	return ctrl.Result{}, nil
}

// loadAll records every namespace's labels before the Engine's first pass, through the same
// metadata-only informer the reconciler uses.
func (r *NamespaceReconciler) loadAll(ctx context.Context) error {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NamespaceList"))
	if err := r.Client.List(ctx, list); err != nil {
		return err
	}
	for _, ns := range list.Items {
		r.Engine.SetNamespaceLabels(ns.Name, nonNil(ns.Labels))
	}
	return nil
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
