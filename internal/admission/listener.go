package admission

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/go-logr/logr"
)

// gatekeeperServer is the Gatekeeper door's own listener: Gatekeeper authenticates to external
// data providers with a client certificate, which the other doors' callers do not send.
type gatekeeperServer struct {
	addr     string
	handler  http.Handler
	certs    *certSource
	clientCA *caFile
	log      logr.Logger
}

// NeedLeaderElection: every replica serves.
func (*gatekeeperServer) NeedLeaderElection() bool { return false }

// Start serves until ctx ends.
func (s *gatekeeperServer) Start(ctx context.Context) error {
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: s.certs.GetCertificate,
		// The client CA is read per handshake (cached briefly), so a rotated Gatekeeper CA is
		// picked up without a restart.
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			pool, err := s.clientCA.pool()
			if err != nil {
				return nil, err
			}
			return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.certs.GetCertificate,
				ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}, nil
		},
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("admission: Gatekeeper listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle(GatekeeperPath, s.handler)
	srv := &http.Server{Handler: mux, TLSConfig: cfg, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(c)
	}()
	s.log.Info("serving Gatekeeper external data", "addr", ln.Addr().String())
	if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// caFile is a PEM CA bundle on disk, re-read at most every caFileTTL.
type caFile struct {
	path string

	mu      sync.Mutex
	cached  *x509.CertPool
	readAt  time.Time
	lastErr error
}

const caFileTTL = 30 * time.Second

func (c *caFile) pool() (*x509.CertPool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.readAt.IsZero() && time.Since(c.readAt) < caFileTTL {
		return c.cached, c.lastErr
	}
	c.readAt = time.Now()
	b, err := os.ReadFile(c.path)
	if err == nil {
		p := x509.NewCertPool()
		if !p.AppendCertsFromPEM(b) {
			err = fmt.Errorf("%s holds no PEM certificate", c.path)
		} else {
			c.cached = p
		}
	}
	c.lastErr = err
	if err != nil && c.cached != nil {
		return c.cached, nil // keep the last good CA over a broken rewrite
	}
	return c.cached, err
}
