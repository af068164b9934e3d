// Package policyconv turns ImageTrustPolicy objects into the scanner's policies. The
// controllers and the CLI (`imagetrust scan --policy FILE`) share it so a policy means the same
// thing in a cluster and in a CI job.
package policyconv

import (
	"context"
	"fmt"
	"slices"

	v1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner"
	"github.com/imagetrust/imagetrust/scanner/policy"
	"github.com/imagetrust/imagetrust/scanner/verify"
)

// SecretReader returns one key of a Secret. The controllers read through the manager's cache;
// the CLI has none and passes nil (Secret references are then an error).
type SecretReader func(ctx context.Context, namespace, name, key string) ([]byte, error)

// MissingSecretError is returned when a referenced Secret or key does not exist: the user must
// create it (the controllers report the policy as Stalled).
type MissingSecretError struct {
	Namespace, Name, Key string
	Err                  error
}

func (e *MissingSecretError) Error() string {
	return fmt.Sprintf("secret %s/%s key %q: %v", e.Namespace, e.Name, e.Key, e.Err)
}

func (e *MissingSecretError) Unwrap() error { return e.Err }

// AuthorityName is the scanner-wide name of a policy's authority; policies are evaluated
// together, so names are qualified by the policy.
func AuthorityName(policyName, authority string) string { return policyName + "/" + authority }

// Convert builds the scanner policy for p, reading key Secrets through read.
func Convert(ctx context.Context, p *v1.ImageTrustPolicy, read SecretReader) (scanner.Policy, error) {
	s := p.Spec
	out := scanner.Policy{
		Policy: policy.Policy{
			Name:                   p.Name,
			Images:                 slices.Clone(s.Images),
			RequireSignature:       s.RequireSignature,
			RequireSBOMAttestation: s.Attestations.SBOM,
			RequireSignedBase:      s.BaseImage.RequireSigned,
			AllowedRegistries:      slices.Clone(s.AllowedRegistries),
		},
		AllowUnsignedReferrers: s.AllowUnsignedReferrers,
	}
	for _, src := range s.SBOMSources {
		out.SBOMSources = append(out.SBOMSources, string(src))
	}
	if prov := s.Attestations.SLSAProvenance; prov != nil {
		out.RequireProvenance = true
		out.AllowedBuilderIDs = slices.Clone(prov.AllowedBuilderIDs)
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
		out.Vulnerabilities = gate
	}
	for _, a := range s.Authorities {
		auth, err := convertAuthority(ctx, p.Name, a, read)
		if err != nil {
			return out, err
		}
		if err := auth.Validate(); err != nil {
			return out, fmt.Errorf("authority %q: %w", a.Name, err)
		}
		out.AuthorityConfigs = append(out.AuthorityConfigs, auth)
		out.Authorities = append(out.Authorities, auth.Name)
	}
	return out, nil
}

func convertAuthority(ctx context.Context, policyName string, a v1.Authority, read SecretReader) (verify.Authority, error) {
	out := verify.Authority{
		Name:              AuthorityName(policyName, a.Name),
		IgnoreTlog:        a.IgnoreTransparencyLog,
		RekorPublicKeyPEM: []byte(a.RekorPublicKey),
	}
	switch {
	case a.Key != nil && a.Key.SecretRef != nil:
		ref := a.Key.SecretRef
		if read == nil {
			return out, fmt.Errorf("authority %q: key Secret references need a cluster; use an inline key", a.Name)
		}
		data, err := read(ctx, ref.Namespace, ref.Name, ref.Key)
		if err != nil {
			return out, err
		}
		out.PublicKeyPEM = data
	case a.Key != nil:
		out.PublicKeyPEM = []byte(a.Key.Data)
	case a.Keyless != nil:
		k := &verify.Keyless{
			RootsPEM:          []byte(a.Keyless.Roots),
			IntermediatesPEM:  []byte(a.Keyless.Intermediates),
			CTLogPublicKeyPEM: []byte(a.Keyless.CTLogPublicKey),
			IgnoreSCT:         a.Keyless.IgnoreSCT,
		}
		for _, id := range a.Keyless.Identities {
			k.Identities = append(k.Identities, verify.Identity{
				Issuer: id.Issuer, IssuerRegExp: id.IssuerRegExp, Subject: id.Subject, SubjectRegExp: id.SubjectRegExp,
			})
		}
		out.Keyless = k
	}
	return out, nil
}

// Applies reports whether one of p's image patterns matches image (a repository or a
// reference). Namespace selectors are the controllers' business.
func Applies(p scanner.Policy, image string) bool {
	for _, pattern := range p.Images {
		if policy.MatchImage(pattern, image) {
			return true
		}
	}
	return false
}
