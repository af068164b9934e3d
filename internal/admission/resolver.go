package admission

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/imagetrust/imagetrust/scanner"
	"github.com/imagetrust/imagetrust/scanner/registry"
)

// Resolver turns a tag into the digest it points at now. The Gatherer calls it on a tag-cache
// miss, with a context whose deadline is well inside the webhook timeout.
type Resolver interface {
	Resolve(ctx context.Context, namespace, image string, pullSecrets []string) (digest string, err error)
}

// RegistryResolver resolves tags with one HEAD request through the shared registry client, so
// admission lookups count against the same per-registry rate limits as everything else.
type RegistryResolver struct {
	// Registry is the manager's registry client (limits, insecure hosts, CA).
	Registry *registry.Client
	// Secrets reads image pull secrets; the manager's API reader (Secrets are not cached).
	// Nil resolves anonymously.
	Secrets client.Reader
}

// Resolve sends one HEAD for image with the credentials of the pull secrets in namespace.
// The digest is the manifest's: an image index when the tag names one. Like the kubelet, a
// missing or malformed pull secret is skipped. Errors are sanitised.
func (r *RegistryResolver) Resolve(ctx context.Context, namespace, image string, pullSecrets []string) (string, error) {
	ref, err := name.ParseReference(image, r.Registry.NameOptions(image)...)
	if err != nil {
		return "", fmt.Errorf("invalid image reference: %w", err)
	}
	opts := r.Registry.RemoteOptions(ctx)
	if kc := r.keychain(ctx, namespace, pullSecrets); kc != nil {
		opts = append(opts, remote.WithAuthFromKeychain(kc))
	}
	desc, err := remote.Head(ref, opts...)
	if err != nil {
		return "", errors.New(scanner.Redact(fmt.Sprintf("HEAD %s: %v", image, err)))
	}
	return desc.Digest.String(), nil
}

// keychain combines the pull secrets' credentials with the registry client's own keychain;
// nil when no pull secret yields credentials.
func (r *RegistryResolver) keychain(ctx context.Context, namespace string, names []string) authn.Keychain {
	if r.Secrets == nil || len(names) == 0 {
		return nil
	}
	var kcs []authn.Keychain
	for _, n := range names {
		var sec corev1.Secret
		if err := r.Secrets.Get(ctx, types.NamespacedName{Namespace: namespace, Name: n}, &sec); err != nil {
			continue
		}
		data := sec.Data[corev1.DockerConfigJsonKey]
		if len(data) == 0 {
			data = sec.Data[corev1.DockerConfigKey]
		}
		if kc, err := registry.KeychainFromDockerConfigJSON(data); err == nil && len(data) > 0 {
			kcs = append(kcs, kc)
		}
	}
	if len(kcs) == 0 {
		return nil
	}
	return authn.NewMultiKeychain(append(kcs, r.Registry.Options().Keychain)...)
}
