// Package dockerfilecheck holds tests that parse the repository's Dockerfile and
// bundle.Dockerfile with BuildKit's own Dockerfile parser and check what the images promise:
// a static, non-root, distroless manager image and a manifests-only OLM bundle image.
//
// It is a module of its own because importing github.com/moby/buildkit into the main module
// would upgrade modules the scanner depends on (sigstore). Run it with `make dockerfile-check`.
package dockerfilecheck
