package sbom

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	async "github.com/anchore/go-sync"
	"github.com/anchore/stereoscope/pkg/file"
	"github.com/anchore/stereoscope/pkg/image"
	"github.com/anchore/syft/syft"
	"github.com/anchore/syft/syft/cataloging"
	"github.com/anchore/syft/syft/cataloging/pkgcataloging"
	"github.com/anchore/syft/syft/format/syftjson"
	"github.com/anchore/syft/syft/source/stereoscopesource"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	// Syft's RPM and Nix catalogers open databases through database/sql's "sqlite" driver. This
	// is the registration grype's DB layer (glebarez/sqlite) already pulls in; importing
	// modernc.org/sqlite as Syft's examples do would register "sqlite" twice and panic at init
	// in any binary that also links grype.
	_ "github.com/glebarez/go-sqlite"

	"github.com/imagetrust/imagetrust/scanner/internal/redact"
	"github.com/imagetrust/imagetrust/scanner/registry"
)

// DefaultExtraCatalogers are added to Syft's default image catalogers. Image catalogers skip
// go.mod files (a go.mod in an image usually means sources shipped next to a binary), but for
// vulnerability matching the declared modules are still the best evidence available.
var DefaultExtraCatalogers = []string{"go-module-file-cataloger"}

// ImageSource hands the Generator the image to catalogue: manifest, config and layers of one
// platform image. *registry.Client is one, so every request of a generation goes through the
// registry client's transport (rate limit, Retry-After, per-registry concurrency, metrics,
// credentials) and reuses the manifest and config the pipeline already fetched.
type ImageSource interface {
	Image(ctx context.Context, ref name.Digest) (v1.Image, error)
}

// DefaultLayerPulls is how many layers of one image a Generator downloads at once: one stream
// usually saturates the link, and the registry client bounds the total per registry anyway.
const DefaultLayerPulls = 1

// Generator builds an SBOM with Syft from an image it reads through an ImageSource (never a
// container daemon, and never a registry connection of stereoscope's own). Layers are unpacked
// under $TMPDIR into a directory private to the call and removed when Fetch returns, whether it
// succeeds, fails or is cancelled.
type Generator struct {
	// Images supplies the image; nil uses a registry client with default limits and the
	// Docker keychain, shared by every Generator without one.
	Images ImageSource
	// LayerPulls bounds the layers of one image downloaded at once; 0 means DefaultLayerPulls.
	LayerPulls int
	// ExtraCatalogers are cataloger names added to the default image set. nil means
	// DefaultExtraCatalogers; an empty non-nil slice adds none.
	ExtraCatalogers []string
	// Parallelism bounds Syft's concurrent cataloging tasks; 0 lets Syft choose.
	Parallelism int
	// IncludeFiles keeps Syft's file metadata and digests in the document. Off by default: they
	// are not needed for vulnerability matching and often dominate the document's size.
	IncludeFiles bool
}

var (
	defaultImagesOnce sync.Once
	defaultImages     *registry.Client
)

func (g *Generator) images() ImageSource {
	if g.Images != nil {
		return g.Images
	}
	defaultImagesOnce.Do(func() { defaultImages = registry.New(registry.Options{Keychain: authn.DefaultKeychain}) })
	return defaultImages
}

// Name implements Source.
func (g *Generator) Name() string { return "generate" }

// Fetch implements Source: it generates a Syft JSON SBOM for the platform image img.
func (g *Generator) Fetch(ctx context.Context, img name.Digest) (*SBOM, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// The temporary directory generator is ours, so every directory is removed on every path.
	tmp := file.NewTempDirGenerator("imagetrust-sbom")
	defer func() { _ = tmp.Cleanup() }()
	stImg, err := g.read(ctx, img, tmp)
	if err != nil {
		return nil, g.fail(ctx, img, "pulling image", err)
	}
	// closes layer files before the directories go
	defer func() { _ = stImg.Cleanup() }()
	src := stereoscopesource.New(stImg, stereoscopesource.ImageConfig{Reference: img.String()})

	cfg := g.createConfig()
	s, err := syft.CreateSBOM(withSharedLicenseScanner(ctx, cfg), src, cfg)
	if err != nil {
		return nil, g.fail(ctx, img, "cataloging", err)
	}
	// a cancelled context can leave catalogers stopped early without an error: never hand on
	// an SBOM that may be missing packages
	if err := ctx.Err(); err != nil {
		return nil, g.fail(ctx, img, "cataloging", err)
	}

	var buf bytes.Buffer
	if err := syftjson.NewFormatEncoder().Encode(&buf, *s); err != nil {
		return nil, fmt.Errorf("generating SBOM for %s: encoding: %w", img.DigestStr(), err)
	}
	doc := buf.Bytes()
	format, pkgs, err := Detect(doc)
	if err != nil {
		return nil, fmt.Errorf("generating SBOM for %s: Syft output failed validation: %w", img.DigestStr(), err)
	}
	return &SBOM{
		Source:      SourceGenerated,
		Format:      format,
		Document:    doc,
		Packages:    pkgs,
		Digest:      DocumentDigest(doc),
		ImageDigest: img.DigestStr(),
		CreatedAt:   time.Now().UTC(),
		Note:        strings.TrimSpace("generated by syft " + s.Descriptor.Version),
	}, nil
}

// read fetches img through the ImageSource and has stereoscope unpack and index its layers,
// as stereoscope's registry provider would, but over our connection.
func (g *Generator) read(ctx context.Context, img name.Digest, tmp *file.TempDirGenerator) (*image.Image, error) {
	v1img, err := g.images().Image(ctx, img)
	if err != nil {
		return nil, err
	}
	raw, err := v1img.RawManifest()
	if err != nil {
		return nil, err
	}
	dir, err := tmp.NewDirectory("oci-registry-image")
	if err != nil {
		return nil, err
	}
	pulls := g.LayerPulls
	if pulls <= 0 {
		pulls = DefaultLayerPulls
	}
	// lower layers' squashed trees are built only if read, as syft.GetSource arranges
	ctx = async.SetContextExecutor(image.WithLazyLayerSquashes(ctx), image.LayerFetchExecutor, async.NewExecutor(pulls))
	stImg := image.New(v1img, tmp, dir, image.WithRepoDigests(img.String()), image.WithManifest(raw))
	if err := stImg.Read(ctx); err != nil {
		return nil, errors.Join(err, stImg.Cleanup())
	}
	return stImg, nil
}

// fail wraps an error, preferring the context's error so cancellation is recognisable.
func (g *Generator) fail(ctx context.Context, img name.Digest, stage string, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = fmt.Errorf("%w (%v)", cerr, err)
	}
	return fmt.Errorf("generating SBOM for %s: %s: %w", img.DigestStr(), stage, redact.Error(err))
}

// createConfig is Syft's default configuration with everything that reaches beyond the image
// switched off: no network lookups and no host toolchains or caches, since the operator's own
// filesystem has nothing to do with the image being described.
func (g *Generator) createConfig() *syft.CreateSBOMConfig {
	pk := pkgcataloging.DefaultConfig()
	// with the packages lib, the go.mod cataloger runs `go list` in the go.mod's directory on
	// the HOST (an image path taken as a host path)
	pk.Golang = pk.Golang.WithUsePackagesLib(false).
		WithSearchRemoteLicenses(false).
		WithSearchLocalModCacheLicenses(false)
	pk.JavaArchive = pk.JavaArchive.WithUseNetwork(false).WithUseMavenLocalRepository(false)
	pk.JavaScript = pk.JavaScript.WithSearchRemoteLicenses(false)
	pk.Python = pk.Python.WithSearchRemoteLicenses(false)

	extra := g.ExtraCatalogers
	if extra == nil {
		extra = DefaultExtraCatalogers
	}
	cfg := syft.DefaultCreateSBOMConfig().
		WithPackagesConfig(pk).
		WithParallelism(g.Parallelism).
		WithCatalogerSelection(cataloging.NewSelectionRequest().WithAdditions(extra...))
	if !g.IncludeFiles {
		cfg = cfg.WithoutFiles()
	}
	return cfg
}

// Building Syft's license scanner compiles every known license text into one automaton, which
// takes most of a small image's generation time (~1 s on two cores). The compiled scanner is
// read-only after construction (licensecheck shares its own built-in one between goroutines),
// so it is built once and offered to every generation; CreateSBOM uses a scanner it finds in
// the context instead of building its own.
var (
	licenseOnce sync.Once
	licenseCtx  context.Context // holds only the scanner value; never cancelled
)

func withSharedLicenseScanner(ctx context.Context, cfg *syft.CreateSBOMConfig) context.Context {
	licenseOnce.Do(func() {
		lctx, err := syft.SetContextLicenseScanner(context.Background(), cfg.Licenses)
		if err == nil {
			licenseCtx = lctx
		}
		// on error CreateSBOM builds its own scanner and reports the same failure
	})
	if licenseCtx == nil {
		return ctx
	}
	return valuesFallback{Context: ctx, fallback: licenseCtx}
}

// valuesFallback is ctx (deadline, cancellation, values) with values it lacks looked up in
// fallback.
type valuesFallback struct {
	context.Context
	fallback context.Context
}

// Value implements context.Context.
func (v valuesFallback) Value(key any) any {
	if x := v.Context.Value(key); x != nil {
		return x
	}
	return v.fallback.Value(key)
}
