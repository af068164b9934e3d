package controllers

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// StallingError means progress needs a change by a person (a missing Secret, a bad schedule, a
// key that does not parse, a registry refusing the credentials): reconciling again will not
// help, so the object is marked Stalled and comes back when a watched object changes.
type StallingError struct {
	// Reason is a CamelCase condition reason.
	Reason string
	// Message explains what to fix. It never contains secret values.
	Message string
	// Err is the cause, for errors.Is/As.
	Err error
}

// Error implements error.
func (e *StallingError) Error() string { return e.Message }

// Unwrap returns the cause.
func (e *StallingError) Unwrap() error { return e.Err }

// WaitingError means a dependency is not ready (no vulnerability DB is loaded yet, or it is too
// old): the object is requeued after RequeueAfter without counting as a failure, or, when
// RequeueAfter is zero, when the dependency announces a change.
type WaitingError struct {
	Reason       string
	Message      string
	RequeueAfter time.Duration
	// Err is the cause, for errors.Is/As.
	Err error
}

// Error implements error.
func (e *WaitingError) Error() string { return e.Message }

// Unwrap returns the cause.
func (e *WaitingError) Unwrap() error { return e.Err }

// stalling builds a StallingError; a %w verb in format makes its operand the cause.
func stalling(reason, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &StallingError{Reason: reason, Message: err.Error(), Err: errors.Unwrap(err)}
}

// waiting builds a WaitingError; a %w verb in format makes its operand the cause.
func waiting(after time.Duration, reason, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &WaitingError{Reason: reason, Message: err.Error(), RequeueAfter: after, Err: errors.Unwrap(err)}
}

// errorKind classifies an error for a work queue, in order of precedence: an error that is
// retried wins over one that waits, which wins over one that needs a person.
type errorKind int

const (
	errNone errorKind = iota
	errStalling
	errWaiting
	errGeneric
)

// kindOf classifies err; for joined errors (errors.Join) the most urgent member decides.
func kindOf(err error) errorKind {
	if err == nil {
		return errNone
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		k := errNone
		for _, e := range j.Unwrap() {
			k = max(k, kindOf(e))
		}
		return k
	}
	var s *StallingError
	if errors.As(err, &s) {
		return errStalling
	}
	var w *WaitingError
	if errors.As(err, &w) {
		return errWaiting
	}
	return errGeneric
}

// requeueAfter is the shortest non-zero delay of the WaitingErrors in err.
func requeueAfter(err error) time.Duration {
	var d time.Duration
	walk(err, func(e error) {
		var w *WaitingError
		if errors.As(e, &w) && w.RequeueAfter > 0 && (d == 0 || w.RequeueAfter < d) {
			d = w.RequeueAfter
		}
	})
	return d
}

// walk calls fn on every leaf of a tree of joined errors.
func walk(err error, fn func(error)) {
	if err == nil {
		return
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			walk(e, fn)
		}
		return
	}
	fn(err)
}

// messagesOf joins the messages of the leaves of err that have kind k.
func messagesOf(err error, k errorKind) string {
	var parts []string
	walk(err, func(e error) {
		if kindOf(e) == k {
			parts = append(parts, e.Error())
		}
	})
	return strings.Join(parts, "; ")
}

// firstStalling is the first StallingError among the leaves of err.
func firstStalling(err error) *StallingError {
	var out *StallingError
	walk(err, func(e error) {
		var s *StallingError
		if out == nil && errors.As(e, &s) {
			out = s
		}
	})
	return out
}
