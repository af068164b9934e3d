//go:build tools

// Package tools records the upstream notation CLI as a dependency of this module so that
// `go build github.com/notaryproject/notation/cmd/notation` resolves at the pinned version.
package tools

import _ "github.com/notaryproject/notation/cmd/notation"
