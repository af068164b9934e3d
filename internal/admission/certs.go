package admission

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// CertMode says where the serving certificates of the admission listeners come from.
type CertMode string

// Certificate modes.
const (
	// CertsSelfManaged: the manager keeps a CA and a serving certificate in a Secret of its
	// namespace, renews them before they expire and writes the CA into the webhook
	// configurations (and Gatekeeper Providers) it is told about.
	CertsSelfManaged CertMode = "self-managed"
	// CertsFromFiles: tls.crt and tls.key in a directory, reloaded when they change
	// (cert-manager, OLM or any mounted Secret); the caBundle is someone else's job.
	CertsFromFiles CertMode = "files"
)

// Secret keys of the self-managed certificates.
const (
	secretCACert   = "ca.crt"
	secretCAKey    = "ca.key"
	secretPrevCA   = "ca-previous.crt"
	secretTLSCert  = corev1.TLSCertKey
	secretTLSKey   = corev1.TLSPrivateKeyKey
	gatekeeperKind = "Provider"
)

// CertOptions configure the serving certificates.
type CertOptions struct {
	Mode CertMode
	// Dir holds tls.crt and tls.key (CertsFromFiles).
	Dir string
	// SecretName is the Secret, in the manager's namespace, holding the self-managed CA and
	// serving certificate (default imagetrust-admission-certs).
	SecretName string
	// Hosts are the names and IPs the serving certificate covers (default: the webhook
	// Service's in-cluster DNS names).
	Hosts []string
	// WebhookConfigurations and GatekeeperProviders receive the CA bundle (self-managed).
	WebhookConfigurations []string
	GatekeeperProviders   []string
	// Validity of the serving certificate (default 90 days) and of the CA (default 3 years);
	// each is renewed when less than a third of its lifetime is left.
	Validity, CAValidity time.Duration
	// RefreshInterval is how often the Secret and the bundles are checked (default 1 minute).
	RefreshInterval time.Duration
}

// certSource serves the current certificate to the TLS listeners.
type certSource struct {
	get atomic.Pointer[func(*tls.ClientHelloInfo) (*tls.Certificate, error)]
}

func (s *certSource) set(fn func(*tls.ClientHelloInfo) (*tls.Certificate, error)) { s.get.Store(&fn) }

// GetCertificate is a tls.Config hook.
func (s *certSource) GetCertificate(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
	fn := s.get.Load()
	if fn == nil {
		return nil, errors.New("admission serving certificate not loaded yet")
	}
	return (*fn)(h)
}

func (s *certSource) loaded() bool { return s.get.Load() != nil }

// fileCerts loads tls.crt/tls.key from a directory and watches them.
type fileCerts struct {
	src     *certSource
	dir     string
	log     logr.Logger
	watcher *certwatcher.CertWatcher
}

// load reads the files once; Setup calls it so the listeners have a certificate before the
// manager's caches have synced (runnables wait for that).
func (f *fileCerts) load() error {
	w, err := certwatcher.New(filepath.Join(f.dir, corev1.TLSCertKey), filepath.Join(f.dir, corev1.TLSPrivateKeyKey))
	if err != nil {
		return err
	}
	f.watcher = w
	f.src.set(w.GetCertificate)
	return nil
}

// NeedLeaderElection: every replica serves.
func (*fileCerts) NeedLeaderElection() bool { return false }

// Start waits for the files (a mounted Secret may be filled a moment later), then watches them.
func (f *fileCerts) Start(ctx context.Context) error {
	for {
		err := error(nil)
		if f.watcher == nil {
			err = f.load()
		}
		if err == nil {
			return f.watcher.Start(ctx)
		}
		f.log.Info("waiting for admission serving certificate", "dir", f.dir, "error", err.Error())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
}

// selfManagedCerts keeps the CA and serving certificate in a Secret and the CA in the webhook
// configurations. Every replica runs it: Secret writes use optimistic concurrency, so replicas
// racing to create or renew converge on one Secret, and bundle writes are idempotent.
type selfManagedCerts struct {
	src       *certSource
	client    client.Client
	reader    client.Reader // the API reader: Secrets are not cached
	namespace string
	opts      CertOptions
	now       func() time.Time
	log       logr.Logger
}

// NeedLeaderElection: every replica serves and needs the certificate.
func (*selfManagedCerts) NeedLeaderElection() bool { return false }

// Start syncs at once and then every RefreshInterval, retrying failures sooner.
func (m *selfManagedCerts) Start(ctx context.Context) error {
	for {
		wait := m.opts.RefreshInterval
		if err := m.sync(ctx); err != nil {
			m.log.Error(err, "admission certificates")
			wait = min(wait, 5*time.Second)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// sync makes sure the Secret holds valid certificates, serves them and publishes the CA.
func (m *selfManagedCerts) sync(ctx context.Context) error {
	var sec *corev1.Secret
	var err error
	for range 3 { // lost races with other replicas are retried at once
		if sec, err = m.ensureSecret(ctx); !apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err) {
			break
		}
	}
	if err != nil {
		return err
	}
	pair, err := tls.X509KeyPair(sec.Data[secretTLSCert], sec.Data[secretTLSKey])
	if err != nil {
		return fmt.Errorf("secret %s/%s: %w", m.namespace, m.opts.SecretName, err)
	}
	m.src.set(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &pair, nil })
	return m.publish(ctx, caBundle(sec.Data[secretCACert], sec.Data[secretPrevCA], m.now()))
}

// ensureSecret creates or renews the certificate Secret.
func (m *selfManagedCerts) ensureSecret(ctx context.Context) (*corev1.Secret, error) {
	sec := &corev1.Secret{}
	key := types.NamespacedName{Namespace: m.namespace, Name: m.opts.SecretName}
	err := m.reader.Get(ctx, key, sec)
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading secret %s: %w", key, err)
	}
	exists := err == nil
	data, changed, err := renewCerts(sec.Data, m.opts, m.now())
	if err != nil {
		return nil, err
	}
	if !changed {
		return sec, nil
	}
	if !exists {
		sec = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: m.namespace, Name: m.opts.SecretName,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "imagetrust"}}, Type: corev1.SecretTypeTLS, Data: data}
		m.log.Info("creating admission certificates", "secret", key.String())
		return sec, m.client.Create(ctx, sec)
	}
	sec.Data = data
	m.log.Info("renewing admission certificates", "secret", key.String())
	return sec, m.client.Update(ctx, sec)
}

// renewCerts returns the Secret data with a CA and serving certificate that are valid for a
// while yet; changed is false when data needs no change. A CA due for renewal is replaced but
// kept as the previous CA, and the serving certificate it signed is kept until it is due
// itself: by then every client has the bundle with the new CA.
func renewCerts(data map[string][]byte, opts CertOptions, now time.Time) (map[string][]byte, bool, error) {
	out := map[string][]byte{}
	for k, v := range data {
		out[k] = v
	}
	changed := false
	ca := keyPair{Cert: out[secretCACert], Key: out[secretCAKey]}
	caCert, _, err := parsePair(ca)
	if err != nil || dueForRenewal(caCert, now) {
		if err == nil {
			out[secretPrevCA] = ca.Cert
		}
		if ca, err = newCA(now, opts.CAValidity); err != nil {
			return nil, false, err
		}
		if caCert, _, err = parsePair(ca); err != nil {
			return nil, false, err
		}
		out[secretCACert], out[secretCAKey], changed = ca.Cert, ca.Key, true
	}
	trusted := []*x509.Certificate{caCert}
	if prev, err := parseCert(out[secretPrevCA]); err == nil && now.Before(prev.NotAfter) {
		trusted = append(trusted, prev)
	} else if _, had := out[secretPrevCA]; had {
		delete(out, secretPrevCA)
		changed = true
	}
	serving := keyPair{Cert: out[secretTLSCert], Key: out[secretTLSKey]}
	if !servingCertOK(serving, trusted, opts.Hosts, now) {
		if serving, err = issue(ca, opts.Hosts, now, opts.Validity); err != nil {
			return nil, false, err
		}
		out[secretTLSCert], out[secretTLSKey], changed = serving.Cert, serving.Key, true
	}
	return out, changed, nil
}

// publish writes the CA bundle into the webhook configurations and Gatekeeper Providers. A
// target that does not exist (yet) is skipped; it is tried again on the next sync.
func (m *selfManagedCerts) publish(ctx context.Context, bundle []byte) error {
	var errs []error
	for _, name := range m.opts.WebhookConfigurations {
		errs = append(errs, m.publishWebhook(ctx, name, bundle))
	}
	for _, name := range m.opts.GatekeeperProviders {
		errs = append(errs, m.publishProvider(ctx, name, bundle))
	}
	return errors.Join(errs...)
}

// publishWebhook writes the bundle into every webhook of a configuration; a conflicting write
// (another replica, or someone editing the configuration) is retried on a fresh read.
func (m *selfManagedCerts) publishWebhook(ctx context.Context, name string, bundle []byte) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var cfg admissionregistrationv1.ValidatingWebhookConfiguration
		if err := m.reader.Get(ctx, types.NamespacedName{Name: name}, &cfg); err != nil {
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("reading ValidatingWebhookConfiguration %s: %w", name, err)
		}
		changed := false
		for i := range cfg.Webhooks {
			if !bytes.Equal(cfg.Webhooks[i].ClientConfig.CABundle, bundle) {
				cfg.Webhooks[i].ClientConfig.CABundle = bundle
				changed = true
			}
		}
		if !changed {
			return nil
		}
		m.log.Info("writing CA bundle", "validatingWebhookConfiguration", name)
		if err := m.client.Update(ctx, &cfg); err != nil {
			return fmt.Errorf("writing the CA bundle of ValidatingWebhookConfiguration %s: %w", name, err)
		}
		return nil
	})
}

func (m *selfManagedCerts) publishProvider(ctx context.Context, name string, bundle []byte) error {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("externaldata.gatekeeper.sh/v1beta1")
	u.SetKind(gatekeeperKind)
	if err := m.reader.Get(ctx, types.NamespacedName{Name: name}, u); err != nil {
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			return nil
		}
		return fmt.Errorf("reading Gatekeeper Provider %s: %w", name, err)
	}
	want := base64.StdEncoding.EncodeToString(bundle)
	if got, _, _ := unstructured.NestedString(u.Object, "spec", "caBundle"); got == want {
		return nil
	}
	patch := []byte(fmt.Sprintf(`{"spec":{"caBundle":%q}}`, want))
	m.log.Info("writing CA bundle", "gatekeeperProvider", name)
	if err := m.client.Patch(ctx, u, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("writing the CA bundle of Gatekeeper Provider %s: %w", name, err)
	}
	return nil
}
