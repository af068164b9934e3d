package controllers

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner/registry/registrytest"
)

// reportsByImage lists the reports in a namespace by "repository@digest"; it fails on two
// reports for one image.
func (h *harness) reportsByImage(logicalNS string) (map[string]*securityv1alpha1.ImageTrustReport, error) {
	return h.reportsBy(logicalNS, func(r *securityv1alpha1.ImageTrustReport) string { return r.Spec.Image + "@" + r.Spec.Digest })
}

// TestMirroredDigestIsVerifiedPerRepository: one image pushed to two repositories with the same
// basename (an origin and its mirror), signed only in the origin. Pods of one namespace run it
// from each: two reports, Verified/Trusted for the origin and Unsigned/Untrusted for the
// mirror — the origin's signature is never reused for the mirror — while the layers are pulled
// once and the SBOM is matched once, and rematched once after a DB change. A restarted manager
// adopts both reports, and the collector deletes the mirror's report alone once its pod is gone.
func TestMirroredDigestIsVerifiedPerRepository(t *testing.T) {
	h := newHarness(t, "mirror")
	ns := h.ns["mirror"]
	h.labelNamespace("mirror", map[string]string{"imagetrust-test/secure": "true"})
	// tar has a Low finding in the base DB (below the policy's Critical gate); bash gets a
	// Critical one in the new DB. The extra layer makes the digest new to the suite's SBOM cache.
	pkgs := []registrytest.Pkg{{Name: "tar", Version: "1.34+dfsg-1.2+deb12u1"}, {Name: "bash", Version: "5.2.15-2+b7"}}
	img := registrytest.ImageFromLayers(registrytest.DebianLayer(pkgs),
		registrytest.LayerFromFiles(map[string]string{"etc/mirror-test": t.Name() + "-" + h.suffix}))
	origin := h.push("library/web:1.0", img)
	mirror := h.push("mirror/library/web:1.0", img)
	if origin.DigestStr() != mirror.DigestStr() || origin.Context().Name() == mirror.Context().Name() {
		t.Fatalf("want one digest in two repositories: %s, %s", origin, mirror)
	}
	digest := origin.DigestStr()
	h.sign(origin, nil)
	pol := h.keyPolicy("mirror")
	h.create(pol)
	h.reg.Reset()
	h.start()
	h.runPod("mirror", "web", nil, ctr{name: "web", image: h.reg.Repo("library/web:1.0"), imageID: origin.String()})
	h.runPod("mirror", "web-mirrored", nil, ctr{name: "web", image: h.reg.Repo("mirror/library/web:1.0"), imageID: mirror.String()})

	var reports map[string]*securityv1alpha1.ImageTrustReport
	h.eventually(60*time.Second, "two ready reports", func() error {
		rs, err := h.reportsByImage("mirror")
		if err != nil {
			return err
		}
		if len(rs) != 2 {
			return fmt.Errorf("%d reports", len(rs))
		}
		for _, r := range rs {
			if err := isReady(r); err != nil {
				return fmt.Errorf("%s: %w", r.Name, err)
			}
		}
		reports = rs
		return nil
	})
	h.waitIdle()
	o, m := reports[imageOf(origin)], reports[imageOf(mirror)]
	if o == nil || m == nil {
		t.Fatalf("reports are not keyed by repository: %v", keysOf(reports))
	}
	if o.Name == m.Name || !strings.HasPrefix(o.Name, "web-"+shortDigest(digest)) || !strings.HasPrefix(m.Name, "web-"+shortDigest(digest)) {
		t.Errorf("report names %q and %q, want two distinct names starting web-%s", o.Name, m.Name, shortDigest(digest))
	}
	if got := workloadsOf(o); got != "Pod/web[web]" {
		t.Errorf("origin report workloads %q", got)
	}
	if got := workloadsOf(m); got != "Pod/web-mirrored[web]" {
		t.Errorf("mirror report workloads %q", got)
	}

	authority := AuthorityName(pol.Name, "release")
	if s := o.Status.Signature; s.State != securityv1alpha1.SignatureVerified || len(s.Signers) != 1 || s.Signers[0].Authority != authority {
		t.Errorf("origin signature: %+v", s)
	}
	if p := o.Status.Policy; p.Verdict != securityv1alpha1.VerdictTrusted || len(p.FailedChecks) != 0 {
		t.Errorf("origin policy: %+v", p)
	}
	if s := m.Status.Signature; s.State != securityv1alpha1.SignatureUnsigned || len(s.Signers) != 0 {
		t.Errorf("mirror signature: %+v", s)
	}
	if p := m.Status.Policy; p.Verdict != securityv1alpha1.VerdictUntrusted || len(p.FailedChecks) != 1 || p.FailedChecks[0].Check != "signature" {
		t.Errorf("mirror policy: %+v", p)
	}
	wantFindings := []string{"CVE-2026-1001 Low tar 1.34+dfsg-1.2+deb12u1 "}
	for _, r := range []*securityv1alpha1.ImageTrustReport{o, m} {
		if s := r.Status.SBOM; s.Source != securityv1alpha1.SBOMGenerated || s.Packages < 2 {
			t.Errorf("%s SBOM: %+v", r.Spec.Image, s)
		}
		if got := findingIDs(r); !slices.Equal(got, wantFindings) {
			t.Errorf("%s findings %q, want %q", r.Spec.Image, got, wantFindings)
		}
	}
	if o.Status.SBOM.Digest != m.Status.SBOM.Digest {
		t.Errorf("SBOM digests differ: %s, %s", o.Status.SBOM.Digest, m.Status.SBOM.Digest)
	}

	// Verified once per repository; the SBOM generated and matched once for the digest.
	st := h.ctrls.Engine.Stats()
	if st.Verifications[imageOf(origin)] != 1 || st.Verifications[imageOf(mirror)] != 1 {
		t.Errorf("verifications %v, want 1 for each repository", st.Verifications)
	}
	if n := st.Matches[digest]; n != 1 {
		t.Errorf("digest matched %d times, want 1", n)
	}
	if sigRequests(h.reg, digest) < 2 {
		t.Errorf("the signatures of the two repositories were not both looked up: %d requests", sigRequests(h.reg, digest))
	}
	manifest, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	layerGets := map[string]int{}
	for _, r := range h.reg.Requests() {
		if r.Kind == registrytest.KindBlob && r.Method == "GET" {
			layerGets[r.Path[strings.LastIndex(r.Path, "/")+1:]]++
		}
	}
	for _, l := range manifest.Layers {
		if n := layerGets[l.Digest.String()]; n != 1 {
			t.Errorf("layer %s fetched %d times, want once for both repositories", l.Digest, n)
		}
	}
	t.Logf("config blob fetched %d times", layerGets[manifest.Config.Digest.String()])

	// A new DB: one rematch for the digest, both reports updated, nothing asked of the registry.
	h.reg.Reset()
	copyFile(t, newArchive, h.archive)
	h.ctrls.CheckDBArchive(h.ctx)
	for _, d := range []name.Digest{origin, mirror} {
		h.eventually(60*time.Second, "rematched report of "+d.Context().Name(), func() error {
			rs, err := h.reportsByImage("mirror")
			if err != nil {
				return err
			}
			r := rs[imageOf(d)]
			if r == nil || r.Status.Vulnerabilities == nil || r.Status.Vulnerabilities.Critical != 1 {
				return fmt.Errorf("not rematched: %+v", r)
			}
			if r.Status.Policy.Verdict != securityv1alpha1.VerdictUntrusted {
				return fmt.Errorf("verdict %s", r.Status.Policy.Verdict)
			}
			return nil
		})
	}
	h.waitIdle()
	// The DB's fleet rematched the SBOM once for the digest; both repositories took that
	// result, neither matched it again on its own.
	if st := h.ctrls.Engine.Stats(); st.Refreshed[digest] != 1 || st.Matches[digest] != 1 {
		t.Errorf("after one DB change: digest rematched %d times by the fleet and %d times alone, want 1 and 1 (the first match)",
			st.Refreshed[digest], st.Matches[digest])
	}
	if c := h.reg.Counts(); c.Total != 0 {
		t.Errorf("the rematch reached the registry: %+v", c)
	}

	// A restarted manager finds each repository's report: nothing created, deleted or rewritten.
	before, err := h.reportsByImage("mirror")
	if err != nil {
		t.Fatal(err)
	}
	h.stop()
	h.writes.reset()
	h.start()
	h.eventually(60*time.Second, "both images assessed again", func() error {
		st := h.ctrls.Engine.Stats()
		if st.Verifications[imageOf(origin)] != 1 || st.Verifications[imageOf(mirror)] != 1 {
			return fmt.Errorf("verifications %v", st.Verifications)
		}
		return nil
	})
	h.waitIdle()
	after, err := h.reportsByImage("mirror")
	if err != nil {
		t.Fatal(err)
	}
	for k, r := range before {
		if a := after[k]; a == nil || a.UID != r.UID || a.ResourceVersion != r.ResourceVersion {
			t.Errorf("report %s was replaced or rewritten after the restart", r.Name)
		}
	}
	if len(after) != 2 || h.writes.reportWrites() != 0 {
		t.Errorf("after the restart: %d reports, writes %v", len(after), h.writes.snapshot())
	}

	// The mirror's pod goes: its report alone is collected after the grace period.
	var pod corev1.Pod
	if err := h.c.Get(h.ctx, client.ObjectKey{Namespace: ns, Name: "web-mirrored"}, &pod); err != nil {
		t.Fatal(err)
	}
	if err := h.c.Delete(h.ctx, &pod); err != nil {
		t.Fatal(err)
	}
	h.eventually(10*time.Second, "mirrored pod forgotten", func() error {
		if h.ctrls.Engine.demand.isWanted(imageKey{mirror.Context().Name(), digest}) {
			return errors.New("mirror image still wanted")
		}
		if !h.ctrls.Engine.demand.isWanted(imageKey{origin.Context().Name(), digest}) {
			return errors.New("origin image no longer wanted")
		}
		return nil
	})
	if n, err := h.ctrls.Engine.CollectGarbage(h.ctx); err != nil || n != 0 {
		t.Fatalf("within the grace period: deleted %d, err %v", n, err)
	}
	h.clock.Advance(2 * time.Hour)
	if _, err := h.ctrls.Engine.CollectGarbage(h.ctx); err != nil {
		t.Fatal(err)
	}
	h.eventually(10*time.Second, "mirror report deleted", func() error {
		rs, err := h.reportsByImage("mirror")
		if err != nil {
			return err
		}
		if len(rs) != 1 || rs[imageOf(origin)] == nil || rs[imageOf(origin)].UID != o.UID {
			return fmt.Errorf("reports %v", keysOf(rs))
		}
		return nil
	})
}

func keysOf(m map[string]*securityv1alpha1.ImageTrustReport) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
