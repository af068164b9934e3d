package sbom

import (
	"net/url"
	"regexp"
	"strings"
)

// urlPattern finds URLs embedded in error text (net/http and registry client errors quote them).
var urlPattern = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"'<>]+`)

// sanitizedError carries a message with URLs scrubbed while keeping the original for errors.Is/As.
type sanitizedError struct {
	msg string
	err error
}

func (e *sanitizedError) Error() string { return e.msg }
func (e *sanitizedError) Unwrap() error { return e.err }

// sanitize strips userinfo, query strings and fragments from every URL in err's message:
// registries redirect blob downloads to pre-signed URLs whose query is a bearer credential.
func sanitize(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := sanitizeText(msg)
	if clean == msg {
		return err
	}
	return &sanitizedError{msg: clean, err: err}
}

// sanitizeText applies the URL scrubbing of sanitize to a string.
func sanitizeText(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	return urlPattern.ReplaceAllStringFunc(s, func(raw string) string {
		u, err := url.Parse(raw)
		if err != nil {
			// unparseable: nothing after the scheme can be shown safely
			return raw[:strings.Index(raw, "://")+3] + "<redacted>"
		}
		u.User = nil
		u.RawQuery = ""
		u.ForceQuery = false
		u.Fragment = ""
		u.RawFragment = ""
		return u.String()
	})
}
