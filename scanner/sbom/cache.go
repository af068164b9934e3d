package sbom

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Cache is an on-disk SBOM cache keyed by image digest. An image digest names immutable content,
// so its SBOM never goes stale; entries leave only by LRU eviction or Delete.
//
// Layout, one entry per image digest:
//
//	<alg>-<image hex>.<doc hex>.sbom   the document, named by its own digest
//	<alg>-<image hex>.json             metadata sidecar; its presence commits the entry
//
// Both are written to a temporary file, synced and renamed, so a crash leaves either the old
// entry or the new one. Naming documents by content means a reader racing a replacement opens
// either the old file or nothing, never the new bytes against the old digest. The index is
// rebuilt from the directory on start; access order is persisted as the document's mtime.
// A Cache owns its directory: two processes must not share one.
type Cache struct {
	dir      string
	maxBytes int64
	now      func() time.Time

	mu      sync.Mutex
	entries map[string]*cacheEntry
	size    int64
	clock   uint64 // orders accesses within the process; mtimes order them across restarts
}

type cacheEntry struct {
	meta    cacheMeta
	docFile string
	bytes   int64 // document + sidecar
	access  uint64
}

// cacheMeta is the sidecar: the SBOM minus its document.
type cacheMeta struct {
	Version     int       `json:"version"`
	Source      string    `json:"source"`
	Format      string    `json:"format"`
	Packages    int       `json:"packages"`
	Digest      string    `json:"digest"`
	ImageDigest string    `json:"imageDigest"`
	CreatedAt   time.Time `json:"createdAt"`
	Note        string    `json:"note,omitempty"`
	Size        int64     `json:"size"`
}

const (
	cacheMetaVersion = 1
	sidecarExt       = ".json"
	docExt           = ".sbom"
	tmpPrefix        = ".tmp-"
)

// ErrTooLarge is returned by Put for an SBOM that could never fit within the cache's limit.
var ErrTooLarge = errors.New("SBOM is larger than the cache")

// NewCache opens (creating if needed) a cache in dir holding at most maxBytes of documents and
// sidecars; maxBytes 0 means unlimited. Leftovers of interrupted writes and files that belong to
// no entry are removed, and the least recently used entries are evicted if the limit shrank.
func NewCache(dir string, maxBytes int64) (*Cache, error) {
	if maxBytes < 0 {
		return nil, fmt.Errorf("sbom cache: negative size limit %d", maxBytes)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sbom cache: %w", err)
	}
	c := &Cache{dir: dir, maxBytes: maxBytes, now: time.Now, entries: map[string]*cacheEntry{}}
	if err := c.load(); err != nil {
		return nil, fmt.Errorf("sbom cache: loading %s: %w", dir, err)
	}
	return c, nil
}

// keyOf validates an image digest and returns its file-name stem ("sha256-<hex>"); validation
// keeps a hostile digest string from naming a path outside the directory.
func keyOf(imageDigest string) (string, error) {
	h, err := v1.NewHash(imageDigest)
	if err != nil {
		return "", fmt.Errorf("invalid image digest %q: %w", imageDigest, err)
	}
	return h.Algorithm + "-" + h.Hex, nil
}

func docFileName(stem, docDigest string) (string, error) {
	h, err := v1.NewHash(docDigest)
	if err != nil || h.Algorithm != "sha256" {
		return "", fmt.Errorf("invalid document digest %q", docDigest)
	}
	return stem + "." + h.Hex + docExt, nil
}

// load rebuilds the index from the directory.
func (c *Cache) load() error {
	des, err := os.ReadDir(c.dir)
	if err != nil {
		return err
	}
	type loaded struct {
		stem  string
		e     *cacheEntry
		mtime time.Time
	}
	var found []loaded
	referenced := map[string]bool{}
	for _, de := range des {
		n := de.Name()
		if strings.HasPrefix(n, tmpPrefix) {
			_ = os.Remove(filepath.Join(c.dir, n)) // an interrupted write
			continue
		}
		if !strings.HasSuffix(n, sidecarExt) || de.IsDir() {
			continue
		}
		stem := strings.TrimSuffix(n, sidecarExt)
		e, mtime, ok := c.loadEntry(stem)
		if !ok {
			c.removeFiles(stem, "")
			continue
		}
		referenced[e.docFile] = true
		found = append(found, loaded{stem: stem, e: e, mtime: mtime})
	}
	// documents whose sidecar never got written (or was dropped above)
	for _, de := range des {
		n := de.Name()
		if strings.HasSuffix(n, docExt) && !referenced[n] {
			_ = os.Remove(filepath.Join(c.dir, n))
		}
	}
	sort.Slice(found, func(i, j int) bool {
		if !found[i].mtime.Equal(found[j].mtime) {
			return found[i].mtime.Before(found[j].mtime)
		}
		return found[i].stem < found[j].stem
	})
	for _, l := range found {
		c.clock++
		l.e.access = c.clock
		c.entries[l.stem] = l.e
		c.size += l.e.bytes
	}
	c.evictLocked("")
	return nil
}

// loadEntry reads one sidecar and checks it against its document's presence and size. The
// document's digest is checked on Get, not here, so start-up does not read every document.
func (c *Cache) loadEntry(stem string) (*cacheEntry, time.Time, bool) {
	raw, err := os.ReadFile(filepath.Join(c.dir, stem+sidecarExt))
	if err != nil {
		return nil, time.Time{}, false
	}
	var m cacheMeta
	if err := json.Unmarshal(raw, &m); err != nil || m.Version != cacheMetaVersion {
		return nil, time.Time{}, false
	}
	if k, err := keyOf(m.ImageDigest); err != nil || k != stem {
		return nil, time.Time{}, false
	}
	docFile, err := docFileName(stem, m.Digest)
	if err != nil {
		return nil, time.Time{}, false
	}
	fi, err := os.Stat(filepath.Join(c.dir, docFile))
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != m.Size {
		return nil, time.Time{}, false
	}
	return &cacheEntry{meta: m, docFile: docFile, bytes: m.Size + int64(len(raw))}, fi.ModTime(), true
}

// Get returns the cached SBOM for imageDigest. A document that no longer matches its recorded
// digest is removed and reported as a miss, never served.
func (c *Cache) Get(imageDigest string) (*SBOM, bool, error) {
	stem, err := keyOf(imageDigest)
	if err != nil {
		return nil, false, err
	}
	// a concurrent replacement can delete the file between lookup and open: look up again
	for attempt := 0; attempt < 3; attempt++ {
		c.mu.Lock()
		e, ok := c.entries[stem]
		var meta cacheMeta
		var docFile string
		if ok {
			meta, docFile = e.meta, e.docFile
		}
		c.mu.Unlock()
		if !ok {
			return nil, false, nil
		}

		doc, err := readLimited(filepath.Join(c.dir, docFile), meta.Size)
		if errors.Is(err, os.ErrNotExist) {
			// replaced meanwhile (look again) or deleted behind our back (drop the entry)
			c.dropIfCurrent(stem, docFile)
			continue
		}
		if err != nil {
			return nil, false, fmt.Errorf("sbom cache: reading %s: %w", imageDigest, err)
		}
		if int64(len(doc)) != meta.Size || DocumentDigest(doc) != meta.Digest {
			c.dropIfCurrent(stem, docFile)
			return nil, false, nil
		}

		now := c.now()
		c.mu.Lock()
		if cur, ok := c.entries[stem]; ok && cur.docFile == docFile {
			c.clock++
			cur.access = c.clock
			// persisted access time, so LRU order survives a restart; best effort
			_ = os.Chtimes(filepath.Join(c.dir, docFile), now, now)
		}
		c.mu.Unlock()
		return &SBOM{
			Source:      meta.Source,
			Format:      meta.Format,
			Document:    doc,
			Packages:    meta.Packages,
			Digest:      meta.Digest,
			ImageDigest: meta.ImageDigest,
			CreatedAt:   meta.CreatedAt,
			Note:        meta.Note,
		}, true, nil
	}
	return nil, false, nil
}

// readLimited reads a file expected to be size bytes, refusing to read far beyond it.
func readLimited(path string, size int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, size+1))
}

// dropIfCurrent removes a corrupt entry unless it was replaced meanwhile.
func (c *Cache) dropIfCurrent(stem, docFile string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[stem]; ok && e.docFile == docFile {
		c.removeLocked(stem)
	}
}

// Put stores s under s.ImageDigest, replacing any previous entry, then evicts least recently
// used entries until the cache fits its limit.
func (c *Cache) Put(s *SBOM) error {
	if s == nil {
		return errors.New("sbom cache: nil SBOM")
	}
	stem, err := keyOf(s.ImageDigest)
	if err != nil {
		return fmt.Errorf("sbom cache: %w", err)
	}
	if len(s.Document) == 0 {
		return errors.New("sbom cache: empty document")
	}
	digest := DocumentDigest(s.Document)
	if s.Digest != "" && s.Digest != digest {
		return fmt.Errorf("sbom cache: document digest is %s but the SBOM claims %s", digest, s.Digest)
	}
	docFile, err := docFileName(stem, digest)
	if err != nil {
		return fmt.Errorf("sbom cache: %w", err)
	}
	meta := cacheMeta{
		Version: cacheMetaVersion, Source: s.Source, Format: s.Format, Packages: s.Packages,
		Digest: digest, ImageDigest: s.ImageDigest, CreatedAt: s.CreatedAt, Note: s.Note,
		Size: int64(len(s.Document)),
	}
	raw, err := json.Marshal(meta)
	if err != nil {
		return fmt.Errorf("sbom cache: %w", err)
	}
	total := meta.Size + int64(len(raw))
	if c.maxBytes > 0 && total > c.maxBytes {
		return fmt.Errorf("sbom cache: %w: %d bytes, limit %d", ErrTooLarge, total, c.maxBytes)
	}

	// the document is content-addressed, so writing it outside the lock cannot clash with a reader
	if err := c.writeAtomic(docFile, s.Document); err != nil {
		return fmt.Errorf("sbom cache: writing document: %w", err)
	}
	now := c.now()
	_ = os.Chtimes(filepath.Join(c.dir, docFile), now, now) // the access time LRU order restarts from

	c.mu.Lock()
	defer c.mu.Unlock()
	// a concurrent Delete or replacement of an entry with the same document may have removed
	// the file just written; committing a sidecar that points nowhere would be a phantom entry
	if _, err := os.Stat(filepath.Join(c.dir, docFile)); err != nil {
		return fmt.Errorf("sbom cache: document vanished during a concurrent update, not cached: %w", err)
	}
	// the sidecar rename and the index change happen together so they always agree
	if err := c.writeAtomic(stem+sidecarExt, raw); err != nil {
		if old, ok := c.entries[stem]; !ok || old.docFile != docFile {
			_ = os.Remove(filepath.Join(c.dir, docFile))
		}
		return fmt.Errorf("sbom cache: writing metadata: %w", err)
	}
	if old, ok := c.entries[stem]; ok {
		c.size -= old.bytes
		if old.docFile != docFile {
			_ = os.Remove(filepath.Join(c.dir, old.docFile))
		}
	}
	c.clock++
	c.entries[stem] = &cacheEntry{meta: meta, docFile: docFile, bytes: total, access: c.clock}
	c.size += total
	c.evictLocked(stem)
	return nil
}

// writeAtomic writes data to name in the cache directory via a synced temporary file and rename.
func (c *Cache) writeAtomic(name string, data []byte) error {
	f, err := os.CreateTemp(c.dir, tmpPrefix+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, filepath.Join(c.dir, name))
	}
	if werr != nil {
		_ = os.Remove(tmp)
		return werr
	}
	// make the rename itself durable; failure only weakens crash safety, the entry is written
	if d, err := os.Open(c.dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// evictLocked removes least recently used entries, never keep, until the cache fits.
func (c *Cache) evictLocked(keep string) {
	if c.maxBytes <= 0 || c.size <= c.maxBytes {
		return
	}
	order := make([]string, 0, len(c.entries))
	for stem := range c.entries {
		if stem != keep {
			order = append(order, stem)
		}
	}
	sort.Slice(order, func(i, j int) bool { return c.entries[order[i]].access < c.entries[order[j]].access })
	for _, stem := range order {
		if c.size <= c.maxBytes {
			return
		}
		c.removeLocked(stem)
	}
}

// removeLocked drops an entry from the index and the disk (sidecar first, which uncommits it).
func (c *Cache) removeLocked(stem string) {
	e, ok := c.entries[stem]
	if !ok {
		return
	}
	delete(c.entries, stem)
	c.size -= e.bytes
	c.removeFiles(stem, e.docFile)
}

func (c *Cache) removeFiles(stem, docFile string) {
	_ = os.Remove(filepath.Join(c.dir, stem+sidecarExt))
	if docFile != "" {
		_ = os.Remove(filepath.Join(c.dir, docFile))
	}
}

// Delete removes the entry for imageDigest, if any.
func (c *Cache) Delete(imageDigest string) error {
	stem, err := keyOf(imageDigest)
	if err != nil {
		return fmt.Errorf("sbom cache: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removeLocked(stem)
	return nil
}

// Len returns the number of cached SBOMs.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// Size returns the bytes the cache's entries occupy on disk (documents plus sidecars).
func (c *Cache) Size() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size
}

// Digests returns the cached image digests, sorted, e.g. to rematch every SBOM after a
// vulnerability database update.
func (c *Cache) Digests() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.entries))
	for _, e := range c.entries {
		out = append(out, e.meta.ImageDigest)
	}
	sort.Strings(out)
	return out
}
