package verify

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/imagetrust/imagetrust/scanner/verify/signtest"
)

// requestCounter counts every request the registry serves.
type requestCounter struct{ n atomic.Int64 }

func (c *requestCounter) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.n.Add(1)
		next.ServeHTTP(w, r)
	})
}

// formatCase is one signature format on one image, with the authority that verifies it.
type formatCase struct {
	name string
	ref  name.Digest
	auth []Authority
}

// formatCases signs one image per format in a registry with or without the referrers API.
func formatCases(tb testing.TB, referrers bool) ([]formatCase, *requestCounter) {
	tb.Helper()
	rc := &requestCounter{}
	host := testRegistryWith(tb, referrers, rc.wrap)
	kp, err := signtest.NewKeyPair()
	must(tb, err)
	rekor, err := signtest.NewRekor()
	must(tb, err)
	ns, err := signtest.NewNotationSigner("bench", time.Time{})
	must(tb, err)
	key := []Authority{{Name: "k", PublicKeyPEM: kp.PublicPEM, IgnoreTlog: true}}
	logged := []Authority{{Name: "k", PublicKeyPEM: kp.PublicPEM, RekorPublicKeyPEM: rekor.Key.PublicPEM}}
	notary := []Authority{{Name: "n", Notation: &Notation{TrustStorePEM: ns.RootPEM, TrustedIdentities: []string{ns.Identity}, Revocation: "skip"}}}

	var cases []formatCase
	add := func(n string, auth []Authority, sign func(name.Digest) error) {
		ref := pushImage(tb, host, "bench/"+n)
		must(tb, sign(ref))
		cases = append(cases, formatCase{n, ref, auth})
	}
	add("cosign-legacy", key, func(r name.Digest) error { return signtest.SignImage(ctx, r, kp, writeOpts()...) })
	add("cosign-legacy-rekor", logged, func(r name.Digest) error { return signtest.Sign(ctx, r, kp, rekor, writeOpts()...) })
	add("sigstore-bundle", key, func(r name.Digest) error {
		return signtest.SignBundle(ctx, r, kp, signtest.BundleOptions{}, writeOpts()...)
	})
	add("sigstore-bundle-rekor", logged, func(r name.Digest) error {
		return signtest.SignBundle(ctx, r, kp, signtest.BundleOptions{Rekor: rekor}, writeOpts()...)
	})
	add("notation-jws", notary, func(r name.Digest) error { return ns.Sign(ctx, r, signtest.NotationJWS, true) })
	add("notation-cose", notary, func(r name.Digest) error { return ns.Sign(ctx, r, signtest.NotationCOSE, true) })
	return cases, rc
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkVerifySignatures verifies one image per format and layout. It reports ns/op, the
// registry requests one verification makes, and the time relative to the cosign legacy path
// on the same layout, measured first in the same run (x-legacy).
func BenchmarkVerifySignatures(b *testing.B) {
	for _, l := range layouts {
		cases, rc := formatCases(b, l.referrers)
		var legacyNs float64 // cases[0] is cosign-legacy: it runs first and sets the baseline
		for _, c := range cases {
			b.Run(l.name+"/"+c.name, func(b *testing.B) {
				v := verifier()
				rc.n.Store(0)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if res := v.VerifySignatures(ctx, c.ref, c.auth); res.State != Verified {
						b.Fatalf("%s: %s", res.State, res.Reason)
					}
				}
				b.StopTimer()
				ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
				if c.name == "cosign-legacy" {
					legacyNs = ns
				}
				b.ReportMetric(float64(rc.n.Load())/float64(b.N), "requests/op")
				b.ReportMetric(ns/legacyNs, "x-legacy")
			})
		}
	}
}

// TestRegistryRequestsPerVerification pins how many registry requests one signature
// verification makes per format and layout, so a change that adds round trips shows up.
func TestRegistryRequestsPerVerification(t *testing.T) {
	// Bounds are what the implementation needs: the .sig tag (manifest + payload blob when
	// present), one referrers listing (API, or API 404 + tag-schema index), and the
	// referrer's manifest and blob; Notation adds a HEAD of the image.
	max := map[string]map[string]int64{
		"referrers-api": {"cosign-legacy": 4, "cosign-legacy-rekor": 4, "sigstore-bundle": 5, "sigstore-bundle-rekor": 5, "notation-jws": 6, "notation-cose": 6},
		"tag-schema":    {"cosign-legacy": 5, "cosign-legacy-rekor": 5, "sigstore-bundle": 6, "sigstore-bundle-rekor": 6, "notation-jws": 7, "notation-cose": 7},
	}
	for _, l := range layouts {
		cases, rc := formatCases(t, l.referrers)
		for _, c := range cases {
			rc.n.Store(0)
			if res := verifier().VerifySignatures(ctx, c.ref, c.auth); res.State != Verified {
				t.Fatalf("%s/%s: %s: %s", l.name, c.name, res.State, res.Reason)
			}
			n := rc.n.Load()
			t.Logf("%s/%s: %d registry requests", l.name, c.name, n)
			if n > max[l.name][c.name] {
				t.Errorf("%s/%s: %d registry requests, more than %d", l.name, c.name, n, max[l.name][c.name])
			}
		}
	}
}
