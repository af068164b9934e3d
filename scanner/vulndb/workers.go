package vulndb

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	v6 "github.com/anchore/grype/grype/db/v6"
	"github.com/anchore/grype/grype/db/v6/installation"
	"github.com/anchore/grype/grype/vulnerability"

	"github.com/imagetrust/imagetrust/scanner/internal/redact"
)

// Why one provider per worker: grype opens the database with "cache=shared", so every
// connection to the same path in the process shares one SQLite page cache (one BtShared), whose
// mutex serialises all reads: goroutines matching on one provider take turns. SQLite keys the
// shared cache on the file's path, so a hard link of the (immutable) database file gets a cache
// of its own. Each extra worker therefore opens its own provider on its own hard link; the
// links cost no disk space and go away with the handle.

// providers returns n providers for parallel matching: the handle's own and n-1 opened on hard
// links of its database file. When links cannot be made (another file system, no support), all
// workers share the handle's provider, which is correct, only slower.
func (h *handle) providers(n int) []vulnerability.Provider {
	if n < 1 {
		n = 1
	}
	h.workerMu.Lock()
	defer h.workerMu.Unlock()
	out := []vulnerability.Provider{h.provider}
	out = append(out, h.workerProv...)
	if len(out) >= n {
		return out[:n]
	}
	if h.workerDir == "" {
		dir, err := os.MkdirTemp(h.root, "workers-")
		if err != nil {
			return fill(out, n)
		}
		h.workerDir = dir
	}
	src := installation.Config{DBRootDir: h.root}.DBFilePath()
	for i := len(out); i < n; i++ {
		dir := filepath.Join(h.workerDir, fmt.Sprintf("w%d", i))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			break
		}
		dst := filepath.Join(dir, v6.VulnerabilityDBFileName)
		if _, err := os.Stat(dst); err != nil {
			if err := os.Link(src, dst); err != nil {
				break
			}
		}
		rdr, err := v6.NewReader(v6.Config{DBDirPath: dir})
		if err != nil {
			break
		}
		vp := v6.NewVulnerabilityProvider(rdr)
		h.workerProv = append(h.workerProv, vp)
		out = append(out, vp)
	}
	return fill(out, n)
}

// fill repeats the providers it has up to n workers.
func fill(ps []vulnerability.Provider, n int) []vulnerability.Provider {
	out := make([]vulnerability.Provider, n)
	for i := range out {
		out[i] = ps[i%len(ps)]
	}
	return out
}

// closeWorkers closes the extra providers and removes their links. Callers make sure no match
// is using them (release waits for in-flight matches first).
func (h *handle) closeWorkers() {
	h.workerMu.Lock()
	defer h.workerMu.Unlock()
	for _, vp := range h.workerProv {
		_ = vp.Close()
	}
	h.workerProv = nil
	if h.workerDir != "" {
		_ = os.RemoveAll(h.workerDir)
		h.workerDir = ""
	}
}

// prepareDiff records, for RematchChanged, what changed between the database the fleet cache
// was computed against and the one about to be activated. It runs before activation because
// activation deletes the previous generation's file. Each database is indexed once (see
// dbindex.go), usually in the background while it is active, so this mostly costs the new
// database's index. A failed diff only makes the next rematch full.
func (m *Manager) prepareDiff(ctx context.Context, next *handle) {
	m.fleetMu.Lock()
	f := m.fl
	var from string
	var pending *dbDiff
	if f != nil {
		from, pending = f.checksum, f.pending
	}
	m.fleetMu.Unlock()
	cur := m.current()
	if f == nil || from == "" || cur == nil {
		return
	}
	var d *dbDiff
	switch {
	case cur.status.Checksum == from, pending != nil && pending.to == cur.status.Checksum && !pending.full:
		d = m.diffHandles(ctx, cur, next)
		if from != cur.status.Checksum && !d.full {
			// the fleet has not caught up with the active database yet: chain the diffs
			for k := range pending.names {
				d.names[k] = true
			}
			for k := range pending.vulns {
				d.vulns[k] = true
			}
		}
	default:
		d = &dbDiff{full: true, reason: "the fleet cache predates the previous database"}
	}
	d.from, d.to = from, next.status.Checksum
	m.fleetMu.Lock()
	m.fl.pending = d
	m.fleetMu.Unlock()
}

func (m *Manager) diffHandles(ctx context.Context, cur, next *handle) *dbDiff {
	a, err := cur.indexOf(ctx)
	if err != nil {
		return &dbDiff{full: true, reason: redact.Text(err.Error())}
	}
	b, err := next.indexOf(ctx)
	if err != nil {
		return &dbDiff{full: true, reason: redact.Text(err.Error())}
	}
	return diffIndexes(a, b)
}

// indexSoon indexes the active database h in the background once, so that the next update
// only has to index the new one. It holds h like a match, so h stays open until it is done.
func (m *Manager) indexSoon(h *handle) {
	h.indexMu.Lock()
	started := h.indexStarted || h.index != nil || h.indexing != nil
	h.indexStarted = true
	h.indexMu.Unlock()
	if started {
		return
	}
	m.mu.RLock()
	if m.cur != h {
		m.mu.RUnlock()
		return
	}
	h.inflight.Add(1)
	m.mu.RUnlock()
	go func() {
		defer h.inflight.Done()
		// an error here is retried, and reported, by the diff that needs the index
		_, _ = h.indexOf(m.bgCtx)
	}()
}

// WaitIndexed makes sure the active database has been indexed for the next update's diff,
// indexing it now when the background indexing has not finished. The manager never needs to
// call it; benchmarks and tools call it to keep that one-off cost out of an update's timing.
func (m *Manager) WaitIndexed(ctx context.Context) error {
	h := m.acquire()
	if h == nil {
		return fmt.Errorf("%w: load or import one first", ErrNoDB)
	}
	defer h.inflight.Done()
	_, err := h.indexOf(ctx)
	return err
}
