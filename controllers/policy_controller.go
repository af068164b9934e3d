package controllers

import (
	"context"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner"
)

// policyStatusRefresh is how often a policy's matchedReports count is refreshed, and its
// Secrets and ConfigMaps read again.
const policyStatusRefresh = time.Minute

// trustRootRecheck is how soon a policy whose trust root is still loading is compiled again,
// should the load's notification be missed.
const trustRootRecheck = 15 * time.Second

// +kubebuilder:rbac:groups=security.imagetrust.dev,resources=imagetrustpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=security.imagetrust.dev,resources=imagetrustpolicies/status,verbs=get;patch
//
// ConfigMaps holding trusted_root.json documents, TUF roots and Notation trust stores are read
// with direct gets, never listed or watched.
//
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get

// PolicyReconciler compiles ImageTrustPolicies for the Engine, runs each policy's
// re-verification schedule and reports the policy's status.
type PolicyReconciler struct {
	Client    client.Client
	APIReader client.Reader
	Engine    *Engine
	Clock     Clock
	Scheduler *Scheduler
	// TrustRoots hands out the trust-root providers policies name (nil: none).
	TrustRoots *scanner.TrustRoots
	// Kick receives an event when a policy's schedule ran, to record it in the status, and
	// when a trust root loaded, to compile the policies that name one again.
	Kick chan event.GenericEvent
	// StalledRetry is how long a policy that cannot be enforced waits before it is compiled
	// again (it may be sooner: the status is refreshed every minute).
	StalledRetry time.Duration

	mu           sync.Mutex
	compiled     map[string]*compiledPolicy
	lastVerified map[string]time.Time
}

func policyScheduleKey(name string) string { return "policy/" + name }

// Reconcile implements reconcile.Reconciler.
func (r *PolicyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	var p securityv1alpha1.ImageTrustPolicy
	if err := r.Client.Get(ctx, req.NamespacedName, &p); err != nil {
		if apierrors.IsNotFound(err) {
			r.mu.Lock()
			delete(r.compiled, req.Name)
			delete(r.lastVerified, req.Name)
			r.install()
			r.retainTrustRoots()
			r.mu.Unlock()
			r.Scheduler.Remove(policyScheduleKey(req.Name))
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	cp, err := compilePolicy(ctx, r.APIReader, r.TrustRoots, &p)
	if err != nil {
		return ctrl.Result{}, err
	}

	r.mu.Lock()
	if r.compiled == nil {
		r.compiled, r.lastVerified = map[string]*compiledPolicy{}, map[string]time.Time{}
	}
	prev := r.compiled[p.Name]
	if !sameCompiled(prev, cp) {
		r.compiled[p.Name] = cp
		r.install()
		r.retainTrustRoots()
	}
	lastVerified := r.lastVerified[p.Name]
	r.mu.Unlock()

	now := r.Clock.Now()
	before := p.DeepCopy()
	if cp.Schedule != nil {
		next, ok := r.Scheduler.Next(policyScheduleKey(p.Name))
		if !ok || (prev != nil && prev.Generation != cp.Generation) {
			next = cp.Schedule.Next(now)
			r.schedule(p.Name, cp.Schedule, next)
		}
		t := metav1.NewTime(next)
		p.Status.NextVerificationTime = &t
	} else {
		r.Scheduler.Remove(policyScheduleKey(p.Name))
		p.Status.NextVerificationTime = nil
	}
	if !lastVerified.IsZero() {
		t := metav1.NewTime(lastVerified.Truncate(time.Second))
		p.Status.LastVerificationTime = &t
	}
	p.Status.MatchedReports = int32(r.Engine.PolicyMatches()[p.Name])
	p.Status.ObservedGeneration = p.Generation
	setPolicyConditions(&p.Status.Conditions, cp, now)
	if !equality.Semantic.DeepEqual(before.Status, p.Status) {
		if err := r.Client.Status().Patch(ctx, &p, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
	}
	if cp.Stalled() {
		// Secrets are not watched: a key Secret created later is read on this retry; a trust
		// root still loading is looked at sooner, should its load notification be missed
		retry := min(policyStatusRefresh, r.StalledRetry)
		if len(cp.Pending) > 0 {
			retry = min(retry, trustRootRecheck)
		}
		return ctrl.Result{RequeueAfter: retry}, nil
	}
	return ctrl.Result{RequeueAfter: policyStatusRefresh}, nil
}

// retainTrustRoots keeps in the pool the trust roots the compiled policies name and stops the
// others. Callers hold r.mu.
func (r *PolicyReconciler) retainTrustRoots() {
	if r.TrustRoots == nil {
		return
	}
	var keep []scanner.TrustRootProvider
	for _, cp := range r.compiled {
		keep = append(keep, cp.TrustRoots...)
	}
	r.TrustRoots.Retain(keep)
}

// trustRootLoaded queues the policies that name a trust root: one of them loaded (or failed
// to), which may change what they can enforce. It never blocks.
func (r *PolicyReconciler) trustRootLoaded() {
	r.mu.Lock()
	var evs []event.GenericEvent
	for name, cp := range r.compiled {
		if len(cp.TrustRoots) > 0 {
			evs = append(evs, event.GenericEvent{Object: &securityv1alpha1.ImageTrustPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}})
		}
	}
	r.mu.Unlock()
	if len(evs) == 0 {
		return
	}
	go func() {
		for _, ev := range evs {
			r.Kick <- ev
		}
	}()
}

// install hands the current set of compiled policies to the Engine. Callers hold r.mu.
func (r *PolicyReconciler) install() {
	all := make([]*compiledPolicy, 0, len(r.compiled))
	for _, cp := range r.compiled {
		all = append(all, cp)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Name < all[j].Name })
	r.Engine.SetPolicies(all)
}

// schedule arms the policy's next re-verification; each run re-arms the following one.
func (r *PolicyReconciler) schedule(name string, s interface{ Next(time.Time) time.Time }, at time.Time) {
	r.Scheduler.Set(policyScheduleKey(name), at, func() {
		now := r.Clock.Now()
		r.Engine.ReverifyPolicy(name)
		r.mu.Lock()
		if r.lastVerified != nil {
			r.lastVerified[name] = now
		}
		r.mu.Unlock()
		r.schedule(name, s, s.Next(now))
		ev := event.GenericEvent{Object: &securityv1alpha1.ImageTrustPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}}
		go func() { r.Kick <- ev }()
	})
}

// followMatches refreshes every policy's status when what is wanted changed, so matchedReports
// follows pods and scans within seconds instead of at the next minute's refresh.
func (r *PolicyReconciler) followMatches(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	var seen uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		v := r.Engine.demand.changes()
		if v == seen {
			continue
		}
		seen = v
		r.mu.Lock()
		names := make([]string, 0, len(r.compiled))
		for n := range r.compiled {
			names = append(names, n)
		}
		r.mu.Unlock()
		for _, n := range names {
			select {
			case r.Kick <- event.GenericEvent{Object: &securityv1alpha1.ImageTrustPolicy{ObjectMeta: metav1.ObjectMeta{Name: n}}}:
			case <-ctx.Done():
				return
			}
		}
	}
}

// setPolicyConditions derives a policy's conditions from its compiled form. A policy that
// cannot be enforced is Stalled: for a configuration error, a trust root that failed to load,
// or one still loading (then also Reconciling, as it resolves by itself).
func setPolicyConditions(conds *[]metav1.Condition, cp *compiledPolicy, now time.Time) {
	meta.RemoveStatusCondition(conds, securityv1alpha1.ConditionReconciling)
	if cp.Stalled() {
		msg := strings.Join(cp.Scanner.Problems, "; ")
		reason := securityv1alpha1.ReasonInvalidConfiguration
		switch trustRoot := len(cp.Pending) + len(cp.Unavailable); {
		case trustRoot < len(cp.Scanner.Problems):
		case len(cp.Unavailable) > 0:
			reason = securityv1alpha1.ReasonTrustRootUnavailable
		default:
			reason = securityv1alpha1.ReasonTrustRootPending
			setCondition(conds, securityv1alpha1.ConditionReconciling, metav1.ConditionTrue, reason, msg, cp.Generation, now)
		}
		setCondition(conds, securityv1alpha1.ConditionStalled, metav1.ConditionTrue, reason, msg, cp.Generation, now)
		setCondition(conds, securityv1alpha1.ConditionReady, metav1.ConditionFalse, reason, msg, cp.Generation, now)
	} else {
		meta.RemoveStatusCondition(conds, securityv1alpha1.ConditionStalled)
		setCondition(conds, securityv1alpha1.ConditionReady, metav1.ConditionTrue, securityv1alpha1.ReasonSucceeded, "policy is enforced", cp.Generation, now)
	}
	sortConditions(*conds)
}

// loadAll compiles every policy and installs them at once, before the Engine's first pass, so
// startup does not assess everything twice.
func (r *PolicyReconciler) loadAll(ctx context.Context) error {
	var list securityv1alpha1.ImageTrustPolicyList
	if err := r.Client.List(ctx, &list); err != nil {
		return err
	}
	compiled := map[string]*compiledPolicy{}
	for i := range list.Items {
		cp, err := compilePolicy(ctx, r.APIReader, r.TrustRoots, &list.Items[i])
		if err != nil {
			return err
		}
		compiled[cp.Name] = cp
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.compiled == nil {
		r.compiled, r.lastVerified = map[string]*compiledPolicy{}, map[string]time.Time{}
	}
	for k, v := range compiled {
		if _, ok := r.compiled[k]; !ok {
			r.compiled[k] = v
		}
	}
	r.install()
	return nil
}
