package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"

	"github.com/imagetrust/imagetrust/scanner/registry/registrytest"
	"github.com/imagetrust/imagetrust/scanner/severity"
	"github.com/imagetrust/imagetrust/scanner/verify/signtest"
	"github.com/imagetrust/imagetrust/scanner/vulndb/dbtest"
)

// cliWorld is a local registry with three images, a DB archive, keys and policy files; the DB is
// imported into the default --db-dir (under a private XDG_CACHE_HOME), so command lines read
// exactly as a user types them.
type cliWorld struct {
	vars map[string]string // {IMG} → value, substituted into argv
	reg  *registrytest.Registry
}

const uuidVuln = "GHSA-0000-uuid-0001"

func newCLIWorld(t *testing.T) *cliWorld {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	// the go command places its build cache under XDG_CACHE_HOME too: keep the shared one for
	// the fixture binaries
	gocache, err := exec.Command("go", "env", "GOCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOCACHE", strings.TrimSpace(string(gocache)))
	t.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "xdg"))
	reg := registrytest.New(t)
	archive, err := dbtest.Archive(filepath.Join(dir, "build"), time.Now().Add(-time.Hour), []dbtest.Vuln{
		{ID: "CVE-2026-1001", Severity: "Low", Ecosystem: dbtest.EcosystemDeb, Package: "openssl",
			Constraint: "< 3.0.15-1~deb12u1", FixedVersion: "3.0.15-1~deb12u1"},
		// no severity, as many real records: only --fail-on unknown counts it
		{ID: "CVE-2026-1002", Ecosystem: dbtest.EcosystemDeb, Package: "tar"},
		{ID: uuidVuln, Ecosystem: dbtest.EcosystemGo, Package: registrytest.GoBinaryModule.Name,
			Constraint: "< 1.7.0", FixedVersion: "1.7.0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	key, err := signtest.NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	other, err := signtest.NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	w := &cliWorld{reg: reg, vars: map[string]string{
		"{H}": reg.Host(), "{A}": archive,
		"{IMG}": reg.Repo("team/app:v1"), "{UNK}": reg.Repo("team/unk:v1"), "{GO}": reg.Repo("team/gobins:v1"),
		"{K}": writeFile(t, dir, "cosign.pub", string(key.PublicPEM)), "{W}": writeFile(t, dir, "other.pub", string(other.PublicPEM)),
		"{P}":  writeFile(t, dir, "low.yaml", policyYAML("gate-low", reg.Host()+"/team/**", "Low")),
		"{PU}": writeFile(t, dir, "unknown.yaml", policyYAML("gate-unknown", reg.Host()+"/team/**", "Unknown")),
		"{PX}": writeFile(t, dir, "elsewhere.yaml", policyYAML("gate-elsewhere", "registry.example.com/**", "Low")),
	}}

	app, err := reg.Push(ctx, w.vars["{IMG}"], registrytest.DebianImage([]registrytest.Pkg{{Name: "openssl", Version: "3.0.11-1~deb12u2"}}))
	if err != nil {
		t.Fatal(err)
	}
	if err := signtest.SignImage(ctx, app, key, ociremote.WithRemoteOptions(reg.RemoteOptions(ctx)...)); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Push(ctx, w.vars["{UNK}"], registrytest.DebianImage([]registrytest.Pkg{{Name: "tar", Version: "1.34+dfsg-1.2+deb12u1"}})); err != nil {
		t.Fatal(err)
	}
	bins, err := registrytest.GoBinaries(filepath.Join(dir, "gobuild"), "api", "worker")
	if err != nil {
		t.Fatal(err)
	}
	gobins, err := mutate.AppendLayers(registrytest.DebianImage(nil), registrytest.LayerFromFiles(map[string]string{
		"usr/local/bin/api": string(bins["api"]), "opt/worker/bin/worker": string(bins["worker"]),
	}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Push(ctx, w.vars["{GO}"], gobins); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := w.run(t, "db", "import", "{A}"); code != 0 {
		t.Fatalf("db import: exit %d\n%s%s", code, out, errOut)
	}
	return w
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func policyYAML(name, images, failOn string) string {
	return fmt.Sprintf(`apiVersion: security.imagetrust.dev/v1alpha1
kind: ImageTrustPolicy
metadata: {name: %s}
spec:
  images: [%q]
  vulnerabilities: {failOnSeverity: %s}
`, name, images, failOn)
}

// run runs the command line through run() and exitCode(), as main does, with {VAR}s and
// {NEWDB} (a fresh directory for each use) substituted.
func (w *cliWorld) run(t *testing.T, argv ...string) (code int, stdout, stderr string) {
	t.Helper()
	args := make([]string, len(argv))
	for i, a := range argv {
		for k, v := range w.vars {
			a = strings.ReplaceAll(a, k, v)
		}
		if strings.Contains(a, "{NEWDB}") {
			a = strings.ReplaceAll(a, "{NEWDB}", t.TempDir())
		}
		args[i] = a
	}
	var out, errOut bytes.Buffer
	code = exitCode(run(args, &out), &errOut)
	return code, out.String(), errOut.String()
}

// check inspects a command's output.
type check func(stdout, stderr string) error

func contains(where, s string) check {
	return func(stdout, stderr string) error {
		text := stdout
		if where == "stderr" {
			text = stderr
		}
		if !strings.Contains(text, s) {
			return fmt.Errorf("%s lacks %q", where, s)
		}
		return nil
	}
}

func isJSON(stdout, _ string) error {
	var r ScanReport
	if err := json.Unmarshal([]byte(stdout), &r); err != nil || r.APIVersion != ScanReportAPIVersion {
		return fmt.Errorf("stdout is not the scan JSON (%v)", err)
	}
	return nil
}

func isSARIF(stdout, _ string) error {
	var doc struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil || doc.Version != "2.1.0" {
		return fmt.Errorf("stdout is not SARIF 2.1.0 (%v)", err)
	}
	return nil
}

// cliCase is one command line and the exit status it must have.
type cliCase struct {
	argv   string
	code   int
	checks []check
}

// cliCases are the orderings people use. {IMG} carries one Low finding and a signature by {K};
// {UNK} one finding without a severity; {W} is a key that did not sign. Every flag that changes
// the exit status is tried before and after the image, with "=value" and " value".
var cliCases = []cliCase{
	// the fail-open: flags after IMAGE were dropped once any flag came before it
	{"scan --insecure-registry {H} {IMG} --fail-on low", 2, nil},
	{"scan --fail-on low --insecure-registry {H} {IMG}", 2, nil},
	{"scan {IMG} --insecure-registry {H} --fail-on low", 2, nil},
	{"scan --insecure-registry={H} {IMG} --fail-on=low", 2, nil},
	{"scan {IMG} --fail-on LOW", 2, nil},
	{"scan {IMG} --fail-on medium", 0, []check{contains("stdout", "VERDICT          Trusted")}},
	{"scan --fail-on low -- {IMG}", 2, nil},
	{"scan {IMG} -- --fail-on low", 64, []check{contains("stderr", `unexpected ["--fail-on" "low"]`)}},
	// --key: a key that did not sign makes it Untrusted, wherever it stands
	// (the test signatures have no transparency-log entry: --insecure-ignore-tlog accepts them)
	{"scan --key {W} --insecure-ignore-tlog {IMG}", 2, []check{contains("stdout", "SIGNATURE        Invalid")}},
	{"scan {IMG} --key {W} --insecure-ignore-tlog", 2, nil},
	{"scan --insecure-registry {H} --insecure-ignore-tlog {IMG} --key={W}", 2, nil},
	{"scan {IMG} --key {K} --insecure-ignore-tlog", 0, []check{contains("stdout", "SIGNATURE        Verified")}},
	{"scan --key {K} {IMG} --insecure-ignore-tlog", 0, nil},
	{"scan --key {K} {IMG}", 2, []check{contains("stdout", "transparency-log proof is required")}},
	{"scan --insecure-ignore-tlog --key {W} {IMG} --key {K}", 0, nil}, // repeatable: the second, after IMAGE, counts too
	// -o
	{"scan -o json {IMG}", 0, []check{isJSON}},
	{"scan {IMG} -o json", 0, []check{isJSON}},
	{"scan --insecure-registry {H} {IMG} -o=sarif", 0, []check{isSARIF}},
	{"scan {IMG} --fail-on low -o json", 2, []check{isJSON}},
	// --db-archive into a fresh --db-dir: without it there is no DB (exit 1)
	{"scan --db-dir {NEWDB} --db-archive {A} {IMG} --fail-on low", 2, nil},
	{"scan --db-dir {NEWDB} {IMG} --db-archive {A} --fail-on low", 2, nil},
	{"scan {IMG} --db-dir={NEWDB} --db-archive={A}", 0, nil},
	{"scan --db-dir {NEWDB} {IMG}", 1, []check{contains("stderr", "imagetrust db import")}},
	// --policy
	{"scan --policy {P} {IMG}", 2, []check{contains("stdout", "gate-low/vulnerabilities")}},
	{"scan {IMG} --policy {P}", 2, nil},
	{"scan --insecure-registry {H} {IMG} --policy={P}", 2, nil},
	{"scan {IMG} --policy {PX} --fail-on low", 64, []check{contains("stderr", "--fail-on cannot be combined with --policy")}},
	{"scan --key {K} {IMG} --policy {P}", 64, nil},
	{"scan {IMG} --policy {PX}", 0, []check{contains("stdout", "VERDICT          Unknown")}}, // covers no image here
	// Unknown is the lowest severity: only --fail-on unknown counts findings without one
	{"scan {UNK} --fail-on low", 0, []check{contains("stdout", "1 finding has no severity; --fail-on unknown (failOnSeverity: Unknown) counts them")}},
	{"scan {UNK} --fail-on unknown", 2, nil},
	{"scan --fail-on unknown {IMG}", 2, nil},
	{"scan {UNK} --policy {PU}", 2, nil},
	{"scan {UNK} --policy {P}", 0, []check{contains("stdout", "1 finding has no severity")}},
	// a gate that could not judge the image never passes: a DB past --db-max-age is not matched
	// against, so the vulnerability gate is Unknown — exit 3, wherever the flags stand
	{"scan {IMG} --fail-on low --db-max-age 1ns", 3, []check{contains("stdout", "VERDICT  Unknown"), contains("stderr", "could not be judged")}},
	{"scan --db-max-age=1ns {IMG} --fail-on=critical", 3, nil},
	{"scan --db-max-age 1ns {IMG}", 0, []check{contains("stdout", "VERDICT  Unknown")}}, // no gate: a report only
	// usage errors: exit 64 and a message
	{"scan", 64, []check{contains("stderr", "scan: missing IMAGE")}},
	{"scan {IMG} {UNK}", 64, []check{contains("stderr", "takes 1 argument(s)")}},
	{"scan {IMG} --no-such-flag", 64, []check{contains("stderr", "unknown flag --no-such-flag")}},
	{"scan -x {IMG}", 64, []check{contains("stderr", "unknown flag -x")}},
	{"scan {IMG} --key", 64, []check{contains("stderr", "flag --key needs a value")}},
	{"scan {IMG} --fail-on bogus", 64, []check{contains("stderr", "want one of critical, high, medium, low, negligible, unknown")}},
	{"scan {IMG} --fail-on=", 64, []check{contains("stderr", "--fail-on is empty")}},
	{"scan {IMG} --policy=", 64, []check{contains("stderr", "--policy is empty")}},
	{"scan {IMG} -o yaml", 64, []check{contains("stderr", "want one of table, json, sarif")}},
	{"scan {IMG} --only-fixed=maybe", 64, []check{contains("stderr", "invalid value")}},
	{"scan {IMG} --timeout soon", 64, []check{contains("stderr", "invalid value")}},
	// help: stdout, exit 0
	{"scan --help", 0, []check{contains("stdout", "Usage: imagetrust scan IMAGE [flags]")}},
	{"scan {IMG} -h --fail-on low", 0, []check{contains("stdout", "--fail-on severity")}},
	{"help scan", 0, []check{contains("stdout", "Usage: imagetrust scan IMAGE")}},
	{"help", 0, []check{contains("stdout", "imagetrust version")}},
	{"--help", 0, []check{contains("stdout", "imagetrust scan IMAGE")}},
	{"-h", 0, nil},
	{"help nope", 64, []check{contains("stderr", `unknown command "nope"`)}},
	{"help scan extra", 64, nil},
	{"", 64, []check{contains("stderr", "a command is needed")}},
	{"nope", 64, []check{contains("stderr", `unknown command "nope"`)}},
	// version
	{"version", 0, []check{contains("stdout", "grype"), contains("stdout", "v0.121.2"), contains("stdout", "v6.1.10")}},
	{"version -o json", 0, []check{contains("stdout", `"grype": "v0.121.2"`), contains("stdout", `"cosign": "v2.6.5"`)}},
	{"version extra", 64, []check{contains("stderr", "takes no arguments")}},
	{"version --nope", 64, nil},
	{"version -o yaml", 64, nil},
	{"help version", 0, []check{contains("stdout", "Usage: imagetrust version [flags]")}},
	// db: the shared flags may stand anywhere, even before the subcommand
	{"db status", 0, []check{contains("stdout", "schema:   v6.1.10")}},
	{"db status -o json", 0, []check{contains("stdout", `"loaded": true`)}},
	{"db -o json status", 0, []check{contains("stdout", `"loaded": true`)}},
	{"db status --db-max-age 1m", 2, nil},
	{"db --db-max-age=1m status", 2, nil},
	{"db status --db-dir {NEWDB}", 1, nil},
	{"db status extra", 64, []check{contains("stderr", "takes no arguments")}},
	{"db status -o yaml", 64, nil},
	{"db import", 64, []check{contains("stderr", "db import: missing FILE")}},
	{"db import {A} {A}", 64, nil},
	{"db import {A} --db-dir {NEWDB}", 0, []check{contains("stdout", "imported: schema v6")}},
	{"db --db-dir {NEWDB} import {A}", 0, []check{contains("stdout", "imported: schema v6")}},
	{"db import --db-dir={NEWDB} {A}", 0, []check{contains("stdout", "imported: schema v6")}},
	{"db import {A}", 0, []check{contains("stdout", "already installed")}},
	{"db", 64, []check{contains("stderr", "missing subcommand")}},
	{"db nope", 64, []check{contains("stderr", `unknown subcommand "nope"`)}},
	{"db --help", 0, []check{contains("stdout", "import FILE")}},
	{"db import --help", 0, []check{contains("stdout", "Usage: imagetrust db import FILE [flags]")}},
	{"help db status", 0, []check{contains("stdout", "Usage: imagetrust db status [flags]")}},
	// manager: validated before any cluster is contacted
	{"manager extra", 64, []check{contains("stderr", "takes no arguments")}},
	{"manager --nope", 64, nil},
	{"manager --help", 0, []check{contains("stdout", "--leader-elect")}},
	{"manager --concurrency 0", 64, nil},
}

// TestCommandLines runs every command line of cliCases through the real command against a
// local registry and a real Grype DB, and checks the exit status and output.
func TestCommandLines(t *testing.T) {
	w := newCLIWorld(t)
	for _, tc := range cliCases {
		t.Run(tc.argv, func(t *testing.T) {
			code, stdout, stderr := w.run(t, strings.Fields(tc.argv)...)
			if code != tc.code {
				t.Fatalf("imagetrust %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", tc.argv, code, tc.code, stdout, stderr)
			}
			for _, c := range tc.checks {
				if err := c(stdout, stderr); err != nil {
					t.Errorf("imagetrust %s: %v\nstdout:\n%s\nstderr:\n%s", tc.argv, err, stdout, stderr)
				}
			}
		})
	}
}

// TestFailOnHelpListsAcceptedValues: the values --fail-on's help lists are exactly the ones
// it accepts, and they are the severity table's names.
func TestFailOnHelpListsAcceptedValues(t *testing.T) {
	var out bytes.Buffer
	if code := exitCode(run([]string{"scan", "--help"}, &out), &out); code != 0 {
		t.Fatalf("scan --help: exit %d", code)
	}
	m := regexp.MustCompile(`--fail-on severity\n\s+.*this severity: ([a-z, ]+)\n`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("scan --help does not list --fail-on's values:\n%s", out.String())
	}
	listed := strings.Split(m[1], ", ")
	var names []string
	for _, n := range severity.Names() {
		names = append(names, strings.ToLower(n))
	}
	if !slices.Equal(listed, names) {
		t.Errorf("--fail-on help lists %v, the severities are %v", listed, names)
	}
	var f scanFlags
	for _, v := range append(listed, "none", "info", "moderate", "critical+", "any") {
		f.failOn = v
		_, err := f.policies(context.Background())
		if accepted := err == nil; accepted != slices.Contains(listed, v) {
			t.Errorf("--fail-on %q: accepted=%v (err %v), listed=%v", v, accepted, err, slices.Contains(listed, v))
		}
	}
}

// TestScanGoBinaries: an image with two Go binaries linking the same vulnerable module has one
// finding with two locations, as grype's table has one row; the summary counts it once, and
// the gate only fails on it at --fail-on unknown, since its record has no severity.
func TestScanGoBinaries(t *testing.T) {
	w := newCLIWorld(t)
	code, stdout, stderr := w.run(t, "scan", "{GO}", "--fail-on", "low", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	var rep ScanReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	r := rep.Results[0]
	var hits []FindingJSON
	for _, f := range r.Findings {
		if f.ID == uuidVuln {
			hits = append(hits, f)
		}
	}
	if len(hits) != 1 || !slices.Equal(hits[0].Locations, []string{"/opt/worker/bin/worker", "/usr/local/bin/api"}) ||
		hits[0].Package != registrytest.GoBinaryModule.Name || hits[0].Version != registrytest.GoBinaryModule.Version {
		t.Fatalf("%s findings = %+v, want one with both binaries as locations (all: %+v)", uuidVuln, hits, r.Findings)
	}
	if r.Summary.Unknown != 1 || r.Summary.Total() != len(r.Findings) {
		t.Errorf("summary %+v over %d findings: want unknown 1 and one count per finding", r.Summary, len(r.Findings))
	}
	if len(r.Notes) != 1 || !strings.Contains(r.Notes[0], "1 finding has no severity") {
		t.Errorf("notes = %q, want the uncounted Unknown finding", r.Notes)
	}
	if rep.Version.Grype != "v0.121.2" || rep.Version.DBSchema != "v6.1.10" {
		t.Errorf("version = %+v", rep.Version)
	}

	if code, stdout, _ := w.run(t, "scan", "{GO}", "--fail-on", "unknown"); code != 2 || !strings.Contains(stdout, "(+1 more)") {
		t.Errorf("--fail-on unknown: exit %d, want 2; table:\n%s", code, stdout)
	}
	code, stdout, _ = w.run(t, "scan", "{GO}", "-o", "sarif")
	if code != 0 || !strings.Contains(stdout, `"name": "/usr/local/bin/api"`) || !strings.Contains(stdout, `"name": "/opt/worker/bin/worker"`) {
		t.Errorf("SARIF lacks the binaries' locations (exit %d):\n%s", code, stdout)
	}
}
