package vulndb

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"strings"
	"sync/atomic"

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
		h := rh.begin("v").u64(v.partial).u64(blobs.hash(v.blob)).sum()
		ix.vulns[v.key] += h
	}
	ids.vulnRows = nil

	// second pass: the handle tables, cut into ID ranges that two readers take in turn, each
	// into an index of its own, summed after
	jobs, err := handleJobs(ctx, db, ix.schema)
	if err != nil {
		return nil, fmt.Errorf("vulndb: index: %w", err)
	}
	parts := []*dbIndex{{names: map[uint64]uint64{}}, {names: map[uint64]uint64{}}}
	var next atomic.Int64
	g, gctx = errgroup.WithContext(ctx)
	for _, part := range parts {
		g.Go(func() error {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(jobs) {
					return nil
				}
				j := jobs[i]
				var err error
				switch j.kind {
				case jobPackageHandles:
					err = ids.packageHandles(gctx, db, j, &blobs, part.names)
				case jobCPEHandles:
					err = ids.cpeHandles(gctx, db, j, &blobs, part.names)
				default:
					err = ids.packageCPEs(gctx, db, part.names)
				}
				if err != nil {
					return err
				}
			}
		})
	}
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

const (
	jobPackageHandles = iota
	jobCPEHandles
	jobPackageCPEs
)

// handleJob is one ID range [lo, hi) of a handle table.
type handleJob struct {
	kind   int
	table  string
	lo, hi int64
}

// handleJobSize is the ID range of one job: small enough for two readers to finish together,
// large enough that starting a query is noise.
const handleJobSize = 1 << 17

func handleJobs(ctx context.Context, db *sql.DB, schema map[string]string) ([]handleJob, error) {
	var jobs []handleJob
	for _, t := range []struct {
		table string
		kind  int
	}{
		{"affected_package_handles", jobPackageHandles}, {"unaffected_package_handles", jobPackageHandles},
		{"affected_cpe_handles", jobCPEHandles}, {"unaffected_cpe_handles", jobCPEHandles},
	} {
		if _, ok := schema[t.table]; !ok {
			continue
		}
		var lo, hi int64
		if err := db.QueryRowContext(ctx, `SELECT ifnull(min(id), 0), ifnull(max(id), -1) FROM `+t.table).Scan(&lo, &hi); err != nil {
			return nil, fmt.Errorf("%s: %w", t.table, err)
		}
		for start := lo; start <= hi; start += handleJobSize {
			jobs = append(jobs, handleJob{kind: t.kind, table: t.table, lo: start, hi: min(start+handleJobSize, hi+1)})
		}
	}
	if _, ok := schema["package_cpes"]; ok {
		jobs = append(jobs, handleJob{kind: jobPackageCPEs, table: "package_cpes"})
	}
	return jobs, nil
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

// idMap maps a table's row IDs to values: a slice when the IDs are dense (grype's writer
// numbers rows from 1), a map otherwise. A missing ID reads as the zero value.
type idMap[T any] struct {
	dense  []T
	sparse map[int64]T
}

// newIDMap sizes an idMap for the table's ID range and row count.
func newIDMap[T any](ctx context.Context, db *sql.DB, table string) (idMap[T], error) {
	var maxID, n int64
	if err := db.QueryRowContext(ctx, `SELECT ifnull(max(id), 0), count(*) FROM `+table).Scan(&maxID, &n); err != nil {
		return idMap[T]{}, fmt.Errorf("%s: %w", table, err)
	}
	if maxID >= 0 && maxID <= 2*n+1024 {
		return idMap[T]{dense: make([]T, maxID+1)}, nil
	}
	return idMap[T]{sparse: make(map[int64]T, n)}, nil
}

func (m *idMap[T]) set(id int64, v T) {
	if id >= 0 && id < int64(len(m.dense)) {
		m.dense[id] = v
		return
	}
	if m.sparse == nil {
		m.sparse = map[int64]T{}
	}
	m.sparse[id] = v
}

func (m *idMap[T]) get(id int64) T {
	if id >= 0 && id < int64(len(m.dense)) {
		return m.dense[id]
	}
	return m.sparse[id]
}

// blobHashes maps blob row IDs to the hash of their contents.
type blobHashes struct{ idMap[uint64] }

func (b *blobHashes) read(ctx context.Context, db *sql.DB) error {
	var err error
	if b.idMap, err = newIDMap[uint64](ctx, db, "blobs"); err != nil {
		return err
	}
	rows, err := db.QueryContext(ctx, `SELECT id, value FROM blobs`)
	if err != nil {
		return fmt.Errorf("blobs: %w", err)
	}
	var id int64
	var v sql.RawBytes
	for rows.Next() {
		if err := rows.Scan(&id, &v); err != nil {
			rows.Close()
			return fmt.Errorf("blobs: %w", err)
		}
		b.set(id, xxhash.Sum64(v)|1) // never 0, which stands for a missing blob
	}
	return closeRows(rows, "blobs")
}

// hash returns the hash of a blob: 0 when no such blob exists, a constant for NULL.
func (b *blobHashes) hash(id sql.NullInt64) uint64 {
	if !id.Valid {
		return 2
	}
	return b.get(id.Int64)
}

// idTables holds what the handle tables reference by row ID, reduced to hashes and names.
type idTables struct {
	vulns    idMap[uint64] // vulnerability_handles.id → hash of (name, provider)
	vulnRows []vulnRow
	pkgs     idMap[pkgRef]
	cpes     idMap[cpeRef]
	oses     idMap[osRef]
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
	var err error
	if t.vulns, err = newIDMap[uint64](ctx, db, "vulnerability_handles"); err != nil {
		return err
	}
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
		t.vulns.set(id, rh.begin("vp").str(name).str(provider).sum())
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
	if t.pkgs, err = newIDMap[pkgRef](ctx, db, "packages"); err != nil {
		return err
	}
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
		t.pkgs.set(id, pkgRef{name: name, hash: rh.begin("p").bytes(eco).str(name).sum(), keys: hashForms(name)})
	}
	if err := closeRows(rows, "packages"); err != nil {
		return err
	}

	// CPEs
	if t.cpes, err = newIDMap[cpeRef](ctx, db, "cpes"); err != nil {
		return err
	}
	err = hashedRows(ctx, db, "cpes", "c", []string{"part", "vendor", "product", "edition", "language", "software_edition",
		"target_hardware", "target_software", "other"}, func(id int64, h uint64, f []sql.RawBytes) {
		product := string(f[2])
		t.cpes.set(id, cpeRef{product: product, hash: h, keys: hashForms(product)})
	})
	if err != nil {
		return err
	}

	// operating systems (also hashed whole below: any change there makes the diff full)
	if _, ok := ix.schema["operating_systems"]; ok {
		if t.oses, err = newIDMap[osRef](ctx, db, "operating_systems"); err != nil {
			return err
		}
		err = hashedRows(ctx, db, "operating_systems", "o", []string{"name", "release_id", "major_version", "minor_version",
			"label_version", "channel", "codename"}, func(id int64, h uint64, f []sql.RawBytes) {
			t.oses.set(id, osRef{major: string(f[2]), hash: h})
		})
		if err != nil {
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

// hashedRows reads id and cols of every row of table and calls fn with the row's ID, the hash
// of its columns (tagged) and the columns themselves, which are valid until fn returns.
func hashedRows(ctx context.Context, db *sql.DB, table, tag string, cols []string, fn func(id int64, h uint64, f []sql.RawBytes)) error {
	rows, err := db.QueryContext(ctx, "SELECT id, "+strings.Join(cols, ", ")+" FROM "+table)
	if err != nil {
		return fmt.Errorf("%s: %w", table, err)
	}
	var id int64
	f := make([]sql.RawBytes, len(cols))
	dest := []any{&id}
	for i := range f {
		dest = append(dest, &f[i])
	}
	rh := newRowHasher()
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			rows.Close()
			return fmt.Errorf("%s: %w", table, err)
		}
		r := rh.begin(tag)
		for _, b := range f {
			r.bytes(b)
		}
		fn(id, r.sum(), f)
	}
	return closeRows(rows, table)
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

func (t *idTables) packageHandles(ctx context.Context, db *sql.DB, j handleJob, blobs *blobHashes, names map[uint64]uint64) error {
	table := j.table
	rows, err := db.QueryContext(ctx, `SELECT vulnerability_id, operating_system_id, package_id, blob_id FROM `+table+` WHERE id >= ? AND id < ?`, j.lo, j.hi)
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
		p, os := t.pkgs.get(pid), osRef{}
		if osID.Valid {
			os = t.oses.get(osID.Int64)
		}
		h := rh.begin(table).u64(p.hash).u64(t.vulns.get(vid)).u64(boolU64(osID.Valid)).u64(os.hash).u64(blobs.hash(blob)).sum()
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

func (t *idTables) cpeHandles(ctx context.Context, db *sql.DB, j handleJob, blobs *blobHashes, names map[uint64]uint64) error {
	table := j.table
	rows, err := db.QueryContext(ctx, `SELECT vulnerability_id, cpe_id, blob_id FROM `+table+` WHERE id >= ? AND id < ?`, j.lo, j.hi)
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
		c := t.cpes.get(cid)
		h := rh.begin(table).u64(c.hash).u64(t.vulns.get(vid)).u64(blobs.hash(blob)).sum()
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
		p, c := t.pkgs.get(pid), t.cpes.get(cid)
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
	if !maps.Equal(a.schema, b.schema) {
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

// indexOf returns the handle's index, computing it once: concurrent callers wait for the
// indexing under way instead of starting their own, and a failed one is retried by the next.
func (h *handle) indexOf(ctx context.Context) (*dbIndex, error) {
	for {
		h.indexMu.Lock()
		if h.index != nil {
			h.indexMu.Unlock()
			return h.index, nil
		}
		if wait := h.indexing; wait != nil {
			h.indexMu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		done := make(chan struct{})
		h.indexing = done
		h.indexMu.Unlock()

		ix, err := indexDatabase(ctx, h.dbFile())
		h.indexMu.Lock()
		if err == nil {
			h.index = ix
		}
		h.indexing = nil
		close(done)
		h.indexMu.Unlock()
		return ix, err
	}
}
