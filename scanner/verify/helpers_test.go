package verify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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

	"github.com/imagetrust/imagetrust/scanner/verify/signtest"
)

// testRegistry is ggcr's in-memory OCI registry behind httptest; wrap, when set, sits in
// front of it to inject failures.
func testRegistry(t testing.TB, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	return testRegistryWith(t, false, wrap)
}

// testRegistryWith serves the referrers API when referrers is set; without it clients fall
// back to the referrers tag schema.
func testRegistryWith(t testing.TB, referrers bool, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(referrers))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// countPath counts requests whose path contains part.
func countPath(n *int, part string) func(http.Handler) http.Handler {
	var mu sync.Mutex
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, part) {
				mu.Lock()
				*n++
				mu.Unlock()
			}
			next.ServeHTTP(w, r)
		})
	}
}

var anon = []remote.Option{remote.WithAuth(authn.Anonymous)}

// writeOpts are the registry options of the signing side.
func writeOpts() []ociremote.Option {
	return []ociremote.Option{ociremote.WithRemoteOptions(anon...)}
}

// verifier does not retry 5xx so failure tests stay fast.
func verifier() *Verifier {
	return &Verifier{RegistryOptions: []remote.Option{remote.WithAuth(authn.Anonymous), remote.WithRetryStatusCodes()}}
}

// pushImage pushes a random image to host/repo and returns it by digest.
func pushImage(t testing.TB, host, repo string) name.Digest {
	t.Helper()
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(host + "/" + repo + ":latest")
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
	return digestRef(t, tag.Context(), d)
}

func digestRef(t testing.TB, repo name.Repository, d v1.Hash) name.Digest {
	t.Helper()
	ref, err := name.NewDigest(repo.Name() + "@" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

func newKey(t *testing.T) *signtest.KeyPair {
	t.Helper()
	kp, err := signtest.NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func newCA(t *testing.T, n string) *signtest.CA {
	t.Helper()
	ca, err := signtest.NewCA(n)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func issue(t *testing.T, ca *signtest.CA, subject, issuer string, notBefore, notAfter time.Time) *signtest.Leaf {
	t.Helper()
	l, err := ca.IssueLeaf(subject, issuer, notBefore, notAfter)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// fingerprintOf computes the expected fingerprint independently of the package under test.
func fingerprintOf(t *testing.T, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return "SHA256:" + hex.EncodeToString(sum[:])
}

// keySigner is the Signer a key-based authority reports for a cosign signature without log.
func keySigner(t *testing.T, authority string, kp *signtest.KeyPair) Signer {
	t.Helper()
	return Signer{Authority: authority, KeyFingerprint: fingerprintOf(t, kp.PrivateKey.Public()),
		Format: FormatCosignLegacy, TimeProof: "none: transparency log ignored"}
}

// keylessSigner is the Signer a keyless authority reports for leaf's signature.
func keylessSigner(t *testing.T, authority string, leaf *signtest.Leaf, subject, issuer string, format SignatureFormat, proof string) Signer {
	t.Helper()
	sum := sha256.Sum256(leaf.Cert.Raw)
	return Signer{Authority: authority, KeyFingerprint: fingerprintOf(t, leaf.Cert.PublicKey), Subject: subject, Issuer: issuer,
		Format: format, TimeProof: proof, CertificateFingerprint: "SHA256:" + hex.EncodeToString(sum[:])}
}

func keyAuthority(n string, kp *signtest.KeyPair) Authority {
	return Authority{Name: n, PublicKeyPEM: kp.PublicPEM, IgnoreTlog: true}
}

func keylessAuthority(n string, ca *signtest.CA, ids ...Identity) Authority {
	return Authority{
		Name:       n,
		IgnoreTlog: true,
		Keyless: &Keyless{
			Identities: ids,
			RootsPEM:   ca.RootPEM,
			IgnoreSCT:  true,
		},
	}
}

func mustContain(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s %q does not contain %q", what, got, w)
		}
	}
}

var ctx = context.Background()

// rawManifest puts manifest bytes as they are.
type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
