package controllers

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/internal/upstream"
	"github.com/imagetrust/imagetrust/scanner/registry/registrytest"
	"github.com/imagetrust/imagetrust/scanner/verify/signtest"
	"github.com/imagetrust/imagetrust/scanner/verify/trustroot"
)

// The formats end to end: images signed and attested by the upstream cosign v2 and v3 and
// notation CLIs (default settings apart from the flags needed offline) in the test registry,
// policies naming trust roots from ConfigMaps, Secrets and a TUF mirror, and the real manager
// under envtest writing the reports.

const (
	e2eSubject = "release-bot@example.com"
	e2eIssuer  = "https://accounts.example.com"
	builderID  = "https://ci.example.com/builder@v1"
	// spdxSBOM is an SPDX 2.3 document as `cosign attest --type spdxjson` takes it.
	spdxSBOM  = `{"spdxVersion":"SPDX-2.3","dataLicense":"CC0-1.0","SPDXID":"SPDXRef-DOCUMENT","name":"app","documentNamespace":"https://example.com/app","creationInfo":{"created":"2026-12-01T00:00:00Z","creators":["Tool: test"]},"packages":[{"SPDXID":"SPDXRef-Package-openssl","name":"openssl","versionInfo":"3.0.11-1~deb12u2","downloadLocation":"NOASSERTION"}]}`
	slsaProv1 = `{"buildDefinition":{"buildType":"https://example.com/build/v1","externalParameters":{}},"runDetails":{"builder":{"id":"` + builderID + `"},"metadata":{}}}`
)

// formatsWorld is what the signers made: keys, certificates, a TSA, a TUF mirror.
type formatsWorld struct {
	h        *harness
	home     *upstream.Home
	key, pub string // cosign key pair
	otherPub string
	leaf     upstream.KeylessFiles
	tsaURL   string
	trusted  []byte // trusted_root.json: the private CA and the TSA, made by cosign
	tufURL   string
	tufRoot  []byte
	// notation: the trusted certificate and its identity; "evil" is another key
	notaryPEM []byte
	notaryID  string
}

func newFormatsWorld(t *testing.T, h *harness) *formatsWorld {
	t.Helper()
	w := &formatsWorld{h: h, home: upstream.NewHome(t)}
	w.key, w.pub = w.home.CosignKey("release")
	_, w.otherPub = w.home.CosignKey("other")
	ca, err := signtest.NewCA("formats")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	leaf, err := ca.IssueLeaf(e2eSubject, e2eIssuer, now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	w.leaf = w.home.Leaf("leaf", leaf)
	tsa, err := signtest.NewTSA("formats")
	if err != nil {
		t.Fatal(err)
	}
	tsaSrv := httptest.NewServer(tsa)
	t.Cleanup(tsaSrv.Close)
	w.tsaURL = tsaSrv.URL
	tr := w.home.TrustedRoot("trusted_root.json",
		"--fulcio", "url=https://fulcio.private.example,certificate-chain="+w.leaf.Chain,
		"--tsa", "url="+tsaSrv.URL+",certificate-chain="+w.home.File("tsa-chain.pem", tsa.ChainPEM))
	w.trusted = w.home.Read(filepath.Base(tr))
	repo, err := signtest.NewTUFRepo(t.TempDir(), map[string][]byte{trustroot.TrustedRootTarget: w.trusted}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tufSrv := httptest.NewServer(http.FileServer(http.Dir(repo.Dir)))
	t.Cleanup(tufSrv.Close)
	w.tufURL, w.tufRoot = tufSrv.URL, repo.RootJSON
	w.notaryPEM, w.notaryID = w.home.NotationCert("acme")
	w.home.NotationCert("evil")
	return w
}

// image pushes a distinct Debian image to formats/<repo>:1.
func (w *formatsWorld) image(repo string) name.Digest {
	img := mutate.Annotations(registrytest.DebianImage(debianPkgs), map[string]string{"org.example.case": repo}).(v1.Image)
	return w.h.push("formats/"+repo+":1", img)
}

func (w *formatsWorld) cosign(tl upstream.Tool, args ...string) {
	flags := upstream.CosignV3SignFlags
	if tl == upstream.CosignV2 {
		flags = upstream.CosignV2SignFlags
	}
	w.home.Must(tl, append(args[:len(args):len(args)], flags...)...)
}

func (w *formatsWorld) signKey(tl upstream.Tool, ref name.Digest) {
	w.cosign(tl, "sign", "--key", w.key, ref.String())
}

func (w *formatsWorld) attest(ref name.Digest, typ, predicate string) {
	file := w.home.File(typ+".json", []byte(predicate))
	w.cosign(upstream.CosignV3, "attest", "--key", w.key, "--type", typ, "--predicate", file, ref.String())
}

// signKeyless signs with the private CA's leaf and a timestamp from the local TSA.
func (w *formatsWorld) signKeyless(ref name.Digest) {
	w.cosign(upstream.CosignV3, "sign", "--key", w.leaf.Key, "--certificate", w.leaf.Cert, "--certificate-chain", w.leaf.Chain,
		"--timestamp-server-url", w.tsaURL, ref.String())
}

func (w *formatsWorld) notation(format, key string, ref name.Digest) {
	w.home.Must(upstream.Notation, "sign", "--insecure-registry", "--signature-format", format, "--key", key, ref.String())
}

func (w *formatsWorld) configMap(name string, data map[string]string) {
	w.h.create(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: w.h.ns["formats"], Name: name}, Data: data})
}

func (w *formatsWorld) secret(name string, data map[string][]byte) {
	w.h.create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: w.h.ns["formats"], Name: name}, Data: data})
}

func (w *formatsWorld) cmRef(name, key string) *securityv1alpha1.DataSource {
	return &securityv1alpha1.DataSource{ConfigMapRef: &securityv1alpha1.ConfigMapKeyReference{Namespace: w.h.ns["formats"], Name: name, Key: key}}
}

// policy is a policy for one repository of the case.
func (w *formatsWorld) policy(repo string, auth securityv1alpha1.Authority, att securityv1alpha1.AttestationRequirements) *securityv1alpha1.ImageTrustPolicy {
	return &securityv1alpha1.ImageTrustPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: repo + "-" + w.h.suffix},
		Spec: securityv1alpha1.ImageTrustPolicySpec{
			Images: []string{w.h.reg.Host() + "/formats/" + repo}, RequireSignature: true,
			Authorities: []securityv1alpha1.Authority{auth}, Attestations: att, Schedule: "@every 1h",
		},
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var keyless = []securityv1alpha1.KeylessIdentity{{Issuer: e2eIssuer, Subject: e2eSubject}}

// formatsCase is one image, how it was signed, the policy for it and what its report must say.
type formatsCase struct {
	repo string
	sign func(ref name.Digest)
	auth securityv1alpha1.Authority
	att  securityv1alpha1.AttestationRequirements
	// verify says what is still wrong with the report (nil once it is as expected).
	verify func(r *securityv1alpha1.ImageTrustReport) error
	// negative cases must never be seen Verified, not even on the way.
	negative bool
	// policy checks the policy's conditions once its report is final (nil: Ready).
	policy func(p *securityv1alpha1.ImageTrustPolicy) error
}

// TestFormatsEndToEnd: every signature format real signers produce is Verified (and attested)
// by the manager, keyless policies name a trust root instead of pasted certificates, and every
// negative is Invalid, Error or Unknown with a reason, never Verified.
func TestFormatsEndToEnd(t *testing.T) {
	h := newHarness(t, "formats")
	w := newFormatsWorld(t, h)
	w.configMap("sigstore", map[string]string{"trusted_root.json": string(w.trusted)})
	w.secret("tuf", map[string][]byte{"root.json": w.tufRoot})
	w.configMap("notation", map[string]string{"ca.pem": string(w.notaryPEM)})
	pub := readFile(t, w.pub)
	closed := closedURL(t)

	cases := []formatsCase{
		{repo: "cosign-v3-key", sign: func(ref name.Digest) {
			w.signKey(upstream.CosignV3, ref)
			w.attest(ref, "spdxjson", spdxSBOM)
			w.attest(ref, "slsaprovenance1", slsaProv1)
		}, auth: securityv1alpha1.Authority{Name: "release", Key: &securityv1alpha1.KeyAuthority{Data: pub}, IgnoreTransparencyLog: true},
			att: securityv1alpha1.AttestationRequirements{SBOM: true, SLSAProvenance: &securityv1alpha1.SLSAProvenanceRequirement{AllowedBuilderIDs: []string{builderID}}},
			verify: func(r *securityv1alpha1.ImageTrustReport) error {
				if _, err := wantTrusted(r, securityv1alpha1.SignatureFormatSigstoreBundle, "none: transparency log ignored"); err != nil {
					return err
				}
				if s := r.Status.SBOM; s == nil || s.Source != securityv1alpha1.SBOMAttested {
					return fmt.Errorf("SBOM %+v, want the attested one", s)
				}
				if p := r.Status.Provenance; p == nil || !p.Verified || p.BuilderID != builderID {
					return fmt.Errorf("provenance %+v", p)
				}
				return nil
			}},
		{repo: "cosign-v2-legacy", sign: func(ref name.Digest) { w.signKey(upstream.CosignV2, ref) },
			auth: securityv1alpha1.Authority{Name: "release", Key: &securityv1alpha1.KeyAuthority{Data: pub}, IgnoreTransparencyLog: true},
			verify: func(r *securityv1alpha1.ImageTrustReport) error {
				_, err := wantTrusted(r, securityv1alpha1.SignatureFormatCosignLegacy, "none: transparency log ignored")
				return err
			}},
		{repo: "keyless-trusted-root", sign: w.signKeyless,
			auth: securityv1alpha1.Authority{Name: "ci", Keyless: &securityv1alpha1.KeylessAuthority{Identities: keyless, IgnoreSCT: true},
				TrustRoot: &securityv1alpha1.TrustRoot{TrustedRoot: w.cmRef("sigstore", "trusted_root.json")}},
			verify: func(r *securityv1alpha1.ImageTrustReport) error {
				s, err := wantTrusted(r, securityv1alpha1.SignatureFormatSigstoreBundle, "RFC 3161 timestamp by "+w.tsaURL)
				if err == nil && (s.Subject != e2eSubject || s.Issuer != e2eIssuer || s.CertificateFingerprint == "") {
					err = fmt.Errorf("keyless signer %+v", s)
				}
				return err
			}},
		{repo: "keyless-tuf-mirror", sign: w.signKeyless,
			auth: securityv1alpha1.Authority{Name: "ci", Keyless: &securityv1alpha1.KeylessAuthority{Identities: keyless, IgnoreSCT: true},
				TrustRoot: &securityv1alpha1.TrustRoot{TUF: &securityv1alpha1.TUFTrustRoot{Mirror: w.tufURL,
					Root: &securityv1alpha1.DataSource{SecretRef: &securityv1alpha1.SecretKeyReference{Namespace: h.ns["formats"], Name: "tuf", Key: "root.json"}}}}},
			verify: func(r *securityv1alpha1.ImageTrustReport) error {
				_, err := wantTrusted(r, securityv1alpha1.SignatureFormatSigstoreBundle, "RFC 3161 timestamp")
				return err
			}},
		w.notationCase("notation-jws", "jws", "acme", true),
		w.notationCase("notation-cose", "cose", "acme", true),
		w.notationCase("notation-untrusted-key", "jws", "evil", false),
		{repo: "wrong-key", sign: func(ref name.Digest) { w.signKey(upstream.CosignV3, ref) },
			auth:   securityv1alpha1.Authority{Name: "other", Key: &securityv1alpha1.KeyAuthority{Data: readFile(t, w.otherPub)}, IgnoreTransparencyLog: true},
			verify: wantRefused(securityv1alpha1.SignatureInvalid, securityv1alpha1.VerdictUntrusted, "none verified"), negative: true},
		{repo: "copied-bundle", sign: func(ref name.Digest) {
			src := w.image("copied-bundle-source")
			w.signKey(upstream.CosignV3, src)
			upstream.CopyReferrers(t, src, ref, h.reg.RemoteOptions(h.ctx)...)
		}, auth: securityv1alpha1.Authority{Name: "release", Key: &securityv1alpha1.KeyAuthority{Data: pub}, IgnoreTransparencyLog: true},
			verify: wantRefused(securityv1alpha1.SignatureInvalid, securityv1alpha1.VerdictUntrusted, "1 signature found, none verified"), negative: true},
		{repo: "tuf-unreachable", sign: w.signKeyless,
			auth: securityv1alpha1.Authority{Name: "ci", Keyless: &securityv1alpha1.KeylessAuthority{Identities: keyless, IgnoreSCT: true},
				TrustRoot: &securityv1alpha1.TrustRoot{TUF: &securityv1alpha1.TUFTrustRoot{Mirror: closed, Root: w.cmRef("tufroot", "root.json")}}},
			verify: wantUnknown(securityv1alpha1.SignatureError, "TUF update from "+closed), negative: true,
			policy: wantStalled(securityv1alpha1.ReasonTrustRootUnavailable, "TUF update from "+closed)},
		{repo: "public-good-disabled", sign: w.signKeyless,
			auth:   securityv1alpha1.Authority{Name: "ci", Keyless: &securityv1alpha1.KeylessAuthority{Identities: keyless, IgnoreSCT: true}},
			verify: wantUnknown(securityv1alpha1.SignatureError, "public-good Sigstore trust root is disabled"), negative: true,
			policy: wantStalled(securityv1alpha1.ReasonInvalidConfiguration, "public-good Sigstore trust root is disabled")},
	}
	w.configMap("tufroot", map[string]string{"root.json": string(w.tufRoot)})

	h.start()
	refs := map[string]name.Digest{}
	for _, tc := range cases {
		ref := w.image(tc.repo)
		tc.sign(ref)
		refs[tc.repo] = ref
		h.create(w.policy(tc.repo, tc.auth, tc.att))
		h.runPod("formats", tc.repo, nil, ctr{name: "app", image: h.reg.Repo("formats/" + tc.repo + ":1"), imageID: ref.String()})
	}
	for _, tc := range cases {
		t.Run(tc.repo, func(t *testing.T) {
			poll(t, 90*time.Second, "report of "+tc.repo, func() error {
				rs, err := h.reports("formats")
				if err != nil {
					return err
				}
				r := rs[refs[tc.repo].DigestStr()]
				if r == nil || r.Status.Signature == nil || r.Status.Policy == nil {
					return errors.New("not assessed yet")
				}
				if tc.negative && r.Status.Signature.State == securityv1alpha1.SignatureVerified {
					t.Fatalf("a negative case was reported Verified: %+v", r.Status.Signature)
				}
				if err := tc.verify(r); err != nil {
					return err
				}
				return w.policyState(tc)
			})
		})
	}
}

// policyState is nil once the case's policy has the conditions the case expects.
func (w *formatsWorld) policyState(tc formatsCase) error {
	var p securityv1alpha1.ImageTrustPolicy
	if err := w.h.c.Get(w.h.ctx, client.ObjectKey{Name: tc.repo + "-" + w.h.suffix}, &p); err != nil {
		return err
	}
	if tc.policy != nil {
		return tc.policy(&p)
	}
	if c := findCondition(p.Status.Conditions, securityv1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
		return fmt.Errorf("policy not Ready: %+v", p.Status.Conditions)
	}
	return nil
}

func (w *formatsWorld) notationCase(repo, format, key string, trusted bool) formatsCase {
	tc := formatsCase{repo: repo, sign: func(ref name.Digest) { w.notation(format, key, ref) },
		auth: securityv1alpha1.Authority{Name: "notary", Notation: &securityv1alpha1.NotationAuthority{
			TrustStore: w.cmRef("notation", "ca.pem"), TrustedIdentities: []string{w.notaryID},
			RegistryScopes: []string{w.h.reg.Host() + "/formats/" + repo}, Revocation: securityv1alpha1.NotationRevocationSkip,
		}},
		verify:   wantRefused(securityv1alpha1.SignatureInvalid, securityv1alpha1.VerdictUntrusted, "Notation signature"),
		negative: !trusted,
	}
	if trusted {
		tc.verify = func(r *securityv1alpha1.ImageTrustReport) error {
			s, err := wantTrusted(r, securityv1alpha1.SignatureFormatNotation, "none: certificate checked at verification time")
			if err == nil && ("x509.subject: "+s.CertificateSubject != w.notaryID || !strings.HasPrefix(s.CertificateFingerprint, "SHA256:")) {
				err = fmt.Errorf("notation signer %+v, want %s", s, w.notaryID)
			}
			return err
		}
	}
	return tc
}

// wantTrusted checks a Verified, Trusted report with one signer of the format whose time proof
// contains proof, and returns the signer.
func wantTrusted(r *securityv1alpha1.ImageTrustReport, format securityv1alpha1.SignatureFormat, proof string) (securityv1alpha1.SignerIdentity, error) {
	sig := r.Status.Signature
	if sig.State != securityv1alpha1.SignatureVerified || len(sig.Signers) != 1 {
		return securityv1alpha1.SignerIdentity{}, fmt.Errorf("signature %s (%d signers): %s", sig.State, len(sig.Signers), sig.Reason)
	}
	s := sig.Signers[0]
	if s.Format != format || !strings.Contains(s.TimeProof, proof) {
		return s, fmt.Errorf("signer format %q time proof %q, want %q and %q", s.Format, s.TimeProof, format, proof)
	}
	if v := r.Status.Policy.Verdict; v != securityv1alpha1.VerdictTrusted {
		return s, fmt.Errorf("verdict %s: %+v", v, r.Status.Policy.FailedChecks)
	}
	return s, nil
}

func wantRefused(state securityv1alpha1.SignatureState, verdict securityv1alpha1.Verdict, reason string) func(*securityv1alpha1.ImageTrustReport) error {
	return func(r *securityv1alpha1.ImageTrustReport) error {
		sig := r.Status.Signature
		if sig.State != state || len(sig.Signers) != 0 || !strings.Contains(sig.Reason, reason) {
			return fmt.Errorf("signature %s %v: %q, want %s with %q", sig.State, sig.Signers, sig.Reason, state, reason)
		}
		if v := r.Status.Policy.Verdict; v != verdict {
			return fmt.Errorf("verdict %s, want %s", v, verdict)
		}
		return nil
	}
}

// wantUnknown: a policy that cannot be enforced leaves the image Unknown, never Verified, and
// the report says why.
func wantUnknown(state securityv1alpha1.SignatureState, reason string) func(*securityv1alpha1.ImageTrustReport) error {
	return func(r *securityv1alpha1.ImageTrustReport) error {
		if st := r.Status.Signature.State; st != state {
			return fmt.Errorf("signature %s, want %s: %s", st, state, r.Status.Signature.Reason)
		}
		if v := r.Status.Policy.Verdict; v != securityv1alpha1.VerdictUnknown {
			return fmt.Errorf("verdict %s, want Unknown", v)
		}
		c := conditionOf(r, securityv1alpha1.ConditionStalled)
		if c == nil || c.Reason != securityv1alpha1.ReasonPolicyStalled || !strings.Contains(c.Message, reason) {
			return fmt.Errorf("Stalled condition %+v, want one naming %q", c, reason)
		}
		return nil
	}
}

func wantStalled(reason, message string) func(*securityv1alpha1.ImageTrustPolicy) error {
	return func(p *securityv1alpha1.ImageTrustPolicy) error {
		c := findCondition(p.Status.Conditions, securityv1alpha1.ConditionStalled)
		if c == nil || c.Status != metav1.ConditionTrue || c.Reason != reason || !strings.Contains(c.Message, message) {
			return fmt.Errorf("policy conditions %+v, want Stalled %s naming %q", p.Status.Conditions, reason, message)
		}
		return nil
	}
}

// poll calls f until it returns nil, failing t (not the parent test) after timeout.
func poll(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %s: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// closedURL is an http URL on which nothing listens.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// TestTrustRootLoadsAfterThePolicy: while a policy's TUF trust root is still loading the
// policy is Stalled and Reconciling (TrustRootPending) and its image Unknown, never Verified;
// once the mirror answers, the policy is compiled again without any edit and the image is
// Verified.
func TestTrustRootLoadsAfterThePolicy(t *testing.T) {
	h := newHarness(t, "formats")
	w := newFormatsWorld(t, h)
	gate := make(chan struct{})
	tufSrv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		<-gate
		http.Redirect(rw, r, w.tufURL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer tufSrv.Close()
	opened := false
	open := func() {
		if !opened {
			opened = true
			close(gate)
		}
	}
	defer open()
	w.configMap("tufroot", map[string]string{"root.json": string(w.tufRoot)})
	ref := w.image("pending")
	w.signKeyless(ref)
	pol := w.policy("pending", securityv1alpha1.Authority{Name: "ci", Keyless: &securityv1alpha1.KeylessAuthority{Identities: keyless, IgnoreSCT: true},
		TrustRoot: &securityv1alpha1.TrustRoot{TUF: &securityv1alpha1.TUFTrustRoot{Mirror: tufSrv.URL, Root: w.cmRef("tufroot", "root.json")}}}, securityv1alpha1.AttestationRequirements{})
	h.create(pol)
	h.start()
	h.runPod("formats", "pending", nil, ctr{name: "app", image: h.reg.Repo("formats/pending:1"), imageID: ref.String()})

	pending := formatsCase{repo: "pending", policy: func(p *securityv1alpha1.ImageTrustPolicy) error {
		if err := wantStalled(securityv1alpha1.ReasonTrustRootPending, "not loaded yet")(p); err != nil {
			return err
		}
		if c := findCondition(p.Status.Conditions, securityv1alpha1.ConditionReconciling); c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("not Reconciling: %+v", p.Status.Conditions)
		}
		return nil
	}}
	h.eventually(60*time.Second, "pending policy and report", func() error {
		r := h.waitReport("formats", ref.DigestStr(), nil)
		if r.Status.Signature == nil || r.Status.Policy == nil {
			return errors.New("not assessed yet")
		}
		if err := wantUnknown(securityv1alpha1.SignatureError, "not loaded yet")(r); err != nil {
			return err
		}
		return w.policyState(pending)
	})

	open()
	h.eventually(60*time.Second, "report once the root loaded", func() error {
		r := h.waitReport("formats", ref.DigestStr(), nil)
		if _, err := wantTrusted(r, securityv1alpha1.SignatureFormatSigstoreBundle, "RFC 3161 timestamp"); err != nil {
			return err
		}
		return w.policyState(formatsCase{repo: "pending"})
	})
}
