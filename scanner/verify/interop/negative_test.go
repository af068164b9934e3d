package interop

import (
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"

	"github.com/imagetrust/imagetrust/internal/upstream"
	"github.com/imagetrust/imagetrust/scanner/verify"
	"github.com/imagetrust/imagetrust/scanner/verify/signtest"
)

// TestCosignTampering copies genuine signatures onto another image and flips bytes in them;
// cosign and imagetrust must both refuse every case, imagetrust with Invalid or Error.
func TestCosignTampering(t *testing.T) {
	for _, r := range registries(t) {
		t.Run(r.name, func(t *testing.T) {
			e := newEnv(t)
			key, pub := e.CosignKey("release")
			auth := []verify.Authority{keyAuthority(t, "release", pub)}
			check := func(t *testing.T, what string, s tool, ref string, res verify.SignatureResult) {
				t.Helper()
				args := append([]string{"verify", "--key", pub}, verifyOffline...)
				out, ok := e.Run(s, append(args, ref)...)
				agree(t, what, false, ok, out, res.State, res.Reason)
			}

			t.Run("v3 bundle copied from another digest", func(t *testing.T) {
				a, b := pushImage(t, r.host, "copy/bundle-a"), pushImage(t, r.host, "copy/bundle-b")
				e.Must(cosignV3, append(append([]string{"sign", "--key", key}, v3SignFlags...), a.String())...)
				upstream.CopyReferrers(t, a, b, anon...)
				check(t, "cosign v3 verify", cosignV3, b.String(), verifier().VerifySignatures(ctx, b, auth))
			})
			t.Run("v2 signature copied from another digest", func(t *testing.T) {
				a, b := pushImage(t, r.host, "copy/sig-a"), pushImage(t, r.host, "copy/sig-b")
				e.Must(cosignV2, append(append([]string{"sign", "--key", key}, v2SignFlags...), a.String())...)
				copySignatureTag(t, a, b)
				check(t, "cosign v2 verify", cosignV2, b.String(), verifier().VerifySignatures(ctx, b, auth))
			})
			t.Run("v3 bundle with a flipped byte", func(t *testing.T) {
				c := pushImage(t, r.host, "flip/bundle")
				e.Must(cosignV3, append(append([]string{"sign", "--key", key, "--bundle", "flip.bundle.json", "--upload=false"}, v3SignFlags...), c.String())...)
				flipped := flipDSSESignature(t, e.Read("flip.bundle.json"))
				if err := signtest.WriteBundle(ctx, c, flipped, signtest.CosignSignPredicateType, writeOpts()...); err != nil {
					t.Fatal(err)
				}
				check(t, "cosign v3 verify", cosignV3, c.String(), verifier().VerifySignatures(ctx, c, auth))
			})
			t.Run("v2 signature with a changed payload", func(t *testing.T) {
				d := pushImage(t, r.host, "flip/sig")
				e.Must(cosignV2, append(append([]string{"sign", "--key", key}, v2SignFlags...), d.String())...)
				if err := signtest.TamperSignaturePayload(ctx, d, writeOpts()...); err != nil {
					t.Fatal(err)
				}
				check(t, "cosign v2 verify", cosignV2, d.String(), verifier().VerifySignatures(ctx, d, auth))
			})
		})
	}
}

// copySignatureTag copies a's .sig manifest (and its blobs) to b's .sig tag.
func copySignatureTag(t *testing.T, a, b interface{ String() string }) {
	t.Helper()
	ad, bd := mustDigest(t, a.String()), mustDigest(t, b.String())
	sigA, err := ociremote.SignatureTag(ad)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(sigA, anon...)
	if err != nil {
		t.Fatal(err)
	}
	sigB, err := ociremote.SignatureTag(bd)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(sigB, img, anon...); err != nil {
		t.Fatal(err)
	}
}

// flipDSSESignature flips one bit in the DSSE signature of bundle JSON.
func flipDSSESignature(t *testing.T, b []byte) []byte {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	sig := doc["dsseEnvelope"].(map[string]any)["signatures"].([]any)[0].(map[string]any)
	raw, err := base64.StdEncoding.DecodeString(sig["sig"].(string))
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)/2] ^= 0x01
	sig["sig"] = base64.StdEncoding.EncodeToString(raw)
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
