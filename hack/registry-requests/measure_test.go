//go:build registryrequests

// This file is copied into scanner/ of two checkouts by hack/registry-requests/run.sh and run
// there, so it uses only scanner APIs both have. It counts what the scanner sends to a registry
// for the first assessment of a fleet of images (resolve a tag, verify, generate the SBOM with
// Syft) and for their scheduled re-verification (verify, SBOM from the cache).
package scanner_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"

	"github.com/imagetrust/imagetrust/scanner"
	"github.com/imagetrust/imagetrust/scanner/policy"
	"github.com/imagetrust/imagetrust/scanner/registry"
	"github.com/imagetrust/imagetrust/scanner/registry/registrytest"
	"github.com/imagetrust/imagetrust/scanner/sbom"
	"github.com/imagetrust/imagetrust/scanner/verify"
	"github.com/imagetrust/imagetrust/scanner/verify/signtest"
)

// probeCounter is a TCP proxy in front of the registry that counts connections opening with a
// TLS handshake (the https half of a client's scheme probe never becomes an HTTP request the
// registry could count), then forwards every byte either way.
type probeCounter struct {
	ln     net.Listener
	target string
	tls    atomic.Int64
}

func newProbeCounter(t *testing.T, target string) *probeCounter {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &probeCounter{ln: ln, target: target}
	t.Cleanup(func() { ln.Close() })
	go p.serve()
	return p
}

func (p *probeCounter) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *probeCounter) forward(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	if first, err := br.Peek(1); err == nil && first[0] == 0x16 {
		p.tls.Add(1)
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(up, br)
		if tc, ok := up.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	_, _ = io.Copy(c, up)
	wg.Wait()
}

// measured is one phase's count over the fleet.
type measured struct {
	Scenario   string         `json:"scenario"`
	Phase      string         `json:"phase"`
	Images     int            `json:"images"`
	HTTP       int            `json:"http"`       // requests the registry received
	TLSProbes  int64          `json:"tlsProbes"`  // https attempts at the plain-HTTP port
	Observed   int64          `json:"observed"`   // attempts reported by the transport's Observe
	ByKind     map[string]int `json:"byKind"`     // HTTP requests by API
	ByKindVerb map[string]int `json:"byKindVerb"` // HTTP requests by API and method
}

func TestMeasureRegistryRequests(t *testing.T) {
	out := os.Getenv("REGISTRY_REQUESTS_OUT")
	if out == "" {
		t.Fatal("REGISTRY_REQUESTS_OUT must name the file the counts are written to")
	}
	var all []measured
	for _, withPolicy := range []bool{false, true} {
		all = append(all, measureFleet(t, 10, withPolicy)...)
	}
	b, err := json.MarshalIndent(all, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func measureFleet(t *testing.T, n int, withPolicy bool) []measured {
	ctx := context.Background()
	reg := registrytest.New(t)
	proxy := newProbeCounter(t, reg.Host())
	host := proxy.ln.Addr().String()
	key, err := signtest.NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	signOpts := []ociremote.Option{ociremote.WithRemoteOptions(reg.RemoteOptions(ctx)...)}
	for i := range n {
		img := registrytest.DebianImage([]registrytest.Pkg{{Name: "openssl", Version: "3.0.11-1~deb12u2"}, {Name: fmt.Sprintf("extra%d", i), Version: "1.0"}})
		d, err := reg.Push(ctx, reg.Repo(fmt.Sprintf("team/app%d:v1", i)), img)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if err := signtest.SignImage(ctx, d, key, signOpts...); err != nil {
				t.Fatal(err)
			}
		}
	}
	var observed atomic.Int64
	rc := registry.New(registry.Options{
		Insecure: []string{host}, RequestsPerSecond: -1,
		Observe: func(string, string, int, time.Duration) { observed.Add(1) },
	})
	cache, err := sbom.NewCache(t.TempDir(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := scanner.New(scanner.Config{Registry: rc, Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	var pols []scanner.Policy
	scenario := "no policy"
	if withPolicy {
		scenario = "key policy, half signed"
		auth := verify.Authority{Name: "prod/release", PublicKeyPEM: key.PublicPEM, IgnoreTlog: true}
		pols = []scanner.Policy{{
			Policy:           policy.Policy{Name: "prod", Images: []string{host + "/**"}, RequireSignature: true, Authorities: []string{auth.Name}},
			AuthorityConfigs: []verify.Authority{auth},
		}}
	}

	var imgs []scanner.Image
	count := func(phase string, run func(i int)) measured {
		reg.Reset()
		proxy.tls.Store(0)
		observed.Store(0)
		for i := range n {
			run(i)
		}
		m := measured{Scenario: scenario, Phase: phase, Images: n, TLSProbes: proxy.tls.Load(), Observed: observed.Load(),
			ByKind: map[string]int{}, ByKindVerb: map[string]int{}}
		for _, r := range reg.Requests() {
			m.HTTP++
			m.ByKind[string(r.Kind)]++
			m.ByKindVerb[string(r.Kind)+" "+r.Method]++
		}
		return m
	}
	resolve := func(i int) scanner.Image {
		got, err := sc.Resolve(ctx, fmt.Sprintf("%s/team/app%d:v1", host, i), nil)
		if err != nil || len(got) != 1 {
			t.Fatalf("resolve: %v %v", got, err)
		}
		return got[0]
	}
	first := count("first assessment", func(i int) {
		img := resolve(i)
		imgs = append(imgs, img)
		a, err := sc.Assess(ctx, img, pols)
		if err != nil || a.SBOM == nil || a.SBOM.Source != sbom.SourceGenerated {
			t.Fatalf("assess %d: %v %+v", i, err, a)
		}
		if withPolicy && (a.Verification.Signature.State == verify.Verified) != (i%2 == 0) {
			t.Fatalf("image %d: signature %s", i, a.Verification.Signature.State)
		}
	})
	// A scheduled re-verification knows the digest: it verifies again and reads the SBOM from
	// the cache, as the manager's pass does.
	again := count("re-verification", func(i int) {
		v := sc.Verify(ctx, imgs[i], pols)
		if _, err := sc.SBOM(ctx, imgs[i], pols, v); err != nil {
			t.Fatalf("sbom %d: %v", i, err)
		}
	})
	// A RegistryScan's scheduled listing resolves its (unchanged) tags again.
	relist := count("tag re-resolve", func(i int) { resolve(i) })
	return []measured{first, again, relist}
}
