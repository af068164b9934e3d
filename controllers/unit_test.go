package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner"
	"github.com/imagetrust/imagetrust/scanner/policy"
	"github.com/imagetrust/imagetrust/scanner/sbom"
	"github.com/imagetrust/imagetrust/scanner/verify"
	"github.com/imagetrust/imagetrust/scanner/vulndb"
)

const (
	hexA = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	hexB = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
)

func TestParseImageID(t *testing.T) {
	tests := []struct {
		name, imageID, spec string
		repo, digest        string
		ok                  bool
	}{
		{"docker-pullable", "docker-pullable://nginx@sha256:" + hexA, "nginx:1.25", "index.docker.io/library/nginx", "sha256:" + hexA, true},
		{"containerd repo digest", "registry.example.com:5000/team/app@sha256:" + hexA, "registry.example.com:5000/team/app:v1", "registry.example.com:5000/team/app", "sha256:" + hexA, true},
		{"docker.io spelled out", "docker.io/library/busybox@sha256:" + hexB, "busybox", "index.docker.io/library/busybox", "sha256:" + hexB, true},
		{"bare digest takes the spec repo", "sha256:" + hexA, "ghcr.io/org/app:1.0", "ghcr.io/org/app", "sha256:" + hexA, true},
		{"bare digest with pinned spec", "sha256:" + hexA, "ghcr.io/org/app@sha256:" + hexB, "ghcr.io/org/app", "sha256:" + hexA, true},
		{"docker local image id is not a manifest digest", "docker://sha256:" + hexA, "app:dev", "", "", false},
		{"empty while pulling", "", "nginx", "", "", false},
		{"short digest", "nginx@sha256:abc", "nginx", "", "", false},
		{"uppercase hex rejected", "nginx@sha256:" + strings.ToUpper(hexA), "nginx", "", "", false},
		{"bare digest without spec", "sha256:" + hexA, "", "", "", false},
		{"other algorithm", "nginx@sha512:" + hexA + hexA, "nginx", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo, digest, ok := parseImageID(tt.imageID, tt.spec)
			if repo != tt.repo || digest != tt.digest || ok != tt.ok {
				t.Fatalf("parseImageID(%q, %q) = (%q, %q, %v), want (%q, %q, %v)", tt.imageID, tt.spec, repo, digest, ok, tt.repo, tt.digest, tt.ok)
			}
		})
	}
}

func TestSpecTagAndDigest(t *testing.T) {
	tests := []struct{ ref, tag, digest string }{
		{"nginx", "latest", ""},
		{"nginx:1.25", "1.25", ""},
		{"registry:5000/app:v2", "v2", ""},
		{"registry:5000/app", "latest", ""},
		{"app@sha256:" + hexA, "", "sha256:" + hexA},
		{"app:v1@sha256:" + hexA, "v1", "sha256:" + hexA},
		{"registry:5000/app@sha256:" + hexA, "", "sha256:" + hexA},
		{"registry:5000/app:v2@sha256:" + hexA, "v2", "sha256:" + hexA},
	}
	for _, tt := range tests {
		if got := specTag(tt.ref); got != tt.tag {
			t.Errorf("specTag(%q) = %q, want %q", tt.ref, got, tt.tag)
		}
		if got := specDigest(tt.ref); got != tt.digest {
			t.Errorf("specDigest(%q) = %q, want %q", tt.ref, got, tt.digest)
		}
	}
}

func ctrlRef(apiVersion, kind, name string) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: types.UID("uid-" + name), Controller: ptr.To(true)}
}

func TestResolveOwner(t *testing.T) {
	objects := map[string]*metav1.ObjectMeta{
		"ReplicaSet/web-5d9f":   {Name: "web-5d9f", OwnerReferences: []metav1.OwnerReference{ctrlRef("apps/v1", "Deployment", "web")}},
		"ReplicaSet/orphan-rs":  {Name: "orphan-rs"},
		"ReplicaSet/rollout-rs": {Name: "rollout-rs", OwnerReferences: []metav1.OwnerReference{ctrlRef("argoproj.io/v1alpha1", "Rollout", "canary")}},
		"Job/backup-28123":      {Name: "backup-28123", OwnerReferences: []metav1.OwnerReference{ctrlRef("batch/v1", "CronJob", "backup")}},
		"Job/once":              {Name: "once"},
	}
	var lookups []string
	lookup := func(_ context.Context, apiVersion, kind, ns, name string) (*metav1.ObjectMeta, error) {
		lookups = append(lookups, kind+"/"+name)
		if kind == "ReplicaSet" && name == "broken" {
			return nil, errors.New("cache unavailable")
		}
		if m, ok := objects[kind+"/"+name]; ok {
			return m, nil
		}
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: strings.ToLower(kind) + "s"}, name)
	}
	tests := []struct {
		name    string
		owners  []metav1.OwnerReference
		want    Workload
		lookups []string
		wantErr string
	}{
		{"bare pod", nil, Workload{"v1", "Pod", "p", "pod-uid"}, nil, ""},
		{"non-controller owner is ignored", []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: "n1"}}, Workload{"v1", "Pod", "p", "pod-uid"}, nil, ""},
		{"deployment via replicaset", []metav1.OwnerReference{ctrlRef("apps/v1", "ReplicaSet", "web-5d9f")}, Workload{"apps/v1", "Deployment", "web", "uid-web"}, []string{"ReplicaSet/web-5d9f"}, ""},
		{"replicaset without owner", []metav1.OwnerReference{ctrlRef("apps/v1", "ReplicaSet", "orphan-rs")}, Workload{"apps/v1", "ReplicaSet", "orphan-rs", "uid-orphan-rs"}, []string{"ReplicaSet/orphan-rs"}, ""},
		{"replicaset owned by a custom controller", []metav1.OwnerReference{ctrlRef("apps/v1", "ReplicaSet", "rollout-rs")}, Workload{"argoproj.io/v1alpha1", "Rollout", "canary", "uid-canary"}, []string{"ReplicaSet/rollout-rs"}, ""},
		{"replicaset already deleted", []metav1.OwnerReference{ctrlRef("apps/v1", "ReplicaSet", "gone")}, Workload{"apps/v1", "ReplicaSet", "gone", "uid-gone"}, []string{"ReplicaSet/gone"}, ""},
		{"cronjob via job", []metav1.OwnerReference{ctrlRef("batch/v1", "Job", "backup-28123")}, Workload{"batch/v1", "CronJob", "backup", "uid-backup"}, []string{"Job/backup-28123"}, ""},
		{"plain job", []metav1.OwnerReference{ctrlRef("batch/v1", "Job", "once")}, Workload{"batch/v1", "Job", "once", "uid-once"}, []string{"Job/once"}, ""},
		{"statefulset directly", []metav1.OwnerReference{ctrlRef("apps/v1", "StatefulSet", "db")}, Workload{"apps/v1", "StatefulSet", "db", "uid-db"}, nil, ""},
		{"daemonset directly", []metav1.OwnerReference{ctrlRef("apps/v1", "DaemonSet", "agent")}, Workload{"apps/v1", "DaemonSet", "agent", "uid-agent"}, nil, ""},
		{"a ReplicaSet kind of another group is not looked up", []metav1.OwnerReference{ctrlRef("example.com/v1", "ReplicaSet", "x")}, Workload{"example.com/v1", "ReplicaSet", "x", "uid-x"}, nil, ""},
		{"lookup failure is returned", []metav1.OwnerReference{ctrlRef("apps/v1", "ReplicaSet", "broken")}, Workload{"apps/v1", "ReplicaSet", "broken", "uid-broken"}, []string{"ReplicaSet/broken"}, "cache unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lookups = nil
			pod := &metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "pod-uid", OwnerReferences: tt.owners}
			got, err := resolveOwner(context.Background(), pod, lookup)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if got != tt.want {
				t.Fatalf("owner = %+v, want %+v", got, tt.want)
			}
			if strings.Join(lookups, ",") != strings.Join(tt.lookups, ",") {
				t.Fatalf("lookups = %v, want %v", lookups, tt.lookups)
			}
		})
	}
}

func TestReportName(t *testing.T) {
	tests := []struct {
		repo, digest string
		extra        int
		want         string
	}{
		{"index.docker.io/library/nginx", "sha256:" + hexA, 0, "nginx-0123456789ab"},
		{"registry.example.com/team/My_App.v2", "sha256:" + hexA, 0, "my-app-v2-0123456789ab"},
		{"127.0.0.1:5000/app", "sha256:" + hexB, 0, "app-fedcba987654"},
		{"r/" + strings.Repeat("x", 80), "sha256:" + hexA, 0, strings.Repeat("x", 50) + "-0123456789ab"},
		{"r/___", "sha256:" + hexA, 0, "image-0123456789ab"},
		{"r/app", "sha256:" + hexA, 4, "app-0123456789abcdef"},
		{"r/app", "sha256:" + hexA, 100, "app-" + hexA},
		{"r/-lead-and-trail-", "sha256:" + hexA, 0, "lead-and-trail-0123456789ab"},
	}
	for _, tt := range tests {
		got := reportName(tt.repo, tt.digest, tt.extra)
		if got != tt.want {
			t.Errorf("reportName(%q, extra %d) = %q, want %q", tt.repo, tt.extra, got, tt.want)
		}
		if errs := validation.IsDNS1123Subdomain(got); len(errs) > 0 {
			t.Errorf("reportName(%q) = %q is not a DNS subdomain: %v", tt.repo, got, errs)
		}
	}
	if got := shortDigest("sha256:" + hexA); got != "0123456789ab" {
		t.Errorf("shortDigest = %q", got)
	}
}

func baseObservation() observation {
	return observation{
		SignatureState: securityv1alpha1.SignatureVerified, SBOMSource: securityv1alpha1.SBOMAttested,
		Scanned: true, Verdict: securityv1alpha1.VerdictTrusted,
	}
}

func condMap(conds []metav1.Condition) map[string]string {
	out := map[string]string{}
	for _, c := range conds {
		out[c.Type] = string(c.Status) + "/" + c.Reason
	}
	return out
}

func TestReportConditions(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name    string
		mutate  func(*observation)
		want    map[string]string
		message map[string]string
	}{
		{"all good", func(*observation) {}, map[string]string{
			"Ready": "True/Succeeded", "SignatureVerified": "True/Verified", "SBOMAvailable": "True/Attested", "Scanned": "True/Matched",
		}, map[string]string{"Ready": "verdict: Trusted"}},
		{"not required signature is not verified", func(o *observation) {
			o.SignatureState, o.SignatureReason = securityv1alpha1.SignatureNotRequired, "no policy"
		}, map[string]string{
			"Ready": "True/Succeeded", "SignatureVerified": "False/NotRequired", "SBOMAvailable": "True/Attested", "Scanned": "True/Matched",
		}, map[string]string{"SignatureVerified": "no policy"}},
		{"unsigned image is still ready", func(o *observation) {
			o.SignatureState, o.SignatureReason, o.Verdict = securityv1alpha1.SignatureUnsigned, "no signatures found", securityv1alpha1.VerdictUntrusted
		}, map[string]string{
			"Ready": "True/Succeeded", "SignatureVerified": "False/Unsigned", "SBOMAvailable": "True/Attested", "Scanned": "True/Matched",
		}, map[string]string{"Ready": "verdict: Untrusted"}},
		{"verification error with retry", func(o *observation) {
			o.SignatureState, o.SignatureReason, o.Retrying = securityv1alpha1.SignatureError, "registry unavailable", "signature verification: registry unavailable"
		}, map[string]string{
			"Ready": "False/VerificationFailed", "Reconciling": "True/ProgressingWithRetry", "SignatureVerified": "False/Error",
			"SBOMAvailable": "True/Attested", "Scanned": "True/Matched",
		}, map[string]string{"Ready": "registry unavailable"}},
		{"db not loaded", func(o *observation) {
			o.Scanned, o.ScanProblem, o.ScanReason = false, "DBNotLoaded", "vulnerability DB not loaded yet"
		}, map[string]string{
			"Ready": "False/DBNotLoaded", "SignatureVerified": "True/Verified", "SBOMAvailable": "True/Attested", "Scanned": "False/DBNotLoaded",
		}, map[string]string{"Scanned": "vulnerability DB not loaded yet"}},
		{"no sbom", func(o *observation) {
			o.SBOMSource, o.SBOMReason, o.Scanned, o.ScanProblem, o.ScanReason = securityv1alpha1.SBOMNone, "generate: boom", false, "NoSBOM", "no SBOM: generate: boom"
		}, map[string]string{
			"Ready": "False/NoSBOM", "SignatureVerified": "True/Verified", "SBOMAvailable": "False/NoSBOM", "Scanned": "False/NoSBOM",
		}, map[string]string{"SBOMAvailable": "generate: boom"}},
		{"stalled policy wins over retry", func(o *observation) {
			o.Stalled, o.StalledReason, o.Retrying = "policy p: Secret ns/key not found", "PolicyStalled", "x"
		}, map[string]string{
			"Ready": "False/PolicyStalled", "Stalled": "True/PolicyStalled", "SignatureVerified": "True/Verified",
			"SBOMAvailable": "True/Attested", "Scanned": "True/Matched",
		}, map[string]string{"Stalled": "policy p: Secret ns/key not found"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := baseObservation()
			tt.mutate(&o)
			var conds []metav1.Condition
			setReportConditions(&conds, o, 7, now)
			got := condMap(conds)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("conditions = %v, want %v", got, tt.want)
			}
			for typ, msg := range tt.message {
				for _, c := range conds {
					if c.Type == typ && c.Message != msg {
						t.Errorf("%s message = %q, want %q", typ, c.Message, msg)
					}
				}
			}
			for _, c := range conds {
				if c.ObservedGeneration != 7 || !c.LastTransitionTime.Time.Equal(now) {
					t.Errorf("%s: generation %d time %v", c.Type, c.ObservedGeneration, c.LastTransitionTime)
				}
			}
		})
	}
}

func TestConditionTransitionTimeKeptWhileStatusStays(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var conds []metav1.Condition
	o := baseObservation()
	setReportConditions(&conds, o, 1, t0)
	o.Verdict = securityv1alpha1.VerdictUntrusted // Ready stays True, message changes
	setReportConditions(&conds, o, 1, t0.Add(time.Hour))
	for _, c := range conds {
		if !c.LastTransitionTime.Time.Equal(t0) {
			t.Errorf("%s transition time moved to %v though its status did not change", c.Type, c.LastTransitionTime)
		}
	}
	o.SignatureState = securityv1alpha1.SignatureInvalid
	setReportConditions(&conds, o, 1, t0.Add(2*time.Hour))
	for _, c := range conds {
		want := t0
		if c.Type == securityv1alpha1.ConditionSignatureVerified {
			want = t0.Add(2 * time.Hour)
		}
		if !c.LastTransitionTime.Time.Equal(want) {
			t.Errorf("%s transition time = %v, want %v", c.Type, c.LastTransitionTime, want)
		}
	}
}

func TestScanConditions(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name string
		obs  scanObservation
		prev []metav1.Condition
		want map[string]string
		msg  string
	}{
		{"success", scanObservation{Ran: true, TagsFound: 3, DigestsFound: 2}, nil, map[string]string{"Ready": "True/Succeeded"}, "3 tags, 2 digests"},
		{"success with skipped tags", scanObservation{Ran: true, TagsFound: 3, DigestsFound: 2, Skipped: []string{"r/a:1"}}, nil,
			map[string]string{"Ready": "True/Succeeded"}, "3 tags, 2 digests; 1 tags skipped (requested platform missing or tag gone): r/a:1"},
		{"missing secret stalls", scanObservation{Err: stalling("CredentialsSecretNotReady", "credentials Secret ns/creds not found")},
			[]metav1.Condition{{Type: "Reconciling", Status: "True", Reason: "x"}},
			map[string]string{"Ready": "False/CredentialsSecretNotReady", "Stalled": "True/CredentialsSecretNotReady"}, "credentials Secret ns/creds not found"},
		{"transient failure reconciles", scanObservation{Err: errors.New("GET https://user:pw@r.example/v2/?token=abc: 503")},
			[]metav1.Condition{{Type: "Stalled", Status: "True", Reason: "x"}},
			map[string]string{"Ready": "False/ListingFailed", "Reconciling": "True/ProgressingWithRetry"}, "GET https://r.example/v2/: 503"},
		{"not due keeps the last success message", scanObservation{KeepReady: true, TagsFound: 3, DigestsFound: 2},
			[]metav1.Condition{{Type: "Ready", Status: "True", Reason: "Succeeded", Message: "3 tags, 2 digests; 1 tags skipped"}},
			map[string]string{"Ready": "True/Succeeded"}, "3 tags, 2 digests; 1 tags skipped"},
		{"suspended", scanObservation{Suspended: true}, nil, map[string]string{"Ready": "True/Suspended"}, "scheduled listing is suspended; existing reports are kept"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conds := append([]metav1.Condition(nil), tt.prev...)
			setScanConditions(&conds, tt.obs, 1, now)
			if got := condMap(conds); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("conditions = %v, want %v", got, tt.want)
			}
			for _, c := range conds {
				if c.Type == "Ready" && c.Message != tt.msg {
					t.Fatalf("Ready message = %q, want %q", c.Message, tt.msg)
				}
			}
		})
	}
}

func TestPolicyConditions(t *testing.T) {
	var conds []metav1.Condition
	setPolicyConditions(&conds, &compiledPolicy{Generation: 2, Scanner: scanner.Policy{Problems: []string{"authority k: Secret ns/s not found"}}}, time.Now())
	if got := condMap(conds); fmt.Sprint(got) != fmt.Sprint(map[string]string{"Ready": "False/InvalidConfiguration", "Stalled": "True/InvalidConfiguration"}) {
		t.Fatalf("stalled policy conditions = %v", got)
	}
	if conds[1].Message != "authority k: Secret ns/s not found" {
		t.Fatalf("Stalled message = %q", conds[1].Message)
	}
	setPolicyConditions(&conds, &compiledPolicy{Generation: 3}, time.Now())
	if got := condMap(conds); fmt.Sprint(got) != fmt.Sprint(map[string]string{"Ready": "True/Succeeded"}) {
		t.Fatalf("recovered policy conditions = %v", got)
	}
}

// sampleInput is a report input for an image with the given findings.
func sampleInput(findings []vulndb.Finding) *reportInput {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	scan := &scanner.Scan{Findings: findings, Summary: scanner.Summarize(findings),
		DB: vulndb.Status{SchemaVersion: "v6.1.10", Built: at.Add(-time.Hour), Checksum: "xxh64:1"}, Packages: 40, ScannedAt: at}
	return &reportInput{
		key: reportKey{"team", "registry.example.com/team/app", "sha256:" + hexA},
		view: nsView{repo: "registry.example.com/team/app", tags: []string{"1.0", "latest"},
			workloads: []workloadView{{Workload: Workload{"apps/v1", "Deployment", "web", "u1"}, containers: []string{"app"}}}, total: 1},
		assessment: &scanner.Assessment{
			Image: scanner.Image{Repository: "registry.example.com/team/app", Digest: "sha256:" + hexA, Platform: "linux/amd64"},
			Verification: scanner.Verification{
				Signature: verify.SignatureResult{State: verify.Verified, Signers: []verify.Signer{{Authority: "p/release", KeyFingerprint: "SHA256:ab"}}},
				CheckedAt: at,
			},
			SBOM: &sbom.SBOM{Source: sbom.SourceAttested, Format: sbom.FormatSPDXJSON, Packages: 40, Digest: "sha256:" + hexB},
			Scan: scan,
		},
		// a policy with the signing authority and no requirements: Trusted
		policies:  []scanner.Policy{{Policy: policy.Policy{Name: "p", Authorities: []string{"p/release"}}, AuthorityConfigs: []verify.Authority{{Name: "p/release"}}}},
		now:       at,
		scannedAt: at,
	}
}

func manyFindings(n int) []vulndb.Finding {
	sev := []string{"Critical", "High", "Medium", "Low", "Negligible", "Unknown"}
	var out []vulndb.Finding
	for i := 0; i < n; i++ {
		f := vulndb.Finding{
			ID: fmt.Sprintf("CVE-2025-%05d", i), Package: fmt.Sprintf("libexample-component-%03d", i%120),
			Version: "1.2.3-4+deb12u1", Type: "deb", Severity: sev[i%len(sev)], Namespace: "debian:distro:debian:12",
		}
		if i%3 == 0 {
			f.FixedVersions = []string{"1.2.3-5+deb12u2"}
		}
		out = append(out, f)
	}
	return out
}

func TestContentHashIgnoresTimestamps(t *testing.T) {
	in := sampleInput(manyFindings(12))
	build := func(in *reportInput, now time.Time) (securityv1alpha1.ImageTrustReportSpec, securityv1alpha1.ImageTrustReportStatus) {
		spec := buildSpec(in)
		st := buildStatus(in, 50)
		setReportConditions(&st.Conditions, observe(in, &st), 1, now)
		return spec, st
	}
	spec, st := build(in, time.Unix(1000, 0))
	h := contentHash(spec, nil, st)

	later := sampleInput(manyFindings(12))
	later.assessment.Verification.CheckedAt = later.assessment.Verification.CheckedAt.Add(6 * time.Hour)
	later.scannedAt = later.scannedAt.Add(6 * time.Hour)
	spec2, st2 := build(later, time.Unix(99999, 0))
	st2.ObservedGeneration = 9
	if h2 := contentHash(spec2, nil, st2); h2 != h {
		t.Fatalf("timestamps changed the hash: %s vs %s", h, h2)
	}

	changes := map[string]func(*reportInput){
		"new finding":      func(in *reportInput) { in.assessment.Scan.Findings = manyFindings(13) },
		"signature state":  func(in *reportInput) { in.assessment.Verification.Signature.State = verify.Unsigned },
		"verdict":          func(in *reportInput) { in.policies[0].AllowedRegistries = []string{"other.example"} },
		"new workload":     func(in *reportInput) { in.view.total = 2 },
		"tag":              func(in *reportInput) { in.view.tags = []string{"1.0"} },
		"db built":         func(in *reportInput) { in.assessment.Scan.DB.Built = in.assessment.Scan.DB.Built.Add(time.Hour) },
		"sbom source":      func(in *reportInput) { in.assessment.SBOM.Source = sbom.SourceGenerated },
		"retrying problem": func(in *reportInput) { in.problems = errors.New("registry down") },
	}
	for name, mutate := range changes {
		in := sampleInput(manyFindings(12))
		mutate(in)
		if in.assessment.Scan != nil {
			in.assessment.Scan.Summary = scanner.Summarize(in.assessment.Scan.Findings)
		}
		s, st := build(in, time.Unix(1000, 0))
		if contentHash(s, nil, st) == h {
			t.Errorf("%s did not change the hash", name)
		}
	}
	owners := []metav1.OwnerReference{{Kind: "RegistryScan", Name: "s", UID: "u"}}
	if contentHash(spec, owners, st) == h {
		t.Error("owner references did not change the hash")
	}
}

func TestTimestampsStale(t *testing.T) {
	at := func(h int) *metav1.Time { t := metav1.NewTime(time.Date(2026, 1, 1, h, 0, 0, 0, time.UTC)); return &t }
	mk := func(checked, scanned *metav1.Time) *securityv1alpha1.ImageTrustReportStatus {
		return &securityv1alpha1.ImageTrustReportStatus{
			Signature: &securityv1alpha1.SignatureStatus{CheckedAt: checked}, Vulnerabilities: &securityv1alpha1.VulnerabilitySummary{ScannedAt: scanned},
		}
	}
	if timestampsStale(mk(at(0), at(0)), mk(at(6), at(0)), 24*time.Hour) {
		t.Error("6h lag with a 24h refresh interval must not force a write")
	}
	day := metav1.NewTime(at(0).Add(24 * time.Hour))
	if !timestampsStale(mk(at(0), at(0)), mk(at(0), &day), 24*time.Hour) {
		t.Error("scannedAt lagging by the refresh interval must force a write")
	}
	if !timestampsStale(mk(nil, at(0)), mk(at(1), at(0)), 24*time.Hour) {
		t.Error("a missing checkedAt must be written")
	}
}

func TestNotify(t *testing.T) {
	status := func(sig securityv1alpha1.SignatureState, verdict securityv1alpha1.Verdict, src securityv1alpha1.SBOMSource, ids ...string) *securityv1alpha1.ImageTrustReportStatus {
		st := &securityv1alpha1.ImageTrustReportStatus{
			Signature: &securityv1alpha1.SignatureStatus{State: sig, Reason: "reason-" + string(sig)},
			SBOM:      &securityv1alpha1.SBOMStatus{Source: src, Reason: "why"},
			Policy:    &securityv1alpha1.PolicyResult{Verdict: verdict},
		}
		if verdict == securityv1alpha1.VerdictUntrusted {
			st.Policy.FailedChecks = []securityv1alpha1.FailedCheck{{Policy: "p", Check: "signature", Message: "image is not signed"}}
		}
		for _, id := range ids {
			sev := securityv1alpha1.SeverityCritical
			if strings.HasPrefix(id, "H") {
				sev = securityv1alpha1.SeverityHigh
			}
			if strings.HasPrefix(id, "M") {
				sev = securityv1alpha1.SeverityMedium
			}
			st.TopFindings = append(st.TopFindings, securityv1alpha1.Finding{ID: id, Severity: sev})
		}
		return st
	}
	V, U, I, NR := securityv1alpha1.SignatureVerified, securityv1alpha1.SignatureUnsigned, securityv1alpha1.SignatureInvalid, securityv1alpha1.SignatureNotRequired
	T, UT, UK := securityv1alpha1.VerdictTrusted, securityv1alpha1.VerdictUntrusted, securityv1alpha1.VerdictUnknown
	A, G := securityv1alpha1.SBOMAttested, securityv1alpha1.SBOMGenerated
	many := func() []string {
		var out []string
		for i := 0; i < 12; i++ {
			out = append(out, fmt.Sprintf("CVE-%02d", i))
		}
		return out
	}
	stale := status(V, T, A)
	stale.Conditions = []metav1.Condition{{Type: "Scanned", Status: "False", Reason: "DBStale"}}

	tests := []struct {
		name     string
		old, cur *securityv1alpha1.ImageTrustReportStatus
		want     []string // type/reason: message
	}{
		{"nothing changed", status(V, T, A, "CVE-1"), status(V, T, A, "CVE-1"), nil},
		{"signature removed folds the verdict change into one warning", status(V, T, A), status(U, UT, A),
			[]string{"Warning/SignatureNotVerified: signature was Verified, now Unsigned: reason-Unsigned; verdict changed from Trusted to Untrusted: p/signature: image is not signed"}},
		{"signature invalid", status(V, UK, A), status(I, UK, A), []string{"Warning/SignatureNotVerified: signature was Verified, now Invalid: reason-Invalid"}},
		{"unsigned to invalid is no transition from verified", status(U, UT, A), status(I, UT, A), nil},
		{"not required to unsigned is not an event", status(NR, UK, A), status(U, UK, A), nil},
		{"new critical and high ids, medium ignored", status(V, T, A, "CVE-1"), status(V, T, A, "CVE-1", "CVE-2", "HIGH-1", "MED-1"),
			[]string{"Warning/NewVulnerabilities: 2 new Critical/High vulnerabilities: CVE-2, HIGH-1"}},
		{"the id list is bounded", status(V, T, A), status(V, T, A, many()...),
			[]string{"Warning/NewVulnerabilities: 12 new Critical/High vulnerabilities: CVE-00, CVE-01, CVE-02, CVE-03, CVE-04, CVE-05, CVE-06, CVE-07, CVE-08, CVE-09 and 2 more"}},
		{"fixed vulnerabilities are no event", status(V, T, A, "CVE-1", "CVE-2"), status(V, T, A, "CVE-1"), nil},
		{"verdict improves", status(V, UT, A), status(V, T, A), []string{"Normal/VerdictChanged: verdict changed from Untrusted to Trusted"}},
		{"verdict worsens without other event", status(V, T, A), status(V, UT, A),
			[]string{"Warning/VerdictChanged: verdict changed from Trusted to Untrusted: p/signature: image is not signed"}},
		{"sbom downgraded", status(V, T, A), status(V, T, G), []string{"Warning/SBOMDowngraded: SBOM source downgraded from Attested to Generated: why"}},
		{"sbom upgraded is no event", status(V, T, G), status(V, T, A), nil},
		{"db became stale", status(V, T, A), stale, []string{"Warning/VulnerabilityDBStale: vulnerability DB is older than the allowed maximum age; findings are not current"}},
		{"db still stale", stale, stale, nil},
		{"new trusted report with a critical", nil, status(V, T, A, "CVE-9"), []string{"Warning/NewVulnerabilities: 1 new Critical/High vulnerabilities: CVE-9"}},
		{"new untrusted report", nil, status(U, UT, A), []string{"Warning/Untrusted: image is Untrusted: p/signature: image is not signed"}},
		{"new clean report", nil, status(NR, UK, G), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, e := range notify(tt.old, tt.cur) {
				got = append(got, e.Type+"/"+e.Reason+": "+e.Message)
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestNotifyNeverLeaksCredentials(t *testing.T) {
	cur := &securityv1alpha1.ImageTrustReportStatus{
		Signature: &securityv1alpha1.SignatureStatus{State: securityv1alpha1.SignatureInvalid,
			Reason: "GET https://robot:s3cret@registry.example.com/v2/app/manifests/x?X-Amz-Signature=abc failed; Authorization: Bearer eyJhbGciOi"},
		Policy: &securityv1alpha1.PolicyResult{Verdict: securityv1alpha1.VerdictUnknown},
	}
	old := &securityv1alpha1.ImageTrustReportStatus{Signature: &securityv1alpha1.SignatureStatus{State: securityv1alpha1.SignatureVerified},
		Policy: &securityv1alpha1.PolicyResult{Verdict: securityv1alpha1.VerdictUnknown}}
	evs := notify(old, cur)
	if len(evs) != 1 {
		t.Fatalf("events = %+v", evs)
	}
	for _, secret := range []string{"s3cret", "robot", "X-Amz-Signature=abc", "eyJhbGciOi"} {
		if strings.Contains(evs[0].Message, secret) {
			t.Fatalf("event message leaks %q: %s", secret, evs[0].Message)
		}
	}
	if !strings.Contains(evs[0].Message, "https://registry.example.com/v2/app/manifests/x") {
		t.Fatalf("sanitised URL missing: %s", evs[0].Message)
	}
}

func TestSchedulerRunsDueJobsInOrder(t *testing.T) {
	clk := &FakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := NewScheduler(clk, time.Millisecond)
	var ran []string
	s.Set("b", clk.Now().Add(2*time.Minute), func() { ran = append(ran, "b") })
	s.Set("a", clk.Now().Add(time.Minute), func() { ran = append(ran, "a") })
	s.Set("c", clk.Now().Add(time.Hour), func() { ran = append(ran, "c") })
	if got := s.RunDue(); len(got) != 0 {
		t.Fatalf("nothing is due yet, ran %v", got)
	}
	clk.Advance(5 * time.Minute)
	s.RunDue()
	if strings.Join(ran, ",") != "a,b" {
		t.Fatalf("ran %v, want a,b", ran)
	}
	if _, ok := s.Next("c"); !ok {
		t.Fatal("c must still be scheduled")
	}
	s.Remove("c")
	clk.Advance(2 * time.Hour)
	if got := s.RunDue(); len(got) != 0 {
		t.Fatalf("removed job ran: %v", got)
	}
}

func TestTrimPod(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u", ResourceVersion: "7", Labels: map[string]string{"a": "b"},
			Annotations: map[string]string{"big": strings.Repeat("x", 10000)}, OwnerReferences: []metav1.OwnerReference{ctrlRef("apps/v1", "ReplicaSet", "rs")}},
		Spec: corev1.PodSpec{
			ServiceAccountName: "sa", ImagePullSecrets: []corev1.LocalObjectReference{{Name: "pull"}},
			Containers:          []corev1.Container{{Name: "app", Image: "app:1", Command: []string{"run"}, Env: []corev1.EnvVar{{Name: "SECRET", Value: "x"}}}},
			InitContainers:      []corev1.Container{{Name: "init", Image: "init:1"}},
			EphemeralContainers: []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "busybox"}}},
			Volumes:             []corev1.Volume{{Name: "v"}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1",
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Image: "app:1", ImageID: "app@sha256:" + hexA, RestartCount: 3}}},
	}
	out, err := trimPod(pod)
	if err != nil {
		t.Fatal(err)
	}
	p := out.(*corev1.Pod)
	if p.Annotations != nil || p.Spec.Volumes != nil || p.Status.PodIP != "" || p.Spec.Containers[0].Env != nil || p.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Fatalf("trimPod kept fields it should drop: %+v", p)
	}
	if p.ResourceVersion != "7" || p.Labels["a"] != "b" || p.Spec.ServiceAccountName != "sa" || p.Spec.ImagePullSecrets[0].Name != "pull" ||
		p.Spec.InitContainers[0].Image != "init:1" || p.Spec.EphemeralContainers[0].Image != "busybox" ||
		p.Status.ContainerStatuses[0].ImageID != "app@sha256:"+hexA || p.OwnerReferences[0].Name != "rs" {
		t.Fatalf("trimPod dropped a needed field: %+v", p)
	}
	before, _ := json.Marshal(pod)
	after, _ := json.Marshal(p)
	t.Logf("pod JSON %d bytes → %d bytes in the cache", len(before), len(after))
}

// TestReportSizeWith500Findings measures the stored size of a report for an image with 500
// findings: the top findings bound keeps it a few KiB.
func TestReportSizeWith500Findings(t *testing.T) {
	in := sampleInput(manyFindings(500))
	for i := 0; i < 20; i++ {
		in.view.workloads = append(in.view.workloads, workloadView{Workload: Workload{Kind: "Deployment", Name: fmt.Sprintf("service-%02d", i)}, containers: []string{"app", "sidecar"}})
	}
	in.view.total = len(in.view.workloads)
	rep := &securityv1alpha1.ImageTrustReport{
		TypeMeta:   metav1.TypeMeta{APIVersion: securityv1alpha1.GroupVersion.String(), Kind: "ImageTrustReport"},
		ObjectMeta: metav1.ObjectMeta{Name: reportName(in.view.repo, in.key.Digest, 0), Namespace: in.key.Namespace, Labels: map[string]string{LabelManagedBy: ManagedByValue}},
		Spec:       buildSpec(in),
		Status:     buildStatus(in, 50),
	}
	setReportConditions(&rep.Status.Conditions, observe(in, &rep.Status), 1, time.Now())
	rep.Status.ContentHash = contentHash(rep.Spec, nil, rep.Status)
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Status.TopFindings) != 50 || rep.Status.Vulnerabilities.Critical != 84 || rep.Status.TopFindings[0].Severity != securityv1alpha1.SeverityCritical {
		t.Fatalf("top findings %d, critical %d", len(rep.Status.TopFindings), rep.Status.Vulnerabilities.Critical)
	}
	if len(rep.Spec.Workloads) != securityv1alpha1.MaxReportWorkloads || rep.Spec.WorkloadCount != 21 {
		t.Fatalf("workloads %d count %d", len(rep.Spec.Workloads), rep.Spec.WorkloadCount)
	}
	t.Logf("ImageTrustReport JSON for 500 findings (50 kept, 20 workloads listed): %d bytes", len(b))
	if len(b) > 16<<10 {
		t.Fatalf("report is %d bytes, want under 16 KiB", len(b))
	}
}

func TestScanDue(t *testing.T) {
	sched, err := cron.ParseStandard("0 */6 * * *")
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) *metav1.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		mt := metav1.NewTime(tm)
		return &mt
	}
	now := at("2026-05-01T13:00:00Z").Time
	tests := []struct {
		name     string
		st       securityv1alpha1.RegistryScanStatus
		gen      int64
		due      bool
		nextWant string
	}{
		{"never ran", securityv1alpha1.RegistryScanStatus{}, 1, true, ""},
		{"ran this period", securityv1alpha1.RegistryScanStatus{ObservedGeneration: 1, LastScheduleTime: at("2026-05-01T12:00:00Z"), LastSuccessfulTime: at("2026-05-01T12:00:00Z")}, 1, false, "2026-05-01T18:00:00Z"},
		{"tick passed", securityv1alpha1.RegistryScanStatus{ObservedGeneration: 1, LastScheduleTime: at("2026-05-01T06:00:00Z"), LastSuccessfulTime: at("2026-05-01T06:00:00Z")}, 1, true, ""},
		{"down for days: one run now", securityv1alpha1.RegistryScanStatus{ObservedGeneration: 1, LastScheduleTime: at("2026-04-20T00:00:00Z"), LastSuccessfulTime: at("2026-04-20T00:00:00Z")}, 1, true, ""},
		{"last run failed", securityv1alpha1.RegistryScanStatus{ObservedGeneration: 1, LastScheduleTime: at("2026-05-01T12:30:00Z"), LastSuccessfulTime: at("2026-05-01T12:00:00Z")}, 1, true, ""},
		{"spec changed", securityv1alpha1.RegistryScanStatus{ObservedGeneration: 1, LastScheduleTime: at("2026-05-01T12:00:00Z"), LastSuccessfulTime: at("2026-05-01T12:00:00Z")}, 2, true, ""},
	}
	for _, tt := range tests {
		due, next := scanDue(&tt.st, tt.gen, sched, now)
		if due != tt.due {
			t.Errorf("%s: due = %v", tt.name, due)
		}
		if !tt.due && next.Format(time.RFC3339) != tt.nextWant {
			t.Errorf("%s: next = %v, want %s", tt.name, next, tt.nextWant)
		}
	}
	// After the catch-up run at 13:00 the next run is the next tick, not one per missed tick.
	st := securityv1alpha1.RegistryScanStatus{ObservedGeneration: 1, LastScheduleTime: at("2026-05-01T13:00:00Z"), LastSuccessfulTime: at("2026-05-01T13:00:00Z")}
	if due, next := scanDue(&st, 1, sched, now.Add(time.Minute)); due || next.Format(time.RFC3339) != "2026-05-01T18:00:00Z" {
		t.Errorf("after the catch-up run: due %v next %v", due, next)
	}
}

// Each condition setter derives its condition from the observation alone (cluster-api style):
// one table per setter, no client.
func TestConditionSetters(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	type setter func(*[]metav1.Condition, observation, int64, time.Time)
	tests := []struct {
		name   string
		set    setter
		typ    string
		mutate func(*observation)
		want   string
	}{
		{"signature verified", setSignatureCondition, "SignatureVerified", func(*observation) {}, "True/Verified"},
		{"signature invalid", setSignatureCondition, "SignatureVerified", func(o *observation) { o.SignatureState = securityv1alpha1.SignatureInvalid }, "False/Invalid"},
		{"sbom generated", setSBOMCondition, "SBOMAvailable", func(o *observation) { o.SBOMSource = securityv1alpha1.SBOMGenerated }, "True/Generated"},
		{"sbom none", setSBOMCondition, "SBOMAvailable", func(o *observation) { o.SBOMSource = "" }, "False/NoSBOM"},
		{"scanned", setScannedCondition, "Scanned", func(*observation) {}, "True/Matched"},
		{"db stale", setScannedCondition, "Scanned", func(o *observation) { o.Scanned, o.ScanProblem = false, securityv1alpha1.ReasonDBStale }, "False/DBStale"},
		{"ready", setReadiness, "Ready", func(*observation) {}, "True/Succeeded"},
		{"stalled", setReadiness, "Stalled", func(o *observation) {
			o.Stalled, o.StalledReason = "denied", securityv1alpha1.ReasonRegistryAccessDenied
		}, "True/RegistryAccessDenied"},
		{"retrying", setReadiness, "Reconciling", func(o *observation) { o.Retrying = "503" }, "True/ProgressingWithRetry"},
		{"match failed", setReadiness, "Ready", func(o *observation) { o.Scanned, o.ScanProblem = false, securityv1alpha1.ReasonMatchFailed }, "False/MatchFailed"},
	}
	for _, tt := range tests {
		o := baseObservation()
		tt.mutate(&o)
		var conds []metav1.Condition
		tt.set(&conds, o, 3, now)
		if got := condMap(conds)[tt.typ]; got != tt.want {
			t.Errorf("%s: %s = %q, want %q", tt.name, tt.typ, got, tt.want)
		}
	}
}

// A vulnerable module in two binaries is one finding of the report, with two locations.
func TestTopFindingsCountLocations(t *testing.T) {
	fs := []vulndb.Finding{{ID: "GO-2026-1", Package: "golang.org/x/net", Version: "v0.1.0", Type: "go-module", Severity: "High",
		Locations: []string{"/usr/bin/a", "/usr/bin/b"}}}
	got := topFindings(fs, 10)
	if len(got) != 1 || got[0].Locations != 2 || got[0].Severity != securityv1alpha1.SeverityHigh {
		t.Fatalf("top findings %+v", got)
	}
}

// Each policy's own verdict is in the report, with the policy generation it was computed for:
// admission decides per policy, from whichever namespace's report of the image it finds.
func TestPolicyResultsPerPolicy(t *testing.T) {
	in := sampleInput(manyFindings(3))
	strict := in.policies[0]
	strict.Name, strict.AllowedRegistries = "strict", []string{"other.example"}
	in.policies = append(in.policies, strict)
	in.generations = map[string]int64{"p": 3, "strict": 7}
	pr := buildStatus(in, 50).Policy
	want := []securityv1alpha1.PolicyVerdict{{Policy: "p", Verdict: securityv1alpha1.VerdictTrusted, ObservedGeneration: 3},
		{Policy: "strict", Verdict: securityv1alpha1.VerdictUntrusted, ObservedGeneration: 7}}
	if pr.Verdict != securityv1alpha1.VerdictUntrusted || fmt.Sprint(pr.Results) != fmt.Sprint(want) {
		t.Fatalf("verdict %s results %+v, want %+v", pr.Verdict, pr.Results, want)
	}
}

// A broken attested SBOM is warned about once, when it first appears, not on every write.
func TestNotifyBrokenAttestedSBOMOnce(t *testing.T) {
	st := func(attErr string) *securityv1alpha1.ImageTrustReportStatus {
		return &securityv1alpha1.ImageTrustReportStatus{
			Signature: &securityv1alpha1.SignatureStatus{State: securityv1alpha1.SignatureVerified},
			SBOM:      &securityv1alpha1.SBOMStatus{Source: securityv1alpha1.SBOMGenerated, AttestationError: attErr},
			Policy:    &securityv1alpha1.PolicyResult{Verdict: securityv1alpha1.VerdictTrusted},
		}
	}
	broken := "the SBOM attestation (https://spdx.dev/Document) signed by p/key could not be parsed: not an SBOM"
	count := func(evs []eventSpec) int {
		n := 0
		for _, e := range evs {
			if e.Reason == ReasonAttestedSBOMInvalid && e.Type == corev1.EventTypeWarning && e.Message == broken {
				n++
			}
		}
		return n
	}
	if n := count(notify(st(""), st(broken))); n != 1 {
		t.Fatalf("appearing: %d events", n)
	}
	if n := count(notify(st(broken), st(broken))); n != 0 {
		t.Fatalf("staying: %d events", n)
	}
	if n := count(notify(nil, st(broken))); n != 1 {
		t.Fatalf("new report: %d events", n)
	}
}
