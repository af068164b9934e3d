package verify

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

func TestAuthorityValidate(t *testing.T) {
	kp := newKey(t)
	ca := newCA(t, "test")
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPEM, err := cryptoutils.MarshalPublicKeyToPEM(edPub)
	if err != nil {
		t.Fatal(err)
	}
	id := Identity{Issuer: "https://issuer", Subject: "me@example.com"}
	keyless := func(mod func(*Keyless)) Authority {
		k := &Keyless{Identities: []Identity{id}, RootsPEM: ca.RootPEM}
		if mod != nil {
			mod(k)
		}
		return Authority{Name: "ci", Keyless: k}
	}
	for _, tc := range []struct {
		name string
		a    Authority
		want string // empty: valid
	}{
		{"key", Authority{Name: "k", PublicKeyPEM: kp.PublicPEM}, ""},
		{"ed25519 key", Authority{Name: "k", PublicKeyPEM: edPEM}, ""},
		{"keyless", keyless(nil), ""},
		{"keyless with everything", func() Authority {
			a := keyless(func(k *Keyless) {
				k.IntermediatesPEM = ca.IntermediatePEM
				k.CTLogPublicKeyPEM = append(append([]byte{}, kp.PublicPEM...), edPEM...)
				k.Identities = append(k.Identities, Identity{IssuerRegExp: `^https://`, SubjectRegExp: `@example\.com$`})
			})
			a.RekorPublicKeyPEM = kp.PublicPEM
			return a
		}(), ""},
		{"no name", Authority{PublicKeyPEM: kp.PublicPEM}, "authority: name is required"},
		{"neither key nor keyless", Authority{Name: "x"}, `authority "x": one of publicKey, keyless or notation is required`},
		{"both key and keyless", func() Authority { a := keyless(nil); a.PublicKeyPEM = kp.PublicPEM; return a }(),
			`authority "ci": set exactly one of publicKey, keyless or notation`},
		{"bad key PEM", Authority{Name: "k", PublicKeyPEM: []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")},
			`authority "k": publicKey is not a valid PEM public key`},
		{"key is not PEM", Authority{Name: "k", PublicKeyPEM: []byte("ssh-ed25519 AAAA")},
			`authority "k": publicKey is not a valid PEM public key`},
		{"no identities", keyless(func(k *Keyless) { k.Identities = nil }),
			`authority "ci": keyless: at least one identity (issuer and subject) is required`},
		{"identity without issuer", keyless(func(k *Keyless) { k.Identities = []Identity{{Subject: "me@example.com"}} }),
			`authority "ci": keyless.identities[0]: issuer or issuerRegExp is required`},
		{"identity without subject", keyless(func(k *Keyless) { k.Identities = []Identity{{Issuer: "https://i"}} }),
			`authority "ci": keyless.identities[0]: subject or subjectRegExp is required`},
		{"identity with both subject forms", keyless(func(k *Keyless) {
			k.Identities = []Identity{{Issuer: "https://i", Subject: "a", SubjectRegExp: "a"}}
		}), `keyless.identities[0]: set either subject or subjectRegExp, not both`},
		{"bad subject regexp", keyless(func(k *Keyless) {
			k.Identities = []Identity{id, {Issuer: "https://i", SubjectRegExp: "(unclosed"}}
		}), `authority "ci": keyless.identities[1]: subjectRegExp is not a valid regular expression: error parsing regexp: missing closing ): ` + "`(unclosed`"},
		{"bad issuer regexp", keyless(func(k *Keyless) {
			k.Identities = []Identity{{IssuerRegExp: "[", Subject: "me"}}
		}), `keyless.identities[0]: issuerRegExp is not a valid regular expression`},
		{"no roots", keyless(func(k *Keyless) { k.RootsPEM = nil }),
			`authority "ci": keyless.roots: at least one PEM root certificate is required`},
		{"bad roots", keyless(func(k *Keyless) { k.RootsPEM = []byte("garbage") }),
			`authority "ci": keyless.roots: invalid PEM certificates`},
		{"bad intermediates", keyless(func(k *Keyless) { k.IntermediatesPEM = kp.PublicPEM }),
			`authority "ci": keyless.intermediates: invalid PEM certificates`},
		{"bad CT log key", keyless(func(k *Keyless) { k.CTLogPublicKeyPEM = []byte("nope") }),
			`authority "ci": keyless.ctLogPublicKey: invalid PEM public key`},
		{"bad Rekor key", Authority{Name: "k", PublicKeyPEM: kp.PublicPEM, RekorPublicKeyPEM: ca.RootPEM},
			`authority "k": rekorPublicKey: invalid PEM public key`},
		{"non-ECDSA Rekor key", Authority{Name: "k", PublicKeyPEM: kp.PublicPEM, RekorPublicKeyPEM: edPEM},
			`authority "k": rekorPublicKey: must be an ECDSA key`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.a.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %q, want it to contain %q", err, tc.want)
			}
		})
	}
}
