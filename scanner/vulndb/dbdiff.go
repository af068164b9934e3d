package vulndb

import (
	"net/url"
	"strings"

	"github.com/anchore/grype/grype/pkg"
)

// dbDiff is what changed between two databases, in the terms the fleet cache is keyed on:
// normalised package/CPE product names whose affected or unaffected rows changed, and
// vulnerability IDs whose records changed.
type dbDiff struct {
	from, to string // grype checksums
	full     bool   // the diff cannot be trusted to be complete: rematch everything
	reason   string
	names    map[uint64]bool // nameHash of normalised names
	vulns    map[uint64]bool // nameHash of lower-cased vulnerability IDs
}

// touchedBy reports whether an entry's results may differ under the new database.
func (e *entry) touchedBy(d *dbDiff) bool {
	for _, n := range e.names {
		if d.names[n] {
			return true
		}
	}
	for _, id := range e.vulnIDs {
		if d.vulns[id] {
			return true
		}
	}
	return false
}

// normName folds the spellings grype treats as one name (case, and the separators Python
// and other ecosystems normalise) so that invalidation errs on the side of rematching.
func normName(s string) string {
	return nameSeparators.Replace(strings.ToLower(strings.TrimSpace(s)))
}

var nameSeparators = strings.NewReplacer("_", "-", ".", "-")

// searchNames lists (as nameHash) the normalised names a matcher can look a package up by: its
// own name, its upstream (source/origin) names and the products of its CPEs.
func searchNames(p pkg.Package) []uint64 {
	seen := map[string]bool{}
	var out []uint64
	add := func(s string) {
		if n := normName(s); n != "" && !seen[n] {
			seen[n] = true
			out = append(out, nameHash(n))
		}
	}
	add(p.Name)
	for _, u := range p.Upstreams {
		add(u.Name)
	}
	if p.Distro != nil {
		// distro rows are keyed by release major version too (see osScoped)
		add(osScoped(p.Distro.MajorVersion(), p.Name))
		for _, u := range p.Upstreams {
			add(osScoped(p.Distro.MajorVersion(), u.Name))
		}
	}
	for _, c := range p.CPEs {
		add(c.Attributes.Product)
	}
	return out
}

// osScoped names a package of an operating-system release. Only the major version is used:
// it is spelt the same in grype's distro and in the database's operating_systems rows, while
// distribution names have aliases (rhel/redhat, …); over-invalidating across distributions that
// share a major version is harmless.
func osScoped(major, name string) string {
	return "os" + strings.TrimSpace(major) + "|" + name
}

// dbNames adds a database package name in the forms searchNames can produce: the name itself
// and, for coordinates like "group:artifact", the last component.
func dbNames(set map[string]bool, name string) {
	set[normName(name)] = true
	if i := strings.LastIndexAny(name, ":/"); i >= 0 && i+1 < len(name) {
		set[normName(name[i+1:])] = true
	}
}

func roURI(path string) string {
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?mode=ro&immutable=1"
}
