package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/singleflight"
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

func (u PodUse) image() imageKey { return imageKey{u.Repository, u.Digest} }

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
	images map[imageKey]*ScanImage
	access *access
}

// imageKey names one image the Engine assesses: a manifest digest in one repository. The same
// digest in two repositories (a mirror) is two images: cosign stores signatures and
// attestations per repository and policies match on the repository, so the verification of one
// must never stand for the other. Only what depends on the content alone (the SBOM, through the
// scanner's cache, and the vulnerability match) is shared by digest.
type imageKey struct {
	Repository string
	Digest     string
}

// String renders the key as a digest reference, for logs and errors.
func (k imageKey) String() string { return k.Repository + "@" + k.Digest }

// reportKey names one report: an image (repository and digest) in a namespace.
type reportKey struct {
	Namespace  string
	Repository string
	Digest     string
}

// image is the image the report is about.
func (k reportKey) image() imageKey { return imageKey{k.Repository, k.Digest} }

// String renders the key for logs and errors.
func (k reportKey) String() string { return k.Namespace + "/" + k.Repository + "@" + k.Digest }

// describes reports whether r is the stored report of k. Spec.Image holds the repository cut
// to the API's 512 characters.
func (k reportKey) describes(r *securityv1alpha1.ImageTrustReport) bool {
	return r.Namespace == k.Namespace && r.Spec.Digest == k.Digest && r.Spec.Image == trunc(k.Repository, 512)
}

// reportKeyOf is the key of a stored report: Spec.Image is the repository it was written for.
// A report written before reports were keyed by repository names the first (sorted) repository
// its namespace ran the digest from; that repository's image adopts it.
func reportKeyOf(r *securityv1alpha1.ImageTrustReport) reportKey {
	return reportKey{r.Namespace, r.Spec.Image, r.Spec.Digest}
}

// matchMemo is the last successful vulnerability match of a digest's SBOM, shared by every
// repository holding the digest so a DB change matches each SBOM once.
type matchMemo struct {
	sbomDigest string // document digest of the SBOM matched
	gen        uint64 // Engine.matchGen when the match started
	scan       *scanner.Scan
}

// imageEntry is everything known about one image (repository and digest). The verification,
// SBOM and scan values are replaced, never mutated, so report building can read them without
// holding the lock.
type imageEntry struct {
	key    imageKey
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
	retry        string // transient problem; the image is requeued with backoff
	stalled      string // a problem a person must fix (credentials refused, platform missing)

	assessed   bool
	needVerify bool
	needMatch  bool
}

func (d *imageEntry) wanted() bool { return len(d.pods) > 0 || len(d.scans) > 0 }

// Engine holds per-image state (repository and digest) and one work queue keyed by image shared
// by every source, so an image used in ten namespaces is assessed once and its result fanned out
// to ten reports. The same digest in another repository is another image with its own
// verification and reports; its SBOM comes from the scanner's cache and its vulnerability match
// from matches, so the content is still pulled and matched once.
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
	queue     workqueue.TypedRateLimitingInterface[imageKey]
	log       logr.Logger
	metrics   *engineMetrics

	mu        sync.Mutex
	images    map[imageKey]*imageEntry
	pods      map[types.NamespacedName]*podSource
	scans     map[types.NamespacedName]*scanSource
	nsLabels  map[string]map[string]string
	policies  []*compiledPolicy
	unwanted  map[reportKey]time.Time
	written   map[reportKey]string // content hash last written (or found) per report
	startedAt time.Time
	assessN   map[imageKey]int // verifications per image, for tests and logs
	matchN    map[string]int   // matches per digest
	busy      atomic.Int64     // images being processed

	// matches holds the last match of each digest's SBOM; matchGen invalidates all of them
	// when the DB changes (Rematch). matchFlight makes repositories of one digest processed
	// at the same moment share one match.
	matches     map[string]*matchMemo
	matchGen    uint64
	matchFlight singleflight.Group

	// fleetMu serialises the Engine's calls into the DB's fleet (MatchMany, RematchChanged),
	// so only RematchFleet moves the fleet to a new DB and the diff's changes are not lost.
	// fleetAt is the DB checksum the fleet was last seen at; fleetLost records that a match
	// moved it to a new DB before RematchFleet ran. fleetKeys (guarded by mu) are the SBOMs
	// the fleet remembers, by fleetKey.
	fleetMu     sync.Mutex
	fleetAt     string
	fleetLost   bool
	fleetKeys   map[string]bool
	lastRematch FleetRematch
	refreshed   map[string]int // per digest: fleet rematches that queued its reports with a new match

	// beforeStart runs once before the workers start (DB loaded, policies compiled).
	beforeStart func(context.Context) error
}

func newEngine(c client.Client, apiReader client.Reader, events eventSink, opts Options, sched *Scheduler, pool *scannerPool, log logr.Logger) *Engine {
	rl := workqueue.NewTypedMaxOfRateLimiter[imageKey](
		workqueue.NewTypedItemExponentialFailureRateLimiter[imageKey](opts.RetryBaseDelay, opts.RetryMaxDelay),
	)
	return &Engine{
		client:    c,
		apiReader: apiReader,
		events:    events,
		opts:      opts,
		clock:     opts.Clock,
		sched:     sched,
		pool:      pool,
		queue:     workqueue.NewTypedRateLimitingQueue[imageKey](rl),
		log:       log,
		metrics:   newEngineMetrics(),
		images:    map[imageKey]*imageEntry{},
		pods:      map[types.NamespacedName]*podSource{},
		scans:     map[types.NamespacedName]*scanSource{},
		nsLabels:  map[string]map[string]string{},
		unwanted:  map[reportKey]time.Time{},
		written:   map[reportKey]string{},
		startedAt: opts.Clock.Now(),
		assessN:   map[imageKey]int{},
		matchN:    map[string]int{},
		matches:   map[string]*matchMemo{},
		fleetKeys: map[string]bool{},
		refreshed: map[string]int{},
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
	key, quit := e.queue.Get()
	if quit {
		return false
	}
	defer e.queue.Done(key)
	e.busy.Add(1)
	err := e.process(ctx, key)
	e.busy.Add(-1)
	switch kindOf(err) {
	case errNone, errStalling:
		e.queue.Forget(key)
	case errWaiting:
		var w *WaitingError
		errors.As(err, &w)
		e.queue.Forget(key)
		e.queue.AddAfter(key, w.RequeueAfter)
	default:
		if ctx.Err() != nil {
			return true
		}
		e.log.V(1).Info("image will be retried", "image", key.String(), "reason", err.Error())
		e.queue.AddRateLimited(key)
	}
	e.metrics.queueDepth.Set(float64(e.queue.Len()))
	return true
}

func (e *Engine) enqueue(key imageKey) {
	e.queue.Add(key)
	e.metrics.queueDepth.Set(float64(e.queue.Len()))
}

// enqueueJittered spreads scheduled work so a cron tick does not hit registries all at once.
func (e *Engine) enqueueJittered(key imageKey) {
	if e.opts.Jitter <= 0 {
		e.enqueue(key)
		return
	}
	e.queue.AddAfter(key, time.Duration(rand.Int64N(int64(e.opts.Jitter))))
}

// ensureEntryLocked returns the entry for the image (repository and digest), creating it when
// new; the caller queues it.
func (e *Engine) ensureEntryLocked(img scanner.Image, acc *access) *imageEntry {
	key := imageKey{img.Repository, img.Digest}
	ent := e.images[key]
	if ent == nil {
		ent = &imageEntry{key: key, image: img, access: acc,
			pods: map[types.NamespacedName]struct{}{}, scans: map[types.NamespacedName]struct{}{}}
		e.images[key] = ent
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

// SetPodUses records what a pod runs (nil when the pod is gone or finished). Images the pod
// adds are assessed at once when new; images it drops start their grace period when no other
// source wants them in the namespace.
func (e *Engine) SetPodUses(pod types.NamespacedName, uses []PodUse, acc *access) {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.pods[pod]
	if old != nil && slices.Equal(old.uses, uses) && old.access == acc {
		return
	}
	touched := map[imageKey]bool{}
	if old != nil {
		for _, u := range old.uses {
			touched[u.image()] = true
		}
	}
	if len(uses) == 0 {
		delete(e.pods, pod)
	} else {
		e.pods[pod] = &podSource{uses: uses, access: acc}
	}
	now := map[imageKey]bool{}
	for _, u := range uses {
		now[u.image()] = true
		touched[u.image()] = true
		ent := e.ensureEntryLocked(scanner.Image{Repository: u.Repository, Tag: u.Tag, Digest: u.Digest}, acc)
		ent.pods[pod] = struct{}{}
	}
	for k := range touched {
		ent := e.images[k]
		if ent == nil {
			continue
		}
		if !now[k] {
			delete(ent.pods, pod)
		}
		e.updateWantLocked(ent, pod.Namespace)
		e.enqueue(k)
	}
}

// SetScanImages records the images a RegistryScan found in its last successful run.
func (e *Engine) SetScanImages(scan types.NamespacedName, uid types.UID, images []ScanImage, acc *access) {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.scans[scan]
	src := &scanSource{uid: uid, images: map[imageKey]*ScanImage{}, access: acc}
	for i := range images {
		im := images[i]
		im.Tags = append([]string(nil), im.Tags...)
		sort.Strings(im.Tags)
		k := imageKey{im.Image.Repository, im.Image.Digest}
		if prev := src.images[k]; prev != nil {
			prev.Tags = mergeSorted(prev.Tags, im.Tags)
			continue
		}
		src.images[k] = &im
	}
	if old != nil && old.uid == uid && old.access == acc && sameScanImages(old.images, src.images) {
		return
	}
	e.scans[scan] = src
	touched := map[imageKey]bool{}
	if old != nil {
		for k := range old.images {
			touched[k] = true
		}
	}
	for k, im := range src.images {
		touched[k] = true
		ent := e.ensureEntryLocked(im.Image, acc)
		ent.scans[scan] = struct{}{}
	}
	for k := range touched {
		ent := e.images[k]
		if ent == nil {
			continue
		}
		if _, ok := src.images[k]; !ok {
			delete(ent.scans, scan)
		}
		e.updateWantLocked(ent, scan.Namespace)
		e.enqueue(k)
	}
}

// HasScan reports whether the Engine knows a RegistryScan's images (false after a restart until
// the scan runs or is seeded from its existing reports).
func (e *Engine) HasScan(scan types.NamespacedName) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.scans[scan]
	return ok
}

// RemoveScan forgets a deleted RegistryScan; its reports age out after the grace period unless
// pods use the images too.
func (e *Engine) RemoveScan(scan types.NamespacedName) {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.scans[scan]
	if old == nil {
		return
	}
	delete(e.scans, scan)
	for k := range old.images {
		if ent := e.images[k]; ent != nil {
			delete(ent.scans, scan)
			e.updateWantLocked(ent, scan.Namespace)
			e.enqueue(k)
		}
	}
}

func sameScanImages(a, b map[imageKey]*ScanImage) bool {
	if len(a) != len(b) {
		return false
	}
	for k, x := range a {
		y, ok := b[k]
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

// updateWantLocked starts or stops the grace period of the report (ns, repository, digest).
func (e *Engine) updateWantLocked(ent *imageEntry, ns string) {
	k := reportKey{ns, ent.key.Repository, ent.key.Digest}
	if e.wantedInLocked(ent, ns) {
		delete(e.unwanted, k)
		return
	}
	if _, ok := e.unwanted[k]; !ok {
		e.unwanted[k] = e.clock.Now()
	}
}

func (e *Engine) wantedInLocked(ent *imageEntry, ns string) bool {
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

// namespacesLocked lists the namespaces that want an image, sorted.
func (e *Engine) namespacesLocked(ent *imageEntry) []string {
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

// nsView is what a namespace knows about an image: its repository, tags, workloads and scans.
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

// viewLocked collects the namespace's view of an image from its pod and scan sources.
func (e *Engine) viewLocked(ent *imageEntry, ns string) nsView {
	v := nsView{repo: ent.key.Repository}
	tags := map[string]bool{}
	wl := map[string]*workloadView{}
	for p := range ent.pods {
		if p.Namespace != ns {
			continue
		}
		for _, u := range e.pods[p].uses {
			if u.image() != ent.key {
				continue
			}
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
		im := src.images[ent.key]
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

// policiesForLocked returns the policies that apply to an image in a namespace, by name.
func (e *Engine) policiesForLocked(ns, repo string, tags []string) []*compiledPolicy {
	var out []*compiledPolicy
	for _, p := range e.policies {
		if p.appliesTo(repo, tags, e.nsLabels[ns]) {
			out = append(out, p)
		}
	}
	return out
}

// unionPoliciesLocked is every policy that applies to an image in any namespace wanting it:
// verification runs once against the union of their authorities.
func (e *Engine) unionPoliciesLocked(ent *imageEntry) []*compiledPolicy {
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

// process does the work an image needs and writes its reports.
func (e *Engine) process(ctx context.Context, key imageKey) error {
	e.mu.Lock()
	ent := e.images[key]
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
		e.assessN[key]++
		e.mu.Unlock()
		v = &nv
		e.log.V(1).Info("verified", "image", key.String(), "policies", len(pols), "state", nv.Signature.State, "reason", nv.Signature.Reason)
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
				meta.Document = nil // the cache holds it; keep memory per image small
			}
			sb, sbReason = &meta, registry.SanitizeText(res.Reason)
		}
	}

	if doMatch && sb != nil {
		res, evicted, err := e.match(ctx, sc, key.Digest, sb, fullSBOM)
		if evicted {
			// Evicted from the cache: fetch it again on the next pass through the SBOM phase.
			e.mu.Lock()
			ent.sbom = nil
			ent.needMatch = true
			e.mu.Unlock()
			e.enqueue(key)
			return nil
		}
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
		// A namespace with other policies started wanting the image while it was being
		// verified: writing now would publish a verification made without their authorities.
		ent.needVerify = true
		e.mu.Unlock()
		e.enqueue(key)
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

// match matches the SBOM sb of digest against the DB, or reuses the match another repository
// holding the same digest made of the same SBOM since the DB last changed: the SBOM of a digest
// is the same whatever repository it is pulled from, and a DB change must cost one match per
// digest, not one per mirror. doc is the SBOM document when at hand; evicted is true when it was
// not and the SBOM cache no longer has it.
func (e *Engine) match(ctx context.Context, sc *scanner.Scanner, digest string, sb, doc *sbom.SBOM) (res *scanner.Scan, evicted bool, err error) {
	e.mu.Lock()
	gen := e.matchGen
	e.mu.Unlock()
	reuse := func() *scanner.Scan {
		e.mu.Lock()
		defer e.mu.Unlock()
		if m := e.matches[digest]; m != nil && m.gen == e.matchGen && m.gen == gen && m.sbomDigest == sb.Digest {
			return m.scan
		}
		return nil
	}
	if s := reuse(); s != nil {
		return s, false, nil
	}
	type outcome struct {
		scan    *scanner.Scan
		evicted bool
	}
	// Concurrent callers for one digest, SBOM and DB generation share one match; a caller
	// arriving just after it finished finds it memoised.
	flight := fmt.Sprintf("%s|%s|%d", digest, sb.Digest, gen)
	v, err, _ := e.matchFlight.Do(flight, func() (any, error) {
		if s := reuse(); s != nil {
			return outcome{scan: s}, nil
		}
		d := doc
		if d == nil {
			d = e.sbomDocument(sb)
		}
		if d == nil {
			return outcome{evicted: true}, nil
		}
		s, err := e.matchOne(ctx, sc, digest, d)
		e.mu.Lock()
		defer e.mu.Unlock()
		e.matchN[digest]++
		if err != nil {
			return outcome{}, err
		}
		if m := e.matches[digest]; m == nil || m.gen <= gen {
			e.matches[digest] = &matchMemo{sbomDigest: sb.Digest, gen: gen, scan: s}
		}
		return outcome{scan: s}, nil
	})
	if err != nil {
		return nil, false, err
	}
	o := v.(outcome)
	return o.scan, o.evicted, nil
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

// reportInputsLocked evaluates the image for each namespace that wants it.
func (e *Engine) reportInputsLocked(ent *imageEntry) []*reportInput {
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
			key:        reportKey{ns, ent.key.Repository, ent.key.Digest},
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

// SetPolicies installs the compiled policies and queues every image: process re-evaluates from
// cached results, and re-verifies only images whose set of authorities changed.
func (e *Engine) SetPolicies(pols []*compiledPolicy) {
	sort.Slice(pols, func(i, j int) bool { return pols[i].Name < pols[j].Name })
	e.mu.Lock()
	defer e.mu.Unlock()
	e.policies = pols
	for k, ent := range e.images {
		if ent.wanted() {
			e.enqueue(k)
		}
	}
}

// ReverifyPolicy queues re-verification of every image the policy applies to.
func (e *Engine) ReverifyPolicy(name string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for k, ent := range e.images {
		if !ent.wanted() {
			continue
		}
		for _, p := range e.unionPoliciesLocked(ent) {
			if p.Name == name {
				ent.needVerify = true
				e.enqueueJittered(k)
				n++
				break
			}
		}
	}
	return n
}

// Rematch queues every wanted image for matching against the (new) vulnerability DB and
// returns the number of digests to rematch: the fallback of RematchFleet, and what a DB turning
// stale needs (every report then says DBStale). The SBOMs come from the SBOM cache, so this sends
// nothing to registries, and the repositories of one digest share its match.
func (e *Engine) Rematch() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.matchGen++
	digests := map[string]bool{}
	for k, ent := range e.images {
		if ent.wanted() && ent.sbom != nil {
			ent.needMatch = true
			e.enqueue(k)
			digests[k.Digest] = true
		}
	}
	return len(digests)
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
	if ok && maps.Equal(old, lbls) {
		return
	}
	for k, ent := range e.images {
		if e.wantedInLocked(ent, ns) {
			e.enqueue(k)
		}
	}
}

// PolicyMatches counts the reports (namespace, image) each policy applies to.
func (e *Engine) PolicyMatches() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]int{}
	for _, ent := range e.images {
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
	// Verifications per image, keyed "repository@digest": how often the full registry-facing
	// assessment ran. The same digest in two repositories is verified once in each.
	Verifications map[string]int
	// Matches per digest: how often the SBOM was matched against the DB, whatever the number
	// of repositories holding the digest.
	Matches map[string]int
	// QueueDepth is the number of images waiting.
	QueueDepth int
	// Refreshed counts, per digest, the fleet rematches (RematchFleet) that gave it a new match
	// and queued its reports: those whose findings changed, or every digest when the DB had
	// no usable diff.
	Refreshed map[string]int
	// LastRematch describes the last rematch after a DB change (or the periodic full one).
	LastRematch FleetRematch
}

// Stats returns a copy of the Engine's counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := Stats{Verifications: map[string]int{}, Matches: map[string]int{}, QueueDepth: e.queue.Len(),
		Refreshed: map[string]int{}, LastRematch: e.lastRematch}
	for k, v := range e.refreshed {
		s.Refreshed[k] = v
	}
	for k, v := range e.assessN {
		s.Verifications[k.String()] = v
	}
	for k, v := range e.matchN {
		s.Matches[k] = v
	}
	return s
}

// Idle reports whether no image is queued or being processed and every wanted image has been
// assessed.
func (e *Engine) Idle() bool {
	if e.queue.Len() > 0 || e.busy.Load() > 0 {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ent := range e.images {
		if ent.wanted() && (!ent.assessed || ent.needVerify || ent.needMatch || ent.retry != "") {
			return false
		}
	}
	return true
}
