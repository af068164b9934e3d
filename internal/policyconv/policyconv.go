// Package policyconv turns ImageTrustPolicy objects into the scanner's policies. The
// controllers and the CLI (`imagetrust scan --policy FILE`) share it so a policy means the same
// thing in a cluster and in a CI job.
package policyconv

import (
	"context"
	"slices"

	v1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner"
	"github.com/imagetrust/imagetrust/scanner/policy"
	"github.com/imagetrust/imagetrust/scanner/verify"
	"github.com/imagetrust/imagetrust/scanner/verify/trustroot"
)

// KeyReader returns one key of a Secret or ConfigMap. A problem a person must fix (missing
// object or key, no permission) is returned as problem with a nil error; it names the object,
// never the data. The controllers read through the API server.
type KeyReader func(ctx context.Context, namespace, name, key string) (data []byte, problem string, err error)

// TrustRoots hands out shared trust-root providers (trustroot.Pool in the manager and the CLI).
type TrustRoots interface {
	// TUF is a TUF repository's provider: mirror "" is the public-good instance, a nil root
	// the embedded public-good root.
	TUF(mirror string, initialRoot []byte) (trustroot.Provider, error)
	// TrustedRoot is a trusted_root.json document's provider.
	TrustedRoot(name string, doc []byte) (trustroot.Provider, error)
}

// Env is what a policy refers to outside itself. A nil field means there is none (the CLI has
// no cluster): whatever needs it becomes a problem of the policy, never a silent drop.
type Env struct {
	Secrets    KeyReader
	ConfigMaps KeyReader
	TrustRoots TrustRoots
}

// ObjectRef names a namespaced object a policy reads.
type ObjectRef struct{ Namespace, Name string }

// SecretRef names a Secret a policy reads keys from.
type SecretRef = ObjectRef

// Converted is a converted policy. Configuration errors a person must fix are in
// Policy.Problems; the authorities they concern are left out of the policy, which is then
// Stalled and never enforceable.
type Converted struct {
	Policy scanner.Policy
	// SecretRefs and ConfigMapRefs are the objects the policy reads.
	SecretRefs    []SecretRef
	ConfigMapRefs []ObjectRef
	// TrustRoots are the trust-root providers the policy names, loaded or not, so the pool
	// keeps them while the policy exists.
	TrustRoots []trustroot.Provider
	// Pending are the problems that go away by themselves: trust roots still loading.
	// Unavailable are those of trust roots whose loads failed (retried in the background).
	// Both are in Policy.Problems too, so the verdict stays Unknown until the roots load.
	Pending, Unavailable []string
}

// AuthorityName is the scanner-wide name of a policy's authority: policies are evaluated
// together, and authority names are unique only within one policy.
func AuthorityName(policyName, authority string) string { return policyName + "/" + authority }

// Convert builds the scanner policy for p, reading what it references through env. Only a
// failing read is returned as an error; everything a person must fix lands in Problems.
func Convert(ctx context.Context, p *v1.ImageTrustPolicy, env Env) (Converted, error) {
	s := p.Spec
	var c Converted
	pp := policy.Policy{
		Name:                   p.Name,
		Images:                 slices.Clone(s.Images),
		RequireSignature:       s.RequireSignature,
		RequireSBOMAttestation: s.Attestations.SBOM,
		RequireSignedBase:      s.BaseImage.RequireSigned,
		AllowedRegistries:      slices.Clone(s.AllowedRegistries),
	}
	if prov := s.Attestations.SLSAProvenance; prov != nil {
		pp.RequireProvenance = true
		pp.AllowedBuilderIDs = slices.Clone(prov.AllowedBuilderIDs)
	}
	if g := s.Vulnerabilities; g != nil {
		gate := &policy.VulnerabilityGate{FailOn: string(g.FailOnSeverity), OnlyFixed: g.OnlyFixed}
		for _, e := range g.Ignore {
			ex := policy.Exception{ID: e.ID, Reason: e.Reason}
			if e.Expires != nil {
				ex.Expires = e.Expires.Time
			}
			gate.Ignore = append(gate.Ignore, ex)
		}
		pp.Vulnerabilities = gate
	}
	cv := &converter{ctx: ctx, env: env, out: &c}
	var auths []verify.Authority
	for _, a := range s.Authorities {
		va, err := cv.authority(p.Name, a)
		if err != nil {
			return c, err
		}
		if va == nil {
			continue
		}
		if err := va.Validate(); err != nil {
			c.Policy.Problems = append(c.Policy.Problems, err.Error())
			continue
		}
		auths = append(auths, *va)
		pp.Authorities = append(pp.Authorities, va.Name)
	}
	c.Policy.Policy, c.Policy.AuthorityConfigs, c.Policy.AllowUnsignedReferrers = pp, auths, s.AllowUnsignedReferrers
	for _, src := range s.SBOMSources {
		c.Policy.SBOMSources = append(c.Policy.SBOMSources, string(src))
	}
	return c, nil
}
