package sbom

import "github.com/imagetrust/imagetrust/scanner/internal/redact"

// sanitize strips credentials from err's message (registries redirect blob downloads to
// pre-signed URLs whose query is a bearer credential), keeping err for errors.Is/As.
func sanitize(err error) error { return redact.Error(err) }

// sanitizeText applies the scrubbing of sanitize to a string.
func sanitizeText(s string) string { return redact.Text(s) }
