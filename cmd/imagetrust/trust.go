package main

import (
	"context"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/imagetrust/imagetrust/scanner/verify"
	"github.com/imagetrust/imagetrust/scanner/verify/trustroot"
)

// trustFlags are the scan flags that say where trusted material comes from: Sigstore trust
// roots (cosign's words) and a Notation trust policy (notation's words).
type trustFlags struct {
	trustedRoot          string
	tufMirror, tufRoot   string
	tufCacheDir          string
	notationStore        string
	notationTSAStore     string
	notationIdentities   stringList
	notationScopes       stringList
	notationLevel        string
	notationRevocation   string
	pool                 *trustroot.Pool
	trustRootLoadTimeout time.Duration
}

func (f *trustFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.trustedRoot, "trusted-root", "", "Sigstore trusted_root.json `file` (Fulcio CAs, Rekor logs, CT logs, TSAs), as cosign verify --trusted-root;\n"+
		"make one offline with `cosign trusted-root create`")
	fs.StringVar(&f.tufMirror, "tuf-mirror", "", "Sigstore trust root from this TUF repository `URL` (a mirror), as cosign initialize --mirror")
	fs.StringVar(&f.tufRoot, "tuf-root", "", "initial root.json `file` of --tuf-mirror, as cosign initialize --root (default: the public-good root)")
	fs.StringVar(&f.tufCacheDir, "tuf-cache-dir", defaultDir("tuf"), "cache of TUF trust roots")
	fs.StringVar(&f.notationStore, "notation-trust-store", "", "Notation: CA certificates (PEM or DER) of the trust store, a `file` or a directory\n"+
		"such as ~/.config/notation/truststore/x509/ca/NAME; verifies Notation signatures")
	fs.StringVar(&f.notationTSAStore, "notation-tsa-trust-store", "", "Notation: root certificates of trusted timestamp authorities, a `file` or directory")
	fs.Var(&f.notationIdentities, "notation-identity", "Notation: trusted identity, `\"x509.subject: C=..., ST=..., O=..., CN=...\"` or \"*\"; repeatable (default \"*\")")
	fs.Var(&f.notationScopes, "notation-scope", "Notation: registry `scope` of the trust policy, e.g. registry.example.com/team/app; repeatable (default \"*\")")
	fs.StringVar(&f.notationLevel, "notation-level", verify.NotationStrict, "Notation: verification `level`: strict, permissive or audit")
	fs.StringVar(&f.notationRevocation, "notation-revocation", "", "Notation: revocation check `action`: enforce, log or skip (default: the level's;\n"+
		"enforcing contacts the certificates' OCSP/CRL URLs, offline use skip or log)")
}

// trustRootHTTPClient fetches TUF trust roots; nil is http.DefaultClient (proxy from the
// environment). Tests replace it to stand for a machine without egress.
var trustRootHTTPClient *http.Client

// trustOnlyFlags make the implicit policy's trust material; with --policy they would be
// ignored.
var trustOnlyFlags = []string{"trusted-root", "tuf-mirror", "tuf-root", "notation-trust-store", "notation-tsa-trust-store",
	"notation-identity", "notation-scope", "notation-level", "notation-revocation"}

// check refuses trust flags that cannot apply as written: a gate that silently drops them
// would verify less than the command line says.
func (f *trustFlags) check(fs *flag.FlagSet, signers bool) error {
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	switch {
	case set["trusted-root"] && set["tuf-mirror"]:
		return usageError("scan", "--trusted-root and --tuf-mirror are two trust roots: give one")
	case set["tuf-root"] && !set["tuf-mirror"]:
		return usageError("scan", "--tuf-root needs --tuf-mirror")
	case (set["trusted-root"] || set["tuf-mirror"]) && !signers:
		return usageError("scan", "a trust root (--trusted-root, --tuf-mirror) needs --key or --certificate-identity to apply to")
	}
	if f.notationStore == "" {
		for _, n := range []string{"notation-tsa-trust-store", "notation-identity", "notation-scope", "notation-level", "notation-revocation"} {
			if set[n] {
				return usageError("scan", "--%s needs --notation-trust-store", n)
			}
		}
	}
	if !slices.Contains([]string{verify.NotationStrict, verify.NotationPermissive, verify.NotationAudit}, f.notationLevel) {
		return usageError("scan", "--notation-level %q: want strict, permissive or audit", f.notationLevel)
	}
	if f.notationRevocation != "" && !slices.Contains([]string{"enforce", "log", "skip"}, f.notationRevocation) {
		return usageError("scan", "--notation-revocation %q: want enforce, log or skip", f.notationRevocation)
	}
	return nil
}

// trustRoots is the pool the scan's trust roots come from. A scan may wait, so it waits for a
// TUF load rather than judging against a root still loading.
func (f *trustFlags) trustRoots(ctx context.Context) *trustroot.Pool {
	if f.pool == nil {
		timeout := f.trustRootLoadTimeout
		if timeout <= 0 {
			timeout = time.Minute
		}
		f.pool = trustroot.NewPool(trustroot.PoolConfig{CacheDir: f.tufCacheDir, Wait: true, LoadTimeout: timeout, HTTPClient: trustRootHTTPClient})
		f.pool.Start(ctx)
	}
	return f.pool
}

// trustRoot is the flags' trust root for the implicit policy's authorities: --trusted-root,
// --tuf-mirror, or for keyless with no --ca-roots the public-good instance. It has loaded, or
// the error says why not and what to do offline.
func (f *trustFlags) trustRoot(ctx context.Context, keylessWithoutRoots bool) (trustroot.Provider, error) {
	var p trustroot.Provider
	var err error
	switch {
	case f.trustedRoot != "":
		doc, rerr := os.ReadFile(f.trustedRoot)
		if rerr != nil {
			return nil, rerr
		}
		p, err = f.trustRoots(ctx).TrustedRoot(f.trustedRoot, doc)
	case f.tufMirror != "":
		var root []byte
		if f.tufRoot != "" {
			if root, err = os.ReadFile(f.tufRoot); err != nil {
				return nil, err
			}
		}
		p, err = f.trustRoots(ctx).TUF(f.tufMirror, root)
	case keylessWithoutRoots:
		p, err = f.trustRoots(ctx).PublicGood()
	default:
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if _, err := p.Material(ctx); err != nil {
		if p.Name() == trustroot.PublicGoodName {
			return nil, fmt.Errorf("keyless verification without --ca-roots or --trusted-root uses the public-good Sigstore trust root, "+
				"fetched through TUF from %s (needs egress): %w; offline, pass --trusted-root FILE (`cosign trusted-root create`) or --ca-roots FILE",
				trustroot.PublicGoodMirror, err)
		}
		return nil, err
	}
	return p, nil
}

// notationAuthority is the Notation authority of --notation-trust-store; nil without it.
func (f *trustFlags) notationAuthority() (*verify.Authority, error) {
	if f.notationStore == "" {
		return nil, nil
	}
	ca, err := readCertificates(f.notationStore)
	if err != nil {
		return nil, fmt.Errorf("--notation-trust-store: %w", err)
	}
	n := &verify.Notation{TrustStorePEM: ca, Scopes: f.notationScopes, TrustedIdentities: f.notationIdentities,
		Level: f.notationLevel, Revocation: f.notationRevocation}
	if f.notationTSAStore != "" {
		if n.TSATrustStorePEM, err = readCertificates(f.notationTSAStore); err != nil {
			return nil, fmt.Errorf("--notation-tsa-trust-store: %w", err)
		}
	}
	return &verify.Authority{Name: "cli/notation", Notation: n}, nil
}

// readCertificates reads the certificates of a file, or of every file of a directory (a
// Notation trust store directory), PEM or DER, as one PEM bundle.
func readCertificates(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	files := []string{path}
	if fi.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, err
		}
		files = nil
		for _, e := range entries {
			if e.Type().IsRegular() {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
	}
	var out []byte
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		if strings.Contains(string(data), "-----BEGIN CERTIFICATE-----") {
			out = append(out, data...)
			out = append(out, '\n')
			continue
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: data})...)
	}
	if len(out) == 0 {
		return nil, errors.New(path + " holds no certificate")
	}
	return out, nil
}
