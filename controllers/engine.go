package controllers

// The Engine: one work queue keyed by image (repository and digest) shared by every source, and
// the workers that run a pass over each queued image and write its reports.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner"
)

// Engine assesses each wanted image once, whatever number of namespaces and sources want it,
// and fans the result out to one report per namespace. The same digest in another repository is
// another image with its own verification and reports; its SBOM comes from the scanner's cache
// and its vulnerability match from the match memo, so the content is still pulled and matched
// once. Sources (the pod, RegistryScan and policy reconcilers) only tell the Engine what is
// wanted; each pass decides what work that needs: full assessment, re-verification, rematching
// against a new DB, re-evaluation after a policy edit, or just a report write.
type Engine struct {
	opts    Options
	log     logr.Logger
	sched   *Scheduler
	pool    *scannerPool
	queue   priorityqueue.PriorityQueue[imageKey]
	busy    atomic.Int64 // images being processed
	metrics *engineMetrics

	demand  *demand
	results *results
	fleet   *scanner.Fleet
	matcher *matcher
	writer  *reportWriter

	statsMu     sync.Mutex
	lastRematch FleetRematch

	// beforeStart runs once before the workers start (DB loaded, policies compiled).
	beforeStart func(context.Context) error
}

// Work priorities: a DB change costs no registry request and a new image has no report yet, so
// both go before scheduled re-verifications (and retries), which are spread by jitter anyway.
const (
	priorityBackground = 0 // scheduled re-verification, retries, a deferred huge match
	priorityDemand     = 1 // a new or changed source, a policy or namespace change
	priorityRematch    = 2 // a vulnerability DB change: no registry I/O
)

// largeSBOMRetry is how long a huge SBOM waits when the workers it may use are all busy with
// other huge SBOMs.
const largeSBOMRetry = 10 * time.Second

func newEngine(writer *reportWriter, opts Options, sched *Scheduler, pool *scannerPool, log logr.Logger) *Engine {
	rl := workqueue.NewTypedItemExponentialFailureRateLimiter[imageKey](opts.RetryBaseDelay, opts.RetryMaxDelay)
	fleet := scanner.NewFleet(opts.DB, opts.Clock.Now)
	return &Engine{
		opts: opts, log: log, sched: sched, pool: pool, metrics: writer.metrics,
		queue: priorityqueue.New("imagetrust-engine", func(o *priorityqueue.Opts[imageKey]) {
			o.RateLimiter = rl
			o.Log = log.WithName("queue")
		}),
		demand:  newDemand(opts.Clock),
		results: newResults(),
		fleet:   fleet,
		matcher: newMatcher(fleet, opts.Cache, opts.Concurrency),
		writer:  writer,
	}
}

// Start runs the workers until ctx ends. It implements manager.Runnable.
func (e *Engine) Start(ctx context.Context) error {
	if e.beforeStart != nil {
		if err := e.beforeStart(ctx); err != nil {
			return fmt.Errorf("preparing the engine: %w", err)
		}
	}
	e.demand.started()
	var wg sync.WaitGroup
	for i := 0; i < e.opts.Concurrency; i++ {
		wg.Go(func() {
			for e.processNext(ctx) {
			}
		})
	}
	<-ctx.Done()
	e.queue.ShutDown()
	wg.Wait()
	return nil
}

// NeedLeaderElection makes only the leader write reports.
func (e *Engine) NeedLeaderElection() bool { return true }

func (e *Engine) processNext(ctx context.Context) bool {
	key, prio, quit := e.queue.GetWithPriority()
	if quit {
		return false
	}
	defer e.queue.Done(key)
	e.busy.Add(1)
	err := e.process(ctx, key, prio)
	e.busy.Add(-1)
	switch kindOf(err) {
	case errNone:
		e.queue.Forget(key)
	case errStalling:
		// a person must act: tried again after a long delay, or at once when a source changes
		e.queue.Forget(key)
		e.queue.AddWithOpts(priorityqueue.AddOpts{After: e.opts.StalledRetryInterval, Priority: ptr.To(priorityBackground)}, key)
	case errWaiting:
		e.queue.Forget(key)
		if d := requeueAfter(err); d > 0 {
			e.queue.AddAfter(key, d)
		}
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

// process runs one pass over an image: take the scope and the last assessment, run the steps,
// then commit. A pass taken at rematch priority (a DB change) leaves a scheduled
// re-verification to a background pass, so the DB change reaches the reports without waiting
// for the registry.
func (e *Engine) process(ctx context.Context, key imageKey, prio int) error {
	scope, ok := e.demand.scope(key)
	if !ok {
		return nil
	}
	prev, asked := e.results.take(key)
	if prio == priorityRematch && asked.verify && prev != nil {
		asked.verify = false
		defer e.deferVerification(key)
	}
	sc, err := e.pool.get(scope.access)
	if err != nil {
		e.results.ask(key, asked)
		return err
	}
	p := newPass(scope, sc, prev, asked)
	for _, st := range []step{e.verifyStep, e.sbomStep, e.matchStep} {
		if err := st(ctx, p); err != nil {
			e.results.ask(key, asked)
			return err
		}
	}
	return e.commit(ctx, p)
}

// commit stores the pass's assessment and writes the reports of every namespace of its scope —
// unless the demand changed while the pass ran (a namespace with other policies may want the
// image now) or the SBOM must be fetched again: then the image is queued and the next pass
// writes.
func (e *Engine) commit(ctx context.Context, p *pass) error {
	a, next := p.outcome()
	e.results.store(p.scope.key, a, next)
	switch {
	case p.deferred:
		return waiting(largeSBOMRetry, securityv1alpha1.ReasonMatchDeferred, "another huge SBOM is being matched")
	case p.evicted || !e.demand.current(&p.scope):
		e.enqueue(priorityDemand, p.scope.key)
		return nil
	}
	var errs []error
	for _, in := range reportInputs(&p.scope, a, e.opts.Clock.Now()) {
		if err := e.writer.write(ctx, in); err != nil {
			errs = append(errs, fmt.Errorf("report %s: %w", in.key, err))
		}
	}
	return errors.Join(append(errs, a.problems, a.dbWait)...)
}

// enqueue queues images at a priority; an image already queued keeps the higher of the two.
func (e *Engine) enqueue(prio int, keys ...imageKey) {
	if e.opts.fifo {
		prio = priorityBackground
	}
	e.queue.AddWithOpts(priorityqueue.AddOpts{Priority: ptr.To(prio)}, keys...)
	e.metrics.queueDepth.Set(float64(e.queue.Len()))
}

// deferVerification queues the re-verification a rematch pass left, in the background.
func (e *Engine) deferVerification(key imageKey) {
	e.results.ask(key, work{verify: true})
	e.queue.AddWithOpts(priorityqueue.AddOpts{Priority: ptr.To(priorityBackground)}, key)
}

// enqueueJittered queues a scheduled re-verification after a random delay below Options.Jitter,
// so a cron tick does not hit registries all at once.
func (e *Engine) enqueueJittered(key imageKey) {
	var after time.Duration
	if e.opts.Jitter > 0 {
		after = time.Duration(rand.Int64N(int64(e.opts.Jitter)))
	}
	e.queue.AddWithOpts(priorityqueue.AddOpts{After: after, Priority: ptr.To(priorityBackground)}, key)
}

// SetPodUses records what a pod runs (nil when the pod is gone or finished). Images the pod
// adds are assessed at once when new; images it drops start their grace period when no other
// source wants them in the namespace.
func (e *Engine) SetPodUses(pod types.NamespacedName, uses []PodUse, acc *access) {
	e.enqueue(priorityDemand, e.demand.setPodUses(pod, uses, acc)...)
}

// SetScanImages records the images a RegistryScan found in its last successful run.
func (e *Engine) SetScanImages(scan types.NamespacedName, uid types.UID, images []ScanImage, acc *access) {
	e.enqueue(priorityDemand, e.demand.setScanImages(scan, uid, images, acc)...)
}

// HasScan reports whether the Engine knows a RegistryScan's images (false after a restart until
// the scan runs or is seeded from its existing reports).
func (e *Engine) HasScan(scan types.NamespacedName) bool { return e.demand.hasScan(scan) }

// RemoveScan forgets a deleted RegistryScan; its reports age out after the grace period unless
// pods use the images too.
func (e *Engine) RemoveScan(scan types.NamespacedName) {
	e.enqueue(priorityDemand, e.demand.removeScan(scan)...)
}

// SetPolicies installs the compiled policies and queues every image: a pass re-evaluates from
// the stored assessment, and re-verifies only images whose set of authorities changed.
func (e *Engine) SetPolicies(pols []*compiledPolicy) {
	e.enqueue(priorityDemand, e.demand.setPolicies(pols)...)
}

// SetNamespaceLabels records a namespace's labels for policy namespace selectors.
func (e *Engine) SetNamespaceLabels(ns string, lbls map[string]string) {
	e.enqueue(priorityDemand, e.demand.setNamespaceLabels(ns, lbls)...)
}

// ReverifyPolicy queues re-verification of every image the policy applies to.
func (e *Engine) ReverifyPolicy(name string) int {
	keys := e.demand.appliedBy(name)
	for _, k := range keys {
		e.results.ask(k, work{verify: true})
		e.enqueueJittered(k)
	}
	return len(keys)
}

// PolicyMatches counts the reports (namespace, image) each policy applies to.
func (e *Engine) PolicyMatches() map[string]int { return e.demand.policyMatches() }

// Stats are counters for tests and debugging.
type Stats struct {
	// Verifications per image, keyed "repository@digest": how often the full registry-facing
	// verification ran. The same digest in two repositories is verified once in each.
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
	s := Stats{Verifications: e.results.verificationCounts(), QueueDepth: e.queue.Len()}
	s.Matches, s.Refreshed = e.matcher.counts()
	e.statsMu.Lock()
	s.LastRematch = e.lastRematch
	e.statsMu.Unlock()
	return s
}

// Idle reports whether no image is queued or being processed and every wanted image has been
// assessed.
func (e *Engine) Idle() bool {
	if e.queue.Len() > 0 || e.busy.Load() > 0 {
		return false
	}
	return e.results.settled(e.demand.wanted())
}
