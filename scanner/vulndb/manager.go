// Package vulndb manages the Grype vulnerability database for imagetrust and matches SBOMs
// against it.
//
// A Manager loads the database once and shares it between any number of concurrent Match calls;
// installing a new database (Import, ImportOCI, Update) swaps it in atomically without blocking
// matches in flight. Installation goes through grype's own curator, so the on-disk result is
// exactly what `grype db import` produces and grype's checksum validation applies.
//
// On-disk layout under Config.Dir: every installed database lives in its own generation
// directory "gen-…", itself a grype DB root (gen-…/6/vulnerability.db + import.json), and the
// file "current" names the active generation. A new database therefore never replaces the file
// an open reader uses: grype opens SQLite read-only with immutable=1 and a shared cache keyed by
// path, so swapping the file in place under a live reader would serve stale or corrupt pages.
// A plain grype cache directory (Dir/6/vulnerability.db, e.g. from `grype db update` with
// GRYPE_DB_CACHE_DIR=Dir) is loaded as a fallback when no generation is recorded. One Manager
// owns a Dir; several processes must not share one.
package vulndb

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/anchore/grype/grype"
	v6 "github.com/anchore/grype/grype/db/v6"
	"github.com/anchore/grype/grype/db/v6/distribution"
	"github.com/anchore/grype/grype/db/v6/installation"
	"github.com/anchore/grype/grype/vulnerability"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/afero"

	"github.com/imagetrust/imagetrust/scanner/internal/redact"
)

const (
	// DefaultMaxSBOMBytes bounds SBOM documents passed to Match when Config.MaxSBOMBytes is 0.
	DefaultMaxSBOMBytes int64 = 256 << 20
	// DefaultMaxArchiveBytes bounds database archives fetched by ImportOCI when
	// Config.MaxArchiveBytes is 0 (the public grype database archive is a few hundred MiB).
	DefaultMaxArchiveBytes int64 = 4 << 30

	currentFileName = "current"
	genPrefix       = "gen-"
	sourceFileName  = "imagetrust-source.json"
	// ociDownloadPrefix names archives fetched by ImportOCI while they are imported.
	ociDownloadPrefix = "oci-download-"
)

// Config configures a Manager.
type Config struct {
	// Dir is the root directory holding installed databases; created if missing.
	Dir string
	// ListingURL is grype's update listing (latest.json, or a base URL under which
	// v6/latest.json lives). Empty selects grype's public default.
	ListingURL string
	// CACertFile optionally names a PEM bundle trusted for ListingURL and archive downloads.
	CACertFile string
	// MaxAge is the oldest build age Match accepts; 0 disables the check.
	MaxAge time.Duration
	// ValidateChecksum re-hashes the installed database file on Load/Import and refuses it when
	// it differs from the digest recorded at import (grype's import.json).
	ValidateChecksum bool
	// MaxSBOMBytes bounds SBOM documents passed to Match; 0 selects DefaultMaxSBOMBytes.
	MaxSBOMBytes int64
	// MaxArchiveBytes bounds archives fetched by ImportOCI; 0 selects DefaultMaxArchiveBytes.
	MaxArchiveBytes int64
	// OCINameOptions returns how ImportOCI parses a reference, e.g. the registry client's
	// NameOptions so a plain-HTTP registry listed as insecure is reached over HTTP; nil parses
	// references with go-containerregistry's defaults.
	OCINameOptions func(ref string) []name.Option
	// CheckTimeout and UpdateTimeout bound the listing check and the archive download of Update;
	// 0 selects grype's defaults (30 s and 300 s).
	CheckTimeout, UpdateTimeout time.Duration
	// MatchWorkers is the number of goroutines, each with its own database connection, that
	// MatchMany and the Rematch methods match with; 0 selects GOMAXPROCS.
	MatchWorkers int
}

// SupportedSchemaVersion is the Grype DB schema this build reads and writes, e.g. "v6.1.10":
// archives of another model version are refused at import.
func SupportedSchemaVersion() string {
	return fmt.Sprintf("v%d.%d.%d", v6.ModelVersion, v6.Revision, v6.Addition)
}

// Status describes the loaded database.
type Status struct {
	// SchemaVersion is grype's schema version of the database, e.g. "v6.1.10".
	SchemaVersion string
	// Built is when the database was built (UTC).
	Built time.Time
	// Checksum is grype's digest of the installed database file ("xxh64:…").
	Checksum string
	// ArchiveDigest is the sha256 digest of the archive it was installed from, when known.
	ArchiveDigest string
	// Source says where the database came from (file path, OCI reference or sanitised URL).
	Source string
	// Age is the time since Built, at the moment Status was computed.
	Age time.Duration
	// Stale reports Age > Config.MaxAge (never true when MaxAge is 0).
	Stale bool
	// Err is the sanitised error of the last failed Load, Import, ImportOCI or Update; cleared by
	// the next successful one. A failed install leaves the previous database active.
	Err string
}

// Loaded reports whether a database is active.
func (s Status) Loaded() bool { return !s.Built.IsZero() }

// handle is one opened database generation shared by concurrent matches.
type handle struct {
	root     string // grype DB root (contains 6/vulnerability.db)
	managed  bool   // a gen-… directory owned by the Manager (removed when replaced)
	provider vulnerability.Provider
	desc     *v6.Description
	status   Status // static part: schema, built, checksum, source, archive digest
	inflight sync.WaitGroup

	workerMu   sync.Mutex
	workerDir  string                   // hard links of the database file, one per extra worker
	workerProv []vulnerability.Provider // extra providers opened on workerDir

	indexMu      sync.Mutex
	index        *dbIndex      // what the next database is diffed against (see dbindex.go)
	indexing     chan struct{} // closed when the indexing under way ends; nil when none is
	indexStarted bool          // indexSoon has started an indexing
}

// dbFile is the path of the handle's vulnerability.db.
func (h *handle) dbFile() string { return installation.Config{DBRootDir: h.root}.DBFilePath() }

// release waits for matches using h to finish, then closes its database.
func (h *handle) release() {
	h.inflight.Wait()
	_ = h.provider.Close()
	h.closeWorkers()
}

// Manager owns the vulnerability database. It is safe for concurrent use.
type Manager struct {
	cfg     Config
	distCfg distribution.Config
	client  distribution.Client

	installMu sync.Mutex // serialises Load, Import*, Update and Close

	mu      sync.RWMutex // guards cur and lastErr
	cur     *handle
	lastErr string

	subMu   sync.Mutex
	subs    map[uint64]chan Status
	nextSub uint64

	fleetMu sync.Mutex // guards fl
	fl      *fleet

	bgCtx    context.Context // background work (database indexing); cancelled by Close
	bgCancel context.CancelFunc
}

// New validates cfg and returns a Manager with no database loaded; call Load, Import, ImportOCI
// or Update next.
func New(cfg Config) (*Manager, error) {
	if cfg.Dir == "" {
		return nil, errors.New("vulndb: Config.Dir is required")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("vulndb: resolve Dir: %w", err)
	}
	cfg.Dir = dir
	if cfg.MaxAge < 0 || cfg.MaxSBOMBytes < 0 || cfg.MaxArchiveBytes < 0 {
		return nil, errors.New("vulndb: MaxAge, MaxSBOMBytes and MaxArchiveBytes must not be negative")
	}
	if cfg.MaxSBOMBytes == 0 {
		cfg.MaxSBOMBytes = DefaultMaxSBOMBytes
	}
	if cfg.MaxArchiveBytes == 0 {
		cfg.MaxArchiveBytes = DefaultMaxArchiveBytes
	}
	if cfg.ListingURL != "" {
		u, err := url.Parse(cfg.ListingURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("vulndb: ListingURL %q must be an http(s) URL", redact.URL(cfg.ListingURL))
		}
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("vulndb: create Dir: %w", err)
	}

	dc := distribution.DefaultConfig()
	dc.ID.Name = "imagetrust"
	dc.ID.Version = "vulndb"
	if cfg.ListingURL != "" {
		dc.LatestURL = cfg.ListingURL
	}
	dc.CACert = cfg.CACertFile
	// surface listing failures as errors instead of grype's log-and-continue
	dc.RequireUpdateCheck = true
	if cfg.CheckTimeout > 0 {
		dc.CheckTimeout = cfg.CheckTimeout
	}
	if cfg.UpdateTimeout > 0 {
		dc.UpdateTimeout = cfg.UpdateTimeout
	}
	client, err := distribution.NewClient(dc)
	if err != nil {
		return nil, fmt.Errorf("vulndb: create distribution client: %w", err)
	}
	bg, cancel := context.WithCancel(context.Background())
	return &Manager{cfg: cfg, distCfg: dc, client: client, subs: map[uint64]chan Status{}, bgCtx: bg, bgCancel: cancel}, nil
}

// Load opens the installed database (the active generation, or a plain grype cache directory
// in Dir) and makes it the one Match uses. Loading the already active database is a no-op.
// It returns an error wrapping ErrNoDB when nothing is installed and ErrInvalidDB when the
// database fails validation; a previously loaded database then stays active.
func (m *Manager) Load(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.installMu.Lock()
	defer m.installMu.Unlock()

	root, managed, err := m.installedRoot()
	if err != nil {
		return m.fail(err)
	}
	if cur := m.current(); cur != nil && cur.root == root {
		m.clearErr()
		return nil
	}
	h, err := m.open(root, managed)
	if err != nil {
		return m.fail(err)
	}
	m.activate(h)
	return nil
}

// installedRoot finds the grype DB root to load.
func (m *Manager) installedRoot() (root string, managed bool, err error) {
	b, err := os.ReadFile(filepath.Join(m.cfg.Dir, currentFileName))
	switch {
	case err == nil:
		gen := strings.TrimSpace(string(b))
		if !strings.HasPrefix(gen, genPrefix) || strings.ContainsAny(gen, `/\`) {
			return "", false, errorf(ErrInvalidDB, "%s names %q, not a database generation", currentFileName, gen)
		}
		return filepath.Join(m.cfg.Dir, gen), true, nil
	case !errors.Is(err, os.ErrNotExist):
		return "", false, fmt.Errorf("vulndb: read %s: %w", currentFileName, err)
	}
	legacy := installation.Config{DBRootDir: m.cfg.Dir}
	if _, err := os.Stat(legacy.DBFilePath()); err == nil {
		return m.cfg.Dir, false, nil
	}
	return "", false, fmt.Errorf("%w in %s", ErrNoDB, m.cfg.Dir)
}

// open loads the database under root the way the grype CLI does (LoadVulnerabilityDB without
// update), with age validation left to Match so a stale database can still be reported.
func (m *Manager) open(root string, managed bool) (*handle, error) {
	ic := installation.Config{DBRootDir: root, ValidateChecksum: m.cfg.ValidateChecksum}
	vp, st, err := grype.LoadVulnerabilityDB(m.distCfg, ic, false)
	if err != nil {
		if errors.Is(err, v6.ErrDBDoesNotExist) {
			return nil, fmt.Errorf("%w in %s", ErrNoDB, root)
		}
		return nil, sanitized(ErrInvalidDB, "installed database failed validation (re-import it)", err)
	}
	fail := func(context string, err error) (*handle, error) {
		_ = vp.Close()
		return nil, sanitized(ErrInvalidDB, context, err)
	}
	im, err := v6.ReadImportMetadata(afero.NewOsFs(), ic.DBDirectoryPath())
	if err != nil {
		return fail("read import metadata", err)
	}
	desc, err := v6.ReadDescription(ic.DBFilePath())
	if err != nil {
		return fail("read description", err)
	}
	src := readSource(root)
	if src.Source == "" {
		src.Source = st.From
	}
	return &handle{
		root:     root,
		managed:  managed,
		provider: vp,
		desc:     desc,
		status: Status{
			SchemaVersion: st.SchemaVersion,
			Built:         st.Built.UTC(),
			Checksum:      im.Digest,
			ArchiveDigest: src.ArchiveDigest,
			Source:        src.Source,
		},
	}, nil
}

// sourceRecord is the sidecar the Manager keeps next to each generation.
type sourceRecord struct {
	Source        string `json:"source,omitempty"`
	ArchiveDigest string `json:"archiveDigest,omitempty"`
}

func readSource(root string) sourceRecord {
	var s sourceRecord
	b, err := os.ReadFile(filepath.Join(root, sourceFileName))
	if err == nil {
		_ = json.Unmarshal(b, &s)
	}
	return s
}

func writeSource(root string, s sourceRecord) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(root, sourceFileName), b, 0o600)
}

// current returns the active handle (nil when none).
func (m *Manager) current() *handle {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.cur
}

// acquire returns the active handle with a match registered on it; call h.inflight.Done.
func (m *Manager) acquire() *handle {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.cur != nil {
		// Add happens under the read lock, so it is ordered before activate's swap and the
		// old handle's Wait cannot miss it.
		m.cur.inflight.Add(1)
	}
	return m.cur
}

// acquireFresh is acquire for matching: it fails with ErrNoDB when no database is active and
// with ErrStale when the active one is older than Config.MaxAge. On success the caller calls
// h.inflight.Done.
func (m *Manager) acquireFresh() (*handle, Status, error) {
	h := m.acquire()
	if h == nil {
		return nil, Status{}, fmt.Errorf("%w: load or import one before matching", ErrNoDB)
	}
	st := m.statusOf(h)
	if st.Stale {
		h.inflight.Done()
		return nil, Status{}, fmt.Errorf("%w: built %s (%s ago), max age %s", ErrStale,
			st.Built.Format(time.RFC3339), st.Age.Round(time.Second), m.cfg.MaxAge)
	}
	return h, st, nil
}

// activate swaps h in, notifies subscribers, then retires the previous database once its
// in-flight matches are done. Callers hold installMu.
func (m *Manager) activate(h *handle) {
	m.mu.Lock()
	old := m.cur
	m.cur = h
	m.lastErr = ""
	m.mu.Unlock()

	m.notify(m.Status())

	if old != nil {
		old.release()
		if old.managed && old.root != h.root {
			_ = os.RemoveAll(old.root)
		}
	}
	m.pruneGenerations(h.root)
}

// pruneGenerations removes generation directories other than keep and OCI downloads, left by
// replaced databases or interrupted imports. Callers hold installMu, so nothing else is using
// them.
func (m *Manager) pruneGenerations(keep string) {
	entries, err := os.ReadDir(m.cfg.Dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		p := filepath.Join(m.cfg.Dir, e.Name())
		if (strings.HasPrefix(e.Name(), genPrefix) || strings.HasPrefix(e.Name(), ociDownloadPrefix)) && p != keep {
			_ = os.RemoveAll(p)
		}
	}
}

// fail records err for Status and returns it.
func (m *Manager) fail(err error) error {
	m.mu.Lock()
	m.lastErr = redact.Text(err.Error())
	m.mu.Unlock()
	return err
}

// Status reports the active database, its age and the last error.
func (m *Manager) Status() Status {
	m.mu.RLock()
	h, lastErr := m.cur, m.lastErr
	m.mu.RUnlock()
	var s Status
	if h != nil {
		s = m.statusOf(h)
	}
	s.Err = lastErr
	return s
}

func (m *Manager) statusOf(h *handle) Status {
	s := h.status
	s.Age = time.Since(s.Built)
	s.Stale = m.cfg.MaxAge > 0 && s.Age > m.cfg.MaxAge
	return s
}

// Subscribe returns a channel that receives the new Status whenever the active database
// changes. Sends never block the Manager: a subscriber that has not read the previous value
// gets only the latest one (changes are coalesced). cancel unsubscribes and closes the channel.
func (m *Manager) Subscribe() (<-chan Status, func()) {
	ch := make(chan Status, 1)
	m.subMu.Lock()
	id := m.nextSub
	m.nextSub++
	m.subs[id] = ch
	m.subMu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			m.subMu.Lock()
			defer m.subMu.Unlock()
			// Close may already have closed it
			if _, ok := m.subs[id]; ok {
				delete(m.subs, id)
				close(ch)
			}
		})
	}
}

func (m *Manager) notify(s Status) {
	m.subMu.Lock()
	defer m.subMu.Unlock()
	for _, ch := range m.subs {
		// only notify sends, under subMu, so draining then sending cannot block
		select {
		case ch <- s:
		default:
			select {
			case <-ch:
			default:
			}
			ch <- s
		}
	}
}

// Close releases the active database after in-flight matches finish and closes all
// subscriptions. Installed files stay on disk for the next Load.
func (m *Manager) Close() error {
	m.bgCancel()
	m.installMu.Lock()
	defer m.installMu.Unlock()
	m.mu.Lock()
	old := m.cur
	m.cur = nil
	m.mu.Unlock()
	if old != nil {
		old.release()
	}
	m.subMu.Lock()
	for id, ch := range m.subs {
		delete(m.subs, id)
		close(ch)
	}
	m.subMu.Unlock()
	return nil
}

// installLocked imports ref (archive path, .db path or URL) with grype's curator into a fresh
// generation and activates it unless it is the database already active. importKind is the
// sentinel wrapped around curator failures. Callers hold installMu.
func (m *Manager) installLocked(ctx context.Context, ref string, src sourceRecord, importKind error) (bool, error) {
	if cur := m.current(); cur != nil && src.ArchiveDigest != "" && cur.status.ArchiveDigest == src.ArchiveDigest {
		m.clearErr()
		return false, nil
	}
	gen, err := os.MkdirTemp(m.cfg.Dir, genPrefix+time.Now().UTC().Format("20060102T150405Z")+"-")
	if err != nil {
		return false, m.fail(fmt.Errorf("vulndb: create generation directory: %w", err))
	}
	keep := false
	defer func() {
		if !keep {
			_ = os.RemoveAll(gen)
		}
	}()

	c, err := installation.NewCurator(installation.Config{DBRootDir: gen, ValidateChecksum: true}, m.client)
	if err != nil {
		return false, m.fail(sanitized(importKind, "create curator", err))
	}
	if err := c.Import(ref); err != nil {
		return false, m.fail(sanitized(importKind, "import", err))
	}
	if err := writeSource(gen, src); err != nil {
		return false, m.fail(fmt.Errorf("vulndb: record source: %w", err))
	}
	h, err := m.open(gen, true)
	if err != nil {
		return false, m.fail(err)
	}
	if cur := m.current(); cur != nil && sameRelease(cur, h) {
		h.release()
		m.clearErr()
		return false, nil
	}
	if err := ctx.Err(); err != nil {
		h.release()
		return false, err
	}
	// the previous file is removed on activation: diff it now for RematchChanged
	m.prepareDiff(ctx, h)
	if err := m.writeCurrent(filepath.Base(gen)); err != nil {
		h.release()
		return false, m.fail(err)
	}
	keep = true
	m.activate(h)
	return true, nil
}

// sameRelease reports whether two databases are the same release: an identical file, or the
// same schema and build time, which is how grype itself tells releases apart (a listing
// entry only supersedes the installed database when built later).
func sameRelease(a, b *handle) bool {
	if a.status.Checksum == b.status.Checksum {
		return true
	}
	return a.status.SchemaVersion == b.status.SchemaVersion && a.status.Built.Equal(b.status.Built)
}

func (m *Manager) clearErr() {
	m.mu.Lock()
	m.lastErr = ""
	m.mu.Unlock()
}

// writeCurrent atomically records the active generation.
func (m *Manager) writeCurrent(gen string) error {
	tmp, err := os.CreateTemp(m.cfg.Dir, currentFileName+".tmp-")
	if err != nil {
		return fmt.Errorf("vulndb: record active database: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(gen + "\n"); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("vulndb: record active database: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("vulndb: record active database: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("vulndb: record active database: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(m.cfg.Dir, currentFileName)); err != nil {
		return fmt.Errorf("vulndb: record active database: %w", err)
	}
	return nil
}

// Import installs a database archive (.tar.gz/.tar.zst/.tar.xz as published by grype, or a bare
// .db file) exactly as `grype db import` does, then activates it; it returns once matches
// still running on the previous database have finished. changed is false when the
// archive is the one already active (same sha256) or holds the same database release (same
// grype digest, or same schema and build time); the active database is then kept.
func (m *Manager) Import(ctx context.Context, archivePath string) (changed bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	abs, err := filepath.Abs(archivePath)
	if err != nil {
		return false, fmt.Errorf("vulndb: %w", err)
	}
	digest, err := fileDigest(abs)
	if err != nil {
		return false, m.fail(fmt.Errorf("vulndb: read archive: %w", err))
	}
	m.installMu.Lock()
	defer m.installMu.Unlock()
	return m.installLocked(ctx, abs, sourceRecord{Source: abs, ArchiveDigest: digest}, ErrInvalidDB)
}

// Update checks the listing (Config.ListingURL) and installs the advertised database when it
// was built after the active one. changed is false when no newer database is listed. On
// failure the active database stays in use and the error (wrapping ErrUpdate) is sanitised.
func (m *Manager) Update(ctx context.Context) (changed bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	m.installMu.Lock()
	defer m.installMu.Unlock()

	var desc *v6.Description
	if cur := m.current(); cur != nil {
		desc = cur.desc
	}
	listing := redact.URL(listingURL(m.distCfg.LatestURL))
	candidate, err := m.client.IsUpdateAvailable(desc)
	if err != nil {
		return false, m.fail(sanitized(ErrUpdate, "check listing "+listing, err))
	}
	if candidate == nil {
		m.clearErr()
		return false, nil
	}
	archiveURL, err := m.client.ResolveArchiveURL(*candidate)
	if err != nil {
		return false, m.fail(sanitized(ErrUpdate, "resolve archive URL from "+listing, err))
	}
	return m.installLocked(ctx, archiveURL, sourceRecord{Source: redact.URL(archiveURL), ArchiveDigest: candidate.Checksum}, ErrUpdate)
}

// listingURL resolves the listing location the way grype's distribution client does: a URL
// not ending in .json is a base under which v6/latest.json lives.
func listingURL(u string) string {
	if strings.HasSuffix(u, ".json") {
		return u
	}
	return fmt.Sprintf("%s/v%d/%s", strings.TrimRight(u, "/"), v6.ModelVersion, distribution.LatestFileName)
}

// fileDigest returns "sha256:<hex>" of a file, the form grype listings and OCI use.
func fileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}
