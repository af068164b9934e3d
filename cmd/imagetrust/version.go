package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"slices"
	"text/tabwriter"

	"github.com/imagetrust/imagetrust/scanner/vulndb"
)

// version and commit are set by the Makefile: -ldflags "-X main.version=… -X main.commit=…".
// A binary built otherwise falls back to the module version and VCS stamp Go records.
var (
	version string
	commit  string
)

// VersionInfo is what `imagetrust version` prints and the scan JSON's "version" holds: enough
// to reproduce a result (which grype matched, which syft catalogued, which DB schema it reads).
type VersionInfo struct {
	// Imagetrust is the release (e.g. v0.1.0), or "(devel)" for an unreleased build.
	Imagetrust string `json:"imagetrust"`
	// Commit is the source revision, with "-dirty" when built from a modified tree.
	Commit string `json:"commit,omitempty"`
	// Go is the toolchain the binary was built with.
	Go string `json:"go"`
	// Grype, Syft, Cosign, SigstoreGo (Sigstore bundles), NotationGo and GoContainerRegistry
	// are the library versions linked in.
	Grype               string `json:"grype"`
	Syft                string `json:"syft"`
	Cosign              string `json:"cosign"`
	SigstoreGo          string `json:"sigstoreGo"`
	NotationGo          string `json:"notationGo"`
	GoContainerRegistry string `json:"goContainerRegistry"`
	// DBSchema is the Grype DB schema this build reads (e.g. v6.1.10); `db status` shows the
	// installed one.
	DBSchema string `json:"dbSchema"`
}

// libraries maps the modules reported to the VersionInfo field they fill.
var libraries = map[string]func(*VersionInfo) *string{
	"github.com/anchore/grype":               func(v *VersionInfo) *string { return &v.Grype },
	"github.com/anchore/syft":                func(v *VersionInfo) *string { return &v.Syft },
	"github.com/sigstore/cosign/v2":          func(v *VersionInfo) *string { return &v.Cosign },
	"github.com/sigstore/sigstore-go":        func(v *VersionInfo) *string { return &v.SigstoreGo },
	"github.com/notaryproject/notation-go":   func(v *VersionInfo) *string { return &v.NotationGo },
	"github.com/google/go-containerregistry": func(v *VersionInfo) *string { return &v.GoContainerRegistry },
}

// buildVersion reads the linker-set version and the build information Go embeds.
func buildVersion() VersionInfo {
	v := VersionInfo{Imagetrust: version, Commit: commit, Go: runtime.Version(), DBSchema: vulndb.SupportedSchemaVersion()}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return withUnknowns(v)
	}
	if v.Imagetrust == "" {
		v.Imagetrust = info.Main.Version
	}
	if v.Commit == "" {
		v.Commit = vcsCommit(info.Settings)
	}
	for _, d := range info.Deps {
		if field, ok := libraries[d.Path]; ok {
			if d.Replace != nil && d.Replace.Version != "" {
				d = d.Replace
			}
			*field(&v) = d.Version
		}
	}
	return withUnknowns(v)
}

func vcsCommit(settings []debug.BuildSetting) string {
	get := func(key string) string {
		if i := slices.IndexFunc(settings, func(s debug.BuildSetting) bool { return s.Key == key }); i >= 0 {
			return settings[i].Value
		}
		return ""
	}
	rev := get("vcs.revision")
	if rev != "" && get("vcs.modified") == "true" {
		rev += "-dirty"
	}
	return rev
}

// withUnknowns says "unknown" rather than printing nothing for what the binary does not record.
func withUnknowns(v VersionInfo) VersionInfo {
	for _, s := range []*string{&v.Imagetrust, &v.Grype, &v.Syft, &v.Cosign, &v.SigstoreGo, &v.NotationGo, &v.GoContainerRegistry} {
		if *s == "" {
			*s = "unknown"
		}
	}
	return v
}

var versionCommand = commandLine{name: "version", about: "Print the versions of imagetrust and of the libraries that produce its results."}

func runVersion(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	output := fs.String("o", "table", "output format: table or json")
	if _, err := versionCommand.parse(fs, args, stdout); err != nil {
		return err
	}
	v := buildVersion()
	switch *output {
	case "json":
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "table":
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		commit := v.Commit
		if commit == "" {
			commit = "unknown"
		}
		fmt.Fprintf(tw, "imagetrust\t%s\ncommit\t%s\ngo\t%s\ngrype\t%s\nsyft\t%s\ncosign\t%s\nsigstore-go\t%s\nnotation-go\t%s\ngo-containerregistry\t%s\nvulnerability DB schema\t%s\n",
			v.Imagetrust, commit, v.Go, v.Grype, v.Syft, v.Cosign, v.SigstoreGo, v.NotationGo, v.GoContainerRegistry, v.DBSchema)
		return tw.Flush()
	default:
		return usageError("version", "-o %q: want table or json", *output)
	}
}
