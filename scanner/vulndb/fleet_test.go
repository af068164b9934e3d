package vulndb

import (
	"context"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/scanner/vulndb/dbtest"
)

var testFleetConfig = dbtest.FleetConfig{Seed: 7, Images: 15, MinPackages: 20, MaxPackages: 70, BasePackages: 48, AppPackages: 30, ExtraVulns: 200}

func newFleet(t *testing.T) *dbtest.Fleet {
	t.Helper()
	fl, err := dbtest.GenerateFleet(testFleetConfig)
	if err != nil {
		t.Fatal(err)
	}
	return fl
}

func importVulns(t *testing.T, m *Manager, built time.Time, vulns []dbtest.Vuln) {
	t.Helper()
	changed, err := m.Import(context.Background(), newTestArchive(t, built, vulns))
	if err != nil || !changed {
		t.Fatalf("import: changed=%v err=%v", changed, err)
	}
}

// matchEach matches every document with Match, the reference.
func matchEach(t *testing.T, m *Manager, docs map[string][]byte) map[string][]Finding {
	t.Helper()
	out := map[string][]Finding{}
	for k, d := range docs {
		res, err := m.Match(context.Background(), d)
		if err != nil {
			t.Fatalf("Match %s: %v", k, err)
		}
		out[k] = res.Findings
	}
	return out
}

func assertSameFindings(t *testing.T, what string, got map[string]*MatchResult, want map[string][]Finding) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d results, want %d", what, len(got), len(want))
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Fatalf("%s: no result for %s", what, k)
		}
		if !reflect.DeepEqual(g.Findings, w) {
			t.Errorf("%s: %s findings differ from Match:\n got %d: %+v\nwant %d: %+v", what, k, len(g.Findings), g.Findings, len(w), w)
		}
	}
}

func TestMatchManyEqualsMatchPerSBOM(t *testing.T) {
	fl := newFleet(t)
	m := newLoadedManagerEmpty(t, Config{MatchWorkers: 2})
	importVulns(t, m, time.Now().Add(-2*time.Hour), fl.Vulns)

	want := matchEach(t, m, fl.SBOMs)
	got, err := m.MatchMany(context.Background(), fl.SBOMs)
	if err != nil {
		t.Fatal(err)
	}
	assertSameFindings(t, "MatchMany", got, want)

	// the fleet must exercise every ecosystem and grype's default kernel-header ignore rules
	types := map[string]int{}
	var kernelImage, kernelHeaders int
	occurrences := 0
	for k, r := range got {
		occurrences += r.Packages
		for _, f := range r.Findings {
			types[f.Type]++
			if strings.HasPrefix(f.ID, "CVE-2024-9") {
				switch {
				case strings.HasPrefix(f.Package, "linux-image-"):
					kernelImage++
				default:
					kernelHeaders++
					t.Errorf("%s: kernel vulnerability %s reported on %s despite the default ignore rules", k, f.ID, f.Package)
				}
			}
		}
	}
	for _, ty := range []string{"deb", "apk", "npm", "go-module"} {
		if types[ty] == 0 {
			t.Errorf("no %s findings in the fleet: the test does not exercise that ecosystem (types %v)", ty, types)
		}
	}
	if kernelImage == 0 {
		t.Error("no kernel findings on linux-image packages: the ignore-rule check proves nothing")
	}

	st := m.FleetStats()
	if st.Documents != len(fl.SBOMs) {
		t.Errorf("Documents = %d, want %d", st.Documents, len(fl.SBOMs))
	}
	if st.Matched >= int64(occurrences) || st.Matched != int64(st.Entries) {
		t.Errorf("Matched = %d for %d package occurrences and %d entries: packages were not deduplicated", st.Matched, occurrences, st.Entries)
	}

	// a second batch with the same documents matches nothing new
	again, err := m.MatchMany(context.Background(), fl.SBOMs)
	if err != nil {
		t.Fatal(err)
	}
	assertSameFindings(t, "second MatchMany", again, want)
	if st2 := m.FleetStats(); st2.Matched != st.Matched {
		t.Errorf("second MatchMany matched %d packages again", st2.Matched-st.Matched)
	}
}

func TestMatchManyReportsBadDocuments(t *testing.T) {
	fl := newFleet(t)
	m := newLoadedManagerEmpty(t, Config{})
	importVulns(t, m, time.Now().Add(-time.Hour), fl.Vulns)
	docs := map[string][]byte{"good": fl.SBOMs["image-0000"], "bad": []byte(`{"not":"an sbom"}`), "empty": []byte("  ")}
	got, err := m.MatchMany(context.Background(), docs)
	if err == nil {
		t.Fatal("MatchMany accepted invalid documents")
	}
	for _, want := range []string{`document "bad": vulndb: invalid SBOM document`, `document "empty": vulndb: invalid SBOM document: empty document`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, ok := got["good"]; !ok || len(got) != 1 {
		t.Errorf("results = %v, want only the good document", keys(got))
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestRematchChangedAfterDBUpdate(t *testing.T) {
	fl := newFleet(t)
	m := newLoadedManagerEmpty(t, Config{MatchWorkers: 2})
	importVulns(t, m, time.Now().Add(-3*time.Hour), fl.Vulns)
	before, err := m.MatchMany(context.Background(), fl.SBOMs)
	if err != nil {
		t.Fatal(err)
	}
	entriesA := m.FleetStats().Entries

	// nothing changed: nothing to do
	if ch, err := m.RematchChanged(context.Background()); err != nil || len(ch) != 0 {
		t.Fatalf("RematchChanged without a new database = %v, %v", keys(ch), err)
	}

	updated, touched := dbtest.MutateFleet(fl.Vulns, 0.03, 11)
	if len(touched) == 0 {
		t.Fatal("mutation touched nothing")
	}
	importVulns(t, m, time.Now().Add(-2*time.Hour), updated)

	changed, err := m.RematchChanged(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	info := m.FleetStats().LastRematch
	if info.Full {
		t.Fatalf("rematch was full (%s), want incremental", info.Reason)
	}
	if info.TouchedNames == 0 || info.Invalidated == 0 || info.Invalidated >= entriesA {
		t.Errorf("invalidated %d of %d entries for %d touched names: want some, not all", info.Invalidated, entriesA, info.TouchedNames)
	}
	t.Logf("rematch: %+v", info)
	if info.Rematched >= len(fl.SBOMs) {
		t.Errorf("rematched %d of %d SBOMs: the update should not touch every image", info.Rematched, len(fl.SBOMs))
	}

	// every SBOM's findings equal a fresh Match on the new database, and exactly the SBOMs
	// whose findings differ from before are reported
	fresh := matchEach(t, m, fl.SBOMs)
	var wantChanged []string
	for k, f := range fresh {
		if !reflect.DeepEqual(before[k].Findings, f) {
			wantChanged = append(wantChanged, k)
		}
	}
	sort.Strings(wantChanged)
	if len(wantChanged) == 0 {
		t.Fatal("the update changed no findings: the test proves nothing")
	}
	if got := keys(changed); !reflect.DeepEqual(got, wantChanged) {
		t.Errorf("RematchChanged reported %v, want %v", got, wantChanged)
	}
	if info.Changed != len(wantChanged) {
		t.Errorf("LastRematch.Changed = %d, want %d", info.Changed, len(wantChanged))
	}
	all, err := m.MatchMany(context.Background(), fl.SBOMs)
	if err != nil {
		t.Fatal(err)
	}
	assertSameFindings(t, "after update", all, fresh)
	for k, r := range changed {
		if !reflect.DeepEqual(r.Findings, fresh[k]) {
			t.Errorf("changed result for %s differs from Match", k)
		}
	}

	// the periodic safety net rematches everything and finds no further change
	ch, err := m.RematchAll(context.Background())
	if err != nil || len(ch) != 0 {
		t.Fatalf("RematchAll = %v, %v; want no changes", keys(ch), err)
	}
	if li := m.FleetStats().LastRematch; !li.Full || li.Rematched != len(fl.SBOMs) || li.Reason != "full rematch requested" {
		t.Errorf("RematchAll info = %+v", li)
	}
}

func TestRematchChangedFullWithoutDiff(t *testing.T) {
	fl := newFleet(t)
	m := newLoadedManagerEmpty(t, Config{})
	importVulns(t, m, time.Now().Add(-3*time.Hour), fl.Vulns)
	if _, err := m.MatchMany(context.Background(), fl.SBOMs); err != nil {
		t.Fatal(err)
	}
	// a change the diff does not understand (an operating system row) forces a full rematch
	updated := append([]dbtest.Vuln(nil), fl.Vulns...)
	updated = append(updated, dbtest.Vuln{ID: "CVE-2030-0001", Ecosystem: dbtest.EcosystemDeb, Distro: "debian:10", Package: "x", Constraint: "< 1"})
	importVulns(t, m, time.Now().Add(-2*time.Hour), updated)
	if _, err := m.RematchChanged(context.Background()); err != nil {
		t.Fatal(err)
	}
	info := m.FleetStats().LastRematch
	if !info.Full || info.Reason != "table operating_systems changed" {
		t.Errorf("LastRematch = %+v, want full because of operating_systems", info)
	}
}

// newLoadedManagerEmpty returns a Manager with no database.
func newLoadedManagerEmpty(t *testing.T, cfg Config) *Manager {
	t.Helper()
	cfg.Dir = t.TempDir()
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// A package whose matcher output cannot be shared (a matcher failed, or an ignore filter names
// where the package was found) is matched in place at every replay, from the record the cache
// keeps and the occurrence's own identity and owners. Grype's matchers rarely produce one, so
// every entry is forced local here.
func TestLocalEntriesMatchInPlace(t *testing.T) {
	fl := newFleet(t)
	m := newLoadedManagerEmpty(t, Config{MatchWorkers: 2})
	importVulns(t, m, time.Now().Add(-3*time.Hour), fl.Vulns)
	if _, err := m.MatchMany(context.Background(), fl.SBOMs); err != nil {
		t.Fatal(err)
	}
	want := matchEach(t, m, fl.SBOMs)

	h := m.acquire()
	defer h.inflight.Done()
	m.fleetMu.Lock()
	defer m.fleetMu.Unlock()
	f := m.fleetState()
	for _, e := range f.entries {
		e.local, e.matches, e.ignores = true, nil, nil
	}
	got := map[string]*MatchResult{}
	for k, d := range f.docs {
		for i := range d.pkgs {
			if d.pkgs[i].full != nil {
				t.Fatalf("%s: a decoded record outlived its first match", k)
			}
		}
		res, _, err := replay(h.provider, func(k string) *entry { return f.entries[k] }, d, m.statusOf(h))
		if err != nil {
			t.Fatal(err)
		}
		got[k] = res
	}
	assertSameFindings(t, "local replay", got, want)
}

// sameFindings decides which reports are rewritten after a rematch: a difference in any field
// of Finding, including one added later, must count.
func TestSameFindingsSeesEveryField(t *testing.T) {
	base := Finding{ID: "CVE-1", Aliases: []string{"GHSA-1"}, Package: "p", Version: "1", Type: "deb", PURL: "pkg:deb/p@1",
		FixedVersions: []string{"2"}, FixState: "fixed", Severity: "High", Namespace: "debian", Matchers: []string{"dpkg"}, MatchTypes: []string{"exact-direct"}}
	if !sameFindings([]Finding{base}, []Finding{base}) {
		t.Fatal("a finding differs from itself")
	}
	typ := reflect.TypeOf(base)
	for i := range typ.NumField() {
		other := base
		v := reflect.ValueOf(&other).Elem().Field(i)
		switch v.Kind() {
		case reflect.String:
			v.SetString(v.String() + "x")
		case reflect.Slice:
			v.Set(reflect.Append(reflect.MakeSlice(v.Type(), 0, 1), reflect.ValueOf("x")))
		default:
			t.Fatalf("field %s has kind %s: teach sameFindings and this test about it", typ.Field(i).Name, v.Kind())
		}
		if sameFindings([]Finding{base}, []Finding{other}) {
			t.Errorf("a change of %s is not seen", typ.Field(i).Name)
		}
	}
	if sameFindings([]Finding{base}, []Finding{base, base}) {
		t.Error("lists of different length compare equal")
	}
}

// A match that runs after a database change but before RematchChanged moves the fleet to the
// new database itself; the SBOMs whose findings that move changed must still be named by the
// next RematchChanged, or a caller would never refresh their reports.
func TestRematchChangedClaimsChangesOfAMatchThatMovedTheFleet(t *testing.T) {
	fl := newFleet(t)
	m := newLoadedManagerEmpty(t, Config{MatchWorkers: 2})
	importVulns(t, m, time.Now().Add(-3*time.Hour), fl.Vulns)
	before, err := m.MatchMany(context.Background(), fl.SBOMs)
	if err != nil {
		t.Fatal(err)
	}
	updated, _ := dbtest.MutateFleet(fl.Vulns, 0.03, 11)
	importVulns(t, m, time.Now().Add(-2*time.Hour), updated)

	// one SBOM is matched first: the fleet moves to the new database inside this call
	var one string
	for k := range fl.SBOMs {
		one = k
		break
	}
	if _, err := m.MatchMany(context.Background(), map[string][]byte{one: fl.SBOMs[one]}); err != nil {
		t.Fatal(err)
	}
	changed, err := m.RematchChanged(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	fresh := matchEach(t, m, fl.SBOMs)
	var want []string
	for k, f := range fresh {
		if k != one && !reflect.DeepEqual(before[k].Findings, f) {
			want = append(want, k)
		}
	}
	sort.Strings(want)
	if len(want) == 0 {
		t.Fatal("the update changed no other SBOM's findings: the test proves nothing")
	}
	var got []string
	for _, k := range keys(changed) {
		if k != one {
			got = append(got, k)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("RematchChanged after a moving match named %v, want %v", got, want)
	}
	for k, r := range changed {
		if !reflect.DeepEqual(r.Findings, fresh[k]) {
			t.Errorf("claimed result for %s differs from Match", k)
		}
	}
	// claimed once: a second call has nothing left to report
	if again, err := m.RematchChanged(context.Background()); err != nil || len(again) != 0 {
		t.Fatalf("second RematchChanged = %v, %v; want nothing", keys(again), err)
	}
	if res := m.Results(one, "not-remembered"); len(res) != 1 || !reflect.DeepEqual(res[one].Findings, fresh[one]) {
		t.Errorf("Results = %v, want the current result of %s only", res, one)
	}
}
