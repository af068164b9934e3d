package vulndb

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/scanner/vulndb/dbtest"
)

// matchConcurrently matches every document on its own (as the Engine does, one SBOM per call)
// from callers goroutines at once.
func matchConcurrently(tb testing.TB, m *Manager, docs map[string][]byte, callers int) map[string]*MatchResult {
	tb.Helper()
	keys := make([]string, 0, len(docs))
	for k := range docs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	work := make(chan string)
	var mu sync.Mutex
	out := map[string]*MatchResult{}
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for k := range work {
				res, err := m.MatchMany(context.Background(), map[string][]byte{k: docs[k]})
				mu.Lock()
				if err != nil {
					tb.Errorf("MatchMany %s: %v", k, err)
				} else {
					out[k] = res[k]
				}
				mu.Unlock()
			}
		})
	}
	for _, k := range keys {
		work <- k
	}
	close(work)
	wg.Wait()
	return out
}

// resetFleet forgets every document and cache entry, so the next match starts cold.
func resetFleet(m *Manager) {
	m.fleetMu.Lock()
	m.fl = nil
	m.fleetMu.Unlock()
}

// Concurrent callers share packages (the fleet's images have common bases): each is matched
// once, by whoever claimed it first, and every SBOM's findings equal a Match of its own.
func TestConcurrentMatchManyEqualsMatch(t *testing.T) {
	fl := newFleet(t)
	m := newLoadedManagerEmpty(t, Config{MatchWorkers: 2})
	importVulns(t, m, time.Now().Add(-time.Hour), fl.Vulns)
	want := matchEach(t, m, fl.SBOMs)
	got := matchConcurrently(t, m, fl.SBOMs, 4)
	assertSameFindings(t, "concurrent callers", got, want)
	st := m.FleetStats()
	if st.Documents != len(fl.SBOMs) {
		t.Errorf("fleet remembers %d documents, want %d", st.Documents, len(fl.SBOMs))
	}
	if st.Matched != int64(st.Entries) {
		t.Errorf("%d package matches for %d distinct packages: a package was matched twice", st.Matched, st.Entries)
	}
	// and the fleet still follows a database change afterwards
	updated, _ := dbtest.MutateFleet(fl.Vulns, 0.05, 5)
	importVulns(t, m, time.Now().Add(-30*time.Minute), updated)
	if _, err := m.RematchChanged(context.Background()); err != nil {
		t.Fatal(err)
	}
	again := matchConcurrently(t, m, fl.SBOMs, 2)
	assertSameFindings(t, "after the update", again, matchEach(t, m, fl.SBOMs))
}

// A small SBOM matched while a huge one is being matched does not wait for it: the fleet's lock
// is held only for bookkeeping.
func TestSmallSBOMDoesNotWaitForALargeOne(t *testing.T) {
	n := 40_000
	if raceEnabled {
		n = 8_000
	}
	large, _ := largeSBOM(t, n)
	fl := newFleet(t)
	m := newLoadedManagerEmpty(t, Config{MatchWorkers: 2})
	importVulns(t, m, time.Now().Add(-time.Hour), fl.Vulns)
	var small string
	for k := range fl.SBOMs {
		small = k
		break
	}
	largeDone := make(chan time.Time, 1)
	go func() {
		if _, err := m.MatchMany(context.Background(), map[string][]byte{"large": large}); err != nil {
			t.Error(err)
		}
		largeDone <- time.Now()
	}()
	// wait until the large match holds claims, i.e. is matching outside the lock
	deadline := time.Now().Add(time.Minute)
	for {
		m.fleetMu.Lock()
		claimed := m.fl != nil && len(m.fl.filling) > 0
		m.fleetMu.Unlock()
		if claimed || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := m.MatchMany(context.Background(), map[string][]byte{small: fl.SBOMs[small]}); err != nil {
		t.Fatal(err)
	}
	smallDone := time.Now()
	if end := <-largeDone; !smallDone.Before(end) {
		t.Fatalf("the small SBOM finished %v after the large one: it waited for it", smallDone.Sub(end))
	}
}

// BenchmarkMatchManyCallers matches a fleet cold, one SBOM per call as the Engine does, by 1
// caller with 1 database worker and by 2 concurrent callers with 2: the ratio of the two is the
// speed-up --concurrency 2 gives on 2 cores. Two fleets: images with distinct packages (the
// matching parallelises), and images drawn from one small pool of packages (each package is
// matched once, by whoever claims it first, so the others mostly wait and replay). Findings
// are checked against Match.
func BenchmarkMatchManyCallers(b *testing.B) {
	for _, fc := range []struct {
		name string
		pool int
	}{{"distinct", 6000}, {"shared", 300}} {
		b.Run(fc.name, func(b *testing.B) {
			fl, err := dbtest.GenerateFleet(dbtest.FleetConfig{Seed: 3, Images: 40, MinPackages: 100, MaxPackages: 300,
				BasePackages: fc.pool, AppPackages: fc.pool, ExtraVulns: 5_000})
			if err != nil {
				b.Fatal(err)
			}
			benchCallers(b, fl)
		})
	}
}

func benchCallers(b *testing.B, fl *dbtest.Fleet) {
	archive := newTestArchive(b, time.Now().Add(-time.Hour), fl.Vulns)
	perOp := map[int]float64{}
	for _, callers := range []int{1, 2} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			m, err := New(Config{Dir: b.TempDir(), MatchWorkers: callers})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			if _, err := m.Import(context.Background(), archive); err != nil {
				b.Fatal(err)
			}
			var got map[string]*MatchResult
			for b.Loop() {
				resetFleet(m)
				got = matchConcurrently(b, m, fl.SBOMs, callers)
			}
			perOp[callers] = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			for k, doc := range fl.SBOMs {
				want, err := m.Match(context.Background(), doc)
				if err != nil || !sameFindings(got[k].Findings, want.Findings) {
					b.Fatalf("%s: findings differ from Match (err %v)", k, err)
				}
			}
		})
	}
	if perOp[1] > 0 && perOp[2] > 0 {
		b.Logf("1 caller %.0f ms/fleet, 2 callers %.0f ms/fleet: %.2fx", perOp[1]/1e6, perOp[2]/1e6, perOp[1]/perOp[2])
	}
}
