package admission

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

// Flags are the `imagetrust manager` flags of admission; Options turns them into Options
// (Assessor and Resolver are the caller's to add).
type Flags struct {
	doors               csvList
	namespace           string
	exclude             csvList
	webhookHost         string
	webhookPort         int
	certMode            string
	certDir             string
	certSecret          string
	certHosts           csvList
	webhookConfigs      csvList
	gatekeeperProviders csvList
	gatekeeperAddr      string
	gatekeeperClientCA  string
	breakGlassGroups    csvList
	resolveTimeout      time.Duration
	tagTTL              time.Duration
	certRefreshInterval time.Duration
}

// Door names for --admission.
const (
	DoorWebhook     = "webhook"
	DoorImagePolicy = "imagepolicy"
	DoorGatekeeper  = "gatekeeper"
)

// Register adds the flags to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.Var(&f.doors, "admission", "admission front doors to serve, comma-separated: webhook, imagepolicy, gatekeeper (empty: admission off)")
	fs.StringVar(&f.namespace, "admission-namespace", "", "the manager's namespace: never judged, holds the certificate Secret (default $POD_NAMESPACE)")
	fs.Var(&f.exclude, "admission-exclude-namespace", "namespace never judged, besides kube-system and the manager's; repeatable")
	fs.StringVar(&f.webhookHost, "admission-webhook-host", "", "address the webhook and ImagePolicyWebhook listener binds (default all)")
	fs.IntVar(&f.webhookPort, "admission-webhook-port", 9443, "port of the webhook and ImagePolicyWebhook listener")
	fs.StringVar(&f.certMode, "admission-cert-mode", string(CertsSelfManaged), "serving certificates: self-managed (CA and certificate in a Secret, renewed, CA written into the webhook configurations) or files (tls.crt/tls.key in --admission-cert-dir, e.g. from cert-manager or OLM)")
	fs.StringVar(&f.certDir, "admission-cert-dir", "", "directory with tls.crt and tls.key (--admission-cert-mode=files)")
	fs.StringVar(&f.certSecret, "admission-cert-secret", "imagetrust-admission-certs", "Secret holding the self-managed CA and serving certificate")
	fs.Var(&f.certHosts, "admission-cert-host", "DNS name or IP the self-managed serving certificate covers; repeatable")
	fs.Var(&f.webhookConfigs, "admission-webhook-configuration", "ValidatingWebhookConfiguration that receives the self-managed CA bundle; repeatable")
	fs.Var(&f.gatekeeperProviders, "admission-gatekeeper-provider", "Gatekeeper Provider that receives the self-managed CA bundle; repeatable")
	fs.StringVar(&f.gatekeeperAddr, "admission-gatekeeper-bind-address", ":8090", "address of the Gatekeeper external-data listener")
	fs.StringVar(&f.gatekeeperClientCA, "admission-gatekeeper-client-ca", "", "PEM file of the CA that signs Gatekeeper's client certificate")
	fs.Var(&f.breakGlassGroups, "admission-break-glass-group", "group whose members may set the imagetrust.dev/break-glass annotation; repeatable (none: break-glass off)")
	fs.DurationVar(&f.resolveTimeout, "admission-resolve-timeout", 2*time.Second, "bound of one registry lookup of a tag at admission")
	fs.DurationVar(&f.tagTTL, "admission-tag-ttl", 30*time.Second, "how long a tag's digest is remembered")
	fs.DurationVar(&f.certRefreshInterval, "admission-cert-refresh-interval", time.Minute, "how often self-managed certificates and CA bundles are checked")
}

// Enabled reports whether any door is on.
func (f *Flags) Enabled() bool { return len(f.doors) > 0 }

// Options validates the flags and returns the options they describe.
func (f *Flags) Options() (Options, error) {
	o := Options{
		ManagerNamespace: f.namespace, ExcludedNamespaces: f.exclude, WebhookHost: f.webhookHost, WebhookPort: f.webhookPort,
		GatekeeperAddr: f.gatekeeperAddr, GatekeeperClientCAFile: f.gatekeeperClientCA, BreakGlassGroups: f.breakGlassGroups,
		ResolveTimeout: f.resolveTimeout, TagTTL: f.tagTTL,
		Certs: CertOptions{Mode: CertMode(f.certMode), Dir: f.certDir, SecretName: f.certSecret, Hosts: f.certHosts,
			WebhookConfigurations: f.webhookConfigs, GatekeeperProviders: f.gatekeeperProviders, RefreshInterval: f.certRefreshInterval},
	}
	if o.ManagerNamespace == "" {
		o.ManagerNamespace = os.Getenv("POD_NAMESPACE")
	}
	for _, d := range f.doors {
		switch d {
		case DoorWebhook:
			o.Webhook = true
		case DoorImagePolicy:
			o.ImagePolicy = true
		case DoorGatekeeper:
			o.Gatekeeper = true
		default:
			return Options{}, fmt.Errorf("--admission: unknown door %q (webhook, imagepolicy, gatekeeper)", d)
		}
	}
	if o.ManagerNamespace == "" {
		return Options{}, errors.New("--admission-namespace (or $POD_NAMESPACE) is required with --admission")
	}
	if f.resolveTimeout <= 0 || f.tagTTL <= 0 || f.certRefreshInterval <= 0 {
		return Options{}, errors.New("--admission-resolve-timeout, --admission-tag-ttl and --admission-cert-refresh-interval must be positive")
	}
	if err := o.defaults(); err != nil {
		return Options{}, fmt.Errorf("--admission: %w", err)
	}
	return o, nil
}

// csvList is a repeatable flag whose values may also be comma-separated.
type csvList []string

func (l *csvList) String() string { return strings.Join(*l, ",") }

func (l *csvList) Set(v string) error {
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}
