package verify

import (
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/scanner/verify/signtest"
	"github.com/imagetrust/imagetrust/scanner/verify/trustroot"
)

// A trust root serves the cosign tag layout too: Fulcio CAs for keyless certificates and Rekor
// logs for signed entry timestamps, with nothing pasted inline.
func TestTrustRootForLegacySignatures(t *testing.T) {
	host := testRegistry(t, nil)
	now := time.Now()
	ca := newCA(t, "fulcio")
	rekor, err := signtest.NewRekor()
	mustDo(t, err)
	doc, err := signtest.TrustedRoot{CAs: []*signtest.CA{ca}, Rekor: []*signtest.Rekor{rekor}}.JSON()
	mustDo(t, err)
	tr, err := trustroot.FromJSON("private-sigstore", doc)
	mustDo(t, err)
	otherDoc, err := signtest.TrustedRoot{CAs: []*signtest.CA{newCA(t, "other")}}.JSON()
	mustDo(t, err)
	other, err := trustroot.FromJSON("other", otherDoc)
	mustDo(t, err)

	const subject, issuer = "ci@example.com", "https://issuer.example.com"
	leaf := issue(t, ca, subject, issuer, now.Add(-time.Minute), now.Add(time.Hour))
	kp := newKey(t)
	keyless := func(p trustroot.Provider) Authority {
		return Authority{Name: "ci", TrustRoot: p, Keyless: &Keyless{Identities: []Identity{{Issuer: issuer, Subject: subject}}, IgnoreSCT: true}}
	}

	t.Run("keyless, logged", func(t *testing.T) {
		ref := pushImage(t, host, "legacy/keyless")
		mustDo(t, signtest.Sign(ctx, ref, leaf, &signtest.Rekor{Key: rekor.Key, LogIndex: 3}, writeOpts()...))
		res := verifier().VerifySignatures(ctx, ref, []Authority{keyless(tr)})
		if res.State != Verified || res.Signers[0].Subject != subject || res.Signers[0].TimeProof != "rekor v1 log index 3 (signed entry timestamp)" {
			t.Fatalf("got %+v", res)
		}
		if res := verifier().VerifySignatures(ctx, ref, []Authority{keyless(other)}); res.State != Invalid {
			t.Errorf("another trust root: %+v", res)
		}
	})
	t.Run("key, logged", func(t *testing.T) {
		ref := pushImage(t, host, "legacy/key")
		mustDo(t, signtest.Sign(ctx, ref, kp, rekor, writeOpts()...))
		a := Authority{Name: "k", PublicKeyPEM: kp.PublicPEM, TrustRoot: tr}
		if res := verifier().VerifySignatures(ctx, ref, []Authority{a}); res.State != Verified {
			t.Fatalf("got %+v", res)
		}
		// The log's key is not in the other root: no proof.
		a.TrustRoot = other
		if res := verifier().VerifySignatures(ctx, ref, []Authority{a}); res.State != Invalid {
			t.Errorf("another trust root: %+v", res)
		}
	})
}

func TestAuthorityWithTrustRootValidates(t *testing.T) {
	doc, err := signtest.TrustedRoot{CAs: []*signtest.CA{newCA(t, "x")}}.JSON()
	mustDo(t, err)
	tr, err := trustroot.FromJSON("x", doc)
	mustDo(t, err)
	ok := Authority{Name: "ci", TrustRoot: tr, Keyless: &Keyless{Identities: []Identity{{Issuer: "https://i", Subject: "s"}}}}
	if err := ok.Validate(); err != nil {
		t.Errorf("keyless with a trust root and no roots: %v", err)
	}
	noRoots := Authority{Name: "ci", Keyless: &Keyless{Identities: []Identity{{Issuer: "https://i", Subject: "s"}}}}
	if err := noRoots.Validate(); err == nil {
		t.Error("keyless with neither roots nor a trust root accepted")
	}
	notation := Authority{Name: "n", TrustRoot: tr, Notation: &Notation{TrustStorePEM: newCA(t, "y").RootPEM}}
	if err := notation.Validate(); err == nil {
		t.Error("notation authority with a Sigstore trust root accepted")
	}
}
