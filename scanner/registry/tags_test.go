package registry_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/imagetrust/imagetrust/scanner/registry"
	"github.com/imagetrust/imagetrust/scanner/registry/registrytest"
)

func makeTags(n int) []string {
	tags := make([]string, n)
	for i := range tags {
		tags[i] = fmt.Sprintf("t%05d", i)
	}
	return tags
}

func TestListTagsPagination(t *testing.T) {
	img := registrytest.DebianImage(debPkgs)
	cases := []struct {
		name     string
		opts     []registrytest.Option
		tags     int
		requests int
	}{
		// ggcr's registry cuts at n=1000 without a Link header: we continue with last=.
		{"no Link header, 2500 tags", nil, 2500, 3},
		// Exactly 2 full pages: the third request (last=final tag) brings nothing new.
		{"no Link header, exact multiple", nil, 2000, 3},
		{"Link header pagination", []registrytest.Option{registrytest.WithTagPagination(700)}, 2500, 4},
		{"single short page", nil, 3, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reg := registrytest.New(t, tc.opts...)
			want := makeTags(tc.tags)
			if _, err := reg.PushTags(ctxT(t), "many", img, want...); err != nil {
				t.Fatalf("PushTags: %v", err)
			}
			c := newClient(t, reg, nil)
			reg.Reset()
			got, err := c.ListTags(ctxT(t), reg.Repo("many"))
			if err != nil {
				t.Fatalf("ListTags: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %d tags (first %v), want %d", len(got), head(got), len(want))
			}
			if n := reg.Counts().Tags; n != tc.requests {
				t.Errorf("tags/list requests = %d, want %d", n, tc.requests)
			}
		})
	}
}

func head(s []string) []string {
	if len(s) > 3 {
		return s[:3]
	}
	return s
}

func TestListTagsErrors(t *testing.T) {
	reg := registrytest.New(t)
	c := newClient(t, reg, nil)
	_, err := c.ListTags(ctxT(t), reg.Repo("missing"))
	if !registry.IsNotFound(err) {
		t.Errorf("ListTags of a missing repo: IsNotFound false for %v", err)
	}
	if !strings.Contains(err.Error(), "list tags of "+reg.Repo("missing")) {
		t.Errorf("error %q does not name the repository", err)
	}

	authReg := registrytest.New(t, registrytest.WithBasicAuth("u", "right-pass"))
	anon := registry.New(registry.Options{RequestsPerSecond: -1})
	_, err = anon.ListTags(ctxT(t), authReg.Repo("app"))
	if !registry.IsUnauthorized(err) {
		t.Errorf("anonymous ListTags on a basic-auth registry: IsUnauthorized false for %v", err)
	}
}

func TestFilterTags(t *testing.T) {
	tags := []string{"latest", "1.0.0", "v1.2.0", "1.2.3", "1.10.0", "2.0.0-rc.1", "2.0.0", "1.2.3-alpine", "nightly", "1.2.3"}
	cases := []struct {
		name    string
		in      []string
		f       registry.TagFilter
		want    []string
		wantErr string
	}{
		{name: "no filter keeps all, lexical when not all semver", in: []string{"b", "a", "1.0"},
			want: []string{"b", "a", "1.0"}},
		{name: "all semver sorts by version", in: []string{"1.2.0", "1.10.0", "v1.9.0"},
			want: []string{"1.10.0", "v1.9.0", "1.2.0"}},
		{name: "include any", in: tags, f: registry.TagFilter{Include: []string{`^v`, `alpine$`}},
			want: []string{"1.2.3-alpine", "v1.2.0"}}, // both parse: 1.2.3-alpine > 1.2.0
		{name: "exclude any", in: tags, f: registry.TagFilter{Exclude: []string{`-`, `^\D`}},
			want: []string{"2.0.0", "1.10.0", "1.2.3", "1.0.0"}},
		{name: "semver constraint with v prefix", in: tags, f: registry.TagFilter{Semver: ">= 1.2, < 2"},
			want: []string{"1.10.0", "1.2.3", "v1.2.0"}},
		{name: "prerelease constraint admits prereleases", in: tags, f: registry.TagFilter{Semver: ">= 2.0.0-0"},
			want: []string{"2.0.0", "2.0.0-rc.1"}},
		{name: "semver without prerelease excludes prereleases", in: tags, f: registry.TagFilter{Semver: ">= 1.2"},
			want: []string{"2.0.0", "1.10.0", "1.2.3", "v1.2.0"}},
		{name: "latest by semver", in: tags, f: registry.TagFilter{Semver: "*", Latest: 2},
			want: []string{"2.0.0", "1.10.0"}},
		{name: "latest lexical when tags are not all versions", in: []string{"build-3", "build-10", "build-2"}, f: registry.TagFilter{Latest: 2},
			want: []string{"build-3", "build-2"}},
		{name: "latest by semver when all parse", in: []string{"3", "10", "2"}, f: registry.TagFilter{Latest: 2},
			want: []string{"10", "3"}},
		{name: "include + exclude + semver + latest", in: tags,
			f:    registry.TagFilter{Include: []string{`^v?1\.`}, Exclude: []string{`alpine`}, Semver: "~1.2", Latest: 1},
			want: []string{"1.2.3"}},
		{name: "equal versions order lexically", in: []string{"v1.2.0", "1.2.0", "1.2"},
			want: []string{"v1.2.0", "1.2.0", "1.2"}},
		{name: "empty input", in: nil, want: []string{}},
		{name: "invalid include", in: tags, f: registry.TagFilter{Include: []string{"("}}, wantErr: `invalid include pattern "("`},
		{name: "invalid exclude", in: tags, f: registry.TagFilter{Exclude: []string{"[a-"}}, wantErr: `invalid exclude pattern "[a-"`},
		{name: "invalid constraint", in: tags, f: registry.TagFilter{Semver: ">= banana"}, wantErr: `invalid semver constraint ">= banana"`},
		{name: "negative latest", in: tags, f: registry.TagFilter{Latest: -1}, wantErr: "invalid latest count -1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := registry.FilterTags(tc.in, tc.f)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				if got != nil {
					t.Errorf("got %v alongside an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("FilterTags: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFilterTagsIsDeterministic(t *testing.T) {
	in := []string{"1.0", "v1.0.0", "1.0.0", "a", "b", "1.0"}
	first, err := registry.FilterTags(in, registry.TagFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		shuffled := append([]string(nil), in...)
		rng := rand.New(rand.NewPCG(uint64(i), 42))
		rng.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		got, err := registry.FilterTags(shuffled, registry.TagFilter{})
		if err != nil || !reflect.DeepEqual(got, first) {
			t.Fatalf("order depends on input order: %v vs %v (%v)", got, first, err)
		}
	}
	if len(first) != 5 {
		t.Errorf("duplicates not removed: %v", first)
	}
}
