package trustroot

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/scanner/verify/signtest"
)

var ctx = context.Background()

// trustedRoot is a trusted_root.json with one CA, one Rekor log and one TSA.
func trustedRoot(t *testing.T) ([]byte, *signtest.CA) {
	t.Helper()
	ca, err := signtest.NewCA("tuf")
	if err != nil {
		t.Fatal(err)
	}
	rekor, err := signtest.NewRekor()
	if err != nil {
		t.Fatal(err)
	}
	tsa, err := signtest.NewTSA("tuf")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := signtest.TrustedRoot{CAs: []*signtest.CA{ca}, Rekor: []*signtest.Rekor{rekor}, TSAs: []*signtest.TSA{tsa}}.JSON()
	if err != nil {
		t.Fatal(err)
	}
	return doc, ca
}

func TestFromJSON(t *testing.T) {
	doc, ca := trustedRoot(t)
	s, err := FromJSON("private", doc)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.Material(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(m.FulcioCertificateAuthorities()); n != 1 {
		t.Errorf("%d CAs", n)
	}
	if len(m.RekorLogs()) != 1 || len(m.TimestampingAuthorities()) != 1 {
		t.Errorf("logs %d, TSAs %d", len(m.RekorLogs()), len(m.TimestampingAuthorities()))
	}
	now := time.Now()
	leaf, err := ca.IssueLeaf("dev@example.com", "https://issuer.example.com", now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.FulcioCertificateAuthorities()[0].Verify(leaf.Cert, now); err != nil {
		t.Errorf("leaf of the trusted CA: %v", err)
	}
	other, err := signtest.NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := other.IssueLeaf("dev@example.com", "https://issuer.example.com", now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.FulcioCertificateAuthorities()[0].Verify(stranger.Cert, now); err == nil {
		t.Error("a leaf of another CA verified")
	}

	for name, bad := range map[string]string{
		"not JSON":   "{",
		"wrong type": `{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.2"}`,
		"empty":      `{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`,
	} {
		if _, err := FromJSON("bad", []byte(bad)); err == nil || !strings.Contains(err.Error(), `trust root "bad"`) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

// mirror serves a TUF repository holding doc as trusted_root.json.
func mirror(t *testing.T, doc []byte) (*httptest.Server, *signtest.TUFRepo) {
	t.Helper()
	repo, err := signtest.NewTUFRepo(t.TempDir(), map[string][]byte{TrustedRootTarget: doc}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(repo.Dir)))
	t.Cleanup(srv.Close)
	return srv, repo
}

func TestTUFMirror(t *testing.T) {
	doc, _ := trustedRoot(t)
	srv, repo := mirror(t, doc)
	p, err := NewTUF(TUFConfig{Name: "mirror", MirrorURL: srv.URL, InitialRoot: repo.RootJSON, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Material(ctx); !errors.Is(err, ErrNotLoaded) || !IsUnavailable(err) {
		t.Fatalf("before loading: %v", err)
	}
	p.Start(ctx)
	if err := p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	m, err := p.Material(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.FulcioCertificateAuthorities()) != 1 || len(m.RekorLogs()) != 1 {
		t.Errorf("material: %d CAs, %d logs", len(m.FulcioCertificateAuthorities()), len(m.RekorLogs()))
	}
	if st := p.Status(); !st.Loaded || st.FromCache || st.LastError != "" {
		t.Errorf("status %+v", st)
	}
}

func TestTUFCacheServesWhenMirrorIsGone(t *testing.T) {
	doc, _ := trustedRoot(t)
	srv, repo := mirror(t, doc)
	cache := t.TempDir()
	cfg := TUFConfig{Name: "mirror", MirrorURL: srv.URL, InitialRoot: repo.RootJSON, CacheDir: cache}
	first, err := NewTUF(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Load(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Close()

	// A restart while the mirror is unreachable: the disk cache serves, and says so.
	second, err := NewTUF(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = second.Load(ctx)
	if err == nil {
		t.Fatal("loading from an unreachable mirror succeeded")
	}
	if _, merr := second.Material(ctx); merr != nil {
		t.Fatalf("cached material not served: %v (load: %v)", merr, err)
	}
	if st := second.Status(); !st.Loaded || !st.FromCache || st.LastError == "" {
		t.Errorf("status %+v", st)
	}

	// Without a cache there is nothing to serve: unavailable, with the reason.
	third, err := NewTUF(TUFConfig{Name: "mirror", MirrorURL: srv.URL, InitialRoot: repo.RootJSON, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := third.Load(ctx); err == nil {
		t.Fatal("loading from an unreachable mirror succeeded")
	}
	_, err = third.Material(ctx)
	if !IsUnavailable(err) || errors.Is(err, ErrNotLoaded) || !strings.Contains(err.Error(), "TUF update from "+srv.URL) {
		t.Errorf("err = %v", err)
	}
}

func TestTUFRejectsARepositoryNotSignedByTheRoot(t *testing.T) {
	doc, _ := trustedRoot(t)
	srv, _ := mirror(t, doc)
	_, other := mirror(t, doc) // another repository's root: different keys
	p, err := NewTUF(TUFConfig{Name: "mirror", MirrorURL: srv.URL, InitialRoot: other.RootJSON, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Load(ctx); err == nil {
		t.Fatal("metadata signed by other keys was accepted")
	}
	if _, err := p.Material(ctx); !IsUnavailable(err) {
		t.Errorf("material after a failed load: %v", err)
	}
}

// The public-good instance bootstraps from sigstore-go's embedded root; offline, the error
// names the repository and nothing is served.
func TestTUFPublicGoodOffline(t *testing.T) {
	offline := &http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
		return nil, errors.New("no route to host")
	})}
	p, err := NewTUF(TUFConfig{Name: "sigstore", CacheDir: t.TempDir(), HTTPClient: offline})
	if err != nil {
		t.Fatal(err)
	}
	err = p.Load(ctx)
	if err == nil || !strings.Contains(err.Error(), "TUF update from "+PublicGoodMirror) || !strings.Contains(err.Error(), "no route to host") {
		t.Fatalf("err = %v", err)
	}
	if _, err := p.Material(ctx); !IsUnavailable(err) {
		t.Errorf("material: %v", err)
	}
}

func TestTUFErrorsAreSanitized(t *testing.T) {
	p, err := NewTUF(TUFConfig{Name: "m", MirrorURL: "http://user:s3cret@127.0.0.1:1/tuf?token=abc", CacheDir: t.TempDir(), LoadTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = p.Load(ctx)
	if err == nil {
		t.Fatal("unreachable mirror loaded")
	}
	_, merr := p.Material(ctx)
	for _, msg := range []string{err.Error(), merr.Error()} {
		if strings.Contains(msg, "s3cret") || strings.Contains(msg, "token=abc") {
			t.Errorf("error leaks credentials: %s", msg)
		}
	}
}

func TestNewTUFValidates(t *testing.T) {
	for name, cfg := range map[string]TUFConfig{
		"no name":       {CacheDir: "/tmp/x"},
		"no cache":      {Name: "x"},
		"bad scheme":    {Name: "x", CacheDir: "/tmp/x", MirrorURL: "ftp://mirror"},
		"bad root.json": {Name: "x", CacheDir: "/tmp/x", MirrorURL: "https://mirror", InitialRoot: []byte("{}")},
	} {
		if _, err := NewTUF(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
