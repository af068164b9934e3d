package interop

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/scanner/verify"
	"github.com/imagetrust/imagetrust/scanner/verify/signtest"
	"github.com/imagetrust/imagetrust/scanner/verify/trustroot"
)

// TestExpiredCertificate signs with a short-lived private-CA certificate, once with an RFC
// 3161 timestamp from a local TSA and once without, and verifies after the certificate
// expired: only the timestamped signature may verify, for cosign and for imagetrust.
func TestExpiredCertificate(t *testing.T) {
	tsa, err := signtest.NewTSA("interop")
	if err != nil {
		t.Fatal(err)
	}
	tsaSrv := httptest.NewServer(tsa)
	defer tsaSrv.Close()
	ca, err := signtest.NewCA("short-lived")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	leaf, err := ca.IssueLeaf(subject, issuer, now.Add(-time.Minute), now.Add(8*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	f := e.Leaf("leaf", leaf)
	tsaChain := e.File("tsa-chain.pem", tsa.ChainPEM)
	trPath := e.TrustedRoot("trusted_root.json",
		"--fulcio", "url=https://fulcio.private.example,certificate-chain="+f.Chain,
		"--tsa", "url="+tsaSrv.URL+",certificate-chain="+tsaChain)
	tr, err := trustroot.FromJSON("private", e.Read("trusted_root.json"))
	if err != nil {
		t.Fatal(err)
	}

	type signed struct {
		reg     reg
		ref     string
		stamped bool
	}
	var images []signed
	for _, r := range registries(t) {
		for _, stamped := range []bool{false, true} {
			ref := pushImage(t, r.host, "expiring/"+map[bool]string{false: "plain", true: "stamped"}[stamped])
			args := append([]string{"sign", "--key", f.Key, "--certificate", f.Cert, "--certificate-chain", f.Chain}, v3SignFlags...)
			if stamped {
				args = append(args, "--timestamp-server-url", tsaSrv.URL)
			}
			e.Must(cosignV3, append(args, ref.String())...)
			images = append(images, signed{r, ref.String(), stamped})
		}
	}
	time.Sleep(time.Until(leaf.Cert.NotAfter.Add(time.Second)))

	id := verify.Identity{Issuer: issuer, Subject: subject}
	for _, im := range images {
		ref := mustDigest(t, im.ref)
		out, ok := e.Run(cosignV3, append([]string{"verify", "--trusted-root", trPath, "--use-signed-timestamps", "--allow-certificate-chain",
			"--certificate-identity", subject, "--certificate-oidc-issuer", issuer, "--insecure-ignore-sct"}, append(verifyOffline, im.ref)...)...)
		res := verifier().VerifySignatures(ctx, ref, []verify.Authority{keylessAuthority(ca, tr, id)})
		what := im.reg.name + map[bool]string{false: ": expired certificate, no time proof", true: ": expired certificate, timestamped while valid"}[im.stamped]
		agree(t, what, im.stamped, ok, out, res.State, res.Reason)
		if res.State == verify.Verified {
			mustContainStr(t, res.Signers[0].TimeProof, "RFC 3161 timestamp by "+tsaSrv.URL)
		}
		// Inline roots trust no TSA: the timestamp proves nothing, the certificate is expired.
		if inline := verifier().VerifySignatures(ctx, ref, []verify.Authority{keylessAuthority(ca, nil, id)}); inline.State != verify.Invalid {
			t.Errorf("%s with inline roots: %s (%s)", what, inline.State, inline.Reason)
		}
	}
}

func mustContainStr(t *testing.T, got, want string) {
	t.Helper()
	if !strings.Contains(got, want) {
		t.Errorf("%q does not contain %q", got, want)
	}
}
