package admission

import (
	"fmt"
	"strings"

	"github.com/imagetrust/imagetrust/scanner"
)

// imageRef is an image reference split the way reports key images: the canonical repository
// (as the scanner names it, e.g. index.docker.io/library/nginx), the tag and the digest.
type imageRef struct {
	Repository string
	Tag        string
	Digest     string
}

// String is repository[:tag][@digest].
func (r imageRef) String() string {
	s := r.Repository
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest
	}
	return s
}

// parseImage splits an image as a container runtime reads it: a missing registry is Docker
// Hub, a missing tag is "latest" unless a digest is given, and "repo:tag@digest" runs the
// digest (the tag is kept because policies may match on it).
func parseImage(image string) (imageRef, error) {
	if image == "" {
		return imageRef{}, fmt.Errorf("empty image reference")
	}
	repo, tag, err := scanner.ParseImage(image)
	if err != nil {
		return imageRef{}, fmt.Errorf("invalid image reference %q: %w", image, err)
	}
	ref := imageRef{Repository: repo, Tag: tag}
	if _, digest, ok := strings.Cut(image, "@"); ok {
		ref.Digest = digest
	}
	return ref, nil
}
