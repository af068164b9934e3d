package interop

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"

	"github.com/imagetrust/imagetrust/internal/upstream"
	"github.com/imagetrust/imagetrust/scanner/verify"
)

var ctx = context.Background()

// tool is an upstream binary that `make interop-tools` builds.
type tool = upstream.Tool

var (
	cosignV2     = upstream.CosignV2
	cosignV3     = upstream.CosignV3
	notationCLI  = upstream.Notation
	orasCLI      = upstream.Oras
	distribution = upstream.Distribution
)

// env is an isolated home for the CLIs (their config, keys and TUF caches), shared with the
// manager's and the CLI's end-to-end tests.
type env struct {
	*upstream.Home
	t testing.TB
}

func newEnv(t testing.TB) *env {
	t.Helper()
	return &env{Home: upstream.NewHome(t), t: t}
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
	cmd := exec.Command(distribution.Path(t), "serve", cfg)
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

func mustDigest(t testing.TB, s string) name.Digest {
	t.Helper()
	d, err := name.NewDigest(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
