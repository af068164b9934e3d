package dockerfilecheck

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// root is the repository root: this module lives in hack/dockerfile-check.
const root = "../.."

const (
	binaryPath = "/imagetrust"
	cacheDir   = "/var/cache/imagetrust"
)

// parsed is a Dockerfile after BuildKit's parser and instruction parser, with every lint
// warning the parse stage reports.
type parsed struct {
	stages   []instructions.Stage
	metaArgs []instructions.ArgCommand
	warnings []string
}

func parseDockerfile(t *testing.T, src []byte) parsed {
	t.Helper()
	res, err := parser.Parse(bytes.NewReader(src))
	if err != nil {
		t.Fatalf("parser.Parse: %v", err)
	}
	var p parsed
	for _, w := range res.Warnings {
		p.warnings = append(p.warnings, w.Short)
	}
	lint := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, loc []parser.Range) {
		line := 0
		if len(loc) > 0 {
			line = loc[0].Start.Line
		}
		p.warnings = append(p.warnings, rule+" (line "+strconv.Itoa(line)+"): "+msg)
	}})
	p.stages, p.metaArgs, err = instructions.Parse(res.AST, lint)
	if err != nil {
		t.Fatalf("instructions.Parse: %v", err)
	}
	if len(p.stages) == 0 {
		t.Fatal("no build stage (FROM)")
	}
	return p
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ignoreMatcher loads a .dockerignore the way BuildKit does.
func ignoreMatcher(t *testing.T, name string) *patternmatcher.PatternMatcher {
	t.Helper()
	f, err := os.Open(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return pm
}

func excluded(t *testing.T, pm *patternmatcher.PatternMatcher, path string) bool {
	t.Helper()
	ex, err := pm.MatchesOrParentMatches(filepath.ToSlash(path))
	if err != nil {
		t.Fatal(err)
	}
	return ex
}

// findings collects what checkManagerDockerfile objects to, so that the table test below can
// feed it broken Dockerfiles and compare the reasons.
type findings []string

func (f *findings) addf(format string, args ...any) {
	*f = append(*f, fmt.Sprintf(format, args...))
}

// allowedFinalBases are the runtime bases the image may use: no shell, no package manager.
var allowedFinalBases = []string{"gcr.io/distroless/static-debian12:nonroot", "gcr.io/distroless/static-debian13:nonroot", "scratch"}

// checkManagerDockerfile returns every rule the manager image's Dockerfile breaks.
func checkManagerDockerfile(p parsed) findings {
	var f findings
	for _, w := range p.warnings {
		f.addf("build check warning: %s", w)
	}
	if len(p.stages) < 2 {
		f.addf("want a multi-stage build (builder + runtime), got %v stage(s)", len(p.stages))
		return f
	}
	for _, st := range p.stages {
		for _, c := range st.Commands {
			if add, ok := c.(*instructions.AddCommand); ok {
				for _, src := range add.SourcePaths {
					if isRemote(src) {
						f.addf("stage %q: ADD of remote source %q (use a pinned, verified download in a RUN step or COPY)", st.Name, src)
					}
				}
			}
		}
	}

	final := p.stages[len(p.stages)-1]
	base := final.BaseName
	if i := strings.Index(base, "@sha256:"); i >= 0 {
		base = base[:i] // a digest pin is welcome
	}
	if !slices.Contains(allowedFinalBases, base) {
		f.addf("final stage FROM %q: want one of %v", final.BaseName, allowedFinalBases)
	}

	var (
		user, entrypoint, cmd []string
		entrypointShell       bool
		volumes               []string
		copiesBinary          bool
	)
	for _, c := range final.Commands {
		switch c := c.(type) {
		case *instructions.UserCommand:
			user = []string{c.User}
		case *instructions.EntrypointCommand:
			entrypoint, entrypointShell = c.CmdLine, c.PrependShell
		case *instructions.CmdCommand:
			cmd = c.CmdLine
		case *instructions.VolumeCommand:
			volumes = append(volumes, c.Volumes...)
		case *instructions.RunCommand:
			f.addf("final stage runs %q: the runtime base has no shell, build in the builder stage", c.String())
		case *instructions.CopyCommand:
			if c.From != "" && c.DestPath == binaryPath {
				copiesBinary = true
			}
		}
	}
	switch {
	case len(user) == 0:
		f.addf("final stage sets no USER: the image would run as the base's user, or root")
	case !nonRootUser(user[0]):
		f.addf("final stage USER %q is root: want a numeric non-zero UID such as 65532:65532", user[0])
	}
	if entrypointShell || !slices.Equal(entrypoint, []string{binaryPath}) {
		f.addf("ENTRYPOINT = %q (shell form: %v), want the exec form [\"/imagetrust\"]", entrypoint, entrypointShell)
	}
	if len(cmd) == 0 || cmd[0] != "manager" {
		f.addf("CMD = %q, want the manager subcommand first", cmd)
	}
	if !slices.Contains(volumes, cacheDir) {
		f.addf("VOLUME %s is not declared (declared: %q)", cacheDir, volumes)
	}
	if !copiesBinary {
		f.addf("final stage does not COPY --from a build stage to %s", binaryPath)
	}

	// The builder: a static, trimmed build of ./cmd/imagetrust.
	builder := p.stages[0]
	if !strings.HasPrefix(builder.BaseName, "golang:") {
		f.addf("builder stage FROM %q: want an official golang image", builder.BaseName)
	}
	cgoOff := false
	built := false
	for _, c := range builder.Commands {
		switch c := c.(type) {
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				if kv.Key == "CGO_ENABLED" {
					cgoOff = kv.Value == "0"
				}
			}
		case *instructions.RunCommand:
			line := strings.Join(c.CmdLine, " ")
			if !strings.Contains(line, "go build") {
				continue
			}
			built = true
			if strings.Contains(line, "CGO_ENABLED=0") {
				cgoOff = true
			}
			if strings.Contains(line, "CGO_ENABLED=1") {
				cgoOff = false
			}
			for _, want := range []string{"-trimpath", `-ldflags "-s -w"`, "./cmd/imagetrust", "-o /out/imagetrust"} {
				if !strings.Contains(line, want) {
					f.addf("go build %q lacks %s", line, want)
				}
			}
			if !cgoOff {
				f.addf("go build runs with cgo enabled: set ENV CGO_ENABLED=0 in the builder for a static binary")
			}
		}
	}
	if !built {
		f.addf("builder stage %q has no RUN ... go build", builder.Name)
	}
	return f
}

func isRemote(src string) bool {
	s := strings.ToLower(src)
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "git@") ||
		strings.HasPrefix(s, "git://") || strings.HasSuffix(s, ".git")
}

// nonRootUser accepts USER values whose user part is a non-zero numeric UID. Names are refused:
// Kubernetes' runAsNonRoot can only verify a numeric UID.
func nonRootUser(u string) bool {
	name, _, _ := strings.Cut(u, ":")
	uid, err := strconv.Atoi(name)
	return err == nil && uid > 0
}

// TestManagerDockerfile checks the committed Dockerfile.
func TestManagerDockerfile(t *testing.T) {
	p := parseDockerfile(t, readFile(t, "Dockerfile"))
	for _, f := range checkManagerDockerfile(p) {
		t.Error(f)
	}
}

// TestManagerDockerfileRules feeds the checks Dockerfiles that break one rule each, and one
// that breaks none, so every rule above is known to be able to fail.
func TestManagerDockerfileRules(t *testing.T) {
	good := string(readFile(t, "Dockerfile"))
	cases := []struct {
		name    string
		old     string
		new     string
		finding string
	}{
		{"unchanged", "", "", ""},
		{"root user", "USER 65532:65532", "USER 0:0", `final stage USER "0:0" is root`},
		{"named root user", "USER 65532:65532", "USER root", `final stage USER "root" is root`},
		{"no user", "USER 65532:65532\n", "", "final stage sets no USER"},
		{"shell entrypoint", `ENTRYPOINT ["/imagetrust"]`, "ENTRYPOINT /imagetrust", `ENTRYPOINT = ["/imagetrust"] (shell form: true)`},
		{"other entrypoint", `ENTRYPOINT ["/imagetrust"]`, `ENTRYPOINT ["/manager"]`, `ENTRYPOINT = ["/manager"] (shell form: false)`},
		{"debian runtime", "FROM gcr.io/distroless/static-debian12:nonroot", "FROM debian:12", `final stage FROM "debian:12"`},
		{"remote ADD", "COPY go.mod go.sum ./", "ADD https://example.com/tool.tar.gz /tmp/\nCOPY go.mod go.sum ./", `ADD of remote source "https://example.com/tool.tar.gz"`},
		{"cgo on", "ENV CGO_ENABLED=0", "ENV CGO_ENABLED=1", "go build runs with cgo enabled"},
		{"no volume", "VOLUME /var/cache/imagetrust\n", "", "VOLUME /var/cache/imagetrust is not declared"},
		{"RUN in final stage", "USER 65532:65532", "RUN chmod 755 /imagetrust\nUSER 65532:65532", `final stage runs "RUN chmod 755 /imagetrust"`},
		{"lint: casing", "FROM --platform=$BUILDPLATFORM golang:1.26 AS builder", "FROM --platform=$BUILDPLATFORM golang:1.26 as builder", "build check warning: FromAsCasing"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := good
			if tc.old != "" {
				if !strings.Contains(src, tc.old) {
					t.Fatalf("Dockerfile no longer contains %q: update this case", tc.old)
				}
				src = strings.Replace(src, tc.old, tc.new, 1)
			}
			got := checkManagerDockerfile(parseDockerfile(t, []byte(src)))
			if tc.finding == "" {
				if len(got) != 0 {
					t.Errorf("findings on the committed Dockerfile: %q", got)
				}
				return
			}
			if !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, tc.finding) }) {
				t.Errorf("findings %q\nwant one containing %q", got, tc.finding)
			}
		})
	}
}

// goPackage is the part of `go list -json` output the context check reads.
type goPackage struct {
	Dir        string
	GoFiles    []string
	EmbedFiles []string
	Module     *struct{ Main bool }
}

// TestBuildContextHasTheSources makes sure `docker build` gets every file the binary is built
// from: each main-module package ./cmd/imagetrust depends on must be COPYed into the builder
// and not excluded by .dockerignore, and the module files must be there too.
func TestBuildContextHasTheSources(t *testing.T) {
	p := parseDockerfile(t, readFile(t, "Dockerfile"))
	var copied []string
	for _, c := range p.stages[0].Commands {
		if cp, ok := c.(*instructions.CopyCommand); ok && cp.From == "" {
			for _, src := range cp.SourcePaths {
				if _, err := os.Stat(filepath.Join(root, src)); err != nil {
					t.Errorf("COPY %s: %v", src, err)
				}
				copied = append(copied, strings.TrimSuffix(filepath.Clean(src), "/"))
			}
		}
	}
	pm := ignoreMatcher(t, ".dockerignore")

	cmd := exec.Command("go", "list", "-deps", "-json=Dir,GoFiles,EmbedFiles,Module", "./cmd/imagetrust")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=readonly")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./cmd/imagetrust: %v\n%s", err, stderr.String())
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	files := []string{"go.mod", "go.sum"}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var pkg goPackage
		if err := dec.Decode(&pkg); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if pkg.Module == nil || !pkg.Module.Main {
			continue
		}
		rel, err := filepath.Rel(abs, pkg.Dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range slices.Concat(pkg.GoFiles, pkg.EmbedFiles) {
			files = append(files, filepath.Join(rel, f))
		}
	}
	if len(files) < 3 {
		t.Fatalf("go list found no main-module files for ./cmd/imagetrust: %q", files)
	}
	for _, f := range files {
		if excluded(t, pm, f) {
			t.Errorf(".dockerignore excludes %s, which ./cmd/imagetrust is built from", f)
		}
		if !slices.ContainsFunc(copied, func(c string) bool {
			return c == "." || c == f || strings.HasPrefix(f, c+"/")
		}) {
			t.Errorf("no COPY in the builder stage brings %s into the build", f)
		}
	}
	// And the context stays small: tools, the control plane, git history and tests stay out.
	for _, f := range []string{"bin/kustomize", ".git/HEAD", "scanner/policy/policy_test.go", "bundle/manifests/x.yaml", "hack/control-plane.sh", "config/default/kustomization.yaml"} {
		if !excluded(t, pm, f) {
			t.Errorf(".dockerignore lets %s into the build context", f)
		}
	}
}

// TestBundleDockerfile checks the OLM bundle image: FROM scratch, only the generated manifests
// and metadata, and labels identical to bundle/metadata/annotations.yaml (OLM reads either).
func TestBundleDockerfile(t *testing.T) {
	p := parseDockerfile(t, readFile(t, "bundle.Dockerfile"))
	for _, w := range p.warnings {
		t.Errorf("build check warning: %s", w)
	}
	if len(p.stages) != 1 || p.stages[0].BaseName != "scratch" {
		t.Fatalf("bundle.Dockerfile: want a single FROM scratch stage, got %d stage(s) from %q", len(p.stages), p.stages[0].BaseName)
	}
	labels := map[string]string{}
	var copies [][2]string
	for _, c := range p.stages[0].Commands {
		switch c := c.(type) {
		case *instructions.LabelCommand:
			for _, kv := range c.Labels {
				labels[kv.Key] = kv.Value
			}
		case *instructions.CopyCommand:
			if c.From != "" || len(c.SourcePaths) != 1 {
				t.Errorf("unexpected %q", c.String())
				continue
			}
			copies = append(copies, [2]string{c.SourcePaths[0], c.DestPath})
		default:
			t.Errorf("bundle.Dockerfile has %q: a bundle image holds manifests only", c.(interface{ String() string }).String())
		}
	}
	wantCopies := [][2]string{{"bundle/manifests", "/manifests/"}, {"bundle/metadata", "/metadata/"}}
	if !slices.Equal(copies, wantCopies) {
		t.Errorf("COPY = %v, want %v", copies, wantCopies)
	}
	ann := annotations(t, "bundle/metadata/annotations.yaml")
	if len(ann) < 6 {
		t.Fatalf("bundle/metadata/annotations.yaml has %d annotations", len(ann))
	}
	for k, v := range ann {
		if labels[k] != v {
			t.Errorf("label %s = %q, annotations.yaml says %q", k, labels[k], v)
		}
	}
	for k := range labels {
		if _, ok := ann[k]; !ok {
			t.Errorf("label %s is not in annotations.yaml", k)
		}
	}
	if ann["operators.operatorframework.io.bundle.mediatype.v1"] != "registry+v1" ||
		ann["operators.operatorframework.io.bundle.manifests.v1"] != "manifests/" ||
		ann["operators.operatorframework.io.bundle.metadata.v1"] != "metadata/" {
		t.Errorf("annotations %v do not describe a registry+v1 bundle in manifests/ and metadata/", ann)
	}

	pm := ignoreMatcher(t, "bundle.Dockerfile.dockerignore")
	entries, err := os.ReadDir(filepath.Join(root, "bundle", "manifests"))
	if err != nil || len(entries) == 0 {
		t.Fatalf("bundle/manifests: %v (%d files)", err, len(entries))
	}
	for _, e := range entries {
		if f := filepath.Join("bundle", "manifests", e.Name()); excluded(t, pm, f) {
			t.Errorf("bundle.Dockerfile.dockerignore excludes %s", f)
		}
	}
	if excluded(t, pm, "bundle/metadata/annotations.yaml") || !excluded(t, pm, "cmd/imagetrust/main.go") {
		t.Error("bundle.Dockerfile.dockerignore must send bundle/ and nothing else")
	}
}

// annotations reads the flat `annotations:` map of bundle/metadata/annotations.yaml.
func annotations(t *testing.T, name string) map[string]string {
	t.Helper()
	out := map[string]string{}
	s := bufio.NewScanner(bytes.NewReader(readFile(t, name)))
	in := false
	for s.Scan() {
		line := s.Text()
		switch {
		case strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "":
		case line == "annotations:":
			in = true
		case in && strings.HasPrefix(line, "  "):
			k, v, ok := strings.Cut(strings.TrimSpace(line), ": ")
			if !ok {
				t.Fatalf("%s: cannot read %q", name, line)
			}
			out[k] = strings.Trim(v, `"'`)
		default:
			t.Fatalf("%s: unexpected line %q", name, line)
		}
	}
	return out
}
