package controllers

import (
	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
)

// imageKey names one image the Engine assesses: a manifest digest in one repository. The same
// digest in two repositories (a mirror) is two images: cosign stores signatures and
// attestations per repository and policies match on the repository, so the verification of one
// must never stand for the other. Only what depends on the content alone (the SBOM, through the
// scanner's cache, and the vulnerability match) is shared by digest.
type imageKey struct {
	Repository string
	Digest     string
}

// String renders the key as a digest reference, for logs and errors.
func (k imageKey) String() string { return k.Repository + "@" + k.Digest }

// reportKey names one report: an image (repository and digest) in a namespace.
type reportKey struct {
	Namespace  string
	Repository string
	Digest     string
}

// image is the image the report is about.
func (k reportKey) image() imageKey { return imageKey{k.Repository, k.Digest} }

// String renders the key for logs and errors.
func (k reportKey) String() string { return k.Namespace + "/" + k.Repository + "@" + k.Digest }

// describes reports whether r is the stored report of k. Spec.Image holds the repository cut
// to the API's length limit.
func (k reportKey) describes(r *securityv1alpha1.ImageTrustReport) bool {
	return r.Namespace == k.Namespace && r.Spec.Digest == k.Digest && r.Spec.Image == trunc(k.Repository, maxImageLen)
}

// reportKeyOf is the key of a stored report: Spec.Image is the repository it was written for.
func reportKeyOf(r *securityv1alpha1.ImageTrustReport) reportKey {
	return reportKey{r.Namespace, r.Spec.Image, r.Spec.Digest}
}
