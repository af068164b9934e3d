package sbom

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

func digestN(i int) string { return fmt.Sprintf("sha256:%064x", i+1) }

// entrySBOM builds a valid SBOM for image digest i whose document is about size bytes.
func entrySBOM(i int, size int) *SBOM {
	doc := []byte(fmt.Sprintf(`{"spdxVersion":"SPDX-2.3","name":"img-%d","packages":[],"pad":"%s"}`, i, strings.Repeat("x", size)))
	return &SBOM{
		Source: SourceGenerated, Format: FormatSPDXJSON, Document: doc, Packages: 0,
		Digest: DocumentDigest(doc), ImageDigest: digestN(i),
		CreatedAt: time.Date(2024, 3, 4, 5, 6, 7, 8, time.UTC), Note: fmt.Sprintf("entry %d", i),
	}
}

// fakeClock advances one minute per reading, so access order is unambiguous in mtimes.
func fakeClock() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Minute)
		return t
	}
}

func mustGet(t *testing.T, c *Cache, i int) *SBOM {
	t.Helper()
	s, ok, err := c.Get(digestN(i))
	if err != nil || !ok {
		t.Fatalf("Get(%d) = ok %v, err %v; want a hit", i, ok, err)
	}
	return s
}

func sameSBOM(a, b *SBOM) bool {
	return a.Source == b.Source && a.Format == b.Format && bytes.Equal(a.Document, b.Document) &&
		a.Packages == b.Packages && a.Digest == b.Digest && a.ImageDigest == b.ImageDigest &&
		a.CreatedAt.Equal(b.CreatedAt) && a.Note == b.Note
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	sort.Strings(out)
	return out
}

func TestCachePutGet(t *testing.T) {
	dir := t.TempDir()
	c, err := NewCache(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if s, ok, err := c.Get(digestN(1)); s != nil || ok || err != nil {
		t.Fatalf("Get on empty cache = %v, %v, %v; want miss", s, ok, err)
	}
	in := entrySBOM(1, 100)
	if err := c.Put(in); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if got := mustGet(t, c, 1); !sameSBOM(got, in) {
		t.Errorf("Get = %+v, want %+v", got, in)
	}
	stem := "sha256-" + strings.TrimPrefix(digestN(1), "sha256:")
	want := []string{stem + "." + strings.TrimPrefix(in.Digest, "sha256:") + ".sbom", stem + ".json"}
	sort.Strings(want)
	if got := dirNames(t, dir); !reflect.DeepEqual(got, want) {
		t.Errorf("files = %q, want %q (no temporary files left)", got, want)
	}
	if c.Len() != 1 || c.Size() <= int64(len(in.Document)) {
		t.Errorf("Len/Size = %d/%d, want 1/more than the document", c.Len(), c.Size())
	}

	// replacing the entry removes the old document
	repl := entrySBOM(1, 50)
	repl.Source = SourceReferrer
	if err := c.Put(repl); err != nil {
		t.Fatalf("Put replacement: %v", err)
	}
	if got := mustGet(t, c, 1); !sameSBOM(got, repl) {
		t.Errorf("after replacement Get = %+v", got)
	}
	if got := dirNames(t, dir); len(got) != 2 {
		t.Errorf("after replacement files = %q, want one document and one sidecar", got)
	}

	if err := c.Delete(digestN(1)); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := c.Get(digestN(1)); ok || c.Len() != 0 || c.Size() != 0 || len(dirNames(t, dir)) != 0 {
		t.Errorf("after Delete: hit %v, Len %d, Size %d, files %q", ok, c.Len(), c.Size(), dirNames(t, dir))
	}
}

func TestCacheRejectsBadInput(t *testing.T) {
	c, err := NewCache(t.TempDir(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	bad := entrySBOM(1, 10)
	bad.Digest = "sha256:" + strings.Repeat("0", 64)
	huge := entrySBOM(2, 2000)
	traversal := entrySBOM(3, 10)
	traversal.ImageDigest = "sha256:../../etc/passwd"
	empty := entrySBOM(4, 10)
	empty.Document = nil

	tests := []struct {
		name string
		s    *SBOM
		want string
	}{
		{"digest mismatch", bad, "document digest is " + DocumentDigest(bad.Document) + " but the SBOM claims sha256:000"},
		{"too large", huge, "SBOM is larger than the cache"},
		{"path traversal", traversal, `invalid image digest "sha256:../../etc/passwd"`},
		{"empty document", empty, "empty document"},
		{"nil", nil, "nil SBOM"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := c.Put(tc.s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Put err = %v, want %q", err, tc.want)
			}
		})
	}
	if !errors.Is(c.Put(huge), ErrTooLarge) {
		t.Errorf("oversized Put is not ErrTooLarge")
	}
	if _, _, err := c.Get("../x"); err == nil {
		t.Errorf("Get with an invalid digest succeeded")
	}
	if c.Len() != 0 {
		t.Errorf("Len = %d after only rejected Puts", c.Len())
	}
	if _, err := NewCache(t.TempDir(), -1); err == nil {
		t.Errorf("NewCache accepted a negative limit")
	}
}

func TestCacheSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	c, err := NewCache(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	var want []*SBOM
	for i := 0; i < 4; i++ {
		s := entrySBOM(i, 10*i)
		want = append(want, s)
		if err := c.Put(s); err != nil {
			t.Fatal(err)
		}
	}
	size := c.Size()
	// an interrupted write and a document whose sidecar never landed
	if err := os.WriteFile(filepath.Join(dir, ".tmp-123"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	orphan := "sha256-" + strings.Repeat("9", 64) + "." + strings.Repeat("8", 64) + ".sbom"
	if err := os.WriteFile(filepath.Join(dir, orphan), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}

	c2, err := NewCache(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if c2.Len() != 4 || c2.Size() != size {
		t.Errorf("after restart Len/Size = %d/%d, want 4/%d", c2.Len(), c2.Size(), size)
	}
	wantDigests := []string{digestN(0), digestN(1), digestN(2), digestN(3)}
	if got := c2.Digests(); !reflect.DeepEqual(got, wantDigests) {
		t.Errorf("Digests = %q, want %q", got, wantDigests)
	}
	for i, w := range want {
		if got := mustGet(t, c2, i); !sameSBOM(got, w) {
			t.Errorf("entry %d after restart = %+v, want %+v", i, got, w)
		}
	}
	for _, n := range dirNames(t, dir) {
		if strings.HasPrefix(n, ".tmp-") || n == orphan {
			t.Errorf("leftover %s not removed at start", n)
		}
	}
}

func TestCacheLRUEviction(t *testing.T) {
	dir := t.TempDir()
	// measure one entry's footprint to size the cache for exactly three
	probe, err := NewCache(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := probe.Put(entrySBOM(0, 1000)); err != nil {
		t.Fatal(err)
	}
	one := probe.Size()

	c, err := NewCache(dir, 3*one+one/2)
	if err != nil {
		t.Fatal(err)
	}
	c.now = fakeClock()
	for i := 0; i < 3; i++ {
		if err := c.Put(entrySBOM(i, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	mustGet(t, c, 0) // 1 is now the least recently used
	if err := c.Put(entrySBOM(3, 1000)); err != nil {
		t.Fatal(err)
	}
	if got, want := c.Digests(), []string{digestN(0), digestN(2), digestN(3)}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after eviction Digests = %q, want %q", got, want)
	}
	if c.Size() > 3*one+one/2 {
		t.Errorf("Size %d over the limit %d", c.Size(), 3*one+one/2)
	}
	if _, ok, _ := c.Get(digestN(1)); ok {
		t.Errorf("evicted entry still served")
	}

	// access order survives a restart through mtimes: 0 was put first but read last, so
	// reopening with room for two must evict 2 (put before 3, never read since)
	mustGet(t, c, 0)
	c2, err := NewCache(dir, 2*one+one/2)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c2.Digests(), []string{digestN(0), digestN(3)}; !reflect.DeepEqual(got, want) {
		t.Errorf("after restart with a smaller limit Digests = %q, want %q (2 was least recently used)", got, want)
	}
}

func TestCacheCorruptionDetected(t *testing.T) {
	dir := t.TempDir()
	c, err := NewCache(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := c.Put(entrySBOM(i, 100)); err != nil {
			t.Fatal(err)
		}
	}
	docPath := func(i int) string {
		s := entrySBOM(i, 100)
		return filepath.Join(dir, "sha256-"+strings.TrimPrefix(s.ImageDigest, "sha256:")+"."+strings.TrimPrefix(s.Digest, "sha256:")+".sbom")
	}

	// same length, one byte flipped: only the digest can tell
	doc, err := os.ReadFile(docPath(0))
	if err != nil {
		t.Fatal(err)
	}
	doc[len(doc)-3] ^= 0x01
	if err := os.WriteFile(docPath(0), doc, 0o600); err != nil {
		t.Fatal(err)
	}
	if s, ok, err := c.Get(digestN(0)); ok || s != nil || err != nil {
		t.Fatalf("corrupt entry: Get = %v, %v, %v; want a miss", s, ok, err)
	}
	if c.Len() != 2 {
		t.Errorf("Len = %d, want the corrupt entry dropped", c.Len())
	}
	for _, n := range dirNames(t, dir) {
		if strings.HasPrefix(n, "sha256-"+strings.TrimPrefix(digestN(0), "sha256:")) {
			t.Errorf("file %s of the corrupt entry left on disk", n)
		}
	}

	// truncated on disk while the process was down: dropped at start
	if err := os.Truncate(docPath(1), 10); err != nil {
		t.Fatal(err)
	}
	// sidecar garbage: dropped at start
	if err := os.WriteFile(filepath.Join(dir, "sha256-"+strings.TrimPrefix(digestN(2), "sha256:")+".json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	c2, err := NewCache(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if c2.Len() != 0 || c2.Size() != 0 {
		t.Errorf("after restart Len/Size = %d/%d, want 0/0", c2.Len(), c2.Size())
	}
	if got := dirNames(t, dir); len(got) != 0 {
		t.Errorf("files of dropped entries left: %q", got)
	}

	// deleted behind the cache's back: a miss, and the entry is forgotten
	c3, err := NewCache(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	s := entrySBOM(5, 10)
	if err := c3.Put(s); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(c3.dir, "sha256-"+strings.TrimPrefix(s.ImageDigest, "sha256:")+"."+strings.TrimPrefix(s.Digest, "sha256:")+".sbom")); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := c3.Get(s.ImageDigest); ok || err != nil || c3.Len() != 0 {
		t.Errorf("after the document vanished: hit %v, err %v, Len %d; want miss, nil, 0", ok, err, c3.Len())
	}
}

func TestCacheConcurrent(t *testing.T) {
	dir := t.TempDir()
	probe, _ := NewCache(t.TempDir(), 0)
	if err := probe.Put(entrySBOM(0, 500)); err != nil {
		t.Fatal(err)
	}
	limit := 4 * probe.Size() // fewer than the keys in play, so eviction runs concurrently
	c, err := NewCache(dir, limit)
	if err != nil {
		t.Fatal(err)
	}

	const keys, workers, rounds = 8, 8, 60
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				k := (w + r) % keys
				switch r % 4 {
				case 0, 1:
					s := entrySBOM(k, 400+w*10) // writers disagree on content: replacements race
					if err := c.Put(s); err != nil {
						errs <- fmt.Errorf("Put: %w", err)
					}
				case 2:
					s, ok, err := c.Get(digestN(k))
					if err != nil {
						errs <- fmt.Errorf("Get: %w", err)
					} else if ok && (s.ImageDigest != digestN(k) || s.Digest != DocumentDigest(s.Document)) {
						errs <- fmt.Errorf("Get(%d) served %s with document digest %s, recorded %s", k, s.ImageDigest, DocumentDigest(s.Document), s.Digest)
					}
				case 3:
					if r%8 == 3 {
						_ = c.Delete(digestN(k))
					} else {
						_ = c.Digests()
						_ = c.Len()
					}
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		// a Put can lose a race with a Delete of the same content; that is reported, not hidden
		if strings.Contains(err.Error(), "document vanished during a concurrent update") {
			continue
		}
		t.Error(err)
	}
	if c.Size() > limit {
		t.Errorf("Size %d over limit %d", c.Size(), limit)
	}
	// the index must agree with the disk
	c2, err := NewCache(dir, limit)
	if err != nil {
		t.Fatal(err)
	}
	if c2.Len() != c.Len() || c2.Size() != c.Size() || !reflect.DeepEqual(c2.Digests(), c.Digests()) {
		t.Errorf("reloaded index %d entries/%d bytes, in memory %d/%d", c2.Len(), c2.Size(), c.Len(), c.Size())
	}
	for _, d := range c2.Digests() {
		if _, ok, err := c2.Get(d); !ok || err != nil {
			t.Errorf("reloaded entry %s: hit %v, err %v", d, ok, err)
		}
	}
	if got := len(dirNames(t, dir)); got != 2*c.Len() {
		t.Errorf("%d files on disk for %d entries", got, c.Len())
	}
}

func TestCachedSource(t *testing.T) {
	img := testDigest(t, "ab")
	c, err := NewCache(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	next := &staticSource{name: "generate", sbom: sbomFor(img, SourceGenerated)}
	cs := CachedSource{Cache: c, Next: next}

	first, err := cs.Fetch(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	second, err := cs.Fetch(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	if next.calls != 1 {
		t.Errorf("next called %d times, want 1 (second Fetch is a hit)", next.calls)
	}
	if !sameSBOM(first, second) || second.Source != SourceGenerated {
		t.Errorf("cached SBOM differs: %+v vs %+v", first, second)
	}

	// a failing next is passed through and nothing is cached
	other := testDigest(t, "cd")
	failing := CachedSource{Cache: c, Next: &staticSource{name: "generate", err: errors.New("boom")}}
	if _, err := failing.Fetch(context.Background(), other); err == nil || err.Error() != "boom" {
		t.Errorf("err = %v, want boom", err)
	}
	if c.Len() != 1 {
		t.Errorf("Len = %d, want 1", c.Len())
	}

	// an answer for another image is refused, not cached under either digest
	wrong := CachedSource{Cache: c, Next: &staticSource{name: "generate", sbom: sbomFor(img, SourceGenerated)}}
	if _, err := wrong.Fetch(context.Background(), other); err == nil || !strings.Contains(err.Error(), "returned an SBOM for "+img.DigestStr()) {
		t.Errorf("err = %v, want a digest mismatch", err)
	}

	// a cache that cannot hold the SBOM still answers, and says so
	tiny, err := NewCache(t.TempDir(), 10)
	if err != nil {
		t.Fatal(err)
	}
	s, err := CachedSource{Cache: tiny, Next: next}.Fetch(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.Note, "not cached: sbom cache: SBOM is larger than the cache") {
		t.Errorf("Note = %q, want the cache failure", s.Note)
	}
}

// BenchmarkCachedVsGenerate compares serving an SBOM from the cache with generating it.
func BenchmarkCachedVsGenerate(b *testing.B) {
	host := testRegistry(b, nil)
	img := pushImage(b, host, "app", debianLayer(b), appLayer(b))
	gen := &Generator{}
	var genNs, hitNs float64

	b.Run("generate", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := gen.Fetch(context.Background(), img); err != nil {
				b.Fatal(err)
			}
		}
		genNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("cache-hit", func(b *testing.B) {
		c, err := NewCache(b.TempDir(), 0)
		if err != nil {
			b.Fatal(err)
		}
		cs := CachedSource{Cache: c, Next: gen}
		if _, err := cs.Fetch(context.Background(), img); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := cs.Fetch(context.Background(), img); err != nil {
				b.Fatal(err)
			}
		}
		hitNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	if genNs > 0 && hitNs > 0 {
		b.Logf("generate %.1f ms/op, cache hit %.3f ms/op: cache hit is %.0fx faster", genNs/1e6, hitNs/1e6, genNs/hitNs)
	}
}
