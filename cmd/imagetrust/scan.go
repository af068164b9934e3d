package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"sigs.k8s.io/yaml"

	v1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/internal/policyconv"
	"github.com/imagetrust/imagetrust/scanner"
	"github.com/imagetrust/imagetrust/scanner/policy"
	"github.com/imagetrust/imagetrust/scanner/registry"
	"github.com/imagetrust/imagetrust/scanner/sbom"
	"github.com/imagetrust/imagetrust/scanner/severity"
	"github.com/imagetrust/imagetrust/scanner/verify"
	"github.com/imagetrust/imagetrust/scanner/verify/trustroot"
	"github.com/imagetrust/imagetrust/scanner/vulndb"
)

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

type scanFlags struct {
	keys                 stringList
	identity, identityRE string
	issuer, issuerRE     string
	caRoots, caInter     string
	rekorKey, ctlogKey   string
	ignoreTlog           bool
	ignoreSCT            bool
	policyFile           string
	failOn               string
	onlyFixed            bool
	dbDir, dbArchive     string
	dbMaxAge             time.Duration
	cacheDir             string
	platforms            stringList
	output               string
	registryConfig       string
	insecure             stringList
	caFile               string
	maxFindings          int
	timeout              time.Duration
	trustFlags
}

func defaultDir(sub string) string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "imagetrust", sub)
	}
	return filepath.Join(os.TempDir(), "imagetrust", sub)
}

func (f *scanFlags) register(fs *flag.FlagSet) {
	fs.Var(&f.keys, "key", "cosign public key `file` (PEM); repeatable, any one may sign")
	fs.StringVar(&f.identity, "certificate-identity", "", "keyless: expected certificate subject (email or URI)")
	fs.StringVar(&f.identityRE, "certificate-identity-regexp", "", "keyless: regular expression for the certificate subject")
	fs.StringVar(&f.issuer, "certificate-oidc-issuer", "", "keyless: expected OIDC issuer")
	fs.StringVar(&f.issuerRE, "certificate-oidc-issuer-regexp", "", "keyless: regular expression for the OIDC issuer")
	fs.StringVar(&f.caRoots, "ca-roots", "", "keyless: PEM file of trusted Fulcio root certificates (private Sigstore)")
	fs.StringVar(&f.caInter, "ca-intermediates", "", "keyless: PEM file of Fulcio intermediate certificates")
	fs.StringVar(&f.rekorKey, "rekor-public-key", "", "PEM file of a private Rekor's public key (offline bundle verification)")
	fs.StringVar(&f.ctlogKey, "ctlog-public-key", "", "keyless: PEM file of a private CT log's public key")
	fs.BoolVar(&f.ignoreTlog, "insecure-ignore-tlog", false, "accept signatures without transparency-log proof")
	fs.BoolVar(&f.ignoreSCT, "insecure-ignore-sct", false, "keyless: accept certificates without an SCT")
	fs.StringVar(&f.policyFile, "policy", "", "ImageTrustPolicy YAML `file`s, comma separated; replaces the signature flags and --fail-on")
	fs.StringVar(&f.failOn, "fail-on", "", "fail (Untrusted) on vulnerabilities at or above this `severity`: "+strings.Join(failOnValues(), ", ")+
		"\n(grype's order; unknown is the lowest and counts every finding, including those without a severity)")
	fs.BoolVar(&f.onlyFixed, "only-fixed", false, "with --fail-on, count only vulnerabilities that have a fix")
	fs.StringVar(&f.dbDir, "db-dir", defaultDir("db"), "Grype vulnerability DB directory")
	fs.StringVar(&f.dbArchive, "db-archive", "", "import this Grype DB archive into --db-dir before scanning")
	fs.DurationVar(&f.dbMaxAge, "db-max-age", 0, "refuse a DB built longer ago than this (0: no limit)")
	fs.StringVar(&f.cacheDir, "cache-dir", defaultDir("sbom"), "SBOM cache directory (empty: no cache)")
	fs.Var(&f.platforms, "platform", "platform of a multi-arch image to scan, `os/arch[/variant]`; repeatable (default: all)")
	fs.StringVar(&f.output, "o", "table", "output `format`: "+strings.Join(outputFormats, ", "))
	fs.StringVar(&f.registryConfig, "registry-config", "", "docker config.json or dockerconfigjson file with registry credentials (default: ~/.docker/config.json)")
	fs.Var(&f.insecure, "insecure-registry", "registry `host[:port]` spoken to over plain HTTP or unverified TLS; repeatable")
	fs.StringVar(&f.caFile, "registry-ca-file", "", "PEM CA bundle for registries with a private CA")
	fs.IntVar(&f.maxFindings, "max-findings", 50, "findings listed in table output (json lists all)")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Minute, "overall time limit")
	f.trustFlags.register(fs)
}

// scanCommand is `imagetrust scan`.
var scanCommand = commandLine{
	name: "scan", synopsis: "IMAGE", args: 1,
	about: `Verify the signatures and attestations of IMAGE (a tag or digest reference), obtain its SBOM
(attested, referrer or generated with Syft), match it against the Grype vulnerability DB and
evaluate the policies: --policy files, or one policy made of the signature flags and --fail-on.

Every signature format is looked at: cosign's .sig/.att tags, Sigstore bundles stored as OCI
referrers (cosign v3's default) and Notation signatures (JWS, COSE). Keyless verification with
neither --ca-roots nor --trusted-root uses the public-good Sigstore trust root through TUF,
which needs egress to tuf-repo-cdn.sigstore.dev; offline it fails, never passes.

Exit status: 0 Trusted (or nothing asked to gate), 2 Untrusted, 3 Unknown under a gate (a check
errored or could not be judged), 1 error, 64 usage error.`,
}

// failOnValues are the values --fail-on accepts, most severe first: grype's severities in
// grype's order, where unknown (no severity recorded) is the lowest, so --fail-on unknown
// counts every finding.
func failOnValues() []string {
	var out []string
	for _, n := range severity.Names() {
		out = append(out, strings.ToLower(n))
	}
	return out
}

var outputFormats = []string{"table", "json", "sarif"}

func newScanFlagSet(f *scanFlags) *flag.FlagSet {
	fs := flag.NewFlagSet("scan", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f.register(fs)
	return fs
}

func runScan(args []string, stdout io.Writer) error {
	var f scanFlags
	fs := newScanFlagSet(&f)
	pos, err := scanCommand.parse(fs, args, stdout)
	if err != nil {
		return err
	}
	image := pos[0]
	if err := refuseEmpty(fs, "cache-dir"); err != nil {
		return err
	}
	if err := refuseWithPolicy(fs); err != nil {
		return err
	}
	if err := f.trustFlags.check(fs, f.signers()); err != nil {
		return err
	}
	if !slices.Contains(outputFormats, f.output) {
		return usageError("scan", "-o %q: want one of %s", f.output, strings.Join(outputFormats, ", "))
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, f.timeout)
	defer cancelT()
	f.trustRootLoadTimeout = min(f.timeout, time.Minute)

	pols, err := f.policies(ctx)
	if err != nil {
		return err
	}
	sc, db, err := f.scanner(ctx)
	if err != nil {
		return err
	}
	defer db.Close()

	imgs, err := sc.Resolve(ctx, image, f.platforms)
	if err != nil {
		return fmt.Errorf("resolving %s: %w", image, err)
	}
	var results []assessed
	gated := false
	for _, img := range imgs {
		applied := applicable(pols, img)
		gated = gated || len(applied) > 0
		a, err := sc.Assess(ctx, img, applied)
		if err != nil {
			return err
		}
		results = append(results, assessed{Assessment: a, policies: applied})
	}
	report := newReport(image, results, db.Status())
	switch f.output {
	case "json":
		err = writeJSON(stdout, report)
	case "sarif":
		err = writeSARIF(stdout, report)
	default:
		err = writeTable(stdout, report, f.maxFindings)
	}
	if err != nil {
		return err
	}
	return verdictExit(image, report.Verdict, gated)
}

// verdictExit is the exit status of a scan: 2 Untrusted; 3 Unknown when a policy applied to
// the image (a check errored or could not be judged: a CI gate must not pass on that); 0
// otherwise, including Unknown when nothing asked to gate the image.
func verdictExit(image, verdict string, gated bool) error {
	switch {
	case verdict == string(policy.Untrusted):
		return &exitError{code: 2, err: fmt.Errorf("%s is Untrusted", image)}
	case verdict == string(policy.Unknown) && gated:
		return &exitError{code: 3, err: fmt.Errorf("%s could not be judged (verdict Unknown): see the failed checks", image)}
	}
	return nil
}

// refuseEmpty rejects a flag given an empty value, such as --fail-on="$UNSET": read as "not
// given", it would drop the gate the command line asked for. Flags in allowed document a
// meaning for empty.
func refuseEmpty(fs *flag.FlagSet, allowed ...string) error {
	var err error
	fs.Visit(func(fl *flag.Flag) {
		if err == nil && fl.Value.String() == "" && !slices.Contains(allowed, fl.Name) {
			err = usageError(fs.Name(), "%s is empty (an unset variable?): give it a value or leave it out", dashed(fl.Name))
		}
	})
	return err
}

// policyOnlyFlags make the implicit policy; with --policy they would be ignored.
var policyOnlyFlags = []string{"key", "certificate-identity", "certificate-identity-regexp", "certificate-oidc-issuer",
	"certificate-oidc-issuer-regexp", "ca-roots", "ca-intermediates", "rekor-public-key", "ctlog-public-key",
	"insecure-ignore-tlog", "insecure-ignore-sct", "fail-on", "only-fixed"}

// signers reports whether the command line names a cosign key or a keyless identity.
func (f *scanFlags) signers() bool {
	return len(f.keys) > 0 || f.identity != "" || f.identityRE != "" || f.issuer != "" || f.issuerRE != ""
}

// refuseWithPolicy rejects --policy together with a flag of the implicit policy: a --fail-on
// that a policy file silently replaced would be a gate that is not there.
func refuseWithPolicy(fs *flag.FlagSet) error {
	if fs.Lookup("policy").Value.String() == "" {
		return nil
	}
	var err error
	fs.Visit(func(fl *flag.Flag) {
		if err == nil && (slices.Contains(policyOnlyFlags, fl.Name) || slices.Contains(trustOnlyFlags, fl.Name)) {
			err = usageError("scan", "%s cannot be combined with --policy: put it in the policy (authorities, vulnerabilities)", dashed(fl.Name))
		}
	})
	return err
}

// applicable keeps the policies that cover img, by the same rule the manager applies.
func applicable(pols []scanner.Policy, img scanner.Image) []scanner.Policy {
	var tags []string
	if img.Tag != "" {
		tags = []string{img.Tag}
	}
	var out []scanner.Policy
	for _, p := range pols {
		if p.Applies(img.Repository, tags) {
			out = append(out, p)
		}
	}
	return out
}

// policies builds the policies from --policy files, or one implicit policy from the flags.
func (f *scanFlags) policies(ctx context.Context) ([]scanner.Policy, error) {
	if f.policyFile != "" {
		return policiesFromFiles(ctx, f.policyFile, f.trustRoots(ctx))
	}
	return f.implicitPolicy(ctx)
}

// policiesFromFiles reads the ImageTrustPolicies of comma-separated YAML files, every document
// converted and checked as the manager does. Without a cluster, only inline data can be read:
// a ConfigMap or Secret reference is an error.
func policiesFromFiles(ctx context.Context, files string, roots *trustroot.Pool) ([]scanner.Policy, error) {
	var out []scanner.Policy
	for _, path := range strings.Split(files, ",") {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		for i, doc := range strings.Split(string(data), "\n---") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			var p v1.ImageTrustPolicy
			if err := yaml.UnmarshalStrict([]byte(doc), &p); err != nil {
				return nil, fmt.Errorf("%s document %d: %w", path, i+1, err)
			}
			if p.Kind != "ImageTrustPolicy" {
				continue
			}
			applyPolicyDefaults(&p)
			conv, err := policyconv.Convert(ctx, &p, policyconv.Env{TrustRoots: roots})
			if err == nil && conv.Policy.Stalled() {
				err = errors.New(strings.Join(conv.Policy.Problems, "; "))
			}
			if err != nil {
				return nil, fmt.Errorf("%s: policy %s: %w", path, p.Name, err)
			}
			out = append(out, conv.Policy)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no ImageTrustPolicy", files)
	}
	return out, nil
}

// implicitPolicy is the one policy the signature flags and --fail-on make, for every image;
// none when they ask for nothing.
func (f *scanFlags) implicitPolicy(ctx context.Context) ([]scanner.Policy, error) {
	p := scanner.Policy{Policy: policy.Policy{Name: "cli", Images: []string{"**"}}}
	auths, err := f.authorities(ctx)
	if err != nil {
		return nil, err
	}
	for _, a := range auths {
		if err := a.Validate(); err != nil {
			if a.Notation != nil {
				return nil, fmt.Errorf("--notation-trust-store: %w", err)
			}
			return nil, fmt.Errorf("%s: %w", a.Name, err)
		}
		p.AuthorityConfigs = append(p.AuthorityConfigs, a)
		p.Authorities = append(p.Authorities, a.Name)
	}
	p.RequireSignature = len(p.AuthorityConfigs) > 0
	if f.failOn != "" {
		sev, ok := severity.Parse(f.failOn)
		if !ok {
			return nil, usageError("scan", "--fail-on %q: want one of %s", f.failOn, strings.Join(failOnValues(), ", "))
		}
		p.Vulnerabilities = &policy.VulnerabilityGate{FailOn: sev, OnlyFixed: f.onlyFixed}
	}
	if !p.RequireSignature && p.Vulnerabilities == nil {
		return nil, nil // nothing to enforce: report only, verdict Unknown
	}
	return []scanner.Policy{p}, nil
}

// authorities are the implicit policy's authorities: one per --key, one keyless, one Notation.
func (f *scanFlags) authorities(ctx context.Context) ([]verify.Authority, error) {
	var out []verify.Authority
	rekor, err := readOptional(f.rekorKey)
	if err != nil {
		return nil, err
	}
	if len(f.keys) > 0 {
		tr, err := f.trustRoot(ctx, false)
		if err != nil {
			return nil, err
		}
		for i, k := range f.keys {
			data, err := os.ReadFile(k)
			if err != nil {
				return nil, err
			}
			out = append(out, verify.Authority{
				Name: fmt.Sprintf("cli/key-%d", i+1), PublicKeyPEM: data, IgnoreTlog: f.ignoreTlog, RekorPublicKeyPEM: rekor, TrustRoot: tr,
			})
		}
	}
	if f.identity != "" || f.identityRE != "" || f.issuer != "" || f.issuerRE != "" {
		a, err := f.keylessAuthority(ctx, rekor)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	n, err := f.notationAuthority()
	if err != nil || n == nil {
		return out, err
	}
	return append(out, *n), nil
}

func (f *scanFlags) keylessAuthority(ctx context.Context, rekor []byte) (verify.Authority, error) {
	var files [3][]byte
	for i, path := range []string{f.caRoots, f.caInter, f.ctlogKey} {
		data, err := readOptional(path)
		if err != nil {
			return verify.Authority{}, err
		}
		files[i] = data
	}
	tr, err := f.trustRoot(ctx, len(files[0]) == 0)
	if err != nil {
		return verify.Authority{}, err
	}
	return verify.Authority{
		Name: "cli/keyless", IgnoreTlog: f.ignoreTlog, RekorPublicKeyPEM: rekor, TrustRoot: tr,
		Keyless: &verify.Keyless{
			Identities: []verify.Identity{{Subject: f.identity, SubjectRegExp: f.identityRE, Issuer: f.issuer, IssuerRegExp: f.issuerRE}},
			RootsPEM:   files[0], IntermediatesPEM: files[1], CTLogPublicKeyPEM: files[2], IgnoreSCT: f.ignoreSCT,
		},
	}, nil
}

// readOptional reads a file named by a flag; nothing when the flag is unset.
func readOptional(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	return os.ReadFile(path)
}

// applyPolicyDefaults fills what the API server would default for a policy read from a file.
func applyPolicyDefaults(p *v1.ImageTrustPolicy) {
	if p.Spec.Vulnerabilities != nil && p.Spec.Vulnerabilities.FailOnSeverity == "" {
		p.Spec.Vulnerabilities.FailOnSeverity = v1.SeverityCritical
	}
}

func (f *scanFlags) scanner(ctx context.Context) (*scanner.Scanner, *vulndb.Manager, error) {
	kc, err := f.keychain()
	if err != nil {
		return nil, nil, err
	}
	opts := registry.Options{Keychain: kc, Insecure: f.insecure}
	if f.caFile != "" {
		pem, err := os.ReadFile(f.caFile)
		if err != nil {
			return nil, nil, err
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("%s holds no PEM certificate", f.caFile)
		}
		opts.RootCAs = pool
	}
	db, err := openDB(ctx, f.dbDir, f.dbArchive, f.dbMaxAge)
	if err != nil {
		return nil, nil, err
	}
	var cache *sbom.Cache
	if f.cacheDir != "" {
		if cache, err = sbom.NewCache(f.cacheDir, 2<<30); err != nil {
			db.Close()
			return nil, nil, err
		}
	}
	sc, err := scanner.New(scanner.Config{Registry: registry.New(opts), DB: db, Cache: cache, MaxFindings: f.maxFindings})
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return sc, db, nil
}

func (f *scanFlags) keychain() (authn.Keychain, error) {
	path := f.registryConfig
	if path == "" {
		return authn.DefaultKeychain, nil
	}
	return registry.KeychainFromFile(path)
}

// openDB loads the installed DB, importing an archive first when one is given.
func openDB(ctx context.Context, dir, archive string, maxAge time.Duration) (*vulndb.Manager, error) {
	db, err := vulndb.New(vulndb.Config{Dir: dir, MaxAge: maxAge, ValidateChecksum: true})
	if err != nil {
		return nil, err
	}
	if archive != "" {
		_ = db.Load(ctx) // the installed DB, so the same archive is not imported on every run
		if _, err := db.Import(ctx, archive); err != nil {
			db.Close()
			return nil, fmt.Errorf("importing %s: %w", archive, err)
		}
		return db, nil
	}
	if err := db.Load(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("%w (import one with `imagetrust db import FILE` or --db-archive)", err)
	}
	return db, nil
}
