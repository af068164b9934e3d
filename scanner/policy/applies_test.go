package policy

import "testing"

func TestImagesMatch(t *testing.T) {
	tests := []struct {
		patterns []string
		repo     string
		tags     []string
		want     bool
	}{
		{[]string{"registry.example.com/team/*"}, "registry.example.com/team/app", nil, true},
		{[]string{"registry.example.com/team/*"}, "registry.example.com/other/app", nil, false},
		{[]string{"docker.io/library/*"}, "index.docker.io/library/nginx", nil, true},
		{[]string{"ghcr.io/org/app:1.*"}, "ghcr.io/org/app", []string{"1.2"}, true},
		{[]string{"ghcr.io/org/app:1.*"}, "ghcr.io/org/app", []string{"2.0"}, false},
		{[]string{"ghcr.io/**"}, "ghcr.io/a/b/c", nil, true},
		// Docker Hub names as people write them
		{[]string{"nginx"}, "index.docker.io/library/nginx", nil, true},
		{[]string{"nginx:1.27"}, "index.docker.io/library/nginx", []string{"1.27"}, true},
		{[]string{"nginx:1.27"}, "index.docker.io/library/nginx", []string{"1.26"}, false},
		{[]string{"bitnami/*"}, "index.docker.io/bitnami/redis", nil, true},
		{[]string{"docker.io/bitnami/*"}, "index.docker.io/bitnami/redis", nil, true},
		{[]string{"index.docker.io/library/nginx"}, "index.docker.io/library/nginx", nil, true},
		// a short name is Docker Hub, never another registry's repository of the same name
		{[]string{"nginx"}, "registry.example.com/nginx", nil, false},
		{[]string{"team/app"}, "registry.example.com/team/app", nil, false},
		// hosts with ports and localhost are registries, not Docker Hub users
		{[]string{"localhost:5000/app"}, "localhost:5000/app", nil, true},
		{[]string{"localhost/app"}, "index.docker.io/localhost/app", nil, false},
		{[]string{"**"}, "anything.example/x/y", nil, true},
		{[]string{"*.example.com/app"}, "r.example.com/app", nil, true},
	}
	for _, tt := range tests {
		if got := ImagesMatch(tt.patterns, tt.repo, tt.tags); got != tt.want {
			t.Errorf("ImagesMatch(%v, %s, %v) = %v, want %v", tt.patterns, tt.repo, tt.tags, got, tt.want)
		}
		if got := (Policy{Images: tt.patterns}).Applies(tt.repo, tt.tags); got != tt.want {
			t.Errorf("Policy.Applies(%v, %s, %v) = %v, want %v", tt.patterns, tt.repo, tt.tags, got, tt.want)
		}
	}
}
