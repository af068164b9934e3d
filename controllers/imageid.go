package controllers

import (
	"regexp"
	"strings"

	"github.com/imagetrust/imagetrust/scanner"
)

var digestPattern = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)

// parseImageID extracts the repository and manifest digest from a container status imageID,
// which container runtimes spell in several ways:
//
//	docker-pullable://registry/repo@sha256:…   (dockershim, cri-dockerd)
//	registry/repo@sha256:…                     (containerd, CRI-O)
//	sha256:…                                   (bare digest; the repository comes from the spec)
//
// The repository is normalised the way the scanner names it (index.docker.io/library/nginx),
// so reports, policies and the scanner all agree. ok is false when imageID carries no usable
// digest (empty while the image is pulling, or a runtime-local image ID such as docker://sha256
// of an image that was never pulled from a registry with a repo digest); callers then resolve the
// spec image instead.
func parseImageID(imageID, specImage string) (repo, digest string, ok bool) {
	id := strings.TrimSpace(imageID)
	scheme := ""
	if i := strings.Index(id, "://"); i >= 0 {
		scheme, id = id[:i], id[i+3:]
	}
	if at := strings.LastIndex(id, "@"); at >= 0 {
		r, d := id[:at], id[at+1:]
		if !digestPattern.MatchString(d) {
			return "", "", false
		}
		nr, err := normaliseRepo(r)
		if err != nil {
			return "", "", false
		}
		return nr, d, true
	}
	// docker:// followed by a bare sha256 is the local image (config) ID, not a manifest digest
	// that a registry knows; it cannot be verified or pulled by digest.
	if scheme == "docker" || !digestPattern.MatchString(id) {
		return "", "", false
	}
	if specImage == "" {
		return "", "", false
	}
	nr, err := normaliseRepo(specImage)
	if err != nil {
		return "", "", false
	}
	return nr, id, true
}

// normaliseRepo turns an image reference (with or without tag/digest) into the fully qualified
// repository name, e.g. "nginx:1.25" → "index.docker.io/library/nginx".
func normaliseRepo(ref string) (string, error) { return scanner.RepositoryOf(ref) }

// specTag returns the tag of an image reference as the kubelet runs it (scanner.ParseImage):
// "latest" when neither tag nor digest is written, "" for an invalid reference.
func specTag(ref string) string {
	_, tag, err := scanner.ParseImage(ref)
	if err != nil {
		return ""
	}
	return tag
}

// specDigest returns the digest pinned in an image reference, if any.
func specDigest(ref string) string {
	if i := strings.LastIndex(ref, "@"); i >= 0 && digestPattern.MatchString(ref[i+1:]) {
		return ref[i+1:]
	}
	return ""
}
