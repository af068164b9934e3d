package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/imagetrust/imagetrust/internal/upstream"
	"github.com/imagetrust/imagetrust/scanner/registry/registrytest"
	"github.com/imagetrust/imagetrust/scanner/verify/signtest"
	"github.com/imagetrust/imagetrust/scanner/verify/trustroot"
)

const (
	cliSubject = "release-bot@example.com"
	cliIssuer  = "https://accounts.example.com"
)

// offlineClient stands for a machine without egress: only loopback answers, and every other
// host asked for is recorded.
type offlineClient struct {
	mu    sync.Mutex
	hosts []string
}

func (o *offlineClient) client() *http.Client {
	return &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		if h := r.URL.Hostname(); h != "127.0.0.1" {
			o.mu.Lock()
			o.hosts = append(o.hosts, h)
			o.mu.Unlock()
			return nil, fmt.Errorf("dial tcp: lookup %s: no such host", h)
		}
		return http.DefaultTransport.RoundTrip(r)
	})}
}

func (o *offlineClient) asked() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return strings.Join(o.hosts, ",")
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// formatsWorld adds to the CLI world images signed by the upstream cosign v2 and v3 and
// notation CLIs, their keys, a trusted_root.json made by cosign, a local TSA and a TUF mirror.
func newFormatsCLIWorld(t *testing.T) (*cliWorld, *offlineClient) {
	t.Helper()
	w := newCLIWorld(t)
	home := upstream.NewHome(t)
	key, pub := home.CosignKey("release")
	_, otherPub := home.CosignKey("other")
	ca, err := signtest.NewCA("cli")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	leaf, err := ca.IssueLeaf(cliSubject, cliIssuer, now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	lf := home.Leaf("leaf", leaf)
	tsa, err := signtest.NewTSA("cli")
	if err != nil {
		t.Fatal(err)
	}
	tsaSrv := httptest.NewServer(tsa)
	t.Cleanup(tsaSrv.Close)
	tr := home.TrustedRoot("trusted_root.json", "--fulcio", "url=https://fulcio.private.example,certificate-chain="+lf.Chain,
		"--tsa", "url="+tsaSrv.URL+",certificate-chain="+home.File("tsa-chain.pem", tsa.ChainPEM))
	trDoc := home.Read("trusted_root.json")
	repo, err := signtest.NewTUFRepo(t.TempDir(), map[string][]byte{trustroot.TrustedRootTarget: trDoc}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tufSrv := httptest.NewServer(http.FileServer(http.Dir(repo.Dir)))
	t.Cleanup(tufSrv.Close)
	notaryPEM, notaryID := home.NotationCert("acme")
	storeDir := filepath.Join(home.Dir, ".config", "notation", "truststore", "x509", "ca", "acme")
	home.File(filepath.Join(".config", "notation", "truststore", "x509", "ca", "acme", "acme.crt"), notaryPEM)

	image := func(repo string) name.Digest {
		img := mutate.Annotations(registrytest.DebianImage([]registrytest.Pkg{{Name: "openssl", Version: "3.0.11-1~deb12u2"}}), map[string]string{"case": repo}).(v1.Image)
		d, err := w.reg.Push(context.Background(), w.reg.Repo("formats/"+repo+":1"), img)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	v3 := func(args ...string) {
		home.Must(upstream.CosignV3, append(args, upstream.CosignV3SignFlags...)...)
	}
	bundle, legacy, keyless, notation, copied := image("bundle"), image("legacy"), image("keyless"), image("notation"), image("copied")
	v3("sign", "--key", key, bundle.String())
	home.Must(upstream.CosignV2, append([]string{"sign", "--key", key, legacy.String()}, upstream.CosignV2SignFlags...)...)
	v3("sign", "--key", lf.Key, "--certificate", lf.Cert, "--certificate-chain", lf.Chain, "--timestamp-server-url", tsaSrv.URL, keyless.String())
	home.Must(upstream.Notation, "sign", "--insecure-registry", "--signature-format", "cose", "--key", "acme", notation.String())
	upstream.CopyReferrers(t, bundle, copied, w.reg.RemoteOptions(context.Background())...)

	dir := t.TempDir()
	for k, v := range map[string]string{
		"{BUNDLE}": bundle.String(), "{LEGACY}": legacy.String(), "{KEYLESS}": keyless.String(), "{NOTATION}": notation.String(), "{COPIED}": copied.String(),
		"{PUB}": pub, "{OTHERPUB}": otherPub, "{TR}": tr, "{TUF}": tufSrv.URL, "{TUFROOT}": home.File("tuf-root.json", repo.RootJSON),
		"{TSA}": tsaSrv.URL, "{NCERT}": home.File("acme.crt", notaryPEM), "{NDIR}": storeDir, "{NID}": notaryID,
		"{CLOSED}": closedMirror(t),
		"{PKL}":    writeFile(t, dir, "keyless.yaml", keylessPolicyYAML(w.reg.Host(), trDoc)),
	} {
		w.vars[k] = v
	}
	offline := &offlineClient{}
	trustRootHTTPClient = offline.client()
	t.Cleanup(func() { trustRootHTTPClient = nil })
	return w, offline
}

// keylessPolicyYAML is a keyless policy with its trusted_root.json inline, as a CI job
// without a cluster writes it.
func keylessPolicyYAML(host string, trustedRoot []byte) string {
	indented := "          " + strings.ReplaceAll(strings.TrimSpace(string(trustedRoot)), "\n", "\n          ")
	return fmt.Sprintf(`apiVersion: security.imagetrust.dev/v1alpha1
kind: ImageTrustPolicy
metadata: {name: keyless}
spec:
  images: [%q]
  authorities:
  - name: ci
    keyless:
      identities: [{issuer: %q, subject: %q}]
      ignoreSCT: true
    trustRoot:
      trustedRoot:
        data: |
%s
`, host+"/formats/**", cliIssuer, cliSubject, indented)
}

func closedMirror(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// signerIs checks the JSON's first signer: its format and a time proof containing proof.
func signerIs(format, proof string) check {
	return func(stdout, _ string) error {
		var r ScanReport
		if err := json.Unmarshal([]byte(stdout), &r); err != nil {
			return err
		}
		if len(r.Results) != 1 || r.Results[0].Signature.State != "Verified" || len(r.Results[0].Signature.Signers) == 0 {
			return errors.New("not one Verified result with a signer")
		}
		s := r.Results[0].Signature.Signers[0]
		if s.Format != format || !strings.Contains(s.TimeProof, proof) {
			return fmt.Errorf("signer %+v, want format %s and time proof %q", s, format, proof)
		}
		return nil
	}
}

func absent(where, s string) check {
	return func(stdout, stderr string) error {
		if contains(where, s)(stdout, stderr) == nil {
			return fmt.Errorf("%s has %q", where, s)
		}
		return nil
	}
}

// TestScanFormats: `imagetrust scan` verifies what cosign v2 and v3 and notation write, with
// the flags cosign and notation users know, wherever they stand; every negative exits 2
// (Untrusted) or 1 (cannot judge), never 0.
func TestScanFormats(t *testing.T) {
	w, offline := newFormatsCLIWorld(t)
	id := []string{"--certificate-identity", cliSubject, "--certificate-oidc-issuer", cliIssuer, "--insecure-ignore-sct"}
	cases := []struct {
		name   string
		argv   []string
		code   int
		checks []check
	}{
		{"cosign v3 bundle, key", []string{"scan", "{BUNDLE}", "--key", "{PUB}", "--insecure-ignore-tlog", "-o", "json"}, 0,
			[]check{signerIs("sigstore-bundle", "none: transparency log ignored")}},
		{"cosign v2 legacy, key before the image", []string{"scan", "--key", "{PUB}", "--insecure-ignore-tlog", "{LEGACY}"}, 0,
			[]check{contains("stdout", "[cosign-legacy, none: transparency log ignored]")}},
		{"keyless, trusted_root.json with a TSA", append([]string{"scan", "{KEYLESS}", "--trusted-root", "{TR}", "-o", "json"}, id...), 0,
			[]check{signerIs("sigstore-bundle", "RFC 3161 timestamp by ")}},
		{"keyless, TUF mirror", append(append([]string{"scan", "--tuf-mirror", "{TUF}"}, id...), "{KEYLESS}", "--tuf-root={TUFROOT}", "-o", "json"), 0,
			[]check{signerIs("sigstore-bundle", "RFC 3161 timestamp by ")}},
		{"keyless, policy file with an inline trusted root", []string{"scan", "{KEYLESS}", "--policy", "{PKL}", "-o", "json"}, 0,
			[]check{signerIs("sigstore-bundle", "RFC 3161 timestamp by ")}},
		{"notation, certificate file and identity", []string{"scan", "{NOTATION}", "--notation-trust-store", "{NCERT}", "--notation-identity", "{NID}", "-o", "json"}, 0,
			[]check{signerIs("notation", "none: certificate checked at verification time")}},
		{"notation, trust store directory", []string{"scan", "--notation-trust-store", "{NDIR}", "{NOTATION}", "--notation-level=permissive"}, 0,
			[]check{contains("stdout", "[notation, ")}},
		// negatives
		{"wrong key", []string{"scan", "{BUNDLE}", "--key", "{OTHERPUB}", "--insecure-ignore-tlog"}, 2, []check{contains("stdout", "SIGNATURE        Invalid")}},
		{"bundle copied from another image", []string{"scan", "{COPIED}", "--key", "{PUB}", "--insecure-ignore-tlog"}, 2, []check{contains("stdout", "SIGNATURE        Invalid")}},
		{"keyless, wrong identity", []string{"scan", "{KEYLESS}", "--trusted-root", "{TR}", "--certificate-identity", "someone-else@example.com",
			"--certificate-oidc-issuer", cliIssuer, "--insecure-ignore-sct"}, 2, []check{contains("stdout", "SIGNATURE        Invalid")}},
		{"keyless with no roots, offline: the public-good root cannot load", append([]string{"scan", "{KEYLESS}"}, id...), 1,
			[]check{contains("stderr", "public-good Sigstore trust root"), contains("stderr", "needs egress"), contains("stderr", "--trusted-root FILE"), absent("stdout", "Verified")}},
		{"TUF mirror unreachable", append([]string{"scan", "{KEYLESS}", "--tuf-mirror", "{CLOSED}", "--tuf-root", "{TUFROOT}"}, id...), 1,
			[]check{contains("stderr", "TUF update from {CLOSED}")}},
		{"notation, identity not trusted", []string{"scan", "{NOTATION}", "--notation-trust-store", "{NCERT}", "--notation-identity", "x509.subject: C=US, ST=WA, O=Someone Else"}, 2,
			[]check{contains("stdout", "SIGNATURE        Invalid")}},
		{"notation, certificate not in the store", []string{"scan", "{NOTATION}", "--notation-trust-store", "{TR}"}, 1, []check{contains("stderr", "--notation-trust-store")}},
		// usage errors
		{"--tuf-root without --tuf-mirror", append([]string{"scan", "{KEYLESS}", "--tuf-root", "{TUFROOT}"}, id...), 64, []check{contains("stderr", "--tuf-root needs --tuf-mirror")}},
		{"a trust root with no signer", []string{"scan", "{BUNDLE}", "--trusted-root", "{TR}"}, 64, []check{contains("stderr", "needs --key or --certificate-identity")}},
		{"two trust roots", []string{"scan", "{BUNDLE}", "--key", "{PUB}", "--trusted-root", "{TR}", "--tuf-mirror", "{TUF}"}, 64, []check{contains("stderr", "give one")}},
		{"unknown notation level", []string{"scan", "{NOTATION}", "--notation-trust-store", "{NCERT}", "--notation-level", "lenient"}, 64, []check{contains("stderr", "want strict, permissive or audit")}},
		{"unknown notation revocation", []string{"scan", "{NOTATION}", "--notation-trust-store", "{NCERT}", "--notation-revocation", "ocsp"}, 64, []check{contains("stderr", "want enforce, log or skip")}},
		{"notation identity without a trust store", []string{"scan", "{NOTATION}", "--notation-identity", "*"}, 64, []check{contains("stderr", "--notation-identity needs --notation-trust-store")}},
		{"trust flags with --policy", []string{"scan", "{KEYLESS}", "--policy", "{PKL}", "--trusted-root", "{TR}"}, 64, []check{contains("stderr", "--trusted-root cannot be combined with --policy")}},
		{"empty --trusted-root", []string{"scan", "{BUNDLE}", "--key", "{PUB}", "--trusted-root="}, 64, []check{contains("stderr", "--trusted-root is empty")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := w.run(t, tc.argv...)
			if code != tc.code {
				t.Fatalf("imagetrust %v: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", tc.argv, code, tc.code, stdout, stderr)
			}
			for _, c := range tc.checks {
				c := c
				if err := c(stdout, strings.ReplaceAll(stderr, w.vars["{CLOSED}"], "{CLOSED}")); err != nil {
					t.Errorf("imagetrust %v: %v\nstdout:\n%s\nstderr:\n%s", tc.argv, err, stdout, stderr)
				}
			}
		})
	}
	if got := offline.asked(); got != "tuf-repo-cdn.sigstore.dev" {
		t.Errorf("hosts asked for beyond loopback: %q, want only the public-good TUF repository", got)
	}
	if _, err := os.Stat(w.vars["{NDIR}"]); err != nil {
		t.Fatal(err)
	}
}
