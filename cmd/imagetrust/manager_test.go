package main

import (
	"errors"
	"io"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/imagetrust/imagetrust/internal/kustomize"
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
		{[]string{"--admission", "webhook,bouncer", "--admission-namespace", "x"}, `unknown door "bouncer"`},
		{[]string{"--admission", "webhook"}, "--admission-namespace (or $POD_NAMESPACE) is required"},
		{[]string{"--admission", "gatekeeper", "--admission-namespace", "x", "--admission-cert-host", "h"}, "needs GatekeeperClientCAFile"},
		{[]string{"--admission", "webhook", "--admission-namespace", "x"}, "self-managed certificates need CertOptions.Hosts"},
		{[]string{"--admission", "webhook", "--admission-namespace", "x", "--admission-cert-mode", "files"}, "CertOptions.Dir is required"},
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

// TestShippedAdmissionArgsAreValidFlags: the manager arguments the admission overlays install
// parse and validate, and turn on the doors they mean to.
func TestShippedAdmissionArgsAreValidFlags(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "imagetrust-system")
	for overlay, doors := range map[string][3]bool{
		"config/overlays/admission":              {true, true, false},
		"config/overlays/admission-cert-manager": {true, true, false},
		"config/overlays/admission-gatekeeper":   {true, true, true},
	} {
		objs, err := kustomize.BuildObjects(overlay)
		if err != nil {
			t.Fatal(err)
		}
		var args []string
		for _, u := range objs {
			if u.GetKind() != "Deployment" {
				continue
			}
			cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
			for _, a := range cs[0].(map[string]any)["args"].([]any) {
				args = append(args, a.(string))
			}
		}
		if len(args) == 0 || args[0] != "manager" {
			t.Fatalf("%s: manager args %v", overlay, args)
		}
		var f managerFlags
		if err := newManagerFlagSet(&f).Parse(args[1:]); err != nil {
			t.Fatalf("%s: %v", overlay, err)
		}
		if err := f.validate(); err != nil {
			t.Fatalf("%s: %v", overlay, err)
		}
		o, err := f.admission.Options()
		if err != nil {
			t.Fatal(err)
		}
		if got := [3]bool{o.Webhook, o.ImagePolicy, o.Gatekeeper}; got != doors || o.ManagerNamespace != "imagetrust-system" {
			t.Errorf("%s: doors %v namespace %q, want %v", overlay, got, o.ManagerNamespace, doors)
		}
	}
}
