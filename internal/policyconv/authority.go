package policyconv

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	v1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner/verify"
	"github.com/imagetrust/imagetrust/scanner/verify/trustroot"
)

// converter turns one policy's authorities into the verifier's, collecting what they read.
type converter struct {
	ctx context.Context
	env Env
	out *Converted
	// name is the name of the authority being converted, for problems.
	name string
}

// problem records a configuration error of the current authority.
func (cv *converter) problem(format string, args ...any) {
	cv.out.Policy.Problems = append(cv.out.Policy.Problems, fmt.Sprintf("authority %s: %s", cv.name, fmt.Sprintf(format, args...)))
}

// authority converts a; nil (and no error) when a problem leaves it out of the policy.
func (cv *converter) authority(policyName string, a v1.Authority) (*verify.Authority, error) {
	cv.name = a.Name
	va := &verify.Authority{Name: AuthorityName(policyName, a.Name), IgnoreTlog: a.IgnoreTransparencyLog, RekorPublicKeyPEM: []byte(a.RekorPublicKey)}
	var ok bool
	var err error
	switch {
	case a.Key != nil:
		ok, err = cv.key(va, a.Key)
	case a.Keyless != nil:
		va.Keyless, ok = keyless(a.Keyless), true
	case a.Notation != nil:
		va.Notation, ok, err = cv.notation(a.Notation)
	default:
		cv.problem("sets none of key, keyless or notation")
	}
	if err != nil || !ok {
		return nil, err
	}
	if a.Notation != nil {
		return va, nil
	}
	tr, ok, err := cv.trustRoot(a)
	if err != nil || !ok {
		return nil, err
	}
	va.TrustRoot = tr
	return va, nil
}

func (cv *converter) key(va *verify.Authority, k *v1.KeyAuthority) (bool, error) {
	if k.SecretRef == nil {
		va.PublicKeyPEM = []byte(k.Data)
		return true, nil
	}
	data, ok, err := cv.read(&v1.DataSource{SecretRef: k.SecretRef}, "")
	va.PublicKeyPEM = data
	return ok, err
}

func keyless(k *v1.KeylessAuthority) *verify.Keyless {
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
	return kl
}

func (cv *converter) notation(n *v1.NotationAuthority) (*verify.Notation, bool, error) {
	vn := &verify.Notation{
		Scopes:            slices.Clone(n.RegistryScopes),
		TrustedIdentities: slices.Clone(n.TrustedIdentities),
		Level:             string(n.Level),
		Revocation:        string(n.Revocation),
	}
	if n.TrustStore != nil {
		data, ok, err := cv.read(n.TrustStore, "notation.trustStore")
		if err != nil || !ok {
			return nil, false, err
		}
		vn.TrustStorePEM = data
	}
	if n.TSATrustStore != nil {
		data, ok, err := cv.read(n.TSATrustStore, "notation.tsaTrustStore")
		if err != nil || !ok {
			return nil, false, err
		}
		vn.TSATrustStorePEM = data
	}
	return vn, true, nil
}

// trustRoot returns the authority's trust-root provider: the one it names, or the public-good
// instance for a keyless authority that names no trust material at all. ok is false when a
// configuration problem leaves the authority out of the policy. A root that is still loading
// or failed to load keeps the authority (its verifications are Errors, never Verified) and is a
// problem too, so the policy is not enforced until the root loads.
func (cv *converter) trustRoot(a v1.Authority) (trustroot.Provider, bool, error) {
	tr, implicit := a.TrustRoot, false
	if tr == nil && a.Keyless != nil && strings.TrimSpace(a.Keyless.Roots) == "" {
		tr, implicit = &v1.TrustRoot{TUF: &v1.TUFTrustRoot{}}, true
	}
	if tr == nil {
		return nil, true, nil
	}
	if cv.env.TrustRoots == nil {
		cv.problem("trust roots are not available here; set keyless.roots (and keyless.intermediates) to the Fulcio CA certificates")
		return nil, false, nil
	}
	prov, ok, err := cv.provider(tr, implicit)
	if err != nil || !ok {
		return nil, false, err
	}
	cv.out.TrustRoots = append(cv.out.TrustRoots, prov)
	if _, err := prov.Material(cv.ctx); err != nil {
		if errors.Is(err, trustroot.ErrNotLoaded) {
			msg := fmt.Sprintf("authority %s: %v (loading in the background; the policy is re-evaluated when it loads)", cv.name, err)
			cv.out.Policy.Problems = append(cv.out.Policy.Problems, msg)
			cv.out.Pending = append(cv.out.Pending, msg)
		} else {
			cv.problem("%v", err)
			cv.out.Unavailable = append(cv.out.Unavailable, cv.out.Policy.Problems[len(cv.out.Policy.Problems)-1])
		}
	}
	return prov, true, nil
}

// provider gets the trust root's provider from the pool; a refusal is recorded as a problem.
// implicit says tr is the public-good default of a keyless authority that names nothing.
func (cv *converter) provider(tr *v1.TrustRoot, implicit bool) (trustroot.Provider, bool, error) {
	if t := tr.TUF; t != nil {
		var root []byte
		if t.Root != nil {
			data, ok, err := cv.read(t.Root, "trustRoot.tuf.root")
			if err != nil || !ok {
				return nil, false, err
			}
			root = data
		}
		prov, err := cv.env.TrustRoots.TUF(t.Mirror, root)
		switch {
		case err != nil && implicit:
			cv.problem("keyless.roots is empty and no trustRoot is named, so the public-good Sigstore trust root would be used: %v", err)
			return nil, false, nil
		case err != nil:
			cv.problem("trustRoot.tuf: %v", err)
			return nil, false, nil
		}
		return prov, true, nil
	}
	data, ok, err := cv.read(tr.TrustedRoot, "trustRoot.trustedRoot")
	if err != nil || !ok {
		return nil, false, err
	}
	prov, err := cv.env.TrustRoots.TrustedRoot(describe(tr.TrustedRoot, cv.name), data)
	if err != nil {
		cv.problem("trustRoot.trustedRoot: %v", err)
		return nil, false, nil
	}
	return prov, true, nil
}

// read returns a data source's document; ok is false when a problem was recorded instead.
// field names the source in problems ("" for an authority's key Secret, named by the Secret).
func (cv *converter) read(ds *v1.DataSource, field string) ([]byte, bool, error) {
	prefix := field + ": "
	if field == "" {
		field, prefix = "key", ""
	}
	var data []byte
	var problem string
	var err error
	switch {
	case ds.SecretRef != nil:
		r := ds.SecretRef
		cv.out.SecretRefs = append(cv.out.SecretRefs, ObjectRef{Namespace: r.Namespace, Name: r.Name})
		if cv.env.Secrets == nil {
			cv.problem("%s Secret references need a cluster; give the data inline", field)
			return nil, false, nil
		}
		data, problem, err = cv.env.Secrets(cv.ctx, r.Namespace, r.Name, r.Key)
	case ds.ConfigMapRef != nil:
		r := ds.ConfigMapRef
		cv.out.ConfigMapRefs = append(cv.out.ConfigMapRefs, ObjectRef{Namespace: r.Namespace, Name: r.Name})
		if cv.env.ConfigMaps == nil {
			cv.problem("%s ConfigMap references need a cluster; give the data inline", field)
			return nil, false, nil
		}
		data, problem, err = cv.env.ConfigMaps(cv.ctx, r.Namespace, r.Name, r.Key)
	default:
		data = []byte(ds.Data)
	}
	if err != nil {
		return nil, false, err
	}
	if problem != "" {
		cv.problem("%s%s", prefix, problem)
		return nil, false, nil
	}
	if strings.TrimSpace(string(data)) == "" {
		cv.problem("%s is empty", field)
		return nil, false, nil
	}
	return data, true, nil
}

// describe names a document in reasons: where it lives, never what it holds.
func describe(ds *v1.DataSource, authority string) string {
	switch {
	case ds.SecretRef != nil:
		return fmt.Sprintf("Secret %s/%s key %s", ds.SecretRef.Namespace, ds.SecretRef.Name, ds.SecretRef.Key)
	case ds.ConfigMapRef != nil:
		return fmt.Sprintf("ConfigMap %s/%s key %s", ds.ConfigMapRef.Namespace, ds.ConfigMapRef.Name, ds.ConfigMapRef.Key)
	}
	return "inline trustedRoot of authority " + authority
}
