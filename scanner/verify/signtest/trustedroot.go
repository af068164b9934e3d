package signtest

import (
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
)

// TrustedRoot lists what a trusted_root.json for the test services trusts.
type TrustedRoot struct {
	CAs     []*CA
	Rekor   []*Rekor
	RekorV2 []*RekorV2
	TSAs    []*TSA
}

// JSON renders the trusted_root.json document (the format `cosign verify --trusted-root`
// takes) with sigstore-go's own encoder.
func (t TrustedRoot) JSON() ([]byte, error) {
	start := time.Now().Add(-24 * time.Hour)
	var cas []root.CertificateAuthority
	for _, ca := range t.CAs {
		cas = append(cas, &root.FulcioCertificateAuthority{
			Root: ca.Root, Intermediates: []*x509.Certificate{ca.Intermediate},
			ValidityPeriodStart: start, URI: "https://fulcio.signtest.local",
		})
	}
	logs := map[string]*root.TransparencyLog{}
	add := func(pub crypto.PublicKey, baseURL string) error {
		id, err := LogID(pub)
		if err != nil {
			return err
		}
		raw, _ := hex.DecodeString(id)
		logs[id] = &root.TransparencyLog{
			BaseURL: baseURL, ID: raw, ValidityPeriodStart: start,
			HashFunc: crypto.SHA256, PublicKey: pub, SignatureHashFunc: crypto.SHA256,
		}
		return nil
	}
	for _, r := range t.Rekor {
		if err := add(r.Key.PrivateKey.Public(), "https://"+rekorV1Host); err != nil {
			return nil, err
		}
	}
	for _, r := range t.RekorV2 {
		if err := add(r.Key.PrivateKey.Public(), r.BaseURL); err != nil {
			return nil, err
		}
	}
	var tsas []root.TimestampingAuthority
	for _, tsa := range t.TSAs {
		tsas = append(tsas, &root.SigstoreTimestampingAuthority{
			Root: tsa.Root, Leaf: tsa.Leaf, ValidityPeriodStart: start, URI: "https://tsa.signtest.local",
		})
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, cas, map[string]*root.TransparencyLog{}, tsas, logs)
	if err != nil {
		return nil, err
	}
	return tr.MarshalJSON()
}
