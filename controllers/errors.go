package controllers

import (
	"errors"
	"fmt"
	"time"
)

// StallingError means progress needs a change by a person (a missing Secret, a bad schedule, a
// key that does not parse): reconciling again will not help, so nothing is requeued and the
// object is marked Stalled until a watched object changes.
type StallingError struct {
	// Reason is a CamelCase condition reason.
	Reason string
	// Message explains what to fix. It never contains secret values.
	Message string
}

// Error implements error.
func (e *StallingError) Error() string { return e.Message }

// WaitingError means a dependency is not ready yet (the vulnerability DB is still loading):
// the object is requeued after RequeueAfter without counting as a failure.
type WaitingError struct {
	Reason       string
	Message      string
	RequeueAfter time.Duration
}

// Error implements error.
func (e *WaitingError) Error() string { return e.Message }

func stalling(reason, format string, args ...any) error {
	return &StallingError{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

func waiting(after time.Duration, reason, format string, args ...any) error {
	return &WaitingError{Reason: reason, Message: fmt.Sprintf(format, args...), RequeueAfter: after}
}

// errorKind classifies an error for the work queue: stalling (no retry), waiting (fixed
// delay), generic (exponential backoff).
type errorKind int

const (
	errNone errorKind = iota
	errStalling
	errWaiting
	errGeneric
)

func kindOf(err error) errorKind {
	if err == nil {
		return errNone
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
