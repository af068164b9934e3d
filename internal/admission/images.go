package admission

import (
	"encoding/json"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Container kinds, as they appear in messages.
const (
	KindInit      = "initContainer"
	KindContainer = "container"
	KindEphemeral = "ephemeralContainer"
)

// Container is one image an admitted object would run.
type Container struct {
	// Name of the container; empty when the door does not say (ImageReview, Gatekeeper keys).
	Name string
	// Kind is KindInit, KindContainer or KindEphemeral.
	Kind string
	// Image as written in the object.
	Image string
}

// Workload is what admission reads from a Pod or from a workload's pod template.
type Workload struct {
	Kind, Namespace, Name string
	Containers            []Container
	PullSecrets           []string
	// Annotations of the Pod, or of the workload's pod template (where break-glass is set, so
	// that it reaches the Pods the workload creates).
	Annotations map[string]string
	// Owned is true when the object has a controller owner reference (a Pod of a ReplicaSet).
	Owned bool
}

// ObjectRef names the admitted object in messages and events.
type ObjectRef struct{ Kind, Namespace, Name string }

func (w Workload) ref() ObjectRef {
	return ObjectRef{Kind: w.Kind, Namespace: w.Namespace, Name: w.Name}
}

// String is "Kind namespace/name", or "Kind in namespace" for an object without a name yet.
func (o ObjectRef) String() string {
	if o.Name == "" {
		return fmt.Sprintf("%s in namespace %s", o.Kind, o.Namespace)
	}
	return fmt.Sprintf("%s %s/%s", o.Kind, o.Namespace, o.Name)
}

// podSource decodes one kind and returns its metadata and pod template.
type podSource func(raw []byte) (meta *metav1.ObjectMeta, tmpl *metav1.ObjectMeta, spec *corev1.PodSpec, err error)

func decodeInto[T any](raw []byte, pick func(*T) (*metav1.ObjectMeta, *metav1.ObjectMeta, *corev1.PodSpec)) (*metav1.ObjectMeta, *metav1.ObjectMeta, *corev1.PodSpec, error) {
	obj := new(T)
	if err := json.Unmarshal(raw, obj); err != nil {
		return nil, nil, nil, err
	}
	m, t, s := pick(obj)
	return m, t, s, nil
}

// workloadKinds are the kinds admission understands, by group and kind. The version is not
// part of the key: the webhook rules ask for v1 of each, and the JSON shape is v1's.
var workloadKinds = map[schema.GroupKind]podSource{
	{Group: "", Kind: "Pod"}: func(raw []byte) (*metav1.ObjectMeta, *metav1.ObjectMeta, *corev1.PodSpec, error) {
		return decodeInto(raw, func(o *corev1.Pod) (*metav1.ObjectMeta, *metav1.ObjectMeta, *corev1.PodSpec) {
			return &o.ObjectMeta, &o.ObjectMeta, &o.Spec
		})
	},
	{Group: "apps", Kind: "Deployment"}: func(raw []byte) (*metav1.ObjectMeta, *metav1.ObjectMeta, *corev1.PodSpec, error) {
		return decodeInto(raw, func(o *appsv1.Deployment) (*metav1.ObjectMeta, *metav1.ObjectMeta, *corev1.PodSpec) {
			return &o.ObjectMeta, &o.Spec.Template.ObjectMeta, &o.Spec.Template.Spec
		})
	},
	{Group: "apps", Kind: "StatefulSet"}: func(raw []byte) (*metav1.ObjectMeta, *metav1.ObjectMeta, *corev1.PodSpec, error) {
		return decodeInto(raw, func(o *appsv1.StatefulSet) (*metav1.ObjectMeta, *metav1.ObjectMeta, *corev1.PodSpec) {
			return &o.ObjectMeta, &o.Spec.Template.ObjectMeta, &o.Spec.Template.Spec
		})
	},
	{Group: "apps", Kind: "DaemonSet"}: func(raw []byte) (*metav1.ObjectMeta, *metav1.ObjectMeta, *corev1.PodSpec, error) {
		return decodeInto(raw, func(o *appsv1.DaemonSet) (*metav1.ObjectMeta, *metav1.ObjectMeta, *corev1.PodSpec) {
			return &o.ObjectMeta, &o.Spec.Template.ObjectMeta, &o.Spec.Template.Spec
		})
	},
	{Group: "apps", Kind: "ReplicaSet"}: func(raw []byte) (*metav1.ObjectMeta, *metav1.ObjectMeta, *corev1.PodSpec, error) {
		return decodeInto(raw, func(o *appsv1.ReplicaSet) (*metav1.ObjectMeta, *metav1.ObjectMeta, *corev1.PodSpec) {
			return &o.ObjectMeta, &o.Spec.Template.ObjectMeta, &o.Spec.Template.Spec
		})
	},
	{Group: "batch", Kind: "Job"}: func(raw []byte) (*metav1.ObjectMeta, *metav1.ObjectMeta, *corev1.PodSpec, error) {
		return decodeInto(raw, func(o *batchv1.Job) (*metav1.ObjectMeta, *metav1.ObjectMeta, *corev1.PodSpec) {
			return &o.ObjectMeta, &o.Spec.Template.ObjectMeta, &o.Spec.Template.Spec
		})
	},
	{Group: "batch", Kind: "CronJob"}: func(raw []byte) (*metav1.ObjectMeta, *metav1.ObjectMeta, *corev1.PodSpec, error) {
		return decodeInto(raw, func(o *batchv1.CronJob) (*metav1.ObjectMeta, *metav1.ObjectMeta, *corev1.PodSpec) {
			t := &o.Spec.JobTemplate.Spec.Template
			return &o.ObjectMeta, &t.ObjectMeta, &t.Spec
		})
	},
}

// DecodeWorkload reads the images of a Pod or workload from its JSON. ok is false for a kind
// admission does not look at.
func DecodeWorkload(gk schema.GroupKind, raw []byte) (w Workload, ok bool, err error) {
	src, ok := workloadKinds[gk]
	if !ok {
		return Workload{}, false, nil
	}
	meta, tmpl, spec, err := src(raw)
	if err != nil {
		return Workload{}, true, fmt.Errorf("decoding %s: %w", gk.Kind, err)
	}
	w = Workload{Kind: gk.Kind, Namespace: meta.Namespace, Name: meta.Name, Annotations: tmpl.Annotations,
		Containers: PodContainers(spec), Owned: metav1.GetControllerOfNoCopy(meta) != nil}
	if w.Name == "" && meta.GenerateName != "" {
		w.Name = meta.GenerateName + "*"
	}
	for _, s := range spec.ImagePullSecrets {
		if s.Name != "" {
			w.PullSecrets = append(w.PullSecrets, s.Name)
		}
	}
	return w, true, nil
}

// PodContainers lists every image of a pod spec: init, regular and ephemeral containers.
func PodContainers(spec *corev1.PodSpec) []Container {
	out := make([]Container, 0, len(spec.InitContainers)+len(spec.Containers)+len(spec.EphemeralContainers))
	for _, c := range spec.InitContainers {
		out = append(out, Container{Name: c.Name, Kind: KindInit, Image: strings.TrimSpace(c.Image)})
	}
	for _, c := range spec.Containers {
		out = append(out, Container{Name: c.Name, Kind: KindContainer, Image: strings.TrimSpace(c.Image)})
	}
	for _, c := range spec.EphemeralContainers {
		out = append(out, Container{Name: c.Name, Kind: KindEphemeral, Image: strings.TrimSpace(c.Image)})
	}
	return out
}

// newImages keeps the containers whose image the old object did not already run: an update
// that leaves the images alone (a scale, a label) is not re-judged, while a changed or added
// image is.
func newImages(cur, old []Container) []Container {
	had := make(map[string]bool, len(old))
	for _, c := range old {
		had[c.Image] = true
	}
	var out []Container
	for _, c := range cur {
		if !had[c.Image] {
			out = append(out, c)
		}
	}
	return out
}
