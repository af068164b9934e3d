package admission

import "context"

// Resolver turns a tag into the digest it points at now. The Gatherer calls it on a tag-cache
// miss, with a context whose deadline is well inside the webhook timeout. The manager's is the
// controllers' (the Engine's registry clients, limits and the Pod's pull secrets).
type Resolver interface {
	Resolve(ctx context.Context, namespace, image string, pullSecrets []string) (digest string, err error)
}
