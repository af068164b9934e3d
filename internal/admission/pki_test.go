package admission

import (
	"bytes"
	"crypto/x509"
	"slices"
	"testing"
	"time"
)

func certOpts() CertOptions {
	return CertOptions{Hosts: []string{"svc.ns.svc", "127.0.0.1"}, Validity: 90 * 24 * time.Hour, CAValidity: 3 * 365 * 24 * time.Hour}
}

func mustCert(t *testing.T, pemBytes []byte) *x509.Certificate {
	t.Helper()
	c, err := parseCert(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRenewCerts walks a Secret through its life: created, left alone while valid, serving
// certificate renewed, CA rotated without breaking served certificates, previous CA dropped.
func TestRenewCerts(t *testing.T) {
	opts := certOpts()
	t0 := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)

	data, changed, err := renewCerts(nil, opts, t0)
	if err != nil || !changed {
		t.Fatalf("first run: changed=%v err=%v", changed, err)
	}
	ca, serving := mustCert(t, data[secretCACert]), mustCert(t, data[secretTLSCert])
	if err := serving.CheckSignatureFrom(ca); err != nil {
		t.Fatalf("serving certificate not signed by the CA: %v", err)
	}
	if !slices.Equal(certHosts(serving), []string{"127.0.0.1", "svc.ns.svc"}) {
		t.Errorf("SANs = %v", certHosts(serving))
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := serving.Verify(x509.VerifyOptions{Roots: pool, DNSName: "svc.ns.svc", CurrentTime: t0}); err != nil {
		t.Errorf("serving certificate does not verify for its host: %v", err)
	}

	// A month later nothing is due.
	if _, changed, _ := renewCerts(data, opts, t0.Add(30*24*time.Hour)); changed {
		t.Error("renewed a certificate with two thirds of its life left")
	}
	// After two thirds of 90 days the serving certificate is renewed, by the same CA.
	d2, changed, err := renewCerts(data, opts, t0.Add(61*24*time.Hour))
	if err != nil || !changed || bytes.Equal(d2[secretTLSCert], data[secretTLSCert]) || !bytes.Equal(d2[secretCACert], data[secretCACert]) {
		t.Fatalf("serving renewal: changed=%v err=%v", changed, err)
	}
	// A new host in the options re-issues at once.
	wider := opts
	wider.Hosts = append(slices.Clone(opts.Hosts), "other.ns.svc")
	if _, changed, _ := renewCerts(data, wider, t0.Add(24*time.Hour)); !changed {
		t.Error("serving certificate not re-issued for a new host")
	}

	// Two years in, the CA is due: a new CA, the old one kept in the bundle, and the serving
	// certificate it signed kept while valid (clients still trust it through the bundle).
	tCA := t0.Add(2*365*24*time.Hour + 24*time.Hour)
	d3, _, _ := renewCerts(d2, opts, t0.Add(122*24*time.Hour)) // keep the serving cert fresh
	d3, _, _ = renewCerts(d3, opts, tCA.Add(-20*24*time.Hour))
	d4, changed, err := renewCerts(d3, opts, tCA)
	if err != nil || !changed {
		t.Fatalf("CA rotation: changed=%v err=%v", changed, err)
	}
	if bytes.Equal(d4[secretCACert], d3[secretCACert]) || !bytes.Equal(d4[secretPrevCA], d3[secretCACert]) {
		t.Fatal("CA not rotated into ca.crt with the old one as ca-previous.crt")
	}
	if !bytes.Equal(d4[secretTLSCert], d3[secretTLSCert]) {
		t.Error("serving certificate re-issued at CA rotation: clients with the old bundle would reject it")
	}
	bundle := caBundle(d4[secretCACert], d4[secretPrevCA], tCA)
	bp := x509.NewCertPool()
	if !bp.AppendCertsFromPEM(bundle) || bytes.Count(bundle, []byte("BEGIN CERTIFICATE")) != 2 {
		t.Fatalf("bundle during rotation: %s", bundle)
	}
	// The next renewal of the serving certificate uses the new CA.
	d5, _, _ := renewCerts(d4, opts, tCA.Add(70*24*time.Hour))
	if err := mustCert(t, d5[secretTLSCert]).CheckSignatureFrom(mustCert(t, d5[secretCACert])); err != nil {
		t.Errorf("renewed serving certificate not signed by the new CA: %v", err)
	}
	// Once the previous CA has expired it leaves the Secret and the bundle.
	tGone := mustCert(t, d5[secretPrevCA]).NotAfter.Add(time.Hour)
	d6, _, _ := renewCerts(d5, opts, tGone)
	if _, ok := d6[secretPrevCA]; ok {
		t.Error("expired previous CA kept")
	}
	if n := bytes.Count(caBundle(d5[secretCACert], d5[secretPrevCA], tGone), []byte("BEGIN CERTIFICATE")); n != 1 {
		t.Errorf("bundle after expiry has %d certificates", n)
	}
}

// TestRenewCertsReplacesGarbage: a Secret edited by hand into something unusable is repaired,
// not served.
func TestRenewCertsReplacesGarbage(t *testing.T) {
	opts := certOpts()
	now := time.Now()
	good, _, _ := renewCerts(nil, opts, now)
	for _, key := range []string{secretCAKey, secretTLSKey, secretTLSCert} {
		bad := map[string][]byte{}
		for k, v := range good {
			bad[k] = v
		}
		bad[key] = []byte("garbage")
		out, changed, err := renewCerts(bad, opts, now)
		if err != nil || !changed {
			t.Fatalf("%s garbage: changed=%v err=%v", key, changed, err)
		}
		if !servingCertOK(keyPair{Cert: out[secretTLSCert], Key: out[secretTLSKey]}, []*x509.Certificate{mustCert(t, out[secretCACert])}, opts.Hosts, now) {
			t.Errorf("%s garbage: result not servable", key)
		}
	}
	// A serving certificate signed by some other CA is replaced too.
	other, _, _ := renewCerts(nil, opts, now)
	mixed := map[string][]byte{secretCACert: good[secretCACert], secretCAKey: good[secretCAKey], secretTLSCert: other[secretTLSCert], secretTLSKey: other[secretTLSKey]}
	if _, changed, _ := renewCerts(mixed, opts, now); !changed {
		t.Error("serving certificate of a foreign CA kept")
	}
}
