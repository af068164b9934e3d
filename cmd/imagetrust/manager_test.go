package main

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// TestManagerFlagValidation: bad flags fail fast with exit status 64 and a message naming the
// flag, before any connection to a cluster is attempted.
func TestManagerFlagValidation(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--concurrency", "0"}, "--concurrency must be at least 1"},
		{[]string{"--max-findings", "101"}, "--max-findings must be between 1 and 100"},
		{[]string{"--report-grace-period", "0s"}, "--report-grace-period must be positive"},
		{[]string{"--db-update-schedule", "every tuesday"}, "--db-update-schedule: "},
		{[]string{"--db-update-url", "https://example.com/latest.json", "--db-archive", "/db.tar.gz"}, "alternatives"},
		{[]string{"--no-such-flag"}, "unknown flag --no-such-flag"},
		{[]string{"extra"}, `takes no arguments, got ["extra"]`},
	}
	for _, tt := range tests {
		err := runManager(tt.args, io.Discard)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != 64 || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("runManager(%q) = %v, want exit 64 with %q", tt.args, err, tt.want)
		}
	}
}

// TestManagerFlagDefaults: the documented defaults.
func TestManagerFlagDefaults(t *testing.T) {
	var f managerFlags
	fs := newManagerFlagSet(&f)
	if err := fs.Parse([]string{"--insecure-registry", "a:5000", "--insecure-registry", "b"}); err != nil {
		t.Fatal(err)
	}
	if f.concurrency != 2 || f.maxFindings != 50 || f.reportGrace.String() != "1h0m0s" || f.dbUpdateSchedule != "0 */6 * * *" ||
		f.metricsAddr != ":8080" || f.probeAddr != ":8081" || f.leaderElect || strings.Join(f.insecure, ",") != "a:5000,b" {
		t.Fatalf("defaults: %+v", f)
	}
	if err := f.validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
}
