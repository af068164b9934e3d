package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"

	"github.com/imagetrust/imagetrust/scanner/registry/registrytest"
	"github.com/imagetrust/imagetrust/scanner/verify/signtest"
	"github.com/imagetrust/imagetrust/scanner/vulndb/dbtest"
)

// TestScanCommand runs `imagetrust scan` in-process against an image in a local registry, as a
// CI job would, and checks the documented JSON output and the exit status.
func TestScanCommand(t *testing.T) {
	ctx := context.Background()
	reg := registrytest.New(t)
	dir := t.TempDir()
	archive, err := dbtest.Archive(filepath.Join(dir, "build"), time.Now().Add(-time.Hour), []dbtest.Vuln{
		{ID: "CVE-2026-1000", Severity: "Critical", Ecosystem: dbtest.EcosystemDeb, Package: "openssl",
			Constraint: "< 3.0.15-1~deb12u1", FixedVersion: "3.0.15-1~deb12u1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	key, err := signtest.NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "cosign.pub")
	if err := os.WriteFile(keyFile, key.PublicPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	ref, err := reg.Push(ctx, reg.Repo("team/app:v1"), registrytest.DebianImage([]registrytest.Pkg{{Name: "openssl", Version: "3.0.11-1~deb12u2"}}))
	if err != nil {
		t.Fatal(err)
	}
	if err := signtest.SignImage(ctx, ref, key, ociremote.WithRemoteOptions(reg.RemoteOptions(ctx)...)); err != nil {
		t.Fatal(err)
	}
	dbDir := filepath.Join(dir, "db")
	var out bytes.Buffer
	if err := runDB([]string{"import", archive, "--db-dir", dbDir}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "imported: schema v6") {
		t.Fatalf("db import printed %q", out.String())
	}
	out.Reset()
	if err := runDB([]string{"status", "--db-dir", dbDir}, &out); err != nil || !strings.Contains(out.String(), "schema:") {
		t.Fatalf("db status: %v %q", err, out.String())
	}

	args := func(extra ...string) []string {
		return append([]string{reg.Repo("team/app:v1"), "--db-dir", dbDir, "--cache-dir", filepath.Join(dir, "sbom"),
			"--key", keyFile, "--insecure-ignore-tlog"}, extra...)
	}
	base := args("-o", "json")

	// Signed, scanned, no gate: Trusted, exit 0.
	out.Reset()
	if err := runScan(base, &out); err != nil {
		t.Fatalf("scan: %v\n%s", err, out.String())
	}
	var rep ScanReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("json output: %v\n%s", err, out.String())
	}
	if rep.APIVersion != ScanReportAPIVersion || rep.Verdict != "Trusted" || len(rep.Results) != 1 {
		t.Fatalf("report %+v", rep)
	}
	r := rep.Results[0]
	if r.Digest != ref.DigestStr() || r.Signature.State != "Verified" || r.Signature.Signers[0].KeyFingerprint != key.Fingerprint() ||
		r.SBOM.Source != "Generated" || len(r.Findings) != 1 || r.Findings[0].ID != "CVE-2026-1000" || r.Summary.Critical != 1 {
		t.Fatalf("result %+v", r)
	}

	// The critical gate makes it Untrusted: exit status 2, as a CI gate needs.
	out.Reset()
	err = runScan(append(base, "--fail-on", "critical"), &out)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 2 {
		t.Fatalf("want exit 2, got %v", err)
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || rep.Verdict != "Untrusted" || rep.Results[0].Failures[0].Check != "vulnerabilities" {
		t.Fatalf("gate report %+v %v", rep, err)
	}

	// A wrong key: Invalid signature, Untrusted.
	other, _ := signtest.NewKeyPair()
	otherFile := filepath.Join(dir, "other.pub")
	if err := os.WriteFile(otherFile, other.PublicPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	wrongKey := []string{reg.Repo("team/app:v1"), "--db-dir", dbDir, "--key", otherFile, "--insecure-ignore-tlog", "-o", "json"}
	if err := runScan(wrongKey, &out); !errors.As(err, &ee) || ee.code != 2 {
		t.Fatalf("wrong key: want exit 2, got %v", err)
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || rep.Results[0].Signature.State != "Invalid" {
		t.Fatalf("wrong key report %+v %v", rep, err)
	}

	// Table and SARIF outputs render the same finding.
	for _, format := range []string{"table", "sarif"} {
		out.Reset()
		if err := runScan(args("-o", format), &out); err != nil {
			t.Fatalf("-o %s: %v", format, err)
		}
		if !strings.Contains(out.String(), "CVE-2026-1000") {
			t.Fatalf("-o %s lacks the finding:\n%s", format, out.String())
		}
	}

	// Bad usage is a usage error, not a crash.
	if err := runScan([]string{"--db-dir", dbDir}, &out); !errors.As(err, &ee) || ee.code != 64 {
		t.Fatalf("no image: %v", err)
	}
	// A DB past --db-max-age is never matched against: the result says why, and a gate on
	// vulnerabilities cannot pass (Unknown, exit 3 — neither a silent Trusted nor a pass).
	out.Reset()
	if err := runScan(args("-o", "json", "--db-max-age", "1m", "--fail-on", "critical"), &out); !errors.As(err, &ee) || ee.code != 3 {
		t.Fatalf("stale DB: %v, want exit 3", err)
	}
	var stale ScanReport
	if err := json.Unmarshal(out.Bytes(), &stale); err != nil {
		t.Fatal(err)
	}
	if r := stale.Results[0]; r.Scanned || !strings.Contains(r.ScanReason, "stale") || stale.Verdict != "Unknown" {
		t.Fatalf("stale DB: scanned=%v reason %q verdict %s", r.Scanned, r.ScanReason, stale.Verdict)
	}
}
