package policyconv

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner/verify/signtest"
	"github.com/imagetrust/imagetrust/scanner/verify/trustroot"
)

var bg = context.Background()

// objects is a fake cluster of ConfigMap and Secret keys, "namespace/name/key" → data.
type objects map[string][]byte

func (o objects) reader(kind string) KeyReader {
	return func(_ context.Context, ns, name, key string) ([]byte, string, error) {
		d, ok := o[ns+"/"+name+"/"+key]
		if !ok {
			return nil, kind + " " + ns + "/" + name + " not found", nil
		}
		return d, "", nil
	}
}

func (o objects) env(pool *trustroot.Pool) Env {
	e := Env{Secrets: o.reader("Secret"), ConfigMaps: o.reader("ConfigMap")}
	if pool != nil {
		e.TrustRoots = pool
	}
	return e
}

func policyWith(auths ...v1.Authority) *v1.ImageTrustPolicy {
	return &v1.ImageTrustPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: v1.ImageTrustPolicySpec{
		Images: []string{"**"}, RequireSignature: true, Authorities: auths}}
}

var identities = []v1.KeylessIdentity{{Issuer: "https://issuer.example", Subject: "ci@example.com"}}

func privateRoot(t *testing.T) []byte {
	t.Helper()
	ca, err := signtest.NewCA("private")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := signtest.TrustedRoot{CAs: []*signtest.CA{ca}}.JSON()
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func cmRef(name, key string) *v1.DataSource {
	return &v1.DataSource{ConfigMapRef: &v1.ConfigMapKeyReference{Namespace: "imagetrust-system", Name: name, Key: key}}
}

// A keyless policy naming a trusted_root.json needs no pasted certificate; authorities naming
// the same document share one provider across policies and conversions.
func TestTrustedRootFromAConfigMap(t *testing.T) {
	doc := privateRoot(t)
	cluster := objects{"imagetrust-system/sigstore/trusted_root.json": doc}
	pool := trustroot.NewPool(trustroot.PoolConfig{CacheDir: t.TempDir()})
	a := v1.Authority{Name: "ci", Keyless: &v1.KeylessAuthority{Identities: identities},
		TrustRoot: &v1.TrustRoot{TrustedRoot: cmRef("sigstore", "trusted_root.json")}}
	b := a
	b.Name = "release"
	c, err := Convert(bg, policyWith(a, b), cluster.env(pool))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Policy.Problems) != 0 {
		t.Fatalf("problems: %q", c.Policy.Problems)
	}
	auths := c.Policy.AuthorityConfigs
	if len(auths) != 2 || auths[0].TrustRoot == nil || auths[0].TrustRoot != auths[1].TrustRoot || len(auths[0].Keyless.RootsPEM) != 0 {
		t.Fatalf("authorities %+v", auths)
	}
	if got := auths[0].TrustRoot.Name(); got != "ConfigMap imagetrust-system/sigstore key trusted_root.json" {
		t.Errorf("trust root named %q", got)
	}
	if !slices.Equal(c.ConfigMapRefs, []ObjectRef{{"imagetrust-system", "sigstore"}, {"imagetrust-system", "sigstore"}}) || len(c.TrustRoots) != 2 {
		t.Errorf("refs %v, trust roots %d", c.ConfigMapRefs, len(c.TrustRoots))
	}
	again, err := Convert(bg, policyWith(a), cluster.env(pool))
	if err != nil || again.Policy.AuthorityConfigs[0].TrustRoot != auths[0].TrustRoot {
		t.Errorf("a second conversion did not share the provider: %v", err)
	}
	if pool.Len() != 1 {
		t.Errorf("pool holds %d providers", pool.Len())
	}
}

func TestTrustRootProblems(t *testing.T) {
	cluster := objects{"imagetrust-system/broken/trusted_root.json": []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`)}
	keyless := func(name string, tr *v1.TrustRoot) v1.Authority {
		return v1.Authority{Name: name, Keyless: &v1.KeylessAuthority{Identities: identities}, TrustRoot: tr}
	}
	cases := []struct {
		name    string
		a       v1.Authority
		env     func(pool *trustroot.Pool) Env
		want    string
		pending bool
	}{
		{"missing ConfigMap", keyless("ci", &v1.TrustRoot{TrustedRoot: cmRef("gone", "trusted_root.json")}), cluster.env,
			"authority ci: trustRoot.trustedRoot: ConfigMap imagetrust-system/gone not found", false},
		{"missing Secret", keyless("ci", &v1.TrustRoot{TrustedRoot: &v1.DataSource{SecretRef: &v1.SecretKeyReference{Namespace: "ops", Name: "tr", Key: "k"}}}), cluster.env,
			"authority ci: trustRoot.trustedRoot: Secret ops/tr not found", false},
		{"invalid document", keyless("ci", &v1.TrustRoot{TrustedRoot: cmRef("broken", "trusted_root.json")}), cluster.env,
			"trusted_root.json has no certificate authority", false},
		{"no cluster", keyless("ci", &v1.TrustRoot{TrustedRoot: cmRef("sigstore", "trusted_root.json")}), func(p *trustroot.Pool) Env { return Env{TrustRoots: p} },
			"ConfigMap references need a cluster", false},
		{"public-good default, still loading", keyless("ci", nil), cluster.env,
			`authority ci: trust root "` + trustroot.PublicGoodName + `" unavailable: not loaded yet (loading in the background`, true},
		{"public-good explicit, still loading", keyless("ci", &v1.TrustRoot{TUF: &v1.TUFTrustRoot{}}), cluster.env,
			"not loaded yet", true},
		{"TUF root from a missing ConfigMap", keyless("ci", &v1.TrustRoot{TUF: &v1.TUFTrustRoot{Mirror: "https://tuf.example", Root: cmRef("gone", "root.json")}}), cluster.env,
			"trustRoot.tuf.root: ConfigMap imagetrust-system/gone not found", false},
		{"TUF root that is not root.json", keyless("ci", &v1.TrustRoot{TUF: &v1.TUFTrustRoot{Mirror: "https://tuf.example", Root: &v1.DataSource{Data: "{}"}}}), cluster.env,
			"initial root.json is not TUF root metadata", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pool := trustroot.NewPool(trustroot.PoolConfig{CacheDir: t.TempDir()})
			c, err := Convert(bg, policyWith(tc.a), tc.env(pool))
			if err != nil {
				t.Fatal(err)
			}
			// A root that is still loading keeps its authority (verifying against it is an
			// Error); a configuration error drops it. Either way the policy is not enforced.
			if kept := len(c.Policy.AuthorityConfigs) == 1; kept != tc.pending || !c.Policy.Stalled() {
				t.Errorf("authority kept %v (want %v), policy stalled %v", kept, tc.pending, c.Policy.Stalled())
			}
			if got := strings.Join(c.Policy.Problems, "; "); !strings.Contains(got, tc.want) {
				t.Errorf("problems %q, want %q", got, tc.want)
			}
			if got := len(c.Pending) > 0; got != tc.pending {
				t.Errorf("pending %v, want %v (%q)", got, tc.pending, c.Pending)
			}
		})
	}
}

// Air-gapped: the public-good default is refused with the way out, and nothing is contacted.
func TestPublicGoodDisabled(t *testing.T) {
	pool := trustroot.NewPool(trustroot.PoolConfig{CacheDir: t.TempDir(), DisablePublicGood: true})
	for _, tr := range []*v1.TrustRoot{nil, {TUF: &v1.TUFTrustRoot{}}} {
		c, err := Convert(bg, policyWith(v1.Authority{Name: "ci", Keyless: &v1.KeylessAuthority{Identities: identities}, TrustRoot: tr}), Env{TrustRoots: pool})
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(c.Policy.Problems, "; ")
		if !strings.Contains(got, "public-good Sigstore trust root is disabled") || !strings.Contains(got, "trustedRoot") || len(c.Pending) != 0 {
			t.Errorf("explicit=%v: problems %q, pending %q", tr != nil, got, c.Pending)
		}
	}
	if pool.Len() != 0 {
		t.Errorf("pool holds %d providers", pool.Len())
	}
	// Inline roots need no trust root at all, so nothing is refused.
	ca, _ := signtest.NewCA("inline")
	c, err := Convert(bg, policyWith(v1.Authority{Name: "ci", Keyless: &v1.KeylessAuthority{Identities: identities, Roots: string(ca.RootPEM)}}), Env{TrustRoots: pool})
	if err != nil || len(c.Policy.Problems) != 0 || c.Policy.AuthorityConfigs[0].TrustRoot != nil {
		t.Errorf("inline roots: %v %q", err, c.Policy.Problems)
	}
}

// A TUF mirror whose root.json lives in a ConfigMap, loaded by a waiting pool: no problem; the
// same mirror unreachable: a problem that is not pending.
func TestTUFMirror(t *testing.T) {
	repo, err := signtest.NewTUFRepo(t.TempDir(), map[string][]byte{trustroot.TrustedRootTarget: privateRoot(t)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(repo.Dir)))
	defer srv.Close()
	cluster := objects{"imagetrust-system/tuf/root.json": repo.RootJSON}
	a := v1.Authority{Name: "ci", Keyless: &v1.KeylessAuthority{Identities: identities},
		TrustRoot: &v1.TrustRoot{TUF: &v1.TUFTrustRoot{Mirror: srv.URL, Root: cmRef("tuf", "root.json")}}}
	pool := trustroot.NewPool(trustroot.PoolConfig{CacheDir: t.TempDir(), Wait: true, LoadTimeout: 20 * time.Second})
	pool.Start(bg)
	c, err := Convert(bg, policyWith(a), cluster.env(pool))
	if err != nil || len(c.Policy.Problems) != 0 || c.Policy.AuthorityConfigs[0].TrustRoot == nil {
		t.Fatalf("reachable mirror: %v %q", err, c.Policy.Problems)
	}
	srv.Close()
	a.TrustRoot.TUF.Mirror = srv.URL + "/moved"
	c, err = Convert(bg, policyWith(a), cluster.env(pool))
	if err != nil || len(c.Policy.Problems) != 1 || len(c.Pending) != 0 || len(c.Unavailable) != 1 || !strings.Contains(c.Policy.Problems[0], "TUF update from") ||
		len(c.Policy.AuthorityConfigs) != 1 {
		t.Fatalf("unreachable mirror: %v %q pending %q", err, c.Policy.Problems, c.Pending)
	}
}

func TestNotationAuthority(t *testing.T) {
	ca, err := signtest.NewCA("notation")
	if err != nil {
		t.Fatal(err)
	}
	cluster := objects{"imagetrust-system/notation/ca.pem": ca.RootPEM}
	a := v1.Authority{Name: "notary", Notation: &v1.NotationAuthority{
		TrustStore:        cmRef("notation", "ca.pem"),
		TSATrustStore:     &v1.DataSource{Data: string(ca.RootPEM)},
		RegistryScopes:    []string{"registry.example.com/team/app"},
		TrustedIdentities: []string{"x509.subject: C=US, ST=WA, O=Example"},
		Level:             v1.NotationPermissive,
		Revocation:        v1.NotationRevocationSkip,
	}}
	c, err := Convert(bg, policyWith(a), cluster.env(nil))
	if err != nil || len(c.Policy.Problems) != 0 {
		t.Fatalf("%v %q", err, c.Policy.Problems)
	}
	n := c.Policy.AuthorityConfigs[0].Notation
	if n == nil || string(n.TrustStorePEM) != string(ca.RootPEM) || len(n.TSATrustStorePEM) == 0 || n.Level != "permissive" || n.Revocation != "skip" ||
		!slices.Equal(n.Scopes, a.Notation.RegistryScopes) || !slices.Equal(n.TrustedIdentities, a.Notation.TrustedIdentities) || c.Policy.AuthorityConfigs[0].TrustRoot != nil {
		t.Errorf("notation %+v", n)
	}
	a.Notation.TrustStore = cmRef("gone", "ca.pem")
	c, _ = Convert(bg, policyWith(a), cluster.env(nil))
	if got := strings.Join(c.Policy.Problems, "; "); !strings.Contains(got, "authority notary: notation.trustStore: ConfigMap imagetrust-system/gone not found") || len(c.Policy.AuthorityConfigs) != 0 {
		t.Errorf("missing trust store: %q", got)
	}
	a.Notation.TrustStore = &v1.DataSource{Data: "not a certificate"}
	c, _ = Convert(bg, policyWith(a), cluster.env(nil))
	if got := strings.Join(c.Policy.Problems, "; "); !strings.Contains(got, "trustStore") || len(c.Policy.AuthorityConfigs) != 0 {
		t.Errorf("garbage trust store: %q", got)
	}
}

// A key authority may name a trust root for its Rekor logs and timestamp authorities.
func TestKeyAuthorityWithATrustRoot(t *testing.T) {
	kp, err := signtest.NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	pool := trustroot.NewPool(trustroot.PoolConfig{CacheDir: t.TempDir()})
	a := v1.Authority{Name: "release", Key: &v1.KeyAuthority{Data: string(kp.PublicPEM)}, TrustRoot: &v1.TrustRoot{TrustedRoot: &v1.DataSource{Data: string(privateRoot(t))}}}
	c, err := Convert(bg, policyWith(a), Env{TrustRoots: pool})
	if err != nil || len(c.Policy.Problems) != 0 {
		t.Fatalf("%v %q", err, c.Policy.Problems)
	}
	if tr := c.Policy.AuthorityConfigs[0].TrustRoot; tr == nil || tr.Name() != "inline trustedRoot of authority release" {
		t.Errorf("trust root %v", tr)
	}
	// Without one, a key authority never reaches for the public-good instance.
	a.TrustRoot = nil
	c, _ = Convert(bg, policyWith(a), Env{TrustRoots: pool})
	if c.Policy.AuthorityConfigs[0].TrustRoot != nil || len(c.TrustRoots) != 0 {
		t.Error("a key authority got a trust root it did not name")
	}
}
