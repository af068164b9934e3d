package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
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
}

// Stalled reports whether a person must fix the policy.
func (p *compiledPolicy) Stalled() bool { return p.Scanner.Stalled() }

// AuthorityName is how an authority of a policy is named in signers and reports.
func AuthorityName(policyName, authority string) string {
	return policyconv.AuthorityName(policyName, authority)
}

// compilePolicy converts an ImageTrustPolicy. Secrets are read through reader (the API reader:
// Secrets are never cached by the manager). Only a failing API call is returned as an error;
// everything a person must fix lands in Problems.
func compilePolicy(ctx context.Context, reader client.Reader, p *securityv1alpha1.ImageTrustPolicy) (*compiledPolicy, error) {
	s := p.Spec
	conv, err := policyconv.Convert(ctx, p, func(ctx context.Context, namespace, name, key string) ([]byte, string, error) {
		return readSecretKey(ctx, reader, namespace, name, key)
	})
	if err != nil {
		return nil, err
	}
	cp := &compiledPolicy{Name: p.Name, Generation: p.Generation, Scanner: conv.Policy}
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
