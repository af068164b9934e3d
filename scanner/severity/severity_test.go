package severity

import (
	"slices"
	"testing"

	"github.com/anchore/grype/grype/vulnerability"
)

// The ranks must be Grype's own: a gate or a sort that disagreed with Grype would show users a
// different "worst finding" than `grype` does on the same SBOM.
func TestRanksAreGrypes(t *testing.T) {
	for _, n := range Names() {
		if got, want := Rank(n), int(vulnerability.ParseSeverity(n)); got != want {
			t.Errorf("Rank(%s) = %d, grype says %d", n, got, want)
		}
	}
	if Rank("bogus") != 0 || Rank("") != 0 {
		t.Error("unrecognised severities must rank as Unknown (0)")
	}
}

func TestParseAndNormalize(t *testing.T) {
	for in, want := range map[string]string{"critical": Critical, " HIGH ": High, "Negligible": Negligible, "unknown": Unknown} {
		got, ok := Parse(in)
		if !ok || got != want {
			t.Errorf("Parse(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	if _, ok := Parse("severe"); ok {
		t.Error("Parse accepted a name that is not a severity")
	}
	if Normalize("severe") != Unknown {
		t.Error("Normalize of a non-severity must be Unknown")
	}
	if want := []string{Critical, High, Medium, Low, Negligible, Unknown}; !slices.Equal(Names(), want) {
		t.Errorf("Names() = %v, want %v", Names(), want)
	}
}
