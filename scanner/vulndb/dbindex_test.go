package vulndb

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/scanner/vulndb/dbtest"
)

// The index diff is checked against a reference that is slow but obviously right: a symmetric
// difference of the joined rows of both databases in SQL (what the diff was before the index).

func TestIndexDiffEqualsSQLDiff(t *testing.T) {
	fl := newFleet(t)
	// NVD-style records keyed by CPE, so the CPE tables are diffed too
	for i := range 40 {
		fl.Vulns = append(fl.Vulns, dbtest.Vuln{ID: fmt.Sprintf("CVE-2031-%04d", i), Ecosystem: dbtest.EcosystemCPE,
			Vendor: fmt.Sprintf("vendor%d", i%5), Package: fmt.Sprintf("product_%d", i%13), Constraint: "< 2.0", FixedVersion: "2.0", Severity: "High"})
	}
	dir := t.TempDir()
	built := time.Now().Add(-3 * time.Hour)
	a, err := dbtest.Build(filepath.Join(dir, "a"), built, fl.Vulns)
	if err != nil {
		t.Fatal(err)
	}
	updated, touched := dbtest.MutateFleet(fl.Vulns, 0.05, 3)
	// and a change only a row's blob shows: a CPE record's fix moves
	for i := range updated {
		if updated[i].ID == "CVE-2031-0007" {
			updated[i].Constraint, updated[i].FixedVersion = "< 2.5", "2.5"
			touched = append(touched, updated[i].Package)
		}
	}
	b, err := dbtest.Build(filepath.Join(dir, "b"), built.Add(time.Hour), updated)
	if err != nil {
		t.Fatal(err)
	}
	// the same records written again: row IDs may differ, contents do not
	a2, err := dbtest.Build(filepath.Join(dir, "a2"), built.Add(2*time.Hour), fl.Vulns)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ix := map[string]*dbIndex{}
	for n, p := range map[string]string{"a": a, "b": b, "a2": a2} {
		if ix[n], err = indexDatabase(ctx, p); err != nil {
			t.Fatalf("index %s: %v", n, err)
		}
	}

	for _, c := range []struct {
		name     string
		from, to string
		paths    [2]string
	}{
		{"same file", "a", "a", [2]string{a, a}},
		{"same records rebuilt", "a", "a2", [2]string{a, a2}},
		{"update", "a", "b", [2]string{a, b}},
		{"update reversed", "b", "a", [2]string{b, a}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := diffIndexes(ix[c.from], ix[c.to])
			want, err := sqlDiff(ctx, c.paths[0], c.paths[1])
			if err != nil {
				t.Fatal(err)
			}
			if got.full || want.full {
				t.Fatalf("full diff: index %q, SQL %q", got.reason, want.reason)
			}
			wantNames, wantVulns := hashSet(want.names), hashSet(want.vulns)
			if !reflect.DeepEqual(got.names, wantNames) {
				t.Errorf("names: index has %d, SQL has %d (%s)", len(got.names), len(wantNames), sortedNames(want.names))
			}
			if !reflect.DeepEqual(got.vulns, wantVulns) {
				t.Errorf("vulnerabilities: index has %d, SQL has %d", len(got.vulns), len(wantVulns))
			}
			if c.from == c.to || c.name == "same records rebuilt" {
				if len(got.names)+len(got.vulns) != 0 {
					t.Errorf("identical contents: %d names, %d vulnerabilities touched", len(got.names), len(got.vulns))
				}
				return
			}
			// the test proves something only if the update touched names
			if len(got.names) == 0 || len(got.vulns) == 0 {
				t.Fatalf("the update touched nothing: %d names, %d vulnerabilities", len(got.names), len(got.vulns))
			}
			for _, n := range touched {
				if !touchedInSome(got, n) {
					t.Errorf("package %q was changed by the update but is not in the diff", n)
				}
			}
		})
	}
}

// touchedInSome reports whether name is in the diff under any of its forms (plain or scoped to
// an operating-system release).
func touchedInSome(d *dbDiff, name string) bool {
	if d.names[nameHash(normName(name))] {
		return true
	}
	for _, major := range []string{"3", "7", "8", "9", "10", "11", "12", "13", "20", "22", "24"} {
		if d.names[nameHash(normName(osScoped(major, name)))] {
			return true
		}
	}
	return false
}

func TestIndexDiffFullOnSchemaOrModelChange(t *testing.T) {
	base := &dbIndex{schema: map[string]string{"t": "id INTEGER 0 1"}, model: "6.1.0", names: map[uint64]uint64{1: 1}, vulns: map[uint64]uint64{}, tables: map[string]uint64{"operating_systems": 5}}
	for _, c := range []struct {
		name   string
		mutate func(*dbIndex)
		reason string
	}{
		{"schema", func(ix *dbIndex) { ix.schema = map[string]string{"t": "id INTEGER 0 1,x TEXT 0 0"} }, "database schema changed"},
		{"model", func(ix *dbIndex) { ix.model = "6.2.0" }, "database model changed (6.1.0 to 6.2.0)"},
		{"other table", func(ix *dbIndex) { ix.tables = map[string]uint64{"operating_systems": 6} }, "table operating_systems changed"},
		{"names only", func(ix *dbIndex) { ix.names = map[uint64]uint64{1: 2, 3: 3} }, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			other := *base
			c.mutate(&other)
			d := diffIndexes(base, &other)
			if d.reason != c.reason || d.full != (c.reason != "") {
				t.Fatalf("diff = full %v %q, want %q", d.full, d.reason, c.reason)
			}
			if c.reason == "" && (len(d.names) != 2 || !d.names[1] || !d.names[3]) {
				t.Errorf("names touched = %v, want 1 (changed) and 3 (added)", d.names)
			}
		})
	}
}

func TestIndexRejectsNonGrypeDatabase(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.db")
	db, err := sql.Open("sqlite", "file:"+p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE things (id INTEGER PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	if _, err := indexDatabase(context.Background(), p); err == nil || !strings.Contains(err.Error(), "not a grype v6 database") {
		t.Fatalf("index of a foreign database: %v", err)
	}
}

func hashSet(m map[string]bool) map[uint64]bool {
	out := map[uint64]bool{}
	for k := range m {
		out[nameHash(k)] = true
	}
	return out
}

func sortedNames(m map[string]bool) string {
	var s []string
	for k := range m {
		s = append(s, k)
	}
	if len(s) > 20 {
		s = s[:20]
	}
	return strings.Join(s, ",")
}

// sqlDiffResult is the reference diff, in names (not hashes).
type sqlDiffResult struct {
	full   bool
	reason string
	names  map[string]bool
	vulns  map[string]bool
}

// tables whose rows cannot change any finding (exploit/EPSS/CWE enrichment, provenance) or
// that are only identities referenced by the handle tables diffed below.
var diffIgnoredTables = map[string]bool{
	"db_metadata": true, "providers": true, "blobs": true, "packages": true, "cpes": true,
	"known_exploited_vulnerability_handles": true, "epss_handles": true, "epss_metadata": true,
	"cwe_handles": true, "ssvc_handles": true,
}

// sqlDiff compares two grype v6 database files read-only with SQL and reports the
// package names and vulnerability IDs whose rows differ. Any difference it does not understand
// (schema, model revision, operating system or override tables) makes the diff full.
func sqlDiff(ctx context.Context, oldPath, newPath string) (*sqlDiffResult, error) {
	d := &sqlDiffResult{names: map[string]bool{}, vulns: map[string]bool{}}
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
	schema := func(path string) (map[string]string, error) {
		db, err := sql.Open("sqlite", roURI(path))
		if err != nil {
			return nil, err
		}
		defer db.Close()
		return readSchema(ctx, db)
	}
	so, err := schema(oldPath)
	if err != nil {
		return nil, fmt.Errorf("vulndb: diff: read schema: %w", err)
	}
	sn, err := schema(newPath)
	if err != nil {
		return nil, fmt.Errorf("vulndb: diff: read schema: %w", err)
	}
	if !maps.Equal(so, sn) {
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
		// each side in a subquery of its own: a compound q (UNION ALL) would otherwise bind
		// to the EXCEPT left to right
		sub := func(db string) string { return "SELECT * FROM (" + fmt.Sprintf(q, db) + ")" }
		stmt := fmt.Sprintf(`SELECT * FROM (%s EXCEPT %s) UNION ALL SELECT * FROM (%s EXCEPT %s)`,
			sub("main"), sub("nw"), sub("nw"), sub("main"))
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
