package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"

	"github.com/imagetrust/imagetrust/scanner/verify"
)

var ctx = context.Background()

// tool is an upstream binary: the Makefile exports its path in env; without it the default
// path under bin/ (what `make interop-tools` builds) is used.
type tool struct{ env, file string }

var (
	cosignV2     = tool{"IMAGETRUST_COSIGN_V2", "cosign-v2.6.5"}
	cosignV3     = tool{"IMAGETRUST_COSIGN_V3", "cosign-v3.1.3"}
	notationCLI  = tool{"IMAGETRUST_NOTATION", "notation-v1.3.2"}
	orasCLI      = tool{"IMAGETRUST_ORAS", "oras-v1.3.6"}
	distribution = tool{"IMAGETRUST_DISTRIBUTION_REGISTRY", "registry-v3.1.2"}
)

func (tl tool) path(t testing.TB) string {
	t.Helper()
	p := os.Getenv(tl.env)
	if p == "" {
		_, file, _, _ := runtime.Caller(0)
		p = filepath.Join(filepath.Dir(file), "..", "..", "..", "bin", tl.file)
	}
	if fi, err := os.Stat(p); err != nil || fi.IsDir() {
		t.Fatalf("%s not found at %s (%s): run `make interop-tools` to build the upstream tools", tl.file, p, tl.env)
	}
	return p
}

// env is an isolated home for the CLIs: their config, keys and TUF caches live in it.
type env struct {
	t    testing.TB
	home string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	return &env{t: t, home: t.TempDir()}
}

// run executes a tool and returns its combined output and whether it exited 0.
func (e *env) run(tl tool, args ...string) (string, bool) {
	e.t.Helper()
	cmd := exec.Command(tl.path(e.t), args...)
	cmd.Dir = e.home
	cmd.Env = []string{
		"HOME=" + e.home, "XDG_CONFIG_HOME=" + filepath.Join(e.home, ".config"),
		"PATH=" + os.Getenv("PATH"), "COSIGN_PASSWORD=", "COSIGN_YES=true",
		"SIGSTORE_NO_CACHE=true", "TUF_ROOT=" + filepath.Join(e.home, ".sigstore", "root"),
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err == nil
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		e.t.Fatalf("%s %s: timed out\n%s", tl.file, strings.Join(args, " "), out.String())
	}
	return "", false
}

// must runs a tool that has to succeed.
func (e *env) must(tl tool, args ...string) string {
	e.t.Helper()
	out, ok := e.run(tl, args...)
	if !ok {
		e.t.Fatalf("%s %s failed:\n%s", tl.file, strings.Join(args, " "), out)
	}
	return out
}

func (e *env) file(name string, content []byte) string {
	e.t.Helper()
	p := filepath.Join(e.home, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(p, content, 0o600); err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *env) read(name string) []byte {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.home, name))
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// reg is a registry under test.
type reg struct {
	name string
	host string
}

// registries are the two referrer layouts: go-containerregistry's registry serves the
// referrers API; distribution answers 404 on it, so every tool writes the tag schema.
func registries(t testing.TB) []reg {
	return []reg{{"ggcr-referrers-api", ggcrRegistry(t)}, {"distribution-tag-schema", distributionRegistry(t)}}
}

func ggcrRegistry(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(true)))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// distributionRegistry starts the distribution registry binary on a free port.
func distributionRegistry(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	conf := fmt.Sprintf("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), addr)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(distribution.path(t), "serve", cfg)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("distribution registry did not start: %v\n%s", err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var anon = []remote.Option{remote.WithAuth(authn.Anonymous)}

func writeOpts() []ociremote.Option {
	return []ociremote.Option{ociremote.WithRemoteOptions(anon...)}
}

// pushImage pushes a random image and returns it by digest.
func pushImage(t testing.TB, host, repo string) name.Digest {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(host+"/"+repo+":latest", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img, anon...); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewDigest(tag.Context().Name()+"@"+d.String(), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

func verifier() *verify.Verifier {
	return &verify.Verifier{RegistryOptions: append(append([]remote.Option{}, anon...), remote.WithRetryStatusCodes())}
}

// agree checks that the upstream verifier decided as the case expects (want), then that
// imagetrust agrees with it: Verified exactly when upstream verified; otherwise Invalid or
// Error with a reason.
func agree(t *testing.T, what string, want, upstreamOK bool, upstreamOut string, state verify.State, reason string) {
	t.Helper()
	t.Logf("%s: upstream ok=%v; imagetrust %s: %s", what, upstreamOK, state, reason)
	if want != upstreamOK {
		t.Errorf("%s: upstream verify exit ok=%v, the case expects %v:\n%s", what, upstreamOK, want, upstreamOut)
	}
	switch {
	case upstreamOK && state != verify.Verified:
		t.Errorf("%s: upstream verified, imagetrust says %s: %s", what, state, reason)
	case !upstreamOK && state == verify.Verified:
		t.Errorf("%s: upstream refused, imagetrust says Verified\nupstream: %s", what, upstreamOut)
	case !upstreamOK && state != verify.Invalid && state != verify.Error:
		t.Errorf("%s: upstream refused, imagetrust says %s (want Invalid or Error): %s", what, state, reason)
	case !upstreamOK && reason == "":
		t.Errorf("%s: %s without a reason", what, state)
	}
}

// copyReferrers re-points every referrer manifest of src at dst, content unchanged (blobs are
// copied into dst's repository): what an attacker copying signatures between images does.
func copyReferrers(t testing.TB, src, dst name.Digest) {
	t.Helper()
	idx, err := remote.Referrers(src, anon...)
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
	dstDesc, err := remote.Head(dst, anon...)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		got, err := remote.Get(src.Context().Digest(d.Digest.String()), anon...)
		if err != nil {
			t.Fatal(err)
		}
		var m v1.Manifest
		if err := json.Unmarshal(got.Manifest, &m); err != nil {
			t.Fatal(err)
		}
		for _, b := range append([]v1.Descriptor{m.Config}, m.Layers...) {
			l, err := remote.Layer(src.Context().Digest(b.Digest.String()), anon...)
			if err != nil {
				t.Fatal(err)
			}
			if err := remote.WriteLayer(dst.Context(), l, anon...); err != nil {
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
		if err := remote.Put(dst.Context().Digest(h.String()), rawManifest{b, got.MediaType}, anon...); err != nil {
			t.Fatal(err)
		}
	}
}

type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

func mustDigest(t testing.TB, s string) name.Digest {
	t.Helper()
	d, err := name.NewDigest(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
