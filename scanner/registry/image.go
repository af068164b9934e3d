package registry

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imagetrust/imagetrust/scanner/internal/redact"
)

// maxConfigBytes bounds an image config blob; real ones are KiB, a few MiB with long histories.
const maxConfigBytes = 32 << 20

// Image returns the single-platform image at ref, to read its manifest, config and layers.
// The manifest and the config come from the Client's memory of immutable content when Resolve
// or an earlier Image already fetched them, else with one GET each; layers are downloaded when
// read, through the Client's transport like every other request, and verified against their
// digests and the manifest's sizes. Reads through the image use ctx. A digest that names
// anything but an image — a cosign signature or attestation, an OCI artifact — fails with
// ErrNotAnImage; an image index fails too (pass one of its platform digests). Errors are
// sanitised.
func (c *Client) Image(ctx context.Context, ref name.Digest) (v1.Image, error) {
	img, err := c.image(ctx, ref)
	if err != nil {
		return nil, redact.Error(fmt.Errorf("image %s: %w", ref, err))
	}
	return img, nil
}

func (c *Client) image(ctx context.Context, ref name.Digest) (v1.Image, error) {
	raw, desc, err := c.manifest(ctx, ref)
	if err != nil {
		return nil, err
	}
	mt, err := manifestKind(desc.MediaType, raw)
	if err != nil {
		return nil, err
	}
	if mt.IsIndex() {
		return nil, fmt.Errorf("%s is an image index: pass the digest of one of its platform images", ref.DigestStr())
	}
	mf, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: image manifest %s: %v", ErrMalformedManifest, ref.DigestStr(), err)
	}
	if why := notAnImage(mf); why != "" {
		return nil, fmt.Errorf("%w: %s is %s", ErrNotAnImage, ref.DigestStr(), why)
	}
	return partial.CompressedToImage(&memoImage{c: c, ctx: ctx, repo: ref.Context(), raw: raw, mt: mt, mf: mf})
}

// Manifest returns the manifest at ref, whatever its type (image, index, signature, Sigstore
// bundle, SBOM artifact), with its descriptor: from memory when this Client fetched that
// repository's digest before (Resolve, Image, Manifest), else with one GET whose content is
// verified against the digest. Manifests are immutable, so reading a signature's or bundle's
// manifest again on a re-verification costs nothing. Errors are sanitised.
func (c *Client) Manifest(ctx context.Context, ref name.Digest) ([]byte, v1.Descriptor, error) {
	raw, desc, err := c.manifest(ctx, ref)
	if err != nil {
		return nil, v1.Descriptor{}, redact.Error(fmt.Errorf("manifest %s: %w", ref, err))
	}
	return raw, desc, nil
}

// Blob returns a small blob of repo that d describes (a Sigstore bundle, a DSSE envelope, an
// image config): from memory when this Client read it before, else with one GET verified
// against d's digest and size. Blobs over 32 MiB are refused: read layers through Image.
// Errors are sanitised.
func (c *Client) Blob(ctx context.Context, repo name.Repository, d v1.Descriptor) ([]byte, error) {
	data, err := c.blob(ctx, repo, d)
	if err != nil {
		return nil, redact.Error(fmt.Errorf("blob %s@%s: %w", repo, d.Digest, err))
	}
	return data, nil
}

// manifest returns the manifest ref names and its descriptor (digest computed from the bytes),
// from memory when this repository's digest was fetched before, else with one GET, which is
// then remembered under the repository and the digest.
func (c *Client) manifest(ctx context.Context, ref name.Reference) ([]byte, v1.Descriptor, error) {
	if d, ok := ref.(name.Digest); ok {
		if mt, raw, ok := c.shared.content.get(c.contentKey(d)); ok {
			h, size, err := v1.SHA256(bytes.NewReader(raw))
			return raw, v1.Descriptor{MediaType: mt, Digest: h, Size: size}, err
		}
	}
	p, err := c.pull()
	if err != nil {
		return nil, v1.Descriptor{}, err
	}
	got, err := p.Get(ctx, ref)
	if err != nil {
		return nil, v1.Descriptor{}, err
	}
	desc := got.Descriptor
	c.shared.content.put(c.contentKey(ref.Context().Digest(desc.Digest.String())), desc.MediaType, got.Manifest)
	return got.Manifest, desc, nil
}

// blob returns a small blob of repo from memory or with one GET verified by digest and size.
func (c *Client) blob(ctx context.Context, repo name.Repository, d v1.Descriptor) ([]byte, error) {
	key := c.contentKey(repo.Digest(d.Digest.String()))
	if _, data, ok := c.shared.content.get(key); ok {
		return data, nil
	}
	if d.Size > maxConfigBytes {
		return nil, fmt.Errorf("blob %s is %d bytes, more than the %d a config may be", d.Digest, d.Size, maxConfigBytes)
	}
	p, err := c.pull()
	if err != nil {
		return nil, err
	}
	l, err := p.Layer(ctx, repo.Digest(d.Digest.String()))
	if err != nil {
		return nil, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(sizeChecked(rc, d))
	if err != nil {
		return nil, err
	}
	c.shared.content.put(key, "", data)
	return data, nil
}

// memoImage is the partial.CompressedImageCore of an image whose manifest is at hand: the
// config is fetched (once) and layers are downloaded only when read.
type memoImage struct {
	c    *Client
	ctx  context.Context
	repo name.Repository
	raw  []byte
	mt   types.MediaType
	mf   *v1.Manifest

	configOnce sync.Once
	config     []byte
	configErr  error
}

func (i *memoImage) RawManifest() ([]byte, error)        { return i.raw, nil }
func (i *memoImage) MediaType() (types.MediaType, error) { return i.mt, nil }

func (i *memoImage) RawConfigFile() ([]byte, error) {
	i.configOnce.Do(func() {
		if d := i.mf.Config; d.Data != nil {
			i.config, i.configErr = io.ReadAll(sizeChecked(io.NopCloser(bytes.NewReader(d.Data)), d))
			return
		}
		i.config, i.configErr = i.c.blob(i.ctx, i.repo, i.mf.Config)
	})
	return i.config, i.configErr
}

// LayerByDigest implements partial.CompressedImageCore.
func (i *memoImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, d := range i.mf.Layers {
		if d.Digest == h {
			return &memoLayer{img: i, desc: d}, nil
		}
	}
	if i.mf.Config.Digest == h {
		return &memoLayer{img: i, desc: i.mf.Config}, nil
	}
	return nil, fmt.Errorf("blob %s is not in manifest of %s", h, i.repo)
}

// memoLayer is one layer of a memoImage: the manifest and the config answer every question
// but the content, which is one GET when read.
type memoLayer struct {
	img  *memoImage
	desc v1.Descriptor
}

func (l *memoLayer) Digest() (v1.Hash, error)            { return l.desc.Digest, nil }
func (l *memoLayer) Size() (int64, error)                { return l.desc.Size, nil }
func (l *memoLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }
func (l *memoLayer) Descriptor() (*v1.Descriptor, error) { d := l.desc; return &d, nil }

// Manifest and ConfigFile let partial.BlobToDiffID read the diff ID from the config rather
// than hash the uncompressed layer.
func (l *memoLayer) Manifest() (*v1.Manifest, error)     { return l.img.mf, nil }
func (l *memoLayer) ConfigFile() (*v1.ConfigFile, error) { return partial.ConfigFile(l.img) }
func (l *memoLayer) DiffID() (v1.Hash, error)            { return partial.BlobToDiffID(l, l.desc.Digest) }

// Compressed downloads the layer through the Client's shared puller (and so its transport).
func (l *memoLayer) Compressed() (io.ReadCloser, error) {
	p, err := l.img.c.pull()
	if err != nil {
		return nil, err
	}
	rl, err := p.Layer(l.img.ctx, l.img.repo.Digest(l.desc.Digest.String()))
	if err != nil {
		return nil, err
	}
	rc, err := rl.Compressed()
	if err != nil {
		return nil, err
	}
	return sizeChecked(rc, l.desc), nil
}

// sizeChecked fails a read that ends short of, or runs past, the size the descriptor states:
// go-containerregistry verifies the digest, this names the cause when a registry or proxy
// truncates a blob.
func sizeChecked(rc io.ReadCloser, d v1.Descriptor) io.ReadCloser {
	return &sizedReader{rc: rc, want: d.Size, digest: d.Digest.String()}
}

type sizedReader struct {
	rc     io.ReadCloser
	want   int64
	got    int64
	digest string
}

func (r *sizedReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	r.got += int64(n)
	switch {
	case r.want >= 0 && r.got > r.want:
		return n, fmt.Errorf("blob %s: more than the %d bytes the manifest says", r.digest, r.want)
	case err == nil:
		return n, nil
	case r.want >= 0 && r.got < r.want:
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return n, fmt.Errorf("blob %s: registry sent %d of the %d bytes the manifest says: %w", r.digest, r.got, r.want, err)
	}
	return n, err
}

func (r *sizedReader) Close() error { return r.rc.Close() }
