package admission

import (
	"bytes"
	"context"
	"crypto/tls"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestSelfManagedCertificates runs two replicas' certificate keepers against the API server:
// racing to create, they converge on one Secret and serve the same certificate; the CA bundle
// lands in the webhook configuration; a CA due for renewal is rotated with the old CA kept in
// the bundle, and the next serving certificate comes from the new CA.
func TestSelfManagedCertificates(t *testing.T) {
	w := webhookWorld(t)
	ctx := context.Background()
	cfg, err := shippedWebhook("https://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Name = "imagetrust-rotation-test"
	cfg.Webhooks[0].NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"imagetrust-test": "never"}}
	if err := w.env.Client.Create(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = w.env.Client.Delete(ctx, cfg)
		_ = w.env.Client.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: managerNS, Name: "rotation-test"}})
	})
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	keeper := func() *selfManagedCerts {
		return &selfManagedCerts{src: &certSource{}, client: w.env.Client, reader: w.env.Client, namespace: managerNS, now: clock, log: logr.Discard(),
			opts: CertOptions{SecretName: "rotation-test", Hosts: []string{"imagetrust-admission.imagetrust-system.svc"},
				WebhookConfigurations: []string{cfg.Name, "does-not-exist"}, Validity: 90 * 24 * time.Hour, CAValidity: 3 * 365 * 24 * time.Hour}}
	}
	a, b := keeper(), keeper()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, k := range []*selfManagedCerts{a, b} {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = k.sync(ctx) }()
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("racing syncs: %v, %v", errs[0], errs[1])
	}
	secret := func() *corev1.Secret {
		var s corev1.Secret
		if err := w.env.Client.Get(ctx, types.NamespacedName{Namespace: managerNS, Name: "rotation-test"}, &s); err != nil {
			t.Fatal(err)
		}
		return &s
	}
	served := func(k *selfManagedCerts) []byte {
		c, err := k.src.GetCertificate(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		return c.Certificate[0]
	}
	bundle := func() []byte {
		var got admissionregistrationv1.ValidatingWebhookConfiguration
		if err := w.env.Client.Get(ctx, types.NamespacedName{Name: cfg.Name}, &got); err != nil {
			t.Fatal(err)
		}
		return got.Webhooks[0].ClientConfig.CABundle
	}
	// A replica that lost the race picks up the winner's Secret on its next sync.
	if err := a.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.sync(ctx); err != nil {
		t.Fatal(err)
	}
	s1 := secret()
	if s1.Type != corev1.SecretTypeTLS || !bytes.Equal(served(a), served(b)) || !bytes.Equal(served(a), mustCert(t, s1.Data[corev1.TLSCertKey]).Raw) {
		t.Fatal("replicas serve different certificates, or not the Secret's")
	}
	if !bytes.Equal(bundle(), caBundle(s1.Data[secretCACert], nil, clock())) {
		t.Fatalf("webhook caBundle is not the Secret's CA:\n%s", bundle())
	}

	// Past two thirds of the CA's three years, it is due: rotated, with the old CA still in the
	// bundle (TestRenewCerts covers keeping a serving certificate the old CA signed).
	for range 9 {
		advance(89 * 24 * time.Hour)
		if err := a.sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	s2 := secret()
	if bytes.Equal(s2.Data[secretCACert], s1.Data[secretCACert]) || !bytes.Equal(s2.Data[secretPrevCA], s1.Data[secretCACert]) {
		t.Fatal("CA not rotated with the old one kept as ca-previous.crt")
	}
	if n := bytes.Count(bundle(), []byte("BEGIN CERTIFICATE")); n != 2 {
		t.Fatalf("bundle during rotation holds %d certificates", n)
	}
	if err := b.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(served(a), served(b)) {
		t.Error("replicas disagree after rotation")
	}
	advance(89 * 24 * time.Hour)
	if err := a.sync(ctx); err != nil {
		t.Fatal(err)
	}
	s3 := secret()
	if err := mustCert(t, s3.Data[corev1.TLSCertKey]).CheckSignatureFrom(mustCert(t, s3.Data[secretCACert])); err != nil {
		t.Errorf("serving certificate after rotation not from the new CA: %v", err)
	}
}
