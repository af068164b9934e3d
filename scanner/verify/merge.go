package verify

import (
	"context"
	"fmt"
	"strings"
)

// outcome is a merged verdict over every layout.
type outcome struct {
	state  State
	reason string
	hits   []hit
}

// hit is one signature accepted by one authority; statement is set for attestations.
type hit struct {
	signer    Signer
	statement *statement
}

// layoutOutcome is what one layout (cosign tag, Sigstore bundles, Notation) held and how each
// authority judged it.
type layoutOutcome struct {
	name string
	// found counts signatures (or attestations) present in this layout.
	found int
	hits  []hit
	// errs are failures that prevent a verdict: registry errors, unreadable bundles,
	// unavailable trust roots. Each is a complete sentence.
	errs []string
	// causes are per-authority reasons why found signatures did not verify.
	causes map[string][]string
}

func newLayout(name string) layoutOutcome {
	return layoutOutcome{name: name, causes: map[string][]string{}}
}

func (l *layoutOutcome) cause(authority, s string) {
	l.causes[authority] = appendUnique(l.causes[authority], s)
}

func (l layoutOutcome) summary() string {
	switch {
	case len(l.errs) > 0 && l.found == 0:
		return l.name + ": error"
	case len(l.hits) > 0:
		return fmt.Sprintf("%s: %d found, verified", l.name, l.found)
	case l.found > 0:
		return fmt.Sprintf("%s: %d found", l.name, l.found)
	}
	return l.name + ": none"
}

// merge applies the fail-closed rule: Verified if any layout verified for an authority;
// otherwise Error if any layout could not be judged (or an authority is misconfigured while
// signatures exist); else Invalid if anything was found; else Unsigned.
func (r *run) merge(ctx context.Context, kind string, layouts []layoutOutcome) outcome {
	if err := ctx.Err(); err != nil {
		return outcome{state: Error, reason: "verification cancelled: " + err.Error()}
	}
	var hits []hit
	var errs, looked []string
	found := 0
	for _, l := range layouts {
		hits = append(hits, l.hits...)
		errs = append(errs, l.errs...)
		found += l.found
		looked = append(looked, l.summary())
	}
	lookedAt := "looked at " + strings.Join(looked, "; ")
	if len(hits) > 0 {
		var names []string
		for _, c := range r.auths {
			for _, h := range hits {
				if h.signer.Authority == c.name {
					names = appendUnique(names, c.name)
				}
			}
		}
		return outcome{state: Verified, hits: hits, reason: fmt.Sprintf("%s verified by authorities [%s] (%s)", kind, strings.Join(names, ", "), lookedAt)}
	}
	if len(errs) > 0 {
		return outcome{state: Error, reason: truncate(strings.Join(uniq(errs), "; "), 900) + " (" + lookedAt + ")"}
	}
	if found == 0 {
		return outcome{state: Unsigned, reason: fmt.Sprintf("no %ss found for %s (%s)", kind, r.ref.DigestStr(), lookedAt)}
	}
	plural := kind
	if found != 1 {
		plural += "s"
	}
	reason := fmt.Sprintf("%d %s found, none verified by authorities [%s]: %s (%s)", found, plural, strings.Join(r.names(), ", "), truncate(r.causes(layouts), 600), lookedAt)
	if len(r.badAuth) > 0 {
		// A misconfigured authority might have accepted the signature: the result is not a
		// verdict on the image, so report it as an error to be fixed.
		return outcome{state: Error, reason: "authority configuration error: " + strings.Join(r.badAuth, "; ") + "; " + reason}
	}
	return outcome{state: Invalid, reason: reason}
}

func (r *run) names() []string {
	var names []string
	for _, c := range r.auths {
		names = append(names, c.name)
	}
	return names
}

// causes lists, per authority, why nothing verified, across layouts.
func (r *run) causes(layouts []layoutOutcome) string {
	var parts []string
	for _, c := range r.auths {
		var cs []string
		for _, l := range layouts {
			for _, s := range l.causes[c.name] {
				cs = appendUnique(cs, s)
			}
		}
		if len(cs) == 0 {
			cs = []string{"no signature in a format this authority verifies"}
		}
		if len(r.auths) == 1 {
			parts = append(parts, strings.Join(cs, "; "))
		} else {
			parts = append(parts, c.name+": "+strings.Join(cs, "; "))
		}
	}
	return strings.Join(parts, " | ")
}
