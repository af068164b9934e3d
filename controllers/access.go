package controllers

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner"
)

// access is how a digest's registry is reached: credentials, plain-HTTP hosts and a private CA.
// Credentials are scoped to the source that referenced them (a pod's imagePullSecrets, a
// RegistryScan's credentials Secret) rather than pooled cluster-wide, so one namespace's
// Secret never lets another namespace list a private repository.
type access struct {
	// key identifies the material (a hash, never the material itself).
	key      string
	keychain authn.Keychain
	insecure []string
	caPEM    []byte
}

var anonymous = &access{key: "anonymous"}

// scannerPool keeps one scanner.Scanner per access. All share the SBOM cache and the
// vulnerability DB, so switching credentials never repeats SBOM work.
type scannerPool struct {
	base        scanner.RegistryOptions
	db          *scanner.DB
	cache       *scanner.SBOMCache
	maxFindings int
	now         func() time.Time
	generator   scanner.SBOMSource

	mu     sync.Mutex
	byKey  map[string]*scanner.Scanner
	pulled map[string]pullEntry // pull-secret keychains by namespace/names, refreshed by TTL
}

type pullEntry struct {
	acc     *access
	fetched time.Time
}

// pullSecretTTL bounds how long rotated image pull credentials take to be picked up.
const pullSecretTTL = 5 * time.Minute

// maxScanners bounds the pool; a rebuilt scanner only loses its small manifest-metadata memo.
const maxScanners = 256

func newScannerPool(base scanner.RegistryOptions, db *scanner.DB, cache *scanner.SBOMCache, maxFindings int, now func() time.Time) *scannerPool {
	return &scannerPool{base: base, db: db, cache: cache, maxFindings: maxFindings, now: now,
		byKey: map[string]*scanner.Scanner{}, pulled: map[string]pullEntry{}}
}

// get returns the scanner of an access, building it on first use.
func (p *scannerPool) get(a *access) (*scanner.Scanner, error) {
	if a == nil {
		a = anonymous
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if s, ok := p.byKey[a.key]; ok {
		return s, nil
	}
	opts := p.base
	if a.keychain != nil {
		opts.Keychain = a.keychain
	}
	opts.Insecure = append(append([]string(nil), p.base.Insecure...), a.insecure...)
	if len(a.caPEM) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(a.caPEM) {
			return nil, stalling(securityv1alpha1.ReasonInvalidCABundle, "CA bundle holds no PEM certificate")
		}
		opts.RootCAs = pool
	}
	s, err := scanner.New(scanner.Config{
		Registry:    scanner.NewRegistryClient(opts),
		DB:          p.db,
		Cache:       p.cache,
		Generator:   p.generator,
		MaxFindings: p.maxFindings,
		Now:         p.now,
	})
	if err != nil {
		return nil, err
	}
	if len(p.byKey) >= maxScanners {
		clear(p.byKey)
	}
	p.byKey[a.key] = s
	return s, nil
}

// pullAccess returns the access built from a pod's imagePullSecrets. Secrets are read through
// the API reader (the manager caches no Secret data) and memoised for pullSecretTTL. Like the
// kubelet, a missing or unreadable pull secret is skipped, not an error.
func (p *scannerPool) pullAccess(ctx context.Context, reader client.Reader, namespace string, names []string) *access {
	if len(names) == 0 {
		return anonymous
	}
	names = append([]string(nil), names...)
	sort.Strings(names)
	memo := namespace + "/" + strings.Join(names, ",")
	p.mu.Lock()
	if e, ok := p.pulled[memo]; ok && p.now().Sub(e.fetched) < pullSecretTTL {
		p.mu.Unlock()
		return e.acc
	}
	p.mu.Unlock()

	var kcs []authn.Keychain
	h := sha256.New()
	for _, n := range names {
		var sec corev1.Secret
		if err := reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: n}, &sec); err != nil {
			continue
		}
		data := sec.Data[corev1.DockerConfigJsonKey]
		if len(data) == 0 {
			data = sec.Data[corev1.DockerConfigKey]
		}
		if len(data) == 0 {
			continue
		}
		kc, err := scanner.KeychainFromDockerConfig(data)
		if err != nil {
			continue
		}
		kcs = append(kcs, kc)
		h.Write([]byte(n))
		h.Write(data)
	}
	acc := anonymous
	if len(kcs) > 0 {
		acc = &access{key: "pull:" + hex.EncodeToString(h.Sum(nil)), keychain: authn.NewMultiKeychain(kcs...)}
	}
	p.mu.Lock()
	if len(p.pulled) > 4096 {
		clear(p.pulled)
	}
	p.pulled[memo] = pullEntry{acc: acc, fetched: p.now()}
	p.mu.Unlock()
	return acc
}

// scanAccess builds the access of a RegistryScan from its spec. Missing or malformed Secrets are
// stalling errors: the scan cannot run until a person fixes them.
func scanAccess(ctx context.Context, reader client.Reader, namespace string, credRef, caRef *localSecretRef, insecure bool, repos []string) (*access, error) {
	h := sha256.New()
	acc := &access{}
	if credRef != nil {
		key := credRef.Key
		if key == "" {
			key = corev1.DockerConfigJsonKey
		}
		data, problem, err := readSecretKey(ctx, reader, namespace, credRef.Name, key)
		if err != nil {
			return nil, err
		}
		if problem != "" {
			return nil, stalling(securityv1alpha1.ReasonCredentialsSecretNotReady, "credentials %s", problem)
		}
		kc, err := scanner.KeychainFromDockerConfig(data)
		if err != nil {
			return nil, stalling(securityv1alpha1.ReasonInvalidCredentials, "credentials Secret %s/%s key %q: %w", namespace, credRef.Name, key, err)
		}
		acc.keychain = kc
		h.Write([]byte("cred"))
		h.Write(data)
	}
	if caRef != nil {
		key := caRef.Key
		if key == "" {
			key = "ca.crt"
		}
		data, problem, err := readSecretKey(ctx, reader, namespace, caRef.Name, key)
		if err != nil {
			return nil, err
		}
		if problem != "" {
			return nil, stalling(securityv1alpha1.ReasonCABundleSecretNotReady, "CA bundle %s", problem)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(data) {
			return nil, stalling(securityv1alpha1.ReasonInvalidCABundle, "CA bundle Secret %s/%s key %q holds no PEM certificate", namespace, caRef.Name, key)
		}
		acc.caPEM = data
		h.Write([]byte("ca"))
		h.Write(data)
	}
	if insecure {
		hosts := map[string]bool{}
		for _, r := range repos {
			if host, _, ok := strings.Cut(r, "/"); ok {
				hosts[host] = true
			}
		}
		for host := range hosts {
			acc.insecure = append(acc.insecure, host)
		}
		sort.Strings(acc.insecure)
		h.Write([]byte("insecure:" + strings.Join(acc.insecure, ",")))
	}
	if acc.keychain == nil && acc.caPEM == nil && acc.insecure == nil {
		return anonymous, nil
	}
	acc.key = "scan:" + hex.EncodeToString(h.Sum(nil))
	return acc, nil
}

type localSecretRef struct{ Name, Key string }
