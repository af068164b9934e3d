package signtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/notaryproject/notation-go"
	nregistry "github.com/notaryproject/notation-go/registry"
	nsigner "github.com/notaryproject/notation-go/signer"
	"oras.land/oras-go/v2/registry/remote"
)

// Notation envelope media types.
const (
	NotationJWS  = "application/jose+json"
	NotationCOSE = "application/cose"
)

// NotationSigner is a Notary Project signing identity: a root CA and a code-signing leaf whose
// subject has the C, ST and O attributes Notation's trusted identities require.
type NotationSigner struct {
	RootPEM []byte
	Root    *x509.Certificate
	Leaf    *x509.Certificate
	// Identity is the trusted-identity string for the leaf: "x509.subject: C=..., ST=..., O=..., CN=...".
	Identity string

	key *ecdsa.PrivateKey
}

// NewNotationSigner creates a root and a leaf for organization org, valid from an hour ago
// until notAfter (zero: ten years).
func NewNotationSigner(org string, notAfter time.Time) (*NotationSigner, error) {
	now := time.Now()
	if notAfter.IsZero() {
		notAfter = now.AddDate(10, 0, 0)
	}
	dn := func(cn string) pkix.Name {
		return pkix.Name{Country: []string{"US"}, Province: []string{"WA"}, Locality: []string{"Seattle"}, Organization: []string{org}, CommonName: cn}
	}
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	rootTmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: dn(org + " root"),
		NotBefore: now.Add(-2 * time.Hour), NotAfter: now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true, IsCA: true,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	root, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: dn(org + " release"),
		NotBefore: now.Add(-time.Hour), NotAfter: notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, root, key.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(leafDER)
	if err != nil {
		return nil, err
	}
	return &NotationSigner{
		RootPEM: pemCert(rootDER), Root: root, Leaf: leaf, key: key,
		Identity: fmt.Sprintf("x509.subject: C=US, ST=WA, L=Seattle, O=%s, CN=%s release", org, org),
	}, nil
}

// Fingerprint is the SHA-256 fingerprint of the leaf certificate, as the verifier reports it.
func (s *NotationSigner) Fingerprint() string {
	return "SHA256:" + hexSHA256(s.Leaf.Raw)
}

// Sign signs ref with notation-go and pushes the signature as a referrer (the referrers API,
// or the tag schema where the registry lacks it), with envelope mediaType.
func (s *NotationSigner) Sign(ctx context.Context, ref name.Digest, mediaType string, plainHTTP bool) error {
	repo, err := remote.NewRepository(ref.Context().Name())
	if err != nil {
		return err
	}
	repo.PlainHTTP = plainHTTP
	signer, err := nsigner.NewGenericSigner(s.key, []*x509.Certificate{s.Leaf, s.Root})
	if err != nil {
		return err
	}
	_, err = notation.Sign(ctx, signer, nregistry.NewRepository(repo), notation.SignOptions{
		SignerSignOptions: notation.SignerSignOptions{SignatureMediaType: mediaType},
		ArtifactReference: ref.String(),
	})
	if err != nil {
		return fmt.Errorf("notation sign: %w", err)
	}
	return nil
}

func hexSHA256(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
