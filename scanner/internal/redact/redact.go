// Package redact removes what must never reach a log, an event or a status field from text
// and errors: URL userinfo, query strings (signed redirects and tokens live there), fragments,
// authorization header values and token-like key=value pairs. Every scanner package uses it, so
// there is one definition of "sanitised".
package redact

import (
	"encoding/base64"
	"net/url"
	"regexp"
	"strings"
)

// urlPattern finds URLs embedded in free text, e.g. the "GET https://..." prefix of ggcr's
// transport errors or a URL echoed back in a registry's error body.
var urlPattern = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.\-]*://[^\s"'<>]+`)

// secretPatterns catch credentials that are not inside a URL: authorization header values and
// key=value pairs whose key names a secret.
var secretPatterns = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`(?i)(authorization:\s*)(bearer|basic)\s+\S+`), "$1$2 REDACTED"},
	{regexp.MustCompile(`(?i)\b((?:access_|refresh_|id_|registry|identity)?token|password|passwd|secret|sig|signature|x-amz-signature|x-amz-credential|x-goog-signature|x-goog-credential)=[^&\s"'<>]+`), "$1=REDACTED"},
	{regexp.MustCompile(`(?i)"((?:access_|refresh_)?token|password|auth|identitytoken|registrytoken)"\s*:\s*"[^"]*"`), `"$1":"REDACTED"`},
}

// URL removes what must never reach a log or a status field from a URL: userinfo,
// the query string (signed redirects and tokens live there) and the fragment. Text that does not
// parse as a URL has userinfo-looking and query parts cut textually.
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err == nil && u.Scheme != "" && u.Host != "" {
		u.User = nil
		u.RawQuery = ""
		u.ForceQuery = false
		u.Fragment = ""
		u.RawFragment = ""
		return u.String()
	}
	s := raw
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	if scheme := strings.Index(s, "://"); scheme >= 0 {
		rest := s[scheme+3:]
		end := strings.IndexByte(rest, '/')
		if end < 0 {
			end = len(rest)
		}
		if at := strings.LastIndexByte(rest[:end], '@'); at >= 0 {
			s = s[:scheme+3] + rest[at+1:]
		}
	}
	return s
}

// Text applies URL to every URL in s and redacts bearer/basic credentials and
// token-like key=value pairs outside URLs.
func Text(s string) string {
	s = urlPattern.ReplaceAllStringFunc(s, func(m string) string {
		// Keep punctuation that ends a sentence out of the URL.
		trail := ""
		for len(m) > 0 && strings.ContainsRune(".,;:)]}", rune(m[len(m)-1])) {
			trail = m[len(m)-1:] + trail
			m = m[:len(m)-1]
		}
		return URL(m) + trail
	})
	for _, p := range secretPatterns {
		s = p.re.ReplaceAllString(s, p.repl)
	}
	s = bearerPattern.ReplaceAllStringFunc(s, func(m string) string {
		word, tok, _ := strings.Cut(m, " ")
		if tok == "REDACTED" || !looksLikeToken(tok) {
			return m
		}
		return word + " REDACTED"
	})
	return s
}

// bearerPattern finds "Bearer <x>" / "Basic <x>" outside an Authorization header; looksLikeToken
// then decides, so prose such as "basic authentication" survives.
var bearerPattern = regexp.MustCompile(`(?i)\b(?:bearer|basic) [A-Za-z0-9._~+/\-]+=*`)

// looksLikeToken: base64 of "user:pass", or something long with the digits and punctuation of a
// JWT or opaque token.
func looksLikeToken(s string) bool {
	if raw, err := base64.StdEncoding.DecodeString(s); err == nil && strings.Contains(string(raw), ":") {
		return true
	}
	if len(s) < 12 {
		return false
	}
	return strings.ContainsAny(s, "0123456789._-+/=")
}

// sanitizedError carries a scrubbed message while keeping the original chain reachable through
// errors.Is/As, so IsNotFound & co. still work on sanitised errors.
type sanitizedError struct {
	msg string
	err error
}

func (e *sanitizedError) Error() string { return e.msg }
func (e *sanitizedError) Unwrap() error { return e.err }

// Error returns an error whose message has every URL sanitised (see URL) and
// credentials redacted. The original error stays in the Unwrap chain for errors.Is/As; print
// only the returned error's message. nil stays nil.
func Error(err error) error {
	if err == nil {
		return nil
	}
	if se, ok := err.(*sanitizedError); ok {
		return se
	}
	return &sanitizedError{msg: Text(err.Error()), err: err}
}
