package trustroot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/tuf"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// PublicGoodMirror is the TUF repository of the public-good Sigstore instance.
const PublicGoodMirror = tuf.DefaultMirror

// TrustedRootTarget is the TUF target holding the trusted root.
const TrustedRootTarget = "trusted_root.json"

// Defaults of TUFConfig.
const (
	DefaultRefreshInterval = 24 * time.Hour
	DefaultLoadTimeout     = time.Minute
	maxRetryInterval       = 30 * time.Minute
	firstRetryInterval     = 30 * time.Second
)

// TUFConfig configures a TUF-backed provider.
type TUFConfig struct {
	// Name identifies the trust root in reasons.
	Name string
	// MirrorURL is the TUF repository; empty means the public-good instance. A mirror of the
	// public-good repository can keep InitialRoot empty.
	MirrorURL string
	// InitialRoot is the root.json to bootstrap trust from; empty means sigstore-go's
	// embedded public-good root.
	InitialRoot []byte
	// CacheDir keeps TUF metadata and targets across restarts (required): after a restart the
	// cached trusted root serves while the repository is unreachable, until its metadata
	// expires.
	CacheDir string
	// RefreshInterval is how often the loaded root is refreshed; 0 means 24h. Failed loads are
	// retried sooner, with backoff.
	RefreshInterval time.Duration
	// LoadTimeout bounds one load; 0 means one minute.
	LoadTimeout time.Duration
	// HTTPClient fetches TUF files; nil means http.DefaultClient (proxy from the environment).
	HTTPClient *http.Client
	// OnLoad, when set, is called after every load, successful or not, so a caller can
	// re-evaluate what depends on the material without polling. It must not block.
	OnLoad func()
}

// Status describes a TUF provider's last loads.
type Status struct {
	// Loaded is true when material is held.
	Loaded bool
	// LoadedAt is when the held material was obtained.
	LoadedAt time.Time
	// FromCache is true when the held material came from the disk cache because the
	// repository could not be reached.
	FromCache bool
	// LastAttempt is when the last load finished.
	LastAttempt time.Time
	// LastError is the last load's failure, empty after a success.
	LastError string
}

// TUF is a Provider backed by a TUF repository. Start loads it in the background; Material
// answers from memory only.
type TUF struct {
	cfg TUFConfig

	loadMu sync.Mutex // one load at a time: they share the cache directory

	mu        sync.RWMutex
	material  root.TrustedMaterial
	status    Status
	attempted chan struct{} // closed when the first load finished, successful or not
	startOnce sync.Once
}

// NewTUF validates cfg; it contacts nothing.
func NewTUF(cfg TUFConfig) (*TUF, error) {
	if cfg.Name == "" {
		return nil, errors.New("trust root: name is required")
	}
	if cfg.CacheDir == "" {
		return nil, fmt.Errorf("trust root %q: a cache directory is required", cfg.Name)
	}
	if cfg.MirrorURL == "" {
		cfg.MirrorURL = PublicGoodMirror
	}
	if !strings.HasPrefix(cfg.MirrorURL, "https://") && !strings.HasPrefix(cfg.MirrorURL, "http://") {
		return nil, fmt.Errorf("trust root %q: mirror URL must be http(s)", cfg.Name)
	}
	if len(cfg.InitialRoot) == 0 {
		cfg.InitialRoot = tuf.DefaultRoot()
	} else if _, err := (&metadata.Metadata[metadata.RootType]{}).FromBytes(cfg.InitialRoot); err != nil {
		return nil, fmt.Errorf("trust root %q: initial root.json is not TUF root metadata: %v", cfg.Name, err)
	}
	if cfg.RefreshInterval <= 0 {
		cfg.RefreshInterval = DefaultRefreshInterval
	}
	if cfg.LoadTimeout <= 0 {
		cfg.LoadTimeout = DefaultLoadTimeout
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	return &TUF{cfg: cfg, attempted: make(chan struct{})}, nil
}

// Name implements Provider.
func (t *TUF) Name() string { return t.cfg.Name }

// MarshalJSON identifies the provider's source (mirror and initial root) and whether it holds
// material, not the material itself: configurations naming different sources fingerprint
// differently, and so does one whose root has loaded since, so what was judged without the
// root is judged again.
func (t *TUF) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		TUF    string `json:"tuf"`
		Root   string `json:"root"`
		Loaded bool   `json:"loaded"`
	}{t.cfg.MirrorURL, digestOf(t.cfg.InitialRoot), t.held()})
}

// Material implements Provider: the held material, or an UnavailableError wrapping
// ErrNotLoaded (first load pending) or the first load's failure.
func (t *TUF) Material(context.Context) (root.TrustedMaterial, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.material != nil {
		return t.material, nil
	}
	if t.status.LastError != "" {
		return nil, &UnavailableError{Name: t.cfg.Name, Err: errors.New(t.status.LastError)}
	}
	return nil, &UnavailableError{Name: t.cfg.Name, Err: ErrNotLoaded}
}

// Status reports the last loads.
func (t *TUF) Status() Status {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.status
}

// Start loads the root in a goroutine and refreshes it until ctx ends. Calls after the first
// do nothing.
func (t *TUF) Start(ctx context.Context) {
	t.startOnce.Do(func() { go t.loop(ctx) })
}

// Wait blocks until the first load has finished (or ctx ends) and returns Material's error:
// for one-shot callers such as a CLI that may wait.
func (t *TUF) Wait(ctx context.Context) error {
	select {
	case <-t.attempted:
	case <-ctx.Done():
		return &UnavailableError{Name: t.cfg.Name, Err: ctx.Err()}
	}
	_, err := t.Material(ctx)
	return err
}

func (t *TUF) loop(ctx context.Context) {
	retry := firstRetryInterval
	for {
		next := t.cfg.RefreshInterval
		if err := t.Load(ctx); err != nil {
			next, retry = min(retry, t.cfg.RefreshInterval), min(2*retry, maxRetryInterval)
		} else {
			retry = firstRetryInterval
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(next):
		}
	}
}

// Load fetches the trusted root now, blocking for at most the load timeout. On failure the
// material held so far is kept; with none held, the disk cache is tried without the network.
func (t *TUF) Load(ctx context.Context) error {
	t.loadMu.Lock()
	defer t.loadMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, t.cfg.LoadTimeout)
	defer cancel()

	m, err := t.fetch(ctx, t.cfg.HTTPClient, false)
	err = sanitize(err)
	fromCache := false
	if err != nil && !t.held() {
		if cm, cerr := t.fetch(ctx, nil, true); cerr == nil {
			m, fromCache = cm, true
		}
	}
	t.record(m, fromCache, err)
	if t.cfg.OnLoad != nil {
		t.cfg.OnLoad()
	}
	return err
}

func (t *TUF) held() bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.material != nil
}

func (t *TUF) record(m root.TrustedMaterial, fromCache bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	t.status.LastAttempt = now
	t.status.LastError = ""
	if err != nil {
		t.status.LastError = err.Error()
	}
	if m != nil {
		t.material = m
		t.status.Loaded, t.status.LoadedAt, t.status.FromCache = true, now, fromCache
	}
	select {
	case <-t.attempted:
	default:
		close(t.attempted)
	}
}

// fetch runs one TUF update and reads the trusted root. With cacheOnly, nothing goes to the
// network (client nil): the cached metadata is used while it has not expired.
func (t *TUF) fetch(ctx context.Context, client *http.Client, cacheOnly bool) (root.TrustedMaterial, error) {
	if err := os.MkdirAll(t.cfg.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating TUF cache: %w", err)
	}
	opts := &tuf.Options{
		Root:              t.cfg.InitialRoot,
		CachePath:         filepath.Clean(t.cfg.CacheDir),
		RepositoryBaseURL: t.cfg.MirrorURL,
		Fetcher:           &fetcher{ctx: ctx, client: client},
		ForceCache:        cacheOnly,
	}
	c, err := tuf.New(opts)
	if err != nil {
		return nil, fmt.Errorf("TUF update from %s: %w", t.cfg.MirrorURL, err)
	}
	doc, err := c.GetTarget(TrustedRootTarget)
	if err != nil {
		return nil, fmt.Errorf("TUF target %s from %s: %w", TrustedRootTarget, t.cfg.MirrorURL, err)
	}
	tr, err := root.NewTrustedRootFromJSON(doc)
	if err != nil {
		return nil, fmt.Errorf("TUF target %s from %s is not a valid trusted root: %w", TrustedRootTarget, t.cfg.MirrorURL, err)
	}
	return tr, nil
}

// fetcher is go-tuf's Fetcher bound to a context, so a load ends with its deadline. A nil
// client refuses every download (cache-only loads).
type fetcher struct {
	ctx    context.Context
	client *http.Client
}

func (f *fetcher) DownloadFile(url string, maxLength int64, _ time.Duration) ([]byte, error) {
	if f.client == nil {
		return nil, errors.New("offline: using the disk cache only")
	}
	req, err := http.NewRequestWithContext(f.ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// go-tuf stops looking for newer root versions on 403/404, so the status must be typed.
		return nil, &metadata.ErrDownloadHTTP{StatusCode: resp.StatusCode, URL: url}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxLength+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > maxLength {
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s is larger than %d bytes", url, maxLength)}
	}
	return data, nil
}
