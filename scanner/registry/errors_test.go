package registry_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/imagetrust/imagetrust/scanner/registry"
	"github.com/imagetrust/imagetrust/scanner/registry/registrytest"
)

func TestSanitizeURL(t *testing.T) {
	cases := map[string]string{
		"https://user:pass@registry.example/v2/app/blobs/sha256:abc?X-Amz-Signature=s&token=t#frag": "https://registry.example/v2/app/blobs/sha256:abc",
		"http://127.0.0.1:5000/v2/":                              "http://127.0.0.1:5000/v2/",
		"https://token@ghcr.io/v2/token?scope=repository:a:pull": "https://ghcr.io/v2/token",
		"oci://u:p@h/x?y":                                        "oci://h/x",
		"https://u:p@bad host/x?token=1":                         "https://bad host/x",
		"not a url ?token=1":                                     "not a url ",
	}
	for in, want := range cases {
		if got := registry.SanitizeURL(in); got != want {
			t.Errorf("SanitizeURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSanitizeError(t *testing.T) {
	if registry.SanitizeError(nil) != nil {
		t.Fatal("SanitizeError(nil) != nil")
	}
	base := &url.Error{Op: "Get", URL: "https://alice:s3cr3t@registry.example/v2/app/manifests/1.0?token=abcdef", Err: errors.New("connection refused")}
	err := registry.SanitizeError(fmt.Errorf("resolve: %w; upstream said: Authorization: Bearer eyJhbGciOi.payload.sig, retry with password=hunter2", base))
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
	if again := registry.SanitizeError(err); again.Error() != msg {
		t.Errorf("SanitizeError is not idempotent: %q vs %q", again, msg)
	}
}

func TestTypedErrorsSurviveSanitising(t *testing.T) {
	reg := registrytest.New(t)
	pushImage(t, reg, "app:1.0")
	cases := []struct {
		status                              int
		notFound, unauthorized, rateLimited bool
		transient                           bool
	}{
		{http.StatusNotFound, true, false, false, false},
		{http.StatusUnauthorized, false, true, false, false},
		{http.StatusForbidden, false, true, false, false},
		{http.StatusTooManyRequests, false, false, true, true},
		{http.StatusServiceUnavailable, false, false, false, true},
		{http.StatusBadRequest, false, false, false, false},
	}
	c := newClient(t, reg, func(o *registry.Options) { o.MaxRetries = -1 })
	for _, tc := range cases {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			reg.ClearFaults()
			reg.Fail("/manifests/", "", tc.status, -1, "")
			// MaxRetries -1: one attempt, so the typed error comes straight back.
			_, err := c.Resolve(context.Background(), reg.Repo("app:1.0"), nil)
			if err == nil {
				t.Fatal("Resolve succeeded against an injected failure")
			}
			got := [4]bool{registry.IsNotFound(err), registry.IsUnauthorized(err), registry.IsRateLimited(err), registry.IsTransient(err)}
			want := [4]bool{tc.notFound, tc.unauthorized, tc.rateLimited, tc.transient}
			if got != want {
				t.Errorf("[notFound unauthorized rateLimited transient] = %v, want %v (err %v)", got, want, err)
			}
		})
	}
	reg.ClearFaults()
	if registry.IsTransient(context.Canceled) || !registry.IsTransient(context.DeadlineExceeded) {
		t.Errorf("context errors: Canceled must not be transient, DeadlineExceeded must be")
	}
}

func TestSanitizeTextKeepsProse(t *testing.T) {
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
		if got := registry.SanitizeText(in); got != want {
			t.Errorf("SanitizeText(%q) = %q, want %q", in, got, want)
		}
	}
}
