package controllers

// What admission needs from the controllers: queueing images it found no verdict for — through
// a request report, so a replica that is not the leader can ask too — and resolving tags with
// the Engine's registry clients, limits and pull credentials.

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
)

const (
	// LabelRequestedBy marks a report created to ask for an assessment (value "admission"):
	// until the leader fills its status, it is a request, not a verdict.
	LabelRequestedBy = "imagetrust.dev/requested-by"
	// AnnotationPullSecrets names the imagePullSecrets of the Pod whose admission asked for the
	// assessment (names only), so the leader reaches the registry as the kubelet would.
	AnnotationPullSecrets = "imagetrust.dev/pull-secrets"
	requestedByAdmission  = "admission"
	// maxAdmissionRequests bounds the requests waiting to be written: admission never waits.
	maxAdmissionRequests = 1024
)

// admissionRequest is one image admission found no verdict for.
type admissionRequest struct {
	namespace, repository, digest, tag string
	pullSecrets                        []string
}

// Admission is the controllers' side of admission: an Assessor and a Resolver.
type Admission struct {
	client client.Client
	reader client.Reader
	pool   *scannerPool

	ch      chan admissionRequest
	mu      sync.Mutex
	pending map[reportKey]bool
}

func newAdmission(c client.Client, reader client.Reader, pool *scannerPool) *Admission {
	return &Admission{client: c, reader: reader, pool: pool, ch: make(chan admissionRequest, maxAdmissionRequests),
		pending: map[reportKey]bool{}}
}

// Assess asks for the assessment of an image admission found no verdict for. It never blocks:
// the request report is written in the background, and a request that finds the queue full is
// dropped (the next admission of the image asks again).
func (a *Admission) Assess(_ context.Context, namespace, repository, digest, tag string, pullSecrets []string) {
	k := reportKey{namespace, repository, digest}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pending[k] {
		return
	}
	select {
	case a.ch <- admissionRequest{namespace, repository, digest, tag, slices.Clone(pullSecrets)}:
		a.pending[k] = true
	default:
	}
}

// Resolve returns the manifest digest a tag points at now, with one HEAD through the Engine's
// registry client for the Pod's pull secrets.
func (a *Admission) Resolve(ctx context.Context, namespace, image string, pullSecrets []string) (string, error) {
	sc, err := a.pool.get(a.pool.pullAccess(ctx, a.reader, namespace, pullSecrets))
	if err != nil {
		return "", err
	}
	return sc.Digest(ctx, image)
}

// Start writes request reports until ctx ends; every replica runs it.
func (a *Admission) Start(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-a.ch:
			_ = a.request(ctx, r) // lost requests are asked again by the next admission
			a.mu.Lock()
			delete(a.pending, reportKey{r.namespace, r.repository, r.digest})
			a.mu.Unlock()
		}
	}
}

// NeedLeaderElection is false: every replica serves admission.
func (a *Admission) NeedLeaderElection() bool { return false }

// request creates the request report; one that exists already (a report of the image, or an
// earlier request) is left alone.
func (a *Admission) request(ctx context.Context, r admissionRequest) error {
	obj := &securityv1alpha1.ImageTrustReport{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: r.namespace, Name: reportName(r.repository, r.digest, 0),
			Labels:      map[string]string{LabelManagedBy: ManagedByValue, LabelRequestedBy: requestedByAdmission},
			Annotations: map[string]string{AnnotationPullSecrets: strings.Join(r.pullSecrets, ",")},
		},
		Spec: securityv1alpha1.ImageTrustReportSpec{Image: trunc(r.repository, maxImageLen), Digest: r.digest, ShortDigest: shortDigest(r.digest)},
	}
	if r.tag != "" {
		obj.Spec.Tags = []string{trunc(r.tag, maxTagLen)}
	}
	if err := a.client.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// requestOf reads an assessment request from a report: one created by admission whose status
// nobody has written yet.
func requestOf(r *securityv1alpha1.ImageTrustReport) (admissionRequest, bool) {
	if r.Labels[LabelRequestedBy] != requestedByAdmission || r.Status.ContentHash != "" {
		return admissionRequest{}, false
	}
	req := admissionRequest{namespace: r.Namespace, repository: r.Spec.Image, digest: r.Spec.Digest}
	if len(r.Spec.Tags) > 0 {
		req.tag = r.Spec.Tags[0]
	}
	if s := r.Annotations[AnnotationPullSecrets]; s != "" {
		req.pullSecrets = strings.Split(s, ",")
	}
	return req, true
}

// SetRequest records that admission asked for an image in a namespace at the given time: it is
// wanted there for the grace period, with the Pod's pull secrets.
func (e *Engine) setRequest(ctx context.Context, r admissionRequest, at time.Time, reader client.Reader) {
	acc := e.pool.pullAccess(ctx, reader, r.namespace, r.pullSecrets)
	e.enqueue(priorityDemand, e.demand.setRequest(types.NamespacedName{Namespace: r.namespace}, r, acc, at)...)
}
