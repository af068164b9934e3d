package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner"
	"github.com/imagetrust/imagetrust/scanner/registry"
	"github.com/imagetrust/imagetrust/scanner/sbom"
	"github.com/imagetrust/imagetrust/scanner/verify"
	"github.com/imagetrust/imagetrust/scanner/vulndb"
)

// PodUse is one container of a pod running an image digest.
type PodUse struct {
	Digest     string
	Repository string
	Tag        string
	Container  string
	Workload   Workload
}

// ScanImage is one platform digest a RegistryScan found, with every tag that pointed at it.
type ScanImage struct {
	Image scanner.Image
	Tags  []string
}

type podSource struct {
	uses   []PodUse
	access *access
}

type scanSource struct {
	uid    types.UID
	images map[string]*ScanImage // by digest
	access *access
}

// reportKey names one report: a digest in a namespace.
type reportKey struct {
	Namespace string
	Digest    string
}

// String renders the key for logs and errors.
func (k reportKey) String() string { return k.Namespace + "/" + k.Digest }

// digestEntry is everything known about one digest. The verification, SBOM and scan values are
// replaced, never mutated, so report building can read them without holding the lock.
type digestEntry struct {
	digest string
	image  scanner.Image
	access *access

	pods  map[types.NamespacedName]struct{}
	scans map[types.NamespacedName]struct{}

	verification *scanner.Verification
	verifyKey    string // authorityKey the verification was made with
	sbom         *sbom.SBOM
	sbomReason   string
	scan         *scanner.Scan
	scanReason   string
	scanHash     string
	scannedAt    time.Time
	dbProblem    string // DBNotLoaded or DBStale when the last match could not run
	retry        string // transient problem; the digest is requeued with backoff
	stalled      string // a problem a person must fix (credentials refused, platform missing)

	assessed   bool
	needVerify bool
	needMatch  bool
}

func (d *digestEntry) wanted() bool { return len(d.pods) > 0 || len(d.scans) > 0 }

// Engine holds per-digest state and one work queue keyed by digest shared by every source, so
// a digest used in ten namespaces is assessed once and its result fanned out to ten reports.
// Sources (the pod, RegistryScan and policy reconcilers) only tell the Engine what is wanted;
// the Engine decides what work that needs: full assessment, re-verification, rematching against
// a new DB, re-evaluation after a policy edit, or just a report write.
type Engine struct {
	client    client.Client
	apiReader client.Reader
	events    eventSink
	opts      Options
	clock     Clock
	sched     *Scheduler
	pool      *scannerPool
	queue     workqueue.TypedRateLimitingInterface[string]
	log       logr.Logger
	metrics   *engineMetrics

	mu        sync.Mutex
	digests   map[string]*digestEntry
	pods      map[types.NamespacedName]*podSource
	scans     map[types.NamespacedName]*scanSource
	nsLabels  map[string]map[string]string
	policies  []*compiledPolicy
	unwanted  map[reportKey]time.Time
	written   map[reportKey]string // content hash last written (or found) per report
	startedAt time.Time
	assessN   map[string]int // verifications per digest, for tests and logs
	matchN    map[string]int
	busy      atomic.Int64 // digests being processed

	// beforeStart runs once before the workers start (DB loaded, policies compiled).
	beforeStart func(context.Context) error
}

func newEngine(c client.Client, apiReader client.Reader, events eventSink, opts Options, sched *Scheduler, pool *scannerPool, log logr.Logger) *Engine {
	rl := workqueue.NewTypedMaxOfRateLimiter[string](
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](opts.RetryBaseDelay, opts.RetryMaxDelay),
	)
	return &Engine{
		client:    c,
		apiReader: apiReader,
		events:    events,
		opts:      opts,
		clock:     opts.Clock,
		sched:     sched,
		pool:      pool,
		queue:     workqueue.NewTypedRateLimitingQueue[string](rl),
		log:       log,
		metrics:   newEngineMetrics(),
		digests:   map[string]*digestEntry{},
		pods:      map[types.NamespacedName]*podSource{},
		scans:     map[types.NamespacedName]*scanSource{},
		nsLabels:  map[string]map[string]string{},
		unwanted:  map[reportKey]time.Time{},
		written:   map[reportKey]string{},
		startedAt: opts.Clock.Now(),
		assessN:   map[string]int{},
		matchN:    map[string]int{},
	}
}

// Start runs the workers until ctx ends. It implements manager.Runnable.
func (e *Engine) Start(ctx context.Context) error {
	if e.beforeStart != nil {
		if err := e.beforeStart(ctx); err != nil {
			return fmt.Errorf("preparing the engine: %w", err)
		}
	}
	e.mu.Lock()
	e.startedAt = e.clock.Now()
	e.mu.Unlock()
	var wg sync.WaitGroup
	for i := 0; i < e.opts.Concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e.processNext(ctx) {
			}
		}()
	}
	<-ctx.Done()
	e.queue.ShutDown()
	wg.Wait()
	return nil
}

// NeedLeaderElection makes only the leader write reports.
func (e *Engine) NeedLeaderElection() bool { return true }

func (e *Engine) processNext(ctx context.Context) bool {
	digest, quit := e.queue.Get()
	if quit {
		return false
	}
	defer e.queue.Done(digest)
	e.busy.Add(1)
	err := e.process(ctx, digest)
	e.busy.Add(-1)
	switch kindOf(err) {
	case errNone, errStalling:
		e.queue.Forget(digest)
	case errWaiting:
		var w *WaitingError
		errors.As(err, &w)
		e.queue.Forget(digest)
		e.queue.AddAfter(digest, w.RequeueAfter)
	default:
		if ctx.Err() != nil {
			return true
		}
		e.log.V(1).Info("digest will be retried", "digest", digest, "reason", err.Error())
		e.queue.AddRateLimited(digest)
	}
	e.metrics.queueDepth.Set(float64(e.queue.Len()))
	return true
}

func (e *Engine) enqueue(digest string) {
	e.queue.Add(digest)
	e.metrics.queueDepth.Set(float64(e.queue.Len()))
}

// enqueueJittered spreads scheduled work so a cron tick does not hit registries all at once.
func (e *Engine) enqueueJittered(digest string) {
	if e.opts.Jitter <= 0 {
		e.enqueue(digest)
		return
	}
	e.queue.AddAfter(digest, time.Duration(rand.Int64N(int64(e.opts.Jitter))))
}

// ensureEntryLocked returns the entry for digest, creating it (and queueing its first
// assessment) when new.
func (e *Engine) ensureEntryLocked(img scanner.Image, acc *access) *digestEntry {
	ent := e.digests[img.Digest]
	if ent == nil {
		ent = &digestEntry{digest: img.Digest, image: img, access: acc,
			pods: map[types.NamespacedName]struct{}{}, scans: map[types.NamespacedName]struct{}{}}
		e.digests[img.Digest] = ent
	}
	if ent.image.Platform == "" && img.Platform != "" {
		ent.image.Platform, ent.image.IndexDigest = img.Platform, img.IndexDigest
	}
	if acc != nil && acc != anonymous {
		ent.access = acc
	} else if ent.access == nil {
		ent.access = anonymous
	}
	return ent
}

// SetPodUses records what a pod runs (nil when the pod is gone or finished). Digests the pod
// adds are assessed at once when new; digests it drops start their grace period when no other
// source wants them in the namespace.
func (e *Engine) SetPodUses(pod types.NamespacedName, uses []PodUse, acc *access) {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.pods[pod]
	if old != nil && slices.Equal(old.uses, uses) && old.access == acc {
		return
	}
	touched := map[string]bool{}
	if old != nil {
		for _, u := range old.uses {
			touched[u.Digest] = true
		}
	}
	if len(uses) == 0 {
		delete(e.pods, pod)
	} else {
		e.pods[pod] = &podSource{uses: uses, access: acc}
	}
	now := map[string]bool{}
	for _, u := range uses {
		now[u.Digest] = true
		touched[u.Digest] = true
		ent := e.ensureEntryLocked(scanner.Image{Repository: u.Repository, Tag: u.Tag, Digest: u.Digest}, acc)
		ent.pods[pod] = struct{}{}
	}
	for d := range touched {
		ent := e.digests[d]
		if ent == nil {
			continue
		}
		if !now[d] {
			delete(ent.pods, pod)
		}
		e.updateWantLocked(ent, pod.Namespace)
		e.enqueue(d)
	}
}

// SetScanImages records the digests a RegistryScan found in its last successful run.
func (e *Engine) SetScanImages(scan types.NamespacedName, uid types.UID, images []ScanImage, acc *access) {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.scans[scan]
	src := &scanSource{uid: uid, images: map[string]*ScanImage{}, access: acc}
	for i := range images {
		im := images[i]
		im.Tags = append([]string(nil), im.Tags...)
		sort.Strings(im.Tags)
		if prev := src.images[im.Image.Digest]; prev != nil {
			prev.Tags = mergeSorted(prev.Tags, im.Tags)
			continue
		}
		src.images[im.Image.Digest] = &im
	}
	if old != nil && old.uid == uid && old.access == acc && sameScanImages(old.images, src.images) {
		return
	}
	e.scans[scan] = src
	touched := map[string]bool{}
	if old != nil {
		for d := range old.images {
			touched[d] = true
		}
	}
	for d, im := range src.images {
		touched[d] = true
		ent := e.ensureEntryLocked(im.Image, acc)
		ent.scans[scan] = struct{}{}
	}
	for d := range touched {
		ent := e.digests[d]
		if ent == nil {
			continue
		}
		if _, ok := src.images[d]; !ok {
			delete(ent.scans, scan)
		}
		e.updateWantLocked(ent, scan.Namespace)
		e.enqueue(d)
	}
}

// HasScan reports whether the Engine knows a RegistryScan's digests (false after a restart until
// the scan runs or is seeded from its existing reports).
func (e *Engine) HasScan(scan types.NamespacedName) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.scans[scan]
	return ok
}

// RemoveScan forgets a deleted RegistryScan; its reports age out after the grace period unless
// pods use the digests too.
func (e *Engine) RemoveScan(scan types.NamespacedName) {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.scans[scan]
	if old == nil {
		return
	}
	delete(e.scans, scan)
	for d := range old.images {
		if ent := e.digests[d]; ent != nil {
			delete(ent.scans, scan)
			e.updateWantLocked(ent, scan.Namespace)
			e.enqueue(d)
		}
	}
}

func sameScanImages(a, b map[string]*ScanImage) bool {
	if len(a) != len(b) {
		return false
	}
	for d, x := range a {
		y, ok := b[d]
		if !ok || x.Image != y.Image || !slices.Equal(x.Tags, y.Tags) {
			return false
		}
	}
	return true
}

func mergeSorted(a, b []string) []string {
	out := append(append([]string(nil), a...), b...)
	sort.Strings(out)
	return slices.Compact(out)
}

// updateWantLocked starts or stops the grace period of the report (ns, digest).
func (e *Engine) updateWantLocked(ent *digestEntry, ns string) {
	k := reportKey{ns, ent.digest}
	if e.wantedInLocked(ent, ns) {
		delete(e.unwanted, k)
		return
	}
	if _, ok := e.unwanted[k]; !ok {
		e.unwanted[k] = e.clock.Now()
	}
}

func (e *Engine) wantedInLocked(ent *digestEntry, ns string) bool {
	for p := range ent.pods {
		if p.Namespace == ns {
			return true
		}
	}
	for s := range ent.scans {
		if s.Namespace == ns {
			return true
		}
	}
	return false
}

// namespacesLocked lists the namespaces that want a digest, sorted.
func (e *Engine) namespacesLocked(ent *digestEntry) []string {
	set := map[string]bool{}
	for p := range ent.pods {
		set[p.Namespace] = true
	}
	for s := range ent.scans {
		set[s.Namespace] = true
	}
	out := make([]string, 0, len(set))
	for ns := range set {
		out = append(out, ns)
	}
	sort.Strings(out)
	return out
}

// nsView is what a namespace knows about a digest: the repository it was seen under, tags,
// workloads and scans.
type nsView struct {
	repo      string
	tags      []string
	workloads []workloadView
	total     int
	scans     []string
	owners    []metav1.OwnerReference
}

type workloadView struct {
	Workload
	containers []string
}

// viewLocked collects the namespace's view of a digest from its pod and scan sources.
func (e *Engine) viewLocked(ent *digestEntry, ns string) nsView {
	var v nsView
	repos := map[string]bool{}
	tags := map[string]bool{}
	wl := map[string]*workloadView{}
	for p := range ent.pods {
		if p.Namespace != ns {
			continue
		}
		for _, u := range e.pods[p].uses {
			if u.Digest != ent.digest {
				continue
			}
			repos[u.Repository] = true
			if u.Tag != "" {
				tags[u.Tag] = true
			}
			k := u.Workload.Kind + "/" + u.Workload.Name
			w := wl[k]
			if w == nil {
				w = &workloadView{Workload: u.Workload}
				wl[k] = w
			}
			if !slices.Contains(w.containers, u.Container) {
				w.containers = append(w.containers, u.Container)
			}
		}
	}
	for s := range ent.scans {
		if s.Namespace != ns {
			continue
		}
		src := e.scans[s]
		im := src.images[ent.digest]
		repos[im.Image.Repository] = true
		for _, t := range im.Tags {
			tags[t] = true
		}
		v.scans = append(v.scans, s.Name)
		v.owners = append(v.owners, metav1.OwnerReference{
			APIVersion: securityv1alpha1.GroupVersion.String(), Kind: "RegistryScan", Name: s.Name, UID: src.uid,
		})
	}
	sort.Strings(v.scans)
	sort.Slice(v.owners, func(i, j int) bool { return v.owners[i].Name < v.owners[j].Name })
	for r := range repos {
		if v.repo == "" || r < v.repo {
			v.repo = r
		}
	}
	if v.repo == "" {
		v.repo = ent.image.Repository
	}
	for t := range tags {
		v.tags = append(v.tags, t)
	}
	sort.Strings(v.tags)
	for _, w := range wl {
		sort.Strings(w.containers)
		v.workloads = append(v.workloads, *w)
	}
	sort.Slice(v.workloads, func(i, j int) bool {
		if v.workloads[i].Kind != v.workloads[j].Kind {
			return v.workloads[i].Kind < v.workloads[j].Kind
		}
		return v.workloads[i].Name < v.workloads[j].Name
	})
	v.total = len(v.workloads)
	return v
}

// policiesForLocked returns the policies that apply to a digest in a namespace, by name.
func (e *Engine) policiesForLocked(ns, repo string, tags []string) []*compiledPolicy {
	var out []*compiledPolicy
	for _, p := range e.policies {
		if p.appliesTo(repo, tags, e.nsLabels[ns]) {
			out = append(out, p)
		}
	}
	return out
}

// unionPoliciesLocked is every policy that applies to a digest in any namespace wanting it:
// verification runs once against the union of their authorities.
func (e *Engine) unionPoliciesLocked(ent *digestEntry) []*compiledPolicy {
	seen := map[string]bool{}
	var out []*compiledPolicy
	for _, ns := range e.namespacesLocked(ent) {
		v := e.viewLocked(ent, ns)
		for _, p := range e.policiesForLocked(ns, v.repo, v.tags) {
			if !seen[p.Name] {
				seen[p.Name] = true
				out = append(out, p)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// process does the work a digest needs and writes its reports.
func (e *Engine) process(ctx context.Context, digest string) error {
	e.mu.Lock()
	ent := e.digests[digest]
	if ent == nil || !ent.wanted() {
		e.mu.Unlock()
		return nil
	}
	union := e.unionPoliciesLocked(ent)
	akey := authorityKey(union)
	doVerify := ent.verification == nil || ent.needVerify || ent.verifyKey != akey
	doMatch := ent.needMatch || ent.scan == nil
	ent.needVerify, ent.needMatch = false, false
	img, acc := ent.image, ent.access
	v, sb, sbReason := ent.verification, ent.sbom, ent.sbomReason
	scan, scanReason, scanHash, scannedAt, dbProblem := ent.scan, ent.scanReason, ent.scanHash, ent.scannedAt, ent.dbProblem
	e.mu.Unlock()

	requeueVerify := func() {
		e.mu.Lock()
		ent.needVerify = ent.needVerify || doVerify
		ent.needMatch = ent.needMatch || doMatch
		e.mu.Unlock()
	}
	sc, err := e.pool.get(acc)
	if err != nil {
		requeueVerify()
		return err
	}
	pols := scannerPolicies(union)
	var retry, stalled []string

	if doVerify {
		start := time.Now()
		nv := sc.Verify(ctx, img, pols)
		e.metrics.verifyDuration.Observe(time.Since(start).Seconds())
		if ctx.Err() != nil {
			requeueVerify()
			return ctx.Err()
		}
		e.mu.Lock()
		e.assessN[digest]++
		e.mu.Unlock()
		v = &nv
		e.log.V(1).Info("verified", "digest", digest, "policies", len(pols), "state", nv.Signature.State, "reason", nv.Signature.Reason)
		if nv.Signature.State == verify.Error {
			retry = append(retry, "signature verification: "+nv.Signature.Reason)
		}
	}

	scanStart := time.Now()
	var fullSBOM *sbom.SBOM
	if doVerify || sb == nil {
		res, err := sc.SBOM(ctx, img, pols, *v)
		switch {
		case err != nil && ctx.Err() != nil:
			requeueVerify()
			return ctx.Err()
		case err != nil:
			sbReason = registry.SanitizeText(res.Reason)
			if sbReason == "" {
				sbReason = registry.SanitizeText(err.Error())
			}
			if registry.IsUnauthorized(err) {
				stalled = append(stalled, "registry refused access while fetching the SBOM: "+sbReason)
			} else if !errors.Is(err, sbom.ErrNotFound) || registry.IsTransient(err) {
				retry = append(retry, "SBOM: "+sbReason)
			}
		default:
			if sb == nil || sb.Digest != res.SBOM.Digest || sb.Source != res.SBOM.Source {
				doMatch = true
			}
			fullSBOM = res.SBOM
			meta := *res.SBOM
			if e.opts.Cache != nil {
				meta.Document = nil // the cache holds it; keep memory per digest small
			}
			sb, sbReason = &meta, registry.SanitizeText(res.Reason)
		}
	}

	if doMatch && sb != nil {
		doc := fullSBOM
		if doc == nil {
			doc = e.sbomDocument(sb)
		}
		if doc == nil {
			// Evicted from the cache: fetch it again on the next pass through the SBOM phase.
			e.mu.Lock()
			ent.sbom = nil
			ent.needMatch = true
			e.mu.Unlock()
			e.enqueue(digest)
			return nil
		}
		res, err := sc.Match(ctx, doc)
		e.mu.Lock()
		e.matchN[digest]++
		e.mu.Unlock()
		switch {
		case err != nil && ctx.Err() != nil:
			requeueVerify()
			return ctx.Err()
		case errors.Is(err, vulndb.ErrNoDB) || (err != nil && e.opts.DB == nil):
			// Not an error of this digest: the DB subscription rematches once one is loaded.
			dbProblem, scanReason = "DBNotLoaded", "vulnerability DB not loaded yet"
		case errors.Is(err, vulndb.ErrStale):
			dbProblem, scanReason = "DBStale", registry.SanitizeText(err.Error())
		case err != nil:
			dbProblem, scanReason = "", registry.SanitizeText(err.Error())
			retry = append(retry, "matching: "+scanReason)
		default:
			h := hashScan(res)
			if h != scanHash || scannedAt.IsZero() {
				scannedAt = res.ScannedAt
			}
			scan, scanHash, scanReason, dbProblem = res, h, "", ""
		}
		e.metrics.scanDuration.Observe(time.Since(scanStart).Seconds())
	}
	if sb == nil {
		scan, scanHash = nil, ""
		scanReason = "no SBOM: " + sbReason
		dbProblem = ""
	}

	e.mu.Lock()
	ent.verification = v
	if doVerify {
		ent.verifyKey = akey
	}
	ent.sbom, ent.sbomReason = sb, sbReason
	ent.scan, ent.scanReason, ent.scanHash, ent.scannedAt, ent.dbProblem = scan, scanReason, scanHash, scannedAt, dbProblem
	ent.retry = strings.Join(retry, "; ")
	ent.stalled = strings.Join(stalled, "; ")
	if len(retry) > 0 && doVerify {
		ent.needVerify = true
	}
	if dbProblem == "DBNotLoaded" {
		ent.needMatch = true
	}
	ent.assessed = true
	if authorityKey(e.unionPoliciesLocked(ent)) != ent.verifyKey {
		// A namespace with other policies started wanting the digest while it was being
		// verified: writing now would publish a verification made without their authorities.
		ent.needVerify = true
		e.mu.Unlock()
		e.enqueue(digest)
		return nil
	}
	inputs := e.reportInputsLocked(ent)
	e.mu.Unlock()

	var errs []error
	for _, in := range inputs {
		if err := e.writeReport(ctx, in); err != nil {
			errs = append(errs, fmt.Errorf("report %s: %w", in.key, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if len(retry) > 0 {
		return errors.New(strings.Join(retry, "; "))
	}
	if dbProblem == "DBNotLoaded" {
		// The DB's change notification rematches as soon as one is installed; the requeue is
		// a safety net, not the mechanism.
		return waiting(time.Minute, "DBNotLoaded", "vulnerability DB not loaded yet")
	}
	return nil
}

// sbomDocument reads the SBOM document for a rematch from the cache (no registry request).
func (e *Engine) sbomDocument(meta *sbom.SBOM) *sbom.SBOM {
	if meta.Document != nil {
		return meta
	}
	if e.opts.Cache == nil {
		return nil
	}
	doc, ok, err := e.opts.Cache.Get(meta.ImageDigest)
	if err != nil || !ok {
		return nil
	}
	return doc
}

// hashScan fingerprints what a scan found and against which DB, to keep scannedAt stable while
// nothing changed.
func hashScan(s *scanner.Scan) string {
	type f struct{ ID, Pkg, Sev string }
	var fs []f
	for _, x := range s.Findings {
		fs = append(fs, f{x.ID, x.Package, x.Severity})
	}
	sort.Slice(fs, func(i, j int) bool {
		if fs[i].ID != fs[j].ID {
			return fs[i].ID < fs[j].ID
		}
		return fs[i].Pkg < fs[j].Pkg
	})
	b, _ := json.Marshal(struct {
		F   []f
		DB  string
		Blt time.Time
	}{fs, s.DB.Checksum, s.DB.Built})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// reportInputsLocked evaluates the digest for each namespace that wants it.
func (e *Engine) reportInputsLocked(ent *digestEntry) []*reportInput {
	if !ent.assessed || ent.verification == nil {
		return nil
	}
	now := e.clock.Now()
	var out []*reportInput
	for _, ns := range e.namespacesLocked(ent) {
		v := e.viewLocked(ent, ns)
		pols := e.policiesForLocked(ns, v.repo, v.tags)
		img := ent.image
		img.Repository = v.repo
		img.Tag = ""
		a := &scanner.Assessment{
			Image: img, Verification: *ent.verification, SBOM: ent.sbom, SBOMReason: ent.sbomReason,
			Scan: ent.scan, ScanReason: ent.scanReason,
		}
		in := &reportInput{
			key:        reportKey{ns, ent.digest},
			view:       v,
			assessment: a,
			verdict:    evaluate(pols, a, now),
			scannedAt:  ent.scannedAt,
			dbProblem:  ent.dbProblem,
			retry:      ent.retry,
			stalled:    ent.stalled,
		}
		for _, p := range pols {
			if p.Stalled() {
				in.stalledPolicies = append(in.stalledPolicies, p.Name+": "+strings.Join(p.Problems, "; "))
			}
			for _, a := range p.Scanner.AuthorityConfigs {
				in.authorities = append(in.authorities, a.Name)
			}
		}
		out = append(out, in)
	}
	return out
}

// SetPolicies installs the compiled policies and queues every digest: process re-evaluates from
// cached results, and re-verifies only digests whose set of authorities changed.
func (e *Engine) SetPolicies(pols []*compiledPolicy) {
	sort.Slice(pols, func(i, j int) bool { return pols[i].Name < pols[j].Name })
	e.mu.Lock()
	defer e.mu.Unlock()
	e.policies = pols
	for d, ent := range e.digests {
		if ent.wanted() {
			e.enqueue(d)
		}
	}
}

// ReverifyPolicy queues re-verification of every digest the policy applies to.
func (e *Engine) ReverifyPolicy(name string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for d, ent := range e.digests {
		if !ent.wanted() {
			continue
		}
		for _, p := range e.unionPoliciesLocked(ent) {
			if p.Name == name {
				ent.needVerify = true
				e.enqueueJittered(d)
				n++
				break
			}
		}
	}
	return n
}

// Rematch queues every wanted digest for matching against the (new) vulnerability DB. The SBOMs
// come from the SBOM cache, so this sends nothing to registries.
func (e *Engine) Rematch() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for d, ent := range e.digests {
		if ent.wanted() && ent.sbom != nil {
			ent.needMatch = true
			e.enqueue(d)
			n++
		}
	}
	return n
}

// SetNamespaceLabels records a namespace's labels for policy namespace selectors.
func (e *Engine) SetNamespaceLabels(ns string, lbls map[string]string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	old, ok := e.nsLabels[ns]
	if lbls == nil {
		delete(e.nsLabels, ns)
	} else {
		e.nsLabels[ns] = lbls
	}
	if ok && mapsEqual(old, lbls) {
		return
	}
	for d, ent := range e.digests {
		if e.wantedInLocked(ent, ns) {
			e.enqueue(d)
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// PolicyMatches counts the reports (namespace, digest) each policy applies to.
func (e *Engine) PolicyMatches() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]int{}
	for _, ent := range e.digests {
		for _, ns := range e.namespacesLocked(ent) {
			v := e.viewLocked(ent, ns)
			for _, p := range e.policiesForLocked(ns, v.repo, v.tags) {
				out[p.Name]++
			}
		}
	}
	return out
}

// Stats are counters for tests and debugging.
type Stats struct {
	// Verifications per digest: how often the full registry-facing assessment ran.
	Verifications map[string]int
	// Matches per digest: how often the SBOM was matched against the DB.
	Matches map[string]int
	// QueueDepth is the number of digests waiting.
	QueueDepth int
}

// Stats returns a copy of the Engine's counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := Stats{Verifications: map[string]int{}, Matches: map[string]int{}, QueueDepth: e.queue.Len()}
	for k, v := range e.assessN {
		s.Verifications[k] = v
	}
	for k, v := range e.matchN {
		s.Matches[k] = v
	}
	return s
}

// Idle reports whether no digest is queued or being processed and every wanted digest has been
// assessed.
func (e *Engine) Idle() bool {
	if e.queue.Len() > 0 || e.busy.Load() > 0 {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ent := range e.digests {
		if ent.wanted() && (!ent.assessed || ent.needVerify || ent.needMatch || ent.retry != "") {
			return false
		}
	}
	return true
}
