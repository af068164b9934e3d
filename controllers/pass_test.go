package controllers

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/static"
	ggcrtypes "github.com/google/go-containerregistry/pkg/v1/types"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"k8s.io/apimachinery/pkg/types"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner"
	"github.com/imagetrust/imagetrust/scanner/policy"
	"github.com/imagetrust/imagetrust/scanner/registry/registrytest"
	"github.com/imagetrust/imagetrust/scanner/sbom"
	"github.com/imagetrust/imagetrust/scanner/verify"
	"github.com/imagetrust/imagetrust/scanner/verify/signtest"
	"github.com/imagetrust/imagetrust/scanner/vulndb"
	"github.com/imagetrust/imagetrust/scanner/vulndb/dbtest"
)

// The steps of a pass, each run alone against real parts — go-containerregistry's registry,
// cosign signatures, Syft and a Grype DB written by Grype's writer — but no Kubernetes client.

type stepFixture struct {
	t      *testing.T
	ctx    context.Context
	reg    *registrytest.Registry
	key    *signtest.KeyPair
	db     *vulndb.Manager
	cache  *sbom.Cache
	engine *Engine
	sc     *scanner.Scanner
}

func newStepFixture(t *testing.T, loadDB bool) *stepFixture {
	t.Helper()
	f := &stepFixture{t: t, ctx: context.Background(), reg: registrytest.New(t)}
	var err error
	if f.key, err = signtest.NewKeyPair(); err != nil {
		t.Fatal(err)
	}
	if f.db, err = vulndb.New(vulndb.Config{Dir: t.TempDir(), ValidateChecksum: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.db.Close() })
	if loadDB {
		archive, err := dbtest.Archive(filepath.Join(t.TempDir(), "db"), time.Now().Add(-time.Hour), baseVulns)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.db.Import(f.ctx, archive); err != nil {
			t.Fatal(err)
		}
	}
	if f.cache, err = sbom.NewCache(t.TempDir(), 0); err != nil {
		t.Fatal(err)
	}
	opts := Options{DB: f.db, Cache: f.cache}
	if err := opts.defaults(); err != nil {
		t.Fatal(err)
	}
	writer := &reportWriter{metrics: newEngineMetrics(), written: map[reportKey]string{}}
	f.engine = newEngine(writer, opts, NewScheduler(opts.Clock, 0), nil, logr.Discard())
	rc := scanner.NewRegistryClient(scanner.RegistryOptions{Insecure: []string{f.reg.Host()}, RequestsPerSecond: -1,
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, MaxRetries: -1})
	if f.sc, err = scanner.New(scanner.Config{Registry: rc, DB: f.db, Cache: f.cache}); err != nil {
		t.Fatal(err)
	}
	return f
}

// image pushes a Debian image, signed with the fixture's key when signed is set.
func (f *stepFixture) image(repo string, signed bool) name.Digest {
	f.t.Helper()
	d, err := f.reg.Push(f.ctx, f.reg.Repo(repo), registrytest.DebianImage(debianPkgs))
	if err != nil {
		f.t.Fatal(err)
	}
	if signed {
		opts := ociremote.WithRemoteOptions(f.reg.RemoteOptions(f.ctx)...)
		if err := signtest.SignImage(f.ctx, d, f.key, opts); err != nil {
			f.t.Fatal(err)
		}
	}
	return d
}

// scope is the scope of d under one policy trusting key.
func (f *stepFixture) scope(d name.Digest, key *signtest.KeyPair) imageScope {
	cp := &compiledPolicy{Name: "p", Scanner: scanner.Policy{
		Policy:           policy.Policy{Name: "p", Images: []string{"**"}, RequireSignature: true, Authorities: []string{"p/key"}},
		AuthorityConfigs: []verify.Authority{{Name: "p/key", PublicKeyPEM: key.PublicPEM, IgnoreTlog: true}},
	}}
	k := imageKey{d.Context().Name(), d.DigestStr()}
	return imageScope{key: k, image: scanner.Image{Repository: k.Repository, Digest: k.Digest}, access: anonymous,
		union: []*compiledPolicy{cp}, authorityKey: authorityKey([]*compiledPolicy{cp})}
}

func (f *stepFixture) run(p *pass, steps ...step) {
	f.t.Helper()
	for _, st := range steps {
		if err := st(f.ctx, p); err != nil {
			f.t.Fatalf("step aborted: %v", err)
		}
	}
}

func TestVerifyStepRunsOnlyWhenNeeded(t *testing.T) {
	f := newStepFixture(t, false)
	d := f.image("app", true)
	scope := f.scope(d, f.key)
	count := func() int { return f.engine.results.verificationCounts()[scope.key.String()] }

	first := newPass(scope, f.sc, nil, work{})
	f.run(first, f.engine.verifyStep)
	if !first.verified || first.next.verification.Signature.State != scanner.Verified || count() != 1 {
		t.Fatalf("first pass: verified %v state %s count %d", first.verified, first.next.verification.Signature.State, count())
	}
	prev, _ := first.outcome()

	again := newPass(scope, f.sc, prev, work{})
	f.run(again, f.engine.verifyStep)
	if again.verified || count() != 1 {
		t.Fatalf("nothing changed, yet the image was verified again (count %d)", count())
	}
	asked := newPass(scope, f.sc, prev, work{verify: true})
	f.run(asked, f.engine.verifyStep)
	if !asked.verified || count() != 2 {
		t.Fatalf("a schedule asked for re-verification, verified %v count %d", asked.verified, count())
	}
	other, err := signtest.NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	rekeyed := newPass(f.scope(d, other), f.sc, prev, work{})
	f.run(rekeyed, f.engine.verifyStep)
	if !rekeyed.verified || rekeyed.next.verification.Signature.State != scanner.Invalid {
		t.Fatalf("the authorities changed: verified %v state %s", rekeyed.verified, rekeyed.next.verification.Signature.State)
	}
}

func TestVerifyStepErrorIsRetriedWithVerification(t *testing.T) {
	f := newStepFixture(t, false)
	d := f.image("app", true)
	f.reg.Fail(".sig", "", 503, -1, "")
	p := newPass(f.scope(d, f.key), f.sc, nil, work{})
	f.run(p, f.engine.verifyStep)
	a, next := p.outcome()
	if a.verification.Signature.State != scanner.Error || kindOf(a.problems) != errGeneric ||
		!strings.HasPrefix(messagesOf(a.problems, errGeneric), "signature verification: ") || !next.verify {
		t.Fatalf("state %s problems %v next %+v", a.verification.Signature.State, a.problems, next)
	}
}

func TestSBOMStepFetchesAfterVerificationOnly(t *testing.T) {
	f := newStepFixture(t, false)
	d := f.image("app", true)
	scope := f.scope(d, f.key)
	first := newPass(scope, f.sc, nil, work{})
	f.run(first, f.engine.verifyStep, f.engine.sbomStep)
	if first.next.sbom == nil || first.next.sbom.Source != sbom.SourceGenerated || first.doc == nil || !first.newSBOM {
		t.Fatalf("first pass SBOM %+v (reason %s)", first.next.sbom, first.next.sbomReason)
	}
	if first.next.sbom.Document != nil {
		t.Error("the stored assessment keeps the SBOM document: it belongs in the cache")
	}
	prev, _ := first.outcome()
	f.reg.Reset()
	again := newPass(scope, f.sc, prev, work{})
	f.run(again, f.engine.verifyStep, f.engine.sbomStep)
	if again.doc != nil || again.newSBOM || again.next.sbom.Digest != prev.sbom.Digest || f.reg.Counts().Total != 0 {
		t.Fatalf("no verification ran, yet the SBOM step fetched (doc %v, %d requests)", again.doc != nil, f.reg.Counts().Total)
	}
}

func TestSBOMStepFailureKeepsTheSBOMAndRetries(t *testing.T) {
	f := newStepFixture(t, false)
	d := f.image("app", false)
	scope := f.scope(d, f.key)
	f.reg.Fail("/blobs/", "GET", 503, -1, "")
	p := newPass(scope, f.sc, nil, work{})
	f.run(p, f.engine.verifyStep, f.engine.sbomStep)
	a, next := p.outcome()
	if a.sbom != nil || !strings.Contains(messagesOf(a.problems, errGeneric), "SBOM: ") || !next.verify {
		t.Fatalf("sbom %+v problems %v next %+v", a.sbom, a.problems, next)
	}
}

func TestMatchStep(t *testing.T) {
	f := newStepFixture(t, true)
	d := f.image("app", true)
	scope := f.scope(d, f.key)
	p := newPass(scope, f.sc, nil, work{})
	f.run(p, f.engine.verifyStep, f.engine.sbomStep, f.engine.matchStep)
	if p.next.scan == nil || p.next.scanHash == "" || p.next.scannedAt.IsZero() || p.next.dbWait != nil {
		t.Fatalf("scan %+v reason %q", p.next.scan, p.next.scanReason)
	}
	ids := map[string]bool{}
	for _, fd := range p.next.scan.Findings {
		ids[fd.ID] = true
	}
	if !ids["CVE-2026-1000"] {
		t.Fatalf("findings %v: want the openssl CVE of the DB", ids)
	}
	prev, _ := p.outcome()

	// a pass that asks nothing and has the same SBOM does not match again
	matchesBefore, _ := f.engine.matcher.counts()
	idle := newPass(scope, f.sc, prev, work{})
	f.run(idle, f.engine.verifyStep, f.engine.sbomStep, f.engine.matchStep)
	if after, _ := f.engine.matcher.counts(); after[d.DigestStr()] != matchesBefore[d.DigestStr()] {
		t.Fatalf("matched again without cause: %d → %d", matchesBefore[d.DigestStr()], after[d.DigestStr()])
	}

	// the SBOM left the cache: the pass asks for it to be fetched again and writes nothing
	if err := f.cache.Delete(d.DigestStr()); err != nil {
		t.Fatal(err)
	}
	f.engine.matcher.invalidate()
	evicted := newPass(scope, f.sc, prev, work{match: true})
	f.run(evicted, f.engine.matchStep)
	a, next := evicted.outcome()
	if !evicted.evicted || a.sbom != nil || !next.match {
		t.Fatalf("evicted %v sbom %+v next %+v", evicted.evicted, a.sbom, next)
	}
}

func TestMatchStepWithoutDBWaits(t *testing.T) {
	f := newStepFixture(t, false)
	d := f.image("app", false)
	p := newPass(f.scope(d, f.key), f.sc, nil, work{})
	f.run(p, f.engine.verifyStep, f.engine.sbomStep, f.engine.matchStep)
	a, next := p.outcome()
	if a.scan != nil || !waitingFor(a.dbWait, securityv1alpha1.ReasonDBNotLoaded) || !next.match || requeueAfter(a.dbWait) != time.Minute {
		t.Fatalf("scan %v dbWait %v next %+v", a.scan, a.dbWait, next)
	}
	// the wait stands on a pass that does not match, and still asks for a match
	later := newPass(f.scope(d, f.key), f.sc, a, work{})
	later.newSBOM = false
	f.run(later, f.engine.verifyStep)
	if a2, next2 := later.outcome(); !waitingFor(a2.dbWait, securityv1alpha1.ReasonDBNotLoaded) || !next2.match {
		t.Fatalf("dbWait %v next %+v", a2.dbWait, next2)
	}
}

func TestKindOfJoinedErrors(t *testing.T) {
	stall := stalling(securityv1alpha1.ReasonRegistryAccessDenied, "denied: %w", errors.New("401"))
	wait := waiting(time.Minute, securityv1alpha1.ReasonDBNotLoaded, "no DB")
	retry := errors.New("503")
	tests := []struct {
		err  error
		want errorKind
	}{
		{nil, errNone},
		{stall, errStalling},
		{wait, errWaiting},
		{retry, errGeneric},
		{errors.Join(stall, wait), errWaiting},
		{errors.Join(stall, errors.Join(wait, retry)), errGeneric},
		{errors.Join(nil, stall), errStalling},
	}
	for i, tt := range tests {
		if got := kindOf(tt.err); got != tt.want {
			t.Errorf("%d: kindOf(%v) = %d, want %d", i, tt.err, got, tt.want)
		}
	}
	var s *StallingError
	if !errors.As(stall, &s) || errors.Unwrap(stall) == nil || errors.Unwrap(stall).Error() != "401" {
		t.Error("a StallingError must unwrap to its cause")
	}
	joined := errors.Join(stall, retry, wait)
	if messagesOf(joined, errGeneric) != "503" || messagesOf(joined, errStalling) != "denied: 401" || firstStalling(joined) != s {
		t.Errorf("messages: generic %q stalling %q", messagesOf(joined, errGeneric), messagesOf(joined, errStalling))
	}
	if requeueAfter(errors.Join(waiting(0, securityv1alpha1.ReasonDBStale, "old"), wait)) != time.Minute {
		t.Error("requeueAfter must take the shortest non-zero delay")
	}
}

// A DB change costs no registry request: its rematches go before scheduled re-verifications
// already queued, and new images before both of those.
func TestQueuePriorities(t *testing.T) {
	f := newStepFixture(t, false)
	e := f.engine
	e.demand.setPolicies([]*compiledPolicy{keyPolicy("p", nil)})
	var keys []imageKey
	for i, name := range []string{"old-a", "old-b", "old-c"} {
		k := imageKey{"r.example/" + name, fmt.Sprintf("sha256:%064d", i)}
		keys = append(keys, k)
		e.demand.setPodUses(types.NamespacedName{Namespace: "ns", Name: name}, []PodUse{{Repository: k.Repository, Digest: k.Digest, Container: "c"}}, anonymous)
		e.results.store(k, &assessment{sbom: &scanner.SBOM{Digest: "sha256:" + hexB}, scan: &scanner.Scan{}}, work{})
	}
	if n := e.ReverifyPolicy("p"); n != 3 {
		t.Fatalf("re-verification queued %d images, want 3", n)
	}
	fresh := imageKey{"r.example/new", fmt.Sprintf("sha256:%064d", 9)}
	e.SetPodUses(types.NamespacedName{Namespace: "ns", Name: "new"}, []PodUse{{Repository: fresh.Repository, Digest: fresh.Digest, Container: "c"}}, anonymous)
	if n := e.Rematch(); n != 3 {
		t.Fatalf("rematch queued %d digests, want 3", n)
	}
	var order []int
	for range 4 {
		k, prio, _ := e.queue.GetWithPriority()
		order = append(order, prio)
		e.queue.Done(k)
		if k == fresh && prio != priorityDemand {
			t.Errorf("new image at priority %d", prio)
		}
	}
	if want := []int{priorityRematch, priorityRematch, priorityRematch, priorityDemand}; !slices.Equal(order, want) {
		t.Fatalf("queue order by priority %v, want %v", order, want)
	}

	// the baseline of the queue benchmark: one priority for everything
	e.opts.fifo = true
	e.enqueue(priorityRematch, keys[0])
	if _, prio, _ := e.queue.GetWithPriority(); prio != priorityBackground {
		t.Fatalf("fifo queue gave priority %d", prio)
	}
}

// Huge SBOMs take a token; with two workers only one may sit on a huge match, so a small image
// never waits behind two of them. A pass whose huge SBOM finds no token stores its verification,
// asks for the match and waits.
func TestHugeSBOMsLeaveAWorkerForSmallOnes(t *testing.T) {
	f := newStepFixture(t, true)
	m := newMatcher(f.engine.fleet, f.cache, 2)
	huge, small := &scanner.SBOM{Packages: largeSBOMPackages}, &scanner.SBOM{Packages: 50}
	release, ok := m.admit(huge)
	if !ok {
		t.Fatal("the first huge SBOM was not admitted")
	}
	if _, ok := m.admit(huge); ok {
		t.Fatal("a second huge SBOM was admitted with two workers")
	}
	if _, ok := m.admit(small); !ok {
		t.Fatal("a small SBOM waited for a huge one")
	}
	release()
	if rel, ok := m.admit(huge); !ok {
		t.Fatal("the token did not come back")
	} else {
		rel()
	}

	d := f.image("app", true)
	p := newPass(f.scope(d, f.key), f.sc, nil, work{})
	f.run(p, f.engine.verifyStep, f.engine.sbomStep)
	meta := *p.next.sbom
	meta.Packages = largeSBOMPackages
	p.next.sbom = &meta
	hold, _ := f.engine.matcher.admit(huge)
	defer hold()
	f.run(p, f.engine.matchStep)
	a, next := p.outcome()
	if !p.deferred || !next.match || a.scan != nil || a.verification == nil {
		t.Fatalf("deferred %v next %+v scan %v", p.deferred, next, a.scan)
	}
	err := f.engine.commit(f.ctx, p)
	if kindOf(err) != errWaiting || requeueAfter(err) != largeSBOMRetry {
		t.Fatalf("commit of a deferred pass = %v", err)
	}
}

// An image whose layer is not a tar cannot be read however often it is retried: the pass says
// so as a Stalled problem (retried after a long delay), not as a retry.
func TestSBOMStepUnreadableImageStalls(t *testing.T) {
	f := newStepFixture(t, false)
	// a well-formed gzip stream whose content is not a tar archive
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(bytes.Repeat([]byte("this is not a tar archive. "), 100))
	_ = zw.Close()
	garbage := static.NewLayer(gz.Bytes(), ggcrtypes.DockerLayer)
	d, err := f.reg.Push(f.ctx, f.reg.Repo("broken"), registrytest.ImageFromLayers(garbage))
	if err != nil {
		t.Fatal(err)
	}
	p := newPass(f.scope(d, f.key), f.sc, nil, work{})
	f.run(p, f.engine.verifyStep, f.engine.sbomStep)
	a, next := p.outcome()
	s := firstStalling(a.problems)
	if s == nil || s.Reason != securityv1alpha1.ReasonImageUnreadable || kindOf(a.problems) != errStalling || next.verify {
		t.Fatalf("problems %v (kind %d), next %+v", a.problems, kindOf(a.problems), next)
	}
	if !strings.Contains(s.Message, "the image cannot be read") {
		t.Errorf("message %q", s.Message)
	}
}
