package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/robfig/cron/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/internal/policyconv"
	"github.com/imagetrust/imagetrust/scanner"
)

// DefaultPolicySchedule is the re-verification schedule of a policy that sets none (the CRD
// defaults it too; this covers objects written before the default existed).
const DefaultPolicySchedule = "0 */6 * * *"

// compiledPolicy is an ImageTrustPolicy turned into what the scanner evaluates, plus what the
// controllers need around it: the namespace selector and the schedule. Configuration errors
// (missing Secret, invalid key, bad selector or schedule) are Scanner.Problems: such a policy
// still applies (its images are reported), but its verdict is Unknown with the problem as the
// reason — an image must not look Trusted because its policy's key could not be read.
type compiledPolicy struct {
	Name       string
	Generation int64
	Scanner    scanner.Policy
	Selector   labels.Selector // nil matches every namespace
	Schedule   cron.Schedule   // nil when the schedule does not parse
	// TrustRoots are the trust-root providers the policy names, kept in the pool while it
	// exists, loaded or not.
	TrustRoots []scanner.TrustRootProvider
	// Pending and Unavailable are the problems of trust roots still loading, and of those
	// whose loads failed; both are in Scanner.Problems too.
	Pending, Unavailable []string
}

// Stalled reports whether a person must fix the policy.
func (p *compiledPolicy) Stalled() bool { return p.Scanner.Stalled() }

// AuthorityName is how an authority of a policy is named in signers and reports.
func AuthorityName(policyName, authority string) string {
	return policyconv.AuthorityName(policyName, authority)
}

// compilePolicy converts an ImageTrustPolicy. Secrets and ConfigMaps are read with direct gets
// through reader (the API reader: the manager caches neither), trust roots come from roots (nil:
// none). Only a failing API call is returned as an error; everything a person must fix lands in
// Problems.
func compilePolicy(ctx context.Context, reader client.Reader, roots *scanner.TrustRoots, p *securityv1alpha1.ImageTrustPolicy) (*compiledPolicy, error) {
	s := p.Spec
	env := policyconv.Env{
		Secrets: func(ctx context.Context, namespace, name, key string) ([]byte, string, error) {
			return readSecretKey(ctx, reader, namespace, name, key)
		},
		ConfigMaps: func(ctx context.Context, namespace, name, key string) ([]byte, string, error) {
			return readConfigMapKey(ctx, reader, namespace, name, key)
		},
	}
	if roots != nil {
		env.TrustRoots = roots
	}
	conv, err := policyconv.Convert(ctx, p, env)
	if err != nil {
		return nil, err
	}
	cp := &compiledPolicy{Name: p.Name, Generation: p.Generation, Scanner: conv.Policy,
		TrustRoots: conv.TrustRoots, Pending: conv.Pending, Unavailable: conv.Unavailable}
	if s.NamespaceSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(s.NamespaceSelector)
		if err != nil {
			cp.Scanner.Problems = append(cp.Scanner.Problems, "namespaceSelector: "+err.Error())
			sel = labels.Nothing()
		}
		cp.Selector = sel
	}
	sched := string(s.Schedule)
	if sched == "" {
		sched = DefaultPolicySchedule
	}
	if cs, err := cron.ParseStandard(sched); err != nil {
		cp.Scanner.Problems = append(cp.Scanner.Problems, fmt.Sprintf("schedule %q: %v", sched, err))
	} else {
		cp.Schedule = cs
	}
	return cp, nil
}

// readSecretKey reads one key of a Secret. problem is set (and err nil) for what a person must
// fix; it names the Secret and key, never the data.
func readSecretKey(ctx context.Context, reader client.Reader, namespace, name, key string) (data []byte, problem string, err error) {
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return nil, fmt.Sprintf("Secret name %q is not a valid name: %s", name, strings.Join(errs, "; ")), nil
	}
	var sec corev1.Secret
	if err := reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &sec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Sprintf("Secret %s/%s not found", namespace, name), nil
		}
		if apierrors.IsForbidden(err) {
			return nil, fmt.Sprintf("not allowed to read Secret %s/%s", namespace, name), nil
		}
		return nil, "", fmt.Errorf("reading Secret %s/%s: %w", namespace, name, err)
	}
	v, ok := sec.Data[key]
	if !ok {
		return nil, fmt.Sprintf("Secret %s/%s has no key %q", namespace, name, key), nil
	}
	return v, "", nil
}

// readConfigMapKey reads one key of a ConfigMap (data, or binaryData). problem is set (and err
// nil) for what a person must fix.
func readConfigMapKey(ctx context.Context, reader client.Reader, namespace, name, key string) (data []byte, problem string, err error) {
	var cm corev1.ConfigMap
	if err := reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &cm); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Sprintf("ConfigMap %s/%s not found", namespace, name), nil
		}
		if apierrors.IsForbidden(err) {
			return nil, fmt.Sprintf("not allowed to read ConfigMap %s/%s", namespace, name), nil
		}
		return nil, "", fmt.Errorf("reading ConfigMap %s/%s: %w", namespace, name, err)
	}
	if v, ok := cm.Data[key]; ok {
		return []byte(v), "", nil
	}
	if v, ok := cm.BinaryData[key]; ok {
		return v, "", nil
	}
	return nil, fmt.Sprintf("ConfigMap %s/%s has no key %q", namespace, name, key), nil
}

// sameCompiled reports whether two compilations of a policy are the same. Trust-root providers
// are compared by identity: a TUF provider's state changes under its own lock while it loads,
// and must not be read without it.
func sameCompiled(a, b *compiledPolicy) bool {
	if a == nil || b == nil {
		return a == b
	}
	ra, rb := a.providers(), b.providers()
	if !slices.Equal(ra, rb) {
		return false
	}
	return reflect.DeepEqual(a.withoutProviders(), b.withoutProviders())
}

// providers lists every trust-root provider the compilation holds.
func (p *compiledPolicy) providers() []scanner.TrustRootProvider {
	out := slices.Clone(p.TrustRoots)
	for _, a := range p.Scanner.AuthorityConfigs {
		out = append(out, a.TrustRoot)
	}
	return out
}

// withoutProviders is a copy of p with its providers left out.
func (p *compiledPolicy) withoutProviders() compiledPolicy {
	c := *p
	c.TrustRoots = nil
	c.Scanner.AuthorityConfigs = slices.Clone(p.Scanner.AuthorityConfigs)
	for i := range c.Scanner.AuthorityConfigs {
		c.Scanner.AuthorityConfigs[i].TrustRoot = nil
	}
	return c
}

// appliesTo reports whether the policy covers an image (repository plus the tags it was seen
// under) in a namespace with the given labels.
func (p *compiledPolicy) appliesTo(repo string, tags []string, nsLabels map[string]string) bool {
	if p.Selector != nil && !p.Selector.Matches(labels.Set(nsLabels)) {
		return false
	}
	return p.Scanner.Applies(repo, tags)
}

// authorityKey fingerprints the authority material of a set of policies: a verification is
// reused only while it was made against exactly these authorities.
func authorityKey(pols []*compiledPolicy) string {
	var all []scanner.Authority
	for _, p := range pols {
		all = append(all, p.Scanner.AuthorityConfigs...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Name < all[j].Name })
	b, _ := json.Marshal(all)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// scannerPolicies unwraps compiled policies for the scanner, in name order.
func scannerPolicies(pols []*compiledPolicy) []scanner.Policy {
	out := make([]scanner.Policy, 0, len(pols))
	for _, p := range pols {
		out = append(out, p.Scanner)
	}
	return out
}
