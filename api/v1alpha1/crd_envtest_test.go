package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	v1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	var err error
	env, err = testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping envtest:", err)
	}
	os.Exit(code)
}

const testKey = `-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE8+8JZ8b1n0yqYB2i2rQmQ0X0m8M3
f7Y4cQ0n6mQ0l6rB7G1x3t6hF0oM0pQ1v0Yx2nW0b8mE2l5s9mZb1qC0Xg==
-----END PUBLIC KEY-----`

func validPolicy(name string) *v1.ImageTrustPolicy {
	return &v1.ImageTrustPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.ImageTrustPolicySpec{
			Images:           []string{"registry.example.com/team/*"},
			RequireSignature: true,
			Authorities: []v1.Authority{
				{Name: "release-key", Key: &v1.KeyAuthority{Data: testKey}},
				{Name: "ci", Keyless: &v1.KeylessAuthority{Identities: []v1.KeylessIdentity{{
					Issuer:        "https://token.actions.githubusercontent.com",
					SubjectRegExp: `^https://github\.com/example/.+$`,
				}}}},
			},
			AllowedRegistries: []string{"registry.example.com"},
			Vulnerabilities: &v1.VulnerabilityGate{
				FailOnSeverity: v1.SeverityCritical,
				OnlyFixed:      true,
				Ignore:         []v1.VulnerabilityException{{ID: "CVE-2024-0001", Reason: "not reachable"}},
			},
		},
	}
}

// formatAuthorities is one authority per trust-root source and a Notation authority.
func formatAuthorities() []v1.Authority {
	cm := &v1.ConfigMapKeyReference{Namespace: "imagetrust-system", Name: "sigstore", Key: "trusted_root.json"}
	id := []v1.KeylessIdentity{{Issuer: "https://token.actions.githubusercontent.com", Subject: "https://github.com/example/app/.github/workflows/release.yml@refs/heads/main"}}
	return []v1.Authority{
		{Name: "public-good", Keyless: &v1.KeylessAuthority{Identities: id}, TrustRoot: &v1.TrustRoot{TUF: &v1.TUFTrustRoot{}}},
		{Name: "mirror", Keyless: &v1.KeylessAuthority{Identities: id}, TrustRoot: &v1.TrustRoot{TUF: &v1.TUFTrustRoot{
			Mirror: "https://tuf.internal.example", Root: &v1.DataSource{SecretRef: &v1.SecretKeyReference{Namespace: "imagetrust-system", Name: "tuf", Key: "root.json"}}}}},
		{Name: "private-ca", Keyless: &v1.KeylessAuthority{Identities: id}, TrustRoot: &v1.TrustRoot{TrustedRoot: &v1.DataSource{ConfigMapRef: cm}}},
		{Name: "key-with-rekor", Key: &v1.KeyAuthority{Data: testKey}, TrustRoot: &v1.TrustRoot{TrustedRoot: &v1.DataSource{Data: "{}"}}},
		{Name: "notary", Notation: &v1.NotationAuthority{
			TrustStore:        &v1.DataSource{ConfigMapRef: &v1.ConfigMapKeyReference{Namespace: "imagetrust-system", Name: "notation", Key: "ca.pem"}},
			RegistryScopes:    []string{"registry.example.com/team/app"},
			TrustedIdentities: []string{"x509.subject: C=US, ST=WA, O=Example, CN=release"},
			Revocation:        v1.NotationRevocationSkip,
		}},
		{Name: "notary-off", Notation: &v1.NotationAuthority{Level: v1.NotationSkip}},
	}
}

func validScan(name string) *v1.RegistryScan {
	return &v1.RegistryScan{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1.RegistryScanSpec{
			Repositories: []string{"registry.example.com/team/app"},
			TagFilter:    v1.TagFilter{Include: []string{`^v\d+\.\d+\.\d+$`}, Exclude: []string{`-rc`}, Semver: ">=1.0.0", Latest: 5},
			Schedule:     "*/15 * * * *",
			Platforms:    []string{"linux/amd64", "linux/arm/v7"},
		},
	}
}

const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func validReport(name string) *v1.ImageTrustReport {
	return &v1.ImageTrustReport{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1.ImageTrustReportSpec{
			Image: "registry.example.com/team/app", Digest: digest, ShortDigest: "0123456789ab",
			Platform: "linux/amd64", Tags: []string{"v1.2.3"},
			Workloads:     []v1.WorkloadReference{{Kind: "Deployment", Name: "web", Containers: []string{"app"}}},
			WorkloadCount: 1,
		},
	}
}

// withAuthority is a valid policy whose first authority is replaced.
func withAuthority(name string, a v1.Authority) *v1.ImageTrustPolicy {
	p := validPolicy(name)
	p.Spec.Authorities[0] = a
	return p
}

func TestValidObjectsAccepted(t *testing.T) {
	ctx := context.Background()
	p := validPolicy("accepted")
	if err := env.Client.Create(ctx, p); err != nil {
		t.Fatalf("valid policy rejected: %v", err)
	}
	// Defaults are applied by the API server.
	if p.Spec.Schedule != "0 */6 * * *" {
		t.Errorf("schedule default = %q, want every 6 hours", p.Spec.Schedule)
	}
	if got := fmt.Sprint(p.Spec.SBOMSources); got != "[Attestation Referrer Generate]" {
		t.Errorf("sbomSources default = %s", got)
	}
	if p.Spec.Admission != nil {
		t.Errorf("admission = %+v, want absent (Off) unless asked for", p.Spec.Admission)
	}
	enforce := validPolicy("accepted-enforce")
	enforce.Spec.Admission = &v1.AdmissionSpec{Mode: v1.AdmissionEnforce}
	if err := env.Client.Create(ctx, enforce); err != nil {
		t.Fatalf("policy with admission Enforce rejected: %v", err)
	}
	if got := enforce.Spec.Admission.OnUnknown; got != v1.UnknownDeny {
		t.Errorf("admission.onUnknown default = %q, want Deny (fail closed)", got)
	}
	off := validPolicy("accepted-admission-off")
	off.Spec.Admission = &v1.AdmissionSpec{}
	if err := env.Client.Create(ctx, off); err != nil {
		t.Fatalf("policy with empty admission rejected: %v", err)
	}
	if off.Spec.Admission.Mode != v1.AdmissionOff {
		t.Errorf("admission.mode default = %q, want Off", off.Spec.Admission.Mode)
	}
	if err := env.Client.Create(ctx, validScan("accepted")); err != nil {
		t.Fatalf("valid RegistryScan rejected: %v", err)
	}
	if err := env.Client.Create(ctx, validReport("accepted")); err != nil {
		t.Fatalf("valid report rejected: %v", err)
	}
	formats := validPolicy("accepted-formats")
	formats.Spec.Authorities = formatAuthorities()
	if err := env.Client.Create(ctx, formats); err != nil {
		t.Fatalf("policy with trust roots and a notation authority rejected: %v", err)
	}
	if got := formats.Spec.Authorities[4].Notation.Level; got != v1.NotationStrict {
		t.Errorf("notation.level default = %q, want strict", got)
	}
	signed := validReport("accepted-signers")
	if err := env.Client.Create(ctx, signed); err != nil {
		t.Fatal(err)
	}
	signed.Status.Signature = &v1.SignatureStatus{State: v1.SignatureVerified, Signers: []v1.SignerIdentity{
		{Authority: "p/release", KeyFingerprint: "SHA256:ab", Format: v1.SignatureFormatSigstoreBundle, TimeProof: "rekor v2 log index 3 (inclusion proof, checkpoint)"},
		{Authority: "p/ci", Subject: "dev@example.com", Issuer: "https://issuer.example", Format: v1.SignatureFormatCosignLegacy, TimeProof: "none: transparency log ignored"},
		{Authority: "p/notary", KeyFingerprint: "SHA256:cd", Format: v1.SignatureFormatNotation, TimeProof: "RFC 3161 timestamp countersignature",
			CertificateSubject: "CN=release,O=Example,ST=WA,C=US", CertificateFingerprint: "SHA256:ef"},
	}}
	if err := env.Client.Status().Update(ctx, signed); err != nil {
		t.Fatalf("signers with formats, time proofs and certificates rejected: %v", err)
	}
	// Descriptor schedules are valid too.
	for i, s := range []v1.CronSchedule{"@hourly", "@every 90m", "0 3 * * 1-5", "*/5 * * * *"} {
		p := validPolicy(fmt.Sprintf("sched-%d", i))
		p.Spec.Schedule = s
		if err := env.Client.Create(ctx, p); err != nil {
			t.Errorf("schedule %q rejected: %v", s, err)
		}
	}
}

func TestInvalidObjectsRejected(t *testing.T) {
	ctx := context.Background()
	many := func(n int) []v1.Finding {
		out := make([]v1.Finding, n)
		for i := range out {
			out[i] = v1.Finding{ID: fmt.Sprintf("CVE-2024-%d", i), Severity: v1.SeverityHigh, Package: "p", InstalledVersion: "1"}
		}
		return out
	}
	cases := []struct {
		name string
		obj  func() client.Object
		// status is written through the status subresource after create.
		status func(client.Object)
		want   string
	}{
		{"bad cron", func() client.Object { p := validPolicy("bad-cron"); p.Spec.Schedule = "every day"; return p }, nil, "spec.schedule"},
		{"cron with six fields", func() client.Object { p := validPolicy("bad-cron6"); p.Spec.Schedule = "0 0 * * * *"; return p }, nil, "spec.schedule"},
		{"bad regscan cron", func() client.Object { s := validScan("bad-cron"); s.Spec.Schedule = "*/x * * *"; return s }, nil, "spec.schedule"},
		{"bad include regexp", func() client.Object { s := validScan("bad-re"); s.Spec.TagFilter.Include = []string{"v(1"}; return s }, nil, "spec.tagFilter.include"},
		{"bad exclude regexp", func() client.Object { s := validScan("bad-re2"); s.Spec.TagFilter.Exclude = []string{"[a-"}; return s }, nil, "spec.tagFilter.exclude"},
		{"bad subject regexp", func() client.Object {
			p := validPolicy("bad-subject-re")
			p.Spec.Authorities[1].Keyless.Identities[0].SubjectRegExp = "(unclosed"
			return p
		}, nil, "subjectRegExp"},
		{"bad severity", func() client.Object {
			p := validPolicy("bad-sev")
			p.Spec.Vulnerabilities.FailOnSeverity = "Severe"
			return p
		}, nil, `Unsupported value: "Severe"`},
		{"empty authorities", func() client.Object { p := validPolicy("no-auth"); p.Spec.Authorities = nil; return p }, nil,
			"authorities must list at least one key, keyless identity or notation trust policy"},
		{"key and keyless in one authority", func() client.Object {
			p := validPolicy("both")
			p.Spec.Authorities[0].Keyless = p.Spec.Authorities[1].Keyless
			return p
		}, nil, "exactly one of key, keyless or notation"},
		{"key and notation in one authority", func() client.Object {
			a := formatAuthorities()[4]
			a.Key = &v1.KeyAuthority{Data: testKey}
			return withAuthority("key-and-notation", a)
		}, nil, "exactly one of key, keyless or notation"},
		{"trust root with tuf and trustedRoot", func() client.Object {
			a := formatAuthorities()[2]
			a.TrustRoot.TUF = &v1.TUFTrustRoot{}
			return withAuthority("two-sources", a)
		}, nil, "exactly one of tuf or trustedRoot"},
		{"empty trust root", func() client.Object {
			a := formatAuthorities()[2]
			a.TrustRoot = &v1.TrustRoot{}
			return withAuthority("no-source", a)
		}, nil, "exactly one of tuf or trustedRoot"},
		{"data source with two places", func() client.Object {
			a := formatAuthorities()[2]
			a.TrustRoot.TrustedRoot.Data = "{}"
			return withAuthority("two-places", a)
		}, nil, "exactly one of data, configMapRef or secretRef"},
		{"empty data source", func() client.Object {
			a := formatAuthorities()[2]
			a.TrustRoot.TrustedRoot = &v1.DataSource{}
			return withAuthority("no-place", a)
		}, nil, "exactly one of data, configMapRef or secretRef"},
		{"configMapRef without key", func() client.Object {
			a := formatAuthorities()[2]
			a.TrustRoot.TrustedRoot.ConfigMapRef.Key = ""
			return withAuthority("no-cm-key", a)
		}, nil, "configMapRef.key"},
		{"tuf mirror that is not a URL", func() client.Object {
			a := formatAuthorities()[1]
			a.TrustRoot.TUF.Mirror = "tuf.internal.example"
			return withAuthority("mirror-not-url", a)
		}, nil, "trustRoot.tuf.mirror"},
		{"notation authority with a trust root", func() client.Object {
			a := formatAuthorities()[4]
			a.TrustRoot = &v1.TrustRoot{TUF: &v1.TUFTrustRoot{}}
			return withAuthority("notation-trust-root", a)
		}, nil, "a notation authority takes its trust from notation.trustStore"},
		{"notation authority ignoring the log", func() client.Object {
			a := formatAuthorities()[4]
			a.IgnoreTransparencyLog = true
			return withAuthority("notation-tlog", a)
		}, nil, "a notation authority takes its trust from notation.trustStore"},
		{"notation without a trust store", func() client.Object {
			a := formatAuthorities()[4]
			a.Notation.TrustStore = nil
			return withAuthority("notation-no-store", a)
		}, nil, "notation.trustStore is required unless level is skip"},
		{"notation identity that is not a DN", func() client.Object {
			a := formatAuthorities()[4]
			a.Notation.TrustedIdentities = []string{"CN=release"}
			return withAuthority("notation-bad-id", a)
		}, nil, `trustedIdentities are "*" or "x509.subject: <DN>"`},
		{"unknown notation level", func() client.Object {
			a := formatAuthorities()[4]
			a.Notation.Level = "lenient"
			return withAuthority("notation-level", a)
		}, nil, `Unsupported value: "lenient"`},
		{"unknown notation revocation", func() client.Object {
			a := formatAuthorities()[4]
			a.Notation.Revocation = "ocsp"
			return withAuthority("notation-revocation", a)
		}, nil, `Unsupported value: "ocsp"`},
		{"unknown signer format", func() client.Object { return validReport("bad-format") }, func(o client.Object) {
			o.(*v1.ImageTrustReport).Status.Signature = &v1.SignatureStatus{State: v1.SignatureVerified, Signers: []v1.SignerIdentity{{Format: "cosign-v3"}}}
		}, `Unsupported value: "cosign-v3"`},
		{"overlong time proof", func() client.Object { return validReport("long-proof") }, func(o client.Object) {
			o.(*v1.ImageTrustReport).Status.Signature = &v1.SignatureStatus{State: v1.SignatureVerified, Signers: []v1.SignerIdentity{{TimeProof: strings.Repeat("x", 257)}}}
		}, "timeProof: Too long"},
		{"key that is not PEM", func() client.Object {
			p := validPolicy("not-pem")
			p.Spec.Authorities[0].Key.Data = "ssh-ed25519 AAAA"
			return p
		}, nil, "must be a PEM public key"},
		{"keyless identity without subject", func() client.Object {
			p := validPolicy("no-subject")
			p.Spec.Authorities[1].Keyless.Identities[0].SubjectRegExp = ""
			return p
		}, nil, "exactly one of subject or subjectRegExp"},
		{"repeated sbom source", func() client.Object {
			p := validPolicy("dup-src")
			p.Spec.SBOMSources = []v1.SBOMSourceType{"Attestation", "Attestation"}
			return p
		}, nil, "must not repeat"},
		{"no images", func() client.Object { p := validPolicy("no-images"); p.Spec.Images = nil; return p }, nil, "spec.images"},
		{"bad platform", func() client.Object { s := validScan("bad-plat"); s.Spec.Platforms = []string{"amd64"}; return s }, nil, "spec.platforms"},
		{"latest zero", func() client.Object { s := validScan("latest0"); s.Spec.TagFilter.Latest = -1; return s }, nil, "spec.tagFilter.latest"},
		{"bad digest", func() client.Object { r := validReport("bad-digest"); r.Spec.Digest = "sha256:xyz"; return r }, nil, "spec.digest"},
		{"too many workloads", func() client.Object {
			r := validReport("many-workloads")
			for i := 0; i < v1.MaxReportWorkloads; i++ {
				r.Spec.Workloads = append(r.Spec.Workloads, v1.WorkloadReference{Kind: "Pod", Name: fmt.Sprint("p", i)})
			}
			return r
		}, nil, "spec.workloads: Too many"},
		{"too many findings", func() client.Object { return validReport("many-findings") }, func(o client.Object) {
			o.(*v1.ImageTrustReport).Status.TopFindings = many(v1.MaxReportFindings + 1)
		}, "status.topFindings: Too many"},
		{"overlong reason", func() client.Object { return validReport("long-reason") }, func(o client.Object) {
			o.(*v1.ImageTrustReport).Status.Signature = &v1.SignatureStatus{State: v1.SignatureInvalid, Reason: strings.Repeat("x", 1025)}
		}, "status.signature.reason: Too long"},
		{"negative location count", func() client.Object { return validReport("neg-locations") }, func(o client.Object) {
			o.(*v1.ImageTrustReport).Status.TopFindings = []v1.Finding{{ID: "CVE-2024-1", Severity: v1.SeverityHigh, Package: "p", InstalledVersion: "1", Locations: -1}}
		}, "status.topFindings[0].locations: Invalid value"},
		{"unknown admission mode", func() client.Object {
			p := validPolicy("bad-admission-mode")
			p.Spec.Admission = &v1.AdmissionSpec{Mode: "Block"}
			return p
		}, nil, `Unsupported value: "Block"`},
		{"unknown onUnknown action", func() client.Object {
			p := validPolicy("bad-on-unknown")
			p.Spec.Admission = &v1.AdmissionSpec{Mode: v1.AdmissionEnforce, OnUnknown: "Ignore"}
			return p
		}, nil, `Unsupported value: "Ignore"`},
		{"onUnknown without a mode", func() client.Object {
			p := validPolicy("on-unknown-off")
			p.Spec.Admission = &v1.AdmissionSpec{OnUnknown: v1.UnknownWarn}
			return p
		}, nil, "onUnknown has no effect while mode is Off"},
		{"too many policy results", func() client.Object { return validReport("many-results") }, func(o client.Object) {
			pr := &v1.PolicyResult{Verdict: v1.VerdictTrusted}
			for i := 0; i < 17; i++ {
				pr.Results = append(pr.Results, v1.PolicyVerdict{Policy: fmt.Sprint("p", i), Verdict: v1.VerdictTrusted})
			}
			o.(*v1.ImageTrustReport).Status.Policy = pr
		}, "status.policy.results: Too many"},
		{"a policy's result twice", func() client.Object { return validReport("dup-results") }, func(o client.Object) {
			o.(*v1.ImageTrustReport).Status.Policy = &v1.PolicyResult{Verdict: v1.VerdictTrusted, Results: []v1.PolicyVerdict{
				{Policy: "p", Verdict: v1.VerdictTrusted}, {Policy: "p", Verdict: v1.VerdictUntrusted}}}
		}, "Duplicate value"},
		{"unknown per-policy verdict", func() client.Object { return validReport("bad-result") }, func(o client.Object) {
			o.(*v1.ImageTrustReport).Status.Policy = &v1.PolicyResult{Verdict: v1.VerdictTrusted, Results: []v1.PolicyVerdict{{Policy: "p", Verdict: "Fine"}}}
		}, `Unsupported value: "Fine"`},
		{"unknown signature state", func() client.Object { return validReport("bad-state") }, func(o client.Object) {
			o.(*v1.ImageTrustReport).Status.Signature = &v1.SignatureStatus{State: "Maybe"}
		}, `Unsupported value: "Maybe"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := tc.obj()
			err := env.Client.Create(ctx, obj)
			if tc.status != nil {
				if err != nil {
					t.Fatalf("create before status update failed: %v", err)
				}
				tc.status(obj)
				err = env.Client.Status().Update(ctx, obj)
			}
			if err == nil {
				t.Fatalf("accepted, want rejection containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("rejection %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestUnknownFieldsRejected(t *testing.T) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(testenv.GVK("RegistryScan"))
	u.SetName("unknown-field")
	u.SetNamespace("default")
	u.Object["spec"] = map[string]any{
		"repositories": []any{"registry.example.com/team/app"},
		"schedul":      "@hourly", // typo a user would make
	}
	err := env.Client.Create(context.Background(), u, client.FieldValidation("Strict"))
	if err == nil || !strings.Contains(err.Error(), `unknown field "spec.schedul"`) {
		t.Fatalf("want strict rejection of unknown field, got %v", err)
	}
}

// TestPrinterColumns runs the kubectl built with the control plane, as a user would.
func TestPrinterColumns(t *testing.T) {
	ctx := context.Background()
	r := validReport("columns")
	if err := env.Client.Create(ctx, r); err != nil {
		t.Fatal(err)
	}
	now := metav1.NewTime(time.Now())
	r.Status = v1.ImageTrustReportStatus{
		Signature:       &v1.SignatureStatus{State: v1.SignatureVerified},
		SBOM:            &v1.SBOMStatus{Source: v1.SBOMAttested, Format: "spdx-json"},
		Vulnerabilities: &v1.VulnerabilitySummary{Critical: 3, High: 7, Fixable: 5, ScannedAt: &now},
		Policy:          &v1.PolicyResult{Verdict: v1.VerdictUntrusted},
	}
	if err := env.Client.Status().Update(ctx, r); err != nil {
		t.Fatal(err)
	}
	pol := validPolicy("columns")
	if err := env.Client.Create(ctx, pol); err != nil {
		t.Fatal(err)
	}
	pol.Status = v1.ImageTrustPolicyStatus{MatchedReports: 2}
	if err := env.Client.Status().Update(ctx, pol); err != nil {
		t.Fatal(err)
	}
	idle := validPolicy("columns-idle") // matches nothing: 0, not an empty column
	if err := env.Client.Create(ctx, idle); err != nil {
		t.Fatal(err)
	}
	idle.Status = v1.ImageTrustPolicyStatus{MatchedReports: 0, ObservedGeneration: 1}
	if err := env.Client.Status().Update(ctx, idle); err != nil {
		t.Fatal(err)
	}
	scan := validScan("columns")
	if err := env.Client.Create(ctx, scan); err != nil {
		t.Fatal(err)
	}
	// a future time: kubectl's date columns print <invalid> for it
	next := metav1.NewTime(time.Now().Add(59 * time.Minute).UTC().Truncate(time.Second))
	scan.Status = v1.RegistryScanStatus{NextScheduleTime: &next, LastSuccessfulTime: &now, TagsFound: 4, DigestsFound: 6}
	if err := env.Client.Status().Update(ctx, scan); err != nil {
		t.Fatal(err)
	}

	user, err := env.AddUser(envtest.User{Name: "printer-columns", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubectl, err := user.Kubectl()
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		stdout, stderr, err := kubectl.Run(args...)
		if err != nil {
			b, _ := readAll(stderr)
			t.Fatalf("kubectl %v: %v: %s", args, err, b)
		}
		b, _ := readAll(stdout)
		return b
	}
	out := run("get", "itr", "columns", "-n", "default")
	header := strings.Fields(strings.SplitN(out, "\n", 2)[0])
	if got, want := strings.Join(header, " "), "NAME IMAGE DIGEST SIGNATURE SBOM CRITICAL HIGH FIXABLE VERDICT SCANNED AGE"; got != want {
		t.Errorf("itr columns:\n got %s\nwant %s", got, want)
	}
	row := strings.Fields(strings.Split(out, "\n")[1])
	if got, want := strings.Join(row[:9], " "), "columns registry.example.com/team/app 0123456789ab Verified Attested 3 7 5 Untrusted"; got != want {
		t.Errorf("itr row:\n got %s\nwant %s", got, want)
	}

	for name, want := range map[string]string{"columns": "2", "columns-idle": "0"} {
		out = run("get", "itp", name)
		lines := strings.Split(out, "\n")
		from, to := strings.Index(lines[0], "REPORTS"), strings.Index(lines[0], "READY")
		if from < 0 || to < from {
			t.Fatalf("itp columns: %s", lines[0])
		}
		if got := strings.TrimSpace(lines[1][from:to]); got != want {
			t.Errorf("itp %s REPORTS column = %q, want %s:\n%s", name, got, want, out)
		}
	}

	out = run("get", "regscan", "columns", "-n", "default")
	header = strings.Fields(strings.SplitN(out, "\n", 2)[0])
	if got, want := strings.Join(header, " "), "NAME SCHEDULE SUSPEND TAGS DIGESTS LAST SUCCESS NEXT READY AGE"; got != want {
		t.Errorf("regscan columns:\n got %s\nwant %s", got, want)
	}
	// the schedule has spaces: read the NEXT column by its position under the header
	lines := strings.Split(out, "\n")
	from, to := strings.Index(lines[0], "NEXT"), strings.Index(lines[0], "READY")
	if got := strings.TrimSpace(lines[1][from:to]); got != next.Format(time.RFC3339) || strings.Contains(out, "<invalid>") {
		t.Errorf("regscan NEXT column = %q, want %s:\n%s", got, next.Format(time.RFC3339), out)
	}

	// The category lists all three kinds at once, as in `kubectl get imagetrust -A`.
	all := run("get", "itr,itp,regscan", "-A")
	for _, want := range []string{
		"imagetrustreport.security.imagetrust.dev/columns",
		"imagetrustpolicy.security.imagetrust.dev/columns",
		"registryscan.security.imagetrust.dev/columns",
		"SIGNATURE", "FAIL ON", "SCHEDULE", "ADMISSION", "LAST SUCCESS", "DIGESTS",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("kubectl get itr,itp,regscan -A lacks %q:\n%s", want, all)
		}
	}
	cat := run("get", "imagetrust", "-A")
	if !strings.Contains(cat, "imagetrustreport.security.imagetrust.dev/columns") || !strings.Contains(cat, "registryscan.security.imagetrust.dev/columns") {
		t.Errorf("category imagetrust does not list the kinds:\n%s", cat)
	}
}
