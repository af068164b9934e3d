package interop

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/imagetrust/imagetrust/scanner/sbom"
	"github.com/imagetrust/imagetrust/scanner/verify"
)

// Offline flags: no transparency log, no TUF signing config.
var (
	v2SignFlags   = []string{"--tlog-upload=false", "--allow-http-registry", "-y"}
	v3SignFlags   = []string{"--tlog-upload=false", "--use-signing-config=false", "--allow-http-registry", "-y"}
	verifyOffline = []string{"--insecure-ignore-tlog", "--allow-http-registry"}
)

func keyAuthority(t *testing.T, n, pubPath string) verify.Authority {
	t.Helper()
	pem, err := os.ReadFile(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	return verify.Authority{Name: n, PublicKeyPEM: pem, IgnoreTlog: true}
}

func formats(signers []verify.Signer) string {
	var fs []string
	for _, s := range signers {
		fs = append(fs, string(s.Format))
	}
	return strings.Join(fs, ",")
}

// TestCosignKeyBased covers cosign v2's legacy layout, cosign v3's bundles, and both at once,
// each verified by the same tool version's `cosign verify` and by imagetrust.
func TestCosignKeyBased(t *testing.T) {
	for _, r := range registries(t) {
		t.Run(r.name, func(t *testing.T) {
			e := newEnv(t)
			key, pub := e.CosignKey("release")
			_, otherPub := e.CosignKey("other")
			for _, tc := range []struct {
				name    string
				signers []tool
				want    string // formats of imagetrust's signers
			}{
				{"v2 legacy", []tool{cosignV2}, "cosign-legacy"},
				{"v3 bundle", []tool{cosignV3}, "sigstore-bundle"},
				{"v2 legacy and v3 bundle", []tool{cosignV2, cosignV3}, "cosign-legacy,sigstore-bundle"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					ref := pushImage(t, r.host, "key/"+strings.ReplaceAll(tc.name, " ", "-"))
					for _, s := range tc.signers {
						flags := v3SignFlags
						if s == cosignV2 {
							flags = v2SignFlags
						}
						e.Must(s, append(append([]string{"sign", "--key", key}, flags...), ref.String())...)
					}
					for _, s := range tc.signers {
						args := append([]string{"verify", "--key", pub}, verifyOffline...)
						if s == cosignV2 && len(tc.signers) > 1 {
							// cosign v2 switches to the bundle when it sees one, and then wants
							// a trusted root even for a key; an empty one is enough.
							args = append(args, "--trusted-root", emptyTrustedRoot(e))
						}
						out, ok := e.Run(s, append(args, ref.String())...)
						res := verifier().VerifySignatures(ctx, ref, []verify.Authority{keyAuthority(t, "release", pub)})
						agree(t, s.File+" verify", true, ok, out, res.State, res.Reason)
						if got := formats(res.Signers); got != tc.want {
							t.Errorf("signer formats %q, want %q (%s)", got, tc.want, res.Reason)
						}
						// The wrong key: upstream and imagetrust both refuse.
						args[2] = otherPub
						out, ok = e.Run(s, append(args, ref.String())...)
						res = verifier().VerifySignatures(ctx, ref, []verify.Authority{keyAuthority(t, "other", otherPub)})
						agree(t, s.File+" verify, wrong key", false, ok, out, res.State, res.Reason)
					}
				})
			}
		})
	}
}

// emptyTrustedRoot is a trusted_root.json with no services, made by `cosign trusted-root create`.
func emptyTrustedRoot(e *env) string {
	e.t.Helper()
	p := filepath.Join(e.Dir, "empty-trusted-root.json")
	if _, err := os.Stat(p); err != nil {
		e.Must(cosignV3, "trusted-root", "create", "--out", p)
	}
	return p
}

const (
	spdxPredicate = `{"spdxVersion":"SPDX-2.3","dataLicense":"CC0-1.0","SPDXID":"SPDXRef-DOCUMENT","name":"app","documentNamespace":"https://example.com/app","creationInfo":{"created":"2026-12-01T00:00:00Z","creators":["Tool: test"]},"packages":[{"SPDXID":"SPDXRef-Package-openssl","name":"openssl","versionInfo":"3.0.11-1~deb12u2","downloadLocation":"NOASSERTION"}]}`
	cdxPredicate  = `{"bomFormat":"CycloneDX","specVersion":"1.5","version":1,"components":[{"type":"library","name":"openssl","version":"3.0.11"}]}`
	slsaPredicate = `{"buildDefinition":{"buildType":"https://example.com/build/v1","externalParameters":{}},"runDetails":{"builder":{"id":"https://ci.example.com/builder@v1"},"metadata":{}}}`
)

// TestCosignAttestations attests SPDX, CycloneDX and SLSA v1 predicates with cosign v2 (the
// .att tag) and cosign v3 (bundles), and compares `cosign verify-attestation --type` with
// imagetrust's attestations.
func TestCosignAttestations(t *testing.T) {
	preds := []struct{ cosignType, predicateType, body string }{
		{"spdxjson", "https://spdx.dev/Document", spdxPredicate},
		{"cyclonedx", "https://cyclonedx.org/bom", cdxPredicate},
		{"slsaprovenance1", "https://slsa.dev/provenance/v1", slsaPredicate},
	}
	for _, r := range registries(t) {
		t.Run(r.name, func(t *testing.T) {
			e := newEnv(t)
			key, pub := e.CosignKey("release")
			for _, s := range []tool{cosignV2, cosignV3} {
				t.Run(s.File, func(t *testing.T) {
					ref := pushImage(t, r.host, "att/"+s.File)
					flags := v3SignFlags
					if s == cosignV2 {
						flags = v2SignFlags
					}
					for _, p := range preds {
						file := e.File(p.cosignType+".json", []byte(p.body))
						e.Must(s, append(append([]string{"attest", "--key", key, "--type", p.cosignType, "--predicate", file}, flags...), ref.String())...)
					}
					res := verifier().VerifyAttestations(ctx, ref, []verify.Authority{keyAuthority(t, "release", pub)})
					got := map[string]verify.Attestation{}
					for _, a := range res.Attestations {
						got[a.PredicateType] = a
					}
					for _, p := range preds {
						out, ok := e.Run(s, append([]string{"verify-attestation", "--key", pub, "--type", p.cosignType}, append(verifyOffline, ref.String())...)...)
						a, found := got[p.predicateType]
						state := res.State
						if !found {
							state = verify.Invalid
						}
						agree(t, s.File+" verify-attestation --type "+p.cosignType, true, ok, out, state, res.Reason)
						if found && !jsonEqual(t, a.Predicate, []byte(p.body)) {
							t.Errorf("%s predicate = %s", p.predicateType, a.Predicate)
						}
					}
					if _, doc, ok := verify.SBOMFromAttestation(got["https://spdx.dev/Document"]); !ok || !jsonEqual(t, doc, []byte(spdxPredicate)) {
						t.Errorf("SPDX SBOM not extracted: %s", doc)
					}
					if p, ok := verify.ProvenanceFromAttestation(got["https://slsa.dev/provenance/v1"]); !ok || p.BuilderID != "https://ci.example.com/builder@v1" {
						t.Errorf("SLSA builder = %+v", p)
					}
				})
			}
		})
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// TestCosignSignsORASReferrer attaches an SBOM with oras and signs the SBOM artifact with
// cosign v3: imagetrust must find the bundle on the referrer's digest, and the SBOM source
// must accept the referrer SBOM as trusted.
func TestCosignSignsORASReferrer(t *testing.T) {
	for _, r := range registries(t) {
		t.Run(r.name, func(t *testing.T) {
			e := newEnv(t)
			key, pub := e.CosignKey("release")
			_, otherPub := e.CosignKey("other")
			ref := pushImage(t, r.host, "sbom/app")
			e.File("sbom.spdx.json", []byte(spdxPredicate))
			e.Must(orasCLI, "attach", "--plain-http", "--artifact-type", sbom.MediaTypeSPDXJSON, "--export-manifest", "sbom-manifest.json",
				ref.String(), "sbom.spdx.json:"+sbom.MediaTypeSPDXJSON)
			sum := sha256.Sum256(e.Read("sbom-manifest.json"))
			artifact := ref.Context().Digest("sha256:" + hex.EncodeToString(sum[:]))
			e.Must(cosignV3, append(append([]string{"sign", "--key", key}, v3SignFlags...), artifact.String())...)

			for _, tc := range []struct {
				name string
				pub  string
				want bool
			}{{"signing key", pub, true}, {"other key", otherPub, false}} {
				out, ok := e.Run(cosignV3, append(append([]string{"verify", "--key", tc.pub}, verifyOffline...), artifact.String())...)
				auths := []verify.Authority{keyAuthority(t, "release", tc.pub)}
				res := verifier().VerifyDigestSignature(ctx, artifact, auths)
				agree(t, "cosign verify of the SBOM referrer with the "+tc.name, tc.want, ok, out, res.State, res.Reason)

				src := &sbom.ReferrerSource{RemoteOptions: anon, Trust: func(ctx context.Context, d name.Digest) error {
					if r := verifier().VerifyDigestSignature(ctx, d, auths); r.State != verify.Verified {
						return fmt.Errorf("signature %s: %s", r.State, r.Reason)
					}
					return nil
				}}
				doc, err := src.Fetch(ctx, ref)
				switch {
				case tc.want && (err != nil || doc.Source != sbom.SourceReferrer || !strings.Contains(doc.Note, "(trusted)")):
					t.Errorf("referrer SBOM with the %s: %+v, %v", tc.name, doc, err)
				case !tc.want && err == nil:
					t.Errorf("referrer SBOM accepted with the %s", tc.name)
				}
			}
		})
	}
}
