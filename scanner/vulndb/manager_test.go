package vulndb

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imagetrust/imagetrust/scanner/vulndb/dbtest"
)

var extraVuln = dbtest.Vuln{ID: "GHSA-xxxx-yyyy-zzzz", Severity: "Low", Ecosystem: dbtest.EcosystemNPM,
	Package: "left-pad", Constraint: "< 1.3.0", FixedVersion: "1.3.0"}

func leftPadDoc() []byte { return []byte(spdxDoc("left-pad", "1.1.0", "pkg:npm/left-pad@1.1.0")) }

func generations(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var gens []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), genPrefix) {
			gens = append(gens, e.Name())
		}
	}
	return gens
}

func expectNoNotification(t *testing.T, ch <-chan Status) {
	t.Helper()
	select {
	case s := <-ch:
		t.Fatalf("unexpected notification %+v", s)
	default:
	}
}

func TestImportNotifiesAndSkipsUnchanged(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m, err := New(Config{Dir: dir, ValidateChecksum: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ch, cancel := m.Subscribe()
	defer cancel()

	builtA := time.Now().Add(-2 * time.Hour).UTC().Round(time.Second)
	archiveA := newTestArchive(t, builtA, testVulns)
	changed, err := m.Import(ctx, archiveA)
	if err != nil || !changed {
		t.Fatalf("import A: changed=%v err=%v", changed, err)
	}
	// notify happens inside Import, so the value is already buffered
	select {
	case s := <-ch:
		if !s.Built.Equal(builtA) || s.Source != archiveA || !strings.HasPrefix(s.Checksum, "xxh64:") || !strings.HasPrefix(s.ArchiveDigest, "sha256:") {
			t.Errorf("notification = %+v", s)
		}
	default:
		t.Fatal("no notification after first import")
	}
	stA := m.Status()

	// the same archive again: nothing changes, nobody is notified
	changed, err = m.Import(ctx, archiveA)
	if err != nil || changed {
		t.Fatalf("re-import A: changed=%v err=%v", changed, err)
	}
	expectNoNotification(t, ch)

	// the same release packaged differently (a bare .db file, rebuilt): same schema and build
	// time, so grype would not consider it an update either
	for _, vulns := range [][]dbtest.Vuln{testVulns, dbtestVulnsPlus(extraVuln)} {
		dbPath, err := dbtest.Build(t.TempDir(), builtA, vulns)
		if err != nil {
			t.Fatal(err)
		}
		changed, err = m.Import(ctx, dbPath)
		if err != nil || changed {
			t.Fatalf("import same release as .db file: changed=%v err=%v", changed, err)
		}
	}
	expectNoNotification(t, ch)
	if st := m.Status(); st.Checksum != stA.Checksum || st.Source != archiveA {
		t.Errorf("status changed by a no-op import: %+v vs %+v", st, stA)
	}

	// before B, left-pad is not known
	if res, err := m.Match(ctx, leftPadDoc()); err != nil || len(res.Findings) != 0 {
		t.Fatalf("match on A: %v %+v", err, res)
	}

	builtB := builtA.Add(time.Hour)
	changed, err = m.Import(ctx, newTestArchive(t, builtB, dbtestVulnsPlus(extraVuln)))
	if err != nil || !changed {
		t.Fatalf("import B: changed=%v err=%v", changed, err)
	}
	select {
	case s := <-ch:
		if !s.Built.Equal(builtB) || s.Checksum == stA.Checksum {
			t.Errorf("notification for B = %+v", s)
		}
	default:
		t.Fatal("no notification after importing B")
	}
	res, err := m.Match(ctx, leftPadDoc())
	if err != nil || len(res.Findings) != 1 || res.Findings[0].ID != "GHSA-xxxx-yyyy-zzzz" || !res.DB.Built.Equal(builtB) {
		t.Fatalf("match on B: %v %+v", err, res)
	}
	if gens := generations(t, dir); len(gens) != 1 {
		t.Errorf("generations on disk = %v, want only the active one", gens)
	}

	// a restarted Manager loads what is installed
	m2, err := New(Config{Dir: dir, ValidateChecksum: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if err := m2.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if s1, s2 := m.Status(), m2.Status(); s1.Checksum != s2.Checksum || !s2.Built.Equal(builtB) || s2.ArchiveDigest != s1.ArchiveDigest {
		t.Errorf("reloaded status %+v, want %+v", s2, s1)
	}
	if err := m2.Load(ctx); err != nil {
		t.Errorf("second Load of the active DB: %v", err)
	}
}

func TestSubscribeCoalescesAndCancels(t *testing.T) {
	ctx := context.Background()
	m, err := New(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	slow, cancelSlow := m.Subscribe()
	gone, cancelGone := m.Subscribe()
	cancelGone()
	cancelGone() // idempotent
	if _, ok := <-gone; ok {
		t.Fatal("cancelled subscription channel not closed")
	}

	base := time.Now().Add(-3 * time.Hour).UTC().Round(time.Second)
	for i := 0; i < 3; i++ {
		vulns := testVulns
		if i%2 == 1 {
			vulns = dbtestVulnsPlus(extraVuln)
		}
		if changed, err := m.Import(ctx, newTestArchive(t, base.Add(time.Duration(i)*time.Minute), vulns)); err != nil || !changed {
			t.Fatalf("import %d: changed=%v err=%v", i, changed, err)
		}
	}
	// three changes, one unread value: the latest
	s := <-slow
	if want := base.Add(2 * time.Minute); !s.Built.Equal(want) {
		t.Errorf("coalesced notification built %s, want %s", s.Built, want)
	}
	expectNoNotification(t, slow)
	cancelSlow()
	if _, ok := <-slow; ok {
		t.Error("channel open after cancel")
	}

	// Close ends subscriptions; a later cancel is harmless
	late, cancelLate := m.Subscribe()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-late; ok {
		t.Error("subscription open after Close")
	}
	cancelLate()
	if _, err := m.Match(ctx, leftPadDoc()); !errors.Is(err, ErrNoDB) {
		t.Errorf("match after Close: %v, want ErrNoDB", err)
	}
}

func TestLoadWithoutDB(t *testing.T) {
	dir := t.TempDir()
	m, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	err = m.Load(context.Background())
	if !errors.Is(err, ErrNoDB) || err.Error() != "vulndb: no vulnerability database installed in "+dir {
		t.Fatalf("err = %v, want ErrNoDB", err)
	}
	if st := m.Status(); st.Loaded() || st.Err != err.Error() {
		t.Errorf("status = %+v", st)
	}
}

// TestLoadPlainGrypeCacheDir loads a directory laid out by grype itself (DBRootDir/6/…).
func TestLoadPlainGrypeCacheDir(t *testing.T) {
	root := t.TempDir()
	src, err := New(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, err := src.Import(context.Background(), newTestArchive(t, time.Now(), testVulns)); err != nil {
		t.Fatal(err)
	}
	gen := src.current().root
	if err := os.CopyFS(root, os.DirFS(gen)); err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{Dir: root, ValidateChecksum: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if res, err := m.Match(context.Background(), []byte(spdxDoc("lodash", "4.17.20", "pkg:npm/lodash@4.17.20"))); err != nil || len(res.Findings) != 1 {
		t.Fatalf("match: %v %+v", err, res)
	}
	// a later import goes to a generation and leaves grype's own directory alone
	if _, err := m.Import(context.Background(), newTestArchive(t, time.Now().Add(time.Minute), testVulns)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "6", "vulnerability.db")); err != nil {
		t.Errorf("grype cache dir touched: %v", err)
	}
}

// TestChecksumValidation edits the installed database after import: with ValidateChecksum the
// Manager refuses it with grype's checksum error, without it the edit goes unnoticed.
func TestChecksumValidation(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := newLoadedManager(t, Config{Dir: dir})
	dbFile := filepath.Join(m.current().root, "6", "vulnerability.db")
	m.Close()

	f, err := os.OpenFile(dbFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	f.Close()

	strict, err := New(Config{Dir: dir, ValidateChecksum: true})
	if err != nil {
		t.Fatal(err)
	}
	defer strict.Close()
	err = strict.Load(ctx)
	if !errors.Is(err, ErrInvalidDB) {
		t.Fatalf("err = %v, want ErrInvalidDB", err)
	}
	wantPrefix := "vulndb: vulnerability database is invalid: installed database failed validation (re-import it): bad db checksum (" + dbFile + "): \"xxh64:"
	if !strings.HasPrefix(err.Error(), wantPrefix) {
		t.Errorf("err = %q, want prefix %q", err, wantPrefix)
	}
	if st := strict.Status(); st.Loaded() || st.Err != err.Error() {
		t.Errorf("status = %+v", st)
	}
	if _, err := strict.Match(ctx, leftPadDoc()); !errors.Is(err, ErrNoDB) {
		t.Errorf("match after failed load: %v, want ErrNoDB", err)
	}

	lax, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer lax.Close()
	if err := lax.Load(ctx); err != nil {
		t.Fatalf("load without checksum validation: %v", err)
	}
}

func tarGz(t *testing.T, path string, files map[string]string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	for n, c := range files {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(c))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(c)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestImportInvalidKeepsCurrentDB imports broken archives: each fails with a clear error, the
// active database keeps serving matches and no generation is left behind.
func TestImportInvalidKeepsCurrentDB(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := newLoadedManager(t, Config{Dir: dir})
	before := m.Status()
	tmp := t.TempDir()

	noDB := filepath.Join(tmp, "no-db.tar.gz")
	tarGz(t, noDB, map[string]string{"readme.txt": "no database here"})
	garbageDB := filepath.Join(tmp, "garbage.tar.gz")
	tarGz(t, garbageDB, map[string]string{"vulnerability.db": "not sqlite"})
	notArchive := filepath.Join(tmp, "plain.tar.gz")
	if err := os.WriteFile(notArchive, []byte("plain text"), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, path, want string
	}{
		{"missing archive", filepath.Join(tmp, "absent.tar.gz"), "vulndb: read archive: open " + filepath.Join(tmp, "absent.tar.gz") + ": no such file or directory"},
		{"archive without database", noDB, "vulndb: vulnerability database is invalid: import: failed to hydrate database: not a v6 database: record not found"},
		{"database not sqlite", garbageDB, "vulndb: vulnerability database is invalid: import: failed to hydrate database: "},
		{"not an archive", notArchive, "vulndb: vulnerability database is invalid: import: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			changed, err := m.Import(ctx, tc.path)
			if err == nil || changed {
				t.Fatalf("changed=%v err=%v, want failure", changed, err)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("err = %q, want prefix %q", err, tc.want)
			}
			if tc.name != "missing archive" && !errors.Is(err, ErrInvalidDB) {
				t.Errorf("err %v does not wrap ErrInvalidDB", err)
			}
			st := m.Status()
			if st.Checksum != before.Checksum || st.Err != err.Error() {
				t.Errorf("status = %+v", st)
			}
			if res, err := m.Match(ctx, []byte(spdxDoc("lodash", "4.17.20", "pkg:npm/lodash@4.17.20"))); err != nil || len(res.Findings) != 1 {
				t.Errorf("match after failed import: %v %+v", err, res)
			}
			if gens := generations(t, dir); len(gens) != 1 {
				t.Errorf("generations = %v, want 1", gens)
			}
		})
	}
}

func newRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestImportOCI(t *testing.T) {
	ctx := context.Background()
	reg := newRegistry(t)
	built := time.Now().Add(-time.Hour).UTC().Round(time.Second)
	archive := newTestArchive(t, built, testVulns)
	ref := reg + "/security/grype-db:v6"

	manifestDigest, err := PushArchiveOCI(ctx, ref, archive)
	if err != nil {
		t.Fatal(err)
	}
	// the pushed artifact: one layer that is the archive byte for byte
	parsed, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(parsed)
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest.String() != manifestDigest {
		t.Errorf("manifest digest %s, PushArchiveOCI returned %s", desc.Digest, manifestDigest)
	}
	mf, err := v1.ParseManifest(strings.NewReader(string(desc.Manifest)))
	if err != nil {
		t.Fatal(err)
	}
	archiveDigest, err := fileDigest(archive)
	if err != nil {
		t.Fatal(err)
	}
	if mf.ArtifactType != ArtifactType || len(mf.Layers) != 1 || mf.Layers[0].Digest.String() != archiveDigest ||
		mf.Layers[0].MediaType != LayerMediaTypeGzip || mf.Config.MediaType != "application/vnd.oci.empty.v1+json" {
		t.Errorf("manifest = %s", desc.Manifest)
	}

	dir := t.TempDir()
	m, err := New(Config{Dir: dir, ValidateChecksum: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ch, cancel := m.Subscribe()
	defer cancel()
	changed, err := m.ImportOCI(ctx, ref)
	if err != nil || !changed {
		t.Fatalf("ImportOCI: changed=%v err=%v", changed, err)
	}
	s := <-ch
	if !s.Built.Equal(built) || s.Source != ref || s.ArchiveDigest != archiveDigest {
		t.Errorf("status = %+v", s)
	}
	if res, err := m.Match(ctx, []byte(spdxDoc("lodash", "4.17.20", "pkg:npm/lodash@4.17.20"))); err != nil || len(res.Findings) != 1 {
		t.Fatalf("match: %v %+v", err, res)
	}
	if entries, _ := filepath.Glob(filepath.Join(dir, "oci-download-*")); len(entries) != 0 {
		t.Errorf("download left behind: %v", entries)
	}

	// same artifact again (also by digest): no download, no change
	for _, again := range []string{ref, reg + "/security/grype-db@" + manifestDigest} {
		changed, err = m.ImportOCI(ctx, again)
		if err != nil || changed {
			t.Fatalf("re-import %s: changed=%v err=%v", again, changed, err)
		}
	}
	expectNoNotification(t, ch)

	// a newer database under the same tag
	newer := newTestArchive(t, built.Add(30*time.Minute), dbtestVulnsPlus(extraVuln))
	if _, err := PushArchiveOCI(ctx, ref, newer); err != nil {
		t.Fatal(err)
	}
	if changed, err = m.ImportOCI(ctx, ref); err != nil || !changed {
		t.Fatalf("import newer: changed=%v err=%v", changed, err)
	}
	if res, err := m.Match(ctx, leftPadDoc()); err != nil || len(res.Findings) != 1 {
		t.Fatalf("match on newer: %v %+v", err, res)
	}
}

func TestImportOCIRejectsBadArtifacts(t *testing.T) {
	ctx := context.Background()
	reg := newRegistry(t)
	dir := t.TempDir()
	m := newLoadedManager(t, Config{Dir: dir})
	before := m.Status()

	twoLayers, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(mustRef(t, reg+"/bad/two-layers:1"), twoLayers); err != nil {
		t.Fatal(err)
	}
	oneLayer, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(mustRef(t, reg+"/bad/random:1"), oneLayer); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(plain, []byte("not an archive"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := PushArchiveOCI(ctx, reg+"/bad/plain:1", plain); !errors.Is(err, ErrArtifact) {
		t.Errorf("pushing a text file: %v, want ErrArtifact", err)
	}

	for _, tc := range []struct {
		name, ref string
		kind      error
		want      string
	}{
		{"two layers", reg + "/bad/two-layers:1", ErrArtifact, "vulndb: invalid database artifact: " + reg + "/bad/two-layers:1 has 2 layers, want exactly 1 holding the database archive"},
		{"random layer", reg + "/bad/random:1", ErrInvalidDB, "vulndb: vulnerability database is invalid: import: failed to hydrate database: "},
		{"missing tag", reg + "/bad/absent:1", ErrUpdate, "vulndb: database update failed: fetch " + reg + "/bad/absent:1: GET http://" + reg + "/v2/bad/absent/manifests/1: NAME_UNKNOWN: Unknown name"},
		{"bad reference", "UPPER/Case::", ErrArtifact, "vulndb: invalid database artifact: parse reference: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			changed, err := m.ImportOCI(ctx, tc.ref)
			if err == nil || changed {
				t.Fatalf("changed=%v err=%v, want failure", changed, err)
			}
			if !errors.Is(err, tc.kind) || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("err = %q, want %v with prefix %q", err, tc.kind, tc.want)
			}
			if st := m.Status(); st.Checksum != before.Checksum {
				t.Errorf("active DB changed: %+v", st)
			}
			if gens := generations(t, dir); len(gens) != 1 {
				t.Errorf("generations = %v", gens)
			}
		})
	}
}

func TestImportOCIEnforcesSizeLimit(t *testing.T) {
	ctx := context.Background()
	reg := newRegistry(t)
	archive := newTestArchive(t, time.Now(), testVulns)
	if _, err := PushArchiveOCI(ctx, reg+"/db:1", archive); err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{Dir: t.TempDir(), MaxArchiveBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	_, err = m.ImportOCI(ctx, reg+"/db:1")
	st, _ := os.Stat(archive)
	want := "vulndb: invalid database artifact: " + reg + "/db:1: archive layer is " + strconv.FormatInt(st.Size(), 10) + " bytes, limit is 1024"
	if !errors.Is(err, ErrArtifact) || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
}

// listingServer serves dir over HTTP the way grype's CDN serves databases:
// <base>/v6/latest.json next to the archives it lists.
func listingServer(t *testing.T) (base string, v6dir string) {
	t.Helper()
	root := t.TempDir()
	v6dir = filepath.Join(root, "databases", "v6")
	if err := os.MkdirAll(v6dir, 0o755); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(root)))
	t.Cleanup(srv.Close)
	return srv.URL + "/databases", v6dir
}

func publish(t *testing.T, v6dir string, built time.Time, vulns []dbtest.Vuln) {
	t.Helper()
	archive, err := dbtest.Archive(v6dir, built, vulns)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dbtest.WriteListing(archive, built); err != nil {
		t.Fatal(err)
	}
}

func TestUpdateFromListing(t *testing.T) {
	ctx := context.Background()
	base, v6dir := listingServer(t)
	built := time.Now().Add(-2 * time.Hour).UTC().Round(time.Second)
	publish(t, v6dir, built, testVulns)

	m, err := New(Config{Dir: t.TempDir(), ListingURL: base, ValidateChecksum: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ch, cancel := m.Subscribe()
	defer cancel()

	changed, err := m.Update(ctx)
	if err != nil || !changed {
		t.Fatalf("first update: changed=%v err=%v", changed, err)
	}
	s := <-ch
	if !s.Built.Equal(built) || !strings.HasPrefix(s.Source, base+"/v6/vulnerability-db_v6.1.10_") || strings.Contains(s.Source, "checksum") {
		t.Errorf("status = %+v", s)
	}

	changed, err = m.Update(ctx)
	if err != nil || changed {
		t.Fatalf("second update: changed=%v err=%v", changed, err)
	}
	expectNoNotification(t, ch)

	newer := built.Add(time.Hour)
	publish(t, v6dir, newer, dbtestVulnsPlus(extraVuln))
	changed, err = m.Update(ctx)
	if err != nil || !changed {
		t.Fatalf("update to newer: changed=%v err=%v", changed, err)
	}
	if s := <-ch; !s.Built.Equal(newer) {
		t.Errorf("built = %s, want %s", s.Built, newer)
	}
	if res, err := m.Match(ctx, leftPadDoc()); err != nil || len(res.Findings) != 1 {
		t.Fatalf("match after update: %v %+v", err, res)
	}
}

// TestUpdateFailuresKeepCurrentDB covers an unreachable listing (with credentials and a token
// in the URL that must not leak) and a listing whose archive fails its checksum.
func TestUpdateFailuresKeepCurrentDB(t *testing.T) {
	ctx := context.Background()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := l.Addr().String()
	l.Close()

	t.Run("unreachable", func(t *testing.T) {
		m := newLoadedManager(t, Config{ListingURL: "http://admin:s3cret@" + deadAddr + "/databases", CheckTimeout: 5 * time.Second})
		before := m.Status()
		changed, err := m.Update(ctx)
		if err == nil || changed {
			t.Fatalf("changed=%v err=%v, want failure", changed, err)
		}
		want := "vulndb: database update failed: check listing http://" + deadAddr + "/databases/v6/latest.json: "
		if !errors.Is(err, ErrUpdate) || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("err = %q, want prefix %q and connection refused", err, want)
		}
		for _, secret := range []string{"s3cret", "admin"} {
			if strings.Contains(err.Error(), secret) || strings.Contains(m.Status().Err, secret) {
				t.Errorf("error leaks %q: %q / %q", secret, err, m.Status().Err)
			}
		}
		if st := m.Status(); st.Checksum != before.Checksum || st.Err != err.Error() {
			t.Errorf("status = %+v", st)
		}
		if res, err := m.Match(ctx, []byte(spdxDoc("lodash", "4.17.20", "pkg:npm/lodash@4.17.20"))); err != nil || len(res.Findings) != 1 {
			t.Errorf("match after failed update: %v %+v", err, res)
		}
	})

	t.Run("corrupt archive", func(t *testing.T) {
		base, v6dir := listingServer(t)
		newer := time.Now().UTC().Round(time.Second)
		publish(t, v6dir, newer, dbtestVulnsPlus(extraVuln))
		archives, _ := filepath.Glob(filepath.Join(v6dir, "*.tar.gz"))
		if len(archives) != 1 {
			t.Fatalf("archives = %v", archives)
		}
		// flip the archive after the listing recorded its checksum
		if err := os.WriteFile(archives[0], []byte("tampered"), 0o644); err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		m := newLoadedManager(t, Config{Dir: dir, ListingURL: base})
		before := m.Status()
		changed, err := m.Update(ctx)
		if err == nil || changed || !errors.Is(err, ErrUpdate) {
			t.Fatalf("changed=%v err=%v, want ErrUpdate", changed, err)
		}
		if want := "vulndb: database update failed: import: unable to update vulnerability database: unable to download db: "; !strings.HasPrefix(err.Error(), want) || !strings.Contains(strings.ToLower(err.Error()), "checksums did not match") {
			t.Errorf("err = %q, want prefix %q mentioning the checksum", err, want)
		}
		if st := m.Status(); st.Checksum != before.Checksum {
			t.Errorf("active DB changed: %+v", st)
		}
		if gens := generations(t, dir); len(gens) != 1 {
			t.Errorf("generations = %v", gens)
		}
	})
}

func TestNewValidatesConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no dir", Config{}, "vulndb: Config.Dir is required"},
		{"negative", Config{Dir: t.TempDir(), MaxAge: -time.Second}, "vulndb: MaxAge, MaxSBOMBytes and MaxArchiveBytes must not be negative"},
		{"listing scheme", Config{Dir: t.TempDir(), ListingURL: "ftp://u:p@example.com/x?y=z"}, `vulndb: ListingURL "ftp://example.com/x" must be an http(s) URL`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || err.Error() != tc.want {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestConcurrentMatchesDuringImport runs matches on the shared database from many goroutines
// while a new database is imported; every match must succeed and see exactly one of the two
// databases, and both must be seen. Run with -race.
func TestConcurrentMatchesDuringImport(t *testing.T) {
	ctx := context.Background()
	m := newLoadedManager(t, Config{})
	builtA := m.Status().Built
	builtB := builtA.Add(time.Minute)
	archiveB := newTestArchive(t, builtB, dbtestVulnsPlus(extraVuln))
	doc := []byte(cdxDoc("left-pad", "1.1.0", "pkg:npm/left-pad@1.1.0"))

	const workers = 8
	var wg sync.WaitGroup
	start, imported := make(chan struct{}), make(chan struct{})
	errs := make(chan error, 1024)
	var seenA, seenB, total atomic.Int64
	matchOnce := func() {
		total.Add(1)
		res, err := m.Match(ctx, doc)
		switch {
		case err != nil:
			errs <- err
		case res.DB.Built.Equal(builtA) && len(res.Findings) == 0:
			seenA.Add(1)
		case res.DB.Built.Equal(builtB) && len(res.Findings) == 1 && res.Findings[0].ID == extraVuln.ID:
			seenB.Add(1)
		default:
			errs <- fmt.Errorf("inconsistent result: DB built %s, findings %+v", res.DB.Built, res.Findings)
		}
	}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for {
				select {
				case <-imported:
					matchOnce() // and one on the new database
					return
				default:
					matchOnce()
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(imported)
		<-start
		if changed, err := m.Import(ctx, archiveB); err != nil || !changed {
			errs <- fmt.Errorf("import during matches: changed=%v err=%v", changed, err)
		}
	}()
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d matches: %d on the old database, %d on the new", total.Load(), seenA.Load(), seenB.Load())
	if seenA.Load() == 0 || seenB.Load() < workers {
		t.Errorf("old DB seen %d times, new %d times; want both (new at least %d)", seenA.Load(), seenB.Load(), workers)
	}
	if !m.Status().Built.Equal(builtB) {
		t.Errorf("active DB built %s, want %s", m.Status().Built, builtB)
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
