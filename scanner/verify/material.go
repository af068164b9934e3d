package verify

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/imagetrust/imagetrust/scanner/verify/trustroot"
)

// inlineMaterial turns an authority's PEM fields (roots, intermediates, Rekor and CT log keys)
// into sigstore-go trusted material, so Sigstore bundles are checked against exactly what the
// cosign path trusts. Rekor logs given only as keys have no URL, so Rekor v2 entries (whose
// checkpoints name the log's host) need a trust root.
func inlineMaterial(a Authority) (root.TrustedMaterial, error) {
	var cas []root.CertificateAuthority
	ctLogs := map[string]*root.TransparencyLog{}
	if k := a.Keyless; k != nil {
		roots, err := parseCerts(k.RootsPEM)
		if err != nil {
			return nil, fmt.Errorf("keyless.roots: %v", err)
		}
		inters, err := parseCerts(k.IntermediatesPEM)
		if err != nil {
			return nil, fmt.Errorf("keyless.intermediates: %v", err)
		}
		for _, r := range roots {
			cas = append(cas, &root.FulcioCertificateAuthority{Root: r, Intermediates: inters})
		}
		if ctLogs, err = logsFromPEM(k.CTLogPublicKeyPEM); err != nil {
			return nil, fmt.Errorf("keyless.ctLogPublicKey: %v", err)
		}
	}
	rekor, err := logsFromPEM(a.RekorPublicKeyPEM)
	if err != nil {
		return nil, fmt.Errorf("rekorPublicKey: %v", err)
	}
	return root.NewTrustedRoot(root.TrustedRootMediaType01, cas, ctLogs, nil, rekor)
}

func parseCerts(data []byte) ([]*x509.Certificate, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil
	}
	return cryptoutils.UnmarshalCertificatesFromPEM(data)
}

// logsFromPEM keys each log by the hex SHA-256 of its DER public key, the log ID Rekor and CT
// logs use.
func logsFromPEM(data []byte) (map[string]*root.TransparencyLog, error) {
	logs := map[string]*root.TransparencyLog{}
	blocks, err := pemBlocks(data)
	if err != nil {
		return nil, err
	}
	for _, block := range blocks {
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("invalid PEM public key: %v", err)
		}
		id := sha256.Sum256(block.Bytes)
		logs[hex.EncodeToString(id[:])] = &root.TransparencyLog{
			ID: id[:],
			// An inline key is trusted for all time; sigstore-go requires a start.
			ValidityPeriodStart: time.Unix(0, 0),
			HashFunc:            crypto.SHA256,
			PublicKey:           pub,
			SignatureHashFunc:   signatureHash(pub),
		}
	}
	return logs, nil
}

func signatureHash(pub crypto.PublicKey) crypto.Hash {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve.Params().BitSize {
		case 384:
			return crypto.SHA384
		case 521:
			return crypto.SHA512
		}
		return crypto.SHA256
	case *rsa.PublicKey:
		return crypto.SHA256
	}
	return crypto.Hash(0) // ed25519 signs the message itself
}

// material is everything the authority trusts for Sigstore verification: the inline material
// plus its trust root's. An unavailable trust root is an error the caller reports as Error.
func (c *compiled) material(ctx context.Context) (root.TrustedMaterial, error) {
	if c.trustRoot == nil {
		return c.inline, nil
	}
	m, err := c.trustRoot.Material(ctx)
	if err != nil {
		return nil, err
	}
	return root.TrustedMaterialCollection{c.inline, m}, nil
}

// withKey makes the authority's public key the only key the material trusts, whatever hint a
// bundle carries: key-based authorities pin exactly one key.
type withKey struct {
	root.TrustedMaterial
	key root.TimeConstrainedVerifier
}

func (w withKey) PublicKeyVerifier(string) (root.TimeConstrainedVerifier, error) { return w.key, nil }

func keyMaterial(m root.TrustedMaterial, v signature.Verifier) root.TrustedMaterial {
	return withKey{TrustedMaterial: m, key: root.NewExpiringKey(v, time.Time{}, time.Time{})}
}

// isUnavailable is true for errors that say trusted material could not be obtained: no verdict.
func isUnavailable(err error) bool { return trustroot.IsUnavailable(err) }
