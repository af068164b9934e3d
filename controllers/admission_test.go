package controllers

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner"
	"github.com/imagetrust/imagetrust/scanner/registry/registrytest"
)

// Admission found no verdict for an image nothing runs yet: any replica writes a request
// report, the leader's Engine assesses the image in that namespace so the next admission finds
// a verdict, and the report ages out like any other once the request is older than the grace
// period and nothing else wants the image.
func TestAdmissionRequestIsAssessedInItsNamespace(t *testing.T) {
	h := newHarness(t, "secure")
	h.labelNamespace("secure", map[string]string{"imagetrust-test/secure": "true"})
	app := h.push("team/new:2.0", registrytest.DebianImage(debianPkgs))
	h.sign(app, syftSBOM(t, app))
	h.create(h.keyPolicy("admission"))
	h.start()

	// tags resolve through the Engine's registry client
	got, err := h.ctrls.Admission.Resolve(h.ctx, h.ns["secure"], h.reg.Repo("team/new:2.0"), nil)
	if err != nil || got != app.DigestStr() {
		t.Fatalf("Resolve = %q, %v; want %s", got, err, app.DigestStr())
	}
	h.ctrls.Admission.Assess(h.ctx, h.ns["secure"], app.Context().Name(), app.DigestStr(), "2.0", []string{"no-such-secret"})
	r := h.waitReport("secure", app.DigestStr(), func(r *securityv1alpha1.ImageTrustReport) error {
		if err := isReady(r); err != nil {
			return err
		}
		// the key policy's Critical gate fails on the Debian image's openssl: a real verdict
		if r.Status.Policy.Verdict != securityv1alpha1.VerdictUntrusted {
			return fmt.Errorf("verdict %s", r.Status.Policy.Verdict)
		}
		return nil
	})
	if r.Labels[LabelRequestedBy] != "admission" || len(r.Spec.Tags) != 1 || r.Spec.Tags[0] != "2.0" || r.Status.Signature.State != securityv1alpha1.SignatureVerified {
		t.Fatalf("report %s: labels %v tags %v signature %s", r.Name, r.Labels, r.Spec.Tags, r.Status.Signature.State)
	}
	if len(r.Status.Policy.Results) != 1 || r.Status.Policy.Results[0].Verdict != securityv1alpha1.VerdictUntrusted {
		t.Fatalf("per-policy results %+v", r.Status.Policy.Results)
	}

	// within the grace period it stays; after the request expired and a further grace period,
	// it goes
	if n, err := h.ctrls.Engine.CollectGarbage(h.ctx); err != nil || n != 0 {
		t.Fatalf("within the grace period: deleted %d, err %v", n, err)
	}
	h.clock.Advance(2 * time.Hour)
	if n, err := h.ctrls.Engine.CollectGarbage(h.ctx); err != nil || n != 0 {
		t.Fatalf("the request just expired: deleted %d, err %v", n, err)
	}
	h.clock.Advance(2 * time.Hour)
	if n, err := h.ctrls.Engine.CollectGarbage(h.ctx); err != nil || n != 1 {
		t.Fatalf("after the grace period: deleted %d, err %v", n, err)
	}
	h.eventually(10*time.Second, "request report gone", func() error {
		rs, err := h.reports("secure")
		if err != nil {
			return err
		}
		if rs[app.DigestStr()] != nil {
			return errors.New("still there")
		}
		return nil
	})
}

// A tag in a private registry resolves with the Pod's pull secrets, in the Pod's namespace only,
// and a refusal never echoes the credential.
func TestAdmissionResolvesWithPullSecrets(t *testing.T) {
	startEnv(t)
	ctx := context.Background()
	priv := registrytest.New(t, registrytest.WithBasicAuth("puller", "s3cret-pass"))
	d, err := priv.Push(ctx, priv.Repo("team/app:v1"), registrytest.AlpineImage(alpinePkgs))
	if err != nil {
		t.Fatal(err)
	}
	ns := fmt.Sprintf("pull-secrets-%d", time.Now().UnixNano())
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	auth := base64.StdEncoding.EncodeToString([]byte("puller:s3cret-pass"))
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "regcred"}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"` + priv.Host() + `":{"auth":"` + auth + `"}}}`)}}
	if err := env.Client.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	pool := newScannerPool(scanner.RegistryOptions{Insecure: []string{priv.Host()}, RequestsPerSecond: -1}, nil, nil, 50, time.Now)
	a := newAdmission(env.Client, env.Client, pool)
	got, err := a.Resolve(ctx, ns, priv.Repo("team/app:v1"), []string{"missing", "regcred"})
	if err != nil || got != d.DigestStr() {
		t.Fatalf("with the pull secret: %q, %v; want %s", got, err, d.DigestStr())
	}
	_, err = a.Resolve(ctx, ns, priv.Repo("team/app:v1"), nil)
	if err == nil {
		t.Fatal("resolved a private tag without credentials")
	}
	if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), auth) {
		t.Errorf("error leaks the credential: %v", err)
	}
	// in another namespace the Secret is not there: the kubelet would not have it either
	if _, err := a.Resolve(ctx, "default", priv.Repo("team/app:v1"), []string{"regcred"}); err == nil {
		t.Error("used a pull secret of another namespace")
	}
}
