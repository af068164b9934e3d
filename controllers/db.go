package controllers

import (
	"context"
	"errors"
	"os"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/robfig/cron/v3"

	"github.com/imagetrust/imagetrust/scanner"
)

// DBOptions says where the vulnerability DB comes from and how it is kept current.
type DBOptions struct {
	// Archive is a local DB archive imported at start and again whenever the file changes
	// (a mounted ConfigMap/volume updated by an air-gapped pipeline).
	Archive string
	// ArchivePollInterval is how often Archive is checked for changes (30s when zero).
	ArchivePollInterval time.Duration
	// OCIRef is a DB archive stored as an OCI artifact, imported at start and on UpdateSchedule.
	OCIRef string
	// OCIRemoteOptions reach OCIRef's registry (credentials, transport).
	OCIRemoteOptions []remote.Option
	// UpdateURL enables update checks against a grype listing (the Manager's ListingURL).
	UpdateURL string
	// UpdateSchedule is the cron schedule of update checks (UpdateURL and OCIRef); empty
	// disables scheduled checks.
	UpdateSchedule string
	// FullRematchInterval is how often every cached SBOM is rematched in full (RematchAll),
	// the safety net behind the incremental rematch after each DB change; zero disables it.
	FullRematchInterval time.Duration
}

// dbRunner loads the DB, keeps it current, and rematches the cached SBOMs a DB change touched.
type dbRunner struct {
	db     *scanner.DB
	opts   DBOptions
	engine *Engine
	sched  *Scheduler
	clock  Clock
	log    logr.Logger

	once        sync.Once
	initialized chan struct{} // closed after the first load attempt
	mu          sync.Mutex
	archiveSeen fileStamp
	wasStale    bool
}

type fileStamp struct {
	size  int64
	mtime time.Time
}

func newDBRunner(db *scanner.DB, opts DBOptions, engine *Engine, sched *Scheduler, clock Clock, log logr.Logger) *dbRunner {
	if opts.ArchivePollInterval <= 0 {
		opts.ArchivePollInterval = 30 * time.Second
	}
	return &dbRunner{db: db, opts: opts, engine: engine, sched: sched, clock: clock, log: log, initialized: make(chan struct{})}
}

// NeedLeaderElection is false: every replica loads the DB so it can become ready.
func (r *dbRunner) NeedLeaderElection() bool { return false }

// Start loads the DB, arms the update and archive-watch jobs, and relays change notifications
// to the Engine until ctx ends.
func (r *dbRunner) Start(ctx context.Context) error {
	changes, cancel := r.db.Subscribe()
	defer cancel()

	r.initialLoad(ctx)
	r.markInitialized()
	setDBMetrics(r.db.Status())

	if r.opts.Archive != "" {
		r.armArchivePoll(ctx)
	}
	if r.opts.UpdateSchedule != "" && (r.opts.UpdateURL != "" || r.opts.OCIRef != "") {
		sched, err := cron.ParseStandard(r.opts.UpdateSchedule)
		if err != nil {
			return err // validated by the flag parser; unreachable in practice
		}
		r.armUpdate(ctx, sched)
	}
	r.armMetrics()
	if r.opts.FullRematchInterval > 0 {
		r.armFullRematch(ctx)
	}

	for {
		select {
		case <-ctx.Done():
			return nil
		case st, ok := <-changes:
			if !ok {
				return nil
			}
			setDBMetrics(st)
			res := r.engine.RematchFleet(ctx, false)
			r.log.Info("vulnerability DB changed; rematched the cached SBOMs it touched", "schema", st.SchemaVersion,
				"built", st.Built, "full", res.Full, "reason", res.Reason, "rematched", res.Rematched,
				"changed", res.Changed, "images", res.Queued, "fallback", res.Fallback)
		}
	}
}

// armFullRematch schedules the periodic full rematch: the incremental one after a DB change
// trusts the DB diff, and this bounds how long anything it could miss would stay unreported.
func (r *dbRunner) armFullRematch(ctx context.Context) {
	r.sched.Set("db/full-rematch", r.clock.Now().Add(r.opts.FullRematchInterval), func() {
		// A full rematch of a large fleet takes a while; never block the scheduler with it.
		go func() {
			res := r.engine.RematchFleet(ctx, true)
			r.log.Info("periodic full rematch of the cached SBOMs", "rematched", res.Rematched,
				"changed", res.Changed, "images", res.Queued, "fallback", res.Fallback)
		}()
		r.armFullRematch(ctx)
	})
}

func (r *dbRunner) markInitialized() { r.once.Do(func() { close(r.initialized) }) }

func (r *dbRunner) initialLoad(ctx context.Context) {
	if err := r.db.Load(ctx); err != nil && !errors.Is(err, scanner.ErrNoDB) {
		r.log.Error(err, "loading the installed vulnerability DB")
	}
	if r.opts.Archive != "" {
		r.checkArchive(ctx)
	}
	if r.opts.OCIRef != "" {
		if _, err := r.db.ImportOCI(ctx, r.opts.OCIRef, r.opts.OCIRemoteOptions...); err != nil {
			r.log.Error(err, "importing the vulnerability DB from OCI", "ref", r.opts.OCIRef)
		}
	}
	if r.opts.UpdateURL != "" && !r.db.Status().Loaded() {
		if _, err := r.db.Update(ctx); err != nil {
			r.log.Error(err, "downloading the vulnerability DB")
		}
	}
}

// CheckArchive imports the archive file when its size or modification time changed since the
// last import. The Manager recognises an unchanged archive by digest, so a touched file costs a
// hash, not an import.
func (r *dbRunner) checkArchive(ctx context.Context) {
	fi, err := os.Stat(r.opts.Archive)
	if err != nil {
		r.log.Error(err, "vulnerability DB archive not readable", "path", r.opts.Archive)
		return
	}
	stamp := fileStamp{size: fi.Size(), mtime: fi.ModTime()}
	r.mu.Lock()
	same := stamp == r.archiveSeen
	r.mu.Unlock()
	if same {
		return
	}
	changed, err := r.db.Import(ctx, r.opts.Archive)
	if err != nil {
		r.log.Error(err, "importing the vulnerability DB archive", "path", r.opts.Archive)
		return
	}
	r.mu.Lock()
	r.archiveSeen = stamp
	r.mu.Unlock()
	if changed {
		r.log.Info("imported vulnerability DB archive", "path", r.opts.Archive)
	}
}

func (r *dbRunner) armArchivePoll(ctx context.Context) {
	r.sched.Set("db/archive", r.clock.Now().Add(r.opts.ArchivePollInterval), func() {
		r.checkArchive(ctx)
		r.armArchivePoll(ctx)
	})
}

func (r *dbRunner) armUpdate(ctx context.Context, s cron.Schedule) {
	r.sched.Set("db/update", s.Next(r.clock.Now()), func() {
		// Downloads can take minutes; never block the scheduler with them.
		go func() {
			if r.opts.OCIRef != "" {
				if _, err := r.db.ImportOCI(ctx, r.opts.OCIRef, r.opts.OCIRemoteOptions...); err != nil {
					r.log.Error(err, "vulnerability DB update from OCI failed; the current DB stays active")
				}
			}
			if r.opts.UpdateURL != "" {
				if _, err := r.db.Update(ctx); err != nil {
					r.log.Error(err, "vulnerability DB update failed; the current DB stays active")
				}
			}
		}()
		r.armUpdate(ctx, s)
	})
}

// armMetrics refreshes the DB gauges and notices the DB growing older than its maximum age:
// nothing else changes then, so this is what turns reports' Scanned condition to DBStale.
func (r *dbRunner) armMetrics() {
	r.sched.Set("db/metrics", r.clock.Now().Add(30*time.Second), func() {
		st := r.db.Status()
		setDBMetrics(st)
		r.mu.Lock()
		became := st.Stale && !r.wasStale
		r.wasStale = st.Stale
		r.mu.Unlock()
		if became {
			r.log.Info("vulnerability DB is older than the allowed maximum age", "built", st.Built)
			r.engine.Rematch()
		}
		r.armMetrics()
	})
}
