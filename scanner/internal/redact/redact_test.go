package redact

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

func TestURLRegistryRefs(t *testing.T) {
	cases := map[string]string{
		"https://user:pass@registry.example/v2/app/blobs/sha256:abc?X-Amz-Signature=s&token=t#frag": "https://registry.example/v2/app/blobs/sha256:abc",
		"http://127.0.0.1:5000/v2/":                              "http://127.0.0.1:5000/v2/",
		"https://token@ghcr.io/v2/token?scope=repository:a:pull": "https://ghcr.io/v2/token",
		"oci://u:p@h/x?y":                                        "oci://h/x",
		"https://u:p@bad host/x?token=1":                         "https://bad host/x",
		"not a url ?token=1":                                     "not a url ",
	}
	for in, want := range cases {
		if got := URL(in); got != want {
			t.Errorf("SanitizeURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestError(t *testing.T) {
	if Error(nil) != nil {
		t.Fatal("SanitizeError(nil) != nil")
	}
	base := &url.Error{Op: "Get", URL: "https://alice:s3cr3t@registry.example/v2/app/manifests/1.0?token=abcdef", Err: errors.New("connection refused")}
	err := Error(fmt.Errorf("resolve: %w; upstream said: Authorization: Bearer eyJhbGciOi.payload.sig, retry with password=hunter2", base))
	msg := err.Error()
	for _, leak := range []string{"alice", "s3cr3t", "abcdef", "token=", "eyJhbGciOi", "hunter2"} {
		if strings.Contains(msg, leak) {
			t.Errorf("sanitised message %q still contains %q", msg, leak)
		}
	}
	for _, keep := range []string{"https://registry.example/v2/app/manifests/1.0", "connection refused", "Bearer REDACTED", "password=REDACTED"} {
		if !strings.Contains(msg, keep) {
			t.Errorf("sanitised message %q lost %q", msg, keep)
		}
	}
	var uerr *url.Error
	if !errors.As(err, &uerr) {
		t.Errorf("errors.As lost the *url.Error through SanitizeError")
	}
	if again := Error(err); again.Error() != msg {
		t.Errorf("SanitizeError is not idempotent: %q vs %q", again, msg)
	}
}

func TestTextKeepsProse(t *testing.T) {
	cases := map[string]string{
		"registry requires basic authentication":             "registry requires basic authentication",
		"bearer token exchange failed":                       "bearer token exchange failed",
		"Authorization: Basic dXNlcjpwYXNz rejected":         "Authorization: Basic REDACTED rejected",
		"sent basic dXNlcjpwYXNz":                            "sent basic REDACTED",
		"got Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig from cache": "got Bearer REDACTED from cache",
		"refresh_token=abc&scope=pull":                       "refresh_token=REDACTED&scope=pull",
		`{"password":"hunter2","user":"bob"}`:                `{"password":"REDACTED","user":"bob"}`,
	}
	for in, want := range cases {
		if got := Text(in); got != want {
			t.Errorf("SanitizeText(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestURLDatabaseRefs(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:pw@host.example/db/latest.json?token=x#frag": "https://host.example/db/latest.json",
		"http://host:8080/v6/a.tar.gz?checksum=sha256:abc":         "http://host:8080/v6/a.tar.gz",
		"%%%":                        "%%%", // no URL parts to cut: nothing secret can be in it
		"https://u:p@%zz/x?t=secret": "https://%zz/x",
	} {
		if got := URL(in); got != want {
			t.Errorf("SanitizeURL(%q) = %q, want %q", in, got, want)
		}
	}
	msg := `Get "https://u:p@h.example/x?sig=1": dial failed; see https://docs.example/a.`
	if got, want := Text(msg), `Get "https://h.example/x": dial failed; see https://docs.example/a.`; got != want {
		t.Errorf("scrub = %q, want %q", got, want)
	}
}

func TestTextReferrerErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{`Get "https://user:pw@r.example/v2/x/blobs/sha256:ab?sig=s3cr3t#frag": EOF`, `Get "https://r.example/v2/x/blobs/sha256:ab": EOF`},
		{`GET http://127.0.0.1:5000/v2/app/referrers/sha256:00: DENIED`, `GET http://127.0.0.1:5000/v2/app/referrers/sha256:00: DENIED`},
		{`no url here`, `no url here`},
		{`bad https://user:pw@%zz/x?y=1 end`, `bad https://%zz/x end`}, // unparseable: userinfo and query cut textually
	}
	for _, tc := range tests {
		if got := Text(tc.in); got != tc.want {
			t.Errorf("sanitizeText(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
