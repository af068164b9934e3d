//go:build syftcheck

// This check links Syft (a multi-minute cold build), so it is opt-in:
//
//	go test -tags syftcheck ./scanner/registry/registrytest/ -run Syft
//
// It proves the fixture images are realistic enough for Syft to catalogue from a registry.
package registrytest_test

import (
	"context"
	"sort"
	"testing"

	"github.com/anchore/stereoscope/pkg/image"
	"github.com/anchore/syft/syft"
	"github.com/anchore/syft/syft/cataloging"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	_ "modernc.org/sqlite" // syft's rpmdb cataloger needs a "sqlite" database/sql driver

	"github.com/imagetrust/imagetrust/scanner/registry/registrytest"
)

func TestSyftCataloguesFixtures(t *testing.T) {
	reg := registrytest.New(t)
	ctx := context.Background()
	app, err := mutate.AppendLayers(registrytest.DebianImage(nil), registrytest.AppLayer(
		[]registrytest.Pkg{{Name: "lodash", Version: "4.17.20"}},
		[]registrytest.Pkg{{Name: "golang.org/x/text", Version: "v0.3.7"}},
	))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, ref string
		img       interface{ RawManifest() ([]byte, error) }
		distro    string
		version   string
		want      []string // name@version:type
	}{
		{"debian", "deb:1", registrytest.DebianImage([]registrytest.Pkg{{Name: "libssl3", Version: "3.0.11-1~deb12u2"}}), "debian", "12.5", // syft refines VERSION_ID with /etc/debian_version
			[]string{"libssl3@3.0.11-1~deb12u2:deb"}},
		{"alpine", "alp:1", registrytest.AlpineImage([]registrytest.Pkg{{Name: "musl", Version: "1.2.4_git20230717-r4"}}), "alpine", "3.19.1",
			[]string{"musl@1.2.4_git20230717-r4:apk"}},
		{"app", "app:1", app, "debian", "12.5", // syft refines VERSION_ID with /etc/debian_version
			[]string{"golang.org/x/text@v0.3.7:go-module", "imagetrust-demo-app@1.0.0:npm", "lodash@4.17.20:npm"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := reg.Push(ctx, tc.ref, tc.img); err != nil {
				t.Fatal(err)
			}
			src, err := syft.GetSource(ctx, reg.Repo(tc.ref), syft.DefaultGetSourceConfig().WithSources("registry").
				WithRegistryOptions(&image.RegistryOptions{InsecureUseHTTP: true}))
			if err != nil {
				t.Fatalf("GetSource: %v", err)
			}
			defer src.Close()
			cfg := syft.DefaultCreateSBOMConfig().WithCatalogerSelection(
				cataloging.NewSelectionRequest().WithAdditions("go-module-file-cataloger"))
			s, err := syft.CreateSBOM(ctx, src, cfg)
			if err != nil {
				t.Fatalf("CreateSBOM: %v", err)
			}
			if s.Artifacts.LinuxDistribution == nil || s.Artifacts.LinuxDistribution.ID != tc.distro || s.Artifacts.LinuxDistribution.VersionID != tc.version {
				t.Errorf("distro = %q %q, want %s %s", s.Artifacts.LinuxDistribution.ID, s.Artifacts.LinuxDistribution.VersionID, tc.distro, tc.version)
			}
			var got []string
			for p := range s.Artifacts.Packages.Enumerate() {
				got = append(got, p.Name+"@"+p.Version+":"+string(p.Type))
			}
			sort.Strings(got)
			if len(got) != len(tc.want) {
				t.Fatalf("packages = %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("packages = %v, want %v", got, tc.want)
					break
				}
			}
		})
	}
}
