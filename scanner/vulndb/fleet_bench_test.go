package vulndb

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/scanner/vulndb/dbtest"
)

// BenchmarkMatchManyWorkers matches a fleet with an empty cache using 1 and 2 workers (each
// worker with its own database connection on a hard link of the file; see workers.go), and
// with 2 workers forced onto the one shared provider, to show what grype's shared SQLite cache
// costs. Compare ns/op: the ratio 1 worker / 2 workers is the multi-core speed-up.
func BenchmarkMatchManyWorkers(b *testing.B) {
	fl, err := dbtest.GenerateFleet(dbtest.FleetConfig{Seed: 3, Images: 10, MinPackages: 100, MaxPackages: 300, BasePackages: 300, AppPackages: 300, ExtraVulns: 5_000})
	if err != nil {
		b.Fatal(err)
	}
	archive := newTestArchive(b, time.Now().Add(-time.Hour), fl.Vulns)
	for _, c := range []struct {
		workers int
		shared  bool
	}{{1, false}, {2, false}, {2, true}} {
		b.Run(fmt.Sprintf("workers=%d/shared=%v", c.workers, c.shared), func(b *testing.B) {
			m, err := New(Config{Dir: b.TempDir(), MatchWorkers: c.workers})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			if _, err := m.Import(context.Background(), archive); err != nil {
				b.Fatal(err)
			}
			if c.shared {
				h := m.current()
				h.workerMu.Lock()
				h.workerDir = "/nonexistent/forces-sharing" // links cannot be made: all workers share one provider
				h.workerMu.Unlock()
			}
			for b.Loop() {
				_, _ = m.RematchAll(context.Background()) // drops the cache
				if _, err := m.MatchMany(context.Background(), fl.SBOMs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
