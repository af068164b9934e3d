package controllers

import (
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// maxBaseLen keeps report names short enough to read in kubectl and far below the 253
// characters a name may have: base (≤ 50) + "-" + 12 hex digits.
const maxBaseLen = 50

// shortDigest is the first 12 hex digits of a sha256 digest, the length docker shows.
func shortDigest(digest string) string {
	hex := strings.TrimPrefix(digest, "sha256:")
	if len(hex) > 12 {
		hex = hex[:12]
	}
	return hex
}

// reportName derives a report's name from the image's basename and the digest, e.g.
// "registry.example.com/team/my_App" + sha256:0123456789ab… → "my-app-0123456789ab". The result
// is a valid DNS subdomain (and label) whatever the repository is called. extra lengthens the
// digest part to resolve the (astronomically unlikely) clash of two digests with the same prefix.
func reportName(repository, digest string, extra int) string {
	base := repository
	if i := strings.LastIndex(base, "/"); i >= 0 {
		base = base[i+1:]
	}
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(base) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
			dash = false
		default:
			if !dash && b.Len() > 0 {
				b.WriteByte('-')
				dash = true
			}
		}
	}
	s := strings.Trim(b.String(), "-")
	if len(s) > maxBaseLen {
		s = strings.TrimRight(s[:maxBaseLen], "-")
	}
	if s == "" {
		s = "image"
	}
	hex := strings.TrimPrefix(digest, "sha256:")
	n := 12 + extra
	if n > len(hex) {
		n = len(hex)
	}
	name := s + "-" + hex[:n]
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return "image-" + hex[:n]
	}
	return name
}
