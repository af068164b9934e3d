package vulndb

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/sync/errgroup"
)

// Why an index instead of a SQL diff: comparing two 400 MB databases row by row (EXCEPT over
// joined rows) costs ~20 s in pure-Go SQLite, most of a rescan. Instead each database is read
// once, sequentially and without joins, into a small index: for every normalised package/CPE
// name and every vulnerability ID, an order-independent sum of the hashes of the rows that
// mention it (blob contents included, so what a row says is hashed, not its row ID, which
// changes between builds). Two databases then differ for a name exactly when its sums differ
// (up to a 2^-64 chance per name of a collision, which the periodic full rematch bounds). Each
// database is indexed once in its life, so an update costs one index of the new database, not
// a diff of both.

// dbIndex summarises one database for diffing.
type dbIndex struct {
	schema map[string]string // table → column list
	model  string            // model.revision.addition
	names  map[uint64]uint64 // hash of a normalised search name → sum of row hashes
	vulns  map[uint64]uint64 // hash of a lower-cased vulnerability ID → sum of row hashes
	tables map[string]uint64 // tables the index does not understand → sum of row hashes
}

// nameHash is how names and vulnerability IDs are keyed in indexes, diffs and cache entries.
func nameHash(s string) uint64 { return xxhash.Sum64String(s) }

// rowHasher builds one row's hash from its fields; fields are length-prefixed so that no two
// different rows share an encoding.
type rowHasher struct {
	d   *xxhash.Digest
	buf [8]byte
}

func newRowHasher() *rowHasher { return &rowHasher{d: xxhash.New()} }

func (r *rowHasher) begin(tag string) *rowHasher {
	r.d.Reset()
	r.str(tag)
	return r
}

func (r *rowHasher) bytes(b []byte) *rowHasher {
	if b == nil {
		r.u64(math.MaxUint64) // NULL
		return r
	}
	r.u64(uint64(len(b)))
	_, _ = r.d.Write(b)
	return r
}

func (r *rowHasher) str(s string) *rowHasher {
	r.u64(uint64(len(s)))
	_, _ = r.d.WriteString(s)
	return r
}

func (r *rowHasher) u64(v uint64) *rowHasher {
	binary.LittleEndian.PutUint64(r.buf[:], v)
	_, _ = r.d.Write(r.buf[:])
	return r
}

func (r *rowHasher) sum() uint64 { return r.d.Sum64() }

// tables the index reads with their meaning; the others are hashed whole unless they cannot
// change a finding (exploit/EPSS/CWE enrichment, provenance) or are only identities referenced
// by the handle tables.
var indexedTables = map[string]bool{
	"vulnerability_handles": true, "vulnerability_aliases": true, "package_cpes": true,
	"affected_package_handles": true, "unaffected_package_handles": true,
	"affected_cpe_handles": true, "unaffected_cpe_handles": true,
}

var indexIgnoredTables = map[string]bool{
	"db_metadata": true, "providers": true, "blobs": true, "packages": true, "cpes": true,
	"known_exploited_vulnerability_handles": true, "epss_handles": true, "epss_metadata": true,
	"cwe_handles": true, "ssvc_handles": true,
}

// indexDatabase reads a grype v6 database file once and returns its index.
func indexDatabase(ctx context.Context, path string) (*dbIndex, error) {
	db, err := sql.Open("sqlite", roURI(path))
	if err != nil {
		return nil, fmt.Errorf("vulndb: index: open database: %w", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(2)

	ix := &dbIndex{names: map[uint64]uint64{}, vulns: map[uint64]uint64{}, tables: map[string]uint64{}}
	if ix.schema, err = readSchema(ctx, db); err != nil {
		return nil, fmt.Errorf("vulndb: index: read schema: %w", err)
	}
	for _, t := range []string{"db_metadata", "blobs", "packages", "cpes", "vulnerability_handles"} {
		if _, ok := ix.schema[t]; !ok {
			return nil, fmt.Errorf("vulndb: index: not a grype v6 database: no table %s", t)
		}
	}
	if err := db.QueryRowContext(ctx, `SELECT model||'.'||revision||'.'||addition FROM db_metadata`).Scan(&ix.model); err != nil {
		return nil, fmt.Errorf("vulndb: index: read model: %w", err)
	}

	// first pass, two readers: blob contents on one; identities, vulnerabilities and
	// the tables hashed whole on the other
	var (
		blobs blobHashes
		ids   idTables
	)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return blobs.read(gctx, db) })
	g.Go(func() error { return ids.read(gctx, db, ix) })
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("vulndb: index: %w", err)
	}
	// vulnerability rows, now that blob contents are known
	rh := newRowHasher()
	for _, v := range ids.vulnRows {
		h := rh.begin("v").u64(v.partial).u64(blobs.get(v.blob)).sum()
		ix.vulns[v.key] += h
	}
	ids.vulnRows = nil

	// second pass, two readers: the handle tables, each into an index of its own, summed
	parts := []*dbIndex{{names: map[uint64]uint64{}}, {names: map[uint64]uint64{}}}
	g, gctx = errgroup.WithContext(ctx)
	g.Go(func() error {
		if _, ok := ix.schema["affected_package_handles"]; ok {
			return ids.packageHandles(gctx, db, "affected_package_handles", &blobs, parts[0].names)
		}
		return nil
	})
	g.Go(func() error {
		if _, ok := ix.schema["unaffected_package_handles"]; ok {
			if err := ids.packageHandles(gctx, db, "unaffected_package_handles", &blobs, parts[1].names); err != nil {
				return err
			}
		}
		for _, t := range []string{"affected_cpe_handles", "unaffected_cpe_handles"} {
			if _, ok := ix.schema[t]; ok {
				if err := ids.cpeHandles(gctx, db, t, &blobs, parts[1].names); err != nil {
					return err
				}
			}
		}
		if _, ok := ix.schema["package_cpes"]; ok {
			return ids.packageCPEs(gctx, db, parts[1].names)
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("vulndb: index: %w", err)
	}
	for _, p := range parts {
		for k, v := range p.names {
			ix.names[k] += v
		}
	}
	return ix, nil
}

func readSchema(ctx context.Context, db *sql.DB) (map[string]string, error) {
	// column lists, not the CREATE text: grype's writer emits constraints in map order
	rows, err := db.QueryContext(ctx, `SELECT m.name, group_concat(p.name||' '||p.type||' '||p."notnull"||' '||p.pk, ',')
		FROM sqlite_master m, pragma_table_info(m.name) p WHERE m.type = 'table' GROUP BY m.name`)
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

// blobHashes maps blob row IDs to the hash of their contents.
type blobHashes struct {
	dense  []uint64
	sparse map[int64]uint64
}

func (b *blobHashes) read(ctx context.Context, db *sql.DB) error {
	var maxID, n int64
	if err := db.QueryRowContext(ctx, `SELECT ifnull(max(id), 0), count(*) FROM blobs`).Scan(&maxID, &n); err != nil {
		return fmt.Errorf("blobs: %w", err)
	}
	if maxID >= 0 && maxID <= 2*n+1024 {
		b.dense = make([]uint64, maxID+1)
	} else {
		b.sparse = make(map[int64]uint64, n)
	}
	rows, err := db.QueryContext(ctx, `SELECT id, value FROM blobs`)
	if err != nil {
		return fmt.Errorf("blobs: %w", err)
	}
	defer rows.Close()
	var id int64
	var v sql.RawBytes
	for rows.Next() {
		if err := rows.Scan(&id, &v); err != nil {
			return fmt.Errorf("blobs: %w", err)
		}
		h := xxhash.Sum64(v)
		if b.dense != nil && id >= 0 && id < int64(len(b.dense)) {
			b.dense[id] = h
			continue
		}
		if b.sparse == nil {
			b.sparse = map[int64]uint64{}
		}
		b.sparse[id] = h
	}
	return rows.Err()
}

// get returns the hash of a blob; a missing or NULL blob hashes to a constant.
func (b *blobHashes) get(id sql.NullInt64) uint64 {
	if !id.Valid {
		return 1
	}
	if id.Int64 >= 0 && id.Int64 < int64(len(b.dense)) && b.dense[id.Int64] != 0 {
		return b.dense[id.Int64]
	}
	if h, ok := b.sparse[id.Int64]; ok {
		return h
	}
	return 2
}

// idTables holds what the handle tables reference by row ID, reduced to hashes and names.
type idTables struct {
	vulns    map[int64]uint64 // vulnerability_handles.id → hash of (name, provider)
	vulnRows []vulnRow
	pkgs     map[int64]pkgRef
	cpes     map[int64]cpeRef
	oses     map[int64]osRef
}

type vulnRow struct {
	key     uint64 // nameHash(lower(name))
	partial uint64 // hash of the row's own columns
	blob    sql.NullInt64
}

type pkgRef struct {
	name string
	hash uint64   // hash of (ecosystem, name)
	keys []uint64 // nameHash of dbNameForms(name)
}

type cpeRef struct {
	product string
	hash    uint64   // hash of every column
	keys    []uint64 // nameHash of dbNameForms(product)
}

type osRef struct {
	major string
	hash  uint64 // hash of the columns the diff used to compare
}

func (t *idTables) read(ctx context.Context, db *sql.DB, ix *dbIndex) error {
	rh := newRowHasher()
	// vulnerability records
	t.vulns = map[int64]uint64{}
	rows, err := db.QueryContext(ctx, `SELECT id, name, provider_id, status, CAST(published_date AS TEXT), CAST(modified_date AS TEXT),
		CAST(withdrawn_date AS TEXT), blob_id FROM vulnerability_handles`)
	if err != nil {
		return fmt.Errorf("vulnerability_handles: %w", err)
	}
	var (
		id                          int64
		name, provider              string
		status, pub, mod, withdrawn sql.RawBytes
		blob                        sql.NullInt64
	)
	for rows.Next() {
		if err := rows.Scan(&id, &name, &provider, &status, &pub, &mod, &withdrawn, &blob); err != nil {
			rows.Close()
			return fmt.Errorf("vulnerability_handles: %w", err)
		}
		t.vulns[id] = rh.begin("vp").str(name).str(provider).sum()
		t.vulnRows = append(t.vulnRows, vulnRow{
			key:     nameHash(strings.ToLower(name)),
			partial: rh.begin("vr").str(name).str(provider).bytes(status).bytes(pub).bytes(mod).bytes(withdrawn).sum(),
			blob:    blob,
		})
	}
	if err := closeRows(rows, "vulnerability_handles"); err != nil {
		return err
	}

	if _, ok := ix.schema["vulnerability_aliases"]; ok {
		rows, err := db.QueryContext(ctx, `SELECT name, alias FROM vulnerability_aliases`)
		if err != nil {
			return fmt.Errorf("vulnerability_aliases: %w", err)
		}
		var alias string
		for rows.Next() {
			if err := rows.Scan(&name, &alias); err != nil {
				rows.Close()
				return fmt.Errorf("vulnerability_aliases: %w", err)
			}
			ix.vulns[nameHash(strings.ToLower(name))] += rh.begin("a").str(name).str(alias).sum()
			ix.vulns[nameHash(strings.ToLower(alias))] += rh.begin("A").str(alias).str(name).sum()
		}
		if err := closeRows(rows, "vulnerability_aliases"); err != nil {
			return err
		}
	}

	// packages
	t.pkgs = map[int64]pkgRef{}
	rows, err = db.QueryContext(ctx, `SELECT id, ecosystem, name FROM packages`)
	if err != nil {
		return fmt.Errorf("packages: %w", err)
	}
	var eco sql.RawBytes
	for rows.Next() {
		if err := rows.Scan(&id, &eco, &name); err != nil {
			rows.Close()
			return fmt.Errorf("packages: %w", err)
		}
		t.pkgs[id] = pkgRef{name: name, hash: rh.begin("p").bytes(eco).str(name).sum(), keys: hashForms(name)}
	}
	if err := closeRows(rows, "packages"); err != nil {
		return err
	}

	// CPEs
	t.cpes = map[int64]cpeRef{}
	rows, err = db.QueryContext(ctx, `SELECT id, part, vendor, product, edition, language, software_edition, target_hardware, target_software, other FROM cpes`)
	if err != nil {
		return fmt.Errorf("cpes: %w", err)
	}
	f := make([]sql.RawBytes, 9)
	dest := []any{&id}
	for i := range f {
		dest = append(dest, &f[i])
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			rows.Close()
			return fmt.Errorf("cpes: %w", err)
		}
		r := rh.begin("c")
		for _, b := range f {
			r.bytes(b)
		}
		product := string(f[2])
		t.cpes[id] = cpeRef{product: product, hash: r.sum(), keys: hashForms(product)}
	}
	if err := closeRows(rows, "cpes"); err != nil {
		return err
	}

	// operating systems (also hashed whole below: any change there makes the diff full)
	t.oses = map[int64]osRef{}
	if _, ok := ix.schema["operating_systems"]; ok {
		rows, err = db.QueryContext(ctx, `SELECT id, name, release_id, major_version, minor_version, label_version, channel, codename FROM operating_systems`)
		if err != nil {
			return fmt.Errorf("operating_systems: %w", err)
		}
		f := make([]sql.RawBytes, 7)
		dest := []any{&id}
		for i := range f {
			dest = append(dest, &f[i])
		}
		for rows.Next() {
			if err := rows.Scan(dest...); err != nil {
				rows.Close()
				return fmt.Errorf("operating_systems: %w", err)
			}
			r := rh.begin("o")
			for _, b := range f {
				r.bytes(b)
			}
			t.oses[id] = osRef{major: string(f[2]), hash: r.sum()}
		}
		if err := closeRows(rows, "operating_systems"); err != nil {
			return err
		}
	}

	// every other table, hashed whole
	for tbl := range ix.schema {
		if indexedTables[tbl] || indexIgnoredTables[tbl] || strings.HasPrefix(tbl, "sqlite_") {
			continue
		}
		h, err := tableHash(ctx, db, tbl)
		if err != nil {
			return err
		}
		ix.tables[tbl] = h
	}
	return nil
}

func closeRows(rows *sql.Rows, table string) error {
	err := rows.Err()
	if cerr := rows.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", table, err)
	}
	return nil
}

// tableHash is the order-independent sum of the hashes of every row of a table.
func tableHash(ctx context.Context, db *sql.DB, table string) (uint64, error) {
	rows, err := db.QueryContext(ctx, fmt.Sprintf(`SELECT * FROM %q`, table))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", table, err)
	}
	cols, err := rows.Columns()
	if err != nil {
		rows.Close()
		return 0, fmt.Errorf("%s: %w", table, err)
	}
	vals := make([]any, len(cols))
	dest := make([]any, len(cols))
	for i := range vals {
		dest[i] = &vals[i]
	}
	rh := newRowHasher()
	var sum uint64
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			rows.Close()
			return 0, fmt.Errorf("%s: %w", table, err)
		}
		r := rh.begin(table)
		for _, v := range vals {
			if v == nil {
				r.bytes(nil)
				continue
			}
			r.str(fmt.Sprintf("%T:%v", v, v))
		}
		sum += r.sum()
	}
	return sum, closeRows(rows, table)
}

func (t *idTables) packageHandles(ctx context.Context, db *sql.DB, table string, blobs *blobHashes, names map[uint64]uint64) error {
	rows, err := db.QueryContext(ctx, `SELECT vulnerability_id, operating_system_id, package_id, blob_id FROM `+table)
	if err != nil {
		return fmt.Errorf("%s: %w", table, err)
	}
	rh := newRowHasher()
	var (
		vid, pid int64
		osID     sql.NullInt64
		blob     sql.NullInt64
	)
	osKeys := map[[2]int64]uint64{}
	for rows.Next() {
		if err := rows.Scan(&vid, &osID, &pid, &blob); err != nil {
			rows.Close()
			return fmt.Errorf("%s: %w", table, err)
		}
		p, os := t.pkgs[pid], osRef{}
		if osID.Valid {
			os = t.oses[osID.Int64]
		}
		h := rh.begin(table).u64(p.hash).u64(t.vulns[vid]).u64(boolU64(osID.Valid)).u64(os.hash).u64(blobs.get(blob)).sum()
		if os.major == "" {
			// not a distro row: keyed by the package name
			for _, k := range p.keys {
				names[k] += h
			}
			continue
		}
		ck := [2]int64{osID.Int64, pid}
		k, ok := osKeys[ck]
		if !ok {
			k = nameHash(normName(osScoped(os.major, p.name)))
			osKeys[ck] = k
		}
		names[k] += h
	}
	return closeRows(rows, table)
}

func (t *idTables) cpeHandles(ctx context.Context, db *sql.DB, table string, blobs *blobHashes, names map[uint64]uint64) error {
	rows, err := db.QueryContext(ctx, `SELECT vulnerability_id, cpe_id, blob_id FROM `+table)
	if err != nil {
		return fmt.Errorf("%s: %w", table, err)
	}
	rh := newRowHasher()
	var (
		vid, cid int64
		blob     sql.NullInt64
	)
	for rows.Next() {
		if err := rows.Scan(&vid, &cid, &blob); err != nil {
			rows.Close()
			return fmt.Errorf("%s: %w", table, err)
		}
		c := t.cpes[cid]
		h := rh.begin(table).u64(c.hash).u64(t.vulns[vid]).u64(blobs.get(blob)).sum()
		for _, k := range c.keys {
			names[k] += h
		}
	}
	return closeRows(rows, table)
}

// packageCPEs keys each package↔CPE link by both the package name and the CPE product.
func (t *idTables) packageCPEs(ctx context.Context, db *sql.DB, names map[uint64]uint64) error {
	rows, err := db.QueryContext(ctx, `SELECT package_id, cpe_id FROM package_cpes`)
	if err != nil {
		return fmt.Errorf("package_cpes: %w", err)
	}
	rh := newRowHasher()
	var pid, cid int64
	for rows.Next() {
		if err := rows.Scan(&pid, &cid); err != nil {
			rows.Close()
			return fmt.Errorf("package_cpes: %w", err)
		}
		p, c := t.pkgs[pid], t.cpes[cid]
		h := rh.begin("pc").u64(p.hash).u64(c.hash).sum()
		for _, k := range p.keys {
			names[k] += h
		}
		for _, k := range c.keys {
			names[k] += h
		}
	}
	return closeRows(rows, "package_cpes")
}

func boolU64(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// hashForms hashes the forms searchNames can produce for a database name (see dbNames).
func hashForms(name string) []uint64 {
	set := map[string]bool{}
	dbNames(set, name)
	out := make([]uint64, 0, len(set))
	for n := range set {
		out = append(out, nameHash(n))
	}
	return out
}

// diffIndexes reports what changed from database a to database b.
func diffIndexes(a, b *dbIndex) *dbDiff {
	d := &dbDiff{names: map[uint64]bool{}, vulns: map[uint64]bool{}}
	if !sameMap(a.schema, b.schema) {
		d.full, d.reason = true, "database schema changed"
		return d
	}
	if a.model != b.model {
		d.full, d.reason = true, fmt.Sprintf("database model changed (%s to %s)", a.model, b.model)
		return d
	}
	for t, h := range a.tables {
		if b.tables[t] != h {
			d.full, d.reason = true, "table "+t+" changed"
			return d
		}
	}
	symdiffSums(a.names, b.names, d.names)
	symdiffSums(a.vulns, b.vulns, d.vulns)
	return d
}

func symdiffSums(a, b map[uint64]uint64, out map[uint64]bool) {
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			out[k] = true
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out[k] = true
		}
	}
}

// indexOf returns the handle's index, computing it once.
func (h *handle) indexOf(ctx context.Context) (*dbIndex, error) {
	h.indexMu.Lock()
	defer h.indexMu.Unlock()
	if h.index != nil {
		return h.index, nil
	}
	ix, err := indexDatabase(ctx, h.dbFile())
	if err != nil {
		return nil, err
	}
	h.index = ix
	return ix, nil
}
