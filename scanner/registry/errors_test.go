package registry_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/imagetrust/imagetrust/scanner/registry"
	"github.com/imagetrust/imagetrust/scanner/registry/registrytest"
)

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
