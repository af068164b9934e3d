package sbom

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// MaxDocumentBytes bounds the size of an SBOM this package accepts (fetched, cached or
// detected). 256 MiB comfortably holds six-figure package counts while keeping a hostile
// registry from exhausting memory. Set it at start-up only; it is read without locking.
var MaxDocumentBytes int64 = 256 << 20

// Detect identifies an SBOM document and counts its packages without building the whole document
// in memory: top-level keys are streamed and package entries decoded one at a time into empty
// structs. SPDX counts "packages", CycloneDX counts "components" (nested ones included), Syft
// counts "artifacts". JSON that is none of these is rejected with the reason.
func Detect(doc []byte) (format string, packages int, err error) {
	return detect(doc, MaxDocumentBytes)
}

// detectState collects what the streaming pass saw at the top level.
type detectState struct {
	seen        map[string]bool
	spdxVersion string
	bomFormat   string
	schemaURL   string
	descriptor  string
	packages    int // SPDX "packages"
	components  int // CycloneDX "components"
	artifacts   int // Syft "artifacts"
}

func detect(doc []byte, limit int64) (string, int, error) {
	if limit > 0 && int64(len(doc)) > limit {
		return "", 0, fmt.Errorf("SBOM document is %d bytes, over the %d byte limit", len(doc), limit)
	}
	trimmed := bytes.TrimLeft(doc, " \t\r\n\ufeff")
	if len(trimmed) == 0 {
		return "", 0, errors.New("not an SBOM: document is empty")
	}
	if trimmed[0] != '{' {
		switch {
		case bytes.HasPrefix(trimmed, []byte("SPDXVersion:")):
			return "", 0, errors.New("not a supported SBOM: SPDX tag-value is not supported, only SPDX JSON")
		case trimmed[0] == '<':
			return "", 0, errors.New("not a supported SBOM: XML documents are not supported, only JSON")
		default:
			return "", 0, errors.New("not an SBOM: document is not a JSON object")
		}
	}

	dec := json.NewDecoder(bytes.NewReader(trimmed))
	st := detectState{seen: map[string]bool{}}
	if err := st.scan(dec); err != nil {
		return "", 0, fmt.Errorf("not an SBOM: invalid JSON at byte %d: %w", dec.InputOffset(), err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return "", 0, fmt.Errorf("not an SBOM: unexpected data after the JSON object at byte %d", dec.InputOffset())
	}
	return st.classify()
}

// scan walks the top-level object, decoding only the members that identify the format.
func (st *detectState) scan(dec *json.Decoder) error {
	if err := expectDelim(dec, '{'); err != nil {
		return err
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, ok := tok.(string)
		if !ok {
			return fmt.Errorf("expected an object key, got %v", tok)
		}
		switch key {
		case "spdxVersion", "bomFormat", "packages", "components", "artifacts", "schema", "descriptor":
			// a duplicated identifying key would make the count depend on which parser reads it
			if st.seen[key] {
				return fmt.Errorf("duplicate top-level key %q", key)
			}
			st.seen[key] = true
		}
		switch key {
		case "spdxVersion":
			err = decodeOptionalString(dec, &st.spdxVersion)
		case "bomFormat":
			err = decodeOptionalString(dec, &st.bomFormat)
		case "packages":
			st.packages, err = countArray(dec, countOne)
		case "artifacts":
			st.artifacts, err = countArray(dec, countOne)
		case "components":
			st.components, err = countArray(dec, countComponent)
		case "schema":
			var s struct {
				URL string `json:"url"`
			}
			err = decodeIfObject(dec, &s)
			st.schemaURL = s.URL
		case "descriptor":
			var d struct {
				Name string `json:"name"`
			}
			err = decodeIfObject(dec, &d)
			st.descriptor = d.Name
		default:
			err = skipValue(dec)
		}
		if err != nil {
			return fmt.Errorf("member %q: %w", key, err)
		}
	}
	return expectDelim(dec, '}')
}

// classify decides the format from the identifying members; exactly one format must match.
func (st *detectState) classify() (string, int, error) {
	isSPDX := st.seen["spdxVersion"]
	isCDX := st.seen["bomFormat"]
	isSyft := st.seen["artifacts"] && (strings.Contains(st.schemaURL, "anchore/syft") || st.descriptor == "syft")

	n := 0
	for _, b := range []bool{isSPDX, isCDX, isSyft} {
		if b {
			n++
		}
	}
	switch {
	case n == 0:
		return "", 0, errors.New("not an SBOM: JSON has no spdxVersion (SPDX), bomFormat (CycloneDX) or Syft schema with artifacts")
	case n > 1:
		return "", 0, errors.New("not an SBOM: JSON carries identifying fields of more than one SBOM format")
	case isSPDX:
		if !strings.HasPrefix(st.spdxVersion, "SPDX-") {
			return "", 0, fmt.Errorf("not an SBOM: spdxVersion %q does not start with \"SPDX-\"", st.spdxVersion)
		}
		return FormatSPDXJSON, st.packages, nil
	case isCDX:
		if st.bomFormat != "CycloneDX" {
			return "", 0, fmt.Errorf("not an SBOM: bomFormat is %q, want \"CycloneDX\"", st.bomFormat)
		}
		return FormatCycloneDXJSON, st.components, nil
	default:
		return FormatSyftJSON, st.artifacts, nil
	}
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("expected %q, got %v", want, tok)
	}
	return nil
}

// skipValue consumes one JSON value. Arrays and objects are walked one child at a time so a
// large member ("files", "relationships") is never copied whole; each child is decoded into a
// RawMessage, which validates it.
func skipValue(dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil // scalar, already consumed
	}
	var raw json.RawMessage
	switch d {
	case '[':
		for dec.More() {
			if err := dec.Decode(&raw); err != nil {
				return err
			}
		}
		return expectDelim(dec, ']')
	case '{':
		for dec.More() {
			if _, err := dec.Token(); err != nil {
				return err
			}
			if err := dec.Decode(&raw); err != nil {
				return err
			}
		}
		return expectDelim(dec, '}')
	default:
		return fmt.Errorf("unexpected %v", d)
	}
}

// decodeOptionalString reads a string member; any other type leaves dst empty, so classify
// reports the member as malformed rather than the JSON as invalid.
func decodeOptionalString(dec *json.Decoder, dst *string) error {
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return err
	}
	if len(raw) > 0 && raw[0] == '"' {
		return json.Unmarshal(raw, dst)
	}
	return nil
}

// decodeIfObject decodes an object member into dst and skips anything else.
func decodeIfObject(dec *json.Decoder, dst any) error {
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return err
	}
	if len(raw) > 0 && raw[0] == '{' {
		return json.Unmarshal(raw, dst)
	}
	return nil
}

// countArray counts the packages in an array member, using each to consume one element and
// return how many packages it holds. null counts as zero; other types are errors.
func countArray(dec *json.Decoder, each func(*json.Decoder) (int, error)) (int, error) {
	tok, err := dec.Token()
	if err != nil {
		return 0, err
	}
	if tok == nil {
		return 0, nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return 0, fmt.Errorf("expected an array, got %v", tok)
	}
	total := 0
	for i := 0; dec.More(); i++ {
		n, err := each(dec)
		if err != nil {
			return 0, fmt.Errorf("element %d: %w", i, err)
		}
		total += n
	}
	if err := expectDelim(dec, ']'); err != nil {
		return 0, err
	}
	return total, nil
}

// countOne consumes one array element that is one package; it must be an object.
func countOne(dec *json.Decoder) (int, error) {
	var v struct{}
	if err := dec.Decode(&v); err != nil {
		return 0, err
	}
	return 1, nil
}

// cdxComponent holds just the nesting of a CycloneDX component; everything else is skipped.
type cdxComponent struct {
	Components []cdxComponent `json:"components"`
}

func (c cdxComponent) count() int {
	n := 1
	for _, sub := range c.Components {
		n += sub.count()
	}
	return n
}

// countComponent consumes one CycloneDX component and counts it with the components nested in it.
func countComponent(dec *json.Decoder) (int, error) {
	var c cdxComponent
	if err := dec.Decode(&c); err != nil {
		return 0, err
	}
	return c.count(), nil
}
