package registry

import (
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1", time.Second, true},
		{" 120 ", 2 * time.Minute, true},
		{"0", 0, true},
		{"-5", 0, false},
		{"Sat, 01 Mar 2025 12:00:30 GMT", 30 * time.Second, true},
		{"Saturday, 01-Mar-25 12:01:00 GMT", time.Minute, true}, // RFC 850
		{"Sat, 01 Mar 2025 11:00:00 GMT", 0, true},              // in the past: retry now
		{"soon", 0, false},
		{"", 0, false},
	}
	for _, tc := range cases {
		got, ok := parseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseRetryAfter(%q) = %s, %v; want %s, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestBackoffGrowsWithJitterWithinBounds(t *testing.T) {
	minD, maxD := 100*time.Millisecond, time.Second
	for attempt, base := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second} {
		for i := 0; i < 50; i++ {
			d := backoff(attempt, minD, maxD)
			if d < base/2 || d > base {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s]", attempt, d, base/2, base)
			}
		}
	}
}

func TestOptionsDefaults(t *testing.T) {
	o := Options{}.withDefaults()
	if o.RequestsPerSecond != DefaultRequestsPerSecond || o.Burst != 40 || o.MaxConcurrentPerRegistry != DefaultMaxConcurrentPerRegistry ||
		o.MaxRetries != DefaultMaxRetries || o.MinBackoff != DefaultMinBackoff || o.MaxBackoff != DefaultMaxBackoff ||
		o.Timeout != DefaultTimeout || o.UserAgent != DefaultUserAgent || o.Keychain == nil {
		t.Errorf("defaults = %+v", o)
	}
	o = Options{MaxRetries: -1, Timeout: -1, RequestsPerSecond: -1, MaxConcurrentPerRegistry: -1}.withDefaults()
	if o.MaxRetries != 0 || o.Timeout != 0 || o.RequestsPerSecond != -1 || o.MaxConcurrentPerRegistry != -1 {
		t.Errorf("negative values must switch limits off, got %+v", o)
	}
}
