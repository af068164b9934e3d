package signtest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cyberphone/json-canonicalization/go/src/webpki.org/jsoncanonicalizer"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	cbundle "github.com/sigstore/cosign/v2/pkg/cosign/bundle"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/empty"
	"github.com/sigstore/cosign/v2/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	ctypes "github.com/sigstore/cosign/v2/pkg/types"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature/dsse"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

// SignImage signs ref with a key pair exactly as `cosign sign --key --tlog-upload=false` does
// and appends the signature to the ref's ".sig" tag. ref may be any digest (image, index or
// artifact manifest); its manifest is never read.
func SignImage(ctx context.Context, ref name.Digest, kp *KeyPair, opts ...ociremote.Option) error {
	return Sign(ctx, ref, kp, nil, opts...)
}

// SignImageKeyless signs ref with a CA-issued leaf, attaching certificate and chain the way
// keyless cosign does.
func SignImageKeyless(ctx context.Context, ref name.Digest, leaf *Leaf, opts ...ociremote.Option) error {
	return Sign(ctx, ref, leaf, nil, opts...)
}

// Sign signs ref with any Signer; with a non-nil rekor it also attaches a Rekor bundle whose
// signed entry timestamp is made with the test Rekor key, so offline transparency-log
// verification can be exercised.
func Sign(ctx context.Context, ref name.Digest, s Signer, rekor *Rekor, opts ...ociremote.Option) error {
	sv, certPEM, chainPEM := s.material()
	pl, err := (&payload.Cosign{Image: ref}).MarshalJSON()
	if err != nil {
		return fmt.Errorf("building payload: %w", err)
	}
	rawSig, err := sv.SignMessage(bytes.NewReader(pl))
	if err != nil {
		return fmt.Errorf("signing payload: %w", err)
	}
	b64sig := base64.StdEncoding.EncodeToString(rawSig)

	var sopts []static.Option
	if certPEM != nil {
		sopts = append(sopts, static.WithCertChain(certPEM, chainPEM))
	}
	if rekor != nil {
		keyPEM := certPEM
		if keyPEM == nil {
			pub, err := sv.PublicKey()
			if err != nil {
				return err
			}
			if keyPEM, err = cryptoutils.MarshalPublicKeyToPEM(pub); err != nil {
				return err
			}
		}
		b, err := rekor.bundle(pl, b64sig, keyPEM)
		if err != nil {
			return fmt.Errorf("making Rekor bundle: %w", err)
		}
		sopts = append(sopts, static.WithBundle(b))
	}
	sig, err := static.NewSignature(pl, b64sig, sopts...)
	if err != nil {
		return err
	}
	opts = withContext(ctx, opts)
	se, err := mutate.AttachSignatureToEntity(ociremote.SignedUnknown(ref, opts...), sig)
	if err != nil {
		return err
	}
	if err := ociremote.WriteSignatures(ref.Context(), se, opts...); err != nil {
		return fmt.Errorf("writing signature: %w", err)
	}
	return nil
}

// Attest writes a signed in-toto attestation to ref's ".att" tag. The statement's subject is
// subject, normally ref itself; passing another digest forges the "attestation copied from
// another image" case a verifier must reject.
func Attest(ctx context.Context, ref name.Digest, subject name.Digest, predicateType string, predicate []byte, s Signer, opts ...ociremote.Option) error {
	stBytes, err := statementJSON(subject, "https://in-toto.io/Statement/v0.1", predicateType, predicate)
	if err != nil {
		return err
	}
	return AttestRaw(ctx, ref, predicateType, stBytes, s, opts...)
}

// AttestRaw signs statement bytes as they are (well-formed or not) into a DSSE attestation on
// ref's ".att" tag: the "signer published garbage" cases a verifier must name as such.
func AttestRaw(ctx context.Context, ref name.Digest, predicateType string, stBytes []byte, s Signer, opts ...ociremote.Option) error {
	sv, certPEM, chainPEM := s.material()
	envelope, err := dsse.WrapSigner(sv, ctypes.IntotoPayloadType).SignMessage(bytes.NewReader(stBytes))
	if err != nil {
		return fmt.Errorf("signing statement: %w", err)
	}
	sopts := []static.Option{
		static.WithLayerMediaType(ctypes.DssePayloadType),
		static.WithAnnotations(map[string]string{"predicateType": predicateType}),
	}
	if certPEM != nil {
		sopts = append(sopts, static.WithCertChain(certPEM, chainPEM))
	}
	att, err := static.NewAttestation(envelope, sopts...)
	if err != nil {
		return err
	}
	opts = withContext(ctx, opts)
	se, err := mutate.AttachAttestationToEntity(ociremote.SignedUnknown(ref, opts...), att)
	if err != nil {
		return err
	}
	if err := ociremote.WriteAttestations(ref.Context(), se, opts...); err != nil {
		return fmt.Errorf("writing attestation: %w", err)
	}
	return nil
}

// TamperSignaturePayload rewrites the payload of every signature stored for ref (adding an
// "optional" claim) while keeping the signature bytes, certificate and bundle: the stored
// signatures then no longer match their payloads.
func TamperSignaturePayload(ctx context.Context, ref name.Digest, opts ...ociremote.Option) error {
	opts = withContext(ctx, opts)
	se := ociremote.SignedUnknown(ref, opts...)
	sigs, err := se.Signatures()
	if err != nil {
		return err
	}
	list, err := sigs.Get()
	if err != nil {
		return err
	}
	if len(list) == 0 {
		return errors.New("no signatures to tamper with")
	}
	var tampered []oci.Signature
	for _, sig := range list {
		pl, err := sig.Payload()
		if err != nil {
			return err
		}
		var sci payload.SimpleContainerImage
		if err := json.Unmarshal(pl, &sci); err != nil {
			return fmt.Errorf("decoding payload: %w", err)
		}
		if sci.Optional == nil {
			sci.Optional = map[string]any{}
		}
		sci.Optional["tampered"] = "true"
		newPl, err := json.Marshal(sci)
		if err != nil {
			return err
		}
		b64sig, err := sig.Base64Signature()
		if err != nil {
			return err
		}
		ann, err := sig.Annotations()
		if err != nil {
			return err
		}
		var sopts []static.Option
		sopts = append(sopts, static.WithAnnotations(ann))
		if c, ok := ann[static.CertificateAnnotationKey]; ok {
			sopts = append(sopts, static.WithCertChain([]byte(c), []byte(ann[static.ChainAnnotationKey])))
		}
		if b, err := sig.Bundle(); err != nil {
			return err
		} else if b != nil {
			sopts = append(sopts, static.WithBundle(b))
		}
		ns, err := static.NewSignature(newPl, b64sig, sopts...)
		if err != nil {
			return err
		}
		tampered = append(tampered, ns)
	}
	replaced, err := mutate.AppendSignatures(empty.Signatures(), false, tampered...)
	if err != nil {
		return err
	}
	return ociremote.WriteSignatures(ref.Context(), &withSignatures{SignedEntity: se, sigs: replaced}, opts...)
}

// withSignatures replaces an entity's signatures with a fixed set.
type withSignatures struct {
	oci.SignedEntity
	sigs oci.Signatures
}

func (w *withSignatures) Signatures() (oci.Signatures, error) { return w.sigs, nil }

// Rekor stands in for a transparency log: Key signs the entries' signed entry timestamps and
// its public PEM is what an authority trusts as the Rekor key.
type Rekor struct {
	Key *KeyPair
	// IntegratedTime is the log time recorded in the entry; zero means now.
	IntegratedTime time.Time
	// LogIndex is the entry's index in the log.
	LogIndex int64
}

// NewRekor returns a log with a fresh ECDSA key (cosign accepts only ECDSA Rekor keys).
func NewRekor() (*Rekor, error) {
	kp, err := NewKeyPair()
	if err != nil {
		return nil, err
	}
	return &Rekor{Key: kp}, nil
}

// bundle builds a hashedrekord v0.0.1 entry for the signature and signs its bundle payload the
// way Rekor signs an entry timestamp (ECDSA over SHA-256 of the canonical JSON).
func (r *Rekor) bundle(pl []byte, b64sig string, keyPEM []byte) (*cbundle.RekorBundle, error) {
	priv, ok := r.Key.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("rekor key must be ECDSA")
	}
	sum := sha256.Sum256(pl)
	entry := map[string]any{
		"apiVersion": "0.0.1",
		"kind":       "hashedrekord",
		"spec": map[string]any{
			"data": map[string]any{
				"hash": map[string]any{"algorithm": "sha256", "value": hex.EncodeToString(sum[:])},
			},
			"signature": map[string]any{
				"content":   b64sig,
				"publicKey": map[string]any{"content": base64.StdEncoding.EncodeToString(keyPEM)},
			},
		},
	}
	body, err := json.Marshal(entry)
	if err != nil {
		return nil, err
	}
	logID, err := cosign.GetTransparencyLogID(priv.Public())
	if err != nil {
		return nil, err
	}
	t := r.IntegratedTime
	if t.IsZero() {
		t = time.Now()
	}
	rp := cbundle.RekorPayload{
		Body:           base64.StdEncoding.EncodeToString(body),
		IntegratedTime: t.Unix(),
		LogIndex:       r.LogIndex,
		LogID:          logID,
	}
	raw, err := json.Marshal(rp)
	if err != nil {
		return nil, err
	}
	canonical, err := jsoncanonicalizer.Transform(raw)
	if err != nil {
		return nil, err
	}
	digest := sha256.Sum256(canonical)
	set, err := ecdsa.SignASN1(rand.Reader, priv, digest[:])
	if err != nil {
		return nil, err
	}
	return &cbundle.RekorBundle{SignedEntryTimestamp: set, Payload: rp}, nil
}

func hexDigest(d name.Digest) (string, error) {
	const prefix = "sha256:"
	s := d.DigestStr()
	if len(s) <= len(prefix) || s[:len(prefix)] != prefix {
		return "", fmt.Errorf("digest %q is not sha256", s)
	}
	return s[len(prefix):], nil
}

// withContext makes registry calls honour ctx while keeping the caller's remote options.
func withContext(ctx context.Context, opts []ociremote.Option) []ociremote.Option {
	out := append([]ociremote.Option{}, opts...)
	return append(out, ociremote.WithMoreRemoteOptions(remote.WithContext(ctx)))
}
