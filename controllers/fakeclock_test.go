package controllers

import (
	"sync"
	"time"
)

// FakeClock is a Clock tests move by hand.
type FakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
