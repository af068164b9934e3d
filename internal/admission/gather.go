package admission

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner"
)

// AnnotationBreakGlass on a Pod or a workload's pod template admits it despite a refusal, when
// set by a member of a break-glass group; its value is the reason, recorded in an Event.
const AnnotationBreakGlass = "imagetrust.dev/break-glass"

// IndexReportImage indexes reports by repository@digest, for both the platform digest and the
// index it was reached through: a Pod may name either.
const IndexReportImage = "admission.imagetrust.dev/image"

// reportImageKeys is the IndexReportImage indexer.
func reportImageKeys(o client.Object) []string {
	r, ok := o.(*v1.ImageTrustReport)
	if !ok || r.Spec.Image == "" {
		return nil
	}
	keys := []string{r.Spec.Image + "@" + r.Spec.Digest}
	if r.Spec.IndexDigest != "" && r.Spec.IndexDigest != r.Spec.Digest {
		keys = append(keys, r.Spec.Image+"@"+r.Spec.IndexDigest)
	}
	return keys
}

// Request is what a front door asks, whatever its wire format.
type Request struct {
	Object      ObjectRef
	Containers  []Container
	PullSecrets []string
	// Annotations of the Pod or pod template; OldAnnotations before an UPDATE (nil on CREATE).
	Annotations, OldAnnotations map[string]string
	Update                      bool
	// Owned: the object has a controller owner reference.
	Owned bool
	// User made the request; nil for doors that do not say (no break-glass there).
	User *authenticationv1.UserInfo
}

// Gatherer collects the input of a decision from the manager's informer cache.
type Gatherer struct {
	// Cache reads reports (by IndexReportImage), policies and namespace metadata.
	Cache client.Reader
	// Live reads a namespace the cache has not seen yet (created a moment ago).
	Live client.Reader
	// Tags and Resolver resolve tags to digests; Resolver nil means tags not in Tags are
	// unresolved.
	Tags     *TagCache
	Resolver Resolver
	// ResolveTimeout bounds one registry lookup.
	ResolveTimeout time.Duration
	// Excluded namespaces are always admitted.
	Excluded map[string]bool
	// BreakGlassGroups may set AnnotationBreakGlass; empty disables break-glass.
	BreakGlassGroups []string
	// BreakGlassControllers are users that copy a template's annotation into objects they own
	// (the workload controllers of kube-controller-manager).
	BreakGlassControllers []string

	views  policyViews
	flight singleflight.Group
}

// errNamespaceUnknown is returned when a request's namespace exists neither in the cache nor
// in the API server.
var errNamespaceUnknown = errors.New("namespace not found")

// Gather builds the decision input for a request.
func (g *Gatherer) Gather(ctx context.Context, req Request) (Input, error) {
	in := Input{Object: req.Object, BreakGlass: g.breakGlass(req)}
	if g.Excluded[req.Object.Namespace] {
		in.Excluded = true
		return in, nil
	}
	nsLabels, err := g.namespaceLabels(ctx, req.Object.Namespace)
	if err != nil {
		return Input{}, err
	}
	var list v1.ImageTrustPolicyList
	if err := g.Cache.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return Input{}, fmt.Errorf("listing ImageTrustPolicies: %w", err)
	}
	views := g.views.views(list.Items)
	in.Images = make([]ImageInput, len(req.Containers))
	applicable := make([][]*policyView, len(req.Containers))
	refs := make([]imageRef, len(req.Containers))
	for i, c := range req.Containers {
		in.Images[i] = ImageInput{Container: c}
		ref, perr := parseImage(c.Image)
		if perr != nil {
			// An unparsable image still meets the policies whose patterns match it as written.
			ref = imageRef{Repository: c.Image}
			in.Images[i].Unresolved = perr.Error()
		}
		refs[i] = ref
		for _, pv := range views {
			if pv.problem != "" || pv.appliesTo(ref, nsLabels) {
				applicable[i] = append(applicable[i], pv)
			}
		}
	}
	if err := g.resolveAll(ctx, req, refs, applicable, in.Images); err != nil {
		return Input{}, err
	}
	for i := range in.Images {
		if err := g.fillEvidence(ctx, &in.Images[i], refs[i], applicable[i]); err != nil {
			return Input{}, err
		}
	}
	return in, nil
}

// namespaceLabels reads a namespace's labels from the cache, falling back to the API server for
// a namespace created a moment ago. Without labels selectors cannot be judged: an error.
func (g *Gatherer) namespaceLabels(ctx context.Context, ns string) (map[string]string, error) {
	if ns == "" {
		return map[string]string{}, nil
	}
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	err := g.Cache.Get(ctx, types.NamespacedName{Name: ns}, m)
	if apierrors.IsNotFound(err) && g.Live != nil {
		err = g.Live.Get(ctx, types.NamespacedName{Name: ns}, m)
	}
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("%w: %s", errNamespaceUnknown, ns)
	}
	if err != nil {
		return nil, fmt.Errorf("reading namespace %s: %w", ns, err)
	}
	return m.Labels, nil
}

// resolveAll fills the digest of every image some policy applies to, resolving tags missing
// from the tag cache in parallel, each lookup bounded by ResolveTimeout.
func (g *Gatherer) resolveAll(ctx context.Context, req Request, refs []imageRef, applicable [][]*policyView, imgs []ImageInput) error {
	var eg errgroup.Group
	for i := range imgs {
		img, ref := &imgs[i], refs[i]
		img.Repository, img.Tag, img.Digest = ref.Repository, ref.Tag, ref.Digest
		if img.Unresolved != "" || img.Digest != "" || len(applicable[i]) == 0 {
			continue
		}
		if d, ok := g.Tags.Lookup(ref.Repository, ref.Tag); ok {
			img.Digest = d
			continue
		}
		if g.Resolver == nil {
			img.Unresolved = "tag not seen recently and registry lookups are off"
			continue
		}
		eg.Go(func() error {
			d, err := g.lookup(ctx, req, ref)
			if err != nil {
				img.Unresolved = scanner.Redact(err.Error())
				return nil
			}
			img.Digest = d
			return nil
		})
	}
	return eg.Wait()
}

// lookup asks the Resolver once per repository:tag at a time (concurrent admissions of the same
// new tag share one HEAD) and remembers the answer.
func (g *Gatherer) lookup(ctx context.Context, req Request, ref imageRef) (string, error) {
	key := req.Object.Namespace + "/" + ref.Repository + ":" + ref.Tag
	v, err, _ := g.flight.Do(key, func() (any, error) {
		c, cancel := context.WithTimeout(ctx, g.ResolveTimeout)
		defer cancel()
		d, err := g.Resolver.Resolve(c, req.Object.Namespace, ref.Repository+":"+ref.Tag, req.PullSecrets)
		if err != nil {
			return "", err
		}
		g.Tags.Observe(ref.Repository, ref.Tag, d)
		return d, nil
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

// fillEvidence attaches each applicable policy's verdict for the image, from the reports of
// every namespace for the same repository and digest.
func (g *Gatherer) fillEvidence(ctx context.Context, img *ImageInput, ref imageRef, pols []*policyView) error {
	var reports []*v1.ImageTrustReport
	if img.Digest != "" && len(pols) > 0 {
		var list v1.ImageTrustReportList
		if err := g.Cache.List(ctx, &list, client.MatchingFields{IndexReportImage: ref.Repository + "@" + img.Digest}, client.UnsafeDisableDeepCopy); err != nil {
			return fmt.Errorf("listing ImageTrustReports: %w", err)
		}
		for i := range list.Items {
			reports = append(reports, &list.Items[i])
		}
	}
	for _, pv := range pols {
		img.Policies = append(img.Policies, PolicyCheck{Policy: pv.ref, Evidence: evidenceFor(pv, reports)})
	}
	return nil
}

// breakGlass works out whether the request asks for break-glass and may have it.
func (g *Gatherer) breakGlass(req Request) BreakGlass {
	reason, ok := req.Annotations[AnnotationBreakGlass]
	if !ok || req.User == nil {
		return BreakGlass{}
	}
	old, hadOld := req.OldAnnotations[AnnotationBreakGlass]
	bg := BreakGlass{Requested: true, Reason: reason, Enabled: len(g.BreakGlassGroups) > 0,
		Changed: !req.Update || !hadOld || old != reason, User: req.User.Username}
	member := slices.ContainsFunc(req.User.Groups, func(grp string) bool { return slices.Contains(g.BreakGlassGroups, grp) })
	copied := req.Owned && !req.Update && slices.Contains(g.BreakGlassControllers, req.User.Username)
	bg.Authorized = bg.Enabled && (member || copied)
	return bg
}
