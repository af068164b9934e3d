package signtest

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// TUFRepo is a TUF repository written to a directory, in the layout a TUF mirror serves
// (consistent snapshots: "1.root.json", "1.targets.json", "targets/<sha256>.<name>"), so an
// http.FileServer over Dir is a real TUF mirror for tests.
type TUFRepo struct {
	// Dir is the repository root to serve.
	Dir string
	// RootJSON is the signed root metadata a client bootstraps trust from.
	RootJSON []byte
}

// NewTUFRepo writes a repository holding targets (name → content), with one ed25519 key per
// role and metadata valid for validFor.
func NewTUFRepo(dir string, targets map[string][]byte, validFor time.Duration) (*TUFRepo, error) {
	expires := time.Now().Add(validFor).UTC()
	if err := os.MkdirAll(filepath.Join(dir, "targets"), 0o755); err != nil {
		return nil, err
	}
	tgt := metadata.Targets(expires)
	for name, content := range targets {
		info, err := metadata.TargetFile().FromBytes(name, content, "sha256")
		if err != nil {
			return nil, err
		}
		tgt.Signed.Targets[name] = info
		sum := sha256.Sum256(content)
		if err := os.WriteFile(filepath.Join(dir, "targets", hex.EncodeToString(sum[:])+"."+name), content, 0o644); err != nil {
			return nil, err
		}
	}
	snap := metadata.Snapshot(expires)
	ts := metadata.Timestamp(expires)
	rt := metadata.Root(expires)

	signers := map[string]signature.Signer{}
	for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		key, err := metadata.KeyFromPublicKey(priv.Public())
		if err != nil {
			return nil, err
		}
		if err := rt.Signed.AddKey(key, role); err != nil {
			return nil, err
		}
		if signers[role], err = signature.LoadSigner(priv, crypto.Hash(0)); err != nil {
			return nil, err
		}
	}
	write := func(file string, sign func(signature.Signer) (*metadata.Signature, error), toFile func(string, bool) error, role string) error {
		if _, err := sign(signers[role]); err != nil {
			return fmt.Errorf("signing %s: %w", role, err)
		}
		return toFile(filepath.Join(dir, file), false)
	}
	if err := write("1.targets.json", tgt.Sign, tgt.ToFile, metadata.TARGETS); err != nil {
		return nil, err
	}
	if err := write("1.snapshot.json", snap.Sign, snap.ToFile, metadata.SNAPSHOT); err != nil {
		return nil, err
	}
	if err := write("timestamp.json", ts.Sign, ts.ToFile, metadata.TIMESTAMP); err != nil {
		return nil, err
	}
	if err := write("1.root.json", rt.Sign, rt.ToFile, metadata.ROOT); err != nil {
		return nil, err
	}
	rootJSON, err := rt.ToBytes(false)
	if err != nil {
		return nil, err
	}
	return &TUFRepo{Dir: dir, RootJSON: rootJSON}, nil
}
