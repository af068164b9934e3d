package signtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/digitorus/timestamp"
)

// TSA is an RFC 3161 timestamp authority: a root, a timestamping leaf, and an HTTP handler
// answering application/timestamp-query requests the way a real TSA does. cosign, notation and
// sigstore-go's signer can be pointed at it.
type TSA struct {
	Root    *x509.Certificate
	RootPEM []byte
	Leaf    *x509.Certificate
	// ChainPEM is leaf then root, what `--timestamp-certificate-chain` and trust roots take.
	ChainPEM []byte

	key *ecdsa.PrivateKey

	mu sync.Mutex
	// now is the time put in timestamps; nil means the current time.
	now func() time.Time
}

// NewTSA creates a TSA whose certificates are valid from an hour ago for ten years.
func NewTSA(name string) (*TSA, error) {
	now := time.Now()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	rootTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name + " TSA root", Organization: []string{"signtest"}, Country: []string{"US"}, Province: []string{"WA"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	root, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return nil, err
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	// RFC 3161 §2.3: the only extended key usage, critical.
	eku, err := asn1.Marshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 8}})
	if err != nil {
		return nil, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber:    serial(),
		Subject:         pkix.Name{CommonName: name + " TSA", Organization: []string{"signtest"}, Country: []string{"US"}, Province: []string{"WA"}},
		NotBefore:       now.Add(-time.Hour),
		NotAfter:        now.AddDate(10, 0, 0),
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Critical: true, Value: eku}},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, root, leafKey.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(leafDER)
	if err != nil {
		return nil, err
	}
	return &TSA{
		Root: root, RootPEM: pemCert(rootDER), Leaf: leaf,
		ChainPEM: append(pemCert(leafDER), pemCert(rootDER)...),
		key:      leafKey,
	}, nil
}

// SetTime makes the TSA stamp t instead of the current time (nil restores the clock).
func (t *TSA) SetTime(now func() time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.now = now
}

func (t *TSA) time() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.now != nil {
		return t.now()
	}
	return time.Now()
}

// Stamp answers one DER timestamp request with a DER timestamp response.
func (t *TSA) Stamp(query []byte) ([]byte, error) {
	req, err := timestamp.ParseRequest(query)
	if err != nil {
		return nil, fmt.Errorf("parsing timestamp request: %w", err)
	}
	ts := timestamp.Timestamp{
		HashAlgorithm:     req.HashAlgorithm,
		HashedMessage:     req.HashedMessage,
		Time:              t.time(),
		Nonce:             req.Nonce,
		Policy:            asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 2},
		AddTSACertificate: req.Certificates,
		ExtraExtensions:   req.Extensions,
	}
	return ts.CreateResponseWithOpts(t.Leaf, t.key, crypto.SHA256)
}

// ServeHTTP implements the RFC 3161 HTTP transport (POST application/timestamp-query).
func (t *TSA) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST a timestamp query", http.StatusMethodNotAllowed)
		return
	}
	query, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	resp, err := t.Stamp(query)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/timestamp-reply")
	_, _ = w.Write(resp)
}
