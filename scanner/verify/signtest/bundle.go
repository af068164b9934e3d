package signtest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"google.golang.org/protobuf/encoding/protojson"
)

// CosignSignPredicateType is the predicate cosign v3 signs images with.
const CosignSignPredicateType = "https://sigstore.dev/cosign/sign/v1"

// BundleOptions adds proofs to a Sigstore bundle. With none, the bundle is what
// `cosign sign --tlog-upload=false` writes.
type BundleOptions struct {
	// Rekor logs the signature in a Rekor v1 log: signed entry timestamp and inclusion proof.
	Rekor *Rekor
	// RekorV2 logs the signature in a Rekor v2 log: inclusion proof and signed checkpoint.
	RekorV2 *RekorV2
	// TSA adds an RFC 3161 timestamp over the signature.
	TSA *TSA
	// LeafOnly puts only a keyless signer's certificate in the bundle, for trust roots that
	// hold the intermediates (sigstore-go logs chains in Rekor v2 as keys, which fails).
	LeafOnly bool
}

// SignBundle signs ref the way cosign v3 does: an in-toto statement about ref's digest with
// the cosign sign predicate, DSSE-signed into a Sigstore bundle stored as a referrer of ref.
func SignBundle(ctx context.Context, ref name.Digest, s Signer, o BundleOptions, opts ...ociremote.Option) error {
	return AttestBundle(ctx, ref, ref, CosignSignPredicateType, []byte(`{}`), s, o, opts...)
}

// AttestBundle writes a bundle attestation of predicateType about subject as a referrer of
// ref; a subject other than ref forges the "copied from another image" case.
func AttestBundle(ctx context.Context, ref, subject name.Digest, predicateType string, predicate []byte, s Signer, o BundleOptions, opts ...ociremote.Option) error {
	b, err := NewBundle(ctx, subject, predicateType, predicate, s, o)
	if err != nil {
		return err
	}
	return WriteBundle(ctx, ref, b, predicateType, opts...)
}

// WriteBundle stores bundle JSON as a referrer of ref, in cosign v3's manifest shape.
func WriteBundle(ctx context.Context, ref name.Digest, bundleJSON []byte, predicateType string, opts ...ociremote.Option) error {
	if err := ociremote.WriteAttestationNewBundleFormat(ref, bundleJSON, predicateType, withContext(ctx, opts)...); err != nil {
		return fmt.Errorf("writing bundle: %w", err)
	}
	return nil
}

// NewBundle returns the JSON of a v0.3 bundle holding a DSSE-signed statement about subject.
// A *Leaf signer puts its certificate and intermediate in the bundle, as cosign does for
// private CAs.
func NewBundle(ctx context.Context, subject name.Digest, predicateType string, predicate []byte, s Signer, o BundleOptions) ([]byte, error) {
	st, err := statementJSON(subject, "https://in-toto.io/Statement/v1", predicateType, predicate)
	if err != nil {
		return nil, err
	}
	kp, err := newKeypair(s)
	if err != nil {
		return nil, err
	}
	bo := sign.BundleOptions{Context: ctx}
	if l, ok := s.(*Leaf); ok && o.LeafOnly {
		bo.CertificateProvider = chainProvider{leaf: l}
	} else if ok {
		bo.CertificateChainProvider = chainProvider{leaf: l}
	}
	if o.TSA != nil {
		bo.TimestampAuthorities = append(bo.TimestampAuthorities, sign.NewTimestampAuthority(&sign.TimestampAuthorityOptions{
			URL: "https://tsa.signtest.local/api/v1/timestamp", Transport: o.TSA.RoundTripper(),
		}))
	}
	if o.Rekor != nil {
		bo.TransparencyLogs = append(bo.TransparencyLogs, sign.NewRekor(&sign.RekorOptions{Client: o.Rekor.RekorV1Client(), Version: 1}))
	}
	if o.RekorV2 != nil {
		bo.TransparencyLogs = append(bo.TransparencyLogs, sign.NewRekor(&sign.RekorOptions{ClientV2: o.RekorV2, Version: 2}))
	}
	pb, err := sign.Bundle(&sign.DSSEData{Data: st, PayloadType: "application/vnd.in-toto+json"}, kp, bo)
	if err != nil {
		return nil, fmt.Errorf("making bundle: %w", err)
	}
	return protojson.Marshal(pb)
}

// statementJSON renders an in-toto statement of statementType about subject.
func statementJSON(subject name.Digest, statementType, predicateType string, predicate []byte) ([]byte, error) {
	if !json.Valid(predicate) {
		return nil, errors.New("predicate is not valid JSON")
	}
	h, err := hexDigest(subject)
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{
		"_type":         statementType,
		"subject":       []map[string]any{{"name": subject.Context().Name(), "digest": map[string]string{"sha256": h}}},
		"predicateType": predicateType,
		"predicate":     json.RawMessage(predicate),
	})
}

// chainProvider hands sigstore-go the leaf and its intermediate, never the root.
type chainProvider struct{ leaf *Leaf }

func (c chainProvider) GetCertificate(context.Context, sign.Keypair, *sign.CertificateProviderOptions) ([]byte, error) {
	return c.leaf.Cert.Raw, nil
}

func (c chainProvider) GetCertificateChain(context.Context, sign.Keypair, *sign.CertificateProviderOptions) ([][]byte, error) {
	certs, err := cryptoutils.UnmarshalCertificatesFromPEM(append(append([]byte{}, c.leaf.CertPEM...), c.leaf.ChainPEM...))
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, cert := range certs {
		if cert.IsCA && string(cert.RawIssuer) == string(cert.RawSubject) {
			continue // the self-signed root is the verifier's to supply
		}
		out = append(out, cert.Raw)
	}
	return out, nil
}

// keypair is sigstore-go's sign.Keypair over a test key.
type keypair struct {
	priv crypto.Signer
	pem  string
}

func newKeypair(s Signer) (*keypair, error) {
	var priv crypto.Signer
	switch v := s.(type) {
	case *KeyPair:
		priv = v.PrivateKey
	case *Leaf:
		priv = v.Key.PrivateKey
	default:
		return nil, fmt.Errorf("unsupported signer %T", s)
	}
	p, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	if err != nil {
		return nil, err
	}
	return &keypair{priv: priv, pem: string(p)}, nil
}

func (k *keypair) GetHashAlgorithm() protocommon.HashAlgorithm {
	return protocommon.HashAlgorithm_SHA2_256
}

func (k *keypair) GetSigningAlgorithm() protocommon.PublicKeyDetails {
	switch k.priv.Public().(type) {
	case *ecdsa.PublicKey:
		return protocommon.PublicKeyDetails_PKIX_ECDSA_P256_SHA_256
	case *rsa.PublicKey:
		return protocommon.PublicKeyDetails_PKIX_RSA_PKCS1V15_2048_SHA256
	}
	return protocommon.PublicKeyDetails_PKIX_ED25519
}

func (k *keypair) GetHint() []byte {
	sum := sha256.Sum256([]byte(k.pem))
	return []byte(base64.StdEncoding.EncodeToString(sum[:]))
}

func (k *keypair) GetKeyAlgorithm() string {
	switch k.priv.Public().(type) {
	case *ecdsa.PublicKey:
		return "ECDSA"
	case *rsa.PublicKey:
		return "RSA"
	}
	return "ED25519"
}

func (k *keypair) GetPublicKey() crypto.PublicKey { return k.priv.Public() }

func (k *keypair) GetPublicKeyPem() (string, error) { return k.pem, nil }

// SignData signs data (SHA-256 first, except for ed25519) and returns signature and digest.
func (k *keypair) SignData(_ context.Context, data []byte) ([]byte, []byte, error) {
	digest := sha256.Sum256(data)
	if _, ok := k.priv.Public().(ed25519.PublicKey); ok {
		sig, err := k.priv.Sign(rand.Reader, data, crypto.Hash(0))
		return sig, digest[:], err
	}
	sig, err := k.priv.Sign(rand.Reader, digest[:], crypto.SHA256)
	return sig, digest[:], err
}
