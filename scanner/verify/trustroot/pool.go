package trustroot

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/imagetrust/imagetrust/scanner/internal/redact"
)

// PublicGoodName is the name of the public-good instance's provider in reasons.
const PublicGoodName = "public-good Sigstore (TUF " + PublicGoodMirror + ")"

// ErrPublicGoodDisabled is returned for the public-good instance when the pool refuses it.
var ErrPublicGoodDisabled = errors.New("the public-good Sigstore trust root is disabled here (air-gapped): name a trustedRoot document or a TUF mirror")

// PoolConfig configures a Pool.
type PoolConfig struct {
	// CacheDir holds the TUF providers' caches, one subdirectory per source. Required for TUF
	// sources.
	CacheDir string
	// DisablePublicGood refuses the public-good instance, so nothing ever contacts it: for
	// air-gapped clusters, where an attempt is an alarm rather than a fallback.
	DisablePublicGood bool
	// HTTPClient, RefreshInterval and LoadTimeout are passed to every TUF provider.
	HTTPClient      *http.Client
	RefreshInterval time.Duration
	LoadTimeout     time.Duration
	// OnLoad is called after every load of any TUF provider of the pool; it must not block.
	OnLoad func()
	// Wait makes TUF wait for a new provider's first load (at most LoadTimeout): for one-shot
	// callers such as a CLI, which may block and must not judge against a root still loading.
	Wait bool
}

// Pool hands out one provider per distinct source and runs the TUF ones, so every authority
// naming the same trust root shares one load, one disk cache and one refresh loop. It is safe
// for concurrent use.
type Pool struct {
	cfg PoolConfig

	mu      sync.Mutex
	ctx     context.Context // set by Start; TUF providers handed out before wait for it
	entries map[string]*poolEntry
}

type poolEntry struct {
	provider Provider
	tuf      *TUF
	cancel   context.CancelFunc // of a started TUF provider's loop
}

// NewPool returns an empty pool; it contacts nothing.
func NewPool(cfg PoolConfig) *Pool {
	if cfg.LoadTimeout <= 0 {
		cfg.LoadTimeout = DefaultLoadTimeout
	}
	return &Pool{cfg: cfg, entries: map[string]*poolEntry{}}
}

// Start runs the TUF providers handed out so far, and those handed out later, until ctx ends.
// Calls after the first do nothing.
func (p *Pool) Start(ctx context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx != nil {
		return
	}
	p.ctx = ctx
	for _, e := range p.entries {
		p.startLocked(e)
	}
}

func (p *Pool) startLocked(e *poolEntry) {
	if e.tuf == nil || p.ctx == nil || e.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(p.ctx)
	e.cancel = cancel
	e.tuf.Start(ctx)
}

// PublicGood is the public-good Sigstore instance through TUF, bootstrapped from sigstore-go's
// embedded root.
func (p *Pool) PublicGood() (Provider, error) { return p.TUF("", nil) }

// TUF is the provider of a TUF repository: mirror "" is the public-good instance, and a nil
// initialRoot bootstraps from sigstore-go's embedded public-good root. It never blocks on the
// network unless the pool was configured to Wait.
func (p *Pool) TUF(mirror string, initialRoot []byte) (Provider, error) {
	if mirror == "" {
		mirror = PublicGoodMirror
	}
	mirror = strings.TrimSuffix(mirror, "/")
	publicGood := mirror == strings.TrimSuffix(PublicGoodMirror, "/")
	if publicGood && p.cfg.DisablePublicGood {
		return nil, ErrPublicGoodDisabled
	}
	name := "TUF mirror " + redact.Text(mirror)
	if publicGood && initialRoot == nil {
		name = PublicGoodName
	}
	key := "tuf " + mirror + " " + digestOf(initialRoot)
	p.mu.Lock()
	e, ok := p.entries[key]
	if !ok {
		if p.cfg.CacheDir == "" {
			p.mu.Unlock()
			return nil, fmt.Errorf("trust root %q: no cache directory configured for TUF trust roots", name)
		}
		t, err := NewTUF(TUFConfig{
			Name: name, MirrorURL: mirror, InitialRoot: initialRoot,
			CacheDir:   filepath.Join(p.cfg.CacheDir, strings.TrimPrefix(digestOf([]byte(key)), "sha256:")[:16]),
			HTTPClient: p.cfg.HTTPClient, RefreshInterval: p.cfg.RefreshInterval, LoadTimeout: p.cfg.LoadTimeout,
			OnLoad: p.cfg.OnLoad,
		})
		if err != nil {
			p.mu.Unlock()
			return nil, err
		}
		e = &poolEntry{provider: t, tuf: t}
		p.entries[key] = e
		p.startLocked(e)
	}
	started := e.cancel != nil
	p.mu.Unlock()
	if p.cfg.Wait && started {
		ctx, cancel := context.WithTimeout(context.Background(), p.cfg.LoadTimeout+time.Second)
		defer cancel()
		_ = e.tuf.Wait(ctx) // the outcome is what Material answers
	}
	return e.provider, nil
}

// TrustedRoot is the provider of a trusted_root.json document, parsed once per distinct
// (name, document). Errors say what is wrong with the document.
func (p *Pool) TrustedRoot(name string, doc []byte) (Provider, error) {
	key := "trusted_root " + name + " " + digestOf(doc)
	p.mu.Lock()
	defer p.mu.Unlock()
	if e, ok := p.entries[key]; ok {
		return e.provider, nil
	}
	s, err := FromJSON(name, doc)
	if err != nil {
		return nil, err
	}
	p.entries[key] = &poolEntry{provider: s}
	return s, nil
}

// Retain stops and forgets every provider not in keep, so a source no configuration names
// any more stops being refreshed. A provider handed out again later starts afresh.
func (p *Pool) Retain(keep []Provider) {
	in := map[Provider]bool{}
	for _, k := range keep {
		in[k] = true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for key, e := range p.entries {
		if in[e.provider] {
			continue
		}
		if e.cancel != nil {
			e.cancel()
		}
		delete(p.entries, key)
	}
}

// Len is the number of providers the pool holds.
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.entries)
}
