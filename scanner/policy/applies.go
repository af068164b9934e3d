package policy

import "strings"

// dockerHub is the canonical registry of Docker Hub images, as go-containerregistry (and so the
// scanner) names it.
const dockerHub = "index.docker.io"

// Applies reports whether the policy covers an image: its canonical repository (as the scanner
// names it, e.g. index.docker.io/library/nginx) or repository:tag for any tag it was seen
// under. It is the one meaning of "this policy applies to this image", shared by the manager,
// the admission webhook and `imagetrust scan --policy`; namespace selection is the cluster's
// business on top of it.
func (p Policy) Applies(repo string, tags []string) bool { return ImagesMatch(p.Images, repo, tags) }

// ImagesMatch reports whether any pattern matches repo or repo:tag for one of tags. A pattern is
// read the way docker reads an image name: "docker.io/x" is Docker Hub's canonical
// "index.docker.io/x", and a pattern without a registry host ("nginx", "team/app:1.*") names
// Docker Hub, with "library/" for a single path segment.
func ImagesMatch(patterns []string, repo string, tags []string) bool {
	for _, pat := range patterns {
		for _, form := range patternForms(pat) {
			if MatchImage(form, repo) {
				return true
			}
			for _, t := range tags {
				if MatchImage(form, repo+":"+t) {
					return true
				}
			}
		}
	}
	return false
}

// patternForms is the pattern as written plus its canonical Docker Hub form, when it names one.
func patternForms(pat string) []string {
	first, rest, hasSlash := strings.Cut(pat, "/")
	switch {
	case first == "docker.io" && hasSlash:
		return []string{pat, dockerHub + "/" + rest}
	case strings.ContainsAny(first, "*?[\\"):
		// a glob in the first segment may stand for a registry host: leave it as written
		return []string{pat}
	case hasSlash && (strings.ContainsAny(first, ".:") || first == "localhost"):
		return []string{pat}
	case !hasSlash:
		return []string{pat, dockerHub + "/library/" + pat}
	default:
		return []string{pat, dockerHub + "/" + pat}
	}
}
