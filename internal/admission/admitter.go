package admission

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// EventRecorder is the part of an events.k8s.io/v1 recorder admission uses; the manager's
// GetEventRecorder satisfies it.
type EventRecorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...interface{})
}

// ErrNotReady is returned until the report, policy and namespace caches have synced: an answer
// from an empty cache would be wrong either way.
var ErrNotReady = errors.New("admission caches have not synced yet")

// Admitter runs the core for every front door: gather, decide, then hand unassessed images to
// the Assessor and record events. Dry runs have no side effects.
type Admitter struct {
	Gatherer *Gatherer
	Assessor Assessor
	Events   EventRecorder
	Log      logr.Logger

	ready atomic.Bool
}

// SetReady marks the caches synced.
func (a *Admitter) SetReady() { a.ready.Store(true) }

// Ready reports whether the caches have synced.
func (a *Admitter) Ready() bool { return a.ready.Load() }

// Admit decides a request.
func (a *Admitter) Admit(ctx context.Context, req Request, dryRun bool) (Decision, error) {
	if !a.Ready() {
		return Decision{}, ErrNotReady
	}
	in, err := a.Gatherer.Gather(ctx, req)
	if err != nil {
		return Decision{}, err
	}
	d := Decide(in)
	if dryRun {
		return d, nil
	}
	if a.Assessor != nil {
		for _, x := range d.Assess {
			a.Assessor.Assess(ctx, req.Object.Namespace, x.Repository, x.Digest, x.Tag, req.PullSecrets)
		}
	}
	if a.Events != nil && len(d.Events) > 0 {
		regarding := regardingOf(req.Object)
		for _, e := range d.Events {
			a.Events.Eventf(regarding, nil, e.Type, e.Reason, "Admit", "%s", e.Message)
		}
	}
	if !d.Allowed {
		a.Log.V(1).Info("denied", "object", req.Object.String(), "reason", d.Message)
	}
	return d, nil
}

// regardingOf is the object an admission Event is about: the object itself, or its namespace
// when it has no name yet (a Pod with generateName).
func regardingOf(o ObjectRef) *corev1.ObjectReference {
	if o.Name == "" || strings.HasSuffix(o.Name, "*") {
		// in the namespace itself, so the namespace's users see it
		return &corev1.ObjectReference{APIVersion: "v1", Kind: "Namespace", Namespace: o.Namespace, Name: o.Namespace}
	}
	apiVersion := "v1"
	switch o.Kind {
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet":
		apiVersion = "apps/v1"
	case "Job", "CronJob":
		apiVersion = "batch/v1"
	}
	return &corev1.ObjectReference{APIVersion: apiVersion, Kind: o.Kind, Namespace: o.Namespace, Name: o.Name}
}
