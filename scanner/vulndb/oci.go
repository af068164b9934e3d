package vulndb

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Media types of the OCI artifact that carries a database archive for air-gapped clusters:
// an OCI image manifest with artifactType ArtifactType, the empty config, and one layer that is
// the archive byte for byte (so its digest is the archive's sha256).
const (
	// ArtifactType marks the manifest as an imagetrust grype database artifact.
	ArtifactType = "application/vnd.imagetrust.grype-db.v6"
	// LayerMediaTypeGzip is the layer type of a .tar.gz database archive.
	LayerMediaTypeGzip = "application/vnd.imagetrust.grype-db.v6.tar+gzip"
	// LayerMediaTypeZstd is the layer type of a .tar.zst database archive (grype's published form).
	LayerMediaTypeZstd = "application/vnd.imagetrust.grype-db.v6.tar+zstd"
	// LayerMediaTypeXz is the layer type of a .tar.xz database archive.
	LayerMediaTypeXz = "application/vnd.imagetrust.grype-db.v6.tar+xz"
	// LayerMediaTypeSQLite is the layer type of a bare vulnerability.db file.
	LayerMediaTypeSQLite = "application/vnd.imagetrust.grype-db.v6.sqlite3"
)

// archiveKind identifies an archive by its leading bytes, returning the file extension grype's
// curator needs and the layer media type. ImportOCI relies on content, not on the layer media
// type, so artifacts pushed by other tools (oras push) work too.
func archiveKind(head []byte) (ext string, mt types.MediaType, ok bool) {
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return ".tar.gz", LayerMediaTypeGzip, true
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return ".tar.zst", LayerMediaTypeZstd, true
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		return ".tar.xz", LayerMediaTypeXz, true
	case bytes.HasPrefix(head, []byte("SQLite format 3\x00")):
		return ".db", LayerMediaTypeSQLite, true
	}
	return "", "", false
}

func readHead(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	head := make([]byte, 16)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, err
	}
	return head[:n], nil
}

// ImportOCI fetches a database archive stored as a single-layer OCI artifact (see
// PushArchiveOCI) from ref and installs it like Import. When the layer digest equals the
// archive digest of the active database nothing is downloaded and changed is false. Fetch
// failures wrap ErrUpdate, artifacts of the wrong shape wrap ErrArtifact; errors are sanitised.
func (m *Manager) ImportOCI(ctx context.Context, ref string, opts ...remote.Option) (changed bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	var nameOpts []name.Option
	if m.cfg.OCINameOptions != nil {
		nameOpts = m.cfg.OCINameOptions(ref)
	}
	r, err := name.ParseReference(ref, nameOpts...)
	if err != nil {
		return false, m.fail(sanitized(ErrArtifact, "parse reference", err))
	}
	// this call's context last: options built once at start-up may carry another one
	opts = append(slices.Clone(opts), remote.WithContext(ctx))

	m.installMu.Lock()
	defer m.installMu.Unlock()

	desc, err := remote.Get(r, opts...)
	if err != nil {
		return false, m.fail(sanitized(ErrUpdate, "fetch "+r.String(), err))
	}
	if !desc.MediaType.IsImage() {
		return false, m.fail(errorf(ErrArtifact, "%s is a %s, want a single OCI manifest", r, desc.MediaType))
	}
	mf, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return false, m.fail(sanitized(ErrArtifact, "parse manifest of "+r.String(), err))
	}
	if len(mf.Layers) != 1 {
		return false, m.fail(errorf(ErrArtifact, "%s has %d layers, want exactly 1 holding the database archive", r, len(mf.Layers)))
	}
	layer := mf.Layers[0]
	if layer.Size <= 0 || layer.Size > m.cfg.MaxArchiveBytes {
		return false, m.fail(errorf(ErrArtifact, "%s: archive layer is %d bytes, limit is %d", r, layer.Size, m.cfg.MaxArchiveBytes))
	}
	digest := layer.Digest.String()
	if cur := m.current(); cur != nil && cur.status.ArchiveDigest == digest {
		m.clearErr()
		return false, nil
	}

	path, err := m.download(r.Context().Digest(digest), layer, opts)
	if err != nil {
		return false, m.fail(err)
	}
	defer os.Remove(path)
	return m.installLocked(ctx, path, sourceRecord{Source: r.String(), ArchiveDigest: digest}, ErrInvalidDB)
}

// download streams the layer blob into a file under Dir, verifying size and digest itself so
// a registry cannot substitute content, and names it with the extension of its format.
func (m *Manager) download(ref name.Digest, d v1.Descriptor, opts []remote.Option) (string, error) {
	l, err := remote.Layer(ref, opts...)
	if err != nil {
		return "", sanitized(ErrUpdate, "fetch layer "+ref.String(), err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return "", sanitized(ErrUpdate, "fetch layer "+ref.String(), err)
	}
	defer rc.Close()

	tmp, err := os.CreateTemp(m.cfg.Dir, ociDownloadPrefix)
	if err != nil {
		return "", fmt.Errorf("vulndb: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(rc, d.Size+1))
	if err != nil {
		return "", sanitized(ErrUpdate, "download layer "+ref.String(), err)
	}
	if n != d.Size {
		return "", errorf(ErrArtifact, "layer %s is %d bytes, manifest says %d", ref, n, d.Size)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); d.Digest.Algorithm != "sha256" || got != d.Digest.String() {
		return "", errorf(ErrArtifact, "layer digest mismatch: got %s, manifest says %s", got, d.Digest)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("vulndb: %w", err)
	}
	head, err := readHead(tmp.Name())
	if err != nil {
		return "", fmt.Errorf("vulndb: %w", err)
	}
	ext, _, known := archiveKind(head)
	if !known {
		return "", errorf(ErrArtifact, "layer of %s is not a gzip, zstd or xz archive nor a SQLite database", ref.Context())
	}
	final := tmp.Name() + ext
	if err := os.Rename(tmp.Name(), final); err != nil {
		return "", fmt.Errorf("vulndb: %w", err)
	}
	ok = true
	return final, nil
}

// fileLayer is a v1.Layer backed by a file, uploaded as is (no recompression), so the blob
// digest is the archive's sha256.
type fileLayer struct {
	path   string
	digest v1.Hash
	size   int64
	mt     types.MediaType
}

func newFileLayer(path string, mt types.MediaType) (*fileLayer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h, size, err := v1.SHA256(f)
	if err != nil {
		return nil, err
	}
	return &fileLayer{path: path, digest: h, size: size, mt: mt}, nil
}

func (l *fileLayer) Digest() (v1.Hash, error)             { return l.digest, nil }
func (l *fileLayer) DiffID() (v1.Hash, error)             { return l.digest, nil }
func (l *fileLayer) Compressed() (io.ReadCloser, error)   { return os.Open(l.path) }
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) { return os.Open(l.path) }
func (l *fileLayer) Size() (int64, error)                 { return l.size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error)  { return l.mt, nil }

// rawManifest lets remote.Put send a hand-built manifest with its media type.
type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.raw, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// PushArchiveOCI publishes a database archive (as produced by grype-db or dbtest.Archive) to
// ref as a single-layer OCI artifact that ImportOCI accepts, and returns the manifest digest.
// Mirror it into the air-gapped registry with any OCI-aware tool (crane copy, oras copy).
func PushArchiveOCI(ctx context.Context, ref, archivePath string, opts ...remote.Option) (string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", fmt.Errorf("vulndb: parse reference: %w", err)
	}
	head, err := readHead(archivePath)
	if err != nil {
		return "", fmt.Errorf("vulndb: read archive: %w", err)
	}
	_, mt, ok := archiveKind(head)
	if !ok {
		return "", fmt.Errorf("%w: %s is not a gzip, zstd or xz archive nor a SQLite database", ErrArtifact, filepath.Base(archivePath))
	}
	layer, err := newFileLayer(archivePath, mt)
	if err != nil {
		return "", fmt.Errorf("vulndb: read archive: %w", err)
	}
	opts = append(slices.Clone(opts), remote.WithContext(ctx))
	repo := r.Context()
	if err := remote.WriteLayer(repo, layer, opts...); err != nil {
		return "", sanitized(ErrUpdate, "upload archive to "+repo.String(), err)
	}
	cfg := static.NewLayer([]byte("{}"), types.OCIEmptyJSON)
	if err := remote.WriteLayer(repo, cfg, opts...); err != nil {
		return "", sanitized(ErrUpdate, "upload config to "+repo.String(), err)
	}
	cfgDigest, _ := cfg.Digest()
	mf := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  ArtifactType,
		Config:        v1.Descriptor{MediaType: types.OCIEmptyJSON, Size: 2, Digest: cfgDigest},
		Layers: []v1.Descriptor{{
			MediaType:   mt,
			Size:        layer.size,
			Digest:      layer.digest,
			Annotations: map[string]string{"org.opencontainers.image.title": filepath.Base(archivePath)},
		}},
	}
	raw, err := json.Marshal(mf)
	if err != nil {
		return "", fmt.Errorf("vulndb: encode manifest: %w", err)
	}
	if err := remote.Put(r, rawManifest{raw: raw, mt: types.OCIManifestSchema1}, opts...); err != nil {
		return "", sanitized(ErrUpdate, "push manifest to "+r.String(), err)
	}
	d, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return "", err
	}
	return d.String(), nil
}
