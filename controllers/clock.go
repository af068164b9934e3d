package controllers

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Clock is where the controllers read the time. Every schedule decision (cron ticks, grace
// periods, timestamps written to reports) goes through it so tests can move time forward
// instead of sleeping.
type Clock interface {
	Now() time.Time
}

// RealClock is the wall clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// Scheduler runs callbacks once the Clock reaches their time. It polls the clock at a short
// real-time interval rather than arming timers: a fake clock moved forward by a test is then
// noticed within one interval, and the production cost is one map scan per interval.
type Scheduler struct {
	clock    Clock
	interval time.Duration

	mu   sync.Mutex
	jobs map[string]scheduledJob
	wake chan struct{}
}

type scheduledJob struct {
	at time.Time
	fn func()
}

// NewScheduler returns a Scheduler polling clock every interval (1s when zero).
func NewScheduler(clock Clock, interval time.Duration) *Scheduler {
	if interval <= 0 {
		interval = time.Second
	}
	return &Scheduler{clock: clock, interval: interval, jobs: map[string]scheduledJob{}, wake: make(chan struct{}, 1)}
}

// Set (re)schedules the job key to run fn at at, replacing any earlier entry for key.
func (s *Scheduler) Set(key string, at time.Time, fn func()) {
	s.mu.Lock()
	s.jobs[key] = scheduledJob{at: at, fn: fn}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Remove cancels the job key.
func (s *Scheduler) Remove(key string) {
	s.mu.Lock()
	delete(s.jobs, key)
	s.mu.Unlock()
}

// Next reports when key is scheduled, and whether it is.
func (s *Scheduler) Next(key string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[key]
	return j.at, ok
}

// RunDue runs, in time order, every job whose time has come and removes it; a job that should
// repeat schedules itself again from its callback. It returns the keys it ran.
func (s *Scheduler) RunDue() []string {
	now := s.clock.Now()
	s.mu.Lock()
	type due struct {
		key string
		job scheduledJob
	}
	var run []due
	for k, j := range s.jobs {
		if !j.at.After(now) {
			run = append(run, due{k, j})
			delete(s.jobs, k)
		}
	}
	s.mu.Unlock()
	sort.Slice(run, func(i, j int) bool {
		if !run[i].job.at.Equal(run[j].job.at) {
			return run[i].job.at.Before(run[j].job.at)
		}
		return run[i].key < run[j].key
	})
	keys := make([]string, 0, len(run))
	for _, d := range run {
		d.job.fn()
		keys = append(keys, d.key)
	}
	return keys
}

// Start polls until ctx ends. It implements manager.Runnable.
func (s *Scheduler) Start(ctx context.Context) error {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		s.RunDue()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.wake:
		}
	}
}
