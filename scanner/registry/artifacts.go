package registry

import (
	"fmt"
	"regexp"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// artifactTag matches the tags signing and attaching tools put next to images: cosign's
// "sha256-<hex>.sig", ".att" and ".sbom", and the OCI referrers tag schema "sha256-<hex>"
// (the digest with ':' replaced by '-', truncated to 64 characters) that holds the referrers
// index on registries without the referrers API.
var artifactTag = regexp.MustCompile(`^(sha256|sha384|sha512)-[0-9a-f]{64}(\.(sig|att|sbom))?$`)

// IsArtifactTag reports whether tag names a signature, attestation, SBOM or referrers index
// rather than an image, by the naming conventions of cosign and the OCI distribution spec.
func IsArtifactTag(tag string) bool { return artifactTag.MatchString(tag) }

// Layer media type families of container images: OCI layers (gzip, zstd, uncompressed,
// non-distributable, encrypted) and Docker's rootfs diffs (including foreign layers).
var imageLayerPrefixes = []string{"application/vnd.oci.image.layer.", "application/vnd.docker.image.rootfs."}

// Media types that mark a manifest as one of cosign's own, to name them in errors.
var cosignLayerKinds = map[string]string{
	"application/vnd.dev.cosign.simplesigning.v1+json": "a cosign signature",
	"application/vnd.dsse.envelope.v1+json":            "a cosign attestation",
	"application/vnd.dev.sigstore.bundle.v0.3+json":    "a Sigstore bundle",
}

// notAnImage says why a parsed image manifest describes an artifact rather than a container
// image, or returns "" for an image. An image has no artifactType, an image config, and only
// filesystem layers: cosign signatures and attestations carry an image config but JSON
// layers; OCI artifacts (SBOMs, Helm charts, bundles) carry an artifactType or another config.
func notAnImage(mf *v1.Manifest) string {
	for _, l := range mf.Layers {
		if kind, ok := cosignLayerKinds[string(l.MediaType)]; ok {
			return kind
		}
	}
	if mf.ArtifactType != "" {
		return fmt.Sprintf("an OCI artifact of type %q", mf.ArtifactType)
	}
	if !mf.Config.MediaType.IsConfig() {
		return fmt.Sprintf("an OCI artifact (config media type %q is not an image config)", mf.Config.MediaType)
	}
	for _, l := range mf.Layers {
		if !isImageLayer(string(l.MediaType)) {
			return fmt.Sprintf("an OCI artifact (layer media type %q is not a filesystem layer)", l.MediaType)
		}
	}
	return ""
}

func isImageLayer(mt string) bool {
	for _, p := range imageLayerPrefixes {
		if strings.HasPrefix(mt, p) {
			return true
		}
	}
	return false
}

// notAnImageIndex says why an index that lists no runnable platform is an artifact index (a
// referrers index, whose entries are artifacts without platforms) rather than a multi-arch
// image, or returns "" when it is an image index.
func notAnImageIndex(idx *v1.IndexManifest) string {
	if idx.ArtifactType != "" {
		return fmt.Sprintf("an OCI artifact index of type %q", idx.ArtifactType)
	}
	for _, d := range idx.Manifests {
		if d.Platform != nil && d.Platform.OS != "" {
			return ""
		}
	}
	if len(idx.Manifests) == 0 {
		return "an empty index"
	}
	return "an index of artifacts (a referrers index: no entry names a platform)"
}
