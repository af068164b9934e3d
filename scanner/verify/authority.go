package verify

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"

	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/tuf" //nolint:staticcheck // SA1019: cosign v2 API takes its status type

	"github.com/imagetrust/imagetrust/scanner/verify/trustroot"
)

// Authority is one party whose signatures are accepted: a public key, a keyless (certificate)
// identity policy, or a Notation trust policy. Exactly one of PublicKeyPEM, Keyless and
// Notation is set. It is a library type, not a wire format: callers map their own
// configuration onto it.
type Authority struct {
	// Name identifies the authority in results and reasons.
	Name string
	// PublicKeyPEM is a PKIX PEM public key (ECDSA, ed25519 or RSA).
	PublicKeyPEM []byte
	// Keyless accepts Fulcio-style certificates chaining to the given roots.
	Keyless *Keyless
	// Notation accepts Notary Project signatures (JWS or COSE) under a Notation trust policy.
	Notation *Notation
	// IgnoreTlog accepts signatures without transparency-log proof. Off by default: then a
	// cosign signature must carry a Rekor bundle signed by one of RekorPublicKeyPEM's keys (or
	// a log of TrustRoot), and a Sigstore bundle a Rekor entry or an RFC 3161 timestamp that
	// the trusted material verifies. Not used by Notation authorities.
	IgnoreTlog bool
	// RekorPublicKeyPEM holds one or more ECDSA PEM keys of trusted Rekor logs, used to check
	// Rekor bundles offline.
	RekorPublicKeyPEM []byte
	// TrustRoot supplies Sigstore trusted material (Fulcio CAs, Rekor logs, CT logs,
	// timestamp authorities) for key-based and keyless authorities, in addition to the inline
	// PEM material. When its material is unavailable, verification by this authority is an
	// Error (never Verified).
	TrustRoot trustroot.Provider
}

// Keyless is the certificate policy of a keyless authority.
type Keyless struct {
	// Identities lists accepted (issuer, subject) pairs; a certificate must match one.
	Identities []Identity
	// RootsPEM are the trusted root certificates (e.g. Fulcio's, or a private CA's); required
	// unless the authority has a TrustRoot.
	RootsPEM []byte
	// IntermediatesPEM are optional intermediates. When set, only they are used to build the
	// path; when empty the chain stored with the signature is (the roots still decide trust).
	IntermediatesPEM []byte
	// CTLogPublicKeyPEM holds one or more PEM keys of trusted certificate-transparency logs,
	// used to check the SCT embedded in certificates.
	CTLogPublicKeyPEM []byte
	// IgnoreSCT accepts certificates without a verifiable SCT.
	IgnoreSCT bool
}

// Identity matches a certificate's OIDC issuer and subject (SAN), each either exactly or by a
// regular expression. One issuer form and one subject form are required.
type Identity struct {
	// Issuer must equal the certificate's OIDC issuer.
	Issuer string
	// IssuerRegExp must match the OIDC issuer. Like cosign's, it is not anchored implicitly:
	// write ^...$ to match the whole value.
	IssuerRegExp string
	// Subject must equal one of the certificate's SANs (email or URI).
	Subject string
	// SubjectRegExp must match one of the SANs; not anchored implicitly either.
	SubjectRegExp string
}

// Validate reports configuration mistakes in words a user can fix; an authority that fails it
// never verifies anything.
func (a Authority) Validate() error {
	_, err := compile(a)
	return err
}

// compiled is an authority parsed once per verification call.
type compiled struct {
	name string
	// key-based
	verifier    signature.Verifier
	fingerprint string
	// keyless
	roots, intermediates *x509.CertPool
	identities           []cosign.Identity
	subjectREs           []*regexp.Regexp // nil entries for exact subjects
	ctLog                *cosign.TrustedTransparencyLogPubKeys
	ignoreSCT            bool
	// transparency log
	ignoreTlog bool
	rekor      *cosign.TrustedTransparencyLogPubKeys
	// Sigstore trusted material: inline is built from the PEM fields; trustRoot adds to it.
	inline    root.TrustedMaterial
	trustRoot trustroot.Provider
	// notation is set for Notation authorities, which use none of the fields above.
	notation *notationAuthority
}

func (c *compiled) keyless() bool { return c.identities != nil }

func compile(a Authority) (*compiled, error) {
	if a.Name == "" {
		return nil, errors.New("authority: name is required")
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("authority %q: %s", a.Name, fmt.Sprintf(format, args...))
	}
	hasKey := len(bytes.TrimSpace(a.PublicKeyPEM)) > 0
	switch kinds := btoi(hasKey) + btoi(a.Keyless != nil) + btoi(a.Notation != nil); {
	case kinds > 1:
		return nil, fail("set exactly one of publicKey, keyless or notation")
	case kinds == 0:
		return nil, fail("one of publicKey, keyless or notation is required")
	}
	c := &compiled{name: a.Name, ignoreTlog: a.IgnoreTlog, trustRoot: a.TrustRoot}
	if a.Notation != nil {
		if a.TrustRoot != nil || len(bytes.TrimSpace(a.RekorPublicKeyPEM)) > 0 {
			return nil, fail("notation authorities take their trust from notation.trustStore, not from Sigstore material")
		}
		n, err := compileNotation(a.Name, *a.Notation)
		if err != nil {
			return nil, fail("notation: %v", err)
		}
		c.notation = n
		return c, nil
	}
	var err error
	if hasKey {
		err = c.compileKey(a.PublicKeyPEM)
	} else {
		err = c.compileKeyless(*a.Keyless, a.TrustRoot != nil)
	}
	if err != nil {
		return nil, fail("%v", err)
	}
	if len(bytes.TrimSpace(a.RekorPublicKeyPEM)) > 0 {
		if c.rekor, err = logKeys(a.RekorPublicKeyPEM, true); err != nil {
			return nil, fail("rekorPublicKey: %v", err)
		}
	}
	if c.inline, err = inlineMaterial(a); err != nil {
		return nil, fail("%v", err)
	}
	return c, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (c *compiled) compileKey(pemKey []byte) error {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemKey)
	if err != nil {
		return fmt.Errorf("publicKey is not a valid PEM public key: %v", err)
	}
	// SHA-256 is what cosign signs and verifies with for ECDSA and RSA keys.
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return fmt.Errorf("publicKey: unsupported key: %v", err)
	}
	c.verifier = v
	if c.fingerprint, err = Fingerprint(pub); err != nil {
		return fmt.Errorf("publicKey: %v", err)
	}
	return nil
}

func (c *compiled) compileKeyless(k Keyless, hasTrustRoot bool) error {
	if len(k.Identities) == 0 {
		return errors.New("keyless: at least one identity (issuer and subject) is required")
	}
	for i, id := range k.Identities {
		if err := checkIdentity(id); err != nil {
			return fmt.Errorf("keyless.identities[%d]: %v", i, err)
		}
		c.identities = append(c.identities, cosign.Identity{
			Issuer: id.Issuer, IssuerRegExp: id.IssuerRegExp,
			Subject: id.Subject, SubjectRegExp: id.SubjectRegExp,
		})
		var re *regexp.Regexp
		if id.SubjectRegExp != "" {
			re = regexp.MustCompile(id.SubjectRegExp) // checked above
		}
		c.subjectREs = append(c.subjectREs, re)
	}
	roots, err := certPool(k.RootsPEM)
	if err != nil {
		return fmt.Errorf("keyless.roots: %v", err)
	}
	if roots == nil && !hasTrustRoot {
		return errors.New("keyless.roots: at least one PEM root certificate is required (or a trust root)")
	}
	c.roots = roots
	if c.intermediates, err = certPool(k.IntermediatesPEM); err != nil {
		return fmt.Errorf("keyless.intermediates: %v", err)
	}
	if len(bytes.TrimSpace(k.CTLogPublicKeyPEM)) > 0 {
		if c.ctLog, err = logKeys(k.CTLogPublicKeyPEM, false); err != nil {
			return fmt.Errorf("keyless.ctLogPublicKey: %v", err)
		}
	}
	c.ignoreSCT = k.IgnoreSCT
	return nil
}

func checkIdentity(id Identity) error {
	switch {
	case id.Issuer != "" && id.IssuerRegExp != "":
		return errors.New("set either issuer or issuerRegExp, not both")
	case id.Issuer == "" && id.IssuerRegExp == "":
		return errors.New("issuer or issuerRegExp is required")
	case id.Subject != "" && id.SubjectRegExp != "":
		return errors.New("set either subject or subjectRegExp, not both")
	case id.Subject == "" && id.SubjectRegExp == "":
		return errors.New("subject or subjectRegExp is required")
	}
	if id.IssuerRegExp != "" {
		if _, err := regexp.Compile(id.IssuerRegExp); err != nil {
			return fmt.Errorf("issuerRegExp is not a valid regular expression: %v", err)
		}
	}
	if id.SubjectRegExp != "" {
		if _, err := regexp.Compile(id.SubjectRegExp); err != nil {
			return fmt.Errorf("subjectRegExp is not a valid regular expression: %v", err)
		}
	}
	return nil
}

// certPool parses PEM certificates; nil, nil when data holds none.
func certPool(data []byte) (*x509.CertPool, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil
	}
	certs, err := cryptoutils.UnmarshalCertificatesFromPEM(data)
	if err != nil {
		return nil, fmt.Errorf("invalid PEM certificates: %v", err)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// logKeys parses the PEM public keys of transparency logs into cosign's log-ID-keyed set.
func logKeys(data []byte, ecdsaOnly bool) (*cosign.TrustedTransparencyLogPubKeys, error) {
	keys := cosign.NewTrustedTransparencyLogPubKeys()
	blocks, err := pemBlocks(data)
	if err != nil {
		return nil, err
	}
	for _, block := range blocks {
		one := pem.EncodeToMemory(block)
		pub, err := cryptoutils.UnmarshalPEMToPublicKey(one)
		if err != nil {
			return nil, fmt.Errorf("invalid PEM public key: %v", err)
		}
		if _, ok := pub.(*ecdsa.PublicKey); ecdsaOnly && !ok {
			return nil, errors.New("must be an ECDSA key (cosign accepts only ECDSA Rekor keys)")
		}
		// cosign's TrustedTransparencyLogPubKeys still takes the legacy tuf status type.
		if err := keys.AddTransparencyLogPubKey(one, tuf.Active); err != nil { //nolint:staticcheck // SA1019: required by cosign's API
			return nil, fmt.Errorf("invalid PEM public key: %v", err)
		}
	}
	if len(keys.Keys) == 0 {
		return nil, errors.New("no PEM public key found")
	}
	return &keys, nil
}

// pemBlocks splits data into its PEM blocks; anything that is not PEM is an error.
func pemBlocks(data []byte) ([]*pem.Block, error) {
	var out []*pem.Block
	rest := bytes.TrimSpace(data)
	for len(rest) > 0 {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("invalid PEM public key")
		}
		rest = bytes.TrimSpace(rest)
		out = append(out, block)
	}
	return out, nil
}

// Fingerprint is "SHA256:" followed by the hex SHA-256 of the DER (PKIX) encoding of pub.
func Fingerprint(pub crypto.PublicKey) (string, error) {
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return "SHA256:" + hex.EncodeToString(sum[:]), nil
}
