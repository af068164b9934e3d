package trustroot

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// countingMirror serves a TUF repository holding doc and counts the requests it answers.
func countingMirror(t *testing.T, doc []byte) (url string, root []byte, requests *atomic.Int64) {
	t.Helper()
	srv, repo := mirror(t, doc)
	requests = &atomic.Int64{}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.Redirect(w, r, srv.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(front.Close)
	return front.URL, repo.RootJSON, requests
}

func TestPoolSharesOneProviderPerSource(t *testing.T) {
	doc, _ := trustedRoot(t)
	url, root, _ := countingMirror(t, doc)
	p := NewPool(PoolConfig{CacheDir: t.TempDir()})
	a, err := p.TUF(url, root)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.TUF(url+"/", root)
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Error("the same mirror and root gave two providers")
	}
	other, _ := trustedRoot(t)
	_, otherRoot, _ := countingMirror(t, other)
	c, err := p.TUF(url, otherRoot)
	if err != nil {
		t.Fatal(err)
	}
	if c == a {
		t.Error("another initial root shared the provider")
	}
	s1, err := p.TrustedRoot("ConfigMap a/b", doc)
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := p.TrustedRoot("ConfigMap a/b", doc)
	s3, _ := p.TrustedRoot("ConfigMap a/b", other)
	if s1 != s2 || s1 == s3 {
		t.Errorf("trusted roots: same document shared %v, other document shared %v", s1 == s2, s1 == s3)
	}
	if _, err := p.TrustedRoot("bad", []byte("{")); err == nil {
		t.Error("an invalid trusted_root.json was accepted")
	}
	if n := p.Len(); n != 4 {
		t.Errorf("pool holds %d providers, want 4", n)
	}
	// Fingerprints follow the source: different documents or roots differ.
	fp := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	if fp(s1) == fp(s3) || fp(a) == fp(c) || fp(s1) != fp(s2) {
		t.Errorf("fingerprints %s %s %s / %s %s", fp(s1), fp(s2), fp(s3), fp(a), fp(c))
	}
}

// A provider handed out before Start loads once the pool starts, never before, and OnLoad
// tells the caller.
func TestPoolStartsTUFProvidersInTheBackground(t *testing.T) {
	doc, _ := trustedRoot(t)
	url, root, requests := countingMirror(t, doc)
	loaded := make(chan struct{}, 8)
	p := NewPool(PoolConfig{CacheDir: t.TempDir(), OnLoad: func() { loaded <- struct{}{} }})
	prov, err := p.TUF(url, root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prov.Material(ctx); !errors.Is(err, ErrNotLoaded) {
		t.Fatalf("before Start: %v", err)
	}
	if n := requests.Load(); n != 0 {
		t.Fatalf("%d requests before Start", n)
	}
	c, cancel := context.WithCancel(ctx)
	defer cancel()
	p.Start(c)
	select {
	case <-loaded:
	case <-time.After(30 * time.Second):
		t.Fatal("no load after Start")
	}
	if _, err := prov.Material(ctx); err != nil {
		t.Fatalf("after the first load: %v", err)
	}
}

func TestPoolWaitsForTheFirstLoad(t *testing.T) {
	doc, _ := trustedRoot(t)
	url, root, _ := countingMirror(t, doc)
	p := NewPool(PoolConfig{CacheDir: t.TempDir(), Wait: true, LoadTimeout: 20 * time.Second})
	p.Start(ctx)
	prov, err := p.TUF(url, root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prov.Material(ctx); err != nil {
		t.Fatalf("a waiting pool handed out a provider that is not loaded: %v", err)
	}
}

// Disabled, the public-good instance is refused without a single request.
func TestPoolRefusesThePublicGoodInstanceWhenDisabled(t *testing.T) {
	var requests atomic.Int64
	client := &http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
		requests.Add(1)
		return nil, errors.New("egress")
	})}
	p := NewPool(PoolConfig{CacheDir: t.TempDir(), DisablePublicGood: true, HTTPClient: client, Wait: true})
	p.Start(ctx)
	for _, mirror := range []string{"", PublicGoodMirror, PublicGoodMirror + "/"} {
		if _, err := p.TUF(mirror, nil); !errors.Is(err, ErrPublicGoodDisabled) {
			t.Errorf("mirror %q: err = %v", mirror, err)
		}
	}
	if _, err := p.PublicGood(); !errors.Is(err, ErrPublicGoodDisabled) {
		t.Errorf("PublicGood: %v", err)
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("%d requests to the public-good instance", n)
	}
	enabled := NewPool(PoolConfig{CacheDir: t.TempDir(), HTTPClient: client})
	pg, err := enabled.PublicGood()
	if err != nil || pg.Name() != PublicGoodName {
		t.Errorf("enabled: %v, %v", pg, err)
	}
}

// Retain stops the refresh loops of providers nothing names any more.
func TestPoolRetainStopsUnusedProviders(t *testing.T) {
	doc, _ := trustedRoot(t)
	url, root, requests := countingMirror(t, doc)
	p := NewPool(PoolConfig{CacheDir: t.TempDir(), RefreshInterval: 20 * time.Millisecond, Wait: true})
	p.Start(ctx)
	kept, err := p.TrustedRoot("kept", doc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.TUF(url, root); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for requests.Load() < 8 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // refreshes keep coming while it is in use
	}
	p.Retain([]Provider{kept})
	if n := p.Len(); n != 1 {
		t.Fatalf("pool holds %d providers after Retain, want 1", n)
	}
	time.Sleep(100 * time.Millisecond) // a load under way may finish
	before := requests.Load()
	time.Sleep(200 * time.Millisecond)
	if after := requests.Load(); after != before {
		t.Errorf("%d requests after the provider was dropped", after-before)
	}
}
