package sbom

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imagetrust/imagetrust/scanner/registry"
)

const dpkgStatus = `Package: base-files
Status: install ok installed
Priority: required
Section: admin
Installed-Size: 340
Maintainer: Santiago Vila <sanvila@debian.org>
Architecture: amd64
Multi-Arch: foreign
Version: 12.4+deb12u5
Replaces: base, dpkg (<= 1.15.0), miscutils
Provides: base
Pre-Depends: awk
Breaks: debian-security-support (<< 2019.04.25), initscripts (<< 2.88dsf-13.3), sendfile (<< 2.1b.20080616-5.2~)
Conffiles:
 /etc/debian_version 1d3b2fcd7cdb0cac1f4a2ea1d7e5d2b8
 /etc/issue 1e3a4a2d8c1c5b5b7e7a0c3f0b9d4a61
Description: Debian base system miscellaneous files
 This package contains the basic filesystem hierarchy of a Debian system, and
 several important miscellaneous files, such as /etc/debian_version,
 /etc/host.conf, /etc/issue, /etc/motd, /etc/profile, and others,
 and the text of several common licenses in use on Debian systems.
Homepage: https://tracker.debian.org/pkg/base-files

Package: libc6
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 12986
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u4
Depends: libgcc-s1
Recommends: libidn2-0 (>= 2.0.5~)
Suggests: glibc-doc, debconf | debconf-2.0, libc-l10n, locales, libnss-nis, libnss-nisplus
Breaks: busybox (<< 1.30.1-6), fakeroot (<< 1.25.3-1.1), hurd (<< 1:0.9.git20220301-2)
Conffiles:
 /etc/ld.so.conf.d/x86_64-linux-gnu.conf d4e7a7b88a71b5ffd9e2644e71a0cfab
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system. This package includes shared versions of the standard C library
 and the standard math library, as well as many others.
Homepage: https://www.gnu.org/software/libc/libc.html

Package: libold1
Status: deinstall ok config-files
Priority: optional
Section: libs
Installed-Size: 12
Maintainer: Nobody <nobody@example.org>
Architecture: amd64
Version: 0.9-1
Description: removed library whose configuration files remain
 Not installed any more.

Package: zlib1g
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 168
Maintainer: Mark Brown <broonie@debian.org>
Architecture: amd64
Multi-Arch: same
Source: zlib
Version: 1:1.2.13.dfsg-1
Provides: libz1
Depends: libc6 (>= 2.14)
Breaks: libxml2 (<< 2.7.6.dfsg-2), texlive-binaries (<< 2009-12)
Conflicts: zlib1 (<= 1:1.0.4-7)
Description: compression library - runtime
 zlib is a library implementing the deflate compression method found
 in gzip and PKZIP.  This package includes the shared library.
Homepage: http://zlib.net/
`

const bookwormOSRelease = `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
`

const goMod = `module example.com/app

go 1.22

require (
	github.com/google/uuid v1.6.0
	golang.org/x/text v0.14.0 // indirect
)
`

// zlibCopyright is a copyright file without DEP-5 structure, so Syft must classify its text.
const zlibCopyright = `This is Debian's prepackaged version of the zlib compression library.

Copyright (C) 1995-2022 Jean-loup Gailly and Mark Adler

  This software is provided 'as-is', without any express or implied
  warranty.  In no event will the authors be held liable for any damages
  arising from the use of this software.

  Permission is granted to anyone to use this software for any purpose,
  including commercial applications, and to alter it and redistribute it
  freely, subject to the following restrictions:

  1. The origin of this software must not be misrepresented; you must not
     claim that you wrote the original software. If you use this software
     in a product, an acknowledgment in the product documentation would be
     appreciated but is not required.
  2. Altered source versions must be plainly marked as such, and must not be
     misrepresented as being the original software.
  3. This notice may not be removed or altered from any source distribution.
`

func debianLayer(t testing.TB) v1.Layer {
	return tarLayer(t, map[string]string{
		"usr/share/doc/zlib1g/copyright": zlibCopyright,
		"etc/os-release":                 bookwormOSRelease,
		"etc/debian_version":             "12.5\n",
		"var/lib/dpkg/status":            dpkgStatus,
		"usr/share/doc/README":           "placeholder\n",
		"usr/lib/os-release.md":          "not an os-release file\n",
	})
}

func appLayer(t testing.TB) v1.Layer {
	return tarLayer(t, map[string]string{
		"app/go.mod":                             goMod,
		"app/main.go":                            "package main\n\nfunc main() {}\n",
		"app/node_modules/left-pad/package.json": `{"name":"left-pad","version":"1.3.0","license":"WTFPL","main":"index.js"}`,
		"app/node_modules/left-pad/index.js":     "module.exports = leftPad;\n",
	})
}

// syftView is the part of a Syft JSON document the tests look at.
type syftView struct {
	Artifacts []struct {
		Name    string `json:"name"`
		Version string `json:"version"`
		Type    string `json:"type"`
		FoundBy string `json:"foundBy"`
		PURL    string `json:"purl"`
		// Licenses found; Syft's license classifier names zlib's text "Zlib"
		Licenses []struct {
			Value          string `json:"value"`
			SPDXExpression string `json:"spdxExpression"`
		} `json:"licenses"`
	} `json:"artifacts"`
	Distro struct {
		ID              string `json:"id"`
		VersionID       string `json:"versionID"`
		VersionCodename string `json:"versionCodename"`
	} `json:"distro"`
}

func parseSyft(t *testing.T, doc []byte) syftView {
	t.Helper()
	var v syftView
	if err := json.Unmarshal(doc, &v); err != nil {
		t.Fatalf("generated document is not Syft JSON: %v", err)
	}
	return v
}

// pkgList renders "type name version [foundBy]" sorted, for exact comparison.
func pkgList(v syftView) []string {
	var out []string
	for _, a := range v.Artifacts {
		out = append(out, fmt.Sprintf("%s %s %s [%s]", a.Type, a.Name, a.Version, a.FoundBy))
	}
	sort.Strings(out)
	return out
}

func checkGenerated(t *testing.T, s *SBOM, img name.Digest, wantPkgs int) {
	t.Helper()
	if s.Source != SourceGenerated || s.Format != FormatSyftJSON {
		t.Errorf("source/format = %q/%q, want %q/%q", s.Source, s.Format, SourceGenerated, FormatSyftJSON)
	}
	if s.ImageDigest != img.DigestStr() {
		t.Errorf("ImageDigest = %q, want %q", s.ImageDigest, img.DigestStr())
	}
	if s.Digest != DocumentDigest(s.Document) {
		t.Errorf("Digest = %q, want digest of the document %q", s.Digest, DocumentDigest(s.Document))
	}
	if s.Packages != wantPkgs {
		t.Errorf("Packages = %d, want %d", s.Packages, wantPkgs)
	}
	if s.CreatedAt.IsZero() || time.Since(s.CreatedAt) > time.Minute {
		t.Errorf("CreatedAt = %v, want about now", s.CreatedAt)
	}
}

// isolateTemp points the process temp dir at a fresh directory so leftovers can be counted.
func isolateTemp(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir)
	return dir
}

// leftovers lists everything under dir.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestGeneratorDebianImage(t *testing.T) {
	tmp := isolateTemp(t)
	host := testRegistry(t, nil)
	img := pushImage(t, host, "debian", debianLayer(t))

	s, err := (&Generator{}).Fetch(context.Background(), img)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	checkGenerated(t, s, img, 3)
	v := parseSyft(t, s.Document)
	want := []string{
		"deb base-files 12.4+deb12u5 [dpkg-db-cataloger]",
		"deb libc6 2.36-9+deb12u4 [dpkg-db-cataloger]",
		"deb zlib1g 1:1.2.13.dfsg-1 [dpkg-db-cataloger]",
	}
	if got := pkgList(v); !reflect.DeepEqual(got, want) {
		t.Errorf("packages:\n got %q\nwant %q", got, want)
	}
	// syft refines VERSION_ID from /etc/debian_version
	if v.Distro.ID != "debian" || v.Distro.VersionID != "12.5" || v.Distro.VersionCodename != "bookworm" {
		t.Errorf("distro = %+v, want debian 12.5 bookworm", v.Distro)
	}
	wantPURL := "pkg:deb/debian/zlib1g@1%3A1.2.13.dfsg-1?arch=amd64&distro=debian-12.5&upstream=zlib"
	for _, a := range v.Artifacts {
		if a.Name != "zlib1g" {
			continue
		}
		if a.PURL != wantPURL {
			t.Errorf("zlib1g purl = %q, want %q", a.PURL, wantPURL)
		}
		// only the license classifier (shared across generations) can name this text
		if len(a.Licenses) != 1 || a.Licenses[0].SPDXExpression != "Zlib" {
			t.Errorf("zlib1g licenses = %+v, want one classified as Zlib", a.Licenses)
		}
	}
	if left := leftovers(t, tmp); len(left) != 0 {
		t.Errorf("temp files left behind after success: %q", left)
	}
}

func TestGeneratorGoModAndNPM(t *testing.T) {
	host := testRegistry(t, nil)
	img := pushImage(t, host, "app", debianLayer(t), appLayer(t))

	tests := []struct {
		name  string
		extra []string
		want  []string
	}{
		{
			name:  "default adds go-module-file-cataloger",
			extra: nil,
			want: []string{
				"deb base-files 12.4+deb12u5 [dpkg-db-cataloger]",
				"deb libc6 2.36-9+deb12u4 [dpkg-db-cataloger]",
				"deb zlib1g 1:1.2.13.dfsg-1 [dpkg-db-cataloger]",
				"go-module github.com/google/uuid v1.6.0 [go-module-file-cataloger]",
				"go-module golang.org/x/text v0.14.0 [go-module-file-cataloger]",
				"npm left-pad 1.3.0 [javascript-package-cataloger]",
			},
		},
		{
			name:  "image catalogers alone ignore go.mod",
			extra: []string{},
			want: []string{
				"deb base-files 12.4+deb12u5 [dpkg-db-cataloger]",
				"deb libc6 2.36-9+deb12u4 [dpkg-db-cataloger]",
				"deb zlib1g 1:1.2.13.dfsg-1 [dpkg-db-cataloger]",
				"npm left-pad 1.3.0 [javascript-package-cataloger]",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := (&Generator{ExtraCatalogers: tc.extra}).Fetch(context.Background(), img)
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			checkGenerated(t, s, img, len(tc.want))
			if got := pkgList(parseSyft(t, s.Document)); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("packages:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// truncateBlob serves the blob with the given digest cut in half, with a matching
// Content-Length, as a broken proxy or storage backend would.
func truncateBlob(digest string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+digest) {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			body = body[:len(body)/2]
			for k, vs := range rec.Header() {
				w.Header()[k] = vs
			}
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			w.WriteHeader(rec.Code)
			_, _ = w.Write(body)
		})
	}
}

func TestGeneratorTruncatedLayer(t *testing.T) {
	tmp := isolateTemp(t)
	layer := debianLayer(t)
	ld, err := layer.Digest()
	if err != nil {
		t.Fatal(err)
	}
	host := testRegistry(t, truncateBlob(ld.String()))
	img := pushImage(t, host, "debian", layer)

	s, err := (&Generator{}).Fetch(context.Background(), img)
	if err == nil {
		t.Fatalf("Fetch succeeded on a truncated layer with %d packages; want an error", s.Packages)
	}
	if s != nil {
		t.Errorf("Fetch returned a partial SBOM alongside the error")
	}
	msg := err.Error()
	t.Logf("error: %s", msg)
	for _, want := range []string{"generating SBOM for " + img.DigestStr(), "pulling image"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	if want := "blob " + ld.String() + ": registry sent"; !strings.Contains(msg, want) || !strings.Contains(msg, "bytes the manifest says") {
		t.Errorf("error %q does not say layer %s was short", msg, ld)
	}
	if strings.Contains(msg, "oci-model") {
		t.Errorf("error %q shows the OCI-model provider was tried", msg)
	}
	if left := leftovers(t, tmp); len(left) != 0 {
		t.Errorf("temp files left behind after failure: %q", left)
	}
}

// stallBlob holds GETs of the blob with the given digest until the client goes away.
func stallBlob(digest string, started chan<- struct{}) func(http.Handler) http.Handler {
	var once sync.Once
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+digest) {
				once.Do(func() { close(started) })
				<-r.Context().Done()
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func TestGeneratorHonoursCancellation(t *testing.T) {
	tmp := isolateTemp(t)
	layer := debianLayer(t)
	ld, err := layer.Digest()
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	host := testRegistry(t, stallBlob(ld.String(), started))
	img := pushImage(t, host, "debian", layer)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-started
		cancel()
	}()
	begin := time.Now()
	s, err := (&Generator{}).Fetch(ctx, img)
	if err == nil {
		t.Fatalf("Fetch succeeded after cancellation with %d packages", s.Packages)
	}
	t.Logf("error after %v: %s", time.Since(begin), err)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %q is not context.Canceled", err)
	}
	if d := time.Since(begin); d > 10*time.Second {
		t.Errorf("Fetch took %v to notice cancellation", d)
	}
	if left := leftovers(t, tmp); len(left) != 0 {
		t.Errorf("temp files left behind after cancellation: %q", left)
	}
}

func TestGeneratorMissingImage(t *testing.T) {
	tmp := isolateTemp(t)
	host := testRegistry(t, nil)
	pushImage(t, host, "debian", debianLayer(t))
	missing, err := name.NewDigest(host + "/debian@sha256:" + strings.Repeat("ab", 32))
	if err != nil {
		t.Fatal(err)
	}
	s, err := (&Generator{}).Fetch(context.Background(), missing)
	if err == nil {
		t.Fatalf("Fetch of a missing image returned an SBOM with %d packages", s.Packages)
	}
	if errors.Is(err, ErrNotFound) {
		t.Errorf("a missing image is a failure, not 'no SBOM': %v", err)
	}
	if !strings.Contains(err.Error(), "MANIFEST_UNKNOWN") {
		t.Errorf("error %q does not carry the registry's reason", err)
	}
	if left := leftovers(t, tmp); len(left) != 0 {
		t.Errorf("temp files left behind after failure: %q", left)
	}
}

func TestValuesFallbackKeepsCancellation(t *testing.T) {
	type key string
	base := context.WithValue(context.Background(), key("shared"), "scanner")
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), key("call"), "mine"))
	v := valuesFallback{Context: ctx, fallback: base}
	if v.Value(key("call")) != "mine" || v.Value(key("shared")) != "scanner" || v.Value(key("none")) != nil {
		t.Errorf("values: call=%v shared=%v none=%v", v.Value(key("call")), v.Value(key("shared")), v.Value(key("none")))
	}
	cancel()
	select {
	case <-v.Done():
	default:
		t.Fatal("cancelling the call's context did not reach the wrapper")
	}
	if !errors.Is(v.Err(), context.Canceled) {
		t.Errorf("Err = %v, want context.Canceled", v.Err())
	}
}

// basicAuth demands user:pass on every request, as a private registry would.
func basicAuth(user, pass string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func TestGeneratorRegistryCredentials(t *testing.T) {
	host := testRegistry(t, basicAuth("robot", "s3cret-pass"))
	layer := debianLayer(t)
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewDigest(host + "/private@" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: "robot", Password: "s3cret-pass"})); err != nil {
		t.Fatal(err)
	}

	creds := func(pass string) ImageSource {
		kc, err := registry.KeychainFromDockerConfigJSON([]byte(fmt.Sprintf(`{"auths":{%q:{"username":"robot","password":%q}}}`, host, pass)))
		if err != nil {
			t.Fatal(err)
		}
		return registry.New(registry.Options{Keychain: kc, RequestsPerSecond: -1})
	}
	s, err := (&Generator{Images: creds("s3cret-pass")}).Fetch(context.Background(), ref)
	if err != nil {
		t.Fatalf("Fetch with credentials: %v", err)
	}
	if s.Packages != 3 {
		t.Errorf("Packages = %d, want 3", s.Packages)
	}

	begin := time.Now()
	_, err = (&Generator{Images: creds("wrong-pass")}).Fetch(context.Background(), ref)
	t.Logf("wrong password failed after %v: %v", time.Since(begin), err)
	if err == nil {
		t.Fatal("Fetch with a wrong password succeeded")
	}
	if !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Errorf("error %q does not carry the registry's reason", err)
	}
	if strings.Contains(err.Error(), "wrong-pass") || strings.Contains(err.Error(), "s3cret-pass") {
		t.Errorf("error leaks a password: %v", err)
	}
}
