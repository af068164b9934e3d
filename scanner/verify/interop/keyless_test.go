package interop

import (
	"fmt"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/scanner/verify"
	"github.com/imagetrust/imagetrust/scanner/verify/signtest"
	"github.com/imagetrust/imagetrust/scanner/verify/trustroot"
)

const (
	subject = "release-bot@example.com"
	issuer  = "https://accounts.example.com"
)

func keylessAuthority(ca *signtest.CA, tr trustroot.Provider, id verify.Identity) verify.Authority {
	a := verify.Authority{Name: "ci", IgnoreTlog: true, TrustRoot: tr, Keyless: &verify.Keyless{Identities: []verify.Identity{id}, IgnoreSCT: true}}
	if tr == nil {
		a.Keyless.RootsPEM = ca.RootPEM
	}
	return a
}

// TestCosignKeylessPrivateCA signs with a private CA's leaf (key + certificate + chain) with
// cosign v2 (legacy) and v3 (bundle), and verifies with the right and a wrong identity, with
// inline roots and with a trusted_root.json made by cosign.
func TestCosignKeylessPrivateCA(t *testing.T) {
	now := time.Now()
	ca, err := signtest.NewCA("private")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.IssueLeaf(subject, issuer, now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range registries(t) {
		t.Run(r.name, func(t *testing.T) {
			e := newEnv(t)
			f := e.Leaf("leaf", leaf)
			trPath := e.TrustedRoot("trusted_root.json", "--fulcio", "url=https://fulcio.private.example,certificate-chain="+f.Chain)
			tr, err := trustroot.FromJSON("private", e.Read("trusted_root.json"))
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []tool{cosignV2, cosignV3} {
				t.Run(s.File, func(t *testing.T) {
					ref := pushImage(t, r.host, "keyless/"+s.File)
					flags := v3SignFlags
					if s == cosignV2 {
						flags = v2SignFlags
					}
					e.Must(s, append(append([]string{"sign", "--key", f.Key, "--certificate", f.Cert, "--certificate-chain", f.Chain}, flags...), ref.String())...)
					for _, id := range []verify.Identity{{Issuer: issuer, Subject: subject}, {Issuer: issuer, Subject: "someone-else@example.com"}} {
						args := []string{"verify", "--certificate-identity", id.Subject, "--certificate-oidc-issuer", id.Issuer, "--insecure-ignore-sct"}
						if s == cosignV2 {
							args = append(args, "--certificate-chain", f.Chain)
						} else {
							args = append(args, "--trusted-root", trPath, "--allow-certificate-chain")
						}
						out, ok := e.Run(s, append(append(args, verifyOffline...), ref.String())...)
						for _, a := range []verify.Authority{keylessAuthority(ca, nil, id), keylessAuthority(ca, tr, id)} {
							res := verifier().VerifySignatures(ctx, ref, []verify.Authority{a})
							agree(t, fmt.Sprintf("%s verify %s (trust root %v)", s.File, id.Subject, a.TrustRoot != nil), id.Subject == subject, ok, out, res.State, res.Reason)
							if res.State == verify.Verified && (res.Signers[0].Subject != subject || res.Signers[0].Issuer != issuer) {
								t.Errorf("signer %+v", res.Signers[0])
							}
						}
					}
				})
			}
		})
	}
}
