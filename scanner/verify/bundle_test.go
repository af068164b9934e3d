package verify

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imagetrust/imagetrust/scanner/verify/signtest"
	"github.com/imagetrust/imagetrust/scanner/verify/trustroot"
)

// layouts are the two ways registries store referrers: the OCI referrers API, and the
// "sha256-<hex>" tag-schema index clients write when a registry lacks it.
var layouts = []struct {
	name      string
	referrers bool
}{{"referrers-api", true}, {"tag-schema", false}}

func TestBundleKeySigned(t *testing.T) {
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			host := testRegistryWith(t, l.referrers, nil)
			ref := pushImage(t, host, "app")
			kp := newKey(t)
			if err := signtest.SignBundle(ctx, ref, kp, signtest.BundleOptions{}, writeOpts()...); err != nil {
				t.Fatal(err)
			}
			res := verifier().VerifySignatures(ctx, ref, []Authority{keyAuthority("release-key", kp)})
			want := Signer{Authority: "release-key", KeyFingerprint: kp.Fingerprint(), Format: FormatSigstoreBundle, TimeProof: "none: transparency log ignored"}
			if res.State != Verified || len(res.Signers) != 1 || res.Signers[0] != want {
				t.Fatalf("got %+v, want Verified by %+v", res, want)
			}
			mustContain(t, "reason", res.Reason, "cosign .sig tag: none", "Sigstore bundle referrers: 1 found, verified")
			// A signature bundle is not an attestation.
			if att := verifier().VerifyAttestations(ctx, ref, []Authority{keyAuthority("release-key", kp)}); att.State != Unsigned {
				t.Errorf("attestations: %+v", att)
			}
		})
	}
}

func TestBundleAndLegacyTogether(t *testing.T) {
	host := testRegistryWith(t, true, nil)
	ref := pushImage(t, host, "app")
	kp := newKey(t)
	if err := signtest.SignImage(ctx, ref, kp, writeOpts()...); err != nil {
		t.Fatal(err)
	}
	if err := signtest.SignBundle(ctx, ref, kp, signtest.BundleOptions{}, writeOpts()...); err != nil {
		t.Fatal(err)
	}
	res := verifier().VerifySignatures(ctx, ref, []Authority{keyAuthority("release-key", kp)})
	if res.State != Verified || len(res.Signers) != 2 || res.Signers[0].Format != FormatCosignLegacy || res.Signers[1].Format != FormatSigstoreBundle {
		t.Fatalf("got %+v, want one legacy and one bundle signer", res)
	}
	mustContain(t, "reason", res.Reason, "cosign .sig tag: 1 found, verified", "Sigstore bundle referrers: 1 found, verified")
}

// A legacy signature that verifies wins over a bundle that does not: any layout verifying for
// an authority is enough.
func TestBundleInvalidLegacyValid(t *testing.T) {
	host := testRegistryWith(t, true, nil)
	ref := pushImage(t, host, "app")
	kp := newKey(t)
	if err := signtest.SignImage(ctx, ref, kp, writeOpts()...); err != nil {
		t.Fatal(err)
	}
	if err := signtest.SignBundle(ctx, ref, newKey(t), signtest.BundleOptions{}, writeOpts()...); err != nil {
		t.Fatal(err)
	}
	res := verifier().VerifySignatures(ctx, ref, []Authority{keyAuthority("release-key", kp)})
	if res.State != Verified || len(res.Signers) != 1 || res.Signers[0].Format != FormatCosignLegacy {
		t.Fatalf("got %+v", res)
	}
	// Only the bundle, by the wrong key: Invalid, and the reason says why.
	res = verifier().VerifySignatures(ctx, ref, []Authority{keyAuthority("other", newKey(t))})
	if res.State != Invalid {
		t.Fatalf("got %+v, want Invalid", res)
	}
	mustContain(t, "reason", res.Reason, "2 signatures found, none verified by authorities [other]", "Sigstore bundle sha256:", "failed to verify signature")
}

func TestBundleNegatives(t *testing.T) {
	host := testRegistryWith(t, true, nil)
	kp := newKey(t)
	auth := []Authority{keyAuthority("release-key", kp)}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, ref name.Digest)
		state State
		want  []string
	}{
		{"wrong key", func(t *testing.T, ref name.Digest) {
			mustDo(t, signtest.SignBundle(ctx, ref, newKey(t), signtest.BundleOptions{}, writeOpts()...))
		}, Invalid, []string{"1 signature found, none verified", "failed to verify signature"}},
		{"copied from another digest", func(t *testing.T, ref name.Digest) {
			other := pushImage(t, host, "other")
			b, err := signtest.NewBundle(ctx, other, signtest.CosignSignPredicateType, []byte(`{}`), kp, signtest.BundleOptions{})
			mustDo(t, err)
			mustDo(t, signtest.WriteBundle(ctx, ref, b, signtest.CosignSignPredicateType, writeOpts()...))
		}, Invalid, []string{"1 signature found, none verified", "provided artifact digest does not match any digest in statement"}},
		{"flipped byte in the signature", func(t *testing.T, ref name.Digest) {
			b, err := signtest.NewBundle(ctx, ref, signtest.CosignSignPredicateType, []byte(`{}`), kp, signtest.BundleOptions{})
			mustDo(t, err)
			mustDo(t, signtest.WriteBundle(ctx, ref, flipSignatureByte(t, b), signtest.CosignSignPredicateType, writeOpts()...))
		}, Invalid, []string{"1 signature found, none verified", "invalid DSSE envelope signature"}},
		{"unreadable bundle", func(t *testing.T, ref name.Digest) {
			mustDo(t, signtest.WriteBundle(ctx, ref, []byte(`{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "garbage": true}`), signtest.CosignSignPredicateType, writeOpts()...))
		}, Error, []string{"unreadable Sigstore bundle sha256:"}},
		{"log required, bundle has no proof", func(t *testing.T, ref name.Digest) {
			mustDo(t, signtest.SignBundle(ctx, ref, kp, signtest.BundleOptions{}, writeOpts()...))
		}, Invalid, []string{"transparency-log proof is required but the bundle carries no Rekor entry and no RFC 3161 timestamp"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := pushImage(t, host, fmt.Sprintf("neg/%d", len(tc.name)))
			tc.setup(t, ref)
			auths := auth
			if strings.HasPrefix(tc.name, "log required") {
				a := keyAuthority("release-key", kp)
				a.IgnoreTlog = false
				auths = []Authority{a}
			}
			res := verifier().VerifySignatures(ctx, ref, auths)
			if res.State != tc.state || len(res.Signers) != 0 {
				t.Fatalf("got %+v, want %s", res, tc.state)
			}
			mustContain(t, "reason", res.Reason, tc.want...)
		})
	}
}

func TestBundleKeyless(t *testing.T) {
	const subject, issuer = "release-bot@example.com", "https://accounts.example.com"
	now := time.Now()
	ca := newCA(t, "test")
	good := issue(t, ca, subject, issuer, now.Add(-time.Minute), now.Add(10*time.Minute))
	// Expired ten minutes ago; it was valid when the TSA stamped the signature 15 minutes ago.
	expired := issue(t, ca, subject, issuer, now.Add(-time.Hour), now.Add(-10*time.Minute))
	tsa, err := signtest.NewTSA("test")
	mustDo(t, err)
	tsa.SetTime(func() time.Time { return now.Add(-15 * time.Minute) })
	trJSON, err := signtest.TrustedRoot{CAs: []*signtest.CA{ca}, TSAs: []*signtest.TSA{tsa}}.JSON()
	mustDo(t, err)
	tr, err := trustroot.FromJSON("test-root", trJSON)
	mustDo(t, err)

	exact := Identity{Issuer: issuer, Subject: subject}
	host := testRegistryWith(t, true, nil)
	withRoot := func(a Authority) Authority { a.TrustRoot, a.Keyless.RootsPEM = tr, nil; return a }
	for i, tc := range []struct {
		name  string
		leaf  *signtest.Leaf
		opts  signtest.BundleOptions
		auth  Authority
		state State
		proof string
		want  string
	}{
		{name: "inline roots, chain in the bundle", leaf: good, auth: keylessAuthority("ci", ca, exact),
			state: Verified, proof: "none: transparency log ignored, certificate checked at verification time"},
		{name: "trust root", leaf: good, auth: withRoot(keylessAuthority("ci", ca, exact)),
			state: Verified, proof: "none: transparency log ignored, certificate checked at verification time"},
		{name: "pinned intermediates exclude the bundle's chain", leaf: good,
			auth: func() Authority {
				a := keylessAuthority("ci", ca, exact)
				a.Keyless.IntermediatesPEM = newCA(t, "elsewhere").IntermediatePEM
				return a
			}(), state: Invalid, want: "leaf certificate verification failed"},
		{name: "pinned intermediates", leaf: good,
			auth: func() Authority {
				a := keylessAuthority("ci", ca, exact)
				a.Keyless.IntermediatesPEM = ca.IntermediatePEM
				return a
			}(), state: Verified, proof: "none: transparency log ignored, certificate checked at verification time"},
		{name: "wrong identity", leaf: good, auth: keylessAuthority("ci", ca, Identity{Issuer: issuer, Subject: "someone@example.com"}),
			state: Invalid, want: "failed to verify certificate identity"},
		{name: "untrusted CA", leaf: good, auth: keylessAuthority("ci", newCA(t, "other"), exact),
			state: Invalid, want: "leaf certificate verification failed (the certificate does not chain to a trusted root at the proven signing time)"},
		{name: "expired, no time proof", leaf: expired, auth: keylessAuthority("ci", ca, exact),
			state: Invalid, want: "no trusted timestamp or log entry proves a signing time within its validity"},
		{name: "expired, TSA not trusted", leaf: expired, opts: signtest.BundleOptions{TSA: tsa}, auth: keylessAuthority("ci", ca, exact),
			state: Invalid, want: "leaf certificate verification failed"},
		{name: "expired, timestamp by a trusted TSA inside validity", leaf: expired, opts: signtest.BundleOptions{TSA: tsa},
			auth: withRoot(keylessAuthority("ci", ca, exact)), state: Verified, proof: "RFC 3161 timestamp by https://tsa.signtest.local at " + now.Add(-15*time.Minute).UTC().Format(time.RFC3339)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := pushImage(t, host, fmt.Sprintf("keyless/%d", i))
			mustDo(t, signtest.SignBundle(ctx, ref, tc.leaf, tc.opts, writeOpts()...))
			res := verifier().VerifySignatures(ctx, ref, []Authority{tc.auth})
			if res.State != tc.state {
				t.Fatalf("state = %s (%s), want %s", res.State, res.Reason, tc.state)
			}
			if tc.state != Verified {
				mustContain(t, "reason", res.Reason, tc.want)
				return
			}
			want := keylessSigner(t, "ci", tc.leaf, subject, issuer, FormatSigstoreBundle, tc.proof)
			if len(res.Signers) != 1 || res.Signers[0] != want {
				t.Errorf("signers = %+v, want %+v", res.Signers, want)
			}
		})
	}
}

func TestBundleRekorV1(t *testing.T) {
	host := testRegistryWith(t, false, nil)
	kp := newKey(t)
	rekor, err := signtest.NewRekor()
	mustDo(t, err)
	rekor.LogIndex = 7
	now := time.Now()
	ca := newCA(t, "test")
	const subject, issuer = "dev@example.com", "https://issuer.example.com"
	expiredLeaf := issue(t, ca, subject, issuer, now.Add(-time.Hour), now.Add(-50*time.Minute))
	inWindow := &signtest.Rekor{Key: rekor.Key, IntegratedTime: now.Add(-55 * time.Minute), LogIndex: 9}
	afterExpiry := &signtest.Rekor{Key: rekor.Key, IntegratedTime: now.Add(-10 * time.Minute), LogIndex: 10}
	otherRekor, err := signtest.NewRekor()
	mustDo(t, err)

	withLog := func(a Authority, r *signtest.Rekor) Authority {
		a.IgnoreTlog, a.RekorPublicKeyPEM = false, r.Key.PublicPEM
		return a
	}
	for i, tc := range []struct {
		name   string
		signer signtest.Signer
		log    *signtest.Rekor
		auth   Authority
		state  State
		want   string
	}{
		{"key, logged", kp, rekor, withLog(keyAuthority("k", kp), rekor), Verified, "rekor v1 log index 7, integrated "},
		{"key, logged in an untrusted log", kp, otherRekor, withLog(keyAuthority("k", kp), rekor), Invalid, "not enough verified log entries from transparency log: 0 < 1"},
		{"expired cert, logged while valid", expiredLeaf, inWindow, withLog(keylessAuthority("ci", ca, Identity{Issuer: issuer, Subject: subject}), rekor), Verified,
			"rekor v1 log index 9, integrated " + now.Add(-55*time.Minute).UTC().Format(time.RFC3339)},
		{"expired cert, logged after expiry", expiredLeaf, afterExpiry, withLog(keylessAuthority("ci", ca, Identity{Issuer: issuer, Subject: subject}), rekor), Invalid,
			"integrated time outside certificate validity"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := pushImage(t, host, fmt.Sprintf("rekor/%d", i))
			mustDo(t, signtest.SignBundle(ctx, ref, tc.signer, signtest.BundleOptions{Rekor: tc.log}, writeOpts()...))
			res := verifier().VerifySignatures(ctx, ref, []Authority{tc.auth})
			if res.State != tc.state {
				t.Fatalf("state = %s (%s), want %s", res.State, res.Reason, tc.state)
			}
			if tc.state == Verified {
				mustContain(t, "time proof", res.Signers[0].TimeProof, tc.want)
				return
			}
			mustContain(t, "reason", res.Reason, tc.want)
		})
	}
}

func TestBundleRekorV2(t *testing.T) {
	host := testRegistryWith(t, true, nil)
	kp := newKey(t)
	log, err := signtest.NewRekorV2()
	mustDo(t, err)
	forged, err := signtest.NewRekorV2() // same URL, another key: its checkpoints are not the log's
	mustDo(t, err)
	tsa, err := signtest.NewTSA("test")
	mustDo(t, err)
	now := time.Now()
	ca := newCA(t, "test")
	leaf := issue(t, ca, "dev@example.com", "https://issuer.example.com", now.Add(-time.Minute), now.Add(10*time.Minute))
	trJSON, err := signtest.TrustedRoot{CAs: []*signtest.CA{ca}, RekorV2: []*signtest.RekorV2{log}, TSAs: []*signtest.TSA{tsa}}.JSON()
	mustDo(t, err)
	tr, err := trustroot.FromJSON("rekor-v2", trJSON)
	mustDo(t, err)
	keyAuth := Authority{Name: "k", PublicKeyPEM: kp.PublicPEM, TrustRoot: tr}
	keyless := Authority{Name: "ci", TrustRoot: tr, Keyless: &Keyless{Identities: []Identity{{Issuer: "https://issuer.example.com", Subject: "dev@example.com"}}, IgnoreSCT: true}}
	inlineOnly := Authority{Name: "k", PublicKeyPEM: kp.PublicPEM, RekorPublicKeyPEM: log.Key.PublicPEM}
	for i, tc := range []struct {
		name   string
		signer signtest.Signer
		opts   signtest.BundleOptions
		auth   Authority
		state  State
		want   string
	}{
		{"key", kp, signtest.BundleOptions{RekorV2: log}, keyAuth, Verified, "rekor v2 log index 5 (inclusion proof, checkpoint)"},
		{"keyless with a timestamp", leaf, signtest.BundleOptions{RekorV2: log, TSA: tsa, LeafOnly: true}, keyless, Verified, "rekor v2 log index 5 (inclusion proof, checkpoint); RFC 3161 timestamp by https://tsa.signtest.local"},
		// Rekor v2 records no time: a certificate needs a trusted timestamp.
		{"keyless without a timestamp", leaf, signtest.BundleOptions{RekorV2: log, LeafOnly: true}, keyless, Invalid, "threshold not met for verified signed & log entry integrated timestamps: 0 < 1"},
		{"checkpoint not signed by the log", kp, signtest.BundleOptions{RekorV2: forged}, keyAuth, Invalid, "not enough verified log entries"},
		{"log key without URL", kp, signtest.BundleOptions{RekorV2: log}, inlineOnly, Invalid, "cannot verify Rekor v2 entry without baseUrl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := pushImage(t, host, fmt.Sprintf("rekorv2/%d", i))
			mustDo(t, signtest.SignBundle(ctx, ref, tc.signer, tc.opts, writeOpts()...))
			res := verifier().VerifySignatures(ctx, ref, []Authority{tc.auth})
			if res.State != tc.state {
				t.Fatalf("state = %s (%s), want %s", res.State, res.Reason, tc.state)
			}
			if tc.state == Verified {
				mustContain(t, "time proof", res.Signers[0].TimeProof, tc.want)
				return
			}
			mustContain(t, "reason", res.Reason, tc.want)
		})
	}
}

func TestBundleAttestations(t *testing.T) {
	host := testRegistryWith(t, false, nil)
	ref := pushImage(t, host, "app")
	kp := newKey(t)
	auth := []Authority{keyAuthority("release-key", kp)}
	preds := []struct{ typ, body string }{
		{"https://spdx.dev/Document", spdxDoc},
		{"https://cyclonedx.org/bom", `{"bomFormat":"CycloneDX","specVersion":"1.5","components":[]}`},
		{"https://slsa.dev/provenance/v1", `{"buildDefinition":{"buildType":"https://example.com/build"},"runDetails":{"builder":{"id":"https://ci.example.com/builder@v1"}}}`},
	}
	for _, p := range preds {
		mustDo(t, signtest.AttestBundle(ctx, ref, ref, p.typ, []byte(p.body), kp, signtest.BundleOptions{}, writeOpts()...))
	}
	res := verifier().VerifyAttestations(ctx, ref, auth)
	if res.State != Verified || len(res.Attestations) != 3 {
		t.Fatalf("got %+v, want three verified attestations", res)
	}
	got := map[string]Attestation{}
	for _, a := range res.Attestations {
		got[a.PredicateType] = a
		if a.Signer.Format != FormatSigstoreBundle || a.Signer.KeyFingerprint != kp.Fingerprint() {
			t.Errorf("signer = %+v", a.Signer)
		}
	}
	if f, doc, ok := SBOMFromAttestation(got["https://spdx.dev/Document"]); !ok || f != FormatSPDXJSON || !bytes.Equal(doc, compact(t, spdxDoc)) {
		t.Errorf("SPDX: %q %s %v", f, doc, ok)
	}
	if f, _, ok := SBOMFromAttestation(got["https://cyclonedx.org/bom"]); !ok || f != FormatCycloneDXJSON {
		t.Errorf("CycloneDX: %q %v", f, ok)
	}
	if p, ok := ProvenanceFromAttestation(got["https://slsa.dev/provenance/v1"]); !ok || p.BuilderID != "https://ci.example.com/builder@v1" {
		t.Errorf("SLSA: %+v %v", p, ok)
	}
	// Attestations are not signatures.
	if s := verifier().VerifySignatures(ctx, ref, auth); s.State != Unsigned {
		t.Errorf("signatures: %+v", s)
	}

	// An attestation about another image, stored as this one's referrer, is rejected.
	victim := pushImage(t, host, "victim")
	b, err := signtest.NewBundle(ctx, ref, "https://spdx.dev/Document", []byte(spdxDoc), kp, signtest.BundleOptions{})
	mustDo(t, err)
	mustDo(t, signtest.WriteBundle(ctx, victim, b, "https://spdx.dev/Document", writeOpts()...))
	res = verifier().VerifyAttestations(ctx, victim, auth)
	if res.State != Invalid || len(res.Attestations) != 0 {
		t.Fatalf("copied attestation: %+v", res)
	}
	mustContain(t, "reason", res.Reason, "1 attestation found, none verified", "provided artifact digest does not match any digest in statement")
}

func TestVerifyImageListsReferrersOnce(t *testing.T) {
	var listings int
	host := testRegistryWith(t, true, countPath(&listings, "/referrers/"))
	ref := pushImage(t, host, "app")
	kp := newKey(t)
	mustDo(t, signtest.SignBundle(ctx, ref, kp, signtest.BundleOptions{}, writeOpts()...))
	mustDo(t, signtest.AttestBundle(ctx, ref, ref, "https://spdx.dev/Document", []byte(spdxDoc), kp, signtest.BundleOptions{}, writeOpts()...))
	listings = 0
	sig, att := verifier().VerifyImage(ctx, ref, []Authority{keyAuthority("k", kp)})
	if sig.State != Verified || att.State != Verified || len(att.Attestations) != 1 {
		t.Fatalf("signature %+v, attestations %+v", sig, att)
	}
	if listings != 1 {
		t.Errorf("VerifyImage listed referrers %d times, want 1", listings)
	}
}

func TestTrustRootUnavailableIsError(t *testing.T) {
	host := testRegistryWith(t, true, nil)
	kp := newKey(t)
	tuf, err := trustroot.NewTUF(trustroot.TUFConfig{Name: "mirror", MirrorURL: "http://127.0.0.1:1/tuf", CacheDir: t.TempDir()})
	mustDo(t, err)
	a := Authority{Name: "k", PublicKeyPEM: newKey(t).PublicPEM, TrustRoot: tuf, IgnoreTlog: true}
	for _, layout := range []string{"bundle", "legacy"} {
		t.Run(layout, func(t *testing.T) {
			ref := pushImage(t, host, "unavailable/"+layout)
			if layout == "bundle" {
				mustDo(t, signtest.SignBundle(ctx, ref, kp, signtest.BundleOptions{}, writeOpts()...))
			} else {
				mustDo(t, signtest.SignImage(ctx, ref, kp, writeOpts()...))
			}
			res := verifier().VerifySignatures(ctx, ref, []Authority{a})
			if res.State != Error {
				t.Fatalf("got %+v, want Error", res)
			}
			mustContain(t, "reason", res.Reason, `trust root "mirror" unavailable: not loaded yet`)
			// Another authority verifying is still a verdict.
			if res := verifier().VerifySignatures(ctx, ref, []Authority{a, keyAuthority("release", kp)}); res.State != Verified {
				t.Fatalf("got %+v, want Verified", res)
			}
		})
	}
}

// A referrer listed under an image whose manifest names another subject is not taken as the
// image's: the tag-schema index is a writable tag.
func TestBundleListedUnderAnotherSubject(t *testing.T) {
	host := testRegistryWith(t, false, nil)
	x, y := pushImage(t, host, "app"), pushImage(t, host, "app") // two images, one repository
	kp := newKey(t)
	b, err := signtest.NewBundle(ctx, x, signtest.CosignSignPredicateType, []byte(`{}`), kp, signtest.BundleOptions{})
	mustDo(t, err)
	mustDo(t, signtest.WriteBundle(ctx, y, b, signtest.CosignSignPredicateType, writeOpts()...))
	// Copy y's tag-schema index to x's: x now lists a bundle whose manifest says it is y's.
	idx, err := remote.Get(y.Context().Tag(strings.Replace(y.DigestStr(), ":", "-", 1)), anon...)
	mustDo(t, err)
	mustDo(t, remote.Put(x.Context().Tag(strings.Replace(x.DigestStr(), ":", "-", 1)), rawManifest{raw: idx.Manifest, mt: idx.MediaType}, anon...))
	res := verifier().VerifySignatures(ctx, x, []Authority{keyAuthority("k", kp)})
	if res.State != Invalid {
		t.Fatalf("got %+v, want Invalid", res)
	}
	mustContain(t, "reason", res.Reason, "referrer subject is "+y.DigestStr()+", not "+x.DigestStr())
}

// flipSignatureByte flips one bit of the DSSE signature inside bundle JSON.
func flipSignatureByte(t *testing.T, b []byte) []byte {
	t.Helper()
	var doc map[string]any
	mustDo(t, json.Unmarshal(b, &doc))
	sig := doc["dsseEnvelope"].(map[string]any)["signatures"].([]any)[0].(map[string]any)
	raw, err := base64.StdEncoding.DecodeString(sig["sig"].(string))
	mustDo(t, err)
	raw[len(raw)/2] ^= 0x01
	sig["sig"] = base64.StdEncoding.EncodeToString(raw)
	out, err := json.Marshal(doc)
	mustDo(t, err)
	return out
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// An unreadable bundle is an Error for the kind its manifest claims and no concern of the
// other: a broken SBOM attestation does not make the image's signature state unknown.
func TestUnreadableBundleCountsForItsKind(t *testing.T) {
	var blobs int
	host := testRegistryWith(t, true, countPath(&blobs, "/blobs/"))
	ref := pushImage(t, host, "app")
	kp := newKey(t)
	mustDo(t, signtest.WriteBundle(ctx, ref, []byte(`{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}`), "https://spdx.dev/Document", writeOpts()...))
	blobs = 0
	sig, att := verifier().VerifyImage(ctx, ref, []Authority{keyAuthority("k", kp)})
	if sig.State != Unsigned {
		t.Errorf("signatures: %+v", sig)
	}
	if att.State != Error {
		t.Errorf("attestations: %+v", att)
	}
	mustContain(t, "attestation reason", att.Reason, "unreadable Sigstore bundle sha256:")
	if blobs != 1 {
		t.Errorf("the bundle blob was fetched %d times, want once", blobs)
	}
}
