// Package severity is the one table of vulnerability severities imagetrust uses: the six names
// Grype reports, in Grype's order (Unknown lowest, below Negligible), so a report, a metric, a
// policy gate and the CLI can never disagree about what "High or worse" means.
package severity

import "strings"

// The severity names, exactly as Grype and the ImageTrust API spell them.
const (
	Critical   = "Critical"
	High       = "High"
	Medium     = "Medium"
	Low        = "Low"
	Negligible = "Negligible"
	Unknown    = "Unknown"
)

// ordered lists the names from the lowest rank (0) to the highest; a name's index is its rank,
// which equals grype's vulnerability.Severity value for the same name.
var ordered = [...]string{Unknown, Negligible, Low, Medium, High, Critical}

// Names returns the names most severe first: Critical, High, Medium, Low, Negligible, Unknown.
func Names() []string {
	out := make([]string, len(ordered))
	for i, n := range ordered {
		out[len(ordered)-1-i] = n
	}
	return out
}

// Parse returns the canonical name of s, matched case-insensitively; ok is false when s is none
// of the six names.
func Parse(s string) (name string, ok bool) {
	for _, n := range ordered {
		if strings.EqualFold(strings.TrimSpace(s), n) {
			return n, true
		}
	}
	return "", false
}

// Normalize returns the canonical name of s, or Unknown for anything that is not a severity.
func Normalize(s string) string {
	if n, ok := Parse(s); ok {
		return n
	}
	return Unknown
}

// Rank orders severities: Unknown 0, Negligible 1, … Critical 5. Unrecognised names rank as
// Unknown, the way Grype treats a record without a severity.
func Rank(s string) int {
	n := Normalize(s)
	for i, o := range ordered {
		if o == n {
			return i
		}
	}
	return 0
}
