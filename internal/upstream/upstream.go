// Package upstream runs the upstream signing CLIs that `make interop-tools` builds into bin/
// (cosign v2 and v3, notation), offline and each in an isolated home, so end-to-end tests of
// the manager and the CLI sign images the way users do. A missing tool fails the test; it never
// skips it.
package upstream

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imagetrust/imagetrust/scanner/verify/signtest"
)

// Tool is an upstream binary: the Makefile exports its path in Env; without it the default
// path under bin/ is used.
type Tool struct{ Env, File string }

// The tools the tests sign with.
var (
	CosignV2 = Tool{"IMAGETRUST_COSIGN_V2", "cosign-v2.6.5"}
	CosignV3 = Tool{"IMAGETRUST_COSIGN_V3", "cosign-v3.1.3"}
	Notation = Tool{"IMAGETRUST_NOTATION", "notation-v1.3.2"}
	// Oras attaches artifacts as referrers; Distribution is the registry that has no
	// referrers API, so every tool writes the tag schema to it.
	Oras         = Tool{"IMAGETRUST_ORAS", "oras-v1.3.6"}
	Distribution = Tool{"IMAGETRUST_DISTRIBUTION_REGISTRY", "registry-v3.1.2"}
)

// Offline signing flags: no transparency log, no TUF signing config, a plain-HTTP registry.
var (
	CosignV2SignFlags = []string{"--tlog-upload=false", "--allow-http-registry", "-y"}
	CosignV3SignFlags = []string{"--tlog-upload=false", "--use-signing-config=false", "--allow-http-registry", "-y"}
)

// Path is the tool's binary; the test fails when it is missing.
func (tl Tool) Path(t testing.TB) string {
	t.Helper()
	p := os.Getenv(tl.Env)
	if p == "" {
		_, file, _, _ := runtime.Caller(0)
		p = filepath.Join(filepath.Dir(file), "..", "..", "bin", tl.File)
	}
	if fi, err := os.Stat(p); err != nil || fi.IsDir() {
		t.Fatalf("%s not found at %s (%s): run `make interop-tools` to build the upstream tools", tl.File, p, tl.Env)
	}
	return p
}

// Home is an isolated home for the CLIs: their config, keys and caches live in it.
type Home struct {
	t   testing.TB
	Dir string
}

// NewHome makes a home in a temporary directory of the test.
func NewHome(t testing.TB) *Home { return &Home{t: t, Dir: t.TempDir()} }

// Run executes a tool and returns its combined output and whether it exited 0.
func (h *Home) Run(tl Tool, args ...string) (string, bool) {
	h.t.Helper()
	cmd := exec.Command(tl.Path(h.t), args...)
	cmd.Dir = h.Dir
	cmd.Env = []string{
		"HOME=" + h.Dir, "XDG_CONFIG_HOME=" + filepath.Join(h.Dir, ".config"),
		"PATH=" + os.Getenv("PATH"), "COSIGN_PASSWORD=", "COSIGN_YES=true",
		"SIGSTORE_NO_CACHE=true", "TUF_ROOT=" + filepath.Join(h.Dir, ".sigstore", "root"),
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err == nil
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		h.t.Fatalf("%s %s: timed out\n%s", tl.File, strings.Join(args, " "), out.String())
	}
	return "", false
}

// Must runs a tool that has to succeed.
func (h *Home) Must(tl Tool, args ...string) string {
	h.t.Helper()
	out, ok := h.Run(tl, args...)
	if !ok {
		h.t.Fatalf("%s %s failed:\n%s", tl.File, strings.Join(args, " "), out)
	}
	return out
}

// File writes a file under the home and returns its path.
func (h *Home) File(rel string, content []byte) string {
	h.t.Helper()
	p := filepath.Join(h.Dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(p, content, 0o600); err != nil {
		h.t.Fatal(err)
	}
	return p
}

// Read reads a file under the home.
func (h *Home) Read(rel string) []byte {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(h.Dir, rel))
	if err != nil {
		h.t.Fatal(err)
	}
	return b
}

// CosignKey generates a cosign key pair (empty password) with cosign v3 and returns the paths
// of the private and public keys.
func (h *Home) CosignKey(prefix string) (priv, pub string) {
	h.t.Helper()
	dir := filepath.Join(h.Dir, prefix)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		h.t.Fatal(err)
	}
	h.Must(CosignV3, "generate-key-pair", "--output-key-prefix", filepath.Join(dir, "cosign"))
	return filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub")
}

// KeylessFiles are a private-CA leaf as cosign signs with it: the key imported into cosign's
// format, the certificate and the chain.
type KeylessFiles struct{ Key, Cert, Chain string }

// Leaf writes a leaf certificate's key (imported with cosign), certificate and chain.
func (h *Home) Leaf(prefix string, leaf *signtest.Leaf) KeylessFiles {
	h.t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(leaf.Key.PrivateKey)
	if err != nil {
		h.t.Fatal(err)
	}
	raw := h.File(prefix+"/leaf-raw.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	h.Must(CosignV3, "import-key-pair", "--key", raw, "--output-key-prefix", filepath.Join(h.Dir, prefix, "leaf"))
	return KeylessFiles{
		Key:   filepath.Join(h.Dir, prefix, "leaf.key"),
		Cert:  h.File(prefix+"/leaf.pem", leaf.CertPEM),
		Chain: h.File(prefix+"/chain.pem", leaf.ChainPEM),
	}
}

// TrustedRoot makes a trusted_root.json with `cosign trusted-root create SERVICES...`, the
// way private-Sigstore users do, and returns its path.
func (h *Home) TrustedRoot(out string, services ...string) string {
	h.t.Helper()
	p := filepath.Join(h.Dir, out)
	h.Must(CosignV3, append(append([]string{"trusted-root", "create"}, services...), "--out", p)...)
	return p
}

// NotationCert generates a test certificate with `notation cert generate-test KEY FLAGS...`
// (e.g. --default) and returns its PEM and the trusted-identity string of its subject.
func (h *Home) NotationCert(keyName string, flags ...string) ([]byte, string) {
	h.t.Helper()
	h.Must(Notation, append([]string{"cert", "generate-test", keyName}, flags...)...)
	certPEM := h.Read(filepath.Join(".config", "notation", "localkeys", keyName+".crt"))
	block, _ := pem.Decode(certPEM)
	if block == nil {
		h.t.Fatalf("no certificate in %s.crt", keyName)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		h.t.Fatal(err)
	}
	return certPEM, "x509.subject: " + cert.Subject.String()
}

// CopyReferrers re-points every referrer manifest of src at dst, content unchanged (blobs are
// copied into dst's repository): what an attacker copying signatures between images does.
func CopyReferrers(t testing.TB, src, dst name.Digest, opts ...remote.Option) {
	t.Helper()
	idx, err := remote.Referrers(src, opts...)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) == 0 {
		t.Fatalf("%s has no referrers to copy", src)
	}
	dstDesc, err := remote.Head(dst, opts...)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		copyReferrer(t, src, dst, d.Digest.String(), dstDesc, opts)
	}
}

func copyReferrer(t testing.TB, src, dst name.Digest, digest string, dstDesc *v1.Descriptor, opts []remote.Option) {
	t.Helper()
	got, err := remote.Get(src.Context().Digest(digest), opts...)
	if err != nil {
		t.Fatal(err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(got.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	for _, b := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		l, err := remote.Layer(src.Context().Digest(b.Digest.String()), opts...)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.WriteLayer(dst.Context(), l, opts...); err != nil {
			t.Fatal(err)
		}
	}
	var raw map[string]any
	if err := json.Unmarshal(got.Manifest, &raw); err != nil {
		t.Fatal(err)
	}
	raw["subject"] = map[string]any{"mediaType": dstDesc.MediaType, "digest": dstDesc.Digest.String(), "size": dstDesc.Size}
	b, err := json.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := v1.SHA256(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(dst.Context().Digest(h.String()), rawManifest{b, got.MediaType}, opts...); err != nil {
		t.Fatal(err)
	}
}

type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }
