// Package signtest makes real cosign signatures and attestations in a registry for tests and
// demos: key pairs, a throw-away Fulcio-like CA that issues keyless leaf certificates, and
// helpers that sign, attest and tamper with what is stored next to an image. Everything is
// produced with cosign's and sigstore's own libraries so that what the verifier sees is exactly
// what the cosign CLI would have written; nothing here talks to Fulcio, Rekor or TUF.
package signtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// KeyPair is a signing key in the shapes the tests need: the PEM public key an authority is
// configured with, the raw private key, and the sigstore signer cosign signs with.
type KeyPair struct {
	// PublicPEM is the PKIX "PUBLIC KEY" PEM block, what a user pastes into an authority.
	PublicPEM []byte
	// PrivateKey is the private half (ECDSA, ed25519 or RSA).
	PrivateKey crypto.Signer
	// SignerVerifier signs payloads the way cosign does (SHA-256 for ECDSA and RSA).
	SignerVerifier signature.SignerVerifier
}

// NewKeyPair generates an ECDSA P-256 key pair, the kind `cosign generate-key-pair` makes.
func NewKeyPair() (*KeyPair, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating ECDSA key: %w", err)
	}
	return NewKeyPairFromSigner(priv)
}

// NewRSAKeyPair generates a 2048-bit RSA key pair, to cover authorities holding RSA keys.
func NewRSAKeyPair() (*KeyPair, error) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generating RSA key: %w", err)
	}
	return NewKeyPairFromSigner(priv)
}

// NewKeyPairFromSigner wraps an existing ECDSA, ed25519 or RSA private key, so tests can cover
// every key type an authority accepts.
func NewKeyPairFromSigner(priv crypto.Signer) (*KeyPair, error) {
	sv, err := signature.LoadSignerVerifier(priv, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("loading signer: %w", err)
	}
	pubPEM, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	if err != nil {
		return nil, fmt.Errorf("encoding public key: %w", err)
	}
	return &KeyPair{PublicPEM: pubPEM, PrivateKey: priv, SignerVerifier: sv}, nil
}

// Fingerprint is "SHA256:" and the hex SHA-256 of the DER (PKIX) public key, the form the
// verifier reports signers in.
func (k *KeyPair) Fingerprint() string {
	return fingerprint(k.PrivateKey.Public())
}

func fingerprint(pub crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return "SHA256:" + hex.EncodeToString(sum[:])
}

// Signer is anything the helpers can sign with: a *KeyPair (key-based signing) or a *Leaf
// (keyless signing, the certificate and chain are attached the way cosign attaches them).
type Signer interface {
	material() (sv signature.SignerVerifier, certPEM, chainPEM []byte)
}

func (k *KeyPair) material() (signature.SignerVerifier, []byte, []byte) {
	return k.SignerVerifier, nil, nil
}

func (l *Leaf) material() (signature.SignerVerifier, []byte, []byte) {
	return l.Key.SignerVerifier, l.CertPEM, l.ChainPEM
}

// OIDs of the Fulcio OIDC-issuer extensions: cosign v2 reads the first (raw string value);
// Fulcio also writes the second (DER UTF8String), which newer verifiers read.
var (
	OIDIssuerV1 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 1}
	OIDIssuerV2 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 8}
)

// CA is a test root and intermediate shaped like Fulcio's: the root signs the intermediate,
// the intermediate issues short-lived code-signing leaves.
type CA struct {
	Root            *x509.Certificate
	RootPEM         []byte
	Intermediate    *x509.Certificate
	IntermediatePEM []byte

	intermediateKey *ecdsa.PrivateKey
}

// NewCA creates a root and an intermediate whose common names start with name, valid from an
// hour ago for ten years, so leaves with any test validity window chain to them.
func NewCA(name string) (*CA, error) {
	now := time.Now()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	rootTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name + " root", Organization: []string{"signtest"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		return nil, fmt.Errorf("creating root: %w", err)
	}
	root, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return nil, err
	}

	interKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	interTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name + " intermediate", Organization: []string{"signtest"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	interDER, err := x509.CreateCertificate(rand.Reader, interTmpl, root, interKey.Public(), rootKey)
	if err != nil {
		return nil, fmt.Errorf("creating intermediate: %w", err)
	}
	inter, err := x509.ParseCertificate(interDER)
	if err != nil {
		return nil, err
	}
	return &CA{
		Root:            root,
		RootPEM:         pemCert(rootDER),
		Intermediate:    inter,
		IntermediatePEM: pemCert(interDER),
		intermediateKey: interKey,
	}, nil
}

// Leaf is a keyless signing identity: a fresh key and the certificate the CA issued for it.
type Leaf struct {
	Key *KeyPair
	// Cert is the leaf certificate; CertPEM its PEM form, attached to signatures.
	Cert    *x509.Certificate
	CertPEM []byte
	// ChainPEM is intermediate then root, what cosign stores in the chain annotation.
	ChainPEM []byte
}

// IssueLeaf issues a code-signing certificate for a fresh ECDSA key with subject as its SAN
// and issuer in the Fulcio OIDC-issuer extensions. A subject containing "://" becomes a URI
// SAN (CI workflow identities), anything else an email SAN.
func (ca *CA) IssueLeaf(subject, issuer string, notBefore, notAfter time.Time) (*Leaf, error) {
	if subject == "" {
		return nil, errors.New("subject is required")
	}
	kp, err := NewKeyPair()
	if err != nil {
		return nil, err
	}
	issuerV2, err := asn1.MarshalWithParams(issuer, "utf8")
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		ExtraExtensions: []pkix.Extension{
			{Id: OIDIssuerV1, Value: []byte(issuer)},
			{Id: OIDIssuerV2, Value: issuerV2},
		},
	}
	if strings.Contains(subject, "://") {
		u, err := url.Parse(subject)
		if err != nil {
			return nil, fmt.Errorf("parsing URI subject: %w", err)
		}
		tmpl.URIs = []*url.URL{u}
	} else {
		tmpl.EmailAddresses = []string{subject}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Intermediate, kp.PrivateKey.Public(), ca.intermediateKey)
	if err != nil {
		return nil, fmt.Errorf("issuing leaf: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	chain := append(append([]byte{}, ca.IntermediatePEM...), ca.RootPEM...)
	return &Leaf{Key: kp, Cert: cert, CertPEM: pemCert(der), ChainPEM: chain}, nil
}

// Fingerprint is the fingerprint of the leaf's public key, as the verifier reports it.
func (l *Leaf) Fingerprint() string {
	return fingerprint(l.Cert.PublicKey)
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}
