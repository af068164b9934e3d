package interop

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/scanner/verify"
	"github.com/imagetrust/imagetrust/scanner/verify/signtest"
	"github.com/imagetrust/imagetrust/scanner/verify/trustroot"
)

// TestTUFMirror distributes a private trusted root through a TUF mirror, the way air-gapped
// clusters mirror Sigstore's: cosign (`initialize --mirror --root`) and imagetrust's TUF
// provider both verify a keyless signature with it, and both refuse once the mirror is
// unreachable and nothing is cached.
func TestTUFMirror(t *testing.T) {
	ca, err := signtest.NewCA("tuf")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	leaf, err := ca.IssueLeaf(subject, issuer, now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	f := e.Leaf("leaf", leaf)
	e.TrustedRoot("trusted_root.json", "--fulcio", "url=https://fulcio.private.example,certificate-chain="+f.Chain)
	repo, err := signtest.NewTUFRepo(t.TempDir(), map[string][]byte{trustroot.TrustedRootTarget: e.Read("trusted_root.json")}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rootJSON := e.File("tuf-root.json", repo.RootJSON)
	srv := httptest.NewServer(http.FileServer(http.Dir(repo.Dir)))
	defer srv.Close()

	host := ggcrRegistry(t)
	ref := pushImage(t, host, "tuf/app")
	e.Must(cosignV3, append(append([]string{"sign", "--key", f.Key, "--certificate", f.Cert, "--certificate-chain", f.Chain}, v3SignFlags...), ref.String())...)
	verifyArgs := append([]string{"verify", "--certificate-identity", subject, "--certificate-oidc-issuer", issuer,
		"--insecure-ignore-sct", "--allow-certificate-chain"}, append(verifyOffline, ref.String())...)
	id := verify.Identity{Issuer: issuer, Subject: subject}

	check := func(e *env, want bool, what string) {
		t.Helper()
		out, ok := e.Run(cosignV3, "initialize", "--mirror", srv.URL, "--root", rootJSON)
		if ok {
			out, ok = e.Run(cosignV3, verifyArgs...)
		}
		p, err := trustroot.NewTUF(trustroot.TUFConfig{Name: "mirror", MirrorURL: srv.URL, InitialRoot: repo.RootJSON, CacheDir: t.TempDir(), LoadTimeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		_ = p.Load(ctx) // a failure shows in the verification
		res := verifier().VerifySignatures(ctx, ref, []verify.Authority{keylessAuthority(ca, p, id)})
		agree(t, what, want, ok, out, res.State, res.Reason)
		if !want && res.State != verify.Error {
			t.Errorf("%s: an unavailable trust root must be an Error, got %s", what, res.State)
		}
	}
	check(e, true, "TUF mirror reachable")
	srv.Close()
	check(newEnv(t), false, "TUF mirror unreachable, nothing cached")
}
