package controllers

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner/registry/registrytest"
	"github.com/imagetrust/imagetrust/scanner/verify/signtest"
	"github.com/imagetrust/imagetrust/scanner/vulndb/dbtest"
)

// BenchmarkDBChangePropagation measures how long a vulnerability-DB change takes to reach the
// reports it affects, with the Engine's work priorities and, as the baseline in the same run,
// with one priority for everything (FIFO) — each once with an idle queue and once with every
// image's scheduled re-verification queued just before the change. The fleet is
// IMAGETRUST_BENCH_IMAGES images (default 200) found by a RegistryScan, signed and with attested
// SBOMs, a fifth of them affected by each change, behind a registry that answers every request
// after IMAGETRUST_BENCH_LATENCY (default 10ms). Run it with -benchtime=1x:
//
//	go test ./controllers -run '^$' -bench DBChangePropagation -benchtime 1x
func BenchmarkDBChangePropagation(b *testing.B) {
	n := envInt(b, "IMAGETRUST_BENCH_IMAGES", 200)
	latency := envDuration(b, "IMAGETRUST_BENCH_LATENCY", 10*time.Millisecond)
	for _, mode := range []struct {
		name string
		fifo bool
	}{{"priorities", false}, {"fifo", true}} {
		b.Run(mode.name, func(b *testing.B) {
			f := newPropagationFleet(b, n, latency, mode.fifo)
			for b.Loop() {
				idle := f.change(0, false)
				loaded := f.change(1, true)
				b.ReportMetric(idle.elapsed.Seconds(), "s-idle")
				b.ReportMetric(loaded.elapsed.Seconds(), "s-loaded")
				b.ReportMetric(float64(loaded.requests), "requests-loaded")
				b.Logf("%s, %d images (%d affected): idle %.2fs (%d registry requests), with re-verification load %.2fs (%d registry requests)",
					mode.name, n, len(f.affected), idle.elapsed.Seconds(), idle.requests, loaded.elapsed.Seconds(), loaded.requests)
			}
		})
	}
}

// propagationFleet is a running manager with a fleet of assessed images.
type propagationFleet struct {
	h        *harness
	images   []name.Digest
	affected []name.Digest // the images with bash
	dbs      []string      // archives of the successive changes
	policy   string
}

// propagation is one measured DB change.
type propagation struct {
	elapsed  time.Duration
	requests int
}

// newDB is what change i adds: a Critical in bash, which a fifth of the images have.
func newDBVuln(i int) dbtest.Vuln {
	return dbtest.Vuln{ID: fmt.Sprintf("CVE-2027-%04d", i), Severity: "Critical", Ecosystem: dbtest.EcosystemDeb,
		Package: "bash", Constraint: "< 5.2.15-3", FixedVersion: "5.2.15-3"}
}

func newPropagationFleet(b *testing.B, n int, latency time.Duration, fifo bool) *propagationFleet {
	h := newHarness(b, "fleet")
	h.labelNamespace("fleet", map[string]string{"imagetrust-test/secure": "true"})
	h.tune = func(o *Options) {
		o.fifo = fifo
		o.ReportGracePeriod = 24 * time.Hour
	}
	f := &propagationFleet{h: h}
	// five kinds of content: the first with bash (affected by every change), the others without
	var docs [][]byte
	for k := range 5 {
		pkgs := debianPkgs[:2]
		if k == 0 {
			pkgs = debianPkgs
		}
		ref := h.push(fmt.Sprintf("kinds/k%d:1", k), registrytest.DebianImage(append(pkgs, registrytest.Pkg{Name: fmt.Sprintf("kind-%d", k), Version: "1"})))
		docs = append(docs, syftSBOM(b, ref))
	}
	opts := h.ociOpts()
	for i := range n {
		img := registrytest.ImageFromLayers(registrytest.LayerFromFiles(map[string]string{"etc/id": strconv.Itoa(i)}))
		d := h.push(fmt.Sprintf("fleet/app:t%05d", i), img)
		if err := signtest.SignImage(h.ctx, d, h.key, opts...); err != nil {
			b.Fatal(err)
		}
		if err := signtest.Attest(h.ctx, d, d, "https://syft.dev/bom", docs[i%5], h.key, opts...); err != nil {
			b.Fatal(err)
		}
		f.images = append(f.images, d)
		if i%5 == 0 {
			f.affected = append(f.affected, d)
		}
	}
	vulns := baseVulns
	for i := range 2 {
		vulns = append(vulns, newDBVuln(i))
		archive, err := dbtest.Archive(filepath.Join(b.TempDir(), fmt.Sprint("db", i)), time.Now().Add(time.Duration(i-1)*time.Minute), vulns)
		if err != nil {
			b.Fatal(err)
		}
		f.dbs = append(f.dbs, archive)
	}
	pol := h.keyPolicy("propagation")
	f.policy = pol.Name
	h.create(pol)
	h.create(&securityv1alpha1.RegistryScan{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.ns["fleet"], Name: "fleet"},
		Spec:       securityv1alpha1.RegistryScanSpec{Repositories: []string{h.reg.Repo("fleet/app")}, Insecure: true, Schedule: "@every 24h"},
	})
	h.reg.AddFault(registrytest.Fault{Status: -1, Times: -1, Delay: latency})
	h.start()
	f.waitReports(10*time.Minute, f.images, func(r *securityv1alpha1.ImageTrustReport) bool { return isReady(r) == nil })
	h.waitIdle()
	return f
}

// change installs DB change i, after queueing every image's re-verification when loaded, and
// measures until every affected report lists its vulnerability.
func (f *propagationFleet) change(i int, loaded bool) propagation {
	h := f.h
	id := newDBVuln(i).ID
	if loaded {
		if q := h.ctrls.Engine.ReverifyPolicy(f.policy); q != len(f.images) {
			h.t.Fatalf("re-verification queued %d images, want %d", q, len(f.images))
		}
	}
	before := h.reg.Counts().Total
	start := time.Now()
	copyFile(h.t, f.dbs[i], h.archive)
	h.ctrls.CheckDBArchive(h.ctx)
	f.waitReports(10*time.Minute, f.affected, func(r *securityv1alpha1.ImageTrustReport) bool { return hasFinding(r, id) })
	p := propagation{elapsed: time.Since(start), requests: h.reg.Counts().Total - before}
	h.waitIdle()
	return p
}

// waitReports polls until the report of every image of imgs satisfies ok.
func (f *propagationFleet) waitReports(timeout time.Duration, imgs []name.Digest, ok func(*securityv1alpha1.ImageTrustReport) bool) {
	f.h.eventually(timeout, "fleet reports", func() error {
		rs, err := f.h.reports("fleet")
		if err != nil {
			return err
		}
		for _, d := range imgs {
			r := rs[d.DigestStr()]
			if r == nil || !ok(r) {
				return fmt.Errorf("report of %s not there yet", d.DigestStr())
			}
		}
		return nil
	})
}

func hasFinding(r *securityv1alpha1.ImageTrustReport, id string) bool {
	for _, f := range r.Status.TopFindings {
		if f.ID == id {
			return true
		}
	}
	return false
}

func envInt(b *testing.B, key string, def int) int {
	if v := os.Getenv(key); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatalf("%s: %v", key, err)
		}
		return n
	}
	return def
}

func envDuration(b *testing.B, key string, def time.Duration) time.Duration {
	if v := os.Getenv(key); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("%s: %v", key, err)
		}
		return d
	}
	return def
}
