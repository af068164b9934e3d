package interop

import (
	"crypto/x509"
	"encoding/pem"
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

// keylessFiles writes a leaf's key (imported into cosign's format), certificate and chain.
type keylessFiles struct{ key, cert, chain string }

func writeLeaf(e *env, prefix string, leaf *signtest.Leaf) keylessFiles {
	e.t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(leaf.Key.PrivateKey)
	if err != nil {
		e.t.Fatal(err)
	}
	raw := e.file(prefix+"/leaf-raw.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	e.must(cosignV3, "import-key-pair", "--key", raw, "--output-key-prefix", e.home+"/"+prefix+"/leaf")
	return keylessFiles{
		key:   e.home + "/" + prefix + "/leaf.key",
		cert:  e.file(prefix+"/leaf.pem", leaf.CertPEM),
		chain: e.file(prefix+"/chain.pem", leaf.ChainPEM),
	}
}

// cosignTrustedRoot makes a trusted_root.json with `cosign trusted-root create`, the way
// private-Sigstore users do, so imagetrust reads the document cosign writes.
func cosignTrustedRoot(e *env, out string, services ...string) string {
	e.t.Helper()
	p := e.home + "/" + out
	e.must(cosignV3, append(append([]string{"trusted-root", "create"}, services...), "--out", p)...)
	return p
}

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
			f := writeLeaf(e, "leaf", leaf)
			trPath := cosignTrustedRoot(e, "trusted_root.json", "--fulcio", "url=https://fulcio.private.example,certificate-chain="+f.chain)
			tr, err := trustroot.FromJSON("private", e.read("trusted_root.json"))
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []tool{cosignV2, cosignV3} {
				t.Run(s.file, func(t *testing.T) {
					ref := pushImage(t, r.host, "keyless/"+s.file)
					flags := v3SignFlags
					if s == cosignV2 {
						flags = v2SignFlags
					}
					e.must(s, append(append([]string{"sign", "--key", f.key, "--certificate", f.cert, "--certificate-chain", f.chain}, flags...), ref.String())...)
					for _, id := range []verify.Identity{{Issuer: issuer, Subject: subject}, {Issuer: issuer, Subject: "someone-else@example.com"}} {
						args := []string{"verify", "--certificate-identity", id.Subject, "--certificate-oidc-issuer", id.Issuer, "--insecure-ignore-sct"}
						if s == cosignV2 {
							args = append(args, "--certificate-chain", f.chain)
						} else {
							args = append(args, "--trusted-root", trPath, "--allow-certificate-chain")
						}
						out, ok := e.run(s, append(append(args, verifyOffline...), ref.String())...)
						for _, a := range []verify.Authority{keylessAuthority(ca, nil, id), keylessAuthority(ca, tr, id)} {
							res := verifier().VerifySignatures(ctx, ref, []verify.Authority{a})
							agree(t, fmt.Sprintf("%s verify %s (trust root %v)", s.file, id.Subject, a.TrustRoot != nil), id.Subject == subject, ok, out, res.State, res.Reason)
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
