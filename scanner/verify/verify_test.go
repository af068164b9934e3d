package verify

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"

	"github.com/imagetrust/imagetrust/scanner/verify/signtest"
)

func TestKeySignedVerifies(t *testing.T) {
	_, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edKey, err := signtest.NewKeyPairFromSigner(edPriv)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := signtest.NewRSAKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	host := testRegistry(t, nil)
	for _, tc := range []struct {
		name string
		kp   *signtest.KeyPair
	}{
		{"ecdsa-p256", newKey(t)},
		{"ed25519", edKey},
		{"rsa-2048", rsaKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := pushImage(t, host, "app/"+tc.name)
			if err := signtest.SignImage(ctx, ref, tc.kp, writeOpts()...); err != nil {
				t.Fatal(err)
			}
			res := verifier().VerifySignatures(ctx, ref, []Authority{keyAuthority("release-key", tc.kp)})
			want := []Signer{keySigner(t, "release-key", tc.kp)}
			if res.State != Verified || !reflect.DeepEqual(res.Signers, want) {
				t.Fatalf("got %+v, want Verified by %+v", res, want)
			}
			if res.Reason != "signature verified by authorities [release-key] (looked at cosign .sig tag: 1 found, verified; Sigstore bundle referrers: none; Notation referrers: none)" {
				t.Errorf("reason = %q", res.Reason)
			}
		})
	}
}

func TestUnsigned(t *testing.T) {
	host := testRegistry(t, nil)
	ref := pushImage(t, host, "app")
	res := verifier().VerifySignatures(ctx, ref, []Authority{keyAuthority("release-key", newKey(t))})
	if res.State != Unsigned || len(res.Signers) != 0 {
		t.Fatalf("got %+v, want Unsigned", res)
	}
	if want := "no signatures found for " + ref.DigestStr() + " (looked at cosign .sig tag: none; Sigstore bundle referrers: none; Notation referrers: none)"; res.Reason != want {
		t.Errorf("reason = %q, want %q", res.Reason, want)
	}
}

func TestWrongKeyIsInvalid(t *testing.T) {
	host := testRegistry(t, nil)
	ref := pushImage(t, host, "app")
	if err := signtest.SignImage(ctx, ref, newKey(t), writeOpts()...); err != nil {
		t.Fatal(err)
	}
	res := verifier().VerifySignatures(ctx, ref, []Authority{keyAuthority("release-key", newKey(t))})
	if res.State != Invalid || len(res.Signers) != 0 {
		t.Fatalf("got %+v, want Invalid", res)
	}
	mustContain(t, "reason", res.Reason,
		"1 signature found, none verified by authorities [release-key]: ",
		"invalid signature when validating ASN.1 encoded signature")
}

func TestTamperedPayloadIsInvalid(t *testing.T) {
	host := testRegistry(t, nil)
	ref := pushImage(t, host, "app")
	kp := newKey(t)
	if err := signtest.SignImage(ctx, ref, kp, writeOpts()...); err != nil {
		t.Fatal(err)
	}
	auths := []Authority{keyAuthority("release-key", kp)}
	if res := verifier().VerifySignatures(ctx, ref, auths); res.State != Verified {
		t.Fatalf("before tampering: %+v", res)
	}
	if err := signtest.TamperSignaturePayload(ctx, ref, writeOpts()...); err != nil {
		t.Fatal(err)
	}
	res := verifier().VerifySignatures(ctx, ref, auths)
	if res.State != Invalid {
		t.Fatalf("got %+v, want Invalid", res)
	}
	mustContain(t, "reason", res.Reason, "1 signature found, none verified", "invalid signature")
}

// A genuine signature of image A copied to image B's signature tag must not vouch for B.
func TestSignatureCopiedToAnotherDigestIsInvalid(t *testing.T) {
	host := testRegistry(t, nil)
	a := pushImage(t, host, "app-a")
	b := pushImage(t, host, "app-b")
	kp := newKey(t)
	if err := signtest.SignImage(ctx, a, kp, writeOpts()...); err != nil {
		t.Fatal(err)
	}
	sigA, err := ociremote.SignatureTag(a)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(sigA, anon...)
	if err != nil {
		t.Fatal(err)
	}
	sigB, err := ociremote.SignatureTag(b)
	if err != nil {
		t.Fatal(err)
	}
	img, err := desc.Image()
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(sigB, img, anon...); err != nil {
		t.Fatal(err)
	}
	res := verifier().VerifySignatures(ctx, b, []Authority{keyAuthority("release-key", kp)})
	if res.State != Invalid {
		t.Fatalf("got %+v, want Invalid", res)
	}
	mustContain(t, "reason", res.Reason, "signature payload is not for "+b.DigestStr(), "invalid or missing digest in claim: "+a.DigestStr())
}

func TestKeyless(t *testing.T) {
	const (
		subject = "release-bot@example.com"
		issuer  = "https://accounts.example.com"
	)
	now := time.Now()
	ca := newCA(t, "test")
	otherCA := newCA(t, "other")
	good := issue(t, ca, subject, issuer, now.Add(-time.Minute), now.Add(10*time.Minute))
	expired := issue(t, ca, subject, issuer, now.Add(-time.Hour), now.Add(-50*time.Minute))
	untrusted := issue(t, otherCA, subject, issuer, now.Add(-time.Minute), now.Add(10*time.Minute))
	workflow := issue(t, ca, "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main", "https://token.actions.githubusercontent.com", now.Add(-time.Minute), now.Add(10*time.Minute))

	exact := Identity{Issuer: issuer, Subject: subject}
	host := testRegistry(t, nil)
	for i, tc := range []struct {
		name        string
		leaf        *signtest.Leaf
		auth        Authority
		wantState   State
		wantSubject string
		wantIssuer  string
		wantReason  []string
	}{
		{name: "right identity", leaf: good, auth: keylessAuthority("ci", ca, exact),
			wantState: Verified, wantSubject: subject, wantIssuer: issuer},
		{name: "subject regexp and issuer regexp", leaf: workflow,
			auth: keylessAuthority("ci", ca, Identity{
				IssuerRegExp:  `^https://token\.actions\.githubusercontent\.com$`,
				SubjectRegExp: `^https://github\.com/acme/.+@refs/heads/main$`}),
			wantState:   Verified,
			wantSubject: "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main",
			wantIssuer:  "https://token.actions.githubusercontent.com"},
		{name: "intermediates configured", leaf: good,
			auth: func() Authority {
				a := keylessAuthority("ci", ca, exact)
				a.Keyless.IntermediatesPEM = ca.IntermediatePEM
				return a
			}(),
			wantState: Verified, wantSubject: subject, wantIssuer: issuer},
		{name: "wrong subject", leaf: good, auth: keylessAuthority("ci", ca, Identity{Issuer: issuer, Subject: "someone@example.com"}),
			wantState: Invalid, wantReason: []string{"none of the expected identities matched what was in the certificate, got subjects [release-bot@example.com] with issuer https://accounts.example.com"}},
		{name: "wrong issuer", leaf: good, auth: keylessAuthority("ci", ca, Identity{Issuer: "https://evil.example.com", Subject: subject}),
			wantState: Invalid, wantReason: []string{"none of the expected identities matched"}},
		{name: "subject regexp mismatch", leaf: workflow,
			auth: keylessAuthority("ci", ca, Identity{Issuer: "https://token.actions.githubusercontent.com",
				SubjectRegExp: `^https://github\.com/acme/.+@refs/tags/v.*$`}),
			wantState: Invalid, wantReason: []string{"none of the expected identities matched"}},
		{name: "untrusted CA", leaf: untrusted, auth: keylessAuthority("ci", ca, exact),
			wantState: Invalid, wantReason: []string{"cert verification failed: x509: certificate signed by unknown authority"}},
		{name: "expired leaf without timestamp", leaf: expired, auth: keylessAuthority("ci", ca, exact),
			wantState: Invalid, wantReason: []string{"expected a signed timestamp to verify an expired certificate"}},
		{name: "SCT required but absent", leaf: good,
			auth: func() Authority {
				a := keylessAuthority("ci", ca, exact)
				a.Keyless.IgnoreSCT = false
				return a
			}(),
			wantState: Invalid, wantReason: []string{"certificate does not include required embedded SCT"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := pushImage(t, host, fmt.Sprintf("keyless/%d", i))
			if err := signtest.SignImageKeyless(ctx, ref, tc.leaf, writeOpts()...); err != nil {
				t.Fatal(err)
			}
			res := verifier().VerifySignatures(ctx, ref, []Authority{tc.auth})
			if res.State != tc.wantState {
				t.Fatalf("state = %s (%s), want %s", res.State, res.Reason, tc.wantState)
			}
			if tc.wantState == Verified {
				want := []Signer{keylessSigner(t, "ci", tc.leaf, tc.wantSubject, tc.wantIssuer, FormatCosignLegacy, "none: transparency log ignored, certificate checked at verification time")}
				if !reflect.DeepEqual(res.Signers, want) {
					t.Errorf("signers = %+v, want %+v", res.Signers, want)
				}
				return
			}
			if len(res.Signers) != 0 {
				t.Errorf("signers = %+v, want none", res.Signers)
			}
			mustContain(t, "reason", res.Reason, append([]string{"1 signature found, none verified by authorities [ci]: "}, tc.wantReason...)...)
			if strings.Contains(res.Reason, "TUF") {
				t.Errorf("reason %q carries cosign CLI advice", res.Reason)
			}
		})
	}
}

func TestTransparencyLog(t *testing.T) {
	host := testRegistry(t, nil)
	kp := newKey(t)
	rekor, err := signtest.NewRekor()
	if err != nil {
		t.Fatal(err)
	}
	otherRekor, err := signtest.NewRekor()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ca := newCA(t, "test")
	const subject, issuer = "dev@example.com", "https://issuer.example.com"
	// The leaf expired 50 minutes ago, but the log recorded the signature while it was valid.
	expiredLeaf := issue(t, ca, subject, issuer, now.Add(-time.Hour), now.Add(-50*time.Minute))
	inWindow := &signtest.Rekor{Key: rekor.Key, IntegratedTime: now.Add(-55 * time.Minute), LogIndex: 7}
	afterExpiry := &signtest.Rekor{Key: rekor.Key, IntegratedTime: now.Add(-10 * time.Minute), LogIndex: 8}

	withRekor := func(a Authority, r *signtest.Rekor) Authority {
		a.IgnoreTlog = false
		if r != nil {
			a.RekorPublicKeyPEM = r.Key.PublicPEM
		}
		return a
	}
	keyless := keylessAuthority("ci", ca, Identity{Issuer: issuer, Subject: subject})
	for i, tc := range []struct {
		name       string
		signer     signtest.Signer
		bundle     *signtest.Rekor
		auth       Authority
		wantState  State
		wantReason string
	}{
		{"no Rekor key configured", kp, rekor, withRekor(keyAuthority("release-key", kp), nil),
			Invalid, "transparency-log proof is required but the authority has no Rekor public key"},
		{"no bundle on signature", kp, nil, withRekor(keyAuthority("release-key", kp), rekor),
			Invalid, "transparency-log proof is required but the signature carries no Rekor bundle"},
		{"bundle verified offline", kp, rekor, withRekor(keyAuthority("release-key", kp), rekor),
			Verified, ""},
		{"bundle from an untrusted log", kp, otherRekor, withRekor(keyAuthority("release-key", kp), rekor),
			Invalid, "rekor log public key not found for payload"},
		{"expired leaf logged while valid", expiredLeaf, inWindow, withRekor(keyless, rekor),
			Verified, ""},
		{"expired leaf logged after expiry", expiredLeaf, afterExpiry, withRekor(keyless, rekor),
			Invalid, "certificate expired before signatures were entered in log"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := pushImage(t, host, fmt.Sprintf("tlog/%d", i))
			if err := signtest.Sign(ctx, ref, tc.signer, tc.bundle, writeOpts()...); err != nil {
				t.Fatal(err)
			}
			res := verifier().VerifySignatures(ctx, ref, []Authority{tc.auth})
			if res.State != tc.wantState {
				t.Fatalf("state = %s (%s), want %s", res.State, res.Reason, tc.wantState)
			}
			if tc.wantState == Verified {
				if len(res.Signers) != 1 || res.Signers[0].Authority != tc.auth.Name {
					t.Errorf("signers = %+v", res.Signers)
				}
				return
			}
			mustContain(t, "reason", res.Reason, tc.wantReason)
		})
	}
}

func TestSecondAuthorityMatches(t *testing.T) {
	host := testRegistry(t, nil)
	ref := pushImage(t, host, "app")
	signing := newKey(t)
	if err := signtest.SignImage(ctx, ref, signing, writeOpts()...); err != nil {
		t.Fatal(err)
	}
	ca := newCA(t, "test")
	auths := []Authority{
		keyAuthority("old-key", newKey(t)),
		keyAuthority("release-key", signing),
		keylessAuthority("ci", ca, Identity{Issuer: "https://i", Subject: "s@example.com"}),
	}
	res := verifier().VerifySignatures(ctx, ref, auths)
	want := []Signer{keySigner(t, "release-key", signing)}
	if res.State != Verified || !reflect.DeepEqual(res.Signers, want) {
		t.Fatalf("got %+v, want Verified by %+v", res, want)
	}
}

func TestAllSignersCollected(t *testing.T) {
	host := testRegistry(t, nil)
	ref := pushImage(t, host, "app")
	k1, k2 := newKey(t), newKey(t)
	for _, k := range []*signtest.KeyPair{k1, k2} {
		if err := signtest.SignImage(ctx, ref, k, writeOpts()...); err != nil {
			t.Fatal(err)
		}
	}
	res := verifier().VerifySignatures(ctx, ref, []Authority{keyAuthority("a", k1), keyAuthority("b", k2), keyAuthority("c", newKey(t))})
	want := []Signer{
		keySigner(t, "a", k1),
		keySigner(t, "b", k2),
	}
	if res.State != Verified || !reflect.DeepEqual(res.Signers, want) {
		t.Fatalf("got %+v, want Verified by %+v", res, want)
	}
	if !strings.HasPrefix(res.Reason, "signature verified by authorities [a, b] (looked at cosign .sig tag: 2 found, verified;") {
		t.Errorf("reason = %q", res.Reason)
	}
}

func TestSeveralSignaturesNoneVerified(t *testing.T) {
	host := testRegistry(t, nil)
	ref := pushImage(t, host, "app")
	for i := 0; i < 2; i++ {
		if err := signtest.SignImage(ctx, ref, newKey(t), writeOpts()...); err != nil {
			t.Fatal(err)
		}
	}
	res := verifier().VerifySignatures(ctx, ref, []Authority{keyAuthority("release-key", newKey(t)), keyAuthority("backup-key", newKey(t))})
	if res.State != Invalid {
		t.Fatalf("got %+v, want Invalid", res)
	}
	mustContain(t, "reason", res.Reason,
		"2 signatures found, none verified by authorities [release-key, backup-key]: ",
		"release-key: invalid signature", "backup-key: invalid signature")
}

// A registry failing on the signature tag is an error, never "unsigned".
func TestRegistryErrorIsError(t *testing.T) {
	host := testRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/manifests/sha256-") && strings.HasSuffix(r.URL.Path, ".sig") {
				http.Error(w, "backend exploded", http.StatusInternalServerError)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	ref := pushImage(t, host, "app")
	res := verifier().VerifySignatures(ctx, ref, []Authority{keyAuthority("release-key", newKey(t))})
	if res.State != Error {
		t.Fatalf("got %+v, want Error", res)
	}
	mustContain(t, "reason", res.Reason, "registry error: reading signatures of "+ref.DigestStr()+": ", "500 Internal Server Error")
}

func TestUnreachableRegistryIsError(t *testing.T) {
	host := testRegistry(t, nil)
	ref := pushImage(t, host, "app")
	// Nothing listens on port 1.
	gone, err := name.NewDigest("127.0.0.1:1/app@" + ref.DigestStr())
	if err != nil {
		t.Fatal(err)
	}
	v := verifier()
	v.RegistryOptions = append(v.RegistryOptions, remote.WithRetryBackoff(remote.Backoff{Steps: 1}))
	res := v.VerifySignatures(ctx, gone, []Authority{keyAuthority("release-key", newKey(t))})
	if res.State != Error {
		t.Fatalf("got %+v, want Error", res)
	}
	mustContain(t, "reason", res.Reason, "registry error: ", "connection refused")
}

func TestCancelledContextIsError(t *testing.T) {
	host := testRegistry(t, nil)
	ref := pushImage(t, host, "app")
	kp := newKey(t)
	if err := signtest.SignImage(ctx, ref, kp, writeOpts()...); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	res := verifier().VerifySignatures(cctx, ref, []Authority{keyAuthority("release-key", kp)})
	if res.State != Error {
		t.Fatalf("got %+v, want Error", res)
	}
	mustContain(t, "reason", res.Reason, "verification cancelled: context canceled")
}

func TestAuthorityConfigErrors(t *testing.T) {
	host := testRegistry(t, nil)
	ref := pushImage(t, host, "app")
	kp := newKey(t)
	if err := signtest.SignImage(ctx, ref, kp, writeOpts()...); err != nil {
		t.Fatal(err)
	}
	broken := Authority{Name: "broken", PublicKeyPEM: []byte("not a key"), IgnoreTlog: true}
	for _, tc := range []struct {
		name      string
		auths     []Authority
		wantState State
		want      []string
	}{
		{"no authorities", nil, Error, []string{"no authorities configured"}},
		{"only broken authorities", []Authority{broken}, Error,
			[]string{`authority configuration error: authority "broken": publicKey is not a valid PEM public key`}},
		{"broken and non-matching", []Authority{broken, keyAuthority("other", newKey(t))}, Error,
			[]string{`authority configuration error: authority "broken"`, "1 signature found, none verified by authorities [other]"}},
		// A working authority's verdict stands even if another one is misconfigured.
		{"broken and matching", []Authority{broken, keyAuthority("release-key", kp)}, Verified,
			[]string{"signature verified by authorities [release-key]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := verifier().VerifySignatures(ctx, ref, tc.auths)
			if res.State != tc.wantState {
				t.Fatalf("got %+v, want %s", res, tc.wantState)
			}
			mustContain(t, "reason", res.Reason, tc.want...)
		})
	}
}

// VerifyDigestSignature must work for any manifest kind in any repository.
func TestVerifyDigestSignatureAnyArtifact(t *testing.T) {
	host := testRegistry(t, nil)
	kp := newKey(t)

	idx, err := random.Index(64, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	idxTag, _ := name.NewTag(host + "/base/images:multi")
	if err := remote.WriteIndex(idxTag, idx, anon...); err != nil {
		t.Fatal(err)
	}
	idxDigest, _ := idx.Digest()

	// An SBOM referrer-style artifact: custom config media type, one SPDX layer.
	sbom := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), "application/vnd.example.sbom.config+json")
	sbom, err = mutate.Append(sbom, mutate.Addendum{Layer: static.NewLayer([]byte(`{"spdxVersion":"SPDX-2.3"}`), "application/spdx+json")})
	if err != nil {
		t.Fatal(err)
	}
	sbomTag, _ := name.NewTag(host + "/sboms/app:sbom")
	if err := remote.Write(sbomTag, sbom, anon...); err != nil {
		t.Fatal(err)
	}
	sbomDigest, _ := sbom.Digest()

	for _, ref := range []name.Digest{digestRef(t, idxTag.Context(), idxDigest), digestRef(t, sbomTag.Context(), sbomDigest)} {
		if res := verifier().VerifyDigestSignature(ctx, ref, []Authority{keyAuthority("k", kp)}); res.State != Unsigned {
			t.Errorf("%s before signing: %+v", ref, res)
		}
		if err := signtest.SignImage(ctx, ref, kp, writeOpts()...); err != nil {
			t.Fatal(err)
		}
		res := verifier().VerifyDigestSignature(ctx, ref, []Authority{keyAuthority("k", kp)})
		want := []Signer{keySigner(t, "k", kp)}
		if res.State != Verified || !reflect.DeepEqual(res.Signers, want) {
			t.Errorf("%s: got %+v", ref, res)
		}
	}
}

func TestSanitize(t *testing.T) {
	for in, want := range map[string]string{
		"GET https://user:secret@registry.example.com/v2/app/manifests/x?token=abc&scope=pull: UNAUTHORIZED": "GET https://registry.example.com/v2/app/manifests/x: UNAUTHORIZED",
		"Get \"http://10.0.0.1:5000/v2/\": dial tcp: refused":                                                "Get \"http://10.0.0.1:5000/v2/\": dial tcp: refused",
		"see https://example.com/a#frag.":                                                                    "see https://example.com/a.",
		"no url here":                                                                                        "no url here",
	} {
		if got := sanitize(in); got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
	}
}
