package admission

// Benchmarks of admission latency, each against its baseline in the same run:
//
//   - BenchmarkDecision: a Pod of 5 containers decided from the informer cache, against the
//     same Pod decided the way admission-time verifiers do it, re-verifying each image's cosign
//     signature (with a Rekor bundle) in the registry.
//   - BenchmarkPodCreate: the latency the webhook adds to a Pod create through the real API
//     server, against creates in a namespace the webhook does not judge.
//
// Both report p50 and p99 of the per-operation latency (the mean is go test's ns/op).
//
//	go test ./internal/admission -run '^$' -bench . -benchtime 2000x

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner/verify"
	"github.com/imagetrust/imagetrust/scanner/verify/signtest"
)

// latencies collects per-operation durations.
type latencies []time.Duration

func (l latencies) quantile(q float64) time.Duration {
	s := slices.Clone(l)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func (l latencies) report(b *testing.B, prefix string) {
	b.ReportMetric(float64(l.quantile(0.50).Microseconds()), prefix+"p50-µs")
	b.ReportMetric(float64(l.quantile(0.99).Microseconds()), prefix+"p99-µs")
}

type podFixture struct {
	containers []Container
	refs       []name.Digest
	auth       verify.Authority
}

var podFixtures sync.Map // namespace -> *podFixture: go test runs a benchmark more than once

// signedPod pushes and signs 5 images, writes a Trusted report for each under an Enforce
// policy, and returns the Pod's containers, the digests and the verifier's authority.
func signedPod(b *testing.B, w *world, ns string) ([]Container, []name.Digest, verify.Authority) {
	b.Helper()
	if f, ok := podFixtures.Load(ns); ok {
		f := f.(*podFixture)
		return f.containers, f.refs, f.auth
	}
	ctx := context.Background()
	reg := testRegistry(b)
	kp, err := signtest.NewKeyPair()
	if err != nil {
		b.Fatal(err)
	}
	rekor, err := signtest.NewRekor()
	if err != nil {
		b.Fatal(err)
	}
	root := reg.Host() + "/" + ns
	ensureNamespace(b, w, ns, nil)
	p := &v1.ImageTrustPolicy{ObjectMeta: metav1.ObjectMeta{Name: ns},
		Spec: v1.ImageTrustPolicySpec{Images: []string{root + "/**"}, Admission: &v1.AdmissionSpec{Mode: v1.AdmissionEnforce}}}
	if err := w.env.Client.Create(ctx, p); err != nil {
		b.Fatal(err)
	}
	w.waitCached(b, p)
	var cs []Container
	var refs []name.Digest
	for i := range 5 {
		img, err := random.Image(1024, 2)
		if err != nil {
			b.Fatal(err)
		}
		d, err := reg.Push(ctx, fmt.Sprintf("%s/app%d:v1", root, i), img)
		if err != nil {
			b.Fatal(err)
		}
		if err := signtest.Sign(ctx, d, kp, rekor, ociremote.WithRemoteOptions(reg.RemoteOptions(ctx)...)); err != nil {
			b.Fatal(err)
		}
		refs = append(refs, d)
		cs = append(cs, Container{Name: fmt.Sprintf("c%d", i), Kind: KindContainer, Image: d.String()})
		writeReport(b, w, ns, fmt.Sprintf("app%d", i), d.Context().Name(), d.DigestStr(), v1.ImageTrustReportStatus{Policy: &v1.PolicyResult{
			Verdict: v1.VerdictTrusted, Results: []v1.PolicyVerdict{{Policy: ns, Verdict: v1.VerdictTrusted, ObservedGeneration: p.Generation}}}})
	}
	auth := verify.Authority{Name: ns + "/release", PublicKeyPEM: kp.PublicPEM, RekorPublicKeyPEM: rekor.Key.PublicPEM}
	podFixtures.Store(ns, &podFixture{containers: cs, refs: refs, auth: auth})
	return cs, refs, auth
}

// BenchmarkDecision: the same 5-container Pod, decided from the cache and by re-verifying, in
// one loop so both see the same machine load.
func BenchmarkDecision(b *testing.B) {
	w := webhookWorld(b)
	cs, refs, auth := signedPod(b, w, "bench-decision")
	ctx := context.Background()
	req := Request{Object: ObjectRef{Kind: "Pod", Namespace: "bench-decision", Name: "p"}, Containers: cs,
		User: &authenticationv1.UserInfo{Username: "bench"}}
	reg := testRegistry(b)
	verifier := &verify.Verifier{RegistryOptions: reg.RemoteOptions(ctx)}
	if d, err := w.adm.Admitter.Admit(ctx, req, true); err != nil || !d.Allowed {
		b.Fatalf("cached decision: %+v %v", d, err)
	}
	var cached, reverified latencies
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		d, err := w.adm.Admitter.Admit(ctx, req, true)
		cached = append(cached, time.Since(t0))
		if err != nil || !d.Allowed {
			b.Fatalf("cached decision: %+v %v", d, err)
		}
		t1 := time.Now()
		for _, ref := range refs {
			if r := verifier.VerifySignatures(ctx, ref, []verify.Authority{auth}); r.State != verify.Verified {
				b.Fatalf("re-verify %s: %s %s", ref, r.State, r.Reason)
			}
		}
		reverified = append(reverified, time.Since(t1))
	}
	b.StopTimer()
	cached.report(b, "cache-")
	reverified.report(b, "reverify-")
	b.ReportMetric(float64(reverified.quantile(0.5))/float64(cached.quantile(0.5)), "p50-ratio")
}

// BenchmarkPodCreate: Pod creates through the API server with the webhook judging them
// (5 trusted images) against creates in the manager's namespace, which the shipped
// namespaceSelector excludes, alternating so both see the same load.
func BenchmarkPodCreate(b *testing.B) {
	w := webhookWorld(b)
	cs, _, _ := signedPod(b, w, "bench-create")
	u := w.user(b, "bench")
	ctx := context.Background()
	spec := corev1.PodSpec{}
	for _, c := range cs {
		spec.Containers = append(spec.Containers, corev1.Container{Name: c.Name, Image: c.Image})
	}
	create := func(ns string) time.Duration {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "bench-"}, Spec: spec}
		t0 := time.Now()
		if err := u.Create(ctx, p); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	create("bench-create")
	create(managerNS)
	var on, off latencies
	b.ResetTimer()
	for range b.N {
		on = append(on, create("bench-create"))
		off = append(off, create(managerNS))
	}
	b.StopTimer()
	on.report(b, "webhook-")
	off.report(b, "nowebhook-")
	b.ReportMetric(float64((on.quantile(0.5) - off.quantile(0.5)).Microseconds()), "added-p50-µs")
	b.ReportMetric(float64((on.quantile(0.99) - off.quantile(0.99)).Microseconds()), "added-p99-µs")
}
