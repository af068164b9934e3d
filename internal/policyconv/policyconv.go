// Package policyconv turns ImageTrustPolicy objects into the scanner's policies. The
// controllers and the CLI (`imagetrust scan --policy FILE`) share it so a policy means the same
// thing in a cluster and in a CI job.
package policyconv

import (
	"context"
	"fmt"
	"slices"
	"strings"

	v1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner"
	"github.com/imagetrust/imagetrust/scanner/policy"
	"github.com/imagetrust/imagetrust/scanner/verify"
)

// SecretReader returns one key of a Secret. A problem a person must fix (missing Secret or key,
// no permission) is returned as problem with a nil error; it names the Secret, never the data.
// The controllers read through the API server; the CLI passes nil.
type SecretReader func(ctx context.Context, namespace, name, key string) (data []byte, problem string, err error)

// SecretRef names a Secret a policy reads keys from.
type SecretRef struct{ Namespace, Name string }

// Converted is a converted policy. Configuration errors a person must fix are in
// Policy.Problems; the authorities they concern are left out of the policy, which is then
// Stalled and never enforceable.
type Converted struct {
	Policy scanner.Policy
	// SecretRefs are the Secrets the policy reads keys from.
	SecretRefs []SecretRef
}

// AuthorityName is the scanner-wide name of a policy's authority: policies are evaluated
// together, and authority names are unique only within one policy.
func AuthorityName(policyName, authority string) string { return policyName + "/" + authority }

// Convert builds the scanner policy for p, reading key Secrets through read. Only a failing
// read is returned as an error; everything a person must fix lands in Problems.
func Convert(ctx context.Context, p *v1.ImageTrustPolicy, read SecretReader) (Converted, error) {
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
	var auths []verify.Authority
	for _, a := range s.Authorities {
		va := verify.Authority{Name: AuthorityName(p.Name, a.Name), IgnoreTlog: a.IgnoreTransparencyLog, RekorPublicKeyPEM: []byte(a.RekorPublicKey)}
		switch {
		case a.Key != nil && a.Key.SecretRef != nil:
			ref := a.Key.SecretRef
			c.SecretRefs = append(c.SecretRefs, SecretRef{Namespace: ref.Namespace, Name: ref.Name})
			if read == nil {
				c.Policy.Problems = append(c.Policy.Problems, fmt.Sprintf("authority %s: key Secret references need a cluster; use an inline key", a.Name))
				continue
			}
			data, problem, err := read(ctx, ref.Namespace, ref.Name, ref.Key)
			if err != nil {
				return c, err
			}
			if problem != "" {
				c.Policy.Problems = append(c.Policy.Problems, fmt.Sprintf("authority %s: %s", a.Name, problem))
				continue
			}
			va.PublicKeyPEM = data
		case a.Key != nil:
			va.PublicKeyPEM = []byte(a.Key.Data)
		case a.Keyless != nil:
			k := a.Keyless
			if strings.TrimSpace(k.Roots) == "" {
				c.Policy.Problems = append(c.Policy.Problems, fmt.Sprintf("authority %s: keyless.roots is empty; imagetrust verifies offline and does not fetch the public Sigstore trust root, so set keyless.roots (and keyless.intermediates) to the Fulcio CA certificates", a.Name))
				continue
			}
			kl := &verify.Keyless{
				RootsPEM:          []byte(k.Roots),
				IntermediatesPEM:  []byte(k.Intermediates),
				CTLogPublicKeyPEM: []byte(k.CTLogPublicKey),
				IgnoreSCT:         k.IgnoreSCT,
			}
			for _, id := range k.Identities {
				kl.Identities = append(kl.Identities, verify.Identity{
					Issuer: id.Issuer, IssuerRegExp: id.IssuerRegExp, Subject: id.Subject, SubjectRegExp: id.SubjectRegExp,
				})
			}
			va.Keyless = kl
		default:
			c.Policy.Problems = append(c.Policy.Problems, fmt.Sprintf("authority %s: sets neither key nor keyless", a.Name))
			continue
		}
		if err := va.Validate(); err != nil {
			c.Policy.Problems = append(c.Policy.Problems, err.Error())
			continue
		}
		auths = append(auths, va)
		pp.Authorities = append(pp.Authorities, va.Name)
	}
	c.Policy.Policy, c.Policy.AuthorityConfigs, c.Policy.AllowUnsignedReferrers = pp, auths, s.AllowUnsignedReferrers
	for _, src := range s.SBOMSources {
		c.Policy.SBOMSources = append(c.Policy.SBOMSources, string(src))
	}
	return c, nil
}
