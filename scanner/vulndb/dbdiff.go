package vulndb

import (
	"context"
	"database/sql"
	"fmt"
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
	names    map[string]bool
	vulns    map[string]bool
}

// touchedBy reports whether an entry's results may differ under the new database.
func (e *entry) touchedBy(d *dbDiff) bool {
	for _, n := range e.names {
		if d.names[n] {
			return true
		}
	}
	for _, id := range e.vulnIDs {
		if d.vulns[strings.ToLower(id)] {
			return true
		}
	}
	return false
}

// normName folds the spellings grype treats as one name (case, and the separators Python
// and other ecosystems normalise) so that invalidation errs on the side of rematching.
func normName(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	return strings.NewReplacer("_", "-", ".", "-").Replace(s)
}

// searchNames lists the normalised names a matcher can look a package up by: its own name,
// its upstream (source/origin) names and the products of its CPEs.
func searchNames(p pkg.Package) []string {
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		if n := normName(s); n != "" && !seen[n] {
			seen[n] = true
			out = append(out, n)
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

// tables whose rows cannot change any finding (exploit/EPSS/CWE enrichment, provenance) or
// that are only identities referenced by the handle tables diffed below.
var diffIgnoredTables = map[string]bool{
	"db_metadata": true, "providers": true, "blobs": true, "packages": true, "cpes": true,
	"known_exploited_vulnerability_handles": true, "epss_handles": true, "epss_metadata": true,
	"cwe_handles": true, "ssvc_handles": true,
}

// diffDatabases compares two grype v6 database files read-only with SQL and reports the
// package names and vulnerability IDs whose rows differ. Any difference it does not understand
// (schema, model revision, operating system or override tables) makes the diff full.
func diffDatabases(ctx context.Context, oldPath, newPath string) (*dbDiff, error) {
	d := &dbDiff{names: map[string]bool{}, vulns: map[string]bool{}}
	db, err := sql.Open("sqlite", roURI(oldPath))
	if err != nil {
		return nil, fmt.Errorf("vulndb: diff: open previous database: %w", err)
	}
	defer db.Close()
	// ATTACH and temporary b-trees are per connection
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("vulndb: diff: open previous database: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `ATTACH DATABASE ? AS nw`, roURI(newPath)); err != nil {
		return nil, fmt.Errorf("vulndb: diff: attach new database: %w", err)
	}

	// schema: same tables with the same definitions, same model
	schema := func(db string) (map[string]string, error) {
		// column lists, not the CREATE text: grype's writer emits constraints in map order
		rows, err := conn.QueryContext(ctx, `SELECT m.name, group_concat(p.name||' '||p.type||' '||p."notnull"||' '||p.pk, ',')
			FROM `+db+`.sqlite_master m, pragma_table_info(m.name, '`+db+`') p WHERE m.type = 'table' GROUP BY m.name`)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		out := map[string]string{}
		for rows.Next() {
			var n, s string
			if err := rows.Scan(&n, &s); err != nil {
				return nil, err
			}
			out[n] = s
		}
		return out, rows.Err()
	}
	so, err := schema("main")
	if err != nil {
		return nil, fmt.Errorf("vulndb: diff: read schema: %w", err)
	}
	sn, err := schema("nw")
	if err != nil {
		return nil, fmt.Errorf("vulndb: diff: read schema: %w", err)
	}
	if !sameMap(so, sn) {
		d.full, d.reason = true, "database schema changed"
		return d, nil
	}
	var mo, mn string
	if err := conn.QueryRowContext(ctx, `SELECT (SELECT model||'.'||revision||'.'||addition FROM main.db_metadata), (SELECT model||'.'||revision||'.'||addition FROM nw.db_metadata)`).Scan(&mo, &mn); err != nil {
		return nil, fmt.Errorf("vulndb: diff: read model: %w", err)
	}
	if mo != mn {
		d.full, d.reason = true, fmt.Sprintf("database model changed (%s to %s)", mo, mn)
		return d, nil
	}

	// symmetric difference of a row query over both databases; q has a %[1]s placeholder for
	// the schema name and its first column is the key reported
	symdiff := func(q string, add func(string)) error {
		stmt := fmt.Sprintf(`SELECT * FROM (%s EXCEPT %s) UNION ALL SELECT * FROM (%s EXCEPT %s)`,
			fmt.Sprintf(q, "main"), fmt.Sprintf(q, "nw"), fmt.Sprintf(q, "nw"), fmt.Sprintf(q, "main"))
		stmt = `SELECT DISTINCT k FROM (` + stmt + `)`
		rows, err := conn.QueryContext(ctx, stmt)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k sql.NullString
			if err := rows.Scan(&k); err != nil {
				return err
			}
			add(k.String)
		}
		return rows.Err()
	}
	addName := func(s string) { dbNames(d.names, s) }
	// rows of distro packages come as "major|name" (an empty major: not a distro row)
	addPkg := func(s string) {
		major, name, _ := strings.Cut(s, "|")
		if major == "" {
			dbNames(d.names, name)
			return
		}
		d.names[normName(osScoped(major, name))] = true
	}
	addVuln := func(s string) { d.vulns[strings.ToLower(s)] = true }

	handled := map[string]bool{"vulnerability_handles": true, "vulnerability_aliases": true, "package_cpes": true}
	queries := []struct {
		table string
		q     string
		add   func(string)
	}{
		{"vulnerability_handles", `SELECT v.name AS k, v.provider_id, v.status, v.published_date, v.modified_date, v.withdrawn_date, b.value
			FROM %[1]s.vulnerability_handles v LEFT JOIN %[1]s.blobs b ON b.id = v.blob_id`, addVuln},
		{"vulnerability_aliases", `SELECT name AS k, alias FROM %[1]s.vulnerability_aliases UNION ALL SELECT alias AS k, name FROM %[1]s.vulnerability_aliases`, addVuln},
		{"package_cpes", `SELECT p.name AS k, p.ecosystem, c.part, c.vendor, c.product, c.edition, c.language, c.software_edition, c.target_hardware, c.target_software, c.other
			FROM %[1]s.package_cpes pc JOIN %[1]s.packages p ON p.id = pc.package_id JOIN %[1]s.cpes c ON c.id = pc.cpe_id
			UNION ALL SELECT c.product AS k, p.ecosystem, c.part, c.vendor, p.name, c.edition, c.language, c.software_edition, c.target_hardware, c.target_software, c.other
			FROM %[1]s.package_cpes pc JOIN %[1]s.packages p ON p.id = pc.package_id JOIN %[1]s.cpes c ON c.id = pc.cpe_id`, addName},
	}
	for _, t := range []string{"affected_package_handles", "unaffected_package_handles"} {
		if _, ok := so[t]; ok {
			handled[t] = true
			queries = append(queries, struct {
				table string
				q     string
				add   func(string)
			}{t, `SELECT COALESCE(os.major_version, '')||'|'||p.name AS k, p.ecosystem, v.name, v.provider_id, os.name, os.release_id, os.major_version, os.minor_version, os.label_version, os.channel, os.codename, b.value
				FROM %[1]s.` + t + ` h JOIN %[1]s.vulnerability_handles v ON v.id = h.vulnerability_id
				JOIN %[1]s.packages p ON p.id = h.package_id
				LEFT JOIN %[1]s.operating_systems os ON os.id = h.operating_system_id
				LEFT JOIN %[1]s.blobs b ON b.id = h.blob_id`, addPkg})
		}
	}
	for _, t := range []string{"affected_cpe_handles", "unaffected_cpe_handles"} {
		if _, ok := so[t]; ok {
			handled[t] = true
			queries = append(queries, struct {
				table string
				q     string
				add   func(string)
			}{t, `SELECT c.product AS k, c.part, c.vendor, c.edition, c.language, c.software_edition, c.target_hardware, c.target_software, c.other, v.name, v.provider_id, b.value
				FROM %[1]s.` + t + ` h JOIN %[1]s.vulnerability_handles v ON v.id = h.vulnerability_id
				JOIN %[1]s.cpes c ON c.id = h.cpe_id
				LEFT JOIN %[1]s.blobs b ON b.id = h.blob_id`, addName})
		}
	}
	for _, q := range queries {
		if _, ok := so[q.table]; !ok {
			continue
		}
		if err := symdiff(q.q, q.add); err != nil {
			return nil, fmt.Errorf("vulndb: diff %s: %w", q.table, err)
		}
	}

	// every other table must be identical, or the diff gives up and asks for a full rematch
	for t := range so {
		if handled[t] || diffIgnoredTables[t] || strings.HasPrefix(t, "sqlite_") {
			continue
		}
		var differs bool
		q := fmt.Sprintf(`SELECT EXISTS (SELECT * FROM main.%[1]q EXCEPT SELECT * FROM nw.%[1]q) OR EXISTS (SELECT * FROM nw.%[1]q EXCEPT SELECT * FROM main.%[1]q)`, t)
		if err := conn.QueryRowContext(ctx, q).Scan(&differs); err != nil {
			return nil, fmt.Errorf("vulndb: diff %s: %w", t, err)
		}
		if differs {
			d.full, d.reason = true, "table "+t+" changed"
			return d, nil
		}
	}
	return d, nil
}

func roURI(path string) string {
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?mode=ro&immutable=1"
}

func sameMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
