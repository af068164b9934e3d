// Command bench compares, on one synthetic fleet and database, the upstream grype CLI run per
// SBOM with imagetrust's matching: (a) grype CLI per SBOM, (b) naive Manager.Match per SBOM,
// (c) deduplicated Manager.MatchMany, (d) RematchChanged after a ~1% database update. Each of
// (b)–(d) runs in a child process of its own so its peak RSS is its own. All findings are
// reduced to the rows of grype's table — (vulnerability id, package, version, fix) tuples, each
// with the package locations it covers — and must be identical.
//
//	go run ./hack/bench -scale ci [-grype bin/grype-v0.121.2]
package main

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/imagetrust/imagetrust/scanner/vulndb"
	"github.com/imagetrust/imagetrust/scanner/vulndb/dbtest"
)

var scales = map[string]dbtest.FleetConfig{
	"ci":     {Seed: 1, Images: 10, MinPackages: 100, MaxPackages: 300, BasePackages: 300, AppPackages: 300, ExtraVulns: 2_000},
	"medium": {Seed: 1, Images: 40, MinPackages: 100, MaxPackages: 2_000, BasePackages: 2_000, AppPackages: 2_000, ExtraVulns: 50_000},
	// full ≈ issue 6: ~251k vulnerability records, ~1.08M affected-package rows
	// large: the full-scale database with half the fleet (100 images), for when full (~50 min on
	// 2 cores) does not fit the time available
	"large": {Seed: 1, Images: 100, MinPackages: 100, MaxPackages: 5_000, BasePackages: 6_000, AppPackages: 5_000, ExtraVulns: 245_000},
	"full":  {Seed: 1, Images: 200, MinPackages: 100, MaxPackages: 5_000, BasePackages: 6_000, AppPackages: 5_000, ExtraVulns: 245_000},
}

// measurement is one phase's cost and findings.
type measurement struct {
	Name     string
	Wall     time.Duration
	CPU      time.Duration
	PeakRSS  int64 // KiB
	Extra    string
	Full     bool                // (d) only: the rescan fell back to a full rematch
	Findings map[string][]string // image → sorted tuples
}

func main() {
	scale := flag.String("scale", "ci", "ci, medium, large or full")
	work := flag.String("workdir", "", "working directory (default: a temporary one, removed afterwards)")
	grypeBin := flag.String("grype", "", "grype CLI binary for phase (a); empty skips it")
	frac := flag.Float64("update", 0.01, "fraction of vulnerability records the update changes")
	workers := flag.Int("workers", 0, "MatchWorkers for (c) and (d); 0 = GOMAXPROCS")
	batch := flag.Int("batch", 16, "SBOMs read and handed to MatchMany at a time in (c) and (d)")
	reuse := flag.Bool("reuse-db", false, "keep db-a and db-b already in -workdir (built by an earlier run whose scale has the same BasePackages, AppPackages and ExtraVulns) and only regenerate the fleet")
	phase := flag.String("phase", "", "internal: run one phase in this process")
	flag.Parse()
	log.SetFlags(0)

	if *phase == "setup" {
		cfg, ok := scales[*scale]
		if !ok {
			log.Fatalf("unknown scale %q", *scale)
		}
		if err := setup(cfg, *scale, *work, *frac, *reuse); err != nil {
			log.Fatalf("setup: %v", err)
		}
		return
	}
	if *phase != "" {
		if err := runPhase(*phase, *work, *workers, *batch); err != nil {
			log.Fatalf("phase %s: %v", *phase, err)
		}
		return
	}
	cfg, ok := scales[*scale]
	if !ok {
		log.Fatalf("unknown scale %q", *scale)
	}
	if *work == "" {
		d, err := os.MkdirTemp("", "imagetrust-bench-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(d)
		*work = d
	}
	_ = cfg
	if err := run(*scale, *work, *grypeBin, *frac, *workers, *batch, *reuse); err != nil {
		log.Fatal(err)
	}
}

// setup generates the fleet and both databases. It runs in a child process so that the parent
// stays small: Linux carries a parent's resident size into a forked child's ru_maxrss, which
// would inflate every child's peak RSS.
func setup(cfg dbtest.FleetConfig, scale, work string, frac float64, reuse bool) error {
	start := time.Now()
	fl, err := dbtest.GenerateFleet(cfg)
	if err != nil {
		return err
	}
	updated, touched := dbtest.MutateFleet(fl.Vulns, frac, 2)
	built := time.Now().Add(-2 * time.Hour)
	var archA string
	if reuse {
		if archA, err = archive(work, "db-a"); err != nil {
			return err
		}
		if _, err = archive(work, "db-b"); err != nil {
			return err
		}
		log.Printf("reusing the databases in %s", work)
	} else {
		if archA, err = dbtest.Archive(filepath.Join(work, "db-a"), built, fl.Vulns); err != nil {
			return err
		}
		if _, err = dbtest.Archive(filepath.Join(work, "db-b"), built.Add(time.Hour), updated); err != nil {
			return err
		}
	}
	sbomDir := filepath.Join(work, "sboms")
	if err := os.RemoveAll(sbomDir); err != nil {
		return err
	}
	if err := os.MkdirAll(sbomDir, 0o755); err != nil {
		return err
	}
	pkgs := 0
	for k, doc := range fl.SBOMs {
		if err := os.WriteFile(filepath.Join(sbomDir, k+".json"), doc, 0o644); err != nil {
			return err
		}
	}
	st, _ := os.Stat(archA)
	dbSize, err := dbFileSize(archA)
	if err != nil {
		return err
	}
	for _, doc := range fl.SBOMs {
		var d struct{ Artifacts []json.RawMessage }
		if err := json.Unmarshal(doc, &d); err != nil {
			return err
		}
		pkgs += len(d.Artifacts)
	}
	log.Printf("scale %s (%+v): %d images, %d packages; %d vulnerability records, %d affected-package rows (%d records, %d rows after update, %d package names touched); vulnerability.db %.1f MiB, archive %.1f MiB; setup %s",
		scale, cfg, len(fl.SBOMs), pkgs, records(fl.Vulns), len(fl.Vulns), records(updated), len(updated), len(touched),
		float64(dbSize)/(1<<20), float64(st.Size())/(1<<20), time.Since(start).Round(time.Millisecond))
	return nil
}

// records counts distinct vulnerability records: dbtest writes one per provider and ID, and
// one affected-package row per Vuln.
func records(vs []dbtest.Vuln) int {
	seen := map[string]bool{}
	for _, v := range vs {
		seen[v.Ecosystem+"/"+v.ID] = true
	}
	n := 0
	for k := range seen {
		// npm and go-module records share the github provider
		if e, id, _ := strings.Cut(k, "/"); e == dbtest.EcosystemGo && seen[dbtest.EcosystemNPM+"/"+id] {
			continue
		}
		n++
	}
	return n
}

// dbFileSize reads the size of vulnerability.db from the archive's tar header.
func dbFileSize(archive string) (int64, error) {
	f, err := os.Open(archive)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return 0, err
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err != nil {
			return 0, fmt.Errorf("vulnerability.db in %s: %w", archive, err)
		}
		if h.Name == "vulnerability.db" {
			return h.Size, nil
		}
	}
}

func run(scale, work, grypeBin string, frac float64, workers, batch int, reuse bool) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	gen := exec.Command(self, "-phase", "setup", "-scale", scale, "-workdir", work, "-update", fmt.Sprint(frac), fmt.Sprintf("-reuse-db=%v", reuse))
	gen.Stdout, gen.Stderr = os.Stderr, os.Stderr
	if err := gen.Run(); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	archA, err := archive(work, "db-a")
	if err != nil {
		return err
	}
	docs := map[string][]byte{}
	files, _ := filepath.Glob(filepath.Join(work, "sboms", "*.json"))
	for _, f := range files {
		docs[strings.TrimSuffix(filepath.Base(f), ".json")] = nil
	}

	var ms []*measurement
	if grypeBin == "" {
		log.Printf("(a) grype CLI: SKIPPED — no -grype binary given (make bench builds bin/grype-<version> from hack/bench/tools)")
	} else {
		m, err := grypeCLI(grypeBin, work, archA, docs)
		if err != nil {
			return fmt.Errorf("(a) grype CLI: %w", err)
		}
		ms = append(ms, m)
	}
	for _, p := range []string{"naive", "dedup", "rescan"} {
		m, err := child(p, work, workers, batch)
		if err != nil {
			return err
		}
		ms = append(ms, m)
	}

	fmt.Printf("\n%-28s %12s %12s %12s  %s\n", "phase", "wall", "cpu", "peak RSS", "notes")
	for _, m := range ms {
		fmt.Printf("%-28s %12s %12s %9.0f MiB  %s\n", m.Name, m.Wall.Round(time.Millisecond), m.CPU.Round(time.Millisecond), float64(m.PeakRSS)/1024, m.Extra)
	}
	byName := map[string]*measurement{}
	for _, m := range ms {
		byName[strings.Fields(m.Name)[0]] = m
	}
	ratio := func(label, a, b string) {
		x, y := byName[a], byName[b]
		if x == nil || y == nil {
			return
		}
		fmt.Printf("%-46s %8.1fx\n", label, float64(x.Wall)/float64(y.Wall))
	}
	fmt.Println()
	ratio("grype CLI per SBOM / deduplicated fleet scan", "(a)", "(c)")
	ratio("grype CLI per SBOM / rescan after update", "(a)", "(d)")
	ratio("naive Match per SBOM / deduplicated fleet scan", "(b)", "(c)")
	ratio("naive Match per SBOM / rescan after update", "(b)", "(d)")

	// findings: (a), (b), (c) on database A are identical; (d) equals Match on database B
	fail := false
	ref := byName["(b)"]
	for _, k := range []string{"(a)", "(c)"} {
		if m := byName[k]; m != nil {
			if d := compare(ref.Findings, m.Findings); d != "" {
				fmt.Printf("FINDINGS DIFFER: %s vs (b): %s\n", k, d)
				fail = true
			}
		}
	}
	resc := byName["(d)"]
	var refB map[string][]string
	if err := readJSON(filepath.Join(work, "rescan-reference.json"), &refB); err != nil {
		return err
	}
	if d := compare(refB, resc.Findings); d != "" {
		fmt.Printf("FINDINGS DIFFER: (d) vs Match on the updated database: %s\n", d)
		fail = true
	}
	fmt.Printf("findings: %d tuples on database A (digest %s), %d after the update (digest %s)\n",
		count(ref.Findings), digest(ref.Findings), count(resc.Findings), digest(resc.Findings))
	if fail {
		return fmt.Errorf("findings are not identical")
	}
	fmt.Println("findings identical across all phases")

	// issue 6's targets, on this run's numbers
	fmt.Printf("\ntargets (set for -scale full; this run is -scale %s)\n", scale)
	target := func(what string, ok bool, got string) {
		verdict := "MISSED"
		if ok {
			verdict = "met"
		}
		fmt.Printf("target %-52s %-7s %s\n", what, verdict, got)
	}
	if a, c, d := byName["(a)"], byName["(c)"], byName["(d)"]; a != nil {
		rc, rd := float64(a.Wall)/float64(c.Wall), float64(a.Wall)/float64(d.Wall)
		target("deduplicated fleet scan >= 5x faster than grype CLI", rc >= 5, fmt.Sprintf("%.1fx", rc))
		target("rescan after update >= 50x faster than grype CLI", rd >= 50, fmt.Sprintf("%.1fx", rd))
	}
	if c := byName["(c)"]; c != nil {
		target("peak RSS of the fleet scan < 1 GiB", c.PeakRSS < 1<<20, fmt.Sprintf("%.0f MiB", float64(c.PeakRSS)/1024))
	}
	target("findings identical on every SBOM", true, fmt.Sprintf("%d images", len(ref.Findings)))
	if resc.Full {
		// an incremental rescan is the point of (d): a silent fallback must not pass
		return fmt.Errorf("the rescan fell back to a full rematch: %s", resc.Extra)
	}
	return nil
}

func compare(a, b map[string][]string) string {
	if len(a) != len(b) {
		return fmt.Sprintf("%d images vs %d", len(a), len(b))
	}
	for k, x := range a {
		y := b[k]
		if strings.Join(x, "\n") != strings.Join(y, "\n") {
			return fmt.Sprintf("image %s: %d vs %d tuples (first: %q vs %q)", k, len(x), len(y), first(x), first(y))
		}
	}
	return ""
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func count(m map[string][]string) int {
	n := 0
	for _, v := range m {
		n += len(v)
	}
	return n
}

func digest(m map[string][]string) string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	h := sha256.New()
	for _, k := range ks {
		fmt.Fprintf(h, "%s\n%s\n", k, strings.Join(m[k], "\n"))
	}
	return fmt.Sprintf("%x", h.Sum(nil)[:6])
}

func tuple(id, name, version string, fix []string) string {
	f := append([]string(nil), fix...)
	sort.Strings(f)
	return id + "|" + name + "|" + version + "|" + strings.Join(f, ",")
}

// tableRows reduces findings the way grype's table shows them: one row per tuple, however many
// package occurrences (locations) produced it, with the locations it covers. Both grype's JSON
// (one match per occurrence) and imagetrust's findings (one per package, with its locations)
// reduce to the same rows when they agree.
type tableRows map[string]map[string]bool

func (r tableRows) add(key string, locations []string) {
	if r[key] == nil {
		r[key] = map[string]bool{}
	}
	for _, l := range locations {
		r[key][l] = true
	}
}

func (r tableRows) sorted() []string {
	out := make([]string, 0, len(r))
	for k, ls := range r {
		locs := make([]string, 0, len(ls))
		for l := range ls {
			locs = append(locs, l)
		}
		sort.Strings(locs)
		out = append(out, k+"|"+strings.Join(locs, ","))
	}
	sort.Strings(out)
	return out
}

func tuples(fs []vulndb.Finding) []string {
	rows := tableRows{}
	for _, f := range fs {
		rows.add(tuple(f.ID, f.Package, f.Version, f.FixedVersions), f.Locations)
	}
	return rows.sorted()
}

// grypeLocations are a grype JSON artifact's paths, reduced as imagetrust reduces an SBOM's:
// the primary evidence when marked, else all.
func grypeLocations(ls []grypeLocation) []string {
	var primary, all []string
	for _, l := range ls {
		all = append(all, l.Path)
		if l.Annotations["evidence"] == "primary" {
			primary = append(primary, l.Path)
		}
	}
	if len(primary) > 0 {
		return primary
	}
	return all
}

type grypeLocation struct {
	Path        string            `json:"path"`
	Annotations map[string]string `json:"annotations"`
}

// grypeCLI runs the upstream CLI once per SBOM against database A, imported once with
// `grype db import` into its own cache directory.
func grypeCLI(bin, work, archive string, docs map[string][]byte) (*measurement, error) {
	cache := filepath.Join(work, "grype-cache")
	env := append(os.Environ(), "GRYPE_DB_CACHE_DIR="+cache, "GRYPE_DB_AUTO_UPDATE=false", "GRYPE_DB_VALIDATE_AGE=false",
		"GRYPE_CHECK_FOR_APP_UPDATE=false")
	imp := exec.Command(bin, "db", "import", archive)
	imp.Env = env
	if out, err := imp.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("grype db import: %v: %s", err, out)
	}
	m := &measurement{Name: "(a) grype CLI per SBOM", Findings: map[string][]string{}}
	keys := sortedKeys(docs)
	for _, k := range keys {
		cmd := exec.Command(bin, "sbom:"+filepath.Join(work, "sboms", k+".json"), "-o", "json", "-q")
		cmd.Env = env
		start := time.Now()
		out, err := cmd.Output()
		m.Wall += time.Since(start)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", k, err)
		}
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			m.CPU += tv(ru.Utime) + tv(ru.Stime)
			m.PeakRSS = max(m.PeakRSS, ru.Maxrss)
		}
		var doc struct {
			Matches []struct {
				Vulnerability struct {
					ID  string `json:"id"`
					Fix struct {
						Versions []string `json:"versions"`
					} `json:"fix"`
				} `json:"vulnerability"`
				Artifact struct {
					Name      string          `json:"name"`
					Version   string          `json:"version"`
					Locations []grypeLocation `json:"locations"`
				} `json:"artifact"`
			} `json:"matches"`
		}
		if err := json.Unmarshal(out, &doc); err != nil {
			return nil, fmt.Errorf("%s: decode grype output: %w", k, err)
		}
		rows := tableRows{}
		for _, mm := range doc.Matches {
			rows.add(tuple(mm.Vulnerability.ID, mm.Artifact.Name, mm.Artifact.Version, mm.Vulnerability.Fix.Versions),
				grypeLocations(mm.Artifact.Locations))
		}
		m.Findings[k] = rows.sorted()
	}
	m.Extra = fmt.Sprintf("%d processes, peak RSS is the largest one", len(keys))
	return m, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func tv(t syscall.Timeval) time.Duration {
	return time.Duration(t.Sec)*time.Second + time.Duration(t.Usec)*time.Microsecond
}

// child runs one phase in a fresh process of this binary.
func child(phase, work string, workers, batch int) (*measurement, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-phase", phase, "-workdir", work, "-workers", fmt.Sprint(workers), "-batch", fmt.Sprint(batch))
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("phase %s: %w", phase, err)
	}
	var m measurement
	if err := readJSON(filepath.Join(work, phase+".json"), &m); err != nil {
		return nil, err
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		m.PeakRSS = ru.Maxrss
	}
	return &m, nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func cpuNow() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return tv(ru.Utime) + tv(ru.Stime)
}

func archive(work, name string) (string, error) {
	m, err := filepath.Glob(filepath.Join(work, name, "*.tar.gz"))
	if err != nil || len(m) != 1 {
		return "", fmt.Errorf("archive in %s: %v (%d found)", name, err, len(m))
	}
	return m[0], nil
}

// sbomFiles lists the fleet's SBOM files by image name, sorted.
func sbomFiles(work string) ([]string, map[string]string, error) {
	files, err := filepath.Glob(filepath.Join(work, "sboms", "*.json"))
	if err != nil {
		return nil, nil, err
	}
	paths := map[string]string{}
	for _, f := range files {
		paths[strings.TrimSuffix(filepath.Base(f), ".json")] = f
	}
	return sortedKeys(paths), paths, nil
}

// batches reads the SBOMs n at a time, the way the manager reads them from its SBOM cache: no
// phase holds the whole fleet's documents in memory, so peak RSS is the matcher's own.
func batches(keys []string, paths map[string]string, n int, fn func(map[string][]byte) error) error {
	for len(keys) > 0 {
		k := min(n, len(keys))
		docs := make(map[string][]byte, k)
		for _, key := range keys[:k] {
			b, err := os.ReadFile(paths[key])
			if err != nil {
				return err
			}
			docs[key] = b
		}
		keys = keys[k:]
		if err := fn(docs); err != nil {
			return err
		}
	}
	return nil
}

// runPhase is the child side: import database A, run the timed part.
func runPhase(phase, work string, workers, batch int) error {
	ctx := context.Background()
	keys, paths, err := sbomFiles(work)
	if err != nil {
		return err
	}
	archA, err := archive(work, "db-a")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(work, "mgr-"+phase+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	mgr, err := vulndb.New(vulndb.Config{Dir: dir, MatchWorkers: workers})
	if err != nil {
		return err
	}
	defer mgr.Close()
	if _, err := mgr.Import(ctx, archA); err != nil {
		return err
	}
	m := &measurement{Findings: map[string][]string{}}
	matchMany := func() error {
		return batches(keys, paths, batch, func(docs map[string][]byte) error {
			res, err := mgr.MatchMany(ctx, docs)
			if err != nil {
				return err
			}
			for k, r := range res {
				m.Findings[k] = tuples(r.Findings)
			}
			return nil
		})
	}
	switch phase {
	case "naive":
		m.Name = "(b) naive Match per SBOM"
		c0, t0 := cpuNow(), time.Now()
		err := batches(keys, paths, 1, func(docs map[string][]byte) error {
			for k, d := range docs {
				res, err := mgr.Match(ctx, d)
				if err != nil {
					return err
				}
				m.Findings[k] = tuples(res.Findings)
			}
			return nil
		})
		if err != nil {
			return err
		}
		m.Wall, m.CPU = time.Since(t0), cpuNow()-c0
	case "dedup":
		m.Name = "(c) deduplicated MatchMany"
		c0, t0 := cpuNow(), time.Now()
		if err := matchMany(); err != nil {
			return err
		}
		m.Wall, m.CPU = time.Since(t0), cpuNow()-c0
		st := mgr.FleetStats()
		m.Extra = fmt.Sprintf("%d distinct packages matched, %d occurrences reused", st.Matched, st.Reused)
	case "rescan":
		m.Name = "(d) rescan after update"
		if err := matchMany(); err != nil {
			return err
		}
		// database A's index is built in the background once the fleet has SBOMs, as in the
		// manager; wait for it so that it is not charged to the update
		if err := mgr.WaitIndexed(ctx); err != nil {
			return err
		}
		archB, err := archive(work, "db-b")
		if err != nil {
			return err
		}
		c0, t0 := cpuNow(), time.Now()
		if _, err := mgr.Import(ctx, archB); err != nil {
			return err
		}
		imported := time.Since(t0)
		changed, err := mgr.RematchChanged(ctx)
		if err != nil {
			return err
		}
		m.Wall, m.CPU = time.Since(t0), cpuNow()-c0
		for k, r := range changed {
			m.Findings[k] = tuples(r.Findings)
		}
		info := mgr.FleetStats().LastRematch
		m.Extra = fmt.Sprintf("import+index+diff %s, rematch %s; %d names touched, %d entries invalidated, %d SBOMs rematched, %d changed",
			imported.Round(time.Millisecond), (m.Wall - imported).Round(time.Millisecond), info.TouchedNames, info.Invalidated, info.Rematched, info.Changed)
		if info.Full {
			m.Full = true
			m.Extra += " (FULL: " + info.Reason + ")"
		}
		// reference for (d): Match on the updated database, untimed
		ref := map[string][]string{}
		err = batches(keys, paths, 1, func(docs map[string][]byte) error {
			for k, d := range docs {
				r, err := mgr.Match(ctx, d)
				if err != nil {
					return err
				}
				ref[k] = tuples(r.Findings)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := writeJSON(filepath.Join(work, "rescan-reference.json"), ref); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown phase")
	}
	return writeJSON(filepath.Join(work, phase+".json"), m)
}
