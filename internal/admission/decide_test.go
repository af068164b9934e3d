package admission

import (
	"slices"
	"strings"
	"testing"

	v1 "github.com/imagetrust/imagetrust/api/v1alpha1"
)

func enforce(name string) PolicyRef {
	return PolicyRef{Name: name, Mode: v1.AdmissionEnforce, OnUnknown: v1.UnknownDeny}
}

func audit(name string) PolicyRef {
	return PolicyRef{Name: name, Mode: v1.AdmissionAudit, OnUnknown: v1.UnknownDeny}
}

func withUnknown(p PolicyRef, a v1.UnknownAction) PolicyRef { p.OnUnknown = a; return p }

func img(image, digest string, checks ...PolicyCheck) ImageInput {
	return ImageInput{Container: Container{Name: "app", Kind: KindContainer, Image: image},
		Repository: "registry.example.com/team/app", Digest: digest, Policies: checks}
}

func verdict(v v1.Verdict, fc ...v1.FailedCheck) Evidence {
	return Evidence{Verdict: v, Report: "shop/app-0123", FailedChecks: fc}
}

var sigCheck = v1.FailedCheck{Policy: "team", Check: "signature", Message: "no signature found"}

// TestDecide is the core's table: every combination of mode, verdict, unknown action and
// break-glass that changes the answer.
func TestDecide(t *testing.T) {
	const d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	member := BreakGlass{Requested: true, Reason: "INC-42", Changed: true, Enabled: true, Authorized: true, User: "alice"}
	cases := []struct {
		name     string
		in       Input
		allowed  bool
		message  []string // substrings of the refusal
		warnings []string // substrings, one per expected warning, in order
		events   []string // reasons
		assess   []string // repository@digest
	}{
		{name: "no policy applies", in: Input{Images: []ImageInput{img("a:1", d1)}}, allowed: true},
		{name: "trusted", in: Input{Images: []ImageInput{img("a:1", d1, PolicyCheck{enforce("team"), verdict(v1.VerdictTrusted)})}}, allowed: true},
		{
			name:    "untrusted under Enforce is refused with image, checks and report",
			in:      Input{Object: ObjectRef{Kind: "Pod", Namespace: "shop", Name: "web"}, Images: []ImageInput{img("a:1", d1, PolicyCheck{enforce("team"), verdict(v1.VerdictUntrusted, sigCheck)})}},
			message: []string{"Pod shop/web: ", `image "a:1" (container "app") is Untrusted under ImageTrustPolicy "team"`, "signature: no signature found", "(report shop/app-0123)"},
		},
		{
			name:     "untrusted under Audit is admitted with a warning and an event",
			in:       Input{Images: []ImageInput{img("a:1", d1, PolicyCheck{audit("team"), verdict(v1.VerdictUntrusted, sigCheck)})}},
			allowed:  true,
			warnings: []string{`would be denied, ImageTrustPolicy "team" is in Audit mode: image "a:1"`},
			events:   []string{ReasonAudit},
		},
		{
			name:    "never assessed, Deny: refused and queued",
			in:      Input{Images: []ImageInput{img("a:1", d1, PolicyCheck{enforce("team"), Evidence{}})}},
			message: []string{"has not been assessed", "queued for assessment"},
			assess:  []string{"registry.example.com/team/app@" + d1},
		},
		{
			name:     "never assessed, Warn: admitted with a warning and queued",
			in:       Input{Images: []ImageInput{img("a:1", d1, PolicyCheck{withUnknown(enforce("team"), v1.UnknownWarn), Evidence{}})}},
			allowed:  true,
			warnings: []string{"has not been assessed"},
			assess:   []string{"registry.example.com/team/app@" + d1},
		},
		{
			name:    "never assessed, Allow: admitted silently and queued",
			in:      Input{Images: []ImageInput{img("a:1", d1, PolicyCheck{withUnknown(enforce("team"), v1.UnknownAllow), Evidence{}})}},
			allowed: true,
			assess:  []string{"registry.example.com/team/app@" + d1},
		},
		{
			name:    "verdict Unknown follows onUnknown, not queued",
			in:      Input{Images: []ImageInput{img("a:1", d1, PolicyCheck{enforce("team"), verdict(v1.VerdictUnknown, v1.FailedCheck{Policy: "team", Check: "signature", Message: "registry unreachable"})})}},
			message: []string{"verdict Unknown", "registry unreachable"},
		},
		{
			name:    "stale verdict is not trusted",
			in:      Input{Images: []ImageInput{img("a:1", d1, PolicyCheck{enforce("team"), Evidence{Verdict: v1.VerdictTrusted, Stale: true, Report: "shop/app-0123"}})}},
			message: []string{"older version of ImageTrustPolicy"},
			assess:  []string{"registry.example.com/team/app@" + d1},
		},
		{
			name:    "unresolved tag follows onUnknown",
			in:      Input{Images: []ImageInput{{Container: Container{Image: "a:1"}, Repository: "r", Unresolved: "HEAD timed out", Policies: []PolicyCheck{{enforce("team"), Evidence{}}}}}},
			message: []string{"has no known digest (HEAD timed out)"},
		},
		{
			name:    "unenforceable policy follows onUnknown",
			in:      Input{Images: []ImageInput{img("a:1", d1, PolicyCheck{enforce("team"), Evidence{Problem: "its namespaceSelector is invalid"}})}},
			message: []string{`ImageTrustPolicy "team" cannot be enforced, its namespaceSelector is invalid`},
		},
		{
			name: "one Enforce refusal wins over other policies' Trusted",
			in: Input{Images: []ImageInput{img("a:1", d1,
				PolicyCheck{enforce("a"), verdict(v1.VerdictTrusted)}, PolicyCheck{enforce("b"), verdict(v1.VerdictUntrusted, sigCheck)})}},
			message: []string{`ImageTrustPolicy "b"`},
		},
		{
			name: "every refused image is named",
			in: Input{Images: []ImageInput{
				img("a:1", d1, PolicyCheck{enforce("team"), verdict(v1.VerdictUntrusted, sigCheck)}),
				{Container: Container{Name: "init", Kind: KindInit, Image: "b:2"}, Repository: "r2", Digest: d1, Policies: []PolicyCheck{{enforce("team"), verdict(v1.VerdictUntrusted, sigCheck)}}},
			}},
			message: []string{`image "a:1"`, `image "b:2" (initContainer "init")`},
		},
		{name: "excluded namespace", in: Input{Excluded: true, Images: []ImageInput{img("a:1", d1, PolicyCheck{enforce("team"), verdict(v1.VerdictUntrusted)})}}, allowed: true},
		{
			name:     "break-glass by a member admits, warns and records an event",
			in:       Input{BreakGlass: member, Images: []ImageInput{img("a:1", d1, PolicyCheck{enforce("team"), verdict(v1.VerdictUntrusted, sigCheck)})}},
			allowed:  true,
			warnings: []string{`break-glass by "alice" (INC-42)`},
			events:   []string{ReasonBreakGlass},
		},
		{
			name:    "break-glass set by a non-member is refused even for trusted images",
			in:      Input{BreakGlass: BreakGlass{Requested: true, Changed: true, Enabled: true, User: "bob"}, Images: []ImageInput{img("a:1", d1, PolicyCheck{enforce("team"), verdict(v1.VerdictTrusted)})}},
			message: []string{`user "bob" may not set annotation imagetrust.dev/break-glass`},
		},
		{
			name:     "break-glass kept (not changed) by a non-member is not honoured",
			in:       Input{BreakGlass: BreakGlass{Requested: true, Enabled: true, User: "bob"}, Images: []ImageInput{img("a:1", d1, PolicyCheck{enforce("team"), verdict(v1.VerdictUntrusted, sigCheck)})}},
			message:  []string{"is Untrusted"},
			warnings: []string{"not honoured"},
		},
		{
			name:     "break-glass while disabled is ignored",
			in:       Input{BreakGlass: BreakGlass{Requested: true, Changed: true, User: "alice"}, Images: []ImageInput{img("a:1", d1, PolicyCheck{enforce("team"), verdict(v1.VerdictUntrusted, sigCheck)})}},
			message:  []string{"is Untrusted"},
			warnings: []string{"break-glass is not enabled"},
		},
		{
			name:    "break-glass by a member with nothing to override records nothing",
			in:      Input{BreakGlass: member, Images: []ImageInput{img("a:1", d1, PolicyCheck{enforce("team"), verdict(v1.VerdictTrusted)})}},
			allowed: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.in)
			if d.Allowed != tc.allowed {
				t.Fatalf("allowed = %v, want %v (message %q, warnings %q)", d.Allowed, tc.allowed, d.Message, d.Warnings)
			}
			if tc.allowed && d.Message != "" {
				t.Errorf("allowed with message %q", d.Message)
			}
			for _, want := range tc.message {
				if !strings.Contains(d.Message, want) {
					t.Errorf("message %q lacks %q", d.Message, want)
				}
			}
			if len(d.Warnings) != len(tc.warnings) {
				t.Fatalf("warnings = %q, want %d matching %q", d.Warnings, len(tc.warnings), tc.warnings)
			}
			for i, want := range tc.warnings {
				if !strings.Contains(d.Warnings[i], want) {
					t.Errorf("warning %d %q lacks %q", i, d.Warnings[i], want)
				}
			}
			var reasons, assessed []string
			for _, e := range d.Events {
				reasons = append(reasons, e.Reason)
			}
			for _, a := range d.Assess {
				assessed = append(assessed, a.Repository+"@"+a.Digest)
			}
			if !slices.Equal(reasons, tc.events) {
				t.Errorf("events = %v, want %v", reasons, tc.events)
			}
			if !slices.Equal(assessed, tc.assess) {
				t.Errorf("assess = %v, want %v", assessed, tc.assess)
			}
		})
	}
}

// TestDecideBoundsItsAnswer: many containers and policies still give a message and warnings
// within what the API server passes on whole.
func TestDecideBoundsItsAnswer(t *testing.T) {
	const d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	long := strings.Repeat("x", 5000)
	var in Input
	for i := 0; i < 40; i++ {
		in.Images = append(in.Images, img("a:1", d1,
			PolicyCheck{enforce("e"), verdict(v1.VerdictUntrusted, v1.FailedCheck{Check: "signature", Message: long})},
			PolicyCheck{audit("w"), verdict(v1.VerdictUntrusted, v1.FailedCheck{Check: "signature", Message: long})}))
	}
	d := Decide(in)
	if n := len([]rune(d.Message)); n > maxMessageRunes {
		t.Errorf("message has %d runes, bound %d", n, maxMessageRunes)
	}
	if len(d.Warnings) != maxWarnings || !strings.Contains(d.Warnings[maxWarnings-1], "and 25 more warnings") {
		t.Errorf("got %d warnings, last %q", len(d.Warnings), d.Warnings[len(d.Warnings)-1])
	}
	for _, w := range d.Warnings {
		if len([]rune(w)) > maxWarningRunes {
			t.Errorf("warning of %d runes", len([]rune(w)))
		}
	}
	if len(d.Assess) != 0 {
		t.Errorf("assessed images with verdicts: %v", d.Assess)
	}
}

// TestDecideQueuesEachDigestOnce: two policies without verdicts for one image queue it once.
func TestDecideQueuesEachDigestOnce(t *testing.T) {
	const d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	d := Decide(Input{Images: []ImageInput{
		img("a:1", d1, PolicyCheck{enforce("a"), Evidence{}}, PolicyCheck{enforce("b"), Evidence{}}),
		img("a:1", d1, PolicyCheck{enforce("a"), Evidence{}}),
	}})
	if len(d.Assess) != 1 || d.Assess[0].Digest != d1 {
		t.Errorf("assess = %+v, want the digest once", d.Assess)
	}
}
