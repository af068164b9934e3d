package sbom

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestDetect(t *testing.T) {
	tests := []struct {
		name       string
		doc        string
		wantFormat string
		wantPkgs   int
		wantErr    string
	}{
		{name: "spdx", doc: string(spdxDoc(3)), wantFormat: FormatSPDXJSON, wantPkgs: 3},
		{name: "spdx without packages", doc: `{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT"}`, wantFormat: FormatSPDXJSON, wantPkgs: 0},
		{name: "spdx with BOM and whitespace", doc: "\ufeff \n" + string(spdxDoc(1)) + "\n", wantFormat: FormatSPDXJSON, wantPkgs: 1},
		{name: "cyclonedx nested components counted", doc: string(cyclonedxDoc(4, 2)), wantFormat: FormatCycloneDXJSON, wantPkgs: 6},
		{name: "cyclonedx no components", doc: `{"bomFormat":"CycloneDX","specVersion":"1.5"}`, wantFormat: FormatCycloneDXJSON, wantPkgs: 0},
		{name: "syft", doc: string(syftDoc(5)), wantFormat: FormatSyftJSON, wantPkgs: 5},
		{name: "syft identified by descriptor", doc: `{"artifacts":[{"name":"a"}],"descriptor":{"name":"syft"}}`, wantFormat: FormatSyftJSON, wantPkgs: 1},
		{name: "key order does not matter", doc: `{"packages":[{},{}],"name":"x","spdxVersion":"SPDX-2.2"}`, wantFormat: FormatSPDXJSON, wantPkgs: 2},

		{name: "empty", doc: "", wantErr: "not an SBOM: document is empty"},
		{name: "array", doc: `[1,2]`, wantErr: "not an SBOM: document is not a JSON object"},
		{name: "spdx tag-value", doc: "SPDXVersion: SPDX-2.3\nDataLicense: CC0-1.0\n", wantErr: "SPDX tag-value is not supported"},
		{name: "xml", doc: `<?xml version="1.0"?><bom xmlns="http://cyclonedx.org/schema/bom/1.5"/>`, wantErr: "XML documents are not supported"},
		{name: "unrelated json", doc: `{"kind":"Pod","apiVersion":"v1"}`, wantErr: "not an SBOM: JSON has no spdxVersion (SPDX), bomFormat (CycloneDX) or Syft schema with artifacts"},
		{name: "artifacts without syft schema", doc: `{"artifacts":[{}],"schema":{"url":"https://example.com/x.json"}}`, wantErr: "JSON has no spdxVersion"},
		{name: "truncated", doc: `{"spdxVersion":"SPDX-2.3","packages":[{"name":"a"},{"na`, wantErr: "not an SBOM: invalid JSON at byte"},
		{name: "trailing garbage", doc: `{"spdxVersion":"SPDX-2.3"} {"x":1}`, wantErr: "unexpected data after the JSON object"},
		{name: "two formats", doc: `{"spdxVersion":"SPDX-2.3","bomFormat":"CycloneDX"}`, wantErr: "identifying fields of more than one SBOM format"},
		{name: "bad spdx version", doc: `{"spdxVersion":"2.3","packages":[]}`, wantErr: `spdxVersion "2.3" does not start with "SPDX-"`},
		{name: "spdxVersion not a string", doc: `{"spdxVersion":2.3}`, wantErr: `spdxVersion "" does not start with "SPDX-"`},
		{name: "wrong bomFormat", doc: `{"bomFormat":"SPDX","components":[]}`, wantErr: `bomFormat is "SPDX", want "CycloneDX"`},
		{name: "duplicate packages key", doc: `{"spdxVersion":"SPDX-2.3","packages":[{}],"packages":[{},{}]}`, wantErr: `duplicate top-level key "packages"`},
		{name: "packages not an array", doc: `{"spdxVersion":"SPDX-2.3","packages":{"a":1}}`, wantErr: `member "packages": expected an array`},
		{name: "package not an object", doc: `{"spdxVersion":"SPDX-2.3","packages":[{},"x"]}`, wantErr: `member "packages": element 1: json: cannot unmarshal string`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			format, n, err := Detect([]byte(tc.doc))
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("Detect = %q, %d; want error containing %q", format, n, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %q does not contain %q", err, tc.wantErr)
				}
				if format != "" || n != 0 {
					t.Errorf("on error Detect returned %q, %d; want empty", format, n)
				}
				return
			}
			if err != nil {
				t.Fatalf("Detect: %v", err)
			}
			if format != tc.wantFormat || n != tc.wantPkgs {
				t.Errorf("Detect = %q, %d; want %q, %d", format, n, tc.wantFormat, tc.wantPkgs)
			}
		})
	}
}

func TestDetectSizeLimit(t *testing.T) {
	doc := spdxDoc(10)
	old := MaxDocumentBytes
	t.Cleanup(func() { MaxDocumentBytes = old })

	MaxDocumentBytes = int64(len(doc))
	if f, n, err := Detect(doc); err != nil || f != FormatSPDXJSON || n != 10 {
		t.Fatalf("at the limit: Detect = %q, %d, %v; want spdx-json, 10, nil", f, n, err)
	}
	MaxDocumentBytes = int64(len(doc)) - 1
	_, _, err := Detect(doc)
	want := "over the " + strconv.Itoa(len(doc)-1) + " byte limit"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("over the limit: err = %v, want %q", err, want)
	}
}

func TestDetectLargeSPDX(t *testing.T) {
	const n = 100_000
	doc := spdxDoc(n)
	start := time.Now()
	format, got, err := Detect(doc)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("Detect: %v", err)
	}
	if format != FormatSPDXJSON || got != n {
		t.Fatalf("Detect = %q, %d; want %q, %d", format, got, FormatSPDXJSON, n)
	}
	t.Logf("%d packages, %.1f MiB in %v", n, float64(len(doc))/(1<<20), elapsed)
	// generous for a loaded 2-core CI machine; a full unmarshal-into-maps would also pass, so
	// the allocation bound below is what shows the stream
	if elapsed > 15*time.Second {
		t.Errorf("Detect took %v", elapsed)
	}
}

func TestDetectLargeSPDXAllocations(t *testing.T) {
	doc := spdxDoc(20_000)
	allocs := testing.AllocsPerRun(1, func() {
		if _, _, err := Detect(doc); err != nil {
			t.Fatal(err)
		}
	})
	// decoding into maps allocates ~39 objects per package and collecting the packages as raw
	// messages ~1; streaming into empty structs allocates per document, not per package
	if perPkg := allocs / 20_000; perPkg >= 1 {
		t.Errorf("%.0f allocations (%.1f per package): the document is not being streamed", allocs, perPkg)
	}
}
