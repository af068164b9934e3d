// Package appliestable is one table of policy image patterns and images as people write them,
// which every path that decides "this policy applies to this image" is tested against: the
// manager (pods and RegistryScans), admission and `imagetrust scan --policy`. A policy file
// must mean the same thing in all of them.
package appliestable

// Digest is a digest the cases pin images to.
const Digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// Case is a policy's spec.images, an image as a pod spec or a command line names it, and
// whether the policy applies.
type Case struct {
	Images []string
	Image  string
	Want   bool
}

// Cases are the spellings that have differed between paths before, and their neighbours.
var Cases = []Case{
	// Docker Hub: docker.io and index.docker.io are one registry, library/ is implied
	{[]string{"docker.io/library/*"}, "nginx:1.27", true},
	{[]string{"docker.io/library/*"}, "docker.io/library/nginx@" + Digest, true},
	{[]string{"index.docker.io/library/nginx"}, "nginx", true},
	{[]string{"nginx"}, "nginx:1.27", true},
	{[]string{"bitnami/*"}, "bitnami/redis:7", true},
	{[]string{"docker.io/bitnami/*"}, "index.docker.io/bitnami/redis:7", true},
	// a short name is Docker Hub, never another registry's repository of the same name
	{[]string{"nginx"}, "registry.example.com/nginx:1", false},
	{[]string{"team/app"}, "registry.example.com/team/app:1", false},
	// tags: a missing tag is latest; a tag written before a digest still names the image
	{[]string{"nginx:1.27"}, "nginx:1.27", true},
	{[]string{"nginx:1.27"}, "nginx:1.26", false},
	{[]string{"nginx:1.27"}, "nginx", false},
	{[]string{"nginx:latest"}, "nginx", true},
	{[]string{"nginx:1.27"}, "nginx:1.27@" + Digest, true},
	{[]string{"nginx:1.27"}, "nginx@" + Digest, false},
	{[]string{"ghcr.io/org/app:1.*"}, "ghcr.io/org/app:1.2", true},
	{[]string{"ghcr.io/org/app:1.*"}, "ghcr.io/org/app:2.0", false},
	// globs: * within a path segment, ** across
	{[]string{"registry.example.com/team/*"}, "registry.example.com/team/app:v1", true},
	{[]string{"registry.example.com/team/*"}, "registry.example.com/team/sub/app:v1", false},
	{[]string{"registry.example.com/team/**"}, "registry.example.com/team/sub/app:v1", true},
	{[]string{"*.example.com/app"}, "r.example.com/app:1", true},
	{[]string{"**"}, "quay.io/x/y:1", true},
	// hosts with ports are registries, not Docker Hub users
	{[]string{"localhost:5000/app"}, "localhost:5000/app:dev", true},
	{[]string{"registry.example.com:5000/app"}, "registry.example.com:5000/app@" + Digest, true},
	{[]string{"registry.example.com/app"}, "registry.example.com:5000/app:1", false},
	// any pattern of several
	{[]string{"ghcr.io/org/*", "nginx"}, "nginx:1.27", true},
}
