//go:build tools

// Package tools records the upstream grype CLI as a dependency of this module so that
// `go build github.com/anchore/grype/cmd/grype` resolves at the pinned version.
package tools

import _ "github.com/anchore/grype/cmd/grype"
