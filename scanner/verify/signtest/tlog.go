package signtest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"time"

	"github.com/cyberphone/json-canonicalization/go/src/webpki.org/jsoncanonicalizer"
	"github.com/go-openapi/swag/conv"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	rekortilespb "github.com/sigstore/rekor-tiles/v2/pkg/generated/protobuf"
	rekornote "github.com/sigstore/rekor-tiles/v2/pkg/note"
	"github.com/sigstore/rekor-tiles/v2/pkg/types/hashedrekord"
	"github.com/sigstore/rekor/pkg/generated/client/entries"
	"github.com/sigstore/rekor/pkg/generated/models"
	rekortypes "github.com/sigstore/rekor/pkg/types"
	_ "github.com/sigstore/rekor/pkg/types/dsse/v0.0.1"         // registers the dsse entry type
	_ "github.com/sigstore/rekor/pkg/types/hashedrekord/v0.0.1" // registers the hashedrekord entry type
	rekorutil "github.com/sigstore/rekor/pkg/util"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"google.golang.org/protobuf/encoding/protojson"
)

// merkleTree is an RFC 6962 tree over leaf hashes, enough to issue inclusion proofs.
type merkleTree [][]byte

// grown returns a tree of size n whose leaf at index is leaf; the others are filler entries,
// so proofs have real sibling hashes.
func grown(n int64, index int64, leaf []byte) merkleTree {
	t := make(merkleTree, n)
	for i := range t {
		t[i] = rfc6962.DefaultHasher.HashLeaf(fmt.Appendf(nil, "filler entry %d", i))
	}
	t[index] = leaf
	return t
}

// root is MTH(D[0:n]) of RFC 6962 §2.1.
func (t merkleTree) root() []byte {
	switch len(t) {
	case 0:
		return rfc6962.DefaultHasher.EmptyRoot()
	case 1:
		return t[0]
	}
	k := split(len(t))
	return rfc6962.DefaultHasher.HashChildren(t[:k].root(), t[k:].root())
}

// path is PATH(m, D[0:n]) of RFC 6962 §2.1.1: the audit path of leaf m.
func (t merkleTree) path(m int) [][]byte {
	if len(t) <= 1 {
		return nil
	}
	k := split(len(t))
	if m < k {
		return append(t[:k].path(m), t[k:].root())
	}
	return append(t[k:].path(m-k), t[:k].root())
}

// split is the largest power of two smaller than n.
func split(n int) int {
	k := 1
	for k*2 < n {
		k *= 2
	}
	return k
}

// RekorV1Client returns a Rekor v1 API client that logs each proposed entry in r and answers
// with the signed entry timestamp and an inclusion proof with a signed checkpoint, as
// rekor.sigstore.dev does. It plugs into sigstore-go's sign.RekorOptions.Client.
func (r *Rekor) RekorV1Client() *RekorV1Client { return &RekorV1Client{log: r} }

// RekorV1Client implements sigstore-go's sign.RekorClient in process.
type RekorV1Client struct{ log *Rekor }

// CreateLogEntry implements sign.RekorClient.
func (c *RekorV1Client) CreateLogEntry(params *entries.CreateLogEntryParams, _ ...entries.ClientOption) (*entries.CreateLogEntryCreated, error) {
	ctx := params.Context
	if ctx == nil {
		ctx = context.Background()
	}
	impl, err := rekortypes.UnmarshalEntry(params.ProposedEntry)
	if err != nil {
		return nil, fmt.Errorf("unmarshalling proposed entry: %w", err)
	}
	body, err := rekortypes.CanonicalizeEntry(ctx, impl)
	if err != nil {
		return nil, fmt.Errorf("canonicalizing entry: %w", err)
	}
	anon, err := c.log.logEntry(ctx, body)
	if err != nil {
		return nil, err
	}
	uuid := hex.EncodeToString(rfc6962.DefaultHasher.HashLeaf(body))
	return &entries.CreateLogEntryCreated{ETag: uuid, Payload: models.LogEntry{uuid: *anon}}, nil
}

// GetLogEntryByUUID implements sign.RekorClient; entries are never looked up again.
func (c *RekorV1Client) GetLogEntryByUUID(*entries.GetLogEntryByUUIDParams, ...entries.ClientOption) (*entries.GetLogEntryByUUIDOK, error) {
	return nil, errors.New("test log: lookups are not supported")
}

// rekorV1Host names the test log in checkpoints.
const rekorV1Host = "rekor.signtest.local"

// logEntry logs body at r.LogIndex in a tree of LogIndex+1 entries.
func (r *Rekor) logEntry(ctx context.Context, body []byte) (*models.LogEntryAnon, error) {
	priv, ok := r.Key.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("rekor key must be ECDSA")
	}
	logID, err := LogID(priv.Public())
	if err != nil {
		return nil, err
	}
	t := r.IntegratedTime
	if t.IsZero() {
		t = time.Now()
	}
	set, err := r.signEntryTimestamp(body, t.Unix(), r.LogIndex, logID)
	if err != nil {
		return nil, err
	}
	tree := grown(r.LogIndex+1, r.LogIndex, rfc6962.DefaultHasher.HashLeaf(body))
	root := tree.root()
	sv, err := signature.LoadECDSASignerVerifier(priv, crypto.SHA256)
	if err != nil {
		return nil, err
	}
	checkpoint, err := rekorutil.CreateAndSignCheckpoint(ctx, rekorV1Host, 1193050959916656506, uint64(len(tree)), root, sv)
	if err != nil {
		return nil, err
	}
	var hashes []string
	for _, h := range tree.path(int(r.LogIndex)) {
		hashes = append(hashes, hex.EncodeToString(h))
	}
	return &models.LogEntryAnon{
		Body:           base64.StdEncoding.EncodeToString(body),
		IntegratedTime: conv.Pointer(t.Unix()),
		LogID:          conv.Pointer(logID),
		LogIndex:       conv.Pointer(r.LogIndex),
		Verification: &models.LogEntryAnonVerification{
			SignedEntryTimestamp: set,
			InclusionProof: &models.InclusionProof{
				Checkpoint: conv.Pointer(string(checkpoint)),
				Hashes:     hashes,
				LogIndex:   conv.Pointer(r.LogIndex),
				RootHash:   conv.Pointer(hex.EncodeToString(root)),
				TreeSize:   conv.Pointer(int64(len(tree))),
			},
		},
	}, nil
}

// signEntryTimestamp signs the canonical JSON of the entry's bundle payload, as Rekor does.
func (r *Rekor) signEntryTimestamp(body []byte, integrated, index int64, logID string) ([]byte, error) {
	priv, ok := r.Key.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("rekor key must be ECDSA")
	}
	raw, err := json.Marshal(map[string]any{
		"body": base64.StdEncoding.EncodeToString(body), "integratedTime": integrated,
		"logIndex": index, "logID": logID,
	})
	if err != nil {
		return nil, err
	}
	canonical, err := jsoncanonicalizer.Transform(raw)
	if err != nil {
		return nil, err
	}
	digest := sha256.Sum256(canonical)
	return ecdsa.SignASN1(rand.Reader, priv, digest[:])
}

// LogID is the hex SHA-256 of a log's DER public key, its ID in Rekor and CT.
func LogID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// RekorV2 stands in for a Rekor v2 (tile-based) log: entries carry an inclusion proof and a
// checkpoint signed as a note by Key, and no integration time.
type RekorV2 struct {
	Key *KeyPair
	// BaseURL names the log; its host is the checkpoint origin, as in trust roots.
	BaseURL string
	// LogIndex is the index the next entry gets.
	LogIndex int64
}

// NewRekorV2 returns a log with a fresh ECDSA P-256 key.
func NewRekorV2() (*RekorV2, error) {
	kp, err := NewKeyPair()
	if err != nil {
		return nil, err
	}
	return &RekorV2{Key: kp, BaseURL: "https://rekor-v2.signtest.local", LogIndex: 5}, nil
}

// Add implements sigstore-go's sign.RekorV2Client: it turns a hashedrekord v0.0.2 request
// into a logged entry with its proof.
func (r *RekorV2) Add(ctx context.Context, req any) (*protorekor.TransparencyLogEntry, error) {
	hr, ok := req.(*rekortilespb.HashedRekordRequestV002)
	if !ok {
		return nil, fmt.Errorf("test log accepts hashedrekord v0.0.2 requests, not %T", req)
	}
	algs, err := signature.NewAlgorithmRegistryConfig([]protocommon.PublicKeyDetails{
		protocommon.PublicKeyDetails_PKIX_ECDSA_P256_SHA_256, protocommon.PublicKeyDetails_PKIX_ECDSA_P384_SHA_384,
		protocommon.PublicKeyDetails_PKIX_ED25519_PH, protocommon.PublicKeyDetails_PKIX_RSA_PKCS1V15_2048_SHA256,
	})
	if err != nil {
		return nil, err
	}
	entry, err := hashedrekord.ToLogEntry(hr, algs)
	if err != nil {
		return nil, fmt.Errorf("rejecting entry: %w", err)
	}
	serialized, err := protojson.Marshal(entry)
	if err != nil {
		return nil, err
	}
	body, err := jsoncanonicalizer.Transform(serialized)
	if err != nil {
		return nil, err
	}
	tree := grown(r.LogIndex+1, r.LogIndex, rfc6962.DefaultHasher.HashLeaf(body))
	checkpoint, err := r.checkpoint(ctx, uint64(len(tree)), tree.root())
	if err != nil {
		return nil, err
	}
	id, err := LogID(r.Key.PrivateKey.Public())
	if err != nil {
		return nil, err
	}
	rawID, _ := hex.DecodeString(id)
	return &protorekor.TransparencyLogEntry{
		LogIndex:    r.LogIndex,
		LogId:       &protocommon.LogId{KeyId: rawID},
		KindVersion: &protorekor.KindVersion{Kind: "hashedrekord", Version: "0.0.2"},
		InclusionProof: &protorekor.InclusionProof{
			LogIndex: r.LogIndex, TreeSize: int64(len(tree)), RootHash: tree.root(),
			Hashes: tree.path(int(r.LogIndex)), Checkpoint: &protorekor.Checkpoint{Envelope: checkpoint},
		},
		CanonicalizedBody: body,
	}, nil
}

func (r *RekorV2) checkpoint(ctx context.Context, size uint64, root []byte) (string, error) {
	u, err := url.Parse(r.BaseURL)
	if err != nil {
		return "", err
	}
	sv, err := signature.LoadSignerVerifier(r.Key.PrivateKey, crypto.SHA256)
	if err != nil {
		return "", err
	}
	signer, err := rekornote.NewNoteSigner(ctx, u.Hostname(), sv)
	if err != nil {
		return "", err
	}
	text := log.Checkpoint{Origin: u.Hostname(), Size: size, Hash: root}.Marshal()
	signed, err := note.Sign(&note.Note{Text: string(text)}, signer)
	if err != nil {
		return "", err
	}
	return string(signed), nil
}

// RoundTripper serves the TSA in process, for clients that take a transport.
func (t *TSA) RoundTripper() http.RoundTripper { return handlerTransport{t} }

type handlerTransport struct{ h http.Handler }

func (h handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	h.h.ServeHTTP(rec, req)
	return rec.Result(), nil
}
